//! docs/API.md §3 login, §2 cookies, §4 password hashing and enumeration safety.

use logicredit_auth::storage::db::audit::{ChainCheck, verify_chain};
use serde_json::json;

use crate::helpers::{Backend, PASSWORD, spawn_app, spawn_app_with};
use crate::on_both_backends;

async fn login_returns_the_user_the_session_and_a_csrf_token(backend: Backend) {
    let app = spawn_app(backend).await;
    app.verified_user("alice@example.com").await;
    let browser = app.browser();
    let response = browser
        .post(
            "/auth/login",
            json!({"email": " ALICE@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(response.status, 200);
    let body = &response.body;
    assert_eq!(body["code"], "login_ok");
    assert_eq!(body["user"]["email"], "alice@example.com");
    assert_eq!(body["user"]["role"], "user");
    assert_eq!(body["user"]["email_verified"], true);
    assert_eq!(
        body["user"]["mfa"],
        json!({"totp": false, "webauthn_credentials": 0, "recovery_codes_left": 0})
    );
    assert!(body["session"]["id"].is_string());
    assert!(
        body["session"]["expires_at"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert!(body["session"]["idle_expires_at"].is_string());
    let csrf = body["csrf_token"].as_str().unwrap();
    assert_eq!(browser.cookie("csrf_token").as_deref(), Some(csrf));

    // The cookie holds a ≥ 256-bit token; the database only its hash.
    let token = browser.cookie("session").unwrap();
    assert!(token.len() >= 43, "{token}");
    let stored = app.query("SELECT token_hash FROM sessions").await;
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0], json!(token));
    assert_eq!(stored[0].as_str().unwrap().len(), 64);
}

async fn wrong_password_and_unknown_email_are_indistinguishable(backend: Backend) {
    let app = spawn_app(backend).await;
    app.verified_user("bob@example.com").await;
    let browser = app.browser();
    let wrong = browser
        .post(
            "/auth/login",
            json!({"email": "bob@example.com", "password": "not the password at all"}),
        )
        .await;
    let unknown = browser
        .post(
            "/auth/login",
            json!({"email": "nobody@example.com", "password": "not the password at all"}),
        )
        .await;
    wrong.assert_error(401, "invalid_credentials");
    assert_eq!((wrong.status, &wrong.body), (unknown.status, &unknown.body));
    assert!(wrong.set_cookies().is_empty() && unknown.set_cookies().is_empty());
    let failures = app
        .query("SELECT COUNT(*) FROM audit_log WHERE event = 'login.failure'")
        .await;
    assert_eq!(failures, vec![json!(2)]);
}

async fn production_cookie_attributes_are_strict(backend: Backend) {
    let app = spawn_app_with(backend, &[("COOKIE_SECURE", "true")]).await;
    app.verified_user("dan@example.com").await;
    let response = app
        .browser()
        .post(
            "/auth/login",
            json!({"email": "dan@example.com", "password": PASSWORD}),
        )
        .await;
    let cookies = response.set_cookies();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("__Host-session="))
        .expect("session cookie");
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(session.contains(attribute), "{session} lacks {attribute}");
    }
    assert!(
        !session.contains("Domain="),
        "__Host- cookies carry no Domain"
    );
    let csrf = cookies
        .iter()
        .find(|c| c.starts_with("csrf_token="))
        .expect("csrf cookie");
    assert!(csrf.contains("Secure") && csrf.contains("SameSite=Strict") && csrf.contains("Path=/"));
    assert!(
        !csrf.contains("HttpOnly"),
        "the front end must read the CSRF cookie"
    );
}

async fn hashes_are_upgraded_when_the_parameters_change(backend: Backend) {
    let app = spawn_app(backend).await;
    app.verified_user("erin@example.com").await;
    let before = app.query("SELECT password_hash FROM users").await;
    assert!(
        before[0]
            .as_str()
            .unwrap()
            .starts_with("$argon2id$v=19$m=256,t=1,p=1$")
    );

    let stronger = app
        .sibling(&[("ARGON2_MEMORY_KIB", "512"), ("ARGON2_ITERATIONS", "2")])
        .await;
    stronger.login("erin@example.com").await;
    let after = app.query("SELECT password_hash FROM users").await;
    assert!(
        after[0]
            .as_str()
            .unwrap()
            .starts_with("$argon2id$v=19$m=512,t=2,p=1$"),
        "{after:?}"
    );
    // And the upgraded hash still verifies.
    stronger.login("erin@example.com").await;
}

async fn a_new_pepper_is_rolled_in_at_the_next_login(backend: Backend) {
    let app = spawn_app_with(backend, &[("PASSWORD_PEPPER", "first-pepper-secret")]).await;
    app.verified_user("fay@example.com").await;
    let first = app.query("SELECT password_pepper_id FROM users").await;
    assert!(first[0].is_string());

    let rotated = app
        .sibling(&[
            ("PASSWORD_PEPPER", "second-pepper-secret"),
            ("PASSWORD_PEPPERS_OLD", "first-pepper-secret"),
        ])
        .await;
    rotated.login("fay@example.com").await;
    let second = app.query("SELECT password_pepper_id FROM users").await;
    assert!(second[0].is_string());
    assert_ne!(first, second);
}

async fn login_events_form_an_intact_audit_chain(backend: Backend) {
    let app = spawn_app(backend).await;
    app.verified_user("gus@example.com").await;
    app.login("gus@example.com").await;
    app.browser()
        .post(
            "/auth/login",
            json!({"email": "gus@example.com", "password": "wrong password here"}),
        )
        .await;
    let check = verify_chain(app.db.connection(), &crate::helpers::audit_keys())
        .await
        .unwrap();
    assert!(
        matches!(check, ChainCheck::Intact { records } if records >= 6),
        "{check:?}"
    );
    let with_context = app
        .query("SELECT COUNT(*) FROM audit_log WHERE event = 'login.success' AND ip = '127.0.0.1' AND request_id IS NOT NULL")
        .await;
    assert_eq!(with_context, vec![json!(1)]);
}

on_both_backends!(
    login_returns_the_user_the_session_and_a_csrf_token,
    wrong_password_and_unknown_email_are_indistinguishable,
    production_cookie_attributes_are_strict,
    hashes_are_upgraded_when_the_parameters_change,
    a_new_pepper_is_rolled_in_at_the_next_login,
    login_events_form_an_intact_audit_chain
);
