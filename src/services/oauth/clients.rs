//! Registered clients (RFC 7591 metadata, docs/API.md §8): from `OIDC_CLIENTS_FILE`, read
//! and validated once at start, and from the database through the admin API.
//!
//! Validation is one function for both sources, so a file client and an API client obey
//! the same rules; every problem names the client and the field.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::{Deserialize, Serialize};

use crate::crypto::{constant_time_eq, token_hash};
use crate::storage::StorageResult;
use crate::storage::db::Database;
use crate::storage::db::oauth as rows;

/// Scopes every deployment understands; clients may register more (API scopes).
pub const OPENID: &str = "openid";
pub const EMAIL: &str = "email";
/// Authorization details types the provider knows (RFC 9396).
pub const PAYMENT_INITIATION: &str = "payment_initiation";
/// The shortest client secret the file may carry (a generated one is 43 characters).
pub const MIN_SECRET_LEN: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

impl GrantType {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    PrivateKeyJwt,
    ClientSecretBasic,
    ClientSecretPost,
    /// A public client: it proves nothing at the token endpoint, PKCE protects its codes.
    None,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::None => "none",
        }
    }

    pub fn uses_secret(self) -> bool {
        matches!(
            self,
            AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost
        )
    }
}

/// Which profile the provider applies to a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientProfile {
    #[default]
    Oidc,
    /// The FAPI 2.0 Security Profile: PAR, DPoP, private_key_jwt, SCA always.
    Fapi2,
}

fn default_grant_types() -> Vec<GrantType> {
    vec![GrantType::AuthorizationCode]
}

fn default_response_types() -> Vec<String> {
    vec!["code".to_owned()]
}

fn default_auth_method() -> AuthMethod {
    AuthMethod::ClientSecretBasic
}

fn default_scope() -> String {
    format!("{OPENID} {EMAIL}")
}

/// A client's metadata as registered (RFC 7591 names, plus `skip_consent`, `profile` and
/// `resource_server` of ours). Never holds the secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientMetadata {
    pub client_id: String,
    #[serde(default)]
    pub client_name: String,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    #[serde(default = "default_grant_types")]
    pub grant_types: Vec<GrantType>,
    #[serde(default = "default_response_types")]
    pub response_types: Vec<String>,
    #[serde(default = "default_auth_method")]
    pub token_endpoint_auth_method: AuthMethod,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<JwkSet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    #[serde(default = "default_scope")]
    pub scope: String,
    #[serde(default)]
    pub require_pushed_authorization_requests: bool,
    #[serde(default)]
    pub dpop_bound_access_tokens: bool,
    #[serde(default)]
    pub authorization_details_types: Vec<String>,
    /// A first-party client: no consent step.
    #[serde(default)]
    pub skip_consent: bool,
    #[serde(default)]
    pub profile: ClientProfile,
    /// May introspect tokens issued to other clients (an API that accepts them).
    #[serde(default)]
    pub resource_server: bool,
}

/// A file entry: the metadata plus the secret, which only the file may carry.
#[derive(Debug, Deserialize)]
struct FileEntry {
    #[serde(flatten)]
    metadata: serde_json::Map<String, serde_json::Value>,
}

/// Where a client was registered; file clients cannot be changed through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientSource {
    File,
    Database,
}

/// A client ready for use: validated metadata, the secret's hash and parsed keys.
#[derive(Clone)]
pub struct Client {
    pub metadata: ClientMetadata,
    pub source: ClientSource,
    secret_hash: Option<String>,
    keys: Vec<ClientKey>,
}

#[derive(Clone)]
pub struct ClientKey {
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub key: DecodingKey,
}

/// Algorithms accepted on client assertions: PS256 verifies with `rsa` (its advisory
/// concerns private-key operations, which the provider never does with it).
pub const CLIENT_ASSERTION_ALGS: [Algorithm; 3] =
    [Algorithm::ES256, Algorithm::PS256, Algorithm::EdDSA];

impl Client {
    pub fn id(&self) -> &str {
        &self.metadata.client_id
    }

    pub fn name(&self) -> &str {
        if self.metadata.client_name.is_empty() {
            &self.metadata.client_id
        } else {
            &self.metadata.client_name
        }
    }

    pub fn allows_grant(&self, grant: GrantType) -> bool {
        self.metadata.grant_types.contains(&grant)
    }

    pub fn is_public(&self) -> bool {
        self.metadata.token_endpoint_auth_method == AuthMethod::None
    }

    pub fn is_fapi2(&self) -> bool {
        self.metadata.profile == ClientProfile::Fapi2
    }

    pub fn allowed_scopes(&self) -> BTreeSet<&str> {
        self.metadata.scope.split_ascii_whitespace().collect()
    }

    /// Constant-time check of a presented secret against the stored hash.
    pub fn secret_matches(&self, presented: &str) -> bool {
        self.secret_hash
            .as_deref()
            .is_some_and(|hash| constant_time_eq(hash.as_bytes(), token_hash(presented).as_bytes()))
    }

    pub fn keys(&self) -> &[ClientKey] {
        &self.keys
    }

    pub fn has_redirect_uri(&self, uri: &str) -> bool {
        self.metadata.redirect_uris.iter().any(|r| r == uri)
    }

    pub fn has_post_logout_redirect_uri(&self, uri: &str) -> bool {
        self.metadata
            .post_logout_redirect_uris
            .iter()
            .any(|r| r == uri)
    }

    /// Builds a client from validated metadata and its secret hash.
    pub fn new(
        metadata: ClientMetadata,
        source: ClientSource,
        secret_hash: Option<String>,
    ) -> Result<Self, Vec<String>> {
        let keys = parse_keys(&metadata).map_err(|e| vec![e])?;
        Ok(Self {
            metadata,
            source,
            secret_hash,
            keys,
        })
    }
}

fn parse_keys(metadata: &ClientMetadata) -> Result<Vec<ClientKey>, String> {
    let Some(set) = &metadata.jwks else {
        return Ok(Vec::new());
    };
    set.keys
        .iter()
        .enumerate()
        .map(|(i, jwk)| client_key(jwk).map_err(|e| format!("jwks.keys[{i}]: {e}")))
        .collect()
}

pub(super) fn client_key(jwk: &Jwk) -> Result<ClientKey, String> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, KeyAlgorithm};
    let alg = match (&jwk.algorithm, &jwk.common.key_algorithm) {
        (AlgorithmParameters::EllipticCurve(p), None | Some(KeyAlgorithm::ES256))
            if p.curve == EllipticCurve::P256 =>
        {
            Algorithm::ES256
        }
        (AlgorithmParameters::OctetKeyPair(p), None | Some(KeyAlgorithm::EdDSA))
            if p.curve == EllipticCurve::Ed25519 =>
        {
            Algorithm::EdDSA
        }
        (AlgorithmParameters::RSA(p), None | Some(KeyAlgorithm::PS256)) => {
            // FAPI 2.0 §5.4.1: RSA keys of at least 2048 bits.
            use base64::Engine as _;
            let bits = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(&p.n)
                .map(|n| n.iter().skip_while(|b| **b == 0).count() * 8)
                .unwrap_or(0);
            if bits < 2048 {
                return Err("RSA keys need at least 2048 bits".to_owned());
            }
            Algorithm::PS256
        }
        _ => {
            return Err(
                "unsupported key: use P-256 (ES256), Ed25519 (EdDSA) or RSA (PS256)".to_owned(),
            );
        }
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("unreadable key: {e}"))?;
    Ok(ClientKey {
        kid: jwk.common.key_id.clone(),
        alg,
        key,
    })
}

/// Every problem with `metadata`, each naming the field. `has_secret`: a secret comes with
/// it (file) or will be generated (API).
pub fn validate(metadata: &ClientMetadata, has_secret: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let m = metadata;
    let id_ok = !m.client_id.is_empty()
        && m.client_id.len() <= 128
        && m.client_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._:~".contains(c));
    if !id_ok {
        problems.push("client_id: 1 to 128 characters of A-Z a-z 0-9 - . _ : ~".to_owned());
    }
    if m.client_name.chars().count() > 200 {
        problems.push("client_name: at most 200 characters".to_owned());
    }
    let code_flow = m.grant_types.contains(&GrantType::AuthorizationCode);
    if m.grant_types.is_empty() {
        problems.push(
            "grant_types: at least one of authorization_code, refresh_token, client_credentials"
                .to_owned(),
        );
    }
    if m.grant_types.contains(&GrantType::RefreshToken) && !code_flow {
        problems.push("grant_types: refresh_token needs authorization_code".to_owned());
    }
    let responses_ok = if code_flow {
        m.response_types == ["code"]
    } else {
        m.response_types.is_empty() || m.response_types == ["code"]
    };
    if !responses_ok {
        problems.push("response_types: only [\"code\"] is supported".to_owned());
    }
    if code_flow && m.redirect_uris.is_empty() {
        problems.push("redirect_uris: required for authorization_code".to_owned());
    }
    for (i, uri) in m.redirect_uris.iter().enumerate() {
        if let Err(e) = check_redirect_uri(uri) {
            problems.push(format!("redirect_uris[{i}]: {e}"));
        }
    }
    for (i, uri) in m.post_logout_redirect_uris.iter().enumerate() {
        if let Err(e) = check_redirect_uri(uri) {
            problems.push(format!("post_logout_redirect_uris[{i}]: {e}"));
        }
    }
    let method = m.token_endpoint_auth_method;
    if method == AuthMethod::None && m.grant_types.contains(&GrantType::ClientCredentials) {
        problems.push("grant_types: client_credentials needs a confidential client (token_endpoint_auth_method other than none)".to_owned());
    }
    if method.uses_secret() && !has_secret {
        problems.push(format!(
            "client_secret: required for {} (at least {MIN_SECRET_LEN} characters)",
            method.as_str()
        ));
    }
    if !method.uses_secret() && has_secret {
        problems.push(format!(
            "client_secret: not used with {}; remove it",
            method.as_str()
        ));
    }
    match (&m.jwks, &m.jwks_uri) {
        (Some(_), Some(_)) => {
            problems.push("jwks_uri: give the keys either inline (jwks) or by jwks_uri".to_owned())
        }
        (None, Some(uri)) => {
            if let Err(e) = check_jwks_uri(uri) {
                problems.push(format!("jwks_uri: {e}"));
            }
        }
        (None, None) if method == AuthMethod::PrivateKeyJwt => {
            problems.push("jwks: required for private_key_jwt (or jwks_uri)".to_owned())
        }
        (Some(set), None) => {
            if set.keys.is_empty() {
                problems.push("jwks: has no keys".to_owned());
            }
            if let Err(e) = parse_keys(m) {
                problems.push(e);
            }
        }
        (None, None) => {}
    }
    let scopes: Vec<&str> = m.scope.split_ascii_whitespace().collect();
    if scopes.is_empty() && code_flow {
        problems.push("scope: lists no scope".to_owned());
    }
    if scopes.iter().any(|s| {
        s.len() > 100
            || !s
                .chars()
                .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')
    }) {
        problems.push(
            "scope: each scope is 1 to 100 printable ASCII characters without \" or \\".to_owned(),
        );
    }
    for kind in &m.authorization_details_types {
        if kind != PAYMENT_INITIATION {
            problems.push(format!(
                "authorization_details_types: unknown type {kind:?} (supported: {PAYMENT_INITIATION})"
            ));
        }
    }
    if m.profile == ClientProfile::Fapi2 && method != AuthMethod::PrivateKeyJwt {
        problems
            .push("token_endpoint_auth_method: a fapi2 client must use private_key_jwt".to_owned());
    }
    problems
}

/// A redirect URI must be absolute with no fragment: `https`, `http` only to a loopback
/// host (native apps and development), or a private-use scheme with a dot (RFC 8252 §7.1).
pub fn check_redirect_uri(uri: &str) -> Result<(), &'static str> {
    let url = url::Url::parse(uri).map_err(|_| "not an absolute URI")?;
    if url.fragment().is_some() {
        return Err("must not have a fragment");
    }
    if uri.len() > 2000 {
        return Err("longer than 2000 characters");
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Domain(d)) => d == "localhost",
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            if loopback {
                Ok(())
            } else {
                Err("http is only allowed to a loopback host; use https")
            }
        }
        "javascript" | "data" | "file" | "blob" | "vbscript" => Err("scheme not allowed"),
        scheme if scheme.contains('.') => Ok(()),
        _ => Err(
            "use https, http to a loopback host, or a private-use scheme such as com.example.app",
        ),
    }
}

/// A `jwks_uri` is fetched by the provider: `https`, or `http` to a loopback host only.
pub fn check_jwks_uri(uri: &str) -> Result<(), &'static str> {
    let url = url::Url::parse(uri).map_err(|_| "not an absolute URI")?;
    if url.fragment().is_some() || uri.len() > 2000 {
        return Err("no fragment, at most 2000 characters");
    }
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err("use https (http only to a loopback host)"),
    }
}

/// The clients of `OIDC_CLIENTS_FILE`, validated; an error lists every problem, each
/// naming the client and the field.
pub fn load_file(path: &Path) -> Result<Vec<(ClientMetadata, Option<String>)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("OIDC_CLIENTS_FILE {}: {e}", path.display()))?;
    parse_file(&text).map_err(|problems| {
        format!(
            "OIDC_CLIENTS_FILE {}:\n  - {}",
            path.display(),
            problems.join("\n  - ")
        )
    })
}

/// Parses and validates a clients file: a JSON array of RFC 7591 metadata objects, each
/// with `client_secret` when its method needs one. Returns metadata with the secret hash.
pub fn parse_file(text: &str) -> Result<Vec<(ClientMetadata, Option<String>)>, Vec<String>> {
    let entries: Vec<FileEntry> = serde_json::from_str(text)
        .map_err(|e| vec![format!("not a JSON array of client objects: {e}")])?;
    let mut problems = Vec::new();
    let mut clients = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, entry) in entries.into_iter().enumerate() {
        let mut fields = entry.metadata;
        let name = fields
            .get("client_id")
            .and_then(|v| v.as_str())
            .map_or_else(
                || format!("client #{}", i + 1),
                |id| format!("client {id:?}"),
            );
        let secret = match fields.remove("client_secret") {
            None => None,
            Some(serde_json::Value::String(s)) => Some(s),
            Some(_) => {
                problems.push(format!("{name}: client_secret: must be a string"));
                continue;
            }
        };
        let metadata: ClientMetadata =
            match serde_json::from_value(serde_json::Value::Object(fields)) {
                Ok(m) => m,
                Err(e) => {
                    problems.push(format!("{name}: {e}"));
                    continue;
                }
            };
        let mut own = validate(&metadata, secret.is_some());
        if let Some(secret) = &secret
            && secret.chars().count() < MIN_SECRET_LEN
        {
            own.push(format!(
                "client_secret: at least {MIN_SECRET_LEN} characters"
            ));
        }
        if !seen.insert(metadata.client_id.clone()) {
            own.push("client_id: listed twice".to_owned());
        }
        if own.is_empty() {
            clients.push((metadata, secret.as_deref().map(token_hash)));
        } else {
            problems.extend(own.into_iter().map(|p| format!("{name}: {p}")));
        }
    }
    if problems.is_empty() {
        Ok(clients)
    } else {
        Err(problems)
    }
}

/// File clients in memory, database clients read on use (so an admin change is seen by
/// every instance at once).
#[derive(Clone)]
pub struct ClientRegistry {
    db: Database,
    file: std::sync::Arc<HashMap<String, Client>>,
}

impl ClientRegistry {
    pub fn new(db: Database, file: Vec<Client>) -> Self {
        let file = file
            .into_iter()
            .map(|c| (c.metadata.client_id.clone(), c))
            .collect();
        Self {
            db,
            file: std::sync::Arc::new(file),
        }
    }

    pub fn is_file_client(&self, client_id: &str) -> bool {
        self.file.contains_key(client_id)
    }

    pub fn file_clients(&self) -> impl Iterator<Item = &Client> {
        self.file.values()
    }

    pub async fn find(&self, client_id: &str) -> StorageResult<Option<Client>> {
        if let Some(client) = self.file.get(client_id) {
            return Ok(Some(client.clone()));
        }
        if client_id.is_empty() || client_id.len() > 128 {
            return Ok(None);
        }
        let Some(row) = rows::find_client(self.db.connection(), client_id).await? else {
            return Ok(None);
        };
        Ok(database_client(row))
    }
}

/// A database row as a client; a row that no longer validates is logged and ignored.
pub fn database_client(row: rows::ClientRow) -> Option<Client> {
    let metadata: ClientMetadata = match serde_json::from_str(&row.metadata) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(client_id = %row.client_id, error = %e, "stored OAuth client is unreadable");
            return None;
        }
    };
    match Client::new(metadata, ClientSource::Database, row.secret_hash) {
        Ok(client) => Some(client),
        Err(problems) => {
            tracing::error!(client_id = %row.client_id, ?problems, "stored OAuth client is invalid");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPA: &str = r#"[{"client_id":"spa","client_name":"SPA","redirect_uris":["https://app.example/cb"],
        "grant_types":["authorization_code","refresh_token"],"token_endpoint_auth_method":"none"}]"#;

    #[test]
    fn a_valid_file_is_read() {
        let clients = parse_file(SPA).unwrap();
        assert_eq!(clients.len(), 1);
        assert_eq!(clients[0].0.scope, "openid email");
        assert!(clients[0].1.is_none());
    }

    #[test]
    fn every_problem_names_the_client_and_the_field() {
        let text = r#"[
            {"client_id":"web","redirect_uris":["http://evil.example/cb"],"token_endpoint_auth_method":"client_secret_basic"},
            {"client_id":"svc","grant_types":["client_credentials"],"token_endpoint_auth_method":"none"},
            {"client_id":"typo","redirect_uri":["https://a.example/cb"]}
        ]"#;
        let problems = parse_file(text).unwrap_err();
        let all = problems.join("\n");
        assert!(
            all.contains("client \"web\": redirect_uris[0]: http is only allowed"),
            "{all}"
        );
        assert!(
            all.contains("client \"web\": client_secret: required"),
            "{all}"
        );
        assert!(
            all.contains(
                "client \"svc\": grant_types: client_credentials needs a confidential client"
            ),
            "{all}"
        );
        assert!(
            all.contains("client \"typo\": unknown field `redirect_uri`"),
            "{all}"
        );
    }

    #[test]
    fn short_secrets_and_fapi_with_secrets_are_refused() {
        let text = r#"[{"client_id":"f","redirect_uris":["https://a.example/cb"],"profile":"fapi2",
            "token_endpoint_auth_method":"client_secret_post","client_secret":"short"}]"#;
        let all = parse_file(text).unwrap_err().join("\n");
        assert!(all.contains("client_secret: at least 32"), "{all}");
        assert!(
            all.contains("a fapi2 client must use private_key_jwt"),
            "{all}"
        );
    }

    #[test]
    fn redirect_uris_follow_rfc_8252() {
        assert!(check_redirect_uri("https://app.example/cb").is_ok());
        assert!(check_redirect_uri("http://127.0.0.1:9000/cb").is_ok());
        assert!(check_redirect_uri("http://[::1]/cb").is_ok());
        assert!(check_redirect_uri("com.bank.app:/oauth").is_ok());
        assert!(check_redirect_uri("http://app.example/cb").is_err());
        assert!(check_redirect_uri("https://app.example/cb#frag").is_err());
        assert!(check_redirect_uri("javascript:alert(1)").is_err());
        assert!(check_redirect_uri("/relative").is_err());
    }

    #[test]
    fn secrets_are_compared_by_hash() {
        let text = r#"[{"client_id":"web","redirect_uris":["https://a.example/cb"],
            "client_secret":"0123456789abcdef0123456789abcdef"}]"#;
        let (metadata, hash) = parse_file(text).unwrap().remove(0);
        let client = Client::new(metadata, ClientSource::File, hash).unwrap();
        assert!(client.secret_matches("0123456789abcdef0123456789abcdef"));
        assert!(!client.secret_matches("0123456789abcdef0123456789abcdeF"));
    }
}
