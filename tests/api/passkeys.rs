//! docs/API.md §3 WebAuthn routes with full ceremonies against a software authenticator.

use std::time::Duration;

use serde_json::{Value, json};

use crate::authenticators::{Passkey, passkey_login};
use crate::helpers::{Backend, Browser, PASSWORD, spawn_app, spawn_app_with};
use crate::on_both_backends;

/// Registers a passkey on a logged-in browser; returns the finish response body.
pub(crate) async fn register(browser: &Browser, passkey: &Passkey, name: &str) -> Value {
    let start = browser
        .post("/auth/webauthn/register/start", json!({}))
        .await;
    assert_eq!(
        start.body["code"], "webauthn_registration_options",
        "{start:?}"
    );
    let credential = passkey.register(&start.body["options"]).await;
    let finish = browser
        .post(
            "/auth/webauthn/register/finish",
            json!({"ceremony_id": start.body["ceremony_id"], "credential": credential, "name": name}),
        )
        .await;
    assert_eq!(finish.status, 201, "{finish:?}");
    finish.body
}

async fn user_id(browser: &Browser) -> String {
    browser.get("/auth/me").await.body["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn a_passkey_registers_and_completes_a_password_login(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.logged_in("alice@example.com").await;
    let key = Passkey::new();

    let start = alice.post("/auth/webauthn/register/start", json!({})).await;
    let selection = &start.body["options"]["publicKey"]["authenticatorSelection"];
    assert_eq!(selection["residentKey"], "preferred");
    assert_eq!(selection["userVerification"], "required");
    let credential = key.register(&start.body["options"]).await;
    let body = json!({"ceremony_id": start.body["ceremony_id"], "credential": credential, "name": "Laptop"});
    let finish = alice
        .post("/auth/webauthn/register/finish", body.clone())
        .await;
    assert_eq!(finish.status, 201);
    assert_eq!(finish.body["code"], "webauthn_registered");
    assert_eq!(finish.body["credential"]["name"], "Laptop");
    assert_eq!(
        finish.body["recovery_codes"].as_array().unwrap().len(),
        10,
        "first factor brings recovery codes"
    );
    // A ceremony is single-use.
    alice
        .post("/auth/webauthn/register/finish", body)
        .await
        .assert_error(400, "invalid_ceremony");

    let listed = alice.get("/auth/webauthn/credentials").await;
    let credentials = listed.body["credentials"].as_array().unwrap();
    assert_eq!(credentials.len(), 1);
    assert_eq!(credentials[0]["name"], "Laptop");
    assert_eq!(credentials[0]["last_used_at"], Value::Null);
    // The stored passkey is encrypted.
    let stored = app
        .query("SELECT passkey_ciphertext FROM webauthn_credentials")
        .await;
    assert!(!stored[0].as_str().unwrap().contains("cred_id"));

    // A second registration excludes the first credential.
    let second = alice.post("/auth/webauthn/register/start", json!({})).await;
    assert_eq!(
        second.body["options"]["publicKey"]["excludeCredentials"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let browser = app.browser();
    let login = browser
        .post(
            "/auth/login",
            json!({"email": "alice@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(login.body["code"], "mfa_required");
    assert_eq!(login.body["methods"], json!(["webauthn", "recovery_code"]));
    let challenge = browser.post("/auth/webauthn/login/start", json!({})).await;
    assert_eq!(
        challenge.body["code"], "webauthn_authentication_options",
        "{challenge:?}"
    );
    let assertion = key.sign_in(&challenge.body["options"]).await;
    let done = browser
        .post(
            "/auth/webauthn/login/finish",
            json!({"ceremony_id": challenge.body["ceremony_id"], "credential": assertion}),
        )
        .await;
    assert_eq!(done.body["code"], "login_ok", "{done:?}");
    assert_eq!(done.body["user"]["mfa"]["webauthn_credentials"], 1);
    assert!(
        browser.get("/auth/webauthn/credentials").await.body["credentials"][0]["last_used_at"]
            .is_string()
    );
}

async fn passkeys_sign_in_without_a_password(backend: Backend) {
    let app = spawn_app(backend).await;
    let bob = app.logged_in("bob@example.com").await;
    let key = Passkey::new();
    let registered = register(&bob, &key, "Phone").await;
    let bob_id = user_id(&bob).await;
    let credential_id = {
        let start = bob.post("/auth/webauthn/register/start", json!({})).await;
        start.body["options"]["publicKey"]["excludeCredentials"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(registered["credential"]["name"], "Phone");

    // Discoverable: no email, no session.
    let visitor = app.browser();
    let start = visitor
        .send(
            reqwest::Method::POST,
            "/auth/webauthn/login/start",
            None,
            crate::helpers::Csrf::None,
        )
        .await;
    assert_eq!(
        start.body["code"], "webauthn_authentication_options",
        "{start:?}"
    );
    let allowed = &start.body["options"]["publicKey"]["allowCredentials"];
    assert!(allowed.is_null() || allowed.as_array().unwrap().is_empty());
    assert_eq!(
        start.body["options"]["publicKey"]["userVerification"],
        "required"
    );
    let assertion = key
        .sign_in_discoverable(&start.body["options"], &credential_id, &bob_id)
        .await;
    let done = visitor
        .post(
            "/auth/webauthn/login/finish",
            json!({"ceremony_id": start.body["ceremony_id"], "credential": assertion}),
        )
        .await;
    assert_eq!(done.body["code"], "login_ok", "{done:?}");
    // A passkey with user verification counts as MFA: step-up is fresh at once.
    assert_eq!(
        visitor.post("/auth/step-up/confirm", json!({})).await.body["code"],
        "step_up_confirmed"
    );

    // By email: the account's credentials are offered.
    let by_email = app.browser();
    let start = by_email
        .post(
            "/auth/webauthn/login/start",
            json!({"email": "BOB@example.com"}),
        )
        .await;
    assert_eq!(
        start.body["options"]["publicKey"]["allowCredentials"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let assertion = key.sign_in(&start.body["options"]).await;
    let done = by_email
        .post(
            "/auth/webauthn/login/finish",
            json!({"ceremony_id": start.body["ceremony_id"], "credential": assertion}),
        )
        .await;
    assert_eq!(done.body["code"], "login_ok", "{done:?}");

    // An unknown email gets a ceremony all the same (nothing to enumerate).
    let unknown = app
        .browser()
        .post(
            "/auth/webauthn/login/start",
            json!({"email": "nobody@example.com"}),
        )
        .await;
    assert_eq!(unknown.body["code"], "webauthn_authentication_options");
    let events = app.audit_events().await;
    assert!(
        events
            .iter()
            .filter(|e| *e == "mfa.webauthn.success")
            .count()
            >= 2
    );
}

async fn assertions_from_the_wrong_origin_or_a_cloned_key_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let carol = app.logged_in("carol@example.com").await;
    let key = Passkey::new();
    register(&carol, &key, "Key").await;

    // Right key, wrong origin (a phishing page on another port).
    let browser = app.browser();
    let start = browser
        .post(
            "/auth/webauthn/login/start",
            json!({"email": "carol@example.com"}),
        )
        .await;
    let phished = key
        .sign_in_at("http://localhost:9999", &start.body["options"])
        .await;
    browser
        .post(
            "/auth/webauthn/login/finish",
            json!({"ceremony_id": start.body["ceremony_id"], "credential": phished}),
        )
        .await
        .assert_error(401, "webauthn_failed");

    // A counter that goes backwards: the server has seen 100 signatures already.
    app.execute("UPDATE webauthn_credentials SET sign_count = 100")
        .await;
    let start = browser
        .post(
            "/auth/webauthn/login/start",
            json!({"email": "carol@example.com"}),
        )
        .await;
    let cloned = key.sign_in(&start.body["options"]).await;
    browser
        .post(
            "/auth/webauthn/login/finish",
            json!({"ceremony_id": start.body["ceremony_id"], "credential": cloned}),
        )
        .await
        .assert_error(401, "webauthn_failed");
    let reasons = app
        .query("SELECT metadata FROM audit_log WHERE event = 'mfa.webauthn.failure' ORDER BY seq")
        .await;
    let reasons: Vec<String> = reasons
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("wrong_origin")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("counter_regression")),
        "{reasons:?}"
    );

    // Garbage and unknown ceremonies.
    browser
        .post(
            "/auth/webauthn/login/finish",
            json!({"ceremony_id": "nope", "credential": cloned}),
        )
        .await
        .assert_error(400, "invalid_ceremony");
    browser
        .post(
            "/auth/webauthn/login/finish",
            json!({"ceremony_id": "nope", "credential": {"id": 1}}),
        )
        .await
        .assert_error(422, "validation_error");
}

async fn ceremonies_are_bound_to_the_session_that_started_them(backend: Backend) {
    let app = spawn_app(backend).await;
    let dan = app.logged_in("dan@example.com").await;
    let eve = app.logged_in("eve@example.com").await;
    let key = Passkey::new();
    let start = dan.post("/auth/webauthn/register/start", json!({})).await;
    let credential = key.register(&start.body["options"]).await;
    eve.post(
        "/auth/webauthn/register/finish",
        json!({"ceremony_id": start.body["ceremony_id"], "credential": credential}),
    )
    .await
    .assert_error(400, "invalid_ceremony");
    assert_eq!(
        app.query("SELECT COUNT(*) FROM webauthn_credentials").await,
        vec![json!(0)]
    );
}

async fn deleting_a_passkey_needs_fresh_mfa_and_only_touches_your_own(backend: Backend) {
    let app = spawn_app_with(backend, &[("STEP_UP_MAX_AGE_SECONDS", "1")]).await;
    let fay = app.logged_in("fay@example.com").await;
    let key = Passkey::new();
    let registered = register(&fay, &key, "Old phone").await;
    let id = registered["credential"]["id"].as_str().unwrap().to_owned();
    let mallory = app.logged_in("mallory@example.com").await;
    register(&mallory, &Passkey::new(), "M").await;
    mallory
        .delete(&format!("/auth/webauthn/credentials/{id}"))
        .await
        .assert_error(404, "not_found");

    tokio::time::sleep(Duration::from_millis(1300)).await;
    let stale = fay
        .delete(&format!("/auth/webauthn/credentials/{id}"))
        .await;
    stale.assert_error(401, "mfa_step_up_required");
    assert_eq!(stale.body["methods"], json!(["webauthn", "recovery_code"]));

    // Step up with the passkey on the active session.
    let stepped = passkey_login(&fay, json!({}), &key).await;
    assert_eq!(stepped.body, json!({"code": "mfa_verified"}));

    fay.delete(&format!(
        "/auth/webauthn/credentials/{}",
        uuid::Uuid::new_v4()
    ))
    .await
    .assert_error(404, "not_found");
    let deleted = fay
        .delete(&format!("/auth/webauthn/credentials/{id}"))
        .await;
    assert_eq!(deleted.body, json!({"code": "webauthn_credential_deleted"}));
    let me = fay.get("/auth/me").await;
    assert_eq!(
        me.body["user"]["mfa"],
        json!({"totp": false, "webauthn_credentials": 0, "recovery_codes_left": 0})
    );
    // Emails: verification, passkey added, passkey removed.
    let notice = app.smtp.wait_for_nth("fay@example.com", 3).await;
    assert!(notice.content.contains("removed"), "{notice:?}");
}

/// Extension (docs/API.md §10): a passkey's name can be changed by its owner only; it is
/// cleaned like a name given at registration, and the change is audited.
async fn a_passkey_can_be_renamed_by_its_owner_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let gil = app.logged_in("gil@example.com").await;
    let registered = register(&gil, &Passkey::new(), "Phone").await;
    let id = registered["credential"]["id"].as_str().unwrap().to_owned();
    let path = format!("/auth/webauthn/credentials/{id}");

    let renamed = gil
        .patch(&path, json!({"name": "  Work\u{0007} laptop  "}))
        .await;
    assert_eq!(renamed.status, 200, "{renamed:?}");
    assert_eq!(renamed.body["code"], "webauthn_credential_renamed");
    assert_eq!(renamed.body["credential"]["name"], "Work laptop");
    assert_eq!(renamed.body["credential"]["id"], id.as_str());
    let listed = gil.get("/auth/webauthn/credentials").await;
    assert_eq!(listed.body["credentials"][0]["name"], "Work laptop");
    let too_long = gil.patch(&path, json!({"name": "x".repeat(200)})).await;
    assert_eq!(
        too_long.body["credential"]["name"]
            .as_str()
            .unwrap()
            .chars()
            .count(),
        64
    );

    // Someone else's id, an unknown one and a malformed one are all 404; nothing changes.
    let other = app.logged_in("hal@example.com").await;
    other
        .patch(&path, json!({"name": "Mine now"}))
        .await
        .assert_error(404, "not_found");
    gil.patch(
        &format!("/auth/webauthn/credentials/{}", uuid::Uuid::new_v4()),
        json!({"name": "x"}),
    )
    .await
    .assert_error(404, "not_found");
    gil.patch(
        "/auth/webauthn/credentials/not-a-uuid",
        json!({"name": "x"}),
    )
    .await
    .assert_error(404, "not_found");
    // A write without the CSRF token, and a body without a name, are refused.
    gil.send(
        reqwest::Method::PATCH,
        &path,
        Some(json!({"name": "x"})),
        crate::helpers::Csrf::None,
    )
    .await
    .assert_error(403, "csrf_failed");
    gil.patch(&path, json!({}))
        .await
        .assert_error(422, "validation_error");
    let listed = gil.get("/auth/webauthn/credentials").await;
    assert_eq!(
        listed.body["credentials"][0]["name"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    assert!(
        app.audit_events()
            .await
            .iter()
            .any(|e| e == "mfa.webauthn.renamed")
    );
}

on_both_backends!(
    a_passkey_can_be_renamed_by_its_owner_only,
    a_passkey_registers_and_completes_a_password_login,
    passkeys_sign_in_without_a_password,
    assertions_from_the_wrong_origin_or_a_cloned_key_are_refused,
    ceremonies_are_bound_to_the_session_that_started_them,
    deleting_a_passkey_needs_fresh_mfa_and_only_touches_your_own
);

/// A ceremony started on one instance finishes on another (state lives in Redis).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ceremony_can_finish_on_another_instance() {
    let first = spawn_app(Backend::PostgresRedis).await;
    let second = first.sibling(&[]).await;
    let on_first = first.logged_in("gus@example.com").await;
    let key = Passkey::new();
    register(&on_first, &key, "Key").await;

    let visitor_first = first.browser();
    let start = visitor_first
        .post(
            "/auth/webauthn/login/start",
            json!({"email": "gus@example.com"}),
        )
        .await;
    let assertion = key.sign_in(&start.body["options"]).await;
    let visitor_second = Browser::new(&second.address);
    let done = visitor_second
        .post(
            "/auth/webauthn/login/finish",
            json!({"ceremony_id": start.body["ceremony_id"], "credential": assertion}),
        )
        .await;
    assert_eq!(done.body["code"], "login_ok", "{done:?}");
}
