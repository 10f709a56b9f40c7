//! Unified commerce through the real HTTP path, on both stores: the catalogue and locations,
//! stock movements into the ledger, availability per channel and nearest a customer, and
//! reservations that never oversell.

#[macro_use]
mod common;

use std::sync::Arc;

use common::{call, call_with, start_on, start_with_clock, Backend, ShiftedClock, TestNode};
use serde_json::{json, Value};

async fn put(t: &TestNode, path: &str, body: Value) -> Value {
    let (status, v) = call(t, "PUT", path, body).await;
    assert_eq!(status, 200, "{path}: {v}");
    v
}

/// Two shops and a warehouse around Lyon, three SKUs and a kit of two of them.
async fn shop_setup(t: &TestNode) {
    for (id, name, kind, lat, lon, channels, pickup, priority) in [
        (
            "lyon-part-dieu",
            "Lyon Part-Dieu",
            "shop",
            45.7606,
            4.8566,
            vec!["web", "pos"],
            "local_stock",
            1,
        ),
        (
            "lyon-bellecour",
            "Lyon Bellecour",
            "shop",
            45.7578,
            4.8320,
            vec!["web", "pos"],
            "local_stock",
            2,
        ),
        (
            "entrepot-venissieux",
            "Entrepôt Vénissieux",
            "warehouse",
            45.6975,
            4.8868,
            vec!["web"],
            "disabled",
            0,
        ),
    ] {
        put(
            t,
            &format!("/api/v1/commerce/locations/{id}"),
            json!({"name": name, "kind": kind, "latitude": lat, "longitude": lon,
                   "time_zone": "Europe/Paris", "channels": channels, "pickup": pickup,
                   "priority": priority, "opening_hours": {"mon": ["10:00-19:30"]}}),
        )
        .await;
    }
    for sku in ["SHOE-42", "SOCK-M", "LACE"] {
        put(
            t,
            &format!("/api/v1/commerce/items/{sku}"),
            // One price on every channel, but the socks' price is the web shop's only.
            if sku == "SOCK-M" {
                json!({"name": "Socks", "prices": [{"channel": "web", "currency": "EUR", "amount_minor": 990}]})
            } else {
                json!({"name": format!("{sku} item"), "prices": [{"currency": "EUR", "amount_minor": 8990}]})
            },
        )
        .await;
    }
    put(
        t,
        "/api/v1/commerce/items/RUN-KIT",
        json!({"name": "Running kit", "components": [{"sku": "SOCK-M", "quantity": 2}, {"sku": "LACE", "quantity": 1}]}),
    )
    .await;
    let (status, moved) = call(
        t,
        "POST",
        "/api/v1/commerce/stock/movements",
        json!({"movements": [
            {"sku": "SHOE-42", "location": "lyon-part-dieu", "delta": 1, "reason": "received", "reference": "BL-1"},
            {"sku": "SHOE-42", "location": "lyon-bellecour", "delta": 3, "reason": "received", "reference": "BL-1"},
            {"sku": "SHOE-42", "location": "entrepot-venissieux", "delta": 10, "reason": "received", "reference": "BL-1"},
            {"sku": "SOCK-M", "location": "lyon-bellecour", "delta": 5, "reason": "received"},
            {"sku": "LACE", "location": "lyon-bellecour", "delta": 4, "reason": "received"},
        ]}),
    )
    .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["movements"].as_array().unwrap().len(), 5);
}

async fn stock_is_moved_counted_and_told_per_channel(backend: Backend) {
    let t = start_on("commerce-stock", backend, |_| {}).await;
    shop_setup(&t).await;

    // "In stock at Lyon Part-Dieu, 1 left" for the web, nearest first from Place des Terreaux.
    let (status, a) = t
        .get("/api/v1/commerce/availability?skus=SHOE-42,RUN-KIT&channel=web&near=45.7673,4.8336")
        .await;
    assert_eq!(status, 200, "{a}");
    let shoe = &a["items"][0];
    assert_eq!(shoe["available"], 14);
    let order: Vec<&str> = shoe["locations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["location"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        ["lyon-bellecour", "lyon-part-dieu", "entrepot-venissieux"]
    );
    assert_eq!(shoe["locations"][1]["available"], 1);
    assert_eq!(shoe["locations"][1]["name"], "Lyon Part-Dieu");
    assert!(shoe["locations"][0]["distance_km"].as_f64().unwrap() < 1.5);
    // The kit: 5 socks make 2 kits, 4 laces 4: 2 kits, at Bellecour only.
    let kit = &a["items"][1];
    assert_eq!(
        (kit["kit"].as_bool(), kit["available"].as_i64()),
        (Some(true), Some(2))
    );
    // The shops' tablets (pos) do not count the warehouse.
    let (_, a) = t
        .get("/api/v1/commerce/availability?skus=SHOE-42&channel=pos")
        .await;
    assert_eq!(a["items"][0]["available"], 4);

    // Damaged units leave availability but stay on hand; a count records the difference.
    let (status, _) = call(
        &t,
        "POST",
        "/api/v1/commerce/stock/movements",
        json!({"movements": [
            {"sku": "SHOE-42", "location": "lyon-bellecour", "state": "damaged", "delta": 1, "reason": "damaged"},
            {"sku": "SOCK-M", "location": "lyon-bellecour", "set": 4, "reason": "count", "reference": "INV-2026-11"},
        ]}),
    )
    .await;
    assert_eq!(status, 200);
    let (_, levels) = t.get("/api/v1/commerce/stock?skus=SHOE-42,SOCK-M").await;
    let at = |sku: &str, loc: &str| -> Value {
        levels["levels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["sku"] == sku && l["location"] == loc)
            .cloned()
            .unwrap()
    };
    let b = at("SHOE-42", "lyon-bellecour");
    assert_eq!(
        (
            b["on_hand"].as_i64(),
            b["damaged"].as_i64(),
            b["available"].as_i64()
        ),
        (Some(3), Some(1), Some(2))
    );
    let (_, ledger) = t
        .get("/api/v1/commerce/stock/movements?sku=SOCK-M&location=lyon-bellecour")
        .await;
    assert_eq!(ledger["movements"][0]["reason"], "count");
    assert_eq!(ledger["movements"][0]["delta"], -1);
    assert_eq!(ledger["movements"][0]["reference"], "INV-2026-11");

    // Bad input: a clear code, nothing stored.
    for (body, code) in [
        (
            json!({"movements": [{"sku": "NOPE", "location": "lyon-bellecour", "delta": 1, "reason": "received"}]}),
            "unknown_item",
        ),
        (
            json!({"movements": [{"sku": "LACE", "location": "mars", "delta": 1, "reason": "received"}]}),
            "unknown_location",
        ),
        (
            json!({"movements": [{"sku": "RUN-KIT", "location": "lyon-bellecour", "delta": 1, "reason": "received"}]}),
            "kit_has_no_stock",
        ),
        (
            json!({"movements": [{"sku": "LACE", "location": "lyon-bellecour", "delta": 1, "set": 3, "reason": "x"}]}),
            "invalid_movement",
        ),
        (
            json!({"movements": [{"sku": "LACE", "location": "lyon-bellecour", "delta": -5, "reason": "sale"}]}),
            "insufficient_stock",
        ),
        (json!({"movements": []}), "invalid_movement"),
    ] {
        let (status, e) = call(&t, "POST", "/api/v1/commerce/stock/movements", body).await;
        assert!(status == 400 || status == 409, "{e}");
        assert_eq!(e["code"], code, "{e}");
    }
    let (status, e) = call(
        &t,
        "PUT",
        "/api/v1/commerce/locations/x",
        json!({"name": "X", "kind": "shop", "time_zone": "Europe/Lyon"}),
    )
    .await;
    assert_eq!(
        (status, e["code"].as_str()),
        (400, Some("invalid_location")),
        "{e}"
    );
    let (status, e) = t
        .get("/api/v1/commerce/availability?skus=SHOE-42&near=north")
        .await;
    assert_eq!(
        (status, e["code"].as_str()),
        (400, Some("invalid_position"))
    );
    let (_, lace) = t.get("/api/v1/commerce/stock?skus=LACE").await;
    assert_eq!(lace["levels"][0]["on_hand"], 4);

    // Reading is every role's; moving stock is the admin's.
    let (status, token) = call(
        &t,
        "POST",
        "/api/v1/tokens",
        json!({"name": "analyst", "role": "analyst"}),
    )
    .await;
    assert_eq!(status, 201);
    let secret = token["secret"].as_str().unwrap();
    let (status, _) = call_with(
        &t.client,
        secret,
        "GET",
        "/api/v1/commerce/stock?skus=LACE",
        Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    let (status, e) = call_with(
        &t.client,
        secret,
        "POST",
        "/api/v1/commerce/stock/movements",
        json!({"movements": [{"sku": "LACE", "location": "lyon-bellecour", "delta": 1, "reason": "received"}]}),
    )
    .await;
    assert_eq!((status, e["code"].as_str()), (403, Some("forbidden")));
    t.stop().await;
}

async fn the_last_unit_goes_to_one_buyer_only(backend: Backend) {
    let t = start_on("commerce-last", backend, |_| {}).await;
    shop_setup(&t).await;

    // Twenty carts want the last shoe at Part-Dieu while the till sells it.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let client = t.client.clone();
        tasks.push(tokio::spawn(async move {
            call_with(
                &client,
                common::ADMIN,
                "POST",
                "/api/v1/commerce/reservations",
                json!({"reference": format!("cart-{i}"), "expires_in_seconds": 900,
                       "lines": [{"sku": "SHOE-42", "location": "lyon-part-dieu", "quantity": 1}]}),
            )
            .await
        }));
    }
    let client = t.client.clone();
    tasks.push(tokio::spawn(async move {
        call_with(
            &client,
            common::ADMIN,
            "POST",
            "/api/v1/commerce/stock/movements",
            json!({"movements": [{"sku": "SHOE-42", "location": "lyon-part-dieu", "delta": -1, "reason": "sale", "reference": "till-7"}]}),
        )
        .await
    }));
    let mut won = 0;
    for task in tasks {
        let (status, v) = task.await.unwrap();
        match status {
            200 | 201 => won += 1,
            409 => {
                assert_eq!(v["code"], "insufficient_stock", "{v}");
                assert_eq!(v["shortages"][0]["available"], 0, "{v}");
            }
            s => panic!("{s}: {v}"),
        }
    }
    assert_eq!(won, 1, "exactly one of 21 buyers gets the last unit");
    let (_, levels) = t.get("/api/v1/commerce/stock?skus=SHOE-42").await;
    let pd = levels["levels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["location"] == "lyon-part-dieu")
        .unwrap()
        .clone();
    assert_eq!(pd["available"], 0, "{pd}");
    // A cart holds it (1 on hand, 1 reserved) or the till sold it (none left).
    let (on_hand, reserved) = (
        pd["on_hand"].as_i64().unwrap(),
        pd["reserved"].as_i64().unwrap(),
    );
    assert!(matches!((on_hand, reserved), (1, 1) | (0, 0)), "{pd}");

    // Two lines of one item summed (Medusa #16502): 2 + 2 of 3 at Bellecour is refused.
    let (status, e) = call(
        &t,
        "POST",
        "/api/v1/commerce/reservations",
        json!({"reference": "double", "lines": [
            {"sku": "SHOE-42", "location": "lyon-bellecour", "quantity": 2},
            {"sku": "SHOE-42", "location": "lyon-bellecour", "quantity": 2}]}),
    )
    .await;
    assert_eq!(
        (status, e["code"].as_str()),
        (409, Some("insufficient_stock")),
        "{e}"
    );
    assert_eq!(e["shortages"][0]["requested"], 4);
    let (status, _) = t.get("/api/v1/commerce/reservations/double").await;
    assert_eq!(status, 404, "nothing was reserved");

    // A kit reserves its components; the retried request holds nothing more.
    let kit = json!({"reference": "order-1", "lines": [{"sku": "RUN-KIT", "location": "lyon-bellecour", "quantity": 2}]});
    let (status, r) = call(&t, "POST", "/api/v1/commerce/reservations", kit.clone()).await;
    assert_eq!(status, 201, "{r}");
    assert_eq!(r["lines"].as_array().unwrap().len(), 2);
    let (status, _) = call(&t, "POST", "/api/v1/commerce/reservations", kit).await;
    assert_eq!(status, 200);
    let (_, a) = t
        .get("/api/v1/commerce/availability?skus=RUN-KIT,SOCK-M&location=lyon-bellecour")
        .await;
    assert_eq!(
        (
            a["items"][0]["available"].as_i64(),
            a["items"][1]["available"].as_i64()
        ),
        (Some(0), Some(1))
    );
    let (status, e) = call(
        &t,
        "POST",
        "/api/v1/commerce/reservations",
        json!({"reference": "order-1", "lines": [{"sku": "LACE", "location": "lyon-bellecour", "quantity": 1}]}),
    )
    .await;
    assert_eq!(
        (status, e["code"].as_str()),
        (409, Some("reference_taken")),
        "{e}"
    );

    // Collected: the units leave on hand and reserved together; a second fulfil is refused.
    let (status, m) = call(
        &t,
        "POST",
        "/api/v1/commerce/reservations/order-1/fulfil",
        json!({"reason": "collected"}),
    )
    .await;
    assert_eq!(status, 200, "{m}");
    assert!(m["movements"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["reason"] == "collected" && m["reference"] == "order-1"));
    let (status, e) = call(
        &t,
        "POST",
        "/api/v1/commerce/reservations/order-1/fulfil",
        json!({}),
    )
    .await;
    assert_eq!((status, e["code"].as_str()), (409, Some("not_held")), "{e}");
    let (_, socks) = t.get("/api/v1/commerce/stock?skus=SOCK-M").await;
    assert_eq!(
        (
            socks["levels"][0]["on_hand"].as_i64(),
            socks["levels"][0]["reserved"].as_i64()
        ),
        (Some(1), Some(0))
    );

    // A released cart's units are back at once.
    let (status, _) = call(
        &t,
        "POST",
        "/api/v1/commerce/reservations",
        json!({"reference": "cart-x", "lines": [{"sku": "LACE", "location": "lyon-bellecour", "quantity": 2}]}),
    )
    .await;
    assert_eq!(status, 201);
    let (status, r) = call(
        &t,
        "DELETE",
        "/api/v1/commerce/reservations/cart-x",
        Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(r["lines"][0]["state"], "released");
    let (_, lace) = t.get("/api/v1/commerce/availability?skus=LACE").await;
    assert_eq!(lace["items"][0]["available"], 2);
    for (body, code) in [
        (json!({"reference": "r", "lines": []}), "invalid_lines"),
        (
            json!({"reference": "r", "lines": [{"sku": "LACE", "location": "lyon-bellecour", "quantity": 0}]}),
            "invalid_quantity",
        ),
        (
            json!({"reference": "a/b", "lines": [{"sku": "LACE", "location": "lyon-bellecour", "quantity": 1}]}),
            "invalid_reference",
        ),
        (
            json!({"reference": "r", "expires_in_seconds": 0, "lines": [{"sku": "LACE", "location": "lyon-bellecour", "quantity": 1}]}),
            "invalid_reservation",
        ),
        (
            json!({"reference": "r", "lines": [{"sku": "NOPE", "location": "lyon-bellecour", "quantity": 1}]}),
            "unknown_item",
        ),
        (
            json!({"reference": "r", "lines": "many"}),
            "invalid_reservation",
        ),
    ] {
        let (status, e) = call(&t, "POST", "/api/v1/commerce/reservations", body).await;
        assert_eq!((status, e["code"].as_str()), (400, Some(code)), "{e}");
    }
    t.stop().await;
}

async fn timeline_names(t: &TestNode, user: &str) -> Vec<String> {
    t.unified().await;
    let profile = t
        .profile_of(common::ADMIN, "user_id", user)
        .await
        .expect("a profile");
    let id = profile["id"].as_str().unwrap().to_string();
    let (status, page) = t.get(&format!("/api/v1/profiles/{id}/events")).await;
    assert_eq!(status, 200, "{page}");
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["event"].as_str().map(str::to_string))
        .collect()
}

async fn a_sale_earns_once_and_a_return_anywhere_gives_back(backend: Backend) {
    let t = start_on("commerce-sale", backend, |_| {}).await;
    shop_setup(&t).await;
    put(
        &t,
        "/api/v1/commerce/loyalty/program",
        json!({"points_per_unit": 1, "pending_days": 14,
               "tiers": {"basis": "points", "tiers": [{"name": "silver", "threshold": 50}, {"name": "gold", "threshold": 500}]}}),
    )
    .await;
    // A till sale with the card scanned: the last shoe at Part-Dieu.
    let sale = json!({"order_id": "PD-R000123", "location": "lyon-part-dieu",
        "customer": {"user_id": "u-77", "loyalty_card": "CARD-77"},
        "lines": [{"sku": "SHOE-42", "quantity": 1}], "payment_method": "card"});
    let (status, r) = call(&t, "POST", "/api/v1/commerce/sales", sale.clone()).await;
    assert_eq!(status, 201, "{r}");
    assert_eq!(
        (r["points"].as_i64(), r["order"]["total_minor"].as_i64()),
        (Some(89), Some(8990))
    );
    assert!(r["pending_until"].is_string(), "{r}");
    assert_eq!(r["movements"][0]["after"], 0);
    // The same sale again, replayed from the web shop: nothing twice.
    let mut replay = sale.clone();
    replay["channel"] = "web".into();
    let (status, again) = call(&t, "POST", "/api/v1/commerce/sales", replay).await;
    assert_eq!(
        (status, again["created"].as_bool()),
        (200, Some(false)),
        "{again}"
    );
    let (_, a) = t
        .get("/api/v1/commerce/availability?skus=SHOE-42&location=lyon-part-dieu")
        .await;
    assert_eq!(a["items"][0]["available"], 0);
    let (_, m) = t.get("/api/v1/commerce/loyalty/members/CARD-77").await;
    assert_eq!(m["balance"]["pending"], 89, "{m}");
    assert_eq!(
        (
            m["balance"]["earned"].as_i64(),
            m["balance"]["active"].as_i64()
        ),
        (Some(89), Some(0))
    );
    assert_eq!(
        m["tier"],
        Value::Null,
        "pending points do not count for a tier"
    );
    assert_eq!(m["entries"].as_array().unwrap().len(), 1);
    // Pending points cannot be spent.
    let (status, e) = call(
        &t,
        "POST",
        "/api/v1/commerce/loyalty/members/CARD-77/redemptions",
        json!({"redemption_id": "gift-1", "points": 10}),
    )
    .await;
    assert_eq!(
        (status, e["code"].as_str()),
        (422, Some("insufficient_points")),
        "{e}"
    );

    // Brought back to Bellecour: restocked there, its points taken back.
    let (status, r) = call(&t, "POST", "/api/v1/commerce/orders/PD-R000123/returns",
        json!({"return_id": "RET-1", "location": "lyon-bellecour", "lines": [{"sku": "SHOE-42", "quantity": 1}]})).await;
    assert_eq!(status, 201, "{r}");
    assert_eq!(r["points"], -89);
    assert_eq!(r["order"]["status"], "returned");
    assert_eq!(
        (
            r["movements"][0]["location"].as_str(),
            r["movements"][0]["after"].as_i64()
        ),
        (Some("lyon-bellecour"), Some(4))
    );
    let (status, _) = call(&t, "POST", "/api/v1/commerce/orders/PD-R000123/returns",
        json!({"return_id": "RET-1", "location": "lyon-bellecour", "lines": [{"sku": "SHOE-42", "quantity": 1}]})).await;
    assert_eq!(status, 200, "the same return is recorded once");
    let (status, e) = call(&t, "POST", "/api/v1/commerce/orders/PD-R000123/returns",
        json!({"return_id": "RET-2", "location": "lyon-bellecour", "lines": [{"sku": "SHOE-42", "quantity": 1}]})).await;
    assert_eq!(
        (status, e["code"].as_str()),
        (400, Some("invalid_return")),
        "{e}"
    );
    let (_, m) = t.get("/api/v1/commerce/loyalty/members/CARD-77").await;
    let b = &m["balance"];
    assert_eq!(
        (
            b["earned"].as_i64(),
            b["pending"].as_i64(),
            b["cancelled"].as_i64()
        ),
        (Some(0), Some(0), Some(89)),
        "{m}"
    );
    let names = timeline_names(&t, "u-77").await;
    assert!(
        names.contains(&"Order Completed".to_string())
            && names.contains(&"Order Refunded".to_string()),
        "{names:?}"
    );

    // Points at once: a sale earns, a redemption spends, its refund gives them back.
    // A programme is saved whole: what it leaves out takes its default.
    let p = put(
        &t,
        "/api/v1/commerce/loyalty/program",
        json!({"pending_days": 0}),
    )
    .await;
    assert_eq!(
        (p["tiers"].clone(), p["points_per_unit"].as_i64()),
        (Value::Null, Some(1))
    );
    put(
        &t,
        "/api/v1/commerce/loyalty/program",
        json!({"pending_days": 0, "expiry": {"kind": "months", "value": 6},
               "tiers": {"basis": "points", "tiers": [{"name": "silver", "threshold": 50}, {"name": "gold", "threshold": 500}]}}),
    )
    .await;
    // Points at a negative rate, or expiring further than dates go, are refused.
    for bad in [
        json!({"points_per_unit": -1}),
        json!({"expiry": {"kind": "months", "value": 4_294_967_295u64}}),
    ] {
        let (status, e) = call(&t, "PUT", "/api/v1/commerce/loyalty/program", bad).await;
        assert_eq!(
            (status, e["code"].as_str()),
            (400, Some("invalid_program")),
            "{e}"
        );
    }
    let (status, r) = call(&t, "POST", "/api/v1/commerce/sales",
        json!({"order_id": "BC-R000001", "location": "lyon-bellecour", "customer": {"loyalty_card": "CARD-77"},
               "lines": [{"sku": "LACE", "quantity": 2, "unit_price_minor": 3000}]})).await;
    assert_eq!((status, r["points"].as_i64()), (201, Some(60)), "{r}");
    let (status, m) = call(
        &t,
        "POST",
        "/api/v1/commerce/loyalty/members/CARD-77/redemptions",
        json!({"redemption_id": "gift-1", "points": 25, "channel": "app"}),
    )
    .await;
    assert_eq!(status, 201, "{m}");
    assert_eq!(
        (
            m["balance"]["active"].as_i64(),
            m["balance"]["used"].as_i64()
        ),
        (Some(35), Some(25))
    );
    let (status, _) = call(
        &t,
        "POST",
        "/api/v1/commerce/loyalty/members/CARD-77/redemptions",
        json!({"redemption_id": "gift-1", "points": 25}),
    )
    .await;
    assert_eq!(status, 200, "a redemption spends once");
    let (status, m) = call(
        &t,
        "POST",
        "/api/v1/commerce/loyalty/members/CARD-77/redemptions/gift-1/refund",
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(
        (
            m["balance"]["active"].as_i64(),
            m["balance"]["used"].as_i64()
        ),
        (Some(60), Some(0))
    );
    assert_eq!(m["tier"], "silver");
    let b = &m["balance"];
    assert_eq!(
        b["earned"].as_i64().unwrap(),
        ["active", "pending", "used", "expired"]
            .iter()
            .map(|k| b[k].as_i64().unwrap())
            .sum::<i64>()
    );

    // A sale of what is not there is refused whole: no order, no event.
    let (status, e) = call(&t, "POST", "/api/v1/commerce/sales",
        json!({"order_id": "PD-R000124", "location": "lyon-part-dieu", "customer": {"user_id": "u-77"},
               "lines": [{"sku": "LACE", "quantity": 1, "unit_price_minor": 100}]})).await;
    assert_eq!(
        (status, e["code"].as_str()),
        (409, Some("insufficient_stock")),
        "{e}"
    );
    let (status, _) = t.get("/api/v1/commerce/orders/PD-R000124").await;
    assert_eq!(status, 404);
    for (body, code) in [
        (
            json!({"order_id": "x", "location": "lyon-bellecour", "lines": [{"sku": "SOCK-M", "quantity": 1}]}),
            "missing_price",
        ),
        (
            json!({"order_id": "x", "location": "nowhere", "lines": [{"sku": "LACE", "quantity": 1, "unit_price_minor": 1}]}),
            "unknown_location",
        ),
        (
            json!({"order_id": "x", "location": "lyon-bellecour", "customer": {"email": "not-an-email"}, "lines": [{"sku": "LACE", "quantity": 1, "unit_price_minor": 1}]}),
            "invalid_customer",
        ),
        (
            json!({"order_id": "x", "location": "lyon-bellecour", "lines": []}),
            "invalid_lines",
        ),
        (
            json!({"location": "lyon-bellecour", "lines": []}),
            "invalid_sale",
        ),
        // Ten lines of a billion units at ten million euros: a total no 64-bit sum holds.
        (
            json!({"order_id": "x", "location": "lyon-bellecour",
                   "lines": vec![json!({"sku": "LACE", "quantity": 1_000_000_000, "unit_price_minor": 1_000_000_000}); 10]}),
            "invalid_price",
        ),
    ] {
        let (status, e) = call(&t, "POST", "/api/v1/commerce/sales", body).await;
        assert_eq!((status, e["code"].as_str()), (400, Some(code)), "{e}");
    }
    t.stop().await;
}

/// Shoes for sale at Bellecour.
async fn bellecour_shoes(t: &TestNode) -> i64 {
    let (_, a) = t
        .get("/api/v1/commerce/availability?skus=SHOE-42&location=lyon-bellecour")
        .await;
    a["items"][0]["available"].as_i64().unwrap()
}

async fn move_on(t: &TestNode, id: &str, body: Value) -> (u16, Value) {
    call(
        t,
        "POST",
        &format!("/api/v1/commerce/orders/{id}/status"),
        body,
    )
    .await
}

/// The acceptance path: a web click & collect order for the last unit in Lyon while the
/// shop's till sells that unit (one is refused), the order ready, collected (points earned),
/// a redemption refunded, the goods returned in another shop (points taken back), every step
/// on the customer's timeline; and a ready order nobody collects frees its units at its
/// deadline.
async fn click_and_collect_from_order_to_return(backend: Backend) {
    let clock = Arc::new(ShiftedClock::default());
    let t = start_with_clock("commerce-cc", backend, clock.clone(), |_| {}).await;
    shop_setup(&t).await;
    put(
        &t,
        "/api/v1/commerce/loyalty/program",
        json!({"pending_days": 0}),
    )
    .await;
    let order = |id: &str| {
        json!({"order_id": id, "channel": "web",
               "customer": {"user_id": "u-ann", "email": "ann@example.com", "loyalty_card": "CARD-ANN"},
               "lines": [{"sku": "SHOE-42", "quantity": 1}],
               "fulfilment": {"kind": "pickup", "location": "lyon-part-dieu"}})
    };
    let till = json!({"order_id": "PD-R000900", "location": "lyon-part-dieu",
                      "lines": [{"sku": "SHOE-42", "quantity": 1}]});
    let (web, shop) = tokio::join!(
        call(&t, "POST", "/api/v1/commerce/orders", order("W-1001")),
        call(&t, "POST", "/api/v1/commerce/sales", till)
    );
    let statuses = [web.0, shop.0];
    assert!(
        statuses.contains(&201) && statuses.contains(&409),
        "{web:?} {shop:?}"
    );
    let refused = if web.0 == 409 { &web.1 } else { &shop.1 };
    assert_eq!(refused["code"], "insufficient_stock", "{refused}");
    let id = if web.0 == 201 {
        "W-1001"
    } else {
        // The till won: a new unit arrives and the customer orders again.
        let (status, _) = call(&t, "POST", "/api/v1/commerce/stock/movements",
            json!({"movements": [{"sku": "SHOE-42", "location": "lyon-part-dieu", "delta": 1, "reason": "received"}]})).await;
        assert_eq!(status, 200);
        let (status, r) = call(&t, "POST", "/api/v1/commerce/orders", order("W-1002")).await;
        assert_eq!(status, 201, "{r}");
        "W-1002"
    };
    let (_, o) = t.get(&format!("/api/v1/commerce/orders/{id}")).await;
    assert_eq!(
        (
            o["status"].as_str(),
            o["allocation"][0]["location"].as_str()
        ),
        (Some("placed"), Some("lyon-part-dieu")),
        "{o}"
    );
    let (status, e) = move_on(&t, id, json!({"status": "collected"})).await;
    assert_eq!(
        (status, e["code"].as_str()),
        (409, Some("invalid_transition")),
        "{e}"
    );
    let (code, r) = move_on(
        &t,
        id,
        json!({"status": "ready_for_pickup", "pickup_hours": 48}),
    )
    .await;
    assert_eq!(code, 200, "{r}");
    assert!(r["order"]["pickup_deadline"].is_string());
    let (code, r) = move_on(&t, id, json!({"status": "collected"})).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(
        (r["points"].as_i64(), r["movements"][0]["after"].as_i64()),
        (Some(89), Some(0)),
        "{r}"
    );
    let (_, a) = t.get("/api/v1/commerce/stock?skus=SHOE-42").await;
    let pd = a["levels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["location"] == "lyon-part-dieu")
        .unwrap()
        .clone();
    assert_eq!(
        (pd["on_hand"].as_i64(), pd["reserved"].as_i64()),
        (Some(0), Some(0)),
        "{pd}"
    );

    // Points spent and refunded come back exactly; the return takes the order's back.
    let (code, _) = call(
        &t,
        "POST",
        "/api/v1/commerce/loyalty/members/CARD-ANN/redemptions",
        json!({"redemption_id": "coffee", "points": 20, "channel": "app"}),
    )
    .await;
    assert_eq!(code, 201);
    let (code, m) = call(
        &t,
        "POST",
        "/api/v1/commerce/loyalty/members/CARD-ANN/redemptions/coffee/refund",
        Value::Null,
    )
    .await;
    assert_eq!(
        (code, m["balance"]["active"].as_i64()),
        (200, Some(89)),
        "{m}"
    );
    let (code, r) = call(&t, "POST", &format!("/api/v1/commerce/orders/{id}/returns"),
        json!({"return_id": "RET-ANN", "location": "lyon-bellecour", "lines": [{"sku": "SHOE-42", "quantity": 1}]})).await;
    assert_eq!((code, r["points"].as_i64()), (201, Some(-89)), "{r}");
    let (_, m) = t.get("/api/v1/commerce/loyalty/members/CARD-ANN").await;
    assert_eq!(
        (
            m["balance"]["active"].as_i64(),
            m["balance"]["cancelled"].as_i64()
        ),
        (Some(0), Some(89)),
        "{m}"
    );
    let names = timeline_names(&t, "u-ann").await;
    for step in [
        "Order Completed",
        "Order Ready for Pickup",
        "Order Collected",
        "Order Refunded",
    ] {
        assert!(
            names.iter().any(|n| n == step),
            "{step} missing from {names:?}"
        );
    }

    // Nobody comes: at the deadline the units are for sale again, and too late to collect.
    let (code, r) = call(
        &t,
        "POST",
        "/api/v1/commerce/orders",
        json!({"order_id": "W-2000", "customer": {"user_id": "u-bob"},
               "lines": [{"sku": "SHOE-42", "quantity": 2}],
               "fulfilment": {"kind": "pickup", "location": "lyon-bellecour"}}),
    )
    .await;
    assert_eq!(code, 201, "{r}");
    let (code, _) = move_on(&t, "W-2000", json!({"status": "picking"})).await;
    assert_eq!(code, 200);
    let (code, e) = move_on(&t, "W-2000", json!({"status": "collected"})).await;
    assert_eq!(
        (code, e["code"].as_str()),
        (409, Some("invalid_transition")),
        "{e}"
    );
    let (code, _) = move_on(
        &t,
        "W-2000",
        json!({"status": "ready_for_pickup", "pickup_hours": 1}),
    )
    .await;
    assert_eq!(code, 200);
    // 3 received, 1 returned, 2 held for Bob.
    assert_eq!(bellecour_shoes(&t).await, 2);
    clock.advance(3_600_001);
    assert_eq!(bellecour_shoes(&t).await, 4);
    let (_, o) = t.get("/api/v1/commerce/orders/W-2000").await;
    assert_eq!(o["status"], "not_collected", "{o}");
    // The order is its own durable timer: the node stores it as not collected and tells
    // it on Bob's timeline, once.
    common::eventually(
        std::time::Duration::from_secs(20),
        "Order Not Collected is told",
        || async {
            timeline_names(&t, "u-bob")
                .await
                .contains(&"Order Not Collected".to_string())
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        t.store
            .order(&t.workspace, "W-2000")
            .unwrap()
            .unwrap()
            .status,
        "not_collected"
    );
    assert!(t.store.due_orders(i64::MAX, 10).unwrap().is_empty());
    let told = timeline_names(&t, "u-bob").await;
    for name in [
        "Order Updated",
        "Order Ready for Pickup",
        "Order Not Collected",
    ] {
        assert_eq!(
            told.iter().filter(|n| *n == name).count(),
            1,
            "{name}: {told:?}"
        );
    }
    let (code, e) = move_on(&t, "W-2000", json!({"status": "collected"})).await;
    assert_eq!(
        (code, e["code"].as_str()),
        (409, Some("pickup_expired")),
        "{e}"
    );
    let (code, _) = move_on(&t, "W-2000", json!({"status": "cancelled"})).await;
    assert_eq!(code, 200);
    assert_eq!(
        bellecour_shoes(&t).await,
        4,
        "cancelling after the deadline releases nothing twice"
    );

    // Delivery spreads an order over the web channel's locations, nearest first.
    let (code, r) = call(&t, "POST", "/api/v1/commerce/orders",
        json!({"order_id": "W-3000", "customer": {"anonymous_id": "anon-9"},
               "lines": [{"sku": "SHOE-42", "quantity": 12}],
               "fulfilment": {"kind": "ship", "strategy": "nearest", "latitude": 45.70, "longitude": 4.89}})).await;
    assert_eq!(code, 201, "{r}");
    let alloc = r["order"]["allocation"].as_array().unwrap();
    assert_eq!(alloc[0]["location"], "entrepot-venissieux", "{r}");
    assert_eq!(
        alloc
            .iter()
            .map(|l| l["quantity"].as_i64().unwrap())
            .sum::<i64>(),
        12
    );
    let (code, e) = call(
        &t,
        "POST",
        "/api/v1/commerce/orders",
        json!({"order_id": "W-3001", "lines": [{"sku": "SHOE-42", "quantity": 1}],
               "fulfilment": {"kind": "pickup", "location": "entrepot-venissieux"}}),
    )
    .await;
    assert_eq!(
        (code, e["code"].as_str()),
        (422, Some("pickup_unavailable")),
        "{e}"
    );
    let (code, e) = call(
        &t,
        "POST",
        "/api/v1/commerce/orders",
        json!({"order_id": "W-3002", "lines": [{"sku": "SHOE-42", "quantity": 99}],
               "fulfilment": {"kind": "ship"}}),
    )
    .await;
    assert_eq!(
        (code, e["code"].as_str()),
        (409, Some("insufficient_stock")),
        "{e}"
    );
    let (code, e) = call(&t, "POST", "/api/v1/commerce/orders/W-3000/returns",
        json!({"return_id": "R", "location": "lyon-bellecour", "lines": [{"sku": "SHOE-42", "quantity": 1}]})).await;
    assert_eq!(
        (code, e["code"].as_str()),
        (409, Some("not_returnable")),
        "{e}"
    );
    let (code, r) = move_on(&t, "W-3000", json!({"status": "shipped"})).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(
        r["movements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["delta"].as_i64().unwrap())
            .sum::<i64>(),
        -12
    );
    t.stop().await;
}

/// The offers of the issue's list through the HTTP path: one price on every channel unless
/// an offer is scoped, the reasons of the offers that did not apply, a code whose last uses
/// twenty tills race for, a customer's single use given back when her order is cancelled,
/// an audience-targeted offer once she is in the audience, and a return refunded net of its
/// discount.
async fn offers_price_every_channel_alike_and_hold_their_limits(backend: Backend) {
    let t = start_on("commerce-offers", backend, |_| {}).await;
    shop_setup(&t).await;
    let (status, e) = call(
        &t,
        "PUT",
        "/api/v1/commerce/offers/bad",
        json!({"name": "x", "reward": {"kind": "amount_off", "amount_minor": 500}}),
    )
    .await;
    assert_eq!(
        (status, e["code"].as_str()),
        (400, Some("invalid_offer")),
        "{e}"
    );
    for (id, offer) in [
        (
            "shoes10",
            json!({"name": "10% off shoes", "priority": 10,
            "reward": {"kind": "percent_off", "percent": 10, "skus": ["SHOE-42"]}}),
        ),
        (
            "app5",
            json!({"name": "5 EUR off in the app", "channels": ["app"], "currency": "EUR",
            "reward": {"kind": "amount_off", "amount_minor": 500}}),
        ),
        (
            "lace-gift",
            json!({"name": "A free lace with shoes", "priority": 5, "requires": [{"sku": "SHOE-42", "quantity": 1}],
            "reward": {"kind": "free_item", "sku": "LACE", "quantity": 1}}),
        ),
        (
            "spring",
            json!({"name": "Spring code", "coupon": {"codes": ["SPRING-24"], "limit_per_code": 3},
            "currency": "EUR", "min_subtotal_minor": 5000,
            "reward": {"kind": "amount_off", "amount_minor": 1000}}),
        ),
        (
            "welcome",
            json!({"name": "Welcome", "stacking": "exclusive", "priority": 20,
            "coupon": {"codes": ["hello"], "limit_per_customer": 1},
            "reward": {"kind": "percent_off", "percent": 25}}),
        ),
        (
            "buyers",
            json!({"name": "Thank you", "audience": "buyers", "priority": -1,
            "reward": {"kind": "percent_off", "percent": 5}}),
        ),
        (
            "over",
            json!({"name": "Ended", "ends_at": "2001-01-01T00:00:00Z",
            "reward": {"kind": "percent_off", "percent": 50}}),
        ),
    ] {
        put(&t, &format!("/api/v1/commerce/offers/{id}"), offer).await;
    }
    let (_, list) = t.get("/api/v1/commerce/offers").await;
    assert_eq!(list["offers"].as_array().unwrap().len(), 7, "{list}");
    // Codes are kept as they are compared; a workspace's codes are bounded in all.
    let (_, welcome) = t.get("/api/v1/commerce/offers/welcome").await;
    assert_eq!(welcome["coupon"]["codes"], json!(["HELLO"]), "{welcome}");
    for batch in 0..6 {
        let codes: Vec<String> = (0..10_000).map(|i| format!("u{batch}-{i}")).collect();
        let (status, e) = call(
            &t,
            "PUT",
            &format!("/api/v1/commerce/offers/unique-{batch}"),
            json!({"name": "unique codes", "coupon": {"codes": codes, "limit_per_code": 1},
                   "reward": {"kind": "percent_off", "percent": 5}}),
        )
        .await;
        // Two codes are listed already: the fifth batch passes the bound.
        if batch < 4 {
            assert_eq!(status, 200, "{e}");
        } else {
            assert_eq!(
                (status, e["code"].as_str()),
                (400, Some("too_many_offers")),
                "{batch}: {e}"
            );
        }
    }
    for batch in 0..4 {
        let auth = format!("Bearer {}", common::ADMIN);
        let r = t
            .client
            .request(
                "DELETE".parse().unwrap(),
                &format!("/api/v1/commerce/offers/unique-{batch}"),
                &[("authorization", &auth)],
                String::new(),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 204);
    }

    let basket = |channel: &str, coupons: Value| {
        json!({"channel": channel, "customer": {"user_id": "u-ada"},
               "lines": [{"sku": "SHOE-42", "quantity": 1}, {"sku": "LACE", "quantity": 1}],
               "coupons": coupons})
    };
    let mut totals = Vec::new();
    for channel in ["web", "pos", "call_centre", "app"] {
        let (status, e) = call(
            &t,
            "POST",
            "/api/v1/commerce/baskets/evaluate",
            basket(channel, json!([])),
        )
        .await;
        assert_eq!(status, 200, "{e}");
        totals.push(e["total_minor"].as_i64().unwrap());
        let applied: Vec<&str> = e["applied"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["offer"].as_str().unwrap())
            .collect();
        let reasons: Vec<(&str, &str)> = e["not_applied"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| (n["offer"].as_str().unwrap(), n["reason"].as_str().unwrap()))
            .collect();
        if channel == "app" {
            assert_eq!(applied, vec!["shoes10", "lace-gift", "app5"], "{e}");
        } else {
            // 89.90 × 2 − 8.99 (10% of the shoe) − 89.90 (the free lace).
            assert_eq!(e["subtotal_minor"], 17980);
            assert_eq!(e["total_minor"], 17980 - 899 - 8990, "{e}");
            assert_eq!(applied, vec!["shoes10", "lace-gift"], "{e}");
            assert!(reasons.contains(&("app5", "other_channel")), "{e}");
        }
        assert!(reasons.contains(&("over", "ended")), "{e}");
        assert!(reasons.contains(&("buyers", "not_in_audience")), "{e}");
    }
    assert_eq!(
        totals[0..3],
        [8091, 8091, 8091],
        "the same basket, the same price"
    );
    assert_eq!(totals[3], 8091 - 500, "unless an offer says otherwise");

    // A code that does not apply refuses the sale rather than charging a surprise price.
    let (status, e) = call(
        &t,
        "POST",
        "/api/v1/commerce/sales",
        json!({"order_id": "NOPE-1", "location": "lyon-bellecour", "coupons": ["NOPE"],
               "lines": [{"sku": "LACE", "quantity": 1}]}),
    )
    .await;
    assert_eq!(
        (status, e["code"].as_str()),
        (422, Some("coupon_not_applied")),
        "{e}"
    );

    // Twenty tills race for a code's three uses.
    put(
        &t,
        "/api/v1/commerce/items/BAG",
        json!({"name": "Bag", "prices": [{"currency": "EUR", "amount_minor": 6000}]}),
    )
    .await;
    let (status, _) = call(&t, "POST", "/api/v1/commerce/stock/movements",
        json!({"movements": [{"sku": "BAG", "location": "lyon-bellecour", "delta": 100, "reason": "received"}]})).await;
    assert_eq!(status, 200);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let client = t.client.clone();
        tasks.push(tokio::spawn(async move {
            call_with(&client, common::ADMIN, "POST", "/api/v1/commerce/sales",
                json!({"order_id": format!("SPR-{i}"), "location": "lyon-bellecour", "coupons": ["spring-24"],
                       "lines": [{"sku": "BAG", "quantity": 1}]})).await
        }));
    }
    let mut discounted = 0;
    for task in tasks {
        let (status, v) = task.await.unwrap();
        match status {
            201 => {
                assert_eq!(v["order"]["total_minor"], 5000, "{v}");
                discounted += 1;
            }
            // Priced after the third use (the reason says so), or priced before it and
            // refused at commit by the store's count.
            422 => assert!(
                v["message"].as_str().unwrap().contains("used 3 times"),
                "{v}"
            ),
            409 => assert_eq!(v["code"], "offer_used_up", "{v}"),
            s => panic!("{s}: {v}"),
        }
    }
    assert_eq!(discounted, 3, "a code used three times at most");
    let (_, spring) = t.get("/api/v1/commerce/offers/spring").await;
    assert_eq!(spring["redemptions"], 3);
    let (_, bags) = t.get("/api/v1/commerce/stock?skus=BAG").await;
    assert_eq!(
        bags["levels"][0]["on_hand"], 97,
        "refused sales moved no stock: {bags}"
    );

    // Welcome: once per customer, alone; a cancelled order gives it back.
    let order = |id: &str| {
        json!({"order_id": id, "channel": "web", "customer": {"user_id": "u-ada"}, "coupons": ["hello"],
               "lines": [{"sku": "SHOE-42", "quantity": 1}],
               "fulfilment": {"kind": "pickup", "location": "lyon-bellecour"}})
    };
    let (status, placed) = call(&t, "POST", "/api/v1/commerce/orders", order("W-1")).await;
    assert_eq!(status, 201, "{placed}");
    assert_eq!(
        placed["order"]["total_minor"],
        8990 - 2248,
        "25% alone: {placed}"
    );
    assert_eq!(placed["order"]["offers"][0]["offer"], "welcome");
    let (status, e) = call(&t, "POST", "/api/v1/commerce/orders", order("W-2")).await;
    assert_eq!(
        (status, e["code"].as_str()),
        (422, Some("coupon_not_applied")),
        "{e}"
    );
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("customer used the offer 1 times"),
        "{e}"
    );
    let (status, c) = call(
        &t,
        "POST",
        "/api/v1/commerce/orders/W-1/status",
        json!({"status": "cancelled"}),
    )
    .await;
    assert_eq!(status, 200, "{c}");
    let (status, placed) = call(&t, "POST", "/api/v1/commerce/orders", order("W-3")).await;
    assert_eq!(
        status, 201,
        "the cancelled order gave the code back: {placed}"
    );

    // She bought: in the audience, the thank-you offer applies to her.
    let (status, a) = call(
        &t,
        "POST",
        "/api/v1/audiences",
        json!({"id": "buyers", "name": "Buyers", "definition": "did \"Order Completed\""}),
    )
    .await;
    assert_eq!(status, 201, "{a}");
    t.unified().await;
    common::eventually(
        std::time::Duration::from_secs(20),
        "the audience takes her",
        || async {
            let (_, e) = call(
                &t,
                "POST",
                "/api/v1/commerce/baskets/evaluate",
                basket("web", json!([])),
            )
            .await;
            e["applied"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["offer"] == "buyers")
                .then_some(())
        },
    )
    .await;

    // A return of part of a discounted sale is refunded net of its share of the discount.
    let (status, sold) = call(
        &t,
        "POST",
        "/api/v1/commerce/sales",
        json!({"order_id": "R-1", "location": "lyon-bellecour",
               "lines": [{"sku": "SHOE-42", "quantity": 2}]}),
    )
    .await;
    assert_eq!(status, 201, "{sold}");
    // 2 × 89.90 − 10% = 161.82.
    assert_eq!(sold["order"]["total_minor"], 16182, "{sold}");
    let mut refunded = 0;
    for (i, location) in ["lyon-bellecour", "lyon-part-dieu"].iter().enumerate() {
        let (status, r) = call(&t, "POST", "/api/v1/commerce/orders/R-1/returns",
            json!({"return_id": format!("RET-{i}"), "location": location, "lines": [{"sku": "SHOE-42", "quantity": 1}]})).await;
        assert_eq!(status, 201, "{r}");
        refunded += r["order"]["returns"][i]["refund_minor"].as_i64().unwrap();
    }
    assert_eq!(refunded, 16182, "the refunds add up to what was paid");
    t.stop().await;
}

async fn told(t: &TestNode, kind: &str, id: &str, event: &str) -> Vec<Value> {
    t.unified().await;
    let Some(profile) = t.profile_of(common::ADMIN, kind, id).await else {
        return Vec::new();
    };
    let pid = profile["id"].as_str().unwrap().to_string();
    let (_, page) = t.get(&format!("/api/v1/profiles/{pid}/events")).await;
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == event)
        .cloned()
        .collect()
}

/// Inventory-aware marketing through the HTTP path: a customer who asked, and one whose click
/// & collect order was refused for lack of stock, are told once the item is back at that
/// shop; a location is told when its stock of an item falls to the item's threshold, once per
/// fall.
async fn back_in_stock_and_low_stock_are_told_once(backend: Backend) {
    let t = start_on("commerce-alerts", backend, |_| {}).await;
    shop_setup(&t).await;
    put(
        &t,
        "/api/v1/commerce/items/SOCK-M",
        json!({"name": "Socks", "low_stock": 2,
        "prices": [{"channel": "web", "currency": "EUR", "amount_minor": 990}]}),
    )
    .await;
    // Cat asks for laces at Part-Dieu, which has none.
    let (status, a) = call(
        &t,
        "POST",
        "/api/v1/commerce/stock-alerts",
        json!({"sku": "LACE", "location": "lyon-part-dieu", "customer": {"user_id": "u-cat"}}),
    )
    .await;
    assert_eq!(status, 201, "{a}");
    assert_eq!(a["subscriber"], "user:u-cat");
    for (bad, code) in [
        (
            json!({"sku": "NOPE", "location": "lyon-part-dieu", "customer": {"user_id": "u-cat"}}),
            "unknown_item",
        ),
        (
            json!({"sku": "LACE", "location": "nowhere", "customer": {"user_id": "u-cat"}}),
            "unknown_location",
        ),
        (
            json!({"sku": "LACE", "location": "lyon-part-dieu", "customer": {}}),
            "invalid_customer",
        ),
        (
            json!({"sku": "RUN-KIT", "location": "lyon-part-dieu", "customer": {"user_id": "u"}}),
            "invalid_alert",
        ),
        (json!({"sku": "LACE"}), "invalid_alert"),
    ] {
        let (status, e) = call(&t, "POST", "/api/v1/commerce/stock-alerts", bad).await;
        assert_eq!((status, e["code"].as_str()), (400, Some(code)), "{e}");
    }
    // Dan's click & collect order for two shoes at Part-Dieu (one there) is refused: he waits.
    let (status, e) = call(
        &t,
        "POST",
        "/api/v1/commerce/orders",
        json!({"order_id": "W-DAN", "customer": {"user_id": "u-dan"},
               "lines": [{"sku": "SHOE-42", "quantity": 2}],
               "fulfilment": {"kind": "pickup", "location": "lyon-part-dieu"}}),
    )
    .await;
    assert_eq!(
        (status, e["code"].as_str()),
        (409, Some("insufficient_stock")),
        "{e}"
    );
    let (_, alerts) = t.get("/api/v1/commerce/stock-alerts?sku=SHOE-42").await;
    assert_eq!(alerts["alerts"][0]["reason"], "out_of_stock", "{alerts}");
    assert_eq!(alerts["alerts"][0]["notified_at"], Value::Null);

    // Laces arrive at Part-Dieu: Cat is told, once.
    let (status, _) = call(&t, "POST", "/api/v1/commerce/stock/movements",
        json!({"movements": [{"sku": "LACE", "location": "lyon-part-dieu", "delta": 3, "reason": "received"}]})).await;
    assert_eq!(status, 200);
    let back = common::eventually(
        std::time::Duration::from_secs(20),
        "Cat is told",
        || async {
            let e = told(&t, "user_id", "u-cat", "Back in Stock").await;
            (!e.is_empty()).then_some(e)
        },
    )
    .await;
    assert_eq!(back.len(), 1);
    assert_eq!(
        back[0]["properties"]["store_id"], "lyon-part-dieu",
        "{back:?}"
    );
    assert_eq!(back[0]["properties"]["available"], 3, "{back:?}");
    let (_, alerts) = t.get("/api/v1/commerce/stock-alerts?sku=LACE").await;
    assert!(alerts["alerts"][0]["notified_at"].is_string(), "{alerts}");
    // Dan wants two shoes at Part-Dieu and one is there: not yet.
    let (_, alerts) = t.get("/api/v1/commerce/stock-alerts?sku=SHOE-42").await;
    assert_eq!(alerts["alerts"][0]["quantity"], 2, "{alerts}");
    assert_eq!(alerts["alerts"][0]["notified_at"], Value::Null, "{alerts}");
    let (status, _) = call(&t, "POST", "/api/v1/commerce/stock/movements",
        json!({"movements": [{"sku": "SHOE-42", "location": "lyon-part-dieu", "delta": 1, "reason": "received"}]})).await;
    assert_eq!(status, 200);
    let dan = common::eventually(
        std::time::Duration::from_secs(20),
        "Dan is told",
        || async {
            let e = told(&t, "user_id", "u-dan", "Back in Stock").await;
            (!e.is_empty()).then_some(e)
        },
    )
    .await;
    assert_eq!(dan[0]["properties"]["reason"], "out_of_stock", "{dan:?}");

    // Socks at Bellecour: 5, low at 2.
    let sell = |id: &'static str, n: i64| {
        let t = &t;
        async move {
            let (status, r) = call(
                t,
                "POST",
                "/api/v1/commerce/sales",
                json!({"order_id": id, "location": "lyon-bellecour", "channel": "web",
                       "lines": [{"sku": "SOCK-M", "quantity": n}]}),
            )
            .await;
            assert_eq!(status, 201, "{r}");
        }
    };
    sell("S-1", 2).await;
    sell("S-2", 1).await;
    let low = common::eventually(
        std::time::Duration::from_secs(20),
        "the shop is told",
        || async {
            let e = told(&t, "anonymous_id", "location:lyon-bellecour", "Low Stock").await;
            (!e.is_empty()).then_some(e)
        },
    )
    .await;
    assert_eq!(low[0]["properties"]["sku"], "SOCK-M", "{low:?}");
    assert_eq!(low[0]["properties"]["available"], 2, "{low:?}");
    assert_eq!(low[0]["properties"]["threshold"], 2, "{low:?}");
    // Still low: not told again; restocked, then low again: told again.
    sell("S-3", 1).await;
    let (status, _) = call(&t, "POST", "/api/v1/commerce/stock/movements",
        json!({"movements": [{"sku": "SOCK-M", "location": "lyon-bellecour", "delta": 9, "reason": "received"}]})).await;
    assert_eq!(status, 200);
    // Rising above the threshold re-armed it in the write itself: however soon the next
    // fall comes, it is told.
    sell("S-4", 8).await;
    common::eventually(std::time::Duration::from_secs(20), "told again", || async {
        (told(&t, "anonymous_id", "location:lyon-bellecour", "Low Stock")
            .await
            .len()
            == 2)
            .then_some(())
    })
    .await;
    t.stop().await;
}

const SHOP_JOURNEY: &str = r#"
id: cart
status: draft
entry: {event: Cart Viewed}
steps:
  - id: nudge
    send:
      channel: email
      subject: "At {{ shop.id }}"
      text: "{% for p in shop.in_stock %}{{ p.sku }}×{{ p.available_at_shop }} {% endfor %}| gone: {% for p in shop.out_of_stock %}{{ p.sku }} {% endfor %}"
"#;

/// A message leaves out what the customer's shop does not have: `shop.in_stock` is the
/// entry event's products there to buy at her preferred store, read when it is decided.
async fn a_message_leaves_out_what_her_shop_does_not_have(backend: Backend) {
    let t = start_on("commerce-shop-message", backend, |_| {}).await;
    shop_setup(&t).await;
    common::journeys::put_journey(&t, "cart", SHOP_JOURNEY).await;
    t.send(json!({"batch": [{"type": "identify", "userId": "u-eve",
        "traits": {"email": "eve@example.com", "preferred_store": "lyon-part-dieu"}}]}))
        .await;
    t.unified().await;
    let products =
        json!({"products": [{"sku": "SHOE-42"}, {"product_id": "LACE"}, {"sku": "SOCK-M"}]});
    let ask = || {
        call(
            &t,
            "POST",
            "/api/v1/journeys/cart/preview",
            json!({"step": "nudge", "identifier": {"type": "user_id", "value": "u-eve"}, "properties": products.clone()}),
        )
    };
    let (status, p) = ask().await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["subject"], "At lyon-part-dieu");
    assert_eq!(p["text"], "SHOE-42×1 | gone: LACE SOCK-M ", "{p}");
    // The last shoe goes to a cart: out of her shop's stock too.
    let (status, _) = call(&t, "POST", "/api/v1/commerce/reservations",
        json!({"reference": "cart-x", "lines": [{"sku": "SHOE-42", "location": "lyon-part-dieu", "quantity": 1}]})).await;
    assert_eq!(status, 201);
    let (_, p) = ask().await;
    assert_eq!(p["text"], "| gone: SHOE-42 LACE SOCK-M ", "{p}");
    t.stop().await;
}

on_each_store!(
    a_message_leaves_out_what_her_shop_does_not_have,
    back_in_stock_and_low_stock_are_told_once,
    offers_price_every_channel_alike_and_hold_their_limits,
    click_and_collect_from_order_to_return,
    stock_is_moved_counted_and_told_per_channel,
    the_last_unit_goes_to_one_buyer_only,
    a_sale_earns_once_and_a_return_anywhere_gives_back
);
