//! The cryptography under `jsonwebtoken` for ES256: ring's P-256 instead of RustCrypto's.
//!
//! Why: at the token endpoint every request verifies a client assertion (or a DPoP proof)
//! and signs one or two tokens, all ES256. Profiled under load (issue 18), RustCrypto's
//! portable P-256 arithmetic was 48 % of the service's CPU for `client_credentials`;
//! ring's is assembly-optimised and already in the tree (rustls' provider). jsonwebtoken
//! still does all of the JWS (parsing, encoding, claims validation) through its
//! `CryptoProvider` extension point; this module only hands ES256's sign and verify to
//! ring, and every other algorithm to jsonwebtoken's own RustCrypto provider.
//!
//! jsonwebtoken asks for a signer per token. Parsing a PKCS#8 key in ring checks the
//! public key against the private one (a scalar multiplication, as costly as signing), so
//! parsed key pairs are kept, by their DER, for the handful of keys this process signs
//! with (the provider's current and retired keys).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, rust_crypto};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::signature::{Error as SignatureError, Signer, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, UnparsedPublicKey,
};

/// More distinct signing keys than this in one process is not the provider's key set:
/// the cache starts over rather than grow.
const KEPT_KEY_PAIRS: usize = 32;

static PROVIDER: LazyLock<CryptoProvider> = LazyLock::new(|| CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: rust_crypto::DEFAULT_PROVIDER.key_utils.clone(),
});

static KEY_PAIRS: LazyLock<Mutex<HashMap<Vec<u8>, Arc<EcdsaKeyPair>>>> =
    LazyLock::new(Mutex::default);

static RNG: LazyLock<SystemRandom> = LazyLock::new(SystemRandom::new);

/// Makes this provider jsonwebtoken's for the process; a no-op after the first call (or
/// when another was installed first).
pub fn install() {
    let _ = PROVIDER.install_default();
}

fn new_signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    match algorithm {
        Algorithm::ES256 => Ok(Box::new(Es256Signer::new(key)?)),
        _ => (rust_crypto::DEFAULT_PROVIDER.signer_factory)(algorithm, key),
    }
}

fn new_verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    match algorithm {
        Algorithm::ES256 => Ok(Box::new(Es256Verifier::new(key)?)),
        _ => (rust_crypto::DEFAULT_PROVIDER.verifier_factory)(algorithm, key),
    }
}

struct Es256Signer(Arc<EcdsaKeyPair>);

impl Es256Signer {
    fn new(key: &EncodingKey) -> Result<Self> {
        if key.family() != AlgorithmFamily::Ec {
            return Err(ErrorKind::InvalidKeyFormat.into());
        }
        let der = key.as_bytes();
        let mut pairs = KEY_PAIRS
            .lock()
            .map_err(|_| ErrorKind::Provider("the key cache is poisoned".into()))?;
        if let Some(pair) = pairs.get(der) {
            return Ok(Self(pair.clone()));
        }
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &*RNG)
            .map_err(|_| ErrorKind::InvalidEcdsaKey)?;
        let pair = Arc::new(pair);
        if pairs.len() >= KEPT_KEY_PAIRS {
            pairs.clear();
        }
        pairs.insert(der.to_vec(), pair.clone());
        Ok(Self(pair))
    }
}

impl Signer<Vec<u8>> for Es256Signer {
    fn try_sign(&self, message: &[u8]) -> std::result::Result<Vec<u8>, SignatureError> {
        self.0
            .sign(&*RNG, message)
            .map(|signature| signature.as_ref().to_vec())
            .map_err(|_| SignatureError::new())
    }
}

impl JwtSigner for Es256Signer {
    fn algorithm(&self) -> Algorithm {
        Algorithm::ES256
    }
}

/// The public key as jsonwebtoken keeps it: a SEC1 uncompressed point, which is what
/// ring takes (and validates) too.
struct Es256Verifier(Vec<u8>);

impl Es256Verifier {
    fn new(key: &DecodingKey) -> Result<Self> {
        if key.family() != AlgorithmFamily::Ec {
            return Err(ErrorKind::InvalidKeyFormat.into());
        }
        Ok(Self(key.try_get_as_bytes()?.to_vec()))
    }
}

impl Verifier<Vec<u8>> for Es256Verifier {
    fn verify(
        &self,
        message: &[u8],
        signature: &Vec<u8>,
    ) -> std::result::Result<(), SignatureError> {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.0)
            .verify(message, signature)
            .map_err(|_| SignatureError::new())
    }
}

impl JwtVerifier for Es256Verifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::ES256
    }
}

#[cfg(test)]
mod tests {
    //! Interoperability both ways with jsonwebtoken's RustCrypto provider: what one signs
    //! the other verifies, and neither accepts a changed message or another key.

    use super::*;
    use p256::elliptic_curve::Generate as _;
    use p256::pkcs8::EncodePrivateKey as _;

    fn key_pair() -> (EncodingKey, DecodingKey) {
        let secret = p256::SecretKey::generate_from_rng(&mut rand::rng());
        let der = secret.to_pkcs8_der().unwrap();
        let point = secret.public_key().to_sec1_bytes();
        (
            EncodingKey::from_ec_der(der.as_bytes()),
            DecodingKey::from_ec_der(&point),
        )
    }

    fn rust_crypto_sign(key: &EncodingKey, message: &[u8]) -> Vec<u8> {
        (rust_crypto::DEFAULT_PROVIDER.signer_factory)(&Algorithm::ES256, key)
            .unwrap()
            .try_sign(message)
            .unwrap()
    }

    fn rust_crypto_verifies(key: &DecodingKey, message: &[u8], signature: &Vec<u8>) -> bool {
        (rust_crypto::DEFAULT_PROVIDER.verifier_factory)(&Algorithm::ES256, key)
            .unwrap()
            .verify(message, signature)
            .is_ok()
    }

    #[test]
    fn ring_and_rust_crypto_verify_each_others_signatures() {
        let (signing, verifying) = key_pair();
        let message = b"header.claims".to_vec();
        let ours = new_signer(&Algorithm::ES256, &signing)
            .unwrap()
            .try_sign(&message)
            .unwrap();
        assert_eq!(ours.len(), 64, "JWS ES256: r || s");
        assert!(rust_crypto_verifies(&verifying, &message, &ours));
        let theirs = rust_crypto_sign(&signing, &message);
        let verifier = new_verifier(&Algorithm::ES256, &verifying).unwrap();
        assert!(verifier.verify(&message, &theirs).is_ok());
        assert!(verifier.verify(b"header.claimz", &theirs).is_err());
        let (_, stranger) = key_pair();
        let verifier = new_verifier(&Algorithm::ES256, &stranger).unwrap();
        assert!(verifier.verify(&message, &ours).is_err());
    }

    #[test]
    fn keys_of_another_family_are_refused() {
        let hmac = EncodingKey::from_secret(b"secret");
        assert!(new_signer(&Algorithm::ES256, &hmac).is_err());
        let hmac = DecodingKey::from_secret(b"secret");
        assert!(new_verifier(&Algorithm::ES256, &hmac).is_err());
    }

    #[test]
    fn a_whole_token_round_trips_through_the_installed_provider() {
        install();
        let (signing, verifying) = key_pair();
        let header = jsonwebtoken::Header::new(Algorithm::ES256);
        let token = jsonwebtoken::encode(
            &header,
            &serde_json::json!({"sub": "x", "exp": u64::MAX / 2}),
            &signing,
        )
        .unwrap();
        let validation = jsonwebtoken::Validation::new(Algorithm::ES256);
        let claims = jsonwebtoken::decode::<serde_json::Value>(&token, &verifying, &validation)
            .unwrap()
            .claims;
        assert_eq!(claims["sub"], "x");
    }
}
