//! API.md §6: the binary's commands.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::json;

use crate::helpers::{Backend, ENCRYPTION_KEY, PASSWORD, spawn_app};

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_logicredit-auth"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    command
}

fn run(command: &mut Command, stdin: &str) -> (bool, String) {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_user_makes_a_verified_account_with_a_role_on_either_database() {
    for backend in [Backend::Embedded, Backend::PostgresRedis] {
        let app = spawn_app(backend).await;
        let database_url = app.var("DATABASE_URL").to_owned();
        let mut command = binary();
        command
            .args([
                "create-user",
                "--email",
                "Root@Bank.example",
                "--role",
                "admin",
            ])
            .env("DATABASE_URL", &database_url)
            .env("TOTP_ENCRYPTION_KEY", ENCRYPTION_KEY)
            .env("ARGON2_MEMORY_KIB", "256")
            .env("ARGON2_ITERATIONS", "1");
        let (ok, output) = run(&mut command, &format!("{PASSWORD}\n"));
        assert!(ok, "{output}");
        let browser = app.login("root@bank.example").await;
        assert_eq!(
            browser.get("/auth/me").await.body["user"]["role"],
            json!("admin")
        );

        let (ok, output) = run(&mut command, "password1234\n");
        assert!(
            !ok && output.contains("too_guessable") || output.contains("TooGuessable"),
            "{output}"
        );
    }
}

#[test]
fn openapi_prints_a_3_1_document() {
    let (ok, output) = run(binary().arg("openapi"), "");
    assert!(ok, "{output}");
    let spec: serde_json::Value = serde_json::from_str(&output).unwrap();
    assert_eq!(spec["openapi"], "3.1.0");
}

#[test]
fn production_refuses_insecure_settings_naming_each() {
    let (ok, output) = run(
        binary()
            .arg("migrate")
            .env("APP_ENV", "production")
            .env("COOKIE_SECURE", "false")
            .env("SESSION_COOKIE_NAME", "sid"),
        "",
    );
    assert!(!ok);
    for problem in [
        "TOTP_ENCRYPTION_KEY",
        "COOKIE_SECURE",
        "SQLite",
        "REDIS_URL",
    ] {
        assert!(output.contains(problem), "{problem} missing from: {output}");
    }
}
