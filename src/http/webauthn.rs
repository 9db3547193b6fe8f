//! Passkeys (API.md §3): registration, login (passwordless, second factor, step-up),
//! listing and deletion.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;
use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential};

use super::AppState;
use super::auth::{CodeOnly, parse_email};
use super::error::{ApiError, ApiResult};
use super::extract::{
    ActiveSession, ClientContext, Fresh, JsonBody, MaybeSession, OptionalJsonBody,
};
use super::mfa::factor_response;
use crate::services::mfa::{CeremonyStart, PasskeyView};

#[derive(Serialize)]
pub struct CeremonyOptions {
    pub code: &'static str,
    pub ceremony_id: String,
    /// `PublicKeyCredentialCreationOptions` / `…RequestOptions` JSON, binary fields base64url.
    pub options: Value,
}

impl CeremonyOptions {
    fn new(code: &'static str, start: CeremonyStart) -> Json<Self> {
        Json(Self {
            code,
            ceremony_id: start.ceremony_id,
            options: start.options,
        })
    }
}

#[derive(Deserialize)]
pub struct RegisterFinish {
    pub ceremony_id: String,
    pub credential: RegisterPublicKeyCredential,
    pub name: Option<String>,
}

#[derive(Serialize)]
pub struct Registered {
    pub code: &'static str,
    pub credential: PasskeyView,
    /// Present when this passkey is the account's first second factor (shown once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_codes: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
pub struct LoginStart {
    pub email: Option<String>,
}

#[derive(Deserialize)]
pub struct LoginFinish {
    pub ceremony_id: String,
    pub credential: PublicKeyCredential,
}

#[derive(Serialize)]
pub struct CredentialList {
    pub code: &'static str,
    pub credentials: Vec<PasskeyView>,
}

pub async fn register_start(
    State(state): State<AppState>,
    ActiveSession(session): ActiveSession,
) -> ApiResult<Json<CeremonyOptions>> {
    let start = state.mfa.passkey_registration_start(&session).await?;
    Ok(CeremonyOptions::new("webauthn_registration_options", start))
}

pub async fn register_finish(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    ActiveSession(session): ActiveSession,
    JsonBody(body): JsonBody<RegisterFinish>,
) -> ApiResult<impl IntoResponse> {
    if body.name.as_ref().is_some_and(|n| n.chars().count() > 64) {
        return Err(ApiError::field("name", "must be at most 64 characters"));
    }
    let (credential, recovery_codes) = state
        .mfa
        .passkey_registration_finish(
            &session,
            &body.ceremony_id,
            &body.credential,
            body.name.as_deref(),
            &ctx,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Registered {
            code: "webauthn_registered",
            credential,
            recovery_codes: (!recovery_codes.is_empty()).then_some(recovery_codes),
        }),
    ))
}

/// Without a session this is a pre-authentication route, rate-limited like login.
pub async fn login_start(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    MaybeSession(session): MaybeSession,
    OptionalJsonBody(body): OptionalJsonBody<LoginStart>,
) -> ApiResult<Json<CeremonyOptions>> {
    if session.is_none() {
        state.abuse.check_rate(&ctx).await?;
    }
    let email = match (&session, body.email.as_deref()) {
        (None, Some(raw)) => Some(parse_email(raw)?),
        _ => None,
    };
    let start = state
        .mfa
        .passkey_login_start(session.as_ref(), email.as_ref())
        .await?;
    Ok(CeremonyOptions::new(
        "webauthn_authentication_options",
        start,
    ))
}

pub async fn login_finish(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    MaybeSession(session): MaybeSession,
    jar: CookieJar,
    JsonBody(body): JsonBody<LoginFinish>,
) -> ApiResult<Response> {
    if session.is_none() {
        state.abuse.check_rate(&ctx).await?;
    }
    let outcome = state
        .mfa
        .passkey_login_finish(session.as_ref(), &body.ceremony_id, &body.credential, &ctx)
        .await?;
    factor_response(&state, jar, outcome).await
}

pub async fn list(
    State(state): State<AppState>,
    ActiveSession(session): ActiveSession,
) -> ApiResult<Json<CredentialList>> {
    Ok(Json(CredentialList {
        code: "ok",
        credentials: state.mfa.list_passkeys(session.user_id).await?,
    }))
}

pub async fn delete(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    Fresh(session, _): Fresh,
    id: Result<Path<Uuid>, PathRejection>,
) -> ApiResult<Json<CodeOnly>> {
    let Path(id) = id.map_err(|_| ApiError::NotFound)?;
    state.mfa.delete_passkey(&session, id, &ctx).await?;
    Ok(Json(CodeOnly {
        code: "webauthn_credential_deleted",
    }))
}
