//! A customer's life over the period.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};

use super::*;

#[derive(Clone, Copy)]
pub(crate) enum Activity {
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
pub(crate) struct Agenda {
    pub(crate) queue: BinaryHeap<Reverse<(i64, usize)>>,
    pub(crate) activities: Vec<Activity>,
}

impl Agenda {
    pub(crate) fn add(&mut self, at: i64, activity: Activity) {
        self.queue.push(Reverse((at, self.activities.len())));
        self.activities.push(activity);
    }

    pub(crate) fn next(&mut self) -> Option<(i64, Activity)> {
        let Reverse((at, index)) = self.queue.pop()?;
        Some((at, self.activities[index]))
    }
}

pub(crate) struct Life<'a> {
    pub(crate) customer: &'a Customer,
    pub(crate) calendar: &'a Calendar,
    pub(crate) rng: StdRng,
    pub(crate) browsers: Vec<Browser>,
    pub(crate) app: Option<AppInstall>,
    pub(crate) consent: Consent,
    pub(crate) unsubscribed_from_newsletter: bool,
    pub(crate) known_at_till: bool,
}

pub(crate) fn live(seed: u64, customer: &Customer, calendar: &Calendar, out: &mut Output) {
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
    let told = out.events.len();
    while let Some((at, activity)) = agenda.next() {
        life.act(at, activity, out, &mut agenda);
    }
    answer_surveys(seed, customer, out, told);
}

/// Scores from 0 to 10 and how often each is given: 45% promoters, 20% detractors.
const SURVEY_SCORES: [(u64, u32); 11] = [
    (10, 22),
    (9, 23),
    (8, 20),
    (7, 15),
    (6, 7),
    (5, 5),
    (4, 3),
    (3, 2),
    (2, 1),
    (1, 1),
    (0, 1),
];

/// Some customers answer the post-purchase survey a few days after an order, online or in a
/// shop, from its email: a score of 0 to 10 about that order (events told from `from` on are
/// the customer's). From a stream of its own, so the rest of the story stays as it was.
fn answer_surveys(seed: u64, customer: &Customer, out: &mut Output, from: usize) {
    let mut rng = rng_for(seed, Stream::Surveys, customer.number);
    let user = format!("\"userId\":\"{}\"", customer.user_id);
    let orders: Vec<(i64, String)> = out.events[from..]
        .iter()
        .filter(|e| e.json.contains("\"Order Completed\"") && e.json.contains(&user))
        .filter_map(|e| {
            let event: Value = serde_json::from_str(&e.json).ok()?;
            let id = event["properties"]["order_id"].as_str()?.to_string();
            Some((e.at, id))
        })
        .collect();
    for (at, order_id) in orders {
        if !rng.random_bool(0.3) {
            continue;
        }
        let answered_at = at + 3 * DAY + rng.random_range(10 * HOUR..30 * HOUR);
        let score = pick_weighted(&mut rng, &SURVEY_SCORES);
        let properties =
            json!({"survey_id": "post-purchase-nps", "score": score, "order_id": order_id});
        let context = json!({"library": {"name": "email-webhooks", "version": "3.0.2"}});
        out.push(
            answered_at,
            EMAIL,
            Who::user(&customer.user_id).track("Survey Answered", properties, context),
        );
    }
}

impl Life<'_> {
    pub(crate) fn plan(&mut self) -> Agenda {
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

    pub(crate) fn act(
        &mut self,
        at: i64,
        activity: Activity,
        out: &mut Output,
        agenda: &mut Agenda,
    ) {
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

    pub(crate) fn web_session<'s>(
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

    pub(crate) fn basket(&mut self, planned: Option<LineItem>) -> Vec<LineItem> {
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

    pub(crate) fn buy_in_store(
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

    pub(crate) fn call(&mut self, out: &mut Output, at: i64) {
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

    pub(crate) fn chat(&mut self, out: &mut Output, at: i64) {
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

    pub(crate) fn receive_newsletter(
        &mut self,
        out: &mut Output,
        agenda: &mut Agenda,
        campaign: usize,
    ) {
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

    pub(crate) fn receive_text_message(&mut self, out: &mut Output, campaign: usize) {
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

pub(crate) fn pos_context(store: &Store, loyalty_card: Option<&str>) -> Value {
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
pub(crate) fn record_store_sale(
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
