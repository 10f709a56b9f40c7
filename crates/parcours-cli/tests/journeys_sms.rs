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

/// What the fake provider received: each request's headers and form, in order.
type Seen = Arc<Mutex<Vec<(HeaderMap, Vec<(String, String)>)>>>;

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

/// A provider answering `503` to the first request and `201` after, as Twilio does.
async fn fake_provider(seen: Seen) -> u16 {
    // A fake provider, not a Parcours route: nothing to document.
    #[allow(clippy::disallowed_methods)]
    let app = axum::Router::new().route(
        "/2010-04-01/Accounts/AC1/Messages.json",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
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
                seen.push((headers, form));
                if seen.len() == 1 {
                    (StatusCode::SERVICE_UNAVAILABLE, "try again".to_string())
                } else {
                    (
                        StatusCode::CREATED,
                        json!({"sid": "SM1", "status": "queued"}).to_string(),
                    )
                }
            }
        }),
    );
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
    let port = fake_provider(seen.clone()).await;
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
    for (headers, form) in &requests {
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
        .1
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

on_each_store!(sms_go_through_the_provider_and_report_delivery);
