//! The `known_devices` table: the devices each account signed in from, by keyed hash only
//! (see `services::new_device`).

use sea_orm::ActiveValue::Set;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::OnConflict;

use super::entities::known_device;
use super::{Conn, DbResultExt};
use crate::domain::Millis;
use crate::storage::StorageResult;

pub use known_device::Model as KnownDeviceRow;

pub async fn find(
    conn: &impl Conn,
    user_id: Uuid,
    device_key: &str,
) -> StorageResult<Option<KnownDeviceRow>> {
    known_device::Entity::find_by_id((user_id, device_key.to_owned()))
        .one(conn)
        .await
        .storage()
}

/// Whether the account has any device on record (its first login has none).
pub async fn any(conn: &impl Conn, user_id: Uuid) -> StorageResult<bool> {
    let found = known_device::Entity::find()
        .filter(known_device::Column::UserId.eq(user_id))
        .one(conn)
        .await
        .storage()?;
    Ok(found.is_some())
}

/// Records a device first seen now; false when a concurrent login recorded it first.
pub async fn insert(
    conn: &impl Conn,
    user_id: Uuid,
    device_key: &str,
    now: Millis,
    alerted_at: Option<Millis>,
) -> StorageResult<bool> {
    let inserted = known_device::Entity::insert(known_device::ActiveModel {
        user_id: Set(user_id),
        device_key: Set(device_key.to_owned()),
        first_seen_at: Set(now),
        last_seen_at: Set(now),
        last_alert_at: Set(alerted_at),
    })
    .on_conflict(
        OnConflict::columns([
            known_device::Column::UserId,
            known_device::Column::DeviceKey,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(conn)
    .await
    .storage()?;
    Ok(inserted == 1)
}

/// Marks the device seen now (and alerted, when `alerted_at` is set), only if its
/// `last_seen_at` is still `seen_before`: of two racing logins one wins, so one alerts.
pub async fn mark_seen(
    conn: &impl Conn,
    user_id: Uuid,
    device_key: &str,
    seen_before: Millis,
    now: Millis,
    alerted_at: Option<Millis>,
) -> StorageResult<bool> {
    let mut update = known_device::Entity::update_many()
        .col_expr(known_device::Column::LastSeenAt, Expr::value(now));
    if let Some(at) = alerted_at {
        update = update.col_expr(known_device::Column::LastAlertAt, Expr::value(at));
    }
    let result = update
        .filter(known_device::Column::UserId.eq(user_id))
        .filter(known_device::Column::DeviceKey.eq(device_key))
        .filter(known_device::Column::LastSeenAt.eq(seen_before))
        .exec(conn)
        .await
        .storage()?;
    Ok(result.rows_affected == 1)
}
