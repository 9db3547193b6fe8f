//! Abuse control shared by every instance through the store (docs/API.md §4): a per-IP rate
//! limit on the pre-authentication routes and a per-account lockout.

use super::audit::{AuditEvent, RepeatedRefusal, RequestContext};
use super::email::{EmailTemplates, Notice};
use super::error::{ServiceError, ServiceResult};
use super::policy::Policy;
use super::sessions::CurrentSession;
use crate::configuration::{PCI_MAX_LOCKOUT_THRESHOLD, RateLimit, Settings};
use crate::domain::{EmailAddress, now_millis};
use crate::storage::db::users::UserRow;
use crate::storage::db::{Database, UnitOfWork};
use crate::storage::store::{LockoutPolicy, Reservation, Store};

/// How long a quiet account's failure history (and lock level) is remembered.
const LOCKOUT_MEMORY_MS: i64 = 24 * 3_600_000;

/// A granted login attempt. Unless the caller completes or releases it, it stays counted
/// as a failure.
#[must_use]
pub struct Attempt {
    key: String,
    engaged_until: Option<i64>,
    lock_ms: i64,
}

impl Attempt {
    /// When this attempt turns out wrong: the lock it engaged (seconds), if any.
    pub fn locks_for_secs(&self) -> Option<u64> {
        self.engaged_until.map(|_| (self.lock_ms / 1000) as u64)
    }
}

#[derive(Clone)]
pub struct AbuseControl {
    store: Store,
    db: Database,
    rate: RateLimit,
    enrollment: RateLimit,
    policy: LockoutPolicy,
    /// Staff and admin under `PRIVILEGED_POLICY=pci` (PCI DSS 8.3.4): at most 10
    /// failures, then at least `PCI_LOCKOUT_SECONDS`.
    privileged: LockoutPolicy,
    roles: Policy,
}

/// The window in which repeated refusals on one session are aggregated.
const REPEAT_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// 1, 10, 100, 1000, …: the repeats worth an audit record.
fn is_logged_repeat(count: u64) -> bool {
    let mut n = count;
    while n >= 10 && n.is_multiple_of(10) {
        n /= 10;
    }
    n == 1
}

fn ceil_secs(ms: i64) -> u64 {
    ((ms.max(0) + 999) / 1000).max(1) as u64
}

impl AbuseControl {
    pub fn new(store: Store, db: Database, settings: &Settings) -> Self {
        let policy = LockoutPolicy {
            threshold: settings.lockout_threshold.max(1),
            base_ms: settings.lockout_base.as_millis() as i64,
            max_ms: settings.lockout_max.as_millis() as i64,
            state_ttl_ms: LOCKOUT_MEMORY_MS,
        };
        Self {
            store,
            db,
            rate: settings.rate_limit_auth,
            enrollment: settings.rate_limit_enrollment,
            privileged: pci_lockout(&policy, settings.pci_lockout),
            policy,
            roles: Policy::new(settings),
        }
    }

    /// One request from `ctx.ip` to a pre-authentication route. The first refusal in a
    /// window is audited; later ones only counted, so a flood cannot flood the audit log.
    pub async fn check_rate(&self, ctx: &RequestContext) -> ServiceResult<()> {
        let hit = self
            .store
            .hit(&format!("rate:auth:{}", ctx.ip), self.rate.window)
            .await?;
        if hit.count <= u64::from(self.rate.max) {
            return Ok(());
        }
        metrics::counter!("rate_limit_hits_total", "scope" => "auth").increment(1);
        if hit.count == u64::from(self.rate.max) + 1 {
            let event = AuditEvent::RateLimitExceeded {
                limit: self.rate.max,
                window_seconds: self.rate.window.as_secs(),
            };
            self.db.audit_only(ctx.record(event, None)).await?;
        }
        Err(ServiceError::RateLimited {
            retry_after_secs: ceil_secs(hit.resets_in.as_millis() as i64),
        })
    }

    /// Starting an enrollment writes (a pending secret, a ceremony, an audit record):
    /// `RATE_LIMIT_ENROLLMENT` per session, then `429 rate_limited`, so one session
    /// cannot fill the store or the audit trail.
    pub async fn limit_enrollment(&self, session_id: uuid::Uuid) -> ServiceResult<()> {
        let hit = self
            .store
            .hit(
                &format!("rate:session:enroll:{session_id}"),
                self.enrollment.window,
            )
            .await?;
        if hit.count <= u64::from(self.enrollment.max) {
            return Ok(());
        }
        metrics::counter!("rate_limit_hits_total", "scope" => "session").increment(1);
        Err(ServiceError::RateLimited {
            retry_after_secs: ceil_secs(hit.resets_in.as_millis() as i64),
        })
    }

    /// Audits a refusal that can repeat on one session (`csrf.failure`,
    /// `step_up.required`) on a log scale: the first in each minute is written, then the
    /// 10th, 100th, … with the count, so a flood costs a handful of rows instead of one
    /// per request.
    pub async fn audit_repeat(
        &self,
        session: &CurrentSession,
        refusal: RepeatedRefusal,
        ctx: &RequestContext,
    ) -> ServiceResult<()> {
        let hit = self
            .store
            .hit(
                &format!("audit:repeat:{}:{}", refusal.name(), session.id),
                REPEAT_WINDOW,
            )
            .await?;
        if is_logged_repeat(hit.count) {
            let event = AuditEvent::Refused {
                session_id: session.id,
                refusal,
                repeats: hit.count,
            };
            self.db
                .audit_only(ctx.record(event, Some(session.user_id)))
                .await?;
        }
        Ok(())
    }

    fn lockout_key(email: &EmailAddress) -> String {
        format!(
            "lockout:{}",
            crate::crypto::sha256_hex(email.as_str().as_bytes())
        )
    }

    /// Reserves one attempt on `email`'s account (existing or not); `AccountLocked` while
    /// a lock holds, in which case nothing may be evaluated.
    pub async fn reserve(&self, email: &EmailAddress) -> ServiceResult<Attempt> {
        self.reserve_under(email, &self.policy).await
    }

    /// `reserve` for an attempt on a known account (`user`, when the email has one): its
    /// role picks the policy — staff and admin under `PRIVILEGED_POLICY=pci` lock sooner
    /// and longer (PCI DSS 8.3.4). Unknown emails keep the default policy.
    pub async fn reserve_for(
        &self,
        email: &EmailAddress,
        user: Option<&UserRow>,
    ) -> ServiceResult<Attempt> {
        let policy = match user {
            Some(user) if self.roles.pci_applies_to(user.role) => &self.privileged,
            _ => &self.policy,
        };
        self.reserve_under(email, policy).await
    }

    async fn reserve_under(
        &self,
        email: &EmailAddress,
        policy: &LockoutPolicy,
    ) -> ServiceResult<Attempt> {
        let key = Self::lockout_key(email);
        match self
            .store
            .lockout_reserve(&key, now_millis(), policy)
            .await?
        {
            Reservation::Refused { remaining_ms } => Err(ServiceError::AccountLocked {
                retry_after_secs: ceil_secs(remaining_ms),
            }),
            Reservation::Granted {
                engaged_until,
                lock_ms,
            } => Ok(Attempt {
                key,
                engaged_until,
                lock_ms,
            }),
        }
    }

    /// The attempt was correct but the login is not complete (second factor pending):
    /// it must neither count as a failure nor reset the count.
    pub async fn release(&self, attempt: Attempt) -> ServiceResult<()> {
        self.store
            .lockout_release(&attempt.key, attempt.engaged_until)
            .await?;
        Ok(())
    }

    /// After a failed attempt: when it engaged a lock, audit the lock and tell the owner
    /// (once per lock). The caller records the failure event itself.
    pub fn note_failure(
        &self,
        uow: &mut UnitOfWork,
        user: Option<&UserRow>,
        attempt: &Attempt,
        templates: &EmailTemplates,
        ctx: &RequestContext,
    ) {
        let Some(seconds) = attempt.locks_for_secs() else {
            return;
        };
        metrics::counter!("account_lockouts_total").increment(1);
        uow.audit(ctx.record(
            AuditEvent::LoginLocked {
                lock_seconds: seconds,
            },
            user.map(|u| u.id),
        ));
        if let Some(user) = user {
            uow.email(templates.notice(
                &user.email,
                Notice::AccountLocked {
                    lock_seconds: seconds,
                },
            ));
        }
    }

    /// A completed login, a password reset or a staff unlock: forget the failures.
    pub async fn clear(&self, email: &EmailAddress) -> ServiceResult<()> {
        self.store.delete(&Self::lockout_key(email)).await?;
        Ok(())
    }
}

/// The PCI DSS 8.3.4 lockout: the default threshold capped at 10, the first lock at least
/// `PCI_LOCKOUT_SECONDS` (30 minutes or more) and no later one shorter. The failure
/// history is remembered at least as long as the longest lock.
fn pci_lockout(default: &LockoutPolicy, lock: std::time::Duration) -> LockoutPolicy {
    let base_ms = lock.as_millis() as i64;
    let max_ms = default.max_ms.max(base_ms);
    LockoutPolicy {
        threshold: default.threshold.min(PCI_MAX_LOCKOUT_THRESHOLD),
        base_ms,
        max_ms,
        state_ttl_ms: default.state_ttl_ms.max(max_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::is_logged_repeat;

    #[test]
    fn repeated_refusals_are_logged_on_a_log_scale() {
        let logged: Vec<u64> = (1..=2000).filter(|n| is_logged_repeat(*n)).collect();
        assert_eq!(logged, vec![1, 10, 100, 1000]);
    }

    #[test]
    fn the_pci_lockout_caps_the_threshold_and_never_locks_shorter_than_30_minutes() {
        use crate::storage::store::lockout::lock_duration;
        let default = super::LockoutPolicy {
            threshold: 20,
            base_ms: 60_000,
            max_ms: 3_600_000,
            state_ttl_ms: super::LOCKOUT_MEMORY_MS,
        };
        let pci = super::pci_lockout(&default, std::time::Duration::from_secs(1800));
        assert_eq!(pci.threshold, 10);
        for locks in 1..=40 {
            assert!(lock_duration(locks, &pci) >= 1_800_000);
        }
        assert_eq!(lock_duration(1, &pci), 1_800_000);
        assert_eq!(lock_duration(5, &pci), 3_600_000);
    }
}
