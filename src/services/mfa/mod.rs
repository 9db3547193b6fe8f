//! Second factors (docs/API.md §2–§4): TOTP, recovery codes and passkeys, the MFA-pending
//! login step and step-up. One service, one file per factor:
//! `totp` (TOTP and recovery codes) and `passkeys` (WebAuthn).
//!
//! Every second-factor check follows the same state machine:
//! pending session + correct factor → session rotated to active (login complete);
//! active session + correct factor → `mfa_verified_at` refreshed (step-up);
//! wrong factor → counted toward the account lockout, audited.

pub mod attestation;
mod passkeys;
mod sca;
pub mod totp;

use secrecy::ExposeSecret;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;
use webauthn_rs::Webauthn;

pub use self::attestation::{PasskeyPolicy, PasskeyRefusal};
pub use self::passkeys::{CeremonyStart, MAX_CEREMONY_ID_LEN, MAX_NAME_CHARS, PasskeyView};
pub use self::totp::TotpSetup;
use super::abuse::{AbuseControl, Attempt};
use super::accounts::Account;
use super::audit::{
    AuditEvent, CodeFailure, FactorStep, LoginFailure, LoginMethod, RepeatedRefusal, RequestContext,
};
use super::email::{EmailTemplates, Notice};
use super::error::{ServiceError, ServiceResult};
use super::login::LoginCompletion;
use super::new_device::NewDeviceAlerts;
use super::sessions::{CurrentSession, IssuedSession, SessionState, Sessions};
use crate::configuration::Settings;
use crate::crypto::secrets::SecretBox;
use crate::domain::{EnrolledFactor, Factors, MfaMethod, now_millis};
use crate::storage::db::mfa as factors_db;
use crate::storage::db::users::{self, UserRow};
use crate::storage::db::{Database, UnitOfWork};
use crate::storage::store::Store;

const RECOVERY_CODES: usize = 10;
/// 16 characters of base32 (80 bits): too many to guess, short enough to type.
pub const RECOVERY_CODE_LEN: usize = 16;
const RECOVERY_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";

/// What a correct second factor did.
// One short-lived value per request: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum MfaOutcome {
    /// A pending session became active (a login completed).
    LoginCompleted {
        account: Account,
        session: IssuedSession,
    },
    /// An active session's `mfa_verified_at` was refreshed.
    StepUp,
}

/// Which second factor was used (audit names and login metadata).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factor {
    Totp,
    RecoveryCode,
    Passkey,
}

impl Factor {
    /// As audit metadata and `login.success`'s `method` name it.
    pub fn name(self) -> &'static str {
        match self {
            Factor::Totp => "totp",
            Factor::RecoveryCode => "recovery_code",
            Factor::Passkey => "webauthn",
        }
    }

    pub(crate) fn method(self) -> MfaMethod {
        match self {
            Factor::Totp => MfaMethod::Totp,
            Factor::RecoveryCode => MfaMethod::RecoveryCode,
            Factor::Passkey => MfaMethod::Webauthn,
        }
    }
}

/// The methods a user can use now, in docs/API.md's order.
pub fn methods(factors: &Factors) -> Vec<&'static str> {
    let mut methods = Vec::new();
    if factors.totp {
        methods.push("totp");
    }
    if factors.webauthn_credentials > 0 {
        methods.push("webauthn");
    }
    if factors.recovery_codes_left > 0 {
        methods.push("recovery_code");
    }
    methods
}

/// The second factors a login after a password reset lists (see `Account::of`).
#[derive(Debug, Clone)]
pub struct FactorReview {
    /// When the password was reset.
    pub since: crate::domain::Millis,
    pub factors: Vec<EnrolledFactor>,
}

// Cheap to clone (handles and small values): the transaction service keeps one.
#[derive(Clone)]
pub struct Mfa {
    db: Database,
    store: Store,
    sessions: Sessions,
    abuse: AbuseControl,
    secrets: SecretBox,
    templates: EmailTemplates,
    webauthn: Arc<Webauthn>,
    /// Which passkeys may register and be used (docs/API.md §11).
    policy: Arc<PasskeyPolicy>,
    issuer: String,
    step_up_max_age: Duration,
    /// Derives the decoy passkey ids answered for emails without passkeys.
    decoy_key: [u8; 32],
    /// What every completed login writes (`services::login`).
    completion: LoginCompletion,
}

impl Mfa {
    pub fn new(
        settings: &Settings,
        db: Database,
        store: Store,
        sessions: Sessions,
        abuse: AbuseControl,
        templates: EmailTemplates,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            webauthn: Arc::new(passkeys::build_webauthn(settings)?),
            policy: Arc::new(PasskeyPolicy::load(&settings.passkey_policy)?),
            secrets: SecretBox::new(
                settings.encryption_key.expose_secret(),
                &crate::configuration::exposed(&settings.old_encryption_keys),
            ),
            issuer: settings.rp_name.replace(':', " "),
            decoy_key: crate::crypto::derive_key(
                settings.encryption_key.expose_secret(),
                b"passkey-decoy-ids",
            ),
            step_up_max_age: settings.session.step_up_max_age,
            completion: LoginCompletion::new(
                abuse.clone(),
                NewDeviceAlerts::new(settings, templates.clone()),
            ),
            db,
            store,
            sessions,
            abuse,
            templates,
        })
    }

    pub fn secrets(&self) -> &SecretBox {
        &self.secrets
    }

    pub async fn factors(&self, user_id: Uuid) -> ServiceResult<Factors> {
        Ok(factors_db::factors(self.db.connection(), user_id).await?)
    }

    /// A login just completed (committed): the account as its owner now sees it.
    async fn login_completed(
        &self,
        user: UserRow,
        session: IssuedSession,
    ) -> ServiceResult<MfaOutcome> {
        let factors = self.factors(user.id).await?;
        Ok(MfaOutcome::LoginCompleted {
            account: Account::of(self.db.connection(), user, factors).await?,
            session,
        })
    }

    async fn user(&self, user_id: Uuid) -> ServiceResult<UserRow> {
        users::find_by_id(self.db.connection(), user_id)
            .await?
            .ok_or(ServiceError::NotAuthenticated)
    }

    /// Whether the session's second factor was proven within `STEP_UP_MAX_AGE_SECONDS`.
    /// `privileged` (staff and admin routes) does not count the enrollment of a first
    /// factor: a stolen session that sets up TOTP must not become an admin's step-up.
    pub fn is_fresh(&self, session: &CurrentSession, privileged: bool) -> bool {
        let max_age = self.step_up_max_age.as_millis() as i64;
        let recent = session
            .mfa_verified_at
            .is_some_and(|at| now_millis() - at <= max_age);
        let counts = !privileged || session.mfa_method.is_some_and(MfaMethod::is_verification);
        recent && counts
    }

    /// The step-up rule (docs/API.md §7 order, after session, CSRF and role): a user with no
    /// second factor gets `mfa_enrollment_required`; one whose last verification is older
    /// than `STEP_UP_MAX_AGE_SECONDS` gets `mfa_step_up_required` (audited).
    #[tracing::instrument(skip_all, fields(user_id = %session.user_id))]
    pub async fn require_fresh(
        &self,
        session: &CurrentSession,
        privileged: bool,
        ctx: &RequestContext,
    ) -> ServiceResult<()> {
        // From the session's snapshot: any factor change refreshes it (`refresh_user`).
        let factors = session.factors;
        if !factors.any_second_factor() {
            return Err(ServiceError::MfaEnrollmentRequired);
        }
        if self.is_fresh(session, privileged) {
            return Ok(());
        }
        // Audited once per minute per session, then on the 10th, 100th, … repeat.
        self.abuse
            .audit_repeat(session, RepeatedRefusal::StepUp, ctx)
            .await?;
        Err(ServiceError::StepUpRequired {
            max_age_secs: self.step_up_max_age.as_secs(),
            methods: methods(&factors),
        })
    }

    /// Starting an enrollment writes: limited per session (`RATE_LIMIT_ENROLLMENT`).
    async fn throttle_enrollment(&self, session: &CurrentSession) -> ServiceResult<()> {
        self.abuse.limit_enrollment(session.id).await
    }

    /// `POST /auth/step-up/confirm`: the guard already proved freshness; record it.
    #[tracing::instrument(skip_all, fields(user_id = %session.user_id))]
    pub async fn confirm_step_up(
        &self,
        session: &CurrentSession,
        ctx: &RequestContext,
    ) -> ServiceResult<()> {
        let event = AuditEvent::StepUpConfirmed {
            session_id: session.id,
        };
        self.db
            .audit_only(ctx.record(event, Some(session.user_id)))
            .await?;
        Ok(())
    }

    /// Reserves a lockout attempt for a second-factor check on `user`'s account: while
    /// the account is locked, no code is even looked at (`429 account_locked`).
    async fn reserve(&self, user: &UserRow) -> ServiceResult<Attempt> {
        self.abuse.reserve_for(&user.email, Some(user)).await
    }

    /// A correct second factor on `session`: finish the login or refresh the step-up, in
    /// the unit of work that already holds the factor's own change.
    async fn succeed(
        &self,
        mut uow: UnitOfWork,
        session: &CurrentSession,
        user: UserRow,
        factor: Factor,
        attempt: Attempt,
        ctx: &RequestContext,
    ) -> ServiceResult<MfaOutcome> {
        uow.audit(ctx.record(
            AuditEvent::FactorUsed {
                factor,
                session_id: session.id,
                step: FactorStep::Session(session.state),
            },
            Some(user.id),
        ));
        match session.state {
            SessionState::MfaPending => {
                if user.disabled {
                    // Disabling ends the sessions, so only a race gets here. The factor was
                    // right: not a guessing failure, but no login either.
                    drop(uow);
                    self.abuse.release(attempt).await?;
                    let event = AuditEvent::LoginFailure {
                        reason: LoginFailure::AccountDisabled,
                        by_passkey: false,
                    };
                    self.db.audit_only(ctx.record(event, Some(user.id))).await?;
                    return Err(ServiceError::AccountDisabled);
                }
                let issued = self
                    .sessions
                    .upgrade(&mut uow, session, factor.method(), ctx)
                    .await?;
                let method = LoginMethod::PasswordAnd(factor);
                self.completion
                    .commit(uow, &user, issued.id, method, Some(attempt), ctx)
                    .await?;
                self.login_completed(user, issued).await
            }
            SessionState::Active => {
                self.sessions
                    .mark_mfa_verified(&mut uow, session, factor.method())
                    .await?;
                uow.audit(ctx.record(
                    AuditEvent::StepUpSuccess {
                        session_id: session.id,
                        factor,
                    },
                    Some(user.id),
                ));
                uow.commit().await?;
                self.sessions.refresh_cache(&session.token_hash).await?;
                self.abuse.release(attempt).await?;
                Ok(MfaOutcome::StepUp)
            }
        }
    }

    /// A wrong second factor: audited, counted (the reservation stays), maybe a lock.
    async fn fail(
        &self,
        user: &UserRow,
        factor: Factor,
        reason: CodeFailure,
        attempt: &Attempt,
        ctx: &RequestContext,
        extra_notice: Option<Notice>,
    ) -> ServiceResult<()> {
        let mut uow = self.db.begin().await?;
        uow.audit(ctx.record(AuditEvent::CodeFailure { factor, reason }, Some(user.id)));
        if let Some(notice) = extra_notice {
            uow.email(self.templates.notice(&user.email, notice));
        }
        self.abuse
            .note_failure(&mut uow, Some(user), attempt, &self.templates, ctx);
        uow.commit().await?;
        Ok(())
    }

    /// Issues a fresh set of recovery codes inside `uow` and returns them (shown once).
    async fn issue_recovery_codes(
        &self,
        uow: &mut UnitOfWork,
        user_id: Uuid,
    ) -> ServiceResult<Vec<String>> {
        let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| new_recovery_code()).collect();
        let hashes: Vec<String> = codes.iter().map(|c| recovery_code_hash(c)).collect();
        factors_db::replace_recovery_codes(uow.conn(), user_id, &hashes, now_millis()).await?;
        Ok(codes)
    }

    /// After a factor is removed: recovery codes only live while a second factor does.
    async fn drop_recovery_codes_if_last(
        &self,
        uow: &mut UnitOfWork,
        user_id: Uuid,
    ) -> ServiceResult<()> {
        if !factors_db::factors(uow.conn(), user_id)
            .await?
            .any_second_factor()
        {
            factors_db::delete_recovery_codes(uow.conn(), user_id).await?;
        }
        Ok(())
    }

    /// `POST /auth/mfa/recovery/regenerate` (fresh MFA): a new set replaces the old.
    #[tracing::instrument(skip_all, fields(user_id = %session.user_id))]
    pub async fn regenerate_recovery_codes(
        &self,
        session: &CurrentSession,
        ctx: &RequestContext,
    ) -> ServiceResult<Vec<String>> {
        let mut uow = self.db.begin().await?;
        let codes = self.issue_recovery_codes(&mut uow, session.user_id).await?;
        uow.audit(ctx.record(
            AuditEvent::MfaRecoveryCodesRegenerated { count: codes.len() },
            Some(session.user_id),
        ));
        uow.email(
            self.templates
                .notice(&session.email, Notice::RecoveryCodesRegenerated),
        );
        uow.commit().await?;
        self.sessions.refresh_user(session.user_id).await?;
        Ok(codes)
    }

    /// `POST /auth/mfa/recovery/verify`: like TOTP verify, each code once.
    #[tracing::instrument(skip_all, fields(user_id = %session.user_id))]
    pub async fn verify_recovery_code(
        &self,
        session: &CurrentSession,
        code: &str,
        ctx: &RequestContext,
    ) -> ServiceResult<MfaOutcome> {
        let user = self.user(session.user_id).await?;
        let factors = self.factors(user.id).await?;
        if factors.recovery_codes_left == 0 {
            return Err(ServiceError::MfaMethodNotEnrolled);
        }
        let attempt = self.reserve(&user).await?;
        let normalized = normalize_recovery_code(code);
        let mut uow = self.db.begin().await?;
        let redeemed = match &normalized {
            Some(code) => {
                factors_db::redeem_recovery_code(
                    uow.conn(),
                    user.id,
                    &recovery_code_hash(code),
                    now_millis(),
                )
                .await?
            }
            None => false,
        };
        if !redeemed {
            drop(uow);
            self.fail(
                &user,
                Factor::RecoveryCode,
                CodeFailure::WrongRecoveryCode,
                &attempt,
                ctx,
                None,
            )
            .await?;
            return Err(ServiceError::InvalidMfaCode);
        }
        uow.email(self.templates.notice(
            &user.email,
            Notice::RecoveryCodeUsed {
                left: factors.recovery_codes_left - 1,
            },
        ));
        self.succeed(uow, session, user, Factor::RecoveryCode, attempt, ctx)
            .await
    }
}

fn new_recovery_code() -> String {
    let mut code = String::with_capacity(RECOVERY_CODE_LEN + RECOVERY_CODE_LEN / 4);
    for (i, byte) in crate::crypto::random_bytes::<RECOVERY_CODE_LEN>()
        .iter()
        .enumerate()
    {
        if i > 0 && i % 4 == 0 {
            code.push('-');
        }
        code.push(char::from(
            RECOVERY_ALPHABET[usize::from(*byte) % RECOVERY_ALPHABET.len()],
        ));
    }
    code
}

/// Case, spaces and dashes do not matter when a code is typed back.
fn normalize_recovery_code(code: &str) -> Option<String> {
    let normalized: String = code
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (normalized.len() == RECOVERY_CODE_LEN
        && normalized.bytes().all(|b| RECOVERY_ALPHABET.contains(&b)))
    .then_some(normalized)
}

/// Recovery codes carry 80 random bits, so a plain SHA-256 is enough — and, unlike a
/// keyed hash, survives a rotation of the master key.
fn recovery_code_hash(code: &str) -> String {
    let normalized = normalize_recovery_code(code).unwrap_or_default();
    crate::crypto::sha256_hex(format!("recovery-code:{normalized}").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_are_grouped_and_forgiving_when_typed_back() {
        let code = new_recovery_code();
        assert_eq!(code.len(), 19);
        assert_eq!(code.matches('-').count(), 3);
        let typed = code.to_uppercase().replace('-', " ");
        assert_eq!(recovery_code_hash(&typed), recovery_code_hash(&code));
        assert!(normalize_recovery_code("too-short").is_none());
        assert!(
            normalize_recovery_code("0000-0000-0000-0000").is_none(),
            "0 is not in the alphabet"
        );
    }

    #[test]
    fn methods_list_only_what_is_enrolled() {
        let factors = Factors {
            totp: true,
            webauthn_credentials: 0,
            recovery_codes_left: 3,
        };
        assert_eq!(methods(&factors), vec!["totp", "recovery_code"]);
        assert!(methods(&Factors::default()).is_empty());
    }
}
