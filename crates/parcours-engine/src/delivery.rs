//! Webhook delivery on the outbox.
//!
//! Two steps per destination, each a commit:
//! 1. **feed**: the destination's next changes in the membership change log become one outbox
//!    row (its body built once, its id never changing), written in the same transaction that
//!    moves the destination's position in the log ([`feed`]). The row's key is the position
//!    it starts from, so two nodes feeding from the same position write one row between them.
//!    The [`Feeder`] is a processor of the runner, woken by the audience processor.
//! 2. **send**: senders claim the destination's rows in order with a lease and a fencing
//!    token, POST each signed per Standard Webhooks under `webhook-id: msg_<row id>`, and
//!    settle it: done, or retried later with exponential backoff and jitter, or dead with its
//!    reason after too many attempts ([`send`]). Every attempt is in the delivery log.
//!
//! One thread runs one async runtime for every destination of the node: a lane task per
//! destination, with its own concurrency and rate limit, so a slow or failing receiver holds
//! back only its own lane. Every node sends (claims keep each row to one sender); the feeder
//! runs where audiences run.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use hyper::Uri;
use parcours_core::time::{Clock, Millis};
use parcours_store::{
    attempt_detail, destination_cursor, destination_lane, AudienceWrite, CursorMove,
    DefinitionKind, DeliveryAttempt, NewOutboxRow, OutboxClaim, OutboxRow, OutboxState, Store,
    StoreError,
};
use rand::Rng;
use serde::Serialize;

use crate::destinations::{payload, post, sign, DestinationDoc, Failure, SyncConfig};
use crate::outbound::{self, HttpClient};
use crate::telemetry::{Delivered, DeliveryFailed, InternalEvent};

/// The supervisor's name in health reports.
pub const DESTINATIONS: &str = "destinations";

/// What this node's supervisor knows of a destination beyond its outbox.
#[derive(Debug, Clone, Default, PartialEq)]
struct LaneNote {
    /// `running`, `paused`, `unreadable` or `refused`.
    state: &'static str,
    version: i64,
    error: Option<String>,
}

/// Lane notes per (workspace, destination), shared with [`delivery_status`].
#[derive(Debug, Clone, Default)]
pub struct StatusBoard(Arc<Mutex<BTreeMap<(String, String), LaneNote>>>);

impl StatusBoard {
    fn set(&self, key: &(String, String), note: LaneNote) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), note);
    }

    fn get(&self, key: &(String, String)) -> Option<LaneNote> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    /// Keeps the notes `keep` accepts. `keep` is given each note: it must not call back
    /// into the board (the lock is held).
    fn retain(&self, keep: impl Fn(&(String, String), &LaneNote) -> bool) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, note| keep(k, note));
    }
}

/// How a destination is being delivered, read from its outbox.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DeliveryStatus {
    /// `idle` (everything sent), `delivering`, `retrying`, `paused`, `unreadable` (its stored
    /// definition cannot be read: delete it and create it again), `refused` (its address is
    /// not allowed on this node) or `starting`.
    pub state: &'static str,
    /// The version of the destination this node runs.
    pub version: i64,
    /// Changes acknowledged by the receiver.
    pub delivered: u64,
    /// Requests waiting or in flight.
    pub pending: u64,
    /// Requests given up (see the delivery log; they can be sent again).
    pub dead: u64,
    /// Failed attempts of the request the destination is on (0 when it has not failed).
    pub failures: u32,
    pub last_error: Option<String>,
    pub last_success_at: Option<Millis>,
    pub next_attempt_at: Option<Millis>,
}

/// A destination's delivery status (`None` when this node has not seen it yet).
pub fn delivery_status(
    store: &dyn Store,
    board: &StatusBoard,
    ws: &str,
    id: &str,
    now: Millis,
) -> Result<Option<DeliveryStatus>, StoreError> {
    let Some(note) = board.get(&(ws.to_string(), id.to_string())) else {
        return Ok(None);
    };
    let s = store.outbox_summary(ws, &destination_lane(id))?;
    let head = s.head.as_ref();
    let failures = head.map_or(0, |h| {
        if h.last_error.is_none() {
            0
        } else if h.state == OutboxState::Leased {
            h.attempts.saturating_sub(1)
        } else {
            h.attempts
        }
    });
    let state = match note.state {
        "running" if s.leased > 0 && failures == 0 => "delivering",
        "running" if failures > 0 => "retrying",
        "running" if s.pending > 0 => "delivering",
        "running" => "idle",
        other => other,
    };
    Ok(Some(DeliveryStatus {
        state,
        version: note.version,
        delivered: s.delivered_items,
        pending: s.pending + s.leased,
        dead: s.dead,
        failures,
        last_error: note
            .error
            .or_else(|| head.and_then(|h| h.last_error.clone())),
        last_success_at: s.last_success_at,
        next_attempt_at: head
            .filter(|h| h.state == OutboxState::Pending && h.attempts > 0 && h.not_before > now)
            .map(|h| h.not_before),
    }))
}

/// The place of a change set in the outbox: it names the position it starts from.
fn change_set_key(ws: &str, id: &str, from: i64) -> String {
    format!("audience_changes:{ws}:{id}:{from}")
}

/// Moves a destination's next changes into its outbox, with its new position, in one
/// commit. Returns whether its position moved (`false`: nothing new, or another node fed
/// the same changes first).
pub fn feed(
    store: &dyn Store,
    ws: &str,
    id: &str,
    doc: &DestinationDoc,
    batch: usize,
    now: Millis,
) -> Result<bool, StoreError> {
    let cursor_name = destination_cursor(ws, id);
    let cursor = store.audience_cursor(&cursor_name)?;
    let scanned = store.changes_after(cursor, batch.saturating_mul(10).max(1))?;
    let Some(last) = scanned.last().map(|c| c.id) else {
        return Ok(false);
    };
    let mut picked = Vec::new();
    let mut through = last;
    for c in scanned {
        let wanted = c.workspace_id == ws
            && (doc.audiences.is_empty() || doc.audiences.contains(&c.audience_id));
        if wanted {
            through = c.id;
            picked.push(c);
            if picked.len() == batch {
                break;
            }
        }
    }
    if picked.len() < batch {
        through = last;
    }
    // Consent: she is added to a destination only with her consent to its purpose on its
    // channel (marketing on ads by default); a removal always goes.
    if let Some((purpose, channel)) = doc.consent() {
        let unknown_granted = store.workspace(ws)?.is_some_and(|w| {
            w.identity_rules.unknown_consent == parcours_core::rules::UnknownConsent::Granted
        });
        let mut kept = Vec::with_capacity(picked.len());
        for c in picked {
            let allowed = !c.entered
                || store.profile(ws, &c.profile_id)?.is_some_and(|p| {
                    p.consent_refusal(purpose, channel, unknown_granted)
                        .is_none()
                });
            if allowed {
                kept.push(c);
            }
        }
        picked = kept;
    }
    let mut write = AudienceWrite {
        cursors: vec![CursorMove::new(cursor_name, through)],
        ..AudienceWrite::default()
    };
    if !picked.is_empty() {
        let body = payload(store, ws, id, doc, &picked, now)?;
        write.outbox.push(NewOutboxRow {
            workspace_id: ws.to_string(),
            destination: destination_lane(id),
            key: change_set_key(ws, id, cursor),
            payload: body.to_string(),
            items: picked.len() as u32,
            not_before: now,
            created_at: now,
        });
    }
    match store.record(&write) {
        Ok(()) => Ok(true),
        // Another node fed from the same position first; its row stands.
        Err(StoreError::Conflict(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The feeder: moves every enabled destination's new changes into its outbox, woken by the
/// audience processor whose changes it follows. It runs where audiences run (the holder of
/// bucket 0 in a cluster); a destination whose address this node refuses is not fed.
pub(crate) struct Feeder {
    pub batch: usize,
    pub allow_private_addresses: bool,
    /// Wakes this node's senders.
    pub fed: Arc<tokio::sync::Notify>,
}

impl crate::runner::Processor for Feeder {
    fn name(&self) -> &'static str {
        DESTINATIONS
    }

    fn placement(&self) -> crate::runner::Placement {
        crate::runner::Placement::Leader
    }

    fn step(&mut self, cx: &crate::runner::StepContext) -> Result<usize, StoreError> {
        let mut moved = 0;
        for d in cx
            .store
            .definitions(None)?
            .into_iter()
            .filter(|d| d.kind == DefinitionKind::Destination)
        {
            let Some(doc) = crate::definitions::readable::<DestinationDoc>(&d) else {
                continue;
            };
            if !doc.enabled || outbound::check_url(&doc.url, self.allow_private_addresses).is_err()
            {
                continue;
            }
            // While the lane has as many requests open as it sends at once, its changes wait
            // in the log: a slow receiver then gets fuller batches, not more of them.
            let in_flight = u64::from(doc.max_in_flight.unwrap_or(1).clamp(1, 64));
            if cx
                .store
                .open_rows(&d.workspace_id, &destination_lane(&d.id))?
                >= in_flight
            {
                continue;
            }
            match feed(cx.store, &d.workspace_id, &d.id, &doc, self.batch, cx.now) {
                Ok(true) => moved += 1,
                Ok(false) => {}
                // One destination that cannot be fed holds back no other.
                Err(e) => {
                    tracing::warn!(destination = %d.id, error = %e, "cannot move changes into the outbox")
                }
            }
        }
        if moved > 0 {
            self.fed.notify_waiters();
        }
        Ok(moved)
    }
}

/// The webhook-id of a row: the same on every attempt, after every crash.
pub fn webhook_id(row: &OutboxRow) -> String {
    format!("msg_{}", row.id)
}

/// What every lane of the node shares.
struct Shared {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: SyncConfig,
    client: HttpClient,
    /// Prefix of this node's fencing tokens.
    node: String,
    /// Notified when the feeder wrote rows.
    fed: Arc<tokio::sync::Notify>,
    /// Wakes the feeder when a request is settled (the lane may take more).
    settled: Arc<crate::Wake>,
}

/// A running store call, off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(StoreError::Backend(format!("store call failed: {e}"))))
}

/// One destination as its lane task runs it.
#[derive(Clone)]
struct Lane {
    ws: String,
    id: String,
    lane: String,
    doc: Arc<DestinationDoc>,
    url: Uri,
    cancel: Arc<AtomicBool>,
}

impl Lane {
    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    /// Sleeps up to `d` by `clock`, waking early when cancelled.
    async fn pause(&self, clock: &dyn Clock, d: Duration) {
        let until = clock.now().saturating_add(d.as_millis() as Millis);
        while !self.cancelled() {
            let left = until - clock.now();
            if left <= 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(left as u64).min(Duration::from_millis(50)))
                .await;
        }
    }
}

impl Shared {
    fn token(&self) -> String {
        format!("{}:{:016x}", self.node, rand::rng().random::<u64>())
    }

    /// The wait before retry number `failures`, stretched by up to a quarter at random so
    /// that lanes failing together do not retry together.
    fn retry_wait(&self, failures: u32) -> Duration {
        let base = self.config.backoff(failures);
        let jitter = rand::rng().random_range(0.0..0.25);
        base + base.mul_f64(jitter)
    }
}

async fn run_lane(sh: Arc<Shared>, lane: Lane) {
    let max_in_flight = lane.doc.max_in_flight.unwrap_or(1).clamp(1, 64) as usize;
    let spacing = lane
        .doc
        .max_per_second
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(1.0 / r));
    let mut last_start: Option<Duration> = None;
    while !lane.cancelled() {
        let (st, l, token, now) = (sh.store.clone(), lane.clone(), sh.token(), sh.clock.now());
        let lease = sh.config.lease;
        let claim_token = token.clone();
        let claimed = blocking(move || {
            st.claim(&OutboxClaim {
                workspace_id: &l.ws,
                destination: &l.lane,
                max_in_flight,
                now,
                lease_until: now + lease.as_millis() as Millis,
                token: &claim_token,
            })
        })
        .await;
        let rows = match claimed {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(destination = %lane.id, error = %e, "cannot claim outbox rows");
                lane.pause(sh.clock.as_ref(), Duration::from_millis(500))
                    .await;
                continue;
            }
        };
        if rows.is_empty() {
            // Woken when the feeder on this node writes rows; rows written on another node
            // (or due for a retry) are seen at the next look.
            tokio::select! {
                _ = sh.fed.notified() => {}
                _ = lane.pause(sh.clock.as_ref(), sh.config.poll) => {}
            }
            continue;
        }
        let mut sends = Vec::with_capacity(rows.len());
        let mut rows = rows.into_iter();
        while let Some(row) = rows.next() {
            if let (Some(spacing), Some(last)) = (spacing, last_start) {
                let wait = spacing.saturating_sub(sh.clock.monotonic().saturating_sub(last));
                if !wait.is_zero() {
                    lane.pause(sh.clock.as_ref(), wait).await;
                }
            }
            if lane.cancelled() {
                // Claimed but not sent: they go back at once, for the lane that follows.
                let (st, token, ids) = (
                    sh.store.clone(),
                    token.clone(),
                    std::iter::once(row.id)
                        .chain(rows.by_ref().map(|r| r.id))
                        .collect::<Vec<_>>(),
                );
                let released =
                    blocking(move || ids.iter().try_for_each(|id| st.release(*id, &token))).await;
                if let Err(e) = released {
                    tracing::warn!(destination = %lane.id, error = %e, "cannot give back unsent rows; their lease will end");
                }
                break;
            }
            last_start = Some(sh.clock.monotonic());
            sends.push(tokio::spawn(send(
                sh.clone(),
                lane.clone(),
                row,
                token.clone(),
            )));
        }
        for s in sends {
            let _ = s.await;
        }
    }
}

/// The outcome of one POST.
enum Sent {
    Ok {
        status: u16,
        excerpt: String,
    },
    Failed(Failure),
    /// The lane was stopped while the request was in flight.
    Interrupted,
}

/// Sends one claimed row and settles it.
async fn send(sh: Arc<Shared>, lane: Lane, row: OutboxRow, token: String) {
    let started = sh.clock.monotonic();
    let at = sh.clock.now();
    let id = webhook_id(&row);
    let timestamp = at.div_euclid(1000);
    let body = Bytes::from(row.payload.clone());
    let outcome = match sign(&lane.doc.secret, &id, timestamp, &body) {
        None => Sent::Failed(Failure::permanent("the signing secret is not valid")),
        Some(signature) => {
            let headers = [
                ("webhook-id", id.clone()),
                ("webhook-timestamp", timestamp.to_string()),
                ("webhook-signature", signature),
            ];
            let request = post(&sh.client, &lane.url, headers, body, sh.config.timeout);
            tokio::pin!(request);
            let every = (sh.config.lease / 3).max(Duration::from_millis(10));
            let mut heartbeat = tokio::time::interval(every);
            // The first tick is at once; the lease is extended from the next.
            heartbeat.tick().await;
            loop {
                tokio::select! {
                    r = &mut request => break match r {
                        Ok((status, excerpt)) => Sent::Ok { status, excerpt },
                        Err(f) => Sent::Failed(f),
                    },
                    _ = heartbeat.tick() => {
                        let (st, token, until) = (
                            sh.store.clone(),
                            token.clone(),
                            sh.clock.now() + sh.config.lease.as_millis() as Millis,
                        );
                        if let Err(e) = blocking(move || st.extend_lease(row.id, &token, until)).await {
                            tracing::warn!(destination = %lane.id, error = %e, "cannot extend the lease");
                        }
                    }
                    _ = lane.pause(sh.clock.as_ref(), Duration::from_secs(86_400)) => {
                        if lane.cancelled() {
                            break Sent::Interrupted;
                        }
                    }
                }
            }
        }
    };
    let latency = sh.clock.monotonic().saturating_sub(started);
    let now = sh.clock.now();
    let mut attempt = DeliveryAttempt {
        outbox_id: row.id,
        attempt: row.attempts,
        at: now,
        latency_ms: latency.as_millis() as u64,
        status: None,
        ok: false,
        detail: String::new(),
    };
    let (st, dest) = (sh.store.clone(), lane.id.clone());
    let settled = match outcome {
        Sent::Ok { status, excerpt } => {
            attempt.status = Some(status);
            attempt.ok = true;
            attempt.detail = attempt_detail(format!("HTTP {status} {excerpt}").trim());
            Delivered {
                destination: &dest,
                changes: row.items,
                latency,
            }
            .emit();
            blocking(move || st.complete(row.id, &token, &attempt)).await
        }
        Sent::Interrupted => {
            attempt.detail = "interrupted: the destination changed or the node stopped".into();
            blocking(move || st.fail(row.id, &token, &attempt, Some(now))).await
        }
        Sent::Failed(f) => {
            attempt.status = f.status;
            attempt.detail = attempt_detail(&f.message);
            let give_up = f.permanent || row.attempts >= sh.config.max_attempts;
            let wait = (!give_up).then(|| {
                f.retry_after
                    .map_or(sh.retry_wait(row.attempts), |w| w.min(sh.config.retry_max))
            });
            DeliveryFailed {
                destination: &dest,
                webhook_id: &id,
                attempts: row.attempts,
                error: &f.message,
                retry_in: wait,
            }
            .emit();
            let retry_at = wait.map(|w| now + w.as_millis() as Millis);
            blocking(move || st.fail(row.id, &token, &attempt, retry_at)).await
        }
    };
    sh.settled.notify();
    match settled {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => {
            tracing::warn!(destination = %lane.id, webhook_id = %id, "the lease ran out during the request; another sender has the row");
        }
        Err(e) => {
            tracing::warn!(destination = %lane.id, webhook_id = %id, error = %e, "cannot record the delivery; the lease will run out and the row be sent again");
        }
    }
}

/// How the feeder and the senders wake each other.
pub(crate) struct Signals {
    /// The feeder wrote rows: senders look.
    pub fed: Arc<tokio::sync::Notify>,
    /// A sender settled a row: the feeder looks (the lane may take more).
    pub settled: Arc<crate::Wake>,
}

struct Running {
    version: i64,
    cancel: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

/// Starts the node's delivery: one thread with one async runtime, a supervisor that reads
/// the destinations every second and runs a lane task per enabled destination (a new
/// version replaces its task), and the janitor that returns expired leases.
pub(crate) fn start(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: SyncConfig,
    board: StatusBoard,
    stop: Arc<AtomicBool>,
    ownership: Option<Arc<crate::cluster::Ownership>>,
    signals: Signals,
) -> JoinHandle<()> {
    // Fencing tokens name the node that holds a row, for whoever reads the store.
    let node = ownership
        .as_ref()
        .map_or_else(|| "node".to_string(), |o| o.node().to_string());
    std::thread::Builder::new()
        .name("parcours-delivery".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "delivery cannot start");
                    return;
                }
            };
            rt.block_on(async move {
                let client = outbound::client(config.allow_private_addresses);
                let sh = Arc::new(Shared {
                    store,
                    clock,
                    config,
                    client,
                    node,
                    fed: signals.fed,
                    settled: signals.settled,
                });
                supervise(sh, board, stop).await;
            });
        })
        .expect("spawn the delivery thread")
}

async fn supervise(sh: Arc<Shared>, board: StatusBoard, stop: Arc<AtomicBool>) {
    let mut running: BTreeMap<(String, String), Running> = BTreeMap::new();
    let mut last_janitor = sh.clock.monotonic();
    while !stop.load(Ordering::SeqCst) {
        let st = sh.store.clone();
        match blocking(move || st.definitions(None)).await {
            Ok(defs) => {
                let mut wanted = BTreeMap::new();
                let mut present = std::collections::BTreeSet::new();
                for d in defs
                    .into_iter()
                    .filter(|d| d.kind == DefinitionKind::Destination)
                {
                    let key = (d.workspace_id.clone(), d.id.clone());
                    present.insert(key.clone());
                    let note = |state| LaneNote {
                        state,
                        version: d.version,
                        error: None,
                    };
                    match crate::definitions::readable::<DestinationDoc>(&d) {
                        Some(doc) if doc.enabled => {
                            wanted.insert(key, (d.version, doc));
                        }
                        Some(_) => board.set(&key, note("paused")),
                        None => board.set(&key, note("unreadable")),
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
                        let _ = r.task.await;
                    }
                }
                // Forget deleted destinations.
                board.retain(|k, _| present.contains(k));
                for (key, (version, doc)) in wanted {
                    if running.contains_key(&key) {
                        continue;
                    }
                    // Checked again: the rule may have changed since it was saved.
                    let url = match outbound::check_url(&doc.url, sh.config.allow_private_addresses)
                    {
                        Ok(url) => url,
                        Err(e) => {
                            board.set(
                                &key,
                                LaneNote {
                                    state: "refused",
                                    version,
                                    error: Some(e),
                                },
                            );
                            continue;
                        }
                    };
                    board.set(
                        &key,
                        LaneNote {
                            state: "running",
                            version,
                            error: None,
                        },
                    );
                    let cancel = Arc::new(AtomicBool::new(false));
                    let lane = Lane {
                        lane: destination_lane(&key.1),
                        ws: key.0.clone(),
                        id: key.1.clone(),
                        doc: Arc::new(doc),
                        url,
                        cancel: cancel.clone(),
                    };
                    let task = tokio::spawn(run_lane(sh.clone(), lane));
                    running.insert(
                        key,
                        Running {
                            version,
                            cancel,
                            task,
                        },
                    );
                }
            }
            // The feeder reads the same definitions and reports the failure to health.
            Err(e) => tracing::warn!(error = %e, "cannot read the destinations"),
        }
        if sh.clock.monotonic().saturating_sub(last_janitor) >= sh.config.lease / 2 {
            last_janitor = sh.clock.monotonic();
            let (st, now) = (sh.store.clone(), sh.clock.now());
            match blocking(move || st.reclaim_expired(now)).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "returned outbox rows whose sender stopped"),
                Err(e) => tracing::warn!(error = %e, "cannot return expired outbox leases"),
            }
        }
        for _ in 0..20 {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for r in running.values() {
        r.cancel.store(true, Ordering::SeqCst);
    }
    for (_, r) in running {
        let _ = r.task.await;
    }
}
