//! The PSD2 SCA login (`AUTH_POLICY=psd2`, docs/API.md §11; RTS Art. 4): the password
//! and a one-time code (TOTP or recovery code) arrive in one `POST /auth/login`, and the
//! answer never says which of them was wrong. There is no `mfa_required` step, because a
//! pending session would itself confirm the password.
//!
//! Every refused login — unknown email, wrong password, wrong code, both wrong — runs the
//! same work (Argon2 against the real or a dummy hash, the same queries, one TOTP
//! computation, one audit record) and answers `401 invalid_credentials`, counted once
//! toward the lockout. Only the audit trail records which factor failed.
//!
//! An account without a second factor cannot authenticate strongly: its password (its
//! only secret) opens a session that may do nothing but enroll one (`enrollment_pending`
//! in the HTTP layer answers `403 mfa_enrollment_required` elsewhere).

use uuid::Uuid;

use super::{Accounts, CompletedLogin, LoginOutcome};
use crate::domain::{EmailAddress, now_millis};
use crate::services::abuse::Attempt;
use crate::services::audit::{FactorStep, LoginFailure, LoginMethod, RequestContext};
use crate::services::email::Notice;
use crate::services::error::{ServiceError, ServiceResult};
use crate::services::mfa::{Factor, Mfa};
use crate::storage::db::mfa as factors_db;
use crate::storage::db::users::{self, UserRow};

/// What the login's first part established.
pub(super) struct ScaLogin<'a> {
    pub email: &'a EmailAddress,
    /// The account, only when the password was right.
    pub user: Option<UserRow>,
    /// The normalised password (for a re-hash).
    pub password: &'a str,
    pub needs_rehash: bool,
    pub code: Option<&'a str>,
}

impl Accounts {
    pub(super) async fn sca_login(
        &self,
        mfa: &Mfa,
        login: ScaLogin<'_>,
        attempt: Attempt,
        ctx: &RequestContext,
    ) -> ServiceResult<LoginOutcome> {
        let mut uow = self.db.begin().await?;
        let user_id = login.user.as_ref().map_or(Uuid::nil(), |u| u.id);
        let factors = factors_db::factors(uow.conn(), user_id).await?;
        // Redeemed inside `uow`: spent only if this login commits.
        let code = mfa
            .redeem_login_code(&mut uow, login.user.as_ref(), login.code)
            .await?;
        let (user, factor) = match (login.user, code) {
            (Some(user), Ok(factor)) => (user, Some(factor)),
            (Some(user), Err(_)) if !factors.any_second_factor() => (user, None),
            (user, _) => {
                drop(uow);
                let reason = match user {
                    Some(_) => LoginFailure::InvalidSecondFactor,
                    None => LoginFailure::InvalidCredentials,
                };
                // The owner, for the audit record and a lock notice, whichever factor failed.
                let owner = users::find_by_email(self.db.connection(), login.email).await?;
                self.audit_failure(owner.as_ref(), reason, Some(&attempt), ctx)
                    .await?;
                return Err(ServiceError::InvalidCredentials);
            }
        };
        // Both factors (or the only one) were right: now a disabled account may be told.
        let attempt = match self.admit(&user, attempt, ctx).await {
            Ok(attempt) => attempt,
            Err(refused) => {
                drop(uow);
                return Err(refused);
            }
        };
        let completed = match factor {
            Some(factor) => {
                if factor == Factor::RecoveryCode {
                    uow.email(self.templates.notice(
                        &user.email,
                        Notice::RecoveryCodeUsed {
                            left: factors.recovery_codes_left.saturating_sub(1),
                        },
                    ));
                }
                CompletedLogin {
                    method: LoginMethod::PasswordAnd(factor),
                    mfa_verified: Some((now_millis(), factor.method())),
                    factor_used: Some((factor, FactorStep::ScaLogin)),
                }
            }
            None => CompletedLogin {
                method: LoginMethod::Password { rehashed: false },
                mfa_verified: None,
                factor_used: None,
            },
        };
        let user_id = user.id;
        let factors = factors_db::factors(uow.conn(), user.id).await?;
        let outcome = self
            .complete_login(uow, user, factors, completed, attempt, ctx)
            .await?;
        // Re-hashed only now: an Argon2 run before the verdict would take longer exactly
        // when the password was right, telling it apart by timing.
        if let Some(fresh) = self
            .rehash_if_needed(login.password, login.needs_rehash)
            .await?
        {
            let mut uow = self.db.begin().await?;
            Self::save_rehash(&mut uow, user_id, Some(fresh)).await?;
            uow.commit().await?;
        }
        Ok(outcome)
    }
}
