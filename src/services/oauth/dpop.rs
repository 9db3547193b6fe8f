//! DPoP (RFC 9449): sender-constrained tokens. A client proves possession of a key with a
//! short JWS (`typ` `dpop+jwt`) per request; the token endpoint binds the access token to
//! that key (`cnf.jkt`, `token_type` `DPoP`), and userinfo then wants a proof by the same
//! key over the token (`ath`).
//!
//! The proof is verified with jsonwebtoken (no hand-made JWS parsing); the rest of RFC 9449
//! §4.3 is checked here: `typ`, an asymmetric `alg`, a public `jwk`, `htm`, `htu`, `iat`
//! within a window, `jti` never twice (remembered in the ephemeral store, so every instance
//! refuses a replay), `ath`, and `nonce`.
//!
//! Server nonces (§8) are stateless: `<bucket>.<HMAC(bucket)>` with one bucket a minute and
//! a key derived from the master key, so any instance checks any instance's nonce without
//! a store round trip; a nonce is good in its minute and the next.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use super::clients::Client;
use super::tokens::{AccessClaims, BearerError};
use super::{ErrorCode, LEEWAY_SECS, OAuth, OAuthError, sha256_b64};
use crate::crypto::{constant_time_eq, hmac_sha256, token_hash};
use crate::services::ServiceError;

/// Proof algorithms: asymmetric only (RFC 9449 §4.2), the FAPI 2.0 §5.4 set.
pub const DPOP_ALGS: [Algorithm; 3] = [Algorithm::ES256, Algorithm::EdDSA, Algorithm::PS256];
/// For discovery (`dpop_signing_alg_values_supported`) and `WWW-Authenticate`.
pub const DPOP_ALG_NAMES: [&str; 3] = ["ES256", "EdDSA", "PS256"];
pub const DPOP_TYP: &str = "dpop+jwt";
/// A proof is accepted this long after its `iat` (and `LEEWAY_SECS` before it).
pub const PROOF_WINDOW: Duration = Duration::from_secs(60);
/// Nonces change every minute; one is accepted in its minute and the next.
const NONCE_BUCKET_SECS: u64 = 60;
/// Members of a JWK that only a private key has (RFC 7518 §6): a proof carrying them is
/// refused, the client has leaked its key.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// `cnf` of a bound access token (RFC 7800, RFC 9449 §6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    pub jkt: String,
}

/// A verified proof: the JWK SHA-256 thumbprint (RFC 7638) of its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopProof {
    pub jkt: String,
}

/// What a proof must be about.
pub struct ProofTarget<'a> {
    pub method: &'a str,
    /// The endpoint's public URL (issuer + path); compared without query and fragment.
    pub url: &'a str,
    /// At resource endpoints: the access token the proof must name (`ath`).
    pub access_token: Option<&'a str>,
    pub nonce_required: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DpopError {
    /// `invalid_dpop_proof`.
    #[error("DPoP proof: {0}")]
    Invalid(String),
    /// `use_dpop_nonce`: a nonce of this server is needed (missing, expired or foreign).
    #[error("a DPoP nonce issued by this server is required (see the DPoP-Nonce header)")]
    UseNonce,
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<DpopError> for OAuthError {
    fn from(error: DpopError) -> Self {
        match error {
            DpopError::Invalid(_) => {
                OAuthError::new(ErrorCode::InvalidDpopProof, error.to_string())
            }
            DpopError::UseNonce => OAuthError::new(ErrorCode::UseDpopNonce, error.to_string()),
            DpopError::Service(e) => e.into(),
        }
    }
}

#[derive(Deserialize)]
struct ProofClaims {
    jti: String,
    htm: String,
    htu: String,
    iat: i64,
    #[serde(default)]
    ath: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
}

/// How the access token came to a resource endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenScheme {
    Bearer,
    Dpop,
}

/// An access token as a resource endpoint received it, with its proof, if any.
pub struct PresentedToken<'a> {
    pub token: &'a str,
    pub scheme: TokenScheme,
    pub proof: Option<&'a str>,
    pub method: &'a str,
}

fn invalid(why: impl Into<String>) -> DpopError {
    DpopError::Invalid(why.into())
}

/// `htu` comparison (RFC 9449 §4.3 item 9): scheme, host, port and path, normalised by
/// the URL parser, without query and fragment.
fn same_target(htu: &str, endpoint: &str) -> bool {
    let strip = |raw: &str| {
        url::Url::parse(raw).ok().map(|mut url| {
            url.set_query(None);
            url.set_fragment(None);
            url
        })
    };
    matches!((strip(htu), strip(endpoint)), (Some(a), Some(b)) if a == b)
}

/// The proof's header JSON has no private key members (jsonwebtoken's `Jwk` would drop
/// them silently, so the raw header is looked at).
fn jwk_is_public(proof: &str) -> bool {
    let Some(segment) = proof.split('.').next() else {
        return false;
    };
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(segment) else {
        return false;
    };
    let Ok(header) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return false;
    };
    header
        .get("jwk")
        .and_then(|j| j.as_object())
        .is_some_and(|jwk| PRIVATE_MEMBERS.iter().all(|m| !jwk.contains_key(*m)))
}

/// The key fits the algorithm: P-256 for ES256, Ed25519 for EdDSA, RSA ≥ 2048 bits for
/// PS256 (FAPI 2.0 §5.4.1).
fn key_fits(jwk: &Jwk, alg: Algorithm) -> bool {
    match (&jwk.algorithm, alg) {
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256) => p.curve == EllipticCurve::P256,
        (AlgorithmParameters::OctetKeyPair(p), Algorithm::EdDSA) => {
            p.curve == EllipticCurve::Ed25519
        }
        (AlgorithmParameters::RSA(p), Algorithm::PS256) => URL_SAFE_NO_PAD
            .decode(&p.n)
            .is_ok_and(|n| n.iter().skip_while(|b| **b == 0).count() >= 256),
        _ => false,
    }
}

impl OAuth {
    fn nonce_for(&self, bucket: u64) -> String {
        let mac = hmac_sha256(
            &self.dpop_nonce_key,
            format!("dpop-nonce:{bucket}").as_bytes(),
        );
        format!("{bucket}.{}", URL_SAFE_NO_PAD.encode(&mac[..16]))
    }

    /// The current server nonce (sent as `DPoP-Nonce`).
    pub fn dpop_nonce(&self) -> String {
        self.nonce_for(jsonwebtoken::get_current_timestamp() / NONCE_BUCKET_SECS)
    }

    fn nonce_is_ours(&self, nonce: &str) -> bool {
        let current = jsonwebtoken::get_current_timestamp() / NONCE_BUCKET_SECS;
        let Some(bucket) = nonce
            .split_once('.')
            .and_then(|(b, _)| b.parse::<u64>().ok())
        else {
            return false;
        };
        (bucket == current || bucket + 1 == current)
            && constant_time_eq(self.nonce_for(bucket).as_bytes(), nonce.as_bytes())
    }

    /// Verifies a `DPoP` header value for `target` and remembers its `jti`.
    pub async fn check_dpop(
        &self,
        proof: &str,
        target: &ProofTarget<'_>,
    ) -> Result<DpopProof, DpopError> {
        if proof.len() > 8192 {
            return Err(invalid("too long"));
        }
        let header = jsonwebtoken::decode_header(proof).map_err(|_| invalid("not a JWS"))?;
        if !header
            .typ
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case(DPOP_TYP))
        {
            return Err(invalid("typ must be dpop+jwt"));
        }
        if !DPOP_ALGS.contains(&header.alg) {
            return Err(invalid("alg must be ES256, EdDSA or PS256"));
        }
        let jwk = header
            .jwk
            .as_ref()
            .ok_or_else(|| invalid("the jwk header is missing"))?;
        if !jwk_is_public(proof) || !key_fits(jwk, header.alg) {
            return Err(invalid("jwk must be a public key of the alg's type"));
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|_| invalid("unreadable jwk"))?;
        let mut validation = Validation::new(header.alg);
        // RFC 9449 proofs have no exp/aud: the checks below replace them.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<ProofClaims>(proof, &key, &validation)
            .map_err(|_| invalid("signature or claims (jti, htm, htu, iat) are wrong"))?
            .claims;
        if claims.htm != target.method {
            return Err(invalid("htm does not match the request method"));
        }
        if !same_target(&claims.htu, target.url) {
            return Err(invalid("htu does not match the endpoint"));
        }
        let now = jsonwebtoken::get_current_timestamp() as i64;
        if claims.iat > now + LEEWAY_SECS as i64 || claims.iat < now - PROOF_WINDOW.as_secs() as i64
        {
            return Err(invalid("iat is outside the accepted window"));
        }
        if let Some(token) = target.access_token {
            let expected = sha256_b64(token);
            if claims.ath.as_deref() != Some(expected.as_str()) {
                return Err(invalid("ath does not match the access token"));
            }
        }
        match claims.nonce.as_deref() {
            Some(nonce) if !self.nonce_is_ours(nonce) => return Err(DpopError::UseNonce),
            None if target.nonce_required => return Err(DpopError::UseNonce),
            _ => {}
        }
        if claims.jti.is_empty() || claims.jti.len() > 256 {
            return Err(invalid("jti missing or too long"));
        }
        let jkt = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|_| invalid("unusable jwk"))?;
        // Remembered as long as the proof could be accepted.
        let key = format!("oauth:dpop-jti:{jkt}:{}", token_hash(&claims.jti));
        let ttl = PROOF_WINDOW + Duration::from_secs(2 * LEEWAY_SECS);
        if !self
            .store
            .set_if_absent(&key, "1", ttl)
            .await
            .map_err(ServiceError::from)?
        {
            return Err(invalid("the proof was already used (jti)"));
        }
        Ok(DpopProof { jkt })
    }

    /// The token endpoint's proof: required for `fapi2` clients (with a server nonce) and
    /// for clients registered with `dpop_bound_access_tokens`; optional for the rest.
    pub async fn token_request_proof(
        &self,
        client: &Client,
        proof: Option<&str>,
    ) -> Result<Option<DpopProof>, OAuthError> {
        let required = client.is_fapi2() || client.metadata.dpop_bound_access_tokens;
        let Some(proof) = proof else {
            if required {
                return Err(OAuthError::new(
                    ErrorCode::InvalidDpopProof,
                    "this client must send a DPoP proof (RFC 9449)",
                ));
            }
            return Ok(None);
        };
        let url = self.endpoint(super::paths::TOKEN);
        let target = ProofTarget {
            method: "POST",
            url: &url,
            access_token: None,
            nonce_required: client.is_fapi2(),
        };
        Ok(Some(self.check_dpop(proof, &target).await?))
    }

    /// A resource endpoint's sender check: a bound token needs the `DPoP` scheme and a proof
    /// by its key over this token; an unbound one the `Bearer` scheme.
    pub async fn check_sender(
        &self,
        claims: &AccessClaims,
        presented: &PresentedToken<'_>,
        endpoint: &str,
    ) -> Result<(), BearerError> {
        let Some(cnf) = &claims.cnf else {
            return match presented.scheme {
                TokenScheme::Bearer => Ok(()),
                TokenScheme::Dpop => Err(BearerError::InvalidToken(
                    "the access token is not DPoP-bound: send it as a Bearer token",
                )),
            };
        };
        let proof = match (presented.scheme, presented.proof) {
            (TokenScheme::Dpop, Some(proof)) => proof,
            _ => {
                return Err(BearerError::DpopRequired(
                    "the access token is DPoP-bound: send it with the DPoP scheme and a proof",
                ));
            }
        };
        let target = ProofTarget {
            method: presented.method,
            url: endpoint,
            access_token: Some(presented.token),
            nonce_required: false,
        };
        let verified = self.check_dpop(proof, &target).await.map_err(|e| match e {
            DpopError::Service(s) => BearerError::Service(s),
            other => BearerError::InvalidDpopProof(other.to_string()),
        })?;
        if verified.jkt != cnf.jkt {
            return Err(BearerError::InvalidDpopProof(
                "DPoP proof: signed by another key than the token is bound to".to_owned(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htu_is_compared_without_query_and_fragment_after_normalisation() {
        let endpoint = "https://id.bank.example/oauth/token";
        assert!(same_target("https://id.bank.example/oauth/token", endpoint));
        assert!(same_target(
            "HTTPS://ID.bank.example:443/oauth/token?x=1#f",
            endpoint
        ));
        assert!(!same_target(
            "https://id.bank.example/oauth/userinfo",
            endpoint
        ));
        assert!(!same_target("https://evil.example/oauth/token", endpoint));
        assert!(!same_target("/oauth/token", endpoint));
    }

    #[test]
    fn a_jwk_with_private_members_is_refused() {
        let header = |jwk: &str| {
            format!(
                "{}.e30.sig",
                URL_SAFE_NO_PAD
                    .encode(format!(r#"{{"typ":"dpop+jwt","alg":"ES256","jwk":{jwk}}}"#))
            )
        };
        assert!(jwk_is_public(&header(
            r#"{"kty":"EC","crv":"P-256","x":"a","y":"b"}"#
        )));
        assert!(!jwk_is_public(&header(
            r#"{"kty":"EC","crv":"P-256","x":"a","y":"b","d":"secret"}"#
        )));
        assert!(!jwk_is_public("not-base64!.e30.sig"));
    }
}
