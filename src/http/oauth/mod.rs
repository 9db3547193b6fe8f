//! The OpenID Provider's HTTP side (docs/API.md §8). Two kinds of routes:
//!
//! - the protocol endpoints (`protocol`): discovery, JWKS, authorize, token, userinfo,
//!   revocation, introspection, end-session. Standards govern them: form bodies, RFC 6749
//!   `{error, error_description}` errors (`error::OAuthHttpError`), and CORS open to any
//!   origin without credentials (relying parties run on other origins). Clients find them
//!   through discovery, so they are not in the OpenAPI document.
//! - the JSON APIs the UIs use (`requests`: the login/consent interaction; `clients`: the
//!   admin API), which follow §1 and are in the OpenAPI document.

pub mod clients;
mod error;
mod protocol;
pub mod requests;

use std::time::Duration;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderName, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::AppState;
use super::error::ApiError;
use crate::services::ServiceError;
use crate::services::sessions::CurrentSession;

pub use protocol::PROTOCOL_ROUTES;

/// The protocol endpoints with their CORS policy; the authorization endpoint has none.
pub fn protocol_routes() -> Router<AppState> {
    protocol::routes()
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::any())
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    HeaderName::from_static("dpop"),
                ])
                .expose_headers([
                    header::WWW_AUTHENTICATE,
                    HeaderName::from_static("dpop-nonce"),
                ])
                .max_age(Duration::from_secs(600)),
        )
        .merge(
            protocol::navigation_routes()
                .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed }),
        )
}

/// The browser's session, if it sent a valid one; no CSRF check, because these routes
/// change nothing a forged request could exploit: the authorization endpoint only
/// redirects to a registered URI, and a cross-site request carries no `SameSite=Strict`
/// cookie anyway. An outage is still an error, never "no session".
pub struct BrowserSession(pub Option<CurrentSession>);

impl FromRequestParts<AppState> for BrowserSession {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(token) = super::extract::session_token(parts, state) else {
            return Ok(BrowserSession(None));
        };
        match state.sessions.authenticate(&token).await {
            // A session that must enroll a second factor first (docs/API.md §11) cannot
            // authorize anything: it counts as none, so the request goes through the pages.
            Ok(session) if super::extract::enrollment_pending(state, &session) => {
                Ok(BrowserSession(None))
            }
            Ok(session) => Ok(BrowserSession(Some(session))),
            Err(ServiceError::NotAuthenticated) => Ok(BrowserSession(None)),
            Err(other) => Err(other.into()),
        }
    }
}
