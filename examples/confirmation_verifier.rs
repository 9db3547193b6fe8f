//! A payment backend's check of a transaction confirmation (docs/API.md §9,
//! docs/TRANSACTIONS.md): before executing a payment order, it verifies — offline, with
//! the provider's JWKS — that the user confirmed exactly this order.
//!
//! ```text
//! ISSUER_URL=http://localhost:8000 AUDIENCE=http://localhost:8000/payments \
//!     cargo run --example confirmation_verifier -- "$CONFIRMATION" order.json
//! ```
//!
//! What is checked, and why:
//! - the signature, under a key the issuer publishes (JWKS via discovery), with the key's
//!   own algorithm (ES256 or EdDSA; never `none`, HMAC or anything the header merely
//!   claims);
//! - `typ` = `txn-confirmation+jwt` (an ID or access token is not a confirmation);
//! - `iss` (the provider), `aud` (this backend: `TRANSACTION_AUDIENCE`), `exp` (≤ 5
//!   minutes; a little leeway for clock skew);
//! - `tx_hash` recomputed from the order the backend is about to execute — RFC 8785
//!   canonical JSON, SHA-256, base64url — equals the signed one: any other amount,
//!   currency or payee is refused (PSD2 RTS Art. 5(1)(c)–(d)). The order goes through the
//!   same normalization as at creation (IBAN without spaces, amount at the currency's
//!   minor units), so "10.5" and "10.50" are one payment;
//! - `jti` used once: a replayed confirmation is refused (here an in-memory set; a
//!   backend with several instances keeps it where they all see it, until `exp`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use logicredit_auth::services::payments::{CONFIRMATION_TYP, ConfirmationClaims, PaymentOrder};
use serde_json::Value;

/// Leeway for clock skew on `exp`, in seconds.
const LEEWAY_SECS: u64 = 30;

/// Why a confirmation does not authorize the order.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not a transaction confirmation (typ)")]
    NotAConfirmation,
    #[error("the signature or a standard claim is invalid: {0}")]
    Invalid(String),
    #[error("the confirmation has expired")]
    Expired,
    #[error("signed by a key the issuer does not publish")]
    UnknownKey,
    #[error("the order to execute is not valid: {0}")]
    InvalidOrder(String),
    #[error("the confirmation is for other payment details")]
    OtherDetails,
    #[error("this confirmation was used already")]
    Replayed,
}

/// Verifies confirmations of one issuer for one audience, with the issuer's keys.
pub struct ConfirmationVerifier {
    issuer: String,
    audience: String,
    keys: JwkSet,
    leeway: u64,
    /// `jti` → `exp`: each confirmation authorizes one execution.
    used: Mutex<HashMap<String, u64>>,
}

impl ConfirmationVerifier {
    /// With the issuer's JWKS already at hand (fetched, or configured).
    pub fn new(issuer: &str, audience: &str, keys: JwkSet) -> Self {
        Self {
            issuer: issuer.trim_end_matches('/').to_owned(),
            audience: audience.to_owned(),
            keys,
            leeway: LEEWAY_SECS,
            used: Mutex::new(HashMap::new()),
        }
    }

    /// Another leeway for clock skew on `exp` than the default 30 seconds.
    pub fn with_leeway(mut self, seconds: u64) -> Self {
        self.leeway = seconds;
        self
    }

    /// Fetches the JWKS through the issuer's discovery document (from `base`, which may
    /// be an internal address of the same service).
    pub async fn fetch(issuer: &str, audience: &str, base: &str) -> anyhow::Result<Self> {
        let base = base.trim_end_matches('/');
        let http = reqwest::Client::new();
        let discovery: Value = http
            .get(format!("{base}/.well-known/openid-configuration"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let jwks_uri = discovery["jwks_uri"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("discovery has no jwks_uri"))?
            .replacen(issuer.trim_end_matches('/'), base, 1);
        let keys: JwkSet = http
            .get(jwks_uri)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(Self::new(issuer, audience, keys))
    }

    /// Checks `token` against the order about to be executed (the JSON the backend holds:
    /// one payment object, or the array of a batch). On success the claims, and the `jti`
    /// is spent.
    pub fn verify(&self, token: &str, order: &Value) -> Result<ConfirmationClaims, Refusal> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| Refusal::Invalid(e.to_string()))?;
        if header.typ.as_deref() != Some(CONFIRMATION_TYP) {
            return Err(Refusal::NotAConfirmation);
        }
        let kid = header.kid.ok_or(Refusal::UnknownKey)?;
        let jwk = self.keys.find(&kid).ok_or(Refusal::UnknownKey)?;
        // The key decides the algorithm, not the header.
        let alg = match jwk.common.key_algorithm {
            Some(KeyAlgorithm::ES256) => Algorithm::ES256,
            Some(KeyAlgorithm::EdDSA) => Algorithm::EdDSA,
            _ => return Err(Refusal::UnknownKey),
        };
        if header.alg != alg {
            return Err(Refusal::Invalid("algorithm is not the key's".into()));
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|e| Refusal::Invalid(e.to_string()))?;
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = self.leeway;
        let claims = match jsonwebtoken::decode::<ConfirmationClaims>(token, &key, &validation) {
            Ok(data) => data.claims,
            Err(e) if *e.kind() == jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                return Err(Refusal::Expired);
            }
            Err(e) => return Err(Refusal::Invalid(e.to_string())),
        };

        // The order the backend will execute, normalized and hashed as at creation.
        let order = PaymentOrder::validate(order).map_err(|fields| {
            Refusal::InvalidOrder(
                fields
                    .iter()
                    .map(|(field, reason)| format!("{field}: {reason}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        if order.tx_hash().encode() != claims.tx_hash || order.details() != claims.details {
            return Err(Refusal::OtherDetails);
        }

        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(u64::MAX);
        let mut used = self.used.lock().map_err(|_| Refusal::Replayed)?;
        used.retain(|_, exp| *exp + self.leeway >= now);
        if used.insert(claims.jti.clone(), claims.exp).is_some() {
            return Err(Refusal::Replayed);
        }
        Ok(claims)
    }
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let issuer = std::env::var("ISSUER_URL").unwrap_or_else(|_| "http://localhost:8000".into());
    let audience = std::env::var("AUDIENCE").unwrap_or_else(|_| format!("{issuer}/payments"));
    let mut args = std::env::args().skip(1);
    let (Some(token), Some(order_file)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: confirmation_verifier CONFIRMATION ORDER.json");
    };
    let order: Value = serde_json::from_str(&std::fs::read_to_string(order_file)?)?;
    let verifier = ConfirmationVerifier::fetch(&issuer, &audience, &issuer).await?;
    match verifier.verify(&token, &order) {
        Ok(claims) => println!(
            "confirmed by {} ({}), transaction {}: execute",
            claims.sub,
            claims.linking.as_str(),
            claims.txn
        ),
        Err(refusal) => println!("refused: {refusal}"),
    }
    Ok(())
}
