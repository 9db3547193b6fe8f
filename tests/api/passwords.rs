//! docs/API.md §3 password reset and change.

use serde_json::json;

use crate::helpers::{Backend, PASSWORD, spawn_app, spawn_app_with};
use crate::mfa::enroll_totp;
use crate::on_both_backends;

const NEW_PASSWORD: &str = "a brand new passphrase here";

async fn a_reset_by_email_sets_the_password_and_ends_every_session(backend: Backend) {
    let app = spawn_app(backend).await;
    app.verified_user("alice@example.com").await;
    let laptop = app.login("alice@example.com").await;
    let phone = app.login("alice@example.com").await;
    let anonymous = app.browser();

    for email in ["alice@example.com", "nobody@example.com"] {
        let response = anonymous
            .post("/auth/password/reset/request", json!({"email": email}))
            .await;
        assert_eq!(
            (response.status, response.body.clone()),
            (202, json!({"code": "reset_email_sent"}))
        );
    }
    let email = app.smtp.wait_for_nth("alice@example.com", 2).await;
    let token = email.code();
    assert_eq!(token.len(), 43, "{email:?}");
    assert!(email.content.contains(&format!(
        "http://localhost:8000/reset-password?token={token}"
    )));
    assert_eq!(app.smtp.settle_and_count("nobody@example.com").await, 0);
    // Only the hash is stored.
    let stored = app
        .query("SELECT token_hash FROM email_tokens WHERE purpose = 'password_reset'")
        .await;
    assert_ne!(stored[0], json!(token));

    // A weak password is refused and leaves the token usable.
    anonymous
        .post(
            "/auth/password/reset/confirm",
            json!({"token": token, "new_password": "password1234"}),
        )
        .await
        .assert_error(422, "weak_password");
    let done = anonymous
        .post(
            "/auth/password/reset/confirm",
            json!({"token": token, "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(
        done.body,
        json!({"code": "password_reset", "sessions_revoked": 2})
    );
    laptop
        .get("/auth/me")
        .await
        .assert_error(401, "not_authenticated");
    phone
        .get("/auth/me")
        .await
        .assert_error(401, "not_authenticated");
    anonymous
        .post(
            "/auth/password/reset/confirm",
            json!({"token": token, "new_password": NEW_PASSWORD}),
        )
        .await
        .assert_error(400, "invalid_token");

    anonymous
        .post(
            "/auth/login",
            json!({"email": "alice@example.com", "password": PASSWORD}),
        )
        .await
        .assert_error(401, "invalid_credentials");
    let login = anonymous
        .post(
            "/auth/login",
            json!({"email": "alice@example.com", "password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(login.body["code"], "login_ok");
    let notice = app.smtp.wait_for_nth("alice@example.com", 3).await;
    assert!(notice.content.contains("was reset"), "{notice:?}");
    let events = app.audit_events().await;
    assert!(
        events.contains(&"password.reset_requested".to_owned())
            && events.contains(&"password.reset".to_owned())
    );
}

async fn reset_tokens_are_single_use_short_lived_and_replaced(backend: Backend) {
    let app = spawn_app(backend).await;
    app.verified_user("bob@example.com").await;
    let anonymous = app.browser();
    anonymous
        .post(
            "/auth/password/reset/request",
            json!({"email": "bob@example.com"}),
        )
        .await;
    let first = app.smtp.wait_for_nth("bob@example.com", 2).await.code();
    anonymous
        .post(
            "/auth/password/reset/request",
            json!({"email": "bob@example.com"}),
        )
        .await;
    let second = app.smtp.wait_for_nth("bob@example.com", 3).await.code();
    // The newer request retired the older token.
    anonymous
        .post(
            "/auth/password/reset/confirm",
            json!({"token": first, "new_password": NEW_PASSWORD}),
        )
        .await
        .assert_error(400, "invalid_token");
    app.execute("UPDATE email_tokens SET expires_at = 0 WHERE purpose = 'password_reset'")
        .await;
    anonymous
        .post(
            "/auth/password/reset/confirm",
            json!({"token": second, "new_password": NEW_PASSWORD}),
        )
        .await
        .assert_error(400, "invalid_token");
    for bad in ["", "short", &"a".repeat(43), &"!".repeat(43)] {
        anonymous
            .post(
                "/auth/password/reset/confirm",
                json!({"token": bad, "new_password": NEW_PASSWORD}),
            )
            .await
            .assert_error(400, "invalid_token");
    }
    anonymous
        .post("/auth/password/reset/confirm", json!({"token": second}))
        .await
        .assert_error(422, "validation_error");

    // A disabled account gets no reset email.
    app.execute("UPDATE users SET disabled = true").await;
    anonymous
        .post(
            "/auth/password/reset/request",
            json!({"email": "bob@example.com"}),
        )
        .await;
    assert_eq!(app.smtp.settle_and_count("bob@example.com").await, 3);
}

async fn a_reset_lifts_the_lockout(backend: Backend) {
    let app = spawn_app(backend).await;
    app.verified_user("carol@example.com").await;
    let browser = app.browser();
    for _ in 0..5 {
        browser
            .post(
                "/auth/login",
                json!({"email": "carol@example.com", "password": "wrong guess here"}),
            )
            .await;
    }
    browser
        .post(
            "/auth/login",
            json!({"email": "carol@example.com", "password": PASSWORD}),
        )
        .await
        .assert_error(429, "account_locked");
    browser
        .post(
            "/auth/password/reset/request",
            json!({"email": "carol@example.com"}),
        )
        .await;
    let token = app.smtp.wait_for_nth("carol@example.com", 3).await.code();
    let done = browser
        .post(
            "/auth/password/reset/confirm",
            json!({"token": token, "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(done.body["code"], "password_reset", "{done:?}");
    let login = browser
        .post(
            "/auth/login",
            json!({"email": "carol@example.com", "password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(login.body["code"], "login_ok");
}

async fn changing_the_password_needs_the_current_one_and_ends_other_sessions(backend: Backend) {
    let app = spawn_app(backend).await;
    app.verified_user("dan@example.com").await;
    let other = app.login("dan@example.com").await;
    let current = app.login("dan@example.com").await;

    current
        .post(
            "/auth/password/change",
            json!({"current_password": "not my password", "new_password": NEW_PASSWORD}),
        )
        .await
        .assert_error(401, "invalid_credentials");
    current
        .post(
            "/auth/password/change",
            json!({"current_password": PASSWORD, "new_password": "password1234"}),
        )
        .await
        .assert_error(422, "weak_password");
    current
        .post(
            "/auth/password/change",
            json!({"current_password": PASSWORD}),
        )
        .await
        .assert_error(422, "validation_error");
    let changed = current
        .post(
            "/auth/password/change",
            json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(
        changed.body,
        json!({"code": "password_changed", "sessions_revoked": 1})
    );
    other
        .get("/auth/me")
        .await
        .assert_error(401, "not_authenticated");
    assert_eq!(current.get("/auth/me").await.status, 200);
    let notice = app.smtp.wait_for_nth("dan@example.com", 2).await;
    assert!(notice.content.contains("was changed"), "{notice:?}");
    let login = app
        .browser()
        .post(
            "/auth/login",
            json!({"email": "dan@example.com", "password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(login.body["code"], "login_ok");
}

async fn a_user_with_a_second_factor_changes_the_password_only_with_fresh_mfa(backend: Backend) {
    let app = spawn_app_with(backend, &[("STEP_UP_MAX_AGE_SECONDS", "1")]).await;
    let erin = app.logged_in("erin@example.com").await;
    let (phone, _) = enroll_totp(&erin).await;
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    let body = json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD});
    erin.post("/auth/password/change", body.clone())
        .await
        .assert_error(401, "mfa_step_up_required");
    assert_eq!(
        erin.post("/auth/mfa/totp/verify", json!({"code": phone.code(1)}))
            .await
            .body["code"],
        "mfa_verified"
    );
    assert_eq!(
        erin.post("/auth/password/change", body).await.body["code"],
        "password_changed"
    );
}

on_both_backends!(
    a_reset_by_email_sets_the_password_and_ends_every_session,
    reset_tokens_are_single_use_short_lived_and_replaced,
    a_reset_lifts_the_lockout,
    changing_the_password_needs_the_current_one_and_ends_other_sessions,
    a_user_with_a_second_factor_changes_the_password_only_with_fresh_mfa
);
