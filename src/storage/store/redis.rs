//! Redis adapter: shared by every instance. Each call is one round trip, bounded by a
//! timeout, so a down Redis answers "unavailable" quickly instead of hanging requests.
//! A failed call is never retried here (a retried INCR or GETDEL could count twice or
//! lose a one-time value): it fails closed, and the link reconnects for the next call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::{ErrorKind, RedisError, Script, ServerErrorKind};

use super::WindowCount;
use super::lockout::{self, LockoutPolicy, Reservation};
use super::redis_link::{Connection, Link, Replication};
use crate::configuration::RedisTopology;
use crate::storage::{StorageError, StorageResult};

const CALL_TIMEOUT: Duration = Duration::from_millis(1500);

/// INCR plus the window's expiry on the first hit, atomically; returns the count and the
/// milliseconds left in the window.
static HIT_WINDOW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local count = redis.call('INCR', KEYS[1])
        if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
        local ttl = redis.call('PTTL', KEYS[1])
        if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
        return {count, ttl}
        ",
    )
});

/// Compare-and-set: ARGV[1] = "1" expects the value ARGV[2], "0" expects no key.
static REPLACE_IF: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local current = redis.call('GET', KEYS[1])
        local matches = (ARGV[1] == '0' and current == false) or (ARGV[1] == '1' and current == ARGV[2])
        if not matches then return 0 end
        redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
        return 1
        ",
    )
});

/// Writes ARGV[2] unless the current value is ARGV[1] (e.g. never over a tombstone).
static SET_UNLESS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('GET', KEYS[1]) == ARGV[1] then return 0 end
        redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
        return 1
        ",
    )
});

static LOCKOUT_RESERVE: LazyLock<Script> = LazyLock::new(|| Script::new(lockout::RESERVE_SCRIPT));
static LOCKOUT_RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(lockout::RELEASE_SCRIPT));

/// When a write counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// Acknowledged by the primary (asynchronous replication: a failover may lose it).
    Primary,
    /// Also acknowledged by a replica, or after a short wait (`wait_for_replica`).
    Replicated,
}

#[derive(Clone)]
pub struct RedisStore {
    prefix: Arc<str>,
    link: Link,
}

/// Redis is down, failing over or resharding (as opposed to a bug such as a bad reply).
fn is_outage(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || matches!(
            error.kind(),
            ErrorKind::MasterNameNotFoundBySentinel
                | ErrorKind::EmptySentinelList
                | ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(
                    ServerErrorKind::ReadOnly
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::BusyLoading
                        | ServerErrorKind::Moved
                        | ServerErrorKind::Ask
                )
        )
}

fn unavailable(error: RedisError) -> StorageError {
    let (kind, mapped) = if is_outage(&error) {
        (
            "unavailable",
            StorageError::Unavailable(format!("redis: {error}")),
        )
    } else {
        ("other", StorageError::Other(format!("redis: {error}")))
    };
    metrics::counter!("storage_errors_total", "backend" => "store", "kind" => kind).increment(1);
    mapped
}

fn timed_out() -> StorageError {
    metrics::counter!("storage_errors_total", "backend" => "store", "kind" => "unavailable")
        .increment(1);
    StorageError::Unavailable("redis: call timed out".to_owned())
}

impl RedisStore {
    pub fn connect(topology: &RedisTopology, prefix: &str) -> StorageResult<Self> {
        let link = Link::open(topology)
            .map_err(|e| StorageError::Other(format!("redis configuration: {e}")))?;
        Ok(Self {
            prefix: prefix.into(),
            link,
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    async fn run<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> StorageResult<T> {
        self.call(|mut connection| async move { command.query_async(&mut connection).await })
            .await
    }

    /// One call within the timeout (connecting included); a failure is reported to the
    /// link so that it can reconnect (Sentinel: find the new primary).
    async fn call<T, F, Fut>(&self, call: F) -> StorageResult<T>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        // Which connection the call used, for the timeout case (its future is gone then).
        let generation = AtomicU64::new(0);
        let attempt = async {
            let connection = self.link.connection().await?;
            generation.store(connection.generation(), Ordering::Relaxed);
            call(connection).await
        };
        match tokio::time::timeout(CALL_TIMEOUT, attempt).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                self.link
                    .failed(generation.load(Ordering::Relaxed), Some(&error));
                Err(unavailable(error))
            }
            Err(_) => {
                self.link.failed(generation.load(Ordering::Relaxed), None);
                Err(timed_out())
            }
        }
    }

    pub async fn ping(&self) -> StorageResult<()> {
        let _: String = self.run(&redis::cmd("PING")).await?;
        Ok(())
    }

    pub async fn get(&self, key: &str) -> StorageResult<Option<String>> {
        self.run(redis::cmd("GET").arg(self.key(key))).await
    }

    pub async fn get_and_touch(&self, key: &str, ttl: Duration) -> StorageResult<Option<String>> {
        self.run(
            redis::cmd("GETEX")
                .arg(self.key(key))
                .arg("PX")
                .arg(ttl_millis(ttl)),
        )
        .await
    }

    pub async fn set(&self, key: &str, value: &str, ttl: Duration) -> StorageResult<()> {
        let _: () = self
            .run(
                redis::cmd("SET")
                    .arg(self.key(key))
                    .arg(value)
                    .arg("PX")
                    .arg(ttl_millis(ttl)),
            )
            .await?;
        Ok(())
    }

    /// `set`, then a wait until a replica has the write (see `wait_for_replica`).
    pub async fn set_replicated(&self, key: &str, value: &str, ttl: Duration) -> StorageResult<()> {
        let key = self.key(key);
        let mut command = redis::cmd("SET");
        command.arg(&key).arg(value).arg("PX").arg(ttl_millis(ttl));
        self.call(|mut connection| async move {
            let () = command.query_async(&mut connection).await?;
            replicated(connection.wait_for_replica(&key).await?);
            Ok(())
        })
        .await
    }

    pub async fn set_if_absent(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> StorageResult<bool> {
        let reply: Option<String> = self
            .run(
                redis::cmd("SET")
                    .arg(self.key(key))
                    .arg(value)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_millis(ttl)),
            )
            .await?;
        Ok(reply.is_some())
    }

    pub async fn take(&self, key: &str) -> StorageResult<Option<String>> {
        self.run(redis::cmd("GETDEL").arg(self.key(key))).await
    }

    pub async fn delete(&self, key: &str) -> StorageResult<()> {
        let _: i64 = self.run(redis::cmd("DEL").arg(self.key(key))).await?;
        Ok(())
    }

    pub async fn replace_if(
        &self,
        key: &str,
        expected: Option<&str>,
        value: &str,
        ttl: Duration,
    ) -> StorageResult<bool> {
        let (flag, expected) = match expected {
            Some(v) => ("1", v),
            None => ("0", ""),
        };
        let ttl = ttl_millis(ttl).to_string();
        let written: i64 = self
            .script(
                &REPLACE_IF,
                key,
                &[flag, expected, value, &ttl],
                Durability::Primary,
            )
            .await?;
        Ok(written == 1)
    }

    pub async fn set_unless(
        &self,
        key: &str,
        unless: &str,
        value: &str,
        ttl: Duration,
    ) -> StorageResult<bool> {
        let ttl = ttl_millis(ttl).to_string();
        let written: i64 = self
            .script(
                &SET_UNLESS,
                key,
                &[unless, value, &ttl],
                Durability::Primary,
            )
            .await?;
        Ok(written == 1)
    }

    /// Runs a Lua script (EVALSHA, loading it on first use) within the call timeout.
    async fn script<T: redis::FromRedisValue, A: redis::ToRedisArgs>(
        &self,
        script: &Script,
        key: &str,
        args: &[A],
        durability: Durability,
    ) -> StorageResult<T> {
        let key = self.key(key);
        let mut invocation = script.key(&key);
        for arg in args {
            invocation.arg(arg);
        }
        self.call(|mut connection| async move {
            let reply = invocation.invoke_async(&mut connection).await?;
            if durability == Durability::Replicated {
                replicated(connection.wait_for_replica(&key).await?);
            }
            Ok(reply)
        })
        .await
    }

    pub async fn lockout_reserve(
        &self,
        key: &str,
        now: i64,
        policy: &LockoutPolicy,
    ) -> StorageResult<Reservation> {
        let args = [
            now,
            i64::from(policy.threshold),
            policy.base_ms,
            policy.max_ms,
            policy.state_ttl_ms,
        ];
        // Replicated: a reservation (or lock) lost in a failover would give an attacker
        // more attempts than the threshold allows.
        let (granted, remaining_ms, engaged_until, lock_ms): (i64, i64, i64, i64) = self
            .script(&LOCKOUT_RESERVE, key, &args, Durability::Replicated)
            .await?;
        Ok(if granted == 1 {
            Reservation::Granted {
                engaged_until: (engaged_until > 0).then_some(engaged_until),
                lock_ms,
            }
        } else {
            Reservation::Refused { remaining_ms }
        })
    }

    pub async fn lockout_release(
        &self,
        key: &str,
        engaged_until: Option<i64>,
    ) -> StorageResult<()> {
        let _: i64 = self
            .script(
                &LOCKOUT_RELEASE,
                key,
                &[engaged_until.unwrap_or(0)],
                Durability::Primary,
            )
            .await?;
        Ok(())
    }

    pub async fn hit(&self, key: &str, window: Duration) -> StorageResult<WindowCount> {
        let (count, ttl_ms): (u64, i64) = self
            .script(
                &HIT_WINDOW,
                key,
                &[ttl_millis(window) as i64],
                Durability::Primary,
            )
            .await?;
        Ok(WindowCount {
            count,
            resets_in: Duration::from_millis(ttl_millis_u64(ttl_ms)),
        })
    }
}

/// Counts how replica waits ended; an unconfirmed write stands (it is on the primary) but
/// could be lost if the primary failed now, which operators should see.
fn replicated(outcome: Replication) {
    let result = match outcome {
        Replication::NotReplicated => return,
        Replication::Acknowledged => "acknowledged",
        Replication::Unconfirmed => {
            tracing::warn!("redis: no replica acknowledged a security-relevant write in time");
            "unconfirmed"
        }
    };
    metrics::counter!("store_replica_waits_total", "result" => result).increment(1);
}

fn ttl_millis(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}

fn ttl_millis_u64(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0)
}
