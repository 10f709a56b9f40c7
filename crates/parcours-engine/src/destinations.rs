//! Audience destinations: webhooks that receive membership changes within seconds.
//!
//! Each destination has its own worker thread, its own HTTP connections and its own position
//! in the membership change log ([`destination_cursor`]). A worker sends the changes after its
//! position in batches, signed per Standard Webhooks, and moves its position only once the
//! receiver answered 2xx; a failure is retried with exponential backoff, the same batch again,
//! so nothing is skipped and order is kept. Nothing else waits for a worker: ingestion, unify,
//! audiences and the other destinations go on while one receiver is slow or down.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
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
use parcours_core::time::{format_timestamp, Clock, Millis};
use parcours_core::Profile;
use parcours_store::{
    destination_cursor, AudienceWrite, DefinitionKind, MembershipChange, Store, StoreError,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::audiences::{put_version, AudienceDoc, DefinitionError};
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
    /// Signing secret, `whsec_` then base64 of 24 to 64 bytes.
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
}

fn enabled() -> bool {
    true
}

/// The supervisor's name in health reports.
pub const DESTINATIONS: &str = "destinations";

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
    /// How often an idle worker looks for new changes.
    pub poll: Duration,
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

/// What a node knows about the delivery of one destination.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DeliveryStatus {
    /// `starting`, `idle` (everything sent), `delivering`, `retrying`, `paused`, `standby`
    /// (another node of the cluster delivers), or `unreadable` (its stored definition cannot
    /// be read: delete it and create it again).
    pub state: &'static str,
    /// The version of the destination being delivered (a new one takes over within a second).
    pub version: i64,
    /// The last change the receiver acknowledged.
    pub cursor: i64,
    /// Changes acknowledged since this node started.
    pub delivered: u64,
    /// Failed attempts in a row (0 once one succeeds).
    pub failures: u32,
    pub last_error: Option<String>,
    pub last_success_at: Option<Millis>,
    pub next_attempt_at: Option<Millis>,
}

/// Delivery status per (workspace, destination), shared with the API.
pub type StatusBoard = Arc<Mutex<BTreeMap<(String, String), DeliveryStatus>>>;

fn update(board: &StatusBoard, key: &(String, String), f: impl FnOnce(&mut DeliveryStatus)) {
    let mut board = board.lock().unwrap_or_else(|e| e.into_inner());
    f(board.entry(key.clone()).or_default());
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
    let value = crate::audiences::stored_form(doc, "destination")?;
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

/// The destinations of a workspace that send an audience's changes.
pub fn destinations_using(
    store: &dyn Store,
    ws: &str,
    audience: &str,
) -> Result<Vec<String>, StoreError> {
    Ok(store
        .definitions(Some(ws))?
        .into_iter()
        .filter(|d| d.kind == DefinitionKind::Destination)
        .filter(|d| {
            serde_json::from_value::<DestinationDoc>(d.doc.clone())
                .is_ok_and(|doc| doc.audiences.iter().any(|a| a == audience))
        })
        .map(|d| d.id)
        .collect())
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

/// Why an attempt failed, and how long the receiver asked us to wait.
struct Failure {
    message: String,
    retry_after: Option<Duration>,
}

impl Failure {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retry_after: None,
        }
    }
}

/// One POST; `Ok` on 2xx.
async fn post(
    client: &HttpClient,
    url: &Uri,
    headers: [(&'static str, String); 3],
    body: Bytes,
    timeout: Duration,
) -> Result<(), Failure> {
    let mut req = Request::post(url.clone())
        .header(CONTENT_TYPE, "application/json")
        .header(USER_AGENT, concat!("parcours/", env!("CARGO_PKG_VERSION")));
    for (name, value) in headers {
        req = req.header(name, value);
    }
    let req = req
        .body(Full::new(body))
        .map_err(|e| Failure::new(format!("request: {e}")))?;
    let response = match tokio::time::timeout(timeout, client.request(req)).await {
        Err(_) => return Err(Failure::new(format!("no answer within {timeout:?}"))),
        Ok(Err(e)) => return Err(Failure::new(format!("connection: {e}"))),
        Ok(Ok(r)) => r,
    };
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = match tokio::time::timeout(
        timeout,
        Limited::new(response.into_body(), 512).collect(),
    )
    .await
    {
        Ok(Ok(b)) => String::from_utf8_lossy(&b.to_bytes()).trim().to_string(),
        _ => String::new(),
    };
    Err(Failure {
        message: format!(
            "HTTP {}{}{text}",
            status.as_u16(),
            if text.is_empty() { "" } else { ": " }
        ),
        retry_after,
    })
}

/// What a worker needs.
struct Worker {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: SyncConfig,
    key: (String, String),
    doc: DestinationDoc,
    url: Uri,
    board: StatusBoard,
    cancel: Arc<AtomicBool>,
    ownership: Option<Arc<crate::cluster::Ownership>>,
}

impl Worker {
    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    /// Sleeps, waking early when cancelled.
    fn pause(&self, d: Duration) {
        let until = std::time::Instant::now() + d;
        while !self.cancelled() {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }

    fn run(self) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "destination worker cannot start");
                return;
            }
        };
        let client = rt.block_on(async { outbound::client(self.config.allow_private_addresses) });
        let cursor_name = destination_cursor(&self.key.0, &self.key.1);
        while !self.cancelled() {
            // In a cluster, the holder of bucket 0 delivers (as it evaluates audiences).
            if let Some(own) = &self.ownership {
                if !own.held().contains(&0) {
                    update(&self.board, &self.key, |s| s.state = "standby");
                    self.pause(Duration::from_millis(500));
                    continue;
                }
            }
            match self.next_batch(&cursor_name) {
                Ok(None) => {
                    update(&self.board, &self.key, |s| s.state = "idle");
                    self.pause(self.config.poll);
                }
                Ok(Some((changes, through))) => {
                    if !changes.is_empty() {
                        self.deliver(&rt, &client, &changes);
                    }
                    if self.cancelled() {
                        return;
                    }
                    let moved = self.store.record(&AudienceWrite {
                        cursors: vec![(cursor_name.clone(), through)],
                        ..AudienceWrite::default()
                    });
                    match moved {
                        Ok(()) => update(&self.board, &self.key, |s| {
                            s.cursor = through;
                            s.delivered += changes.len() as u64;
                        }),
                        Err(e) => {
                            tracing::warn!(destination = %self.key.1, error = %e, "cannot save the destination's position");
                            self.pause(Duration::from_millis(500));
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(destination = %self.key.1, error = %e, "cannot read membership changes");
                    self.pause(Duration::from_millis(500));
                }
            }
        }
    }

    /// The next changes for this destination and the log position they reach (which may be
    /// past them when other workspaces' or audiences' changes follow). `None`: nothing new.
    fn next_batch(
        &self,
        cursor_name: &str,
    ) -> Result<Option<(Vec<MembershipChange>, i64)>, StoreError> {
        let cursor = self.store.audience_cursor(cursor_name)?;
        update(&self.board, &self.key, |s| s.cursor = cursor);
        let scanned = self
            .store
            .changes_after(cursor, self.config.batch.saturating_mul(10).max(1))?;
        let Some(last) = scanned.last().map(|c| c.id) else {
            return Ok(None);
        };
        let mut picked = Vec::new();
        let mut through = last;
        for c in scanned {
            let wanted = c.workspace_id == self.key.0
                && (self.doc.audiences.is_empty() || self.doc.audiences.contains(&c.audience_id));
            if wanted {
                through = c.id;
                picked.push(c);
                if picked.len() == self.config.batch {
                    break;
                }
            }
        }
        if picked.len() < self.config.batch {
            through = last;
        }
        Ok(Some((picked, through)))
    }

    /// Sends one batch until the receiver acknowledges it (or the worker is cancelled).
    fn deliver(
        &self,
        rt: &tokio::runtime::Runtime,
        client: &HttpClient,
        changes: &[MembershipChange],
    ) {
        let (first, last) = (changes[0].id, changes[changes.len() - 1].id);
        // The same id on every attempt: receivers can drop a batch they already have.
        let message_id = format!("msg_{}_{first}_{last}", self.key.1);
        // Built once: every attempt sends the same message; only its signature is new.
        let body = loop {
            if self.cancelled() {
                return;
            }
            let built = payload(
                self.store.as_ref(),
                &self.key.0,
                &self.key.1,
                &self.doc,
                changes,
                self.clock.now(),
            );
            match built {
                Ok(b) => break Bytes::from(b.to_string()),
                Err(e) => {
                    tracing::warn!(destination = %self.key.1, error = %e, "cannot build the batch");
                    self.pause(Duration::from_millis(500));
                }
            }
        };
        let mut failures = 0u32;
        while !self.cancelled() {
            let now = self.clock.now();
            let body = body.clone();
            let timestamp = now.div_euclid(1000);
            let Some(signature) = sign(&self.doc.secret, &message_id, timestamp, &body) else {
                // Checked when saved; a stored secret that does not decode is not guessed at.
                update(&self.board, &self.key, |s| {
                    s.state = "retrying";
                    s.last_error = Some("the signing secret is not valid".into());
                });
                self.pause(self.config.retry_max);
                continue;
            };
            update(&self.board, &self.key, |s| s.state = "delivering");
            let headers = [
                ("webhook-id", message_id.clone()),
                ("webhook-timestamp", timestamp.to_string()),
                ("webhook-signature", signature),
            ];
            let cancel = self.cancel.clone();
            let attempt = rt.block_on(async {
                tokio::select! {
                    r = post(client, &self.url, headers, body, self.config.timeout) => Some(r),
                    _ = async {
                        while !cancel.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    } => None,
                }
            });
            match attempt {
                None => return,
                Some(Ok(())) => {
                    let at = self.clock.now();
                    update(&self.board, &self.key, |s| {
                        s.failures = 0;
                        s.last_success_at = Some(at);
                        s.next_attempt_at = None;
                    });
                    metrics::counter!("parcours_destination_changes_delivered_total")
                        .increment(changes.len() as u64);
                    return;
                }
                Some(Err(f)) => {
                    failures = failures.saturating_add(1);
                    let wait = f.retry_after.map_or(self.config.backoff(failures), |w| {
                        w.min(self.config.retry_max)
                    });
                    tracing::warn!(destination = %self.key.1, error = %f.message, retry_in = ?wait, "webhook delivery failed");
                    metrics::counter!("parcours_destination_failures_total").increment(1);
                    update(&self.board, &self.key, |s| {
                        s.state = "retrying";
                        s.failures = failures;
                        s.last_error = Some(f.message);
                        s.next_attempt_at = Some(now + wait.as_millis() as Millis);
                    });
                    self.pause(wait);
                }
            }
        }
    }
}

struct Running {
    version: i64,
    cancel: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

/// Starts the supervisor: it reads the destinations every second and runs one worker per
/// enabled destination, restarting it when its definition changes.
pub(crate) fn start(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: SyncConfig,
    board: StatusBoard,
    stop: Arc<AtomicBool>,
    ownership: Option<Arc<crate::cluster::Ownership>>,
    health: Arc<crate::health::Health>,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("parcours-destinations".into())
        .spawn(move || {
            let mut running: BTreeMap<(String, String), Running> = BTreeMap::new();
            while !stop.load(Ordering::SeqCst) {
                match store.definitions(None) {
                    Ok(defs) => {
                        health.succeeded(DESTINATIONS, clock.now());
                        let mut wanted = BTreeMap::new();
                        for d in defs
                            .into_iter()
                            .filter(|d| d.kind == DefinitionKind::Destination)
                        {
                            let key = (d.workspace_id.clone(), d.id.clone());
                            match crate::audiences::readable::<DestinationDoc>(&d) {
                                Some(doc) if doc.enabled => {
                                    wanted.insert(key, (d.version, doc));
                                }
                                Some(_) => update(&board, &key, |s| s.state = "paused"),
                                None => update(&board, &key, |s| s.state = "unreadable"),
                            }
                        }
                        let gone: Vec<_> = running
                            .iter()
                            .filter(|(k, r)| wanted.get(*k).is_none_or(|(v, _)| *v != r.version))
                            .map(|(k, _)| k.clone())
                            .collect();
                        for key in gone {
                            if let Some(r) = running.remove(&key) {
                                r.cancel.store(true, Ordering::SeqCst);
                                let _ = r.handle.join();
                            }
                        }
                        {
                            let mut b = board.lock().unwrap_or_else(|e| e.into_inner());
                            b.retain(|k, s| {
                                wanted.contains_key(k) || matches!(s.state, "paused" | "unreadable")
                            });
                        }
                        for (key, (version, doc)) in wanted {
                            if running.contains_key(&key) {
                                continue;
                            }
                            // Checked again: the rule may have changed since it was saved.
                            let url =
                                match outbound::check_url(&doc.url, config.allow_private_addresses)
                                {
                                    Ok(url) => url,
                                    Err(e) => {
                                        update(&board, &key, |s| {
                                            s.state = "refused";
                                            s.version = version;
                                            s.last_error = Some(e);
                                        });
                                        continue;
                                    }
                                };
                            update(&board, &key, |s| {
                                s.state = "starting";
                                s.version = version;
                            });
                            let cancel = Arc::new(AtomicBool::new(false));
                            let worker = Worker {
                                store: store.clone(),
                                clock: clock.clone(),
                                config: config.clone(),
                                key: key.clone(),
                                doc,
                                url,
                                board: board.clone(),
                                cancel: cancel.clone(),
                                ownership: ownership.clone(),
                            };
                            let spawned = std::thread::Builder::new()
                                .name(format!("parcours-destination-{}", key.1))
                                .spawn(move || worker.run());
                            match spawned {
                                Ok(handle) => {
                                    running.insert(
                                        key,
                                        Running {
                                            version,
                                            cancel,
                                            handle,
                                        },
                                    );
                                }
                                Err(e) => {
                                    tracing::error!(error = %e, "cannot start a destination worker")
                                }
                            }
                        }
                    }
                    Err(e) => health.failed(DESTINATIONS, clock.now(), &e),
                }
                for _ in 0..20 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            for r in running.values() {
                r.cancel.store(true, Ordering::SeqCst);
            }
            for (_, r) in running {
                let _ = r.handle.join();
            }
        })
        .expect("spawn the destination supervisor")
}

#[cfg(test)]
mod tests {
    use super::*;

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
