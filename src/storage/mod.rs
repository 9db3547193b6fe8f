//! Storage adapters: the relational database (SQLite or PostgreSQL through one sea-orm
//! layer) and the ephemeral store (in-process or Redis). Nothing here knows about HTTP.

pub mod db;
pub mod store;

/// The one error type of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database or the store could not be reached (down, pool exhausted, timed out).
    /// Callers fail closed: this becomes `503 service_unavailable`.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A uniqueness rule refused the write (e.g. a concurrent registration of one email).
    #[error("conflicting write: {0}")]
    Conflict(String),
    #[error("storage failure: {0}")]
    Other(String),
}

pub type StorageResult<T> = Result<T, StorageError>;
