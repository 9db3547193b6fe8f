//! Keys of the audit chain (docs/API.md §4): HMAC-SHA256 under a key derived from
//! `TOTP_ENCRYPTION_KEY` with HKDF (info `logicredit-auth/audit-chain/v1`, a label no other
//! purpose uses).
//!
//! Every keyed audit record and every head checkpoint stores the id of the key that sealed
//! it. The id is a fingerprint of the derived key (like the ids of `secrets`), so after a
//! rotation — the new master key in `TOTP_ENCRYPTION_KEY`, the old one in
//! `TOTP_ENCRYPTION_KEYS_OLD` — old records still verify under their own key while new ones
//! are sealed under the new key. Audit records are append-only and are never re-sealed:
//! an old master key must stay in `TOTP_ENCRYPTION_KEYS_OLD` for as long as records it
//! sealed are kept, or `audit verify` reports them as sealed with an unknown key.

use super::{constant_time_eq, derive_key, hmac_sha256, sha256_hex};

#[derive(Clone)]
struct ChainKey {
    id: String,
    key: [u8; 32],
}

impl ChainKey {
    fn from_master(master: &str) -> Self {
        let key = derive_key(master, b"logicredit-auth/audit-chain/v1");
        // A fingerprint of the derived key: names it without revealing anything usable.
        let id = sha256_hex(&[b"audit-key-id:".as_slice(), &key].concat())[..8].to_owned();
        Self { id, key }
    }
}

/// Why a MAC did not verify.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MacError {
    #[error("sealed with unknown audit key {0:?} (is TOTP_ENCRYPTION_KEYS_OLD missing it?)")]
    UnknownKey(String),
    #[error("MAC does not match")]
    Mismatch,
}

/// The current audit key (seals new records and checkpoints) and the old ones (verify).
#[derive(Clone)]
pub struct AuditKeys {
    current: ChainKey,
    old: Vec<ChainKey>,
}

impl std::fmt::Debug for AuditKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKeys")
            .field("current", &self.current.id)
            .field("old", &self.old.iter().map(|k| &k.id).collect::<Vec<_>>())
            .finish()
    }
}

impl AuditKeys {
    pub fn new(current: &str, old: &[&str]) -> Self {
        Self {
            current: ChainKey::from_master(current),
            old: old.iter().map(|k| ChainKey::from_master(k)).collect(),
        }
    }

    pub fn current_key_id(&self) -> &str {
        &self.current.id
    }

    /// Hex HMAC-SHA256 of `message` under the current key.
    pub fn seal(&self, message: &[u8]) -> String {
        hex::encode(hmac_sha256(&self.current.key, message))
    }

    /// Checks a hex MAC under the key named `key_id` (current or old), in constant time.
    pub fn verify(&self, key_id: &str, message: &[u8], mac_hex: &str) -> Result<(), MacError> {
        let key = std::iter::once(&self.current)
            .chain(self.old.iter())
            .find(|k| k.id == key_id)
            .ok_or_else(|| MacError::UnknownKey(key_id.to_owned()))?;
        let expected = hex::encode(hmac_sha256(&key.key, message));
        if constant_time_eq(expected.as_bytes(), mac_hex.as_bytes()) {
            Ok(())
        } else {
            Err(MacError::Mismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "old-master-key-0123456789abcdef0123456789";
    const NEW: &str = "new-master-key-0123456789abcdef0123456789";

    #[test]
    fn a_mac_verifies_only_under_its_key_and_for_its_message() {
        let keys = AuditKeys::new(NEW, &[]);
        let mac = keys.seal(b"record");
        assert_eq!(keys.verify(keys.current_key_id(), b"record", &mac), Ok(()));
        assert_eq!(
            keys.verify(keys.current_key_id(), b"recorD", &mac),
            Err(MacError::Mismatch)
        );
        // What an attacker without the key can compute: a plain SHA-256.
        assert_eq!(
            keys.verify(keys.current_key_id(), b"record", &sha256_hex(b"record")),
            Err(MacError::Mismatch)
        );
        let other = AuditKeys::new(OLD, &[]);
        assert_ne!(other.current_key_id(), keys.current_key_id());
        assert!(matches!(
            other.verify(keys.current_key_id(), b"record", &mac),
            Err(MacError::UnknownKey(_))
        ));
    }

    #[test]
    fn after_rotation_old_macs_verify_under_the_old_key() {
        let before = AuditKeys::new(OLD, &[]);
        let old_mac = before.seal(b"record");
        let rotated = AuditKeys::new(NEW, &[OLD]);
        assert_ne!(rotated.current_key_id(), before.current_key_id());
        assert_eq!(
            rotated.verify(before.current_key_id(), b"record", &old_mac),
            Ok(())
        );
        assert_eq!(
            rotated.verify(rotated.current_key_id(), b"record", &old_mac),
            Err(MacError::Mismatch)
        );
    }

    #[test]
    fn the_audit_key_is_not_the_key_of_any_other_purpose() {
        let master = NEW;
        let audit = derive_key(master, b"logicredit-auth/audit-chain/v1");
        assert_ne!(audit, derive_key(master, b"logicredit-auth/csrf/v1"));
        assert_ne!(
            audit,
            derive_key(master, b"logicredit-auth/secrets-at-rest/v1")
        );
        assert!(!format!("{:?}", AuditKeys::new(master, &[])).contains(&hex::encode(audit)));
    }
}
