//! The pages' languages: one Fluent catalogue per language (`assets/ui/locales/<lang>/ui.ftl`),
//! embedded in the binary, chosen per request from `Accept-Language`. English is the
//! default and the fallback; a test keeps every catalogue complete.

use std::borrow::Cow;
use std::collections::HashMap;

use fluent_templates::fluent_bundle::FluentValue;
use fluent_templates::{LanguageIdentifier, Loader, langid};

fluent_templates::static_loader! {
    static LOCALES = {
        locales: "./assets/ui/locales",
        fallback_language: "en-US",
        // Without this every placeable is wrapped in U+2068/U+2069 isolation marks, which
        // screen readers and copy-paste both trip over.
        customise: |bundle| bundle.set_use_isolating(false),
    };
}

/// The languages the pages are translated into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    De,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::De];

    /// Position in `Lang::ALL`.
    pub fn index(self) -> usize {
        match self {
            Lang::En => 0,
            Lang::De => 1,
        }
    }

    /// The `lang` attribute of the page.
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::De => "de",
        }
    }

    fn id(self) -> LanguageIdentifier {
        match self {
            Lang::En => langid!("en-US"),
            Lang::De => langid!("de"),
        }
    }

    /// The first language of `Accept-Language` (in the browser's order) that the pages
    /// have; English when none is.
    pub fn negotiate(accept_language: Option<&str>) -> Lang {
        let requested = fluent_langneg::parse_accepted_languages(accept_language.unwrap_or(""));
        requested
            .iter()
            .find_map(|wanted| match wanted.language.as_str() {
                "de" => Some(Lang::De),
                "en" => Some(Lang::En),
                _ => None,
            })
            .unwrap_or(Lang::En)
    }

    /// The message `id` with `args` filled in; the English text when this catalogue lacks
    /// it (a test makes sure none does), the id itself when no catalogue has it.
    pub fn text(self, id: &str, args: &[(&str, String)]) -> String {
        let args: HashMap<Cow<'static, str>, FluentValue> = args
            .iter()
            .map(|(name, value)| {
                (
                    Cow::Owned((*name).to_owned()),
                    FluentValue::from(value.clone()),
                )
            })
            .collect();
        LOCALES
            .try_lookup_complete(&self.id(), id, (!args.is_empty()).then_some(&args))
            .unwrap_or_else(|| id.to_owned())
    }

    /// The texts the page script shows, with their placeables left as `{name}` for the
    /// script to fill.
    pub fn script_texts(self) -> HashMap<&'static str, String> {
        SCRIPT_TEXTS
            .iter()
            .map(|(id, placeables)| {
                let args: Vec<(&str, String)> = placeables
                    .iter()
                    .map(|p| (*p, format!("{{{p}}}")))
                    .collect();
                (*id, self.text(id, &args))
            })
            .collect()
    }
}

/// The messages `pages.js` needs at run time (errors by API code, confirmations, labels of
/// the rows it builds), with the placeables each takes.
const SCRIPT_TEXTS: &[(&str, &[&str])] = &[
    ("totp-on", &[]),
    ("totp-off", &[]),
    ("recovery-left", &["count"]),
    ("passkeys-none", &[]),
    ("passkey-unnamed", &[]),
    ("passkey-details", &["created", "used"]),
    ("passkey-never-used", &[]),
    ("session-current", &[]),
    ("session-details", &["created", "seen", "ip"]),
    ("session-unknown-ip", &[]),
    ("role-user", &[]),
    ("role-staff", &[]),
    ("role-admin", &[]),
    ("status-working", &[]),
    ("done-signed-in", &[]),
    ("done-verification-sent", &[]),
    ("done-email-verified", &[]),
    ("done-reset-sent", &[]),
    ("done-password-reset", &[]),
    ("done-password-changed", &[]),
    ("done-totp-enabled", &[]),
    ("done-totp-disabled", &[]),
    ("done-passkey-added", &[]),
    ("done-passkey-renamed", &[]),
    ("done-passkey-deleted", &[]),
    ("done-session-revoked", &[]),
    ("done-sessions-revoked", &["count"]),
    ("done-codes-regenerated", &[]),
    ("registered-check-email", &[]),
    ("missing-token", &[]),
    ("field-required", &[]),
    ("field-email", &[]),
    ("field-totp", &[]),
    ("step-up-intro", &[]),
    ("step-up-password", &[]),
    ("label-passkey-name", &[]),
    ("action-rename", &[]),
    ("action-save", &[]),
    ("action-delete", &[]),
    ("action-revoke", &[]),
    ("error-invalid_credentials", &[]),
    // AUTH_POLICY=psd2: one answer for every failure, naming no field (docs/API.md §11).
    ("error-invalid_credentials_sca", &[]),
    ("done-setup-complete", &[]),
    ("error-email_not_verified", &[]),
    ("error-account_disabled", &[]),
    ("error-account_locked", &["seconds"]),
    ("error-rate_limited", &["seconds"]),
    ("error-validation_error", &[]),
    ("error-weak_password", &[]),
    ("error-invalid_token", &[]),
    ("error-invalid_mfa_code", &[]),
    ("error-mfa_method_not_enrolled", &[]),
    ("error-mfa_step_up_required", &[]),
    ("error-mfa_required", &[]),
    ("error-mfa_enrollment_required", &[]),
    ("error-reauthentication_required", &[]),
    ("error-not_authenticated", &[]),
    ("error-csrf_failed", &[]),
    ("error-totp_already_enabled", &[]),
    ("error-invalid_ceremony", &[]),
    ("error-webauthn_failed", &[]),
    ("error-webauthn_cancelled", &[]),
    ("error-webauthn_unavailable", &[]),
    ("error-not_found", &[]),
    ("error-forbidden", &[]),
    ("error-network_error", &[]),
    ("error-service_unavailable", &[]),
    ("error-unknown", &[]),
    ("reason-too_short", &[]),
    ("reason-too_long", &[]),
    ("reason-banned", &[]),
    ("reason-too_guessable", &[]),
    ("reason-contains_email", &[]),
    ("reason-breached", &[]),
    // The login and consent step of an OAuth authorization request (docs/API.md §8).
    ("oauth-continue-to", &["client"]),
    ("consent-intro", &["client"]),
    ("scope-openid", &[]),
    ("scope-email", &[]),
    ("scope-other", &["scope"]),
    ("payment-title", &["amount", "creditor"]),
    ("payment-amount", &[]),
    ("payment-creditor", &[]),
    ("payment-iban", &[]),
    ("payment-remittance", &[]),
    ("detail-other", &["type"]),
    ("step-up-oauth", &[]),
    ("done-returning", &[]),
    ("error-invalid_request_id", &[]),
    ("error-transaction_confirmation_required", &[]),
    // The confirmation of a payment (docs/API.md §9): its page and the consent step.
    ("transaction-intro", &[]),
    ("transaction-batch-intro", &["count"]),
    ("transaction-consent-intro", &[]),
    ("transaction-no-factor", &[]),
    ("done-transaction-confirmed", &[]),
    ("missing-transaction", &[]),
    ("error-invalid_transaction", &[]),
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn message_ids(catalogue: &str) -> BTreeSet<String> {
        catalogue
            .lines()
            .filter(|line| line.starts_with(|c: char| c.is_ascii_lowercase()))
            .filter_map(|line| line.split_once(" =").map(|(id, _)| id.trim().to_owned()))
            .collect()
    }

    #[test]
    fn every_language_translates_every_message() {
        let english = message_ids(include_str!("../../assets/ui/locales/en-US/ui.ftl"));
        let german = message_ids(include_str!("../../assets/ui/locales/de/ui.ftl"));
        assert!(english.len() > 100, "{} messages", english.len());
        assert_eq!(
            english.difference(&german).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "missing in de/ui.ftl"
        );
        assert_eq!(
            german.difference(&english).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "only in de/ui.ftl"
        );
        for (id, _) in SCRIPT_TEXTS {
            assert!(
                english.contains(*id),
                "the script needs {id}, which no catalogue has"
            );
        }
    }

    #[test]
    fn accept_language_picks_the_first_language_we_have() {
        assert_eq!(Lang::negotiate(None), Lang::En);
        assert_eq!(Lang::negotiate(Some("de-DE,de;q=0.9,en;q=0.8")), Lang::De);
        assert_eq!(Lang::negotiate(Some("fr-FR, de-AT;q=0.5")), Lang::De);
        assert_eq!(Lang::negotiate(Some("en-GB,de;q=0.7")), Lang::En);
        assert_eq!(Lang::negotiate(Some("fr, it")), Lang::En);
        assert_eq!(Lang::negotiate(Some(";;,,q=1,\u{0}")), Lang::En);
    }

    #[test]
    fn placeables_are_filled_without_isolation_marks() {
        let text = Lang::De.text("recovery-left", &[("count", "7".to_owned())]);
        assert_eq!(text, "Verbleibende Wiederherstellungscodes: 7");
        let script = Lang::En.script_texts();
        assert_eq!(
            script["error-rate_limited"],
            "Too many requests. Try again in {seconds} seconds."
        );
    }
}
