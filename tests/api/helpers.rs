//! `spawn_app`: the real service on a random port with a fresh database — a SQLite file
//! (embedded) or a new PostgreSQL database plus an isolated Redis key prefix — and its own
//! SMTP sink. `Browser` is a client with its own cookie jar that sends the CSRF token the
//! way a front end would.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use logicredit_auth::configuration::Settings;
use logicredit_auth::startup::Application;
use logicredit_auth::storage::db::Database;
use reqwest::Method;
use reqwest::header::{HeaderMap, SET_COOKIE};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::smtp_sink::SmtpSink;

pub const PASSWORD: &str = "correct horse battery staple";
pub const ENCRYPTION_KEY: &str = "test-key-0123456789abcdef0123456789abcdef";

/// The audit keys of an app started with the default `ENCRYPTION_KEY`.
pub fn audit_keys() -> logicredit_auth::crypto::audit_keys::AuditKeys {
    logicredit_auth::crypto::audit_keys::AuditKeys::new(ENCRYPTION_KEY, &[])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file + in-process store: the `cargo run` default.
    Embedded,
    /// PostgreSQL + Redis: the production deployment.
    PostgresRedis,
}

/// Runs each named scenario — a plain `async fn name(backend: Backend)` in the calling
/// module, where rustfmt can reach it — once per backend, as the tests
/// `name::embedded` and `name::postgres_redis`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn embedded() {
                    super::$name($crate::helpers::Backend::Embedded).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres_redis() {
                    super::$name($crate::helpers::Backend::PostgresRedis).await
                }
            }
        )*
    };
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn admin_database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Test databases are named `lcauth_test_{unix seconds}_{pid}_{uuid}`: the creation time
/// lets the start-of-suite sweep find leftovers, the pid tells whose they are.
const TEST_DATABASE_PREFIX: &str = "lcauth_test_";

/// Leftovers older than this (from runs that were killed before their guards ran) are
/// dropped when a test process creates its first database.
const STALE_AFTER_SECS: u64 = 24 * 3600;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A test's PostgreSQL database. Dropping the guard drops the database (`WITH (FORCE)`,
/// so connections the app still holds do not keep it alive) — also when the test fails
/// or panics. Siblings and restarts share the guard through an `Arc`, so the database
/// goes when the last instance using it does.
pub struct TestDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop cannot await, and it may run inside (or outside) any runtime: a thread of
        // its own with a small runtime of its own does the work, and is waited for so
        // that the process cannot exit first.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(drop_database(&admin_url, &name))
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("could not drop test database {}: {error}", self.name),
            Err(_) => eprintln!(
                "could not drop test database {}: the thread panicked",
                self.name
            ),
        }
    }
}

async fn drop_database(admin_url: &str, name: &str) -> Result<(), String> {
    use sea_orm::ConnectionTrait;
    let admin = sea_orm::Database::connect(admin_url)
        .await
        .map_err(|e| e.to_string())?;
    let dropped = admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    admin.close().await.ok();
    dropped
}

/// Drops `lcauth_test_*` databases older than `STALE_AFTER_SECS`: what killed runs left.
async fn sweep_stale_databases(admin: &sea_orm::DatabaseConnection) {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    let now = unix_now();
    let Ok(rows) = admin
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT datname FROM pg_database WHERE datname LIKE '{TEST_DATABASE_PREFIX}%'"),
        ))
        .await
    else {
        return;
    };
    for row in rows {
        let Ok(name) = row.try_get::<String>("", "datname") else {
            continue;
        };
        let created: u64 = name
            .strip_prefix(TEST_DATABASE_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(now);
        if now.saturating_sub(created) > STALE_AFTER_SECS {
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await;
        }
    }
}

/// A fresh PostgreSQL database, dropped when the returned guard is. The first call in a
/// process sweeps leftovers older than a day first.
async fn fresh_postgres_database() -> TestDatabase {
    use sea_orm::ConnectionTrait;
    static SWEPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let admin_url = admin_database_url();
    let admin = sea_orm::Database::connect(&admin_url)
        .await
        .expect("PostgreSQL must be reachable for the tests (TEST_DATABASE_URL)");
    if !SWEPT.swap(true, std::sync::atomic::Ordering::SeqCst) {
        sweep_stale_databases(&admin).await;
    }
    let name = format!(
        "{TEST_DATABASE_PREFIX}{}_{}_{}",
        unix_now(),
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    );
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap();
    admin.close().await.ok();
    let base = admin_url.rsplit_once('/').map(|(base, _)| base).unwrap();
    TestDatabase {
        url: format!("{base}/{name}"),
        admin_url,
        name,
    }
}

pub struct TestApp {
    pub address: String,
    /// The metrics listener (`METRICS_ADDR`): the only place `/metrics` is served.
    pub metrics_address: String,
    pub backend: Backend,
    pub smtp: SmtpSink,
    /// A separate connection for looking at (or tampering with) what the app stored.
    pub db: Database,
    vars: HashMap<String, String>,
    _data_dir: Arc<TempDir>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// The PostgreSQL database, shared with siblings and restarts; declared last so that
    /// it is dropped after this instance's own connections.
    database: Option<Arc<TestDatabase>>,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[]).await
}

pub async fn spawn_app_with(backend: Backend, overrides: &[(&str, &str)]) -> TestApp {
    let (vars, smtp, dir, database) = prepare(backend, overrides).await;
    start(backend, vars, smtp, dir, database).await
}

/// Why the service refuses to start with `overrides` (its settings or its start-up);
/// panics if it starts.
pub async fn startup_error(backend: Backend, overrides: &[(&str, &str)]) -> String {
    let (vars, _smtp, _dir, _database) = prepare(backend, overrides).await;
    let settings = match Settings::from_vars(&vars) {
        Ok(settings) => settings,
        Err(error) => return error.to_string(),
    };
    match Application::build(settings).await {
        Ok(_) => panic!("the service started with {overrides:?}"),
        Err(error) => format!("{error:#}"),
    }
}

/// The variables, SMTP sink, data folder and database of a fresh test instance.
async fn prepare(
    backend: Backend,
    overrides: &[(&str, &str)],
) -> (
    HashMap<String, String>,
    SmtpSink,
    Arc<TempDir>,
    Option<Arc<TestDatabase>>,
) {
    logicredit_auth::install_crypto_provider();
    if std::env::var("TEST_LOG").is_ok() {
        logicredit_auth::telemetry::init_logging();
    }
    let dir = std::env::temp_dir().join(format!("lcauth-test-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let smtp = SmtpSink::start().await;
    let mut vars: HashMap<String, String> = [
        ("BIND_ADDR", "127.0.0.1:0".to_owned()),
        ("METRICS_ADDR", "127.0.0.1:0".to_owned()),
        ("DATA_DIR", dir.display().to_string()),
        ("TOTP_ENCRYPTION_KEY", ENCRYPTION_KEY.to_owned()),
        ("COOKIE_SECURE", "false".to_owned()),
        // Small Argon2 costs keep the suite fast; the defaults have their own unit test.
        ("ARGON2_MEMORY_KIB", "256".to_owned()),
        ("ARGON2_ITERATIONS", "1".to_owned()),
        ("SMTP_HOST", "127.0.0.1".to_owned()),
        ("SMTP_PORT", smtp.port.to_string()),
        ("SMTP_TLS", "none".to_owned()),
        (
            "SMTP_FROM",
            "Logicredit <no-reply@logicredit.test>".to_owned(),
        ),
        ("OUTBOX_POLL_INTERVAL_MS", "50".to_owned()),
        ("OUTBOX_RETRY_BASE_MS", "200".to_owned()),
        (
            "STORE_KEY_PREFIX",
            format!("test:{}:", uuid::Uuid::new_v4().simple()),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let mut database = None;
    match backend {
        Backend::Embedded => {
            vars.insert(
                "DATABASE_URL".into(),
                format!("sqlite://{}/auth.db", dir.display()),
            );
        }
        Backend::PostgresRedis => {
            let fresh = fresh_postgres_database().await;
            vars.insert("DATABASE_URL".into(), fresh.url.clone());
            database = Some(Arc::new(fresh));
            vars.insert("REDIS_URL".into(), redis_url());
        }
    }
    for (key, value) in overrides {
        vars.insert((*key).to_owned(), (*value).to_owned());
    }
    (vars, smtp, Arc::new(TempDir(dir)), database)
}

async fn start(
    backend: Backend,
    vars: HashMap<String, String>,
    smtp: SmtpSink,
    dir: Arc<TempDir>,
    database: Option<Arc<TestDatabase>>,
) -> TestApp {
    let settings = Settings::from_vars(&vars).expect("test settings are valid");
    let application = Application::build(settings).await.expect("the app starts");
    let address = format!("http://{}", application.local_addr());
    let metrics_address = application
        .metrics_addr()
        .map(|addr| format!("http://{addr}"))
        .unwrap_or_default();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(application.run_until(async move {
        let _ = stopped.await;
    }));
    let db = Database::connect(&vars["DATABASE_URL"]).await.unwrap();
    TestApp {
        address,
        metrics_address,
        backend,
        smtp,
        db,
        vars,
        _data_dir: dir,
        stop: Some(stop),
        server: Some(server),
        database,
    }
}

impl TestApp {
    pub fn browser(&self) -> Browser {
        Browser::new(&self.address)
    }

    /// The Prometheus text from the metrics listener (as a scraper on the host sees it).
    pub async fn metrics(&self) -> String {
        let response = Browser::new(&self.metrics_address).get("/metrics").await;
        assert_eq!(response.status, 200, "{response:?}");
        response.body.as_str().unwrap_or_default().to_owned()
    }

    /// Another instance on the same database, store and SMTP sink (a second node behind
    /// the load balancer).
    pub async fn sibling(&self, overrides: &[(&str, &str)]) -> TestApp {
        let mut vars = self.vars.clone();
        for (key, value) in overrides {
            vars.insert((*key).to_owned(), (*value).to_owned());
        }
        start(
            self.backend,
            vars,
            self.smtp.clone(),
            Arc::clone(&self._data_dir),
            self.database.clone(),
        )
        .await
    }

    /// Graceful shutdown: waits until the server has finished.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(10), server)
                .await
                .expect("the server stops within 10 s")
                .unwrap()
                .unwrap();
        }
    }

    /// Stops this instance and starts a new one on the same data.
    pub async fn restart(mut self) -> TestApp {
        self.stop().await;
        start(
            self.backend,
            self.vars.clone(),
            self.smtp.clone(),
            Arc::clone(&self._data_dir),
            self.database.clone(),
        )
        .await
    }

    /// The service layer of another (unserved) instance on this app's database and store:
    /// for service APIs no route exposes, such as the OpenID Provider's hooks into
    /// transactions. With the embedded deployment its in-process store is its own.
    pub async fn services(&self) -> Arc<logicredit_auth::services::Services> {
        let settings = Settings::from_vars(&self.vars).expect("test settings are valid");
        Application::build(settings)
            .await
            .expect("the instance starts")
            .services()
    }

    pub fn var(&self, key: &str) -> &str {
        &self.vars[key]
    }

    /// Registers `email` and returns the verification code from the email it receives.
    pub async fn register(&self, email: &str) -> String {
        let response = self
            .browser()
            .post(
                "/auth/register",
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(response.status, 201, "{response:?}");
        let count = self.smtp.received_by(email).len();
        self.smtp.wait_for_nth(email, count.max(1)).await.code()
    }

    /// A verified account, ready to log in with `PASSWORD`.
    pub async fn verified_user(&self, email: &str) {
        let code = self.register(email).await;
        let response = self
            .browser()
            .post("/auth/verify-email", json!({"token": code}))
            .await;
        assert_eq!(response.status, 200, "{response:?}");
    }

    /// A browser logged in as a new verified user.
    pub async fn logged_in(&self, email: &str) -> Browser {
        self.verified_user(email).await;
        self.login(email).await
    }

    /// A browser logged in as a new verified user whose role is set in the database.
    pub async fn logged_in_as(&self, email: &str, role: &str) -> Browser {
        self.verified_user(email).await;
        self.execute(&format!(
            "UPDATE users SET role = '{role}' WHERE email = '{email}'"
        ))
        .await;
        self.login(email).await
    }

    pub async fn login(&self, email: &str) -> Browser {
        let browser = self.browser();
        let response = browser
            .post("/auth/login", json!({"email": email, "password": PASSWORD}))
            .await;
        assert_eq!(response.body["code"], "login_ok", "{response:?}");
        browser
    }

    /// Runs a query and returns the first column of each row as JSON.
    pub async fn query(&self, sql: &str) -> Vec<Value> {
        use sea_orm::{ConnectionTrait, Statement};
        let conn = self.db.connection();
        let rows = conn
            .query_all_raw(Statement::from_string(conn.get_database_backend(), sql))
            .await
            .unwrap();
        rows.into_iter()
            .map(|row| {
                row.try_get_by_index::<i64>(0)
                    .map(Value::from)
                    .or_else(|_| row.try_get_by_index::<i32>(0).map(Value::from))
                    .or_else(|_| row.try_get_by_index::<bool>(0).map(Value::from))
                    .or_else(|_| row.try_get_by_index::<String>(0).map(Value::from))
                    .or_else(|_| row.try_get_by_index::<Option<String>>(0).map(|v| json!(v)))
                    .unwrap_or(Value::Null)
            })
            .collect()
    }

    pub async fn execute(&self, sql: &str) {
        use sea_orm::ConnectionTrait;
        self.db.connection().execute_unprepared(sql).await.unwrap();
    }

    /// The events of the audit trail, in order.
    pub async fn audit_events(&self) -> Vec<String> {
        self.query("SELECT event FROM audit_log ORDER BY seq")
            .await
            .into_iter()
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[derive(Debug)]
pub struct TestResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl TestResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect()
    }

    /// Asserts the contract's error shape: status, `code` and a `message`.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.body["code"].as_str()),
            (status, Some(code)),
            "{self:?}"
        );
        assert!(
            self.body["message"].is_string(),
            "errors carry a message: {self:?}"
        );
    }
}

/// How a request carries the CSRF token.
pub enum Csrf<'a> {
    /// The token this browser last received (what a front end sends).
    Auto,
    None,
    Value(&'a str),
}

/// A client with its own cookie jar. Cookies marked `Secure` are kept too, because tests
/// talk plain HTTP to 127.0.0.1.
#[derive(Clone)]
pub struct Browser {
    base: String,
    http: reqwest::Client,
    cookies: Arc<Mutex<BTreeMap<String, String>>>,
    csrf: Arc<Mutex<Option<String>>>,
}

impl Browser {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: Arc::default(),
            csrf: Arc::default(),
        }
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.lock().unwrap().get(name).cloned()
    }

    pub fn set_cookie(&self, name: &str, value: &str) {
        self.cookies
            .lock()
            .unwrap()
            .insert(name.to_owned(), value.to_owned());
    }

    pub fn csrf_token(&self) -> Option<String> {
        self.csrf.lock().unwrap().clone()
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        self.send(Method::GET, path, None, Csrf::Auto).await
    }

    pub async fn post(&self, path: &str, body: Value) -> TestResponse {
        self.send(Method::POST, path, Some(body), Csrf::Auto).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> TestResponse {
        self.send(Method::PATCH, path, Some(body), Csrf::Auto).await
    }

    pub async fn delete(&self, path: &str) -> TestResponse {
        self.send(Method::DELETE, path, None, Csrf::Auto).await
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        csrf: Csrf<'_>,
    ) -> TestResponse {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.execute(request, csrf).await
    }

    /// Sends a request built by the caller (raw bodies, odd headers), with this jar.
    pub async fn execute(
        &self,
        mut request: reqwest::RequestBuilder,
        csrf: Csrf<'_>,
    ) -> TestResponse {
        let cookie_header = self
            .cookies
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        if !cookie_header.is_empty() {
            request = request.header("cookie", cookie_header);
        }
        let token = match csrf {
            Csrf::Auto => self.csrf_token(),
            Csrf::None => None,
            Csrf::Value(value) => Some(value.to_owned()),
        };
        if let Some(token) = token {
            request = request.header("x-csrf-token", token);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        self.remember(&headers, &body);
        TestResponse {
            status,
            headers,
            body,
        }
    }

    fn remember(&self, headers: &HeaderMap, body: &Value) {
        let mut jar = self.cookies.lock().unwrap();
        for header in headers.get_all(SET_COOKIE) {
            let Ok(text) = header.to_str() else { continue };
            let pair = text.split(';').next().unwrap_or("");
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            if value.is_empty() || text.contains("Max-Age=0") {
                jar.remove(name.trim());
            } else {
                jar.insert(name.trim().to_owned(), value.to_owned());
                // A front end reads the CSRF cookie too: it follows a rotation that
                // happened on an answer without a `csrf_token` field.
                if name.trim() == "csrf_token" {
                    *self.csrf.lock().unwrap() = Some(value.to_owned());
                }
            }
        }
        if let Some(token) = body.get("csrf_token").and_then(Value::as_str) {
            *self.csrf.lock().unwrap() = Some(token.to_owned());
        }
    }
}
