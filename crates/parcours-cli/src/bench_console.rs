//! `parcours bench console`: how long each main page of the console takes to answer on the
//! demo data set, as its users open it (a signed-in session, over HTTP on this machine), and
//! the same customer read from the admin API (JSON) as the baseline.
//!
//! The node runs in this process on the embedded store, loaded with `parcours demo`'s data
//! (3,000 customers over 90 days by default). Each page is asked for in turn, round after
//! round, so the machine's other work falls on every page alike.

use std::path::PathBuf;
use std::time::Duration;

use parcours_demo::http::Client;
use parcours_engine::clock::Moment;

use crate::bench::percentile;
use crate::commands::demo_setup;
use crate::config::Config;

#[derive(Debug, Clone)]
pub struct ConsoleBench {
    /// Customers and days of the demo data.
    pub customers: usize,
    pub days: u32,
    /// Requests per page (after a few to warm up).
    pub rounds: usize,
}

pub async fn run(b: ConsoleBench) -> anyhow::Result<()> {
    println!("parcours bench console (release build recommended)");
    let dir: PathBuf =
        std::env::temp_dir().join(format!("parcours-bench-console-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = Config {
        data_dir: dir.clone(),
        ..Config::default()
    };
    config.http.port = 0;
    let built = Moment::now();
    let (node, demo) = demo_setup(&config, b.customers, b.days, false).await?;
    let demo = demo.ok_or_else(|| anyhow::anyhow!("the demo data was not loaded"))?;
    println!(
        "  demo data: {} events, {} profiles, loaded in {:.1?} (not measured)",
        demo.events,
        demo.profiles,
        built.elapsed()
    );
    let client = Client::new(node.url());
    let signed = client
        .request(
            "POST".parse()?,
            "/console/sign-in",
            &[("content-type", "application/x-www-form-urlencoded")],
            format!("token={}&next=/console/customers", demo.admin_token),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(signed.status == 303, "sign-in answered {}", signed.status);
    let cookie = signed
        .headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .ok_or_else(|| anyhow::anyhow!("no session cookie"))?
        .to_string();
    // The customer of the "left the cart online, bought in a shop" audience: a long,
    // cross-channel timeline.
    let (kind, value, profile) = demo
        .audiences
        .iter()
        .find(|a| a.id == "online_cart_store_purchase")
        .and_then(|a| a.example.clone())
        .or_else(|| demo.audiences.iter().find_map(|a| a.example.clone()))
        .ok_or_else(|| anyhow::anyhow!("no demo customer to look at"))?;
    // The longest range the dashboard takes, up to today.
    let year = {
        use parcours_service::dashboard::{date, DayRange, MAX_DAYS};
        let r = DayRange::last(
            MAX_DAYS,
            parcours_core::time::Clock::now(&parcours_engine::SystemClock),
        );
        format!("/console/dashboard?from={}&to={}", date(r.from), date(r.to))
    };
    let pages: Vec<(&str, String, u16)> = vec![
        ("dashboard (30 days)", "/console/dashboard".into(), 200),
        ("dashboard, a year", year, 200),
        ("customers", "/console/customers".into(), 200),
        (
            "search (by identifier)",
            format!("/console/customers?q={value}"),
            303,
        ),
        ("customer 360", format!("/console/customers/{profile}"), 200),
        ("audiences", "/console/audiences".into(), 200),
        ("audience", "/console/audiences/vip".into(), 200),
        ("journeys", "/console/journeys".into(), 200),
        (
            "journey graph",
            "/console/journeys/abandoned-cart".into(),
            200,
        ),
        ("messages", "/console/messages?channel=email".into(), 200),
        (
            "data quality (with arrivals)",
            "/console/quality".into(),
            200,
        ),
    ];
    let api = format!("/api/v1/profiles/{profile}");
    let bearer = format!("Bearer {}", demo.admin_token);
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); pages.len() + 1];
    let warmup = 5;
    for round in 0..b.rounds + warmup {
        for (i, (name, path, status)) in pages.iter().enumerate() {
            let t = Moment::now();
            let r = client
                .request("GET".parse()?, path, &[("cookie", &cookie)], "")
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let took = t.elapsed();
            anyhow::ensure!(
                r.status == *status,
                "{name} ({path}) answered {}, not {status}",
                r.status
            );
            if round >= warmup {
                times[i].push(took);
            }
        }
        let t = Moment::now();
        let r = client
            .request("GET".parse()?, &api, &[("authorization", &bearer)], "")
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let took = t.elapsed();
        anyhow::ensure!(r.status == 200, "{api} answered {}", r.status);
        if round >= warmup {
            times[pages.len()].push(took);
        }
    }
    println!(
        "  {} requests per page, one after another, signed in as an admin; customer {kind} {value}",
        b.rounds
    );
    println!("  {:<24} {:>9} {:>9} {:>9}", "page", "p50", "p99", "max");
    let show = |name: &str, t: &mut Vec<Duration>| {
        t.sort();
        let ms = |d: Duration| format!("{:.1}ms", d.as_secs_f64() * 1000.0);
        println!(
            "  {:<24} {:>9} {:>9} {:>9}",
            name,
            ms(percentile(t, 0.5)),
            ms(percentile(t, 0.99)),
            ms(*t.last().unwrap_or(&Duration::ZERO))
        );
        percentile(t, 0.99)
    };
    let mut worst = Duration::ZERO;
    for (i, (name, _, _)) in pages.iter().enumerate() {
        worst = worst.max(show(name, &mut times[i]));
    }
    let n = pages.len();
    let base = show("baseline: API profile", &mut times[n]);
    println!(
        "  slowest page p99 {:.1}ms (target ≤ 100ms); {:.1}× the API's profile p99",
        worst.as_secs_f64() * 1000.0,
        worst.as_secs_f64() / base.as_secs_f64().max(1e-9)
    );
    node.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
