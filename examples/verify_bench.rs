//! Access-token verification in the resource-server helper (`resource_server.rs`) against
//! the raw signature check of the crypto library underneath it (issue 18, item 2). Run by
//! `bench/run.py`; by hand:
//!
//! ```text
//! ISSUER_URL=http://localhost:8000 AUDIENCE=http://localhost:8000 TOKEN=<ES256 access token> \
//!     cargo run --release --example verify_bench -- 4
//! ```
//!
//! Both loops run on one thread and alternate in rounds, so a change in the machine's
//! speed hits both alike. The helper's loop is `JwksVerifier::verify` with the JWKS cached:
//! what each request to a resource server costs (header and claims parsed, `typ`, `alg`,
//! `kid`, signature, `iss`, `aud`, `exp`). The raw loop is p256's ECDSA verify of the same
//! signing input and signature with the key parsed once: jsonwebtoken's `rust_crypto`
//! backend verifies ES256 with p256 0.13. Prints one JSON line.

#[path = "resource_server.rs"]
#[allow(dead_code)]
mod resource_server;

use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256_13::ecdsa::signature::Verifier as _;
use p256_13::ecdsa::{Signature, VerifyingKey};

const ROUNDS: u32 = 6;

/// The token's signature check alone: signing input, signature and key decoded once.
struct RawEs256 {
    signing_input: Vec<u8>,
    signature: Signature,
    key: VerifyingKey,
}

impl RawEs256 {
    fn new(token: &str, jwk: &serde_json::Value) -> anyhow::Result<Self> {
        let (signing_input, signature) = token.rsplit_once('.').context("not a JWS")?;
        let signature = Signature::from_slice(&URL_SAFE_NO_PAD.decode(signature)?)?;
        let coordinate = |name: &str| -> anyhow::Result<Vec<u8>> {
            let value = jwk[name]
                .as_str()
                .with_context(|| format!("jwk has no {name}"))?;
            Ok(URL_SAFE_NO_PAD.decode(value)?)
        };
        // SEC1 uncompressed point: 0x04 ‖ x ‖ y.
        let point = [vec![4u8], coordinate("x")?, coordinate("y")?].concat();
        let key = VerifyingKey::from_sec1_bytes(&point)?;
        let raw = Self {
            signing_input: signing_input.as_bytes().to_vec(),
            signature,
            key,
        };
        anyhow::ensure!(raw.verify(), "the raw check refuses the token");
        Ok(raw)
    }

    fn verify(&self) -> bool {
        self.key
            .verify(&self.signing_input, &self.signature)
            .is_ok()
    }
}

/// The issuer's JWK that signed `token` (the raw loop's key).
async fn signing_jwk(base: &str, token: &str) -> anyhow::Result<serde_json::Value> {
    let header = jsonwebtoken::decode_header(token)?;
    anyhow::ensure!(
        header.alg == jsonwebtoken::Algorithm::ES256,
        "not an ES256 token"
    );
    let kid = header.kid.context("the token names no kid")?;
    let jwks: serde_json::Value = reqwest::get(format!("{base}/oauth/jwks"))
        .await?
        .error_for_status()?
        .json()
        .await?;
    jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == kid.as_str()))
        .cloned()
        .ok_or_else(|| anyhow!("the JWKS has no key {kid}"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let var = |name: &str| std::env::var(name).with_context(|| format!("{name} is not set"));
    let (issuer, audience, token) = (var("ISSUER_URL")?, var("AUDIENCE")?, var("TOKEN")?);
    let base = std::env::var("BASE_URL").unwrap_or_else(|_| issuer.clone());
    let seconds: f64 = match std::env::args().nth(1) {
        Some(s) => s.parse().context("seconds")?,
        None => 4.0,
    };
    let slice = Duration::from_secs_f64(seconds / f64::from(2 * ROUNDS));
    let helper = resource_server::JwksVerifier::new(&issuer, &audience).fetching_from(&base);
    // The first call fetches the JWKS; from then on the cache serves it, as in a service.
    helper
        .verify(&token)
        .await
        .map_err(|e| anyhow!("the helper refuses the token: {e}"))?;
    let raw = RawEs256::new(&token, &signing_jwk(&base, &token).await?)?;

    let (mut helper_ops, mut helper_time) = (0u64, Duration::ZERO);
    let (mut raw_ops, mut raw_time) = (0u64, Duration::ZERO);
    let mut ratios = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let mut ops = 0u64;
        while started.elapsed() < slice {
            for _ in 0..16 {
                helper.verify(&token).await.map_err(|e| anyhow!("{e}"))?;
            }
            ops += 16;
        }
        let (h_ops, h_time) = (ops, started.elapsed());
        let started = Instant::now();
        let mut ops = 0u64;
        while started.elapsed() < slice {
            for _ in 0..16 {
                anyhow::ensure!(raw.verify(), "the raw check failed");
            }
            ops += 16;
        }
        let (r_ops, r_time) = (ops, started.elapsed());
        ratios.push((h_ops as f64 / h_time.as_secs_f64()) / (r_ops as f64 / r_time.as_secs_f64()));
        (helper_ops, helper_time) = (helper_ops + h_ops, helper_time + h_time);
        (raw_ops, raw_time) = (raw_ops + r_ops, raw_time + r_time);
    }
    let helper_rate = helper_ops as f64 / helper_time.as_secs_f64();
    let raw_rate = raw_ops as f64 / raw_time.as_secs_f64();
    ratios.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({
            "helper_verifies_per_s": helper_rate.round(),
            "raw_verifies_per_s": raw_rate.round(),
            "ratio": (helper_rate / raw_rate * 1000.0).round() / 1000.0,
            "ratio_per_round": ratios.iter().map(|r| (r * 1000.0).round() / 1000.0).collect::<Vec<_>>(),
            "helper_us_per_verify": (1e6 / helper_rate * 10.0).round() / 10.0,
            "raw_us_per_verify": (1e6 / raw_rate * 10.0).round() / 10.0,
            "rounds": ROUNDS,
            "threads": 1,
        })
    );
    Ok(())
}
