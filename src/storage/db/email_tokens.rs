//! The `email_tokens` table: single-use tokens sent by email, stored only as hashes.

use sea_orm::ActiveValue::Set;
use sea_orm::entity::prelude::*;

use super::entities::email_token;
use super::{Conn, DbResultExt};
use crate::domain::Millis;
use crate::storage::StorageResult;

pub use email_token::Model as EmailTokenRow;
pub use email_token::Purpose as TokenPurpose;

pub async fn insert(
    conn: &impl Conn,
    user_id: Uuid,
    purpose: TokenPurpose,
    token_hash: &str,
    now: Millis,
    expires_at: Millis,
) -> StorageResult<()> {
    email_token::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user_id),
        purpose: Set(purpose),
        token_hash: Set(token_hash.to_owned()),
        created_at: Set(now),
        expires_at: Set(expires_at),
        used_at: Set(None),
    }
    .insert(conn)
    .await
    .storage()?;
    Ok(())
}

/// A live token (unused, unexpired, of this purpose) without using it up.
pub async fn peek(
    conn: &impl Conn,
    purpose: TokenPurpose,
    token_hash: &str,
    now: Millis,
) -> StorageResult<Option<EmailTokenRow>> {
    email_token::Entity::find()
        .filter(email_token::Column::TokenHash.eq(token_hash))
        .filter(email_token::Column::Purpose.eq(purpose))
        .filter(email_token::Column::UsedAt.is_null())
        .filter(email_token::Column::ExpiresAt.gt(now))
        .one(conn)
        .await
        .storage()
}

/// Marks a live token used and returns it; `None` when unknown, used, expired or for
/// another purpose. The conditional update makes concurrent redemptions single-use.
pub async fn redeem(
    conn: &impl Conn,
    purpose: TokenPurpose,
    token_hash: &str,
    now: Millis,
) -> StorageResult<Option<EmailTokenRow>> {
    let Some(token) = peek(conn, purpose, token_hash, now).await? else {
        return Ok(None);
    };
    let claimed = email_token::Entity::update_many()
        .col_expr(email_token::Column::UsedAt, Expr::value(now))
        .filter(email_token::Column::Id.eq(token.id))
        .filter(email_token::Column::UsedAt.is_null())
        .exec(conn)
        .await
        .storage()?;
    Ok((claimed.rows_affected == 1).then_some(token))
}

/// Retires every unused token of one purpose for a user (a newer one replaces them).
pub async fn retire_all(
    conn: &impl Conn,
    user_id: Uuid,
    purpose: TokenPurpose,
    now: Millis,
) -> StorageResult<()> {
    email_token::Entity::update_many()
        .col_expr(email_token::Column::UsedAt, Expr::value(now))
        .filter(email_token::Column::UserId.eq(user_id))
        .filter(email_token::Column::Purpose.eq(purpose))
        .filter(email_token::Column::UsedAt.is_null())
        .exec(conn)
        .await
        .storage()?;
    Ok(())
}
