//! Commerce KPIs over what customers did: visitors, conversion, orders, revenue, average order
//! value, repeat purchase rate, purchase frequency, new customers, cart abandonment and NPS,
//! for a period, broken down by channel, online or offline, shop, campaign or period.
//!
//! The caller reads its facts (one per event that matters, already tied to a person) from the
//! event log; every rule of what counts where is here, so that the API, the CLI and the test
//! that checks them against an independent query agree on one definition:
//!
//! - A **visit** is a page or screen view, a cart addition or an order: a **visitor** of a group
//!   is a person with a visit in it.
//! - An **order** counts once, by its `order_id` (its earliest event); its value is its revenue.
//! - A **buyer** is a person with an order in the group; **conversion** = buyers ÷ visitors.
//! - **Repeat purchase rate** = buyers with two orders or more in the group ÷ buyers;
//!   **purchase frequency** = orders ÷ buyers; **average order value** = revenue ÷ orders.
//! - A **new customer** is a buyer whose first order ever (over the whole log) is in the period
//!   and the group.
//! - A **cart** is a person's cart id, from its first addition; it is **abandoned** unless the
//!   same person completed an order on the same channel within [`CART_WINDOW`] of it.
//!   Cart abandonment = abandoned ÷ carts.
//! - An **answer** is a survey score of 0 to 10; one naming an order takes that order's
//!   channel, shop and campaign. NPS = % promoters (9–10) − % detractors (0–6).
//! - Every fact is credited to the **campaign** of the last campaign touch of its person at or
//!   before it, within [`CAMPAIGN_LOOKBACK`] (its own touch included); none: `(none)`.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::channel::Channel;
use crate::time::Millis;

const DAY: Millis = 86_400_000;
/// How long after a cart's first addition an order completes it.
pub const CART_WINDOW: Millis = DAY;
/// How far back a fact looks for the campaign it is credited to.
pub const CAMPAIGN_LOOKBACK: Millis = 30 * DAY;
/// The key of facts without a shop or a campaign.
pub const NONE: &str = "(none)";

/// What an event says, for the KPIs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum What {
    /// A page or screen view.
    Visit,
    /// A product added to cart `cart` (an index the caller gives each distinct cart id).
    Cart { cart: u32 },
    /// Order `order` (an index the caller gives each distinct order id) completed, worth
    /// `value`.
    Order { order: u32, value: f64 },
    /// A survey answer, maybe about an order.
    Answer { score: u8, order: Option<u32> },
    /// Nothing but, maybe, a campaign touch.
    Other,
}

/// One event of one person.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fact {
    pub person: u32,
    pub at: Millis,
    /// The log's order, to break ties of `at`.
    pub seq: i64,
    pub channel: Channel,
    /// An index into [`Input::shops`].
    pub shop: Option<u32>,
    /// The campaign this event touches the person with (an index into [`Input::campaigns`]).
    pub touch: Option<u32>,
    pub what: What,
}

/// Everything a computation reads.
#[derive(Debug, Clone, Default)]
pub struct Input {
    pub facts: Vec<Fact>,
    pub shops: Vec<String>,
    pub campaigns: Vec<String>,
    /// Advertising spend, for the customer acquisition cost.
    pub spend: Vec<Spend>,
}

/// Advertising spend on one day.
#[derive(Debug, Clone, PartialEq)]
pub struct Spend {
    /// The day's start.
    pub at: Millis,
    pub channel: String,
    /// Empty: no campaign.
    pub campaign: String,
    pub amount: f64,
}

/// How rows are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Breakdown {
    /// One row, `all`.
    Total,
    Channel,
    /// `online` or `offline` (a shop or the call centre).
    Side,
    Shop,
    Campaign,
    Day,
    /// Weeks starting on Monday, keyed by that Monday.
    Week,
    Month,
}

impl Breakdown {
    pub const ALL: [Breakdown; 8] = [
        Breakdown::Total,
        Breakdown::Channel,
        Breakdown::Side,
        Breakdown::Shop,
        Breakdown::Campaign,
        Breakdown::Day,
        Breakdown::Week,
        Breakdown::Month,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Breakdown::Total => "total",
            Breakdown::Channel => "channel",
            Breakdown::Side => "side",
            Breakdown::Shop => "shop",
            Breakdown::Campaign => "campaign",
            Breakdown::Day => "day",
            Breakdown::Week => "week",
            Breakdown::Month => "month",
        }
    }

    pub fn parse(s: &str) -> Option<Breakdown> {
        Breakdown::ALL.into_iter().find(|b| b.as_str() == s)
    }
}

/// Offline channels: a shop and the call centre.
pub fn is_offline(c: Channel) -> bool {
    matches!(c, Channel::Store | Channel::CallCentre)
}

/// The counts of one group, and the rates read from them (`None` when their denominator is 0).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Row {
    pub key: String,
    pub visitors: u64,
    pub buyers: u64,
    pub orders: u64,
    pub revenue: f64,
    pub repeat_buyers: u64,
    pub new_customers: u64,
    pub carts: u64,
    pub abandoned_carts: u64,
    pub answers: u64,
    pub promoters: u64,
    pub detractors: u64,
    /// Advertising spend imported for the group (none imported: `None`).
    pub spend: Option<f64>,
    pub conversion_rate: Option<f64>,
    pub average_order_value: Option<f64>,
    pub repeat_purchase_rate: Option<f64>,
    pub purchase_frequency: Option<f64>,
    pub cart_abandonment: Option<f64>,
    pub nps: Option<f64>,
    /// Customer acquisition cost: spend ÷ new customers.
    pub cac: Option<f64>,
}

impl Row {
    /// The column names of [`Row::csv`], in order.
    pub const COLUMNS: [&'static str; 20] = [
        "key",
        "visitors",
        "buyers",
        "orders",
        "revenue",
        "repeat_buyers",
        "new_customers",
        "carts",
        "abandoned_carts",
        "answers",
        "promoters",
        "detractors",
        "conversion_rate",
        "average_order_value",
        "repeat_purchase_rate",
        "purchase_frequency",
        "cart_abandonment",
        "nps",
        "spend",
        "cac",
    ];

    /// The columns that may be undefined (`null`): the rates, and spend with what divides it.
    pub const OPTIONAL: [&'static str; 8] = [
        "conversion_rate",
        "average_order_value",
        "repeat_purchase_rate",
        "purchase_frequency",
        "cart_abandonment",
        "nps",
        "spend",
        "cac",
    ];

    fn finish(mut self) -> Row {
        let ratio = |a: f64, b: u64| (b > 0).then(|| a / b as f64);
        self.conversion_rate = ratio(self.buyers as f64, self.visitors);
        self.average_order_value = ratio(self.revenue, self.orders);
        self.repeat_purchase_rate = ratio(self.repeat_buyers as f64, self.buyers);
        self.purchase_frequency = ratio(self.orders as f64, self.buyers);
        self.cart_abandonment = ratio(self.abandoned_carts as f64, self.carts);
        self.nps = ratio(
            100.0 * (self.promoters as f64 - self.detractors as f64),
            self.answers,
        );
        self.cac = self.spend.and_then(|s| ratio(s, self.new_customers));
        self
    }

    /// The row as CSV fields (rates empty when undefined), in [`Row::COLUMNS`]' order.
    pub fn csv(&self) -> Vec<String> {
        let rate = |r: Option<f64>| r.map_or_else(String::new, |v| format!("{v:.6}"));
        vec![
            self.key.clone(),
            self.visitors.to_string(),
            self.buyers.to_string(),
            self.orders.to_string(),
            format!("{:.2}", self.revenue),
            self.repeat_buyers.to_string(),
            self.new_customers.to_string(),
            self.carts.to_string(),
            self.abandoned_carts.to_string(),
            self.answers.to_string(),
            self.promoters.to_string(),
            self.detractors.to_string(),
            rate(self.conversion_rate),
            rate(self.average_order_value),
            rate(self.repeat_purchase_rate),
            rate(self.purchase_frequency),
            rate(self.cart_abandonment),
            rate(self.nps),
            self.spend.map_or_else(String::new, |s| format!("{s:.2}")),
            rate(self.cac),
        ]
    }
}

/// One fact as the KPIs count it: its keys resolved (campaign credited, an answer moved to its
/// order's keys).
#[derive(Debug, Clone, Copy)]
struct Credited {
    person: u32,
    at: Millis,
    channel: Channel,
    shop: Option<u32>,
    campaign: Option<u32>,
    what: What,
}

/// The KPIs of the facts in `from..to` (milliseconds, `to` excluded), one row per key of
/// `by`, in key order (`(none)` last), and the total over all of them.
pub fn compute(input: &Input, from: Millis, to: Millis, by: Breakdown) -> (Vec<Row>, Row) {
    let credited = credit(input);
    let key = |c: &Credited| -> String {
        match by {
            Breakdown::Total => "all".into(),
            Breakdown::Channel => c.channel.as_str().into(),
            Breakdown::Side => if is_offline(c.channel) {
                "offline"
            } else {
                "online"
            }
            .into(),
            Breakdown::Shop => c
                .shop
                .map_or(NONE.into(), |s| input.shops[s as usize].clone()),
            Breakdown::Campaign => c
                .campaign
                .map_or(NONE.into(), |s| input.campaigns[s as usize].clone()),
            Breakdown::Day | Breakdown::Week | Breakdown::Month => period_key(by, c.at),
        }
    };
    let mut groups: BTreeMap<String, Tally> = BTreeMap::new();
    let mut total = Tally::default();
    let first_orders = first_orders(&credited);
    let completions = completed_carts(&credited);
    for (i, c) in credited.iter().enumerate() {
        if !(from..to).contains(&c.at) {
            continue;
        }
        let group = groups.entry(key(c)).or_default();
        for t in [&mut *group, &mut total] {
            t.add(c, first_orders.contains(&i), completions.contains(&i));
        }
    }
    // Spend goes to its channel, campaign or period; online/offline and shops have none of
    // their own, so only the total gets it there.
    for sp in input.spend.iter().filter(|sp| (from..to).contains(&sp.at)) {
        total.spend = Some(total.spend.unwrap_or(0.0) + sp.amount);
        let key = match by {
            Breakdown::Total => Some("all".to_string()),
            Breakdown::Channel => Some(sp.channel.clone()),
            Breakdown::Campaign if sp.campaign.is_empty() => Some(NONE.to_string()),
            Breakdown::Campaign => Some(sp.campaign.clone()),
            Breakdown::Day | Breakdown::Week | Breakdown::Month => Some(period_key(by, sp.at)),
            Breakdown::Side | Breakdown::Shop => None,
        };
        if let Some(key) = key {
            let group = groups.entry(key).or_default();
            group.spend = Some(group.spend.unwrap_or(0.0) + sp.amount);
        }
    }
    let mut rows: Vec<Row> = groups.into_iter().map(|(k, t)| t.row(k)).collect();
    // `(none)` sorts first as text; it reads better last.
    rows.sort_by_key(|r| r.key == NONE);
    (rows, total.row("all".into()))
}

/// The day (`2026-11-30`), week (its Monday) or month (`2026-11`) of an instant.
fn period_key(by: Breakdown, at: Millis) -> String {
    let day = at.div_euclid(DAY);
    match by {
        // 1970-01-01 was a Thursday: Monday is 3 days before.
        Breakdown::Week => crate::table::format_day(day - (day + 3).rem_euclid(7)),
        Breakdown::Month => crate::table::format_day(day)[..7].to_string(),
        _ => crate::table::format_day(day),
    }
}

#[derive(Default)]
struct Tally {
    visitors: HashSet<u32>,
    orders_by_buyer: HashMap<u32, u64>,
    orders: u64,
    revenue: f64,
    new_customers: u64,
    carts: u64,
    abandoned: u64,
    answers: u64,
    promoters: u64,
    detractors: u64,
    spend: Option<f64>,
}

impl Tally {
    fn add(&mut self, c: &Credited, first_order: bool, completed: bool) {
        match c.what {
            What::Visit => {
                self.visitors.insert(c.person);
            }
            What::Cart { .. } => {
                self.visitors.insert(c.person);
                self.carts += 1;
                self.abandoned += u64::from(!completed);
            }
            What::Order { value, .. } => {
                self.visitors.insert(c.person);
                *self.orders_by_buyer.entry(c.person).or_default() += 1;
                self.orders += 1;
                self.revenue += value;
                self.new_customers += u64::from(first_order);
            }
            What::Answer { score, .. } => {
                self.answers += 1;
                self.promoters += u64::from(score >= 9);
                self.detractors += u64::from(score <= 6);
            }
            What::Other => {}
        }
    }

    fn row(self, key: String) -> Row {
        Row {
            key,
            visitors: self.visitors.len() as u64,
            buyers: self.orders_by_buyer.len() as u64,
            orders: self.orders,
            revenue: self.revenue,
            repeat_buyers: self.orders_by_buyer.values().filter(|&&n| n >= 2).count() as u64,
            new_customers: self.new_customers,
            carts: self.carts,
            abandoned_carts: self.abandoned,
            answers: self.answers,
            promoters: self.promoters,
            detractors: self.detractors,
            spend: self.spend,
            ..Row::default()
        }
        .finish()
    }
}

/// The facts that count, in (person, time, log) order: each order and each cart once (their
/// first event), every fact credited to its campaign, answers moved to their order's keys.
/// An order is its earliest event (time, then log order), whoever it was sent for: the
/// `(at, seq)` of each order's.
fn earliest_orders(input: &Input) -> HashMap<u32, (Millis, i64)> {
    let mut earliest: HashMap<u32, (Millis, i64)> = HashMap::new();
    for f in &input.facts {
        if let What::Order { order, .. } = f.what {
            earliest
                .entry(order)
                .and_modify(|e| *e = (*e).min((f.at, f.seq)))
                .or_insert((f.at, f.seq));
        }
    }
    earliest
}

/// The facts in (person, time, log order).
fn by_person(input: &Input) -> Vec<&Fact> {
    let mut facts: Vec<&Fact> = input.facts.iter().collect();
    facts.sort_by_key(|f| (f.person, f.at, f.seq));
    facts
}

fn credit(input: &Input) -> Vec<Credited> {
    let earliest = earliest_orders(input);
    let facts = by_person(input);
    let mut out: Vec<Credited> = Vec::with_capacity(facts.len());
    let mut seen_carts: HashSet<(u32, u32)> = HashSet::new();
    let mut touch: Option<(u32, Millis, u32)> = None;
    for f in facts {
        if let Some(campaign) = f.touch {
            touch = Some((f.person, f.at, campaign));
        }
        let campaign = touch
            .filter(|&(p, at, _)| p == f.person && f.at - at <= CAMPAIGN_LOOKBACK)
            .map(|(_, _, c)| c);
        let keep = match f.what {
            What::Order { order, .. } => earliest.get(&order) == Some(&(f.at, f.seq)),
            What::Cart { cart } => seen_carts.insert((f.person, cart)),
            What::Visit | What::Answer { .. } => true,
            What::Other => false,
        };
        if keep {
            out.push(Credited {
                person: f.person,
                at: f.at,
                channel: f.channel,
                shop: f.shop,
                campaign,
                what: f.what,
            });
        }
    }
    // An answer naming an order takes its keys.
    let orders: HashMap<u32, Credited> = out
        .iter()
        .filter_map(|c| match c.what {
            What::Order { order, .. } => Some((order, *c)),
            _ => None,
        })
        .collect();
    for c in &mut out {
        if let What::Answer {
            order: Some(order), ..
        } = c.what
        {
            if let Some(o) = orders.get(&order) {
                c.channel = o.channel;
                c.shop = o.shop;
                c.campaign = o.campaign;
            }
        }
    }
    out
}

/// What a touch of an attribution path is: the channel of each event, or the campaign it
/// touches with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TouchKey {
    Channel,
    Campaign,
}

/// The customer paths of the log for attribution: one per order in `from..to` (its
/// conversion, worth the order's value) and one per person whose last touches in the range
/// were not followed by an order (a null).
///
/// - Every event of a person is a touch (visits, carts, messages delivered to her and the
///   links she clicked, shop visits, calls, chats), except orders and survey answers; with
///   [`TouchKey::Campaign`], only campaign touches are, and a path without any is `(none)`.
/// - An order's path holds the touches of the `lookback` before it since her previous order,
///   then the order's own channel (or campaign, if it touches with one).
/// - A touch repeated in a row counts once (a visit's page views are one web touch).
pub fn paths(
    input: &Input,
    from: Millis,
    to: Millis,
    by: TouchKey,
    lookback: Millis,
) -> Vec<crate::attribution::Path> {
    use crate::attribution::Path;
    let earliest = earliest_orders(input);
    let key = |f: &Fact| -> Option<String> {
        match by {
            TouchKey::Channel => Some(f.channel.as_str().to_string()),
            TouchKey::Campaign => f.touch.map(|c| input.campaigns[c as usize].clone()),
        }
    };
    let path_of = |touches: &[(String, Millis)], since: Millis| -> (Vec<String>, Vec<Millis>) {
        let (mut channels, mut at): (Vec<String>, Vec<Millis>) = (Vec::new(), Vec::new());
        for (k, t) in touches.iter().filter(|(_, t)| *t >= since) {
            if channels.last() != Some(k) {
                channels.push(k.clone());
                at.push(*t);
            }
        }
        if channels.is_empty() && by == TouchKey::Campaign {
            channels.push(NONE.to_string());
            at.push(since);
        }
        (channels, at)
    };
    let mut out = Vec::new();
    let facts = by_person(input);
    let mut i = 0;
    while i < facts.len() {
        let person = facts[i].person;
        let mut touches: Vec<(String, Millis)> = Vec::new();
        // Her last event in the range since her last order.
        let mut seen_since_order: Option<Millis> = None;
        while i < facts.len() && facts[i].person == person {
            let f = facts[i];
            i += 1;
            match f.what {
                What::Order { order, value } => {
                    if earliest.get(&order) != Some(&(f.at, f.seq)) {
                        continue;
                    }
                    if (from..to).contains(&f.at) {
                        if let Some(k) = key(f) {
                            touches.push((k, f.at));
                        }
                        let (channels, at) = path_of(&touches, f.at - lookback);
                        out.push(Path {
                            channels,
                            at,
                            conversions: 1.0,
                            value,
                            nulls: 0.0,
                            converted_at: Some(f.at),
                        });
                    }
                    touches.clear();
                    seen_since_order = None;
                }
                What::Answer { .. } => {}
                What::Visit | What::Cart { .. } | What::Other => {
                    if let Some(k) = key(f) {
                        touches.push((k, f.at));
                    }
                    if (from..to).contains(&f.at) {
                        seen_since_order = Some(f.at);
                    }
                }
            }
        }
        if let Some(last) = seen_since_order {
            // Her touches up to the end of the range, the lookback before her last event.
            touches.retain(|(_, t)| *t <= last);
            let (channels, at) = path_of(&touches, last - lookback);
            if !channels.is_empty() {
                out.push(Path {
                    channels,
                    at,
                    conversions: 0.0,
                    value: 0.0,
                    nulls: 1.0,
                    converted_at: None,
                });
            }
        }
    }
    out
}

/// Every order once (its earliest event): who, when and its value, in person and time order.
pub fn orders(input: &Input) -> Vec<(u32, Millis, f64)> {
    credit(input)
        .into_iter()
        .filter_map(|c| match c.what {
            What::Order { value, .. } => Some((c.person, c.at, value)),
            _ => None,
        })
        .collect()
}

/// How cohorts are bucketed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// Weeks starting on Monday.
    Week,
    Month,
}

impl Period {
    /// The period an instant falls in, numbered so that consecutive periods differ by 1.
    fn index(self, at: Millis) -> i64 {
        let day = at.div_euclid(DAY);
        match self {
            Period::Week => (day + 3).div_euclid(7),
            Period::Month => {
                let date = crate::table::format_day(day);
                let (y, m) = (date[..4].parse::<i64>(), date[5..7].parse::<i64>());
                match (y, m) {
                    (Ok(y), Ok(m)) => y * 12 + m - 1,
                    _ => 0,
                }
            }
        }
    }

    /// The name of a period: its Monday, or `2026-11`.
    fn name(self, index: i64) -> String {
        match self {
            Period::Week => crate::table::format_day(index * 7 - 3),
            Period::Month => format!(
                "{:04}-{:02}",
                index.div_euclid(12),
                index.rem_euclid(12) + 1
            ),
        }
    }
}

/// The customers acquired in one period (their first order ever), and what they did in it and
/// each period after.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cohort {
    /// The period of their first order.
    pub cohort: String,
    /// The channel of their first order (`all` when not broken down).
    pub key: String,
    pub customers: u64,
    /// Per period from the first (0) to the range's last: customers who ordered in it.
    pub active: Vec<u64>,
    /// Their revenue in each period.
    pub revenue: Vec<f64>,
}

/// Retention and revenue by acquisition cohort: the customers whose first order ever is in
/// `from..to`, grouped by its period (and its channel with `by_channel`), followed through
/// every period up to the one holding `to - 1`. Orders count once, as for the KPIs.
pub fn cohorts(
    input: &Input,
    from: Millis,
    to: Millis,
    period: Period,
    by_channel: bool,
) -> Vec<Cohort> {
    let credited = credit(input);
    let last = period.index(to - 1);
    /// A cohort's customers, who ordered in each period, and their revenue in each.
    type Followed = (HashSet<u32>, Vec<HashSet<u32>>, Vec<f64>);
    let mut cohorts: BTreeMap<(i64, String), Followed> = BTreeMap::new();
    // Each person's first order (the facts come in person and time order): its period, its
    // key, when.
    let mut first: HashMap<u32, (i64, String, Millis)> = HashMap::new();
    for c in &credited {
        let What::Order { value, .. } = c.what else {
            continue;
        };
        let (index, key, acquired) = first
            .entry(c.person)
            .or_insert_with(|| {
                let key = if by_channel {
                    c.channel.as_str()
                } else {
                    "all"
                };
                (period.index(c.at), key.to_string(), c.at)
            })
            .clone();
        if !(from..to).contains(&acquired) || c.at >= to {
            continue;
        }
        let cohort = (index, key);
        let offset = (period.index(c.at) - cohort.0) as usize;
        let width = (last - cohort.0 + 1).max(1) as usize;
        let entry = cohorts.entry(cohort).or_insert_with(|| {
            (
                HashSet::new(),
                vec![HashSet::new(); width],
                vec![0.0; width],
            )
        });
        entry.0.insert(c.person);
        if let Some(active) = entry.1.get_mut(offset) {
            active.insert(c.person);
            entry.2[offset] += value;
        }
    }
    cohorts
        .into_iter()
        .map(|((index, key), (people, active, revenue))| Cohort {
            cohort: period.name(index),
            key,
            customers: people.len() as u64,
            active: active.iter().map(|a| a.len() as u64).collect(),
            revenue,
        })
        .collect()
}

/// The positions of each person's first order.
fn first_orders(credited: &[Credited]) -> HashSet<usize> {
    let mut firsts: HashMap<u32, usize> = HashMap::new();
    for (i, c) in credited.iter().enumerate() {
        if matches!(c.what, What::Order { .. }) {
            firsts.entry(c.person).or_insert(i);
        }
    }
    firsts.into_values().collect()
}

/// The positions of carts followed by an order of the same person on the same channel within
/// [`CART_WINDOW`].
fn completed_carts(credited: &[Credited]) -> HashSet<usize> {
    let mut done = HashSet::new();
    for (i, c) in credited.iter().enumerate() {
        if !matches!(c.what, What::Cart { .. }) {
            continue;
        }
        let completed = credited[i + 1..]
            .iter()
            .take_while(|o| o.person == c.person && o.at - c.at <= CART_WINDOW)
            .any(|o| matches!(o.what, What::Order { .. }) && o.channel == c.channel);
        if completed {
            done.insert(i);
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Millis = 3_600_000;

    fn fact(person: u32, at: Millis, channel: Channel, what: What) -> Fact {
        Fact {
            person,
            at,
            seq: at,
            channel,
            shop: None,
            touch: None,
            what,
        }
    }

    /// Three people over two days, every rule once: a duplicate order, a cart completed and
    /// one left, an order in a shop, a first order before the period, an answer about an
    /// order and a campaign touch that runs out.
    fn input() -> Input {
        let order = |order, value| What::Order { order, value };
        let mut facts = vec![
            // Ann: a first order before the period, then a campaign click, a cart and its order.
            fact(1, 0, Channel::Web, order(0, 50.0)),
            fact(1, 2 * DAY, Channel::Email, What::Other),
            fact(1, 2 * DAY + H, Channel::Web, What::Visit),
            fact(1, 2 * DAY + 2 * H, Channel::Web, What::Cart { cart: 0 }),
            fact(1, 2 * DAY + 2 * H + 1, Channel::Web, What::Cart { cart: 0 }),
            fact(1, 2 * DAY + 3 * H, Channel::Web, order(1, 100.0)),
            // The same order sent again later: counted once.
            fact(1, 2 * DAY + 4 * H, Channel::Web, order(1, 100.0)),
            // Bob: a cart left online, bought in a shop the next day; then answers about it.
            fact(2, 2 * DAY, Channel::Web, What::Visit),
            fact(2, 2 * DAY + H, Channel::Web, What::Cart { cart: 1 }),
            fact(2, 3 * DAY, Channel::Store, order(2, 30.0)),
            fact(
                2,
                3 * DAY + 5 * H,
                Channel::Email,
                What::Answer {
                    score: 3,
                    order: Some(2),
                },
            ),
            // Cleo: visits only, and a promoter answer about nothing.
            fact(3, 2 * DAY, Channel::Ios, What::Visit),
            fact(
                3,
                3 * DAY,
                Channel::Email,
                What::Answer {
                    score: 10,
                    order: None,
                },
            ),
        ];
        facts[1].touch = Some(0);
        facts[9].shop = Some(0);
        // A touch 40 days before Cleo's visit does not reach it.
        let mut old = fact(3, 2 * DAY - 40 * DAY, Channel::Sms, What::Other);
        old.touch = Some(1);
        facts.push(old);
        Input {
            facts,
            shops: vec!["paris".into()],
            campaigns: vec!["nl-w48".into(), "sms-old".into()],
            spend: Vec::new(),
        }
    }

    fn row<'a>(rows: &'a [Row], key: &str) -> &'a Row {
        rows.iter().find(|r| r.key == key).unwrap()
    }

    #[test]
    fn every_rule_counts_as_written() {
        let input = input();
        let (rows, total) = compute(&input, 2 * DAY, 4 * DAY, Breakdown::Total);
        assert_eq!(rows, vec![total.clone()]);
        assert_eq!(total.visitors, 3);
        assert_eq!(total.buyers, 2);
        assert_eq!(total.orders, 2);
        assert_eq!(total.revenue, 130.0);
        assert_eq!(total.repeat_buyers, 0);
        // Ann's first order was before the period.
        assert_eq!(total.new_customers, 1);
        assert_eq!((total.carts, total.abandoned_carts), (2, 1));
        assert_eq!(
            (total.answers, total.promoters, total.detractors),
            (2, 1, 1)
        );
        assert_eq!(total.conversion_rate, Some(2.0 / 3.0));
        assert_eq!(total.average_order_value, Some(65.0));
        assert_eq!(total.purchase_frequency, Some(1.0));
        assert_eq!(total.cart_abandonment, Some(0.5));
        assert_eq!(total.nps, Some(0.0));

        // Over the whole log, Ann bought twice.
        let (_, all) = compute(&input, 0, 10 * DAY, Breakdown::Total);
        assert_eq!(
            (all.orders, all.repeat_buyers, all.new_customers),
            (3, 1, 2)
        );
        assert_eq!(all.repeat_purchase_rate, Some(0.5));
    }

    #[test]
    fn breakdowns_put_each_fact_under_its_key() {
        let input = input();
        let (rows, _) = compute(&input, 2 * DAY, 4 * DAY, Breakdown::Channel);
        let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["email", "ios", "store", "web"]);
        // Bob's answer is about his shop order: it counts for the shop's channel.
        assert_eq!(row(&rows, "store").answers, 1);
        assert_eq!(row(&rows, "email").answers, 1);
        assert_eq!(row(&rows, "web").cart_abandonment, Some(0.5));
        assert_eq!(row(&rows, "store").conversion_rate, Some(1.0));

        let (rows, _) = compute(&input, 2 * DAY, 4 * DAY, Breakdown::Side);
        assert_eq!(row(&rows, "offline").revenue, 30.0);
        assert_eq!(row(&rows, "online").revenue, 100.0);

        let (rows, _) = compute(&input, 2 * DAY, 4 * DAY, Breakdown::Shop);
        assert_eq!(rows.last().unwrap().key, NONE);
        assert_eq!(
            (row(&rows, "paris").orders, row(&rows, "paris").answers),
            (1, 1)
        );

        let (rows, _) = compute(&input, 2 * DAY, 4 * DAY, Breakdown::Campaign);
        // Ann's visit, cart and order follow her click; the old SMS reaches nothing.
        assert_eq!(row(&rows, "nl-w48").orders, 1);
        assert_eq!(row(&rows, "nl-w48").visitors, 1);
        assert!(rows.iter().all(|r| r.key != "sms-old"));
        assert_eq!(row(&rows, NONE).orders, 1);

        let (rows, _) = compute(&input, 0, 10 * DAY, Breakdown::Week);
        // 1970-01-01 was a Thursday: its week starts on Monday 1969-12-29.
        assert_eq!(rows[0].key, "1969-12-29");
        let (rows, _) = compute(&input, 0, 10 * DAY, Breakdown::Month);
        assert_eq!(rows[0].key, "1970-01");
        let (rows, _) = compute(&input, 0, 10 * DAY, Breakdown::Day);
        assert_eq!(row(&rows, "1970-01-04").orders, 1);
    }

    #[test]
    fn paths_run_from_touches_to_each_order_and_end_in_nulls() {
        let input = input();
        let paths = paths(&input, 2 * DAY, 4 * DAY, TouchKey::Channel, 30 * DAY);
        let shown: Vec<(String, f64, f64)> = paths
            .iter()
            .map(|p| (p.channels.join(" > "), p.conversions, p.nulls))
            .collect();
        assert_eq!(
            shown,
            [
                // Ann: her first order, before the range, cut the path; the repeated web
                // touches count once.
                ("email > web".to_string(), 1.0, 0.0),
                // Bob: a web cart, then the shop order.
                ("web > store".to_string(), 1.0, 0.0),
                // Cleo never ordered: a null path (her answer is not a touch), and her SMS
                // 40 days before is beyond a 30-day lookback.
                ("ios".to_string(), 0.0, 1.0),
            ]
        );
        let long = super::paths(&input, 2 * DAY, 4 * DAY, TouchKey::Channel, 60 * DAY);
        assert_eq!(long[2].channels, ["sms", "ios"]);
        assert_eq!(paths[0].value, 100.0);
        assert_eq!(paths[0].converted_at, Some(2 * DAY + 3 * H));
        assert_eq!(paths[0].at.len(), 2);

        let by_campaign = super::paths(&input, 2 * DAY, 4 * DAY, TouchKey::Campaign, 30 * DAY);
        let shown: Vec<String> = by_campaign.iter().map(|p| p.channels.join(" > ")).collect();
        assert_eq!(shown, ["nl-w48", NONE, NONE]);
    }

    #[test]
    fn cohorts_follow_first_buyers_through_the_periods() {
        let input = input();
        // Ann's first order on day 0 (Thursday 1 January 1970), her second on day 2; Bob's
        // only one on day 3 in a shop.
        let c = cohorts(&input, 0, 10 * DAY, Period::Week, false);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].cohort, "1969-12-29");
        assert_eq!(c[0].customers, 2);
        // Both bought in their first week (4 January was a Sunday); the range ends in the
        // second week, where nobody did.
        assert_eq!(c[0].active, [2, 0]);
        assert_eq!(c[0].revenue, [180.0, 0.0]);
        let by_channel = cohorts(&input, 0, 10 * DAY, Period::Month, true);
        let keys: Vec<(&str, &str, u64)> = by_channel
            .iter()
            .map(|c| (c.cohort.as_str(), c.key.as_str(), c.customers))
            .collect();
        assert_eq!(keys, [("1970-01", "store", 1), ("1970-01", "web", 1)]);
        // From day 1: Ann was acquired before, so only Bob.
        let later = cohorts(&input, DAY, 10 * DAY, Period::Week, false);
        assert_eq!((later[0].customers, later[0].revenue[0]), (1, 30.0));
        assert_eq!(Period::Month.name(Period::Month.index(0)), "1970-01");
    }

    /// The columns the CSV and the API's schema name are the fields a row serialises.
    #[test]
    fn the_columns_are_the_rows_fields() {
        let value = serde_json::to_value(Row::default()).unwrap();
        let mut fields: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut columns = Row::COLUMNS.to_vec();
        fields.sort_unstable();
        columns.sort_unstable();
        assert_eq!(fields, columns);
        assert!(Row::OPTIONAL.iter().all(|c| Row::COLUMNS.contains(c)));
        assert_eq!(Row::default().csv().len(), Row::COLUMNS.len());
    }

    #[test]
    fn cac_divides_spend_by_new_customers_where_spend_belongs() {
        let mut input = input();
        let spend = |at: Millis, channel: &str, campaign: &str, amount: f64| Spend {
            at,
            channel: channel.into(),
            campaign: campaign.into(),
            amount,
        };
        input.spend = vec![
            spend(2 * DAY, "email", "nl-w48", 40.0),
            spend(3 * DAY, "ads", "", 60.0),
            // Outside the range.
            spend(9 * DAY, "ads", "", 1000.0),
        ];
        let (_, total) = compute(&input, 2 * DAY, 4 * DAY, Breakdown::Total);
        // Bob is the one new customer of the range.
        assert_eq!(
            (total.spend, total.new_customers, total.cac),
            (Some(100.0), 1, Some(100.0))
        );
        let (rows, _) = compute(&input, 2 * DAY, 4 * DAY, Breakdown::Campaign);
        // Bob's order came without a campaign: the 60 of ads without one are his.
        assert_eq!(row(&rows, NONE).cac, Some(60.0));
        // The newsletter brought Ann back, no new customer: spend, no cost per customer.
        assert_eq!(
            (row(&rows, "nl-w48").spend, row(&rows, "nl-w48").cac),
            (Some(40.0), None)
        );
        let (rows, _) = compute(&input, 2 * DAY, 4 * DAY, Breakdown::Channel);
        assert_eq!(row(&rows, "ads").spend, Some(60.0));
        assert_eq!(row(&rows, "web").spend, None);
        let (rows, total) = compute(&input, 2 * DAY, 4 * DAY, Breakdown::Shop);
        assert!(rows.iter().all(|r| r.spend.is_none()));
        assert_eq!(total.spend, Some(100.0));
        let (_, none) = compute(&super::tests::input(), 2 * DAY, 4 * DAY, Breakdown::Total);
        assert_eq!((none.spend, none.cac), (None, None));
    }

    #[test]
    fn an_order_sent_for_two_people_counts_once_for_the_earliest() {
        let order = What::Order {
            order: 7,
            value: 20.0,
        };
        let input = Input {
            facts: vec![
                fact(2, 10, Channel::Web, order),
                fact(1, 20, Channel::Store, order),
            ],
            ..Input::default()
        };
        let (rows, total) = compute(&input, 0, DAY, Breakdown::Channel);
        assert_eq!((total.orders, total.buyers), (1, 1));
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].key, "web");
    }
}
