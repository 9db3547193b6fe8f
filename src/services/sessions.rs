//! Server-side sessions (API.md §2).
//!
//! The database holds the durable copy of every session, so sessions survive restarts;
//! the ephemeral store caches it under the token's hash with a time-to-live equal to the
//! idle timeout. A request touches only the store (one round trip that also slides the
//! expiry); the durable `last_seen_at` is refreshed at most once a minute. Revocation
//! writes a tombstone into the store *before* deleting the row, and a cache fill never
//! overwrites a tombstone, so a revoked session cannot come back on any instance.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::audit::{AuditEvent, RequestContext};
use super::error::{ServiceError, ServiceResult};
use crate::configuration::SessionSettings;
use crate::crypto::{random_token, token_hash};
use crate::domain::{Millis, Role, now_millis};
use crate::storage::db::mfa::Factors;
use crate::storage::db::sessions::{self as session_rows, SessionRow};
use crate::storage::db::users::{self, UserRow};
use crate::storage::db::{Database, UnitOfWork};
use crate::storage::store::Store;

/// How often the durable copy of `last_seen_at` is refreshed, at most.
const DURABLE_REFRESH: Duration = Duration::from_secs(60);
const TOMBSTONE: &str = "revoked";
/// A password-verified session waiting for its second factor lives this long at most.
const PENDING_LIFETIME: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Password verified, second factor outstanding: only the MFA routes accept it.
    MfaPending,
    Active,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::MfaPending => "mfa_pending",
            SessionState::Active => "active",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value {
            "mfa_pending" => Some(SessionState::MfaPending),
            "active" => Some(SessionState::Active),
            _ => None,
        }
    }
}

/// What the store caches per session: the session plus the user facts every request
/// needs, so a request needs no database read.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CachedSession {
    id: Uuid,
    user_id: Uuid,
    email: String,
    role: Role,
    state: SessionState,
    created_at: Millis,
    absolute_expires_at: Millis,
    mfa_verified_at: Option<Millis>,
    /// The `last_seen_at` of the durable copy when this entry was cached.
    durable_seen_at: Millis,
    email_verified: bool,
    user_created_at: Millis,
    /// Second factors enrolled: what `/auth/me` and step-up checks need. Any change to
    /// them drops the user's cached sessions (`refresh_user`).
    factors: Factors,
}

/// A valid session presented with a request.
#[derive(Debug, Clone)]
pub struct CurrentSession {
    pub id: Uuid,
    pub user_id: Uuid,
    pub email: String,
    pub role: Role,
    pub state: SessionState,
    pub created_at: Millis,
    pub absolute_expires_at: Millis,
    pub idle_expires_at: Millis,
    pub mfa_verified_at: Option<Millis>,
    /// The raw token (from the cookie): the CSRF token is derived from it.
    pub token: String,
    pub token_hash: String,
    pub email_verified: bool,
    pub user_created_at: Millis,
    pub factors: Factors,
}

/// A session just created; the token goes into the cookie and nowhere else.
#[derive(Debug, Clone)]
pub struct IssuedSession {
    pub token: String,
    pub id: Uuid,
    pub state: SessionState,
    pub absolute_expires_at: Millis,
    pub idle_expires_at: Millis,
}

/// One row of `GET /auth/sessions`.
#[derive(Debug, Clone)]
pub struct SessionSummary {
    pub row: SessionRow,
    pub expires_at: Millis,
    pub current: bool,
}

#[derive(Clone)]
pub struct Sessions {
    db: Database,
    store: Store,
    settings: SessionSettings,
}

fn store_key(token_hash: &str) -> String {
    format!("session:{token_hash}")
}

fn millis(duration: Duration) -> Millis {
    duration.as_millis() as Millis
}

impl Sessions {
    pub fn new(db: Database, store: Store, settings: SessionSettings) -> Self {
        Self {
            db,
            store,
            settings,
        }
    }

    pub fn settings(&self) -> &SessionSettings {
        &self.settings
    }

    /// Adds a new session for `user` to the unit of work (audited as `session.created`).
    pub async fn create(
        &self,
        uow: &mut UnitOfWork,
        user: &UserRow,
        state: SessionState,
        mfa_verified_at: Option<Millis>,
        ctx: &RequestContext,
    ) -> ServiceResult<IssuedSession> {
        let now = now_millis();
        let token = random_token();
        let lifetime = match state {
            SessionState::MfaPending => PENDING_LIFETIME.min(self.settings.absolute_timeout),
            SessionState::Active => self.settings.absolute_timeout,
        };
        let row = SessionRow {
            id: Uuid::now_v7(),
            token_hash: token_hash(&token),
            user_id: user.id,
            state: state.as_str().to_owned(),
            created_at: now,
            last_seen_at: now,
            absolute_expires_at: now + millis(lifetime),
            mfa_verified_at,
            ip: ctx.ip.clone(),
            user_agent: ctx.user_agent.chars().take(512).collect(),
        };
        let issued = IssuedSession {
            token,
            id: row.id,
            state,
            absolute_expires_at: row.absolute_expires_at,
            idle_expires_at: self.idle_expires_at(now, row.absolute_expires_at),
        };
        session_rows::insert(uow.conn(), row).await?;
        uow.audit(ctx.record(
            AuditEvent::SessionCreated,
            Some(user.id),
            json!({"session_id": issued.id, "state": state.as_str()}),
        ));
        Ok(issued)
    }

    /// Second factor done: the pending session becomes active under a new token (the old
    /// one dies at once), with `mfa_verified_at` = now (audited as `session.rotated`).
    pub async fn upgrade(
        &self,
        uow: &mut UnitOfWork,
        current: &CurrentSession,
        ctx: &RequestContext,
    ) -> ServiceResult<IssuedSession> {
        let now = now_millis();
        let token = random_token();
        let absolute = now + millis(self.settings.absolute_timeout);
        self.forget(&current.token_hash).await?;
        let rotated = session_rows::rotate(
            uow.conn(),
            &current.token_hash,
            &token_hash(&token),
            SessionState::Active.as_str(),
            Some(now),
            absolute,
            now,
        )
        .await?;
        if !rotated {
            return Err(ServiceError::NotAuthenticated);
        }
        uow.audit(ctx.record(
            AuditEvent::SessionRotated,
            Some(current.user_id),
            json!({"session_id": current.id, "reason": "mfa_completed"}),
        ));
        Ok(IssuedSession {
            token,
            id: current.id,
            state: SessionState::Active,
            absolute_expires_at: absolute,
            idle_expires_at: self.idle_expires_at(now, absolute),
        })
    }

    /// A second factor was just verified on this session (step-up, enrollment).
    pub async fn mark_mfa_verified(
        &self,
        uow: &mut UnitOfWork,
        current: &CurrentSession,
    ) -> ServiceResult<()> {
        // The cached copy still carries the old time: call `refresh_cache` after commit.
        if !session_rows::set_mfa_verified(uow.conn(), &current.token_hash, now_millis()).await? {
            return Err(ServiceError::NotAuthenticated);
        }
        Ok(())
    }

    fn idle_expires_at(&self, now: Millis, absolute: Millis) -> Millis {
        (now + millis(self.settings.idle_timeout)).min(absolute)
    }

    /// Validates a session token and slides its idle expiry. Unknown, expired and revoked
    /// sessions are all `NotAuthenticated`. A store or database outage is `Unavailable`:
    /// a session is never accepted unchecked.
    pub async fn authenticate(&self, token: &str) -> ServiceResult<CurrentSession> {
        if token.is_empty() || token.len() > 128 {
            return Err(ServiceError::NotAuthenticated);
        }
        let hash = token_hash(token);
        let key = store_key(&hash);
        let idle = self.settings.idle_timeout;
        let cached = match self.store.get_and_touch(&key, idle).await? {
            Some(value) if value == TOMBSTONE => return Err(ServiceError::NotAuthenticated),
            Some(value) => match serde_json::from_str::<CachedSession>(&value) {
                Ok(cached) => cached,
                // An entry this version cannot read: drop it and reload from the database.
                Err(_) => {
                    self.store.delete(&key).await?;
                    self.load(&hash).await?
                }
            },
            None => self.load(&hash).await?,
        };
        let now = now_millis();
        if now >= cached.absolute_expires_at {
            self.forget(&hash).await?;
            return Err(ServiceError::NotAuthenticated);
        }
        if now - cached.durable_seen_at >= millis(DURABLE_REFRESH) {
            if !session_rows::touch(self.db.connection(), &hash, now).await? {
                self.forget(&hash).await?;
                return Err(ServiceError::NotAuthenticated);
            }
            // The next request re-reads the durable copy (a fill never beats a tombstone).
            self.store.delete(&key).await?;
        }
        Ok(CurrentSession {
            id: cached.id,
            user_id: cached.user_id,
            email: cached.email,
            role: cached.role,
            state: cached.state,
            created_at: cached.created_at,
            absolute_expires_at: cached.absolute_expires_at,
            idle_expires_at: self.idle_expires_at(now, cached.absolute_expires_at),
            mfa_verified_at: cached.mfa_verified_at,
            token: token.to_owned(),
            token_hash: hash,
            email_verified: cached.email_verified,
            user_created_at: cached.user_created_at,
            factors: cached.factors,
        })
    }

    /// Cache miss: read the durable copy and its user, then fill the cache unless a
    /// tombstone (or another request's fill) got there first.
    async fn load(&self, hash: &str) -> ServiceResult<CachedSession> {
        let conn = self.db.connection();
        let row = session_rows::find_by_token_hash(conn, hash)
            .await?
            .ok_or(ServiceError::NotAuthenticated)?;
        let now = now_millis();
        let idle_deadline = row.last_seen_at + millis(self.settings.idle_timeout);
        if now >= idle_deadline || now >= row.absolute_expires_at {
            return Err(ServiceError::NotAuthenticated);
        }
        let user = users::find_by_id(conn, row.user_id)
            .await?
            .ok_or(ServiceError::NotAuthenticated)?;
        if user.disabled {
            return Err(ServiceError::NotAuthenticated);
        }
        let factors = crate::storage::db::mfa::factors(conn, user.id).await?;
        let cached = CachedSession {
            id: row.id,
            user_id: row.user_id,
            email: user.email,
            role: Role::parse(&user.role).unwrap_or(Role::User),
            state: SessionState::parse(&row.state).ok_or(ServiceError::NotAuthenticated)?,
            created_at: row.created_at,
            absolute_expires_at: row.absolute_expires_at,
            mfa_verified_at: row.mfa_verified_at,
            durable_seen_at: row.last_seen_at,
            email_verified: user.email_verified_at.is_some(),
            user_created_at: user.created_at,
            factors,
        };
        let value = serde_json::to_string(&cached).map_err(anyhow::Error::from)?;
        let ttl = Duration::from_millis((idle_deadline - now) as u64);
        let key = store_key(hash);
        if !self.store.set_if_absent(&key, &value, ttl).await?
            && self.store.get(&key).await?.as_deref() == Some(TOMBSTONE)
        {
            return Err(ServiceError::NotAuthenticated);
        }
        Ok(cached)
    }

    /// Makes a session unusable everywhere at once; outlives any cached copy.
    async fn forget(&self, hash: &str) -> ServiceResult<()> {
        self.store
            .set(&store_key(hash), TOMBSTONE, self.settings.absolute_timeout)
            .await?;
        Ok(())
    }

    /// Drops the cached copy so the next request re-reads the database (after a change
    /// to the session or its user, such as a role change).
    pub async fn refresh_cache(&self, token_hash: &str) -> ServiceResult<()> {
        self.store.delete(&store_key(token_hash)).await?;
        Ok(())
    }

    pub async fn list(&self, current: &CurrentSession) -> ServiceResult<Vec<SessionSummary>> {
        let rows = session_rows::list_for_user(self.db.connection(), current.user_id).await?;
        let idle = millis(self.settings.idle_timeout);
        let now = now_millis();
        Ok(rows
            .into_iter()
            .filter(|row| row.last_seen_at + idle > now && row.absolute_expires_at > now)
            .map(|row| SessionSummary {
                expires_at: (row.last_seen_at + idle).min(row.absolute_expires_at),
                current: row.token_hash == current.token_hash,
                row,
            })
            .collect())
    }

    pub async fn logout(
        &self,
        current: &CurrentSession,
        ctx: &RequestContext,
    ) -> ServiceResult<()> {
        self.forget(&current.token_hash).await?;
        let mut uow = self.db.begin().await?;
        session_rows::delete_by_token_hash(uow.conn(), &current.token_hash).await?;
        uow.audit(ctx.record(
            AuditEvent::SessionLogout,
            Some(current.user_id),
            json!({"session_id": current.id}),
        ));
        uow.commit().await?;
        Ok(())
    }

    /// Revokes one of the caller's own sessions; any other id is `NotFound`.
    pub async fn revoke(
        &self,
        current: &CurrentSession,
        session_id: Uuid,
        ctx: &RequestContext,
    ) -> ServiceResult<()> {
        let rows = session_rows::list_for_user(self.db.connection(), current.user_id).await?;
        let target = rows
            .into_iter()
            .find(|row| row.id == session_id)
            .ok_or(ServiceError::NotFound)?;
        self.forget(&target.token_hash).await?;
        let mut uow = self.db.begin().await?;
        session_rows::delete_by_token_hash(uow.conn(), &target.token_hash).await?;
        uow.audit(ctx.record(
            AuditEvent::SessionRevoked,
            Some(current.user_id),
            json!({"session_id": target.id, "reason": "user_request"}),
        ));
        uow.commit().await?;
        Ok(())
    }

    /// Revokes every session of a user except `keep` (a token hash); returns how many.
    pub async fn revoke_all(
        &self,
        user_id: Uuid,
        keep: Option<&str>,
        reason: &str,
        ctx: &RequestContext,
    ) -> ServiceResult<u64> {
        let mut uow = self.db.begin().await?;
        let revoked = self
            .revoke_all_in(&mut uow, user_id, keep, reason, ctx)
            .await?;
        uow.commit().await?;
        Ok(revoked)
    }

    /// The same, inside the caller's unit of work (a password reset, a disable). The
    /// tombstones are written first, so the sessions are dead even if the commit fails.
    pub async fn revoke_all_in(
        &self,
        uow: &mut UnitOfWork,
        user_id: Uuid,
        keep: Option<&str>,
        reason: &str,
        ctx: &RequestContext,
    ) -> ServiceResult<u64> {
        let rows = session_rows::list_for_user(uow.conn(), user_id).await?;
        for row in rows.iter().filter(|r| Some(r.token_hash.as_str()) != keep) {
            self.forget(&row.token_hash).await?;
        }
        let deleted = session_rows::delete_for_user(uow.conn(), user_id, keep).await?;
        for row in &deleted {
            uow.audit(ctx.record(
                AuditEvent::SessionRevoked,
                Some(user_id),
                json!({"session_id": row.id, "reason": reason}),
            ));
        }
        Ok(deleted.len() as u64)
    }

    /// The user's role or status changed: every cached session of theirs re-reads it.
    pub async fn refresh_user(&self, user_id: Uuid) -> ServiceResult<()> {
        for row in session_rows::list_for_user(self.db.connection(), user_id).await? {
            self.refresh_cache(&row.token_hash).await?;
        }
        Ok(())
    }

    /// Deletes durable copies that expired (the store forgets them by itself).
    pub async fn purge_expired(&self) -> ServiceResult<u64> {
        let now = now_millis();
        let idle_cutoff = now - millis(self.settings.idle_timeout);
        Ok(session_rows::delete_expired(self.db.connection(), idle_cutoff, now).await?)
    }
}
