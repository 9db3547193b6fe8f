//! In-process adapter (moka): the embedded deployment's store, one instance only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::ops::compute::{CompResult, Op};

use super::WindowCount;
use super::lockout::{LockoutPolicy, LockoutState, Reservation};

#[derive(Clone)]
struct Entry {
    value: Arc<str>,
    expires_at: Instant,
}

/// Each entry expires at its own deadline.
struct ByDeadline;

impl moka::Expiry<String, Entry> for ByDeadline {
    fn expire_after_create(&self, _key: &String, entry: &Entry, now: Instant) -> Option<Duration> {
        Some(entry.expires_at.saturating_duration_since(now))
    }

    fn expire_after_update(
        &self,
        _key: &String,
        entry: &Entry,
        now: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.expires_at.saturating_duration_since(now))
    }
}

#[derive(Clone)]
pub struct MemoryStore {
    prefix: Arc<str>,
    cache: Cache<String, Entry>,
}

impl MemoryStore {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.into(),
            cache: Cache::builder()
                .max_capacity(1_000_000)
                .expire_after(ByDeadline)
                .build(),
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn live(entry: Entry) -> Option<Entry> {
        (entry.expires_at > Instant::now()).then_some(entry)
    }

    pub async fn get(&self, key: &str) -> Option<String> {
        let entry = self.cache.get(&self.key(key)).await.and_then(Self::live)?;
        Some(entry.value.to_string())
    }

    pub async fn get_and_touch(&self, key: &str, ttl: Duration) -> Option<String> {
        let result = self
            .cache
            .entry(self.key(key))
            .and_compute_with(|current| {
                let op = match current.map(|e| e.into_value()).and_then(Self::live) {
                    Some(entry) => Op::Put(Entry {
                        value: entry.value,
                        expires_at: Instant::now() + ttl,
                    }),
                    None => Op::Nop,
                };
                std::future::ready(op)
            })
            .await;
        match result {
            CompResult::ReplacedWith(entry) => Some(entry.into_value().value.to_string()),
            _ => None,
        }
    }

    pub async fn set(&self, key: &str, value: &str, ttl: Duration) {
        let entry = Entry {
            value: value.into(),
            expires_at: Instant::now() + ttl,
        };
        self.cache.insert(self.key(key), entry).await;
    }

    pub async fn set_if_absent(&self, key: &str, value: &str, ttl: Duration) -> bool {
        let result = self
            .cache
            .entry(self.key(key))
            .and_compute_with(|current| {
                let op = match current.map(|e| e.into_value()).and_then(Self::live) {
                    Some(_) => Op::Nop,
                    None => Op::Put(Entry {
                        value: value.into(),
                        expires_at: Instant::now() + ttl,
                    }),
                };
                std::future::ready(op)
            })
            .await;
        matches!(
            result,
            CompResult::Inserted(_) | CompResult::ReplacedWith(_)
        )
    }

    /// Writes `value` when `allowed` accepts the live current value (`None`: absent);
    /// true when it wrote. One atomic step per key.
    async fn put_if(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
        allowed: impl Fn(Option<&str>) -> bool,
    ) -> bool {
        let result = self
            .cache
            .entry(self.key(key))
            .and_compute_with(|current| {
                let live = current.map(|e| e.into_value()).and_then(Self::live);
                let op = if allowed(live.as_ref().map(|e| &*e.value)) {
                    Op::Put(Entry {
                        value: value.into(),
                        expires_at: Instant::now() + ttl,
                    })
                } else {
                    Op::Nop
                };
                std::future::ready(op)
            })
            .await;
        matches!(
            result,
            CompResult::Inserted(_) | CompResult::ReplacedWith(_)
        )
    }

    pub async fn replace_if(
        &self,
        key: &str,
        expected: Option<&str>,
        value: &str,
        ttl: Duration,
    ) -> bool {
        self.put_if(key, value, ttl, |current| current == expected)
            .await
    }

    pub async fn set_unless(&self, key: &str, unless: &str, value: &str, ttl: Duration) -> bool {
        self.put_if(key, value, ttl, |current| current != Some(unless))
            .await
    }

    pub async fn take(&self, key: &str) -> Option<String> {
        let entry = self
            .cache
            .remove(&self.key(key))
            .await
            .and_then(Self::live)?;
        Some(entry.value.to_string())
    }

    pub async fn delete(&self, key: &str) {
        self.cache.invalidate(&self.key(key)).await;
    }

    pub async fn hit(&self, key: &str, window: Duration) -> WindowCount {
        let result = self
            .cache
            .entry(self.key(key))
            .and_compute_with(|current| {
                let now = Instant::now();
                let next = match current.map(|e| e.into_value()).and_then(Self::live) {
                    Some(entry) => {
                        let count: u64 = entry.value.parse().unwrap_or(0);
                        Entry {
                            value: (count + 1).to_string().into(),
                            expires_at: entry.expires_at,
                        }
                    }
                    None => Entry {
                        value: "1".into(),
                        expires_at: now + window,
                    },
                };
                std::future::ready(Op::Put(next))
            })
            .await;
        // Invariant: the closure always answers `Op::Put`, so an entry exists afterwards.
        #[allow(clippy::expect_used)]
        let entry = result
            .into_entry()
            .map(|e| e.into_value())
            .expect("a Put always leaves an entry");
        WindowCount {
            count: entry.value.parse().unwrap_or(u64::MAX),
            resets_in: entry.expires_at.saturating_duration_since(Instant::now()),
        }
    }

    /// Reads the state, applies `change` and writes it back, atomically per key.
    async fn update_lockout<T: Send>(
        &self,
        key: &str,
        ttl: Duration,
        change: impl FnOnce(&mut LockoutState) -> T + Send,
    ) -> T {
        let mut outcome = None;
        let slot = &mut outcome;
        self.cache
            .entry(self.key(key))
            .and_compute_with(|current| {
                let mut state: LockoutState = current
                    .map(|e| e.into_value())
                    .and_then(Self::live)
                    .and_then(|e| serde_json::from_str(&e.value).ok())
                    .unwrap_or_default();
                *slot = Some(change(&mut state));
                let value = serde_json::to_string(&state).unwrap_or_default();
                std::future::ready(Op::Put(Entry {
                    value: value.into(),
                    expires_at: Instant::now() + ttl,
                }))
            })
            .await;
        // Invariant: moka runs the compute closure exactly once before returning.
        #[allow(clippy::expect_used)]
        outcome.expect("the compute closure always runs")
    }

    pub async fn lockout_reserve(
        &self,
        key: &str,
        now: i64,
        policy: &LockoutPolicy,
    ) -> Reservation {
        let ttl = Duration::from_millis(policy.state_ttl_ms.max(1) as u64);
        self.update_lockout(key, ttl, |state| state.reserve(now, policy))
            .await
    }

    pub async fn lockout_release(&self, key: &str, engaged_until: Option<i64>) {
        if self.get(key).await.is_none() {
            return;
        }
        let ttl = Duration::from_secs(24 * 3600);
        self.update_lockout(key, ttl, |state| state.release(engaged_until))
            .await;
    }
}
