//! A demo data set for "Maison Azur", a fictional French fashion retailer with a web shop, iOS and
//! Android apps, five stores, email, SMS, a call centre and a chatbot.
//!
//! Every event is a Segment-spec event that the product ingests through its real HTTP path, so the
//! demo exercises the same code as production traffic. The data is shaped to show what an
//! omnichannel platform has to get right:
//!
//! - anonymous browsing that identifies later, on several devices;
//! - one person written differently across channels (email case and spaces, phone formats);
//! - a shared tablet in every store that many customers log in on, which must not merge them;
//! - carts abandoned online and bought in store a few days later;
//! - consent given, then withdrawn, and campaigns that stop accordingly;
//! - lapsed customers, VIPs, and store-only customers who never touch the app.
//!
//! Everything is drawn from the seed: the same configuration gives the same events, byte for byte.

use serde_json::Value;

mod campaigns;
mod catalogue;
mod commerce;
mod devices;
mod events;
mod life;
mod output;
mod people;
mod random;
mod sessions;
#[cfg(test)]
mod tests;
mod time;
mod visitors;

use campaigns::*;
use catalogue::*;
use devices::*;
use events::*;
use life::*;
use output::*;
use people::*;
use random::*;
use sessions::*;
use time::*;
use visitors::*;

pub use commerce::{commerce_setup, last_unit_in, plenty_in, CommerceSetup, WELCOME_CODE};

/// One source the demo brand sends from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoSource {
    pub name: &'static str,
    pub channel: &'static str,
}

/// The brand's sources: "Web shop" (web), "iOS app" (ios), "Android app" (android), "Stores POS"
/// (store), "Email" (email), "SMS" (sms), "Call centre" (call_centre), "Chatbot" (chatbot).
pub fn demo_sources() -> Vec<DemoSource> {
    SOURCES
        .iter()
        .map(|&(name, channel)| DemoSource { name, channel })
        .collect()
}

#[derive(Debug, Clone)]
pub struct DemoConfig {
    pub customers: usize,
    pub days: u32,
    pub seed: u64,
    pub end_ms: i64,
}

#[derive(Debug, Clone)]
pub struct DemoEvent {
    /// A [`DemoSource`] name.
    pub source: &'static str,
    /// One Segment event object, with "type".
    pub event: Value,
}

/// All events, sorted by their "timestamp", every messageId unique.
pub fn generate(cfg: &DemoConfig) -> Vec<DemoEvent> {
    generate_compact(cfg)
        .into_iter()
        .map(|e| DemoEvent {
            source: e.source,
            event: serde_json::from_str(&e.json).expect("the demo writes JSON"),
        })
        .collect()
}

/// One event of the demo as its JSON text (a [`DemoEvent`] without the cost of a `Value`).
#[derive(Debug, Clone)]
pub struct CompactEvent {
    pub source: &'static str,
    pub json: String,
}

/// [`generate`], as JSON texts: what the demo sends, at a fraction of the memory.
pub fn generate_compact(cfg: &DemoConfig) -> Vec<CompactEvent> {
    let window = Window::of(cfg);
    let calendar = Calendar::of(window);
    let mut out = Output::new(window);
    for customer in &plan_customers(cfg) {
        live(cfg.seed, customer, &calendar, &mut out);
    }
    for visitor in 0..cfg.customers / 5 {
        browse_anonymously(cfg.seed, visitor, window, &mut out);
    }
    walk_in_sales(cfg, window, &mut out);
    out.finish(cfg.seed)
}

/// One line of the demo's banner, with the identifiers it names (each must find a profile).
#[derive(Debug, Clone)]
pub struct Highlight {
    pub text: String,
    /// `(identifier type, value)` of each example the line names.
    pub examples: Vec<(String, String)>,
}

impl Highlight {
    fn plain(text: String) -> Self {
        Highlight {
            text,
            examples: vec![],
        }
    }
}

/// The scenarios the data holds, with a few people worth looking at. The figures of who ended
/// up where (VIPs, lapsed, store-only…) are not planned here but read from the audiences once
/// computed (the `demo` command).
pub fn highlights(cfg: &DemoConfig) -> Vec<Highlight> {
    let window = Window::of(cfg);
    let customers = plan_customers(cfg);
    let store_names: Vec<&str> = STORES.iter().map(|s| s.name).collect();
    let mut lines = vec![
        Highlight::plain(format!(
            "{BRAND}, a French fashion retailer: {} customers over {} days up to {}, seed {}.",
            cfg.customers,
            cfg.days,
            day_of(window.end),
            cfg.seed
        )),
        Highlight::plain(format!(
            "Sources: web shop, iOS and Android apps, {} stores ({}), email, SMS, call centre, chatbot.",
            STORES.len(),
            store_names.join(", ")
        )),
    ];

    let omnichannel = customers.iter().find(|c| {
        c.persona == Persona::Omnichannel
            && c.app.is_some()
            && c.browsers > 0
            && c.loyalty_card.is_some()
            && c.active_from == window.start
            && c.consent.marketing
            && c.consent.analytics
            && c.marketing_withdrawn_at.is_none()
    });
    if let Some(c) = omnichannel {
        let card = c.loyalty_card.clone().unwrap_or_default();
        lines.push(Highlight {
            text: format!(
                "Omnichannel customer: {} ({}): web shop, {}, store {} with card {}, newsletters.",
                c.email,
                c.user_id,
                c.app.map_or("", Platform::source),
                STORES[c.store].name,
                card
            ),
            examples: vec![
                ("user_id".into(), c.user_id.clone()),
                ("email".into(), c.email.clone()),
                ("loyalty_card".into(), card),
            ],
        });
    }
    if let Some(c) = customers
        .iter()
        .find(|c| c.email_as_typed != c.email && c.browsers > 0)
    {
        lines.push(Highlight {
            text: format!(
                "Same person, typed differently: {} signs in as {:?} but the email platform knows {:?}; \
                 the trait keeps what she typed, the email identifier is normalised.",
                c.user_id, c.email_as_typed, c.email
            ),
            examples: vec![
                ("user_id".into(), c.user_id.clone()),
                ("email".into(), c.email.clone()),
            ],
        });
    }
    let web_phone = customers
        .iter()
        .filter(|c| c.browsers > 0 && c.types_phone_nationally)
        .find_map(|c| Some((c, c.phone?)));
    if let Some((c, phone)) = web_phone {
        lines.push(Highlight {
            text: format!(
                "Phone formats: {} gives {:?} on the web; SMS and caller id say {:?}.",
                c.user_id,
                c.phone_as_typed().unwrap_or_default(),
                phone.e164()
            ),
            examples: vec![
                ("user_id".into(), c.user_id.clone()),
                ("phone".into(), phone.e164()),
            ],
        });
    }

    let tablet_users: Vec<usize> = (0..STORES.len())
        .map(|store| {
            customers
                .iter()
                .filter(|c| c.store == store && !c.tablet_visits.is_empty())
                .count()
        })
        .collect();
    lines.push(Highlight {
        text: format!(
            "Identity trap: each store has one shared iPad (anonymousId tablet-store_N, device id \
             tablet-device-store_N, channel store); {} different customers log in on {} and {} across \
             all stores. They must stay separate people.",
            tablet_users[0],
            STORES[0].tablet,
            tablet_users.iter().sum::<usize>()
        ),
        examples: vec![],
    });
    lines.push(Highlight::plain(
        "Loose ends to tie: some calls carry only the caller's phone, some chats only an email typed in \
         the chat, and some store sales are anonymous (anonymousId pos-store_N-<receipt>): anonymous \
         profiles, left out of scores and ad lists."
            .to_string(),
    ));
    lines
}
