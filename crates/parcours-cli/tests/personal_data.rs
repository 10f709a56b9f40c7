//! Roles on every endpoint, generated from the API's OpenAPI document and the console's route
//! table so that a new endpoint cannot be forgotten:
//! - every read is asked by an analyst, a read-only token and another workspace's admin on the
//!   demo, and no answer holds one of the demo customers' emails, phones or names (an admin's
//!   answers do: the probe can see them); the same for every console page and an analyst;
//! - every change is refused (`403`) to an analyst and a read-only token, before anything of
//!   the request is read; a marketer's and an agent's are refused or let through as the
//!   matrix `CHANGES` says, and a change the matrix does not list fails the test; another
//!   workspace's admin naming this workspace's things finds nothing;
//! - customer service (the agent role) reads a customer and changes no marketing.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use parcours_cli::commands::demo_setup;
use parcours_cli::config::Config;
use parcours_testkit::http::Client;
use rusqlite::{Connection, OpenFlags};
use serde_json::json;

/// Operations that change nothing though they are posted (a question with a body): every
/// role may ask them.
const READS_BY_POST: [(&str, &str); 3] = [
    // Prices a basket as every channel would.
    ("post", "/api/v1/commerce/baskets/evaluate"),
    // Replays a journey document over the stored events: counts only, nothing saved.
    ("post", "/api/v1/journeys/simulate"),
    // A webhook source's mapping tried on a sample payload the caller gives.
    ("post", "/api/v1/webhooks/preview"),
];

/// Who, of the marketer and the agent, may make each change of the API (admins make them
/// all; analysts and read-only tokens none). A new change must be listed here.
const CHANGES: &[(&str, &[&str])] = &[
    ("POST /api/v1/audiences", &["marketer"]),
    ("DELETE /api/v1/audiences/{id}", &["marketer"]),
    ("PUT /api/v1/audiences/{id}", &["marketer"]),
    ("POST /api/v1/channels/test", &[]),
    ("PUT /api/v1/commerce/items/{sku}", &[]),
    ("PUT /api/v1/commerce/locations/{id}", &[]),
    (
        "POST /api/v1/commerce/loyalty/members/{card}/redemptions",
        &[],
    ),
    (
        "POST /api/v1/commerce/loyalty/members/{card}/redemptions/{id}/refund",
        &[],
    ),
    ("PUT /api/v1/commerce/loyalty/program", &[]),
    ("DELETE /api/v1/commerce/offers/{id}", &[]),
    ("PUT /api/v1/commerce/offers/{id}", &[]),
    ("POST /api/v1/commerce/orders", &[]),
    ("POST /api/v1/commerce/orders/{id}/returns", &[]),
    ("POST /api/v1/commerce/orders/{id}/status", &[]),
    ("POST /api/v1/commerce/reservations", &[]),
    ("DELETE /api/v1/commerce/reservations/{reference}", &[]),
    ("POST /api/v1/commerce/reservations/{reference}/fulfil", &[]),
    ("POST /api/v1/commerce/sales", &[]),
    ("POST /api/v1/commerce/stock-alerts", &[]),
    ("POST /api/v1/commerce/stock/movements", &[]),
    ("POST /api/v1/computed-traits", &["marketer"]),
    ("DELETE /api/v1/computed-traits/{id}", &["marketer"]),
    ("PUT /api/v1/computed-traits/{id}", &["marketer"]),
    ("POST /api/v1/destinations", &["marketer"]),
    ("DELETE /api/v1/destinations/{id}", &["marketer"]),
    ("PUT /api/v1/destinations/{id}", &["marketer"]),
    ("POST /api/v1/destinations/{id}/replay", &["marketer"]),
    ("PUT /api/v1/journeys/{id}", &["marketer"]),
    ("POST /api/v1/journeys/{id}/entries", &["marketer"]),
    ("POST /api/v1/journeys/{id}/preview", &["marketer", "agent"]),
    ("POST /api/v1/measure/spend", &["marketer"]),
    ("POST /api/v1/merges/{id}/undo", &[]),
    ("POST /api/v1/messages/receipts", &["marketer"]),
    ("POST /api/v1/privacy/requests", &["agent"]),
    ("POST /api/v1/privacy/requests/{id}/extend", &[]),
    ("PUT /api/v1/privacy/settings", &[]),
    ("POST /api/v1/profiles/{id}/unmerge", &[]),
    ("POST /api/v1/quarantine/{id}/discard", &[]),
    ("POST /api/v1/quarantine/{id}/replay", &[]),
    ("POST /api/v1/sources", &[]),
    ("DELETE /api/v1/sources/{id}", &[]),
    ("PATCH /api/v1/sources/{id}", &[]),
    ("POST /api/v1/sources/{id}/rotate", &[]),
    (
        "DELETE /api/v1/suppressions/{channel}/{address}",
        &["marketer"],
    ),
    (
        "PUT /api/v1/suppressions/{channel}/{address}",
        &["marketer"],
    ),
    ("POST /api/v1/tokens", &[]),
    ("DELETE /api/v1/tokens/{id}", &[]),
    ("POST /api/v1/tokens/{id}/rotate", &[]),
    ("PUT /api/v1/workspace/contact-policy", &[]),
    ("PUT /api/v1/workspace/identity-rules", &[]),
    ("POST /api/v1/workspace/identity-rules/preview", &[]),
    ("POST /api/v1/workspaces", &[]),
];

/// Every customer's email, phone and last name in the demo store.
fn personal_data(dir: &std::path::Path) -> BTreeSet<String> {
    let c = Connection::open_with_flags(
        dir.join("parcours.projections.sqlite3"),
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut out = BTreeSet::new();
    let mut st = c
        .prepare("SELECT id_value FROM identifiers WHERE id_type IN ('email', 'phone')")
        .unwrap();
    for v in st.query_map([], |r| r.get::<_, String>(0)).unwrap() {
        out.insert(v.unwrap());
    }
    let mut st = c
        .prepare(
            "SELECT json_extract(doc, '$.traits.last_name.value') FROM profiles
             WHERE json_extract(doc, '$.traits.last_name.value') IS NOT NULL",
        )
        .unwrap();
    for v in st.query_map([], |r| r.get::<_, String>(0)).unwrap() {
        let v = v.unwrap();
        // Short names could be any word of an answer; the demo's are longer.
        if v.chars().count() >= 5 {
            out.insert(v);
        }
    }
    out
}

async fn token(client: &Client, admin: &str, role: &str) -> String {
    let r = client
        .post(
            "/api/v1/tokens",
            admin,
            json!({"name": format!("probe {role}"), "role": role}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.json());
    r.json()["secret"].as_str().unwrap().to_string()
}

/// A value for a path or query parameter: the demo's own ids where the path names them.
fn value_for(path: &str, name: &str, ids: &BTreeMap<&str, String>) -> String {
    let key = match name {
        "id" | "profile" | "card" | "key" | "delivery" | "order" | "number" => {
            let section = path
                .trim_start_matches("/api/v1/")
                .split('/')
                .take_while(|s| !s.starts_with('{'))
                .collect::<Vec<_>>()
                .join("/");
            match (section.as_str(), name) {
                (_, "profile") => "profile",
                ("profiles", _) => "profile",
                ("audiences", _) => "audience",
                ("journeys", _) => "journey",
                ("sources", _) => "source",
                ("destinations", _) => "destination",
                ("messages", _) => "message",
                ("commerce/orders", _) => "order",
                ("commerce/members", _) => "card",
                ("computed-traits", _) => "trait",
                // Numbered: a number that names nothing.
                ("merges" | "quarantine", _) => "number",
                _ => "other",
            }
        }
        "journey" => "journey",
        "sku" | "skus" => "sku",
        "type" => return "email".into(),
        "value" => return ids["email"].clone(),
        "channel" => return "email".into(),
        _ => "other",
    };
    ids.get(key).cloned().unwrap_or_else(|| "x".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_keeps_personal_data_and_changes_to_the_roles_allowed() {
    let dir = common::temp_dir("personal-data");
    let mut config = Config {
        data_dir: dir.clone(),
        ..Config::default()
    };
    config.http.port = 0;
    let (node, demo) = demo_setup(&config, 60, 14, false).await.unwrap();
    let demo = demo.expect("a fresh store gets the demo");
    let client = Client::new(node.url());
    let admin = demo.admin_token.as_str();
    let markers = personal_data(&dir);
    assert!(markers.len() > 40, "{markers:?}");

    // The demo's own ids, for the paths that name one.
    let get = |path: String| {
        let client = client.clone();
        async move { client.get(&path, admin).await.unwrap().json() }
    };
    let mut ids: BTreeMap<&str, String> = BTreeMap::new();
    let email = markers.iter().find(|m| m.contains('@')).unwrap().clone();
    let p = get(format!("/api/v1/profiles/lookup?type=email&value={email}")).await;
    ids.insert("profile", p["id"].as_str().unwrap().to_string());
    ids.insert("email", email);
    ids.insert("audience", "vip".into());
    ids.insert("journey", "welcome".into());
    ids.insert("order", "W-DEMO-1".into());
    ids.insert("number", "999999".into());
    let sources = get("/api/v1/sources".into()).await;
    ids.insert(
        "source",
        sources["sources"][0]["id"].as_str().unwrap().to_string(),
    );
    let messages = get("/api/v1/messages?channel=email".into()).await;
    if let Some(k) = messages["messages"][0]["key"].as_str() {
        ids.insert("message", k.to_string());
    }
    let order = get("/api/v1/commerce/orders/W-DEMO-1".into()).await;
    if let Some(card) = order["member"]["card"].as_str() {
        ids.insert("card", card.to_string());
    }

    // Data behind the endpoints the demo leaves empty: a suppressed address, a customer
    // waiting for an item.
    let email = ids["email"].clone();
    let r = client
        .put(&format!("/api/v1/suppressions/email/{email}"), admin, "{}")
        .await
        .unwrap();
    assert!(r.status < 300, "{}", r.json());
    let sku = order["lines"][0]["sku"].as_str().unwrap().to_string();
    let r = client
        .post(
            "/api/v1/commerce/stock-alerts",
            admin,
            json!({"sku": sku, "location": "store_2", "customer": {"email": email}, "quantity": 50})
                .to_string(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.json());
    ids.insert("sku", sku);

    let analyst = token(&client, admin, "analyst").await;
    let read_only = token(&client, admin, "read_only").await;
    // The admin of another workspace (the demo's token is the instance's admin too).
    let r = client
        .post("/api/v1/workspaces", admin, r#"{"name": "Other brand"}"#)
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.json());
    let other = r.json()["admin_token"].as_str().unwrap().to_string();
    let document = client.get("/api/openapi.json", "").await.unwrap().json();
    let mut leaks: Vec<String> = Vec::new();
    let mut admin_sees = 0;
    let mut asked = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        let Some(op) = item.get("get") else { continue };
        // The live stream never ends: checked by its status below.
        if path.ends_with("/live") {
            continue;
        }
        let mut url = path.to_string();
        let mut query = Vec::new();
        for p in op["parameters"].as_array().into_iter().flatten() {
            let name = p["name"].as_str().unwrap();
            let v = value_for(path, name, &ids);
            match p["in"].as_str() {
                Some("path") => url = url.replace(&format!("{{{name}}}"), &v),
                Some("query") if p["required"] == true || name == "channel" => {
                    query.push(format!("{name}={v}"))
                }
                _ => {}
            }
        }
        if !query.is_empty() {
            url = format!("{url}?{}", query.join("&"));
        }
        asked += 1;
        let by_admin = client.get(&url, admin).await.unwrap();
        let text = String::from_utf8_lossy(&by_admin.body).to_string();
        if markers.iter().any(|m| text.contains(m.as_str())) {
            admin_sees += 1;
        }
        for (role, t) in [
            ("analyst", &analyst),
            ("read_only", &read_only),
            ("another workspace's admin", &other),
        ] {
            let r = client.get(&url, t).await.unwrap();
            let text = String::from_utf8_lossy(&r.body);
            // What the request itself named (a refusal quoting it) is not a leak.
            if let Some(m) = markers
                .iter()
                .find(|m| text.contains(m.as_str()) && !url.contains(m.as_str()))
            {
                leaks.push(format!("{role} GET {url} ({}) shows {m}", r.status));
            }
        }
    }
    // Customer service reads a customer to help her, and changes no marketing.
    let agent = token(&client, admin, "agent").await;
    let r = client
        .get(&format!("/api/v1/profiles/{}", ids["profile"]), &agent)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.json());
    let r = client
        .post(
            "/api/v1/audiences",
            &agent,
            json!({"id": "mine", "name": "Mine", "definition": "seen on web"}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.json());
    // The live stream of a source's events never ends: refused outright.
    let live = format!("/api/v1/sources/{}/live", ids["source"]);
    for t in [&analyst, &read_only] {
        assert_eq!(client.get(&live, t).await.unwrap().status, 403);
    }

    // The console's pages, from its route table, for an analyst's session.
    let routes = include_str!("../../parcours-console/src/lib.rs");
    let pages: Vec<String> = routes
        .split(".route(")
        .skip(1)
        .filter_map(|r| {
            let path = r.split('"').nth(1)?;
            let rest = r.split('"').nth(2)?;
            (path.starts_with("/console/")
                && rest
                    .trim_start_matches([',', ' ', '\n'])
                    .starts_with("get(")
                && !path.contains("assets")
                && !path.contains("sign-in")
                && !path.contains("lang"))
            .then(|| path.to_string())
        })
        .collect();
    assert!(pages.len() > 25, "{pages:?}");
    let mut console_ids = ids.clone();
    console_ids.insert("other", "x".into());
    let (as_admin, as_analyst) = (
        common::console_session(&client, admin).await,
        common::console_session(&client, &analyst).await,
    );
    let mut admin_pages = 0;
    for page in &pages {
        let section = page
            .trim_start_matches("/console/")
            .split('/')
            .next()
            .unwrap();
        let mut url = page.clone();
        for (name, key) in [
            (
                "{id}",
                match section {
                    "customers" => "profile",
                    "audiences" => "audience",
                    "journeys" => "journey",
                    "commerce" => "order",
                    _ => "other",
                },
            ),
            ("{key}", "message"),
            ("{card}", "card"),
            ("{merge}", "other"),
        ] {
            url = url.replace(
                name,
                &console_ids.get(key).cloned().unwrap_or_else(|| "x".into()),
            );
        }
        let get = |cookie: &str| {
            let (client, url, cookie) = (client.clone(), url.clone(), cookie.to_string());
            async move {
                let r = client
                    .request("GET".parse().unwrap(), &url, &[("cookie", &cookie)], "")
                    .await
                    .unwrap();
                (r.status, String::from_utf8_lossy(&r.body).to_string())
            }
        };
        let (_, text) = get(&as_admin).await;
        if markers.iter().any(|m| text.contains(m.as_str())) {
            admin_pages += 1;
        }
        let (status, text) = get(&as_analyst).await;
        if let Some(m) = markers.iter().find(|m| text.contains(m.as_str())) {
            leaks.push(format!("analyst console {url} ({status}) shows {m}"));
        }
    }
    // Every change the API offers (its OpenAPI document's other methods under /api/v1) is
    // refused to an analyst and a read-only token before anything is read of the request.
    let mut not_refused = Vec::new();
    let mut changes = 0;
    let marketer = token(&client, admin, "marketer").await;
    let (mut observed, mut wrong, mut unlisted) = (Vec::new(), Vec::new(), BTreeSet::new());
    for (path, item) in document["paths"].as_object().unwrap() {
        if !path.starts_with("/api/v1/") {
            continue;
        }
        for method in ["post", "put", "patch", "delete"] {
            let Some(op) = item.get(method) else { continue };
            if READS_BY_POST.contains(&(method, path.as_str())) {
                continue;
            }
            let mut url = path.to_string();
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["in"] == "path" {
                    let name = p["name"].as_str().unwrap();
                    url = url.replace(&format!("{{{name}}}"), &value_for(path, name, &ids));
                }
            }
            changes += 1;
            // Marketers and agents: each change is refused or let through as the matrix says.
            for (role, t) in [("marketer", &marketer), ("agent", &agent)] {
                let r = client
                    .request(
                        method.to_uppercase().parse().unwrap(),
                        &url,
                        &[("authorization", &format!("Bearer {t}"))],
                        "{}",
                    )
                    .await
                    .unwrap();
                let key = format!("{} {path}", method.to_uppercase());
                observed.push(format!("{role} {key} {}", r.status != 403));
                match CHANGES.iter().find(|(k, _)| *k == key) {
                    None => unlisted.insert(key),
                    Some((_, allowed)) => {
                        if allowed.contains(&role) == (r.status == 403) {
                            wrong.push(format!("{role} {key}: {} ({})", r.status, r.json()));
                        }
                        true
                    }
                };
            }
            for (role, t) in [("analyst", &analyst), ("read_only", &read_only)] {
                let r = client
                    .request(
                        method.to_uppercase().parse().unwrap(),
                        &url,
                        &[("authorization", &format!("Bearer {t}"))],
                        "{}",
                    )
                    .await
                    .unwrap();
                if r.status != 403 {
                    not_refused.push(format!(
                        "{role} {} {url}: {}",
                        method.to_uppercase(),
                        r.status
                    ));
                }
            }
        }
    }
    assert!(changes > 40, "{changes} changes asked");
    // Another workspace's admin names this workspace's things in vain: not found, and they
    // stay.
    for (method, url) in [
        ("DELETE", format!("/api/v1/sources/{}", ids["source"])),
        ("POST", format!("/api/v1/sources/{}/rotate", ids["source"])),
        ("DELETE", "/api/v1/destinations/x".to_string()),
        (
            "POST",
            format!("/api/v1/profiles/{}/unmerge", ids["profile"]),
        ),
    ] {
        let r = client
            .request(
                method.parse().unwrap(),
                &url,
                &[("authorization", &format!("Bearer {other}"))],
                "{}",
            )
            .await
            .unwrap();
        assert!(
            r.status == 404 || r.status == 400,
            "another workspace's admin {method} {url}: {} {}",
            r.status,
            r.json()
        );
    }
    let still = get("/api/v1/sources".into()).await;
    assert!(
        still["sources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == ids["source"].as_str()),
        "{still}"
    );
    if std::env::var("PARCOURS_PRINT_MATRIX").is_ok() {
        println!("{}", observed.join("\n"));
    }
    assert!(
        unlisted.is_empty(),
        "changes the matrix does not list (say which roles may make them in CHANGES):\n{}",
        unlisted.into_iter().collect::<Vec<_>>().join("\n")
    );
    assert!(
        wrong.is_empty(),
        "{} changes answered against the matrix:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(
        not_refused.is_empty(),
        "{} changes not refused:\n{}",
        not_refused.len(),
        not_refused.join("\n")
    );
    assert!(asked > 50, "{asked} reads asked");
    assert!(
        admin_sees >= 5,
        "the admin reads personal data somewhere ({admin_sees})"
    );
    assert!(
        admin_pages >= 3,
        "the admin's console shows personal data ({admin_pages})"
    );
    assert!(
        leaks.is_empty(),
        "{} leaks:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}
