//! Small value types shared by every layer: emails, roles, timestamps.
//!
//! The enums and the email are also the types of their database columns (sea-orm derives):
//! a row is decoded into them once, in storage, and a value that does not decode is a
//! storage error (500, logged) — never a silent default or a panic further up.

use std::str::FromStr;

use sea_orm::sea_query::StringLen;
use sea_orm::{DeriveActiveEnum, DeriveValueType, EnumIter};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

/// The longest address SMTP can carry (RFC 5321 path limit less the angle brackets).
pub const MAX_EMAIL_LEN: usize = 254;

/// A normalised (trimmed, lower-case) email address that passed a syntax check. The
/// `users.email` column holds one, checked again when a row is read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, DeriveValueType)]
#[serde(try_from = "String", into = "String")]
#[sea_orm(value_type = "String", from_str = "EmailAddress::from_str")]
pub struct EmailAddress(String);

#[derive(Debug, thiserror::Error)]
#[error("not a valid email address")]
pub struct InvalidEmail;

impl FromStr for EmailAddress {
    type Err = InvalidEmail;

    fn from_str(raw: &str) -> Result<Self, InvalidEmail> {
        Self::parse(raw).ok_or(InvalidEmail)
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = InvalidEmail;

    fn try_from(raw: String) -> Result<Self, InvalidEmail> {
        raw.parse()
    }
}

impl From<EmailAddress> for String {
    fn from(email: EmailAddress) -> Self {
        email.0
    }
}

impl EmailAddress {
    /// Accepts what mail systems accept in practice; rejects what would break headers or
    /// look-ups (spaces, control characters, missing domain dot, over-long parts).
    pub fn parse(raw: &str) -> Option<Self> {
        let email = raw.trim().to_lowercase();
        let (local, domain) = email.rsplit_once('@')?;
        let valid_local = !local.is_empty()
            && local.len() <= 64
            && !local.contains('@')
            && !local.starts_with('.')
            && !local.ends_with('.');
        let valid_domain = domain.len() <= 253
            && domain.contains('.')
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            });
        let safe_chars = email
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && !"<>()[]\\,;:\"".contains(c));
        (valid_local && valid_domain && safe_chars && email.len() <= MAX_EMAIL_LEN)
            .then_some(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn local_part(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(local, _)| local)
    }
}

impl std::fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Roles are ordered: `user` < `staff` < `admin`; a higher role can do all a lower one can.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    EnumIter,
    DeriveActiveEnum,
)]
#[serde(rename_all = "snake_case")]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum Role {
    #[sea_orm(string_value = "user")]
    User,
    #[sea_orm(string_value = "staff")]
    Staff,
    #[sea_orm(string_value = "admin")]
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Staff => "staff",
            Role::Admin => "admin",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "user" => Some(Role::User),
            "staff" => Some(Role::Staff),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// How a session's login began (`sessions.first_factor`): what the OpenID Provider reports
/// as `amr` and `acr` (docs/API.md §8). A passwordless passkey login is two factors in one
/// (possession + user verification); a password login is one until a second factor follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, EnumIter, DeriveActiveEnum)]
#[serde(rename_all = "snake_case")]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum FirstFactor {
    #[sea_orm(string_value = "password")]
    Password,
    #[sea_orm(string_value = "passkey")]
    Passkey,
}

/// How a session's second factor was last proven (`sessions.mfa_method`). Enrollment
/// counts for a user's own sensitive actions (docs/API.md §7) but never for privileged routes:
/// a stolen session that enrolls a first factor must not become an admin's step-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, EnumIter, DeriveActiveEnum)]
#[serde(rename_all = "snake_case")]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum MfaMethod {
    #[sea_orm(string_value = "totp")]
    Totp,
    #[sea_orm(string_value = "webauthn")]
    Webauthn,
    #[sea_orm(string_value = "recovery_code")]
    RecoveryCode,
    #[sea_orm(string_value = "enrollment")]
    Enrollment,
}

impl MfaMethod {
    /// A factor was actually used (not just set up).
    pub fn is_verification(self) -> bool {
        self != MfaMethod::Enrollment
    }
}

/// Where a session is in the login (`sessions.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, EnumIter, DeriveActiveEnum)]
#[serde(rename_all = "snake_case")]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum SessionState {
    /// Password verified, second factor outstanding: only the MFA routes accept it.
    #[sea_orm(string_value = "mfa_pending")]
    MfaPending,
    #[sea_orm(string_value = "active")]
    Active,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::MfaPending => "mfa_pending",
            SessionState::Active => "active",
        }
    }
}

/// What a user has enrolled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Factors {
    pub totp: bool,
    pub webauthn_credentials: u64,
    pub recovery_codes_left: u64,
}

impl Factors {
    pub fn any_second_factor(&self) -> bool {
        self.totp || self.webauthn_credentials > 0
    }
}

/// One enrolled second factor, as a password reset lists it to the owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrolledFactor {
    Totp {
        enabled_at: Millis,
    },
    Passkey {
        id: Uuid,
        name: String,
        created_at: Millis,
    },
}

impl EnrolledFactor {
    pub fn enrolled_at(&self) -> Millis {
        match self {
            EnrolledFactor::Totp { enabled_at } => *enabled_at,
            EnrolledFactor::Passkey { created_at, .. } => *created_at,
        }
    }
}

/// One page of a list, and the cursor of the page after it (None on the last page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

impl<T> Page<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next: self.next,
        }
    }
}

/// Milliseconds since the Unix epoch, UTC. The database stores instants as these integers
/// so that SQLite and PostgreSQL order and compare them identically.
pub type Millis = i64;

pub fn now_millis() -> Millis {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as Millis
}

pub fn millis_to_rfc3339(millis: Millis) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

pub fn parse_rfc3339_millis(value: &str) -> Option<Millis> {
    OffsetDateTime::parse(value, &Rfc3339)
        .ok()
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as Millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        let email = EmailAddress::parse("  Alice.Smith@Bank.Example ").unwrap();
        assert_eq!(email.as_str(), "alice.smith@bank.example");
        assert_eq!(email.local_part(), "alice.smith");
    }

    #[test]
    fn malformed_emails_are_rejected() {
        for bad in [
            "",
            "alice",
            "alice@",
            "@bank.example",
            "alice@bank",
            "al ice@bank.example",
            "alice@bank..example",
            "alice@-bank.example",
            "a<b>@bank.example",
            "alice@bank.example\r\nBcc: x@y.z",
        ] {
            assert!(EmailAddress::parse(bad).is_none(), "{bad:?} accepted");
        }
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::User < Role::Staff && Role::Staff < Role::Admin);
        assert_eq!(Role::parse("staff"), Some(Role::Staff));
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn timestamps_round_trip_through_rfc3339() {
        let now = now_millis();
        assert_eq!(parse_rfc3339_millis(&millis_to_rfc3339(now)), Some(now));
    }
}
