//! docs/API.md §11 `PRIVILEGED_POLICY=pci` (PCI DSS 4.0 §8) for staff and admin: the
//! lockout (8.3.4), the password history (8.3.7), inactive accounts (8.2.6) and MFA on
//! every login (8.4.2). Customers (`user`) keep the default rules.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{Backend, PASSWORD, TestApp, spawn_app_with};
use crate::mfa::enroll_totp;
use crate::on_both_backends;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;
/// Strong passphrases, distinct from `PASSWORD` and from one another.
const OLDER: [&str; 4] = [
    "amber falcon drifts north",
    "copper meadow sings softly",
    "velvet harbor winter glow",
    "silent orchard paper moon",
];

async fn pci_app(backend: Backend, extra: &[(&str, &str)]) -> TestApp {
    let mut vars = vec![("PRIVILEGED_POLICY", "pci")];
    vars.extend_from_slice(extra);
    spawn_app_with(backend, &vars).await
}

fn login_body(email: &str, password: &str) -> serde_json::Value {
    json!({"email": email, "password": password})
}

async fn privileged_lockout_is_ten_failures_and_thirty_minutes(backend: Backend) {
    // A lenient default (12), so that the cap at 10 shows.
    let app = pci_app(backend, &[("LOCKOUT_THRESHOLD", "12")]).await;
    app.logged_in_as("staff@example.com", "staff").await;
    app.verified_user("customer@example.com").await;
    let browser = app.browser();

    // Staff: the 10th failure locks, for 30 minutes.
    for attempt in 1..=10 {
        let refused = browser
            .post(
                "/auth/login",
                login_body("staff@example.com", "wrong password!!"),
            )
            .await;
        assert_eq!(refused.status, 401, "attempt {attempt}: {refused:?}");
    }
    let locked = browser
        .post("/auth/login", login_body("staff@example.com", PASSWORD))
        .await;
    locked.assert_error(429, "account_locked");
    assert_eq!(locked.body["retry_after"], 1800, "{locked:?}");
    assert_eq!(locked.header("retry-after"), Some("1800"));
    let lock_seconds = app
        .query("SELECT metadata FROM audit_log WHERE event = 'login.locked'")
        .await;
    assert_eq!(lock_seconds.len(), 1);
    assert!(
        lock_seconds[0]
            .as_str()
            .unwrap()
            .contains("\"lock_seconds\":1800"),
        "{lock_seconds:?}"
    );

    // A customer is still on the default policy: 10 failures do not lock, the 12th
    // locks for one minute.
    for attempt in 1..=12 {
        let refused = browser
            .post(
                "/auth/login",
                login_body("customer@example.com", "wrong password!!"),
            )
            .await;
        assert_eq!(refused.status, 401, "attempt {attempt}: {refused:?}");
    }
    let locked = browser
        .post("/auth/login", login_body("customer@example.com", PASSWORD))
        .await;
    locked.assert_error(429, "account_locked");
    assert_eq!(locked.body["retry_after"], 60, "{locked:?}");
}

async fn privileged_passwords_cannot_repeat_the_last_four(backend: Backend) {
    let app = pci_app(backend, &[]).await;
    let staff = app.logged_in_as("staff@example.com", "staff").await;
    // Under pci a staff account enrolls a second factor before anything else.
    enroll_totp(&staff).await;
    let mut current = PASSWORD;
    for next in OLDER {
        let changed = staff
            .post(
                "/auth/password/change",
                json!({"current_password": current, "new_password": next}),
            )
            .await;
        assert_eq!(changed.body["code"], "password_changed", "{changed:?}");
        current = next;
    }
    // The current password and the three before it are refused, at change…
    for reused in OLDER {
        let refused = staff
            .post(
                "/auth/password/change",
                json!({"current_password": current, "new_password": reused}),
            )
            .await;
        refused.assert_error(422, "weak_password");
        assert_eq!(refused.body["reasons"], json!(["reused"]), "{refused:?}");
    }
    // …and at reset; the fifth-newest (the first) is accepted again.
    let anonymous = app.browser();
    anonymous
        .post(
            "/auth/password/reset/request",
            json!({"email": "staff@example.com"}),
        )
        .await;
    let token = reset_token(&app, "staff@example.com").await;
    for reused in OLDER {
        let refused = anonymous
            .post(
                "/auth/password/reset/confirm",
                json!({"token": token, "new_password": reused}),
            )
            .await;
        refused.assert_error(422, "weak_password");
        assert_eq!(refused.body["reasons"], json!(["reused"]), "{refused:?}");
    }
    let done = anonymous
        .post(
            "/auth/password/reset/confirm",
            json!({"token": token, "new_password": PASSWORD}),
        )
        .await;
    assert_eq!(done.body["code"], "password_reset", "{done:?}");
    // Only the three replaced hashes are kept (the current one is the fourth).
    let kept = app.query("SELECT COUNT(*) FROM password_history").await;
    assert_eq!(kept, vec![json!(3)]);

    // A customer may go back to an earlier password.
    let customer = app.logged_in("customer@example.com").await;
    for next in [OLDER[0], PASSWORD] {
        let current = if next == PASSWORD { OLDER[0] } else { PASSWORD };
        let changed = customer
            .post(
                "/auth/password/change",
                json!({"current_password": current, "new_password": next}),
            )
            .await;
        assert_eq!(changed.body["code"], "password_changed", "{changed:?}");
    }
}

/// The code of the password reset email `to` received.
async fn reset_token(app: &TestApp, to: &str) -> String {
    for _ in 0..300 {
        let reset = app
            .smtp
            .received_by(to)
            .into_iter()
            .find(|mail| mail.content.contains("reset-password?token="));
        if let Some(mail) = reset {
            return mail.code();
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    panic!("{to} got no reset email");
}

/// Sets when `email` last completed a login, `days` ago.
async fn last_login_days_ago(app: &TestApp, email: &str, days: i64) {
    let at = logicredit_auth::domain::now_millis() - days * DAY_MS;
    app.execute(&format!(
        "UPDATE users SET last_login_at = {at} WHERE email = '{email}'"
    ))
    .await;
}

async fn disabled_inactive(app: &TestApp) -> Vec<serde_json::Value> {
    app.query("SELECT user_id FROM audit_log WHERE event = 'account.disabled_inactive'")
        .await
}

async fn inactive_privileged_accounts_are_disabled_audited_and_reported(backend: Backend) {
    // The job runs at start and then every second.
    let app = pci_app(backend, &[("PCI_INACTIVITY_CHECK_SECONDS", "1")]).await;
    app.logged_in_as("admin@example.com", "admin").await;
    app.logged_in_as("second-admin@example.com", "admin").await;
    let idle = app.logged_in_as("idle@example.com", "staff").await;
    app.logged_in_as("recent@example.com", "staff").await;
    app.logged_in("customer@example.com").await;
    // Logging in records the time: nobody is inactive yet.
    let recorded = app
        .query("SELECT COUNT(*) FROM users WHERE last_login_at IS NOT NULL")
        .await;
    assert_eq!(recorded, vec![json!(5)]);
    last_login_days_ago(&app, "idle@example.com", 91).await;
    last_login_days_ago(&app, "recent@example.com", 89).await;
    last_login_days_ago(&app, "customer@example.com", 400).await;

    let mut disabled = Vec::new();
    for _ in 0..100 {
        disabled = disabled_inactive(&app).await;
        if !disabled.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(disabled.len(), 1, "{disabled:?}");
    let status = app
        .query("SELECT email FROM users WHERE disabled ORDER BY email")
        .await;
    assert_eq!(status, vec![json!("idle@example.com")]);
    let actor = app
        .query("SELECT actor_id FROM audit_log WHERE event = 'account.disabled_inactive'")
        .await;
    assert_eq!(actor, vec![json!(null)], "the system acted");
    let metadata = app
        .query("SELECT metadata FROM audit_log WHERE event = 'account.disabled_inactive'")
        .await;
    let metadata: serde_json::Value = serde_json::from_str(metadata[0].as_str().unwrap()).unwrap();
    assert_eq!(metadata["inactivity_days"], 90);
    assert_eq!(metadata["sessions_revoked"], 1);
    assert!(metadata["last_login_at"].is_string(), "{metadata}");

    // Its session ended; it cannot sign in.
    idle.get("/auth/me")
        .await
        .assert_error(401, "not_authenticated");
    app.browser()
        .post("/auth/login", login_body("idle@example.com", PASSWORD))
        .await
        .assert_error(403, "account_disabled");

    // Every enabled admin, and the owner, are told which account.
    for to in [
        "admin@example.com",
        "second-admin@example.com",
        "idle@example.com",
    ] {
        let mail = app.smtp.wait_for_nth(to, 2).await;
        assert!(
            mail.content.contains("idle@example.com") && mail.content.contains("90 days"),
            "{to}: {mail:?}"
        );
    }

    // More runs (scheduled, and the CLI's on another instance) change nothing.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let again = app
        .services()
        .await
        .inactive_accounts
        .disable_inactive()
        .await
        .unwrap();
    assert_eq!(again, 0);
    assert_eq!(disabled_inactive(&app).await.len(), 1);
    for to in ["admin@example.com", "idle@example.com"] {
        assert_eq!(app.smtp.settle_and_count(to).await, 2, "{to}");
    }
}

async fn privileged_accounts_use_a_second_factor_at_every_login(backend: Backend) {
    let app = pci_app(backend, &[]).await;
    for (email, role) in [
        ("staff@example.com", "staff"),
        ("admin@example.com", "admin"),
    ] {
        // Without a factor: only /auth/me and the enrollment routes.
        let browser = app.logged_in_as(email, role).await;
        assert_eq!(browser.get("/auth/me").await.status, 200);
        browser
            .get("/auth/sessions")
            .await
            .assert_error(403, "mfa_enrollment_required");
        let (authenticator, _) = enroll_totp(&browser).await;
        assert_eq!(browser.get("/auth/sessions").await.status, 200);

        // With one: every login asks for it (there is no remembered device).
        for step in [1, -1] {
            let again = app.browser();
            let response = again.post("/auth/login", login_body(email, PASSWORD)).await;
            assert_eq!(response.body["code"], "mfa_required", "{response:?}");
            again
                .get("/auth/sessions")
                .await
                .assert_error(401, "mfa_required");
            if step == 1 {
                let verified = again
                    .post(
                        "/auth/mfa/totp/verify",
                        json!({"code": authenticator.code(step)}),
                    )
                    .await;
                assert_eq!(verified.status, 200, "{verified:?}");
                assert_eq!(again.get("/auth/sessions").await.status, 200);
            }
        }
    }
    // A customer is not asked.
    let customer = app.logged_in("customer@example.com").await;
    assert_eq!(customer.get("/auth/sessions").await.status, 200);
}

/// `logicredit-auth disable-inactive` on the service's database and store.
fn disable_inactive_cli(app: &TestApp) -> String {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_logicredit-auth"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .arg("disable-inactive")
        .env("PRIVILEGED_POLICY", "pci");
    for key in ["DATABASE_URL", "TOTP_ENCRYPTION_KEY", "STORE_KEY_PREFIX"] {
        command.env(key, app.var(key));
    }
    if app.backend == Backend::PostgresRedis {
        command.env("REDIS_URL", app.var("REDIS_URL"));
    }
    let output = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_disables_inactive_accounts_once_on_either_database() {
    for backend in [Backend::Embedded, Backend::PostgresRedis] {
        // The instance's own check runs only at start here (hourly after).
        let app = pci_app(backend, &[]).await;
        app.logged_in_as("admin@example.com", "admin").await;
        app.logged_in_as("idle@example.com", "staff").await;
        last_login_days_ago(&app, "idle@example.com", 91).await;
        let first = disable_inactive_cli(&app);
        assert!(first.contains("disabled 1 "), "{first}");
        let second = disable_inactive_cli(&app);
        assert!(second.contains("disabled 0 "), "{second}");
        assert_eq!(disabled_inactive(&app).await.len(), 1);
        // The serving instance delivers what the CLI queued.
        let notice = app.smtp.wait_for_nth("admin@example.com", 2).await;
        assert!(notice.content.contains("idle@example.com"), "{notice:?}");
    }
}

on_both_backends!(
    privileged_lockout_is_ten_failures_and_thirty_minutes,
    privileged_passwords_cannot_repeat_the_last_four,
    inactive_privileged_accounts_are_disabled_audited_and_reported,
    privileged_accounts_use_a_second_factor_at_every_login,
);
