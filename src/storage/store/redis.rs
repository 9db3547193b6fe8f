//! Redis adapter: shared by every instance. Each call is one round trip, bounded by a
//! timeout, so a down Redis answers "unavailable" quickly instead of hanging requests.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script};

use super::WindowCount;
use super::lockout::{self, LockoutPolicy, Reservation};
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

#[derive(Clone)]
pub struct RedisStore {
    prefix: Arc<str>,
    connection: ConnectionManager,
}

fn unavailable(error: RedisError) -> StorageError {
    let (kind, mapped) =
        if error.is_io_error() || error.is_timeout() || error.is_connection_dropped() {
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
    pub async fn connect(url: &str, prefix: &str) -> StorageResult<Self> {
        let client =
            redis::Client::open(url).map_err(|e| StorageError::Other(format!("REDIS_URL: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(1000)))
            .set_response_timeout(Some(Duration::from_millis(1000)))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(250));
        // Lazy: the service starts (and reports not-ready) while Redis is down, and
        // reconnects by itself when it returns.
        let connection =
            ConnectionManager::new_lazy_with_config(client, config).map_err(unavailable)?;
        Ok(Self {
            prefix: prefix.into(),
            connection,
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    async fn run<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> StorageResult<T> {
        let mut connection = self.connection.clone();
        match tokio::time::timeout(CALL_TIMEOUT, command.query_async(&mut connection)).await {
            Ok(result) => result.map_err(unavailable),
            Err(_) => Err(timed_out()),
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
            .script(&REPLACE_IF, key, &[flag, expected, value, &ttl])
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
            .script(&SET_UNLESS, key, &[unless, value, &ttl])
            .await?;
        Ok(written == 1)
    }

    /// Runs a Lua script (EVALSHA, loading it on first use) within the call timeout.
    async fn script<T: redis::FromRedisValue, A: redis::ToRedisArgs>(
        &self,
        script: &Script,
        key: &str,
        args: &[A],
    ) -> StorageResult<T> {
        let mut connection = self.connection.clone();
        let mut invocation = script.key(self.key(key));
        for arg in args {
            invocation.arg(arg);
        }
        match tokio::time::timeout(CALL_TIMEOUT, invocation.invoke_async(&mut connection)).await {
            Ok(result) => result.map_err(unavailable),
            Err(_) => Err(timed_out()),
        }
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
        let (granted, remaining_ms, engaged_until, lock_ms): (i64, i64, i64, i64) =
            self.script(&LOCKOUT_RESERVE, key, &args).await?;
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
            .script(&LOCKOUT_RELEASE, key, &[engaged_until.unwrap_or(0)])
            .await?;
        Ok(())
    }

    pub async fn hit(&self, key: &str, window: Duration) -> StorageResult<WindowCount> {
        let (count, ttl_ms): (u64, i64) = self
            .script(&HIT_WINDOW, key, &[ttl_millis(window) as i64])
            .await?;
        Ok(WindowCount {
            count,
            resets_in: Duration::from_millis(ttl_millis_u64(ttl_ms)),
        })
    }
}

fn ttl_millis(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}

fn ttl_millis_u64(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0)
}
