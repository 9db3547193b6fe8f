//! docs/API.md §8 "Payments are dynamically linked inside OAuth too": a `payment_initiation`
//! authorization request (RFC 9396) is granted only after the user confirmed a §9
//! transaction for exactly its details in the same session; the confirmed `tx_hash` comes
//! back with the grant (token response, access token, introspection).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::authenticators::{Passkey, passkey_login};
use crate::helpers::{Backend, Browser};
use crate::oauth::{
    Auth, FIRST_PARTY, Provider, REDIRECT, TPP, TPP_SECRET, WEB, assert_oauth_error, form, pkce,
    provider, query_of,
};
use crate::on_both_backends;
use crate::transactions::{confirm_with, with_passkey};

fn payment(amount: &str, iban: &str) -> Value {
    json!({
        "type": "payment_initiation",
        "instructedAmount": {"currency": "EUR", "amount": amount},
        "creditorName": "Merchant A",
        "creditorAccount": {"iban": iban},
        "remittanceInformationUnstructured": "Invoice 2026-117",
    })
}

const IBAN: &str = "DE89370400440532013000";

/// base64url(SHA-256(RFC 8785 JSON)), the §9 `tx_hash`, computed here independently.
fn tx_hash(details: &Value) -> String {
    let canonical = json_canon::to_string(details).unwrap();
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// Starts a payment request for `client_id` in `browser`: the request id and the verifier.
async fn payment_request(
    browser: &Browser,
    client_id: &str,
    details: &Value,
) -> (String, String, String) {
    let (verifier, challenge) = pkce();
    let raw = details.to_string();
    let pairs = [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("scope", "openid"),
        ("state", "pay-1"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("authorization_details", raw.as_str()),
    ];
    let start = browser
        .get(&format!("/oauth/authorize?{}", form(&pairs)))
        .await;
    assert_eq!(start.status, 303, "{start:?}");
    let location = start.header("location").unwrap().to_owned();
    let request = query_of(&location)
        .get("request")
        .cloned()
        .unwrap_or_default();
    (request, verifier, location)
}

/// A signed-in user with a passkey who stepped up with it: two factors, so only the
/// payment confirmation is missing.
async fn strongly_authenticated(p: &Provider, email: &str) -> (Browser, Passkey) {
    let (browser, key) = with_passkey(&p.app, email).await;
    let stepped = passkey_login(&browser, json!({}), &key).await;
    assert_eq!(stepped.body["code"], "mfa_verified", "{stepped:?}");
    (browser, key)
}

async fn exchange(p: &Provider, code: &str, verifier: &str) -> Value {
    let tokens = p
        .post_form(
            "/oauth/token",
            &Auth::Basic(TPP, TPP_SECRET),
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", verifier),
            ],
        )
        .await;
    assert_eq!(tokens.status, 200, "{tokens:?}");
    tokens.body
}

async fn a_payment_is_granted_only_after_its_own_transaction_is_confirmed(backend: Backend) {
    let p = provider(backend).await;
    let (alice, key) = strongly_authenticated(&p, "alice@example.com").await;
    let details = json!([payment("123.45", IBAN)]);
    let (request, verifier, _) = payment_request(&alice, TPP, &details).await;

    // The consent step sees the payment and the transaction made for exactly it.
    let info = alice.get(&format!("/auth/oauth/requests/{request}")).await;
    assert_eq!(info.status, 200, "{info:?}");
    assert_eq!(info.body["authorization_details"], details);
    assert_eq!(info.body["consent_required"], true);
    assert_eq!(info.body["step_up_required"], false);
    let transaction_id = info.body["transaction_id"].as_str().unwrap().to_owned();
    let tx = alice
        .get(&format!("/auth/transactions/{transaction_id}"))
        .await;
    assert_eq!(tx.status, 200, "{tx:?}");
    assert_eq!(
        tx.body["details"], details[0],
        "one payment: §9 signs the object"
    );
    assert_eq!(tx.body["tx_hash"], tx_hash(&details[0]));

    // A fresh step-up signs nothing: accept is refused, naming the transaction.
    let refused = alice
        .post(&format!("/auth/oauth/requests/{request}/accept"), json!({}))
        .await;
    assert_eq!(refused.status, 403, "{refused:?}");
    assert_eq!(refused.body["code"], "transaction_confirmation_required");
    assert_eq!(refused.body["transaction_id"], transaction_id.as_str());

    // Another transaction for the same details, confirmed, is not this request's.
    let other = alice.post("/auth/transactions", details[0].clone()).await;
    assert_eq!(other.status, 201, "{other:?}");
    let confirmed_other = confirm_with(&alice, &key, &other.body["transaction_id"]).await;
    assert_eq!(confirmed_other.status, 200, "{confirmed_other:?}");
    let still = alice
        .post(&format!("/auth/oauth/requests/{request}/accept"), json!({}))
        .await;
    assert_eq!(
        still.body["code"], "transaction_confirmation_required",
        "{still:?}"
    );

    // The linked transaction, confirmed: the passkey signed exactly these details.
    let confirmed = confirm_with(&alice, &key, &json!(transaction_id)).await;
    assert_eq!(confirmed.status, 200, "{confirmed:?}");
    let accepted = alice
        .post(&format!("/auth/oauth/requests/{request}/accept"), json!({}))
        .await;
    assert_eq!(accepted.status, 200, "{accepted:?}");
    let callback = query_of(accepted.body["redirect_to"].as_str().unwrap());
    assert_eq!(callback["state"], "pay-1");

    let tokens = exchange(&p, &callback["code"], &verifier).await;
    assert_eq!(tokens["authorization_details"], details, "RFC 9396 §7");
    let access = p
        .verify(
            tokens["access_token"].as_str().unwrap(),
            "at+jwt",
            &p.issuer(),
        )
        .await;
    assert_eq!(access["authorization_details"], details, "RFC 9396 §9.1");
    let introspection = p.introspect(tokens["access_token"].as_str().unwrap()).await;
    // The introspecting client (web) is not the token's: it learns nothing.
    assert_eq!(introspection, json!({"active": false}));
    let own = p
        .post_form(
            "/oauth/introspect",
            &Auth::Basic(TPP, TPP_SECRET),
            &[("token", tokens["access_token"].as_str().unwrap())],
        )
        .await;
    assert_eq!(own.body["active"], true, "{own:?}");
    assert_eq!(own.body["tx_hash"], tx_hash(&details[0]));
    assert_eq!(own.body["authorization_details"], details);
    let events = p.app.audit_events().await;
    assert!(
        events.contains(&"transaction.confirmed".to_owned()),
        "{events:?}"
    );
    assert!(
        events.contains(&"oauth.authorization_granted".to_owned()),
        "{events:?}"
    );
    // The grant's audit record names the confirmed payment.
    let granted = p
        .app
        .query("SELECT metadata FROM audit_log WHERE event = 'oauth.authorization_granted'")
        .await;
    let recorded = granted[0].as_str().unwrap_or_default();
    assert!(recorded.contains(&tx_hash(&details[0])), "{recorded}");
}

async fn invalid_payment_details_go_back_as_invalid_authorization_details(backend: Backend) {
    let p = provider(backend).await;
    let browser = p.app.browser();
    for (details, what) in [
        (
            json!([payment("123.45", "DE89370400440532013001")]),
            "IBAN checksum",
        ),
        (
            json!([payment("1.234", IBAN)]),
            "more decimals than EUR has",
        ),
        (json!([payment("0", IBAN)]), "zero amount"),
        (
            json!([payment("10.00", IBAN), {"type": "account_information"}]),
            "mixed types",
        ),
        (
            json!([{"type": "account_information"}]),
            "a type the client did not register",
        ),
        (
            json!([{"type": "payment_initiation", "instructedAmount": {"currency": "EUR", "amount": "1.00"},
                 "creditorName": "M", "creditorAccount": {"iban": IBAN}, "extra": "unsigned"}]),
            "an unknown field that the confirmation would not cover",
        ),
    ] {
        let (request, _, location) = payment_request(&browser, TPP, &details).await;
        assert!(
            request.is_empty(),
            "{what}: no interaction for an invalid request"
        );
        let callback = query_of(&location);
        assert_eq!(
            callback.get("error").map(String::as_str),
            Some("invalid_authorization_details"),
            "{what}: {location}"
        );
        assert_eq!(callback["state"], "pay-1");
    }
    // A client without payment_initiation in authorization_details_types.
    let (_, _, location) = payment_request(&browser, WEB, &json!([payment("1.00", IBAN)])).await;
    assert_eq!(
        query_of(&location)["error"],
        "invalid_authorization_details"
    );
}

async fn a_payment_needs_sca_and_a_first_party_client_still_asks(backend: Backend) {
    let p = provider(backend).await;
    // Password only, no second factor: the request ends without a code.
    let bob = p.app.logged_in("bob@example.com").await;
    let (request, _, _) = payment_request(&bob, TPP, &json!([payment("5.00", IBAN)])).await;
    let info = bob.get(&format!("/auth/oauth/requests/{request}")).await;
    let done = info.body["redirect_to"].as_str().expect("decided at once");
    assert_eq!(query_of(done)["error"], "unmet_authentication_requirements");
    assert!(info.body.get("transaction_id").is_none(), "{info:?}");

    // A first-party client skips consent, but never the payment confirmation.
    let (carol, _) = strongly_authenticated(&p, "carol@example.com").await;
    let (request, _, location) =
        payment_request(&carol, FIRST_PARTY, &json!([payment("7.00", IBAN)])).await;
    assert!(
        !request.is_empty(),
        "an interaction, not a code: {location}"
    );
    let info = carol.get(&format!("/auth/oauth/requests/{request}")).await;
    assert_eq!(info.body["consent_required"], true, "{info:?}");
    assert!(info.body["transaction_id"].is_string(), "{info:?}");

    // prompt=none cannot pay either.
    let (_, challenge) = pkce();
    let raw = json!([payment("7.00", IBAN)]).to_string();
    let pairs = [
        ("response_type", "code"),
        ("client_id", FIRST_PARTY),
        ("redirect_uri", REDIRECT),
        ("prompt", "none"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("authorization_details", raw.as_str()),
    ];
    let start = carol
        .get(&format!("/oauth/authorize?{}", form(&pairs)))
        .await;
    let location = start.header("location").unwrap().to_owned();
    if let Some(request) = query_of(&location).get("request") {
        let info = carol.get(&format!("/auth/oauth/requests/{request}")).await;
        let done = info.body["redirect_to"]
            .as_str()
            .expect("prompt=none is decided at once");
        assert_eq!(query_of(done)["error"], "consent_required");
    } else {
        assert!(query_of(&location).contains_key("error"), "{location}");
    }
}

async fn discovery_names_the_payment_type(backend: Backend) {
    let p = provider(backend).await;
    let doc = p
        .app
        .browser()
        .get("/.well-known/openid-configuration")
        .await;
    assert_eq!(
        doc.body["authorization_details_types_supported"],
        json!(["payment_initiation"])
    );
    let refused = p
        .post_form(
            "/oauth/token",
            &Auth::Basic(TPP, TPP_SECRET),
            &[
                ("grant_type", "authorization_code"),
                ("code", "nope"),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &"v".repeat(43)),
            ],
        )
        .await;
    assert_oauth_error(&refused, 400, "invalid_grant");
}

on_both_backends!(
    a_payment_is_granted_only_after_its_own_transaction_is_confirmed,
    invalid_payment_details_go_back_as_invalid_authorization_details,
    a_payment_needs_sca_and_a_first_party_client_still_asks,
    discovery_names_the_payment_type,
);
