//! The OpenID Provider's tables: signing keys, database clients, grants (each with its
//! live refresh token, migration 9) and consents (see the migration
//! `m20261201_000005_oauth` for why grants hang off sessions).

use sea_orm::entity::prelude::*;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, QueryOrder};

use super::entities::{
    oauth_client, oauth_consent, oauth_grant, oauth_refresh_token, oauth_signing_key,
};
use super::{Conn, DbResultExt};
use crate::domain::Millis;
use crate::storage::StorageResult;

pub use oauth_client::Model as ClientRow;
pub use oauth_grant::Model as GrantRow;
pub use oauth_refresh_token::Model as LegacyRefreshTokenRow;
pub use oauth_signing_key::Model as SigningKeyRow;

// --- signing keys ---------------------------------------------------------------------

/// Keys still published: the current ones and those retired after `retired_after`.
pub async fn published_keys(
    conn: &impl Conn,
    retired_after: Millis,
) -> StorageResult<Vec<SigningKeyRow>> {
    oauth_signing_key::Entity::find()
        .filter(
            sea_orm::Condition::any()
                .add(oauth_signing_key::Column::RetiredAt.is_null())
                .add(oauth_signing_key::Column::RetiredAt.gt(retired_after)),
        )
        .order_by_desc(oauth_signing_key::Column::CreatedAt)
        .all(conn)
        .await
        .storage()
}

/// Adds a new current key and retires every other current one, in the caller's
/// transaction.
pub async fn insert_current_key(conn: &impl Conn, row: SigningKeyRow) -> StorageResult<()> {
    let now = row.created_at;
    let kid = row.kid.clone();
    oauth_signing_key::Entity::update_many()
        .col_expr(oauth_signing_key::Column::RetiredAt, Expr::value(now))
        .filter(oauth_signing_key::Column::RetiredAt.is_null())
        .filter(oauth_signing_key::Column::Kid.ne(kid))
        .exec(conn)
        .await
        .storage()?;
    oauth_signing_key::ActiveModel {
        kid: Set(row.kid),
        alg: Set(row.alg),
        private_key: Set(row.private_key),
        public_jwk: Set(row.public_jwk),
        created_at: Set(row.created_at),
        retired_at: Set(None),
    }
    .insert(conn)
    .await
    .storage()?;
    Ok(())
}

/// Every signing key (for re-sealing under a new master key).
pub async fn all_keys(conn: &impl Conn) -> StorageResult<Vec<SigningKeyRow>> {
    oauth_signing_key::Entity::find().all(conn).await.storage()
}

/// Replaces a sealed private key if it still holds `old`; false when another run did it.
pub async fn replace_private_key(
    conn: &impl Conn,
    kid: &str,
    old: &str,
    new: &str,
) -> StorageResult<bool> {
    let result = oauth_signing_key::Entity::update_many()
        .col_expr(oauth_signing_key::Column::PrivateKey, Expr::value(new))
        .filter(oauth_signing_key::Column::Kid.eq(kid))
        .filter(oauth_signing_key::Column::PrivateKey.eq(old))
        .exec(conn)
        .await
        .storage()?;
    Ok(result.rows_affected == 1)
}

// --- clients ----------------------------------------------------------------------------

pub async fn find_client(conn: &impl Conn, client_id: &str) -> StorageResult<Option<ClientRow>> {
    oauth_client::Entity::find_by_id(client_id.to_owned())
        .one(conn)
        .await
        .storage()
}

pub async fn list_clients(conn: &impl Conn) -> StorageResult<Vec<ClientRow>> {
    oauth_client::Entity::find()
        .order_by_asc(oauth_client::Column::ClientId)
        .all(conn)
        .await
        .storage()
}

/// Inserts a client; false when the id is taken.
pub async fn insert_client(conn: &impl Conn, row: ClientRow) -> StorageResult<bool> {
    let result = oauth_client::Entity::insert(oauth_client::ActiveModel {
        client_id: Set(row.client_id),
        metadata: Set(row.metadata),
        secret_hash: Set(row.secret_hash),
        created_at: Set(row.created_at),
        updated_at: Set(row.updated_at),
    })
    .on_conflict(
        OnConflict::column(oauth_client::Column::ClientId)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await
    .storage()?;
    Ok(result == 1)
}

/// Replaces a client's metadata (and its secret hash when `secret_hash` is Some); false
/// when it does not exist.
pub async fn update_client(
    conn: &impl Conn,
    client_id: &str,
    metadata: &str,
    secret_hash: Option<Option<String>>,
    now: Millis,
) -> StorageResult<bool> {
    let mut update = oauth_client::Entity::update_many()
        .col_expr(oauth_client::Column::Metadata, Expr::value(metadata))
        .col_expr(oauth_client::Column::UpdatedAt, Expr::value(now));
    if let Some(hash) = secret_hash {
        update = update.col_expr(oauth_client::Column::SecretHash, Expr::value(hash));
    }
    let result = update
        .filter(oauth_client::Column::ClientId.eq(client_id))
        .exec(conn)
        .await
        .storage()?;
    Ok(result.rows_affected == 1)
}

pub async fn delete_client(conn: &impl Conn, client_id: &str) -> StorageResult<bool> {
    let result = oauth_client::Entity::delete_many()
        .filter(oauth_client::Column::ClientId.eq(client_id))
        .exec(conn)
        .await
        .storage()?;
    Ok(result.rows_affected == 1)
}

// --- grants and refresh tokens ----------------------------------------------------------

pub async fn insert_grant(conn: &impl Conn, row: GrantRow) -> StorageResult<()> {
    oauth_grant::ActiveModel {
        id: Set(row.id),
        client_id: Set(row.client_id),
        user_id: Set(row.user_id),
        session_id: Set(row.session_id),
        scope: Set(row.scope),
        audience: Set(row.audience),
        auth_time: Set(row.auth_time),
        acr: Set(row.acr),
        amr: Set(row.amr),
        authorization_details: Set(row.authorization_details),
        tx_hash: Set(row.tx_hash),
        dpop_jkt: Set(row.dpop_jkt),
        created_at: Set(row.created_at),
        revoked_at: Set(row.revoked_at),
        refresh_hash: Set(row.refresh_hash),
        refresh_issued_at: Set(row.refresh_issued_at),
        refresh_expires_at: Set(row.refresh_expires_at),
    }
    .insert(conn)
    .await
    .storage()?;
    Ok(())
}

pub async fn find_grant(conn: &impl Conn, id: Uuid) -> StorageResult<Option<GrantRow>> {
    oauth_grant::Entity::find_by_id(id)
        .one(conn)
        .await
        .storage()
}

/// Revokes a grant: every token of its family stops working. True when this call did it.
pub async fn revoke_grant(conn: &impl Conn, id: Uuid, now: Millis) -> StorageResult<bool> {
    let result = oauth_grant::Entity::update_many()
        .col_expr(oauth_grant::Column::RevokedAt, Expr::value(now))
        .filter(oauth_grant::Column::Id.eq(id))
        .filter(oauth_grant::Column::RevokedAt.is_null())
        .exec(conn)
        .await
        .storage()?;
    Ok(result.rows_affected == 1)
}

/// Rotates a grant's refresh token: `next` replaces `current` only if `current` is still
/// the live one and the grant is not revoked. False when another use got there first (or
/// the grant was revoked meanwhile): the caller treats that as reuse.
pub async fn rotate_refresh_token(
    conn: &impl Conn,
    grant_id: Uuid,
    current: &str,
    next: &str,
    now: Millis,
) -> StorageResult<bool> {
    let result = oauth_grant::Entity::update_many()
        .col_expr(oauth_grant::Column::RefreshHash, Expr::value(next))
        .col_expr(oauth_grant::Column::RefreshIssuedAt, Expr::value(now))
        .filter(oauth_grant::Column::Id.eq(grant_id))
        .filter(oauth_grant::Column::RefreshHash.eq(current))
        .filter(oauth_grant::Column::RevokedAt.is_null())
        .exec(conn)
        .await
        .storage()?;
    Ok(result.rows_affected == 1)
}

/// A refresh token issued before migration 9 (read only: which grant it belongs to).
pub async fn find_legacy_refresh_token(
    conn: &impl Conn,
    token_hash: &str,
) -> StorageResult<Option<LegacyRefreshTokenRow>> {
    oauth_refresh_token::Entity::find_by_id(token_hash.to_owned())
        .one(conn)
        .await
        .storage()
}

// --- consents ---------------------------------------------------------------------------

pub async fn find_consent(
    conn: &impl Conn,
    user_id: Uuid,
    client_id: &str,
) -> StorageResult<Option<String>> {
    Ok(
        oauth_consent::Entity::find_by_id((user_id, client_id.to_owned()))
            .one(conn)
            .await
            .storage()?
            .map(|row| row.scope),
    )
}

pub async fn save_consent(
    conn: &impl Conn,
    user_id: Uuid,
    client_id: &str,
    scope: &str,
    now: Millis,
) -> StorageResult<()> {
    oauth_consent::Entity::insert(oauth_consent::ActiveModel {
        user_id: Set(user_id),
        client_id: Set(client_id.to_owned()),
        scope: Set(scope.to_owned()),
        granted_at: Set(now),
    })
    .on_conflict(
        OnConflict::columns([
            oauth_consent::Column::UserId,
            oauth_consent::Column::ClientId,
        ])
        .update_columns([
            oauth_consent::Column::Scope,
            oauth_consent::Column::GrantedAt,
        ])
        .to_owned(),
    )
    .exec_without_returning(conn)
    .await
    .storage()?;
    Ok(())
}

/// Revokes every grant of a client (it was deleted or its secret leaked).
pub async fn revoke_client_grants(
    conn: &impl Conn,
    client_id: &str,
    now: Millis,
) -> StorageResult<u64> {
    let result = oauth_grant::Entity::update_many()
        .col_expr(oauth_grant::Column::RevokedAt, Expr::value(now))
        .filter(oauth_grant::Column::ClientId.eq(client_id))
        .filter(oauth_grant::Column::RevokedAt.is_null())
        .exec(conn)
        .await
        .storage()?;
    Ok(result.rows_affected)
}
