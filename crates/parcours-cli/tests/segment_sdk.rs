//! Segment's and RudderStack's official Python SDKs (`segment-analytics-python`,
//! `rudder-sdk-python` with gzip on), unmodified, against a node. The interpreter comes from
//! `PARCOURS_TEST_PYTHON` (`scripts/test.sh` installs both SDKs in a virtualenv and sets it);
//! without it the tests fail, they do not skip.

mod common;

use std::time::Duration;

use common::{start, WRITE_KEY};

fn python() -> String {
    if let Ok(p) = std::env::var("PARCOURS_TEST_PYTHON") {
        return p;
    }
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/python");
    assert!(
        std::path::Path::new(venv).exists(),
        "the Python SDKs are needed: run `bash scripts/test.sh` (it installs them in .venv) or set PARCOURS_TEST_PYTHON"
    );
    venv.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_python_sdk_works_unmodified() {
    let t = start("sdk", |_| {}).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/segment_python.py");
    let host = t.client.base().to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python())
            .args([script, &host, WRITE_KEY, "r1"])
            .output()
    })
    .await
    .unwrap()
    .expect("run python");
    assert!(
        out.status.success(),
        "SDK run failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    t.unified().await;
    assert_eq!(
        t.store.event_count(&t.workspace).unwrap(),
        7,
        "every SDK call was stored"
    );
    let (status, profile) = t
        .get("/api/v1/profiles/lookup?type=email&value=sdk-r1@example.com")
        .await;
    assert_eq!(status, 200, "{profile}");
    let ids: Vec<String> = profile["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{}:{}",
                i["type"].as_str().unwrap(),
                i["value"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        ids.contains(&"user_id:user-r1".to_string())
            && ids.contains(&"anonymous_id:anon-r1".to_string()),
        "{ids:?}"
    );
    assert_eq!(
        profile["events"], 7,
        "anonymous and identified calls are one person"
    );
    assert_eq!(profile["traits"]["first_name"], "Ada");
    let pid = profile["id"].as_str().unwrap();
    let (_, page) = t
        .get(&format!("/api/v1/profiles/{pid}/events?limit=3"))
        .await;
    assert_eq!(page["events"].as_array().unwrap().len(), 3);
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let (_, rest) = t
        .get(&format!(
            "/api/v1/profiles/{pid}/events?limit=10&cursor={cursor}"
        ))
        .await;
    assert_eq!(rest["events"].as_array().unwrap().len(), 4);
    let types: Vec<&str> = rest["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(types.contains(&"page"), "{types:?}");
    let library = &page["events"][0]["context"]["library"]["name"];
    assert_eq!(library, "analytics-python");
    tokio::time::sleep(Duration::from_millis(10)).await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rudderstack_python_sdk_works_unmodified_with_gzip() {
    let t = start("rudder-sdk", |_| {}).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/sdk/rudderstack_python.py"
    );
    let host = t.client.base().to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python())
            .args([script, &host, WRITE_KEY, "r2"])
            .output()
    })
    .await
    .unwrap()
    .expect("run python");
    assert!(
        out.status.success(),
        "SDK run failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    t.unified().await;
    let (status, profile) = t
        .get("/api/v1/profiles/lookup?type=email&value=rudder-r2@example.com")
        .await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(
        profile["events"], 3,
        "the anonymous page view joined the person: {profile}"
    );
    assert_eq!(profile["traits"]["first_name"], "Grace");
    let pid = profile["id"].as_str().unwrap();
    let (_, page) = t.get(&format!("/api/v1/profiles/{pid}/events")).await;
    let library = &page["events"][0]["context"]["library"]["name"];
    assert_eq!(
        library, "analytics-python",
        "RudderStack's SDK names itself so"
    );
    t.stop().await;
}
