//! The provider's signing keys (docs/API.md §8): generated here, sealed under the master
//! key in the database, rotated by `rotate-signing-keys` or when the current key is older
//! than `SIGNING_KEY_ROTATION_DAYS`, and published in the JWKS until the last token a
//! retired key signed has expired. JWS itself is `jsonwebtoken`'s; nothing here signs by
//! hand.
//!
//! Every instance reads the keys from the database and re-reads them at most a minute
//! later (or at once when a token names a `kid` it does not know), so a rotation done by
//! one instance or the CLI reaches all of them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::RwLock;

use crate::configuration::SigningAlg;
use crate::crypto::secrets::SecretBox;
use crate::domain::{Millis, now_millis};
use crate::services::{ServiceError, ServiceResult};
use crate::storage::db::Database;
use crate::storage::db::oauth::{self as rows, SigningKeyRow};

/// How long an instance trusts its copy of the key set.
const RELOAD_AFTER: Duration = Duration::from_secs(60);

struct CurrentKey {
    kid: String,
    alg: Algorithm,
    key: EncodingKey,
}

struct KeySet {
    loaded_at: Instant,
    current: CurrentKey,
    published: JwkSet,
    verifiers: HashMap<String, (Algorithm, DecodingKey)>,
}

#[derive(Clone)]
pub struct SigningKeys {
    db: Database,
    secrets: SecretBox,
    alg: SigningAlg,
    rotation: Duration,
    /// How long a retired key stays published: the longest a token lives, plus leeway.
    retention: Duration,
    cache: Arc<RwLock<Option<Arc<KeySet>>>>,
}

/// What went wrong verifying one of our own tokens: always the client's problem.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("the token is not one this provider signed, or it was altered")]
    Invalid,
    #[error("the token has expired")]
    Expired,
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl SigningKeys {
    pub fn new(
        db: Database,
        secrets: SecretBox,
        alg: SigningAlg,
        rotation: Duration,
        retention: Duration,
    ) -> Self {
        Self {
            db,
            secrets,
            alg,
            rotation,
            retention,
            cache: Arc::new(RwLock::new(None)),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        jwt_alg(self.alg)
    }

    /// Signs `claims` as a JWS with the current key and the given `typ`.
    pub async fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> ServiceResult<String> {
        let set = self.key_set(false).await?;
        let mut header = Header::new(set.current.alg);
        header.kid = Some(set.current.kid.clone());
        header.typ = Some(typ.to_owned());
        jsonwebtoken::encode(&header, claims, &set.current.key)
            .map_err(|e| ServiceError::Internal(anyhow::anyhow!("signing a token: {e}")))
    }

    /// Verifies a token this provider signed: signature under a published key, `typ`, and
    /// the checks of `validation` (its algorithms are set here).
    pub async fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        typ: &str,
        mut validation: Validation,
    ) -> Result<T, VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Invalid)?;
        if header.typ.as_deref().map(str::to_ascii_lowercase) != Some(typ.to_ascii_lowercase()) {
            return Err(VerifyError::Invalid);
        }
        let kid = header.kid.ok_or(VerifyError::Invalid)?;
        let mut set = self.key_set(false).await?;
        if !set.verifiers.contains_key(&kid) {
            set = self.key_set(true).await?;
        }
        let (alg, key) = set.verifiers.get(&kid).ok_or(VerifyError::Invalid)?;
        if header.alg != *alg {
            return Err(VerifyError::Invalid);
        }
        validation.algorithms = vec![*alg];
        match jsonwebtoken::decode::<T>(token, key, &validation) {
            Ok(data) => Ok(data.claims),
            Err(e) if *e.kind() == jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                Err(VerifyError::Expired)
            }
            Err(_) => Err(VerifyError::Invalid),
        }
    }

    /// The public keys, current and retired-but-still-valid (the JWKS document).
    pub async fn jwks(&self) -> ServiceResult<JwkSet> {
        Ok(self.key_set(false).await?.published.clone())
    }

    /// Makes a new key current now (the CLI's `rotate-signing-keys`); the old one stays
    /// published. Returns the new key's id.
    pub async fn rotate(&self) -> ServiceResult<String> {
        let kid = self.insert_new_key().await?;
        *self.cache.write().await = None;
        Ok(kid)
    }

    async fn insert_new_key(&self) -> ServiceResult<String> {
        let row = self.generate()?;
        let kid = row.kid.clone();
        let uow = self.db.begin().await?;
        rows::insert_current_key(uow.conn(), row).await?;
        uow.commit().await?;
        Ok(kid)
    }

    /// Re-seals private keys sealed under an old master key (`rotate-keys`); returns how
    /// many were re-sealed.
    pub async fn reseal(&self) -> ServiceResult<u64> {
        let conn = self.db.connection();
        let mut resealed = 0;
        for row in rows::all_keys(conn).await? {
            if !self.secrets.is_stale(&row.private_key) {
                continue;
            }
            let der = self
                .secrets
                .open(&row.private_key, &context(&row.kid))
                .map_err(|e| ServiceError::Internal(anyhow::anyhow!("signing key: {e}")))?;
            let sealed = self.secrets.seal(&der, &context(&row.kid));
            if rows::replace_private_key(conn, &row.kid, &row.private_key, &sealed).await? {
                resealed += 1;
            }
        }
        Ok(resealed)
    }

    async fn key_set(&self, force: bool) -> ServiceResult<Arc<KeySet>> {
        if !force
            && let Some(set) = self.cache.read().await.as_ref()
            && set.loaded_at.elapsed() < RELOAD_AFTER
        {
            return Ok(set.clone());
        }
        let mut slot = self.cache.write().await;
        if !force
            && let Some(set) = slot.as_ref()
            && set.loaded_at.elapsed() < RELOAD_AFTER
        {
            return Ok(set.clone());
        }
        let set = Arc::new(self.load().await?);
        *slot = Some(set.clone());
        Ok(set)
    }

    /// Reads the published keys; makes a first key, or a new one when the current key is
    /// due for rotation or of another algorithm than configured.
    async fn load(&self) -> ServiceResult<KeySet> {
        let now = now_millis();
        let cutoff = now - self.retention.as_millis() as Millis;
        let mut keys = rows::published_keys(self.db.connection(), cutoff).await?;
        let due = match keys.iter().find(|k| k.retired_at.is_none()) {
            None => true,
            Some(current) => {
                now - current.created_at >= self.rotation.as_millis() as Millis
                    || current.alg != self.alg.as_str()
            }
        };
        if due {
            // Two instances may rotate at once: both keys get published and the newest is
            // current; either one's tokens verify everywhere. (The caller holds the cache
            // lock: `rotate` would wait for it.)
            self.insert_new_key().await?;
            keys = rows::published_keys(self.db.connection(), cutoff).await?;
        }
        let current_row = keys
            .iter()
            .find(|k| k.retired_at.is_none())
            .ok_or_else(|| ServiceError::Internal(anyhow::anyhow!("no current signing key")))?;
        let alg = parse_alg(&current_row.alg)?;
        let der = self
            .secrets
            .open(&current_row.private_key, &context(&current_row.kid))
            .map_err(|e| ServiceError::Internal(anyhow::anyhow!("signing key: {e}")))?;
        let current = CurrentKey {
            kid: current_row.kid.clone(),
            alg,
            key: encoding_key(alg, &der),
        };
        let mut published = JwkSet { keys: Vec::new() };
        let mut verifiers = HashMap::new();
        for row in &keys {
            let jwk: Jwk = serde_json::from_str(&row.public_jwk)
                .map_err(|e| ServiceError::Internal(anyhow::anyhow!("stored JWK: {e}")))?;
            let key = DecodingKey::from_jwk(&jwk)
                .map_err(|e| ServiceError::Internal(anyhow::anyhow!("stored JWK: {e}")))?;
            verifiers.insert(row.kid.clone(), (parse_alg(&row.alg)?, key));
            published.keys.push(jwk);
        }
        Ok(KeySet {
            loaded_at: Instant::now(),
            current,
            published,
            verifiers,
        })
    }

    fn generate(&self) -> ServiceResult<SigningKeyRow> {
        let alg = jwt_alg(self.alg);
        let der = generate_pkcs8(self.alg)?;
        let key = encoding_key(alg, &der);
        let mut jwk = Jwk::from_encoding_key(&key, alg)
            .map_err(|e| ServiceError::Internal(anyhow::anyhow!("public JWK: {e}")))?;
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| ServiceError::Internal(anyhow::anyhow!("JWK thumbprint: {e}")))?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(match alg {
            Algorithm::EdDSA => KeyAlgorithm::EdDSA,
            _ => KeyAlgorithm::ES256,
        });
        Ok(SigningKeyRow {
            private_key: self.secrets.seal(&der, &context(&kid)),
            public_jwk: serde_json::to_string(&jwk).map_err(anyhow::Error::from)?,
            alg: self.alg.as_str().to_owned(),
            created_at: now_millis(),
            retired_at: None,
            kid,
        })
    }
}

/// The associated data that binds a sealed private key to its id.
fn context(kid: &str) -> String {
    format!("oauth-signing-key:{kid}")
}

fn jwt_alg(alg: SigningAlg) -> Algorithm {
    match alg {
        SigningAlg::Es256 => Algorithm::ES256,
        SigningAlg::EdDsa => Algorithm::EdDSA,
    }
}

fn parse_alg(name: &str) -> ServiceResult<Algorithm> {
    match name {
        "ES256" => Ok(Algorithm::ES256),
        "EdDSA" => Ok(Algorithm::EdDSA),
        other => Err(ServiceError::Internal(anyhow::anyhow!(
            "stored signing key has an unknown algorithm {other:?}"
        ))),
    }
}

fn encoding_key(alg: Algorithm, pkcs8_der: &[u8]) -> EncodingKey {
    match alg {
        Algorithm::EdDSA => EncodingKey::from_ed_der(pkcs8_der),
        _ => EncodingKey::from_ec_der(pkcs8_der),
    }
}

/// A fresh private key as PKCS#8 DER (v1 for Ed25519: what `jsonwebtoken` reads).
fn generate_pkcs8(alg: SigningAlg) -> ServiceResult<Vec<u8>> {
    let internal =
        |e: &dyn std::fmt::Display| ServiceError::Internal(anyhow::anyhow!("key generation: {e}"));
    match alg {
        SigningAlg::Es256 => {
            use p256::elliptic_curve::Generate as _;
            use p256::pkcs8::EncodePrivateKey as _;
            let secret = p256::SecretKey::generate_from_rng(&mut rand::rng());
            let der = secret.to_pkcs8_der().map_err(|e| internal(&e))?;
            Ok(der.as_bytes().to_vec())
        }
        SigningAlg::EdDsa => {
            use ed25519_dalek::pkcs8::{EncodePrivateKey as _, KeypairBytes};
            let signing = ed25519_dalek::SigningKey::generate(&mut rand::rng());
            let bytes = KeypairBytes {
                secret_key: signing.to_bytes(),
                public_key: None,
            };
            let der = bytes.to_pkcs8_der().map_err(|e| internal(&e))?;
            Ok(der.as_bytes().to_vec())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn keys_on_a_fresh_database(rotation: Duration, retention: Duration) -> SigningKeys {
        let dir =
            std::env::temp_dir().join(format!("lcauth-keys-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = Database::connect(&format!("sqlite://{}/auth.db", dir.display()))
            .await
            .unwrap();
        db.migrate().await.unwrap();
        let secrets = SecretBox::new("0123456789abcdef0123456789abcdef", &[]);
        SigningKeys::new(db, secrets, SigningAlg::Es256, rotation, retention)
    }

    fn claims() -> serde_json::Value {
        serde_json::json!({"iss": "https://issuer.example", "sub": "u", "exp": jsonwebtoken::get_current_timestamp() + 60})
    }

    fn validation() -> Validation {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.validate_aud = false;
        validation
    }

    #[tokio::test]
    async fn rotation_keeps_old_keys_published_until_their_tokens_expired() {
        let keys =
            keys_on_a_fresh_database(Duration::from_secs(86_400), Duration::from_secs(600)).await;
        let before = keys.sign("JWT", &claims()).await.unwrap();
        let first = keys.jwks().await.unwrap();
        assert_eq!(first.keys.len(), 1, "a first key is made on first use");
        let new_kid = keys.rotate().await.unwrap();
        let after = keys.sign("JWT", &claims()).await.unwrap();
        let header = jsonwebtoken::decode_header(&after).unwrap();
        assert_eq!(
            header.kid.as_deref(),
            Some(new_kid.as_str()),
            "the new key signs at once here"
        );
        assert_eq!(
            keys.jwks().await.unwrap().keys.len(),
            2,
            "the old key stays published"
        );
        for token in [&before, &after] {
            keys.verify::<serde_json::Value>(token, "JWT", validation())
                .await
                .unwrap();
        }
        assert!(
            matches!(
                keys.verify::<serde_json::Value>(&before, "at+jwt", validation())
                    .await,
                Err(VerifyError::Invalid)
            ),
            "typ is checked"
        );
        // The stored private key is sealed, never plain.
        let rows = rows::all_keys(keys.db.connection()).await.unwrap();
        assert!(rows.iter().all(|r| !r.private_key.contains("MIG")));
    }

    #[tokio::test]
    async fn a_key_past_its_rotation_age_is_replaced_and_retired_keys_leave_the_jwks() {
        // Rotation after 0 s: every load makes a new key. Retention 200 ms: a key retired
        // by one load is still published by it (it retired within the window — a zero
        // window made that depend on two clock readings falling in the same millisecond),
        // and gone at a load 400 ms later.
        let keys = keys_on_a_fresh_database(Duration::ZERO, Duration::from_millis(200)).await;
        let kids = |set: &JwkSet| -> Vec<String> {
            set.keys
                .iter()
                .filter_map(|k| k.common.key_id.clone())
                .collect()
        };
        let first = kids(&keys.jwks().await.unwrap());
        *keys.cache.write().await = None;
        tokio::time::sleep(Duration::from_millis(5)).await;
        let second = kids(&keys.jwks().await.unwrap());
        assert!(
            second.contains(&first[0]) && second.len() == 2,
            "{second:?}"
        );
        *keys.cache.write().await = None;
        tokio::time::sleep(Duration::from_millis(400)).await;
        let third = kids(&keys.jwks().await.unwrap());
        assert!(
            !third.contains(&first[0]),
            "a key retired before the cutoff is gone: {third:?}"
        );
    }

    #[test]
    fn generated_keys_sign_and_verify_for_each_algorithm() {
        for alg in [SigningAlg::Es256, SigningAlg::EdDsa] {
            let der = generate_pkcs8(alg).unwrap();
            let key = encoding_key(jwt_alg(alg), &der);
            let jwk = Jwk::from_encoding_key(&key, jwt_alg(alg)).unwrap();
            let mut header = Header::new(jwt_alg(alg));
            header.typ = Some("JWT".into());
            let claims = serde_json::json!({"sub": "x", "exp": 4_000_000_000u64});
            let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
            let decoding = DecodingKey::from_jwk(&jwk).unwrap();
            let mut validation = Validation::new(jwt_alg(alg));
            validation.validate_aud = false;
            let back =
                jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation).unwrap();
            assert_eq!(back.claims["sub"], "x");
        }
    }
}
