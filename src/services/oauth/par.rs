//! Pushed authorization requests (RFC 9126). The client posts its authorization request
//! to the PAR endpoint, authenticated like at the token endpoint, and gets a
//! `request_uri` for the browser: the parameters never travel through the front channel,
//! so they cannot be read or changed there (FAPI 2.0 §5.3.2.2).
//!
//! The parameters are validated exactly as the authorization endpoint would (`validate`),
//! kept in the ephemeral store for 60 s, and taken atomically at the authorization
//! endpoint: a `request_uri` works once, on any instance. The authorization endpoint then
//! runs its usual checks on the pushed parameters, so a pushed request is never treated
//! more leniently than a plain one.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::clients::Client;
use super::{ErrorCode, OAuth, OAuthError, OAuthResult};
use crate::crypto::{random_token, token_hash};
use crate::services::ServiceError;

/// A `request_uri` lives this long (RFC 9126 §2.2; FAPI 2.0 asks for under 600 s).
pub const PAR_LIFETIME: Duration = Duration::from_secs(60);
pub const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

/// Client authentication parameters: they authenticate the push, they are not part of the
/// authorization request.
const AUTHENTICATION_PARAMS: [&str; 3] =
    ["client_assertion", "client_assertion_type", "client_secret"];

/// The PAR endpoint's `201` body.
#[derive(Debug, Clone, Serialize)]
pub struct PushedRequest {
    pub request_uri: String,
    pub expires_in: u64,
}

/// What the store keeps under `oauth:par:<hash of the request_uri>`.
#[derive(Serialize, Deserialize)]
struct Stored {
    client_id: String,
    params: HashMap<String, String>,
}

fn par_key(request_uri: &str) -> String {
    format!("oauth:par:{}", token_hash(request_uri))
}

impl OAuth {
    /// `POST /oauth/par` after client authentication. `dpop_jkt`: the key of a DPoP proof
    /// sent with the push (RFC 9449 §10.1), which the code will then be bound to.
    pub async fn push(
        &self,
        client: &Client,
        params: &HashMap<String, String>,
        dpop_jkt: Option<&str>,
    ) -> OAuthResult<PushedRequest> {
        if params.contains_key("request_uri") {
            return Err(OAuthError::invalid_request(
                "request_uri cannot be pushed (RFC 9126 §2.1)",
            ));
        }
        if params.get("client_id").is_some_and(|id| id != client.id()) {
            return Err(OAuthError::invalid_request(
                "client_id does not match the authenticated client",
            ));
        }
        // FAPI 2.0 §5.3.2.2: the redirect URI is always pushed, and must be registered
        // (this version accepts no unregistered ones, RFC 9126 §2.4 notwithstanding).
        let redirect_uri = params
            .get("redirect_uri")
            .ok_or_else(|| OAuthError::invalid_request("redirect_uri is required"))?;
        if !client.has_redirect_uri(redirect_uri) {
            return Err(OAuthError::invalid_request(
                "redirect_uri is not registered for this client",
            ));
        }
        let mut params: HashMap<String, String> = params
            .iter()
            .filter(|(name, _)| !AUTHENTICATION_PARAMS.contains(&name.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        match (params.get("dpop_jkt"), dpop_jkt) {
            (Some(given), Some(proof)) if given != proof => {
                return Err(OAuthError::new(
                    ErrorCode::InvalidDpopProof,
                    "dpop_jkt does not match the key of the DPoP proof",
                ));
            }
            (None, Some(proof)) => {
                params.insert("dpop_jkt".to_owned(), proof.to_owned());
            }
            _ => {}
        }
        // The same checks as the authorization endpoint, now, so the client learns of a
        // bad request here rather than through the browser.
        self.validate(client, redirect_uri.clone(), &params)?;
        let request_uri = format!("{REQUEST_URI_PREFIX}{}", random_token());
        let stored = Stored {
            client_id: client.id().to_owned(),
            params,
        };
        let value = serde_json::to_string(&stored).map_err(anyhow::Error::from)?;
        self.store
            .set(&par_key(&request_uri), &value, PAR_LIFETIME)
            .await
            .map_err(ServiceError::from)?;
        Ok(PushedRequest {
            request_uri,
            expires_in: PAR_LIFETIME.as_secs(),
        })
    }

    /// The pushed parameters behind `request_uri`, taken (single use). Only `client_id`
    /// and `request_uri` of the front-channel request count (RFC 9126 §4); the client must
    /// be the one that pushed.
    pub(super) async fn take_pushed(
        &self,
        client: &Client,
        request_uri: &str,
    ) -> OAuthResult<HashMap<String, String>> {
        let unusable = || {
            OAuthError::new(
                ErrorCode::InvalidRequestUri,
                "request_uri is unknown, already used or expired",
            )
        };
        if !request_uri.starts_with(REQUEST_URI_PREFIX) {
            return Err(unusable());
        }
        let raw = self
            .store
            .take(&par_key(request_uri))
            .await
            .map_err(ServiceError::from)?
            .ok_or_else(unusable)?;
        let stored: Stored = serde_json::from_str(&raw).map_err(|_| unusable())?;
        if stored.client_id != client.id() {
            return Err(OAuthError::new(
                ErrorCode::InvalidRequestUri,
                "request_uri was pushed by another client",
            ));
        }
        let mut params = stored.params;
        params.insert("client_id".to_owned(), stored.client_id);
        Ok(params)
    }
}
