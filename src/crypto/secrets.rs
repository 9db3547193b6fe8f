//! Secrets at rest (TOTP secrets, passkey state): AES-256-GCM under keys derived from
//! `TOTP_ENCRYPTION_KEY` with HKDF.
//!
//! A ciphertext reads `<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>`. The key id names
//! the key that sealed it, so old keys (`TOTP_ENCRYPTION_KEYS_OLD`) still open old
//! ciphertexts and `rotate-keys` can find what to re-seal. The associated data binds each
//! ciphertext to its row (e.g. `totp:<user id>`): moved to another row, it fails to open.

use aes_gcm::aead::{Aead, Nonce, Payload};
use aes_gcm::{Aes256Gcm, Key, KeyInit};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{derive_key, random_bytes, sha256_hex};

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("ciphertext sealed with unknown key {0:?} (is TOTP_ENCRYPTION_KEYS_OLD missing it?)")]
    UnknownKey(String),
    #[error("ciphertext is malformed or was altered")]
    Corrupt,
}

#[derive(Clone)]
struct SealingKey {
    id: String,
    key: [u8; 32],
}

impl SealingKey {
    fn from_master(master: &str) -> Self {
        let key = derive_key(master, b"logicredit-auth/secrets-at-rest/v1");
        // A fingerprint of the derived key: names it without revealing anything usable.
        let id = sha256_hex(&[b"key-id:".as_slice(), &key].concat())[..8].to_owned();
        Self { id, key }
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&Key::<Aes256Gcm>::from(self.key))
    }
}

#[derive(Clone)]
pub struct SecretBox {
    current: SealingKey,
    old: Vec<SealingKey>,
}

impl SecretBox {
    pub fn new(current: &str, old: &[&str]) -> Self {
        Self {
            current: SealingKey::from_master(current),
            old: old.iter().map(|k| SealingKey::from_master(k)).collect(),
        }
    }

    pub fn current_key_id(&self) -> &str {
        &self.current.id
    }

    // Invariant: AES-GCM encryption into memory fails only past 64 GiB of plaintext.
    #[allow(clippy::expect_used)]
    pub fn seal(&self, plaintext: &[u8], context: &str) -> String {
        let nonce = Nonce::<Aes256Gcm>::from(random_bytes::<NONCE_LEN>());
        let sealed = self
            .current
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer does not fail");
        let mut blob = Vec::with_capacity(NONCE_LEN + sealed.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        format!("{}.{}", self.current.id, URL_SAFE_NO_PAD.encode(blob))
    }

    pub fn open(&self, ciphertext: &str, context: &str) -> Result<Vec<u8>, SecretError> {
        let (id, body) = ciphertext.split_once('.').ok_or(SecretError::Corrupt)?;
        let key = std::iter::once(&self.current)
            .chain(self.old.iter())
            .find(|k| k.id == id)
            .ok_or_else(|| SecretError::UnknownKey(id.to_owned()))?;
        let blob = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| SecretError::Corrupt)?;
        if blob.len() < NONCE_LEN + TAG_LEN {
            return Err(SecretError::Corrupt);
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let nonce = Nonce::<Aes256Gcm>::try_from(nonce).map_err(|_| SecretError::Corrupt)?;
        key.cipher()
            .decrypt(
                &nonce,
                Payload {
                    msg: sealed,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Corrupt)
    }

    /// Whether a ciphertext was sealed with a key other than the current one.
    pub fn is_stale(&self, ciphertext: &str) -> bool {
        ciphertext
            .split_once('.')
            .is_none_or(|(id, _)| id != self.current.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "old-master-key-0123456789abcdef0123456789";
    const NEW: &str = "new-master-key-0123456789abcdef0123456789";

    #[test]
    fn sealed_secrets_open_only_in_their_context() {
        let secrets = SecretBox::new(NEW, &[]);
        let sealed = secrets.seal(b"JBSWY3DPEHPK3PXP", "totp:alice");
        assert!(!sealed.contains("JBSWY3DPEHPK3PXP"));
        assert_eq!(
            secrets.open(&sealed, "totp:alice").unwrap(),
            b"JBSWY3DPEHPK3PXP"
        );
        assert!(matches!(
            secrets.open(&sealed, "totp:mallory"),
            Err(SecretError::Corrupt)
        ));
        assert_ne!(
            secrets.seal(b"x", "c"),
            secrets.seal(b"x", "c"),
            "fresh nonce each time"
        );
    }

    #[test]
    fn old_keys_open_and_rotation_finds_stale_ciphertexts() {
        let before = SecretBox::new(OLD, &[]).seal(b"secret", "ctx");
        assert!(matches!(
            SecretBox::new(NEW, &[]).open(&before, "ctx"),
            Err(SecretError::UnknownKey(_))
        ));
        let rotated = SecretBox::new(NEW, &[OLD]);
        assert_eq!(rotated.open(&before, "ctx").unwrap(), b"secret");
        assert!(rotated.is_stale(&before));
        assert!(!rotated.is_stale(&rotated.seal(b"secret", "ctx")));
    }

    #[test]
    fn tampering_is_detected() {
        let secrets = SecretBox::new(NEW, &[]);
        let sealed = secrets.seal(b"secret", "ctx");
        let mut chars: Vec<char> = sealed.chars().collect();
        let last = chars.len() - 1;
        chars[last] = if chars[last] == 'A' { 'B' } else { 'A' };
        let tampered: String = chars.into_iter().collect();
        assert!(secrets.open(&tampered, "ctx").is_err());
        assert!(secrets.open("garbage", "ctx").is_err());
    }
}
