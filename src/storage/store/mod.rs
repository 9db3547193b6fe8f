//! The ephemeral store: short-lived shared state (session cache, ceremony state, counters).
//!
//! Two adapters behind one type: in-process (moka) for the embedded deployment and Redis
//! for several instances. An enum rather than a trait object keeps calls static and the
//! set of adapters explicit. Every key gets the configured prefix.

pub mod lockout;
mod memory;
mod redis;
mod redis_link;

use std::time::Duration;

pub use self::lockout::{LockoutPolicy, Reservation};
pub use self::memory::MemoryStore;
pub use self::redis::RedisStore;
use super::StorageResult;
use crate::configuration::RedisTopology;

#[derive(Clone)]
pub enum Store {
    Memory(MemoryStore),
    Redis(RedisStore),
}

/// A fixed-window counter after one hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowCount {
    pub count: u64,
    /// Time until the window resets.
    pub resets_in: Duration,
}

impl Store {
    pub fn memory(prefix: &str) -> Self {
        Store::Memory(MemoryStore::new(prefix))
    }

    /// Connects lazily: a Redis that is down makes calls fail (503), not the start.
    pub fn redis(topology: &RedisTopology, prefix: &str) -> StorageResult<Self> {
        Ok(Store::Redis(RedisStore::connect(topology, prefix)?))
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Store::Memory(_) => "memory",
            Store::Redis(_) => "redis",
        }
    }

    pub async fn ping(&self) -> StorageResult<()> {
        match self {
            Store::Memory(_) => Ok(()),
            Store::Redis(s) => s.ping().await,
        }
    }

    pub async fn get(&self, key: &str) -> StorageResult<Option<String>> {
        match self {
            Store::Memory(s) => Ok(s.get(key).await),
            Store::Redis(s) => s.get(key).await,
        }
    }

    /// Reads a value and restarts its time-to-live in one step (sliding expiry).
    pub async fn get_and_touch(&self, key: &str, ttl: Duration) -> StorageResult<Option<String>> {
        match self {
            Store::Memory(s) => Ok(s.get_and_touch(key, ttl).await),
            Store::Redis(s) => s.get_and_touch(key, ttl).await,
        }
    }

    pub async fn set(&self, key: &str, value: &str, ttl: Duration) -> StorageResult<()> {
        match self {
            Store::Memory(s) => {
                s.set(key, value, ttl).await;
                Ok(())
            }
            Store::Redis(s) => s.set(key, value, ttl).await,
        }
    }

    /// `set` for state whose loss would weaken security (a revocation tombstone): with
    /// Sentinel or Cluster it returns once a replica has the write too, or after a short
    /// wait (docs/RELIABILITY.md, "Redis failover").
    pub async fn set_replicated(&self, key: &str, value: &str, ttl: Duration) -> StorageResult<()> {
        match self {
            Store::Memory(s) => {
                s.set(key, value, ttl).await;
                Ok(())
            }
            Store::Redis(s) => s.set_replicated(key, value, ttl).await,
        }
    }

    /// Writes only when the key is absent; true when this call wrote it.
    pub async fn set_if_absent(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> StorageResult<bool> {
        match self {
            Store::Memory(s) => Ok(s.set_if_absent(key, value, ttl).await),
            Store::Redis(s) => s.set_if_absent(key, value, ttl).await,
        }
    }

    /// Compare-and-set: writes `value` only while the key holds `expected` (`None`: the
    /// key is absent); true when this call wrote it.
    pub async fn replace_if(
        &self,
        key: &str,
        expected: Option<&str>,
        value: &str,
        ttl: Duration,
    ) -> StorageResult<bool> {
        match self {
            Store::Memory(s) => Ok(s.replace_if(key, expected, value, ttl).await),
            Store::Redis(s) => s.replace_if(key, expected, value, ttl).await,
        }
    }

    /// Writes `value` unless the key holds `unless` (a tombstone is never overwritten);
    /// true when this call wrote it.
    pub async fn set_unless(
        &self,
        key: &str,
        unless: &str,
        value: &str,
        ttl: Duration,
    ) -> StorageResult<bool> {
        match self {
            Store::Memory(s) => Ok(s.set_unless(key, unless, value, ttl).await),
            Store::Redis(s) => s.set_unless(key, unless, value, ttl).await,
        }
    }

    /// Reads and deletes in one step: single-use state (ceremonies, one-time tokens).
    pub async fn take(&self, key: &str) -> StorageResult<Option<String>> {
        match self {
            Store::Memory(s) => Ok(s.take(key).await),
            Store::Redis(s) => s.take(key).await,
        }
    }

    pub async fn delete(&self, key: &str) -> StorageResult<()> {
        match self {
            Store::Memory(s) => {
                s.delete(key).await;
                Ok(())
            }
            Store::Redis(s) => s.delete(key).await,
        }
    }

    /// Reserves one login attempt against the lockout state under `key` (see `lockout`).
    pub async fn lockout_reserve(
        &self,
        key: &str,
        now: i64,
        policy: &LockoutPolicy,
    ) -> StorageResult<Reservation> {
        match self {
            Store::Memory(s) => Ok(s.lockout_reserve(key, now, policy).await),
            Store::Redis(s) => s.lockout_reserve(key, now, policy).await,
        }
    }

    /// Gives back a reservation whose attempt was correct but did not complete a login.
    pub async fn lockout_release(
        &self,
        key: &str,
        engaged_until: Option<i64>,
    ) -> StorageResult<()> {
        match self {
            Store::Memory(s) => {
                s.lockout_release(key, engaged_until).await;
                Ok(())
            }
            Store::Redis(s) => s.lockout_release(key, engaged_until).await,
        }
    }

    /// Counts one hit in a fixed window that starts at the first hit.
    pub async fn hit(&self, key: &str, window: Duration) -> StorageResult<WindowCount> {
        match self {
            Store::Memory(s) => Ok(s.hit(key, window).await),
            Store::Redis(s) => s.hit(key, window).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The adapter contract, run against both adapters.
    pub(crate) async fn exercise(store: Store) {
        let ttl = Duration::from_secs(60);
        assert_eq!(store.get("k").await.unwrap(), None);
        store.set("k", "v1", ttl).await.unwrap();
        assert_eq!(store.get("k").await.unwrap().as_deref(), Some("v1"));
        assert!(!store.set_if_absent("k", "v2", ttl).await.unwrap());
        assert_eq!(
            store.get_and_touch("k", ttl).await.unwrap().as_deref(),
            Some("v1")
        );
        assert_eq!(store.take("k").await.unwrap().as_deref(), Some("v1"));
        assert_eq!(store.take("k").await.unwrap(), None);
        assert!(store.set_if_absent("k", "v3", ttl).await.unwrap());
        // Compare-and-set and write-unless: the session cache's only writes.
        assert!(!store.replace_if("k", Some("v1"), "v4", ttl).await.unwrap());
        assert!(store.replace_if("k", Some("v3"), "v4", ttl).await.unwrap());
        assert!(!store.replace_if("k", None, "v5", ttl).await.unwrap());
        assert!(store.replace_if("absent", None, "v5", ttl).await.unwrap());
        assert_eq!(store.get("absent").await.unwrap().as_deref(), Some("v5"));
        store.set("t", "tombstone", ttl).await.unwrap();
        assert!(
            !store
                .set_unless("t", "tombstone", "stale", ttl)
                .await
                .unwrap()
        );
        assert!(
            store
                .set_unless("k", "tombstone", "stale", ttl)
                .await
                .unwrap()
        );
        assert_eq!(store.get("k").await.unwrap().as_deref(), Some("stale"));
        store.delete("k").await.unwrap();
        assert_eq!(store.get("k").await.unwrap(), None);

        store
            .set("short", "x", Duration::from_millis(200))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(store.get("short").await.unwrap(), None);

        let first = store.hit("counter", ttl).await.unwrap();
        let second = store.hit("counter", ttl).await.unwrap();
        assert_eq!((first.count, second.count), (1, 2));
        assert!(second.resets_in <= ttl && second.resets_in > Duration::from_secs(50));

        let policy = LockoutPolicy {
            threshold: 2,
            base_ms: 60_000,
            max_ms: 3_600_000,
            state_ttl_ms: 60_000,
        };
        let granted = store.lockout_reserve("lock", 0, &policy).await.unwrap();
        assert_eq!(
            granted,
            Reservation::Granted {
                engaged_until: None,
                lock_ms: 0
            }
        );
        let engaged = store.lockout_reserve("lock", 10, &policy).await.unwrap();
        assert_eq!(
            engaged,
            Reservation::Granted {
                engaged_until: Some(60_010),
                lock_ms: 60_000
            }
        );
        let refused = store.lockout_reserve("lock", 20, &policy).await.unwrap();
        assert_eq!(
            refused,
            Reservation::Refused {
                remaining_ms: 59_990
            }
        );
        store.lockout_release("lock", Some(60_010)).await.unwrap();
        let again = store.lockout_reserve("lock", 30, &policy).await.unwrap();
        assert_eq!(
            again,
            Reservation::Granted {
                engaged_until: Some(60_030),
                lock_ms: 60_000
            }
        );
        store.delete("lock").await.unwrap();
        let fresh = store.lockout_reserve("lock", 40, &policy).await.unwrap();
        assert_eq!(
            fresh,
            Reservation::Granted {
                engaged_until: None,
                lock_ms: 0
            }
        );
    }

    #[tokio::test]
    async fn memory_store_keeps_the_contract() {
        exercise(Store::memory("test:")).await;
    }

    #[tokio::test]
    async fn redis_store_keeps_the_contract() {
        let url =
            std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let prefix = format!("test:{}:", uuid::Uuid::new_v4());
        exercise(Store::redis(&RedisTopology::Single { url }, &prefix).unwrap()).await;
    }
}
