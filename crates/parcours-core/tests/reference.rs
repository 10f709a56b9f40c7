//! Measurement against the published references, on the published data sets:
//! - CDNOW (Fader, Hardie & Lee 2005), as shipped in the `lifetimes` 0.11.3 wheel: BG/NBD,
//!   Gamma-Gamma and Pareto/NBD fits, the summary of the raw transaction log;
//! - `Data.csv`, the 10,000 paths shipped in the `channelattribution` 2.2.5 sdist: first, last
//!   and linear per channel, Shapley's efficiency, the Markov results (printed).
//!
//! `scripts/reference-data.py` fetches both (checked by SHA-256) into `target/reference-data`,
//! or the directory `PARCOURS_REFERENCE_DATA` names; `scripts/test.sh` runs it first. Without
//! the files these tests fail and say how to get them.

use std::path::PathBuf;

use parcours_core::attribution::{self, Rule};
use parcours_core::clv::{self, BgNbd, GammaGamma, Input, ParetoNbd, Summary};

fn data(name: &str) -> String {
    let dir = std::env::var_os("PARCOURS_REFERENCE_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/reference-data")
        });
    let path = dir.join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. The reference data sets are fetched by \
             `python3 scripts/reference-data.py` (scripts/test.sh runs it)",
            path.display()
        )
    })
}

/// CDNOW's customers as Hardie summarises them: (x, t_x, T) and the mean repeat value.
fn cdnow() -> Vec<clv::CustomerSummary> {
    match clv::parse_input(&data("cdnow_customers_summary_with_transactions.csv")) {
        Ok(Input::Summaries(s)) => s,
        other => panic!("CDNOW's summary read as {other:?}"),
    }
}

fn within(got: f64, want: f64, tolerance: f64, what: &str) {
    assert!(
        (got - want).abs() <= tolerance,
        "{what}: {got} against the reference {want} (tolerance {tolerance})"
    );
}

#[test]
fn bg_nbd_on_cdnow_matches_fader_hardie_and_lee() {
    let customers: Vec<Summary> = cdnow().iter().map(|c| c.summary).collect();
    assert_eq!(customers.len(), 2_357);
    let (m, ll) = BgNbd::fit(&customers);
    println!("BG/NBD on CDNOW: {m:?}, log-likelihood {ll:.4}");
    within(m.r, 0.243, 1e-3, "r");
    within(m.alpha, 4.414, 1e-3, "alpha");
    within(m.a, 0.793, 1e-3, "a");
    within(m.b, 2.426, 1e-3, "b");
    within(ll, -9582.4, 0.05, "log-likelihood");
    let e = m.expected_purchases(
        &Summary {
            x: 2.0,
            t_x: 30.43,
            t: 38.86,
        },
        39.0,
    );
    within(e, 1.226, 1e-3, "E[Y(39) | x=2, t_x=30.43, T=38.86]");
}

#[test]
fn gamma_gamma_on_cdnow_matches_the_reference() {
    let spenders: Vec<(f64, f64)> = cdnow().iter().map(|c| (c.summary.x, c.monetary)).collect();
    let (m, ll) = GammaGamma::fit(&spenders);
    println!("Gamma-Gamma on CDNOW: {m:?}, log-likelihood {ll:.4}");
    within(m.p, 6.25, 1e-2, "p");
    within(m.q, 3.74, 1e-2, "q");
    within(m.gamma, 15.44, 1e-2, "gamma");
}

#[test]
fn pareto_nbd_on_cdnow_matches_the_reference() {
    let customers: Vec<Summary> = cdnow().iter().map(|c| c.summary).collect();
    let (m, ll) = ParetoNbd::fit(&customers);
    println!("Pareto/NBD on CDNOW: {m:?}, log-likelihood {ll:.4}");
    within(m.r, 0.553, 1e-2, "r");
    within(m.alpha, 10.578, 1e-2, "alpha");
    within(m.s, 0.606, 1e-2, "s");
    within(m.beta, 11.669, 1e-2, "beta");
}

#[test]
fn cdnow_transactions_summarise_to_hardies_summary() {
    // The raw log of the same 2,357 customers (CDNOW's id, the sample's id, date, CDs,
    // dollars; no header), as a CSV of customer id, date and amount, observed to 1997-09-30
    // in weeks: the summary Hardie published, to its two decimals.
    let mut csv = String::from("customer_id,date,amount\n");
    for line in data("CDNOW_sample.txt")
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 5, "{line:?}");
        csv.push_str(&format!(
            "{},{},{}\n",
            f[1].trim_start_matches('0'),
            f[2],
            f[4]
        ));
    }
    let Input::Purchases(log) = clv::parse_input(&csv).expect("readable") else {
        panic!("CDNOW's sample did not read as a transaction log");
    };
    assert_eq!(log.len(), 6_919);
    let end = parcours_core::table::day("1997-09-30", 0).expect("a date");
    let mut ours = clv::summarise(&log, end, 7.0);
    ours.sort_by_key(|c| c.customer.parse::<u32>().expect("a number"));
    let theirs = cdnow();
    assert_eq!(ours.len(), theirs.len());
    // Hardie rounds to two decimals (22.345 is written 22.35).
    let rounding = 0.005 + 1e-6;
    for (a, b) in ours.iter().zip(&theirs) {
        assert_eq!(a.customer, b.customer);
        assert_eq!(a.summary.x, b.summary.x, "{a:?} against {b:?}");
        within(a.summary.t_x, b.summary.t_x, rounding, &a.customer);
        within(a.summary.t, b.summary.t, rounding, &a.customer);
        within(a.monetary, b.monetary, rounding, &a.customer);
    }
}

/// First, last and linear conversions and value per channel on `Data.csv`, computed by an
/// independent script (Python's csv module, 10,000 paths, 19,785 conversions, 74,802.972 of
/// value): (channel, first, last, linear, first value, last value, linear value).
const HEURISTIC: [(&str, f64, f64, f64, f64, f64, f64); 12] = [
    (
        "alpha",
        6308.0,
        8447.0,
        7574.718594,
        19121.272356,
        28414.214274,
        24524.709569,
    ),
    (
        "beta",
        2831.0,
        989.0,
        2083.500145,
        12235.591744,
        3850.020987,
        8954.266717,
    ),
    ("delta", 1.0, 5.0, 1.725000, 6.119000, 10.972000, 4.404050),
    (
        "epsilon",
        99.0,
        531.0,
        272.170438,
        412.301243,
        2202.612289,
        1106.270065,
    ),
    (
        "eta",
        3164.0,
        4167.0,
        3539.951157,
        11909.476213,
        16754.203800,
        13783.497051,
    ),
    (
        "gamma", 165.0, 92.0, 121.041639, 718.977992, 506.013992, 569.417358,
    ),
    (
        "iota",
        4606.0,
        3355.0,
        3857.096221,
        19597.261277,
        13487.974271,
        15988.988995,
    ),
    (
        "kappa",
        74.0,
        230.0,
        137.964078,
        305.743250,
        1069.384250,
        599.747786,
    ),
    (
        "lambda",
        902.0,
        1207.0,
        1035.257572,
        3735.602165,
        5249.949985,
        4430.316169,
    ),
    ("mi", 2.0, 2.0, 2.222222, 5.273000, 5.273000, 6.081444),
    (
        "theta",
        1606.0,
        653.0,
        1022.801394,
        6652.349347,
        2799.091988,
        4295.743619,
    ),
    (
        "zeta", 27.0, 107.0, 136.551540, 103.004000, 453.260750, 539.528763,
    ),
];

#[test]
fn attribution_on_channelattributions_data() {
    let paths = attribution::parse_paths(&data("Data.csv")).expect("Data.csv reads");
    assert_eq!(paths.len(), 10_000);
    let total: f64 = paths.iter().map(|p| p.conversions).sum();
    assert_eq!(total, 19_785.0);
    let first = Rule::First.attribute(&paths);
    let last = Rule::Last.attribute(&paths);
    let linear = Rule::Linear.attribute(&paths);
    assert_eq!(first.len(), HEURISTIC.len());
    for (c, f, l, lin, fv, lv, linv) in HEURISTIC {
        assert_eq!(first[c].conversions, f, "first, {c}");
        assert_eq!(last[c].conversions, l, "last, {c}");
        within(linear[c].conversions, lin, 5e-7, &format!("linear, {c}"));
        within(first[c].value, fv, 5e-7, &format!("first value, {c}"));
        within(last[c].value, lv, 5e-7, &format!("last value, {c}"));
        within(linear[c].value, linv, 5e-7, &format!("linear value, {c}"));
    }
    // Shapley is efficient: its credits add up to the conversions and the value.
    let shapley = attribution::shapley(&paths);
    within(
        shapley.values().map(|c| c.conversions).sum::<f64>(),
        total,
        1e-6,
        "Shapley's conversions",
    );
    within(
        shapley.values().map(|c| c.value).sum::<f64>(),
        paths.iter().map(|p| p.value).sum::<f64>(),
        1e-6,
        "Shapley's value",
    );
    // Markov: reported, and its credits share out exactly the conversions.
    for (order, nulls) in [(1, true), (1, false), (2, true), (3, true)] {
        let m = attribution::markov(&paths, order, nulls);
        within(
            m.credits.values().map(|c| c.conversions).sum::<f64>(),
            total,
            1e-6,
            "Markov's conversions",
        );
        println!(
            "Markov order {order}, nulls {nulls}: P(conversion) {:.6}, {} states",
            m.conversion_probability, m.states
        );
        for (c, credit) in &m.credits {
            println!(
                "  {c:8} {:10.1} conversions {:10.1} value  removal effect {:.4}",
                credit.conversions, credit.value, m.removal_effects[c]
            );
        }
    }
}
