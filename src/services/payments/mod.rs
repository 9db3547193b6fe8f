//! Payments (docs/API.md §8 rich authorization requests, §9 transaction confirmation):
//! `details` is what a payment order is, and how it is validated, normalized and hashed —
//! the hash is what PSD2 dynamic linking commits to, so everything that is signed goes
//! through `PaymentOrder::validate` first.

pub mod details;

pub use details::{
    FieldErrors, InstructedAmount, MAX_BATCH_PAYMENTS, Payee, PaymentInitiation, PaymentOrder,
    TxHash, tx_hash_of,
};
