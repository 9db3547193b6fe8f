//! Crypto helpers: random tokens, token hashing, keys derived from the master key.

pub mod audit_keys;
pub mod jose;
pub mod password;
pub mod secrets;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// `n` bytes from the thread CSPRNG (ChaCha12 seeded and reseeded from the OS).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::fill(&mut bytes);
    bytes
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    hex::encode(buf)
}

/// 256 random bits as 43 characters of base64url: session and reset tokens.
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// `len` characters of `[A-Za-z0-9]`: email verification tokens (32 chars ≈ 190 bits).
pub fn random_alphanumeric(len: usize) -> String {
    Alphanumeric.sample_string(&mut rand::rng(), len)
}

/// Tokens are stored only as SHA-256 hashes: they carry ≥ 190 random bits, so a slow hash
/// adds nothing, and a database leak does not reveal usable tokens.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

// Invariant: HMAC takes keys of any length; `new_from_slice` cannot fail here.
#[allow(clippy::expect_used)]
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Constant-time comparison of two byte strings (length is not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Purpose-bound keys derived from the configured master key with HKDF-SHA256, so one
/// secret in the configuration never serves two purposes.
#[derive(Clone)]
pub struct KeyRing {
    csrf: [u8; 32],
}

impl KeyRing {
    pub fn new(master_key: &str) -> Self {
        Self {
            csrf: derive_key(master_key, b"logicredit-auth/csrf/v1"),
        }
    }

    /// The CSRF token of a session: HMAC of its session token. Bound to the session (a
    /// new session token gives a new CSRF token) and needs no storage.
    pub fn csrf_token_for(&self, session_token: &str) -> String {
        URL_SAFE_NO_PAD.encode(hmac_sha256(&self.csrf, session_token.as_bytes()))
    }
}

// Invariant: 32 bytes is within HKDF-SHA256's output limit (255 × 32).
#[allow(clippy::expect_used)]
pub fn derive_key(master_key: &str, purpose: &[u8]) -> [u8; 32] {
    let hk = Hkdf::<Sha256>::new(Some(b"logicredit-auth"), master_key.as_bytes());
    let mut okm = [0u8; 32];
    hk.expand(purpose, &mut okm)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    okm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_the_contract_shapes() {
        let session = random_token();
        assert_eq!(session.len(), 43);
        assert!(
            session
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        let verify = random_alphanumeric(32);
        assert_eq!(verify.len(), 32);
        assert!(verify.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(random_token(), random_token());
    }

    #[test]
    fn csrf_tokens_are_bound_to_the_session_and_the_key() {
        let ring = KeyRing::new("0123456789abcdef0123456789abcdef");
        let other = KeyRing::new("fedcba9876543210fedcba9876543210");
        assert_eq!(ring.csrf_token_for("a"), ring.csrf_token_for("a"));
        assert_ne!(ring.csrf_token_for("a"), ring.csrf_token_for("b"));
        assert_ne!(ring.csrf_token_for("a"), other.csrf_token_for("a"));
    }
}
