//! TOTP (RFC 6238: SHA-1, 6 digits, 30 s, ±1 step): setup, verify, disable.

use totp_rs::{Algorithm, Builder, Totp};

use super::{Factor, Mfa, MfaOutcome};
use crate::domain::{MfaMethod, now_millis};
use crate::services::audit::{AuditEvent, CodeFailure, RequestContext};
use crate::services::email::Notice;
use crate::services::error::{ServiceError, ServiceResult};
use crate::services::sessions::{CurrentSession, SessionState};
use crate::storage::db::mfa as factors_db;

const SECRET_BYTES: usize = 20;
/// A setup not confirmed with a first code within this time is void (issue 11, item 2).
const PENDING_SETUP_LIFETIME_MS: i64 = 10 * 60 * 1000;

/// What `POST /auth/mfa/totp/setup` shows the user, once.
pub struct TotpSetup {
    pub secret: String,
    pub otpauth_uri: String,
    pub qr_svg: String,
}

/// The outcome of `POST /auth/mfa/totp/verify`.
// One short-lived value per request: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum TotpVerified {
    /// A pending enrollment was confirmed; recovery codes when this is the first factor.
    Enabled {
        recovery_codes: Vec<String>,
    },
    Factor(MfaOutcome),
}

pub(super) fn context(user_id: uuid::Uuid) -> String {
    format!("totp:{user_id}")
}

impl Mfa {
    pub(super) fn totp(&self, secret: Vec<u8>, account: &str) -> ServiceResult<Totp> {
        Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(6)
            .with_skew(1)
            .with_step_duration(30)
            .with_secret(secret)
            .with_issuer(Some(self.issuer.as_str()))
            .with_account_name(account)
            .build()
            .map_err(|e| anyhow::anyhow!("TOTP parameters: {e}").into())
    }

    #[tracing::instrument(skip_all, fields(user_id = %session.user_id))]
    pub async fn totp_setup(
        &self,
        session: &CurrentSession,
        ctx: &RequestContext,
    ) -> ServiceResult<TotpSetup> {
        let existing = factors_db::totp(self.db.connection(), session.user_id).await?;
        if existing.is_some_and(|row| row.enabled_at.is_some()) {
            return Err(ServiceError::TotpAlreadyEnabled);
        }
        self.throttle_enrollment(session).await?;
        let secret = crate::crypto::random_bytes::<SECRET_BYTES>().to_vec();
        let totp = self.totp(secret.clone(), session.email.as_str())?;
        let otpauth_uri = totp
            .to_url()
            .map_err(|e| anyhow::anyhow!("otpauth URI: {e}"))?;
        let qr_svg = qrcode::QrCode::new(otpauth_uri.as_bytes())
            .map_err(|e| anyhow::anyhow!("QR code: {e}"))?
            .render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .build();
        let mut uow = self.db.begin().await?;
        let sealed = self.secrets.seal(&secret, &context(session.user_id));
        factors_db::put_pending_totp(
            uow.conn(),
            session.user_id,
            session.id,
            &sealed,
            now_millis(),
        )
        .await?;
        uow.audit(ctx.record(AuditEvent::MfaTotpSetupStarted, Some(session.user_id)));
        uow.commit().await?;
        Ok(TotpSetup {
            secret: totp.secret().to_base32(),
            otpauth_uri,
            qr_svg,
        })
    }

    /// Confirms an enrollment, completes a pending login, or refreshes step-up — which
    /// one depends on the TOTP row and the session (see the module docs).
    #[tracing::instrument(skip_all, fields(user_id = %session.user_id))]
    pub async fn totp_verify(
        &self,
        session: &CurrentSession,
        code: &str,
        ctx: &RequestContext,
    ) -> ServiceResult<TotpVerified> {
        let user = self.user(session.user_id).await?;
        let row = factors_db::totp(self.db.connection(), user.id)
            .await?
            .ok_or(ServiceError::MfaMethodNotEnrolled)?;
        let enrolling = row.enabled_at.is_none();
        if enrolling {
            // A pending setup belongs to the session that started it and expires; a
            // pending session cannot enroll at all.
            let own =
                row.pending_session_id == Some(session.id) && session.state == SessionState::Active;
            if !own || now_millis() - row.created_at > PENDING_SETUP_LIFETIME_MS {
                return Err(ServiceError::MfaMethodNotEnrolled);
            }
            // Adding a factor beside another needs fresh MFA at the end as at the start.
            if session.factors.any_second_factor() {
                self.require_fresh(session, false, ctx).await?;
            }
        }
        let attempt = self.reserve(&user).await?;
        let secret = self
            .secrets
            .open(&row.secret_ciphertext, &context(user.id))
            .map_err(anyhow::Error::from)?;
        let totp = self.totp(secret, user.email.as_str())?;
        let now = now_millis();
        let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        let Some(step) = totp.check(&code, (now / 1000) as u64) else {
            self.fail(
                &user,
                Factor::Totp,
                CodeFailure::WrongCode,
                &attempt,
                ctx,
                None,
            )
            .await?;
            return Err(ServiceError::InvalidMfaCode);
        };
        let mut uow = self.db.begin().await?;
        let enable_at = enrolling.then_some(now);
        if !factors_db::consume_totp_step(uow.conn(), user.id, step as i64, enable_at).await? {
            drop(uow);
            self.fail(
                &user,
                Factor::Totp,
                CodeFailure::ReplayedCode,
                &attempt,
                ctx,
                Some(Notice::TotpReplayed),
            )
            .await?;
            return Err(ServiceError::InvalidMfaCode);
        }
        if !enrolling {
            return self
                .succeed(uow, session, user, Factor::Totp, attempt, ctx)
                .await
                .map(TotpVerified::Factor);
        }
        // Recovery codes come with the first second factor. Enrolling the first factor
        // counts as a verification (docs/API.md §7) — but only as `enrollment`, which
        // privileged routes refuse; a further factor leaves the session's freshness as
        // its real verification made it.
        let first_factor = factors_db::webauthn_for_user(uow.conn(), user.id)
            .await?
            .is_empty();
        let recovery_codes = if first_factor {
            self.sessions
                .mark_mfa_verified(&mut uow, session, MfaMethod::Enrollment)
                .await?;
            self.issue_recovery_codes(&mut uow, user.id).await?
        } else {
            Vec::new()
        };
        uow.audit(ctx.record(
            AuditEvent::MfaTotpEnabled {
                recovery_codes_issued: !recovery_codes.is_empty(),
            },
            Some(user.id),
        ));
        uow.email(self.templates.notice(&user.email, Notice::TotpEnabled));
        uow.commit().await?;
        self.sessions.refresh_user(user.id).await?;
        self.abuse.release(attempt).await?;
        Ok(TotpVerified::Enabled { recovery_codes })
    }

    /// Checks an enabled TOTP code of `user_id` for a purpose other than a login or a
    /// step-up (transaction confirmation), with the same rules: ±1 step, each step once
    /// (a replay is refused and its owner told), a wrong code audited
    /// (`mfa.totp.failure`) and counted toward the lockout. `Ok(Err(reason))` on a wrong or
    /// replayed code.
    pub(crate) async fn check_totp(
        &self,
        user_id: uuid::Uuid,
        code: &str,
        ctx: &RequestContext,
    ) -> ServiceResult<Result<(), CodeFailure>> {
        let user = self.user(user_id).await?;
        let row = factors_db::totp(self.db.connection(), user.id)
            .await?
            .filter(|row| row.enabled_at.is_some())
            .ok_or(ServiceError::MfaMethodNotEnrolled)?;
        let attempt = self.reserve(&user).await?;
        let secret = self
            .secrets
            .open(&row.secret_ciphertext, &context(user.id))
            .map_err(anyhow::Error::from)?;
        let totp = self.totp(secret, user.email.as_str())?;
        let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        let Some(step) = totp.check(&code, (now_millis() / 1000) as u64) else {
            let reason = CodeFailure::WrongCode;
            self.fail(&user, Factor::Totp, reason, &attempt, ctx, None)
                .await?;
            return Ok(Err(reason));
        };
        let uow = self.db.begin().await?;
        if !factors_db::consume_totp_step(uow.conn(), user.id, step as i64, None).await? {
            drop(uow);
            let reason = CodeFailure::ReplayedCode;
            self.fail(
                &user,
                Factor::Totp,
                reason,
                &attempt,
                ctx,
                Some(Notice::TotpReplayed),
            )
            .await?;
            return Ok(Err(reason));
        }
        uow.commit().await?;
        self.abuse.release(attempt).await?;
        Ok(Ok(()))
    }

    /// `DELETE /auth/mfa/totp` (fresh MFA).
    #[tracing::instrument(skip_all, fields(user_id = %session.user_id))]
    pub async fn totp_disable(
        &self,
        session: &CurrentSession,
        ctx: &RequestContext,
    ) -> ServiceResult<()> {
        let mut uow = self.db.begin().await?;
        let existed = factors_db::totp(uow.conn(), session.user_id)
            .await?
            .is_some_and(|row| row.enabled_at.is_some());
        if !existed {
            return Err(ServiceError::MfaMethodNotEnrolled);
        }
        factors_db::delete_totp(uow.conn(), session.user_id).await?;
        self.drop_recovery_codes_if_last(&mut uow, session.user_id)
            .await?;
        uow.audit(ctx.record(AuditEvent::MfaTotpDisabled, Some(session.user_id)));
        uow.email(self.templates.notice(&session.email, Notice::TotpDisabled));
        uow.commit().await?;
        self.sessions.refresh_user(session.user_id).await?;
        Ok(())
    }

    /// Re-seals every stored secret under the current key. Each row is replaced only if
    /// unchanged since it was read, so the command can be interrupted and run again.
    #[tracing::instrument(skip_all)]
    pub async fn rotate_keys(&self) -> ServiceResult<(u64, u64)> {
        let conn = self.db.connection();
        let (mut rotated, mut current) = (0, 0);
        for (table, id, ciphertext) in factors_db::all_ciphertexts(conn).await? {
            if !self.secrets.is_stale(&ciphertext) {
                current += 1;
                continue;
            }
            let context = match table {
                "totp" => context(id),
                _ => super::passkeys::context(id),
            };
            let plain = self
                .secrets
                .open(&ciphertext, &context)
                .map_err(anyhow::Error::from)?;
            let sealed = self.secrets.seal(&plain, &context);
            if factors_db::replace_ciphertext(conn, table, id, &ciphertext, &sealed).await? {
                rotated += 1;
            }
        }
        Ok((rotated, current))
    }
}
