//! Black-box scenarios against the real service, each on both deployments (see
//! `on_both_backends!`). Read them against docs/API.md: one module per area of the contract.

// Tests stop loudly: unwrap, expect and panic are how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod helpers;
mod smtp_sink;

mod abuse;
mod admin;
mod advisories;
mod api_reference;
mod audit;
mod authenticators;
mod breached_passwords;
mod cli;
mod compliance_map;
mod email_delivery;
mod fapi;
mod health;
mod login;
mod mfa;
mod new_device;
mod oauth;
mod oauth_payments;
mod oauth_refresh;
mod openapi;
mod passkey_attestation;
mod passkeys;
mod passwords;
mod pci_policy;
mod protocol;
mod registration;
mod sca_login;
mod security_review;
mod sessions;
mod transactions;
mod ui;
