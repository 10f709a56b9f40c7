//! Journey documents through the real HTTP path, on both stores: saved as YAML or JSON,
//! refused with every problem's line and column, versioned, read back as written; customers
//! entered through the API; message steps previewed for a customer.

#[macro_use]
mod common;

use common::journeys::{abandoned_cart, put_document as put};
use common::{call, eventually, start_on, Backend, ADMIN};
use serde_json::json;

async fn journeys_are_versioned_documents(backend: Backend) {
    let t = start_on("journeys", backend, |_| {}).await;
    let cart = abandoned_cart();

    // Saved as written, version 1.
    let (status, saved) = put(
        &t,
        "/api/v1/journeys/abandoned-cart",
        "application/yaml",
        &cart,
    )
    .await;
    assert_eq!(status, 201, "{saved}");
    assert_eq!(saved["version"], 1);
    assert_eq!(saved["status"], "live");
    assert_eq!(saved["changed"], true);
    assert_eq!(saved["journey"]["steps"][2]["type"], "wait_for");
    let (status, got) = t.get("/api/v1/journeys/abandoned-cart").await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["document"], cart.as_str());
    assert_eq!(got["name"], "Abandoned cart");
    assert_eq!(got["versions"].as_array().unwrap().len(), 1);

    // The same document again stores nothing.
    let (status, same) = put(
        &t,
        "/api/v1/journeys/abandoned-cart",
        "application/yaml",
        &cart,
    )
    .await;
    assert_eq!(
        (status, &same["changed"], &same["version"]),
        (200, &json!(false), &json!(1))
    );

    // A dry run says what would change and stores nothing.
    let v2 = cart.replace("wait: 1h", "wait: 2h");
    let (status, plan) = put(
        &t,
        "/api/v1/journeys/abandoned-cart?dry_run=true",
        "application/yaml",
        &v2,
    )
    .await;
    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["changes"][0], "step `wait` changed (wait)");
    assert!(plan["changes"][1]
        .as_str()
        .unwrap()
        .starts_with("runs in flight stay"));
    assert!(
        plan["diff"]
            .as_array()
            .unwrap()
            .contains(&json!("+     wait: 2h")),
        "{plan}"
    );
    let (_, got) = t.get("/api/v1/journeys/abandoned-cart").await;
    assert_eq!(got["versions"].as_array().unwrap().len(), 1);

    // Saved for real: version 2; version 1 still reads as it was.
    let (status, saved) = put(
        &t,
        "/api/v1/journeys/abandoned-cart",
        "application/yaml",
        &v2,
    )
    .await;
    assert_eq!((status, &saved["version"]), (200, &json!(2)), "{saved}");
    let (_, got) = t.get("/api/v1/journeys/abandoned-cart?version=1").await;
    assert_eq!(got["document"], cart.as_str());
    assert_eq!(got["latest_version"], 2);
    let (status, _) = t.get("/api/v1/journeys/abandoned-cart?version=9").await;
    assert_eq!(status, 404);

    // Every problem, with its line and column.
    let broken = cart
        .replace("wait: 1h", "wait: 1 hour")
        .replace("on_timeout: sms", "on_timeout: sms2");
    let (status, err) = put(
        &t,
        "/api/v1/journeys/abandoned-cart",
        "application/yaml",
        &broken,
    )
    .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["code"], "invalid_journey");
    let at: Vec<(u64, u64)> = err["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["at"]["line"].as_u64().unwrap(),
                p["at"]["column"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(at, [(14, 11), (25, 17)], "{err}");
    let (status, err) = put(
        &t,
        "/api/v1/journeys/abandoned-cart",
        "application/yaml",
        "id: [",
    )
    .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (400, Some("invalid_journey_syntax")),
        "{err}"
    );

    // JSON is a document too; the id in it must be the one in the path.
    let welcome = json!({"id": "welcome", "entry": {"event": "Signed Up"},
        "steps": [{"id": "hello", "send": {"channel": "email", "subject": "Hi", "text": "Welcome"}}]});
    let (status, saved) = put(
        &t,
        "/api/v1/journeys/welcome",
        "application/json",
        &welcome.to_string(),
    )
    .await;
    assert_eq!(
        (status, saved["status"].as_str()),
        (201, Some("draft")),
        "{saved}"
    );
    let (status, err) = put(
        &t,
        "/api/v1/journeys/other",
        "application/json",
        &welcome.to_string(),
    )
    .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (400, Some("journey_id_mismatch"))
    );
    let (status, err) = put(&t, "/api/v1/journeys/welcome", "image/png", "x").await;
    assert_eq!(
        (status, err["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );

    // A template that does not parse is refused before anything is stored.
    let bad = cart.replace("your cart is waiting\"", "your cart is waiting {{ \"");
    let (status, err) = put(
        &t,
        "/api/v1/journeys/abandoned-cart",
        "application/yaml",
        &bad,
    )
    .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (400, Some("invalid_template")),
        "{err}"
    );
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("step `reminder`, subject"),
        "{err}"
    );
    // A live journey may not go to a destination the workspace does not have; a draft may.
    let hook = "id: hook\nstatus: live\nentry: {event: A}\nsteps:\n  - id: call\n    ad_audience: {destination: meta-buyers}\n";
    let (status, err) = put(&t, "/api/v1/journeys/hook", "application/yaml", hook).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (422, Some("unknown_destination")),
        "{err}"
    );
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("step `call` goes to destination `meta-buyers`"),
        "{err}"
    );
    let (status, _) = put(
        &t,
        "/api/v1/journeys/hook",
        "application/yaml",
        &hook.replace("live", "draft"),
    )
    .await;
    assert_eq!(status, 201);
    let (_, versions) = t.get("/api/v1/journeys/abandoned-cart").await;
    assert_eq!(versions["latest_version"], 2, "nothing refused was stored");

    let (status, list) = t.get("/api/v1/journeys").await;
    assert_eq!(status, 200);
    let ids: Vec<(&str, u64)> = list["journeys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["id"].as_str().unwrap(), j["version"].as_u64().unwrap()))
        .collect();
    assert_eq!(ids, [("abandoned-cart", 2), ("hook", 1), ("welcome", 1)]);

    // An analyst reads journeys and cannot save one.
    let (status, token) = common::call(
        &t,
        "POST",
        "/api/v1/tokens",
        json!({"name": "viewer", "role": "analyst"}),
    )
    .await;
    assert_eq!(status, 201, "{token}");
    let viewer = token["secret"].as_str().unwrap().to_string();
    let (status, _) = common::call_with(
        &t.client,
        &viewer,
        "GET",
        "/api/v1/journeys/welcome",
        json!(null),
    )
    .await;
    assert_eq!(status, 200);
    let auth = format!("Bearer {viewer}");
    let r = t
        .client
        .request(
            "PUT".parse().unwrap(),
            "/api/v1/journeys/welcome",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            welcome.to_string(),
        )
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (403, json!("forbidden"))
    );
    t.stop().await;
}

const VIP: &str = r#"
id: vip-welcome
status: live
entry:
  api: true
  key: properties.order_id
  reentry: never
steps:
  - id: hello
    send:
      channel: email
      purpose: transactional
      subject: "Welcome, {{ traits.first_name }}"
      text: "Your order {{ event.properties.order_id }} waits at {{ event.properties.store }}"
"#;

/// The emails sent so far (capture channel), oldest first: `(to, subject, text)`.
async fn emails(t: &common::TestNode) -> Vec<(String, String, String)> {
    let (_, m) = t.get("/api/v1/messages?channel=email&limit=500").await;
    let mut out: Vec<(String, String, String)> = m["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let f = |k: &str| m["message"][k].as_str().unwrap_or_default().to_string();
            (f("to"), f("subject"), f("text"))
        })
        .collect();
    out.reverse();
    out
}

async fn customers_enter_through_the_api(backend: Backend) {
    let t = start_on("journey-entries", backend, |_| {}).await;
    let (status, saved) = put(&t, "/api/v1/journeys/vip-welcome", "application/yaml", VIP).await;
    assert_eq!(status, 201, "{saved}");
    t.send(json!({"batch": [{"type": "identify", "userId": "lea",
        "traits": {"email": "lea@example.com", "first_name": "Léa"}}]}))
        .await;
    t.unified().await;
    let entry = json!({"identifier": {"type": "email", "value": " Lea@Example.com "},
        "properties": {"order_id": "o1", "store": "Lyon Part-Dieu"}, "message_id": "crm-1"});
    let (status, asked) = call(
        &t,
        "POST",
        "/api/v1/journeys/vip-welcome/entries",
        entry.clone(),
    )
    .await;
    assert_eq!(status, 202, "{asked}");
    assert_eq!(asked["message_id"], "crm-1");
    let lea = t.profile_of(ADMIN, "user_id", "lea").await.unwrap();
    assert_eq!(asked["profile_id"], lea["id"], "{asked}");
    let sent = eventually(std::time::Duration::from_secs(20), "her email", || async {
        let e = emails(&t).await;
        (!e.is_empty()).then_some(e)
    })
    .await;
    assert_eq!(
        sent[0],
        (
            "lea@example.com".to_string(),
            "Welcome, Léa".to_string(),
            "Your order o1 waits at Lyon Part-Dieu".to_string()
        )
    );
    // The same request again (a retry) is the same entry; another order is another run.
    let (status, _) = call(
        &t,
        "POST",
        "/api/v1/journeys/vip-welcome/entries",
        entry.clone(),
    )
    .await;
    assert_eq!(status, 202);
    let mut other = entry.clone();
    other["message_id"] = json!("crm-2");
    other["properties"]["order_id"] = json!("o2");
    let (status, _) = call(&t, "POST", "/api/v1/journeys/vip-welcome/entries", other).await;
    assert_eq!(status, 202);
    eventually(
        std::time::Duration::from_secs(20),
        "the second order's email",
        || async { (emails(&t).await.len() == 2).then_some(()) },
    )
    .await;
    // A new request for the first order again: `reentry: never`, nothing more.
    let mut again = entry.clone();
    again["message_id"] = json!("crm-3");
    let (status, _) = call(&t, "POST", "/api/v1/journeys/vip-welcome/entries", again).await;
    assert_eq!(status, 202);
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let all = emails(&t).await;
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[1].2, "Your order o2 waits at Lyon Part-Dieu");
    // The entry is in her timeline, as any event.
    let (_, events) = t
        .get(&format!(
            "/api/v1/profiles/{}/events",
            lea["id"].as_str().unwrap()
        ))
        .await;
    let asked_for: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "Journey Entry Requested")
        .map(|e| e["messageId"].as_str().unwrap())
        .collect();
    assert_eq!(asked_for.len(), 3, "{events}");

    // Refusals, each with its code.
    let (status, e) = call(
        &t,
        "POST",
        "/api/v1/journeys/vip-welcome/entries",
        json!({"identifier": {"type": "email", "value": "nobody@example.com"}}),
    )
    .await;
    assert_eq!(status, 404, "{e}");
    for (body, code) in [
        (
            json!({"identifier": {"type": "email", "value": "not an email"}}),
            "invalid_identifier",
        ),
        (json!({"identifier": "lea"}), "invalid_entry"),
        (
            json!({"identifier": {"type": "user_id", "value": "lea"}, "properties": {"journey": "x"}}),
            "invalid_entry",
        ),
        (
            json!({"identifier": {"type": "user_id", "value": "lea"}, "properties": [1]}),
            "invalid_entry",
        ),
        (
            json!({"identifier": {"type": "user_id", "value": "lea"}, "extra": 1}),
            "invalid_entry",
        ),
        (json!([1, 2]), "invalid_entry"),
    ] {
        let (status, e) = call(
            &t,
            "POST",
            "/api/v1/journeys/vip-welcome/entries",
            body.clone(),
        )
        .await;
        assert_eq!(
            (status, e["code"].as_str()),
            (400, Some(code)),
            "{body}: {e}"
        );
    }
    let (status, e) = call(
        &t,
        "POST",
        "/api/v1/journeys/nope/entries",
        json!({"identifier": {"type": "user_id", "value": "lea"}}),
    )
    .await;
    assert_eq!(status, 404, "{e}");
    let cart = abandoned_cart();
    put(
        &t,
        "/api/v1/journeys/abandoned-cart",
        "application/yaml",
        &cart,
    )
    .await;
    let (status, e) = call(
        &t,
        "POST",
        "/api/v1/journeys/abandoned-cart/entries",
        json!({"identifier": {"type": "user_id", "value": "lea"}}),
    )
    .await;
    assert_eq!(
        (status, e["code"].as_str()),
        (422, Some("journey_not_api")),
        "{e}"
    );
    t.stop().await;
}

const PREVIEWED: &str = r#"
id: preview
status: draft
entry: {event: Product Added}
steps:
  - id: wait
    wait: 1h
  - id: reminder
    send:
      channel: email
      subject: "{{ traits.first_name | default: 'Hello' }}, your cart is waiting"
      html: "<p>You left {{ event.properties.name }} in your cart.</p>"
      text: "You left {{ event.properties.name }} in your cart."
      fallback: [sms]
      variants:
        sms:
          text: "{{ event.properties.name }} is in your cart. STOP to opt out"
  - id: broken
    send:
      channel: sms
      text: "{{ 10 | divided_by: traits.zero }}"
"#;

async fn messages_preview_for_a_customer(backend: Backend) {
    let t = start_on("journey-preview", backend, |_| {}).await;
    let (status, saved) = put(
        &t,
        "/api/v1/journeys/preview",
        "application/yaml",
        PREVIEWED,
    )
    .await;
    assert_eq!(status, 201, "{saved}");
    t.send(json!({"batch": [{"type": "identify", "userId": "lea",
        "traits": {"email": "lea@example.com", "phone": "+33611223344", "first_name": "Léa", "zero": 0}}]}))
        .await;
    t.unified().await;
    let ask = |body: serde_json::Value| call(&t, "POST", "/api/v1/journeys/preview/preview", body);
    let (status, p) = ask(
        json!({"step": "reminder", "identifier": {"type": "email", "value": "lea@example.com"},
        "properties": {"name": "Red shoes"}}),
    )
    .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(
        p,
        json!({"channel": "email", "to": "lea@example.com", "subject": "Léa, your cart is waiting",
               "html": "<p>You left Red shoes in your cart.</p>", "text": "You left Red shoes in your cart.",
               "title": null})
    );
    // On its SMS fallback: her phone, the SMS variant's text.
    let lea = t.profile_of(ADMIN, "user_id", "lea").await.unwrap();
    let (status, p) = ask(
        json!({"step": "reminder", "profile_id": lea["id"], "channel": "sms",
        "properties": {"name": "Red shoes"}}),
    )
    .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["to"], "+33611223344");
    assert_eq!(p["text"], "Red shoes is in your cart. STOP to opt out");
    assert_eq!(p["subject"], json!(null));
    // What does not render says which part; nothing is sent, ever.
    let (status, e) = ask(json!({"step": "broken", "profile_id": lea["id"]})).await;
    assert_eq!(
        (status, e["code"].as_str()),
        (422, Some("render_failed")),
        "{e}"
    );
    assert!(e["message"].as_str().unwrap().starts_with("text:"), "{e}");
    for (body, status_code) in [
        (json!({"step": "wait", "profile_id": lea["id"]}), 404),
        (json!({"step": "nope", "profile_id": lea["id"]}), 404),
        (json!({"step": "reminder", "profile_id": "p_nobody"}), 404),
        (
            json!({"step": "reminder", "profile_id": lea["id"], "channel": "push"}),
            404,
        ),
        (
            json!({"step": "reminder", "profile_id": lea["id"], "channel": "fax"}),
            400,
        ),
        (json!({"profile_id": lea["id"]}), 400),
        (json!({"step": "reminder"}), 400),
        (
            json!({"step": "reminder", "profile_id": lea["id"], "extra": 1}),
            400,
        ),
    ] {
        let (status, e) = ask(body.clone()).await;
        assert_eq!(status, status_code, "{body}: {e}");
    }
    let (_, messages) = t.get("/api/v1/messages?channel=email").await;
    assert!(messages["messages"].as_array().unwrap().is_empty());
    t.stop().await;
}

on_each_store!(
    journeys_are_versioned_documents,
    customers_enter_through_the_api,
    messages_preview_for_a_customer
);

fn parcours(data: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_parcours"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `parcours journey validate|diff|apply`, as a user runs them against the embedded store.
#[test]
fn the_cli_validates_diffs_and_applies() {
    let dir = common::temp_dir("journey-cli");
    let data = dir.join("data");
    let file = dir.join("cart.yaml");
    let file_s = file.to_str().unwrap();
    std::fs::write(&file, abandoned_cart()).unwrap();
    let (code, out, _) = parcours(&data, &["journey", "validate", file_s]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("step opened: wait_for → end on the event, sms on timeout"),
        "{out}"
    );

    let broken = dir.join("broken.yaml");
    std::fs::write(
        &broken,
        abandoned_cart().replace("on_timeout: sms", "on_timeout: sms2"),
    )
    .unwrap();
    let (code, out, err) = parcours(&data, &["journey", "validate", broken.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(
        out.trim(),
        format!(
            "{}:25:17: invalid_journey: on_timeout: there is no step `sms2`",
            broken.display()
        )
    );
    assert!(err.contains("1 problem"), "{err}");

    let (code, _, err) = parcours(&data, &["workspace", "create", "Shop"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = parcours(&data, &["journey", "diff", file_s]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("journey `abandoned-cart` is new"), "{out}");
    let (code, out, err) = parcours(&data, &["journey", "apply", file_s]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("saved journey `abandoned-cart` version 1"),
        "{out}"
    );

    std::fs::write(&file, abandoned_cart().replace("wait: 1h", "wait: 2h")).unwrap();
    let (_, out, _) = parcours(&data, &["journey", "diff", file_s]);
    assert!(out.contains("-     wait: 1h\n+     wait: 2h"), "{out}");
    assert!(
        out.contains("runs in flight stay on the version they started on"),
        "{out}"
    );
    let (code, out, _) = parcours(&data, &["journey", "apply", file_s]);
    assert_eq!(code, 0);
    assert!(
        out.contains("saving version 2")
            && out.contains("saved journey `abandoned-cart` version 2"),
        "{out}"
    );
    let (code, out, _) = parcours(&data, &["journey", "apply", file_s]);
    assert_eq!(code, 0);
    assert!(out.contains("nothing saved"), "{out}");
    // A broken document saves nothing.
    let (code, _, _) = parcours(&data, &["journey", "apply", broken.to_str().unwrap()]);
    assert_eq!(code, 1);
    let (_, out, _) = parcours(&data, &["journey", "diff", file_s]);
    assert!(out.contains("version 2 is this document"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
