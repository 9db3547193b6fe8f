//! The emails the service sends. Each is queued in the outbox inside the transaction of
//! the change that causes it (see `storage::db::UnitOfWork`) and delivered by
//! `services::delivery`.

use crate::domain::{EmailAddress, EnrolledFactor, Millis, millis_to_rfc3339};
pub use crate::storage::db::outbox::NewEmail as OutgoingEmail;

/// Renders emails with links to the front end at `ORIGIN_URL`.
#[derive(Clone)]
pub struct EmailTemplates {
    origin_url: String,
    product: String,
}

impl EmailTemplates {
    pub fn new(origin_url: &str, product: &str) -> Self {
        Self {
            origin_url: origin_url.trim_end_matches('/').to_owned(),
            product: product.to_owned(),
        }
    }

    fn build(
        &self,
        to: &EmailAddress,
        kind: &'static str,
        subject: &str,
        paragraphs: &[String],
        action: Option<(&str, &str, &str)>,
    ) -> OutgoingEmail {
        let mut text = String::new();
        let mut html = String::from("<!doctype html><html><body style=\"font-family:sans-serif\">");
        for paragraph in paragraphs {
            text.push_str(paragraph);
            text.push_str("\n\n");
            html.push_str(&format!("<p>{}</p>", escape_html(paragraph)));
        }
        if let Some((label, url, token)) = action {
            text.push_str(&format!(
                "{label}: {url}\n\nOr enter this code: {token}\n\n"
            ));
            html.push_str(&format!(
                "<p><a href=\"{}\">{}</a></p><p>Or enter this code: <code>{}</code></p>",
                escape_html(url),
                escape_html(label),
                escape_html(token)
            ));
        }
        let footer = format!(
            "If you did not expect this email, you can ignore it, or contact {} support.",
            self.product
        );
        text.push_str(&footer);
        text.push('\n');
        html.push_str(&format!(
            "<p><small>{}</small></p></body></html>",
            escape_html(&footer)
        ));
        OutgoingEmail {
            recipient: to.to_string(),
            kind,
            subject: format!("{}: {subject}", self.product),
            text,
            html,
        }
    }

    pub fn verify_email(&self, to: &EmailAddress, token: &str) -> OutgoingEmail {
        let url = format!("{}/verify-email?token={token}", self.origin_url);
        self.build(
            to,
            "verify_email",
            "verify your email address",
            &["Welcome! Confirm your email address to activate your account. The link is valid for 24 hours.".to_owned()],
            Some(("Verify your email address", &url, token)),
        )
    }

    /// The reset link, and every second factor of the account (type and date, never a
    /// user-chosen name): a factor the owner never enrolled still guards the account after
    /// the reset, so they must see it before relying on the reset.
    pub fn password_reset(
        &self,
        to: &EmailAddress,
        token: &str,
        factors: &[EnrolledFactor],
    ) -> OutgoingEmail {
        let url = format!("{}/reset-password?token={token}", self.origin_url);
        let mut paragraphs = vec!["Someone (hopefully you) asked to reset the password of your account. The link is valid for one hour and works once. If it was not you, ignore this email: your password is unchanged.".to_owned()];
        if !factors.is_empty() {
            let list: Vec<String> = factors
                .iter()
                .map(|factor| match factor {
                    EnrolledFactor::Totp { enabled_at } => format!(
                        "- an authenticator app (TOTP), set up {}",
                        millis_to_rfc3339(*enabled_at)
                    ),
                    EnrolledFactor::Passkey { created_at, .. } => {
                        format!("- a passkey, added {}", millis_to_rfc3339(*created_at))
                    }
                })
                .collect();
            paragraphs.push(format!(
                "After the reset, signing in still asks for one of the second factors on your account:\n{}",
                list.join("\n")
            ));
            paragraphs.push("If you do not recognise one of them, someone else may have added it: contact support before you use this link. After signing in you can remove it under your account's security settings.".to_owned());
        }
        self.build(
            to,
            "password_reset",
            "reset your password",
            &paragraphs,
            Some(("Choose a new password", &url, token)),
        )
    }

    pub fn registration_attempt(&self, to: &EmailAddress) -> OutgoingEmail {
        self.build(
            to,
            "registration_attempt",
            "someone tried to register with your address",
            &[
                "Someone tried to create an account with this email address, which already has one."
                    .to_owned(),
                "If it was you, log in or reset your password instead. If not, no action is needed: your account is unchanged."
                    .to_owned(),
            ],
            None,
        )
    }

    /// A login from a device the account has not used in 90 days (docs/API.md §11): when,
    /// from roughly where (the network prefix, never a guessed city), with what browser,
    /// and what to do if it was not the owner.
    pub fn new_device(
        &self,
        to: &EmailAddress,
        at: Millis,
        device: &crate::services::new_device::Device,
    ) -> OutgoingEmail {
        let account_url = format!("{}/ui/account", self.origin_url);
        self.build(
            to,
            "new_device",
            "sign-in from a new device",
            &[
                format!(
                    "Your account was signed in to from a device it has not used recently:\n- time: {}\n- network: {}\n- browser: {} on {}",
                    millis_to_rfc3339(at),
                    device.network,
                    device.browser,
                    device.os
                ),
                "If this was you, no action is needed.".to_owned(),
                format!(
                    "If this wasn't you: change your password and revoke your other sessions at once at {account_url}, then contact support."
                ),
            ],
            None,
        )
    }

    /// `PRIVILEGED_POLICY=pci`: `account` was disabled after `days` days without a login
    /// (PCI DSS 8.2.6). Sent to every enabled admin and to the owner.
    pub fn disabled_inactive(
        &self,
        to: &EmailAddress,
        account: &EmailAddress,
        days: u64,
        last_login_at: Option<Millis>,
    ) -> OutgoingEmail {
        let last = match last_login_at {
            Some(at) => format!("its last sign-in was at {}", millis_to_rfc3339(at)),
            None => "it has never signed in".to_owned(),
        };
        self.build(
            to,
            "account_disabled_inactive",
            "an inactive privileged account was disabled",
            &[
                format!(
                    "The staff or admin account {account} was disabled because it was not used for {days} days ({last})."
                ),
                "An admin can enable it again in the admin API once its owner still needs it; its sessions were signed out.".to_owned(),
            ],
            None,
        )
    }

    /// A short security notice to the owner of an account.
    pub fn notice(&self, to: &EmailAddress, notice: Notice) -> OutgoingEmail {
        self.build(
            to,
            notice.kind(),
            notice.subject(),
            &[
                notice.body(),
                "If this was not you, reset your password and contact support at once.".to_owned(),
            ],
            None,
        )
    }
}

/// The security notices: something changed on the account (or was tried), and its owner
/// should know in case it was not them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// Repeated failed sign-ins engaged a lock for this long.
    AccountLocked {
        lock_seconds: u64,
    },
    PasswordReset,
    PasswordChanged,
    /// A TOTP code was entered a second time.
    TotpReplayed,
    TotpEnabled,
    TotpDisabled,
    RecoveryCodesRegenerated,
    /// A recovery code was used; this many are left.
    RecoveryCodeUsed {
        left: u64,
    },
    /// A passkey was added at this time. Never its name: whoever holds the session
    /// chooses that.
    PasskeyAdded {
        at: Millis,
    },
    PasskeyRemoved,
}

impl Notice {
    /// The outbox's `kind` of the email.
    pub fn kind(self) -> &'static str {
        match self {
            Notice::AccountLocked { .. } => "account_locked",
            Notice::PasswordReset => "password_reset_done",
            Notice::PasswordChanged => "password_changed",
            Notice::TotpReplayed => "totp_replayed",
            Notice::TotpEnabled => "totp_enabled",
            Notice::TotpDisabled => "totp_disabled",
            Notice::RecoveryCodesRegenerated => "recovery_codes_regenerated",
            Notice::RecoveryCodeUsed { .. } => "recovery_code_used",
            Notice::PasskeyAdded { .. } => "passkey_added",
            Notice::PasskeyRemoved => "passkey_removed",
        }
    }

    fn subject(self) -> &'static str {
        match self {
            Notice::AccountLocked { .. } => "your account was locked",
            Notice::PasswordReset => "your password was reset",
            Notice::PasswordChanged => "your password was changed",
            Notice::TotpReplayed => "a sign-in code was reused",
            Notice::TotpEnabled => "two-step sign-in was turned on",
            Notice::TotpDisabled => "two-step sign-in with an authenticator app was turned off",
            Notice::RecoveryCodesRegenerated => "new recovery codes were created",
            Notice::RecoveryCodeUsed { .. } => "a recovery code was used",
            Notice::PasskeyAdded { .. } => "a passkey was added",
            Notice::PasskeyRemoved => "a passkey was removed",
        }
    }

    fn body(self) -> String {
        match self {
            Notice::AccountLocked { lock_seconds } => format!(
                "After repeated failed sign-in attempts your account is locked for {} minute(s). It unlocks by itself; a correct sign-in afterwards resets the count.",
                lock_seconds.div_ceil(60)
            ),
            Notice::PasswordReset => {
                "The password of your account was reset and every session was signed out."
                    .to_owned()
            }
            Notice::PasswordChanged => {
                "The password of your account was changed; your other sessions were signed out."
                    .to_owned()
            }
            Notice::TotpReplayed => "Someone entered a sign-in code from your authenticator app that had already been used. If this was not you, someone may know your password and have seen a code: change your password.".to_owned(),
            Notice::TotpEnabled => {
                "An authenticator app was set up for two-step sign-in on your account.".to_owned()
            }
            Notice::TotpDisabled => {
                "The authenticator app was removed from two-step sign-in on your account."
                    .to_owned()
            }
            Notice::RecoveryCodesRegenerated => "A new set of recovery codes was created for your account; the old codes no longer work.".to_owned(),
            Notice::RecoveryCodeUsed { left } => format!(
                "A recovery code was used to sign in to your account. {left} code(s) are left."
            ),
            Notice::PasskeyAdded { at } => format!(
                "A passkey was added to your account on {}.",
                millis_to_rfc3339(at)
            ),
            Notice::PasskeyRemoved => "A passkey was removed from your account.".to_owned(),
        }
    }
}

fn escape_html(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_new_device_alert_says_when_where_what_and_what_to_do() {
        let templates = EmailTemplates::new("https://bank.example/", "Logicredit");
        let to = EmailAddress::parse("a@b.example").unwrap();
        let device = crate::services::new_device::Device {
            browser: "Firefox",
            os: "Linux",
            network: "203.0.113.0/24".to_owned(),
        };
        let email = templates.new_device(&to, 0, &device);
        assert_eq!(email.kind, "new_device");
        assert_eq!(email.subject, "Logicredit: sign-in from a new device");
        for part in [
            "1970-01-01T00:00:00",
            "203.0.113.0/24",
            "Firefox on Linux",
            "change your password",
            "revoke your other sessions",
            "https://bank.example/ui/account",
        ] {
            assert!(email.text.contains(part), "{part}: {}", email.text);
        }
    }

    #[test]
    fn verification_email_carries_the_token_bare_and_in_a_link() {
        let templates = EmailTemplates::new("https://bank.example/", "Logicredit");
        let to = EmailAddress::parse("a@b.example").unwrap();
        let email = templates.verify_email(&to, "AbC123");
        assert!(
            email
                .text
                .contains("https://bank.example/verify-email?token=AbC123")
        );
        assert!(email.text.contains("code: AbC123"));
        assert!(email.html.contains("<code>AbC123</code>"));
        assert_eq!(email.recipient, "a@b.example");
    }

    #[test]
    fn notices_keep_their_kinds_subjects_and_texts() {
        let templates = EmailTemplates::new("https://bank.example", "Logicredit");
        let cases = [
            (
                Notice::AccountLocked { lock_seconds: 61 },
                "account_locked",
                "your account was locked",
                "is locked for 2 minute(s).",
            ),
            (
                Notice::PasswordReset,
                "password_reset_done",
                "your password was reset",
                "every session was signed out.",
            ),
            (
                Notice::PasswordChanged,
                "password_changed",
                "your password was changed",
                "your other sessions were signed out.",
            ),
            (
                Notice::TotpReplayed,
                "totp_replayed",
                "a sign-in code was reused",
                "had already been used.",
            ),
            (
                Notice::TotpEnabled,
                "totp_enabled",
                "two-step sign-in was turned on",
                "An authenticator app was set up",
            ),
            (
                Notice::TotpDisabled,
                "totp_disabled",
                "two-step sign-in with an authenticator app was turned off",
                "The authenticator app was removed",
            ),
            (
                Notice::RecoveryCodesRegenerated,
                "recovery_codes_regenerated",
                "new recovery codes were created",
                "the old codes no longer work.",
            ),
            (
                Notice::RecoveryCodeUsed { left: 9 },
                "recovery_code_used",
                "a recovery code was used",
                "9 code(s) are left.",
            ),
            (
                Notice::PasskeyAdded { at: 0 },
                "passkey_added",
                "a passkey was added",
                "added to your account on 1970-01-01T00:00:00",
            ),
            (
                Notice::PasskeyRemoved,
                "passkey_removed",
                "a passkey was removed",
                "A passkey was removed from your account.",
            ),
        ];
        for (notice, kind, subject, text) in cases {
            let to = EmailAddress::parse("a@b.example").unwrap();
            let email = templates.notice(&to, notice);
            assert_eq!(email.kind, kind);
            assert_eq!(email.subject, format!("Logicredit: {subject}"));
            assert!(email.text.contains(text), "{kind}: {}", email.text);
            assert!(
                email
                    .text
                    .contains("If this was not you, reset your password")
            );
        }
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html("<a href=\"x\">&"),
            "&lt;a href=&quot;x&quot;&gt;&amp;"
        );
    }
}
