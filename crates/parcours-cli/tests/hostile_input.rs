//! One bad request must never stop Parcours: each finding of the hostile-input review, as it
//! was reported, on both stores.

#[macro_use]
mod common;

use std::time::Duration;

use parcours_engine::clock::Moment;

use common::{eventually, start_on, Backend, TestNode, ADMIN, WRITE_KEY};
use parcours_cli::commands::{export, import};
use parcours_cli::config::Config;
use parcours_core::channel::Channel;
use parcours_core::spec::{AcceptedEvent, EventType};
use parcours_store::IngestBatch;
use serde_json::{json, Value};

/// What the quarantine of the test node's workspace holds, by code.
async fn quarantine(t: &TestNode) -> Vec<Value> {
    let (status, list) = t.get("/api/v1/quarantine?status=all&limit=1000").await;
    assert_eq!(status, 200);
    list["events"].as_array().unwrap().clone()
}

fn with_code<'a>(entries: &'a [Value], code: &str) -> Vec<&'a Value> {
    entries.iter().filter(|e| e["code"] == code).collect()
}

async fn poison_events_are_quarantined_and_stop_nobody(backend: Backend) {
    let t = start_on("poison", backend, |_| {}).await;
    let (other_key, other_admin) = t.second_workspace("Second brand").await;
    let deep = format!(
        r#"{{"userId":"x","event":"E","properties":{{"a":{}1{}}}}}"#,
        "[".repeat(126),
        "]".repeat(126)
    );
    let poisons = [
        r#"{"userId":"x","event":"E","properties":{"n":1e400}}"#.to_string(),
        r#"{"userId":"x","event":"E","properties":{"s":"\ud800"}}"#.to_string(),
        r#"{"userId":"x","event":"E","properties":{"s":"nul\u0000"}}"#.to_string(),
        deep,
    ];
    for body in &poisons {
        let r = t
            .client
            .track("/v1/track", WRITE_KEY, body.clone())
            .await
            .unwrap();
        assert_eq!(
            r.status, 200,
            "acknowledged, as Segment does, and quarantined"
        );
    }
    let r = t
        .client
        .track(
            "/v1/identify",
            WRITE_KEY,
            r#"{"userId":"x","traits":{"name":"\ud800"}}"#,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    // Valid events around a poison one in the same batch are all applied.
    let batch = r#"{"batch":[{"type":"identify","userId":"before","traits":{"email":"before@x.io"}},
                  {"type":"track","userId":"x","event":"E","properties":{"n":-1e400}},
                  {"type":"identify","userId":"after","traits":{"email":"after@x.io"}}]}"#;
    assert_eq!(
        t.client
            .track("/v1/batch", WRITE_KEY, batch)
            .await
            .unwrap()
            .status,
        200
    );
    // The same workspace and another one go on, within a second.
    let sent = Moment::now();
    let r = t
        .client
        .track(
            "/v1/identify",
            WRITE_KEY,
            r#"{"userId":"same","traits":{"email":"same@x.io"}}"#,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let r = t
        .client
        .track(
            "/v1/identify",
            &other_key,
            r#"{"userId":"other","traits":{"plan":"gold"}}"#,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    eventually(Duration::from_secs(1), "the same workspace unified", || {
        t.profile_of(ADMIN, "user_id", "same")
    })
    .await;
    eventually(
        Duration::from_secs(1),
        "the other workspace unified",
        || t.profile_of(&other_admin, "user_id", "other"),
    )
    .await;
    assert!(sent.elapsed() < Duration::from_secs(1));
    for user in ["before", "after"] {
        assert!(
            t.profile_of(ADMIN, "user_id", user).await.is_some(),
            "{user}"
        );
    }
    assert!(
        t.profile_of(ADMIN, "user_id", "x").await.is_none(),
        "no poison event reached a profile"
    );
    let q = quarantine(&t).await;
    assert_eq!(with_code(&q, "number_out_of_range").len(), 2);
    assert_eq!(with_code(&q, "invalid_string").len(), 3);
    assert_eq!(with_code(&q, "too_deep").len(), 1);
    assert_eq!(t.store.event_count(&t.workspace).unwrap(), 3);
    let r = t.client.get("/readyz", "").await.unwrap();
    assert_eq!(r.status, 200);
    t.stop().await;
}

/// An event as a store held it before ingest checked the limits (written to the log directly).
fn legacy(mid: &str, user: &str, body: &str, ts: i64) -> AcceptedEvent {
    AcceptedEvent {
        message_id: mid.into(),
        kind: EventType::Track,
        event: Some("E".into()),
        user_id: Some(user.into()),
        anonymous_id: None,
        timestamp: ts,
        received_at: ts,
        channel: Channel::Web,
        body: body.into(),
    }
}

async fn events_stored_before_the_limits_are_set_aside_and_replay_goes_on(backend: Backend) {
    let mut t = start_on("legacy", backend, |_| {}).await;
    let now = t.node.as_ref().unwrap().engine.now();
    let events = vec![
        legacy("ok-1", "first", r#"{"userId":"first","event":"E"}"#, now),
        legacy(
            "poison",
            "x",
            r#"{"userId":"x","event":"E","properties":{"n":1e400}}"#,
            now,
        ),
        legacy("ok-2", "second", r#"{"userId":"second","event":"E"}"#, now),
    ];
    t.store
        .append(
            &[IngestBatch {
                workspace_id: t.workspace.clone(),
                source_id: "legacy".into(),
                events,
                quarantined: vec![],
            }],
            0,
        )
        .unwrap();
    t.node.as_ref().unwrap().engine.wake_unify();
    eventually(
        Duration::from_secs(5),
        "events after the poison unified",
        || t.profile_of(ADMIN, "user_id", "second"),
    )
    .await;
    assert!(t.profile_of(ADMIN, "user_id", "first").await.is_some());
    let q = quarantine(&t).await;
    let set_aside = with_code(&q, "unreadable_event");
    assert_eq!(set_aside.len(), 1);
    assert_eq!(set_aside[0]["message_id"], "poison");
    assert!(set_aside[0]["seq"].as_i64().is_some());
    let (_, status) = t.get("/api/v1/status").await;
    assert_eq!(status["processors"]["unify"]["set_aside"], 1, "{status}");
    assert_eq!(status["processors"]["unify"]["failures"], 0, "{status}");
    assert_eq!(t.client.get("/readyz", "").await.unwrap().status, 200);

    t.node.take().unwrap().stop().await;
    let report = parcours_engine::replay(t.store.as_ref(), now, 2, &mut |_, _| {}).unwrap();
    assert_eq!((report.events, report.set_aside), (3, 1));
    assert!(t
        .store
        .lookup(
            &t.workspace,
            &parcours_core::identifier::Identifier::new("user_id", "second")
        )
        .unwrap()
        .is_some());

    // Export loses nothing of it.
    let config = config_of(&t);
    let mut out = Vec::new();
    export(&config, "events", Some(&t.workspace), &mut out).unwrap();
    let lines: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let poison = lines.iter().find(|l| l["messageId"] == "poison").unwrap();
    assert_eq!(poison["userId"], "x");
    assert_eq!(poison["event"], "E");
    assert!(poison["unreadableBody"].as_str().unwrap().contains("1e400"));
    t.stop().await;
}

/// The configuration of a test node's store, for the commands that open it themselves.
fn config_of(t: &TestNode) -> Config {
    Config {
        data_dir: t.dir.clone(),
        database: t.database.as_ref().map(|d| d.url().to_string()),
        ..Config::default()
    }
}

async fn numeric_message_ids_keep_every_digit(backend: Backend) {
    let t = start_on("numeric-ids", backend, |_| {}).await;
    let body = r#"{"batch":[
        {"type":"track","userId":100000000000000000000001,"event":"E","messageId":100000000000000000000001},
        {"type":"track","userId":100000000000000000000002,"event":"E","messageId":100000000000000000000002}]}"#;
    assert_eq!(
        t.client
            .track("/v1/batch", WRITE_KEY, body)
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        t.store.event_count(&t.workspace).unwrap(),
        2,
        "neither is a duplicate"
    );
    for n in ["100000000000000000000001", "100000000000000000000002"] {
        let e = t
            .store
            .event_by_message_id(&t.workspace, n)
            .unwrap()
            .unwrap();
        assert_eq!(e.user_id.as_deref(), Some(n));
    }
    t.stop().await;
}

async fn times_outside_the_range_are_quarantined_and_every_event_round_trips(backend: Backend) {
    let t = start_on("time-range", backend, |_| {}).await;
    let batch = json!({"batch": [
        {"type":"track","userId":"u","event":"Skewed","messageId":"skewed",
         "originalTimestamp":"2026-01-01T00:00:00Z","sentAt":"9999-12-31T00:00:00Z"},
        {"type":"track","userId":"u","event":"First","messageId":"first","timestamp":"1970-01-01T00:00:00Z"},
        {"type":"track","userId":"u","event":"Last","messageId":"last","timestamp":"9999-12-31T23:59:59.999Z"},
        {"type":"identify","userId":"u","messageId":"id","traits":{"big":1e308,"tiny":-1e-300,"emoji":"\u{1F600}"}},
        {"type":"page","anonymousId":"a","messageId":"page","name":"Home","sentAt":"2026-01-01T00:00:10Z",
         "originalTimestamp":"2026-01-01T00:00:00Z"}
    ]});
    assert_eq!(t.send(batch).await.status, 200);
    let q = quarantine(&t).await;
    let skewed = with_code(&q, "timestamp_out_of_range");
    assert_eq!(skewed.len(), 1);
    assert_eq!(skewed[0]["message_id"], "skewed");
    assert_eq!(t.store.event_count(&t.workspace).unwrap(), 4);

    let mut out = Vec::new();
    export(&config_of(&t), "events", Some(&t.workspace), &mut out).unwrap();
    let file = t.dir.join("events.ndjson");
    std::fs::write(&file, &out).unwrap();
    let fresh = common::temp_dir("time-range-import");
    let config = Config {
        data_dir: fresh.clone(),
        ..Config::default()
    };
    let store = parcours_cli::node::open_store(&config).unwrap();
    let ws = parcours_cli::node::bootstrap(store.as_ref(), &config, 1_700_000_000_000)
        .unwrap()
        .unwrap()
        .workspace
        .id;
    drop(store);
    let report = import(&config, &file, None, Some(&ws), true).unwrap();
    assert_eq!((report.stored, report.quarantined), (4, 0));
    let store = parcours_cli::node::open_store(&config).unwrap();
    for mid in ["first", "last", "id", "page"] {
        let before = t
            .store
            .event_by_message_id(&t.workspace, mid)
            .unwrap()
            .unwrap();
        let after = store.event_by_message_id(&ws, mid).unwrap().unwrap();
        assert_eq!(
            (
                after.timestamp,
                after.kind,
                after.user_id,
                after.anonymous_id
            ),
            (
                before.timestamp,
                before.kind,
                before.user_id,
                before.anonymous_id
            ),
            "{mid}"
        );
        let (a, b): (Value, Value) = (
            serde_json::from_str(&after.body).unwrap(),
            serde_json::from_str(&before.body).unwrap(),
        );
        assert_eq!(a["traits"], b["traits"], "{mid}");
    }
    drop(store);
    let _ = std::fs::remove_dir_all(fresh);
    t.stop().await;
}

async fn the_quarantine_counts_every_occurrence(backend: Backend) {
    let t = start_on("occurrences", backend, |_| {}).await;
    let empties = json!({"batch": vec![json!({}); 2_500]});
    assert_eq!(t.send(empties).await.status, 200);
    assert_eq!(t.send(json!({"batch": [{}]})).await.status, 200);
    let q = quarantine(&t).await;
    assert_eq!(q.len(), 1, "one entry per invalid body: {q:?}");
    assert_eq!(q[0]["occurrences"], 2_501);
    assert_eq!(q[0]["code"], "invalid_type");
    // ISO-8601 UTC with milliseconds, like every time the API shows: they sort as text.
    let (first, last) = (
        q[0]["received_at"].as_str().unwrap(),
        q[0]["last_seen"].as_str().unwrap(),
    );
    assert!(
        first.ends_with('Z') && last.ends_with('Z'),
        "{first} {last}"
    );
    assert!(last >= first);
    assert_eq!(q[0]["sources"].as_array().unwrap().len(), 1);
    t.stop().await;
}

async fn quarantined_events_of_typed_endpoints_can_be_replayed(backend: Backend) {
    let t = start_on("typed-replay", backend, |_| {}).await;
    for (path, body) in [
        ("/v1/track", r#"{"event":"Signed Up"}"#),
        (
            "/v1/t",
            r#"{"userId":"u","event":"Big","properties":{"n":1e999}}"#,
        ),
    ] {
        let r = t.client.track(path, WRITE_KEY, body).await.unwrap();
        assert_eq!(r.status, 200);
    }
    let q = quarantine(&t).await;
    let no_id = with_code(&q, "no_user_anon_id")[0];
    assert_eq!(no_id["path_type"], "track");
    let big = with_code(&q, "number_out_of_range")[0];
    assert_eq!(big["path_type"], "track");
    let fixed = r#"{"userId":"u","event":"Signed Up"}"#;
    let r = t
        .client
        .post(
            &format!("/api/v1/quarantine/{}/replay", no_id["id"]),
            ADMIN,
            fixed,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = t
        .client
        .post(
            &format!("/api/v1/quarantine/{}/replay", big["id"]),
            ADMIN,
            "",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["code"], "still_invalid");
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("number_out_of_range"));
    let r = t
        .client
        .post(
            &format!("/api/v1/quarantine/{}/replay", big["id"]),
            ADMIN,
            r#"{"userId":"u","event":"Big","properties":{"n":1e300}}"#,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    t.unified().await;
    let (_, events) = t.get("/api/v1/profiles/lookup?type=user_id&value=u").await;
    assert_eq!(events["events"], 2);
    t.stop().await;
}

/// A token of another role in the test node's workspace.
async fn token(t: &TestNode, role: &str) -> String {
    let r = t
        .client
        .post(
            "/api/v1/tokens",
            ADMIN,
            json!({"name": role, "role": role}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    r.json()["secret"].as_str().unwrap().to_string()
}

async fn create_audience(t: &TestNode, token: &str, body: Value) -> (u16, Value) {
    let r = t
        .client
        .post("/api/v1/audiences", token, body.to_string())
        .await
        .unwrap();
    (r.status, r.json())
}

/// Waits until an audience is computed with this many members.
async fn members_become(t: &TestNode, token: &str, id: &str, size: u64) {
    eventually(
        Duration::from_secs(20),
        &format!("{id} has {size} members"),
        || async {
            let r = t
                .client
                .get(&format!("/api/v1/audiences/{id}"), token)
                .await
                .unwrap();
            let a = r.json();
            (a["size"] == size && a["computation"]["status"] == "ready").then_some(())
        },
    )
    .await
}

async fn pathological_definitions_are_refused_and_kill_nothing(backend: Backend) {
    let t = start_on("definitions", backend, |_| {}).await;
    let marketer = token(&t, "marketer").await;
    let cases = [
        format!("{}has email{}", "(".repeat(2_000), ")".repeat(2_000)),
        format!("{}has email", "not ".repeat(10_000)),
        "(".repeat(10_000),
        format!("{}has email", "not ".repeat(130)),
    ];
    for definition in &cases {
        let (status, e) = create_audience(
            &t,
            &marketer,
            json!({"id": "deep", "name": "Deep", "definition": definition}),
        )
        .await;
        assert_eq!(
            (status, e["code"].as_str()),
            (400, Some("audience_too_deep")),
            "{e}"
        );
        assert!(e["message"].as_str().unwrap().contains("32 levels"), "{e}");
    }
    let mut deep = json!({"type": "has_identifier", "kind": "email"});
    for _ in 0..120 {
        deep = json!({"type": "not", "not": deep});
    }
    let (status, e) = create_audience(
        &t,
        &marketer,
        json!({"id": "deep", "name": "Deep", "condition": deep}),
    )
    .await;
    assert_eq!(
        (status, e["code"].as_str()),
        (400, Some("audience_too_deep")),
        "{e}"
    );
    for (definition, code) in [
        (
            r#"did "Order Completed" within 15250284452 weeks"#,
            "duration_out_of_range",
        ),
        (
            "trait signed_up_at after 106751991167 days ago",
            "duration_out_of_range",
        ),
        ("trait name = \"a\\u0000b\"", "invalid_string"),
    ] {
        let (status, e) = create_audience(
            &t,
            &marketer,
            json!({"id": "wide", "name": "Wide", "definition": definition}),
        )
        .await;
        assert_eq!(
            (status, e["code"].as_str()),
            (400, Some(code)),
            "{definition}: {e}"
        );
    }
    // The process is alive and every audience call still answers.
    assert_eq!(t.client.get("/healthz", "").await.unwrap().status, 200);
    let (status, list) = t.get("/api/v1/audiences").await;
    assert_eq!(
        (status, list["audiences"].as_array().unwrap().len()),
        (200, 0)
    );
    // A wide window that fits gives the right answer.
    let now = t.node.as_ref().unwrap().engine.now();
    let orders: Vec<Value> = (0..5)
        .map(|i| {
            let at = parcours_core::time::format_timestamp(now - (i + 1) * 86_400_000 * 365);
            json!({"type":"track","userId":format!("o{i}"),"event":"Order Completed","timestamp":at})
        })
        .collect();
    assert_eq!(t.send(json!({"batch": orders})).await.status, 200);
    t.unified().await;
    for (id, definition, size) in [
        ("ever", r#"did "Order Completed" within 521000 weeks"#, 5),
        ("recent", r#"did "Order Completed" within 1000 days"#, 2),
    ] {
        let (status, e) = create_audience(
            &t,
            &marketer,
            json!({"id": id, "name": id, "definition": definition}),
        )
        .await;
        assert_eq!(status, 201, "{e}");
        members_become(&t, &marketer, id, size).await;
    }
    t.stop().await;
}

/// A definition stored before the limits (JSON deeper than any reader reads) no longer stops
/// every audience call and every workspace's computations: it is shown as unreadable,
/// skipped, and can be deleted.
async fn a_stored_definition_no_reader_reads_is_skipped_and_can_be_deleted(backend: Backend) {
    let t = start_on("unreadable-definition", backend, |_| {}).await;
    let (other_key, other_admin) = t.second_workspace("Second brand").await;
    let mut deep = json!({"type": "has_identifier", "kind": "email"});
    for _ in 0..130 {
        deep = json!({"type": "not", "not": deep});
    }
    let now = t.node.as_ref().unwrap().engine.now();
    t.store
        .put_definition(&parcours_store::Definition {
            workspace_id: t.workspace.clone(),
            kind: parcours_store::DefinitionKind::Audience,
            id: "legacy".into(),
            doc: json!({"name": "Legacy", "condition": deep}),
            version: 1,
            computed_version: 0,
            done: 0,
            total: 0,
            created_at: now,
            updated_at: now,
        })
        .unwrap();
    // An audience that refers to it (stored by the same earlier version).
    t.store
        .put_definition(&parcours_store::Definition {
            workspace_id: t.workspace.clone(),
            kind: parcours_store::DefinitionKind::Audience,
            id: "follows-legacy".into(),
            doc: json!({"name": "Follows", "condition": {"type": "in_audience", "audience": "legacy"}}),
            version: 1,
            computed_version: 0,
            done: 0,
            total: 0,
            created_at: now,
            updated_at: now,
        })
        .unwrap();
    let r = t
        .client
        .track(
            "/v1/identify",
            WRITE_KEY,
            r#"{"userId":"here","traits":{"email":"h@x.io"}}"#,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let (status, list) = t.get("/api/v1/audiences").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["audiences"][1]["id"], "legacy");
    assert_eq!(list["audiences"][1]["computation"]["status"], "unreadable");
    let (status, one) = t.get("/api/v1/audiences/legacy").await;
    assert_eq!(
        (status, &one["computation"]["status"]),
        (200, &json!("unreadable"))
    );
    // Another workspace's new audience is computed.
    let r = t
        .client
        .track(
            "/v1/identify",
            &other_key,
            r#"{"userId":"p","traits":{"email":"p@x.io"}}"#,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    t.unified().await;
    let (status, e) = create_audience(
        &t,
        &other_admin,
        json!({"id": "emails", "name": "Emails", "definition": "has email"}),
    )
    .await;
    assert_eq!(status, 201, "{e}");
    members_become(&t, &other_admin, "emails", 1).await;
    // And its own workspace creates, computes and deletes audiences; only the one that
    // refers to the unreadable one waits.
    let (status, e) = create_audience(
        &t,
        ADMIN,
        json!({"id": "fresh", "name": "Fresh", "definition": "has email"}),
    )
    .await;
    assert_eq!(status, 201, "{e}");
    members_become(&t, ADMIN, "fresh", 1).await;
    let (status, e) = create_audience(
        &t,
        ADMIN,
        json!({"id": "also", "name": "Also", "definition": "in audience \"legacy\""}),
    )
    .await;
    assert_eq!(
        (status, e["code"].as_str()),
        (400, Some("invalid_audience_reference")),
        "{e}"
    );
    let (_, follows) = t.get("/api/v1/audiences/follows-legacy").await;
    assert_eq!(follows["computation"]["status"], "computing", "{follows}");
    // Deleted: the one that refers to it, then itself.
    let auth = format!("Bearer {ADMIN}");
    for id in ["follows-legacy", "legacy"] {
        let path = format!("/api/v1/audiences/{id}");
        let r = t
            .client
            .request(
                hyper::Method::DELETE,
                &path,
                &[("authorization", &auth)],
                "",
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    let (_, list) = t.get("/api/v1/audiences").await;
    assert_eq!(list["audiences"].as_array().unwrap().len(), 1);
    t.stop().await;
}

on_each_store!(
    poison_events_are_quarantined_and_stop_nobody,
    events_stored_before_the_limits_are_set_aside_and_replay_goes_on,
    numeric_message_ids_keep_every_digit,
    times_outside_the_range_are_quarantined_and_every_event_round_trips,
    the_quarantine_counts_every_occurrence,
    quarantined_events_of_typed_endpoints_can_be_replayed,
    pathological_definitions_are_refused_and_kill_nothing,
    a_stored_definition_no_reader_reads_is_skipped_and_can_be_deleted,
    every_rejection_has_the_error_envelope,
    destinations_reach_only_public_addresses_unless_allowed,
    metrics_need_a_token_when_configured,
    readiness_reports_a_processor_too_far_behind,
    an_import_line_no_store_could_hold_is_quarantined_as_text,
);

/// PostgreSQL refuses a NUL character in text: an identifier holding one (from an event stored
/// before ingest refused them) made every unify transaction fail. The page is applied again
/// one event at a time and the one refused is set aside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_store_refuses_is_found_and_set_aside() {
    let t = start_on("refused", Backend::Postgres, |_| {}).await;
    let now = t.node.as_ref().unwrap().engine.now();
    let identify = |mid: &str, user: &str, email: &str| AcceptedEvent {
        kind: EventType::Identify,
        event: None,
        ..legacy(
            mid,
            user,
            &json!({"userId": user, "traits": {"email": email}}).to_string(),
            now,
        )
    };
    let events = vec![
        identify("a", "a", "a@x.io"),
        identify("nul", "n", "n\u{0}@x.io"),
        identify("b", "b", "b@x.io"),
    ];
    t.store
        .append(
            &[IngestBatch {
                workspace_id: t.workspace.clone(),
                source_id: "legacy".into(),
                events,
                quarantined: vec![],
            }],
            0,
        )
        .unwrap();
    t.node.as_ref().unwrap().engine.wake_unify();
    for user in ["a", "b"] {
        eventually(
            Duration::from_secs(10),
            "the events around it unified",
            || t.profile_of(ADMIN, "user_id", user),
        )
        .await;
    }
    let q = quarantine(&t).await;
    let refused = with_code(&q, "unprocessable_event");
    assert_eq!(refused.len(), 1, "{q:?}");
    assert_eq!(refused[0]["message_id"], "nul");
    assert!(
        refused[0]["reason"].as_str().unwrap().contains("0x00"),
        "{}",
        refused[0]["reason"]
    );
    t.stop().await;
}

mod slow_clients {
    use std::time::Duration;

    use parcours_engine::clock::Moment;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::common::{start_on, Backend, TestNode, WRITE_KEY};

    async fn node(header_ms: u64, body_ms: u64, per_ip: usize) -> TestNode {
        start_on("slow-clients", Backend::Sqlite, |c| {
            c.http.header_timeout_ms = header_ms;
            c.http.body_timeout_ms = body_ms;
            c.http.max_connections_per_ip = per_ip;
        })
        .await
    }

    async fn connect(t: &TestNode) -> TcpStream {
        TcpStream::connect(t.node.as_ref().unwrap().addr)
            .await
            .unwrap()
    }

    /// Reads until the server closes the connection; what it sent, and how long it took.
    async fn until_closed(mut s: TcpStream, limit: Duration) -> (String, Duration) {
        let started = Moment::now();
        let mut out = Vec::new();
        let read = tokio::time::timeout(limit, s.read_to_end(&mut out)).await;
        assert!(read.is_ok(), "still open after {limit:?}");
        (
            String::from_utf8_lossy(&out).into_owned(),
            started.elapsed(),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_and_partial_requests_are_closed_at_their_deadline() {
        let t = node(300, 300, 64).await;
        let auth = format!("Basic {}", parcours_testkit::http::basic(WRITE_KEY));
        let partial: [Option<String>; 4] = [
            None,
            Some("POST /v1/track HT".into()),
            Some(format!(
                "POST /v1/track HTTP/1.1\r\nhost: x\r\nauthorization: {auth}\r\n"
            )),
            Some(format!(
                "POST /v1/track HTTP/1.1\r\nhost: x\r\nauthorization: {auth}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"userId\""
            )),
        ];
        for sent in partial {
            let mut s = connect(&t).await;
            if let Some(text) = &sent {
                s.write_all(text.as_bytes()).await.unwrap();
            }
            let (answer, took) = until_closed(s, Duration::from_secs(5)).await;
            assert!(took < Duration::from_secs(3), "{sent:?} held {took:?}");
            if sent
                .as_deref()
                .is_some_and(|s| s.contains("content-length"))
            {
                assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
                assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");
            }
        }
        // A keep-alive connection left idle after a request is closed too.
        let mut s = connect(&t).await;
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let (answer, took) = until_closed(s, Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(took < Duration::from_secs(3));
        t.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_oversized_body_is_refused_before_100_continue() {
        let t = node(5_000, 5_000, 64).await;
        let auth = format!("Basic {}", parcours_testkit::http::basic(WRITE_KEY));
        let mut s = connect(&t).await;
        s.write_all(
            format!(
                "POST /v1/batch HTTP/1.1\r\nhost: x\r\nauthorization: {auth}\r\ncontent-type: application/json\r\nexpect: 100-continue\r\ncontent-length: 10485760\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let (answer, _) = until_closed(s, Duration::from_secs(3)).await;
        assert!(!answer.contains("100 Continue"), "{answer}");
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(
            answer.contains("\"code\":\"payload_too_large\""),
            "{answer}"
        );
        // Within the limit, the client is told to go on.
        let body = r#"{"batch":[{"type":"track","userId":"u","event":"E"}]}"#;
        let mut s = connect(&t).await;
        s.write_all(
            format!(
                "POST /v1/batch HTTP/1.1\r\nhost: x\r\nauthorization: {auth}\r\ncontent-type: application/json\r\nexpect: 100-continue\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let mut first = [0u8; 25];
        s.read_exact(&mut first).await.unwrap();
        assert!(String::from_utf8_lossy(&first).starts_with("HTTP/1.1 100 Continue"));
        s.write_all(body.as_bytes()).await.unwrap();
        let (answer, _) = until_closed(s, Duration::from_secs(3)).await;
        assert!(answer.contains("HTTP/1.1 200"), "{answer}");
        t.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_address_cannot_hold_every_connection() {
        let t = node(5_000, 5_000, 4).await;
        let mut held = Vec::new();
        for _ in 0..4 {
            let mut s = connect(&t).await;
            s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .unwrap();
            let mut buf = [0u8; 12];
            s.read_exact(&mut buf).await.unwrap();
            held.push(s);
        }
        let (answer, _) = until_closed(connect(&t).await, Duration::from_secs(3)).await;
        assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
        assert!(
            answer.contains("\"code\":\"too_many_connections\""),
            "{answer}"
        );
        drop(held);
        // The slots come back once those connections close.
        super::eventually(
            Duration::from_secs(5),
            "a connection accepted again",
            || async {
                let r = t.client.get("/healthz", "").await.ok()?;
                (r.status == 200).then_some(())
            },
        )
        .await;
        t.stop().await;
    }
}

/// A request and the rejection it gets.
type Rejected<'a> = (
    hyper::Method,
    &'a str,
    Vec<(&'a str, &'a str)>,
    String,
    u16,
    &'a str,
);

async fn every_rejection_has_the_error_envelope(backend: Backend) {
    let t = start_on("envelope", backend, |_| {}).await;
    let auth = format!("Bearer {ADMIN}");
    let big = format!("{{\"name\":\"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let cases: Vec<Rejected<'_>> = vec![
        (
            hyper::Method::GET,
            "/api/v1/audiences/a/members?limit=null",
            vec![("authorization", &auth)],
            String::new(),
            400,
            "invalid_parameter",
        ),
        (
            hyper::Method::GET,
            "/api/v1/quarantine?limit=-1",
            vec![("authorization", &auth)],
            String::new(),
            400,
            "invalid_parameter",
        ),
        (
            hyper::Method::GET,
            "/api/v1/merges/abc",
            vec![("authorization", &auth)],
            String::new(),
            400,
            "invalid_parameter",
        ),
        (
            hyper::Method::POST,
            "/api/v1/audiences",
            vec![("authorization", &auth)],
            "{nope".into(),
            400,
            "invalid_json",
        ),
        (
            hyper::Method::POST,
            "/api/v1/tokens",
            vec![("authorization", &auth)],
            r#"{"name": 1}"#.into(),
            400,
            "invalid_json",
        ),
        (
            hyper::Method::POST,
            "/api/v1/audiences",
            vec![("authorization", &auth)],
            big,
            413,
            "payload_too_large",
        ),
        (
            hyper::Method::DELETE,
            "/api/v1/status",
            vec![("authorization", &auth)],
            String::new(),
            405,
            "method_not_allowed",
        ),
        (
            hyper::Method::POST,
            "/v1/batch",
            vec![],
            "{}".into(),
            401,
            "missing_write_key",
        ),
        (
            hyper::Method::POST,
            "/v1/batch",
            vec![],
            "{nope".into(),
            401,
            "missing_write_key",
        ),
        (
            hyper::Method::POST,
            "/v1/batch",
            vec![("authorization", "Basic d2tfd3Jvbmc6")],
            "{}".into(),
            401,
            "invalid_write_key",
        ),
    ];
    for (method, path, headers, body, status, code) in cases {
        let r = t
            .client
            .request(method.clone(), path, &headers, body)
            .await
            .unwrap();
        assert_eq!(
            r.status,
            status,
            "{method} {path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(
            r.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{method} {path}"
        );
        let e = r.json();
        assert_eq!(e["code"], code, "{method} {path}: {e}");
        for field in ["message", "type", "link"] {
            assert!(e[field].is_string(), "{method} {path}: {e}");
        }
    }
    t.stop().await;
}

async fn destinations_reach_only_public_addresses_unless_allowed(backend: Backend) {
    let t = start_on("ssrf", backend, |_| {}).await;
    let marketer = token(&t, "marketer").await;
    let (status, e) = create_audience(
        &t,
        &marketer,
        json!({"id": "all", "name": "All", "definition": "has user_id"}),
    )
    .await;
    assert_eq!(status, 201, "{e}");
    for url in [
        "http://127.0.0.1:9/",
        "http://localhost:8750/api/v1/tokens",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:9/",
        "http://10.0.0.1/",
        "http://[::ffff:192.168.0.1]/",
    ] {
        let r = t
            .client
            .post(
                "/api/v1/destinations",
                &marketer,
                json!({"id": "inward", "name": "Inward", "url": url}).to_string(),
            )
            .await
            .unwrap();
        let e = r.json();
        assert_eq!(
            (r.status, e["code"].as_str()),
            (400, Some("invalid_destination")),
            "{url}: {e}"
        );
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("not a public address"),
            "{e}"
        );
    }
    t.stop().await;
    // Allowed by configuration (as this repository's own tests do), loopback is accepted.
    let t = start_on("ssrf-allowed", backend, |c| {
        c.destinations.allow_private_addresses = true
    })
    .await;
    create_audience(
        &t,
        ADMIN,
        json!({"id": "all", "name": "All", "definition": "has user_id"}),
    )
    .await;
    let r = t
        .client
        .post(
            "/api/v1/destinations",
            ADMIN,
            json!({"id": "local", "name": "Local", "url": "http://127.0.0.1:9/"}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    t.stop().await;
}

async fn metrics_need_a_token_when_configured(backend: Backend) {
    let t = start_on("metrics", backend, |c| {
        c.metrics.require_token = Some(true);
        c.metrics.token = Some("scrape-secret".into());
    })
    .await;
    let analyst = token(&t, "analyst").await;
    for (token, status) in [
        (None, 401),
        (Some("wrong"), 401),
        (Some(analyst.as_str()), 403),
        (Some("scrape-secret"), 200),
        (Some(ADMIN), 200),
    ] {
        let headers = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|h| ("authorization", h.as_str()))
            .collect();
        let r = t
            .client
            .request(hyper::Method::GET, "/metrics", &headers, "")
            .await
            .unwrap();
        assert_eq!(r.status, status, "{token:?}");
        if status == 200 {
            assert!(String::from_utf8_lossy(&r.body).contains("parcours_"));
        } else {
            assert!(r.json()["code"].is_string());
        }
    }
    t.stop().await;
}

/// A processor that fails (here PostgreSQL lost a table unify writes) takes the node out of
/// rotation after `health.failing_after_secs`, names itself, and comes back once it recovers,
/// with nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_while_a_processor_fails_and_recovers_with_it() {
    let t = start_on("readiness", Backend::Postgres, |c| {
        c.health.failing_after_secs = 1;
    })
    .await;
    let url = t.database.as_ref().unwrap().url().to_string();
    let psql = |sql: &str| {
        let out = std::process::Command::new("psql")
            .args([url.as_str(), "-Atc", sql])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    psql("ALTER TABLE profile_events RENAME TO profile_events_away");
    let r = t
        .client
        .track(
            "/v1/identify",
            WRITE_KEY,
            r#"{"userId":"waiting","traits":{"email":"w@x.io"}}"#,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "ingest goes on");
    let failing = eventually(
        Duration::from_secs(20),
        "readyz reports unify failing",
        || async {
            let r = t.client.get("/readyz", "").await.ok()?;
            (r.status == 503).then(|| r.json())
        },
    )
    .await;
    assert_eq!(failing["code"], "processor_failing", "{failing}");
    assert!(
        failing["message"].as_str().unwrap().contains("unify"),
        "{failing}"
    );
    let (_, status) = t.get("/api/v1/status").await;
    assert_eq!(
        status["processors"]["unify"]["state"], "failing",
        "{status}"
    );
    assert!(status["processors"]["unify"]["failures"].as_u64().unwrap() >= 1);
    psql("ALTER TABLE profile_events_away RENAME TO profile_events");
    eventually(Duration::from_secs(20), "readyz ready again", || async {
        let r = t.client.get("/readyz", "").await.ok()?;
        (r.status == 200).then_some(())
    })
    .await;
    eventually(Duration::from_secs(10), "the waiting event unified", || {
        t.profile_of(ADMIN, "user_id", "waiting")
    })
    .await;
    // A failing store is not a bad event: nothing was set aside.
    let (_, status) = t.get("/api/v1/status").await;
    assert_eq!(status["processors"]["unify"]["set_aside"], 0, "{status}");
    assert!(quarantine(&t).await.is_empty());
    t.stop().await;
}

async fn readiness_reports_a_processor_too_far_behind(backend: Backend) {
    // An ingest-only node whose unify is held back: its lag grows with every event.
    let t = start_on("lagging", backend, |c| {
        c.ingest.unify = false;
        c.health.max_lag_events = 5;
        c.health.unready_when_lagging = true;
    })
    .await;
    let engine = &t.node.as_ref().unwrap().engine;
    engine.health().succeeded("unify", engine.now());
    assert_eq!(t.client.get("/readyz", "").await.unwrap().status, 200);
    let batch: Vec<Value> = (0..10)
        .map(|i| json!({"type": "track", "userId": format!("u{i}"), "event": "E"}))
        .collect();
    assert_eq!(t.send(json!({"batch": batch})).await.status, 200);
    let r = t.client.get("/readyz", "").await.unwrap();
    assert_eq!(r.status, 503);
    let e = r.json();
    assert_eq!(e["code"], "processor_lagging", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("10 events behind"),
        "{e}"
    );
    t.stop().await;
    // By default a lag is reported, and the node stays in rotation.
    let t = start_on("lagging-default", backend, |c| {
        c.ingest.unify = false;
        c.health.max_lag_events = 5;
    })
    .await;
    let engine = &t.node.as_ref().unwrap().engine;
    engine.health().succeeded("unify", engine.now());
    let batch: Vec<Value> = (0..10)
        .map(|i| json!({"type": "track", "userId": format!("u{i}"), "event": "E"}))
        .collect();
    assert_eq!(t.send(json!({"batch": batch})).await.status, 200);
    let r = t.client.get("/readyz", "").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["processors"]["unify"]["state"], "lagging");
    let (_, status) = t.get("/api/v1/status").await;
    assert_eq!(status["processors"]["unify"]["lag_events"], 10, "{status}");
    t.stop().await;
}

/// A profile the audience processor cannot read (its stored document was damaged) stops only
/// its own workspace's full computation, not another workspace's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_workspace_that_cannot_be_computed_holds_back_no_other() {
    let t = start_on("audience-isolation", Backend::Postgres, |_| {}).await;
    let (other_key, other_admin) = t.second_workspace("Second brand").await;
    for (key, user) in [(WRITE_KEY, "damaged"), (other_key.as_str(), "fine")] {
        let body = json!({"userId": user, "traits": {"email": format!("{user}@x.io")}});
        let r = t
            .client
            .track("/v1/identify", key, body.to_string())
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    t.unified().await;
    let damaged = t.profile_of(ADMIN, "user_id", "damaged").await.unwrap();
    let url = t.database.as_ref().unwrap().url().to_string();
    let out = std::process::Command::new("psql")
        .args([
            url.as_str(),
            "-Atc",
            &format!(
                "UPDATE profiles SET doc = '{{\"id\": 1' WHERE id = '{}'",
                damaged["id"].as_str().unwrap()
            ),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for token in [ADMIN, other_admin.as_str()] {
        let (status, e) = create_audience(
            &t,
            token,
            json!({"id": "emails", "name": "Emails", "definition": "has email"}),
        )
        .await;
        assert_eq!(status, 201, "{e}");
    }
    members_become(&t, &other_admin, "emails", 1).await;
    // The workspaces are computed one after the other: the damaged one may be reached after
    // the other is ready.
    let status = eventually(
        Duration::from_secs(20),
        "the damaged profile reported",
        || async {
            let (_, status) = t.get("/api/v1/status").await;
            (status["processors"]["audiences"]["set_aside"].as_u64() >= Some(1)).then_some(status)
        },
    )
    .await;
    // Skipped once, not failed, and not tried again until a definition changes.
    assert_eq!(
        status["processors"]["audiences"]["set_aside"], 1,
        "{status}"
    );
    assert_eq!(status["processors"]["audiences"]["failures"], 0, "{status}");
    assert_eq!(status["processors"]["audiences"]["state"], "ok", "{status}");
    let (_, audience) = t.get("/api/v1/audiences/emails").await;
    assert_eq!(audience["computation"]["status"], "computing", "{audience}");
    t.stop().await;
}

/// Found in review: a file line that is not JSON and holds a NUL character was quarantined as
/// it was, which PostgreSQL refuses: the whole import failed.
async fn an_import_line_no_store_could_hold_is_quarantined_as_text(backend: Backend) {
    let t = start_on("import-nul", backend, |_| {}).await;
    let file = t.dir.join("lines.ndjson");
    std::fs::write(
        &file,
        "{\"type\":\"track\",\"userId\":\"a\",\"event\":\"E\"}\nnot json\0 at all\n{\"type\":\"track\",\"userId\":\"b\",\"event\":\"E\"}\n",
    )
    .unwrap();
    let report = import(&config_of(&t), &file, None, Some(&t.workspace), false).unwrap();
    assert_eq!((report.stored, report.quarantined), (2, 1));
    let q = quarantine(&t).await;
    assert_eq!(q[0]["code"], "invalid_event");
    assert_eq!(q[0]["body"], "not json\u{FFFD} at all");
    t.stop().await;
}
