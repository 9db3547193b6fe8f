//! Second factors: TOTP secrets and passkeys (both encrypted at rest), recovery codes
//! (stored only as keyed hashes).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum TotpCredentials {
    Table,
    UserId,
    SecretCiphertext,
    EnabledAt,
    LastUsedStep,
    CreatedAt,
}

#[derive(DeriveIden)]
enum RecoveryCodes {
    Table,
    Id,
    UserId,
    CodeHash,
    CreatedAt,
    UsedAt,
}

#[derive(DeriveIden)]
enum WebauthnCredentials {
    Table,
    Id,
    UserId,
    CredentialId,
    Name,
    PasskeyCiphertext,
    SignCount,
    CreatedAt,
    LastUsedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(TotpCredentials::Table)
                .if_not_exists()
                .col(uuid(TotpCredentials::UserId).primary_key())
                .col(text(TotpCredentials::SecretCiphertext))
                .col(big_integer_null(TotpCredentials::EnabledAt))
                .col(big_integer_null(TotpCredentials::LastUsedStep))
                .col(big_integer(TotpCredentials::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_totp_user")
                        .from(TotpCredentials::Table, TotpCredentials::UserId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(RecoveryCodes::Table)
                .if_not_exists()
                .col(pk_uuid(RecoveryCodes::Id))
                .col(uuid(RecoveryCodes::UserId))
                .col(string_uniq(RecoveryCodes::CodeHash))
                .col(big_integer(RecoveryCodes::CreatedAt))
                .col(big_integer_null(RecoveryCodes::UsedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_recovery_user")
                        .from(RecoveryCodes::Table, RecoveryCodes::UserId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .if_not_exists()
                .name("idx_recovery_user")
                .table(RecoveryCodes::Table)
                .col(RecoveryCodes::UserId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(WebauthnCredentials::Table)
                .if_not_exists()
                .col(pk_uuid(WebauthnCredentials::Id))
                .col(uuid(WebauthnCredentials::UserId))
                .col(string_uniq(WebauthnCredentials::CredentialId))
                .col(string(WebauthnCredentials::Name))
                .col(text(WebauthnCredentials::PasskeyCiphertext))
                .col(big_integer(WebauthnCredentials::SignCount))
                .col(big_integer(WebauthnCredentials::CreatedAt))
                .col(big_integer_null(WebauthnCredentials::LastUsedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_webauthn_user")
                        .from(WebauthnCredentials::Table, WebauthnCredentials::UserId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .if_not_exists()
                .name("idx_webauthn_user")
                .table(WebauthnCredentials::Table)
                .col(WebauthnCredentials::UserId)
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            WebauthnCredentials::Table.into_iden(),
            RecoveryCodes::Table.into_iden(),
            TotpCredentials::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
