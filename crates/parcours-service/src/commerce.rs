//! Unified commerce as the API, the console and the CLI reach it: the catalogue and
//! locations, stock with its ledger, availability for every channel, and reservations.
//!
//! Reading stock is open to every role (it holds no personal data); changing the catalogue,
//! the stock or reservations takes the admin role (the token a shop's till or a web shop's
//! back end holds).

pub mod alerts;
pub mod catalogue;
pub mod loyalty;
pub mod offers;
pub mod orders;
pub mod sales;
pub mod stock;

use parcours_core::commerce::Refusal;

use crate::ServiceError;

impl From<Refusal> for ServiceError {
    fn from(r: Refusal) -> Self {
        ServiceError::invalid(r.code, r.message)
    }
}

/// A JSON body read as `T`, or a refusal with `code` saying what did not read.
pub(crate) fn read<T: serde::de::DeserializeOwned>(
    code: &'static str,
    what: &str,
    body: serde_json::Value,
) -> Result<T, ServiceError> {
    serde_json::from_value(body)
        .map_err(|e| ServiceError::invalid(code, format!("{what} does not read: {e}")))
}

/// "2 A at lyon asked, 1 available; …".
pub fn describe_shortages(shortages: &[parcours_core::commerce::inventory::Shortage]) -> String {
    let lines: Vec<String> = shortages
        .iter()
        .map(|s| {
            let at = if s.location.is_empty() {
                String::new()
            } else {
                format!(" at {}", s.location)
            };
            format!(
                "{} {}{at} asked, {} available",
                s.requested, s.sku, s.available
            )
        })
        .collect();
    format!("not enough stock: {}", lines.join("; "))
}
