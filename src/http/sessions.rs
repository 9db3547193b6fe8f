//! The caller's own sessions: list, revoke one, revoke all others.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use serde::Serialize;
use uuid::Uuid;

use super::AppState;
use super::auth::CodeOnly;
use super::error::{ApiError, ApiResult};
use super::extract::{ActiveSession, ClientContext};
use crate::domain::millis_to_rfc3339;

#[derive(Serialize)]
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

#[derive(Serialize)]
pub struct SessionList {
    pub code: &'static str,
    pub sessions: Vec<SessionView>,
}

#[derive(Serialize)]
pub struct Revoked {
    pub code: &'static str,
    pub revoked: u64,
}

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
            id: s.row.id,
            created_at: millis_to_rfc3339(s.row.created_at),
            last_seen_at: millis_to_rfc3339(s.row.last_seen_at),
            expires_at: millis_to_rfc3339(s.expires_at),
            ip: s.row.ip,
            user_agent: s.row.user_agent,
            current: s.current,
            mfa_verified_at: s.row.mfa_verified_at.map(millis_to_rfc3339),
        })
        .collect();
    Ok(Json(SessionList {
        code: "ok",
        sessions,
    }))
}

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
            "revoke_others",
            &ctx,
        )
        .await?;
    Ok(Json(Revoked {
        code: "sessions_revoked",
        revoked,
    }))
}

/// Guard first, then the id: an unauthenticated caller learns nothing about ids, and an
/// id that is malformed, unknown or someone else's is `404 not_found` (API.md §7).
pub async fn revoke(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    ActiveSession(session): ActiveSession,
    id: Result<Path<Uuid>, PathRejection>,
) -> ApiResult<Json<CodeOnly>> {
    let Path(id) = id.map_err(|_| ApiError::NotFound)?;
    state.sessions.revoke(&session, id, &ctx).await?;
    Ok(Json(CodeOnly {
        code: "session_revoked",
    }))
}
