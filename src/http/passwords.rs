//! Password reset (by email) and change (API.md §3).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::{CodeOnly, EmailBody, parse_email};
use super::error::ApiResult;
use super::extract::{ClientContext, FreshIfEnrolled, JsonBody, PreAuthRateLimit};

#[derive(Deserialize)]
pub struct ResetConfirm {
    pub token: String,
    pub new_password: String,
}

#[derive(Deserialize)]
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: String,
}

#[derive(Serialize)]
pub struct PasswordReset {
    pub code: &'static str,
    pub sessions_revoked: u64,
}

/// Always `202 reset_email_sent`, answered before any look-up: the response and its
/// timing are the same whether or not the account exists. The work runs in the
/// background; its failures are logged.
pub async fn request_reset(
    _: PreAuthRateLimit,
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    JsonBody(body): JsonBody<EmailBody>,
) -> ApiResult<impl IntoResponse> {
    let email = parse_email(&body.email)?;
    tokio::spawn(async move {
        if let Err(error) = state.accounts.request_password_reset(&email, &ctx).await {
            tracing::error!(request_id = %ctx.request_id, %error, "password reset request failed");
        }
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(CodeOnly {
            code: "reset_email_sent",
        }),
    ))
}

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
