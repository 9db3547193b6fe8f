//! docs/API.md §2 mfa_pending sessions, §3 TOTP / recovery codes / step-up, §7 their rules.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::authenticators::AuthenticatorApp;
use crate::helpers::{
    Backend, Browser, Csrf, ENCRYPTION_KEY, PASSWORD, TestApp, spawn_app, spawn_app_with,
};
use crate::on_both_backends;

/// Enrolls TOTP on a logged-in browser; returns the app and the recovery codes.
pub async fn enroll_totp(browser: &Browser) -> (AuthenticatorApp, Vec<String>) {
    let setup = browser.post("/auth/mfa/totp/setup", json!({})).await;
    assert_eq!(setup.body["code"], "totp_setup_started", "{setup:?}");
    let app = AuthenticatorApp::from_setup(&setup.body);
    let enabled = browser
        .post("/auth/mfa/totp/verify", json!({"code": app.code(0)}))
        .await;
    assert_eq!(enabled.body["code"], "totp_enabled", "{enabled:?}");
    let codes = enabled.body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    (app, codes)
}

/// Enrolls TOTP and then uses it once (the next step's code): a real verification, which
/// staff and admin routes require — enrolling alone never satisfies them.
pub async fn enroll_verified_totp(browser: &Browser) -> (AuthenticatorApp, Vec<String>) {
    let (app, codes) = enroll_totp(browser).await;
    let verified = browser
        .post("/auth/mfa/totp/verify", json!({"code": app.code(1)}))
        .await;
    assert_eq!(verified.body["code"], "mfa_verified", "{verified:?}");
    (app, codes)
}

/// Password step only: a browser holding an mfa_pending session.
pub(crate) async fn pending(app: &TestApp, email: &str) -> (Browser, Value) {
    let browser = app.browser();
    let response = browser
        .post("/auth/login", json!({"email": email, "password": PASSWORD}))
        .await;
    assert_eq!(response.body["code"], "mfa_required", "{response:?}");
    (browser, response.body)
}

async fn totp_enrollment_then_login_needs_the_code(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.logged_in("alice@example.com").await;
    let setup = alice.post("/auth/mfa/totp/setup", json!({})).await;
    assert_eq!(setup.status, 200);
    let secret = setup.body["secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 32, "160-bit secret in base32");
    let uri = setup.body["otpauth_uri"].as_str().unwrap();
    assert!(
        uri.starts_with("otpauth://totp/Logicredit:alice%40example.com?"),
        "{uri}"
    );
    assert!(
        uri.contains(&format!("secret={secret}")) && uri.contains("issuer=Logicredit"),
        "{uri}"
    );
    assert!(setup.body["qr_svg"].as_str().unwrap().contains("<svg"));
    // Stored encrypted, never as the secret itself.
    let stored = app
        .query("SELECT secret_ciphertext FROM totp_credentials")
        .await;
    assert!(!stored[0].as_str().unwrap().contains(&secret));

    let phone = AuthenticatorApp::from_setup(&setup.body);
    alice
        .post("/auth/mfa/totp/verify", json!({"code": "000000"}))
        .await
        .assert_error(401, "invalid_mfa_code");
    let enabled = alice
        .post("/auth/mfa/totp/verify", json!({"code": phone.code(0)}))
        .await;
    assert_eq!(enabled.body["code"], "totp_enabled");
    assert_eq!(enabled.body["recovery_codes"].as_array().unwrap().len(), 10);
    let me = alice.get("/auth/me").await;
    assert_eq!(
        me.body["user"]["mfa"],
        json!({"totp": true, "webauthn_credentials": 0, "recovery_codes_left": 10})
    );
    alice
        .post("/auth/mfa/totp/setup", json!({}))
        .await
        .assert_error(409, "totp_already_enabled");
    let notice = app.smtp.wait_for_nth("alice@example.com", 2).await;
    assert!(notice.content.contains("turned on"), "{notice:?}");

    // Password alone now gives an mfa_pending session that only the MFA routes accept.
    let (browser, body) = pending(&app, "alice@example.com").await;
    assert_eq!(body["methods"], json!(["totp", "recovery_code"]));
    let pending_csrf = body["csrf_token"].as_str().unwrap().to_owned();
    let pending_token = browser.cookie("session").unwrap();
    browser
        .get("/auth/me")
        .await
        .assert_error(401, "mfa_required");
    browser
        .get("/auth/sessions")
        .await
        .assert_error(401, "mfa_required");
    assert_eq!(
        browser.get("/auth/csrf").await.body["csrf_token"],
        json!(pending_csrf)
    );

    // The next step's code (the current one was spent on enrollment).
    let done = browser
        .post("/auth/mfa/totp/verify", json!({"code": phone.code(1)}))
        .await;
    assert_eq!(done.body["code"], "login_ok", "{done:?}");
    assert_ne!(
        done.body["csrf_token"],
        json!(pending_csrf),
        "CSRF token rotates with the session"
    );
    assert_ne!(
        browser.cookie("session").unwrap(),
        pending_token,
        "session token rotates"
    );
    assert_eq!(browser.get("/auth/me").await.status, 200);
    let old = app.browser();
    old.set_cookie("session", &pending_token);
    old.get("/auth/csrf")
        .await
        .assert_error(401, "not_authenticated");
    let sessions = browser.get("/auth/sessions").await;
    let current = sessions.body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == true)
        .unwrap()
        .clone();
    assert!(current["mfa_verified_at"].is_string());
    let events = app.audit_events().await;
    for event in [
        "mfa.totp.setup_started",
        "mfa.totp.enabled",
        "mfa.challenge_issued",
        "mfa.totp.success",
        "session.rotated",
    ] {
        assert!(
            events.contains(&event.to_owned()),
            "{event} missing from {events:?}"
        );
    }
}

async fn totp_codes_work_once_within_one_step_of_skew(backend: Backend) {
    let app = spawn_app(backend).await;
    let bob = app.logged_in("bob@example.com").await;
    let (phone, _) = enroll_totp(&bob).await;
    let (browser, _) = pending(&app, "bob@example.com").await;
    // The enrollment code again: a replay, refused, audited, and the owner told.
    browser
        .post("/auth/mfa/totp/verify", json!({"code": phone.code(0)}))
        .await
        .assert_error(401, "invalid_mfa_code");
    let replays = app.query("SELECT COUNT(*) FROM audit_log WHERE event = 'mfa.totp.failure' AND metadata LIKE '%replayed%'").await;
    assert_eq!(replays, vec![json!(1)]);
    let warning = app.smtp.wait_for_nth("bob@example.com", 3).await;
    assert!(warning.content.contains("already been used"), "{warning:?}");
    // Four steps ahead is outside the ±1 step window.
    browser
        .post("/auth/mfa/totp/verify", json!({"code": phone.code(4)}))
        .await
        .assert_error(401, "invalid_mfa_code");
    for garbage in ["12345", "abcdef", "1234567"] {
        browser
            .post("/auth/mfa/totp/verify", json!({"code": garbage}))
            .await
            .assert_error(401, "invalid_mfa_code");
    }
    browser
        .post("/auth/mfa/totp/verify", json!({"code": 123456}))
        .await
        .assert_error(422, "validation_error");
    // That was five failures: the account is locked, even for the right code.
    browser
        .post("/auth/mfa/totp/verify", json!({"code": phone.code(1)}))
        .await
        .assert_error(429, "account_locked");
}

async fn recovery_codes_complete_a_login_once_each(backend: Backend) {
    let app = spawn_app(backend).await;
    let carol = app.logged_in("carol@example.com").await;
    let (_, codes) = enroll_totp(&carol).await;
    assert_eq!(codes.len(), 10);

    let (browser, _) = pending(&app, "carol@example.com").await;
    let typed = codes[0].to_uppercase().replace('-', " ");
    let done = browser
        .post("/auth/mfa/recovery/verify", json!({"code": typed}))
        .await;
    assert_eq!(done.body["code"], "login_ok", "{done:?}");
    assert_eq!(done.body["user"]["mfa"]["recovery_codes_left"], 9);

    let (again, _) = pending(&app, "carol@example.com").await;
    again
        .post("/auth/mfa/recovery/verify", json!({"code": codes[0]}))
        .await
        .assert_error(401, "invalid_mfa_code");
    // On an active, fresh session a code is a step-up.
    let stepped = browser
        .post("/auth/mfa/recovery/verify", json!({"code": codes[1]}))
        .await;
    assert_eq!(stepped.body, json!({"code": "mfa_verified"}));

    // Regenerating (fresh MFA) replaces every old code.
    let fresh = browser
        .post("/auth/mfa/recovery/regenerate", json!({}))
        .await;
    assert_eq!(fresh.body["code"], "recovery_codes_regenerated");
    assert_eq!(fresh.body["recovery_codes"].as_array().unwrap().len(), 10);
    again
        .post("/auth/mfa/recovery/verify", json!({"code": codes[2]}))
        .await
        .assert_error(401, "invalid_mfa_code");
    let new_code = fresh.body["recovery_codes"][0].as_str().unwrap();
    assert_eq!(
        again
            .post("/auth/mfa/recovery/verify", json!({"code": new_code}))
            .await
            .body["code"],
        "login_ok"
    );
}

async fn passing_the_password_step_does_not_reset_the_lockout(backend: Backend) {
    let app = spawn_app(backend).await;
    let dan = app.logged_in("dan@example.com").await;
    let (phone, _) = enroll_totp(&dan).await;
    let login = app.browser();
    for _ in 0..4 {
        login
            .post(
                "/auth/login",
                json!({"email": "dan@example.com", "password": "wrong password here"}),
            )
            .await
            .assert_error(401, "invalid_credentials");
    }
    let (browser, _) = pending(&app, "dan@example.com").await;
    // The fifth failure in a row, a wrong code, locks the account.
    browser
        .post("/auth/mfa/totp/verify", json!({"code": "000000"}))
        .await
        .assert_error(401, "invalid_mfa_code");
    browser
        .post("/auth/mfa/totp/verify", json!({"code": phone.code(1)}))
        .await
        .assert_error(429, "account_locked");
    login
        .post(
            "/auth/login",
            json!({"email": "dan@example.com", "password": PASSWORD}),
        )
        .await
        .assert_error(429, "account_locked");
}

async fn step_up_demands_a_recent_second_factor(backend: Backend) {
    let app = spawn_app_with(backend, &[("STEP_UP_MAX_AGE_SECONDS", "1")]).await;
    let erin = app.logged_in("erin@example.com").await;
    erin.post("/auth/step-up/confirm", json!({}))
        .await
        .assert_error(403, "mfa_enrollment_required");
    let audited = app
        .query("SELECT COUNT(*) FROM audit_log WHERE event = 'step_up.required'")
        .await;
    assert_eq!(audited, vec![json!(0)]);

    let (phone, _) = enroll_totp(&erin).await;
    // Enrolling is itself a verification.
    assert_eq!(
        erin.post("/auth/step-up/confirm", json!({})).await.body,
        json!({"code": "step_up_confirmed"})
    );

    tokio::time::sleep(Duration::from_millis(1300)).await;
    // CSRF is checked before freshness.
    erin.send(Method::POST, "/auth/step-up/confirm", None, Csrf::None)
        .await
        .assert_error(403, "csrf_failed");
    let stale = erin.post("/auth/step-up/confirm", json!({})).await;
    stale.assert_error(401, "mfa_step_up_required");
    assert_eq!(stale.body["max_age"], 1);
    assert_eq!(stale.body["methods"], json!(["totp", "recovery_code"]));
    assert_eq!(
        stale.header("www-authenticate"),
        Some("Session error=\"insufficient_user_authentication\", max_age=1")
    );
    erin.delete("/auth/mfa/totp")
        .await
        .assert_error(401, "mfa_step_up_required");

    let verified = erin
        .post("/auth/mfa/totp/verify", json!({"code": phone.code(1)}))
        .await;
    assert_eq!(verified.body, json!({"code": "mfa_verified"}));
    assert_eq!(
        erin.post("/auth/step-up/confirm", json!({})).await.body,
        json!({"code": "step_up_confirmed"})
    );

    // Disabling TOTP (fresh) removes the recovery codes with the last factor.
    assert_eq!(
        erin.delete("/auth/mfa/totp").await.body,
        json!({"code": "totp_disabled"})
    );
    let me = erin.get("/auth/me").await;
    assert_eq!(
        me.body["user"]["mfa"],
        json!({"totp": false, "webauthn_credentials": 0, "recovery_codes_left": 0})
    );
    assert_eq!(
        app.login("erin@example.com")
            .await
            .get("/auth/me")
            .await
            .status,
        200
    );
}

async fn rotate_keys_re_encrypts_and_logins_keep_working(backend: Backend) {
    let app = spawn_app(backend).await;
    let fay = app.logged_in("fay@example.com").await;
    let (phone, _) = enroll_totp(&fay).await;
    let before = app
        .query("SELECT secret_ciphertext FROM totp_credentials")
        .await;

    let new_key = "rotated-key-fedcba9876543210fedcba9876543210";
    let run = |old: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_logicredit-auth"));
        command
            .env_clear()
            .env("DATABASE_URL", app.var("DATABASE_URL"))
            .env("TOTP_ENCRYPTION_KEY", new_key)
            .env("RUST_LOG", "error")
            .arg("rotate-keys");
        if let Some(old) = old {
            command.env("TOTP_ENCRYPTION_KEYS_OLD", old);
        }
        command.output().unwrap()
    };
    let refused = run(None);
    assert!(
        !refused.status.success(),
        "without the old key nothing can be opened"
    );
    let first = run(Some(ENCRYPTION_KEY));
    assert!(first.status.success(), "{first:?}");
    assert!(String::from_utf8_lossy(&first.stdout).contains("re-encrypted 1 "));
    let again = run(Some(ENCRYPTION_KEY));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("re-encrypted 0 "),
        "re-running is harmless"
    );
    assert_ne!(
        app.query("SELECT secret_ciphertext FROM totp_credentials")
            .await,
        before
    );

    // An instance that knows only the new key completes a TOTP login.
    let rotated = app.sibling(&[("TOTP_ENCRYPTION_KEY", new_key)]).await;
    let browser = rotated.browser();
    let response = browser
        .post(
            "/auth/login",
            json!({"email": "fay@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(response.body["code"], "mfa_required");
    let done = browser
        .post("/auth/mfa/totp/verify", json!({"code": phone.code(1)}))
        .await;
    assert_eq!(done.body["code"], "login_ok", "{done:?}");
}

on_both_backends!(
    totp_enrollment_then_login_needs_the_code,
    totp_codes_work_once_within_one_step_of_skew,
    recovery_codes_complete_a_login_once_each,
    passing_the_password_step_does_not_reset_the_lockout,
    step_up_demands_a_recent_second_factor,
    rotate_keys_re_encrypts_and_logins_keep_working
);
