//! The OpenAPI 3.1 document, generated from the handlers' annotations: the same
//! `routes!` calls build the router and the document (see `mod.rs`), so they cannot drift.

use std::sync::OnceLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document};
use utoipa::{Modify, OpenApi};

const DESCRIPTION: &str = "Authentication service for banking workloads. The HTTP reference is docs/API.md in the repository; this \
document is generated from the code.\n\n\
Every response is a JSON object with a string `code`; errors add `message` (and `fields`, `reasons`, \
`retry_after`, `max_age`, `methods` where relevant). Every response carries `X-Request-Id`.\n\n\
Common errors on any route: `400 malformed_request`, `413 payload_too_large`, `422 validation_error`, \
`401 not_authenticated`, `401 mfa_required`, `403 csrf_failed`, `403 forbidden`, `429 rate_limited`, \
`503 service_unavailable`, `500 internal_error`; unknown routes `404 not_found`, wrong methods \
`405 method_not_allowed`.\n\n\
Sessions: the session cookie (`__Host-session`; `session` when COOKIE_SECURE=false) identifies the session; \
every POST/PUT/PATCH/DELETE on a session route must send the session's CSRF token in `X-CSRF-Token`. \
Checks run in this order: session → CSRF → role → MFA freshness → body.";

#[derive(OpenApi)]
#[openapi(
    info(title = "Logicredit Auth", description = DESCRIPTION),
    modifiers(&SecuritySchemes),
    components(schemas(super::error::ErrorBody)),
    tags(
        (name = "registration", description = "Accounts and email verification"),
        (name = "sessions", description = "Login, sessions, CSRF"),
        (name = "mfa", description = "TOTP, recovery codes, step-up"),
        (name = "passkeys", description = "WebAuthn: registration, passwordless login, second factor"),
        (name = "passwords", description = "Password reset and change"),
        (name = "admin", description = "Roles: staff read, admins change"),
        (name = "oauth", description = "OpenID Provider: the login/consent interaction of an authorization request, and the admin API for clients. The protocol endpoints (authorize, token, userinfo, JWKS, revocation, introspection, end-session) follow the OAuth/OpenID standards and are listed in the discovery document at /.well-known/openid-configuration; see docs/OIDC.md."),
        (name = "transactions", description = "Transaction confirmation with PSD2 dynamic linking: the user approves exactly these payment details with a second factor, and gets a signed confirmation the payment backend verifies offline with the JWKS (docs/TRANSACTIONS.md)."),
        (name = "operations", description = "Health, metrics, this document"),
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "__Host-session",
                "The session token (HttpOnly, Secure, SameSite=Strict). Named `session` when COOKIE_SECURE=false.",
            ))),
        );
        components.add_security_scheme(
            "csrf_header",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-CSRF-Token",
                "The session's CSRF token (from `csrf_token` in login responses, the `csrf_token` cookie or GET /auth/csrf); required on every state-changing session request.",
            ))),
        );
    }
}

/// The whole document: the annotated API routes plus the two routes that serve docs.
pub fn document() -> Document {
    let mut document = super::api_routes()
        .merge(super::metrics_routes())
        .into_openapi();
    let html = ResponseBuilder::new()
        .description("Swagger UI, served from the binary (no internet needed)")
        .content("text/html", ContentBuilder::new().build())
        .build();
    document.paths.paths.insert(
        "/docs".to_owned(),
        PathItem::new(
            HttpMethod::Get,
            OperationBuilder::new()
                .tag("operations")
                .summary(Some("Interactive API documentation"))
                .response("200", html),
        ),
    );
    document
}

// Invariant: the document is plain data built in code; serialising it cannot fail (and
// the OpenAPI tests render it on every run).
#[allow(clippy::expect_used)]
fn rendered() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| serde_json::to_string(&document()).expect("the document serialises"))
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    summary = "This OpenAPI 3.1 document",
    responses((status = 200, description = "The document", content_type = "application/json", body = Object))
)]
pub async fn spec() -> Response {
    let mut response = rendered().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// What the docs page needs and nothing more: its own scripts and styles, the one inline
/// `<style>` element Swagger UI injects (allowed by its hash, not by 'unsafe-inline'), the
/// document from this origin, and data: icons. The browser test (`tests/e2e/docs.spec.mjs`)
/// fails on any violation, so a Swagger UI upgrade that needs more is caught.
const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'sha256-RL3ie0nH+Lzz2YNqQN83mnU0J1ot4QL7b99vMdIX99w='; \
img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Swagger UI at `/docs` (vendored into the binary), loading the document from
/// `/openapi.json`; the validator is off (it would call out to the internet).
/// Where the Swagger UI is mounted.
pub const DOCS_PATH: &str = "/docs";

/// The paths `SwaggerUi::new(DOCS_PATH)` serves (GET): the bare path (a redirect), the
/// page, and its files.
pub fn docs_paths() -> [String; 3] {
    [
        DOCS_PATH.to_owned(),
        format!("{DOCS_PATH}/"),
        format!("{DOCS_PATH}/{{*rest}}"),
    ]
}

pub fn swagger_ui() -> axum::Router<super::AppState> {
    let config = utoipa_swagger_ui::Config::from("/openapi.json").validator_url("none");
    let router: axum::Router<super::AppState> = utoipa_swagger_ui::SwaggerUi::new(DOCS_PATH)
        .config(config)
        .into();
    router.layer(axum::middleware::map_response(
        |mut response: Response| async move {
            response.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(DOCS_CSP),
            );
            response
        },
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use crate::configuration::PASSWORD_MIN_LENGTH_FLOOR;
    use crate::domain::MAX_EMAIL_LEN;
    use crate::http::admin::{MAX_EVENT_NAME_LEN, MAX_PAGE};
    use crate::services::accounts::{RESET_TOKEN_LEN, VERIFY_TOKEN_LEN};
    use crate::services::mfa::{MAX_CEREMONY_ID_LEN, MAX_NAME_CHARS, RECOVERY_CODE_LEN};
    use crate::services::passwords::MAX_PASSWORD_CHARS;

    fn spec() -> Value {
        serde_json::to_value(super::document()).unwrap()
    }

    fn property(spec: &Value, schema: &str, field: &str) -> Value {
        spec["components"]["schemas"][schema]["properties"][field].clone()
    }

    fn query(spec: &Value, path: &str, name: &str) -> Value {
        spec["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["schema"]
            .clone()
    }

    /// `#[schema]` takes literals only: these keep the stated limits equal to the ones the
    /// code enforces, so the document cannot promise what the service refuses.
    #[test]
    fn the_documented_limits_are_the_enforced_ones() {
        let spec = spec();
        for (schema, field) in [
            ("Credentials", "email"),
            ("Registration", "email"),
            ("EmailBody", "email"),
            ("LoginStart", "email"),
        ] {
            let email = property(&spec, schema, field);
            assert_eq!(email["maxLength"], MAX_EMAIL_LEN, "{schema}.{field}");
            assert_eq!(email["format"], "email", "{schema}.{field}");
        }
        for (schema, field) in [
            ("Registration", "password"),
            ("ResetConfirm", "new_password"),
            ("PasswordChange", "new_password"),
        ] {
            let password = property(&spec, schema, field);
            assert_eq!(password["minLength"], PASSWORD_MIN_LENGTH_FLOOR);
            assert_eq!(password["maxLength"], MAX_PASSWORD_CHARS);
        }
        assert_eq!(
            property(&spec, "TokenBody", "token")["pattern"],
            format!("^[A-Za-z0-9]{{{VERIFY_TOKEN_LEN}}}$")
        );
        assert_eq!(
            property(&spec, "ResetConfirm", "token")["pattern"],
            format!("^[A-Za-z0-9_-]{{{RESET_TOKEN_LEN}}}$")
        );
        assert_eq!(
            property(&spec, "RecoveryCode", "code")["pattern"],
            format!(
                "^[A-Za-z2-7]{{4}}(-?[A-Za-z2-7]{{4}}){{{}}}$",
                RECOVERY_CODE_LEN / 4 - 1
            )
        );
        assert_eq!(
            property(&spec, "RegisterFinish", "name")["maxLength"],
            MAX_NAME_CHARS
        );
        for schema in ["RegisterFinish", "LoginFinish"] {
            let id = property(&spec, schema, "ceremony_id");
            assert_eq!(id["maxLength"], MAX_CEREMONY_ID_LEN);
        }
        for path in ["/auth/admin/users", "/auth/admin/audit"] {
            assert_eq!(query(&spec, path, "limit")["maximum"], MAX_PAGE);
        }
        assert_eq!(
            query(&spec, "/auth/admin/audit", "event")["maxLength"],
            MAX_EVENT_NAME_LEN
        );
        assert_eq!(
            query(&spec, "/auth/admin/users", "email")["maxLength"],
            MAX_EMAIL_LEN
        );
    }
}
