//! Measurement over the workspace's own event log: the commerce KPIs of
//! [`parcours_core::kpi`], per channel, online or offline, shop, campaign or period. Every role
//! reads them: they hold counts and amounts, no personal data.
//!
//! The log is read whole, each event tied to the live profile it was applied to (following
//! merges): a person is a unified customer, whatever device or channel she used. Events not
//! yet applied to a profile (still on their way) are not counted.
//!
//! What each event says (the names are the Segment e-commerce spec's):
//! - `page` and `screen` calls are visits;
//! - `Product Added` adds to the cart `properties.cart_id` (without one, the person's cart of
//!   that UTC day);
//! - `Order Completed` is order `properties.order_id` (without one, the event itself), worth
//!   `properties.revenue`, else `properties.total`, else `properties.value` (a JSON number; 0
//!   without any); `properties.store_id` names its shop;
//! - `Survey Answered` with an integer `properties.score` of 0 to 10 is a survey answer, about
//!   order `properties.order_id` when it names one;
//! - a campaign touch is `context.campaign.name` on any event, or `properties.campaign_id` on
//!   an event whose name ends in `Clicked` (an email or text message link).

use std::collections::HashMap;

use parcours_core::kpi::{self, Breakdown, Fact, Input, Row, What};
use parcours_core::spec::EventType;
use parcours_store::tallies::start_of_day;
use parcours_store::{Store, StoredEvent};
use serde::Serialize;
use serde_json::Value;

use crate::dashboard::{date, DayRange};
use crate::{Actor, ServiceError};

/// Rows read from the store at a time.
const PAGE: usize = 10_000;

/// The KPIs of a range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Kpis {
    pub from: String,
    pub to: String,
    pub by: Breakdown,
    pub rows: Vec<Row>,
    pub total: Row,
    /// Events read from the log, and how many customer events (with a `userId` or an
    /// `anonymousId`) among them were not yet applied to a profile.
    pub events_read: u64,
    pub events_unapplied: u64,
}

/// The KPIs of the actor's workspace over a range of days, broken down `by`.
pub fn kpis(
    store: &dyn Store,
    actor: &Actor,
    range: DayRange,
    by: Breakdown,
) -> Result<Kpis, ServiceError> {
    let read = read_log(store, &actor.workspace)?;
    let (rows, total) = kpi::compute(
        &read.input,
        start_of_day(range.from),
        start_of_day(range.to + 1),
        by,
    );
    Ok(Kpis {
        from: date(range.from),
        to: date(range.to),
        by,
        rows,
        total,
        events_read: read.events,
        events_unapplied: read.unapplied,
    })
}

/// The KPIs as CSV: a header, the rows, then the total (keyed `total`).
pub fn kpis_csv(k: &Kpis) -> String {
    let mut out = kpi::Row::COLUMNS.join(",");
    out.push('\n');
    let total = Row {
        key: "total".into(),
        ..k.total.clone()
    };
    for row in k.rows.iter().chain([&total]) {
        let fields: Vec<String> = row.csv().into_iter().map(|f| csv_field(&f)).collect();
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

/// A CSV field, quoted when it holds a separator, a quote or a line break; a leading `=`, `+`,
/// `-` or `@` is escaped so that a spreadsheet does not run it as a formula.
fn csv_field(f: &str) -> String {
    let f = if f.starts_with(['=', '+', '@']) || (f.starts_with('-') && f.parse::<f64>().is_err()) {
        format!("'{f}")
    } else {
        f.to_string()
    };
    if f.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f
    }
}

/// The log of a workspace as KPI facts.
pub struct Read {
    pub input: Input,
    pub events: u64,
    pub unapplied: u64,
}

/// Gives each distinct text a number.
#[derive(Default)]
struct Names {
    index: HashMap<String, u32>,
    names: Vec<String>,
}

impl Names {
    fn of(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = self.names.len() as u32;
        self.index.insert(name.to_string(), i);
        self.names.push(name.to_string());
        i
    }
}

/// Reads the workspace's log into facts, each event tied to its live profile.
pub fn read_log(store: &dyn Store, workspace: &str) -> Result<Read, ServiceError> {
    let owners = owners(store, workspace)?;
    let (mut shops, mut campaigns, mut orders, mut carts) = (
        Names::default(),
        Names::default(),
        Names::default(),
        Names::default(),
    );
    let (mut facts, mut events, mut unapplied) = (Vec::new(), 0u64, 0u64);
    let mut after = 0;
    loop {
        let page = store.workspace_events(workspace, after, PAGE)?;
        for e in &page {
            events += 1;
            let Some(&person) = owners.get(&e.seq) else {
                // Parcours' own events (an audience entered) name no customer.
                if e.user_id.is_some() || e.anonymous_id.is_some() {
                    unapplied += 1;
                }
                continue;
            };
            facts.push(fact(
                e,
                person,
                [&mut shops, &mut campaigns, &mut orders, &mut carts],
            ));
        }
        match page.last() {
            Some(last) if page.len() == PAGE => after = last.seq,
            _ => break,
        }
    }
    Ok(Read {
        input: Input {
            facts,
            shops: shops.names,
            campaigns: campaigns.names,
        },
        events,
        unapplied,
    })
}

/// What one event says.
fn fact(e: &StoredEvent, person: u32, [shops, campaigns, orders, carts]: [&mut Names; 4]) -> Fact {
    let name = e.event.as_deref().unwrap_or_default();
    let interesting = matches!(
        (e.kind, name),
        (
            EventType::Track,
            "Product Added" | "Order Completed" | "Survey Answered"
        )
    ) || e.body.contains("campaign");
    let body: Value = if interesting {
        serde_json::from_str(&e.body).unwrap_or_default()
    } else {
        Value::Null
    };
    let props = &body["properties"];
    let text = |v: &Value| match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let touch = match &body["context"]["campaign"]["name"] {
        Value::String(s) if !s.is_empty() => Some(s.as_str()),
        _ if name.ends_with("Clicked") => props["campaign_id"].as_str().filter(|s| !s.is_empty()),
        _ => None,
    }
    .map(|c| campaigns.of(c));
    let what = match (e.kind, name) {
        (EventType::Page | EventType::Screen, _) => What::Visit,
        (EventType::Track, "Product Added") => {
            let cart = text(&props["cart_id"])
                .unwrap_or_else(|| format!("day {}", e.timestamp.div_euclid(86_400_000)));
            What::Cart {
                cart: carts.of(&cart),
            }
        }
        (EventType::Track, "Order Completed") => {
            let id = text(&props["order_id"]).unwrap_or_else(|| format!("event {}", e.message_id));
            let value = ["revenue", "total", "value"]
                .iter()
                .find_map(|k| props[*k].as_f64())
                .filter(|v| v.is_finite())
                .unwrap_or(0.0);
            What::Order {
                order: orders.of(&id),
                value,
            }
        }
        (EventType::Track, "Survey Answered") => match props["score"].as_u64() {
            Some(score @ 0..=10) => What::Answer {
                score: score as u8,
                order: text(&props["order_id"]).map(|o| orders.of(&o)),
            },
            _ => What::Other,
        },
        _ => What::Other,
    };
    let shop = match what {
        What::Order { .. } | What::Cart { .. } => props["store_id"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(|s| shops.of(s)),
        _ => None,
    };
    Fact {
        person,
        at: e.timestamp,
        seq: e.seq,
        channel: e.channel,
        shop,
        touch,
        what,
    }
}

/// The live profile of every event applied to one (as a number per profile).
fn owners(store: &dyn Store, workspace: &str) -> Result<HashMap<i64, u32>, ServiceError> {
    // Merged profiles, to follow to the live one.
    let mut parent: HashMap<String, String> = HashMap::new();
    let mut position = String::new();
    loop {
        let (rows, next) =
            store.profiles_in_storage_order(workspace, &position, (0, PAGE), true)?;
        let end = rows.len() < PAGE;
        for r in rows {
            if let Some(p) = r.merged_into {
                parent.insert(r.id, p);
            }
        }
        if end {
            break;
        }
        position = next;
    }
    let root = |id: &str| -> String {
        let mut id = id;
        // A cycle cannot happen; the bound keeps a corrupt store from hanging a report.
        for _ in 0..=parent.len() {
            match parent.get(id) {
                Some(p) => id = p.as_str(),
                None => break,
            }
        }
        id.to_string()
    };
    let mut people = Names::default();
    let mut owners: HashMap<i64, u32> = HashMap::new();
    let mut position = String::new();
    loop {
        let mut found: Vec<(String, i64)> = Vec::new();
        let (count, next) =
            store.event_owners(workspace, &position, None, PAGE, &mut |p, seq| {
                found.push((p.to_string(), seq));
            })?;
        for (p, seq) in found {
            // One owner an event: the first in profile order, should a store give two.
            let person = people.of(&root(&p));
            owners.entry(seq).or_insert(person);
        }
        if count < PAGE {
            break;
        }
        position = next;
    }
    Ok(owners)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("web"), "web");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=SUM(A1)"), "'=SUM(A1)");
        assert_eq!(csv_field("-0.5"), "-0.5");
        assert_eq!(csv_field("-cmd"), "'-cmd");
    }
}
