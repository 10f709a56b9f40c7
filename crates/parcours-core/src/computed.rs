//! Computed traits: values derived from a profile's events (an order count, a lifetime
//! value, the favourite category, a lifecycle stage), and RFM scores over a workspace.
//!
//! Like audience conditions, a computed trait is a pure function of the profile's events and
//! `now`, and says when its value next changes on its own (an order leaving a 90-day window).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::audience::eval::{float_value, number, property, test_value, EventFact};
use crate::audience::{check_duration, check_window, Filter, Refusal, Window};
use crate::time::{Millis, DAY};

/// What a computed trait computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// How many matching events.
    Count,
    Sum,
    Avg,
    Min,
    Max,
    /// The property on the earliest matching event.
    First,
    /// The property on the latest matching event.
    Last,
    /// The property's most frequent value (ties: the value seen most recently).
    MostFrequent,
    /// The property's distinct values, sorted.
    UniqueList,
    UniqueCount,
    /// `new`, `active`, `at_risk`, `lapsed` (or `prospect`) from the matching events.
    Lifecycle,
    /// RFM quintile scores against every customer of the workspace (`property` is the amount
    /// spent). Scored by a workspace-wide pass, not per profile; see [`rfm_scores`].
    Rfm,
    /// Lifetime value: BG/NBD and Gamma-Gamma fitted on every customer's purchases
    /// (`property` is the amount), then each customer's probability of being alive, expected
    /// purchases, discounted value, value decile and whether she is likely to lapse. Scored by
    /// the workspace-wide pass; see [`clv_scores`].
    Clv,
}

impl Kind {
    /// Scored against every customer of the workspace together, not per profile.
    pub fn workspace_wide(self) -> bool {
        matches!(self, Kind::Rfm | Kind::Clv)
    }

    fn needs_property(self) -> bool {
        !matches!(self, Kind::Count | Kind::Lifecycle)
    }
}

/// Thresholds of the lifecycle stage, in days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lifecycle {
    /// First matching event at most this many days ago: `new`.
    pub new_days: i64,
    /// Latest matching event at most this many days ago: `active`.
    pub active_days: i64,
    /// Latest matching event at most this many days ago: `at_risk`; older: `lapsed`.
    pub lapsed_days: i64,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            new_days: 30,
            active_days: 90,
            lapsed_days: 180,
        }
    }
}

/// A computed trait definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComputedTrait {
    /// The name conditions use (`computed ltv > 500`).
    pub id: String,
    pub kind: Kind,
    /// The events it reads.
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<String>,
    #[serde(default, rename = "where", skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
    #[serde(default)]
    pub window: Window,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,
    /// `rfm` and `lifecycle` score known customers only (anonymous till receipts and
    /// browsers are not customers to rank) unless this says otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_anonymous: bool,
}

impl ComputedTrait {
    /// Whether this trait has a value for a profile of this kind (known or anonymous).
    pub fn scores(&self, known: bool) -> bool {
        known
            || self.include_anonymous
            || !matches!(self.kind, Kind::Rfm | Kind::Clv | Kind::Lifecycle)
    }
}

impl ComputedTrait {
    /// Checks a definition; the refusal's code is `invalid_computed_trait` unless a limit
    /// (`duration_out_of_range`) says more.
    pub fn check(&self) -> Result<(), Refusal> {
        let invalid = |m: String| Refusal::new("invalid_computed_trait", m);
        crate::audience::check_id(&self.id).map_err(invalid)?;
        if self.event.trim().is_empty() {
            return Err(invalid(
                "`event` must name the events the trait reads".into(),
            ));
        }
        if self.kind.needs_property() && self.property.as_deref().unwrap_or("").is_empty() {
            return Err(invalid(format!(
                "a `{}` trait needs a `property`",
                kind_name(self.kind)
            )));
        }
        if let Some(l) = self.lifecycle {
            if self.kind != Kind::Lifecycle {
                return Err(invalid(
                    "`lifecycle` thresholds belong to a `lifecycle` trait".into(),
                ));
            }
            if !(0 < l.new_days && 0 < l.active_days && l.active_days < l.lapsed_days) {
                return Err(invalid(
                    "lifecycle thresholds need 0 < new_days, 0 < active_days < lapsed_days".into(),
                ));
            }
            for days in [l.new_days, l.active_days, l.lapsed_days] {
                check_duration(days.saturating_mul(DAY), "a lifecycle threshold")?;
            }
        }
        if self.filters.len() > crate::audience::MAX_CONDITIONS {
            return Err(Refusal::new(
                "audience_too_large",
                format!(
                    "a computed trait holds at most {} filters",
                    crate::audience::MAX_CONDITIONS
                ),
            ));
        }
        check_window(&self.window).map_err(|r| match r.code {
            "invalid_audience" => invalid(r.message),
            _ => r,
        })
    }

    /// The value at `now` (`Null` when there is none) and when it next changes on its own.
    pub fn compute(&self, events: &[EventFact], now: Millis) -> (Value, Option<Millis>) {
        let mut next: Option<Millis> = None;
        let mut bump = |t: Millis| next = Some(next.map_or(t, |n: Millis| n.min(t)));
        let mut matching: Vec<&EventFact> = Vec::new();
        for e in events {
            if e.name != self.event
                || !self
                    .filters
                    .iter()
                    .all(|f| test_value(property(&e.properties, &f.property), &f.test, now).0)
            {
                continue;
            }
            if e.ts > now {
                bump(e.ts);
                continue;
            }
            match self.window {
                Window::Ever => matching.push(e),
                Window::Between { from, to } => {
                    if e.ts >= from && e.ts < to {
                        matching.push(e)
                    }
                }
                Window::Within { ms } => {
                    if e.ts.saturating_add(ms) > now {
                        bump(e.ts.saturating_add(ms));
                        matching.push(e)
                    }
                }
            }
        }
        matching.sort_by_key(|e| e.ts);
        let prop = |e: &EventFact| -> Option<Value> {
            let name = self.property.as_deref()?;
            property(&e.properties, name)
                .filter(|v| !v.is_null())
                .cloned()
        };
        let numbers = || -> Vec<f64> {
            matching
                .iter()
                .filter_map(|e| prop(e).as_ref().and_then(number))
                .collect()
        };
        let value = match self.kind {
            Kind::Count => Value::from(matching.len() as u64),
            Kind::Sum => float_value(numbers().iter().sum()),
            Kind::Avg => {
                let xs = numbers();
                if xs.is_empty() {
                    Value::Null
                } else {
                    float_value(xs.iter().sum::<f64>() / xs.len() as f64)
                }
            }
            Kind::Min => numbers()
                .into_iter()
                .reduce(f64::min)
                .map_or(Value::Null, float_value),
            Kind::Max => numbers()
                .into_iter()
                .reduce(f64::max)
                .map_or(Value::Null, float_value),
            Kind::First => matching.iter().find_map(|e| prop(e)).unwrap_or(Value::Null),
            Kind::Last => matching
                .iter()
                .rev()
                .find_map(|e| prop(e))
                .unwrap_or(Value::Null),
            Kind::MostFrequent => {
                // Count per value; remember where each was last seen to break ties.
                let mut counts: BTreeMap<String, (usize, usize, Value)> = BTreeMap::new();
                for (i, e) in matching.iter().enumerate() {
                    if let Some(v) = prop(e) {
                        let slot = counts.entry(v.to_string()).or_insert((0, 0, v));
                        slot.0 += 1;
                        slot.1 = i;
                    }
                }
                counts
                    .into_values()
                    .max_by_key(|(n, last, _)| (*n, *last))
                    .map_or(Value::Null, |(_, _, v)| v)
            }
            Kind::UniqueList | Kind::UniqueCount => {
                let mut seen: BTreeMap<String, Value> = BTreeMap::new();
                for e in &matching {
                    if let Some(v) = prop(e) {
                        let key = match &v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        seen.entry(key).or_insert(v);
                    }
                }
                if self.kind == Kind::UniqueCount {
                    Value::from(seen.len() as u64)
                } else {
                    Value::Array(seen.into_values().collect())
                }
            }
            // The customer's purchases; the model needs every customer (`clv_scores`).
            Kind::Clv => {
                let purchases: Vec<Value> = matching
                    .iter()
                    .map(|e| json!([e.ts, prop(e).as_ref().and_then(number).unwrap_or(0.0)]))
                    .collect();
                if purchases.is_empty() {
                    Value::Null
                } else {
                    json!({ "purchases": purchases })
                }
            }
            Kind::Rfm => match matching.last() {
                // The customer's inputs; the scores need every customer (`rfm_scores`).
                Some(last) => json!({
                    "last": last.ts,
                    "frequency": matching.len(),
                    "monetary": float_value(numbers().iter().sum()),
                }),
                None => Value::Null,
            },
            Kind::Lifecycle => {
                let t = self.lifecycle.unwrap_or_default();
                let (stage, flip) = lifecycle_stage(
                    matching.first().map(|e| e.ts),
                    matching.last().map(|e| e.ts),
                    &t,
                    now,
                );
                if let Some(f) = flip {
                    bump(f);
                }
                Value::String(stage.into())
            }
        };
        (value, next)
    }
}

fn kind_name(kind: Kind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The lifecycle stage from the first and latest activity, and when it changes next.
///
/// `new` while the first activity is at most `new_days` old; then `active` while the latest is
/// at most `active_days` old, `at_risk` while at most `lapsed_days`, and `lapsed` after.
/// A profile with no activity at all is a `prospect`.
pub fn lifecycle_stage(
    first: Option<Millis>,
    last: Option<Millis>,
    t: &Lifecycle,
    now: Millis,
) -> (&'static str, Option<Millis>) {
    let (Some(first), Some(last)) = (first, last) else {
        return ("prospect", None);
    };
    let new_until = first.saturating_add(t.new_days.saturating_mul(DAY));
    let active_until = last.saturating_add(t.active_days.saturating_mul(DAY));
    let risk_until = last.saturating_add(t.lapsed_days.saturating_mul(DAY));
    if now < new_until {
        ("new", Some(new_until))
    } else if now < active_until {
        ("active", Some(active_until))
    } else if now < risk_until {
        ("at_risk", Some(risk_until))
    } else {
        ("lapsed", None)
    }
}

impl ComputedTrait {
    /// A customer's RFM inputs (an `rfm` trait): `None` without a matching purchase.
    pub fn rfm_input(&self, profile: &str, events: &[EventFact], now: Millis) -> Option<RfmInput> {
        let (v, _) = self.compute(events, now);
        Some(RfmInput {
            profile: profile.into(),
            last: v.get("last")?.as_i64()?,
            frequency: v.get("frequency")?.as_u64()?,
            monetary: v.get("monetary")?.as_f64()?,
        })
    }
}

/// What the workspace-wide pass gathers of one customer, by kind.
#[derive(Debug, Clone, PartialEq)]
pub enum WideInput {
    Rfm(RfmInput),
    /// A customer's purchases: when, and the amount.
    Clv {
        profile: String,
        purchases: Vec<(Millis, f64)>,
    },
}

impl ComputedTrait {
    /// A customer's inputs to the workspace-wide pass of an `rfm` or `clv` trait: `None`
    /// without a matching purchase (or for another kind).
    pub fn wide_input(
        &self,
        profile: &str,
        events: &[EventFact],
        now: Millis,
    ) -> Option<WideInput> {
        match self.kind {
            Kind::Rfm => self.rfm_input(profile, events, now).map(WideInput::Rfm),
            Kind::Clv => {
                let (v, _) = self.compute(events, now);
                let purchases = v
                    .get("purchases")?
                    .as_array()?
                    .iter()
                    .filter_map(|p| Some((p.get(0)?.as_i64()?, p.get(1)?.as_f64()?)))
                    .collect();
                Some(WideInput::Clv {
                    profile: profile.into(),
                    purchases,
                })
            }
            _ => None,
        }
    }
}

/// The values of a workspace-wide pass, by profile: RFM scores or lifetime values (inputs
/// of one kind; one pass never mixes them).
pub fn wide_scores(inputs: &[WideInput], now: Millis) -> BTreeMap<String, Value> {
    let rfm: Vec<RfmInput> = inputs
        .iter()
        .filter_map(|i| match i {
            WideInput::Rfm(r) => Some(r.clone()),
            WideInput::Clv { .. } => None,
        })
        .collect();
    let mut out: BTreeMap<String, Value> = rfm_scores(&rfm, now)
        .into_iter()
        .map(|s| (s.profile.clone(), s.value()))
        .collect();
    let purchases: Vec<crate::clv::Purchase> = inputs
        .iter()
        .flat_map(|i| match i {
            WideInput::Clv { profile, purchases } => purchases
                .iter()
                .map(|(at, amount)| crate::clv::Purchase {
                    customer: profile.clone(),
                    day: at.div_euclid(DAY),
                    amount: *amount,
                })
                .collect(),
            WideInput::Rfm(_) => Vec::new(),
        })
        .collect();
    out.extend(clv_scores(&purchases, now));
    out
}

/// Weeks of expected purchases a `clv` trait gives, and months of discounted value at a
/// monthly rate.
pub const CLV_HORIZON_WEEKS: f64 = 52.0;
pub const CLV_MONTHS: u32 = 12;
pub const CLV_MONTHLY_DISCOUNT: f64 = 0.01;

/// Lifetime values of every customer of these purchases, observed up to `now` (weeks, the
/// `lifetimes` conventions): BG/NBD for repeat purchases, Gamma-Gamma for spend when at least
/// three customers bought again for some amount. Per customer:
/// `{"p_alive", "expected_purchases" (over [`CLV_HORIZON_WEEKS`]), "clv" ([`CLV_MONTHS`]
/// months discounted at [`CLV_MONTHLY_DISCOUNT`] a month; null without a spend model),
/// "decile" (1 to 10 by value, 10 the top 10 %, value-based ties as [`quintiles`]),
/// "top_decile", "likely_to_lapse" (P(alive) below one half)}`. Nothing when no customer
/// bought again (the model cannot be fitted).
pub fn clv_scores(purchases: &[crate::clv::Purchase], now: Millis) -> BTreeMap<String, Value> {
    use crate::clv::{summarise, value_customers};
    let customers = summarise(purchases, now.div_euclid(DAY), 7.0);
    let Some(valuation) = value_customers(
        &customers,
        CLV_HORIZON_WEEKS,
        CLV_MONTHS,
        CLV_MONTHLY_DISCOUNT,
    ) else {
        return BTreeMap::new();
    };
    // Deciles of value (of expected purchases without a spend model).
    let ranked: Vec<f64> = valuation
        .customers
        .iter()
        .map(|c| c.clv.unwrap_or(c.expected_purchases))
        .collect();
    valuation
        .customers
        .iter()
        .zip(ntiles(&ranked, 10))
        .map(|(c, decile)| {
            (
                c.customer.clone(),
                json!({
                    "p_alive": c.p_alive,
                    "expected_purchases": c.expected_purchases,
                    "clv": c.clv,
                    "decile": decile,
                    "top_decile": decile == 10,
                    "likely_to_lapse": c.p_alive < 0.5,
                }),
            )
        })
        .collect()
}

/// One customer's RFM inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct RfmInput {
    pub profile: String,
    /// Latest purchase.
    pub last: Millis,
    /// Number of purchases.
    pub frequency: u64,
    /// Total spent.
    pub monetary: f64,
}

/// One customer's RFM scores, each 1 to 5 (5 is best).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RfmScore {
    pub profile: String,
    pub recency: u8,
    pub frequency: u8,
    pub monetary: u8,
}

impl RfmScore {
    /// The value an `rfm` computed trait holds: `computed rfm.segment = "champions"`,
    /// `computed rfm.recency >= 4`.
    pub fn value(&self) -> Value {
        json!({
            "recency": self.recency,
            "frequency": self.frequency,
            "monetary": self.monetary,
            "cell": self.cell(),
            "segment": self.segment(),
        })
    }

    /// `"555"` for the best customers.
    pub fn cell(&self) -> String {
        format!("{}{}{}", self.recency, self.frequency, self.monetary)
    }

    /// A name for the cell, from the common RFM segment map.
    pub fn segment(&self) -> &'static str {
        let (r, fm) = (
            self.recency,
            (u16::from(self.frequency) + u16::from(self.monetary)).div_ceil(2),
        );
        match (r, fm) {
            (5, 5) | (4, 5) | (5, 4) => "champions",
            (3..=5, 3..=5) => "loyal",
            (4..=5, 1..=2) => "promising",
            (3, 1..=2) => "needs_attention",
            (1..=2, 4..=5) => "at_risk",
            (2, 1..=3) => "hibernating",
            _ => "lost",
        }
    }
}

/// Scores customers (those with at least one purchase) into quintiles.
///
/// Ties are value-based: a customer's score is `1 + floor(5 × below / n)`, where `below` is
/// the number of customers with a strictly worse value and `n` the number of customers. Equal
/// values always get equal scores, the worst value always scores 1, and a score is skipped
/// rather than split between equal values. Recency is inverted: the most recent purchase
/// scores 5 (it is compared on whole days before `now`, so the same day ties).
pub fn rfm_scores(inputs: &[RfmInput], now: Millis) -> Vec<RfmScore> {
    let n = inputs.len();
    let days_ago: Vec<i64> = inputs.iter().map(|i| (now - i.last).max(0) / DAY).collect();
    // Worse recency is more days ago: negate so that "higher is better" holds for all three.
    let recency: Vec<f64> = days_ago.iter().map(|d| -(*d as f64)).collect();
    let frequency: Vec<f64> = inputs.iter().map(|i| i.frequency as f64).collect();
    let monetary: Vec<f64> = inputs.iter().map(|i| i.monetary).collect();
    let r = quintiles(&recency);
    let f = quintiles(&frequency);
    let m = quintiles(&monetary);
    (0..n)
        .map(|i| RfmScore {
            profile: inputs[i].profile.clone(),
            recency: r[i],
            frequency: f[i],
            monetary: m[i],
        })
        .collect()
}

/// `1 + floor(5 × (values strictly below) / n)` for each value, in input order.
pub fn quintiles(values: &[f64]) -> Vec<u8> {
    ntiles(values, 5)
}

/// `1 + floor(k × (values strictly below) / n)` for each value, in input order.
pub fn ntiles(values: &[f64], k: usize) -> Vec<u8> {
    let n = values.len();
    let mut sorted: Vec<f64> = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    values
        .iter()
        .map(|v| {
            let below = sorted.partition_point(|x| x.total_cmp(v).is_lt());
            (1 + k * below / n) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::channel::Channel;

    const NOW: Millis = 1_780_000_000_000;

    fn order(days_ago: i64, total: Value, category: &str) -> EventFact {
        EventFact {
            name: "Order Completed".into(),
            ts: NOW - days_ago * DAY,
            channel: Channel::Web,
            properties: json!({"total": total, "category": category}),
        }
    }

    fn orders() -> Vec<EventFact> {
        vec![
            order(100, json!(50), "shoes"),
            order(40, json!(20.5), "bags"),
            order(10, json!("30"), "shoes"),
            order(5, json!(null), "bags"),
            EventFact {
                name: "Page Viewed".into(),
                ts: NOW - DAY,
                channel: Channel::Web,
                properties: json!({"total": 1000}),
            },
        ]
    }

    fn def(kind: Kind, property: Option<&str>, window: Window) -> ComputedTrait {
        ComputedTrait {
            id: "t".into(),
            kind,
            event: "Order Completed".into(),
            property: property.map(str::to_string),
            filters: vec![],
            window,
            lifecycle: None,
            include_anonymous: false,
        }
    }

    #[test]
    fn every_kind_over_all_time() {
        let e = orders();
        let all = Window::Ever;
        let p = Some("total");
        for (kind, prop, want) in [
            (Kind::Count, None, json!(4)),
            (Kind::Sum, p, json!(100.5)),
            (Kind::Avg, p, json!(33.5)),
            (Kind::Min, p, json!(20.5)),
            (Kind::Max, p, json!(50)),
            (Kind::First, p, json!(50)),
            // The latest order has no total: the latest with one.
            (Kind::Last, p, json!("30")),
            (Kind::MostFrequent, Some("category"), json!("bags")),
            (Kind::UniqueList, Some("category"), json!(["bags", "shoes"])),
            (Kind::UniqueCount, Some("category"), json!(2)),
        ] {
            let d = def(kind, prop, all);
            d.check().unwrap();
            assert_eq!(d.compute(&e, NOW), (want, None), "{kind:?}");
        }
    }

    #[test]
    fn windowed_traits_say_when_they_change() {
        let e = orders();
        let d = def(Kind::Count, None, Window::Within { ms: 30 * DAY });
        assert_eq!(d.compute(&e, NOW), (json!(2), Some(NOW + 20 * DAY)));
        assert_eq!(d.compute(&e, NOW + 20 * DAY).0, json!(1));
        let d = def(Kind::Sum, Some("total"), Window::Within { ms: 50 * DAY });
        assert_eq!(d.compute(&e, NOW).0, json!(50.5));
        let mut d = def(Kind::Count, None, Window::Ever);
        d.filters = vec![Filter {
            property: "category".into(),
            test: crate::audience::Test::Eq {
                value: json!("shoes"),
            },
        }];
        assert_eq!(d.compute(&e, NOW).0, json!(2));
        // Empty aggregates: zero for sums and counts, no value for the rest.
        let none: Vec<EventFact> = vec![];
        assert_eq!(
            def(Kind::Sum, Some("total"), Window::Ever)
                .compute(&none, NOW)
                .0,
            json!(0)
        );
        assert_eq!(
            def(Kind::Avg, Some("total"), Window::Ever)
                .compute(&none, NOW)
                .0,
            Value::Null
        );
        assert_eq!(
            def(Kind::Last, Some("total"), Window::Ever)
                .compute(&none, NOW)
                .0,
            Value::Null
        );
    }

    #[test]
    fn most_frequent_ties_go_to_the_value_seen_last() {
        let e = vec![order(3, json!(1), "shoes"), order(2, json!(1), "bags")];
        let d = def(Kind::MostFrequent, Some("category"), Window::Ever);
        assert_eq!(d.compute(&e, NOW).0, json!("bags"));
    }

    #[test]
    fn lifecycle_stages_follow_the_thresholds() {
        let t = Lifecycle::default();
        let day = |d: i64| NOW - d * DAY;
        assert_eq!(lifecycle_stage(None, None, &t, NOW), ("prospect", None));
        assert_eq!(
            lifecycle_stage(Some(day(10)), Some(day(10)), &t, NOW),
            ("new", Some(day(10) + 30 * DAY))
        );
        assert_eq!(
            lifecycle_stage(Some(day(400)), Some(day(10)), &t, NOW),
            ("active", Some(day(10) + 90 * DAY))
        );
        assert_eq!(
            lifecycle_stage(Some(day(400)), Some(day(100)), &t, NOW),
            ("at_risk", Some(day(100) + 180 * DAY))
        );
        assert_eq!(
            lifecycle_stage(Some(day(400)), Some(day(180)), &t, NOW),
            ("lapsed", None)
        );
        let mut d = def(Kind::Lifecycle, None, Window::Ever);
        d.lifecycle = Some(Lifecycle {
            new_days: 7,
            active_days: 30,
            lapsed_days: 60,
        });
        d.check().unwrap();
        // Latest order 5 days ago, first 100 days ago: active until day 25 from now.
        assert_eq!(
            d.compute(&orders(), NOW),
            (json!("active"), Some(NOW + 25 * DAY))
        );
        d.lifecycle = Some(Lifecycle {
            new_days: 7,
            active_days: 60,
            lapsed_days: 30,
        });
        assert!(d.check().is_err());
    }

    #[test]
    fn definitions_are_checked() {
        assert!(def(Kind::Sum, None, Window::Ever).check().is_err());
        assert!(def(Kind::Count, None, Window::Within { ms: 0 })
            .check()
            .is_err());
        let mut d = def(Kind::Count, None, Window::Ever);
        d.id = "Bad Id".into();
        assert!(d.check().is_err());
        let json = json!({"id": "ltv", "kind": "sum", "event": "Order Completed", "property": "total",
                          "window": {"kind": "within", "ms": 86400000}});
        let d: ComputedTrait = serde_json::from_value(json).unwrap();
        d.check().unwrap();
        let bad = json!({"id": "ltv", "kind": "sum", "event": "E", "property": "p", "extra": 1});
        assert!(serde_json::from_value::<ComputedTrait>(bad).is_err());
    }

    #[test]
    fn rfm_traits_give_each_customer_its_inputs() {
        let t = def(Kind::Rfm, Some("total"), Window::Ever);
        assert_eq!(t.check(), Ok(()));
        assert!(def(Kind::Rfm, None, Window::Ever).check().is_err());
        let (v, _) = t.compute(&orders(), NOW);
        assert_eq!(
            v,
            json!({"last": NOW - 5 * DAY, "frequency": 4, "monetary": 100.5})
        );
        assert_eq!(
            t.rfm_input("p1", &orders(), NOW),
            Some(RfmInput {
                profile: "p1".into(),
                last: NOW - 5 * DAY,
                frequency: 4,
                monetary: 100.5
            })
        );
        assert_eq!(t.rfm_input("p1", &orders()[4..], NOW), None, "no purchase");
        let within = def(Kind::Rfm, Some("total"), Window::Within { ms: 30 * DAY });
        let input = within.rfm_input("p1", &orders(), NOW).unwrap();
        assert_eq!((input.frequency, input.monetary), (2, 30.0));
        let score = RfmScore {
            profile: "p1".into(),
            recency: 5,
            frequency: 4,
            monetary: 5,
        };
        assert_eq!(
            score.value(),
            json!({"recency": 5, "frequency": 4, "monetary": 5, "cell": "545", "segment": "champions"})
        );
    }

    #[test]
    fn quintiles_are_value_based_with_equal_scores_for_ties() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(quintiles(&v), vec![1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
        // Ties share the score of their lowest rank; the score above is skipped, not split.
        assert_eq!(quintiles(&[1.0, 1.0, 1.0, 1.0, 2.0]), vec![1, 1, 1, 1, 5]);
        assert_eq!(quintiles(&[7.0, 7.0, 7.0]), vec![1, 1, 1]);
        assert_eq!(quintiles(&[3.0, 1.0, 2.0]), vec![4, 1, 2]);
    }

    #[test]
    fn clv_scores_find_who_lapsed_and_who_is_worth_most() {
        use crate::clv::Purchase;
        let week = 7 * DAY;
        let now = 100 * week;
        let mut purchases = Vec::new();
        let mut buy = |who: &str, at: Millis, amount: f64| {
            purchases.push(Purchase {
                customer: who.into(),
                day: at.div_euclid(DAY),
                amount,
            })
        };
        // Forty customers buying every 2 to 10 weeks up to now, for 20 to 80 of each.
        for c in 0..40i64 {
            let every = 2 + c % 9;
            let mut at = now - 90 * week + c * DAY;
            while at <= now {
                buy(&format!("c{c:02}"), at, 20.0 + (c % 7) as f64 * 10.0);
                at += every * week;
            }
        }
        // A customer who bought weekly for a year, then never again for 50 weeks.
        for w in 0..50 {
            buy("gone", now - 100 * week + w * week, 50.0);
        }
        // The best: every week, 500 each time.
        for w in 0..90 {
            buy("best", now - 90 * week + w * week, 500.0);
        }
        let scores = clv_scores(&purchases, now);
        assert_eq!(scores.len(), 42);
        assert_eq!(
            scores["gone"]["likely_to_lapse"], true,
            "{}",
            scores["gone"]
        );
        assert_eq!(scores["best"]["likely_to_lapse"], false);
        assert_eq!(scores["best"]["decile"], 10);
        assert_eq!(scores["best"]["top_decile"], true);
        let best = scores["best"]["clv"].as_f64().unwrap();
        assert!(scores.values().all(|v| v["clv"].as_f64().unwrap() <= best));
        assert!(scores["gone"]["p_alive"].as_f64().unwrap() < 0.01);
        // Five customers (10 % of 42, rounded up by the value-based rule) at most in the top
        // decile.
        let top = scores.values().filter(|v| v["top_decile"] == true).count();
        assert!((1..=5).contains(&top), "{top}");
        // Nobody bought twice: nothing to fit, no values.
        let once: Vec<Purchase> = (0..5)
            .map(|c| Purchase {
                customer: format!("c{c}"),
                day: 10,
                amount: 5.0,
            })
            .collect();
        assert!(clv_scores(&once, now).is_empty());
    }

    #[test]
    fn clv_traits_gather_each_customers_purchases() {
        let t = def(Kind::Clv, Some("total"), Window::Ever);
        assert!(t.check().is_ok());
        assert!(def(Kind::Clv, None, Window::Ever).check().is_err());
        let Some(WideInput::Clv { profile, purchases }) = t.wide_input("p1", &orders(), NOW) else {
            panic!("no input");
        };
        assert_eq!(profile, "p1");
        assert!(!purchases.is_empty());
        assert!(purchases.windows(2).all(|w| w[0].0 <= w[1].0));
        assert_eq!(t.wide_input("p1", &orders()[4..], NOW), None, "no purchase");
        assert!(Kind::Clv.workspace_wide() && Kind::Rfm.workspace_wide());
        assert!(!Kind::Sum.workspace_wide());
    }

    #[test]
    fn rfm_inverts_recency_and_names_the_cell() {
        let input = |p: &str, days: i64, f: u64, m: f64| RfmInput {
            profile: p.into(),
            last: NOW - days * DAY,
            frequency: f,
            monetary: m,
        };
        let scores = rfm_scores(
            &[
                input("best", 1, 10, 1000.0),
                input("b", 20, 4, 300.0),
                input("c", 60, 3, 200.0),
                input("d", 200, 2, 100.0),
                input("worst", 400, 1, 10.0),
            ],
            NOW,
        );
        let cells: Vec<String> = scores.iter().map(RfmScore::cell).collect();
        assert_eq!(cells, vec!["555", "444", "333", "222", "111"]);
        assert_eq!(scores[0].segment(), "champions");
        assert_eq!(scores[4].segment(), "lost");
        // Purchases on the same day tie on recency.
        let same_day = rfm_scores(&[input("a", 3, 1, 1.0), input("b", 3, 1, 1.0)], NOW + 1000);
        assert_eq!(same_day[0].recency, same_day[1].recency);
    }
}
