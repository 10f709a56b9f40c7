//! Conformance of the privacy port: retention by rule, and a log that goes on after it.

use parcours_core::spec::EventType;

use super::event_log::{five_named_events, named};
use super::*;

fn message_ids(store: &dyn Store, ws: &str) -> Vec<String> {
    store
        .workspace_events(ws, 0, 100)
        .unwrap()
        .into_iter()
        .map(|e| e.message_id)
        .collect()
}

pub fn retention_deletes_what_each_rule_says_in_its_workspace(store: &dyn Store) {
    setup(store, &["ws_a", "ws_b"]);
    let mut events = five_named_events();
    events.push(named("m6", "u3", EventType::Identify, None, T0 + 5));
    store
        .append(&[batch("ws_a", events.clone()), batch("ws_b", events)], 0)
        .unwrap();
    let run = RetentionRun {
        workspace_id: "ws_a".into(),
        // m1 is older than its name's cutoff; m5 is not.
        events_by_name: vec![("Order Completed".into(), T0 + 1)],
        // m2, a page, goes by its type's cutoff.
        events_by_type: vec![("page".into(), T0 + 10)],
        // The rest (m3, m4) by the general one; m6 is newer; m5 keeps its name's rule.
        events_before: Some(T0 + 5),
        ..Default::default()
    };
    let erased = store.apply_retention(&run).unwrap();
    assert_eq!(erased.events(), 4, "{erased:?}");
    assert_eq!(message_ids(store, "ws_a"), vec!["m5", "m6"]);
    assert_eq!(
        message_ids(store, "ws_b").len(),
        6,
        "another workspace keeps all"
    );
    // A second run finds nothing more.
    assert_eq!(store.apply_retention(&run).unwrap().events(), 0);
}

pub fn deleted_events_never_give_their_seq_back(store: &dyn Store) {
    setup(store, &["ws_a"]);
    store
        .append(&[batch("ws_a", five_named_events())], 0)
        .unwrap();
    let newest = store.last_seq().unwrap();
    // Every event goes, the newest too.
    let run = RetentionRun {
        workspace_id: "ws_a".into(),
        events_before: Some(T0 + 100),
        ..Default::default()
    };
    assert_eq!(store.apply_retention(&run).unwrap().events(), 5);
    store
        .append(
            &[batch(
                "ws_a",
                vec![named("m7", "u1", EventType::Track, Some("X"), T0 + 200)],
            )],
            0,
        )
        .unwrap();
    let seq = store
        .event_by_message_id("ws_a", "m7")
        .unwrap()
        .unwrap()
        .seq;
    assert!(
        seq > newest,
        "a reader that passed {newest} would never see the new event at {seq}"
    );
    assert_eq!(store.events_after(newest, 10).unwrap().len(), 1);
}

pub fn audit_log_reads_both_ways_and_keeps_workspaces_apart(store: &dyn Store) {
    setup(store, &["ws_a", "ws_b"]);
    let entry = |ws: &str, n: i64| AuditEntry {
        id: 0,
        workspace_id: ws.into(),
        at: T0 + n,
        actor: "admin".into(),
        action: format!("a{n}"),
        target: "t".into(),
        detail: "{}".into(),
    };
    for n in 0..5 {
        store.append_audit(&entry("ws_a", n)).unwrap();
        store.append_audit(&entry("ws_b", n)).unwrap();
    }
    let actions = |v: Vec<AuditEntry>| v.into_iter().map(|e| e.action).collect::<Vec<_>>();
    assert_eq!(
        actions(store.audit_log("ws_a", 0, 3).unwrap()),
        ["a0", "a1", "a2"]
    );
    let newest = store.audit_log_newest("ws_a", None, 3).unwrap();
    let last = newest.last().unwrap().id;
    assert_eq!(actions(newest), ["a4", "a3", "a2"]);
    assert_eq!(
        actions(store.audit_log_newest("ws_a", Some(last), 10).unwrap()),
        ["a1", "a0"]
    );
    assert!(store
        .audit_log_newest("ws_b", None, 10)
        .unwrap()
        .iter()
        .all(|e| e.workspace_id == "ws_b"));
}

pub fn her_orders_are_found_by_card_or_by_what_they_hold(store: &dyn Store) {
    use super::commerce::{receive, sale};
    setup(store, &["w1", "w2"]);
    for ws in ["w1", "w2"] {
        store
            .move_stock(ws, &[receive("A", "lyon", 5)], T0)
            .unwrap()
            .unwrap();
    }
    for (ws, id, card) in [
        ("w1", "R1", Some("CARD-1")),
        ("w1", "R2", None),
        ("w2", "R9", Some("CARD-1")),
    ] {
        assert!(matches!(
            store
                .commit_commerce(&sale(ws, id, card, -1, T0 + 1), T0 + 1)
                .unwrap(),
            Committed::Done { .. }
        ));
    }
    let person = |ws: &str, identifiers: &[&str]| Erasure {
        workspace_id: ws.into(),
        identifiers: identifiers.iter().map(|s| s.to_string()).collect(),
        ..Erasure::default()
    };
    // By the card the order names, in her workspace only.
    let found = store.her_orders(&person("w1", &["CARD-1"])).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].0.contains("R1"), "{found:?}");
    assert_eq!(found[0].1.as_deref(), Some("CARD-1"));
    // By a value the order's document holds as a whole string.
    let found = store.her_orders(&person("w1", &["R2"])).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].1, None);
    assert!(store.her_orders(&person("w1", &["R"])).unwrap().is_empty());
    assert!(store.her_orders(&person("w1", &[])).unwrap().is_empty());
}

pub fn stored_secrets_are_listed_and_replaced_only_as_they_stand(store: &dyn Store) {
    setup(store, &["ws_a", "ws_b"]);
    let mut dest = super::audiences::definition("ws_a", DefinitionKind::Destination, "crm", 3);
    dest.doc =
        serde_json::json!({"name": "CRM", "url": "https://crm.example/hook", "secret": "s-dest"});
    store.put_definition(&dest).unwrap();
    store
        .put_definition(&super::audiences::definition(
            "ws_a",
            DefinitionKind::Audience,
            "vip",
            1,
        ))
        .unwrap();
    let src = Source {
        id: "src_1".into(),
        workspace_id: "ws_b".into(),
        name: "Shopify".into(),
        channel: None,
        created_at: T0,
        allowed_origins: vec![],
        webhook: Some(parcours_core::webhook::WebhookSource {
            mapping: parcours_core::webhook::MappingRef::Shipped("shopify_orders_create".into()),
            signature: Some(parcours_core::webhook::SignatureCheck {
                scheme: parcours_core::webhook::SignatureScheme::Shopify,
                secret: "s-source".into(),
            }),
        }),
        tracking_plan: None,
    };
    store.create_source(&src, "hash-secret").unwrap();
    store
        .put_workspace_setting("ws_a", "preference_secret", "s-pref", T0)
        .unwrap();
    store
        .put_workspace_setting("ws_a", "privacy", "{}", T0)
        .unwrap();
    let listed = store.stored_secrets(&["preference_secret"]).unwrap();
    let secret = |ws: &str, holder, id: &str, value: &str| StoredSecret {
        workspace_id: ws.into(),
        holder,
        id: id.into(),
        value: value.into(),
    };
    let mut expected = vec![
        secret("ws_a", SecretHolder::Destination, "crm", "s-dest"),
        secret("ws_b", SecretHolder::Source, "src_1", "s-source"),
        secret("ws_a", SecretHolder::Setting, "preference_secret", "s-pref"),
    ];
    expected.sort();
    assert_eq!(listed, expected);
    // What no longer stands is not replaced.
    for s in &expected {
        let stale = StoredSecret {
            value: "not-it".into(),
            ..s.clone()
        };
        assert!(
            !store.replace_stored_secret(&stale, "new").unwrap(),
            "{s:?}"
        );
    }
    assert_eq!(
        store.stored_secrets(&["preference_secret"]).unwrap(),
        expected
    );
    // What stands is, and nothing else of what holds it changes.
    for s in &expected {
        assert!(store.replace_stored_secret(s, "new").unwrap(), "{s:?}");
        assert!(!store.replace_stored_secret(s, "newer").unwrap(), "{s:?}");
    }
    let after = store.definitions(Some("ws_a")).unwrap();
    let crm = after.iter().find(|d| d.id == "crm").unwrap();
    assert_eq!(crm.version, 3);
    assert_eq!(
        crm.doc,
        serde_json::json!({"name": "CRM", "url": "https://crm.example/hook", "secret": "new"})
    );
    let mut changed = src.clone();
    changed
        .webhook
        .as_mut()
        .unwrap()
        .signature
        .as_mut()
        .unwrap()
        .secret = "new".into();
    assert_eq!(store.sources("ws_b").unwrap(), vec![changed]);
    assert_eq!(
        store
            .workspace_setting("ws_a", "preference_secret")
            .unwrap()
            .as_deref(),
        Some("new")
    );
    assert_eq!(
        store
            .workspace_setting("ws_a", "privacy")
            .unwrap()
            .as_deref(),
        Some("{}")
    );
}
