//! The defects an adversarial review reproduced (issue 11), each as the attack it was and
//! the answer the service now gives. Every scenario runs on both deployments.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::authenticators::{AuthenticatorApp, Passkey, passkey_login};
use crate::helpers::{Backend, Browser, Csrf, PASSWORD, TestApp, spawn_app, spawn_app_with};
use crate::mfa::{enroll_totp, enroll_verified_totp};
use crate::on_both_backends;

const SESSION_COOKIE: &str = "session";

/// Starts a passkey registration and answers it with `passkey`; returns the start body
/// and the credential JSON, so a test can tamper with the finish.
async fn registration(browser: &Browser, passkey: &Passkey) -> (Value, Value) {
    let start = browser
        .post("/auth/webauthn/register/start", json!({}))
        .await;
    assert_eq!(
        start.body["code"], "webauthn_registration_options",
        "{start:?}"
    );
    let credential = passkey.register(&start.body["options"]).await;
    (start.body, credential)
}

async fn finish_registration(
    browser: &Browser,
    start: &Value,
    credential: &Value,
    name: &str,
) -> crate::helpers::TestResponse {
    browser
        .post(
            "/auth/webauthn/register/finish",
            json!({"ceremony_id": start["ceremony_id"], "credential": credential, "name": name}),
        )
        .await
}

pub(crate) async fn user_id(browser: &Browser) -> String {
    browser.get("/auth/me").await.body["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Waits (up to 10 s) for an email to `to` whose content contains `needle`.
pub(crate) async fn email_containing(
    app: &TestApp,
    to: &str,
    needle: &str,
) -> crate::smtp_sink::ReceivedEmail {
    for _ in 0..200 {
        if let Some(email) = app
            .smtp
            .received_by(to)
            .into_iter()
            .find(|e| e.content.contains(needle))
        {
            return email;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no email to {to} containing {needle:?}");
}

pub(crate) async fn count(app: &TestApp, sql: &str) -> i64 {
    app.query(sql).await[0].as_i64().unwrap()
}

// Item 1: with only the cookie of a user without a second factor, an attacker enrolled
// their own factor. Now the first factor needs the password once the login is older
// than STEP_UP_MAX_AGE_SECONDS.
async fn a_stolen_session_cannot_enroll_a_first_factor_without_the_password(backend: Backend) {
    let app = spawn_app_with(backend, &[("STEP_UP_MAX_AGE_SECONDS", "1")]).await;
    let thief = app.logged_in("victim@example.com").await;
    tokio::time::sleep(Duration::from_millis(1300)).await;

    let setup = thief.post("/auth/mfa/totp/setup", json!({})).await;
    setup.assert_error(401, "reauthentication_required");
    assert_eq!(setup.body["max_age"], 1);
    thief
        .post("/auth/webauthn/register/start", json!({}))
        .await
        .assert_error(401, "reauthentication_required");
    thief
        .post(
            "/auth/mfa/totp/setup",
            json!({"current_password": "a guess at the password"}),
        )
        .await
        .assert_error(401, "invalid_credentials");
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM totp_credentials").await,
        0
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM audit_log WHERE event = 'login.failure'"
        )
        .await,
        1,
        "a wrong password counts"
    );

    // The owner, who knows the password, can.
    let owner = thief;
    let setup = owner
        .post(
            "/auth/mfa/totp/setup",
            json!({"current_password": PASSWORD}),
        )
        .await;
    assert_eq!(setup.body["code"], "totp_setup_started", "{setup:?}");
    let passkey = owner
        .post(
            "/auth/webauthn/register/start",
            json!({"current_password": PASSWORD}),
        )
        .await;
    assert_eq!(
        passkey.body["code"], "webauthn_registration_options",
        "{passkey:?}"
    );
}

// Item 1: enrolling TOTP on an admin's stolen session satisfied the fresh-MFA check of
// PATCH /auth/admin/users/{id}. Enrollment still counts for the user's own step-up
// (docs/API.md §7), never for a privileged route.
async fn enrolling_a_first_factor_is_not_an_admins_step_up(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.logged_in_as("root@example.com", "admin").await;
    let other = app.logged_in_as("other@example.com", "user").await;
    let path = format!("/auth/admin/users/{}", user_id(&other).await);
    let (phone, _) = enroll_totp(&admin).await;

    let patch = admin.patch(&path, json!({"role": "staff"})).await;
    patch.assert_error(401, "mfa_step_up_required");
    assert_eq!(
        admin.post("/auth/step-up/confirm", json!({})).await.body,
        json!({"code": "step_up_confirmed"})
    );

    let verified = admin
        .post("/auth/mfa/totp/verify", json!({"code": phone.code(1)}))
        .await;
    assert_eq!(verified.body, json!({"code": "mfa_verified"}));
    let patch = admin.patch(&path, json!({"role": "staff"})).await;
    assert_eq!(patch.body["code"], "user_updated", "{patch:?}");
}

// Item 1: a password reset did not show the owner the attacker's factor. The reset
// email lists every factor (never its name) and the logins after the reset list them
// until one completes.
async fn a_password_reset_shows_every_second_factor_to_the_owner(backend: Backend) {
    let app = spawn_app(backend).await;
    let session = app.logged_in("carol@example.com").await;
    let key = Passkey::new();
    let (start, credential) = registration(&session, &key).await;
    let added = finish_registration(&session, &start, &credential, "not yours").await;
    assert_eq!(added.status, 201, "{added:?}");
    let passkey_id = added.body["credential"]["id"].clone();

    let anonymous = app.browser();
    anonymous
        .post(
            "/auth/password/reset/request",
            json!({"email": "carol@example.com"}),
        )
        .await;
    let email = email_containing(&app, "carol@example.com", "reset-password").await;
    assert!(email.content.contains("a passkey, added"), "{email:?}");
    assert!(
        !email.content.contains("not yours"),
        "user-chosen names stay out of emails"
    );
    let token = email.code();
    let new_password = "an entirely new passphrase, longer";
    let reset = anonymous
        .post(
            "/auth/password/reset/confirm",
            json!({"token": token, "new_password": new_password}),
        )
        .await;
    assert_eq!(reset.body["code"], "password_reset", "{reset:?}");

    let owner = app.browser();
    let login = owner
        .post(
            "/auth/login",
            json!({"email": "carol@example.com", "password": new_password}),
        )
        .await;
    assert_eq!(login.body["code"], "mfa_required");
    let listed = &login.body["factor_review"]["factors"];
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{login:?}");
    assert_eq!(listed[0]["type"], "webauthn");
    assert_eq!(listed[0]["id"], passkey_id);
    assert!(login.body["factor_review"]["password_reset_at"].is_string());

    // Completing a login ends the review.
    let done = passkey_login(&owner, json!({}), &key).await;
    assert_eq!(done.body["code"], "login_ok", "{done:?}");
    assert_eq!(done.body["factor_review"]["factors"][0]["id"], passkey_id);
    let again = app
        .browser()
        .post(
            "/auth/login",
            json!({"email": "carol@example.com", "password": new_password}),
        )
        .await;
    assert_eq!(again.body["code"], "mfa_required");
    assert!(again.body.get("factor_review").is_none(), "{again:?}");
}

// Item 2: a passkey registration started while fresh finished after freshness expired
// and refreshed step-up.
async fn freshness_is_checked_again_when_a_ceremony_finishes(backend: Backend) {
    let app = spawn_app_with(backend, &[("STEP_UP_MAX_AGE_SECONDS", "1")]).await;
    let dave = app.logged_in("dave@example.com").await;
    enroll_totp(&dave).await;
    let key = Passkey::new();
    let (start, credential) = registration(&dave, &key).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;

    finish_registration(&dave, &start, &credential, "late")
        .await
        .assert_error(401, "mfa_step_up_required");
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM webauthn_credentials").await,
        0
    );
    dave.post("/auth/step-up/confirm", json!({}))
        .await
        .assert_error(401, "mfa_step_up_required");
}

// Item 2: a pending TOTP setup belongs to the session that started it and expires.
async fn a_pending_totp_setup_belongs_to_its_session_and_expires(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = app.logged_in("erin@example.com").await;
    let second = app.login("erin@example.com").await;
    let setup = first.post("/auth/mfa/totp/setup", json!({})).await;
    let phone = AuthenticatorApp::from_setup(&setup.body);

    second
        .post("/auth/mfa/totp/verify", json!({"code": phone.code(0)}))
        .await
        .assert_error(409, "mfa_method_not_enrolled");
    app.execute("UPDATE totp_credentials SET created_at = created_at - 660000")
        .await;
    first
        .post("/auth/mfa/totp/verify", json!({"code": phone.code(0)}))
        .await
        .assert_error(409, "mfa_method_not_enrolled");
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM totp_credentials WHERE enabled_at IS NOT NULL"
        )
        .await,
        0
    );

    // A fresh setup on its own session works.
    enroll_totp(&first).await;
}

// Item 6: passwordless login/start with an email returned real allowCredentials for
// accounts with passkeys and [] otherwise.
async fn passwordless_options_do_not_tell_whether_an_account_exists(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.logged_in("frank@example.com").await;
    let key = Passkey::new();
    let (start, credential) = registration(&owner, &key).await;
    assert_eq!(
        finish_registration(&owner, &start, &credential, "key")
            .await
            .status,
        201
    );
    app.verified_user("no-passkey@example.com").await;

    let options = |email: &'static str| {
        let anonymous = app.browser();
        async move {
            anonymous
                .post("/auth/webauthn/login/start", json!({"email": email}))
                .await
                .body["options"]
                .clone()
        }
    };
    let shape = |options: &Value| -> (Vec<String>, Vec<String>, usize) {
        let public_key = options["publicKey"].as_object().unwrap();
        let allowed = options["publicKey"]["allowCredentials"].as_array().unwrap();
        let entry = allowed
            .first()
            .and_then(Value::as_object)
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        (public_key.keys().cloned().collect(), entry, allowed.len())
    };
    let real = options("frank@example.com").await;
    let unknown = options("nobody@example.com").await;
    let without = options("no-passkey@example.com").await;
    assert_eq!(shape(&real), shape(&unknown), "{real} vs {unknown}");
    assert_eq!(shape(&real), shape(&without));
    let id_len = |o: &Value| {
        o["publicKey"]["allowCredentials"][0]["id"]
            .as_str()
            .unwrap()
            .len()
    };
    assert_eq!(id_len(&unknown), id_len(&without));
    // Asking twice gives the same decoy, as asking twice about a real account does.
    assert_eq!(
        unknown["publicKey"]["allowCredentials"],
        options("nobody@example.com").await["publicKey"]["allowCredentials"]
    );
    assert_ne!(
        unknown["publicKey"]["allowCredentials"],
        without["publicKey"]["allowCredentials"]
    );
}

// Item 6: resend was measurably slower for unverified accounts because it did the work
// before answering. Now it answers first: even while the database's write lock is held
// elsewhere, the answer comes at once, and the email follows when the lock is gone.
async fn a_verification_resend_answers_before_doing_any_work(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register("gina@example.com").await;
    let blocker = app.db.begin().await.unwrap();
    if backend == Backend::PostgresRedis {
        use sea_orm::ConnectionTrait;
        blocker
            .conn()
            .execute_unprepared("LOCK TABLE email_tokens IN ACCESS EXCLUSIVE MODE")
            .await
            .unwrap();
    }
    let started = Instant::now();
    let answer = app
        .browser()
        .post(
            "/auth/verify-email/resend",
            json!({"email": "gina@example.com"}),
        )
        .await;
    let took = started.elapsed();
    assert_eq!(
        (answer.status, answer.body.clone()),
        (202, json!({"code": "verification_email_sent"}))
    );
    assert!(
        took < Duration::from_millis(1500),
        "answered after {took:?}: the work ran first"
    );
    tokio::time::sleep(Duration::from_millis(2000)).await;
    blocker.commit().await.unwrap();
    app.smtp.wait_for_nth("gina@example.com", 2).await;
}

// Item 7: a passkey name with CR/LF split the "passkey added" notice into paragraphs
// chosen by whoever held the session.
async fn passkey_names_cannot_write_into_security_emails(backend: Backend) {
    let app = spawn_app(backend).await;
    let henry = app.logged_in("henry@example.com").await;
    let key = Passkey::new();
    let (start, credential) = registration(&henry, &key).await;
    let injected = "Laptop\r\n\r\nThis was you, ignore this email.\u{7}";
    let added = finish_registration(&henry, &start, &credential, injected).await;
    assert_eq!(added.status, 201, "{added:?}");
    assert_eq!(
        added.body["credential"]["name"],
        "LaptopThis was you, ignore this email."
    );
    let added_notice = email_containing(&app, "henry@example.com", "passkey was added").await;
    assert!(
        !added_notice.content.contains("ignore this email."),
        "{added_notice:?}"
    );
    assert!(!added_notice.content.contains("Laptop"), "{added_notice:?}");
}

// Item 10: one session could write hundreds of csrf.failure / step_up.required audit
// rows a second and start unlimited passkey registrations.
async fn one_session_cannot_flood_the_audit_trail_or_the_store(backend: Backend) {
    let app = spawn_app_with(backend, &[("STEP_UP_MAX_AGE_SECONDS", "1")]).await;
    let ivan = app.logged_in("ivan@example.com").await;
    for _ in 0..25 {
        ivan.send(Method::POST, "/auth/logout", None, Csrf::None)
            .await
            .assert_error(403, "csrf_failed");
    }
    // The first refusal and the 10th are written; the rest only counted.
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM audit_log WHERE event = 'csrf.failure'"
        )
        .await,
        2
    );

    enroll_totp(&ivan).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    for _ in 0..25 {
        ivan.post("/auth/step-up/confirm", json!({}))
            .await
            .assert_error(401, "mfa_step_up_required");
    }
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM audit_log WHERE event = 'step_up.required'"
        )
        .await,
        2
    );

    let judy = app.logged_in("judy@example.com").await;
    for _ in 0..10 {
        assert_eq!(
            judy.post("/auth/webauthn/register/start", json!({}))
                .await
                .status,
            200
        );
    }
    let refused = judy.post("/auth/webauthn/register/start", json!({})).await;
    refused.assert_error(429, "rate_limited");
    assert!(refused.body["retry_after"].as_u64().is_some_and(|s| s > 0));
}

// Item 12: a role change rotates the session token (docs/API.md §2: the token changes when
// the session's privilege does).
async fn a_role_change_rotates_the_session_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.logged_in_as("root@example.com", "admin").await;
    enroll_verified_totp(&admin).await;
    let kim = app.logged_in_as("kim@example.com", "user").await;
    let old_token = kim.cookie(SESSION_COOKIE).unwrap();
    let path = format!("/auth/admin/users/{}", user_id(&kim).await);
    let promoted = admin.patch(&path, json!({"role": "staff"})).await;
    assert_eq!(promoted.body["code"], "user_updated", "{promoted:?}");

    let me = kim.get("/auth/me").await;
    assert_eq!(me.body["user"]["role"], "staff");
    let new_token = kim.cookie(SESSION_COOKIE).unwrap();
    assert_ne!(
        new_token, old_token,
        "the answer carries a new session cookie"
    );
    let stale = app.browser();
    stale.set_cookie(SESSION_COOKIE, &old_token);
    stale
        .get("/auth/me")
        .await
        .assert_error(401, "not_authenticated");
    // The new CSRF cookie came with it, as a front end reads it.
    assert_eq!(
        kim.post("/auth/sessions/revoke-others", json!({}))
            .await
            .body["code"],
        "sessions_revoked"
    );
    let audited = count(&app, "SELECT COUNT(*) FROM audit_log WHERE event = 'session.rotated' AND metadata LIKE '%role_changed%'").await;
    assert_eq!(audited, 1);
}

// Item 12: a ceremony id presented by another session used to be consumed (and so
// cancelled) before the session check.
async fn another_sessions_attempt_leaves_a_ceremony_usable(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.logged_in("lee@example.com").await;
    let other = app.logged_in("mallory@example.com").await;
    let key = Passkey::new();
    let (start, credential) = registration(&owner, &key).await;
    finish_registration(&other, &start, &credential, "stolen")
        .await
        .assert_error(400, "invalid_ceremony");
    assert_eq!(
        finish_registration(&owner, &start, &credential, "mine")
            .await
            .status,
        201
    );
}

// Item 12: credentials whose `type` is not public-key or whose `id` is not `rawId` are
// refused before anything else.
async fn credentials_must_describe_themselves_consistently(backend: Backend) {
    let app = spawn_app(backend).await;
    let nina = app.logged_in("nina@example.com").await;
    let key = Passkey::new();
    let (start, credential) = registration(&nina, &key).await;
    let mut wrong_type = credential.clone();
    wrong_type["type"] = json!("password");
    finish_registration(&nina, &start, &wrong_type, "k")
        .await
        .assert_error(400, "webauthn_failed");
    let mut wrong_id = credential.clone();
    wrong_id["id"] = json!("AAAA");
    finish_registration(&nina, &start, &wrong_id, "k")
        .await
        .assert_error(400, "webauthn_failed");
    assert_eq!(
        finish_registration(&nina, &start, &credential, "k")
            .await
            .status,
        201
    );

    let start = nina.post("/auth/webauthn/login/start", json!({})).await;
    let mut assertion = key.sign_in(&start.body["options"]).await;
    assertion["type"] = json!("password");
    nina.post(
        "/auth/webauthn/login/finish",
        json!({"ceremony_id": start.body["ceremony_id"], "credential": assertion}),
    )
    .await
    .assert_error(401, "webauthn_failed");
}

on_both_backends!(
    a_stolen_session_cannot_enroll_a_first_factor_without_the_password,
    enrolling_a_first_factor_is_not_an_admins_step_up,
    a_password_reset_shows_every_second_factor_to_the_owner,
    freshness_is_checked_again_when_a_ceremony_finishes,
    a_pending_totp_setup_belongs_to_its_session_and_expires,
    passwordless_options_do_not_tell_whether_an_account_exists,
    a_verification_resend_answers_before_doing_any_work,
    passkey_names_cannot_write_into_security_emails,
    one_session_cannot_flood_the_audit_trail_or_the_store,
    a_role_change_rotates_the_session_token,
    another_sessions_attempt_leaves_a_ceremony_usable,
    credentials_must_describe_themselves_consistently
);
