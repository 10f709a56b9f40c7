//! File import is idempotent (re-importing stores nothing twice, invalid lines are quarantined
//! once) and export writes what was imported.

mod common;

use parcours_cli::commands::{export, import};
use parcours_cli::config::Config;
use parcours_cli::node::{bootstrap, open_store};
use serde_json::Value;

#[test]
fn reimporting_a_file_creates_no_duplicates_and_export_round_trips() {
    let dir = common::temp_dir("import");
    let config = Config {
        data_dir: dir.join("data"),
        ..Config::default()
    };
    let store = open_store(&config).unwrap();
    let ws = bootstrap(store.as_ref(), &config, 1_700_000_000_000)
        .unwrap()
        .unwrap()
        .workspace
        .id;
    drop(store);

    let events = dir.join("events.ndjson");
    std::fs::write(
        &events,
        [
            r#"{"type":"identify","userId":"cus_9","traits":{"email":"Nine@X.io"},"timestamp":"2026-01-01T00:00:00Z"}"#,
            r#"{"type":"track","userId":"cus_9","event":"Order Completed","messageId":"o-9","timestamp":"2026-01-02T00:00:00Z"}"#,
            r#"{"type":"track","userId":"cus_9"}"#,
            "not json at all",
        ]
        .join("\n"),
    )
    .unwrap();
    let people = dir.join("people.csv");
    std::fs::write(
        &people,
        "user_id,email,first_name\ncus_10,ten@x.io,\"Ten, Jr\"\ncus_9,,Nina\n",
    )
    .unwrap();

    let first = import(&config, &events, None, None, true).unwrap();
    assert_eq!(
        (
            first.lines,
            first.stored,
            first.duplicates,
            first.quarantined
        ),
        (4, 2, 0, 2)
    );
    let again = import(&config, &events, None, None, true).unwrap();
    assert_eq!(
        (again.stored, again.duplicates, again.quarantined),
        (0, 2, 2),
        "nothing is stored twice; the invalid lines arrived again"
    );
    let csv = import(&config, &people, None, None, true).unwrap();
    assert_eq!((csv.lines, csv.stored), (3, 2), "a header and two rows");
    assert_eq!(
        import(&config, &people, None, None, true).unwrap().stored,
        0
    );

    let store = open_store(&config).unwrap();
    assert_eq!(store.event_count(&ws).unwrap(), 4);
    let quarantined = store.quarantined(&ws, None, 0, 10).unwrap();
    assert_eq!(quarantined.len(), 2, "each invalid line is kept once");
    assert!(quarantined.iter().all(|q| q.occurrences == 2));
    drop(store);

    let mut out = Vec::new();
    assert_eq!(export(&config, "profiles", None, &mut out).unwrap(), 2);
    let profiles: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let nine = profiles
        .iter()
        .find(|p| p["traits"]["first_name"] == "Nina")
        .expect("cus_9 got the CSV trait");
    assert!(nine["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["value"] == "nine@x.io"));
    assert_eq!(nine["events"], 3);
    let mut out = Vec::new();
    assert_eq!(export(&config, "events", None, &mut out).unwrap(), 4);
    let first_event: Value =
        serde_json::from_str(String::from_utf8(out).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(first_event["type"], "identify");
    assert!(
        first_event["messageId"]
            .as_str()
            .unwrap()
            .starts_with("imp-"),
        "a line without messageId gets one from its content"
    );
    assert!(export(&config, "carts", None, &mut Vec::new()).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_list_of_subscribers_with_only_emails_or_phones_is_keyed_by_them() {
    let dir = common::temp_dir("subscribers");
    let config = Config {
        data_dir: dir.join("data"),
        ..Config::default()
    };
    let store = open_store(&config).unwrap();
    let ws = bootstrap(store.as_ref(), &config, 1_700_000_000_000)
        .unwrap()
        .unwrap()
        .workspace
        .id;
    drop(store);
    let list = dir.join("newsletter.csv");
    std::fs::write(
        &list,
        "E-mail,First Name\nada@example.com,Ada\n BOB@Example.com ,Bob\n,Nobody\n",
    )
    .unwrap();
    let phones = dir.join("sms.csv");
    std::fs::write(&phones, "mobile\n+33 6 12 34 56 78\n").unwrap();

    let first = import(&config, &list, None, None, true).unwrap();
    assert_eq!(
        (first.stored, first.quarantined),
        (2, 1),
        "rows with an email are keyed by it; the row with neither is quarantined"
    );
    let again = import(&config, &list, None, None, true).unwrap();
    assert_eq!(again.stored, 0, "re-importing stores nothing twice");
    assert_eq!(again.duplicates, 2);
    assert_eq!(
        import(&config, &phones, None, None, true).unwrap().stored,
        1
    );

    let store = open_store(&config).unwrap();
    assert_eq!(
        store.quarantined(&ws, None, 0, 10).unwrap().len(),
        1,
        "the invalid row is one entry, however often it is imported"
    );
    drop(store);
    let mut out = Vec::new();
    export(&config, "profiles", None, &mut out).unwrap();
    let profiles: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(profiles.len(), 3);
    let bob = profiles
        .iter()
        .find(|p| p["traits"]["First Name"] == "Bob")
        .expect("Bob");
    let ids: Vec<String> = bob["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{}:{}",
                i["type"].as_str().unwrap(),
                i["value"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        ids.contains(&"email:bob@example.com".to_string()),
        "{ids:?}"
    );
    let derived = parcours_core::webhook::anonymous_id_for("email", "bob@example.com");
    assert!(ids.contains(&format!("anonymous_id:{derived}")), "{ids:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
