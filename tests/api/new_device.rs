//! docs/API.md §11 new-device alerts (`NEW_DEVICE_ALERTS=on`): the owner is emailed on a
//! completed login from a device (browser family + OS + network prefix) the account has
//! not used in 90 days, at most once per device per day; the first login only records.

use std::time::Duration;

use serde_json::{Value, json};

use crate::authenticators::Passkey;
use crate::helpers::{Backend, Browser, Csrf, PASSWORD, TestApp, TestResponse, spawn_app_with};
use crate::on_both_backends;
use crate::smtp_sink::ReceivedEmail;

const FIREFOX_LINUX: &str =
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
const FIREFOX_LINUX_UPDATED: &str =
    "Mozilla/5.0 (X11; Linux x86_64; rv:134.0) Gecko/20100101 Firefox/134.0";
const CHROME_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1";

const SUBJECT: &str = "sign-in from a new device";
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// Alerts on, and the client address taken from `X-Forwarded-For` (the test client
/// plays the proxy) so each login can come from its own network.
async fn app_with_alerts(backend: Backend, alerts: &str) -> TestApp {
    spawn_app_with(
        backend,
        &[
            ("NEW_DEVICE_ALERTS", alerts),
            ("TRUSTED_PROXIES", "127.0.0.0/8"),
        ],
    )
    .await
}

/// Sends `body` to `path` as a browser with this user agent at this address.
async fn post_from(
    app: &TestApp,
    browser: &Browser,
    path: &str,
    body: Value,
    user_agent: &str,
    ip: &str,
) -> TestResponse {
    let request = reqwest::Client::new()
        .post(format!("{}{path}", app.address))
        .header("user-agent", user_agent)
        .header("x-forwarded-for", ip)
        .json(&body);
    browser.execute(request, Csrf::Auto).await
}

/// A completed password-only login from a device.
async fn login_from(app: &TestApp, email: &str, user_agent: &str, ip: &str) {
    let response = post_from(
        app,
        &app.browser(),
        "/auth/login",
        json!({"email": email, "password": PASSWORD}),
        user_agent,
        ip,
    )
    .await;
    assert_eq!(response.body["code"], "login_ok", "{response:?}");
}

/// The new-device alerts `to` received, once the outbox had time to deliver: waits for
/// at least `expected`, then a little longer so an extra one would show.
async fn alerts(app: &TestApp, to: &str, expected: usize) -> Vec<ReceivedEmail> {
    let of_kind = || -> Vec<ReceivedEmail> {
        app.smtp
            .received_by(to)
            .into_iter()
            .filter(|m| m.content.contains(SUBJECT))
            .collect()
    };
    for _ in 0..300 {
        if of_kind().len() >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    of_kind()
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    app.query(sql).await[0].as_i64().unwrap()
}

async fn a_new_device_alerts_the_owner_once(backend: Backend) {
    let app = app_with_alerts(backend, "on").await;
    let email = "owner@example.com";
    app.verified_user(email).await;

    // The account's first login: recorded, nothing to compare it with, no alert.
    login_from(&app, email, FIREFOX_LINUX, "203.0.113.10").await;
    assert_eq!(count(&app, "SELECT COUNT(*) FROM known_devices").await, 1);
    // The same device again, from another address of the same /24 and after a browser
    // update: still the same device.
    login_from(&app, email, FIREFOX_LINUX, "203.0.113.200").await;
    login_from(&app, email, FIREFOX_LINUX_UPDATED, "203.0.113.11").await;
    assert!(alerts(&app, email, 0).await.is_empty());
    assert_eq!(count(&app, "SELECT COUNT(*) FROM known_devices").await, 1);

    // Another network: one alert, with what the owner needs to judge it.
    login_from(&app, email, FIREFOX_LINUX, "198.51.100.7").await;
    let got = alerts(&app, email, 1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let alert = &got[0].content;
    assert!(alert.contains("198.51.100.0/24"), "{alert}");
    assert!(alert.contains("Firefox on Linux"), "{alert}");
    assert!(!alert.contains("198.51.100.7"), "only the network: {alert}");
    assert!(alert.contains("change your password"), "{alert}");
    assert!(alert.contains("revoke your other sessions"), "{alert}");
    assert!(
        alert.contains("http://localhost:8000/ui/account"),
        "{alert}"
    );
    assert!(alert.contains("time: 20"), "an RFC 3339 time: {alert}");

    // A repeat from that network the same day: no second alert.
    login_from(&app, email, FIREFOX_LINUX, "198.51.100.8").await;
    assert_eq!(alerts(&app, email, 1).await.len(), 1);

    // Another browser on a known network is another device.
    login_from(&app, email, CHROME_WINDOWS, "203.0.113.10").await;
    let got = alerts(&app, email, 2).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[1].content.contains("Chrome on Windows"), "{got:?}");

    let events = app.audit_events().await;
    assert_eq!(
        events.iter().filter(|e| *e == "login.new_device").count(),
        2
    );
    let details = app
        .query("SELECT metadata FROM audit_log WHERE event = 'login.new_device' ORDER BY seq")
        .await;
    assert!(
        details[0].as_str().unwrap().contains("198.51.100.0/24"),
        "{details:?}"
    );
    // The table keeps keyed hashes only: no user agent, no address.
    let keys = app.query("SELECT device_key FROM known_devices").await;
    assert_eq!(keys.len(), 3);
    for key in keys {
        let key = key.as_str().unwrap();
        assert!(
            key.len() == 64 && key.chars().all(|c| c.is_ascii_hexdigit()),
            "{key}"
        );
    }
}

on_both_backends!(a_new_device_alerts_the_owner_once);

async fn a_device_unseen_for_90_days_is_new_again_but_never_twice_a_day(backend: Backend) {
    let app = app_with_alerts(backend, "on").await;
    let email = "returning@example.com";
    app.verified_user(email).await;
    login_from(&app, email, FIREFOX_LINUX, "203.0.113.10").await;
    login_from(&app, email, SAFARI_IPHONE, "198.51.100.7").await;
    assert_eq!(alerts(&app, email, 1).await.len(), 1);

    // The phone was last seen 91 days ago, but alerted just now: the flood guard holds.
    let now = now_ms();
    let old = now - 91 * DAY_MS;
    app.execute(&format!(
        "UPDATE known_devices SET last_seen_at = {old}, last_alert_at = {now} WHERE last_alert_at IS NOT NULL"
    ))
    .await;
    login_from(&app, email, SAFARI_IPHONE, "198.51.100.7").await;
    assert_eq!(alerts(&app, email, 1).await.len(), 1);

    // Last seen and alerted 91 days ago: new again, one alert.
    app.execute(&format!(
        "UPDATE known_devices SET last_seen_at = {old}, last_alert_at = {old} WHERE last_alert_at IS NOT NULL"
    ))
    .await;
    login_from(&app, email, SAFARI_IPHONE, "198.51.100.7").await;
    let got = alerts(&app, email, 2).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[1].content.contains("Safari on iOS"), "{got:?}");
    // Seen again: `last_seen_at` is fresh.
    let seen = count(
        &app,
        "SELECT MIN(last_seen_at) FROM known_devices WHERE last_alert_at IS NOT NULL",
    )
    .await;
    assert!(seen > now - DAY_MS, "{seen}");
}

on_both_backends!(a_device_unseen_for_90_days_is_new_again_but_never_twice_a_day);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn with_the_setting_off_nothing_is_recorded_or_sent(backend: Backend) {
    let app = app_with_alerts(backend, "off").await;
    let email = "quiet@example.com";
    app.verified_user(email).await;
    login_from(&app, email, FIREFOX_LINUX, "203.0.113.10").await;
    login_from(&app, email, CHROME_WINDOWS, "198.51.100.7").await;
    assert!(alerts(&app, email, 0).await.is_empty());
    assert_eq!(count(&app, "SELECT COUNT(*) FROM known_devices").await, 0);
    assert!(
        !app.audit_events()
            .await
            .iter()
            .any(|e| e == "login.new_device")
    );
}

on_both_backends!(with_the_setting_off_nothing_is_recorded_or_sent);

/// Registers a passkey on a logged-in browser.
async fn add_passkey(browser: &Browser, key: &Passkey) {
    let start = browser
        .post("/auth/webauthn/register/start", json!({}))
        .await;
    let credential = key.register(&start.body["options"]).await;
    let finish = browser
        .post(
            "/auth/webauthn/register/finish",
            json!({"ceremony_id": start.body["ceremony_id"], "credential": credential, "name": "Phone"}),
        )
        .await;
    assert_eq!(finish.status, 201, "{finish:?}");
}

async fn passkey_and_second_factor_logins_alert_when_they_complete(backend: Backend) {
    let app = app_with_alerts(backend, "on").await;
    let email = "passkey@example.com";
    app.verified_user(email).await;
    // First login (no user agent, the loopback network): recorded without an alert.
    let owner = app.login(email).await;
    let key = Passkey::new();
    add_passkey(&owner, &key).await;

    // Passwordless passkey login from a new device.
    let visitor = app.browser();
    let start = visitor
        .post("/auth/webauthn/login/start", json!({"email": email}))
        .await;
    let assertion = key.sign_in(&start.body["options"]).await;
    let done = post_from(
        &app,
        &visitor,
        "/auth/webauthn/login/finish",
        json!({"ceremony_id": start.body["ceremony_id"], "credential": assertion}),
        SAFARI_IPHONE,
        "198.51.100.7",
    )
    .await;
    assert_eq!(done.body["code"], "login_ok", "{done:?}");
    let got = alerts(&app, email, 1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].content.contains("Safari on iOS"), "{got:?}");

    // Password, then the passkey as second factor: the password step alone (pending)
    // sends nothing; the completed login does.
    let browser = app.browser();
    let login = post_from(
        &app,
        &browser,
        "/auth/login",
        json!({"email": email, "password": PASSWORD}),
        CHROME_WINDOWS,
        "192.0.2.33",
    )
    .await;
    assert_eq!(login.body["code"], "mfa_required", "{login:?}");
    assert_eq!(alerts(&app, email, 1).await.len(), 1);
    let challenge = browser.post("/auth/webauthn/login/start", json!({})).await;
    let assertion = key.sign_in(&challenge.body["options"]).await;
    let done = post_from(
        &app,
        &browser,
        "/auth/webauthn/login/finish",
        json!({"ceremony_id": challenge.body["ceremony_id"], "credential": assertion}),
        CHROME_WINDOWS,
        "192.0.2.33",
    )
    .await;
    assert_eq!(done.body["code"], "login_ok", "{done:?}");
    let got = alerts(&app, email, 2).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[1].content.contains("192.0.2.0/24"), "{got:?}");
    assert!(got[1].content.contains("Chrome on Windows"), "{got:?}");
}

on_both_backends!(passkey_and_second_factor_logins_alert_when_they_complete);
