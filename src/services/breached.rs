//! The compromised-password check (docs/API.md §11; NIST SP 800-63B: "passwords obtained
//! from previous breach corpuses"), by k-anonymity: the SHA-1 of the password is split
//! into a 5-hex-character prefix and a 35-character suffix; only the prefix leaves the
//! service (`GET {PWNED_PASSWORDS_URL}/range/{PREFIX}`, or the file
//! `{PWNED_PASSWORDS_DIR}/{PREFIX}.txt`), and the suffix is looked up in the `SUFFIX:COUNT`
//! lines that come back.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha1::{Digest, Sha1};
use tokio::io::AsyncReadExt;

use crate::configuration::{PwnedOnError, PwnedPasswordsSettings, PwnedSource};

/// A slow range API must not hold a registration for long: past this it is "down".
const TIMEOUT: Duration = Duration::from_secs(2);
/// A range is ~800 lines (~32 KiB; padded, ~1,000 lines): anything near 1 MiB is not one.
const MAX_RANGE_BYTES: usize = 1024 * 1024;
const PREFIX_LEN: usize = 5;

/// The outcome a use case acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screening {
    /// Not in the corpus — or the check is off, or failed under `allow`.
    Passed,
    /// In the corpus at least once.
    Breached,
    /// The source could not answer and `PWNED_PASSWORDS_ON_ERROR=deny`.
    Unavailable,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct LookupError(String);

enum Source {
    Off,
    Api {
        base: String,
        http: Option<reqwest::Client>,
    },
    Directory(PathBuf),
}

pub struct BreachedPasswords {
    source: Source,
    on_error: PwnedOnError,
}

impl BreachedPasswords {
    pub fn new(settings: &PwnedPasswordsSettings) -> Self {
        let source = match &settings.source {
            None => Source::Off,
            Some(PwnedSource::Directory(dir)) => Source::Directory(dir.clone()),
            Some(PwnedSource::Api(base)) => {
                // reqwest is built without a TLS provider of its own: ring (lib.rs).
                crate::install_crypto_provider();
                let http = reqwest::Client::builder()
                    .timeout(TIMEOUT)
                    .connect_timeout(TIMEOUT)
                    .redirect(reqwest::redirect::Policy::none())
                    // The HIBP API refuses requests without a user agent.
                    .user_agent("logicredit-auth (pwned passwords)")
                    .build()
                    .map_err(|e| {
                        tracing::error!(error = %e, "the pwned passwords HTTP client could not be built")
                    })
                    .ok();
                Source::Api {
                    base: base.clone(),
                    http,
                }
            }
        };
        Self {
            source,
            on_error: settings.on_error,
        }
    }

    /// Looks the (normalised) password up. Failures are logged and counted; what they
    /// mean is `PWNED_PASSWORDS_ON_ERROR`'s call.
    pub async fn screen(&self, password: &str) -> Screening {
        if matches!(self.source, Source::Off) {
            return Screening::Passed;
        }
        let (prefix, suffix) = range_key(password);
        let found = match &self.source {
            Source::Off => return Screening::Passed,
            Source::Api { base, http } => fetch_range(base, http.as_ref(), &prefix).await,
            Source::Directory(dir) => read_range(dir, &prefix).await,
        }
        .map(|range| range_contains(&range, &suffix));
        let outcome = match &found {
            Ok(true) => "hit",
            Ok(false) => "miss",
            Err(_) => "error",
        };
        metrics::counter!("pwned_password_checks_total", "outcome" => outcome).increment(1);
        match found {
            Ok(true) => Screening::Breached,
            Ok(false) => Screening::Passed,
            Err(error) => {
                let denied = self.on_error == PwnedOnError::Deny;
                tracing::warn!(
                    %error,
                    on_error = if denied { "deny" } else { "allow" },
                    "the compromised-password check could not answer"
                );
                if denied {
                    Screening::Unavailable
                } else {
                    Screening::Passed
                }
            }
        }
    }
}

/// The upper-case hex SHA-1 of the password, split into the 5 characters that may leave
/// the service and the 35 that never do.
fn range_key(password: &str) -> (String, String) {
    let digest = hex::encode_upper(Sha1::digest(password.as_bytes()));
    let (prefix, suffix) = digest.split_at(PREFIX_LEN);
    (prefix.to_owned(), suffix.to_owned())
}

/// Whether `suffix` appears in a range with a count of at least one. Lines are
/// `SUFFIX:COUNT` (CRLF or LF, any case); padding lines (`:0`) and malformed lines are
/// not hits.
fn range_contains(range: &str, suffix: &str) -> bool {
    range.lines().any(|line| {
        line.trim().split_once(':').is_some_and(|(hash, count)| {
            hash.trim().eq_ignore_ascii_case(suffix)
                && count.trim().parse::<u64>().is_ok_and(|count| count > 0)
        })
    })
}

async fn fetch_range(
    base: &str,
    http: Option<&reqwest::Client>,
    prefix: &str,
) -> Result<String, LookupError> {
    let http = http.ok_or_else(|| LookupError("no HTTP client".to_owned()))?;
    // Errors are logged: they name neither the URL nor the file, whose prefix would tie
    // 20 bits of a user's password hash to a request in the logs.
    let failed = |e: reqwest::Error| LookupError(format!("range API: {}", e.without_url()));
    // Padding makes every answer about the same size, so an observer of the (encrypted)
    // response cannot tell the range by its length.
    let mut response = http
        .get(format!("{base}/range/{prefix}"))
        .header("Add-Padding", "true")
        .send()
        .await
        .map_err(failed)?;
    if !response.status().is_success() {
        return Err(LookupError(format!(
            "range API answered {}",
            response.status()
        )));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(failed)? {
        if body.len() + chunk.len() > MAX_RANGE_BYTES {
            return Err(LookupError("range API answer larger than 1 MiB".to_owned()));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| LookupError("range API answer is not text".to_owned()))
}

/// A full download has a file for every one of the 16^5 prefixes, so a missing file is
/// an incomplete copy — an error, not a miss.
async fn read_range(dir: &Path, prefix: &str) -> Result<String, LookupError> {
    let path = dir.join(format!("{prefix}.txt"));
    let failed = |e: std::io::Error| LookupError(format!("range file in {}: {e}", dir.display()));
    let file = tokio::fs::File::open(&path).await.map_err(failed)?;
    let mut body = Vec::new();
    file.take(MAX_RANGE_BYTES as u64 + 1)
        .read_to_end(&mut body)
        .await
        .map_err(failed)?;
    if body.len() > MAX_RANGE_BYTES {
        return Err(LookupError(format!(
            "range file in {}: larger than 1 MiB",
            dir.display()
        )));
    }
    String::from_utf8(body)
        .map_err(|_| LookupError(format!("range file in {}: not text", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_five_upper_case_hex_characters_form_the_prefix() {
        // SHA-1("password") = 5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8
        let (prefix, suffix) = range_key("password");
        assert_eq!(prefix, "5BAA6");
        assert_eq!(suffix, "1E4C9B93F3F0682250B6CF8331B7EE68FD8");
    }

    #[test]
    fn ranges_are_read_line_by_line_in_any_case_and_line_ending() {
        let suffix = "1E4C9B93F3F0682250B6CF8331B7EE68FD8";
        let crlf = "003D68EB55068C33ACE09247EE4C639306B:3\r\n1E4C9B93F3F0682250B6CF8331B7EE68FD8:10434004\r\n";
        assert!(range_contains(crlf, suffix));
        let lower = "1e4c9b93f3f0682250b6cf8331b7ee68fd8:2";
        assert!(range_contains(lower, suffix));
        let last_line_without_newline = "AAAA:1\n1E4C9B93F3F0682250B6CF8331B7EE68FD8:1";
        assert!(range_contains(last_line_without_newline, suffix));
    }

    #[test]
    fn padding_and_malformed_lines_are_not_hits() {
        let suffix = "1E4C9B93F3F0682250B6CF8331B7EE68FD8";
        assert!(!range_contains(
            "1E4C9B93F3F0682250B6CF8331B7EE68FD8:0\r\n",
            suffix
        ));
        assert!(!range_contains(
            "1E4C9B93F3F0682250B6CF8331B7EE68FD8",
            suffix
        ));
        assert!(!range_contains(
            "1E4C9B93F3F0682250B6CF8331B7EE68FD8:many",
            suffix
        ));
        assert!(!range_contains(
            "1E4C9B93F3F0682250B6CF8331B7EE68FD:5",
            suffix
        ));
        assert!(!range_contains("", suffix));
    }

    #[tokio::test]
    async fn an_offline_copy_answers_like_the_api_and_a_missing_range_is_an_error() {
        let dir = std::env::temp_dir().join(format!("pwned-unit-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("5BAA6.txt"),
            "1E4C9B93F3F0682250B6CF8331B7EE68FD8:10434004\r\n",
        )
        .unwrap();
        let settings = |on_error| PwnedPasswordsSettings {
            source: Some(PwnedSource::Directory(dir.clone())),
            on_error,
        };
        let allow = BreachedPasswords::new(&settings(PwnedOnError::Allow));
        let deny = BreachedPasswords::new(&settings(PwnedOnError::Deny));
        assert_eq!(allow.screen("password").await, Screening::Breached);
        // No file for this prefix: an incomplete copy.
        assert_eq!(
            allow.screen("correct horse battery staple").await,
            Screening::Passed
        );
        assert_eq!(
            deny.screen("correct horse battery staple").await,
            Screening::Unavailable
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
