//! Standard Webhooks signatures, computed here independently of Parcours' own code.

use axum::http::HeaderMap;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Asserts that a request's `webhook-signature` is the HMAC-SHA256 of `id.timestamp.body`
/// keyed with the decoded `whsec_` secret.
pub fn assert_signed(secret: &str, headers: &HeaderMap, raw: &[u8]) {
    let id = headers["webhook-id"].to_str().unwrap();
    let ts = headers["webhook-timestamp"].to_str().unwrap();
    let key = BASE64
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(raw);
    let expected = format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()));
    let header = headers["webhook-signature"].to_str().unwrap();
    assert!(
        header.split(' ').any(|s| s == expected),
        "signature {header} is not {expected}"
    );
}
