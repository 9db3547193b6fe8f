//! A partitioned audit trail (see `storage::db::audit`): each record names its chain and
//! its position in it, checkpoints name their chain, and anchors sign every chain's head.
//!
//! The existing single chain becomes chain 0 unchanged: its records keep their `seq`,
//! which is also their position in chain 0, so their hashes (legacy prefix included) and
//! every existing checkpoint still verify. On PostgreSQL the trail position (`seq`) of new
//! records comes from a sequence, which hands out numbers without any lock; it starts
//! after the highest existing record.

use sea_orm::{ConnectionTrait, DbBackend};
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Seq,
    Chain,
    ChainSeq,
}

#[derive(DeriveIden)]
enum AuditCheckpoints {
    Table,
    Seq,
    Chain,
}

#[derive(DeriveIden)]
enum AuditAnchors {
    Table,
    Id,
    CreatedAt,
    Heads,
    KeyId,
    Mac,
}

/// The PostgreSQL sequence of trail positions (`audit::TRAIL_POSITION_SEQUENCE`).
const SEQUENCE: &str = "audit_log_position";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(AuditLog::Table)
                .add_column(integer(AuditLog::Chain).default(0))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(AuditLog::Table)
                .add_column(big_integer(AuditLog::ChainSeq).default(0))
                .to_owned(),
        )
        .await?;
        m.exec_stmt(
            Query::update()
                .table(AuditLog::Table)
                .value(AuditLog::ChainSeq, Expr::col(AuditLog::Seq))
                .to_owned(),
        )
        .await?;
        // Appending reads a chain's head through it; it also forbids a fork in a chain.
        m.create_index(
            Index::create()
                .name("audit_log_chain_position")
                .table(AuditLog::Table)
                .col(AuditLog::Chain)
                .col(AuditLog::ChainSeq)
                .unique()
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(AuditCheckpoints::Table)
                .add_column(integer(AuditCheckpoints::Chain).default(0))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("audit_checkpoints_chain")
                .table(AuditCheckpoints::Table)
                .col(AuditCheckpoints::Chain)
                .col(AuditCheckpoints::Seq)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(AuditAnchors::Table)
                .if_not_exists()
                .col(uuid(AuditAnchors::Id).primary_key())
                .col(big_integer(AuditAnchors::CreatedAt))
                .col(text(AuditAnchors::Heads))
                .col(string(AuditAnchors::KeyId))
                .col(string(AuditAnchors::Mac))
                .to_owned(),
        )
        .await?;
        let db = m.get_connection();
        if db.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared(&format!(
                "CREATE SEQUENCE IF NOT EXISTS {SEQUENCE} OWNED BY audit_log.seq; \
                 SELECT setval('{SEQUENCE}', COALESCE((SELECT MAX(seq) FROM audit_log), 0) + 1, \
                 false);"
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        if db.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared(&format!("DROP SEQUENCE IF EXISTS {SEQUENCE}"))
                .await?;
        }
        m.drop_table(
            Table::drop()
                .table(AuditAnchors::Table)
                .if_exists()
                .to_owned(),
        )
        .await?;
        m.drop_index(Index::drop().name("audit_checkpoints_chain").to_owned())
            .await?;
        m.alter_table(
            Table::alter()
                .table(AuditCheckpoints::Table)
                .drop_column(AuditCheckpoints::Chain)
                .to_owned(),
        )
        .await?;
        m.drop_index(Index::drop().name("audit_log_chain_position").to_owned())
            .await?;
        for column in [AuditLog::ChainSeq, AuditLog::Chain] {
            m.alter_table(
                Table::alter()
                    .table(AuditLog::Table)
                    .drop_column(column)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
