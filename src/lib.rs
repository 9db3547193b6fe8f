//! Logicredit Auth: an authentication service for banking workloads.
//!
//! Layers, outside in: `http` (routes, extractors, errors) and `ui` (the hosted pages, which
//! use only the JSON API) → `services` (use cases and rules) → `storage` (database and
//! ephemeral store) and `crypto`. `configuration`,
//! `startup` and `telemetry` wire them together; `cli` is the binary's front door.

pub mod cli;
pub mod configuration;
pub mod crypto;
pub mod domain;
pub mod http;
pub mod services;
pub mod startup;
pub mod storage;
pub mod telemetry;
pub mod ui;

/// rustls may see more than one crypto provider in the dependency graph; pick ring once.
/// jsonwebtoken's ES256 goes to ring as well (crypto/jose.rs).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    crypto::jose::install();
}
