//! The development-only passkey demo page (`/demo`): one HTML page, its script and its
//! stylesheet, embedded in the binary. `http::router` merges these routes only when
//! `APP_ENV` is not `production`; there `/demo` is the ordinary `404 not_found`.
//!
//! The page talks to the API the way a real front end would (same origin, JSON bodies,
//! `X-CSRF-Token` on writes) and runs WebAuthn ceremonies with `navigator.credentials`.
//! Each response carries its own Content-Security-Policy — the security-headers middleware
//! keeps a policy a route has set — allowing the page's own script, stylesheet and fetches,
//! and `data:` images (the TOTP QR code); nothing inline, nothing third-party.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::AppState;
use super::error::ApiError;

/// What the page needs and nothing more. `require-trusted-types-for 'script'` makes the
/// browser refuse string-to-DOM sinks (`innerHTML` and friends), which the script never
/// uses: it builds the page with `textContent` and DOM methods only.
const DEMO_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'; require-trusted-types-for 'script'";

const INDEX_HTML: &str = include_str!("../../assets/demo/index.html");
const APP_JS: &str = include_str!("../../assets/demo/app.js");
const APP_CSS: &str = include_str!("../../assets/demo/app.css");

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/demo",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/demo/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/demo/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        // Merged after the API's own fallback was set, so it needs its own JSON 405.
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(DEMO_CSP),
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_nothing_inline_or_foreign() {
        assert!(!DEMO_CSP.contains("unsafe"));
        assert!(DEMO_CSP.starts_with("default-src 'none';"));
        assert!(DEMO_CSP.contains("script-src 'self';"));
        for directive in DEMO_CSP.split(';') {
            assert!(
                !directive.contains("http") && !directive.contains('*'),
                "{directive}"
            );
        }
    }

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let html = INDEX_HTML.to_ascii_lowercase();
        assert!(html.contains("<script src=\"/demo/app.js\" defer></script>"));
        assert_eq!(html.matches("<script").count(), 1);
        assert!(!html.contains("<style"));
        assert!(!html.contains("style="));
        let inline_handler = html.split_whitespace().any(|word| {
            word.strip_prefix("on")
                .and_then(|rest| rest.split_once('='))
                .is_some_and(|(name, _)| {
                    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphabetic())
                })
        });
        assert!(!inline_handler, "no inline event handlers");
        assert!(!html.contains("javascript:"));
        for sink in [
            ".innerHTML",
            ".outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!APP_JS.contains(sink), "{sink} in app.js");
        }
    }
}
