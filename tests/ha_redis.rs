//! Redis high availability with real processes on loopback (docs/RELIABILITY.md, "Redis
//! failover"): (a) a primary, a replica and three sentinels, (b) a three-primary Redis
//! Cluster with one replica each. In both, the real app (PostgreSQL for the database) runs
//! a bounded load of logins and session checks while a Redis primary is killed with
//! SIGKILL, and must:
//! - answer every request with its normal answer or `503` — never a success it should not
//!   give (a forged session accepted, a locked account let in);
//! - lose no session (sessions are durable in PostgreSQL; the cache may miss);
//! - recover without a restart, within a stated bound (the measured time is printed).
//!
//! The Redis processes are this test's own (free ports, temporary folders) and are killed
//! when their guard drops, also on failure. `redis-server` and `redis-cli` must be
//! installed: the tests fail, never skip, without them.

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

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::Mutex;

use authenticators::{AuthenticatorApp, Passkey};
use helpers::{Backend, Browser, PASSWORD, TestApp};

/// One failover at a time: the measured recovery must not include another test's load.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// From the SIGKILL of the primary until every request is answered normally again.
/// Sentinel: `down-after-milliseconds 1000` + election + promotion, then the app asks
/// the sentinels again; Cluster: `cluster-node-timeout 1000` + the replica's election.
const RECOVERY_BOUND: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------
// Redis processes
// ---------------------------------------------------------------------------------------

/// A `redis-server` (or sentinel) of this test; SIGKILLed and its folder removed on drop.
struct RedisProcess {
    port: u16,
    child: Option<Child>,
    dir: PathBuf,
}

impl RedisProcess {
    /// `redis-server <config file> [--sentinel]` in a folder of its own.
    fn start(port: u16, config: &str, sentinel: bool) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "lcauth-redis-ha-{port}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("redis.conf");
        let mut common = format!(
            "port {port}\nbind 127.0.0.1\ndir {}\nlogfile redis.log\n",
            dir.display()
        );
        if !sentinel {
            // Nothing on disk: a killed node comes back empty (not in these tests).
            common.push_str("save \"\"\nappendonly no\n");
        }
        std::fs::write(&file, format!("{common}{config}")).unwrap();
        let mut command = Command::new("redis-server");
        command.arg(&file);
        if sentinel {
            command.arg("--sentinel");
        }
        let child = command
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("redis-server is required for the Redis HA tests (apt-get install redis-server): {e}")
            });
        let process = Self {
            port,
            child: Some(child),
            dir,
        };
        process.wait_until(Duration::from_secs(10), "answers PING", |p| {
            p.cli(&["PING"]).contains("PONG")
        });
        process
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGKILL: no shutdown, no last replication, no goodbye to the sentinels.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn cli(&self, args: &[&str]) -> String {
        cli_on(self.port, args)
    }

    /// Asked of a sentinel: `host\nport` of the primary it names now.
    fn sentinel_primary(&self) -> String {
        self.cli(&["SENTINEL", "get-master-addr-by-name", "mymaster"])
    }

    /// A field of `INFO <section>`.
    fn info(&self, section: &str, field: &str) -> Option<String> {
        let prefix = format!("{field}:");
        self.cli(&["INFO", section])
            .lines()
            .find_map(|line| line.strip_prefix(&prefix).map(|v| v.trim().to_owned()))
    }

    fn wait_until(&self, limit: Duration, what: &str, ready: impl Fn(&Self) -> bool) {
        let start = Instant::now();
        while !ready(self) {
            assert!(
                start.elapsed() < limit,
                "redis on port {} never {what} (log: {})",
                self.port,
                std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `redis-cli -p <port> <args>`: its output ("" if it cannot connect).
fn cli_on(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("redis-cli is required for the Redis HA tests: {e}"));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A free loopback port whose cluster bus port (+10000) is free too.
fn free_port() -> u16 {
    loop {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if port <= 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// A primary with one replica, watched by three sentinels as `mymaster` (quorum 2).
struct SentinelSetup {
    primary: RedisProcess,
    replica: RedisProcess,
    sentinels: Vec<RedisProcess>,
}

impl SentinelSetup {
    fn start() -> Self {
        let primary = RedisProcess::start(free_port(), "", false);
        let replica = RedisProcess::start(
            free_port(),
            &format!("replicaof 127.0.0.1 {}\n", primary.port),
            false,
        );
        replica.wait_until(Duration::from_secs(10), "synced", |r| {
            r.info("replication", "master_link_status").as_deref() == Some("up")
        });
        let monitor = format!(
            "sentinel monitor mymaster 127.0.0.1 {} 2\n\
             sentinel down-after-milliseconds mymaster 1000\n\
             sentinel failover-timeout mymaster 3000\n\
             sentinel parallel-syncs mymaster 1\n",
            primary.port
        );
        let sentinels: Vec<_> = (0..3)
            .map(|_| RedisProcess::start(free_port(), &monitor, true))
            .collect();
        // Each sentinel must know the replica and the two other sentinels before a
        // failover can be agreed.
        for sentinel in &sentinels {
            sentinel.wait_until(
                Duration::from_secs(20),
                "saw the replica and 3 sentinels",
                |s| {
                    s.info("sentinel", "master0")
                        .is_some_and(|m| m.contains("slaves=1") && m.contains("sentinels=3"))
                },
            );
        }
        Self {
            primary,
            replica,
            sentinels,
        }
    }

    fn addresses(&self) -> String {
        self.sentinels
            .iter()
            .map(RedisProcess::address)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Until the replica has every write the primary has (so a lock set before the kill
    /// is on the replica that gets promoted; see docs/RELIABILITY.md for what is lost
    /// when it is not).
    fn wait_replicated(&self) {
        let offset = |p: &RedisProcess, field| {
            p.info("replication", field)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let target = offset(&self.primary, "master_repl_offset");
        self.replica
            .wait_until(Duration::from_secs(10), "caught up", |r| {
                offset(r, "slave_repl_offset") >= target
            });
    }
}

/// Six nodes, `redis-cli --cluster create … --cluster-replicas 1`: three primaries
/// holding the 16384 slots, one replica each.
struct ClusterSetup {
    nodes: Vec<RedisProcess>,
}

impl ClusterSetup {
    fn start() -> Self {
        let config = "cluster-enabled yes\ncluster-config-file nodes.conf\n\
                      cluster-node-timeout 1000\ncluster-replica-validity-factor 0\n";
        let nodes: Vec<_> = (0..6)
            .map(|_| RedisProcess::start(free_port(), config, false))
            .collect();
        let addresses: Vec<String> = nodes.iter().map(RedisProcess::address).collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli is required for the Redis HA tests");
        assert!(
            created.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        let setup = Self { nodes };
        for node in &setup.nodes {
            node.wait_until(Duration::from_secs(20), "saw the cluster ok", |n| {
                n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok")
            });
        }
        for replica in setup.replicas() {
            replica.wait_until(Duration::from_secs(20), "synced", |r| {
                r.info("replication", "master_link_status").as_deref() == Some("up")
            });
        }
        setup
    }

    fn addresses(&self) -> String {
        self.nodes
            .iter()
            .map(RedisProcess::address)
            .collect::<Vec<_>>()
            .join(",")
    }

    fn role(node: &RedisProcess) -> Option<String> {
        node.info("replication", "role")
    }

    fn replicas(&self) -> impl Iterator<Item = &RedisProcess> {
        self.nodes
            .iter()
            .filter(|n| Self::role(n).as_deref() == Some("slave"))
    }

    fn wait_replicated(&self) {
        for replica in self.replicas() {
            let primary_port: u16 = replica
                .info("replication", "master_port")
                .unwrap()
                .parse()
                .unwrap();
            let primary = self.nodes.iter().find(|n| n.port == primary_port).unwrap();
            let target: u64 = primary
                .info("replication", "master_repl_offset")
                .unwrap()
                .parse()
                .unwrap();
            replica.wait_until(Duration::from_secs(10), "caught up", |r| {
                r.info("replication", "slave_repl_offset")
                    .and_then(|v| v.parse::<u64>().ok())
                    .is_some_and(|o| o >= target)
            });
        }
    }
}

// ---------------------------------------------------------------------------------------
// The load and what it must see
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// `GET /auth/me` with a session from before the load.
    SessionCheck,
    /// `POST /auth/login` with the right password.
    Login,
    /// The right password of an account locked before the kill.
    LockedLogin,
    /// `GET /auth/me` with a session token nobody was ever given.
    ForgedSession,
}

#[derive(Debug, Clone)]
struct Answer {
    probe: Probe,
    /// Since the load began.
    sent: Duration,
    done: Duration,
    status: u16,
    code: String,
}

/// A deployment under test: accounts and sessions made before the load.
struct Scene {
    app: TestApp,
    sessions: Vec<Browser>,
    users: Vec<String>,
    locked: String,
}

const LOCKED_EMAIL: &str = "locked@example.com";

async fn scene(app: TestApp) -> Scene {
    let mut sessions = Vec::new();
    let mut users = Vec::new();
    for i in 0..6 {
        let email = format!("user{i}@example.com");
        sessions.push(app.logged_in(&email).await);
        users.push(email);
    }
    app.verified_user(LOCKED_EMAIL).await;
    for _ in 0..5 {
        app.browser()
            .post(
                "/auth/login",
                json!({"email": LOCKED_EMAIL, "password": "wrong password 123"}),
            )
            .await
            .assert_error(401, "invalid_credentials");
    }
    app.browser()
        .post(
            "/auth/login",
            json!({"email": LOCKED_EMAIL, "password": PASSWORD}),
        )
        .await
        .assert_error(429, "account_locked");
    Scene {
        app,
        sessions,
        users,
        locked: LOCKED_EMAIL.to_owned(),
    }
}

struct LoadResult {
    answers: Vec<Answer>,
    killed_at: Duration,
    /// Browsers whose login succeeded during the load: their sessions must survive.
    new_sessions: Vec<Browser>,
}

/// Runs the load, injects `fault` after a second, and stops once Redis has `settled` (the
/// new primary is in place) and no request has answered `503` for two seconds (or after
/// `RECOVERY_BOUND` + 10 s).
async fn load_through_fault(
    scene: &Scene,
    fault: impl FnOnce(),
    settled: impl Fn() -> bool,
) -> LoadResult {
    let start = Instant::now();
    let answers = Arc::new(StdMutex::new(Vec::<Answer>::new()));
    let new_sessions = Arc::new(StdMutex::new(Vec::<Browser>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    let record = {
        let answers = Arc::clone(&answers);
        move |probe, sent: Instant, status, code: &serde_json::Value| {
            answers.lock().unwrap().push(Answer {
                probe,
                sent: sent - start,
                done: start.elapsed(),
                status,
                code: code.as_str().unwrap_or_default().to_owned(),
            });
        }
    };
    let pause = Duration::from_millis(25);
    for browser in &scene.sessions {
        let (stop, record, browser) = (Arc::clone(&stop), record.clone(), browser.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let r = browser.get("/auth/me").await;
                record(Probe::SessionCheck, sent, r.status, &r.body["code"]);
                tokio::time::sleep(pause).await;
            }
        }));
    }
    {
        let (stop, record) = (Arc::clone(&stop), record.clone());
        let (app_address, users) = (scene.app.address.clone(), scene.users.clone());
        let new_sessions = Arc::clone(&new_sessions);
        workers.push(tokio::spawn(async move {
            for email in users.iter().cycle() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let browser = Browser::new(&app_address);
                let sent = Instant::now();
                let r = browser
                    .post("/auth/login", json!({"email": email, "password": PASSWORD}))
                    .await;
                record(Probe::Login, sent, r.status, &r.body["code"]);
                if r.body["code"] == "login_ok" {
                    new_sessions.lock().unwrap().push(browser);
                }
                tokio::time::sleep(pause).await;
            }
        }));
    }
    {
        let (stop, record) = (Arc::clone(&stop), record.clone());
        let (browser, email) = (scene.app.browser(), scene.locked.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let r = browser
                    .post("/auth/login", json!({"email": email, "password": PASSWORD}))
                    .await;
                record(Probe::LockedLogin, sent, r.status, &r.body["code"]);
                tokio::time::sleep(pause).await;
            }
        }));
    }
    {
        let (stop, record) = (Arc::clone(&stop), record.clone());
        let forged = scene.app.browser();
        forged.set_cookie("session", "a-token-this-service-never-issued");
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let r = forged.get("/auth/me").await;
                record(Probe::ForgedSession, sent, r.status, &r.body["code"]);
                tokio::time::sleep(pause).await;
            }
        }));
    }

    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed_at = start.elapsed();
    fault();
    let mut settled_at = None;
    let give_up = killed_at + RECOVERY_BOUND + Duration::from_secs(10);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = start.elapsed();
        let last_unavailable = answers
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.status == 503)
            .map(|a| a.done)
            .max()
            .unwrap_or(killed_at);
        if settled_at.is_none() && settled() {
            settled_at = Some(now);
        }
        let calm_since = settled_at.map(|at| at.max(last_unavailable));
        if calm_since.is_some_and(|at| now > at + Duration::from_secs(2)) || now > give_up {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    let answers = answers.lock().unwrap().clone();
    let new_sessions = std::mem::take(&mut *new_sessions.lock().unwrap());
    LoadResult {
        answers,
        killed_at,
        new_sessions,
    }
}

/// Every answer is the normal one or 503; the outage ends within `RECOVERY_BOUND`;
/// returns the measured recovery (kill → last 503 answered).
fn check_answers(what: &str, result: &LoadResult) -> Duration {
    for answer in &result.answers {
        let normal = match answer.probe {
            Probe::SessionCheck => answer.status == 200,
            Probe::Login => answer.code == "login_ok",
            Probe::LockedLogin => answer.code == "account_locked",
            Probe::ForgedSession => answer.code == "not_authenticated",
        };
        assert!(
            normal || (answer.status == 503 && answer.code == "service_unavailable"),
            "{what}: an answer that is neither normal nor 503: {answer:?}"
        );
    }
    let after_kill: Vec<&Answer> = result
        .answers
        .iter()
        .filter(|a| a.sent >= result.killed_at)
        .collect();
    let unavailable = after_kill.iter().filter(|a| a.status == 503).count();
    let last_unavailable = after_kill
        .iter()
        .filter(|a| a.status == 503)
        .map(|a| a.done)
        .max()
        .unwrap_or(result.killed_at);
    let recovery = last_unavailable - result.killed_at;
    let first_success = after_kill
        .iter()
        .filter(|a| a.status != 503 && a.done > last_unavailable)
        .map(|a| a.done)
        .min();
    eprintln!(
        "{what}: {} answers ({} sent after the kill, {unavailable} of them 503); \
         last 503 {:.2} s after the kill; first normal answer after it at {:.2} s",
        result.answers.len(),
        after_kill.len(),
        recovery.as_secs_f64(),
        first_success.map_or(f64::NAN, |t| (t - result.killed_at).as_secs_f64()),
    );
    assert!(
        recovery < RECOVERY_BOUND,
        "{what}: still failing {recovery:?} after the kill"
    );
    for probe in [
        Probe::SessionCheck,
        Probe::Login,
        Probe::LockedLogin,
        Probe::ForgedSession,
    ] {
        assert!(
            after_kill
                .iter()
                .any(|a| a.probe == probe && a.status != 503 && a.done > last_unavailable),
            "{what}: {probe:?} never answered normally after the failover"
        );
    }
    recovery
}

/// No session is lost: those from before the load and those made during it all work.
async fn every_session_survives(what: &str, scene: &Scene, result: &LoadResult) {
    for browser in scene.sessions.iter().chain(&result.new_sessions) {
        let me = browser.get("/auth/me").await;
        assert_eq!(me.status, 200, "{what}: a session was lost: {me:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Every store use on one deployment: ceremony, one-time codes, MFA, lockout, rate limit
// ---------------------------------------------------------------------------------------

async fn store_scenarios(app: &TestApp, tag: &str) {
    // Registration and e-mail verification (single-use token), login, session, CSRF.
    let email = format!("scenario-{tag}@example.com");
    let browser = app.logged_in(&email).await;
    assert_eq!(browser.get("/auth/me").await.body["user"]["email"], email);
    let csrf = browser.get("/auth/csrf").await;
    assert_eq!(csrf.status, 200, "{csrf:?}");
    // A state-changing request without the CSRF token is refused.
    let no_csrf = reqwest::Client::new()
        .post(format!("{}/auth/sessions/revoke-others", app.address))
        .header(
            "cookie",
            format!(
                "session={}",
                browser.cookie("session").expect("a session cookie")
            ),
        )
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_csrf.status(), 403);

    // TOTP enrolment (pending state), then an MFA login; a used code works once.
    let setup = browser.post("/auth/mfa/totp/setup", json!({})).await;
    assert_eq!(setup.body["code"], "totp_setup_started", "{setup:?}");
    let authenticator = AuthenticatorApp::from_setup(&setup.body);
    let enabled = browser
        .post(
            "/auth/mfa/totp/verify",
            json!({"code": authenticator.code(0)}),
        )
        .await;
    assert_eq!(enabled.body["code"], "totp_enabled", "{enabled:?}");
    let pending = app.browser();
    let step = pending
        .post("/auth/login", json!({"email": email, "password": PASSWORD}))
        .await;
    assert_eq!(step.body["code"], "mfa_required", "{step:?}");
    let code = authenticator.code(1);
    let done = pending
        .post("/auth/mfa/totp/verify", json!({"code": code}))
        .await;
    assert_eq!(done.body["code"], "login_ok", "{done:?}");
    let again = app.browser();
    again
        .post("/auth/login", json!({"email": email, "password": PASSWORD}))
        .await;
    let replay = again
        .post("/auth/mfa/totp/verify", json!({"code": code}))
        .await;
    assert_ne!(replay.body["code"], "login_ok", "a TOTP code worked twice");
    assert!(replay.status < 500, "{replay:?}");

    // A passkey ceremony: registration, then sign-in; its ceremony is single-use.
    let passkey = Passkey::new();
    let start = pending
        .post("/auth/webauthn/register/start", json!({}))
        .await;
    assert_eq!(
        start.body["code"], "webauthn_registration_options",
        "{start:?}"
    );
    let credential = passkey.register(&start.body["options"]).await;
    let registered = pending
        .post(
            "/auth/webauthn/register/finish",
            json!({"ceremony_id": start.body["ceremony_id"], "credential": credential, "name": "Key"}),
        )
        .await;
    assert_eq!(
        registered.body["code"], "webauthn_registered",
        "{registered:?}"
    );
    let signer = app.browser();
    let challenge = signer
        .post("/auth/webauthn/login/start", json!({"email": email}))
        .await;
    assert_eq!(
        challenge.body["code"], "webauthn_authentication_options",
        "{challenge:?}"
    );
    let assertion = passkey.sign_in(&challenge.body["options"]).await;
    let finish = json!({"ceremony_id": challenge.body["ceremony_id"], "credential": assertion});
    let signed_in = signer
        .post("/auth/webauthn/login/finish", finish.clone())
        .await;
    assert_eq!(signed_in.body["code"], "login_ok", "{signed_in:?}");
    let replayed = app
        .browser()
        .post("/auth/webauthn/login/finish", finish)
        .await;
    assert_ne!(
        replayed.body["code"], "login_ok",
        "a ceremony was used twice"
    );
    assert!(replayed.status < 500, "{replayed:?}");

    // Lockout: five wrong passwords lock the account, the right one is then refused.
    let victim = format!("lockout-{tag}@example.com");
    app.verified_user(&victim).await;
    for _ in 0..5 {
        app.browser()
            .post(
                "/auth/login",
                json!({"email": victim, "password": "wrong password 123"}),
            )
            .await
            .assert_error(401, "invalid_credentials");
    }
    app.browser()
        .post(
            "/auth/login",
            json!({"email": victim, "password": PASSWORD}),
        )
        .await
        .assert_error(429, "account_locked");

    // The shared rate limit: an instance with a low limit and fresh counters (own prefix).
    let limited = app
        .sibling(&[
            ("RATE_LIMIT_AUTH", "3/60"),
            (
                "STORE_KEY_PREFIX",
                &format!("test:{}:", uuid::Uuid::new_v4().simple()),
            ),
        ])
        .await;
    // A load balancer sends traffic to an instance once it is ready; a new instance's
    // first store call may still be connecting (after a failover, a listed node is dead).
    ready_within(&limited, Duration::from_secs(10)).await;
    let client = limited.browser();
    for _ in 0..3 {
        client
            .post(
                "/auth/login",
                json!({"email": email, "password": "wrong password 123"}),
            )
            .await
            .assert_error(401, "invalid_credentials");
    }
    client
        .post("/auth/login", json!({"email": email, "password": PASSWORD}))
        .await
        .assert_error(429, "rate_limited");

    // Logout removes the session (cache and database).
    let logout = browser.post("/auth/logout", json!({})).await;
    assert_eq!(logout.body["code"], "logged_out", "{logout:?}");
    browser
        .get("/auth/me")
        .await
        .assert_error(401, "not_authenticated");
}

async fn ready_within(app: &TestApp, limit: Duration) {
    let start = Instant::now();
    loop {
        let ready = app.browser().get("/readyz").await;
        if ready.status == 200 {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "not ready within {limit:?}: {ready:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------

/// (a) Sentinel: the primary is SIGKILLed under load; the sentinels promote the replica
/// and the same app instance follows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_under_load_loses_no_session_and_never_allows_wrongly() {
    let _serial = SERIAL.lock().await;
    let mut redis = SentinelSetup::start();
    let sentinels = redis.addresses();
    let app = helpers::spawn_app_with(
        Backend::PostgresRedis,
        &[
            ("REDIS_URL", ""),
            ("REDIS_SENTINELS", &sentinels),
            ("REDIS_SENTINEL_MASTER", "mymaster"),
            ("RATE_LIMIT_AUTH", "1000000/600"),
        ],
    )
    .await;
    let scene = scene(app).await;
    redis.wait_replicated();

    let primary = &mut redis.primary;
    let replica_port = redis.replica.port.to_string();
    let sentinel = &redis.sentinels[0];
    let result = load_through_fault(
        &scene,
        || primary.kill(),
        || sentinel.sentinel_primary().contains(&replica_port),
    )
    .await;
    let recovery = check_answers("sentinel", &result);
    every_session_survives("sentinel", &scene, &result).await;
    eprintln!(
        "sentinel: recovered {:.2} s after SIGKILL of the primary (bound {RECOVERY_BOUND:?})",
        recovery.as_secs_f64()
    );
    // The whole store works on the promoted primary, with the same instance.
    store_scenarios(&scene.app, "after-sentinel-failover").await;
}

/// (a') Sentinel, a switchover: `SENTINEL FAILOVER` promotes the replica while the old
/// primary stays up and is turned into a replica — the case where a client that does not
/// ask the sentinels again keeps talking to the demoted primary (its reads still answer,
/// its writes get READONLY). The same app instance must move to the new primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_switchover_moves_the_app_off_the_demoted_primary() {
    let _serial = SERIAL.lock().await;
    let redis = SentinelSetup::start();
    let app = helpers::spawn_app_with(
        Backend::PostgresRedis,
        &[
            ("REDIS_URL", ""),
            ("REDIS_SENTINELS", &redis.addresses()),
            ("REDIS_SENTINEL_MASTER", "mymaster"),
            ("RATE_LIMIT_AUTH", "1000000/600"),
        ],
    )
    .await;
    let scene = scene(app).await;
    redis.wait_replicated();

    let replica_port = redis.replica.port.to_string();
    let sentinel = &redis.sentinels[0];
    let result = load_through_fault(
        &scene,
        || {
            let answer = sentinel.cli(&["SENTINEL", "FAILOVER", "mymaster"]);
            assert!(answer.contains("OK"), "SENTINEL FAILOVER: {answer}");
        },
        || sentinel.sentinel_primary().contains(&replica_port),
    )
    .await;
    // Two seconds after the sentinels named the new primary — well before Sentinel turns
    // the old one into a replica (its next INFO round, up to 10 s) — the app has left the
    // old primary: none of its connections is there any more to write into a server
    // whose writes the switchover discards.
    let app_connections: Vec<String> = redis
        .primary
        .cli(&["CLIENT", "LIST", "TYPE", "normal"])
        .lines()
        .filter(|c| !c.contains("name=sentinel") && !c.contains("cmd=client|list"))
        .map(str::to_owned)
        .collect();
    assert!(
        app_connections.is_empty(),
        "the app still talks to the demoted primary: {app_connections:?}"
    );
    let recovery = check_answers("sentinel switchover", &result);
    every_session_survives("sentinel switchover", &scene, &result).await;
    eprintln!(
        "sentinel switchover: normal again {:.2} s after SENTINEL FAILOVER",
        recovery.as_secs_f64()
    );
    // Every session check slides its expiry (a write): the instance serves them from the
    // new primary, and the old one, now a replica, has them by replication only.
    let me = scene.sessions[0].get("/auth/me").await;
    assert_eq!(me.status, 200, "{me:?}");
}

/// (b) Cluster: every store use works across three primaries; a primary is SIGKILLed
/// under load, its replica is promoted, and the app follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_serves_every_store_use_and_follows_a_promoted_replica() {
    let _serial = SERIAL.lock().await;
    let mut redis = ClusterSetup::start();
    let nodes = redis.addresses();
    let app = helpers::spawn_app_with(
        Backend::PostgresRedis,
        &[
            ("REDIS_URL", ""),
            ("REDIS_CLUSTER_NODES", &nodes),
            ("RATE_LIMIT_AUTH", "1000000/600"),
        ],
    )
    .await;
    store_scenarios(&app, "cluster").await;
    let scene = scene(app).await;
    redis.wait_replicated();

    // The primary holding the slot of the locked account's lockout state would be the
    // harshest pick, but any primary holds about a third of all keys: take the first.
    let victim = redis
        .nodes
        .iter()
        .position(|n| ClusterSetup::role(n).as_deref() == Some("master"))
        .unwrap();
    let survivors: Vec<u16> = redis.nodes.iter().map(|n| n.port).collect();
    let victim_node = &mut redis.nodes[victim];
    let result = load_through_fault(
        &scene,
        || victim_node.kill(),
        || {
            // Three primaries again among the survivors: the replica took over.
            survivors
                .iter()
                .filter(|port| {
                    let out = cli_on(**port, &["INFO", "replication"]);
                    out.contains("role:master")
                })
                .count()
                == 3
        },
    )
    .await;
    let recovery = check_answers("cluster", &result);
    let primaries = redis
        .nodes
        .iter()
        .filter(|n| ClusterSetup::role(n).as_deref() == Some("master"))
        .count();
    assert_eq!(primaries, 3, "the dead primary's replica was promoted");
    every_session_survives("cluster", &scene, &result).await;
    eprintln!(
        "cluster: recovered {:.2} s after SIGKILL of a primary (bound {RECOVERY_BOUND:?})",
        recovery.as_secs_f64()
    );
    store_scenarios(&scene.app, "after-cluster-failover").await;
}
