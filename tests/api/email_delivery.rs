//! API.md §4 email: the transactional outbox, SMTP outages, exactly-once delivery.

use serde_json::json;

use crate::helpers::{Backend, PASSWORD, spawn_app};
use crate::on_both_backends;
use crate::smtp_sink::SmtpSink;

on_both_backends! {
    async fn an_smtp_outage_delays_email_but_loses_none(backend: Backend) {
        let app = spawn_app(backend).await;
        app.smtp.set_refusing(true);
        let response = app
            .browser()
            .post("/auth/register", json!({"email": "patient@example.com", "password": PASSWORD}))
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
}

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
