//! docs/API.md §6: the binary's commands.

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
        // Issue 11, item 4: without SMTP, reset and verification links went to the log.
        "SMTP_HOST",
    ] {
        assert!(output.contains(problem), "{problem} missing from: {output}");
    }
}

/// `serve` with `vars`, in a scratch folder (no `.env`), on free ports: the exit status and
/// everything it printed. A server that is still up after 20 s is killed (and reported).
fn serve_briefly(vars: &[(&str, &str)]) -> (Option<std::process::ExitStatus>, String) {
    let dir = std::env::temp_dir().join(format!("lcauth-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut command = binary();
    command
        .arg("serve")
        .current_dir(&dir)
        .env("DATA_DIR", dir.join("data"))
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("METRICS_ADDR", "127.0.0.1:0")
        .env("TOTP_ENCRYPTION_KEY", ENCRYPTION_KEY)
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > std::time::Duration::from_secs(20) {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let output = child.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (status, text)
}

/// Issue 11, item 9: `FRONTEND_ORIGINS=*` used to panic inside tower-http when the router
/// was built, in every mode. Each bad origin is now a configuration error naming the
/// variable: a clear message and exit status 1, never a panic.
#[test]
fn a_bad_front_end_origin_is_a_clear_configuration_error_not_a_panic() {
    for (mode, origins) in [
        ("development", "*"),
        ("development", "https://app.bank.example,null"),
        ("production", "*"),
    ] {
        let (status, output) = serve_briefly(&[("APP_ENV", mode), ("FRONTEND_ORIGINS", origins)]);
        let status = status.unwrap_or_else(|| panic!("{mode}, {origins}: still serving: {output}"));
        assert_eq!(status.code(), Some(1), "{mode}, {origins}: {output}");
        assert!(
            output.contains("invalid configuration") && output.contains("FRONTEND_ORIGINS"),
            "{mode}, {origins}: {output}"
        );
        assert!(
            !output.contains("panicked") && !output.contains("RUST_BACKTRACE"),
            "{mode}, {origins}: a panic: {output}"
        );
    }
}
