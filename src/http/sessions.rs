//! The caller's own sessions: list, revoke one, revoke all others.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum_extra::extract::CookieJar;
use serde::Serialize;
use uuid::Uuid;

use super::AppState;
use super::auth::CodeOnly;
use super::error::ErrorBody;
use super::error::{ApiError, ApiResult};
use super::error_docs::{SessionErrors, SessionReadErrors};
use super::extract::{ActiveSession, ClientContext};
use crate::domain::millis_to_rfc3339;
use crate::services::audit::Revocation;

#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionView {
    pub id: Uuid,
    pub created_at: String,
    pub last_seen_at: String,
    pub expires_at: String,
    pub ip: String,
    pub user_agent: String,
    pub current: bool,
    pub mfa_verified_at: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionList {
    pub code: &'static str,
    pub sessions: Vec<SessionView>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Revoked {
    pub code: &'static str,
    pub revoked: u64,
}

#[utoipa::path(
    get,
    path = "/auth/sessions",
    tag = "sessions",
    summary = "The caller's sessions",
    responses(
        (status = 200, description = "`ok`", body = SessionList),
        SessionReadErrors,
    ),
    security(("session_cookie" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    ActiveSession(session): ActiveSession,
) -> ApiResult<Json<SessionList>> {
    let sessions = state
        .sessions
        .list(&session)
        .await?
        .into_iter()
        .map(|s| SessionView {
            id: s.id,
            created_at: millis_to_rfc3339(s.created_at),
            last_seen_at: millis_to_rfc3339(s.last_seen_at),
            expires_at: millis_to_rfc3339(s.expires_at),
            ip: s.ip,
            user_agent: s.user_agent,
            current: s.current,
            mfa_verified_at: s.mfa_verified_at.map(millis_to_rfc3339),
        })
        .collect();
    Ok(Json(SessionList {
        code: "ok",
        sessions,
    }))
}

#[utoipa::path(
    post,
    path = "/auth/sessions/revoke-others",
    tag = "sessions",
    summary = "End all of the caller's other sessions",
    responses(
        (status = 200, description = "`sessions_revoked` with `revoked`", body = Revoked),
        SessionErrors,
    ),
    security(("session_cookie" = [], "csrf_header" = [])),
)]
pub async fn revoke_others(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    ActiveSession(session): ActiveSession,
) -> ApiResult<Json<Revoked>> {
    let revoked = state
        .sessions
        .revoke_all(
            session.user_id,
            Some(&session.token_hash),
            Revocation::RevokeOthers,
            &ctx,
        )
        .await?;
    Ok(Json(Revoked {
        code: "sessions_revoked",
        revoked,
    }))
}

/// Guard first, then the id: an unauthenticated caller learns nothing about ids, and an
/// id that is malformed, unknown or someone else's is `404 not_found` (docs/API.md §7).
#[utoipa::path(
    delete,
    path = "/auth/sessions/{id}",
    tag = "sessions",
    summary = "End one of the caller's sessions",
    params(("id" = Uuid, Path, description = "Public session id")),
    responses(
        (status = 200, description = "`session_revoked`", body = CodeOnly),
        SessionErrors,
        (status = 404, description = "`not_found`: unknown, malformed or another user's session id", body = ErrorBody),
    ),
    security(("session_cookie" = [], "csrf_header" = [])),
)]
pub async fn revoke(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    ActiveSession(session): ActiveSession,
    jar: CookieJar,
    id: Result<Path<Uuid>, PathRejection>,
) -> ApiResult<(CookieJar, Json<CodeOnly>)> {
    let Path(id) = id.map_err(|_| ApiError::NotFound)?;
    state.sessions.revoke(&session, id, &ctx).await?;
    // Revoking the session in use is a logout: clear its cookies too.
    let jar = if id == session.id {
        super::cookies::cleared(jar, &state.settings.session)
    } else {
        jar
    };
    Ok((
        jar,
        Json(CodeOnly {
            code: "session_revoked",
        }),
    ))
}
