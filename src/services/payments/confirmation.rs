//! The confirmation of a transaction (docs/API.md §9): a compact JWS signed with the
//! provider's keys (the JWKS of §8), so a payment backend verifies it offline. It names
//! exactly what was approved (`details` and their `tx_hash`), by whom (`sub`), how (`amr`,
//! `linking`) and for whom (`aud`); it lives at most five minutes and its `jti` is for the
//! backend to accept once. docs/TRANSACTIONS.md lists the checks a backend makes.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The JWS `typ` header: never confusable with an ID or access token.
pub const CONFIRMATION_TYP: &str = "txn-confirmation+jwt";

/// How the confirmation is bound to the details (the `linking` claim).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Linking {
    /// The WebAuthn challenge commits to `tx_hash`: the authenticator signed the
    /// transaction itself.
    Webauthn,
    /// A TOTP code the server verified for this transaction (the code itself does not
    /// depend on the details, so the binding is the server's).
    Server,
}

impl Linking {
    pub fn as_str(self) -> &'static str {
        match self {
            Linking::Webauthn => "webauthn",
            Linking::Server => "server",
        }
    }

    /// RFC 8176 methods of the factor that confirmed: a user-verified passkey, or a
    /// one-time code.
    pub fn amr(self) -> Vec<String> {
        match self {
            Linking::Webauthn => vec!["hwk".to_owned(), "user".to_owned()],
            Linking::Server => vec!["otp".to_owned()],
        }
    }
}

/// The claims of a confirmation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfirmationClaims {
    /// The issuer (`ISSUER_URL`).
    pub iss: String,
    /// The user id.
    pub sub: String,
    /// `TRANSACTION_AUDIENCE`: the payment backend.
    pub aud: String,
    pub iat: u64,
    /// At most `TRANSACTION_TTL_SECONDS` (≤ 300) after `iat`.
    pub exp: u64,
    /// Unique per confirmation: the backend accepts each once.
    pub jti: String,
    /// The transaction id.
    pub txn: String,
    /// base64url(SHA-256(RFC 8785 canonical JSON of `details`)).
    pub tx_hash: String,
    /// The normalized payment details (an object, or an array for a batch).
    pub details: Value,
    pub amr: Vec<String>,
    pub linking: Linking,
}
