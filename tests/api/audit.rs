//! docs/API.md §4 audit trail: keyed hash chain, signed checkpoints, CLI verify/export, and the
//! staff query route.

use std::process::Command;

use logicredit_auth::storage::db::audit::{
    AuditRow, GENESIS_HASH, legacy_record_hash, pre_partition_content,
};
use logicredit_auth::storage::db::entities::{audit_anchor, audit_record};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait, IntoActiveModel, QueryOrder};
use serde_json::{Value, json};

use crate::helpers::{Backend, ENCRYPTION_KEY, TestApp, spawn_app, spawn_app_with};
use crate::on_both_backends;

/// A second master key, for rotation scenarios.
const ROTATED_KEY: &str = "rotated-key-0123456789abcdef0123456789abcdef";

fn audit_cli(database_url: &str, args: &[&str]) -> (bool, String, String) {
    audit_cli_with_keys(database_url, ENCRYPTION_KEY, None, args)
}

fn audit_cli_with_keys(
    database_url: &str,
    key: &str,
    old_keys: Option<&str>,
    args: &[&str],
) -> (bool, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_logicredit-auth"));
    command
        .env_clear()
        .env("DATABASE_URL", database_url)
        .env("TOTP_ENCRYPTION_KEY", key)
        .env("RUST_LOG", "error")
        .arg("audit")
        .args(args);
    if let Some(old) = old_keys {
        command.env("TOTP_ENCRYPTION_KEYS_OLD", old);
    }
    let output = command.output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `audit verify` must fail, and its message must name `record {seq}`.
#[track_caller]
fn assert_verify_fails_at(database_url: &str, seq: i64, args: &[&str]) -> String {
    let mut all = vec!["verify"];
    all.extend_from_slice(args);
    let (ok, stdout, stderr) = audit_cli(database_url, &all);
    assert!(!ok, "verify passed: {stdout}{stderr}");
    assert!(
        stderr.contains(&format!("broken at record {seq}:")),
        "expected record {seq}: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// `audit verify` must fail, and its message must contain `text`.
#[track_caller]
fn assert_verify_fails_naming(database_url: &str, text: &str) -> String {
    let (ok, stdout, stderr) = audit_cli(database_url, &["verify"]);
    assert!(!ok, "verify passed: {stdout}{stderr}");
    assert!(stderr.contains(text), "expected {text:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[track_caller]
fn assert_verify_passes(database_url: &str, args: &[&str]) -> String {
    let mut all = vec!["verify"];
    all.extend_from_slice(args);
    let (ok, stdout, stderr) = audit_cli(database_url, &all);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("intact"), "{stdout}");
    stdout
}

async fn audit_rows(app: &TestApp) -> Vec<AuditRow> {
    audit_record::Entity::find()
        .order_by_asc(audit_record::Column::Seq)
        .all(app.db.connection())
        .await
        .unwrap()
}

/// What someone with write access to the database but without the key can do: change the
/// records of record `from`'s chain from it on with `change`, then recompute every hash and
/// link from there with plain SHA-256 (the only hash they can compute), so that the chain
/// is consistent again.
async fn rewrite_chain(app: &TestApp, from: i64, change: impl Fn(&mut AuditRow)) {
    let rows = audit_rows(app).await;
    let chain = rows.iter().find(|r| r.seq == from).unwrap().chain;
    let mut prev_hash = GENESIS_HASH.to_owned();
    for mut row in rows.into_iter().filter(|r| r.chain == chain) {
        if row.seq >= from {
            change(&mut row);
            row.prev_hash = prev_hash.clone();
            row.hash = legacy_record_hash(&row);
            row.clone()
                .into_active_model()
                .reset_all()
                .update(app.db.connection())
                .await
                .unwrap();
        }
        prev_hash = row.hash;
    }
}

async fn head_seq(app: &TestApp) -> i64 {
    app.query("SELECT MAX(seq) FROM audit_log").await[0]
        .as_i64()
        .unwrap()
}

async fn checkpoint_seq(app: &TestApp) -> Option<i64> {
    app.query("SELECT MAX(seq) FROM audit_checkpoints").await[0].as_i64()
}

async fn the_chain_verifies_until_a_record_is_altered(backend: Backend) {
    let app = spawn_app(backend).await;
    app.logged_in("alice@example.com").await;
    let url = app.var("DATABASE_URL").to_owned();
    let (ok, stdout, stderr) = audit_cli(&url, &["verify"]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("intact"), "{stdout}");

    let (ok, stdout, _) = audit_cli(&url, &["export", "--since", "2000-01-01T00:00:00Z"]);
    assert!(ok);
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let total = app.query("SELECT COUNT(*) FROM audit_log").await[0]
        .as_i64()
        .unwrap();
    assert_eq!(lines.len() as i64, total);
    assert_eq!(lines[0]["event"], "user.registered");
    for field in [
        "id",
        "event",
        "occurred_at",
        "user_id",
        "actor_id",
        "ip",
        "user_agent",
        "request_id",
        "metadata",
    ] {
        assert!(lines[0].get(field).is_some(), "{field}");
    }
    let (_, later, _) = audit_cli(&url, &["export", "--since", "2999-01-01T00:00:00Z"]);
    assert!(later.is_empty());

    // Someone with database access rewrites history: the chain names the record.
    app.execute("UPDATE audit_log SET ip = '6.6.6.6' WHERE seq = 2")
        .await;
    let (ok, stdout, stderr) = audit_cli(&url, &["verify"]);
    assert!(!ok, "{stdout}");
    assert!(stderr.contains("record 2"), "{stderr}");

    // Deleting a record instead is caught too.
    app.execute("UPDATE audit_log SET ip = '127.0.0.1' WHERE seq = 2")
        .await;
    app.execute("DELETE FROM audit_log WHERE seq = 3").await;
    let (ok, _, stderr) = audit_cli(&url, &["verify"]);
    assert!(!ok);
    assert!(
        stderr.contains("record 2") || stderr.contains("record 3"),
        "{stderr}"
    );
}

async fn a_rewrite_with_recomputed_hashes_is_detected_without_the_key(backend: Backend) {
    let app = spawn_app(backend).await;
    app.logged_in("alice@example.com").await;
    let url = app.var("DATABASE_URL").to_owned();
    assert_verify_passes(&url, &[]);
    let head = head_seq(&app).await;
    assert_eq!(
        checkpoint_seq(&app).await,
        Some(head),
        "verify signs a checkpoint of the head it verified"
    );

    // Records newer than any checkpoint, altered and passed off as legacy (unkeyed)
    // ones: legacy records are accepted only before the first keyed one.
    app.login("alice@example.com").await;
    rewrite_chain(&app, head + 1, |row| {
        row.key_id = None;
        if row.seq == head + 1 {
            row.ip = Some("6.6.6.6".into());
        }
    })
    .await;
    let message = assert_verify_fails_at(&url, head + 1, &[]);
    assert!(message.contains("unkeyed record after keyed"), "{message}");

    // A plain SHA-256 chain recomputed from the altered record on is consistent — and
    // what the old, unkeyed chain accepted. The keyed chain names the altered record.
    rewrite_chain(&app, 2, |row| {
        if row.seq == 2 {
            row.ip = Some("6.6.6.6".into());
        }
    })
    .await;
    let message = assert_verify_fails_at(&url, 2, &[]);
    assert!(message.contains("without the audit key"), "{message}");

    // Passing the records off as legacy (unkeyed) ones does not help: the signed
    // checkpoint of the head no longer matches the rewritten chain.
    rewrite_chain(&app, 1, |row| row.key_id = None).await;
    let message = assert_verify_fails_at(&url, head, &[]);
    assert!(message.contains("checkpoint"), "{message}");
}

async fn deleting_records_covered_by_a_checkpoint_is_detected(backend: Backend) {
    // Checkpoints come from the background task (every second here), `audit verify`
    // and graceful shutdown.
    let mut app = spawn_app_with(backend, &[("AUDIT_CHECKPOINT_INTERVAL_SECONDS", "1")]).await;
    app.logged_in("alice@example.com").await;
    let url = app.var("DATABASE_URL").to_owned();
    let head = head_seq(&app).await;
    let started = std::time::Instant::now();
    while checkpoint_seq(&app).await != Some(head) {
        assert!(
            started.elapsed().as_secs() < 10,
            "no checkpoint of the head within 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // The last two records disappear: the chain alone would still be consistent.
    app.execute(&format!("DELETE FROM audit_log WHERE seq > {}", head - 2))
        .await;
    let message = assert_verify_fails_at(&url, head - 1, &[]);
    assert!(message.contains("tail was deleted"), "{message}");
    assert_eq!(
        checkpoint_seq(&app).await,
        Some(head),
        "a failed verify signs nothing"
    );

    // So does the whole trail.
    app.execute("DELETE FROM audit_log").await;
    assert_verify_fails_at(&url, 1, &[]);

    // A graceful shutdown checkpoints what this run appended.
    app.execute("DELETE FROM audit_checkpoints").await;
    app.login("alice@example.com").await;
    let head = head_seq(&app).await;
    app.stop().await;
    assert_eq!(checkpoint_seq(&app).await, Some(head));
    // (The chain started again at position 1; on PostgreSQL `seq` carried on.)
    let position = app
        .query(&format!(
            "SELECT chain_seq FROM audit_log WHERE seq = {head}"
        ))
        .await[0]
        .as_i64()
        .unwrap();
    app.execute(&format!("DELETE FROM audit_log WHERE seq = {head}"))
        .await;
    assert_verify_fails_at(&url, position, &[]);
}

async fn a_forged_or_altered_checkpoint_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    app.logged_in("alice@example.com").await;
    let url = app.var("DATABASE_URL").to_owned();
    assert_verify_passes(&url, &[]);
    let head = head_seq(&app).await;

    // Moved to another head, with its genuine MAC.
    app.execute(&format!(
        "UPDATE audit_checkpoints SET seq = {} WHERE seq = {head}",
        head - 1
    ))
    .await;
    let message = assert_verify_fails_at(&url, head - 1, &[]);
    assert!(message.contains("signature does not verify"), "{message}");
    app.execute(&format!(
        "UPDATE audit_checkpoints SET seq = {head} WHERE seq = {}",
        head - 1
    ))
    .await;
    assert_verify_passes(&url, &[]);

    // Vouching for another hash.
    app.execute("UPDATE audit_checkpoints SET head_hash = 'ab' || head_hash")
        .await;
    assert_verify_fails_at(&url, head, &[]);
    app.execute("UPDATE audit_checkpoints SET head_hash = SUBSTR(head_hash, 3)")
        .await;
    assert_verify_passes(&url, &[]);

    // Made up, beyond the end (it must not pass for a deleted tail either), or under
    // a key nobody configured.
    app.execute(&format!(
        "INSERT INTO audit_checkpoints (seq, head_hash, created_at, key_id, mac) \
         VALUES ({}, 'x', 0, (SELECT key_id FROM audit_checkpoints LIMIT 1), 'deadbeef')",
        head + 100
    ))
    .await;
    let forged = format!("checkpoint of trail record {}", head + 100);
    let message = assert_verify_fails_naming(&url, &forged);
    assert!(message.contains("does not verify"), "{message}");
    app.execute(&format!(
        "UPDATE audit_checkpoints SET key_id = 'nokey000' WHERE seq = {}",
        head + 100
    ))
    .await;
    let message = assert_verify_fails_naming(&url, &forged);
    assert!(message.contains("unknown audit key"), "{message}");
}

async fn after_key_rotation_old_records_still_verify(backend: Backend) {
    let mut app = spawn_app(backend).await;
    app.logged_in("alice@example.com").await;
    let url = app.var("DATABASE_URL").to_owned();
    assert_verify_passes(&url, &[]);
    let before = head_seq(&app).await;
    app.stop().await;

    // The new master key; the old one kept for what it sealed.
    let rotated = app
        .sibling(&[
            ("TOTP_ENCRYPTION_KEY", ROTATED_KEY),
            ("TOTP_ENCRYPTION_KEYS_OLD", ENCRYPTION_KEY),
        ])
        .await;
    rotated.logged_in("bob@example.com").await;
    let keys = rotated.query("SELECT DISTINCT key_id FROM audit_log").await;
    assert_eq!(keys.len(), 2, "records sealed under each key: {keys:?}");

    let (ok, stdout, stderr) =
        audit_cli_with_keys(&url, ROTATED_KEY, Some(ENCRYPTION_KEY), &["verify"]);
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("intact") && stdout.contains("0 legacy"),
        "{stdout}"
    );

    // Without the old key the old records cannot be vouched for: refused, not a panic.
    let (ok, _, stderr) = audit_cli_with_keys(&url, ROTATED_KEY, None, &["verify"]);
    assert!(!ok);
    assert!(
        stderr.contains("record 1:") && stderr.contains("unknown audit key"),
        "{stderr}"
    );
    // And the old key alone cannot vouch for the new records.
    let (ok, _, stderr) = audit_cli_with_keys(&url, ENCRYPTION_KEY, None, &["verify"]);
    assert!(!ok);
    let first_new = rotated
        .query(&format!(
            "SELECT chain_seq FROM audit_log WHERE seq = (SELECT MIN(seq) FROM audit_log \
             WHERE seq > {before})"
        ))
        .await[0]
        .as_i64()
        .unwrap();
    assert!(stderr.contains(&format!("record {first_new}:")), "{stderr}");
}

/// Writes records 1–3 of chain 0 straight into the database as an earlier version did,
/// each hashed by `hash` over itself and linked to the one before.
async fn insert_earlier_chain(
    app: &TestApp,
    key_id: Option<&str>,
    hash: impl Fn(&AuditRow) -> String,
) {
    let mut prev_hash = GENESIS_HASH.to_owned();
    for seq in 1..=3 {
        let mut row = written_earlier(seq, &prev_hash, key_id);
        row.hash = hash(&row);
        prev_hash = row.hash.clone();
        row.into_active_model()
            .reset_all()
            .insert(app.db.connection())
            .await
            .unwrap();
    }
}

/// A record as an earlier version wrote it, at position `seq` of chain 0 (the one chain
/// there was), before its hash is set: unkeyed (`key_id` None) or under a key.
fn written_earlier(seq: i64, prev_hash: &str, key_id: Option<&str>) -> AuditRow {
    AuditRow {
        seq,
        chain: 0,
        chain_seq: seq,
        id: uuid::Uuid::now_v7(),
        occurred_at: 1_700_000_000_000 + seq,
        event: "login.failure".into(),
        user_id: None,
        actor_id: None,
        ip: Some("10.0.0.1".into()),
        user_agent: None,
        request_id: None,
        metadata: "{}".into(),
        prev_hash: prev_hash.to_owned(),
        hash: String::new(),
        key_id: key_id.map(str::to_owned),
    }
}

async fn records_from_before_keying_verify_as_a_legacy_prefix_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = app.var("DATABASE_URL").to_owned();
    // What the previous version wrote: three plain SHA-256 records, no key id.
    insert_earlier_chain(&app, None, legacy_record_hash).await;
    after_records_written_before_the_upgrade(&app, 3).await;
    app.logged_in("alice@example.com").await;
    let stdout = assert_verify_passes(&url, &[]);
    assert!(stdout.contains("3 legacy"), "{stdout}");

    // A legacy record altered and the legacy hashes recomputed: the first keyed record of
    // chain 0 vouches for the last legacy hash, and its MAC cannot be recomputed; if no
    // keyed record followed in chain 0 yet, the checkpoint `verify` signed of its head
    // (record 3) does.
    rewrite_chain(&app, 2, |row| {
        if row.seq == 2 {
            row.ip = Some("6.6.6.6".into());
        }
    })
    .await;
    let first_keyed = app
        .query("SELECT MIN(chain_seq) FROM audit_log WHERE chain = 0 AND key_id IS NOT NULL")
        .await[0]
        .as_i64();
    assert_verify_fails_at(&url, first_keyed.unwrap_or(3), &[]);
}

/// Rows inserted as an older version wrote them, before migration 8 created the sequence
/// of trail positions: on PostgreSQL the sequence starts after them, as the migration
/// sets it.
async fn after_records_written_before_the_upgrade(app: &TestApp, last_seq: i64) {
    if app.backend == Backend::PostgresRedis {
        app.query(&format!("SELECT setval('audit_log_position', {last_seq})"))
            .await;
    }
}

async fn checkpoints_exported_to_a_siem_catch_a_rewrite_of_everything(backend: Backend) {
    let app = spawn_app(backend).await;
    app.logged_in("alice@example.com").await;
    let url = app.var("DATABASE_URL").to_owned();
    assert_verify_passes(&url, &[]);
    let head = head_seq(&app).await;

    let (ok, exported, stderr) = audit_cli(&url, &["export", "--checkpoints"]);
    assert!(ok, "{stderr}");
    let lines: Vec<Value> = exported
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // One checkpoint (alice's records are all in one chain) and the anchor of the heads.
    assert_eq!(lines.len(), 2, "{exported}");
    assert_eq!(lines[0]["type"], "checkpoint");
    assert_eq!(lines[0]["seq"], json!(head));
    assert_eq!(lines[1]["type"], "anchor");
    for field in ["head_hash", "created_at", "key_id", "mac"] {
        assert!(lines[0][field].is_string(), "{field}: {exported}");
    }
    let file = std::env::temp_dir().join(format!("checkpoints-{}.jsonl", uuid::Uuid::new_v4()));
    std::fs::write(&file, &exported).unwrap();
    let file_arg = file.display().to_string();
    assert_verify_passes(&url, &["--checkpoints", &file_arg]);

    // The one rewrite the database cannot reveal on its own: every record passed off as
    // legacy and every checkpoint and anchor deleted. `verify` reports the legacy records …
    rewrite_chain(&app, 1, |row| {
        row.key_id = None;
        if row.seq == 2 {
            row.ip = Some("6.6.6.6".into());
        }
    })
    .await;
    app.execute("DELETE FROM audit_checkpoints").await;
    app.execute("DELETE FROM audit_anchors").await;
    let (_, stdout, _) = audit_cli(&url, &["verify"]);
    assert!(stdout.contains(&format!("{head} legacy")), "{stdout}");
    // … and the exported checkpoint catches it (even though that verify just signed a
    // fresh checkpoint of the forged chain).
    let message = assert_verify_fails_at(&url, head, &["--checkpoints", &file_arg]);
    assert!(message.contains("rewritten"), "{message}");

    // So too a deleted tail with its checkpoints.
    app.execute(&format!("DELETE FROM audit_log WHERE seq >= {}", head - 1))
        .await;
    let message = assert_verify_fails_at(&url, head - 1, &["--checkpoints", &file_arg]);
    assert!(message.contains("tail was deleted"), "{message}");
    let _ = std::fs::remove_file(&file);
}

async fn staff_query_the_trail_with_filters_and_cursors(backend: Backend) {
    let app = spawn_app(backend).await;
    app.verified_user("staff@example.com").await;
    app.verified_user("user@example.com").await;
    app.execute("UPDATE users SET role = 'staff' WHERE email = 'staff@example.com'")
        .await;
    let staff = app.login("staff@example.com").await;
    let user = app.login("user@example.com").await;

    user.get("/auth/admin/audit")
        .await
        .assert_error(403, "forbidden");
    app.browser()
        .get("/auth/admin/audit")
        .await
        .assert_error(401, "not_authenticated");
    user.get("/auth/admin/ping")
        .await
        .assert_error(403, "forbidden");
    staff
        .get("/auth/admin/ping")
        .await
        .assert_error(403, "forbidden");

    let all = staff.get("/auth/admin/audit").await;
    assert_eq!(all.status, 200, "{all:?}");
    let events = all.body["events"].as_array().unwrap();
    assert!(events.len() >= 8);
    assert_eq!(all.body["next_cursor"], Value::Null);
    // Newest first.
    assert!(events[0]["occurred_at"].as_str() >= events[events.len() - 1]["occurred_at"].as_str());

    let user_id = user.get("/auth/me").await.body["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mine = staff
        .get(&format!(
            "/auth/admin/audit?user_id={user_id}&event=login.success"
        ))
        .await;
    let mine = mine.body["events"].as_array().unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["user_id"], json!(user_id));
    assert_eq!(mine[0]["metadata"]["method"], "password");

    // Pages of 3 cover everything exactly once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/auth/admin/audit?limit=3&cursor={c}"),
            None => "/auth/admin/audit?limit=3".to_owned(),
        };
        let page = staff.get(&path).await;
        for event in page.body["events"].as_array().unwrap() {
            seen.push(event["id"].as_str().unwrap().to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let unique: std::collections::HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len());
    assert!(seen.len() >= events.len());

    let future = staff
        .get("/auth/admin/audit?since=2999-01-01T00:00:00Z")
        .await;
    assert_eq!(future.body["events"], json!([]));
    let past = staff
        .get("/auth/admin/audit?until=2000-01-01T00:00:00Z")
        .await;
    assert_eq!(past.body["events"], json!([]));

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=ten", "limit"),
        ("since=yesterday", "since"),
        ("user_id=42", "user_id"),
        ("cursor=abc", "cursor"),
    ] {
        let response = staff.get(&format!("/auth/admin/audit?{query}")).await;
        response.assert_error(422, "validation_error");
        assert!(
            response.body["fields"][field].is_string(),
            "{query}: {response:?}"
        );
    }
}

on_both_backends!(
    the_chain_verifies_until_a_record_is_altered,
    a_rewrite_with_recomputed_hashes_is_detected_without_the_key,
    deleting_records_covered_by_a_checkpoint_is_detected,
    a_forged_or_altered_checkpoint_is_refused,
    after_key_rotation_old_records_still_verify,
    records_from_before_keying_verify_as_a_legacy_prefix_only,
    checkpoints_exported_to_a_siem_catch_a_rewrite_of_everything,
    staff_query_the_trail_with_filters_and_cursors
);

/// Several chains on either backend (SQLite defaults to one; the code path is the same).
const FOUR_CHAINS: &[(&str, &str)] = &[("AUDIT_CHAINS", "4")];

/// Signs in `n` users: their records spread over the chains, one user's in one chain.
async fn users_signed_in(app: &TestApp, n: usize) {
    for i in 0..n {
        app.logged_in(&format!("user{i}@example.com")).await;
    }
}

/// A chain holding at least `records` records, and the trail positions of its records.
async fn a_chain_with(app: &TestApp, records: usize) -> (i64, Vec<i64>) {
    for chain in app
        .query("SELECT DISTINCT chain FROM audit_log ORDER BY chain")
        .await
    {
        let chain = chain.as_i64().unwrap();
        let seqs: Vec<i64> = app
            .query(&format!(
                "SELECT seq FROM audit_log WHERE chain = {chain} ORDER BY chain_seq"
            ))
            .await
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        if seqs.len() >= records {
            return (chain, seqs);
        }
    }
    panic!("no chain with {records} records");
}

async fn each_chain_is_verified_on_its_own(backend: Backend) {
    let app = spawn_app_with(backend, FOUR_CHAINS).await;
    users_signed_in(&app, 6).await;
    let url = app.var("DATABASE_URL").to_owned();
    let chains = app
        .query("SELECT COUNT(DISTINCT chain) FROM audit_log")
        .await[0]
        .as_i64()
        .unwrap();
    assert!(chains > 1, "six users spread over more than one chain");
    let stdout = assert_verify_passes(&url, &[]);
    assert!(stdout.contains(&format!("in {chains} chains")), "{stdout}");
    // The trail keeps one order: the export lists every record once, by `seq`.
    let (ok, exported, _) = audit_cli(&url, &["export"]);
    assert!(ok);
    let seqs: Vec<i64> = exported
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(seqs.len(), audit_rows(&app).await.len());

    let (chain, seqs) = a_chain_with(&app, 3).await;
    let broken_at = |position: i64| format!("audit chain {chain} broken at record {position}:");

    // Altered: the record's MAC names it.
    app.execute(&format!(
        "UPDATE audit_log SET ip = '6.6.6.6' WHERE seq = {}",
        seqs[1]
    ))
    .await;
    let (ok, _, stderr) = audit_cli(&url, &["verify"]);
    assert!(!ok && stderr.contains(&broken_at(2)), "{stderr}");
    assert!(stderr.contains("MAC"), "{stderr}");
    app.execute(&format!(
        "UPDATE audit_log SET ip = '127.0.0.1' WHERE seq = {}",
        seqs[1]
    ))
    .await;
    assert_verify_passes(&url, &[]);

    // Reordered: records 2 and 3 of the chain swap places.
    let swap = |a: i64, b: i64| {
        let app = &app;
        async move {
            for (seq, position) in [(a, -1), (b, 2), (a, 3)] {
                app.execute(&format!(
                    "UPDATE audit_log SET chain_seq = {position} WHERE seq = {seq}"
                ))
                .await;
            }
        }
    };
    swap(seqs[1], seqs[2]).await;
    let (ok, _, stderr) = audit_cli(&url, &["verify"]);
    assert!(!ok && stderr.contains(&broken_at(2)), "{stderr}");
    swap(seqs[2], seqs[1]).await;
    assert_verify_passes(&url, &[]);

    // Moved into another chain: its MAC covers its chain, and it leaves a gap.
    app.execute(&format!(
        "UPDATE audit_log SET chain = {} WHERE seq = {}",
        chain + 100,
        seqs[1]
    ))
    .await;
    let (ok, _, stderr) = audit_cli(&url, &["verify"]);
    assert!(!ok && stderr.contains("broken at record"), "{stderr}");
    app.execute(&format!(
        "UPDATE audit_log SET chain = {chain} WHERE seq = {}",
        seqs[1]
    ))
    .await;
    assert_verify_passes(&url, &[]);

    // Deleted: the gap in the chain's positions names it.
    app.execute(&format!("DELETE FROM audit_log WHERE seq = {}", seqs[1]))
        .await;
    let (ok, _, stderr) = audit_cli(&url, &["verify"]);
    assert!(!ok && stderr.contains(&broken_at(2)), "{stderr}");
    assert!(stderr.contains("missing"), "{stderr}");
}

async fn truncating_one_chain_after_an_anchor_is_detected(backend: Backend) {
    let app = spawn_app_with(backend, FOUR_CHAINS).await;
    users_signed_in(&app, 6).await;
    let url = app.var("DATABASE_URL").to_owned();
    // `verify` signs a checkpoint of every chain's head and an anchor of them all.
    let stdout = assert_verify_passes(&url, &[]);
    assert!(stdout.contains("signed an anchor"), "{stdout}");
    let anchors = app.query("SELECT COUNT(*) FROM audit_anchors").await[0].as_i64();
    assert!(anchors >= Some(1));

    // One chain's last two records go, and with them every checkpoint (they are in the
    // database too): the chains alone are consistent, the anchor is not.
    let (chain, seqs) = a_chain_with(&app, 3).await;
    let kept = seqs.len() - 2;
    app.execute(&format!(
        "DELETE FROM audit_log WHERE chain = {chain} AND chain_seq > {kept}"
    ))
    .await;
    app.execute("DELETE FROM audit_checkpoints").await;
    let (ok, _, stderr) = audit_cli(&url, &["verify"]);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "audit chain {chain} broken at record {}:",
            kept + 1
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("anchor") && stderr.contains("tail was deleted"),
        "{stderr}"
    );

    // So is a whole chain removed.
    app.execute(&format!("DELETE FROM audit_log WHERE chain = {chain}"))
        .await;
    let (ok, _, stderr) = audit_cli(&url, &["verify"]);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains(&format!("audit chain {chain} broken at record 1:")),
        "{stderr}"
    );
}

async fn a_forged_or_altered_anchor_is_refused(backend: Backend) {
    let app = spawn_app_with(backend, FOUR_CHAINS).await;
    users_signed_in(&app, 3).await;
    let url = app.var("DATABASE_URL").to_owned();
    assert_verify_passes(&url, &[]);

    // A genuine anchor made to vouch for less (so that a tail could go): its MAC fails.
    let heads = app.query("SELECT heads FROM audit_anchors").await[0]
        .as_str()
        .unwrap()
        .to_owned();
    let fewer: Vec<Value> = serde_json::from_str::<Vec<Value>>(&heads).unwrap()[1..].to_vec();
    app.execute(&format!(
        "UPDATE audit_anchors SET heads = '{}'",
        Value::from(fewer)
    ))
    .await;
    let (ok, _, stderr) = audit_cli(&url, &["verify"]);
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("signature does not verify"), "{stderr}");
    app.execute(&format!("UPDATE audit_anchors SET heads = '{heads}'"))
        .await;
    assert_verify_passes(&url, &[]);

    // Made up by someone without the key.
    audit_anchor::ActiveModel {
        id: Set(uuid::Uuid::now_v7()),
        created_at: Set(0),
        heads: Set("[]".into()),
        key_id: Set(crate::helpers::audit_keys().current_key_id().to_owned()),
        mac: Set("deadbeef".into()),
    }
    .insert(app.db.connection())
    .await
    .unwrap();
    let (ok, _, stderr) = audit_cli(&url, &["verify"]);
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("audit anchor"), "{stderr}");
    assert!(stderr.contains("signature does not verify"), "{stderr}");
}

/// Keyed records written before partitioning (one chain, MACs over the old content)
/// become chain 0 and still verify; that old form is accepted nowhere else.
async fn records_sealed_before_partitioning_verify_as_chain_0(backend: Backend) {
    let app = spawn_app_with(backend, FOUR_CHAINS).await;
    let url = app.var("DATABASE_URL").to_owned();
    let keys = crate::helpers::audit_keys();
    insert_earlier_chain(&app, Some(keys.current_key_id()), |row| {
        keys.seal(pre_partition_content(row).as_bytes())
    })
    .await;
    after_records_written_before_the_upgrade(&app, 3).await;
    users_signed_in(&app, 4).await;
    assert_verify_passes(&url, &[]);

    // Moved out of chain 0, an old-form record is refused — and chain 0 misses it.
    app.execute("UPDATE audit_log SET chain = 50 WHERE seq = 1")
        .await;
    let (ok, _, stderr) = audit_cli(&url, &["verify"]);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("audit chain 0 broken at record 1:"),
        "{stderr}"
    );
    app.execute("UPDATE audit_log SET chain = 0 WHERE seq = 1")
        .await;
    assert_verify_passes(&url, &[]);
}

on_both_backends!(
    each_chain_is_verified_on_its_own,
    truncating_one_chain_after_an_anchor_is_detected,
    a_forged_or_altered_anchor_is_refused,
    records_sealed_before_partitioning_verify_as_chain_0,
    concurrent_logins_keep_every_chain_intact
);

/// Two instances signing users in and refusing attempts at once, over several chains:
/// every chain stays intact and every record is in one.
async fn concurrent_logins_keep_every_chain_intact(backend: Backend) {
    let first = spawn_app_with(backend, FOUR_CHAINS).await;
    for i in 0..4 {
        first.verified_user(&format!("user{i}@example.com")).await;
    }
    let before = audit_rows(&first).await.len();
    let second = first.sibling(&[]).await;
    let mut tasks = Vec::new();
    for n in 0..24 {
        let browser = if n % 2 == 0 {
            first.browser()
        } else {
            second.browser()
        };
        let (email, password) = if n % 3 == 0 {
            (
                format!("user{}@example.com", n % 4),
                crate::helpers::PASSWORD,
            )
        } else {
            (format!("nobody{n}@example.com"), "wrong password here")
        };
        tasks.push(tokio::spawn(async move {
            browser
                .post("/auth/login", json!({"email": email, "password": password}))
                .await
                .status
        }));
    }
    for task in tasks {
        let status = task.await.unwrap();
        assert!(status == 200 || status == 401, "{status}");
    }
    let rows = audit_rows(&first).await;
    assert!(rows.len() >= before + 24, "every attempt is audited");
    let check = logicredit_auth::storage::db::audit::verify_chain(
        first.db.connection(),
        &crate::helpers::audit_keys(),
    )
    .await
    .unwrap();
    assert_eq!(
        check,
        logicredit_auth::storage::db::audit::ChainCheck::Intact {
            records: rows.len() as u64
        }
    );
    let chains: std::collections::BTreeSet<i32> = rows.iter().map(|r| r.chain).collect();
    assert!(chains.len() > 1, "{chains:?}");
}

/// `AUDIT_CHAINS` outside 1–1024 is a configuration error naming it, not a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_count_out_of_range_is_a_configuration_error() {
    for chains in ["0", "1025", "many"] {
        let error =
            crate::helpers::startup_error(Backend::Embedded, &[("AUDIT_CHAINS", chains)]).await;
        assert!(error.contains("AUDIT_CHAINS"), "{chains}: {error}");
    }
}
