//! Unified commerce: the pure rules of one stock across shops, warehouses and web, and of the
//! loyalty ledger every channel earns and burns on.
//!
//! - [`inventory`]: quantities per (item, location), what is available, a cart's demand
//!   summed per (item, location) before it is checked, kits, channel availability, allocation
//!   of an order over locations and click & collect eligibility.
//! - [`loyalty`]: point lots with expiry and a return window, burns that take the
//!   soonest-expiring points first, refunds that give back exactly those lots, tiers.
//! - [`offers`]: one promotion engine for every channel: conditions, rewards, coupons,
//!   priority and stacking, and why an offer did not apply.
//! - [`catalogue`]: what an item, a kit and a location are, and how they are checked.
//!
//! No I/O and no clock: every decision takes `now`.

pub mod catalogue;
pub mod inventory;
pub mod loyalty;
pub mod offers;

/// Why a commerce input was refused: a stable code and a message a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// The most units one line, level or movement may carry: far above any real stock, far below
/// where sums of them could overflow.
pub const MAX_QUANTITY: i64 = 1_000_000_000;

/// Checks an identifier a user chose (a SKU, a location id, an order id): 1 to 100
/// characters, none of them a control character, a slash (they are path segments) or a
/// comma (lists of them are comma-separated).
pub fn check_id(what: &str, code: &'static str, id: &str) -> Result<(), Refusal> {
    let a = if what.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    if id.is_empty() || id.chars().count() > 100 {
        return Err(Refusal::new(
            code,
            format!(
                "{a} {what} has 1 to 100 characters; this one has {}",
                id.chars().count()
            ),
        ));
    }
    if id.trim() != id || id.chars().any(|c| c.is_control() || c == '/' || c == ',') {
        return Err(Refusal::new(
            code,
            format!(
                "{a} {what} may not start or end with a space nor hold a slash, a comma or a control character: {id:?}"
            ),
        ));
    }
    Ok(())
}

/// Checks a quantity of units a line asks for: a whole number from 1 to [`MAX_QUANTITY`].
pub fn check_quantity(quantity: i64) -> Result<(), Refusal> {
    if !(1..=MAX_QUANTITY).contains(&quantity) {
        return Err(Refusal::new(
            "invalid_quantity",
            format!("a quantity is a whole number from 1 to {MAX_QUANTITY}; got {quantity}"),
        ));
    }
    Ok(())
}
