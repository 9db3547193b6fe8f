//! PostgreSQL advisory locks: every key the service takes, in one place, so that two
//! uses can never pick the same number by accident. SQLite needs none: its write
//! transaction (`BEGIN IMMEDIATE`) is already exclusive.

use sea_orm::{DbBackend, Statement};

use super::{Conn, DbResultExt};
use crate::storage::StorageResult;

/// The most audit chains a deployment may use (`AUDIT_CHAINS`); their lock keys are
/// reserved.
pub const MAX_AUDIT_CHAINS: i32 = 1024;

/// A transaction-scoped lock: held from `acquire` until the transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdvisoryLock(i64);

impl AdvisoryLock {
    /// Instances starting at once: one migrates while the others wait.
    pub const MIGRATIONS: Self = Self(7_263_540_001);
    // 7_263_540_002 was the lock of the single audit chain; the chains now take
    // `audit_chain(n)`, keys 7_263_541_000 + n (n < MAX_AUDIT_CHAINS).
    /// Role and status changes: two admins cannot demote each other at once and leave none.
    pub const ADMIN_CHANGE: Self = Self(7_263_540_003);

    /// The lock of audit chain `chain` (0 ≤ chain < `MAX_AUDIT_CHAINS`): writers of
    /// different chains never wait for each other.
    pub fn audit_chain(chain: i32) -> Self {
        debug_assert!((0..MAX_AUDIT_CHAINS).contains(&chain));
        Self(7_263_541_000 + i64::from(chain))
    }

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
