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

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use chrono::{DateTime, SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

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

// ---------------------------------------------------------------------------------------------
// The brand

const BRAND: &str = "Maison Azur";
/// `.example` is reserved (RFC 2606): no demo link or address can reach a real site or person.
const SHOP_URL: &str = "https://www.maison-azur.example";

const WEB_SHOP: &str = "Web shop";
const IOS_APP: &str = "iOS app";
const ANDROID_APP: &str = "Android app";
const STORES_POS: &str = "Stores POS";
const EMAIL: &str = "Email";
const SMS: &str = "SMS";
const CALL_CENTRE: &str = "Call centre";
const CHATBOT: &str = "Chatbot";

const SOURCES: [(&str, &str); 8] = [
    (WEB_SHOP, "web"),
    (IOS_APP, "ios"),
    (ANDROID_APP, "android"),
    (STORES_POS, "store"),
    (EMAIL, "email"),
    (SMS, "sms"),
    (CALL_CENTRE, "call_centre"),
    (CHATBOT, "chatbot"),
];

struct Store {
    id: &'static str,
    name: &'static str,
    /// Where the customers who prefer this store live; the first is the store's own city.
    cities: &'static [&'static str],
    /// Relative number of customers who prefer it.
    share: u32,
    tablet: &'static str,
    tablet_device: &'static str,
}

const STORES: [Store; 5] = [
    Store {
        id: "store_1",
        name: "Paris Rivoli",
        cities: &[
            "Paris",
            "Boulogne-Billancourt",
            "Montreuil",
            "Versailles",
            "Saint-Denis",
        ],
        share: 35,
        tablet: "tablet-store_1",
        tablet_device: "tablet-device-store_1",
    },
    Store {
        id: "store_2",
        name: "Lyon Part-Dieu",
        cities: &["Lyon", "Villeurbanne", "Grenoble", "Saint-Étienne"],
        share: 20,
        tablet: "tablet-store_2",
        tablet_device: "tablet-device-store_2",
    },
    Store {
        id: "store_3",
        name: "Lille Europe",
        cities: &["Lille", "Roubaix", "Tourcoing", "Arras"],
        share: 15,
        tablet: "tablet-store_3",
        tablet_device: "tablet-device-store_3",
    },
    Store {
        id: "store_4",
        name: "Bordeaux Sainte-Catherine",
        cities: &["Bordeaux", "Mérignac", "Pessac", "Arcachon"],
        share: 15,
        tablet: "tablet-store_4",
        tablet_device: "tablet-device-store_4",
    },
    Store {
        id: "store_5",
        name: "Marseille Terrasses",
        cities: &["Marseille", "Aix-en-Provence", "Toulon", "Aubagne"],
        share: 15,
        tablet: "tablet-store_5",
        tablet_device: "tablet-device-store_5",
    },
];

struct Category {
    name: &'static str,
    slug: &'static str,
    sizes: &'static [&'static str],
}

const CLOTHING_SIZES: &[&str] = &["XS", "S", "M", "L", "XL"];
const DRESSES: Category = Category {
    name: "Dresses",
    slug: "dresses",
    sizes: CLOTHING_SIZES,
};
const TOPS: Category = Category {
    name: "Tops",
    slug: "tops",
    sizes: CLOTHING_SIZES,
};
const JEANS: Category = Category {
    name: "Jeans",
    slug: "jeans",
    sizes: &["34", "36", "38", "40", "42", "44"],
};
const KNITWEAR: Category = Category {
    name: "Knitwear",
    slug: "knitwear",
    sizes: CLOTHING_SIZES,
};
const COATS: Category = Category {
    name: "Coats & jackets",
    slug: "coats-jackets",
    sizes: CLOTHING_SIZES,
};
const SHOES: Category = Category {
    name: "Shoes",
    slug: "shoes",
    sizes: &["36", "37", "38", "39", "40", "41"],
};
const BAGS: Category = Category {
    name: "Bags",
    slug: "bags",
    sizes: &["OS"],
};
const ACCESSORIES: Category = Category {
    name: "Accessories",
    slug: "accessories",
    sizes: &["OS"],
};
const CATEGORIES: [&Category; 8] = [
    &DRESSES,
    &TOPS,
    &JEANS,
    &KNITWEAR,
    &COATS,
    &SHOES,
    &BAGS,
    &ACCESSORIES,
];

struct Product {
    id: &'static str,
    name: &'static str,
    category: &'static Category,
    price_cents: i64,
}

impl Product {
    fn url(&self) -> String {
        format!("{SHOP_URL}/p/{}", self.id)
    }
}

/// Items at or above this price make up a VIP's basket more often than not.
const PREMIUM_CENTS: i64 = 14_900;

const CATALOG: &[Product] = &[
    Product {
        id: "P1001",
        name: "Linen wrap dress",
        category: &DRESSES,
        price_cents: 8_900,
    },
    Product {
        id: "P1002",
        name: "Floral midi dress",
        category: &DRESSES,
        price_cents: 7_900,
    },
    Product {
        id: "P1003",
        name: "Black slip dress",
        category: &DRESSES,
        price_cents: 6_900,
    },
    Product {
        id: "P1004",
        name: "Poplin shirt dress",
        category: &DRESSES,
        price_cents: 7_500,
    },
    Product {
        id: "P2001",
        name: "Striped Breton top",
        category: &TOPS,
        price_cents: 3_500,
    },
    Product {
        id: "P2002",
        name: "Silk blouse",
        category: &TOPS,
        price_cents: 8_900,
    },
    Product {
        id: "P2003",
        name: "Organic cotton T-shirt",
        category: &TOPS,
        price_cents: 2_500,
    },
    Product {
        id: "P2004",
        name: "Linen shirt",
        category: &TOPS,
        price_cents: 5_900,
    },
    Product {
        id: "P3001",
        name: "High-rise straight jeans",
        category: &JEANS,
        price_cents: 7_900,
    },
    Product {
        id: "P3002",
        name: "Wide-leg jeans",
        category: &JEANS,
        price_cents: 8_500,
    },
    Product {
        id: "P3003",
        name: "Slim black jeans",
        category: &JEANS,
        price_cents: 6_900,
    },
    Product {
        id: "P4001",
        name: "Merino crew-neck jumper",
        category: &KNITWEAR,
        price_cents: 8_900,
    },
    Product {
        id: "P4002",
        name: "Cashmere cardigan",
        category: &KNITWEAR,
        price_cents: 17_900,
    },
    Product {
        id: "P4003",
        name: "Cable-knit jumper",
        category: &KNITWEAR,
        price_cents: 9_900,
    },
    Product {
        id: "P5001",
        name: "Double-faced wool coat",
        category: &COATS,
        price_cents: 29_900,
    },
    Product {
        id: "P5002",
        name: "Classic trench coat",
        category: &COATS,
        price_cents: 22_900,
    },
    Product {
        id: "P5003",
        name: "Quilted jacket",
        category: &COATS,
        price_cents: 14_900,
    },
    Product {
        id: "P5004",
        name: "Leather biker jacket",
        category: &COATS,
        price_cents: 34_900,
    },
    Product {
        id: "P6001",
        name: "Leather ballet flats",
        category: &SHOES,
        price_cents: 9_900,
    },
    Product {
        id: "P6002",
        name: "White leather trainers",
        category: &SHOES,
        price_cents: 8_900,
    },
    Product {
        id: "P6003",
        name: "Suede ankle boots",
        category: &SHOES,
        price_cents: 15_900,
    },
    Product {
        id: "P6004",
        name: "Canvas espadrilles",
        category: &SHOES,
        price_cents: 4_900,
    },
    Product {
        id: "P7001",
        name: "Leather tote bag",
        category: &BAGS,
        price_cents: 19_900,
    },
    Product {
        id: "P7002",
        name: "Crossbody bag",
        category: &BAGS,
        price_cents: 12_900,
    },
    Product {
        id: "P7003",
        name: "Straw basket bag",
        category: &BAGS,
        price_cents: 5_900,
    },
    Product {
        id: "P8001",
        name: "Printed silk scarf",
        category: &ACCESSORIES,
        price_cents: 4_900,
    },
    Product {
        id: "P8002",
        name: "Leather belt",
        category: &ACCESSORIES,
        price_cents: 3_900,
    },
    Product {
        id: "P8003",
        name: "Gold hoop earrings",
        category: &ACCESSORIES,
        price_cents: 2_900,
    },
    Product {
        id: "P8004",
        name: "Wool beret",
        category: &ACCESSORIES,
        price_cents: 2_900,
    },
];

const FIRST_NAMES: &[&str] = &[
    "Camille", "Léa", "Manon", "Chloé", "Inès", "Emma", "Jade", "Louise", "Alice", "Lina", "Sarah",
    "Julie", "Clara", "Zoé", "Anaïs", "Marie", "Pauline", "Hélène", "Sophie", "Nathalie",
    "Isabelle", "Céline", "Mathilde", "Margaux", "Lucas", "Hugo", "Thomas", "Nicolas", "Julien",
    "Antoine", "Maxime", "Karim", "Mehdi", "Yanis", "Paul", "Louis", "Gabriel", "Arthur", "Théo",
    "Romain",
];

const LAST_NAMES: &[&str] = &[
    "Martin",
    "Bernard",
    "Dubois",
    "Thomas",
    "Robert",
    "Richard",
    "Petit",
    "Durand",
    "Leroy",
    "Moreau",
    "Simon",
    "Laurent",
    "Lefebvre",
    "Michel",
    "Garcia",
    "David",
    "Bertrand",
    "Roux",
    "Vincent",
    "Fournier",
    "Morel",
    "Girard",
    "André",
    "Lefèvre",
    "Mercier",
    "Dupont",
    "Lambert",
    "Bonnet",
    "François",
    "Martinez",
    "Benali",
    "Nguyen",
    "Da Silva",
    "Lemaire",
    "Faure",
    "Rousseau",
    "Blanc",
    "Guérin",
    "Muller",
    "Henry",
];

/// Look-alikes of French mail providers under the reserved `.example` top-level domain.
const EMAIL_DOMAINS: &[&str] = &[
    "gmail.example",
    "orange.example",
    "free.example",
    "outlook.example",
    "laposte.example",
    "icloud.example",
];

const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0",
];

/// Newsletter themes: campaign name and subject line.
const NEWSLETTERS: &[(&str, &str)] = &[
    ("New in", "Just landed: the new collection"),
    ("Linen edit", "Linen season is here"),
    ("Weekend offer", "-20% on dresses this weekend"),
    ("Members' private sale", "Your private sale starts now"),
    ("Shoes & bags", "Step out in style"),
    ("Workwear guide", "Back to work, beautifully"),
    ("Last chance", "Last days of the summer sale"),
];

const TEXT_MESSAGES: &[&str] = &[
    "Flash sale",
    "Late-night shopping in store",
    "Loyalty points reminder",
];

const CALL_REASONS: &[&str] = &[
    "Order status",
    "Return request",
    "Size advice",
    "Loyalty points",
    "Store opening hours",
    "Damaged item",
];

const CHAT_TOPICS: &[&str] = &[
    "Delivery times",
    "Returns",
    "Size guide",
    "Click & collect",
    "Gift cards",
];

// ---------------------------------------------------------------------------------------------
// Time

const SECOND: i64 = 1_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// Lapsed customers have been silent for at least this long when the data set ends.
const LAPSED_SILENCE: i64 = 45 * DAY;

#[derive(Clone, Copy)]
struct Window {
    start: i64,
    end: i64,
}

impl Window {
    fn of(cfg: &DemoConfig) -> Self {
        Window {
            start: cfg.end_ms - i64::from(cfg.days) * DAY,
            end: cfg.end_ms,
        }
    }
}

/// When people do things, in UTC hours (Paris is UTC+1 or +2).
#[derive(Clone, Copy)]
enum Hours {
    Online,
    StoreOpening,
    CallCentre,
}

impl Hours {
    fn range(self, rng: &mut StdRng) -> (i64, i64) {
        match self {
            // Online shopping peaks in the evening.
            Hours::Online if rng.random_bool(0.65) => (16, 22),
            Hours::Online => (6, 16),
            Hours::StoreOpening => (8, 18),
            Hours::CallCentre => (7, 17),
        }
    }
}

/// A moment in `[from, until]` at a plausible hour of the day.
fn moment(rng: &mut StdRng, from: i64, until: i64, hours: Hours) -> i64 {
    let until = until.max(from);
    let (first_day, last_day) = (from.div_euclid(DAY), until.div_euclid(DAY));
    for _ in 0..8 {
        let (open, close) = hours.range(rng);
        let at = rng.random_range(first_day..=last_day) * DAY
            + rng.random_range(open * HOUR..close * HOUR);
        if (from..=until).contains(&at) {
            return at;
        }
    }
    // The span is too short to hit the right hours: any moment of it will do.
    rng.random_range(from..=until)
}

/// How many times something expected `per_day` times happens over `span` milliseconds.
fn occurrences(rng: &mut StdRng, per_day: f64, span: i64) -> usize {
    let expected = per_day * span.max(0) as f64 / DAY as f64;
    let whole = expected.floor();
    whole as usize + usize::from(rng.random_bool(expected - whole))
}

fn timestamp(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .expect("demo timestamps stay within chrono's range")
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn day_of(ms: i64) -> String {
    timestamp(ms)[..10].to_string()
}

// ---------------------------------------------------------------------------------------------
// Randomness

/// Independent random streams, so that adding visitors or walk-ins never reshuffles customers.
#[derive(Clone, Copy)]
enum Stream {
    Customers = 1,
    Lives = 2,
    Visitors = 3,
    WalkIns = 4,
}

fn rng_for(seed: u64, stream: Stream, index: usize) -> StdRng {
    StdRng::seed_from_u64(mix(seed ^ mix(stream as u64 ^ mix(index as u64))))
}

/// SplitMix64's finaliser: nearby inputs give unrelated seeds.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn pick<T: Copy>(rng: &mut StdRng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

fn pick_weighted<T: Copy>(rng: &mut StdRng, items: &[(T, u32)]) -> T {
    let mut ticket = rng.random_range(0..items.iter().map(|(_, w)| w).sum::<u32>());
    for &(item, weight) in items {
        if ticket < weight {
            return item;
        }
        ticket -= weight;
    }
    unreachable!("the ticket is below the sum of the weights")
}

/// A random UUID v4, the shape SDKs give anonymous ids and device ids.
fn uuid(rng: &mut StdRng) -> String {
    let bits: u128 = rng.random();
    let bits = (bits & !(0xF << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

// ---------------------------------------------------------------------------------------------
// Customers, as planned before anything happens

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Persona {
    Omnichannel,
    WebShopper,
    AppShopper,
    StoreOnly,
    Vip,
    Lapsed,
}

const PERSONAS: [(Persona, u32); 6] = [
    (Persona::Omnichannel, 22),
    (Persona::WebShopper, 30),
    (Persona::AppShopper, 15),
    (Persona::StoreOnly, 20),
    (Persona::Vip, 5),
    (Persona::Lapsed, 8),
];

/// Visits per day of an averagely active customer.
struct Habits {
    web: f64,
    app: f64,
    store: f64,
    /// Chance that an online visit ends with an order.
    online_purchase: f64,
}

impl Persona {
    fn habits(self) -> Habits {
        let (web, app, store, online_purchase) = match self {
            Persona::Omnichannel => (0.02, 0.025, 0.03, 0.15),
            Persona::WebShopper => (0.03, 0.012, 0.015, 0.15),
            Persona::AppShopper => (0.006, 0.05, 0.02, 0.12),
            Persona::StoreOnly => (0.0, 0.0, 0.05, 0.0),
            Persona::Vip => (0.04, 0.04, 0.08, 0.4),
            Persona::Lapsed => (0.05, 0.05, 0.05, 0.15),
        };
        Habits {
            web,
            app,
            store,
            online_purchase,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Platform {
    Ios,
    Android,
}

impl Platform {
    fn source(self) -> &'static str {
        match self {
            Platform::Ios => IOS_APP,
            Platform::Android => ANDROID_APP,
        }
    }
}

/// A mobile number in the block ARCEP reserves for fiction (06 39 98 xx xx): the demo can never
/// text or call a real person.
#[derive(Clone, Copy)]
struct Phone {
    line: u32,
}

impl Phone {
    fn national(self) -> String {
        format!("06 39 98 {:02} {:02}", self.line / 100, self.line % 100)
    }

    fn e164(self) -> String {
        format!("+3363998{:04}", self.line)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Consent {
    marketing: bool,
    analytics: bool,
    advertising: bool,
}

impl Consent {
    fn choose(rng: &mut StdRng) -> Self {
        Consent {
            marketing: rng.random_bool(0.8),
            analytics: rng.random_bool(0.9),
            advertising: rng.random_bool(0.5),
        }
    }

    fn context(self) -> Value {
        json!({"categoryPreferences": {
            "marketing": self.marketing,
            "analytics": self.analytics,
            "advertising": self.advertising,
        }})
    }
}

#[derive(Clone, Copy)]
struct LineItem {
    product: &'static Product,
    size: &'static str,
    quantity: i64,
}

impl LineItem {
    fn of(rng: &mut StdRng, product: &'static Product) -> Self {
        let quantity = if rng.random_bool(0.1) { 2 } else { 1 };
        LineItem {
            product,
            size: pick(rng, product.category.sizes),
            quantity,
        }
    }

    fn properties(&self) -> Value {
        let p = self.product;
        json!({
            "product_id": p.id,
            "sku": format!("{}-{}", p.id, self.size),
            "name": p.name,
            "category": p.category.name,
            "variant": self.size,
            "price": euros(p.price_cents),
            "quantity": self.quantity,
            "currency": "EUR",
            "url": p.url(),
        })
    }
}

fn euros(cents: i64) -> f64 {
    cents as f64 / 100.0
}

fn pick_product(rng: &mut StdRng, category: Option<&Category>, premium: bool) -> &'static Product {
    let candidates: Vec<&'static Product> = CATALOG
        .iter()
        .filter(|p| category.is_none_or(|c| std::ptr::eq(p.category, c)))
        .filter(|p| !premium || p.price_cents >= PREMIUM_CENTS)
        .collect();
    if candidates.is_empty() {
        pick_product(rng, None, premium)
    } else {
        pick(rng, &candidates)
    }
}

struct CartCompletedInStore {
    item: LineItem,
    left_online_at: i64,
    bought_at: i64,
}

struct Customer {
    number: usize,
    user_id: String,
    persona: Persona,
    first_name: &'static str,
    last_name: &'static str,
    city: &'static str,
    /// Index of the preferred store in [`STORES`].
    store: usize,
    /// As the brand's CRM and email platform hold it: trimmed, lower case.
    email: String,
    /// As the customer typed it when signing in: sometimes capitalised or padded with spaces.
    email_as_typed: String,
    phone: Option<Phone>,
    types_phone_nationally: bool,
    sms_opt_in: bool,
    loyalty_card: Option<String>,
    /// Number of browsers the customer uses the web shop from; 0 for store-only customers.
    browsers: usize,
    app: Option<Platform>,
    favourite: &'static Category,
    /// Multiplies the persona's visit rates.
    activity: f64,
    /// Chance of opening a newsletter.
    email_engagement: f64,
    consent: Consent,
    active_from: i64,
    active_until: i64,
    tablet_visits: Vec<i64>,
    cart_completed_in_store: Option<CartCompletedInStore>,
    marketing_withdrawn_at: Option<i64>,
}

impl Customer {
    fn phone_as_typed(&self) -> Option<String> {
        self.phone.map(|p| {
            if self.types_phone_nationally {
                p.national()
            } else {
                p.e164()
            }
        })
    }

    fn premium_buyer(&self) -> bool {
        self.persona == Persona::Vip
    }

    /// What the customer fills in when creating an account or signing in.
    fn sign_in_traits(&self) -> Value {
        let mut traits = json!({
            "email": self.email_as_typed,
            "first_name": self.first_name,
            "last_name": self.last_name,
        });
        if let Some(phone) = self.phone_as_typed() {
            traits["phone"] = phone.into();
        }
        traits
    }

    /// What the till sends when it looks up a loyalty card: the CRM record, already clean.
    fn crm_traits(&self) -> Value {
        let mut traits = json!({
            "email": self.email,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "loyalty_card": self.loyalty_card,
            "preferred_store": STORES[self.store].id,
            "address": {"city": self.city, "country": "FR"},
        });
        if let Some(phone) = self.phone {
            traits["phone"] = phone.e164().into();
        }
        traits
    }
}

fn plan_customers(cfg: &DemoConfig) -> Vec<Customer> {
    let window = Window::of(cfg);
    (0..cfg.customers)
        .map(|number| plan_customer(cfg.seed, number, window))
        .collect()
}

fn plan_customer(seed: u64, number: usize, window: Window) -> Customer {
    let rng = &mut rng_for(seed, Stream::Customers, number);
    let persona = pick_weighted(rng, &PERSONAS);
    let first_name = pick(rng, FIRST_NAMES);
    let last_name = pick(rng, LAST_NAMES);
    let store_shares: Vec<(usize, u32)> = STORES
        .iter()
        .enumerate()
        .map(|(i, s)| (i, s.share))
        .collect();
    let store = pick_weighted(rng, &store_shares);
    let city = pick(rng, STORES[store].cities);
    let email = email_address(rng, first_name, last_name, number);
    let email_as_typed = as_typed(rng, &email);
    // The fiction block holds 10,000 numbers; later customers go without a phone rather than
    // share one, which would rightly merge them. Multiplying by a number prime to 10,000 keeps
    // lines unique while hiding the customer number.
    let phone = (number < 10_000 && rng.random_bool(0.7)).then(|| Phone {
        line: (number as u32 * 7_919) % 10_000,
    });

    let (web_share, app_share, store_share) = match persona {
        Persona::Omnichannel | Persona::Vip => {
            (1.0, if persona == Persona::Vip { 0.6 } else { 1.0 }, 1.0)
        }
        Persona::WebShopper => (1.0, 0.1, 0.25),
        Persona::AppShopper => (0.4, 1.0, 0.3),
        Persona::StoreOnly => (0.0, 0.0, 1.0),
        Persona::Lapsed => (0.8, 0.3, 0.5),
    };
    let mut browsers = if rng.random_bool(web_share) {
        1 + usize::from(rng.random_bool(0.4))
    } else {
        0
    };
    let app = rng.random_bool(app_share).then(|| {
        if rng.random_bool(0.55) {
            Platform::Ios
        } else {
            Platform::Android
        }
    });
    let in_store = rng.random_bool(store_share);
    if browsers == 0 && app.is_none() && !in_store {
        browsers = 1;
    }
    // Multiplying by a number prime to 10^8 keeps card numbers unique and unordered.
    let loyalty_card = in_store.then(|| {
        format!(
            "LC-{:08}",
            (number as u64 * 7_654_321 + 10_000_019) % 100_000_000
        )
    });

    let (active_from, active_until) = if persona == Persona::Lapsed {
        let silent_from = window.end - LAPSED_SILENCE;
        // A margin before the silence absorbs late email opens and clicks.
        let until = if silent_from - 3 * DAY > window.start + 7 * DAY {
            rng.random_range(window.start + 7 * DAY..=silent_from - 3 * DAY)
        } else {
            window.start + (window.end - window.start) / 3
        };
        (window.start, until)
    } else if rng.random_bool(0.15) {
        // A new customer, first seen during the period.
        (
            rng.random_range(window.start..=window.start + (window.end - window.start) * 2 / 3),
            window.end,
        )
    } else {
        (window.start, window.end)
    };
    let span = active_until - active_from;

    let tablet_visits = if in_store && persona != Persona::StoreOnly && rng.random_bool(0.2) {
        let visits = rng.random_range(1..=3);
        (0..visits)
            .map(|_| moment(rng, active_from, active_until, Hours::StoreOpening))
            .collect()
    } else {
        Vec::new()
    };

    let cart_chance = match persona {
        Persona::Omnichannel => 0.3,
        Persona::Vip => 0.4,
        _ => 0.1,
    };
    let cart_completed_in_store =
        (browsers > 0 && in_store && span >= 8 * DAY && rng.random_bool(cart_chance)).then(|| {
            let product = pick_product(rng, None, persona == Persona::Vip);
            let item = LineItem::of(rng, product);
            let left_online_at = moment(rng, active_from, active_until - 7 * DAY, Hours::Online);
            let bought_at = moment(
                rng,
                left_online_at + DAY,
                left_online_at + 6 * DAY,
                Hours::StoreOpening,
            );
            CartCompletedInStore {
                item,
                left_online_at,
                bought_at,
            }
        });

    let consent = Consent::choose(rng);
    let marketing_withdrawn_at = (consent.marketing
        && (browsers > 0 || app.is_some())
        && span > 4 * DAY
        && rng.random_bool(0.08))
    .then(|| {
        moment(
            rng,
            active_from + span / 4,
            active_until - HOUR,
            Hours::Online,
        )
    });

    Customer {
        number,
        user_id: format!("cus_{:06}", number + 1),
        persona,
        first_name,
        last_name,
        city,
        store,
        email,
        email_as_typed,
        phone,
        types_phone_nationally: rng.random_bool(0.6),
        sms_opt_in: phone.is_some() && rng.random_bool(0.6),
        loyalty_card,
        browsers,
        app,
        favourite: pick(rng, &CATEGORIES),
        activity: rng.random_range(0.5..1.5),
        email_engagement: if persona == Persona::Vip {
            rng.random_range(0.3..0.8)
        } else {
            rng.random_range(0.05..0.6)
        },
        consent,
        active_from,
        active_until,
        tablet_visits,
        cart_completed_in_store,
        marketing_withdrawn_at,
    }
}

/// A unique address: the customer number is in every pattern and names hold no digits.
fn email_address(rng: &mut StdRng, first_name: &str, last_name: &str, number: usize) -> String {
    let (first, last) = (ascii_lower(first_name), ascii_lower(last_name));
    let domain = pick(rng, EMAIL_DOMAINS);
    match rng.random_range(0..3) {
        0 => format!("{first}.{last}{number}@{domain}"),
        1 => format!("{}{last}{number}@{domain}", &first[..1]),
        _ => format!("{first}{number}.{last}@{domain}"),
    }
}

fn ascii_lower(name: &str) -> String {
    name.to_lowercase()
        .chars()
        .filter_map(|c| match c {
            'à' | 'â' | 'ä' => Some('a'),
            'ç' => Some('c'),
            'é' | 'è' | 'ê' | 'ë' => Some('e'),
            'î' | 'ï' => Some('i'),
            'ô' | 'ö' => Some('o'),
            'ù' | 'û' | 'ü' => Some('u'),
            c if c.is_ascii_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// How people really type their email: the platform must normalise these to one identifier.
fn as_typed(rng: &mut StdRng, email: &str) -> String {
    match rng.random_range(0..100) {
        0..12 => capitalised(email),
        12..18 => format!(" {email} "),
        18..21 => format!("  {}", capitalised(email)),
        _ => email.to_string(),
    }
}

fn capitalised(email: &str) -> String {
    let mut upper_next = true;
    email
        .chars()
        .map(|c| {
            let typed = if upper_next {
                c.to_ascii_uppercase()
            } else {
                c
            };
            upper_next = matches!(c, '.' | '@');
            typed
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Campaigns

struct Campaign {
    id: String,
    name: &'static str,
    subject: &'static str,
    sent_at: i64,
}

struct Calendar {
    newsletters: Vec<Campaign>,
    text_messages: Vec<Campaign>,
}

impl Calendar {
    /// A newsletter every week and a text message every other week, at fixed hours.
    fn of(window: Window) -> Self {
        let first_day = window.start.div_euclid(DAY) * DAY;
        let sends = |first: i64, every: i64| {
            (0_i64..)
                .map(move |n| first + n * every)
                .take_while(move |&at| at <= window.end)
                .filter(move |&at| at >= window.start)
        };
        let newsletters = sends(first_day + DAY + 8 * HOUR, 7 * DAY)
            .enumerate()
            .map(|(n, sent_at)| {
                let (name, subject) = NEWSLETTERS[n % NEWSLETTERS.len()];
                let week = DateTime::<Utc>::from_timestamp_millis(sent_at)
                    .map(|d| d.format("%G-w%V").to_string());
                Campaign {
                    id: format!("nl-{}", week.unwrap_or_default()),
                    name,
                    subject,
                    sent_at,
                }
            })
            .collect();
        let text_messages = sends(first_day + 3 * DAY + 16 * HOUR, 14 * DAY)
            .enumerate()
            .map(|(n, sent_at)| {
                let name = TEXT_MESSAGES[n % TEXT_MESSAGES.len()];
                Campaign {
                    id: format!("sms-{}", day_of(sent_at)),
                    name,
                    subject: name,
                    sent_at,
                }
            })
            .collect();
        Calendar {
            newsletters,
            text_messages,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Output

/// An event told, kept as its JSON text: a history of hundreds of thousands of events held as
/// `Value`s costs several times its size in maps and strings.
struct Pending {
    at: i64,
    source: &'static str,
    json: String,
}

/// Collects events and hands out the business numbers (orders, receipts, calls) that several
/// customers draw from.
struct Output {
    end: i64,
    /// The end of the story being told: a lapsed customer's goes silent before the data set ends.
    horizon: i64,
    events: Vec<Pending>,
    online_orders: u64,
    receipts: [u64; STORES.len()],
    calls: u64,
    tickets: u64,
    chats: u64,
    emails: u64,
    text_messages: u64,
}

impl Output {
    fn new(window: Window) -> Self {
        Output {
            end: window.end,
            horizon: window.end,
            events: Vec::new(),
            online_orders: 0,
            receipts: [0; STORES.len()],
            calls: 0,
            tickets: 0,
            chats: 0,
            emails: 0,
            text_messages: 0,
        }
    }

    fn tell_story_until(&mut self, until: i64) {
        self.horizon = until.min(self.end);
    }

    /// Events after the horizon have not happened (yet): a visit or campaign in progress at the
    /// end of the data set is simply cut short.
    fn push(&mut self, at: i64, source: &'static str, mut event: Value) {
        if at <= self.horizon {
            event["timestamp"] = timestamp(at).into();
            let json = event.to_string();
            self.events.push(Pending { at, source, json });
        }
    }

    fn finish(mut self, seed: u64) -> Vec<CompactEvent> {
        // A stable sort keeps simultaneous events in the order they were told.
        self.events.sort_by_key(|e| e.at);
        self.events
            .into_iter()
            .enumerate()
            .map(|(n, pending)| {
                // Derived from the seed alone, so sending the same demo twice is deduplicated
                // rather than doubled. Every event is a non-empty object (it has a type).
                let json = format!(
                    "{{\"messageId\":\"demo-{seed}-{}\",{}",
                    n + 1,
                    &pending.json[1..]
                );
                CompactEvent {
                    source: pending.source,
                    json,
                }
            })
            .collect()
    }
}

fn next(counter: &mut u64) -> u64 {
    *counter += 1;
    *counter
}

// ---------------------------------------------------------------------------------------------
// Segment events

#[derive(Clone, Copy)]
struct Who<'a> {
    user_id: Option<&'a str>,
    anonymous_id: Option<&'a str>,
}

impl<'a> Who<'a> {
    fn user(user_id: &'a str) -> Self {
        Who {
            user_id: Some(user_id),
            anonymous_id: None,
        }
    }

    fn anonymous(anonymous_id: &'a str) -> Self {
        Who {
            user_id: None,
            anonymous_id: Some(anonymous_id),
        }
    }

    fn event(self, kind: &str, context: Value) -> Map<String, Value> {
        let mut event = Map::new();
        event.insert("type".into(), kind.into());
        if let Some(user_id) = self.user_id {
            event.insert("userId".into(), user_id.into());
        }
        if let Some(anonymous_id) = self.anonymous_id {
            event.insert("anonymousId".into(), anonymous_id.into());
        }
        event.insert("context".into(), context);
        event
    }

    fn track(self, name: &str, properties: Value, context: Value) -> Value {
        let mut event = self.event("track", context);
        event.insert("event".into(), name.into());
        event.insert("properties".into(), properties);
        Value::Object(event)
    }

    fn identify(self, traits: Value, context: Value) -> Value {
        let mut event = self.event("identify", context);
        event.insert("traits".into(), traits);
        Value::Object(event)
    }

    fn named(self, kind: &str, name: &str, properties: Value, context: Value) -> Value {
        let mut event = self.event(kind, context);
        event.insert("name".into(), name.into());
        event.insert("properties".into(), properties);
        Value::Object(event)
    }
}

fn order_properties(order_id: &str, items: &[LineItem], shipping_cents: i64) -> Value {
    let subtotal: i64 = items
        .iter()
        .map(|i| i.product.price_cents * i.quantity)
        .sum();
    // French prices include 20% VAT; Segment's revenue excludes tax and shipping.
    let tax = subtotal - subtotal * 100 / 120;
    json!({
        "order_id": order_id,
        "total": euros(subtotal + shipping_cents),
        "revenue": euros(subtotal - tax),
        "tax": euros(tax),
        "shipping": euros(shipping_cents),
        "currency": "EUR",
        "products": items.iter().map(LineItem::properties).collect::<Vec<_>>(),
    })
}

// ---------------------------------------------------------------------------------------------
// Devices

struct Browser {
    anonymous_id: String,
    user_agent: &'static str,
    identified: bool,
    /// What the visitor answers when the cookie banner asks; `None` until it has been answered.
    consent: Option<Consent>,
}

impl Browser {
    fn new(rng: &mut StdRng) -> Self {
        Browser {
            anonymous_id: uuid(rng),
            user_agent: pick(rng, USER_AGENTS),
            identified: false,
            consent: None,
        }
    }
}

struct AppInstall {
    platform: Platform,
    anonymous_id: String,
    device_id: String,
    model: &'static str,
    installed: bool,
    identified: bool,
}

impl AppInstall {
    fn new(rng: &mut StdRng, platform: Platform) -> Self {
        let model = match platform {
            Platform::Ios => pick(rng, &["iPhone14,7", "iPhone15,2", "iPhone16,1"]),
            Platform::Android => pick(rng, &["SM-S921B", "Pixel 8", "2304FPN6DG"]),
        };
        AppInstall {
            platform,
            anonymous_id: uuid(rng),
            device_id: uuid(rng).to_uppercase(),
            model,
            installed: false,
            identified: false,
        }
    }

    fn context(&self) -> Value {
        let (library, os, os_version, manufacturer) = match self.platform {
            Platform::Ios => ("analytics-ios", "iOS", "17.5", "Apple"),
            Platform::Android => (
                "analytics-kotlin",
                "Android",
                "14",
                android_maker(self.model),
            ),
        };
        let device_type = if self.platform == Platform::Ios {
            "ios"
        } else {
            "android"
        };
        json!({
            "library": {"name": library, "version": "1.16.0"},
            "os": {"name": os, "version": os_version},
            "device": {"id": self.device_id, "type": device_type, "manufacturer": manufacturer, "model": self.model},
            "locale": "fr-FR",
            "timezone": "Europe/Paris",
        })
    }
}

fn android_maker(model: &str) -> &'static str {
    match model {
        "Pixel 8" => "Google",
        "SM-S921B" => "Samsung",
        _ => "Xiaomi",
    }
}

fn tablet_context(store: &Store) -> Value {
    // The app runs on a shop-floor iPad: the visit happens in the store.
    json!({
        "channel": "store",
        "library": {"name": "analytics-ios", "version": "1.16.0"},
        "os": {"name": "iOS", "version": "17.5"},
        "device": {
            "id": store.tablet_device,
            "type": "ios",
            "manufacturer": "Apple",
            "model": "iPad13,18",
            "name": format!("{} shop-floor iPad", store.name),
        },
        "locale": "fr-FR",
        "timezone": "Europe/Paris",
    })
}

// ---------------------------------------------------------------------------------------------
// Online visits: web shop, apps and shop-floor tablets share one shopping flow

enum Surface<'s> {
    Web(&'s mut Browser),
    App(&'s mut AppInstall),
    /// The shared iPad of a store: every customer logs in on the same device.
    Tablet(&'static Store),
}

#[derive(Clone, Copy)]
enum Place {
    Home,
    Landing,
    Search(&'static Category),
    Category(&'static Category),
    Product(&'static Product),
    Login,
    Preferences,
    Cart,
    Checkout,
    StoreCatalog,
}

impl Place {
    fn name(self) -> &'static str {
        match self {
            Place::Home => "Home",
            Place::Landing => "New In",
            Place::Search(_) => "Search",
            Place::Category(_) => "Category",
            Place::Product(_) => "Product",
            Place::Login => "Login",
            Place::Preferences => "Preferences",
            Place::Cart => "Cart",
            Place::Checkout => "Checkout",
            Place::StoreCatalog => "Store Catalog",
        }
    }

    fn path(self) -> String {
        match self {
            Place::Home => "/".into(),
            Place::Landing => "/new-in".into(),
            Place::Search(_) => "/search".into(),
            Place::Category(c) => format!("/women/{}", c.slug),
            Place::Product(p) => format!("/p/{}", p.id),
            Place::Login => "/account/login".into(),
            Place::Preferences => "/account/preferences".into(),
            Place::Cart => "/cart".into(),
            Place::Checkout => "/checkout".into(),
            Place::StoreCatalog => "/store-catalog".into(),
        }
    }

    fn title(self) -> String {
        match self {
            Place::Home => format!("{BRAND} | Women's fashion"),
            Place::Category(c) | Place::Search(c) => format!("{} | {BRAND}", c.name),
            Place::Product(p) => format!("{} | {BRAND}", p.name),
            other => format!("{} | {BRAND}", other.name()),
        }
    }
}

struct Intent {
    buys: bool,
    /// The item this visit leaves in the cart, to be bought in store later.
    cart_to_leave: Option<LineItem>,
}

/// One visit, from its first event on; the clock moves forward with each step.
struct Session<'s> {
    out: &'s mut Output,
    rng: &'s mut StdRng,
    surface: Surface<'s>,
    customer: Option<&'s Customer>,
    /// What this person answers when asked for consent.
    consent_choice: Consent,
    campaign: Option<&'s Campaign>,
    at: i64,
    started: bool,
    place: Place,
    referrer: String,
}

impl<'s> Session<'s> {
    fn new(
        out: &'s mut Output,
        rng: &'s mut StdRng,
        surface: Surface<'s>,
        customer: Option<&'s Customer>,
        consent_choice: Consent,
        at: i64,
    ) -> Self {
        Session {
            out,
            rng,
            surface,
            customer,
            consent_choice,
            campaign: None,
            at,
            started: false,
            place: Place::Home,
            referrer: String::new(),
        }
    }

    /// The first event of a visit happens when the visit starts; each later one a little after.
    fn step(&mut self, min_seconds: i64, max_seconds: i64) {
        if self.started {
            self.at += self
                .rng
                .random_range(min_seconds * SECOND..max_seconds * SECOND);
        }
        self.started = true;
    }

    fn identified(&self) -> bool {
        match &self.surface {
            Surface::Web(browser) => browser.identified,
            Surface::App(app) => app.identified,
            Surface::Tablet(_) => true,
        }
    }

    fn who(&self) -> Who<'_> {
        let anonymous_id = match &self.surface {
            Surface::Web(browser) => browser.anonymous_id.as_str(),
            Surface::App(app) => app.anonymous_id.as_str(),
            Surface::Tablet(store) => store.tablet,
        };
        let user_id = self
            .customer
            .filter(|_| self.identified())
            .map(|c| c.user_id.as_str());
        Who {
            user_id,
            anonymous_id: Some(anonymous_id),
        }
    }

    fn source(&self) -> &'static str {
        match &self.surface {
            Surface::Web(_) => WEB_SHOP,
            Surface::App(app) => app.platform.source(),
            Surface::Tablet(_) => IOS_APP,
        }
    }

    fn url(&self) -> String {
        format!("{SHOP_URL}{}{}", self.place.path(), self.search())
    }

    fn search(&self) -> String {
        match (self.place, self.campaign) {
            (Place::Landing, Some(c)) => format!(
                "?utm_source=newsletter&utm_medium=email&utm_campaign={}",
                c.id
            ),
            (Place::Search(c), _) => format!("?q={}", c.slug),
            _ => String::new(),
        }
    }

    fn page(&self) -> Value {
        json!({
            "path": self.place.path(),
            "referrer": self.referrer,
            "search": self.search(),
            "title": self.place.title(),
            "url": self.url(),
        })
    }

    fn context(&self) -> Value {
        match &self.surface {
            Surface::Web(browser) => {
                let mut context = json!({
                    "library": {"name": "analytics.js", "version": "next-1.72.0"},
                    "userAgent": browser.user_agent,
                    "locale": "fr-FR",
                    "page": self.page(),
                });
                if let Some(consent) = browser.consent {
                    context["consent"] = consent.context();
                }
                if let (Place::Landing, Some(c)) = (self.place, self.campaign) {
                    context["campaign"] =
                        json!({"name": c.id, "source": "newsletter", "medium": "email"});
                }
                context
            }
            Surface::App(app) => app.context(),
            Surface::Tablet(store) => tablet_context(store),
        }
    }

    fn track(&mut self, name: &str, properties: Value) {
        self.step(2, 40);
        let event = self.who().track(name, properties, self.context());
        self.out.push(self.at, self.source(), event);
    }

    /// A page view on the web, a screen view in the apps.
    fn show(&mut self, place: Place) {
        if self.started && matches!(self.surface, Surface::Web(_)) {
            self.referrer = self.url();
        }
        self.step(5, 90);
        self.place = place;
        let event = match &self.surface {
            Surface::Web(_) => self
                .who()
                .named("page", place.name(), self.page(), self.context()),
            Surface::App(_) | Surface::Tablet(_) => {
                let properties = match place {
                    Place::Product(p) => json!({"product_id": p.id, "name": p.name}),
                    Place::Category(c) => json!({"category": c.name}),
                    _ => json!({}),
                };
                self.who()
                    .named("screen", place.name(), properties, self.context())
            }
        };
        self.out.push(self.at, self.source(), event);
    }

    fn log_in(&mut self) {
        let Some(customer) = self.customer else {
            return;
        };
        match &mut self.surface {
            Surface::Web(browser) => browser.identified = true,
            Surface::App(app) => app.identified = true,
            Surface::Tablet(_) => {}
        }
        let traits = match self.surface {
            // On the shared tablet a customer only types their email to pull up their account.
            Surface::Tablet(_) => json!({"email": customer.email_as_typed}),
            _ => customer.sign_in_traits(),
        };
        self.step(10, 60);
        let event = self.who().identify(traits, self.context());
        self.out.push(self.at, self.source(), event);
    }

    /// The web shop's consent tool then adds the choice to every event of the browser; the apps
    /// only record the change itself.
    fn answer_consent(&mut self, collected_via: &str) {
        let choice = self.consent_choice;
        if let Surface::Web(browser) = &mut self.surface {
            browser.consent = Some(choice);
        }
        self.step(2, 40);
        let mut context = self.context();
        context["consent"] = choice.context();
        let event = self.who().track(
            "Consent Preference Updated",
            json!({"collected_via": collected_via}),
            context,
        );
        self.out.push(self.at, self.source(), event);
    }

    fn visit_web_shop(&mut self, intent: Intent) {
        let landing = if self.campaign.is_some() {
            Place::Landing
        } else {
            Place::Home
        };
        if self.campaign.is_none() && self.rng.random_bool(0.5) {
            self.referrer = "https://www.google.com/".into();
        }
        self.show(landing);
        if matches!(&self.surface, Surface::Web(browser) if browser.consent.is_none()) {
            self.answer_consent("cookie_banner");
        }
        self.browse(intent);
    }

    fn open_app(&mut self, intent: Intent) {
        let first_launch = match &mut self.surface {
            Surface::App(app) => !std::mem::replace(&mut app.installed, true),
            _ => false,
        };
        if first_launch {
            self.track(
                "Application Installed",
                json!({"version": "5.2.0", "build": "520"}),
            );
            self.answer_consent("app_onboarding");
        }
        self.track(
            "Application Opened",
            json!({"from_background": false, "version": "5.2.0", "build": "520"}),
        );
        self.show(Place::Home);
        if !self.identified() && self.rng.random_bool(0.4) {
            self.show(Place::Login);
            self.log_in();
        }
        self.browse(intent);
    }

    fn use_store_tablet(&mut self) {
        self.log_in();
        self.show(Place::StoreCatalog);
        let buys = self.rng.random_bool(0.15);
        self.browse(Intent {
            buys,
            cart_to_leave: None,
        });
    }

    fn browse(&mut self, intent: Intent) {
        let premium = self.customer.is_some_and(Customer::premium_buyer);
        let category = match (intent.cart_to_leave, self.customer) {
            (Some(item), _) => item.product.category,
            (None, Some(c)) if self.rng.random_bool(0.5) => c.favourite,
            _ => pick(self.rng, &CATEGORIES),
        };
        if self.rng.random_bool(0.2) {
            self.show(Place::Search(category));
            self.track("Products Searched", json!({"query": category.slug}));
        }
        self.show(Place::Category(category));
        let views = self.rng.random_range(1..=3);
        let mut viewed = None;
        for n in 1..=views {
            let product = match intent.cart_to_leave {
                Some(item) if n == views => item.product,
                _ => {
                    let premium_item = premium && self.rng.random_bool(0.6);
                    pick_product(self.rng, Some(category), premium_item)
                }
            };
            self.show(Place::Product(product));
            self.track("Product Viewed", viewed_properties(product));
            viewed = Some(product);
        }

        let mut cart = Vec::new();
        if let Some(item) = intent.cart_to_leave {
            cart.push(item);
        } else if let Some(product) = viewed.filter(|_| intent.buys || self.rng.random_bool(0.25)) {
            cart.push(LineItem::of(self.rng, product));
        }
        if intent.buys && self.rng.random_bool(if premium { 0.7 } else { 0.3 }) {
            let product = pick_product(self.rng, None, premium);
            self.show(Place::Product(product));
            self.track("Product Viewed", viewed_properties(product));
            cart.push(LineItem::of(self.rng, product));
        }
        for item in &cart {
            self.track("Product Added", item.properties());
        }

        let wants_account =
            intent.buys || intent.cart_to_leave.is_some() || self.rng.random_bool(0.15);
        if self.customer.is_some() && !self.identified() && wants_account {
            self.show(Place::Login);
            self.log_in();
        }
        if intent.buys && !cart.is_empty() && self.identified() {
            self.check_out(&cart);
        }
    }

    fn check_out(&mut self, cart: &[LineItem]) {
        self.show(Place::Cart);
        let order_id = format!("MA-{:07}", next(&mut self.out.online_orders));
        let subtotal: i64 = cart
            .iter()
            .map(|i| i.product.price_cents * i.quantity)
            .sum();
        // Free delivery from 80 EUR, as most French fashion shops do.
        let shipping = if subtotal >= 8_000 { 0 } else { 490 };
        self.show(Place::Checkout);
        self.track(
            "Checkout Started",
            order_properties(&order_id, cart, shipping),
        );
        self.step(30, 240);
        let mut order = order_properties(&order_id, cart, shipping);
        if let Surface::Tablet(store) = self.surface {
            // Endless aisle: ordered on the shop floor, delivered at home.
            order["store_id"] = store.id.into();
            order["fulfilment"] = "home_delivery".into();
        }
        self.track("Order Completed", order);
    }

    fn withdraw_marketing(&mut self) {
        self.show(Place::Preferences);
        if !self.identified() {
            self.show(Place::Login);
            self.log_in();
        }
        self.consent_choice.marketing = false;
        self.answer_consent("preference_centre");
    }
}

/// A product page shows the product, not yet a size.
fn viewed_properties(p: &Product) -> Value {
    json!({
            "product_id": p.id,
            "name": p.name,
            "category": p.category.name,
            "price": euros(p.price_cents),
            "currency": "EUR",
            "url": p.url(),
    })
}

// ---------------------------------------------------------------------------------------------
// A customer's life over the period

#[derive(Clone, Copy)]
enum Activity {
    WebVisit { browser: usize },
    EmailClickThrough { campaign: usize },
    AppVisit,
    StoreVisit { store: usize },
    TabletVisit,
    CartLeftOnline,
    CartBoughtInStore,
    Call,
    Chat,
    Newsletter { campaign: usize },
    TextMessage { campaign: usize },
    MarketingWithdrawn,
}

/// Activities in time order; acting on one may schedule another (a click leads to a visit).
#[derive(Default)]
struct Agenda {
    queue: BinaryHeap<Reverse<(i64, usize)>>,
    activities: Vec<Activity>,
}

impl Agenda {
    fn add(&mut self, at: i64, activity: Activity) {
        self.queue.push(Reverse((at, self.activities.len())));
        self.activities.push(activity);
    }

    fn next(&mut self) -> Option<(i64, Activity)> {
        let Reverse((at, index)) = self.queue.pop()?;
        Some((at, self.activities[index]))
    }
}

struct Life<'a> {
    customer: &'a Customer,
    calendar: &'a Calendar,
    rng: StdRng,
    browsers: Vec<Browser>,
    app: Option<AppInstall>,
    consent: Consent,
    unsubscribed_from_newsletter: bool,
    known_at_till: bool,
}

fn live(seed: u64, customer: &Customer, calendar: &Calendar, out: &mut Output) {
    let mut rng = rng_for(seed, Stream::Lives, customer.number);
    let browsers = (0..customer.browsers)
        .map(|_| Browser::new(&mut rng))
        .collect();
    let app = customer
        .app
        .map(|platform| AppInstall::new(&mut rng, platform));
    let mut life = Life {
        customer,
        calendar,
        rng,
        browsers,
        app,
        consent: customer.consent,
        unsubscribed_from_newsletter: false,
        known_at_till: false,
    };
    let mut agenda = life.plan();
    out.tell_story_until(customer.active_until);
    while let Some((at, activity)) = agenda.next() {
        life.act(at, activity, out, &mut agenda);
    }
}

impl Life<'_> {
    fn plan(&mut self) -> Agenda {
        let c = self.customer;
        let rng = &mut self.rng;
        let mut agenda = Agenda::default();
        let (from, until) = (c.active_from, c.active_until);
        let span = until - from;
        let habits = c.persona.habits();

        if c.browsers > 0 {
            for _ in 0..occurrences(rng, habits.web * c.activity, span) {
                // Most visits come from the main browser; the other one identifies separately.
                let browser = if c.browsers > 1 && rng.random_bool(0.35) {
                    1
                } else {
                    0
                };
                agenda.add(
                    moment(rng, from, until, Hours::Online),
                    Activity::WebVisit { browser },
                );
            }
        }
        if c.app.is_some() {
            for _ in 0..occurrences(rng, habits.app * c.activity, span) {
                agenda.add(moment(rng, from, until, Hours::Online), Activity::AppVisit);
            }
        }
        if c.loyalty_card.is_some() {
            for _ in 0..occurrences(rng, habits.store * c.activity, span) {
                let store = if rng.random_bool(0.85) {
                    c.store
                } else {
                    rng.random_range(0..STORES.len())
                };
                agenda.add(
                    moment(rng, from, until, Hours::StoreOpening),
                    Activity::StoreVisit { store },
                );
            }
        }
        for &at in &c.tablet_visits {
            agenda.add(at, Activity::TabletVisit);
        }
        if let Some(cart) = &c.cart_completed_in_store {
            agenda.add(cart.left_online_at, Activity::CartLeftOnline);
            agenda.add(cart.bought_at, Activity::CartBoughtInStore);
        }
        for _ in 0..occurrences(rng, 0.006, span) {
            agenda.add(moment(rng, from, until, Hours::CallCentre), Activity::Call);
        }
        if c.browsers > 0 || c.app.is_some() {
            for _ in 0..occurrences(rng, 0.008, span) {
                agenda.add(moment(rng, from, until, Hours::Online), Activity::Chat);
            }
        }
        for (campaign, newsletter) in self.calendar.newsletters.iter().enumerate() {
            if (from..=until).contains(&newsletter.sent_at) {
                agenda.add(newsletter.sent_at, Activity::Newsletter { campaign });
            }
        }
        if c.sms_opt_in {
            for (campaign, text) in self.calendar.text_messages.iter().enumerate() {
                if (from..=until).contains(&text.sent_at) {
                    agenda.add(text.sent_at, Activity::TextMessage { campaign });
                }
            }
        }
        if let Some(at) = c.marketing_withdrawn_at {
            agenda.add(at, Activity::MarketingWithdrawn);
        }
        agenda
    }

    fn act(&mut self, at: i64, activity: Activity, out: &mut Output, agenda: &mut Agenda) {
        let c = self.customer;
        match activity {
            Activity::WebVisit { browser } => {
                let buys = self.rng.random_bool(c.persona.habits().online_purchase);
                self.web_session(out, at, browser, None)
                    .visit_web_shop(Intent {
                        buys,
                        cart_to_leave: None,
                    });
            }
            Activity::EmailClickThrough { campaign } => {
                let buys = self.rng.random_bool(0.1);
                self.web_session(out, at, 0, Some(campaign))
                    .visit_web_shop(Intent {
                        buys,
                        cart_to_leave: None,
                    });
            }
            Activity::CartLeftOnline => {
                let item = c.cart_completed_in_store.as_ref().map(|cart| cart.item);
                self.web_session(out, at, 0, None).visit_web_shop(Intent {
                    buys: false,
                    cart_to_leave: item,
                });
            }
            Activity::AppVisit => {
                let buys = self.rng.random_bool(c.persona.habits().online_purchase);
                let consent = self.consent;
                if let Some(app) = &mut self.app {
                    Session::new(out, &mut self.rng, Surface::App(app), Some(c), consent, at)
                        .open_app(Intent {
                            buys,
                            cart_to_leave: None,
                        });
                }
            }
            Activity::TabletVisit => {
                Session::new(
                    out,
                    &mut self.rng,
                    Surface::Tablet(&STORES[c.store]),
                    Some(c),
                    self.consent,
                    at,
                )
                .use_store_tablet();
            }
            Activity::StoreVisit { store } => {
                let card_scanned = self.rng.random_bool(0.9);
                let items = self.basket(None);
                self.buy_in_store(out, at, store, card_scanned, &items);
            }
            Activity::CartBoughtInStore => {
                let items = self.basket(c.cart_completed_in_store.as_ref().map(|cart| cart.item));
                self.buy_in_store(out, at, c.store, true, &items);
            }
            Activity::Call => self.call(out, at),
            Activity::Chat => self.chat(out, at),
            Activity::Newsletter { campaign } => self.receive_newsletter(out, agenda, campaign),
            Activity::TextMessage { campaign } => self.receive_text_message(out, campaign),
            Activity::MarketingWithdrawn => {
                let surface = match (self.browsers.first_mut(), &mut self.app) {
                    (Some(browser), _) => Surface::Web(browser),
                    (None, Some(app)) => Surface::App(app),
                    (None, None) => return,
                };
                Session::new(out, &mut self.rng, surface, Some(c), self.consent, at)
                    .withdraw_marketing();
                self.consent.marketing = false;
                // The choice belongs to the account: every device signed in to it follows.
                for browser in &mut self.browsers {
                    if let Some(consent) = &mut browser.consent {
                        consent.marketing = false;
                    }
                }
            }
        }
    }

    fn web_session<'s>(
        &'s mut self,
        out: &'s mut Output,
        at: i64,
        browser: usize,
        campaign: Option<usize>,
    ) -> Session<'s> {
        let calendar = self.calendar;
        let browser = browser.min(self.browsers.len() - 1);
        let surface = Surface::Web(&mut self.browsers[browser]);
        let mut session = Session::new(
            out,
            &mut self.rng,
            surface,
            Some(self.customer),
            self.consent,
            at,
        );
        session.campaign = campaign.map(|n| &calendar.newsletters[n]);
        session
    }

    fn basket(&mut self, planned: Option<LineItem>) -> Vec<LineItem> {
        let premium = self.customer.premium_buyer();
        let extra = match (planned, premium) {
            (Some(_), _) => self.rng.random_range(0..=1),
            (None, true) => self.rng.random_range(2..=4),
            (None, false) => self.rng.random_range(1..=3),
        };
        let favourite = self.customer.favourite;
        let mut items: Vec<LineItem> = planned.into_iter().collect();
        for _ in 0..extra {
            let category = self.rng.random_bool(0.4).then_some(favourite);
            let premium_item = premium && self.rng.random_bool(0.7);
            let product = pick_product(&mut self.rng, category, premium_item);
            items.push(LineItem::of(&mut self.rng, product));
        }
        items
    }

    fn buy_in_store(
        &mut self,
        out: &mut Output,
        at: i64,
        store: usize,
        card_scanned: bool,
        items: &[LineItem],
    ) {
        let c = self.customer;
        if !card_scanned {
            record_store_sale(out, &mut self.rng, at, store, None, items);
            return;
        }
        if !self.known_at_till {
            // The first card scan pulls the CRM record to the till, which forwards it.
            self.known_at_till = true;
            let context = pos_context(&STORES[store], c.loyalty_card.as_deref());
            out.push(
                at,
                STORES_POS,
                Who::user(&c.user_id).identify(c.crm_traits(), context),
            );
        }
        record_store_sale(out, &mut self.rng, at + SECOND, store, Some(c), items);
    }

    fn call(&mut self, out: &mut Output, at: i64) {
        let c = self.customer;
        let number = next(&mut out.calls);
        let call_id = format!("call_{number:06}");
        // Some calls are never matched to an account by the agent: only the caller id is known.
        let caller_only = c.phone.filter(|_| self.rng.random_bool(0.35));
        let anonymous_id = format!("call-{number:06}");
        let (who, context) = match caller_only {
            Some(phone) => (
                Who::anonymous(&anonymous_id),
                json!({"library": {"name": "telephony-connector", "version": "2.1.0"}, "traits": {"phone": phone.e164()}}),
            ),
            None => (
                Who::user(&c.user_id),
                json!({"library": {"name": "telephony-connector", "version": "2.1.0"}}),
            ),
        };
        let reason = pick(&mut self.rng, CALL_REASONS);
        let duration = self.rng.random_range(60..900);
        let ended_at = at + duration * SECOND;
        let properties = json!({
            "call_id": call_id,
            "direction": "inbound",
            "reason": reason,
            "duration_seconds": duration,
            "agent_id": format!("agent_{:02}", self.rng.random_range(1..=12)),
        });
        out.push(
            ended_at,
            CALL_CENTRE,
            who.track("Call Completed", properties, context.clone()),
        );
        if self.rng.random_bool(0.4) {
            let properties = json!({
                "ticket_id": format!("TCK-{:06}", next(&mut out.tickets)),
                "subject": reason,
                "priority": if reason == "Damaged item" { "high" } else { "normal" },
                "call_id": call_id,
            });
            out.push(
                ended_at + 2 * MINUTE,
                CALL_CENTRE,
                who.track("Support Ticket Opened", properties, context),
            );
        }
    }

    fn chat(&mut self, out: &mut Output, at: i64) {
        let c = self.customer;
        let number = next(&mut out.chats);
        let chat_id = format!("chat_{number:06}");
        let anonymous_id = format!("chat-{number:06}");
        let signed_in = self.rng.random_bool(0.4);
        let who = if signed_in {
            Who::user(&c.user_id)
        } else {
            Who::anonymous(&anonymous_id)
        };
        // Anonymous chatters sometimes type their email so the bot can look up an order.
        let gives_email = !signed_in && self.rng.random_bool(0.5);
        let context = json!({"library": {"name": "chatbot-connector", "version": "0.9.4"}, "locale": "fr-FR"});
        let topic = pick(&mut self.rng, CHAT_TOPICS);
        let entry_point = if c.browsers > 0 { "web_shop" } else { "app" };
        let mut at = at;
        out.push(
            at,
            CHATBOT,
            who.track(
                "Chat Started",
                json!({"chat_id": chat_id, "topic": topic, "entry_point": entry_point}),
                context.clone(),
            ),
        );
        for message_index in 1..=self.rng.random_range(2..=5) {
            at += self.rng.random_range(10..120) * SECOND;
            let mut context = context.clone();
            if gives_email && message_index >= 2 {
                context["traits"] = json!({"email": c.email_as_typed});
            }
            let properties =
                json!({"chat_id": chat_id, "message_index": message_index, "sender": "customer"});
            out.push(
                at,
                CHATBOT,
                who.track("Chat Message Sent", properties, context),
            );
        }
    }

    fn receive_newsletter(&mut self, out: &mut Output, agenda: &mut Agenda, campaign: usize) {
        if !self.consent.marketing || self.unsubscribed_from_newsletter {
            return;
        }
        let c = self.customer;
        let newsletter = &self.calendar.newsletters[campaign];
        let rng = &mut self.rng;
        let email_id = format!("em_{:08}", next(&mut out.emails));
        let who = Who::user(&c.user_id);
        let mut context = json!({"library": {"name": "email-webhooks", "version": "3.0.2"}});
        if rng.random_bool(0.4) {
            context["traits"] = json!({"email": c.email});
        }
        let properties = json!({
            "email_id": email_id,
            "email_subject": newsletter.subject,
            "campaign_id": newsletter.id,
            "campaign_name": newsletter.name,
        });
        // Sending to the whole list takes the email platform a while.
        let delivered_at = newsletter.sent_at + rng.random_range(0..40 * MINUTE);
        out.push(
            delivered_at,
            EMAIL,
            who.track("Email Delivered", properties.clone(), context.clone()),
        );
        if !rng.random_bool(c.email_engagement) {
            return;
        }
        let opened_at = delivered_at + rng.random_range(2 * MINUTE..36 * HOUR);
        out.push(
            opened_at,
            EMAIL,
            who.track("Email Opened", properties.clone(), context.clone()),
        );
        if rng.random_bool(0.2) {
            let clicked_at = opened_at + rng.random_range(5 * SECOND..3 * MINUTE);
            let mut clicked = properties;
            clicked["link_id"] = "cta-main".into();
            clicked["link_url"] = format!(
                "{SHOP_URL}/new-in?utm_source=newsletter&utm_medium=email&utm_campaign={}",
                newsletter.id
            )
            .into();
            out.push(
                clicked_at,
                EMAIL,
                who.track("Email Link Clicked", clicked, context),
            );
            if c.browsers > 0 {
                agenda.add(
                    clicked_at + rng.random_range(2 * SECOND..20 * SECOND),
                    Activity::EmailClickThrough { campaign },
                );
            }
        } else if rng.random_bool(0.008) {
            self.unsubscribed_from_newsletter = true;
            let mut unsubscribed = properties;
            unsubscribed["list_id"] = "newsletter".into();
            let at = opened_at + rng.random_range(5 * SECOND..2 * MINUTE);
            out.push(at, EMAIL, who.track("Unsubscribed", unsubscribed, context));
        }
    }

    fn receive_text_message(&mut self, out: &mut Output, campaign: usize) {
        if !self.consent.marketing {
            return;
        }
        let c = self.customer;
        let text = &self.calendar.text_messages[campaign];
        let rng = &mut self.rng;
        let who = Who::user(&c.user_id);
        let mut context = json!({"library": {"name": "sms-webhooks", "version": "1.4.0"}});
        if let Some(phone) = c.phone.filter(|_| rng.random_bool(0.4)) {
            context["traits"] = json!({"phone": phone.e164()});
        }
        let properties = json!({
            "message_id": format!("sms_{:08}", next(&mut out.text_messages)),
            "campaign_id": text.id,
            "campaign_name": text.name,
        });
        let delivered_at = text.sent_at + rng.random_range(0..10 * MINUTE);
        out.push(
            delivered_at,
            SMS,
            who.track("SMS Delivered", properties.clone(), context.clone()),
        );
        if rng.random_bool(0.08) {
            let mut clicked = properties;
            clicked["link_url"] = format!(
                "{SHOP_URL}/offers?utm_source=sms&utm_medium=sms&utm_campaign={}",
                text.id
            )
            .into();
            let at = delivered_at + rng.random_range(MINUTE..3 * HOUR);
            out.push(at, SMS, who.track("SMS Link Clicked", clicked, context));
        }
    }
}

fn pos_context(store: &Store, loyalty_card: Option<&str>) -> Value {
    let mut context = json!({
        "library": {"name": "pos-connector", "version": "3.4.0"},
        "location": {"city": store.cities[0], "country": "France"},
        "timezone": "Europe/Paris",
    });
    if let Some(card) = loyalty_card {
        context["traits"] = json!({"loyalty_card": card});
    }
    context
}

/// A till sale: attributed to the customer when their loyalty card is scanned, else anonymous
/// under the receipt number.
fn record_store_sale(
    out: &mut Output,
    rng: &mut StdRng,
    at: i64,
    store: usize,
    card_holder: Option<&Customer>,
    items: &[LineItem],
) {
    let shop = &STORES[store];
    let receipt = format!("{:06}", next(&mut out.receipts[store]));
    let anonymous_id = format!("pos-{}-{receipt}", shop.id);
    let (who, card) = match card_holder {
        Some(c) => (Who::user(&c.user_id), c.loyalty_card.as_deref()),
        None => (Who::anonymous(&anonymous_id), None),
    };
    let mut order = order_properties(&format!("{}-R{receipt}", shop.id), items, 0);
    order["store_id"] = shop.id.into();
    order["store_name"] = shop.name.into();
    order["payment_method"] = (if rng.random_bool(0.85) {
        "card"
    } else {
        "cash"
    })
    .into();
    out.push(
        at,
        STORES_POS,
        who.track("Order Completed", order, pos_context(shop, card)),
    );
}

// ---------------------------------------------------------------------------------------------
// People who are not (yet) customers

/// Visitors who browse the web shop and never sign in: traffic a CDP must keep but not merge.
fn browse_anonymously(seed: u64, visitor: usize, window: Window, out: &mut Output) {
    let rng = &mut rng_for(seed, Stream::Visitors, visitor);
    let mut browser = Browser::new(rng);
    let consent = Consent::choose(rng);
    let mut visits: Vec<i64> = (0..rng.random_range(1..=3))
        .map(|_| moment(rng, window.start, window.end, Hours::Online))
        .collect();
    visits.sort_unstable();
    out.tell_story_until(window.end);
    for at in visits {
        Session::new(out, rng, Surface::Web(&mut browser), None, consent, at).visit_web_shop(
            Intent {
                buys: false,
                cart_to_leave: None,
            },
        );
    }
}

/// Passing shoppers with no loyalty card: anonymous sales under their receipt number.
fn walk_in_sales(cfg: &DemoConfig, window: Window, out: &mut Output) {
    let rng = &mut rng_for(cfg.seed, Stream::WalkIns, 0);
    let per_store_per_day = cfg.customers as f64 / 500.0;
    out.tell_story_until(window.end);
    for store in 0..STORES.len() {
        for _ in 0..occurrences(rng, per_store_per_day, window.end - window.start) {
            let at = moment(rng, window.start, window.end, Hours::StoreOpening);
            let items: Vec<LineItem> = (0..rng.random_range(1..=2))
                .map(|_| {
                    let product = pick_product(rng, None, false);
                    LineItem::of(rng, product)
                })
                .collect();
            record_store_sale(out, rng, at, store, None, &items);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    /// 2026-08-24T00:00:00Z.
    const END_MS: i64 = 1_787_529_600_000;

    fn config(seed: u64) -> DemoConfig {
        DemoConfig {
            customers: 300,
            days: 60,
            seed,
            end_ms: END_MS,
        }
    }

    fn str_at<'a>(event: &'a Value, path: &[&str]) -> Option<&'a str> {
        path.iter().try_fold(event, |v, key| v.get(key))?.as_str()
    }

    #[test]
    fn the_same_seed_gives_the_same_events() {
        let (a, b) = (generate(&config(7)), generate(&config(7)));
        assert_eq!(a.len(), b.len());
        assert!(a
            .iter()
            .zip(&b)
            .all(|(x, y)| x.source == y.source && x.event == y.event));
        let other = generate(&config(8));
        assert!(a.len() != other.len() || a.iter().zip(&other).any(|(x, y)| x.event != y.event));
    }

    #[test]
    fn timestamps_are_sorted_millisecond_utc_and_within_the_period() {
        let cfg = config(1);
        let events = generate(&cfg);
        assert!(events.len() > 5_000, "only {} events", events.len());
        let start = cfg.end_ms - i64::from(cfg.days) * DAY;
        let mut previous = i64::MIN;
        for e in &events {
            let ts = str_at(&e.event, &["timestamp"]).expect("every event has a timestamp");
            assert_eq!(ts.len(), "2026-08-24T10:15:00.123Z".len(), "{ts}");
            assert!(ts.ends_with('Z'), "{ts}");
            let ms = DateTime::parse_from_rfc3339(ts)
                .expect("RFC 3339")
                .timestamp_millis();
            assert!(
                (start..=cfg.end_ms).contains(&ms),
                "{ts} is outside the period"
            );
            assert!(ms >= previous, "{ts} comes after a later event");
            previous = ms;
        }
    }

    #[test]
    fn message_ids_are_unique() {
        let events = generate(&config(2));
        let ids: HashSet<&str> = events
            .iter()
            .map(|e| str_at(&e.event, &["messageId"]).expect("every event has a messageId"))
            .collect();
        assert_eq!(ids.len(), events.len());
        assert!(
            ids.iter().all(|id| id.len() < 100),
            "Segment drops messageIds of 100 characters or more"
        );
    }

    #[test]
    fn every_event_is_a_valid_segment_call_from_a_known_source() {
        let sources: HashSet<&str> = demo_sources().iter().map(|s| s.name).collect();
        assert_eq!(sources.len(), 8);
        let events = generate(&config(3));
        let mut seen_sources = HashSet::new();
        for e in &events {
            assert!(sources.contains(e.source), "unknown source {}", e.source);
            seen_sources.insert(e.source);
            let kind = str_at(&e.event, &["type"]).expect("every event has a type");
            assert!(
                ["track", "identify", "page", "screen"].contains(&kind),
                "{kind}"
            );
            let user = str_at(&e.event, &["userId"]).filter(|s| !s.is_empty());
            let anonymous = str_at(&e.event, &["anonymousId"]).filter(|s| !s.is_empty());
            assert!(
                user.is_some() || anonymous.is_some(),
                "no identity on {}",
                e.event
            );
            if kind == "track" {
                assert!(
                    str_at(&e.event, &["event"]).is_some_and(|n| !n.is_empty()),
                    "unnamed track {}",
                    e.event
                );
            }
            if e.source == WEB_SHOP {
                assert_eq!(
                    str_at(&e.event, &["context", "library", "name"]),
                    Some("analytics.js")
                );
            }
            assert!(
                serde_json::to_vec(&e.event).unwrap().len() < 32 * 1024,
                "events must fit Segment's 32 KB"
            );
        }
        assert_eq!(seen_sources, sources, "every source sends something");
    }

    #[test]
    fn shared_tablets_carry_many_different_customers() {
        let events = generate(&config(4));
        let mut users_by_tablet: HashMap<&str, HashSet<&str>> = HashMap::new();
        for e in &events {
            if let Some(tablet) =
                str_at(&e.event, &["anonymousId"]).filter(|a| a.starts_with("tablet-"))
            {
                assert_eq!(
                    str_at(&e.event, &["context", "device", "id"]),
                    Some(format!("tablet-device-{}", &tablet[7..]).as_str())
                );
                let user =
                    str_at(&e.event, &["userId"]).expect("every tablet event names its customer");
                users_by_tablet.entry(tablet).or_default().insert(user);
            }
        }
        assert!(
            users_by_tablet.values().any(|users| users.len() >= 3),
            "{users_by_tablet:?}"
        );
    }

    /// The customer behind an event: its userId, or the userId its anonymousId identified as.
    fn person<'a>(
        e: &'a DemoEvent,
        user_of_anonymous: &HashMap<&'a str, &'a str>,
    ) -> Option<&'a str> {
        str_at(&e.event, &["userId"]).or_else(|| {
            str_at(&e.event, &["anonymousId"]).and_then(|a| user_of_anonymous.get(a).copied())
        })
    }

    fn ordered_products(e: &DemoEvent) -> Vec<&str> {
        let products = e.event["properties"]["products"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        products
            .iter()
            .filter_map(|p| p["product_id"].as_str())
            .collect()
    }

    #[test]
    fn some_carts_abandoned_online_are_bought_in_store() {
        let events = generate(&config(5));
        let mut user_of_anonymous: HashMap<&str, &str> = HashMap::new();
        for e in &events {
            if let (Some("identify"), Some(user), Some(anonymous)) = (
                str_at(&e.event, &["type"]),
                str_at(&e.event, &["userId"]),
                str_at(&e.event, &["anonymousId"]),
            ) {
                user_of_anonymous.insert(anonymous, user);
            }
        }

        // (customer, product) added to a web cart and not ordered online since.
        let mut waiting: HashSet<(&str, &str)> = HashSet::new();
        let mut completed_in_store = 0;
        for e in &events {
            let Some(user) = person(e, &user_of_anonymous) else {
                continue;
            };
            match (e.source, str_at(&e.event, &["event"])) {
                (WEB_SHOP, Some("Product Added")) => {
                    if let Some(product) = str_at(&e.event, &["properties", "product_id"]) {
                        waiting.insert((user, product));
                    }
                }
                (WEB_SHOP, Some("Order Completed")) => {
                    for product in ordered_products(e) {
                        waiting.remove(&(user, product));
                    }
                }
                (STORES_POS, Some("Order Completed")) => {
                    for product in ordered_products(e) {
                        completed_in_store += usize::from(waiting.remove(&(user, product)));
                    }
                }
                _ => {}
            }
        }
        assert!(completed_in_store >= 1);
    }

    #[test]
    fn lapsed_customers_are_silent_at_the_end_and_withdrawn_consent_stops_campaigns() {
        let cfg = DemoConfig {
            customers: 300,
            days: 90,
            seed: 6,
            end_ms: END_MS,
        };
        let customers = plan_customers(&cfg);
        let lapsed: HashSet<&str> = customers
            .iter()
            .filter(|c| c.persona == Persona::Lapsed)
            .map(|c| c.user_id.as_str())
            .collect();
        assert!(!lapsed.is_empty());
        let mut withdrawn: HashSet<&str> = HashSet::new();
        let mut campaigns_after_withdrawal = 0;
        let silent_from = cfg.end_ms - LAPSED_SILENCE;
        let events = generate(&cfg);
        for e in &events {
            let Some(user) = str_at(&e.event, &["userId"]) else {
                continue;
            };
            let at = DateTime::parse_from_rfc3339(str_at(&e.event, &["timestamp"]).unwrap())
                .unwrap()
                .timestamp_millis();
            assert!(
                !(lapsed.contains(user) && at >= silent_from),
                "lapsed {user} is active at {at}"
            );
            match str_at(&e.event, &["event"]) {
                Some("Consent Preference Updated")
                    if e.event["context"]["consent"]["categoryPreferences"]["marketing"]
                        == false =>
                {
                    withdrawn.insert(user);
                }
                Some("Email Delivered" | "SMS Delivered") if withdrawn.contains(user) => {
                    campaigns_after_withdrawal += 1
                }
                _ => {}
            }
        }
        assert!(!withdrawn.is_empty());
        assert_eq!(campaigns_after_withdrawal, 0);
    }

    #[test]
    fn store_only_customers_never_use_the_web_or_the_apps() {
        let cfg = config(9);
        let store_only: HashSet<String> = plan_customers(&cfg)
            .into_iter()
            .filter(|c| c.persona == Persona::StoreOnly)
            .map(|c| c.user_id)
            .collect();
        assert!(!store_only.is_empty());
        for e in generate(&cfg) {
            if let Some(user) = str_at(&e.event, &["userId"]).filter(|u| store_only.contains(*u)) {
                assert!(
                    ![WEB_SHOP, IOS_APP, ANDROID_APP].contains(&e.source),
                    "{user} on {}",
                    e.source
                );
            }
        }
    }

    #[test]
    fn highlights_name_the_scenarios() {
        let lines = highlights(&config(7));
        let text: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        let text = text.join("\n");
        for expected in [
            "tablet-store_1",
            "Omnichannel",
            "typed differently",
            "Phone formats",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }

    #[test]
    fn emails_are_unique_and_phones_appear_in_both_formats() {
        let customers = plan_customers(&config(10));
        let emails: HashSet<&str> = customers.iter().map(|c| c.email.as_str()).collect();
        assert_eq!(emails.len(), customers.len());
        assert!(customers
            .iter()
            .any(|c| c.email_as_typed.trim() != c.email_as_typed));
        assert!(customers
            .iter()
            .any(|c| c.email_as_typed.trim() != c.email_as_typed.trim().to_lowercase()));
        let phone = Phone { line: 123 };
        assert_eq!(
            (phone.national().as_str(), phone.e164().as_str()),
            ("06 39 98 01 23", "+33639980123")
        );
    }
}
