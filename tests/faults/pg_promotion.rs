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

use super::helpers::{self, Backend, ENCRYPTION_KEY, TestApp};
use super::{Op, SERIAL, count, me_request, session_cookie, stop_workers, wait_ready};

/// How long the primary stays dead before the replica is promoted: an HA manager's
/// detection time (Patroni's default loop is 10 s; 1 s keeps the test short).
const DETECTION_DELAY: Duration = Duration::from_secs(1);

/// The outbox's lease on a claimed email (`services::delivery::LEASE_MS`).
const OUTBOX_LEASE_MS: i64 = 60_000;

/// Pause between a worker's requests: keeps the load bounded, so the outbox keeps up and
/// the test stays short.
const PACE: Duration = Duration::from_millis(25);

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
    /// (sent, answered, status) of every answer.
    answers: Vec<(Instant, Instant, u16)>,
    /// When each successful write (registration 201, login 200) was answered.
    writes: Vec<Instant>,
}

/// Registrations, logins and session checks from four workers; the primary is stopped
/// after 3 s, the replica promoted `DETECTION_DELAY` later, and the load goes on until
/// writes succeed again, then 2 s more.
async fn load_through_promotion(
    app: &TestApp,
    cluster: &Cluster,
    accounts: &[String],
) -> (PromotionLog, Crash) {
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
                tokio::time::sleep(PACE).await;
                let op = Op::nth(i);
                let email = format!("load-{worker}-{i}@example.com");
                let session = op.session_to_check(&log.lock().unwrap().sessions, worker, i);
                let account = &accounts[(worker + i) % accounts.len()];
                let Some(request) = op.request(&http, &base, &email, account, session.as_deref())
                else {
                    continue;
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
                log.answers.push((sent, answered, status));
                let session = session_cookie(&response);
                match (op, status) {
                    (Op::Register, 201) => {
                        log.registered.push(email);
                        log.writes.push(answered);
                    }
                    (Op::Login, 200) => match session {
                        Some(cookie) => {
                            log.sessions.push(cookie);
                            log.writes.push(answered);
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
    // The service runs on this runtime: block one worker thread only, not the service.
    tokio::task::block_in_place(|| cluster.pg_ctl(&cluster.primary, &["-m", "immediate", "stop"]));
    // Taken once the server process is gone: nothing sent later can reach it.
    let stopped = Instant::now();
    let stopped_ms = unix_millis();
    tokio::time::sleep(DETECTION_DELAY).await;
    tokio::task::block_in_place(|| {
        cluster.pg_ctl(&cluster.replica, &["-w", "-t", "60", "promote"])
    });
    let promoted = Instant::now();
    let deadline = promoted + Duration::from_secs(30);
    while !log
        .lock()
        .unwrap()
        .writes
        .iter()
        .any(|answered| *answered > promoted)
    {
        assert!(
            Instant::now() < deadline,
            "no write succeeded 30 s after the promotion:\n{}",
            cluster.log_tails()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = stop_workers(&stop, workers, log).await;
    (
        log,
        Crash {
            stopped,
            stopped_ms,
            promoted,
        },
    )
}

/// When the primary's process was gone (also as wall-clock milliseconds, the outbox's
/// clock) and when the promotion completed.
struct Crash {
    stopped: Instant,
    stopped_ms: i64,
    promoted: Instant,
}

fn unix_millis() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    i64::try_from(now.unwrap().as_millis()).unwrap()
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

    let (log, crash) = load_through_promotion(&app, &cluster, &accounts).await;
    let Crash {
        stopped, promoted, ..
    } = crash;
    assert!(
        log.anomalies.is_empty(),
        "answers other than success or 503:\n{:#?}\n{}",
        log.anomalies,
        cluster.log_tails()
    );
    let first_write = log
        .writes
        .iter()
        .filter(|answered| **answered > promoted)
        .min()
        .copied()
        .unwrap();
    // Requests in flight while no server took writes: each either waited for the pool to
    // reach the promoted server or answered 503.
    let in_gap: Vec<u16> = log
        .answers
        .iter()
        .filter(|(sent, answered, _)| *sent < promoted && *answered > stopped)
        .map(|(_, _, status)| *status)
        .collect();
    let unavailable = log.answers.iter().filter(|(_, _, s)| *s == 503).count();
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
         successes, {unavailable} answers 503; {} requests in flight between the crash and the \
         promotion ({} of them answered 503, the others succeeded after waiting for a \
         pooled connection); primary stopped → replica promoted {:.2} s \
         (of which {:?} simulated detection); promoted → first write committed {:.2} s; \
         stopped → first write {:.2} s",
        log.answers.len(),
        log.registered.len(),
        log.sessions.len(),
        in_gap.len(),
        in_gap.iter().filter(|s| **s == 503).count(),
        (promoted - stopped).as_secs_f64(),
        DETECTION_DELAY,
        (first_write - promoted).as_secs_f64(),
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
        let me = me_request(&http, &app.address, session).send().await;
        assert_eq!(
            me.unwrap().status(),
            200,
            "a session from before or during the failover"
        );
    }

    // Every verification email a 201 promised is queued on the promoted server and
    // delivered. The one the outbox worker had claimed when the primary crashed (the
    // claim committed, its answer was lost) waits for its lease — late, not lost: it stays
    // pending, and is sent when the lease ends (the kill -9 test covers that part).
    let claimed_before_crash = format!(
        "status = 'pending' AND locked_until < {}",
        crash.stopped_ms + OUTBOX_LEASE_MS
    );
    let started = Instant::now();
    let pending = format!(
        "SELECT COUNT(*) FROM email_outbox WHERE status = 'pending' AND NOT \
         COALESCE({claimed_before_crash}, false)"
    );
    while count(&app, &pending).await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "emails still pending 60 s after the load"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let held: Vec<String> = app
        .query(&format!(
            "SELECT recipient FROM email_outbox WHERE {claimed_before_crash}"
        ))
        .await
        .into_iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert!(
        held.len() <= 1,
        "one worker claims one email at a time: {held:?}"
    );
    eprintln!(
        "pg promotion: outbox drained {:?} after the load; {} email(s) held by a lease \
         taken before the crash",
        started.elapsed(),
        held.len()
    );
    for email in &log.registered {
        if !held.contains(email) {
            app.smtp.wait_for(email).await;
        }
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
