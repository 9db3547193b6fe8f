//! Known devices for new-device login alerts (docs/API.md §11, `NEW_DEVICE_ALERTS`).
//!
//! One row per (user, device key). The key is a keyed hash of the browser family, the
//! operating system and the network prefix: the table holds no user agent or address.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum KnownDevices {
    Table,
    UserId,
    DeviceKey,
    FirstSeenAt,
    LastSeenAt,
    LastAlertAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(KnownDevices::Table)
                .if_not_exists()
                .col(uuid(KnownDevices::UserId))
                .col(string(KnownDevices::DeviceKey))
                .col(big_integer(KnownDevices::FirstSeenAt))
                .col(big_integer(KnownDevices::LastSeenAt))
                .col(big_integer_null(KnownDevices::LastAlertAt))
                .primary_key(
                    Index::create()
                        .col(KnownDevices::UserId)
                        .col(KnownDevices::DeviceKey),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_known_devices_user")
                        .from(KnownDevices::Table, KnownDevices::UserId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(
            Table::drop()
                .table(KnownDevices::Table)
                .if_exists()
                .to_owned(),
        )
        .await
    }
}
