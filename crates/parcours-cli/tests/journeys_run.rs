//! Journeys running on a node, on both stores: a customer's events start and move runs, the
//! run's timer sends the email (to the capture channel), a purchase anywhere ends the run at
//! once, and consent and quiet hours decide what goes, each with its reason; entering and
//! leaving an audience start runs too, and end the runs whose exit condition it meets.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::journeys::{abandoned_cart, put_journey};
use common::{eventually, start_with_clock, Backend, ShiftedClock, TestNode, ADMIN};
use parcours_store::{OutboxPage, OutboxRow, RunNote, StoredRun};
use serde_json::{json, Value};

const H: i64 = 3_600_000;

async fn profile_id(t: &TestNode, user: &str) -> String {
    eventually(Duration::from_secs(20), "the profile", || async {
        t.profile_of(ADMIN, "user_id", user)
            .await
            .map(|p| p["id"].as_str().unwrap().to_string())
    })
    .await
}

fn emails(t: &TestNode) -> Vec<OutboxRow> {
    t.store
        .outbox_rows(&OutboxPage {
            workspace_id: &t.workspace,
            destination: "channel:email",
            state: None,
            before_id: None,
            limit: 100,
        })
        .unwrap()
}

async fn runs_settle(
    t: &TestNode,
    profile: &str,
    what: &str,
    check: impl Fn(&[StoredRun]) -> bool,
) -> Vec<StoredRun> {
    eventually(Duration::from_secs(20), what, || async {
        let runs = t.store.runs_of(&t.workspace, profile, 10).unwrap();
        check(&runs).then_some(runs)
    })
    .await
}

fn notes(t: &TestNode, run: &str) -> Vec<RunNote> {
    t.store.run_notes(&t.workspace, run).unwrap()
}

fn identify(user: &str, email: &str, marketing: bool, extra: Value) -> Value {
    let mut traits = json!({"email": email, "first_name": "Léa"});
    if let (Some(t), Some(e)) = (traits.as_object_mut(), extra.as_object()) {
        t.extend(e.clone());
    }
    json!({"type": "identify", "userId": user, "traits": traits,
           "context": {"consent": {"categoryPreferences": {"marketing": marketing}}}})
}

fn cart(user: &str, cart: &str) -> Value {
    json!({"type": "track", "userId": user, "event": "Product Added",
           "properties": {"cart_id": cart, "name": "Red shoes", "price": 89}})
}

async fn abandoned_carts_send_once_and_stop_at_a_purchase(backend: Backend) {
    let clock = Arc::new(ShiftedClock::default());
    let t = start_with_clock("journey-run", backend, clock.clone(), |_| {}).await;
    put_journey(&t, "abandoned-cart", &abandoned_cart()).await;

    // Léa leaves her cart; Max leaves his and buys in a shop ten minutes later; Zoé never
    // gave her consent.
    let r = t
        .send(json!({"batch": [
            identify("lea", "lea@example.com", true, json!({})),
            identify("max", "max@example.com", true, json!({})),
            identify("zoe", "zoe@example.com", false, json!({})),
            cart("lea", "c1"),
            cart("max", "c2"),
            cart("zoe", "c3"),
        ]}))
        .await;
    assert_eq!(r.status, 200);
    let (lea, max, zoe) = (
        profile_id(&t, "lea").await,
        profile_id(&t, "max").await,
        profile_id(&t, "zoe").await,
    );
    let runs = runs_settle(&t, &lea, "Léa's run waits an hour", |r| r.len() == 1).await;
    assert_eq!(runs[0].key, "c1");
    assert_eq!(runs[0].state["state"]["step"], "wait");
    runs_settle(&t, &max, "Max's run", |r| r.len() == 1).await;
    // Without consent to marketing email, she does not enter (`exit_if` holds already).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(t.store.runs_of(&t.workspace, &zoe, 10).unwrap(), vec![]);

    // The same cart again while her run waits: no second run.
    t.send(json!({"batch": [cart("lea", "c1")]})).await;
    t.unified().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(t.store.runs_of(&t.workspace, &lea, 10).unwrap().len(), 1);

    // Max buys in a shop: his run ends at once, converted.
    let r = t
        .send(
            json!({"batch": [{"type": "track", "userId": "max", "event": "Order Completed",
            "properties": {"order_id": "o1", "total": 89},
            "context": {"channel": "store"}}]}),
        )
        .await;
    assert_eq!(r.status, 200);
    let runs = runs_settle(&t, &max, "Max's run ends on his purchase", |r| !r[0].active).await;
    assert_eq!(runs[0].outcome.as_deref(), Some("goal"));
    let codes: Vec<String> = notes(&t, &runs[0].run_id)
        .into_iter()
        .map(|n| n.code)
        .collect();
    assert_eq!(codes, ["entered", "converted", "goal"], "{codes:?}");

    // An hour later: Léa's email, and nothing for Max.
    assert!(emails(&t).is_empty());
    clock.advance(H + 1_000);
    let sent = eventually(
        Duration::from_secs(20),
        "Léa's email is captured",
        || async {
            let e = emails(&t);
            (e.len() == 1 && e[0].state == parcours_store::OutboxState::Done).then_some(e)
        },
    )
    .await;
    let m: Value = serde_json::from_str(&sent[0].payload).unwrap();
    assert_eq!(m["to"], "lea@example.com");
    assert_eq!(m["subject"], "Léa, your cart is waiting");
    assert_eq!(m["html"], "<p>You left Red shoes in your cart.</p>");
    let lea_run = &t.store.runs_of(&t.workspace, &lea, 10).unwrap()[0];
    assert_eq!(sent[0].key, format!("{}:reminder:2", lea_run.run_id));
    assert_eq!(lea_run.state["state"]["step"], "opened");
    let attempts = t.store.delivery_attempts(&t.workspace, sent[0].id).unwrap();
    assert_eq!(attempts.len(), 1);
    assert!(
        attempts[0].ok && attempts[0].detail.contains("capture"),
        "{attempts:?}"
    );

    // She opens it: the run ends without the SMS.
    t.send(
        json!({"batch": [{"type": "track", "userId": "lea", "event": "Email Opened",
        "properties": {"key": sent[0].key}}]}),
    )
    .await;
    let runs = runs_settle(&t, &lea, "her run completes", |r| !r[0].active).await;
    assert_eq!(runs[0].outcome.as_deref(), Some("completed"));
    clock.advance(2 * 24 * H);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(emails(&t).len(), 1, "one email, ever");

    // Why did she get it, and why did Max and Zoé not? Each decision and its reason.
    let (status, explained) = t.get(&format!("/api/v1/profiles/{lea}/journeys")).await;
    assert_eq!(status, 200, "{explained}");
    let codes: Vec<&str> = explained["runs"][0]["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        ["entered", "sent", "event_arrived", "completed"],
        "{explained}"
    );
    assert_eq!(explained["runs"][0]["decisions"][1]["step"], "reminder");
    let (_, max_runs) = t
        .get(&format!(
            "/api/v1/profiles/{max}/journeys?journey=abandoned-cart"
        ))
        .await;
    assert_eq!(max_runs["runs"][0]["outcome"], "goal");
    let (_, zoe_runs) = t.get(&format!("/api/v1/profiles/{zoe}/journeys")).await;
    assert_eq!(zoe_runs["runs"], json!([]));
    // The journey's counts and the message as she received it.
    let (_, j) = t.get("/api/v1/journeys/abandoned-cart").await;
    assert_eq!(j["runs"]["active"], 0, "{j}");
    assert_eq!(j["runs"]["ended"], 2, "{j}");
    let (status, m) = t.get("/api/v1/messages?channel=email").await;
    assert_eq!(status, 200);
    assert_eq!(
        m["messages"][0]["message"]["subject"],
        "Léa, your cart is waiting"
    );
    assert_eq!(m["messages"][0]["state"], "done");
    let (status, _) = t.get("/api/v1/messages?channel=fax").await;
    assert_eq!(status, 400);
    t.stop().await;
}

/// A journey with a holdout: its report counts each group, and compares them.
async fn the_report_compares_the_treatment_with_its_holdout(backend: Backend) {
    let t = start_with_clock(
        "journey-report",
        backend,
        Arc::new(ShiftedClock::default()),
        |_| {},
    )
    .await;
    let doc = "id: survey\nstatus: live\nholdout: 50%\nentry:\n  event: Order Completed\ngoal:\n  event: Review Written\nsteps:\n  - id: wait\n    wait: 2d\n  - id: ask\n    send: {channel: email, purpose: transactional, subject: Hi, text: Review?}\n";
    put_journey(&t, "survey", doc).await;
    let mut batch = Vec::new();
    for i in 0..40 {
        let u = format!("s{i}");
        batch.push(identify(&u, &format!("{u}@example.com"), true, json!({})));
        batch.push(json!({"type": "track", "userId": u, "event": "Order Completed"}));
        if i % 4 == 0 {
            batch.push(json!({"type": "track", "userId": u, "event": "Review Written"}));
        }
    }
    t.send(json!({ "batch": batch })).await;
    let deadline = parcours_engine::clock::Moment::now() + Duration::from_secs(60);
    let report = loop {
        let (status, r) = t.get("/api/v1/journeys/survey/report").await;
        if status == 200 && r["entered"] == 40 && r["converted"] == 10 {
            break r;
        }
        assert!(
            parcours_engine::clock::Moment::now() < deadline,
            "every customer in the report: {status} {r}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let groups = report["groups"].as_array().unwrap();
    let held = &groups[0];
    let treated = &groups[1];
    assert_eq!(held["group"], "holdout");
    assert_eq!(treated["group"], "treatment");
    assert_eq!(
        held["entered"].as_u64().unwrap() + treated["entered"].as_u64().unwrap(),
        40,
        "{report}"
    );
    assert!(
        held["entered"].as_u64().unwrap() > 5 && treated["entered"].as_u64().unwrap() > 5,
        "{report}"
    );
    assert_eq!(report["waiting"], 30);
    let c = &report["treatment_against_holdout"];
    let rate = |g: &Value| g["converted"].as_f64().unwrap() / g["entered"].as_f64().unwrap();
    assert!(
        (c["uplift"].as_f64().unwrap() - (rate(treated) - rate(held))).abs() < 1e-12,
        "{report}"
    );
    assert_eq!(
        c["underpowered"], true,
        "10 conversions in all is not enough to conclude"
    );
    let (status, _) = t.get("/api/v1/journeys/nope/report").await;
    assert_eq!(status, 404);
    t.stop().await;
}

/// Entering an audience starts one journey; leaving it (by time alone: no event of hers)
/// starts another, and ends at once a run whose exit condition is to be out of it.
async fn audiences_start_and_end_runs(backend: Backend) {
    let clock = Arc::new(ShiftedClock::default());
    let t = start_with_clock("journey-audiences", backend, clock.clone(), |_| {}).await;
    let (status, created) = common::call(
        &t,
        "POST",
        "/api/v1/audiences",
        json!({"id": "browsing", "name": "Browsing now",
               "definition": "did \"Product Viewed\" within 1 hour"}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    // A journey on an audience that does not exist is refused while live.
    let (status, e) = common::journeys::put_document(
        &t,
        "/api/v1/journeys/nowhere",
        "application/yaml",
        "id: nowhere\nstatus: live\nentry: {audience: nope}\nsteps: [{id: a, wait: 1h}]\n",
    )
    .await;
    assert_eq!(
        (status, e["code"].as_str()),
        (422, Some("unknown_audience")),
        "{e}"
    );
    let mail = |id: &str, entry: &str, extra: &str| {
        format!(
            "id: {id}\nstatus: live\n{extra}entry: {entry}\nsteps:\n  - id: hello\n    wait: 2h\n  - id: mail\n    send:\n      channel: email\n      purpose: transactional\n      subject: \"{id} {{{{ event.properties.audience }}}}\"\n      text: x\n"
        )
    };
    put_journey(
        &t,
        "came",
        &mail(
            "came",
            "{audience: browsing}",
            "exit_if: 'not in audience \"browsing\"'\n",
        ),
    )
    .await;
    put_journey(
        &t,
        "left",
        &mail("left", "{audience: browsing, on: leave}", ""),
    )
    .await;
    t.send(json!({"batch": [
        {"type": "identify", "userId": "lea", "traits": {"email": "lea@example.com"}},
        {"type": "track", "userId": "lea", "event": "Product Viewed"},
    ]}))
    .await;
    t.unified().await;
    let lea = profile_id(&t, "lea").await;
    let runs = runs_settle(&t, &lea, "her run of `came`", |r| {
        r.iter().any(|r| r.journey_id == "came" && r.active)
    })
    .await;
    assert!(!runs.iter().any(|r| r.journey_id == "left"), "{runs:?}");
    // An hour later, with no event of hers, she is no longer browsing: `left` starts and
    // `came` ends at once, before its email.
    clock.advance(H + 60_000);
    let runs = runs_settle(&t, &lea, "`left` starts and `came` exits", |r| {
        r.iter().any(|r| r.journey_id == "left" && r.active)
            && r.iter().any(|r| r.journey_id == "came" && !r.active)
    })
    .await;
    let came = runs.iter().find(|r| r.journey_id == "came").unwrap();
    assert_eq!(came.outcome.as_deref(), Some("exited"), "{came:?}");
    clock.advance(2 * H + 60_000);
    eventually(Duration::from_secs(20), "the `left` email", || async {
        (emails(&t).len() == 1).then_some(())
    })
    .await;
    let sent: Value = serde_json::from_str(&emails(&t)[0].payload).unwrap();
    assert_eq!(sent["subject"], "left browsing", "{sent}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(emails(&t).len(), 1, "nothing from `came`");
    t.stop().await;
}

/// An `update_trait` step sets the trait through an event of hers in the log: her profile has
/// it (with that event as its source), once.
async fn a_step_sets_a_trait_through_the_log(backend: Backend) {
    let clock = Arc::new(ShiftedClock::default());
    let t = start_with_clock("journey-trait", backend, clock.clone(), |_| {}).await;
    put_journey(
        &t,
        "mark",
        "id: mark\nstatus: live\nentry: {event: Product Added}\nsteps:\n  - id: flag\n    update_trait: {name: cart_reminded, value: {at: step, n: 2}}\n",
    )
    .await;
    t.send(json!({"batch": [
        {"type": "identify", "userId": "lea", "traits": {"email": "lea@example.com"}},
        {"type": "track", "userId": "lea", "event": "Product Added"},
    ]}))
    .await;
    t.unified().await;
    let lea = profile_id(&t, "lea").await;
    let traits = eventually(
        Duration::from_secs(20),
        "the trait on her profile",
        || async {
            let (_, tr) = t.get(&format!("/api/v1/profiles/{lea}/traits")).await;
            tr["sources"].get("cart_reminded").cloned()
        },
    )
    .await;
    assert_eq!(traits["value"], json!({"at": "step", "n": 2}), "{traits}");
    let run = t.store.runs_of(&t.workspace, &lea, 1).unwrap().remove(0);
    assert_eq!(
        traits["message_id"],
        format!("{}:flag:trait", run.run_id),
        "{traits}"
    );
    let codes: Vec<String> = notes(&t, &run.run_id)
        .iter()
        .map(|n| n.code.clone())
        .collect();
    assert_eq!(codes, ["entered", "trait_updated", "completed"]);
    let (_, events) = t.get(&format!("/api/v1/profiles/{lea}/events")).await;
    let set = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "identify" && e["traits"].get("cart_reminded").is_some())
        .count();
    assert_eq!(set, 1, "{events}");
    t.stop().await;
}

const HOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A webhook step calls its URL with the rendered body, signed per Standard Webhooks, and
/// again under the same `webhook-id` when the receiver fails.
async fn a_webhook_step_calls_out_signed(backend: Backend) {
    use axum::http::{HeaderMap, StatusCode};
    use std::sync::Mutex;
    type Got = Arc<Mutex<Vec<(HeaderMap, axum::body::Bytes)>>>;
    let got: Got = Arc::default();
    let seen = got.clone();
    // A receiver of the test's own, not a route of Parcours: nothing to document.
    #[allow(clippy::disallowed_methods)]
    let app = axum::Router::new().route(
        "/crm",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                let mut seen = seen.lock().unwrap();
                seen.push((headers, body));
                if seen.len() == 1 {
                    StatusCode::BAD_GATEWAY
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/crm", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let clock = Arc::new(ShiftedClock::default());
    let t = start_with_clock("journey-webhook", backend, clock.clone(), |c| {
        c.channels.webhook.secret = Some(HOOK_SECRET.into());
        c.destinations.allow_private_addresses = true;
    })
    .await;
    let doc = format!(
        "id: crm\nstatus: live\nentry: {{event: Order Completed}}\nsteps:\n  - id: tell\n    webhook:\n      url: {url}\n      body: '{{\"email\": \"{{{{ traits.email }}}}\", \"total\": {{{{ event.properties.total }}}}}}'\n"
    );
    put_journey(&t, "crm", &doc).await;
    // Léa agreed to marketing; Max never said: the call is marketing (the default purpose)
    // and goes for her only.
    t.send(json!({"batch": [
        {"type": "identify", "userId": "lea", "traits": {"email": "lea@example.com"},
         "context": {"consent": {"categoryPreferences": {"marketing": true}}}},
        {"type": "identify", "userId": "max", "traits": {"email": "max@example.com"}},
        {"type": "track", "userId": "lea", "event": "Order Completed", "properties": {"total": 42.5}},
        {"type": "track", "userId": "max", "event": "Order Completed", "properties": {"total": 9}},
    ]}))
    .await;
    t.unified().await;
    let max = profile_id(&t, "max").await;
    let max_run = eventually(Duration::from_secs(20), "max's run", || async {
        t.store.runs_of(&t.workspace, &max, 1).unwrap().pop()
    })
    .await;
    let max_notes = eventually(Duration::from_secs(20), "max's run decided", || async {
        let n = notes(&t, &max_run.run_id);
        n.iter().any(|n| n.code == "completed").then_some(n)
    })
    .await;
    let no_consent = max_notes.iter().find(|n| n.code == "no_consent").unwrap();
    assert!(
        no_consent
            .detail
            .contains("no consent to marketing on webhook"),
        "{}",
        no_consent.detail
    );
    eventually(Duration::from_secs(20), "the first call", || async {
        (got.lock().unwrap().len() == 1).then_some(())
    })
    .await;
    // The receiver failed: tried again (after 5 s) under the same webhook-id.
    clock.advance(6_000);
    eventually(Duration::from_secs(20), "the second call", || async {
        (got.lock().unwrap().len() == 2).then_some(())
    })
    .await;
    let calls = got.lock().unwrap().clone();
    let lea = profile_id(&t, "lea").await;
    let run = t.store.runs_of(&t.workspace, &lea, 1).unwrap().remove(0);
    for (headers, raw) in &calls {
        common::hooks::assert_signed(HOOK_SECRET, headers, raw);
        assert_eq!(
            headers["webhook-id"],
            format!("{}:tell:1", run.run_id).as_str()
        );
        assert_eq!(headers["content-type"], "application/json");
        let body: Value = serde_json::from_slice(raw).unwrap();
        assert_eq!(body, json!({"email": "lea@example.com", "total": 42.5}));
    }
    let codes: Vec<String> = notes(&t, &run.run_id)
        .iter()
        .map(|n| n.code.clone())
        .collect();
    assert_eq!(codes, ["entered", "webhook_queued", "completed"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(got.lock().unwrap().len(), 2, "once accepted, never again");

    // GDPR Art. 19: her erasure is told to the URL that received her, signed like its calls,
    // naming the call by its webhook-id; Max (never called) is not in it.
    let done = erase(&t, "lea").await;
    let told = &done["result"]["webhooks_notified"];
    assert_eq!(told.as_array().map(Vec::len), Some(1), "{done}");
    assert_eq!(told[0]["webhook"], url.as_str(), "{done}");
    assert_eq!(told[0]["calls"], 1, "{done}");
    assert!(
        told[0]["answer"].as_str().unwrap().contains("204"),
        "{done}"
    );
    let calls = got.lock().unwrap().clone();
    assert_eq!(calls.len(), 3);
    let (headers, raw) = &calls[2];
    common::hooks::assert_signed(HOOK_SECRET, headers, raw);
    let notice: Value = serde_json::from_slice(raw).unwrap();
    assert_eq!(notice["type"], "privacy.erasure");
    assert_eq!(
        notice["data"]["calls"],
        json!([{"webhook_id": format!("{}:tell:1", run.run_id), "journey": "crm",
                "step": "tell", "run": run.run_id, "profile_id": lea}])
    );
    assert!(!notice.to_string().contains(&max), "{notice}");
    t.stop().await;
}

/// Files an erasure of a user id and waits until it is done: the request.
async fn erase(t: &common::TestNode, user_id: &str) -> Value {
    let (status, filed) = common::call(
        t,
        "POST",
        "/api/v1/privacy/requests",
        json!({"kind": "erasure", "identifier": {"type": "user_id", "value": user_id}}),
    )
    .await;
    assert_eq!(status, 202, "{filed}");
    let id = filed["id"].as_str().unwrap().to_string();
    eventually(Duration::from_secs(60), "the erasure", || async {
        let (_, r) = t.get(&format!("/api/v1/privacy/requests/{id}")).await;
        (r["state"] == "done").then_some(r)
    })
    .await
}

/// An `ad_audience` step adds her to a destination (hashed as Meta wants, signed, under the
/// journey's name) and a later one removes her; a customer without consent to marketing is
/// not added, with the reason recorded, and removing never needs consent.
async fn ad_audience_steps_add_and_remove_her_at_a_destination(backend: Backend) {
    use axum::http::{HeaderMap, StatusCode};
    use std::sync::Mutex;
    type Got = Arc<Mutex<Vec<(HeaderMap, axum::body::Bytes)>>>;
    let got: Got = Arc::default();
    let seen = got.clone();
    // A receiver of the test's own, not a route of Parcours: nothing to document.
    #[allow(clippy::disallowed_methods)]
    let app = axum::Router::new().route(
        "/ads",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push((headers, body));
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ads", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let clock = Arc::new(ShiftedClock::default());
    let t = start_with_clock("journey-ads", backend, clock.clone(), |c| {
        c.destinations.allow_private_addresses = true;
    })
    .await;
    let (status, d) = common::call(
        &t,
        "POST",
        "/api/v1/destinations",
        json!({"id": "meta", "name": "Meta buyers", "url": url, "identifiers": "meta"}),
    )
    .await;
    assert_eq!(status, 201, "{d}");
    let secret = d["secret"].as_str().unwrap().to_string();
    let doc = "id: buyers\nname: Recent buyers\nstatus: live\nentry: {event: Order Completed}\nsteps:\n  - id: add\n    ad_audience: {destination: meta}\n  - id: week\n    wait: 7d\n  - id: drop\n    ad_audience: {destination: meta, action: remove}\n";
    put_journey(&t, "buyers", doc).await;
    t.send(json!({"batch": [
        identify("lea", " Lea@Example.com ", true, json!({})),
        identify("max", "max@example.com", false, json!({})),
        {"type": "track", "userId": "lea", "event": "Order Completed"},
        {"type": "track", "userId": "max", "event": "Order Completed"},
    ]}))
    .await;
    t.unified().await;
    let changes = |n: usize| {
        let got = got.clone();
        let secret = secret.clone();
        async move {
            eventually(Duration::from_secs(20), "the changes", || async {
                let calls = got.lock().unwrap().clone();
                (calls.len() == n).then(|| {
                    calls
                        .iter()
                        .map(|(headers, raw)| {
                            common::hooks::assert_signed(&secret, headers, raw);
                            let body: Value = serde_json::from_slice(raw).unwrap();
                            body["data"]["changes"][0].clone()
                        })
                        .collect::<Vec<Value>>()
                })
            })
            .await
        }
    };
    let added = changes(1).await;
    let lea_hash = parcours_core::adhash::sha256_hex("lea@example.com");
    assert_eq!(added[0]["action"], "add");
    assert_eq!(
        added[0]["audience"],
        json!({"id": "buyers", "name": "Recent buyers"})
    );
    assert_eq!(added[0]["profile"]["email"], lea_hash.as_str());
    assert_eq!(added[0]["journey"]["step"], "add");
    let max = profile_id(&t, "max").await;
    let max_run = t.store.runs_of(&t.workspace, &max, 1).unwrap().remove(0);
    let max_notes = notes(&t, &max_run.run_id);
    let refused = max_notes.iter().find(|n| n.code == "no_consent").unwrap();
    assert_eq!(refused.step.as_deref(), Some("add"));
    // A week later both are removed (Max was never added: removing him costs nothing).
    clock.advance(7 * 24 * H + 60_000);
    let all = changes(3).await;
    let mut removed: Vec<(&str, &str)> = all[1..]
        .iter()
        .map(|c| {
            (
                c["action"].as_str().unwrap(),
                c["profile"]["email"].as_str().unwrap(),
            )
        })
        .collect();
    removed.sort();
    let max_hash = parcours_core::adhash::sha256_hex("max@example.com");
    let mut expected = [("remove", lea_hash.as_str()), ("remove", max_hash.as_str())];
    expected.sort();
    assert_eq!(removed, expected);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(got.lock().unwrap().len(), 3, "each change once");

    // She is in no audience, but the journey sent her: her erasure is told to the destination.
    let done = erase(&t, "lea").await;
    assert_eq!(
        done["result"]["destinations_notified"],
        json!([{"destination": "meta", "status": 204}]),
        "{done}"
    );
    let calls = got.lock().unwrap().clone();
    assert_eq!(calls.len(), 4);
    let (headers, raw) = &calls[3];
    common::hooks::assert_signed(&secret, headers, raw);
    let notice: Value = serde_json::from_slice(raw).unwrap();
    assert_eq!(notice["type"], "privacy.erasure");
    assert_eq!(
        notice["data"]["profiles"][0]["profile"]["email"],
        lea_hash.as_str()
    );
    t.stop().await;
}

/// A channel's rate holds: ten SMS at once with `rate_per_second = 3` go out three a second at
/// most, all of them, in order.
async fn a_channel_sends_within_its_rate(backend: Backend) {
    let clock = Arc::new(ShiftedClock::default());
    let t = start_with_clock("journey-rate", backend, clock.clone(), |c| {
        c.channels.sms.rate_per_second = 3;
    })
    .await;
    put_journey(
        &t,
        "flash",
        "id: flash\nstatus: live\nentry: {event: Flash Sale}\nsteps:\n  - id: sms\n    send: {channel: sms, purpose: transactional, text: Go}\n",
    )
    .await;
    let mut batch = Vec::new();
    for i in 0..10 {
        batch.push(json!({"type": "identify", "userId": format!("u{i}"), "traits": {"phone": format!("+3361122330{i}")}}));
        batch.push(json!({"type": "track", "userId": format!("u{i}"), "event": "Flash Sale"}));
    }
    t.send(json!({ "batch": batch })).await;
    t.unified().await;
    let rows = eventually(Duration::from_secs(30), "ten SMS sent", || async {
        let rows = t
            .store
            .outbox_rows(&OutboxPage {
                workspace_id: &t.workspace,
                destination: "channel:sms",
                state: None,
                before_id: None,
                limit: 100,
            })
            .unwrap();
        (rows.len() == 10
            && rows
                .iter()
                .all(|r| r.state == parcours_store::OutboxState::Done))
        .then_some(rows)
    })
    .await;
    let mut per_second: std::collections::BTreeMap<i64, usize> = Default::default();
    for r in &rows {
        let attempts = t.store.delivery_attempts(&t.workspace, r.id).unwrap();
        assert_eq!(attempts.len(), 1, "{attempts:?}");
        *per_second
            .entry(attempts[0].at.div_euclid(1_000))
            .or_default() += 1;
    }
    assert!(per_second.values().all(|n| *n <= 3), "{per_second:?}");
    assert!(per_second.len() >= 4, "{per_second:?}");
    t.stop().await;
}

/// `in_flight: move`: a run waiting at a step the new version has goes on in the new
/// version; a run waiting at a step the next version renamed stays on its own.
async fn runs_in_flight_move_to_the_new_version(backend: Backend) {
    let clock = Arc::new(ShiftedClock::default());
    let t = start_with_clock("journey-move", backend, clock.clone(), |_| {}).await;
    let doc = |subject: &str, wait_id: &str, extra: &str| {
        format!(
            "id: promo\nstatus: live\n{extra}entry: {{event: Promo Viewed}}\nsteps:\n  - id: {wait_id}\n    wait: 1h\n  - id: mail\n    send: {{channel: email, purpose: transactional, subject: {subject}, text: x}}\n"
        )
    };
    let visit = |user: &str| {
        json!({"batch": [
            {"type": "identify", "userId": user, "traits": {"email": format!("{user}@example.com")}},
            {"type": "track", "userId": user, "event": "Promo Viewed"},
        ]})
    };
    put_journey(&t, "promo", &doc("v1", "wait", "")).await;
    t.send(visit("ann")).await;
    t.unified().await;
    let ann = profile_id(&t, "ann").await;
    runs_settle(&t, &ann, "Ann waits on version 1", |r| {
        r.len() == 1 && r[0].version == 1
    })
    .await;
    put_journey(&t, "promo", &doc("v2", "wait", "in_flight: move\n")).await;
    t.send(visit("bob")).await;
    t.unified().await;
    let bob = profile_id(&t, "bob").await;
    runs_settle(&t, &bob, "Bob waits on version 2", |r| {
        r.len() == 1 && r[0].version == 2
    })
    .await;
    // Version 3 renames the wait: Bob's run (at `wait`) cannot move and stays on version 2.
    put_journey(&t, "promo", &doc("v3", "pause", "in_flight: move\n")).await;
    clock.advance(H + 60_000);
    let subjects = eventually(Duration::from_secs(20), "both emails", || async {
        let e = emails(&t);
        (e.len() == 2).then(|| {
            let mut s: Vec<(String, String)> = e
                .iter()
                .map(|r| {
                    let m: Value = serde_json::from_str(&r.payload).unwrap();
                    (
                        m["to"].as_str().unwrap().to_string(),
                        m["subject"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            s.sort();
            s
        })
    })
    .await;
    // Ann's run moved to version 2 when version 2 said so (version 3 has no `wait` step, so
    // she went no further); Bob's stayed on version 2.
    assert_eq!(
        subjects,
        [
            ("ann@example.com".to_string(), "v2".to_string()),
            ("bob@example.com".to_string(), "v2".to_string())
        ]
    );
    let ann_run = t.store.runs_of(&t.workspace, &ann, 1).unwrap().remove(0);
    assert_eq!(ann_run.version, 2);
    let codes: Vec<String> = notes(&t, &ann_run.run_id)
        .iter()
        .map(|n| n.code.clone())
        .collect();
    assert!(codes.contains(&"moved".to_string()), "{codes:?}");
    t.stop().await;
}

/// A journey on a weekly schedule at 09:00 on each customer's clock: the members of its
/// audience enter when their own clock reads it (Paris before New York), each once per
/// occurrence, and no one else; a one-shot schedule already past is refused.
async fn a_schedule_enters_its_audience_on_each_customers_clock(backend: Backend) {
    let clock = Arc::new(ShiftedClock::default());
    let t = start_with_clock("journey-schedule", backend, clock.clone(), |_| {}).await;
    let now = || parcours_core::time::Clock::now(clock.as_ref());
    let (status, created) = common::call(
        &t,
        "POST",
        "/api/v1/audiences",
        json!({"id": "gold", "name": "Gold", "definition": "trait tier = \"gold\""}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let person = |user: &str, tz: &str, tier: &str| {
        json!({"type": "identify", "userId": user, "traits": {
            "email": format!("{user}@example.com"), "timezone": tz, "tier": tier}})
    };
    t.send(json!({"batch": [
        person("ann", "Europe/Paris", "gold"),
        person("bob", "America/New_York", "gold"),
        person("cid", "Europe/Paris", "silver"),
    ]}))
    .await;
    t.unified().await;
    let (ann, bob, cid) = (
        profile_id(&t, "ann").await,
        profile_id(&t, "bob").await,
        profile_id(&t, "cid").await,
    );
    eventually(Duration::from_secs(20), "two gold members", || async {
        (t.store.member_count(&t.workspace, "gold").unwrap() == 2).then_some(())
    })
    .await;
    // Two days from now, in winter: 09:00 in Paris is 08:00 UTC, in New York 14:00 UTC.
    const DAY: i64 = 24 * H;
    let day = (now() / DAY + 2) * DAY;
    let date = parcours_core::time::format_timestamp(day)[..10].to_string();
    let weekly = format!(
        "id: weekly\nstatus: live\nentry:\n  schedule: {{at: {date}, every: 7d, local_time: \"09:00\", audience: gold}}\nsteps:\n  - id: mail\n    send:\n      channel: email\n      purpose: transactional\n      subject: \"News of {{{{ event.properties.occurrence | slice: 0, 10 }}}}\"\n      text: x\n"
    );
    // Simulated first, as a draft over its first day: the audience's members (read from
    // today's memberships) enter, one email each; Cid does not.
    let actor = parcours_service::Actor::new(t.workspace.clone(), parcours_store::Role::Analyst);
    let sim = parcours_service::journeys::simulate(
        t.store.as_ref(),
        &actor,
        &weekly
            .replace("id: weekly", "id: weekly-draft")
            .replace("status: live", "status: draft"),
        day,
        day + DAY,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!((sim.customers, sim.entered), (3, 2), "{sim:#?}");
    assert_eq!(sim.sent, [("email".to_string(), 2)].into(), "{sim:#?}");
    put_journey(&t, "weekly", &weekly).await;
    let to = |r: &OutboxRow| {
        let m: Value = serde_json::from_str(&r.payload).unwrap();
        (
            m["to"].as_str().unwrap().to_string(),
            m["subject"].as_str().unwrap().to_string(),
        )
    };
    // Paris reads 09:00: Ann gets hers; Bob's clock reads 03:00.
    clock.advance(day + 8 * H + 30_000 - now());
    eventually(Duration::from_secs(30), "Ann's email", || async {
        (!emails(&t).is_empty()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent: Vec<_> = emails(&t).iter().map(to).collect();
    assert_eq!(
        sent,
        [("ann@example.com".to_string(), format!("News of {date}"))]
    );
    // New York reads 09:00: Bob's comes; Cid, not gold, never enters.
    clock.advance(day + 14 * H + 30_000 - now());
    eventually(Duration::from_secs(30), "Bob's email", || async {
        (emails(&t).len() == 2).then_some(())
    })
    .await;
    let mut who: Vec<String> = emails(&t).iter().map(|r| to(r).0).collect();
    who.sort();
    assert_eq!(who, ["ann@example.com", "bob@example.com"]);
    for p in [&ann, &bob] {
        let runs = t.store.runs_of(&t.workspace, p, 10).unwrap();
        assert_eq!(runs.len(), 1, "one run per occurrence: {runs:?}");
    }
    assert!(t.store.runs_of(&t.workspace, &cid, 10).unwrap().is_empty());
    let ann_run = &t.store.runs_of(&t.workspace, &ann, 1).unwrap()[0];
    assert_eq!(
        ann_run.entered_at,
        day + 8 * H,
        "she entered at 09:00 on her clock"
    );
    // A week later, the next occurrence enters them again.
    clock.advance(day + 7 * DAY + 14 * H + 30_000 - now());
    eventually(
        Duration::from_secs(30),
        "the next week's emails",
        || async { (emails(&t).len() == 4).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(emails(&t).len(), 4, "each once per occurrence");
    // A schedule for an audience the workspace does not have would enter no one: refused.
    let (status, e) = common::journeys::put_document(
        &t,
        "/api/v1/journeys/nobody",
        "application/yaml",
        &weekly
            .replace("id: weekly", "id: nobody")
            .replace("audience: gold", "audience: platinum"),
    )
    .await;
    assert_eq!(
        (status, e["code"].as_str()),
        (422, Some("unknown_audience")),
        "{e}"
    );
    // A one-shot schedule already past runs for no one: refused.
    let (status, e) = common::journeys::put_document(
        &t,
        "/api/v1/journeys/late",
        "application/yaml",
        "id: late\nstatus: live\nentry: {schedule: {at: 2020-01-01}}\nsteps: [{id: a, wait: 1h}]\n",
    )
    .await;
    assert_eq!(
        (status, e["code"].as_str()),
        (422, Some("schedule_passed")),
        "{e}"
    );
    t.stop().await;
}

/// A draft replayed over stored events: who would have entered, what would have gone on
/// which channel, who converted first, and the live journey that wrote to the same customer
/// within a day; the same from the command line; nothing saved or sent.
async fn a_draft_is_simulated_over_stored_events(backend: Backend) {
    let clock = Arc::new(ShiftedClock::default());
    let t = start_with_clock("journey-simulate", backend, clock.clone(), |_| {}).await;
    let now = parcours_core::time::Clock::now(clock.as_ref());
    let iso = parcours_core::time::format_timestamp;
    put_journey(
        &t,
        "promo",
        "id: promo\nstatus: live\nentry: {event: Product Viewed}\nsteps:\n  - id: mail\n    send: {channel: email, purpose: transactional, subject: promo, text: x}\n",
    )
    .await;
    let at = |ms: i64, mut e: Value| {
        e["timestamp"] = iso(ms).into();
        e
    };
    t.send(json!({"batch": [
        identify("ann", "ann@example.com", true, json!({})),
        identify("bob", "bob@example.com", true, json!({"phone": "+33612345678"})),
        identify("cid", "cid@example.com", false, json!({})),
        // Ann buys 30 minutes after leaving her cart: no reminder.
        at(now - 3 * 24 * H, cart("ann", "c1")),
        at(now - 3 * 24 * H + H / 2, json!({"type": "track", "userId": "ann", "event": "Order Completed"})),
        // Bob's cart, three hours ago: the email, then a day later the SMS.
        at(now - 3 * H, cart("bob", "c2")),
        // Cid gave no consent: the exit condition keeps him out.
        at(now - 2 * 24 * H, cart("cid", "c3")),
        // Bob, now, gets the live promo.
        {"type": "track", "userId": "bob", "event": "Product Viewed"},
    ]}))
    .await;
    t.unified().await;
    eventually(Duration::from_secs(20), "the live promo", || async {
        (emails(&t).len() == 1).then_some(())
    })
    .await;
    let draft = abandoned_cart()
        .replace("id: abandoned-cart", "id: cart-draft")
        .replace("status: live", "status: draft");
    let actor = parcours_service::Actor::new(t.workspace.clone(), parcours_store::Role::Analyst);
    let (from, to) = (now - 7 * 24 * H, now + 2 * 24 * H);
    let sim = parcours_service::journeys::simulate(
        t.store.as_ref(),
        &actor,
        &draft,
        from,
        to,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(
        (sim.customers, sim.entered, sim.holdout),
        (3, 2, 0),
        "{sim:#?}"
    );
    assert_eq!(
        sim.not_entered,
        [("exit_condition_holds".to_string(), 1)].into(),
        "{sim:#?}"
    );
    assert_eq!(
        sim.sent,
        [("email".to_string(), 1), ("sms".to_string(), 1)].into(),
        "{sim:#?}"
    );
    assert_eq!(
        sim.ended,
        [("completed".to_string(), 1), ("goal".to_string(), 1)].into(),
        "{sim:#?}"
    );
    assert_eq!((sim.converted, sim.running), (1, 0), "{sim:#?}");
    let step = |id: &str| {
        sim.steps
            .iter()
            .find(|s| s.step == id)
            .unwrap()
            .decisions
            .clone()
    };
    assert_eq!(step("reminder").get("sent"), Some(&1), "{sim:#?}");
    assert_eq!(step("opened").get("timed_out"), Some(&1), "{sim:#?}");
    assert_eq!(sim.conflicts.len(), 1, "{sim:#?}");
    assert_eq!(
        (
            sim.conflicts[0].journey.as_str(),
            sim.conflicts[0].customers,
            sim.conflicts[0].messages
        ),
        ("promo", 1, 2),
        "both of Bob's messages fall within a day of his live promo"
    );
    // The same through the API, and a window that ends before it starts refused.
    let path = |from: i64, to: i64| {
        format!(
            "/api/v1/journeys/simulate?from={}&to={}",
            iso(from),
            iso(to)
        )
    };
    let (status, answer) =
        common::journeys::send_document(&t, "POST", &path(from, to), "application/yaml", &draft)
            .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, serde_json::to_value(&sim).unwrap());
    let (status, e) =
        common::journeys::send_document(&t, "POST", &path(to, from), "application/yaml", &draft)
            .await;
    assert_eq!(
        (status, e["code"].as_str()),
        (400, Some("invalid_simulation")),
        "{e}"
    );
    // Nothing was saved or sent.
    assert_eq!(emails(&t).len(), 1);
    assert_eq!(
        t.store.journey_entries(&t.workspace, "cart-draft").unwrap(),
        0
    );
    // The same from the command line, on the same store.
    let file = t.dir.join("draft.yaml");
    std::fs::write(&file, &draft).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_parcours"));
    match &t.database {
        Some(db) => cmd.arg("--database").arg(db.url()),
        None => cmd.arg("--data-dir").arg(&t.dir),
    };
    let out = cmd
        .args([
            "journey",
            "simulate",
            file.to_str().unwrap(),
            "--from",
            &iso(from),
            "--to",
            &iso(to),
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, serde_json::to_value(&sim).unwrap());
    t.stop().await;
}

on_each_store!(
    a_draft_is_simulated_over_stored_events,
    ad_audience_steps_add_and_remove_her_at_a_destination,
    a_schedule_enters_its_audience_on_each_customers_clock,
    runs_in_flight_move_to_the_new_version,
    a_channel_sends_within_its_rate,
    abandoned_carts_send_once_and_stop_at_a_purchase,
    the_report_compares_the_treatment_with_its_holdout,
    audiences_start_and_end_runs,
    a_step_sets_a_trait_through_the_log,
    a_webhook_step_calls_out_signed
);
