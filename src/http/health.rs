//! Liveness, readiness and metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::AppState;
use super::auth::CodeOnly;
use super::error::ApiError;
use crate::services::ServiceError;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Checks {
    pub database: &'static str,
    pub cache: &'static str,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Readiness {
    pub code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<&'static str>,
    pub checks: Checks,
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    summary = "Liveness",
    responses(
        (status = 200, description = "`ok`: the process is alive", body = CodeOnly),
    ),
)]
pub async fn healthz() -> Json<CodeOnly> {
    Json(CodeOnly { code: "ok" })
}

/// Ready when both the database and the store answer; 503 otherwise, naming which.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    summary = "Readiness: database and store reachable",
    responses(
        (status = 200, description = "`ready`", body = Readiness),
        (status = 503, description = "`not_ready`; `checks` names what is down", body = Readiness),
    ),
)]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let (database, cache) = tokio::join!(state.db.ping(), state.store.ping());
    let label = |ok: bool| if ok { "ok" } else { "error" };
    let ready = database.is_ok() && cache.is_ok();
    let body = Readiness {
        code: if ready { "ready" } else { "not_ready" },
        message: (!ready).then_some("A dependency is unavailable."),
        checks: Checks {
            database: label(database.is_ok()),
            cache: label(cache.is_ok()),
        },
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// Served on the metrics listener only (`METRICS_ADDR`, default `127.0.0.1:9100`): the
/// counters differ by outcome, so on the public listener they would tell anyone which
/// accounts exist. With `METRICS_TOKEN`, a scrape must send it as a bearer token.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    summary = "Prometheus metrics (text exposition format), on the metrics listener only",
    description = "Served on its own listener, `METRICS_ADDR` (default `127.0.0.1:9100`), never on the public one, which answers `404 not_found`. With `METRICS_TOKEN` set, send `Authorization: Bearer <METRICS_TOKEN>`.",
    responses(
        (status = 200, description = "Prometheus text: `http_requests_total`, `http_request_duration_seconds`, `auth_events_total`, `account_lockouts_total`, `rate_limit_hits_total`, `outbox_pending`, `email_delivery_failures_total`, `password_hash_*`, `storage_errors_total`, `store_replica_waits_total`", content_type = "text/plain", body = String),
        (status = 401, description = "`not_authenticated`: `METRICS_TOKEN` is set and the request does not carry it", body = super::error::ErrorBody),
        (status = 404, description = "`not_found`: asked on the public listener", body = super::error::ErrorBody),
    ),
)]
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(expected) = &state.settings.metrics_token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !crate::crypto::constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
            return ApiError::from(ServiceError::NotAuthenticated).into_response();
        }
    }
    let text = state.metrics.render();
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
