//! The authorization endpoint and its interaction (docs/API.md §8 "Login and consent").
//!
//! `begin` validates a request in RFC 6749 order: until the client and its redirect URI
//! are known, errors go back to the browser (no redirect to an unverified place); after,
//! they go to the client as `error`, `state` and `iss` (RFC 9207). A valid request is kept
//! for 10 minutes under an unguessable id and the browser is sent to the login UI, because
//! the `SameSite=Strict` session cookie does not come with a cross-site navigation: only a
//! page of our own site can see the session. The UI then reads the request (`info`), logs
//! the user in or steps up, shows consent, and `accept`s or `reject`s it.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::claims::{self, Authentication, Loa};
use super::clients::{Client, EMAIL, GrantType, OPENID, PAYMENT_INITIATION};
use super::{CODE_LIFETIME, ErrorCode, OAuth, OAuthError, OAuthResult, REQUEST_LIFETIME};
use crate::crypto::token_hash;
use crate::domain::{Millis, SessionState, now_millis};
use crate::services::audit::{AuditEvent, OAuthEvent, RequestContext};
use crate::services::payments::PaymentOrder;
use crate::services::sessions::CurrentSession;
use crate::services::{ServiceError, ServiceResult};
use crate::storage::db::oauth as rows;
use crate::storage::db::sessions as session_rows;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prompt {
    pub none: bool,
    pub login: bool,
    pub consent: bool,
}

/// A validated authorization request waiting for the user (store: `oauth:request:<id>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingAuthorization {
    pub id: Uuid,
    pub client_id: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub prompt: Prompt,
    /// Seconds.
    pub max_age: Option<u64>,
    /// The level `acr_values` asks for, as an essential claim.
    pub acr: Option<Loa>,
    pub login_hint: Option<String>,
    pub resource: Option<String>,
    pub authorization_details: Option<serde_json::Value>,
    /// RFC 9449 §10: the code may only be redeemed with a DPoP proof by this key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_jkt: Option<String>,
    pub created_at: Millis,
    /// For `payment_initiation` details: the §9 transaction the user confirms, opened for
    /// the session that is looking at the request.
    #[serde(default)]
    pub transaction: Option<LinkedTransaction>,
}

/// A §9 transaction opened for an authorization request, and whose session it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkedTransaction {
    pub id: Uuid,
    pub user_id: Uuid,
    pub session_id: Uuid,
}

/// What a code stands for until it is exchanged (store: `oauth:code:<hash>`, 60 s).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuedCode {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub scopes: Vec<String>,
    pub nonce: Option<String>,
    pub resource: Option<String>,
    pub authorization_details: Option<serde_json::Value>,
    /// The confirmed hash of the payment details (dynamic linking), recorded with the grant.
    #[serde(default)]
    pub tx_hash: Option<String>,
    pub authentication: Authentication,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_jkt: Option<String>,
}

/// What the login UI learns about a request (`GET /auth/oauth/requests/{id}`).
#[derive(Debug, Clone)]
pub struct RequestInfo {
    pub id: Uuid,
    pub client_id: String,
    pub client_name: String,
    pub scopes: Vec<String>,
    pub authorization_details: Vec<serde_json::Value>,
    pub login_required: bool,
    pub step_up_required: bool,
    pub consent_required: bool,
    /// The session must set up a second factor before it can allow anything (§11).
    pub mfa_enrollment_required: bool,
    /// Payments: the §9 transaction to confirm before `accept` (docs/API.md §8).
    pub transaction_id: Option<Uuid>,
    pub login_hint: Option<String>,
    /// Set when the request is already decided (prompt=none could not be met, or the
    /// required level cannot be reached): the UI just navigates there.
    pub redirect_to: Option<String>,
}

/// Where the authorization endpoint sends the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorize {
    /// To the login UI with the request id.
    Interaction(String),
    /// Back to the client: a code, or an error.
    Client(String),
}

/// What the current session lacks for a request.
#[derive(Debug, Clone, Copy, Default)]
struct Assessment {
    login_required: bool,
    /// Signed in, but under the enrollment gate (docs/API.md §11): set up a factor first.
    enrollment_required: bool,
    step_up_required: bool,
    consent_required: bool,
    /// The level asked for cannot be reached: the user has no second factor.
    unreachable: bool,
}

impl Assessment {
    fn interaction_needed(&self) -> bool {
        self.login_required
            || self.enrollment_required
            || self.step_up_required
            || self.consent_required
    }
}

pub(super) fn request_key(id: Uuid) -> String {
    format!("oauth:request:{id}")
}

pub(super) fn code_key(code: &str) -> String {
    format!("oauth:code:{}", token_hash(code))
}

pub(super) fn used_code_key(code: &str) -> String {
    format!("oauth:code-used:{}", token_hash(code))
}

fn is_pkce_value(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
}

/// `redirect_uri` with the response parameters added to its query.
pub fn with_params(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    match url::Url::parse(redirect_uri) {
        Ok(mut url) => {
            {
                let mut query = url.query_pairs_mut();
                for (name, value) in params {
                    query.append_pair(name, value);
                }
            }
            url.to_string()
        }
        // Registered URIs were validated; this cannot happen, but never redirect blindly.
        Err(_) => redirect_uri.to_owned(),
    }
}

impl OAuth {
    /// The client's error response: `error`, `error_description`, `state`, `iss`.
    pub fn error_redirect(
        &self,
        redirect_uri: &str,
        state: Option<&str>,
        error: &OAuthError,
    ) -> String {
        let mut params = vec![
            ("error", error.code.as_str()),
            ("error_description", error.description.as_str()),
        ];
        if let Some(state) = state {
            params.push(("state", state));
        }
        params.push(("iss", self.issuer()));
        with_params(redirect_uri, &params)
    }

    /// The authorization endpoint. `Err` is for errors that must not redirect (unknown
    /// client, unregistered redirect URI); everything else is a redirect.
    pub async fn begin(
        &self,
        params: &HashMap<String, String>,
        session: Option<&CurrentSession>,
        ctx: &RequestContext,
    ) -> OAuthResult<Authorize> {
        let client_id = params
            .get("client_id")
            .ok_or_else(|| OAuthError::invalid_request("client_id is missing"))?;
        let client = self
            .clients
            .find(client_id)
            .await?
            .ok_or_else(|| OAuthError::invalid_request("unknown client_id"))?;
        // RFC 9126 §4: with a request_uri only the pushed parameters count.
        let pushed;
        let params = match params.get("request_uri") {
            Some(request_uri) => {
                pushed = self.take_pushed(&client, request_uri).await?;
                &pushed
            }
            None if client.is_fapi2() || client.metadata.require_pushed_authorization_requests => {
                return Err(OAuthError::invalid_request(
                    "this client must push its authorization requests (RFC 9126): request_uri is missing",
                ));
            }
            None => params,
        };
        let redirect_uri = match params.get("redirect_uri") {
            Some(uri) if client.has_redirect_uri(uri) => uri.clone(),
            Some(_) => {
                return Err(OAuthError::invalid_request(
                    "redirect_uri is not registered for this client",
                ));
            }
            None if client.metadata.redirect_uris.len() == 1 => {
                client.metadata.redirect_uris[0].clone()
            }
            None => return Err(OAuthError::invalid_request("redirect_uri is missing")),
        };
        let state = params.get("state").cloned();
        let pending = match self.validate(&client, redirect_uri.clone(), params) {
            Ok(pending) => pending,
            Err(error) => {
                self.audit_denied(&client, &error, None, ctx).await?;
                return Ok(Authorize::Client(self.error_redirect(
                    &redirect_uri,
                    state.as_deref(),
                    &error,
                )));
            }
        };
        // A same-site navigation brings the session: finish at once when nothing is asked.
        if let Some(session) = session.filter(|s| s.state == SessionState::Active) {
            let assessment = self.assess(&client, &pending, Some(session)).await?;
            if !assessment.interaction_needed() && !assessment.unreachable {
                // Never a payment: those always need the user (assess).
                let location = self
                    .grant(&client, &pending, session, false, None, ctx)
                    .await?;
                return Ok(Authorize::Client(location));
            }
        }
        let value = serde_json::to_string(&pending).map_err(anyhow::Error::from)?;
        self.store
            .set(&request_key(pending.id), &value, REQUEST_LIFETIME)
            .await
            .map_err(ServiceError::from)?;
        Ok(Authorize::Interaction(with_params(
            &self.settings.login_ui_url,
            &[("request", &pending.id.to_string())],
        )))
    }

    /// Everything after the redirect URI is known (RFC 6749 §4.1.2.1 errors).
    pub(super) fn validate(
        &self,
        client: &Client,
        redirect_uri: String,
        params: &HashMap<String, String>,
    ) -> OAuthResult<PendingAuthorization> {
        let get = |name: &str| params.get(name).map(String::as_str);
        match get("response_type") {
            Some("code") => {}
            Some(_) => {
                return Err(OAuthError::new(
                    ErrorCode::UnsupportedResponseType,
                    "only response_type=code is supported",
                ));
            }
            None => return Err(OAuthError::invalid_request("response_type is missing")),
        }
        if !client.allows_grant(GrantType::AuthorizationCode) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "this client may not use the authorization code flow",
            ));
        }
        if params.contains_key("request") {
            return Err(OAuthError::new(
                ErrorCode::RequestNotSupported,
                "request objects are not supported",
            ));
        }
        if let Some(mode) = get("response_mode")
            && mode != "query"
        {
            return Err(OAuthError::invalid_request(
                "only response_mode=query is supported",
            ));
        }
        let code_challenge = match (get("code_challenge"), get("code_challenge_method")) {
            (None, _) => {
                return Err(OAuthError::invalid_request(
                    "code_challenge is required (PKCE with S256)",
                ));
            }
            (Some(_), Some(method)) if method != "S256" => {
                return Err(OAuthError::invalid_request(
                    "code_challenge_method must be S256",
                ));
            }
            (Some(_), None) => {
                return Err(OAuthError::invalid_request(
                    "code_challenge_method is required and must be S256",
                ));
            }
            (Some(challenge), Some(_)) if challenge.len() == 43 && is_pkce_value(challenge) => {
                challenge.to_owned()
            }
            (Some(_), Some(_)) => {
                return Err(OAuthError::invalid_request(
                    "code_challenge must be the 43-character base64url SHA-256 of the verifier",
                ));
            }
        };
        let allowed = client.allowed_scopes();
        let mut scopes: Vec<String> = Vec::new();
        for scope in get("scope").unwrap_or(OPENID).split_ascii_whitespace() {
            if !allowed.contains(scope) {
                return Err(OAuthError::new(
                    ErrorCode::InvalidScope,
                    format!("scope {scope:?} is not allowed for this client"),
                ));
            }
            if !scopes.iter().any(|s| s == scope) {
                scopes.push(scope.to_owned());
            }
        }
        let mut prompt = Prompt::default();
        for value in get("prompt").unwrap_or("").split_ascii_whitespace() {
            match value {
                "none" => prompt.none = true,
                "login" | "select_account" => prompt.login = true,
                "consent" => prompt.consent = true,
                other => {
                    return Err(OAuthError::invalid_request(format!(
                        "prompt value {other:?} is not supported"
                    )));
                }
            }
        }
        if prompt.none && (prompt.login || prompt.consent) {
            return Err(OAuthError::invalid_request(
                "prompt=none cannot be combined with other values",
            ));
        }
        let max_age = match get("max_age") {
            None => None,
            Some(value) => Some(value.parse::<u64>().map_err(|_| {
                OAuthError::invalid_request("max_age must be a non-negative number of seconds")
            })?),
        };
        let acr = match get("acr_values") {
            None => None,
            Some(values) => {
                let known: Vec<Loa> = values
                    .split_ascii_whitespace()
                    .filter_map(Loa::parse)
                    .collect();
                // Any listed level satisfies the request: the lowest one is what is needed.
                match known.into_iter().min() {
                    Some(level) => Some(level),
                    None => {
                        return Err(OAuthError::invalid_request(format!(
                            "acr_values: none is supported (use {} or {})",
                            claims::LOA1,
                            claims::LOA2
                        )));
                    }
                }
            }
        };
        let resource = match get("resource") {
            None => None,
            Some(value) => {
                let ok = url::Url::parse(value).is_ok_and(|u| u.fragment().is_none());
                if !ok {
                    return Err(OAuthError::new(
                        ErrorCode::InvalidTarget,
                        "resource must be an absolute URI without a fragment",
                    ));
                }
                Some(value.to_owned())
            }
        };
        let authorization_details = match get("authorization_details") {
            None => None,
            Some(raw) => Some(self.check_details(client, raw)?),
        };
        let dpop_jkt = match get("dpop_jkt") {
            // RFC 9449 §10: a base64url SHA-256 JWK thumbprint (43 characters).
            Some(jkt)
                if jkt.len() == 43
                    && jkt
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
            {
                Some(jkt.to_owned())
            }
            Some(_) => {
                return Err(OAuthError::invalid_request(
                    "dpop_jkt must be a base64url SHA-256 JWK thumbprint",
                ));
            }
            None => None,
        };
        let login_hint = get("login_hint").map(|h| h.chars().take(254).collect());
        for name in ["state", "nonce"] {
            if get(name).is_some_and(|v| v.len() > 2048) {
                return Err(OAuthError::invalid_request(format!(
                    "{name}: longer than 2048 bytes"
                )));
            }
        }
        Ok(PendingAuthorization {
            id: Uuid::new_v4(),
            client_id: client.id().to_owned(),
            redirect_uri,
            scopes,
            state: get("state").map(str::to_owned),
            nonce: get("nonce").map(str::to_owned),
            code_challenge,
            prompt,
            max_age,
            acr,
            login_hint,
            resource,
            authorization_details,
            dpop_jkt,
            created_at: now_millis(),
            transaction: None,
        })
    }

    /// RFC 9396: a JSON array of objects with a `type` the client registered. Payments
    /// (`payment_initiation`) are validated (ISO 4217 amount, IBAN) and normalized: they
    /// are what the user confirms and what the confirmation's hash covers, so they cannot be
    /// mixed with other types — one confirmation covers the whole request.
    fn check_details(&self, client: &Client, raw: &str) -> OAuthResult<serde_json::Value> {
        let invalid = |d: &str| OAuthError::new(ErrorCode::InvalidAuthorizationDetails, d);
        let value: serde_json::Value = serde_json::from_str(raw)
            .map_err(|_| invalid("authorization_details must be a JSON array"))?;
        let items = value
            .as_array()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| invalid("authorization_details must be a non-empty JSON array"))?;
        let mut payments = 0;
        for item in items {
            let kind = item
                .get("type")
                .and_then(|t| t.as_str())
                .ok_or_else(|| invalid("each authorization detail needs a type"))?;
            if !client
                .metadata
                .authorization_details_types
                .iter()
                .any(|t| t == kind)
            {
                return Err(invalid(
                    "this client may not request that authorization_details type",
                ));
            }
            if kind == PAYMENT_INITIATION {
                payments += 1;
            }
        }
        if payments == 0 {
            return Ok(value);
        }
        if payments != items.len() {
            return Err(invalid(
                "payment_initiation cannot be combined with other types: one confirmation covers the whole request",
            ));
        }
        let order = PaymentOrder::from_authorization_details(items).map_err(|fields| {
            let problems: Vec<String> = fields
                .iter()
                .map(|(field, reason)| format!("{field}: {reason}"))
                .collect();
            invalid(&problems.join("; "))
        })?;
        Ok(as_authorization_details(&order))
    }

    /// What the session lacks for this request.
    async fn assess(
        &self,
        client: &Client,
        pending: &PendingAuthorization,
        session: Option<&CurrentSession>,
    ) -> ServiceResult<Assessment> {
        let Some(session) = session.filter(|s| s.state == SessionState::Active) else {
            return Ok(Assessment {
                login_required: true,
                consent_required: !client.metadata.skip_consent || payment_order(pending).is_some(),
                ..Assessment::default()
            });
        };
        let now = now_millis();
        let auth_time = claims::auth_time_of(session);
        let too_old = pending.max_age.is_some_and(|max| {
            auth_time < pending.created_at && now - auth_time > (max as Millis).saturating_mul(1000)
        });
        let login_required = too_old || (pending.prompt.login && auth_time < pending.created_at);
        // A payment needs SCA (PSD2 RTS Art. 4), whatever the client asked for.
        let needed = if client.is_fapi2() || payment_order(pending).is_some() {
            Some(Loa::Two)
        } else {
            pending.acr
        };
        let short = needed.is_some_and(|level| claims::level_of(session) < level);
        let can_step_up = session.factors.any_second_factor();
        // The set-up comes first; after it the level can be reached by a step-up.
        let enrollment_required = self.policy.enrollment_pending(session) && !login_required;
        // A payment is always shown and confirmed, even to a first-party client.
        let consent_required = if payment_order(pending).is_some() {
            true
        } else if client.metadata.skip_consent {
            false
        } else if pending.prompt.consent || pending.authorization_details.is_some() {
            true
        } else {
            let granted = rows::find_consent(self.db.connection(), session.user_id, client.id())
                .await?
                .unwrap_or_default();
            let granted: BTreeSet<&str> = granted.split_ascii_whitespace().collect();
            !pending.scopes.iter().all(|s| granted.contains(s.as_str()))
        };
        Ok(Assessment {
            login_required,
            enrollment_required,
            step_up_required: short && can_step_up && !login_required,
            consent_required,
            unreachable: short && !can_step_up && !login_required && !enrollment_required,
        })
    }

    async fn pending(&self, id: Uuid) -> ServiceResult<(PendingAuthorization, Client)> {
        let raw = self
            .store
            .get(&request_key(id))
            .await?
            .ok_or(ServiceError::InvalidRequestId)?;
        let pending: PendingAuthorization =
            serde_json::from_str(&raw).map_err(|_| ServiceError::InvalidRequestId)?;
        let client = self
            .clients
            .find(&pending.client_id)
            .await?
            .ok_or(ServiceError::InvalidRequestId)?;
        Ok((pending, client))
    }

    /// Ends a request with an error for the client (single-use: a second end is
    /// `invalid_request_id`), audited as `oauth.authorization_denied`.
    async fn conclude_with_error(
        &self,
        pending: &PendingAuthorization,
        client: &Client,
        error: OAuthError,
        user_id: Option<Uuid>,
        ctx: &RequestContext,
    ) -> ServiceResult<String> {
        if self.store.take(&request_key(pending.id)).await?.is_none() {
            return Err(ServiceError::InvalidRequestId);
        }
        self.audit_denied(client, &error, user_id, ctx)
            .await
            .map_err(|e| ServiceError::Internal(anyhow::anyhow!(e.to_string())))?;
        Ok(self.error_redirect(&pending.redirect_uri, pending.state.as_deref(), &error))
    }

    async fn audit_denied(
        &self,
        client: &Client,
        error: &OAuthError,
        user_id: Option<Uuid>,
        ctx: &RequestContext,
    ) -> OAuthResult<()> {
        let event = AuditEvent::OAuth(OAuthEvent::AuthorizationDenied {
            client_id: client.id().to_owned(),
            error: error.code.as_str().to_owned(),
        });
        self.db.audit_only(ctx.record(event, user_id)).await?;
        Ok(())
    }

    /// `GET /auth/oauth/requests/{id}`: what the UI must do. With `prompt=none` a request
    /// that needs the user is decided at once (`redirect_to` with the OpenID error).
    pub async fn info(
        &self,
        id: Uuid,
        session: Option<&CurrentSession>,
        ctx: &RequestContext,
    ) -> ServiceResult<RequestInfo> {
        let (mut pending, client) = self.pending(id).await?;
        let assessment = self.assess(&client, &pending, session).await?;
        let user_id = session.map(|s| s.user_id);
        let mut redirect_to = None;
        if assessment.unreachable {
            let error = OAuthError::new(
                ErrorCode::UnmetAuthenticationRequirements,
                "the requested authentication level needs a second factor this user has not set up",
            );
            redirect_to = Some(
                self.conclude_with_error(&pending, &client, error, user_id, ctx)
                    .await?,
            );
        } else if pending.prompt.none && assessment.interaction_needed() {
            let (code, what) = if assessment.login_required {
                (ErrorCode::LoginRequired, "the user is not signed in")
            } else if assessment.enrollment_required {
                (
                    ErrorCode::InteractionRequired,
                    "the user must set up a second factor first",
                )
            } else if assessment.step_up_required {
                (ErrorCode::InteractionRequired, "a second factor is needed")
            } else {
                (ErrorCode::ConsentRequired, "the user has not consented")
            };
            let error = OAuthError::new(code, what);
            redirect_to = Some(
                self.conclude_with_error(&pending, &client, error, user_id, ctx)
                    .await?,
            );
        }
        // Payments: the transaction to confirm is opened as soon as a signed-in user looks.
        let transaction_id = match (payment_order(&pending), session) {
            (Some(order), Some(session)) if redirect_to.is_none() && !assessment.login_required => {
                Some(
                    self.linked_transaction(&mut pending, &order, session, ctx)
                        .await?,
                )
            }
            _ => None,
        };
        Ok(RequestInfo {
            id: pending.id,
            client_id: client.id().to_owned(),
            client_name: client.name().to_owned(),
            scopes: pending.scopes.clone(),
            authorization_details: pending
                .authorization_details
                .as_ref()
                .and_then(|d| d.as_array().cloned())
                .unwrap_or_default(),
            login_required: assessment.login_required,
            mfa_enrollment_required: assessment.enrollment_required,
            step_up_required: assessment.step_up_required,
            consent_required: assessment.consent_required,
            transaction_id,
            login_hint: pending.login_hint.clone(),
            redirect_to,
        })
    }

    /// `POST /auth/oauth/requests/{id}/accept`: the user allows the request in this
    /// session. Refused while the session does not satisfy it.
    pub async fn accept(
        &self,
        id: Uuid,
        session: &CurrentSession,
        ctx: &RequestContext,
    ) -> ServiceResult<String> {
        let (mut pending, client) = self.pending(id).await?;
        let assessment = self.assess(&client, &pending, Some(session)).await?;
        if assessment.login_required {
            return Err(ServiceError::NotAuthenticated);
        }
        if assessment.unreachable {
            let error = OAuthError::new(
                ErrorCode::UnmetAuthenticationRequirements,
                "the requested authentication level needs a second factor this user has not set up",
            );
            return self
                .conclude_with_error(&pending, &client, error, Some(session.user_id), ctx)
                .await;
        }
        if assessment.step_up_required {
            return Err(ServiceError::StepUpRequired {
                max_age_secs: self.step_up_max_age.as_secs(),
                methods: crate::services::mfa::methods(&session.factors),
            });
        }
        // Dynamic linking: a payment is allowed only by the confirmation of exactly its
        // details in this session; a step-up that signed nothing does not count.
        let tx_hash = match payment_order(&pending) {
            None => None,
            Some(order) => {
                let confirmed = match pending.transaction.filter(|t| t.is_of(session)) {
                    Some(linked) => {
                        self.transactions
                            .confirmed_hash(linked.id, session.user_id, session.id)
                            .await?
                    }
                    None => None,
                };
                match confirmed {
                    Some(hash) if hash == order.tx_hash() => Some(hash.encode()),
                    _ => {
                        let transaction_id = self
                            .linked_transaction(&mut pending, &order, session, ctx)
                            .await?;
                        return Err(ServiceError::TransactionConfirmationRequired {
                            transaction_id,
                        });
                    }
                }
            }
        };
        // Single use: two concurrent accepts cannot both get a code.
        if self.store.take(&request_key(id)).await?.is_none() {
            return Err(ServiceError::InvalidRequestId);
        }
        self.grant(
            &client,
            &pending,
            session,
            assessment.consent_required,
            tx_hash,
            ctx,
        )
        .await
        .map_err(|e| match e.code {
            ErrorCode::TemporarilyUnavailable => ServiceError::Unavailable(e.description),
            _ => ServiceError::Internal(anyhow::anyhow!(e.to_string())),
        })
    }

    /// `POST /auth/oauth/requests/{id}/reject`: the client gets `access_denied`.
    pub async fn reject(
        &self,
        id: Uuid,
        session: Option<&CurrentSession>,
        ctx: &RequestContext,
    ) -> ServiceResult<String> {
        let (pending, client) = self.pending(id).await?;
        let error = OAuthError::new(ErrorCode::AccessDenied, "the user declined the request");
        self.conclude_with_error(&pending, &client, error, session.map(|s| s.user_id), ctx)
            .await
    }

    /// The §9 transaction of a payment request for this session: the one opened before
    /// while it can still be confirmed (or is), else a new one, remembered with the request.
    async fn linked_transaction(
        &self,
        pending: &mut PendingAuthorization,
        order: &PaymentOrder,
        session: &CurrentSession,
        ctx: &RequestContext,
    ) -> ServiceResult<Uuid> {
        if let Some(linked) = pending.transaction.filter(|t| t.is_of(session))
            && self
                .transactions
                .usable(linked.id, session.user_id, session.id)
                .await?
        {
            return Ok(linked.id);
        }
        let before = serde_json::to_string(&*pending).map_err(anyhow::Error::from)?;
        let created = self
            .transactions
            .create_for(session.user_id, session.id, order.clone(), ctx)
            .await?;
        pending.transaction = Some(LinkedTransaction {
            id: created.transaction_id,
            user_id: session.user_id,
            session_id: session.id,
        });
        let after = serde_json::to_string(&*pending).map_err(anyhow::Error::from)?;
        let age =
            Duration::from_millis(now_millis().saturating_sub(pending.created_at).max(0) as u64);
        let left = REQUEST_LIFETIME.saturating_sub(age);
        // Compare-and-set on the stored request: an accept or reject that took it
        // meanwhile must not bring it back.
        if left.is_zero()
            || !self
                .store
                .replace_if(&request_key(pending.id), Some(&before), &after, left)
                .await?
        {
            return Err(ServiceError::InvalidRequestId);
        }
        Ok(created.transaction_id)
    }

    /// Issues the code for an allowed request and remembers the consent.
    async fn grant(
        &self,
        client: &Client,
        pending: &PendingAuthorization,
        session: &CurrentSession,
        consent_shown: bool,
        tx_hash: Option<String>,
        ctx: &RequestContext,
    ) -> OAuthResult<String> {
        let conn = self.db.connection();
        let row = session_rows::find_by_id(conn, session.id)
            .await?
            .ok_or_else(|| OAuthError::new(ErrorCode::AccessDenied, "the session has ended"))?;
        let authentication = claims::authentication_of(&row);
        let code = crate::crypto::random_token();
        let issued = IssuedCode {
            client_id: client.id().to_owned(),
            redirect_uri: pending.redirect_uri.clone(),
            code_challenge: pending.code_challenge.clone(),
            user_id: session.user_id,
            session_id: session.id,
            scopes: pending.scopes.clone(),
            nonce: pending.nonce.clone(),
            resource: pending.resource.clone(),
            authorization_details: pending.authorization_details.clone(),
            tx_hash: tx_hash.clone(),
            authentication,
            dpop_jkt: pending.dpop_jkt.clone(),
        };
        let value = serde_json::to_string(&issued).map_err(anyhow::Error::from)?;
        self.store
            .set(&code_key(&code), &value, CODE_LIFETIME)
            .await?;
        let scope = pending.scopes.join(" ");
        if consent_shown {
            // Remember the union of what was allowed before and now.
            let before = rows::find_consent(conn, session.user_id, client.id())
                .await?
                .unwrap_or_default();
            let mut all: BTreeSet<&str> = before.split_ascii_whitespace().collect();
            all.extend(pending.scopes.iter().map(String::as_str));
            let all = all.into_iter().collect::<Vec<_>>().join(" ");
            rows::save_consent(conn, session.user_id, client.id(), &all, now_millis()).await?;
        }
        let event = AuditEvent::OAuth(OAuthEvent::AuthorizationGranted {
            client_id: client.id().to_owned(),
            session_id: session.id,
            scope,
            consent_shown,
            tx_hash,
        });
        self.db
            .audit_only(ctx.record(event, Some(session.user_id)))
            .await?;
        let mut params = vec![("code", code.as_str())];
        if let Some(state) = pending.state.as_deref() {
            params.push(("state", state));
        }
        params.push(("iss", self.issuer()));
        Ok(with_params(&pending.redirect_uri, &params))
    }
}

impl LinkedTransaction {
    fn is_of(&self, session: &CurrentSession) -> bool {
        self.user_id == session.user_id && self.session_id == session.id
    }
}

/// The payment order of a request whose details are `payment_initiation` (validated when
/// the request was made), or `None`.
pub fn payment_order(pending: &PendingAuthorization) -> Option<PaymentOrder> {
    let items = pending.authorization_details.as_ref()?.as_array()?;
    let is_payment = items
        .first()
        .and_then(|d| d.get("type"))
        .is_some_and(|t| t == PAYMENT_INITIATION);
    if !is_payment {
        return None;
    }
    PaymentOrder::from_authorization_details(items).ok()
}

/// RFC 9396 wants an array even for one payment; §9 signs the object for one.
fn as_authorization_details(order: &PaymentOrder) -> serde_json::Value {
    match order.details() {
        serde_json::Value::Array(items) => serde_json::Value::Array(items),
        one => serde_json::Value::Array(vec![one]),
    }
}

/// The scopes that put claims about the user into tokens.
pub fn wants_email(scopes: &[String]) -> bool {
    scopes.iter().any(|s| s == EMAIL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_parameters_are_added_to_the_registered_query() {
        assert_eq!(
            with_params(
                "https://app.example/cb?x=1",
                &[("code", "a b"), ("state", "s&t")]
            ),
            "https://app.example/cb?x=1&code=a+b&state=s%26t"
        );
        assert_eq!(
            with_params("com.bank.app:/oauth", &[("code", "c")]),
            "com.bank.app:/oauth?code=c"
        );
    }

    #[test]
    fn pkce_values_use_the_rfc_7636_alphabet() {
        assert!(is_pkce_value(&"a".repeat(43)));
        assert!(!is_pkce_value(&"a".repeat(42)));
        assert!(!is_pkce_value(&format!("{}+", "a".repeat(42))));
    }
}
