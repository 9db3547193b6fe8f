//! Fixes from the security review (issue 11): how a session's second factor was proven,
//! which session owns a pending TOTP setup, and the factor review after a password reset.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Sessions {
    Table,
    /// How `mfa_verified_at` was earned: `totp`, `webauthn`, `recovery_code`, or
    /// `enrollment` (a first factor just set up — never enough for privileged routes).
    MfaMethod,
    /// The user's role changed: the next request rotates the token (docs/API.md §2: a
    /// privilege change rotates the session).
    RotateRequired,
}

#[derive(DeriveIden)]
enum TotpCredentials {
    Table,
    /// The public id of the session that started a pending setup; only it may finish.
    PendingSessionId,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    /// Set by a password reset while second factors exist: the next login lists them so
    /// the owner can spot one they never enrolled. Cleared by a completed login.
    FactorReviewSince,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        m.alter_table(
            Table::alter()
                .table(Sessions::Table)
                .add_column(text_null(Sessions::MfaMethod))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Sessions::Table)
                .add_column(boolean(Sessions::RotateRequired).default(false))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(TotpCredentials::Table)
                .add_column(uuid_null(TotpCredentials::PendingSessionId))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Users::Table)
                .add_column(big_integer_null(Users::FactorReviewSince))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Users::Table)
                .drop_column(Users::FactorReviewSince)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(TotpCredentials::Table)
                .drop_column(TotpCredentials::PendingSessionId)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Sessions::Table)
                .drop_column(Sessions::RotateRequired)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Sessions::Table)
                .drop_column(Sessions::MfaMethod)
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}
