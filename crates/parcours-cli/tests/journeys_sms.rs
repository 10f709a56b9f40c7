//! Journey SMS through an HTTP provider with Twilio's request shape (a fake provider started by
//! the test): the form, the credentials, the key as idempotency token on every try, and the
//! status callback that comes back as `SMS Delivered` for her.

#[macro_use]
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use common::journeys::put_journey;
use common::{eventually, start_with_clock, Backend, ShiftedClock, ADMIN};
use serde_json::json;

/// What the fake provider received: each request's path, headers and form, in order.
type Seen = Arc<Mutex<Vec<(String, HeaderMap, Vec<(String, String)>)>>>;

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// A provider (SMS at `/2010-04-01/Accounts/AC1/Messages.json`, push at `/push`) answering
/// `201` as Twilio does, and `503` to the first request when `fail_first`.
async fn fake_provider(seen: Seen, fail_first: bool) -> u16 {
    let handler = move |uri: axum::http::Uri, headers: HeaderMap, body: axum::body::Bytes| {
        let seen = seen.clone();
        async move {
            let form = String::from_utf8(body.to_vec())
                .unwrap()
                .split('&')
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap();
                    (decode(k), decode(v))
                })
                .collect();
            let mut seen = seen.lock().unwrap();
            seen.push((uri.path().to_string(), headers, form));
            if fail_first && seen.len() == 1 {
                (StatusCode::SERVICE_UNAVAILABLE, "try again".to_string())
            } else {
                (
                    StatusCode::CREATED,
                    json!({"sid": format!("SM{}", seen.len()), "status": "queued"}).to_string(),
                )
            }
        }
    };
    // A fake provider, not a Parcours route: nothing to document.
    #[allow(clippy::disallowed_methods)]
    let app = axum::Router::new()
        .route(
            "/2010-04-01/Accounts/AC1/Messages.json",
            axum::routing::post(handler.clone()),
        )
        .route("/push", axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

const NUDGE: &str = r#"
id: nudge
status: live
entry:
  event: Product Added
steps:
  - id: sms
    send:
      channel: sms
      text: "{{ event.properties.name }} is waiting in your cart"
"#;

async fn sms_go_through_the_provider_and_report_delivery(backend: Backend) {
    let seen: Seen = Arc::default();
    let port = fake_provider(seen.clone(), true).await;
    let clock = Arc::new(ShiftedClock::default());
    let t = start_with_clock("journey-sms", backend, clock.clone(), move |c| {
        c.channels.sms.url = Some(format!(
            "http://127.0.0.1:{port}/2010-04-01/Accounts/AC1/Messages.json"
        ));
        c.channels.sms.username = Some("AC1".into());
        c.channels.sms.password = Some("token".into());
        c.channels.sms.from = Some("+33600000000".into());
        c.channels.public_url = Some("https://parcours.shop.example".into());
    })
    .await;
    put_journey(&t, "nudge", NUDGE).await;
    t.send(json!({"batch": [
        {"type": "identify", "userId": "lea", "traits": {"phone": "+33611223344"},
         "context": {"consent": {"categoryPreferences": {"marketing:sms": true}}}},
        {"type": "track", "userId": "lea", "event": "Product Added",
         "properties": {"name": "Red shoes & socks"}},
    ]}))
    .await;
    t.unified().await;
    // The first try meets a 503: it is tried again (after 5 s), under the same key.
    eventually(Duration::from_secs(20), "the first try", || async {
        (seen.lock().unwrap().len() == 1).then_some(())
    })
    .await;
    clock.advance(6_000);
    eventually(Duration::from_secs(20), "the second try", || async {
        (seen.lock().unwrap().len() == 2).then_some(())
    })
    .await;
    let lea = t.profile_of(ADMIN, "user_id", "lea").await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let run = t.store.runs_of(&t.workspace, &lea, 1).unwrap().remove(0);
    let key = format!("{}:sms:1", run.run_id);
    let requests = seen.lock().unwrap().clone();
    for (_, headers, form) in &requests {
        let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(field("To"), Some("+33611223344"));
        assert_eq!(field("From"), Some("+33600000000"));
        assert_eq!(
            field("Body"),
            Some("Red shoes & socks is waiting in your cart")
        );
        assert!(field("StatusCallback").unwrap().starts_with(&format!(
            "https://parcours.shop.example/v1/m/{}/{key}/status/",
            t.workspace
        )));
        // AC1:token
        assert_eq!(headers["authorization"], "Basic QUMxOnRva2Vu");
        assert_eq!(headers["i-twilio-idempotency-token"], key.as_str());
        assert_eq!(headers["content-type"], "application/x-www-form-urlencoded");
    }
    let callback = requests[0]
        .2
        .iter()
        .find(|(k, _)| k == "StatusCallback")
        .unwrap()
        .1
        .trim_start_matches("https://parcours.shop.example")
        .to_string();
    let post = |path: String, body: &'static str| {
        let client = &t.client;
        async move {
            client
                .request(
                    "POST".parse().unwrap(),
                    &path,
                    &[("content-type", "application/x-www-form-urlencoded")],
                    body,
                )
                .await
                .unwrap()
                .status
        }
    };
    // A forged callback is refused; `sent` is acknowledged and records nothing.
    let forged = format!("{}{}", &callback[..callback.len() - 32], "0".repeat(32));
    assert_eq!(post(forged, "MessageStatus=delivered").await, 404);
    assert_eq!(
        post(callback.clone(), "MessageSid=SM1&MessageStatus=sent").await,
        204
    );
    assert_eq!(
        post(callback.clone(), "MessageSid=SM1&MessageStatus=delivered").await,
        204
    );
    assert_eq!(
        post(callback.clone(), "MessageSid=SM1&MessageStatus=delivered").await,
        204,
        "a provider retrying its callback records nothing twice"
    );
    let delivered = eventually(Duration::from_secs(20), "SMS Delivered is hers", || async {
        let (_, tl) = t.get(&format!("/api/v1/profiles/{lea}/events")).await;
        let events = tl["events"].as_array()?.clone();
        let n = events
            .iter()
            .filter(|e| e["event"] == "SMS Delivered")
            .count();
        (n > 0).then_some(n)
    })
    .await;
    assert_eq!(delivered, 1);
    let (_, shown) = t.get(&format!("/api/v1/messages/{key}")).await;
    let kinds: Vec<&str> = shown["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["delivered"], "{shown}");
    assert_eq!(shown["state"], "done", "{shown}");
    assert_eq!(shown["attempts"], 2, "{shown}");
    let (_, report) = t.get("/api/v1/journeys/nudge/report").await;
    assert_eq!(report["messages"]["sent"], 1, "{report}");
    assert_eq!(report["messages"]["delivered"], 1, "{report}");
    t.stop().await;
}

const READY: &str = r#"
id: ready
status: live
entry:
  event: Order Ready
steps:
  - id: notify
    send:
      channel: push
      purpose: transactional
      title: "Your order is ready"
      subject: "Your order is ready"
      text: "Collect it at {{ event.properties.store }}"
      html: "<p>Collect it at {{ event.properties.store }}</p>"
      fallback: [sms, email]
      fallback_after: 10m
"#;

/// The decisions of a customer's latest run of `ready`, as `(code, reason)`.
async fn decisions(t: &common::TestNode, user: &str) -> Vec<(String, String)> {
    let id = t.profile_of(ADMIN, "user_id", user).await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, explained) = t
        .get(&format!("/api/v1/profiles/{id}/journeys?journey=ready"))
        .await;
    explained["runs"][0]["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["code"].as_str().unwrap().to_string(),
                d["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn sent_on(decisions: &[(String, String)]) -> Vec<String> {
    decisions
        .iter()
        .filter(|(c, _)| c == "sent")
        .map(|(_, r)| r.split(' ').next().unwrap().to_string())
        .collect()
}

/// Push first; SMS when the push is not delivered within 10 minutes; email at once when the
/// SMS fails; nothing more when the push was delivered; SMS at once for a customer without a
/// push token.
async fn messages_fall_back_on_their_receipts(backend: Backend) {
    let seen: Seen = Arc::default();
    let port = fake_provider(seen.clone(), false).await;
    let clock = Arc::new(ShiftedClock::default());
    let t = start_with_clock("journey-fallback", backend, clock.clone(), move |c| {
        c.channels.sms.url = Some(format!(
            "http://127.0.0.1:{port}/2010-04-01/Accounts/AC1/Messages.json"
        ));
        c.channels.sms.from = Some("+33600000000".into());
        c.channels.push.url = Some(format!("http://127.0.0.1:{port}/push"));
        c.channels.push.from = Some("shop-app".into());
        c.channels.public_url = Some("https://parcours.shop.example".into());
    })
    .await;
    put_journey(&t, "ready", READY).await;
    let who = |user: &str, n: u32, push: bool| {
        let mut traits =
            json!({"phone": format!("+3361122334{n}"), "email": format!("{user}@example.com")});
        if push {
            traits["push_token"] = json!(format!("tok-{user}"));
        }
        json!({"type": "identify", "userId": user, "traits": traits})
    };
    let ready = |user: &str| {
        json!({"type": "track", "userId": user, "event": "Order Ready",
               "properties": {"store": "Lyon Part-Dieu"}})
    };
    t.send(
        json!({"batch": [who("lea", 1, true), who("max", 2, true), who("zoe", 3, false),
                            ready("lea"), ready("max"), ready("zoe")]}),
    )
    .await;
    t.unified().await;
    let to = |path: &'static str| {
        let seen = seen.clone();
        move || -> Vec<(String, String)> {
            seen.lock()
                .unwrap()
                .iter()
                .filter(|(p, _, _)| p.as_str() == path)
                .map(|(_, _, f)| {
                    let field = |k: &str| f.iter().find(|(n, _)| n == k).unwrap().1.clone();
                    (field("To"), field("StatusCallback"))
                })
                .collect()
        }
    };
    let (pushes, sms) = (to("/push"), to("/2010-04-01/Accounts/AC1/Messages.json"));
    // Zoé has no push token: her SMS goes at once.
    eventually(Duration::from_secs(20), "two pushes and an SMS", || async {
        (pushes().len() == 2 && sms().len() == 1).then_some(())
    })
    .await;
    assert_eq!(sms()[0].0, "+33611223343");
    let zoe = decisions(&t, "zoe").await;
    assert!(
        zoe.iter()
            .any(|(c, r)| c == "no_address" && r.ends_with("falling back to sms")),
        "{zoe:?}"
    );
    assert_eq!(sent_on(&zoe), ["sms"], "{zoe:?}");
    // Max's push is delivered; Léa's is not.
    let callback = |to: &str| {
        pushes()
            .into_iter()
            .find(|(t, _)| t == to)
            .unwrap()
            .1
            .trim_start_matches("https://parcours.shop.example")
            .to_string()
    };
    let post = |path: String, body: &'static str| {
        let client = &t.client;
        async move {
            client
                .request(
                    "POST".parse().unwrap(),
                    &path,
                    &[("content-type", "application/x-www-form-urlencoded")],
                    body,
                )
                .await
                .unwrap()
                .status
        }
    };
    assert_eq!(
        post(callback("tok-max"), "MessageStatus=delivered").await,
        204
    );
    // Zoé's SMS is delivered too: no email for her after the window.
    let zoe_sms = sms()[0]
        .1
        .trim_start_matches("https://parcours.shop.example")
        .to_string();
    assert_eq!(post(zoe_sms, "MessageStatus=delivered").await, 204);
    clock.advance(10 * 60_000 + 1_000);
    eventually(Duration::from_secs(20), "Léa's SMS", || async {
        sms()
            .iter()
            .any(|(to, _)| to == "+33611223341")
            .then_some(())
    })
    .await;
    let max = eventually(Duration::from_secs(20), "Max needs no fallback", || async {
        let d = decisions(&t, "max").await;
        d.iter()
            .any(|(c, _)| c == "fallback_not_needed")
            .then_some(d)
    })
    .await;
    assert_eq!(sent_on(&max), ["push"], "{max:?}");
    assert!(
        max.iter()
            .any(|(c, r)| c == "fallback_not_needed"
                && r.starts_with("the push message was delivered")),
        "{max:?}"
    );
    // Léa's SMS fails: her email goes at once, without waiting for another window.
    let lea_sms = sms()
        .into_iter()
        .find(|(to, _)| to == "+33611223341")
        .unwrap()
        .1
        .trim_start_matches("https://parcours.shop.example")
        .to_string();
    assert_eq!(
        post(lea_sms, "MessageStatus=undelivered&ErrorCode=30003").await,
        204
    );
    let lea = eventually(Duration::from_secs(20), "Léa's email", || async {
        let d = decisions(&t, "lea").await;
        (sent_on(&d).len() == 3).then_some(d)
    })
    .await;
    assert_eq!(sent_on(&lea), ["push", "sms", "email"], "{lea:?}");
    let (_, emails) = t.get("/api/v1/messages?channel=email").await;
    let email = &emails["messages"][0]["message"];
    assert_eq!(email["to"], "lea@example.com", "{emails}");
    assert_eq!(email["subject"], "Your order is ready", "{emails}");
    assert!(
        email["key"].as_str().unwrap().ends_with(":notify:1:email"),
        "{emails}"
    );
    // Nothing more, ever: no second SMS for Léa or Zoé, no email for Max or Zoé.
    clock.advance(2 * 3_600_000);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sms().len(), 2);
    assert_eq!(pushes().len(), 2);
    let (_, emails) = t.get("/api/v1/messages?channel=email").await;
    assert_eq!(emails["messages"].as_array().unwrap().len(), 1, "{emails}");
    t.stop().await;
}

on_each_store!(
    sms_go_through_the_provider_and_report_delivery,
    messages_fall_back_on_their_receipts
);
