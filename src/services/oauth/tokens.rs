//! The token endpoint (authorization_code, refresh_token, client_credentials), and what
//! reads tokens back: userinfo, revocation (RFC 7009) and introspection (RFC 7662).
//!
//! Access tokens are RFC 9068 JWTs (`typ` `at+jwt`) that name their grant (`gid`), so a
//! revoked grant or ended session makes them inactive at once at userinfo and
//! introspection; a single revoked access token is remembered in the store until it
//! would have expired. Refresh tokens (`refresh.rs`) live in their grant's row, rotated on
//! every use. Codes are single-use; a second use revokes what the first issued.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use jsonwebtoken::Validation;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::authorize::{IssuedCode, code_key, used_code_key};
use super::clients::{Client, EMAIL, GrantType, OPENID};
use super::dpop::{Confirmation, DpopProof, PresentedToken};
use super::keys::VerifyError;
use super::refresh::Located;
use super::{ErrorCode, LEEWAY_SECS, OAuth, OAuthError, OAuthResult, USED_CODE_MEMORY, sha256_b64};
use crate::crypto::token_hash;
use crate::domain::{Millis, now_millis};
use crate::services::ServiceError;
use crate::services::audit::{AuditEvent, OAuthEvent, RequestContext};
use crate::storage::db::oauth::{self as rows, GrantRow};
use crate::storage::db::{sessions as session_rows, users};

pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
pub const ID_TOKEN_TYP: &str = "JWT";

/// RFC 9068 claims, plus `sid` (the session) and `gid` (the grant) for user tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub iat: u64,
    pub jti: String,
    pub client_id: String,
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<Uuid>,
    /// RFC 9449 §6.1: the DPoP key the token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
    /// RFC 9396 §9.1: what was authorized (e.g. the confirmed payment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_details: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub iat: u64,
    pub auth_time: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    pub acr: String,
    pub amr: Vec<String>,
    pub sid: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
}

/// The token endpoint's success body (RFC 6749 §5.1).
#[derive(Debug, Clone, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// RFC 9396 §7: the details granted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_details: Option<serde_json::Value>,
}

/// What `/oauth/userinfo` returns.
#[derive(Debug, Clone, Serialize)]
pub struct UserInfo {
    pub sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
}

/// RFC 7662 §2.2; `{active: false}` carries nothing else.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_details: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
    /// The hash of the payment details the user confirmed (docs/API.md §8, §9).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_hash: Option<String>,
}

/// Why a bearer token was refused at userinfo.
#[derive(Debug, thiserror::Error)]
pub enum BearerError {
    #[error("{0}")]
    InvalidToken(&'static str),
    #[error("the token lacks the openid scope")]
    InsufficientScope,
    /// A DPoP-bound token came without the DPoP scheme or proof (`invalid_token`).
    #[error("{0}")]
    DpopRequired(&'static str),
    /// `invalid_dpop_proof` (RFC 9449 §7.1).
    #[error("{0}")]
    InvalidDpopProof(String),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<crate::storage::StorageError> for BearerError {
    fn from(error: crate::storage::StorageError) -> Self {
        BearerError::Service(error.into())
    }
}

fn secs(millis: Millis) -> u64 {
    (millis.max(0) / 1000) as u64
}

/// `token_type` of an access token bound (or not) to a DPoP key.
fn token_type(cnf: Option<&Confirmation>) -> &'static str {
    if cnf.is_some() { "DPoP" } else { "Bearer" }
}

fn revoked_key(jti: &str) -> String {
    format!("oauth:revoked:{jti}")
}

/// A grant and its first refresh token, ready to be written.
struct NewGrant {
    row: GrantRow,
    refresh: Option<String>,
}

impl OAuth {
    /// `POST /oauth/token`, after client authentication.
    pub async fn token(
        &self,
        client: &Client,
        params: &HashMap<String, String>,
        dpop: Option<&DpopProof>,
        ctx: &RequestContext,
    ) -> OAuthResult<TokenResponse> {
        let grant_type = params
            .get("grant_type")
            .ok_or_else(|| OAuthError::invalid_request("grant_type is missing"))?;
        let grant = match grant_type.as_str() {
            "authorization_code" => GrantType::AuthorizationCode,
            "refresh_token" => GrantType::RefreshToken,
            "client_credentials" => GrantType::ClientCredentials,
            _ => {
                return Err(OAuthError::new(
                    ErrorCode::UnsupportedGrantType,
                    "supported: authorization_code, refresh_token, client_credentials",
                ));
            }
        };
        if !client.allows_grant(grant) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                format!("this client may not use {}", grant.as_str()),
            ));
        }
        let response = match grant {
            GrantType::AuthorizationCode => self.exchange_code(client, params, dpop, ctx).await?,
            GrantType::RefreshToken => self.refresh(client, params, dpop, ctx).await?,
            GrantType::ClientCredentials => {
                self.client_credentials(client, params, dpop, ctx).await?
            }
        };
        metrics::counter!(
            "oauth_tokens_total",
            "client_id" => client.id().to_owned(),
            "grant_type" => grant.as_str(),
            "outcome" => if grant == GrantType::RefreshToken { "refreshed" } else { "issued" },
        )
        .increment(1);
        Ok(response)
    }

    async fn exchange_code(
        &self,
        client: &Client,
        params: &HashMap<String, String>,
        dpop: Option<&DpopProof>,
        ctx: &RequestContext,
    ) -> OAuthResult<TokenResponse> {
        let code = params
            .get("code")
            .ok_or_else(|| OAuthError::invalid_request("code is missing"))?;
        let Some(raw) = self
            .store
            .take(&code_key(code))
            .await
            .map_err(ServiceError::from)?
        else {
            self.code_replayed(client, code, ctx).await?;
            return Err(OAuthError::invalid_grant(
                "the code is unknown, used or expired",
            ));
        };
        let issued: IssuedCode = serde_json::from_str(&raw).map_err(anyhow::Error::from)?;
        // Remember the use first, so a replay from now on revokes what this one issues.
        let grant_id = Uuid::now_v7();
        self.store
            .set(
                &used_code_key(code),
                &grant_id.to_string(),
                USED_CODE_MEMORY,
            )
            .await
            .map_err(ServiceError::from)?;
        if issued.client_id != client.id() {
            return Err(OAuthError::invalid_grant(
                "the code was issued to another client",
            ));
        }
        if params
            .get("redirect_uri")
            .is_some_and(|r| *r != issued.redirect_uri)
        {
            return Err(OAuthError::invalid_grant(
                "redirect_uri does not match the authorization request",
            ));
        }
        let verifier = params
            .get("code_verifier")
            .ok_or_else(|| OAuthError::invalid_grant("code_verifier is missing (PKCE)"))?;
        if !crate::crypto::constant_time_eq(
            sha256_b64(verifier).as_bytes(),
            issued.code_challenge.as_bytes(),
        ) {
            return Err(OAuthError::invalid_grant(
                "code_verifier does not match the code_challenge",
            ));
        }
        if let Some(jkt) = &issued.dpop_jkt
            && dpop.is_none_or(|p| p.jkt != *jkt)
        {
            return Err(OAuthError::new(
                ErrorCode::InvalidDpopProof,
                "the code is bound to another DPoP key (dpop_jkt)",
            ));
        }
        let audience = issued
            .resource
            .clone()
            .unwrap_or_else(|| self.settings.access_token_audience.clone());
        let jkt = dpop.map(|p| p.jkt.clone());
        let NewGrant { row, refresh } = self
            .new_grant(client, grant_id, &issued, audience, jkt, ctx)
            .await?;
        self.user_tokens(client, &row, refresh, issued.nonce.as_deref())
            .await
    }

    /// A code came back after its first use: revoke what the first use issued.
    async fn code_replayed(
        &self,
        client: &Client,
        code: &str,
        ctx: &RequestContext,
    ) -> OAuthResult<()> {
        let Some(first) = self
            .store
            .get(&used_code_key(code))
            .await
            .map_err(ServiceError::from)?
        else {
            return Ok(());
        };
        let Ok(grant_id) = first.parse::<Uuid>() else {
            return Ok(());
        };
        let Some(grant) = rows::find_grant(self.db.connection(), grant_id).await? else {
            return Ok(());
        };
        if grant.client_id != client.id() {
            return Ok(());
        }
        self.family_reused(client, &grant, "authorization_code", ctx)
            .await
    }

    /// The grant row, carrying its first refresh token, and its audit record: one
    /// transaction, one row of token state.
    async fn new_grant(
        &self,
        client: &Client,
        id: Uuid,
        issued: &IssuedCode,
        audience: String,
        dpop_jkt: Option<String>,
        ctx: &RequestContext,
    ) -> OAuthResult<NewGrant> {
        let now = now_millis();
        let mut uow = self.db.begin().await?;
        let session = session_rows::find_by_id(uow.conn(), issued.session_id)
            .await?
            .ok_or_else(|| {
                OAuthError::invalid_grant("the session this code came from has ended")
            })?;
        if !users::can_sign_in(uow.conn(), issued.user_id).await? {
            return Err(OAuthError::invalid_grant("the account is disabled"));
        }
        // Refresh tokens end with their session (docs/API.md §8).
        let refresh = client
            .allows_grant(GrantType::RefreshToken)
            .then(|| self.refresh_tokens.issue(id));
        let row = GrantRow {
            id,
            client_id: client.id().to_owned(),
            user_id: issued.user_id,
            session_id: issued.session_id,
            scope: issued.scopes.join(" "),
            audience,
            auth_time: issued.authentication.auth_time,
            acr: issued.authentication.acr.as_str().to_owned(),
            amr: serde_json::to_string(&issued.authentication.amr).map_err(anyhow::Error::from)?,
            authorization_details: issued.authorization_details.as_ref().map(|d| d.to_string()),
            tx_hash: issued.tx_hash.clone(),
            dpop_jkt,
            created_at: now,
            revoked_at: None,
            refresh_hash: refresh.as_deref().map(token_hash),
            refresh_issued_at: refresh.as_ref().map(|_| now),
            refresh_expires_at: refresh.as_ref().map(|_| session.absolute_expires_at),
        };
        rows::insert_grant(uow.conn(), row.clone()).await?;
        uow.audit(ctx.record(
            AuditEvent::OAuth(OAuthEvent::TokenIssued {
                client_id: client.id().to_owned(),
                grant_type: GrantType::AuthorizationCode.as_str(),
                grant_id: Some(id),
            }),
            Some(issued.user_id),
        ));
        uow.commit().await?;
        Ok(NewGrant { row, refresh })
    }

    /// Access token, ID token (with `openid`) and the refresh token for a user grant.
    pub(super) async fn user_tokens(
        &self,
        client: &Client,
        grant: &GrantRow,
        refresh: Option<String>,
        nonce: Option<&str>,
    ) -> OAuthResult<TokenResponse> {
        let now = jsonwebtoken::get_current_timestamp();
        let ttl = self.settings.access_token_ttl.as_secs();
        let access = AccessClaims {
            iss: self.issuer().to_owned(),
            sub: grant.user_id.to_string(),
            aud: grant.audience.clone(),
            exp: now + ttl,
            iat: now,
            jti: Uuid::new_v4().to_string(),
            client_id: client.id().to_owned(),
            scope: grant.scope.clone(),
            auth_time: Some(secs(grant.auth_time)),
            acr: Some(grant.acr.clone()),
            sid: Some(grant.session_id),
            gid: Some(grant.id),
            cnf: grant.dpop_jkt.clone().map(|jkt| Confirmation { jkt }),
            authorization_details: details(grant),
        };
        let access_token = self.keys.sign(ACCESS_TOKEN_TYP, &access).await?;
        let scopes: Vec<String> = grant
            .scope
            .split_ascii_whitespace()
            .map(str::to_owned)
            .collect();
        let id_token = if scopes.iter().any(|s| s == OPENID) {
            let amr: Vec<String> = serde_json::from_str(&grant.amr).map_err(anyhow::Error::from)?;
            let mut claims = IdClaims {
                iss: self.issuer().to_owned(),
                sub: grant.user_id.to_string(),
                aud: client.id().to_owned(),
                exp: now + self.settings.id_token_ttl.as_secs(),
                iat: now,
                auth_time: secs(grant.auth_time),
                nonce: nonce.map(str::to_owned),
                acr: grant.acr.clone(),
                amr,
                sid: grant.session_id,
                email: None,
                email_verified: None,
            };
            if scopes.iter().any(|s| s == EMAIL) {
                let user = users::find_by_id(self.db.connection(), grant.user_id)
                    .await?
                    .ok_or_else(|| OAuthError::invalid_grant("the user no longer exists"))?;
                claims.email = Some(user.email.as_str().to_owned());
                claims.email_verified = Some(user.email_verified_at.is_some());
            }
            Some(self.keys.sign(ID_TOKEN_TYP, &claims).await?)
        } else {
            None
        };
        Ok(TokenResponse {
            access_token,
            token_type: token_type(access.cnf.as_ref()),
            expires_in: ttl,
            scope: grant.scope.clone(),
            id_token,
            refresh_token: refresh,
            authorization_details: access.authorization_details,
        })
    }

    async fn client_credentials(
        &self,
        client: &Client,
        params: &HashMap<String, String>,
        dpop: Option<&DpopProof>,
        ctx: &RequestContext,
    ) -> OAuthResult<TokenResponse> {
        let allowed: BTreeSet<&str> = client
            .allowed_scopes()
            .into_iter()
            .filter(|s| *s != OPENID && *s != EMAIL)
            .collect();
        let scope = match params.get("scope") {
            None => allowed.iter().copied().collect::<Vec<_>>().join(" "),
            Some(requested) => {
                for scope in requested.split_ascii_whitespace() {
                    if !allowed.contains(scope) {
                        return Err(OAuthError::new(
                            ErrorCode::InvalidScope,
                            format!("scope {scope:?} is not allowed for this client"),
                        ));
                    }
                }
                requested
                    .split_ascii_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        };
        let audience = match params.get("resource") {
            Some(resource) if url::Url::parse(resource).is_ok_and(|u| u.fragment().is_none()) => {
                resource.clone()
            }
            Some(_) => {
                return Err(OAuthError::new(
                    ErrorCode::InvalidTarget,
                    "resource must be an absolute URI without a fragment",
                ));
            }
            None => self.settings.access_token_audience.clone(),
        };
        let now = jsonwebtoken::get_current_timestamp();
        let ttl = self.settings.access_token_ttl.as_secs();
        let claims = AccessClaims {
            iss: self.issuer().to_owned(),
            sub: client.id().to_owned(),
            aud: audience,
            exp: now + ttl,
            iat: now,
            jti: Uuid::new_v4().to_string(),
            client_id: client.id().to_owned(),
            scope: scope.clone(),
            auth_time: None,
            acr: None,
            sid: None,
            gid: None,
            cnf: dpop.map(|p| Confirmation { jkt: p.jkt.clone() }),
            authorization_details: None,
        };
        let access_token = self.keys.sign(ACCESS_TOKEN_TYP, &claims).await?;
        let event = AuditEvent::OAuth(OAuthEvent::TokenIssued {
            client_id: client.id().to_owned(),
            grant_type: GrantType::ClientCredentials.as_str(),
            grant_id: None,
        });
        self.db.audit_only(ctx.record(event, None)).await?;
        Ok(TokenResponse {
            access_token,
            token_type: token_type(claims.cnf.as_ref()),
            expires_in: ttl,
            scope,
            id_token: None,
            refresh_token: None,
            authorization_details: None,
        })
    }

    /// An access token of ours that is still active: signature, expiry, not revoked, and
    /// its grant (for user tokens) neither revoked nor ended with its session.
    pub async fn active_access_token(
        &self,
        token: &str,
    ) -> Result<(AccessClaims, Option<GrantRow>), BearerError> {
        let mut validation = Validation::new(self.keys.algorithm());
        validation.set_issuer(&[self.issuer()]);
        validation.validate_aud = false;
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        let claims: AccessClaims = self
            .keys
            .verify(token, ACCESS_TOKEN_TYP, validation)
            .await
            .map_err(|e| match e {
                VerifyError::Service(s) => BearerError::Service(s),
                VerifyError::Expired => BearerError::InvalidToken("the access token has expired"),
                VerifyError::Invalid => BearerError::InvalidToken("the access token is not valid"),
            })?;
        if self.store.get(&revoked_key(&claims.jti)).await?.is_some() {
            return Err(BearerError::InvalidToken("the access token was revoked"));
        }
        let grant = match claims.gid {
            None => None,
            Some(gid) => {
                let conn = self.db.connection();
                let grant = rows::find_grant(conn, gid)
                    .await?
                    .filter(|g| g.revoked_at.is_none())
                    .ok_or(BearerError::InvalidToken("the access token was revoked"))?;
                if !users::can_sign_in(conn, grant.user_id).await? {
                    return Err(BearerError::InvalidToken("the access token was revoked"));
                }
                Some(grant)
            }
        };
        Ok((claims, grant))
    }

    /// `/oauth/userinfo`: the claims of the token's scopes. A DPoP-bound token needs its
    /// proof.
    pub async fn userinfo(&self, presented: &PresentedToken<'_>) -> Result<UserInfo, BearerError> {
        let (claims, grant) = self.active_access_token(presented.token).await?;
        self.check_sender(&claims, presented, &self.endpoint(super::paths::USERINFO))
            .await?;
        let grant = grant.ok_or(BearerError::InvalidToken("not a user's access token"))?;
        let scopes: Vec<&str> = claims.scope.split_ascii_whitespace().collect();
        if !scopes.contains(&OPENID) {
            return Err(BearerError::InsufficientScope);
        }
        let mut info = UserInfo {
            sub: grant.user_id.to_string(),
            email: None,
            email_verified: None,
        };
        if scopes.contains(&EMAIL) {
            let user = users::find_by_id(self.db.connection(), grant.user_id)
                .await?
                .ok_or(BearerError::InvalidToken("the user no longer exists"))?;
            info.email = Some(user.email.as_str().to_owned());
            info.email_verified = Some(user.email_verified_at.is_some());
        }
        Ok(info)
    }

    /// RFC 7009: revokes a refresh token (its whole grant) or an access token issued to
    /// the calling client. Unknown tokens and other clients' tokens change nothing and
    /// still answer 200.
    pub async fn revoke(
        &self,
        client: &Client,
        params: &HashMap<String, String>,
        ctx: &RequestContext,
    ) -> OAuthResult<()> {
        let token = params
            .get("token")
            .ok_or_else(|| OAuthError::invalid_request("token is missing"))?;
        let conn = self.db.connection();
        let now = now_millis();
        if let Some(Located { grant, .. }) = self.locate_refresh_token(conn, token).await?
            && grant.client_id == client.id()
        {
            if rows::revoke_grant(conn, grant.id, now).await? {
                self.revoked(
                    client,
                    "refresh_token",
                    Some(grant.id),
                    Some(grant.user_id),
                    ctx,
                )
                .await?;
            }
            return Ok(());
        }
        match self.active_access_token(token).await {
            Ok((claims, grant)) if claims.client_id == client.id() => {
                let remaining = claims
                    .exp
                    .saturating_sub(jsonwebtoken::get_current_timestamp());
                // Replicated, like a session tombstone: a revocation lost in a Redis
                // failover would make the token valid again until it expires.
                self.store
                    .set_replicated(
                        &revoked_key(&claims.jti),
                        "1",
                        Duration::from_secs(remaining + 2 * LEEWAY_SECS),
                    )
                    .await
                    .map_err(ServiceError::from)?;
                let user = grant.as_ref().map(|g| g.user_id);
                self.revoked(client, "access_token", claims.gid, user, ctx)
                    .await?;
                Ok(())
            }
            Err(BearerError::Service(e)) => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn revoked(
        &self,
        client: &Client,
        token_type: &'static str,
        grant_id: Option<Uuid>,
        user_id: Option<Uuid>,
        ctx: &RequestContext,
    ) -> OAuthResult<()> {
        let event = AuditEvent::OAuth(OAuthEvent::TokenRevoked {
            client_id: client.id().to_owned(),
            token_type,
            grant_id,
        });
        self.db.audit_only(ctx.record(event, user_id)).await?;
        metrics::counter!(
            "oauth_tokens_total",
            "client_id" => client.id().to_owned(),
            "grant_type" => token_type,
            "outcome" => "revoked",
        )
        .increment(1);
        Ok(())
    }

    /// RFC 7662: active only for the client the token was issued to, or a client listed
    /// as a resource server; everyone else learns `{active: false}`.
    pub async fn introspect(
        &self,
        client: &Client,
        params: &HashMap<String, String>,
    ) -> OAuthResult<Introspection> {
        let token = params
            .get("token")
            .ok_or_else(|| OAuthError::invalid_request("token is missing"))?;
        let may_see = |owner: &str| owner == client.id() || client.metadata.resource_server;
        let conn = self.db.connection();
        let now = now_millis();
        if let Some(located) = self.locate_refresh_token(conn, token).await? {
            let g = &located.grant;
            let active = located.live
                && located.usable(now)
                && may_see(&g.client_id)
                && users::can_sign_in(conn, g.user_id).await?;
            return Ok(if active {
                Introspection {
                    active: true,
                    client_id: Some(g.client_id.clone()),
                    sub: Some(g.user_id.to_string()),
                    scope: Some(g.scope.clone()),
                    token_type: Some("refresh_token"),
                    exp: g.refresh_expires_at.map(secs),
                    iat: g.refresh_issued_at.map(secs),
                    iss: Some(self.issuer().to_owned()),
                    authorization_details: details(g),
                    tx_hash: g.tx_hash.clone(),
                    ..Introspection::default()
                }
            } else {
                Introspection::default()
            });
        }
        match self.active_access_token(token).await {
            Ok((claims, grant)) if may_see(&claims.client_id) => Ok(Introspection {
                active: true,
                client_id: Some(claims.client_id),
                sub: Some(claims.sub),
                scope: Some(claims.scope),
                token_type: Some(token_type(claims.cnf.as_ref())),
                exp: Some(claims.exp),
                iat: Some(claims.iat),
                iss: Some(claims.iss),
                aud: Some(claims.aud),
                acr: claims.acr,
                auth_time: claims.auth_time,
                authorization_details: grant.as_ref().and_then(details),
                tx_hash: grant.as_ref().and_then(|g| g.tx_hash.clone()),
                cnf: claims.cnf,
            }),
            Err(BearerError::Service(e)) => Err(e.into()),
            _ => Ok(Introspection::default()),
        }
    }
}

fn details(grant: &GrantRow) -> Option<serde_json::Value> {
    grant
        .authorization_details
        .as_deref()
        .and_then(|d| serde_json::from_str(d).ok())
}
