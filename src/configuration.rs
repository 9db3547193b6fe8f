//! Settings read from the environment (and an optional `.env`), per docs/API.md §5.
//!
//! Development defaults make `cargo run --release` work on a fresh machine; production
//! (`APP_ENV=production`) refuses every insecure setting at once, naming them all.

use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use crate::storage::db::audit::ChainCount;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    None,
    StartTls,
    Tls,
}

#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub from: String,
    pub tls: SmtpTls,
}

/// `max` requests per `window` for one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub max: u32,
    pub window: Duration,
}

/// The lowest `PASSWORD_MIN_LENGTH` a deployment may set: the OpenAPI document states it
/// as every password's `minLength`.
pub const PASSWORD_MIN_LENGTH_FLOOR: usize = 8;

#[derive(Debug, Clone)]
pub struct PasswordSettings {
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    pub min_length: usize,
    pub pepper: Option<SecretString>,
    /// Peppers that older hashes may still use; they verify, then get re-hashed.
    pub old_peppers: Vec<SecretString>,
    pub banned_passwords_file: Option<PathBuf>,
    /// Hashes allowed in flight at once; each holds `argon2_memory_kib` of memory.
    pub hashing_concurrency: usize,
}

/// `AUTH_POLICY` (docs/API.md §11): how customers sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthPolicy {
    /// Today's contract: the password step, then `mfa_required` for enrolled factors.
    #[default]
    Standard,
    /// PSD2 strong customer authentication: password and one-time code in one request,
    /// one answer for every failure, a second factor before anything else, 5-minute idle.
    Psd2,
}

/// `PRIVILEGED_POLICY` (docs/API.md §11): the rules for `staff` and `admin` accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PrivilegedPolicy {
    #[default]
    Standard,
    /// PCI DSS 4.0 §8: long lockouts, password history, MFA on every login, inactivity.
    Pci,
}

/// PSD2 RTS Art. 4(3)(d): at most 5 minutes without activity.
pub const PSD2_MAX_IDLE_SECONDS: u64 = 300;
/// PSD2 RTS Art. 4(3)(b): at most 5 consecutive failures before a block.
pub const PSD2_MAX_LOCKOUT_THRESHOLD: u32 = 5;
/// PCI DSS 8.3.4: a privileged account locks after at most 10 consecutive failures…
pub const PCI_MAX_LOCKOUT_THRESHOLD: u32 = 10;
/// …for at least 30 minutes.
pub const PCI_MIN_LOCKOUT_SECONDS: u64 = 1800;
/// PCI DSS 8.2.6: inactive privileged accounts are disabled within 90 days.
pub const PCI_MAX_INACTIVITY_DAYS: u64 = 90;

/// What a compromised-password check does when its source cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PwnedOnError {
    /// The password passes (logged and counted): registration keeps working.
    Allow,
    /// The request is refused with `503 service_unavailable`: never an unchecked password.
    Deny,
}

/// Where compromised-password ranges come from (docs/API.md §11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PwnedSource {
    /// `PWNED_PASSWORDS_URL`: an HIBP-compatible range API (no trailing slash).
    Api(String),
    /// `PWNED_PASSWORDS_DIR`: one `{PREFIX}.txt` file per range, as the HIBP downloader
    /// writes them.
    Directory(PathBuf),
}

#[derive(Debug, Clone)]
pub struct PwnedPasswordsSettings {
    /// `None`: the check is off (the default).
    pub source: Option<PwnedSource>,
    pub on_error: PwnedOnError,
}

/// `WEBAUTHN_ATTESTATION` (docs/API.md §11): what a new passkey must prove about its
/// authenticator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttestationMode {
    /// No attestation is asked for or checked (the default): any passkey registers.
    None,
    /// Attestation is asked for (`attestation: "indirect"`) and must chain to a root of
    /// the FIDO Metadata Service BLOB; the authenticator's model (AAGUID) is vetted.
    Indirect,
    /// As `indirect`, asking for `attestation: "enterprise"` (managed devices may return
    /// an attestation that identifies the single device), and the AAGUID must also be in
    /// `WEBAUTHN_ALLOWED_AAGUIDS`, which is then required.
    Enterprise,
}

impl AttestationMode {
    /// The `attestation` conveyance preference the registration options carry.
    pub fn conveyance(self) -> &'static str {
        match self {
            AttestationMode::None => "none",
            AttestationMode::Indirect => "indirect",
            AttestationMode::Enterprise => "enterprise",
        }
    }
}

/// Which passkeys may register and be used (docs/API.md §11 "Passkey attestation").
#[derive(Debug, Clone)]
pub struct PasskeyPolicySettings {
    pub attestation: AttestationMode,
    /// `WEBAUTHN_ALLOWED_AAGUIDS`: when not empty, only these authenticator models register.
    pub allowed_aaguids: Vec<uuid::Uuid>,
    /// `FIDO_MDS_FILE`: a FIDO Metadata Service (MDS3) BLOB, verified at start.
    pub mds_file: Option<PathBuf>,
    /// `FIDO_MDS_ROOT_CERT`: a PEM root that signs the BLOB instead of the FIDO Alliance's
    /// GlobalSign roots (a bank's own MDS mirror, tests).
    pub mds_root_cert: Option<PathBuf>,
    /// `REQUIRE_DEVICE_BOUND_PASSKEYS_FOR`: roles that may neither register nor use a
    /// synced (backup-eligible) passkey.
    pub device_bound_roles: Vec<crate::domain::Role>,
}

#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub cookie_secure: bool,
    pub cookie_name: String,
    pub idle_timeout: Duration,
    pub absolute_timeout: Duration,
    pub step_up_max_age: Duration,
    /// How often a session in use refreshes its durable `last_seen_at`, at most
    /// (`SESSION_TOUCH_INTERVAL_SECONDS`, capped at a third of the idle timeout, see
    /// `touch_interval`).
    pub touch_interval: Duration,
}

/// The durable `last_seen_at` lags a session's real last request by up to the touch
/// interval, and the checks that read it (a cache reload, a refresh-token use, the
/// session list, the purge) treat that lag as idle time. A third of the idle timeout
/// keeps that lag small against the timeout: under `AUTH_POLICY=psd2` (300 s idle) the
/// interval is 100 s whatever is configured.
pub fn touch_interval(configured: Duration, idle_timeout: Duration) -> Duration {
    configured.min(idle_timeout / 3)
}

/// How the service reaches the shared ephemeral store. Exactly one of `REDIS_URL`,
/// `REDIS_SENTINELS` and `REDIS_CLUSTER_NODES` selects it: two at once would leave it
/// unclear which Redis holds the lockout counters, so start-up refuses that.
#[derive(Debug, Clone)]
pub enum RedisTopology {
    /// One Redis server (`REDIS_URL`, credentials and `rediss://` in the URL).
    Single { url: String },
    /// A primary found through Redis Sentinel, followed across failovers.
    Sentinel(SentinelSettings),
    /// A Redis Cluster: keys spread over its primaries by hash slot.
    Cluster {
        nodes: Vec<String>,
        auth: RedisNodeAuth,
    },
}

/// Credentials and transport for the Redis data nodes found through Sentinel or Cluster
/// (`REDIS_USERNAME`, `REDIS_PASSWORD`, `REDIS_TLS`).
#[derive(Debug, Clone, Default)]
pub struct RedisNodeAuth {
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub tls: bool,
}

#[derive(Debug, Clone)]
pub struct SentinelSettings {
    /// `host:port` of each sentinel.
    pub sentinels: Vec<String>,
    /// The monitored master's name (`REDIS_SENTINEL_MASTER`).
    pub master_name: String,
    /// For the primary (and its replicas).
    pub node: RedisNodeAuth,
    /// For the sentinels themselves (`REDIS_SENTINEL_PASSWORD`, `REDIS_SENTINEL_TLS`).
    pub sentinel: RedisNodeAuth,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub app_env: AppEnv,
    pub bind_addr: SocketAddr,
    /// Where `/metrics` is served: its own listener, never the public one. `None`: off.
    pub metrics_addr: Option<SocketAddr>,
    /// When set, `/metrics` requires `Authorization: Bearer <token>`.
    pub metrics_token: Option<String>,
    pub database_url: String,
    /// `None`: the in-process store (one instance only).
    pub redis: Option<RedisTopology>,
    /// Prefix of every key this service writes to the ephemeral store (tests isolate by it).
    pub store_key_prefix: String,
    /// Secrets are `SecretString`: `Debug` prints `[REDACTED]`, so no log line, panic
    /// message or `{:?}` of the settings can carry them.
    pub encryption_key: SecretString,
    pub old_encryption_keys: Vec<SecretString>,
    pub rp_id: String,
    pub rp_name: String,
    pub origin_url: String,
    /// Validated origins (`scheme://host[:port]`, normalised): the CORS allow-list and
    /// extra WebAuthn origins.
    pub frontend_origins: Vec<String>,
    pub smtp: Option<SmtpSettings>,
    pub session: SessionSettings,
    pub rate_limit_auth: RateLimit,
    /// Enrollments (TOTP setups, passkey registrations) one session may start per window.
    pub rate_limit_enrollment: RateLimit,
    pub trusted_proxies: Vec<IpNet>,
    pub lockout_threshold: u32,
    /// First lock; each further lock doubles it, up to `lockout_max`.
    pub lockout_base: Duration,
    pub lockout_max: Duration,
    pub password: PasswordSettings,
    /// The compromised-password check (docs/API.md §11).
    pub pwned_passwords: PwnedPasswordsSettings,
    /// Passkey attestation and device-bound passkeys (docs/API.md §11).
    pub passkey_policy: PasskeyPolicySettings,
    pub hsts: bool,
    pub request_timeout: Duration,
    pub outbox_poll_interval: Duration,
    /// First retry delay of a failed email; it doubles per attempt up to 15 minutes.
    pub outbox_retry_base: Duration,
    /// How often each instance signs a checkpoint of the audit chain's head (when it moved).
    pub audit_checkpoint_interval: Duration,
    /// How many chains the audit trail is spread over (`AUDIT_CHAINS`; 16 on PostgreSQL,
    /// 1 on SQLite): appends to different chains never wait for each other.
    pub audit_chains: ChainCount,
    pub allow_sqlite_in_production: bool,
    pub single_instance: bool,
    pub data_dir: PathBuf,
    /// The hosted pages under `/ui/` (docs/API.md §10).
    pub ui: UiSettings,
    /// The OpenID Provider (docs/API.md §8).
    pub oidc: OidcSettings,
    /// Transaction confirmation (docs/API.md §9).
    pub transactions: TransactionSettings,
    /// `NEW_DEVICE_ALERTS=on`: email the owner on a login from a device unseen for 90
    /// days (docs/API.md §11). Off by default.
    pub new_device_alerts: bool,
    pub auth_policy: AuthPolicy,
    pub privileged_policy: PrivilegedPolicy,
    /// `PCI_LOCKOUT_SECONDS`: a privileged account's lock under `PRIVILEGED_POLICY=pci`
    /// (at least 30 minutes, PCI DSS 8.3.4).
    pub pci_lockout: Duration,
    /// `PCI_INACTIVITY_DAYS`: privileged accounts unused this long are disabled under
    /// `PRIVILEGED_POLICY=pci` (at most 90 days, PCI DSS 8.2.6).
    pub pci_inactivity: Duration,
    /// `PCI_INACTIVITY_CHECK_SECONDS`: how often each instance looks for such accounts.
    pub pci_inactivity_check: Duration,
}

/// `TRANSACTION_TTL_SECONDS` (default and at most 300: PSD2 RTS Art. 4(3)(d) gives an
/// authentication code at most 5 minutes) and `TRANSACTION_AUDIENCE`, the `aud` of
/// confirmations (default `<issuer>/payments`: a payment backend, not the issuer itself).
#[derive(Debug, Clone)]
pub struct TransactionSettings {
    pub ttl: Duration,
    pub audience: String,
}

/// The longest a transaction (and its confirmation) may live.
pub const TRANSACTION_TTL_MAX_SECONDS: u64 = 300;

/// The algorithm the provider signs ID and access tokens with (`SIGNING_ALG`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlg {
    Es256,
    EdDsa,
}

impl SigningAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::Es256 => "ES256",
            SigningAlg::EdDsa => "EdDSA",
        }
    }
}

/// The OpenID Provider's settings: `ISSUER_URL` (default `ORIGIN_URL`), `OIDC_CLIENTS_FILE`,
/// `LOGIN_UI_URL` (default the hosted `/ui/login`), token lifetimes, the access tokens'
/// default audience, and the signing algorithm and key rotation period.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    pub issuer: String,
    pub clients_file: Option<PathBuf>,
    pub login_ui_url: String,
    pub access_token_ttl: Duration,
    pub id_token_ttl: Duration,
    pub access_token_audience: String,
    pub signing_alg: SigningAlg,
    /// A new signing key becomes current after this long; old keys stay published until
    /// the last token they signed has expired.
    pub key_rotation: Duration,
}

/// `UI_ENABLED` (default true) and `UI_THEME_DIR` (templates and `ui.css` that replace the
/// built-in ones, file by file).
#[derive(Debug, Clone)]
pub struct UiSettings {
    pub enabled: bool,
    pub theme_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
    #[error("could not prepare the data folder {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Settings {
    /// Reads `.env` (if present) and the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        let vars: HashMap<String, String> = std::env::vars().collect();
        Self::from_vars(&vars)
    }

    /// Builds settings from a variable map; tests use this to avoid touching the process env.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let mut reader = VarReader {
            vars,
            errors: Vec::new(),
        };
        let settings = reader.read_settings();
        if !reader.errors.is_empty() {
            return Err(ConfigError::Invalid(reader.errors));
        }
        let mut settings = settings;
        settings.resolve_encryption_key(vars.get("TOTP_ENCRYPTION_KEY").is_some())?;
        let problems = settings.insecure_settings();
        if !problems.is_empty() {
            return Err(ConfigError::Invalid(problems));
        }
        Ok(settings)
    }

    pub fn is_production(&self) -> bool {
        self.app_env == AppEnv::Production
    }

    pub fn uses_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }

    /// In development a missing key is generated once into `data/secret.key` (mode 0600),
    /// so sessions' CSRF tokens and encrypted secrets survive a restart.
    fn resolve_encryption_key(&mut self, key_was_given: bool) -> Result<(), ConfigError> {
        if key_was_given || self.is_production() {
            return Ok(());
        }
        let path = self.data_dir.join("secret.key");
        self.encryption_key = load_or_create_key(&path)
            .map_err(|source| ConfigError::DataDir {
                path: path.clone(),
                source,
            })?
            .into();
        Ok(())
    }

    /// Everything production mode refuses (docs/API.md §7), all at once.
    fn insecure_settings(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.encryption_key.expose_secret().chars().count() < 32 {
            problems.push("TOTP_ENCRYPTION_KEY must be set to at least 32 characters".to_owned());
        }
        if !self.is_production() {
            return problems;
        }
        if !self.session.cookie_secure {
            problems.push("COOKIE_SECURE=false is not allowed in production".to_owned());
        }
        if self.origin_url.starts_with("http://") && !is_localhost_url(&self.origin_url) {
            problems.push("ORIGIN_URL must use https:// in production".to_owned());
        }
        if self.oidc.issuer.starts_with("http://") && !is_localhost_url(&self.oidc.issuer) {
            problems.push("ISSUER_URL must use https:// in production".to_owned());
        }
        for origin in &self.frontend_origins {
            if origin.starts_with("http://") && !is_loopback_origin(origin) {
                problems.push(format!(
                    "FRONTEND_ORIGINS: {origin} must use https:// in production (it would be allowed to make credentialed calls and run passkey ceremonies over plain HTTP)"
                ));
            }
        }
        if let Some(PwnedSource::Api(url)) = &self.pwned_passwords.source
            && url.starts_with("http://")
            && !is_loopback_origin(url)
        {
            problems.push(
                "PWNED_PASSWORDS_URL must use https:// in production (or a loopback mirror)"
                    .to_owned(),
            );
        }
        if !self.hsts {
            problems.push(
                "HSTS=false is not allowed in production (Strict-Transport-Security keeps browsers on HTTPS)"
                    .to_owned(),
            );
        }
        if self.smtp.is_none() {
            problems.push(
                "SMTP_HOST is required in production: without SMTP every email, with its verification or reset link, would be written to the log"
                    .to_owned(),
            );
        }
        if let Some(addr) = self.metrics_addr
            && !addr.ip().is_loopback()
            && self.metrics_token.is_none()
        {
            problems.push(format!(
                "METRICS_ADDR={addr} is reachable beyond this host: set METRICS_TOKEN in production (or use a loopback address)"
            ));
        }
        if let Some(smtp) = &self.smtp
            && smtp.tls == SmtpTls::None
            && !is_loopback_host(&smtp.host)
        {
            problems.push(
                "SMTP_TLS=none is only allowed to a loopback SMTP host in production".to_owned(),
            );
        }
        if self.uses_sqlite() && !self.allow_sqlite_in_production {
            problems.push(
                "SQLite is not allowed in production: set DATABASE_URL=postgres://… (or ALLOW_SQLITE_IN_PRODUCTION=true)"
                    .to_owned(),
            );
        }
        let policy = &self.passkey_policy;
        if policy.attestation == AttestationMode::None
            && (!policy.allowed_aaguids.is_empty() || policy.mds_file.is_some())
        {
            problems.push(
                "WEBAUTHN_ALLOWED_AAGUIDS and FIDO_MDS_FILE need WEBAUTHN_ATTESTATION=indirect or enterprise in production: without attestation an AAGUID is the authenticator's own unproven claim, so neither would be enforced"
                    .to_owned(),
            );
        }
        if self.redis.is_none() && !self.single_instance {
            problems.push(
                "REDIS_URL (or REDIS_SENTINELS or REDIS_CLUSTER_NODES) is required in production (or SINGLE_INSTANCE=true for one instance with an in-process store)"
                    .to_owned(),
            );
        }
        problems
    }
}

/// `host:port` with a non-empty host and a port number (IPv6 hosts in brackets).
fn is_host_port(address: &str) -> bool {
    address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0))
}

const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9100";

/// An origin as browsers send it in `Origin`: `scheme://host[:port]`, lower-case, without
/// the default port. Anything else is refused with the reason.
fn parse_origin(entry: &str) -> Result<String, &'static str> {
    const SHAPE: &str = "is not an origin: expected https://host[:port] with no path";
    if entry == "*" {
        return Err(
            "is a wildcard; list each front end's origin (credentials are allowed, so a wildcard is never accepted)",
        );
    }
    if entry.eq_ignore_ascii_case("null") {
        return Err("is refused: the `null` origin is shared by sandboxed frames and local files");
    }
    let url = webauthn_rs::prelude::Url::parse(entry).map_err(|_| SHAPE)?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err("must use https:// (or http:// in development)");
    }
    let clean = url.username().is_empty()
        && url.password().is_none()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && url.host_str().is_some_and(|h| !h.is_empty());
    if !clean {
        return Err(SHAPE);
    }
    let origin = url.origin().ascii_serialization();
    if origin == "null" {
        return Err(SHAPE);
    }
    Ok(origin)
}

/// The base of a range API: `http(s)://host[:port][/path]`, no query, fragment or
/// credentials; returned without a trailing slash.
fn parse_pwned_url(raw: &str) -> Result<String, &'static str> {
    let url = url::Url::parse(raw).map_err(|_| "expected an http(s):// URL")?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
        return Err("expected an http(s):// URL");
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("expected a base URL without query or fragment");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("expected a URL without credentials");
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

fn is_loopback_origin(origin: &str) -> bool {
    webauthn_rs::prelude::Url::parse(origin)
        .ok()
        .and_then(|url| url.host_str().map(is_loopback_host))
        .unwrap_or(false)
}

fn is_localhost_url(url: &str) -> bool {
    let rest = url.trim_start_matches("http://");
    let host = rest.split(['/', ':']).next().unwrap_or("");
    is_loopback_host(host)
}

fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn load_or_create_key(path: &Path) -> std::io::Result<String> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let key = existing.trim().to_owned();
        if key.len() >= 32 {
            return Ok(key);
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let key = crate::crypto::random_hex(32);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    use std::io::Write;
    let mut file = options.open(path)?;
    file.write_all(key.as_bytes())?;
    Ok(key)
}

/// Reads typed values, collecting every error instead of stopping at the first.
struct VarReader<'a> {
    vars: &'a HashMap<String, String>,
    errors: Vec<String>,
}

impl VarReader<'_> {
    fn raw(&self, name: &str) -> Option<String> {
        self.vars
            .get(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn string(&self, name: &str, default: &str) -> String {
        self.raw(name).unwrap_or_else(|| default.to_owned())
    }

    fn parsed<T: std::str::FromStr>(&mut self, name: &str, default: T) -> T {
        match self.raw(name) {
            None => default,
            Some(value) => value.parse().unwrap_or_else(|_| {
                self.errors.push(format!("{name}: cannot parse {value:?}"));
                default
            }),
        }
    }

    /// `AUDIT_CHAINS`: SQLite has one writer at a time, so more chains would not help it.
    fn audit_chains(&mut self, database_url: &str) -> ChainCount {
        let default = if database_url.starts_with("sqlite:") {
            1
        } else {
            16
        };
        let chains = self.parsed("AUDIT_CHAINS", default);
        ChainCount::new(chains).unwrap_or_else(|| {
            self.errors.push(format!(
                "AUDIT_CHAINS: must be 1 to {}",
                crate::storage::db::locks::MAX_AUDIT_CHAINS
            ));
            ChainCount::ONE
        })
    }

    fn bool(&mut self, name: &str, default: bool) -> bool {
        match self.raw(name).map(|v| v.to_ascii_lowercase()) {
            None => default,
            Some(v) if ["true", "1", "yes", "on"].contains(&v.as_str()) => true,
            Some(v) if ["false", "0", "no", "off"].contains(&v.as_str()) => false,
            Some(v) => {
                self.errors
                    .push(format!("{name}: expected true or false, got {v:?}"));
                default
            }
        }
    }

    fn seconds(&mut self, name: &str, default: u64) -> Duration {
        let secs: u64 = self.parsed(name, default);
        if secs == 0 {
            self.errors.push(format!("{name}: must be more than 0"));
        }
        Duration::from_secs(secs)
    }

    fn list(&self, name: &str) -> Vec<String> {
        self.raw(name)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn read_settings(&mut self) -> Settings {
        let app_env = match self
            .string("APP_ENV", "development")
            .to_ascii_lowercase()
            .as_str()
        {
            "development" | "dev" => AppEnv::Development,
            "production" | "prod" => AppEnv::Production,
            other => {
                self.errors.push(format!(
                    "APP_ENV: expected development or production, got {other:?}"
                ));
                AppEnv::Development
            }
        };
        let default_bind = SocketAddr::from(([127, 0, 0, 1], 8000));
        let bind_addr = self.parsed("BIND_ADDR", default_bind);
        let metrics_addr = self.metrics_addr(bind_addr);
        let metrics_token = self.raw("METRICS_TOKEN");
        if metrics_token
            .as_ref()
            .is_some_and(|token| token.chars().count() < 32)
        {
            self.errors
                .push("METRICS_TOKEN: must be at least 32 characters".to_owned());
        }
        let data_dir = PathBuf::from(self.string("DATA_DIR", "data"));
        let default_db = format!("sqlite://{}/auth.db", data_dir.display());
        let database_url = self.string("DATABASE_URL", &default_db);
        if database_url.starts_with("postgres") {
            // A host list with target_session_attrs (docs/OPERATIONS.md, failover): refuse a
            // malformed one at start-up rather than at the first connection.
            if let Err(error) = crate::storage::db::failover::PgUrl::parse(&database_url) {
                self.errors.push(format!("DATABASE_URL: {error}"));
            }
        } else if !database_url.starts_with("sqlite:") {
            self.errors
                .push("DATABASE_URL: expected sqlite://… or postgres://…".to_owned());
        }
        let audit_chains = self.audit_chains(&database_url);
        let redis = self.redis_topology();
        let cookie_secure = self.bool("COOKIE_SECURE", true);
        let default_cookie = if cookie_secure {
            "__Host-session"
        } else {
            "session"
        };
        let auth_policy = self.auth_policy();
        let psd2 = auth_policy == AuthPolicy::Psd2;
        let idle_timeout = self.seconds(
            "SESSION_IDLE_TIMEOUT_SECONDS",
            if psd2 { PSD2_MAX_IDLE_SECONDS } else { 900 },
        );
        let session = SessionSettings {
            cookie_secure,
            cookie_name: self.string("SESSION_COOKIE_NAME", default_cookie),
            idle_timeout,
            absolute_timeout: self.seconds("SESSION_ABSOLUTE_TIMEOUT_SECONDS", 43_200),
            step_up_max_age: self.seconds("STEP_UP_MAX_AGE_SECONDS", 300),
            touch_interval: touch_interval(
                self.seconds("SESSION_TOUCH_INTERVAL_SECONDS", 300),
                idle_timeout,
            ),
        };
        if session.cookie_name.starts_with("__Host-") && !cookie_secure {
            self.errors.push(
                "SESSION_COOKIE_NAME: a __Host- cookie needs COOKIE_SECURE=true (browsers refuse it otherwise)"
                    .to_owned(),
            );
        }
        if psd2 && session.idle_timeout.as_secs() > PSD2_MAX_IDLE_SECONDS {
            self.errors.push(format!(
                "SESSION_IDLE_TIMEOUT_SECONDS: AUTH_POLICY=psd2 allows at most {PSD2_MAX_IDLE_SECONDS} (RTS Art. 4(3)(d))"
            ));
        }
        let lockout_threshold = self.parsed("LOCKOUT_THRESHOLD", 5);
        if psd2 && lockout_threshold > PSD2_MAX_LOCKOUT_THRESHOLD {
            self.errors.push(format!(
                "LOCKOUT_THRESHOLD: AUTH_POLICY=psd2 allows at most {PSD2_MAX_LOCKOUT_THRESHOLD} (RTS Art. 4(3)(b))"
            ));
        }
        let rate_limit_auth = self.rate_limit("RATE_LIMIT_AUTH", "50/600");
        let rate_limit_enrollment = self.rate_limit("RATE_LIMIT_ENROLLMENT", "10/600");
        let trusted_proxies = self.trusted_proxies();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let password = PasswordSettings {
            argon2_memory_kib: self.parsed("ARGON2_MEMORY_KIB", 65_536),
            argon2_iterations: self.parsed("ARGON2_ITERATIONS", 3),
            argon2_parallelism: self.parsed("ARGON2_PARALLELISM", 1),
            min_length: self.parsed("PASSWORD_MIN_LENGTH", 12),
            pepper: self.raw("PASSWORD_PEPPER").map(SecretString::from),
            old_peppers: secrets(self.list("PASSWORD_PEPPERS_OLD")),
            banned_passwords_file: self.raw("BANNED_PASSWORDS_FILE").map(PathBuf::from),
            hashing_concurrency: self.parsed("PASSWORD_HASHING_CONCURRENCY", cores),
        };
        if !(PASSWORD_MIN_LENGTH_FLOOR..=128).contains(&password.min_length) {
            self.errors
                .push("PASSWORD_MIN_LENGTH: must be between 8 and 128".to_owned());
        }
        if password.hashing_concurrency == 0 {
            self.errors
                .push("PASSWORD_HASHING_CONCURRENCY: must be at least 1".to_owned());
        }
        let pwned_passwords = self.pwned_passwords();
        let passkey_policy = self.passkey_policy();
        let smtp = self.smtp();
        let origin_url = self
            .string("ORIGIN_URL", "http://localhost:8000")
            .trim_end_matches('/')
            .to_owned();
        Settings {
            app_env,
            bind_addr,
            metrics_addr,
            metrics_token,
            database_url,
            redis,
            store_key_prefix: self.string("STORE_KEY_PREFIX", "lcauth:"),
            encryption_key: self.string("TOTP_ENCRYPTION_KEY", "").into(),
            old_encryption_keys: secrets(self.list("TOTP_ENCRYPTION_KEYS_OLD")),
            rp_id: self.string("FIDO_RP_ID", "localhost"),
            rp_name: self.string("FIDO_RP_NAME", "Logicredit"),
            frontend_origins: self.frontend_origins(),
            smtp,
            session,
            rate_limit_auth,
            rate_limit_enrollment,
            trusted_proxies,
            lockout_threshold,
            lockout_base: self.seconds("LOCKOUT_BASE_SECONDS", 60),
            lockout_max: self.seconds("LOCKOUT_MAX_SECONDS", 3600),
            password,
            pwned_passwords,
            passkey_policy,
            // On by default in production (which refuses HSTS=false); off in development,
            // where http://localhost must keep working.
            hsts: self.bool("HSTS", app_env == AppEnv::Production),
            request_timeout: self.seconds("REQUEST_TIMEOUT_SECONDS", 30),
            outbox_poll_interval: Duration::from_millis(
                self.parsed("OUTBOX_POLL_INTERVAL_MS", 1000),
            ),
            outbox_retry_base: Duration::from_millis(self.parsed("OUTBOX_RETRY_BASE_MS", 10_000)),
            audit_checkpoint_interval: self.seconds("AUDIT_CHECKPOINT_INTERVAL_SECONDS", 60),
            audit_chains,
            allow_sqlite_in_production: self.bool("ALLOW_SQLITE_IN_PRODUCTION", false),
            single_instance: self.bool("SINGLE_INSTANCE", false),
            ui: UiSettings {
                enabled: self.bool("UI_ENABLED", true),
                theme_dir: self.raw("UI_THEME_DIR").map(PathBuf::from),
            },
            transactions: self.transactions(&origin_url),
            new_device_alerts: self.bool("NEW_DEVICE_ALERTS", false),
            auth_policy,
            privileged_policy: self.privileged_policy(),
            pci_lockout: self.pci_lockout(),
            pci_inactivity: self.pci_inactivity(),
            pci_inactivity_check: self.seconds("PCI_INACTIVITY_CHECK_SECONDS", 3600),
            oidc: self.oidc(&origin_url),
            origin_url,
            data_dir,
        }
    }

    fn auth_policy(&mut self) -> AuthPolicy {
        match self
            .string("AUTH_POLICY", "standard")
            .to_ascii_lowercase()
            .as_str()
        {
            "standard" => AuthPolicy::Standard,
            "psd2" => AuthPolicy::Psd2,
            other => {
                self.errors.push(format!(
                    "AUTH_POLICY: expected standard or psd2, got {other:?}"
                ));
                AuthPolicy::Standard
            }
        }
    }

    fn privileged_policy(&mut self) -> PrivilegedPolicy {
        match self
            .string("PRIVILEGED_POLICY", "standard")
            .to_ascii_lowercase()
            .as_str()
        {
            "standard" => PrivilegedPolicy::Standard,
            "pci" => PrivilegedPolicy::Pci,
            other => {
                self.errors.push(format!(
                    "PRIVILEGED_POLICY: expected standard or pci, got {other:?}"
                ));
                PrivilegedPolicy::Standard
            }
        }
    }

    fn pci_lockout(&mut self) -> Duration {
        let lockout = self.seconds("PCI_LOCKOUT_SECONDS", PCI_MIN_LOCKOUT_SECONDS);
        if lockout.as_secs() < PCI_MIN_LOCKOUT_SECONDS {
            self.errors.push(format!(
                "PCI_LOCKOUT_SECONDS: must be at least {PCI_MIN_LOCKOUT_SECONDS} (PCI DSS 8.3.4)"
            ));
        }
        lockout
    }

    fn pci_inactivity(&mut self) -> Duration {
        let days: u64 = self.parsed("PCI_INACTIVITY_DAYS", PCI_MAX_INACTIVITY_DAYS);
        if !(1..=PCI_MAX_INACTIVITY_DAYS).contains(&days) {
            self.errors.push(format!(
                "PCI_INACTIVITY_DAYS: must be between 1 and {PCI_MAX_INACTIVITY_DAYS} (PCI DSS 8.2.6)"
            ));
        }
        Duration::from_secs(days * 24 * 3600)
    }

    fn pwned_passwords(&mut self) -> PwnedPasswordsSettings {
        let on_error = match self
            .string("PWNED_PASSWORDS_ON_ERROR", "allow")
            .to_ascii_lowercase()
            .as_str()
        {
            "allow" => PwnedOnError::Allow,
            "deny" => PwnedOnError::Deny,
            other => {
                self.errors.push(format!(
                    "PWNED_PASSWORDS_ON_ERROR: expected allow or deny, got {other:?}"
                ));
                PwnedOnError::Allow
            }
        };
        let url = self.raw("PWNED_PASSWORDS_URL");
        let dir = self.raw("PWNED_PASSWORDS_DIR");
        let source = match (url, dir) {
            (None, None) => None,
            (Some(_), Some(_)) => {
                self.errors.push(
                    "PWNED_PASSWORDS_URL and PWNED_PASSWORDS_DIR: set one, not both".to_owned(),
                );
                None
            }
            (Some(url), None) => match parse_pwned_url(&url) {
                Ok(url) => Some(PwnedSource::Api(url)),
                Err(reason) => {
                    self.errors
                        .push(format!("PWNED_PASSWORDS_URL: {reason}, got {url:?}"));
                    None
                }
            },
            (None, Some(dir)) => {
                let dir = PathBuf::from(dir);
                // Checked at start: a missing folder would otherwise fail every check.
                if !dir.is_dir() {
                    self.errors.push(format!(
                        "PWNED_PASSWORDS_DIR: {} is not a readable folder",
                        dir.display()
                    ));
                }
                Some(PwnedSource::Directory(dir))
            }
        };
        PwnedPasswordsSettings { source, on_error }
    }

    /// The passkey policy. What cannot work is refused in every mode (fail closed):
    /// attestation with no trust source, `enterprise` with no allow-list, a root for a
    /// BLOB that is not configured.
    fn passkey_policy(&mut self) -> PasskeyPolicySettings {
        let attestation = match self
            .string("WEBAUTHN_ATTESTATION", "none")
            .to_ascii_lowercase()
            .as_str()
        {
            "none" => AttestationMode::None,
            "indirect" => AttestationMode::Indirect,
            "enterprise" => AttestationMode::Enterprise,
            other => {
                self.errors.push(format!(
                    "WEBAUTHN_ATTESTATION: expected none, indirect or enterprise, got {other:?}"
                ));
                AttestationMode::None
            }
        };
        let mut allowed_aaguids = Vec::new();
        for entry in self.list("WEBAUTHN_ALLOWED_AAGUIDS") {
            match uuid::Uuid::parse_str(&entry) {
                Ok(aaguid) if !allowed_aaguids.contains(&aaguid) => allowed_aaguids.push(aaguid),
                Ok(_) => {}
                Err(_) => self.errors.push(format!(
                    "WEBAUTHN_ALLOWED_AAGUIDS: {entry:?} is not an AAGUID (a UUID such as cb69481e-8ff7-4039-93ec-0a2729a154a8)"
                )),
            }
        }
        let mut device_bound_roles = Vec::new();
        for entry in self.list("REQUIRE_DEVICE_BOUND_PASSKEYS_FOR") {
            match crate::domain::Role::parse(&entry.to_ascii_lowercase()) {
                Some(role) if !device_bound_roles.contains(&role) => device_bound_roles.push(role),
                Some(_) => {}
                None => self.errors.push(format!(
                    "REQUIRE_DEVICE_BOUND_PASSKEYS_FOR: expected roles among user, staff, admin, got {entry:?}"
                )),
            }
        }
        let mds_file = self.raw("FIDO_MDS_FILE").map(PathBuf::from);
        let mds_root_cert = self.raw("FIDO_MDS_ROOT_CERT").map(PathBuf::from);
        if attestation != AttestationMode::None && mds_file.is_none() {
            self.errors.push(format!(
                "WEBAUTHN_ATTESTATION={}: set FIDO_MDS_FILE; its attestation roots are the only trust source, and with none every registration would be refused",
                attestation.conveyance()
            ));
        }
        if attestation == AttestationMode::Enterprise && allowed_aaguids.is_empty() {
            self.errors.push(
                "WEBAUTHN_ATTESTATION=enterprise: set WEBAUTHN_ALLOWED_AAGUIDS (enterprise accepts only the listed authenticator models)"
                    .to_owned(),
            );
        }
        if mds_root_cert.is_some() && mds_file.is_none() {
            self.errors.push(
                "FIDO_MDS_ROOT_CERT: set FIDO_MDS_FILE too (the root signs that BLOB)".to_owned(),
            );
        }
        PasskeyPolicySettings {
            attestation,
            allowed_aaguids,
            mds_file,
            mds_root_cert,
            device_bound_roles,
        }
    }

    fn oidc(&mut self, origin_url: &str) -> OidcSettings {
        let issuer = self
            .string("ISSUER_URL", origin_url)
            .trim_end_matches('/')
            .to_owned();
        match url::Url::parse(&issuer) {
            Ok(url)
                if matches!(url.scheme(), "https" | "http")
                    && url.query().is_none()
                    && url.fragment().is_none() => {}
            _ => self.errors.push(format!(
                "ISSUER_URL: expected an https:// URL with no query or fragment, got {issuer:?}"
            )),
        }
        let signing_alg = match self.string("SIGNING_ALG", "ES256").as_str() {
            "ES256" => SigningAlg::Es256,
            "EdDSA" => SigningAlg::EdDsa,
            other => {
                self.errors.push(format!(
                    "SIGNING_ALG: expected ES256 or EdDSA, got {other:?} (PS256 is accepted from clients but not used to sign: the rsa crate carries RUSTSEC-2023-0071)"
                ));
                SigningAlg::Es256
            }
        };
        let rotation_days: u64 = self.parsed("SIGNING_KEY_ROTATION_DAYS", 90);
        if rotation_days == 0 {
            self.errors
                .push("SIGNING_KEY_ROTATION_DAYS: must be more than 0".to_owned());
        }
        OidcSettings {
            clients_file: self.raw("OIDC_CLIENTS_FILE").map(PathBuf::from),
            login_ui_url: self.string("LOGIN_UI_URL", &format!("{origin_url}/ui/login")),
            access_token_ttl: self.seconds("ACCESS_TOKEN_TTL_SECONDS", 300),
            id_token_ttl: self.seconds("ID_TOKEN_TTL_SECONDS", 300),
            access_token_audience: self.string("ACCESS_TOKEN_AUDIENCE", &issuer),
            signing_alg,
            key_rotation: Duration::from_secs(rotation_days.max(1) * 86_400),
            issuer,
        }
    }

    fn transactions(&mut self, origin_url: &str) -> TransactionSettings {
        let ttl = self.seconds("TRANSACTION_TTL_SECONDS", TRANSACTION_TTL_MAX_SECONDS);
        if ttl.as_secs() > TRANSACTION_TTL_MAX_SECONDS {
            self.errors.push(format!(
                "TRANSACTION_TTL_SECONDS: at most {TRANSACTION_TTL_MAX_SECONDS} (PSD2 RTS Art. 4: an authentication code lives at most 5 minutes)"
            ));
        }
        // The issuer as `oidc()` reads it; the audience names the payment backend.
        let issuer = self
            .string("ISSUER_URL", origin_url)
            .trim_end_matches('/')
            .to_owned();
        let audience = self.string("TRANSACTION_AUDIENCE", &format!("{issuer}/payments"));
        if audience.trim().is_empty() {
            self.errors
                .push("TRANSACTION_AUDIENCE: must not be empty".to_owned());
        }
        TransactionSettings {
            ttl: ttl.min(Duration::from_secs(TRANSACTION_TTL_MAX_SECONDS)),
            audience,
        }
    }

    fn rate_limit(&mut self, name: &str, default: &str) -> RateLimit {
        let value = self.string(name, default);
        let parsed = value.split_once('/').and_then(|(max, window)| {
            let max: u32 = max.trim().parse().ok()?;
            let window: u64 = window.trim().parse().ok()?;
            (max > 0 && window > 0).then(|| RateLimit {
                max,
                window: Duration::from_secs(window),
            })
        });
        parsed.unwrap_or_else(|| {
            self.errors.push(format!(
                "{name}: expected REQUESTS/SECONDS such as 50/600, got {value:?}"
            ));
            RateLimit {
                max: 50,
                window: Duration::from_secs(600),
            }
        })
    }

    /// `METRICS_ADDR`: default `127.0.0.1:9100`; `off` serves no metrics at all. It must
    /// differ from `BIND_ADDR`: metrics are never served on the public listener.
    fn metrics_addr(&mut self, bind_addr: SocketAddr) -> Option<SocketAddr> {
        let value = self.string("METRICS_ADDR", DEFAULT_METRICS_ADDR);
        if ["off", "none", "false"].contains(&value.to_ascii_lowercase().as_str()) {
            return None;
        }
        match value.parse::<SocketAddr>() {
            Ok(addr) if addr.port() != 0 && addr.port() == bind_addr.port() => {
                self.errors.push(format!(
                    "METRICS_ADDR: {addr} uses the port of BIND_ADDR; metrics need a listener of their own"
                ));
                None
            }
            Ok(addr) => Some(addr),
            Err(_) => {
                self.errors.push(format!(
                    "METRICS_ADDR: expected an address such as 127.0.0.1:9100 (or off), got {value:?}"
                ));
                None
            }
        }
    }

    /// `FRONTEND_ORIGINS`: each entry must be an origin, `http(s)://host[:port]` with no
    /// path, query or credentials; `*` and `null` are refused (with credentials, either
    /// would let any page, or any sandboxed frame, call the API as the user).
    fn frontend_origins(&mut self) -> Vec<String> {
        let mut origins = Vec::new();
        for entry in self.list("FRONTEND_ORIGINS") {
            match parse_origin(&entry) {
                Ok(origin) => {
                    if !origins.contains(&origin) {
                        origins.push(origin);
                    }
                }
                Err(reason) => self
                    .errors
                    .push(format!("FRONTEND_ORIGINS: {entry:?} {reason}")),
            }
        }
        origins
    }

    fn trusted_proxies(&mut self) -> Vec<IpNet> {
        let mut nets = Vec::new();
        for entry in self.list("TRUSTED_PROXIES") {
            let parsed = entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(IpNet::from));
            match parsed {
                Ok(net) => nets.push(net),
                Err(_) => self.errors.push(format!(
                    "TRUSTED_PROXIES: {entry:?} is not an IP address or CIDR"
                )),
            }
        }
        nets
    }

    fn redis_topology(&mut self) -> Option<RedisTopology> {
        let url = self.raw("REDIS_URL");
        let sentinels = self.list("REDIS_SENTINELS");
        let cluster_nodes = self.list("REDIS_CLUSTER_NODES");
        let chosen = [
            url.is_some(),
            !sentinels.is_empty(),
            !cluster_nodes.is_empty(),
        ];
        if chosen.iter().filter(|set| **set).count() > 1 {
            self.errors.push(
                "REDIS_URL, REDIS_SENTINELS and REDIS_CLUSTER_NODES: set exactly one (each names a different Redis deployment)"
                    .to_owned(),
            );
            return None;
        }
        let master_name = self.raw("REDIS_SENTINEL_MASTER");
        if sentinels.is_empty() && master_name.is_some() {
            self.errors
                .push("REDIS_SENTINEL_MASTER: only meaningful with REDIS_SENTINELS".to_owned());
        }
        for (name, addresses) in [
            ("REDIS_SENTINELS", &sentinels),
            ("REDIS_CLUSTER_NODES", &cluster_nodes),
        ] {
            if let Some(bad) = addresses.iter().find(|a| !is_host_port(a)) {
                self.errors
                    .push(format!("{name}: expected host:port,…, got {bad:?}"));
            }
        }
        let node = RedisNodeAuth {
            username: self.raw("REDIS_USERNAME"),
            password: self.raw("REDIS_PASSWORD").map(SecretString::from),
            tls: self.bool("REDIS_TLS", false),
        };
        if let Some(url) = url {
            return Some(RedisTopology::Single { url });
        }
        if !sentinels.is_empty() {
            let Some(master_name) = master_name else {
                self.errors.push(
                    "REDIS_SENTINEL_MASTER: required with REDIS_SENTINELS (the name the sentinels monitor)"
                        .to_owned(),
                );
                return None;
            };
            let sentinel = RedisNodeAuth {
                username: self.raw("REDIS_SENTINEL_USERNAME"),
                password: self.raw("REDIS_SENTINEL_PASSWORD").map(SecretString::from),
                tls: self.bool("REDIS_SENTINEL_TLS", false),
            };
            return Some(RedisTopology::Sentinel(SentinelSettings {
                sentinels,
                master_name,
                node,
                sentinel,
            }));
        }
        if !cluster_nodes.is_empty() {
            return Some(RedisTopology::Cluster {
                nodes: cluster_nodes,
                auth: node,
            });
        }
        None
    }

    fn smtp(&mut self) -> Option<SmtpSettings> {
        let host = self.raw("SMTP_HOST")?;
        let tls = match self
            .string("SMTP_TLS", "starttls")
            .to_ascii_lowercase()
            .as_str()
        {
            "none" => SmtpTls::None,
            "starttls" => SmtpTls::StartTls,
            "tls" => SmtpTls::Tls,
            other => {
                self.errors.push(format!(
                    "SMTP_TLS: expected none, starttls or tls, got {other:?}"
                ));
                SmtpTls::StartTls
            }
        };
        let default_port = match tls {
            SmtpTls::None => 25,
            SmtpTls::StartTls => 587,
            SmtpTls::Tls => 465,
        };
        Some(SmtpSettings {
            host,
            port: self.parsed("SMTP_PORT", default_port),
            username: self.raw("SMTP_USERNAME"),
            password: self.raw("SMTP_PASSWORD").map(SecretString::from),
            from: self.string("SMTP_FROM", "Logicredit <no-reply@localhost>"),
            tls,
        })
    }
}

/// The secrets' text, for the crypto constructors that derive keys from them.
pub fn exposed(secrets: &[SecretString]) -> Vec<&str> {
    secrets.iter().map(ExposeSecret::expose_secret).collect()
}

fn secrets(values: Vec<String>) -> Vec<SecretString> {
    values.into_iter().map(SecretString::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn production_names_every_insecure_setting() {
        let err = Settings::from_vars(&vars(&[
            ("APP_ENV", "production"),
            ("COOKIE_SECURE", "false"),
            ("SESSION_COOKIE_NAME", "sid"),
            ("ORIGIN_URL", "http://bank.example"),
            ("SMTP_HOST", "mail.example"),
            ("SMTP_TLS", "none"),
            ("HSTS", "false"),
        ]))
        .unwrap_err()
        .to_string();
        for expected in [
            "TOTP_ENCRYPTION_KEY",
            "COOKIE_SECURE",
            "ORIGIN_URL",
            "SMTP_TLS",
            "SQLite",
            "REDIS_URL",
            "HSTS",
        ] {
            assert!(err.contains(expected), "{expected} missing from: {err}");
        }
    }

    /// What production requires, with nothing insecure; each test changes one thing.
    const SECURE_PRODUCTION: &[(&str, &str)] = &[
        ("APP_ENV", "production"),
        ("TOTP_ENCRYPTION_KEY", "0123456789abcdef0123456789abcdef"),
        ("DATABASE_URL", "postgres://db/auth"),
        ("REDIS_URL", "redis://cache"),
        ("ORIGIN_URL", "https://bank.example"),
        ("SMTP_HOST", "smtp.bank.example"),
        ("FRONTEND_ORIGINS", "https://app.bank.example"),
    ];

    fn production_with(changes: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let mut all = vars(SECURE_PRODUCTION);
        for (key, value) in changes {
            all.insert((*key).to_owned(), (*value).to_owned());
        }
        Settings::from_vars(&all)
    }

    #[test]
    fn a_postgres_host_list_is_checked_at_start_up() {
        let failover = "postgres://auth@db1:5432,db2:5432/auth?target_session_attrs=read-write";
        assert!(production_with(&[("DATABASE_URL", failover)]).is_ok());
        let err = production_with(&[(
            "DATABASE_URL",
            "postgres://db1,db2/auth?target_session_attrs=any",
        )])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("DATABASE_URL: target_session_attrs=any"),
            "{err}"
        );
    }

    #[test]
    fn production_accepts_a_secure_configuration() {
        let settings = production_with(&[]).unwrap();
        assert!(settings.session.cookie_secure);
        assert_eq!(settings.session.cookie_name, "__Host-session");
        assert!(settings.hsts, "HSTS is on by default in production");
        assert_eq!(settings.frontend_origins, ["https://app.bank.example"]);
    }

    #[test]
    fn redis_is_one_server_a_sentinel_set_or_a_cluster() {
        let settings = production_with(&[]).unwrap();
        assert!(matches!(
            settings.redis,
            Some(RedisTopology::Single { ref url }) if url == "redis://cache"
        ));
        let settings = production_with(&[
            ("REDIS_URL", ""),
            ("REDIS_SENTINELS", "s1:26379, s2:26379,[::1]:26379"),
            ("REDIS_SENTINEL_MASTER", "auth"),
            ("REDIS_PASSWORD", "node-secret"),
            ("REDIS_SENTINEL_PASSWORD", "sentinel-secret"),
            ("REDIS_TLS", "true"),
        ])
        .unwrap();
        let Some(RedisTopology::Sentinel(sentinel)) = &settings.redis else {
            panic!("{:?}", settings.redis)
        };
        assert_eq!(sentinel.sentinels, ["s1:26379", "s2:26379", "[::1]:26379"]);
        assert_eq!(sentinel.master_name, "auth");
        assert!(sentinel.node.tls && !sentinel.sentinel.tls);
        assert_eq!(
            sentinel
                .sentinel
                .password
                .as_ref()
                .map(|p| p.expose_secret()),
            Some("sentinel-secret")
        );
        let printed = format!("{settings:?}");
        assert!(
            !printed.contains("node-secret") && !printed.contains("sentinel-secret"),
            "passwords are redacted"
        );
        let settings = production_with(&[
            ("REDIS_URL", ""),
            ("REDIS_CLUSTER_NODES", "c1:6379,c2:6379,c3:6379"),
        ])
        .unwrap();
        assert!(matches!(
            settings.redis,
            Some(RedisTopology::Cluster { ref nodes, .. }) if nodes.len() == 3
        ));
    }

    #[test]
    fn an_ambiguous_or_incomplete_redis_setting_refuses_to_start() {
        for (changes, expected) in [
            (
                &[
                    ("REDIS_SENTINELS", "s1:26379"),
                    ("REDIS_SENTINEL_MASTER", "m"),
                ][..],
                "set exactly one",
            ),
            (&[("REDIS_CLUSTER_NODES", "c1:6379")][..], "set exactly one"),
            (
                &[("REDIS_URL", ""), ("REDIS_SENTINELS", "s1:26379")][..],
                "REDIS_SENTINEL_MASTER: required",
            ),
            (
                &[("REDIS_SENTINEL_MASTER", "m")][..],
                "only meaningful with REDIS_SENTINELS",
            ),
            (
                &[("REDIS_URL", ""), ("REDIS_CLUSTER_NODES", "c1:6379,c2")][..],
                "REDIS_CLUSTER_NODES: expected host:port",
            ),
            (
                &[("REDIS_URL", "")][..],
                "REDIS_URL (or REDIS_SENTINELS or REDIS_CLUSTER_NODES) is required",
            ),
        ] {
            let err = production_with(changes).unwrap_err().to_string();
            assert!(err.contains(expected), "{changes:?}: {err}");
        }
    }

    #[test]
    fn transactions_live_at_most_five_minutes_and_name_the_payment_backend() {
        let settings = production_with(&[]).unwrap();
        assert_eq!(settings.transactions.ttl, Duration::from_secs(300));
        assert_eq!(
            settings.transactions.audience,
            "https://bank.example/payments"
        );
        let settings = production_with(&[
            ("TRANSACTION_TTL_SECONDS", "60"),
            ("TRANSACTION_AUDIENCE", "urn:bank:payments"),
        ])
        .unwrap();
        assert_eq!(settings.transactions.ttl, Duration::from_secs(60));
        assert_eq!(settings.transactions.audience, "urn:bank:payments");
        for too_long in ["301", "0", "x"] {
            let err = production_with(&[("TRANSACTION_TTL_SECONDS", too_long)])
                .unwrap_err()
                .to_string();
            assert!(err.contains("TRANSACTION_TTL_SECONDS"), "{err}");
        }
    }

    #[test]
    fn the_openid_provider_settings_default_to_the_origin_and_refuse_bad_values() {
        let settings = production_with(&[]).unwrap();
        assert_eq!(settings.oidc.issuer, "https://bank.example");
        assert_eq!(settings.oidc.login_ui_url, "https://bank.example/ui/login");
        assert_eq!(settings.oidc.access_token_audience, "https://bank.example");
        assert_eq!(settings.oidc.signing_alg, SigningAlg::Es256);
        let err = production_with(&[("SIGNING_ALG", "PS256"), ("SIGNING_KEY_ROTATION_DAYS", "0")])
            .unwrap_err()
            .to_string();
        for expected in [
            "SIGNING_ALG",
            "RUSTSEC-2023-0071",
            "SIGNING_KEY_ROTATION_DAYS",
        ] {
            assert!(err.contains(expected), "{expected} missing from: {err}");
        }
        let err = production_with(&[("ISSUER_URL", "http://auth.bank.example")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("ISSUER_URL must use https://"), "{err}");
        let err = production_with(&[("ISSUER_URL", "https://auth.bank.example/?x=1")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("ISSUER_URL"), "{err}");
    }

    #[test]
    fn psd2_caps_the_idle_timeout_and_the_lockout_threshold() {
        let psd2 = production_with(&[("AUTH_POLICY", "psd2")]).unwrap();
        assert_eq!(psd2.auth_policy, AuthPolicy::Psd2);
        assert_eq!(psd2.session.idle_timeout, Duration::from_secs(300));
        // The durable last-seen refresh stays well inside the 5-minute idle timeout.
        assert_eq!(psd2.session.touch_interval, Duration::from_secs(100));
        assert_eq!(psd2.privileged_policy, PrivilegedPolicy::Standard);
        let standard = production_with(&[]).unwrap();
        assert_eq!(standard.auth_policy, AuthPolicy::Standard);
        assert_eq!(standard.session.idle_timeout, Duration::from_secs(900));
        assert_eq!(standard.session.touch_interval, Duration::from_secs(300));
        let err = production_with(&[
            ("AUTH_POLICY", "psd2"),
            ("SESSION_IDLE_TIMEOUT_SECONDS", "301"),
            ("LOCKOUT_THRESHOLD", "6"),
        ])
        .unwrap_err()
        .to_string();
        for expected in [
            "SESSION_IDLE_TIMEOUT_SECONDS",
            "LOCKOUT_THRESHOLD",
            "RTS Art. 4",
        ] {
            assert!(err.contains(expected), "{expected} missing from: {err}");
        }
        let err = production_with(&[("AUTH_POLICY", "sca"), ("PRIVILEGED_POLICY", "pci-dss")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("AUTH_POLICY") && err.contains("PRIVILEGED_POLICY"),
            "{err}"
        );
        let pci = production_with(&[("PRIVILEGED_POLICY", "PCI")]).unwrap();
        assert_eq!(pci.privileged_policy, PrivilegedPolicy::Pci);
    }

    #[test]
    fn pci_lockouts_are_at_least_30_minutes_and_inactivity_at_most_90_days() {
        let pci = production_with(&[("PRIVILEGED_POLICY", "pci")]).unwrap();
        assert_eq!(pci.pci_lockout, Duration::from_secs(1800));
        assert_eq!(pci.pci_inactivity, Duration::from_secs(90 * 86_400));
        let longer = production_with(&[("PCI_LOCKOUT_SECONDS", "7200")]).unwrap();
        assert_eq!(longer.pci_lockout, Duration::from_secs(7200));
        let err = production_with(&[
            ("PCI_LOCKOUT_SECONDS", "1799"),
            ("PCI_INACTIVITY_DAYS", "91"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("PCI_LOCKOUT_SECONDS") && err.contains("PCI_INACTIVITY_DAYS"),
            "{err}"
        );
    }

    #[test]
    fn production_refuses_to_start_without_smtp() {
        // Without SMTP, emails (verification and reset links) would go to the log.
        let mut without = vars(SECURE_PRODUCTION);
        without.remove("SMTP_HOST");
        let err = Settings::from_vars(&without).unwrap_err().to_string();
        assert!(err.contains("SMTP_HOST"), "{err}");
        // Development keeps the convenience of emails in the log.
        let development = Settings::from_vars(&vars(&[(
            "TOTP_ENCRYPTION_KEY",
            "0123456789abcdef0123456789abcdef",
        )]))
        .unwrap();
        assert!(development.smtp.is_none());
    }

    #[test]
    fn production_refuses_hsts_false() {
        let err = production_with(&[("HSTS", "false")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("HSTS"), "{err}");
        assert!(production_with(&[("HSTS", "true")]).unwrap().hsts);
    }

    #[test]
    fn frontend_origins_must_be_origins_in_every_mode() {
        for (value, hint) in [
            ("*", "wildcard"),
            ("null", "null"),
            ("NULL", "null"),
            ("https://app.bank.example/login", "not an origin"),
            ("https://app.bank.example?x=1", "not an origin"),
            ("https://user:pw@app.bank.example", "not an origin"),
            ("app.bank.example", "not an origin"),
            ("ftp://app.bank.example", "https://"),
            ("https://", "not an origin"),
        ] {
            for mode in ["development", "production"] {
                let err = production_with(&[("APP_ENV", mode), ("FRONTEND_ORIGINS", value)])
                    .expect_err(value)
                    .to_string();
                assert!(
                    err.contains("FRONTEND_ORIGINS") && err.contains(hint),
                    "{mode}, {value:?}: {err}"
                );
            }
        }
        // Valid ones are normalised to what browsers send in `Origin`.
        let settings = production_with(&[(
            "FRONTEND_ORIGINS",
            "https://App.Bank.example/, https://app.bank.example:443, https://web.bank.example:8443",
        )])
        .unwrap();
        assert_eq!(
            settings.frontend_origins,
            ["https://app.bank.example", "https://web.bank.example:8443"]
        );
    }

    #[test]
    fn production_refuses_plain_http_front_ends_except_loopback() {
        let err = production_with(&[(
            "FRONTEND_ORIGINS",
            "https://app.bank.example,http://app.bank.example",
        )])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("FRONTEND_ORIGINS") && err.contains("http://app.bank.example"),
            "{err}"
        );
        // Like ORIGIN_URL, a loopback front end stays allowed; development allows http.
        production_with(&[(
            "FRONTEND_ORIGINS",
            "http://localhost:3000,http://127.0.0.1:3000",
        )])
        .unwrap();
        production_with(&[
            ("APP_ENV", "development"),
            ("FRONTEND_ORIGINS", "http://app.bank.example"),
        ])
        .unwrap();
    }

    #[test]
    fn metrics_have_their_own_listener() {
        let settings = production_with(&[]).unwrap();
        assert_eq!(
            settings.metrics_addr,
            Some("127.0.0.1:9100".parse().unwrap())
        );
        assert!(
            production_with(&[("METRICS_ADDR", "off")])
                .unwrap()
                .metrics_addr
                .is_none()
        );
        let err = production_with(&[
            ("BIND_ADDR", "0.0.0.0:8000"),
            ("METRICS_ADDR", "0.0.0.0:8000"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("METRICS_ADDR"), "{err}");
        // Reachable beyond the host only with a token, in production.
        let err = production_with(&[("METRICS_ADDR", "0.0.0.0:9100")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("METRICS_TOKEN"), "{err}");
        let token = "m".repeat(32);
        production_with(&[
            ("METRICS_ADDR", "0.0.0.0:9100"),
            ("METRICS_TOKEN", token.as_str()),
        ])
        .unwrap();
        let err = production_with(&[("METRICS_TOKEN", "short")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("METRICS_TOKEN"), "{err}");
    }

    #[test]
    fn insecure_cookie_defaults_to_a_plain_cookie_name() {
        let settings = Settings::from_vars(&vars(&[
            ("COOKIE_SECURE", "false"),
            ("TOTP_ENCRYPTION_KEY", "0123456789abcdef0123456789abcdef"),
        ]))
        .unwrap();
        assert_eq!(settings.session.cookie_name, "session");
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let secrets = [
            (
                "TOTP_ENCRYPTION_KEY",
                "master-key-0123456789abcdef0123456789",
            ),
            (
                "TOTP_ENCRYPTION_KEYS_OLD",
                "old-master-key-0123456789abcdef01234",
            ),
            ("PASSWORD_PEPPER", "pepper-0123456789"),
            ("PASSWORD_PEPPERS_OLD", "old-pepper-0123456789"),
            ("SMTP_PASSWORD", "smtp-password-0123456789"),
        ];
        let mut all = secrets.to_vec();
        all.push(("SMTP_HOST", "127.0.0.1"));
        let settings = Settings::from_vars(&vars(&all)).unwrap();
        let debug = format!("{settings:?}");
        for (name, value) in secrets {
            assert!(!debug.contains(value), "{name} printed by Debug");
        }
        assert!(debug.contains("REDACTED"));
    }

    #[test]
    fn bad_values_are_all_reported() {
        let err = Settings::from_vars(&vars(&[
            ("RATE_LIMIT_AUTH", "fast"),
            ("TRUSTED_PROXIES", "10.0.0.0/8,nonsense"),
            ("LOCKOUT_THRESHOLD", "-1"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("RATE_LIMIT_AUTH"));
        assert!(err.contains("nonsense"));
        assert!(err.contains("LOCKOUT_THRESHOLD"));
    }

    #[test]
    fn the_compromised_password_check_is_off_unless_a_source_is_set() {
        let settings = production_with(&[]).unwrap();
        assert_eq!(settings.pwned_passwords.source, None);
        assert_eq!(settings.pwned_passwords.on_error, PwnedOnError::Allow);

        let settings = production_with(&[
            ("PWNED_PASSWORDS_URL", "https://api.pwnedpasswords.com/"),
            ("PWNED_PASSWORDS_ON_ERROR", "deny"),
        ])
        .unwrap();
        assert_eq!(
            settings.pwned_passwords.source,
            Some(PwnedSource::Api(
                "https://api.pwnedpasswords.com".to_owned()
            ))
        );
        assert_eq!(settings.pwned_passwords.on_error, PwnedOnError::Deny);
        // A loopback mirror may be plain HTTP even in production.
        production_with(&[("PWNED_PASSWORDS_URL", "http://127.0.0.1:8080/hibp")]).unwrap();

        let dir = std::env::temp_dir();
        let settings = production_with(&[("PWNED_PASSWORDS_DIR", dir.to_str().unwrap())]).unwrap();
        assert_eq!(
            settings.pwned_passwords.source,
            Some(PwnedSource::Directory(dir))
        );
    }

    #[test]
    fn bad_compromised_password_settings_are_refused() {
        for (changes, expected) in [
            (
                &[("PWNED_PASSWORDS_URL", "http://pwned.example")][..],
                "PWNED_PASSWORDS_URL must use https://",
            ),
            (
                &[("PWNED_PASSWORDS_URL", "ftp://pwned.example")][..],
                "expected an http(s):// URL",
            ),
            (
                &[("PWNED_PASSWORDS_URL", "https://pwned.example/?k=1")][..],
                "without query",
            ),
            (
                &[("PWNED_PASSWORDS_URL", "https://user:pw@pwned.example")][..],
                "without credentials",
            ),
            (
                &[("PWNED_PASSWORDS_DIR", "/nonexistent/pwned-ranges")][..],
                "is not a readable folder",
            ),
            (
                &[
                    ("PWNED_PASSWORDS_URL", "https://pwned.example"),
                    ("PWNED_PASSWORDS_DIR", "/tmp"),
                ][..],
                "set one, not both",
            ),
            (
                &[("PWNED_PASSWORDS_ON_ERROR", "ignore")][..],
                "expected allow or deny",
            ),
        ] {
            let err = production_with(changes).unwrap_err().to_string();
            assert!(err.contains(expected), "{changes:?}: {err}");
        }
    }

    #[test]
    fn passkey_policy_defaults_to_none_and_reads_its_lists() {
        let settings = production_with(&[]).unwrap();
        assert_eq!(settings.passkey_policy.attestation, AttestationMode::None);
        assert!(settings.passkey_policy.allowed_aaguids.is_empty());
        assert!(settings.passkey_policy.device_bound_roles.is_empty());
        let settings = production_with(&[
            ("WEBAUTHN_ATTESTATION", "Enterprise"),
            (
                "WEBAUTHN_ALLOWED_AAGUIDS",
                "cb69481e-8ff7-4039-93ec-0a2729a154a8, CB69481E-8FF7-4039-93EC-0A2729A154A8",
            ),
            ("FIDO_MDS_FILE", "/etc/logicredit/mds.jwt"),
            ("REQUIRE_DEVICE_BOUND_PASSKEYS_FOR", "staff, Admin"),
        ])
        .unwrap();
        let policy = settings.passkey_policy;
        assert_eq!(policy.attestation, AttestationMode::Enterprise);
        assert_eq!(policy.allowed_aaguids.len(), 1, "duplicates fold");
        assert_eq!(
            policy.device_bound_roles,
            [crate::domain::Role::Staff, crate::domain::Role::Admin]
        );
    }

    #[test]
    fn passkey_policy_refuses_what_cannot_be_enforced() {
        for (changes, expected) in [
            (
                &[("WEBAUTHN_ATTESTATION", "direct")][..],
                "expected none, indirect or enterprise",
            ),
            (
                &[("WEBAUTHN_ATTESTATION", "indirect")][..],
                "set FIDO_MDS_FILE",
            ),
            (
                &[
                    ("WEBAUTHN_ATTESTATION", "enterprise"),
                    ("FIDO_MDS_FILE", "/etc/mds.jwt"),
                ][..],
                "set WEBAUTHN_ALLOWED_AAGUIDS",
            ),
            (
                &[("WEBAUTHN_ALLOWED_AAGUIDS", "yubikey")][..],
                "is not an AAGUID",
            ),
            (
                &[("REQUIRE_DEVICE_BOUND_PASSKEYS_FOR", "root")][..],
                "expected roles among user, staff, admin",
            ),
            (
                &[("FIDO_MDS_ROOT_CERT", "/etc/mds-root.pem")][..],
                "set FIDO_MDS_FILE too",
            ),
            // Production: settings that look enforced without attestation.
            (
                &[(
                    "WEBAUTHN_ALLOWED_AAGUIDS",
                    "cb69481e-8ff7-4039-93ec-0a2729a154a8",
                )][..],
                "need WEBAUTHN_ATTESTATION=indirect or enterprise in production",
            ),
            (
                &[("FIDO_MDS_FILE", "/etc/mds.jwt")][..],
                "need WEBAUTHN_ATTESTATION=indirect or enterprise in production",
            ),
        ] {
            let err = production_with(changes).unwrap_err().to_string();
            assert!(err.contains(expected), "{changes:?}: {err}");
        }
        // Development only warns about those two (the start logs that they are ignored).
        production_with(&[
            ("APP_ENV", "development"),
            ("FIDO_MDS_FILE", "/etc/mds.jwt"),
        ])
        .unwrap();
    }
}
