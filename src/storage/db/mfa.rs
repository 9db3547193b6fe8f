//! Second-factor tables: `totp_credentials`, `recovery_codes`, `webauthn_credentials`.

use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, Condition, PaginatorTrait, QueryOrder};

use super::entities::{recovery_code, totp_credential, webauthn_credential};
use super::{Conn, DbResultExt};
use crate::domain::{EnrolledFactor, Factors, Millis};
use crate::storage::StorageResult;

pub use totp_credential::Model as TotpRow;
pub use webauthn_credential::Model as WebauthnRow;

pub async fn factors(conn: &impl Conn, user_id: Uuid) -> StorageResult<Factors> {
    let totp = totp_credential::Entity::find_by_id(user_id)
        .filter(totp_credential::Column::EnabledAt.is_not_null())
        .count(conn)
        .await
        .storage()?
        > 0;
    let webauthn_credentials = webauthn_credential::Entity::find()
        .filter(webauthn_credential::Column::UserId.eq(user_id))
        .count(conn)
        .await
        .storage()?;
    let recovery_codes_left = recovery_codes_left(conn, user_id).await?;
    Ok(Factors {
        totp,
        webauthn_credentials,
        recovery_codes_left,
    })
}

// --- TOTP -------------------------------------------------------------------------------

pub async fn totp(conn: &impl Conn, user_id: Uuid) -> StorageResult<Option<TotpRow>> {
    totp_credential::Entity::find_by_id(user_id)
        .one(conn)
        .await
        .storage()
}

/// Stores a new, not yet enabled secret (replacing an unfinished enrollment).
pub async fn put_pending_totp(
    conn: &impl Conn,
    user_id: Uuid,
    session_id: Uuid,
    ciphertext: &str,
    now: Millis,
) -> StorageResult<()> {
    totp_credential::Entity::delete_by_id(user_id)
        .exec(conn)
        .await
        .storage()?;
    totp_credential::ActiveModel {
        user_id: Set(user_id),
        secret_ciphertext: Set(ciphertext.to_owned()),
        enabled_at: Set(None),
        last_used_step: Set(None),
        created_at: Set(now),
        pending_session_id: Set(Some(session_id)),
    }
    .insert(conn)
    .await
    .storage()?;
    Ok(())
}

/// Records `step` as used, only if it is later than every step used before. False when
/// the step (or a later one) was already accepted: a replay. Atomic, so two requests with
/// the same code cannot both win.
pub async fn consume_totp_step(
    conn: &impl Conn,
    user_id: Uuid,
    step: i64,
    enable_at: Option<Millis>,
) -> StorageResult<bool> {
    let mut update = totp_credential::Entity::update_many()
        .col_expr(totp_credential::Column::LastUsedStep, Expr::value(step))
        .filter(totp_credential::Column::UserId.eq(user_id))
        .filter(
            Condition::any()
                .add(totp_credential::Column::LastUsedStep.is_null())
                .add(totp_credential::Column::LastUsedStep.lt(step)),
        );
    if let Some(now) = enable_at {
        update = update
            .col_expr(totp_credential::Column::EnabledAt, Expr::value(now))
            .filter(totp_credential::Column::EnabledAt.is_null());
    }
    Ok(update.exec(conn).await.storage()?.rows_affected == 1)
}

pub async fn delete_totp(conn: &impl Conn, user_id: Uuid) -> StorageResult<bool> {
    Ok(totp_credential::Entity::delete_by_id(user_id)
        .exec(conn)
        .await
        .storage()?
        .rows_affected
        > 0)
}

// --- Recovery codes ---------------------------------------------------------------------

pub async fn recovery_codes_left(conn: &impl Conn, user_id: Uuid) -> StorageResult<u64> {
    recovery_code::Entity::find()
        .filter(recovery_code::Column::UserId.eq(user_id))
        .filter(recovery_code::Column::UsedAt.is_null())
        .count(conn)
        .await
        .storage()
}

pub async fn replace_recovery_codes(
    conn: &impl Conn,
    user_id: Uuid,
    hashes: &[String],
    now: Millis,
) -> StorageResult<()> {
    delete_recovery_codes(conn, user_id).await?;
    for hash in hashes {
        recovery_code::ActiveModel {
            id: Set(Uuid::now_v7()),
            user_id: Set(user_id),
            code_hash: Set(hash.clone()),
            created_at: Set(now),
            used_at: Set(None),
        }
        .insert(conn)
        .await
        .storage()?;
    }
    Ok(())
}

/// Marks an unused code of this user used; false when there is none.
pub async fn redeem_recovery_code(
    conn: &impl Conn,
    user_id: Uuid,
    hash: &str,
    now: Millis,
) -> StorageResult<bool> {
    let result = recovery_code::Entity::update_many()
        .col_expr(recovery_code::Column::UsedAt, Expr::value(now))
        .filter(recovery_code::Column::UserId.eq(user_id))
        .filter(recovery_code::Column::CodeHash.eq(hash))
        .filter(recovery_code::Column::UsedAt.is_null())
        .exec(conn)
        .await
        .storage()?;
    Ok(result.rows_affected == 1)
}

pub async fn delete_recovery_codes(conn: &impl Conn, user_id: Uuid) -> StorageResult<()> {
    recovery_code::Entity::delete_many()
        .filter(recovery_code::Column::UserId.eq(user_id))
        .exec(conn)
        .await
        .storage()?;
    Ok(())
}

// --- WebAuthn ---------------------------------------------------------------------------

pub async fn insert_webauthn(conn: &impl Conn, row: WebauthnRow) -> StorageResult<()> {
    webauthn_credential::ActiveModel {
        id: Set(row.id),
        user_id: Set(row.user_id),
        credential_id: Set(row.credential_id),
        name: Set(row.name),
        passkey_ciphertext: Set(row.passkey_ciphertext),
        sign_count: Set(row.sign_count),
        created_at: Set(row.created_at),
        last_used_at: Set(row.last_used_at),
    }
    .insert(conn)
    .await
    .storage()?;
    Ok(())
}

pub async fn webauthn_for_user(conn: &impl Conn, user_id: Uuid) -> StorageResult<Vec<WebauthnRow>> {
    webauthn_credential::Entity::find()
        .filter(webauthn_credential::Column::UserId.eq(user_id))
        .order_by_asc(webauthn_credential::Column::CreatedAt)
        .all(conn)
        .await
        .storage()
}

pub async fn webauthn_by_credential_id(
    conn: &impl Conn,
    credential_id: &str,
) -> StorageResult<Option<WebauthnRow>> {
    webauthn_credential::Entity::find()
        .filter(webauthn_credential::Column::CredentialId.eq(credential_id))
        .one(conn)
        .await
        .storage()
}

/// Stores the state after a successful assertion, only if the stored counter has not
/// moved meanwhile (a concurrent assertion with the same counter loses).
pub async fn record_webauthn_use(
    conn: &impl Conn,
    id: Uuid,
    expected_count: i64,
    new_count: i64,
    ciphertext: &str,
    now: Millis,
) -> StorageResult<bool> {
    let result = webauthn_credential::Entity::update_many()
        .col_expr(
            webauthn_credential::Column::SignCount,
            Expr::value(new_count),
        )
        .col_expr(
            webauthn_credential::Column::PasskeyCiphertext,
            Expr::value(ciphertext),
        )
        .col_expr(webauthn_credential::Column::LastUsedAt, Expr::value(now))
        .filter(webauthn_credential::Column::Id.eq(id))
        .filter(webauthn_credential::Column::SignCount.eq(expected_count))
        .exec(conn)
        .await
        .storage()?;
    Ok(result.rows_affected == 1)
}

pub async fn delete_webauthn(conn: &impl Conn, user_id: Uuid, id: Uuid) -> StorageResult<bool> {
    let result = webauthn_credential::Entity::delete_many()
        .filter(webauthn_credential::Column::Id.eq(id))
        .filter(webauthn_credential::Column::UserId.eq(user_id))
        .exec(conn)
        .await
        .storage()?;
    Ok(result.rows_affected == 1)
}

/// Renames one of the user's passkeys; the row as it now is, or None when the user has no
/// passkey of that id.
pub async fn rename_webauthn(
    conn: &impl Conn,
    user_id: Uuid,
    id: Uuid,
    name: &str,
) -> StorageResult<Option<WebauthnRow>> {
    let result = webauthn_credential::Entity::update_many()
        .col_expr(
            webauthn_credential::Column::Name,
            sea_orm::sea_query::Expr::value(name),
        )
        .filter(webauthn_credential::Column::Id.eq(id))
        .filter(webauthn_credential::Column::UserId.eq(user_id))
        .exec(conn)
        .await
        .storage()?;
    if result.rows_affected != 1 {
        return Ok(None);
    }
    webauthn_credential::Entity::find_by_id(id)
        .one(conn)
        .await
        .storage()
}

// --- Key rotation -----------------------------------------------------------------------

/// Every stored ciphertext as (table, key, ciphertext), for `rotate-keys`.
pub async fn all_ciphertexts(conn: &impl Conn) -> StorageResult<Vec<(&'static str, Uuid, String)>> {
    let mut all = Vec::new();
    for row in totp_credential::Entity::find().all(conn).await.storage()? {
        all.push(("totp", row.user_id, row.secret_ciphertext));
    }
    for row in webauthn_credential::Entity::find()
        .all(conn)
        .await
        .storage()?
    {
        all.push(("webauthn", row.id, row.passkey_ciphertext));
    }
    Ok(all)
}

/// Replaces one ciphertext, only if it is still the one that was read (safe to re-run).
pub async fn replace_ciphertext(
    conn: &impl Conn,
    table: &str,
    id: Uuid,
    old: &str,
    new: &str,
) -> StorageResult<bool> {
    let affected = match table {
        "totp" => {
            totp_credential::Entity::update_many()
                .col_expr(totp_credential::Column::SecretCiphertext, Expr::value(new))
                .filter(totp_credential::Column::UserId.eq(id))
                .filter(totp_credential::Column::SecretCiphertext.eq(old))
                .exec(conn)
                .await
                .storage()?
                .rows_affected
        }
        _ => {
            webauthn_credential::Entity::update_many()
                .col_expr(
                    webauthn_credential::Column::PasskeyCiphertext,
                    Expr::value(new),
                )
                .filter(webauthn_credential::Column::Id.eq(id))
                .filter(webauthn_credential::Column::PasskeyCiphertext.eq(old))
                .exec(conn)
                .await
                .storage()?
                .rows_affected
        }
    };
    Ok(affected == 1)
}

/// Every second factor of a user, oldest first.
pub async fn enrolled(conn: &impl Conn, user_id: Uuid) -> StorageResult<Vec<EnrolledFactor>> {
    let mut list: Vec<EnrolledFactor> = totp(conn, user_id)
        .await?
        .and_then(|row| row.enabled_at)
        .map(|enabled_at| EnrolledFactor::Totp { enabled_at })
        .into_iter()
        .collect();
    list.extend(
        webauthn_for_user(conn, user_id)
            .await?
            .into_iter()
            .map(|row| EnrolledFactor::Passkey {
                id: row.id,
                name: row.name,
                created_at: row.created_at,
            }),
    );
    list.sort_by_key(EnrolledFactor::enrolled_at);
    Ok(list)
}
