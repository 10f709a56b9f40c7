use std::cell::RefCell;
use std::collections::BTreeSet;

use proptest::prelude::*;
use serde_json::{json, Value};

use super::machine::{self, draw, Fact, History};
use super::*;
use crate::audience::Condition;
use crate::time::{parse_timestamp, Millis};

/// The abandoned-cart journey exactly as the product brief gives it.
const ABANDONED_CART: &str = r#"id: abandoned-cart
name: Abandoned cart
status: live
priority: 50
entry:
  event: Product Added
  key: properties.cart_id        # one run per cart
  reentry: after_exit
goal:
  event: Order Completed         # on any channel, in a store too; ends the run at once
exit_if: not consented(email, marketing)
steps:
  - id: wait
    wait: 1h
  - id: reminder
    send:
      channel: email
      subject: "{{ traits.first_name | default: 'Hello' }}, your cart is waiting"
      html: "<p>You left {{ event.properties.name }} in your cart.</p>"
      text: "You left {{ event.properties.name }} in your cart."
  - id: opened
    wait_for:
      event: Email Opened
      timeout: 1d
    on_timeout: sms
    on_event: end
  - id: sms
    send:
      channel: sms
      text: "Your cart is waiting: {{ event.properties.name }}"
"#;

const DOCS: &str = include_str!("../../../../docs/journeys.md");

fn first_yaml_block(md: &str) -> &str {
    let start = md
        .find("```yaml\n")
        .expect("docs/journeys.md has a yaml example")
        + 8;
    let end = start + md[start..].find("```").expect("the block ends");
    &md[start..end]
}

fn t(s: &str) -> Millis {
    parse_timestamp(s).unwrap()
}

const H: Millis = 3_600_000;
const D: Millis = 24 * H;

#[test]
fn the_abandoned_cart_document_reads_as_written_and_opens_the_docs() {
    assert_eq!(first_yaml_block(DOCS), ABANDONED_CART);
    let j = read(ABANDONED_CART).unwrap();
    assert_eq!(j.id, "abandoned-cart");
    assert_eq!(j.name, "Abandoned cart");
    assert_eq!(j.status, Status::Live);
    assert_eq!(j.priority, 50);
    assert_eq!(
        j.entry.trigger,
        Trigger::Event {
            event: "Product Added".into(),
            filters: vec![]
        }
    );
    assert_eq!(j.entry.key.as_deref(), Some("properties.cart_id"));
    assert_eq!(j.entry.reentry, Reentry::AfterExit);
    assert_eq!(
        j.goal,
        Some(Goal::Event {
            event: "Order Completed".into(),
            filters: vec![]
        })
    );
    assert_eq!(
        j.exit_if.as_ref().unwrap().to_string(),
        "not consent marketing:email granted"
    );
    let ids: Vec<&str> = j.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["wait", "reminder", "opened", "sms"]);
    assert_eq!(j.steps[0].action, Action::Wait { ms: H });
    let Action::Send(m) = &j.steps[1].action else {
        panic!()
    };
    assert_eq!(m.channel, MessageChannel::Email);
    assert_eq!(m.purpose, "marketing");
    assert_eq!(
        m.subject.as_deref(),
        Some("{{ traits.first_name | default: 'Hello' }}, your cart is waiting")
    );
    assert_eq!(
        j.steps[2].action,
        Action::WaitFor {
            event: "Email Opened".into(),
            filters: vec![],
            timeout_ms: D,
            on_event: Target::End,
            on_timeout: Target::Step("sms".into()),
        }
    );
    // The stored JSON form reads back to the same journey.
    let back: Journey = serde_json::from_value(doc::to_json(&j)).unwrap();
    assert_eq!(back, j);
}

#[test]
fn json_documents_are_accepted_too() {
    let j = read(
        r#"{"id": "welcome", "entry": {"event": "Signed Up"},
            "steps": [{"id": "hello", "send": {"channel": "email", "subject": "Hi", "text": "Welcome"}}]}"#,
    )
    .unwrap();
    assert_eq!(j.status, Status::Draft);
    assert_eq!(j.name, "welcome");
    assert_eq!(j.entry.reentry, Reentry::AfterExit);
}

#[test]
fn durations_write_as_they_read() {
    use crate::journey::doc::{duration, format_duration};
    for text in ["1d", "1d12h", "30m", "90s", "2d3h4m5s"] {
        let ms = duration(text).unwrap();
        assert_eq!(duration(&format_duration(ms)).unwrap(), ms, "{text}");
    }
    assert_eq!(format_duration(duration("90s").unwrap()), "1m30s");
    assert_eq!(format_duration(36 * 3_600_000), "1d12h");
    assert_eq!(format_duration(0), "0s");
}

#[test]
fn durations() {
    assert_eq!(doc::duration("90s"), Ok(90_000));
    assert_eq!(doc::duration("30m"), Ok(1_800_000));
    assert_eq!(doc::duration("1h"), Ok(H));
    assert_eq!(doc::duration("2d"), Ok(2 * D));
    assert_eq!(doc::duration("1h30m"), Ok(H + 1_800_000));
    for bad in [
        "",
        "1",
        "h",
        "1w",
        "-1h",
        "0m",
        "1.5h",
        "99999999999999999999d",
    ] {
        assert!(doc::duration(bad).is_err(), "{bad}");
    }
    assert!(doc::duration("3652426d")
        .unwrap_err()
        .contains("10,000 years"));
}

fn problems(text: &str) -> Vec<(usize, usize, String)> {
    read(text)
        .unwrap_err()
        .into_iter()
        .map(|p| (p.at.line, p.at.column, p.message))
        .collect()
}

#[test]
fn errors_point_at_line_and_column() {
    let broken = ABANDONED_CART
        .replace("wait: 1h", "wait: 1 hour")
        .replace("on_timeout: sms", "on_timeout: sms2")
        .replace("channel: sms", "channel: fax")
        .replace("reentry: after_exit", "reentry: sometimes")
        .replace(
            "exit_if: not consented(email, marketing)",
            "exit_if: not consented(email marketing)",
        );
    let p = problems(&broken);
    let at: Vec<(usize, usize)> = p.iter().map(|(l, c, _)| (*l, *c)).collect();
    assert_eq!(
        at,
        [(8, 12), (11, 30), (14, 11), (25, 17), (29, 16)],
        "{p:#?}"
    );
    assert!(p[0].2.contains("never"), "{}", p[0].2);
    assert!(p[1].2.contains("expected `,`"), "{}", p[1].2);
    assert!(p[2].2.contains("not a duration"), "{}", p[2].2);
    assert!(p[3].2.contains("no step `sms2`"), "{}", p[3].2);
    assert!(p[4].2.contains("`fax`"), "{}", p[4].2);
}

#[test]
fn refusals_name_what_to_do() {
    let cases: &[(&str, &str)] = &[
        ("id: x\nentry: {event: A}\nsteps: []\n", "at least one step"),
        ("id: x\nentry: {event: A, audience: b}\nsteps: [{id: a, exit: true}]\n", "one of"),
        ("id: x\nentry: {event: A}\nsteps: [{id: a, wiat: 1h}]\n", "did you mean `wait`"),
        ("id: x\nentry: {event: A}\nsteps: [{id: a, wait: 1h, send: {channel: sms, text: x}}]\n", "one action"),
        ("id: x\nentry: {event: A}\nsteps: [{id: a, wait: 1h, next: a}]\n", "only go forward"),
        ("id: x\nentry: {event: A}\nsteps: [{id: a, wait: 1h}, {id: a, wait: 2h}]\n", "used twice"),
        ("id: x\nentry: {event: A}\nsteps: [{id: end, wait: 1h}]\n", "cannot be called `end`"),
        ("id: x y\nentry: {event: A}\nsteps: [{id: a, wait: 1h}]\n", "letters, digits"),
        ("id: x\nentry: {event: A}\nsteps: [{id: a, send: {channel: email, text: x}}]\n", "needs `subject`"),
        ("id: x\nentry: {event: A}\nsteps: [{id: a, send: {channel: sms}}]\n", "needs `text`"),
        ("id: x\nentry: {event: A}\nsteps: [{id: a, send: {channel: sms, text: x, fallback: email}}]\n", "for its email fallback"),
        ("id: x\nentry: {event: A}\nsteps: [{id: a, send: {channel: email, subject: s, html: h, fallback: [sms]}}]\n", "`text` for its SMS or push fallback"),
        ("id: x\nentry: {event: A}\nsteps: [{id: a, send: {channel: sms, text: x, subject: s}}]\n", "unless it falls back to email"),
        ("id: x\nentry: {event: A}\nsteps: [{id: a, send: {channel: email, subject: s, text: t, title: x, fallback: sms}}]\n", "`title` is for push"),
        ("id: x\nentry: {event: A}\nsteps: [{id: a, send: {channel: email, subject: s, text: t, variants: {sms: {text: x}}}}]\n", "never goes out on sms"),
        ("id: x\nentry: {event: A}\nsteps: [{id: a, send: {channel: push, text: t, fallback: sms, variants: {sms: {subject: x}}}}]\n", "unknown key `subject`"),
        ("id: x\nentry: {event: A}\nsteps: [{id: a, send: {channel: push, text: t, fallback: email, variants: {email: {html: h}}}}]\n", "for its email fallback"),
        ("id: x\nentry: {event: A}\nsteps: [{id: a, send: {channel: sms, text: t, variants: {fax: {text: x}}}}]\n", "named after a channel"),
        ("id: x\nentry: {event: A}\ntimezone: Mars/Olympus\nsteps: [{id: a, wait: 1h}]\n", "not a time zone"),
        ("id: x\nentry: {event: A}\nholdout: 120%\nsteps: [{id: a, wait: 1h}]\n", "percentage"),
        ("id: x\nentry: {event: A}\npriority: 101\nsteps: [{id: a, wait: 1h}]\n", "0 to 100"),
        ("id: x\nentry: {event: A}\nsteps: [{id: a, wait_until: {time: '25:00'}}]\n", "time of day"),
        ("id: x\nentry: {event: A}\nsteps: [{id: a, split: [{variant: a, weight: 1}]}]\n", "2 to 10"),
        ("id: x\nentry: {event: A, where: 'total >'}\nsteps: [{id: a, wait: 1h}]\n", "expected a value"),
        ("id: x\nentry: {audience: vip, key: properties.id}\nsteps: [{id: a, wait: 1h}]\n", "`event` and `api`"),
        ("id: x\nentry: {event: A}\nsteps: [{id: a, webhook: {url: 'ftp://x'}}]\n", "https://"),
        ("id: x\nentry: {event: A}\nquiet_hours: {from: '21:00', to: '21:00'}\nsteps: [{id: a, wait: 1h}]\n", "same time"),
        ("- a\n- b\n", "must be a mapping"),
    ];
    for (text, expected) in cases {
        let p = problems(text);
        assert!(
            p.iter().any(|(_, _, m)| m.contains(expected)),
            "{text}: expected `{expected}` in {p:#?}"
        );
        assert!(p.iter().all(|(l, c, _)| *l >= 1 && *c >= 1), "{p:?}");
    }
}

#[test]
fn every_step_kind_reads() {
    let j = read(
        r#"
id: everything
status: live
priority: 80
holdout: 10%
timezone: Europe/Paris
quiet_hours: {from: "21:00", to: "08:00", then: drop}
entry:
  event: Order Completed
  where: total > 100, currency = "EUR"
  key: properties.order_id
  reentry: {cooldown: 7d}
  cap: 1000
  if: has email
goal:
  if: computed orders_90d >= 2
exit_if: consent marketing withdrawn
steps:
  - id: morning
    wait_until: {time: "09:00", days: [mon, tue, wed, thu, fri]}
  - id: birthday
    wait_until: {trait: birthday, offset: -1d, time: "10:00"}
  - id: vip
    branch: {if: 'in audience "vip"', then: ab, else: tag}
  - id: ab
    split:
      - {variant: a, weight: 50, next: push}
      - {variant: b, weight: 50}
  - id: tag
    update_trait: {name: reviewed, value: true}
  - id: push
    send: {channel: push, title: Thanks, text: "Thanks!", purpose: transactional, fallback: [sms, email], fallback_after: 30m}
  - id: hook
    webhook: {url: "https://example.com/hook", body: '{"id": "{{ profile.id }}"}'}
  - id: ads
    ad_audience: {destination: meta-buyers, action: remove}
  - id: bye
    exit: true
"#,
    )
    .unwrap();
    assert_eq!(j.holdout_bp, 1000);
    assert_eq!(j.entry.reentry, Reentry::Cooldown { ms: 7 * D });
    assert_eq!(j.entry.cap, Some(1000));
    assert!(matches!(&j.entry.trigger, Trigger::Event { filters, .. } if filters.len() == 2));
    assert!(matches!(&j.goal, Some(Goal::Condition { .. })));
    assert_eq!(
        j.steps[1].action,
        Action::WaitUntil {
            time: Some(LocalTime { minute_of_day: 600 }),
            days: vec![],
            date_trait: Some("birthday".into()),
            offset_ms: -D
        }
    );
    let Action::Split { variants } = &j.steps[3].action else {
        panic!()
    };
    // Without `next`, a variant goes to the following step.
    assert_eq!(variants[1].next, Target::Step("tag".into()));
    let Action::Send(m) = &j.steps[5].action else {
        panic!()
    };
    assert_eq!(m.fallback, [MessageChannel::Sms, MessageChannel::Email]);
    assert_eq!(m.fallback_after_ms, Some(1_800_000));
    assert!(j.quiet_hours.unwrap().drop);
    assert_eq!(j.after(8), Target::End);
}

/// A customer for the machine: conditions hold when their text is in `holding`.
#[derive(Default)]
struct Customer {
    holding: RefCell<BTreeSet<String>>,
    tz: Option<String>,
    birthday: Option<Value>,
    global_control: bool,
}

impl Customer {
    fn set(&self, condition: &str, holds: bool) {
        let text = crate::audience::parse(condition).unwrap().to_string();
        if holds {
            self.holding.borrow_mut().insert(text);
        } else {
            self.holding.borrow_mut().remove(&text);
        }
    }
}

impl Look for Customer {
    fn holds(&self, c: &Condition) -> bool {
        match c {
            Condition::Not { not } => !self.holds(not),
            c => self.holding.borrow().contains(&c.to_string()),
        }
    }
    fn time_zone(&self) -> Option<String> {
        self.tz.clone()
    }
    fn trait_value(&self, name: &str) -> Option<Value> {
        (name == "birthday")
            .then(|| self.birthday.clone())
            .flatten()
    }
    fn in_global_control(&self) -> bool {
        self.global_control
    }
}

fn consenting() -> Customer {
    let c = Customer::default();
    c.set("consent marketing:email granted", true);
    c
}

fn sends(effects: &[Effect]) -> Vec<&str> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { step, .. } => Some(step.as_str()),
            _ => None,
        })
        .collect()
}

fn ev<'a>(name: &'a str, props: &'a Value, at: Millis) -> Input<'a> {
    Input::Event(Fact {
        name,
        properties: props,
        at,
    })
}

fn cart(j: &Journey, who: &Customer, at: Millis) -> (Run, Vec<Effect>) {
    let props = json!({"cart_id": "c1", "name": "Red shoes"});
    assert!(machine::triggers(
        j,
        Fact {
            name: "Product Added",
            properties: &props,
            at
        },
        at
    ));
    assert_eq!(admit(j, History::default(), at, who), Admission::Enter);
    let key = machine::entry_key(j, &json!({"properties": props})).unwrap();
    assert_eq!(key, "c1");
    enter(j, 1, "r1".into(), "p1".into(), key, props, at, who)
}

#[test]
fn abandoned_cart_sends_the_email_then_the_sms_on_timeout() {
    let j = read(ABANDONED_CART).unwrap();
    let who = consenting();
    let t0 = t("2026-11-27T10:00:00Z");
    let (run, fx) = cart(&j, &who, t0);
    assert_eq!(fx.last(), Some(&Effect::Timer { at: t0 + H }));
    // A timer for another moment (left over from an earlier wait) moves nothing.
    let (run, fx) = step(&j, run, Input::Timer { due: t0 + 5 }, t0 + H, &who);
    assert!(fx.is_empty());
    let (run, fx) = step(&j, run, Input::Timer { due: t0 + H }, t0 + H, &who);
    assert_eq!(sends(&fx), ["reminder"]);
    assert!(fx.contains(&Effect::Send {
        step: "reminder".into(),
        key: "r1:reminder:2".into()
    }));
    assert_eq!(fx.last(), Some(&Effect::Timer { at: t0 + H + D }));
    let (run, fx) = step(&j, run, Input::Timer { due: t0 + H + D }, t0 + H + D, &who);
    assert_eq!(sends(&fx), ["sms"]);
    assert!(matches!(
        run.state,
        RunState::Done {
            outcome: Outcome::Completed,
            ..
        }
    ));
    assert_eq!(run.sends, 2);
}

#[test]
fn an_open_ends_the_run_and_a_purchase_mid_wait_cancels_the_email() {
    let j = read(ABANDONED_CART).unwrap();
    let who = consenting();
    let t0 = t("2026-11-27T10:00:00Z");
    let none = json!({});
    // Opened the email: the run ends without the SMS.
    let (run, _) = cart(&j, &who, t0);
    let (run, _) = step(&j, run, Input::Timer { due: t0 + H }, t0 + H, &who);
    let (run, fx) = step(
        &j,
        run,
        ev("Email Opened", &none, t0 + 2 * H),
        t0 + 2 * H,
        &who,
    );
    assert!(sends(&fx).is_empty());
    assert!(matches!(
        run.state,
        RunState::Done {
            outcome: Outcome::Completed,
            ..
        }
    ));

    // The open of another run's email (another cart, another journey) is not hers to wait
    // for; the open of this run's email is.
    let (run, _) = cart(&j, &who, t0);
    let (run, _) = step(&j, run, Input::Timer { due: t0 + H }, t0 + H, &who);
    let other = json!({"message_key": "r9:reminder:2", "run": "r9", "journey": "abandoned-cart"});
    let (run, fx) = step(
        &j,
        run,
        ev("Email Opened", &other, t0 + 2 * H),
        t0 + 2 * H,
        &who,
    );
    assert!(fx.is_empty(), "{fx:?}");
    assert!(matches!(run.state, RunState::Waiting { .. }));
    let own = json!({"message_key": "r1:reminder:2", "run": "r1", "journey": "abandoned-cart"});
    let (run, _) = step(
        &j,
        run,
        ev("Email Opened", &own, t0 + 3 * H),
        t0 + 3 * H,
        &who,
    );
    assert!(matches!(
        run.state,
        RunState::Done {
            outcome: Outcome::Completed,
            ..
        }
    ));

    // Bought in a shop at 10:05: the 11:00 email never goes.
    let (run, _) = cart(&j, &who, t0);
    let (run, fx) = step(
        &j,
        run,
        ev("Order Completed", &none, t0 + 300_000),
        t0 + 300_000,
        &who,
    );
    assert!(fx.contains(&Effect::ClearTimer));
    assert!(fx.contains(&Effect::Converted {
        variant: None,
        holdout: false
    }));
    assert!(matches!(
        run.state,
        RunState::Done {
            outcome: Outcome::Goal,
            ..
        }
    ));
    let (_, fx) = step(&j, run, Input::Timer { due: t0 + H }, t0 + H, &who);
    assert!(fx.is_empty());

    // A purchase dated before she entered is not a conversion of this run.
    let (run, _) = cart(&j, &who, t0);
    let (run, fx) = step(&j, run, ev("Order Completed", &none, t0 - 1), t0 + 1, &who);
    assert!(fx.is_empty());
    assert!(matches!(run.state, RunState::Waiting { .. }));
}

#[test]
fn withdrawing_consent_exits_at_once() {
    let j = read(ABANDONED_CART).unwrap();
    let who = consenting();
    let t0 = t("2026-11-27T10:00:00Z");
    let (run, _) = cart(&j, &who, t0);
    who.set("consent marketing:email granted", false);
    let (run, fx) = step(&j, run, Input::Changed, t0 + 60_000, &who);
    assert!(matches!(
        run.state,
        RunState::Done {
            outcome: Outcome::Exited { .. },
            ..
        }
    ));
    assert!(fx.contains(&Effect::ClearTimer));
    // Without consent she does not enter at all.
    assert_eq!(
        admit(&j, History::default(), t0, &who),
        Admission::Refused("exit_condition_holds")
    );
}

#[test]
fn reentry_rules_and_caps() {
    let mut j = read(ABANDONED_CART).unwrap();
    let who = consenting();
    let t0 = t("2026-11-27T10:00:00Z");
    let ran = History {
        active: false,
        last_entered: Some(t0),
        total_entries: 1,
    };
    assert_eq!(admit(&j, ran, t0 + 1, &who), Admission::Enter);
    assert_eq!(
        admit(
            &j,
            History {
                active: true,
                ..ran
            },
            t0 + 1,
            &who
        ),
        Admission::Refused("already_in_journey")
    );
    j.entry.reentry = Reentry::Never;
    assert_eq!(
        admit(&j, ran, t0 + 1, &who),
        Admission::Refused("reentry_never")
    );
    j.entry.reentry = Reentry::Cooldown { ms: D };
    assert_eq!(
        admit(&j, ran, t0 + D - 1, &who),
        Admission::Refused("reentry_cooldown")
    );
    assert_eq!(admit(&j, ran, t0 + D, &who), Admission::Enter);
    j.entry.cap = Some(1);
    assert_eq!(
        admit(&j, ran, t0 + D, &who),
        Admission::Refused("entry_cap_reached")
    );
    j.status = Status::Draft;
    assert_eq!(
        admit(&j, History::default(), t0, &who),
        Admission::Refused("journey_not_live")
    );
    // An old event (history being imported) enters no one; `entry.max_age` says how old.
    let props = json!({});
    let old = Fact {
        name: "Product Added",
        properties: &props,
        at: t0 - D - 1,
    };
    assert!(!machine::triggers(&j, old, t0));
    assert!(machine::triggers(&j, Fact { at: t0 - D, ..old }, t0));
    let week =
        read(&ABANDONED_CART.replace("reentry: after_exit", "reentry: after_exit\n  max_age: 7d"))
            .unwrap();
    assert!(machine::triggers(&week, old, t0));
    // An event without the key cannot enter a keyed journey.
    assert_eq!(machine::entry_key(&j, &json!({"properties": {}})), None);
    assert_eq!(
        machine::entry_key(&j, &json!({"properties": {"cart_id": 7}})).as_deref(),
        Some("7")
    );
}

#[test]
fn holdout_and_splits_are_sticky_and_near_their_shares() {
    let mut j = read(
        "id: ab\nstatus: live\nholdout: 10%\nentry: {api: true}\nsteps:\n  - id: s\n    split:\n      - {variant: a, weight: 1, next: m}\n      - {variant: b, weight: 3, next: m}\n  - id: m\n    send: {channel: sms, text: hi}\n",
    )
    .unwrap();
    let who = consenting();
    let (mut held, mut a) = (0, 0);
    for i in 0..10_000 {
        let p = format!("p{i}");
        let (run, fx) = enter(
            &j,
            1,
            format!("r{i}"),
            p.clone(),
            String::new(),
            Value::Null,
            0,
            &who,
        );
        let (again, _) = enter(
            &j,
            1,
            format!("x{i}"),
            p,
            String::new(),
            Value::Null,
            5,
            &who,
        );
        assert_eq!((run.holdout, &run.variant), (again.holdout, &again.variant));
        if run.holdout {
            held += 1;
            assert!(sends(&fx).is_empty());
        } else {
            assert_eq!(sends(&fx), ["m"]);
        }
        if run.variant.as_deref() == Some("a") {
            a += 1;
        }
    }
    assert!((900..1100).contains(&held), "{held}");
    assert!((2300..2700).contains(&a), "{a}");
    j.holdout_bp = 0;
    assert!(!machine::in_holdout(&j, "p1"));
    // Draws differ by every part.
    assert_ne!(draw(&["a", "bc"], u64::MAX), draw(&["ab", "c"], u64::MAX));
}

/// A customer in the workspace's global control group goes through every journey held out,
/// whatever the journey's own holdout, is sent nothing (no message, webhook or ad audience),
/// and her conversion counts for the global control group.
#[test]
fn the_global_control_group_is_sent_nothing_by_any_journey() {
    let j = read(
        "id: g\nstatus: live\nentry: {api: true}\ngoal: {event: Order Completed}\nsteps:\n  - id: m\n    send: {channel: sms, text: hi}\n  - id: hook\n    webhook: {url: 'https://example.com/h'}\n  - id: ads\n    ad_audience: {destination: meta-buyers, action: add}\n  - id: w\n    wait: 1d\n",
    )
    .unwrap();
    assert_eq!(j.holdout_bp, 0);
    let mut who = consenting();
    who.global_control = true;
    let start = |who: &Customer| {
        enter(
            &j,
            1,
            "r".into(),
            "p".into(),
            String::new(),
            Value::Null,
            0,
            who,
        )
    };
    let (run, fx) = start(&who);
    assert!(run.holdout && run.global_control);
    assert!(
        !fx.iter().any(|e| matches!(
            e,
            Effect::Send { .. } | Effect::Webhook { .. } | Effect::AdAudience { .. }
        )),
        "{fx:?}"
    );
    let held: Vec<&str> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::Note { code, detail, .. } if code == "holdout" => Some(detail.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(held.len(), 3, "{fx:?}");
    assert!(
        held.iter()
            .all(|d| d.starts_with("in the global control group")),
        "{held:?}"
    );
    let props = json!({});
    let (_, fx) = step(&j, run, ev("Order Completed", &props, 10), 10, &who);
    assert!(fx.contains(&Effect::Converted {
        variant: None,
        holdout: true
    }));
    // Outside it, the same journey sends.
    who.global_control = false;
    let (run, fx) = start(&who);
    assert!(!run.holdout && !run.global_control);
    assert_eq!(sends(&fx), ["m"]);
    // A run read back from before the global control group existed is in none.
    let mut stored = serde_json::to_value(&run).unwrap();
    assert!(stored.get("global_control").is_none(), "{stored}");
    stored["holdout"] = json!(true);
    let back: Run = serde_json::from_value(stored).unwrap();
    assert!(back.holdout && !back.global_control);
}

#[test]
fn wait_until_uses_her_time_zone_and_date_traits() {
    let j = read(
        "id: w\nstatus: live\nentry: {api: true}\ntimezone: Europe/Paris\nsteps:\n  - id: morning\n    wait_until: {time: '09:00'}\n  - id: eve\n    wait_until: {trait: birthday, offset: -1d, time: '10:00'}\n  - id: m\n    send: {channel: sms, text: hi}\n",
    )
    .unwrap();
    let mut who = consenting();
    who.tz = Some("America/New_York".into());
    // A date without a time is a day on her calendar.
    who.birthday = Some(json!("2026-12-25"));
    let t0 = t("2026-11-27T20:00:00Z"); // 15:00 in New York
    let (run, fx) = enter(
        &j,
        1,
        "r".into(),
        "p".into(),
        String::new(),
        Value::Null,
        t0,
        &who,
    );
    // 09:00 in New York the next day.
    let morning = t("2026-11-28T14:00:00Z");
    assert_eq!(fx.last(), Some(&Effect::Timer { at: morning }));
    let (run, fx) = step(&j, run, Input::Timer { due: morning }, morning, &who);
    // The day before her birthday, at 10:00 New York.
    assert_eq!(
        fx.last(),
        Some(&Effect::Timer {
            at: t("2026-12-24T15:00:00Z")
        })
    );
    let _ = run;
    // Without a zone on her profile, the journey's applies.
    who.tz = None;
    let (_, fx) = enter(
        &j,
        1,
        "r".into(),
        "p".into(),
        String::new(),
        Value::Null,
        t0,
        &who,
    );
    assert_eq!(
        fx.last(),
        Some(&Effect::Timer {
            at: t("2026-11-28T08:00:00Z")
        })
    );
    // A birthday without a date: the step is passed, with the reason.
    who.birthday = None;
    let (run, _) = enter(
        &j,
        1,
        "r".into(),
        "p".into(),
        String::new(),
        Value::Null,
        t0,
        &who,
    );
    let (_, fx) = step(
        &j,
        run,
        Input::Timer {
            due: t("2026-11-28T08:00:00Z"),
        },
        t("2026-11-28T08:00:00Z"),
        &who,
    );
    assert!(fx
        .iter()
        .any(|e| matches!(e, Effect::Note { code, .. } if code == "missing_trait")));
    assert_eq!(sends(&fx), ["m"]);
}

// ---- property test: any interleaving of events, timers and profile changes ----

const EVENTS: [&str; 4] = [
    "Order Completed",
    "Email Opened",
    "Product Viewed",
    "Link Clicked",
];

fn arb_journey() -> impl Strategy<Value = Journey> {
    // Up to 8 steps; each picks a kind and, where it chooses a target, a later step or the end.
    let step = (0u8..8, any::<u8>(), any::<u8>(), 0usize..4, 1i64..72);
    (
        proptest::collection::vec(step, 1..8),
        any::<bool>(),
        any::<bool>(),
        0u16..5000,
    )
        .prop_map(|(specs, goal_event, exit, holdout_bp)| {
            let n = specs.len();
            let target = |i: usize, pick: u8| -> Target {
                let later = n - i; // choices: steps i+1..n, or the end
                let k = usize::from(pick) % later;
                if i + 1 + k < n {
                    Target::Step(format!("s{}", i + 1 + k))
                } else {
                    Target::End
                }
            };
            let steps = specs
                .iter()
                .enumerate()
                .map(|(i, (kind, a, b, ev, hours))| {
                    let action = match kind {
                        0 => Action::Wait { ms: hours * H },
                        1 => Action::WaitFor {
                            event: EVENTS[*ev].into(),
                            filters: vec![],
                            timeout_ms: hours * H,
                            on_event: target(i, *a),
                            on_timeout: target(i, *b),
                        },
                        2 => Action::Branch {
                            condition: crate::audience::parse("has email").unwrap(),
                            then: target(i, *a),
                            otherwise: target(i, *b),
                        },
                        3 => Action::Split {
                            variants: vec![
                                Variant {
                                    name: "a".into(),
                                    weight: 1,
                                    next: target(i, *a),
                                },
                                Variant {
                                    name: "b".into(),
                                    weight: 1,
                                    next: target(i, *b),
                                },
                            ],
                        },
                        4 | 5 => Action::Send(Message {
                            channel: MessageChannel::Email,
                            purpose: "marketing".into(),
                            subject: Some("s".into()),
                            html: None,
                            text: Some("t".into()),
                            title: None,
                            fallback: vec![],
                            fallback_after_ms: None,
                            variants: Default::default(),
                        }),
                        6 => Action::Webhook {
                            url: "https://x".into(),
                            body: None,
                            purpose: "marketing".into(),
                        },
                        _ => Action::Exit,
                    };
                    Step {
                        id: format!("s{i}"),
                        action,
                        next: None,
                    }
                })
                .collect();
            Journey {
                id: "j".into(),
                name: "j".into(),
                status: Status::Live,
                priority: 50,
                entry: Entry {
                    trigger: Trigger::Api,
                    key: None,
                    reentry: Reentry::AfterExit,
                    cap: None,
                    condition: None,
                    max_age_ms: DEFAULT_MAX_AGE_MS,
                },
                goal: Some(if goal_event {
                    Goal::Event {
                        event: "Order Completed".into(),
                        filters: vec![],
                    }
                } else {
                    Goal::Condition {
                        condition: crate::audience::parse("in audience \"buyers\"").unwrap(),
                    }
                }),
                exit_if: exit
                    .then(|| crate::audience::parse("consent marketing withdrawn").unwrap()),
                holdout_bp,
                quiet_hours: None,
                timezone: None,
                in_flight: InFlight::Stay,
                steps,
            }
        })
}

#[derive(Debug, Clone)]
enum Move {
    Event(usize),
    /// The run's own timer, when it has one.
    OwnTimer,
    /// A stray timer for some other moment.
    StrayTimer(i64),
    Toggle(usize),
    Changed,
    Later(i64),
}

fn arb_moves() -> impl Strategy<Value = Vec<Move>> {
    let one = prop_oneof![
        (0usize..4).prop_map(Move::Event),
        Just(Move::OwnTimer),
        (0i64..100).prop_map(Move::StrayTimer),
        (0usize..3).prop_map(Move::Toggle),
        Just(Move::Changed),
        (0i64..100).prop_map(Move::Later),
    ];
    proptest::collection::vec(one, 0..40)
}

const TOGGLES: [&str; 3] = [
    "has email",
    "in audience \"buyers\"",
    "consent marketing withdrawn",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn a_run_never_acts_after_its_goal_and_sends_at_most_once_per_send_step(
        j in arb_journey(),
        moves in arb_moves(),
        profile in "[a-z]{1,8}",
    ) {
        let who = Customer::default();
        let mut now = t("2026-11-27T10:00:00Z");
        let send_steps = j.steps.iter().filter(|s| matches!(s.action, Action::Send(_))).count();
        let (mut run, fx) = enter(&j, 1, "r".into(), profile, String::new(), Value::Null, now, &who);
        let mut all: Vec<Effect> = fx;
        let mut ended = all.iter().any(|e| matches!(e, Effect::Ended { .. }));
        let mut goal = false;
        let props = json!({});
        for m in moves {
            let input = match m {
                Move::Event(i) => Input::Event(Fact { name: EVENTS[i], properties: &props, at: now }),
                Move::OwnTimer => match run.state {
                    RunState::Waiting { until, .. } => {
                        now = now.max(until);
                        Input::Timer { due: until }
                    }
                    RunState::Done { .. } => Input::Timer { due: now },
                },
                Move::StrayTimer(x) => Input::Timer { due: now - x * 1000 },
                Move::Toggle(i) => {
                    let holds = who.holds(&crate::audience::parse(TOGGLES[i]).unwrap());
                    who.set(TOGGLES[i], !holds);
                    continue;
                }
                Move::Changed => Input::Changed,
                Move::Later(x) => { now += x * 60_000; continue; }
            };
            let before = run.clone();
            let (next, fx) = step(&j, run, input, now, &who);
            if ended {
                // An ended run never changes and never acts again.
                prop_assert!(fx.is_empty(), "effects after the end: {fx:?}");
                prop_assert_eq!(&next, &before);
            }
            if goal {
                prop_assert!(sends(&fx).is_empty());
            }
            goal |= fx.iter().any(|e| matches!(e, Effect::Converted { .. }));
            ended |= fx.iter().any(|e| matches!(e, Effect::Ended { .. }));
            if goal { prop_assert!(ended); }
            all.extend(fx);
            run = next;
        }
        let sent: Vec<&Effect> = all.iter().filter(|e| matches!(e, Effect::Send { .. })).collect();
        prop_assert!(sent.len() <= send_steps);
        prop_assert_eq!(run.sends as usize, sent.len());
        let keys: BTreeSet<String> = all.iter().filter_map(|e| match e {
            Effect::Send { key, .. } | Effect::Webhook { key, .. } => Some(key.clone()),
            _ => None,
        }).collect();
        let keyed = all.iter().filter(|e| matches!(e, Effect::Send { .. } | Effect::Webhook { .. })).count();
        prop_assert_eq!(keys.len(), keyed, "a key was used twice");
        let ends = all.iter().filter(|e| matches!(e, Effect::Ended { .. })).count();
        let conversions = all.iter().filter(|e| matches!(e, Effect::Converted { .. })).count();
        prop_assert!(ends <= 1);
        prop_assert!(conversions <= 1);
        if run.holdout {
            prop_assert!(sent.is_empty());
        }
    }

    #[test]
    fn replaying_the_same_inputs_gives_the_same_effects(
        j in arb_journey(),
        moves in arb_moves(),
    ) {
        let play = || {
            let who = Customer::default();
            let mut now = 1_000_000;
            let props = json!({});
            let (mut run, mut all) = enter(&j, 1, "r".into(), "p".into(), String::new(), Value::Null, now, &who);
            for m in &moves {
                let input = match m {
                    Move::Event(i) => Input::Event(Fact { name: EVENTS[*i], properties: &props, at: now }),
                    Move::OwnTimer | Move::StrayTimer(_) => match run.state {
                        RunState::Waiting { until, .. } => { now = now.max(until); Input::Timer { due: until } }
                        RunState::Done { .. } => continue,
                    },
                    Move::Toggle(i) => {
                        let holds = who.holds(&crate::audience::parse(TOGGLES[*i]).unwrap());
                        who.set(TOGGLES[*i], !holds);
                        continue;
                    }
                    Move::Changed => Input::Changed,
                    Move::Later(x) => { now += x * 60_000; continue; }
                };
                let (next, fx) = step(&j, run, input, now, &who);
                all.extend(fx);
                run = next;
            }
            (run, all)
        };
        prop_assert_eq!(play(), play());
    }

    #[test]
    fn reading_never_panics(text in "\\PC{0,400}") {
        let _ = read(&text);
    }

    #[test]
    fn mangled_examples_never_panic(cut in 0usize..800, junk in "[ :\\-\\[\\]{}#'\"a-z0-9\\n]{0,12}") {
        let mut s = ABANDONED_CART.to_string();
        let at = cut.min(s.len());
        let at = (0..=at).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
        s.insert_str(at, &junk);
        if let Err(problems) = read(&s) {
            prop_assert!(!problems.is_empty());
            for p in problems {
                prop_assert!(p.at.line >= 1 && p.at.column >= 1);
            }
        }
    }
}

#[test]
fn an_api_entry_is_an_event_naming_its_journey() {
    let j = read("id: vip-welcome\nentry: {api: true, key: properties.order_id}\nsteps: [{id: a, wait: 1h}]\n").unwrap();
    let t0 = t("2026-11-27T10:00:00Z");
    let mine = json!({"journey": "vip-welcome", "order_id": "o1"});
    let other = json!({"journey": "another", "order_id": "o1"});
    let fact = |name, properties, at| Fact {
        name,
        properties,
        at,
    };
    assert!(machine::triggers(
        &j,
        fact(machine::API_ENTRY_EVENT, &mine, t0),
        t0
    ));
    assert!(!machine::triggers(
        &j,
        fact(machine::API_ENTRY_EVENT, &other, t0),
        t0
    ));
    assert!(!machine::triggers(
        &j,
        fact("Order Completed", &mine, t0),
        t0
    ));
    // Too old to enter anyone (a replay of last month's calls sends nothing).
    assert!(!machine::triggers(
        &j,
        fact(machine::API_ENTRY_EVENT, &mine, t0 - 2 * D),
        t0
    ));
    assert_eq!(
        machine::entry_key(&j, &json!({"properties": mine})).as_deref(),
        Some("o1")
    );
}

#[test]
fn a_message_has_its_texts_per_channel() {
    let j = read("id: x\nentry: {event: A}\nsteps:\n  - id: a\n    send:\n      channel: push\n      title: Ready\n      text: Your order is ready\n      fallback: [sms, email]\n      variants:\n        sms: {text: 'Order ready. STOP to opt out'}\n        email: {subject: Your order is ready, html: '<p>Ready</p>'}\n").unwrap();
    let Action::Send(m) = &j.steps[0].action else {
        panic!("a send step")
    };
    let sms = m.on(MessageChannel::Sms);
    assert_eq!(sms.text.as_deref(), Some("Order ready. STOP to opt out"));
    let email = m.on(MessageChannel::Email);
    assert_eq!(email.subject.as_deref(), Some("Your order is ready"));
    assert_eq!(email.html.as_deref(), Some("<p>Ready</p>"));
    // What the variant does not give is the message's own.
    assert_eq!(email.text.as_deref(), Some("Your order is ready"));
    assert_eq!(m.on(MessageChannel::Push), *m);
}

#[test]
fn schedules_occur_every_period_and_at_each_customers_local_time() {
    let weekly = read(
        "id: s\nstatus: live\nentry:\n  schedule: {at: 2026-03-02T10:00:00Z, every: 7d}\nsteps: [{id: a, wait: 1h}]\n",
    )
    .unwrap();
    let trigger = &weekly.entry.trigger;
    let first = t("2026-03-02T10:00:00Z");
    const WEEK: Millis = 7 * 86_400_000;
    assert_eq!(machine::next_occurrence(trigger, first - 1), Some(first));
    assert_eq!(machine::next_occurrence(trigger, first), Some(first));
    assert_eq!(
        machine::next_occurrence(trigger, first + 1),
        Some(first + WEEK)
    );
    assert_eq!(
        machine::next_occurrence(trigger, first + 10 * WEEK - 5),
        Some(first + 10 * WEEK)
    );
    assert!(machine::is_occurrence(trigger, first + 3 * WEEK));
    assert!(!machine::is_occurrence(trigger, first + 3 * WEEK + 1));
    assert!(!machine::is_occurrence(trigger, first - WEEK));
    assert_eq!(
        machine::entry_instant(&weekly, first, &Customer::default()),
        first
    );
    // A one-shot: once, never again.
    let once = read(
        "id: o\nstatus: live\nentry: {schedule: {at: 2026-03-02}}\nsteps: [{id: a, wait: 1h}]\n",
    )
    .unwrap();
    let day = t("2026-03-02T00:00:00Z");
    assert_eq!(
        machine::next_occurrence(&once.entry.trigger, day),
        Some(day)
    );
    assert_eq!(machine::next_occurrence(&once.entry.trigger, day + 1), None);
    // At 09:00 on her clock, on the occurrence's day, across the spring change of Paris
    // (2026-03-29): 08:00 UTC before it, 07:00 UTC after; the occurrence starts when
    // Kiribati (UTC+14) reads 09:00, the day before at 19:00 UTC.
    let local = read(
        "id: l\nstatus: live\ntimezone: America/New_York\nentry:\n  schedule: {at: 2026-03-28, every: 1d, local_time: '09:00'}\nsteps: [{id: a, wait: 1h}]\n",
    )
    .unwrap();
    let occurrence = t("2026-03-28T00:00:00Z");
    assert_eq!(
        machine::occurrence_starts(&local.entry.trigger, occurrence),
        t("2026-03-27T19:00:00Z")
    );
    let paris = Customer {
        tz: Some("Europe/Paris".into()),
        ..Customer::default()
    };
    assert_eq!(
        machine::entry_instant(&local, occurrence, &paris),
        t("2026-03-28T08:00:00Z")
    );
    assert_eq!(
        machine::entry_instant(&local, occurrence + 2 * 86_400_000, &paris),
        t("2026-03-30T07:00:00Z")
    );
    // Without a time zone of her own, the journey's.
    assert_eq!(
        machine::entry_instant(&local, occurrence, &Customer::default()),
        t("2026-03-28T13:00:00Z")
    );
    // Saved after an occurrence started, it waits for the next day's.
    assert_eq!(
        machine::next_occurrence(&local.entry.trigger, t("2026-03-28T05:00:00Z")),
        Some(occurrence + 86_400_000)
    );
    // Too short a period is refused.
    let p = problems("id: f\nstatus: live\nentry: {schedule: {at: 2026-03-02, every: 30m}}\nsteps: [{id: a, wait: 1h}]\n");
    assert!(p.iter().any(|(_, _, m)| m.contains("at least 1h")), "{p:?}");
}
