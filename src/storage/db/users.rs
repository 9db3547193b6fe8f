//! The `users` table.

use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, QueryOrder, QuerySelect};

use super::entities::user;
use super::{Conn, DbResultExt};
use crate::domain::Millis;
use crate::storage::StorageResult;

pub use user::Model as UserRow;

pub struct NewUser<'a> {
    pub email: &'a str,
    pub password_hash: &'a str,
    pub password_pepper_id: Option<&'a str>,
    pub role: &'a str,
    pub email_verified_at: Option<Millis>,
    pub now: Millis,
}

pub async fn insert(conn: &impl Conn, new: NewUser<'_>) -> StorageResult<UserRow> {
    user::ActiveModel {
        id: Set(Uuid::now_v7()),
        email: Set(new.email.to_owned()),
        password_hash: Set(new.password_hash.to_owned()),
        password_pepper_id: Set(new.password_pepper_id.map(str::to_owned)),
        role: Set(new.role.to_owned()),
        email_verified_at: Set(new.email_verified_at),
        disabled: Set(false),
        created_at: Set(new.now),
        updated_at: Set(new.now),
    }
    .insert(conn)
    .await
    .storage()
}

pub async fn find_by_email(conn: &impl Conn, email: &str) -> StorageResult<Option<UserRow>> {
    user::Entity::find()
        .filter(user::Column::Email.eq(email))
        .one(conn)
        .await
        .storage()
}

pub async fn find_by_id(conn: &impl Conn, id: Uuid) -> StorageResult<Option<UserRow>> {
    user::Entity::find_by_id(id).one(conn).await.storage()
}

pub async fn mark_email_verified(conn: &impl Conn, id: Uuid, now: Millis) -> StorageResult<()> {
    user::Entity::update_many()
        .col_expr(user::Column::EmailVerifiedAt, Expr::value(now))
        .col_expr(user::Column::UpdatedAt, Expr::value(now))
        .filter(user::Column::Id.eq(id))
        .filter(user::Column::EmailVerifiedAt.is_null())
        .exec(conn)
        .await
        .storage()?;
    Ok(())
}

pub async fn set_password(
    conn: &impl Conn,
    id: Uuid,
    password_hash: &str,
    pepper_id: Option<&str>,
    now: Millis,
) -> StorageResult<()> {
    user::Entity::update_many()
        .col_expr(user::Column::PasswordHash, Expr::value(password_hash))
        .col_expr(
            user::Column::PasswordPepperId,
            Expr::value(pepper_id.map(str::to_owned)),
        )
        .col_expr(user::Column::UpdatedAt, Expr::value(now))
        .filter(user::Column::Id.eq(id))
        .exec(conn)
        .await
        .storage()?;
    Ok(())
}

/// Users in id order (UUIDv7: creation order), after `cursor`.
pub async fn list_page(
    conn: &impl Conn,
    after: Option<Uuid>,
    limit: u64,
) -> StorageResult<Vec<UserRow>> {
    let mut query = user::Entity::find()
        .order_by_asc(user::Column::Id)
        .limit(limit);
    if let Some(cursor) = after {
        query = query.filter(user::Column::Id.gt(cursor));
    }
    query.all(conn).await.storage()
}
