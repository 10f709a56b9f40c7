//! Profiles, audiences and consent you can trust, through the real HTTP path on both stores:
//! a backdated event keeps the profile's id and its single membership, a replay keeps every
//! id, an undo takes the other person's phone away, and consent answers granted, withdrawn or
//! unknown with a fall-back to the purpose and the workspace's default.

#[macro_use]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{eventually, start_on, Backend, TestNode, ADMIN};
use parcours_core::Identifier;
use serde_json::{json, Value};

async fn create_audience(t: &TestNode, id: &str, definition: &str) {
    let body = json!({"id": id, "name": id, "definition": definition});
    let r = t
        .client
        .post("/api/v1/audiences", ADMIN, body.to_string())
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.json());
}

/// The members of an audience once it is computed and the processor caught up with `want`.
async fn members_become(t: &TestNode, id: &str, want: &BTreeSet<String>) {
    eventually(
        Duration::from_secs(30),
        &format!("{id} holds {want:?}"),
        || async {
            let (_, a) = t.get(&format!("/api/v1/audiences/{id}/members")).await;
            let got: BTreeSet<String> = a["members"]
                .as_array()?
                .iter()
                .map(|m| m["profile_id"].as_str().unwrap().to_string())
                .collect();
            (&got == want).then_some(())
        },
    )
    .await
}

async fn profile_id(t: &TestNode, kind: &str, value: &str) -> String {
    t.profile_of(ADMIN, kind, value).await.expect("a profile")["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The answer to "marketing by email?" for a profile: (state, may a send go), and the body.
async fn email_consent(t: &TestNode, profile: &str) -> ((String, bool), Value) {
    let (status, a) = t
        .get(&format!(
            "/api/v1/profiles/{profile}/consent?purpose=marketing&channel=email"
        ))
        .await;
    assert_eq!(status, 200, "{a}");
    let answer = (
        a["state"].as_str().unwrap().to_string(),
        a["granted"].as_bool().unwrap(),
    );
    (answer, a)
}

/// Sets one workspace rule through the API.
async fn set_rule(t: &TestNode, rule: &str, value: Value) {
    let (_, ws) = t.get("/api/v1/workspace").await;
    let mut rules = ws["identity_rules"].clone();
    rules[rule] = value;
    let r = t
        .client
        .put("/api/v1/workspace/identity-rules", ADMIN, rules.to_string())
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.json());
}

fn ids(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Every membership the change log (what destinations receive) still says is held.
fn net_changes(t: &TestNode, audience: &str) -> BTreeSet<String> {
    let mut net = BTreeSet::new();
    for c in t.store.changes_after(0, 100_000).unwrap() {
        if c.audience_id == audience {
            if c.entered {
                net.insert(c.profile_id);
            } else {
                net.remove(&c.profile_id);
            }
        }
    }
    net
}

async fn a_backdated_identify_keeps_the_id_and_one_membership(backend: Backend) {
    let t = start_on("backdated", backend, |_| {}).await;
    create_audience(
        &t,
        "gold_buyers",
        r#"trait plan = "gold" and did "Order Completed" where total >= 100"#,
    )
    .await;
    for (who, plan) in [("ana", "gold"), ("ben", "gold")] {
        t.send(json!({"batch": [
            {"type": "identify", "userId": who, "traits": {"plan": plan}},
            {"type": "track", "userId": who, "event": "Order Completed", "properties": {"total": 120}},
        ]}))
        .await;
    }
    t.unified().await;
    let (ana, ben) = (
        profile_id(&t, "user_id", "ana").await,
        profile_id(&t, "user_id", "ben").await,
    );
    members_become(&t, "gold_buyers", &ids(&[&ana, &ben])).await;
    // A backdated identify for Ana (an import of her sign-up) re-derives her profile.
    t.send(
        json!({"batch": [{"type": "identify", "userId": "ana", "timestamp": "2026-01-01T00:00:00Z",
        "traits": {"email": "ana@x.io", "plan": "silver"}}]}),
    )
    .await;
    t.unified().await;
    assert_eq!(
        profile_id(&t, "user_id", "ana").await,
        ana,
        "her id is kept"
    );
    assert_eq!(profile_id(&t, "email", "ana@x.io").await, ana);
    // Her later "gold" wins over the backdated "silver": she is still a member, once.
    members_become(&t, "gold_buyers", &ids(&[&ana, &ben])).await;
    let (_, a) = t.get("/api/v1/audiences/gold_buyers").await;
    assert_eq!(a["size"], 2, "{a}");
    // What destinations received nets to the same two ids.
    eventually(
        Duration::from_secs(10),
        "the change log settles",
        || async { (net_changes(&t, "gold_buyers") == ids(&[&ana, &ben])).then_some(()) },
    )
    .await;
    // A replay gives every profile the same id.
    let mut t = t;
    let node = t.node.take().unwrap();
    node.stop().await;
    parcours_engine::replay(t.store.as_ref(), 0, 3, &mut |_, _| {}).unwrap();
    for (who, id) in [("ana", &ana), ("ben", &ben)] {
        let found = t
            .store
            .lookup(&t.workspace, &Identifier::new("user_id", who))
            .unwrap();
        assert_eq!(
            found.as_ref(),
            Some(id),
            "{who} keeps her id after a replay"
        );
    }
    t.stop().await;
}

async fn an_undo_takes_the_other_persons_phone_away(backend: Backend) {
    let t = start_on("undo-phone", backend, |_| {}).await;
    create_audience(&t, "named", "trait first_name exists").await;
    // Amy on the web, Bob in the app; a call centre event carries Amy's email and Bob's phone.
    t.send(json!({"batch": [
        {"type": "identify", "anonymousId": "web-amy", "timestamp": "2026-03-01T10:00:00Z",
         "traits": {"email": "amy@x.io", "first_name": "Amy"}},
        {"type": "identify", "anonymousId": "app-bob", "timestamp": "2026-03-02T10:00:00Z",
         "traits": {"phone": "+33612345678", "first_name": "Bob"}},
    ]}))
    .await;
    t.unified().await;
    let (amy_before, bob_before) = (
        profile_id(&t, "email", "amy@x.io").await,
        profile_id(&t, "phone", "%2B33612345678").await,
    );
    members_become(&t, "named", &ids(&[&amy_before, &bob_before])).await;
    t.send(json!({"batch": [
        {"type": "track", "anonymousId": "call-1", "event": "Call Completed", "timestamp": "2026-03-03T10:00:00Z",
         "context": {"traits": {"email": "amy@x.io", "phone": "+33612345678"}}},
    ]}))
    .await;
    t.unified().await;
    let merged = profile_id(&t, "email", "amy@x.io").await;
    assert_eq!(profile_id(&t, "phone", "%2B33612345678").await, merged);
    assert_eq!(merged, amy_before, "the profile first seen keeps its id");
    // Bob's id left the audience (destinations get its removal), and its retirement is
    // published with the profile that took over.
    members_become(&t, "named", &ids(&[&merged])).await;
    eventually(
        Duration::from_secs(10),
        "the retirement is published",
        || async {
            t.store
                .events_after(0, 10_000)
                .unwrap()
                .into_iter()
                .filter(|e| e.event.as_deref() == Some("Profile Retired"))
                .map(|e| serde_json::from_str::<Value>(&e.body).unwrap()["properties"].clone())
                .find(|p| p["profile_id"] == json!(bob_before))
                .filter(|p| p["successor_profile_id"] == json!(merged))
        },
    )
    .await;
    let (_, redirected) = t.get(&format!("/api/v1/profiles/{bob_before}")).await;
    assert_eq!(redirected["id"], json!(merged), "the old id redirects");
    let (_, merges) = t.get(&format!("/api/v1/profiles/{merged}/merges")).await;
    let merge = merges["merges"][0]["id"].as_i64().expect("one merge");
    let r = t
        .client
        .post(&format!("/api/v1/merges/{merge}/undo"), ADMIN, "")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.json());
    let amy = profile_id(&t, "email", "amy@x.io").await;
    let bob = profile_id(&t, "phone", "%2B33612345678").await;
    assert_ne!(amy, bob);
    // Each gets their own id back, and their place in the audience.
    assert_eq!((&amy, &bob), (&amy_before, &bob_before));
    members_become(&t, "named", &ids(&[&amy, &bob])).await;
    let (_, amy_profile) = t.get(&format!("/api/v1/profiles/{amy}")).await;
    let (_, bob_profile) = t.get(&format!("/api/v1/profiles/{bob}")).await;
    assert_eq!(amy_profile["traits"]["first_name"], "Amy", "{amy_profile}");
    assert!(
        amy_profile["traits"].get("phone").is_none(),
        "Amy keeps nothing of Bob's: {amy_profile}"
    );
    assert_eq!(
        bob_profile["traits"]["phone"], "+33612345678",
        "{bob_profile}"
    );
    assert_eq!(bob_profile["traits"]["first_name"], "Bob");
    t.stop().await;
}

async fn consent_is_granted_withdrawn_or_unknown(backend: Backend) {
    let t = start_on("consent", backend, |_| {}).await;
    let consent = |user: &str, prefs: Value| {
        json!({"type": "track", "userId": user, "event": "Consent Preference Updated",
               "timestamp": "2026-03-01T10:00:00Z", "properties": {"categoryPreferences": prefs}})
    };
    t.send(json!({"batch": [
        consent("purpose", json!({"marketing": true})),
        consent("channel", json!({"marketing:email": false})),
        {"type": "identify", "userId": "never", "traits": {"email": "never@x.io"}},
        consent("unsubscribed", json!({"marketing": true})),
        {"type": "track", "userId": "unsubscribed", "event": "Unsubscribed",
         "timestamp": "2026-03-02T10:00:00Z", "properties": {"email_id": "e1"}},
        consent("texted", json!({"marketing": true})),
        {"type": "track", "userId": "texted", "event": "SMS Received",
         "timestamp": "2026-03-02T10:00:00Z", "properties": {"body": "STOP"}},
    ]}))
    .await;
    t.unified().await;
    let mut who = BTreeMap::new();
    for u in ["purpose", "channel", "never", "unsubscribed", "texted"] {
        who.insert(profile_id(&t, "user_id", u).await, u);
    }
    let id = |u: &str| who.iter().find(|(_, v)| **v == u).unwrap().0.clone();
    let set = |users: &[&str]| users.iter().map(|u| id(u)).collect::<BTreeSet<_>>();
    for (audience, definition, members) in [
        // The docs' own example: a channel question falls back to the purpose.
        (
            "email_ok",
            "consent marketing:email granted",
            vec!["purpose", "texted"],
        ),
        (
            "email_no",
            "consent marketing:email withdrawn",
            vec!["channel", "unsubscribed"],
        ),
        (
            "email_unknown",
            "consent marketing:email unknown",
            vec!["never"],
        ),
        // Only those who withdrew, not everyone never asked.
        ("marketing_no", "consent marketing withdrawn", vec![]),
        ("sms_no", "consent marketing:sms withdrawn", vec!["texted"]),
        (
            "sms_ok",
            "consent marketing:sms granted",
            vec!["purpose", "unsubscribed"],
        ),
    ] {
        create_audience(&t, audience, definition).await;
        members_become(&t, audience, &set(&members)).await;
    }
    // The API answers the question as an audience or a send would, with the record.
    let (answer, a) = email_consent(&t, &id("purpose")).await;
    assert_eq!(answer, ("granted".into(), true), "{a}");
    assert_eq!(
        a["answered_by"]["key"], "marketing",
        "falls back to the purpose: {a}"
    );
    let (answer, a) = email_consent(&t, &id("never")).await;
    assert_eq!(answer, ("unknown".into(), false), "{a}");
    assert!(a["answered_by"].is_null(), "{a}");
    let (status, e) = t
        .get(&format!("/api/v1/profiles/{}/consent", id("never")))
        .await;
    assert_eq!(
        (status, e["code"].as_str()),
        (400, Some("missing_parameter"))
    );
    // The proof of a withdrawal says how it was given.
    let (_, p) = t
        .get(&format!("/api/v1/profiles/{}", id("unsubscribed")))
        .await;
    assert_eq!(p["consent"]["marketing:email"]["granted"], false, "{p}");
    assert_eq!(
        p["consent"]["marketing:email"]["method"], "unsubscribe",
        "{p}"
    );
    let (_, p) = t.get(&format!("/api/v1/profiles/{}", id("texted"))).await;
    assert_eq!(
        p["consent"]["marketing:sms"]["method"], "sms_keyword",
        "{p}"
    );
    // A workspace that counts never asked as granted (an opt-out regime).
    set_rule(&t, "unknown_consent", json!("granted")).await;
    members_become(&t, "email_ok", &set(&["purpose", "texted", "never"])).await;
    let (answer, a) = email_consent(&t, &id("never")).await;
    assert_eq!(answer, ("unknown".into(), true), "{a}");
    members_become(&t, "email_unknown", &set(&["never"])).await;
    t.stop().await;
}

async fn events_are_filtered_by_channel(backend: Backend) {
    let t = start_on("channels", backend, |_| {}).await;
    let ev = |user: &str, event: &str, channel: &str| json!({"type": "track", "userId": user, "event": event, "context": {"channel": channel}});
    t.send(json!({"batch": [
        // Left the cart online, bought in a shop.
        ev("ines", "Product Added", "web"), ev("ines", "Order Completed", "store"),
        // Bought online.
        ev("jade", "Product Added", "web"), ev("jade", "Order Completed", "web"),
        // Bought in the app.
        ev("kim", "Order Completed", "ios"),
    ]}))
    .await;
    t.unified().await;
    let ines = profile_id(&t, "user_id", "ines").await;
    let kim = profile_id(&t, "user_id", "kim").await;
    create_audience(
        &t,
        "web_cart_store_order",
        r#"did "Product Added" on web within 30 days and did "Order Completed" on store within 30 days"#,
    )
    .await;
    create_audience(&t, "app_buyers", r#"did "Order Completed" on app"#).await;
    members_become(&t, "web_cart_store_order", &ids(&[&ines])).await;
    members_become(&t, "app_buyers", &ids(&[&kim])).await;
    // A filter on `channel` would read a property and silently match nothing: refused.
    let body = json!({"id": "wrong", "name": "wrong",
        "definition": r#"did "Order Completed" where channel = "store""#});
    let r = t
        .client
        .post("/api/v1/audiences", ADMIN, body.to_string())
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    let e = r.json();
    assert_eq!(e["code"], "invalid_audience_syntax", "{e}");
    assert!(e["message"].as_str().unwrap().contains("on store"), "{e}");
    t.stop().await;
}

async fn since_is_when_she_qualified(backend: Backend) {
    let t = start_on("since", backend, |_| {}).await;
    let order = |mid: &str, ts: &str, total: u32| {
        json!({"type": "track", "userId": "vera", "event": "Order Completed", "messageId": mid,
               "timestamp": ts, "properties": {"total": total}})
    };
    t.send(json!({"batch": [
        order("o1", "2026-02-01T10:00:00Z", 200),
        order("o2", "2026-03-01T10:00:00Z", 350),
        order("o3", "2026-04-01T10:00:00Z", 100),
    ]}))
    .await;
    t.unified().await;
    let vera = profile_id(&t, "user_id", "vera").await;
    // Computed long after: she crossed 500 with her second order.
    create_audience(&t, "vip", r#"did "Order Completed" sum of total >= 500"#).await;
    members_become(&t, "vip", &ids(&[&vera])).await;
    let (_, m) = t.get("/api/v1/audiences/vip/members").await;
    assert_eq!(m["members"][0]["since"], "2026-03-01T10:00:00.000Z", "{m}");
    let csv = t
        .client
        .get("/api/v1/audiences/vip/export?format=csv", ADMIN)
        .await
        .unwrap();
    let body = String::from_utf8_lossy(&csv.body).to_string();
    assert!(body.contains("2026-03-01T10:00:00.000Z"), "{body}");
    t.stop().await;
}

async fn ad_exports_read_segment_address_traits(backend: Backend) {
    let t = start_on("address", backend, |_| {}).await;
    t.send(json!({"batch": [
        {"type": "identify", "userId": "chloe", "traits": {
            "email": "  Chloe.Rousseau@Icloud.Example", "firstName": "Chloé", "lastName": "Rousseau",
            "address": {"city": "Saint-Étienne", "postal_code": "42 000", "country": "FR", "state": "ARA"},
            "birthday": "1990-05-17", "gender": "female"},
         "context": {"consent": {"categoryPreferences": {"marketing": true}}}},
        {"type": "track", "userId": "chloe", "event": "Order Completed"},
        // A till receipt of someone unknown: nothing an ad platform could match.
        {"type": "track", "anonymousId": "till-42", "event": "Order Completed"},
        // A buyer who refused advertising: never in an ad platform's list.
        {"type": "identify", "userId": "noah", "traits": {"email": "noah@example.com"},
         "context": {"consent": {"categoryPreferences": {"marketing": true, "marketing:ads": false}}}},
        {"type": "track", "userId": "noah", "event": "Order Completed"},
    ]}))
    .await;
    t.unified().await;
    let chloe = profile_id(&t, "user_id", "chloe").await;
    let till = profile_id(&t, "anonymous_id", "till-42").await;
    let noah = profile_id(&t, "user_id", "noah").await;
    create_audience(&t, "buyers", r#"did "Order Completed""#).await;
    members_become(&t, "buyers", &ids(&[&chloe, &till, &noah])).await;
    let r = t
        .client
        .get("/api/v1/audiences/buyers/export?format=meta", ADMIN)
        .await
        .unwrap();
    let body = String::from_utf8_lossy(&r.body).to_string();
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(
        lines[0],
        "email,phone,fn,ln,ct,st,zip,country,doby,dobm,dobd,gen"
    );
    assert_eq!(
        lines.len(),
        2,
        "no row without an email or a phone, none without consent to ads: {body}"
    );
    assert!(!body.contains(&parcours_core::adhash::sha256_hex("noah@example.com")));
    let m: Vec<&str> = lines[1].split(',').collect();
    let h = parcours_core::adhash::sha256_hex;
    assert_eq!(m[0], h("chloe.rousseau@icloud.example"));
    assert_eq!(m[2], h("chloé"));
    assert_eq!(m[3], h("rousseau"));
    assert_eq!(m[4], h("saintetienne"), "Meta's city is a-z only");
    assert_eq!(m[5], "", "a state that is not two letters is left out");
    assert_eq!(m[6], h("42000"));
    assert_eq!(m[7], h("fr"));
    assert_eq!(
        (m[8], m[9], m[10]),
        (h("1990").as_str(), h("05").as_str(), h("17").as_str())
    );
    assert_eq!(m[11], h("f"));
    let r = t
        .client
        .get("/api/v1/audiences/buyers/export?format=google", ADMIN)
        .await
        .unwrap();
    let body = String::from_utf8_lossy(&r.body).to_string();
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.len(), 2, "{body}");
    let g: Vec<&str> = lines[1].split(',').collect();
    assert_eq!((g[4], g[5]), ("FR", "42 000"), "{body}");
    t.stop().await;
}

async fn anonymous_receipts_are_not_scored_as_customers(backend: Backend) {
    let t = start_on("anonymous", backend, |_| {}).await;
    let mut batch = Vec::new();
    for i in 0..5 {
        // Known customers, and anonymous till receipts that spend more.
        batch.push(
            json!({"type": "track", "userId": format!("k{i}"), "event": "Order Completed",
            "properties": {"revenue": 10 * (i + 1)}}),
        );
        batch.push(
            json!({"type": "track", "anonymousId": format!("till-{i}"), "event": "Order Completed",
            "context": {"channel": "store"}, "properties": {"revenue": 1000}}),
        );
    }
    t.send(json!({"batch": batch})).await;
    t.unified().await;
    for body in [
        json!({"id": "rfm", "kind": "rfm", "event": "Order Completed", "property": "revenue"}),
        json!({"id": "stage", "kind": "lifecycle", "event": "Order Completed"}),
        json!({"id": "stage_all", "kind": "lifecycle", "event": "Order Completed", "include_anonymous": true}),
    ] {
        let r = t
            .client
            .post("/api/v1/computed-traits", ADMIN, body.to_string())
            .await
            .unwrap();
        assert_eq!(r.status, 201, "{}", r.json());
    }
    let mut known = BTreeSet::new();
    let mut anonymous = BTreeSet::new();
    for i in 0..5 {
        known.insert(profile_id(&t, "user_id", &format!("k{i}")).await);
        anonymous.insert(profile_id(&t, "anonymous_id", &format!("till-{i}")).await);
    }
    create_audience(&t, "scored", "computed rfm.recency >= 1").await;
    create_audience(&t, "staged", r#"computed stage = "new""#).await;
    create_audience(&t, "staged_all", r#"computed stage_all = "new""#).await;
    create_audience(&t, "receipts", "is anonymous").await;
    create_audience(&t, "customers", "is known").await;
    members_become(&t, "scored", &known).await;
    members_become(&t, "staged", &known).await;
    let all: BTreeSet<String> = known.union(&anonymous).cloned().collect();
    members_become(&t, "staged_all", &all).await;
    members_become(&t, "receipts", &anonymous).await;
    members_become(&t, "customers", &known).await;
    // The best known customer is a champion among customers, not ranked below receipts.
    let best = profile_id(&t, "user_id", "k4").await;
    let (_, c) = t
        .get(&format!("/api/v1/profiles/{best}/computed-traits"))
        .await;
    assert_eq!(c["computed_traits"]["rfm"]["monetary"], 5, "{c}");
    let till = anonymous.iter().next().unwrap();
    let (_, c) = t
        .get(&format!("/api/v1/profiles/{till}/computed-traits"))
        .await;
    assert!(c["computed_traits"].get("rfm").is_none(), "{c}");
    // The profile says which kind it is.
    let (_, p) = t.get(&format!("/api/v1/profiles/{till}")).await;
    assert_eq!(p["known"], false, "{p}");
    let (_, p) = t.get(&format!("/api/v1/profiles/{best}")).await;
    assert_eq!(p["known"], true, "{p}");
    t.stop().await;
}

async fn an_analytics_opt_out_is_respected(backend: Backend) {
    let t = start_on("analytics", backend, |_| {}).await;
    let identify = |user: &str, analytics: bool| {
        json!({"type": "identify", "userId": user, "traits": {"email": format!("{user}@x.io")},
               "context": {"consent": {"categoryPreferences": {"analytics": analytics, "marketing": true}}}})
    };
    t.send(json!({"batch": [identify("olga", true), identify("paul", false)]}))
        .await;
    t.unified().await;
    let olga = profile_id(&t, "user_id", "olga").await;
    let paul = profile_id(&t, "user_id", "paul").await;
    create_audience(&t, "reachable", "has email").await;
    members_become(&t, "reachable", &ids(&[&olga])).await;
    // Paul's profile, identity and consent are kept (to honour his rights).
    let (_, p) = t.get(&format!("/api/v1/profiles/{paul}")).await;
    assert_eq!(p["consent"]["analytics"]["granted"], false, "{p}");
    // He grants it later: he is counted from then on.
    t.send(json!({"batch": [identify("paul", true)]})).await;
    t.unified().await;
    members_become(&t, "reachable", &ids(&[&olga, &paul])).await;
    t.send(json!({"batch": [identify("paul", false)]})).await;
    t.unified().await;
    members_become(&t, "reachable", &ids(&[&olga])).await;
    // A workspace that profiles everyone.
    let (_, ws) = t.get("/api/v1/workspace").await;
    assert_eq!(
        ws["identity_rules"]["analytics_opt_out"], "exclude",
        "the default: {ws}"
    );
    set_rule(&t, "analytics_opt_out", json!("profile")).await;
    members_become(&t, "reachable", &ids(&[&olga, &paul])).await;
    t.stop().await;
}

/// A CMP's TC string on an event records the TCF purposes and special features, with the
/// proof, and the vendors consented to, which an audience can require.
async fn a_tc_string_records_tcf_purposes_and_vendors(backend: Backend) {
    const VECTOR: &str = "CLcVDxRMWfGmWAVAHCENAXCkAKDAADnAABRgA5mdfCKZuYJez-NQm0TBMYA4oCAAGQYIAAAAAAEAIAEgAA.argAC0gAAAAAAAAAAAA";
    let t = start_on("tcf", backend, |_| {}).await;
    let vendor = *parcours_core::tcf::decode(VECTOR)
        .unwrap()
        .vendor_consents
        .iter()
        .next()
        .unwrap();
    create_audience(
        &t,
        "vendor_ok",
        &format!(r#"trait tcf_vendor_consents contains "{vendor}""#),
    )
    .await;
    create_audience(&t, "measured", "consent tcf_purpose_9 granted").await;
    t.send(json!({"batch": [
        {"type": "page", "userId": "cmp", "timestamp": "2026-03-01T10:00:00Z",
         "context": {"consent": {"tcString": VECTOR}}},
        {"type": "page", "userId": "broken", "timestamp": "2026-03-01T10:00:00Z",
         "context": {"consent": {"tcString": "CLcVDxRM"}}},
    ]}))
    .await;
    t.unified().await;
    let cmp = profile_id(&t, "user_id", "cmp").await;
    let (_, p) = t.get(&format!("/api/v1/profiles/{cmp}")).await;
    for (key, granted) in [
        ("tcf_purpose_1", true),
        ("tcf_purpose_2", false),
        ("tcf_purpose_9", true),
        ("tcf_special_feature_1", false),
        ("tcf_special_feature_2", true),
    ] {
        assert_eq!(p["consent"][key]["granted"], granted, "{key}: {p}");
        assert_eq!(p["consent"][key]["method"], "tcf", "{key}: {p}");
    }
    assert_eq!(
        p["traits"]["tcf_vendor_consents"].as_array().unwrap().len(),
        56,
        "{p}"
    );
    let broken = profile_id(&t, "user_id", "broken").await;
    let (_, b) = t.get(&format!("/api/v1/profiles/{broken}")).await;
    assert!(
        b["consent"].as_object().is_none_or(|c| c.is_empty()),
        "a string that does not decode records nothing: {b}"
    );
    members_become(&t, "vendor_ok", &BTreeSet::from([cmp.clone()])).await;
    members_become(&t, "measured", &BTreeSet::from([cmp])).await;
    t.stop().await;
}

on_each_store!(
    a_tc_string_records_tcf_purposes_and_vendors,
    an_analytics_opt_out_is_respected,
    anonymous_receipts_are_not_scored_as_customers,
    ad_exports_read_segment_address_traits,
    since_is_when_she_qualified,
    events_are_filtered_by_channel,
    a_backdated_identify_keeps_the_id_and_one_membership,
    an_undo_takes_the_other_persons_phone_away,
    consent_is_granted_withdrawn_or_unknown,
);
