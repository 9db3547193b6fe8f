//! docs/API.md §9: transaction confirmation with PSD2 dynamic linking, as a payment backend
//! and a security reviewer see it. A user approves exactly these payment details with a
//! passkey (whose signature covers them) or a TOTP code; the signed confirmation is
//! checked by the example verifier (examples/confirmation_verifier.rs), which a backend
//! runs before executing the order — and which refuses any other amount, currency or payee.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::authenticators::{AuthenticatorApp, Passkey, passkey_login};
use crate::helpers::{Backend, Browser, Csrf, TestApp, spawn_app, spawn_app_with};
use crate::on_both_backends;

#[path = "../../examples/confirmation_verifier.rs"]
#[allow(dead_code)]
mod confirmation_verifier;

use confirmation_verifier::{ConfirmationVerifier, Refusal};

const ISSUER: &str = "http://localhost:8000";
const AUDIENCE: &str = "http://localhost:8000/payments";
const IBAN: &str = "DE89370400440532013000";
const OTHER_IBAN: &str = "GB82WEST12345698765432";

pub(crate) fn payment(amount: &str) -> Value {
    json!({
        "type": "payment_initiation",
        "instructedAmount": {"currency": "EUR", "amount": amount},
        "creditorName": "Merchant GmbH",
        "creditorAccount": {"iban": IBAN},
        "remittanceInformationUnstructured": "Invoice 42",
    })
}

/// A logged-in user with a registered passkey.
pub(crate) async fn with_passkey(app: &TestApp, email: &str) -> (Browser, Passkey) {
    let browser = app.logged_in(email).await;
    let key = Passkey::new();
    let start = browser
        .post("/auth/webauthn/register/start", json!({}))
        .await;
    let credential = key.register(&start.body["options"]).await;
    let finish = browser
        .post(
            "/auth/webauthn/register/finish",
            json!({"ceremony_id": start.body["ceremony_id"], "credential": credential}),
        )
        .await;
    assert_eq!(finish.status, 201, "{finish:?}");
    (browser, key)
}

/// A logged-in user with TOTP enabled (the current step is used: confirm with `code(1)`).
async fn with_totp(app: &TestApp, email: &str) -> (Browser, AuthenticatorApp) {
    let browser = app.logged_in(email).await;
    let (phone, _) = crate::mfa::enroll_totp(&browser).await;
    (browser, phone)
}

pub(crate) async fn create(browser: &Browser, body: Value) -> Value {
    let created = browser.post("/auth/transactions", body).await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.body["code"], "transaction_created");
    created.body
}

pub(crate) fn path(id: &Value, rest: &str) -> String {
    format!("/auth/transactions/{}{rest}", id.as_str().unwrap())
}

/// Runs the passkey ceremony of a transaction; the finish answer.
pub(crate) async fn confirm_with(
    browser: &Browser,
    key: &Passkey,
    id: &Value,
) -> crate::helpers::TestResponse {
    let start = browser.post(&path(id, "/webauthn/start"), json!({})).await;
    assert_eq!(start.status, 200, "{start:?}");
    let assertion = key.sign_in(&start.body["options"]).await;
    browser
        .post(
            &path(id, "/webauthn/finish"),
            json!({"ceremony_id": start.body["ceremony_id"], "credential": assertion}),
        )
        .await
}

async fn verifier(app: &TestApp, audience: &str) -> ConfirmationVerifier {
    ConfirmationVerifier::fetch(ISSUER, audience, &app.address)
        .await
        .unwrap()
}

/// The confirmation's header and claims, unverified (what the verifier then checks).
fn parts(token: &str) -> (Value, Value) {
    let mut segments = token.split('.');
    let mut decode = || -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segments.next().unwrap()).unwrap()).unwrap()
    };
    (decode(), decode())
}

fn b64_sha256(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(bytes))
}

async fn failures(app: &TestApp) -> Vec<String> {
    app.query("SELECT metadata FROM audit_log WHERE event = 'transaction.failed' ORDER BY seq")
        .await
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

async fn a_passkey_confirms_exactly_the_details_it_signed(backend: Backend) {
    let app = spawn_app(backend).await;
    let (alice, key) = with_passkey(&app, "alice@example.com").await;

    // Spaces in the IBAN and "10.5" are normalized: the details that are signed.
    let mut body = payment("10.5");
    body["creditorAccount"]["iban"] = json!("DE89 3704 0044 0532 0130 00");
    let created = create(&alice, body).await;
    let details = &created["details"];
    assert_eq!(details["instructedAmount"]["amount"], "10.50");
    assert_eq!(details["creditorAccount"]["iban"], IBAN);
    assert_eq!(created["methods"], json!(["webauthn"]));
    assert_eq!(created["status"], "pending");
    // tx_hash = base64url(SHA-256(RFC 8785 canonical JSON of details)), independently.
    let canonical = json_canon::to_string(details).unwrap();
    assert_eq!(created["tx_hash"], json!(b64_sha256(canonical.as_bytes())));
    let id = &created["transaction_id"];

    // The confirmation page reads what is being approved.
    let shown = alice.get(&path(id, "")).await;
    assert_eq!(shown.status, 200, "{shown:?}");
    assert_eq!(shown.body["details"], *details);
    assert_eq!(shown.body["summary"]["totals"], json!({"EUR": "10.50"}));
    assert_eq!(shown.body["summary"]["payees"][0]["name"], "Merchant GmbH");

    let start = alice.post(&path(id, "/webauthn/start"), json!({})).await;
    assert_eq!(start.body["code"], "webauthn_authentication_options");
    let public_key = &start.body["options"]["publicKey"];
    assert_eq!(public_key["userVerification"], "required");
    assert_eq!(public_key["allowCredentials"].as_array().unwrap().len(), 1);
    // The challenge is a fresh 32-byte hash, not the transaction hash itself.
    let challenge = public_key["challenge"].as_str().unwrap();
    assert_eq!(URL_SAFE_NO_PAD.decode(challenge).unwrap().len(), 32);
    assert_ne!(json!(challenge), created["tx_hash"]);
    let assertion = key.sign_in(&start.body["options"]).await;
    let done = alice
        .post(
            &path(id, "/webauthn/finish"),
            json!({"ceremony_id": start.body["ceremony_id"], "credential": assertion}),
        )
        .await;
    assert_eq!(done.status, 200, "{done:?}");
    assert_eq!(done.body["code"], "transaction_confirmed");
    let token = done.body["confirmation"].as_str().unwrap();

    let (header, claims) = parts(token);
    assert_eq!(header["typ"], "txn-confirmation+jwt");
    assert_eq!(header["alg"], "ES256");
    assert!(header["kid"].is_string());
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], AUDIENCE);
    assert_eq!(claims["txn"], *id);
    assert_eq!(claims["tx_hash"], created["tx_hash"]);
    assert_eq!(claims["details"], *details);
    assert_eq!(claims["linking"], "webauthn");
    assert_eq!(claims["amr"], json!(["hwk", "user"]));
    assert_eq!(
        claims["sub"],
        alice.get("/auth/me").await.body["user"]["id"]
    );
    let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert!(lifetime > 0 && lifetime <= 300, "{lifetime}");

    // The payment backend: the exact order passes (in the spelling it holds), once.
    let backend_verifier = verifier(&app, AUDIENCE).await;
    let mut order = payment("10.50");
    order["creditorAccount"]["iban"] = json!(IBAN);
    let accepted = backend_verifier.verify(token, &order).unwrap();
    assert_eq!(accepted.linking.as_str(), "webauthn");
    assert_eq!(
        backend_verifier.verify(token, &order).unwrap_err(),
        Refusal::Replayed
    );
    // Any other amount, payee or currency is another payment.
    let fresh = verifier(&app, AUDIENCE).await;
    let mut cent_more = order.clone();
    cent_more["instructedAmount"]["amount"] = json!("10.51");
    assert_eq!(
        fresh.verify(token, &cent_more).unwrap_err(),
        Refusal::OtherDetails
    );
    let mut other_payee = order.clone();
    other_payee["creditorAccount"]["iban"] = json!(OTHER_IBAN);
    assert_eq!(
        fresh.verify(token, &other_payee).unwrap_err(),
        Refusal::OtherDetails
    );
    let mut other_currency = order.clone();
    other_currency["instructedAmount"]["currency"] = json!("USD");
    assert_eq!(
        fresh.verify(token, &other_currency).unwrap_err(),
        Refusal::OtherDetails
    );
    let mut other_name = order.clone();
    other_name["creditorName"] = json!("Mallory Ltd");
    assert_eq!(
        fresh.verify(token, &other_name).unwrap_err(),
        Refusal::OtherDetails
    );
    // A backend that is not the audience refuses it; a tampered token fails its signature.
    let elsewhere = verifier(&app, "https://other-backend.example").await;
    assert!(matches!(
        elsewhere.verify(token, &order).unwrap_err(),
        Refusal::Invalid(_)
    ));
    // Another token type signed by the same keys is not a confirmation; a changed claim
    // or signature does not verify.
    let mut other_type = header.clone();
    other_type["typ"] = json!("at+jwt");
    let segments: Vec<&str> = token.split('.').collect();
    let relabelled = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(other_type.to_string()),
        segments[1],
        segments[2]
    );
    assert_eq!(
        fresh.verify(&relabelled, &order).unwrap_err(),
        Refusal::NotAConfirmation
    );
    let mut richer = claims.clone();
    richer["details"]["instructedAmount"]["amount"] = json!("10.51");
    let altered = format!(
        "{}.{}.{}",
        segments[0],
        URL_SAFE_NO_PAD.encode(richer.to_string()),
        segments[2]
    );
    assert!(matches!(
        fresh.verify(&altered, &cent_more).unwrap_err(),
        Refusal::Invalid(_)
    ));
    let mut forged: Vec<&str> = token.split('.').collect();
    forged[2] = "AAAA";
    assert!(matches!(
        fresh.verify(&forged.join("."), &order).unwrap_err(),
        Refusal::Invalid(_)
    ));

    // Confirmed once: a second finish or start is refused, and GET says so.
    assert_eq!(alice.get(&path(id, "")).await.body["status"], "confirmed");
    alice
        .post(&path(id, "/webauthn/start"), json!({}))
        .await
        .assert_error(400, "invalid_transaction");
    let events = app.audit_events().await;
    for event in [
        "transaction.created",
        "transaction.confirmed",
        "transaction.failed",
    ] {
        assert!(events.iter().any(|e| e == event), "{event}: {events:?}");
    }
    assert!(failures(&app).await[0].contains("already_confirmed"));
}

async fn a_totp_code_confirms_with_server_linking(backend: Backend) {
    let app = spawn_app(backend).await;
    let (bob, phone) = with_totp(&app, "bob@example.com").await;
    let created = create(&bob, payment("99.99")).await;
    assert_eq!(created["methods"], json!(["totp"]));
    let id = &created["transaction_id"];
    // No passkey, no passkey ceremony.
    bob.post(&path(id, "/webauthn/start"), json!({}))
        .await
        .assert_error(409, "mfa_method_not_enrolled");
    // A wrong code is refused and leaves the transaction open.
    bob.post(&path(id, "/totp"), json!({"code": "000000"}))
        .await
        .assert_error(401, "invalid_mfa_code");
    assert_eq!(bob.get(&path(id, "")).await.body["status"], "pending");

    let done = bob
        .post(&path(id, "/totp"), json!({"code": phone.code(1)}))
        .await;
    assert_eq!(done.status, 200, "{done:?}");
    let token = done.body["confirmation"].as_str().unwrap();
    let (_, claims) = parts(token);
    assert_eq!(claims["linking"], "server");
    assert_eq!(claims["amr"], json!(["otp"]));
    let accepted = verifier(&app, AUDIENCE)
        .await
        .verify(token, &payment("99.99"))
        .unwrap();
    assert_eq!(accepted.linking.as_str(), "server");

    // The same code again, for another transaction: a replayed step, refused.
    let second = create(&bob, payment("1.00")).await;
    bob.post(
        &path(&second["transaction_id"], "/totp"),
        json!({"code": phone.code(1)}),
    )
    .await
    .assert_error(401, "invalid_mfa_code");
    let reasons = failures(&app).await;
    assert!(reasons[0].contains("wrong_code"), "{reasons:?}");
    assert!(reasons[1].contains("replayed_code"), "{reasons:?}");
    let events = app.audit_events().await;
    assert!(events.iter().filter(|e| *e == "mfa.totp.failure").count() >= 2);
}

async fn a_batch_is_confirmed_once_for_its_total_and_payees(backend: Backend) {
    let app = spawn_app(backend).await;
    let (carol, key) = with_passkey(&app, "carol@example.com").await;
    let mut second = payment("20");
    second["creditorName"] = json!("Landlord AG");
    second["creditorAccount"]["iban"] = json!(OTHER_IBAN);
    let mut third = payment("5000");
    third["instructedAmount"]["currency"] = json!("JPY");
    let batch = json!([payment("10.50"), second, third]);
    let created = create(&carol, batch.clone()).await;
    assert!(created["details"].is_array());
    assert_eq!(created["summary"]["batch"], true);
    assert_eq!(
        created["summary"]["totals"],
        json!({"EUR": "30.50", "JPY": "5000"})
    );
    let payees: Vec<&str> = created["summary"]["payees"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(payees, ["Merchant GmbH", "Landlord AG", "Merchant GmbH"]);

    let done = confirm_with(&carol, &key, &created["transaction_id"]).await;
    assert_eq!(done.status, 200, "{done:?}");
    let token = done.body["confirmation"].as_str().unwrap();
    let (_, claims) = parts(token);
    assert_eq!(claims["details"].as_array().unwrap().len(), 3);

    // One payment left out, or the order changed: not what was confirmed.
    let checker = verifier(&app, AUDIENCE).await;
    let items = batch.as_array().unwrap();
    assert_eq!(
        checker.verify(token, &json!(items[..2])).unwrap_err(),
        Refusal::OtherDetails
    );
    assert_eq!(
        checker
            .verify(token, &json!([items[1], items[0], items[2]]))
            .unwrap_err(),
        Refusal::OtherDetails
    );
    assert_eq!(
        checker.verify(token, &items[0]).unwrap_err(),
        Refusal::OtherDetails
    );
    checker.verify(token, &batch).unwrap();
}

async fn invalid_details_are_refused_field_by_field_and_nothing_is_stored(backend: Backend) {
    let app = spawn_app(backend).await;
    let (dan, _) = with_passkey(&app, "dan@example.com").await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"type": "credit_transfer"}), "type"),
        (
            json!({"instructedAmount": {"currency": "EUR", "amount": 10}}),
            "instructedAmount.amount",
        ),
        (
            json!({"instructedAmount": {"currency": "EUR", "amount": "0"}}),
            "instructedAmount.amount",
        ),
        (
            json!({"instructedAmount": {"currency": "EUR", "amount": "-1"}}),
            "instructedAmount.amount",
        ),
        (
            json!({"instructedAmount": {"currency": "EUR", "amount": "1e3"}}),
            "instructedAmount.amount",
        ),
        (
            json!({"instructedAmount": {"currency": "EUR", "amount": "0.001"}}),
            "instructedAmount.amount",
        ),
        (
            json!({"instructedAmount": {"currency": "JPY", "amount": "1.5"}}),
            "instructedAmount.amount",
        ),
        (
            json!({"instructedAmount": {"currency": "XYZ", "amount": "1"}}),
            "instructedAmount.currency",
        ),
        (
            json!({"instructedAmount": {"currency": "HRK", "amount": "1"}}),
            "instructedAmount.currency",
        ),
        (json!({"creditorName": ""}), "creditorName"),
        (json!({"creditorName": "x".repeat(141)}), "creditorName"),
        (json!({"creditorName": "Evil\u{202e}Corp"}), "creditorName"),
        (
            json!({"creditorAccount": {"iban": "DE89370400440532013001"}}),
            "creditorAccount.iban",
        ),
        (
            json!({"remittanceInformationUnstructured": "y".repeat(141)}),
            "remittanceInformationUnstructured",
        ),
        (json!({"debtorAccount": {"iban": IBAN}}), "debtorAccount"),
    ];
    for (change, field) in cases {
        let mut body = payment("1.00");
        for (key, value) in change.as_object().unwrap() {
            body[key] = value.clone();
        }
        let refused = dan.post("/auth/transactions", body).await;
        refused.assert_error(422, "validation_error");
        assert!(
            refused.body["fields"].get(field).is_some(),
            "{field}: {refused:?}"
        );
    }
    // A field missing; an entry of a batch named by its index; an empty batch.
    let mut missing = payment("1.00");
    missing.as_object_mut().unwrap().remove("creditorAccount");
    let refused = dan.post("/auth/transactions", missing).await;
    assert_eq!(refused.body["fields"]["creditorAccount"], "is required");
    let mut bad = payment("1.00");
    bad["creditorAccount"]["iban"] = json!("DE00");
    let refused = dan
        .post(
            "/auth/transactions",
            json!([payment("1"), payment("2"), bad]),
        )
        .await;
    assert_eq!(
        refused.body["fields"],
        json!({"[2].creditorAccount.iban": "must be a valid IBAN"})
    );
    dan.post("/auth/transactions", json!([]))
        .await
        .assert_error(422, "validation_error");
    dan.post("/auth/transactions", json!("pay"))
        .await
        .assert_error(422, "validation_error");
    let not_json = dan
        .execute(
            reqwest::Client::new()
                .post(format!("{}/auth/transactions", app.address))
                .header("content-type", "application/json")
                .body("{not json"),
            Csrf::Auto,
        )
        .await;
    not_json.assert_error(400, "malformed_request");
    assert!(
        !app.audit_events()
            .await
            .iter()
            .any(|e| e.starts_with("transaction.")),
        "nothing was created"
    );
}

async fn the_assertion_is_bound_to_its_transaction_and_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let (erin, key) = with_passkey(&app, "erin@example.com").await;
    let first = create(&erin, payment("10.00")).await;
    let second = create(&erin, payment("10.00")).await;
    let (first_id, second_id) = (&first["transaction_id"], &second["transaction_id"]);

    // A ceremony started for one transaction cannot confirm another.
    let start = erin
        .post(&path(first_id, "/webauthn/start"), json!({}))
        .await;
    let assertion = key.sign_in(&start.body["options"]).await;
    erin.post(
        &path(second_id, "/webauthn/finish"),
        json!({"ceremony_id": start.body["ceremony_id"], "credential": assertion}),
    )
    .await
    .assert_error(400, "invalid_ceremony");

    // Another session of the same user: the transaction is not its own, and a ceremony id
    // of the first session finds nothing there.
    let other_session = app.browser();
    let login = other_session
        .post(
            "/auth/login",
            json!({"email": "erin@example.com", "password": crate::helpers::PASSWORD}),
        )
        .await;
    assert_eq!(login.body["code"], "mfa_required");
    let login = passkey_login(&other_session, json!({}), &key).await;
    assert_eq!(login.body["code"], "login_ok", "{login:?}");
    other_session
        .get(&path(first_id, ""))
        .await
        .assert_error(404, "not_found");
    let theirs = create(&other_session, payment("10.00")).await;
    let start = erin
        .post(&path(first_id, "/webauthn/start"), json!({}))
        .await;
    let assertion = key.sign_in(&start.body["options"]).await;
    other_session
        .post(
            &path(&theirs["transaction_id"], "/webauthn/finish"),
            json!({"ceremony_id": start.body["ceremony_id"], "credential": assertion}),
        )
        .await
        .assert_error(400, "invalid_ceremony");
    // …which did not consume it: its own session finishes it.
    let done = erin
        .post(
            &path(first_id, "/webauthn/finish"),
            json!({"ceremony_id": start.body["ceremony_id"], "credential": assertion}),
        )
        .await;
    assert_eq!(done.status, 200, "{done:?}");

    // The same assertion replayed against a fresh ceremony of the second transaction: its
    // challenge commits to another hash and nonce.
    let replay = erin
        .post(&path(second_id, "/webauthn/start"), json!({}))
        .await;
    erin.post(
        &path(second_id, "/webauthn/finish"),
        json!({"ceremony_id": replay.body["ceremony_id"], "credential": assertion}),
    )
    .await
    .assert_error(401, "webauthn_failed");
    // The failure left the second transaction open: a real confirmation still works.
    let done = confirm_with(&erin, &key, second_id).await;
    assert_eq!(done.status, 200, "{done:?}");
    // And the first one's ceremony, replayed: the transaction is confirmed already.
    erin.post(
        &path(first_id, "/webauthn/finish"),
        json!({"ceremony_id": start.body["ceremony_id"], "credential": assertion}),
    )
    .await
    .assert_error(400, "invalid_transaction");

    let reasons = failures(&app).await;
    assert!(
        reasons
            .iter()
            .filter(|r| r.contains("invalid_ceremony"))
            .count()
            >= 2,
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("wrong_challenge")),
        "{reasons:?}"
    );
}

async fn another_users_transaction_is_not_found(backend: Backend) {
    let app = spawn_app(backend).await;
    let (frank, _) = with_passkey(&app, "frank@example.com").await;
    let (grace, _) = with_totp(&app, "grace@example.com").await;
    let created = create(&frank, payment("1.00")).await;
    let id = &created["transaction_id"];
    grace
        .get(&path(id, ""))
        .await
        .assert_error(404, "not_found");
    grace
        .post(&path(id, "/webauthn/start"), json!({}))
        .await
        .assert_error(404, "not_found");
    grace
        .post(&path(id, "/totp"), json!({"code": "123456"}))
        .await
        .assert_error(404, "not_found");
    grace
        .post(
            &path(id, "/webauthn/finish"),
            json!({"ceremony_id": "x", "credential": {
                "id": "AAAA", "rawId": "AAAA", "type": "public-key", "extensions": {},
                "response": {"authenticatorData": "AAAA", "clientDataJSON": "AAAA", "signature": "AAAA"},
            }}),
        )
        .await
        .assert_error(404, "not_found");
    let unknown = json!(uuid::Uuid::new_v4().to_string());
    frank
        .get(&path(&unknown, ""))
        .await
        .assert_error(404, "not_found");
    frank
        .get("/auth/transactions/not-a-uuid")
        .await
        .assert_error(404, "not_found");
    // Frank's transaction is untouched.
    assert_eq!(frank.get(&path(id, "")).await.body["status"], "pending");
}

async fn an_expired_transaction_cannot_be_confirmed(backend: Backend) {
    let app = spawn_app_with(backend, &[("TRANSACTION_TTL_SECONDS", "2")]).await;
    let (heidi, phone) = with_totp(&app, "heidi@example.com").await;
    let created = create(&heidi, payment("1.00")).await;
    let id = &created["transaction_id"];
    // Confirmed at once: the confirmation lives as long as the transaction did.
    let done = heidi
        .post(&path(id, "/totp"), json!({"code": phone.code(1)}))
        .await;
    assert_eq!(done.status, 200, "{done:?}");
    let token = done.body["confirmation"].as_str().unwrap().to_owned();
    let (_, claims) = parts(&token);
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        2
    );

    let late = create(&heidi, payment("2.00")).await;
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let late_id = &late["transaction_id"];
    heidi
        .get(&path(late_id, ""))
        .await
        .assert_error(400, "invalid_transaction");
    heidi
        .post(&path(late_id, "/totp"), json!({"code": phone.code(0)}))
        .await
        .assert_error(400, "invalid_transaction");
    heidi
        .post(&path(late_id, "/webauthn/start"), json!({}))
        .await
        .assert_error(400, "invalid_transaction");
    assert!(failures(&app).await.iter().all(|r| r.contains("expired")));

    // The backend refuses the expired confirmation (no leeway here, to keep it short).
    let strict = verifier(&app, AUDIENCE).await.with_leeway(0);
    assert_eq!(
        strict.verify(&token, &payment("1.00")).unwrap_err(),
        Refusal::Expired
    );
}

async fn user_verification_is_required(backend: Backend) {
    let app = spawn_app(backend).await;
    let (ivan, key) = with_passkey(&app, "ivan@example.com").await;
    let created = create(&ivan, payment("1.00")).await;
    let id = &created["transaction_id"];
    let start = ivan.post(&path(id, "/webauthn/start"), json!({})).await;
    // The authenticator is asked not to verify the user: its signature is valid, its UV
    // flag cleared.
    let mut options = start.body["options"].clone();
    options["publicKey"]["userVerification"] = json!("discouraged");
    let assertion = key.sign_in(&options).await;
    ivan.post(
        &path(id, "/webauthn/finish"),
        json!({"ceremony_id": start.body["ceremony_id"], "credential": assertion}),
    )
    .await
    .assert_error(401, "webauthn_failed");
    let reasons = failures(&app).await;
    assert!(reasons[0].contains("user_not_verified"), "{reasons:?}");
    let webauthn = app
        .query("SELECT metadata FROM audit_log WHERE event = 'mfa.webauthn.failure'")
        .await;
    assert!(webauthn[0].as_str().unwrap().contains("user_not_verified"));
    assert_eq!(ivan.get(&path(id, "")).await.body["status"], "pending");
}

async fn writes_need_the_csrf_token_and_a_second_factor(backend: Backend) {
    let app = spawn_app(backend).await;
    let (kim, _) = with_passkey(&app, "kim@example.com").await;
    kim.send(
        Method::POST,
        "/auth/transactions",
        Some(payment("1.00")),
        Csrf::None,
    )
    .await
    .assert_error(403, "csrf_failed");
    let created = create(&kim, payment("1.00")).await;
    let id = &created["transaction_id"];
    for (route, body) in [
        ("/webauthn/start", json!({})),
        (
            "/webauthn/finish",
            json!({"ceremony_id": "x", "credential": {}}),
        ),
        ("/totp", json!({"code": "123456"})),
    ] {
        kim.send(Method::POST, &path(id, route), Some(body), Csrf::None)
            .await
            .assert_error(403, "csrf_failed");
    }
    // No session at all.
    app.browser()
        .post("/auth/transactions", payment("1.00"))
        .await
        .assert_error(401, "not_authenticated");
    // A user without a second factor must enroll one first.
    let leo = app.logged_in("leo@example.com").await;
    leo.post("/auth/transactions", payment("1.00"))
        .await
        .assert_error(403, "mfa_enrollment_required");
}

async fn two_racing_confirmations_yield_one(backend: Backend) {
    let app = spawn_app(backend).await;
    let (mia, phone) = with_totp(&app, "mia@example.com").await;
    // With Redis, the second request goes to another instance; the embedded deployment
    // is one instance.
    let other = match backend {
        Backend::PostgresRedis => Some(app.sibling(&[]).await),
        Backend::Embedded => None,
    };
    let elsewhere = Browser::new(other.as_ref().map_or(&app.address, |o| &o.address));
    elsewhere.set_cookie("session", &mia.cookie("session").unwrap());
    let created = create(&mia, payment("1.00")).await;
    let id = &created["transaction_id"];
    let csrf = mia.csrf_token().unwrap();
    let code = phone.code(1);
    let route = path(id, "/totp");
    let (a, b) = tokio::join!(
        mia.post(&route, json!({"code": code})),
        elsewhere.send(
            Method::POST,
            &route,
            Some(json!({"code": code})),
            Csrf::Value(&csrf),
        ),
    );
    let statuses = [a.status, b.status];
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{a:?} {b:?}"
    );
    assert_eq!(
        app.audit_events()
            .await
            .iter()
            .filter(|e| *e == "transaction.confirmed")
            .count(),
        1
    );
}

async fn a_session_cannot_flood_the_store(backend: Backend) {
    let app = spawn_app(backend).await;
    let (oscar, _) = with_passkey(&app, "oscar@example.com").await;
    for _ in 0..30 {
        create(&oscar, payment("1.00")).await;
    }
    let refused = oscar.post("/auth/transactions", payment("1.00")).await;
    refused.assert_error(429, "rate_limited");
    assert!(refused.header("retry-after").is_some());
}

on_both_backends!(
    a_passkey_confirms_exactly_the_details_it_signed,
    a_totp_code_confirms_with_server_linking,
    a_batch_is_confirmed_once_for_its_total_and_payees,
    invalid_details_are_refused_field_by_field_and_nothing_is_stored,
    the_assertion_is_bound_to_its_transaction_and_session,
    another_users_transaction_is_not_found,
    an_expired_transaction_cannot_be_confirmed,
    user_verification_is_required,
    writes_need_the_csrf_token_and_a_second_factor,
    two_racing_confirmations_yield_one,
    a_session_cannot_flood_the_store
);

/// Redis down: no transaction is created or confirmed unchecked (503, never 201/200).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_fails_closed() {
    let app = spawn_app_with(Backend::PostgresRedis, &[]).await;
    let (nina, _) = with_passkey(&app, "nina@example.com").await;
    let created = create(&nina, payment("1.00")).await;
    let down = app.sibling(&[("REDIS_URL", "redis://127.0.0.1:1")]).await;
    let stranded = Browser::new(&down.address);
    stranded.set_cookie("session", &nina.cookie("session").unwrap());
    let csrf = nina.csrf_token().unwrap();
    stranded
        .send(
            Method::POST,
            "/auth/transactions",
            Some(payment("1.00")),
            Csrf::Value(&csrf),
        )
        .await
        .assert_error(503, "service_unavailable");
    stranded
        .send(
            Method::POST,
            &path(&created["transaction_id"], "/webauthn/start"),
            Some(json!({})),
            Csrf::Value(&csrf),
        )
        .await
        .assert_error(503, "service_unavailable");
}

/// The OpenID Provider's hooks (docs/API.md §8): the authorization step opens a §9
/// transaction for a request's `payment_initiation` details, the browser confirms it
/// through the §9 routes, and the step then asks whether it was confirmed. With Redis, so
/// a second instance's service layer sees the same transactions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorization_step_opens_and_checks_transactions_through_the_service() {
    use logicredit_auth::services::audit::RequestContext;
    use logicredit_auth::services::payments::PaymentOrder;

    let app = spawn_app_with(Backend::PostgresRedis, &[]).await;
    let (olga, phone) = with_totp(&app, "olga@example.com").await;
    let user_id: uuid::Uuid = olga.get("/auth/me").await.body["user"]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let sessions = olga.get("/auth/sessions").await.body["sessions"].clone();
    let session_id: uuid::Uuid = sessions
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let services = app.services().await;
    let order = PaymentOrder::from_authorization_details(&[payment("12.00")]).unwrap();
    let created = services
        .transactions
        .create_for(
            user_id,
            session_id,
            order.clone(),
            &RequestContext::default(),
        )
        .await
        .unwrap();
    assert_eq!(created.tx_hash, order.tx_hash());
    let hash_of = |session: uuid::Uuid| {
        let services = services.clone();
        async move {
            services
                .transactions
                .confirmed_hash(created.transaction_id, user_id, session)
                .await
                .unwrap()
        }
    };
    assert_eq!(hash_of(session_id).await, None, "not confirmed yet");

    // The browser's session sees and confirms it like one it created itself.
    let id = json!(created.transaction_id.to_string());
    let shown = olga.get(&path(&id, "")).await;
    assert_eq!(shown.body["details"], order.details());
    let done = olga
        .post(&path(&id, "/totp"), json!({"code": phone.code(1)}))
        .await;
    assert_eq!(done.status, 200, "{done:?}");
    assert_eq!(hash_of(session_id).await, Some(order.tx_hash()));
    // Only for that session (and user).
    assert_eq!(hash_of(uuid::Uuid::new_v4()).await, None);
    assert_eq!(
        services
            .transactions
            .confirmed_hash(created.transaction_id, uuid::Uuid::new_v4(), session_id)
            .await
            .unwrap(),
        None
    );
}
