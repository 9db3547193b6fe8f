//! Account use cases: registration, email verification, password login, user creation.
//! The PSD2 SCA login (`AUTH_POLICY=psd2`) is in `sca`.

mod sca;

use super::abuse::{AbuseControl, Attempt};
use super::audit::{
    AuditEvent, FactorStep, LoginFailure, LoginMethod, Registration, RequestContext, Revocation,
};
use super::breached::{BreachedPasswords, Screening};
use super::email::{EmailTemplates, Notice};
use super::error::{ServiceError, ServiceResult};
use super::login::LoginCompletion;
use super::passwords::{PasswordHashing, PasswordPolicy, WeakPasswordReason, normalize};
use super::pci::PasswordHistory;
use super::sessions::{CurrentSession, IssuedSession, SessionState, Sessions};
use crate::crypto::password::StoredPassword;
use crate::crypto::{random_alphanumeric, token_hash};
use uuid::Uuid;

use super::mfa::{Factor, FactorReview, Mfa};
use crate::domain::{EmailAddress, Factors, MfaMethod, Millis, Role, now_millis};
use crate::storage::StorageError;
use crate::storage::db::email_tokens::{self, TokenPurpose};
use crate::storage::db::mfa as factors_db;
use crate::storage::db::users::{self, NewUser, UserRow};
use crate::storage::db::{Conn, Database, UnitOfWork};

pub const VERIFY_TOKEN_LEN: usize = 32;
const VERIFY_TOKEN_TTL_MS: i64 = 24 * 60 * 60 * 1000;
/// Reset tokens: 256 random bits as 43 characters of base64url, valid for an hour.
pub const RESET_TOKEN_LEN: usize = 43;
const RESET_TOKEN_TTL_MS: i64 = 60 * 60 * 1000;

pub struct Accounts {
    db: Database,
    sessions: Sessions,
    abuse: AbuseControl,
    hashing: PasswordHashing,
    policy: PasswordPolicy,
    breached: BreachedPasswords,
    templates: EmailTemplates,
    /// What every completed login writes (`services::login`).
    completion: LoginCompletion,
    /// Under `AUTH_POLICY=psd2`: the second factors, whose one-time code the login checks
    /// beside the password (docs/API.md §11). `None`: today's two-step login.
    sca_codes: Option<Mfa>,
    history: PasswordHistory,
}

/// The outcome of a correct password: an active session, or — when the user has a second
/// factor — a pending one and the methods that can complete it.
pub struct LoginOutcome {
    pub account: Account,
    pub session: IssuedSession,
    pub mfa_methods: Option<Vec<&'static str>>,
}

/// How a login was completed: the audit's method and, when a second factor was part of
/// it, the session's `mfa_verified_at`.
struct CompletedLogin {
    method: LoginMethod,
    mfa_verified: Option<(Millis, MfaMethod)>,
    /// A second factor used in the same request (PSD2 SCA login): audited with the session.
    factor_used: Option<(Factor, FactorStep)>,
}

/// The account a login is for, as its owner sees it.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: Uuid,
    pub email: EmailAddress,
    pub role: Role,
    pub email_verified: bool,
    pub created_at: Millis,
    pub factors: Factors,
    /// After a password reset, the logins until one completes list every second factor,
    /// so an owner asked for a factor they never had can see it (issue 11, item 1).
    pub factor_review: Option<FactorReview>,
}

impl Account {
    /// `user` as read at the login (its `factor_review_since` before the login cleared it).
    pub(crate) async fn of(
        conn: &impl Conn,
        user: UserRow,
        factors: Factors,
    ) -> ServiceResult<Self> {
        let factor_review = match user.factor_review_since {
            Some(since) => Some(FactorReview {
                since,
                factors: factors_db::enrolled(conn, user.id).await?,
            }),
            None => None,
        };
        Ok(Self {
            id: user.id,
            email: user.email,
            role: user.role,
            email_verified: user.email_verified_at.is_some(),
            created_at: user.created_at,
            factors,
            factor_review,
        })
    }
}

fn is_reset_token_shape(token: &str) -> bool {
    token.len() == RESET_TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Adds an account to `uow`. Registration and the CLI's `create-user` differ only in the
/// role and whether the address counts as verified (the CLI's operator vouches for it).
async fn insert_user(
    uow: &UnitOfWork,
    email: &EmailAddress,
    password: &StoredPassword,
    role: Role,
    verified: bool,
) -> Result<UserRow, StorageError> {
    let now = now_millis();
    let new = NewUser {
        email,
        password_hash: &password.phc,
        password_pepper_id: password.pepper_id.as_deref(),
        role,
        email_verified_at: verified.then_some(now),
        now,
    };
    users::insert(uow.conn(), new).await
}

/// Why a password is being replaced (reset by email, or changed by its owner).
#[derive(Clone, Copy)]
enum PasswordReplacement {
    Reset,
    Change,
}

impl PasswordReplacement {
    fn event(self, sessions_revoked: u64) -> AuditEvent {
        match self {
            PasswordReplacement::Reset => AuditEvent::PasswordReset { sessions_revoked },
            PasswordReplacement::Change => AuditEvent::PasswordChanged { sessions_revoked },
        }
    }

    fn revocation(self) -> Revocation {
        match self {
            PasswordReplacement::Reset => Revocation::PasswordReset,
            PasswordReplacement::Change => Revocation::PasswordChanged,
        }
    }

    fn notice(self) -> Notice {
        match self {
            PasswordReplacement::Reset => Notice::PasswordReset,
            PasswordReplacement::Change => Notice::PasswordChanged,
        }
    }
}

/// A verification token has exactly the shape docs/API.md §7 gives it.
fn is_verify_token_shape(token: &str) -> bool {
    token.len() == VERIFY_TOKEN_LEN && token.chars().all(|c| c.is_ascii_alphanumeric())
}

/// How a new password is judged and stored: the local rules, the breach corpus (when
/// configured) and the hashing parameters.
pub struct PasswordRules {
    pub hashing: PasswordHashing,
    pub policy: PasswordPolicy,
    pub breached: BreachedPasswords,
    /// `PRIVILEGED_POLICY=pci`: no reuse of the last four passwords (staff and admin).
    pub history: PasswordHistory,
}

impl Accounts {
    pub fn new(
        db: Database,
        sessions: Sessions,
        abuse: AbuseControl,
        rules: PasswordRules,
        templates: EmailTemplates,
        completion: LoginCompletion,
        sca_codes: Option<Mfa>,
    ) -> Self {
        let PasswordRules {
            hashing,
            policy,
            breached,
            history,
        } = rules;
        Self {
            db,
            sessions,
            abuse,
            hashing,
            policy,
            breached,
            templates,
            completion,
            sca_codes,
            history,
        }
    }

    pub fn hashing(&self) -> &PasswordHashing {
        &self.hashing
    }

    /// Checks the password policy for `email` and, when configured, the breach corpus;
    /// returns the normalised password. The corpus is consulted even when a rule already
    /// failed, so `reasons` lists everything; a corpus that cannot answer under
    /// `PWNED_PASSWORDS_ON_ERROR=deny` refuses with 503 only a password that passed the rules.
    pub async fn acceptable_password(
        &self,
        password: &str,
        email: &EmailAddress,
    ) -> ServiceResult<String> {
        let normalized = normalize(password);
        let mut reasons = self
            .policy
            .check(&normalized, email)
            .err()
            .unwrap_or_default();
        match self.breached.screen(&normalized).await {
            Screening::Passed => {}
            Screening::Breached => reasons.push(WeakPasswordReason::Breached),
            Screening::Unavailable if reasons.is_empty() => {
                return Err(ServiceError::Unavailable(
                    "the compromised-password check could not answer".to_owned(),
                ));
            }
            Screening::Unavailable => {}
        }
        if !reasons.is_empty() {
            return Err(ServiceError::WeakPassword(reasons));
        }
        Ok(normalized)
    }

    /// Registers an account, or — when the email is taken — emails its owner a notice.
    /// Both paths hash the password and answer the same, so the response reveals nothing.
    #[tracing::instrument(skip_all)]
    pub async fn register(
        &self,
        email: &EmailAddress,
        password: &str,
        ctx: &RequestContext,
    ) -> ServiceResult<()> {
        let password = self.acceptable_password(password, email).await?;
        let stored = self.hashing.hash(&password).await?;
        let existing = users::find_by_email(self.db.connection(), email).await?;
        if existing.is_none() && self.create_unverified(email, &stored, ctx).await? {
            return Ok(());
        }
        // The address already has an account (or just got one in a concurrent request).
        let owner = users::find_by_email(self.db.connection(), email).await?;
        let mut uow = self.db.begin().await?;
        uow.email(self.templates.registration_attempt(email));
        uow.audit(ctx.record(
            AuditEvent::UserRegistered(Registration::AlreadyRegistered),
            owner.map(|u| u.id),
        ));
        uow.commit().await?;
        Ok(())
    }

    async fn create_unverified(
        &self,
        email: &EmailAddress,
        stored: &StoredPassword,
        ctx: &RequestContext,
    ) -> ServiceResult<bool> {
        let mut uow = self.db.begin().await?;
        let inserted = insert_user(&uow, email, stored, Role::User, false).await;
        let user = match inserted {
            Ok(user) => user,
            // A concurrent registration of the same address won the race.
            Err(StorageError::Conflict(_)) => return Ok(false),
            Err(other) => return Err(other.into()),
        };
        uow.audit(ctx.record(
            AuditEvent::UserRegistered(Registration::Created),
            Some(user.id),
        ));
        self.queue_verification(&mut uow, &user, email, ctx).await?;
        uow.commit().await?;
        Ok(true)
    }

    async fn queue_verification(
        &self,
        uow: &mut UnitOfWork,
        user: &UserRow,
        email: &EmailAddress,
        ctx: &RequestContext,
    ) -> ServiceResult<()> {
        let now = now_millis();
        let token = random_alphanumeric(VERIFY_TOKEN_LEN);
        email_tokens::retire_all(uow.conn(), user.id, TokenPurpose::VerifyEmail, now).await?;
        email_tokens::insert(
            uow.conn(),
            user.id,
            TokenPurpose::VerifyEmail,
            &token_hash(&token),
            now,
            now + VERIFY_TOKEN_TTL_MS,
        )
        .await?;
        uow.email(self.templates.verify_email(email, &token));
        uow.audit(ctx.record(AuditEvent::EmailVerificationSent, Some(user.id)));
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    pub async fn verify_email(&self, token: &str, ctx: &RequestContext) -> ServiceResult<()> {
        if !is_verify_token_shape(token) {
            return Err(ServiceError::InvalidToken);
        }
        let now = now_millis();
        let mut uow = self.db.begin().await?;
        let redeemed = email_tokens::redeem(
            uow.conn(),
            TokenPurpose::VerifyEmail,
            &token_hash(token),
            now,
        )
        .await?
        .ok_or(ServiceError::InvalidToken)?;
        users::mark_email_verified(uow.conn(), redeemed.user_id, now).await?;
        uow.audit(ctx.record(AuditEvent::EmailVerified, Some(redeemed.user_id)));
        uow.commit().await?;
        Ok(())
    }

    /// Sends a fresh verification email when the account exists and is unverified;
    /// otherwise does nothing. The caller answers 202 either way.
    #[tracing::instrument(skip_all)]
    pub async fn resend_verification(
        &self,
        email: &EmailAddress,
        ctx: &RequestContext,
    ) -> ServiceResult<()> {
        let Some(user) = users::find_by_email(self.db.connection(), email).await? else {
            return Ok(());
        };
        if user.email_verified_at.is_some() {
            return Ok(());
        }
        let mut uow = self.db.begin().await?;
        self.queue_verification(&mut uow, &user, email, ctx).await?;
        uow.commit().await?;
        Ok(())
    }

    /// `POST /auth/login`. Each attempt first reserves a slot against the account's
    /// lockout, so racing attempts cannot exceed the threshold. Unknown emails cost the
    /// same Argon2 run (against a dummy hash) and fail the same way. Under
    /// `AUTH_POLICY=psd2` the one-time `code` is checked beside the password (`sca`);
    /// otherwise it is ignored and this is the password step.
    #[tracing::instrument(skip_all)]
    pub async fn login(
        &self,
        email: &EmailAddress,
        password: &str,
        code: Option<&str>,
        ctx: &RequestContext,
    ) -> ServiceResult<LoginOutcome> {
        let user = users::find_by_email(self.db.connection(), email).await?;
        let attempt = match self.abuse.reserve_for(email, user.as_ref()).await {
            Ok(attempt) => attempt,
            Err(locked @ ServiceError::AccountLocked { .. }) => {
                self.audit_failure(user.as_ref(), LoginFailure::AccountLocked, None, ctx)
                    .await?;
                return Err(locked);
            }
            Err(other) => return Err(other),
        };
        let password = normalize(password);
        let stored = user.as_ref().map(|u| StoredPassword {
            phc: u.password_hash.clone(),
            pepper_id: u.password_pepper_id.clone(),
        });
        let check = self.hashing.verify(&password, stored).await?;
        if let Some(mfa) = &self.sca_codes {
            let login = sca::ScaLogin {
                email,
                user: user.filter(|_| check.valid),
                password: &password,
                needs_rehash: check.needs_rehash,
                code,
            };
            return self.sca_login(mfa, login, attempt, ctx).await;
        }
        let Some(user) = user.filter(|_| check.valid) else {
            let owner = users::find_by_email(self.db.connection(), email).await?;
            self.record_failure(owner.as_ref(), &attempt, ctx).await?;
            return Err(ServiceError::InvalidCredentials);
        };
        let attempt = self.admit(&user, attempt, ctx).await?;
        let rehashed = self.rehash_if_needed(&password, check.needs_rehash).await?;
        let mut uow = self.db.begin().await?;
        let rehashed = Self::save_rehash(&mut uow, user.id, rehashed).await?;
        let factors = factors_db::factors(uow.conn(), user.id).await?;
        if factors.any_second_factor() {
            // The password step passed: no failure, but no reset either (docs/API.md §7).
            let methods = super::mfa::methods(&factors);
            let session = self
                .sessions
                .create(&mut uow, &user, SessionState::MfaPending, None, ctx)
                .await?;
            uow.audit(ctx.record(
                AuditEvent::MfaChallengeIssued {
                    session_id: session.id,
                    methods: methods.clone(),
                },
                Some(user.id),
            ));
            uow.commit().await?;
            self.abuse.release(attempt).await?;
            return Ok(LoginOutcome {
                account: Account::of(self.db.connection(), user, factors).await?,
                session,
                mfa_methods: Some(methods),
            });
        }
        let completed = CompletedLogin {
            method: LoginMethod::Password { rehashed },
            mfa_verified: None,
            factor_used: None,
        };
        self.complete_login(uow, user, factors, completed, attempt, ctx)
            .await
    }

    /// A login with every factor the account has (or the policy asks at this step): an
    /// active session, then what every completed login writes (`LoginCompletion`).
    async fn complete_login(
        &self,
        mut uow: UnitOfWork,
        user: UserRow,
        factors: Factors,
        completed: CompletedLogin,
        attempt: Attempt,
        ctx: &RequestContext,
    ) -> ServiceResult<LoginOutcome> {
        let session = self
            .sessions
            .create(
                &mut uow,
                &user,
                SessionState::Active,
                completed.mfa_verified,
                ctx,
            )
            .await?;
        if let Some((factor, step)) = completed.factor_used {
            uow.audit(ctx.record(
                AuditEvent::FactorUsed {
                    factor,
                    session_id: session.id,
                    step,
                },
                Some(user.id),
            ));
        }
        self.completion
            .commit(uow, &user, session.id, completed.method, Some(attempt), ctx)
            .await?;
        Ok(LoginOutcome {
            account: Account::of(self.db.connection(), user, factors).await?,
            session,
            mfa_methods: None,
        })
    }

    /// The password (and, under PSD2, the code) was right, so this was no guessing
    /// failure; a disabled or unverified account is still refused, now telling why.
    async fn admit(
        &self,
        user: &UserRow,
        attempt: Attempt,
        ctx: &RequestContext,
    ) -> ServiceResult<Attempt> {
        if !user.disabled && user.email_verified_at.is_some() {
            return Ok(attempt);
        }
        self.abuse.release(attempt).await?;
        let (reason, error) = if user.disabled {
            (LoginFailure::AccountDisabled, ServiceError::AccountDisabled)
        } else {
            (
                LoginFailure::EmailNotVerified,
                ServiceError::EmailNotVerified,
            )
        };
        self.audit_failure(Some(user), reason, None, ctx).await?;
        Err(error)
    }

    /// Re-hashes a right password whose hash used older parameters or pepper (§4), before
    /// any transaction is open (Argon2 takes a while).
    async fn rehash_if_needed(
        &self,
        password: &str,
        needs_rehash: bool,
    ) -> ServiceResult<Option<StoredPassword>> {
        Ok(match needs_rehash {
            true => Some(self.hashing.hash(password).await?),
            false => None,
        })
    }

    /// Stores what `rehash_if_needed` computed; returns whether there was anything.
    async fn save_rehash(
        uow: &mut UnitOfWork,
        user_id: Uuid,
        rehashed: Option<StoredPassword>,
    ) -> ServiceResult<bool> {
        let Some(fresh) = rehashed else {
            return Ok(false);
        };
        users::set_password(
            uow.conn(),
            user_id,
            &fresh.phc,
            fresh.pepper_id.as_deref(),
            now_millis(),
        )
        .await?;
        Ok(true)
    }

    /// A wrong password: audited, and when it engaged a lock, the lock is audited and the
    /// owner (if the account exists) is told, once per lock.
    async fn record_failure(
        &self,
        user: Option<&UserRow>,
        attempt: &Attempt,
        ctx: &RequestContext,
    ) -> ServiceResult<()> {
        self.audit_failure(user, LoginFailure::InvalidCredentials, Some(attempt), ctx)
            .await
    }

    /// A refused login (`login.failure` with its reason), plus the lock it engaged, if any.
    async fn audit_failure(
        &self,
        user: Option<&UserRow>,
        reason: LoginFailure,
        attempt: Option<&Attempt>,
        ctx: &RequestContext,
    ) -> ServiceResult<()> {
        let mut uow = self.db.begin().await?;
        uow.audit(ctx.record(
            AuditEvent::LoginFailure {
                reason,
                by_passkey: false,
            },
            user.map(|u| u.id),
        ));
        if let Some(attempt) = attempt {
            self.abuse
                .note_failure(&mut uow, user, attempt, &self.templates, ctx);
        }
        uow.commit().await?;
        Ok(())
    }

    /// `POST /auth/password/reset/request`: emails a reset link when the account exists
    /// (and is enabled); a new request retires older tokens. The caller answers 202 at
    /// once and runs this in the background, so timing says nothing either.
    #[tracing::instrument(skip_all)]
    pub async fn request_password_reset(
        &self,
        email: &EmailAddress,
        ctx: &RequestContext,
    ) -> ServiceResult<()> {
        let user = users::find_by_email(self.db.connection(), email)
            .await?
            .filter(|u| !u.disabled);
        let mut uow = self.db.begin().await?;
        if let Some(user) = &user {
            let now = now_millis();
            let token = crate::crypto::random_token();
            email_tokens::retire_all(uow.conn(), user.id, TokenPurpose::PasswordReset, now).await?;
            email_tokens::insert(
                uow.conn(),
                user.id,
                TokenPurpose::PasswordReset,
                &token_hash(&token),
                now,
                now + RESET_TOKEN_TTL_MS,
            )
            .await?;
            // The owner sees every second factor before resetting: one they never
            // enrolled still guards the account after the reset.
            let factors = factors_db::enrolled(uow.conn(), user.id).await?;
            uow.email(self.templates.password_reset(&user.email, &token, &factors));
        }
        uow.audit(ctx.record(
            AuditEvent::PasswordResetRequested {
                account_found: user.is_some(),
            },
            user.as_ref().map(|u| u.id),
        ));
        uow.commit().await?;
        Ok(())
    }

    /// `POST /auth/password/reset/confirm`: a valid token sets a new password (if it passes
    /// the policy — a weak one leaves the token usable), revokes every session, clears the
    /// lockout and tells the owner; a disabled account's token changes nothing
    /// (`account_disabled`). Returns how many sessions were revoked.
    #[tracing::instrument(skip_all)]
    pub async fn confirm_password_reset(
        &self,
        token: &str,
        new_password: &str,
        ctx: &RequestContext,
    ) -> ServiceResult<u64> {
        if !is_reset_token_shape(token) {
            return Err(ServiceError::InvalidToken);
        }
        let hash = token_hash(token);
        let found = email_tokens::peek(
            self.db.connection(),
            TokenPurpose::PasswordReset,
            &hash,
            now_millis(),
        )
        .await?
        .ok_or(ServiceError::InvalidToken)?;
        let user = users::find_by_id(self.db.connection(), found.user_id)
            .await?
            .ok_or(ServiceError::InvalidToken)?;
        // A link sent before the account was disabled must not bring it back to life
        // (a new password, a cleared lockout): GHSA-xr73-jq5p-ch8r.
        if user.disabled {
            return Err(ServiceError::AccountDisabled);
        }
        let password = self.acceptable_password(new_password, &user.email).await?;
        self.history
            .refuse_reuse(&self.hashing, self.db.connection(), &user, &password)
            .await?;
        let stored = self.hashing.hash(&password).await?;
        let now = now_millis();
        let uow = self.db.begin().await?;
        // Redeeming is the single-use gate: of two concurrent confirmations one wins.
        email_tokens::redeem(uow.conn(), TokenPurpose::PasswordReset, &hash, now)
            .await?
            .ok_or(ServiceError::InvalidToken)?;
        let revoked = self
            .replace_password(uow, &user, &stored, None, PasswordReplacement::Reset, ctx)
            .await?;
        self.abuse.clear(&user.email).await?;
        Ok(revoked)
    }

    /// `POST /auth/password/change`: the current password must be right (a wrong one
    /// counts toward the lockout); other sessions are revoked. Returns how many.
    #[tracing::instrument(skip_all, fields(user_id = %session.user_id))]
    pub async fn change_password(
        &self,
        session: &CurrentSession,
        current_password: &str,
        new_password: &str,
        ctx: &RequestContext,
    ) -> ServiceResult<u64> {
        let user = self.find_user(session.user_id).await?;
        let password = self.acceptable_password(new_password, &user.email).await?;
        let attempt = self.confirm_password(&user, current_password, ctx).await?;
        if let Err(reused) = self
            .history
            .refuse_reuse(&self.hashing, self.db.connection(), &user, &password)
            .await
        {
            // The current password was right: no guessing failure.
            self.abuse.release(attempt).await?;
            return Err(reused);
        }
        let fresh = self.hashing.hash(&password).await?;
        let uow = self.db.begin().await?;
        let revoked = self
            .replace_password(
                uow,
                &user,
                &fresh,
                Some(&session.token_hash),
                PasswordReplacement::Change,
                ctx,
            )
            .await?;
        self.abuse.release(attempt).await?;
        Ok(revoked)
    }

    /// Before the *first* second factor is enrolled on a session, the holder must prove
    /// the password: a login younger than `STEP_UP_MAX_AGE_SECONDS`, or
    /// `current_password` now. Without this a stolen cookie could enroll its own factor,
    /// collect the recovery codes and outlive a password reset (issue 11, item 1). When a
    /// factor exists, fresh MFA (checked by the route's guard) is the proof instead.
    /// A wrong password counts toward the lockout like a wrong login.
    #[tracing::instrument(skip_all, fields(user_id = %session.user_id))]
    pub async fn prove_for_first_factor(
        &self,
        session: &CurrentSession,
        current_password: Option<&str>,
        ctx: &RequestContext,
    ) -> ServiceResult<()> {
        if session.factors.any_second_factor() {
            return Ok(());
        }
        let max_age = self.sessions.settings().step_up_max_age;
        if now_millis() - session.created_at <= max_age.as_millis() as i64 {
            return Ok(());
        }
        let Some(password) = current_password else {
            return Err(ServiceError::ReauthenticationRequired {
                max_age_secs: max_age.as_secs(),
            });
        };
        let user = self.find_user(session.user_id).await?;
        let attempt = self.confirm_password(&user, password, ctx).await?;
        self.abuse.release(attempt).await?;
        Ok(())
    }

    /// A signed-in user re-enters their password: the check reserves a lockout attempt
    /// first, and a wrong password is recorded like a wrong login. The caller releases
    /// the returned attempt once its change is done.
    async fn confirm_password(
        &self,
        user: &UserRow,
        password: &str,
        ctx: &RequestContext,
    ) -> ServiceResult<Attempt> {
        let attempt = self.abuse.reserve_for(&user.email, Some(user)).await?;
        let stored = StoredPassword {
            phc: user.password_hash.clone(),
            pepper_id: user.password_pepper_id.clone(),
        };
        let check = self
            .hashing
            .verify(&normalize(password), Some(stored))
            .await?;
        if !check.valid {
            self.record_failure(Some(user), &attempt, ctx).await?;
            return Err(ServiceError::InvalidCredentials);
        }
        Ok(attempt)
    }

    /// Stores a new password hash, ends the user's sessions (all, or all but `keep`),
    /// audits the change and tells the owner, in one unit of work. Returns how many
    /// sessions ended.
    async fn replace_password(
        &self,
        mut uow: UnitOfWork,
        user: &UserRow,
        fresh: &StoredPassword,
        keep: Option<&str>,
        why: PasswordReplacement,
        ctx: &RequestContext,
    ) -> ServiceResult<u64> {
        let now = now_millis();
        self.history.remember(uow.conn(), user).await?;
        users::set_password(
            uow.conn(),
            user.id,
            &fresh.phc,
            fresh.pepper_id.as_deref(),
            now,
        )
        .await?;
        if matches!(why, PasswordReplacement::Reset)
            && factors_db::factors(uow.conn(), user.id)
                .await?
                .any_second_factor()
        {
            // The next login lists the factors, so the owner can spot a stranger's.
            users::set_factor_review(uow.conn(), user.id, Some(now)).await?;
        }
        let revoked = self
            .sessions
            .revoke_all_in(&mut uow, user.id, keep, why.revocation(), ctx)
            .await?;
        uow.audit(ctx.record(why.event(revoked), Some(user.id)));
        uow.email(self.templates.notice(&user.email, why.notice()));
        uow.commit().await?;
        Ok(revoked)
    }

    /// Creates a verified account with a role (the CLI's `create-user`: how the first
    /// admin is made).
    #[tracing::instrument(skip_all)]
    pub async fn create_user(
        &self,
        email: &EmailAddress,
        password: &str,
        role: Role,
        ctx: &RequestContext,
    ) -> ServiceResult<UserRow> {
        let password = self.acceptable_password(password, email).await?;
        let stored = self.hashing.hash(&password).await?;
        let mut uow = self.db.begin().await?;
        let user = insert_user(&uow, email, &stored, role, true)
            .await
            .map_err(|e| match e {
                StorageError::Conflict(_) => {
                    anyhow::anyhow!("an account with this email already exists").into()
                }
                other => ServiceError::from(other),
            })?;
        uow.audit(ctx.record(
            AuditEvent::UserRegistered(Registration::Cli { role }),
            Some(user.id),
        ));
        uow.commit().await?;
        Ok(user)
    }

    pub async fn find_user(&self, id: uuid::Uuid) -> ServiceResult<UserRow> {
        users::find_by_id(self.db.connection(), id)
            .await?
            .ok_or(ServiceError::NotAuthenticated)
    }
}
