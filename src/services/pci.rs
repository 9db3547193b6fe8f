//! `PRIVILEGED_POLICY=pci` (docs/API.md §11, PCI DSS 4.0 §8) for staff and admin
//! accounts, beside the lockout (`AbuseControl::reserve_for`) and the enrollment gate
//! (`http::extract`):
//!
//! - password history (8.3.7): a new password may not be any of the last four;
//! - inactive accounts (8.2.6): disabled after `PCI_INACTIVITY_DAYS` without a login.

use std::time::Duration;

use uuid::Uuid;

use super::audit::{AuditEvent, RequestContext, Revocation};
use super::email::EmailTemplates;
use super::error::{ServiceError, ServiceResult};
use super::passwords::{PasswordHashing, WeakPasswordReason};
use super::policy::Policy;
use super::sessions::Sessions;
use crate::crypto::password::StoredPassword;
use crate::domain::{Millis, Role, millis_to_rfc3339, now_millis};
use crate::storage::db::audit::NewAuditRecord;
use crate::storage::db::locks::AdvisoryLock;
use crate::storage::db::password_history;
use crate::storage::db::users::{self, UserRow};
use crate::storage::db::{Conn, Database};

/// PCI DSS 8.3.7: a new password differs from this many previous ones, the current one
/// included. The table keeps the others (one fewer).
pub const PASSWORD_HISTORY: u64 = 4;

/// The password history of privileged accounts under `PRIVILEGED_POLICY=pci`. The rule
/// is per role only because PCI asks it for staff and admin; `applies` is the one place
/// to widen it to every account.
#[derive(Debug, Clone, Copy)]
pub struct PasswordHistory {
    policy: Policy,
}

impl PasswordHistory {
    pub fn new(policy: Policy) -> Self {
        Self { policy }
    }

    fn applies(&self, user: &UserRow) -> bool {
        self.policy.pci_applies_to(user.role)
    }

    /// `422 weak_password` with reason `reused` when the (normalised) `password` is the
    /// current one or one of the last three before it. Each comparison is one Argon2
    /// verification on the bounded hashing pool, so at most four per change.
    pub async fn refuse_reuse(
        &self,
        hashing: &PasswordHashing,
        conn: &impl Conn,
        user: &UserRow,
        password: &str,
    ) -> ServiceResult<()> {
        if !self.applies(user) {
            return Ok(());
        }
        let mut previous = vec![StoredPassword {
            phc: user.password_hash.clone(),
            pepper_id: user.password_pepper_id.clone(),
        }];
        let older = password_history::recent(conn, user.id, PASSWORD_HISTORY - 1).await?;
        previous.extend(older.into_iter().map(|row| StoredPassword {
            phc: row.password_hash,
            pepper_id: row.password_pepper_id,
        }));
        for stored in previous {
            if hashing.verify(password, Some(stored)).await?.valid {
                return Err(ServiceError::WeakPassword(vec![WeakPasswordReason::Reused]));
            }
        }
        Ok(())
    }

    /// The password of `user` (as read before the change) is being replaced: keep its
    /// hash, and only the newest `PASSWORD_HISTORY - 1` of them.
    pub async fn remember(&self, conn: &impl Conn, user: &UserRow) -> ServiceResult<()> {
        if !self.applies(user) {
            return Ok(());
        }
        password_history::push(
            conn,
            user.id,
            &user.password_hash,
            user.password_pepper_id.as_deref(),
            now_millis(),
            PASSWORD_HISTORY - 1,
        )
        .await?;
        Ok(())
    }
}

/// Disables staff and admin accounts without a completed login for `PCI_INACTIVITY_DAYS`
/// (never signed in: since creation). Run by every instance on a schedule and by the
/// CLI's `disable-inactive`: each account is disabled by one conditional UPDATE, and only
/// the run whose UPDATE changed the row audits and emails, so concurrent runs on several
/// instances disable, audit and notify once.
#[derive(Clone)]
pub struct InactiveAccounts {
    db: Database,
    sessions: Sessions,
    templates: EmailTemplates,
    policy: Policy,
    inactivity: Duration,
}

impl InactiveAccounts {
    pub fn new(
        db: Database,
        sessions: Sessions,
        templates: EmailTemplates,
        policy: Policy,
        inactivity: Duration,
    ) -> Self {
        Self {
            db,
            sessions,
            templates,
            policy,
            inactivity,
        }
    }

    /// Whether the policy asks for it (`PRIVILEGED_POLICY=pci`).
    pub fn enabled(&self) -> bool {
        self.policy.pci_applies_to(Role::Staff)
    }

    fn days(&self) -> u64 {
        self.inactivity.as_secs() / 86_400
    }

    /// One pass: returns how many accounts this run disabled.
    #[tracing::instrument(skip_all)]
    pub async fn disable_inactive(&self) -> ServiceResult<u64> {
        if !self.enabled() {
            return Ok(0);
        }
        let now = now_millis();
        let cutoff = now - self.inactivity.as_millis() as i64;
        let candidates =
            users::inactive(self.db.connection(), &[Role::Staff, Role::Admin], cutoff).await?;
        // The system acts: no address or agent, one request id per run to correlate.
        let ctx = RequestContext {
            ip: String::new(),
            user_agent: String::new(),
            request_id: Uuid::new_v4().to_string(),
        };
        let mut disabled = 0;
        for user in candidates {
            if self.disable(&user, cutoff, now, &ctx).await? {
                disabled += 1;
            }
        }
        Ok(disabled)
    }

    async fn disable(
        &self,
        user: &UserRow,
        cutoff: Millis,
        now: Millis,
        ctx: &RequestContext,
    ) -> ServiceResult<bool> {
        let mut uow = self.db.begin().await?;
        // As in the admin API: the last enabled admin stays, or nobody could enable
        // anyone again (an operator would need the database).
        uow.lock(AdvisoryLock::ADMIN_CHANGE).await?;
        if user.role == Role::Admin && users::active_admins(uow.conn()).await? <= 1 {
            tracing::warn!(user_id = %user.id, "inactive, but the last enabled admin: left enabled");
            return Ok(false);
        }
        if !users::disable_if_inactive(uow.conn(), user.id, cutoff, now).await? {
            // Another instance got there first, or the account signed in meanwhile.
            return Ok(false);
        }
        let revoked = self
            .sessions
            .revoke_all_in(&mut uow, user.id, None, Revocation::AccountDisabled, ctx)
            .await?;
        let event = AuditEvent::AccountDisabledInactive {
            inactivity_days: self.days(),
            last_login_at: user.last_login_at.map(millis_to_rfc3339),
            sessions_revoked: revoked,
        };
        uow.audit(NewAuditRecord {
            actor_id: None,
            ..ctx.record(event, Some(user.id))
        });
        let mut recipients: Vec<_> = users::enabled_admins(uow.conn())
            .await?
            .into_iter()
            .map(|admin| admin.email)
            .filter(|email| *email != user.email)
            .collect();
        recipients.push(user.email.clone());
        for to in &recipients {
            uow.email(self.templates.disabled_inactive(
                to,
                &user.email,
                self.days(),
                user.last_login_at,
            ));
        }
        uow.commit().await?;
        self.sessions.refresh_user(user.id).await?;
        tracing::info!(user_id = %user.id, "inactive privileged account disabled");
        Ok(true)
    }
}
