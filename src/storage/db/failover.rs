//! PostgreSQL failover: a libpq-style multi-host `DATABASE_URL`
//! (`postgres://user@db1:5432,db2:5432/auth?target_session_attrs=read-write`) served by one
//! pool that follows the writable server.
//!
//! sqlx 0.9 connects to one host and knows no `target_session_attrs` (its URL parser takes
//! one host and ignores the parameter), so this module adds both around its pool:
//! - every new connection is checked (`after_connect`) and refused unless the server takes
//!   writes; the pool's connect loop then retries until its acquire timeout;
//! - a watcher checks the current server on a connection of its own every
//!   `CHECK_INTERVAL`; when that server is gone or no longer writable it tries the hosts in
//!   order and points the pool at the first writable one (the pool's connect loop re-reads
//!   its connect options on every attempt, so waiting requests follow at their next one);
//! - pooled connections opened before a switch are closed when next acquired
//!   (`before_acquire`), so none keeps talking to a demoted (read-only) primary.
//!
//! Nothing here promotes a replica: that is the HA manager's job (Patroni, repmgr, an
//! operator running `pg_ctl promote`). This only finds the server that was promoted.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sea_orm::sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sea_orm::sqlx::{self, Connection};

/// How often the watcher asks the current server whether it still takes writes: the
/// longest a promotion goes unnoticed.
const CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// How long one probe (connect + check) of one host may take before the next is tried.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

const DEFAULT_PORT: u16 = 5432;

/// Which server a connection must reach: libpq's `target_session_attrs`, restricted to the
/// values a service that writes on every login can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionTarget {
    /// `read-write` (the default): `SHOW transaction_read_only` is `off` — not a standby,
    /// and not fenced with `default_transaction_read_only`.
    #[default]
    ReadWrite,
    /// `primary`: `pg_is_in_recovery()` is false (a fenced primary still counts).
    Primary,
}

impl FromStr for SessionTarget {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "read-write" => Ok(Self::ReadWrite),
            "primary" => Ok(Self::Primary),
            other => Err(format!(
                "target_session_attrs={other} is not supported: the service writes, so only \
                 read-write or primary"
            )),
        }
    }
}

impl SessionTarget {
    /// Does the server behind `conn` take this service's writes?
    async fn accepts(self, conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
        match self {
            Self::ReadWrite => {
                let read_only: String = sqlx::query_scalar("SHOW transaction_read_only")
                    .fetch_one(&mut *conn)
                    .await?;
                Ok(read_only == "off")
            }
            Self::Primary => {
                let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
                    .fetch_one(&mut *conn)
                    .await?;
                Ok(!in_recovery)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

/// A PostgreSQL `DATABASE_URL` taken apart: what sqlx gets (the first host, without the
/// parameters sqlx does not know), the hosts to fail over between, and the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgUrl {
    /// A single-host URL sqlx parses: the first host, the user, database and parameters.
    pub first: String,
    /// Every host, in the URL's order; one entry when there is nothing to fail over to.
    pub hosts: Vec<HostPort>,
    pub target: SessionTarget,
}

impl PgUrl {
    /// Parses `postgres://[user[:password]@]host[:port][,host[:port]…][/db][?params]`.
    /// Only the host list is split here; each host's URL is parsed by the `url` crate and
    /// the result checked by sqlx's own parser. Reserved characters in the user or
    /// password must be percent-encoded, as in any URL.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or("expected postgres://host[:port][,host[:port]…]/database")?;
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let (userinfo, host_list) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
            None => (String::new(), authority),
        };
        let mut single_host_urls = host_list
            .split(',')
            .map(|entry| url::Url::parse(&format!("{scheme}://{userinfo}{entry}{tail}")))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("not a valid URL: {e}"))?;
        let several = single_host_urls.len() > 1;
        let mut hosts = Vec::with_capacity(single_host_urls.len());
        for parsed in &single_host_urls {
            let host = match parsed.host() {
                Some(url::Host::Ipv6(address)) => address.to_string(),
                Some(host) => host.to_string(),
                None if several => return Err("every host in a host list needs a name".into()),
                None => String::new(),
            };
            hosts.push(HostPort {
                host,
                port: parsed.port().unwrap_or(DEFAULT_PORT),
            });
        }
        let mut first = single_host_urls.swap_remove(0);
        let target: SessionTarget = first
            .query_pairs()
            .find(|(key, _)| key == "target_session_attrs")
            .map(|(_, value)| value.parse())
            .transpose()?
            .unwrap_or_default();
        // Ours, not sqlx's (which would ignore it with a warning on every connect).
        if first
            .query_pairs()
            .any(|(key, _)| key == "target_session_attrs")
        {
            first = without_target(first);
        }
        let first = first.to_string();
        PgConnectOptions::from_str(&first).map_err(|e| e.to_string())?;
        Ok(Self {
            first,
            hosts,
            target,
        })
    }
}

fn without_target(mut url: url::Url) -> url::Url {
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(key, _)| key != "target_session_attrs")
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    if kept.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
    url
}

/// What the pool's hooks and the watcher share.
pub(super) struct Follower {
    hosts: Vec<HostPort>,
    target: SessionTarget,
    /// Index into `hosts` of the server the pool connects to.
    current: AtomicUsize,
    started: Instant,
    /// When the pool last switched servers, in nanoseconds after `started`; 0: never.
    switched_at: AtomicU64,
}

impl Follower {
    pub(super) fn new(url: &PgUrl) -> Arc<Self> {
        Arc::new(Self {
            hosts: url.hosts.clone(),
            target: url.target,
            current: AtomicUsize::new(0),
            started: Instant::now(),
            switched_at: AtomicU64::new(0),
        })
    }

    /// The pool's hooks: refuse connections to a server that does not take writes, and
    /// retire those opened before the last switch.
    pub(super) fn hooks(self: &Arc<Self>, options: PgPoolOptions) -> PgPoolOptions {
        let on_connect = Arc::clone(self);
        let on_acquire = Arc::clone(self);
        options
            .after_connect(move |conn, _| {
                let target = on_connect.target;
                Box::pin(async move {
                    if target.accepts(conn).await? {
                        Ok(())
                    } else {
                        Err(sqlx::Error::Protocol(format!(
                            "the server does not take writes (target_session_attrs: {target:?})"
                        )))
                    }
                })
            })
            .before_acquire(move |_, meta| {
                let keep = !on_acquire.opened_before_switch(meta.age);
                Box::pin(async move { Ok(keep) })
            })
    }

    fn opened_before_switch(&self, age: Duration) -> bool {
        let switched_at = self.switched_at.load(Ordering::Acquire);
        if switched_at == 0 {
            return false;
        }
        let since_switch = self
            .started
            .elapsed()
            .saturating_sub(Duration::from_nanos(switched_at));
        age >= since_switch
    }

    /// Starts the watcher when there is another host to fail over to; the task ends when
    /// the returned guard (held by every clone of the `Database`) is dropped.
    pub(super) fn watch(self: &Arc<Self>, pool: PgPool) -> Option<Watcher> {
        if self.hosts.len() < 2 {
            return None;
        }
        let follower = Arc::clone(self);
        Some(Watcher(tokio::spawn(
            async move { follower.run(pool).await },
        )))
    }

    async fn run(&self, pool: PgPool) {
        let mut checker: Option<PgConnection> = None;
        let mut outage_reported = false;
        loop {
            tokio::time::sleep(CHECK_INTERVAL).await;
            if pool.is_closed() {
                return;
            }
            if let Some(conn) = checker.as_mut()
                && matches!(
                    tokio::time::timeout(PROBE_TIMEOUT, self.target.accepts(conn)).await,
                    Ok(Ok(true))
                )
            {
                continue;
            }
            checker = None;
            match self.find_writable(&pool).await {
                Some((index, conn)) => {
                    self.switch_to(index, &pool);
                    checker = Some(conn);
                    outage_reported = false;
                }
                None if !outage_reported => {
                    tracing::error!("database: no host in DATABASE_URL takes writes");
                    outage_reported = true;
                }
                None => {}
            }
        }
    }

    /// The first host, in the URL's order, that answers and takes writes, with the
    /// connection that showed it (kept for the next checks).
    async fn find_writable(&self, pool: &PgPool) -> Option<(usize, PgConnection)> {
        for (index, host) in self.hosts.iter().enumerate() {
            let options = Self::options_for(pool, host);
            let probe = async {
                let mut conn = PgConnection::connect_with(&options).await?;
                let writable = self.target.accepts(&mut conn).await?;
                Ok::<_, sqlx::Error>((conn, writable))
            };
            match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
                Ok(Ok((conn, true))) => return Some((index, conn)),
                Ok(Ok((conn, false))) => {
                    let _ = conn.close().await;
                }
                Ok(Err(error)) => tracing::debug!(%error, host = %host.host, "database probe"),
                Err(_) => tracing::debug!(host = %host.host, "database probe timed out"),
            }
        }
        None
    }

    /// The pool's own options (user, database, TLS, logging…) pointed at `host`.
    fn options_for(pool: &PgPool, host: &HostPort) -> PgConnectOptions {
        pool.connect_options()
            .as_ref()
            .clone()
            .host(&host.host)
            .port(host.port)
    }

    fn switch_to(&self, index: usize, pool: &PgPool) {
        let previous = self.current.swap(index, Ordering::AcqRel);
        if previous == index {
            // The same server (only the watcher's connection was lost, or it restarted):
            // dead pooled connections fail the pool's ping and are replaced anyway.
            return;
        }
        if let Some(host) = self.hosts.get(index) {
            pool.set_connect_options(Self::options_for(pool, host));
        }
        // After the options: a connection that is younger than this mark was opened with
        // the new ones. At least 1 ns, since 0 means "never switched".
        let now = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.switched_at.store(now.max(1), Ordering::Release);
        tracing::warn!(
            from = %self.hosts.get(previous).map_or("?", |h| h.host.as_str()),
            to = %self.hosts.get(index).map_or("?", |h| h.host.as_str()),
            "database: switched to the writable server"
        );
        metrics::counter!("database_failovers_total").increment(1);
    }
}

/// The watcher task; aborted when the last `Database` clone goes.
pub(super) struct Watcher(tokio::task::JoinHandle<()>);

impl Drop for Watcher {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(url: &PgUrl) -> Vec<(String, u16)> {
        url.hosts.iter().map(|h| (h.host.clone(), h.port)).collect()
    }

    #[test]
    fn a_host_list_becomes_hosts_in_order_and_sqlx_gets_the_first() {
        let url = PgUrl::parse(
            "postgres://auth:s%40cret@db1.internal:5433,db2.internal,10.0.0.3:6432/auth\
             ?sslmode=require&target_session_attrs=read-write",
        )
        .unwrap();
        assert_eq!(
            hosts(&url),
            [
                ("db1.internal".to_owned(), 5433),
                ("db2.internal".to_owned(), 5432),
                ("10.0.0.3".to_owned(), 6432),
            ]
        );
        assert_eq!(url.target, SessionTarget::ReadWrite);
        assert_eq!(
            url.first,
            "postgres://auth:s%40cret@db1.internal:5433/auth?sslmode=require"
        );
        let options = PgConnectOptions::from_str(&url.first).unwrap();
        assert_eq!(options.get_host(), "db1.internal");
        assert_eq!(options.get_username(), "auth");
        assert_eq!(options.get_database(), Some("auth"));
    }

    #[test]
    fn a_single_host_url_is_passed_through() {
        let url = PgUrl::parse("postgres://postgres@127.0.0.1:5432/postgres").unwrap();
        assert_eq!(url.first, "postgres://postgres@127.0.0.1:5432/postgres");
        assert_eq!(hosts(&url), [("127.0.0.1".to_owned(), 5432)]);
        assert_eq!(url.target, SessionTarget::ReadWrite, "writable by default");
    }

    #[test]
    fn a_socket_url_without_a_host_still_works_alone() {
        let url = PgUrl::parse("postgres:///auth?host=/var/run/postgresql").unwrap();
        assert_eq!(url.hosts.len(), 1);
        assert!(PgUrl::parse("postgres://,db2/auth").is_err());
    }

    #[test]
    fn ipv6_hosts_lose_their_brackets() {
        let url = PgUrl::parse("postgres://u@[::1]:5433,[fd00::2]/db").unwrap();
        assert_eq!(
            hosts(&url),
            [("::1".to_owned(), 5433), ("fd00::2".to_owned(), 5432)]
        );
    }

    #[test]
    fn only_targets_that_take_writes_are_accepted() {
        let primary = PgUrl::parse("postgres://a,b/db?target_session_attrs=primary").unwrap();
        assert_eq!(primary.target, SessionTarget::Primary);
        assert_eq!(primary.first, "postgres://a/db");
        for refused in ["any", "read-only", "standby", "prefer-standby", ""] {
            let error = PgUrl::parse(&format!("postgres://a,b/db?target_session_attrs={refused}"))
                .unwrap_err();
            assert!(error.contains("only read-write or primary"), "{error}");
        }
    }

    #[test]
    fn malformed_urls_are_refused() {
        assert!(PgUrl::parse("db1,db2/auth").is_err(), "no scheme");
        assert!(
            PgUrl::parse("postgres://db1:port,db2/auth").is_err(),
            "bad port"
        );
        assert!(PgUrl::parse("postgres://db1/auth?sslmode=sometimes").is_err());
    }

    #[test]
    fn connections_opened_before_a_switch_are_retired() {
        let url = PgUrl::parse("postgres://a,b/db").unwrap();
        let follower = Follower::new(&url);
        assert!(!follower.opened_before_switch(Duration::from_secs(3600)));
        std::thread::sleep(Duration::from_millis(20));
        let switched = u64::try_from(follower.started.elapsed().as_nanos()).unwrap();
        follower.switched_at.store(switched, Ordering::Release);
        assert!(follower.opened_before_switch(Duration::from_millis(30)));
        assert!(!follower.opened_before_switch(Duration::ZERO));
    }
}
