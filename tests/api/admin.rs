//! docs/API.md §3 roles and the admin API: every role boundary, fresh MFA, the last-admin rule.

use serde_json::{Value, json};

use crate::helpers::{Backend, Browser, PASSWORD, spawn_app};
use crate::mfa::enroll_verified_totp;
use crate::on_both_backends;

async fn id_of(browser: &Browser) -> String {
    browser.get("/auth/me").await.body["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn each_admin_route_admits_exactly_its_roles(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.logged_in_as("user@example.com", "user").await;
    let staff = app.logged_in_as("staff@example.com", "staff").await;
    let admin = app.logged_in_as("admin@example.com", "admin").await;
    let target = id_of(&user).await;
    let patch = |browser: &Browser| {
        let browser = browser.clone();
        let path = format!("/auth/admin/users/{target}");
        async move {
            browser
                .send(
                    reqwest::Method::PATCH,
                    &path,
                    Some(json!({"role": "user"})),
                    crate::helpers::Csrf::Auto,
                )
                .await
        }
    };
    let unlock = format!("/auth/admin/users/{target}/unlock");

    app.browser()
        .get("/auth/admin/users")
        .await
        .assert_error(401, "not_authenticated");
    for browser in [&user, &staff] {
        browser
            .get("/auth/admin/ping")
            .await
            .assert_error(403, "forbidden");
        patch(browser).await.assert_error(403, "forbidden");
    }
    assert_eq!(
        admin.get("/auth/admin/ping").await.body,
        json!({"code": "pong"})
    );
    user.get("/auth/admin/users")
        .await
        .assert_error(403, "forbidden");
    user.get("/auth/admin/audit")
        .await
        .assert_error(403, "forbidden");
    user.post(&unlock, json!({}))
        .await
        .assert_error(403, "forbidden");
    for browser in [&staff, &admin] {
        assert_eq!(browser.get("/auth/admin/users").await.status, 200);
        assert_eq!(browser.get("/auth/admin/audit").await.status, 200);
    }

    // Changes need fresh MFA, and a second factor to begin with.
    patch(&admin)
        .await
        .assert_error(403, "mfa_enrollment_required");
    staff
        .post(&unlock, json!({}))
        .await
        .assert_error(403, "mfa_enrollment_required");
    enroll_verified_totp(&admin).await;
    enroll_verified_totp(&staff).await;
    assert_eq!(patch(&admin).await.body["code"], "user_updated");
    assert_eq!(
        staff.post(&unlock, json!({})).await.body,
        json!({"code": "user_unlocked"})
    );
    let actors = app
        .query("SELECT COUNT(*) FROM audit_log WHERE event IN ('admin.user_updated', 'admin.user_unlocked') AND actor_id IS NOT NULL AND user_id IS NOT NULL AND actor_id <> user_id")
        .await;
    assert_eq!(actors, vec![json!(2)]);
}

async fn role_and_status_changes_apply_to_existing_sessions(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.logged_in_as("root@example.com", "admin").await;
    enroll_verified_totp(&admin).await;
    let alice = app.logged_in_as("alice@example.com", "user").await;
    let alice_id = id_of(&alice).await;
    let path = format!("/auth/admin/users/{alice_id}");
    let send = |body: Value| {
        let admin = admin.clone();
        let path = path.clone();
        async move {
            admin
                .send(
                    reqwest::Method::PATCH,
                    &path,
                    Some(body),
                    crate::helpers::Csrf::Auto,
                )
                .await
        }
    };

    alice
        .get("/auth/admin/users")
        .await
        .assert_error(403, "forbidden");
    let promoted = send(json!({"role": "staff"})).await;
    assert_eq!(promoted.body["user"]["role"], "staff");
    // Alice's existing session has the new role at its next request.
    assert_eq!(alice.get("/auth/admin/users").await.status, 200);

    send(json!({"role": "root"}))
        .await
        .assert_error(422, "validation_error");
    send(json!({})).await.assert_error(422, "validation_error");
    send(json!({"email": "x@example.com"}))
        .await
        .assert_error(422, "validation_error");
    admin
        .send(
            reqwest::Method::PATCH,
            &format!("/auth/admin/users/{}", uuid::Uuid::new_v4()),
            Some(json!({"disabled": true})),
            crate::helpers::Csrf::Auto,
        )
        .await
        .assert_error(404, "not_found");

    let disabled = send(json!({"disabled": true})).await;
    assert_eq!(disabled.body["user"]["disabled"], true);
    alice
        .get("/auth/me")
        .await
        .assert_error(401, "not_authenticated");
    app.browser()
        .post(
            "/auth/login",
            json!({"email": "alice@example.com", "password": PASSWORD}),
        )
        .await
        .assert_error(403, "account_disabled");
    assert_eq!(
        send(json!({"disabled": false})).await.body["user"]["disabled"],
        false
    );
    app.login("alice@example.com").await;
}

async fn the_last_active_admin_stays(backend: Backend) {
    let app = spawn_app(backend).await;
    let root = app.logged_in_as("root@example.com", "admin").await;
    enroll_verified_totp(&root).await;
    let root_id = id_of(&root).await;
    let own = format!("/auth/admin/users/{root_id}");
    for body in [json!({"role": "staff"}), json!({"disabled": true})] {
        root.send(
            reqwest::Method::PATCH,
            &own,
            Some(body),
            crate::helpers::Csrf::Auto,
        )
        .await
        .assert_error(409, "last_admin");
    }
    // With a second admin, the first may step down.
    let second = app.logged_in_as("second@example.com", "admin").await;
    let demoted = root
        .send(
            reqwest::Method::PATCH,
            &own,
            Some(json!({"role": "staff"})),
            crate::helpers::Csrf::Auto,
        )
        .await;
    assert_eq!(demoted.body["user"]["role"], "staff");
    enroll_verified_totp(&second).await;
    let second_id = id_of(&second).await;
    second
        .send(
            reqwest::Method::PATCH,
            &format!("/auth/admin/users/{second_id}"),
            Some(json!({"disabled": true})),
            crate::helpers::Csrf::Auto,
        )
        .await
        .assert_error(409, "last_admin");
}

async fn staff_page_through_users_with_filters(backend: Backend) {
    let app = spawn_app(backend).await;
    let staff = app.logged_in_as("staff@example.com", "staff").await;
    for n in 0..4 {
        app.verified_user(&format!("client{n}@example.com")).await;
    }
    app.execute("UPDATE users SET disabled = true WHERE email = 'client3@example.com'")
        .await;
    let mut seen = Vec::new();
    let mut path = "/auth/admin/users?limit=2".to_owned();
    loop {
        let page = staff.get(&path).await;
        assert_eq!(page.status, 200, "{page:?}");
        for user in page.body["users"].as_array().unwrap() {
            assert!(user.get("password_hash").is_none());
            seen.push(user["email"].as_str().unwrap().to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/auth/admin/users?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    let clients = staff.get("/auth/admin/users?email=CLIENT").await;
    assert_eq!(clients.body["users"].as_array().unwrap().len(), 4);
    let disabled = staff.get("/auth/admin/users?disabled=true").await;
    assert_eq!(disabled.body["users"][0]["email"], "client3@example.com");
    // The prefix is literal text: LIKE wildcards match nothing.
    let wildcard = staff.get("/auth/admin/users?email=%25").await;
    assert_eq!(wildcard.body["users"], json!([]), "{wildcard:?}");
    let staff_only = staff.get("/auth/admin/users?role=staff").await;
    assert_eq!(staff_only.body["users"].as_array().unwrap().len(), 1);
    for (query, field) in [
        ("role=boss", "role"),
        ("disabled=maybe", "disabled"),
        ("cursor=x", "cursor"),
        ("limit=300", "limit"),
    ] {
        let response = staff.get(&format!("/auth/admin/users?{query}")).await;
        response.assert_error(422, "validation_error");
        assert!(response.body["fields"][field].is_string(), "{query}");
    }
}

async fn staff_unlock_a_locked_account(backend: Backend) {
    let app = spawn_app(backend).await;
    let staff = app.logged_in_as("staff@example.com", "staff").await;
    enroll_verified_totp(&staff).await;
    app.verified_user("locked@example.com").await;
    let browser = app.browser();
    for _ in 0..5 {
        browser
            .post(
                "/auth/login",
                json!({"email": "locked@example.com", "password": "wrong guess here"}),
            )
            .await;
    }
    let login = json!({"email": "locked@example.com", "password": PASSWORD});
    browser
        .post("/auth/login", login.clone())
        .await
        .assert_error(429, "account_locked");
    let id = app
        .query("SELECT email FROM users WHERE email = 'locked@example.com'")
        .await;
    assert_eq!(id.len(), 1);
    let users = staff.get("/auth/admin/users?email=locked").await;
    let target = users.body["users"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        staff
            .post(&format!("/auth/admin/users/{target}/unlock"), json!({}))
            .await
            .status,
        200
    );
    assert_eq!(
        browser.post("/auth/login", login).await.body["code"],
        "login_ok"
    );
    staff
        .post(
            &format!("/auth/admin/users/{}/unlock", uuid::Uuid::new_v4()),
            json!({}),
        )
        .await
        .assert_error(404, "not_found");
}

/// A stored role the service does not know (written by hand, or by a newer version) is a
/// storage error: never read as the lowest role, never a panic.
async fn an_unknown_stored_role_is_an_error_not_a_downgrade(backend: Backend) {
    let app = spawn_app(backend).await;
    let staff = app.logged_in_as("staff@example.com", "staff").await;
    app.verified_user("odd@example.com").await;
    app.execute("UPDATE users SET role = 'root' WHERE email = 'odd@example.com'")
        .await;
    staff
        .get("/auth/admin/users")
        .await
        .assert_error(500, "internal_error");
    let login = json!({"email": "odd@example.com", "password": PASSWORD});
    let refused = app.browser().post("/auth/login", login).await;
    refused.assert_error(500, "internal_error");
}

on_both_backends!(
    an_unknown_stored_role_is_an_error_not_a_downgrade,
    each_admin_route_admits_exactly_its_roles,
    role_and_status_changes_apply_to_existing_sessions,
    the_last_active_admin_stays,
    staff_page_through_users_with_filters,
    staff_unlock_a_locked_account
);
