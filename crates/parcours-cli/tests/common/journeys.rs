//! Journeys in tests: the documented example, and saving a document through the API.

use serde_json::Value;

use super::{TestNode, ADMIN};

const DOCS: &str = include_str!("../../../../docs/journeys.md");

/// The first example of docs/journeys.md: the abandoned-cart journey, as written there.
pub fn abandoned_cart() -> String {
    let start = DOCS.find("```yaml\n").unwrap() + 8;
    let end = start + DOCS[start..].find("```").unwrap();
    DOCS[start..end].to_string()
}

/// A `PUT` of a document with the admin token: the status and the JSON answer.
pub async fn put_document(
    t: &TestNode,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, Value) {
    send_document(t, "PUT", path, content_type, body).await
}

/// A request with a document as its body, with the admin token: the status and the JSON
/// answer.
pub async fn send_document(
    t: &TestNode,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, Value) {
    let auth = format!("Bearer {ADMIN}");
    let r = t
        .client
        .request(
            method.parse().unwrap(),
            path,
            &[("authorization", &auth), ("content-type", content_type)],
            body.to_string(),
        )
        .await
        .unwrap();
    (r.status, r.json())
}

/// Saves a journey (YAML), which must be accepted.
pub async fn put_journey(t: &TestNode, id: &str, doc: &str) {
    let (status, answer) = put_document(
        t,
        &format!("/api/v1/journeys/{id}"),
        "application/yaml",
        doc,
    )
    .await;
    assert!(status == 201 || status == 200, "{answer}");
}
