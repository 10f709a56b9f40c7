//! The demo says what is true: it runs the demo's own set-up at a small size and checks every
//! figure and every example its banner prints against the API.

#[macro_use]
mod common;

use parcours_cli::commands::demo_setup;
use parcours_cli::config::Config;
use parcours_core::Channel;
use parcours_testkit::http::Client;
use serde_json::Value;

async fn get(client: &Client, token: &str, path: &str) -> (u16, Value) {
    let r = client.get(path, token).await.unwrap();
    (r.status, r.json())
}

/// The profile an identifier finds, as the banner's reader would look it up.
async fn lookup(client: &Client, token: &str, kind: &str, value: &str) -> (u16, Value) {
    let value = value.replace('+', "%2B");
    get(
        client,
        token,
        &format!("/api/v1/profiles/lookup?type={kind}&value={value}"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_banner_is_read_from_the_data() {
    let dir = common::temp_dir("demo");
    let mut config = Config {
        data_dir: dir.clone(),
        ..Config::default()
    };
    config.http.port = 0;
    let (node, demo) = demo_setup(&config, 400, 60, false).await.unwrap();
    let demo = demo.expect("a fresh store gets the demo");
    let client = Client::new(node.url());
    let token = demo.admin_token.as_str();
    let banner = demo.banner().join("\n");
    // The console, and the token to sign in with.
    assert!(
        banner.contains(&format!(
            "console:      {}/console      sign in with the admin token: {token}",
            node.url()
        )),
        "{banner}"
    );

    // Every audience's figure is its size, and its example is a member found by the
    // identifier the banner prints.
    assert!(demo.audiences.len() >= 6, "{banner}");
    for a in &demo.audiences {
        let (status, audience) = get(&client, token, &format!("/api/v1/audiences/{}", a.id)).await;
        assert_eq!(status, 200, "{audience}");
        assert_eq!(audience["size"], a.size, "{} in\n{banner}", a.id);
        assert!(
            banner.contains(&format!("{:>6}  {}", a.size, a.name)),
            "{banner}"
        );
        let Some((kind, value, profile)) = &a.example else {
            assert_eq!(a.size, 0, "{} has members but no example", a.id);
            continue;
        };
        let (status, found) = lookup(&client, token, kind, value).await;
        assert_eq!(status, 200, "{kind} {value}: {found}");
        assert_eq!(&found["id"], profile, "{kind} {value}");
        let (_, mine) = get(
            &client,
            token,
            &format!("/api/v1/profiles/{profile}/audiences"),
        )
        .await;
        let ids: Vec<&str> = mine["audiences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["audience_id"].as_str().unwrap())
            .collect();
        assert!(
            ids.contains(&a.id.as_str()),
            "{kind} {value} is not in {}: {mine}",
            a.id
        );
    }
    // The stories the demo tells have members at this size.
    for id in [
        "vip",
        "lapsed",
        "store_only_never_app",
        "online_cart_store_purchase",
    ] {
        let a = demo.audiences.iter().find(|a| a.id == id).unwrap();
        assert!(
            a.size > 0 && a.example.is_some(),
            "{id} is empty:\n{banner}"
        );
    }
    // Lapsed members ordered, and store-only members were never seen online.
    let lapsed = demo.audiences.iter().find(|a| a.id == "lapsed").unwrap();
    let (_, p) = get(
        &client,
        token,
        &format!(
            "/api/v1/profiles/{}/computed-traits",
            lapsed.example.as_ref().unwrap().2
        ),
    )
    .await;
    assert!(p["computed_traits"]["orders"].as_u64() >= Some(1), "{p}");
    let store_only = demo
        .audiences
        .iter()
        .find(|a| a.id == "store_only_never_app")
        .unwrap();
    let (_, p) = get(
        &client,
        token,
        &format!(
            "/api/v1/profiles/{}",
            store_only.example.as_ref().unwrap().2
        ),
    )
    .await;
    let channels: Vec<&String> = p["channels"].as_object().unwrap().keys().collect();
    assert!(
        channels
            .iter()
            .all(|c| !["web", "ios", "android"].contains(&c.as_str())),
        "{p}"
    );

    // Every person a scenario names exists, and one line names one person.
    for h in &demo.scenarios {
        let mut ids = std::collections::BTreeSet::new();
        for (kind, value) in &h.examples {
            let (status, found) = lookup(&client, token, kind, value).await;
            assert_eq!(status, 200, "{kind} {value} from {:?}: {found}", h.text);
            ids.insert(found["id"].as_str().unwrap().to_string());
        }
        assert!(ids.len() <= 1, "{:?} names several people", h.text);
    }
    // Shop-floor tablets are in the store.
    let store = node.engine.store().clone();
    let tablet: Vec<Channel> = store
        .events_after(0, 1_000_000)
        .unwrap()
        .into_iter()
        .filter(|e| {
            e.anonymous_id
                .as_deref()
                .is_some_and(|a| a.starts_with("tablet-"))
        })
        .map(|e| e.channel)
        .collect();
    assert!(!tablet.is_empty());
    assert!(tablet.iter().all(|c| *c == Channel::Store), "{tablet:?}");
    // The demo's journeys are saved, as the banner lists them; the abandoned cart is the one
    // the docs open with; the last day of history entered the live ones.
    assert_eq!(
        parcours_demo::JOURNEYS[0].1,
        common::journeys::abandoned_cart()
    );
    let (_, journeys) = get(&client, token, "/api/v1/journeys").await;
    let saved: Vec<(&str, &str)> = journeys["journeys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["id"].as_str().unwrap(), j["status"].as_str().unwrap()))
        .collect();
    assert_eq!(saved.len(), parcours_demo::JOURNEYS.len(), "{journeys}");
    for (id, status) in &saved {
        assert!(
            banner.contains(&format!("  {id:<18} {status:<6}")),
            "{id}:\n{banner}"
        );
    }
    assert_eq!(saved.iter().filter(|(_, s)| *s == "live").count(), 5);
    common::eventually(
        std::time::Duration::from_secs(60),
        "the last day's carts and orders, and the lapsed customers, enter the live journeys",
        || async {
            let (_, cart) = get(&client, token, "/api/v1/journeys/abandoned-cart").await;
            let (_, nps) = get(&client, token, "/api/v1/journeys/post-purchase-nps").await;
            let (_, lapsed) = get(&client, token, "/api/v1/journeys/win-back").await;
            let runs = |j: &Value| {
                j["runs"]["active"].as_u64().unwrap() + j["runs"]["ended"].as_u64().unwrap()
            };
            (runs(&cart) > 0 && runs(&nps) > 0 && runs(&lapsed) > 0).then_some(())
        },
    )
    .await;
    // The customers who signed up as the demo started each got the welcome series' first
    // email, in the capture channel.
    let live = demo
        .scenarios
        .iter()
        .find(|h| h.text.starts_with("Just now:"))
        .expect("the live sign-ups' line");
    let email = live.examples[0].1.clone();
    let subject = common::eventually(
        std::time::Duration::from_secs(30),
        "the live sign-ups' welcome emails",
        || async {
            let (_, v) = get(&client, token, "/api/v1/messages?channel=email&limit=500").await;
            v["messages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["message"]["to"] == email.as_str())
                .map(|m| m["message"]["subject"].as_str().unwrap_or("").to_string())
        },
    )
    .await;
    assert!(subject.starts_with("Welcome to Maison Azur, "), "{subject}");
    // The shops sell through the commerce API: the omnichannel customer's click & collect
    // order waits at Lyon Part-Dieu, its last unit held, and her till sale earned points.
    let (status, order) = get(&client, token, "/api/v1/commerce/orders/W-DEMO-1").await;
    assert_eq!(status, 200, "{order}");
    assert_eq!(order["status"], "ready_for_pickup", "{order}");
    // Priced by the welcome offer, as every channel would price it.
    assert_eq!(order["offers"][0]["offer"], "bienvenue", "{order}");
    assert_eq!(order["offers"][0]["coupon"], "BIENVENUE10", "{order}");
    let price = order["lines"][0]["unit_price_minor"].as_i64().unwrap();
    assert_eq!(
        order["total_minor"].as_i64().unwrap(),
        price - (price * 10 + 50) / 100,
        "{order}"
    );
    assert!(banner.contains("BIENVENUE10"), "{banner}");
    let sku = order["lines"][0]["sku"].as_str().unwrap().to_string();
    let (_, a) = get(
        &client,
        token,
        &format!("/api/v1/commerce/availability?skus={sku}&location=store_2"),
    )
    .await;
    assert_eq!(a["items"][0]["available"], 0, "the last unit is held: {a}");
    let card = order["member"]
        .as_str()
        .expect("the order's member")
        .to_string();
    assert!(banner.contains(&card), "{banner}");
    let (_, member) = get(
        &client,
        token,
        &format!("/api/v1/commerce/loyalty/members/{card}"),
    )
    .await;
    assert!(
        member["balance"]["pending"].as_i64().unwrap() > 0,
        "{member}"
    );
    let (_, locations) = get(&client, token, "/api/v1/commerce/locations").await;
    assert_eq!(
        locations["locations"].as_array().unwrap().len(),
        6,
        "{locations}"
    );
    // The banner's totals are the store's.
    let (_, status) = get(&client, token, "/api/v1/status").await;
    assert_eq!(status["profiles"], demo.profiles, "{status}");
    assert!(demo.events > 0 && demo.profiles > 0, "{banner}");
    node.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
