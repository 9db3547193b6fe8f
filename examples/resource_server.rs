//! A resource server for the bank's own Rust/axum services: it accepts the provider's
//! access tokens (RFC 9068 JWTs) and checks them against the provider's JWKS, cached.
//!
//! Run the provider (`cargo run --release`), register a client, then:
//!
//! ```text
//! ISSUER_URL=http://localhost:8000 AUDIENCE=http://localhost:8000 \
//!     cargo run --example resource_server          # serves 127.0.0.1:8100
//! curl -H "Authorization: Bearer $ACCESS_TOKEN" http://127.0.0.1:8100/accounts
//! ```
//!
//! What is checked, and why (docs/OIDC.md "Resource servers"):
//! - the signature, under a key the issuer publishes (the JWKS is fetched through
//!   discovery, cached for 5 minutes, and re-fetched at most once a minute when a token
//!   names an unknown `kid`: the provider rotates keys);
//! - `typ` = `at+jwt` (an ID token is not an access token), `alg` = the key's algorithm
//!   (never `none` or HMAC);
//! - `iss`, `aud` (this API), `exp` with 30 s of leeway, and the scope the route needs;
//! - DPoP-bound tokens (`cnf.jkt`, RFC 9449 §7): only with `Authorization: DPoP <token>`
//!   and a `DPoP` proof whose key has that thumbprint, with `typ` `dpop+jwt`, `htm`/`htu`
//!   of this request, `iat` within 60 s, `ath` = SHA-256 of the token, and a `jti` not
//!   seen before (kept in memory here: a service with several instances keeps them in a
//!   shared store). A bound token sent as `Bearer` is refused.
//!
//! Revocation: a JWT stays valid until it expires (5 minutes by default). A route that
//! must see a revocation at once (a payment) calls the introspection endpoint instead.
//!
//! Copy `JwksVerifier` and `AccessToken` into a service; the HTTP client here is reqwest
//! (enable a rustls feature for an https issuer).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use jsonwebtoken::jwk::{JwkSet, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::RwLock;

/// The claims a resource server reads from an access token.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub client_id: String,
    #[serde(default)]
    pub scope: String,
    pub exp: u64,
    #[serde(default)]
    pub acr: Option<String>,
    /// Set on DPoP-bound tokens: the thumbprint of the key that must sign the proofs.
    #[serde(default)]
    pub cnf: Option<Confirmation>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Confirmation {
    pub jkt: String,
}

#[derive(Deserialize)]
struct ProofClaims {
    jti: String,
    htm: String,
    htu: String,
    iat: i64,
    #[serde(default)]
    ath: Option<String>,
}

impl Claims {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.split_ascii_whitespace().any(|s| s == scope)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("no bearer token")]
    Missing,
    #[error("the token is not valid: {0}")]
    Invalid(String),
    #[error("the DPoP proof is not valid: {0}")]
    Proof(String),
    #[error("the token lacks the scope {0}")]
    Scope(&'static str),
    #[error("the issuer's keys could not be fetched: {0}")]
    Jwks(String),
}

impl IntoResponse for TokenError {
    /// RFC 6750 §3: 401 with a `WWW-Authenticate: Bearer` challenge, 403 for scope.
    fn into_response(self) -> Response {
        let (status, challenge) = match &self {
            TokenError::Missing => (StatusCode::UNAUTHORIZED, "Bearer".to_owned()),
            TokenError::Invalid(_) => (
                StatusCode::UNAUTHORIZED,
                "Bearer error=\"invalid_token\"".to_owned(),
            ),
            TokenError::Proof(_) => (
                StatusCode::UNAUTHORIZED,
                "DPoP error=\"invalid_dpop_proof\", algs=\"ES256 EdDSA PS256\"".to_owned(),
            ),
            TokenError::Scope(scope) => (
                StatusCode::FORBIDDEN,
                format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\""),
            ),
            TokenError::Jwks(_) => (StatusCode::SERVICE_UNAVAILABLE, "Bearer".to_owned()),
        };
        (
            status,
            [(header::WWW_AUTHENTICATE, challenge)],
            Json(json!({"error": self.to_string()})),
        )
            .into_response()
    }
}

/// The issuer's keys, ready to verify with: each JWK is parsed into a `DecodingKey` once
/// per fetch, not once per token.
struct CachedKeys {
    keys: HashMap<String, Arc<DecodingKey>>,
    fetched: Instant,
}

impl CachedKeys {
    fn new(set: &JwkSet) -> Self {
        let keys = set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                let key = DecodingKey::from_jwk(jwk).ok()?;
                Some((kid, Arc::new(key)))
            })
            .collect();
        Self {
            keys,
            fetched: Instant::now(),
        }
    }
}

/// Verifies access tokens of one issuer for one audience, with the JWKS cached.
#[derive(Clone)]
pub struct JwksVerifier {
    issuer: String,
    /// Where discovery is fetched: the issuer, unless the network path differs.
    base: String,
    audience: String,
    http: reqwest::Client,
    cache: Arc<RwLock<Option<CachedKeys>>>,
    /// This API's public URL (what clients put in `htu`).
    public_url: String,
    /// DPoP proof ids seen in the last window (replay protection).
    seen_proofs: Arc<Mutex<HashMap<String, Instant>>>,
}

const PROOF_WINDOW: Duration = Duration::from_secs(60);

const FRESH_FOR: Duration = Duration::from_secs(300);
const REFETCH_AT_MOST_EVERY: Duration = Duration::from_secs(60);

impl JwksVerifier {
    pub fn new(issuer: &str, audience: &str) -> Self {
        Self {
            issuer: issuer.trim_end_matches('/').to_owned(),
            base: issuer.trim_end_matches('/').to_owned(),
            audience: audience.to_owned(),
            http: reqwest::Client::new(),
            cache: Arc::new(RwLock::new(None)),
            public_url: "http://127.0.0.1:8100".to_owned(),
            seen_proofs: Arc::default(),
        }
    }

    /// The URL clients call this API at (behind a proxy: the external one).
    pub fn serving_at(mut self, public_url: &str) -> Self {
        self.public_url = public_url.trim_end_matches('/').to_owned();
        self
    }

    /// Fetches discovery from `base` (e.g. an internal address) while still requiring
    /// tokens to name `issuer`.
    pub fn fetching_from(mut self, base: &str) -> Self {
        self.base = base.trim_end_matches('/').to_owned();
        self
    }

    async fn fetch(&self) -> Result<JwkSet, TokenError> {
        let discovery: serde_json::Value = self
            .http
            .get(format!("{}/.well-known/openid-configuration", self.base))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| TokenError::Jwks(e.to_string()))?
            .json()
            .await
            .map_err(|e| TokenError::Jwks(e.to_string()))?;
        let jwks_uri = discovery["jwks_uri"]
            .as_str()
            .ok_or_else(|| TokenError::Jwks("discovery has no jwks_uri".into()))?
            .replacen(&self.issuer, &self.base, 1);
        self.http
            .get(&jwks_uri)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| TokenError::Jwks(e.to_string()))?
            .json()
            .await
            .map_err(|e| TokenError::Jwks(e.to_string()))
    }

    /// The key for `kid`: from the cache while fresh; an unknown `kid` re-fetches (a
    /// rotation), at most once a minute so garbage tokens cannot hammer the issuer.
    async fn key(&self, kid: &str) -> Result<Arc<DecodingKey>, TokenError> {
        if let Some(cached) = self.cache.read().await.as_ref() {
            let fresh = cached.fetched.elapsed() < FRESH_FOR;
            if let Some(key) = cached.keys.get(kid).filter(|_| fresh) {
                return Ok(key.clone());
            }
            if cached.fetched.elapsed() < REFETCH_AT_MOST_EVERY {
                return cached
                    .keys
                    .get(kid)
                    .cloned()
                    .ok_or_else(|| TokenError::Invalid("unknown kid".into()));
            }
        }
        let cached = CachedKeys::new(&self.fetch().await?);
        let found = cached.keys.get(kid).cloned();
        *self.cache.write().await = Some(cached);
        found.ok_or_else(|| TokenError::Invalid("unknown kid".into()))
    }

    /// A `Bearer` token: refused when it is DPoP-bound.
    pub async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let claims = self.verify_token(token).await?;
        if claims.cnf.is_some() {
            return Err(TokenError::Invalid(
                "the token is DPoP-bound: use the DPoP scheme".into(),
            ));
        }
        Ok(claims)
    }

    /// A `DPoP` token with its proof for `method` `url` (RFC 9449 §4.3, §7).
    pub async fn verify_dpop(
        &self,
        token: &str,
        proof: &str,
        method: &str,
        url: &str,
    ) -> Result<Claims, TokenError> {
        let claims = self.verify_token(token).await?;
        let jkt = claims
            .cnf
            .as_ref()
            .map(|c| c.jkt.clone())
            .ok_or_else(|| TokenError::Invalid("the token is not DPoP-bound".into()))?;
        let bad = |why: &str| TokenError::Proof(why.to_owned());
        let header = jsonwebtoken::decode_header(proof).map_err(|_| bad("not a JWS"))?;
        if header.typ.as_deref() != Some("dpop+jwt") {
            return Err(bad("typ"));
        }
        if !matches!(
            header.alg,
            Algorithm::ES256 | Algorithm::EdDSA | Algorithm::PS256
        ) {
            return Err(bad("alg"));
        }
        let jwk = header.jwk.ok_or_else(|| bad("no jwk"))?;
        if jwk.thumbprint(ThumbprintHash::SHA256).ok().as_deref() != Some(jkt.as_str()) {
            return Err(bad("signed by another key than the token is bound to"));
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| bad("jwk"))?;
        let mut validation = Validation::new(header.alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        let proof = jsonwebtoken::decode::<ProofClaims>(proof, &key, &validation)
            .map_err(|_| bad("signature or claims"))?
            .claims;
        let without_query = |u: &str| u.split(['?', '#']).next().unwrap_or_default().to_owned();
        if proof.htm != method || without_query(&proof.htu) != without_query(url) {
            return Err(bad("htm/htu"));
        }
        let now = jsonwebtoken::get_current_timestamp() as i64;
        if proof.iat > now + 30 || proof.iat < now - PROOF_WINDOW.as_secs() as i64 {
            return Err(bad("iat"));
        }
        let ath = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(token.as_bytes()));
        if proof.ath.as_deref() != Some(ath.as_str()) {
            return Err(bad("ath"));
        }
        let mut seen = self
            .seen_proofs
            .lock()
            .map_err(|_| bad("replay cache unavailable"))?;
        seen.retain(|_, at| at.elapsed() < PROOF_WINDOW * 2);
        if seen
            .insert(format!("{jkt}:{}", proof.jti), Instant::now())
            .is_some()
        {
            return Err(bad("replayed"));
        }
        Ok(claims)
    }

    async fn verify_token(&self, token: &str) -> Result<Claims, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        if header
            .typ
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
            != Some("at+jwt")
        {
            return Err(TokenError::Invalid("not an access token (typ)".into()));
        }
        if !matches!(
            header.alg,
            Algorithm::ES256 | Algorithm::EdDSA | Algorithm::PS256
        ) {
            return Err(TokenError::Invalid("algorithm not accepted".into()));
        }
        let kid = header
            .kid
            .ok_or_else(|| TokenError::Invalid("no kid".into()))?;
        let key = self.key(&kid).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|e| TokenError::Invalid(e.to_string()))
    }
}

/// An extractor: a handler that takes `AccessToken` runs only with a valid token.
pub struct AccessToken(pub Claims);

impl<S> FromRequestParts<S> for AccessToken
where
    JwksVerifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = TokenError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let authorization = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(TokenError::Missing)?;
        let verifier = JwksVerifier::from_ref(state);
        if let Some(token) = authorization.strip_prefix("DPoP ") {
            let proof = parts
                .headers
                .get("dpop")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| TokenError::Proof("missing".into()))?;
            let url = format!("{}{}", verifier.public_url, parts.uri.path());
            return verifier
                .verify_dpop(token.trim(), proof, parts.method.as_str(), &url)
                .await
                .map(AccessToken);
        }
        let token = authorization
            .strip_prefix("Bearer ")
            .ok_or(TokenError::Missing)?;
        verifier.verify(token.trim()).await.map(AccessToken)
    }
}

/// A route that needs `accounts:read`.
async fn accounts(AccessToken(claims): AccessToken) -> Result<Json<serde_json::Value>, TokenError> {
    if !claims.has_scope("accounts:read") {
        return Err(TokenError::Scope("accounts:read"));
    }
    Ok(Json(
        json!({"owner": claims.sub, "client": claims.client_id, "accounts": []}),
    ))
}

pub fn app(verifier: JwksVerifier) -> Router {
    Router::new()
        .route("/accounts", get(accounts))
        .with_state(verifier)
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // reqwest is built without a TLS provider of its own (no aws-lc): install ring's.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let issuer = std::env::var("ISSUER_URL").unwrap_or_else(|_| "http://localhost:8000".into());
    let audience = std::env::var("AUDIENCE").unwrap_or_else(|_| issuer.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8100").await?;
    println!("resource server on http://127.0.0.1:8100, trusting {issuer} for audience {audience}");
    axum::serve(listener, app(JwksVerifier::new(&issuer, &audience))).await?;
    Ok(())
}
