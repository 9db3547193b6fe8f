//! Property tests of every decoder of client input (docs/API.md §1: "Nothing a client sends
//! may produce a 5xx"), against the real service: one app per test function, bounded
//! case counts, a fixed seed by default (`FUZZ_SEED=<u64>` explores others,
//! `FUZZ_CASES_PERCENT=<n>` scales every case count), and the seed corpus in
//! `tests/fuzz-corpus/` replayed first.

// Tests stop loudly: unwrap, expect and panic are how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
#[path = "api/authenticators.rs"]
mod authenticators;
#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;
#[allow(dead_code)]
#[path = "api/smtp_sink.rs"]
mod smtp_sink;

use std::collections::BTreeSet;
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use logicredit_auth::domain::EmailAddress;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use serde_json::{Map, Value, json};

use authenticators::{AuthenticatorApp, Passkey};
use helpers::{Backend, PASSWORD, TestApp};

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// Every case of one property talks to one app; the runtime outlives the cases.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Pre-authentication routes are rate-limited per IP and wrong codes lock accounts;
/// every case comes from 127.0.0.1, so both are lifted for the fuzzing apps.
const FUZZ_SETTINGS: &[(&str, &str)] = &[
    ("RATE_LIMIT_AUTH", "1000000/600"),
    ("RATE_LIMIT_ENROLLMENT", "1000000/600"),
    ("LOCKOUT_THRESHOLD", "1000000"),
];

fn runner(cases: u32) -> TestRunner {
    let percent: u32 = std::env::var("FUZZ_CASES_PERCENT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x4C43_4155_5448);
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config {
        cases: (cases * percent / 100).max(1),
        failure_persistence: None,
        max_shrink_iters: 200,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
}

fn check<S: Strategy>(
    name: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let mut runner = runner(cases);
    if let Err(error) = runner.run(&strategy, test) {
        panic!("property `{name}` failed: {error}");
    }
}

/// A raw answer: status, headers and body bytes.
#[derive(Debug)]
struct Raw {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_owned()
    }

    fn issues_a_session(&self) -> bool {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|c| c.starts_with("session=") && !c.starts_with("session=;"))
    }
}

impl std::fmt::Display for Raw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}",
            self.status,
            String::from_utf8_lossy(&self.body[..self.body.len().min(400)])
        )
    }
}

/// Who is calling: a session cookie and the CSRF header to send, if any.
#[derive(Debug, Clone, Default)]
struct Caller {
    cookie: Option<String>,
    csrf: Option<String>,
}

impl Caller {
    fn anonymous() -> Self {
        Self::default()
    }
}

struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    fn new(app: &TestApp) -> Self {
        Self {
            base: app.address.clone(),
            // A fresh connection per request: an early answer (before the body is read)
            // closes the connection, and reusing it would race (see tests/faults.rs).
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .redirect(reqwest::redirect::Policy::none())
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        caller: &Caller,
        headers: &[(HeaderName, HeaderValue)],
        body: Option<(Option<&str>, Vec<u8>)>,
    ) -> Raw {
        let mut request = self
            .http
            .request(method, format!("{}{path_and_query}", self.base));
        if let Some(cookie) = &caller.cookie {
            request = request.header("cookie", format!("session={cookie}"));
        }
        if let Some(csrf) = &caller.csrf {
            request = request.header("x-csrf-token", csrf);
        }
        for (name, value) in headers {
            request = request.header(name.clone(), value.clone());
        }
        if let Some((content_type, bytes)) = body {
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            request = request.body(bytes);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path_and_query}: the server did not answer: {e:?}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap().to_vec();
        Raw {
            status,
            headers,
            body,
        }
    }

    async fn json(&self, method: Method, path: &str, caller: &Caller, body: &Value) -> Raw {
        self.send(
            method,
            path,
            caller,
            &[],
            Some((Some("application/json"), serde_json::to_vec(body).unwrap())),
        )
        .await
    }
}

/// docs/API.md §1 for any answer: never a 5xx; a JSON object with a string `code`; errors add
/// a string `message`; every answer has a well-formed `X-Request-Id`.
fn contract(what: &str, raw: &Raw) -> Result<(), TestCaseError> {
    prop_assert!(raw.status < 500, "{what}: a client caused a 5xx: {raw}");
    let body: Value = serde_json::from_slice(&raw.body)
        .map_err(|_| TestCaseError::fail(format!("{what}: the body is not JSON: {raw}")))?;
    prop_assert!(
        body.get("code").is_some_and(Value::is_string),
        "{what}: no string `code`: {raw}"
    );
    if raw.status >= 400 {
        prop_assert!(
            body.get("message").is_some_and(Value::is_string),
            "{what}: an error without a `message`: {raw}"
        );
    }
    let id = raw
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    prop_assert!(acceptable_request_id(id), "{what}: bad X-Request-Id {id:?}");
    Ok(())
}

fn acceptable_request_id(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

// ---------------------------------------------------------------------------------------
// A world to fuzz: users, sessions, the routes
// ---------------------------------------------------------------------------------------

/// A logged-in browser's session, by hand (the fuzzers send their own headers).
async fn login_caller(client: &Client, email: &str) -> (Caller, Raw) {
    let raw = client
        .json(
            Method::POST,
            "/auth/login",
            &Caller::anonymous(),
            &json!({"email": email, "password": PASSWORD}),
        )
        .await;
    let cookie = raw
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("session="))
        .and_then(|c| c.split(';').next())
        .map(str::to_owned);
    let csrf = raw.json()["csrf_token"].as_str().map(str::to_owned);
    assert!(cookie.is_some() && csrf.is_some(), "login failed: {raw}");
    (Caller { cookie, csrf }, raw)
}

async fn user_id(client: &Client, caller: &Caller) -> String {
    let me = client
        .send(Method::GET, "/auth/me", caller, &[], None)
        .await;
    me.json()["user"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("/auth/me: {me}"))
        .to_owned()
}

/// An admin with TOTP verified just now (fresh for every S+MFA route during the run) and
/// a plain user for the admin routes to act on.
struct World {
    admin: Caller,
    admin_id: String,
    victim_id: String,
    /// POST and PATCH routes from the service's own OpenAPI document.
    routes: Vec<(Method, String)>,
}

/// The POST/PATCH routes of the contract (docs/API.md §3); the OpenAPI document must list at
/// least these, so the fuzzer cannot silently lose a route.
const KNOWN_WRITE_ROUTES: &[&str] = &[
    "POST /auth/register",
    "POST /auth/verify-email",
    "POST /auth/verify-email/resend",
    "POST /auth/login",
    "POST /auth/logout",
    "POST /auth/sessions/revoke-others",
    "POST /auth/mfa/totp/setup",
    "POST /auth/mfa/totp/verify",
    "POST /auth/mfa/recovery/verify",
    "POST /auth/mfa/recovery/regenerate",
    "POST /auth/webauthn/register/start",
    "POST /auth/webauthn/register/finish",
    "POST /auth/webauthn/login/start",
    "POST /auth/webauthn/login/finish",
    "POST /auth/password/reset/request",
    "POST /auth/password/reset/confirm",
    "POST /auth/password/change",
    "POST /auth/step-up/confirm",
    "PATCH /auth/admin/users/{id}",
    "POST /auth/admin/users/{id}/unlock",
];

async fn write_routes(client: &Client) -> Vec<(Method, String)> {
    let spec = client
        .send(
            Method::GET,
            "/openapi.json",
            &Caller::anonymous(),
            &[],
            None,
        )
        .await;
    assert_eq!(spec.status, 200, "{spec}");
    let spec = spec.json();
    let mut routes = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for method in ["post", "patch", "put"] {
            if item.get(method).is_some() {
                routes.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    for known in KNOWN_WRITE_ROUTES {
        assert!(
            routes.contains(*known),
            "{known} is missing from /openapi.json"
        );
    }
    routes
        .into_iter()
        .map(|r| {
            let (method, path) = r.split_once(' ').unwrap();
            (method.parse().unwrap(), path.to_owned())
        })
        .collect()
}

async fn world(app: &TestApp, client: &Client) -> World {
    app.verified_user("admin@example.com").await;
    app.execute("UPDATE users SET role = 'admin' WHERE email = 'admin@example.com'")
        .await;
    app.verified_user("victim@example.com").await;
    let (admin, _) = login_caller(client, "admin@example.com").await;
    // TOTP on: the session is MFA-fresh for the next 5 minutes.
    let setup = client
        .json(Method::POST, "/auth/mfa/totp/setup", &admin, &json!({}))
        .await;
    assert_eq!(setup.status, 200, "{setup}");
    let phone = AuthenticatorApp::from_setup(&setup.json());
    let enabled = client
        .json(
            Method::POST,
            "/auth/mfa/totp/verify",
            &admin,
            &json!({"code": phone.code(0)}),
        )
        .await;
    assert_eq!(enabled.code(), "totp_enabled", "{enabled}");
    let (victim, _) = login_caller(client, "victim@example.com").await;
    World {
        admin_id: user_id(client, &admin).await,
        victim_id: user_id(client, &victim).await,
        admin,
        routes: write_routes(client).await,
    }
}

impl World {
    /// A concrete path for a route template: `{id}` becomes the victim, an unknown id or
    /// garbage — never the admin itself (a self-demotion would end the run's admin).
    fn path(&self, template: &str, pick: &Index) -> String {
        self.path_with(template, pick.index(4))
    }

    fn path_with(&self, template: &str, pick: usize) -> String {
        let ids = [
            self.victim_id.clone(),
            uuid::Uuid::new_v4().to_string(),
            "not-a-uuid".to_owned(),
            "%00".to_owned(),
        ];
        debug_assert!(!ids.contains(&self.admin_id));
        template.replace("{id}", &ids[pick % ids.len()])
    }

    /// Who sends a case: nobody, the admin (with or without the CSRF header), or a
    /// made-up cookie. Logout is sent only without the admin's session, which it would end.
    fn caller(&self, route: &str, pick: u8) -> Caller {
        match pick % 5 {
            0 => Caller::anonymous(),
            1 | 2 if route != "/auth/logout" => self.admin.clone(),
            3 if route != "/auth/logout" => Caller {
                cookie: self.admin.cookie.clone(),
                csrf: None,
            },
            _ => Caller {
                cookie: Some("made-up-session-token".to_owned()),
                csrf: Some("made-up-csrf-token".to_owned()),
            },
        }
    }
}

// ---------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------

/// The field names the routes read: bodies built from them reach past the schema check.
const FIELDS: &[&str] = &[
    "email",
    "password",
    "token",
    "code",
    "current_password",
    "new_password",
    "ceremony_id",
    "credential",
    "name",
    "role",
    "disabled",
];

fn tricky_string() -> BoxedStrategy<String> {
    prop_oneof![
        3 => any::<String>(),
        2 => "[a-zA-Z0-9._%+-]{1,20}@[a-z0-9-]{1,12}\\.[a-z]{2,6}",
        1 => "\\PC{1,12}@\\PC{1,12}\\.\\PC{1,6}",
        1 => "[A-Za-z0-9]{32}",
        1 => "[A-Za-z0-9_-]{43}",
        1 => "[0-9]{6}",
        1 => "[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}",
        1 => prop::sample::select(vec![
            PASSWORD, "user", "staff", "admin", "root", "", " ", "null", "true",
            "correct horse battery staple \u{0}", "\u{0}", "İSTANBUL@EXAMPLE.COM",
            "a@b.c\r\nBcc: x@y.z", "\u{202e}moc.elpmaxe@ecila", "ﬁ@example.com",
        ])
        .prop_map(str::to_owned),
        2 => ("\\PC{0,8}", "\\PC{0,8}").prop_map(|(a, b)| format!("{a}\u{0}{b}")),
        1 => ".{100,400}",
        1 => Just(uuid::Uuid::nil().to_string()),
    ]
    .boxed()
}

fn json_value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        tricky_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..8)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
    .boxed()
}

fn key() -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::sample::select(FIELDS).prop_map(str::to_owned),
        1 => any::<String>(),
    ]
    .boxed()
}

/// An object of known fields, mostly strings: the shape most likely to reach a service.
fn field_object() -> BoxedStrategy<Value> {
    prop::collection::vec(
        (
            prop::sample::select(FIELDS),
            prop_oneof![4 => tricky_string().prop_map(Value::String), 1 => json_value()],
        ),
        0..6,
    )
    .prop_map(|entries| {
        Value::Object(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        )
    })
    .boxed()
}

#[derive(Debug, Clone)]
enum Body {
    Json(Value),
    Bytes(Option<&'static str>, Vec<u8>),
    Empty,
}

fn body() -> BoxedStrategy<Body> {
    let content_type = prop::sample::select(vec![
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        Some("APPLICATION/JSON"),
        Some("application/merge-patch+json"),
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ]);
    prop_oneof![
        4 => field_object().prop_map(Body::Json),
        3 => json_value().prop_map(Body::Json),
        2 => (content_type, prop::collection::vec(any::<u8>(), 0..512))
            .prop_map(|(t, b)| Body::Bytes(t, b)),
        1 => Just(Body::Empty),
    ]
    .boxed()
}

impl Body {
    fn encoded(&self) -> Option<(Option<&'static str>, Vec<u8>)> {
        match self {
            Body::Json(value) => {
                Some((Some("application/json"), serde_json::to_vec(value).unwrap()))
            }
            Body::Bytes(content_type, bytes) => Some((*content_type, bytes.clone())),
            Body::Empty => None,
        }
    }
}

/// Bytes a header value may carry (visible ASCII, space, tab, obs-text).
fn header_bytes(max: usize) -> BoxedStrategy<Vec<u8>> {
    prop::collection::vec(
        prop_oneof![8 => 0x20u8..0x7f, 1 => Just(b'\t'), 1 => 0x80u8..=0xff],
        0..max,
    )
    .boxed()
}

// ---------------------------------------------------------------------------------------
// 1. Bodies on every POST/PATCH route, the seed corpus first
// ---------------------------------------------------------------------------------------

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-corpus");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .map(|path| {
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&path).unwrap(),
            )
        })
        .collect();
    files.sort();
    assert!(files.len() >= 5, "the seed corpus is missing");
    files
}

fn bodies_on_every_write_route(backend: Backend) {
    let rt = runtime();
    let (app, client, world) = rt.block_on(async {
        let app = helpers::spawn_app_with(backend, FUZZ_SETTINGS).await;
        let client = Client::new(&app);
        let world = world(&app, &client).await;
        (app, client, world)
    });

    // The seed corpus, always, on every route with and without the session.
    rt.block_on(async {
        for (name, bytes) in corpus() {
            for (method, template) in &world.routes {
                for pick in [0u8, 1] {
                    let path = world.path_with(template, 0);
                    let caller = world.caller(template, pick);
                    let raw = client
                        .send(
                            method.clone(),
                            &path,
                            &caller,
                            &[],
                            Some((Some("application/json"), bytes.clone())),
                        )
                        .await;
                    if let Err(error) = contract(&format!("corpus {name} → {method} {path}"), &raw)
                    {
                        panic!("{error}");
                    }
                }
            }
        }
    });

    let strategy = (any::<Index>(), any::<Index>(), any::<u8>(), body());
    check(
        "bodies on every write route",
        512,
        strategy,
        |(route, id, who, body)| {
            let (method, template) = &world.routes[route.index(world.routes.len())];
            let path = world.path(template, &id);
            let caller = world.caller(template, who);
            rt.block_on(async {
                let raw = client
                    .send(method.clone(), &path, &caller, &[], body.encoded())
                    .await;
                contract(&format!("{method} {path} as {caller:?}"), &raw)
            })
        },
    );
    // The admin's session survived the run (logout was never sent with it).
    rt.block_on(async {
        let me = client
            .send(Method::GET, "/auth/me", &world.admin, &[], None)
            .await;
        assert_eq!(me.status, 200, "{me}");
        drop(app);
    });
}

#[test]
fn bodies_on_every_write_route_embedded() {
    bodies_on_every_write_route(Backend::Embedded);
}

#[test]
fn bodies_on_every_write_route_postgres_redis() {
    bodies_on_every_write_route(Backend::PostgresRedis);
}

// ---------------------------------------------------------------------------------------
// 2. Cookies, X-Forwarded-For and X-Request-Id
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct HostileHeaders {
    cookie: Vec<u8>,
    forwarded_for: Vec<Vec<u8>>,
    request_id: Vec<u8>,
    user_agent: Vec<u8>,
}

fn cookie_header() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        header_bytes(300),
        "[A-Za-z0-9_-]{0,200}".prop_map(|t| format!("session={t}").into_bytes()),
        ("[ -~]{0,80}", "[ -~]{0,80}")
            .prop_map(|(a, b)| format!("session={a}; csrf_token={b}; session=x").into_bytes()),
        "[A-Za-z0-9]{129,300}".prop_map(|t| format!("session={t}").into_bytes()),
    ]
    .boxed()
}

fn forwarded_hop() -> BoxedStrategy<String> {
    prop_oneof![
        any::<std::net::Ipv4Addr>().prop_map(|ip| ip.to_string()),
        any::<std::net::Ipv6Addr>().prop_map(|ip| ip.to_string()),
        (any::<std::net::Ipv6Addr>(), any::<u16>()).prop_map(|(ip, p)| format!("[{ip}]:{p}")),
        (any::<std::net::Ipv4Addr>(), any::<u16>()).prop_map(|(ip, p)| format!("{ip}:{p}")),
        Just("127.0.0.1".to_owned()),
        Just("unknown".to_owned()),
        "[ -~]{0,40}",
    ]
    .boxed()
}

fn forwarded_for() -> BoxedStrategy<Vec<Vec<u8>>> {
    prop::collection::vec(
        prop_oneof![
            3 => prop::collection::vec(forwarded_hop(), 0..6).prop_map(|hops| hops.join(",").into_bytes()),
            1 => header_bytes(200),
        ],
        0..3,
    )
    .boxed()
}

fn request_id() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        "[A-Za-z0-9._-]{1,64}".prop_map(String::into_bytes),
        "[A-Za-z0-9._-]{65,80}".prop_map(String::into_bytes),
        header_bytes(100),
    ]
    .boxed()
}

fn hostile_headers() -> BoxedStrategy<HostileHeaders> {
    (
        cookie_header(),
        forwarded_for(),
        request_id(),
        header_bytes(600),
    )
        .prop_map(
            |(cookie, forwarded_for, request_id, user_agent)| HostileHeaders {
                cookie,
                forwarded_for,
                request_id,
                user_agent,
            },
        )
        .boxed()
}

impl HostileHeaders {
    fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let value = |bytes: &[u8]| HeaderValue::from_bytes(bytes).ok();
        let mut headers = Vec::new();
        if let Some(v) = value(&self.cookie) {
            headers.push((HeaderName::from_static("cookie"), v));
        }
        for hop in &self.forwarded_for {
            if let Some(v) = value(hop) {
                headers.push((HeaderName::from_static("x-forwarded-for"), v));
            }
        }
        if let Some(v) = value(&self.request_id) {
            headers.push((HeaderName::from_static("x-request-id"), v));
        }
        if let Some(v) = value(&self.user_agent) {
            headers.push((HeaderName::from_static("user-agent"), v));
        }
        headers
    }

    /// The id the server must echo: ours when it is acceptable (and got sent at all).
    fn echoed_id(&self) -> Option<String> {
        HeaderValue::from_bytes(&self.request_id).ok()?;
        let id = String::from_utf8(self.request_id.clone()).ok()?;
        // The HTTP parser drops whitespace around a header value.
        let id = id.trim_matches([' ', '\t']).to_owned();
        acceptable_request_id(&id).then_some(id)
    }
}

/// Random cookies never authenticate and never crash; X-Forwarded-For garbage (from a
/// trusted proxy) is parsed safely; the response echoes a well-formed request id only.
#[test]
fn hostile_cookies_forwarded_for_and_request_ids() {
    let rt = runtime();
    let (app, client) = rt.block_on(async {
        let mut settings = FUZZ_SETTINGS.to_vec();
        settings.push(("TRUSTED_PROXIES", "127.0.0.1/32,::1/128,10.0.0.0/8"));
        let app = helpers::spawn_app_with(Backend::PostgresRedis, &settings).await;
        app.verified_user("alice@example.com").await;
        let client = Client::new(&app);
        (app, client)
    });
    let targets: &[(Method, &str, Option<Value>)] = &[
        (Method::GET, "/healthz", None),
        (Method::GET, "/auth/me", None),
        (Method::GET, "/auth/csrf", None),
        (Method::POST, "/auth/logout", None),
        (
            Method::POST,
            "/auth/login",
            Some(json!({"email": "alice@example.com", "password": "wrong password 42"})),
        ),
        (
            Method::POST,
            "/auth/webauthn/login/start",
            Some(json!({"email": "alice@example.com"})),
        ),
    ];
    check(
        "hostile headers",
        256,
        (any::<Index>(), hostile_headers()),
        |(target, hostile)| {
            let (method, path, body) = &targets[target.index(targets.len())];
            rt.block_on(async {
                let body = body
                    .as_ref()
                    .map(|b| (Some("application/json"), serde_json::to_vec(b).unwrap()));
                let raw = client
                    .send(
                        method.clone(),
                        path,
                        &Caller::anonymous(),
                        &hostile.headers(),
                        body,
                    )
                    .await;
                let what = format!("{method} {path} with {hostile:?}");
                contract(&what, &raw)?;
                let id = raw.headers["x-request-id"].to_str().unwrap();
                match hostile.echoed_id() {
                    Some(sent) => prop_assert_eq!(id, sent.as_str(), "{}", what),
                    None => prop_assert!(
                        uuid::Uuid::parse_str(id).is_ok(),
                        "{what}: a refused request id must be replaced by a fresh one, got {id:?}"
                    ),
                }
                if matches!(*path, "/auth/me" | "/auth/csrf" | "/auth/logout") {
                    prop_assert_eq!(raw.status, 401, "{}: {}", what, raw);
                    prop_assert_eq!(raw.code(), "not_authenticated");
                }
                prop_assert!(!raw.issues_a_session(), "{what}: {raw}");
                Ok(())
            })
        },
    );
    drop(app);
}

// ---------------------------------------------------------------------------------------
// 3. Second-factor codes on an mfa_pending session
// ---------------------------------------------------------------------------------------

fn mfa_code() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => "[0-9]{6}".prop_map(Value::from),
        1 => "[0-9]{0,12}".prop_map(Value::from),
        1 => " ?[0-9]{3} [0-9]{3} ?".prop_map(Value::from),
        2 => "[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}".prop_map(Value::from),
        1 => "[A-Z2-9 -]{16,24}".prop_map(Value::from),
        1 => "[٠-٩]{6}".prop_map(Value::from),
        2 => tricky_string().prop_map(Value::from),
        1 => json_value(),
    ]
    .boxed()
}

fn normalize_recovery(code: &str) -> String {
    code.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Random TOTP and recovery codes on a pending session: never a 5xx, never a success,
/// never a session; the pending session stays pending and a real code still works.
#[test]
fn random_second_factor_codes_never_succeed() {
    let rt = runtime();
    let (app, client, pending, phone, recovery) = rt.block_on(async {
        let app = helpers::spawn_app_with(Backend::PostgresRedis, FUZZ_SETTINGS).await;
        let client = Client::new(&app);
        app.verified_user("mfa@example.com").await;
        let (active, _) = login_caller(&client, "mfa@example.com").await;
        let setup = client
            .json(Method::POST, "/auth/mfa/totp/setup", &active, &json!({}))
            .await;
        let phone = AuthenticatorApp::from_setup(&setup.json());
        let enabled = client
            .json(
                Method::POST,
                "/auth/mfa/totp/verify",
                &active,
                &json!({"code": phone.code(0)}),
            )
            .await;
        assert_eq!(enabled.code(), "totp_enabled", "{enabled}");
        let recovery: Vec<String> = enabled.json()["recovery_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| normalize_recovery(c.as_str().unwrap()))
            .collect();
        let (pending, login) = login_caller(&client, "mfa@example.com").await;
        assert_eq!(login.code(), "mfa_required", "{login}");
        (app, client, pending, phone, recovery)
    });
    let routes = ["/auth/mfa/totp/verify", "/auth/mfa/recovery/verify"];
    check(
        "random second-factor codes",
        256,
        (any::<Index>(), mfa_code()),
        |(route, code)| {
            let route = routes[route.index(routes.len())];
            if let Some(text) = code.as_str() {
                let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
                let live = (-2..=2).any(|step| phone.code(step) == digits);
                prop_assume!(!live, "a live TOTP code");
                prop_assume!(!recovery.contains(&normalize_recovery(text)));
            }
            rt.block_on(async {
                let raw = client
                    .json(Method::POST, route, &pending, &json!({"code": code}))
                    .await;
                let what = format!("{route} with {code}");
                contract(&what, &raw)?;
                prop_assert!(
                    matches!(raw.status, 400 | 401 | 422),
                    "{what}: expected a refusal, got {raw}"
                );
                prop_assert!(!raw.issues_a_session(), "{what}: {raw}");
                prop_assert!(raw.code() != "login_ok", "{what}: {raw}");
                Ok(())
            })
        },
    );
    rt.block_on(async {
        let me = client
            .send(Method::GET, "/auth/me", &pending, &[], None)
            .await;
        assert_eq!(me.code(), "mfa_required", "still pending: {me}");
        let done = client
            .json(
                Method::POST,
                "/auth/mfa/recovery/verify",
                &pending,
                &json!({"code": recovery[0]}),
            )
            .await;
        assert_eq!(done.code(), "login_ok", "a real code still works: {done}");
        drop(app);
    });
}

// ---------------------------------------------------------------------------------------
// 4. Email tokens
// ---------------------------------------------------------------------------------------

fn token() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => "[A-Za-z0-9]{32}".prop_map(Value::from),
        3 => "[A-Za-z0-9_-]{43}".prop_map(Value::from),
        1 => " [A-Za-z0-9]{32} ".prop_map(Value::from),
        1 => "[A-Za-z0-9_=+/-]{0,100}".prop_map(Value::from),
        2 => tricky_string().prop_map(Value::from),
        1 => json_value(),
    ]
    .boxed()
}

/// Random verification and reset tokens: never a 5xx and never accepted, while real
/// tokens of both kinds are outstanding (so the look-ups search non-empty tables).
#[test]
fn random_email_tokens_are_never_accepted() {
    let rt = runtime();
    let (app, client) = rt.block_on(async {
        let app = helpers::spawn_app_with(Backend::PostgresRedis, FUZZ_SETTINGS).await;
        let client = Client::new(&app);
        app.register("pending@example.com").await;
        app.verified_user("reset@example.com").await;
        let requested = client
            .json(
                Method::POST,
                "/auth/password/reset/request",
                &Caller::anonymous(),
                &json!({"email": "reset@example.com"}),
            )
            .await;
        assert_eq!(requested.status, 202);
        app.smtp.wait_for_nth("reset@example.com", 2).await;
        (app, client)
    });
    let new_password = prop_oneof![
        Just(Value::from("a brand new passphrase 42")),
        tricky_string().prop_map(Value::from),
        json_value(),
    ];
    check(
        "random email tokens",
        256,
        (any::<bool>(), token(), new_password),
        |(verify, token, new_password)| {
            rt.block_on(async {
                let (route, body) = if verify {
                    ("/auth/verify-email", json!({"token": token}))
                } else {
                    (
                        "/auth/password/reset/confirm",
                        json!({"token": token, "new_password": new_password}),
                    )
                };
                let raw = client
                    .json(Method::POST, route, &Caller::anonymous(), &body)
                    .await;
                let what = format!("{route} with {body}");
                contract(&what, &raw)?;
                prop_assert!(
                    matches!(raw.status, 400 | 422),
                    "{what}: expected invalid_token or a validation error, got {raw}"
                );
                Ok(())
            })
        },
    );
    rt.block_on(async {
        let unverified = app
            .query("SELECT COUNT(*) FROM users WHERE email_verified_at IS NULL")
            .await;
        assert_eq!(
            unverified,
            vec![json!(1)],
            "no random token verified anyone"
        );
    });
}

// ---------------------------------------------------------------------------------------
// 5. WebAuthn credentials
// ---------------------------------------------------------------------------------------

/// One change to a credential JSON: applied at a leaf chosen by `at`.
#[derive(Debug, Clone)]
enum Mutation {
    /// Replace the leaf with any JSON value.
    Replace(Index, Value),
    /// Decode a base64url leaf, flip one byte, re-encode.
    FlipByte(Index, Index, u8),
    /// Decode a base64url leaf, cut it short, re-encode.
    Truncate(Index, Index),
    /// Decode a base64url leaf, append bytes, re-encode.
    Extend(Index, Vec<u8>),
    /// Remove the leaf's key.
    Remove(Index),
}

fn mutation() -> BoxedStrategy<Mutation> {
    prop_oneof![
        2 => (any::<Index>(), json_value()).prop_map(|(at, v)| Mutation::Replace(at, v)),
        4 => (any::<Index>(), any::<Index>(), 1u8..=255)
            .prop_map(|(at, pos, xor)| Mutation::FlipByte(at, pos, xor)),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(at, len)| Mutation::Truncate(at, len)),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(at, extra)| Mutation::Extend(at, extra)),
        1 => any::<Index>().prop_map(Mutation::Remove),
    ]
    .boxed()
}

/// JSON-pointer paths of every leaf (strings, numbers, …) in `value`.
fn leaves(value: &Value, prefix: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                leaves(
                    v,
                    format!("{prefix}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                leaves(v, format!("{prefix}/{i}"), out);
            }
        }
        _ => out.push(prefix),
    }
}

fn apply(credential: &mut Value, mutation: &Mutation) {
    let mut paths = Vec::new();
    leaves(credential, String::new(), &mut paths);
    // Byte-level changes go to the base64url fields (the binary WebAuthn structures);
    // replacing and removing may hit any field.
    let binary: Vec<String> = paths
        .iter()
        .filter(|p| {
            credential
                .pointer(p)
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty() && URL_SAFE_NO_PAD.decode(s).is_ok())
        })
        .cloned()
        .collect();
    let (candidates, at) = match mutation {
        Mutation::Replace(at, _) | Mutation::Remove(at) => (&paths, at),
        Mutation::FlipByte(at, _, _) | Mutation::Truncate(at, _) | Mutation::Extend(at, _) => {
            (&binary, at)
        }
    };
    if candidates.is_empty() {
        return;
    }
    let path = candidates[at.index(candidates.len())].clone();
    if let Mutation::Remove(_) = mutation {
        let (parent, key) = path.rsplit_once('/').unwrap();
        if let Some(Value::Object(map)) = credential.pointer_mut(parent) {
            map.remove(&key.replace("~1", "/").replace("~0", "~"));
        }
        return;
    }
    let Some(leaf) = credential.pointer_mut(&path) else {
        return;
    };
    if let Mutation::Replace(_, value) = mutation {
        *leaf = value.clone();
        return;
    }
    let mut bytes = URL_SAFE_NO_PAD
        .decode(leaf.as_str().unwrap_or_default())
        .unwrap_or_default();
    match mutation {
        Mutation::FlipByte(_, pos, xor) if !bytes.is_empty() => {
            let i = pos.index(bytes.len());
            bytes[i] ^= xor;
        }
        Mutation::Truncate(_, len) => bytes.truncate(len.index(bytes.len().max(1))),
        Mutation::Extend(_, extra) => bytes.extend_from_slice(extra),
        _ => {}
    }
    *leaf = Value::from(URL_SAFE_NO_PAD.encode(bytes));
}

#[derive(Debug, Clone)]
enum PasskeyCase {
    /// A real registration, mutated.
    Register(Vec<Mutation>),
    /// A real passwordless assertion, mutated.
    Login(Vec<Mutation>),
    /// Any JSON as the credential of either finish route, with a live ceremony id.
    Shape(bool, Value),
    /// A valid registration with any name.
    Name(Value),
}

fn passkey_case() -> BoxedStrategy<PasskeyCase> {
    let mutations = || prop::collection::vec(mutation(), 1..4);
    prop_oneof![
        3 => mutations().prop_map(PasskeyCase::Register),
        3 => mutations().prop_map(PasskeyCase::Login),
        2 => (any::<bool>(), json_value()).prop_map(|(r, v)| PasskeyCase::Shape(r, v)),
        2 => prop_oneof![
            3 => tricky_string().prop_map(Value::from),
            1 => "\\PC{0,64}".prop_map(Value::from),
            1 => ".{0,10}\u{0}.{0,10}".prop_map(Value::from),
            1 => json_value(),
        ]
        .prop_map(PasskeyCase::Name),
    ]
    .boxed()
}

/// Mutated real credentials, arbitrary credential shapes and arbitrary passkey names on
/// `/auth/webauthn/register/finish` and `/auth/webauthn/login/finish`: never a 5xx.
#[test]
fn webauthn_credentials_of_any_shape() {
    let rt = runtime();
    let (app, client, user, passkey) = rt.block_on(async {
        let app = helpers::spawn_app_with(Backend::PostgresRedis, FUZZ_SETTINGS).await;
        let client = Client::new(&app);
        app.verified_user("keys@example.com").await;
        let (user, _) = login_caller(&client, "keys@example.com").await;
        let passkey = Passkey::new();
        let start = client
            .json(Method::POST, "/auth/webauthn/register/start", &user, &json!({}))
            .await;
        let credential = passkey.register(&start.json()["options"]).await;
        let finish = client
            .json(
                Method::POST,
                "/auth/webauthn/register/finish",
                &user,
                &json!({"ceremony_id": start.json()["ceremony_id"], "credential": credential, "name": "seed"}),
            )
            .await;
        assert_eq!(finish.status, 201, "{finish}");
        (app, client, user, passkey)
    });
    check("webauthn credentials", 128, passkey_case(), |case| {
        rt.block_on(async {
            let register_start = || async {
                client
                    .json(Method::POST, "/auth/webauthn/register/start", &user, &json!({}))
                    .await
                    .json()
            };
            let login_start = || async {
                client
                    .json(
                        Method::POST,
                        "/auth/webauthn/login/start",
                        &Caller::anonymous(),
                        &json!({"email": "keys@example.com"}),
                    )
                    .await
                    .json()
            };
            let (route, caller, body) = match &case {
                PasskeyCase::Register(mutations) => {
                    let start = register_start().await;
                    let mut credential = passkey.register(&start["options"]).await;
                    for m in mutations {
                        apply(&mut credential, m);
                    }
                    (
                        "/auth/webauthn/register/finish",
                        user.clone(),
                        json!({"ceremony_id": start["ceremony_id"], "credential": credential}),
                    )
                }
                PasskeyCase::Login(mutations) => {
                    let start = login_start().await;
                    let mut credential = passkey.sign_in(&start["options"]).await;
                    for m in mutations {
                        apply(&mut credential, m);
                    }
                    (
                        "/auth/webauthn/login/finish",
                        Caller::anonymous(),
                        json!({"ceremony_id": start["ceremony_id"], "credential": credential}),
                    )
                }
                PasskeyCase::Shape(true, credential) => {
                    let start = register_start().await;
                    (
                        "/auth/webauthn/register/finish",
                        user.clone(),
                        json!({"ceremony_id": start["ceremony_id"], "credential": credential}),
                    )
                }
                PasskeyCase::Shape(false, credential) => {
                    let start = login_start().await;
                    (
                        "/auth/webauthn/login/finish",
                        Caller::anonymous(),
                        json!({"ceremony_id": start["ceremony_id"], "credential": credential}),
                    )
                }
                PasskeyCase::Name(name) => {
                    let start = register_start().await;
                    let credential = passkey.register(&start["options"]).await;
                    (
                        "/auth/webauthn/register/finish",
                        user.clone(),
                        json!({"ceremony_id": start["ceremony_id"], "credential": credential, "name": name}),
                    )
                }
            };
            let raw = client.json(Method::POST, route, &caller, &body).await;
            contract(&format!("{route} with {case:?}"), &raw)
        })
    });
    drop(app);
}

// ---------------------------------------------------------------------------------------
// 6. Query strings of the staff routes
// ---------------------------------------------------------------------------------------

fn query_pairs() -> BoxedStrategy<Vec<(String, String)>> {
    let name = prop_oneof![
        4 => prop::sample::select(vec![
            "email", "role", "disabled", "cursor", "limit", "user_id", "event", "since", "until",
        ])
        .prop_map(str::to_owned),
        1 => any::<String>(),
    ];
    let value = prop_oneof![
        3 => tricky_string(),
        1 => ("[a-z.@]{0,5}", "[a-z.@]{0,5}").prop_map(|(a, b)| format!("{a}\u{0}{b}")),
        1 => "-?[0-9]{1,25}",
        1 => Just("2026-11-25T00:00:00Z".to_owned()),
        1 => "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})",
        1 => Just(uuid::Uuid::new_v4().to_string()),
    ];
    prop::collection::vec((name, value), 0..5).boxed()
}

/// Any query string on the staff routes (`/auth/admin/users`, `/auth/admin/audit`): a
/// validation error at worst, never a 5xx.
#[test]
fn staff_query_strings() {
    let rt = runtime();
    let (app, client, staff) = rt.block_on(async {
        let app = helpers::spawn_app_with(Backend::PostgresRedis, FUZZ_SETTINGS).await;
        let client = Client::new(&app);
        app.verified_user("staff@example.com").await;
        app.execute("UPDATE users SET role = 'staff' WHERE email = 'staff@example.com'")
            .await;
        let (staff, _) = login_caller(&client, "staff@example.com").await;
        (app, client, staff)
    });
    let raw_query = prop_oneof![
        3 => query_pairs().prop_map(|pairs| {
            let mut url = Url::parse("http://x/").unwrap();
            if !pairs.is_empty() {
                let mut query = url.query_pairs_mut();
                for (k, v) in &pairs {
                    query.append_pair(k, v);
                }
            }
            url.query().unwrap_or_default().to_owned()
        }),
        1 => "([A-Za-z_]{1,8}=([A-Za-z0-9]|%[0-9A-Fa-f]{2}|%|\\+|&){0,20}&?){0,4}",
    ];
    let paths = ["/auth/admin/users", "/auth/admin/audit"];
    check(
        "staff query strings",
        256,
        (any::<Index>(), raw_query),
        |(path, query)| {
            let path = paths[path.index(paths.len())];
            rt.block_on(async {
                let raw = client
                    .send(Method::GET, &format!("{path}?{query}"), &staff, &[], None)
                    .await;
                contract(&format!("GET {path}?{query}"), &raw)
            })
        },
    );
    drop(app);
}

// ---------------------------------------------------------------------------------------
// 7. Pure functions
// ---------------------------------------------------------------------------------------

fn near_email() -> BoxedStrategy<String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9._%+-]{1,30}@[a-zA-Z0-9-]{1,20}(\\.[a-zA-Z0-9-]{1,10}){1,3}",
        "\\PC{1,20}@\\PC{1,20}\\.\\PC{1,8}",
        "[ \\t\\n]{0,3}[A-ZÀ-ÖİΣẞ]{1,10}@[A-ZÀ-ÖİΣ]{1,10}\\.[A-Zİ]{2,4}[ \\t\\n]{0,3}",
        ".{0,3}@.{0,3}@.{0,3}",
        "[a-z]{60,70}@[a-z]{1,5}\\.[a-z]{2}",
        "[a-z]{1,5}@([a-z]{60,64}\\.){3,4}[a-z]{2}",
    ]
    .boxed()
}

proptest! {
    #![proptest_config(Config { cases: 1024, failure_persistence: None, ..Config::default() })]

    /// `EmailAddress::parse` never panics; what it accepts is trimmed, lower-case, at most
    /// 254 bytes, free of whitespace and control characters, and parses to itself.
    #[test]
    fn email_addresses_normalise_to_a_fixed_point(raw in near_email()) {
        let Some(email) = EmailAddress::parse(&raw) else {
            return Ok(());
        };
        let text = email.as_str();
        prop_assert_eq!(text, text.trim());
        prop_assert_eq!(text.to_owned(), text.to_lowercase());
        prop_assert!(text.len() <= 254);
        prop_assert!(!text.chars().any(|c| c.is_whitespace() || c.is_control()));
        prop_assert_eq!(text.matches('@').count(), 1);
        prop_assert!(!email.local_part().is_empty());
        prop_assert_eq!(EmailAddress::parse(text), Some(email.clone()));
        // Surrounding whitespace never changes the outcome.
        let padded = format!(" \t{raw}\n ");
        prop_assert_eq!(EmailAddress::parse(&padded), Some(email));
    }

    /// Rejection is stable too: padding a rejected address with whitespace never makes it
    /// acceptable.
    #[test]
    fn rejected_addresses_stay_rejected_when_padded(raw in any::<String>()) {
        if EmailAddress::parse(&raw).is_none() {
            let padded = format!("  {raw}\t");
            prop_assert!(EmailAddress::parse(&padded).is_none());
        }
    }
}

// --- Payment details (docs/API.md §9) -------------------------------------------------------

fn near_amount() -> BoxedStrategy<String> {
    prop_oneof![
        "[0-9]{1,17}(\\.[0-9]{0,5})?",
        "[0-9+\\-eE._, ]{0,20}",
        "0*[1-9][0-9]{0,3}\\.[0-9]{2}",
        any::<String>(),
    ]
    .boxed()
}

fn near_iban() -> BoxedStrategy<String> {
    prop_oneof![
        Just("DE89370400440532013000".to_owned()),
        Just("de89 3704 0044 0532 0130 00".to_owned()),
        Just("GB82 WEST 1234 5698 7654 32".to_owned()),
        "[A-Z]{2}[0-9]{2}[A-Z0-9 ]{10,30}",
        any::<String>(),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(Config { cases: 1024, failure_persistence: None, ..Config::default() })]

    /// `PaymentOrder::validate` never panics, and what it accepts is a fixed point: its
    /// details validate to the same order with the same hash (one payment, one spelling),
    /// with the amount at exactly the currency's minor units and the IBAN without spaces.
    #[test]
    fn payment_orders_normalise_to_a_fixed_point(
        amount in near_amount(),
        currency in prop_oneof![
            Just("EUR".to_owned()), Just("JPY".to_owned()), Just("BHD".to_owned()),
            Just("HRK".to_owned()), "[A-Za-z]{0,4}",
        ],
        iban in near_iban(),
        name in ".{0,150}",
        batch in any::<bool>(),
    ) {
        use logicredit_auth::services::payments::PaymentOrder;
        let payment = serde_json::json!({
            "type": "payment_initiation",
            "instructedAmount": {"currency": currency, "amount": amount},
            "creditorName": name,
            "creditorAccount": {"iban": iban},
        });
        let body = if batch { serde_json::json!([payment.clone(), payment]) } else { payment };
        let Ok(order) = PaymentOrder::validate(&body) else {
            return Ok(());
        };
        let again = PaymentOrder::validate(&order.details()).expect("details validate");
        prop_assert_eq!(&again, &order);
        prop_assert_eq!(again.tx_hash(), order.tx_hash());
        for p in order.payments() {
            let decimals = p.instructed_amount.amount.split_once('.').map_or(0, |(_, f)| f.len());
            let exponent = iso_currency::Currency::from_code(&p.instructed_amount.currency)
                .and_then(|c| c.exponent())
                .map(usize::from);
            prop_assert_eq!(Some(decimals), exponent);
            prop_assert!(!p.creditor_account.iban.contains(' '));
            prop_assert_eq!(p.creditor_name.trim(), p.creditor_name.as_str());
        }
    }
}
