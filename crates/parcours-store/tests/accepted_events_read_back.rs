//! Anything ingest accepts, every reader reads: unify (the body as JSON, its observation),
//! audiences (its properties), export, and an import of the export, which gives the same
//! event back. Events are built from the hostile pieces the review sent (numbers beyond a
//! float, lone surrogates, NUL characters, deep nesting, huge numeric ids, clocks at the end
//! of time) mixed with ordinary ones.

use parcours_core::observation::Observation;
use parcours_core::rules::IdentityRules;
use parcours_core::spec::{self, Checked, Edge};
use parcours_core::Channel;
use parcours_store::StoredEvent;
use proptest::prelude::*;
use serde_json::value::RawValue;
use serde_json::Value;

const NOW: i64 = 1_780_000_000_000;

/// A value from the review's hostile pieces.
fn hostile() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "1e400",
        "-1e400",
        "1e-400",
        "-0",
        "18446744073709551616",
        r#""\ud800""#,
        r#""x\udc00y""#,
        r#""a\u0000b""#,
        r#""""#,
        r#""  ""#,
        "{}",
        "[]",
    ])
    .prop_map(str::to_string)
}

/// A value that passes.
fn fine() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "42",
        "-7.25",
        "1e308",
        "100000000000000000000001",
        r#""ok""#,
        r#""caf\u00e9""#,
        r#""\ud83d\ude00""#,
        "null",
        "true",
        r#"{"a":[1,{"b":"c"}]}"#,
    ])
    .prop_map(str::to_string)
}

fn nested() -> impl Strategy<Value = String> {
    (0usize..140, fine())
        .prop_map(|(depth, inner)| format!("{}{inner}{}", "[".repeat(depth), "]".repeat(depth)))
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![4 => fine(), 1 => hostile(), 1 => nested()]
}

fn id(plain: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![3 => Just(format!("\"{plain}\"")), 1 => fine(), 1 => hostile()]
}

fn time() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        r#""2026-01-01T00:00:00Z""#,
        r#""2026-01-01T00:00:05Z""#,
        r#""2026-01-01 10:00:00""#,
        r#""9999-12-31T23:59:59.999Z""#,
        r#""9999-12-31T00:00:00Z""#,
        r#""1970-01-01T00:00:00Z""#,
        r#""1969-12-31T23:59:59Z""#,
        r#""0001-01-01T00:00:00Z""#,
        r#""soon""#,
        "12",
    ])
    .prop_map(str::to_string)
}

fn event() -> impl Strategy<Value = String> {
    let kinds = vec![
        r#""track""#,
        r#""identify""#,
        r#""page""#,
        r#""alias""#,
        r#""group""#,
        r#""jump""#,
    ];
    let times = prop::collection::vec(
        (
            prop::sample::select(vec!["timestamp", "sentAt", "originalTimestamp"]),
            time(),
        ),
        0..3,
    );
    (
        prop::option::weighted(0.95, prop::sample::select(kinds)),
        prop::option::of(id("u1")),
        prop::option::of(id("a1")),
        prop::option::of(id("m1")),
        prop::option::weighted(0.9, id("Order Completed")),
        times,
        prop::collection::vec(value(), 0..4),
        prop::option::weighted(0.8, id("g1")),
    )
        .prop_map(|(kind, user, anon, mid, name, times, props, group)| {
            let mut parts = Vec::new();
            let mut put = |k: &str, v: Option<String>| {
                if let Some(v) = v {
                    parts.push(format!("\"{k}\":{v}"));
                }
            };
            put("type", kind.map(str::to_string));
            put("userId", user);
            put("anonymousId", anon);
            put("messageId", mid);
            put("event", name);
            put("groupId", group.clone());
            put("previousId", group);
            for (k, v) in times {
                put(k, Some(v));
            }
            let props: Vec<String> = props
                .iter()
                .enumerate()
                .map(|(i, v)| format!("\"p{i}\":{v}"))
                .collect();
            put("properties", Some(format!("{{{}}}", props.join(","))));
            let mut traits = vec![r#""email":"A@x.io""#.to_string()];
            traits.extend(props);
            put("traits", Some(format!("{{{}}}", traits.join(","))));
            format!("{{{}}}", parts.join(","))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn what_ingest_accepts_every_reader_reads(text in event()) {
        let raw: Box<RawValue> = match serde_json::from_str(&text) {
            Ok(r) => r,
            Err(_) => return Ok(()), // not JSON at all: refused before validation
        };
        let Checked::Accepted(a) = spec::check_event(&raw, &Edge::single(NOW, None, None), &mut |_| "assigned".into())
        else {
            return Ok(());
        };
        prop_assert!((spec::MIN_TIMESTAMP..=spec::MAX_TIMESTAMP).contains(&a.timestamp));
        let body: Value = serde_json::from_str(&a.body).expect("unify reads the body");
        let stored = StoredEvent::accepted(1, "ws", "src", &a);
        let _ = Observation::from_event(&stored.meta(), &body, &IdentityRules::default());
        let exported = stored.to_json_text();
        prop_assert!(!exported.contains("unreadableBody"), "{}", exported);
        let raw: Box<RawValue> = serde_json::from_str(&exported).expect("the export parses");
        let import = Edge::single(NOW, Some(Channel::Server), None);
        match spec::check_event(&raw, &import, &mut |_| "no".into()) {
            Checked::Accepted(b) => {
                prop_assert_eq!(
                    (b.message_id, b.kind, b.user_id, b.anonymous_id, b.timestamp, b.channel),
                    (a.message_id, a.kind, a.user_id, a.anonymous_id, a.timestamp, a.channel)
                );
                let (x, y): (Value, Value) = (
                    serde_json::from_str(&b.body).unwrap(),
                    serde_json::from_str(&a.body).unwrap(),
                );
                prop_assert_eq!(&x["properties"], &y["properties"]);
                prop_assert_eq!(&x["traits"], &y["traits"]);
            }
            Checked::Quarantined(q) => prop_assert!(false, "import refuses {}: {:?}", exported, q),
        }
    }
}
