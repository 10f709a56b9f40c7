//! `parcours bench commerce`: check-and-reserve throughput on one hot SKU and spread over
//! 10,000 SKUs, with zero oversell checked, and availability look-ups (p50/p99) through the
//! service, on the embedded store (and on PostgreSQL with `--database`).
//!
//! The baseline of the same run is the bare store doing the same writes: one transaction per
//! reservation that takes a unit with a conditional `UPDATE … WHERE on_hand − reserved ≥ n`
//! and inserts the reservation row, from the same number of threads, with the same
//! durability; and, for look-ups, one bare primary-key read of a level.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use parcours_core::commerce::catalogue::{Item, Location, LocationKind, Pickup};
use parcours_core::commerce::inventory::{Adjustment, Change, StockState};
use parcours_core::rules::IdentityRulesConfig;
use parcours_core::time::Clock;
use parcours_engine::clock::Moment;
use parcours_engine::SystemClock;
use parcours_service::commerce::stock::{availability, AvailabilityQuery};
use parcours_service::Actor;
use parcours_store::{ReserveRequest, Reserved, Role, Store, Workspace};
use parcours_store_sqlite::{Durability, SqliteStore};

const WS: &str = "ws_bench";
const SKUS: usize = 10_000;
const LOCATIONS: [&str; 3] = ["lyon", "paris", "web"];

#[derive(Debug, Clone)]
pub struct CommerceBench {
    /// Reservations per run.
    pub reservations: usize,
    /// Clients reserving at once.
    pub threads: usize,
    /// Availability look-ups.
    pub lookups: usize,
    /// Also on this PostgreSQL server (a scratch database is made and dropped).
    pub database: Option<String>,
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    crate::bench::percentile(sorted, q)
}

/// Makes the workspace, three locations, 10,000 SKUs and the hot one, with `hot_units` of it
/// at Lyon and plenty of the others everywhere.
fn seed(store: &dyn Store, hot_units: i64) -> anyhow::Result<()> {
    let now = SystemClock.now();
    store.create_workspace(&Workspace {
        id: WS.into(),
        name: "bench".into(),
        created_at: now,
        identity_rules: IdentityRulesConfig::default(),
    })?;
    for (i, id) in LOCATIONS.iter().enumerate() {
        store.put_location(
            WS,
            &Location {
                id: (*id).into(),
                name: format!("{id} location"),
                kind: if *id == "web" {
                    LocationKind::Web
                } else {
                    LocationKind::Shop
                },
                address: String::new(),
                latitude: Some(45.0 + i as f64),
                longitude: Some(4.0 + i as f64),
                time_zone: "Europe/Paris".into(),
                opening_hours: Default::default(),
                channels: vec!["web".into(), "pos".into()],
                pickup: Pickup::LocalStock,
                priority: i as i32,
            },
            now,
        )?;
    }
    let item = |sku: String| Item {
        sku: sku.clone(),
        name: sku,
        product: None,
        components: vec![],
        prices: vec![],
        low_stock: None,
    };
    store.put_item(WS, &item("HOT".into()), now)?;
    let mut moves = vec![Adjustment {
        sku: "HOT".into(),
        location: "lyon".into(),
        state: StockState::OnHand,
        change: Change::By(hot_units),
        reason: "received".into(),
        reference: None,
    }];
    for i in 0..SKUS {
        let sku = format!("SKU-{i:05}");
        store.put_item(WS, &item(sku.clone()), now)?;
        for loc in LOCATIONS {
            moves.push(Adjustment {
                sku: sku.clone(),
                location: loc.into(),
                state: StockState::OnHand,
                change: Change::By(1_000_000),
                reason: "received".into(),
                reference: None,
            });
        }
        if moves.len() >= 450 {
            if store.move_stock(WS, &moves, now)?.is_err() {
                bail!("seeding stock was refused");
            }
            moves.clear();
        }
    }
    if !moves.is_empty() && store.move_stock(WS, &moves, now)?.is_err() {
        bail!("seeding stock was refused");
    }
    Ok(())
}

/// `n` reservations of one unit from `threads` threads; `sku_of(i)` names the SKU of the i-th.
/// Returns (held, refused, reservations per second).
fn reserve_all(
    store: &Arc<dyn Store>,
    tag: &str,
    n: usize,
    threads: usize,
    sku_of: impl Fn(usize) -> (String, String) + Sync,
) -> anyhow::Result<(u64, u64, f64)> {
    let held = AtomicU64::new(0);
    let refused = AtomicU64::new(0);
    let next = AtomicU64::new(0);
    let start = Moment::now();
    std::thread::scope(|s| -> anyhow::Result<()> {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                        if i >= n {
                            return Ok(());
                        }
                        let (sku, loc) = sku_of(i);
                        let r = ReserveRequest {
                            workspace_id: WS.into(),
                            reference: format!("{tag}-{i}"),
                            demand: [((sku, loc), 1)].into(),
                            expires_at: None,
                            backorder: false,
                        };
                        match store.reserve(&r, SystemClock.now())? {
                            Reserved::Held(_) => held.fetch_add(1, Ordering::Relaxed),
                            _ => refused.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("a reserving thread panicked")?;
        }
        Ok(())
    })?;
    let secs = start.elapsed().as_secs_f64();
    Ok((
        held.into_inner(),
        refused.into_inner(),
        n as f64 / secs.max(1e-9),
    ))
}

/// Availability of one random SKU at a time through the service (catalogue, locations and
/// levels read, kits and channels applied): the latencies, sorted.
fn lookups(store: &dyn Store, n: usize) -> anyhow::Result<Vec<Duration>> {
    let actor = Actor::new(WS, Role::Analyst);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let q = AvailabilityQuery {
            skus: vec![format!("SKU-{:05}", (i * 7919) % SKUS)],
            channel: Some("web".into()),
            near: Some((45.76, 4.85)),
            ..Default::default()
        };
        let start = Moment::now();
        let found = availability(store, &actor, &q, SystemClock.now())?;
        out.push(start.elapsed());
        // Three locations of a million each, less what the spread run reserved.
        if !(2_000_000..=3_000_000).contains(&found[0].available) {
            bail!(
                "availability read {} of about 3,000,000",
                found[0].available
            );
        }
    }
    out.sort();
    Ok(out)
}

struct Figures {
    hot: f64,
    spread: f64,
    hot_base: f64,
    spread_base: f64,
    lookup: Vec<Duration>,
    lookup_base: Vec<Duration>,
}

fn report(what: &str, f: &Figures) {
    println!("{what}");
    println!(
        "  reservations, one hot SKU:   {:>9.0}/s   bare store {:>9.0}/s   ratio {:.2}",
        f.hot,
        f.hot_base,
        f.hot / f.hot_base
    );
    println!(
        "  reservations, 10,000 SKUs:   {:>9.0}/s   bare store {:>9.0}/s   ratio {:.2}",
        f.spread,
        f.spread_base,
        f.spread / f.spread_base
    );
    println!(
        "  availability look-up:        p50 {:>6.3} ms  p99 {:>6.3} ms   bare read p50 {:.3} ms  p99 {:.3} ms",
        ms(percentile(&f.lookup, 0.50)),
        ms(percentile(&f.lookup, 0.99)),
        ms(percentile(&f.lookup_base, 0.50)),
        ms(percentile(&f.lookup_base, 0.99)),
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs the store's half: hot SKU (with the oversell check), 10,000 SKUs, look-ups.
fn measure(store: Arc<dyn Store>, b: &CommerceBench) -> anyhow::Result<(f64, f64, Vec<Duration>)> {
    // Nine units in ten can be had: the rest must be refused, none oversold.
    let hot_units = (b.reservations * 9 / 10) as i64;
    seed(store.as_ref(), hot_units)?;
    eprintln!("reserving the hot SKU from {} threads…", b.threads);
    let (held, refused, hot) = reserve_all(&store, "hot", b.reservations, b.threads, |_| {
        ("HOT".into(), "lyon".into())
    })?;
    let level = store
        .stock(WS, &["HOT".into()], SystemClock.now())?
        .into_iter()
        .next()
        .context("the hot SKU's level")?;
    if held as i64 != hot_units
        || level.quantities.reserved != hot_units
        || refused as usize != b.reservations - hot_units as usize
    {
        bail!(
            "oversold or lost: {held} held, {refused} refused, {} reserved, of {hot_units} units",
            level.quantities.reserved
        );
    }
    println!("  hot SKU: {held} held, {refused} refused, reserved {hot_units} of {hot_units}: zero oversell");
    eprintln!("reserving over 10,000 SKUs…");
    let (_, _, spread) = reserve_all(&store, "spread", b.reservations, b.threads, |i| {
        (
            format!("SKU-{:05}", (i * 7919) % SKUS),
            LOCATIONS[i % 3].to_string(),
        )
    })?;
    eprintln!("looking availability up…");
    let lookup = lookups(store.as_ref(), b.lookups)?;
    Ok((hot, spread, lookup))
}

pub fn run(b: CommerceBench) -> anyhow::Result<()> {
    if b.reservations < 10 || b.threads == 0 || b.lookups == 0 {
        bail!("give at least 10 reservations, 1 thread and 1 look-up");
    }
    let dir = std::env::temp_dir().join(format!("parcours-bench-commerce-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let outcome = (|| -> anyhow::Result<()> {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(
            dir.join("parcours.sqlite3"),
            Durability::Full,
        )?);
        println!(
            "commerce on the embedded store (fsync on every commit), {} reservations, {} threads",
            b.reservations, b.threads
        );
        let (hot, spread, lookup) = measure(store, &b)?;
        let base = sqlite_baseline(&dir.join("bare.sqlite3"), &b)?;
        report(
            "embedded store",
            &Figures {
                hot,
                spread,
                hot_base: base.0,
                spread_base: base.1,
                lookup,
                lookup_base: base.2,
            },
        );
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    outcome?;
    if let Some(url) = &b.database {
        postgres(url, &b)?;
    }
    Ok(())
}

/// The bare embedded store: the same writes on a file with the same settings.
fn sqlite_baseline(
    path: &std::path::Path,
    b: &CommerceBench,
) -> anyhow::Result<(f64, f64, Vec<Duration>)> {
    let conn = rusqlite::Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
         CREATE TABLE levels (sku TEXT, location TEXT, on_hand INTEGER, reserved INTEGER,
                              PRIMARY KEY (sku, location)) WITHOUT ROWID;
         CREATE TABLE reservations (reference TEXT PRIMARY KEY, sku TEXT, location TEXT, quantity INTEGER) WITHOUT ROWID;",
    )?;
    {
        let tx = conn.unchecked_transaction()?;
        tx.execute(
            "INSERT INTO levels VALUES ('HOT', 'lyon', ?1, 0)",
            [(b.reservations * 9 / 10) as i64],
        )?;
        for i in 0..SKUS {
            for loc in LOCATIONS {
                tx.execute(
                    "INSERT INTO levels VALUES (?1, ?2, 1000000, 0)",
                    rusqlite::params![format!("SKU-{i:05}"), loc],
                )?;
            }
        }
        tx.commit()?;
    }
    let conn = Mutex::new(conn);
    let reserve =
        |tag: &str, sku_of: &(dyn Fn(usize) -> (String, String) + Sync)| -> anyhow::Result<f64> {
            let next = AtomicU64::new(0);
            let start = Moment::now();
            std::thread::scope(|s| -> anyhow::Result<()> {
                let workers: Vec<_> = (0..b.threads)
                    .map(|_| {
                        s.spawn(|| -> anyhow::Result<()> {
                            loop {
                                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                                if i >= b.reservations {
                                    return Ok(());
                                }
                                let (sku, loc) = sku_of(i);
                                let mut c = conn.lock().unwrap_or_else(|e| e.into_inner());
                                let tx = c.transaction()?;
                                let took = tx.execute(
                                    "UPDATE levels SET reserved = reserved + 1
                                 WHERE sku = ?1 AND location = ?2 AND on_hand - reserved >= 1",
                                    rusqlite::params![sku, loc],
                                )?;
                                if took == 1 {
                                    tx.execute(
                                        "INSERT INTO reservations VALUES (?1, ?2, ?3, 1)",
                                        rusqlite::params![format!("{tag}-{i}"), sku, loc],
                                    )?;
                                }
                                tx.commit()?;
                            }
                        })
                    })
                    .collect();
                for w in workers {
                    w.join().expect("a baseline thread panicked")?;
                }
                Ok(())
            })?;
            Ok(b.reservations as f64 / start.elapsed().as_secs_f64().max(1e-9))
        };
    eprintln!("measuring the bare store…");
    let hot = reserve("hot", &|_| ("HOT".into(), "lyon".into()))?;
    let spread = reserve("spread", &|i| {
        (
            format!("SKU-{:05}", (i * 7919) % SKUS),
            LOCATIONS[i % 3].to_string(),
        )
    })?;
    let c = conn.lock().unwrap_or_else(|e| e.into_inner());
    let mut reads = Vec::with_capacity(b.lookups);
    for i in 0..b.lookups {
        let start = Moment::now();
        let _: i64 = c.query_row(
            "SELECT on_hand - reserved FROM levels WHERE sku = ?1 AND location = 'lyon'",
            [format!("SKU-{:05}", (i * 7919) % SKUS)],
            |r| r.get(0),
        )?;
        reads.push(start.elapsed());
    }
    reads.sort();
    Ok((hot, spread, reads))
}

fn postgres(url: &str, b: &CommerceBench) -> anyhow::Result<()> {
    use parcours_store_postgres::testing::{create_database, drop_database, with_database};
    use parcours_store_postgres::{PgConfig, PgStore};
    let scratch = format!("parcours_bench_commerce_{}", std::process::id());
    create_database(url, &scratch).map_err(|e| anyhow::anyhow!(e))?;
    let scratch_url = with_database(url, &scratch);
    let outcome = (|| -> anyhow::Result<()> {
        let pg = Arc::new(PgStore::connect(&PgConfig::new(&scratch_url))?);
        println!(
            "commerce on PostgreSQL, {} reservations, {} threads",
            b.reservations, b.threads
        );
        let (hot, spread, lookup) = measure(pg.clone(), b)?;
        let base = pg_baseline(&scratch_url, b)?;
        report(
            "PostgreSQL",
            &Figures {
                hot,
                spread,
                hot_base: base.0,
                spread_base: base.1,
                lookup,
                lookup_base: base.2,
            },
        );
        Ok(())
    })();
    let dropped = drop_database(url, &scratch).map_err(|e| anyhow::anyhow!(e));
    outcome?;
    dropped
}

/// The bare PostgreSQL server: the same writes in tables of their own, from as many
/// connections.
fn pg_baseline(url: &str, b: &CommerceBench) -> anyhow::Result<(f64, f64, Vec<Duration>)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(b.threads as u32 + 1)
            .connect(url)
            .await?;
        sqlx::raw_sql(
            "CREATE TABLE bare_levels (sku TEXT, location TEXT, on_hand BIGINT, reserved BIGINT,
                                       PRIMARY KEY (sku, location));
             CREATE TABLE bare_reservations (reference TEXT PRIMARY KEY, sku TEXT, location TEXT, quantity BIGINT);",
        )
        .execute(&pool)
        .await?;
        sqlx::query("INSERT INTO bare_levels VALUES ('HOT', 'lyon', $1, 0)")
            .bind((b.reservations * 9 / 10) as i64)
            .execute(&pool)
            .await?;
        sqlx::query(
            "INSERT INTO bare_levels SELECT 'SKU-' || lpad(i::text, 5, '0'), l, 1000000, 0
             FROM generate_series(0, $1 - 1) i, unnest(ARRAY['lyon', 'paris', 'web']) l",
        )
        .bind(SKUS as i64)
        .execute(&pool)
        .await?;
        let mut rates = Vec::new();
        for tag in ["hot", "spread"] {
            let next = Arc::new(AtomicU64::new(0));
            let start = Moment::now();
            let mut tasks = Vec::new();
            for _ in 0..b.threads {
                let (pool, next, n) = (pool.clone(), next.clone(), b.reservations);
                tasks.push(tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                        if i >= n {
                            return Ok::<(), sqlx::Error>(());
                        }
                        let (sku, loc) = if tag == "hot" {
                            ("HOT".to_string(), "lyon".to_string())
                        } else {
                            (
                                format!("SKU-{:05}", (i * 7919) % SKUS),
                                LOCATIONS[i % 3].to_string(),
                            )
                        };
                        let mut tx = pool.begin().await?;
                        let took = sqlx::query(
                            "UPDATE bare_levels SET reserved = reserved + 1
                             WHERE sku = $1 AND location = $2 AND on_hand - reserved >= 1",
                        )
                        .bind(&sku)
                        .bind(&loc)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                        if took == 1 {
                            sqlx::query("INSERT INTO bare_reservations VALUES ($1, $2, $3, 1)")
                                .bind(format!("{tag}-{i}"))
                                .bind(&sku)
                                .bind(&loc)
                                .execute(&mut *tx)
                                .await?;
                        }
                        tx.commit().await?;
                    }
                }));
            }
            for t in tasks {
                t.await??;
            }
            rates.push(b.reservations as f64 / start.elapsed().as_secs_f64().max(1e-9));
        }
        let mut reads = Vec::with_capacity(b.lookups);
        for i in 0..b.lookups {
            let start = Moment::now();
            let _: i64 = sqlx::query_scalar(
                "SELECT on_hand - reserved FROM bare_levels WHERE sku = $1 AND location = 'lyon'",
            )
            .bind(format!("SKU-{:05}", (i * 7919) % SKUS))
            .fetch_one(&pool)
            .await?;
            reads.push(start.elapsed());
        }
        reads.sort();
        pool.close().await;
        Ok::<_, anyhow::Error>((rates[0], rates[1], reads))
    })
}
