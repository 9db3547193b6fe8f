//! The `sessions` table: the durable copy of every session (the store holds a cache).

use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, QueryOrder};

use super::entities::session;
use super::{Conn, DbResultExt};
use crate::domain::{MfaMethod, Millis, SessionState};
use crate::storage::StorageResult;

pub use session::Model as SessionRow;

pub async fn insert(conn: &impl Conn, row: SessionRow) -> StorageResult<()> {
    session::ActiveModel {
        id: Set(row.id),
        token_hash: Set(row.token_hash),
        user_id: Set(row.user_id),
        state: Set(row.state),
        created_at: Set(row.created_at),
        last_seen_at: Set(row.last_seen_at),
        absolute_expires_at: Set(row.absolute_expires_at),
        mfa_verified_at: Set(row.mfa_verified_at),
        ip: Set(row.ip),
        user_agent: Set(row.user_agent),
        mfa_method: Set(row.mfa_method),
        rotate_required: Set(row.rotate_required),
        first_factor: Set(row.first_factor),
    }
    .insert(conn)
    .await
    .storage()?;
    Ok(())
}

pub async fn find_by_token_hash(
    conn: &impl Conn,
    token_hash: &str,
) -> StorageResult<Option<SessionRow>> {
    session::Entity::find()
        .filter(session::Column::TokenHash.eq(token_hash))
        .one(conn)
        .await
        .storage()
}

pub async fn list_for_user(conn: &impl Conn, user_id: Uuid) -> StorageResult<Vec<SessionRow>> {
    session::Entity::find()
        .filter(session::Column::UserId.eq(user_id))
        .order_by_desc(session::Column::CreatedAt)
        .all(conn)
        .await
        .storage()
}

/// Refreshes the durable last-seen time; false when the session no longer exists.
pub async fn touch(conn: &impl Conn, token_hash: &str, now: Millis) -> StorageResult<bool> {
    let result = session::Entity::update_many()
        .col_expr(session::Column::LastSeenAt, Expr::value(now))
        .filter(session::Column::TokenHash.eq(token_hash))
        .exec(conn)
        .await
        .storage()?;
    Ok(result.rows_affected == 1)
}

pub async fn delete_by_token_hash(conn: &impl Conn, token_hash: &str) -> StorageResult<bool> {
    let result = session::Entity::delete_many()
        .filter(session::Column::TokenHash.eq(token_hash))
        .exec(conn)
        .await
        .storage()?;
    Ok(result.rows_affected > 0)
}

/// Deletes the given sessions of one user and returns what was deleted.
pub async fn delete_for_user(
    conn: &impl Conn,
    user_id: Uuid,
    except_token_hash: Option<&str>,
) -> StorageResult<Vec<SessionRow>> {
    let mut doomed = list_for_user(conn, user_id).await?;
    if let Some(keep) = except_token_hash {
        doomed.retain(|s| s.token_hash != keep);
    }
    if doomed.is_empty() {
        return Ok(doomed);
    }
    session::Entity::delete_many()
        .filter(session::Column::Id.is_in(doomed.iter().map(|s| s.id)))
        .exec(conn)
        .await
        .storage()?;
    Ok(doomed)
}

pub async fn delete_expired(
    conn: &impl Conn,
    idle_cutoff: Millis,
    now: Millis,
) -> StorageResult<u64> {
    let result = session::Entity::delete_many()
        .filter(
            sea_orm::Condition::any()
                .add(session::Column::LastSeenAt.lt(idle_cutoff))
                .add(session::Column::AbsoluteExpiresAt.lt(now)),
        )
        .exec(conn)
        .await
        .storage()?;
    Ok(result.rows_affected)
}

/// What a session becomes when it gets a new token.
pub struct Rotation<'a> {
    pub new_token_hash: &'a str,
    pub state: SessionState,
    pub mfa_verified_at: Option<Millis>,
    pub mfa_method: Option<MfaMethod>,
    pub absolute_expires_at: Millis,
    pub now: Millis,
}

/// Gives a session a new token (and state): the old token stops working, and a pending
/// rotation is done. False when the session no longer exists.
pub async fn rotate(
    conn: &impl Conn,
    old_token_hash: &str,
    to: Rotation<'_>,
) -> StorageResult<bool> {
    let result = session::Entity::update_many()
        .col_expr(session::Column::TokenHash, Expr::value(to.new_token_hash))
        .col_expr(session::Column::State, Expr::value(to.state))
        .col_expr(
            session::Column::MfaVerifiedAt,
            Expr::value(to.mfa_verified_at),
        )
        .col_expr(session::Column::MfaMethod, Expr::value(to.mfa_method))
        .col_expr(
            session::Column::AbsoluteExpiresAt,
            Expr::value(to.absolute_expires_at),
        )
        .col_expr(session::Column::LastSeenAt, Expr::value(to.now))
        .col_expr(session::Column::RotateRequired, Expr::value(false))
        .filter(session::Column::TokenHash.eq(old_token_hash))
        .exec(conn)
        .await
        .storage()?;
    Ok(result.rows_affected == 1)
}

/// Every session of a user gets a new token at its next request (a role change).
pub async fn require_rotation(conn: &impl Conn, user_id: Uuid) -> StorageResult<u64> {
    let result = session::Entity::update_many()
        .col_expr(session::Column::RotateRequired, Expr::value(true))
        .filter(session::Column::UserId.eq(user_id))
        .exec(conn)
        .await
        .storage()?;
    Ok(result.rows_affected)
}

pub async fn set_mfa_verified(
    conn: &impl Conn,
    token_hash: &str,
    at: Millis,
    method: MfaMethod,
) -> StorageResult<bool> {
    let result = session::Entity::update_many()
        .col_expr(session::Column::MfaVerifiedAt, Expr::value(at))
        .col_expr(session::Column::MfaMethod, Expr::value(method))
        .filter(session::Column::TokenHash.eq(token_hash))
        .exec(conn)
        .await
        .storage()?;
    Ok(result.rows_affected == 1)
}

pub async fn find_by_id(conn: &impl Conn, id: Uuid) -> StorageResult<Option<SessionRow>> {
    session::Entity::find_by_id(id).one(conn).await.storage()
}

/// Refreshes the durable last-seen time of the session `id` (a relying party refreshed a
/// token it holds for the session); false when the session no longer exists.
pub async fn touch_by_id(conn: &impl Conn, id: Uuid, now: Millis) -> StorageResult<bool> {
    let result = session::Entity::update_many()
        .col_expr(session::Column::LastSeenAt, Expr::value(now))
        .filter(session::Column::Id.eq(id))
        .exec(conn)
        .await
        .storage()?;
    Ok(result.rows_affected == 1)
}
