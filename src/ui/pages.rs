//! The page templates (minijinja): built in, each replaceable by a file of the same name
//! in `UI_THEME_DIR`. Every page is rendered once in every language at start, so a broken
//! theme stops the start instead of failing a customer's request.

use std::path::{Path, PathBuf};

use minijinja::{Environment, State, Value, context, value::Kwargs};

use super::i18n::Lang;
use crate::configuration::Settings;
use crate::domain::Role;
use crate::services::policy::Policy;

/// A hosted page: its template, and the id the script and the title key use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Login,
    Register,
    VerifyEmail,
    ForgotPassword,
    ResetPassword,
    Mfa,
    Account,
    /// The consent step of an OAuth authorization request (docs/API.md §8).
    Consent,
    /// The confirmation of a §9 transaction (a payment): its details, then the factor.
    Confirm,
}

impl Page {
    pub const ALL: [Page; 9] = [
        Page::Login,
        Page::Register,
        Page::VerifyEmail,
        Page::ForgotPassword,
        Page::ResetPassword,
        Page::Mfa,
        Page::Account,
        Page::Consent,
        Page::Confirm,
    ];

    /// `data-page` of the body (the script's switch) and the `page-…` title message.
    pub fn id(self) -> &'static str {
        match self {
            Page::Login => "login",
            Page::Register => "register",
            Page::VerifyEmail => "verify",
            Page::ForgotPassword => "forgot",
            Page::ResetPassword => "reset",
            Page::Mfa => "mfa",
            Page::Account => "account",
            Page::Consent => "consent",
            Page::Confirm => "confirm",
        }
    }

    fn template(self) -> &'static str {
        match self {
            Page::Login => "login.html",
            Page::Register => "register.html",
            Page::VerifyEmail => "verify.html",
            Page::ForgotPassword => "forgot.html",
            Page::ResetPassword => "reset.html",
            Page::Mfa => "mfa.html",
            Page::Account => "account.html",
            Page::Consent => "consent.html",
            Page::Confirm => "confirm.html",
        }
    }
}

/// The built-in templates, by the name a theme file replaces.
const BUILT_IN: &[(&str, &str)] = &[
    (
        "base.html",
        include_str!("../../assets/ui/templates/base.html"),
    ),
    (
        "_field.html",
        include_str!("../../assets/ui/templates/_field.html"),
    ),
    (
        "_step_up.html",
        include_str!("../../assets/ui/templates/_step_up.html"),
    ),
    (
        "_transaction.html",
        include_str!("../../assets/ui/templates/_transaction.html"),
    ),
    (
        "login.html",
        include_str!("../../assets/ui/templates/login.html"),
    ),
    (
        "register.html",
        include_str!("../../assets/ui/templates/register.html"),
    ),
    (
        "verify.html",
        include_str!("../../assets/ui/templates/verify.html"),
    ),
    (
        "forgot.html",
        include_str!("../../assets/ui/templates/forgot.html"),
    ),
    (
        "reset.html",
        include_str!("../../assets/ui/templates/reset.html"),
    ),
    (
        "mfa.html",
        include_str!("../../assets/ui/templates/mfa.html"),
    ),
    (
        "account.html",
        include_str!("../../assets/ui/templates/account.html"),
    ),
    (
        "consent.html",
        include_str!("../../assets/ui/templates/consent.html"),
    ),
    (
        "confirm.html",
        include_str!("../../assets/ui/templates/confirm.html"),
    ),
];

pub const BUILT_IN_CSS: &str = include_str!("../../assets/ui/ui.css");

/// The rendered pages' source: templates, stylesheet and what the pages show of the settings.
pub struct Pages {
    env: Environment<'static>,
    /// The texts the page script shows, per language (`Lang::ALL` order): built once,
    /// not on every page view.
    script_texts: Vec<std::collections::HashMap<&'static str, String>>,
    css: String,
    product: String,
    password_min_length: usize,
    /// `AUTH_POLICY=psd2`: the login form has the one-time code field (docs/API.md §11).
    sca_login: bool,
    /// The roles that must enroll a second factor before anything else, space-separated
    /// (`data-factor-required` on the body): the account page opens in its set-up state
    /// for them instead of calling routes that would answer `403 mfa_enrollment_required`.
    factor_required_roles: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ThemeError {
    #[error("UI_THEME_DIR {dir}: {source}")]
    Read {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("UI_THEME_DIR: the page {page} does not render: {source:#}")]
    Template {
        page: &'static str,
        source: minijinja::Error,
    },
}

impl Pages {
    pub fn load(settings: &Settings) -> Result<Self, ThemeError> {
        let theme = settings.ui.theme_dir.as_deref();
        let mut env = Environment::new();
        for (name, built_in) in BUILT_IN {
            let source = match theme {
                Some(dir) => read_optional(dir, name)?.unwrap_or_else(|| (*built_in).to_owned()),
                None => (*built_in).to_owned(),
            };
            env.add_template_owned(*name, source)
                .map_err(|source| ThemeError::Template { page: name, source })?;
        }
        env.add_function("t", translate);
        let css = match theme {
            Some(dir) => read_optional(dir, "ui.css")?.unwrap_or_else(|| BUILT_IN_CSS.to_owned()),
            None => BUILT_IN_CSS.to_owned(),
        };
        let policy = Policy::new(settings);
        let pages = Self {
            env,
            script_texts: Lang::ALL.iter().map(|lang| lang.script_texts()).collect(),
            css,
            product: settings.rp_name.clone(),
            password_min_length: settings.password.min_length,
            sca_login: policy.sca_login(),
            factor_required_roles: [Role::User, Role::Staff, Role::Admin]
                .into_iter()
                .filter(|role| policy.second_factor_required(*role))
                .map(Role::as_str)
                .collect::<Vec<_>>()
                .join(" "),
        };
        for page in Page::ALL {
            for lang in Lang::ALL {
                pages
                    .try_render(page, lang, "")
                    .map_err(|source| ThemeError::Template {
                        page: page.template(),
                        source,
                    })?;
            }
        }
        Ok(pages)
    }

    pub fn css(&self) -> &str {
        &self.css
    }

    /// The page in `lang`; `token` is the one of an emailed link (verify, reset).
    pub fn render(&self, page: Page, lang: Lang, token: &str) -> Result<String, minijinja::Error> {
        self.try_render(page, lang, token)
    }

    fn try_render(&self, page: Page, lang: Lang, token: &str) -> Result<String, minijinja::Error> {
        self.env.get_template(page.template())?.render(context! {
            page => page.id(),
            lang => lang.tag(),
            product => self.product.clone(),
            password_min_length => self.password_min_length,
            token => token,
            sca_login => self.sca_login,
            factor_required_roles => self.factor_required_roles.clone(),
            script_text => self.script_texts.get(lang.index()),
        })
    }
}

/// A theme file, or None when the theme does not replace it.
fn read_optional(dir: &Path, name: &str) -> Result<Option<String>, ThemeError> {
    match std::fs::read_to_string(dir.join(name)) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // The folder itself must exist: a typo in UI_THEME_DIR is not "no theme".
            if dir.is_dir() {
                Ok(None)
            } else {
                Err(ThemeError::Read {
                    dir: dir.to_owned(),
                    source: e,
                })
            }
        }
        Err(source) => Err(ThemeError::Read {
            dir: dir.to_owned(),
            source,
        }),
    }
}

/// `t("message-id", name=value, …)` in templates: the message in the page's language.
fn translate(state: &State, id: &str, args: Kwargs) -> Result<String, minijinja::Error> {
    let lang = match state.lookup("lang").as_ref().and_then(Value::as_str) {
        Some("de") => Lang::De,
        _ => Lang::En,
    };
    let mut values = Vec::new();
    for name in args.args() {
        let value: Value = args.get(name)?;
        values.push((name, value.to_string()));
    }
    Ok(lang.text(id, &values))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Settings {
        let mut map: std::collections::HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        map.insert("TOTP_ENCRYPTION_KEY".into(), "k".repeat(32));
        map.insert(
            "DATA_DIR".into(),
            std::env::temp_dir().display().to_string(),
        );
        Settings::from_vars(&map).unwrap()
    }

    /// A fresh folder for a theme (under the system's temp folder).
    fn scratch_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lcauth-theme-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn every_page_renders_in_every_language_with_no_inline_script() {
        let pages = Pages::load(&settings(&[])).unwrap();
        for page in Page::ALL {
            for lang in Lang::ALL {
                let html = pages.render(page, lang, "tok<en>").unwrap();
                assert!(html.contains(&format!("<html lang=\"{}\">", lang.tag())));
                assert!(html.contains(&format!("data-page=\"{}\"", page.id())));
                // The only <script> elements: the module file, and the texts as JSON data.
                let scripts = html.matches("<script").count();
                assert_eq!(scripts, 2, "{page:?}: {html}");
                assert!(html.contains("<script type=\"module\" src=\"/ui/pages.js\"></script>"));
                assert!(
                    !html.contains(" on") || !html.contains("onclick="),
                    "no inline handlers"
                );
                assert!(!html.contains("tok<en>"), "the token is escaped");
            }
        }
    }

    #[test]
    fn the_login_form_asks_for_the_code_only_under_psd2() {
        let standard = Pages::load(&settings(&[])).unwrap();
        let psd2 = Pages::load(&settings(&[("AUTH_POLICY", "psd2")])).unwrap();
        let pci = Pages::load(&settings(&[("PRIVILEGED_POLICY", "pci")])).unwrap();
        for lang in Lang::ALL {
            let login = standard.render(Page::Login, lang, "").unwrap();
            assert!(!login.contains("id=\"code\""), "{login}");
            assert!(!login.contains("data-factor-required"), "{login}");
            let login = psd2.render(Page::Login, lang, "").unwrap();
            assert!(login.contains("id=\"code\""), "{login}");
            assert!(login.contains("autocomplete=\"one-time-code\""), "{login}");
            // The macro's `extra` attributes arrive as attributes, not as escaped text.
            assert!(login.contains(" inputmode=\"text\" "), "{login}");
            let account = psd2.render(Page::Account, lang, "").unwrap();
            assert!(
                account.contains("data-factor-required=\"user staff admin\""),
                "{account}"
            );
            let login = pci.render(Page::Login, lang, "").unwrap();
            assert!(!login.contains("id=\"code\""), "{login}");
            assert!(login.contains("data-factor-required=\"staff admin\""));
        }
    }

    #[test]
    fn a_theme_replaces_templates_and_css_file_by_file() {
        let dir = scratch_dir();
        std::fs::write(dir.join("ui.css"), "body { color: teal }").unwrap();
        std::fs::write(
            dir.join("base.html"),
            "<html lang=\"{{ lang }}\"><body data-page=\"{{ page }}\">Themed {% block content %}{% endblock %}</body></html>",
        )
        .unwrap();
        let theme = dir.display().to_string();
        let pages = Pages::load(&settings(&[("UI_THEME_DIR", &theme)])).unwrap();
        assert_eq!(pages.css(), "body { color: teal }");
        let html = pages.render(Page::Login, Lang::En, "").unwrap();
        assert!(html.starts_with("<html lang=\"en\"><body data-page=\"login\">Themed"));
        assert!(
            html.contains("id=\"login-form\""),
            "login.html is still the built-in one"
        );
    }

    #[test]
    fn a_broken_or_missing_theme_stops_the_start() {
        let dir = scratch_dir();
        std::fs::write(dir.join("login.html"), "{% block content %}").unwrap();
        let theme = dir.display().to_string();
        let error = Pages::load(&settings(&[("UI_THEME_DIR", &theme)]))
            .err()
            .unwrap();
        assert!(error.to_string().contains("login.html"), "{error}");

        let missing = dir.join("nope").display().to_string();
        let error = Pages::load(&settings(&[("UI_THEME_DIR", &missing)]))
            .err()
            .unwrap();
        assert!(error.to_string().contains("UI_THEME_DIR"), "{error}");
    }
}
