//! The admin API's use cases (docs/API.md §3): listing users, changing roles and status,
//! unlocking accounts.

use serde::Serialize;
use uuid::Uuid;

use super::abuse::AbuseControl;
use super::audit::{AuditEvent, Change, RequestContext, Revocation};
use super::error::{ServiceError, ServiceResult};
use super::sessions::{CurrentSession, Sessions};
use crate::domain::{Page, Role, millis_to_rfc3339, now_millis};
use crate::storage::db::Database;
use crate::storage::db::locks::AdvisoryLock;
use crate::storage::db::sessions as session_rows;
/// The user list's query, as storage runs it.
pub use crate::storage::db::users::UserFilter;
use crate::storage::db::users::{self, UserRow};

/// A user as the admin API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AdminUserView {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
    pub email_verified: bool,
    pub disabled: bool,
    pub created_at: String,
}

impl From<&UserRow> for AdminUserView {
    fn from(user: &UserRow) -> Self {
        Self {
            id: user.id,
            email: user.email.to_string(),
            role: user.role,
            email_verified: user.email_verified_at.is_some(),
            disabled: user.disabled,
            created_at: millis_to_rfc3339(user.created_at),
        }
    }
}

/// What an admin asked to change.
#[derive(Debug, Default, Clone, Copy)]
pub struct UserChange {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
}

pub struct Admin {
    db: Database,
    sessions: Sessions,
    abuse: AbuseControl,
}

impl Admin {
    pub fn new(db: Database, sessions: Sessions, abuse: AbuseControl) -> Self {
        Self {
            db,
            sessions,
            abuse,
        }
    }

    /// A page of users in creation order, and the cursor of the next page.
    #[tracing::instrument(skip_all)]
    pub async fn users(&self, filter: UserFilter) -> ServiceResult<Page<AdminUserView>> {
        let page = users::page(self.db.connection(), &filter).await?;
        Ok(page.map(|user| AdminUserView::from(&user)))
    }

    /// Changes a user's role and/or status. Disabling revokes every session of theirs;
    /// a role change applies at their sessions' next request. The last active admin can
    /// be neither demoted nor disabled.
    #[tracing::instrument(skip_all, fields(admin_id = %admin.user_id))]
    pub async fn update_user(
        &self,
        admin: &CurrentSession,
        target: Uuid,
        change: UserChange,
        ctx: &RequestContext,
    ) -> ServiceResult<AdminUserView> {
        let mut uow = self.db.begin().await?;
        uow.lock(AdvisoryLock::ADMIN_CHANGE).await?;
        let user = users::find_by_id(uow.conn(), target)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let old_role = user.role;
        let role = change.role.unwrap_or(old_role);
        let disabled = change.disabled.unwrap_or(user.disabled);
        let loses_admin =
            old_role == Role::Admin && !user.disabled && (role != Role::Admin || disabled);
        if loses_admin && users::active_admins(uow.conn()).await? <= 1 {
            return Err(ServiceError::LastAdmin);
        }
        users::set_role_and_status(uow.conn(), user.id, role, disabled, now_millis()).await?;
        let revoked = if disabled && !user.disabled {
            self.sessions
                .revoke_all_in(&mut uow, user.id, None, Revocation::AccountDisabled, ctx)
                .await?
        } else {
            0
        };
        if role != old_role {
            // A privilege change rotates the session (docs/API.md §2): each of the user's
            // sessions gets a new token at its next request.
            session_rows::require_rotation(uow.conn(), user.id).await?;
        }
        let event = AuditEvent::AdminUserUpdated {
            role: Change {
                from: old_role,
                to: role,
            },
            disabled: Change {
                from: user.disabled,
                to: disabled,
            },
            sessions_revoked: revoked,
        };
        uow.audit(ctx.record_for(event, user.id, admin.user_id));
        uow.commit().await?;
        self.sessions.refresh_user(user.id).await?;
        let updated = users::find_by_id(self.db.connection(), user.id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        Ok(AdminUserView::from(&updated))
    }

    /// Clears the lockout of a user's account.
    #[tracing::instrument(skip_all)]
    pub async fn unlock(
        &self,
        staff: &CurrentSession,
        target: Uuid,
        ctx: &RequestContext,
    ) -> ServiceResult<()> {
        let user = users::find_by_id(self.db.connection(), target)
            .await?
            .ok_or(ServiceError::NotFound)?;
        self.abuse.clear(&user.email).await?;
        let record = ctx.record_for(AuditEvent::AdminUserUnlocked, user.id, staff.user_id);
        self.db.audit_only(record).await?;
        Ok(())
    }
}
