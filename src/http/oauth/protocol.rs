//! The protocol endpoints; thin: parse the form or query, call `services::oauth`, shape
//! the standard response.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum_extra::extract::CookieJar;
use serde_json::{Value, json};

use super::BrowserSession;
use super::error::OAuthHttpError;
use crate::http::AppState;
use crate::http::cookies;
use crate::http::extract::ClientContext;
use crate::services::oauth::authorize::Authorize;
use crate::services::oauth::client_auth::Presented;
use crate::services::oauth::clients::Client;
use crate::services::oauth::dpop::{DPOP_ALG_NAMES, PresentedToken, ProofTarget, TokenScheme};
use crate::services::oauth::logout::Logout;
use crate::services::oauth::tokens::BearerError;
use crate::services::oauth::{ErrorCode, OAuth, OAuthError, parse_params, paths};

/// Every protocol route and its methods (for `http::route_table`).
pub const PROTOCOL_ROUTES: &[(&str, &[&str])] = &[
    (paths::DISCOVERY, &["GET"]),
    (paths::AS_METADATA, &["GET"]),
    (paths::JWKS, &["GET"]),
    (paths::AUTHORIZE, &["GET", "POST"]),
    (paths::PAR, &["POST"]),
    (paths::TOKEN, &["POST"]),
    (paths::USERINFO, &["GET", "POST"]),
    (paths::REVOKE, &["POST"]),
    (paths::INTROSPECT, &["POST"]),
    (paths::LOGOUT, &["GET", "POST"]),
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(paths::DISCOVERY, get(discovery))
        .route(paths::AS_METADATA, get(discovery))
        .route(paths::JWKS, get(jwks))
        .route(paths::AUTHORIZE, get(authorize).post(authorize))
        .route(paths::PAR, axum::routing::post(par))
        .route(paths::TOKEN, axum::routing::post(token))
        .route(paths::USERINFO, get(userinfo).post(userinfo))
        .route(paths::REVOKE, axum::routing::post(revoke))
        .route(paths::INTROSPECT, axum::routing::post(introspect))
        .route(paths::LOGOUT, get(logout).post(logout))
}

type OAuthResponse = Result<Response, OAuthHttpError>;

/// Responses carrying tokens or decisions are never cached (RFC 6749 §5.1).
fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

fn see_other(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => no_store((StatusCode::SEE_OTHER, [(header::LOCATION, value)]).into_response()),
        Err(_) => {
            OAuthHttpError::from(OAuthError::invalid_request("unusable redirect")).into_response()
        }
    }
}

/// The parameters of a GET (query) or POST (form body).
async fn request_params(request: Request) -> Result<HashMap<String, String>, OAuthError> {
    if request.method() == Method::POST {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, crate::http::middleware::MAX_BODY_BYTES)
            .await
            .map_err(|_| OAuthError::invalid_request("the body could not be read"))?;
        form_params(&parts.headers, &body)
    } else {
        parse_params(request.uri().query().unwrap_or(""))
    }
}

fn form_params(headers: &HeaderMap, body: &Bytes) -> Result<HashMap<String, String>, OAuthError> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if !form {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| OAuthError::invalid_request("the body is not UTF-8"))?;
    parse_params(text)
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// The discovery document (OpenID Connect Discovery 1.0, RFC 8414): exactly what is
/// supported.
fn metadata(oauth: &OAuth) -> Value {
    let e = |p| oauth.endpoint(p);
    json!({
        "issuer": oauth.issuer(),
        "authorization_endpoint": e(paths::AUTHORIZE),
        "pushed_authorization_request_endpoint": e(paths::PAR),
        "require_pushed_authorization_requests": false,
        "token_endpoint": e(paths::TOKEN),
        "userinfo_endpoint": e(paths::USERINFO),
        "jwks_uri": e(paths::JWKS),
        "revocation_endpoint": e(paths::REVOKE),
        "introspection_endpoint": e(paths::INTROSPECT),
        "end_session_endpoint": e(paths::LOGOUT),
        "scopes_supported": ["openid", "email"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [oauth.settings().signing_alg.as_str()],
        "token_endpoint_auth_methods_supported":
            ["private_key_jwt", "client_secret_basic", "client_secret_post", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["ES256", "PS256", "EdDSA"],
        "revocation_endpoint_auth_methods_supported":
            ["private_key_jwt", "client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported":
            ["private_key_jwt", "client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_signing_alg_values_supported": ["ES256", "PS256", "EdDSA"],
        "introspection_endpoint_auth_signing_alg_values_supported": ["ES256", "PS256", "EdDSA"],
        "code_challenge_methods_supported": ["S256"],
        "dpop_signing_alg_values_supported": DPOP_ALG_NAMES,
        "claims_supported":
            ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "sid",
             "email", "email_verified"],
        "acr_values_supported": ["urn:logicredit:loa:1", "urn:logicredit:loa:2"],
        "prompt_values_supported": ["none", "login", "consent"],
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "authorization_response_iss_parameter_supported": true,
        "frontchannel_logout_supported": false,
        "backchannel_logout_supported": false,
    })
}

async fn discovery(State(state): State<AppState>) -> Response {
    let mut response = Json(metadata(&state.oauth)).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

async fn jwks(State(state): State<AppState>) -> OAuthResponse {
    let set = state.oauth.keys.jwks().await.map_err(OAuthError::from)?;
    let mut response = Json(set).into_response();
    // Short: a new key is used as soon as it exists, and clients re-fetch on an unknown kid.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    Ok(response)
}

async fn authorize(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    BrowserSession(session): BrowserSession,
    request: Request,
) -> OAuthResponse {
    let params = request_params(request).await?;
    match state.oauth.begin(&params, session.as_ref(), &ctx).await? {
        Authorize::Interaction(location) | Authorize::Client(location) => Ok(see_other(&location)),
    }
}

/// The form of a client-authenticated endpoint and the client it authenticates; `basic`
/// says whether HTTP Basic was tried (a 401 then carries `WWW-Authenticate: Basic`).
async fn authenticated(
    state: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(Client, HashMap<String, String>, bool), OAuthHttpError> {
    let params = form_params(headers, body)?;
    let presented = Presented {
        authorization: authorization(headers),
        params: &params,
    };
    let basic = presented.authorization.is_some();
    let client = state
        .oauth
        .authenticate_client(&presented)
        .await
        .map_err(|error| OAuthHttpError { error, basic })?;
    Ok((client, params, basic))
}

/// The `DPoP` header: at most one (RFC 9449 §4.3 item 1).
fn dpop_header(headers: &HeaderMap) -> Result<Option<&str>, OAuthError> {
    let mut values = headers.get_all("dpop").iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(OAuthError::new(
            ErrorCode::InvalidDpopProof,
            "send exactly one DPoP header",
        ));
    }
    first
        .map(|v| {
            v.to_str().map_err(|_| {
                OAuthError::new(ErrorCode::InvalidDpopProof, "the DPoP header is not ASCII")
            })
        })
        .transpose()
}

/// Every answer of the token and PAR endpoints carries a fresh server nonce (RFC 9449 §8),
/// so a client that needs one never has to fail first more than once.
fn with_dpop_nonce(oauth: &OAuth, mut response: Response) -> Response {
    if let Ok(value) = HeaderValue::from_str(&oauth.dpop_nonce()) {
        response.headers_mut().insert("dpop-nonce", value);
    }
    response
}

async fn token(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let outcome = async {
        let (client, params, _) = authenticated(&state, &headers, &body).await?;
        let proof = dpop_header(&headers)?;
        let dpop = state.oauth.token_request_proof(&client, proof).await?;
        let response = state
            .oauth
            .token(&client, &params, dpop.as_ref(), &ctx)
            .await?;
        Ok::<_, OAuthHttpError>(no_store(Json(response).into_response()))
    }
    .await;
    with_dpop_nonce(
        &state.oauth,
        outcome.unwrap_or_else(IntoResponse::into_response),
    )
}

/// RFC 9126 §2: the pushed request, authenticated like the token endpoint; `201` with
/// the `request_uri`. A DPoP proof sent along binds the code to its key (RFC 9449 §10.1).
async fn par(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let outcome = async {
        let (client, params, _) = authenticated(&state, &headers, &body).await?;
        let jkt = match dpop_header(&headers)? {
            None => None,
            Some(proof) => {
                let url = state.oauth.endpoint(paths::PAR);
                let target = ProofTarget {
                    method: "POST",
                    url: &url,
                    access_token: None,
                    nonce_required: false,
                };
                let verified = state
                    .oauth
                    .check_dpop(proof, &target)
                    .await
                    .map_err(OAuthError::from)?;
                Some(verified.jkt)
            }
        };
        let pushed = state.oauth.push(&client, &params, jkt.as_deref()).await?;
        Ok::<_, OAuthHttpError>(no_store(
            (StatusCode::CREATED, Json(pushed)).into_response(),
        ))
    }
    .await;
    with_dpop_nonce(
        &state.oauth,
        outcome.unwrap_or_else(IntoResponse::into_response),
    )
}

/// RFC 6750 §3: a missing token gets a bare challenge; a bad one names the error. With
/// `dpop` the challenge is RFC 9449 §7.1's `DPoP` one, listing the proof algorithms.
fn bearer_challenge(status: StatusCode, error: Option<(&str, &str)>, dpop: bool) -> Response {
    let scheme = if dpop {
        format!("DPoP algs=\"{}\"", DPOP_ALG_NAMES.join(" "))
    } else {
        "Bearer".to_owned()
    };
    let challenge = match error {
        None => scheme,
        Some((code, description)) => {
            let description = description.replace(['"', '\\'], "'");
            let separator = if dpop { "," } else { "" };
            format!("{scheme}{separator} error=\"{code}\", error_description=\"{description}\"")
        }
    };
    let mut response = match error {
        None => status.into_response(),
        Some((code, description)) => (
            status,
            Json(json!({"error": code, "error_description": description})),
        )
            .into_response(),
    };
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    no_store(response)
}

async fn userinfo(State(state): State<AppState>, method: Method, headers: HeaderMap) -> Response {
    let presented = authorization(&headers).and_then(|h| {
        let (scheme, token) = h.split_once(' ')?;
        let scheme = if scheme.eq_ignore_ascii_case("bearer") {
            TokenScheme::Bearer
        } else if scheme.eq_ignore_ascii_case("dpop") {
            TokenScheme::Dpop
        } else {
            return None;
        };
        Some((scheme, token.trim()))
    });
    let Some((scheme, token)) = presented.filter(|(_, t)| !t.is_empty()) else {
        return bearer_challenge(StatusCode::UNAUTHORIZED, None, false);
    };
    let dpop = scheme == TokenScheme::Dpop;
    let proof = match dpop_header(&headers) {
        Ok(proof) => proof,
        Err(e) => {
            return bearer_challenge(
                StatusCode::UNAUTHORIZED,
                Some(("invalid_dpop_proof", &e.description)),
                true,
            );
        }
    };
    let presented = PresentedToken {
        token,
        scheme,
        proof,
        method: method.as_str(),
    };
    match state.oauth.userinfo(&presented).await {
        Ok(info) => no_store(Json(info).into_response()),
        Err(BearerError::InvalidToken(why)) => {
            bearer_challenge(StatusCode::UNAUTHORIZED, Some(("invalid_token", why)), dpop)
        }
        Err(BearerError::DpopRequired(why)) => {
            bearer_challenge(StatusCode::UNAUTHORIZED, Some(("invalid_token", why)), true)
        }
        Err(BearerError::InvalidDpopProof(why)) => bearer_challenge(
            StatusCode::UNAUTHORIZED,
            Some(("invalid_dpop_proof", &why)),
            true,
        ),
        Err(BearerError::InsufficientScope) => bearer_challenge(
            StatusCode::FORBIDDEN,
            Some(("insufficient_scope", "the token lacks the openid scope")),
            dpop,
        ),
        Err(BearerError::Service(e)) => OAuthHttpError::from(OAuthError::from(e)).into_response(),
    }
}

async fn revoke(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    headers: HeaderMap,
    body: Bytes,
) -> OAuthResponse {
    let (client, params, _) = authenticated(&state, &headers, &body).await?;
    state.oauth.revoke(&client, &params, &ctx).await?;
    Ok(no_store(StatusCode::OK.into_response()))
}

async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> OAuthResponse {
    let (client, params, basic) = authenticated(&state, &headers, &body).await?;
    if client.is_public() {
        return Err(OAuthHttpError {
            error: OAuthError::invalid_client("introspection needs an authenticated client"),
            basic,
        });
    }
    let answer = state.oauth.introspect(&client, &params).await?;
    Ok(no_store(Json(answer).into_response()))
}

async fn logout(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    BrowserSession(session): BrowserSession,
    jar: CookieJar,
    request: Request,
) -> OAuthResponse {
    let params = request_params(request).await?;
    match state
        .oauth
        .end_session(&params, session.as_ref(), &ctx)
        .await?
    {
        Logout::Done { redirect_to } => {
            // This browser's session may be the one that ended: forget its cookies too
            // when it no longer authenticates.
            let still = match &session {
                Some(s) => state.sessions.authenticate(&s.token).await.is_ok(),
                None => false,
            };
            let jar = if still {
                jar
            } else {
                cookies::cleared(jar, &state.settings.session)
            };
            let response = match redirect_to {
                Some(location) => see_other(&location),
                None => no_store(Html(signed_out_page()).into_response()),
            };
            Ok((jar, response).into_response())
        }
        Logout::Confirm { params } => Ok(no_store(Html(confirm_page(&params)).into_response())),
    }
}

fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

const PAGE_HEAD: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Sign out</title><link rel=\"stylesheet\" href=\"/ui/ui.css\"></head><body><main class=\"card\">";

/// The confirmation asked before a logout without an ID token: a plain form, no script.
fn confirm_page(params: &[(String, String)]) -> String {
    let mut hidden = String::new();
    for (name, value) in params {
        hidden.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            escape(name),
            escape(value)
        ));
    }
    format!(
        "{PAGE_HEAD}<h1>Sign out?</h1><p>An application asked to sign you out of Logicredit.</p>\
         <form method=\"post\" action=\"{}\">{hidden}<input type=\"hidden\" name=\"confirm\" value=\"yes\">\
         <button type=\"submit\">Sign out</button></form></main></body></html>",
        paths::LOGOUT
    )
}

fn signed_out_page() -> String {
    format!(
        "{PAGE_HEAD}<h1>Signed out</h1><p>You are signed out. You can close this window.</p></main></body></html>"
    )
}
