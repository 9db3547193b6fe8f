//! Audit events (docs/API.md §4) and who/where they came from.

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::error::ServiceResult;
use crate::domain::{Page, millis_to_rfc3339, now_millis};
use crate::storage::db::Database;
/// The trail's query, as storage runs it.
pub use crate::storage::db::audit::AuditFilter;
use crate::storage::db::audit::{
    self, AnchorRow, AuditRow, ChainReport, CheckpointRow, NewAuditRecord, Sealed,
};

mod events;
pub use events::{
    AuditEvent, Change, CodeFailure, FactorStep, Linking, LoginFailure, LoginMethod, OAuthEvent,
    PasskeyFailure, Registration, RepeatedRefusal, Revocation, Rotation, TransactionEvent,
    TransactionFailure,
};

/// Where a request came from, for audit records and session metadata.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub ip: String,
    pub user_agent: String,
    pub request_id: String,
}

impl RequestContext {
    /// A record of something that happened to (or was done by) `user_id`.
    pub fn record(&self, event: AuditEvent, user_id: Option<Uuid>) -> NewAuditRecord {
        NewAuditRecord {
            event: event.name(),
            occurred_at: now_millis(),
            user_id,
            actor_id: user_id,
            ip: Some(self.ip.clone()).filter(|s| !s.is_empty()),
            user_agent: Some(self.user_agent.clone()).filter(|s| !s.is_empty()),
            request_id: Some(self.request_id.clone()).filter(|s| !s.is_empty()),
            metadata: event.details(),
        }
    }

    /// A record of something an actor did to another user (admin actions).
    pub fn record_for(&self, event: AuditEvent, target: Uuid, actor: Uuid) -> NewAuditRecord {
        NewAuditRecord {
            user_id: Some(target),
            actor_id: Some(actor),
            ..self.record(event, Some(target))
        }
    }
}

/// One record as clients and SIEMs see it (docs/API.md §7).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditEventView {
    pub id: Uuid,
    pub event: String,
    pub occurred_at: String,
    pub user_id: Option<Uuid>,
    pub actor_id: Option<Uuid>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub metadata: Value,
    /// Position in the whole trail: the export and query order (increasing, unique, not
    /// necessarily contiguous).
    pub seq: i64,
    pub hash: String,
    /// The hash chain the record is linked into (the trail is partitioned, docs/API.md §4).
    pub chain: i32,
    /// Position in its chain: 1, 2, 3, … without gaps.
    pub chain_seq: i64,
}

impl From<AuditRow> for AuditEventView {
    fn from(row: AuditRow) -> Self {
        Self {
            id: row.id,
            event: row.event,
            occurred_at: millis_to_rfc3339(row.occurred_at),
            user_id: row.user_id,
            actor_id: row.actor_id,
            ip: row.ip,
            user_agent: row.user_agent,
            request_id: row.request_id,
            metadata: serde_json::from_str(&row.metadata).unwrap_or(Value::Null),
            seq: row.seq,
            hash: row.hash,
            chain: row.chain,
            chain_seq: row.chain_seq,
        }
    }
}

/// Reading the trail: queries, chain verification, export.
#[derive(Clone)]
pub struct AuditTrail {
    db: Database,
}

impl AuditTrail {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// A page, newest first, and the cursor of the next page (None at the end).
    #[tracing::instrument(skip_all)]
    pub async fn page(&self, filter: AuditFilter) -> ServiceResult<Page<AuditEventView>> {
        let page = audit::page(self.db.connection(), &filter).await?;
        Ok(page.map(AuditEventView::from))
    }

    /// Verifies every chain, checkpoint and anchor (stored, and `external` ones kept
    /// elsewhere, e.g. exported to a SIEM); when the trail is intact, signs checkpoints of
    /// the heads it verified and an anchor of them, so that what was just verified can no
    /// longer be cut off unnoticed.
    #[tracing::instrument(skip_all)]
    pub async fn verify(&self, external: External) -> ServiceResult<(ChainReport, Sealed)> {
        let keys = self.db.audit_keys()?;
        let conn = self.db.connection();
        let report =
            audit::verify_chain_report(conn, keys, external.checkpoints, external.anchors).await?;
        let sealed = match &report.check {
            audit::ChainCheck::Intact { .. } => {
                audit::seal_heads(conn, keys, &report.heads).await?
            }
            _ => Sealed::default(),
        };
        Ok((report, sealed))
    }

    /// Signs a checkpoint of every chain's head that moved, and an anchor of all the heads
    /// (the background task, graceful shutdown).
    #[tracing::instrument(skip_all)]
    pub async fn checkpoint(&self) -> ServiceResult<Sealed> {
        let keys = self.db.audit_keys()?;
        let conn = self.db.connection();
        let heads = audit::current_heads(conn, self.db.audit_chains()).await?;
        Ok(audit::seal_heads(conn, keys, &heads).await?)
    }

    /// Writes every checkpoint, then every anchor, created from `since` on as JSON lines;
    /// returns how many.
    #[tracing::instrument(skip_all)]
    pub async fn export_checkpoints(
        &self,
        since: i64,
        out: &mut impl std::io::Write,
    ) -> anyhow::Result<u64> {
        let mut after = i64::MIN;
        let mut written = 0;
        loop {
            let rows = audit::checkpoints_since(self.db.connection(), since, after, 1000).await?;
            let Some(last) = rows.last() else {
                break;
            };
            after = last.seq;
            for row in rows {
                serde_json::to_writer(&mut *out, &CheckpointLine::from(row))?;
                out.write_all(b"\n")?;
                written += 1;
            }
        }
        let mut after = Uuid::nil();
        loop {
            let rows = audit::anchors_since(self.db.connection(), since, after, 1000).await?;
            let Some(last) = rows.last() else {
                return Ok(written);
            };
            after = last.id;
            for row in rows {
                serde_json::to_writer(&mut *out, &AnchorLine::from(row))?;
                out.write_all(b"\n")?;
                written += 1;
            }
        }
    }

    /// Writes every record from `since` on as JSON lines; returns how many.
    #[tracing::instrument(skip_all)]
    pub async fn export(&self, since: i64, out: &mut impl std::io::Write) -> anyhow::Result<u64> {
        let mut after = 0;
        let mut written = 0;
        loop {
            let rows = audit::since(self.db.connection(), since, after, 1000).await?;
            let Some(last) = rows.last() else {
                return Ok(written);
            };
            after = last.seq;
            for row in rows {
                serde_json::to_writer(&mut *out, &AuditEventView::from(row))?;
                out.write_all(b"\n")?;
                written += 1;
            }
        }
    }
}

/// Checkpoints and anchors kept outside the database (an `audit export --checkpoints`).
#[derive(Debug, Default)]
pub struct External {
    pub checkpoints: Vec<CheckpointRow>,
    pub anchors: Vec<AnchorRow>,
}

/// A checkpoint as `audit export --checkpoints` writes it and `audit verify --checkpoints`
/// reads it back. `type` tells it apart from a record line; the MAC covers
/// `["audit-checkpoint/v1", seq, head_hash, created_at in epoch milliseconds, key_id]`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct CheckpointLine {
    #[serde(rename = "type")]
    pub kind: String,
    /// The record vouched for: its position in the trail.
    pub seq: i64,
    /// Its chain (absent in exports from before the trail was partitioned: chain 0).
    #[serde(default)]
    pub chain: i32,
    pub head_hash: String,
    pub created_at: String,
    pub key_id: String,
    pub mac: String,
}

impl From<CheckpointRow> for CheckpointLine {
    fn from(row: CheckpointRow) -> Self {
        Self {
            kind: "checkpoint".to_owned(),
            seq: row.seq,
            chain: row.chain,
            head_hash: row.head_hash,
            created_at: millis_to_rfc3339(row.created_at),
            key_id: row.key_id,
            mac: row.mac,
        }
    }
}

/// An anchor as `audit export --checkpoints` writes it: `heads` is the signed text
/// `[[chain, chain_seq, seq, hash], …]`; the MAC covers `["audit-anchor/v1", id,
/// created_at in epoch milliseconds, key_id, heads]`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct AnchorLine {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: Uuid,
    pub created_at: String,
    pub heads: String,
    pub key_id: String,
    pub mac: String,
}

impl From<AnchorRow> for AnchorLine {
    fn from(row: AnchorRow) -> Self {
        Self {
            kind: "anchor".to_owned(),
            id: row.id,
            created_at: millis_to_rfc3339(row.created_at),
            heads: row.heads,
            key_id: row.key_id,
            mac: row.mac,
        }
    }
}

impl External {
    /// The checkpoint and anchor lines of an export (other lines are skipped); an
    /// unreadable line is an error naming it.
    pub fn parse_all(text: &str) -> anyhow::Result<Self> {
        let mut external = Self::default();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let n = n + 1;
            let value: Value = serde_json::from_str(line)
                .map_err(|e| anyhow::anyhow!("line {n}: not JSON: {e}"))?;
            let created_at = |text: &str| {
                crate::domain::parse_rfc3339_millis(text)
                    .ok_or_else(|| anyhow::anyhow!("line {n}: created_at is not RFC 3339"))
            };
            match value.get("type").and_then(Value::as_str) {
                Some("checkpoint") => {
                    let line: CheckpointLine = serde_json::from_value(value)
                        .map_err(|e| anyhow::anyhow!("line {n}: not a checkpoint: {e}"))?;
                    external.checkpoints.push(CheckpointRow {
                        seq: line.seq,
                        chain: line.chain,
                        head_hash: line.head_hash,
                        created_at: created_at(&line.created_at)?,
                        key_id: line.key_id,
                        mac: line.mac,
                    });
                }
                Some("anchor") => {
                    let line: AnchorLine = serde_json::from_value(value)
                        .map_err(|e| anyhow::anyhow!("line {n}: not an anchor: {e}"))?;
                    external.anchors.push(AnchorRow {
                        id: line.id,
                        created_at: created_at(&line.created_at)?,
                        heads: line.heads,
                        key_id: line.key_id,
                        mac: line.mac,
                    });
                }
                _ => {}
            }
        }
        Ok(external)
    }
}
