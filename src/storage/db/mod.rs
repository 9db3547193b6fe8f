//! The relational database: one sea-orm layer over SQLite (embedded) and PostgreSQL.

pub mod audit;
pub mod email_tokens;
pub mod entities;
pub mod failover;
pub mod known_devices;
pub mod locks;
pub mod mfa;
mod migrations;
pub mod oauth;
pub mod outbox;
pub mod password_history;
pub mod sessions;
pub mod users;

use std::sync::Arc;
use std::time::Duration;

use sea_orm::{
    ConnectOptions, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    EntityTrait, QuerySelect, RuntimeErr, Select, SqlErr, SqliteTransactionMode,
    TransactionOptions, TransactionTrait, sqlx,
};
use sea_orm_migration::MigratorTrait;

use super::{StorageError, StorageResult};
use crate::crypto::audit_keys::AuditKeys;
use crate::domain::Page;
use locks::AdvisoryLock;
use migrations::Migrator;

#[derive(Clone)]
pub struct Database {
    connection: DatabaseConnection,
    /// Seals appended audit records; set by `with_audit_keys` (start-up always does).
    audit_keys: Option<Arc<AuditKeys>>,
    /// Follows a PostgreSQL failover while any clone of this handle lives (several hosts
    /// in `DATABASE_URL` only).
    _failover: Option<Arc<failover::Watcher>>,
    /// How many chains the audit trail is spread over (`AUDIT_CHAINS`).
    audit_chains: audit::ChainCount,
}

impl Database {
    /// `url`: `sqlite://…`, or `postgres://…` with one host or a libpq-style host list
    /// (see `failover`).
    pub async fn connect(url: &str) -> StorageResult<Self> {
        let is_sqlite = url.starts_with("sqlite:");
        let postgres = if is_sqlite {
            ensure_sqlite_folder(url)?;
            None
        } else {
            let parsed = failover::PgUrl::parse(url)
                .map_err(|e| StorageError::Other(format!("DATABASE_URL: {e}")))?;
            Some(parsed)
        };
        let mut options =
            ConnectOptions::new(postgres.as_ref().map_or(url, |pg| pg.first.as_str()));
        options
            .max_connections(if is_sqlite { 4 } else { 16 })
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(3))
            .idle_timeout(Duration::from_secs(300))
            .sqlx_logging(false)
            .map_sqlx_sqlite_opts(|o| {
                o.create_if_missing(true)
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(5))
                    .foreign_keys(true)
            });
        let follower = postgres.as_ref().map(failover::Follower::new);
        if let Some(follower) = &follower {
            let follower = Arc::clone(follower);
            options.map_sqlx_postgres_pool_opts(move |pool| follower.hooks(pool));
        }
        // Lazy: the service can start and report not-ready while PostgreSQL is down.
        options.connect_lazy(!is_sqlite);
        let connection = sea_orm::Database::connect(options).await.map_err(map_err)?;
        let watcher = match &follower {
            Some(follower) if connection.get_database_backend() == DbBackend::Postgres => {
                follower.watch(connection.get_postgres_connection_pool().clone())
            }
            _ => None,
        };
        Ok(Self {
            connection,
            audit_keys: None,
            _failover: watcher.map(Arc::new),
            audit_chains: audit::ChainCount::ONE,
        })
    }

    /// The keys that seal (current) and verify (current and old) the audit chain.
    pub fn with_audit_keys(mut self, keys: AuditKeys) -> Self {
        self.audit_keys = Some(Arc::new(keys));
        self
    }

    /// How many chains new audit records are spread over (see `audit`).
    pub fn with_audit_chains(mut self, chains: audit::ChainCount) -> Self {
        self.audit_chains = chains;
        self
    }

    pub fn audit_chains(&self) -> audit::ChainCount {
        self.audit_chains
    }

    pub fn audit_keys(&self) -> StorageResult<&AuditKeys> {
        self.audit_keys.as_deref().ok_or_else(missing_audit_keys)
    }

    pub fn connection(&self) -> &DatabaseConnection {
        &self.connection
    }

    pub fn backend(&self) -> DbBackend {
        self.connection.get_database_backend()
    }

    /// Applies pending migrations. With several instances starting at once on PostgreSQL,
    /// an advisory lock lets one migrate while the others wait.
    pub async fn migrate(&self) -> StorageResult<()> {
        if self.backend() == DbBackend::Postgres {
            let txn = self.connection.begin().await.map_err(map_err)?;
            AdvisoryLock::MIGRATIONS.acquire(&txn).await?;
            Migrator::up(&txn, None).await.map_err(map_err)?;
            txn.commit().await.map_err(map_err)
        } else {
            Migrator::up(&self.connection, None).await.map_err(map_err)
        }
    }

    pub async fn ping(&self) -> StorageResult<()> {
        self.connection.ping().await.map_err(map_err)
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once (BEGIN
    /// IMMEDIATE), so a read-then-write never fails on a lock upgrade.
    pub async fn begin(&self) -> StorageResult<UnitOfWork> {
        let txn = self
            .connection
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..Default::default()
            })
            .await
            .map_err(map_err)?;
        Ok(UnitOfWork {
            txn,
            audit_keys: self.audit_keys.clone(),
            audit_chains: self.audit_chains,
            audit: Vec::new(),
            emails: Vec::new(),
        })
    }

    /// An event that changes nothing but the audit trail (a refusal, a confirmation):
    /// its record, appended in a transaction of its own.
    pub async fn audit_only(&self, record: audit::NewAuditRecord) -> StorageResult<()> {
        let mut uow = self.begin().await?;
        uow.audit(record);
        uow.commit().await
    }
}

fn missing_audit_keys() -> StorageError {
    StorageError::Other("no audit key: the database was opened without with_audit_keys".into())
}

fn ensure_sqlite_folder(url: &str) -> StorageResult<()> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or("");
    if path.is_empty() || path.starts_with(":memory:") {
        return Ok(());
    }
    if let Some(parent) = std::path::Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .map_err(|e| StorageError::Other(format!("cannot create {}: {e}", parent.display())))?;
    }
    Ok(())
}

/// One change: its rows, the emails it causes and the audit records that describe it
/// commit together or not at all (docs/API.md §4: same transaction as the change).
pub struct UnitOfWork {
    txn: DatabaseTransaction,
    audit_keys: Option<Arc<AuditKeys>>,
    audit_chains: audit::ChainCount,
    audit: Vec<audit::NewAuditRecord>,
    emails: Vec<outbox::NewEmail>,
}

impl UnitOfWork {
    pub fn conn(&self) -> &DatabaseTransaction {
        &self.txn
    }

    /// Serialises transactions that take the same lock until they commit.
    pub async fn lock(&self, lock: AdvisoryLock) -> StorageResult<()> {
        lock.acquire(&self.txn).await
    }

    pub fn audit(&mut self, record: audit::NewAuditRecord) {
        self.audit.push(record);
    }

    pub fn email(&mut self, email: outbox::NewEmail) {
        self.emails.push(email);
    }

    /// Writes the queued emails, then the audit records (last, because appending to a
    /// chain serialises that chain's writers), then commits.
    pub async fn commit(self) -> StorageResult<()> {
        let events: Vec<&'static str> = self.audit.iter().map(|r| r.event).collect();
        outbox::insert_all(&self.txn, self.emails).await?;
        if !self.audit.is_empty() {
            let keys = self.audit_keys.as_deref().ok_or_else(missing_audit_keys)?;
            audit::append(&self.txn, keys, self.audit_chains, self.audit).await?;
        }
        self.txn.commit().await.map_err(map_err)?;
        for event in events {
            metrics::counter!("auth_events_total", "event" => event).increment(1);
        }
        Ok(())
    }
}

/// Maps database errors to the storage error: unreachable → `Unavailable`, uniqueness →
/// `Conflict`, anything else → `Other` (logged, answered as 500).
pub fn map_err(error: DbErr) -> StorageError {
    if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
        return StorageError::Conflict(error.to_string());
    }
    let (kind, mapped) = if is_unavailable(&error) {
        (
            "unavailable",
            StorageError::Unavailable(format!("database: {error}")),
        )
    } else {
        ("other", StorageError::Other(format!("database: {error}")))
    };
    metrics::counter!("storage_errors_total", "backend" => "database", "kind" => kind).increment(1);
    mapped
}

/// Is the database unreachable (rather than refusing this one statement)? Any connection
/// error counts, and so does a connection that dies mid-conversation (I/O, TLS or protocol
/// errors) and the SQLSTATEs of `sqlstate_is_unavailable`: all of them mean "try again
/// later", never "internal error". A failover produces exactly these, so a transaction it
/// interrupts is rolled back by the server and answered 503.
fn is_unavailable(error: &DbErr) -> bool {
    let sqlx_error = match error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => return true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => e,
        _ => return false,
    };
    match &**sqlx_error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| sqlstate_is_unavailable(&code)),
        _ => false,
    }
}

/// SQLSTATEs that say the server cannot serve writes now, not that the statement is wrong:
/// class 08 (connection exception), 57P (operator intervention: 57P01 admin shutdown,
/// 57P02 crash shutdown, 57P03 cannot connect now — a server starting, stopping or in
/// recovery), 53300 (too many connections) and 25006 (read-only transaction: the server
/// was demoted to a standby or fenced read-only under us).
fn sqlstate_is_unavailable(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("57P") || code == "53300" || code == "25006"
}

/// A page of `query` of at most `limit` rows, in the query's order. One row more than the
/// page holds is read: whether it exists says whether another page follows, without a
/// second query. The next page's cursor is the last shown row's, as `cursor` renders it.
pub(crate) async fn fetch_page<E: EntityTrait>(
    conn: &impl Conn,
    query: Select<E>,
    limit: u64,
    cursor: impl Fn(&E::Model) -> String,
) -> StorageResult<Page<E::Model>> {
    let mut items = query.limit(limit + 1).all(conn).await.storage()?;
    let next = if items.len() as u64 > limit {
        items.truncate(limit as usize);
        items.last().map(cursor)
    } else {
        None
    };
    Ok(Page { items, next })
}

/// Shorthand for repository functions.
pub(crate) trait DbResultExt<T> {
    fn storage(self) -> StorageResult<T>;
}

impl<T> DbResultExt<T> for Result<T, DbErr> {
    fn storage(self) -> StorageResult<T> {
        self.map_err(map_err)
    }
}

/// Anything a repository function can run on: the pool or an open transaction.
pub trait Conn: ConnectionTrait {}
impl<T: ConnectionTrait> Conn for T {}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn sqlx_error(error: sqlx::Error) -> DbErr {
        DbErr::Query(RuntimeErr::SqlxError(Arc::new(error)))
    }

    #[test]
    fn failover_sqlstates_are_unavailable() {
        for code in [
            "08006", "08003", "57P01", "57P02", "57P03", "53300", "25006",
        ] {
            assert!(sqlstate_is_unavailable(code), "{code}");
        }
        // A wrong statement, a uniqueness clash or a serialization failure is not an
        // outage: retrying later would not help, or the caller handles it.
        for code in ["42601", "23505", "40001", "22P02", "25P02"] {
            assert!(!sqlstate_is_unavailable(code), "{code}");
        }
    }

    #[test]
    fn a_connection_lost_mid_transaction_is_unavailable() {
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let cases = [
            sqlx_error(sqlx::Error::Io(reset)),
            sqlx_error(sqlx::Error::Protocol("unexpected end of stream".into())),
            sqlx_error(sqlx::Error::PoolTimedOut),
            DbErr::Exec(RuntimeErr::SqlxError(Arc::new(sqlx::Error::PoolClosed))),
            DbErr::Conn(RuntimeErr::Internal("refused".into())),
        ];
        for error in cases {
            assert!(
                matches!(map_err(error), StorageError::Unavailable(_)),
                "should answer 503"
            );
        }
        assert!(matches!(
            map_err(sqlx_error(sqlx::Error::RowNotFound)),
            StorageError::Other(_)
        ));
    }
}
