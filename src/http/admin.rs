//! The admin API (docs/API.md §3): staff read, admins change.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::CodeOnly;
use super::error::ErrorBody;
use super::error::{ApiError, ApiResult};
use super::error_docs::{
    ACTIVE, ADMIN_ROLE, AdminReadErrors, BODY, CSRF, ENROLLMENT, STEP_UP, StaffFreshErrors,
    StaffReadErrors, error_responses,
};
use super::extract::{Admin, Authorized, ClientContext, Fresh, JsonBody, Staff};
use crate::domain::parse_rfc3339_millis;
use crate::domain::{MAX_EMAIL_LEN, Role};
use crate::services::admin::{AdminUserView, UserChange, UserFilter};
use crate::services::audit::{AuditEventView, AuditFilter};

pub const DEFAULT_PAGE: u64 = 50;
pub const MAX_PAGE: u64 = 200;
/// Event names are short snake_case words; a longer filter cannot match any.
pub const MAX_EVENT_NAME_LEN: usize = 64;

#[utoipa::path(
    get,
    path = "/auth/admin/ping",
    tag = "admin",
    summary = "Admin role check",
    responses(
        (status = 200, description = "`pong`", body = CodeOnly),
        AdminReadErrors,
    ),
    security(("session_cookie" = [])),
)]
pub async fn ping(_: Authorized<Admin>) -> Json<CodeOnly> {
    Json(CodeOnly { code: "pong" })
}

/// Query parameters arrive as text and are validated here, so every bad value gets a
/// `422 validation_error` naming it.
#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    #[param(format = Uuid)]
    pub user_id: Option<String>,
    /// An event name (e.g. `login_succeeded`); empty means any.
    #[param(max_length = 64)]
    pub event: Option<String>,
    /// RFC 3339; events at or after it.
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// RFC 3339; events before it.
    #[param(format = DateTime)]
    pub until: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<i64>, minimum = 1)]
    pub cursor: Option<String>,
    /// Page size (default 50).
    #[param(value_type = Option<u64>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub code: &'static str,
    pub events: Vec<AuditEventView>,
    pub next_cursor: Option<String>,
}

pub fn parse_limit(raw: Option<&str>) -> ApiResult<u64> {
    match raw {
        None => Ok(DEFAULT_PAGE),
        Some(text) => text
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| ApiError::field("limit", "must be an integer from 1 to 200")),
    }
}

fn parse_time(name: &str, raw: Option<&str>) -> ApiResult<Option<i64>> {
    raw.map(|text| {
        parse_rfc3339_millis(text)
            .ok_or_else(|| ApiError::field(name, "must be an RFC 3339 timestamp"))
    })
    .transpose()
}

#[utoipa::path(
    get,
    path = "/auth/admin/audit",
    tag = "admin",
    summary = "Query the audit trail (staff), newest first",
    params(AuditQuery),
    responses(
        (status = 200, description = "`ok` with `events` and `next_cursor` (null at the end)", body = AuditPage),
        StaffReadErrors,
        (status = 422, description = "`validation_error` for a bad filter, cursor or limit", body = ErrorBody),
    ),
    security(("session_cookie" = [])),
)]
pub async fn audit(
    State(state): State<AppState>,
    Authorized(staff, _): Authorized<Staff>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> ApiResult<Json<AuditPage>> {
    tracing::info!(staff_id = %staff.user_id, "audit trail queried");
    let Query(query) = query.map_err(|e| ApiError::MalformedRequest(e.body_text()))?;
    let user_id = query
        .user_id
        .as_deref()
        .map(|id| {
            uuid::Uuid::parse_str(id).map_err(|_| ApiError::field("user_id", "must be a UUID"))
        })
        .transpose()?;
    let before_seq = query
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ApiError::field("cursor", "is not a cursor from a previous page"))
        })
        .transpose()?;
    let event = query.event.filter(|e| !e.is_empty());
    if event
        .as_ref()
        .is_some_and(|e| e.len() > MAX_EVENT_NAME_LEN || e.contains('\0'))
    {
        return Err(ApiError::field("event", "must be an event name"));
    }
    let filter = AuditFilter {
        user_id,
        event,
        since: parse_time("since", query.since.as_deref())?,
        until: parse_time("until", query.until.as_deref())?,
        before_seq,
        limit: parse_limit(query.limit.as_deref())?,
    };
    let page = state.audit.page(filter).await?;
    Ok(Json(AuditPage {
        code: "ok",
        events: page.items,
        next_cursor: page.next,
    }))
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsersQuery {
    /// The start of the email address (case is ignored).
    #[param(max_length = 254)]
    pub email: Option<String>,
    #[param(value_type = Option<Role>)]
    pub role: Option<String>,
    #[param(value_type = Option<bool>)]
    pub disabled: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(format = Uuid)]
    pub cursor: Option<String>,
    /// Page size (default 50).
    #[param(value_type = Option<u64>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UsersPage {
    pub code: &'static str,
    pub users: Vec<AdminUserView>,
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/auth/admin/users",
    tag = "admin",
    summary = "List users (staff), in creation order",
    params(UsersQuery),
    responses(
        (status = 200, description = "`ok` with `users` and `next_cursor`", body = UsersPage),
        StaffReadErrors,
        (status = 422, description = "`validation_error` for a bad filter, cursor or limit", body = ErrorBody),
    ),
    security(("session_cookie" = [])),
)]
pub async fn users(
    State(state): State<AppState>,
    _: Authorized<Staff>,
    query: Result<Query<UsersQuery>, QueryRejection>,
) -> ApiResult<Json<UsersPage>> {
    let Query(query) = query.map_err(|e| ApiError::MalformedRequest(e.body_text()))?;
    let role = query
        .role
        .as_deref()
        .map(|r| {
            Role::parse(r).ok_or_else(|| ApiError::field("role", "must be user, staff or admin"))
        })
        .transpose()?;
    let disabled = query
        .disabled
        .as_deref()
        .map(|d| match d {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(ApiError::field("disabled", "must be true or false")),
        })
        .transpose()?;
    let after = query
        .cursor
        .as_deref()
        .map(|c| {
            uuid::Uuid::parse_str(c)
                .map_err(|_| ApiError::field("cursor", "is not a cursor from a previous page"))
        })
        .transpose()?;
    if query
        .email
        .as_ref()
        .is_some_and(|e| e.len() > MAX_EMAIL_LEN || e.contains('\0'))
    {
        return Err(ApiError::field(
            "email",
            "must be the start of an email address",
        ));
    }
    let filter = UserFilter {
        email_prefix: query
            .email
            .map(|e| e.trim().to_lowercase())
            .filter(|e| !e.is_empty()),
        role,
        disabled,
        after,
        limit: parse_limit(query.limit.as_deref())?,
    };
    let page = state.admin.users(filter).await?;
    Ok(Json(UsersPage {
        code: "ok",
        users: page.items,
        next_cursor: page.next,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct UserPatch {
    #[schema(value_type = Option<Role>, nullable = false)]
    pub role: Option<String>,
    #[schema(nullable = false)]
    pub disabled: Option<bool>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UserUpdated {
    pub code: &'static str,
    pub user: AdminUserView,
}

error_responses!(
    UpdateUserErrors = ACTIVE,
    CSRF,
    ADMIN_ROLE,
    STEP_UP,
    ENROLLMENT,
    BODY,
    &[
        (404, "`not_found`"),
        (
            409,
            "`last_admin`: the last active admin cannot be demoted or disabled",
        ),
    ]
);

/// Checks run in docs/API.md §7's order: session, CSRF, role and fresh MFA (the extractor),
/// then the body, then the id.
#[utoipa::path(
    patch,
    path = "/auth/admin/users/{id}",
    tag = "admin",
    summary = "Change a user's role or status (admin, fresh MFA); disabling ends their sessions",
    params(("id" = Uuid, Path, description = "User id")),
    request_body = UserPatch,
    responses(
        (status = 200, description = "`user_updated`", body = UserUpdated),
        UpdateUserErrors,
    ),
    security(("session_cookie" = [], "csrf_header" = [])),
)]
pub async fn update_user(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    Fresh(admin, _): Fresh<Admin>,
    id: Result<Path<uuid::Uuid>, PathRejection>,
    JsonBody(body): JsonBody<UserPatch>,
) -> ApiResult<Json<UserUpdated>> {
    let role = body
        .role
        .as_deref()
        .map(|r| {
            Role::parse(r).ok_or_else(|| ApiError::field("role", "must be user, staff or admin"))
        })
        .transpose()?;
    if role.is_none() && body.disabled.is_none() {
        return Err(ApiError::field("body", "give role, disabled or both"));
    }
    let Path(id) = id.map_err(|_| ApiError::NotFound)?;
    let change = UserChange {
        role,
        disabled: body.disabled,
    };
    let user = state.admin.update_user(&admin, id, change, &ctx).await?;
    Ok(Json(UserUpdated {
        code: "user_updated",
        user,
    }))
}

#[utoipa::path(
    post,
    path = "/auth/admin/users/{id}/unlock",
    tag = "admin",
    summary = "Clear an account's lockout (staff, fresh MFA)",
    params(("id" = Uuid, Path, description = "User id")),
    responses(
        (status = 200, description = "`user_unlocked`", body = CodeOnly),
        StaffFreshErrors,
        (status = 404, description = "`not_found`", body = ErrorBody),
    ),
    security(("session_cookie" = [], "csrf_header" = [])),
)]
pub async fn unlock_user(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    Fresh(staff, _): Fresh<Staff>,
    id: Result<Path<uuid::Uuid>, PathRejection>,
) -> ApiResult<Json<CodeOnly>> {
    let Path(id) = id.map_err(|_| ApiError::NotFound)?;
    state.admin.unlock(&staff, id, &ctx).await?;
    Ok(Json(CodeOnly {
        code: "user_unlocked",
    }))
}
