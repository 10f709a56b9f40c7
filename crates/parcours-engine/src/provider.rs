//! SMS and push through an HTTP provider with Twilio's request shape: a form-encoded `POST`
//! of `To`, `From`, `Body` (and `Title` for push) with HTTP Basic authentication (account id
//! and secret), the message's key as idempotency key (`I-Twilio-Idempotency-Token` and
//! `Idempotency-Key`), and Parcours' signed address as `StatusCallback`, where the provider
//! reports what became of the message.
//!
//! The provider is the operator's choice (configuration, not a marketer's document), so it may
//! be on a private address.

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Uri;
use parcours_channels::{Outgoing, SendError, Sender};
use parcours_core::journey::MessageChannel;

use crate::outbound::{self, HttpClient};

/// How long a provider has to answer.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The most of a refusal's body kept in the delivery log.
const BODY_SHOWN: usize = 300;

/// A provider's own runtime. It may be dropped anywhere, an async thread included (the
/// engine that holds the providers may be dropped there, where dropping a runtime the usual
/// way panics): it then shuts down in the background.
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl OwnRuntime {
    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.0
            .as_ref()
            .expect("the runtime lives until the provider is dropped")
            .block_on(f)
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// A provider for one channel.
pub struct HttpProvider {
    channel: MessageChannel,
    url: Uri,
    authorization: Option<String>,
    from: String,
    client: HttpClient,
    rt: OwnRuntime,
}

impl HttpProvider {
    /// `url` is the provider's messages endpoint (Twilio:
    /// `https://api.twilio.com/2010-04-01/Accounts/AC…/Messages.json`); `username` and
    /// `password` its Basic credentials (Twilio: the account SID and auth token); `from` the
    /// sender (a number in E.164, a messaging service, an app id).
    pub fn new(
        channel: MessageChannel,
        url: &str,
        username: Option<&str>,
        password: Option<&str>,
        from: &str,
    ) -> Result<Self, String> {
        outbound::check_url(url, true)?;
        let url: Uri = url
            .parse()
            .map_err(|e| format!("the provider URL `{url}` is not valid: {e}"))?;
        if from.trim().is_empty() {
            return Err("the sender (`from`) is empty".into());
        }
        let authorization = match (username, password) {
            (Some(u), Some(p)) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )),
            (None, None) => None,
            _ => return Err("give both the username and the password, or neither".into()),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("the provider's runtime does not start: {e}"))?;
        let client = {
            let _entered = rt.enter();
            outbound::client(true)
        };
        Ok(Self {
            channel,
            url,
            authorization,
            from: from.to_string(),
            client,
            rt: OwnRuntime(Some(rt)),
        })
    }

    /// The form a message is sent as.
    pub fn form(&self, m: &Outgoing) -> String {
        let mut fields: Vec<(&str, &str)> = vec![("To", &m.to), ("From", &self.from)];
        if let Some(text) = &m.text {
            fields.push(("Body", text));
        }
        if let Some(title) = &m.title {
            fields.push(("Title", title));
        }
        if let Some(url) = &m.status_callback {
            fields.push(("StatusCallback", url));
        }
        fields
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// `application/x-www-form-urlencoded` encoding of a value.
fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl Sender for HttpProvider {
    fn name(&self) -> &'static str {
        "http provider"
    }

    fn send(&self, m: &Outgoing) -> Result<(), SendError> {
        if m.channel != self.channel {
            return Err(SendError::Permanent(format!(
                "this provider sends {}, not {}",
                self.channel.as_str(),
                m.channel.as_str()
            )));
        }
        let mut req = hyper::Request::post(self.url.clone())
            .header("content-type", "application/x-www-form-urlencoded")
            .header("i-twilio-idempotency-token", m.key.as_str())
            .header("idempotency-key", m.key.as_str())
            .header("user-agent", "parcours");
        if let Some(a) = &self.authorization {
            req = req.header("authorization", a.as_str());
        }
        let req = req
            .body(Full::new(Bytes::from(self.form(m))))
            .map_err(|e| SendError::Permanent(format!("the request cannot be built: {e}")))?;
        self.rt.block_on(async {
            let answer = tokio::time::timeout(TIMEOUT, self.client.request(req))
                .await
                .map_err(|_| {
                    SendError::Retry(format!("the provider did not answer in {TIMEOUT:?}"))
                })?
                .map_err(|e| SendError::Retry(format!("the provider cannot be reached: {e}")))?;
            let status = answer.status();
            if status.is_success() {
                return Ok(());
            }
            let body = tokio::time::timeout(Duration::from_secs(5), answer.into_body().collect())
                .await
                .ok()
                .and_then(Result::ok)
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let mut said = String::from_utf8_lossy(&body).into_owned();
            if said.len() > BODY_SHOWN {
                let mut end = BODY_SHOWN;
                while !said.is_char_boundary(end) {
                    end -= 1;
                }
                said.truncate(end);
            }
            let what = format!("the provider answered {status}: {said}");
            if status.as_u16() == 429 || status.is_server_error() || status.as_u16() == 408 {
                Err(SendError::Retry(what))
            } else {
                Err(SendError::Permanent(what))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The engine holds its channels' providers and may be dropped on an async thread (a
    /// node stopping): their own runtimes must not panic there.
    #[tokio::test]
    async fn providers_can_be_dropped_on_an_async_thread() {
        let sms = HttpProvider::new(
            MessageChannel::Sms,
            "http://127.0.0.1:9/Messages.json",
            None,
            None,
            "+33600000000",
        )
        .unwrap();
        // `whsec_` and the base64 of 24 bytes.
        let webhook = WebhookCaller::new("whsec_MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIz", false).unwrap();
        drop(sms);
        drop(webhook);
    }

    #[test]
    fn messages_are_form_encoded_with_their_callback() {
        let p = HttpProvider::new(
            MessageChannel::Sms,
            "http://127.0.0.1:9/2010-04-01/Accounts/AC1/Messages.json",
            Some("AC1"),
            Some("secret"),
            "+33600000000",
        )
        .unwrap();
        let m = Outgoing {
            channel: MessageChannel::Sms,
            to: "+33611223344".into(),
            subject: None,
            html: None,
            text: Some("Your cart & 2 items: 10 € off!".into()),
            title: None,
            key: "r1:sms:4".into(),
            unsubscribe: None,
            links: vec![],
            status_callback: Some("https://p.example/v1/m/w1/r1:sms:4/status/ab".into()),
            secret: Some("s".into()),
            journey: "cart".into(),
            step: "sms".into(),
            run: "r1".into(),
            profile: "p1".into(),
        };
        assert_eq!(
            p.form(&m),
            "To=%2B33611223344&From=%2B33600000000&Body=Your+cart+%26+2+items%3A+10+%E2%82%AC+off%21\
             &StatusCallback=https%3A%2F%2Fp.example%2Fv1%2Fm%2Fw1%2Fr1%3Asms%3A4%2Fstatus%2Fab"
        );
        assert!(HttpProvider::new(MessageChannel::Sms, "ftp://x/", None, None, "+1").is_err());
        assert!(
            HttpProvider::new(MessageChannel::Sms, "http://x/", Some("u"), None, "+1").is_err()
        );
        assert!(HttpProvider::new(MessageChannel::Sms, "http://x/", None, None, " ").is_err());
    }
}

/// The lane of journeys' webhook calls.
pub const WEBHOOK_LANE: &str = "journey:webhook";

/// What a webhook step's outbox row holds.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WebhookCall {
    pub url: String,
    /// The rendered body.
    pub body: String,
    pub journey: String,
    pub step: String,
    pub run: String,
    pub profile: String,
}

/// Calls webhook steps' URLs, signed per Standard Webhooks with the node's secret
/// (`webhook-id` is the call's key, the same on every try).
pub struct WebhookCaller {
    secret: String,
    allow_private: bool,
    client: HttpClient,
    rt: OwnRuntime,
}

impl WebhookCaller {
    /// `secret` is `whsec_` and the base64 of 24 to 64 bytes; `allow_private` lets calls reach
    /// loopback and private addresses (as for destinations).
    pub fn new(secret: &str, allow_private: bool) -> Result<Self, String> {
        if crate::destinations::sign(secret, "x", 0, b"").is_none() {
            return Err("the webhook signing secret must be `whsec_` and the base64 of 24 to 64 random bytes".into());
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("the webhook runtime does not start: {e}"))?;
        let client = {
            let _entered = rt.enter();
            outbound::client(allow_private)
        };
        Ok(Self {
            secret: secret.to_string(),
            allow_private,
            client,
            rt: OwnRuntime(Some(rt)),
        })
    }

    /// Sends a notice that is not a step's call (an erasure's) to `url`, under `key`: three
    /// tries, a second and then two apart. What the receiver answered, or why it failed.
    pub fn notify(
        &self,
        url: &str,
        key: &str,
        body: String,
        now_ms: i64,
    ) -> Result<String, String> {
        let mut last = String::new();
        for attempt in 0..3i64 {
            if attempt > 0 {
                std::thread::sleep(std::time::Duration::from_secs(attempt as u64));
            }
            match self.post(key, url, &body, now_ms + attempt * 1000) {
                Ok(answer) => return Ok(answer),
                Err(SendError::Retry(e)) => last = e,
                Err(e) => return Err(e.to_string()),
            }
        }
        Err(last)
    }

    /// Calls one: `Ok` on a 2xx answer.
    pub fn call(&self, key: &str, call: &WebhookCall, now_ms: i64) -> Result<String, SendError> {
        self.post(key, &call.url, &call.body, now_ms)
    }

    /// Posts `body` to `url`, signed under `key`: `Ok` on a 2xx answer.
    fn post(&self, key: &str, url: &str, body: &str, now_ms: i64) -> Result<String, SendError> {
        outbound::check_url(url, self.allow_private).map_err(SendError::Permanent)?;
        let url: Uri = url
            .parse()
            .map_err(|e| SendError::Permanent(format!("the URL is not valid: {e}")))?;
        let timestamp = now_ms.div_euclid(1000);
        let signature = crate::destinations::sign(&self.secret, key, timestamp, body.as_bytes())
            .ok_or_else(|| SendError::Permanent("the signing secret is not valid".into()))?;
        let json = serde_json::from_str::<serde_json::Value>(body).is_ok();
        let req = hyper::Request::post(url)
            .header(
                "content-type",
                if json {
                    "application/json"
                } else {
                    "text/plain; charset=utf-8"
                },
            )
            .header("webhook-id", key)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .header("user-agent", "parcours")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| SendError::Permanent(format!("the request cannot be built: {e}")))?;
        self.rt.block_on(async {
            let answer = tokio::time::timeout(TIMEOUT, self.client.request(req))
                .await
                .map_err(|_| SendError::Retry(format!("no answer in {TIMEOUT:?}")))?
                .map_err(|e| SendError::Retry(format!("cannot be reached: {e}")))?;
            let status = answer.status();
            if status.is_success() {
                return Ok(format!("answered {status}"));
            }
            let what = format!("answered {status}");
            if status.as_u16() == 429 || status.is_server_error() || status.as_u16() == 408 {
                Err(SendError::Retry(what))
            } else {
                Err(SendError::Permanent(what))
            }
        })
    }
}
