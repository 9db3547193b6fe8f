//! Liveness, readiness and metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::AppState;
use super::auth::CodeOnly;

#[derive(Serialize)]
pub struct Checks {
    pub database: &'static str,
    pub cache: &'static str,
}

#[derive(Serialize)]
pub struct Readiness {
    pub code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<&'static str>,
    pub checks: Checks,
}

pub async fn healthz() -> Json<CodeOnly> {
    Json(CodeOnly { code: "ok" })
}

/// Ready when both the database and the store answer; 503 otherwise, naming which.
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

pub async fn metrics(State(state): State<AppState>) -> Response {
    let text = state.metrics.render();
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
