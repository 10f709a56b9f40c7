//! The tracking API's body: a batch or a single event, parsed and validated as ingest does.
//! Whatever is accepted must read back (as unify, audiences and export read it) and survive
//! an export and an import unchanged; nothing may panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use parcours_core::observation::Observation;
use parcours_core::rules::IdentityRules;
use parcours_core::spec::{self, Checked, Edge, EventType};
use parcours_core::Channel;
use parcours_store::StoredEvent;
use serde_json::value::RawValue;
use serde_json::Value;

const NOW: i64 = 1_780_000_000_000;

fuzz_target!(|data: &[u8]| {
    for path_type in [None, Some(EventType::Track), Some(EventType::Identify)] {
        let Ok(envelope) = spec::parse_envelope(data, path_type) else {
            continue;
        };
        let edge = Edge {
            batch_sent_at: envelope.sent_at.as_deref(),
            batch_context: envelope.context,
            batch_integrations: envelope.integrations,
            ..Edge::single(NOW, None, path_type)
        };
        let alone = Edge::single(NOW, None, path_type);
        for item in &envelope.items {
            match spec::check_event(item, &edge, &mut |_| "assigned".into()) {
                Checked::Accepted(a) => {
                    // The batch's context merged in changes no id the event carries.
                    if let Checked::Accepted(b) =
                        spec::check_event(item, &alone, &mut |_| "assigned".into())
                    {
                        assert_eq!(
                            (&a.message_id, &a.user_id, &a.anonymous_id),
                            (&b.message_id, &b.user_id, &b.anonymous_id)
                        );
                    }
                    reads_back(a)
                }
                Checked::Quarantined(q) => assert!(!q.body.is_empty()),
            }
        }
    }
});

fn reads_back(a: spec::AcceptedEvent) {
    assert!((spec::MIN_TIMESTAMP..=spec::MAX_TIMESTAMP).contains(&a.timestamp));
    let body: Value = serde_json::from_str(&a.body).expect("an accepted body parses");
    let stored = StoredEvent::accepted(1, "ws", "src", &a);
    let _ = Observation::from_event(&stored.meta(), &body, &IdentityRules::default());
    // Exported, then imported: the same event.
    let exported = stored.to_json_text();
    let raw: Box<RawValue> = serde_json::from_str(&exported).expect("an export parses");
    let import = Edge::single(NOW, Some(Channel::Server), None);
    match spec::check_event(&raw, &import, &mut |_| unreachable!("the export has its id")) {
        Checked::Accepted(b) => {
            assert_eq!(
                (&b.message_id, b.kind, &b.user_id, &b.anonymous_id, b.timestamp, b.channel),
                (&a.message_id, a.kind, &a.user_id, &a.anonymous_id, a.timestamp, a.channel),
                "{exported}"
            );
        }
        Checked::Quarantined(q) => panic!("an exported event is refused on import: {q:?}"),
    }
}
