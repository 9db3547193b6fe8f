//! The last step every login shares, whichever factors it took: password (with the code
//! under `AUTH_POLICY=psd2`), password then a second factor, or a passkey alone.
//!
//! One place, so a rule about completed logins cannot be applied on one path and missed on
//! another: the factor review ends, the account counts as used (`PRIVILEGED_POLICY=pci`
//! disables privileged accounts that are not), `login.success` is audited, the device is
//! recorded (and its owner alerted when it is new), and — only after the commit — the
//! failure count is reset (docs/API.md §7: only a completed login does that).

use uuid::Uuid;

use super::ServiceResult;
use super::abuse::{AbuseControl, Attempt};
use super::audit::{AuditEvent, LoginMethod, RequestContext};
use super::new_device::NewDeviceAlerts;
use crate::domain::now_millis;
use crate::storage::db::UnitOfWork;
use crate::storage::db::users::{self, UserRow};

#[derive(Clone)]
pub struct LoginCompletion {
    abuse: AbuseControl,
    new_devices: NewDeviceAlerts,
}

impl LoginCompletion {
    pub fn new(abuse: AbuseControl, new_devices: NewDeviceAlerts) -> Self {
        Self { abuse, new_devices }
    }

    /// Completes the login of `user` as session `session_id` in `uow` (which already holds
    /// the session and any factor's own change) and commits it. `attempt` is the lockout
    /// reservation the login held, if any: it ends with the cleared failure count.
    pub async fn commit(
        &self,
        mut uow: UnitOfWork,
        user: &UserRow,
        session_id: Uuid,
        method: LoginMethod,
        attempt: Option<Attempt>,
        ctx: &RequestContext,
    ) -> ServiceResult<()> {
        if user.factor_review_since.is_some() {
            users::set_factor_review(uow.conn(), user.id, None).await?;
        }
        users::mark_login(uow.conn(), user.id, now_millis()).await?;
        uow.audit(ctx.record(
            AuditEvent::LoginSuccess { session_id, method },
            Some(user.id),
        ));
        self.new_devices.record(&mut uow, user, ctx).await?;
        uow.commit().await?;
        self.abuse.clear(&user.email).await?;
        drop(attempt);
        Ok(())
    }
}
