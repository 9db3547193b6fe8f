//! Use cases. Handlers call these; these call storage. Rules live here, not in handlers.

pub mod abuse;
pub mod accounts;
pub mod admin;
pub mod audit;
pub mod breached;
pub mod delivery;
pub mod email;
pub mod error;
pub mod login;
pub mod mfa;
pub mod new_device;
pub mod oauth;
pub mod passwords;
pub mod payments;
pub mod pci;
pub mod policy;
pub mod sessions;

use secrecy::ExposeSecret;
use std::sync::Arc;

pub use error::{ServiceError, ServiceResult};

use crate::configuration::Settings;
use crate::crypto::KeyRing;
use crate::storage::db::Database;
use crate::storage::store::Store;

/// Everything a request may need, built once at start-up and shared by every handler.
pub struct Services {
    pub settings: Settings,
    pub db: Database,
    pub store: Store,
    pub keys: KeyRing,
    pub accounts: accounts::Accounts,
    pub sessions: sessions::Sessions,
    pub abuse: abuse::AbuseControl,
    pub audit: audit::AuditTrail,
    pub mfa: mfa::Mfa,
    pub admin: admin::Admin,
    /// The OpenID Provider (docs/API.md §8).
    pub oauth: oauth::OAuth,
    /// Transaction confirmation, PSD2 dynamic linking (docs/API.md §9).
    pub transactions: payments::Transactions,
    /// The regulated-deployment policies in force (docs/API.md §11).
    pub policy: policy::Policy,
    /// `PRIVILEGED_POLICY=pci`: the inactive-account job (docs/API.md §11).
    pub inactive_accounts: pci::InactiveAccounts,
    /// Renders `/metrics`; one recorder per process, shared by every app instance in it.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}

impl Services {
    pub async fn build(
        settings: Settings,
        db: Database,
        store: Store,
    ) -> anyhow::Result<Arc<Self>> {
        let extra_banned =
            match &settings.password.banned_passwords_file {
                Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                    anyhow::anyhow!("BANNED_PASSWORDS_FILE {}: {e}", path.display())
                })?),
                None => None,
            };
        let password_policy =
            passwords::PasswordPolicy::new(settings.password.min_length, extra_banned.as_deref());
        let password_settings = settings.password.clone();
        // Hashing the dummy password takes one Argon2 run: keep it off the async workers.
        let hashing = tokio::task::spawn_blocking(move || {
            passwords::PasswordHashing::new(&password_settings)
        })
        .await??;
        let sessions = sessions::Sessions::new(db.clone(), store.clone(), settings.session.clone());
        let templates = email::EmailTemplates::new(&settings.origin_url, &settings.rp_name);
        let abuse = abuse::AbuseControl::new(store.clone(), db.clone(), &settings);
        let mfa = mfa::Mfa::new(
            &settings,
            db.clone(),
            store.clone(),
            sessions.clone(),
            abuse.clone(),
            templates.clone(),
        )?;
        let policy = policy::Policy::new(&settings);
        let accounts = accounts::Accounts::new(
            db.clone(),
            sessions.clone(),
            abuse.clone(),
            accounts::PasswordRules {
                hashing,
                policy: password_policy,
                breached: breached::BreachedPasswords::new(&settings.pwned_passwords),
                history: pci::PasswordHistory::new(policy),
            },
            templates.clone(),
            login::LoginCompletion::new(
                abuse.clone(),
                new_device::NewDeviceAlerts::new(&settings, templates.clone()),
            ),
            policy.sca_login().then(|| mfa.clone()),
        );
        let inactive_accounts = pci::InactiveAccounts::new(
            db.clone(),
            sessions.clone(),
            templates.clone(),
            policy,
            settings.pci_inactivity,
        );
        let audit = audit::AuditTrail::new(db.clone());
        let admin = admin::Admin::new(db.clone(), sessions.clone(), abuse.clone());
        // Confirmations are signed with the provider's keys: one JWKS for both.
        let signing_keys = oauth::OAuth::signing_keys(&settings, db.clone(), mfa.secrets().clone());
        let transactions = payments::Transactions::new(
            &settings,
            db.clone(),
            store.clone(),
            mfa.clone(),
            signing_keys.clone(),
        );
        let oauth = oauth::OAuth::new(
            &settings,
            db.clone(),
            store.clone(),
            sessions.clone(),
            signing_keys,
            transactions.clone(),
        )?;
        Ok(Arc::new(Self {
            policy,
            inactive_accounts,
            keys: KeyRing::new(settings.encryption_key.expose_secret()),
            settings,
            db,
            store,
            accounts,
            sessions,
            abuse,
            audit,
            mfa,
            admin,
            oauth,
            transactions,
            metrics: crate::telemetry::metrics_handle(),
        }))
    }
}
