//! Refresh tokens as stored since issue 18 (services/oauth/refresh.rs): a grant is one row
//! that carries the hash of its one live refresh token; an exchange writes that row and a
//! rotation updates it. Each scenario is what a security reviewer checks: only the live
//! token works, a rotated one coming back ends the family, a forged one can do neither,
//! and tokens issued before the upgrade still work, once.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{Backend, TestResponse};
use crate::oauth::{Auth, Provider, WEB, WEB_SECRET, assert_oauth_error, provider_with};
use crate::on_both_backends;

async fn refresh(p: &Provider, token: &str, extra: &[(&str, &str)]) -> TestResponse {
    let mut pairs = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
    pairs.extend_from_slice(extra);
    p.post_form("/oauth/token", &Auth::Basic(WEB, WEB_SECRET), &pairs)
        .await
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn refresh_token_of(response: &TestResponse) -> String {
    assert_eq!(response.status, 200, "{response:?}");
    response.body["refresh_token"].as_str().unwrap().to_owned()
}

/// A token of the form issued before migration 9: 32 random bytes, base64url.
fn old_form_token() -> String {
    URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes().repeat(2))
}

async fn count(p: &Provider, table: &str) -> Value {
    p.app.query(&format!("SELECT count(*) FROM {table}")).await[0].clone()
}

/// A provider with alice signed in and a grant of `WEB`'s: its first tokens.
async fn signed_in_grant(backend: Backend, env: &[(&str, &str)]) -> (Provider, Value) {
    let p = provider_with(backend, env).await;
    let alice = p.app.logged_in("alice@example.com").await;
    let tokens = p
        .code_tokens(&alice, &Auth::Basic(WEB, WEB_SECRET), WEB)
        .await;
    (p, tokens)
}

async fn a_grant_is_one_row_through_its_exchange_and_every_rotation(backend: Backend) {
    let (p, tokens) = signed_in_grant(backend, &[]).await;
    let mut live = tokens["refresh_token"].as_str().unwrap().to_owned();
    let stored = || p.app.query("SELECT refresh_hash FROM oauth_grants");
    assert_eq!(count(&p, "oauth_grants").await, json!(1));
    assert_eq!(
        stored().await,
        vec![json!(hash(&live))],
        "only a hash is kept"
    );
    let mut rotated = Vec::new();
    for _ in 0..3 {
        let next = refresh_token_of(&refresh(&p, &live, &[]).await);
        rotated.push(std::mem::replace(&mut live, next));
    }
    assert_eq!(count(&p, "oauth_grants").await, json!(1));
    assert_eq!(stored().await, vec![json!(hash(&live))]);
    assert_eq!(
        count(&p, "oauth_refresh_tokens").await,
        json!(0),
        "no row per token any more"
    );
    // Introspection tells the live token from a rotated one, and looking is not using:
    // the rotated one shown to it does not end the family.
    let seen = p.introspect(&live).await;
    assert_eq!(
        (seen["active"].clone(), seen["token_type"].clone()),
        (json!(true), json!("refresh_token"))
    );
    assert!(seen["exp"].is_u64() && seen["iat"].is_u64(), "{seen}");
    assert_eq!(p.introspect(&rotated[0]).await, json!({"active": false}));
    refresh_token_of(&refresh(&p, &live, &[]).await);
}

async fn a_rotated_token_coming_back_ends_the_family(backend: Backend) {
    let (p, tokens) = signed_in_grant(backend, &[]).await;
    let first = tokens["refresh_token"].as_str().unwrap().to_owned();
    let second = refresh_token_of(&refresh(&p, &first, &[]).await);
    let third = refresh_token_of(&refresh(&p, &second, &[]).await);
    // The oldest one, two rotations back, is still recognised as this grant's.
    assert_oauth_error(&refresh(&p, &first, &[]).await, 400, "invalid_grant");
    assert_oauth_error(&refresh(&p, &third, &[]).await, 400, "invalid_grant");
    assert_eq!(
        p.app
            .query("SELECT count(*) FROM oauth_grants WHERE revoked_at IS NOT NULL")
            .await,
        vec![json!(1)]
    );
    let events = p.app.audit_events().await;
    assert!(events.iter().any(|e| e == "oauth.refresh_reuse_detected"));
}

async fn two_uses_of_one_token_at_once_end_the_family(backend: Backend) {
    let (p, tokens) = signed_in_grant(backend, &[]).await;
    let token = tokens["refresh_token"].as_str().unwrap().to_owned();
    let (a, b) = tokio::join!(refresh(&p, &token, &[]), refresh(&p, &token, &[]));
    let won: Vec<&TestResponse> = [&a, &b].into_iter().filter(|r| r.status == 200).collect();
    assert!(won.len() <= 1, "one use at most: {a:?} {b:?}");
    for response in [&a, &b].into_iter().filter(|r| r.status != 200) {
        assert_oauth_error(response, 400, "invalid_grant");
    }
    // Two holders of one token: whatever the winner got dies with the family.
    for response in won {
        let next = refresh_token_of(response);
        assert_oauth_error(&refresh(&p, &next, &[]).await, 400, "invalid_grant");
    }
    assert_eq!(
        p.app
            .query("SELECT count(*) FROM oauth_grants WHERE revoked_at IS NOT NULL")
            .await,
        vec![json!(1)]
    );
}

async fn a_forged_token_naming_a_grant_can_neither_use_nor_end_it(backend: Backend) {
    let (p, tokens) = signed_in_grant(backend, &[]).await;
    let live = tokens["refresh_token"].as_str().unwrap().to_owned();
    // The grant id is no secret: every access token carries it (`gid`).
    let access = p
        .verify(
            tokens["access_token"].as_str().unwrap(),
            "at+jwt",
            &p.issuer(),
        )
        .await;
    let gid = uuid::Uuid::parse_str(access["gid"].as_str().unwrap()).unwrap();
    let forged = |tag: u8| {
        let mut bytes = gid.as_bytes().to_vec();
        bytes.extend([7u8; 32]);
        bytes.extend([tag; 16]);
        URL_SAFE_NO_PAD.encode(bytes)
    };
    let mut stranger = uuid::Uuid::now_v7().as_bytes().to_vec();
    stranger.extend([0u8; 48]);
    for token in [
        forged(0),
        forged(0xff),
        URL_SAFE_NO_PAD.encode(stranger),
        "A".repeat(86),
        "not-a-token".to_owned(),
        old_form_token(),
    ] {
        assert_oauth_error(&refresh(&p, &token, &[]).await, 400, "invalid_grant");
        let revoke = p
            .post_form(
                "/oauth/revoke",
                &Auth::Basic(WEB, WEB_SECRET),
                &[("token", &token)],
            )
            .await;
        assert_eq!(revoke.status, 200, "RFC 7009 §2.2: {revoke:?}");
        assert_eq!(p.introspect(&token).await, json!({"active": false}));
    }
    let events = p.app.audit_events().await;
    assert!(!events.iter().any(|e| e == "oauth.refresh_reuse_detected"));
    refresh_token_of(&refresh(&p, &live, &[]).await);
}

async fn a_refused_refresh_leaves_the_token_unspent(backend: Backend) {
    let (p, tokens) = signed_in_grant(backend, &[]).await;
    let live = tokens["refresh_token"].as_str().unwrap().to_owned();
    assert_oauth_error(
        &refresh(&p, &live, &[("scope", "openid admin")]).await,
        400,
        "invalid_scope",
    );
    let narrowed = refresh(&p, &live, &[("scope", "openid")]).await;
    assert_eq!(narrowed.body["scope"], "openid", "{narrowed:?}");
    refresh_token_of(&narrowed);
}

async fn a_token_issued_before_the_upgrade_works_once(backend: Backend) {
    // The grant's own (new-form) token is set aside: the upgrade never sees one.
    let (p, _) = signed_in_grant(backend, &[]).await;
    // What migration 9 leaves of a grant whose token was issued before it: the token in
    // the old table (43 characters, no grant id), its hash as the grant's live one, and
    // an older token the client had already rotated.
    let (legacy, older) = (old_form_token(), old_form_token());
    for (token, used_at) in [(&legacy, "NULL"), (&older, "created_at")] {
        p.app
            .execute(&format!(
                "INSERT INTO oauth_refresh_tokens (token_hash, grant_id, created_at, expires_at, used_at) \
                 SELECT '{}', id, created_at, refresh_expires_at, {used_at} FROM oauth_grants",
                hash(token)
            ))
            .await;
    }
    p.app
        .execute(&format!(
            "UPDATE oauth_grants SET refresh_hash = '{}'",
            hash(&legacy)
        ))
        .await;
    let next = refresh_token_of(&refresh(&p, &legacy, &[]).await);
    assert_eq!(next.len(), 86, "the next one is of the new form");
    assert_eq!(p.introspect(&legacy).await, json!({"active": false}));
    let next = refresh_token_of(&refresh(&p, &next, &[]).await);
    // The token rotated before the upgrade is still known as the grant's: reuse.
    assert_oauth_error(&refresh(&p, &older, &[]).await, 400, "invalid_grant");
    assert_oauth_error(&refresh(&p, &next, &[]).await, 400, "invalid_grant");
}

async fn refreshes_keep_the_session_alive_with_one_write_per_touch_interval(backend: Backend) {
    // A 6 s idle timeout caps the touch interval at 2 s (as for session checks).
    let (p, tokens) = signed_in_grant(
        backend,
        &[
            ("SESSION_IDLE_TIMEOUT_SECONDS", "6"),
            ("SESSION_TOUCH_INTERVAL_SECONDS", "300"),
        ],
    )
    .await;
    let last_seen = || p.app.query("SELECT last_seen_at FROM sessions");
    let before = last_seen().await;
    let mut live = tokens["refresh_token"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        live = refresh_token_of(&refresh(&p, &live, &[]).await);
    }
    assert_eq!(
        last_seen().await,
        before,
        "no session write within the interval"
    );
    // Without browser activity, refreshes alone keep the session (and the grant) alive.
    for _ in 0..4 {
        tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
        live = refresh_token_of(&refresh(&p, &live, &[]).await);
    }
    assert!(last_seen().await[0].as_i64() > before[0].as_i64());
}

on_both_backends!(
    a_grant_is_one_row_through_its_exchange_and_every_rotation,
    a_rotated_token_coming_back_ends_the_family,
    two_uses_of_one_token_at_once_end_the_family,
    a_forged_token_naming_a_grant_can_neither_use_nor_end_it,
    a_refused_refresh_leaves_the_token_unspent,
    a_token_issued_before_the_upgrade_works_once,
    refreshes_keep_the_session_alive_with_one_write_per_touch_interval,
);
