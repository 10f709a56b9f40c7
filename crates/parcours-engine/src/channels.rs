//! The channel senders: follow the outbox lanes of journey messages (`channel:email`, …) and
//! hand each message to its channel's sender (SMTP, or the capture channel when none is
//! configured), with its key. A message is marked sent only after the provider accepted it:
//! a crash in between sends it again, under the same key.

use std::collections::BTreeMap;
use std::sync::Arc;

use parcours_channels::{Capture, Outgoing, SendError, Sender};
use parcours_core::journey::MessageChannel;
use parcours_core::time::Millis;
use parcours_store::{
    DeliveryAttempt, OutboxClaim, OutboxRow, Result, Settled, Settlement, StoreError,
    ATTEMPT_DETAIL,
};

use crate::clock::Moment;

use crate::journeys::{destination, EVENTS_LANE, JOURNEYS_SOURCE};
use crate::runner::{Placement, Processor, StepContext};

/// The processor's name in health reports and metrics.
pub const CHANNELS: &str = "channels";

/// Rows of the events and webhook lanes leased at once (sent one after the other within the
/// lease).
const IN_FLIGHT: usize = 16;
/// Messages of a channel leased at once. Their outcomes are recorded together (one commit,
/// with its `fsync`, per claim), or every [`SETTLE_EVERY`] when the provider is slow, so a
/// fast provider pays one commit per 256 messages and a crash sends again at most what the
/// last quarter of a second sent. Sending stops at half the lease and gives the rest back, so
/// a slow provider never outlives the claim.
const MESSAGES_IN_FLIGHT: usize = 256;
/// How long outcomes wait to be recorded while a claim is being sent.
const SETTLE_EVERY: std::time::Duration = std::time::Duration::from_millis(250);
/// Tries before a message is given up (dead), with the wait before each retry doubling.
const MAX_ATTEMPTS: u32 = 8;
const FIRST_RETRY_MS: Millis = 5_000;

/// Who sends each channel's messages.
#[derive(Clone)]
pub struct Senders {
    pub email: Arc<dyn Sender>,
    pub sms: Arc<dyn Sender>,
    pub push: Arc<dyn Sender>,
    /// Webhook steps' caller (`None`: no signing secret configured; their calls fail with
    /// that reason).
    pub webhook: Option<Arc<crate::provider::WebhookCaller>>,
    /// Messages per second each channel may send (0: no limit). The channel sender runs on
    /// one node at a time, so this holds for the whole cluster.
    pub rate_per_second: BTreeMap<MessageChannel, u32>,
    /// What each configured channel sends through, in words and without its credentials
    /// (`smtp.shop.example:587, from Shop <news@shop.example>`), for operators.
    pub about: BTreeMap<MessageChannel, String>,
}

impl Default for Senders {
    fn default() -> Self {
        Self {
            email: Arc::new(Capture),
            sms: Arc::new(Capture),
            push: Arc::new(Capture),
            webhook: None,
            rate_per_second: BTreeMap::new(),
            about: BTreeMap::new(),
        }
    }
}

impl std::fmt::Debug for Senders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Senders")
            .field("email", &self.email.name())
            .field("sms", &self.sms.name())
            .field("push", &self.push.name())
            .finish()
    }
}

impl Senders {
    pub fn of(&self, channel: MessageChannel) -> &Arc<dyn Sender> {
        match channel {
            MessageChannel::Email => &self.email,
            MessageChannel::Sms => &self.sms,
            MessageChannel::Push => &self.push,
        }
    }
}

pub struct ChannelSender {
    pub senders: Senders,
    /// How long a claim holds its messages: a node that dies while sending holds them this
    /// long at most, then another (or its restart) sends them, under the same keys.
    pub lease_ms: Millis,
    /// How far back an event's message id is looked for when journeys record events.
    pub dedup_window_ms: Millis,
    /// Per channel, the second (of the clock) messages were last sent in and how many.
    sent_this_second: BTreeMap<MessageChannel, (Millis, u32)>,
    token: String,
}

impl ChannelSender {
    pub fn new(senders: Senders, lease_ms: Millis) -> Self {
        Self {
            senders,
            lease_ms: lease_ms.max(1_000),
            dedup_window_ms: 30 * 86_400_000,
            sent_this_second: BTreeMap::new(),
            token: format!("channels-{:016x}", rand::random::<u64>()),
        }
    }
}

fn detail(s: &str) -> String {
    let mut end = s.len().min(ATTEMPT_DETAIL);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

impl ChannelSender {
    /// Leases up to `max` rows of a lane, in order, under this sender's token.
    fn claim(
        &self,
        cx: &StepContext,
        ws: &str,
        lane: &str,
        max: usize,
    ) -> Result<Vec<parcours_store::OutboxRow>> {
        cx.store.claim(&OutboxClaim {
            workspace_id: ws,
            destination: lane,
            max_in_flight: max,
            now: cx.now,
            lease_until: cx.now + self.lease_ms,
            token: &self.token,
        })
    }

    /// Appends the events journeys decided to record (a trait an `update_trait` step sets) to
    /// the log, each under its message id: a row sent twice after a crash is one event.
    fn record_events(&self, cx: &StepContext, ws: &str) -> Result<usize> {
        use parcours_core::spec::{check_event, Checked, Edge};
        let rows = self.claim(cx, ws, EVENTS_LANE, IN_FLIGHT)?;
        let mut settled = Vec::with_capacity(rows.len());
        for row in &rows {
            let checked = serde_json::value::RawValue::from_string(row.payload.clone())
                .map_err(|e| SendError::Permanent(format!("the event does not read: {e}")))
                .and_then(|raw| {
                    let edge = Edge::single(cx.now, Some(parcours_core::Channel::Server), None);
                    match check_event(&raw, &edge, &mut |_| row.key.clone()) {
                        Checked::Accepted(e) => Ok(e),
                        Checked::Quarantined(q) => Err(SendError::Permanent(format!(
                            "the event is refused: {}",
                            q.violation.message()
                        ))),
                    }
                });
            let outcome = checked.and_then(|event| {
                cx.store
                    .append(
                        &[parcours_store::IngestBatch {
                            workspace_id: ws.to_string(),
                            source_id: JOURNEYS_SOURCE.into(),
                            events: vec![event],
                            quarantined: Vec::new(),
                        }],
                        cx.now - self.dedup_window_ms,
                    )
                    .map(|_| "recorded in the log".to_string())
                    .map_err(|e| SendError::Retry(format!("the log refused it: {e}")))
            });
            settled.push(settlement(cx, row, outcome));
        }
        self.settle(cx, &settled)?;
        Ok(rows.len())
    }

    /// Calls the URLs of webhook steps, each under its key.
    fn call_webhooks(&self, cx: &StepContext, ws: &str) -> Result<usize> {
        use crate::provider::{WebhookCall, WEBHOOK_LANE};
        let rows = self.claim(cx, ws, WEBHOOK_LANE, IN_FLIGHT)?;
        let mut settled = Vec::with_capacity(rows.len());
        for row in &rows {
            let outcome = serde_json::from_str::<WebhookCall>(&row.payload)
                .map_err(|e| SendError::Permanent(format!("the call does not read: {e}")))
                .and_then(|call| match &self.senders.webhook {
                    Some(caller) => caller.call(&row.key, &call, cx.now),
                    None => Err(SendError::Permanent(
                        "no webhook signing secret is configured (PARCOURS__CHANNELS__WEBHOOK__SECRET)"
                            .into(),
                    )),
                });
            settled.push(settlement(cx, row, outcome));
        }
        self.settle(cx, &settled)?;
        Ok(rows.len())
    }

    /// Counts messages sent in `second` against the channel's rate.
    fn count_sent(&mut self, channel: MessageChannel, second: Millis, sent: u32) {
        let entry = self.sent_this_second.entry(channel).or_insert((second, 0));
        if entry.0 != second {
            *entry = (second, 0);
        }
        entry.1 += sent;
    }

    /// Records a claim's tries in the delivery log and settles their rows, in one
    /// transaction. A row another sender took over after our lease ended is its now: it
    /// sends it, with the same key.
    fn settle(&self, cx: &StepContext, settled: &[Settlement]) -> Result<()> {
        if !settled.is_empty() {
            cx.store.settle_all(&self.token, settled)?;
        }
        Ok(())
    }
}

/// How a try leaves its row: done, again later (the wait doubling), or dead.
fn settlement(
    cx: &StepContext,
    row: &OutboxRow,
    outcome: std::result::Result<String, SendError>,
) -> Settlement {
    let attempt = DeliveryAttempt {
        outbox_id: row.id,
        attempt: row.attempts,
        at: cx.now,
        latency_ms: 0,
        status: None,
        ok: outcome.is_ok(),
        detail: match &outcome {
            Ok(d) => detail(d),
            Err(e) => detail(&e.to_string()),
        },
    };
    let settled = match outcome {
        Ok(_) => Settled::Done,
        Err(SendError::Retry(_)) if row.attempts < MAX_ATTEMPTS => {
            let wait = FIRST_RETRY_MS << (row.attempts.saturating_sub(1)).min(12);
            Settled::RetryAt(cx.now + wait)
        }
        Err(_) => Settled::Dead,
    };
    Settlement {
        id: row.id,
        attempt,
        settled,
    }
}

impl Processor for ChannelSender {
    fn name(&self) -> &'static str {
        CHANNELS
    }

    fn placement(&self) -> Placement {
        Placement::Leader
    }

    fn step(&mut self, cx: &StepContext) -> Result<usize> {
        let mut done = 0;
        for ws in cx.store.workspaces()? {
            done += self.record_events(cx, &ws.id)?;
            done += self.call_webhooks(cx, &ws.id)?;
            for channel in MessageChannel::ALL {
                // A channel over its rate waits for the next second; its messages stay
                // queued, in order.
                let second = cx.now.div_euclid(1_000);
                let room = match self.senders.rate_per_second.get(&channel) {
                    Some(&rate) if rate > 0 => {
                        let sent = match self.sent_this_second.get(&channel) {
                            Some(&(s, n)) if s == second => n,
                            _ => 0,
                        };
                        (rate.saturating_sub(sent) as usize).min(MESSAGES_IN_FLIGHT)
                    }
                    _ => MESSAGES_IN_FLIGHT,
                };
                if room == 0 {
                    continue;
                }
                let lane = destination(channel);
                let rows = self.claim(cx, &ws.id, &lane, room)?;
                // The claim's outcomes are recorded together once it is sent: a crash before
                // that sends its messages again, under their keys.
                let mut settled = Vec::with_capacity(rows.len());
                let mut sent = 0;
                let started = Moment::now();
                let mut recorded = Moment::now();
                let budget = std::time::Duration::from_millis((self.lease_ms / 2) as u64);
                for (i, row) in rows.iter().enumerate() {
                    if recorded.elapsed() >= SETTLE_EVERY && !settled.is_empty() {
                        // A slow provider: what was sent is recorded now, not at the end
                        // (and counted against the rate first, whatever the record does).
                        self.count_sent(channel, second, sent);
                        sent = 0;
                        self.settle(cx, &settled)?;
                        settled.clear();
                        recorded = Moment::now();
                    }
                    if started.elapsed() > budget {
                        // Half the lease gone: the rest go back, to the next claim.
                        for r in &rows[i..] {
                            match cx.store.release(r.id, &self.token) {
                                Ok(()) | Err(StoreError::Conflict(_)) => {}
                                Err(e) => return Err(e),
                            }
                        }
                        break;
                    }
                    done += 1;
                    let sender = self.senders.of(channel);
                    let outcome = serde_json::from_str::<Outgoing>(&row.payload)
                        .map_err(|e| {
                            SendError::Permanent(format!("the message does not read: {e}"))
                        })
                        .and_then(|m| sender.send(&m));
                    let outcome = outcome.map(|()| format!("accepted by {}", sender.name()));
                    settled.push(settlement(cx, row, outcome));
                    sent += 1;
                }
                self.count_sent(channel, second, sent);
                self.settle(cx, &settled)?;
            }
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parcours_core::rules::IdentityRulesConfig;
    use parcours_store::{NewOutboxRow, Outbox, OutboxPage, OutboxState, Registry, Workspace};
    use parcours_store_sqlite::SqliteStore;
    use std::sync::Mutex;

    /// A provider that takes 300 ms per message.
    #[derive(Default)]
    struct Slow(Mutex<Vec<String>>);

    impl Sender for Slow {
        fn name(&self) -> &'static str {
            "slow"
        }
        fn send(&self, m: &Outgoing) -> std::result::Result<(), SendError> {
            std::thread::sleep(std::time::Duration::from_millis(300));
            self.0.lock().unwrap().push(m.key.clone());
            Ok(())
        }
    }

    /// A claim whose sending takes half its lease gives the rest back: sent by the next
    /// claim, each message once, in order.
    #[test]
    fn a_slow_provider_gives_back_what_it_cannot_send_within_the_lease() {
        let dir = std::env::temp_dir().join(format!("parcours-channels-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = SqliteStore::open_temp(&dir).unwrap();
        store
            .create_workspace(&Workspace {
                id: "ws".into(),
                name: "ws".into(),
                created_at: 0,
                identity_rules: IdentityRulesConfig::default(),
            })
            .unwrap();
        let rows: Vec<NewOutboxRow> = (0..3)
            .map(|i| {
                let m = json_message(&format!("m{i}"));
                NewOutboxRow {
                    workspace_id: "ws".into(),
                    destination: "channel:sms".into(),
                    key: format!("m{i}"),
                    payload: m,
                    items: 1,
                    not_before: 0,
                    created_at: 0,
                }
            })
            .collect();
        store.enqueue(&rows).unwrap();
        let slow = Arc::new(Slow::default());
        let senders = Senders {
            sms: slow.clone(),
            ..Senders::default()
        };
        // A lease of 1 s: half of it is spent after the second message.
        let mut sender = ChannelSender::new(senders, 1_000);
        let cx = StepContext {
            store: &store,
            now: 1_000,
            owned: None,
        };
        assert_eq!(sender.step(&cx).unwrap(), 2);
        assert_eq!(*slow.0.lock().unwrap(), ["m0", "m1"]);
        let third = store.outbox_row_by_key("ws", "m2").unwrap().unwrap();
        assert_eq!((third.state, third.attempts), (OutboxState::Pending, 0));
        assert_eq!(sender.step(&cx).unwrap(), 1);
        assert_eq!(*slow.0.lock().unwrap(), ["m0", "m1", "m2"]);
        let all = store
            .outbox_rows(&OutboxPage {
                workspace_id: "ws",
                destination: "channel:sms",
                state: Some(OutboxState::Done),
                before_id: None,
                limit: 10,
            })
            .unwrap();
        assert_eq!(all.len(), 3);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn json_message(key: &str) -> String {
        serde_json::json!({
            "channel": "sms", "to": "+33600000000", "text": "hi", "key": key,
            "journey": "j", "step": "s", "run": "r", "profile": "p",
        })
        .to_string()
    }
}
