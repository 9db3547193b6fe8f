//! The OpenID Provider (docs/API.md §8, docs/OIDC.md): OAuth 2.1 authorization code with
//! PKCE, refresh and client credentials, OpenID Connect ID tokens and userinfo, RFC 7009
//! revocation, RFC 7662 introspection and RP-initiated logout — on top of the existing
//! accounts, sessions, MFA and audit.
//!
//! - `clients`: registered clients and their validation;
//! - `keys`: signing keys, rotation and the JWKS;
//! - `client_auth`: who is calling the token, revocation and introspection endpoints;
//! - `jwks_uri`: fetched and cached keys of clients that registered a `jwks_uri`;
//! - `authorize`: the authorization request, the login/consent interaction, codes;
//! - `par`: pushed authorization requests (RFC 9126);
//! - `dpop`: sender-constrained tokens (RFC 9449) and server nonces;
//! - `tokens`: the token endpoint, userinfo, revocation, introspection;
//! - `refresh`: refresh tokens (one live token per grant, rotation, reuse detection);
//! - `logout`: RP-initiated logout;
//! - `claims`: `acr`/`amr` from how a session was authenticated.
//!
//! Short-lived state (requests, codes, used assertion ids, revoked access tokens) lives in
//! the ephemeral store; grants in the database, each with its live refresh token, hanging
//! off their session, so every instance sees a revocation at once.

pub mod admin;
pub mod authorize;
pub mod claims;
pub mod client_auth;
pub mod clients;
pub mod dpop;
pub mod error;
pub mod jwks_uri;
pub mod keys;
pub mod logout;
pub mod par;
pub mod refresh;
pub mod tokens;

use std::collections::HashMap;
use std::time::Duration;

pub use error::{ErrorCode, OAuthError, OAuthResult};

use crate::configuration::{OidcSettings, Settings};
use crate::crypto::secrets::SecretBox;
use crate::services::payments::Transactions;
use crate::services::policy::Policy;
use crate::services::sessions::Sessions;
use crate::storage::db::Database;
use crate::storage::store::Store;

/// Authorization requests waiting for login and consent live this long.
pub const REQUEST_LIFETIME: Duration = Duration::from_secs(600);
/// Authorization codes live this long, and are single-use.
pub const CODE_LIFETIME: Duration = Duration::from_secs(60);
/// A used code is remembered this long, so a replay revokes what the first use issued.
pub const USED_CODE_MEMORY: Duration = Duration::from_secs(600);
/// A client assertion may expire at most this far ahead.
pub const ASSERTION_MAX_LIFETIME: Duration = Duration::from_secs(60);
/// Clock skew tolerated on time claims of client assertions and our own tokens.
pub const LEEWAY_SECS: u64 = 30;

/// The endpoints, relative to the issuer. Clients find them in the discovery document.
pub mod paths {
    pub const DISCOVERY: &str = "/.well-known/openid-configuration";
    pub const AS_METADATA: &str = "/.well-known/oauth-authorization-server";
    pub const AUTHORIZE: &str = "/oauth/authorize";
    pub const PAR: &str = "/oauth/par";
    pub const TOKEN: &str = "/oauth/token";
    pub const USERINFO: &str = "/oauth/userinfo";
    pub const JWKS: &str = "/oauth/jwks";
    pub const REVOKE: &str = "/oauth/revoke";
    pub const INTROSPECT: &str = "/oauth/introspect";
    pub const LOGOUT: &str = "/oauth/logout";
}

#[derive(Clone)]
pub struct OAuth {
    settings: OidcSettings,
    db: Database,
    store: Store,
    sessions: Sessions,
    pub clients: clients::ClientRegistry,
    pub keys: keys::SigningKeys,
    /// Payment requests (RFC 9396 `payment_initiation`) are confirmed as §9 transactions.
    transactions: Transactions,
    step_up_max_age: Duration,
    idle_timeout: Duration,
    /// How often a refresh writes the session's durable last-seen time (as a session
    /// check does: `SESSION_TOUCH_INTERVAL_SECONDS`).
    session_touch_interval: Duration,
    /// Issues and reads refresh tokens (a key derived from the master key).
    refresh_tokens: refresh::RefreshTokenCodec,
    /// HMAC key of the stateless DPoP nonces (derived from the master key: every
    /// instance issues and checks the same nonces).
    dpop_nonce_key: [u8; 32],
    /// Keys of clients registered with `jwks_uri`.
    remote_jwks: jwks_uri::RemoteJwks,
    /// The enrollment gate (docs/API.md §11): a session that must set up a second factor
    /// authorizes nothing.
    policy: Policy,
}

impl OAuth {
    /// The provider's signing keys (sealed under the master key). Built before the provider
    /// itself: §9 transaction confirmations are signed with them too (one JWKS).
    pub fn signing_keys(
        settings: &Settings,
        db: Database,
        secrets: SecretBox,
    ) -> keys::SigningKeys {
        let oidc = &settings.oidc;
        // Old keys stay published until the last token signed with them has expired.
        let retention = oidc.access_token_ttl.max(oidc.id_token_ttl) + Duration::from_secs(300);
        keys::SigningKeys::new(db, secrets, oidc.signing_alg, oidc.key_rotation, retention)
    }

    /// Reads and validates `OIDC_CLIENTS_FILE`; an invalid file stops the start.
    pub fn new(
        settings: &Settings,
        db: Database,
        store: Store,
        sessions: Sessions,
        keys: keys::SigningKeys,
        transactions: Transactions,
    ) -> anyhow::Result<Self> {
        let oidc = settings.oidc.clone();
        let mut file_clients = Vec::new();
        if let Some(path) = &oidc.clients_file {
            for (metadata, secret_hash) in clients::load_file(path).map_err(anyhow::Error::msg)? {
                let client =
                    clients::Client::new(metadata, clients::ClientSource::File, secret_hash)
                        .map_err(|p| anyhow::anyhow!("OIDC_CLIENTS_FILE: {}", p.join("; ")))?;
                file_clients.push(client);
            }
        }
        Ok(Self {
            clients: clients::ClientRegistry::new(db.clone(), file_clients),
            keys,
            transactions,
            settings: oidc,
            db,
            store,
            sessions,
            step_up_max_age: settings.session.step_up_max_age,
            idle_timeout: settings.session.idle_timeout,
            session_touch_interval: settings.session.touch_interval,
            refresh_tokens: refresh::RefreshTokenCodec::new(secrecy::ExposeSecret::expose_secret(
                &settings.encryption_key,
            )),
            policy: Policy::new(settings),
            dpop_nonce_key: crate::crypto::derive_key(
                secrecy::ExposeSecret::expose_secret(&settings.encryption_key),
                b"logicredit-auth/dpop-nonce/v1",
            ),
            remote_jwks: jwks_uri::RemoteJwks::new(),
        })
    }

    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.settings.issuer)
    }
}

/// Parses `application/x-www-form-urlencoded` parameters (a query or a form body).
/// RFC 6749 §3.1: parameters must not repeat, and empty ones count as absent.
pub fn parse_params(raw: &str) -> OAuthResult<HashMap<String, String>> {
    let mut params = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(raw.as_bytes()) {
        if value.is_empty() {
            continue;
        }
        if value.len() > 8192 {
            return Err(OAuthError::invalid_request(format!("{name}: too long")));
        }
        if params
            .insert(name.to_string(), value.into_owned())
            .is_some()
        {
            return Err(OAuthError::invalid_request(format!(
                "{name}: given more than once"
            )));
        }
    }
    Ok(params)
}

fn sha256_b64(input: &str) -> String {
    use base64::Engine as _;
    use sha2::{Digest, Sha256};
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(input.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameters_are_refused_and_empty_ones_ignored() {
        let params = parse_params("a=1&b=&c=x%20y").unwrap();
        assert_eq!(params.get("a").map(String::as_str), Some("1"));
        assert!(!params.contains_key("b"));
        assert_eq!(params.get("c").map(String::as_str), Some("x y"));
        let err = parse_params("a=1&a=2").unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn pkce_s256_is_unpadded_base64url_of_sha256() {
        // Expected value from Python's hashlib + base64.urlsafe_b64encode, padding removed.
        assert_eq!(
            sha256_b64("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gXFjzeXcM"),
            "VnXq_BSlnZVaHcsYzUiHmW_ybhQsufiKgxaf0omnOY4"
        );
    }
}
