//! The metrics a node exposes come from typed internal events: after ingest, unify, audiences
//! and a webhook delivery, `/metrics` has the group-commit, processor-step and delivery
//! histograms with their labels. (One test in this binary: the Prometheus recorder is global
//! to a process, and the first node started installs it.)

#[macro_use]
mod common;

use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use common::{eventually, start, ADMIN};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_carry_commit_step_and_delivery_histograms() {
    let t = start("metrics-events", |c| {
        c.destinations.allow_private_addresses = true;
        c.destinations.poll_ms = 20;
    })
    .await;
    // A receiver of the test's own, not a route of Parcours: nothing to document.
    #[allow(clippy::disallowed_methods)]
    let app = Router::new().route("/hook", post(|| async { StatusCode::OK }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let auth = format!("Bearer {ADMIN}");
    let call = |method: &'static str, path: &'static str, body: serde_json::Value| {
        common::call_with(&t.client, ADMIN, method, path, body)
    };
    let (status, a) = call(
        "POST",
        "/api/v1/audiences",
        json!({"id": "gold", "name": "Gold", "definition": "trait plan = \"gold\""}),
    )
    .await;
    assert_eq!(status, 201, "{a}");
    let (status, d) = call(
        "POST",
        "/api/v1/destinations",
        json!({"id": "crm", "name": "CRM", "url": url, "purpose": "none"}),
    )
    .await;
    assert_eq!(status, 201, "{d}");
    let r = t
        .send(json!({"batch": [{"type": "identify", "userId": "u1", "traits": {"plan": "gold"}}]}))
        .await;
    assert_eq!(r.status, 200);
    eventually(Duration::from_secs(30), "the change delivered", || async {
        let (_, d) = call("GET", "/api/v1/destinations/crm", json!(null)).await;
        (d["delivery"]["delivered"] == 1).then_some(())
    })
    .await;
    let r = t
        .client
        .request(
            hyper::Method::GET,
            "/metrics",
            &[("authorization", &auth)],
            "",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let text = String::from_utf8_lossy(&r.body);
    for wanted in [
        "parcours_group_commit_seconds",
        "parcours_processor_step_seconds{processor=\"unify\"",
        "parcours_processor_step_seconds{processor=\"audiences\"",
        "parcours_processor_items_total{processor=\"unify\"}",
        "parcours_delivery_latency_seconds{destination=\"crm\"",
        "parcours_destination_changes_delivered_total{destination=\"crm\"} 1",
    ] {
        assert!(text.contains(wanted), "{wanted} is not in:\n{text}");
    }
    t.stop().await;
}
