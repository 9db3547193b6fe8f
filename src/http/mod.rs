//! The HTTP layer: routes, extractors, middleware and the one error type. Handlers are
//! thin: they parse, call a service, and shape the response.

mod admin;
mod auth;
mod client_ip;
mod cookies;
mod demo;
pub mod error;
mod extract;
mod health;
mod mfa;
pub mod middleware;
pub mod openapi;
mod passwords;
mod sessions;
mod webauthn;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::routing::{delete, get, patch, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::services::Services;
use error::ApiError;

pub type AppState = Arc<Services>;

/// Every route of the service with its middleware, in the order requests pass them:
/// request id + log span → security headers → CORS → panic guard → timeout → body limit.
pub fn router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/auth/register", post(auth::register))
        .route("/auth/verify-email", post(auth::verify_email))
        .route("/auth/verify-email/resend", post(auth::resend_verification))
        .route("/auth/login", post(auth::login))
        .route("/auth/me", get(auth::me))
        .route("/auth/csrf", get(auth::csrf))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/sessions", get(sessions::list))
        .route(
            "/auth/sessions/revoke-others",
            post(sessions::revoke_others),
        )
        .route("/auth/sessions/{id}", delete(sessions::revoke))
        .route("/auth/mfa/totp/setup", post(mfa::totp_setup))
        .route("/auth/mfa/totp/verify", post(mfa::totp_verify))
        .route("/auth/mfa/totp", delete(mfa::totp_disable))
        .route("/auth/mfa/recovery/verify", post(mfa::recovery_verify))
        .route(
            "/auth/mfa/recovery/regenerate",
            post(mfa::recovery_regenerate),
        )
        .route(
            "/auth/webauthn/register/start",
            post(webauthn::register_start),
        )
        .route(
            "/auth/webauthn/register/finish",
            post(webauthn::register_finish),
        )
        .route("/auth/webauthn/login/start", post(webauthn::login_start))
        .route("/auth/webauthn/login/finish", post(webauthn::login_finish))
        .route("/auth/webauthn/credentials", get(webauthn::list))
        .route("/auth/webauthn/credentials/{id}", delete(webauthn::delete))
        .route("/auth/step-up/confirm", post(mfa::step_up_confirm))
        .route(
            "/auth/password/reset/request",
            post(passwords::request_reset),
        )
        .route(
            "/auth/password/reset/confirm",
            post(passwords::confirm_reset),
        )
        .route("/auth/password/change", post(passwords::change))
        .route("/auth/admin/ping", get(admin::ping))
        .route("/auth/admin/users", get(admin::users))
        .route("/auth/admin/users/{id}", patch(admin::update_user))
        .route("/auth/admin/users/{id}/unlock", post(admin::unlock_user))
        .route("/auth/admin/audit", get(admin::audit))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi::spec))
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .fallback(|| async { ApiError::NotFound });
    // The passkey demo page exists only in development (API.md §5 APP_ENV).
    let routes = if state.settings.is_production() {
        routes
    } else {
        routes.merge(demo::routes())
    };

    let mut app = routes
        .layer(axum::middleware::from_fn(middleware::limit_body))
        .layer(DefaultBodyLimit::max(middleware::MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::timeout,
        ))
        .layer(CatchPanicLayer::custom(middleware::panic_response));
    if let Some(cors) = cors_layer(&state.settings.frontend_origins) {
        app = app.layer(cors);
    }
    app.layer(axum::middleware::from_fn_with_state(
        state.clone(),
        middleware::security_headers,
    ))
    .layer(axum::middleware::from_fn(middleware::request_id_and_trace))
    .with_state(state)
}

/// CORS only for the configured front ends, with credentials. With no origins configured
/// there is no CORS layer at all, so no cross-origin browser call can read a response.
fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    let allowed: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok())
        .collect();
    if allowed.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(allowed))
            .allow_credentials(true)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::CONTENT_TYPE,
                HeaderName::from_static(extract::CSRF_HEADER),
                HeaderName::from_static("x-request-id"),
            ])
            .expose_headers([HeaderName::from_static("x-request-id")])
            .max_age(Duration::from_secs(600)),
    )
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn boom() -> &'static str {
        panic!("secret internal detail")
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_without_details() {
        let app: Router = Router::new()
            .route("/boom", get(boom))
            .layer(CatchPanicLayer::custom(middleware::panic_response));
        let response = app
            .oneshot(Request::get("/boom").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 500);
        let body = to_bytes(response.into_body(), 4096).await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["code"], "internal_error");
        assert!(!json.to_string().contains("secret internal detail"));
    }
}
