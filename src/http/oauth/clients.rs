//! `/auth/admin/oauth-clients`: the admin API for relying parties (docs/API.md §8).
//! Reads need an admin; changes need an admin with a fresh second factor.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::http::AppState;
use crate::http::error::{ApiError, ApiResult};
use crate::http::error_docs::error_responses;
use crate::http::extract::{Admin, Authorized, ClientContext, Fresh, JsonBody};
use crate::services::oauth::admin::ClientView;
use crate::services::oauth::clients::ClientMetadata;

#[derive(Serialize, utoipa::ToSchema)]
pub struct ClientList {
    /// `ok`
    pub code: &'static str,
    /// Every client: `source` is `file` (read-only here) or `database`.
    #[schema(value_type = Vec<Object>)]
    pub clients: Vec<ClientView>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ClientBody {
    /// `ok`, `oauth_client_created` or `oauth_client_updated`
    pub code: &'static str,
    /// RFC 7591 metadata plus `skip_consent`, `profile`, `resource_server` and `source`.
    #[schema(value_type = Object)]
    pub client: ClientView,
    /// Shown once, when a secret was generated; only its hash is stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
pub struct RotateQuery {
    #[serde(default)]
    pub rotate_secret: bool,
}

/// The body as RFC 7591 metadata; a wrong type or unknown field names the field.
fn metadata(body: serde_json::Value) -> Result<ClientMetadata, ApiError> {
    serde_json::from_value(body).map_err(|e| {
        let message = e.to_string();
        let field = message
            .split('`')
            .nth(1)
            .filter(|_| message.contains("field"))
            .unwrap_or("body")
            .to_owned();
        ApiError::field(&field, &message)
    })
}

fn client_id(raw: &str) -> Result<String, ApiError> {
    if raw.is_empty() || raw.len() > 128 {
        return Err(ApiError::NotFound);
    }
    Ok(raw.to_owned())
}

error_responses!(
    ListErrors = crate::http::error_docs::ACTIVE,
    crate::http::error_docs::ADMIN_ROLE
);

#[utoipa::path(
    get,
    path = "/auth/admin/oauth-clients",
    tag = "oauth",
    summary = "List OAuth clients (admin)",
    description = "File clients (`OIDC_CLIENTS_FILE`) and database clients; never secrets.",
    responses((status = 200, description = "`ok`", body = ClientList), ListErrors),
    security(("session_cookie" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    _admin: Authorized<Admin>,
) -> ApiResult<Json<ClientList>> {
    Ok(Json(ClientList {
        code: "ok",
        clients: state.oauth.list_clients().await?,
    }))
}

error_responses!(
    GetErrors = crate::http::error_docs::ACTIVE,
    crate::http::error_docs::ADMIN_ROLE,
    &[(404, "`not_found`")]
);

#[utoipa::path(
    get,
    path = "/auth/admin/oauth-clients/{client_id}",
    tag = "oauth",
    summary = "Read an OAuth client (admin)",
    params(("client_id" = String, Path, description = "The client's id")),
    responses((status = 200, description = "`ok`", body = ClientBody), GetErrors),
    security(("session_cookie" = [])),
)]
pub async fn get(
    State(state): State<AppState>,
    _admin: Authorized<Admin>,
    Path(id): Path<String>,
) -> ApiResult<Json<ClientBody>> {
    let client = state.oauth.get_client(&client_id(&id)?).await?;
    Ok(Json(ClientBody {
        code: "ok",
        client,
        client_secret: None,
    }))
}

error_responses!(
    CreateErrors = crate::http::error_docs::ACTIVE,
    crate::http::error_docs::CSRF,
    crate::http::error_docs::ADMIN_ROLE,
    crate::http::error_docs::STEP_UP,
    crate::http::error_docs::ENROLLMENT,
    crate::http::error_docs::BODY,
    &[
        (
            409,
            "`client_exists`: the client_id is taken (also by a file client)"
        ),
        (
            422,
            "`invalid_client_metadata`: `fields` names each problem"
        )
    ]
);

#[utoipa::path(
    post,
    path = "/auth/admin/oauth-clients",
    tag = "oauth",
    summary = "Register an OAuth client (admin, fresh MFA)",
    description = "RFC 7591 metadata (see docs/OIDC.md). For `client_secret_basic`/`_post` a secret is generated and returned once as `client_secret`. Audited as `oauth.client_changed`.",
    request_body(content = Object, description = "RFC 7591 client metadata"),
    responses((status = 201, description = "`oauth_client_created`", body = ClientBody), CreateErrors),
    security(("session_cookie" = [], "csrf_header" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    Fresh(admin, _): Fresh<Admin>,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> ApiResult<(StatusCode, Json<ClientBody>)> {
    let metadata = metadata(body)?;
    let (client, client_secret) = state
        .oauth
        .create_client(metadata, admin.user_id, &ctx)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(ClientBody {
            code: "oauth_client_created",
            client,
            client_secret,
        }),
    ))
}

error_responses!(
    UpdateErrors = crate::http::error_docs::ACTIVE,
    crate::http::error_docs::CSRF,
    crate::http::error_docs::ADMIN_ROLE,
    crate::http::error_docs::STEP_UP,
    crate::http::error_docs::ENROLLMENT,
    crate::http::error_docs::BODY,
    &[
        (404, "`not_found`"),
        (409, "`client_not_changeable`: a file client"),
        (
            422,
            "`invalid_client_metadata`: `fields` names each problem"
        )
    ]
);

#[utoipa::path(
    put,
    path = "/auth/admin/oauth-clients/{client_id}",
    tag = "oauth",
    summary = "Replace an OAuth client's metadata (admin, fresh MFA)",
    description = "The whole metadata; `client_id` in the body is ignored. `?rotate_secret=true` issues a new secret (returned once) and revokes the client's grants. Audited as `oauth.client_changed`.",
    params(
        ("client_id" = String, Path, description = "The client's id"),
        ("rotate_secret" = Option<bool>, Query, description = "Issue a new client secret"),
    ),
    request_body(content = Object, description = "RFC 7591 client metadata"),
    responses((status = 200, description = "`oauth_client_updated`", body = ClientBody), UpdateErrors),
    security(("session_cookie" = [], "csrf_header" = [])),
)]
pub async fn update(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    Fresh(admin, _): Fresh<Admin>,
    Path(id): Path<String>,
    query: Result<axum::extract::Query<RotateQuery>, axum::extract::rejection::QueryRejection>,
    JsonBody(mut body): JsonBody<serde_json::Value>,
) -> ApiResult<Json<ClientBody>> {
    let id = client_id(&id)?;
    let axum::extract::Query(query) =
        query.map_err(|_| ApiError::field("rotate_secret", "must be true or false"))?;
    if let Some(object) = body.as_object_mut() {
        object.insert(
            "client_id".to_owned(),
            serde_json::Value::String(id.clone()),
        );
    }
    let metadata = metadata(body)?;
    let (client, client_secret) = state
        .oauth
        .update_client(&id, metadata, query.rotate_secret, admin.user_id, &ctx)
        .await?;
    Ok(Json(ClientBody {
        code: "oauth_client_updated",
        client,
        client_secret,
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Deleted {
    /// `oauth_client_deleted`
    pub code: &'static str,
}

error_responses!(
    DeleteErrors = crate::http::error_docs::ACTIVE,
    crate::http::error_docs::CSRF,
    crate::http::error_docs::ADMIN_ROLE,
    crate::http::error_docs::STEP_UP,
    crate::http::error_docs::ENROLLMENT,
    &[
        (404, "`not_found`"),
        (409, "`client_not_changeable`: a file client")
    ]
);

#[utoipa::path(
    delete,
    path = "/auth/admin/oauth-clients/{client_id}",
    tag = "oauth",
    summary = "Delete an OAuth client (admin, fresh MFA); its grants are revoked",
    params(("client_id" = String, Path, description = "The client's id")),
    responses((status = 200, description = "`oauth_client_deleted`", body = Deleted), DeleteErrors),
    security(("session_cookie" = [], "csrf_header" = [])),
)]
pub async fn delete(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    Fresh(admin, _): Fresh<Admin>,
    Path(id): Path<String>,
) -> ApiResult<Json<Deleted>> {
    state
        .oauth
        .delete_client(&client_id(&id)?, admin.user_id, &ctx)
        .await?;
    Ok(Json(Deleted {
        code: "oauth_client_deleted",
    }))
}
