//! Real second factors for the tests: an authenticator app (totp-rs on the secret the
//! service returned) and a software passkey (webauthn-authenticator-rs `SoftPasskey`,
//! full CTAP-style signatures, user verification reported).

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::prelude::Url;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse};

/// The origin the service is configured with (ORIGIN_URL's default).
pub const ORIGIN: &str = "http://localhost:8000";

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
        let options: CreationChallengeResponse = serde_json::from_value(options.clone()).unwrap();
        let origin = Url::parse(origin).unwrap();
        let soft = Arc::clone(&self.soft);
        let credential = tokio::task::spawn_blocking(move || {
            soft.lock().unwrap().do_registration(origin, options)
        })
        .await
        .unwrap()
        .expect("the soft passkey registers");
        serde_json::to_value(credential).unwrap()
    }

    pub async fn sign_in(&self, options: &Value) -> Value {
        self.sign_in_at(ORIGIN, options).await
    }

    pub async fn sign_in_at(&self, origin: &str, options: &Value) -> Value {
        let options: RequestChallengeResponse = serde_json::from_value(options.clone()).unwrap();
        let origin = Url::parse(origin).unwrap();
        let soft = Arc::clone(&self.soft);
        let credential = tokio::task::spawn_blocking(move || {
            soft.lock().unwrap().do_authentication(origin, options)
        })
        .await
        .unwrap()
        .expect("the soft passkey signs");
        serde_json::to_value(credential).unwrap()
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
