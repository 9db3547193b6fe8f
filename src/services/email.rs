//! The emails the service sends. Each is queued in the outbox inside the transaction of
//! the change that causes it (see `storage::db::UnitOfWork`) and delivered by
//! `services::delivery`.

use crate::domain::EnrolledFactor;
use crate::domain::{EmailAddress, millis_to_rfc3339};
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

    /// A short security notice ("your password was changed", "a passkey was added", …).
    pub fn notice(
        &self,
        to: &EmailAddress,
        kind: &'static str,
        subject: &str,
        body: &str,
    ) -> OutgoingEmail {
        self.build(
            to,
            kind,
            subject,
            &[
                body.to_owned(),
                "If this was not you, reset your password and contact support at once.".to_owned(),
            ],
            None,
        )
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
    fn html_is_escaped() {
        assert_eq!(
            escape_html("<a href=\"x\">&"),
            "&lt;a href=&quot;x&quot;&gt;&amp;"
        );
    }
}
