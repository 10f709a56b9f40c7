//! Conformance of the daily tallies: added in the transaction of what they count, summed by
//! day, metric and key, read by range, reset with their projection.

use super::audiences::change;
use super::*;
use crate::tallies::{day_of, Tallies, ENTERED, EVENTS, EXITED, MERGES, SENT};

fn read(store: &dyn Store, ws: &str, from: i64, to: i64) -> Vec<(String, String, i64, i64)> {
    store
        .tallies(ws, from, to)
        .unwrap()
        .into_iter()
        .map(|t| (t.metric, t.key, t.day - day_of(T0), t.n))
        .collect()
}

fn row(metric: &str, key: &str, day: i64, n: i64) -> (String, String, i64, i64) {
    (metric.to_string(), key.to_string(), day, n)
}

pub fn tallies_add_up_per_day_and_reset_with_their_projection(store: &dyn Store) {
    setup(store, &["w1", "w2"]);
    const DAY: i64 = 86_400_000;
    let d0 = day_of(T0);
    let mut t = Tallies::default();
    t.add("w1", EVENTS, "web", T0, 2);
    t.add("w1", EVENTS, "store", T0 + DAY, 1);
    t.add("w1", MERGES, "", T0, 1);
    t.add("w2", EVENTS, "web", T0, 7);
    let first = t.into_rows();
    // The same count given twice in one call adds up too.
    let web = first
        .iter()
        .find(|t| t.workspace_id == "w1" && t.key == "web")
        .unwrap()
        .clone();
    let twice = vec![web.clone(), web];
    store
        .transact(&mut |tx| {
            tx.add_tallies(&first)?;
            tx.add_tallies(&twice)
        })
        .unwrap();
    // A transaction that fails counts nothing.
    let failed = store.transact(&mut |tx| {
        tx.add_tallies(&first)?;
        Err(StoreError::Conflict("changed my mind".into()))
    });
    assert!(failed.is_err());
    // An audience write counts its entries and exits; a journey write its messages.
    store
        .record(&AudienceWrite {
            changes: vec![
                change("w1", "vip", "p1", true, T0),
                change("w1", "vip", "p2", true, T0 + 1),
            ],
            ..AudienceWrite::default()
        })
        .unwrap();
    store
        .record(&AudienceWrite {
            changes: vec![change("w1", "vip", "p1", false, T0 + DAY)],
            ..AudienceWrite::default()
        })
        .unwrap();
    store
        .record_journeys(&JourneyWrite {
            contacts: vec![ContactRow {
                workspace_id: "w1".into(),
                profile_id: "p1".into(),
                at: T0 + 2 * DAY,
                key: "k1".into(),
                channel: "email".into(),
                journey_id: "cart".into(),
                priority: 50,
            }],
            ..JourneyWrite::default()
        })
        .unwrap();
    assert_eq!(
        read(store, "w1", d0, d0 + 2),
        vec![
            row(ENTERED, "vip", 0, 2),
            row(EVENTS, "web", 0, 6),
            row(EVENTS, "store", 1, 1),
            row(EXITED, "vip", 1, 1),
            row(MERGES, "", 0, 1),
            row(SENT, "cart", 2, 1),
        ],
        "2 + 2 + 2 web events on day 0, and every other count once"
    );
    assert_eq!(
        read(store, "w2", d0, d0 + 2),
        vec![row(EVENTS, "web", 0, 7)]
    );
    assert_eq!(
        read(store, "w1", d0 + 1, d0 + 1),
        vec![row(EVENTS, "store", 1, 1), row(EXITED, "vip", 1, 1)],
        "a range reads its days only"
    );
    assert!(read(store, "w3", d0, d0 + 2).is_empty());
    // Replaying the identity projections counts their tallies again from nothing; the
    // audiences' and journeys' stay.
    store.transact(&mut |tx| tx.reset_all()).unwrap();
    assert_eq!(
        read(store, "w1", d0, d0 + 2),
        vec![
            row(ENTERED, "vip", 0, 2),
            row(EXITED, "vip", 1, 1),
            row(SENT, "cart", 2, 1),
        ]
    );
}
