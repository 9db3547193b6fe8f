//! WebAuthn passkeys: registration for a logged-in user, and authentication as a
//! passwordless login (discoverable or by email), as the second factor of a pending
//! session, or as step-up. Ceremony state lives in the ephemeral store under a random id,
//! single-use, for five minutes, bound to the session that started it (if any), so a
//! ceremony may start on one instance and finish on another.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;
use webauthn_rs::prelude::{
    AttestedPasskeyRegistration, AuthenticationResult, Credential, DiscoverableAuthentication,
    Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Webauthn, WebauthnBuilder, WebauthnError,
};

use super::attestation::PasskeyRefusal;
use super::{Attempt, Factor, Mfa, MfaOutcome};
use crate::configuration::{AttestationMode, Settings};
use crate::domain::{EmailAddress, MfaMethod, Millis, Role, millis_to_rfc3339, now_millis};
use crate::services::audit::{
    AuditEvent, FactorStep, LoginFailure, LoginMethod, PasskeyFailure, RequestContext,
};
use crate::services::email::Notice;
use crate::services::error::{ServiceError, ServiceResult};
use crate::services::sessions::{CurrentSession, SessionState};
use crate::storage::db::mfa::{self as factors_db, WebauthnRow};
use crate::storage::db::users;

const CEREMONY_TTL: Duration = Duration::from_secs(300);
pub const MAX_NAME_CHARS: usize = 64;
/// Ceremony ids are 43 characters; anything empty or over this is refused unread.
pub const MAX_CEREMONY_ID_LEN: usize = 128;
/// Length of the decoy credential id answered for an email without passkeys.
const DECOY_ID_BYTES: usize = 32;

pub fn build_webauthn(settings: &Settings) -> anyhow::Result<Webauthn> {
    let origin =
        Url::parse(&settings.origin_url).map_err(|e| anyhow::anyhow!("ORIGIN_URL: {e}"))?;
    let mut builder = WebauthnBuilder::new(&settings.rp_id, &origin)
        .map_err(|e| {
            anyhow::anyhow!(
                "FIDO_RP_ID {:?} must be ORIGIN_URL's host or a parent of it: {e}",
                settings.rp_id
            )
        })?
        .rp_name(&settings.rp_name)
        .timeout(CEREMONY_TTL);
    // Front ends on their own origins run ceremonies too.
    let extra: Vec<Url> = settings
        .frontend_origins
        .iter()
        .filter_map(|o| Url::parse(o).ok())
        .collect();
    for url in &extra {
        builder = builder.append_allowed_origin(url);
    }
    builder
        .build()
        .map_err(|e| anyhow::anyhow!("WebAuthn configuration: {e}"))
}

/// The associated data of a stored passkey's ciphertext.
pub(super) fn context(credential_row_id: Uuid) -> String {
    format!("webauthn:{credential_row_id}")
}

#[derive(Serialize, Deserialize)]
enum CeremonyState {
    Registration(PasskeyRegistration),
    /// A registration that must carry an attestation chaining to a trusted root
    /// (`WEBAUTHN_ATTESTATION=indirect|enterprise`).
    AttestedRegistration(AttestedPasskeyRegistration),
    Authentication(PasskeyAuthentication),
    Discoverable(DiscoverableAuthentication),
}

#[derive(Serialize, Deserialize)]
struct Ceremony {
    /// The public id of the session that started it; `None` for passwordless logins.
    session_id: Option<Uuid>,
    /// The user it is for, when known at the start.
    user_id: Option<Uuid>,
    state: CeremonyState,
}

/// A started ceremony: its id and the options for `navigator.credentials.*`.
pub struct CeremonyStart {
    pub ceremony_id: String,
    pub options: Value,
}

/// A registered passkey as `GET /auth/webauthn/credentials` lists it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PasskeyView {
    pub id: Uuid,
    pub name: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
}

impl From<&WebauthnRow> for PasskeyView {
    fn from(row: &WebauthnRow) -> Self {
        Self {
            id: row.id,
            name: row.name.clone(),
            created_at: millis_to_rfc3339(row.created_at),
            last_used_at: row.last_used_at.map(millis_to_rfc3339),
        }
    }
}

/// The session is part of the key: another session (or none) presenting the id finds
/// nothing, so it cannot consume — and so cancel — somebody else's ceremony.
fn ceremony_key(id: &str, session_id: Option<Uuid>) -> String {
    let owner = session_id.map_or_else(|| "none".to_owned(), |id| id.to_string());
    format!("ceremony:{}:{owner}", crate::crypto::token_hash(id))
}

/// A passkey's display name: trimmed, control characters (CR, LF, …) removed, at most
/// 64 characters; "Passkey" when nothing is left.
fn clean_name(name: Option<&str>) -> String {
    let cleaned: String = name
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    let trimmed: String = cleaned.trim().chars().take(MAX_NAME_CHARS).collect();
    if trimmed.trim().is_empty() {
        "Passkey".to_owned()
    } else {
        trimmed.trim().to_owned()
    }
}

/// The browser's credential JSON must describe itself consistently: `type` is
/// `public-key` and `id` is `rawId` in base64url (WebAuthn §5.1).
fn well_formed(type_: &str, id: &str, raw_id: &[u8]) -> bool {
    type_ == "public-key" && id == URL_SAFE_NO_PAD.encode(raw_id)
}

/// Why a registration was refused: the ceremony did not verify, or the policy refused
/// the passkey (the client is told which rule).
enum Refused {
    Verification(PasskeyFailure),
    Policy(PasskeyRefusal),
}

impl Refused {
    fn audit_reason(&self) -> PasskeyFailure {
        match self {
            Refused::Verification(reason) => *reason,
            Refused::Policy(refusal) => (*refusal).into(),
        }
    }

    fn error(&self, during_registration: bool) -> ServiceError {
        match self {
            Refused::Verification(_) => ServiceError::WebauthnFailed {
                during_registration,
            },
            Refused::Policy(reason) => ServiceError::PasskeyRefused {
                reason: *reason,
                during_registration,
            },
        }
    }
}

/// Whether the authenticator said the credential may be synced or backed up (the BE
/// flag of its authenticator data, kept by webauthn-rs in the credential).
fn backup_eligible(passkey: &Passkey) -> bool {
    Credential::from(passkey.clone()).backup_eligible
}

/// Why an assertion failed, for the audit record (never shown to the client).
fn failure_reason(error: &WebauthnError) -> PasskeyFailure {
    match error {
        WebauthnError::CredentialPossibleCompromise => PasskeyFailure::CounterRegression,
        WebauthnError::InvalidRPOrigin => PasskeyFailure::WrongOrigin,
        WebauthnError::InvalidRPIDHash => PasskeyFailure::WrongRpId,
        WebauthnError::MismatchedChallenge => PasskeyFailure::WrongChallenge,
        WebauthnError::UserNotVerified => PasskeyFailure::UserNotVerified,
        WebauthnError::CredentialNotFound => PasskeyFailure::UnknownCredential,
        _ => PasskeyFailure::VerificationFailed,
    }
}

impl Mfa {
    async fn save_ceremony(&self, ceremony: &Ceremony) -> ServiceResult<String> {
        let id = crate::crypto::random_token();
        let value = serde_json::to_string(ceremony).map_err(anyhow::Error::from)?;
        self.store
            .set(
                &ceremony_key(&id, ceremony.session_id),
                &value,
                CEREMONY_TTL,
            )
            .await?;
        Ok(id)
    }

    /// Takes (and so ends) a ceremony; unknown, used, expired or started by another
    /// session are all `invalid_ceremony`.
    async fn take_ceremony(
        &self,
        id: &str,
        session: Option<&CurrentSession>,
    ) -> ServiceResult<Ceremony> {
        if id.is_empty() || id.len() > MAX_CEREMONY_ID_LEN {
            return Err(ServiceError::InvalidCeremony);
        }
        let raw = self
            .store
            .take(&ceremony_key(id, session.map(|s| s.id)))
            .await?
            .ok_or(ServiceError::InvalidCeremony)?;
        let ceremony: Ceremony =
            serde_json::from_str(&raw).map_err(|_| ServiceError::InvalidCeremony)?;
        if ceremony.session_id != session.map(|s| s.id) {
            return Err(ServiceError::InvalidCeremony);
        }
        Ok(ceremony)
    }

    fn open_passkey(&self, row: &WebauthnRow) -> ServiceResult<Passkey> {
        let plain = self
            .secrets
            .open(&row.passkey_ciphertext, &context(row.id))
            .map_err(anyhow::Error::from)?;
        Ok(serde_json::from_slice(&plain).map_err(anyhow::Error::from)?)
    }

    fn seal_passkey(&self, row_id: Uuid, passkey: &Passkey) -> ServiceResult<String> {
        let plain = serde_json::to_vec(passkey).map_err(anyhow::Error::from)?;
        Ok(self.secrets.seal(&plain, &context(row_id)))
    }

    async fn passkeys_of(&self, user_id: Uuid) -> ServiceResult<Vec<(WebauthnRow, Passkey)>> {
        let rows = factors_db::webauthn_for_user(self.db.connection(), user_id).await?;
        rows.into_iter()
            .map(|row| {
                let passkey = self.open_passkey(&row)?;
                Ok((row, passkey))
            })
            .collect()
    }

    #[tracing::instrument(skip_all, fields(user_id = %user_id))]
    pub async fn list_passkeys(&self, user_id: Uuid) -> ServiceResult<Vec<PasskeyView>> {
        let rows = factors_db::webauthn_for_user(self.db.connection(), user_id).await?;
        Ok(rows.iter().map(PasskeyView::from).collect())
    }

    /// Options for a new passkey: resident key preferred, user verification required, the
    /// user's existing credentials excluded.
    #[tracing::instrument(skip_all, fields(user_id = %session.user_id))]
    pub async fn passkey_registration_start(
        &self,
        session: &CurrentSession,
    ) -> ServiceResult<CeremonyStart> {
        self.throttle_enrollment(session).await?;
        let existing = self.passkeys_of(session.user_id).await?;
        let exclude = existing
            .iter()
            .map(|(_, pk)| pk.cred_id().clone())
            .collect();
        let (mut options, state) = match self.policy.mode() {
            AttestationMode::None => {
                let (options, state) = self
                    .webauthn
                    .start_passkey_registration(
                        session.user_id,
                        session.email.as_str(),
                        session.email.as_str(),
                        Some(exclude),
                    )
                    .map_err(|e| anyhow::anyhow!("start registration: {e}"))?;
                let options = serde_json::to_value(&options).map_err(anyhow::Error::from)?;
                (options, CeremonyState::Registration(state))
            }
            mode => {
                // The trusted roots travel in the ceremony state: finishing on another
                // instance checks against the list this one started with.
                let (options, state) = self
                    .webauthn
                    .start_attested_passkey_registration(
                        session.user_id,
                        session.email.as_str(),
                        session.email.as_str(),
                        Some(exclude),
                        self.policy.trusted().clone(),
                        None,
                    )
                    .map_err(|e| anyhow::anyhow!("start attested registration: {e}"))?;
                let mut options = serde_json::to_value(&options).map_err(anyhow::Error::from)?;
                // webauthn-rs asks for "direct"; the mode names the conveyance asked for
                // (`enterprise` lets managed devices identify themselves).
                options["publicKey"]["attestation"] = json!(mode.conveyance());
                (options, CeremonyState::AttestedRegistration(state))
            }
        };
        // webauthn-rs asks for "discouraged"; discoverable logins need the key resident.
        options["publicKey"]["authenticatorSelection"]["residentKey"] = json!("preferred");
        let ceremony_id = self
            .save_ceremony(&Ceremony {
                session_id: Some(session.id),
                user_id: Some(session.user_id),
                state,
            })
            .await?;
        Ok(CeremonyStart {
            ceremony_id,
            options,
        })
    }

    /// Verifies the attestation and stores the passkey (encrypted). Registering is itself
    /// a verification (step-up fresh); the first second factor brings recovery codes.
    #[tracing::instrument(skip_all, fields(user_id = %session.user_id))]
    pub async fn passkey_registration_finish(
        &self,
        session: &CurrentSession,
        ceremony_id: &str,
        credential: &RegisterPublicKeyCredential,
        name: Option<&str>,
        ctx: &RequestContext,
    ) -> ServiceResult<(PasskeyView, Vec<String>)> {
        // Adding a factor beside another needs fresh MFA at the end as at the start: a
        // ceremony begun while fresh does not carry the freshness past its expiry.
        if session.factors.any_second_factor() {
            self.require_fresh(session, false, ctx).await?;
        }
        if !well_formed(&credential.type_, &credential.id, &credential.raw_id) {
            return Err(ServiceError::WebauthnFailed {
                during_registration: true,
            });
        }
        let ceremony = self.take_ceremony(ceremony_id, Some(session)).await?;
        let passkey = match self.finish_registration(session.role, ceremony.state, credential)? {
            Ok(passkey) => passkey,
            Err(refused) => {
                let event = AuditEvent::MfaWebauthnFailure {
                    reason: refused.audit_reason(),
                    during_registration: true,
                };
                self.db
                    .audit_only(ctx.record(event, Some(session.user_id)))
                    .await?;
                return Err(refused.error(true));
            }
        };
        let now = now_millis();
        let name = clean_name(name);
        let id = Uuid::now_v7();
        let row = WebauthnRow {
            id,
            user_id: session.user_id,
            credential_id: URL_SAFE_NO_PAD.encode(passkey.cred_id()),
            name,
            passkey_ciphertext: self.seal_passkey(id, &passkey)?,
            sign_count: 0,
            created_at: now,
            last_used_at: None,
        };
        let mut uow = self.db.begin().await?;
        let first_factor = !factors_db::factors(uow.conn(), session.user_id)
            .await?
            .any_second_factor();
        if let Err(error) = factors_db::insert_webauthn(uow.conn(), row.clone()).await {
            // The same authenticator credential cannot belong to two accounts.
            return Err(match error {
                crate::storage::StorageError::Conflict(_) => ServiceError::WebauthnFailed {
                    during_registration: true,
                },
                other => other.into(),
            });
        }
        // As for TOTP: the first factor counts as `enrollment` (never for privileged
        // routes); a further one leaves the session's real verification as it was.
        let recovery_codes = if first_factor {
            self.sessions
                .mark_mfa_verified(&mut uow, session, MfaMethod::Enrollment)
                .await?;
            self.issue_recovery_codes(&mut uow, session.user_id).await?
        } else {
            Vec::new()
        };
        uow.audit(ctx.record(
            AuditEvent::MfaWebauthnRegistered {
                credential: row.id,
                name: row.name.clone(),
                recovery_codes_issued: first_factor,
            },
            Some(session.user_id),
        ));
        uow.email(
            self.templates
                .notice(&session.email, Notice::PasskeyAdded { at: now }),
        );
        uow.commit().await?;
        self.sessions.refresh_user(session.user_id).await?;
        Ok((PasskeyView::from(&row), recovery_codes))
    }

    /// Verifies a registration ceremony and applies the passkey policy (docs/API.md §11).
    fn finish_registration(
        &self,
        role: Role,
        state: CeremonyState,
        credential: &RegisterPublicKeyCredential,
    ) -> ServiceResult<Result<Passkey, Refused>> {
        let passkey = match state {
            // Started before a restart that turned attestation on: it asked for none.
            CeremonyState::Registration(_) if self.policy.mode() != AttestationMode::None => {
                return Err(ServiceError::InvalidCeremony);
            }
            CeremonyState::Registration(state) => {
                match self
                    .webauthn
                    .finish_passkey_registration(credential, &state)
                {
                    Ok(passkey) => passkey,
                    Err(error) => return Ok(Err(Refused::Verification(failure_reason(&error)))),
                }
            }
            CeremonyState::AttestedRegistration(state) => {
                let attested = match self
                    .webauthn
                    .finish_attested_passkey_registration(credential, &state)
                {
                    Ok(attested) => attested,
                    Err(error) => {
                        tracing::info!(%error, "attested passkey registration refused");
                        return Ok(Err(match PasskeyRefusal::from_webauthn(&error) {
                            Some(refusal) => Refused::Policy(refusal),
                            None => Refused::Verification(failure_reason(&error)),
                        }));
                    }
                };
                if let Err(refusal) = self.policy.check_model(attested.attestation()) {
                    return Ok(Err(Refused::Policy(refusal)));
                }
                Passkey::from(attested)
            }
            CeremonyState::Authentication(_) | CeremonyState::Discoverable(_) => {
                return Err(ServiceError::InvalidCeremony);
            }
        };
        if self.policy.requires_device_bound(role) && backup_eligible(&passkey) {
            return Ok(Err(Refused::Policy(
                PasskeyRefusal::SyncedPasskeyNotAllowed,
            )));
        }
        Ok(Ok(passkey))
    }

    /// Whether `user_id`'s role may only use device-bound passkeys (asked only for a
    /// backup-eligible assertion, and only when some role is listed).
    async fn device_bound_required(&self, user_id: Uuid) -> Result<bool, PasskeyFailure> {
        if !self.policy.any_device_bound_role() {
            return Ok(false);
        }
        let user = users::find_by_id(self.db.connection(), user_id)
            .await
            .map_err(|_| PasskeyFailure::StorageError)?;
        Ok(user.is_some_and(|user| self.policy.requires_device_bound(user.role)))
    }

    /// `POST /auth/webauthn/login/start`. With a session: the session user's passkeys
    /// (second factor or step-up). Without: passwordless — the email's passkeys, or a
    /// discoverable ceremony when no email is given or it has none (so the answer does not
    /// tell whether an account exists).
    #[tracing::instrument(skip_all)]
    pub async fn passkey_login_start(
        &self,
        session: Option<&CurrentSession>,
        email: Option<&EmailAddress>,
    ) -> ServiceResult<CeremonyStart> {
        let user_id = match (session, email) {
            (Some(session), _) => Some(session.user_id),
            (None, Some(email)) => users::find_by_email(self.db.connection(), email)
                .await?
                .map(|u| u.id),
            (None, None) => None,
        };
        let passkeys = match user_id {
            Some(id) => self.passkeys_of(id).await?,
            None => Vec::new(),
        };
        if session.is_some() && passkeys.is_empty() {
            return Err(ServiceError::MfaMethodNotEnrolled);
        }
        let (options, ceremony) = if passkeys.is_empty() {
            let (mut options, state) = self
                .webauthn
                .start_discoverable_authentication()
                .map_err(|e| anyhow::anyhow!("start discoverable authentication: {e}"))?;
            // A "sign in with a passkey" button, not form autofill.
            options.mediation = None;
            let ceremony = Ceremony {
                session_id: None,
                user_id: None,
                state: CeremonyState::Discoverable(state),
            };
            let mut options = serde_json::to_value(&options).map_err(anyhow::Error::from)?;
            if let Some(email) = email {
                // An email without passkeys — unknown, or an account without any — gets
                // the answer an account with one passkey gets: a credential id, derived
                // from the email so that asking twice gives the same one.
                options["publicKey"]["allowCredentials"] = json!([{
                    "type": "public-key",
                    "id": URL_SAFE_NO_PAD.encode(self.decoy_credential_id(email)),
                }]);
                // A discoverable request carries extensions a credential-list request
                // does not: drop them so both shapes match (a test compares them, so a
                // library change cannot reopen the difference).
                if let Some(public_key) = options["publicKey"].as_object_mut() {
                    public_key.remove("extensions");
                }
            }
            (options, ceremony)
        } else {
            let keys: Vec<Passkey> = passkeys.into_iter().map(|(_, pk)| pk).collect();
            let (options, state) = self
                .webauthn
                .start_passkey_authentication(&keys)
                .map_err(|e| anyhow::anyhow!("start authentication: {e}"))?;
            let ceremony = Ceremony {
                session_id: session.map(|s| s.id),
                user_id,
                state: CeremonyState::Authentication(state),
            };
            (
                serde_json::to_value(&options).map_err(anyhow::Error::from)?,
                ceremony,
            )
        };
        let ceremony_id = self.save_ceremony(&ceremony).await?;
        Ok(CeremonyStart {
            ceremony_id,
            options,
        })
    }

    /// `POST /auth/webauthn/login/finish`: verifies the assertion (signature, challenge,
    /// origin, RP ID, user verification, counter) and then logs in, completes the pending
    /// login, or refreshes step-up.
    ///
    /// Every assertion is an attempt against one account's lockout — the session's user,
    /// or for a passwordless login the account the ceremony or the credential names —
    /// reserved before anything is verified: a lock that engaged after the ceremony
    /// started holds at its finish (`429 account_locked`, nothing evaluated), and a
    /// refused assertion counts like a wrong password (GHSA-xrw9-r35x-x878).
    #[tracing::instrument(skip_all)]
    pub async fn passkey_login_finish(
        &self,
        session: Option<&CurrentSession>,
        ceremony_id: &str,
        credential: &PublicKeyCredential,
        ctx: &RequestContext,
    ) -> ServiceResult<MfaOutcome> {
        if !well_formed(&credential.type_, &credential.id, &credential.raw_id) {
            return Err(ServiceError::WebauthnFailed {
                during_registration: false,
            });
        }
        let ceremony = self.take_ceremony(ceremony_id, session).await?;
        let account = match session {
            Some(session) => Some(self.user(session.user_id).await?),
            None => self.passwordless_account(&ceremony, credential).await?,
        };
        let reserved = match account {
            Some(user) => {
                let attempt = self.reserve(&user).await?;
                Some((user, attempt))
            }
            None => None,
        };
        let account = reserved.as_ref().map(|(user, _)| user);
        let attempt = reserved.as_ref().map(|(_, attempt)| attempt);
        let verified = match self.verify_assertion(ceremony, credential).await {
            Ok((row, result)) if account.is_none_or(|u| u.id == row.user_id) => Ok((row, result)),
            Ok((row, _)) => Err((Some(row.user_id), PasskeyFailure::CredentialOfAnotherUser)),
            Err(refused) => Err(refused),
        };
        let (row, result) = match verified {
            Ok(found) => found,
            Err((user_id, reason)) => {
                let user_id = user_id.or(account.map(|u| u.id));
                self.record_assertion_failure(account, attempt, user_id, reason, ctx)
                    .await?;
                // Told only after the signature verified: the caller holds the passkey.
                if reason == PasskeyFailure::SyncedPasskeyNotAllowed {
                    return Err(ServiceError::PasskeyRefused {
                        reason: PasskeyRefusal::SyncedPasskeyNotAllowed,
                        during_registration: false,
                    });
                }
                return Err(ServiceError::WebauthnFailed {
                    during_registration: false,
                });
            }
        };
        let now = now_millis();
        let mut passkey = self.open_passkey(&row)?;
        passkey.update_credential(&result);
        let uow = self.db.begin().await?;
        let recorded = factors_db::record_webauthn_use(
            uow.conn(),
            row.id,
            row.sign_count,
            i64::from(result.counter()),
            &self.seal_passkey(row.id, &passkey)?,
            now,
        )
        .await?;
        if !recorded {
            // Another assertion with this credential won the race: treat as a clone.
            drop(uow);
            let reason = PasskeyFailure::CounterRegression;
            self.record_assertion_failure(account, attempt, Some(row.user_id), reason, ctx)
                .await?;
            return Err(ServiceError::WebauthnFailed {
                during_registration: false,
            });
        }
        match (session, reserved) {
            (Some(session), Some((user, attempt))) => {
                self.succeed(uow, session, user, Factor::Passkey, attempt, ctx)
                    .await
            }
            (None, reserved) => {
                let attempt = reserved.map(|(_, attempt)| attempt);
                self.passwordless_login(uow, row.user_id, attempt, now, ctx)
                    .await
            }
            // A session always names its account (`self.user` above).
            (Some(_), None) => Err(ServiceError::NotAuthenticated),
        }
    }

    /// The account a passwordless assertion is an attempt on: the one whose email started
    /// the ceremony, else the owner of the presented credential; `None` when neither is
    /// known (then there is nothing to lock, and the assertion fails).
    async fn passwordless_account(
        &self,
        ceremony: &Ceremony,
        credential: &PublicKeyCredential,
    ) -> ServiceResult<Option<users::UserRow>> {
        let user_id = match ceremony.user_id {
            Some(id) => Some(id),
            None => {
                let credential_id = URL_SAFE_NO_PAD.encode(credential.get_credential_id());
                factors_db::webauthn_by_credential_id(self.db.connection(), &credential_id)
                    .await?
                    .map(|row| row.user_id)
            }
        };
        match user_id {
            Some(id) => Ok(users::find_by_id(self.db.connection(), id).await?),
            None => Ok(None),
        }
    }

    /// A refused assertion: audited (`mfa.webauthn.failure`) and, when it was an attempt
    /// on an account, counted (its reservation stays), maybe engaging a lock.
    async fn record_assertion_failure(
        &self,
        account: Option<&users::UserRow>,
        attempt: Option<&Attempt>,
        audit_user: Option<Uuid>,
        reason: PasskeyFailure,
        ctx: &RequestContext,
    ) -> ServiceResult<()> {
        let mut uow = self.db.begin().await?;
        uow.audit(ctx.record(
            AuditEvent::MfaWebauthnFailure {
                reason,
                during_registration: false,
            },
            audit_user,
        ));
        if let (Some(user), Some(attempt)) = (account, attempt) {
            self.abuse
                .note_failure(&mut uow, Some(user), attempt, &self.templates, ctx);
        }
        uow.commit().await?;
        Ok(())
    }

    /// Options and state for an assertion by one of `user_id`'s passkeys, user verification
    /// required, for a ceremony another service runs and stores itself (transaction
    /// confirmation); `None` when the user has no passkey.
    pub(crate) async fn start_user_assertion(
        &self,
        user_id: Uuid,
    ) -> ServiceResult<Option<(Value, PasskeyAuthentication)>> {
        let keys: Vec<Passkey> = self
            .passkeys_of(user_id)
            .await?
            .into_iter()
            .map(|(_, pk)| pk)
            .collect();
        if keys.is_empty() {
            return Ok(None);
        }
        let (options, state) = self
            .webauthn
            .start_passkey_authentication(&keys)
            .map_err(|e| anyhow::anyhow!("start authentication: {e}"))?;
        let options = serde_json::to_value(&options).map_err(anyhow::Error::from)?;
        Ok(Some((options, state)))
    }

    /// Verifies an assertion by `user_id`'s passkey against `state` exactly as a login's
    /// (signature, challenge, origin, RP ID, user verification, counter — also against the
    /// stored counter) and records the use. A refusal is audited (`mfa.webauthn.failure`)
    /// and counts toward the lockout; `Ok(Err(reason))` tells the caller why.
    pub(crate) async fn verify_user_assertion(
        &self,
        user_id: Uuid,
        state: PasskeyAuthentication,
        credential: &PublicKeyCredential,
        ctx: &RequestContext,
    ) -> ServiceResult<Result<(), PasskeyFailure>> {
        let user = self.user(user_id).await?;
        let attempt = self.reserve(&user).await?;
        let verified = if well_formed(&credential.type_, &credential.id, &credential.raw_id) {
            let ceremony = Ceremony {
                session_id: None,
                user_id: Some(user_id),
                state: CeremonyState::Authentication(state),
            };
            self.verify_assertion(ceremony, credential).await
        } else {
            Err((Some(user_id), PasskeyFailure::VerificationFailed))
        };
        let (row, result) = match verified {
            Ok(found) => found,
            Err((_, reason)) => {
                self.record_assertion_failure(
                    Some(&user),
                    Some(&attempt),
                    Some(user.id),
                    reason,
                    ctx,
                )
                .await?;
                return Ok(Err(reason));
            }
        };
        let mut passkey = self.open_passkey(&row)?;
        passkey.update_credential(&result);
        let uow = self.db.begin().await?;
        let recorded = factors_db::record_webauthn_use(
            uow.conn(),
            row.id,
            row.sign_count,
            i64::from(result.counter()),
            &self.seal_passkey(row.id, &passkey)?,
            now_millis(),
        )
        .await?;
        if !recorded {
            // Another assertion with this credential won the race: treat as a clone.
            drop(uow);
            let reason = PasskeyFailure::CounterRegression;
            self.record_assertion_failure(Some(&user), Some(&attempt), Some(user.id), reason, ctx)
                .await?;
            return Ok(Err(reason));
        }
        uow.commit().await?;
        self.abuse.release(attempt).await?;
        Ok(Ok(()))
    }

    /// Checks the assertion against the ceremony and the credential's current stored
    /// state. On failure: the user (if known) and an audit reason.
    async fn verify_assertion(
        &self,
        ceremony: Ceremony,
        credential: &PublicKeyCredential,
    ) -> Result<(WebauthnRow, AuthenticationResult), (Option<Uuid>, PasskeyFailure)> {
        let credential_id = URL_SAFE_NO_PAD.encode(credential.get_credential_id());
        let row = factors_db::webauthn_by_credential_id(self.db.connection(), &credential_id)
            .await
            .map_err(|_| (ceremony.user_id, PasskeyFailure::StorageError))?
            .ok_or((ceremony.user_id, PasskeyFailure::UnknownCredential))?;
        if ceremony
            .user_id
            .is_some_and(|expected| expected != row.user_id)
        {
            return Err((ceremony.user_id, PasskeyFailure::CredentialOfAnotherUser));
        }
        let stored = self
            .open_passkey(&row)
            .map_err(|_| (Some(row.user_id), PasskeyFailure::UnreadableCredential))?;
        let result = match ceremony.state {
            CeremonyState::Authentication(state) => self
                .webauthn
                .finish_passkey_authentication(credential, &state),
            CeremonyState::Discoverable(state) => {
                match self
                    .webauthn
                    .identify_discoverable_authentication(credential)
                {
                    Ok((handle, _)) if handle == row.user_id => self
                        .webauthn
                        .finish_discoverable_authentication_v2(credential, state, &stored),
                    _ => return Err((Some(row.user_id), PasskeyFailure::WrongUserHandle)),
                }
            }
            CeremonyState::Registration(_) | CeremonyState::AttestedRegistration(_) => {
                return Err((Some(row.user_id), PasskeyFailure::WrongCeremony));
            }
        };
        let result = result.map_err(|e| (Some(row.user_id), failure_reason(&e)))?;
        // The ceremony compared against the state at its start; compare against now too,
        // so a cloned authenticator cannot slip between two concurrent ceremonies.
        let counter = i64::from(result.counter());
        if (counter > 0 || row.sign_count > 0) && counter <= row.sign_count {
            return Err((Some(row.user_id), PasskeyFailure::CounterRegression));
        }
        if !result.user_verified() {
            return Err((Some(row.user_id), PasskeyFailure::UserNotVerified));
        }
        // A synced passkey of a role that needs device-bound ones (registered before the
        // policy or the role changed) no longer counts as a factor.
        if result.backup_eligible()
            && self
                .device_bound_required(row.user_id)
                .await
                .map_err(|reason| (Some(row.user_id), reason))?
        {
            return Err((Some(row.user_id), PasskeyFailure::SyncedPasskeyNotAllowed));
        }
        Ok((row, result))
    }

    /// A passkey with user verification is both factors at once: an active session with
    /// `mfa_verified_at` = now.
    async fn passwordless_login(
        &self,
        mut uow: crate::storage::db::UnitOfWork,
        user_id: Uuid,
        attempt: Option<Attempt>,
        now: Millis,
        ctx: &RequestContext,
    ) -> ServiceResult<MfaOutcome> {
        let user =
            users::find_by_id(uow.conn(), user_id)
                .await?
                .ok_or(ServiceError::WebauthnFailed {
                    during_registration: false,
                })?;
        if user.disabled {
            drop(uow);
            // The passkey was right: not a guessing failure (as for a password).
            if let Some(attempt) = attempt {
                self.abuse.release(attempt).await?;
            }
            let event = AuditEvent::LoginFailure {
                reason: LoginFailure::AccountDisabled,
                by_passkey: true,
            };
            self.db.audit_only(ctx.record(event, Some(user.id))).await?;
            return Err(ServiceError::AccountDisabled);
        }
        let session = self
            .sessions
            .create(
                &mut uow,
                &user,
                SessionState::Active,
                Some((now, MfaMethod::Webauthn)),
                ctx,
            )
            .await?;
        uow.audit(ctx.record(
            AuditEvent::FactorUsed {
                factor: Factor::Passkey,
                session_id: session.id,
                step: FactorStep::Passwordless,
            },
            Some(user.id),
        ));
        self.completion
            .commit(uow, &user, session.id, LoginMethod::Passkey, attempt, ctx)
            .await?;
        self.login_completed(user, session).await
    }

    /// A decoy credential id for `email`: an HMAC under a key of this deployment, so it
    /// is stable per address and unpredictable without the key.
    fn decoy_credential_id(&self, email: &EmailAddress) -> Vec<u8> {
        let mac = crate::crypto::hmac_sha256(&self.decoy_key, email.as_str().as_bytes());
        mac[..DECOY_ID_BYTES.min(mac.len())].to_vec()
    }

    /// `DELETE /auth/webauthn/credentials/{id}` (fresh MFA); only the caller's own.
    #[tracing::instrument(skip_all, fields(user_id = %session.user_id))]
    /// Renames one of the caller's passkeys (the name cleaned as at registration).
    #[tracing::instrument(skip_all, fields(user_id = %session.user_id))]
    pub async fn rename_passkey(
        &self,
        session: &CurrentSession,
        id: Uuid,
        name: &str,
        ctx: &RequestContext,
    ) -> ServiceResult<PasskeyView> {
        let name = clean_name(Some(name));
        let mut uow = self.db.begin().await?;
        let row = factors_db::rename_webauthn(uow.conn(), session.user_id, id, &name)
            .await?
            .ok_or(ServiceError::NotFound)?;
        uow.audit(ctx.record(
            AuditEvent::MfaWebauthnRenamed { credential: id },
            Some(session.user_id),
        ));
        uow.commit().await?;
        Ok(PasskeyView::from(&row))
    }

    pub async fn delete_passkey(
        &self,
        session: &CurrentSession,
        id: Uuid,
        ctx: &RequestContext,
    ) -> ServiceResult<()> {
        let mut uow = self.db.begin().await?;
        if !factors_db::delete_webauthn(uow.conn(), session.user_id, id).await? {
            return Err(ServiceError::NotFound);
        }
        self.drop_recovery_codes_if_last(&mut uow, session.user_id)
            .await?;
        uow.audit(ctx.record(
            AuditEvent::MfaWebauthnDeleted { credential: id },
            Some(session.user_id),
        ));
        uow.email(
            self.templates
                .notice(&session.email, Notice::PasskeyRemoved),
        );
        uow.commit().await?;
        self.sessions.refresh_user(session.user_id).await?;
        Ok(())
    }
}
