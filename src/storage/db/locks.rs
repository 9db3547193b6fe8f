//! PostgreSQL advisory locks: every key the service takes, in one place, so that two
//! uses can never pick the same number by accident. SQLite needs none: its write
//! transaction (`BEGIN IMMEDIATE`) is already exclusive.

use sea_orm::{DbBackend, Statement};

use super::{Conn, DbResultExt};
use crate::storage::StorageResult;

/// A transaction-scoped lock: held from `acquire` until the transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdvisoryLock(i64);

impl AdvisoryLock {
    /// Instances starting at once: one migrates while the others wait.
    pub const MIGRATIONS: Self = Self(7_263_540_001);
    /// Appending to the audit chain: one writer reads the head and extends it at a time.
    pub const AUDIT_CHAIN: Self = Self(7_263_540_002);
    /// Role and status changes: two admins cannot demote each other at once and leave none.
    pub const ADMIN_CHANGE: Self = Self(7_263_540_003);

    /// Waits for the lock; it is released when the transaction on `conn` commits or rolls
    /// back. A no-op outside PostgreSQL.
    pub async fn acquire(self, conn: &impl Conn) -> StorageResult<()> {
        if conn.get_database_backend() == DbBackend::Postgres {
            conn.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_advisory_xact_lock($1)",
                [self.0.into()],
            ))
            .await
            .storage()?;
        }
        Ok(())
    }
}
