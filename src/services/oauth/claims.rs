//! How a session was authenticated, in OpenID terms (docs/API.md §8): `acr` levels and
//! RFC 8176 `amr` values, from what the session row really records.

use serde::{Deserialize, Serialize};

use crate::domain::{FirstFactor, MfaMethod, Millis};
use crate::services::sessions::CurrentSession;
use crate::storage::db::sessions::SessionRow;

/// One factor.
pub const LOA1: &str = "urn:logicredit:loa:1";
/// Two factors, or a user-verified passkey: strong customer authentication.
pub const LOA2: &str = "urn:logicredit:loa:2";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Loa {
    One,
    Two,
}

impl Loa {
    pub fn as_str(self) -> &'static str {
        match self {
            Loa::One => LOA1,
            Loa::Two => LOA2,
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            LOA1 => Some(Loa::One),
            LOA2 => Some(Loa::Two),
            _ => None,
        }
    }
}

/// When and how the user last authenticated in a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authentication {
    /// Milliseconds since the epoch.
    pub auth_time: Millis,
    pub acr: Loa,
    pub amr: Vec<String>,
}

/// A second factor that was really used (an enrollment proves nothing about the user).
fn verified(method: Option<MfaMethod>) -> Option<MfaMethod> {
    method.filter(|m| m.is_verification())
}

/// The level a live session has reached (no database read: the cached session suffices).
pub fn level_of(session: &CurrentSession) -> Loa {
    if verified(session.mfa_method).is_some() {
        Loa::Two
    } else {
        Loa::One
    }
}

/// The last time the user proved something in this session: the login, or a later
/// second factor (step-up).
pub fn auth_time_of(session: &CurrentSession) -> Millis {
    match (verified(session.mfa_method), session.mfa_verified_at) {
        (Some(_), Some(at)) => at.max(session.created_at),
        _ => session.created_at,
    }
}

/// `acr`, `amr` and `auth_time` of a session, from its durable row.
pub fn authentication_of(row: &SessionRow) -> Authentication {
    let mut amr: Vec<&str> = match row.first_factor {
        FirstFactor::Password => vec!["pwd"],
        FirstFactor::Passkey => vec!["hwk", "user"],
    };
    let second = verified(row.mfa_method);
    match second {
        Some(MfaMethod::Totp | MfaMethod::RecoveryCode) => amr.push("otp"),
        Some(MfaMethod::Webauthn) => amr.extend(["hwk", "user"]),
        Some(MfaMethod::Enrollment) | None => {}
    }
    let two = row.first_factor == FirstFactor::Passkey || second.is_some();
    if two {
        amr.push("mfa");
    }
    let mut unique: Vec<String> = Vec::new();
    for value in amr {
        if !unique.iter().any(|v| v == value) {
            unique.push(value.to_owned());
        }
    }
    let auth_time = match (second, row.mfa_verified_at) {
        (Some(_), Some(at)) => at.max(row.created_at),
        _ => row.created_at,
    };
    Authentication {
        auth_time,
        acr: if two { Loa::Two } else { Loa::One },
        amr: unique,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SessionState;

    fn row(first: FirstFactor, method: Option<MfaMethod>) -> SessionRow {
        SessionRow {
            id: uuid::Uuid::nil(),
            token_hash: String::new(),
            user_id: uuid::Uuid::nil(),
            state: SessionState::Active,
            created_at: 1_000,
            last_seen_at: 1_000,
            absolute_expires_at: 10_000,
            mfa_verified_at: method.map(|_| 2_000),
            ip: String::new(),
            user_agent: String::new(),
            mfa_method: method,
            rotate_required: false,
            first_factor: first,
        }
    }

    #[test]
    fn acr_and_amr_follow_how_the_session_was_authenticated() {
        let password = authentication_of(&row(FirstFactor::Password, None));
        assert_eq!(
            (password.acr, password.amr.clone()),
            (Loa::One, vec!["pwd".to_owned()])
        );
        assert_eq!(password.auth_time, 1_000);

        let totp = authentication_of(&row(FirstFactor::Password, Some(MfaMethod::Totp)));
        assert_eq!(totp.acr, Loa::Two);
        assert_eq!(totp.amr, ["pwd", "otp", "mfa"]);
        assert_eq!(totp.auth_time, 2_000);

        let recovery =
            authentication_of(&row(FirstFactor::Password, Some(MfaMethod::RecoveryCode)));
        assert_eq!(recovery.amr, ["pwd", "otp", "mfa"]);

        let key = authentication_of(&row(FirstFactor::Password, Some(MfaMethod::Webauthn)));
        assert_eq!(key.amr, ["pwd", "hwk", "user", "mfa"]);

        let passkey = authentication_of(&row(FirstFactor::Passkey, Some(MfaMethod::Webauthn)));
        assert_eq!(
            (passkey.acr, passkey.amr.clone()),
            (Loa::Two, vec!["hwk".into(), "user".into(), "mfa".into()])
        );

        // Enrolling a factor proves nothing about who is at the keyboard.
        let enrolled = authentication_of(&row(FirstFactor::Password, Some(MfaMethod::Enrollment)));
        assert_eq!(
            (enrolled.acr, enrolled.amr),
            (Loa::One, vec!["pwd".to_owned()])
        );
        assert_eq!(enrolled.auth_time, 1_000);
    }
}
