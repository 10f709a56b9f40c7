use proptest::prelude::*;
use serde_json::json;

use super::*;

fn round_trips(c: &Condition) {
    let text = c.to_string();
    let back = parse(&text).unwrap_or_else(|e| panic!("{text}\n{e}"));
    assert_eq!(&back, c, "text: {text}");
    let json = serde_json::to_value(c).unwrap();
    assert_eq!(&from_json(&json).unwrap(), c, "json: {json}");
}

#[test]
fn the_documented_example_reads_as_intended() {
    let c = parse(
        r#"trait plan = "gold"
  and did "Order Completed" where total > 100 count >= 2 within 30 days
  and not did "Product Added" within 1 hour
  and ("Product Viewed" then "Order Completed" within 2 hours or seen on store within 90 days)
  and last channel is web and has email and in audience "vip"
  and consent marketing:email granted and computed lifetime_value > 500
  and trait signed_up_at before 30 days ago"#,
    )
    .unwrap();
    let Condition::And { all } = &c else {
        panic!("{c:?}")
    };
    assert_eq!(all.len(), 10);
    assert_eq!(
        all[1],
        Condition::Event {
            event: "Order Completed".into(),
            did: true,
            channels: vec![],
            filters: vec![Filter {
                property: "total".into(),
                test: Test::Gt { value: json!(100) },
            }],
            measure: Some(Measure {
                aggregate: Aggregate::Count,
                property: None,
                test: Test::Ge { value: json!(2) },
            }),
            window: Window::Within {
                ms: 30 * 86_400_000
            },
        }
    );
    assert!(
        matches!(&all[2], Condition::Not { not } if matches!(**not, Condition::Event { did: true, .. }))
    );
    let Condition::Or { any } = &all[3] else {
        panic!("{:?}", all[3])
    };
    assert_eq!(
        any[0],
        Condition::Funnel {
            steps: vec![
                Step {
                    event: "Product Viewed".into(),
                    channels: vec![],
                    filters: vec![]
                },
                Step {
                    event: "Order Completed".into(),
                    channels: vec![],
                    filters: vec![]
                },
            ],
            within_ms: 7_200_000,
        }
    );
    assert_eq!(
        all[7],
        Condition::Consent {
            purpose: "marketing".into(),
            channel: Some("email".into()),
            state: ConsentState::Granted
        }
    );
    assert_eq!(
        all[9],
        Condition::Trait {
            name: "signed_up_at".into(),
            test: Test::BeforeAgo {
                ms: 30 * 86_400_000
            }
        }
    );
    round_trips(&c);
}

#[test]
fn every_condition_type_round_trips_through_text_and_json() {
    for text in [
        r#"trait plan = "gold""#,
        r#"trait plan != "gold""#,
        "trait age < 30",
        "trait age >= 18.5",
        r#"trait email contains "@example.com""#,
        "trait phone exists",
        r#"trait tier in ["gold", "silver", 3, true, null]"#,
        "trait last_order_at after 2 weeks ago",
        r#"trait "first name" = "Ana""#,
        r#"did "Order Completed""#,
        r#"did not "Order Completed" within 90 days"#,
        r#"did "Order Completed" where total > 100, currency = "EUR" sum of total >= 500 within 1 week"#,
        r#"did "Order Completed" avg of total > 80"#,
        r#"did "Order Completed" min of total > 10 between "2026-01-01T00:00:00.000Z" and "2026-02-01T00:00:00.000Z""#,
        r#"did "Order Completed" max of total < 1000 within 45 minutes"#,
        r#""Product Added" where sku = "A1" then "Checkout Started" then "Order Completed" within 2 hours"#,
        "seen on store",
        "seen on app within 30 days",
        "last channel is email",
        "has phone",
        "has user_id",
        r#"in audience "vip""#,
        "consent marketing withdrawn",
        "consent marketing:sms granted",
        "consent marketing:sms unknown",
        "is known",
        "is anonymous and did \"Order Completed\"",
        "computed order_count >= 3",
        "not (seen on web or seen on app)",
        "not not has email",
        "(has email and has phone) and has user_id",
        "has email and (has phone or (has user_id and trait x = 1))",
    ] {
        let c = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        round_trips(&c);
    }
}

#[test]
fn keywords_are_case_insensitive_and_comments_ignored() {
    let a = parse("TRAIT plan = \"gold\" AND Seen On Store # a comment\n").unwrap();
    let b = parse("trait plan = \"gold\" and seen on store").unwrap();
    assert_eq!(a, b);
    assert_eq!(
        parse("did \"x\" within 1 day").unwrap(),
        parse("did \"x\" within 24 hours").unwrap()
    );
    assert_eq!(
        parse("trait a == 1").unwrap(),
        parse("trait a = 1").unwrap()
    );
    assert_eq!(
        parse("last channel = web").unwrap(),
        parse("last channel is web").unwrap()
    );
}

#[test]
fn and_binds_tighter_than_or() {
    let c = parse("has email or has phone and has user_id").unwrap();
    let Condition::Or { any } = c else { panic!() };
    assert_eq!(any.len(), 2);
    assert!(matches!(&any[1], Condition::And { all } if all.len() == 2));
}

fn error(text: &str) -> ParseError {
    parse(text).expect_err(text)
}

#[test]
fn errors_point_at_the_line_and_column() {
    let e = error("trait plan = \"gold\"\n  and seen on moon");
    assert_eq!((e.line, e.column), (2, 15), "{e}");
    assert!(e.message.contains("unknown channel `moon`"), "{e}");

    let e = error("did \"Order Completed\" within 3 fortnights");
    assert_eq!((e.line, e.column), (1, 32), "{e}");
    assert!(e.message.contains("unit"), "{e}");

    let e = error("trait plan = \"gold");
    assert_eq!((e.line, e.column), (1, 14));
    assert!(e.message.contains("unterminated string"));

    let e = error("trait plan");
    assert!(e.message.contains("expected a test"), "{e}");
    assert!(e.message.contains("found the end"), "{e}");

    let e = error("has email has phone");
    assert_eq!((e.line, e.column), (1, 11), "{e}");
    assert!(e.message.contains("expected `and`, `or`"), "{e}");

    let e = error("(has email");
    assert!(e.message.contains("expected `)`"), "{e}");

    let e = error("\"A\" within 2 hours");
    assert!(e.message.contains("two steps"), "{e}");

    let e = error("did \"x\" count contains \"y\"");
    assert!(e.message.contains("measure"), "{e}");

    let e = error("did \"x\" between \"2026-02-01\" and \"2026-01-01\"");
    assert!(e.message.contains("before its second"), "{e}");

    let e = error("did \"x\" between \"yesterday\" and \"2026-01-01\"");
    assert_eq!((e.line, e.column), (1, 17), "{e}");

    let e = error("trait a = 1 @");
    assert_eq!((e.line, e.column), (1, 13));
    assert!(e.message.contains("unexpected character `@`"));

    let e = error("did \"x\" within 0 days");
    assert!(e.message.contains("positive"), "{e}");

    let e = error("wibble");
    assert!(e.message.contains("expected a condition"), "{e}");
}

#[test]
fn json_definitions_are_checked_like_text() {
    let ok = json!({"type": "and", "all": [
        {"type": "trait", "name": "plan", "test": {"op": "eq", "value": "gold"}},
        {"type": "event", "event": "Order Completed", "did": true,
         "where": [{"property": "total", "test": {"op": "gt", "value": 100}}],
         "measure": {"aggregate": "count", "test": {"op": "ge", "value": 2}},
         "window": {"kind": "within", "ms": 3_600_000}},
        {"type": "seen_on", "channel": "store"}
    ]});
    let c = from_json(&ok).unwrap();
    assert_eq!(
        c,
        parse(r#"trait plan = "gold" and did "Order Completed" where total > 100 count >= 2 within 1 hour and seen on store"#).unwrap()
    );
    for (bad, why) in [
        (
            json!({"type": "seen_on", "channel": "moon"}),
            "unknown channel",
        ),
        (json!({"type": "and", "all": []}), "at least one"),
        (json!({"type": "trait", "name": "x"}), "test"),
        (
            json!({"type": "trait", "name": "x", "test": {"op": "eq", "value": 1}, "extra": 1}),
            "extra",
        ),
        (
            json!({"type": "funnel", "steps": [{"event": "a"}], "within_ms": 10}),
            "two steps",
        ),
        (json!({"type": "sometimes"}), "sometimes"),
    ] {
        let e = from_json(&bad).expect_err(&bad.to_string());
        assert!(e.message.contains(why), "{bad}: {e}");
    }
}

fn arb_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_][a-z0-9_.]{0,8}",
        "[A-Za-z0-9 @:,()\"\\\\-]{1,10}",
        Just("and".to_string()),
        Just("count".to_string()),
        Just("true".to_string()),
    ]
}

fn arb_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i32>().prop_map(|n| json!(n)),
        (-1000.0f64..1000.0).prop_map(|x| json!((x * 100.0).round() / 100.0)),
        arb_name().prop_map(Value::String),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
    ]
}

fn arb_ms() -> impl Strategy<Value = i64> {
    prop_oneof![
        (1i64..500).prop_map(|n| n * 60_000),
        (1i64..100).prop_map(|n| n * 86_400_000),
        (1i64..10_000).prop_map(|n| n * 1_000),
        1i64..5_000,
    ]
}

fn arb_test() -> impl Strategy<Value = Test> {
    prop_oneof![
        arb_value().prop_map(|value| Test::Eq { value }),
        arb_value().prop_map(|value| Test::Ne { value }),
        arb_value().prop_map(|value| Test::Lt { value }),
        arb_value().prop_map(|value| Test::Ge { value }),
        arb_name().prop_map(|value| Test::Contains { value }),
        Just(Test::Exists),
        prop::collection::vec(arb_value(), 1..4).prop_map(|values| Test::In { values }),
        arb_ms().prop_map(|ms| Test::BeforeAgo { ms }),
        arb_ms().prop_map(|ms| Test::AfterAgo { ms }),
    ]
}

fn arb_filters() -> impl Strategy<Value = Vec<Filter>> {
    prop::collection::vec(
        (
            arb_name().prop_filter("`channel` is refused as a property", |n| n != "channel"),
            arb_test(),
        )
            .prop_map(|(property, test)| Filter { property, test }),
        0..3,
    )
}

fn arb_window() -> impl Strategy<Value = Window> {
    prop_oneof![
        Just(Window::Ever),
        arb_ms().prop_map(|ms| Window::Within { ms }),
        (0i64..2_000_000_000, 1i64..1_000_000).prop_map(|(from, d)| Window::Between {
            from: from * 1000,
            to: (from + d) * 1000
        }),
    ]
}

fn arb_channel() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "web", "app", "ios", "android", "store", "email", "sms",
    ])
    .prop_map(str::to_string)
}

fn arb_leaf() -> impl Strategy<Value = Condition> {
    let measure = prop_oneof![
        Just(None),
        (
            prop::sample::select(vec![
                Aggregate::Count,
                Aggregate::Sum,
                Aggregate::Avg,
                Aggregate::Min,
                Aggregate::Max
            ]),
            arb_name(),
            any::<i16>()
        )
            .prop_map(|(aggregate, p, n)| Some(Measure {
                aggregate,
                property: (aggregate != Aggregate::Count).then_some(p),
                test: Test::Ge { value: json!(n) },
            })),
    ];
    prop_oneof![
        (arb_name(), arb_test()).prop_map(|(name, test)| Condition::Trait { name, test }),
        (arb_name(), arb_test()).prop_map(|(name, test)| Condition::Computed { name, test }),
        (
            arb_name(),
            any::<bool>(),
            prop::collection::vec(arb_channel(), 0..3),
            arb_filters(),
            measure,
            arb_window()
        )
            .prop_map(|(event, did, channels, filters, measure, window)| {
                Condition::Event {
                    event,
                    did,
                    channels,
                    filters,
                    measure,
                    window,
                }
            }),
        (
            prop::collection::vec(
                (
                    arb_name(),
                    prop::collection::vec(arb_channel(), 0..2),
                    arb_filters()
                )
                    .prop_map(|(event, channels, filters)| Step {
                        event,
                        channels,
                        filters
                    }),
                2..4
            ),
            arb_ms()
        )
            .prop_map(|(steps, within_ms)| Condition::Funnel { steps, within_ms }),
        (arb_channel(), arb_window())
            .prop_map(|(channel, window)| Condition::SeenOn { channel, window }),
        arb_channel().prop_map(|channel| Condition::LastChannel { channel }),
        arb_name().prop_map(|kind| Condition::HasIdentifier { kind }),
        arb_name().prop_map(|audience| Condition::InAudience { audience }),
        any::<bool>().prop_map(|known| Condition::Known { known }),
        (
            arb_name(),
            prop::option::of(arb_name()),
            prop_oneof![
                Just(ConsentState::Granted),
                Just(ConsentState::Withdrawn),
                Just(ConsentState::Unknown)
            ]
        )
            .prop_map(|(purpose, channel, state)| Condition::Consent {
                purpose,
                channel,
                state
            }),
    ]
}

fn arb_condition() -> impl Strategy<Value = Condition> {
    arb_leaf().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(|all| Condition::And { all }),
            prop::collection::vec(inner.clone(), 2..4).prop_map(|any| Condition::Or { any }),
            inner.prop_map(|c| Condition::Not { not: Box::new(c) }),
        ]
    })
}

/// Any tree prints as text that reads back as the same tree, and so does its JSON. Run on a
/// thread with a large stack: the recursive strategy's generated types are deep in debug
/// builds.
#[test]
fn printing_then_parsing_gives_the_same_tree() {
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(|| {
            let mut runner =
                proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(512));
            let outcome = runner.run(&arb_condition(), |c| {
                let text = c.to_string();
                let back = parse(&text);
                prop_assert_eq!(
                    back.as_ref().ok(),
                    Some(&c),
                    "text: {} / {:?}",
                    text,
                    back.as_ref().err()
                );
                let json = serde_json::to_value(&c).unwrap();
                prop_assert_eq!(from_json(&json).ok(), Some(c));
                Ok(())
            });
            if let Err(e) = outcome {
                panic!("{e}");
            }
        })
        .unwrap()
        .join()
        .unwrap();
}

/// Definitions that once overflowed the stack or were accepted and then unreadable are refused
/// before any recursion, with the limit in the message (on a test thread's ordinary stack).
#[test]
fn nesting_beyond_the_limit_is_refused_before_it_recurses() {
    let wrapped = format!("{}has email{}", "(".repeat(2_000), ")".repeat(2_000));
    let nots = format!("{}has email", "not ".repeat(10_000));
    let unclosed = "(".repeat(10_000);
    let nots_130 = format!("{}has email", "not ".repeat(130));
    for text in [&wrapped, &nots, &unclosed, &nots_130] {
        let e = parse(text).unwrap_err();
        assert_eq!(e.code, "audience_too_deep", "{e}");
        assert!(e.message.contains("deeper than 32 levels"), "{e}");
        assert!(
            e.line == 1 && e.column > MAX_DEPTH,
            "points past the limit: {e}"
        );
    }
    // At the limit, a definition is accepted and its stored JSON reads back.
    let at_limit = format!("{}has email", "not ".repeat(MAX_DEPTH - 1));
    let c = parse(&at_limit).unwrap();
    let stored = serde_json::to_string(&c).unwrap();
    let back: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(from_json(&back).unwrap(), c);
    let grouped = format!(
        "{}has email{}",
        "(has phone or ".repeat(MAX_DEPTH - 1),
        ")".repeat(MAX_DEPTH - 1)
    );
    let c = parse(&grouped).unwrap();
    assert!(json_depth(&serde_json::to_value(&c).unwrap()) < 100);
    round_trips(&c);
    assert_eq!(
        parse(&format!("(({grouped}))")).unwrap_err().code,
        "audience_too_deep"
    );
}

#[test]
fn json_nesting_and_size_are_refused_before_they_are_read() {
    let mut deep = json!({"type": "has_identifier", "kind": "email"});
    for _ in 0..130 {
        deep = json!({"type": "not", "not": deep});
    }
    assert_eq!(from_json(&deep).unwrap_err().code, "audience_too_deep");
    let mut deep = json!({"type": "has_identifier", "kind": "email"});
    for _ in 0..MAX_DEPTH + 1 {
        deep = json!({"type": "or", "any": [deep]});
    }
    assert_eq!(from_json(&deep).unwrap_err().code, "audience_too_deep");
    let many = vec![json!({"type": "has_identifier", "kind": "email"}); MAX_CONDITIONS];
    let e = from_json(&json!({"type": "or", "any": many})).unwrap_err();
    assert_eq!(e.code, "audience_too_large");
    let text = vec!["has email"; MAX_CONDITIONS].join(" or ");
    assert_eq!(parse(&text).unwrap_err().code, "audience_too_large");
    let long = format!("trait x = \"{}\"", "y".repeat(MAX_TEXT_BYTES));
    assert_eq!(parse(&long).unwrap_err().code, "audience_too_large");
}

#[test]
fn windows_and_ages_beyond_ten_thousand_years_are_refused() {
    for text in [
        r#"did "Order Completed" within 15250284452 weeks"#,
        "trait signed_up_at after 106751991167 days ago",
        "trait signed_up_at before 3652426 days ago",
        r#""A" then "B" within 99999999999 days"#,
        "seen on web within 999999999999999999 milliseconds",
    ] {
        let e = parse(text).unwrap_err();
        assert_eq!(e.code, "duration_out_of_range", "{text}: {e}");
    }
    let e = parse(r#"did "Order Completed" within 15250284452 weeks"#).unwrap_err();
    assert_eq!(e.column, 30, "points at the number: {e}");
    assert!(parse("trait signed_up_at before 3652425 days ago").is_ok());
    for bad in [
        json!({"type": "event", "event": "E", "did": true,
               "window": {"kind": "within", "ms": i64::MAX}}),
        json!({"type": "trait", "name": "t", "test": {"op": "after_ago", "ms": i64::MAX - 1}}),
        json!({"type": "funnel", "steps": [{"event": "a"}, {"event": "b"}], "within_ms": i64::MAX}),
        json!({"type": "seen_on", "channel": "web",
               "window": {"kind": "between", "from": -1, "to": 5}}),
    ] {
        assert_eq!(
            from_json(&bad).unwrap_err().code,
            "duration_out_of_range",
            "{bad}"
        );
    }
}

/// Found by fuzzing: a number whose float printed back as another float (fixed by reading
/// floats exactly).
#[test]
fn long_numbers_print_back_as_the_same_number() {
    round_trips(
        &parse(r#"did "Order Completed" where total > 20555555555555555555555555555555555555555555555550"#)
            .unwrap(),
    );
}

/// An audience that refers, directly or through others, to one that is not there is left
/// out; the rest are kept.
#[test]
fn audiences_missing_what_they_refer_to_are_left_out_alone() {
    let of = |t: &str| parse(t).unwrap();
    let (a, b, c, d) = (
        of(r#"in audience "gone""#),
        of(r#"in audience "a" or has email"#),
        of("has phone"),
        of(r#"in audience "c""#),
    );
    let all = [("a", &a), ("b", &b), ("c", &c), ("d", &d)];
    let r = resolvable(&all);
    let kept: Vec<&str> = r.kept.iter().map(|(id, _)| *id).collect();
    assert_eq!(kept, ["c", "d"]);
    assert_eq!(
        r.dangling,
        [("a", "gone".to_string()), ("b", "a".to_string())]
    );
    assert_eq!(evaluation_order(&r.kept).unwrap(), ["c", "d"]);
}

/// Found by fuzzing: the JSON form can spell an `and` of one condition, which the text form
/// reads as that condition; both now read as the same tree.
#[test]
fn groups_of_one_condition_read_as_that_condition() {
    let single = json!({"type": "and", "all": [
        {"type": "or", "any": [{"type": "trait", "name": "plan", "test": {"op": "eq", "value": "gold"}}]},
        {"type": "not", "not": {"type": "and", "all": [{"type": "has_identifier", "kind": "email"}]}}
    ]});
    let c = from_json(&single).unwrap();
    assert_eq!(
        c,
        parse(r#"trait plan = "gold" and not has email"#).unwrap()
    );
    round_trips(&c);
    let one = json!({"type": "and", "all": [{"type": "has_identifier", "kind": "email"}]});
    assert_eq!(from_json(&one).unwrap(), parse("has email").unwrap());
}

/// Found by fuzzing: the JSON form took values the text form cannot write.
#[test]
fn tests_compare_with_values_the_text_form_writes() {
    for bad in [
        json!({"type": "trait", "name": "t", "test": {"op": "eq", "value": {"kind": "within"}}}),
        json!({"type": "trait", "name": "t", "test": {"op": "gt", "value": [1]}}),
        json!({"type": "trait", "name": "t", "test": {"op": "in", "values": []}}),
        json!({"type": "trait", "name": "t", "test": {"op": "in", "values": [1, [2]]}}),
        json!({"type": "event", "event": "E", "did": true,
               "where": [{"property": "p", "test": {"op": "ne", "value": {}}}]}),
    ] {
        let e = from_json(&bad).unwrap_err();
        assert_eq!(e.code, "invalid_audience", "{bad}");
    }
    let fine =
        json!({"type": "trait", "name": "t", "test": {"op": "in", "values": [1, "a", null, true]}});
    round_trips(&from_json(&fine).unwrap());
}

/// `contains` on a list holds its text, or a number that reads as it (TCF vendor ids).
#[test]
fn contains_finds_text_and_numbers_in_lists() {
    use super::eval::test_value;
    let has = |v: Value, want: &str| {
        test_value(
            Some(&v),
            &Test::Contains {
                value: want.to_string(),
            },
            0,
        )
        .0
    };
    assert!(has(json!([1, 755, 1001]), "755"));
    assert!(!has(json!([1, 7550]), "755"));
    assert!(has(json!(["vip", "755"]), "755"));
    assert!(!has(json!([{"id": 755}]), "755"));
    assert!(has(json!("vendor 755"), "755"));
    assert!(!has(json!(755), "755"), "a number is not a list");
}
