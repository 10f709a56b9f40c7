//! Secrets at rest, on both stores: with `security.secrets_key` set, a webhook source's
//! platform secret, a destination's signing secret and the preference links' secret are
//! nowhere in storage as they are (every file of the embedded store, every table of
//! PostgreSQL), yet the source still verifies a signed call, the destination's requests are
//! still signed with its secret, and a preference link still opens.
//!
//! The key is installed once per process: these tests have a binary of their own.

#[macro_use]
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::post as route_post;
use axum::Router;
use base64::Engine as _;
use common::{call, eventually, start_on, Backend, ADMIN};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

const SOURCE_SECRET: &str = "shpss_sealed_platform_secret_5f8e2a";
/// `whsec_` and base64 of 32 bytes that spell a recognisable text.
const DESTINATION_SECRET: &str = "whsec_c2VhbGVkLWRlc3RpbmF0aW9uLXNlY3JldC0wMDAx";

type Got = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

async fn receive(State(got): State<Got>, headers: HeaderMap, body: Bytes) -> StatusCode {
    got.lock().unwrap().push((headers, body));
    StatusCode::NO_CONTENT
}

/// A webhook source that checks Shopify's signature with [`SOURCE_SECRET`]: its write key.
async fn signed_source(t: &common::TestNode) -> String {
    let r = t
        .client
        .post(
            "/api/v1/sources",
            ADMIN,
            json!({"name": "Shopify", "webhook": {"mapping": "shopify_orders_create",
                "signature": {"scheme": "shopify", "secret": SOURCE_SECRET}}})
            .to_string(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.json());
    r.json()["write_key"].as_str().unwrap().to_string()
}

async fn secrets_are_sealed_at_rest(backend: Backend) {
    let key = base64::engine::general_purpose::STANDARD.encode([42u8; 32]);
    let t = start_on("sealed", backend, |c| {
        c.security.secrets_key = Some(key);
        c.destinations.allow_private_addresses = true;
        c.destinations.poll_ms = 20;
        c.channels.public_url = Some("https://shop.example".into());
    })
    .await;
    let write_key = signed_source(&t).await;
    // A destination with a secret of its own, receiving an audience.
    let got: Got = Arc::default();
    // A receiver of the test's own, not a route of Parcours: nothing to document.
    #[allow(clippy::disallowed_methods)]
    let app = Router::new()
        .route("/hook", route_post(receive))
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (s, a) = call(
        &t,
        "POST",
        "/api/v1/audiences",
        json!({"id": "buyers", "name": "Buyers", "definition": "did \"Order Completed\""}),
    )
    .await;
    assert_eq!(s, 201, "{a}");
    let (s, d) = call(
        &t,
        "POST",
        "/api/v1/destinations",
        json!({"id": "crm", "name": "CRM", "url": url, "purpose": "none",
               "audiences": ["buyers"], "secret": DESTINATION_SECRET}),
    )
    .await;
    assert_eq!(s, 201, "{d}");

    // The source verifies the platform's signature with its secret.
    let body = std::fs::read(format!(
        "{}/tests/webhooks/shopify_orders_create.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mut m = Hmac::<Sha256>::new_from_slice(SOURCE_SECRET.as_bytes()).unwrap();
    m.update(&body);
    let sig = base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes());
    let r = t
        .client
        .request(
            Method::POST,
            &format!("/v1/webhooks/{write_key}"),
            &[
                ("x-shopify-hmac-sha256", sig.as_str()),
                ("x-shopify-topic", "orders/create"),
            ],
            body,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    t.unified().await;
    // The destination's request is signed with its secret.
    let (headers, raw) = eventually(Duration::from_secs(30), "the destination's request", || {
        let got = got.clone();
        async move { got.lock().unwrap().first().cloned() }
    })
    .await;
    common::hooks::assert_signed(DESTINATION_SECRET, &headers, &raw);
    // The preference link opens.
    let p = t
        .profile_of(ADMIN, "email", "john@example.com")
        .await
        .unwrap();
    let (s, link) = t
        .get(&format!(
            "/api/v1/profiles/{}/preferences-link",
            p["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(s, 200, "{link}");
    let page = t
        .client
        .get(link["path"].as_str().unwrap(), "")
        .await
        .unwrap();
    assert_eq!(page.status, 200);
    let preference_secret = t
        .store
        .workspace_setting(&t.workspace, parcours_core::privacy::PREFERENCE_SECRET)
        .unwrap()
        .unwrap();
    assert!(
        preference_secret.starts_with(parcours_core::sealed::PREFIX),
        "stored sealed"
    );
    let preference_secret = parcours_core::sealed::open(&preference_secret).unwrap();

    // None of the three secrets is in storage as it is.
    let destination_key = DESTINATION_SECRET.trim_start_matches("whsec_");
    let needles = [SOURCE_SECRET, destination_key, preference_secret.as_str()];
    let left = common::scan::hits(&t, backend, &needles).await;
    assert!(left.is_empty(), "secrets in storage as they are: {left:?}");
    // And the scan finds what it looks for: a value stored as it is.
    let seen = common::scan::hits(&t, backend, &["shopify_orders_create"]).await;
    assert!(!seen.is_empty(), "the scan sees the stored source");
    t.stop().await;
}

/// `parcours secrets …` on this node's store, with these settings: success, standard output
/// and standard error.
fn secrets_command(
    dir: &std::path::Path,
    database: Option<&str>,
    args: &[&str],
    settings: &[(&str, String)],
    stdin: &str,
) -> (bool, String, String) {
    use std::io::Write;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_parcours"));
    cmd.arg("secrets")
        .args(args)
        .current_dir(dir)
        .env("PARCOURS__DATA_DIR", dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(url) = database {
        cmd.env("PARCOURS__DATABASE", url);
    }
    for (name, value) in settings {
        cmd.env(format!("PARCOURS__{name}"), value);
    }
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A key rotation: with the new key and the old one as previous, `parcours secrets reseal`
/// seals the destination's, the source's and the preference links' secrets under the new
/// key; then the new key alone opens them all and the old one none. `parcours secrets seal`
/// seals a credential for the configuration file.
async fn a_key_rotation_seals_every_secret_again(backend: Backend) {
    let b64 = |k: [u8; 32]| base64::engine::general_purpose::STANDARD.encode(k);
    let (old, new) = ([42u8; 32], [43u8; 32]);
    let mut t = start_on("rotation", backend, |c| {
        c.security.secrets_key = Some(b64(old));
        c.destinations.allow_private_addresses = true;
        c.channels.public_url = Some("https://shop.example".into());
    })
    .await;
    signed_source(&t).await;
    let (s, d) = call(
        &t,
        "POST",
        "/api/v1/destinations",
        json!({"id": "crm", "name": "CRM", "url": "http://127.0.0.1:9/hook", "purpose": "none",
               "secret": DESTINATION_SECRET}),
    )
    .await;
    assert_eq!(s, 201, "{d}");
    t.send(
        json!({"batch": [{"type": "identify", "userId": "u1", "messageId": "m1",
        "traits": {"email": "rotation@example.com"}}]}),
    )
    .await;
    t.unified().await;
    let p = t
        .profile_of(ADMIN, "email", "rotation@example.com")
        .await
        .unwrap();
    let (s, _) = t
        .get(&format!(
            "/api/v1/profiles/{}/preferences-link",
            p["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(s, 200);
    t.node.take().unwrap().stop().await;

    let stored = |t: &common::TestNode| {
        let destination = t
            .store
            .definitions(Some(&t.workspace))
            .unwrap()
            .into_iter()
            .find(|d| d.id == "crm")
            .unwrap()
            .doc["secret"]
            .as_str()
            .unwrap()
            .to_string();
        let preference = t
            .store
            .workspace_setting(&t.workspace, parcours_core::privacy::PREFERENCE_SECRET)
            .unwrap()
            .unwrap();
        [destination, preference]
    };
    for s in stored(&t) {
        assert!(parcours_core::sealed::open_with(Some(&old), &s).is_ok());
    }
    let url = t.database.as_ref().map(|d| d.url().to_string());
    let rotating = [
        ("SECURITY__SECRETS_KEY", b64(new)),
        (
            "SECURITY__PREVIOUS_SECRETS_KEYS",
            format!("[\"{}\"]", b64(old)),
        ),
    ];
    let (ok, _, err) = secrets_command(&t.dir, url.as_deref(), &["reseal"], &rotating, "");
    assert!(ok, "{err}");
    assert!(
        err.contains("1 destination secrets, 1 webhook source secrets, 1 preference secrets"),
        "{err}"
    );
    for s in stored(&t) {
        assert!(
            parcours_core::sealed::open_with(Some(&new), &s).is_ok(),
            "{s}"
        );
        assert!(
            parcours_core::sealed::open_with(Some(&old), &s).is_err(),
            "{s}"
        );
    }
    // The new key alone opens every secret.
    let alone = [("SECURITY__SECRETS_KEY", b64(new))];
    let (ok, _, err) = secrets_command(&t.dir, url.as_deref(), &["reseal"], &alone, "");
    assert!(ok, "{err}");
    assert!(
        err.contains("1 destination secrets, 1 webhook source secrets"),
        "{err}"
    );
    // The old key alone opens none: the command says which and fails.
    let (ok, _, err) = secrets_command(
        &t.dir,
        url.as_deref(),
        &["reseal"],
        &[("SECURITY__SECRETS_KEY", b64(old))],
        "",
    );
    assert!(!ok, "{err}");
    for what in [
        "destination crm",
        "webhook source src_",
        "preference secret",
    ] {
        assert!(
            err.contains(&format!("not sealed again: {what}")),
            "{what}: {err}"
        );
    }
    assert!(err.contains("3 secrets were not sealed again"), "{err}");
    // And none of the secrets is in storage as it is.
    let destination_key = DESTINATION_SECRET.trim_start_matches("whsec_");
    let left = common::scan::hits(&t, backend, &[SOURCE_SECRET, destination_key]).await;
    assert!(left.is_empty(), "{left:?}");

    // A credential for the configuration file.
    let (ok, sealed, err) = secrets_command(
        &t.dir,
        url.as_deref(),
        &["seal"],
        &alone,
        "smtp://shop:hunter2@mail.example:587\n",
    );
    assert!(ok, "{err}");
    let sealed = sealed.trim();
    assert!(!sealed.contains("hunter2"), "{sealed}");
    assert_eq!(
        parcours_core::sealed::open_with(Some(&new), sealed).unwrap(),
        "smtp://shop:hunter2@mail.example:587"
    );
    let (ok, _, err) = secrets_command(&t.dir, url.as_deref(), &["seal"], &[], "x");
    assert!(!ok && err.contains("security.secrets_key"), "{err}");
    t.stop().await;
}

on_each_store!(
    secrets_are_sealed_at_rest,
    a_key_rotation_seals_every_secret_again
);
