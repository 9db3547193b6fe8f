//! Passkeys (docs/API.md §3): registration, login (passwordless, second factor, step-up),
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
use super::auth::{CodeOnly, FactorAnswer, parse_email};
use super::error::ErrorBody;
use super::error::{ApiError, ApiResult};
use super::error_docs::{
    ACTIVE, BODY, CSRF, ENROLLING, ENROLLMENT_PROOF, FreshErrors, STEP_UP, SessionReadErrors,
    UNAVAILABLE, error_responses,
};
use super::extract::{
    ActiveSession, ClientContext, EnrollingSession, FirstFactorEnrollment, Fresh, JsonBody,
    MaybeSession, OptionalJsonBody,
};
use super::mfa::{EnrollmentProof, factor_response};
use crate::services::mfa::{CeremonyStart, MAX_NAME_CHARS, PasskeyView};

#[derive(Serialize, utoipa::ToSchema)]
pub struct CeremonyOptions {
    pub code: &'static str,
    pub ceremony_id: String,
    /// `PublicKeyCredentialCreationOptions` / `…RequestOptions` JSON, binary fields base64url.
    #[schema(value_type = Object)]
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

#[derive(Deserialize, utoipa::ToSchema)]
pub struct RegisterFinish {
    /// From `register/start`.
    #[schema(min_length = 1, max_length = 128)]
    pub ceremony_id: String,
    /// The browser's `PublicKeyCredential` JSON (binary fields base64url).
    #[schema(value_type = Object)]
    pub credential: RegisterPublicKeyCredential,
    /// A label for the list (control characters are removed).
    #[schema(max_length = 64)]
    pub name: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Registered {
    pub code: &'static str,
    pub credential: PasskeyView,
    /// Present when this passkey is the account's first second factor (shown once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_codes: Option<Vec<String>>,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
pub struct LoginStart {
    /// Without a session: the account to sign in to (omit for a discoverable passkey).
    #[schema(format = Email, max_length = 254)]
    pub email: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct LoginFinish {
    /// From `login/start`.
    #[schema(min_length = 1, max_length = 128)]
    pub ceremony_id: String,
    /// The browser's `PublicKeyCredential` JSON (binary fields base64url).
    #[schema(value_type = Object)]
    pub credential: PublicKeyCredential,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CredentialList {
    pub code: &'static str,
    pub credentials: Vec<PasskeyView>,
}

error_responses!(
    /// `FirstFactorEnrollment` + an optional body + the first-factor proof.
    RegisterStartErrors = ENROLLING,
    CSRF,
    STEP_UP,
    BODY,
    ENROLLMENT_PROOF
);

#[utoipa::path(
    post,
    path = "/auth/webauthn/register/start",
    tag = "passkeys",
    summary = "Start passkey registration",
    description = "The first second factor needs proof of the password: a login younger than `STEP_UP_MAX_AGE_SECONDS`, or `current_password` in the body (a wrong one counts toward the lockout). A further factor needs fresh MFA, at the start and again at `register/finish`. At most `RATE_LIMIT_ENROLLMENT` (default 10 per 10 minutes) enrollments may be started per session.",
    request_body(content = Option<EnrollmentProof>, description = "optional; `current_password` when the first factor needs it"),
    responses(
        (status = 200, description = "`webauthn_registration_options`: `options` is PublicKeyCredentialCreationOptions JSON (binary fields base64url); resident key preferred, user verification required; the attestation conveyance is `none`, or `indirect`/`enterprise` under the passkey policy (docs/API.md §11)", body = CeremonyOptions),
        RegisterStartErrors,
    ),
    security(("session_cookie" = [], "csrf_header" = [])),
)]
pub async fn register_start(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    FirstFactorEnrollment(session): FirstFactorEnrollment,
    OptionalJsonBody(proof): OptionalJsonBody<EnrollmentProof>,
) -> ApiResult<Json<CeremonyOptions>> {
    state
        .accounts
        .prove_for_first_factor(&session, proof.current_password.as_deref(), &ctx)
        .await?;
    let start = state.mfa.passkey_registration_start(&session).await?;
    Ok(CeremonyOptions::new("webauthn_registration_options", start))
}

error_responses!(
    RegisterFinishErrors = ENROLLING,
    CSRF,
    BODY,
    &[
        (
            400,
            "`invalid_ceremony` (unknown, used, expired or another session's — which leaves it usable by its own session), `webauthn_failed` (attestation refused, `type` not `public-key`, or `id` ≠ `rawId`; or the passkey policy refused it — `message` says which rule: attestation not chaining to a trusted root, model not in `WEBAUTHN_ALLOWED_AAGUIDS`, model reported compromised by the FIDO metadata, synced passkey for a role in `REQUIRE_DEVICE_BOUND_PASSKEYS_FOR`; audited)",
        ),
        (
            401,
            "`mfa_step_up_required` when the user already has a second factor and freshness expired since the start",
        ),
    ]
);

#[utoipa::path(
    post,
    path = "/auth/webauthn/register/finish",
    tag = "passkeys",
    summary = "Finish passkey registration",
    description = "Verifies the attestation and stores the passkey. The deployment's passkey policy (docs/API.md §11) applies here: with `WEBAUTHN_ATTESTATION=indirect` or `enterprise` the attestation must chain to an attestation root that the FIDO Metadata Service BLOB (`FIDO_MDS_FILE`) lists for the authenticator's AAGUID, the model must not be reported compromised (`USER_VERIFICATION_BYPASS`, `ATTESTATION_KEY_COMPROMISE`, `USER_KEY_REMOTE_COMPROMISE`, `USER_KEY_PHYSICAL_COMPROMISE`, `REVOKED`), must be in `WEBAUTHN_ALLOWED_AAGUIDS` when that is set (always with `enterprise`), and synced (backup-eligible) passkeys are refused; `REQUIRE_DEVICE_BOUND_PASSKEYS_FOR` refuses synced passkeys for users of the listed roles in every mode. The default (`none`) accepts any passkey.",
    request_body = RegisterFinish,
    responses(
        (status = 201, description = "`webauthn_registered`; `recovery_codes` when this is the first second factor (which then counts as a verification for the user's own sensitive actions, never for staff or admin routes). Control characters are removed from `name`.", body = Registered),
        RegisterFinishErrors,
    ),
    security(("session_cookie" = [], "csrf_header" = [])),
)]
pub async fn register_finish(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    EnrollingSession(session): EnrollingSession,
    JsonBody(body): JsonBody<RegisterFinish>,
) -> ApiResult<impl IntoResponse> {
    if body
        .name
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_NAME_CHARS)
    {
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

error_responses!(
    /// `MaybeSession` (CSRF when a session is sent) + an optional body.
    LoginStartErrors = CSRF,
    UNAVAILABLE,
    BODY,
    &[
        (409, "`mfa_method_not_enrolled`: the session user has no passkey"),
        (
            429,
            "`rate_limited` (with `retry_after` and a `Retry-After` header)",
        ),
    ]
);

/// Without a session this is a pre-authentication route, rate-limited like login.
#[utoipa::path(
    post,
    path = "/auth/webauthn/login/start",
    tag = "passkeys",
    summary = "Start a passkey sign-in: passwordless without a session, second factor or step-up with one",
    request_body = LoginStart,
    responses(
        (status = 200, description = "`webauthn_authentication_options`: `options` is PublicKeyCredentialRequestOptions JSON; without a session and email (or for an unknown email) a discoverable ceremony", body = CeremonyOptions),
        LoginStartErrors,
    ),
)]
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

error_responses!(
    /// `MaybeSession` (CSRF when a session is sent) + body.
    LoginFinishErrors = CSRF,
    UNAVAILABLE,
    BODY,
    &[
        (400, "`invalid_ceremony`"),
        (
            401,
            "`webauthn_failed`: signature, challenge, origin, RP ID, user verification or sign counter refused, or a synced passkey of a user whose role is in `REQUIRE_DEVICE_BOUND_PASSKEYS_FOR` (audited)",
        ),
        (403, "`account_disabled`"),
        (429, "`rate_limited` (no session) or `account_locked`"),
    ]
);

#[utoipa::path(
    post,
    path = "/auth/webauthn/login/finish",
    tag = "passkeys",
    summary = "Finish a passkey sign-in",
    request_body = LoginFinish,
    responses(
        (status = 200, description = "`login_ok` (passwordless or mfa_pending session; new cookies) or `mfa_verified` (active session)", body = FactorAnswer),
        LoginFinishErrors,
    ),
)]
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

#[utoipa::path(
    get,
    path = "/auth/webauthn/credentials",
    tag = "passkeys",
    summary = "The caller's passkeys",
    responses(
        (status = 200, description = "`ok`", body = CredentialList),
        SessionReadErrors,
    ),
    security(("session_cookie" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    ActiveSession(session): ActiveSession,
) -> ApiResult<Json<CredentialList>> {
    Ok(Json(CredentialList {
        code: "ok",
        credentials: state.mfa.list_passkeys(session.user_id).await?,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct RenamePasskey {
    /// The new name; control characters are removed and at most 64 characters kept (an
    /// empty name becomes "Passkey").
    #[schema(max_length = 64)]
    pub name: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Renamed {
    pub code: &'static str,
    pub credential: PasskeyView,
}

error_responses!(
    RenameErrors = ACTIVE,
    CSRF,
    BODY,
    &[(404, "`not_found`: unknown or another user's credential")]
);

#[utoipa::path(
    patch,
    path = "/auth/webauthn/credentials/{id}",
    tag = "passkeys",
    summary = "Rename a passkey",
    description = "Extension (docs/API.md §10): the hosted account page lets people tell their passkeys apart. A session is enough: a name grants nothing. Audited as `mfa.webauthn.renamed`.",
    params(("id" = Uuid, Path, description = "Credential id from the list")),
    request_body = RenamePasskey,
    responses(
        (status = 200, description = "`webauthn_credential_renamed`", body = Renamed),
        RenameErrors,
    ),
    security(("session_cookie" = [], "csrf_header" = [])),
)]
pub async fn rename(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    ActiveSession(session): ActiveSession,
    id: Result<Path<Uuid>, PathRejection>,
    JsonBody(body): JsonBody<RenamePasskey>,
) -> ApiResult<Json<Renamed>> {
    let Path(id) = id.map_err(|_| ApiError::NotFound)?;
    let credential = state
        .mfa
        .rename_passkey(&session, id, &body.name, &ctx)
        .await?;
    Ok(Json(Renamed {
        code: "webauthn_credential_renamed",
        credential,
    }))
}

#[utoipa::path(
    delete,
    path = "/auth/webauthn/credentials/{id}",
    tag = "passkeys",
    summary = "Delete a passkey (fresh MFA)",
    params(("id" = Uuid, Path, description = "Credential id from the list")),
    responses(
        (status = 200, description = "`webauthn_credential_deleted`", body = CodeOnly),
        FreshErrors,
        (status = 404, description = "`not_found`: unknown or another user's credential", body = ErrorBody),
    ),
    security(("session_cookie" = [], "csrf_header" = [])),
)]
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
