//! The KPIs the API gives agree with an independent SQL query over the same demo log: the
//! query reads the embedded store's files directly (the event log, and which profile each
//! event was applied to), and computes every figure its own way, from the definitions in
//! docs/measurement.md.

#[macro_use]
mod common;

use std::collections::BTreeMap;

use parcours_cli::commands::demo_start;
use parcours_cli::config::Config;
use parcours_testkit::http::Client;
use rusqlite::{params, Connection, OpenFlags};
use serde_json::Value;

const DAY: i64 = 86_400_000;

/// One group's figures as the SQL computes them.
#[derive(Debug, Default, Clone, PartialEq)]
struct Figures {
    visitors: u64,
    buyers: u64,
    orders: u64,
    revenue: f64,
    repeat_buyers: u64,
    new_customers: u64,
    carts: u64,
    abandoned_carts: u64,
    answers: u64,
    promoters: u64,
    detractors: u64,
}

/// Each event with the person it belongs to: the live profile it was applied to, following
/// merges.
const PEOPLE: &str = r#"
WITH RECURSIVE
roots(id, root) AS (
    SELECT id, id FROM profiles WHERE workspace_id = ?1 AND merged_into IS NULL
    UNION ALL
    SELECT p.id, r.root FROM profiles p JOIN roots r ON p.merged_into = r.id
    WHERE p.workspace_id = ?1
),
owned AS MATERIALIZED (
    SELECT seq, MIN(profile_id) AS profile_id FROM profile_events
    WHERE workspace_id = ?1 GROUP BY seq
),
ev AS MATERIALIZED (
    SELECT e.seq, e.timestamp AS ts, e.channel, e.type, e.event, e.message_id, e.body,
           r.root AS person
    FROM log.events e JOIN owned o ON o.seq = e.seq JOIN roots r ON r.id = o.profile_id
    WHERE e.workspace_id = ?1
)"#;

/// The counted facts, one row each, with the keys of every breakdown (after [`PEOPLE`]).
/// Written from the definitions, not from the code: window functions pick each order's and
/// each cart's first event, a correlated subquery the campaign, `EXISTS` the carts that were
/// completed.
const FACTS: &str = r#",
touches AS MATERIALIZED (
    SELECT person, ts, seq, campaign FROM (
        SELECT person, ts, seq,
               COALESCE(
                   CASE WHEN json_type(body, '$.context.campaign.name') = 'text'
                        THEN NULLIF(json_extract(body, '$.context.campaign.name'), '') END,
                   CASE WHEN event LIKE '%Clicked'
                         AND json_type(body, '$.properties.campaign_id') = 'text'
                        THEN NULLIF(json_extract(body, '$.properties.campaign_id'), '') END
               ) AS campaign
        FROM ev)
    WHERE campaign IS NOT NULL
),
orders AS MATERIALIZED (
    SELECT * FROM (
        SELECT seq, ts, channel, person,
               COALESCE(NULLIF(json_extract(body, '$.properties.order_id'), ''),
                        'event ' || message_id) AS order_id,
               COALESCE(
                   CASE WHEN json_type(body, '$.properties.revenue') IN ('integer', 'real')
                        THEN json_extract(body, '$.properties.revenue') END,
                   CASE WHEN json_type(body, '$.properties.total') IN ('integer', 'real')
                        THEN json_extract(body, '$.properties.total') END,
                   CASE WHEN json_type(body, '$.properties.value') IN ('integer', 'real')
                        THEN json_extract(body, '$.properties.value') END,
                   0.0) AS value,
               NULLIF(json_extract(body, '$.properties.store_id'), '') AS shop,
               ROW_NUMBER() OVER (
                   PARTITION BY COALESCE(NULLIF(json_extract(body, '$.properties.order_id'), ''),
                                         'event ' || message_id)
                   ORDER BY ts, seq) AS n
        FROM ev WHERE type = 'track' AND event = 'Order Completed')
    WHERE n = 1
),
carts AS MATERIALIZED (
    SELECT * FROM (
        SELECT seq, ts, channel, person,
               NULLIF(json_extract(body, '$.properties.store_id'), '') AS shop,
               ROW_NUMBER() OVER (
                   PARTITION BY person,
                                COALESCE(NULLIF(json_extract(body, '$.properties.cart_id'), ''),
                                         'day ' || (ts / 86400000))
                   ORDER BY ts, seq) AS n
        FROM ev WHERE type = 'track' AND event = 'Product Added')
    WHERE n = 1
),
answers AS MATERIALIZED (
    SELECT a.seq, a.ts, a.person, json_extract(a.body, '$.properties.score') AS score,
           COALESCE(o.channel, a.channel) AS channel, o.shop AS shop,
           o.seq AS order_seq, o.ts AS order_ts, o.person AS order_person
    FROM ev a LEFT JOIN orders o ON o.order_id = json_extract(a.body, '$.properties.order_id')
    WHERE a.type = 'track' AND a.event = 'Survey Answered'
      AND json_type(a.body, '$.properties.score') = 'integer'
      AND json_extract(a.body, '$.properties.score') BETWEEN 0 AND 10
),
facts AS MATERIALIZED (
    SELECT 'visit' AS kind, seq, ts, channel, person, NULL AS shop, 0.0 AS value,
           NULL AS score, 0 AS first_order, 0 AS completed, seq AS credit_seq, ts AS credit_ts,
           person AS credit_person
    FROM ev WHERE type IN ('page', 'screen')
    UNION ALL
    SELECT 'order', o.seq, o.ts, o.channel, o.person, o.shop, o.value, NULL,
           NOT EXISTS (SELECT 1 FROM orders p WHERE p.person = o.person
                       AND (p.ts < o.ts OR (p.ts = o.ts AND p.seq < o.seq))),
           0, o.seq, o.ts, o.person
    FROM orders o
    UNION ALL
    SELECT 'cart', c.seq, c.ts, c.channel, c.person, c.shop, 0.0, NULL, 0,
           EXISTS (SELECT 1 FROM orders o WHERE o.person = c.person AND o.channel = c.channel
                   AND (o.ts > c.ts OR (o.ts = c.ts AND o.seq > c.seq))
                   AND o.ts - c.ts <= 86400000),
           c.seq, c.ts, c.person
    FROM carts c
    UNION ALL
    -- An answer about an order takes the order's campaign: credited at the order.
    SELECT 'answer', seq, ts, channel, person, shop, 0.0, score, 0, 0,
           COALESCE(order_seq, seq), COALESCE(order_ts, ts), COALESCE(order_person, person)
    FROM answers
)
SELECT f.kind, f.ts, f.channel, f.person, f.shop, f.value, f.score, f.first_order, f.completed,
       (SELECT t.campaign FROM touches t
        WHERE t.person = f.credit_person
          AND (t.ts < f.credit_ts OR (t.ts = f.credit_ts AND t.seq <= f.credit_seq))
          AND f.credit_ts - t.ts <= 30 * 86400000
        ORDER BY t.ts DESC, t.seq DESC LIMIT 1) AS campaign
FROM facts f
"#;

struct Row {
    kind: String,
    ts: i64,
    channel: String,
    person: String,
    shop: Option<String>,
    value: f64,
    score: Option<i64>,
    first_order: bool,
    completed: bool,
    campaign: Option<String>,
}

/// The store's files, read-only, the log attached as `log`.
fn open(dir: &std::path::Path) -> Connection {
    let c = Connection::open_with_flags(
        dir.join("parcours.projections.sqlite3"),
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    c.execute(
        "ATTACH DATABASE ?1 AS log",
        [dir.join("parcours.sqlite3").to_string_lossy()],
    )
    .unwrap();
    c
}

/// How many people did `event` in `from..to`.
fn people_who(dir: &std::path::Path, workspace: &str, event: &str, from: i64, to: i64) -> u64 {
    open(dir)
        .query_row(
            &format!(
                "{PEOPLE} SELECT COUNT(DISTINCT person) FROM ev
                 WHERE type = 'track' AND event = ?2 AND ts >= ?3 AND ts < ?4"
            ),
            params![workspace, event, from, to],
            |r| r.get(0),
        )
        .unwrap()
}

fn facts(dir: &std::path::Path, workspace: &str) -> Vec<Row> {
    let c = open(dir);
    let mut st = c.prepare(&format!("{PEOPLE}{FACTS}")).unwrap();
    st.query_map(params![workspace], |r| {
        Ok(Row {
            kind: r.get(0)?,
            ts: r.get(1)?,
            channel: r.get(2)?,
            person: r.get(3)?,
            shop: r.get(4)?,
            value: r.get(5)?,
            score: r.get(6)?,
            first_order: r.get(7)?,
            completed: r.get(8)?,
            campaign: r.get(9)?,
        })
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// The figures per key of the rows in `from..to`.
fn figures(
    rows: &[Row],
    from: i64,
    to: i64,
    key: impl Fn(&Row) -> String,
) -> BTreeMap<String, Figures> {
    use std::collections::{HashMap, HashSet};
    let mut visitors: HashMap<String, HashSet<&str>> = HashMap::new();
    let mut buyers: HashMap<String, HashMap<&str, u64>> = HashMap::new();
    let mut out: BTreeMap<String, Figures> = BTreeMap::new();
    for r in rows.iter().filter(|r| (from..to).contains(&r.ts)) {
        let k = key(r);
        let f = out.entry(k.clone()).or_default();
        match r.kind.as_str() {
            "visit" => {
                visitors.entry(k).or_default().insert(&r.person);
            }
            "cart" => {
                visitors.entry(k).or_default().insert(&r.person);
                f.carts += 1;
                f.abandoned_carts += u64::from(!r.completed);
            }
            "order" => {
                visitors.entry(k.clone()).or_default().insert(&r.person);
                *buyers.entry(k).or_default().entry(&r.person).or_default() += 1;
                f.orders += 1;
                f.revenue += r.value;
                f.new_customers += u64::from(r.first_order);
            }
            "answer" => {
                let s = r.score.unwrap();
                f.answers += 1;
                f.promoters += u64::from(s >= 9);
                f.detractors += u64::from(s <= 6);
            }
            other => panic!("{other}"),
        }
    }
    for (k, f) in &mut out {
        f.visitors = visitors.get(k).map_or(0, |v| v.len() as u64);
        let b = buyers.get(k);
        f.buyers = b.map_or(0, |b| b.len() as u64);
        f.repeat_buyers = b.map_or(0, |b| b.values().filter(|&&n| n >= 2).count() as u64);
    }
    out
}

fn from_api(row: &Value) -> Figures {
    let n = |k: &str| row[k].as_u64().unwrap_or_else(|| panic!("{k} in {row}"));
    Figures {
        visitors: n("visitors"),
        buyers: n("buyers"),
        orders: n("orders"),
        revenue: row["revenue"].as_f64().unwrap(),
        repeat_buyers: n("repeat_buyers"),
        new_customers: n("new_customers"),
        carts: n("carts"),
        abandoned_carts: n("abandoned_carts"),
        answers: n("answers"),
        promoters: n("promoters"),
        detractors: n("detractors"),
    }
}

fn same(api: &Figures, sql: &Figures, what: &str) {
    let mut a = api.clone();
    assert!(
        (a.revenue - sql.revenue).abs() < 1e-6 * sql.revenue.max(1.0),
        "{what}: revenue {} vs {}",
        a.revenue,
        sql.revenue
    );
    a.revenue = sql.revenue;
    assert_eq!(&a, sql, "{what}: the API (left) and the SQL (right) differ");
}

fn date(ms: i64) -> String {
    parcours_core::table::format_day(ms.div_euclid(DAY))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_kpis_agree_with_an_independent_query_of_the_demo_log() {
    let dir = common::temp_dir("measure");
    let mut config = Config {
        data_dir: dir.clone(),
        ..Config::default()
    };
    config.http.port = 0;
    let (node, load) = demo_start(&config, 400, 60).await.unwrap();
    let load = load.expect("a fresh store gets the demo");
    let client = Client::new(node.url());
    // A global control group of 30% before the history loads: whoever enters a journey is
    // held out of every journey by that share.
    let r = client
        .put(
            "/api/v1/workspace/contact-policy",
            load.admin_token(),
            r#"{"global_control": "30%"}"#,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let demo = load.run(false).await.unwrap();
    let token = demo.admin_token.as_str();
    let workspace = demo.workspace.as_str();
    let rows = facts(&dir, workspace);
    let last = rows.iter().map(|r| r.ts).max().unwrap();
    let first = rows.iter().map(|r| r.ts).min().unwrap();
    // The whole log, and its last 14 days (where earlier first orders make fewer new
    // customers).
    let whole = (
        first.div_euclid(DAY) * DAY,
        (last.div_euclid(DAY) + 1) * DAY,
    );
    let recent = (whole.1 - 14 * DAY, whole.1);
    // Advertising spend: every third day on ads for a newsletter campaign, every day on email
    // without one; imported as a marketer would, by CSV.
    let campaign = rows
        .iter()
        .find_map(|r| r.campaign.clone().filter(|c| c.starts_with("nl-")))
        .expect("a newsletter campaign");
    let mut spend: Vec<(i64, &str, String, f64)> = Vec::new();
    let mut day = whole.0;
    while day < whole.1 {
        if (day / DAY) % 3 == 0 {
            spend.push((day, "ads", campaign.clone(), 120.5));
        }
        spend.push((day, "email", String::new(), 7.25));
        day += DAY;
    }
    let mut file = String::from("date,channel,campaign,amount\n");
    for (day, channel, campaign, amount) in &spend {
        file.push_str(&format!("{},{channel},{campaign},{amount}\n", date(*day)));
    }
    let r = client
        .request(
            "POST".parse().unwrap(),
            "/api/v1/measure/spend",
            &[
                ("authorization", &format!("Bearer {token}")),
                ("content-type", "text/csv"),
            ],
            file,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(r.json()["stored"].as_u64(), Some(spend.len() as u64));
    let mut checked = 0;
    for (from, to) in [whole, recent] {
        let range = format!("from={}&to={}", date(from), date(to - 1));
        for by in ["total", "channel", "side", "shop", "campaign", "week"] {
            let r = client
                .get(&format!("/api/v1/measure/kpis?{range}&by={by}"), token)
                .await
                .unwrap();
            assert_eq!(r.status, 200, "{by}: {}", r.json());
            let answer = r.json();
            assert_eq!(answer["events_unapplied"], 0, "{answer}");
            let key = |r: &Row| -> String {
                match by {
                    "total" => "all".into(),
                    "channel" => r.channel.clone(),
                    "side" => if ["store", "call_centre"].contains(&r.channel.as_str()) {
                        "offline"
                    } else {
                        "online"
                    }
                    .into(),
                    "shop" => r.shop.clone().unwrap_or("(none)".into()),
                    "campaign" => r.campaign.clone().unwrap_or("(none)".into()),
                    "week" => {
                        let day = r.ts.div_euclid(DAY);
                        parcours_core::table::format_day(day - (day + 3).rem_euclid(7))
                    }
                    _ => unreachable!(),
                }
            };
            let mut sql = figures(&rows, from, to, key);
            // Spend by the same keys (online/offline and shops have none of their own).
            let mut spent: BTreeMap<String, f64> = BTreeMap::new();
            for (day, channel, campaign, amount) in
                spend.iter().filter(|s| (from..to).contains(&s.0))
            {
                let k = match by {
                    "total" => "all".to_string(),
                    "channel" => channel.to_string(),
                    "campaign" if campaign.is_empty() => "(none)".to_string(),
                    "campaign" => campaign.clone(),
                    "week" => {
                        let d = day.div_euclid(DAY);
                        parcours_core::table::format_day(d - (d + 3).rem_euclid(7))
                    }
                    _ => continue,
                };
                *spent.entry(k.clone()).or_default() += amount;
                sql.entry(k).or_default();
            }
            let api: BTreeMap<String, Figures> = answer["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| (r["key"].as_str().unwrap().to_string(), from_api(r)))
                .collect();
            assert_eq!(
                api.keys().collect::<Vec<_>>(),
                sql.keys().collect::<Vec<_>>(),
                "{by} {range}"
            );
            for (k, f) in &sql {
                same(&api[k], f, &format!("{by}={k} {range}"));
                checked += 1;
                let row = answer["rows"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|r| r["key"] == k.as_str())
                    .unwrap();
                let expected = spent.get(k).copied();
                let close = |a: Option<f64>, b: Option<f64>| match (a, b) {
                    (Some(a), Some(b)) => (a - b).abs() < 1e-6 * b.abs().max(1.0),
                    (a, b) => a == b,
                };
                assert!(close(row["spend"].as_f64(), expected), "{by}={k}: {row}");
                let cac = expected
                    .filter(|_| f.new_customers > 0)
                    .map(|s| s / f.new_customers as f64);
                assert!(
                    close(row["cac"].as_f64(), cac),
                    "{by}={k}: CAC {row} against {cac:?}"
                );
            }
            let total = figures(&rows, from, to, |_| "all".into());
            same(
                &from_api(&answer["total"]),
                &total["all"],
                &format!("total of {by}"),
            );
        }
    }
    assert!(checked > 40, "only {checked} groups compared");

    // The demo tells every story the KPIs read: carts left and completed, shops, campaigns,
    // survey answers on both sides, returning buyers.
    let r = client
        .get(
            "/api/v1/measure/kpis?by=side&from=2000-01-01&to=2000-12-31",
            token,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["total"]["orders"], 0, "{}", r.json());
    let whole = format!("from={}&to={}", date(whole.0), date(whole.1 - 1));
    let total = client
        .get(&format!("/api/v1/measure/kpis?{whole}"), token)
        .await
        .unwrap()
        .json()["total"]
        .clone();
    for k in [
        "carts",
        "abandoned_carts",
        "repeat_buyers",
        "answers",
        "promoters",
        "detractors",
    ] {
        assert!(total[k].as_u64() > Some(0), "no {k}: {total}");
    }
    assert!(
        total["carts"].as_u64() > total["abandoned_carts"].as_u64(),
        "{total}"
    );
    let nps = total["nps"].as_f64().unwrap();
    let expected = 100.0
        * (total["promoters"].as_f64().unwrap() - total["detractors"].as_f64().unwrap())
        / total["answers"].as_f64().unwrap();
    assert!((nps - expected).abs() < 1e-9, "{total}");
    let sides = client
        .get(&format!("/api/v1/measure/kpis?{whole}&by=side"), token)
        .await
        .unwrap()
        .json();
    for side in ["online", "offline"] {
        let row = sides["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == side)
            .unwrap_or_else(|| panic!("no {side} row: {sides}"));
        assert!(
            row["orders"].as_u64() > Some(0) && row["answers"].as_u64() > Some(0),
            "{row}"
        );
    }

    // The CSV export holds the same rows, then the total.
    let csv = client
        .get(
            &format!("/api/v1/measure/kpis/export?{whole}&by=channel"),
            token,
        )
        .await
        .unwrap();
    assert_eq!(csv.status, 200);
    assert!(csv.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let text = String::from_utf8(csv.body.to_vec()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("key,visitors,buyers,orders,revenue"),
        "{text}"
    );
    let web = lines.iter().find(|l| l.starts_with("web,")).unwrap();
    let channel = client
        .get(&format!("/api/v1/measure/kpis?{whole}&by=channel"), token)
        .await
        .unwrap()
        .json();
    let web_row = channel["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "web")
        .unwrap();
    assert_eq!(
        web.split(',').nth(3).unwrap(),
        web_row["orders"].to_string(),
        "{web}"
    );
    assert!(lines.last().unwrap().starts_with("total,"), "{text}");

    // A spend file with a bad line is refused whole, with the line.
    let before = client
        .get(&format!("/api/v1/measure/spend?{whole}"), token)
        .await
        .unwrap()
        .json();
    assert_eq!(
        before["rows"].as_array().unwrap().len(),
        spend.len(),
        "{before}"
    );
    let r = client
        .request(
            "POST".parse().unwrap(),
            "/api/v1/measure/spend",
            &[("authorization", &format!("Bearer {token}"))],
            "date,channel,amount\n2026-11-02,ads,1\n2026-11-03,ads,lots\n",
        )
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (400, Some("invalid_spend"))
    );
    assert!(
        r.json()["message"].as_str().unwrap().starts_with("line 3:"),
        "{}",
        r.json()
    );
    let after = client
        .get(&format!("/api/v1/measure/spend?{whole}"), token)
        .await
        .unwrap()
        .json();
    assert_eq!(after, before, "nothing of a refused file is stored");

    // Refusals: a breakdown that does not exist, a date that does not read.
    for (query, code) in [
        ("by=colour", "invalid_parameter"),
        ("from=yesterday", "invalid_date"),
        ("from=2026-12-01&to=2026-01-01", "invalid_range"),
    ] {
        let r = client
            .get(&format!("/api/v1/measure/kpis?{query}"), token)
            .await
            .unwrap();
        assert_eq!(r.status, 400, "{query}");
        assert_eq!(r.json()["code"], code, "{query}: {}", r.json());
    }
    attribution_and_funnels(&client, token, &dir, workspace, &whole, &channel).await;
    console_page(&client, token, &whole, &channel).await;
    cohorts(&client, token, &rows, &whole).await;
    lifetime_value(&client, token, &rows, &dir, last).await;
    uplift(&client, token, &dir, workspace, &rows).await;
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Attribution credits every order of the range once under every model, and last touch is the
/// order's own channel; the funnel's first step counts the people an independent query finds.
async fn attribution_and_funnels(
    client: &Client,
    token: &str,
    dir: &std::path::Path,
    workspace: &str,
    range: &str,
    kpis: &Value,
) {
    let orders = kpis["total"]["orders"].as_f64().unwrap();
    let revenue = kpis["total"]["revenue"].as_f64().unwrap();
    for by in ["channel", "campaign"] {
        let r = client
            .get(
                &format!("/api/v1/measure/attribution?{range}&by={by}&lookback=30"),
                token,
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.json());
        let a = r.json();
        assert_eq!(a["conversions"].as_f64(), Some(orders), "{by}");
        assert_eq!(a["converting_paths"].as_f64(), Some(orders), "{by}");
        assert!(a["null_paths"].as_u64() > Some(0), "{a}");
        let rows = a["rows"].as_array().unwrap();
        for model in [
            "first",
            "last",
            "linear",
            "position_based",
            "time_decay",
            "shapley",
            "markov",
        ] {
            let (c, v): (f64, f64) = rows.iter().fold((0.0, 0.0), |(c, v), r| {
                (
                    c + r["models"][model]["conversions"].as_f64().unwrap(),
                    v + r["models"][model]["value"].as_f64().unwrap(),
                )
            });
            assert!(
                (c - orders).abs() < 1e-6,
                "{by} {model}: {c} credited of {orders}"
            );
            assert!(
                (v - revenue).abs() < 1e-6 * revenue,
                "{by} {model}: {v} of {revenue}"
            );
        }
        if by == "channel" {
            // An order's last touch is its own channel: last touch gives each channel its
            // orders (the KPIs, checked against SQL above).
            for k in kpis["rows"].as_array().unwrap() {
                let key = k["key"].as_str().unwrap();
                let last = rows.iter().find(|r| r["key"] == key).map_or(0.0, |r| {
                    r["models"]["last"]["conversions"].as_f64().unwrap()
                });
                assert_eq!(last, k["orders"].as_f64().unwrap(), "last touch on {key}");
            }
            // Messages delivered and offline touches are on the paths too.
            for ch in ["email", "store"] {
                assert!(rows.iter().any(|r| r["key"] == ch), "no {ch} in {a}");
            }
        } else {
            assert!(rows.iter().any(|r| r["key"] == "(none)"), "{a}");
            assert!(
                rows.iter()
                    .any(|r| r["key"].as_str().unwrap().starts_with("nl-")),
                "{a}"
            );
        }
        let csv = client
            .get(
                &format!("/api/v1/measure/attribution/export?{range}&by={by}"),
                token,
            )
            .await
            .unwrap();
        let text = String::from_utf8(csv.body.to_vec()).unwrap();
        assert!(text.starts_with("key,first_conversions,"), "{text}");
        assert_eq!(text.lines().count(), rows.len() + 1, "{text}");
    }
    for (query, code) in [
        ("by=shop", "invalid_parameter"),
        ("lookback=0", "invalid_parameter"),
        ("lookback=91", "invalid_parameter"),
        ("order=5", "invalid_parameter"),
    ] {
        let r = client
            .get(&format!("/api/v1/measure/attribution?{query}"), token)
            .await
            .unwrap();
        assert_eq!(
            (r.status, r.json()["code"].as_str()),
            (400, Some(code)),
            "{query}"
        );
    }

    // The default funnel: viewed, added, checked out, ordered.
    let (from, to) = range_ms(range);
    let viewers = people_who(dir, workspace, "Product Viewed", from, to);
    for by in ["total", "channel", "first_touch", "shop"] {
        let r = client
            .get(
                &format!("/api/v1/measure/funnel?{range}&by={by}&window=7"),
                token,
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.json());
        let f = r.json();
        let reached: Vec<u64> = f["total"]["reached"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .collect();
        assert_eq!(reached.len(), 4, "{f}");
        assert_eq!(reached[0], viewers, "{f}");
        assert!(reached.windows(2).all(|w| w[0] >= w[1]), "{f}");
        assert!(reached[3] > 0, "{f}");
        let sum: u64 = f["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["reached"][0].as_u64().unwrap())
            .sum();
        assert_eq!(sum, viewers, "{by}: every viewer in one group");
        assert!(
            f["total"]["median_seconds_to_convert"].as_f64() > Some(0.0),
            "{f}"
        );
    }
    let csv = client
        .get(&format!("/api/v1/measure/funnel/export?{range}&steps=Product%20Added,Order%20Completed&by=channel"), token)
        .await
        .unwrap();
    let text = String::from_utf8(csv.body.to_vec()).unwrap();
    assert!(
        text.starts_with("key,Product Added,Order Completed,median_seconds_to_convert\n"),
        "{text}"
    );
    for query in ["steps=Only", "window=0", "by=colour", "steps=A,,B"] {
        let r = client
            .get(&format!("/api/v1/measure/funnel?{query}"), token)
            .await
            .unwrap();
        assert_eq!(r.status, 400, "{query}: {}", r.json());
    }
}

/// The milliseconds of `from=…&to=…` (`to` included).
fn range_ms(range: &str) -> (i64, i64) {
    let day = |d: &str| {
        let t = parcours_core::time::parse_date_or_timestamp(d).unwrap();
        t.div_euclid(DAY) * DAY
    };
    let mut parts = range.split('&').map(|p| p.split_once('=').unwrap().1);
    let from = day(parts.next().unwrap());
    let to = day(parts.next().unwrap()) + DAY;
    (from, to)
}

/// A count as the English console writes it: `12,345`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The console's Measurement page shows the API's figures, in English and in French.
async fn console_page(client: &Client, token: &str, range: &str, kpis: &Value) {
    let cookie = common::console_session(client, token).await;
    let page = |path: String| {
        let cookie = cookie.clone();
        async move {
            let r = client
                .request("GET".parse().unwrap(), &path, &[("cookie", &cookie)], "")
                .await
                .unwrap();
            assert_eq!(r.status, 200, "{path}");
            String::from_utf8(r.body.to_vec()).unwrap()
        }
    };
    let html = page(format!("/console/measure?{range}&by=channel")).await;
    let orders = kpis["total"]["orders"].as_u64().unwrap();
    assert!(
        html.contains(&format!("id=\"kpi-orders\">{}</dd>", grouped(orders))),
        "{html}"
    );
    for id in [
        "table-kpis",
        "table-attribution",
        "table-funnel",
        "chart-kpis",
        "funnel-median",
        "table-uplift-groups",
        "table-uplift",
    ] {
        assert!(html.contains(&format!("id=\"{id}\"")), "no {id}");
    }
    // With no reading of the log under way, the progress the reading page polls sends it
    // back to the page.
    let r = client
        .request(
            "GET".parse().unwrap(),
            &format!("/console/measure/reading?{range}&by=channel"),
            &[("cookie", &cookie)],
            "",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    assert_eq!(
        r.headers["hx-redirect"].to_str().unwrap(),
        format!("/console/measure?{range}&by=channel")
    );
    // Each journey's groups, the global control group among them.
    assert!(
        html.contains("<td>Win back lapsed customers</td>"),
        "{html}"
    );
    assert!(html.contains("global control group"), "{html}");
    assert!(!html.contains("??missing??"));
    // The CSV link works with the console's session (the API wants a token).
    let link = html
        .split("id=\"kpis-export\"")
        .next()
        .unwrap()
        .rsplit("href=\"")
        .next()
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    let csv = client
        .request("GET".parse().unwrap(), &link, &[("cookie", &cookie)], "")
        .await
        .unwrap();
    assert_eq!(csv.status, 200, "{link}");
    let text = String::from_utf8(csv.body.to_vec()).unwrap();
    assert!(
        text.starts_with("key,visitors,") && text.contains("\nweb,"),
        "{text}"
    );
    // Each channel's orders, in its row of the table.
    let web = kpis["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "web")
        .unwrap();
    let row = html.split("<th scope=\"row\">Web</th>").nth(1).unwrap();
    let cells: Vec<&str> = row
        .split("<td class=\"num\">")
        .skip(1)
        .take(3)
        .map(|c| c.split('<').next().unwrap())
        .collect();
    assert_eq!(cells[2], grouped(web["orders"].as_u64().unwrap()), "{row}");

    // In French; a breakdown it does not offer shows channels; a bad range says why.
    let r = client
        .request(
            "GET".parse().unwrap(),
            "/console/lang?to=fr&back=/console/measure",
            &[("cookie", &cookie)],
            "",
        )
        .await
        .unwrap();
    let lang = r.headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap();
    let both = format!("{cookie}; {lang}");
    let r = client
        .request(
            "GET".parse().unwrap(),
            &format!("/console/measure?{range}&by=shop"),
            &[("cookie", &both)],
            "",
        )
        .await
        .unwrap();
    let fr = String::from_utf8(r.body.to_vec()).unwrap();
    assert!(
        fr.contains("<h1>Mesure</h1>") && !fr.contains("??missing??"),
        "{fr}"
    );
    let html = page("/console/measure?by=colour&from=2026-12-01&to=2026-01-01".into()).await;
    assert!(
        html.contains("role=\"alert\"") && html.contains("after it ends"),
        "{html}"
    );
    assert!(
        html.contains("<option value=\"channel\" selected>"),
        "{html}"
    );
}

/// Cohorts: the customers whose first order is in each week, as the SQL finds them, followed
/// through the weeks after with their orders.
async fn cohorts(client: &Client, token: &str, rows: &[Row], range: &str) {
    let (from, to) = range_ms(range);
    let week = |ts: i64| {
        let day = ts.div_euclid(DAY);
        parcours_core::table::format_day(day - (day + 3).rem_euclid(7))
    };
    // The SQL's first orders, per week and channel.
    let mut expected: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut first_week: std::collections::HashMap<&str, (String, String)> = Default::default();
    for r in rows.iter().filter(|r| r.kind == "order" && r.first_order) {
        if (from..to).contains(&r.ts) {
            *expected.entry((week(r.ts), r.channel.clone())).or_default() += 1;
            first_week.insert(&r.person, (week(r.ts), r.channel.clone()));
        }
    }
    // Their orders in later weeks: who ordered, and the revenue, per cohort and week.
    let mut later: BTreeMap<(String, String, String), (std::collections::HashSet<&str>, f64)> =
        BTreeMap::new();
    for r in rows.iter().filter(|r| r.kind == "order" && r.ts < to) {
        if let Some((cohort, channel)) = first_week.get(r.person.as_str()) {
            let e = later
                .entry((cohort.clone(), channel.clone(), week(r.ts)))
                .or_default();
            e.0.insert(&r.person);
            e.1 += r.value;
        }
    }
    let r = client
        .get(
            &format!("/api/v1/measure/cohorts?{range}&period=week&by=channel"),
            token,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.json());
    let answer = r.json();
    let cohorts = answer["cohorts"].as_array().unwrap();
    let found: BTreeMap<(String, String), u64> = cohorts
        .iter()
        .map(|c| {
            (
                (
                    c["cohort"].as_str().unwrap().to_string(),
                    c["key"].as_str().unwrap().to_string(),
                ),
                c["customers"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(found, expected);
    let mut compared = 0;
    for c in cohorts {
        let (cohort, key) = (c["cohort"].as_str().unwrap(), c["key"].as_str().unwrap());
        let active = c["active"].as_array().unwrap();
        assert_eq!(active[0], c["customers"], "{c}");
        for (i, n) in active.iter().enumerate() {
            let monday = parcours_core::table::day(cohort, 0).unwrap() + 7 * i as i64;
            let w = parcours_core::table::format_day(monday);
            let (people, revenue) = later
                .get(&(cohort.to_string(), key.to_string(), w.clone()))
                .map_or((0, 0.0), |(p, v)| (p.len() as u64, *v));
            assert_eq!(n.as_u64(), Some(people), "{cohort} {key} week {w}");
            let got = c["revenue"][i].as_f64().unwrap();
            assert!(
                (got - revenue).abs() < 1e-6 * revenue.max(1.0),
                "{cohort} {key} {w}"
            );
            compared += 1;
        }
    }
    assert!(compared > 20, "{compared}");
    assert!(
        cohorts.iter().any(|c| c["active"].as_array().unwrap()[1..]
            .iter()
            .any(|n| n.as_u64() > Some(0))),
        "nobody came back: {answer}"
    );
    let csv = client
        .get(
            &format!("/api/v1/measure/cohorts/export?{range}&period=month"),
            token,
        )
        .await
        .unwrap();
    let text = String::from_utf8(csv.body.to_vec()).unwrap();
    assert!(
        text.starts_with("cohort,key,customers,period,active,retention,revenue\n"),
        "{text}"
    );
    for query in ["period=year", "by=shop"] {
        let r = client
            .get(&format!("/api/v1/measure/cohorts?{query}"), token)
            .await
            .unwrap();
        assert_eq!(r.status, 400, "{query}");
    }
}

/// Lifetime value over the log: the API's figures for every buyer are what
/// `parcours report clv` prints for the SQL's orders written as a transaction file.
async fn lifetime_value(
    client: &Client,
    token: &str,
    rows: &[Row],
    dir: &std::path::Path,
    last: i64,
) {
    let end = date(last);
    let mut file = String::from("customer_id,date,amount\n");
    for r in rows.iter().filter(|r| r.kind == "order") {
        file.push_str(&format!("{},{},{}\n", r.person, date(r.ts), r.value));
    }
    let path = dir.join("transactions.csv");
    std::fs::write(&path, file).unwrap();
    let mut expected = Vec::new();
    parcours_cli::report::clv(
        &parcours_cli::report::ClvReport {
            transactions: path,
            model: parcours_cli::report::Model::BgNbd,
            unit_days: 7.0,
            end: Some(end.clone()),
            horizon: 52.0,
            months: 12,
            discount: 0.01,
        },
        &mut expected,
    )
    .unwrap();
    let expected = String::from_utf8(expected).unwrap();
    let r = client
        .get(&format!("/api/v1/measure/clv/export?end={end}"), token)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let ours = String::from_utf8(r.body.to_vec()).unwrap();
    let sorted = |text: &str| {
        let mut lines: Vec<String> = text.lines().skip(1).map(str::to_string).collect();
        lines.sort();
        lines
    };
    assert_eq!(sorted(&ours), sorted(&expected));
    assert!(ours.lines().count() > 100, "{ours}");

    let r = client
        .get(&format!("/api/v1/measure/clv?end={end}&limit=5"), token)
        .await
        .unwrap();
    let c = r.json();
    assert_eq!(c["top"].as_array().unwrap().len(), 5, "{c}");
    assert!(c["repeat_customers"].as_u64() > Some(0), "{c}");
    assert!(c["gamma_gamma"]["p"].as_f64().is_some(), "{c}");
    let clvs: Vec<f64> = c["top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["clv"].as_f64().unwrap())
        .collect();
    assert!(
        clvs.windows(2).all(|w| w[0] >= w[1]),
        "most valuable first: {clvs:?}"
    );
    assert!(c["top_decile_clv"].as_f64() <= Some(clvs[0]), "{c}");
    // Before the demo began nobody had bought: refused, with its reason.
    let r = client
        .get("/api/v1/measure/clv?end=2000-01-01", token)
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (400, Some("clv_unfittable"))
    );
    for query in [
        "horizon=-1",
        "months=0",
        "discount=1",
        "limit=0",
        "end=soon",
    ] {
        let r = client
            .get(&format!("/api/v1/measure/clv?{query}"), token)
            .await
            .unwrap();
        assert_eq!(r.status, 400, "{query}");
    }
}

/// Each demo journey's uplift report: its groups are the runs the store holds, and each
/// group's orders and revenue are what an independent reading finds (the orders of the run's
/// customer, following merges, within 30 days of her entry); nobody in the global control
/// group was sent anything by any journey.
async fn uplift(
    client: &Client,
    token: &str,
    dir: &std::path::Path,
    workspace: &str,
    rows: &[Row],
) {
    let c = open(dir);
    let sent_to_held: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM journey_contacts c WHERE c.workspace_id = ?1 AND EXISTS (
                 SELECT 1 FROM journey_runs r WHERE r.workspace_id = c.workspace_id
                 AND r.profile_id = c.profile_id AND json_extract(r.state, '$.global_control'))",
            params![workspace],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        sent_to_held, 0,
        "a journey sent a message to the global control group"
    );
    let mut st = c
        .prepare(&format!(
            "{PEOPLE} SELECT r.journey_id, COALESCE(ro.root, r.profile_id), r.entered_at,
                    COALESCE(json_extract(r.state, '$.holdout'), 0),
                    COALESCE(json_extract(r.state, '$.global_control'), 0),
                    json_extract(r.state, '$.variant'), COALESCE(r.outcome = 'goal', 0)
             FROM journey_runs r LEFT JOIN roots ro ON ro.id = r.profile_id
             WHERE r.workspace_id = ?1"
        ))
        .unwrap();
    type Run = (String, String, i64, bool, bool, Option<String>, bool);
    let runs: Vec<Run> = st
        .query_map(params![workspace], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let orders: Vec<&Row> = rows.iter().filter(|r| r.kind == "order").collect();
    // Per journey and group: runs, conversions, runs followed by an order, orders, revenue.
    /// Runs, conversions, runs followed by an order, orders, revenue.
    type Counts = (u64, u64, u64, u64, f64);
    let mut want: BTreeMap<(String, String), Counts> = BTreeMap::new();
    for (journey, person, entered, holdout, global, variant, converted) in &runs {
        let bought: Vec<&&Row> = orders
            .iter()
            .filter(|o| &o.person == person && o.ts >= *entered && o.ts < entered + 30 * DAY)
            .collect();
        let mut groups = vec![match (global, holdout) {
            (true, _) => "global control".to_string(),
            (false, true) => "holdout".to_string(),
            (false, false) => "treatment".to_string(),
        }];
        if let (false, false, Some(v)) = (global, holdout, variant) {
            groups.push(format!("variant {v}"));
        }
        for g in groups {
            let w = want.entry((journey.clone(), g)).or_default();
            w.0 += 1;
            w.1 += u64::from(*converted);
            w.2 += u64::from(!bought.is_empty());
            w.3 += bought.len() as u64;
            w.4 += bought.iter().map(|o| o.value).sum::<f64>();
        }
    }
    let journeys: std::collections::BTreeSet<String> =
        want.keys().map(|(j, _)| j.clone()).collect();
    // The treatment is always shown, empty or not.
    for j in &journeys {
        want.entry((j.clone(), "treatment".into())).or_default();
    }
    assert!(journeys.len() >= 3, "the demo's journeys ran: {want:?}");
    let held: u64 = want
        .iter()
        .filter(|((_, g), _)| g == "global control")
        .map(|(_, w)| w.0)
        .sum();
    assert!(held > 0, "some customers entered held out: {want:?}");
    let mut revenue_checked = 0.0;
    for journey in journeys {
        let r = client
            .get(&format!("/api/v1/measure/uplift?journey={journey}"), token)
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{journey}: {}", r.json());
        let answer = r.json();
        assert_eq!(answer["window_days"], 30);
        let groups = answer["groups"].as_array().unwrap();
        let mine: BTreeMap<String, &Value> = groups
            .iter()
            .map(|g| (g["group"].as_str().unwrap().to_string(), g))
            .collect();
        let expected: BTreeMap<&String, _> = want
            .iter()
            .filter(|((j, _), _)| j == &journey)
            .map(|((_, g), w)| (g, w))
            .collect();
        assert_eq!(
            mine.keys().collect::<Vec<_>>(),
            expected.keys().copied().collect::<Vec<_>>(),
            "{journey}: {answer}"
        );
        for (g, w) in &expected {
            let a = mine[g.as_str()];
            let got = (
                a["entered"].as_u64().unwrap(),
                a["converted"].as_u64().unwrap(),
                a["buyers"].as_u64().unwrap(),
                a["orders"].as_u64().unwrap(),
            );
            assert_eq!(got, (w.0, w.1, w.2, w.3), "{journey} {g}: {answer}");
            let revenue = a["revenue"].as_f64().unwrap();
            assert!(
                (revenue - w.4).abs() < 1e-6,
                "{journey} {g}: {revenue} vs {}",
                w.4
            );
            revenue_checked += w.4;
        }
        // The treatment against the global control group: incremental revenue is the
        // treatment's revenue less what it would have had at the control's mean.
        let versus = answer["comparisons"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["group"] == "treatment" && v["against"] == "global control");
        if let (Some(v), Some(t), Some(g)) = (
            versus,
            expected.get(&"treatment".to_string()),
            expected.get(&"global control".to_string()),
        ) {
            if g.0 > 1 && t.0 > 1 {
                let incremental = t.4 - t.0 as f64 * g.4 / g.0 as f64;
                let got = v["revenue"]["incremental"].as_f64().unwrap();
                assert!(
                    (got - incremental).abs() < 1e-6,
                    "{journey}: {got} vs {incremental}"
                );
            }
        }
        // The journey's own report counts the same global control group.
        let report = client
            .get(&format!("/api/v1/journeys/{journey}/report"), token)
            .await
            .unwrap()
            .json();
        let in_report = report["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["group"] == "global control")
            .map_or(0, |g| g["entered"].as_u64().unwrap());
        assert_eq!(
            in_report,
            expected
                .get(&"global control".to_string())
                .map_or(0, |w| w.0),
            "{journey}: {report}"
        );
        let csv = client
            .get(
                &format!("/api/v1/measure/uplift/export?journey={journey}"),
                token,
            )
            .await
            .unwrap();
        assert_eq!(csv.status, 200);
        let text = String::from_utf8_lossy(&csv.body).to_string();
        assert_eq!(
            text.lines().count(),
            1 + groups.len() + answer["comparisons"].as_array().unwrap().len(),
            "{text}"
        );
    }
    assert!(revenue_checked > 0.0, "some entrants bought: {want:?}");
    // Every answer came from a reading of the log the requests share; none is under way.
    let status = client
        .get("/api/v1/measure/status", token)
        .await
        .unwrap()
        .json();
    assert!(status["reading"].is_null(), "{status}");
    assert!(
        status["snapshot"]["events"].as_u64().unwrap() > 10_000,
        "{status}"
    );
    for (query, status, code) in [
        ("journey=nope", 404, "not_found"),
        ("journey=abandoned-cart&window=0", 400, "invalid_parameter"),
        ("journey=abandoned-cart&window=91", 400, "invalid_parameter"),
    ] {
        let r = client
            .get(&format!("/api/v1/measure/uplift?{query}"), token)
            .await
            .unwrap();
        assert_eq!(r.status, status, "{query}: {}", r.json());
        assert_eq!(r.json()["code"], code, "{query}: {}", r.json());
    }
}
