//! docs/API.md §11 compromised-password check: a password found in a breach corpus is
//! refused at registration, reset and change with `breached` in `reasons`; only 5 hex
//! characters of its SHA-1 leave the service; a source that cannot answer is logged,
//! counted and decided by `PWNED_PASSWORDS_ON_ERROR`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::json;
use sha1::{Digest, Sha1};

use crate::helpers::{Backend, PASSWORD, TestApp, spawn_app_with};
use crate::on_both_backends;

/// Strong by every local rule (length, lists, zxcvbn) — only the corpus knows it.
const BREACHED: &str = "quilted zebra harbour lantern";
const CLEAN_NEW: &str = "a brand new passphrase here";

/// The upper-case SHA-1 split as the range API splits it.
fn range_key(password: &str) -> (String, String) {
    let digest = hex::encode_upper(Sha1::digest(password.as_bytes()));
    (digest[..5].to_owned(), digest[5..].to_owned())
}

/// A range as the real API pads it: real lines, then `:0` lines that are not hits.
fn range_with(extra_line: &str) -> String {
    format!(
        "0018A45C4D1DEF81644B54AB7F969B88D65:1\r\n{extra_line}\r\n00D4F6E8FA6EECAD2A3AA415EEC418D38EC:0\r\n011053FD0102E94D6AE2F8B83D76FAF94F6:0"
    )
}

/// What the corpus holds: `BREACHED` (its suffix in lower case, which must still match)
/// and, as a padding line only, `PASSWORD` (count 0: not a hit).
fn corpus() -> HashMap<String, String> {
    let (breached_prefix, breached_suffix) = range_key(BREACHED);
    let (clean_prefix, clean_suffix) = range_key(PASSWORD);
    HashMap::from([
        (
            breached_prefix,
            range_with(&format!("{}:42", breached_suffix.to_lowercase())),
        ),
        (clean_prefix, range_with(&format!("{clean_suffix}:0"))),
    ])
}

/// (path, `Add-Padding` header) of every request the range API received.
type Requests = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A loopback HIBP-compatible range API under `/hibp`, recording what it was asked.
struct RangeServer {
    base_url: String,
    requests: Requests,
}

async fn range_server() -> RangeServer {
    let ranges = Arc::new(corpus());
    let requests: Requests = Arc::default();
    let recorded = Arc::clone(&requests);
    let app = axum::Router::new().fallback(
        move |uri: axum::http::Uri, headers: axum::http::HeaderMap| {
            let ranges = Arc::clone(&ranges);
            let recorded = Arc::clone(&recorded);
            async move {
                let padding = headers
                    .get("add-padding")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                recorded.lock().unwrap().push((uri.to_string(), padding));
                let prefix = uri.path().strip_prefix("/hibp/range/").unwrap_or_default();
                ranges
                    .get(prefix)
                    .cloned()
                    .unwrap_or_else(|| range_with("FFFFF1FD0102E94D6AE2F8B83D76FAF94F6:7"))
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    RangeServer {
        base_url: format!("http://{address}/hibp"),
        requests,
    }
}

/// A loopback address nothing listens on: the range API is down.
async fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{address}")
}

/// A loopback range API that accepts connections and never answers.
async fn hanging_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    format!("http://{address}")
}

/// `pwned_password_checks_total{outcome}` as the metrics listener shows it.
async fn checks(app: &TestApp, outcome: &str) -> u64 {
    let series = format!("pwned_password_checks_total{{outcome=\"{outcome}\"}} ");
    app.metrics()
        .await
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0, |value| value.trim().parse().unwrap())
}

async fn register(app: &TestApp, email: &str, password: &str) -> crate::helpers::TestResponse {
    app.browser()
        .post(
            "/auth/register",
            json!({"email": email, "password": password}),
        )
        .await
}

fn assert_breached(response: &crate::helpers::TestResponse) {
    response.assert_error(422, "weak_password");
    assert_eq!(
        response.body["reasons"],
        json!(["breached"]),
        "{response:?}"
    );
}

async fn a_breached_password_is_refused_at_registration_reset_and_change(backend: Backend) {
    let server = range_server().await;
    let app = spawn_app_with(backend, &[("PWNED_PASSWORDS_URL", &server.base_url)]).await;
    let hits = checks(&app, "hit").await;

    assert_breached(&register(&app, "eve@example.com", BREACHED).await);
    // Only the 5-character prefix was sent, with padding asked for.
    let (prefix, _) = range_key(BREACHED);
    assert_eq!(
        *server.requests.lock().unwrap(),
        vec![(format!("/hibp/range/{prefix}"), Some("true".to_owned()))]
    );
    assert_eq!(
        app.query("SELECT COUNT(*) FROM users").await,
        vec![json!(0)],
        "a refused registration creates nothing"
    );
    // A password that is in the answer only as a padding line (`:0`) passes.
    app.verified_user("alice@example.com").await;

    // Reset: refused, the token stays usable, a clean password then works.
    let anonymous = app.browser();
    anonymous
        .post(
            "/auth/password/reset/request",
            json!({"email": "alice@example.com"}),
        )
        .await;
    let token = app.smtp.wait_for_nth("alice@example.com", 2).await.code();
    let refused = anonymous
        .post(
            "/auth/password/reset/confirm",
            json!({"token": token, "new_password": BREACHED}),
        )
        .await;
    assert_breached(&refused);
    let done = anonymous
        .post(
            "/auth/password/reset/confirm",
            json!({"token": token, "new_password": CLEAN_NEW}),
        )
        .await;
    assert_eq!(done.body["code"], "password_reset", "{done:?}");

    // Change: refused, the current password still works.
    let bob = app.logged_in("bob@example.com").await;
    let refused = bob
        .post(
            "/auth/password/change",
            json!({"current_password": PASSWORD, "new_password": BREACHED}),
        )
        .await;
    assert_breached(&refused);
    app.login("bob@example.com").await;

    // A password that breaks a rule *and* is breached lists both reasons.
    let both = register(&app, "quilted@example.com", BREACHED).await;
    both.assert_error(422, "weak_password");
    let reasons = both.body["reasons"].as_array().unwrap();
    assert!(
        reasons.contains(&json!("contains_email")) && reasons.contains(&json!("breached")),
        "{both:?}"
    );

    assert!(checks(&app, "hit").await >= hits + 3);
    let requests = server.requests.lock().unwrap();
    assert!(
        requests.iter().all(|(path, padding)| {
            let prefix = path.strip_prefix("/hibp/range/").unwrap_or_default();
            prefix.len() == 5
                && prefix
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c))
                && padding.as_deref() == Some("true")
        }),
        "{requests:?}"
    );
}

async fn a_range_api_that_is_down_passes_under_allow_and_refuses_under_deny(backend: Backend) {
    let down = closed_port_url().await;
    let app = spawn_app_with(backend, &[("PWNED_PASSWORDS_URL", &down)]).await;
    let errors = checks(&app, "error").await;
    // `allow` (the default): registration keeps working, and the failure is counted.
    app.verified_user("alice@example.com").await;
    assert!(checks(&app, "error").await > errors);

    let strict = spawn_app_with(
        backend,
        &[
            ("PWNED_PASSWORDS_URL", &down),
            ("PWNED_PASSWORDS_ON_ERROR", "deny"),
        ],
    )
    .await;
    // `deny`: a dependency that is down gives 503, never an unchecked password…
    register(&strict, "bob@example.com", PASSWORD)
        .await
        .assert_error(503, "service_unavailable");
    assert_eq!(
        strict.query("SELECT COUNT(*) FROM users").await,
        vec![json!(0)]
    );
    // …while a password the local rules refuse still gets its 422.
    let weak = register(&strict, "bob@example.com", "short").await;
    weak.assert_error(422, "weak_password");
    assert!(
        weak.body["reasons"]
            .as_array()
            .unwrap()
            .contains(&json!("too_short"))
    );

    // An API that never answers is down after its 2-second timeout, not a stuck request.
    let hanging = hanging_url().await;
    let stalled = spawn_app_with(
        backend,
        &[
            ("PWNED_PASSWORDS_URL", &hanging),
            ("PWNED_PASSWORDS_ON_ERROR", "deny"),
        ],
    )
    .await;
    let started = std::time::Instant::now();
    register(&stalled, "carol@example.com", PASSWORD)
        .await
        .assert_error(503, "service_unavailable");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

async fn an_offline_copy_of_the_ranges_answers_like_the_api(backend: Backend) {
    let dir = std::env::temp_dir().join(format!("pwned-ranges-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    for (prefix, range) in corpus() {
        std::fs::write(dir.join(format!("{prefix}.txt")), range).unwrap();
    }
    let app = spawn_app_with(
        backend,
        &[
            ("PWNED_PASSWORDS_DIR", dir.to_str().unwrap()),
            ("PWNED_PASSWORDS_ON_ERROR", "deny"),
        ],
    )
    .await;
    assert_breached(&register(&app, "eve@example.com", BREACHED).await);
    app.verified_user("alice@example.com").await;
    // The copy has no file for this prefix: incomplete, so under `deny` it is refused.
    register(&app, "carol@example.com", CLEAN_NEW)
        .await
        .assert_error(503, "service_unavailable");
    let _ = std::fs::remove_dir_all(&dir);
}

on_both_backends!(
    a_breached_password_is_refused_at_registration_reset_and_change,
    a_range_api_that_is_down_passes_under_allow_and_refuses_under_deny,
    an_offline_copy_of_the_ranges_answers_like_the_api,
);
