//! Audience destinations: what a destination is (its stored document and how it is checked),
//! what it sends (a signed batch of membership changes with the identifiers its receiver
//! matches on) and how one request is made. Delivery itself is on the outbox
//! ([`crate::delivery`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use hyper::{Request, Uri};
use parcours_core::adhash;
use parcours_core::audience;
use parcours_core::time::{format_timestamp, Millis};
use parcours_core::Profile;
use parcours_store::{DefinitionKind, MembershipChange, Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::definitions::{put_version, stored_form, AudienceDoc, DefinitionError};
use crate::outbound::{self, HttpClient};

/// How the profile is described in each change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentifierFormat {
    /// The profile id only.
    None,
    /// user id, email and phone in clear.
    #[default]
    Plain,
    /// Normalised and SHA-256 hashed per Google Customer Match.
    Google,
    /// Normalised and SHA-256 hashed per Meta Custom Audiences.
    Meta,
}

/// The stored form of a destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationDoc {
    pub name: String,
    /// `http://` or `https://` address that receives the changes (POST).
    pub url: String,
    /// Signing secret, `whsec_` then base64 of 24 to 64 bytes (sealed in storage when the
    /// node has a key, [`parcours_core::sealed`]).
    #[serde(with = "parcours_core::sealed::serde_sealed")]
    pub secret: String,
    /// The audiences whose changes are sent; empty sends every audience of the workspace.
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default)]
    pub identifiers: IdentifierFormat,
    /// Region for phone numbers written without a country code (ISO 3166 alpha-2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// A paused destination keeps its place and resumes from it.
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Requests in flight at once (1 to 64; 1, the default, keeps changes in order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    /// Requests started per second at most (none: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_second: Option<f64>,
    /// The consent a member needs to be added: to this purpose (`marketing` by default;
    /// `none` sends every member, for a destination that is not marketing) ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// ... on this channel (`ads` by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

impl DestinationDoc {
    /// The purpose and channel a member's consent must allow, or `None` (`purpose: none`).
    pub fn consent(&self) -> Option<(&str, &str)> {
        let purpose = self.purpose.as_deref().unwrap_or("marketing");
        (purpose != "none").then(|| (purpose, self.channel.as_deref().unwrap_or("ads")))
    }
}

fn enabled() -> bool {
    true
}

/// How destinations are delivered (the same for every destination of a node).
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Changes per request.
    pub batch: usize,
    /// A receiver that has not answered by then has failed this attempt.
    pub timeout: Duration,
    /// The first retry waits this long; each next one twice as long, up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// How often an idle destination looks for new changes.
    pub poll: Duration,
    /// How long a sender holds a request it claimed (it extends the lease while it waits
    /// for the receiver); a node that dies holds it this long at most.
    pub lease: Duration,
    /// Attempts before a request is given up (dead, and shown in the delivery log).
    pub max_attempts: u32,
    /// Whether receivers may be on loopback, private, link-local or other non-public
    /// addresses.
    pub allow_private_addresses: bool,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            batch: 100,
            timeout: Duration::from_secs(10),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            poll: Duration::from_millis(200),
            lease: Duration::from_secs(30),
            max_attempts: 25,
            allow_private_addresses: false,
        }
    }
}

impl SyncConfig {
    /// The wait before retry number `failures` (1 is the first retry).
    pub fn backoff(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1));
        self.retry_base.saturating_mul(factor).min(self.retry_max)
    }
}

/// A new signing secret from 32 random bytes.
pub fn new_secret(bytes: &[u8; 32]) -> String {
    format!("whsec_{}", BASE64.encode(bytes))
}

fn secret_key(secret: &str) -> Option<Vec<u8>> {
    let key = BASE64.decode(secret.strip_prefix("whsec_")?).ok()?;
    (24..=64).contains(&key.len()).then_some(key)
}

/// The `webhook-signature` header value: `v1,` and the base64 HMAC-SHA256 of
/// `id.timestamp.body` keyed with the decoded secret (Standard Webhooks).
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(&secret_key(secret)?).ok()?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    Some(format!("v1,{}", BASE64.encode(mac.finalize().into_bytes())))
}

fn invalid(message: impl Into<String>) -> DefinitionError {
    DefinitionError::Invalid {
        code: "invalid_destination",
        message: message.into(),
    }
}

/// Checks a destination against the workspace (its audiences exist) and the node's rule on
/// receivers ([`outbound`]), and stores its next version. The worker restarts with it; its
/// place in the change log is kept.
pub fn save_destination(
    store: &dyn Store,
    ws: &str,
    id: &str,
    doc: &DestinationDoc,
    now: Millis,
    allow_private: bool,
) -> Result<parcours_store::Definition, DefinitionError> {
    audience::check_id(id).map_err(|m| DefinitionError::Invalid {
        code: "invalid_id",
        message: m,
    })?;
    if doc.name.trim().is_empty() {
        return Err(invalid("`name` must not be empty"));
    }
    outbound::check_url(&doc.url, allow_private).map_err(invalid)?;
    if secret_key(&doc.secret).is_none() {
        return Err(invalid(
            "`secret` must be `whsec_` followed by base64 of 24 to 64 bytes (leave it out to get one)",
        ));
    }
    if let Some(region) = &doc.region {
        if region.len() != 2 || !region.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(invalid("`region` is a two-letter country code, such as FR"));
        }
    }
    if doc.max_in_flight.is_some_and(|n| !(1..=64).contains(&n)) {
        return Err(invalid("`max_in_flight` is from 1 to 64"));
    }
    if doc
        .max_per_second
        .is_some_and(|r| !r.is_finite() || !(0.01..=10_000.0).contains(&r))
    {
        return Err(invalid("`max_per_second` is from 0.01 to 10000"));
    }
    for (name, v) in [("purpose", &doc.purpose), ("channel", &doc.channel)] {
        let ok = |s: &str| {
            (1..=64).contains(&s.len())
                && s.starts_with(|c: char| c.is_ascii_lowercase())
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        if v.as_deref().is_some_and(|s| !ok(s)) {
            return Err(invalid(format!(
                "`{name}` is 1 to 64 of a-z 0-9 _, starting with a letter (a consent's purpose or channel)"
            )));
        }
    }
    let existing = store.definitions(Some(ws))?;
    let audiences: BTreeSet<&str> = existing
        .iter()
        .filter(|d| d.kind == DefinitionKind::Audience)
        .map(|d| d.id.as_str())
        .collect();
    if let Some(unknown) = doc
        .audiences
        .iter()
        .find(|a| !audiences.contains(a.as_str()))
    {
        return Err(DefinitionError::Invalid {
            code: "invalid_audience_reference",
            message: format!("`audiences`: no audience `{unknown}` in this workspace"),
        });
    }
    let previous = existing
        .into_iter()
        .find(|d| d.kind == DefinitionKind::Destination && d.id == id);
    let value = stored_form(doc, "destination")?;
    put_version(
        store,
        ws,
        DefinitionKind::Destination,
        id,
        value,
        previous,
        now,
    )
}

/// What ad platforms and receivers match a person on, read from a profile: identifiers
/// (normalised) first, then Segment's reserved traits (`firstName` or `first_name`,
/// `address.city`, `address.postal_code`, …), then their flat forms.
#[derive(Debug, Clone, Default)]
pub struct Contact {
    pub user_id: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub zip: Option<String>,
    pub country: Option<String>,
    pub birthday: Option<String>,
    pub gender: Option<String>,
}

fn identifier(p: &Profile, kind: &str) -> Option<String> {
    p.identifiers
        .iter()
        .find(|i| i.kind == kind)
        .map(|i| i.value.clone())
}

/// The first of these traits that is a string; `a.b` reads field `b` of an object trait `a`.
fn trait_str(p: &Profile, names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| {
        let value = match n.split_once('.') {
            Some((object, field)) => p.traits.get(object)?.value.get(field)?,
            None => &p.traits.get(*n)?.value,
        };
        value
            .as_str()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    })
}

fn hashed(v: Option<String>) -> String {
    v.map(|v| adhash::sha256_hex(&v)).unwrap_or_default()
}

impl Contact {
    pub fn of(p: &Profile) -> Self {
        Self {
            user_id: identifier(p, "user_id"),
            email: identifier(p, "email").or_else(|| trait_str(p, &["email"])),
            phone: identifier(p, "phone").or_else(|| trait_str(p, &["phone"])),
            first_name: trait_str(p, &["firstName", "first_name"]),
            last_name: trait_str(p, &["lastName", "last_name"]),
            city: trait_str(p, &["address.city", "city"]),
            state: trait_str(p, &["address.state", "state"]),
            zip: trait_str(
                p,
                &[
                    "address.postal_code",
                    "address.postalCode",
                    "postal_code",
                    "postalCode",
                    "zip",
                ],
            ),
            country: trait_str(p, &["address.country", "country"]),
            birthday: trait_str(p, &["birthday"]),
            gender: trait_str(p, &["gender"]),
        }
    }

    /// Whether a platform can match this person at all: an email or a phone.
    pub fn has_key(&self) -> bool {
        self.email.is_some() || self.phone.is_some()
    }

    /// Google Customer Match: email, phone, first and last name hashed; country and postal
    /// code in clear. Empty strings where a value is missing or cannot be normalised.
    pub fn google(&self, region: Option<&str>) -> [(&'static str, String); 6] {
        let phone = self.phone.as_deref();
        [
            (
                "email",
                hashed(self.email.as_deref().and_then(adhash::google_email)),
            ),
            (
                "phone",
                hashed(phone.and_then(|v| adhash::google_phone(v, region))),
            ),
            (
                "first_name",
                hashed(self.first_name.as_deref().and_then(adhash::google_name)),
            ),
            (
                "last_name",
                hashed(self.last_name.as_deref().and_then(adhash::google_name)),
            ),
            (
                "country",
                self.country
                    .as_deref()
                    .unwrap_or_default()
                    .trim()
                    .to_uppercase(),
            ),
            (
                "zip",
                self.zip.as_deref().unwrap_or_default().trim().to_string(),
            ),
        ]
    }

    /// Meta Custom Audiences: every field normalised and hashed.
    pub fn meta(&self, region: Option<&str>) -> [(&'static str, String); 12] {
        let phone = self.phone.as_deref();
        let birthday = self.birthday.as_deref().and_then(adhash::meta_birthday);
        let (doby, dobm, dobd) = match birthday {
            Some((y, m, d)) => (Some(y), Some(m), Some(d)),
            None => (None, None, None),
        };
        [
            (
                "email",
                hashed(self.email.as_deref().and_then(adhash::meta_email)),
            ),
            (
                "phone",
                hashed(phone.and_then(|v| adhash::meta_phone(v, region))),
            ),
            (
                "fn",
                hashed(self.first_name.as_deref().and_then(adhash::meta_name)),
            ),
            (
                "ln",
                hashed(self.last_name.as_deref().and_then(adhash::meta_name)),
            ),
            (
                "ct",
                hashed(self.city.as_deref().and_then(adhash::meta_city)),
            ),
            (
                "st",
                hashed(self.state.as_deref().and_then(adhash::meta_state)),
            ),
            (
                "zip",
                hashed(self.zip.as_deref().and_then(adhash::meta_zip)),
            ),
            (
                "country",
                hashed(self.country.as_deref().and_then(adhash::meta_country)),
            ),
            ("doby", hashed(doby)),
            ("dobm", hashed(dobm)),
            ("dobd", hashed(dobd)),
            (
                "gen",
                hashed(self.gender.as_deref().and_then(adhash::meta_gender)),
            ),
        ]
    }
}

fn object<const N: usize>(fields: [(&'static str, String); N]) -> Value {
    Value::Object(
        fields
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.to_string(), Value::String(v)))
            .collect(),
    )
}

/// The `profile` of one change, in the destination's format.
fn describe(
    store: &dyn Store,
    ws: &str,
    doc: &DestinationDoc,
    profile: &str,
) -> Result<Value, StoreError> {
    if doc.identifiers == IdentifierFormat::None {
        return Ok(Value::Null);
    }
    let Some(p) = store.profile(ws, profile)? else {
        return Ok(Value::Null);
    };
    let c = Contact::of(&p);
    let region = doc.region.as_deref();
    Ok(match doc.identifiers {
        IdentifierFormat::Google => object(c.google(region)),
        IdentifierFormat::Meta => object(c.meta(region)),
        _ => json!({"user_id": c.user_id, "email": c.email, "phone": c.phone}),
    })
}

/// The request body for a batch of changes.
pub fn payload(
    store: &dyn Store,
    ws: &str,
    id: &str,
    doc: &DestinationDoc,
    changes: &[MembershipChange],
    now: Millis,
) -> Result<Value, StoreError> {
    let names: BTreeMap<String, String> = store
        .definitions(Some(ws))?
        .into_iter()
        .filter(|d| d.kind == DefinitionKind::Audience)
        .filter_map(|d| {
            let doc: AudienceDoc = serde_json::from_value(d.doc).ok()?;
            Some((d.id, doc.name))
        })
        .collect();
    let mut out = Vec::with_capacity(changes.len());
    for c in changes {
        out.push(json!({
            "id": c.id,
            "action": if c.entered { "add" } else { "remove" },
            "audience": {"id": c.audience_id, "name": names.get(&c.audience_id)},
            "profile_id": c.profile_id,
            "profile": describe(store, ws, doc, &c.profile_id)?,
            "at": format_timestamp(c.at),
            "cause": c.cause,
        }));
    }
    Ok(json!({
        "type": "audience.changes",
        "timestamp": format_timestamp(now),
        "data": {"workspace": ws, "destination": id, "changes": out},
    }))
}

/// The note of a journey run that queued her for a destination (an `ad_audience` step); its
/// detail names the destination between backquotes.
pub const AD_AUDIENCE_QUEUED: &str = "ad_audience_queued";

/// The detail of an [`AD_AUDIENCE_QUEUED`] note (what [`queued_destination`] reads).
pub fn queued_note(destination: &str, add: bool, paused: bool) -> String {
    format!(
        "{} destination `{destination}`{}",
        if add { "added to" } else { "removed from" },
        if paused {
            " (the destination is paused: it goes when it resumes)"
        } else {
            ""
        }
    )
}

/// The destination an [`AD_AUDIENCE_QUEUED`] note names.
pub fn queued_destination(detail: &str) -> Option<&str> {
    detail.split('`').nth(1).filter(|d| !d.is_empty())
}

/// The destinations that may have received these profiles: each destination of the
/// workspace that sends one of the audiences they are in or were ever in, and each one a
/// journey's `ad_audience` step queued them for (GDPR Art. 19: the recipients an erasure
/// must be told to), with its document. Read before the erasure.
pub fn recipients_of(
    store: &dyn Store,
    ws: &str,
    profiles: &[String],
) -> Result<Vec<(String, DestinationDoc)>, StoreError> {
    let mut audiences = BTreeSet::new();
    let mut by_journeys = BTreeSet::new();
    for p in profiles {
        for run in store.runs_of(ws, p, 100_000)? {
            by_journeys.extend(
                store
                    .run_notes(ws, &run.run_id)?
                    .iter()
                    .filter(|n| n.code == AD_AUDIENCE_QUEUED)
                    .filter_map(|n| queued_destination(&n.detail))
                    .map(str::to_string),
            );
        }
        audiences.extend(store.memberships(ws, p)?.into_iter().map(|m| m.audience_id));
        audiences.extend(
            store
                .membership_history(ws, p, 10_000)?
                .into_iter()
                .filter(|c| c.entered)
                .map(|c| c.audience_id),
        );
    }
    if audiences.is_empty() && by_journeys.is_empty() {
        return Ok(Vec::new());
    }
    Ok(store
        .definitions(Some(ws))?
        .into_iter()
        .filter(|d| d.kind == DefinitionKind::Destination)
        .filter_map(|d| {
            let doc = crate::definitions::readable::<DestinationDoc>(&d)?;
            let sends_hers = (!audiences.is_empty()
                && (doc.audiences.is_empty()
                    || doc.audiences.iter().any(|a| audiences.contains(a))))
                || by_journeys.contains(&d.id);
            sends_hers.then_some((d.id, doc))
        })
        .collect())
}

/// The notice that tells a destination a person it received was erased: `privacy.erasure`,
/// with each profile as the destination knows it (its identifier format), so it can find
/// and delete her.
pub fn erasure_payload(
    store: &dyn Store,
    ws: &str,
    id: &str,
    doc: &DestinationDoc,
    profiles: &[String],
    request: &str,
    now: Millis,
) -> Result<Value, StoreError> {
    let mut out = Vec::with_capacity(profiles.len());
    for p in profiles {
        out.push(json!({"profile_id": p, "profile": describe(store, ws, doc, p)?}));
    }
    Ok(json!({
        "type": "privacy.erasure",
        "timestamp": format_timestamp(now),
        "data": {"workspace": ws, "destination": id, "request": request, "profiles": out},
    }))
}

/// Sends an erasure notice, signed like every request of the destination, under a
/// `webhook-id` of its own (the same on every try: a receiver can drop repeats). Three tries,
/// a second and then two apart; the receiver's status, or why it failed.
pub async fn send_notice(
    doc: &DestinationDoc,
    webhook_id: &str,
    body: Vec<u8>,
    allow_private: bool,
    now: Millis,
) -> Result<u16, String> {
    let url = outbound::check_url(&doc.url, allow_private)?;
    let client = outbound::client(allow_private);
    let body = Bytes::from(body);
    let mut last = String::new();
    for attempt in 0..3u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
        }
        let timestamp = now.div_euclid(1000) + i64::from(attempt);
        let Some(signature) = sign(&doc.secret, webhook_id, timestamp, &body) else {
            return Err("the signing secret is not valid".into());
        };
        let headers = [
            ("webhook-id", webhook_id.to_string()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signature),
        ];
        match post(
            &client,
            &url,
            headers,
            body.clone(),
            Duration::from_secs(10),
        )
        .await
        {
            Ok((status, _)) => return Ok(status),
            Err(f) if f.permanent => return Err(f.message),
            Err(f) => last = f.message,
        }
    }
    Err(last)
}

/// A journey's `ad_audience` step adding her to (or removing her from) a destination.
pub struct JourneyChange<'a> {
    /// The step's key: the change's id, the same on every retry of the decision.
    pub key: &'a str,
    pub add: bool,
    pub journey: &'a str,
    pub journey_name: Option<&'a str>,
    pub step: &'a str,
    pub run: &'a str,
    pub profile: &'a str,
}

/// The request body for one journey change, in the same form as audience changes: the
/// journey stands where the audience would (a receiver keeps one list per journey), and
/// `journey` says which step and run made it.
pub fn journey_payload(
    store: &dyn Store,
    ws: &str,
    id: &str,
    doc: &DestinationDoc,
    c: &JourneyChange<'_>,
    now: Millis,
) -> Result<Value, StoreError> {
    Ok(json!({
        "type": "audience.changes",
        "timestamp": format_timestamp(now),
        "data": {"workspace": ws, "destination": id, "changes": [{
            "id": c.key,
            "action": if c.add { "add" } else { "remove" },
            "audience": {"id": c.journey, "name": c.journey_name},
            "profile_id": c.profile,
            "profile": describe(store, ws, doc, c.profile)?,
            "at": format_timestamp(now),
            "cause": "journey",
            "journey": {"id": c.journey, "step": c.step, "run": c.run},
        }]},
    }))
}

/// Why an attempt failed, and how long the receiver asked us to wait.
pub(crate) struct Failure {
    pub message: String,
    pub status: Option<u16>,
    pub retry_after: Option<Duration>,
    /// Trying again cannot help (the destination must be fixed first).
    pub permanent: bool,
}

impl Failure {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            status: None,
            retry_after: None,
            permanent: false,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            permanent: true,
            ..Self::new(message)
        }
    }
}

/// Reads at most 512 bytes of an answer, within the timeout.
async fn excerpt(body: hyper::body::Incoming, timeout: Duration) -> String {
    match tokio::time::timeout(timeout, Limited::new(body, 512).collect()).await {
        Ok(Ok(b)) => String::from_utf8_lossy(&b.to_bytes()).trim().to_string(),
        _ => String::new(),
    }
}

/// One POST; on 2xx, the status and the start of the answer.
pub(crate) async fn post(
    client: &HttpClient,
    url: &Uri,
    headers: [(&'static str, String); 3],
    body: Bytes,
    timeout: Duration,
) -> Result<(u16, String), Failure> {
    let mut req = Request::post(url.clone())
        .header(CONTENT_TYPE, "application/json")
        .header(USER_AGENT, concat!("parcours/", env!("CARGO_PKG_VERSION")));
    for (name, value) in headers {
        req = req.header(name, value);
    }
    let req = req
        .body(Full::new(body))
        .map_err(|e| Failure::permanent(format!("request: {e}")))?;
    let response = match tokio::time::timeout(timeout, client.request(req)).await {
        Err(_) => return Err(Failure::new(format!("no answer within {timeout:?}"))),
        Ok(Err(e)) => return Err(Failure::new(format!("connection: {e}"))),
        Ok(Ok(r)) => r,
    };
    let status = response.status();
    if status.is_success() {
        let text = excerpt(response.into_body(), timeout).await;
        return Ok((status.as_u16(), text));
    }
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = excerpt(response.into_body(), timeout).await;
    Err(Failure {
        message: format!(
            "HTTP {}{}{text}",
            status.as_u16(),
            if text.is_empty() { "" } else { ": " }
        ),
        status: Some(status.as_u16()),
        retry_after,
        permanent: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queued_note_names_its_destination() {
        for (add, paused) in [(true, false), (false, true)] {
            assert_eq!(
                queued_destination(&queued_note("meta-ads", add, paused)),
                Some("meta-ads")
            );
        }
    }

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification.
        let sig = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(
            sig.as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
        assert_eq!(sign("whsec_c2hvcnQ=", "m", 1, b"{}"), None, "a 5-byte key");
        assert_eq!(
            sign("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "m", 1, b"{}"),
            None
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let c = SyncConfig {
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            ..SyncConfig::default()
        };
        let waits: Vec<u64> = (1..=8).map(|n| c.backoff(n).as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(c.backoff(1_000), Duration::from_secs(60));
    }

    #[test]
    fn new_secrets_are_valid_signing_keys() {
        let s = new_secret(&[7; 32]);
        assert!(s.starts_with("whsec_"));
        assert!(sign(&s, "m", 1, b"{}").is_some());
    }
}
