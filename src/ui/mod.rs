//! The hosted pages (docs/API.md §10): sign-in, registration, the landings of the emailed
//! links, the MFA challenge, the account page, the consent step of the OpenID Provider and
//! the confirmation of a payment (PSD2 dynamic linking), server-rendered in the person's
//! language and driven by the browser SDK (`clients/js`, served at `/ui/sdk.js`). The
//! pages use only the JSON API, like any integrator's front end; nothing here touches
//! services directly.
//!
//! `UI_ENABLED=false` leaves these routes out (they answer `404 not_found`);
//! `UI_THEME_DIR` replaces templates and the stylesheet.

mod i18n;
mod pages;

use std::sync::Arc;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

pub use i18n::Lang;
pub use pages::{Page, Pages, ThemeError};

use crate::http::error::ApiError;
use crate::services::error::ServiceError;

/// What the pages may do and nothing more: their own script, styles and API calls, and
/// `data:` images (the TOTP QR code). `require-trusted-types-for 'script'` makes the
/// browser refuse HTML-string sinks (`innerHTML` and friends), which the script never uses.
pub const UI_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'; require-trusted-types-for 'script'";

const SDK_JS: &str = include_str!("../../clients/js/dist/sdk.js");
const SDK_TYPES: &str = include_str!("../../clients/js/dist/sdk.d.ts");
const PAGES_JS: &str = include_str!("../../clients/js/dist/pages.js");

/// Every route of the hosted pages: `(path, what it serves)`. The router is built from
/// this list, and the packaging tests read it, so the two cannot drift.
pub const ROUTES: &[(&str, Route)] = &[
    ("/ui", Route::Home),
    ("/ui/", Route::Home),
    ("/ui/login", Route::Page(Page::Login)),
    ("/ui/register", Route::Page(Page::Register)),
    ("/ui/forgot-password", Route::Page(Page::ForgotPassword)),
    ("/ui/mfa", Route::Page(Page::Mfa)),
    ("/ui/account", Route::Page(Page::Account)),
    // The login and consent step of an authorization request: `/ui/login?request=<id>`
    // (LOGIN_UI_URL), then `/ui/consent?request=<id>`; the script reads the id.
    ("/ui/consent", Route::Page(Page::Consent)),
    // The confirmation of a payment (docs/API.md §9): `/ui/confirm?transaction=<id>`,
    // optionally `&return=<same-origin path>`; the script reads both.
    ("/ui/confirm", Route::Page(Page::Confirm)),
    // Where the emails link (`ORIGIN_URL/verify-email?token=…`, `/reset-password?token=…`).
    ("/verify-email", Route::Page(Page::VerifyEmail)),
    ("/reset-password", Route::Page(Page::ResetPassword)),
    ("/ui/sdk.js", Route::Asset(Asset::Sdk)),
    ("/ui/sdk.d.ts", Route::Asset(Asset::SdkTypes)),
    ("/ui/pages.js", Route::Asset(Asset::PagesScript)),
    ("/ui/ui.css", Route::Asset(Asset::Stylesheet)),
    ("/ui/base.css", Route::Asset(Asset::BaseStylesheet)),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/ui/` itself: on to the account page (which sends a visitor to sign in).
    Home,
    Page(Page),
    Asset(Asset),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asset {
    Sdk,
    SdkTypes,
    PagesScript,
    /// `ui.css`: the theme's when it has one, else the built-in one.
    Stylesheet,
    /// The built-in stylesheet, always: a theme's `ui.css` can `@import "base.css"` and
    /// change only what it needs (colours, fonts).
    BaseStylesheet,
}

/// The routes of the hosted pages (GET only; other methods `405 method_not_allowed`).
pub fn routes<S: Clone + Send + Sync + 'static>(pages: Arc<Pages>) -> Router<S> {
    let mut router = Router::new();
    for (path, route) in ROUTES {
        let route = *route;
        router = router.route(
            path,
            get(
                move |state: State<Arc<Pages>>, headers: HeaderMap, query: RawQuery| {
                    serve(state, headers, query, route)
                },
            ),
        );
    }
    router
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(pages)
}

async fn serve(
    State(pages): State<Arc<Pages>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    route: Route,
) -> Response {
    match route {
        Route::Home => Redirect::to("/ui/account").into_response(),
        Route::Page(page) => {
            let lang = Lang::negotiate(
                headers
                    .get(header::ACCEPT_LANGUAGE)
                    .and_then(|v| v.to_str().ok()),
            );
            let token = link_token(query.as_deref());
            match pages.render(page, lang, &token) {
                Ok(html) => with_headers("text/html; charset=utf-8", html, true),
                // The theme rendered at start; a failure now is a bug, not bad input.
                Err(error) => ApiError::Service(ServiceError::Internal(anyhow::anyhow!(
                    "the hosted page {} did not render: {error:#}",
                    page.id()
                )))
                .into_response(),
            }
        }
        Route::Asset(asset) => match asset {
            Asset::Sdk => with_headers("text/javascript; charset=utf-8", SDK_JS.to_owned(), false),
            Asset::SdkTypes => with_headers(
                "application/typescript; charset=utf-8",
                SDK_TYPES.to_owned(),
                false,
            ),
            Asset::PagesScript => {
                with_headers("text/javascript; charset=utf-8", PAGES_JS.to_owned(), false)
            }
            Asset::Stylesheet => {
                with_headers("text/css; charset=utf-8", pages.css().to_owned(), false)
            }
            Asset::BaseStylesheet => with_headers(
                "text/css; charset=utf-8",
                pages::BUILT_IN_CSS.to_owned(),
                false,
            ),
        },
    }
}

/// The `token` of an emailed link's query, if it looks like one (tokens are URL-safe
/// base64 of at most 64 characters); anything else is dropped and the page says the link
/// is incomplete. The API checks the token itself.
fn link_token(query: Option<&str>) -> String {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(name, _)| name == "token")
        .map(|(_, value)| value.into_owned())
        .filter(|token| {
            (1..=64).contains(&token.len())
                && token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .unwrap_or_default()
}

fn with_headers(content_type: &'static str, body: String, varies_by_language: bool) -> Response {
    let mut response = (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(UI_CSP),
            ),
            // No other site may embed or read these resources.
            (
                HeaderName::from_static("cross-origin-opener-policy"),
                HeaderValue::from_static("same-origin"),
            ),
            (
                HeaderName::from_static("cross-origin-resource-policy"),
                HeaderValue::from_static("same-origin"),
            ),
        ],
        body,
    )
        .into_response();
    if varies_by_language {
        response
            .headers_mut()
            .insert(header::VARY, HeaderValue::from_static("Accept-Language"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_nothing_inline_or_foreign() {
        assert!(!UI_CSP.contains("unsafe"));
        assert!(UI_CSP.starts_with("default-src 'none';"));
        for directive in UI_CSP.split(';') {
            assert!(!directive.contains("http"), "{directive}");
            assert!(!directive.contains('*'), "{directive}");
        }
    }

    #[test]
    fn only_token_shaped_values_reach_the_page() {
        assert_eq!(link_token(Some("token=abc-DEF_123")), "abc-DEF_123");
        assert_eq!(link_token(Some("x=1&token=abc")), "abc");
        assert_eq!(link_token(Some("token=%3Cscript%3E")), "");
        assert_eq!(link_token(Some(&format!("token={}", "a".repeat(65)))), "");
        assert_eq!(link_token(Some("token=")), "");
        assert_eq!(link_token(None), "");
    }

    #[test]
    fn every_page_has_a_route() {
        for page in Page::ALL {
            assert!(
                ROUTES.iter().any(|(_, r)| *r == Route::Page(page)),
                "{page:?} has no route"
            );
        }
    }
}
