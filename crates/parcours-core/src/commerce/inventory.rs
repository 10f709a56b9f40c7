//! Stock per (item, location) and the decisions on it.
//!
//! The invariants every store keeps (`docs/commerce.md`):
//! - each quantity (on hand, reserved, safety stock, damaged, quality control) is ≥ 0;
//! - available = on hand − reserved − unsellable (safety stock + damaged + quality control);
//! - nothing but a stock count (the physical truth) or a backorder line takes available below
//!   zero: a reservation or a sale that does not fit is refused whole;
//! - a cart's demand is summed per (item, location) before it is checked, so two lines of one
//!   item cannot each see the same last unit (Medusa #16502).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::catalogue::{Item, Location, Pickup};
use super::{check_id, check_quantity, Refusal, MAX_QUANTITY};

/// Lines one reservation or sale may hold.
pub const MAX_LINES: usize = 500;

/// (SKU, location id).
pub type Key = (String, String);

/// The quantities of one item at one location.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quantities {
    pub on_hand: i64,
    /// Held by live reservations (expired ones already left out).
    pub reserved: i64,
    pub safety_stock: i64,
    pub damaged: i64,
    pub quality_control: i64,
}

impl Quantities {
    /// On hand but not for sale.
    pub fn unsellable(&self) -> i64 {
        self.safety_stock + self.damaged + self.quality_control
    }

    /// What can still be sold or reserved; below zero only after a stock count found fewer
    /// units than were promised, or through backorder lines.
    pub fn available(&self) -> i64 {
        self.on_hand - self.reserved - self.unsellable()
    }

    /// What a shopper may be told is there: available, never below zero.
    pub fn sellable(&self) -> i64 {
        self.available().max(0)
    }

    pub fn get(&self, state: StockState) -> i64 {
        match state {
            StockState::OnHand => self.on_hand,
            StockState::SafetyStock => self.safety_stock,
            StockState::Damaged => self.damaged,
            StockState::QualityControl => self.quality_control,
        }
    }

    fn set(&mut self, state: StockState, value: i64) {
        match state {
            StockState::OnHand => self.on_hand = value,
            StockState::SafetyStock => self.safety_stock = value,
            StockState::Damaged => self.damaged = value,
            StockState::QualityControl => self.quality_control = value,
        }
    }
}

/// A quantity a movement changes. Reserved is not one: only reservations change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StockState {
    OnHand,
    SafetyStock,
    Damaged,
    QualityControl,
}

impl StockState {
    pub fn as_str(self) -> &'static str {
        match self {
            StockState::OnHand => "on_hand",
            StockState::SafetyStock => "safety_stock",
            StockState::Damaged => "damaged",
            StockState::QualityControl => "quality_control",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "on_hand" => StockState::OnHand,
            "safety_stock" => StockState::SafetyStock,
            "damaged" => StockState::Damaged,
            "quality_control" => StockState::QualityControl,
            _ => return None,
        })
    }
}

/// How a movement changes its quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Add (or, negative, take away) units: a delivery, a write-off, a sale, a return.
    By(i64),
    /// Set the quantity to what was counted (a stock count) or decided (a safety stock).
    To(i64),
}

/// One change of stock, as asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Adjustment {
    pub sku: String,
    pub location: String,
    pub state: StockState,
    pub change: Change,
    /// Why (`received`, `count`, `sale`, `return`, `damaged`, `transfer` …).
    pub reason: String,
    /// The document behind it (a delivery note, an order, a count sheet).
    pub reference: Option<String>,
}

impl Adjustment {
    pub fn check(&self) -> Result<(), Refusal> {
        check_id("SKU", "invalid_sku", &self.sku)?;
        check_id("location id", "invalid_location", &self.location)?;
        check_id("reason", "invalid_movement", &self.reason)?;
        if let Some(r) = &self.reference {
            check_id("reference", "invalid_movement", r)?;
        }
        match self.change {
            Change::By(0) => Err(Refusal::new(
                "invalid_movement",
                "a movement of 0 units changes nothing; give a delta or a counted quantity",
            )),
            Change::By(d) if d.abs() > MAX_QUANTITY => Err(Refusal::new(
                "invalid_quantity",
                format!("a movement moves at most {MAX_QUANTITY} units; got {d}"),
            )),
            Change::To(n) if !(0..=MAX_QUANTITY).contains(&n) => Err(Refusal::new(
                "invalid_quantity",
                format!("a counted quantity is from 0 to {MAX_QUANTITY}; got {n}"),
            )),
            _ => Ok(()),
        }
    }
}

/// What a movement did: its quantity before and after, in the ledger with its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    pub delta: i64,
    pub after: Quantities,
}

/// Applies a movement to the quantities of its (item, location). A change that takes a
/// quantity below zero is refused; so is one that leaves less available than was promised
/// (units reserved for a click & collect order cannot be sold at the till nor written off),
/// unless it is a count: a count records what is physically there, whatever was promised.
pub fn apply(q: Quantities, a: &Adjustment) -> Result<Moved, Shortage> {
    let before = q.get(a.state);
    let value = match a.change {
        Change::By(d) => before + d,
        Change::To(n) => n,
    };
    let mut after = q;
    after.set(a.state, value);
    let counted = matches!(a.change, Change::To(_)) && a.state == StockState::OnHand;
    let loses_available = after.available() < q.available();
    if !(0..=MAX_QUANTITY).contains(&value)
        || (!counted && loses_available && after.available() < 0)
    {
        return Err(Shortage {
            sku: a.sku.clone(),
            location: a.location.clone(),
            requested: match a.change {
                Change::By(d) => -d,
                Change::To(n) => n,
            },
            available: if a.state == StockState::OnHand || value < 0 {
                q.sellable().min(before)
            } else {
                q.sellable()
            },
        });
    }
    Ok(Moved {
        delta: value - before,
        after,
    })
}

/// One line of a reservation or a sale: units of an item at a location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub sku: String,
    pub location: String,
    pub quantity: i64,
}

/// A line that does not fit: what it asked and what was there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shortage {
    pub sku: String,
    pub location: String,
    pub requested: i64,
    pub available: i64,
}

/// A cart's demand: its lines checked and summed per (item, location), in the order every
/// store locks them.
pub fn demand(lines: &[Line]) -> Result<BTreeMap<Key, i64>, Refusal> {
    if lines.is_empty() || lines.len() > MAX_LINES {
        return Err(Refusal::new(
            "invalid_lines",
            format!("give 1 to {MAX_LINES} lines; got {}", lines.len()),
        ));
    }
    let mut out = BTreeMap::new();
    for l in lines {
        check_id("SKU", "invalid_sku", &l.sku)?;
        check_id("location id", "invalid_location", &l.location)?;
        check_quantity(l.quantity)?;
        *out.entry((l.sku.clone(), l.location.clone())).or_insert(0) += l.quantity;
    }
    if let Some(((sku, loc), q)) = out.iter().find(|(_, q)| **q > MAX_QUANTITY) {
        return Err(Refusal::new(
            "invalid_quantity",
            format!("{q} units of {sku} at {loc} in one cart: at most {MAX_QUANTITY}"),
        ));
    }
    Ok(out)
}

/// Which lines of a summed demand do not fit in the quantities found (an (item, location)
/// with no stock record has nothing available). Empty: all of it fits. With `backorder`,
/// everything fits.
pub fn shortages(
    demand: &BTreeMap<Key, i64>,
    levels: &BTreeMap<Key, Quantities>,
    backorder: bool,
) -> Vec<Shortage> {
    if backorder {
        return Vec::new();
    }
    demand
        .iter()
        .filter_map(|(key, &wanted)| {
            let available = levels.get(key).map_or(0, Quantities::available);
            (available < wanted).then(|| Shortage {
                sku: key.0.clone(),
                location: key.1.clone(),
                requested: wanted,
                available: available.max(0),
            })
        })
        .collect()
}

/// Lines of kits replaced by the lines of their components (a kit of 2 A and 1 B, twice,
/// needs 4 A and 2 B at the same location); other lines stay as they are.
pub fn expand_kits(lines: &[Line], items: &BTreeMap<String, Item>) -> Vec<Line> {
    let mut out = Vec::with_capacity(lines.len());
    for l in lines {
        match items.get(&l.sku).filter(|i| i.is_kit()) {
            Some(kit) => out.extend(kit.components.iter().map(|c| Line {
                sku: c.sku.clone(),
                location: l.location.clone(),
                quantity: l.quantity.saturating_mul(c.quantity),
            })),
            None => out.push(l.clone()),
        }
    }
    out
}

/// How many of an item can be sold from what its SKUs have available: its own availability,
/// or for a kit the fewest whole kits its components make (⌊available ÷ per kit⌋).
pub fn item_available(item: &Item, available: impl Fn(&str) -> i64) -> i64 {
    if item.is_kit() {
        item.components
            .iter()
            .map(|c| available(&c.sku).max(0) / c.quantity)
            .min()
            .unwrap_or(0)
    } else {
        available(&item.sku).max(0)
    }
}

/// What a sales channel can sell of one SKU: the sum over the locations linked to it, each
/// counted at zero when it has none to sell (one shop's shortfall does not hide another's
/// stock).
pub fn channel_available<'a>(
    channel: &str,
    locations: &[Location],
    levels: impl Fn(&str) -> Option<&'a Quantities>,
) -> i64 {
    locations
        .iter()
        .filter(|l| l.serves(channel))
        .filter_map(|l| levels(&l.id))
        .map(Quantities::sellable)
        .sum()
}

/// Great-circle distance in kilometres (haversine, mean Earth radius).
pub fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, lo1, la2, lo2) = (
        a.0.to_radians(),
        a.1.to_radians(),
        b.0.to_radians(),
        b.1.to_radians(),
    );
    let h = ((la2 - la1) / 2.0).sin().powi(2)
        + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * 6371.0088 * h.sqrt().min(1.0).asin()
}

/// How an order's lines are spread over locations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The locations' priority order (lower first).
    #[default]
    Priority,
    /// The nearest to the customer (locations without a position last).
    Nearest,
    /// The one that has most of what the order needs.
    MostStock,
}

impl Strategy {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "priority" => Strategy::Priority,
            "nearest" => Strategy::Nearest,
            "most_stock" => Strategy::MostStock,
            _ => return None,
        })
    }
}

/// A location an order could be served from, with what it has of the order's SKUs.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub location: String,
    pub priority: i32,
    pub distance_km: Option<f64>,
    pub available: BTreeMap<String, i64>,
}

/// Spreads an order's needs (units per SKU) over candidate locations: all or nothing.
/// One location that has everything is always preferred (one parcel, one pickup); with
/// `split`, what no single location has is filled line by line from the locations in the
/// strategy's order. Returns the lines to reserve, or every SKU that cannot be filled.
pub fn allocate(
    needs: &BTreeMap<String, i64>,
    candidates: &[Candidate],
    strategy: Strategy,
    split: bool,
) -> Result<Vec<Line>, Vec<Shortage>> {
    let mut order: Vec<&Candidate> = candidates.iter().collect();
    let held = |c: &Candidate| -> i64 {
        needs
            .iter()
            .map(|(sku, want)| c.available.get(sku).copied().unwrap_or(0).clamp(0, *want))
            .sum()
    };
    match strategy {
        Strategy::Priority => {
            order.sort_by(|a, b| (a.priority, &a.location).cmp(&(b.priority, &b.location)))
        }
        Strategy::Nearest => order.sort_by(|a, b| {
            let d = |c: &Candidate| c.distance_km.unwrap_or(f64::INFINITY);
            d(a).total_cmp(&d(b))
                .then_with(|| a.location.cmp(&b.location))
        }),
        Strategy::MostStock => order.sort_by(|a, b| {
            held(b)
                .cmp(&held(a))
                .then_with(|| a.location.cmp(&b.location))
        }),
    }
    let has_all = |c: &Candidate| {
        needs
            .iter()
            .all(|(sku, want)| c.available.get(sku).copied().unwrap_or(0) >= *want)
    };
    if let Some(c) = order.iter().find(|c| has_all(c)) {
        return Ok(needs
            .iter()
            .map(|(sku, want)| Line {
                sku: sku.clone(),
                location: c.location.clone(),
                quantity: *want,
            })
            .collect());
    }
    let total = |sku: &str| -> i64 {
        order
            .iter()
            .map(|c| c.available.get(sku).copied().unwrap_or(0).max(0))
            .sum()
    };
    if !split {
        // Per SKU, the most any one location has. When each SKU fits somewhere but no
        // location has them all, every SKU is named.
        let best: Vec<Shortage> = needs
            .iter()
            .map(|(sku, want)| Shortage {
                sku: sku.clone(),
                location: String::new(),
                requested: *want,
                available: order
                    .iter()
                    .map(|c| c.available.get(sku).copied().unwrap_or(0).max(0))
                    .max()
                    .unwrap_or(0),
            })
            .collect();
        let short: Vec<Shortage> = best
            .iter()
            .filter(|s| s.available < s.requested)
            .cloned()
            .collect();
        return Err(if short.is_empty() { best } else { short });
    }
    let short: Vec<Shortage> = needs
        .iter()
        .filter(|(sku, want)| total(sku) < **want)
        .map(|(sku, want)| Shortage {
            sku: sku.clone(),
            location: String::new(),
            requested: *want,
            available: total(sku),
        })
        .collect();
    if !short.is_empty() {
        return Err(short);
    }
    let mut lines = Vec::new();
    for (sku, want) in needs {
        let mut left = *want;
        for c in &order {
            if left == 0 {
                break;
            }
            let take = c.available.get(sku).copied().unwrap_or(0).clamp(0, left);
            if take > 0 {
                lines.push(Line {
                    sku: sku.clone(),
                    location: c.location.clone(),
                    quantity: take,
                });
                left -= take;
            }
        }
    }
    Ok(lines)
}

/// Whether an order can be collected at a location: never where pickup is disabled; with
/// local stock, only if that location has every line in full; from all locations, if the
/// sales channel's locations have it between them (`channel_total`).
pub fn pickup_eligible(
    location: &Location,
    needs: &BTreeMap<String, i64>,
    here: impl Fn(&str) -> i64,
    channel_total: impl Fn(&str) -> i64,
) -> bool {
    match location.pickup {
        Pickup::Disabled => false,
        Pickup::LocalStock => needs.iter().all(|(sku, want)| here(sku) >= *want),
        Pickup::AllLocations => needs.iter().all(|(sku, want)| channel_total(sku) >= *want),
    }
}

#[cfg(test)]
mod tests {
    use super::super::catalogue::{Component, LocationKind};
    use super::*;
    use proptest::prelude::{
        any, prop_assert, prop_assert_eq, prop_assume, prop_oneof, proptest, Just,
    };

    fn q(on_hand: i64, reserved: i64) -> Quantities {
        Quantities {
            on_hand,
            reserved,
            ..Default::default()
        }
    }

    fn key(sku: &str, loc: &str) -> Key {
        (sku.into(), loc.into())
    }

    fn line(sku: &str, loc: &str, quantity: i64) -> Line {
        Line {
            sku: sku.into(),
            location: loc.into(),
            quantity,
        }
    }

    #[test]
    fn two_lines_of_one_item_are_summed_before_the_check() {
        // Medusa #16502: two lines share one inventory item, each needs 2, 3 on hand.
        let d = demand(&[line("A", "lyon", 2), line("A", "lyon", 2)]).unwrap();
        assert_eq!(d[&key("A", "lyon")], 4);
        let levels = BTreeMap::from([(key("A", "lyon"), q(3, 0))]);
        let s = shortages(&d, &levels, false);
        assert_eq!(
            s,
            vec![Shortage {
                sku: "A".into(),
                location: "lyon".into(),
                requested: 4,
                available: 3
            }]
        );
        assert!(shortages(&d, &levels, true).is_empty());
        assert_eq!(
            shortages(&d, &BTreeMap::new(), false)[0].available,
            0,
            "no stock record is no stock"
        );
    }

    #[test]
    fn bad_lines_are_refused_with_their_code() {
        assert_eq!(demand(&[]).unwrap_err().code, "invalid_lines");
        assert_eq!(
            demand(&[line("A", "l", 0)]).unwrap_err().code,
            "invalid_quantity"
        );
        assert_eq!(
            demand(&[line("A", "l", MAX_QUANTITY), line("A", "l", 1)])
                .unwrap_err()
                .code,
            "invalid_quantity"
        );
        assert_eq!(demand(&[line("", "l", 1)]).unwrap_err().code, "invalid_sku");
    }

    fn adj(state: StockState, change: Change) -> Adjustment {
        Adjustment {
            sku: "A".into(),
            location: "lyon".into(),
            state,
            change,
            reason: "test".into(),
            reference: None,
        }
    }

    #[test]
    fn units_promised_to_a_reservation_cannot_be_sold_or_written_off() {
        let level = q(3, 2);
        assert_eq!(
            apply(level, &adj(StockState::OnHand, Change::By(-1)))
                .unwrap()
                .after
                .available(),
            0
        );
        let refused = apply(level, &adj(StockState::OnHand, Change::By(-2))).unwrap_err();
        assert_eq!((refused.requested, refused.available), (2, 1));
        assert!(apply(level, &adj(StockState::Damaged, Change::By(2))).is_err());
        assert!(apply(level, &adj(StockState::SafetyStock, Change::To(1))).is_ok());
        // A count is the truth, even below what was promised.
        let counted = apply(level, &adj(StockState::OnHand, Change::To(1))).unwrap();
        assert_eq!((counted.delta, counted.after.available()), (-2, -1));
        assert_eq!(counted.after.sellable(), 0);
        // Receiving stock is always fine; taking a state below zero never is.
        assert!(apply(level, &adj(StockState::OnHand, Change::By(5))).is_ok());
        assert!(apply(level, &adj(StockState::Damaged, Change::By(-1))).is_err());
    }

    fn item(sku: &str, components: &[(&str, i64)]) -> Item {
        Item {
            sku: sku.into(),
            name: sku.into(),
            product: None,
            components: components
                .iter()
                .map(|(s, n)| Component {
                    sku: (*s).into(),
                    quantity: *n,
                })
                .collect(),
            prices: vec![],
            low_stock: None,
        }
    }

    #[test]
    fn a_kit_is_as_available_as_its_scarcest_component() {
        let kit = item("KIT", &[("A", 2), ("B", 1)]);
        let avail = |s: &str| match s {
            "A" => 7,
            "B" => 5,
            _ => 0,
        };
        assert_eq!(item_available(&kit, avail), 3);
        assert_eq!(item_available(&item("B", &[]), avail), 5);
        let items = BTreeMap::from([("KIT".to_string(), kit)]);
        let lines = expand_kits(&[line("KIT", "lyon", 2), line("C", "lyon", 1)], &items);
        assert_eq!(
            lines,
            vec![
                line("A", "lyon", 4),
                line("B", "lyon", 2),
                line("C", "lyon", 1)
            ]
        );
    }

    fn loc(id: &str, channels: &[&str], pickup: Pickup) -> Location {
        Location {
            id: id.into(),
            name: id.into(),
            kind: LocationKind::Shop,
            address: String::new(),
            latitude: None,
            longitude: None,
            time_zone: "Europe/Paris".into(),
            opening_hours: Default::default(),
            channels: channels.iter().map(|c| (*c).into()).collect(),
            pickup,
            priority: 0,
        }
    }

    #[test]
    fn a_channel_counts_only_its_locations_and_no_shortfall() {
        let locs = [
            loc("lyon", &["web", "pos"], Pickup::LocalStock),
            loc("paris", &["pos"], Pickup::Disabled),
            loc("wh", &["web"], Pickup::Disabled),
        ];
        let levels = BTreeMap::from([
            ("lyon".to_string(), q(2, 3)), // counted short: −1
            ("paris".to_string(), q(10, 0)),
            ("wh".to_string(), q(4, 1)),
        ]);
        assert_eq!(channel_available("web", &locs, |l| levels.get(l)), 3);
        assert_eq!(channel_available("pos", &locs, |l| levels.get(l)), 10);
        assert_eq!(channel_available("app", &locs, |l| levels.get(l)), 0);
        let needs = BTreeMap::from([("A".to_string(), 2)]);
        assert!(!pickup_eligible(&locs[0], &needs, |_| 1, |_| 5));
        assert!(pickup_eligible(&locs[0], &needs, |_| 2, |_| 5));
        assert!(!pickup_eligible(&locs[1], &needs, |_| 9, |_| 9));
        let anywhere = loc("x", &["web"], Pickup::AllLocations);
        assert!(pickup_eligible(&anywhere, &needs, |_| 0, |_| 2));
        assert!(!pickup_eligible(&anywhere, &needs, |_| 0, |_| 1));
    }

    #[test]
    fn distances_are_great_circle_kilometres() {
        let lyon = (45.7606, 4.8566);
        let paris = (48.8443, 2.3744);
        let d = distance_km(lyon, paris);
        assert!((d - 392.0).abs() < 5.0, "{d}");
        assert!(distance_km(lyon, lyon) < 1e-9);
    }

    fn cand(id: &str, priority: i32, distance: Option<f64>, stock: &[(&str, i64)]) -> Candidate {
        Candidate {
            location: id.into(),
            priority,
            distance_km: distance,
            available: stock.iter().map(|(s, n)| ((*s).into(), *n)).collect(),
        }
    }

    #[test]
    fn allocation_prefers_one_location_then_splits_all_or_nothing() {
        let cands = [
            cand("a", 1, Some(50.0), &[("X", 1), ("Y", 5)]),
            cand("b", 2, Some(5.0), &[("X", 3), ("Y", 1)]),
            cand("c", 3, None, &[("X", 2), ("Y", 2)]),
        ];
        let needs = BTreeMap::from([("X".to_string(), 2), ("Y".to_string(), 2)]);
        let at = |lines: Vec<Line>| -> Vec<(String, String, i64)> {
            lines
                .into_iter()
                .map(|l| (l.sku, l.location, l.quantity))
                .collect()
        };
        // Only c has both in full: chosen whatever the order.
        for s in [Strategy::Priority, Strategy::Nearest, Strategy::MostStock] {
            let got = at(allocate(&needs, &cands, s, false).unwrap());
            assert!(got.iter().all(|(_, l, _)| l == "c"), "{s:?}: {got:?}");
        }
        let needs = BTreeMap::from([("X".to_string(), 4), ("Y".to_string(), 6)]);
        assert!(allocate(&needs, &cands, Strategy::Priority, false).is_err());
        let got = at(allocate(&needs, &cands, Strategy::Priority, true).unwrap());
        assert_eq!(
            got,
            vec![
                ("X".into(), "a".into(), 1),
                ("X".into(), "b".into(), 3),
                ("Y".into(), "a".into(), 5),
                ("Y".into(), "b".into(), 1),
            ]
        );
        let got = at(allocate(&needs, &cands, Strategy::Nearest, true).unwrap());
        assert_eq!(got[0], ("X".into(), "b".into(), 3));
        let too_much = BTreeMap::from([("X".to_string(), 7)]);
        let short = allocate(&too_much, &cands, Strategy::Priority, true).unwrap_err();
        assert_eq!((short[0].requested, short[0].available), (7, 6));
    }

    proptest! {
        /// Whatever the stock and the order, an allocation gives each SKU exactly what was
        /// asked, never more than a location has, or it refuses the whole order.
        #[test]
        fn allocations_fill_exactly_and_never_beyond_stock(
            stock in proptest::collection::vec(proptest::collection::vec(0i64..6, 3), 1..5),
            wants in proptest::collection::vec(0i64..12, 3),
            split in any::<bool>(),
            strategy in prop_oneof![Just(Strategy::Priority), Just(Strategy::Nearest), Just(Strategy::MostStock)],
        ) {
            let skus = ["X", "Y", "Z"];
            let cands: Vec<Candidate> = stock.iter().enumerate().map(|(i, s)| Candidate {
                location: format!("l{i}"),
                priority: i as i32,
                distance_km: Some((7 * i % 5) as f64),
                available: skus.iter().zip(s).map(|(k, n)| (k.to_string(), *n)).collect(),
            }).collect();
            let needs: BTreeMap<String, i64> = skus.iter().zip(&wants)
                .filter(|(_, w)| **w > 0).map(|(k, w)| (k.to_string(), *w)).collect();
            prop_assume!(!needs.is_empty());
            match allocate(&needs, &cands, strategy, split) {
                Ok(lines) => {
                    for (sku, want) in &needs {
                        let got: i64 = lines.iter().filter(|l| &l.sku == sku).map(|l| l.quantity).sum();
                        prop_assert_eq!(got, *want);
                    }
                    for l in &lines {
                        let c = cands.iter().find(|c| c.location == l.location).unwrap();
                        prop_assert!(l.quantity > 0 && l.quantity <= c.available[&l.sku]);
                    }
                    if !split {
                        prop_assert!(lines.iter().all(|l| l.location == lines[0].location));
                    }
                }
                Err(short) => {
                    prop_assert!(!short.is_empty());
                    if split {
                        for s in &short {
                            let total: i64 = cands.iter().map(|c| c.available[&s.sku]).sum();
                            prop_assert!(total < s.requested);
                        }
                    }
                }
            }
        }
    }
}
