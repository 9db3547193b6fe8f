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
        let metrics = browser.get("/metrics").await;
        assert!(metrics.body.as_str().unwrap().contains("http_requests_total"));
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
