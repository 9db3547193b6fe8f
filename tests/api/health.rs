//! `/healthz`, `/readyz` and failing closed when a dependency is down (API.md §1, §3).

use serde_json::json;

use crate::helpers::{Backend, spawn_app, spawn_app_with};
use crate::on_both_backends;

on_both_backends! {
    async fn liveness_and_readiness_report_ok(backend: Backend) {
        let app = spawn_app(backend).await;
        let browser = app.browser();
        assert_eq!(browser.get("/healthz").await.body, json!({"code": "ok"}));
        let ready = browser.get("/readyz").await;
        assert_eq!(ready.status, 200);
        assert_eq!(ready.body, json!({"code": "ready", "checks": {"database": "ok", "cache": "ok"}}));
        // After a flow, /metrics shows each family, labelled by route template, never by id.
        let user = app.logged_in("metered@example.com").await;
        user.delete(&format!("/auth/sessions/{}", uuid::Uuid::new_v4())).await;
        app.browser().post("/auth/login", json!({"email": "metered@example.com", "password": "wrong wrong wrong"})).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let metrics = browser.get("/metrics").await;
        assert_eq!(metrics.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
        let text = metrics.body.as_str().unwrap();
        for series in [
            "http_requests_total{method=\"POST\",route=\"/auth/login\",status=\"200\"}",
            "http_request_duration_seconds_bucket",
            "route=\"/auth/sessions/{id}\"",
            "auth_events_total{event=\"login.success\"}",
            "auth_events_total{event=\"login.failure\"}",
            "password_hash_duration_seconds",
            "password_hash_queue_wait_seconds",
            "emails_sent_total",
            "outbox_pending",
        ] {
            assert!(text.contains(series), "{series} missing from /metrics");
        }
        assert!(!text.contains("metered@example.com"));
    }
}

/// Redis down: not ready, and a session is never accepted unchecked (503, not 200/401).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_fails_closed() {
    let app = spawn_app_with(Backend::PostgresRedis, &[]).await;
    let browser = app.logged_in("olga@example.com").await;
    let down = app.sibling(&[("REDIS_URL", "redis://127.0.0.1:1")]).await;
    let ready = down.browser().get("/readyz").await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.body["code"], "not_ready");
    assert_eq!(
        ready.body["checks"],
        json!({"database": "ok", "cache": "error"})
    );

    let stranded = crate::helpers::Browser::new(&down.address);
    stranded.set_cookie("session", &browser.cookie("session").unwrap());
    stranded
        .get("/auth/me")
        .await
        .assert_error(503, "service_unavailable");
}
