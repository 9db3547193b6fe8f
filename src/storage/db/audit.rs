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
//! Partitioned chains: a trail that scales out. One chain means one lock that every
//! audited transaction of the fleet queues for (about 1,000–1,400 logins/s on PostgreSQL,
//! docs/PERFORMANCE.md). So the trail is `AUDIT_CHAINS` chains (16 by default on
//! PostgreSQL, 1 on SQLite, which has one writer anyway), each exactly the chain above —
//! keyed the same way, with its own head, its own positions `chain_seq` 1, 2, 3, … and its
//! own checkpoints — and each appended under its own lock (`pg_advisory_xact_lock` keyed
//! by the chain; on SQLite the write lock of `BEGIN IMMEDIATE`). A transaction's records
//! go to one chain, chosen from the user they concern (`chain_for`): one user's events
//! stay in one chain, so their order is part of what the MACs protect; events about no
//! user (a login attempt for an unknown email) go to a chain chosen by the record's random
//! id, spreading them. `(chain, chain_seq)` is unique, so even a writer that skipped the
//! lock could only fail, never fork a chain. Appending is the last step of a transaction
//! (`UnitOfWork::commit`), which keeps each lock short.
//!
//! The whole trail keeps one order, `seq`: each record's position, drawn while its chain
//! lock is held — from a PostgreSQL sequence (which takes no lock, so it does not
//! serialise the chains) or, on SQLite, as the next number after the last record. So
//! `seq` increases along every chain, is unique across chains, and orders the export and
//! the staff query; across chains it is the order in which appends drew their positions,
//! which may differ from commit order by the few milliseconds a transaction takes to
//! commit. A rolled-back append leaves a gap in `seq` (never in a chain). The MAC covers
//! `seq`, `chain` and `chain_seq` (`record_content`), so a record cannot be moved in the
//! trail or between chains.
//!
//! Anchors: checkpoints vouch for one chain each; an attacker with database write access
//! who deletes a whole chain — records and checkpoints — would leave nothing in that chain
//! to notice. So the checkpoint task (and a successful `audit verify`) also signs an
//! anchor: every chain's head — chain, position, `seq`, hash — in one MAC. Verification
//! checks every anchor's MAC and that every chain still reaches, with the same hash, the
//! furthest head any anchor vouches for: truncating one chain's tail, or removing a chain,
//! after an anchor is caught like a truncation after a checkpoint. What partitioning
//! changes for such an attacker: nothing they can forge (every record, checkpoint and
//! anchor is keyed as before); the unprotected window is still the records appended since
//! the last checkpoint and anchor, now in every chain at once.
//!
//! Existing data: the single chain became chain 0 (migration 8) with `chain_seq = seq`.
//! Its records' MACs (and legacy hashes) cover the content as it was then,
//! `pre_partition_content`, without chain fields. A keyed record in that form is accepted
//! only in chain 0, only where `chain_seq = seq`, and only before the first record sealed
//! in the current form; a legacy (unkeyed) record, as before, only as a chain's prefix and
//! only where `chain_seq = seq` (forged ones are caught as before: by the first keyed
//! record after them, or by a checkpoint or anchor). Checkpoints keep their form (`seq` is
//! the record vouched for; its hash covers the chain), so existing ones still verify.
//!
//! Checkpoints and anchors are written outside the chain locks: `seq` is a checkpoint's
//! primary key, so instances racing for the same head insert it once.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use sea_orm::entity::prelude::*;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, DbBackend, QueryOrder, QuerySelect, Statement};
use serde_json::Value;

use super::entities::{audit_anchor, audit_checkpoint, audit_record};
use super::locks::{AdvisoryLock, MAX_AUDIT_CHAINS};
use super::{Conn, DbResultExt, fetch_page};
use crate::crypto::audit_keys::{AuditKeys, MacError};
use crate::domain::{Millis, Page, now_millis};
use crate::storage::StorageResult;

pub use audit_anchor::Model as AnchorRow;
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

/// How many chains new records are spread over (`AUDIT_CHAINS`), 1 to
/// `locks::MAX_AUDIT_CHAINS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainCount(u16);

impl ChainCount {
    pub const ONE: Self = Self(1);

    /// None outside 1..=`MAX_AUDIT_CHAINS`.
    pub fn new(chains: u16) -> Option<Self> {
        (1..=MAX_AUDIT_CHAINS)
            .contains(&i32::from(chains))
            .then_some(Self(chains))
    }

    pub fn get(self) -> u16 {
        self.0
    }

    /// Chains 0, 1, … up to this count.
    fn chains(self) -> impl Iterator<Item = i32> {
        0..i32::from(self.0)
    }
}

/// The chain of a transaction's records: the first user they concern (the same user's
/// events always land in the same chain, in order), else the first record's random id.
/// The numbers are UUIDs' low bits, random in v4 and v7 alike, so chains fill evenly.
pub fn chain_for(records: &[AuditRow], chains: ChainCount) -> i32 {
    let key = records
        .iter()
        .find_map(|r| r.user_id)
        .or_else(|| records.first().map(|r| r.id))
        .map_or(0, |id| id.as_u128());
    (key % u128::from(chains.0)) as i32
}

pub async fn append(
    conn: &impl Conn,
    keys: &AuditKeys,
    chains: ChainCount,
    records: Vec<NewAuditRecord>,
) -> StorageResult<()> {
    if records.is_empty() {
        return Ok(());
    }
    let key_id = keys.current_key_id().to_owned();
    let mut rows: Vec<AuditRow> = records
        .into_iter()
        .map(|record| AuditRow {
            seq: 0,
            chain: 0,
            chain_seq: 0,
            id: Uuid::now_v7(),
            occurred_at: record.occurred_at,
            event: record.event.to_owned(),
            user_id: record.user_id,
            actor_id: record.actor_id,
            ip: record.ip,
            user_agent: record.user_agent,
            request_id: record.request_id,
            metadata: canonical_json(&record.metadata),
            prev_hash: String::new(),
            hash: String::new(),
            key_id: Some(key_id.clone()),
        })
        .collect();
    let chain = chain_for(&rows, chains);
    AdvisoryLock::audit_chain(chain).acquire(conn).await?;
    let (mut chain_seq, mut prev_hash) = match chain_head(conn, chain).await? {
        Some(head) => (head.chain_seq, head.hash),
        None => (0, GENESIS_HASH.to_owned()),
    };
    // Drawn under the chain lock, so positions increase along the chain.
    let positions = trail_positions(conn, rows.len()).await?;
    for (row, seq) in rows.iter_mut().zip(positions) {
        chain_seq += 1;
        row.seq = seq;
        row.chain = chain;
        row.chain_seq = chain_seq;
        row.prev_hash = prev_hash;
        row.hash = keys.seal(record_content(row).as_bytes());
        prev_hash = row.hash.clone();
    }
    audit_record::Entity::insert_many(rows.into_iter().map(|row| audit_record::ActiveModel {
        seq: Set(row.seq),
        chain: Set(row.chain),
        chain_seq: Set(row.chain_seq),
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
    }))
    .exec(conn)
    .await
    .storage()?;
    Ok(())
}

/// The PostgreSQL sequence of trail positions (created by migration 8).
const TRAIL_POSITION_SEQUENCE: &str = "audit_log_position";

/// `n` new trail positions, ascending. PostgreSQL: from a sequence, which takes no lock
/// (concurrent chains never wait for each other here). SQLite: after the last record —
/// its one writer holds the database's write lock.
async fn trail_positions(conn: &impl Conn, n: usize) -> StorageResult<Vec<i64>> {
    let backend = conn.get_database_backend();
    if backend == DbBackend::Postgres {
        let rows = conn
            .query_all_raw(Statement::from_sql_and_values(
                backend,
                format!("SELECT nextval('{TRAIL_POSITION_SEQUENCE}') FROM generate_series(1, $1)"),
                [(n as i64).into()],
            ))
            .await
            .storage()?;
        let mut positions = rows
            .iter()
            .map(|row| row.try_get_by_index::<i64>(0))
            .collect::<Result<Vec<_>, _>>()
            .storage()?;
        positions.sort_unstable();
        return Ok(positions);
    }
    let last = audit_record::Entity::find()
        .select_only()
        .column_as(audit_record::Column::Seq.max(), "last")
        .into_tuple::<Option<i64>>()
        .one(conn)
        .await
        .storage()?
        .flatten()
        .unwrap_or(0);
    Ok((1..=n as i64).map(|i| last + i).collect())
}

/// The last record of `chain`.
async fn chain_head(conn: &impl Conn, chain: i32) -> StorageResult<Option<AuditRow>> {
    audit_record::Entity::find()
        .filter(audit_record::Column::Chain.eq(chain))
        .order_by_desc(audit_record::Column::ChainSeq)
        .limit(1)
        .one(conn)
        .await
        .storage()
}

/// What a record's hash covers: a JSON array of a label and every field but `hash`, in a
/// fixed order (a JSON array of scalars has one serialisation, so any verifier reproduces
/// it). The label keeps it apart from the pre-partition form (which starts with a number)
/// and from checkpoint and anchor messages.
pub fn record_content(row: &AuditRow) -> String {
    serde_json::json!([
        "audit-record/v2",
        row.chain,
        row.chain_seq,
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
        row.key_id,
    ])
    .to_string()
}

/// What a record's hash covered before the trail was partitioned (chain 0's existing
/// records): every field but `hash` and the chain fields; for a keyed record the key id
/// is the last element, so it cannot be swapped either.
pub fn pre_partition_content(row: &AuditRow) -> String {
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

/// The hash of a legacy (unkeyed) record: plain SHA-256 of its (pre-partition) content.
/// Anyone can compute it, which is why new records are keyed.
pub fn legacy_record_hash(row: &AuditRow) -> String {
    crate::crypto::sha256_hex(pre_partition_content(row).as_bytes())
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
    Intact {
        records: u64,
    },
    /// At `position` (its `chain_seq`) in `chain`: a record, its link, or a checkpoint or
    /// anchor vouching for that position.
    Broken {
        chain: i32,
        position: i64,
        reason: String,
    },
    /// An anchor whose MAC does not verify: forged or altered.
    ForgedAnchor {
        created_at: Millis,
        reason: String,
    },
}

/// The last record of a chain: what a checkpoint or an anchor vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub chain: i32,
    /// Its `chain_seq`: the number of records in the chain up to it.
    pub position: i64,
    pub seq: i64,
    pub hash: String,
}

impl From<AuditRow> for ChainHead {
    fn from(row: AuditRow) -> Self {
        Self {
            chain: row.chain,
            position: row.chain_seq,
            seq: row.seq,
            hash: row.hash,
        }
    }
}

/// A verification's verdict and what it rests on.
#[derive(Debug)]
pub struct ChainReport {
    pub check: ChainCheck,
    /// Unkeyed records (plain SHA-256, written before the chain was keyed) at its start.
    pub legacy_records: u64,
    /// Checkpoints whose MAC and head were checked.
    pub checkpoints: u64,
    /// Anchors whose MAC was checked (and the furthest head of each chain they name).
    pub anchors: u64,
    /// Chains walked.
    pub chains: u64,
    /// The last record verified in each chain: what new checkpoints may vouch for.
    pub heads: Vec<ChainHead>,
}

/// Walks the whole trail; see `verify_chain_report`.
pub async fn verify_chain(conn: &impl Conn, keys: &AuditKeys) -> StorageResult<ChainCheck> {
    Ok(verify_chain_report(conn, keys, Vec::new(), Vec::new())
        .await?
        .check)
}

/// Walks every chain in `chain_seq` order, in pages, checking every link and MAC and
/// every checkpoint (stored and `external`) against the record at its position; then
/// checks every anchor (stored and `external`) and that every chain still reaches the
/// furthest head an anchor vouches for.
pub async fn verify_chain_report(
    conn: &impl Conn,
    keys: &AuditKeys,
    external: Vec<CheckpointRow>,
    external_anchors: Vec<AnchorRow>,
) -> StorageResult<ChainReport> {
    let mut report = ChainReport {
        check: ChainCheck::Intact { records: 0 },
        legacy_records: 0,
        checkpoints: 0,
        anchors: 0,
        chains: 0,
        heads: Vec::new(),
    };
    let mut chains: BTreeSet<i32> = stored_chains(conn).await?;
    chains.extend(external.iter().map(|c| c.chain));
    let mut records = 0;
    for chain in chains {
        let external = external.iter().filter(|c| c.chain == chain).cloned();
        match walk_chain(conn, keys, chain, external.collect(), &mut report).await? {
            Ok(walked) => records += walked,
            Err(broken) => {
                report.check = broken;
                return Ok(report);
            }
        }
        report.chains += 1;
    }
    // A chain only an anchor names (all its records and checkpoints deleted) was not
    // walked: its anchored head is missing, and that is what this reports.
    let anchored = match furthest_anchored(conn, keys, external_anchors, &mut report).await? {
        Ok(anchored) => anchored,
        Err(forged) => {
            report.check = forged;
            return Ok(report);
        }
    };
    for (anchored_at, head) in anchored.into_values() {
        if let Err(broken) = check_anchored_head(conn, &report.heads, anchored_at, &head).await? {
            report.check = broken;
            return Ok(report);
        }
    }
    report.check = ChainCheck::Intact { records };
    Ok(report)
}

/// Every chain that has records or checkpoints.
async fn stored_chains(conn: &impl Conn) -> StorageResult<BTreeSet<i32>> {
    let mut chains: BTreeSet<i32> = audit_record::Entity::find()
        .select_only()
        .column(audit_record::Column::Chain)
        .distinct()
        .into_tuple::<i32>()
        .all(conn)
        .await
        .storage()?
        .into_iter()
        .collect();
    chains.extend(
        audit_checkpoint::Entity::find()
            .select_only()
            .column(audit_checkpoint::Column::Chain)
            .distinct()
            .into_tuple::<i32>()
            .all(conn)
            .await
            .storage()?,
    );
    Ok(chains)
}

/// One chain, from its first record: positions without gaps, links, MACs, checkpoints.
/// Returns how many records it holds, or where it is broken; pushes its head to `report`.
async fn walk_chain(
    conn: &impl Conn,
    keys: &AuditKeys,
    chain: i32,
    mut external: Vec<CheckpointRow>,
    report: &mut ChainReport,
) -> StorageResult<Result<u64, ChainCheck>> {
    const PAGE: u64 = 1000;
    external.sort_by_key(|c| c.seq);
    let mut external: VecDeque<CheckpointRow> = external.into();
    let broken_at = |position: i64, reason: String| ChainCheck::Broken {
        chain,
        position,
        reason,
    };
    let mut expected = 1;
    let mut prev_hash = GENESIS_HASH.to_owned();
    let mut prev_seq = i64::MIN;
    let mut seen_keyed = false;
    let mut seen_current_form = false;
    let mut checkpoints_after = i64::MIN;
    let mut reread_for_checkpoint = false;
    loop {
        let page = audit_record::Entity::find()
            .filter(audit_record::Column::Chain.eq(chain))
            .filter(audit_record::Column::ChainSeq.gte(expected))
            .order_by_asc(audit_record::Column::ChainSeq)
            .limit(PAGE)
            .all(conn)
            .await
            .storage()?;
        let Some(last) = page.last().map(|r| r.seq) else {
            // The end of the chain. A checkpoint beyond it means its tail was deleted —
            // unless records were appended (and checkpointed) after the page was read:
            // a checkpoint is written only once its record has committed, so reading the
            // records once more after seeing the checkpoint settles it.
            let mut beyond =
                checkpoints_between(conn, chain, checkpoints_after, i64::MAX, 1).await?;
            while external.front().is_some_and(|c| c.seq <= checkpoints_after) {
                external.pop_front();
            }
            beyond.extend(external.front().cloned());
            beyond.sort_by_key(|c| c.seq);
            let Some(checkpoint) = beyond.into_iter().next() else {
                return Ok(Ok((expected - 1) as u64));
            };
            if !reread_for_checkpoint {
                reread_for_checkpoint = true;
                continue;
            }
            return Ok(Err(match check_checkpoint_mac(keys, &checkpoint) {
                Err(reason) => broken_at(expected, reason),
                Ok(()) => broken_at(
                    expected,
                    format!(
                        "records from {expected} on are missing: a checkpoint signed at {} \
                         vouches for trail record {} of this chain, but the chain ends at \
                         {} (its tail was deleted)",
                        crate::domain::millis_to_rfc3339(checkpoint.created_at),
                        checkpoint.seq,
                        expected - 1
                    ),
                ),
            }));
        };
        reread_for_checkpoint = false;
        let mut checkpoints: Vec<CheckpointRow> =
            checkpoints_between(conn, chain, checkpoints_after, last, PAGE * 10).await?;
        while external.front().is_some_and(|c| c.seq <= last) {
            checkpoints.extend(external.pop_front());
        }
        checkpoints.sort_by_key(|c| c.seq);
        let mut checkpoints: VecDeque<CheckpointRow> = checkpoints.into();
        // The checkpoints of a page of records are read with it: (checkpoints_after, last].
        checkpoints_after = last;
        for row in page {
            let position = row.chain_seq;
            if position != expected {
                return Ok(Err(broken_at(
                    expected,
                    format!("record missing (next present is {position})"),
                )));
            }
            if row.seq <= prev_seq {
                return Ok(Err(broken_at(
                    position,
                    "out of trail order: its seq is not above the previous record's".to_owned(),
                )));
            }
            if row.prev_hash != prev_hash {
                return Ok(Err(broken_at(
                    position,
                    "prev_hash does not match the previous record's hash".to_owned(),
                )));
            }
            match &row.key_id {
                None if seen_keyed => {
                    return Ok(Err(broken_at(
                        position,
                        "an unkeyed record after keyed ones (a keyed record was replaced by a \
                         plain SHA-256 one)"
                            .to_owned(),
                    )));
                }
                None => {
                    // Legacy records predate partitioning: numbered as the one chain was.
                    if position != row.seq || legacy_record_hash(&row) != row.hash {
                        return Ok(Err(broken_at(
                            position,
                            "content does not match its hash (the record was altered)".to_owned(),
                        )));
                    }
                    report.legacy_records += 1;
                }
                Some(key_id) => {
                    seen_keyed = true;
                    match check_record_mac(keys, key_id, &row, !seen_current_form) {
                        Ok(current_form) => seen_current_form |= current_form,
                        Err(MacError::Mismatch) => {
                            return Ok(Err(broken_at(
                                position,
                                "content does not match its MAC (the record was altered, or \
                                 its hash recomputed without the audit key)"
                                    .to_owned(),
                            )));
                        }
                        Err(unknown) => {
                            return Ok(Err(broken_at(position, format!("record {unknown}"))));
                        }
                    }
                }
            }
            while checkpoints.front().is_some_and(|c| c.seq <= row.seq) {
                let Some(checkpoint) = checkpoints.pop_front() else {
                    break;
                };
                if let Err(reason) = check_checkpoint_mac(keys, &checkpoint) {
                    return Ok(Err(broken_at(position, reason)));
                }
                if checkpoint.seq != row.seq || checkpoint.head_hash != row.hash {
                    return Ok(Err(broken_at(
                        position,
                        "the chain does not match the signed checkpoint of this record (the \
                         chain up to here was rewritten)"
                            .to_owned(),
                    )));
                }
                report.checkpoints += 1;
            }
            prev_hash = row.hash.clone();
            prev_seq = row.seq;
            expected += 1;
            if report.heads.last().is_some_and(|h| h.chain == chain) {
                report.heads.pop();
            }
            report.heads.push(ChainHead::from(row));
        }
    }
}

/// Checks a keyed record's MAC in the current form (Ok(true)) or, where `pre_partition`
/// still allows it, in the form chain 0's records were sealed in before partitioning
/// (Ok(false)): only in chain 0, only where `chain_seq = seq` as the migration numbered
/// them.
fn check_record_mac(
    keys: &AuditKeys,
    key_id: &str,
    row: &AuditRow,
    pre_partition: bool,
) -> Result<bool, MacError> {
    match keys.verify(key_id, record_content(row).as_bytes(), &row.hash) {
        Ok(()) => Ok(true),
        Err(MacError::Mismatch) if pre_partition && row.chain == 0 && row.chain_seq == row.seq => {
            keys.verify(key_id, pre_partition_content(row).as_bytes(), &row.hash)
                .map(|()| false)
        }
        Err(error) => Err(error),
    }
}

/// Stored checkpoints of `chain` with `after < seq <= up_to`, oldest first.
async fn checkpoints_between(
    conn: &impl Conn,
    chain: i32,
    after: i64,
    up_to: i64,
    limit: u64,
) -> StorageResult<Vec<CheckpointRow>> {
    audit_checkpoint::Entity::find()
        .filter(audit_checkpoint::Column::Chain.eq(chain))
        .filter(audit_checkpoint::Column::Seq.gt(after))
        .filter(audit_checkpoint::Column::Seq.lte(up_to))
        .order_by_asc(audit_checkpoint::Column::Seq)
        .limit(limit)
        .all(conn)
        .await
        .storage()
}

/// What a checkpoint's MAC covers. The leading label keeps it apart from record content.
/// The chain is not in it: the head hash is, and a record's MAC covers its chain.
pub fn checkpoint_message(seq: i64, head_hash: &str, created_at: Millis, key_id: &str) -> String {
    serde_json::json!(["audit-checkpoint/v1", seq, head_hash, created_at, key_id]).to_string()
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
            MacError::Mismatch => format!(
                "the checkpoint of trail record {}: its signature does not verify (a forged \
                 or altered checkpoint)",
                checkpoint.seq
            ),
            unknown => format!(
                "the checkpoint of trail record {}: {unknown}",
                checkpoint.seq
            ),
        })
}

/// What an anchor's MAC covers: a label, its id and time, the key id, and the heads as
/// stored (`[[chain, chain_seq, seq, hash], …]` by chain).
pub fn anchor_message(id: Uuid, created_at: Millis, key_id: &str, heads: &str) -> String {
    serde_json::json!(["audit-anchor/v1", id.to_string(), created_at, key_id, heads]).to_string()
}

fn heads_text(heads: &[ChainHead]) -> String {
    Value::Array(
        heads
            .iter()
            .map(|h| serde_json::json!([h.chain, h.position, h.seq, h.hash]))
            .collect(),
    )
    .to_string()
}

/// The heads an anchor names; None if its text is not what `heads_text` writes.
pub fn anchor_heads(anchor: &AnchorRow) -> Option<Vec<ChainHead>> {
    let heads: Vec<(i32, i64, i64, String)> = serde_json::from_str(&anchor.heads).ok()?;
    Some(
        heads
            .into_iter()
            .map(|(chain, position, seq, hash)| ChainHead {
                chain,
                position,
                seq,
                hash,
            })
            .collect(),
    )
}

/// Per chain, the furthest head an anchor vouches for, and that anchor's time.
type Anchored = BTreeMap<i32, (Millis, ChainHead)>;

/// Checks every anchor's MAC (stored ones and `external`) and returns, per chain, the
/// furthest head any of them vouches for. Older heads need no check of their own: the
/// chain walk proves every record up to the furthest one.
async fn furthest_anchored(
    conn: &impl Conn,
    keys: &AuditKeys,
    external: Vec<AnchorRow>,
    report: &mut ChainReport,
) -> StorageResult<Result<Anchored, ChainCheck>> {
    let mut furthest = Anchored::new();
    for anchor in external {
        if let Err(forged) = absorb_anchor(keys, anchor, &mut furthest) {
            return Ok(Err(forged));
        }
        report.anchors += 1;
    }
    let mut after = Uuid::nil();
    loop {
        let page = audit_anchor::Entity::find()
            .filter(audit_anchor::Column::Id.gt(after))
            .order_by_asc(audit_anchor::Column::Id)
            .limit(1000)
            .all(conn)
            .await
            .storage()?;
        let Some(last) = page.last().map(|a| a.id) else {
            return Ok(Ok(furthest));
        };
        after = last;
        for anchor in page {
            if let Err(forged) = absorb_anchor(keys, anchor, &mut furthest) {
                return Ok(Err(forged));
            }
            report.anchors += 1;
        }
    }
}

/// Checks one anchor's MAC and keeps the heads it vouches for that go furthest.
fn absorb_anchor(
    keys: &AuditKeys,
    anchor: AnchorRow,
    furthest: &mut Anchored,
) -> Result<(), ChainCheck> {
    let forged = |reason: String| ChainCheck::ForgedAnchor {
        created_at: anchor.created_at,
        reason,
    };
    let message = anchor_message(anchor.id, anchor.created_at, &anchor.key_id, &anchor.heads);
    match keys.verify(&anchor.key_id, message.as_bytes(), &anchor.mac) {
        Ok(()) => {}
        Err(MacError::Mismatch) => {
            return Err(forged(
                "the anchor's signature does not verify (a forged or altered anchor)".to_owned(),
            ));
        }
        Err(unknown) => return Err(forged(format!("anchor {unknown}"))),
    }
    let heads = anchor_heads(&anchor)
        .ok_or_else(|| forged("the anchor's heads are unreadable".to_owned()))?;
    for head in heads {
        if furthest
            .get(&head.chain)
            .is_none_or(|(_, h)| h.position < head.position)
        {
            furthest.insert(head.chain, (anchor.created_at, head));
        }
    }
    Ok(())
}

/// The record an anchor vouches for must still be there, with the same hash: otherwise
/// the chain's tail (or the whole chain) was deleted, or the chain rewritten. Records
/// appended after the walk are read here, so a fresh anchor is no false alarm.
async fn check_anchored_head(
    conn: &impl Conn,
    walked: &[ChainHead],
    anchored_at: Millis,
    head: &ChainHead,
) -> StorageResult<Result<(), ChainCheck>> {
    let record = audit_record::Entity::find()
        .filter(audit_record::Column::Chain.eq(head.chain))
        .filter(audit_record::Column::ChainSeq.eq(head.position))
        .one(conn)
        .await
        .storage()?;
    let signed_at = crate::domain::millis_to_rfc3339(anchored_at);
    Ok(match record {
        Some(row) if row.seq == head.seq && row.hash == head.hash => Ok(()),
        Some(_) => Err(ChainCheck::Broken {
            chain: head.chain,
            position: head.position,
            reason: format!(
                "the chain does not match the anchor signed at {signed_at} (the chain up to \
                 here was rewritten)"
            ),
        }),
        None => {
            let length = walked
                .iter()
                .find(|h| h.chain == head.chain)
                .map_or(0, |h| h.position);
            Err(ChainCheck::Broken {
                chain: head.chain,
                position: length + 1,
                reason: format!(
                    "records from {} on are missing: an anchor signed at {signed_at} vouches \
                     for {} records in chain {}, but it ends at {length} (its tail was deleted)",
                    length + 1,
                    head.position,
                    head.chain
                ),
            })
        }
    })
}

/// Every chain's current head: chains 0 to `chains` − 1 and any other chain the latest
/// anchor names (one that receives no records since `AUDIT_CHAINS` was lowered, whose
/// head must stay anchored).
pub async fn current_heads(conn: &impl Conn, chains: ChainCount) -> StorageResult<Vec<ChainHead>> {
    let mut ids: BTreeSet<i32> = chains.chains().collect();
    if let Some(latest) = latest_anchor(conn).await? {
        ids.extend(
            anchor_heads(&latest)
                .unwrap_or_default()
                .iter()
                .map(|h| h.chain),
        );
    }
    let mut heads = Vec::new();
    for chain in ids {
        heads.extend(chain_head(conn, chain).await?.map(ChainHead::from));
    }
    Ok(heads)
}

async fn latest_anchor(conn: &impl Conn) -> StorageResult<Option<AnchorRow>> {
    audit_anchor::Entity::find()
        .order_by_desc(audit_anchor::Column::Id)
        .limit(1)
        .one(conn)
        .await
        .storage()
}

/// What `seal_heads` signed.
#[derive(Debug, Default)]
pub struct Sealed {
    pub checkpoints: Vec<CheckpointRow>,
    pub anchor: Option<AnchorRow>,
}

/// Signs a checkpoint of every head in `heads` that no checkpoint of its chain covers
/// yet, and an anchor of them all unless the latest anchor names exactly these heads.
pub async fn seal_heads(
    conn: &impl Conn,
    keys: &AuditKeys,
    heads: &[ChainHead],
) -> StorageResult<Sealed> {
    let mut sealed = Sealed::default();
    for head in heads {
        sealed
            .checkpoints
            .extend(write_checkpoint(conn, keys, head).await?);
    }
    if heads.is_empty() {
        return Ok(sealed);
    }
    let unchanged = latest_anchor(conn)
        .await?
        .and_then(|latest| anchor_heads(&latest))
        .is_some_and(|latest| latest == heads);
    if unchanged {
        return Ok(sealed);
    }
    let id = Uuid::now_v7();
    let created_at = now_millis();
    let key_id = keys.current_key_id().to_owned();
    let heads = heads_text(heads);
    let mac = keys.seal(anchor_message(id, created_at, &key_id, &heads).as_bytes());
    let anchor = AnchorRow {
        id,
        created_at,
        heads,
        key_id,
        mac,
    };
    audit_anchor::Entity::insert(audit_anchor::ActiveModel {
        id: Set(anchor.id),
        created_at: Set(anchor.created_at),
        heads: Set(anchor.heads.clone()),
        key_id: Set(anchor.key_id.clone()),
        mac: Set(anchor.mac.clone()),
    })
    .exec(conn)
    .await
    .storage()?;
    sealed.anchor = Some(anchor);
    Ok(sealed)
}

/// Signs and stores a checkpoint of `head`, unless a checkpoint of its chain at or beyond
/// it exists. Returns the checkpoint written, if any.
async fn write_checkpoint(
    conn: &impl Conn,
    keys: &AuditKeys,
    head: &ChainHead,
) -> StorageResult<Option<CheckpointRow>> {
    let latest = audit_checkpoint::Entity::find()
        .filter(audit_checkpoint::Column::Chain.eq(head.chain))
        .order_by_desc(audit_checkpoint::Column::Seq)
        .limit(1)
        .one(conn)
        .await
        .storage()?;
    if latest.is_some_and(|c| c.seq >= head.seq) {
        return Ok(None);
    }
    let created_at = now_millis();
    let key_id = keys.current_key_id().to_owned();
    let mac = keys.seal(checkpoint_message(head.seq, &head.hash, created_at, &key_id).as_bytes());
    let checkpoint = CheckpointRow {
        seq: head.seq,
        chain: head.chain,
        head_hash: head.hash.clone(),
        created_at,
        key_id,
        mac,
    };
    let inserted = audit_checkpoint::Entity::insert(audit_checkpoint::ActiveModel {
        seq: Set(checkpoint.seq),
        chain: Set(checkpoint.chain),
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

/// Stored anchors created at or after `since`, oldest first, `limit` after `after` (export).
pub async fn anchors_since(
    conn: &impl Conn,
    since: Millis,
    after: Uuid,
    limit: u64,
) -> StorageResult<Vec<AnchorRow>> {
    audit_anchor::Entity::find()
        .filter(audit_anchor::Column::CreatedAt.gte(since))
        .filter(audit_anchor::Column::Id.gt(after))
        .order_by_asc(audit_anchor::Column::Id)
        .limit(limit)
        .all(conn)
        .await
        .storage()
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
