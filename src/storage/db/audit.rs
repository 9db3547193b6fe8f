//! The `audit_log` table: append-only and chained under a key; `audit_checkpoints`: signed
//! statements of the chain's head.
//!
//! Each record stores HMAC-SHA256, under the audit key named by its `key_id` (see
//! `crypto::audit_keys`), over its canonical content and the previous record's hash. So
//! altering, removing or reordering any record breaks every later link, and — unlike a
//! plain hash chain — someone with write access to the database but not the key cannot
//! recompute the hashes to make a rewritten chain verify.
//!
//! Legacy records, written before the chain was keyed, have `key_id` NULL and a plain
//! SHA-256 hash. They are accepted only as the prefix of the chain: once a keyed record has
//! been seen, an unkeyed one is a rewrite. The first keyed record's MAC covers the last
//! legacy hash, so the legacy prefix cannot be changed without breaking it. What a
//! database writer *can* still do is turn the whole trail into legacy records and delete
//! every checkpoint: from the database alone that is indistinguishable from a never-upgraded
//! trail. `audit verify` prints how many legacy records it accepted, and the checkpoints
//! exported to a SIEM (`audit export --checkpoints`, checked with `audit verify
//! --checkpoints FILE`) catch it.
//!
//! Checkpoints: every so often (a background task, graceful shutdown, a successful
//! `audit verify`) the head — `seq` and hash — is signed with the current audit key and
//! stored. Verification checks each checkpoint's MAC and that the chain still holds that
//! hash at that position: records covered by a checkpoint cannot be deleted (the tail
//! included) or rewritten without detection. Records appended after the newest checkpoint
//! can be cut off without trace until the next checkpoint is written; the checkpoint
//! interval bounds that window.
//!
//! One chain across many instances: a writer takes a lock before reading the chain head
//! and holds it to commit — `pg_advisory_xact_lock` on PostgreSQL, the write lock of
//! `BEGIN IMMEDIATE` on SQLite — and `seq` is the primary key, so even a writer that
//! skipped the lock could only fail, never fork the chain. Appending is the last step of
//! a transaction (`UnitOfWork::commit`), which keeps the lock short; keying it costs one
//! HMAC instead of one SHA-256 per record and no extra statement. Checkpoints are written
//! outside that lock: `seq` is their primary key, so instances racing for the same head
//! insert it once.

use std::collections::VecDeque;

use sea_orm::entity::prelude::*;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, QueryOrder, QuerySelect};
use serde_json::Value;

use super::entities::{audit_checkpoint, audit_record};
use super::locks::AdvisoryLock;
use super::{Conn, DbResultExt, fetch_page};
use crate::crypto::audit_keys::{AuditKeys, MacError};
use crate::domain::{Millis, Page, now_millis};
use crate::storage::StorageResult;

pub use audit_checkpoint::Model as CheckpointRow;
pub use audit_record::Model as AuditRow;

/// The `prev_hash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

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

pub async fn append(
    conn: &impl Conn,
    keys: &AuditKeys,
    records: Vec<NewAuditRecord>,
) -> StorageResult<()> {
    if records.is_empty() {
        return Ok(());
    }
    AdvisoryLock::AUDIT_CHAIN.acquire(conn).await?;
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
            key_id: Some(keys.current_key_id().to_owned()),
        };
        row.hash = keys.seal(record_content(&row).as_bytes());
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
            key_id: Set(row.key_id),
        }
        .insert(conn)
        .await
        .storage()?;
    }
    Ok(())
}

/// What a record's hash covers: a JSON array of every field but `hash`, in a fixed order
/// (a JSON array of scalars has one serialisation, so any verifier reproduces it). For a
/// keyed record the key id is the last element, so it cannot be swapped either.
pub fn record_content(row: &AuditRow) -> String {
    let mut fields = vec![
        serde_json::json!(row.seq),
        serde_json::json!(row.id.to_string()),
        serde_json::json!(row.occurred_at),
        serde_json::json!(row.event),
        serde_json::json!(row.user_id.map(|u| u.to_string())),
        serde_json::json!(row.actor_id.map(|u| u.to_string())),
        serde_json::json!(row.ip),
        serde_json::json!(row.user_agent),
        serde_json::json!(row.request_id),
        serde_json::json!(row.metadata),
        serde_json::json!(row.prev_hash),
    ];
    if let Some(key_id) = &row.key_id {
        fields.push(serde_json::json!(key_id));
    }
    Value::Array(fields).to_string()
}

/// The hash of a legacy (unkeyed) record: plain SHA-256 of its content. Anyone can compute
/// it, which is why new records are keyed.
pub fn legacy_record_hash(row: &AuditRow) -> String {
    crate::crypto::sha256_hex(record_content(row).as_bytes())
}

/// What a checkpoint's MAC covers. The leading label keeps it apart from record content
/// (a record's array starts with a number).
pub fn checkpoint_message(seq: i64, head_hash: &str, created_at: Millis, key_id: &str) -> String {
    serde_json::json!(["audit-checkpoint/v1", seq, head_hash, created_at, key_id]).to_string()
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

/// A verification's verdict and what it rests on.
#[derive(Debug)]
pub struct ChainReport {
    pub check: ChainCheck,
    /// Unkeyed records (plain SHA-256, written before the chain was keyed) at its start.
    pub legacy_records: u64,
    /// Checkpoints whose MAC and head were checked.
    pub checkpoints: u64,
    /// The last record verified, `(seq, hash)`: what a new checkpoint may vouch for.
    pub head: Option<(i64, String)>,
}

/// Walks the whole chain; see `verify_chain_report`.
pub async fn verify_chain(conn: &impl Conn, keys: &AuditKeys) -> StorageResult<ChainCheck> {
    Ok(verify_chain_report(conn, keys, Vec::new()).await?.check)
}

/// Walks the whole chain in `seq` order, in pages, checking every link and MAC, and every
/// checkpoint — those stored in the database and `external` ones (exported earlier and
/// kept elsewhere) — against the record at its position.
pub async fn verify_chain_report(
    conn: &impl Conn,
    keys: &AuditKeys,
    mut external: Vec<CheckpointRow>,
) -> StorageResult<ChainReport> {
    const PAGE: u64 = 1000;
    external.sort_by_key(|c| c.seq);
    let mut external: VecDeque<CheckpointRow> = external.into();
    let mut report = ChainReport {
        check: ChainCheck::Intact { records: 0 },
        legacy_records: 0,
        checkpoints: 0,
        head: None,
    };
    let mut expected_seq = 1;
    let mut prev_hash = GENESIS_HASH.to_owned();
    let mut seen_keyed = false;
    let mut checkpoints_after = i64::MIN;
    let mut reread_for_checkpoint = false;
    loop {
        let page = audit_record::Entity::find()
            .filter(audit_record::Column::Seq.gte(expected_seq))
            .order_by_asc(audit_record::Column::Seq)
            .limit(PAGE)
            .all(conn)
            .await
            .storage()?;
        let Some(last) = page.last().map(|r| r.seq) else {
            // The end of the chain. A checkpoint beyond it means its tail was deleted —
            // unless records were appended (and checkpointed) after the page was read:
            // a checkpoint is written only once its record has committed, so reading the
            // records once more after seeing the checkpoint settles it.
            let mut beyond = checkpoints_between(conn, checkpoints_after, i64::MAX, 1).await?;
            while external.front().is_some_and(|c| c.seq <= checkpoints_after) {
                external.pop_front();
            }
            beyond.extend(external.front().cloned());
            beyond.sort_by_key(|c| c.seq);
            let Some(checkpoint) = beyond.into_iter().next() else {
                report.check = ChainCheck::Intact {
                    records: (expected_seq - 1) as u64,
                };
                return Ok(report);
            };
            if !reread_for_checkpoint {
                reread_for_checkpoint = true;
                continue;
            }
            report.check = match check_checkpoint_mac(keys, &checkpoint) {
                Err(reason) => ChainCheck::Broken {
                    seq: checkpoint.seq,
                    reason,
                },
                Ok(()) => ChainCheck::Broken {
                    seq: expected_seq,
                    reason: format!(
                        "records {expected_seq} to {} are missing: a checkpoint signed at {} \
                         vouches for {} records but the chain ends at {} (its tail was deleted)",
                        checkpoint.seq,
                        crate::domain::millis_to_rfc3339(checkpoint.created_at),
                        checkpoint.seq,
                        expected_seq - 1
                    ),
                },
            };
            return Ok(report);
        };
        reread_for_checkpoint = false;
        let mut checkpoints: Vec<CheckpointRow> =
            checkpoints_between(conn, checkpoints_after, last, PAGE * 10).await?;
        while external.front().is_some_and(|c| c.seq <= last) {
            checkpoints.extend(external.pop_front());
        }
        checkpoints.sort_by_key(|c| c.seq);
        let mut checkpoints: VecDeque<CheckpointRow> = checkpoints.into();
        // The checkpoints of a page of records are read with it: (checkpoints_after, last].
        checkpoints_after = last;
        for row in page {
            let broken = |reason: String| ChainCheck::Broken {
                seq: row.seq,
                reason,
            };
            if row.seq != expected_seq {
                report.check = ChainCheck::Broken {
                    seq: expected_seq,
                    reason: format!("record missing (next present is {})", row.seq),
                };
                return Ok(report);
            }
            if row.prev_hash != prev_hash {
                report.check =
                    broken("prev_hash does not match the previous record's hash".to_owned());
                return Ok(report);
            }
            let content = record_content(&row);
            match &row.key_id {
                None if seen_keyed => {
                    report.check = broken(
                        "an unkeyed record after keyed ones (a keyed record was replaced by a \
                         plain SHA-256 one)"
                            .to_owned(),
                    );
                    return Ok(report);
                }
                None => {
                    if crate::crypto::sha256_hex(content.as_bytes()) != row.hash {
                        report.check = broken(
                            "content does not match its hash (the record was altered)".to_owned(),
                        );
                        return Ok(report);
                    }
                    report.legacy_records += 1;
                }
                Some(key_id) => {
                    seen_keyed = true;
                    match keys.verify(key_id, content.as_bytes(), &row.hash) {
                        Ok(()) => {}
                        Err(MacError::Mismatch) => {
                            report.check = broken(
                                "content does not match its MAC (the record was altered, or its \
                                 hash recomputed without the audit key)"
                                    .to_owned(),
                            );
                            return Ok(report);
                        }
                        Err(unknown) => {
                            report.check = broken(format!("record {unknown}"));
                            return Ok(report);
                        }
                    }
                }
            }
            while checkpoints.front().is_some_and(|c| c.seq <= row.seq) {
                let Some(checkpoint) = checkpoints.pop_front() else {
                    break;
                };
                if let Err(reason) = check_checkpoint_mac(keys, &checkpoint) {
                    report.check = ChainCheck::Broken {
                        seq: checkpoint.seq,
                        reason,
                    };
                    return Ok(report);
                }
                if checkpoint.seq != row.seq || checkpoint.head_hash != row.hash {
                    report.check = ChainCheck::Broken {
                        seq: checkpoint.seq,
                        reason: "the chain does not match the signed checkpoint of this record \
                                 (the chain up to here was rewritten)"
                            .to_owned(),
                    };
                    return Ok(report);
                }
                report.checkpoints += 1;
            }
            prev_hash = row.hash.clone();
            report.head = Some((row.seq, row.hash));
            expected_seq += 1;
        }
    }
}

/// Stored checkpoints with `after < seq <= up_to`, oldest first.
async fn checkpoints_between(
    conn: &impl Conn,
    after: i64,
    up_to: i64,
    limit: u64,
) -> StorageResult<Vec<CheckpointRow>> {
    audit_checkpoint::Entity::find()
        .filter(audit_checkpoint::Column::Seq.gt(after))
        .filter(audit_checkpoint::Column::Seq.lte(up_to))
        .order_by_asc(audit_checkpoint::Column::Seq)
        .limit(limit)
        .all(conn)
        .await
        .storage()
}

fn check_checkpoint_mac(keys: &AuditKeys, checkpoint: &CheckpointRow) -> Result<(), String> {
    let message = checkpoint_message(
        checkpoint.seq,
        &checkpoint.head_hash,
        checkpoint.created_at,
        &checkpoint.key_id,
    );
    keys.verify(&checkpoint.key_id, message.as_bytes(), &checkpoint.mac)
        .map_err(|error| match error {
            MacError::Mismatch => "the checkpoint's signature does not verify (a forged or \
                                   altered checkpoint)"
                .to_owned(),
            unknown => format!("checkpoint {unknown}"),
        })
}

/// Signs and stores a checkpoint of `head` (`(seq, hash)`; the current head if None),
/// unless a checkpoint at or beyond it exists. Returns the checkpoint written, if any.
pub async fn write_checkpoint(
    conn: &impl Conn,
    keys: &AuditKeys,
    head: Option<(i64, String)>,
) -> StorageResult<Option<CheckpointRow>> {
    let head = match head {
        Some(head) => head,
        None => match audit_record::Entity::find()
            .order_by_desc(audit_record::Column::Seq)
            .limit(1)
            .one(conn)
            .await
            .storage()?
        {
            Some(row) => (row.seq, row.hash),
            None => return Ok(None),
        },
    };
    let latest = audit_checkpoint::Entity::find()
        .order_by_desc(audit_checkpoint::Column::Seq)
        .limit(1)
        .one(conn)
        .await
        .storage()?;
    if latest.is_some_and(|c| c.seq >= head.0) {
        return Ok(None);
    }
    let (seq, head_hash) = head;
    let created_at = now_millis();
    let key_id = keys.current_key_id().to_owned();
    let mac = keys.seal(checkpoint_message(seq, &head_hash, created_at, &key_id).as_bytes());
    let checkpoint = CheckpointRow {
        seq,
        head_hash,
        created_at,
        key_id,
        mac,
    };
    let inserted = audit_checkpoint::Entity::insert(audit_checkpoint::ActiveModel {
        seq: Set(checkpoint.seq),
        head_hash: Set(checkpoint.head_hash.clone()),
        created_at: Set(checkpoint.created_at),
        key_id: Set(checkpoint.key_id.clone()),
        mac: Set(checkpoint.mac.clone()),
    })
    .on_conflict(
        OnConflict::column(audit_checkpoint::Column::Seq)
            .do_nothing()
            .to_owned(),
    )
    .exec(conn)
    .await;
    match inserted {
        Ok(_) => Ok(Some(checkpoint)),
        // Another instance checkpointed the same head first.
        Err(DbErr::RecordNotInserted) => Ok(None),
        Err(error) => Err(super::map_err(error)),
    }
}

/// Stored checkpoints created at or after `since`, oldest first, `limit` after `after_seq`.
pub async fn checkpoints_since(
    conn: &impl Conn,
    since: Millis,
    after_seq: i64,
    limit: u64,
) -> StorageResult<Vec<CheckpointRow>> {
    audit_checkpoint::Entity::find()
        .filter(audit_checkpoint::Column::CreatedAt.gte(since))
        .filter(audit_checkpoint::Column::Seq.gt(after_seq))
        .order_by_asc(audit_checkpoint::Column::Seq)
        .limit(limit)
        .all(conn)
        .await
        .storage()
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

pub async fn page(conn: &impl Conn, filter: &AuditFilter) -> StorageResult<Page<AuditRow>> {
    let mut query = audit_record::Entity::find().order_by_desc(audit_record::Column::Seq);
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
    fetch_page(conn, query, filter.limit, |record| record.seq.to_string()).await
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
