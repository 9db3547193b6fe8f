//! Registration, email verification, login, logout and the caller's own account.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::AppState;
use super::cookies;
use super::error::{ApiError, ApiResult};
use super::error_docs::{
    AnySessionErrors, AnySessionReadErrors, BODY, EnrollingReadErrors, PRE_AUTH, PreAuthErrors,
    error_responses,
};
use super::extract::{AnySession, ClientContext, EnrollingSession, JsonBody, PreAuthRateLimit};
use crate::domain::{EmailAddress, EnrolledFactor, Factors, Role, millis_to_rfc3339};
use crate::services::accounts::Account;
use crate::services::audit::RequestContext;
use crate::services::error::ServiceError;
use crate::services::sessions::IssuedSession;

// The `#[schema]` constraints below state what the handlers and services enforce, so
// generated clients and contract tests send what the service accepts. Numbers must be
// literals there; `openapi::tests` pins them to the constants the code checks against.

/// A login. The password is only checked against the stored hash: no length rule here.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct Credentials {
    /// Trimmed and lower-cased before use (`domain::EmailAddress`).
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    pub password: String,
    /// `AUTH_POLICY=psd2` only (ignored otherwise): the one-time code of the account's
    /// second factor — a 6-digit TOTP code or a recovery code — checked together with the
    /// password (docs/API.md §11). Missing or wrong gets the same `401 invalid_credentials`
    /// as a wrong password. Accounts whose only second factor is a passkey sign in with it
    /// (`/auth/webauthn/login/*`) or with a recovery code.
    #[schema(max_length = 64)]
    #[serde(default)]
    pub code: Option<String>,
}

/// A new account: the password must pass the policy (docs/API.md §4).
#[derive(Deserialize, utoipa::ToSchema)]
pub struct Registration {
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    /// At least `PASSWORD_MIN_LENGTH` characters (default 12, never below 8) and at most
    /// 128, counted after NFKC normalisation; not banned, not guessable, not the email.
    #[schema(min_length = 8, max_length = 128)]
    pub password: String,
}

/// The email verification token (surrounding whitespace is ignored).
#[derive(Deserialize, utoipa::ToSchema)]
pub struct TokenBody {
    #[schema(pattern = "^[A-Za-z0-9]{32}$")]
    pub token: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct EmailBody {
    /// Trimmed and lower-cased before use (`domain::EmailAddress`).
    #[schema(format = Email, max_length = 254)]
    pub email: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CodeOnly {
    pub code: &'static str,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MfaSummary {
    pub totp: bool,
    pub webauthn_credentials: u32,
    pub recovery_codes_left: u32,
}

impl From<&Factors> for MfaSummary {
    fn from(factors: &Factors) -> Self {
        Self {
            totp: factors.totp,
            webauthn_credentials: factors.webauthn_credentials as u32,
            recovery_codes_left: factors.recovery_codes_left as u32,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
    pub email_verified: bool,
    pub created_at: String,
    pub mfa: MfaSummary,
}

impl UserView {
    pub fn from_session(session: &crate::services::sessions::CurrentSession) -> Self {
        Self {
            id: session.user_id,
            email: session.email.to_string(),
            role: session.role,
            email_verified: session.email_verified,
            created_at: millis_to_rfc3339(session.user_created_at),
            mfa: MfaSummary::from(&session.factors),
        }
    }

    pub fn new(account: &Account) -> Self {
        Self {
            id: account.id,
            email: account.email.to_string(),
            role: account.role,
            email_verified: account.email_verified,
            created_at: millis_to_rfc3339(account.created_at),
            mfa: MfaSummary::from(&account.factors),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionInfo {
    pub id: Uuid,
    pub expires_at: String,
    pub idle_expires_at: String,
}

impl From<&IssuedSession> for SessionInfo {
    fn from(session: &IssuedSession) -> Self {
        Self {
            id: session.id,
            expires_at: millis_to_rfc3339(session.absolute_expires_at),
            idle_expires_at: millis_to_rfc3339(session.idle_expires_at),
        }
    }
}

/// One second factor as the factor review after a password reset lists it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ReviewedFactor {
    /// `totp` or `webauthn`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The passkey's id (for `DELETE /auth/webauthn/credentials/{id}`); absent for TOTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub enrolled_at: String,
}

/// Present on the logins after a password reset until one completes: every second factor
/// of the account, so the owner can spot (and then remove) one they never enrolled.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FactorReview {
    pub password_reset_at: String,
    pub factors: Vec<ReviewedFactor>,
}

impl From<&crate::services::mfa::FactorReview> for FactorReview {
    fn from(review: &crate::services::mfa::FactorReview) -> Self {
        Self {
            password_reset_at: millis_to_rfc3339(review.since),
            factors: review
                .factors
                .iter()
                .map(|factor| match factor {
                    EnrolledFactor::Totp { enabled_at } => ReviewedFactor {
                        kind: "totp",
                        id: None,
                        name: None,
                        enrolled_at: millis_to_rfc3339(*enabled_at),
                    },
                    EnrolledFactor::Passkey {
                        id,
                        name,
                        created_at,
                    } => ReviewedFactor {
                        kind: "webauthn",
                        id: Some(*id),
                        name: Some(name.clone()),
                        enrolled_at: millis_to_rfc3339(*created_at),
                    },
                })
                .collect(),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct LoginOk {
    pub code: &'static str,
    pub user: UserView,
    pub csrf_token: String,
    pub session: SessionInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub factor_review: Option<FactorReview>,
    /// Present (`true`) when the policy (`AUTH_POLICY=psd2`, or `PRIVILEGED_POLICY=pci`
    /// for staff and admin) requires a second factor this account does not have: until
    /// one is enrolled, only `/auth/me`, `/auth/csrf`, `/auth/logout` and the enrollment
    /// routes answer; everything else is `403 mfa_enrollment_required`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub mfa_enrollment_required: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MfaRequired {
    pub code: &'static str,
    pub methods: Vec<&'static str>,
    pub csrf_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub factor_review: Option<FactorReview>,
}

/// Documentation of answers that take one of two shapes.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum LoginAnswer {
    /// `login_ok`: an active session.
    LoginOk(LoginOk),
    /// `mfa_required`: an mfa_pending session; complete it with one of `methods`.
    MfaRequired(MfaRequired),
}

/// `login_ok` (a login completed) or `mfa_verified` (step-up refreshed).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code, clippy::large_enum_variant)]
pub enum FactorAnswer {
    LoginOk(LoginOk),
    MfaVerified(CodeOnly),
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MeResponse {
    pub code: &'static str,
    pub user: UserView,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CsrfResponse {
    pub code: &'static str,
    pub csrf_token: String,
}

pub fn parse_email(raw: &str) -> ApiResult<EmailAddress> {
    EmailAddress::parse(raw)
        .ok_or_else(|| ApiError::field("email", "must be a valid email address"))
}

error_responses!(
    RegisterErrors = PRE_AUTH,
    BODY,
    &[(
        422,
        "`weak_password` (with `reasons`: `too_short`, `too_long`, `banned`, `too_guessable`, `contains_email`, `breached`)",
    )]
);

#[utoipa::path(
    post,
    path = "/auth/register",
    tag = "registration",
    summary = "Register an account",
    request_body = Registration,
    responses(
        (status = 201, description = "`verification_email_sent` — also when the email is taken (its owner gets a notice instead)", body = CodeOnly),
        RegisterErrors,
    ),
)]
pub async fn register(
    _: PreAuthRateLimit,
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    JsonBody(body): JsonBody<Registration>,
) -> ApiResult<impl IntoResponse> {
    let email = parse_email(&body.email)?;
    state
        .accounts
        .register(&email, &body.password, &ctx)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CodeOnly {
            code: "verification_email_sent",
        }),
    ))
}

error_responses!(
    VerifyEmailErrors = PRE_AUTH,
    BODY,
    &[(400, "`invalid_token`: unknown, used or expired")]
);

#[utoipa::path(
    post,
    path = "/auth/verify-email",
    tag = "registration",
    summary = "Verify the email address with the emailed token",
    request_body = TokenBody,
    responses(
        (status = 200, description = "`email_verified`", body = CodeOnly),
        VerifyEmailErrors,
    ),
)]
pub async fn verify_email(
    _: PreAuthRateLimit,
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    JsonBody(body): JsonBody<TokenBody>,
) -> ApiResult<Json<CodeOnly>> {
    state.accounts.verify_email(body.token.trim(), &ctx).await?;
    Ok(Json(CodeOnly {
        code: "email_verified",
    }))
}

#[utoipa::path(
    post,
    path = "/auth/verify-email/resend",
    tag = "registration",
    summary = "Send a new verification email",
    request_body = EmailBody,
    responses(
        (status = 202, description = "`verification_email_sent`, answered before any look-up: the same body and timing whether or not the account exists (only an unverified account gets an email)", body = CodeOnly),
        PreAuthErrors,
    ),
)]
pub async fn resend_verification(
    _: PreAuthRateLimit,
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    JsonBody(body): JsonBody<EmailBody>,
) -> ApiResult<impl IntoResponse> {
    let email = parse_email(&body.email)?;
    Ok(answered_before_lookup(
        "verification_email_sent",
        ctx,
        |ctx| async move { state.accounts.resend_verification(&email, &ctx).await },
    ))
}

/// `202 code` at once, with the work done in the background: neither the body nor the
/// timing may tell whether an account exists (verification resend, reset request).
pub(super) fn answered_before_lookup<F, Fut>(
    code: &'static str,
    ctx: RequestContext,
    work: F,
) -> (StatusCode, Json<CodeOnly>)
where
    F: FnOnce(RequestContext) -> Fut,
    Fut: std::future::Future<Output = Result<(), ServiceError>> + Send + 'static,
{
    let request_id = ctx.request_id.clone();
    let work = work(ctx);
    tokio::spawn(async move {
        if let Err(error) = work.await {
            tracing::error!(%request_id, %error, code, "background work of a 202 answer failed");
        }
    });
    (StatusCode::ACCEPTED, Json(CodeOnly { code }))
}

error_responses!(
    LoginErrors = PRE_AUTH,
    BODY,
    &[
        (
            401,
            "`invalid_credentials`: same body and timing whether or not the email exists; under `AUTH_POLICY=psd2` also for a wrong, replayed or missing `code` — one answer whichever factor failed",
        ),
        (
            403,
            "`email_not_verified` or `account_disabled` (only once every factor the login checks was right)",
        ),
        (
            429,
            "`account_locked` (with `retry_after` and a `Retry-After` header)"
        ),
    ]
);

#[utoipa::path(
    post,
    path = "/auth/login",
    tag = "sessions",
    summary = "Log in with email and password (and, under AUTH_POLICY=psd2, a one-time code)",
    description = "Default policy: the password step; an account with a second factor gets `mfa_required` and an mfa_pending session. `AUTH_POLICY=psd2` (strong customer authentication, docs/API.md §11): the password and `code` are checked together, there is no `mfa_required` step, and every failure is the same `401 invalid_credentials` (status, body, headers, timing), counted once toward the lockout; an account without a second factor gets `login_ok` with `mfa_enrollment_required: true` and may only enroll one.",
    request_body = Credentials,
    responses(
        (status = 200, description = "`login_ok` (active session: `LoginOk`) or `mfa_required` (mfa_pending session: `MfaRequired`); sets the session and `csrf_token` cookies", body = LoginAnswer),
        LoginErrors,
    ),
)]
pub async fn login(
    _: PreAuthRateLimit,
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    jar: CookieJar,
    JsonBody(body): JsonBody<Credentials>,
) -> ApiResult<Response> {
    let email = parse_email(&body.email)?;
    if body.code.as_ref().is_some_and(|c| c.chars().count() > 64) {
        return Err(ApiError::field("code", "at most 64 characters"));
    }
    let outcome = state
        .accounts
        .login(&email, &body.password, body.code.as_deref(), &ctx)
        .await?;
    let Some(methods) = outcome.mfa_methods else {
        return Ok(login_ok(&state, jar, &outcome.account, &outcome.session));
    };
    let csrf_token = state.keys.csrf_token_for(&outcome.session.token);
    let jar = cookies::with_session(
        jar,
        &state.settings.session,
        &outcome.session.token,
        &csrf_token,
    );
    Ok((
        jar,
        Json(MfaRequired {
            code: "mfa_required",
            methods,
            csrf_token,
            factor_review: outcome
                .account
                .factor_review
                .as_ref()
                .map(FactorReview::from),
        }),
    )
        .into_response())
}

/// A session that just became active (login completed): new cookies and `login_ok`.
pub fn login_ok(
    state: &AppState,
    jar: CookieJar,
    account: &Account,
    session: &IssuedSession,
) -> Response {
    let csrf_token = state.keys.csrf_token_for(&session.token);
    let jar = cookies::with_session(jar, &state.settings.session, &session.token, &csrf_token);
    (
        jar,
        Json(LoginOk {
            code: "login_ok",
            user: UserView::new(account),
            csrf_token,
            session: SessionInfo::from(session),
            factor_review: account.factor_review.as_ref().map(FactorReview::from),
            mfa_enrollment_required: state.policy.second_factor_required(account.role)
                && !account.factors.any_second_factor(),
        }),
    )
        .into_response()
}

#[utoipa::path(
    get,
    path = "/auth/me",
    tag = "sessions",
    summary = "The caller's account",
    responses(
        (status = 200, description = "`ok`", body = MeResponse),
        EnrollingReadErrors,
    ),
    security(("session_cookie" = [])),
)]
pub async fn me(EnrollingSession(session): EnrollingSession) -> ApiResult<Json<MeResponse>> {
    // Everything comes from the session's cached snapshot: a session check, no database.
    Ok(Json(MeResponse {
        code: "ok",
        user: UserView::from_session(&session),
    }))
}

#[utoipa::path(
    get,
    path = "/auth/csrf",
    tag = "sessions",
    summary = "The session's CSRF token (pending or active session)",
    responses(
        (status = 200, description = "`ok`", body = CsrfResponse),
        AnySessionReadErrors,
    ),
    security(("session_cookie" = [])),
)]
pub async fn csrf(
    State(state): State<AppState>,
    AnySession(session): AnySession,
) -> Json<CsrfResponse> {
    Json(CsrfResponse {
        code: "ok",
        csrf_token: state.keys.csrf_token_for(&session.token),
    })
}

#[utoipa::path(
    post,
    path = "/auth/logout",
    tag = "sessions",
    summary = "Log out (pending or active session); clears the cookies",
    responses(
        (status = 200, description = "`logged_out`", body = CodeOnly),
        AnySessionErrors,
    ),
    security(("session_cookie" = [], "csrf_header" = [])),
)]
pub async fn logout(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    AnySession(session): AnySession,
    jar: CookieJar,
) -> ApiResult<impl IntoResponse> {
    state.sessions.logout(&session, &ctx).await?;
    Ok((
        cookies::cleared(jar, &state.settings.session),
        Json(CodeOnly { code: "logged_out" }),
    ))
}
