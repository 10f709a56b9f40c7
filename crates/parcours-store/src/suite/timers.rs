//! Conformance of the durable timers port: due order, firing once, cancel, reschedule,
//! claims per bucket, lease takeover.

use super::{setup, T0};
use crate::*;

fn timer(key: &str, bucket: u16, due_at: i64) -> NewTimer {
    NewTimer {
        workspace_id: "ws_a".into(),
        kind: "journey".into(),
        key: key.into(),
        bucket,
        due_at,
        payload: format!(r#"{{"run":"{key}"}}"#),
    }
}

fn claim<'a>(buckets: Option<&'a [u16]>, now: i64, limit: usize, token: &'a str) -> TimerClaim<'a> {
    TimerClaim {
        kind: "journey",
        buckets,
        now,
        limit,
        lease_until: now + 1_000,
        token,
    }
}

fn keys(timers: &[DurableTimer]) -> Vec<&str> {
    timers.iter().map(|t| t.key.as_str()).collect()
}

fn fires(timers: &[DurableTimer]) -> Vec<TimerFire<'_>> {
    timers
        .iter()
        .map(|t| TimerFire {
            workspace_id: &t.workspace_id,
            kind: &t.kind,
            key: &t.key,
            due_at: t.due_at,
        })
        .collect()
}

pub fn timers_fire_in_due_order_and_once(store: &dyn Store) {
    setup(store, &["ws_a"]);
    store
        .set_timers(&[
            timer("c", 1, T0 + 30),
            timer("a", 1, T0 + 10),
            timer("b", 2, T0 + 20),
            timer("later", 1, T0 + 5_000),
        ])
        .unwrap();
    assert_eq!(store.timer_count("journey").unwrap(), 4);
    assert_eq!(store.next_due("journey", None).unwrap(), Some(T0 + 10));
    assert_eq!(store.next_due("other", None).unwrap(), None);
    // Nothing is due before its time; then the earliest first, a page at a time.
    assert!(store
        .claim_timers(&claim(None, T0 + 9, 10, "t1"))
        .unwrap()
        .is_empty());
    let got = store.claim_timers(&claim(None, T0 + 100, 2, "t1")).unwrap();
    assert_eq!(keys(&got), vec!["a", "b"]);
    assert_eq!(got[0].payload, r#"{"run":"a"}"#);
    let rest = store
        .claim_timers(&claim(None, T0 + 100, 10, "t2"))
        .unwrap();
    assert_eq!(
        keys(&rest),
        vec!["c"],
        "claimed timers are not claimed again"
    );
    // Given back unfired (its handler failed): claimable again at once, by anyone; another
    // token gives nothing back.
    assert_eq!(store.release_timers("t2", &fires(&rest)[..0]).unwrap(), 0);
    assert_eq!(store.release_timers("t1", &fires(&rest)).unwrap(), 0);
    assert_eq!(store.release_timers("t2", &fires(&rest)).unwrap(), 1);
    assert!(store
        .timer("ws_a", "journey", "c")
        .unwrap()
        .unwrap()
        .lease_until
        .is_none());
    let rest = store
        .claim_timers(&claim(None, T0 + 100, 10, "t2"))
        .unwrap();
    assert_eq!(keys(&rest), vec!["c"]);
    // Fired once: a second fire removes nothing.
    assert_eq!(store.fire_timers("t1", &fires(&got)).unwrap(), 2);
    assert_eq!(store.fire_timers("t1", &fires(&got)).unwrap(), 0);
    // Another scheduler's token fires nothing.
    assert_eq!(store.fire_timers("t1", &fires(&rest)).unwrap(), 0);
    assert_eq!(store.fire_timers("t2", &fires(&rest)).unwrap(), 1);
    assert!(store.timer("ws_a", "journey", "a").unwrap().is_none());
    assert_eq!(store.timer_count("journey").unwrap(), 1);
    // A scheduler that dies: its lease ends, another takes the timer over, and the first
    // can no longer fire it.
    let lost = store
        .claim_timers(&claim(None, T0 + 5_000, 10, "t3"))
        .unwrap();
    assert_eq!(keys(&lost), vec!["later"]);
    assert!(store
        .claim_timers(&claim(None, T0 + 5_999, 10, "t4"))
        .unwrap()
        .is_empty());
    let taken = store
        .claim_timers(&claim(None, T0 + 6_000, 10, "t4"))
        .unwrap();
    assert_eq!(keys(&taken), vec!["later"]);
    assert_eq!(store.fire_timers("t3", &fires(&lost)).unwrap(), 0);
    assert_eq!(store.fire_timers("t4", &fires(&taken)).unwrap(), 1);
    assert_eq!(store.timer_count("journey").unwrap(), 0);
}

pub fn timers_are_cancelled_and_rescheduled_by_key(store: &dyn Store) {
    setup(store, &["ws_a"]);
    store
        .set_timers(&[timer("a", 1, T0 + 10), timer("b", 1, T0 + 20)])
        .unwrap();
    assert_eq!(
        store
            .cancel_timers("ws_a", "journey", &["b".into(), "nope".into()])
            .unwrap(),
        1
    );
    // Moved later: not due at its old time.
    store.set_timers(&[timer("a", 1, T0 + 500)]).unwrap();
    assert!(store
        .claim_timers(&claim(None, T0 + 100, 10, "t1"))
        .unwrap()
        .is_empty());
    assert_eq!(
        store.timer("ws_a", "journey", "a").unwrap().unwrap().due_at,
        T0 + 500
    );
    // Moved while its handler runs: the fire of the old time keeps it for the new one.
    let got = store
        .claim_timers(&claim(None, T0 + 500, 10, "t1"))
        .unwrap();
    store.set_timers(&[timer("a", 1, T0 + 900)]).unwrap();
    assert_eq!(store.fire_timers("t1", &fires(&got)).unwrap(), 0);
    let t = store.timer("ws_a", "journey", "a").unwrap().unwrap();
    assert_eq!((t.due_at, t.lease_until), (T0 + 900, None));
    let again = store
        .claim_timers(&claim(None, T0 + 900, 10, "t2"))
        .unwrap();
    assert_eq!(keys(&again), vec!["a"]);
    assert_eq!(store.fire_timers("t2", &fires(&again)).unwrap(), 1);
}

pub fn timers_are_claimed_per_bucket(store: &dyn Store) {
    setup(store, &["ws_a"]);
    store
        .set_timers(&[
            timer("b1", 1, T0),
            timer("b2", 2, T0 + 1),
            timer("b3", 3, T0 + 2),
        ])
        .unwrap();
    let mine = store
        .claim_timers(&claim(Some(&[1, 3]), T0 + 10, 10, "n1"))
        .unwrap();
    assert_eq!(keys(&mine), vec!["b1", "b3"]);
    assert_eq!(store.next_due("journey", Some(&[2])).unwrap(), Some(T0 + 1));
    let theirs = store
        .claim_timers(&claim(Some(&[2]), T0 + 10, 10, "n2"))
        .unwrap();
    assert_eq!(keys(&theirs), vec!["b2"]);
    assert!(store
        .claim_timers(&claim(Some(&[]), T0 + 10, 10, "n3"))
        .unwrap()
        .is_empty());
    // The audience processor's re-evaluations are timers of the same table.
    store
        .record(&AudienceWrite {
            timers: vec![ReevaluationTimer::new("ws_a", "p_1", Some(T0 + 50))],
            ..AudienceWrite::default()
        })
        .unwrap();
    assert_eq!(store.timer_count(AUDIENCE_TIMERS).unwrap(), 1);
    assert_eq!(
        store
            .timer("ws_a", AUDIENCE_TIMERS, "p_1")
            .unwrap()
            .map(|t| t.due_at),
        Some(T0 + 50)
    );
    assert_eq!(store.timer_of("ws_a", "p_1").unwrap(), Some(T0 + 50));
}
