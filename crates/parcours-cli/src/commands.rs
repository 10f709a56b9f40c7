//! The commands of the `parcours` binary.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parcours_engine::clock::Moment;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use parcours_api::{hash_secret, keys, provision_workspace};
use parcours_core::channel::Channel;
use parcours_core::rules::IdentityRulesConfig;
use parcours_core::spec::{check_event, Checked, Edge, Violation};
use parcours_core::time::Clock;
use parcours_demo::brand::{self as demo, DemoConfig};
use parcours_demo::http::Client;
use parcours_engine::SystemClock;
use parcours_store::{IngestBatch, Source, Store};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::node::{bootstrap, hold_store, open_store, print_provisioned, shutdown_signal, Node};

fn now() -> i64 {
    SystemClock.now()
}

fn bar(total: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(&format!(
            "{what} [{{bar:40}}] {{pos}}/{{len}} ({{per_sec}}, eta {{eta}})"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb
}

pub async fn serve(config: Config) -> anyhow::Result<()> {
    let lock = hold_store(
        &config,
        &format!(
            "a node serving on {}:{}",
            config.http.host, config.http.port
        ),
    )?;
    let store = open_store(&config)?;
    // The listener is bound before anything is created: a start that fails (the port is
    // taken) leaves the store as it was, and the next start creates and shows the secrets.
    let node = Node::start_unready(&config, store.clone()).await?;
    let created = match bootstrap(store.as_ref(), &config, now()) {
        Ok(created) => created,
        Err(e) => {
            node.stop().await;
            return Err(e);
        }
    };
    node.set_ready();
    eprintln!(
        "Parcours is listening on {} (data in {})",
        node.url(),
        config.location()
    );
    if let Some(p) = &created {
        crate::node::print_provisioned_from(
            p,
            &node.url(),
            config.bootstrap.write_key.is_some(),
            config.bootstrap.admin_token.is_some(),
        );
    }
    shutdown_signal().await;
    eprintln!("shutting down: finishing in-flight batches");
    node.stop().await;
    drop(lock);
    Ok(())
}

pub async fn demo(
    mut config: Config,
    customers: usize,
    days: u32,
    keep: bool,
) -> anyhow::Result<()> {
    if config.data_dir == Config::default().data_dir {
        config.data_dir = "./parcours-demo-data".into();
    }
    if config.postgres().is_some() {
        let store = open_store(&config)?;
        if !keep && !store.workspaces()?.is_empty() {
            bail!(
                "{} already holds data; run the demo on an empty database, or pass --keep to serve what is there",
                config.location()
            );
        }
    }
    let lock = hold_store(&config, "a demo")?;
    if config.postgres().is_none() && !keep {
        // Everything but the lock this process holds.
        let mut cleared = false;
        for entry in std::fs::read_dir(&config.data_dir)? {
            let path = entry?.path();
            if path.file_name().is_some_and(|n| n == "parcours.lock") {
                continue;
            }
            cleared = true;
            if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            }
            .with_context(|| format!("cannot clear {}", path.display()))?;
        }
        if cleared {
            eprintln!(
                "starting a fresh demo in {} (the previous demo data is replaced)",
                config.location()
            );
        }
    }
    let (node, load) = demo_start(&config, customers, days).await?;
    let url = node.url();
    let Some(load) = load else {
        eprintln!("reusing the demo data in {}", config.location());
        eprintln!("Parcours demo is running on {url}; Ctrl-C to stop.");
        shutdown_signal().await;
        node.stop().await;
        drop(lock);
        return Ok(());
    };
    // Usable at once: the history loads in the background, and profiles and audiences fill
    // up as it does.
    println!("Parcours demo is serving on {url} while it loads the demo history (Ctrl-C to stop).");
    println!("  write key (web shop): {}", load.web_key());
    println!("  admin token:          {}", load.admin_token());
    println!("  console:              {url}/console (sign in with the admin token)");
    println!("  the API answers now; profiles and audiences fill up as the history arrives.");
    let loading = tokio::spawn(load.run(true));
    tokio::select! {
        loaded = loading => {
            match loaded {
                Ok(Ok(demo)) => {
                    for line in demo.banner() {
                        println!("{line}");
                    }
                    eprintln!("Parcours demo is running on {url}; Ctrl-C to stop.");
                }
                Ok(Err(e)) => eprintln!("loading the demo history failed: {e:#} (the node keeps serving what was loaded)"),
                Err(e) => eprintln!("loading the demo history stopped: {e}"),
            }
            shutdown_signal().await;
        }
        () = shutdown_signal() => {
            eprintln!("stopping while the history was loading");
        }
    }
    shutdown_signal().await;
    node.stop().await;
    drop(lock);
    Ok(())
}

/// What the demo set up, for its banner (and the test that holds the banner to the data).
pub struct Demo {
    pub url: String,
    pub admin_token: String,
    pub web_key: String,
    pub workspace: String,
    pub events: u64,
    pub profiles: u64,
    /// The scenarios, with the people they name.
    pub scenarios: Vec<demo::Highlight>,
    /// Who ended up where: read from the audiences once computed.
    pub audiences: Vec<AudienceLine>,
}

/// One audience of the demo: its size and a member worth looking at.
pub struct AudienceLine {
    pub id: String,
    pub name: String,
    pub size: u64,
    pub what: &'static str,
    /// A member: `(identifier type, value, profile id)`.
    pub example: Option<(String, String, String)>,
}

impl Demo {
    pub fn banner(&self) -> Vec<String> {
        let (url, token) = (&self.url, &self.admin_token);
        let mut out = vec![
            String::new(),
            "Parcours demo: a fashion retailer with a web shop, two apps, 5 stores, email, SMS, a call centre and a chatbot.".into(),
            format!("  {} events unified into {} profiles", self.events, self.profiles),
            format!("  tracking API: {url}/v1/batch   write key (web shop): {}", self.web_key),
            format!("  console:      {url}/console      sign in with the admin token: {token}"),
            format!("  admin API:    {url}/api/v1      admin token: {token}"),
            format!("  OpenAPI:      {url}/api/openapi.json    metrics: {url}/metrics"),
            String::new(),
        ];
        out.extend(self.scenarios.iter().map(|h| format!("  {}", h.text)));
        out.push(String::new());
        out.push("Audiences (kept up to date as events arrive), with a member to look at:".into());
        for a in &self.audiences {
            let example = match &a.example {
                Some((kind, value, _)) => format!("; e.g. {kind} {value}"),
                None => String::new(),
            };
            out.push(format!("  {:>6}  {} ({}){example}", a.size, a.name, a.what));
        }
        out.push(String::new());
        out.push("Journeys (messages go to the capture channel; set PARCOURS__CHANNELS__EMAIL__SMTP_URL to send email):".into());
        for (id, doc) in parcours_demo::JOURNEYS {
            if let Ok(j) = parcours_core::journey::read(doc) {
                out.push(format!("  {:<18} {:<6} {}", id, j.status.as_str(), j.name));
            }
        }
        out.push(String::new());
        out.push("Try:".into());
        out.push(format!(
            "  curl -H 'authorization: Bearer {token}' '{url}/api/v1/status'"
        ));
        if let Some((kind, value, _)) = self.audiences.iter().find_map(|a| a.example.as_ref()) {
            out.push(format!("  curl -H 'authorization: Bearer {token}' '{url}/api/v1/profiles/lookup?type={kind}&value={value}'"));
        }
        out.push(format!(
            "  curl -H 'authorization: Bearer {token}' '{url}/api/v1/audiences/vip/members'"
        ));
        out.push(format!(
            "  curl -H 'authorization: Bearer {token}' '{url}/api/v1/messages?channel=email'"
        ));
        out.push(format!("  curl -u {}: {url}/v1/track -H 'content-type: application/json' -d '{{\"userId\":\"cus_000001\",\"event\":\"Product Viewed\"}}'", self.web_key));
        out
    }
}

/// Opens the store, starts a node and, on an empty store, creates the demo brand, sends its
/// events through the tracking API and waits until every audience is computed. Returns the
/// node and, when it created the data, what the banner says.
pub async fn demo_setup(
    config: &Config,
    customers: usize,
    days: u32,
    progress: bool,
) -> anyhow::Result<(Node, Option<Demo>)> {
    let (node, load) = demo_start(config, customers, days).await?;
    match load {
        Some(load) => {
            let demo = load.run(progress).await?;
            Ok((node, Some(demo)))
        }
        None => Ok((node, None)),
    }
}

/// A demo brand created on a serving node, whose history is still to be sent.
pub struct DemoLoad {
    store: Arc<dyn Store>,
    url: String,
    admin_token: String,
    workspace: String,
    keys: HashMap<&'static str, String>,
    cfg: DemoConfig,
}

/// Starts a node on the demo store; on an empty store, creates the brand (workspace, rules,
/// sources, audiences) and returns what is left to load. The node answers at once.
pub async fn demo_start(
    config: &Config,
    customers: usize,
    days: u32,
) -> anyhow::Result<(Node, Option<DemoLoad>)> {
    let mut config = config.clone();
    config.storage.durability = "normal".into();
    let store = open_store(&config)?;
    let node = Node::start_unready(&config, store.clone()).await?;
    let created = bootstrap(store.as_ref(), &config, now())?;
    let url = node.url();
    let Some(p) = created else {
        node.set_ready();
        return Ok((node, None));
    };
    let ws = p.workspace.id.clone();
    let rules = IdentityRulesConfig {
        identifier_traits: vec!["loyalty_card".into()],
        default_region: Some("FR".into()),
        // The demo's phones are in the range ARCEP keeps for fiction (06 39 98 …): no one's
        // number, possible but not valid.
        phone_numbers: parcours_core::identifier::PhoneCheck::Possible,
        ..IdentityRulesConfig::default()
    };
    store.set_identity_rules(&ws, &rules)?;
    demo_audiences(store.as_ref(), &ws, now())?;
    let admin = parcours_service::Actor::new(ws.clone(), parcours_store::Role::Admin);
    for (id, doc) in parcours_demo::JOURNEYS {
        parcours_service::journeys::save(store.as_ref(), &admin, id, doc, now())
            .map_err(|e| anyhow::anyhow!("demo journey {id}: {e}"))?;
    }
    let mut keys_by_source: HashMap<&'static str, String> = HashMap::new();
    for s in demo::demo_sources() {
        let (_, key) = keys::create_source(
            store.as_ref(),
            &ws,
            s.name,
            Channel::parse(s.channel),
            &[],
            now(),
        )?;
        keys_by_source.insert(s.name, key);
    }
    // Ready once the brand's sources and keys exist.
    node.set_ready();
    let load = DemoLoad {
        store,
        url,
        admin_token: p.admin_token.clone(),
        workspace: ws,
        keys: keys_by_source,
        cfg: DemoConfig {
            customers,
            days,
            seed: 7,
            end_ms: now(),
        },
    };
    Ok((node, Some(load)))
}

impl DemoLoad {
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    pub fn web_key(&self) -> &str {
        &self.keys["Web shop"]
    }

    /// Sends the history through the tracking API, waits until it is unified and every
    /// audience computed, and says what the banner shows.
    pub async fn run(self, progress: bool) -> anyhow::Result<Demo> {
        let DemoLoad {
            store,
            url,
            admin_token,
            workspace: ws,
            keys,
            cfg,
        } = self;
        if progress {
            eprintln!(
                "generating {} customers over {} days…",
                cfg.customers, cfg.days
            );
        }
        // Each request's body is written as the events are grouped, from their JSON texts:
        // the history is held once, compactly.
        let mut bodies: Vec<(&'static str, usize, Vec<u8>)> = Vec::new();
        for e in demo::generate_compact(&cfg) {
            match bodies.last_mut() {
                Some((s, n, body)) if *s == e.source && *n < 500 => {
                    body.push(b',');
                    body.extend_from_slice(e.json.as_bytes());
                    *n += 1;
                }
                _ => {
                    if let Some((_, _, body)) = bodies.last_mut() {
                        body.extend_from_slice(b"]}");
                        body.shrink_to_fit();
                    }
                    let mut body = b"{\"batch\":[".to_vec();
                    body.extend_from_slice(e.json.as_bytes());
                    bodies.push((e.source, 1, body));
                }
            }
        }
        if let Some((_, _, body)) = bodies.last_mut() {
            body.extend_from_slice(b"]}");
        }
        let total: usize = bodies.iter().map(|b| b.1).sum();
        let client = Client::new(url.clone());
        let pb = if progress {
            bar(total as u64, "sending the history through the tracking API")
        } else {
            ProgressBar::hidden()
        };
        let started = Moment::now();
        let mut sent = 0u64;
        // One request at a time, in time order, as a brand's systems send their own events.
        for (source, n, body) in bodies {
            let resp = client
                .track("/v1/batch", &keys[source], body)
                .await
                .map_err(|e| anyhow::anyhow!("sending demo events failed: {e}"))?;
            if resp.status != 200 {
                bail!(
                    "the tracking API refused demo events: {} {}",
                    resp.status,
                    String::from_utf8_lossy(&resp.body)
                );
            }
            sent += n as u64;
            pb.inc(n as u64);
        }
        pb.finish_and_clear();
        // A few customers sign up on the web as the demo starts (the history is older than
        // journeys' `max_age`): the welcome series sends each her first email at once, to the
        // capture channel, where the console's Messages shows it.
        let live = client
            .track("/v1/batch", &keys["Web shop"], live_signups())
            .await
            .map_err(|e| anyhow::anyhow!("sending the demo's live sign-ups failed: {e}"))?;
        if live.status != 200 {
            bail!(
                "the tracking API refused the demo's live sign-ups: {} {}",
                live.status,
                String::from_utf8_lossy(&live.body)
            );
        }
        sent += LIVE_SIGNUPS.len() as u64 * 2;
        let highlights = demo::highlights(&cfg);
        let commerce = demo_commerce(&client, &admin_token, &highlights)
            .await
            .context("setting up the demo's shops and stock")?;
        if progress {
            eprintln!(
                "sent {sent} events in {:.1?}; unifying and computing the audiences…",
                started.elapsed()
            );
        }
        wait_unified(store.as_ref()).await?;
        // RFM scores and lifetime values weigh each customer against all the others: scored
        // once the history is in.
        demo_rfm(store.as_ref(), &ws, now())?;
        audiences_settled(store.as_ref(), &ws).await?;
        Ok(Demo {
            url: url.clone(),
            admin_token,
            web_key: keys["Web shop"].clone(),
            workspace: ws.clone(),
            events: store.event_count(&ws)?,
            profiles: store.profile_count(&ws)?,
            scenarios: {
                let mut lines = highlights;
                lines.push(commerce);
                lines.push(demo::Highlight {
                    text: format!(
                        "Just now: {} customers signed up on the web shop; the welcome series sent each her first email (console: Messages), e.g. {}.",
                        LIVE_SIGNUPS.len(),
                        LIVE_SIGNUPS[0].1
                    ),
                    examples: vec![("email".into(), LIVE_SIGNUPS[0].1.into())],
                });
                lines
            },
            audiences: demo_audience_lines(store.as_ref(), &ws)?,
        })
    }
}

/// The order the demo's omnichannel customer places for click & collect as the demo starts.
pub const DEMO_ORDER: &str = "W-DEMO-1";

/// The brand's shops, warehouse, catalogue, stock and loyalty programme through the commerce
/// API; then, live, the omnichannel customer buys at the Lyon till with her card and orders the
/// shop's last unit of a product for click & collect, ready to pick up.
async fn demo_commerce(
    client: &Client,
    token: &str,
    highlights: &[demo::Highlight],
) -> anyhow::Result<demo::Highlight> {
    let call = |method: &'static str, path: String, body: serde_json::Value| async move {
        let body = body.to_string();
        let r = match method {
            "PUT" => client.put(&path, token, body).await,
            _ => client.post(&path, token, body).await,
        }
        .map_err(|e| anyhow::anyhow!("{method} {path}: {e}"))?;
        if !(200..300).contains(&r.status) {
            bail!(
                "{method} {path}: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
        }
        Ok::<_, anyhow::Error>(
            serde_json::from_slice::<serde_json::Value>(&r.body).unwrap_or_default(),
        )
    };
    let setup = demo::commerce_setup();
    for (id, doc) in &setup.locations {
        call(
            "PUT",
            format!("/api/v1/commerce/locations/{id}"),
            doc.clone(),
        )
        .await?;
    }
    for (sku, doc) in &setup.items {
        call("PUT", format!("/api/v1/commerce/items/{sku}"), doc.clone()).await?;
    }
    for body in &setup.movements {
        call(
            "POST",
            "/api/v1/commerce/stock/movements".into(),
            body.clone(),
        )
        .await?;
    }
    call(
        "PUT",
        "/api/v1/commerce/loyalty/program".into(),
        setup.program.clone(),
    )
    .await?;
    for (id, doc) in &setup.offers {
        call("PUT", format!("/api/v1/commerce/offers/{id}"), doc.clone()).await?;
    }
    let who = highlights
        .iter()
        .find(|h| h.examples.iter().any(|(k, _)| k == "loyalty_card"))
        .map(|h| {
            let get = |k: &str| {
                h.examples
                    .iter()
                    .find(|(kind, _)| kind == k)
                    .map(|(_, v)| v.clone())
            };
            (get("user_id"), get("email"), get("loyalty_card"))
        });
    let (Some((Some(user), Some(email), Some(card))), Some((sku, name, _))) =
        (who, demo::last_unit_in("store_2"))
    else {
        return Ok(demo::Highlight {
            text: format!(
                "Commerce: {} locations and {} products in stock (console: Commerce).",
                setup.locations.len(),
                setup.items.len()
            ),
            examples: vec![],
        });
    };
    let customer = serde_json::json!({"user_id": user, "email": email, "loyalty_card": card});
    if let Some(other) = demo::plenty_in("store_2") {
        call(
            "POST",
            "/api/v1/commerce/sales".into(),
            serde_json::json!({"order_id": "store_2-R-DEMO-1", "location": "store_2", "channel": "pos",
                               "customer": customer, "lines": [{"sku": other, "quantity": 1}], "payment_method": "card"}),
        )
        .await?;
    }
    call(
        "POST",
        "/api/v1/commerce/orders".into(),
        serde_json::json!({"order_id": DEMO_ORDER, "channel": "web", "customer": customer,
                           "lines": [{"sku": sku, "quantity": 1}], "coupons": [demo::WELCOME_CODE],
                           "fulfilment": {"kind": "pickup", "location": "store_2"}}),
    )
    .await?;
    call(
        "POST",
        format!("/api/v1/commerce/orders/{DEMO_ORDER}/status"),
        serde_json::json!({"status": "ready_for_pickup"}),
    )
    .await?;
    Ok(demo::Highlight {
        text: format!(
            "Commerce: {} locations, {} products; just now {email} (card {card}) bought at the Lyon Part-Dieu till and ordered its last {name} for click & collect with the code {}, ready to pick up (order {DEMO_ORDER}; console: Commerce).",
            setup.locations.len(),
            setup.items.len(),
            demo::WELCOME_CODE
        ),
        examples: vec![("loyalty_card".into(), card)],
    })
}

/// The customers who sign up as the demo starts: user id, email, first name.
const LIVE_SIGNUPS: [(&str, &str, &str); 3] = [
    ("web_live_1", "ines.moreau@example.com", "Inès"),
    ("web_live_2", "hugo.lefevre@example.com", "Hugo"),
    ("web_live_3", "camille.bernard@example.com", "Camille"),
];

/// Their identify (with consent, as the sign-up form asks) and `Signed Up`, stamped now.
fn live_signups() -> Vec<u8> {
    let consent = serde_json::json!({"categoryPreferences": {
        "marketing": true, "analytics": true, "advertising": false}});
    let batch: Vec<serde_json::Value> = LIVE_SIGNUPS
        .iter()
        .flat_map(|(user, email, first)| {
            [
                serde_json::json!({"type": "identify", "userId": user, "messageId": format!("live-id-{user}"),
                    "traits": {"email": email, "first_name": first}, "context": {"consent": consent}}),
                serde_json::json!({"type": "track", "userId": user, "messageId": format!("live-su-{user}"),
                    "event": "Signed Up", "properties": {"method": "email"}, "context": {"consent": consent}}),
            ]
        })
        .collect();
    serde_json::json!({ "batch": batch })
        .to_string()
        .into_bytes()
}

/// Waits until unify has applied every event in the log (for at most ten minutes).
async fn wait_unified(store: &dyn Store) -> anyhow::Result<()> {
    let deadline = Moment::now() + Duration::from_secs(600);
    loop {
        if store.processed_seq()? >= store.last_seq()? {
            return Ok(());
        }
        if Moment::now() > deadline {
            bail!("unify did not catch up within ten minutes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Each demo audience with its size and a member, named by the identifier that best finds
/// her: her user id, else her loyalty card, else her email, else her phone.
fn demo_audience_lines(store: &dyn Store, ws: &str) -> anyhow::Result<Vec<AudienceLine>> {
    let mut out = Vec::new();
    for (id, what) in DEMO_AUDIENCES
        .iter()
        .map(|(id, _, _, what)| (*id, *what))
        .chain(WIDE_AUDIENCES.iter().map(|(id, _, _, what)| (*id, *what)))
    {
        let Some(d) = store
            .definitions(Some(ws))?
            .into_iter()
            .find(|d| d.kind == parcours_store::DefinitionKind::Audience && d.id == id)
        else {
            continue;
        };
        let mut example = None;
        for m in store.members(ws, id, "", 50)? {
            let Some(p) = store.profile(ws, &m.profile_id)? else {
                continue;
            };
            let named = ["user_id", "loyalty_card", "email", "phone"]
                .iter()
                .find_map(|kind| {
                    p.identifiers
                        .iter()
                        .find(|i| i.kind == *kind)
                        .map(|i| (i.kind.clone(), i.value.clone(), p.id.clone()))
                });
            if named.is_some() {
                example = named;
                break;
            }
        }
        out.push(AudienceLine {
            id: id.into(),
            name: d.doc["name"].as_str().unwrap_or(id).to_string(),
            size: store.member_count(ws, id)?,
            what,
            example,
        });
    }
    Ok(out)
}

/// The source events are imported as: by write key, or the workspace's first source.
fn import_source(
    store: &dyn Store,
    write_key: Option<&str>,
    workspace: Option<&str>,
) -> anyhow::Result<Source> {
    if let Some(key) = write_key {
        let grant = store
            .source_by_key_hash(&hash_secret(key))?
            .context("the write key is not valid")?;
        if grant.expires_at.is_some_and(|at| at <= now()) {
            bail!("the write key has expired (it was rotated or its source's keys revoked)");
        }
        return Ok(grant.source);
    }
    let ws = resolve_workspace(store, workspace)?;
    store
        .sources(&ws)?
        .into_iter()
        .next()
        .with_context(|| format!("workspace {ws} has no source"))
}

fn content_id(line: &str) -> String {
    let digest = Sha256::digest(line.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("imp-{hex}")
}

/// A CSV row of profile traits becomes an identify call.
/// A CSV row as an identify call. Its body depends on the row only (no import time: the
/// event's time is when it is received), so that a row imported again is the same event, or
/// the same quarantine entry.
fn csv_identify(header: &[String], row: &[String], line: &str) -> Value {
    let mut traits = Map::new();
    let mut event = Map::new();
    for (name, value) in header.iter().zip(row) {
        if value.is_empty() {
            continue;
        }
        match csv_column(name).as_str() {
            "user_id" => {
                event.insert("userId".into(), json!(value));
            }
            "anonymous_id" => {
                event.insert("anonymousId".into(), json!(value));
            }
            other => {
                traits.insert(other.to_string(), json!(value));
            }
        }
    }
    event.insert("type".into(), json!("identify"));
    event.insert("messageId".into(), json!(content_id(line)));
    event.insert("traits".into(), Value::Object(traits));
    let mut event = Value::Object(event);
    // A list of subscribers has only an email (or a phone): the row is keyed by it, with the
    // anonymous id derived from it, the same for every import of the same person.
    if event.get("userId").is_none() && event.get("anonymousId").is_none() {
        if let Some(id) = parcours_core::webhook::derived_anonymous_id(&event) {
            event["anonymousId"] = json!(id);
        }
    }
    event
}

/// A CSV column's name as Parcours reads it: the id columns and the usual names of the email
/// and phone columns are recognised whatever their case; other columns keep their name.
fn csv_column(name: &str) -> String {
    let key: String = name
        .trim()
        .to_ascii_lowercase()
        .chars()
        .filter(|c| !matches!(c, '_' | '-' | ' '))
        .collect();
    match key.as_str() {
        "userid" => "user_id".into(),
        "anonymousid" => "anonymous_id".into(),
        "email" | "mail" | "emailaddress" => "email".into(),
        "phone" | "phonenumber" | "mobile" | "mobilephone" | "tel" | "telephone" => "phone".into(),
        _ => name.trim().to_string(),
    }
}

fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    out.push(field);
    out.into_iter().map(|f| f.trim().to_string()).collect()
}

#[derive(Debug, Default, serde::Serialize)]
pub struct ImportReport {
    pub lines: u64,
    pub stored: u64,
    pub duplicates: u64,
    pub quarantined: u64,
}

/// Imports NDJSON events or a CSV of profiles. Idempotent: re-importing stores nothing twice.
pub fn import(
    config: &Config,
    file: &Path,
    write_key: Option<&str>,
    workspace: Option<&str>,
    unify: bool,
) -> anyhow::Result<ImportReport> {
    let store = open_store(config)?;
    let source = import_source(store.as_ref(), write_key, workspace)?;
    let size = std::fs::metadata(file)
        .with_context(|| format!("cannot read {}", file.display()))?
        .len();
    let is_csv = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let reader = BufReader::new(std::fs::File::open(file)?);
    let pb = bar(size, "importing");
    let mut report = ImportReport::default();
    let mut header: Option<Vec<String>> = None;
    let window = i64::from(config.ingest.dedup_window_days) * 86_400_000;
    let mut pending = IngestBatch {
        workspace_id: source.workspace_id.clone(),
        source_id: source.id.clone(),
        events: vec![],
        quarantined: vec![],
    };
    let flush = |pending: &mut IngestBatch, report: &mut ImportReport| -> anyhow::Result<()> {
        if pending.events.is_empty() && pending.quarantined.is_empty() {
            return Ok(());
        }
        let out = store.append(std::slice::from_ref(pending), now() - window)?;
        report.stored += out[0].stored as u64;
        report.duplicates += out[0].duplicates as u64;
        report.quarantined += out[0].quarantined as u64;
        pending.events.clear();
        pending.quarantined.clear();
        Ok(())
    };
    for line in reader.lines() {
        let line = line.with_context(|| format!("{} is not UTF-8 text", file.display()))?;
        pb.inc(line.len() as u64 + 1);
        if line.trim().is_empty() {
            continue;
        }
        report.lines += 1;
        let text = if is_csv {
            let fields = split_csv(&line);
            let Some(h) = &header else {
                header = Some(fields);
                continue;
            };
            csv_identify(h, &fields, &line).to_string()
        } else {
            line.clone()
        };
        let edge = Edge::single(now(), source.channel, None);
        match serde_json::from_str::<Box<serde_json::value::RawValue>>(&text) {
            Ok(raw) => match check_event(&raw, &edge, &mut |body| content_id(body)) {
                Checked::Accepted(e) => pending.events.push(e),
                Checked::Quarantined(q) => pending.quarantined.push(q),
            },
            Err(e) => pending
                .quarantined
                .push(parcours_core::spec::QuarantinedEvent {
                    violation: Violation::InvalidEvent,
                    detail: Some(format!("line {}: {e}", report.lines)),
                    message_id: None,
                    received_at: now(),
                    // Kept as text every store holds: PostgreSQL refuses NUL characters.
                    body: text.replace('\0', "\u{FFFD}"),
                    path_type: None,
                }),
        }
        if pending.events.len() + pending.quarantined.len() >= 2_000 {
            flush(&mut pending, &mut report)?;
        }
    }
    flush(&mut pending, &mut report)?;
    pb.finish_and_clear();
    eprintln!(
        "imported {}: {} lines, {} new events, {} already imported, {} quarantined",
        file.display(),
        report.lines,
        report.stored,
        report.duplicates,
        report.quarantined
    );
    if unify {
        unify_backlog(store.as_ref())?;
    }
    Ok(report)
}

fn unify_backlog(store: &dyn Store) -> anyhow::Result<()> {
    let total = (store.last_seq()? - store.processed_seq()?).max(0) as u64;
    let pb = bar(total, "unifying");
    let start = store.processed_seq()?;
    let mut unifier = parcours_engine::Unifier::default();
    loop {
        let n = unifier.step(store, now(), parcours_engine::UNIFY_BATCH)?;
        if n == 0 {
            break;
        }
        pb.set_position((store.processed_seq()? - start).max(0) as u64);
    }
    pb.finish_and_clear();
    Ok(())
}

pub fn export(
    config: &Config,
    what: &str,
    workspace: Option<&str>,
    out: &mut dyn Write,
) -> anyhow::Result<u64> {
    let store = open_store(config)?;
    let ws = resolve_workspace(store.as_ref(), workspace)?;
    let mut written = 0u64;
    match what {
        "events" => {
            let pb = bar(store.event_count(&ws)?, "exporting events");
            let mut after = 0;
            loop {
                let page = store.workspace_events(&ws, after, 5_000)?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                for e in &page {
                    out.write_all(e.to_json_text().as_bytes())?;
                    out.write_all(b"\n")?;
                }
                written += page.len() as u64;
                pb.set_position(written);
            }
            pb.finish_and_clear();
        }
        "profiles" => {
            let pb = bar(store.profile_count(&ws)?, "exporting profiles");
            let mut after = String::new();
            loop {
                let page = store.profiles_page(&ws, &after, 2_000)?;
                let Some(last) = page.last() else { break };
                after = last.id.clone();
                for p in &page {
                    let line = json!({
                        "id": p.id, "traits": p.trait_values(), "identifiers": p.identifiers,
                        "consent": parcours_api::consent_json(p), "channels": channels(p), "last_channel": p.last_channel,
                        "first_seen": parcours_core::time::format_timestamp(p.first.ts),
                        "last_seen": parcours_core::time::format_timestamp(p.last.ts), "events": p.events,
                    });
                    serde_json::to_writer(&mut *out, &line)?;
                    out.write_all(b"\n")?;
                }
                written += page.len() as u64;
                pb.set_position(written);
            }
            pb.finish_and_clear();
        }
        other => bail!("cannot export `{other}`: choose profiles or events"),
    }
    out.flush()?;
    eprintln!("exported {written} {what}");
    Ok(written)
}

/// Channel statistics with ISO dates, like the rest of the export.
fn channels(p: &parcours_core::Profile) -> Value {
    p.channels
        .iter()
        .map(|(c, s)| {
            let stats = json!({
                "first_seen": parcours_core::time::format_timestamp(s.first_seen),
                "last_seen": parcours_core::time::format_timestamp(s.last_seen),
                "events": s.events,
            });
            (c.as_str().to_string(), stats)
        })
        .collect::<Map<String, Value>>()
        .into()
}

pub fn replay(config: &Config) -> anyhow::Result<()> {
    let _lock = hold_store(config, "a replay")?;
    let store = open_store(config)?;
    let ttl = config.cluster.lease_timeout_ms as i64;
    let live = store.nodes(now() - ttl)?;
    if !live.is_empty() {
        let ids: Vec<&str> = live.iter().map(|n| n.id.as_str()).collect();
        bail!(
            "stop every node before a replay; still running: {} (a node that was killed is forgotten {} s after its last heartbeat)",
            ids.join(", "),
            ttl / 1000
        );
    }
    let total = store.last_seq()?.max(0) as u64;
    let pb = bar(total, "replaying");
    let started = Moment::now();
    let report = parcours_engine::replay(
        store.as_ref(),
        now(),
        parcours_engine::UNIFY_BATCH,
        &mut |done, _| pb.set_position(done),
    )?;
    pb.finish_and_clear();
    eprintln!(
        "replayed {} events in {:.1?}; identity graph and profiles rebuilt",
        report.events,
        started.elapsed()
    );
    if report.set_aside > 0 {
        eprintln!(
            "{} events could not be read or applied and were skipped; they are listed in the quarantine \
             (GET /api/v1/quarantine?status=pending, codes unreadable_event and unprocessable_event)",
            report.set_aside
        );
    }
    Ok(())
}

pub fn create_workspace(config: &Config, name: &str) -> anyhow::Result<()> {
    let store = open_store(config)?;
    let p = provision_workspace(store.as_ref(), None, name, now(), None, None, false)?;
    print_provisioned(
        &p,
        &format!("http://{}:{}", config.http.host, config.http.port),
    );
    Ok(())
}

/// The workspace a command is about: named by id or by name, or the only one there is.
pub fn resolve_workspace(store: &dyn Store, given: Option<&str>) -> anyhow::Result<String> {
    let all = store.workspaces()?;
    match given {
        Some(w) => {
            if let Some(ws) = all.iter().find(|ws| ws.id == w) {
                return Ok(ws.id.clone());
            }
            let named: Vec<_> = all
                .iter()
                .filter(|ws| ws.name.eq_ignore_ascii_case(w.trim()))
                .collect();
            match named.as_slice() {
                [one] => Ok(one.id.clone()),
                [] => {
                    let known: Vec<String> =
                        all.iter().map(|ws| format!("{} ({})", ws.name, ws.id)).collect();
                    bail!(
                        "no workspace has the id or name `{w}`; the store has: {}",
                        if known.is_empty() { "none".into() } else { known.join(", ") }
                    )
                }
                many => bail!(
                    "{} workspaces are named `{w}`; give one of their ids: {}",
                    many.len(),
                    many.iter().map(|ws| ws.id.as_str()).collect::<Vec<_>>().join(", ")
                ),
            }
        }
        None => match all.as_slice() {
            [one] => Ok(one.id.clone()),
            [] => bail!("the store has no workspace yet; run `parcours serve` once or `parcours workspace create`"),
            _ => bail!("the store has several workspaces; pass --workspace with an id or a name (`parcours workspace list`)"),
        },
    }
}

fn iso_or_dash(at: Option<i64>) -> String {
    at.map_or_else(|| "-".into(), parcours_core::time::format_timestamp)
}

pub fn list_sources(config: &Config, workspace: Option<&str>) -> anyhow::Result<()> {
    let store = open_store(config)?;
    let ws = resolve_workspace(store.as_ref(), workspace)?;
    let now = now();
    println!("ID\tNAME\tCHANNEL\tALLOWED ORIGINS\tKEYS (fingerprint: expires)");
    for s in store.sources(&ws)? {
        let keys: Vec<String> = store
            .write_keys(&ws, &s.id)?
            .iter()
            .map(|k| match k.expires_at {
                Some(at) if at <= now => {
                    format!("{}: expired {}", k.fingerprint, iso_or_dash(Some(at)))
                }
                at => format!(
                    "{}: {}",
                    k.fingerprint,
                    at.map_or("never".into(), |a| iso_or_dash(Some(a)))
                ),
            })
            .collect();
        println!(
            "{}\t{}\t{}\t{}\t{}",
            s.id,
            s.name,
            s.channel.map_or("-", |c| c.as_str()),
            if s.allowed_origins.is_empty() {
                "any".into()
            } else {
                s.allowed_origins.join(" ")
            },
            keys.join(", ")
        );
    }
    Ok(())
}

pub fn create_source(
    config: &Config,
    workspace: Option<&str>,
    name: &str,
    channel: Option<&str>,
    allowed_origins: &[String],
) -> anyhow::Result<()> {
    let store = open_store(config)?;
    let ws = resolve_workspace(store.as_ref(), workspace)?;
    let channel = channel.map(keys::parse_channel).transpose()?;
    let (source, key) =
        keys::create_source(store.as_ref(), &ws, name, channel, allowed_origins, now())?;
    println!("source {} ({})", source.id, source.name);
    println!("write key: {key}");
    Ok(())
}

pub fn rotate_source_key(
    config: &Config,
    workspace: Option<&str>,
    source: &str,
    overlap_hours: u32,
) -> anyhow::Result<()> {
    let store = open_store(config)?;
    let ws = resolve_workspace(store.as_ref(), workspace)?;
    let (key, until) =
        keys::rotate_write_key(store.as_ref(), &ws, source, Some(overlap_hours), now())?;
    println!("new write key: {key}");
    println!(
        "the previous keys of {source} keep working until {} (then 401)",
        parcours_core::time::format_timestamp(until)
    );
    Ok(())
}

pub fn delete_source(config: &Config, workspace: Option<&str>, source: &str) -> anyhow::Result<()> {
    let store = open_store(config)?;
    let ws = resolve_workspace(store.as_ref(), workspace)?;
    store.delete_source(&ws, source)?;
    println!("deleted source {source} and its write keys (its events stay in the log)");
    Ok(())
}

pub fn list_tokens(config: &Config, workspace: Option<&str>) -> anyhow::Result<()> {
    let store = open_store(config)?;
    let ws = resolve_workspace(store.as_ref(), workspace)?;
    let now = now();
    println!("ID\tNAME\tROLE\tCREATED\tEXPIRES");
    for t in store.tokens(&ws)? {
        let expires = match t.expires_at {
            Some(at) if at <= now => format!("expired {}", iso_or_dash(Some(at))),
            Some(at) => iso_or_dash(Some(at)),
            None => "never".into(),
        };
        println!(
            "{}\t{}\t{}{}\t{}\t{}",
            t.id,
            t.name,
            t.role.as_str(),
            if t.instance_admin {
                " (instance admin)"
            } else {
                ""
            },
            iso_or_dash(Some(t.created_at)),
            expires
        );
    }
    Ok(())
}

pub fn create_token(
    config: &Config,
    workspace: Option<&str>,
    name: &str,
    role: &str,
    expires_in_days: Option<u32>,
) -> anyhow::Result<()> {
    let store = open_store(config)?;
    let ws = resolve_workspace(store.as_ref(), workspace)?;
    let role = keys::parse_role(role)?;
    let (token, secret) =
        keys::create_token(store.as_ref(), &ws, name, role, expires_in_days, now())?;
    println!("token {} ({}, {})", token.id, token.name, role.as_str());
    println!("secret: {secret}");
    Ok(())
}

pub fn revoke_token(config: &Config, workspace: Option<&str>, id: &str) -> anyhow::Result<()> {
    let store = open_store(config)?;
    let ws = resolve_workspace(store.as_ref(), workspace)?;
    store.expire_token(&ws, id, now())?;
    println!("revoked token {id} (running nodes stop accepting it within 5 s)");
    Ok(())
}

pub fn rotate_token(
    config: &Config,
    workspace: Option<&str>,
    id: &str,
    overlap_hours: u32,
) -> anyhow::Result<()> {
    let store = open_store(config)?;
    let ws = resolve_workspace(store.as_ref(), workspace)?;
    let (token, secret, until) =
        keys::rotate_token(store.as_ref(), &ws, id, Some(overlap_hours), now())?;
    println!(
        "token {} ({}, {})",
        token.id,
        token.name,
        token.role.as_str()
    );
    println!("secret: {secret}");
    println!(
        "token {id} keeps working until {} (then 401)",
        parcours_core::time::format_timestamp(until)
    );
    Ok(())
}

pub fn list_workspaces(config: &Config) -> anyhow::Result<()> {
    let store = open_store(config)?;
    for w in store.workspaces()? {
        println!("{}\t{}", w.id, w.name);
    }
    Ok(())
}

/// A computed trait over the demo's orders.
fn order_trait(
    id: &str,
    kind: parcours_core::computed::Kind,
    property: Option<&str>,
) -> parcours_core::computed::ComputedTrait {
    parcours_core::computed::ComputedTrait {
        id: id.into(),
        kind,
        event: "Order Completed".into(),
        property: property.map(str::to_string),
        filters: vec![],
        window: parcours_core::audience::Window::Ever,
        lifecycle: None,
        include_anonymous: false,
    }
}

/// The demo's audiences (id, name, definition, what it shows): each shows one idea.
const DEMO_AUDIENCES: [(&str, &str, &str, &str); 5] = [
    (
        "cart_abandoners_1h",
        "Cart abandoners (last hour)",
        r#"is known and did "Product Added" within 1 hour and not did "Order Completed" within 1 hour"#,
        "known customers, a window that empties on time",
    ),
    (
        "online_cart_store_purchase",
        "Left the cart online, bought in a shop",
        r#"did "Product Added" on web and did "Order Completed" on store"#,
        "the same person across channels",
    ),
    (
        "store_only_never_app",
        "Store customers who never used the app",
        "seen on store and not seen on app and not seen on web and has loyalty_card",
        "loyalty-card shoppers, found by their card",
    ),
    (
        "lapsed",
        "Lapsed customers",
        r#"computed lifecycle_stage = "lapsed""#,
        "no order for 45 days, known customers only",
    ),
    (
        "marketing_withdrawn",
        "Said no to marketing",
        "consent marketing withdrawn",
        "refused or withdrew, with the proof; never asked is not no",
    ),
];

/// The demo's computed traits and audiences: each shows one idea.
fn demo_audiences(store: &dyn Store, ws: &str, at: i64) -> anyhow::Result<()> {
    use parcours_core::audience::parse;
    use parcours_core::computed::{Kind, Lifecycle};
    use parcours_engine::definitions::{save_audience, save_computed_trait, AudienceDoc};
    let mut stage = order_trait("lifecycle_stage", Kind::Lifecycle, None);
    // The demo covers 90 days: shorter thresholds than the defaults (30 / 90 / 180 days).
    stage.lifecycle = Some(Lifecycle {
        new_days: 14,
        active_days: 30,
        lapsed_days: 45,
    });
    for t in [
        order_trait("orders", Kind::Count, None),
        order_trait("lifetime_value", Kind::Sum, Some("revenue")),
        stage,
    ] {
        save_computed_trait(store, ws, &t, at).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    for (id, name, text, _) in DEMO_AUDIENCES {
        let doc = AudienceDoc {
            name: name.into(),
            description: String::new(),
            condition: parse(text).map_err(|e| anyhow::anyhow!("{id}: {e}"))?,
        };
        save_audience(store, ws, id, &doc, at).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}

/// The audiences of the workspace-wide traits: (id, name, condition, what the banner says).
const WIDE_AUDIENCES: [(&str, &str, &str, &str); 3] = [
    (
        "vip",
        "VIPs by RFM (champions)",
        r#"computed rfm.segment = "champions""#,
        "RFM champions, known customers only",
    ),
    (
        "likely_to_lapse",
        "Likely to lapse (lifetime model)",
        "computed clv.likely_to_lapse = true",
        "repeat buyers the BG/NBD model gives less than even odds of still being customers",
    ),
    (
        "top_value",
        "Top 10% predicted value",
        "computed clv.top_decile = true",
        "the top decile of 12-month discounted lifetime value (BG/NBD and Gamma-Gamma)",
    ),
];

/// The demo's RFM and lifetime-value traits and the audiences that use them.
fn demo_rfm(store: &dyn Store, ws: &str, at: i64) -> anyhow::Result<()> {
    use parcours_core::audience::parse;
    use parcours_core::computed::Kind;
    use parcours_engine::definitions::{save_audience, save_computed_trait, AudienceDoc};
    for t in [
        order_trait("rfm", Kind::Rfm, Some("revenue")),
        order_trait("clv", Kind::Clv, Some("revenue")),
    ] {
        save_computed_trait(store, ws, &t, at).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    for (id, name, condition, _) in WIDE_AUDIENCES {
        let doc = AudienceDoc {
            name: name.into(),
            description: String::new(),
            condition: parse(condition).map_err(|e| anyhow::anyhow!("{id}: {e}"))?,
        };
        save_audience(store, ws, id, &doc, at).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}

/// Waits until every audience of the workspace is computed and the processor has caught up
/// with the log; returns (name, size) of each.
async fn audiences_settled(store: &dyn Store, ws: &str) -> anyhow::Result<Vec<(String, u64)>> {
    let deadline = Moment::now() + Duration::from_secs(300);
    loop {
        let defs = store.definitions(Some(ws))?;
        let ready = defs.iter().all(|d| d.computed_version >= d.version);
        let caught_up = parcours_engine::audiences::position(store)? >= store.processed_seq()?;
        if (ready && caught_up) || Moment::now() > deadline {
            let mut out = Vec::new();
            for d in defs
                .iter()
                .filter(|d| d.kind == parcours_store::DefinitionKind::Audience)
            {
                let name = d.doc["name"].as_str().unwrap_or(&d.id).to_string();
                out.push((name, store.member_count(ws, &d.id)?));
            }
            return Ok(out);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
