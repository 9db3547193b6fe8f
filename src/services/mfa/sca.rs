//! The one-time code of a PSD2 SCA login (`AUTH_POLICY=psd2`, docs/API.md §11): a TOTP
//! code or a recovery code sent beside the password in `POST /auth/login`.
//!
//! The code is redeemed inside the login's own unit of work, so it is only spent when that
//! transaction commits — that is, when the password was right too. And every login costs
//! the same here, whatever the account: the same queries (against a nil id when the
//! account does not exist or has no TOTP) and the same TOTP computation (against a decoy
//! secret), so neither the answer nor its timing tells which factor failed.

use uuid::Uuid;

use super::{Factor, Mfa, normalize_recovery_code, recovery_code_hash, totp};
use crate::domain::now_millis;
use crate::services::audit::CodeFailure;
use crate::services::error::ServiceResult;
use crate::storage::db::UnitOfWork;
use crate::storage::db::mfa as factors_db;
use crate::storage::db::users::UserRow;

impl Mfa {
    /// Redeems `code` for `user` in `uow` (rolled back unless the whole login succeeds).
    /// `Ok(Err(_))`: wrong, replayed or missing — the caller answers it like a wrong
    /// password.
    pub(crate) async fn redeem_login_code(
        &self,
        uow: &mut UnitOfWork,
        user: Option<&UserRow>,
        code: Option<&str>,
    ) -> ServiceResult<Result<Factor, CodeFailure>> {
        let user_id = user.map_or(Uuid::nil(), |u| u.id);
        let code: String = code
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        // The code's shape (chosen by the caller, so it reveals nothing) picks the factor.
        if normalize_recovery_code(&code).is_some() {
            let redeemed = factors_db::redeem_recovery_code(
                uow.conn(),
                user_id,
                &recovery_code_hash(&code),
                now_millis(),
            )
            .await?;
            return Ok(if redeemed {
                Ok(Factor::RecoveryCode)
            } else {
                Err(CodeFailure::WrongRecoveryCode)
            });
        }
        let row = factors_db::totp(uow.conn(), user_id)
            .await?
            .filter(|row| row.enabled_at.is_some());
        let secret = match &row {
            Some(row) => self
                .secrets
                .open(&row.secret_ciphertext, &totp::context(user_id))
                .map_err(anyhow::Error::from)?,
            None => self.decoy_totp_secret(user_id),
        };
        let step = self
            .totp(secret, "sca")?
            .check(&code, (now_millis() / 1000) as u64)
            .filter(|_| row.is_some());
        // The compare-and-set runs either way (for the nil id when the code is wrong).
        let target = if step.is_some() { user_id } else { Uuid::nil() };
        let fresh =
            factors_db::consume_totp_step(uow.conn(), target, step.unwrap_or(0) as i64, None)
                .await?;
        Ok(match (step, fresh) {
            (Some(_), true) => Ok(Factor::Totp),
            (Some(_), false) => Err(CodeFailure::ReplayedCode),
            (None, _) => Err(CodeFailure::WrongCode),
        })
    }

    /// A TOTP secret for accounts without one: checked against like a real one, never
    /// matching anything a caller could know.
    fn decoy_totp_secret(&self, user_id: Uuid) -> Vec<u8> {
        let mac = crate::crypto::hmac_sha256(&self.decoy_key, user_id.as_bytes());
        mac[..20].to_vec()
    }
}
