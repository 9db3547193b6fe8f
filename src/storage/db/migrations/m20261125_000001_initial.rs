//! Accounts, sessions, email tokens, the audit log and the email outbox.
//!
//! Instants are BIGINT milliseconds since the epoch (UTC) so both backends compare and
//! order them identically.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Email,
    PasswordHash,
    PasswordPepperId,
    Role,
    EmailVerifiedAt,
    Disabled,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Id,
    TokenHash,
    UserId,
    State,
    CreatedAt,
    LastSeenAt,
    AbsoluteExpiresAt,
    MfaVerifiedAt,
    Ip,
    UserAgent,
}

#[derive(DeriveIden)]
enum EmailTokens {
    Table,
    Id,
    UserId,
    Purpose,
    TokenHash,
    CreatedAt,
    ExpiresAt,
    UsedAt,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Seq,
    Id,
    OccurredAt,
    Event,
    UserId,
    ActorId,
    Ip,
    UserAgent,
    RequestId,
    Metadata,
    PrevHash,
    Hash,
}

#[derive(DeriveIden)]
enum EmailOutbox {
    Table,
    Id,
    CreatedAt,
    Kind,
    Recipient,
    Subject,
    BodyText,
    BodyHtml,
    Status,
    Attempts,
    NextAttemptAt,
    LockedUntil,
    SentAt,
    LastError,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Users::Table)
                .if_not_exists()
                .col(pk_uuid(Users::Id))
                .col(string_uniq(Users::Email))
                .col(text(Users::PasswordHash))
                .col(string_null(Users::PasswordPepperId))
                .col(string(Users::Role))
                .col(big_integer_null(Users::EmailVerifiedAt))
                .col(boolean(Users::Disabled).default(false))
                .col(big_integer(Users::CreatedAt))
                .col(big_integer(Users::UpdatedAt))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Sessions::Table)
                .if_not_exists()
                .col(pk_uuid(Sessions::Id))
                .col(string_uniq(Sessions::TokenHash))
                .col(uuid(Sessions::UserId))
                .col(string(Sessions::State))
                .col(big_integer(Sessions::CreatedAt))
                .col(big_integer(Sessions::LastSeenAt))
                .col(big_integer(Sessions::AbsoluteExpiresAt))
                .col(big_integer_null(Sessions::MfaVerifiedAt))
                .col(string(Sessions::Ip))
                .col(text(Sessions::UserAgent))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_sessions_user")
                        .from(Sessions::Table, Sessions::UserId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .if_not_exists()
                .name("idx_sessions_user")
                .table(Sessions::Table)
                .col(Sessions::UserId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(EmailTokens::Table)
                .if_not_exists()
                .col(pk_uuid(EmailTokens::Id))
                .col(uuid(EmailTokens::UserId))
                .col(string(EmailTokens::Purpose))
                .col(string_uniq(EmailTokens::TokenHash))
                .col(big_integer(EmailTokens::CreatedAt))
                .col(big_integer(EmailTokens::ExpiresAt))
                .col(big_integer_null(EmailTokens::UsedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_email_tokens_user")
                        .from(EmailTokens::Table, EmailTokens::UserId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .if_not_exists()
                .name("idx_email_tokens_user_purpose")
                .table(EmailTokens::Table)
                .col(EmailTokens::UserId)
                .col(EmailTokens::Purpose)
                .to_owned(),
        )
        .await?;

        // Append-only and hash-chained; no foreign keys, so records outlive what they describe.
        m.create_table(
            Table::create()
                .table(AuditLog::Table)
                .if_not_exists()
                .col(big_integer(AuditLog::Seq).primary_key())
                .col(uuid_uniq(AuditLog::Id))
                .col(big_integer(AuditLog::OccurredAt))
                .col(string(AuditLog::Event))
                .col(uuid_null(AuditLog::UserId))
                .col(uuid_null(AuditLog::ActorId))
                .col(string_null(AuditLog::Ip))
                .col(text_null(AuditLog::UserAgent))
                .col(string_null(AuditLog::RequestId))
                .col(text(AuditLog::Metadata))
                .col(string(AuditLog::PrevHash))
                .col(string(AuditLog::Hash))
                .to_owned(),
        )
        .await?;
        for (name, column) in [
            ("idx_audit_user_seq", AuditLog::UserId),
            ("idx_audit_event_seq", AuditLog::Event),
            ("idx_audit_occurred_seq", AuditLog::OccurredAt),
        ] {
            m.create_index(
                Index::create()
                    .if_not_exists()
                    .name(name)
                    .table(AuditLog::Table)
                    .col(column)
                    .col(AuditLog::Seq)
                    .to_owned(),
            )
            .await?;
        }

        m.create_table(
            Table::create()
                .table(EmailOutbox::Table)
                .if_not_exists()
                .col(pk_uuid(EmailOutbox::Id))
                .col(big_integer(EmailOutbox::CreatedAt))
                .col(string(EmailOutbox::Kind))
                .col(string(EmailOutbox::Recipient))
                .col(text(EmailOutbox::Subject))
                .col(text(EmailOutbox::BodyText))
                .col(text(EmailOutbox::BodyHtml))
                .col(string(EmailOutbox::Status))
                .col(integer(EmailOutbox::Attempts).default(0))
                .col(big_integer(EmailOutbox::NextAttemptAt))
                .col(big_integer_null(EmailOutbox::LockedUntil))
                .col(big_integer_null(EmailOutbox::SentAt))
                .col(text_null(EmailOutbox::LastError))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .if_not_exists()
                .name("idx_outbox_due")
                .table(EmailOutbox::Table)
                .col(EmailOutbox::Status)
                .col(EmailOutbox::NextAttemptAt)
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            EmailOutbox::Table.into_iden(),
            AuditLog::Table.into_iden(),
            EmailTokens::Table.into_iden(),
            Sessions::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
