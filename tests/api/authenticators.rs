//! Real second factors for the tests: an authenticator app (totp-rs on the secret the
//! service returned) and a software passkey (webauthn-authenticator-rs `SoftPasskey`,
//! full CTAP-style signatures, user verification reported).

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use webauthn_authenticator_rs::prelude::Url;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_authenticator_rs::{AuthenticatorBackend, WebauthnAuthenticator};
use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse};

use crate::helpers::{Browser, TestResponse};

/// The origin the service is configured with (ORIGIN_URL's default).
pub const ORIGIN: &str = "http://localhost:8000";

/// Any of the software passkeys below, answering a sign-in's options the way
/// `navigator.credentials.get` would.
pub trait PasskeyDevice {
    fn sign_in(&self, options: &Value) -> impl std::future::Future<Output = Value>;
}

/// Starts a passkey ceremony at `start_path` with `body` and returns the finish request
/// `key` answers it with — not yet sent: some scenarios send it later.
pub async fn passkey_assertion(
    browser: &Browser,
    start_path: &str,
    body: Value,
    key: &impl PasskeyDevice,
) -> Value {
    let start = browser.post(start_path, body).await;
    assert_eq!(start.status, 200, "{start:?}");
    let credential = key.sign_in(&start.body["options"]).await;
    json!({"ceremony_id": start.body["ceremony_id"], "credential": credential})
}

/// A sign-in with a passkey: passwordless with `{"email": …}` (or `{}`, discoverable), or
/// the second factor of the browser's pending login with `{}`. The finish answer.
pub async fn passkey_login(
    browser: &Browser,
    body: Value,
    key: &impl PasskeyDevice,
) -> TestResponse {
    let finish = passkey_assertion(browser, "/auth/webauthn/login/start", body, key).await;
    browser.post("/auth/webauthn/login/finish", finish).await
}

pub struct AuthenticatorApp {
    totp: totp_rs::Totp,
}

impl AuthenticatorApp {
    /// Scans the setup answer the way a phone app reads the QR code: from the secret.
    pub fn from_setup(setup: &Value) -> Self {
        let secret = totp_rs::Secret::try_from_base32(setup["secret"].as_str().unwrap()).unwrap();
        let totp = totp_rs::Builder::new()
            .with_secret(secret.as_bytes().to_vec())
            .build_noncompliant();
        Self { totp }
    }

    /// The code for `offset_steps` 30-second steps from now.
    pub fn code(&self, offset_steps: i64) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        self.totp
            .generate((now + offset_steps * 30) as u64)
            .to_string()
    }
}

/// A passkey authenticator. Ceremonies run on a blocking thread (the soft token may block).
#[derive(Clone)]
pub struct Passkey {
    soft: Arc<Mutex<SoftPasskey>>,
}

impl Passkey {
    pub fn new() -> Self {
        Self {
            soft: Arc::new(Mutex::new(SoftPasskey::new(true))),
        }
    }

    pub async fn register(&self, options: &Value) -> Value {
        self.register_at(ORIGIN, options).await
    }

    pub async fn register_at(&self, origin: &str, options: &Value) -> Value {
        register_on(&self.soft, origin, options.clone()).await
    }

    pub async fn sign_in(&self, options: &Value) -> Value {
        self.sign_in_at(ORIGIN, options).await
    }

    pub async fn sign_in_at(&self, origin: &str, options: &Value) -> Value {
        sign_in_on(&self.soft, origin, options.clone()).await
    }

    /// This passkey used from a page at `origin` (a phishing site, say).
    pub fn at<'a>(&'a self, origin: &'a str) -> PasskeyAt<'a> {
        PasskeyAt { key: self, origin }
    }

    /// A discoverable sign-in: the browser asks with no credential list and the
    /// authenticator answers with the user handle. `SoftPasskey` cannot hold resident
    /// keys, so the test supplies what a resident key would: which credential to use
    /// (`credential_id`) and the user handle (`user_id`). Everything the server checks —
    /// challenge, origin, signature, counter, user verification — is real.
    pub async fn sign_in_discoverable(
        &self,
        options: &Value,
        credential_id: &str,
        user_id: &str,
    ) -> Value {
        let mut options = options.clone();
        options["publicKey"]["allowCredentials"] =
            json!([{"type": "public-key", "id": credential_id}]);
        let mut credential = self.sign_in(&options).await;
        let handle = uuid::Uuid::parse_str(user_id).unwrap();
        credential["response"]["userHandle"] = json!(URL_SAFE_NO_PAD.encode(handle.as_bytes()));
        credential
    }
}

/// A passkey answering from another origin than the service's (`Passkey::at`).
pub struct PasskeyAt<'a> {
    key: &'a Passkey,
    origin: &'a str,
}

impl PasskeyDevice for PasskeyAt<'_> {
    async fn sign_in(&self, options: &Value) -> Value {
        self.key.sign_in_at(self.origin, options).await
    }
}

impl PasskeyDevice for Passkey {
    async fn sign_in(&self, options: &Value) -> Value {
        Passkey::sign_in(self, options).await
    }
}

impl PasskeyDevice for AttestedKey {
    async fn sign_in(&self, options: &Value) -> Value {
        AttestedKey::sign_in(self, options).await
    }
}

impl PasskeyDevice for SyncedPasskey {
    async fn sign_in(&self, options: &Value) -> Value {
        SyncedPasskey::sign_in(self, options)
    }
}

/// A security key with a "packed" attestation: webauthn-authenticator-rs `SoftToken`,
/// whose attestation certificate is issued by a CA of its own (a fresh one per key, with
/// `softtoken::AAGUID`). `ca_der` is that CA, for a metadata BLOB to trust — or not.
#[derive(Clone)]
pub struct AttestedKey {
    soft: Arc<Mutex<webauthn_authenticator_rs::softtoken::SoftToken>>,
    pub ca_der: Vec<u8>,
}

impl AttestedKey {
    pub fn new() -> Self {
        use crypto_glue::traits::EncodeDer as _;
        let (token, ca) = webauthn_authenticator_rs::softtoken::SoftToken::new(true).unwrap();
        Self {
            soft: Arc::new(Mutex::new(token)),
            ca_der: ca.to_der().unwrap(),
        }
    }

    pub async fn register(&self, options: &Value) -> Value {
        let mut options = options.clone();
        // webauthn-rs-proto knows no `enterprise` conveyance; a browser not set up for
        // enterprise attestation on this RP ID answers it as `direct`.
        if options["publicKey"]["attestation"] == "enterprise" {
            options["publicKey"]["attestation"] = json!("direct");
        }
        register_on(&self.soft, ORIGIN, options).await
    }

    pub async fn sign_in(&self, options: &Value) -> Value {
        sign_in_on(&self.soft, ORIGIN, options.clone()).await
    }
}

/// A registration ceremony on a software authenticator, on a blocking thread (it may
/// block), as a browser would run it at `origin`.
async fn register_on<T>(soft: &Arc<Mutex<T>>, origin: &str, options: Value) -> Value
where
    T: AuthenticatorBackend + Send + 'static,
{
    let options: CreationChallengeResponse = serde_json::from_value(options).unwrap();
    let origin = Url::parse(origin).unwrap();
    let soft = Arc::clone(soft);
    let credential =
        tokio::task::spawn_blocking(move || soft.lock().unwrap().do_registration(origin, options))
            .await
            .unwrap()
            .expect("the software authenticator registers");
    serde_json::to_value(credential).unwrap()
}

/// An authentication ceremony on a software authenticator, as `register_on`.
async fn sign_in_on<T>(soft: &Arc<Mutex<T>>, origin: &str, options: Value) -> Value
where
    T: AuthenticatorBackend + Send + 'static,
{
    let options: RequestChallengeResponse = serde_json::from_value(options).unwrap();
    let origin = Url::parse(origin).unwrap();
    let soft = Arc::clone(soft);
    let credential = tokio::task::spawn_blocking(move || {
        soft.lock().unwrap().do_authentication(origin, options)
    })
    .await
    .unwrap()
    .expect("the software authenticator signs");
    serde_json::to_value(credential).unwrap()
}

/// A synced passkey, as a phone's or password manager's: its authenticator data says
/// backup eligible and backed up (BE, BS), with `none` attestation and a zero AAGUID.
/// No library authenticator sets those flags, so this one builds the WebAuthn structures
/// itself (CBOR by serde_cbor_2, ES256 by crypto-glue); the server checks them for real.
pub struct SyncedPasskey {
    key: crypto_glue::ecdsa_p256::EcdsaP256PrivateKey,
    id: Vec<u8>,
}

/// UP | UV | BE | BS (WebAuthn §6.1 flags); AT is added at registration.
const SYNCED_FLAGS: u8 = 0x01 | 0x04 | 0x08 | 0x10;
const ATTESTED_DATA: u8 = 0x40;

impl SyncedPasskey {
    pub fn new() -> Self {
        Self {
            key: crypto_glue::ecdsa_p256::new_key(),
            id: uuid::Uuid::new_v4().as_bytes().to_vec(),
        }
    }

    fn client_data(kind: &str, options: &Value) -> Vec<u8> {
        json!({
            "type": kind,
            "challenge": options["publicKey"]["challenge"],
            "origin": ORIGIN,
            "crossOrigin": false,
        })
        .to_string()
        .into_bytes()
    }

    fn rp_id_hash(rp_id: &str) -> Vec<u8> {
        use sha2::Digest as _;
        sha2::Sha256::digest(rp_id.as_bytes()).to_vec()
    }

    pub fn register(&self, options: &Value) -> Value {
        use serde_cbor_2::Value as Cbor;
        use std::collections::BTreeMap;
        let point = crypto_glue::ecdsa_p256::EcdsaP256PublicSec1Point::from(self.key.public_key());
        let cose_key = Cbor::Map(BTreeMap::from([
            (Cbor::Integer(1), Cbor::Integer(2)),
            (Cbor::Integer(3), Cbor::Integer(-7)),
            (Cbor::Integer(-1), Cbor::Integer(1)),
            (Cbor::Integer(-2), Cbor::Bytes(point.x().unwrap().to_vec())),
            (Cbor::Integer(-3), Cbor::Bytes(point.y().unwrap().to_vec())),
        ]));
        let rp_id = options["publicKey"]["rp"]["id"].as_str().unwrap();
        let mut auth_data = Self::rp_id_hash(rp_id);
        auth_data.push(SYNCED_FLAGS | ATTESTED_DATA);
        auth_data.extend_from_slice(&0u32.to_be_bytes());
        auth_data.extend_from_slice(&[0u8; 16]);
        auth_data.extend_from_slice(&(self.id.len() as u16).to_be_bytes());
        auth_data.extend_from_slice(&self.id);
        auth_data.extend(serde_cbor_2::to_vec(&cose_key).unwrap());
        let attestation_object = Cbor::Map(BTreeMap::from([
            (Cbor::Text("fmt".into()), Cbor::Text("none".into())),
            (Cbor::Text("attStmt".into()), Cbor::Map(BTreeMap::new())),
            (Cbor::Text("authData".into()), Cbor::Bytes(auth_data)),
        ]));
        let id = URL_SAFE_NO_PAD.encode(&self.id);
        json!({
            "id": id,
            "rawId": id,
            "type": "public-key",
            "extensions": {},
            "response": {
                "attestationObject": URL_SAFE_NO_PAD.encode(serde_cbor_2::to_vec(&attestation_object).unwrap()),
                "clientDataJSON": URL_SAFE_NO_PAD.encode(Self::client_data("webauthn.create", options)),
            },
        })
    }

    pub fn sign_in(&self, options: &Value) -> Value {
        use crypto_glue::traits::Signer as _;
        use sha2::Digest as _;
        let rp_id = options["publicKey"]["rpId"].as_str().unwrap();
        let mut auth_data = Self::rp_id_hash(rp_id);
        auth_data.push(SYNCED_FLAGS);
        // Synced passkeys keep no counter.
        auth_data.extend_from_slice(&0u32.to_be_bytes());
        let client_data = Self::client_data("webauthn.get", options);
        let mut signed = auth_data.clone();
        signed.extend(sha2::Sha256::digest(&client_data));
        let signer = crypto_glue::ecdsa_p256::EcdsaP256SigningKey::from(&self.key);
        let signature: crypto_glue::ecdsa_p256::EcdsaP256Signature = signer.sign(&signed);
        let id = URL_SAFE_NO_PAD.encode(&self.id);
        json!({
            "id": id,
            "rawId": id,
            "type": "public-key",
            "extensions": {},
            "response": {
                "authenticatorData": URL_SAFE_NO_PAD.encode(&auth_data),
                "clientDataJSON": URL_SAFE_NO_PAD.encode(&client_data),
                "signature": URL_SAFE_NO_PAD.encode(signature.to_der().as_bytes()),
                "userHandle": null,
            },
        })
    }
}
