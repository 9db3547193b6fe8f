//! The OpenID Provider (docs/API.md §8): signing keys, registered clients, grants with
//! their refresh tokens, remembered consents, and how each session's login began.
//!
//! A grant belongs to the session it came from (`ON DELETE CASCADE`): logout, reset,
//! admin disable and revoke-others delete the session row, and with it every grant and
//! refresh token — on every instance at once, with no extra bookkeeping.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Id,
    FirstFactor,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum OauthSigningKeys {
    Table,
    Kid,
    Alg,
    PrivateKey,
    PublicJwk,
    CreatedAt,
    RetiredAt,
}

#[derive(DeriveIden)]
enum OauthClients {
    Table,
    ClientId,
    Metadata,
    SecretHash,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum OauthGrants {
    Table,
    Id,
    ClientId,
    UserId,
    SessionId,
    Scope,
    Audience,
    AuthTime,
    Acr,
    Amr,
    AuthorizationDetails,
    TxHash,
    DpopJkt,
    CreatedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum OauthRefreshTokens {
    Table,
    TokenHash,
    GrantId,
    CreatedAt,
    ExpiresAt,
    UsedAt,
}

#[derive(DeriveIden)]
enum OauthConsents {
    Table,
    UserId,
    ClientId,
    Scope,
    GrantedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // Sessions from before this migration all began with a password.
        if !m.has_column("sessions", "first_factor").await? {
            m.alter_table(
                Table::alter()
                    .table(Sessions::Table)
                    .add_column(string(Sessions::FirstFactor).default("password"))
                    .to_owned(),
            )
            .await?;
        }
        m.create_table(
            Table::create()
                .table(OauthSigningKeys::Table)
                .if_not_exists()
                .col(string(OauthSigningKeys::Kid).primary_key())
                .col(string(OauthSigningKeys::Alg))
                .col(text(OauthSigningKeys::PrivateKey))
                .col(text(OauthSigningKeys::PublicJwk))
                .col(big_integer(OauthSigningKeys::CreatedAt))
                .col(big_integer_null(OauthSigningKeys::RetiredAt))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(OauthClients::Table)
                .if_not_exists()
                .col(string(OauthClients::ClientId).primary_key())
                .col(text(OauthClients::Metadata))
                .col(string_null(OauthClients::SecretHash))
                .col(big_integer(OauthClients::CreatedAt))
                .col(big_integer(OauthClients::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(OauthGrants::Table)
                .if_not_exists()
                .col(pk_uuid(OauthGrants::Id))
                .col(string(OauthGrants::ClientId))
                .col(uuid(OauthGrants::UserId))
                .col(uuid(OauthGrants::SessionId))
                .col(text(OauthGrants::Scope))
                .col(text(OauthGrants::Audience))
                .col(big_integer(OauthGrants::AuthTime))
                .col(string(OauthGrants::Acr))
                .col(text(OauthGrants::Amr))
                .col(text_null(OauthGrants::AuthorizationDetails))
                .col(string_null(OauthGrants::TxHash))
                .col(string_null(OauthGrants::DpopJkt))
                .col(big_integer(OauthGrants::CreatedAt))
                .col(big_integer_null(OauthGrants::RevokedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_oauth_grants_user")
                        .from(OauthGrants::Table, OauthGrants::UserId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_oauth_grants_session")
                        .from(OauthGrants::Table, OauthGrants::SessionId)
                        .to(Sessions::Table, Sessions::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .if_not_exists()
                .name("idx_oauth_grants_session")
                .table(OauthGrants::Table)
                .col(OauthGrants::SessionId)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(OauthRefreshTokens::Table)
                .if_not_exists()
                .col(string(OauthRefreshTokens::TokenHash).primary_key())
                .col(uuid(OauthRefreshTokens::GrantId))
                .col(big_integer(OauthRefreshTokens::CreatedAt))
                .col(big_integer(OauthRefreshTokens::ExpiresAt))
                .col(big_integer_null(OauthRefreshTokens::UsedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_oauth_refresh_grant")
                        .from(OauthRefreshTokens::Table, OauthRefreshTokens::GrantId)
                        .to(OauthGrants::Table, OauthGrants::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .if_not_exists()
                .name("idx_oauth_refresh_grant")
                .table(OauthRefreshTokens::Table)
                .col(OauthRefreshTokens::GrantId)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(OauthConsents::Table)
                .if_not_exists()
                .col(uuid(OauthConsents::UserId))
                .col(string(OauthConsents::ClientId))
                .col(text(OauthConsents::Scope))
                .col(big_integer(OauthConsents::GrantedAt))
                .primary_key(
                    Index::create()
                        .col(OauthConsents::UserId)
                        .col(OauthConsents::ClientId),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_oauth_consents_user")
                        .from(OauthConsents::Table, OauthConsents::UserId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            OauthConsents::Table.into_iden(),
            OauthRefreshTokens::Table.into_iden(),
            OauthGrants::Table.into_iden(),
            OauthClients::Table.into_iden(),
            OauthSigningKeys::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        m.alter_table(
            Table::alter()
                .table(Sessions::Table)
                .drop_column(Sessions::FirstFactor)
                .to_owned(),
        )
        .await
    }
}
