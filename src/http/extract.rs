//! Extractors: JSON bodies with the contract's errors, the caller's request context, and
//! the session guards (`AnySession` for P routes, `ActiveSession` for S routes).

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum_extra::extract::CookieJar;
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::middleware::RequestId;
use crate::domain::Role;
use crate::services::ServiceError;
use crate::services::audit::{RepeatedRefusal, RequestContext};
use crate::services::sessions::{CurrentSession, SessionState};

pub const CSRF_HEADER: &str = "x-csrf-token";

/// A JSON request body. Not JSON (or not sent as JSON) → `400 malformed_request`; JSON of
/// the wrong shape → `422 validation_error` naming the field; over 64 KiB → `413`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &AppState) -> Result<Self, Self::Rejection> {
        let value = read_json(req).await?;
        if !value.is_object() {
            return Err(ApiError::field("body", "must be a JSON object"));
        }
        serde_path_to_error::deserialize(value)
            .map(JsonBody)
            .map_err(|e| ApiError::Validation(field_error(&e)))
    }
}

/// A JSON body that is an object or an array, left as JSON for a service that validates
/// it field by field itself (payment details: one payment or a batch). The same
/// `400`/`413` rules as `JsonBody`.
pub struct JsonDocument(pub serde_json::Value);

impl FromRequest<AppState> for JsonDocument {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &AppState) -> Result<Self, Self::Rejection> {
        let value = read_json(req).await?;
        if !(value.is_object() || value.is_array()) {
            return Err(ApiError::field("body", "must be a JSON object or array"));
        }
        Ok(JsonDocument(value))
    }
}

/// The body as JSON: sent as JSON, at most 64 KiB, valid, and free of NUL characters.
async fn read_json(req: Request) -> ApiResult<serde_json::Value> {
    if !is_json(req.headers()) {
        return Err(ApiError::MalformedRequest(
            "expected Content-Type: application/json".to_owned(),
        ));
    }
    let bytes = super::middleware::read_body(req.into_body()).await?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::MalformedRequest(format!("invalid JSON: {e}")))?;
    if let Some(path) = nul_in(&value, "") {
        // NUL is valid JSON but no database accepts it in text.
        return Err(ApiError::field(&path, "must not contain NUL characters"));
    }
    Ok(value)
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false)
}

/// The path of the first string (or key) holding a NUL character, if any.
fn nul_in(value: &serde_json::Value, path: &str) -> Option<String> {
    let here = |segment: &str| {
        if path.is_empty() {
            segment.to_owned()
        } else {
            format!("{path}.{segment}")
        }
    };
    match value {
        serde_json::Value::String(text) => text.contains('\0').then(|| path.to_owned()),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_in(item, &here(&i.to_string()))),
        serde_json::Value::Object(map) => map.iter().find_map(|(key, item)| {
            if key.contains('\0') {
                Some(here("key"))
            } else {
                nul_in(item, &here(key))
            }
        }),
        _ => None,
    }
}

/// Turns a serde error into `{field: reason}`.
fn field_error(error: &serde_path_to_error::Error<serde_json::Error>) -> BTreeMap<String, String> {
    let inner = error.inner().to_string();
    let path = error.path().to_string();
    if let Some(rest) = inner.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or("body");
        let field = if path == "." {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        };
        return BTreeMap::from([(field, "is required".to_owned())]);
    }
    let reason = inner.split(" at line ").next().unwrap_or(&inner).to_owned();
    let field = if path == "." { "body".to_owned() } else { path };
    BTreeMap::from([(field, reason)])
}

/// Where the request came from (client IP honours `TRUSTED_PROXIES`), for audit records.
pub struct ClientContext(pub RequestContext);

impl FromRequestParts<AppState> for ClientContext {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientContext(request_context(parts, state)))
    }
}

pub fn request_context(parts: &Parts, state: &AppState) -> RequestContext {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
    let forwarded = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok());
    let ip = super::client_ip::client_ip(peer, forwarded, &state.settings.trusted_proxies);
    RequestContext {
        ip: ip.to_string(),
        user_agent: parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .chars()
            .take(512)
            .collect(),
        request_id: parts
            .extensions
            .get::<RequestId>()
            .map(|id| id.0.clone())
            .unwrap_or_default(),
    }
}

/// The session token from the cookie, if any.
pub fn session_token(parts: &Parts, state: &AppState) -> Option<String> {
    CookieJar::from_headers(&parts.headers)
        .get(&state.settings.session.cookie_name)
        .map(|c| c.value().to_owned())
}

/// Validates the session and, on state-changing methods, the CSRF token — in the order
/// docs/API.md §7 fixes: session (401) before CSRF (403).
async fn guard(parts: &Parts, state: &AppState, require_active: bool) -> ApiResult<CurrentSession> {
    let token = session_token(parts, state).ok_or(ServiceError::NotAuthenticated)?;
    let session = state.sessions.authenticate(&token).await?;
    if require_active && session.state != SessionState::Active {
        return Err(ServiceError::MfaRequired.into());
    }
    check_csrf(parts, state, &session).await?;
    rotate_if_required(parts, state, session).await
}

/// After a role change the session's next request gets a new token (docs/API.md §2): the
/// rotation happens here, and `middleware::session_rotation` sets the new cookies on
/// whatever the handler answers. A pending session is rotated when its MFA completes.
async fn rotate_if_required(
    parts: &Parts,
    state: &AppState,
    session: CurrentSession,
) -> ApiResult<CurrentSession> {
    if !session.rotate_required || session.state != SessionState::Active {
        return Ok(session);
    }
    let Some(slot) = parts.extensions.get::<super::middleware::RotatedSession>() else {
        // No way to hand over a new token on this path: keep the old one for now.
        return Ok(session);
    };
    let ctx = request_context(parts, state);
    let rotated = state
        .sessions
        .rotate_for_role_change(&session, &ctx)
        .await?;
    slot.set(rotated.token.clone());
    Ok(rotated)
}

/// On POST/PUT/PATCH/DELETE, the `X-CSRF-Token` header must hold this session's token
/// (compared in constant time); failures are audited.
async fn check_csrf(parts: &Parts, state: &AppState, session: &CurrentSession) -> ApiResult<()> {
    if matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let expected = state.keys.csrf_token_for(&session.token);
    let presented = parts
        .headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if crate::crypto::constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
        return Ok(());
    }
    // Audited once per minute per session, then on the 10th, 100th, … repeat: a flood of
    // bad requests must not become a flood of writes under the audit chain's lock.
    let refusal = RepeatedRefusal::Csrf {
        header_present: !presented.is_empty(),
    };
    state
        .abuse
        .audit_repeat(session, refusal, &request_context(parts, state))
        .await?;
    Err(ServiceError::CsrfFailed.into())
}

/// Routes that work with or without a session (passkey login): a valid session (pending
/// or active, CSRF-checked) or none. A stale cookie counts as none, so it cannot block a
/// passwordless login; an outage is still an error.
pub struct MaybeSession(pub Option<CurrentSession>);

impl FromRequestParts<AppState> for MaybeSession {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(token) = session_token(parts, state) else {
            return Ok(MaybeSession(None));
        };
        match state.sessions.authenticate(&token).await {
            Ok(session) => {
                check_csrf(parts, state, &session).await?;
                let session = rotate_if_required(parts, state, session).await?;
                Ok(MaybeSession(Some(session)))
            }
            Err(ServiceError::NotAuthenticated) => Ok(MaybeSession(None)),
            Err(other) => Err(other.into()),
        }
    }
}

/// A pending or active session (the "P" routes of docs/API.md §3), CSRF-checked on writes.
pub struct AnySession(pub CurrentSession);

impl FromRequestParts<AppState> for AnySession {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        guard(parts, state, false).await.map(AnySession)
    }
}

/// An active session (the "S" routes): a pending one gets `401 mfa_required`; one whose
/// user must first enroll a second factor (docs/API.md §11) gets
/// `403 mfa_enrollment_required`.
pub struct ActiveSession(pub CurrentSession);

impl FromRequestParts<AppState> for ActiveSession {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let session = guard(parts, state, true).await?;
        require_enrolled(state, &session)?;
        Ok(ActiveSession(session))
    }
}

/// An active session on the routes that stay open while a second factor is outstanding
/// under `AUTH_POLICY=psd2` / `PRIVILEGED_POLICY=pci`: who am I, and enrolling one.
pub struct EnrollingSession(pub CurrentSession);

impl FromRequestParts<AppState> for EnrollingSession {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        guard(parts, state, true).await.map(EnrollingSession)
    }
}

/// Whether the policy requires a second factor this session's user does not have yet: then
/// only the enrollment routes (`EnrollingSession`) accept the session.
pub fn enrollment_pending(state: &AppState, session: &CurrentSession) -> bool {
    state.policy.enrollment_pending(session)
}

fn require_enrolled(state: &AppState, session: &CurrentSession) -> ApiResult<()> {
    if enrollment_pending(state, session) {
        return Err(ServiceError::MfaEnrollmentRequired.into());
    }
    Ok(())
}

/// The per-IP rate limit of the pre-authentication routes (docs/API.md §4, §7): one bucket per
/// client shared by all of them. Put it first among a handler's extractors, so that even
/// malformed requests are counted.
pub struct PreAuthRateLimit;

impl FromRequestParts<AppState> for PreAuthRateLimit {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        state
            .abuse
            .check_rate(&request_context(parts, state))
            .await?;
        Ok(PreAuthRateLimit)
    }
}

/// A role a route requires; higher roles include lower ones.
pub trait RequiredRole {
    const ROLE: Role;
}

pub struct User;
impl RequiredRole for User {
    const ROLE: Role = Role::User;
}

pub struct Staff;
impl RequiredRole for Staff {
    const ROLE: Role = Role::Staff;
}

pub struct Admin;
impl RequiredRole for Admin {
    const ROLE: Role = Role::Admin;
}

/// An active session whose user has at least role `R`: session (401) → CSRF (403) →
/// role (`403 forbidden`), in docs/API.md §7's order. The role is read per request, so a role
/// change applies at the next request.
pub struct Authorized<R: RequiredRole>(pub CurrentSession, pub PhantomData<R>);

impl<R: RequiredRole> FromRequestParts<AppState> for Authorized<R> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let session = guard(parts, state, true).await?;
        if session.role < R::ROLE {
            return Err(ServiceError::Forbidden.into());
        }
        require_enrolled(state, &session)?;
        Ok(Authorized(session, PhantomData))
    }
}

/// `S+MFA` routes: an active session of a user with at least role `R` whose second factor
/// was verified within `STEP_UP_MAX_AGE_SECONDS` — checked after session, CSRF and role
/// (docs/API.md §7): `403 mfa_enrollment_required` without a factor, else
/// `401 mfa_step_up_required`.
pub struct Fresh<R: RequiredRole = User>(pub CurrentSession, pub PhantomData<R>);

impl<R: RequiredRole> FromRequestParts<AppState> for Fresh<R> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Authorized(session, _) = Authorized::<R>::from_request_parts(parts, state).await?;
        let ctx = request_context(parts, state);
        // Staff and admin routes need a factor really used, not just enrolled.
        let privileged = R::ROLE > Role::User;
        state.mfa.require_fresh(&session, privileged, &ctx).await?;
        Ok(Fresh(session, PhantomData))
    }
}

/// Like `JsonBody`, but an empty body (no Content-Type, no bytes) means `T::default()`:
/// for routes whose body fields are all optional.
pub struct OptionalJsonBody<T>(pub T);

impl<T: DeserializeOwned + Default> FromRequest<AppState> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let declared_empty = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() == "0");
        if !req.headers().contains_key(header::CONTENT_TYPE)
            && (declared_empty || !req.headers().contains_key(header::TRANSFER_ENCODING))
        {
            return Ok(OptionalJsonBody(T::default()));
        }
        JsonBody::<T>::from_request(req, state)
            .await
            .map(|JsonBody(value)| OptionalJsonBody(value))
    }
}

/// `S (+MFA if enrolled)`: an active session; when the user has a second factor it must
/// have been verified within `STEP_UP_MAX_AGE_SECONDS` (password change). Refused while a
/// second factor the policy requires is outstanding.
pub struct FreshIfEnrolled(pub CurrentSession);

impl FromRequestParts<AppState> for FreshIfEnrolled {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let FirstFactorEnrollment(session) =
            FirstFactorEnrollment::from_request_parts(parts, state).await?;
        require_enrolled(state, &session)?;
        Ok(FreshIfEnrolled(session))
    }
}

/// Starting an enrollment (TOTP setup, passkey registration): as `FreshIfEnrolled`, but
/// open while the policy's required second factor is outstanding — this is how it is met.
pub struct FirstFactorEnrollment(pub CurrentSession);

impl FromRequestParts<AppState> for FirstFactorEnrollment {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let session = guard(parts, state, true).await?;
        if state
            .mfa
            .factors(session.user_id)
            .await?
            .any_second_factor()
        {
            state
                .mfa
                .require_fresh(&session, false, &request_context(parts, state))
                .await?;
        }
        Ok(FirstFactorEnrollment(session))
    }
}
