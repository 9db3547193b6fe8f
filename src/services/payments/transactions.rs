//! Transaction confirmation with PSD2 dynamic linking (docs/API.md §9, RTS Art. 5).
//!
//! A transaction is a validated `PaymentOrder` waiting for the user's strong customer
//! authentication. It lives in the ephemeral store (so any instance can finish what
//! another started) under its id, bound to the user and the session that created it, for
//! `TRANSACTION_TTL_SECONDS` (≤ 5 minutes). It is confirmed once:
//!
//! - by a passkey, whose WebAuthn challenge is SHA-256(tx_hash ‖ 32 random bytes), so the
//!   authenticator's signature covers the details (`linking: "webauthn"`);
//! - or by a TOTP code, which the server binds to the transaction (`linking: "server"`).
//!
//! Either factor is checked by the MFA service with its usual rules (counter, user
//! verification, replayed steps, lockout). The confirmation is a JWS (`confirmation`).
//! Confirming is a compare-and-set on the stored record, so two racing confirmations —
//! on any instances — yield one JWS. A record stays readable a while after it expires,
//! so a late attempt is told `invalid_transaction` rather than `not_found`, and the OAuth
//! authorization step can ask whether a transaction was confirmed (`confirmed_hash`).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;
use webauthn_rs::prelude::{PasskeyAuthentication, PublicKeyCredential};

use super::confirmation::{CONFIRMATION_TYP, ConfirmationClaims, Linking};
use super::details::{PaymentOrder, TxHash};
use crate::configuration::Settings;
use crate::domain::{Millis, now_millis};
use crate::services::audit::{AuditEvent, RequestContext, TransactionEvent, TransactionFailure};
use crate::services::error::{ServiceError, ServiceResult};
use crate::services::mfa::{CeremonyStart, MAX_CEREMONY_ID_LEN, Mfa};
use crate::services::oauth::keys::SigningKeys;
use crate::services::sessions::CurrentSession;
use crate::storage::db::Database;
use crate::storage::store::Store;

/// A WebAuthn ceremony lives at most this long (and never past its transaction).
const CEREMONY_TTL: Duration = Duration::from_secs(300);
/// How long a record stays after its transaction expired: a late attempt then gets
/// `invalid_transaction` (not `not_found`), and a confirmed one stays known to OAuth.
const RETAIN_AFTER_EXPIRY: Duration = Duration::from_secs(600);

/// Transactions one session may open per window: each writes to the store and the audit
/// trail, so a session must not be able to flood either. Far above what a person does.
pub const MAX_TRANSACTIONS_PER_WINDOW: u64 = 30;
const TRANSACTION_WINDOW: Duration = Duration::from_secs(300);

/// The second factors a transaction can be confirmed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Webauthn,
    Totp,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Webauthn => "webauthn",
            Method::Totp => "totp",
        }
    }
}

/// Where a transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Confirmed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Confirmed => "confirmed",
        }
    }
}

/// A transaction as its owner sees it (`201 transaction_created`, `GET`).
#[derive(Debug, Clone)]
pub struct TransactionView {
    pub transaction_id: Uuid,
    pub order: PaymentOrder,
    pub tx_hash: TxHash,
    pub expires_at: Millis,
    pub methods: Vec<Method>,
    pub status: Status,
}

/// What `create_for` answers (the OAuth authorization step shows the same).
pub type TransactionCreated = TransactionView;

/// The stored record. `order` validates again when read back.
#[derive(Serialize, Deserialize)]
struct StoredTransaction {
    user_id: Uuid,
    session_id: Uuid,
    order: PaymentOrder,
    tx_hash: String,
    created_at: Millis,
    expires_at: Millis,
    #[serde(default)]
    confirmed: Option<ConfirmedRecord>,
}

#[derive(Serialize, Deserialize)]
struct ConfirmedRecord {
    at: Millis,
    /// The confirmation's `exp`, in milliseconds.
    until: Millis,
    linking: Linking,
    jti: Uuid,
}

/// A WebAuthn ceremony for one transaction, in the store under its id and session.
#[derive(Serialize, Deserialize)]
struct TransactionCeremony {
    transaction_id: Uuid,
    /// The 32 random bytes of the challenge, base64url.
    nonce: String,
    /// SHA-256(tx_hash ‖ nonce), base64url: what the authenticator signs.
    challenge: String,
    state: PasskeyAuthentication,
}

fn transaction_key(id: Uuid) -> String {
    format!("transaction:{id}")
}

/// As for login ceremonies, the session is part of the key: another session presenting
/// the id finds nothing (and so cannot consume somebody else's ceremony).
fn ceremony_key(id: &str, session_id: Uuid) -> String {
    format!(
        "transaction-ceremony:{}:{session_id}",
        crate::crypto::token_hash(id)
    )
}

/// The WebAuthn challenge of docs/API.md §9: SHA-256 over the 32 raw bytes of the
/// transaction hash followed by 32 random bytes.
fn challenge_for(tx_hash: &TxHash, nonce: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(tx_hash.as_bytes());
    hasher.update(nonce);
    hasher.finalize().into()
}

/// Puts our challenge into a passkey ceremony webauthn-rs started.
///
/// webauthn-rs 0.6 draws the challenge itself and offers no way to choose it, but dynamic
/// linking needs the challenge to commit to the transaction. With the
/// `danger-allow-state-serialisation` feature the ceremony state serializes, so the
/// challenge is replaced in the state (`ast.challenge`, which the library compares the
/// client data against at the finish) and in the options sent to the browser
/// (`publicKey.challenge`). Should a library update move either field, this refuses to
/// start rather than silently keep an unlinked random challenge. The user verification
/// policy is checked to be `required` on the way.
fn with_challenge(
    options: &mut Value,
    state: PasskeyAuthentication,
    challenge: &[u8; 32],
) -> ServiceResult<PasskeyAuthentication> {
    let encoded = Value::String(URL_SAFE_NO_PAD.encode(challenge));
    let layout_changed =
        || ServiceError::Internal(anyhow::anyhow!("webauthn-rs ceremony layout changed"));
    let mut state = serde_json::to_value(&state).map_err(anyhow::Error::from)?;
    if state.pointer("/ast/policy") != Some(&Value::from("required")) {
        return Err(layout_changed());
    }
    match state.pointer_mut("/ast/challenge") {
        Some(slot @ Value::String(_)) => *slot = encoded.clone(),
        _ => return Err(layout_changed()),
    }
    match options.pointer_mut("/publicKey/challenge") {
        Some(slot @ Value::String(_)) => *slot = encoded,
        _ => return Err(layout_changed()),
    }
    Ok(serde_json::from_value(state).map_err(anyhow::Error::from)?)
}

/// Transaction confirmation. Cheap to clone.
#[derive(Clone)]
pub struct Transactions {
    db: Database,
    store: Store,
    mfa: Mfa,
    keys: SigningKeys,
    issuer: String,
    audience: String,
    ttl: Duration,
}

impl Transactions {
    pub fn new(
        settings: &Settings,
        db: Database,
        store: Store,
        mfa: Mfa,
        keys: SigningKeys,
    ) -> Self {
        Self {
            db,
            store,
            mfa,
            keys,
            issuer: settings.oidc.issuer.clone(),
            audience: settings.transactions.audience.clone(),
            ttl: settings.transactions.ttl,
        }
    }

    /// The factors `user_id` can confirm with now (a recovery code is a fallback for
    /// logging in, not a way to approve a payment).
    async fn available_methods(&self, user_id: Uuid) -> ServiceResult<Vec<Method>> {
        let factors = self.mfa.factors(user_id).await?;
        let mut methods = Vec::new();
        if factors.webauthn_credentials > 0 {
            methods.push(Method::Webauthn);
        }
        if factors.totp {
            methods.push(Method::Totp);
        }
        Ok(methods)
    }

    /// As `available_methods`; none → `mfa_enrollment_required`.
    async fn methods_of(&self, user_id: Uuid) -> ServiceResult<Vec<Method>> {
        let methods = self.available_methods(user_id).await?;
        if methods.is_empty() {
            return Err(ServiceError::MfaEnrollmentRequired);
        }
        Ok(methods)
    }

    /// `POST /auth/transactions`: validates the body (one payment or a batch) and opens a
    /// transaction for this session. Invalid details → `validation_error`, nothing stored.
    pub async fn create(
        &self,
        session: &CurrentSession,
        body: &Value,
        ctx: &RequestContext,
    ) -> ServiceResult<TransactionView> {
        // §7 order: the enrollment check comes before the body.
        let methods = self.methods_of(session.user_id).await?;
        let order = PaymentOrder::validate(body).map_err(ServiceError::Validation)?;
        self.open(session.user_id, session.id, order, methods, ctx)
            .await
    }

    /// For the OAuth authorization step (docs/API.md §8): a transaction for exactly the
    /// `payment_initiation` details of an authorization request, bound to the browser's
    /// session, confirmed through the §9 routes like any other.
    pub async fn create_for(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        order: PaymentOrder,
        ctx: &RequestContext,
    ) -> ServiceResult<TransactionCreated> {
        let methods = self.methods_of(user_id).await?;
        self.open(user_id, session_id, order, methods, ctx).await
    }

    async fn open(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        order: PaymentOrder,
        methods: Vec<Method>,
        ctx: &RequestContext,
    ) -> ServiceResult<TransactionView> {
        let hit = self
            .store
            .hit(
                &format!("rate:session:transactions:{session_id}"),
                TRANSACTION_WINDOW,
            )
            .await?;
        if hit.count > MAX_TRANSACTIONS_PER_WINDOW {
            metrics::counter!("rate_limit_hits_total", "scope" => "session").increment(1);
            return Err(ServiceError::RateLimited {
                retry_after_secs: hit.resets_in.as_secs().max(1),
            });
        }
        let id = Uuid::new_v4();
        let now = now_millis();
        let tx_hash = order.tx_hash();
        let stored = StoredTransaction {
            user_id,
            session_id,
            order: order.clone(),
            tx_hash: tx_hash.encode(),
            created_at: now,
            expires_at: now + self.ttl.as_millis() as Millis,
            confirmed: None,
        };
        let raw = serde_json::to_string(&stored).map_err(anyhow::Error::from)?;
        self.store
            .set(&transaction_key(id), &raw, self.ttl + RETAIN_AFTER_EXPIRY)
            .await?;
        let event = TransactionEvent::Created {
            transaction_id: id,
            tx_hash: tx_hash.encode(),
            payments: order.payments().len(),
        };
        self.db
            .audit_only(ctx.record(AuditEvent::Transaction(event), Some(user_id)))
            .await?;
        Ok(TransactionView {
            transaction_id: id,
            order,
            tx_hash,
            expires_at: stored.expires_at,
            methods,
            status: Status::Pending,
        })
    }

    /// The stored record of `id` if it belongs to this user and session; anything else —
    /// unknown, another user's, another session's — is `not_found`.
    async fn load(
        &self,
        id: Uuid,
        user_id: Uuid,
        session_id: Uuid,
    ) -> ServiceResult<(String, StoredTransaction)> {
        let raw = self
            .store
            .get(&transaction_key(id))
            .await?
            .ok_or(ServiceError::NotFound)?;
        let stored: StoredTransaction =
            serde_json::from_str(&raw).map_err(|_| ServiceError::NotFound)?;
        if stored.user_id != user_id || stored.session_id != session_id {
            return Err(ServiceError::NotFound);
        }
        Ok((raw, stored))
    }

    /// A refused attempt on the caller's own transaction: audited; the error to answer
    /// (or the audit trail's own, should it be down).
    async fn refuse(
        &self,
        id: Uuid,
        user_id: Uuid,
        reason: TransactionFailure,
        error: ServiceError,
        ctx: &RequestContext,
    ) -> ServiceError {
        let event = TransactionEvent::Failed {
            transaction_id: id,
            reason,
        };
        match self
            .db
            .audit_only(ctx.record(AuditEvent::Transaction(event), Some(user_id)))
            .await
        {
            Ok(()) => error,
            Err(audit) => audit.into(),
        }
    }

    /// Confirmed or expired → `invalid_transaction` (audited).
    async fn ensure_open(
        &self,
        id: Uuid,
        stored: &StoredTransaction,
        ctx: &RequestContext,
    ) -> ServiceResult<()> {
        let reason = if stored.confirmed.is_some() {
            TransactionFailure::AlreadyConfirmed
        } else if now_millis() >= stored.expires_at {
            TransactionFailure::Expired
        } else {
            return Ok(());
        };
        Err(self
            .refuse(
                id,
                stored.user_id,
                reason,
                ServiceError::InvalidTransaction,
                ctx,
            )
            .await)
    }

    /// `GET /auth/transactions/{id}`: what is being approved, for the confirmation page.
    pub async fn get(&self, session: &CurrentSession, id: Uuid) -> ServiceResult<TransactionView> {
        let (_, stored) = self.load(id, session.user_id, session.id).await?;
        let status = if stored.confirmed.is_some() {
            Status::Confirmed
        } else if now_millis() >= stored.expires_at {
            return Err(ServiceError::InvalidTransaction);
        } else {
            Status::Pending
        };
        let tx_hash = stored.order.tx_hash();
        Ok(TransactionView {
            transaction_id: id,
            methods: self.available_methods(session.user_id).await?,
            order: stored.order,
            tx_hash,
            expires_at: stored.expires_at,
            status,
        })
    }

    /// `POST /auth/transactions/{id}/webauthn/start`: a passkey ceremony whose challenge
    /// commits to this transaction's hash.
    pub async fn webauthn_start(
        &self,
        session: &CurrentSession,
        id: Uuid,
        ctx: &RequestContext,
    ) -> ServiceResult<CeremonyStart> {
        let (_, stored) = self.load(id, session.user_id, session.id).await?;
        self.ensure_open(id, &stored, ctx).await?;
        let (mut options, state) = self
            .mfa
            .start_user_assertion(session.user_id)
            .await?
            .ok_or(ServiceError::MfaMethodNotEnrolled)?;
        let tx_hash = stored.order.tx_hash();
        let nonce = crate::crypto::random_bytes::<32>();
        let challenge = challenge_for(&tx_hash, &nonce);
        let state = with_challenge(&mut options, state, &challenge)?;
        let ceremony = TransactionCeremony {
            transaction_id: id,
            nonce: URL_SAFE_NO_PAD.encode(nonce),
            challenge: URL_SAFE_NO_PAD.encode(challenge),
            state,
        };
        let remaining = Duration::from_millis((stored.expires_at - now_millis()).max(1) as u64);
        let ceremony_id = crate::crypto::random_token();
        let value = serde_json::to_string(&ceremony).map_err(anyhow::Error::from)?;
        self.store
            .set(
                &ceremony_key(&ceremony_id, session.id),
                &value,
                remaining.min(CEREMONY_TTL),
            )
            .await?;
        Ok(CeremonyStart {
            ceremony_id,
            options,
        })
    }

    /// `POST /auth/transactions/{id}/webauthn/finish`: the assertion must answer this
    /// session's ceremony for this transaction; then the passkey is verified like a
    /// login's, and the transaction confirmed.
    pub async fn webauthn_finish(
        &self,
        session: &CurrentSession,
        id: Uuid,
        ceremony_id: &str,
        credential: &PublicKeyCredential,
        ctx: &RequestContext,
    ) -> ServiceResult<String> {
        let (raw, stored) = self.load(id, session.user_id, session.id).await?;
        self.ensure_open(id, &stored, ctx).await?;
        let ceremony = self.take_ceremony(ceremony_id, session.id).await?;
        // The ceremony must be this transaction's, and its challenge must still be the
        // one this transaction's hash and the ceremony's nonce give.
        let bound = ceremony.as_ref().is_some_and(|c| {
            c.transaction_id == id
                && URL_SAFE_NO_PAD.decode(&c.nonce).is_ok_and(|nonce| {
                    URL_SAFE_NO_PAD.encode(challenge_for(&stored.order.tx_hash(), &nonce))
                        == c.challenge
                })
        });
        let Some(ceremony) = ceremony.filter(|_| bound) else {
            return Err(self
                .refuse(
                    id,
                    session.user_id,
                    TransactionFailure::InvalidCeremony,
                    ServiceError::InvalidCeremony,
                    ctx,
                )
                .await);
        };
        if let Err(reason) = self
            .mfa
            .verify_user_assertion(session.user_id, ceremony.state, credential, ctx)
            .await?
        {
            return Err(self
                .refuse(
                    id,
                    session.user_id,
                    TransactionFailure::Passkey(reason),
                    ServiceError::WebauthnFailed {
                        during_registration: false,
                    },
                    ctx,
                )
                .await);
        }
        self.confirm(id, &raw, stored, Linking::Webauthn, ctx).await
    }

    /// `POST /auth/transactions/{id}/totp`: a TOTP code (the usual rules: ±1 step, each
    /// step once, lockout), bound to the transaction by the server.
    pub async fn totp(
        &self,
        session: &CurrentSession,
        id: Uuid,
        code: &str,
        ctx: &RequestContext,
    ) -> ServiceResult<String> {
        let (raw, stored) = self.load(id, session.user_id, session.id).await?;
        self.ensure_open(id, &stored, ctx).await?;
        if let Err(reason) = self.mfa.check_totp(session.user_id, code, ctx).await? {
            return Err(self
                .refuse(
                    id,
                    session.user_id,
                    TransactionFailure::Code(reason),
                    ServiceError::InvalidMfaCode,
                    ctx,
                )
                .await);
        }
        self.confirm(id, &raw, stored, Linking::Server, ctx).await
    }

    /// Takes (and so ends) a ceremony of this session; `None` when unknown, used, expired
    /// or another session's.
    async fn take_ceremony(
        &self,
        ceremony_id: &str,
        session_id: Uuid,
    ) -> ServiceResult<Option<TransactionCeremony>> {
        if ceremony_id.is_empty() || ceremony_id.len() > MAX_CEREMONY_ID_LEN {
            return Ok(None);
        }
        let raw = self
            .store
            .take(&ceremony_key(ceremony_id, session_id))
            .await?;
        Ok(raw.and_then(|raw| serde_json::from_str(&raw).ok()))
    }

    /// Signs the confirmation and marks the transaction confirmed — once: the record is
    /// replaced only if it is still the pending one read at the start of the request.
    async fn confirm(
        &self,
        id: Uuid,
        raw: &str,
        stored: StoredTransaction,
        linking: Linking,
        ctx: &RequestContext,
    ) -> ServiceResult<String> {
        let now = now_millis();
        if now >= stored.expires_at {
            // It expired while the factor was being checked.
            return Err(self
                .refuse(
                    id,
                    stored.user_id,
                    TransactionFailure::Expired,
                    ServiceError::InvalidTransaction,
                    ctx,
                )
                .await);
        }
        let user_id = stored.user_id;
        let tx_hash = stored.order.tx_hash();
        let jti = Uuid::new_v4();
        let iat = (now / 1000) as u64;
        let exp = iat + self.ttl.as_secs();
        let claims = ConfirmationClaims {
            iss: self.issuer.clone(),
            sub: user_id.to_string(),
            aud: self.audience.clone(),
            iat,
            exp,
            jti: jti.to_string(),
            txn: id.to_string(),
            tx_hash: tx_hash.encode(),
            details: stored.order.details(),
            amr: linking.amr(),
            linking,
        };
        let token = self.keys.sign(CONFIRMATION_TYP, &claims).await?;
        let until = (exp * 1000) as Millis;
        let keep = Duration::from_millis((until.max(stored.expires_at) - now).max(0) as u64)
            + RETAIN_AFTER_EXPIRY;
        let confirmed = StoredTransaction {
            confirmed: Some(ConfirmedRecord {
                at: now,
                until,
                linking,
                jti,
            }),
            ..stored
        };
        let confirmed_raw = serde_json::to_string(&confirmed).map_err(anyhow::Error::from)?;
        let mut uow = self.db.begin().await?;
        uow.audit(ctx.record(
            AuditEvent::Transaction(TransactionEvent::Confirmed {
                transaction_id: id,
                tx_hash: tx_hash.encode(),
                linking,
                jti,
            }),
            Some(user_id),
        ));
        let key = transaction_key(id);
        if !self
            .store
            .replace_if(&key, Some(raw), &confirmed_raw, keep)
            .await?
        {
            // Another request (on any instance) confirmed it first.
            drop(uow);
            return Err(self
                .refuse(
                    id,
                    user_id,
                    TransactionFailure::AlreadyConfirmed,
                    ServiceError::InvalidTransaction,
                    ctx,
                )
                .await);
        }
        if let Err(error) = uow.commit().await {
            // No audit record, no confirmation: put the pending record back.
            let _ = self
                .store
                .replace_if(&key, Some(&confirmed_raw), raw, keep)
                .await;
            return Err(error.into());
        }
        Ok(token)
    }

    /// For the OAuth authorization step: the hash of `transaction_id`'s details if that
    /// transaction of this user and session was confirmed and its confirmation has not
    /// expired; `None` otherwise.
    pub async fn confirmed_hash(
        &self,
        transaction_id: Uuid,
        user_id: Uuid,
        session_id: Uuid,
    ) -> ServiceResult<Option<TxHash>> {
        let stored = match self.load(transaction_id, user_id, session_id).await {
            Ok((_, stored)) => stored,
            Err(ServiceError::NotFound) => return Ok(None),
            Err(other) => return Err(other),
        };
        Ok(stored
            .confirmed
            .filter(|c| now_millis() < c.until)
            .and_then(|_| TxHash::decode(&stored.tx_hash)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_challenge_hashes_the_raw_hash_bytes_and_the_nonce() {
        let order = PaymentOrder::validate(&json!({
            "type": "payment_initiation",
            "instructedAmount": {"currency": "EUR", "amount": "1.00"},
            "creditorName": "A",
            "creditorAccount": {"iban": "DE89370400440532013000"},
        }))
        .unwrap();
        let hash = order.tx_hash();
        let nonce = [7u8; 32];
        let mut input = hash.as_bytes().to_vec();
        input.extend_from_slice(&nonce);
        let expected: [u8; 32] = Sha256::digest(&input).into();
        assert_eq!(challenge_for(&hash, &nonce), expected);
        // Not the hash of the base64url text.
        let mut text = hash.encode().into_bytes();
        text.extend_from_slice(&nonce);
        let wrong: [u8; 32] = Sha256::digest(&text).into();
        assert_ne!(challenge_for(&hash, &nonce), wrong);
    }

    #[test]
    fn the_challenge_replaces_the_one_webauthn_rs_drew() {
        // The serialized shape of webauthn-rs 0.6's passkey authentication state.
        let state: PasskeyAuthentication = serde_json::from_value(json!({"ast": {
            "credentials": [], "policy": "required", "challenge": "AAAA",
            "appid": null, "allow_backup_eligible_upgrade": true,
        }}))
        .unwrap();
        let mut options =
            json!({"publicKey": {"challenge": "AAAA", "userVerification": "required"}});
        let challenge = [9u8; 32];
        let state = with_challenge(&mut options, state, &challenge).unwrap();
        let encoded = json!(URL_SAFE_NO_PAD.encode(challenge));
        assert_eq!(options["publicKey"]["challenge"], encoded);
        assert_eq!(
            serde_json::to_value(&state).unwrap()["ast"]["challenge"],
            encoded
        );

        // A layout it does not know is refused, never used with the library's challenge.
        let mut elsewhere = json!({"publicKey": {}});
        let state: PasskeyAuthentication =
            serde_json::from_value(serde_json::to_value(&state).unwrap()).unwrap();
        assert!(with_challenge(&mut elsewhere, state, &challenge).is_err());
    }
}
