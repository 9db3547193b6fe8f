//! docs/API.md §3 register / verify-email / resend, and the password rules of §4.

use serde_json::json;

use crate::helpers::{Backend, PASSWORD, spawn_app};
use crate::on_both_backends;

async fn a_new_account_is_verified_by_the_emailed_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = app.browser();

    let response = browser
        .post(
            "/auth/register",
            json!({"email": "  Alice@Example.COM ", "password": PASSWORD}),
        )
        .await;
    assert_eq!(response.status, 201);
    assert_eq!(response.body, json!({"code": "verification_email_sent"}));

    // The email carries the 32-character token bare and in a link to ORIGIN_URL.
    let email = app.smtp.wait_for("alice@example.com").await;
    let token = email.code();
    assert_eq!(token.len(), 32);
    assert!(token.chars().all(|c| c.is_ascii_alphanumeric()));
    assert!(
        email
            .content
            .contains(&format!("http://localhost:8000/verify-email?token={token}"))
    );

    // Unverified accounts cannot log in, even with the right password.
    let login = json!({"email": "alice@example.com", "password": PASSWORD});
    browser
        .post("/auth/login", login.clone())
        .await
        .assert_error(403, "email_not_verified");

    let verified = browser
        .post("/auth/verify-email", json!({"token": token}))
        .await;
    assert_eq!(
        (verified.status, verified.body.clone()),
        (200, json!({"code": "email_verified"}))
    );
    // Single use.
    browser
        .post("/auth/verify-email", json!({"token": token}))
        .await
        .assert_error(400, "invalid_token");

    assert_eq!(
        browser.post("/auth/login", login).await.body["code"],
        "login_ok"
    );
    let events = app.audit_events().await;
    for expected in [
        "user.registered",
        "email.verification_sent",
        "email.verified",
        "login.success",
        "session.created",
    ] {
        assert!(
            events.contains(&expected.to_owned()),
            "{expected} missing from {events:?}"
        );
    }
}

async fn registering_a_taken_email_reveals_nothing_and_warns_the_owner(backend: Backend) {
    let app = spawn_app(backend).await;
    app.verified_user("bob@example.com").await;

    let again = app
        .browser()
        .post(
            "/auth/register",
            json!({"email": "BOB@example.com", "password": "another strong passphrase"}),
        )
        .await;
    assert_eq!(
        (again.status, again.body.clone()),
        (201, json!({"code": "verification_email_sent"}))
    );

    // The owner is told; the account is unchanged (the old password still works).
    let notice = app.smtp.wait_for_nth("bob@example.com", 2).await;
    assert!(notice.content.contains("already has one"), "{notice:?}");
    app.login("bob@example.com").await;
    let users = app.query("SELECT COUNT(*) FROM users").await;
    assert_eq!(users, vec![json!(1)]);
}

async fn weak_passwords_get_every_reason_whether_or_not_the_email_exists(backend: Backend) {
    let app = spawn_app(backend).await;
    app.verified_user("carol.jones@example.com").await;
    let browser = app.browser();
    let long = "Aa1!".repeat(33);
    let cases = [
        ("short-Pw1", "too_short"),
        (long.as_str(), "too_long"),
        ("1q2w3e4r5t6y", "banned"),
        ("password1234", "too_guessable"),
        ("123456789012", "too_guessable"),
    ];
    for email in ["carol.jones@example.com", "nobody.here@example.com"] {
        let local = email.split('@').next().unwrap().to_uppercase();
        let with_email = format!("{local}-horse-battery");
        let all = cases
            .iter()
            .copied()
            .chain([(with_email.as_str(), "contains_email")]);
        for (password, reason) in all {
            let response = browser
                .post(
                    "/auth/register",
                    json!({"email": email, "password": password}),
                )
                .await;
            assert_eq!(response.status, 422, "{password} for {email}: {response:?}");
            response.assert_error(422, "weak_password");
            let reasons = response.body["reasons"].as_array().unwrap();
            assert!(reasons.contains(&json!(reason)), "{password}: {response:?}");
        }
    }
    assert_eq!(
        app.query("SELECT COUNT(*) FROM users").await,
        vec![json!(1)]
    );
}

async fn malformed_registration_input_is_refused_and_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = app.browser();
    let bad_email = browser
        .post(
            "/auth/register",
            json!({"email": "not-an-email", "password": PASSWORD}),
        )
        .await;
    bad_email.assert_error(422, "validation_error");
    assert!(bad_email.body["fields"]["email"].is_string());

    let missing = browser
        .post("/auth/register", json!({"email": "dan@example.com"}))
        .await;
    missing.assert_error(422, "validation_error");
    assert_eq!(missing.body["fields"]["password"], "is required");

    let wrong_type = browser
        .post(
            "/auth/register",
            json!({"email": ["x"], "password": PASSWORD}),
        )
        .await;
    wrong_type.assert_error(422, "validation_error");
    assert!(wrong_type.body["fields"]["email"].is_string());

    browser
        .post("/auth/register", json!([1, 2]))
        .await
        .assert_error(422, "validation_error");
    // NUL is valid JSON but not storable text: refused up front, on every backend.
    let nul = browser
        .post(
            "/auth/register",
            json!({"email": "dan@example.com", "password": "correct horse\u{0}battery"}),
        )
        .await;
    nul.assert_error(422, "validation_error");
    assert!(nul.body["fields"]["password"].is_string(), "{nul:?}");
    assert_eq!(
        app.query("SELECT COUNT(*) FROM users").await,
        vec![json!(0)]
    );
    assert_eq!(
        app.query("SELECT COUNT(*) FROM email_outbox").await,
        vec![json!(0)]
    );
}

async fn verification_tokens_that_are_unknown_malformed_or_expired_are_invalid(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = app.browser();
    for token in [
        "",
        "short",
        &"a".repeat(32),
        &"é".repeat(32),
        &"a".repeat(5000),
    ] {
        browser
            .post("/auth/verify-email", json!({"token": token}))
            .await
            .assert_error(400, "invalid_token");
    }
    browser
        .post("/auth/verify-email", json!({"token": 42}))
        .await
        .assert_error(422, "validation_error");

    let token = app.register("erin@example.com").await;
    app.execute("UPDATE email_tokens SET expires_at = 0").await;
    browser
        .post("/auth/verify-email", json!({"token": token}))
        .await
        .assert_error(400, "invalid_token");
}

async fn resend_answers_the_same_for_everyone_and_mails_only_the_unverified(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = app.browser();
    let first = app.register("frank@example.com").await;
    app.verified_user("grace@example.com").await;

    for email in [
        "frank@example.com",
        "grace@example.com",
        "nobody@example.com",
    ] {
        let response = browser
            .post("/auth/verify-email/resend", json!({"email": email}))
            .await;
        assert_eq!(
            (response.status, response.body.clone()),
            (202, json!({"code": "verification_email_sent"}))
        );
    }
    // Frank gets a new token, which replaces the first one.
    let second = app.smtp.wait_for_nth("frank@example.com", 2).await.code();
    assert_ne!(first, second);
    browser
        .post("/auth/verify-email", json!({"token": first}))
        .await
        .assert_error(400, "invalid_token");
    assert_eq!(
        browser
            .post("/auth/verify-email", json!({"token": second}))
            .await
            .status,
        200
    );
    // Verified and unknown addresses get nothing.
    assert_eq!(app.smtp.settle_and_count("grace@example.com").await, 1);
    assert_eq!(app.smtp.settle_and_count("nobody@example.com").await, 0);
}

on_both_backends!(
    a_new_account_is_verified_by_the_emailed_token,
    registering_a_taken_email_reveals_nothing_and_warns_the_owner,
    weak_passwords_get_every_reason_whether_or_not_the_email_exists,
    malformed_registration_input_is_refused_and_changes_nothing,
    verification_tokens_that_are_unknown_malformed_or_expired_are_invalid,
    resend_answers_the_same_for_everyone_and_mails_only_the_unverified
);
