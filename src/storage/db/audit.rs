//! The `audit_log` table: append-only and hash-chained.
//!
//! Each record stores SHA-256 over its canonical content and the previous record's hash,
//! so altering, removing or reordering any record breaks every later link.
//!
//! One chain across many instances: a writer takes a lock before reading the chain head
//! and holds it to commit — `pg_advisory_xact_lock` on PostgreSQL, the write lock of
//! `BEGIN IMMEDIATE` on SQLite — and `seq` is the primary key, so even a writer that
//! skipped the lock could only fail, never fork the chain. Appending is the last step of
//! a transaction (`UnitOfWork::commit`), which keeps the lock short.

use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, DbBackend, QueryOrder, QuerySelect, Statement};
use serde_json::Value;

use super::entities::audit_record;
use super::{Conn, DbResultExt};
use crate::domain::Millis;
use crate::storage::StorageResult;

pub use audit_record::Model as AuditRow;

/// The `prev_hash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const CHAIN_LOCK_KEY: i64 = 7_263_540_002;

#[derive(Debug, Clone)]
pub struct NewAuditRecord {
    pub event: &'static str,
    pub occurred_at: Millis,
    pub user_id: Option<Uuid>,
    pub actor_id: Option<Uuid>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub metadata: Value,
}

pub async fn append(conn: &impl Conn, records: Vec<NewAuditRecord>) -> StorageResult<()> {
    if records.is_empty() {
        return Ok(());
    }
    if conn.get_database_backend() == DbBackend::Postgres {
        conn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock($1)",
            [CHAIN_LOCK_KEY.into()],
        ))
        .await
        .storage()?;
    }
    let head = audit_record::Entity::find()
        .order_by_desc(audit_record::Column::Seq)
        .limit(1)
        .one(conn)
        .await
        .storage()?;
    let (mut seq, mut prev_hash) = head.map_or((0, GENESIS_HASH.to_owned()), |h| (h.seq, h.hash));
    for record in records {
        seq += 1;
        let mut row = AuditRow {
            seq,
            id: Uuid::now_v7(),
            occurred_at: record.occurred_at,
            event: record.event.to_owned(),
            user_id: record.user_id,
            actor_id: record.actor_id,
            ip: record.ip,
            user_agent: record.user_agent,
            request_id: record.request_id,
            metadata: canonical_json(&record.metadata),
            prev_hash: prev_hash.clone(),
            hash: String::new(),
        };
        row.hash = record_hash(&row);
        prev_hash = row.hash.clone();
        audit_record::ActiveModel {
            seq: Set(row.seq),
            id: Set(row.id),
            occurred_at: Set(row.occurred_at),
            event: Set(row.event),
            user_id: Set(row.user_id),
            actor_id: Set(row.actor_id),
            ip: Set(row.ip),
            user_agent: Set(row.user_agent),
            request_id: Set(row.request_id),
            metadata: Set(row.metadata),
            prev_hash: Set(row.prev_hash),
            hash: Set(row.hash),
        }
        .insert(conn)
        .await
        .storage()?;
    }
    Ok(())
}

/// SHA-256 over a JSON array of every field but `hash`, in a fixed order. A JSON array of
/// scalars has one serialisation, so the hash is reproducible by any verifier.
pub fn record_hash(row: &AuditRow) -> String {
    let canonical = serde_json::json!([
        row.seq,
        row.id.to_string(),
        row.occurred_at,
        row.event,
        row.user_id.map(|u| u.to_string()),
        row.actor_id.map(|u| u.to_string()),
        row.ip,
        row.user_agent,
        row.request_id,
        row.metadata,
        row.prev_hash,
    ]);
    crate::crypto::sha256_hex(canonical.to_string().as_bytes())
}

/// JSON with object keys sorted at every level, so equal metadata hashes equally.
pub fn canonical_json(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.clone(), sorted(v)))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

/// Where verification stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum ChainCheck {
    Intact { records: u64 },
    Broken { seq: i64, reason: String },
}

/// Walks the whole chain in `seq` order, in pages, checking every link and hash.
pub async fn verify_chain(conn: &impl Conn) -> StorageResult<ChainCheck> {
    const PAGE: u64 = 1000;
    let mut expected_seq = 1;
    let mut prev_hash = GENESIS_HASH.to_owned();
    loop {
        let page = audit_record::Entity::find()
            .filter(audit_record::Column::Seq.gte(expected_seq))
            .order_by_asc(audit_record::Column::Seq)
            .limit(PAGE)
            .all(conn)
            .await
            .storage()?;
        if page.is_empty() {
            return Ok(ChainCheck::Intact {
                records: (expected_seq - 1) as u64,
            });
        }
        for row in page {
            let broken = |reason: &str| {
                Ok(ChainCheck::Broken {
                    seq: row.seq,
                    reason: reason.to_owned(),
                })
            };
            if row.seq != expected_seq {
                return Ok(ChainCheck::Broken {
                    seq: expected_seq,
                    reason: format!("record missing (next present is {})", row.seq),
                });
            }
            if row.prev_hash != prev_hash {
                return broken("prev_hash does not match the previous record's hash");
            }
            if record_hash(&row) != row.hash {
                return broken("content does not match its hash (the record was altered)");
            }
            prev_hash = row.hash.clone();
            expected_seq += 1;
        }
    }
}

/// A page of the trail, newest first. Each filter is served by an index that ends in
/// `seq` — (user_id, seq), (event, seq), (occurred_at, seq) — so a page costs one index
/// range scan of `limit` rows, however long the trail.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub user_id: Option<Uuid>,
    pub event: Option<String>,
    pub since: Option<Millis>,
    pub until: Option<Millis>,
    /// Only records older than this position (the cursor).
    pub before_seq: Option<i64>,
    pub limit: u64,
}

pub async fn page(conn: &impl Conn, filter: &AuditFilter) -> StorageResult<Vec<AuditRow>> {
    let mut query = audit_record::Entity::find();
    if let Some(user_id) = filter.user_id {
        query = query.filter(audit_record::Column::UserId.eq(user_id));
    }
    if let Some(event) = &filter.event {
        query = query.filter(audit_record::Column::Event.eq(event.as_str()));
    }
    if let Some(since) = filter.since {
        query = query.filter(audit_record::Column::OccurredAt.gte(since));
    }
    if let Some(until) = filter.until {
        query = query.filter(audit_record::Column::OccurredAt.lt(until));
    }
    if let Some(before) = filter.before_seq {
        query = query.filter(audit_record::Column::Seq.lt(before));
    }
    query
        .order_by_desc(audit_record::Column::Seq)
        .limit(filter.limit)
        .all(conn)
        .await
        .storage()
}

/// Records from `since` on, oldest first, `limit` at a time after `after_seq` (export).
pub async fn since(
    conn: &impl Conn,
    since: Millis,
    after_seq: i64,
    limit: u64,
) -> StorageResult<Vec<AuditRow>> {
    audit_record::Entity::find()
        .filter(audit_record::Column::OccurredAt.gte(since))
        .filter(audit_record::Column::Seq.gt(after_seq))
        .order_by_asc(audit_record::Column::Seq)
        .limit(limit)
        .all(conn)
        .await
        .storage()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a = serde_json::json!({"b": 1, "a": {"d": [ {"y": 1, "x": 2} ], "c": null}});
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"c":null,"d":[{"x":2,"y":1}]},"b":1}"#
        );
    }
}
