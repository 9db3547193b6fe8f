//! docs/API.md §1 conventions and §4 headers: error bodies, request ids, security headers,
//! CORS, body limits, and graceful shutdown.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::helpers::{Backend, Csrf, PASSWORD, spawn_app, spawn_app_with};
use crate::on_both_backends;

async fn every_error_is_json_with_a_code_and_a_message(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = app.browser();
    browser
        .get("/no/such/route")
        .await
        .assert_error(404, "not_found");
    browser
        .send(Method::PUT, "/auth/login", None, Csrf::None)
        .await
        .assert_error(405, "method_not_allowed");
    browser
        .get("/auth/login")
        .await
        .assert_error(405, "method_not_allowed");

    let http = reqwest::Client::new();
    let url = format!("{}/auth/login", app.address);
    let not_json = browser
        .execute(
            http.post(&url)
                .header("content-type", "application/json")
                .body("{\"email\":"),
            Csrf::None,
        )
        .await;
    not_json.assert_error(400, "malformed_request");
    let wrong_type = browser
        .execute(
            http.post(&url)
                .header("content-type", "text/plain")
                .body("{}"),
            Csrf::None,
        )
        .await;
    wrong_type.assert_error(400, "malformed_request");
    let no_body = browser.execute(http.post(&url), Csrf::None).await;
    no_body.assert_error(400, "malformed_request");
    let bytes = browser
        .execute(
            http.post(&url)
                .header("content-type", "application/json")
                .body(vec![0xff, 0xfe, 0x00]),
            Csrf::None,
        )
        .await;
    bytes.assert_error(400, "malformed_request");
}

async fn bodies_over_64_kib_are_refused_however_they_are_sent(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = app.browser();
    let http = reqwest::Client::new();
    let url = format!("{}/auth/register", app.address);
    let big = format!(
        "{{\"email\":\"a@b.example\",\"password\":\"{}\"}}",
        "x".repeat(70 * 1024)
    );
    let declared = browser
        .execute(
            http.post(&url)
                .header("content-type", "application/json")
                .body(big.clone()),
            Csrf::None,
        )
        .await;
    declared.assert_error(413, "payload_too_large");
    // Without a Content-Length (chunked), the limit applies while reading.
    let stream = futures::stream::iter(
        big.into_bytes()
            .chunks(8192)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let chunked = browser
        .execute(
            http.post(&url)
                .header("content-type", "application/json")
                .body(reqwest::Body::wrap_stream(stream)),
            Csrf::None,
        )
        .await;
    chunked.assert_error(413, "payload_too_large");
    assert_eq!(
        app.query("SELECT COUNT(*) FROM users").await,
        vec![json!(0)]
    );
}

async fn request_ids_are_echoed_when_well_formed_and_made_otherwise(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = app.browser();
    let http = reqwest::Client::new();
    let url = format!("{}/healthz", app.address);
    let echoed = browser
        .execute(
            http.get(&url).header("x-request-id", "trace-42.a_b"),
            Csrf::None,
        )
        .await;
    assert_eq!(echoed.header("x-request-id"), Some("trace-42.a_b"));
    for bad in ["has spaces", &"a".repeat(65), "semi;colon"] {
        let replaced = browser
            .execute(http.get(&url).header("x-request-id", bad), Csrf::None)
            .await;
        let id = replaced.header("x-request-id").unwrap();
        assert_ne!(id, bad);
        assert!(uuid::Uuid::parse_str(id).is_ok());
    }
    // Errors carry one too.
    assert!(
        browser
            .get("/nowhere")
            .await
            .header("x-request-id")
            .is_some()
    );
}

async fn security_headers_are_on_every_response(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = app.browser();
    for response in [
        browser.get("/healthz").await,
        browser.get("/nowhere").await,
        browser.get("/auth/me").await,
    ] {
        assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(response.header("x-frame-options"), Some("DENY"));
        assert_eq!(response.header("referrer-policy"), Some("no-referrer"));
        assert_eq!(response.header("cache-control"), Some("no-store"));
        assert!(
            response
                .header("content-security-policy")
                .unwrap()
                .contains("default-src 'none'")
        );
        assert!(
            response.header("strict-transport-security").is_none(),
            "HSTS is opt-in"
        );
    }
    let hsts = spawn_app_with(backend, &[("HSTS", "true")]).await;
    let response = hsts.browser().get("/healthz").await;
    assert!(
        response
            .header("strict-transport-security")
            .unwrap()
            .contains("max-age=")
    );
}

async fn cors_admits_only_the_configured_front_ends(backend: Backend) {
    let app = spawn_app_with(backend, &[("FRONTEND_ORIGINS", "https://app.bank.example")]).await;
    let http = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        http.request(Method::OPTIONS, format!("{}/auth/login", app.address))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,x-csrf-token",
            )
    };
    let browser = app.browser();
    let allowed = browser
        .execute(preflight("https://app.bank.example"), Csrf::None)
        .await;
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://app.bank.example")
    );
    assert_eq!(
        allowed.header("access-control-allow-credentials"),
        Some("true")
    );
    assert!(
        allowed
            .header("access-control-allow-headers")
            .unwrap()
            .contains("x-csrf-token")
    );
    let refused = browser
        .execute(preflight("https://evil.example"), Csrf::None)
        .await;
    assert!(refused.header("access-control-allow-origin").is_none());
}

async fn shutdown_lets_in_flight_requests_finish(backend: Backend) {
    // A costly hash keeps the registration in flight while the stop signal arrives.
    let mut app = spawn_app_with(
        backend,
        &[("ARGON2_MEMORY_KIB", "65536"), ("ARGON2_ITERATIONS", "2")],
    )
    .await;
    let browser = app.browser();
    let in_flight = tokio::spawn(async move {
        browser
            .post(
                "/auth/register",
                json!({"email": "late@example.com", "password": PASSWORD}),
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    app.stop().await;
    let response = in_flight.await.unwrap();
    assert_eq!(response.status, 201);
    assert_eq!(
        app.query("SELECT COUNT(*) FROM users").await,
        vec![json!(1)]
    );
}

on_both_backends!(
    every_error_is_json_with_a_code_and_a_message,
    bodies_over_64_kib_are_refused_however_they_are_sent,
    request_ids_are_echoed_when_well_formed_and_made_otherwise,
    security_headers_are_on_every_response,
    cors_admits_only_the_configured_front_ends,
    shutdown_lets_in_flight_requests_finish
);
