//! Payments (docs/API.md §8 rich authorization requests, §9 transaction confirmation):
//!
//! - `details`: what a payment order is, and how it is validated, normalized and hashed —
//!   the hash is what PSD2 dynamic linking commits to, so everything that is signed goes
//!   through `PaymentOrder::validate` first;
//! - `transactions`: a transaction waiting for the user's confirmation, and the factors
//!   that confirm it;
//! - `confirmation`: the signed proof a payment backend verifies.

pub mod confirmation;
pub mod details;
pub mod transactions;

pub use confirmation::{CONFIRMATION_TYP, ConfirmationClaims, Linking};
pub use details::{
    FieldErrors, InstructedAmount, MAX_BATCH_PAYMENTS, Payee, PaymentInitiation, PaymentOrder,
    TxHash, tx_hash_of,
};
pub use transactions::{Method, Status, TransactionCreated, TransactionView, Transactions};
