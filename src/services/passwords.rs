//! Password rules (docs/API.md §4) and hashing with a bounded number of hashes in flight.

use secrecy::ExposeSecret;
use std::collections::HashSet;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::Semaphore;
use unicode_normalization::UnicodeNormalization;

use crate::configuration::PasswordSettings;
use crate::crypto::password::{
    HashMemory, PageSize, PasswordHashError, PasswordHasher, StoredPassword, Verification,
};
use crate::domain::EmailAddress;

pub const MAX_PASSWORD_CHARS: usize = 128;
/// zxcvbn scores 0..=4; below this a password is "too guessable".
const MIN_ZXCVBN_SCORE: u8 = 3;
/// The local part of the email is only refused inside a password when it is this long.
const MIN_EMAIL_LOCAL_PART: usize = 4;
static SHIPPED_BANNED_LIST: &str = include_str!("../../assets/banned-passwords.txt");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WeakPasswordReason {
    TooShort,
    TooLong,
    Banned,
    TooGuessable,
    ContainsEmail,
    /// In a corpus of breached passwords (docs/API.md §11, `PWNED_PASSWORDS_*`).
    Breached,
    /// One of the account's last 4 passwords (`PRIVILEGED_POLICY=pci`, docs/API.md §11).
    Reused,
}

/// NFKC makes visually equal passwords equal (e.g. full-width digits) before any rule
/// or hash sees them.
pub fn normalize(password: &str) -> String {
    password.nfkc().collect()
}

pub struct PasswordPolicy {
    min_length: usize,
    banned: HashSet<String>,
}

impl PasswordPolicy {
    pub fn new(min_length: usize, extra_banned_list: Option<&str>) -> Self {
        let banned = SHIPPED_BANNED_LIST
            .lines()
            .chain(extra_banned_list.unwrap_or("").lines())
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| normalize(line).to_lowercase())
            .collect();
        Self { min_length, banned }
    }

    pub fn banned_count(&self) -> usize {
        self.banned.len()
    }

    /// Every reason the (normalised) password fails, or `Ok` when it passes.
    pub fn check(
        &self,
        password: &str,
        email: &EmailAddress,
    ) -> Result<(), Vec<WeakPasswordReason>> {
        let mut reasons = Vec::new();
        let length = password.chars().count();
        if length < self.min_length {
            reasons.push(WeakPasswordReason::TooShort);
        }
        if length > MAX_PASSWORD_CHARS {
            reasons.push(WeakPasswordReason::TooLong);
        }
        let lowered = password.to_lowercase();
        if self.banned.contains(&lowered) {
            reasons.push(WeakPasswordReason::Banned);
        }
        let local = email.local_part();
        if local.chars().count() >= MIN_EMAIL_LOCAL_PART && lowered.contains(local) {
            reasons.push(WeakPasswordReason::ContainsEmail);
        }
        // zxcvbn is costly on long input and only reads the first 100 characters anyway.
        if length <= MAX_PASSWORD_CHARS {
            let score: u8 = zxcvbn::zxcvbn(password, &[email.as_str(), local])
                .score()
                .into();
            if score < MIN_ZXCVBN_SCORE {
                reasons.push(WeakPasswordReason::TooGuessable);
            }
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }
}

/// How the hashing slots' buffers are paged (measured with `hash-benchmark`,
/// docs/PERFORMANCE.md): huge pages where the kernel grants them.
pub const HASH_MEMORY_PAGES: PageSize = PageSize::Huge;

/// The hashing slots' working buffers. A buffer is only taken under a hashing permit, so
/// at most `PASSWORD_HASHING_CONCURRENCY` ever exist; each is made on first use and kept,
/// so a hash never pays for mapping and faulting in fresh memory.
struct MemoryPool {
    free: std::sync::Mutex<Vec<HashMemory>>,
    memory_kib: u32,
}

impl MemoryPool {
    fn take(&self) -> HashMemory {
        let reused = self
            .free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        reused.unwrap_or_else(|| HashMemory::new(self.memory_kib, HASH_MEMORY_PAGES))
    }

    fn put_back(&self, memory: HashMemory) {
        self.free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(memory);
    }
}

/// Runs Argon2 on blocking threads with at most `concurrency` hashes in flight, so memory
/// stays bounded (each slot holds `ARGON2_MEMORY_KIB`) however many logins queue up.
pub struct PasswordHashing {
    hasher: Arc<PasswordHasher>,
    permits: Arc<Semaphore>,
    memory: Arc<MemoryPool>,
    /// Verified against for unknown emails so that their timing matches known ones.
    dummy: StoredPassword,
}

impl PasswordHashing {
    pub fn new(settings: &PasswordSettings) -> Result<Self, PasswordHashError> {
        let hasher = PasswordHasher::new(
            settings.argon2_memory_kib,
            settings.argon2_iterations,
            settings.argon2_parallelism,
            settings.pepper.as_ref().map(ExposeSecret::expose_secret),
            &crate::configuration::exposed(&settings.old_peppers),
        )?;
        let memory = MemoryPool {
            free: std::sync::Mutex::new(Vec::new()),
            memory_kib: settings.argon2_memory_kib,
        };
        // The first slot's buffer is made here, with the dummy hash, before serving.
        let mut first = memory.take();
        let dummy = hasher.hash(&crate::crypto::random_token(), &mut first)?;
        memory.put_back(first);
        Ok(Self {
            hasher: Arc::new(hasher),
            permits: Arc::new(Semaphore::new(settings.hashing_concurrency)),
            memory: Arc::new(memory),
            dummy,
        })
    }

    pub async fn hash(&self, password: &str) -> Result<StoredPassword, PasswordHashError> {
        let password = password.to_owned();
        self.run(move |hasher, memory| hasher.hash(&password, memory))
            .await
    }

    /// Verifies against `stored`, or against the dummy hash when there is no account, so
    /// both paths cost one Argon2 run. The dummy never verifies.
    pub async fn verify(
        &self,
        password: &str,
        stored: Option<StoredPassword>,
    ) -> Result<Verification, PasswordHashError> {
        let password = password.to_owned();
        let is_real = stored.is_some();
        let target = stored.unwrap_or_else(|| self.dummy.clone());
        let outcome = self
            .run(move |hasher, memory| hasher.verify(&password, &target, memory))
            .await?;
        Ok(if is_real {
            outcome
        } else {
            Verification {
                valid: false,
                needs_rehash: false,
            }
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&PasswordHasher, &mut HashMemory) -> Result<T, PasswordHashError>
        + Send
        + 'static,
    ) -> Result<T, PasswordHashError> {
        let queued = std::time::Instant::now();
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| PasswordHashError::Hashing("hashing pool closed".to_owned()))?;
        metrics::histogram!("password_hash_queue_wait_seconds")
            .record(queued.elapsed().as_secs_f64());
        let hasher = Arc::clone(&self.hasher);
        let pool = Arc::clone(&self.memory);
        let started = std::time::Instant::now();
        // The permit travels with the hash: when a client gives up, the request future is
        // dropped but the blocking hash runs on, and it must keep its slot until it ends —
        // otherwise abandoned logins start unbounded hashes (and memory).
        // The blocking thread logs under the request's span (request id, route).
        let span = tracing::Span::current();
        let outcome = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let mut memory = pool.take();
            let outcome = job(&hasher, &mut memory);
            pool.put_back(memory);
            drop(permit);
            outcome
        })
        .await
        .map_err(|e| PasswordHashError::Hashing(e.to_string()))?;
        metrics::histogram!("password_hash_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use WeakPasswordReason::*;

    fn policy() -> PasswordPolicy {
        PasswordPolicy::new(12, Some("Corporate-Secret-2026\n"))
    }

    fn email() -> EmailAddress {
        EmailAddress::parse("alice.smith@bank.example").unwrap()
    }

    fn reasons(password: &str) -> Vec<WeakPasswordReason> {
        policy()
            .check(&normalize(password), &email())
            .err()
            .unwrap_or_default()
    }

    #[test]
    fn the_shipped_list_holds_ten_thousand_common_passwords() {
        assert_eq!(policy().banned_count(), 10_001);
    }

    #[test]
    fn strong_passwords_pass() {
        assert_eq!(reasons("correct horse battery staple"), vec![]);
        assert_eq!(reasons("Tr0ub4dor&3-zebra-quilt"), vec![]);
    }

    #[test]
    fn each_rule_has_its_reason() {
        assert!(reasons("short1!").contains(&TooShort));
        assert!(reasons(&"x".repeat(129)).contains(&TooLong));
        assert!(
            reasons("qwertyuiop123").contains(&Banned)
                || reasons("qwertyuiop123").contains(&TooGuessable)
        );
        assert!(reasons("1q2w3e4r5t6y").contains(&Banned));
        assert!(reasons("CORPORATE-secret-2026").contains(&Banned));
        assert!(reasons("xx-Alice.Smith-horse-battery").contains(&ContainsEmail));
    }

    #[test]
    fn guessable_passwords_outside_the_list_fail() {
        // docs/API.md §4: these are not in a top-10k list, yet must fail.
        assert!(reasons("password1234").contains(&TooGuessable));
        assert!(reasons("123456789012").contains(&TooGuessable));
    }

    #[test]
    fn nfkc_makes_full_width_passwords_equal() {
        assert_eq!(normalize("ｐａｓｓ１２"), "pass12");
    }

    #[tokio::test]
    async fn an_abandoned_hash_keeps_its_slot_until_it_ends() {
        let hashing = Arc::new(
            PasswordHashing::new(&PasswordSettings {
                argon2_memory_kib: 32 * 1024,
                argon2_iterations: 4,
                argon2_parallelism: 1,
                min_length: 12,
                pepper: None,
                old_peppers: vec![],
                banned_passwords_file: None,
                hashing_concurrency: 1,
            })
            .unwrap(),
        );
        let running = Arc::clone(&hashing);
        let client = tokio::spawn(async move { running.hash("an abandoned login").await });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        client.abort();
        // The client is gone, but its hash still runs and still holds the only slot.
        assert_eq!(hashing.permits.available_permits(), 0);
        for _ in 0..500 {
            if hashing.permits.available_permits() == 1 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("the slot was never given back");
    }

    #[tokio::test]
    async fn unknown_accounts_never_verify() {
        let hashing = PasswordHashing::new(&PasswordSettings {
            argon2_memory_kib: 64,
            argon2_iterations: 1,
            argon2_parallelism: 1,
            min_length: 12,
            pepper: None,
            old_peppers: vec![],
            banned_passwords_file: None,
            hashing_concurrency: 2,
        })
        .unwrap();
        let stored = hashing.hash("correct horse battery").await.unwrap();
        assert!(
            hashing
                .verify("correct horse battery", Some(stored))
                .await
                .unwrap()
                .valid
        );
        assert!(
            !hashing
                .verify("correct horse battery", None)
                .await
                .unwrap()
                .valid
        );
    }
}
