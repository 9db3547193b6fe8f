//! The `password_history` table: previous password hashes of an account
//! (`PRIVILEGED_POLICY=pci`, see `services::password_history`).

use sea_orm::ActiveValue::Set;
use sea_orm::entity::prelude::*;
use sea_orm::{QueryOrder, QuerySelect};

use super::entities::password_history;
use super::{Conn, DbResultExt};
use crate::domain::Millis;
use crate::storage::StorageResult;

pub use password_history::Model as PasswordHistoryRow;

/// The `limit` newest previous hashes of `user_id`, newest first.
pub async fn recent(
    conn: &impl Conn,
    user_id: Uuid,
    limit: u64,
) -> StorageResult<Vec<PasswordHistoryRow>> {
    password_history::Entity::find()
        .filter(password_history::Column::UserId.eq(user_id))
        .order_by_desc(password_history::Column::CreatedAt)
        .order_by_desc(password_history::Column::Id)
        .limit(limit)
        .all(conn)
        .await
        .storage()
}

/// Records `password_hash` as replaced now, and forgets all but the `keep` newest.
pub async fn push(
    conn: &impl Conn,
    user_id: Uuid,
    password_hash: &str,
    pepper_id: Option<&str>,
    now: Millis,
    keep: u64,
) -> StorageResult<()> {
    password_history::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user_id),
        password_hash: Set(password_hash.to_owned()),
        password_pepper_id: Set(pepper_id.map(str::to_owned)),
        created_at: Set(now),
    }
    .insert(conn)
    .await
    .storage()?;
    let kept: Vec<Uuid> = password_history::Entity::find()
        .select_only()
        .column(password_history::Column::Id)
        .filter(password_history::Column::UserId.eq(user_id))
        .order_by_desc(password_history::Column::CreatedAt)
        .order_by_desc(password_history::Column::Id)
        .limit(keep)
        .into_tuple()
        .all(conn)
        .await
        .storage()?;
    password_history::Entity::delete_many()
        .filter(password_history::Column::UserId.eq(user_id))
        .filter(password_history::Column::Id.is_not_in(kept))
        .exec(conn)
        .await
        .storage()?;
    Ok(())
}
