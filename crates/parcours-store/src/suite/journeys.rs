use serde_json::json;

use super::*;

fn version(ws: &str, id: &str, replaces: Option<u32>, source: &str, at: i64) -> NewJourneyVersion {
    NewJourneyVersion {
        workspace_id: ws.into(),
        journey_id: id.into(),
        replaces,
        source: source.into(),
        doc: json!({"id": id, "source": source, "nested": {"list": [1, 2.5, "é"]}}),
        status: "draft".into(),
        in_flight: "stay".into(),
        created_at: at,
    }
}

/// Versions are numbered from 1, read back byte for byte, and a writer that did not see the
/// latest version is refused.
pub fn journey_versions_append_and_refuse_stale_writers(store: &dyn Store) {
    setup(store, &["w1", "w2"]);
    let yaml = "id: cart\n# a comment kept as written\nsteps: []  \n";
    assert_eq!(
        store
            .put_journey_version(&version("w1", "cart", None, yaml, T0))
            .unwrap(),
        1
    );
    // A second "new" journey with the same id is refused.
    assert!(matches!(
        store.put_journey_version(&version("w1", "cart", None, "x", T0)),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store
            .put_journey_version(&version("w1", "cart", Some(1), "v2", T0 + 1))
            .unwrap(),
        2
    );
    // Replacing version 1 again, or a version that does not exist yet: refused.
    for stale in [Some(1), Some(3), Some(7)] {
        assert!(matches!(
            store.put_journey_version(&version("w1", "cart", stale, "late", T0 + 2)),
            Err(StoreError::Conflict(_))
        ));
    }
    // The same id in another workspace is another journey.
    assert_eq!(
        store
            .put_journey_version(&version("w2", "cart", None, "other", T0))
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .put_journey_version(&version("w1", "welcome", None, "w", T0))
            .unwrap(),
        1
    );

    let versions = store.journey_versions("w1", "cart").unwrap();
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        [2, 1]
    );
    assert_eq!(versions[1].source, yaml);
    assert_eq!(versions[1].doc, version("w1", "cart", None, yaml, T0).doc);
    assert_eq!(versions[1].created_at, T0);
    assert_eq!(versions[1].in_flight, "stay");

    let latest = store.journeys(Some("w1")).unwrap();
    let ids: Vec<(&str, u32)> = latest
        .iter()
        .map(|v| (v.journey_id.as_str(), v.version))
        .collect();
    assert_eq!(ids, [("cart", 2), ("welcome", 1)]);
    assert_eq!(store.journeys(None).unwrap().len(), 3);
    assert_eq!(store.journeys(Some("w3")).unwrap(), vec![]);

    let one = store.journey_version("w1", "cart", 1).unwrap().unwrap();
    assert_eq!(one.source, yaml);
    assert_eq!(store.journey_version("w1", "cart", 3).unwrap(), None);
    assert_eq!(store.journey_version("w2", "welcome", 1).unwrap(), None);
}
