//! The measurement requests of a node share their readings of the log: one reading serves
//! every request while what it depends on is unchanged, requests that come during a reading
//! wait for it instead of reading again, and the reading's progress is visible.

use std::sync::Arc;

use parcours_core::channel::Channel;
use parcours_core::rules::IdentityRulesConfig;
use parcours_core::spec::{AcceptedEvent, EventType};
use parcours_core::time::{Clock, Millis};
use parcours_service::measure::{self, Phase, Snapshots};
use parcours_service::Actor;
use parcours_store::{EventLog, IngestBatch, Registry, Role, Store, Workspace};
use parcours_store_sqlite::SqliteStore;

const T0: Millis = 1_700_000_000_000;

#[derive(Default)]
struct Manual(std::sync::atomic::AtomicI64);

impl Clock for Manual {
    fn now(&self) -> Millis {
        T0 + self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn monotonic(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
    fn sleep_until(&self, _until: Millis, _at_most: std::time::Duration) {}
}

fn store(events: usize) -> (Arc<dyn Store>, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "parcours-snapshots-{}-{}",
        std::process::id(),
        events
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = SqliteStore::open_temp(&dir).unwrap();
    store
        .create_workspace(&Workspace {
            id: "ws".into(),
            name: "ws".into(),
            created_at: T0,
            identity_rules: IdentityRulesConfig::default(),
        })
        .unwrap();
    let accepted: Vec<AcceptedEvent> = (0..events)
        .map(|i| AcceptedEvent {
            message_id: format!("m{i}"),
            kind: EventType::Track,
            event: Some("Order Completed".into()),
            user_id: Some(format!("u{}", i % 7)),
            anonymous_id: None,
            timestamp: T0 + i as Millis,
            received_at: T0 + i as Millis,
            channel: Channel::Web,
            body: format!(
                r#"{{"type":"track","event":"Order Completed","userId":"u{}","properties":{{"order_id":"o{i}","revenue":10}}}}"#,
                i % 7
            ),
        })
        .collect();
    store
        .append(
            &[IngestBatch {
                workspace_id: "ws".into(),
                source_id: "web".into(),
                events: accepted,
                quarantined: Vec::new(),
            }],
            0,
        )
        .unwrap();
    (Arc::new(store), dir)
}

#[test]
fn one_reading_serves_until_what_it_depends_on_changes() {
    let (store, dir) = store(25);
    let clock = Arc::new(Manual::default());
    let snapshots = Snapshots::new(clock.clone());
    assert_eq!(snapshots.status("ws").snapshot, None);
    let a = snapshots.read(store.as_ref(), "ws", None).unwrap();
    let b = snapshots.read(store.as_ref(), "ws", None).unwrap();
    assert!(Arc::ptr_eq(&a, &b), "nothing changed: the same reading");
    assert_eq!(a.events, 25);
    let status = snapshots.status("ws");
    assert_eq!(status.reading, None);
    let info = status.snapshot.unwrap();
    assert_eq!((info.events, info.read_at), (25, T0));

    // Spend imported: a new reading, with it.
    let actor = Actor::new("ws".to_string(), Role::Admin);
    measure::import_spend(
        store.as_ref(),
        &actor,
        "date,channel,amount\n2026-11-02,ads,12\n",
        T0,
    )
    .unwrap();
    let c = snapshots.read(store.as_ref(), "ws", Some(60_000)).unwrap();
    assert!(
        !Arc::ptr_eq(&b, &c),
        "a recent reading without the spend is not enough"
    );
    assert_eq!(c.input.spend.len(), 1);

    // Projections rewritten (an undone merge, a replay): a new reading.
    store.transact(&mut |tx| tx.bump_epoch()).unwrap();
    let d = snapshots.read(store.as_ref(), "ws", None).unwrap();
    assert!(!Arc::ptr_eq(&c, &d));

    // Requests that come together share one reading.
    store.transact(&mut |tx| tx.bump_epoch()).unwrap();
    let reads: Vec<Arc<measure::Read>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| snapshots.read(store.as_ref(), "ws", None).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(!Arc::ptr_eq(&d, &reads[0]));
    assert!(
        reads.iter().all(|r| Arc::ptr_eq(r, &reads[0])),
        "one reading for the four requests"
    );
    // Another workspace has readings of its own.
    assert_eq!(snapshots.status("other").snapshot, None);
    // A reading nobody used for a while is let go.
    clock
        .0
        .store(measure::IDLE_MS + 1, std::sync::atomic::Ordering::SeqCst);
    snapshots.read(store.as_ref(), "other", None).unwrap();
    assert_eq!(snapshots.status("ws").snapshot, None);
    assert!(snapshots.status("other").snapshot.is_some());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_reading_tells_how_far_it_got() {
    let (store, dir) = store(25_000);
    let mut seen: Vec<(Phase, u64)> = Vec::new();
    let read = measure::read_log_with(store.as_ref(), "ws", &mut |phase, done| {
        seen.push((phase, done))
    })
    .unwrap();
    assert_eq!(read.events, 25_000);
    // Owners first, then the events, each phase counting up; the events to the last.
    let first_event = seen.iter().position(|(p, _)| *p == Phase::Events).unwrap();
    assert!(seen[..first_event].iter().all(|(p, _)| *p == Phase::Owners));
    assert!(seen[first_event..].iter().all(|(p, _)| *p == Phase::Events));
    assert!(
        seen.windows(2)
            .all(|w| w[0].0 != w[1].0 || w[0].1 <= w[1].1),
        "{seen:?}"
    );
    assert_eq!(seen.last(), Some(&(Phase::Events, 25_000)));
    assert!(
        seen[first_event..].len() >= 3,
        "a report per page: {seen:?}"
    );
    let progress = measure::Progress {
        phase: Phase::Events,
        done: 12_500,
        total: 25_000,
        started_at: T0,
    };
    assert_eq!(progress.fraction(), 0.75);
    let _ = std::fs::remove_dir_all(&dir);
}
