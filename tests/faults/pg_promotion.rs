//! (e) PostgreSQL promotion during load, with real processes on loopback: a primary and a
//! synchronous streaming replica of its own (`initdb`, `pg_basebackup -R`, own ports and
//! folder — the machine's PostgreSQL is not touched), and the service with both hosts in
//! `DATABASE_URL` (`target_session_attrs=read-write`). Mid-load the primary is stopped
//! (`-m immediate`: a crash) and the replica promoted. docs/RELIABILITY.md records the
//! figures it prints.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::helpers::{self, Backend, ENCRYPTION_KEY, PASSWORD, TestApp};
use super::{Op, SERIAL, count, wait_ready};

/// How long the primary stays dead before the replica is promoted: an HA manager's
/// detection time (Patroni's default loop is 10 s; 1 s keeps the test short).
const DETECTION_DELAY: Duration = Duration::from_secs(1);

/// The PostgreSQL server binaries: `PG_BIN_DIR`, else the newest
/// `/usr/lib/postgresql/<version>/bin`. Missing binaries fail the test: it never skips.
fn pg_bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BIN_DIR") {
        return dir.into();
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "this test needs the PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup): \
             install the `postgresql` package or set PG_BIN_DIR"
        ),
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

fn free_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

struct Node {
    data: PathBuf,
    port: u16,
    log: PathBuf,
}

/// A primary and its synchronous replica, stopped (immediately) and removed on drop.
struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    as_postgres: bool,
    primary: Node,
    replica: Node,
}

impl Cluster {
    fn start() -> Self {
        let dir =
            std::env::temp_dir().join(format!("lcauth-pgha-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        // PostgreSQL refuses to run as root: under root (CI containers) the cluster is
        // made and run by the `postgres` user.
        let as_postgres = running_as_root();
        if as_postgres {
            let status = Command::new("chown").arg("postgres:").arg(&dir).status();
            assert!(status.is_ok_and(|s| s.success()), "chown postgres {dir:?}");
        }
        let (primary_port, replica_port) = free_ports();
        let node = |name: &str, port| Node {
            data: dir.join(name),
            port,
            log: dir.join(format!("{name}.log")),
        };
        let cluster = Self {
            bin: pg_bin_dir(),
            as_postgres,
            primary: node("primary", primary_port),
            replica: node("replica", replica_port),
            dir,
        };
        cluster.run(
            cluster
                .command("initdb")
                .arg("-D")
                .arg(&cluster.primary.data)
                .args(["-U", "postgres", "-A", "trust", "--no-sync"]),
        );
        // Synchronous replication: a commit is acknowledged once the replica has it, so
        // the promotion cannot lose what a client was told. (On the command line, not in
        // postgresql.conf: the promoted replica has no standby and must not wait for one.)
        cluster.start_node(&cluster.primary, "-c synchronous_standby_names=*");
        cluster.run(
            cluster
                .command("pg_basebackup")
                .args(["-h", "127.0.0.1", "-U", "postgres", "-R", "-X", "stream"])
                .args(["-c", "fast", "-p", &cluster.primary.port.to_string(), "-D"])
                .arg(&cluster.replica.data),
        );
        cluster.start_node(&cluster.replica, "");
        cluster
    }

    fn command(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    fn run(&self, command: &mut Command) {
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "{command:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn pg_ctl(&self, node: &Node, args: &[&str]) {
        self.run(self.command("pg_ctl").arg("-D").arg(&node.data).args(args));
    }

    fn start_node(&self, node: &Node, extra: &str) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} {extra}",
            node.port,
            self.dir.display()
        );
        let log = node.log.display().to_string();
        self.pg_ctl(
            node,
            &["-l", &log, "-w", "-t", "60", "-o", &options, "start"],
        );
    }

    /// The service's `DATABASE_URL`: the primary first, then the replica.
    fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write",
            self.primary.port, self.replica.port
        )
    }

    fn log_tails(&self) -> String {
        [&self.primary, &self.replica]
            .iter()
            .map(|node| {
                let text = std::fs::read_to_string(&node.log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                format!(
                    "[{}]\n{}",
                    node.log.display(),
                    lines[lines.len().saturating_sub(15)..].join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in [&self.primary, &self.replica] {
            let _ = self
                .command("pg_ctl")
                .arg("-D")
                .arg(&node.data)
                .args(["-m", "immediate", "stop"])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the clients were told, and when.
#[derive(Default)]
struct PromotionLog {
    /// Emails whose registration answered 201.
    registered: Vec<String>,
    /// Emails whose registration answered 503: committed entirely or not at all.
    refused_registrations: Vec<String>,
    /// Session cookies of logins that answered 200.
    sessions: Vec<String>,
    /// Answers other than success or 503, and requests with no answer.
    anomalies: Vec<(Op, String)>,
    /// (sent, status) of every answer.
    answers: Vec<(Instant, u16)>,
    /// (sent, answered) of every write that succeeded (registration 201, login 200).
    writes: Vec<(Instant, Instant)>,
}

/// Registrations, logins and session checks from four workers; the primary is stopped
/// after 3 s, the replica promoted `DETECTION_DELAY` later, and the load goes on until
/// writes succeed again, then 2 s more. Returns the log and (stopped, promoted).
async fn load_through_promotion(
    app: &TestApp,
    cluster: &Cluster,
    accounts: &[String],
) -> (PromotionLog, Instant, Instant) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let log = Arc::new(StdMutex::new(PromotionLog::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..4usize {
        let (log, stop, http) = (Arc::clone(&log), Arc::clone(&stop), http.clone());
        let (base, accounts) = (app.address.clone(), accounts.to_vec());
        workers.push(tokio::spawn(async move {
            // Bounded: the loop ends at `stop` or after this many requests.
            for i in 0..3_000usize {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let op = [Op::Register, Op::Login, Op::SessionCheck][i % 3];
                let email = format!("load-{worker}-{i}@example.com");
                let request = match op {
                    Op::Register => http
                        .post(format!("{base}/auth/register"))
                        .json(&json!({"email": email, "password": PASSWORD})),
                    Op::Login => http.post(format!("{base}/auth/login")).json(&json!({
                        "email": accounts[(worker + i) % accounts.len()],
                        "password": PASSWORD,
                    })),
                    Op::SessionCheck => {
                        let Some(session) = ({
                            let log = log.lock().unwrap();
                            let n = log.sessions.len();
                            (n > 0).then(|| log.sessions[(worker * 7 + i) % n].clone())
                        }) else {
                            continue;
                        };
                        http.get(format!("{base}/auth/me"))
                            .header("cookie", format!("session={session}"))
                    }
                };
                let sent = Instant::now();
                let result = request.send().await;
                let answered = Instant::now();
                let mut log = log.lock().unwrap();
                let response = match result {
                    Ok(response) => response,
                    Err(error) => {
                        log.anomalies.push((op, format!("no answer: {error}")));
                        continue;
                    }
                };
                let status = response.status().as_u16();
                log.answers.push((sent, status));
                let session = response
                    .headers()
                    .get_all("set-cookie")
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .find_map(|c| c.strip_prefix("session="))
                    .and_then(|c| c.split(';').next())
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned);
                match (op, status) {
                    (Op::Register, 201) => {
                        log.registered.push(email);
                        log.writes.push((sent, answered));
                    }
                    (Op::Login, 200) => match session {
                        Some(cookie) => {
                            log.sessions.push(cookie);
                            log.writes.push((sent, answered));
                        }
                        None => log.anomalies.push((op, "200 without a cookie".into())),
                    },
                    (Op::SessionCheck, 200) => {}
                    (_, 503) => {
                        if op == Op::Register {
                            log.refused_registrations.push(email);
                        }
                    }
                    _ => log.anomalies.push((op, format!("status {status}"))),
                }
            }
        }));
    }

    tokio::time::sleep(Duration::from_secs(3)).await;
    let stopped = Instant::now();
    cluster.pg_ctl(&cluster.primary, &["-m", "immediate", "stop"]);
    tokio::time::sleep(DETECTION_DELAY).await;
    cluster.pg_ctl(&cluster.replica, &["-w", "-t", "60", "promote"]);
    let promoted = Instant::now();
    let deadline = promoted + Duration::from_secs(30);
    while !log
        .lock()
        .unwrap()
        .writes
        .iter()
        .any(|(sent, _)| *sent > stopped)
    {
        assert!(
            Instant::now() < deadline,
            "no write succeeded 30 s after the promotion:\n{}",
            cluster.log_tails()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.unwrap();
    }
    let log = Arc::try_unwrap(log)
        .ok()
        .expect("the workers are done")
        .into_inner()
        .unwrap();
    (log, stopped, promoted)
}

/// The primary crashes and the replica is promoted while clients register, log in and
/// check sessions. Every answer is a success or `503 service_unavailable` (never a success
/// that was not committed); everything answered as a success is on the promoted server —
/// user rows, sessions, `login.success` audit records, verification emails — and a
/// registration answered 503 committed all of itself or nothing; the service follows the
/// new primary without a restart (recovery time printed); `audit verify` passes on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_promotion_during_load_loses_nothing_and_recovers_without_restart() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start();
    let url = cluster.url();
    let app = helpers::spawn_app_with(
        Backend::PostgresRedis,
        &[
            ("DATABASE_URL", url.as_str()),
            // Every request comes from 127.0.0.1: the per-IP limit would stop the load.
            ("RATE_LIMIT_AUTH", "1000000/600"),
        ],
    )
    .await;
    let accounts: Vec<String> = (0..4).map(|n| format!("member{n}@example.com")).collect();
    for email in &accounts {
        app.verified_user(email).await;
    }

    let (log, stopped, promoted) = load_through_promotion(&app, &cluster, &accounts).await;
    assert!(
        log.anomalies.is_empty(),
        "answers other than success or 503:\n{:#?}\n{}",
        log.anomalies,
        cluster.log_tails()
    );
    let first_write = log
        .writes
        .iter()
        .filter(|(sent, _)| *sent > stopped)
        .map(|(_, answered)| *answered)
        .min()
        .unwrap();
    // Requests sent while no server took writes: each either waited for the pool to
    // reach the promoted server or answered 503.
    let in_gap: Vec<u16> = log
        .answers
        .iter()
        .filter(|(sent, _)| *sent > stopped && *sent < promoted)
        .map(|(_, status)| *status)
        .collect();
    let unavailable = log.answers.iter().filter(|(_, s)| *s == 503).count();
    assert!(
        in_gap.len() >= 4 && log.registered.len() > 10 && log.sessions.len() > 10,
        "the load did too little to prove anything: {} requests in the gap, {} \
         registrations, {} logins",
        in_gap.len(),
        log.registered.len(),
        log.sessions.len()
    );
    eprintln!(
        "pg promotion: {} requests; {} registrations and {} logins answered as \
         successes, {unavailable} answers 503; {} requests sent between the crash and the \
         promotion ({} of them answered 503, the others were served by the promoted server \
         after waiting for a pooled connection); primary stopped → replica promoted {:.2} s \
         (of which {:?} simulated detection); promoted → first write committed {:.2} s; \
         stopped → first write {:.2} s",
        log.answers.len(),
        log.registered.len(),
        log.sessions.len(),
        in_gap.len(),
        in_gap.iter().filter(|s| **s == 503).count(),
        (promoted - stopped).as_secs_f64(),
        DETECTION_DELAY,
        first_write
            .saturating_duration_since(promoted)
            .as_secs_f64(),
        (first_write - stopped).as_secs_f64(),
    );

    // Ready without a restart, on the promoted server.
    wait_ready(&app.browser(), Duration::from_secs(10)).await;

    // Every 201 has its user row, once; a 503 registration is all or nothing.
    let mut users: HashMap<String, i64> = HashMap::new();
    for email in app.query("SELECT email FROM users").await {
        *users.entry(email.as_str().unwrap().to_owned()).or_default() += 1;
    }
    for email in &log.registered {
        assert_eq!(users.get(email), Some(&1), "{email} answered 201");
    }
    for email in &log.refused_registrations {
        let rows = users.get(email).copied().unwrap_or(0);
        let sql = format!("SELECT COUNT(*) FROM email_outbox WHERE recipient = '{email}'");
        assert_eq!(
            count(&app, &sql).await,
            rows,
            "{email} (503): half committed"
        );
    }

    // Every session a client was given is durable and still works.
    assert!(count(&app, "SELECT COUNT(*) FROM sessions").await >= log.sessions.len() as i64);
    let logins_audited = count(
        &app,
        "SELECT COUNT(*) FROM audit_log WHERE event = 'login.success'",
    )
    .await;
    assert!(
        logins_audited >= log.sessions.len() as i64,
        "{} logins answered 200, {logins_audited} login.success records",
        log.sessions.len()
    );
    let http = reqwest::Client::new();
    for session in &log.sessions {
        let me = http
            .get(format!("{}/auth/me", app.address))
            .header("cookie", format!("session={session}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            me.status(),
            200,
            "a session issued before or during the failover"
        );
    }

    // Every verification email a 201 promised is delivered.
    for email in &log.registered {
        app.smtp.wait_for(email).await;
    }

    // The operator's check of the audit chain, through the same host list.
    let output = Command::new(env!("CARGO_BIN_EXE_logicredit-auth"))
        .env_clear()
        .env("DATABASE_URL", &url)
        .env("TOTP_ENCRYPTION_KEY", ENCRYPTION_KEY)
        .env("RUST_LOG", "error")
        .args(["audit", "verify"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("intact"),
        "audit verify after the promotion: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("pg promotion: {}", stdout.trim());
}
