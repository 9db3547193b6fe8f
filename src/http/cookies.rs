//! The session and CSRF cookies (docs/API.md §2).

use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};

use crate::configuration::SessionSettings;

pub const CSRF_COOKIE: &str = "csrf_token";

/// Sets the session cookie (HttpOnly) and the readable CSRF cookie. Both are session
/// cookies: the server decides when the session ends.
pub fn with_session(
    jar: CookieJar,
    settings: &SessionSettings,
    token: &str,
    csrf: &str,
) -> CookieJar {
    jar.add(
        Cookie::build((settings.cookie_name.clone(), token.to_owned()))
            .http_only(true)
            .secure(settings.cookie_secure)
            .same_site(SameSite::Strict)
            .path("/"),
    )
    .add(
        Cookie::build((CSRF_COOKIE, csrf.to_owned()))
            .http_only(false)
            .secure(settings.cookie_secure)
            .same_site(SameSite::Strict)
            .path("/"),
    )
}

/// Expires both cookies in the browser.
pub fn cleared(jar: CookieJar, settings: &SessionSettings) -> CookieJar {
    jar.add(
        Cookie::build((settings.cookie_name.clone(), ""))
            .http_only(true)
            .secure(settings.cookie_secure)
            .same_site(SameSite::Strict)
            .path("/")
            .removal(),
    )
    .add(
        Cookie::build((CSRF_COOKIE, ""))
            .secure(settings.cookie_secure)
            .same_site(SameSite::Strict)
            .path("/")
            .removal(),
    )
}
