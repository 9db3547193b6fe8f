//! The per-account lockout counter, as one atomic step in either adapter.
//!
//! Every login attempt *reserves* itself before the password is checked: the reservation
//! counts as a failure at once and, when it reaches the threshold, engages the lock at
//! once. So however many attempts race, at most `threshold` of them are ever evaluated
//! before the lock holds (the failure behind GHSA-7h8m-vrxx-vr4m). A correct password
//! then either clears the state (login complete) or releases its reservation (password
//! step of an MFA login, which must not reset the count).

use serde::{Deserialize, Serialize};

/// The lockout rules: lock after `threshold` consecutive failures for `base_ms`, doubling
/// with each further lock up to `max_ms`; state is forgotten `state_ttl_ms` after its last change.
#[derive(Debug, Clone, Copy)]
pub struct LockoutPolicy {
    pub threshold: u32,
    pub base_ms: i64,
    pub max_ms: i64,
    pub state_ttl_ms: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockoutState {
    pub failures: u32,
    pub locks: u32,
    pub locked_until: i64,
}

/// The answer to a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// Locked: refuse without evaluating; `remaining_ms` until the lock ends.
    Refused { remaining_ms: i64 },
    /// Evaluate the attempt. `engaged_until` is set when this attempt engaged a lock
    /// (it was the threshold-th failure in a row).
    Granted {
        engaged_until: Option<i64>,
        lock_ms: i64,
    },
}

impl LockoutState {
    /// The decision the Redis script makes too (keep the two in step).
    pub fn reserve(&mut self, now: i64, policy: &LockoutPolicy) -> Reservation {
        if self.locked_until > now {
            return Reservation::Refused {
                remaining_ms: self.locked_until - now,
            };
        }
        self.failures += 1;
        if self.failures >= policy.threshold {
            self.locks += 1;
            let lock_ms = lock_duration(self.locks, policy);
            self.locked_until = now + lock_ms;
            return Reservation::Granted {
                engaged_until: Some(self.locked_until),
                lock_ms,
            };
        }
        Reservation::Granted {
            engaged_until: None,
            lock_ms: 0,
        }
    }

    /// Undoes one reservation whose attempt turned out correct.
    pub fn release(&mut self, engaged_until: Option<i64>) {
        self.failures = self.failures.saturating_sub(1);
        if let Some(until) = engaged_until
            && self.locked_until == until
        {
            self.locks = self.locks.saturating_sub(1);
            self.locked_until = 0;
        }
    }
}

pub fn lock_duration(locks: u32, policy: &LockoutPolicy) -> i64 {
    let doublings = locks.saturating_sub(1).min(30);
    policy
        .base_ms
        .saturating_mul(1i64 << doublings)
        .min(policy.max_ms)
}

/// Redis twin of `LockoutState::reserve`. KEYS[1] = state hash; ARGV = now, threshold,
/// base_ms, max_ms, state_ttl_ms. Returns {granted, remaining_ms, engaged_until, lock_ms}.
pub const RESERVE_SCRIPT: &str = r"
local now = tonumber(ARGV[1])
local s = redis.call('HMGET', KEYS[1], 'failures', 'locks', 'locked_until')
local failures = tonumber(s[1]) or 0
local locks = tonumber(s[2]) or 0
local locked_until = tonumber(s[3]) or 0
if locked_until > now then
  return {0, locked_until - now, 0, 0}
end
failures = failures + 1
local engaged = 0
local lock_ms = 0
if failures >= tonumber(ARGV[2]) then
  locks = locks + 1
  lock_ms = math.min(tonumber(ARGV[3]) * (2 ^ math.min(locks - 1, 30)), tonumber(ARGV[4]))
  locked_until = now + lock_ms
  engaged = locked_until
end
redis.call('HSET', KEYS[1], 'failures', failures, 'locks', locks, 'locked_until', locked_until)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {1, 0, engaged, lock_ms}
";

/// Redis twin of `LockoutState::release`. ARGV[1] = engaged_until (0 for none).
pub const RELEASE_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local s = redis.call('HMGET', KEYS[1], 'failures', 'locks', 'locked_until')
local failures = math.max((tonumber(s[1]) or 0) - 1, 0)
local locks = tonumber(s[2]) or 0
local locked_until = tonumber(s[3]) or 0
local engaged = tonumber(ARGV[1])
if engaged > 0 and locked_until == engaged then
  locks = math.max(locks - 1, 0)
  locked_until = 0
end
redis.call('HSET', KEYS[1], 'failures', failures, 'locks', locks, 'locked_until', locked_until)
return 1
";

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: LockoutPolicy = LockoutPolicy {
        threshold: 3,
        base_ms: 60_000,
        max_ms: 3_600_000,
        state_ttl_ms: 86_400_000,
    };

    #[test]
    fn the_threshold_th_failure_engages_a_lock_that_doubles() {
        let mut state = LockoutState::default();
        assert!(matches!(
            state.reserve(0, &POLICY),
            Reservation::Granted {
                engaged_until: None,
                ..
            }
        ));
        assert!(matches!(
            state.reserve(0, &POLICY),
            Reservation::Granted {
                engaged_until: None,
                ..
            }
        ));
        assert_eq!(
            state.reserve(0, &POLICY),
            Reservation::Granted {
                engaged_until: Some(60_000),
                lock_ms: 60_000
            }
        );
        assert_eq!(
            state.reserve(1_000, &POLICY),
            Reservation::Refused {
                remaining_ms: 59_000
            }
        );
        // After the lock, the next failure locks again for twice as long.
        assert_eq!(
            state.reserve(60_000, &POLICY),
            Reservation::Granted {
                engaged_until: Some(180_000),
                lock_ms: 120_000
            }
        );
    }

    #[test]
    fn durations_are_capped_at_an_hour() {
        assert_eq!(lock_duration(1, &POLICY), 60_000);
        assert_eq!(lock_duration(7, &POLICY), 3_600_000);
        assert_eq!(lock_duration(1000, &POLICY), 3_600_000);
    }

    #[test]
    fn releasing_a_correct_attempt_undoes_its_reservation_and_lock() {
        let mut state = LockoutState::default();
        state.reserve(0, &POLICY);
        state.reserve(0, &POLICY);
        let Reservation::Granted { engaged_until, .. } = state.reserve(0, &POLICY) else {
            panic!()
        };
        state.release(engaged_until);
        assert_eq!(
            state,
            LockoutState {
                failures: 2,
                locks: 0,
                locked_until: 0
            }
        );
    }
}
