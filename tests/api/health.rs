//! `/healthz`, `/readyz` and failing closed when a dependency is down (docs/API.md §1, §3).

use serde_json::json;

use crate::helpers::{Backend, Browser, spawn_app, spawn_app_with};
use crate::on_both_backends;

async fn liveness_and_readiness_report_ok(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = app.browser();
    assert_eq!(browser.get("/healthz").await.body, json!({"code": "ok"}));
    let ready = browser.get("/readyz").await;
    assert_eq!(ready.status, 200);
    assert_eq!(
        ready.body,
        json!({"code": "ready", "checks": {"database": "ok", "cache": "ok"}})
    );
    // After a flow, /metrics shows each family, labelled by route template, never by id.
    let user = app.logged_in("metered@example.com").await;
    user.delete(&format!("/auth/sessions/{}", uuid::Uuid::new_v4()))
        .await;
    app.browser()
        .post(
            "/auth/login",
            json!({"email": "metered@example.com", "password": "wrong wrong wrong"}),
        )
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let metrics = crate::helpers::Browser::new(&app.metrics_address)
        .get("/metrics")
        .await;
    assert_eq!(
        metrics.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
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

on_both_backends!(liveness_and_readiness_report_ok);

// Issue 11, item 5: the counters differ between a known and an unknown email
// (`emails_sent_total{kind="registration_attempt"}` against `verify_email`), so an
// anonymous reader of /metrics could tell which accounts exist. The public listener
// does not serve /metrics; the metrics listener (METRICS_ADDR) does.
async fn metrics_are_served_only_on_their_own_listener(backend: Backend) {
    let app = spawn_app(backend).await;
    app.verified_user("known@example.com").await;
    app.browser()
        .post(
            "/auth/register",
            json!({"email": "known@example.com", "password": crate::helpers::PASSWORD}),
        )
        .await;
    app.smtp.wait_for_nth("known@example.com", 2).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let public = app.browser().get("/metrics").await;
    public.assert_error(404, "not_found");
    assert!(!public.body.to_string().contains("registration_attempt"));
    assert_ne!(app.metrics_address, app.address);
    let text = app.metrics().await;
    assert!(
        text.contains("emails_sent_total{kind=\"registration_attempt\"}"),
        "{text}"
    );
    // The metrics listener serves nothing else.
    Browser::new(&app.metrics_address)
        .get("/healthz")
        .await
        .assert_error(404, "not_found");
}

// METRICS_TOKEN: a scrape without the bearer token, or with a wrong one, gets 401.
async fn a_metrics_token_is_required_when_configured(backend: Backend) {
    let token = "scrape-token-0123456789abcdef0123456789";
    let app = spawn_app_with(backend, &[("METRICS_TOKEN", token)]).await;
    let http = reqwest::Client::new();
    let scraper = Browser::new(&app.metrics_address);
    let url = format!("{}/metrics", app.metrics_address);
    scraper
        .get("/metrics")
        .await
        .assert_error(401, "not_authenticated");
    for wrong in [
        "Bearer wrong",
        "Bearer scrape-token-0123456789abcdef012345678",
        token,
    ] {
        scraper
            .execute(
                http.get(&url).header("authorization", wrong),
                crate::helpers::Csrf::None,
            )
            .await
            .assert_error(401, "not_authenticated");
    }
    let ok = scraper
        .execute(
            http.get(&url).bearer_auth(token),
            crate::helpers::Csrf::None,
        )
        .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert!(ok.body.as_str().unwrap().contains("http_requests_total"));
}

// Issue 11, item 5: HTTP allows any token as a method; each used to become its own
// `method` label (8 KB methods, tens of MB of series). Unknown methods are `other`.
async fn unknown_methods_share_one_metrics_label(backend: Backend) {
    let app = spawn_app(backend).await;
    let http = reqwest::Client::new();
    let mut sent = Vec::new();
    for i in 0..5 {
        let method = format!("X{i}{}", "Y".repeat(4000));
        let response = http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}/healthz", app.address),
            )
            .send()
            .await
            .unwrap();
        assert!(response.status().is_client_error(), "{}", response.status());
        sent.push(method);
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let text = app.metrics().await;
    assert!(
        text.contains("http_requests_total{method=\"other\",route=\"/healthz\",status=\"405\"}"),
        "{text}"
    );
    for method in &sent {
        assert!(
            !text.contains(&method[..100]),
            "a custom method became a label"
        );
    }
    let methods: std::collections::BTreeSet<&str> = text
        .split("method=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    let standard = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "other",
    ];
    assert!(methods.iter().all(|m| standard.contains(m)), "{methods:?}");
}

on_both_backends!(
    metrics_are_served_only_on_their_own_listener,
    a_metrics_token_is_required_when_configured,
    unknown_methods_share_one_metrics_label
);

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
