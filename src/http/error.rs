//! The HTTP layer's one error type, mapped once to docs/API.md's JSON bodies and statuses.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

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

    /// Status and the JSON body.
    fn parts(&self) -> (StatusCode, ErrorBody) {
        let (status, body) = match self {
            ApiError::MalformedRequest(detail) => (
                StatusCode::BAD_REQUEST,
                ErrorBody::new(
                    "malformed_request",
                    format!(
                        "The request body is not valid JSON or not sent as application/json: {detail}"
                    ),
                ),
            ),
            ApiError::Validation(fields) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorBody {
                    fields: Some(fields.clone()),
                    ..ErrorBody::new("validation_error", "Some fields are missing or invalid.")
                },
            ),
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorBody::new(
                    "payload_too_large",
                    "The request body is larger than 64 KiB.",
                ),
            ),
            ApiError::NotFound => (
                StatusCode::NOT_FOUND,
                ErrorBody::new("not_found", "Not found."),
            ),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorBody::new(
                    "method_not_allowed",
                    "This method is not allowed on this route.",
                ),
            ),
            ApiError::Service(error) => service_parts(error),
        };
        (status, body)
    }
}

fn service_parts(error: &ServiceError) -> (StatusCode, ErrorBody) {
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
        ServiceError::AccountLocked { .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            "account_locked",
            "Too many failed attempts; the account is locked for a while.",
        ),
        ServiceError::RateLimited { .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "Too many requests; try again later.",
        ),
        ServiceError::WeakPassword(reasons) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "weak_password",
            weak_password_message(reasons),
        ),
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
        ServiceError::PasskeyRefused {
            reason,
            during_registration,
        } => (
            if *during_registration {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::UNAUTHORIZED
            },
            "webauthn_failed",
            reason.message(),
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
        ServiceError::StepUpRequired { .. } => (
            StatusCode::UNAUTHORIZED,
            "mfa_step_up_required",
            "Confirm with a second factor to continue.",
        ),
        ServiceError::ReauthenticationRequired { .. } => (
            StatusCode::UNAUTHORIZED,
            "reauthentication_required",
            "Confirm your password (send current_password) to set up your first second factor.",
        ),
        ServiceError::TransactionConfirmationRequired { .. } => (
            StatusCode::FORBIDDEN,
            "transaction_confirmation_required",
            "Confirm the payment (transaction_id) with your passkey or authenticator app first.",
        ),
        ServiceError::InvalidTransaction => (
            StatusCode::BAD_REQUEST,
            "invalid_transaction",
            "This transaction is already confirmed or has expired; start a new one.",
        ),
        ServiceError::Validation(_) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "Some fields are missing or invalid.",
        ),
        ServiceError::InvalidRequestId => (
            StatusCode::BAD_REQUEST,
            "invalid_request_id",
            "This sign-in request is unknown, finished or expired; start again from the application.",
        ),
        ServiceError::ClientNotChangeable(_) => (
            StatusCode::CONFLICT,
            "client_not_changeable",
            "This client comes from OIDC_CLIENTS_FILE; change it there.",
        ),
        ServiceError::ClientExists => (
            StatusCode::CONFLICT,
            "client_exists",
            "A client with this client_id exists.",
        ),
        ServiceError::InvalidClientMetadata(_) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_client_metadata",
            "The client metadata is invalid; see fields.",
        ),
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
    let mut body = ErrorBody::new(code, message);
    match error {
        ServiceError::AccountLocked { retry_after_secs }
        | ServiceError::RateLimited { retry_after_secs } => {
            body.retry_after = Some(*retry_after_secs);
        }
        ServiceError::WeakPassword(reasons) => body.reasons = Some(reasons.clone()),
        ServiceError::StepUpRequired {
            max_age_secs,
            methods,
        } => {
            body.max_age = Some(*max_age_secs);
            body.methods = Some(methods.iter().map(|&m| m.to_owned()).collect());
        }
        ServiceError::ReauthenticationRequired { max_age_secs } => {
            body.max_age = Some(*max_age_secs);
        }
        ServiceError::Validation(fields) => body.fields = Some(fields.clone()),
        ServiceError::TransactionConfirmationRequired { transaction_id } => {
            body.transaction_id = Some(*transaction_id);
        }
        ServiceError::InvalidClientMetadata(problems) => {
            // Each problem reads "field: reason" (services::oauth::clients::validate).
            let mut fields = BTreeMap::new();
            for problem in problems {
                let (field, reason) = problem.split_once(": ").unwrap_or(("metadata", problem));
                let field = field.split('[').next().unwrap_or(field).to_owned();
                fields
                    .entry(field)
                    .and_modify(|r: &mut String| {
                        r.push_str("; ");
                        r.push_str(reason);
                    })
                    .or_insert_with(|| reason.to_owned());
            }
            body.fields = Some(fields);
        }
        _ => {}
    }
    (status, body)
}

fn weak_password_message(reasons: &[WeakPasswordReason]) -> &'static str {
    match reasons.first() {
        Some(WeakPasswordReason::TooShort) => "The password is too short.",
        Some(WeakPasswordReason::TooLong) => "The password is too long.",
        Some(WeakPasswordReason::Banned) => "The password is too common.",
        Some(WeakPasswordReason::TooGuessable) => "The password is too easy to guess.",
        Some(WeakPasswordReason::ContainsEmail) => "The password contains the email address.",
        Some(WeakPasswordReason::Breached) => {
            "The password appears in a data breach; choose another."
        }
        Some(WeakPasswordReason::Reused) => {
            "The password was one of the account's last four; choose another."
        }
        None => "The password is too weak.",
    }
}

impl ApiError {
    /// `Retry-After`: seconds to wait, for the variants that carry them.
    fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::Service(
                ServiceError::AccountLocked { retry_after_secs }
                | ServiceError::RateLimited { retry_after_secs },
            ) => Some(*retry_after_secs),
            _ => None,
        }
    }

    /// `WWW-Authenticate` (RFC 9470 style) for a step-up challenge.
    fn www_authenticate(&self) -> Option<HeaderValue> {
        match self {
            ApiError::Service(ServiceError::StepUpRequired { max_age_secs, .. }) => {
                HeaderValue::from_str(&format!(
                    "Session error=\"insufficient_user_authentication\", max_age={max_age_secs}"
                ))
                .ok()
            }
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = self.parts();
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(value) = self.www_authenticate() {
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

// `IntoResponse` above serializes exactly this. Fields are declared in alphabetical
// order: the body used to be a `serde_json::Map` (sorted keys, serde_json without
// `preserve_order`), and keeping that order keeps every error body byte-for-byte the same.
/// The JSON body of every error.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Machine-readable, snake_case (docs/API.md §1).
    pub code: String,
    /// `validation_error`: field name → reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<BTreeMap<String, String>>,
    /// `mfa_step_up_required`, `reauthentication_required`: the freshness required, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u64>,
    /// For people; never internal details.
    pub message: String,
    /// `mfa_step_up_required`: the second factors the user can use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    /// `weak_password`: every rule the password broke.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasons: Option<Vec<WeakPasswordReason>>,
    /// `rate_limited`, `account_locked`: seconds to wait (also in `Retry-After`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// `transaction_confirmation_required`: the transaction to confirm (§9).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<uuid::Uuid>,
}

impl ErrorBody {
    fn new(code: &str, message: impl Into<String>) -> Self {
        ErrorBody {
            code: code.to_owned(),
            fields: None,
            max_age: None,
            message: message.into(),
            methods: None,
            reasons: None,
            retry_after: None,
            transaction_id: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(error: ApiError) -> (StatusCode, axum::http::HeaderMap, String) {
        let response = error.into_response();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        (
            parts.status,
            parts.headers,
            String::from_utf8(bytes.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn bodies_keep_their_bytes_and_headers_follow_the_variant() {
        let (status, headers, body) = answer(
            ServiceError::StepUpRequired {
                max_age_secs: 300,
                methods: vec!["totp", "webauthn"],
            }
            .into(),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            body,
            r#"{"code":"mfa_step_up_required","max_age":300,"message":"Confirm with a second factor to continue.","methods":["totp","webauthn"]}"#
        );
        assert_eq!(
            headers[header::WWW_AUTHENTICATE],
            "Session error=\"insufficient_user_authentication\", max_age=300"
        );
        assert!(headers.get(header::RETRY_AFTER).is_none());

        let (_, headers, body) = answer(
            ServiceError::RateLimited {
                retry_after_secs: 7,
            }
            .into(),
        )
        .await;
        assert_eq!(
            body,
            r#"{"code":"rate_limited","message":"Too many requests; try again later.","retry_after":7}"#
        );
        assert_eq!(headers[header::RETRY_AFTER], "7");

        // Same `max_age` field, but no challenge header: not a step-up.
        let (_, headers, body) =
            answer(ServiceError::ReauthenticationRequired { max_age_secs: 60 }.into()).await;
        assert!(body.starts_with(r#"{"code":"reauthentication_required","max_age":60,"message":"#));
        assert!(headers.get(header::WWW_AUTHENTICATE).is_none());

        let (_, _, body) = answer(ApiError::field("email", "is required")).await;
        assert_eq!(
            body,
            r#"{"code":"validation_error","fields":{"email":"is required"},"message":"Some fields are missing or invalid."}"#
        );

        let (_, _, body) = answer(
            ServiceError::WeakPassword(vec![
                WeakPasswordReason::TooShort,
                WeakPasswordReason::Banned,
            ])
            .into(),
        )
        .await;
        assert_eq!(
            body,
            r#"{"code":"weak_password","message":"The password is too short.","reasons":["too_short","banned"]}"#
        );
    }
}
