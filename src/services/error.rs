//! The one error type of the service layer: every outcome a use case can refuse with.
//! The HTTP layer maps each variant once to the contract's status and `code`.

use crate::crypto::password::PasswordHashError;
use crate::services::passwords::WeakPasswordReason;
use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("email not verified")]
    EmailNotVerified,
    #[error("account disabled")]
    AccountDisabled,
    #[error("account locked")]
    AccountLocked { retry_after_secs: u64 },
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64 },
    #[error("weak password")]
    WeakPassword(Vec<WeakPasswordReason>),
    #[error("invalid or expired token")]
    InvalidToken,
    #[error("not authenticated")]
    NotAuthenticated,
    #[error("second factor required")]
    MfaRequired,
    #[error("csrf token missing or wrong")]
    CsrfFailed,
    #[error("forbidden")]
    Forbidden,
    #[error("not found")]
    NotFound,
    #[error("wrong or replayed second-factor code")]
    InvalidMfaCode,
    #[error("webauthn verification failed")]
    WebauthnFailed { during_registration: bool },
    /// A passkey the deployment's policy refuses (docs/API.md §11): `webauthn_failed`
    /// with a message that says why.
    #[error("passkey refused by policy: {reason:?}")]
    PasskeyRefused {
        reason: crate::services::mfa::PasskeyRefusal,
        during_registration: bool,
    },
    #[error("unknown, used or expired ceremony")]
    InvalidCeremony,
    #[error("totp already enabled")]
    TotpAlreadyEnabled,
    #[error("this second factor is not enrolled")]
    MfaMethodNotEnrolled,
    #[error("a fresh second factor is required")]
    StepUpRequired {
        max_age_secs: u64,
        methods: Vec<&'static str>,
    },
    #[error("the password must be confirmed first")]
    ReauthenticationRequired { max_age_secs: u64 },
    #[error("a second factor must be enrolled first")]
    MfaEnrollmentRequired,
    #[error("the transaction is confirmed or expired")]
    InvalidTransaction,
    /// A payment authorization request is allowed only once its §9 transaction is confirmed.
    #[error("confirm transaction {transaction_id} first")]
    TransactionConfirmationRequired { transaction_id: uuid::Uuid },
    /// Fields that break the request's rules (`422 validation_error` with `fields`), found
    /// by a service rather than by the JSON schema (payment details).
    #[error("validation failed")]
    Validation(std::collections::BTreeMap<String, String>),
    #[error("unknown or expired authorization request")]
    InvalidRequestId,
    #[error("the OAuth client cannot be changed here: {0}")]
    ClientNotChangeable(&'static str),
    #[error("an OAuth client with this id exists")]
    ClientExists,
    #[error("invalid client metadata")]
    InvalidClientMetadata(Vec<String>),
    #[error("the last active admin cannot be demoted or disabled")]
    LastAdmin,
    #[error("a dependency is unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type ServiceResult<T> = Result<T, ServiceError>;

impl From<StorageError> for ServiceError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::Unavailable(detail) => ServiceError::Unavailable(detail),
            other => ServiceError::Internal(anyhow::Error::new(other)),
        }
    }
}

impl From<PasswordHashError> for ServiceError {
    fn from(error: PasswordHashError) -> Self {
        ServiceError::Internal(anyhow::Error::new(error))
    }
}
