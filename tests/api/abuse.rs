//! docs/API.md §4 rate limits and lockout, §7 their clarifications.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{Backend, Browser, PASSWORD, spawn_app, spawn_app_with};
use crate::on_both_backends;

fn wrong(email: &str) -> serde_json::Value {
    json!({"email": email, "password": "not the right password"})
}

fn right(email: &str) -> serde_json::Value {
    json!({"email": email, "password": PASSWORD})
}

async fn with_forwarded_for(
    browser: &Browser,
    address: &str,
    path: &str,
    xff: &str,
) -> crate::helpers::TestResponse {
    let request = reqwest::Client::new()
        .post(format!("{address}{path}"))
        .header("x-forwarded-for", xff)
        .json(&json!({"email": "x@example.com"}));
    browser.execute(request, crate::helpers::Csrf::None).await
}

async fn one_bucket_per_ip_covers_every_pre_authentication_route(backend: Backend) {
    let app = spawn_app_with(backend, &[("RATE_LIMIT_AUTH", "3/2")]).await;
    let browser = app.browser();
    browser
        .post("/auth/login", wrong("a@example.com"))
        .await
        .assert_error(401, "invalid_credentials");
    assert_eq!(
        browser
            .post(
                "/auth/verify-email/resend",
                json!({"email": "a@example.com"})
            )
            .await
            .status,
        202
    );
    // Malformed requests count too.
    browser
        .post("/auth/register", json!({}))
        .await
        .assert_error(422, "validation_error");

    for _ in 0..3 {
        let limited = browser
            .post("/auth/verify-email", json!({"token": "x"}))
            .await;
        limited.assert_error(429, "rate_limited");
        let retry_after = limited.body["retry_after"].as_u64().unwrap();
        assert!((1..=2).contains(&retry_after), "{limited:?}");
        assert_eq!(
            limited.header("retry-after"),
            Some(retry_after.to_string().as_str())
        );
    }
    // Audited once per window, not once per refusal.
    let audited = app
        .query("SELECT COUNT(*) FROM audit_log WHERE event = 'rate_limit.exceeded'")
        .await;
    assert_eq!(audited, vec![json!(1)]);
    // Session routes are not pre-authentication routes.
    browser
        .get("/auth/me")
        .await
        .assert_error(401, "not_authenticated");

    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        browser
            .post(
                "/auth/verify-email/resend",
                json!({"email": "a@example.com"})
            )
            .await
            .status,
        202
    );
}

async fn forwarded_for_is_believed_only_from_trusted_proxies(backend: Backend) {
    let direct = spawn_app_with(backend, &[("RATE_LIMIT_AUTH", "2/60")]).await;
    let browser = direct.browser();
    // Without TRUSTED_PROXIES a spoofed header changes nothing: one bucket, the socket's.
    for (n, spoof) in ["1.1.1.1", "2.2.2.2", "3.3.3.3"].iter().enumerate() {
        let response = with_forwarded_for(
            &browser,
            &direct.address,
            "/auth/verify-email/resend",
            spoof,
        )
        .await;
        assert_eq!(
            response.status,
            if n < 2 { 202 } else { 429 },
            "{response:?}"
        );
    }

    let proxied = spawn_app_with(
        backend,
        &[
            ("RATE_LIMIT_AUTH", "2/60"),
            ("TRUSTED_PROXIES", "127.0.0.0/8"),
        ],
    )
    .await;
    let browser = proxied.browser();
    // Behind a trusted proxy each client has its own bucket: the right-most untrusted hop.
    for client in ["198.51.100.1", "198.51.100.2", "198.51.100.3"] {
        for _ in 0..2 {
            let chain = format!("6.6.6.6, {client}, 127.0.0.9");
            let response = with_forwarded_for(
                &browser,
                &proxied.address,
                "/auth/verify-email/resend",
                &chain,
            )
            .await;
            assert_eq!(response.status, 202, "{response:?}");
        }
    }
    let third = with_forwarded_for(
        &browser,
        &proxied.address,
        "/auth/verify-email/resend",
        "6.6.6.6, 198.51.100.1",
    )
    .await;
    third.assert_error(429, "rate_limited");
    let ips = proxied
        .query("SELECT ip FROM audit_log WHERE event = 'rate_limit.exceeded'")
        .await;
    assert_eq!(ips, vec![json!("198.51.100.1")]);
}

async fn repeated_failures_lock_the_account_with_growing_backoff(backend: Backend) {
    let app = spawn_app_with(backend, &[("LOCKOUT_BASE_SECONDS", "1")]).await;
    app.verified_user("alice@example.com").await;
    let browser = app.browser();
    for _ in 0..5 {
        browser
            .post("/auth/login", wrong("alice@example.com"))
            .await
            .assert_error(401, "invalid_credentials");
    }
    // Locked: even the right password is refused without being checked.
    let locked = browser
        .post("/auth/login", right("alice@example.com"))
        .await;
    locked.assert_error(429, "account_locked");
    assert_eq!(locked.body["retry_after"], 1);
    assert_eq!(locked.header("retry-after"), Some("1"));
    let events = app.audit_events().await;
    assert_eq!(events.iter().filter(|e| *e == "login.locked").count(), 1);
    let notice = app.smtp.wait_for_nth("alice@example.com", 2).await;
    assert!(notice.content.contains("locked"), "{notice:?}");

    // After the lock, the next failure locks again, for twice as long.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    browser
        .post("/auth/login", wrong("alice@example.com"))
        .await
        .assert_error(401, "invalid_credentials");
    let again = browser
        .post("/auth/login", right("alice@example.com"))
        .await;
    again.assert_error(429, "account_locked");
    assert_eq!(again.body["retry_after"], 2);
    assert!(
        app.smtp
            .wait_for_nth("alice@example.com", 3)
            .await
            .content
            .contains("locked")
    );

    // A completed login after the lock resets the count.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        browser
            .post("/auth/login", right("alice@example.com"))
            .await
            .body["code"],
        "login_ok"
    );
    for _ in 0..4 {
        browser
            .post("/auth/login", wrong("alice@example.com"))
            .await
            .assert_error(401, "invalid_credentials");
    }
}

async fn accounts_that_do_not_exist_lock_the_same_way(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = app.browser();
    for _ in 0..5 {
        browser
            .post("/auth/login", wrong("ghost@example.com"))
            .await
            .assert_error(401, "invalid_credentials");
    }
    browser
        .post("/auth/login", wrong("GHOST@example.com "))
        .await
        .assert_error(429, "account_locked");
    assert_eq!(app.smtp.settle_and_count("ghost@example.com").await, 0);
}

on_both_backends!(
    one_bucket_per_ip_covers_every_pre_authentication_route,
    forwarded_for_is_believed_only_from_trusted_proxies,
    repeated_failures_lock_the_account_with_growing_backoff,
    accounts_that_do_not_exist_lock_the_same_way,
);

/// Two instances on one PostgreSQL + Redis share both counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_share_the_rate_limit_and_the_lockout() {
    let first = spawn_app_with(Backend::PostgresRedis, &[("RATE_LIMIT_AUTH", "8/60")]).await;
    let second = first.sibling(&[]).await;
    first.verified_user("carol@example.com").await; // register + verify: 2 requests
    let (on_first, on_second) = (first.browser(), second.browser());
    for browser in [&on_first, &on_second, &on_first, &on_second] {
        browser
            .post("/auth/login", wrong("carol@example.com"))
            .await
            .assert_error(401, "invalid_credentials");
    }
    on_second
        .post("/auth/login", wrong("carol@example.com"))
        .await
        .assert_error(401, "invalid_credentials");
    on_first
        .post("/auth/login", right("carol@example.com"))
        .await
        .assert_error(429, "account_locked");
    // That was request 8 from 127.0.0.1 across both instances; the 9th is over the limit.
    on_second
        .post("/auth/login", right("carol@example.com"))
        .await
        .assert_error(429, "rate_limited");
}
