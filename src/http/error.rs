//! The HTTP layer's one error type, mapped once to docs/API.md's JSON bodies and statuses.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::services::ServiceError;
use crate::services::passwords::WeakPasswordReason;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("malformed request: {0}")]
    MalformedRequest(String),
    #[error("validation failed")]
    Validation(BTreeMap<String, String>),
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn field(name: &str, reason: &str) -> Self {
        ApiError::Validation(BTreeMap::from([(name.to_owned(), reason.to_owned())]))
    }

    /// Status, `code`, message and any extra body fields.
    fn parts(&self) -> (StatusCode, &'static str, String, Map<String, Value>) {
        let mut extra = Map::new();
        let (status, code, message) = match self {
            ApiError::MalformedRequest(detail) => (
                StatusCode::BAD_REQUEST,
                "malformed_request",
                format!(
                    "The request body is not valid JSON or not sent as application/json: {detail}"
                ),
            ),
            ApiError::Validation(fields) => {
                extra.insert("fields".into(), json!(fields));
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation_error",
                    "Some fields are missing or invalid.".into(),
                )
            }
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "The request body is larger than 64 KiB.".into(),
            ),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found", "Not found.".into()),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "This method is not allowed on this route.".into(),
            ),
            ApiError::Service(error) => return service_parts(error),
        };
        (status, code, message, extra)
    }
}

fn service_parts(error: &ServiceError) -> (StatusCode, &'static str, String, Map<String, Value>) {
    let mut extra = Map::new();
    let (status, code, message): (StatusCode, &'static str, &str) = match error {
        ServiceError::InvalidCredentials => (
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "The email or password is wrong.",
        ),
        ServiceError::EmailNotVerified => (
            StatusCode::FORBIDDEN,
            "email_not_verified",
            "Verify your email address before logging in.",
        ),
        ServiceError::AccountDisabled => (
            StatusCode::FORBIDDEN,
            "account_disabled",
            "This account is disabled.",
        ),
        ServiceError::AccountLocked { retry_after_secs } => {
            extra.insert("retry_after".into(), json!(retry_after_secs));
            (
                StatusCode::TOO_MANY_REQUESTS,
                "account_locked",
                "Too many failed attempts; the account is locked for a while.",
            )
        }
        ServiceError::RateLimited { retry_after_secs } => {
            extra.insert("retry_after".into(), json!(retry_after_secs));
            (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "Too many requests; try again later.",
            )
        }
        ServiceError::WeakPassword(reasons) => {
            extra.insert("reasons".into(), json!(reasons));
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                "weak_password",
                weak_password_message(reasons),
            )
        }
        ServiceError::InvalidToken => (
            StatusCode::BAD_REQUEST,
            "invalid_token",
            "The token is unknown, used or expired.",
        ),
        ServiceError::NotAuthenticated => (
            StatusCode::UNAUTHORIZED,
            "not_authenticated",
            "Log in first.",
        ),
        ServiceError::MfaRequired => (
            StatusCode::UNAUTHORIZED,
            "mfa_required",
            "Complete the second factor first.",
        ),
        ServiceError::CsrfFailed => (
            StatusCode::FORBIDDEN,
            "csrf_failed",
            "The X-CSRF-Token header is missing or wrong.",
        ),
        ServiceError::Forbidden => (
            StatusCode::FORBIDDEN,
            "forbidden",
            "You are not allowed to do this.",
        ),
        ServiceError::NotFound => (StatusCode::NOT_FOUND, "not_found", "Not found."),
        ServiceError::InvalidMfaCode => (
            StatusCode::UNAUTHORIZED,
            "invalid_mfa_code",
            "The code is wrong, expired or already used.",
        ),
        ServiceError::WebauthnFailed {
            during_registration,
        } => (
            if *during_registration {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::UNAUTHORIZED
            },
            "webauthn_failed",
            "The authenticator's response could not be verified.",
        ),
        ServiceError::InvalidCeremony => (
            StatusCode::BAD_REQUEST,
            "invalid_ceremony",
            "The ceremony is unknown, already used or expired; start again.",
        ),
        ServiceError::TotpAlreadyEnabled => (
            StatusCode::CONFLICT,
            "totp_already_enabled",
            "TOTP is already enabled; disable it first to set it up again.",
        ),
        ServiceError::MfaMethodNotEnrolled => (
            StatusCode::CONFLICT,
            "mfa_method_not_enrolled",
            "This second factor is not enrolled for the account.",
        ),
        ServiceError::StepUpRequired {
            max_age_secs,
            methods,
        } => {
            extra.insert("max_age".into(), json!(max_age_secs));
            extra.insert("methods".into(), json!(methods));
            (
                StatusCode::UNAUTHORIZED,
                "mfa_step_up_required",
                "Confirm with a second factor to continue.",
            )
        }
        ServiceError::ReauthenticationRequired { max_age_secs } => {
            extra.insert("max_age".into(), json!(max_age_secs));
            (
                StatusCode::UNAUTHORIZED,
                "reauthentication_required",
                "Confirm your password (send current_password) to set up your first second factor.",
            )
        }
        ServiceError::LastAdmin => (
            StatusCode::CONFLICT,
            "last_admin",
            "This is the last active admin: promote another admin first.",
        ),
        ServiceError::MfaEnrollmentRequired => (
            StatusCode::FORBIDDEN,
            "mfa_enrollment_required",
            "Enroll a second factor (TOTP or a passkey) first.",
        ),
        ServiceError::Unavailable(detail) => {
            tracing::error!(error = %detail, "dependency unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "A dependency is unavailable; try again shortly.",
            )
        }
        ServiceError::Internal(detail) => {
            tracing::error!(error = ?detail, "internal error");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "An unexpected error occurred; it has been logged with the request id.",
            )
        }
    };
    (status, code, message.to_owned(), extra)
}

fn weak_password_message(reasons: &[WeakPasswordReason]) -> &'static str {
    match reasons.first() {
        Some(WeakPasswordReason::TooShort) => "The password is too short.",
        Some(WeakPasswordReason::TooLong) => "The password is too long.",
        Some(WeakPasswordReason::Banned) => "The password is too common.",
        Some(WeakPasswordReason::TooGuessable) => "The password is too easy to guess.",
        Some(WeakPasswordReason::ContainsEmail) => "The password contains the email address.",
        None => "The password is too weak.",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message, extra) = self.parts();
        let retry_after = extra.get("retry_after").and_then(Value::as_u64);
        let step_up_max_age = (code == "mfa_step_up_required")
            .then(|| extra.get("max_age").and_then(Value::as_u64))
            .flatten();
        let mut body = Map::new();
        body.insert("code".into(), json!(code));
        body.insert("message".into(), json!(message));
        body.extend(extra);
        let mut response = (status, Json(Value::Object(body))).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(max_age) = step_up_max_age
            && let Ok(value) = HeaderValue::from_str(&format!(
                "Session error=\"insufficient_user_authentication\", max_age={max_age}"
            ))
        {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::PayloadTooLarge;
        }
        ApiError::MalformedRequest(rejection.body_text())
    }
}

/// The JSON body of every error (documentation only; built by `IntoResponse` above).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Machine-readable, snake_case (docs/API.md §1).
    pub code: String,
    /// For people; never internal details.
    pub message: String,
    /// `validation_error`: field name → reason.
    pub fields: Option<std::collections::BTreeMap<String, String>>,
    /// `weak_password`: every rule the password broke.
    pub reasons: Option<Vec<WeakPasswordReason>>,
    /// `rate_limited`, `account_locked`: seconds to wait (also in `Retry-After`).
    pub retry_after: Option<u64>,
    /// `mfa_step_up_required`: the freshness required, in seconds.
    pub max_age: Option<u64>,
    /// `mfa_step_up_required`: the second factors the user can use.
    pub methods: Option<Vec<String>>,
}
