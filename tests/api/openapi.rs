//! The OpenAPI document (docs/API.md §7: version 3.1, every route listed) matches the router:
//! every route of the contract is in the document, and every route in the document exists.

use serde_json::Value;

use crate::helpers::{Backend, Browser, Csrf, spawn_app};

/// docs/API.md §3, in full.
const CONTRACT: &[(&str, &str)] = &[
    ("POST", "/auth/register"),
    ("POST", "/auth/verify-email"),
    ("POST", "/auth/verify-email/resend"),
    ("POST", "/auth/login"),
    ("GET", "/auth/me"),
    ("GET", "/auth/csrf"),
    ("POST", "/auth/mfa/totp/setup"),
    ("POST", "/auth/mfa/totp/verify"),
    ("POST", "/auth/mfa/recovery/verify"),
    ("DELETE", "/auth/mfa/totp"),
    ("POST", "/auth/webauthn/register/start"),
    ("POST", "/auth/webauthn/register/finish"),
    ("POST", "/auth/webauthn/login/start"),
    ("POST", "/auth/webauthn/login/finish"),
    ("GET", "/auth/webauthn/credentials"),
    ("DELETE", "/auth/webauthn/credentials/{id}"),
    ("POST", "/auth/password/reset/request"),
    ("POST", "/auth/password/reset/confirm"),
    ("POST", "/auth/password/change"),
    ("GET", "/auth/sessions"),
    ("POST", "/auth/logout"),
    ("POST", "/auth/sessions/revoke-others"),
    ("DELETE", "/auth/sessions/{id}"),
    ("POST", "/auth/step-up/confirm"),
    ("GET", "/auth/admin/ping"),
    ("GET", "/auth/admin/users"),
    ("PATCH", "/auth/admin/users/{id}"),
    ("POST", "/auth/admin/users/{id}/unlock"),
    ("GET", "/auth/admin/audit"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
];

fn operations(spec: &Value) -> Vec<(String, String)> {
    let mut ops = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                ops.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_and_the_router_list_the_same_routes() {
    let app = spawn_app(Backend::Embedded).await;
    let browser = app.browser();
    let spec = browser.get("/openapi.json").await.body;
    assert_eq!(spec["openapi"], "3.1.0");
    let ops = operations(&spec);
    for (method, path) in CONTRACT {
        assert!(
            ops.contains(&((*method).to_owned(), (*path).to_owned())),
            "{method} {path} is missing from the OpenAPI document"
        );
    }
    // Every documented operation is routed: asked without a session or body, it answers
    // something other than the router's own 404/405. `/metrics` is routed on the metrics
    // listener only (issue 11, item 5), and the public listener answers 404 there.
    let metrics = Browser::new(&app.metrics_address);
    for (method, path) in &ops {
        let concrete = path.replace("{id}", &uuid::Uuid::new_v4().to_string());
        let listener = if path == "/metrics" {
            browser.get("/metrics").await.assert_error(404, "not_found");
            &metrics
        } else {
            &browser
        };
        let response = listener
            .send(method.parse().unwrap(), &concrete, None, Csrf::None)
            .await;
        let fallback = (response.status == 404 && response.body["message"] == "Not found.")
            || response.status == 405;
        assert!(
            !fallback,
            "{method} {path} is documented but not routed: {response:?}"
        );
        assert!(
            spec["paths"][path][method.to_lowercase()]["responses"]
                .as_object()
                .is_some_and(|r| !r.is_empty()),
            "{method} {path} documents no responses"
        );
    }
    // Session routes name their security schemes; state-changing ones include the CSRF header.
    let schemes = spec["components"]["securitySchemes"].as_object().unwrap();
    assert!(schemes.contains_key("session_cookie") && schemes.contains_key("csrf_header"));
    let logout = &spec["paths"]["/auth/logout"]["post"]["security"][0];
    assert!(logout.get("session_cookie").is_some() && logout.get("csrf_header").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_page_is_served_from_the_binary_with_its_own_policy() {
    let app = spawn_app(Backend::Embedded).await;
    let browser = app.browser();
    let page = browser.get("/docs/").await;
    assert_eq!(page.status, 200);
    let html = page.body.as_str().unwrap();
    assert!(
        html.contains("swagger-ui-bundle.js")
            && !html.contains("http://")
            && !html.contains("https://")
    );
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("script-src 'self' 'unsafe-inline'"),
        "{csp}"
    );
    let init = browser.get("/docs/swagger-initializer.js").await;
    let init = init.body.as_str().unwrap();
    assert!(
        init.contains("/openapi.json") && init.contains("\"validatorUrl\": \"none\""),
        "{init}"
    );
    // API responses keep the strict policy.
    let api = browser.get("/healthz").await;
    assert!(
        api.header("content-security-policy")
            .unwrap()
            .starts_with("default-src 'none'")
    );
}
