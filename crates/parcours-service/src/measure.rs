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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use parcours_core::kpi::{self, Breakdown, Cohort, Fact, Input, Period, Row, TouchKey, What};
use parcours_core::spec::EventType;
use parcours_core::time::{Clock, Millis};
use parcours_core::{attribution, funnel};
use parcours_store::tallies::start_of_day;
use parcours_store::{SpendRow, Store, StoredEvent};
use serde::Serialize;
use serde_json::Value;

use crate::dashboard::{date, DayRange};
use crate::{Actor, ServiceError};

pub mod uplift;

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
    snapshots: &Snapshots,
    actor: &Actor,
    range: DayRange,
    by: Breakdown,
) -> Result<Kpis, ServiceError> {
    let read = snapshots.read(store, &actor.workspace, None)?;
    Ok(kpis_of(&read, range, by))
}

/// [`kpis`] over a log already read.
pub fn kpis_of(read: &Read, range: DayRange, by: Breakdown) -> Kpis {
    let (rows, total) = kpi::compute(
        &read.input,
        start_of_day(range.from),
        start_of_day(range.to + 1),
        by,
    );
    Kpis {
        from: date(range.from),
        to: date(range.to),
        by,
        rows,
        total,
        events_read: read.events,
        events_unapplied: read.unapplied,
    }
}

/// What the console's Measurement page shows.
pub struct Overview {
    pub kpis: Kpis,
    pub attribution: Attribution,
    pub funnel: Funnel,
    /// The uplift report of every journey that had runs (30-day window), by journey name.
    pub uplift: Vec<(String, uplift::Uplift)>,
}

/// What the console's Measurement page shows, from one reading of the log: the KPIs broken
/// down `by`, attribution per channel (30-day lookback, first order, nulls counted), the
/// default funnel (7-day window) and each journey's uplift report. A reading at most
/// `max_age` old is enough (see [`Snapshots::read`]).
pub fn overview(
    store: &dyn Store,
    snapshots: &Snapshots,
    actor: &Actor,
    range: DayRange,
    by: Breakdown,
    max_age: Option<Millis>,
) -> Result<Overview, ServiceError> {
    let read = snapshots.read(store, &actor.workspace, max_age)?;
    let kpis = kpis_of(&read, range, by);
    let attribution = attribution_of(
        &read,
        range,
        AttributionQuery::new(TouchKey::Channel, 30, 1, true)?,
    )?;
    let steps: Vec<String> = DEFAULT_FUNNEL.iter().map(|s| s.to_string()).collect();
    let funnel = funnel_of(&read, range, &steps, 7, FunnelBy::Total)?;
    let mut reports = Vec::new();
    for j in store.journeys(Some(&actor.workspace))? {
        let entrants = store.journey_entrants(&actor.workspace, &j.journey_id)?;
        if !entrants.is_empty() {
            let report =
                uplift::uplift_of(&read, &entrants, &j.journey_id, uplift::DEFAULT_WINDOW_DAYS);
            let name = j.doc["name"].as_str().unwrap_or(&j.journey_id).to_string();
            reports.push((name, report));
        }
    }
    Ok(Overview {
        kpis,
        attribution,
        funnel,
        uplift: reports,
    })
}

/// The funnel an online shop watches: viewed, added to cart, checked out, ordered.
pub const DEFAULT_FUNNEL: [&str; 4] = [
    "Product Viewed",
    "Product Added",
    "Checkout Started",
    "Order Completed",
];

/// The longest lookback of attribution and conversion window of a funnel, in days.
pub const MAX_WINDOW_DAYS: i64 = 90;
/// The highest order of the Markov chain the API runs.
pub const MAX_ORDER: usize = 4;

/// How attribution reads the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttributionQuery {
    pub by: TouchKey,
    pub lookback_days: i64,
    pub order: usize,
    pub nulls: bool,
}

impl AttributionQuery {
    /// `invalid_parameter` for a lookback or an order out of range.
    pub fn new(
        by: TouchKey,
        lookback_days: i64,
        order: usize,
        nulls: bool,
    ) -> Result<Self, ServiceError> {
        if !(1..=MAX_WINDOW_DAYS).contains(&lookback_days) {
            return Err(ServiceError::invalid(
                "invalid_parameter",
                format!("`lookback` is 1 to {MAX_WINDOW_DAYS} days, not {lookback_days}"),
            ));
        }
        if !(1..=MAX_ORDER).contains(&order) {
            return Err(ServiceError::invalid(
                "invalid_parameter",
                format!("`order` is 1 to {MAX_ORDER}, not {order}"),
            ));
        }
        Ok(Self {
            by,
            lookback_days,
            order,
            nulls,
        })
    }
}

/// What one model credits to one channel or campaign.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Credit {
    pub conversions: f64,
    pub value: f64,
}

/// One channel or campaign under every model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttributionRow {
    pub key: String,
    /// By model: first, last, linear, position_based, time_decay, shapley, markov.
    pub models: BTreeMap<&'static str, Credit>,
    pub markov_removal_effect: f64,
}

/// Attribution of a range's orders.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attribution {
    pub from: String,
    pub to: String,
    pub by: TouchKey,
    pub lookback_days: i64,
    pub order: usize,
    pub nulls: bool,
    /// Paths that converted (one per order) and that did not.
    pub converting_paths: u64,
    pub null_paths: u64,
    pub conversions: f64,
    pub value: f64,
    pub markov_states: usize,
    pub markov_conversion_probability: f64,
    pub rows: Vec<AttributionRow>,
}

/// Every attribution model over the paths of the actor's workspace (see
/// [`parcours_core::kpi::paths`]). `attribution_unsettled` when the Markov chain does not
/// settle within its budget.
pub fn attribution(
    store: &dyn Store,
    snapshots: &Snapshots,
    actor: &Actor,
    range: DayRange,
    q: AttributionQuery,
) -> Result<Attribution, ServiceError> {
    let read = snapshots.read(store, &actor.workspace, None)?;
    attribution_of(&read, range, q)
}

/// [`attribution`] over a log already read.
pub fn attribution_of(
    read: &Read,
    range: DayRange,
    q: AttributionQuery,
) -> Result<Attribution, ServiceError> {
    let paths = kpi::paths(
        &read.input,
        start_of_day(range.from),
        start_of_day(range.to + 1),
        q.by,
        q.lookback_days * 86_400_000,
    );
    let every = attribution::every_model(&paths, q.order, q.nulls, true);
    if !every.markov.settled {
        return Err(ServiceError::invalid(
            "attribution_unsettled",
            format!(
                "the Markov chain of order {} ({} states) did not settle within its budget: \
                 shorten the lookback or lower the order",
                q.order, every.markov.states
            ),
        ));
    }
    let keys: BTreeSet<&String> = every.models.iter().flat_map(|(_, c)| c.keys()).collect();
    let rows = keys
        .into_iter()
        .map(|k| AttributionRow {
            key: k.clone(),
            models: every
                .models
                .iter()
                .map(|(name, credits)| {
                    let c = credits.get(k).copied().unwrap_or_default();
                    (
                        *name,
                        Credit {
                            conversions: c.conversions,
                            value: c.value,
                        },
                    )
                })
                .collect(),
            markov_removal_effect: every.markov.removal_effects.get(k).copied().unwrap_or(0.0),
        })
        .collect();
    Ok(Attribution {
        from: date(range.from),
        to: date(range.to),
        by: q.by,
        lookback_days: q.lookback_days,
        order: q.order,
        nulls: q.nulls,
        converting_paths: paths.iter().filter(|p| p.conversions > 0.0).count() as u64,
        null_paths: paths.iter().filter(|p| p.nulls > 0.0).count() as u64,
        conversions: paths.iter().map(|p| p.conversions).sum(),
        value: paths.iter().map(|p| p.value).sum(),
        markov_states: every.markov.states,
        markov_conversion_probability: every.markov.conversion_probability,
        rows,
    })
}

/// Attribution as CSV: per key, each model's conversions, then each model's value, then the
/// Markov removal effect.
pub fn attribution_csv(a: &Attribution) -> String {
    let names: Vec<&str> = a
        .rows
        .first()
        .map(|r| r.models.keys().copied().collect())
        .unwrap_or_default();
    let mut header = vec!["key".to_string()];
    header.extend(names.iter().map(|n| format!("{n}_conversions")));
    header.extend(names.iter().map(|n| format!("{n}_value")));
    header.push("markov_removal_effect".into());
    let mut out = header.join(",");
    out.push('\n');
    for r in &a.rows {
        let mut line = vec![csv_field(&r.key)];
        line.extend(
            names
                .iter()
                .map(|n| format!("{:.6}", r.models[n].conversions)),
        );
        line.extend(names.iter().map(|n| format!("{:.6}", r.models[n].value)));
        line.push(format!("{:.6}", r.markov_removal_effect));
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

/// How a funnel's people are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FunnelBy {
    Total,
    /// The channel of her first step-1 event in the range.
    Channel,
    /// The channel of her first event ever.
    FirstTouch,
    /// The shop of her first order or cart with one.
    Shop,
}

impl FunnelBy {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "total" => FunnelBy::Total,
            "channel" => FunnelBy::Channel,
            "first_touch" => FunnelBy::FirstTouch,
            "shop" => FunnelBy::Shop,
            _ => return None,
        })
    }
}

/// One group of a funnel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunnelGroup {
    pub key: String,
    /// People who reached each step.
    pub reached: Vec<u64>,
    /// The share of step 1 that reached each step.
    pub conversion: Vec<f64>,
    /// The median time from step 1 to the last step of those who finished, in seconds.
    pub median_seconds_to_convert: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Funnel {
    pub from: String,
    pub to: String,
    pub steps: Vec<String>,
    pub window_days: i64,
    pub by: FunnelBy,
    pub groups: Vec<FunnelGroup>,
    pub total: FunnelGroup,
}

/// An ordered funnel of event names (`Page Viewed` and `Screen Viewed` for page and screen
/// calls) over the events of the range, each step within `window_days` of the step-1 event
/// that started the attempt (see [`parcours_core::funnel`]).
pub fn funnel(
    store: &dyn Store,
    snapshots: &Snapshots,
    actor: &Actor,
    range: DayRange,
    steps: &[String],
    window_days: i64,
    by: FunnelBy,
) -> Result<Funnel, ServiceError> {
    check_funnel(steps, window_days)?;
    let read = snapshots.read(store, &actor.workspace, None)?;
    funnel_of(&read, range, steps, window_days, by)
}

fn check_funnel(steps: &[String], window_days: i64) -> Result<(), ServiceError> {
    if steps.len() < 2 || steps.len() > funnel::MAX_STEPS || steps.iter().any(|s| s.is_empty()) {
        return Err(ServiceError::invalid(
            "invalid_parameter",
            format!(
                "a funnel has 2 to {} steps, each an event name, separated by commas",
                funnel::MAX_STEPS
            ),
        ));
    }
    if !(1..=MAX_WINDOW_DAYS).contains(&window_days) {
        return Err(ServiceError::invalid(
            "invalid_parameter",
            format!("`window` is 1 to {MAX_WINDOW_DAYS} days, not {window_days}"),
        ));
    }
    Ok(())
}

/// [`funnel`] over a log already read.
pub fn funnel_of(
    read: &Read,
    range: DayRange,
    steps: &[String],
    window_days: i64,
    by: FunnelBy,
) -> Result<Funnel, ServiceError> {
    check_funnel(steps, window_days)?;
    let (from, to) = (start_of_day(range.from), start_of_day(range.to + 1));
    // The steps each event name matches (a name may be two steps).
    let bits: Vec<u64> = read
        .event_names
        .iter()
        .map(|n| {
            steps
                .iter()
                .enumerate()
                .filter(|(_, s)| *s == n)
                .fold(0, |b, (k, _)| b | (1 << k))
        })
        .collect();
    let mut order: Vec<usize> = (0..read.input.facts.len()).collect();
    order.sort_by_key(|&i| (read.input.facts[i].at, read.input.facts[i].seq));
    // Each person's group.
    let mut group: Vec<Option<String>> = vec![None; read.people];
    for &i in &order {
        let f = &read.input.facts[i];
        let slot = &mut group[f.person as usize];
        if slot.is_some() {
            continue;
        }
        *slot = match by {
            FunnelBy::Total => Some("all".into()),
            FunnelBy::FirstTouch => Some(f.channel.as_str().into()),
            FunnelBy::Channel => read.names[i]
                .filter(|n| bits[*n as usize] & 1 == 1 && (from..to).contains(&f.at))
                .map(|_| f.channel.as_str().into()),
            FunnelBy::Shop => f.shop.map(|s| read.input.shops[s as usize].clone()),
        };
    }
    let touches = order.iter().filter_map(|&i| {
        let f = &read.input.facts[i];
        let steps = bits[read.names[i]? as usize];
        ((from..to).contains(&f.at) && steps != 0).then_some(funnel::Touch {
            person: f.person,
            at: f.at,
            steps,
        })
    });
    let window = window_days * 86_400_000;
    let touches: Vec<funnel::Touch> = touches.collect();
    let groups = funnel::run(
        steps.len(),
        window,
        read.people,
        touches.iter().copied(),
        |p| {
            group[p as usize]
                .clone()
                .unwrap_or_else(|| kpi::NONE.to_string())
        },
    );
    let total = funnel::run(steps.len(), window, read.people, touches, |_| ());
    let show = |key: String, c: &funnel::Counts| FunnelGroup {
        key,
        conversion: c.conversion(),
        median_seconds_to_convert: c.median_time_to_convert().map(|ms| ms as f64 / 1000.0),
        reached: c.reached.clone(),
    };
    let mut groups: Vec<FunnelGroup> = groups.iter().map(|(k, c)| show(k.clone(), c)).collect();
    groups.sort_by_key(|g| g.key == kpi::NONE);
    let empty = funnel::Counts {
        reached: vec![0; steps.len()],
        times_to_convert: Vec::new(),
    };
    Ok(Funnel {
        from: date(range.from),
        to: date(range.to),
        steps: steps.to_vec(),
        window_days,
        by,
        groups,
        total: show("all".into(), total.get(&()).unwrap_or(&empty)),
    })
}

/// A funnel as CSV: per group, the people at each step, then the median time to convert.
pub fn funnel_csv(f: &Funnel) -> String {
    let mut header = vec!["key".to_string()];
    header.extend(f.steps.iter().map(|s| csv_field(s)));
    header.push("median_seconds_to_convert".into());
    let mut out = header.join(",");
    out.push('\n');
    let total = FunnelGroup {
        key: "total".into(),
        ..f.total.clone()
    };
    for g in f.groups.iter().chain([&total]) {
        let mut line = vec![csv_field(&g.key)];
        line.extend(g.reached.iter().map(u64::to_string));
        line.push(
            g.median_seconds_to_convert
                .map_or_else(String::new, |s| format!("{s:.0}")),
        );
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

/// How lifetime value is projected.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ClvQuery {
    /// The last day observed (days since 1970-01-01).
    pub end_day: i64,
    /// Weeks of expected purchases.
    pub horizon_weeks: f64,
    /// Months of discounted value, and the monthly discount rate.
    pub months: u32,
    pub discount: f64,
    /// How many customers the answer lists, most valuable first.
    pub limit: usize,
}

/// One customer's lifetime figures, in weeks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CustomerValue {
    pub profile_id: String,
    pub frequency: f64,
    pub recency: f64,
    #[serde(rename = "T")]
    pub age: f64,
    pub monetary_value: f64,
    pub p_alive: f64,
    pub expected_purchases: f64,
    pub expected_spend: Option<f64>,
    pub clv: Option<f64>,
}

/// The fitted models and every buyer's lifetime value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Clv {
    pub end: String,
    pub horizon_weeks: f64,
    pub months: u32,
    pub discount: f64,
    pub customers: u64,
    pub repeat_customers: u64,
    /// r, alpha, a, b and the log-likelihood.
    pub bg_nbd: BTreeMap<&'static str, f64>,
    /// p, q, gamma and the log-likelihood (none with fewer than 3 repeat buyers).
    pub gamma_gamma: Option<BTreeMap<&'static str, f64>>,
    /// Buyers whose probability of being alive is below one half.
    pub likely_to_lapse: u64,
    /// The lifetime value above which a customer is in the top 10 %.
    pub top_decile_clv: Option<f64>,
    pub expected_purchases: f64,
    pub total_clv: Option<f64>,
    /// The most valuable customers first (by CLV, else expected purchases), up to the limit.
    pub top: Vec<CustomerValue>,
    #[serde(skip)]
    pub all: Vec<CustomerValue>,
}

/// BG/NBD and Gamma-Gamma fitted on the workspace's orders (weeks, `lifetimes`' conventions:
/// one purchase a day, repeat purchases only), and each buyer's probability of being alive,
/// expected purchases over the horizon, expected spend and discounted lifetime value.
/// `clv_unfittable` when no buyer bought again.
pub fn clv(
    store: &dyn Store,
    snapshots: &Snapshots,
    actor: &Actor,
    q: ClvQuery,
) -> Result<Clv, ServiceError> {
    use parcours_core::clv::{self as model, Purchase};
    let read = snapshots.read(store, &actor.workspace, None)?;
    let purchases: Vec<Purchase> = kpi::orders(&read.input)
        .into_iter()
        .map(|(person, at, amount)| Purchase {
            customer: read.profile_ids[person as usize].clone(),
            day: at.div_euclid(86_400_000),
            amount,
        })
        .collect();
    let customers = model::summarise(&purchases, q.end_day, 7.0);
    let Some(v) = model::value_customers(&customers, q.horizon_weeks, q.months, q.discount) else {
        return Err(ServiceError::invalid(
            "clv_unfittable",
            format!(
                "none of the {} buyers up to {} bought again, or the model did not converge on \
                 them: the repeat-purchase model cannot be fitted",
                customers.len(),
                date(q.end_day)
            ),
        ));
    };
    let mut all: Vec<CustomerValue> = v
        .customers
        .iter()
        .map(|c| CustomerValue {
            profile_id: c.customer.clone(),
            frequency: c.summary.x,
            recency: c.summary.t_x,
            age: c.summary.t,
            monetary_value: c.monetary,
            p_alive: c.p_alive,
            expected_purchases: c.expected_purchases,
            expected_spend: c.expected_spend,
            clv: c.clv,
        })
        .collect();
    all.sort_by(|a, b| {
        let key = |c: &CustomerValue| c.clv.unwrap_or(c.expected_purchases);
        key(b)
            .total_cmp(&key(a))
            .then_with(|| a.profile_id.cmp(&b.profile_id))
    });
    let values: Vec<f64> = all.iter().filter_map(|c| c.clv).collect();
    let m = &v.bg_nbd;
    Ok(Clv {
        end: date(q.end_day),
        horizon_weeks: q.horizon_weeks,
        months: q.months,
        discount: q.discount,
        customers: all.len() as u64,
        repeat_customers: customers.iter().filter(|c| c.summary.x > 0.0).count() as u64,
        bg_nbd: BTreeMap::from([
            ("r", m.r),
            ("alpha", m.alpha),
            ("a", m.a),
            ("b", m.b),
            ("log_likelihood", v.log_likelihood),
        ]),
        gamma_gamma: v.gamma_gamma.map(|(g, ll)| {
            BTreeMap::from([
                ("p", g.p),
                ("q", g.q),
                ("gamma", g.gamma),
                ("log_likelihood", ll),
            ])
        }),
        likely_to_lapse: all.iter().filter(|c| c.p_alive < 0.5).count() as u64,
        // Sorted from the highest: the value of the customer at the 10 % mark.
        top_decile_clv: (!values.is_empty()).then(|| values[(values.len() - 1) / 10]),
        expected_purchases: all.iter().map(|c| c.expected_purchases).sum(),
        total_clv: (!values.is_empty()).then(|| values.iter().sum()),
        top: all.iter().take(q.limit).cloned().collect(),
        all,
    })
}

/// Every buyer's lifetime figures as CSV, in the columns `parcours report clv` prints.
pub fn clv_csv(c: &Clv) -> String {
    let mut out = String::from(
        "profile_id,frequency,recency,T,monetary_value,p_alive,expected_purchases,expected_spend,clv\n",
    );
    let opt = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v:.6}"));
    for v in &c.all {
        out.push_str(&format!(
            "{},{},{},{},{},{:.6},{:.6},{},{}\n",
            csv_field(&v.profile_id),
            v.frequency,
            v.recency,
            v.age,
            v.monetary_value,
            v.p_alive,
            v.expected_purchases,
            opt(v.expected_spend),
            opt(v.clv)
        ));
    }
    out
}

/// The most rows one spend import may hold.
pub const MAX_SPEND_ROWS: usize = 100_000;

/// Reads a spend file: a header naming the columns `date`, `channel`, `amount` and optionally
/// `campaign` (any order; separated by `,`, `;` or tabs), then a row per day, channel and
/// campaign. `invalid_spend` with the line of the first problem.
pub fn parse_spend(text: &str) -> Result<Vec<SpendRow>, ServiceError> {
    use parcours_core::table::{self, Separator};
    let bad = |line: usize, m: String| {
        ServiceError::invalid("invalid_spend", format!("line {line}: {m}"))
    };
    let mut lines = table::lines(text);
    let Some((n, header)) = lines.next() else {
        return Err(ServiceError::invalid(
            "invalid_spend",
            "the file is empty: it needs a header (date,channel,campaign,amount) and rows",
        ));
    };
    let sep = Separator::of(header);
    let names: Vec<String> = sep.split(header).iter().map(|h| h.to_lowercase()).collect();
    let at = |name: &str| names.iter().position(|h| h == name);
    let (Some(date_at), Some(channel_at), Some(amount_at)) =
        (at("date"), at("channel"), at("amount"))
    else {
        return Err(bad(
            n,
            "the header must name the columns date, channel and amount (and campaign, optional)"
                .into(),
        ));
    };
    let campaign_at = at("campaign");
    let mut rows = Vec::new();
    for (n, line) in lines {
        if rows.len() == MAX_SPEND_ROWS {
            return Err(bad(
                n,
                format!("an import holds at most {MAX_SPEND_ROWS} rows"),
            ));
        }
        let fields = sep.split(line);
        let field = |i: usize| fields.get(i).copied().unwrap_or("");
        let day = table::day(field(date_at), n).map_err(|e| bad(n, e.message))?;
        let channel = field(channel_at);
        if channel.is_empty() || channel.chars().count() > 64 {
            return Err(bad(n, "a channel is 1 to 64 characters".into()));
        }
        let campaign = campaign_at.map_or("", field);
        if campaign.chars().count() > 200 {
            return Err(bad(n, "a campaign is at most 200 characters".into()));
        }
        let amount =
            table::amount(field(amount_at), "the amount", n).map_err(|e| bad(n, e.message))?;
        if amount > 1e15 {
            return Err(bad(n, "the amount is too large".into()));
        }
        rows.push(SpendRow {
            day,
            channel: channel.to_string(),
            campaign: campaign.to_string(),
            amount,
        });
    }
    Ok(rows)
}

/// Imports spend rows (admins and marketers), each replacing the row of its day, channel and
/// campaign. Returns how many were stored.
pub fn import_spend(
    store: &dyn Store,
    actor: &Actor,
    text: &str,
    now: Millis,
) -> Result<usize, ServiceError> {
    actor.require_editor()?;
    let rows = parse_spend(text)?;
    store.put_ad_spend(&actor.workspace, &rows, now)?;
    Ok(rows.len())
}

/// The spend of a range of days.
pub fn spend(
    store: &dyn Store,
    actor: &Actor,
    range: DayRange,
) -> Result<Vec<SpendRow>, ServiceError> {
    Ok(store.ad_spend(&actor.workspace, range.from, range.to)?)
}

/// Retention and revenue by acquisition cohort.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cohorts {
    pub from: String,
    pub to: String,
    pub period: Period,
    pub by_channel: bool,
    pub cohorts: Vec<Cohort>,
}

/// The customers first acquired in the range, by week or month of their first order (and its
/// channel), followed through every period up to the range's end.
pub fn cohorts(
    store: &dyn Store,
    snapshots: &Snapshots,
    actor: &Actor,
    range: DayRange,
    period: Period,
    by_channel: bool,
) -> Result<Cohorts, ServiceError> {
    let read = snapshots.read(store, &actor.workspace, None)?;
    Ok(Cohorts {
        from: date(range.from),
        to: date(range.to),
        period,
        by_channel,
        cohorts: kpi::cohorts(
            &read.input,
            start_of_day(range.from),
            start_of_day(range.to + 1),
            period,
            by_channel,
        ),
    })
}

/// Cohorts as CSV: one line per cohort and period after it (`0` the first).
pub fn cohorts_csv(c: &Cohorts) -> String {
    let mut out = String::from("cohort,key,customers,period,active,retention,revenue\n");
    for k in &c.cohorts {
        for (i, (active, revenue)) in k.active.iter().zip(&k.revenue).enumerate() {
            let retention = if k.customers > 0 {
                *active as f64 / k.customers as f64
            } else {
                0.0
            };
            out.push_str(&format!(
                "{},{},{},{i},{active},{retention:.6},{revenue:.2}\n",
                csv_field(&k.cohort),
                csv_field(&k.key),
                k.customers
            ));
        }
    }
    out
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
    /// The name of each fact's event (`Page Viewed` and `Screen Viewed` for page and screen
    /// calls; `None` for identify, group and alias calls): an index into `event_names`.
    pub names: Vec<Option<u32>>,
    pub event_names: Vec<String>,
    /// Each order's id, by the index its facts carry.
    pub order_ids: Vec<String>,
    /// How many people the facts name (`0..people`).
    pub people: usize,
    /// The profile id of each person.
    pub profile_ids: Vec<String>,
    /// Each person by her profile id.
    persons: HashMap<String, u32>,
    /// Merged profiles, each to the one it was merged into.
    merged_into: HashMap<String, String>,
    pub events: u64,
    pub unapplied: u64,
}

impl Read {
    /// The person a profile is now (following merges), when any of her events was read.
    pub fn person_of(&self, profile: &str) -> Option<u32> {
        self.persons
            .get(live_profile(&self.merged_into, profile))
            .copied()
    }
}

/// The profile `id` was merged into, following merges to the live one.
fn live_profile<'a>(merged_into: &'a HashMap<String, String>, id: &'a str) -> &'a str {
    let mut id = id;
    // A cycle cannot happen; the bound keeps a corrupt store from hanging a report.
    for _ in 0..=merged_into.len() {
        match merged_into.get(id) {
            Some(p) => id = p.as_str(),
            None => break,
        }
    }
    id
}

/// The two passes over a workspace's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Which profile each event was applied to.
    Owners,
    /// The events themselves.
    Events,
}

/// A reading of the log under way.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    pub phase: Phase,
    /// Rows read in this phase, of about `total` (the workspace's events).
    pub done: u64,
    pub total: u64,
    #[serde(serialize_with = "parcours_core::time::serialize_iso")]
    pub started_at: Millis,
}

impl Progress {
    /// How far the whole reading is, from 0 to 1 (each phase is about one row an event).
    pub fn fraction(&self) -> f64 {
        let total = self.total.max(1) as f64;
        let phase = (self.done as f64 / total).min(1.0);
        match self.phase {
            Phase::Owners => phase / 2.0,
            Phase::Events => 0.5 + phase / 2.0,
        }
    }
}

/// What the measurement of a workspace is computed from now, and the reading under way.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// The reading of the log under way, if any.
    pub reading: Option<Progress>,
    /// The last reading, kept for the next requests while the log has not changed.
    pub snapshot: Option<SnapshotInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotInfo {
    #[serde(serialize_with = "parcours_core::time::serialize_iso")]
    pub read_at: Millis,
    pub events: u64,
    /// The log position profiles had reached when it was read.
    pub processed_seq: i64,
}

/// What a reading depends on: the events applied to profiles, the projections' epoch (an
/// undone merge or a replay rewrites who owns what) and the advertising spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    processed: i64,
    epoch: i64,
    spend: u64,
}

struct Ready {
    read: Arc<Read>,
    stamp: Stamp,
    read_at: Millis,
    /// When a request last used it.
    used_at: Millis,
}

/// A reading no request used for this long is let go (it holds every event of the
/// workspace in memory).
pub const IDLE_MS: Millis = 10 * 60_000;

#[derive(Default)]
struct Slot {
    ready: Option<Ready>,
    reading: Option<Progress>,
}

/// The last reading of each workspace's log, shared by the requests of a node: a request
/// whose log has not changed since is answered from it; requests that need a new reading
/// share one (the first reads, the others wait for it), and its progress is visible
/// ([`Snapshots::status`]) while it runs.
pub struct Snapshots {
    clock: Arc<dyn Clock>,
    slots: Mutex<HashMap<String, Slot>>,
    changed: Condvar,
}

/// Clears the reading under way when the reader stops, even by a panic, and wakes the
/// waiting requests.
struct Reading<'a> {
    snapshots: &'a Snapshots,
    workspace: &'a str,
    done: Option<Ready>,
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        let mut slots = self.snapshots.lock();
        let slot = slots.entry(self.workspace.to_string()).or_default();
        slot.reading = None;
        if let Some(done) = self.done.take() {
            slot.ready = Some(done);
        }
        drop(slots);
        self.snapshots.changed.notify_all();
    }
}

impl Snapshots {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Snapshots {
            clock,
            slots: Mutex::default(),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops a workspace's last reading (an erasure took someone out of the log).
    pub fn forget(&self, workspace: &str) {
        if let Some(slot) = self.lock().get_mut(workspace) {
            slot.ready = None;
        }
    }

    /// The reading under way and the last one, for a workspace.
    pub fn status(&self, workspace: &str) -> Status {
        let slots = self.lock();
        let slot = slots.get(workspace);
        Status {
            reading: slot.and_then(|s| s.reading.clone()),
            snapshot: slot.and_then(|s| s.ready.as_ref()).map(|r| SnapshotInfo {
                read_at: r.read_at,
                events: r.read.events,
                processed_seq: r.stamp.processed,
            }),
        }
    }

    /// The workspace's log as of now: the last reading when nothing it depends on changed
    /// (or, with `max_age`, when it is that recent and only new events came since), else a
    /// new reading (shared with the requests that ask meanwhile).
    pub fn read(
        &self,
        store: &dyn Store,
        workspace: &str,
        max_age: Option<Millis>,
    ) -> Result<Arc<Read>, ServiceError> {
        let now = self.clock.now();
        let stamp = Stamp {
            processed: store.processed_seq()?,
            epoch: store.projections_epoch()?,
            spend: spend_digest(&store.ad_spend(workspace, i64::MIN / 2, i64::MAX / 2)?),
        };
        let mut slots = self.lock();
        for slot in slots.values_mut() {
            if slot
                .ready
                .as_ref()
                .is_some_and(|r| now - r.used_at > IDLE_MS)
            {
                slot.ready = None;
            }
        }
        loop {
            let slot = slots.entry(workspace.to_string()).or_default();
            if let Some(r) = &mut slot.ready {
                let recent = max_age.is_some_and(|age| now - r.read_at <= age)
                    && r.stamp.epoch == stamp.epoch
                    && r.stamp.spend == stamp.spend;
                if r.stamp == stamp || recent {
                    r.used_at = now;
                    return Ok(r.read.clone());
                }
            }
            if slot.reading.is_none() {
                break;
            }
            slots = self.changed.wait(slots).unwrap_or_else(|e| e.into_inner());
        }
        let total = store.event_count(workspace)?;
        slots.entry(workspace.to_string()).or_default().reading = Some(Progress {
            phase: Phase::Owners,
            done: 0,
            total,
            started_at: now,
        });
        drop(slots);
        let mut reading = Reading {
            snapshots: self,
            workspace,
            done: None,
        };
        let read = Arc::new(read_log_with(store, workspace, &mut |phase, done| {
            let mut slots = self.lock();
            if let Some(p) = slots.get_mut(workspace).and_then(|s| s.reading.as_mut()) {
                p.phase = phase;
                p.done = done;
            }
        })?);
        reading.done = Some(Ready {
            read: read.clone(),
            stamp,
            read_at: now,
            used_at: now,
        });
        Ok(read)
    }
}

/// A digest of the advertising spend rows (a reading holds them: an import makes it stale).
fn spend_digest(rows: &[SpendRow]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for r in rows {
        (r.day, &r.channel, &r.campaign, r.amount.to_bits()).hash(&mut h);
    }
    rows.len().hash(&mut h);
    h.finish()
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
    read_log_with(store, workspace, &mut |_, _| {})
}

/// [`read_log`], telling `progress` how far it got: the phase (`owners`: which profile each
/// event was applied to; `events`: the events themselves) and the rows read in it.
pub fn read_log_with(
    store: &dyn Store,
    workspace: &str,
    progress: &mut dyn FnMut(Phase, u64),
) -> Result<Read, ServiceError> {
    let (owners, profile_ids, merged_into) = owners(store, workspace, progress)?;
    let people = profile_ids.len();
    let persons = profile_ids
        .iter()
        .enumerate()
        .map(|(i, p)| (p.clone(), i as u32))
        .collect();
    let (mut shops, mut campaigns, mut orders, mut carts, mut event_names) = (
        Names::default(),
        Names::default(),
        Names::default(),
        Names::default(),
        Names::default(),
    );
    let (mut facts, mut names, mut events, mut unapplied) = (Vec::new(), Vec::new(), 0u64, 0u64);
    let mut after = 0;
    loop {
        let page = store.workspace_events(workspace, after, PAGE)?;
        progress(Phase::Events, events + page.len() as u64);
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
            let name = match e.kind {
                EventType::Track => e.event.as_deref(),
                EventType::Page => Some("Page Viewed"),
                EventType::Screen => Some("Screen Viewed"),
                _ => None,
            };
            names.push(name.map(|n| event_names.of(n)));
        }
        match page.last() {
            Some(last) if page.len() == PAGE => after = last.seq,
            _ => break,
        }
    }
    let spend = store
        .ad_spend(workspace, i64::MIN / 2, i64::MAX / 2)?
        .into_iter()
        .map(|r| kpi::Spend {
            at: start_of_day(r.day),
            channel: r.channel,
            campaign: r.campaign,
            amount: r.amount,
        })
        .collect();
    Ok(Read {
        input: Input {
            facts,
            shops: shops.names,
            campaigns: campaigns.names,
            spend,
        },
        names,
        event_names: event_names.names,
        order_ids: orders.names,
        people,
        profile_ids,
        persons,
        merged_into,
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

/// The live profile of every event applied to one (as a number per profile), the live
/// profiles' ids, and the merged profiles.
type Owners = (HashMap<i64, u32>, Vec<String>, HashMap<String, String>);

fn owners(
    store: &dyn Store,
    workspace: &str,
    progress: &mut dyn FnMut(Phase, u64),
) -> Result<Owners, ServiceError> {
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

    let mut people = Names::default();
    let mut owners: HashMap<i64, u32> = HashMap::new();
    let mut position = String::new();
    let mut read = 0u64;
    loop {
        progress(Phase::Owners, read);
        let mut found: Vec<(String, i64)> = Vec::new();
        let (count, next) =
            store.event_owners(workspace, &position, None, PAGE, &mut |p, seq| {
                found.push((p.to_string(), seq));
            })?;
        read += found.len() as u64;
        for (p, seq) in found {
            // One owner an event: the first in profile order, should a store give two.
            let person = people.of(live_profile(&parent, &p));
            owners.entry(seq).or_insert(person);
        }
        if count < PAGE {
            break;
        }
        position = next;
    }
    Ok((owners, people.names, parent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spend_files_are_read_or_refused_with_their_line() {
        let rows = parse_spend(
            "Date;Channel;Campaign;Amount\n2026-11-02;ads;summer;12.50\n\n20261103;email;;3\n",
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (
                rows[0].channel.as_str(),
                rows[0].campaign.as_str(),
                rows[0].amount
            ),
            ("ads", "summer", 12.5)
        );
        assert_eq!(rows[1].campaign, "");
        assert_eq!(parcours_core::table::format_day(rows[1].day), "2026-11-03");
        let no_campaign = parse_spend("date,channel,amount\n2026-11-02,ads,1\n").unwrap();
        assert_eq!(no_campaign[0].campaign, "");
        for (text, line) in [
            ("", None),
            ("when,where,how much\n", Some(1)),
            ("date,channel,amount\nyesterday,ads,1\n", Some(2)),
            ("date,channel,amount\n2026-11-02,ads,-1\n", Some(2)),
            ("date,channel,amount\n2026-11-02,,1\n", Some(2)),
            (
                "date,channel,amount\n2026-11-02,ads,1\n2026-11-03,ads,NaN\n",
                Some(3),
            ),
        ] {
            let Err(ServiceError::Invalid { code, message }) = parse_spend(text) else {
                panic!("{text:?} was read");
            };
            assert_eq!(code, "invalid_spend");
            if let Some(line) = line {
                assert!(message.starts_with(&format!("line {line}:")), "{message}");
            }
        }
    }

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
