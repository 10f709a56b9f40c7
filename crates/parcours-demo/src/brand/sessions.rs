//! Online visits: web shop, apps and shop-floor tablets share one shopping flow.

use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};

use super::*;

pub(crate) enum Surface<'s> {
    Web(&'s mut Browser),
    App(&'s mut AppInstall),
    /// The shared iPad of a store: every customer logs in on the same device.
    Tablet(&'static Store),
}

#[derive(Clone, Copy)]
pub(crate) enum Place {
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
    pub(crate) fn name(self) -> &'static str {
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

    pub(crate) fn path(self) -> String {
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

    pub(crate) fn title(self) -> String {
        match self {
            Place::Home => format!("{BRAND} | Women's fashion"),
            Place::Category(c) | Place::Search(c) => format!("{} | {BRAND}", c.name),
            Place::Product(p) => format!("{} | {BRAND}", p.name),
            other => format!("{} | {BRAND}", other.name()),
        }
    }
}

pub(crate) struct Intent {
    pub(crate) buys: bool,
    /// The item this visit leaves in the cart, to be bought in store later.
    pub(crate) cart_to_leave: Option<LineItem>,
}

/// One visit, from its first event on; the clock moves forward with each step.
pub(crate) struct Session<'s> {
    pub(crate) out: &'s mut Output,
    pub(crate) rng: &'s mut StdRng,
    pub(crate) surface: Surface<'s>,
    pub(crate) customer: Option<&'s Customer>,
    /// What this person answers when asked for consent.
    pub(crate) consent_choice: Consent,
    pub(crate) campaign: Option<&'s Campaign>,
    pub(crate) at: i64,
    pub(crate) started: bool,
    pub(crate) place: Place,
    pub(crate) referrer: String,
}

impl<'s> Session<'s> {
    pub(crate) fn new(
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
    pub(crate) fn step(&mut self, min_seconds: i64, max_seconds: i64) {
        if self.started {
            self.at += self
                .rng
                .random_range(min_seconds * SECOND..max_seconds * SECOND);
        }
        self.started = true;
    }

    pub(crate) fn identified(&self) -> bool {
        match &self.surface {
            Surface::Web(browser) => browser.identified,
            Surface::App(app) => app.identified,
            Surface::Tablet(_) => true,
        }
    }

    pub(crate) fn who(&self) -> Who<'_> {
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

    pub(crate) fn source(&self) -> &'static str {
        match &self.surface {
            Surface::Web(_) => WEB_SHOP,
            Surface::App(app) => app.platform.source(),
            Surface::Tablet(_) => IOS_APP,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("{SHOP_URL}{}{}", self.place.path(), self.search())
    }

    pub(crate) fn search(&self) -> String {
        match (self.place, self.campaign) {
            (Place::Landing, Some(c)) => format!(
                "?utm_source=newsletter&utm_medium=email&utm_campaign={}",
                c.id
            ),
            (Place::Search(c), _) => format!("?q={}", c.slug),
            _ => String::new(),
        }
    }

    pub(crate) fn page(&self) -> Value {
        json!({
            "path": self.place.path(),
            "referrer": self.referrer,
            "search": self.search(),
            "title": self.place.title(),
            "url": self.url(),
        })
    }

    pub(crate) fn context(&self) -> Value {
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

    pub(crate) fn track(&mut self, name: &str, properties: Value) {
        self.step(2, 40);
        let event = self.who().track(name, properties, self.context());
        self.out.push(self.at, self.source(), event);
    }

    /// A page view on the web, a screen view in the apps.
    pub(crate) fn show(&mut self, place: Place) {
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

    pub(crate) fn log_in(&mut self) {
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
    pub(crate) fn answer_consent(&mut self, collected_via: &str) {
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

    pub(crate) fn visit_web_shop(&mut self, intent: Intent) {
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

    pub(crate) fn open_app(&mut self, intent: Intent) {
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

    pub(crate) fn use_store_tablet(&mut self) {
        self.log_in();
        self.show(Place::StoreCatalog);
        let buys = self.rng.random_bool(0.15);
        self.browse(Intent {
            buys,
            cart_to_leave: None,
        });
    }

    pub(crate) fn browse(&mut self, intent: Intent) {
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
        // One cart per visit: its id comes from who and when, so that journeys keyed on
        // `properties.cart_id` see one cart however many products go in.
        let cart_id = format!(
            "cart_{}_{}",
            self.who().anonymous_id.unwrap_or("x"),
            self.at
        );
        for item in &cart {
            let mut properties = item.properties();
            properties["cart_id"] = json!(cart_id);
            self.track("Product Added", properties);
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

    pub(crate) fn check_out(&mut self, cart: &[LineItem]) {
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

    pub(crate) fn withdraw_marketing(&mut self) {
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
pub(crate) fn viewed_properties(p: &Product) -> Value {
    json!({
            "product_id": p.id,
            "name": p.name,
            "category": p.category.name,
            "price": euros(p.price_cents),
            "currency": "EUR",
            "url": p.url(),
    })
}
