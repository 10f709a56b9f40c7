//! `parcours report` on the published data sets (see `scripts/reference-data.py`), as an
//! analyst runs it: CSV on stdout, what was fitted on stderr, clear errors on bad files.

use std::path::PathBuf;
use std::process::{Command, Output};

fn data(name: &str) -> PathBuf {
    let dir = std::env::var_os("PARCOURS_REFERENCE_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/reference-data")
        });
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: `python3 scripts/reference-data.py` fetches it (scripts/test.sh runs it)",
        path.display()
    );
    path
}

fn parcours(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_parcours"))
        .args(args)
        .output()
        .expect("parcours runs")
}

/// The CSV's rows as maps from column to field.
fn rows(out: &Output) -> Vec<std::collections::BTreeMap<String, String>> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout.clone()).expect("UTF-8");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    lines
        .map(|l| {
            header
                .iter()
                .map(|h| h.to_string())
                .zip(l.split(',').map(str::to_string))
                .collect()
        })
        .collect()
}

fn number(row: &std::collections::BTreeMap<String, String>, column: &str) -> f64 {
    row[column].parse().expect("a number")
}

#[test]
fn attribution_of_channelattributions_paths() {
    let path = data("Data.csv");
    let out = parcours(&["report", "attribution", "--paths", path.to_str().unwrap()]);
    let rows = rows(&out);
    assert_eq!(rows.len(), 12);
    let alpha = rows
        .iter()
        .find(|r| r["channel"] == "alpha")
        .expect("alpha");
    assert_eq!(number(alpha, "first_conversions"), 6308.0);
    assert_eq!(number(alpha, "last_conversions"), 8447.0);
    assert!((number(alpha, "linear_conversions") - 7574.718594).abs() < 1e-6);
    for model in [
        "first",
        "last",
        "linear",
        "position_based",
        "shapley",
        "markov",
    ] {
        let total: f64 = rows
            .iter()
            .map(|r| number(r, &format!("{model}_conversions")))
            .sum();
        assert!((total - 19_785.0).abs() < 1e-3, "{model}: {total}");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("10000 paths"), "{stderr}");
    assert!(stderr.contains("Markov: 12 states"), "{stderr}");
}

#[test]
fn lifetime_value_of_cdnow() {
    let path = data("cdnow_customers_summary_with_transactions.csv");
    let out = parcours(&[
        "report",
        "clv",
        "--transactions",
        path.to_str().unwrap(),
        "--horizon",
        "39",
    ]);
    let rows = rows(&out);
    assert_eq!(rows.len(), 2_357);
    // Hardie's customer: x = 2, t_x = 30.43, T = 38.86.
    let first = &rows[0];
    assert_eq!(first["customer"], "1");
    assert!((number(first, "expected_purchases") - 1.226).abs() < 1e-3);
    assert!((number(first, "p_alive") - 0.7266).abs() < 1e-3);
    assert!(number(first, "clv") > 0.0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("BG/NBD: r 0.2425"), "{stderr}");
    assert!(stderr.contains("Gamma-Gamma on 946 customers"), "{stderr}");
}

/// The reference z-test as a file of customers: control 10 of 490, email 17 of 500,
/// each buyer spending 40; the figures are checked against the textbook formulas written
/// here.
#[test]
fn uplift_of_a_customers_file() {
    let dir = std::env::temp_dir().join(format!("parcours-uplift-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut text = String::from("customer,group,converted,revenue\n");
    for (group, n, converted) in [("control", 490, 10), ("email", 500, 17)] {
        for i in 0..n {
            let c = i < converted;
            text.push_str(&format!(
                "{group}-{i},{group},{},{}\n",
                u8::from(c),
                if c { 40 } else { 0 }
            ));
        }
    }
    let file = dir.join("customers.csv");
    std::fs::write(&file, text).unwrap();
    let out = parcours(&["report", "uplift", "--customers", file.to_str().unwrap()]);
    let rows = rows(&out);
    assert_eq!(rows.len(), 3, "two groups and one comparison: {rows:?}");
    assert_eq!(
        (rows[0]["group"].as_str(), number(&rows[0], "entered")),
        ("email", 500.0)
    );
    assert_eq!(rows[1]["group"], "control");
    let v = &rows[2];
    assert_eq!(
        (v["group"].as_str(), v["against"].as_str()),
        ("email", "control")
    );
    let (p1, p2) = (10.0 / 490.0, 17.0 / 500.0);
    let pooled: f64 = 27.0 / 990.0;
    let z = (p2 - p1) / (pooled * (1.0 - pooled) * (1.0 / 490.0 + 1.0 / 500.0)).sqrt();
    assert!((number(v, "z") - z).abs() < 1e-9, "{v:?}");
    assert!((number(v, "z") - 1.313).abs() < 5e-4);
    assert!((number(v, "incremental_conversions") - (17.0 - 500.0 * p1)).abs() < 1e-9);
    assert!(
        (number(v, "incremental_revenue") - (17.0 * 40.0 - 500.0 * 400.0 / 490.0)).abs() < 1e-9
    );
    assert_eq!(v["underpowered"], "false");
    // The control group named otherwise, or missing.
    let out = parcours(&[
        "report",
        "uplift",
        "--customers",
        file.to_str().unwrap(),
        "--control",
        "holdout",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no customer is in the control group"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_files_are_refused_with_their_line() {
    let dir = std::env::temp_dir().join(format!("parcours-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let cases = [
        (
            "attribution",
            "--paths",
            write("paths.csv", "path;total_conversions\na > b;1\na >  > b;2\n"),
            "line 3: a path holds an empty channel",
        ),
        (
            "attribution",
            "--paths",
            write("nohead.csv", "a > b;1\n"),
            "it needs `path` and `total_conversions`",
        ),
        (
            "clv",
            "--transactions",
            write(
                "tx.csv",
                "customer_id,date,amount\n1,2026-01-01,10\n1,2026-02-31,5\n",
            ),
            "line 3: \"2026-02-31\" is not a date",
        ),
        (
            "clv",
            "--transactions",
            write("neg.csv", "customer_id,date,amount\n1,2026-01-01,-10\n"),
            "line 2: the amount must be a number not below zero",
        ),
        (
            "clv",
            "--transactions",
            write("empty.csv", ""),
            "the file is empty",
        ),
        (
            "uplift",
            "--customers",
            write("uplift.csv", "group,converted\ncontrol,1\nemail,maybe\n"),
            "line 3: converted is 1 or 0",
        ),
        (
            "clv",
            "--transactions",
            write(
                "once.csv",
                "customer_id,date,amount\n1,2026-01-01,10\n2,2026-01-01,5\n",
            ),
            "the models cannot be fitted: no customer bought again",
        ),
        (
            "attribution",
            "--paths",
            // One path of 150,000 touches over 40 channels, order 3: tens of thousands of
            // states in long cycles, too slow to settle; refused, not left running.
            write("long.csv", &{
                let mut seed = 1u64;
                let touches: Vec<String> = (0..150_000)
                    .map(|_| {
                        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                        format!("c{}", (seed >> 33) % 40)
                    })
                    .collect();
                format!("path;total_conversions\n{};1\n", touches.join(" > "))
            }),
            "did not settle within its budget",
        ),
    ];
    for (what, flag, file, message) in cases {
        let mut args = vec!["report", what, flag, file.to_str().unwrap()];
        if file.ends_with("long.csv") {
            args.extend(["--order", "3"]);
        }
        let out = parcours(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what} {}: {stderr}", file.display());
        assert!(stderr.contains(message), "{what}: {stderr}");
        assert!(out.stdout.is_empty(), "{what}: nothing on stdout");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
