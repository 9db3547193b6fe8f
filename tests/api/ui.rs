//! The hosted pages (docs/API.md §10) as HTTP resources: each served with its own strict
//! Content-Security-Policy, in the language `Accept-Language` asks for, at the paths the
//! emails link to; off with `UI_ENABLED=false`; rebranded from `UI_THEME_DIR`. The SDK calls
//! only routes of the API. A real browser drives the pages in `.ci/e2e.sh`
//! (tests/e2e/ui.spec.mjs, and tests/e2e/oauth.spec.mjs for the login and consent step of
//! the OpenID Provider).

use std::collections::BTreeSet;
use std::path::PathBuf;

use logicredit_auth::ui::{ROUTES, Route};
use reqwest::Method;
use serde_json::json;

use crate::helpers::{Backend, Browser, Csrf, TestApp, TestResponse, spawn_app, spawn_app_with};
use crate::on_both_backends;

const PASSWORD: &str = "correct horse battery staple";

on_both_backends!(
    every_page_and_asset_is_served_with_a_strict_policy,
    the_emailed_links_open_the_pages_with_their_token,
    the_language_follows_accept_language,
    the_consent_page_is_served_in_both_languages,
    the_confirmation_page_is_served_in_both_languages,
    the_pages_can_be_turned_off,
    a_theme_replaces_the_look_without_touching_the_behaviour,
);

fn directive(csp: &str, name: &str) -> Option<Vec<String>> {
    csp.split(';').map(str::trim).find_map(|d| {
        let mut parts = d.split_whitespace();
        (parts.next() == Some(name)).then(|| parts.map(str::to_owned).collect())
    })
}

#[track_caller]
fn assert_strict_page_csp(path: &str, response: &TestResponse) {
    let csp = response
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("{path} has a Content-Security-Policy"));
    for forbidden in [
        "'unsafe-inline'",
        "'unsafe-eval'",
        "'unsafe-hashes'",
        "*",
        "http:",
    ] {
        assert!(!csp.contains(forbidden), "{path}: {forbidden} in {csp}");
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
    only("form-action", &["'none'"]);
    only("frame-ancestors", &["'none'"]);
    only("require-trusted-types-for", &["'script'"]);
    let policies = response
        .headers
        .get_all("content-security-policy")
        .iter()
        .count();
    assert_eq!(policies, 1, "{path}: one policy, not the default beside it");
}

async fn get_with(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> TestResponse {
    let mut request = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}{path}", app.address));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    Browser::new(&app.address)
        .execute(request, Csrf::None)
        .await
}

fn html(response: &TestResponse) -> &str {
    response.body.as_str().expect("an HTML body")
}

async fn every_page_and_asset_is_served_with_a_strict_policy(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = app.browser();
    for (path, route) in ROUTES {
        let response = browser.get(path).await;
        if *route == Route::Home {
            assert_eq!(response.status, 303, "{path}: {response:?}");
            assert_eq!(response.header("location"), Some("/ui/account"));
            continue;
        }
        assert_eq!(response.status, 200, "{path}: {response:?}");
        assert_strict_page_csp(path, &response);
        assert_eq!(response.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(
            response.header("referrer-policy"),
            Some("no-referrer"),
            "{path}"
        );
        assert_eq!(response.header("cache-control"), Some("no-store"), "{path}");
        let content_type = response.header("content-type").unwrap_or_default();
        if let Route::Page(_) = route {
            assert_eq!(content_type, "text/html; charset=utf-8", "{path}");
            assert_eq!(response.header("vary"), Some("Accept-Language"), "{path}");
            let page = html(&response);
            assert!(page.starts_with("<!doctype html>"), "{path}");
            // The module script and the texts as JSON data; nothing inline that runs.
            assert_eq!(page.matches("<script").count(), 2, "{path}");
            assert!(page.contains(r#"<script type="module" src="/ui/pages.js"></script>"#));
            assert!(page.contains(r#"<script type="application/json" id="ui-text">"#));
            assert!(
                !page.contains("<style") && !page.contains(" style="),
                "{path}"
            );
            assert!(
                !page.contains("http://") && !page.contains("https://"),
                "{path}: no third-party assets"
            );
            // Every input has a label.
            for id in page
                .split("<input id=\"")
                .skip(1)
                .map(|rest| &rest[..rest.find('"').unwrap()])
            {
                assert!(
                    page.contains(&format!("<label for=\"{id}\">")),
                    "{path}: #{id} has no label"
                );
            }
        }
    }
    // Other methods and unknown files answer like the API does.
    browser
        .post("/ui/login", json!({}))
        .await
        .assert_error(405, "method_not_allowed");
    browser
        .get("/ui/missing.js")
        .await
        .assert_error(404, "not_found");
}

async fn the_emailed_links_open_the_pages_with_their_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = app.browser();
    let email = "link@example.com";
    browser
        .post(
            "/auth/register",
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    let message = app.smtp.wait_for(email).await;
    let token = message.code();
    // The test apps keep the default ORIGIN_URL: the service itself.
    let origin = "http://localhost:8000";
    let link = format!("{origin}/verify-email?token={token}");
    assert!(message.content.contains(&link), "{}", message.content);
    let page = browser.get(&format!("/verify-email?token={token}")).await;
    assert_eq!(page.status, 200);
    assert!(html(&page).contains(&format!("data-token=\"{token}\"")));
    assert!(html(&page).contains("Confirm email address"));

    browser
        .post("/auth/verify-email", json!({"token": token}))
        .await;
    browser
        .post("/auth/password/reset/request", json!({"email": email}))
        .await;
    let reset = app.smtp.wait_for_nth(email, 2).await;
    let token = reset.code();
    assert!(
        reset
            .content
            .contains(&format!("{origin}/reset-password?token={token}"))
    );
    let page = browser.get(&format!("/reset-password?token={token}")).await;
    assert_eq!(page.status, 200);
    assert!(html(&page).contains(&format!("data-token=\"{token}\"")));

    // A link someone tampered with reaches the page without its token: the page says the
    // link is incomplete, and nothing of it is echoed.
    let page = browser
        .get("/reset-password?token=%22%3E%3Cscript%3Ealert(1)%3C/script%3E")
        .await;
    assert_eq!(page.status, 200);
    assert!(html(&page).contains("data-token=\"\""));
    assert!(!html(&page).contains("alert(1)"));
}

async fn the_language_follows_accept_language(backend: Backend) {
    let app = spawn_app(backend).await;
    let german = get_with(
        &app,
        "/ui/login",
        &[("accept-language", "de-CH, de;q=0.9, en;q=0.5")],
    )
    .await;
    assert!(html(&german).contains("<html lang=\"de\">"));
    assert!(html(&german).contains("<h1 id=\"page-title\">Anmelden</h1>"));
    assert!(
        html(&german).contains("Falsch")
            || html(&german).contains("E-Mail-Adresse oder Passwort ist falsch.")
    );
    let english = get_with(
        &app,
        "/ui/login",
        &[("accept-language", "fr-FR, en-GB;q=0.8")],
    )
    .await;
    assert!(html(&english).contains("<html lang=\"en\">"));
    assert!(html(&english).contains("<h1 id=\"page-title\">Sign in</h1>"));
    // No header, or one that names nothing we have: English.
    let default = get_with(&app, "/ui/login", &[]).await;
    assert!(html(&default).contains("<html lang=\"en\">"));
    let garbage = get_with(&app, "/ui/login", &[("accept-language", ";;q=,,*;q=x")]).await;
    assert_eq!(garbage.status, 200);
    assert!(html(&garbage).contains("<html lang=\"en\">"));
}

/// `/ui/consent?request=<id>` (after `/ui/login?request=<id>`, the authorization
/// endpoint's LOGIN_UI_URL): the pages' policy, both languages, the step-up prompt, and the
/// texts its script shows; the request id is read by the script, never echoed by the server.
async fn the_consent_page_is_served_in_both_languages(backend: Backend) {
    let app = spawn_app(backend).await;
    for (accept_language, lang, title, allow, deny, expired) in [
        (
            "en-US,en;q=0.9",
            "en",
            "Allow access",
            "Allow",
            "Deny",
            "This sign-in request has expired",
        ),
        (
            "de-DE,de;q=0.9",
            "de",
            "Zugriff erlauben",
            "Erlauben",
            "Ablehnen",
            "Diese Anmeldeanfrage ist abgelaufen",
        ),
    ] {
        let path = "/ui/consent?request=req%3Cscript%3Eid";
        let page = get_with(&app, path, &[("accept-language", accept_language)]).await;
        assert_eq!(page.status, 200, "{page:?}");
        assert_strict_page_csp(path, &page);
        assert_eq!(page.header("vary"), Some("Accept-Language"));
        let body = html(&page);
        assert!(body.contains(&format!("<html lang=\"{lang}\">")), "{body}");
        assert!(body.contains(r#"<body data-page="consent">"#));
        assert!(body.contains(&format!("<h1 id=\"page-title\">{title}</h1>")));
        assert!(body.contains(&format!(
            r#"<button type="button" id="consent-allow" class="primary">{allow}</button>"#
        )));
        assert!(body.contains(&format!(
            r#"<button type="button" id="consent-deny">{deny}</button>"#
        )));
        assert!(body.contains(r#"<section id="consent" aria-labelledby="consent-intro" hidden>"#));
        assert!(
            body.contains(r#"<dialog id="step-up""#),
            "the step-up prompt"
        );
        assert!(body.contains(r#"id="step-up-recovery-form""#));
        // The script's texts, in the page's language: the scopes in words, the expiry.
        assert!(body.contains(expired), "{body}");
        assert!(body.contains("\"scope-openid\""));
        assert!(body.contains("\"payment-iban\""));
        assert!(body.contains("{client}"), "placeables left for the script");
        assert!(!body.contains("req<script>") && !body.contains("reqscript"));
        assert_eq!(body.matches("<script").count(), 2);
    }
    // The login page has the slots the OAuth step fills: who asks, and a way to cancel.
    let login = get_with(&app, "/ui/login?request=abc", &[]).await;
    let body = html(&login);
    assert!(body.contains(r#"<p id="oauth-client" hidden></p>"#));
    assert!(body.contains(r#"id="oauth-cancel""#));
    assert!(body.contains("Sign in to continue to {client}."));
}

/// `/ui/confirm?transaction=<id>` (docs/API.md §9): the pages' policy, both languages, the
/// payment section with its factors (hidden until the script has shown the details), and
/// the texts its script shows; the transaction id is read by the script, never echoed. The
/// consent page carries the same section for a payment's confirmation.
async fn the_confirmation_page_is_served_in_both_languages(backend: Backend) {
    let app = spawn_app(backend).await;
    for (accept_language, lang, title, passkey, confirmed) in [
        (
            "en-US,en;q=0.9",
            "en",
            "Confirm a payment",
            "Confirm with passkey",
            "Payment confirmed.",
        ),
        (
            "de-DE,de;q=0.9",
            "de",
            "Zahlung bestätigen",
            "Mit Passkey bestätigen",
            "Zahlung bestätigt.",
        ),
    ] {
        let path = "/ui/confirm?transaction=tx%3Cscript%3Eid&return=%2Fui%2Faccount";
        let page = get_with(&app, path, &[("accept-language", accept_language)]).await;
        assert_eq!(page.status, 200, "{page:?}");
        assert_strict_page_csp(path, &page);
        assert_eq!(page.header("vary"), Some("Accept-Language"));
        let body = html(&page);
        assert!(body.contains(&format!("<html lang=\"{lang}\">")), "{body}");
        assert!(body.contains(r#"<body data-page="confirm">"#));
        assert!(body.contains(&format!("<h1 id=\"page-title\">{title}</h1>")));
        assert!(body.contains(r#"<section id="txn" aria-labelledby="txn-title" hidden>"#));
        // The factors stay hidden until the script has filled in the payment.
        assert!(body.contains(r#"<div id="txn-factors" hidden>"#));
        assert!(body.contains(&format!(
            r#"<button type="button" id="txn-passkey" class="primary">{passkey}</button>"#
        )));
        assert!(body.contains(r#"id="txn-totp-form""#));
        assert!(body.contains(confirmed), "{body}");
        assert!(body.contains("\"error-invalid_transaction\""));
        assert!(body.contains("\"payment-iban\""));
        assert!(!body.contains("tx<script>") && !body.contains("txscript"));
        assert_eq!(body.matches("<script").count(), 2);
    }
    let consent = get_with(&app, "/ui/consent?request=abc", &[]).await;
    assert!(html(&consent).contains(r#"<section id="txn" aria-labelledby="txn-title" hidden>"#));
}

async fn the_pages_can_be_turned_off(backend: Backend) {
    let app = spawn_app_with(backend, &[("UI_ENABLED", "false")]).await;
    let browser = app.browser();
    for (path, _) in ROUTES {
        let response = browser.get(path).await;
        response.assert_error(404, "not_found");
        // The strictest default policy, not the pages'.
        let csp = response.header("content-security-policy").unwrap();
        assert_eq!(directive(csp, "script-src"), None, "{path}: {csp}");
    }
    let head = browser
        .send(Method::HEAD, "/ui/login", None, Csrf::None)
        .await;
    assert_eq!(head.status, 404);
    assert_eq!(
        browser.get("/healthz").await.status,
        200,
        "the API itself is up"
    );
}

/// The example theme in tests/fixtures/ui-theme: its own stylesheet and sign-in template.
fn example_theme() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ui-theme")
}

async fn a_theme_replaces_the_look_without_touching_the_behaviour(backend: Backend) {
    let theme = example_theme().display().to_string();
    let app = spawn_app_with(backend, &[("UI_THEME_DIR", &theme)]).await;
    let browser = app.browser();
    let css = browser.get("/ui/ui.css").await;
    assert!(
        css.body.as_str().unwrap().contains("--accent: #7a1f5c"),
        "{css:?}"
    );
    let login = browser.get("/ui/login").await;
    assert!(html(&login).contains("Example Bank"), "the themed template");
    assert!(
        html(&login).contains("id=\"login-form\""),
        "the form the script drives"
    );
    let register = browser.get("/ui/register").await;
    assert!(
        html(&register).contains("id=\"register-form\""),
        "the built-in template"
    );
    assert_strict_page_csp("/ui/login", &login);
}

/// Every `/auth/…` path the SDK calls is a route of the OpenAPI document, and the SDK
/// covers what the pages need.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_calls_only_routes_of_the_api() {
    let app = spawn_app(Backend::Embedded).await;
    let browser = app.browser();
    let sdk = browser.get("/ui/sdk.js").await;
    assert_eq!(
        sdk.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    let script = sdk.body.as_str().unwrap();
    let spec = browser.get("/openapi.json").await;
    let operations: BTreeSet<(String, String)> = spec.body["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(|method| (method.to_uppercase(), with_id_parameters(path)))
                .collect::<Vec<_>>()
        })
        .collect();
    // `this.request("POST", "/auth/…"` and template literals with `${…}` for ids.
    let mut called = BTreeSet::new();
    for (start, _) in script.match_indices("this.request(\"") {
        let rest = &script[start + "this.request(\"".len()..];
        let method = &rest[..rest.find('"').unwrap()];
        let rest = &rest[method.len() + 1..];
        let rest = rest.trim_start_matches([',', ' ', '\n']);
        let quote = rest.chars().next().unwrap();
        let literal = &rest[1..1 + rest[1..].find(quote).unwrap()];
        // Each `${…}` is a path parameter: `/auth/oauth/requests/${…}/accept`.
        let mut path = String::new();
        let mut tail = literal;
        while let Some((head, rest)) = tail.split_once("${") {
            path.push_str(head);
            path.push_str("{id}");
            tail = rest.split_once('}').map_or("", |(_, after)| after);
        }
        path.push_str(tail);
        called.insert((method.to_owned(), path));
    }
    assert!(called.len() >= 28, "{called:?}");
    for oauth in [
        ("GET", "/auth/oauth/requests/{id}"),
        ("POST", "/auth/oauth/requests/{id}/accept"),
        ("POST", "/auth/oauth/requests/{id}/reject"),
        // Transaction confirmation (§9): the confirmation page and the consent step.
        ("POST", "/auth/transactions"),
        ("GET", "/auth/transactions/{id}"),
        ("POST", "/auth/transactions/{id}/webauthn/start"),
        ("POST", "/auth/transactions/{id}/webauthn/finish"),
        ("POST", "/auth/transactions/{id}/totp"),
    ] {
        assert!(
            called.contains(&(oauth.0.to_owned(), oauth.1.to_owned())),
            "{called:?}"
        );
    }
    let missing: Vec<_> = called.difference(&operations).collect();
    assert!(
        missing.is_empty(),
        "the SDK calls routes the API does not have: {missing:?}"
    );
    let types = browser.get("/ui/sdk.d.ts").await;
    assert!(
        types
            .body
            .as_str()
            .unwrap()
            .contains("export declare class AuthClient")
    );
}

/// An OpenAPI path with each `{parameter}` named `{id}`, as the SDK's paths are read.
fn with_id_parameters(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some((head, tail)) = rest.split_once('{') {
        out.push_str(head);
        out.push_str("{id}");
        rest = tail.split_once('}').map_or("", |(_, after)| after);
    }
    out.push_str(rest);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_serves_the_pages_too() {
    let app = spawn_app_with(
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
    .await;
    let browser = app.browser();
    let login = browser.get("/ui/login").await;
    assert_eq!(login.status, 200);
    assert_strict_page_csp("/ui/login", &login);
    assert!(login.header("strict-transport-security").is_some());
    // The development-only demo page is gone for good.
    browser.get("/demo").await.assert_error(404, "not_found");
}
