//! Keys of `private_key_jwt` clients that registered a `jwks_uri` instead of inline
//! `jwks` (RFC 7591 §2): fetched on use and cached, so the client can rotate keys by
//! publishing a new one.
//!
//! - cached for 5 minutes per URI; an assertion naming an unknown `kid` re-fetches at
//!   once (a rotation), at most every 10 seconds, so garbage assertions cannot make the
//!   provider hammer the client's server;
//! - 5 s timeout, no redirects, at most 64 KiB: a slow or huge answer costs little;
//! - `https` only, except `http` to a loopback host (tests, local development) — checked
//!   at registration (`clients::check_jwks_uri`) and again here;
//! - keys that are not usable for client assertions (encryption keys, other curves) are
//!   skipped; a set with none is an error.
//!
//! A client whose keys cannot be fetched fails authentication (`invalid_client`): it is
//! the client's server that is down, not a dependency of ours.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;

use super::clients::{ClientKey, check_jwks_uri, client_key};

const FRESH_FOR: Duration = Duration::from_secs(300);
const REFETCH_AT_MOST_EVERY: Duration = Duration::from_secs(10);
const TIMEOUT: Duration = Duration::from_secs(5);
const MAX_BYTES: usize = 64 * 1024;

/// One fetched key set.
pub struct FetchedKeys {
    pub keys: Vec<ClientKey>,
    fetched: Instant,
}

#[derive(Debug, thiserror::Error)]
#[error("jwks_uri: {0}")]
pub struct FetchError(String);

#[derive(Clone)]
pub struct RemoteJwks {
    http: Option<reqwest::Client>,
    cache: moka::future::Cache<String, Arc<FetchedKeys>>,
}

impl Default for RemoteJwks {
    fn default() -> Self {
        Self::new()
    }
}

impl RemoteJwks {
    pub fn new() -> Self {
        // reqwest is built without a TLS provider of its own: ring (lib.rs).
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("logicredit-auth (jwks_uri)")
            .build()
            .map_err(|e| tracing::error!(error = %e, "the jwks_uri HTTP client could not be built"))
            .ok();
        Self {
            http,
            cache: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(FRESH_FOR)
                .build(),
        }
    }

    /// The keys published at `uri`, fresh enough to contain `kid` if the client has it.
    pub async fn keys(&self, uri: &str, kid: Option<&str>) -> Result<Arc<FetchedKeys>, FetchError> {
        if let Some(cached) = self.cache.get(uri).await {
            let known = kid.is_none_or(|kid| {
                cached
                    .keys
                    .iter()
                    .any(|k| k.kid.as_deref().is_none_or(|k| k == kid))
            });
            if known || cached.fetched.elapsed() < REFETCH_AT_MOST_EVERY {
                return Ok(cached);
            }
        }
        let fetched = Arc::new(self.fetch(uri).await?);
        self.cache.insert(uri.to_owned(), fetched.clone()).await;
        Ok(fetched)
    }

    async fn fetch(&self, uri: &str) -> Result<FetchedKeys, FetchError> {
        check_jwks_uri(uri).map_err(|e| FetchError(e.to_owned()))?;
        let http = self
            .http
            .as_ref()
            .ok_or_else(|| FetchError("fetching is unavailable".to_owned()))?;
        let failed = |e: reqwest::Error| {
            tracing::warn!(%uri, error = %e, "a client's jwks_uri could not be fetched");
            FetchError("the keys could not be fetched".to_owned())
        };
        let mut response = http
            .get(uri)
            .header("accept", "application/json, application/jwk-set+json")
            .send()
            .await
            .map_err(failed)?;
        if !response.status().is_success() {
            return Err(FetchError(format!("answered {}", response.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > MAX_BYTES {
                return Err(FetchError("the key set is larger than 64 KiB".to_owned()));
            }
            body.extend_from_slice(&chunk);
        }
        let set: JwkSet =
            serde_json::from_slice(&body).map_err(|_| FetchError("not a JWK set".to_owned()))?;
        let keys: Vec<ClientKey> = set.keys.iter().filter_map(|k| client_key(k).ok()).collect();
        if keys.is_empty() {
            return Err(FetchError(
                "no usable key (P-256, Ed25519 or RSA for PS256)".to_owned(),
            ));
        }
        Ok(FetchedKeys {
            keys,
            fetched: Instant::now(),
        })
    }
}
