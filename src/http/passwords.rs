//! Password reset (by email) and change (docs/API.md §3).

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::{CodeOnly, EmailBody, answered_before_lookup, parse_email};
use super::error::ApiResult;
use super::error_docs::{ACTIVE, BODY, CSRF, PRE_AUTH, PreAuthErrors, STEP_UP, error_responses};
use super::extract::{ClientContext, FreshIfEnrolled, JsonBody, PreAuthRateLimit};

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ResetConfirm {
    /// The emailed token (surrounding whitespace is ignored).
    #[schema(pattern = "^[A-Za-z0-9_-]{43}$")]
    pub token: String,
    /// The password policy: see `Registration.password`.
    #[schema(min_length = 8, max_length = 128)]
    pub new_password: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct PasswordChange {
    pub current_password: String,
    /// The password policy: see `Registration.password`.
    #[schema(min_length = 8, max_length = 128)]
    pub new_password: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PasswordReset {
    pub code: &'static str,
    pub sessions_revoked: u64,
}

/// Always `202 reset_email_sent`, answered before any look-up: the response and its
/// timing are the same whether or not the account exists. The work runs in the
/// background; its failures are logged.
#[utoipa::path(
    post,
    path = "/auth/password/reset/request",
    tag = "passwords",
    summary = "Email a password-reset link",
    request_body = EmailBody,
    responses(
        (status = 202, description = "`reset_email_sent`, answered before any look-up: the same body and timing whether or not the account exists", body = CodeOnly),
        PreAuthErrors,
    ),
)]
pub async fn request_reset(
    _: PreAuthRateLimit,
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    JsonBody(body): JsonBody<EmailBody>,
) -> ApiResult<impl IntoResponse> {
    let email = parse_email(&body.email)?;
    Ok(answered_before_lookup(
        "reset_email_sent",
        ctx,
        |ctx| async move { state.accounts.request_password_reset(&email, &ctx).await },
    ))
}

error_responses!(
    ConfirmResetErrors = PRE_AUTH,
    BODY,
    &[
        (400, "`invalid_token`: unknown, used or expired"),
        (
            403,
            "`account_disabled`: the account was disabled after the link was sent; nothing changes",
        ),
        (
            422,
            "`weak_password` (with `reasons`; `reused` under `PRIVILEGED_POLICY=pci`)",
        ),
    ]
);

#[utoipa::path(
    post,
    path = "/auth/password/reset/confirm",
    tag = "passwords",
    summary = "Set a new password with the emailed token; ends every session",
    request_body = ResetConfirm,
    responses(
        (status = 200, description = "`password_reset` with `sessions_revoked`", body = PasswordReset),
        ConfirmResetErrors,
    ),
)]
pub async fn confirm_reset(
    _: PreAuthRateLimit,
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    JsonBody(body): JsonBody<ResetConfirm>,
) -> ApiResult<Json<PasswordReset>> {
    let sessions_revoked = state
        .accounts
        .confirm_password_reset(body.token.trim(), &body.new_password, &ctx)
        .await?;
    Ok(Json(PasswordReset {
        code: "password_reset",
        sessions_revoked,
    }))
}

error_responses!(
    /// `FreshIfEnrolled`: no enrollment check, so no `mfa_enrollment_required`.
    ChangeErrors = ACTIVE,
    CSRF,
    STEP_UP,
    BODY,
    &[
        (
            401,
            "`invalid_credentials`: wrong current password (counts toward the lockout)",
        ),
        (422, "`weak_password` (with `reasons`; `reused` under `PRIVILEGED_POLICY=pci`)"),
        (429, "`account_locked` (with `retry_after` and a `Retry-After` header)"),
    ]
);

#[utoipa::path(
    post,
    path = "/auth/password/change",
    tag = "passwords",
    summary = "Change the password (fresh MFA when a second factor is enrolled); ends the other sessions",
    request_body = PasswordChange,
    responses(
        (status = 200, description = "`password_changed` with `sessions_revoked`", body = PasswordReset),
        ChangeErrors,
    ),
    security(("session_cookie" = [], "csrf_header" = [])),
)]
pub async fn change(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    FreshIfEnrolled(session): FreshIfEnrolled,
    JsonBody(body): JsonBody<PasswordChange>,
) -> ApiResult<Json<PasswordReset>> {
    let sessions_revoked = state
        .accounts
        .change_password(&session, &body.current_password, &body.new_password, &ctx)
        .await?;
    Ok(Json(PasswordReset {
        code: "password_changed",
        sessions_revoked,
    }))
}
