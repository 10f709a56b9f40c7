//! Journey documents through the real HTTP path, on both stores: saved as YAML or JSON,
//! refused with every problem's line and column, versioned, read back as written.

#[macro_use]
mod common;

use common::journeys::{abandoned_cart, put_document as put};
use common::{start_on, Backend};
use serde_json::json;

async fn journeys_are_versioned_documents(backend: Backend) {
    let t = start_on("journeys", backend, |_| {}).await;
    let cart = abandoned_cart();

    // Saved as written, version 1.
    let (status, saved) = put(
        &t,
        "/api/v1/journeys/abandoned-cart",
        "application/yaml",
        &cart,
    )
    .await;
    assert_eq!(status, 201, "{saved}");
    assert_eq!(saved["version"], 1);
    assert_eq!(saved["status"], "live");
    assert_eq!(saved["changed"], true);
    assert_eq!(saved["journey"]["steps"][2]["type"], "wait_for");
    let (status, got) = t.get("/api/v1/journeys/abandoned-cart").await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["document"], cart.as_str());
    assert_eq!(got["name"], "Abandoned cart");
    assert_eq!(got["versions"].as_array().unwrap().len(), 1);

    // The same document again stores nothing.
    let (status, same) = put(
        &t,
        "/api/v1/journeys/abandoned-cart",
        "application/yaml",
        &cart,
    )
    .await;
    assert_eq!(
        (status, &same["changed"], &same["version"]),
        (200, &json!(false), &json!(1))
    );

    // A dry run says what would change and stores nothing.
    let v2 = cart.replace("wait: 1h", "wait: 2h");
    let (status, plan) = put(
        &t,
        "/api/v1/journeys/abandoned-cart?dry_run=true",
        "application/yaml",
        &v2,
    )
    .await;
    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["changes"][0], "step `wait` changed (wait)");
    assert!(plan["changes"][1]
        .as_str()
        .unwrap()
        .starts_with("runs in flight stay"));
    assert!(
        plan["diff"]
            .as_array()
            .unwrap()
            .contains(&json!("+     wait: 2h")),
        "{plan}"
    );
    let (_, got) = t.get("/api/v1/journeys/abandoned-cart").await;
    assert_eq!(got["versions"].as_array().unwrap().len(), 1);

    // Saved for real: version 2; version 1 still reads as it was.
    let (status, saved) = put(
        &t,
        "/api/v1/journeys/abandoned-cart",
        "application/yaml",
        &v2,
    )
    .await;
    assert_eq!((status, &saved["version"]), (200, &json!(2)), "{saved}");
    let (_, got) = t.get("/api/v1/journeys/abandoned-cart?version=1").await;
    assert_eq!(got["document"], cart.as_str());
    assert_eq!(got["latest_version"], 2);
    let (status, _) = t.get("/api/v1/journeys/abandoned-cart?version=9").await;
    assert_eq!(status, 404);

    // Every problem, with its line and column.
    let broken = cart
        .replace("wait: 1h", "wait: 1 hour")
        .replace("on_timeout: sms", "on_timeout: sms2");
    let (status, err) = put(
        &t,
        "/api/v1/journeys/abandoned-cart",
        "application/yaml",
        &broken,
    )
    .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["code"], "invalid_journey");
    let at: Vec<(u64, u64)> = err["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["at"]["line"].as_u64().unwrap(),
                p["at"]["column"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(at, [(14, 11), (25, 17)], "{err}");
    let (status, err) = put(
        &t,
        "/api/v1/journeys/abandoned-cart",
        "application/yaml",
        "id: [",
    )
    .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (400, Some("invalid_journey_syntax")),
        "{err}"
    );

    // JSON is a document too; the id in it must be the one in the path.
    let welcome = json!({"id": "welcome", "entry": {"event": "Signed Up"},
        "steps": [{"id": "hello", "send": {"channel": "email", "subject": "Hi", "text": "Welcome"}}]});
    let (status, saved) = put(
        &t,
        "/api/v1/journeys/welcome",
        "application/json",
        &welcome.to_string(),
    )
    .await;
    assert_eq!(
        (status, saved["status"].as_str()),
        (201, Some("draft")),
        "{saved}"
    );
    let (status, err) = put(
        &t,
        "/api/v1/journeys/other",
        "application/json",
        &welcome.to_string(),
    )
    .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (400, Some("journey_id_mismatch"))
    );
    let (status, err) = put(&t, "/api/v1/journeys/welcome", "image/png", "x").await;
    assert_eq!(
        (status, err["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );

    // A template that does not parse is refused before anything is stored.
    let bad = cart.replace("your cart is waiting\"", "your cart is waiting {{ \"");
    let (status, err) = put(
        &t,
        "/api/v1/journeys/abandoned-cart",
        "application/yaml",
        &bad,
    )
    .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (400, Some("invalid_template")),
        "{err}"
    );
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("step `reminder`, subject"),
        "{err}"
    );
    // A live journey may not use what this version does not run yet; a draft may.
    let hook = "id: hook\nstatus: live\nentry: {event: A}\nsteps:\n  - id: call\n    webhook: {url: 'https://example.com/x'}\n";
    let (status, err) = put(&t, "/api/v1/journeys/hook", "application/yaml", hook).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (422, Some("journey_feature_unavailable")),
        "{err}"
    );
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("step `call`: webhook steps"),
        "{err}"
    );
    let (status, _) = put(
        &t,
        "/api/v1/journeys/hook",
        "application/yaml",
        &hook.replace("live", "draft"),
    )
    .await;
    assert_eq!(status, 201);
    let (_, versions) = t.get("/api/v1/journeys/abandoned-cart").await;
    assert_eq!(versions["latest_version"], 2, "nothing refused was stored");

    let (status, list) = t.get("/api/v1/journeys").await;
    assert_eq!(status, 200);
    let ids: Vec<(&str, u64)> = list["journeys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["id"].as_str().unwrap(), j["version"].as_u64().unwrap()))
        .collect();
    assert_eq!(ids, [("abandoned-cart", 2), ("hook", 1), ("welcome", 1)]);

    // An analyst reads journeys and cannot save one.
    let (status, token) = common::call(
        &t,
        "POST",
        "/api/v1/tokens",
        json!({"name": "viewer", "role": "analyst"}),
    )
    .await;
    assert_eq!(status, 201, "{token}");
    let viewer = token["secret"].as_str().unwrap().to_string();
    let (status, _) = common::call_with(
        &t.client,
        &viewer,
        "GET",
        "/api/v1/journeys/welcome",
        json!(null),
    )
    .await;
    assert_eq!(status, 200);
    let auth = format!("Bearer {viewer}");
    let r = t
        .client
        .request(
            "PUT".parse().unwrap(),
            "/api/v1/journeys/welcome",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            welcome.to_string(),
        )
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (403, json!("forbidden"))
    );
    t.stop().await;
}

on_each_store!(journeys_are_versioned_documents);

fn parcours(data: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_parcours"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `parcours journey validate|diff|apply`, as a user runs them against the embedded store.
#[test]
fn the_cli_validates_diffs_and_applies() {
    let dir = common::temp_dir("journey-cli");
    let data = dir.join("data");
    let file = dir.join("cart.yaml");
    let file_s = file.to_str().unwrap();
    std::fs::write(&file, abandoned_cart()).unwrap();
    let (code, out, _) = parcours(&data, &["journey", "validate", file_s]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("step opened: wait_for → end on the event, sms on timeout"),
        "{out}"
    );

    let broken = dir.join("broken.yaml");
    std::fs::write(
        &broken,
        abandoned_cart().replace("on_timeout: sms", "on_timeout: sms2"),
    )
    .unwrap();
    let (code, out, err) = parcours(&data, &["journey", "validate", broken.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(
        out.trim(),
        format!(
            "{}:25:17: invalid_journey: on_timeout: there is no step `sms2`",
            broken.display()
        )
    );
    assert!(err.contains("1 problem"), "{err}");

    let (code, _, err) = parcours(&data, &["workspace", "create", "Shop"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = parcours(&data, &["journey", "diff", file_s]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("journey `abandoned-cart` is new"), "{out}");
    let (code, out, err) = parcours(&data, &["journey", "apply", file_s]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("saved journey `abandoned-cart` version 1"),
        "{out}"
    );

    std::fs::write(&file, abandoned_cart().replace("wait: 1h", "wait: 2h")).unwrap();
    let (_, out, _) = parcours(&data, &["journey", "diff", file_s]);
    assert!(out.contains("-     wait: 1h\n+     wait: 2h"), "{out}");
    assert!(
        out.contains("runs in flight stay on the version they started on"),
        "{out}"
    );
    let (code, out, _) = parcours(&data, &["journey", "apply", file_s]);
    assert_eq!(code, 0);
    assert!(
        out.contains("saving version 2")
            && out.contains("saved journey `abandoned-cart` version 2"),
        "{out}"
    );
    let (code, out, _) = parcours(&data, &["journey", "apply", file_s]);
    assert_eq!(code, 0);
    assert!(out.contains("nothing saved"), "{out}");
    // A broken document saves nothing.
    let (code, _, _) = parcours(&data, &["journey", "apply", broken.to_str().unwrap()]);
    assert_eq!(code, 1);
    let (_, out, _) = parcours(&data, &["journey", "diff", file_s]);
    assert!(out.contains("version 2 is this document"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
