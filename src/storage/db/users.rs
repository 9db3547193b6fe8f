//! The `users` table.

use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, QueryOrder, UpdateMany};

use super::entities::user;
use super::{Conn, DbResultExt, fetch_page};
use crate::domain::{EmailAddress, Millis, Page, Role};
use crate::storage::StorageResult;

pub use user::Model as UserRow;

pub struct NewUser<'a> {
    pub email: &'a EmailAddress,
    pub password_hash: &'a str,
    pub password_pepper_id: Option<&'a str>,
    pub role: Role,
    pub email_verified_at: Option<Millis>,
    pub now: Millis,
}

pub async fn insert(conn: &impl Conn, new: NewUser<'_>) -> StorageResult<UserRow> {
    user::ActiveModel {
        id: Set(Uuid::now_v7()),
        email: Set(new.email.clone()),
        password_hash: Set(new.password_hash.to_owned()),
        password_pepper_id: Set(new.password_pepper_id.map(str::to_owned)),
        role: Set(new.role),
        email_verified_at: Set(new.email_verified_at),
        disabled: Set(false),
        created_at: Set(new.now),
        updated_at: Set(new.now),
        factor_review_since: Set(None),
        last_login_at: Set(None),
    }
    .insert(conn)
    .await
    .storage()
}

pub async fn find_by_email(
    conn: &impl Conn,
    email: &EmailAddress,
) -> StorageResult<Option<UserRow>> {
    user::Entity::find()
        .filter(user::Column::Email.eq(email.as_str()))
        .one(conn)
        .await
        .storage()
}

pub async fn find_by_id(conn: &impl Conn, id: Uuid) -> StorageResult<Option<UserRow>> {
    user::Entity::find_by_id(id).one(conn).await.storage()
}

/// Whether the user exists and is not disabled: what every use of a token issued to them
/// checks, so a disable stops them even where no session ended with it.
pub async fn can_sign_in(conn: &impl Conn, id: Uuid) -> StorageResult<bool> {
    Ok(find_by_id(conn, id).await?.is_some_and(|u| !u.disabled))
}

/// Runs `update` on one user's row: the changes below differ only in what they set.
async fn update_one(
    conn: &impl Conn,
    id: Uuid,
    update: UpdateMany<user::Entity>,
) -> StorageResult<()> {
    update
        .filter(user::Column::Id.eq(id))
        .exec(conn)
        .await
        .storage()?;
    Ok(())
}

pub async fn mark_email_verified(conn: &impl Conn, id: Uuid, now: Millis) -> StorageResult<()> {
    let update = user::Entity::update_many()
        .col_expr(user::Column::EmailVerifiedAt, Expr::value(now))
        .col_expr(user::Column::UpdatedAt, Expr::value(now))
        .filter(user::Column::EmailVerifiedAt.is_null());
    update_one(conn, id, update).await
}

pub async fn set_password(
    conn: &impl Conn,
    id: Uuid,
    password_hash: &str,
    pepper_id: Option<&str>,
    now: Millis,
) -> StorageResult<()> {
    let update = user::Entity::update_many()
        .col_expr(user::Column::PasswordHash, Expr::value(password_hash))
        .col_expr(
            user::Column::PasswordPepperId,
            Expr::value(pepper_id.map(str::to_owned)),
        )
        .col_expr(user::Column::UpdatedAt, Expr::value(now));
    update_one(conn, id, update).await
}

#[derive(Debug, Default, Clone)]
pub struct UserFilter {
    pub email_prefix: Option<String>,
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    /// Only users after this id (the cursor). Ids are UUIDv7, so this is creation order.
    pub after: Option<Uuid>,
    pub limit: u64,
}

pub async fn page(conn: &impl Conn, filter: &UserFilter) -> StorageResult<Page<UserRow>> {
    let mut query = user::Entity::find().order_by_asc(user::Column::Id);
    if let Some(prefix) = &filter.email_prefix {
        // The prefix is text, not a pattern: escape LIKE's wildcards.
        let escaped = prefix
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        let pattern = sea_orm::sea_query::LikeExpr::new(format!("{escaped}%")).escape('\\');
        query = query.filter(user::Column::Email.like(pattern));
    }
    if let Some(role) = filter.role {
        query = query.filter(user::Column::Role.eq(role));
    }
    if let Some(disabled) = filter.disabled {
        query = query.filter(user::Column::Disabled.eq(disabled));
    }
    if let Some(cursor) = filter.after {
        query = query.filter(user::Column::Id.gt(cursor));
    }
    fetch_page(conn, query, filter.limit, |user| user.id.to_string()).await
}

pub async fn set_role_and_status(
    conn: &impl Conn,
    id: Uuid,
    role: Role,
    disabled: bool,
    now: Millis,
) -> StorageResult<()> {
    let update = user::Entity::update_many()
        .col_expr(user::Column::Role, Expr::value(role))
        .col_expr(user::Column::Disabled, Expr::value(disabled))
        .col_expr(user::Column::UpdatedAt, Expr::value(now));
    update_one(conn, id, update).await
}

/// Admins who can still act (not disabled).
pub async fn active_admins(conn: &impl Conn) -> StorageResult<u64> {
    use sea_orm::PaginatorTrait;
    user::Entity::find()
        .filter(user::Column::Role.eq(Role::Admin))
        .filter(user::Column::Disabled.eq(false))
        .count(conn)
        .await
        .storage()
}

/// Marks (or clears, with `None`) the factor review the next login shows after a reset.
pub async fn set_factor_review(
    conn: &impl Conn,
    id: Uuid,
    since: Option<Millis>,
) -> StorageResult<()> {
    let update =
        user::Entity::update_many().col_expr(user::Column::FactorReviewSince, Expr::value(since));
    update_one(conn, id, update).await
}

/// A login of the account completed now.
pub async fn mark_login(conn: &impl Conn, id: Uuid, now: Millis) -> StorageResult<()> {
    let update = user::Entity::update_many().col_expr(user::Column::LastLoginAt, Expr::value(now));
    update_one(conn, id, update).await
}

/// Enabled accounts of `roles` whose last completed login (or, never signed in, whose
/// creation) is before `cutoff`.
pub async fn inactive(
    conn: &impl Conn,
    roles: &[Role],
    cutoff: Millis,
) -> StorageResult<Vec<UserRow>> {
    use sea_orm::Condition;
    user::Entity::find()
        .filter(user::Column::Role.is_in(roles.iter().copied()))
        .filter(user::Column::Disabled.eq(false))
        .filter(
            Condition::any()
                .add(user::Column::LastLoginAt.lt(cutoff))
                .add(
                    Condition::all()
                        .add(user::Column::LastLoginAt.is_null())
                        .add(user::Column::CreatedAt.lt(cutoff)),
                ),
        )
        .order_by_asc(user::Column::Id)
        .all(conn)
        .await
        .storage()
}

/// Disables `id` if it is still enabled and still inactive since `cutoff`; false when
/// another instance (or a login in between) got there first. This conditional UPDATE is
/// what makes the inactivity job safe to run on several instances at once.
pub async fn disable_if_inactive(
    conn: &impl Conn,
    id: Uuid,
    cutoff: Millis,
    now: Millis,
) -> StorageResult<bool> {
    use sea_orm::Condition;
    let result = user::Entity::update_many()
        .col_expr(user::Column::Disabled, Expr::value(true))
        .col_expr(user::Column::UpdatedAt, Expr::value(now))
        .filter(user::Column::Id.eq(id))
        .filter(user::Column::Disabled.eq(false))
        .filter(
            Condition::any()
                .add(user::Column::LastLoginAt.lt(cutoff))
                .add(
                    Condition::all()
                        .add(user::Column::LastLoginAt.is_null())
                        .add(user::Column::CreatedAt.lt(cutoff)),
                ),
        )
        .exec(conn)
        .await
        .storage()?;
    Ok(result.rows_affected == 1)
}

/// Every enabled admin (the recipients of account notices such as an inactivity disable).
pub async fn enabled_admins(conn: &impl Conn) -> StorageResult<Vec<UserRow>> {
    user::Entity::find()
        .filter(user::Column::Role.eq(Role::Admin))
        .filter(user::Column::Disabled.eq(false))
        .order_by_asc(user::Column::Id)
        .all(conn)
        .await
        .storage()
}
