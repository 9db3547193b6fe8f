//! Client authentication at the token, revocation and introspection endpoints:
//! `client_secret_basic`, `client_secret_post`, `private_key_jwt` (RFC 7523 with the rules
//! of docs/API.md §8) and `none` for public clients. A client must use the method it
//! registered; any failure is `invalid_client`.

use std::collections::HashMap;

use base64::Engine as _;
use jsonwebtoken::Validation;
use serde::Deserialize;

use super::clients::{AuthMethod, CLIENT_ASSERTION_ALGS, Client};
use super::{ASSERTION_MAX_LIFETIME, LEEWAY_SECS, OAuth, OAuthError, OAuthResult, paths};
use crate::crypto::token_hash;
use crate::services::ServiceError;

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// What the caller presented: the `Authorization` header and the form parameters.
pub struct Presented<'a> {
    pub authorization: Option<&'a str>,
    pub params: &'a HashMap<String, String>,
}

#[derive(Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    exp: u64,
    jti: String,
    #[serde(default)]
    iat: Option<u64>,
    #[serde(default)]
    nbf: Option<u64>,
}

/// `Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 §2.3.1).
fn basic_credentials(header: &str) -> Option<(String, String)> {
    let encoded = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("v={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}

impl OAuth {
    /// Authenticates the calling client. A public client is identified by `client_id`
    /// alone (its codes are protected by PKCE).
    pub async fn authenticate_client(&self, presented: &Presented<'_>) -> OAuthResult<Client> {
        let params = presented.params;
        let basic = presented
            .authorization
            .filter(|h| h.len() > 6 && h[..6].eq_ignore_ascii_case("basic "));
        let assertion = params.get("client_assertion");
        let post_secret = params.get("client_secret");
        let methods = [basic.is_some(), assertion.is_some(), post_secret.is_some()];
        if methods.iter().filter(|m| **m).count() > 1 {
            return Err(OAuthError::invalid_request(
                "use exactly one client authentication method",
            ));
        }
        if let Some(header) = basic {
            let (id, secret) = basic_credentials(header)
                .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials"))?;
            if params.get("client_id").is_some_and(|c| *c != id) {
                return Err(OAuthError::invalid_client("client_id does not match"));
            }
            let client = self.known_client(&id).await?;
            return self.check_secret(client, AuthMethod::ClientSecretBasic, &secret);
        }
        if let Some(secret) = post_secret {
            let id = params
                .get("client_id")
                .ok_or_else(|| OAuthError::invalid_client("client_id is missing"))?;
            let client = self.known_client(id).await?;
            return self.check_secret(client, AuthMethod::ClientSecretPost, secret);
        }
        if let Some(assertion) = assertion {
            if params.get("client_assertion_type").map(String::as_str) != Some(JWT_BEARER) {
                return Err(OAuthError::invalid_client(
                    "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ));
            }
            return self
                .check_assertion(assertion, params.get("client_id"))
                .await;
        }
        let id = params
            .get("client_id")
            .ok_or_else(|| OAuthError::invalid_client("client authentication is missing"))?;
        let client = self.known_client(id).await?;
        if client.metadata.token_endpoint_auth_method != AuthMethod::None {
            return Err(OAuthError::invalid_client(format!(
                "this client must authenticate with {}",
                client.metadata.token_endpoint_auth_method.as_str()
            )));
        }
        Ok(client)
    }

    async fn known_client(&self, id: &str) -> OAuthResult<Client> {
        self.clients
            .find(id)
            .await?
            .ok_or_else(|| OAuthError::invalid_client("unknown client or wrong credentials"))
    }

    fn check_secret(&self, client: Client, used: AuthMethod, secret: &str) -> OAuthResult<Client> {
        if client.metadata.token_endpoint_auth_method != used {
            return Err(OAuthError::invalid_client(format!(
                "this client must authenticate with {}",
                client.metadata.token_endpoint_auth_method.as_str()
            )));
        }
        if !client.secret_matches(secret) {
            return Err(OAuthError::invalid_client(
                "unknown client or wrong credentials",
            ));
        }
        Ok(client)
    }

    /// RFC 7523 §3: signed by a key of the client, `iss` = `sub` = the client, `aud` the
    /// issuer (or the token endpoint), `exp` at most 60 s ahead, `jti` never seen before on
    /// any instance.
    async fn check_assertion(
        &self,
        assertion: &str,
        client_id: Option<&String>,
    ) -> OAuthResult<Client> {
        let bad = |why: &str| OAuthError::invalid_client(format!("client assertion: {why}"));
        let header = jsonwebtoken::decode_header(assertion).map_err(|_| bad("not a JWS"))?;
        if !CLIENT_ASSERTION_ALGS.contains(&header.alg) {
            return Err(bad("alg must be ES256, PS256 or EdDSA"));
        }
        let unverified: AssertionClaims =
            jsonwebtoken::dangerous::insecure_decode_claims(assertion)
                .map_err(|_| bad("claims missing"))?;
        if client_id.is_some_and(|c| *c != unverified.iss) {
            return Err(OAuthError::invalid_client(
                "client_id does not match the assertion",
            ));
        }
        let client = self.known_client(&unverified.iss).await?;
        if client.metadata.token_endpoint_auth_method != AuthMethod::PrivateKeyJwt {
            return Err(OAuthError::invalid_client(format!(
                "this client must authenticate with {}",
                client.metadata.token_endpoint_auth_method.as_str()
            )));
        }
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&[
            self.issuer().to_owned(),
            self.endpoint(paths::TOKEN),
            self.endpoint(paths::PAR),
            self.endpoint(paths::REVOKE),
            self.endpoint(paths::INTROSPECT),
        ]);
        validation.set_issuer(&[client.id()]);
        validation.sub = Some(client.id().to_owned());
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud", "jti"]);
        validation.leeway = LEEWAY_SECS;
        let remote;
        let keys = match &client.metadata.jwks_uri {
            Some(uri) => {
                remote = self
                    .remote_jwks
                    .keys(uri, header.kid.as_deref())
                    .await
                    .map_err(|e| bad(&e.to_string()))?;
                remote.keys.as_slice()
            }
            None => client.keys(),
        };
        let candidates = keys.iter().filter(|k| {
            k.alg == header.alg && (header.kid.is_none() || k.kid == header.kid || k.kid.is_none())
        });
        let mut verified = None;
        for key in candidates {
            if let Ok(data) =
                jsonwebtoken::decode::<AssertionClaims>(assertion, &key.key, &validation)
            {
                verified = Some(data.claims);
                break;
            }
        }
        let claims =
            verified.ok_or_else(|| bad("signature, audience, issuer or expiry is wrong"))?;
        let now = jsonwebtoken::get_current_timestamp();
        let latest = now + ASSERTION_MAX_LIFETIME.as_secs() + LEEWAY_SECS;
        if claims.exp > latest {
            return Err(bad("exp is more than 60 seconds ahead"));
        }
        // FAPI 2.0 §5.3.2.1 item 14: up to 10 s in the future is clock skew (we allow the
        // usual leeway), more than 60 s never.
        if [claims.iat, claims.nbf]
            .into_iter()
            .flatten()
            .any(|t| t > now + LEEWAY_SECS)
        {
            return Err(bad("iat or nbf is in the future"));
        }
        if claims.jti.is_empty() || claims.jti.len() > 256 || claims.sub != claims.iss {
            return Err(bad("jti missing or too long"));
        }
        // Remembered until the assertion could no longer be accepted anyway.
        let key = format!("oauth:jti:{}:{}", client.id(), token_hash(&claims.jti));
        let ttl = std::time::Duration::from_secs(claims.exp.saturating_sub(now) + 2 * LEEWAY_SECS);
        let first = self
            .store
            .set_if_absent(&key, "1", ttl)
            .await
            .map_err(ServiceError::from)?;
        if !first {
            return Err(bad("jti was already used"));
        }
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("my%3Aclient:s%2Bcret")
        );
        assert_eq!(
            basic_credentials(&header),
            Some(("my:client".to_owned(), "s+cret".to_owned()))
        );
        assert_eq!(basic_credentials("Basic !!!"), None);
        assert_eq!(basic_credentials("Bearer x"), None);
    }
}
