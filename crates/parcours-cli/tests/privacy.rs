//! Data subjects' requests on both stores.
//! - Erasure: a customer who browsed anonymously on two devices, signed in, bought online and
//!   in a shop with her loyalty card, asked for a stock alert, entered an audience, sent a
//!   broken event and had her data exported is erased; then every data file of the embedded
//!   store (the write-ahead logs included), or every table of PostgreSQL, is scanned for her
//!   email, phone, user id, anonymous ids, card and names: zero hits. Another customer's data
//!   is all there. Her events sent again are refused and counted.
//! - Access: the archive holds her profile, identifiers, consents and events as JSON and CSV.
//! - The deadline follows the ICO's calculation, an extension needs a reason, and the audit
//!   log holds every step without her personal data.

#[macro_use]
mod common;

use std::time::Duration;

use common::{call, eventually, start_on, Backend, TestNode, ADMIN};
use serde_json::{json, Value};

const EMAIL: &str = "zephyrine.quilleboeuf@example.org";
const PHONE: &str = "+33612345678";
const USER: &str = "usr-zq-8841";
const ANON_1: &str = "anon-zq-phone-5521";
const ANON_2: &str = "anon-zq-laptop-7730";
const CARD: &str = "CARD-ZQ-99017";
const FIRST: &str = "Zéphyrine";
const LAST: &str = "Quillebœuf";

fn needles() -> [&'static str; 8] {
    [EMAIL, PHONE, USER, ANON_1, ANON_2, CARD, FIRST, LAST]
}

/// Her life as a customer, and Bob's beside it.
async fn her_story(t: &TestNode) {
    let (s, e) = call(
        t,
        "PUT",
        "/api/v1/commerce/locations/lyon",
        json!({"name": "Lyon", "kind": "shop", "latitude": 45.76, "longitude": 4.83,
               "time_zone": "Europe/Paris", "channels": ["pos", "web"], "pickup": "local_stock"}),
    )
    .await;
    assert_eq!(s, 200, "{e}");
    for sku in ["SHOE", "LACE"] {
        let (s, e) = call(
            t,
            "PUT",
            &format!("/api/v1/commerce/items/{sku}"),
            json!({"name": sku, "prices": [{"currency": "EUR", "amount_minor": 5000}]}),
        )
        .await;
        assert_eq!(s, 200, "{e}");
    }
    let (s, m) = call(
        t,
        "POST",
        "/api/v1/commerce/stock/movements",
        json!({"movements": [{"sku": "SHOE", "location": "lyon", "delta": 5, "reason": "received"}]}),
    )
    .await;
    assert_eq!(s, 200, "{m}");
    let (s, e) = call(
        t,
        "PUT",
        "/api/v1/commerce/loyalty/program",
        json!({"points_per_unit": 1, "pending_days": 0}),
    )
    .await;
    assert_eq!(s, 200, "{e}");
    let (s, a) = call(
        t,
        "POST",
        "/api/v1/audiences",
        json!({"id": "shoppers", "name": "Shoppers", "definition": "did \"Product Viewed\""}),
    )
    .await;
    assert_eq!(s, 201, "{a}");

    let now = "2026-11-20T10:00:00Z";
    let r = t
        .send(json!({"batch": [
            // Browsing on her phone, then on her laptop, anonymously.
            {"type": "page", "anonymousId": ANON_1, "name": "Home", "timestamp": now},
            {"type": "track", "anonymousId": ANON_1, "event": "Product Viewed",
             "properties": {"sku": "SHOE"}, "timestamp": now},
            {"type": "track", "anonymousId": ANON_2, "event": "Product Viewed",
             "properties": {"sku": "LACE"}, "timestamp": now},
            // She signs in on both.
            {"type": "identify", "anonymousId": ANON_1, "userId": USER, "timestamp": now,
             "traits": {"email": EMAIL, "phone": PHONE, "firstName": FIRST, "lastName": LAST},
             "context": {"consent": {"categoryPreferences": {"marketing": true}}}},
            {"type": "track", "anonymousId": ANON_2, "event": "Signed In", "timestamp": now,
             "context": {"traits": {"email": EMAIL}}},
            {"type": "track", "userId": USER, "event": "Order Completed", "timestamp": now,
             "properties": {"order_id": "W-1", "revenue": 50, "currency": "EUR",
                            "shipping": {"name": format!("{FIRST} {LAST}"), "phone": PHONE}}},
            // Bob, who stays.
            {"type": "identify", "userId": "bob-1", "timestamp": now,
             "traits": {"email": "bob@example.net", "firstName": "Robert"}},
            {"type": "track", "userId": "bob-1", "event": "Product Viewed", "timestamp": now,
             "properties": {"sku": "SHOE"}},
        ]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.json());
    // A broken event of hers (a track with no event name) goes to the quarantine.
    let r = t
        .send(json!({"batch": [{"type": "track", "userId": USER,
            "properties": {"email": EMAIL}, "timestamp": now}]}))
        .await;
    assert_eq!(r.status, 200);
    // In the shop, with her card; then she asks to be told when laces come back.
    let (s, sale) = call(
        t,
        "POST",
        "/api/v1/commerce/sales",
        json!({"order_id": "LY-1", "location": "lyon",
               "customer": {"user_id": USER, "email": EMAIL, "loyalty_card": CARD},
               "lines": [{"sku": "SHOE", "quantity": 1}]}),
    )
    .await;
    assert_eq!(s, 201, "{sale}");
    let (s, alert) = call(
        t,
        "POST",
        "/api/v1/commerce/stock-alerts",
        json!({"sku": "LACE", "location": "lyon", "customer": {"user_id": USER, "email": EMAIL}}),
    )
    .await;
    assert_eq!(s, 201, "{alert}");
    t.unified().await;
    eventually(
        Duration::from_secs(60),
        "she enters the audience",
        || async {
            let (_, a) = t.get("/api/v1/audiences/shoppers").await;
            (a["size"] == 2 && a["computation"]["status"] == "ready").then_some(())
        },
    )
    .await;
}

/// Files a request and waits until it is done.
async fn request(t: &TestNode, kind: &str, id_type: &str, value: &str) -> Value {
    let (s, r) = call(
        t,
        "POST",
        "/api/v1/privacy/requests",
        json!({"kind": kind, "identifier": {"type": id_type, "value": value}}),
    )
    .await;
    assert_eq!(s, 202, "{r}");
    assert_eq!(r["state"], "received");
    let id = r["id"].as_str().unwrap().to_string();
    eventually(Duration::from_secs(120), "the request is done", || async {
        let (_, r) = t.get(&format!("/api/v1/privacy/requests/{id}")).await;
        assert_ne!(r["state"], "failed", "{r}");
        (r["state"] == "done").then_some(r)
    })
    .await
}

async fn hits(t: &TestNode, backend: Backend) -> Vec<String> {
    common::scan::hits(t, backend, &needles()).await
}

async fn erasure_leaves_no_trace(backend: Backend) {
    let t = start_on("privacy-erase", backend, |_| {}).await;
    her_story(&t).await;
    // The scan finds her before: it can see what it looks for.
    let before = hits(&t, backend).await;
    for n in needles() {
        assert!(
            before.iter().any(|h| h.starts_with(&format!("{n} in"))),
            "{n} not found before the erasure: {before:?}"
        );
    }
    let access = request(&t, "access", "phone", "+33 6 12 34 56 78").await;
    assert!(
        access["result"]["counts"]["events"].as_u64().unwrap_or(0) >= 6,
        "{access}"
    );
    let (_, bob_before) = t
        .get("/api/v1/profiles/lookup?type=user_id&value=bob-1")
        .await;

    let done = request(&t, "erasure", "email", &EMAIL.to_uppercase()).await;
    let result = &done["result"];
    assert!(
        result["deleted"]["events"].as_u64().unwrap_or(0) >= 6,
        "{done}"
    );
    assert_eq!(result["scrubbed"]["commerce_orders"], 1, "{done}");
    assert!(
        result["scrubbed"]["loyalty_entries"].as_u64().unwrap_or(0) >= 1,
        "{done}"
    );
    assert!(done.get("identifier").is_none(), "{done}");

    let left = hits(&t, backend).await;
    assert!(left.is_empty(), "her data is still stored: {left:?}");

    // She is gone from the API; Bob is all there.
    let (s, _) = t
        .get(&format!("/api/v1/profiles/lookup?type=email&value={EMAIL}"))
        .await;
    assert_eq!(s, 404);
    let (_, bob) = t
        .get("/api/v1/profiles/lookup?type=user_id&value=bob-1")
        .await;
    assert_eq!(bob["events"], bob_before["events"], "{bob}");
    // The order stays for the accounts, without her.
    let (s, order) = t.get("/api/v1/commerce/orders/LY-1").await;
    assert_eq!(s, 200, "{order}");
    assert_eq!(order["total_minor"], 5000, "{order}");

    // Her events sent again are refused (and counted); Bob's are taken.
    let r = t
        .send(json!({"batch": [
            {"type": "track", "userId": USER, "event": "Product Viewed"},
            {"type": "page", "anonymousId": ANON_2, "name": "Home"},
            {"type": "identify", "anonymousId": "a-new-device", "traits": {"email": EMAIL}},
            {"type": "track", "userId": "bob-1", "event": "Product Viewed"},
        ]}))
        .await;
    assert_eq!(r.status, 200);
    t.unified().await;
    let (_, s) = t.get("/api/v1/privacy/suppressed").await;
    assert_eq!(s["refused_events"], 3, "{s}");
    assert!(s["entries"].as_u64().unwrap() >= 5, "{s}");
    let (_, bob) = t
        .get("/api/v1/profiles/lookup?type=user_id&value=bob-1")
        .await;
    assert_eq!(
        bob["events"].as_u64(),
        bob_before["events"].as_u64().map(|n| n + 1)
    );
    let left = hits(&t, backend).await;
    assert!(left.is_empty(), "her events came back: {left:?}");

    // The audit log proves both requests, without her.
    let r = t.client.get("/api/v1/audit/export", ADMIN).await.unwrap();
    let log = String::from_utf8_lossy(&r.body).to_string();
    for action in [
        "privacy.access.received",
        "privacy.access.done",
        "privacy.erasure.received",
        "privacy.erasure.done",
    ] {
        assert!(log.contains(action), "{action} missing: {log}");
    }
    for n in needles() {
        assert!(!log.contains(n), "{n} in the audit log");
    }
    t.stop().await;
}

async fn access_archive_and_deadlines(backend: Backend) {
    let t = start_on("privacy-access", backend, |_| {}).await;
    her_story(&t).await;
    let done = request(&t, "access", "user_id", USER).await;
    let archive = done["archive"].as_str().unwrap().to_string();
    let r = t.client.get(&archive, ADMIN).await.unwrap();
    assert_eq!(r.status, 200);
    let zip = r.body.to_vec();
    assert_eq!(&zip[..4], b"PK\x03\x04");
    let text = String::from_utf8_lossy(&zip).to_string();
    for file in [
        "profile.json",
        "identifiers.json",
        "identifiers.csv",
        "events.json",
        "events.csv",
        "consents.json",
        "merges.json",
        "audience_memberships.json",
        "orders.json",
        "loyalty.json",
    ] {
        assert!(text.contains(file), "{file} missing");
    }
    for n in needles() {
        assert!(text.contains(n), "{n} missing from her archive");
    }
    assert!(!text.contains("bob@example.net"), "Bob is in her archive");
    assert_eq!(done["result"]["counts"]["orders"], 1, "{done}");
    assert!(
        done["result"]["counts"]["loyalty"].as_u64().unwrap() >= 1,
        "{done}"
    );
    assert!(
        done["result"]["counts"]["consents"].as_u64().unwrap() >= 1,
        "{done}"
    );

    // The deadline: received today, one month by the ICO's calculation.
    let received =
        parcours_core::time::parse_timestamp(done["received_at"].as_str().unwrap()).unwrap();
    let day = parcours_core::privacy::day_of(received);
    assert_eq!(
        done["deadline"],
        parcours_core::privacy::deadline(day, 1, &[]).to_string()
    );
    // Extensions: a reason is needed, two months at most, once.
    let id = done["id"].as_str().unwrap();
    let (_, open) = call(
        &t,
        "POST",
        "/api/v1/privacy/requests",
        json!({"kind": "access", "identifier": {"type": "email", "value": EMAIL}}),
    )
    .await;
    let open_id = open["id"].as_str().unwrap();
    let extend = |id: String, body: Value| {
        let t = &t;
        async move {
            call(
                t,
                "POST",
                &format!("/api/v1/privacy/requests/{id}/extend"),
                body,
            )
            .await
        }
    };
    let (s, e) = extend(id.to_string(), json!({"months": 2, "reason": "many"})).await;
    assert_eq!((s, e["code"].as_str()), (409, Some("request_done")), "{e}");
    for bad in [json!({"months": 2}), json!({"months": 3, "reason": "x"})] {
        let (s, e) = extend(open_id.to_string(), bad).await;
        assert_eq!(
            (s, e["code"].as_str()),
            (400, Some("invalid_extension")),
            "{e}"
        );
    }
    // A request already done cannot be extended, so the open one may be done by now: it is
    // extended only if it is still open.
    let (s, e) = extend(
        open_id.to_string(),
        json!({"months": 2, "reason": "she asked for ten years of data"}),
    )
    .await;
    if s == 200 {
        assert_eq!(
            e["deadline"],
            parcours_core::privacy::deadline(day, 3, &[]).to_string()
        );
        assert_eq!(e["extension_reason"], "she asked for ten years of data");
    } else {
        assert_eq!(e["code"], "request_done", "{e}");
    }
    // Refusals with codes.
    for (body, code) in [
        (
            json!({"kind": "forget", "identifier": {"type": "email", "value": EMAIL}}),
            "invalid_request_kind",
        ),
        (json!({"kind": "access"}), "invalid_identifier"),
        (
            json!({"kind": "access", "identifier": {"type": "email", "value": "not an email"}}),
            "invalid_identifier",
        ),
    ] {
        let (s, e) = call(&t, "POST", "/api/v1/privacy/requests", body).await;
        assert_eq!((s, e["code"].as_str()), (400, Some(code)), "{e}");
    }
    let (s, _) = t.get("/api/v1/privacy/requests/pr_nope").await;
    assert_eq!(s, 404);
    t.stop().await;
}

/// Per-workspace settings: the IP address and precise location an event keeps at ingest,
/// and how long each kind of event stays (the janitor's retention, run here with a clock
/// days ahead).
async fn retention_and_what_ingest_keeps(backend: Backend) {
    let t = start_on("privacy-retention", backend, |_| {}).await;
    let (s, d) = t.get("/api/v1/privacy/settings").await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["ip_addresses"], "truncate", "{d}");
    assert_eq!(d["retention"]["message_bodies_days"], 90, "{d}");
    for bad in [
        json!({"retention": {"events_days": 0}}),
        json!({"retention": {"events_by_type": {"click": 3}}}),
        json!({"ip_adresses": "keep"}),
    ] {
        let (s, e) = call(&t, "PUT", "/api/v1/privacy/settings", bad).await;
        assert_eq!(
            (s, e["code"].as_str()),
            (400, Some("invalid_privacy_settings")),
            "{e}"
        );
    }
    let (s, e) = call(
        &t,
        "PUT",
        "/api/v1/privacy/settings",
        json!({"retention": {"events_days": 30, "events_by_name": {"Product Viewed": 7},
               "events_by_type": {"page": 3}}}),
    )
    .await;
    assert_eq!(s, 200, "{e}");
    let location = json!({"latitude": 45.764, "longitude": 4.8357, "city": "Lyon"});
    let r = t
        .send(json!({"batch": [
            {"type": "track", "userId": "u-1", "event": "Product Viewed", "messageId": "pv",
             "context": {"ip": "203.0.113.77", "location": location}},
            {"type": "track", "userId": "u-1", "event": "Order Completed", "messageId": "oc",
             "context": {"ip": "2001:db8:85a3:8d3:1319:8a2e:370:7348", "location": location,
                         "consent": {"categoryPreferences": {"location": true}}}},
            {"type": "page", "userId": "u-1", "name": "Home", "messageId": "pg"},
            {"type": "identify", "userId": "u-1", "traits": {"plan": "gold"}, "messageId": "id"},
        ]}))
        .await;
    assert_eq!(r.status, 200);
    let body = |mid: &'static str| {
        let store = t.store.clone();
        let ws = t.workspace.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                store
                    .event_by_message_id(&ws, mid)
                    .unwrap()
                    .map(|e| serde_json::from_str::<Value>(&e.body).unwrap())
            })
            .await
            .unwrap()
        }
    };
    let pv = body("pv").await.unwrap();
    assert_eq!(pv["context"]["ip"], "203.0.113.0", "{pv}");
    assert_eq!(pv["context"]["location"], json!({"city": "Lyon"}), "{pv}");
    let oc = body("oc").await.unwrap();
    assert_eq!(oc["context"]["ip"], "2001:db8:85a3::", "{oc}");
    assert_eq!(
        oc["context"]["location"], location,
        "with her consent: {oc}"
    );

    let store = t.store.clone();
    let ws = t.workspace.clone();
    let now = parcours_core::time::Clock::now(&parcours_engine::SystemClock);
    let day = parcours_core::time::DAY;
    let retention = |days: i64| {
        let store = store.clone();
        let ws = ws.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                parcours_service::privacy::apply_retention(store.as_ref(), &ws, now + days * day)
                    .unwrap()
                    .events()
            })
            .await
            .unwrap()
        }
    };
    assert_eq!(
        retention(10).await,
        2,
        "the product view (7 days) and the page (3 days)"
    );
    assert!(body("pv").await.is_none() && body("pg").await.is_none());
    assert!(body("oc").await.is_some() && body("id").await.is_some());
    let in_forty_days = retention(40).await;
    assert_eq!(in_forty_days, 2, "the rest, after 30 days");
    let r = t.client.get("/api/v1/audit/export", ADMIN).await.unwrap();
    let log = String::from_utf8_lossy(&r.body).to_string();
    assert_eq!(log.matches("privacy.retention.applied").count(), 2, "{log}");
    assert!(log.contains("privacy.settings.changed"), "{log}");
    // A change of configuration through the API is in the log, with who made it; a refused
    // one is not.
    let (s, a) = call(
        &t,
        "POST",
        "/api/v1/audiences",
        json!({"id": "buyers", "name": "Buyers", "definition": "did \"Order Completed\""}),
    )
    .await;
    assert_eq!(s, 201, "{a}");
    let (s, _) = call(
        &t,
        "POST",
        "/api/v1/audiences",
        json!({"id": "broken", "name": "Broken", "definition": "did ("}),
    )
    .await;
    assert_eq!(s, 400);
    let (_, audit) = t.get("/api/v1/audit?limit=1000").await;
    let entries = audit["entries"].as_array().unwrap();
    let made: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "api.post" && e["target"] == "audiences")
        .collect();
    assert_eq!(made.len(), 1, "{audit}");
    assert!(!made[0]["actor"].as_str().unwrap().is_empty(), "{audit}");
    // A token that revokes itself is in the log under its name (it no longer works after).
    let (s, made) = call(
        &t,
        "POST",
        "/api/v1/tokens",
        json!({"name": "leaving-ops", "role": "admin"}),
    )
    .await;
    assert_eq!(s, 201, "{made}");
    let (secret, id) = (
        made["secret"].as_str().unwrap(),
        made["token"]["id"].as_str().unwrap(),
    );
    let auth = format!("Bearer {secret}");
    let gone = t
        .client
        .request(
            "DELETE".parse().unwrap(),
            &format!("/api/v1/tokens/{id}"),
            &[("authorization", &auth)],
            Vec::new(),
        )
        .await
        .unwrap();
    assert!((200..300).contains(&gone.status), "{}", gone.status);
    let (_, audit) = t.get("/api/v1/audit?limit=1000").await;
    let revoked: Vec<&Value> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "api.delete" && e["target"] == format!("tokens/{id}"))
        .collect();
    assert_eq!(revoked.len(), 1, "{audit}");
    assert_eq!(revoked[0]["actor"], "leaving-ops", "{audit}");
    let (s, e) = t.get("/api/v1/audit?limit=0").await;
    assert_eq!(
        (s, e["code"].as_str()),
        (400, Some("invalid_parameter")),
        "{e}"
    );
    // The log goes on: a new event after every event went is read and unified.
    let r = t
        .send(json!({"batch": [{"type": "track", "userId": "u-2", "event": "Signed Up"}]}))
        .await;
    assert_eq!(r.status, 200);
    t.unified().await;
    let (s, p) = t
        .get("/api/v1/profiles/lookup?type=user_id&value=u-2")
        .await;
    assert_eq!(s, 200, "{p}");
    t.stop().await;
}

/// The hosted preference page: a signed link an agent gives (or a message carries), a page
/// in her language with her consents ticked as they stand, and a choice recorded with its
/// proof. Withdrawing takes one click.
async fn preference_page_records_her_choice(backend: Backend) {
    let t = start_on("privacy-preferences", backend, |c| {
        c.channels.public_url = Some("https://prefs.shop.example/".into());
    })
    .await;
    let r = t
        .send(json!({"batch": [{"type": "identify", "userId": "u-pref", "traits": {"email": "pref@example.org"},
            "context": {"consent": {"categoryPreferences": {"marketing": true}}}}]}))
        .await;
    assert_eq!(r.status, 200);
    t.unified().await;
    let (s, p) = t
        .get("/api/v1/profiles/lookup?type=user_id&value=u-pref")
        .await;
    assert_eq!(s, 200, "{p}");
    let id = p["id"].as_str().unwrap().to_string();
    let (s, link) = t
        .get(&format!("/api/v1/profiles/{id}/preferences-link"))
        .await;
    assert_eq!(s, 200, "{link}");
    let path = link["path"].as_str().unwrap().to_string();
    assert_eq!(
        link["url"].as_str().unwrap(),
        format!("https://prefs.shop.example{path}")
    );
    assert!(!path.contains("pref@example.org") && !path.contains("u-pref"));
    let (s, _) = t.get("/api/v1/profiles/nope/preferences-link").await;
    assert_eq!(s, 404);

    let page = |path: String, lang: &'static str| {
        let t = &t;
        async move {
            let r = t
                .client
                .request(
                    "GET".parse().unwrap(),
                    &path,
                    &[("accept-language", lang)],
                    String::new(),
                )
                .await
                .unwrap();
            (r.status, String::from_utf8_lossy(&r.body).to_string())
        }
    };
    let (s, html) = page(path.clone(), "fr-FR,fr;q=0.9").await;
    assert_eq!(s, 200, "{html}");
    assert!(html.contains("Vos préférences"), "{html}");
    assert!(
        html.contains("name=\"marketing:email\" value=\"yes\" checked"),
        "her consent to marketing is ticked: {html}"
    );
    let (s, html) = page(format!("{path}?lang=en"), "fr").await;
    assert_eq!(s, 200);
    assert!(html.contains("Your preferences"), "{html}");
    // A link Parcours did not sign is not found.
    let forged = format!(
        "{}{}",
        &path[..path.len() - 1],
        if path.ends_with('0') { "1" } else { "0" }
    );
    for bad in [forged, path.replace(&id, "p_other"), format!("{path}00")] {
        let (s, html) = page(bad, "en").await;
        assert_eq!(s, 404, "{html}");
        assert!(!html.contains("checkbox"));
    }

    // She keeps SMS and stops email (and the rest), in French.
    let r = t
        .client
        .request(
            "POST".parse().unwrap(),
            &path,
            &[("content-type", "application/x-www-form-urlencoded")],
            "lang=fr&marketing%3Asms=yes",
        )
        .await
        .unwrap();
    let html = String::from_utf8_lossy(&r.body).to_string();
    assert_eq!(r.status, 200, "{html}");
    assert!(html.contains("Vos choix sont enregistrés"), "{html}");
    t.unified().await;
    let consent = |channel: &'static str| {
        let t = &t;
        let id = id.clone();
        async move {
            let (s, c) = t
                .get(&format!(
                    "/api/v1/profiles/{id}/consent?purpose=marketing&channel={channel}"
                ))
                .await;
            assert_eq!(s, 200, "{c}");
            c
        }
    };
    let email = consent("email").await;
    assert_eq!(email["state"], "withdrawn", "{email}");
    assert_eq!(
        email["answered_by"]["source_id"], "parcours:preferences",
        "{email}"
    );
    assert_eq!(
        email["answered_by"]["text_version"], "preference-page/1/fr",
        "{email}"
    );
    assert_eq!(consent("sms").await["state"], "granted");
    assert_eq!(consent("ads").await["state"], "withdrawn");
    // The page shows what she chose.
    let (_, html) = page(path.clone(), "en").await;
    assert!(
        html.contains("name=\"marketing:sms\" value=\"yes\" checked"),
        "{html}"
    );
    assert!(
        !html.contains("name=\"marketing:email\" value=\"yes\" checked"),
        "{html}"
    );
    t.stop().await;
}

on_each_store!(
    preference_page_records_her_choice,
    erasure_leaves_no_trace,
    access_archive_and_deadlines,
    retention_and_what_ingest_keeps
);
