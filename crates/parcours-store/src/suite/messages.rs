use super::*;

fn receipt(ws: &str, key: &str, kind: &str, step: &str, at: i64) -> Receipt {
    Receipt {
        workspace_id: ws.into(),
        key: key.into(),
        kind: kind.into(),
        at,
        journey_id: "cart".into(),
        step_id: step.into(),
        channel: "email".into(),
        detail: format!("{kind} at {at}"),
    }
}

fn suppression(ws: &str, address: &str, reason: &str, at: i64) -> Suppression {
    Suppression {
        workspace_id: ws.into(),
        channel: "email".into(),
        address: address.into(),
        reason: reason.into(),
        key: format!("r-{address}:reminder:2"),
        detail: format!("{reason} for {address}"),
        at,
    }
}

pub fn message_receipts_count_once_and_suppressions_keep_the_first_reason(store: &dyn Store) {
    setup(store, &["w1", "w2"]);
    // One receipt per message and kind: a second open is not a second receipt.
    assert!(store
        .record_receipt(&receipt(
            "w1",
            "r1:reminder:2",
            "opened",
            "reminder",
            T0 + 5
        ))
        .unwrap());
    assert!(!store
        .record_receipt(&receipt(
            "w1",
            "r1:reminder:2",
            "opened",
            "reminder",
            T0 + 9
        ))
        .unwrap());
    for (key, kind, step, at) in [
        ("r1:reminder:2", "delivered", "reminder", T0 + 1),
        ("r1:reminder:2", "clicked", "reminder", T0 + 7),
        ("r2:reminder:2", "delivered", "reminder", T0 + 2),
        ("r2:sms:5", "bounced", "sms", T0 + 3),
    ] {
        assert!(store
            .record_receipt(&receipt("w1", key, kind, step, at))
            .unwrap());
    }
    // The same key in another workspace is another message.
    assert!(store
        .record_receipt(&receipt("w2", "r1:reminder:2", "opened", "reminder", T0))
        .unwrap());
    let r1 = store.receipts("w1", "r1:reminder:2").unwrap();
    assert_eq!(
        r1.iter()
            .map(|r| (r.kind.as_str(), r.at))
            .collect::<Vec<_>>(),
        [
            ("delivered", T0 + 1),
            ("opened", T0 + 5),
            ("clicked", T0 + 7)
        ]
    );
    assert_eq!(
        r1[1],
        receipt("w1", "r1:reminder:2", "opened", "reminder", T0 + 5)
    );
    assert!(store.receipts("w1", "r9:x:1").unwrap().is_empty());
    let counts = store.receipt_counts("w1", "cart").unwrap();
    assert_eq!(
        counts,
        [
            ("reminder".to_string(), "clicked".to_string(), 1),
            ("reminder".into(), "delivered".into(), 2),
            ("reminder".into(), "opened".into(), 1),
            ("sms".into(), "bounced".into(), 1),
        ]
    );
    assert!(store.receipt_counts("w1", "welcome").unwrap().is_empty());
    assert_eq!(store.receipt_counts("w2", "cart").unwrap().len(), 1);

    // Suppressions: the first reason stays; lifting one lets the next one in.
    let first = suppression("w1", "lea@example.com", "hard_bounce", T0 + 10);
    assert!(store.suppress(&first).unwrap());
    assert!(!store
        .suppress(&suppression("w1", "lea@example.com", "complaint", T0 + 20))
        .unwrap());
    assert_eq!(
        store
            .suppression("w1", "email", "lea@example.com")
            .unwrap()
            .as_ref(),
        Some(&first)
    );
    assert_eq!(
        store.suppression("w1", "sms", "lea@example.com").unwrap(),
        None
    );
    assert_eq!(
        store.suppression("w2", "email", "lea@example.com").unwrap(),
        None
    );
    for (i, a) in ["a@x.io", "b@x.io", "c@x.io", "d@x.io"].iter().enumerate() {
        // Two of them at the same moment: the page order breaks the tie by address.
        let at = T0 + 30 + (i as i64).min(2);
        assert!(store
            .suppress(&suppression("w1", a, "complaint", at))
            .unwrap());
    }
    let mut seen = Vec::new();
    let mut after: Option<(i64, String, String)> = None;
    loop {
        let page = store
            .suppressions(
                "w1",
                after.as_ref().map(|(t, c, a)| (*t, c.as_str(), a.as_str())),
                2,
            )
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        let last = page.last().unwrap();
        after = Some((last.at, last.channel.clone(), last.address.clone()));
        seen.extend(page.into_iter().map(|s| s.address));
    }
    assert_eq!(
        seen,
        ["d@x.io", "c@x.io", "b@x.io", "a@x.io", "lea@example.com"]
    );
    assert!(store.suppressions("w2", None, 10).unwrap().is_empty());
    assert!(store.unsuppress("w1", "email", "lea@example.com").unwrap());
    assert!(!store.unsuppress("w1", "email", "lea@example.com").unwrap());
    assert_eq!(
        store.suppression("w1", "email", "lea@example.com").unwrap(),
        None
    );
    let again = suppression("w1", "lea@example.com", "complaint", T0 + 40);
    assert!(store.suppress(&again).unwrap());
    assert_eq!(
        store.suppression("w1", "email", "lea@example.com").unwrap(),
        Some(again)
    );
}
