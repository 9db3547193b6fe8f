//! Delivers the email outbox: a background worker that claims due emails, sends them over
//! SMTP (or writes them to the log when no SMTP server is configured), and retries with
//! backoff. Several instances can run it at once: a lease gives each email to one worker.

use secrecy::ExposeSecret;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::watch;

use crate::configuration::{SmtpSettings, SmtpTls};
use crate::domain::now_millis;
use crate::storage::StorageResult;
use crate::storage::db::Database;
use crate::storage::db::outbox::{self, OutboxRow};

/// Long enough for one SMTP conversation; an instance that dies mid-send releases its
/// emails to the others when the lease runs out.
const LEASE_MS: i64 = 60_000;
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Emails claimed per pass, one at a time: each email's lease starts right before its
/// own send, so a slow SMTP server cannot make a lease run out mid-batch.
const PASS_LIMIT: usize = 100;
const MAX_BACKOFF_MS: i64 = 15 * 60 * 1000;
/// A permanent SMTP refusal (5xx) is retried this many times, in case it was caused by a
/// configuration error that an operator fixes, then the email is marked failed.
const MAX_PERMANENT_FAILURES: i32 = 5;

enum Transport {
    /// Development only: no SMTP server; each email, token included, is written to the
    /// log. Production refuses to start without SMTP (see `configuration`), and `new`
    /// refuses this transport there too, so production logs never carry a token.
    Log,
    Smtp {
        mailer: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
}

pub struct EmailDelivery {
    db: Database,
    transport: Transport,
    poll_interval: Duration,
    retry_base_ms: i64,
}

enum SendError {
    Transient(String),
    Permanent(String),
}

impl EmailDelivery {
    /// `log_allowed`: whether emails may be written to the log when there is no SMTP
    /// server (development only).
    pub fn new(
        db: Database,
        smtp: Option<&SmtpSettings>,
        log_allowed: bool,
        poll_interval: Duration,
        retry_base: Duration,
    ) -> anyhow::Result<Self> {
        let transport = match smtp {
            None if log_allowed => Transport::Log,
            None => anyhow::bail!(
                "SMTP_HOST is required in production: emails are never written to the log there"
            ),
            Some(settings) => Transport::Smtp {
                mailer: build_mailer(settings)?,
                from: settings.from.parse().map_err(|e| {
                    anyhow::anyhow!("SMTP_FROM {:?} is not a mailbox: {e}", settings.from)
                })?,
            },
        };
        Ok(Self {
            db,
            transport,
            poll_interval,
            retry_base_ms: retry_base.as_millis() as i64,
        })
    }

    /// Polls until `shutdown` turns true; an in-flight batch finishes first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            match self.deliver_due().await {
                Ok(0) => {}
                Ok(sent) => tracing::debug!(sent, "outbox batch delivered"),
                Err(error) => tracing::warn!(%error, "outbox poll failed; retrying"),
            }
            if let Ok(pending) = outbox::pending_count(self.db.connection()).await {
                metrics::gauge!("outbox_pending").set(pending as f64);
            }
            tokio::select! {
                _ = tokio::time::sleep(self.poll_interval) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    /// One pass: claims due emails one by one and tries each once. Returns how many were
    /// sent. Delivery is at least once: an instance that dies after the SMTP server took an
    /// email but before recording it leaves the email to be sent again when its lease ends;
    /// both copies carry the same Message-ID (the outbox id), so mail systems can fold them.
    pub async fn deliver_due(&self) -> StorageResult<usize> {
        let conn = self.db.connection();
        let mut sent = 0;
        for _ in 0..PASS_LIMIT {
            let Some(email) = outbox::claim_due(conn, now_millis(), LEASE_MS, 1)
                .await?
                .pop()
            else {
                break;
            };
            let attempts = email.attempts + 1;
            match self.send(&email).await {
                Ok(()) => {
                    outbox::mark_sent(conn, email.id, now_millis()).await?;
                    metrics::counter!("emails_sent_total", "kind" => email.kind.clone())
                        .increment(1);
                    sent += 1;
                }
                Err(SendError::Permanent(error)) if attempts >= MAX_PERMANENT_FAILURES => {
                    tracing::error!(email_id = %email.id, kind = %email.kind, %error, "email refused permanently; giving up");
                    metrics::counter!("email_delivery_failures_total", "kind" => email.kind.clone()).increment(1);
                    outbox::mark_failed(conn, email.id, attempts, &error, None).await?;
                }
                Err(SendError::Permanent(error) | SendError::Transient(error)) => {
                    let retry_at = now_millis() + backoff_ms(self.retry_base_ms, attempts);
                    tracing::warn!(email_id = %email.id, kind = %email.kind, attempts, %error, "email delivery failed; will retry");
                    metrics::counter!("email_delivery_failures_total", "kind" => email.kind.clone()).increment(1);
                    outbox::mark_failed(conn, email.id, attempts, &error, Some(retry_at)).await?;
                }
            }
        }
        Ok(sent)
    }

    async fn send(&self, email: &OutboxRow) -> Result<(), SendError> {
        match &self.transport {
            Transport::Log => {
                tracing::info!(
                    email_id = %email.id,
                    to = %email.recipient,
                    subject = %email.subject,
                    body = %email.body_text,
                    "email (no SMTP configured, written to the log)"
                );
                Ok(())
            }
            Transport::Smtp { mailer, from } => {
                let to: Mailbox = email
                    .recipient
                    .parse()
                    .map_err(|e| SendError::Permanent(format!("bad recipient: {e}")))?;
                let message = Message::builder()
                    .message_id(Some(format!("<{}@logicredit-auth>", email.id)))
                    .from(from.clone())
                    .to(to)
                    .subject(email.subject.clone())
                    .multipart(MultiPart::alternative_plain_html(
                        email.body_text.clone(),
                        email.body_html.clone(),
                    ))
                    .map_err(|e| SendError::Permanent(format!("cannot build message: {e}")))?;
                match tokio::time::timeout(SEND_TIMEOUT, mailer.send(message)).await {
                    Err(_) => Err(SendError::Transient(
                        "SMTP conversation timed out".to_owned(),
                    )),
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
                    Ok(Err(e)) => Err(SendError::Transient(e.to_string())),
                }
            }
        }
    }
}

/// `base`, 2 × `base`, 4 × `base`, … capped at 15 minutes (base 10 s by default).
fn backoff_ms(base_ms: i64, attempts: i32) -> i64 {
    let exponent = attempts.clamp(1, 20) as u32 - 1;
    (base_ms.saturating_mul(1i64 << exponent)).min(MAX_BACKOFF_MS)
}

fn build_mailer(settings: &SmtpSettings) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    let builder = match settings.tls {
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host),
        SmtpTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&settings.host)?,
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&settings.host)?,
    };
    let mut builder = builder
        .port(settings.port)
        .timeout(Some(Duration::from_secs(10)));
    if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
        builder = builder.credentials(Credentials::new(
            user.clone(),
            password.expose_secret().to_owned(),
        ));
    }
    Ok(builder.build())
}

#[cfg(test)]
mod tests {
    use super::backoff_ms;

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        assert_eq!(backoff_ms(10_000, 1), 10_000);
        assert_eq!(backoff_ms(10_000, 2), 20_000);
        assert_eq!(backoff_ms(10_000, 4), 80_000);
        assert_eq!(backoff_ms(10_000, 30), 15 * 60 * 1000);
    }
}
