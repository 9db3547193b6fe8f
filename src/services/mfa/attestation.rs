//! Which passkeys a deployment accepts (docs/API.md §11 "Passkey attestation"):
//! `WEBAUTHN_ATTESTATION`, `WEBAUTHN_ALLOWED_AAGUIDS`, `FIDO_MDS_FILE` and
//! `REQUIRE_DEVICE_BOUND_PASSKEYS_FOR`.
//!
//! The FIDO Metadata Service BLOB is verified once at start (its JWS signature and x5c
//! chain, by `compact_jwt` as `fido-mds` does it, against the FIDO Alliance's roots or
//! `FIDO_MDS_ROOT_CERT`) and parsed by `fido-mds`. `fido-mds` holds `Rc`s, so nothing of it
//! is kept: what the ceremonies need is extracted at load — the attestation roots as a
//! webauthn-rs `AttestationCaList` (each root trusted only for the AAGUIDs the BLOB lists
//! under it) and the AAGUIDs whose status reports a compromise.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::str::FromStr;
use std::time::SystemTime;

use compact_jwt::crypto::{Certificate, DecodePem, JwsX509VerifierBuilder};
use compact_jwt::{JwsCompact, JwsVerifier};
use fido_mds::mds::FidoMds as MdsBlob;
use fido_mds::{FidoMds, StatusReport};
use serde::Serialize;
use uuid::Uuid;
use webauthn_rs::prelude::{
    AttestationCaList, AttestationCaListBuilder, AttestationMetadata, ParsedAttestation,
    WebauthnError,
};

use crate::configuration::{AttestationMode, PasskeyPolicySettings};
use crate::domain::Role;

/// Why the policy refused a passkey. Audited as the `reason` of `mfa.webauthn.failure`
/// and told to the client in the `webauthn_failed` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PasskeyRefusal {
    /// No attestation, or one that does not chain to a root of the metadata BLOB for
    /// this authenticator model.
    AttestationUntrusted,
    /// The model (AAGUID) is not in `WEBAUTHN_ALLOWED_AAGUIDS`.
    AaguidNotAllowed,
    /// The metadata BLOB reports a compromise (or revocation) for the model.
    AuthenticatorCompromised,
    /// A synced (backup-eligible) passkey where a device-bound one is required.
    SyncedPasskeyNotAllowed,
}

impl PasskeyRefusal {
    /// What the client is told (the `message` of `webauthn_failed`).
    pub fn message(self) -> &'static str {
        match self {
            PasskeyRefusal::AttestationUntrusted => {
                "This authenticator's attestation could not be traced to a trusted maker; use an attested security key."
            }
            PasskeyRefusal::AaguidNotAllowed => {
                "This authenticator model is not on this service's list of allowed authenticators."
            }
            PasskeyRefusal::AuthenticatorCompromised => {
                "This authenticator model is reported as compromised by the FIDO Metadata Service and cannot be used."
            }
            PasskeyRefusal::SyncedPasskeyNotAllowed => {
                "This passkey is synced between devices (backup eligible); this account needs a device-bound passkey, such as a security key."
            }
        }
    }

    /// The refusals webauthn-rs itself decides during an attested registration.
    pub(super) fn from_webauthn(error: &WebauthnError) -> Option<Self> {
        match error {
            WebauthnError::CredentialMayNotBeHardwareBound => {
                Some(PasskeyRefusal::SyncedPasskeyNotAllowed)
            }
            WebauthnError::AttestationNotVerifiable
            | WebauthnError::AttestationChainNotTrusted(_)
            | WebauthnError::AttestationCertificateTrustStoreEmpty
            | WebauthnError::AttestationUntrustedAaguid
            | WebauthnError::AttestationFormatMissingAaguid
            | WebauthnError::AttestationNotSupported
            | WebauthnError::AttestationLeafCertMissing => {
                Some(PasskeyRefusal::AttestationUntrusted)
            }
            _ => None,
        }
    }
}

/// The metadata statuses that make a model unusable (FIDO MDS3 §3.1.4: a relying party
/// should not trust an authenticator with them). Any such report counts, whatever the
/// firmware version it names: a registration cannot tell the firmware of a packed
/// authenticator, so the model as a whole is refused.
fn compromise(report: &StatusReport) -> Option<&'static str> {
    match report {
        StatusReport::UserVerificationBypass { .. } => Some("USER_VERIFICATION_BYPASS"),
        StatusReport::AttestationKeyCompromise { .. } => Some("ATTESTATION_KEY_COMPROMISE"),
        StatusReport::UserKeyRemoteCompromise { .. } => Some("USER_KEY_REMOTE_COMPROMISE"),
        StatusReport::UserKeyPhysicalCompromise { .. } => Some("USER_KEY_PHYSICAL_COMPROMISE"),
        StatusReport::Revoked { .. } => Some("REVOKED"),
        _ => None,
    }
}

/// What a verified metadata BLOB contributes.
struct Metadata {
    trusted: AttestationCaList,
    /// AAGUID → the compromise status its reports carry.
    compromised: BTreeMap<Uuid, &'static str>,
    serial: u32,
    next_update: String,
    models: usize,
}

/// The policy, built once at start.
pub struct PasskeyPolicy {
    mode: AttestationMode,
    allowed_aaguids: BTreeSet<Uuid>,
    trusted: AttestationCaList,
    compromised: BTreeMap<Uuid, &'static str>,
    device_bound_roles: BTreeSet<Role>,
}

impl PasskeyPolicy {
    /// Loads and verifies the metadata BLOB when attestation is on. A missing file, a
    /// BLOB whose signature or chain does not verify, or one that yields no usable root
    /// stops the start (fail closed).
    pub fn load(settings: &PasskeyPolicySettings) -> anyhow::Result<Self> {
        let mut policy = Self {
            mode: settings.attestation,
            allowed_aaguids: settings.allowed_aaguids.iter().copied().collect(),
            trusted: AttestationCaList::default(),
            compromised: BTreeMap::new(),
            device_bound_roles: settings.device_bound_roles.iter().copied().collect(),
        };
        if settings.attestation == AttestationMode::None {
            // Production refuses these (configuration.rs); say so in development too.
            if !settings.allowed_aaguids.is_empty() || settings.mds_file.is_some() {
                tracing::warn!(
                    "WEBAUTHN_ALLOWED_AAGUIDS and FIDO_MDS_FILE are ignored with WEBAUTHN_ATTESTATION=none"
                );
            }
            return Ok(policy);
        }
        let Some(path) = &settings.mds_file else {
            anyhow::bail!("WEBAUTHN_ATTESTATION needs FIDO_MDS_FILE");
        };
        let root =
            match &settings.mds_root_cert {
                Some(root_path) => Some(std::fs::read_to_string(root_path).map_err(|e| {
                    anyhow::anyhow!("FIDO_MDS_ROOT_CERT {}: {e}", root_path.display())
                })?),
                None => None,
            };
        let blob = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("FIDO_MDS_FILE {}: {e}", path.display()))?;
        let metadata = verify_blob(blob.trim(), root.as_deref(), path)?;
        if metadata.trusted.is_empty() {
            anyhow::bail!(
                "FIDO_MDS_FILE {}: the BLOB lists no usable FIDO2 attestation root",
                path.display()
            );
        }
        tracing::info!(
            no = metadata.serial,
            next_update = %metadata.next_update,
            models = metadata.models,
            roots = metadata.trusted.len(),
            compromised = metadata.compromised.len(),
            "FIDO metadata BLOB loaded"
        );
        if is_past(&metadata.next_update) {
            tracing::warn!(
                no = metadata.serial,
                next_update = %metadata.next_update,
                "FIDO metadata BLOB is past its nextUpdate: fetch a new one (it is still used)"
            );
        }
        policy.trusted = metadata.trusted;
        policy.compromised = metadata.compromised;
        Ok(policy)
    }

    pub fn mode(&self) -> AttestationMode {
        self.mode
    }

    /// The roots an attested registration must chain to (empty with `none`).
    pub fn trusted(&self) -> &AttestationCaList {
        &self.trusted
    }

    /// Whether any role is limited to device-bound passkeys.
    pub fn any_device_bound_role(&self) -> bool {
        !self.device_bound_roles.is_empty()
    }

    /// Whether `role` may only use device-bound passkeys.
    pub fn requires_device_bound(&self, role: Role) -> bool {
        self.device_bound_roles.contains(&role)
    }

    /// The checks after webauthn-rs verified an attested registration (signature, chain
    /// to a root of the BLOB, AAGUID listed under that root, not backup eligible): the
    /// model's metadata status and the allow-list.
    pub fn check_model(&self, attestation: &ParsedAttestation) -> Result<Uuid, PasskeyRefusal> {
        let aaguid = match &attestation.metadata {
            AttestationMetadata::Packed { aaguid } | AttestationMetadata::Tpm { aaguid, .. } => {
                *aaguid
            }
            _ => return Err(PasskeyRefusal::AttestationUntrusted),
        };
        if let Some(status) = self.compromised.get(&aaguid) {
            tracing::warn!(%aaguid, status, "passkey refused: metadata reports a compromise");
            return Err(PasskeyRefusal::AuthenticatorCompromised);
        }
        if !self.allowed_aaguids.is_empty() && !self.allowed_aaguids.contains(&aaguid) {
            return Err(PasskeyRefusal::AaguidNotAllowed);
        }
        Ok(aaguid)
    }
}

/// Verifies the BLOB's JWS and x5c chain, then parses it with `fido-mds`. Without
/// `root`, `fido-mds` checks against the FIDO Alliance's pinned GlobalSign roots; with
/// it, the same `compact_jwt` verification runs against that root instead.
fn verify_blob(blob: &str, root: Option<&str>, path: &Path) -> anyhow::Result<Metadata> {
    let refused = |reason: String| {
        anyhow::anyhow!(
            "FIDO_MDS_FILE {}: the BLOB does not verify ({reason}); refusing to start",
            path.display()
        )
    };
    let raw: MdsBlob = match root {
        None => MdsBlob::from_str(blob)
            .map_err(|e| refused(format!("against the FIDO Alliance roots: {e}")))?,
        Some(pem) => {
            let root = Certificate::from_pem(pem.as_bytes())
                .map_err(|e| anyhow::anyhow!("FIDO_MDS_ROOT_CERT: not a PEM certificate: {e}"))?;
            let jws = JwsCompact::from_str(blob).map_err(|e| refused(format!("not a JWS: {e}")))?;
            let (leaf, chain) = jws
                .get_x5c_chain()
                .map_err(|e| refused(format!("x5c: {e}")))?
                .ok_or_else(|| refused("no x5c header".to_owned()))?;
            let verifier = JwsX509VerifierBuilder::new(&leaf, &chain)
                .add_trust_root(root)
                .build(SystemTime::now())
                .map_err(|e| refused(format!("x5c chain against FIDO_MDS_ROOT_CERT: {e}")))?;
            let released = verifier
                .verify(&jws)
                .map_err(|e| refused(format!("signature: {e}")))?;
            released
                .from_json()
                .map_err(|e| refused(format!("payload: {e}")))?
        }
    };
    let serial = raw.no;
    let next_update = raw.next_update.clone();
    let mds = FidoMds::from(raw);
    let mut builder = AttestationCaListBuilder::new();
    let mut compromised = BTreeMap::new();
    for device in &mds.fido2 {
        if let Some(status) = device.status_reports.iter().find_map(compromise) {
            compromised.insert(device.aaguid, status);
        }
        for der in &device.attestation_root_certificates {
            // One unreadable root must not drop the others (fido-mds' own list builder
            // gives up on the first).
            if let Err(error) = builder.insert_device_der(
                der,
                device.aaguid,
                device.description.clone(),
                device.alternative_descriptions.clone(),
            ) {
                tracing::warn!(aaguid = %device.aaguid, ?error, "FIDO metadata: unreadable attestation root skipped");
            }
        }
    }
    Ok(Metadata {
        trusted: builder.build(),
        compromised,
        serial,
        next_update,
        models: mds.fido2.len(),
    })
}

/// `nextUpdate` is an ISO-8601 date (`2026-12-01`); an unreadable one counts as past.
fn is_past(next_update: &str) -> bool {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    match time::Date::parse(next_update, &format) {
        Ok(date) => date < time::OffsetDateTime::now_utc().date(),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_update_in_the_past_or_unreadable_is_past() {
        assert!(is_past("2020-01-01"));
        assert!(is_past("soon"));
        assert!(!is_past("2999-12-31"));
    }

    #[test]
    fn a_tampered_blob_is_refused() {
        let error = verify_blob("a.b.c", Some("not pem"), Path::new("mds.jwt"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("FIDO_MDS_ROOT_CERT"), "{error}");
        let error = verify_blob("a.b.c", None, Path::new("mds.jwt"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("does not verify"), "{error}");
    }
}
