//! Conformance of the registry port: workspaces, sources, write keys, tokens.

use parcours_core::channel::Channel;
use parcours_core::rules::IdentityRulesConfig;

use super::*;

pub fn registry_round_trips_and_keeps_workspaces_apart(store: &dyn Store) {
    setup(store, &["ws_a", "ws_b"]);
    assert!(matches!(
        store.create_workspace(&workspace("ws_a")),
        Err(StoreError::Conflict(_))
    ));
    let src = Source {
        id: "src_1".into(),
        workspace_id: "ws_a".into(),
        name: "POS".into(),
        channel: Some(Channel::Store),
        created_at: T0,
        allowed_origins: vec!["https://shop.example".into()],
        webhook: Some(parcours_core::webhook::WebhookSource {
            mapping: parcours_core::webhook::MappingRef::Shipped("shopify_orders_create".into()),
            signature: Some(parcours_core::webhook::SignatureCheck {
                scheme: parcours_core::webhook::SignatureScheme::Shopify,
                secret: "shpss_secret".into(),
            }),
        }),
        tracking_plan: Some(
            parcours_core::plan::TrackingPlan::from_json(&serde_json::json!({
                "events": {"Order Completed": {"type": "object", "required": ["total"]}},
                "on_violation": "quarantine"
            }))
            .unwrap(),
        ),
    };
    store.create_source(&src, "hash-1").unwrap();
    let dup = Source {
        id: "src_2".into(),
        ..src.clone()
    };
    assert!(
        matches!(
            store.create_source(&dup, "hash-1"),
            Err(StoreError::Conflict(_))
        ),
        "a write key is unique"
    );
    assert_eq!(
        store.source_by_key_hash("hash-1").unwrap(),
        Some(KeyGrant {
            source: src.clone(),
            expires_at: None
        })
    );
    assert_eq!(store.source_by_key_hash("nope").unwrap(), None);
    assert_eq!(store.sources("ws_a").unwrap(), vec![src]);
    assert!(store.sources("ws_b").unwrap().is_empty());
    let token = Token {
        id: "tok_1".into(),
        workspace_id: "ws_b".into(),
        name: "ops".into(),
        role: Role::Admin,
        instance_admin: true,
        created_at: T0,
        expires_at: None,
        scopes: vec![],
    };
    store.create_token(&token, "thash").unwrap();
    assert_eq!(store.token_by_hash("thash").unwrap(), Some(token.clone()));
    assert_eq!(store.tokens("ws_b").unwrap(), vec![token]);
    assert!(store.tokens("ws_a").unwrap().is_empty());
    // The console language a token's user chose, remembered and changed; none for a token
    // that never chose, refused for one that does not exist.
    assert_eq!(store.token_language("tok_1").unwrap(), None);
    store.set_token_language("tok_1", "fr").unwrap();
    assert_eq!(
        store.token_language("tok_1").unwrap().as_deref(),
        Some("fr")
    );
    store.set_token_language("tok_1", "en").unwrap();
    assert_eq!(
        store.token_language("tok_1").unwrap().as_deref(),
        Some("en")
    );
    assert!(matches!(
        store.set_token_language("tok_missing", "fr"),
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.token_language("tok_missing").unwrap(), None);
    let rules = IdentityRulesConfig {
        identifier_traits: vec!["loyalty_card".into()],
        ..Default::default()
    };
    store.set_identity_rules("ws_a", &rules).unwrap();
    assert_eq!(
        store.workspace("ws_a").unwrap().unwrap().identity_rules,
        rules
    );
    assert!(matches!(
        store.set_identity_rules("ws_zz", &rules),
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.workspaces().unwrap().len(), 2);
}

pub fn write_keys_rotate_and_tokens_expire(store: &dyn Store) {
    setup(store, &["ws_a", "ws_b"]);
    let src = Source {
        id: "src_1".into(),
        workspace_id: "ws_a".into(),
        name: "Web".into(),
        channel: None,
        created_at: T0,
        allowed_origins: vec![],
        webhook: None,
        tracking_plan: None,
    };
    store.create_source(&src, "key-1").unwrap();
    // Another workspace cannot rotate, rename or delete it.
    assert!(matches!(
        store.rotate_write_key("ws_b", "src_1", "key-x", T0, T0),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.delete_source("ws_b", "src_1"),
        Err(StoreError::NotFound(_))
    ));
    store
        .rotate_write_key("ws_a", "src_1", "key-2", T0 + 10, T0 + 1_000)
        .unwrap();
    let grant = |h: &str| store.source_by_key_hash(h).unwrap().map(|g| g.expires_at);
    assert_eq!(
        grant("key-1"),
        Some(Some(T0 + 1_000)),
        "the old key works until the overlap ends"
    );
    assert_eq!(grant("key-2"), Some(None));
    // A second rotation shortens, never lengthens, what the old keys have left.
    store
        .rotate_write_key("ws_a", "src_1", "key-3", T0 + 20, T0 + 5_000)
        .unwrap();
    assert_eq!(grant("key-1"), Some(Some(T0 + 1_000)));
    assert_eq!(grant("key-2"), Some(Some(T0 + 5_000)));
    assert!(
        matches!(
            store.rotate_write_key("ws_a", "src_1", "key-3", T0 + 30, T0 + 30),
            Err(StoreError::Conflict(_))
        ),
        "a key is unique"
    );
    let keys = store.write_keys("ws_a", "src_1").unwrap();
    assert_eq!(keys.len(), 3);
    assert_eq!(keys[0].fingerprint, "key-1");
    assert_eq!(keys[2].expires_at, None);
    assert!(store.write_keys("ws_b", "src_1").unwrap().is_empty());

    let renamed = Source {
        name: "Shop site".into(),
        channel: Some(Channel::Web),
        allowed_origins: vec!["https://*.shop.example".into()],
        ..src.clone()
    };
    store.update_source(&renamed).unwrap();
    assert_eq!(store.sources("ws_a").unwrap(), vec![renamed.clone()]);
    assert_eq!(
        store.source_by_key_hash("key-3").unwrap().unwrap().source,
        renamed
    );
    assert!(matches!(
        store.update_source(&Source {
            workspace_id: "ws_b".into(),
            ..renamed.clone()
        }),
        Err(StoreError::NotFound(_))
    ));

    store.delete_source("ws_a", "src_1").unwrap();
    assert!(store.sources("ws_a").unwrap().is_empty());
    for key in ["key-1", "key-2", "key-3"] {
        assert_eq!(
            store.source_by_key_hash(key).unwrap(),
            None,
            "{key} is gone with its source"
        );
    }

    let token = Token {
        id: "tok_1".into(),
        workspace_id: "ws_a".into(),
        name: "ops".into(),
        role: Role::Analyst,
        instance_admin: false,
        created_at: T0,
        expires_at: Some(T0 + 9_000),
        scopes: vec!["audiences".into(), "measure".into()],
    };
    store.create_token(&token, "thash").unwrap();
    assert_eq!(store.token_by_hash("thash").unwrap(), Some(token.clone()));
    assert!(matches!(
        store.expire_token("ws_b", "tok_1", T0),
        Err(StoreError::NotFound(_))
    ));
    store.expire_token("ws_a", "tok_1", T0 + 500).unwrap();
    store.expire_token("ws_a", "tok_1", T0 + 50_000).unwrap();
    assert_eq!(
        store.token_by_hash("thash").unwrap().unwrap().expires_at,
        Some(T0 + 500),
        "an expiry is only ever brought forward"
    );

    let line = |count, at, example: &str| PlanViolationCount {
        source_id: "src_9".into(),
        event: "Order Completed".into(),
        field: "properties.total".into(),
        kind: "wrong_type".into(),
        count,
        first_seen: at,
        last_seen: at,
        example: example.into(),
    };
    store
        .record_plan_violations("ws_a", &[line(2, T0, "first")])
        .unwrap();
    store
        .record_plan_violations("ws_a", &[line(3, T0 + 60, "later")])
        .unwrap();
    let report = store.plan_violations("ws_a").unwrap();
    assert_eq!(report.len(), 1);
    assert_eq!(report[0].count, 5, "counts add up");
    assert_eq!((report[0].first_seen, report[0].last_seen), (T0, T0 + 60));
    assert_eq!(report[0].example, "later");
    assert!(store.plan_violations("ws_b").unwrap().is_empty());
}
