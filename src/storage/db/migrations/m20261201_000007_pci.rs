//! `PRIVILEGED_POLICY=pci` (docs/API.md §11): when each account last completed a login
//! (PCI DSS 8.2.6, inactive accounts) and the hashes of its previous passwords (8.3.7,
//! password history).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    LastLoginAt,
}

#[derive(DeriveIden)]
enum PasswordHistory {
    Table,
    Id,
    UserId,
    PasswordHash,
    PasswordPepperId,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Users::Table)
                .add_column(big_integer_null(Users::LastLoginAt))
                .to_owned(),
        )
        .await?;
        // No login time was recorded before: existing accounts count from the upgrade,
        // so switching PRIVILEGED_POLICY=pci on does not disable an admin who signed in
        // yesterday but was created long ago.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        m.exec_stmt(
            Query::update()
                .table(Users::Table)
                .value(Users::LastLoginAt, now)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(PasswordHistory::Table)
                .if_not_exists()
                .col(uuid(PasswordHistory::Id).primary_key())
                .col(uuid(PasswordHistory::UserId))
                .col(text(PasswordHistory::PasswordHash))
                .col(string_null(PasswordHistory::PasswordPepperId))
                .col(big_integer(PasswordHistory::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_password_history_user")
                        .from(PasswordHistory::Table, PasswordHistory::UserId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_password_history_user")
                .table(PasswordHistory::Table)
                .col(PasswordHistory::UserId)
                .col(PasswordHistory::CreatedAt)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(
            Table::drop()
                .table(PasswordHistory::Table)
                .if_exists()
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Users::Table)
                .drop_column(Users::LastLoginAt)
                .to_owned(),
        )
        .await
    }
}
