//! The current refresh token moves into its grant (issue 18): a code exchange writes one
//! grant row and a rotation updates it in place, instead of inserting a token row per
//! exchange and per rotation and marking the previous one used.
//!
//! `refresh_hash` is the SHA-256 of the grant's one live refresh token (NULL when the
//! client may not refresh). New tokens name their grant and carry a tag, so a rotated one
//! coming back is recognised without keeping it (services/oauth/refresh.rs).
//! `oauth_refresh_tokens` is no longer written: it stays, read-only, so that tokens issued
//! before the upgrade keep working (each grant's unused one becomes its current token
//! here) and their reuse is still detected. They end with their sessions; a later version
//! can drop the table.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum OauthGrants {
    Table,
    RefreshHash,
    RefreshIssuedAt,
    RefreshExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        for column in [
            string_null(OauthGrants::RefreshHash),
            big_integer_null(OauthGrants::RefreshIssuedAt),
            big_integer_null(OauthGrants::RefreshExpiresAt),
        ] {
            m.alter_table(
                Table::alter()
                    .table(OauthGrants::Table)
                    .add_column(column)
                    .to_owned(),
            )
            .await?;
        }
        // Each grant's unused token (rotation leaves at most one) becomes its current one.
        // Correlated subqueries: the same statement on PostgreSQL and SQLite.
        let current = |column: &str| {
            format!(
                "(SELECT r.{column} FROM oauth_refresh_tokens r WHERE r.grant_id = oauth_grants.id \
                 AND r.used_at IS NULL ORDER BY r.created_at DESC LIMIT 1)"
            )
        };
        m.get_connection()
            .execute_unprepared(&format!(
                "UPDATE oauth_grants SET refresh_hash = {}, refresh_issued_at = {}, \
                 refresh_expires_at = {} WHERE EXISTS (SELECT 1 FROM oauth_refresh_tokens r \
                 WHERE r.grant_id = oauth_grants.id AND r.used_at IS NULL)",
                current("token_hash"),
                current("created_at"),
                current("expires_at"),
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            OauthGrants::RefreshHash,
            OauthGrants::RefreshIssuedAt,
            OauthGrants::RefreshExpiresAt,
        ] {
            m.alter_table(
                Table::alter()
                    .table(OauthGrants::Table)
                    .drop_column(column)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, Database};
    use sea_orm_migration::MigratorTrait;

    use super::super::Migrator;

    #[tokio::test]
    async fn each_grants_unused_token_becomes_its_live_one() {
        let dir = std::env::temp_dir().join(format!("lcauth-m9-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("m9.db").display());
        let db = Database::connect(&url).await.unwrap();
        Migrator::up(&db, Some(8)).await.unwrap();
        db.execute_unprepared("PRAGMA foreign_keys = OFF")
            .await
            .unwrap();
        // Grant g1: rotated twice (two used tokens, one live). Grant g2: only a used token
        // (its family ended with a rotation that never completed). Grant g3: no refresh.
        for grant in ["g1", "g2", "g3"] {
            db.execute_unprepared(&format!(
                "INSERT INTO oauth_grants (id, client_id, user_id, session_id, scope, audience, \
                 auth_time, acr, amr, created_at) VALUES ('{grant}', 'web', 'u', 's', 'openid', \
                 'aud', 1, 'loa1', '[]', 1)"
            ))
            .await
            .unwrap();
        }
        for (hash, grant, created, used) in [
            ("h1", "g1", 10, "11"),
            ("h2", "g1", 11, "12"),
            ("h3", "g1", 12, "NULL"),
            ("h4", "g2", 10, "11"),
        ] {
            db.execute_unprepared(&format!(
                "INSERT INTO oauth_refresh_tokens (token_hash, grant_id, created_at, expires_at, \
                 used_at) VALUES ('{hash}', '{grant}', {created}, 99, {used})"
            ))
            .await
            .unwrap();
        }
        Migrator::up(&db, None).await.unwrap();
        let rows = db
            .query_all_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT id, refresh_hash, refresh_issued_at, refresh_expires_at FROM oauth_grants \
                 ORDER BY id",
            ))
            .await
            .unwrap();
        type Live = (String, Option<String>, Option<i64>, Option<i64>);
        let got: Vec<Live> = rows
            .iter()
            .map(|r| {
                (
                    r.try_get_by_index(0).unwrap(),
                    r.try_get_by_index(1).unwrap(),
                    r.try_get_by_index(2).unwrap(),
                    r.try_get_by_index(3).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("g1".into(), Some("h3".into()), Some(12), Some(99)),
                ("g2".into(), None, None, None),
                ("g3".into(), None, None, None),
            ]
        );
        drop(db);
        let _ = std::fs::remove_dir_all(dir);
    }
}
