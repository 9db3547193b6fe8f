//! Peer advisories (issue 16, item 6): for each published flaw of another identity
//! provider, the attack it described, run against this service on both deployments, and
//! the answer the service gives. Each test is named after its advisory.
//!
//! - Zitadel GHSA-7j7j-66cv-m239: wrong one-time codes were not counted by the lockout.
//! - Zitadel GHSA-xrw9-r35x-x878: newer routes checked secrets without the lockout.
//! - Zitadel GHSA-cfjq-28r2-4jv5: one factor of an MFA user counted as authenticated.
//! - Keycloak GHSA-gc7q-jgjv-vjr2: parallel guesses overran the brute-force threshold.
//! - Authentik GHSA-xr73-jq5p-ch8r: a deactivated account still authenticated.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::authenticators::{Passkey, passkey_assertion};
use crate::helpers::{Backend, Csrf, PASSWORD, TestResponse, spawn_app_with};
use crate::mfa::{enroll_totp, enroll_verified_totp, pending};
use crate::oauth::{Auth, FIRST_PARTY, REDIRECT, WEB, WEB_SECRET, form, pkce, query_of};
use crate::on_both_backends;
use crate::security_review::{count, email_containing, user_id};
use crate::transactions::{create, path, payment};

/// Somewhere no relying party lives: an assertion made for it is refused (wrong origin).
const ELSEWHERE: &str = "http://localhost:9999";
/// What a password reset email links to.
const RESET_LINK: &str = "reset-password?token=";

#[track_caller]
fn assert_locked(response: &TestResponse) {
    response.assert_error(429, "account_locked");
    assert!(
        response.header("retry-after").is_some() && response.body["retry_after"].is_u64(),
        "{response:?}"
    );
}

/// Zitadel GHSA-7j7j-66cv-m239: the lockout counted wrong passwords only, so a stolen
/// password left unlimited guesses at the 6-digit code. Here wrong TOTP and recovery
/// codes count on the account's one counter and lock it (and with it the password login)
/// after the threshold; a locked attempt evaluates (and so spends) nothing.
async fn zitadel_ghsa_7j7j_66cv_m239_wrong_one_time_codes_lock_the_account(backend: Backend) {
    let app = spawn_app_with(backend, &[("LOCKOUT_BASE_SECONDS", "1")]).await;
    let alice = app.logged_in("alice@example.com").await;
    let (phone, codes) = enroll_totp(&alice).await;

    // Second factor of a login: three wrong TOTP codes and two wrong recovery codes.
    let (login, _) = pending(&app, "alice@example.com").await;
    for _ in 0..3 {
        login
            .post("/auth/mfa/totp/verify", json!({"code": "000000"}))
            .await
            .assert_error(401, "invalid_mfa_code");
    }
    for wrong in ["aaaa-bbbb-cccc-dddd", "2222-3333-4444-5555"] {
        login
            .post("/auth/mfa/recovery/verify", json!({"code": wrong}))
            .await
            .assert_error(401, "invalid_mfa_code");
    }
    // The fifth failure engaged the lock: right codes are not looked at, nor is the password.
    assert_locked(
        &login
            .post("/auth/mfa/totp/verify", json!({"code": phone.code(1)}))
            .await,
    );
    assert_locked(
        &login
            .post("/auth/mfa/recovery/verify", json!({"code": codes[0]}))
            .await,
    );
    assert_locked(
        &app.browser()
            .post(
                "/auth/login",
                json!({"email": "alice@example.com", "password": PASSWORD}),
            )
            .await,
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM audit_log WHERE event = 'login.locked'"
        )
        .await,
        1
    );
    // The locked attempt spent nothing: once the lock ends, that recovery code logs in.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let done = login
        .post("/auth/mfa/recovery/verify", json!({"code": codes[0]}))
        .await;
    assert_eq!(done.body["code"], "login_ok", "{done:?}");

    // Step-up on an active session counts the same way.
    let bob = app.logged_in("bob@example.com").await;
    let (phone, _) = enroll_totp(&bob).await;
    for _ in 0..5 {
        bob.post("/auth/mfa/totp/verify", json!({"code": "000000"}))
            .await
            .assert_error(401, "invalid_mfa_code");
    }
    assert_locked(
        &bob.post("/auth/mfa/totp/verify", json!({"code": phone.code(1)}))
            .await,
    );
}

/// Zitadel GHSA-xrw9-r35x-x878: routes added after the lockout checked secrets without
/// it. Here every route that checks a secret of the account goes through the one
/// limiter: a failure on any of them counts (with `LOCKOUT_THRESHOLD=6`, one failure on
/// each of six routes engages the lock), and while locked each answers `429
/// account_locked` without evaluating anything — also at the finish of a ceremony that
/// started before the lock.
async fn zitadel_ghsa_xrw9_r35x_x878_newer_routes_do_not_skip_the_lockout(backend: Backend) {
    let app = spawn_app_with(backend, &[("LOCKOUT_THRESHOLD", "6")]).await;
    let dan = app.logged_in("dan@example.com").await;
    let (phone, codes) = enroll_totp(&dan).await;
    let key = Passkey::new();
    crate::passkeys::register(&dan, &key, "Phone").await;
    let tx = create(&dan, payment("10.00")).await;
    let id = &tx["transaction_id"];
    let passwordless = app.browser();
    let by_email = json!({"email": "dan@example.com"});

    // Ceremonies begun before the lock, answered correctly, finished after it.
    let tx_ceremony = passkey_assertion(&dan, &path(id, "/webauthn/start"), json!({}), &key).await;
    let step_up_ceremony =
        passkey_assertion(&dan, "/auth/webauthn/login/start", json!({}), &key).await;
    let passwordless_ceremony = passkey_assertion(
        &passwordless,
        "/auth/webauthn/login/start",
        by_email.clone(),
        &key,
    )
    .await;

    // One failure on each route.
    dan.post(&path(id, "/totp"), json!({"code": "000000"}))
        .await
        .assert_error(401, "invalid_mfa_code");
    let wrong = passkey_assertion(
        &dan,
        &path(id, "/webauthn/start"),
        json!({}),
        &key.at(ELSEWHERE),
    )
    .await;
    dan.post(&path(id, "/webauthn/finish"), wrong)
        .await
        .assert_error(401, "webauthn_failed");
    dan.post("/auth/mfa/totp/verify", json!({"code": "000000"}))
        .await
        .assert_error(401, "invalid_mfa_code");
    let wrong = passkey_assertion(
        &dan,
        "/auth/webauthn/login/start",
        json!({}),
        &key.at(ELSEWHERE),
    )
    .await;
    dan.post("/auth/webauthn/login/finish", wrong)
        .await
        .assert_error(401, "webauthn_failed");
    let change = |current: &str| json!({"current_password": current, "new_password": "Vermilion-Otter-Quarry-1987"});
    dan.post("/auth/password/change", change("not the password at all"))
        .await
        .assert_error(401, "invalid_credentials");
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM audit_log WHERE event = 'login.locked'"
        )
        .await,
        0
    );
    let wrong = passkey_assertion(
        &passwordless,
        "/auth/webauthn/login/start",
        by_email.clone(),
        &key.at(ELSEWHERE),
    )
    .await;
    passwordless
        .post("/auth/webauthn/login/finish", wrong)
        .await
        .assert_error(401, "webauthn_failed");
    // The sixth failure, whatever route it came from, engaged the lock.
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM audit_log WHERE event = 'login.locked'"
        )
        .await,
        1
    );

    // Locked: the right secret on every route is refused unread.
    assert_locked(&dan.post(&path(id, "/webauthn/finish"), tx_ceremony).await);
    assert_locked(
        &dan.post("/auth/webauthn/login/finish", step_up_ceremony)
            .await,
    );
    assert_locked(
        &passwordless
            .post("/auth/webauthn/login/finish", passwordless_ceremony)
            .await,
    );
    assert_locked(
        &dan.post(&path(id, "/totp"), json!({"code": phone.code(1)}))
            .await,
    );
    assert_locked(
        &dan.post("/auth/mfa/totp/verify", json!({"code": phone.code(1)}))
            .await,
    );
    assert_locked(
        &dan.post("/auth/mfa/recovery/verify", json!({"code": codes[0]}))
            .await,
    );
    assert_locked(&dan.post("/auth/password/change", change(PASSWORD)).await);
    // Nothing was evaluated: the passkey was never used, no code was spent, the
    // transaction is still open.
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM webauthn_credentials WHERE last_used_at IS NOT NULL"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM audit_log WHERE event = 'mfa.webauthn.success'"
        )
        .await,
        0
    );
    assert_eq!(
        dan.get("/auth/me").await.body["user"]["mfa"]["recovery_codes_left"],
        10
    );
    assert_eq!(dan.get(&path(id, "")).await.body["status"], "pending");
    // The transaction's own trail names the two refused factors.
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM audit_log WHERE event = 'transaction.failed'"
        )
        .await,
        2
    );
}

/// Zitadel GHSA-cfjq-28r2-4jv5: a user who had passed only the first factor was treated
/// as authenticated. Here the session of a password-only login of an MFA user is
/// `mfa_pending`: every route that needs an active session (all those the OpenAPI
/// document marks with `mfa_required`, step-up confirmation included) answers `401
/// mfa_required`, and the OAuth authorization endpoint sends it to the login UI instead
/// of issuing a code — until the second factor completes the login.
async fn zitadel_ghsa_cfjq_28r2_4jv5_one_factor_is_not_authenticated(backend: Backend) {
    let p = crate::oauth::provider(backend).await;
    let app = &p.app;
    let erin = app.logged_in("erin@example.com").await;
    let (phone, _) = enroll_totp(&erin).await;
    let (login, _) = pending(app, "erin@example.com").await;

    let spec = app.browser().get("/openapi.json").await.body;
    let mut refused = Vec::new();
    for (template, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let needs_active = operation["responses"]["401"]["description"]
                .as_str()
                .is_some_and(|d| d.contains("`mfa_required`"));
            if !needs_active {
                continue;
            }
            let concrete: Vec<String> = template
                .split('/')
                .map(|segment| {
                    if segment.starts_with('{') {
                        uuid::Uuid::new_v4().to_string()
                    } else {
                        segment.to_owned()
                    }
                })
                .collect();
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let body =
                matches!(method, Method::POST | Method::PUT | Method::PATCH).then(|| json!({}));
            login
                .send(method.clone(), &concrete.join("/"), body, Csrf::Auto)
                .await
                .assert_error(401, "mfa_required");
            refused.push(format!("{method} {template}"));
        }
    }
    for route in [
        "POST /auth/step-up/confirm",
        "POST /auth/password/change",
        "GET /auth/sessions",
        "POST /auth/transactions",
        "POST /auth/oauth/requests/{id}/accept",
        "PATCH /auth/admin/users/{id}",
    ] {
        assert!(refused.iter().any(|r| r == route), "{route} in {refused:?}");
    }

    // The authorization endpoint does not count the pending session as a login, not even
    // for a first-party client that asks for no consent.
    let (_, challenge) = pkce();
    let authorize = format!(
        "/oauth/authorize?{}",
        form(&[
            ("response_type", "code"),
            ("client_id", FIRST_PARTY),
            ("redirect_uri", REDIRECT),
            ("scope", "openid"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ])
    );
    let start = login.get(&authorize).await;
    assert_eq!(start.status, 303, "{start:?}");
    let location = start.header("location").unwrap().to_owned();
    assert!(!location.starts_with(REDIRECT), "{location}");
    let request = query_of(&location)["request"].clone();
    let info = login.get(&format!("/auth/oauth/requests/{request}")).await;
    assert_eq!(info.body["login_required"], true, "{info:?}");

    // The second factor completes the login; now the same request gets a code at once.
    let done = login
        .post("/auth/mfa/totp/verify", json!({"code": phone.code(1)}))
        .await;
    assert_eq!(done.body["code"], "login_ok", "{done:?}");
    let again = login.get(&authorize).await;
    let location = again.header("location").unwrap();
    assert!(location.starts_with(REDIRECT), "{again:?}");
    assert!(query_of(location).contains_key("code"));
}

/// Fires `n` copies of a request at once; counts the `(evaluated, locked)` answers, where
/// `evaluated` is `failure`'s status and code (the secret was checked and was wrong).
async fn race<F, Fut>(n: usize, send: F, failure: (u16, &str)) -> (usize, usize)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = TestResponse> + Send + 'static,
{
    let answers = futures::future::join_all((0..n).map(|_| tokio::spawn(send()))).await;
    let (mut evaluated, mut locked) = (0, 0);
    for answer in answers {
        let answer = answer.unwrap();
        if answer.status == 429 {
            answer.assert_error(429, "account_locked");
            locked += 1;
        } else {
            answer.assert_error(failure.0, failure.1);
            evaluated += 1;
        }
    }
    (evaluated, locked)
}

/// Keycloak GHSA-gc7q-jgjv-vjr2: parallel requests each read the failure count before
/// any of them stored its failure, so a burst got far more guesses than the threshold.
/// Here each attempt reserves its place atomically before it is evaluated: of 30 wrong
/// passwords (or 30 wrong codes) sent at once, exactly 5 are checked and 25 are refused.
async fn keycloak_ghsa_gc7q_jgjv_vjr2_parallel_guesses_never_exceed_the_threshold(
    backend: Backend,
) {
    let app = spawn_app_with(backend, &[("RATE_LIMIT_AUTH", "1000/600")]).await;
    app.verified_user("bob@example.com").await;
    let wrong = json!({"email": "bob@example.com", "password": "not the right password"});
    let (evaluated, locked) = race(
        30,
        || {
            let (browser, wrong) = (app.browser(), wrong.clone());
            async move { browser.post("/auth/login", wrong).await }
        },
        (401, "invalid_credentials"),
    )
    .await;
    assert_eq!((evaluated, locked), (5, 25));
    let checked = app
        .query("SELECT COUNT(*) FROM audit_log WHERE event = 'login.failure' AND metadata LIKE '%invalid_credentials%'")
        .await;
    assert_eq!(checked, vec![json!(5)]);

    // The same for one-time codes on a pending session.
    let carol = app.logged_in("carol@example.com").await;
    enroll_totp(&carol).await;
    let (login, _) = pending(&app, "carol@example.com").await;
    let (evaluated, locked) = race(
        30,
        || {
            let login = login.clone();
            async move {
                login
                    .post("/auth/mfa/totp/verify", json!({"code": "000000"}))
                    .await
            }
        },
        (401, "invalid_mfa_code"),
    )
    .await;
    assert_eq!((evaluated, locked), (5, 25));
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM audit_log WHERE event = 'mfa.totp.failure'"
        )
        .await,
        5
    );
}

/// Authentik GHSA-xr73-jq5p-ch8r: a deactivated user could still authenticate through
/// a path that did not check the flag. Here, once an admin disables an account, every
/// way in is refused: password and passkey logins, second factors of a pending login,
/// the sessions it had, a reset link sent before (and no new one is sent), and at the
/// OAuth endpoints the existing session, a code issued before, the refresh token,
/// introspection and userinfo. The token checks hold even for a disable that ended no
/// session (written to the database by another tool).
async fn authentik_ghsa_xr73_jq5p_ch8r_a_deactivated_account_does_not_authenticate(
    backend: Backend,
) {
    let p = crate::oauth::provider(backend).await;
    let app = &p.app;
    let admin = app.logged_in_as("root@example.com", "admin").await;
    enroll_verified_totp(&admin).await;

    let frank = app.logged_in("frank@example.com").await;
    let frank_id = user_id(&frank).await;
    let (phone, codes) = enroll_totp(&frank).await;
    let key = Passkey::new();
    crate::passkeys::register(&frank, &key, "Phone").await;
    let tokens = p
        .code_tokens(&frank, &Auth::Basic(WEB, WEB_SECRET), WEB)
        .await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(p.introspect(&access).await["active"], true);
    assert_eq!(p.introspect(&refresh).await["active"], true);
    let (callback, verifier) = p.authorize(&frank, WEB, &[]).await;
    let (pending_login, _) = pending(app, "frank@example.com").await;
    let second_factor = passkey_assertion(
        &pending_login,
        "/auth/webauthn/login/start",
        json!({}),
        &key,
    )
    .await;
    let visitor = app.browser();
    let passwordless = passkey_assertion(
        &visitor,
        "/auth/webauthn/login/start",
        json!({"email": "frank@example.com"}),
        &key,
    )
    .await;
    visitor
        .post(
            "/auth/password/reset/request",
            json!({"email": "frank@example.com"}),
        )
        .await;
    let reset_token = email_containing(app, "frank@example.com", RESET_LINK)
        .await
        .code();

    let disabled = admin
        .patch(
            &format!("/auth/admin/users/{frank_id}"),
            json!({"disabled": true}),
        )
        .await;
    assert_eq!(disabled.body["user"]["disabled"], true, "{disabled:?}");

    // Logins.
    app.browser()
        .post(
            "/auth/login",
            json!({"email": "frank@example.com", "password": PASSWORD}),
        )
        .await
        .assert_error(403, "account_disabled");
    visitor
        .post("/auth/webauthn/login/finish", passwordless)
        .await
        .assert_error(403, "account_disabled");
    let fresh = passkey_assertion(
        &visitor,
        "/auth/webauthn/login/start",
        json!({"email": "frank@example.com"}),
        &key,
    )
    .await;
    visitor
        .post("/auth/webauthn/login/finish", fresh)
        .await
        .assert_error(403, "account_disabled");
    // The pending login's second factors: its session ended with the disable.
    pending_login
        .post("/auth/mfa/totp/verify", json!({"code": phone.code(1)}))
        .await
        .assert_error(401, "not_authenticated");
    pending_login
        .post("/auth/mfa/recovery/verify", json!({"code": codes[0]}))
        .await
        .assert_error(401, "not_authenticated");
    let refused = pending_login
        .post("/auth/webauthn/login/finish", second_factor)
        .await;
    assert!(
        refused.status == 400 || refused.status == 401 || refused.status == 403,
        "{refused:?}"
    );
    assert_ne!(refused.body["code"], "login_ok");
    // Existing sessions, at their next request.
    frank
        .get("/auth/me")
        .await
        .assert_error(401, "not_authenticated");
    // Password reset: the earlier link changes nothing, and a new request sends nothing.
    let hash_before = app
        .query("SELECT password_hash FROM users WHERE email = 'frank@example.com'")
        .await;
    visitor
        .post(
            "/auth/password/reset/confirm",
            json!({"token": reset_token, "new_password": "Vermilion-Otter-Quarry-1987"}),
        )
        .await
        .assert_error(403, "account_disabled");
    assert_eq!(
        app.query("SELECT password_hash FROM users WHERE email = 'frank@example.com'")
            .await,
        hash_before
    );
    let requested = visitor
        .post(
            "/auth/password/reset/request",
            json!({"email": "frank@example.com"}),
        )
        .await;
    assert_eq!(requested.status, 202, "{requested:?}");
    app.smtp.settle_and_count("frank@example.com").await;
    let resets = app.smtp.received_by("frank@example.com");
    assert_eq!(
        resets
            .iter()
            .filter(|e| e.content.contains(RESET_LINK))
            .count(),
        1,
        "only the link sent before the disable"
    );
    // OAuth: the session's cookie no longer authorizes, and no earlier token works.
    let (_, challenge) = pkce();
    let start = frank
        .get(&format!(
            "/oauth/authorize?{}",
            form(&[
                ("response_type", "code"),
                ("client_id", FIRST_PARTY),
                ("redirect_uri", REDIRECT),
                ("scope", "openid"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ])
        ))
        .await;
    assert_eq!(start.status, 303, "{start:?}");
    assert!(!start.header("location").unwrap().starts_with(REDIRECT));
    assert_tokens_refused(&p, &callback["code"], &verifier, &access, &refresh).await;

    // A disable written straight to the database ends no session: the token endpoints
    // check the account themselves.
    let gina = app.logged_in("gina@example.com").await;
    let tokens = p
        .code_tokens(&gina, &Auth::Basic(WEB, WEB_SECRET), WEB)
        .await;
    let (callback, verifier) = p.authorize(&gina, WEB, &[]).await;
    assert_eq!(
        p.introspect(tokens["access_token"].as_str().unwrap()).await["active"],
        true
    );
    app.execute("UPDATE users SET disabled = true WHERE email = 'gina@example.com'")
        .await;
    assert_tokens_refused(
        &p,
        &callback["code"],
        &verifier,
        tokens["access_token"].as_str().unwrap(),
        tokens["refresh_token"].as_str().unwrap(),
    )
    .await;
}

/// A disabled user's code (issued before), refresh token and access token: refused at
/// the token endpoint, inactive at introspection, `invalid_token` at userinfo.
async fn assert_tokens_refused(
    p: &crate::oauth::Provider,
    code: &str,
    verifier: &str,
    access: &str,
    refresh: &str,
) {
    let exchanged = p
        .post_form(
            "/oauth/token",
            &Auth::Basic(WEB, WEB_SECRET),
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", verifier),
            ],
        )
        .await;
    crate::oauth::assert_oauth_error(&exchanged, 400, "invalid_grant");
    // Introspected before the refresh attempt, which spends the token either way.
    assert_eq!(p.introspect(refresh).await, json!({"active": false}));
    assert_eq!(p.introspect(access).await, json!({"active": false}));
    let refreshed = p
        .post_form(
            "/oauth/token",
            &Auth::Basic(WEB, WEB_SECRET),
            &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
        )
        .await;
    crate::oauth::assert_oauth_error(&refreshed, 400, "invalid_grant");
    assert_eq!(p.userinfo(access).await.status, 401);
}

on_both_backends!(
    zitadel_ghsa_7j7j_66cv_m239_wrong_one_time_codes_lock_the_account,
    zitadel_ghsa_xrw9_r35x_x878_newer_routes_do_not_skip_the_lockout,
    zitadel_ghsa_cfjq_28r2_4jv5_one_factor_is_not_authenticated,
    keycloak_ghsa_gc7q_jgjv_vjr2_parallel_guesses_never_exceed_the_threshold,
    authentik_ghsa_xr73_jq5p_ch8r_a_deactivated_account_does_not_authenticate,
);
