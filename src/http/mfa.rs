//! TOTP, recovery codes and step-up (API.md §3).

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::{CodeOnly, login_ok};
use super::error::ApiResult;
use super::extract::{ActiveSession, AnySession, ClientContext, Fresh, JsonBody};
use crate::services::mfa::MfaOutcome;
use crate::services::mfa::totp::TotpVerified;

#[derive(Deserialize)]
pub struct CodeBody {
    pub code: String,
}

#[derive(Serialize)]
pub struct TotpSetupResponse {
    pub code: &'static str,
    pub secret: String,
    pub otpauth_uri: String,
    pub qr_svg: String,
}

#[derive(Serialize)]
pub struct RecoveryCodes {
    pub code: &'static str,
    pub recovery_codes: Vec<String>,
}

/// The answer to a correct second factor: `login_ok` with new cookies when it completed
/// a login, `mfa_verified` when it refreshed step-up.
pub async fn factor_response(
    state: &AppState,
    jar: CookieJar,
    outcome: MfaOutcome,
) -> ApiResult<Response> {
    match outcome {
        MfaOutcome::LoginCompleted { user, session } => login_ok(state, jar, &user, &session).await,
        MfaOutcome::StepUp => Ok(Json(CodeOnly {
            code: "mfa_verified",
        })
        .into_response()),
    }
}

pub async fn totp_setup(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    ActiveSession(session): ActiveSession,
) -> ApiResult<Json<TotpSetupResponse>> {
    let setup = state.mfa.totp_setup(&session, &ctx).await?;
    Ok(Json(TotpSetupResponse {
        code: "totp_setup_started",
        secret: setup.secret,
        otpauth_uri: setup.otpauth_uri,
        qr_svg: setup.qr_svg,
    }))
}

pub async fn totp_verify(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    AnySession(session): AnySession,
    jar: CookieJar,
    JsonBody(body): JsonBody<CodeBody>,
) -> ApiResult<Response> {
    match state.mfa.totp_verify(&session, &body.code, &ctx).await? {
        TotpVerified::Enabled { recovery_codes } => Ok(Json(RecoveryCodes {
            code: "totp_enabled",
            recovery_codes,
        })
        .into_response()),
        TotpVerified::Factor(outcome) => factor_response(&state, jar, outcome).await,
    }
}

pub async fn recovery_verify(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    AnySession(session): AnySession,
    jar: CookieJar,
    JsonBody(body): JsonBody<CodeBody>,
) -> ApiResult<Response> {
    let outcome = state
        .mfa
        .verify_recovery_code(&session, &body.code, &ctx)
        .await?;
    factor_response(&state, jar, outcome).await
}

pub async fn recovery_regenerate(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    Fresh(session, _): Fresh,
) -> ApiResult<Json<RecoveryCodes>> {
    let recovery_codes = state.mfa.regenerate_recovery_codes(&session, &ctx).await?;
    Ok(Json(RecoveryCodes {
        code: "recovery_codes_regenerated",
        recovery_codes,
    }))
}

pub async fn totp_disable(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    Fresh(session, _): Fresh,
) -> ApiResult<Json<CodeOnly>> {
    state.mfa.totp_disable(&session, &ctx).await?;
    Ok(Json(CodeOnly {
        code: "totp_disabled",
    }))
}

pub async fn step_up_confirm(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    Fresh(session, _): Fresh,
) -> ApiResult<Json<CodeOnly>> {
    state.mfa.confirm_step_up(&session, &ctx).await?;
    Ok(Json(CodeOnly {
        code: "step_up_confirmed",
    }))
}
