//! TOTP, recovery codes and step-up (docs/API.md §3).

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::{CodeOnly, FactorAnswer, login_ok};
use super::error::ApiResult;
use super::error::ErrorBody;
use super::error_docs::{
    BODY, CSRF, ENROLLING, ENROLLMENT_PROOF, FreshErrors, SESSION, STEP_UP, error_responses,
};
use super::extract::{
    AnySession, ClientContext, FirstFactorEnrollment, Fresh, JsonBody, OptionalJsonBody,
};
use crate::services::mfa::MfaOutcome;
use crate::services::mfa::totp::TotpVerified;

/// A code from the authenticator app (RFC 6238: 6 digits; whitespace is ignored).
#[derive(Deserialize, utoipa::ToSchema)]
pub struct TotpCode {
    #[schema(pattern = "^[0-9]{6}$")]
    pub code: String,
}

/// One of the account's recovery codes: 16 base32 characters, as issued in groups of four
/// (`abcd-efgh-ijkl-mnop`); case, whitespace and dashes are ignored.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct RecoveryCode {
    #[schema(pattern = "^[A-Za-z2-7]{4}(-?[A-Za-z2-7]{4}){3}$")]
    pub code: String,
}

/// The optional body of the routes that start an enrollment (TOTP setup, passkey
/// registration): the first second factor needs the password confirmed when the login is
/// older than `STEP_UP_MAX_AGE_SECONDS`.
#[derive(Deserialize, Default, utoipa::ToSchema)]
pub struct EnrollmentProof {
    /// The account's password; needed only for the first second factor when the login
    /// is older than `STEP_UP_MAX_AGE_SECONDS` (else `401 reauthentication_required`).
    pub current_password: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TotpSetupResponse {
    pub code: &'static str,
    pub secret: String,
    pub otpauth_uri: String,
    pub qr_svg: String,
}

/// `totp_enabled` (with recovery codes), `login_ok` or `mfa_verified`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum TotpAnswer {
    Enabled(RecoveryCodes),
    Factor(FactorAnswer),
}

#[derive(Serialize, utoipa::ToSchema)]
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
        MfaOutcome::LoginCompleted { account, session } => {
            Ok(login_ok(state, jar, &account, &session))
        }
        MfaOutcome::StepUp => Ok(Json(CodeOnly {
            code: "mfa_verified",
        })
        .into_response()),
    }
}

error_responses!(
    /// `FirstFactorEnrollment` + an optional body + the first-factor proof.
    TotpSetupErrors = ENROLLING,
    CSRF,
    STEP_UP,
    BODY,
    ENROLLMENT_PROOF,
    &[(409, "`totp_already_enabled`")]
);

#[utoipa::path(
    post,
    path = "/auth/mfa/totp/setup",
    tag = "mfa",
    summary = "Start TOTP enrollment",
    description = "The first second factor needs proof of the password: a login younger than `STEP_UP_MAX_AGE_SECONDS`, or `current_password` in the body (a wrong one counts toward the lockout). A further factor needs fresh MFA instead. The pending setup belongs to this session and expires after 10 minutes. At most `RATE_LIMIT_ENROLLMENT` (default 10 per 10 minutes) enrollments may be started per session.",
    request_body(content = Option<EnrollmentProof>, description = "optional; `current_password` when the first factor needs it"),
    responses(
        (status = 200, description = "`totp_setup_started`", body = TotpSetupResponse),
        TotpSetupErrors,
    ),
    security(("session_cookie" = [], "csrf_header" = [])),
)]
pub async fn totp_setup(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    FirstFactorEnrollment(session): FirstFactorEnrollment,
    OptionalJsonBody(proof): OptionalJsonBody<EnrollmentProof>,
) -> ApiResult<Json<TotpSetupResponse>> {
    state
        .accounts
        .prove_for_first_factor(&session, proof.current_password.as_deref(), &ctx)
        .await?;
    let setup = state.mfa.totp_setup(&session, &ctx).await?;
    Ok(Json(TotpSetupResponse {
        code: "totp_setup_started",
        secret: setup.secret,
        otpauth_uri: setup.otpauth_uri,
        qr_svg: setup.qr_svg,
    }))
}

error_responses!(
    TotpVerifyErrors = SESSION,
    CSRF,
    BODY,
    &[
        (401, "`invalid_mfa_code` (wrong, expired or replayed)"),
        (
            401,
            "`mfa_step_up_required` when finishing the setup of a further factor after freshness expired",
        ),
        (
            409,
            "`mfa_method_not_enrolled`: nothing to verify, or no TOTP setup pending for this session (another session started it, or it is older than 10 minutes)",
        ),
        (429, "`account_locked`"),
    ]
);

#[utoipa::path(
    post,
    path = "/auth/mfa/totp/verify",
    tag = "mfa",
    summary = "Verify a TOTP code (pending or active session)",
    request_body = TotpCode,
    responses(
        (status = 200, description = "`totp_enabled` with `recovery_codes` (finishing an enrollment; the first factor counts as a verification for the user's own sensitive actions, never for staff or admin routes), `login_ok` (mfa_pending session: rotated, new cookies and `csrf_token`), or `mfa_verified` (active session: step-up refreshed)", body = TotpAnswer),
        TotpVerifyErrors,
    ),
    security(("session_cookie" = [], "csrf_header" = [])),
)]
pub async fn totp_verify(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    AnySession(session): AnySession,
    jar: CookieJar,
    JsonBody(body): JsonBody<TotpCode>,
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

error_responses!(
    RecoveryVerifyErrors = SESSION,
    CSRF,
    BODY,
    &[
        (401, "`invalid_mfa_code`"),
        (409, "`mfa_method_not_enrolled`: no recovery codes left"),
        (429, "`account_locked`"),
    ]
);

#[utoipa::path(
    post,
    path = "/auth/mfa/recovery/verify",
    tag = "mfa",
    summary = "Use a recovery code (pending or active session)",
    request_body = RecoveryCode,
    responses(
        (status = 200, description = "`login_ok` (mfa_pending session) or `mfa_verified` (active session)", body = FactorAnswer),
        RecoveryVerifyErrors,
    ),
    security(("session_cookie" = [], "csrf_header" = [])),
)]
pub async fn recovery_verify(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    AnySession(session): AnySession,
    jar: CookieJar,
    JsonBody(body): JsonBody<RecoveryCode>,
) -> ApiResult<Response> {
    let outcome = state
        .mfa
        .verify_recovery_code(&session, &body.code, &ctx)
        .await?;
    factor_response(&state, jar, outcome).await
}

#[utoipa::path(
    post,
    path = "/auth/mfa/recovery/regenerate",
    tag = "mfa",
    summary = "Replace all recovery codes (fresh MFA)",
    responses(
        (status = 200, description = "`recovery_codes_regenerated` with 10 new codes, shown once", body = RecoveryCodes),
        FreshErrors,
    ),
    security(("session_cookie" = [], "csrf_header" = [])),
)]
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

#[utoipa::path(
    delete,
    path = "/auth/mfa/totp",
    tag = "mfa",
    summary = "Disable TOTP (fresh MFA)",
    responses(
        (status = 200, description = "`totp_disabled`", body = CodeOnly),
        FreshErrors,
        (status = 409, description = "`mfa_method_not_enrolled`", body = ErrorBody),
    ),
    security(("session_cookie" = [], "csrf_header" = [])),
)]
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

#[utoipa::path(
    post,
    path = "/auth/step-up/confirm",
    tag = "mfa",
    summary = "Example sensitive action (fresh MFA)",
    responses(
        (status = 200, description = "`step_up_confirmed`", body = CodeOnly),
        FreshErrors,
    ),
    security(("session_cookie" = [], "csrf_header" = [])),
)]
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
