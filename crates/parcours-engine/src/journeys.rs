//! The journeys processor: moves every customer's runs on her events, her timers and her
//! deferred messages, and starts runs for the journeys her events enter.
//!
//! Per bucket, like the audience processor: it takes the work unify queued for the profiles
//! of its buckets ([`parcours_store::JourneyWork`], one row per event, in log order), then
//! the due timers of runs in its buckets. For each customer it decides with the pure state
//! machine ([`parcours_core::journey`]) and commits one [`JourneyWrite`]: her runs, their
//! notes, their timers, the outbox rows of the messages they send, and the work it settles,
//! fenced by the buckets' leases. The channel senders follow the outbox.
//!
//! Delivery controls are decided here, when a run reaches a send step: an address on the
//! profile, consent for the message's purpose on its channel, quiet hours in her time zone
//! (the message waits for their end on a timer of its own, and is decided again then), and a
//! template that renders. Each skip or deferral is a note with its reason.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use parcours_channels::{suppression_address, tracking, Outgoing, Renderer};
use parcours_core::audience::{Condition, EventFact, Subject};
use parcours_core::journey::machine::{self, draw, Fact, History};
use parcours_core::journey::policy::{self, CapWindow, Contact, Policy};
use parcours_core::journey::{
    self, local, Action, Admission, Effect, Input, Journey, Look, Message, MessageChannel, Outcome,
    Run, RunState, Trigger,
};
use parcours_core::rules::UnknownConsent;
use parcours_core::time::Millis;
use parcours_core::Profile;
use parcours_store::{
    profile_bucket, ContactRow, Fence, JourneyWork, JourneyWrite, NewOutboxRow, NewTimer, Result,
    RunNote, Store, StoreError, StoredRun, TimerClaim, TimerFire, JOURNEY_SCHEDULES,
    JOURNEY_TIMERS,
};
use serde_json::{json, Value};

use crate::runner::{Placement, Processor, StepContext};

mod schedule;
mod simulate;
pub use schedule::schedule_timer;
pub use simulate::{Conflict, Simulation, StepDecisions};

/// The processor's name in health reports and metrics.
pub const JOURNEYS: &str = "journeys";

pub use parcours_store::JOURNEY_SENDS;

/// The outbox destination of a channel's messages.
pub fn destination(channel: MessageChannel) -> String {
    format!("channel:{}", channel.as_str())
}

/// The outbox lane of the events journeys record in the log (a trait set by a step): an
/// outbox row commits with the decision, and the sender appends its event under its message
/// id, so it is recorded once.
pub const EVENTS_LANE: &str = "journey:events";

/// The source of the events journeys record.
pub const JOURNEYS_SOURCE: &str = "parcours:journeys";

/// An `update_trait` step: an identify of hers setting the trait, written to the log through
/// the outbox (her profile is made of her events: a trait set anywhere else would be lost the
/// next time it is derived again).
fn update_trait(
    d: &mut Decision<'_>,
    run: &Run,
    who: &Customer,
    step: &str,
    name: &str,
    value: &Value,
) {
    let id_of = |kind: &str| {
        who.profile
            .identifiers
            .iter()
            .find(|i| i.kind == kind)
            .map(|i| i.value.clone())
    };
    let key = format!("{}:{step}:trait", run.id);
    let mut event = json!({
        "type": "identify",
        "messageId": key,
        "timestamp": parcours_core::time::format_timestamp(d.now),
        "traits": {name: value},
        "context": {"library": {"name": "parcours"}, "journey": {"id": run.journey, "step": step, "run": run.id}},
    });
    match (id_of("user_id"), id_of("anonymous_id")) {
        (Some(u), _) => event["userId"] = u.into(),
        (None, Some(a)) => event["anonymousId"] = a.into(),
        (None, None) => {
            return d.note(
                run,
                Some(step.to_string()),
                "not_performed",
                "her profile has no user id or anonymous id to record the trait under".into(),
            )
        }
    }
    d.write.outbox.push(NewOutboxRow {
        workspace_id: d.ws.to_string(),
        destination: EVENTS_LANE.into(),
        key: key.clone(),
        payload: event.to_string(),
        items: 1,
        not_before: d.now,
        created_at: d.now,
    });
    d.note(
        run,
        Some(step.to_string()),
        "trait_updated",
        format!("`{name}` set to {value}"),
    );
}

/// An `ad_audience` step: her change goes to the destination's outbox lane, with the
/// identifiers it matches on (hashed as the platform wants), signed and retried like its
/// audience changes. Adding her needs consent to marketing on ads (`marketing:ads`, else
/// `marketing`); removing her never does.
#[allow(clippy::too_many_arguments)]
fn ad_audience(
    d: &mut Decision<'_>,
    journey: &Journey,
    run: &Run,
    step: &str,
    key: &str,
    destination: &str,
    add: bool,
    who: &Customer,
) {
    let step_of = Some(step.to_string());
    let found = d.store.definitions(Some(d.ws)).map(|all| {
        all.into_iter()
            .find(|x| x.kind == parcours_store::DefinitionKind::Destination && x.id == destination)
    });
    let doc = match found {
        Ok(Some(x)) => serde_json::from_value::<crate::destinations::DestinationDoc>(x.doc),
        Ok(None) => {
            return d.note(
                run,
                step_of,
                "not_performed",
                format!("no destination `{destination}` in this workspace"),
            )
        }
        Err(e) => {
            d.failed.get_or_insert(e);
            return;
        }
    };
    let Ok(doc) = doc else {
        d.failed.get_or_insert(StoreError::Corrupt(format!(
            "destination {destination} does not read"
        )));
        return;
    };
    if add {
        if let Some(detail) = refused_consent(who, "marketing", "ads") {
            return d.note(run, step_of, "no_consent", detail);
        }
    }
    let change = crate::destinations::JourneyChange {
        key,
        add,
        journey: &journey.id,
        journey_name: Some(journey.name.as_str()).filter(|n| !n.is_empty()),
        step,
        run: &run.id,
        profile: &run.profile,
    };
    let payload = match crate::destinations::journey_payload(
        d.store,
        d.ws,
        destination,
        &doc,
        &change,
        d.now,
    ) {
        Ok(p) => p,
        Err(e) => {
            d.failed.get_or_insert(e);
            return;
        }
    };
    d.write.outbox.push(NewOutboxRow {
        workspace_id: d.ws.to_string(),
        destination: parcours_store::destination_lane(destination),
        key: key.to_string(),
        payload: payload.to_string(),
        items: 1,
        not_before: d.now,
        created_at: d.now,
    });
    d.note(
        run,
        step_of,
        crate::destinations::AD_AUDIENCE_QUEUED,
        crate::destinations::queued_note(destination, add, !doc.enabled),
    );
}

/// Work rows taken per step.
const WORK_PAGE: usize = 2_000;
/// Timers claimed per step.
const TIMER_PAGE: usize = 500;
/// How long a claim holds its timers.
const TIMER_LEASE_MS: Millis = 60_000;

pub struct JourneyProcessor {
    renderer: Renderer,
    token: String,
    /// Versions never change once saved: read once.
    versions: Mutex<HashMap<(String, String, u32), Arc<Journey>>>,
    /// What each workspace's decisions share, read once per step (not once per customer).
    shares: Mutex<HashMap<String, Share>>,
    /// The address customers reach this node at: one-click unsubscribe links, the open
    /// pixel and click redirects point there (`None`: no unsubscribe header, no tracking).
    pub public_url: Option<String>,
    /// When scheduled journeys were last checked for a missing timer.
    healed_at: Option<Millis>,
}

impl Default for JourneyProcessor {
    fn default() -> Self {
        Self {
            renderer: Renderer::default(),
            token: format!("journeys-{:016x}", rand::random::<u64>()),
            versions: Mutex::default(),
            shares: Mutex::default(),
            public_url: None,
            healed_at: None,
        }
    }
}

/// A cache's lock (a panic while it was held leaves nothing half-written in it).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What every decision of a workspace reads: its live journeys, its contact policy, and
/// whether consent never given counts as given.
#[derive(Clone)]
struct Share {
    live: Vec<(u32, Arc<Journey>)>,
    policy: Arc<Policy>,
    unknown_granted: bool,
}

/// Why she may not be reached for `purpose` on `channel` (see [`Profile::consent_refusal`]).
fn refused_consent(who: &Customer, purpose: &str, channel: &str) -> Option<String> {
    who.profile
        .consent_refusal(purpose, channel, who.unknown_granted)
}

/// A customer as journeys see her, loaded once per decision.
struct Customer {
    profile: Profile,
    events: Vec<EventFact>,
    computed: BTreeMap<String, Value>,
    memberships: BTreeSet<String>,
    unknown_granted: bool,
    now: Millis,
    /// In the workspace's global control group (set where runs start).
    global_control: bool,
}

impl Look for Customer {
    fn holds(&self, condition: &Condition) -> bool {
        let subject = Subject {
            profile: &self.profile,
            events: &self.events,
            computed: &self.computed,
            memberships: &self.memberships,
            unknown_consent_granted: self.unknown_granted,
        };
        condition.evaluate(&subject, self.now).matched
    }

    fn time_zone(&self) -> Option<String> {
        self.profile
            .traits
            .get("timezone")
            .and_then(|t| t.value.as_str())
            .map(str::to_string)
    }

    fn trait_value(&self, name: &str) -> Option<Value> {
        self.profile.traits.get(name).map(|t| t.value.clone())
    }

    fn in_global_control(&self) -> bool {
        self.global_control
    }
}

impl Customer {
    fn address(&self, channel: MessageChannel) -> Option<String> {
        let kinds: &[&str] = match channel {
            MessageChannel::Email => &["email"],
            MessageChannel::Sms => &["phone"],
            MessageChannel::Push => &["push_token", "device_token"],
        };
        // An identifier (email, phone), else a trait of that name (a push token is no
        // identifier: a phone given to someone else keeps its token).
        kinds.iter().find_map(|k| {
            self.profile
                .identifiers
                .iter()
                .find(|i| i.kind == *k)
                .map(|i| i.value.clone())
                .or_else(|| {
                    self.profile
                        .traits
                        .get(*k)
                        .and_then(|t| t.value.as_str())
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                        .map(str::to_string)
                })
        })
    }

    /// What templates see.
    fn globals(&self, journey: &Journey, run: &Run) -> Value {
        self.globals_with(journey, &run.context, run.variant.as_deref())
    }

    /// What templates see, for an entry event (`context`) and a variant.
    fn globals_with(&self, journey: &Journey, context: &Value, variant: Option<&str>) -> Value {
        let traits: serde_json::Map<String, Value> = self
            .profile
            .traits
            .iter()
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .collect();
        json!({
            "traits": traits,
            "computed": self.computed,
            "event": context,
            "profile": {"id": self.profile.id},
            "journey": {"id": journey.id, "name": journey.name, "variant": variant},
        })
    }
}

/// Whether a message's templates name the customer's `shop` (its stock is then read).
fn names_shop(m: &parcours_core::journey::Message) -> bool {
    names(m, "shop")
}

/// Whether one of a message's templates (or its variants') contains `word`.
fn names(m: &parcours_core::journey::Message, word: &str) -> bool {
    let names = |t: &Option<String>| t.as_deref().is_some_and(|t| t.contains(word));
    [&m.subject, &m.html, &m.text, &m.title]
        .into_iter()
        .any(names)
        || m.variants.values().any(|v| {
            [&v.subject, &v.html, &v.text, &v.title]
                .into_iter()
                .any(names)
        })
}

/// Adds `preferences_url`, the customer's signed preference page, when the message names it
/// and the node has a public address (without one, it renders empty).
fn with_preferences(
    store: &dyn Store,
    ws: &str,
    base: Option<&str>,
    who: &Customer,
    globals: &mut Value,
    now: Millis,
) -> Result<()> {
    if let Some(base) = base {
        let secret = crate::erased::preference_secret(store, ws, now)?;
        globals["preferences_url"] = json!(format!(
            "{}{}",
            base.trim_end_matches('/'),
            parcours_core::privacy::preference_path(&secret, ws, &who.profile.id)
        ));
    }
    Ok(())
}

/// Adds what templates see of the customer's shop (her `preferred_store` trait, else her
/// `store_id`): `shop.id`, `shop.stock` (available units per SKU of the entry event's
/// products), `shop.products` (those products, each with its `available_at_shop`),
/// `shop.in_stock` and `shop.out_of_stock` (the products there to buy, and the others; each
/// with its `sku`, from `product_id` if the event named it so), so
/// a message can leave out what her shop does not have: `{% for p in shop.in_stock %}`.
/// Read when the message is decided: the stock of that instant.
fn with_shop(
    store: &dyn Store,
    ws: &str,
    who: &Customer,
    globals: &mut Value,
    now: Millis,
) -> Result<()> {
    let shop = ["preferred_store", "store_id"].iter().find_map(|t| {
        who.trait_value(t)
            .and_then(|v| v.as_str().map(str::to_string))
    });
    let props = &globals["event"]["properties"];
    let mut products: Vec<Value> = props["products"].as_array().cloned().unwrap_or_default();
    if products.is_empty() && (props["sku"].is_string() || props["product_id"].is_string()) {
        products.push(props.clone());
    }
    let sku_of = |p: &Value| {
        p["sku"]
            .as_str()
            .or_else(|| p["product_id"].as_str())
            .map(str::to_string)
    };
    let skus: Vec<String> = products
        .iter()
        .filter_map(sku_of)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .take(parcours_core::commerce::inventory::MAX_LINES)
        .collect();
    let mut stock = serde_json::Map::new();
    if let Some(shop) = &shop {
        let levels = if skus.is_empty() {
            Vec::new()
        } else {
            store.stock(ws, &skus, now)?
        };
        for sku in &skus {
            let n = levels
                .iter()
                .find(|l| &l.sku == sku && &l.location == shop)
                .map_or(0, |l| l.quantities.sellable());
            stock.insert(sku.clone(), n.into());
        }
    }
    let (mut all, mut in_stock, mut out) = (Vec::new(), Vec::new(), Vec::new());
    for mut p in products {
        let sku = sku_of(&p);
        let n = sku
            .as_ref()
            .and_then(|s| stock.get(s).and_then(Value::as_i64))
            .unwrap_or(0);
        if let Value::Object(o) = &mut p {
            o.insert("available_at_shop".into(), n.into());
            // Named `sku` whichever way the event named it.
            if let Some(sku) = sku {
                o.entry("sku").or_insert(sku.into());
            }
        }
        if n > 0 {
            in_stock.push(p.clone());
        } else {
            out.push(p.clone());
        }
        all.push(p);
    }
    globals["shop"] = json!({"id": shop, "stock": stock, "products": all,
                             "in_stock": in_stock, "out_of_stock": out});
    Ok(())
}

/// What deciding for these journeys reads of a customer, beyond her profile.
struct Inputs {
    /// The event names their conditions read (her timeline is read for those only).
    events: BTreeSet<String>,
    /// A condition reads events of any name.
    every_event: bool,
    /// A condition or an entry reads her audiences.
    audiences: bool,
    /// A condition or a template reads her computed traits.
    computed: bool,
}

fn inputs(journeys: &[Arc<Journey>]) -> Inputs {
    let mut inputs = Inputs {
        events: BTreeSet::new(),
        every_event: false,
        audiences: false,
        computed: false,
    };
    for j in journeys {
        let mut conditions: Vec<&Condition> = Vec::new();
        conditions.extend(j.exit_if.as_ref());
        conditions.extend(j.entry.condition.as_ref());
        if let Some(journey::Goal::Condition { condition }) = &j.goal {
            conditions.push(condition);
        }
        for s in &j.steps {
            if let Action::Branch { condition, .. } = &s.action {
                conditions.push(condition);
            }
        }
        for c in conditions {
            inputs
                .events
                .extend(c.event_names().into_iter().map(str::to_string));
            inputs.every_event |= c.reads_every_event();
            inputs.audiences |= !c.audiences().is_empty();
            inputs.computed |= !c.computed_traits().is_empty();
        }
        // An audience entry, or a schedule for an audience's members (the simulation
        // replays her memberships from today's).
        inputs.audiences |= matches!(
            j.entry.trigger,
            Trigger::Audience { .. }
                | Trigger::Schedule {
                    audience: Some(_),
                    ..
                }
        );
        inputs.computed |= templates_read_computed(j);
    }
    inputs
}

/// Whether a template of the journey may read `computed` (any text that names it, or that
/// indexes a variable; a webhook without a body of its own is sent everything).
fn templates_read_computed(j: &Journey) -> bool {
    let reads = |t: &Option<String>| {
        t.as_deref()
            .is_some_and(|t| t.contains("computed") || t.contains('['))
    };
    j.steps.iter().any(|s| match &s.action {
        Action::Send(m) => {
            [&m.subject, &m.html, &m.text, &m.title]
                .into_iter()
                .any(reads)
                || m.variants.values().any(|v| {
                    [&v.subject, &v.html, &v.text, &v.title]
                        .into_iter()
                        .any(reads)
                })
        }
        Action::Webhook { .. } => true,
        _ => false,
    })
}

/// Whether the workspace counts consent never given as given.
fn unknown_granted(store: &dyn Store, ws: &str) -> Result<bool> {
    Ok(store
        .workspace(ws)?
        .is_some_and(|w| w.identity_rules.unknown_consent == UnknownConsent::Granted))
}

fn load_customer(
    store: &dyn Store,
    ws: &str,
    profile: &str,
    journeys: &[Arc<Journey>],
    now: Millis,
    unknown_granted: bool,
) -> Result<Option<Customer>> {
    let Some(profile) = store.profile(ws, profile)? else {
        return Ok(None);
    };
    let needs = inputs(journeys);
    let events = if needs.events.is_empty() && !needs.every_event {
        Vec::new()
    } else {
        let timeline = store.timeline(ws, &profile.id, None, i32::MAX as usize)?;
        let mut facts = crate::facts::facts(&timeline, &needs.events);
        if !needs.every_event {
            facts.retain(|f| needs.events.contains(&f.name));
        }
        facts
    };
    // Read only when something reads them: most journeys look at traits and events only.
    let computed = if needs.computed {
        store.computed_values(ws, &profile.id)?
    } else {
        BTreeMap::new()
    };
    let memberships = if needs.audiences {
        store
            .memberships(ws, &profile.id)?
            .into_iter()
            .map(|m| m.audience_id)
            .collect()
    } else {
        BTreeSet::new()
    };
    Ok(Some(Customer {
        profile,
        events,
        computed,
        memberships,
        unknown_granted,
        now,
        global_control: false,
    }))
}

/// One customer's decision being built.
struct Decision<'a> {
    store: &'a dyn Store,
    ws: &'a str,
    profile: &'a str,
    now: Millis,
    write: JourneyWrite,
    /// The last timer each run asked for (`None`: cleared).
    timers: BTreeMap<String, Option<Millis>>,
    /// The workspace's contact policy.
    policy: Arc<Policy>,
    /// Her messages within the policy's longest window, this decision's included.
    contacts: Vec<Contact>,
    /// A read a check needed failed: the decision must not be committed.
    failed: Option<StoreError>,
}

/// How far back caps look: the longest rolling window, or two days for calendar days.
fn horizon(policy: &Policy) -> Millis {
    policy
        .caps
        .iter()
        .map(|c| match c.window {
            CapWindow::Rolling { ms } => ms,
            CapWindow::Day => 2 * 86_400_000,
        })
        .max()
        .unwrap_or(0)
}

/// How long a message with fallbacks waits to be delivered or opened before the next channel
/// is tried, when its journey does not say.
pub const FALLBACK_AFTER_MS: Millis = 3_600_000;

/// The parts of a rendered message a channel takes: `(subject, html, text, title)`. A push
/// falling back to email makes its title the subject; an email falling back to SMS sends its
/// text.
type Parts = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn parts_for(channel: MessageChannel, rendered: parcours_channels::Rendered) -> Parts {
    match channel {
        MessageChannel::Email => (
            rendered.subject.or(rendered.title),
            rendered.html,
            rendered.text,
            None,
        ),
        MessageChannel::Sms => (None, None, rendered.text, None),
        MessageChannel::Push => (None, None, rendered.text, rendered.title),
    }
}

/// What a message step would send a customer now, rendered and sent nowhere.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Preview {
    pub channel: MessageChannel,
    /// Her address on the channel (`None`: she has none).
    pub to: Option<String>,
    pub subject: Option<String>,
    pub html: Option<String>,
    pub text: Option<String>,
    pub title: Option<String>,
}

/// What to preview: a message step, for a customer, on a channel.
#[derive(Debug, Clone)]
pub struct PreviewOf<'a> {
    pub step: &'a str,
    pub profile: &'a str,
    /// Standing for the properties of the event that brought her in.
    pub properties: Value,
    /// Its own channel (`None`), or one of its fallbacks.
    pub channel: Option<MessageChannel>,
}

/// Renders a message step of `journey` for a customer as it would go now. `Ok(None)`: no
/// such customer; `Ok(Some(Err(_)))`: the template does not render (the message would not be
/// sent). Nothing is sent or stored.
pub fn preview(
    store: &dyn Store,
    ws: &str,
    journey: &Journey,
    of: PreviewOf<'_>,
    now: Millis,
) -> Result<Option<std::result::Result<Preview, parcours_channels::RenderError>>> {
    let PreviewOf {
        step,
        profile,
        properties,
        channel,
    } = of;
    let Some(Action::Send(message)) = journey.step_index(step).map(|i| &journey.steps[i].action)
    else {
        return Err(StoreError::NotFound(format!("message step `{step}`")));
    };
    let channel = channel.unwrap_or(message.channel);
    if !channels_of(message).contains(&channel) {
        return Err(StoreError::NotFound(format!(
            "{} in the channels of step `{step}`",
            channel.as_str()
        )));
    }
    let one = [Arc::new(journey.clone())];
    let Some(who) = load_customer(store, ws, profile, &one, now, unknown_granted(store, ws)?)?
    else {
        return Ok(None);
    };
    let context = json!({"properties": properties});
    let mut globals = who.globals_with(journey, &context, None);
    if names_shop(message) {
        with_shop(store, ws, &who, &mut globals, now)?;
    }
    Ok(Some(
        Renderer::default()
            .render(&message.on(channel), &globals)
            .map(|rendered| {
                let (subject, html, text, title) = parts_for(channel, rendered);
                Preview {
                    channel,
                    to: who.address(channel),
                    subject,
                    html,
                    text,
                    title,
                }
            }),
    ))
}

/// The channels a message tries, in order: its own, then its fallbacks.
fn channels_of(m: &Message) -> Vec<MessageChannel> {
    std::iter::once(m.channel)
        .chain(m.fallback.iter().copied())
        .collect()
}

/// The key of a message's `attempt`th channel: `RUN:STEP:EPOCH` on its own channel,
/// `RUN:STEP:EPOCH:CHANNEL` on a fallback.
fn attempt_key(base: &str, chain: &[MessageChannel], attempt: usize) -> String {
    match (attempt, chain.get(attempt)) {
        (0, _) | (_, None) => base.to_string(),
        (_, Some(c)) => format!("{base}:{}", c.as_str()),
    }
}

/// A key read back: its first-channel key and which channel it is.
fn read_attempt(key: &str, chain: &[MessageChannel]) -> (String, usize) {
    if let Some((base, last)) = key.rsplit_once(':') {
        if let Some(i) = chain.iter().skip(1).position(|c| c.as_str() == last) {
            return (base.to_string(), i + 1);
        }
    }
    (key.to_string(), 0)
}

fn fallback_payload(run: &Run, step: &str, base: &str, attempt: usize, priority: u8) -> String {
    json!({"run": run.id, "step": step, "attempt": attempt, "base": base, "fallback": true,
        "priority": priority})
    .to_string()
}

/// A decision for one customer, with the policy and the contacts its sends are checked against.
/// The workspace's contact policy (none when it has none, or when it does not read).
fn read_policy(store: &dyn Store, ws: &str) -> Result<Policy> {
    Ok(match store.journey_policy(ws)? {
        Some(doc) => policy::read(&doc).unwrap_or_else(|e| {
            tracing::warn!(workspace = ws, error = %e, "the contact policy does not read: no caps apply");
            Policy::default()
        }),
        None => Policy::default(),
    })
}

fn decision<'a>(
    store: &'a dyn Store,
    ws: &'a str,
    profile: &'a str,
    now: Millis,
    policy: Arc<Policy>,
) -> Result<Decision<'a>> {
    let contacts = if policy.caps.is_empty() {
        Vec::new()
    } else {
        store
            .contacts(ws, profile, now.saturating_sub(horizon(&policy)))?
            .into_iter()
            .filter_map(|c| {
                Some(Contact {
                    at: c.at,
                    channel: MessageChannel::parse(&c.channel)?,
                })
            })
            .collect()
    };
    Ok(Decision {
        store,
        ws,
        profile,
        now,
        write: JourneyWrite::default(),
        timers: BTreeMap::new(),
        policy,
        contacts,
        failed: None,
    })
}

impl Decision<'_> {
    fn note(&mut self, run: &Run, step: Option<String>, code: &str, detail: String) {
        self.write.notes.push(RunNote {
            workspace_id: self.ws.to_string(),
            run_id: run.id.clone(),
            journey_id: run.journey.clone(),
            profile_id: self.profile.to_string(),
            at: self.now,
            step,
            code: code.to_string(),
            detail,
        });
    }

    /// The write, fenced by the lease of her profile's bucket only: the one bucket it
    /// touches (holding every bucket of the node in each small transaction would keep lease
    /// renewals waiting).
    /// The write, or the store error a check met on the way (nothing of it is committed:
    /// the work is decided again).
    fn finish(mut self, fence: Option<Fence>) -> Result<JourneyWrite> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let bucket = profile_bucket(self.ws, self.profile);
        let fence = fence.map(|f| Fence {
            buckets: vec![bucket],
            ..f
        });
        for (run, due) in std::mem::take(&mut self.timers) {
            match due {
                Some(at) => self.write.set_timers.push(NewTimer {
                    workspace_id: self.ws.to_string(),
                    kind: JOURNEY_TIMERS.into(),
                    key: run,
                    bucket,
                    due_at: at,
                    payload: String::new(),
                }),
                None => self.write.cancel_timers.push((self.ws.to_string(), run)),
            }
        }
        self.write.fence = fence;
        Ok(self.write)
    }
}

/// A run as stored and as the machine sees it.
struct Live {
    stored: StoredRun,
    run: Run,
    journey: Arc<Journey>,
    /// Changed by this decision (written back).
    touched: bool,
}

impl JourneyProcessor {
    fn version(
        &self,
        store: &dyn Store,
        ws: &str,
        id: &str,
        v: u32,
    ) -> Result<Option<Arc<Journey>>> {
        let key = (ws.to_string(), id.to_string(), v);
        if let Some(j) = lock(&self.versions).get(&key) {
            return Ok(Some(j.clone()));
        }
        let Some(stored) = store.journey_version(ws, id, v)? else {
            return Ok(None);
        };
        let j: Journey = serde_json::from_value(stored.doc).map_err(|e| {
            StoreError::Corrupt(format!("journey {id} version {v} does not read: {e}"))
        })?;
        let j = Arc::new(j);
        lock(&self.versions).insert(key, j.clone());
        Ok(Some(j))
    }

    /// Moves a run in flight through the versions of its journey saved since it started, as
    /// each said when it was saved: through each version that says `in_flight: move` and has
    /// the step the run waits at (same id), up to the first that says `stay` or lacks the
    /// step. The run goes on from that step of the version it reached, its wait keeping its
    /// end time. Returns the version it moved to.
    fn move_in_flight(
        &self,
        store: &dyn Store,
        live: &mut Live,
        live_journeys: &[(u32, Arc<Journey>)],
    ) -> Result<Option<u32>> {
        let RunState::Waiting { step, .. } = &live.run.state else {
            return Ok(None);
        };
        let Some((latest, _)) = live_journeys.iter().find(|(_, j)| j.id == live.run.journey) else {
            return Ok(None);
        };
        let mut reached: Option<(u32, Arc<Journey>)> = None;
        for v in live.run.version + 1..=*latest {
            let Some(j) = self.version(store, &live.stored.workspace_id, &live.run.journey, v)?
            else {
                break;
            };
            if j.in_flight != parcours_core::journey::InFlight::Move || j.step_index(step).is_none()
            {
                break;
            }
            reached = Some((v, j));
        }
        let Some((version, journey)) = reached else {
            return Ok(None);
        };
        live.journey = journey;
        live.run.version = version;
        live.stored.version = version;
        live.touched = true;
        Ok(Some(version))
    }

    /// What the workspace's decisions share, read once per step.
    fn share(&self, store: &dyn Store, ws: &str) -> Result<Share> {
        if let Some(s) = lock(&self.shares).get(ws) {
            return Ok(s.clone());
        }
        let share = Share {
            live: self.live(store, ws)?,
            policy: Arc::new(read_policy(store, ws)?),
            unknown_granted: unknown_granted(store, ws)?,
        };
        lock(&self.shares).insert(ws.to_string(), share.clone());
        Ok(share)
    }

    /// The workspace's live journeys at their latest version, the highest priority first (an
    /// event that enters several decides theirs in that order, so the higher one gets her
    /// contact budget).
    fn live(&self, store: &dyn Store, ws: &str) -> Result<Vec<(u32, Arc<Journey>)>> {
        let mut out = Vec::new();
        for v in store.journeys(Some(ws))? {
            if v.status != "live" {
                continue;
            }
            if let Some(j) = self.version(store, ws, &v.journey_id, v.version)? {
                out.push((v.version, j));
            }
        }
        out.sort_by(|(_, a), (_, b)| b.priority.cmp(&a.priority).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    fn load_runs(&self, store: &dyn Store, ws: &str, profile: &str) -> Result<Vec<Live>> {
        let mut out = Vec::new();
        for stored in store.active_runs(ws, profile)? {
            let run: Run = serde_json::from_value(stored.state.clone())
                .map_err(|e| StoreError::Corrupt(format!("run {}: {e}", stored.run_id)))?;
            let Some(journey) = self.version(store, ws, &stored.journey_id, stored.version)? else {
                continue;
            };
            out.push(Live {
                stored,
                run,
                journey,
                touched: false,
            });
        }
        Ok(out)
    }

    /// Applies a run's effects to the decision.
    fn apply(&self, d: &mut Decision<'_>, live: &mut Live, effects: Vec<Effect>, who: &Customer) {
        live.touched = true;
        for e in effects {
            match e {
                Effect::Timer { at } => {
                    d.timers.insert(live.run.id.clone(), Some(at));
                }
                Effect::ClearTimer => {
                    d.timers.insert(live.run.id.clone(), None);
                }
                Effect::Send { step, key } => {
                    self.send(d, &live.journey, &live.run, &step, &key, who, None, 0);
                }
                Effect::UpdateTrait { step, name, value } => {
                    update_trait(d, &live.run, who, &step, &name, &value);
                }
                Effect::Webhook { step, key } => {
                    self.webhook(d, &live.journey, &live.run, &step, &key, who);
                }
                Effect::AdAudience {
                    step,
                    key,
                    destination,
                    add,
                } => ad_audience(
                    d,
                    &live.journey,
                    &live.run,
                    &step,
                    &key,
                    &destination,
                    add,
                    who,
                ),
                Effect::Converted { variant, holdout } => d.note(
                    &live.run,
                    None,
                    "converted",
                    match (holdout, variant) {
                        (true, _) if live.run.global_control => {
                            "converted, in the global control group".into()
                        }
                        (true, _) => "converted, in the holdout group".into(),
                        (false, Some(v)) => format!("converted, variant `{v}`"),
                        (false, None) => "converted".into(),
                    },
                ),
                Effect::Note { step, code, detail } => d.note(&live.run, step, &code, detail),
                Effect::Ended { outcome } => {
                    live.stored.active = false;
                    live.stored.ended_at = Some(d.now);
                    live.stored.outcome = Some(outcome.as_str().to_string());
                }
            }
        }
        live.stored.version = live.run.version;
        live.stored.state = serde_json::to_value(&live.run).expect("a run always serialises");
    }

    /// Decides a message at its send step (or when its deferral ends): address, consent,
    /// quiet hours, rendering, then an outbox row under its key.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        d: &mut Decision<'_>,
        journey: &Journey,
        run: &Run,
        step: &str,
        // The message's key on its first channel (`RUN:STEP:EPOCH`).
        base: &str,
        who: &Customer,
        // When a message held back by a cap must have gone (`None`: decided for the first
        // time; it expires after the policy's `expire_after`).
        expires: Option<Millis>,
        // Which of its channels: 0 its own, then its fallbacks in order.
        attempt: usize,
    ) {
        let Some(Action::Send(message)) =
            journey.step_index(step).map(|i| &journey.steps[i].action)
        else {
            return;
        };
        let chain = channels_of(message);
        let Some(&channel) = chain.get(attempt) else {
            return;
        };
        let key = &attempt_key(base, &chain, attempt);
        let skip = |d: &mut Decision<'_>, code: &str, detail: String| {
            d.note(run, Some(step.to_string()), code, detail)
        };
        // She cannot be reached on this channel: the next one is tried at once.
        let skip_or_next = |d: &mut Decision<'_>, code: &str, detail: String| {
            let next = chain.get(attempt + 1);
            let detail = match next {
                Some(n) => format!("{detail}: falling back to {}", n.as_str()),
                None => detail,
            };
            d.note(run, Some(step.to_string()), code, detail);
            next.is_some()
        };
        let Some(to) = who.address(channel) else {
            if skip_or_next(
                d,
                "no_address",
                format!("her profile has no {} address", channel.as_str()),
            ) {
                self.send(d, journey, run, step, base, who, expires, attempt + 1);
            }
            return;
        };
        match d
            .store
            .suppression(d.ws, channel.as_str(), &suppression_address(channel, &to))
        {
            Ok(Some(s)) => {
                if skip_or_next(
                    d,
                    "suppressed",
                    format!(
                        "{} is suppressed since {} ({}{}): nothing goes to it until it is lifted",
                        s.address,
                        parcours_core::time::format_timestamp(s.at),
                        s.reason.replace('_', " "),
                        if s.key.is_empty() {
                            String::new()
                        } else {
                            format!(", message {}", s.key)
                        }
                    ),
                ) {
                    self.send(d, journey, run, step, base, who, expires, attempt + 1);
                }
                return;
            }
            Ok(None) => {}
            Err(e) => {
                // Not knowing is not permission: the decision is taken again later.
                d.failed.get_or_insert(e);
                return;
            }
        }
        if message.purpose != "transactional" {
            if let Some(detail) = refused_consent(who, &message.purpose, channel.as_str()) {
                if skip_or_next(d, "no_consent", detail) {
                    self.send(d, journey, run, step, base, who, expires, attempt + 1);
                }
                return;
            }
        }
        // Right after she converted, no marketing: the thank-you is not followed by a
        // promotion for what she just bought.
        if let (Some(window), false) = (
            d.policy.after_conversion_ms,
            message.purpose == "transactional",
        ) {
            let since = d.now.saturating_sub(window);
            match d.store.runs_of(d.ws, d.profile, 100) {
                Ok(runs) => {
                    if let Some(c) = runs.iter().find(|r| {
                        r.outcome.as_deref() == Some("goal")
                            && r.ended_at.is_some_and(|at| at >= since)
                    }) {
                        return skip(
                            d,
                            "converted_recently",
                            format!(
                                "she converted in `{}` at {}: no marketing for {} after a conversion",
                                c.journey_id,
                                parcours_core::time::format_timestamp(c.ended_at.unwrap_or_default()),
                                parcours_core::journey::doc::format_duration(window)
                            ),
                        );
                    }
                }
                Err(e) => {
                    d.failed.get_or_insert(e);
                    return;
                }
            }
        }
        let tz = local::zone(
            who.time_zone()
                .or_else(|| journey.timezone.clone())
                .as_deref(),
        );
        let expires = expires.unwrap_or(d.now.saturating_add(d.policy.expire_after_ms));
        let defer = |d: &mut Decision<'_>, until: Millis| {
            d.write.set_timers.push(NewTimer {
                workspace_id: d.ws.to_string(),
                kind: JOURNEY_SENDS.into(),
                key: key.to_string(),
                bucket: profile_bucket(d.ws, d.profile),
                due_at: until,
                payload: json!({"run": run.id, "step": step, "expires": expires, "priority": journey.priority,
                    "attempt": attempt, "base": base})
                .to_string(),
            });
        };
        let quiet = journey.quiet_hours.or(d.policy.quiet_hours);
        if let Some(quiet) = &quiet {
            if let Some(until) = local::quiet_until(tz, d.now, quiet) {
                if quiet.drop {
                    return skip(d, "quiet_hours", "inside her quiet hours: dropped".into());
                }
                defer(d, until);
                return skip(
                    d,
                    "deferred_quiet_hours",
                    format!(
                        "inside her quiet hours ({}): deferred to {}",
                        tz.name(),
                        parcours_core::time::format_timestamp(until)
                    ),
                );
            }
        }
        let allowed = policy::next_allowed(&d.policy, &d.contacts, channel, d.now, tz);
        if allowed > d.now {
            if allowed > expires {
                let until = if allowed == Millis::MAX {
                    "ever".to_string()
                } else {
                    parcours_core::time::format_timestamp(allowed)
                };
                return skip(
                    d,
                    "capped",
                    format!(
                        "over her frequency cap until {until}: dropped, it could not go before it expired ({})",
                        parcours_core::time::format_timestamp(expires)
                    ),
                );
            }
            defer(d, allowed);
            return skip(
                d,
                "deferred_cap",
                format!(
                    "over her frequency cap: deferred to {} (priority {})",
                    parcours_core::time::format_timestamp(allowed),
                    journey.priority
                ),
            );
        }
        let mut globals = who.globals(journey, run);
        if names_shop(message) {
            if let Err(e) = with_shop(d.store, d.ws, who, &mut globals, d.now) {
                d.failed = Some(e);
                return;
            }
        }
        if names(message, "preferences_url") {
            let base = self.public_url.as_deref();
            if let Err(e) = with_preferences(d.store, d.ws, base, who, &mut globals, d.now) {
                d.failed = Some(e);
                return;
            }
        }
        let rendered = match self.renderer.render(&message.on(channel), &globals) {
            Ok(r) => r,
            Err(e) => {
                return skip(
                    d,
                    "render_failed",
                    format!("the message does not render: {e}"),
                )
            }
        };
        // Email links come back through Parcours when it has a public address: opens and
        // clicks return as events of hers, signed with the message's own secret.
        // Each channel takes its own parts (a push falling back to email makes its title the
        // subject; an email falling back to SMS sends its text).
        let (subject, html, text, title) = parts_for(channel, rendered);
        let (mut html, mut links, mut secret) = (html, Vec::new(), None);
        if let (Some(base), MessageChannel::Email, Some(body)) =
            (&self.public_url, channel, html.as_deref())
        {
            let s = format!("{:032x}", rand::random::<u128>());
            let (tracked, urls) = tracking::instrument(
                body,
                &tracking::Links {
                    base,
                    workspace: d.ws,
                    key,
                    secret: &s,
                },
            );
            (html, links, secret) = (Some(tracked), urls, Some(s));
        }
        // SMS and push: the provider reports delivery to a signed status callback.
        let mut status_callback = None;
        if let (Some(base), MessageChannel::Sms | MessageChannel::Push) =
            (&self.public_url, channel)
        {
            let s = format!("{:032x}", rand::random::<u128>());
            status_callback = Some(
                tracking::Links {
                    base,
                    workspace: d.ws,
                    key,
                    secret: &s,
                }
                .status(),
            );
            secret = Some(s);
        }
        let outgoing = Outgoing {
            channel,
            to,
            subject,
            html,
            text,
            title,
            key: key.to_string(),
            unsubscribe: match (&self.public_url, channel) {
                (Some(base), MessageChannel::Email) => Some(format!(
                    "{}/v1/unsubscribe/{}/{}/{:032x}",
                    base.trim_end_matches('/'),
                    d.ws,
                    key,
                    rand::random::<u128>()
                )),
                _ => None,
            },
            links,
            status_callback,
            secret,
            journey: journey.id.clone(),
            step: step.to_string(),
            run: run.id.clone(),
            profile: run.profile.clone(),
        };
        d.write.outbox.push(NewOutboxRow {
            workspace_id: d.ws.to_string(),
            destination: destination(channel),
            key: key.to_string(),
            payload: serde_json::to_string(&outgoing).expect("a message always serialises"),
            items: 1,
            not_before: d.now,
            created_at: d.now,
        });
        d.contacts.push(Contact { at: d.now, channel });
        d.write.contacts.push(ContactRow {
            workspace_id: d.ws.to_string(),
            profile_id: d.profile.to_string(),
            at: d.now,
            key: key.to_string(),
            channel: channel.as_str().to_string(),
            journey_id: journey.id.clone(),
            priority: journey.priority,
        });
        skip(
            d,
            "sent",
            if attempt == 0 {
                format!("{} queued for sending", channel.as_str())
            } else {
                format!(
                    "{} queued for sending (fallback {attempt})",
                    channel.as_str()
                )
            },
        );
        // The next channel, if this one is neither delivered nor opened in time (or fails
        // before: its receipt brings the fallback forward).
        if attempt + 1 < chain.len() {
            let after = message.fallback_after_ms.unwrap_or(FALLBACK_AFTER_MS);
            d.write.set_timers.push(NewTimer {
                workspace_id: d.ws.to_string(),
                kind: JOURNEY_SENDS.into(),
                key: attempt_key(base, &chain, attempt + 1),
                bucket: profile_bucket(d.ws, d.profile),
                due_at: d.now.saturating_add(after),
                payload: fallback_payload(run, step, base, attempt + 1, journey.priority),
            });
        }
    }

    /// A webhook step: its body rendered (Liquid, like messages) and its call written to the
    /// outbox under its key; the sender signs it (Standard Webhooks) and retries it under
    /// the same `webhook-id`.
    fn webhook(
        &self,
        d: &mut Decision<'_>,
        journey: &Journey,
        run: &Run,
        step: &str,
        key: &str,
        who: &Customer,
    ) {
        let Some(Action::Webhook { url, body, purpose }) =
            journey.step_index(step).map(|i| &journey.steps[i].action)
        else {
            return;
        };
        if purpose != "transactional" {
            if let Some(detail) = refused_consent(who, purpose, "webhook") {
                return d.note(run, Some(step.to_string()), "no_consent", detail);
            }
        }
        let mut globals = who.globals(journey, run);
        if body.as_deref().is_some_and(|b| b.contains("shop")) {
            if let Err(e) = with_shop(d.store, d.ws, who, &mut globals, d.now) {
                d.failed = Some(e);
                return;
            }
        }
        let body = match body {
            Some(template) => match self.renderer.render_text("body", template, &globals) {
                Ok(b) => b,
                Err(e) => {
                    return d.note(
                        run,
                        Some(step.to_string()),
                        "render_failed",
                        format!("the webhook body does not render: {e}"),
                    )
                }
            },
            // Without a body: who, where in which journey, and what brought her in.
            None => json!({
                "journey": journey.id,
                "step": step,
                "run": run.id,
                "profile_id": run.profile,
                "traits": globals["traits"],
                "event": run.context,
            })
            .to_string(),
        };
        let call = crate::provider::WebhookCall {
            url: url.clone(),
            body,
            journey: journey.id.clone(),
            step: step.to_string(),
            run: run.id.clone(),
            profile: run.profile.clone(),
        };
        d.write.outbox.push(NewOutboxRow {
            workspace_id: d.ws.to_string(),
            destination: crate::provider::WEBHOOK_LANE.into(),
            key: key.to_string(),
            payload: serde_json::to_string(&call).expect("a call always serialises"),
            items: 1,
            not_before: d.now,
            created_at: d.now,
        });
        d.note(
            run,
            Some(step.to_string()),
            "webhook_queued",
            format!("a call to {url} queued"),
        );
    }

    /// Whether an earlier channel of a message reached her (delivered, opened or clicked):
    /// why its fallback is not needed.
    fn reached(
        &self,
        store: &dyn Store,
        ws: &str,
        journey: &Journey,
        step: &str,
        base: &str,
        attempt: usize,
    ) -> Result<Option<String>> {
        let Some(Action::Send(message)) =
            journey.step_index(step).map(|i| &journey.steps[i].action)
        else {
            return Ok(None);
        };
        let chain = channels_of(message);
        for earlier in 0..attempt.min(chain.len()) {
            let key = attempt_key(base, &chain, earlier);
            if let Some(r) = store
                .receipts(ws, &key)?
                .into_iter()
                .find(|r| ["delivered", "opened", "clicked"].contains(&r.kind.as_str()))
            {
                return Ok(Some(format!(
                    "the {} message was {} ({})",
                    chain[earlier].as_str(),
                    r.kind,
                    parcours_core::time::format_timestamp(r.at)
                )));
            }
        }
        Ok(None)
    }

    /// A message of hers failed or bounced: the timer of its next channel, due now (`None`
    /// when the event is no such receipt, or the message has no next channel).
    fn fallback_now(
        &self,
        store: &dyn Store,
        ws: &str,
        profile: &str,
        name: &str,
        properties: &Value,
        now: Millis,
    ) -> Result<Option<NewTimer>> {
        if !(name.ends_with(" Failed") || name.ends_with(" Bounced")) {
            return Ok(None);
        }
        let text = |k: &str| properties.get(k).and_then(Value::as_str);
        let (Some(key), Some(run_id), Some(step)) =
            (text("message_key"), text("run"), text("step"))
        else {
            return Ok(None);
        };
        let Some(stored) = store.run(ws, run_id)? else {
            return Ok(None);
        };
        let Some(journey) = self.version(store, ws, &stored.journey_id, stored.version)? else {
            return Ok(None);
        };
        let Some(Action::Send(message)) =
            journey.step_index(step).map(|i| &journey.steps[i].action)
        else {
            return Ok(None);
        };
        let chain = channels_of(message);
        let (base, attempt) = read_attempt(key, &chain);
        if attempt + 1 >= chain.len() {
            return Ok(None);
        }
        let run: Run = serde_json::from_value(stored.state.clone())
            .map_err(|e| StoreError::Corrupt(format!("run {}: {e}", stored.run_id)))?;
        Ok(Some(NewTimer {
            workspace_id: ws.to_string(),
            kind: JOURNEY_SENDS.into(),
            key: attempt_key(&base, &chain, attempt + 1),
            bucket: profile_bucket(ws, profile),
            due_at: now,
            payload: fallback_payload(&run, step, &base, attempt + 1, journey.priority),
        }))
    }

    /// Moves one customer's runs on her queued events, and starts the runs they enter: the
    /// write to commit. `entered` counts the runs each journey started in decisions not
    /// committed yet (entry caps count them).
    fn follow(
        &self,
        store: &dyn Store,
        rows: &[JourneyWork],
        now: Millis,
        fence: Option<Fence>,
        entered: &mut HashMap<String, u64>,
    ) -> Result<JourneyWrite> {
        let (ws, profile) = (rows[0].workspace_id.as_str(), rows[0].profile_id.as_str());
        let share = self.share(store, ws)?;
        let live_journeys = share.live.clone();
        let mut runs = self.load_runs(store, ws, profile)?;
        let mut moved = Vec::new();
        for live in runs.iter_mut() {
            if let Some(v) = self.move_in_flight(store, live, &live_journeys)? {
                moved.push((live.run.clone(), v));
            }
        }
        runs.sort_by_key(|r| std::cmp::Reverse(r.journey.priority));
        let mut all: Vec<Arc<Journey>> = live_journeys.iter().map(|(_, j)| j.clone()).collect();
        all.extend(runs.iter().map(|r| r.journey.clone()));
        let mut d = decision(store, ws, profile, now, share.policy.clone())?;
        for (run, v) in &moved {
            d.note(
                run,
                None,
                "moved",
                format!("moved to version {v} of the journey (in_flight: move)"),
            );
        }
        d.write.settled = rows
            .iter()
            .map(|r| (r.workspace_id.clone(), r.seq, r.profile_id.clone()))
            .collect();
        let bodies: Vec<Value> = rows
            .iter()
            .map(|r| serde_json::from_str(&r.body).unwrap_or(Value::Null))
            .collect();
        // Changes of her audiences that no run of hers waits on and no journey starts from
        // move nothing: settled without reading her (an audience recomputed for a million
        // customers costs a million cheap settles, not a million decisions).
        let idle = runs.is_empty()
            && bodies.iter().all(|body| {
                let Some(audience) = body
                    .get("audience_change")
                    .and_then(|c| c.get("audience"))
                    .and_then(Value::as_str)
                else {
                    return false;
                };
                !live_journeys.iter().any(|(_, j)| {
                    matches!(&j.entry.trigger, Trigger::Audience { audience: a, .. } if a == audience)
                })
            });
        if idle {
            return d.finish(fence);
        }
        let Some(mut who) = load_customer(store, ws, profile, &all, now, share.unknown_granted)?
        else {
            // No such profile (its events were all undone): nothing to move.
            return d.finish(fence);
        };
        who.global_control = share.policy.in_global_control(&who.profile.id);
        if who.profile.id != profile {
            // She was merged into another profile since these events were queued: they are
            // hers under that profile, in its bucket (perhaps another node's).
            let survivor = who.profile.id.as_str();
            d.write.requeue = rows
                .iter()
                .map(|r| JourneyWork {
                    profile_id: survivor.to_string(),
                    bucket: profile_bucket(ws, survivor),
                    ..r.clone()
                })
                .collect();
            return d.finish(fence);
        }
        let mut new_runs: Vec<Live> = Vec::new();
        for (row, body) in rows.iter().zip(&bodies) {
            let empty = Value::Null;
            let properties = body.get("properties").unwrap_or(&empty);
            if let Some(t) = self.fallback_now(store, ws, profile, &row.name, properties, now)? {
                d.write.set_timers.push(t);
            }
            let fact = Fact {
                name: &row.name,
                properties,
                at: row.timestamp,
            };
            let input = if row.name.is_empty() {
                Input::Changed
            } else {
                Input::Event(fact)
            };
            for live in runs.iter_mut().chain(new_runs.iter_mut()) {
                if matches!(live.run.state, RunState::Done { .. }) {
                    continue;
                }
                let (next, fx) = journey::step(&live.journey, live.run.clone(), input, now, &who);
                if fx.is_empty() && next == live.run {
                    continue;
                }
                live.run = next;
                self.apply(&mut d, live, fx, &who);
            }
            // A change of her audiences enters the journeys that start on it; any other
            // profile change enters none.
            let change = body
                .get("audience_change")
                .and_then(|c| Some((c.get("audience")?.as_str()?, c.get("entered")?.as_bool()?)));
            let occurrence = schedule::scheduled(body);
            if row.name.is_empty() && change.is_none() && occurrence.is_none() {
                continue;
            }
            for (version, j) in &live_journeys {
                // She entered when the event happened (not when it was read): a purchase
                // right after it, read in the same batch or later, is hers.
                let mut entered_at = row.timestamp.min(now);
                let enters = match (change, occurrence) {
                    (Some((audience, entered)), _) => {
                        machine::enters_on_audience(j, audience, entered, row.timestamp, now)
                    }
                    (None, Some((id, at, due))) => {
                        if id != j.id || !machine::is_occurrence(&j.entry.trigger, at) {
                            continue;
                        }
                        let hers = machine::entry_instant(j, at, &who);
                        if hers > now && !due {
                            // Her clock does not read the schedule's time yet.
                            d.write
                                .set_timers
                                .push(schedule::wait_for_her_time(row, id, at, hers));
                            continue;
                        }
                        entered_at = hers.min(now);
                        now.saturating_sub(hers) <= j.entry.max_age_ms
                            && store
                                .run(ws, &run_id(ws, &j.id, profile, "", row.seq))?
                                .is_none()
                    }
                    (None, None) => machine::triggers(j, fact, now),
                };
                if !enters {
                    continue;
                }
                let Some(key) = machine::entry_key(j, body) else {
                    continue;
                };
                let mut history = store.run_history(ws, &j.id, profile, &key)?;
                let here = runs
                    .iter()
                    .chain(new_runs.iter())
                    .filter(|r| r.run.journey == j.id && r.run.key == key);
                for r in here {
                    history.active |= matches!(r.run.state, RunState::Waiting { .. });
                    history.last_entered = history.last_entered.max(Some(r.run.entered_at));
                }
                // Counting every run of a journey is for the ones with a cap only.
                let total = match j.entry.cap {
                    Some(_) => {
                        store.journey_entries(ws, &j.id)? + entered.get(&j.id).copied().unwrap_or(0)
                    }
                    None => 0,
                };
                let admission = machine::admit(
                    j,
                    History {
                        active: history.active,
                        last_entered: history.last_entered,
                        total_entries: total,
                    },
                    now,
                    &who,
                );
                if admission != Admission::Enter {
                    continue;
                }
                let id = run_id(ws, &j.id, profile, &key, row.seq);
                let (run, fx) = journey::enter(
                    j,
                    *version,
                    id.clone(),
                    profile.to_string(),
                    key.clone(),
                    body.clone(),
                    now,
                    &who,
                );
                let mut run = run;
                run.entered_at = entered_at;
                let mut live = Live {
                    stored: StoredRun {
                        workspace_id: ws.to_string(),
                        run_id: id,
                        journey_id: j.id.clone(),
                        version: *version,
                        profile_id: profile.to_string(),
                        key,
                        bucket: profile_bucket(ws, profile),
                        active: true,
                        state: Value::Null,
                        entered_at: run.entered_at,
                        ended_at: None,
                        outcome: None,
                        revision: 0,
                    },
                    run: run.clone(),
                    journey: j.clone(),
                    touched: true,
                };
                self.apply(&mut d, &mut live, fx, &who);
                *entered.entry(j.id.clone()).or_default() += 1;
                new_runs.push(live);
            }
        }
        for live in runs.into_iter().chain(new_runs) {
            if live.touched {
                d.write.runs.push(live.stored);
            }
        }
        d.finish(fence)
    }

    /// Each customer's decision, in the order of `groups`. Customers are decided apart from
    /// one another (her runs, her contact budget, her priorities are hers alone), so a large
    /// batch is shared among the machine's cores; journeys with an entry cap count the runs
    /// the batch starts as it goes, so a workspace with one is decided in order, on one.
    fn decide_all(
        &self,
        store: &dyn Store,
        groups: &BTreeMap<(&str, &str), Vec<JourneyWork>>,
        now: Millis,
        fence: &Option<Fence>,
    ) -> Result<Vec<Result<JourneyWrite>>> {
        let groups: Vec<&Vec<JourneyWork>> = groups.values().collect();
        let mut capped = false;
        for rows in &groups {
            let share = self.share(store, &rows[0].workspace_id)?;
            capped |= share.live.iter().any(|(_, j)| j.entry.cap.is_some());
        }
        let threads = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(MAX_DECIDING_THREADS);
        if capped || threads < 2 || groups.len() < PARALLEL_FROM {
            let mut entered = HashMap::new();
            return Ok(groups
                .iter()
                .map(|rows| self.follow(store, rows, now, fence.clone(), &mut entered))
                .collect());
        }
        let chunk = groups.len().div_ceil(threads);
        Ok(std::thread::scope(|scope| {
            let handles: Vec<_> = groups
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|rows| {
                                self.follow(store, rows, now, fence.clone(), &mut HashMap::new())
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("a deciding thread panicked"))
                .collect()
        }))
    }

    /// Fires due run timers and deferred messages of these buckets.
    fn fire(
        &mut self,
        store: &dyn Store,
        kind: &str,
        buckets: Option<&[u16]>,
        now: Millis,
        fence: &Option<Fence>,
    ) -> Result<usize> {
        let mut claimed = store.claim_timers(&TimerClaim {
            kind,
            buckets,
            now,
            limit: TIMER_PAGE,
            lease_until: now + TIMER_LEASE_MS,
            token: &self.token,
        })?;
        // Messages held back until the same moment compete for her budget: the journey of
        // higher priority is decided first, and the others wait again if it took the room.
        let priority = |t: &parcours_store::DurableTimer| {
            serde_json::from_str::<Value>(&t.payload)
                .ok()
                .and_then(|p| p.get("priority").and_then(Value::as_u64))
                .unwrap_or(0)
        };
        claimed.sort_by_key(|t| (t.due_at, std::cmp::Reverse(priority(t)), t.key.clone()));
        lock(&self.shares).clear();
        // The decisions of a page commit together (one transaction, not one per timer). A
        // customer is decided once per batch: a second timer of hers waits for the first's
        // write (her contact budget and her runs as it left them), and a batch that conflicts
        // is decided again one timer at a time.
        let mut fired: Vec<usize> = Vec::new();
        let mut batch = TimerBatch::default();
        let mut outcome = Ok(());
        let page = TimerPage {
            claimed: &claimed,
            kind,
            now,
            fence,
        };
        for (i, t) in claimed.iter().enumerate() {
            outcome = if kind == JOURNEY_SCHEDULES {
                let write = JourneyWrite {
                    fence: fence.clone(),
                    ..JourneyWrite::default()
                };
                self.occurrence(store, t, now, write)
                    .and_then(|w| store.record_journeys(&w))
                    .map(|()| fired.push(i))
            } else {
                self.batch_timer(store, &page, i, &mut batch, &mut fired)
            };
            if outcome.is_err() {
                break;
            }
        }
        if outcome.is_ok() {
            outcome = self.flush_timers(store, &page, &mut batch, &mut fired);
        }
        let fired: Vec<TimerFire> = fired
            .iter()
            .map(|&i| TimerFire {
                workspace_id: &claimed[i].workspace_id,
                kind,
                key: &claimed[i].key,
                due_at: claimed[i].due_at,
            })
            .collect();
        if let Err(e) = outcome {
            give_back(store, &self.token, kind, &claimed, &fired)?;
            return Err(e);
        }
        store.fire_timers(&self.token, &fired)?;
        Ok(claimed.len())
    }

    /// Decides timer `i` of a page into the batch (committing the batch first when it holds
    /// a decision for the same customer already).
    fn batch_timer(
        &mut self,
        store: &dyn Store,
        page: &TimerPage<'_>,
        i: usize,
        batch: &mut TimerBatch,
        fired: &mut Vec<usize>,
    ) -> Result<()> {
        let mut decided = self.decide_timer(store, page, i)?;
        if decided
            .as_ref()
            .is_some_and(|(who, _)| batch.customers.contains(who))
        {
            self.flush_timers(store, page, batch, fired)?;
            decided = self.decide_timer(store, page, i)?;
        }
        match decided {
            Some((who, write)) => {
                batch.customers.insert(who);
                batch.write.absorb(write);
                batch.timers.push(i);
            }
            None => fired.push(i),
        }
        Ok(())
    }

    /// Commits the batch; if it conflicts, decides and commits each of its timers alone.
    fn flush_timers(
        &mut self,
        store: &dyn Store,
        page: &TimerPage<'_>,
        batch: &mut TimerBatch,
        fired: &mut Vec<usize>,
    ) -> Result<()> {
        let TimerBatch { write, timers, .. } = std::mem::take(batch);
        match store.record_journeys(&write) {
            Ok(()) => fired.extend(timers),
            Err(StoreError::Conflict(e)) if timers.len() > 1 => {
                tracing::debug!(error = %e, "a batch of timer decisions conflicted: deciding each on its own");
                for i in timers {
                    if let Some((_, write)) = self.decide_timer(store, page, i)? {
                        store.record_journeys(&write)?;
                    }
                    fired.push(i);
                }
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// What timer `i` of a page decides: the customer it is about and the write, or nothing
    /// to do.
    fn decide_timer(
        &mut self,
        store: &dyn Store,
        page: &TimerPage<'_>,
        i: usize,
    ) -> Result<Option<((String, String), JourneyWrite)>> {
        let (t, kind) = (&page.claimed[i], page.kind);
        let run_id = if kind == JOURNEY_TIMERS {
            t.key.clone()
        } else {
            serde_json::from_str::<Value>(&t.payload)
                .ok()
                .and_then(|p| p.get("run").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_default()
        };
        let Some(stored) = store.run(&t.workspace_id, &run_id)? else {
            return Ok(None);
        };
        let who = (stored.workspace_id.clone(), stored.profile_id.clone());
        Ok(self
            .timer(store, stored, t, kind, page.now, page.fence.clone())?
            .map(|w| (who, w)))
    }

    fn timer(
        &mut self,
        store: &dyn Store,
        stored: StoredRun,
        t: &parcours_store::DurableTimer,
        kind: &str,
        now: Millis,
        fence: Option<Fence>,
    ) -> Result<Option<JourneyWrite>> {
        let (ws, profile) = (stored.workspace_id.clone(), stored.profile_id.clone());
        let Some(journey) = self.version(store, &ws, &stored.journey_id, stored.version)? else {
            return Ok(None);
        };
        let run: Run = serde_json::from_value(stored.state.clone())
            .map_err(|e| StoreError::Corrupt(format!("run {}: {e}", stored.run_id)))?;
        let mut live = Live {
            stored,
            run,
            journey,
            touched: false,
        };
        // A run moves with its own timer (or an event of hers), not with a deferred message.
        let share = self.share(store, &ws)?;
        let moved = if kind == JOURNEY_TIMERS {
            self.move_in_flight(store, &mut live, &share.live)?
        } else {
            None
        };
        let journey = live.journey.clone();
        let Some(who) = load_customer(
            store,
            &ws,
            &profile,
            std::slice::from_ref(&journey),
            now,
            share.unknown_granted,
        )?
        else {
            return Ok(None);
        };
        let mut d = decision(store, &ws, &profile, now, share.policy.clone())?;
        if let Some(v) = moved {
            d.note(
                &live.run,
                None,
                "moved",
                format!("moved to version {v} of the journey (in_flight: move)"),
            );
        }
        if kind == JOURNEY_TIMERS {
            if !live.stored.active {
                return Ok(None);
            }
            let (next, fx) = journey::step(
                &journey,
                live.run.clone(),
                Input::Timer { due: t.due_at },
                now,
                &who,
            );
            if fx.is_empty() && next == live.run {
                return Ok(None);
            }
            live.run = next;
            self.apply(&mut d, &mut live, fx, &who);
            d.write.runs.push(live.stored);
        } else {
            let payload = serde_json::from_str::<Value>(&t.payload).unwrap_or(Value::Null);
            self.deferred(store, &mut d, &journey, &live.run, &t.key, &payload, &who)?;
        }
        let write = d.finish(fence)?;
        Ok((!write.is_empty()).then_some(write))
    }
}

/// A page of claimed timers and what firing them needs.
struct TimerPage<'a> {
    claimed: &'a [parcours_store::DurableTimer],
    kind: &'a str,
    now: Millis,
    fence: &'a Option<Fence>,
}

/// The timers of a page decided but not yet committed.
#[derive(Default)]
struct TimerBatch {
    write: JourneyWrite,
    /// Indexes in the page.
    timers: Vec<usize>,
    customers: HashSet<(String, String)>,
}

/// After a handler failed: fires the timers handled already and gives the others back at
/// once, rather than leaving them leased until the claim runs out.
fn give_back(
    store: &dyn Store,
    token: &str,
    kind: &str,
    claimed: &[parcours_store::DurableTimer],
    fired: &[TimerFire],
) -> Result<()> {
    let back: Vec<TimerFire> = claimed
        .iter()
        .filter(|c| {
            !fired
                .iter()
                .any(|f| f.key == c.key && f.workspace_id == c.workspace_id)
        })
        .map(|c| TimerFire {
            workspace_id: &c.workspace_id,
            kind,
            key: &c.key,
            due_at: c.due_at,
        })
        .collect();
    store.fire_timers(token, fired)?;
    store.release_timers(token, &back)?;
    Ok(())
}

impl JourneyProcessor {
    /// A message deferred by quiet hours or a cap, or the next channel of a message not
    /// delivered (nor opened) in time, whose timer fired: sent now unless the run met its
    /// goal or exited meanwhile.
    #[allow(clippy::too_many_arguments)]
    fn deferred(
        &mut self,
        store: &dyn Store,
        d: &mut Decision<'_>,
        journey: &Journey,
        run: &Run,
        key: &str,
        payload: &Value,
        who: &Customer,
    ) -> Result<()> {
        let text = |k: &str| payload.get(k).and_then(Value::as_str).map(str::to_string);
        let step = text("step").unwrap_or_default();
        let base = text("base").unwrap_or_else(|| key.to_string());
        let attempt = payload.get("attempt").and_then(Value::as_u64).unwrap_or(0) as usize;
        if payload.get("fallback").and_then(Value::as_bool) == Some(true) {
            if store.outbox_row_by_key(d.ws, key)?.is_some() {
                // Sent already (a failure brought it forward): nothing more to do.
                return Ok(());
            }
            if let Some(why) = self.reached(store, d.ws, journey, &step, &base, attempt)? {
                d.note(run, Some(step), "fallback_not_needed", why);
                return Ok(());
            }
        }
        match &run.state {
            RunState::Done {
                outcome: outcome @ (Outcome::Goal | Outcome::Exited { .. }),
                ..
            } => d.note(
                run,
                Some(step),
                "not_sent",
                format!(
                    "the run ended ({}) before its deferred message could go",
                    outcome.as_str()
                ),
            ),
            _ if journey.exit_if.as_ref().is_some_and(|c| who.holds(c)) => d.note(
                run,
                Some(step),
                "not_sent",
                "the exit condition holds now".into(),
            ),
            _ => {
                let expires = payload.get("expires").and_then(Value::as_i64);
                self.send(d, journey, run, &step, &base, who, expires, attempt);
            }
        }
        Ok(())
    }
}

/// Customers in a batch from which their decisions are shared among threads.
const PARALLEL_FROM: usize = 64;
/// Threads that decide one batch at most.
const MAX_DECIDING_THREADS: usize = 4;

/// A run's id: the same entry (journey, customer, key, event) always gives the same id, so
/// a decision retried after a conflict writes the same keys. It starts with the entry
/// event's place in the log, so new runs (and their notes) are appended to their tables'
/// indexes rather than scattered through them; the rest tells apart the runs one event starts.
pub fn run_id(ws: &str, journey: &str, profile: &str, key: &str, seq: i64) -> String {
    let tail = draw(
        &["run", ws, journey, profile, key, &seq.to_string()],
        u64::MAX,
    );
    let order = (seq as u64) ^ (1 << 63);
    format!("{order:016x}{tail:08x}", tail = tail & 0xffff_ffff)
}

impl Processor for JourneyProcessor {
    fn name(&self) -> &'static str {
        JOURNEYS
    }

    fn placement(&self) -> Placement {
        Placement::PerBucket
    }

    fn step(&mut self, cx: &StepContext) -> Result<usize> {
        let buckets = cx.owned.map(|(_, b)| b);
        let fence = cx.owned.map(|(node, b)| Fence {
            node: node.to_string(),
            buckets: b.to_vec(),
            now: cx.now,
        });
        if buckets.is_some_and(<[u16]>::is_empty) {
            return Ok(0);
        }
        // A workspace's journeys and policy are read again each step: a new version or
        // policy applies from the next step on.
        lock(&self.shares).clear();
        let work = cx.store.journey_work(buckets, WORK_PAGE)?;
        let mut done = work.len();
        // One decision per customer, her events in log order.
        let mut groups: BTreeMap<(&str, &str), Vec<JourneyWork>> = BTreeMap::new();
        for w in &work {
            groups
                .entry((w.workspace_id.as_str(), w.profile_id.as_str()))
                .or_default()
                .push(w.clone());
        }
        // The customers' decisions commit together (one transaction, not one each); if one
        // of them no longer holds (a run moved, she was merged meanwhile), the others are
        // not held back by it: each is decided again and committed on its own.
        let mut batch = JourneyWrite::default();
        for write in self.decide_all(cx.store, &groups, cx.now, &fence)? {
            batch.absorb(write?);
        }
        match cx.store.record_journeys(&batch) {
            Err(StoreError::Conflict(e)) if groups.len() > 1 => {
                tracing::debug!(error = %e, "a batch of journey decisions conflicted: deciding each on its own");
                for rows in groups.values() {
                    let mut entered = HashMap::new();
                    let write = self.follow(cx.store, rows, cx.now, fence.clone(), &mut entered)?;
                    cx.store.record_journeys(&write)?;
                }
            }
            other => other?,
        }
        done += self.fire(cx.store, JOURNEY_TIMERS, buckets, cx.now, &fence)?;
        done += self.fire(cx.store, JOURNEY_SENDS, buckets, cx.now, &fence)?;
        self.heal_schedules(cx.store, buckets, cx.now)?;
        done += self.fire(cx.store, JOURNEY_SCHEDULES, buckets, cx.now, &fence)?;
        Ok(done)
    }
}
