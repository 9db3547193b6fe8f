//! The HTTP layer: routes, extractors, middleware and the one error type. Handlers are
//! thin: they parse, call a service, and shape the response.

mod admin;
mod auth;
mod client_ip;
mod cookies;
pub mod error;
mod error_docs;
mod extract;
mod health;
mod mfa;
pub mod middleware;
mod oauth;
pub mod openapi;
mod passwords;
pub mod server;
mod sessions;
mod transactions;
mod webauthn;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, header};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::services::Services;
use error::ApiError;

pub type AppState = Arc<Services>;

/// Every API route, registered from its handler's OpenAPI annotation: the router and the
/// OpenAPI document come from this one list.
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(auth::register))
        .routes(routes!(auth::verify_email))
        .routes(routes!(auth::resend_verification))
        .routes(routes!(auth::login))
        .routes(routes!(auth::me))
        .routes(routes!(auth::csrf))
        .routes(routes!(auth::logout))
        .routes(routes!(sessions::list))
        .routes(routes!(sessions::revoke_others))
        .routes(routes!(sessions::revoke))
        .routes(routes!(mfa::totp_setup))
        .routes(routes!(mfa::totp_verify))
        .routes(routes!(mfa::totp_disable))
        .routes(routes!(mfa::recovery_verify))
        .routes(routes!(mfa::recovery_regenerate))
        .routes(routes!(mfa::step_up_confirm))
        .routes(routes!(webauthn::register_start))
        .routes(routes!(webauthn::register_finish))
        .routes(routes!(webauthn::login_start))
        .routes(routes!(webauthn::login_finish))
        .routes(routes!(webauthn::list))
        .routes(routes!(webauthn::rename))
        .routes(routes!(webauthn::delete))
        .routes(routes!(passwords::request_reset))
        .routes(routes!(passwords::confirm_reset))
        .routes(routes!(passwords::change))
        .routes(routes!(admin::ping))
        .routes(routes!(admin::users))
        .routes(routes!(admin::update_user))
        .routes(routes!(admin::unlock_user))
        .routes(routes!(admin::audit))
        .routes(routes!(transactions::create))
        .routes(routes!(transactions::get))
        .routes(routes!(transactions::webauthn_start))
        .routes(routes!(transactions::webauthn_finish))
        .routes(routes!(transactions::totp))
        .routes(routes!(oauth::requests::info))
        .routes(routes!(oauth::requests::accept))
        .routes(routes!(oauth::requests::reject))
        .routes(routes!(oauth::clients::list))
        .routes(routes!(oauth::clients::create))
        .routes(routes!(oauth::clients::get))
        .routes(routes!(oauth::clients::update))
        .routes(routes!(oauth::clients::delete))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(openapi::spec))
}

/// How a route is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RouteKind {
    /// An API route of `api_routes()` (in the OpenAPI document).
    Api,
    /// `/metrics`, on the metrics listener (`METRICS_ADDR`) only, never the public one.
    Metrics,
    /// The Swagger UI (`/docs`).
    Docs,
    /// A hosted page or its asset (`ui::ROUTES`), unless `UI_ENABLED=false`.
    Ui,
    /// An OpenID Provider protocol endpoint (found through discovery, not in OpenAPI).
    Protocol,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RouteEntry {
    pub method: String,
    /// Parameters as `{id}`, a catch-all as `{*rest}`.
    pub path: String,
    pub kind: RouteKind,
}

/// Every route the service serves, from the same lists the routers are built from (the
/// packaging checks hold the Postman collection and the image against it).
pub fn route_table() -> Vec<RouteEntry> {
    let mut table = Vec::new();
    let mut from_document = |router: OpenApiRouter<AppState>, kind: RouteKind| {
        let (_, document) = router.split_for_parts();
        for (path, item) in document.paths.paths {
            let methods = [
                ("GET", item.get.is_some()),
                ("POST", item.post.is_some()),
                ("PUT", item.put.is_some()),
                ("PATCH", item.patch.is_some()),
                ("DELETE", item.delete.is_some()),
            ];
            for (method, present) in methods {
                if present {
                    table.push(RouteEntry {
                        method: method.to_owned(),
                        path: path.clone(),
                        kind,
                    });
                }
            }
        }
    };
    from_document(api_routes(), RouteKind::Api);
    from_document(metrics_routes(), RouteKind::Metrics);
    for path in openapi::docs_paths() {
        table.push(RouteEntry {
            method: "GET".to_owned(),
            path,
            kind: RouteKind::Docs,
        });
    }
    for (path, methods) in oauth::PROTOCOL_ROUTES {
        for method in *methods {
            table.push(RouteEntry {
                method: (*method).to_owned(),
                path: (*path).to_owned(),
                kind: RouteKind::Protocol,
            });
        }
    }
    for (path, _) in crate::ui::ROUTES {
        table.push(RouteEntry {
            method: "GET".to_owned(),
            path: (*path).to_owned(),
            kind: RouteKind::Ui,
        });
    }
    table.sort();
    table
}

/// The routes of the metrics listener (`METRICS_ADDR`), never of the public one: metrics
/// count events per outcome (a registration of a known or an unknown address, say), so
/// anyone who can read them learns which accounts exist.
pub fn metrics_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(health::metrics))
}

/// The metrics listener's router: `/metrics` only, with request ids, logs and the
/// security headers; every other path is `404 not_found`.
pub fn metrics_router(state: AppState) -> Router {
    let (routes, _) = metrics_routes().split_for_parts();
    routes
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .fallback(|| async { ApiError::NotFound })
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::security_headers,
        ))
        .layer(axum::middleware::from_fn(middleware::request_id_and_trace))
        .with_state(state)
}

/// Every route of the service with its middleware, in the order requests pass them:
/// request id + log span → security headers → panic guard → timeout → body limit → CORS
/// (per kind of route). `pages` are the hosted pages (`/ui/`, docs/API.md §10); None when `UI_ENABLED=false`.
pub fn router(state: AppState, pages: Option<Arc<crate::ui::Pages>>) -> Router {
    let (routes, _) = api_routes().split_for_parts();
    // The method-not-allowed answer is set before CORS wraps the routes, so a preflight
    // (OPTIONS) still reaches the CORS layer.
    let mut routes = routes
        .merge(openapi::swagger_ui())
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed });
    // The JSON API admits only the configured front ends, with credentials; the protocol
    // endpoints bring their own policy (any origin, no credentials).
    if let Some(cors) = cors_layer(&state.settings.frontend_origins) {
        routes = routes.layer(cors);
    }
    let mut routes = routes
        .merge(oauth::protocol_routes())
        .fallback(|| async { ApiError::NotFound });
    if let Some(pages) = pages {
        routes = routes.merge(crate::ui::routes(pages));
    }

    let app = routes
        .layer(axum::middleware::from_fn(middleware::buffer_body))
        .layer(DefaultBodyLimit::max(middleware::MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::session_rotation,
        ))
        .layer(CatchPanicLayer::custom(middleware::panic_response));
    app.layer(axum::middleware::from_fn_with_state(
        state.clone(),
        middleware::security_headers,
    ))
    .layer(axum::middleware::from_fn(middleware::request_id_and_trace))
    .with_state(state)
}

/// CORS only for the configured front ends, with credentials. With no origins configured
/// there is no CORS layer at all, so no cross-origin browser call can read a response.
/// The origins were validated at start-up (`configuration`): never `*` or `null`.
fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    let allowed: Vec<HeaderValue> = origins
        .iter()
        .filter(|o| o.as_str() != "*" && !o.eq_ignore_ascii_case("null"))
        .filter_map(|o| HeaderValue::from_str(o).ok())
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
            .route("/boom", axum::routing::get(boom))
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
