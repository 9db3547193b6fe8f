//! A payment order: one `payment_initiation` (docs/API.md §8 and §9) or a batch of them
//! (PSD2 RTS Art. 5(3)(b): one confirmation for the total and the list of payees).
//!
//! `PaymentOrder::validate` is the only way in: it checks every field, refuses anything it
//! does not know (nothing unsigned may ride along with what is signed), and normalizes
//! what has several spellings — the IBAN to its electronic form, the amount to the
//! currency's minor units, names trimmed — so one payment has one hash. `details()` is the
//! JSON that is shown and signed; `tx_hash()` is base64url(SHA-256(RFC 8785 canonical JSON
//! of it)). Amounts stay strings all the way: JSON numbers are floats to most parsers.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use iban::IbanLike as _;
use iso_currency::Currency;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The only `type` of authorization details this service knows.
pub const PAYMENT_INITIATION: &str = "payment_initiation";
/// A batch holds at most this many payments.
pub const MAX_BATCH_PAYMENTS: usize = 100;
/// `creditorName` and `remittanceInformationUnstructured` (ISO 20022 Max140Text).
pub const MAX_TEXT_CHARS: usize = 140;
/// Digits before the decimal point: up to 999 999 999 999 999 in any currency. Far above
/// any real payment, far below `Decimal`'s range, so totals of a batch cannot overflow.
const MAX_INTEGER_DIGITS: usize = 15;

/// Field path → reason, as `422 validation_error` reports them (`fields`).
pub type FieldErrors = BTreeMap<String, String>;

/// One payment, validated and normalized. Field names are the JSON's (camelCase).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PaymentInitiation {
    /// Always `payment_initiation`.
    #[serde(rename = "type")]
    #[schema(example = "payment_initiation")]
    pub kind: String,
    pub instructed_amount: InstructedAmount,
    /// 1–140 characters after trimming; no control or direction-changing characters.
    #[schema(min_length = 1, max_length = 140, example = "Merchant GmbH")]
    pub creditor_name: String,
    pub creditor_account: CreditorAccount,
    /// At most 140 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 140)]
    pub remittance_information_unstructured: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstructedAmount {
    /// ISO 4217 alphabetic code of a currency in use with minor units.
    #[schema(pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: String,
    /// Positive, with exactly the currency's minor units ("10.50" EUR, "1000" JPY).
    #[schema(pattern = "^[0-9]{1,15}(\\.[0-9]{1,4})?$", example = "10.50")]
    pub amount: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditorAccount {
    /// Electronic form: no spaces, upper case, checksum verified (spaces are accepted
    /// on the way in).
    #[schema(example = "DE89370400440532013000")]
    pub iban: String,
}

/// A payee of an order, for the confirmation page and the batch summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Payee {
    pub name: String,
    pub iban: String,
    pub currency: String,
    pub amount: String,
}

/// SHA-256 of the canonical details: what the confirmation and the WebAuthn challenge
/// commit to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TxHash([u8; 32]);

impl TxHash {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The base64url text (no padding) that `tx_hash` fields carry.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Reads the base64url text back; `None` unless it is exactly 32 bytes.
    pub fn decode(text: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }
}

impl fmt::Display for TxHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

impl fmt::Debug for TxHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TxHash({})", self.encode())
    }
}

/// One payment or a batch; only `validate` makes one, so every order is valid and
/// normalized. (De)serializes as its details, validating again on the way in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Value", into = "Value")]
pub struct PaymentOrder {
    payments: Vec<PaymentInitiation>,
    /// A list was given (even of one): the details stay a JSON array.
    batch: bool,
}

impl PaymentOrder {
    /// The body of `POST /auth/transactions`: one payment object, or a non-empty JSON
    /// array of them (a batch, our extension of §9). Every problem is reported, with paths
    /// like `instructedAmount.amount` or `[2].creditorAccount.iban`.
    pub fn validate(value: &Value) -> Result<Self, FieldErrors> {
        match value {
            Value::Object(_) => {
                let payment = validate_payment(value, "")?;
                Ok(Self {
                    payments: vec![payment],
                    batch: false,
                })
            }
            Value::Array(items) => Self::validate_list(items, "").map(|payments| Self {
                payments,
                batch: true,
            }),
            _ => Err(one(
                "body",
                "must be a payment_initiation object or a list of them",
            )),
        }
    }

    /// An OAuth `authorization_details` array (RFC 9396) whose entries are all
    /// `payment_initiation`: one entry is one payment, several are one batch order.
    /// Paths read `authorization_details[i].…`.
    pub fn from_authorization_details(entries: &[Value]) -> Result<Self, FieldErrors> {
        let payments = Self::validate_list(entries, "authorization_details")?;
        Ok(Self {
            batch: payments.len() > 1,
            payments,
        })
    }

    fn validate_list(items: &[Value], prefix: &str) -> Result<Vec<PaymentInitiation>, FieldErrors> {
        let field = if prefix.is_empty() { "body" } else { prefix };
        if items.is_empty() {
            return Err(one(field, "must list at least one payment"));
        }
        if items.len() > MAX_BATCH_PAYMENTS {
            return Err(one(
                field,
                &format!("at most {MAX_BATCH_PAYMENTS} payments per order"),
            ));
        }
        let mut errors = FieldErrors::new();
        let mut payments = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match validate_payment(item, &format!("{prefix}[{i}].")) {
                Ok(payment) => payments.push(payment),
                Err(found) => errors.extend(found),
            }
        }
        if errors.is_empty() {
            Ok(payments)
        } else {
            Err(errors)
        }
    }

    pub fn payments(&self) -> &[PaymentInitiation] {
        &self.payments
    }

    pub fn is_batch(&self) -> bool {
        self.batch
    }

    /// The normalized JSON that is shown and signed: the object for one payment, the
    /// array for a batch.
    pub fn details(&self) -> Value {
        let mut items: Vec<Value> = self.payments.iter().map(payment_json).collect();
        match (self.batch, items.len()) {
            (false, 1) => items.pop().unwrap_or(Value::Null),
            _ => Value::Array(items),
        }
    }

    /// base64url(SHA-256(RFC 8785 canonical JSON of `details()`)).
    pub fn tx_hash(&self) -> TxHash {
        tx_hash_of(&self.details())
    }

    /// The total per currency (a batch may mix currencies), at the currency's minor units.
    pub fn totals(&self) -> BTreeMap<String, String> {
        let mut sums: BTreeMap<&str, Decimal> = BTreeMap::new();
        for payment in &self.payments {
            let amount = &payment.instructed_amount;
            // Validated: always parses, and MAX_INTEGER_DIGITS keeps the sum in range.
            let value = Decimal::from_str_exact(&amount.amount).unwrap_or_default();
            let sum = sums.entry(amount.currency.as_str()).or_default();
            *sum = sum.checked_add(value).unwrap_or(Decimal::MAX);
        }
        sums.into_iter()
            .map(|(currency, sum)| (currency.to_owned(), sum.to_string()))
            .collect()
    }

    /// Who gets paid how much, in order.
    pub fn payees(&self) -> Vec<Payee> {
        self.payments
            .iter()
            .map(|p| Payee {
                name: p.creditor_name.clone(),
                iban: p.creditor_account.iban.clone(),
                currency: p.instructed_amount.currency.clone(),
                amount: p.instructed_amount.amount.clone(),
            })
            .collect()
    }
}

impl TryFrom<Value> for PaymentOrder {
    type Error = String;

    fn try_from(value: Value) -> Result<Self, Self::Error> {
        Self::validate(&value).map_err(|errors| {
            errors
                .iter()
                .map(|(field, reason)| format!("{field}: {reason}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }
}

impl From<PaymentOrder> for Value {
    fn from(order: PaymentOrder) -> Self {
        order.details()
    }
}

/// base64url(SHA-256(RFC 8785 canonical JSON of `details`)), for any details value — the
/// verifier side recomputes it from the order it is about to execute.
pub fn tx_hash_of(details: &Value) -> TxHash {
    // Canonicalizing a `serde_json::Value` cannot fail: no maps with non-string keys, and
    // amounts are strings, so no number beyond 2^53 reaches json-canon.
    let canonical = json_canon::to_vec(details).unwrap_or_default();
    TxHash(Sha256::digest(&canonical).into())
}

fn payment_json(payment: &PaymentInitiation) -> Value {
    serde_json::to_value(payment).unwrap_or(Value::Null)
}

fn one(field: &str, reason: &str) -> FieldErrors {
    FieldErrors::from([(field.to_owned(), reason.to_owned())])
}

/// Collects the problems of one payment object under `prefix` (e.g. `[2].`).
struct Problems<'a> {
    prefix: &'a str,
    errors: FieldErrors,
}

impl Problems<'_> {
    fn add(&mut self, field: &str, reason: impl Into<String>) {
        self.errors
            .entry(format!("{}{field}", self.prefix))
            .or_insert_with(|| reason.into());
    }

    /// The object at `field` with only `allowed` keys; unknown ones are reported.
    fn object<'v>(
        &mut self,
        value: Option<&'v Value>,
        field: &str,
        allowed: &[&str],
    ) -> Option<&'v Map<String, Value>> {
        let Some(value) = value else {
            self.add(field, "is required");
            return None;
        };
        let Some(map) = value.as_object() else {
            self.add(field, "must be an object");
            return None;
        };
        let base = if field.is_empty() {
            String::new()
        } else {
            format!("{field}.")
        };
        for key in map.keys() {
            if !allowed.contains(&key.as_str()) {
                self.add(&format!("{base}{key}"), "is not allowed");
            }
        }
        Some(map)
    }

    fn string<'v>(&mut self, value: Option<&'v Value>, field: &str) -> Option<&'v str> {
        match value {
            None | Some(Value::Null) => {
                self.add(field, "is required");
                None
            }
            Some(Value::String(text)) => Some(text),
            Some(_) => {
                self.add(field, "must be a string");
                None
            }
        }
    }
}

fn validate_payment(value: &Value, prefix: &str) -> Result<PaymentInitiation, FieldErrors> {
    let mut p = Problems {
        prefix,
        errors: FieldErrors::new(),
    };
    let top = p.object(
        Some(value),
        "",
        &[
            "type",
            "instructedAmount",
            "creditorName",
            "creditorAccount",
            "remittanceInformationUnstructured",
        ],
    );
    let Some(top) = top else {
        let field = if prefix.is_empty() {
            "body".to_owned()
        } else {
            prefix.trim_end_matches('.').to_owned()
        };
        return Err(one(&field, "must be a payment_initiation object"));
    };

    if let Some(kind) = p.string(top.get("type"), "type")
        && kind != PAYMENT_INITIATION
    {
        p.add("type", "must be \"payment_initiation\"");
    }

    let mut instructed = None;
    if let Some(amount) = p.object(
        top.get("instructedAmount"),
        "instructedAmount",
        &["currency", "amount"],
    ) {
        let unit = p
            .string(amount.get("currency"), "instructedAmount.currency")
            .and_then(|code| match currency(code) {
                Ok(c) => Some(c),
                Err(reason) => {
                    p.add("instructedAmount.currency", reason);
                    None
                }
            });
        let text = p.string(amount.get("amount"), "instructedAmount.amount");
        if let Some(text) = text {
            match (parse_amount(text), unit) {
                (Err(reason), _) => p.add("instructedAmount.amount", reason),
                (Ok(value), Some((code, exponent))) => match normalize_amount(value, exponent) {
                    Ok(amount) => {
                        instructed = Some(InstructedAmount {
                            currency: code.to_owned(),
                            amount,
                        })
                    }
                    Err(reason) => p.add("instructedAmount.amount", reason),
                },
                // The currency's own error is reported; its minor units are unknown.
                (Ok(_), None) => {}
            }
        }
    }

    let creditor_name = p
        .string(top.get("creditorName"), "creditorName")
        .and_then(|name| match text_field(name, true) {
            Ok(name) => Some(name),
            Err(reason) => {
                p.add("creditorName", reason);
                None
            }
        });

    let mut iban = None;
    if let Some(account) = p.object(top.get("creditorAccount"), "creditorAccount", &["iban"])
        && let Some(text) = p.string(account.get("iban"), "creditorAccount.iban")
    {
        match normalize_iban(text) {
            Ok(electronic) => iban = Some(electronic),
            Err(reason) => p.add("creditorAccount.iban", reason),
        }
    }

    let remittance = match top.get("remittanceInformationUnstructured") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => match text_field(text, false) {
            Ok(text) if text.is_empty() => None,
            Ok(text) => Some(text),
            Err(reason) => {
                p.add("remittanceInformationUnstructured", reason);
                None
            }
        },
        Some(_) => {
            p.add("remittanceInformationUnstructured", "must be a string");
            None
        }
    };

    match (instructed, creditor_name, iban) {
        (Some(instructed_amount), Some(creditor_name), Some(iban)) if p.errors.is_empty() => {
            Ok(PaymentInitiation {
                kind: PAYMENT_INITIATION.to_owned(),
                instructed_amount,
                creditor_name,
                creditor_account: CreditorAccount { iban },
                remittance_information_unstructured: remittance,
            })
        }
        _ => Err(p.errors),
    }
}

/// An ISO 4217 code of a currency in use that has minor units: superseded codes (HRK),
/// funds (BOV), and units without minor units (XAU, XDR) cannot be paid in.
fn currency(code: &str) -> Result<(&'static str, u32), &'static str> {
    let currency = Currency::from_code(code).ok_or("must be an ISO 4217 currency code")?;
    if currency.is_superseded().is_some() {
        return Err("is a superseded currency");
    }
    if currency.is_fund() || currency.is_special() {
        return Err("is not a currency payments can be made in");
    }
    let exponent = currency
        .exponent()
        .ok_or("is not a currency payments can be made in")?;
    Ok((currency.code(), u32::from(exponent)))
}

/// A positive decimal written as digits with at most one point: no sign, no exponent, no
/// separators (the decimal parser would take `+`, `_` and more).
fn parse_amount(text: &str) -> Result<Decimal, &'static str> {
    const SHAPE: &str = "must be a positive decimal string like \"10.50\"";
    let (integer, fraction) = match text.split_once('.') {
        Some((integer, fraction)) => (integer, Some(fraction)),
        None => (text, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(integer) || fraction.is_some_and(|f| !digits(f)) {
        return Err(SHAPE);
    }
    if integer.trim_start_matches('0').len() > MAX_INTEGER_DIGITS {
        return Err("is too large");
    }
    if fraction.is_some_and(|f| f.len() > 18) {
        return Err("has more decimals than the currency allows");
    }
    let value = Decimal::from_str_exact(text).map_err(|_| SHAPE)?;
    if value.is_zero() || value.is_sign_negative() {
        return Err("must be greater than zero");
    }
    Ok(value)
}

/// The amount at exactly the currency's minor units ("10.5" EUR → "10.50"); more
/// decimals than that are refused, never rounded.
fn normalize_amount(mut value: Decimal, exponent: u32) -> Result<String, &'static str> {
    let value_normalized = value.normalize();
    if value_normalized.scale() > exponent {
        return Err("has more decimals than the currency allows");
    }
    value.rescale(exponent);
    Ok(value.to_string())
}

/// The electronic form of a valid IBAN: spaces removed, upper case, checksum and the
/// country's format checked.
fn normalize_iban(text: &str) -> Result<String, &'static str> {
    let compact: String = text
        .chars()
        .filter(|c| *c != ' ')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if compact.len() > 34 {
        return Err("must be a valid IBAN");
    }
    let iban: iban::Iban = compact.parse().map_err(|_| "must be a valid IBAN")?;
    Ok(iban.electronic_str().to_owned())
}

/// Control characters, and the bidirectional overrides and isolates that can make a
/// payee's name read differently on screen from what is signed.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Trimmed, no control characters, at most 140 characters; `required` refuses empty.
fn text_field(text: &str, required: bool) -> Result<String, String> {
    let trimmed = text.trim();
    if required && trimmed.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if trimmed.chars().any(hidden) {
        return Err("must not contain control or direction-changing characters".to_owned());
    }
    if trimmed.chars().count() > MAX_TEXT_CHARS {
        return Err(format!("must be at most {MAX_TEXT_CHARS} characters"));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const IBAN: &str = "DE89370400440532013000";

    fn payment(currency: &str, amount: &str) -> Value {
        json!({
            "type": "payment_initiation",
            "instructedAmount": {"currency": currency, "amount": amount},
            "creditorName": "Merchant GmbH",
            "creditorAccount": {"iban": IBAN},
            "remittanceInformationUnstructured": "Invoice 42",
        })
    }

    fn amount_error(currency: &str, amount: &str) -> Option<String> {
        PaymentOrder::validate(&payment(currency, amount))
            .err()
            .and_then(|e| e.get("instructedAmount.amount").cloned())
    }

    #[test]
    fn canonical_json_follows_rfc_8785() {
        // RFC 8785 §3.2.2 / §3.2.3: key order, number forms and string escapes.
        let input: Value = serde_json::from_str(
            r#"{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001],
                "string":"\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
                "literals":[null,true,false]}"#,
        )
        .unwrap();
        assert_eq!(
            json_canon::to_string(&input).unwrap(),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }

    #[test]
    fn the_hash_is_sha256_of_the_canonical_details() {
        let order = PaymentOrder::validate(&payment("EUR", "10.5")).unwrap();
        let details = order.details();
        assert_eq!(details["instructedAmount"]["amount"], "10.50");
        // Computed independently: Python's json.dumps(sort_keys=True,
        // separators=(",", ":")) of the same (ASCII) object, SHA-256, base64url.
        assert_eq!(
            json_canon::to_string(&details).unwrap(),
            r#"{"creditorAccount":{"iban":"DE89370400440532013000"},"creditorName":"Merchant GmbH","instructedAmount":{"amount":"10.50","currency":"EUR"},"remittanceInformationUnstructured":"Invoice 42","type":"payment_initiation"}"#
        );
        let expected = "PNcnmfUuot7EjFYmFHoS9sfTiBALsq-R3LNJ9gRuItg";
        assert_eq!(order.tx_hash().encode(), expected);
        assert_eq!(tx_hash_of(&details), order.tx_hash());
        assert_eq!(TxHash::decode(expected), Some(order.tx_hash()));
        assert_eq!(TxHash::decode("c2hvcnQ"), None);
    }

    #[test]
    fn currencies_need_their_minor_units() {
        assert_eq!(
            amount_error("JPY", "100.5").as_deref(),
            Some("has more decimals than the currency allows")
        );
        assert!(amount_error("JPY", "100").is_none());
        assert!(
            amount_error("JPY", "100.0").is_none(),
            "a zero decimal is no decimal"
        );
        let bhd = PaymentOrder::validate(&payment("BHD", "1.234")).unwrap();
        assert_eq!(bhd.details()["instructedAmount"]["amount"], "1.234");
        assert_eq!(
            amount_error("EUR", "0.001").as_deref(),
            Some("has more decimals than the currency allows")
        );
        for refused in ["HRK", "BOV", "XAU", "XXX", "eur", "EURO", "ZZZ"] {
            let errors = PaymentOrder::validate(&payment(refused, "1")).unwrap_err();
            assert!(
                errors.contains_key("instructedAmount.currency"),
                "{refused}: {errors:?}"
            );
        }
    }

    #[test]
    fn amounts_are_positive_plain_decimal_strings() {
        for refused in [
            "0",
            "0.00",
            "-1",
            "+1",
            "1e3",
            "1E3",
            "1_000",
            " 1",
            "1.",
            ".5",
            "",
            "1,00",
            "NaN",
            "1.2.3",
            "1000000000000000",
        ] {
            assert!(
                amount_error("EUR", refused).is_some(),
                "{refused:?} accepted"
            );
        }
        let errors = PaymentOrder::validate(&json!({
            "type": "payment_initiation",
            "instructedAmount": {"currency": "EUR", "amount": 10.5},
            "creditorName": "x",
            "creditorAccount": {"iban": IBAN},
        }))
        .unwrap_err();
        assert_eq!(errors["instructedAmount.amount"], "must be a string");
        let order = PaymentOrder::validate(&payment("EUR", "000999999999999999.9")).unwrap();
        assert_eq!(
            order.details()["instructedAmount"]["amount"],
            "999999999999999.90"
        );
    }

    #[test]
    fn ibans_are_checked_and_normalized() {
        let mut bad = payment("EUR", "1");
        bad["creditorAccount"]["iban"] = json!("DE89370400440532013001");
        let errors = PaymentOrder::validate(&bad).unwrap_err();
        assert_eq!(errors["creditorAccount.iban"], "must be a valid IBAN");

        let mut spaced = payment("EUR", "1");
        spaced["creditorAccount"]["iban"] = json!("de89 3704 0044 0532 0130 00");
        let plain = PaymentOrder::validate(&payment("EUR", "1")).unwrap();
        let spaced = PaymentOrder::validate(&spaced).unwrap();
        assert_eq!(spaced.details()["creditorAccount"]["iban"], IBAN);
        assert_eq!(spaced.tx_hash(), plain.tx_hash());
    }

    #[test]
    fn any_change_changes_the_hash() {
        let base = PaymentOrder::validate(&payment("EUR", "10.00")).unwrap();
        let same = PaymentOrder::validate(&payment("EUR", "10")).unwrap();
        assert_eq!(base.tx_hash(), same.tx_hash());
        let cent = PaymentOrder::validate(&payment("EUR", "10.01")).unwrap();
        assert_ne!(base.tx_hash(), cent.tx_hash());
        let usd = PaymentOrder::validate(&payment("USD", "10.00")).unwrap();
        assert_ne!(base.tx_hash(), usd.tx_hash());
        let mut other = payment("EUR", "10.00");
        other["creditorAccount"]["iban"] = json!("GB82WEST12345698765432");
        let other = PaymentOrder::validate(&other).unwrap();
        assert_ne!(base.tx_hash(), other.tx_hash());
        // A batch of one is an array: not the same statement as the single payment.
        let batch = PaymentOrder::validate(&json!([payment("EUR", "10.00")])).unwrap();
        assert_ne!(base.tx_hash(), batch.tx_hash());
    }

    #[test]
    fn unknown_and_missing_fields_are_named() {
        let errors = PaymentOrder::validate(&json!({
            "type": "credit_transfer",
            "instructedAmount": {"currency": "EUR", "amount": "1", "fee": "1"},
            "creditorName": "   ",
            "creditorAccount": {},
            "debtorAccount": {"iban": IBAN},
            "remittanceInformationUnstructured": "x".repeat(141),
        }))
        .unwrap_err();
        assert_eq!(
            errors.keys().map(String::as_str).collect::<Vec<_>>(),
            vec![
                "creditorAccount.iban",
                "creditorName",
                "debtorAccount",
                "instructedAmount.fee",
                "remittanceInformationUnstructured",
                "type",
            ]
        );
        assert_eq!(errors["debtorAccount"], "is not allowed");
        assert_eq!(errors["creditorAccount.iban"], "is required");
        let errors = PaymentOrder::validate(&json!({})).unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(PaymentOrder::validate(&json!("payment")).is_err());
        let named = |name: &str| {
            PaymentOrder::validate(&json!({
                "type": "payment_initiation",
                "instructedAmount": {"currency": "EUR", "amount": "1"},
                "creditorName": name,
                "creditorAccount": {"iban": IBAN},
            }))
        };
        let trimmed = named("  Merchant GmbH\n").unwrap();
        assert_eq!(trimmed.details()["creditorName"], "Merchant GmbH");
        for hidden in ["Evil\nCorp", "Evil\u{202e}Corp", "Evil\u{2067}Corp"] {
            assert_eq!(
                named(hidden).unwrap_err()["creditorName"],
                "must not contain control or direction-changing characters"
            );
        }
    }

    #[test]
    fn batches_total_per_currency_and_name_their_entries() {
        let order = PaymentOrder::validate(&json!([
            payment("EUR", "10.50"),
            payment("EUR", "0.5"),
            payment("JPY", "1000"),
        ]))
        .unwrap();
        assert!(order.is_batch());
        assert!(order.details().is_array());
        assert_eq!(
            order.totals(),
            BTreeMap::from([
                ("EUR".to_owned(), "11.00".to_owned()),
                ("JPY".to_owned(), "1000".to_owned()),
            ])
        );
        assert_eq!(order.payees().len(), 3);

        let mut bad = payment("EUR", "1");
        bad["creditorAccount"]["iban"] = json!("DE00");
        let errors =
            PaymentOrder::validate(&json!([payment("EUR", "1"), payment("EUR", "1"), bad]))
                .unwrap_err();
        assert_eq!(
            errors.keys().collect::<Vec<_>>(),
            vec!["[2].creditorAccount.iban"]
        );
        assert_eq!(
            PaymentOrder::validate(&json!([])).unwrap_err()["body"],
            "must list at least one payment"
        );
        let too_many: Vec<Value> = (0..=MAX_BATCH_PAYMENTS)
            .map(|_| payment("EUR", "1"))
            .collect();
        assert!(PaymentOrder::validate(&Value::Array(too_many)).is_err());

        let oauth = PaymentOrder::from_authorization_details(&[payment("EUR", "1")]).unwrap();
        assert!(!oauth.is_batch());
        assert!(oauth.details().is_object());
        let errors = PaymentOrder::from_authorization_details(&[payment("EUR", "1"), json!({})])
            .unwrap_err();
        assert!(
            errors.contains_key("authorization_details[1].type"),
            "{errors:?}"
        );
    }

    #[test]
    fn an_order_round_trips_through_its_details() {
        let order =
            PaymentOrder::validate(&json!([payment("EUR", "1"), payment("BHD", "2")])).unwrap();
        let stored = serde_json::to_string(&order).unwrap();
        let back: PaymentOrder = serde_json::from_str(&stored).unwrap();
        assert_eq!(back, order);
        assert_eq!(back.tx_hash(), order.tx_hash());
        assert!(serde_json::from_str::<PaymentOrder>(r#"{"type":"x"}"#).is_err());
    }
}
