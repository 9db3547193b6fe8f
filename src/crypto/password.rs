//! Argon2id password hashing with an optional pepper (Argon2's secret input).
//!
//! Pure and blocking: callers run it on a blocking thread (see `services::passwords`).
//! Every hash runs in a caller-supplied [`HashMemory`]: a hashing slot keeps one working
//! buffer faulted in once and reuses it, instead of mapping, faulting and zeroing a fresh
//! `ARGON2_MEMORY_KIB` per hash (a quarter of a login's CPU went to that, docs/PERFORMANCE.md).

use argon2::password_hash::phc::{Output, ParamsString, Salt};
use argon2::{ARGON2ID_IDENT, Algorithm, Argon2, Block, Params, PasswordHash, Version};
use zeroize::Zeroize as _;

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

/// How a [`HashMemory`] asks the kernel for its pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageSize {
    /// Ordinary 4 KiB pages.
    Base,
    /// Transparent huge pages where the kernel allows them (`madvise(MADV_HUGEPAGE)`,
    /// Linux): fewer TLB misses in Argon2's data-dependent block reads. Falls back to
    /// base pages silently, which is still correct.
    Huge,
}

/// One hashing slot's Argon2 working memory: `memory_kib` blocks of 1 KiB, every page
/// faulted in when it is made, zeroed after every hash (it holds values derived from the
/// password until then).
pub struct HashMemory {
    blocks: Vec<Block>,
}

impl HashMemory {
    pub fn new(memory_kib: u32, pages: PageSize) -> Self {
        let len = memory_kib as usize;
        let mut blocks: Vec<Block> = Vec::with_capacity(len);
        if pages == PageSize::Huge {
            advise_huge_pages(&blocks);
        }
        // Writing every block faults the pages in now (after the advice, so the kernel
        // can back them with huge pages), not during the first hash.
        blocks.resize(len, Block::new());
        Self { blocks }
    }

    pub fn memory_kib(&self) -> usize {
        self.blocks.len()
    }

    /// The first `memory_kib` blocks, or a one-off buffer when this one is too small (a
    /// stored hash made with more memory than the current parameters).
    fn run<T>(&mut self, memory_kib: u32, job: impl FnOnce(&mut [Block]) -> T) -> T {
        let needed = memory_kib as usize;
        let outcome = match self.blocks.get_mut(..needed) {
            Some(blocks) => job(blocks),
            None => {
                let mut larger = HashMemory::new(memory_kib, PageSize::Base);
                let outcome = job(&mut larger.blocks);
                larger.wipe();
                return outcome;
            }
        };
        self.wipe();
        outcome
    }

    /// Zeroes every block (done after each hash; public for `hash-benchmark`).
    pub fn wipe(&mut self) {
        for block in &mut self.blocks {
            block.zeroize();
        }
    }
}

#[cfg(target_os = "linux")]
fn advise_huge_pages(blocks: &Vec<Block>) {
    let bytes = blocks.capacity() * Block::SIZE;
    let start = blocks.as_ptr() as usize;
    // madvise wants a page-aligned start: advise the whole 2 MiB-aligned part of the
    // allocation (the allocator maps a buffer this large on its own).
    const HUGE: usize = 2 * 1024 * 1024;
    let aligned = start.next_multiple_of(HUGE);
    let end = (start + bytes) / HUGE * HUGE;
    if end <= aligned {
        return;
    }
    // SAFETY: [aligned, end) lies inside the live allocation of `blocks`; MADV_HUGEPAGE
    // only changes how the kernel backs these pages, never their contents or mapping.
    let rc = unsafe {
        libc::madvise(
            aligned as *mut libc::c_void,
            end - aligned,
            libc::MADV_HUGEPAGE,
        )
    };
    if rc != 0 {
        tracing::debug!("madvise(MADV_HUGEPAGE) refused: base pages for Argon2 memory");
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_blocks: &Vec<Block>) {}

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

    fn argon2<'a>(
        &self,
        pepper: Option<&'a Pepper>,
        algorithm: Algorithm,
        version: Version,
        params: Params,
    ) -> Result<Argon2<'a>, PasswordHashError> {
        match pepper {
            Some(p) => Argon2::new_with_secret(&p.secret, algorithm, version, params)
                .map_err(PasswordHashError::Params),
            None => Ok(Argon2::new(algorithm, version, params)),
        }
    }

    /// A fresh salted Argon2id hash of `password` with the current parameters and pepper,
    /// computed in `memory`.
    pub fn hash(
        &self,
        password: &str,
        memory: &mut HashMemory,
    ) -> Result<StoredPassword, PasswordHashError> {
        let hashing = |e: argon2::Error| PasswordHashError::Hashing(e.to_string());
        let pepper = self.current_pepper.as_ref();
        let argon2 = self.argon2(
            pepper,
            Algorithm::Argon2id,
            Version::V0x13,
            self.params.clone(),
        )?;
        let salt = argon2::password_hash::try_generate_salt()
            .map_err(|e| PasswordHashError::Hashing(e.to_string()))?;
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        memory
            .run(self.params.m_cost(), |blocks| {
                argon2.hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, blocks)
            })
            .map_err(hashing)?;
        let phc_error =
            |e: argon2::password_hash::phc::Error| PasswordHashError::Hashing(e.to_string());
        let phc = PasswordHash {
            algorithm: ARGON2ID_IDENT,
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&self.params)
                .map_err(|e| PasswordHashError::Hashing(e.to_string()))?,
            salt: Some(Salt::new(&salt).map_err(phc_error)?),
            hash: Some(Output::new(&out).map_err(phc_error)?),
        }
        .to_string();
        out.zeroize();
        Ok(StoredPassword {
            phc,
            pepper_id: pepper.map(|p| p.id.clone()),
        })
    }

    pub fn verify(
        &self,
        password: &str,
        stored: &StoredPassword,
        memory: &mut HashMemory,
    ) -> Result<Verification, PasswordHashError> {
        let unreadable =
            |e: argon2::password_hash::Error| PasswordHashError::Unreadable(e.to_string());
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
        let algorithm = Algorithm::try_from(parsed.algorithm.as_str()).map_err(unreadable)?;
        let version = match parsed.version {
            Some(v) => {
                Version::try_from(v).map_err(|e| PasswordHashError::Unreadable(e.to_string()))?
            }
            None => Version::default(),
        };
        let params = Params::try_from(&parsed).map_err(unreadable)?;
        let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
            return Err(PasswordHashError::Unreadable(
                "no salt or no hash output".to_owned(),
            ));
        };
        let m_cost = params.m_cost();
        let argon2 = self.argon2(pepper, algorithm, version, params)?;
        let mut out = vec![0u8; expected.len()];
        memory
            .run(m_cost, |blocks| {
                argon2.hash_password_into_with_memory(password.as_bytes(), salt, &mut out, blocks)
            })
            .map_err(|e| PasswordHashError::Unreadable(e.to_string()))?;
        let computed =
            Output::new(&out).map_err(|e| PasswordHashError::Unreadable(e.to_string()))?;
        out.zeroize();
        // `Output`'s equality is constant-time.
        let valid = &computed == expected;
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

    fn memory() -> HashMemory {
        HashMemory::new(64, PageSize::Base)
    }

    #[test]
    fn a_hash_verifies_only_its_password() {
        let hasher = small(None, &[]);
        let stored = hasher.hash("correct horse battery", &mut memory()).unwrap();
        assert!(stored.phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert!(
            hasher
                .verify("correct horse battery", &stored, &mut memory())
                .unwrap()
                .valid
        );
        assert!(
            !hasher
                .verify("correct horse batterx", &stored, &mut memory())
                .unwrap()
                .valid
        );
    }

    #[test]
    fn default_parameters_are_the_contract_ones() {
        // m = 64 MiB, t = 3, p = 1 (docs/API.md §4): the one test that pays for the real cost.
        let hasher = PasswordHasher::new(65_536, 3, 1, None, &[]).unwrap();
        let mut slot = HashMemory::new(65_536, PageSize::Huge);
        let stored = hasher.hash("a long passphrase here", &mut slot).unwrap();
        assert!(stored.phc.starts_with("$argon2id$v=19$m=65536,t=3,p=1$"));
        assert!(
            hasher
                .verify("a long passphrase here", &stored, &mut slot)
                .unwrap()
                .valid
        );
    }

    #[test]
    fn changed_parameters_ask_for_a_rehash() {
        let stored = small(None, &[])
            .hash("pass phrase one", &mut memory())
            .unwrap();
        let stronger = PasswordHasher::new(128, 1, 1, None, &[]).unwrap();
        let check = stronger
            .verify("pass phrase one", &stored, &mut memory())
            .unwrap();
        assert!(check.valid && check.needs_rehash);
        assert!(
            !small(None, &[])
                .verify("pass phrase one", &stored, &mut memory())
                .unwrap()
                .needs_rehash
        );
    }

    #[test]
    fn the_pepper_is_required_and_rolls_over() {
        let old = small(Some("pepper-one"), &[]);
        let stored = old.hash("pass phrase two", &mut memory()).unwrap();
        assert!(stored.pepper_id.is_some());
        // Without the pepper the hash cannot be checked at all.
        assert!(matches!(
            small(None, &[]).verify("pass phrase two", &stored, &mut memory()),
            Err(PasswordHashError::UnknownPepper(_))
        ));
        // A new pepper with the old one kept for verification: valid, and re-hash asked.
        let rotated = small(Some("pepper-two"), &["pepper-one"]);
        let check = rotated
            .verify("pass phrase two", &stored, &mut memory())
            .unwrap();
        assert!(check.valid && check.needs_rehash);
        let fresh = rotated.hash("pass phrase two", &mut memory()).unwrap();
        assert_ne!(fresh.pepper_id, stored.pepper_id);
    }

    #[test]
    fn hashes_interoperate_with_the_library_and_leave_the_buffer_zeroed() {
        use argon2::{PasswordHasher as _, PasswordVerifier as _};
        let hasher = small(None, &[]);
        let mut slot = memory();
        // Ours verifies with argon2's own verifier, and the library's with ours.
        let ours = hasher.hash("interop pass phrase", &mut slot).unwrap();
        let library = Argon2::new(Algorithm::Argon2id, Version::V0x13, hasher.params.clone());
        let parsed = PasswordHash::new(&ours.phc).unwrap();
        assert!(
            library
                .verify_password(b"interop pass phrase", &parsed)
                .is_ok()
        );
        let theirs = StoredPassword {
            phc: library
                .hash_password(b"interop pass phrase")
                .unwrap()
                .to_string(),
            pepper_id: None,
        };
        assert!(
            hasher
                .verify("interop pass phrase", &theirs, &mut slot)
                .unwrap()
                .valid
        );
        assert!(
            !hasher
                .verify("interop pass phrasf", &theirs, &mut slot)
                .unwrap()
                .valid
        );
        // Nothing derived from the password stays in the slot between hashes.
        assert!(
            slot.blocks
                .iter()
                .all(|b| b.as_ref().iter().all(|w| *w == 0))
        );
    }

    #[test]
    fn a_hash_made_with_more_memory_than_the_slot_still_verifies() {
        let bigger = PasswordHasher::new(256, 1, 1, None, &[]).unwrap();
        let stored = bigger
            .hash(
                "pass phrase three",
                &mut HashMemory::new(256, PageSize::Base),
            )
            .unwrap();
        let check = small(None, &[])
            .verify("pass phrase three", &stored, &mut memory())
            .unwrap();
        assert!(check.valid && check.needs_rehash);
    }
}
