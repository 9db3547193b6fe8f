//! docs/API.md §11 `AUTH_POLICY=psd2` (PSD2 RTS Art. 4, strong customer authentication):
//! the password and a one-time code arrive in one login, and no answer tells which factor
//! failed — nor whether the account exists; an account without a second factor enrolls one
//! before anything else; sessions idle out after 5 minutes; 5 failures block.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::authenticators::AuthenticatorApp;
use crate::helpers::{Backend, Browser, PASSWORD, TestApp, spawn_app_with};
use crate::mfa::enroll_totp;
use crate::oauth::{FIRST_PARTY, REDIRECT, form, pkce, provider_with, query_of};
use crate::on_both_backends;

/// The psd2 policy; the per-IP limit raised so that only the account lockout is in play.
async fn psd2_app(backend: Backend, extra: &[(&str, &str)]) -> TestApp {
    let mut vars = vec![("AUTH_POLICY", "psd2"), ("RATE_LIMIT_AUTH", "10000/600")];
    vars.extend_from_slice(extra);
    spawn_app_with(backend, &vars).await
}

/// A customer who signed in with the password alone (all a new account has) and then
/// enrolled TOTP; the browser is logged out again.
async fn customer_with_totp(app: &TestApp, email: &str) -> (AuthenticatorApp, Vec<String>) {
    let browser = app.logged_in(email).await;
    let enrolled = enroll_totp(&browser).await;
    browser.post("/auth/logout", json!({})).await;
    enrolled
}

async fn login(browser: &Browser, email: &str, password: &str, code: Option<&str>) -> Value {
    let mut body = json!({"email": email, "password": password});
    if let Some(code) = code {
        body["code"] = json!(code);
    }
    let response = browser.post("/auth/login", body).await;
    let mut answer = response.body.clone();
    answer["status"] = json!(response.status);
    answer
}

/// A code that is certainly not the right one.
fn wrong(code: &str) -> String {
    let n: u32 = code.parse().unwrap();
    format!("{:06}", (n + 500_000) % 1_000_000)
}

async fn password_and_code_sign_in_together(backend: Backend) {
    let app = psd2_app(backend, &[]).await;
    let email = "customer@example.com";
    let (totp, recovery) = customer_with_totp(&app, email).await;

    // Both factors in one request: an active session, MFA verified now, no pending step.
    let browser = app.browser();
    let ok = login(&browser, email, PASSWORD, Some(&totp.code(1))).await;
    assert_eq!(ok["code"], "login_ok", "{ok}");
    assert!(ok.get("mfa_enrollment_required").is_none(), "{ok}");
    let sessions = browser.get("/auth/sessions").await;
    assert_eq!(sessions.status, 200, "{sessions:?}");
    assert!(sessions.body["sessions"][0]["mfa_verified_at"].is_string());
    // The same code again is a replay: refused like any wrong factor.
    let replay = login(&app.browser(), email, PASSWORD, Some(&totp.code(1))).await;
    assert_eq!(
        (replay["status"].as_u64(), replay["code"].as_str()),
        (Some(401), Some("invalid_credentials"))
    );
    // The password alone is not enough, and there is no mfa_required step to reach.
    let alone = login(&app.browser(), email, PASSWORD, None).await;
    assert_eq!(alone["code"], "invalid_credentials", "{alone}");
    // A recovery code is a second factor too, once.
    let first = login(&app.browser(), email, PASSWORD, Some(&recovery[0])).await;
    assert_eq!(first["code"], "login_ok", "{first}");
    let again = login(&app.browser(), email, PASSWORD, Some(&recovery[0])).await;
    assert_eq!(again["code"], "invalid_credentials", "{again}");
    // Audited as what it was: the password was right, the second factor was not.
    let reasons = app
        .query("SELECT metadata FROM audit_log WHERE event = 'login.failure' ORDER BY seq")
        .await;
    let reasons: Vec<String> = reasons
        .iter()
        .map(|m| {
            let m: Value = m
                .as_str()
                .map_or(m.clone(), |s| serde_json::from_str(s).unwrap());
            m["reason"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(reasons, ["invalid_second_factor"; 3]);
}

/// One failed login as the attacker sees it: everything but what must differ per request.
#[derive(Debug, PartialEq)]
struct Observed {
    status: u16,
    body: Value,
    headers: BTreeMap<String, String>,
}

async fn attempt(app: &TestApp, email: &str, password: &str, code: &str) -> (Observed, Duration) {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let response = client
        .post(format!("{}/auth/login", app.address))
        .json(&json!({"email": email, "password": password, "code": code}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "x-request-id" | "date"))
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = response.json().await.unwrap();
    let elapsed = started.elapsed();
    (
        Observed {
            status,
            body,
            headers,
        },
        elapsed,
    )
}

const CASES: [&str; 4] = [
    "password wrong, code right",
    "password right, code wrong",
    "both wrong",
    "unknown email",
];
/// Samples per case.
const ROUNDS: usize = 32;
/// Failures per account, below the threshold of 5: no lock engages, so no lock notice
/// (which only an existing account can get) colours the timing.
const PER_ACCOUNT: usize = 4;

async fn every_failure_looks_the_same(backend: Backend) {
    // A realistic share of Argon2 (8 MiB) in each attempt, as production has (64 MiB).
    let app = psd2_app(backend, &[("ARGON2_MEMORY_KIB", "8192")]).await;
    let accounts = ROUNDS * 3 / PER_ACCOUNT + 1;
    let mut customers = Vec::new();
    for i in 0..accounts {
        let email = format!("c{i}@example.com");
        let (totp, _) = customer_with_totp(&app, &email).await;
        customers.push((email, totp));
    }
    let mut observed: Vec<Vec<Observed>> = (0..4).map(|_| Vec::new()).collect();
    let mut timings: Vec<Vec<Duration>> = (0..4).map(|_| Vec::new()).collect();
    let mut failures_on_existing = 0;
    for round in 0..ROUNDS {
        // Rotate the order each round, so no case always runs first (warm caches).
        for k in 0..4 {
            let case = (round + k) % 4;
            let (email, password, code) = if case == 3 {
                (
                    format!("nobody{round}@example.com"),
                    PASSWORD.to_owned(),
                    "123456".to_owned(),
                )
            } else {
                let (email, totp) = &customers[failures_on_existing / PER_ACCOUNT];
                failures_on_existing += 1;
                let right = totp.code(1);
                match case {
                    0 => (email.clone(), format!("{PASSWORD}x"), right),
                    1 => (email.clone(), PASSWORD.to_owned(), wrong(&right)),
                    _ => (email.clone(), format!("{PASSWORD}x"), wrong(&right)),
                }
            };
            let (seen, took) = attempt(&app, &email, &password, &code).await;
            observed[case].push(seen);
            timings[case].push(took);
        }
    }
    // Status, body and headers: identical, every time, in every case.
    let reference = &observed[0][0];
    assert_eq!(reference.status, 401, "{reference:?}");
    assert_eq!(reference.body["code"], "invalid_credentials");
    for (case, seen) in observed.iter().enumerate() {
        for one in seen {
            assert_eq!(one, reference, "{}: differs from {}", CASES[case], CASES[0]);
        }
    }
    // Timing: the four cases of one round run back to back, so a burst of load on a
    // busy test machine slows the whole round. Each attempt is compared with its round's
    // mean, and the median of those ratios per case must stay within 25 % of 1: a skipped
    // Argon2 run or a skipped query set would stand out, shared noise cancels.
    let ratios: Vec<f64> = (0..4)
        .map(|case| {
            let mut per_round: Vec<f64> = (0..ROUNDS)
                .map(|round| {
                    let mean = (0..4).map(|c| timings[c][round].as_secs_f64()).sum::<f64>() / 4.0;
                    timings[case][round].as_secs_f64() / mean
                })
                .collect();
            per_round.sort_by(f64::total_cmp);
            per_round[ROUNDS / 2]
        })
        .collect();
    for (case, ratio) in ratios.iter().enumerate() {
        assert!(
            (0.75..=1.25).contains(ratio),
            "{}: {ratio:.2} of its rounds' mean (all cases: {ratios:.2?})",
            CASES[case]
        );
    }
}

async fn five_failures_block_whatever_failed(backend: Backend) {
    let app = psd2_app(backend, &[]).await;
    let email = "customer@example.com";
    let (totp, _) = customer_with_totp(&app, email).await;
    let attempts = [
        (format!("{PASSWORD}x"), totp.code(1)),
        (PASSWORD.to_owned(), wrong(&totp.code(1))),
        (format!("{PASSWORD}x"), wrong(&totp.code(1))),
        (PASSWORD.to_owned(), String::new()),
        (PASSWORD.to_owned(), wrong(&totp.code(1))),
    ];
    for (password, code) in &attempts {
        let answer = login(&app.browser(), email, password, Some(code)).await;
        assert_eq!(answer["code"], "invalid_credentials", "{answer}");
    }
    // Blocked now, even with both factors right (RTS Art. 4(3)(b): at most 5 tries).
    let blocked = login(&app.browser(), email, PASSWORD, Some(&totp.code(1))).await;
    assert_eq!(
        (blocked["status"].as_u64(), blocked["code"].as_str()),
        (Some(429), Some("account_locked")),
        "{blocked}"
    );
    // An unknown email blocks the same way: the lock does not tell existence either.
    for _ in 0..5 {
        login(
            &app.browser(),
            "nobody@example.com",
            PASSWORD,
            Some("123456"),
        )
        .await;
    }
    let unknown = login(
        &app.browser(),
        "nobody@example.com",
        PASSWORD,
        Some("123456"),
    )
    .await;
    assert_eq!(unknown["code"], "account_locked", "{unknown}");
}

async fn a_second_factor_comes_before_anything_else(backend: Backend) {
    let app = psd2_app(backend, &[]).await;
    let email = "new@example.com";
    app.verified_user(email).await;
    let browser = app.browser();
    let first = login(&browser, email, PASSWORD, None).await;
    assert_eq!(first["code"], "login_ok", "{first}");
    assert_eq!(first["mfa_enrollment_required"], true, "{first}");
    // Who am I: yes. Anything else: enroll first.
    assert_eq!(browser.get("/auth/me").await.status, 200);
    browser
        .get("/auth/sessions")
        .await
        .assert_error(403, "mfa_enrollment_required");
    browser
        .post("/auth/sessions/revoke-others", json!({}))
        .await
        .assert_error(403, "mfa_enrollment_required");
    browser
        .post(
            "/auth/password/change",
            json!({"current_password": PASSWORD, "new_password": "another horse battery staple"}),
        )
        .await
        .assert_error(403, "mfa_enrollment_required");
    browser
        .get("/auth/webauthn/credentials")
        .await
        .assert_error(403, "mfa_enrollment_required");
    // Enrolling is what the session is for; afterwards everything answers.
    enroll_totp(&browser).await;
    assert_eq!(browser.get("/auth/sessions").await.status, 200);
}

/// The OpenID Provider honours the gate too: a session that must set up a second factor
/// is told so by the login page's request info, cannot allow anything, and `prompt=none`
/// ends with `interaction_required` — even for a first-party client that skips consent.
async fn the_provider_waits_for_the_set_up_of_a_second_factor(backend: Backend) {
    let p = provider_with(backend, &[("AUTH_POLICY", "psd2")]).await;
    let email = "new@example.com";
    p.app.verified_user(email).await;
    let browser = p.app.browser();
    let first = login(&browser, email, PASSWORD, None).await;
    assert_eq!(first["mfa_enrollment_required"], true, "{first}");

    let (silent, _) = p
        .authorize(&browser, FIRST_PARTY, &[("prompt", "none")])
        .await;
    assert_eq!(silent["error"], "interaction_required", "{silent:?}");
    assert!(!silent.contains_key("code"));

    let (_, challenge) = pkce();
    let pairs = [
        ("response_type", "code"),
        ("client_id", FIRST_PARTY),
        ("redirect_uri", REDIRECT),
        ("scope", "openid"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let start = browser
        .get(&format!("/oauth/authorize?{}", form(&pairs)))
        .await;
    let request = query_of(start.header("location").unwrap())["request"].clone();
    let info = browser
        .get(&format!("/auth/oauth/requests/{request}"))
        .await;
    assert_eq!(info.body["login_required"], false, "{info:?}");
    assert_eq!(info.body["mfa_enrollment_required"], true, "{info:?}");
    browser
        .post(&format!("/auth/oauth/requests/{request}/accept"), json!({}))
        .await
        .assert_error(403, "mfa_enrollment_required");
    assert_eq!(
        p.app
            .audit_events()
            .await
            .iter()
            .filter(|e| *e == "oauth.authorization_granted")
            .count(),
        0
    );

    // Once a factor is set up, the same session authorizes.
    enroll_totp(&browser).await;
    let (granted, _) = p.authorize(&browser, FIRST_PARTY, &[]).await;
    assert!(granted.contains_key("code"), "{granted:?}");
}

async fn sessions_idle_out_after_five_minutes(backend: Backend) {
    let app = psd2_app(backend, &[]).await;
    let email = "customer@example.com";
    let (totp, _) = customer_with_totp(&app, email).await;
    let ok = login(&app.browser(), email, PASSWORD, Some(&totp.code(1))).await;
    let idle = unix_seconds(ok["session"]["idle_expires_at"].as_str().unwrap());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let left = idle - now;
    assert!(
        (290..=301).contains(&left),
        "idle timeout {left} s, want 300"
    );
}

/// Seconds since the epoch of an RFC 3339 UTC timestamp.
fn unix_seconds(rfc3339: &str) -> i64 {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp()
}

on_both_backends!(
    password_and_code_sign_in_together,
    every_failure_looks_the_same,
    five_failures_block_whatever_failed,
    a_second_factor_comes_before_anything_else,
    the_provider_waits_for_the_set_up_of_a_second_factor,
    sessions_idle_out_after_five_minutes,
);
