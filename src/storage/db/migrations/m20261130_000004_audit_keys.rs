//! A keyed audit chain: the id of the key that sealed each record, and signed head
//! checkpoints (see `storage::db::audit`).
//!
//! Records written before this migration keep `key_id` NULL: they are the legacy,
//! plain SHA-256 prefix of the chain and are verified as such.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    KeyId,
}

#[derive(DeriveIden)]
enum AuditCheckpoints {
    Table,
    Seq,
    HeadHash,
    CreatedAt,
    KeyId,
    Mac,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if !m.has_column("audit_log", "key_id").await? {
            m.alter_table(
                Table::alter()
                    .table(AuditLog::Table)
                    .add_column(string_null(AuditLog::KeyId))
                    .to_owned(),
            )
            .await?;
        }
        // One row per checkpointed head; `seq` is the record it vouches for (and, the chain
        // starting at 1 without gaps, the number of records up to it). Several instances
        // racing to checkpoint the same head collide on the key and one insert is dropped.
        m.create_table(
            Table::create()
                .table(AuditCheckpoints::Table)
                .if_not_exists()
                .col(big_integer(AuditCheckpoints::Seq).primary_key())
                .col(string(AuditCheckpoints::HeadHash))
                .col(big_integer(AuditCheckpoints::CreatedAt))
                .col(string(AuditCheckpoints::KeyId))
                .col(string(AuditCheckpoints::Mac))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(
            Table::drop()
                .table(AuditCheckpoints::Table)
                .if_exists()
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(AuditLog::Table)
                .drop_column(AuditLog::KeyId)
                .to_owned(),
        )
        .await
    }
}
