//! Transaction confirmation (docs/API.md §9): create a transaction for payment details,
//! show it, and confirm it with a passkey (the assertion signs the details) or a TOTP
//! code; the answer is a signed confirmation for the payment backend.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::error_docs::{ACTIVE, BODY, CSRF, ENROLLMENT, error_responses};
use super::extract::{ActiveSession, ClientContext, JsonBody, JsonDocument};
use super::mfa::TotpCode;
use super::webauthn::{CeremonyOptions, LoginFinish};
use crate::domain::millis_to_rfc3339;
use crate::services::payments::{Payee, PaymentInitiation, TransactionView};

/// The body of `POST /auth/transactions`: one `payment_initiation`, or (an extension of
/// docs/API.md §9, PSD2 RTS Art. 5(3)(b)) a JSON array of 1–100 of them, confirmed once
/// for the total and the list of payees.
// Documentation only: the service validates the JSON itself, field by field.
#[allow(dead_code)]
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum TransactionRequest {
    One(PaymentInitiation),
    /// 1–100 payments.
    Batch(Vec<PaymentInitiation>),
}

/// What the user approves at a glance: the total per currency and who gets paid.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TransactionSummary {
    /// The details are a list (a batch).
    pub batch: bool,
    /// Currency → total, at the currency's minor units.
    pub totals: BTreeMap<String, String>,
    pub payees: Vec<Payee>,
}

/// A transaction as its owner sees it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TransactionBody {
    /// `transaction_created` or `ok`.
    pub code: &'static str,
    pub transaction_id: Uuid,
    /// The normalized details that are signed: the payment object, or the array of a
    /// batch (IBAN without spaces, amount at the currency's minor units, names trimmed).
    #[schema(value_type = Value)]
    pub details: Value,
    /// base64url(SHA-256(RFC 8785 canonical JSON of `details`)).
    pub tx_hash: String,
    pub expires_at: String,
    /// `webauthn` and/or `totp`: what the user can confirm with.
    pub methods: Vec<&'static str>,
    /// `pending` or `confirmed`.
    pub status: &'static str,
    pub summary: TransactionSummary,
}

impl TransactionBody {
    fn new(code: &'static str, view: TransactionView) -> Self {
        Self {
            code,
            transaction_id: view.transaction_id,
            details: view.order.details(),
            tx_hash: view.tx_hash.encode(),
            expires_at: millis_to_rfc3339(view.expires_at),
            methods: view.methods.iter().map(|m| m.as_str()).collect(),
            status: view.status.as_str(),
            summary: TransactionSummary {
                batch: view.order.is_batch(),
                totals: view.order.totals(),
                payees: view.order.payees(),
            },
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TransactionConfirmed {
    /// `transaction_confirmed`
    pub code: &'static str,
    /// A compact JWS (`typ` `txn-confirmation+jwt`) signed with the keys of the JWKS;
    /// see docs/TRANSACTIONS.md for the checks a payment backend makes.
    pub confirmation: String,
}

fn confirmed(confirmation: String) -> Json<TransactionConfirmed> {
    Json(TransactionConfirmed {
        code: "transaction_confirmed",
        confirmation,
    })
}

/// An id in the path that is not a UUID names no transaction of the caller's.
fn transaction_id(id: Result<Path<Uuid>, PathRejection>) -> ApiResult<Uuid> {
    id.map(|Path(id)| id).map_err(|_| ApiError::NotFound)
}

const NOT_YOURS: &[(u16, &str)] = &[(
    404,
    "`not_found`: unknown, another user's or another session's transaction",
)];
const CLOSED: &[(u16, &str)] = &[(
    400,
    "`invalid_transaction`: confirmed already or expired (audited as `transaction.failed`)",
)];

error_responses!(
    CreateErrors = ACTIVE,
    CSRF,
    ENROLLMENT,
    BODY,
    &[(
        429,
        "`rate_limited`: more than 30 transactions opened by this session in 5 minutes (with `retry_after` and a `Retry-After` header)",
    )]
);

#[utoipa::path(
    post,
    path = "/auth/transactions",
    tag = "transactions",
    summary = "Open a transaction for payment details, to be confirmed with a second factor",
    description = "docs/API.md §9 (PSD2 dynamic linking). The body is one `payment_initiation` or, as an extension, a JSON array of 1–100 of them (a batch, confirmed once for the total and the list of payees). Every field is checked: ISO 4217 currency in use with minor units, the amount a positive decimal string with at most the currency's minor units (no sign or exponent), the IBAN's checksum, `creditorName` 1–140 characters, the remittance at most 140; unknown fields are refused, so nothing unsigned rides along. `422 validation_error` names each field (`instructedAmount.amount`, `[2].creditorAccount.iban`) and stores nothing. The transaction lives `TRANSACTION_TTL_SECONDS` (≤ 300) and belongs to this session; a session opens at most 30 in 5 minutes. Audited as `transaction.created`.",
    request_body = TransactionRequest,
    responses(
        (status = 201, description = "`transaction_created`", body = TransactionBody),
        CreateErrors,
    ),
    security(("session_cookie" = [], "csrf_header" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    ActiveSession(session): ActiveSession,
    JsonDocument(body): JsonDocument,
) -> ApiResult<(StatusCode, Json<TransactionBody>)> {
    let view = state.transactions.create(&session, &body, &ctx).await?;
    Ok((
        StatusCode::CREATED,
        Json(TransactionBody::new("transaction_created", view)),
    ))
}

error_responses!(
    GetErrors = ACTIVE,
    NOT_YOURS,
    &[(400, "`invalid_transaction`: expired")]
);

#[utoipa::path(
    get,
    path = "/auth/transactions/{id}",
    tag = "transactions",
    summary = "A transaction: what is being approved, for the confirmation page",
    description = "Extension of docs/API.md §9: the confirmation page shows amount, currency and payee from here before the authenticator is invoked. Only the session that created the transaction sees it.",
    params(("id" = Uuid, Path, description = "The transaction id")),
    responses(
        (status = 200, description = "`ok`; `status` is `pending` or `confirmed`", body = TransactionBody),
        GetErrors,
    ),
    security(("session_cookie" = [])),
)]
pub async fn get(
    State(state): State<AppState>,
    ActiveSession(session): ActiveSession,
    id: Result<Path<Uuid>, PathRejection>,
) -> ApiResult<Json<TransactionBody>> {
    let id = transaction_id(id)?;
    let view = state.transactions.get(&session, id).await?;
    Ok(Json(TransactionBody::new("ok", view)))
}

error_responses!(
    StartErrors = ACTIVE,
    CSRF,
    NOT_YOURS,
    CLOSED,
    &[(409, "`mfa_method_not_enrolled`: the user has no passkey")]
);

#[utoipa::path(
    post,
    path = "/auth/transactions/{id}/webauthn/start",
    tag = "transactions",
    summary = "Start a passkey confirmation whose challenge commits to the transaction",
    description = "The WebAuthn challenge is base64url(SHA-256(the 32 bytes of `tx_hash` ‖ 32 random bytes)): the assertion signs the transaction. The user's passkeys are allowed, user verification required. The ceremony belongs to this session and transaction, single-use, at most 5 minutes.",
    params(("id" = Uuid, Path, description = "The transaction id")),
    responses(
        (status = 200, description = "`webauthn_authentication_options`: `options` is PublicKeyCredentialRequestOptions JSON (binary fields base64url)", body = CeremonyOptions),
        StartErrors,
    ),
    security(("session_cookie" = [], "csrf_header" = [])),
)]
pub async fn webauthn_start(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    ActiveSession(session): ActiveSession,
    id: Result<Path<Uuid>, PathRejection>,
) -> ApiResult<Json<CeremonyOptions>> {
    let id = transaction_id(id)?;
    let start = state
        .transactions
        .webauthn_start(&session, id, &ctx)
        .await?;
    Ok(Json(CeremonyOptions {
        code: "webauthn_authentication_options",
        ceremony_id: start.ceremony_id,
        options: start.options,
    }))
}

error_responses!(
    FinishErrors = ACTIVE,
    CSRF,
    BODY,
    NOT_YOURS,
    CLOSED,
    &[
        (
            400,
            "`invalid_ceremony`: unknown, used, expired, or of another transaction or session",
        ),
        (
            401,
            "`webauthn_failed`: signature, challenge, origin, RP ID, user verification or sign counter refused (audited; counts toward the lockout; the transaction stays open)",
        ),
        (429, "`account_locked`"),
    ]
);

#[utoipa::path(
    post,
    path = "/auth/transactions/{id}/webauthn/finish",
    tag = "transactions",
    summary = "Confirm a transaction with a passkey assertion",
    description = "Audited as `transaction.confirmed` (or `transaction.failed`). A transaction is confirmed once, even when two confirmations race on different instances.",
    params(("id" = Uuid, Path, description = "The transaction id")),
    request_body = LoginFinish,
    responses(
        (status = 200, description = "`transaction_confirmed`; the confirmation says `linking: webauthn`", body = TransactionConfirmed),
        FinishErrors,
    ),
    security(("session_cookie" = [], "csrf_header" = [])),
)]
pub async fn webauthn_finish(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    ActiveSession(session): ActiveSession,
    id: Result<Path<Uuid>, PathRejection>,
    JsonBody(body): JsonBody<LoginFinish>,
) -> ApiResult<Json<TransactionConfirmed>> {
    let id = transaction_id(id)?;
    let confirmation = state
        .transactions
        .webauthn_finish(&session, id, &body.ceremony_id, &body.credential, &ctx)
        .await?;
    Ok(confirmed(confirmation))
}

error_responses!(
    TotpErrors = ACTIVE,
    CSRF,
    BODY,
    NOT_YOURS,
    CLOSED,
    &[
        (
            401,
            "`invalid_mfa_code`: wrong or replayed code (audited; counts toward the lockout; the transaction stays open)",
        ),
        (409, "`mfa_method_not_enrolled`: the user has no TOTP"),
        (429, "`account_locked`"),
    ]
);

#[utoipa::path(
    post,
    path = "/auth/transactions/{id}/totp",
    tag = "transactions",
    summary = "Confirm a transaction with a TOTP code",
    description = "The code is checked with the login rules (±1 step, each step once) and bound to the transaction by the server: the confirmation says `linking: server`. Audited as `transaction.confirmed` (or `transaction.failed`).",
    params(("id" = Uuid, Path, description = "The transaction id")),
    request_body = TotpCode,
    responses(
        (status = 200, description = "`transaction_confirmed`", body = TransactionConfirmed),
        TotpErrors,
    ),
    security(("session_cookie" = [], "csrf_header" = [])),
)]
pub async fn totp(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    ActiveSession(session): ActiveSession,
    id: Result<Path<Uuid>, PathRejection>,
    JsonBody(body): JsonBody<TotpCode>,
) -> ApiResult<Json<TransactionConfirmed>> {
    let id = transaction_id(id)?;
    let confirmation = state
        .transactions
        .totp(&session, id, &body.code, &ctx)
        .await?;
    Ok(confirmed(confirmation))
}
