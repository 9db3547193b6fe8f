//! Server-side sessions (docs/API.md §2).
//!
//! The database holds the durable copy of every session, so sessions survive restarts;
//! the ephemeral store caches it under the token's hash with a time-to-live equal to the
//! idle timeout. A request touches only the store (one round trip that also slides the
//! expiry), and that sliding expiry is the idle clock. The durable `last_seen_at` is
//! refreshed at most every `SESSION_TOUCH_INTERVAL_SECONDS` (5 minutes, at most a third
//! of the idle timeout), and the cached entry is then rewritten in place with a
//! compare-and-set, so a refresh never costs a cache miss. Revocation
//! writes a tombstone into the store *before* deleting the row, and a cache fill never
//! overwrites a tombstone, so a revoked session cannot come back on any instance.
//!
//! Every other cache write is a compare-and-set against the value the writer read, and a
//! change to a session or its user replaces the entry with a unique "stale" marker rather
//! than deleting it. So a load that read the database *before* a change cannot fill the
//! cache *after* it (its expected value is gone), and nothing ever deletes a tombstone.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::audit::{AuditEvent, RequestContext, Revocation, Rotation};
use super::error::{ServiceError, ServiceResult};
use crate::configuration::SessionSettings;
use crate::crypto::{random_token, token_hash};
use crate::domain::Factors;
pub use crate::domain::SessionState;
use crate::domain::{EmailAddress, FirstFactor, MfaMethod, Millis, Role, now_millis};
use crate::storage::db::sessions::{self as session_rows, SessionRow};
use crate::storage::db::users::{self, UserRow};
use crate::storage::db::{Database, UnitOfWork};
use crate::storage::store::Store;

const TOMBSTONE: &str = "revoked";
/// Prefix of the marker that replaces an entry whose session or user changed: the next
/// request reloads from the database and may replace exactly this marker.
const STALE_PREFIX: &str = "stale:";
/// A password-verified session waiting for its second factor lives this long at most.
const PENDING_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// What the store caches per session: the session plus the user facts every request
/// needs, so a request needs no database read.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CachedSession {
    id: Uuid,
    user_id: Uuid,
    email: EmailAddress,
    role: Role,
    state: SessionState,
    created_at: Millis,
    absolute_expires_at: Millis,
    mfa_verified_at: Option<Millis>,
    mfa_method: Option<MfaMethod>,
    /// The user's role changed: the next request rotates the token.
    #[serde(default)]
    rotate_required: bool,
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
    pub email: EmailAddress,
    pub role: Role,
    pub state: SessionState,
    pub created_at: Millis,
    pub absolute_expires_at: Millis,
    pub idle_expires_at: Millis,
    pub mfa_verified_at: Option<Millis>,
    /// How `mfa_verified_at` was earned; privileged routes refuse `Enrollment`.
    pub mfa_method: Option<MfaMethod>,
    /// The user's role changed since this token was issued (see `rotate_for_role_change`).
    pub rotate_required: bool,
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

/// One row of `GET /auth/sessions`: what the owner may see of a session (never its token
/// hash).
#[derive(Debug, Clone)]
pub struct SessionSummary {
    pub id: Uuid,
    pub created_at: Millis,
    pub last_seen_at: Millis,
    pub expires_at: Millis,
    pub ip: String,
    pub user_agent: String,
    pub current: bool,
    pub mfa_verified_at: Option<Millis>,
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
    #[tracing::instrument(skip_all)]
    pub async fn create(
        &self,
        uow: &mut UnitOfWork,
        user: &UserRow,
        state: SessionState,
        mfa_verified: Option<(Millis, MfaMethod)>,
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
            state,
            created_at: now,
            last_seen_at: now,
            absolute_expires_at: now + millis(lifetime),
            mfa_verified_at: mfa_verified.map(|(at, _)| at),
            mfa_method: mfa_verified.map(|(_, method)| method),
            rotate_required: false,
            // Only a passwordless passkey login creates an active session with its factor
            // already verified; every other login starts with the password.
            first_factor: match (state, mfa_verified) {
                (SessionState::Active, Some((_, MfaMethod::Webauthn))) => FirstFactor::Passkey,
                _ => FirstFactor::Password,
            },
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
            AuditEvent::SessionCreated {
                session_id: issued.id,
                state,
            },
            Some(user.id),
        ));
        Ok(issued)
    }

    /// Second factor done: the pending session becomes active under a new token (the old
    /// one dies at once), with `mfa_verified_at` = now (audited as `session.rotated`).
    #[tracing::instrument(skip_all, fields(user_id = %current.user_id))]
    pub async fn upgrade(
        &self,
        uow: &mut UnitOfWork,
        current: &CurrentSession,
        method: MfaMethod,
        ctx: &RequestContext,
    ) -> ServiceResult<IssuedSession> {
        let now = now_millis();
        let token = random_token();
        let absolute = now + millis(self.settings.absolute_timeout);
        let to = session_rows::Rotation {
            new_token_hash: &token_hash(&token),
            state: SessionState::Active,
            mfa_verified_at: Some(now),
            mfa_method: Some(method),
            absolute_expires_at: absolute,
            now,
        };
        self.replace_token(uow, current, to, Rotation::MfaCompleted, ctx)
            .await?;
        Ok(IssuedSession {
            token,
            id: current.id,
            state: SessionState::Active,
            absolute_expires_at: absolute,
            idle_expires_at: self.idle_expires_at(now, absolute),
        })
    }

    /// Kills the current token everywhere (tombstone first), gives the session its new
    /// token and state in `uow`, and audits `session.rotated` with `reason`.
    async fn replace_token(
        &self,
        uow: &mut UnitOfWork,
        current: &CurrentSession,
        to: session_rows::Rotation<'_>,
        reason: Rotation,
        ctx: &RequestContext,
    ) -> ServiceResult<()> {
        self.forget(&current.token_hash).await?;
        if !session_rows::rotate(uow.conn(), &current.token_hash, to).await? {
            return Err(ServiceError::NotAuthenticated);
        }
        uow.audit(ctx.record(
            AuditEvent::SessionRotated {
                session_id: current.id,
                reason,
            },
            Some(current.user_id),
        ));
        Ok(())
    }

    /// The user's role changed since this active session's token was issued: give it a
    /// new token (the old one dies at once), keeping everything else. Returns the session
    /// under its new token; the caller hands the token to the client (new cookies).
    #[tracing::instrument(skip_all, fields(user_id = %current.user_id))]
    pub async fn rotate_for_role_change(
        &self,
        current: &CurrentSession,
        ctx: &RequestContext,
    ) -> ServiceResult<CurrentSession> {
        let now = now_millis();
        let token = random_token();
        let new_hash = token_hash(&token);
        let mut uow = self.db.begin().await?;
        let to = session_rows::Rotation {
            new_token_hash: &new_hash,
            state: current.state,
            mfa_verified_at: current.mfa_verified_at,
            mfa_method: current.mfa_method,
            absolute_expires_at: current.absolute_expires_at,
            now,
        };
        // Fails (401) when a concurrent request rotated it first: this token is dead.
        self.replace_token(&mut uow, current, to, Rotation::RoleChanged, ctx)
            .await?;
        uow.commit().await?;
        Ok(CurrentSession {
            token,
            token_hash: new_hash,
            rotate_required: false,
            ..current.clone()
        })
    }

    /// A second factor was just verified on this session (step-up), or a first factor was
    /// enrolled on it (`MfaMethod::Enrollment`).
    #[tracing::instrument(skip_all, fields(user_id = %current.user_id))]
    pub async fn mark_mfa_verified(
        &self,
        uow: &mut UnitOfWork,
        current: &CurrentSession,
        method: MfaMethod,
    ) -> ServiceResult<()> {
        // The cached copy still carries the old time: call `refresh_cache` after commit.
        if !session_rows::set_mfa_verified(uow.conn(), &current.token_hash, now_millis(), method)
            .await?
        {
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
        let seen = self.store.get_and_touch(&key, idle).await?;
        let (cached, value) = match seen {
            Some(value) if value == TOMBSTONE => return Err(ServiceError::NotAuthenticated),
            Some(value) => match serde_json::from_str::<CachedSession>(&value) {
                Ok(cached) => (cached, Some(value)),
                // A stale marker, or an entry this version cannot read: reload, replacing
                // exactly what was read.
                Err(_) => self.load(&hash, Some(&value)).await?,
            },
            None => self.load(&hash, None).await?,
        };
        let now = now_millis();
        if now >= cached.absolute_expires_at {
            self.forget(&hash).await?;
            return Err(ServiceError::NotAuthenticated);
        }
        if now - cached.durable_seen_at >= millis(self.settings.touch_interval)
            && let Some(read) = value
        {
            self.refresh_durable(&hash, &read, &cached, now).await?;
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
            mfa_method: cached.mfa_method,
            rotate_required: cached.rotate_required,
            token: token.to_owned(),
            token_hash: hash,
            email_verified: cached.email_verified,
            user_created_at: cached.user_created_at,
            factors: cached.factors,
        })
    }

    /// The durable `last_seen_at` is due: the request that wins the compare-and-set of the
    /// cached entry (new `durable_seen_at`, entry kept, so no cache miss follows) writes
    /// it, once; concurrent requests on the same session, on any instance, lose the swap
    /// and write nothing. A swap lost to a change (stale marker, tombstone) leaves the
    /// newer value alone.
    async fn refresh_durable(
        &self,
        hash: &str,
        read: &str,
        cached: &CachedSession,
        now: Millis,
    ) -> ServiceResult<()> {
        let key = store_key(hash);
        let idle = self.settings.idle_timeout;
        let fresh = CachedSession {
            durable_seen_at: now,
            ..cached.clone()
        };
        let fresh = serde_json::to_string(&fresh).map_err(anyhow::Error::from)?;
        if !self
            .store
            .replace_if(&key, Some(read), &fresh, idle)
            .await?
        {
            return Ok(());
        }
        match session_rows::touch(self.db.connection(), hash, now).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                self.forget(hash).await?;
                Err(ServiceError::NotAuthenticated)
            }
            Err(e) => {
                // Put the old entry back so that the next request tries again.
                let _ = self.store.replace_if(&key, Some(&fresh), read, idle).await;
                Err(e.into())
            }
        }
    }

    /// Cache miss (or a stale marker): read the durable copy and its user, then fill the
    /// cache — only if it still holds what the caller read (`expected`). The returned
    /// value is the cache's serialised copy when this call wrote it.
    async fn load(
        &self,
        hash: &str,
        expected: Option<&str>,
    ) -> ServiceResult<(CachedSession, Option<String>)> {
        let cached = self.read(hash).await?;
        self.fill(hash, expected, cached).await
    }

    /// The durable copy of a session and its user, as the cache would hold it.
    async fn read(&self, hash: &str) -> ServiceResult<CachedSession> {
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
        Ok(CachedSession {
            id: row.id,
            user_id: row.user_id,
            email: user.email,
            role: user.role,
            state: row.state,
            created_at: row.created_at,
            absolute_expires_at: row.absolute_expires_at,
            mfa_verified_at: row.mfa_verified_at,
            mfa_method: row.mfa_method,
            rotate_required: row.rotate_required,
            durable_seen_at: row.last_seen_at,
            email_verified: user.email_verified_at.is_some(),
            user_created_at: user.created_at,
            factors,
        })
    }

    /// Caches `cached` if the entry still holds `expected`. When another writer got there
    /// first, a tombstone means revoked; anything else is left alone and this request
    /// uses what it read (it started before the change).
    async fn fill(
        &self,
        hash: &str,
        expected: Option<&str>,
        cached: CachedSession,
    ) -> ServiceResult<(CachedSession, Option<String>)> {
        let value = serde_json::to_string(&cached).map_err(anyhow::Error::from)?;
        // `read` found the session alive by its durable clock, which lags behind the real
        // last request, never ahead; this request is activity, so the idle window starts
        // again now, as on a cache hit.
        let key = store_key(hash);
        if self
            .store
            .replace_if(&key, expected, &value, self.settings.idle_timeout)
            .await?
        {
            return Ok((cached, Some(value)));
        }
        if self.store.get(&key).await?.as_deref() == Some(TOMBSTONE) {
            return Err(ServiceError::NotAuthenticated);
        }
        Ok((cached, None))
    }

    /// Makes a session unusable everywhere at once; outlives any cached copy.
    async fn forget(&self, hash: &str) -> ServiceResult<()> {
        // Replicated: a tombstone lost in a Redis failover would let the promoted replica
        // serve the revoked session from its cached copy.
        self.store
            .set_replicated(&store_key(hash), TOMBSTONE, self.settings.absolute_timeout)
            .await?;
        Ok(())
    }

    /// Marks the cached copy stale so the next request re-reads the database (after a
    /// change to the session or its user, such as a role change). The marker is unique,
    /// so a load that started before this call cannot replace it, and it never replaces
    /// a tombstone.
    #[tracing::instrument(skip_all)]
    pub async fn refresh_cache(&self, token_hash: &str) -> ServiceResult<()> {
        let marker = format!("{STALE_PREFIX}{}", Uuid::new_v4());
        self.store
            .set_unless(
                &store_key(token_hash),
                TOMBSTONE,
                &marker,
                self.settings.idle_timeout,
            )
            .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(user_id = %current.user_id))]
    pub async fn list(&self, current: &CurrentSession) -> ServiceResult<Vec<SessionSummary>> {
        let rows = session_rows::list_for_user(self.db.connection(), current.user_id).await?;
        let idle = millis(self.settings.idle_timeout);
        let now = now_millis();
        Ok(rows
            .into_iter()
            .filter(|row| row.last_seen_at + idle > now && row.absolute_expires_at > now)
            .map(|row| SessionSummary {
                id: row.id,
                created_at: row.created_at,
                last_seen_at: row.last_seen_at,
                expires_at: (row.last_seen_at + idle).min(row.absolute_expires_at),
                current: row.token_hash == current.token_hash,
                mfa_verified_at: row.mfa_verified_at,
                ip: row.ip,
                user_agent: row.user_agent,
            })
            .collect())
    }

    #[tracing::instrument(skip_all, fields(user_id = %current.user_id))]
    pub async fn logout(
        &self,
        current: &CurrentSession,
        ctx: &RequestContext,
    ) -> ServiceResult<()> {
        self.forget(&current.token_hash).await?;
        let mut uow = self.db.begin().await?;
        session_rows::delete_by_token_hash(uow.conn(), &current.token_hash).await?;
        uow.audit(ctx.record(
            AuditEvent::SessionLogout {
                session_id: current.id,
            },
            Some(current.user_id),
        ));
        uow.commit().await?;
        Ok(())
    }

    /// Ends the session `session_id` of `user_id` (an RP-initiated logout that proved it
    /// with an ID token); false when it had already ended.
    #[tracing::instrument(skip_all, fields(user_id = %user_id))]
    pub async fn logout_by_id(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        ctx: &RequestContext,
    ) -> ServiceResult<bool> {
        let Some(row) = session_rows::find_by_id(self.db.connection(), session_id).await? else {
            return Ok(false);
        };
        if row.user_id != user_id {
            return Ok(false);
        }
        self.forget(&row.token_hash).await?;
        let mut uow = self.db.begin().await?;
        let deleted = session_rows::delete_by_token_hash(uow.conn(), &row.token_hash).await?;
        uow.audit(ctx.record(AuditEvent::SessionLogout { session_id }, Some(user_id)));
        uow.commit().await?;
        Ok(deleted)
    }

    /// Revokes one of the caller's own sessions; any other id is `NotFound`.
    #[tracing::instrument(skip_all, fields(user_id = %current.user_id))]
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
            AuditEvent::SessionRevoked {
                session_id: target.id,
                reason: Revocation::UserRequest,
            },
            Some(current.user_id),
        ));
        uow.commit().await?;
        Ok(())
    }

    /// Revokes every session of a user except `keep` (a token hash); returns how many.
    #[tracing::instrument(skip_all, fields(user_id = %user_id))]
    pub async fn revoke_all(
        &self,
        user_id: Uuid,
        keep: Option<&str>,
        reason: Revocation,
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
    #[tracing::instrument(skip_all, fields(user_id = %user_id))]
    pub async fn revoke_all_in(
        &self,
        uow: &mut UnitOfWork,
        user_id: Uuid,
        keep: Option<&str>,
        reason: Revocation,
        ctx: &RequestContext,
    ) -> ServiceResult<u64> {
        let rows = session_rows::list_for_user(uow.conn(), user_id).await?;
        for row in rows.iter().filter(|r| Some(r.token_hash.as_str()) != keep) {
            self.forget(&row.token_hash).await?;
        }
        let deleted = session_rows::delete_for_user(uow.conn(), user_id, keep).await?;
        for row in &deleted {
            uow.audit(ctx.record(
                AuditEvent::SessionRevoked {
                    session_id: row.id,
                    reason,
                },
                Some(user_id),
            ));
        }
        Ok(deleted.len() as u64)
    }

    /// The user's role or status changed: every cached session of theirs re-reads it.
    #[tracing::instrument(skip_all, fields(user_id = %user_id))]
    pub async fn refresh_user(&self, user_id: Uuid) -> ServiceResult<()> {
        for row in session_rows::list_for_user(self.db.connection(), user_id).await? {
            self.refresh_cache(&row.token_hash).await?;
        }
        Ok(())
    }

    /// Deletes durable copies that expired (the store forgets them by itself). The
    /// durable `last_seen_at` lags by up to the touch interval, so only rows idle for the
    /// timeout plus that lag are surely dead: a session still sliding in the store is
    /// never deleted under it.
    #[tracing::instrument(skip_all)]
    pub async fn purge_expired(&self) -> ServiceResult<u64> {
        let now = now_millis();
        let idle_cutoff =
            now - millis(self.settings.idle_timeout) - millis(self.settings.touch_interval);
        Ok(session_rows::delete_expired(self.db.connection(), idle_cutoff, now).await?)
    }
}

#[cfg(test)]
mod tests {
    //! The cache races of the security review (issue 11, item 11), forced into their worst
    //! interleaving: a load reads the database, a change lands and invalidates the cache,
    //! and only then does the load try to fill the cache with what it read.

    use super::*;
    use crate::services::audit::RequestContext;
    use crate::storage::db::users::NewUser;

    struct Fixture {
        sessions: Sessions,
        db: Database,
        user: UserRow,
        _dir: TempDir,
    }

    struct TempDir(std::path::PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    async fn fixture(store: Store) -> Fixture {
        let dir = std::env::temp_dir().join(format!("lcauth-sessions-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = Database::connect(&format!("sqlite://{}/t.db", dir.display()))
            .await
            .unwrap()
            .with_audit_keys(crate::crypto::audit_keys::AuditKeys::new(
                "test-key-0123456789abcdef0123456789abcdef",
                &[],
            ));
        db.migrate().await.unwrap();
        let settings = SessionSettings {
            cookie_secure: true,
            cookie_name: "session".into(),
            idle_timeout: Duration::from_secs(900),
            absolute_timeout: Duration::from_secs(3600),
            step_up_max_age: Duration::from_secs(300),
            touch_interval: Duration::from_secs(300),
        };
        let sessions = Sessions::new(db.clone(), store, settings);
        let uow = db.begin().await.unwrap();
        let user = users::insert(
            uow.conn(),
            NewUser {
                email: &EmailAddress::parse("race@bank.example").unwrap(),
                password_hash: "x",
                password_pepper_id: None,
                role: Role::Admin,
                email_verified_at: Some(now_millis()),
                now: now_millis(),
            },
        )
        .await
        .unwrap();
        uow.commit().await.unwrap();
        Fixture {
            sessions,
            db,
            user,
            _dir: TempDir(dir),
        }
    }

    async fn login(f: &Fixture) -> IssuedSession {
        let mut uow = f.db.begin().await.unwrap();
        let issued = f
            .sessions
            .create(
                &mut uow,
                &f.user,
                SessionState::Active,
                None,
                &RequestContext::default(),
            )
            .await
            .unwrap();
        uow.commit().await.unwrap();
        issued
    }

    async fn stores() -> Vec<Store> {
        let url =
            std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let prefix = format!("test:{}:", Uuid::new_v4());
        let topology = crate::configuration::RedisTopology::Single { url };
        let redis = Store::redis(&topology, &prefix).expect("a valid REDIS_URL");
        vec![Store::memory("test:"), redis]
    }

    #[tokio::test]
    async fn a_load_that_read_before_a_role_change_cannot_cache_the_old_role() {
        for store in stores().await {
            let f = fixture(store.clone()).await;
            let issued = login(&f).await;
            let hash = token_hash(&issued.token);
            let first = f.sessions.authenticate(&issued.token).await.unwrap();
            assert_eq!(first.role, Role::Admin);
            // A cache miss begins: the load reads the admin role...
            f.sessions.refresh_cache(&hash).await.unwrap();
            let marker = store.get(&store_key(&hash)).await.unwrap();
            let stale_read = f.sessions.read(&hash).await.unwrap();
            // ...the admin is demoted and every cached session of theirs invalidated...
            let uow = f.db.begin().await.unwrap();
            users::set_role_and_status(uow.conn(), f.user.id, Role::User, false, now_millis())
                .await
                .unwrap();
            uow.commit().await.unwrap();
            f.sessions.refresh_user(f.user.id).await.unwrap();
            // ...and only then does the load try to fill the cache with what it read.
            f.sessions
                .fill(&hash, marker.as_deref(), stale_read)
                .await
                .unwrap();
            let next = f.sessions.authenticate(&issued.token).await.unwrap();
            assert_eq!(
                next.role,
                Role::User,
                "the demotion applies at the next request"
            );
        }
    }

    #[tokio::test]
    async fn a_load_racing_a_revocation_cannot_bring_the_session_back() {
        for store in stores().await {
            let f = fixture(store.clone()).await;
            let issued = login(&f).await;
            let hash = token_hash(&issued.token);
            f.sessions.authenticate(&issued.token).await.unwrap();
            // A load starts from a stale marker and reads the (still existing) row...
            f.sessions.refresh_cache(&hash).await.unwrap();
            let marker = store.get(&store_key(&hash)).await.unwrap();
            let stale_read = f.sessions.read(&hash).await.unwrap();
            // ...the session is revoked, and then a late refresh of the user runs...
            f.sessions
                .revoke_all(
                    f.user.id,
                    None,
                    Revocation::UserRequest,
                    &RequestContext::default(),
                )
                .await
                .unwrap();
            f.sessions.refresh_cache(&hash).await.unwrap();
            assert_eq!(
                store.get(&store_key(&hash)).await.unwrap().as_deref(),
                Some(TOMBSTONE),
                "an invalidation never replaces a tombstone"
            );
            // ...and the load's fill arrives last.
            let filled = f.sessions.fill(&hash, marker.as_deref(), stale_read).await;
            assert!(matches!(filled, Err(ServiceError::NotAuthenticated)));
            assert!(matches!(
                f.sessions.authenticate(&issued.token).await,
                Err(ServiceError::NotAuthenticated)
            ));
        }
    }

    #[tokio::test]
    async fn a_durable_refresh_rewrites_the_cached_entry_instead_of_dropping_it() {
        for store in stores().await {
            let f = fixture(store.clone()).await;
            // Every check is due for a refresh.
            let eager = Sessions::new(
                f.db.clone(),
                store.clone(),
                SessionSettings {
                    touch_interval: Duration::ZERO,
                    ..f.sessions.settings().clone()
                },
            );
            let issued = login(&f).await;
            let hash = token_hash(&issued.token);
            eager.authenticate(&issued.token).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
            eager.authenticate(&issued.token).await.unwrap();
            let row = session_rows::find_by_token_hash(f.db.connection(), &hash)
                .await
                .unwrap()
                .unwrap();
            // The entry is still a cached session (no miss for the next request), and it
            // carries the last_seen_at just written.
            let entry = store.get(&store_key(&hash)).await.unwrap().unwrap();
            let cached: CachedSession = serde_json::from_str(&entry).unwrap();
            assert_eq!(cached.durable_seen_at, row.last_seen_at);
            assert!(row.last_seen_at > row.created_at);
        }
    }
}
