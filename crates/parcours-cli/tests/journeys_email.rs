//! Journey email through a real SMTP server (aiosmtpd, started by the test): the abandoned
//! cart email arrives with its parts, its key as `Message-ID` and the one-click unsubscribe
//! headers of RFC 8058.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::journeys::{abandoned_cart, put_journey};
use common::smtp::{header, Sink};
use common::{eventually, start_with_clock, temp_dir, Backend, ShiftedClock, ADMIN};
use serde_json::json;

const H: i64 = 3_600_000;

async fn the_abandoned_cart_email_arrives_with_its_headers(backend: Backend) {
    let sink = Sink::start(temp_dir("smtp-sink"), 0);
    let clock = Arc::new(ShiftedClock::default());
    let port = sink.port;
    let t = start_with_clock("journey-email", backend, clock.clone(), move |c| {
        c.channels.email.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
        c.channels.email.from = Some("Shop <news@shop.example>".into());
        c.channels.public_url = Some("https://parcours.shop.example".into());
    })
    .await;
    put_journey(&t, "abandoned-cart", &abandoned_cart()).await;
    t.send(json!({"batch": [
        {"type": "identify", "userId": "lea", "traits": {"email": "lea@example.com", "first_name": "Lea"},
         "context": {"consent": {"categoryPreferences": {"marketing": true}}}},
        {"type": "track", "userId": "lea", "event": "Product Added",
         "properties": {"cart_id": "c1", "name": "Red shoes"}},
    ]}))
    .await;
    t.unified().await;
    let lea = eventually(Duration::from_secs(20), "her run", || async {
        let p = t.profile_of(ADMIN, "user_id", "lea").await?;
        let id = p["id"].as_str()?.to_string();
        (!t.store.active_runs(&t.workspace, &id).unwrap().is_empty()).then_some(id)
    })
    .await;
    clock.advance(H + 1_000);
    let messages = eventually(
        Duration::from_secs(20),
        "the email at the SMTP server",
        || async {
            let m = sink.messages();
            (!m.is_empty()).then_some(m)
        },
    )
    .await;
    let m = &messages[0];
    let run = &t.store.runs_of(&t.workspace, &lea, 1).unwrap()[0];
    let key = format!("{}:reminder:2", run.run_id);
    assert_eq!(
        header(m, "Subject").as_deref(),
        Some("Lea, your cart is waiting"),
        "{m}"
    );
    assert_eq!(header(m, "To").as_deref(), Some("lea@example.com"), "{m}");
    assert_eq!(
        header(m, "From").as_deref(),
        Some("Shop <news@shop.example>"),
        "{m}"
    );
    assert_eq!(
        header(m, "Message-ID"),
        Some(format!("<{}.reminder.2@shop.example>", run.run_id)),
        "{m}"
    );
    let unsubscribe = header(m, "List-Unsubscribe").unwrap();
    let prefix = format!(
        "<https://parcours.shop.example/v1/unsubscribe/{}/{key}/",
        t.workspace
    );
    assert!(
        unsubscribe.starts_with(&prefix) && unsubscribe.ends_with('>'),
        "{unsubscribe}"
    );
    assert_eq!(
        header(m, "List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    assert!(
        header(m, "Content-Type")
            .unwrap()
            .starts_with("multipart/alternative"),
        "{m}"
    );
    assert!(m.contains("You left Red shoes in your cart."), "{m}");
    assert!(m.contains("<p>You left Red shoes in your cart.</p>"), "{m}");
    // Sent once: the delivery log names the SMTP server.
    let rows = t
        .store
        .outbox_rows(&parcours_store::OutboxPage {
            workspace_id: &t.workspace,
            destination: "channel:email",
            state: None,
            before_id: None,
            limit: 10,
        })
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].key, key);
    // The server has the message a moment before the node records that it accepted it.
    let attempts = eventually(Duration::from_secs(20), "the delivery logged", || async {
        let a = t.store.delivery_attempts(&t.workspace, rows[0].id).unwrap();
        (!a.is_empty()).then_some(a)
    })
    .await;
    assert!(
        attempts[0].ok && attempts[0].detail.contains("smtp"),
        "{attempts:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.messages().len(), 1);

    // One-click unsubscribe, as a mail client does it (RFC 8058): a POST to the link.
    let path = unsubscribe
        .trim_start_matches("<https://parcours.shop.example")
        .trim_end_matches('>')
        .to_string();
    let page = t.client.get(&path, "").await.unwrap();
    assert_eq!(page.status, 200);
    assert!(String::from_utf8_lossy(&page.body).contains("<form method=\"post\">"));
    let forged = format!("{}0000000000000000", &path[..path.rfind('/').unwrap() + 1]);
    let post = |p: String| {
        let client = &t.client;
        async move {
            client
                .request(
                    "POST".parse().unwrap(),
                    &p,
                    &[("content-type", "application/x-www-form-urlencoded")],
                    "List-Unsubscribe=One-Click",
                )
                .await
                .unwrap()
        }
    };
    assert_eq!(post(forged).await.status, 404);
    assert_eq!(post(path.clone()).await.status, 200);
    assert_eq!(post(path.clone()).await.status, 200, "twice is once");
    let consent = eventually(
        Duration::from_secs(20),
        "the withdrawal is recorded",
        || async {
            let (status, c) = t
                .get(&format!(
                    "/api/v1/profiles/{lea}/consent?purpose=marketing&channel=email"
                ))
                .await;
            (status == 200 && c["state"] == "withdrawn").then_some(c)
        },
    )
    .await;
    assert_eq!(consent["answered_by"]["method"], "unsubscribe", "{consent}");
    // Her run ends at once: its exit condition (`not consented(email, marketing)`) holds.
    let ended = eventually(Duration::from_secs(20), "her run exits", || async {
        let r = t.store.runs_of(&t.workspace, &lea, 1).unwrap().remove(0);
        (!r.active).then_some(r)
    })
    .await;
    assert_eq!(ended.outcome.as_deref(), Some("exited"));
    t.stop().await;
}

on_each_store!(the_abandoned_cart_email_arrives_with_its_headers);
