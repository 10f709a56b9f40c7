//! Segment events.

use serde_json::{json, Map, Value};

use super::*;

#[derive(Clone, Copy)]
pub(crate) struct Who<'a> {
    pub(crate) user_id: Option<&'a str>,
    pub(crate) anonymous_id: Option<&'a str>,
}

impl<'a> Who<'a> {
    pub(crate) fn user(user_id: &'a str) -> Self {
        Who {
            user_id: Some(user_id),
            anonymous_id: None,
        }
    }

    pub(crate) fn anonymous(anonymous_id: &'a str) -> Self {
        Who {
            user_id: None,
            anonymous_id: Some(anonymous_id),
        }
    }

    pub(crate) fn event(self, kind: &str, context: Value) -> Map<String, Value> {
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

    pub(crate) fn track(self, name: &str, properties: Value, context: Value) -> Value {
        let mut event = self.event("track", context);
        event.insert("event".into(), name.into());
        event.insert("properties".into(), properties);
        Value::Object(event)
    }

    pub(crate) fn identify(self, traits: Value, context: Value) -> Value {
        let mut event = self.event("identify", context);
        event.insert("traits".into(), traits);
        Value::Object(event)
    }

    pub(crate) fn named(self, kind: &str, name: &str, properties: Value, context: Value) -> Value {
        let mut event = self.event(kind, context);
        event.insert("name".into(), name.into());
        event.insert("properties".into(), properties);
        Value::Object(event)
    }
}

pub(crate) fn order_properties(order_id: &str, items: &[LineItem], shipping_cents: i64) -> Value {
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
