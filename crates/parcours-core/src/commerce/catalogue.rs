//! What the catalogue holds: items (a SKU, or a kit of component SKUs) with their prices per
//! sales channel and currency, and locations (shops, warehouses, web fulfilment) with their
//! place, hours and the sales channels whose stock they hold.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{check_id, check_quantity, Refusal};

/// Components a kit may have.
pub const MAX_COMPONENTS: usize = 50;
/// Prices an item may have (channels × currencies).
pub const MAX_PRICES: usize = 100;
/// Sales channels a location may serve.
pub const MAX_CHANNELS: usize = 20;

/// A sellable item: a SKU with its own stock, or a kit whose stock is its components'.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub sku: String,
    pub name: String,
    /// The product it is a variant of (a size, a colour), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// For a kit: each component SKU and how many of it one kit takes. Empty for a SKU with
    /// stock of its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<Component>,
    #[serde(default)]
    pub prices: Vec<Price>,
    /// A location's stock of it is low at or below this many available units: a `Low
    /// Stock` event tells it once per fall (none when left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_stock: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    pub sku: String,
    pub quantity: i64,
}

/// A price in minor units (cents) of a currency, on one sales channel or on all of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    /// A sales channel, or `all` (the default): the same price everywhere unless a channel
    /// has its own.
    #[serde(default = "all_channels")]
    pub channel: String,
    pub currency: String,
    pub amount_minor: i64,
}

/// The channel of a price that holds on every channel.
pub const ALL_CHANNELS: &str = "all";

fn all_channels() -> String {
    ALL_CHANNELS.into()
}

impl Item {
    pub fn is_kit(&self) -> bool {
        !self.components.is_empty()
    }

    /// The price on a channel in a currency: the channel's own, else the one for all.
    pub fn price(&self, channel: &str, currency: &str) -> Option<i64> {
        let on = |c: &str| {
            self.prices
                .iter()
                .find(|p| p.channel == c && p.currency == currency)
                .map(|p| p.amount_minor)
        };
        on(channel).or_else(|| on(ALL_CHANNELS))
    }

    pub fn check(&self) -> Result<(), Refusal> {
        check_id("SKU", "invalid_sku", &self.sku)?;
        check_name(&self.name)?;
        if let Some(l) = self.low_stock {
            if !(0..=super::MAX_QUANTITY).contains(&l) {
                return Err(Refusal::new(
                    "invalid_item",
                    format!("low_stock is from 0 to {}; got {l}", super::MAX_QUANTITY),
                ));
            }
            if !self.components.is_empty() {
                return Err(Refusal::new(
                    "invalid_item",
                    "a kit has no stock of its own: give its components a low_stock",
                ));
            }
        }
        if let Some(p) = &self.product {
            check_id("product id", "invalid_item", p)?;
        }
        if self.components.len() > MAX_COMPONENTS {
            return Err(Refusal::new(
                "invalid_item",
                format!(
                    "a kit has at most {MAX_COMPONENTS} components; this one has {}",
                    self.components.len()
                ),
            ));
        }
        let mut seen = BTreeSet::new();
        for c in &self.components {
            check_id("component SKU", "invalid_sku", &c.sku)?;
            check_quantity(c.quantity)?;
            if c.sku == self.sku {
                return Err(Refusal::new(
                    "invalid_item",
                    format!("kit {} cannot be a component of itself", self.sku),
                ));
            }
            if !seen.insert(&c.sku) {
                return Err(Refusal::new(
                    "invalid_item",
                    format!(
                        "component {} is listed twice; give its quantity once",
                        c.sku
                    ),
                ));
            }
        }
        if self.prices.len() > MAX_PRICES {
            return Err(Refusal::new(
                "invalid_item",
                format!("an item has at most {MAX_PRICES} prices"),
            ));
        }
        let mut seen = BTreeSet::new();
        for p in &self.prices {
            check_id("sales channel", "invalid_item", &p.channel)?;
            if p.currency.len() != 3 || !p.currency.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(Refusal::new(
                    "invalid_item",
                    format!(
                        "a currency is an ISO 4217 code of three capital letters (EUR); got {:?}",
                        p.currency
                    ),
                ));
            }
            if !(0..=super::MAX_QUANTITY * 1000).contains(&p.amount_minor) {
                return Err(Refusal::new(
                    "invalid_item",
                    format!(
                        "a price is a whole number of minor units (cents), 0 or more; got {}",
                        p.amount_minor
                    ),
                ));
            }
            if !seen.insert((&p.channel, &p.currency)) {
                return Err(Refusal::new(
                    "invalid_item",
                    format!("two prices for {} in {}", p.channel, p.currency),
                ));
            }
        }
        Ok(())
    }
}

fn check_name(name: &str) -> Result<(), Refusal> {
    if name.trim().is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(Refusal::new(
            "invalid_name",
            "a name has 1 to 200 characters and no control character",
        ));
    }
    Ok(())
}

/// What a location is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocationKind {
    Shop,
    Warehouse,
    /// Fulfilment for online orders (a dark store, a web warehouse).
    Web,
}

impl LocationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LocationKind::Shop => "shop",
            LocationKind::Warehouse => "warehouse",
            LocationKind::Web => "web",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "shop" => LocationKind::Shop,
            "warehouse" => LocationKind::Warehouse,
            "web" => LocationKind::Web,
            _ => return None,
        })
    }
}

/// Whether customers may collect orders at a location, and from which stock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pickup {
    /// No click & collect here.
    #[default]
    Disabled,
    /// Only what this location holds: every line fully in stock here.
    LocalStock,
    /// What the sales channel's locations hold, transferred here if need be.
    AllLocations,
}

impl Pickup {
    pub fn as_str(self) -> &'static str {
        match self {
            Pickup::Disabled => "disabled",
            Pickup::LocalStock => "local_stock",
            Pickup::AllLocations => "all_locations",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "disabled" => Pickup::Disabled,
            "local_stock" => Pickup::LocalStock,
            "all_locations" => Pickup::AllLocations,
            _ => return None,
        })
    }
}

/// A shop, a warehouse or a web fulfilment centre.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub id: String,
    pub name: String,
    pub kind: LocationKind,
    #[serde(default)]
    pub address: String,
    /// WGS 84 degrees; both or neither.
    #[serde(default)]
    pub latitude: Option<f64>,
    #[serde(default)]
    pub longitude: Option<f64>,
    /// An IANA time zone (`Europe/Paris`).
    pub time_zone: String,
    /// Opening hours per day of the week, as written on the door (`"mon": ["09:00-19:00"]`).
    #[serde(default)]
    pub opening_hours: std::collections::BTreeMap<String, Vec<String>>,
    /// The sales channels whose availability counts this location's stock (`web`, `app`,
    /// `pos`, `call_centre` …).
    #[serde(default)]
    pub channels: Vec<String>,
    #[serde(default)]
    pub pickup: Pickup,
    /// Allocation order under the priority strategy: lower first.
    #[serde(default)]
    pub priority: i32,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Location {
    pub fn position(&self) -> Option<(f64, f64)> {
        Some((self.latitude?, self.longitude?))
    }

    pub fn serves(&self, channel: &str) -> bool {
        self.channels.iter().any(|c| c == channel)
    }

    pub fn check(&self) -> Result<(), Refusal> {
        check_id("location id", "invalid_location", &self.id)?;
        check_name(&self.name)?;
        if self.address.chars().count() > 500 {
            return Err(Refusal::new(
                "invalid_location",
                "an address has at most 500 characters",
            ));
        }
        match (self.latitude, self.longitude) {
            (None, None) => {}
            (Some(lat), Some(lon))
                if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) => {}
            _ => {
                return Err(Refusal::new(
                    "invalid_location",
                    "give latitude (−90 to 90) and longitude (−180 to 180) together, or neither",
                ))
            }
        }
        if self.time_zone.parse::<chrono_tz::Tz>().is_err() {
            return Err(Refusal::new(
                "invalid_location",
                format!(
                    "{:?} is not an IANA time zone (like Europe/Paris)",
                    self.time_zone
                ),
            ));
        }
        for (day, spans) in &self.opening_hours {
            if !DAYS.contains(&day.as_str()) {
                return Err(Refusal::new(
                    "invalid_location",
                    format!("opening hours are given per day: mon … sun; got {day:?}"),
                ));
            }
            if spans.len() > 6 {
                return Err(Refusal::new(
                    "invalid_location",
                    "at most 6 opening spans a day",
                ));
            }
            for span in spans {
                if parse_span(span).is_none() {
                    return Err(Refusal::new(
                        "invalid_location",
                        format!("an opening span reads HH:MM-HH:MM with the end after the start; got {span:?}"),
                    ));
                }
            }
        }
        if self.channels.len() > MAX_CHANNELS {
            return Err(Refusal::new(
                "invalid_location",
                format!("a location serves at most {MAX_CHANNELS} sales channels"),
            ));
        }
        for c in &self.channels {
            check_id("sales channel", "invalid_location", c)?;
        }
        Ok(())
    }
}

/// `"09:00-19:00"` as minutes of the day.
fn parse_span(span: &str) -> Option<(u32, u32)> {
    let (a, b) = span.split_once('-')?;
    let minutes = |t: &str| {
        let (h, m) = t.trim().split_once(':')?;
        let (h, m) = (h.parse::<u32>().ok()?, m.parse::<u32>().ok()?);
        (h < 24 && m < 60 || h == 24 && m == 0).then_some(h * 60 + m)
    };
    let (a, b) = (minutes(a)?, minutes(b)?);
    (a < b).then_some((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shop() -> Location {
        Location {
            id: "lyon-part-dieu".into(),
            name: "Lyon Part-Dieu".into(),
            kind: LocationKind::Shop,
            address: "17 rue du Docteur Bouchut, 69003 Lyon".into(),
            latitude: Some(45.7606),
            longitude: Some(4.8566),
            time_zone: "Europe/Paris".into(),
            opening_hours: [("mon".to_string(), vec!["10:00-20:00".to_string()])].into(),
            channels: vec!["web".into(), "pos".into()],
            pickup: Pickup::LocalStock,
            priority: 1,
        }
    }

    #[test]
    fn a_location_is_checked_field_by_field() {
        assert!(shop().check().is_ok());
        let bad = |f: fn(&mut Location)| {
            let mut l = shop();
            f(&mut l);
            l.check().unwrap_err().code
        };
        assert_eq!(bad(|l| l.id = "a/b".into()), "invalid_location");
        assert_eq!(bad(|l| l.latitude = None), "invalid_location");
        assert_eq!(bad(|l| l.latitude = Some(91.0)), "invalid_location");
        assert_eq!(
            bad(|l| l.time_zone = "Mars/Olympus".into()),
            "invalid_location"
        );
        assert_eq!(
            bad(|l| {
                l.opening_hours
                    .insert("mon".into(), vec!["19:00-10:00".into()]);
            }),
            "invalid_location"
        );
        assert_eq!(
            bad(|l| {
                l.opening_hours.insert("monday".into(), vec![]);
            }),
            "invalid_location"
        );
        assert_eq!(bad(|l| l.name = " ".into()), "invalid_name");
    }

    #[test]
    fn a_kit_cannot_hold_itself_nor_a_component_twice() {
        let kit = Item {
            sku: "KIT".into(),
            name: "Starter kit".into(),
            product: None,
            components: vec![
                Component {
                    sku: "A".into(),
                    quantity: 2,
                },
                Component {
                    sku: "B".into(),
                    quantity: 1,
                },
            ],
            prices: vec![Price {
                channel: "web".into(),
                currency: "EUR".into(),
                amount_minor: 4990,
            }],
            low_stock: None,
        };
        assert!(kit.check().is_ok());
        let mut low = kit.clone();
        low.low_stock = Some(3);
        assert!(low
            .check()
            .unwrap_err()
            .message
            .contains("components a low_stock"));
        low.components.clear();
        assert!(low.check().is_ok());
        low.low_stock = Some(-1);
        assert_eq!(low.check().unwrap_err().code, "invalid_item");
        assert_eq!(kit.price("web", "EUR"), Some(4990));
        assert_eq!(kit.price("pos", "EUR"), None);
        let mut everywhere = kit.clone();
        everywhere.prices.push(Price {
            channel: ALL_CHANNELS.into(),
            currency: "EUR".into(),
            amount_minor: 5290,
        });
        assert_eq!(everywhere.price("pos", "EUR"), Some(5290));
        assert_eq!(
            everywhere.price("web", "EUR"),
            Some(4990),
            "a channel's own price first"
        );
        let mut k = kit.clone();
        k.components.push(Component {
            sku: "KIT".into(),
            quantity: 1,
        });
        assert_eq!(k.check().unwrap_err().code, "invalid_item");
        let mut k = kit.clone();
        k.components.push(Component {
            sku: "A".into(),
            quantity: 1,
        });
        assert_eq!(k.check().unwrap_err().code, "invalid_item");
        let mut k = kit;
        k.prices[0].currency = "eur".into();
        assert_eq!(k.check().unwrap_err().code, "invalid_item");
    }
}
