//! Journey email through a real SMTP server (aiosmtpd, started by the test): the abandoned
//! cart email arrives with its parts, its key as `Message-ID` and the one-click unsubscribe
//! headers of RFC 8058; its open pixel and signed links come back as her events, and a hard
//! bounce suppresses her address.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::journeys::{abandoned_cart, put_journey};
use common::smtp::{header, part, Sink};
use common::{call, eventually, start_with_clock, temp_dir, Backend, ShiftedClock, ADMIN};
use serde_json::json;

const H: i64 = 3_600_000;

/// Waits until her email marketing consent reads withdrawn, by an unsubscribe (the method
/// a one-click unsubscribe and a spam complaint both record).
async fn email_marketing_withdrawn(t: &common::TestNode, profile: &str, what: &str) {
    let consent = eventually(Duration::from_secs(20), what, || async {
        let (status, c) = t
            .get(&format!(
                "/api/v1/profiles/{profile}/consent?purpose=marketing&channel=email"
            ))
            .await;
        (status == 200 && c["state"] == "withdrawn").then_some(c)
    })
    .await;
    assert_eq!(consent["answered_by"]["method"], "unsubscribe", "{consent}");
}

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
    email_marketing_withdrawn(&t, &lea, "the withdrawal is recorded").await;
    // Her run ends at once: its exit condition (`not consented(email, marketing)`) holds.
    let ended = eventually(Duration::from_secs(20), "her run exits", || async {
        let r = t.store.runs_of(&t.workspace, &lea, 1).unwrap().remove(0);
        (!r.active).then_some(r)
    })
    .await;
    assert_eq!(ended.outcome.as_deref(), Some("exited"));
    t.stop().await;
}

const BROWSE: &str = r#"
id: browse
name: Browsed, not bought
status: live
entry:
  event: Product Viewed
steps:
  - id: mail
    send:
      channel: email
      subject: "Still thinking about {{ event.properties.name }}?"
      html: '<html><body><p><a href="https://shop.example/p/{{ event.properties.sku }}?utm_source=parcours&amp;x=1">See it again</a>
        <a href="mailto:help@shop.example">Help</a></p></body></html>'
      text: "See it again: https://shop.example/p/{{ event.properties.sku }}\nYour choices: {{ preferences_url }}"
  - id: opened
    wait_for:
      event: Email Opened
      timeout: 1d
    on_event: end
"#;

/// The decisions of her latest run of a journey, in order.
async fn decisions(t: &common::TestNode, profile: &str, journey: &str) -> Vec<String> {
    let (status, explained) = t
        .get(&format!(
            "/api/v1/profiles/{profile}/journeys?journey={journey}"
        ))
        .await;
    assert_eq!(status, 200, "{explained}");
    explained["runs"][0]["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["code"].as_str().unwrap().to_string())
        .collect()
}

async fn opens_clicks_and_bounces_come_back(backend: Backend) {
    let sink = Sink::start(temp_dir("smtp-sink"), 0);
    let clock = Arc::new(ShiftedClock::default());
    let port = sink.port;
    let t = start_with_clock("journey-tracking", backend, clock.clone(), move |c| {
        c.channels.email.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
        c.channels.email.from = Some("Shop <news@shop.example>".into());
        c.channels.public_url = Some("https://parcours.shop.example".into());
    })
    .await;
    put_journey(&t, "browse", BROWSE).await;
    t.send(json!({"batch": [
        {"type": "identify", "userId": "lea", "traits": {"email": "Lea@Example.com"},
         "context": {"consent": {"categoryPreferences": {"marketing": true}}}},
        {"type": "track", "userId": "lea", "event": "Product Viewed",
         "properties": {"sku": "sku1", "name": "Red shoes"}},
    ]}))
    .await;
    t.unified().await;
    let messages = eventually(Duration::from_secs(20), "the email", || async {
        let m = sink.messages();
        (!m.is_empty()).then_some(m)
    })
    .await;
    let lea = t.profile_of(ADMIN, "user_id", "lea").await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let run = t.store.runs_of(&t.workspace, &lea, 1).unwrap().remove(0);
    let key = format!("{}:mail:1", run.run_id);
    let html = part(&messages[0], "text/html").expect("an HTML part");
    // Her link goes through Parcours, signed; mailto stays; the pixel is at the end.
    let prefix = format!("https://parcours.shop.example/v1/m/{}/{key}/", t.workspace);
    let link = html
        .split('"')
        .find(|s| s.starts_with(&format!("{prefix}click/0/")))
        .unwrap_or_else(|| panic!("no tracked link in {html}"))
        .trim_start_matches("https://parcours.shop.example")
        .to_string();
    let pixel = html
        .split('"')
        .find(|s| s.starts_with(&format!("{prefix}open/")))
        .unwrap_or_else(|| panic!("no pixel in {html}"))
        .trim_start_matches("https://parcours.shop.example")
        .to_string();
    assert!(!html.contains("https://shop.example/p/"), "{html}");
    assert!(html.contains("href=\"mailto:help@shop.example\""), "{html}");
    assert!(
        part(&messages[0], "text/plain")
            .unwrap()
            .contains("https://shop.example/p/sku1"),
        "the text part keeps its address"
    );
    // Her preference page, signed for her: it opens with her consent ticked.
    let text = part(&messages[0], "text/plain").unwrap();
    let base = format!(
        "https://parcours.shop.example/v1/preferences/{}/{lea}/",
        t.workspace
    );
    let at = text
        .find(&base)
        .unwrap_or_else(|| panic!("no preference link in {text}"));
    let preferences = text[at..]
        .split_whitespace()
        .next()
        .unwrap()
        .trim_start_matches("https://parcours.shop.example")
        .to_string();
    let r = t.client.get(&preferences, "").await.unwrap();
    let page = String::from_utf8_lossy(&r.body).to_string();
    assert_eq!(r.status, 200, "{preferences}: {page}");
    assert!(
        page.contains("name=\"marketing:email\" value=\"yes\" checked"),
        "{page}"
    );

    // A forged or altered link leads nowhere and records nothing.
    let forged_sig = format!("{}{}", &link[..link.len() - 32], "0".repeat(32));
    for bad in [
        forged_sig,
        link.replace("/click/0/", "/click/1/"),
        link.replace(&key, &format!("{}:mail:2", run.run_id)),
        pixel.replace("/open/", "/open/0"),
        format!("{}{}", &pixel[..pixel.len() - 32], "f".repeat(32)),
    ] {
        let r = t.client.get(&bad, "").await.unwrap();
        assert_eq!(r.status, 404, "{bad}");
        assert!(r.headers.get("location").is_none());
    }
    assert_eq!(decisions(&t, &lea, "browse").await, ["entered", "sent"]);

    // She opens it: the pixel is a GIF, `Email Opened` is hers, and her wait ends.
    let r = t.client.get(&pixel, "").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.headers.get("content-type").unwrap(), "image/gif");
    assert!(r.body.starts_with(b"GIF89a"));
    let codes = eventually(
        Duration::from_secs(20),
        "her wait ends on the open",
        || async {
            let d = decisions(&t, &lea, "browse").await;
            (d.len() == 4).then_some(d)
        },
    )
    .await;
    assert_eq!(codes, ["entered", "sent", "event_arrived", "completed"]);
    // She follows the link: to the address the email held, every time.
    for _ in 0..2 {
        let r = t.client.get(&link, "").await.unwrap();
        assert_eq!(r.status, 302);
        assert_eq!(
            r.headers.get("location").unwrap(),
            "https://shop.example/p/sku1?utm_source=parcours&x=1"
        );
    }
    let clicks = eventually(Duration::from_secs(20), "her click in the log", || async {
        let (_, tl) = t.get(&format!("/api/v1/profiles/{lea}/events")).await;
        let events = tl["events"].as_array()?.clone();
        let n = |name: &str| events.iter().filter(|e| e["event"] == name).count();
        (n("Email Link Clicked") == 1).then_some((n("Email Opened"), n("Email Link Clicked")))
    })
    .await;
    assert_eq!(clicks, (1, 1), "each once, however often");

    // The provider's receipts: each answered on its own; a hard bounce suppresses her address.
    let (status, answer) = call(
        &t,
        "POST",
        "/api/v1/messages/receipts",
        json!({"receipts": [
            {"key": key, "status": "delivered"},
            {"key": key, "status": "delivered"},
            {"key": key, "status": "bounced", "bounce": "hard", "reason": "550 5.1.1 no such user"},
            {"key": "r0:x:1", "status": "delivered"},
            {"key": key, "status": "read"},
        ]}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let results = answer["receipts"].as_array().unwrap();
    assert_eq!(results[0]["recorded"], true, "{answer}");
    assert_eq!(results[1]["recorded"], false, "twice is once: {answer}");
    assert_eq!(results[2]["suppressed"], "lea@example.com", "{answer}");
    assert_eq!(results[3]["code"], "unknown_message", "{answer}");
    assert_eq!(results[4]["code"], "invalid_receipt", "{answer}");
    let (_, again) = call(
        &t,
        "POST",
        "/api/v1/messages/receipts",
        json!({"key": key, "status": "delivered"}),
    )
    .await;
    assert_eq!(again["receipts"][0]["recorded"], false, "{again}");
    // Marked as spam: her email marketing consent is withdrawn, as by an unsubscribe.
    let (_, spam) = call(
        &t,
        "POST",
        "/api/v1/messages/receipts",
        json!({"key": key, "status": "complained"}),
    )
    .await;
    assert_eq!(spam["receipts"][0]["recorded"], true, "{spam}");
    assert_eq!(
        spam["receipts"][0]["suppressed"], "lea@example.com",
        "{spam}"
    );
    email_marketing_withdrawn(&t, &lea, "the complaint withdraws").await;
    let (status, shown) = t.get(&format!("/api/v1/messages/{key}")).await;
    assert_eq!(status, 200, "{shown}");
    let kinds: Vec<&str> = shown["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    let mut sorted = kinds.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["bounced", "clicked", "complained", "delivered", "opened"],
        "{shown}"
    );
    assert!(shown["message"].get("secret").is_none(), "{shown}");
    assert_eq!(
        shown["message"]["links"][0],
        "https://shop.example/p/sku1?utm_source=parcours&x=1"
    );
    let (_, report) = t.get("/api/v1/journeys/browse/report").await;
    for (kind, n) in [
        ("sent", 1),
        ("delivered", 1),
        ("opened", 1),
        ("clicked", 1),
        ("bounced", 1),
        ("complained", 1),
    ] {
        assert_eq!(report["messages"][kind], n, "{kind}: {report}");
    }
    let step = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "mail")
        .unwrap();
    assert_eq!(
        (step["sent"].as_u64(), step["opened"].as_u64()),
        (Some(1), Some(1)),
        "{report}"
    );

    // Her next visit: the email is not sent to a suppressed address, and says why.
    t.send(
        json!({"batch": [{"type": "track", "userId": "lea", "event": "Product Viewed",
                  "properties": {"sku": "sku2", "name": "Blue shoes"}}]}),
    )
    .await;
    let codes = eventually(
        Duration::from_secs(20),
        "her second run decides",
        || async {
            let d = decisions(&t, &lea, "browse").await;
            (d.len() >= 2 && d != ["entered", "sent", "event_arrived", "completed"]).then_some(d)
        },
    )
    .await;
    assert_eq!(codes[..2], ["entered", "suppressed"], "{codes:?}");
    let (_, list) = t.get("/api/v1/suppressions").await;
    assert_eq!(
        list["suppressions"][0]["address"], "lea@example.com",
        "{list}"
    );
    assert_eq!(list["suppressions"][0]["reason"], "hard_bounce", "{list}");
    assert_eq!(
        list["suppressions"][0]["message_key"],
        key.as_str(),
        "{list}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        sink.messages().len(),
        1,
        "nothing went to the bounced address"
    );
    // Lifted (her mailbox works again): her next visit, once she subscribes again, gets its
    // email.
    let delete = |path: &'static str| {
        let client = &t.client;
        async move {
            let auth = format!("Bearer {ADMIN}");
            client
                .request(
                    "DELETE".parse().unwrap(),
                    path,
                    &[("authorization", &auth)],
                    "",
                )
                .await
                .unwrap()
                .status
        }
    };
    // The address as typed: the same mailbox.
    assert_eq!(
        delete("/api/v1/suppressions/email/LEA@example.com").await,
        204
    );
    let status = delete("/api/v1/suppressions/email/lea@example.com").await;
    assert_eq!(status, 404);
    // Her second run waits a day for an open that cannot come, then ends.
    clock.advance(25 * H);
    eventually(Duration::from_secs(20), "her second run ends", || async {
        let runs = t.store.runs_of(&t.workspace, &lea, 5).unwrap();
        runs.iter().all(|r| !r.active).then_some(())
    })
    .await;
    t.send(
        // She subscribes again, and visits.
        json!({"batch": [
            {"type": "identify", "userId": "lea",
             "context": {"consent": {"categoryPreferences": {"marketing:email": true}}}},
            {"type": "track", "userId": "lea", "event": "Product Viewed",
                  "properties": {"sku": "sku3", "name": "Green shoes"}}]}),
    )
    .await;
    eventually(Duration::from_secs(20), "the third email", || async {
        (sink.messages().len() == 2).then_some(())
    })
    .await;
    t.stop().await;
}

on_each_store!(
    the_abandoned_cart_email_arrives_with_its_headers,
    opens_clicks_and_bounces_come_back
);
