//! docs/API.md §11 "Passkey attestation": `WEBAUTHN_ATTESTATION`, `WEBAUTHN_ALLOWED_AAGUIDS`,
//! `FIDO_MDS_FILE` (+ `FIDO_MDS_ROOT_CERT`) and `REQUIRE_DEVICE_BOUND_PASSKEYS_FOR`.
//!
//! Everything is real: the security keys are webauthn-authenticator-rs `SoftToken`s with
//! "packed" attestation under a CA of their own; the metadata BLOB is a JWS signed by a
//! test MDS root (x5c chain root → signer) with entries naming those CAs; the synced
//! passkey signs its own WebAuthn structures.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use compact_jwt::crypto::JwsX509Signer;
use compact_jwt::jws::Jws;
use compact_jwt::traits::JwsSigner as _;
use crypto_glue::ecdsa_p384::{
    EcdsaP384DerSignature, EcdsaP384PrivateKey, EcdsaP384SigningKey, EcdsaP384VerifyingKey,
};
use crypto_glue::traits::{EncodePem as _, Generate as _, LineEndingPem, ToExtension as _};
use crypto_glue::x509::profile::{BuilderProfile, cabf::Root};
use crypto_glue::x509::{
    BasicConstraints, Builder as _, CertBuilderError, Certificate, CertificateBuilder, Extension,
    Name, SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef, TbsCertificate, Time, Validity,
    uuid_to_serial,
};
use serde_json::{Value, json};
use webauthn_authenticator_rs::softtoken::AAGUID;

use crate::authenticators::{AttestedKey, Passkey, SyncedPasskey, passkey_login};
use crate::helpers::{Backend, Browser, TestApp, spawn_app_with, startup_error};
use crate::on_both_backends;

/// A test FIDO Metadata Service: a root CA (`FIDO_MDS_ROOT_CERT`) and a signing
/// certificate under it, which signs BLOBs with the chain in `x5c`.
struct TestMds {
    dir: PathBuf,
    root: Certificate,
    signer: Certificate,
    key: EcdsaP384PrivateKey,
}

struct SignerProfile {
    subject: Name,
    issuer: Name,
}

impl BuilderProfile for SignerProfile {
    fn get_issuer(&self, _subject: &Name) -> Name {
        self.issuer.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        _spk: SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: SubjectPublicKeyInfoRef<'_>,
        tbs: &TbsCertificate,
    ) -> Result<Vec<Extension>, CertBuilderError> {
        let constraints = BasicConstraints {
            ca: false,
            path_len_constraint: None,
        };
        Ok(vec![constraints.to_extension(tbs.subject(), &[])?])
    }
}

fn validity() -> Validity {
    let now = SystemTime::now();
    Validity::new(
        Time::try_from(now - Duration::from_secs(60)).unwrap(),
        Time::try_from(now + Duration::from_secs(86_400)).unwrap(),
    )
}

fn spki(key: &EcdsaP384SigningKey) -> SubjectPublicKeyInfoOwned {
    SubjectPublicKeyInfoOwned::from_key(&EcdsaP384VerifyingKey::from(key)).unwrap()
}

impl TestMds {
    fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("lcauth-mds-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let root_key = EcdsaP384SigningKey::generate();
        let root_name = Name::from_str("CN=Logicredit Test MDS Root,O=Logicredit,C=DE").unwrap();
        let root = CertificateBuilder::new(
            Root::new(false, root_name.clone()).unwrap(),
            uuid_to_serial(uuid::Uuid::new_v4()),
            validity(),
            spki(&root_key),
        )
        .unwrap()
        .build::<EcdsaP384SigningKey, EcdsaP384DerSignature>(&root_key)
        .unwrap();
        let key = crypto_glue::ecdsa_p384::new_key();
        let signer = CertificateBuilder::new(
            SignerProfile {
                subject: Name::from_str("CN=Logicredit Test MDS Signer,O=Logicredit,C=DE").unwrap(),
                issuer: root_name,
            },
            uuid_to_serial(uuid::Uuid::new_v4()),
            validity(),
            spki(&EcdsaP384SigningKey::from(&key)),
        )
        .unwrap()
        .build::<EcdsaP384SigningKey, EcdsaP384DerSignature>(&root_key)
        .unwrap();
        let mds = Self {
            dir,
            root,
            signer,
            key,
        };
        std::fs::write(mds.root_path(), mds.root.to_pem(LineEndingPem::LF).unwrap()).unwrap();
        mds
    }

    fn root_path(&self) -> PathBuf {
        self.dir.join("mds-root.pem")
    }

    /// Writes a BLOB with `entries` (serial 7) and returns its path.
    fn write(&self, name: &str, entries: Vec<Value>) -> String {
        let payload = json!({
            "legalHeader": "Test metadata: not for production.",
            "no": 7,
            "nextUpdate": "2999-01-01",
            "entries": entries,
        });
        let signer = JwsX509Signer::new(
            self.key.clone(),
            &self.signer,
            std::slice::from_ref(&self.root),
        );
        let blob = signer
            .sign(&Jws::into_json(&payload).unwrap())
            .unwrap()
            .to_string();
        let path = self.dir.join(name);
        std::fs::write(&path, blob).unwrap();
        path.display().to_string()
    }

    /// The settings of a deployment trusting this MDS.
    fn settings<'a>(&'a self, blob: &'a str, root: &'a str) -> Vec<(&'a str, &'a str)> {
        vec![("FIDO_MDS_FILE", blob), ("FIDO_MDS_ROOT_CERT", root)]
    }
}

impl Drop for TestMds {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An MDS3 entry for the SoftToken model with attestation root `ca_der` and `status`.
fn entry(ca_der: &[u8], status: &str) -> Value {
    json!({
        "aaguid": AAGUID,
        "metadataStatement": {
            "legalHeader": "Test metadata: not for production.",
            "aaguid": AAGUID,
            "description": "Logicredit test security key",
            "friendlyNames": {"en-US": "Test security key"},
            "authenticatorVersion": 2,
            "protocolFamily": "fido2",
            "schema": 3,
            "upv": [{"major": 1, "minor": 0}],
            "authenticationAlgorithms": ["secp256r1_ecdsa_sha256_raw"],
            "publicKeyAlgAndEncodings": ["ecc_x962_raw"],
            "attestationTypes": ["basic_full"],
            "userVerificationDetails": [],
            "keyProtection": ["hardware", "secure_element"],
            "matcherProtection": ["on_chip"],
            "tcDisplay": [],
            "attestationRootCertificates": [STANDARD.encode(ca_der)],
            "authenticatorGetInfo": {
                "versions": ["FIDO_2_0"],
                "aaguid": AAGUID,
                "transports": ["usb"],
            },
        },
        "statusReports": [{
            "status": status,
            "effectiveDate": "2026-01-01",
            "authenticatorVersion": 2,
        }],
        "timeOfLastStatusChange": "2026-01-01",
    })
}

/// Starts a registration; returns the ceremony id and the options.
async fn begin(browser: &Browser) -> (Value, Value) {
    let start = browser
        .post("/auth/webauthn/register/start", json!({}))
        .await;
    assert_eq!(
        start.body["code"], "webauthn_registration_options",
        "{start:?}"
    );
    (
        start.body["ceremony_id"].clone(),
        start.body["options"].clone(),
    )
}

async fn complete(
    browser: &Browser,
    ceremony_id: Value,
    credential: Value,
) -> crate::helpers::TestResponse {
    browser
        .post(
            "/auth/webauthn/register/finish",
            json!({"ceremony_id": ceremony_id, "credential": credential, "name": "Key"}),
        )
        .await
}

/// The `reason`s of the `mfa.webauthn.failure` records, in order.
async fn failure_reasons(app: &TestApp) -> Vec<String> {
    app.query("SELECT metadata FROM audit_log WHERE event = 'mfa.webauthn.failure' ORDER BY seq")
        .await
        .into_iter()
        .map(|metadata| {
            let metadata: Value = serde_json::from_str(metadata.as_str().unwrap()).unwrap();
            assert_eq!(metadata["step"], "registration", "{metadata}");
            metadata["reason"].as_str().unwrap().to_owned()
        })
        .collect()
}

async fn registers_attested(app: &TestApp, email: &str, key: &AttestedKey) {
    let browser = app.logged_in(email).await;
    let (ceremony_id, options) = begin(&browser).await;
    let finish = complete(&browser, ceremony_id, key.register(&options).await).await;
    assert_eq!(finish.status, 201, "{finish:?}");
}

async fn refused_attested(app: &TestApp, email: &str, key: &AttestedKey) -> String {
    let browser = app.logged_in(email).await;
    let (ceremony_id, options) = begin(&browser).await;
    let finish = complete(&browser, ceremony_id, key.register(&options).await).await;
    finish.assert_error(400, "webauthn_failed");
    finish.body["message"].as_str().unwrap().to_owned()
}

async fn an_attested_key_from_a_trusted_ca_registers_and_others_are_refused(backend: Backend) {
    let mds = TestMds::new();
    let trusted = AttestedKey::new();
    let blob = mds.write("mds.jwt", vec![entry(&trusted.ca_der, "FIDO_CERTIFIED_L1")]);
    let root = mds.root_path().display().to_string();
    let mut settings = mds.settings(&blob, &root);
    settings.push(("WEBAUTHN_ATTESTATION", "indirect"));
    let app = spawn_app_with(backend, &settings).await;

    // The options ask for attestation.
    let alice = app.logged_in("alice@example.com").await;
    let (ceremony_id, options) = begin(&alice).await;
    assert_eq!(options["publicKey"]["attestation"], "indirect");
    let finish = complete(&alice, ceremony_id, trusted.register(&options).await).await;
    assert_eq!(finish.status, 201, "{finish:?}");
    // The attested key signs in like any passkey.
    let login = app.browser();
    let done = passkey_login(&login, json!({"email": "alice@example.com"}), &trusted).await;
    assert_eq!(done.body["code"], "login_ok", "{done:?}");

    // Same model, but its attestation CA is not in the BLOB.
    let message = refused_attested(&app, "bob@example.com", &AttestedKey::new()).await;
    assert!(message.contains("trusted maker"), "{message}");
    // No attestation at all (a self-attested software passkey).
    let carol = app.logged_in("carol@example.com").await;
    let (ceremony_id, options) = begin(&carol).await;
    complete(&carol, ceremony_id, Passkey::new().register(&options).await)
        .await
        .assert_error(400, "webauthn_failed");
    assert_eq!(
        failure_reasons(&app).await,
        ["attestation_untrusted", "attestation_untrusted"]
    );
}

async fn the_aaguid_allow_list_and_compromise_reports_refuse_trusted_keys(backend: Backend) {
    let mds = TestMds::new();
    let key = AttestedKey::new();
    let root = mds.root_path().display().to_string();

    // Allow-listed elsewhere: the chain is trusted but the model is not listed.
    let blob = mds.write("listed.jwt", vec![entry(&key.ca_der, "FIDO_CERTIFIED_L1")]);
    let mut settings = mds.settings(&blob, &root);
    settings.push(("WEBAUTHN_ATTESTATION", "enterprise"));
    settings.push((
        "WEBAUTHN_ALLOWED_AAGUIDS",
        "cb69481e-8ff7-4039-93ec-0a2729a154a8",
    ));
    let app = spawn_app_with(backend, &settings).await;
    let alice = app.logged_in("alice@example.com").await;
    let (_, options) = begin(&alice).await;
    assert_eq!(options["publicKey"]["attestation"], "enterprise");
    let message = refused_attested(&app, "bob@example.com", &key).await;
    assert!(message.contains("list of allowed"), "{message}");
    assert_eq!(failure_reasons(&app).await, ["aaguid_not_allowed"]);
    drop(app);

    // Listed: accepted.
    let aaguid = AAGUID.to_string();
    let mut settings = mds.settings(&blob, &root);
    settings.push(("WEBAUTHN_ATTESTATION", "enterprise"));
    settings.push(("WEBAUTHN_ALLOWED_AAGUIDS", &aaguid));
    let app = spawn_app_with(backend, &settings).await;
    registers_attested(&app, "carol@example.com", &key).await;
    drop(app);

    // Reported compromised: refused even though listed and chained.
    for status in [
        "ATTESTATION_KEY_COMPROMISE",
        "USER_VERIFICATION_BYPASS",
        "REVOKED",
    ] {
        let blob = mds.write("compromised.jwt", vec![entry(&key.ca_der, status)]);
        let mut settings = mds.settings(&blob, &root);
        settings.push(("WEBAUTHN_ATTESTATION", "indirect"));
        let app = spawn_app_with(backend, &settings).await;
        let message = refused_attested(&app, "dave@example.com", &key).await;
        assert!(message.contains("compromised"), "{status}: {message}");
        assert_eq!(failure_reasons(&app).await, ["authenticator_compromised"]);
    }
}

async fn synced_passkeys_are_refused_for_the_listed_roles_only(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[("REQUIRE_DEVICE_BOUND_PASSKEYS_FOR", "staff,admin")],
    )
    .await;

    // An admin cannot register a synced passkey; a device-bound one is fine.
    let admin = app.logged_in_as("root@example.com", "admin").await;
    let (ceremony_id, options) = begin(&admin).await;
    let refused = complete(&admin, ceremony_id, SyncedPasskey::new().register(&options)).await;
    refused.assert_error(400, "webauthn_failed");
    assert!(
        refused.body["message"]
            .as_str()
            .unwrap()
            .contains("device-bound"),
        "{refused:?}"
    );
    assert_eq!(failure_reasons(&app).await, ["synced_passkey_not_allowed"]);
    let (ceremony_id, options) = begin(&admin).await;
    let device_bound = complete(&admin, ceremony_id, Passkey::new().register(&options).await).await;
    assert_eq!(device_bound.status, 201, "{device_bound:?}");

    // A user may.
    let user = app.logged_in("alice@example.com").await;
    let (ceremony_id, options) = begin(&user).await;
    let synced = SyncedPasskey::new();
    let accepted = complete(&user, ceremony_id, synced.register(&options)).await;
    assert_eq!(accepted.status, 201, "{accepted:?}");
    let sign_in = |browser: Browser| {
        let synced = &synced;
        async move { passkey_login(&browser, json!({"email": "alice@example.com"}), synced).await }
    };
    assert_eq!(sign_in(app.browser()).await.body["code"], "login_ok");

    // Promoted to staff: the synced passkey no longer signs in (audited).
    app.execute("UPDATE users SET role = 'staff' WHERE email = 'alice@example.com'")
        .await;
    let refused = sign_in(app.browser()).await;
    refused.assert_error(401, "webauthn_failed");
    assert!(
        refused.body["message"]
            .as_str()
            .unwrap()
            .contains("device-bound"),
        "{refused:?}"
    );
    let last = app
        .query(
            "SELECT metadata FROM audit_log WHERE event = 'mfa.webauthn.failure' ORDER BY seq DESC",
        )
        .await;
    assert!(
        last[0]
            .as_str()
            .unwrap()
            .contains("synced_passkey_not_allowed"),
        "{last:?}"
    );
}

async fn the_default_accepts_passkeys_unchanged(backend: Backend) {
    let app = spawn_app_with(backend, &[]).await;
    let alice = app.logged_in("alice@example.com").await;
    let (ceremony_id, options) = begin(&alice).await;
    assert_eq!(options["publicKey"]["attestation"], "none");
    let finish1 = complete(&alice, ceremony_id, Passkey::new().register(&options).await).await;
    assert_eq!(finish1.status, 201, "{finish1:?}");
    // Synced passkeys and attested keys of any CA too.
    let (ceremony_id, options) = begin(&alice).await;
    let synced = complete(&alice, ceremony_id, SyncedPasskey::new().register(&options)).await;
    assert_eq!(synced.status, 201, "{synced:?}");
    let (ceremony_id, options) = begin(&alice).await;
    let attested = complete(
        &alice,
        ceremony_id,
        AttestedKey::new().register(&options).await,
    )
    .await;
    assert_eq!(attested.status, 201, "{attested:?}");
}

async fn a_blob_that_does_not_verify_stops_the_start(backend: Backend) {
    let mds = TestMds::new();
    let key = AttestedKey::new();
    let blob = mds.write("mds.jwt", vec![entry(&key.ca_der, "FIDO_CERTIFIED_L1")]);
    let root = mds.root_path().display().to_string();

    // One changed payload character: the signature no longer matches.
    let text = std::fs::read_to_string(&blob).unwrap();
    let mut parts: Vec<String> = text.split('.').map(str::to_owned).collect();
    let middle = parts[1].len() / 2;
    let flipped = if &parts[1][middle..=middle] == "A" {
        "B"
    } else {
        "A"
    };
    parts[1].replace_range(middle..=middle, flipped);
    let tampered = mds.dir.join("tampered.jwt");
    std::fs::write(&tampered, parts.join(".")).unwrap();
    let tampered = tampered.display().to_string();
    let error = startup_error(
        backend,
        &[
            ("WEBAUTHN_ATTESTATION", "indirect"),
            ("FIDO_MDS_FILE", &tampered),
            ("FIDO_MDS_ROOT_CERT", &root),
        ],
    )
    .await;
    assert!(error.contains("does not verify"), "{error}");

    // Signed, but not under the configured root (here: the FIDO Alliance's).
    let error = startup_error(
        backend,
        &[
            ("WEBAUTHN_ATTESTATION", "indirect"),
            ("FIDO_MDS_FILE", &blob),
        ],
    )
    .await;
    assert!(error.contains("does not verify"), "{error}");

    // Missing file; attestation without a trust source; enterprise without a list.
    let error = startup_error(
        backend,
        &[
            ("WEBAUTHN_ATTESTATION", "indirect"),
            ("FIDO_MDS_FILE", "/nonexistent/mds.jwt"),
        ],
    )
    .await;
    assert!(error.contains("FIDO_MDS_FILE"), "{error}");
    let error = startup_error(backend, &[("WEBAUTHN_ATTESTATION", "enterprise")]).await;
    assert!(error.contains("FIDO_MDS_FILE"), "{error}");
    assert!(error.contains("WEBAUTHN_ALLOWED_AAGUIDS"), "{error}");
}

on_both_backends!(
    an_attested_key_from_a_trusted_ca_registers_and_others_are_refused,
    the_aaguid_allow_list_and_compromise_reports_refuse_trusted_keys,
    synced_passkeys_are_refused_for_the_listed_roles_only,
    the_default_accepts_passkeys_unchanged,
    a_blob_that_does_not_verify_stops_the_start,
);
