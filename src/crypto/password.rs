//! Argon2id password hashing with an optional pepper (Argon2's secret input).
//!
//! Pure and blocking: callers run it on a blocking thread (see `services::passwords`).

use argon2::{
    ARGON2ID_IDENT, Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _,
    PasswordVerifier as _, Version, password_hash,
};

#[derive(Debug, thiserror::Error)]
pub enum PasswordHashError {
    #[error("invalid Argon2 parameters: {0}")]
    Params(argon2::Error),
    #[error("stored password hash is unreadable: {0}")]
    Unreadable(String),
    #[error(
        "stored hash uses pepper {0:?}, which is not configured (PASSWORD_PEPPER / PASSWORD_PEPPERS_OLD)"
    )]
    UnknownPepper(String),
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

/// A PHC string plus the id of the pepper it was made with (stored beside it, because a
/// custom PHC parameter would break Argon2 parsers).
#[derive(Debug, Clone)]
pub struct StoredPassword {
    pub phc: String,
    pub pepper_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verification {
    pub valid: bool,
    /// The hash used older parameters or another pepper: store a fresh one now.
    pub needs_rehash: bool,
}

#[derive(Clone)]
struct Pepper {
    id: String,
    secret: Vec<u8>,
}

impl Pepper {
    fn new(secret: &str) -> Self {
        // A short, non-secret fingerprint identifies the pepper without revealing it.
        let id =
            crate::crypto::sha256_hex(format!("logicredit-auth/pepper-id/{secret}").as_bytes())
                [..12]
                .to_owned();
        Self {
            id,
            secret: secret.as_bytes().to_vec(),
        }
    }
}

#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    current_pepper: Option<Pepper>,
    old_peppers: Vec<Pepper>,
}

impl PasswordHasher {
    pub fn new(
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
        pepper: Option<&str>,
        old_peppers: &[&str],
    ) -> Result<Self, PasswordHashError> {
        let params = Params::new(memory_kib, iterations, parallelism, None)
            .map_err(PasswordHashError::Params)?;
        Ok(Self {
            params,
            current_pepper: pepper.map(Pepper::new),
            old_peppers: old_peppers.iter().map(|p| Pepper::new(p)).collect(),
        })
    }

    pub fn memory_kib(&self) -> u32 {
        self.params.m_cost()
    }

    fn argon2<'a>(&self, pepper: Option<&'a Pepper>) -> Result<Argon2<'a>, PasswordHashError> {
        match pepper {
            Some(p) => Argon2::new_with_secret(
                &p.secret,
                Algorithm::Argon2id,
                Version::V0x13,
                self.params.clone(),
            )
            .map_err(PasswordHashError::Params),
            None => Ok(Argon2::new(
                Algorithm::Argon2id,
                Version::V0x13,
                self.params.clone(),
            )),
        }
    }

    pub fn hash(&self, password: &str) -> Result<StoredPassword, PasswordHashError> {
        let pepper = self.current_pepper.as_ref();
        let phc = self
            .argon2(pepper)?
            .hash_password(password.as_bytes())
            .map_err(|e| PasswordHashError::Hashing(e.to_string()))?
            .to_string();
        Ok(StoredPassword {
            phc,
            pepper_id: pepper.map(|p| p.id.clone()),
        })
    }

    pub fn verify(
        &self,
        password: &str,
        stored: &StoredPassword,
    ) -> Result<Verification, PasswordHashError> {
        let pepper = match &stored.pepper_id {
            None => None,
            Some(id) => Some(
                self.current_pepper
                    .iter()
                    .chain(self.old_peppers.iter())
                    .find(|p| &p.id == id)
                    .ok_or_else(|| PasswordHashError::UnknownPepper(id.clone()))?,
            ),
        };
        let parsed = PasswordHash::new(&stored.phc)
            .map_err(|e| PasswordHashError::Unreadable(e.to_string()))?;
        // The algorithm and cost come from the stored hash; the instance only adds the pepper.
        let valid = match self
            .argon2(pepper)?
            .verify_password(password.as_bytes(), &parsed)
        {
            Ok(()) => true,
            Err(password_hash::Error::PasswordInvalid) => false,
            Err(e) => return Err(PasswordHashError::Unreadable(e.to_string())),
        };
        let current_pepper_id = self.current_pepper.as_ref().map(|p| &p.id);
        let needs_rehash = valid
            && (stored.pepper_id.as_ref() != current_pepper_id
                || !self.has_current_params(&parsed));
        Ok(Verification {
            valid,
            needs_rehash,
        })
    }

    fn has_current_params(&self, parsed: &PasswordHash) -> bool {
        let Ok(params) = Params::try_from(parsed) else {
            return false;
        };
        parsed.algorithm == ARGON2ID_IDENT
            && parsed.version == Some(0x13)
            && params.m_cost() == self.params.m_cost()
            && params.t_cost() == self.params.t_cost()
            && params.p_cost() == self.params.p_cost()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(pepper: Option<&str>, old: &[&str]) -> PasswordHasher {
        PasswordHasher::new(64, 1, 1, pepper, old).unwrap()
    }

    #[test]
    fn a_hash_verifies_only_its_password() {
        let hasher = small(None, &[]);
        let stored = hasher.hash("correct horse battery").unwrap();
        assert!(stored.phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert!(
            hasher
                .verify("correct horse battery", &stored)
                .unwrap()
                .valid
        );
        assert!(
            !hasher
                .verify("correct horse batterx", &stored)
                .unwrap()
                .valid
        );
    }

    #[test]
    fn default_parameters_are_the_contract_ones() {
        // m = 64 MiB, t = 3, p = 1 (docs/API.md §4): the one test that pays for the real cost.
        let hasher = PasswordHasher::new(65_536, 3, 1, None, &[]).unwrap();
        let stored = hasher.hash("a long passphrase here").unwrap();
        assert!(stored.phc.starts_with("$argon2id$v=19$m=65536,t=3,p=1$"));
        assert!(
            hasher
                .verify("a long passphrase here", &stored)
                .unwrap()
                .valid
        );
    }

    #[test]
    fn changed_parameters_ask_for_a_rehash() {
        let stored = small(None, &[]).hash("pass phrase one").unwrap();
        let stronger = PasswordHasher::new(128, 1, 1, None, &[]).unwrap();
        let check = stronger.verify("pass phrase one", &stored).unwrap();
        assert!(check.valid && check.needs_rehash);
        assert!(
            !small(None, &[])
                .verify("pass phrase one", &stored)
                .unwrap()
                .needs_rehash
        );
    }

    #[test]
    fn the_pepper_is_required_and_rolls_over() {
        let old = small(Some("pepper-one"), &[]);
        let stored = old.hash("pass phrase two").unwrap();
        assert!(stored.pepper_id.is_some());
        // Without the pepper the hash cannot be checked at all.
        assert!(matches!(
            small(None, &[]).verify("pass phrase two", &stored),
            Err(PasswordHashError::UnknownPepper(_))
        ));
        // A new pepper with the old one kept for verification: valid, and re-hash asked.
        let rotated = small(Some("pepper-two"), &["pepper-one"]);
        let check = rotated.verify("pass phrase two", &stored).unwrap();
        assert!(check.valid && check.needs_rehash);
        let fresh = rotated.hash("pass phrase two").unwrap();
        assert_ne!(fresh.pepper_id, stored.pepper_id);
    }
}
