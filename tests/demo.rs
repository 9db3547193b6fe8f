//! The development-only passkey demo page (`/demo`): served with its own strict
//! Content-Security-Policy and the right content types in development, absent (the
//! contract's `404 not_found`) in production. The page itself is driven in a real browser
//! by `.ci/e2e.sh` (tests/e2e/).

// Tests stop loudly: unwrap, expect and panic are how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;
#[allow(dead_code)]
#[path = "api/smtp_sink.rs"]
mod smtp_sink;

use std::collections::BTreeSet;

use helpers::{Backend, TestApp, TestResponse, spawn_app_with};
use reqwest::Method;
use serde_json::Value;

const PAGES: [(&str, &str); 3] = [
    ("/demo", "text/html; charset=utf-8"),
    ("/demo/app.js", "text/javascript; charset=utf-8"),
    ("/demo/app.css", "text/css; charset=utf-8"),
];

async fn development_app() -> TestApp {
    spawn_app_with(Backend::Embedded, &[("APP_ENV", "development")]).await
}

/// Everything production mode requires, on SQLite with the in-process store.
async fn production_app() -> TestApp {
    spawn_app_with(
        Backend::Embedded,
        &[
            ("APP_ENV", "production"),
            ("COOKIE_SECURE", "true"),
            ("SINGLE_INSTANCE", "true"),
            ("ALLOW_SQLITE_IN_PRODUCTION", "true"),
            ("ORIGIN_URL", "https://auth.logicredit.test"),
            ("FIDO_RP_ID", "auth.logicredit.test"),
        ],
    )
    .await
}

fn directives(csp: &str) -> Vec<(String, Vec<String>)> {
    csp.split(';')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| {
            let mut parts = d.split_whitespace().map(str::to_owned);
            let name = parts.next().unwrap_or_default();
            (name, parts.collect())
        })
        .collect()
}

fn directive(csp: &str, name: &str) -> Option<Vec<String>> {
    directives(csp)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, values)| values)
}

#[track_caller]
fn assert_strict_page_csp(path: &str, response: &TestResponse) {
    let csp = response
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("{path} has a Content-Security-Policy"));
    let lower = csp.to_ascii_lowercase();
    for forbidden in [
        "'unsafe-inline'",
        "'unsafe-eval'",
        "'unsafe-hashes'",
        "*",
        "http:",
    ] {
        assert!(!lower.contains(forbidden), "{path}: {forbidden} in {csp}");
    }
    let only = |name: &str, expected: &[&str]| {
        assert_eq!(
            directive(csp, name),
            Some(expected.iter().map(|s| (*s).to_owned()).collect()),
            "{path}: {name} in {csp}"
        );
    };
    only("default-src", &["'none'"]);
    only("script-src", &["'self'"]);
    only("style-src", &["'self'"]);
    only("connect-src", &["'self'"]);
    only("img-src", &["'self'", "data:"]);
    only("base-uri", &["'none'"]);
    only("form-action", &["'none'"]);
    only("frame-ancestors", &["'none'"]);
    // Exactly one policy: the middleware's default did not get added beside it.
    assert_eq!(
        response
            .headers
            .get_all("content-security-policy")
            .iter()
            .count(),
        1,
        "{path}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_is_served_in_development_with_a_strict_policy() {
    let app = development_app().await;
    let browser = app.browser();
    for (path, content_type) in PAGES {
        let response = browser.get(path).await;
        assert_eq!(response.status, 200, "{path}: {response:?}");
        assert_eq!(
            response.header("content-type"),
            Some(content_type),
            "{path}"
        );
        assert_strict_page_csp(path, &response);
        // The other security headers still come from the middleware.
        assert_eq!(
            response.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(response.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(
            response.header("referrer-policy"),
            Some("no-referrer"),
            "{path}"
        );
        assert_eq!(response.header("cache-control"), Some("no-store"), "{path}");
        assert!(response.header("x-request-id").is_some(), "{path}");
        let body = response.body.as_str().expect("a text body");
        assert!(body.len() > 100, "{path} has content");
    }

    let page = browser.get("/demo").await;
    let html = page.body.as_str().unwrap().to_ascii_lowercase();
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains("<script src=\"/demo/app.js\" defer></script>"));
    assert!(html.contains("<link rel=\"stylesheet\" href=\"/demo/app.css\">"));
    assert_eq!(html.matches("<script").count(), 1, "no inline script");
    assert!(!html.contains("<style") && !html.contains("style="));
    assert!(
        !html.contains("http://") && !html.contains("https://") && !html.contains("//cdn"),
        "no third-party assets"
    );

    // JSON errors under /demo like everywhere else.
    let wrong_method = browser.post("/demo", serde_json::json!({})).await;
    wrong_method.assert_error(405, "method_not_allowed");
    browser
        .get("/demo/missing.js")
        .await
        .assert_error(404, "not_found");
}

/// Every fixed API path the page's script calls is a route of the contract.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_calls_only_routes_of_the_contract() {
    let app = development_app().await;
    let browser = app.browser();
    let script = browser.get("/demo/app.js").await;
    let script = script.body.as_str().expect("the script");
    let spec = browser.get("/openapi.json").await;
    let routes: BTreeSet<String> = spec.body["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .cloned()
        .collect();
    let mut called = BTreeSet::new();
    for quote in ['\'', '`'] {
        let opening = format!("{quote}/auth/");
        for (start, _) in script.match_indices(&opening) {
            let rest = &script[start + 1..];
            let literal = &rest[..rest.find(quote).expect("a closed string literal")];
            // `/auth/sessions/${…}` → the templated route.
            let path = match literal.split_once("${") {
                Some((head, _)) => format!("{head}{{id}}"),
                None => literal.to_owned(),
            };
            called.insert(path);
        }
    }
    for expected in [
        "/auth/register",
        "/auth/verify-email",
        "/auth/login",
        "/auth/me",
        "/auth/csrf",
        "/auth/logout",
        "/auth/mfa/totp/setup",
        "/auth/mfa/totp/verify",
        "/auth/webauthn/register/start",
        "/auth/webauthn/register/finish",
        "/auth/webauthn/login/start",
        "/auth/webauthn/login/finish",
        "/auth/sessions",
        "/auth/sessions/{id}",
    ] {
        assert!(called.contains(expected), "the page calls {expected}");
    }
    for path in &called {
        assert!(
            routes.contains(path),
            "{path} is not in the OpenAPI document"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn there_is_no_demo_in_production() {
    let app = production_app().await;
    let browser = app.browser();
    for (path, _) in PAGES {
        let response = browser.get(path).await;
        response.assert_error(404, "not_found");
        assert!(
            response
                .header("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "{path}: {response:?}"
        );
        // The strictest default policy, not the page's.
        let csp = response.header("content-security-policy").unwrap();
        assert_eq!(directive(csp, "default-src"), Some(vec!["'none'".into()]));
        assert_eq!(directive(csp, "script-src"), None, "{csp}");
    }
    let head = browser
        .send(Method::HEAD, "/demo", None, helpers::Csrf::None)
        .await;
    assert_eq!(head.status, 404);
    // The API itself is up in production mode.
    let health = browser.get("/healthz").await;
    assert_eq!(health.status, 200, "{health:?}");
    assert_eq!(health.body["code"], Value::from("ok"));
}
