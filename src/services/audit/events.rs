//! The auditable events and what each records. The names and the metadata JSON are part
//! of the contract (docs/API.md §4, §7) and of the hash chain: `name` and `details` are
//! the one place they are spelled out, and the tests below pin them.

use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::domain::Role;
use crate::services::mfa::Factor;
pub use crate::services::payments::Linking;
use crate::services::sessions::SessionState;

/// Every auditable event with the fields it records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditEvent {
    /// The OpenID Provider's `oauth.*` events (docs/API.md §8).
    OAuth(OAuthEvent),
    /// Transaction confirmation's `transaction.*` events (docs/API.md §9).
    Transaction(TransactionEvent),
    /// `user.registered`
    UserRegistered(Registration),
    /// `email.verification_sent`
    EmailVerificationSent,
    /// `email.verified`
    EmailVerified,
    /// `login.success`
    LoginSuccess {
        session_id: Uuid,
        method: LoginMethod,
    },
    /// `login.failure`; `by_passkey` for a passwordless passkey login.
    LoginFailure {
        reason: LoginFailure,
        by_passkey: bool,
    },
    /// `login.locked`
    LoginLocked { lock_seconds: u64 },
    /// `login.new_device`: a completed login from a device unseen for 90 days; its owner
    /// was emailed (docs/API.md §11, `NEW_DEVICE_ALERTS`).
    LoginNewDevice {
        browser: &'static str,
        os: &'static str,
        network: String,
    },
    /// `session.created`
    SessionCreated {
        session_id: Uuid,
        state: SessionState,
    },
    /// `session.rotated`
    SessionRotated { session_id: Uuid, reason: Rotation },
    /// `session.logout`
    SessionLogout { session_id: Uuid },
    /// `session.revoked`
    SessionRevoked {
        session_id: Uuid,
        reason: Revocation,
    },
    /// `csrf.failure` or `step_up.required`: the `repeats`-th refusal of its kind on
    /// this session in the window (see `AbuseControl::audit_repeat`).
    Refused {
        session_id: Uuid,
        refusal: RepeatedRefusal,
        repeats: u64,
    },
    /// `rate_limit.exceeded` (the per-IP limit of the pre-authentication routes).
    RateLimitExceeded { limit: u32, window_seconds: u64 },
    /// `admin.user_updated`
    AdminUserUpdated {
        role: Change<Role>,
        disabled: Change<bool>,
        sessions_revoked: u64,
    },
    /// `admin.user_unlocked`
    AdminUserUnlocked,
    /// `account.disabled_inactive`: `PRIVILEGED_POLICY=pci` disabled a staff or admin
    /// account unused for `inactivity_days` (PCI DSS 8.2.6); the actor is the system.
    AccountDisabledInactive {
        inactivity_days: u64,
        /// RFC 3339; `None` when the account never signed in.
        last_login_at: Option<String>,
        sessions_revoked: u64,
    },
    /// `mfa.challenge_issued`
    MfaChallengeIssued {
        session_id: Uuid,
        methods: Vec<&'static str>,
    },
    /// `mfa.totp.setup_started`
    MfaTotpSetupStarted,
    /// `mfa.totp.enabled`
    MfaTotpEnabled { recovery_codes_issued: bool },
    /// `mfa.totp.disabled`
    MfaTotpDisabled,
    /// `mfa.totp.success`, `mfa.recovery_code.used` or `mfa.webauthn.success`.
    FactorUsed {
        factor: Factor,
        session_id: Uuid,
        step: FactorStep,
    },
    /// `mfa.totp.failure` or `mfa.recovery_code.failure`: a wrong code.
    CodeFailure { factor: Factor, reason: CodeFailure },
    /// `mfa.recovery_codes.regenerated`
    MfaRecoveryCodesRegenerated { count: usize },
    /// `mfa.webauthn.registered`
    MfaWebauthnRegistered {
        credential: Uuid,
        name: String,
        recovery_codes_issued: bool,
    },
    /// `mfa.webauthn.failure`: a ceremony that did not verify.
    MfaWebauthnFailure {
        reason: PasskeyFailure,
        during_registration: bool,
    },
    /// `mfa.webauthn.deleted`
    MfaWebauthnDeleted { credential: Uuid },
    /// `mfa.webauthn.renamed` (extension: the account page renames passkeys)
    MfaWebauthnRenamed { credential: Uuid },
    /// `step_up.success` by `POST /auth/step-up/confirm` (freshness already proven).
    StepUpConfirmed { session_id: Uuid },
    /// `step_up.success` by a second factor on an active session.
    StepUpSuccess { session_id: Uuid, factor: Factor },
    /// `password.reset_requested`
    PasswordResetRequested { account_found: bool },
    /// `password.reset`
    PasswordReset { sessions_revoked: u64 },
    /// `password.changed`
    PasswordChanged { sessions_revoked: u64 },
}

/// How an account came to be (or was found to exist already).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// `POST /auth/register` created it.
    Created,
    /// `POST /auth/register` for a taken address (its owner is told).
    AlreadyRegistered,
    /// The CLI's `create-user`, verified and with a role.
    Cli { role: Role },
}

/// How a login completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginMethod {
    /// The password alone; `rehashed` when its hash was upgraded on the way.
    Password { rehashed: bool },
    /// The password, then this second factor.
    PasswordAnd(Factor),
    /// A passkey with user verification (passwordless).
    Passkey,
}

/// Why a login was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginFailure {
    InvalidCredentials,
    /// PSD2 SCA login: the password was right, the one-time code wrong, replayed or
    /// missing. Only the audit trail tells this apart; the caller got `invalid_credentials`.
    InvalidSecondFactor,
    AccountLocked,
    AccountDisabled,
    EmailNotVerified,
}

/// Why a session got a new token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rotation {
    MfaCompleted,
    RoleChanged,
}

/// Why a session was ended by something other than its own logout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Revocation {
    /// The owner revoked this one session.
    UserRequest,
    /// The owner revoked every other session.
    RevokeOthers,
    AccountDisabled,
    PasswordReset,
    PasswordChanged,
}

/// A refusal that can repeat on one session, so it is audited on a log scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepeatedRefusal {
    /// `csrf.failure`: the CSRF header was missing or wrong.
    Csrf { header_present: bool },
    /// `step_up.required`
    StepUp,
}

impl RepeatedRefusal {
    pub fn name(self) -> &'static str {
        match self {
            RepeatedRefusal::Csrf { .. } => "csrf.failure",
            RepeatedRefusal::StepUp => "step_up.required",
        }
    }
}

/// The state a second factor was used in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactorStep {
    /// On a session in this state: pending (completing a login) or active (step-up).
    Session(SessionState),
    /// A passkey that was the whole login.
    Passwordless,
    /// The one-time code sent with the password in a PSD2 SCA login (§11).
    ScaLogin,
}

/// Why a TOTP or recovery code was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeFailure {
    WrongCode,
    /// A TOTP code whose time step was already used.
    ReplayedCode,
    WrongRecoveryCode,
}

/// Why a WebAuthn ceremony failed (audited, never shown to the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PasskeyFailure {
    StorageError,
    UnknownCredential,
    CredentialOfAnotherUser,
    UnreadableCredential,
    WrongUserHandle,
    WrongCeremony,
    CounterRegression,
    UserNotVerified,
    WrongOrigin,
    WrongRpId,
    WrongChallenge,
    VerificationFailed,
    /// The passkey policy (docs/API.md §11) refused it; see `PasskeyRefusal`.
    AttestationUntrusted,
    AaguidNotAllowed,
    AuthenticatorCompromised,
    SyncedPasskeyNotAllowed,
}

impl From<crate::services::mfa::PasskeyRefusal> for PasskeyFailure {
    fn from(refusal: crate::services::mfa::PasskeyRefusal) -> Self {
        use crate::services::mfa::PasskeyRefusal;
        match refusal {
            PasskeyRefusal::AttestationUntrusted => PasskeyFailure::AttestationUntrusted,
            PasskeyRefusal::AaguidNotAllowed => PasskeyFailure::AaguidNotAllowed,
            PasskeyRefusal::AuthenticatorCompromised => PasskeyFailure::AuthenticatorCompromised,
            PasskeyRefusal::SyncedPasskeyNotAllowed => PasskeyFailure::SyncedPasskeyNotAllowed,
        }
    }
}

/// What the OpenID Provider records. `client_id` names the relying party; `grant_id` the
/// grant (the family of tokens from one authorization) when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OAuthEvent {
    /// `oauth.authorization_granted`
    AuthorizationGranted {
        client_id: String,
        session_id: Uuid,
        scope: String,
        consent_shown: bool,
        /// A payment: the hash of the details the user confirmed (dynamic linking), so the
        /// trail ties the grant to its `transaction.confirmed` record.
        tx_hash: Option<String>,
    },
    /// `oauth.authorization_denied`: the user refused, or the request could not be met.
    AuthorizationDenied { client_id: String, error: String },
    /// `oauth.token_issued`
    TokenIssued {
        client_id: String,
        grant_type: &'static str,
        grant_id: Option<Uuid>,
    },
    /// `oauth.token_refreshed`
    TokenRefreshed { client_id: String, grant_id: Uuid },
    /// `oauth.refresh_reuse_detected`: a rotated refresh token (or a used code) came back;
    /// the grant was revoked.
    RefreshReuseDetected {
        client_id: String,
        grant_id: Uuid,
        presented: &'static str,
    },
    /// `oauth.token_revoked`
    TokenRevoked {
        client_id: String,
        token_type: &'static str,
        grant_id: Option<Uuid>,
    },
    /// `oauth.client_changed`
    ClientChanged {
        client_id: String,
        change: &'static str,
    },
}

impl OAuthEvent {
    fn name(&self) -> &'static str {
        match self {
            OAuthEvent::AuthorizationGranted { .. } => "oauth.authorization_granted",
            OAuthEvent::AuthorizationDenied { .. } => "oauth.authorization_denied",
            OAuthEvent::TokenIssued { .. } => "oauth.token_issued",
            OAuthEvent::TokenRefreshed { .. } => "oauth.token_refreshed",
            OAuthEvent::RefreshReuseDetected { .. } => "oauth.refresh_reuse_detected",
            OAuthEvent::TokenRevoked { .. } => "oauth.token_revoked",
            OAuthEvent::ClientChanged { .. } => "oauth.client_changed",
        }
    }

    fn details(&self) -> Value {
        match self {
            OAuthEvent::AuthorizationGranted {
                client_id,
                session_id,
                scope,
                consent_shown,
                tx_hash,
            } => {
                let mut details = json!({
                    "client_id": client_id,
                    "session_id": session_id,
                    "scope": scope,
                    "consent_shown": consent_shown,
                });
                if let Some(hash) = tx_hash {
                    details["tx_hash"] = json!(hash);
                }
                details
            }
            OAuthEvent::AuthorizationDenied { client_id, error } => {
                json!({"client_id": client_id, "error": error})
            }
            OAuthEvent::TokenIssued {
                client_id,
                grant_type,
                grant_id,
            } => {
                let mut details = json!({"client_id": client_id, "grant_type": grant_type});
                if let Some(grant_id) = grant_id {
                    details["grant_id"] = json!(grant_id);
                }
                details
            }
            OAuthEvent::TokenRefreshed {
                client_id,
                grant_id,
            } => json!({"client_id": client_id, "grant_id": grant_id}),
            OAuthEvent::RefreshReuseDetected {
                client_id,
                grant_id,
                presented,
            } => json!({"client_id": client_id, "grant_id": grant_id, "presented": presented}),
            OAuthEvent::TokenRevoked {
                client_id,
                token_type,
                grant_id,
            } => {
                let mut details = json!({"client_id": client_id, "token_type": token_type});
                if let Some(grant_id) = grant_id {
                    details["grant_id"] = json!(grant_id);
                }
                details
            }
            OAuthEvent::ClientChanged { client_id, change } => {
                json!({"client_id": client_id, "change": change})
            }
        }
    }
}

/// What transaction confirmation (PSD2 dynamic linking) records: the transaction id and
/// the hash of what was (to be) approved, never the payment details themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransactionEvent {
    /// `transaction.created`
    Created {
        transaction_id: Uuid,
        tx_hash: String,
        payments: usize,
    },
    /// `transaction.confirmed`
    Confirmed {
        transaction_id: Uuid,
        tx_hash: String,
        linking: Linking,
        jti: Uuid,
    },
    /// `transaction.failed`: a confirmation attempt that was refused.
    Failed {
        transaction_id: Uuid,
        reason: TransactionFailure,
    },
}

/// Why a confirmation attempt was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionFailure {
    /// The transaction was already confirmed.
    AlreadyConfirmed,
    /// The transaction had expired.
    Expired,
    /// The ceremony is unknown, used, expired, or of another transaction or session.
    InvalidCeremony,
    /// The assertion did not verify (the passkey's own reason).
    Passkey(PasskeyFailure),
    /// A wrong or replayed TOTP code.
    Code(CodeFailure),
}

impl TransactionFailure {
    fn details(self, transaction_id: Uuid) -> Value {
        let reason = match self {
            TransactionFailure::AlreadyConfirmed => json!("already_confirmed"),
            TransactionFailure::Expired => json!("expired"),
            TransactionFailure::InvalidCeremony => json!("invalid_ceremony"),
            TransactionFailure::Passkey(_) => json!("webauthn_failed"),
            TransactionFailure::Code(code) => json!(code),
        };
        let mut details = json!({"transaction_id": transaction_id, "reason": reason});
        if let TransactionFailure::Passkey(passkey) = self {
            details["passkey_failure"] = json!(passkey);
        }
        details
    }
}

impl TransactionEvent {
    fn name(&self) -> &'static str {
        match self {
            TransactionEvent::Created { .. } => "transaction.created",
            TransactionEvent::Confirmed { .. } => "transaction.confirmed",
            TransactionEvent::Failed { .. } => "transaction.failed",
        }
    }

    fn details(&self) -> Value {
        match self {
            TransactionEvent::Created {
                transaction_id,
                tx_hash,
                payments,
            } => json!({
                "transaction_id": transaction_id,
                "tx_hash": tx_hash,
                "payments": payments,
            }),
            TransactionEvent::Confirmed {
                transaction_id,
                tx_hash,
                linking,
                jti,
            } => json!({
                "transaction_id": transaction_id,
                "tx_hash": tx_hash,
                "linking": linking,
                "jti": jti,
            }),
            TransactionEvent::Failed {
                transaction_id,
                reason,
            } => reason.details(*transaction_id),
        }
    }
}

/// A value an admin changed (or left as it was).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Change<T> {
    pub from: T,
    pub to: T,
}

impl AuditEvent {
    /// The event's name, exactly as docs/API.md §4 lists it.
    pub fn name(&self) -> &'static str {
        match self {
            AuditEvent::OAuth(event) => event.name(),
            AuditEvent::Transaction(event) => event.name(),
            AuditEvent::UserRegistered(_) => "user.registered",
            AuditEvent::EmailVerificationSent => "email.verification_sent",
            AuditEvent::EmailVerified => "email.verified",
            AuditEvent::LoginSuccess { .. } => "login.success",
            AuditEvent::LoginFailure { .. } => "login.failure",
            AuditEvent::LoginLocked { .. } => "login.locked",
            AuditEvent::LoginNewDevice { .. } => "login.new_device",
            AuditEvent::SessionCreated { .. } => "session.created",
            AuditEvent::SessionRotated { .. } => "session.rotated",
            AuditEvent::SessionLogout { .. } => "session.logout",
            AuditEvent::SessionRevoked { .. } => "session.revoked",
            AuditEvent::Refused { refusal, .. } => refusal.name(),
            AuditEvent::RateLimitExceeded { .. } => "rate_limit.exceeded",
            AuditEvent::AdminUserUpdated { .. } => "admin.user_updated",
            AuditEvent::AdminUserUnlocked => "admin.user_unlocked",
            AuditEvent::AccountDisabledInactive { .. } => "account.disabled_inactive",
            AuditEvent::MfaChallengeIssued { .. } => "mfa.challenge_issued",
            AuditEvent::MfaTotpSetupStarted => "mfa.totp.setup_started",
            AuditEvent::MfaTotpEnabled { .. } => "mfa.totp.enabled",
            AuditEvent::MfaTotpDisabled => "mfa.totp.disabled",
            AuditEvent::FactorUsed { factor, .. } => match factor {
                Factor::Totp => "mfa.totp.success",
                Factor::RecoveryCode => "mfa.recovery_code.used",
                Factor::Passkey => "mfa.webauthn.success",
            },
            AuditEvent::CodeFailure { factor, .. } => match factor {
                Factor::Totp => "mfa.totp.failure",
                Factor::RecoveryCode => "mfa.recovery_code.failure",
                Factor::Passkey => "mfa.webauthn.failure",
            },
            AuditEvent::MfaRecoveryCodesRegenerated { .. } => "mfa.recovery_codes.regenerated",
            AuditEvent::MfaWebauthnRegistered { .. } => "mfa.webauthn.registered",
            AuditEvent::MfaWebauthnFailure { .. } => "mfa.webauthn.failure",
            AuditEvent::MfaWebauthnDeleted { .. } => "mfa.webauthn.deleted",
            AuditEvent::MfaWebauthnRenamed { .. } => "mfa.webauthn.renamed",
            AuditEvent::StepUpConfirmed { .. } | AuditEvent::StepUpSuccess { .. } => {
                "step_up.success"
            }
            AuditEvent::PasswordResetRequested { .. } => "password.reset_requested",
            AuditEvent::PasswordReset { .. } => "password.reset",
            AuditEvent::PasswordChanged { .. } => "password.changed",
        }
    }

    /// The record's `metadata`: a JSON object. Optional fields are left out, never null.
    pub fn details(&self) -> Value {
        match self {
            AuditEvent::OAuth(event) => event.details(),
            AuditEvent::Transaction(event) => event.details(),
            AuditEvent::UserRegistered(Registration::Created) => json!({"outcome": "created"}),
            AuditEvent::UserRegistered(Registration::AlreadyRegistered) => {
                json!({"outcome": "already_registered"})
            }
            AuditEvent::UserRegistered(Registration::Cli { role }) => {
                json!({"outcome": "created", "via": "cli", "role": role})
            }
            AuditEvent::EmailVerificationSent
            | AuditEvent::EmailVerified
            | AuditEvent::AdminUserUnlocked
            | AuditEvent::MfaTotpSetupStarted
            | AuditEvent::MfaTotpDisabled => json!({}),
            AuditEvent::LoginSuccess { session_id, method } => match method {
                LoginMethod::Password { rehashed } => {
                    json!({"method": "password", "session_id": session_id, "rehashed": rehashed})
                }
                LoginMethod::PasswordAnd(factor) => json!({
                    "method": format!("password+{}", factor.name()),
                    "session_id": session_id,
                }),
                LoginMethod::Passkey => json!({"method": "passkey", "session_id": session_id}),
            },
            AuditEvent::LoginFailure { reason, by_passkey } => {
                let mut details = json!({"reason": reason});
                if *by_passkey {
                    details["method"] = json!("passkey");
                }
                details
            }
            AuditEvent::LoginLocked { lock_seconds } => json!({"lock_seconds": lock_seconds}),
            AuditEvent::LoginNewDevice {
                browser,
                os,
                network,
            } => json!({"browser": browser, "os": os, "network": network}),
            AuditEvent::SessionCreated { session_id, state } => {
                json!({"session_id": session_id, "state": state.as_str()})
            }
            AuditEvent::SessionRotated { session_id, reason } => {
                json!({"session_id": session_id, "reason": reason})
            }
            AuditEvent::SessionLogout { session_id } => json!({"session_id": session_id}),
            AuditEvent::SessionRevoked { session_id, reason } => {
                json!({"session_id": session_id, "reason": reason})
            }
            AuditEvent::Refused {
                session_id,
                refusal,
                repeats,
            } => {
                let mut details = json!({"session_id": session_id});
                if let RepeatedRefusal::Csrf { header_present } = refusal {
                    details["header_present"] = json!(header_present);
                }
                // The first of a window stands alone; later ones say how many it stands for.
                if *repeats > 1 {
                    details["repeats"] = json!(repeats);
                }
                details
            }
            AuditEvent::RateLimitExceeded {
                limit,
                window_seconds,
            } => json!({"scope": "auth", "limit": limit, "window_seconds": window_seconds}),
            AuditEvent::AdminUserUpdated {
                role,
                disabled,
                sessions_revoked,
            } => json!({
                "role": role,
                "disabled": disabled,
                "sessions_revoked": sessions_revoked,
            }),
            AuditEvent::AccountDisabledInactive {
                inactivity_days,
                last_login_at,
                sessions_revoked,
            } => {
                let mut details = json!({
                    "inactivity_days": inactivity_days,
                    "sessions_revoked": sessions_revoked,
                });
                if let Some(at) = last_login_at {
                    details["last_login_at"] = json!(at);
                }
                details
            }
            AuditEvent::MfaChallengeIssued {
                session_id,
                methods,
            } => json!({"session_id": session_id, "methods": methods}),
            AuditEvent::MfaTotpEnabled {
                recovery_codes_issued,
            } => json!({"recovery_codes_issued": recovery_codes_issued}),
            AuditEvent::FactorUsed {
                session_id, step, ..
            } => {
                let step = match step {
                    FactorStep::Session(state) => state.as_str(),
                    FactorStep::Passwordless => "passwordless",
                    FactorStep::ScaLogin => "sca_login",
                };
                json!({"session_id": session_id, "step": step})
            }
            AuditEvent::CodeFailure { factor, reason } => {
                json!({"reason": reason, "factor": factor.name()})
            }
            AuditEvent::MfaRecoveryCodesRegenerated { count } => json!({"count": count}),
            AuditEvent::MfaWebauthnRegistered {
                credential,
                name,
                recovery_codes_issued,
            } => json!({
                "credential": credential,
                "name": name,
                "recovery_codes_issued": recovery_codes_issued,
            }),
            AuditEvent::MfaWebauthnFailure {
                reason,
                during_registration,
            } => {
                let mut details = json!({"reason": reason});
                if *during_registration {
                    details["step"] = json!("registration");
                }
                details
            }
            AuditEvent::MfaWebauthnDeleted { credential }
            | AuditEvent::MfaWebauthnRenamed { credential } => json!({"credential": credential}),
            AuditEvent::StepUpConfirmed { session_id } => {
                json!({"session_id": session_id, "action": "step_up.confirm"})
            }
            AuditEvent::StepUpSuccess { session_id, factor } => {
                json!({"session_id": session_id, "method": factor.name()})
            }
            AuditEvent::PasswordResetRequested { account_found } => {
                json!({"account_found": account_found})
            }
            AuditEvent::PasswordReset { sessions_revoked }
            | AuditEvent::PasswordChanged { sessions_revoked } => {
                json!({"sessions_revoked": sessions_revoked})
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);
    const ID_JSON: &str = "01900000-0000-7000-8000-000000000001";

    /// The name and the metadata exactly as the audit trail stores them (sorted keys).
    fn written(event: AuditEvent) -> (String, String) {
        (
            event.name().to_owned(),
            crate::storage::db::audit::canonical_json(&event.details()),
        )
    }

    fn expect(event: AuditEvent, name: &str, metadata: &str) {
        let metadata = metadata.replace("ID", ID_JSON);
        assert_eq!(written(event), (name.to_owned(), metadata));
    }

    #[test]
    fn account_events() {
        expect(
            AuditEvent::UserRegistered(Registration::Created),
            "user.registered",
            r#"{"outcome":"created"}"#,
        );
        expect(
            AuditEvent::UserRegistered(Registration::AlreadyRegistered),
            "user.registered",
            r#"{"outcome":"already_registered"}"#,
        );
        expect(
            AuditEvent::UserRegistered(Registration::Cli { role: Role::Admin }),
            "user.registered",
            r#"{"outcome":"created","role":"admin","via":"cli"}"#,
        );
        expect(
            AuditEvent::EmailVerificationSent,
            "email.verification_sent",
            "{}",
        );
        expect(AuditEvent::EmailVerified, "email.verified", "{}");
        expect(
            AuditEvent::PasswordResetRequested {
                account_found: false,
            },
            "password.reset_requested",
            r#"{"account_found":false}"#,
        );
        expect(
            AuditEvent::PasswordReset {
                sessions_revoked: 2,
            },
            "password.reset",
            r#"{"sessions_revoked":2}"#,
        );
        expect(
            AuditEvent::PasswordChanged {
                sessions_revoked: 0,
            },
            "password.changed",
            r#"{"sessions_revoked":0}"#,
        );
    }

    #[test]
    fn login_events() {
        expect(
            AuditEvent::LoginSuccess {
                session_id: ID,
                method: LoginMethod::Password { rehashed: true },
            },
            "login.success",
            r#"{"method":"password","rehashed":true,"session_id":"ID"}"#,
        );
        for (factor, method) in [
            (Factor::Totp, "password+totp"),
            (Factor::RecoveryCode, "password+recovery_code"),
            (Factor::Passkey, "password+webauthn"),
        ] {
            expect(
                AuditEvent::LoginSuccess {
                    session_id: ID,
                    method: LoginMethod::PasswordAnd(factor),
                },
                "login.success",
                &format!(r#"{{"method":"{method}","session_id":"ID"}}"#),
            );
        }
        expect(
            AuditEvent::LoginSuccess {
                session_id: ID,
                method: LoginMethod::Passkey,
            },
            "login.success",
            r#"{"method":"passkey","session_id":"ID"}"#,
        );
        for (reason, text) in [
            (LoginFailure::InvalidCredentials, "invalid_credentials"),
            (LoginFailure::AccountLocked, "account_locked"),
            (LoginFailure::AccountDisabled, "account_disabled"),
            (LoginFailure::EmailNotVerified, "email_not_verified"),
            (LoginFailure::InvalidSecondFactor, "invalid_second_factor"),
        ] {
            expect(
                AuditEvent::LoginFailure {
                    reason,
                    by_passkey: false,
                },
                "login.failure",
                &format!(r#"{{"reason":"{text}"}}"#),
            );
        }
        expect(
            AuditEvent::LoginFailure {
                reason: LoginFailure::AccountDisabled,
                by_passkey: true,
            },
            "login.failure",
            r#"{"method":"passkey","reason":"account_disabled"}"#,
        );
        expect(
            AuditEvent::LoginLocked { lock_seconds: 60 },
            "login.locked",
            r#"{"lock_seconds":60}"#,
        );
        expect(
            AuditEvent::LoginNewDevice {
                browser: "Firefox",
                os: "Linux",
                network: "203.0.113.0/24".to_owned(),
            },
            "login.new_device",
            r#"{"browser":"Firefox","network":"203.0.113.0/24","os":"Linux"}"#,
        );
        expect(
            AuditEvent::RateLimitExceeded {
                limit: 10,
                window_seconds: 60,
            },
            "rate_limit.exceeded",
            r#"{"limit":10,"scope":"auth","window_seconds":60}"#,
        );
    }

    #[test]
    fn session_events() {
        expect(
            AuditEvent::SessionCreated {
                session_id: ID,
                state: SessionState::MfaPending,
            },
            "session.created",
            r#"{"session_id":"ID","state":"mfa_pending"}"#,
        );
        for (reason, text) in [
            (Rotation::MfaCompleted, "mfa_completed"),
            (Rotation::RoleChanged, "role_changed"),
        ] {
            expect(
                AuditEvent::SessionRotated {
                    session_id: ID,
                    reason,
                },
                "session.rotated",
                &format!(r#"{{"reason":"{text}","session_id":"ID"}}"#),
            );
        }
        expect(
            AuditEvent::SessionLogout { session_id: ID },
            "session.logout",
            r#"{"session_id":"ID"}"#,
        );
        for (reason, text) in [
            (Revocation::UserRequest, "user_request"),
            (Revocation::RevokeOthers, "revoke_others"),
            (Revocation::AccountDisabled, "account_disabled"),
            (Revocation::PasswordReset, "password_reset"),
            (Revocation::PasswordChanged, "password_changed"),
        ] {
            expect(
                AuditEvent::SessionRevoked {
                    session_id: ID,
                    reason,
                },
                "session.revoked",
                &format!(r#"{{"reason":"{text}","session_id":"ID"}}"#),
            );
        }
    }

    #[test]
    fn repeated_refusals() {
        expect(
            AuditEvent::Refused {
                session_id: ID,
                refusal: RepeatedRefusal::Csrf {
                    header_present: false,
                },
                repeats: 1,
            },
            "csrf.failure",
            r#"{"header_present":false,"session_id":"ID"}"#,
        );
        expect(
            AuditEvent::Refused {
                session_id: ID,
                refusal: RepeatedRefusal::Csrf {
                    header_present: true,
                },
                repeats: 10,
            },
            "csrf.failure",
            r#"{"header_present":true,"repeats":10,"session_id":"ID"}"#,
        );
        expect(
            AuditEvent::Refused {
                session_id: ID,
                refusal: RepeatedRefusal::StepUp,
                repeats: 1,
            },
            "step_up.required",
            r#"{"session_id":"ID"}"#,
        );
        expect(
            AuditEvent::Refused {
                session_id: ID,
                refusal: RepeatedRefusal::StepUp,
                repeats: 100,
            },
            "step_up.required",
            r#"{"repeats":100,"session_id":"ID"}"#,
        );
    }

    #[test]
    fn transaction_events() {
        expect(
            AuditEvent::Transaction(TransactionEvent::Created {
                transaction_id: ID,
                tx_hash: "h".into(),
                payments: 3,
            }),
            "transaction.created",
            r#"{"payments":3,"transaction_id":"ID","tx_hash":"h"}"#,
        );
        expect(
            AuditEvent::Transaction(TransactionEvent::Confirmed {
                transaction_id: ID,
                tx_hash: "h".into(),
                linking: Linking::Server,
                jti: ID,
            }),
            "transaction.confirmed",
            r#"{"jti":"ID","linking":"server","transaction_id":"ID","tx_hash":"h"}"#,
        );
        for (reason, text) in [
            (
                TransactionFailure::AlreadyConfirmed,
                r#""reason":"already_confirmed""#,
            ),
            (TransactionFailure::Expired, r#""reason":"expired""#),
            (
                TransactionFailure::InvalidCeremony,
                r#""reason":"invalid_ceremony""#,
            ),
            (
                TransactionFailure::Passkey(PasskeyFailure::UserNotVerified),
                r#""passkey_failure":"user_not_verified","reason":"webauthn_failed""#,
            ),
            (
                TransactionFailure::Code(CodeFailure::ReplayedCode),
                r#""reason":"replayed_code""#,
            ),
        ] {
            expect(
                AuditEvent::Transaction(TransactionEvent::Failed {
                    transaction_id: ID,
                    reason,
                }),
                "transaction.failed",
                &format!(r#"{{{text},"transaction_id":"ID"}}"#),
            );
        }
    }

    #[test]
    fn admin_events() {
        expect(
            AuditEvent::AdminUserUpdated {
                role: Change {
                    from: Role::User,
                    to: Role::Staff,
                },
                disabled: Change {
                    from: false,
                    to: true,
                },
                sessions_revoked: 3,
            },
            "admin.user_updated",
            r#"{"disabled":{"from":false,"to":true},"role":{"from":"user","to":"staff"},"sessions_revoked":3}"#,
        );
        expect(AuditEvent::AdminUserUnlocked, "admin.user_unlocked", "{}");
        expect(
            AuditEvent::AccountDisabledInactive {
                inactivity_days: 90,
                last_login_at: None,
                sessions_revoked: 1,
            },
            "account.disabled_inactive",
            r#"{"inactivity_days":90,"sessions_revoked":1}"#,
        );
    }

    #[test]
    fn second_factor_events() {
        expect(
            AuditEvent::MfaChallengeIssued {
                session_id: ID,
                methods: vec!["totp", "webauthn", "recovery_code"],
            },
            "mfa.challenge_issued",
            r#"{"methods":["totp","webauthn","recovery_code"],"session_id":"ID"}"#,
        );
        expect(
            AuditEvent::MfaTotpSetupStarted,
            "mfa.totp.setup_started",
            "{}",
        );
        expect(
            AuditEvent::MfaTotpEnabled {
                recovery_codes_issued: true,
            },
            "mfa.totp.enabled",
            r#"{"recovery_codes_issued":true}"#,
        );
        expect(AuditEvent::MfaTotpDisabled, "mfa.totp.disabled", "{}");
        for (factor, name) in [
            (Factor::Totp, "mfa.totp.success"),
            (Factor::RecoveryCode, "mfa.recovery_code.used"),
            (Factor::Passkey, "mfa.webauthn.success"),
        ] {
            expect(
                AuditEvent::FactorUsed {
                    factor,
                    session_id: ID,
                    step: FactorStep::Session(SessionState::Active),
                },
                name,
                r#"{"session_id":"ID","step":"active"}"#,
            );
        }
        expect(
            AuditEvent::FactorUsed {
                factor: Factor::Passkey,
                session_id: ID,
                step: FactorStep::Passwordless,
            },
            "mfa.webauthn.success",
            r#"{"session_id":"ID","step":"passwordless"}"#,
        );
        for (factor, reason, name, text) in [
            (
                Factor::Totp,
                CodeFailure::WrongCode,
                "mfa.totp.failure",
                r#"{"factor":"totp","reason":"wrong_code"}"#,
            ),
            (
                Factor::Totp,
                CodeFailure::ReplayedCode,
                "mfa.totp.failure",
                r#"{"factor":"totp","reason":"replayed_code"}"#,
            ),
            (
                Factor::RecoveryCode,
                CodeFailure::WrongRecoveryCode,
                "mfa.recovery_code.failure",
                r#"{"factor":"recovery_code","reason":"wrong_recovery_code"}"#,
            ),
        ] {
            expect(AuditEvent::CodeFailure { factor, reason }, name, text);
        }
        expect(
            AuditEvent::MfaRecoveryCodesRegenerated { count: 10 },
            "mfa.recovery_codes.regenerated",
            r#"{"count":10}"#,
        );
        expect(
            AuditEvent::StepUpConfirmed { session_id: ID },
            "step_up.success",
            r#"{"action":"step_up.confirm","session_id":"ID"}"#,
        );
        expect(
            AuditEvent::StepUpSuccess {
                session_id: ID,
                factor: Factor::RecoveryCode,
            },
            "step_up.success",
            r#"{"method":"recovery_code","session_id":"ID"}"#,
        );
    }

    #[test]
    fn passkey_events() {
        expect(
            AuditEvent::MfaWebauthnRegistered {
                credential: ID,
                name: "Laptop".to_owned(),
                recovery_codes_issued: false,
            },
            "mfa.webauthn.registered",
            r#"{"credential":"ID","name":"Laptop","recovery_codes_issued":false}"#,
        );
        expect(
            AuditEvent::MfaWebauthnRenamed { credential: ID },
            "mfa.webauthn.renamed",
            r#"{"credential":"ID"}"#,
        );
        expect(
            AuditEvent::MfaWebauthnDeleted { credential: ID },
            "mfa.webauthn.deleted",
            r#"{"credential":"ID"}"#,
        );
        expect(
            AuditEvent::MfaWebauthnFailure {
                reason: PasskeyFailure::WrongOrigin,
                during_registration: true,
            },
            "mfa.webauthn.failure",
            r#"{"reason":"wrong_origin","step":"registration"}"#,
        );
        for (reason, text) in [
            (PasskeyFailure::StorageError, "storage_error"),
            (PasskeyFailure::UnknownCredential, "unknown_credential"),
            (
                PasskeyFailure::CredentialOfAnotherUser,
                "credential_of_another_user",
            ),
            (
                PasskeyFailure::UnreadableCredential,
                "unreadable_credential",
            ),
            (PasskeyFailure::WrongUserHandle, "wrong_user_handle"),
            (PasskeyFailure::WrongCeremony, "wrong_ceremony"),
            (PasskeyFailure::CounterRegression, "counter_regression"),
            (PasskeyFailure::UserNotVerified, "user_not_verified"),
            (PasskeyFailure::WrongOrigin, "wrong_origin"),
            (PasskeyFailure::WrongRpId, "wrong_rp_id"),
            (PasskeyFailure::WrongChallenge, "wrong_challenge"),
            (PasskeyFailure::VerificationFailed, "verification_failed"),
            (
                PasskeyFailure::AttestationUntrusted,
                "attestation_untrusted",
            ),
            (PasskeyFailure::AaguidNotAllowed, "aaguid_not_allowed"),
            (
                PasskeyFailure::AuthenticatorCompromised,
                "authenticator_compromised",
            ),
            (
                PasskeyFailure::SyncedPasskeyNotAllowed,
                "synced_passkey_not_allowed",
            ),
        ] {
            expect(
                AuditEvent::MfaWebauthnFailure {
                    reason,
                    during_registration: false,
                },
                "mfa.webauthn.failure",
                &format!(r#"{{"reason":"{text}"}}"#),
            );
        }
    }
}
