//! docs/API.md §4 email: the transactional outbox, SMTP outages, exactly-once delivery.

use serde_json::json;

use crate::helpers::{Backend, PASSWORD, spawn_app};
use crate::on_both_backends;
use crate::smtp_sink::SmtpSink;

async fn an_smtp_outage_delays_email_but_loses_none(backend: Backend) {
    let app = spawn_app(backend).await;
    app.smtp.set_refusing(true);
    let response = app
        .browser()
        .post(
            "/auth/register",
            json!({"email": "patient@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(response.status, 201);
    // The email waits in the outbox while the server refuses it.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let attempts = app.query("SELECT attempts FROM email_outbox").await;
    assert!(attempts[0].as_i64().unwrap() >= 1, "{attempts:?}");
    assert!(app.smtp.received().is_empty());

    app.smtp.set_refusing(false);
    let email = app.smtp.wait_for("patient@example.com").await;
    assert_eq!(email.code().len(), 32);
    // Once delivered the body (with its token) is erased; only metadata stays.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let rows = app.query("SELECT status FROM email_outbox").await;
    assert_eq!(rows, vec![json!("sent")]);
    let bodies = app.query("SELECT body_text FROM email_outbox").await;
    assert_eq!(bodies, vec![json!("")]);
}

on_both_backends!(an_smtp_outage_delays_email_but_loses_none);

/// Email queued while no SMTP server listens at all is delivered once one appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_waits_for_an_smtp_server_that_is_down() {
    let late = SmtpSink::reserve().await;
    let port = late.port.to_string();
    let app = crate::helpers::spawn_app_with(Backend::Embedded, &[("SMTP_PORT", &port)]).await;
    app.browser()
        .post(
            "/auth/register",
            json!({"email": "late@example.com", "password": PASSWORD}),
        )
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    late.listen().await;
    assert_eq!(late.wait_for("late@example.com").await.code().len(), 32);
}

/// Two instances poll one outbox: each email is sent exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_deliver_each_email_once() {
    let first = spawn_app(Backend::PostgresRedis).await;
    let _second = first.sibling(&[]).await;
    let browser = first.browser();
    for n in 0..10 {
        let email = format!("user{n}@example.com");
        browser
            .post(
                "/auth/register",
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
    }
    for n in 0..10 {
        first.smtp.wait_for(&format!("user{n}@example.com")).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(first.smtp.received().len(), 10);
}

// Issue 11, item 4: no tokens in logs in production. The real binary, in production
// mode with SMTP configured and logging at `debug`, sends a verification code, a
// resent one and a reset token: the recipient gets each, and none appears in its log.
async fn production_logs_never_carry_an_email_token(backend: Backend) {
    let mut app = spawn_app(backend).await;
    // The in-process instance made the database and the SMTP sink; only the binary
    // serves and delivers from here on.
    app.stop().await;
    let dir = std::env::temp_dir().join(format!("lcauth-logs-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let log_path = dir.join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_logicredit-auth"));
    command
        .arg("serve")
        .current_dir(&dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("APP_ENV", "production")
        .env("RUST_LOG", "debug")
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("METRICS_ADDR", "127.0.0.1:0")
        .env("DATA_DIR", dir.join("data"))
        .env("ORIGIN_URL", "https://auth.logicredit.test")
        .env("FIDO_RP_ID", "auth.logicredit.test")
        .env("ALLOW_SQLITE_IN_PRODUCTION", "true")
        .env("SINGLE_INSTANCE", "true")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    for key in [
        "DATABASE_URL",
        "STORE_KEY_PREFIX",
        "TOTP_ENCRYPTION_KEY",
        "ARGON2_MEMORY_KIB",
        "ARGON2_ITERATIONS",
        "SMTP_HOST",
        "SMTP_PORT",
        "SMTP_TLS",
        "SMTP_FROM",
        "OUTBOX_POLL_INTERVAL_MS",
        "OUTBOX_RETRY_BASE_MS",
    ] {
        command.env(key, app.var(key));
    }
    if backend == Backend::PostgresRedis {
        command.env("REDIS_URL", app.var("REDIS_URL"));
    }
    let mut child = command.spawn().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let started = std::time::Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the binary exited ({status}): {}",
                std::fs::read_to_string(&log_path).unwrap()
            );
        }
        if let Ok(response) = reqwest::get(format!("{base}/readyz")).await
            && response.status() == 200
        {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "not ready"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let browser = crate::helpers::Browser::new(&base);
    let email = "quiet@example.com";
    let registered = browser
        .post(
            "/auth/register",
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(registered.status, 201, "{registered:?}");
    let first = app.smtp.wait_for_nth(email, 1).await.code();
    let resent = browser
        .post("/auth/verify-email/resend", json!({"email": email}))
        .await;
    assert_eq!(resent.status, 202, "{resent:?}");
    let second = app.smtp.wait_for_nth(email, 2).await.code();
    let verified = browser
        .post("/auth/verify-email", json!({"token": second}))
        .await;
    assert_eq!(verified.status, 200, "{verified:?}");
    let reset = browser
        .post("/auth/password/reset/request", json!({"email": email}))
        .await;
    assert_eq!(reset.status, 202, "{reset:?}");
    let third = app.smtp.wait_for_nth(email, 3).await.code();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    assert!(
        text.contains("/auth/password/reset/request"),
        "the log is not the one we think: {text}"
    );
    for token in [&first, &second, &third] {
        assert!(token.len() >= 32, "{token}");
        assert!(
            !text.contains(token.as_str()),
            "a token is in the production log: {token}"
        );
    }
    assert!(
        !text.contains("Or enter this code"),
        "an email body is in the production log"
    );
}

on_both_backends!(production_logs_never_carry_an_email_token);
