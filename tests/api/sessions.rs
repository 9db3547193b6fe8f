//! docs/API.md §2 sessions and CSRF, §3 session routes.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::helpers::{Backend, Browser, Csrf, spawn_app, spawn_app_with};
use crate::on_both_backends;

async fn requests_without_a_valid_session_are_not_authenticated(backend: Backend) {
    let app = spawn_app(backend).await;
    let anonymous = app.browser();
    for path in ["/auth/me", "/auth/csrf", "/auth/sessions"] {
        anonymous
            .get(path)
            .await
            .assert_error(401, "not_authenticated");
    }
    anonymous
        .post("/auth/logout", json!({}))
        .await
        .assert_error(401, "not_authenticated");
    let forged = app.browser();
    forged.set_cookie("session", "forged-token-value");
    forged
        .get("/auth/me")
        .await
        .assert_error(401, "not_authenticated");
    forged.set_cookie("session", &"x".repeat(4000));
    forged
        .get("/auth/me")
        .await
        .assert_error(401, "not_authenticated");
}

async fn writes_need_the_sessions_csrf_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.logged_in("alice@example.com").await;
    let token = alice.csrf_token().unwrap();

    // Session is checked before CSRF (docs/API.md §7): no session → 401 even without CSRF.
    app.browser()
        .send(Method::POST, "/auth/logout", None, Csrf::None)
        .await
        .assert_error(401, "not_authenticated");
    alice
        .send(Method::POST, "/auth/logout", None, Csrf::None)
        .await
        .assert_error(403, "csrf_failed");
    alice
        .send(
            Method::POST,
            "/auth/logout",
            None,
            Csrf::Value("wrong-token"),
        )
        .await
        .assert_error(403, "csrf_failed");
    // Another session's token is wrong too.
    let bob = app.logged_in("bob@example.com").await;
    alice
        .send(
            Method::POST,
            "/auth/logout",
            None,
            Csrf::Value(&bob.csrf_token().unwrap()),
        )
        .await
        .assert_error(403, "csrf_failed");
    // The first refusal on a session is audited; repeats within a minute are only
    // counted (issue 11, item 10: a flood must not write a row per request).
    let failures = app
        .query("SELECT COUNT(*) FROM audit_log WHERE event = 'csrf.failure'")
        .await;
    assert_eq!(failures, vec![json!(1)]);

    let fetched = alice.get("/auth/csrf").await;
    assert_eq!(fetched.body, json!({"code": "ok", "csrf_token": token}));

    let old_token = alice.cookie("session").unwrap();
    let out = alice.post("/auth/logout", json!({})).await;
    assert_eq!(out.body, json!({"code": "logged_out"}));
    let cleared = out.set_cookies();
    assert!(
        cleared
            .iter()
            .any(|c| c.starts_with("session=;") && c.contains("Max-Age=0")),
        "{cleared:?}"
    );
    // The session is dead server-side, not just forgotten by the browser.
    let replay = app.browser();
    replay.set_cookie("session", &old_token);
    replay
        .get("/auth/me")
        .await
        .assert_error(401, "not_authenticated");
    assert_eq!(bob.get("/auth/me").await.status, 200);
}

async fn users_see_and_revoke_only_their_own_sessions(backend: Backend) {
    let app = spawn_app(backend).await;
    app.verified_user("carol@example.com").await;
    let laptop = app.login("carol@example.com").await;
    let phone = app.login("carol@example.com").await;
    let mallory = app.logged_in("mallory@example.com").await;

    let listed = laptop.get("/auth/sessions").await;
    let sessions = listed.body["sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 2);
    let current: Vec<_> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    for session in &sessions {
        for field in [
            "id",
            "created_at",
            "last_seen_at",
            "expires_at",
            "ip",
            "user_agent",
        ] {
            assert!(session[field].is_string(), "{field} in {session}");
        }
        assert!(session.get("mfa_verified_at").is_some());
        assert_ne!(session["id"], json!(laptop.cookie("session")));
    }
    let phone_id = sessions.iter().find(|s| s["current"] == false).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Someone else's session id, an unknown id and a malformed one all look the same.
    let mallory_id = mallory.get("/auth/sessions").await.body["sessions"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    laptop
        .delete(&format!("/auth/sessions/{mallory_id}"))
        .await
        .assert_error(404, "not_found");
    laptop
        .delete(&format!("/auth/sessions/{}", uuid::Uuid::new_v4()))
        .await
        .assert_error(404, "not_found");
    laptop
        .delete("/auth/sessions/not-a-uuid")
        .await
        .assert_error(404, "not_found");
    assert_eq!(mallory.get("/auth/me").await.status, 200);

    let revoked = laptop.delete(&format!("/auth/sessions/{phone_id}")).await;
    assert_eq!(revoked.body, json!({"code": "session_revoked"}));
    phone
        .get("/auth/me")
        .await
        .assert_error(401, "not_authenticated");
    assert_eq!(laptop.get("/auth/me").await.status, 200);

    // Revoking the session in use works like a logout, cookies included.
    let laptop_id = laptop.get("/auth/sessions").await.body["sessions"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let own = laptop.delete(&format!("/auth/sessions/{laptop_id}")).await;
    assert_eq!(own.body, json!({"code": "session_revoked"}));
    assert!(
        own.set_cookies().iter().any(|c| c.starts_with("session=;")),
        "{own:?}"
    );
    laptop
        .get("/auth/me")
        .await
        .assert_error(401, "not_authenticated");
}

async fn revoke_others_keeps_only_the_current_session(backend: Backend) {
    let app = spawn_app(backend).await;
    app.verified_user("dan@example.com").await;
    let others: Vec<Browser> = vec![
        app.login("dan@example.com").await,
        app.login("dan@example.com").await,
    ];
    let current = app.login("dan@example.com").await;
    let response = current
        .post("/auth/sessions/revoke-others", json!({}))
        .await;
    assert_eq!(
        response.body,
        json!({"code": "sessions_revoked", "revoked": 2})
    );
    for other in &others {
        other
            .get("/auth/me")
            .await
            .assert_error(401, "not_authenticated");
    }
    assert_eq!(current.get("/auth/me").await.status, 200);
    assert_eq!(
        current.get("/auth/sessions").await.body["sessions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

async fn idle_sessions_expire_and_activity_slides_the_window(backend: Backend) {
    let app = spawn_app_with(backend, &[("SESSION_IDLE_TIMEOUT_SECONDS", "2")]).await;
    app.verified_user("erin@example.com").await;
    let active = app.login("erin@example.com").await;
    let idle = app.login("erin@example.com").await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(
            active.get("/auth/me").await.status,
            200,
            "activity keeps the session alive"
        );
    }
    idle.get("/auth/me")
        .await
        .assert_error(401, "not_authenticated");
}

async fn sessions_end_at_the_absolute_lifetime_despite_activity(backend: Backend) {
    let app = spawn_app_with(backend, &[("SESSION_ABSOLUTE_TIMEOUT_SECONDS", "2")]).await;
    let browser = app.logged_in("fay@example.com").await;
    let login_body_expiry =
        browser.get("/auth/sessions").await.body["sessions"][0]["expires_at"].clone();
    assert!(login_body_expiry.is_string());
    assert_eq!(browser.get("/auth/me").await.status, 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(browser.get("/auth/me").await.status, 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    browser
        .get("/auth/me")
        .await
        .assert_error(401, "not_authenticated");
}

async fn checking_a_session_does_not_write_to_the_database(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = app.logged_in("gus@example.com").await;
    let before = app.query("SELECT last_seen_at FROM sessions").await;
    for _ in 0..20 {
        assert_eq!(browser.get("/auth/me").await.status, 200);
    }
    // The durable copy is refreshed at most once per touch interval (5 minutes).
    assert_eq!(app.query("SELECT last_seen_at FROM sessions").await, before);
}

async fn a_session_in_use_writes_its_last_seen_time_once_per_touch_interval(backend: Backend) {
    // A 6 s idle timeout caps the configured 5-minute interval at a third of it: 2 s.
    let app = spawn_app_with(
        backend,
        &[
            ("SESSION_IDLE_TIMEOUT_SECONDS", "6"),
            ("SESSION_TOUCH_INTERVAL_SECONDS", "300"),
        ],
    )
    .await;
    let browser = app.logged_in("ida@example.com").await;
    let last_seen = || app.query("SELECT last_seen_at FROM sessions");
    let created = last_seen().await;
    for _ in 0..5 {
        assert_eq!(browser.get("/auth/me").await.status, 200);
    }
    assert_eq!(last_seen().await, created, "no write within the interval");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // Ten requests at once when the refresh is due: one of them writes it.
    let checks = futures::future::join_all((0..10).map(|_| browser.get("/auth/me"))).await;
    assert!(checks.iter().all(|check| check.status == 200));
    let refreshed = last_seen().await;
    assert!(
        refreshed[0].as_i64() > created[0].as_i64(),
        "the due refresh was written"
    );
    for _ in 0..5 {
        assert_eq!(browser.get("/auth/me").await.status, 200);
    }
    assert_eq!(
        last_seen().await,
        refreshed,
        "and not again until the next one"
    );
}

async fn sessions_survive_a_restart(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = app.logged_in("hal@example.com").await;
    let token = browser.cookie("session").unwrap();
    let app = app.restart().await;
    let returning = app.browser();
    returning.set_cookie("session", &token);
    let me = returning.get("/auth/me").await;
    assert_eq!(
        (me.status, me.body["user"]["email"].clone()),
        (200, json!("hal@example.com"))
    );
    // The CSRF token is derived from the session, so it is still valid too.
    let csrf = returning.get("/auth/csrf").await.body["csrf_token"].clone();
    assert_eq!(csrf, json!(browser.csrf_token().unwrap()));
}

on_both_backends!(
    requests_without_a_valid_session_are_not_authenticated,
    writes_need_the_sessions_csrf_token,
    users_see_and_revoke_only_their_own_sessions,
    revoke_others_keeps_only_the_current_session,
    idle_sessions_expire_and_activity_slides_the_window,
    sessions_end_at_the_absolute_lifetime_despite_activity,
    checking_a_session_does_not_write_to_the_database,
    a_session_in_use_writes_its_last_seen_time_once_per_touch_interval,
    sessions_survive_a_restart
);

/// Two instances behind a load balancer share PostgreSQL and Redis: a session made on
/// one works on the other, and a logout on one ends it on both at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_takes_effect_at_once_on_every_instance() {
    let first = spawn_app(Backend::PostgresRedis).await;
    let second = first.sibling(&[]).await;
    let on_first = first.logged_in("ivy@example.com").await;
    let on_second = Browser::new(&second.address);
    on_second.set_cookie("session", &on_first.cookie("session").unwrap());
    assert_eq!(on_second.get("/auth/me").await.status, 200);

    assert_eq!(on_first.post("/auth/logout", json!({})).await.status, 200);
    on_second
        .get("/auth/me")
        .await
        .assert_error(401, "not_authenticated");
}
