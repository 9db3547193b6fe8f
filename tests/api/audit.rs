//! API.md §4 audit trail: hash chain, CLI verify/export, and the staff query route.

use std::process::Command;

use serde_json::{Value, json};

use crate::helpers::{Backend, ENCRYPTION_KEY, spawn_app};
use crate::on_both_backends;

fn audit_cli(database_url: &str, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_logicredit-auth"))
        .env_clear()
        .env("DATABASE_URL", database_url)
        .env("TOTP_ENCRYPTION_KEY", ENCRYPTION_KEY)
        .env("RUST_LOG", "error")
        .arg("audit")
        .args(args)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

on_both_backends! {
    async fn the_chain_verifies_until_a_record_is_altered(backend: Backend) {
        let app = spawn_app(backend).await;
        app.logged_in("alice@example.com").await;
        let url = app.var("DATABASE_URL").to_owned();
        let (ok, stdout, stderr) = audit_cli(&url, &["verify"]);
        assert!(ok, "{stdout}{stderr}");
        assert!(stdout.contains("intact"), "{stdout}");

        let (ok, stdout, _) = audit_cli(&url, &["export", "--since", "2000-01-01T00:00:00Z"]);
        assert!(ok);
        let lines: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let total = app.query("SELECT COUNT(*) FROM audit_log").await[0].as_i64().unwrap();
        assert_eq!(lines.len() as i64, total);
        assert_eq!(lines[0]["event"], "user.registered");
        for field in ["id", "event", "occurred_at", "user_id", "actor_id", "ip", "user_agent", "request_id", "metadata"] {
            assert!(lines[0].get(field).is_some(), "{field}");
        }
        let (_, later, _) = audit_cli(&url, &["export", "--since", "2999-01-01T00:00:00Z"]);
        assert!(later.is_empty());

        // Someone with database access rewrites history: the chain names the record.
        app.execute("UPDATE audit_log SET ip = '6.6.6.6' WHERE seq = 2").await;
        let (ok, stdout, stderr) = audit_cli(&url, &["verify"]);
        assert!(!ok, "{stdout}");
        assert!(stderr.contains("record 2"), "{stderr}");

        // Deleting a record instead is caught too.
        app.execute("UPDATE audit_log SET ip = '127.0.0.1' WHERE seq = 2").await;
        app.execute("DELETE FROM audit_log WHERE seq = 3").await;
        let (ok, _, stderr) = audit_cli(&url, &["verify"]);
        assert!(!ok);
        assert!(stderr.contains("record 2") || stderr.contains("record 3"), "{stderr}");
    }

    async fn staff_query_the_trail_with_filters_and_cursors(backend: Backend) {
        let app = spawn_app(backend).await;
        app.verified_user("staff@example.com").await;
        app.verified_user("user@example.com").await;
        app.execute("UPDATE users SET role = 'staff' WHERE email = 'staff@example.com'").await;
        let staff = app.login("staff@example.com").await;
        let user = app.login("user@example.com").await;

        user.get("/auth/admin/audit").await.assert_error(403, "forbidden");
        app.browser().get("/auth/admin/audit").await.assert_error(401, "not_authenticated");
        user.get("/auth/admin/ping").await.assert_error(403, "forbidden");
        staff.get("/auth/admin/ping").await.assert_error(403, "forbidden");

        let all = staff.get("/auth/admin/audit").await;
        assert_eq!(all.status, 200, "{all:?}");
        let events = all.body["events"].as_array().unwrap();
        assert!(events.len() >= 8);
        assert_eq!(all.body["next_cursor"], Value::Null);
        // Newest first.
        assert!(events[0]["occurred_at"].as_str() >= events[events.len() - 1]["occurred_at"].as_str());

        let user_id = user.get("/auth/me").await.body["user"]["id"].as_str().unwrap().to_owned();
        let mine = staff.get(&format!("/auth/admin/audit?user_id={user_id}&event=login.success")).await;
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

        let future = staff.get("/auth/admin/audit?since=2999-01-01T00:00:00Z").await;
        assert_eq!(future.body["events"], json!([]));
        let past = staff.get("/auth/admin/audit?until=2000-01-01T00:00:00Z").await;
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
            assert!(response.body["fields"][field].is_string(), "{query}: {response:?}");
        }
    }
}

/// Two instances writing at once still make one unbroken chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_instances_keep_one_chain() {
    let first = spawn_app(Backend::PostgresRedis).await;
    let second = first.sibling(&[]).await;
    let mut tasks = Vec::new();
    for n in 0..12 {
        let browser = if n % 2 == 0 {
            first.browser()
        } else {
            second.browser()
        };
        tasks.push(tokio::spawn(async move {
            browser
                .post("/auth/login", json!({"email": format!("nobody{n}@example.com"), "password": "wrong password here"}))
                .await
        }));
    }
    for task in tasks {
        task.await.unwrap().assert_error(401, "invalid_credentials");
    }
    let check = logicredit_auth::storage::db::audit::verify_chain(first.db.connection())
        .await
        .unwrap();
    assert_eq!(
        check,
        logicredit_auth::storage::db::audit::ChainCheck::Intact { records: 12 }
    );
}
