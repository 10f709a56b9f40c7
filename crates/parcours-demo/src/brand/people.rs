//! Customers, as planned before anything happens.

use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};

use super::*;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Persona {
    Omnichannel,
    WebShopper,
    AppShopper,
    StoreOnly,
    Vip,
    Lapsed,
}

pub(crate) const PERSONAS: [(Persona, u32); 6] = [
    (Persona::Omnichannel, 22),
    (Persona::WebShopper, 30),
    (Persona::AppShopper, 15),
    (Persona::StoreOnly, 20),
    (Persona::Vip, 5),
    (Persona::Lapsed, 8),
];

/// Visits per day of an averagely active customer.
pub(crate) struct Habits {
    pub(crate) web: f64,
    pub(crate) app: f64,
    pub(crate) store: f64,
    /// Chance that an online visit ends with an order.
    pub(crate) online_purchase: f64,
}

impl Persona {
    pub(crate) fn habits(self) -> Habits {
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
pub(crate) enum Platform {
    Ios,
    Android,
}

impl Platform {
    pub(crate) fn source(self) -> &'static str {
        match self {
            Platform::Ios => IOS_APP,
            Platform::Android => ANDROID_APP,
        }
    }
}

/// A mobile number in the block ARCEP reserves for fiction (06 39 98 xx xx): the demo can never
/// text or call a real person.
#[derive(Clone, Copy)]
pub(crate) struct Phone {
    pub(crate) line: u32,
}

impl Phone {
    pub(crate) fn national(self) -> String {
        format!("06 39 98 {:02} {:02}", self.line / 100, self.line % 100)
    }

    pub(crate) fn e164(self) -> String {
        format!("+3363998{:04}", self.line)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Consent {
    pub(crate) marketing: bool,
    pub(crate) analytics: bool,
    pub(crate) advertising: bool,
}

impl Consent {
    pub(crate) fn choose(rng: &mut StdRng) -> Self {
        Consent {
            marketing: rng.random_bool(0.8),
            analytics: rng.random_bool(0.9),
            advertising: rng.random_bool(0.5),
        }
    }

    pub(crate) fn context(self) -> Value {
        json!({"categoryPreferences": {
            "marketing": self.marketing,
            "analytics": self.analytics,
            "advertising": self.advertising,
        }})
    }
}

#[derive(Clone, Copy)]
pub(crate) struct LineItem {
    pub(crate) product: &'static Product,
    pub(crate) size: &'static str,
    pub(crate) quantity: i64,
}

impl LineItem {
    pub(crate) fn of(rng: &mut StdRng, product: &'static Product) -> Self {
        let quantity = if rng.random_bool(0.1) { 2 } else { 1 };
        LineItem {
            product,
            size: pick(rng, product.category.sizes),
            quantity,
        }
    }

    pub(crate) fn properties(&self) -> Value {
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

pub(crate) fn euros(cents: i64) -> f64 {
    cents as f64 / 100.0
}

pub(crate) fn pick_product(
    rng: &mut StdRng,
    category: Option<&Category>,
    premium: bool,
) -> &'static Product {
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

pub(crate) struct CartCompletedInStore {
    pub(crate) item: LineItem,
    pub(crate) left_online_at: i64,
    pub(crate) bought_at: i64,
}

pub(crate) struct Customer {
    pub(crate) number: usize,
    pub(crate) user_id: String,
    pub(crate) persona: Persona,
    pub(crate) first_name: &'static str,
    pub(crate) last_name: &'static str,
    pub(crate) city: &'static str,
    /// Index of the preferred store in [`STORES`].
    pub(crate) store: usize,
    /// As the brand's CRM and email platform hold it: trimmed, lower case.
    pub(crate) email: String,
    /// As the customer typed it when signing in: sometimes capitalised or padded with spaces.
    pub(crate) email_as_typed: String,
    pub(crate) phone: Option<Phone>,
    pub(crate) types_phone_nationally: bool,
    pub(crate) sms_opt_in: bool,
    pub(crate) loyalty_card: Option<String>,
    /// Number of browsers the customer uses the web shop from; 0 for store-only customers.
    pub(crate) browsers: usize,
    pub(crate) app: Option<Platform>,
    pub(crate) favourite: &'static Category,
    /// Multiplies the persona's visit rates.
    pub(crate) activity: f64,
    /// Chance of opening a newsletter.
    pub(crate) email_engagement: f64,
    pub(crate) consent: Consent,
    pub(crate) active_from: i64,
    pub(crate) active_until: i64,
    pub(crate) tablet_visits: Vec<i64>,
    pub(crate) cart_completed_in_store: Option<CartCompletedInStore>,
    pub(crate) marketing_withdrawn_at: Option<i64>,
}

impl Customer {
    pub(crate) fn phone_as_typed(&self) -> Option<String> {
        self.phone.map(|p| {
            if self.types_phone_nationally {
                p.national()
            } else {
                p.e164()
            }
        })
    }

    pub(crate) fn premium_buyer(&self) -> bool {
        self.persona == Persona::Vip
    }

    /// What the customer fills in when creating an account or signing in.
    pub(crate) fn sign_in_traits(&self) -> Value {
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
    pub(crate) fn crm_traits(&self) -> Value {
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

pub(crate) fn plan_customers(cfg: &DemoConfig) -> Vec<Customer> {
    let window = Window::of(cfg);
    (0..cfg.customers)
        .map(|number| plan_customer(cfg.seed, number, window))
        .collect()
}

pub(crate) fn plan_customer(seed: u64, number: usize, window: Window) -> Customer {
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
pub(crate) fn email_address(
    rng: &mut StdRng,
    first_name: &str,
    last_name: &str,
    number: usize,
) -> String {
    let (first, last) = (ascii_lower(first_name), ascii_lower(last_name));
    let domain = pick(rng, EMAIL_DOMAINS);
    match rng.random_range(0..3) {
        0 => format!("{first}.{last}{number}@{domain}"),
        1 => format!("{}{last}{number}@{domain}", &first[..1]),
        _ => format!("{first}{number}.{last}@{domain}"),
    }
}

pub(crate) fn ascii_lower(name: &str) -> String {
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
pub(crate) fn as_typed(rng: &mut StdRng, email: &str) -> String {
    match rng.random_range(0..100) {
        0..12 => capitalised(email),
        12..18 => format!(" {email} "),
        18..21 => format!("  {}", capitalised(email)),
        _ => email.to_string(),
    }
}

pub(crate) fn capitalised(email: &str) -> String {
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
