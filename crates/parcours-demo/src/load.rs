//! Realistic Segment batches for load: a mix of page, track and identify calls from web, app
//! and store customers, the way SDKs send them (with context, properties and messageIds).

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const PRODUCTS: &[(&str, &str, f64)] = &[
    ("sku-1001", "Linen shirt", 49.0),
    ("sku-1002", "Chino trousers", 69.0),
    ("sku-1003", "Leather sneakers", 119.0),
    ("sku-1004", "Wool coat", 249.0),
    ("sku-1005", "Silk scarf", 39.0),
];

/// One event of a customer among `customers`, numbered `n` (its messageId is unique per run tag).
pub fn event(rng: &mut SmallRng, run: &str, n: u64, customers: u64, ts_ms: i64) -> Value {
    let c = rng.random_range(0..customers);
    let (sku, name, price) = PRODUCTS[rng.random_range(0..PRODUCTS.len())];
    let timestamp = parcours_timestamp(ts_ms);
    let anonymous_id = format!("anon-{c:08}");
    let context = json!({
        "library": {"name": "analytics.js", "version": "5.2.0"},
        "page": {"path": format!("/p/{sku}"), "url": format!("https://shop.example/p/{sku}"), "title": name},
        "userAgent": "Mozilla/5.0 (X11; Linux x86_64)",
        "ip": "203.0.113.7",
        "locale": "fr-FR"
    });
    match rng.random_range(0..10) {
        0..=4 => json!({
            "type": "page", "messageId": format!("{run}-{n}"), "anonymousId": anonymous_id,
            "name": name, "timestamp": timestamp, "context": context,
            "properties": {"path": format!("/p/{sku}"), "title": name}
        }),
        5..=7 => json!({
            "type": "track", "messageId": format!("{run}-{n}"), "anonymousId": anonymous_id,
            "userId": if c % 3 == 0 { Value::String(format!("cus_{c:08}")) } else { Value::Null },
            "event": if n.is_multiple_of(2) { "Product Viewed" } else { "Product Added" },
            "timestamp": timestamp, "context": context,
            "properties": {"product_id": sku, "sku": sku, "name": name, "price": price, "currency": "EUR", "quantity": 1}
        }),
        8 => json!({
            "type": "identify", "messageId": format!("{run}-{n}"), "anonymousId": anonymous_id,
            "userId": format!("cus_{c:08}"), "timestamp": timestamp, "context": context,
            "traits": {"email": format!("customer{c}@example.com"), "first_name": "Camille", "city": "Lyon"}
        }),
        _ => json!({
            "type": "track", "messageId": format!("{run}-{n}"), "userId": format!("cus_{c:08}"),
            "event": "Order Completed", "timestamp": timestamp,
            "context": {"library": {"name": "analytics-python", "version": "2.4.0"}, "channel": "store"},
            "properties": {"order_id": format!("o-{run}-{n}"), "total": price, "revenue": price, "currency": "EUR",
                           "products": [{"product_id": sku, "price": price, "quantity": 1}], "store_id": "store_1"}
        }),
    }
}

fn parcours_timestamp(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `count` serialized `/v1/batch` bodies of `size` events each, all messageIds unique.
pub fn batches(
    run: &str,
    count: usize,
    size: usize,
    customers: u64,
    start_ms: i64,
    seed: u64,
) -> Vec<Vec<u8>> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut n = 0u64;
    (0..count)
        .map(|_| {
            let items: Vec<Value> = (0..size)
                .map(|_| {
                    n += 1;
                    event(&mut rng, run, n, customers, start_ms + n as i64)
                })
                .collect();
            serde_json::to_vec(&json!({"batch": items, "sentAt": parcours_timestamp(start_ms)}))
                .expect("serialize")
        })
        .collect()
}
