//! The login/consent interaction of an authorization request (docs/API.md §8): the JSON
//! API the hosted pages (or a bank's own UI) drive after the authorization endpoint sent
//! the browser to `LOGIN_UI_URL?request=<id>`.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use uuid::Uuid;

use crate::http::AppState;
use crate::http::error::{ApiError, ApiResult};
use crate::http::error_docs::error_responses;
use crate::http::extract::{ActiveSession, ClientContext, MaybeSession, OptionalJsonBody};
use crate::services::ServiceError;

#[derive(Serialize, utoipa::ToSchema)]
pub struct ClientRef {
    pub client_id: String,
    pub client_name: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RequestInfoBody {
    /// `ok`
    pub code: &'static str,
    pub request_id: Uuid,
    pub client: ClientRef,
    /// The scopes the application asks for (`openid`, `email`, or its API scopes).
    pub scopes: Vec<String>,
    /// RFC 9396 details (e.g. a payment) to show on the consent step.
    #[schema(value_type = Vec<Object>)]
    pub authorization_details: Vec<serde_json::Value>,
    /// The browser has no session that satisfies the request: show the login.
    pub login_required: bool,
    /// Signed in, but the account must set up a second factor before it can allow
    /// anything (`AUTH_POLICY=psd2`, or `PRIVILEGED_POLICY=pci` for staff; docs/API.md
    /// §11): send the person to the set-up, then load the request again. Until then
    /// `accept` answers `403 mfa_enrollment_required`, and `prompt=none` ends with
    /// `interaction_required`.
    pub mfa_enrollment_required: bool,
    /// The session must be stepped up with a second factor (`acr_values`).
    pub step_up_required: bool,
    /// Ask the user to allow the request before accepting it.
    pub consent_required: bool,
    /// A payment (`payment_initiation`) with a signed-in user: the §9 transaction for
    /// exactly these details. Confirm it (`/auth/transactions/{id}/…`) before `accept`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<Uuid>,
    /// The application's hint for the email field.
    pub login_hint: Option<String>,
    /// Present when the request is already decided (e.g. `prompt=none` that needed the
    /// user, or a level this user cannot reach): navigate there, nothing else to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect_to: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RedirectBody {
    /// `ok`
    pub code: &'static str,
    /// Where to send the browser: the application's redirect URI with a code or an error.
    pub redirect_to: String,
}

fn request_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::Service(ServiceError::InvalidRequestId))
}

const INVALID_REQUEST_ID: &[(u16, &str)] = &[(
    400,
    "`invalid_request_id`: unknown, already finished or expired (requests live 10 minutes)",
)];

error_responses!(
    InfoErrors = INVALID_REQUEST_ID,
    crate::http::error_docs::UNAVAILABLE
);

#[utoipa::path(
    get,
    path = "/auth/oauth/requests/{id}",
    tag = "oauth",
    summary = "Read an authorization request (login/consent UI)",
    description = "The login UI's first call after the authorization endpoint sent the browser to `LOGIN_UI_URL?request=<id>`. Needs no session (the id is unguessable and lives 10 minutes); with a session it says what that session still lacks. With `prompt=none` a request that would need the user is decided at once and `redirect_to` is set.",
    params(("id" = Uuid, Path, description = "The `request` parameter the UI received")),
    responses(
        (status = 200, description = "`ok`", body = RequestInfoBody),
        InfoErrors,
    ),
)]
pub async fn info(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    MaybeSession(session): MaybeSession,
    Path(id): Path<String>,
) -> ApiResult<Json<RequestInfoBody>> {
    let id = request_id(&id)?;
    let info = state.oauth.info(id, session.as_ref(), &ctx).await?;
    Ok(Json(RequestInfoBody {
        code: "ok",
        request_id: info.id,
        client: ClientRef {
            client_id: info.client_id,
            client_name: info.client_name,
        },
        scopes: info.scopes,
        authorization_details: info.authorization_details,
        login_required: info.login_required,
        mfa_enrollment_required: info.mfa_enrollment_required,
        step_up_required: info.step_up_required,
        consent_required: info.consent_required,
        transaction_id: info.transaction_id,
        login_hint: info.login_hint,
        redirect_to: info.redirect_to,
    }))
}

error_responses!(
    AcceptErrors = INVALID_REQUEST_ID,
    crate::http::error_docs::ACTIVE,
    crate::http::error_docs::CSRF,
    &[
        (
            401,
            "`mfa_step_up_required`: the request asks for a level (`acr_values`) the session has not reached; step up (`max_age`, `methods`) and accept again"
        ),
        (
            403,
            "`transaction_confirmation_required` (with `transaction_id`): a payment request; confirm that transaction through `/auth/transactions/{id}/…` and accept again"
        )
    ]
);

#[utoipa::path(
    post,
    path = "/auth/oauth/requests/{id}/accept",
    tag = "oauth",
    summary = "Allow an authorization request",
    description = "The user allows the request in this session (the consent step, when `consent_required`, must have been shown). The session must satisfy `prompt=login`, `max_age` and `acr_values`: otherwise `401 not_authenticated` (log in again) or `401 mfa_step_up_required`. A level this user cannot reach ends the request with `error=unmet_authentication_requirements` in `redirect_to`. Single use. Audited as `oauth.authorization_granted`.",
    params(("id" = Uuid, Path, description = "The request id")),
    request_body(content = Option<Object>, description = "Empty, or `{}`"),
    responses(
        (status = 200, description = "`ok`: navigate to `redirect_to` (the application's redirect URI with `code`, `state`, `iss`)", body = RedirectBody),
        AcceptErrors,
    ),
    security(("session_cookie" = [], "csrf_header" = [])),
)]
pub async fn accept(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    ActiveSession(session): ActiveSession,
    Path(id): Path<String>,
    OptionalJsonBody(_body): OptionalJsonBody<serde_json::Value>,
) -> ApiResult<Json<RedirectBody>> {
    let id = request_id(&id)?;
    let redirect_to = state.oauth.accept(id, &session, &ctx).await?;
    Ok(Json(RedirectBody {
        code: "ok",
        redirect_to,
    }))
}

error_responses!(
    RejectErrors = INVALID_REQUEST_ID,
    crate::http::error_docs::CSRF,
    crate::http::error_docs::UNAVAILABLE
);

#[utoipa::path(
    post,
    path = "/auth/oauth/requests/{id}/reject",
    tag = "oauth",
    summary = "Decline an authorization request",
    description = "Ends the request; the application receives `error=access_denied`. Needs no session (a user may cancel at the login step); with one, the CSRF header is checked. Audited as `oauth.authorization_denied`.",
    params(("id" = Uuid, Path, description = "The request id")),
    request_body(content = Option<Object>, description = "Empty, or `{}`"),
    responses(
        (status = 200, description = "`ok`: navigate to `redirect_to`", body = RedirectBody),
        RejectErrors,
    ),
)]
pub async fn reject(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    MaybeSession(session): MaybeSession,
    Path(id): Path<String>,
    OptionalJsonBody(_body): OptionalJsonBody<serde_json::Value>,
) -> ApiResult<Json<RedirectBody>> {
    let id = request_id(&id)?;
    let redirect_to = state.oauth.reject(id, session.as_ref(), &ctx).await?;
    Ok(Json(RedirectBody {
        code: "ok",
        redirect_to,
    }))
}
