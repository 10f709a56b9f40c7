//! Journeys entered on a schedule.
//!
//! A live journey on a schedule has one timer of kind [`JOURNEY_SCHEDULES`], keyed by its id,
//! due when its next occurrence starts. When it fires, the processor queues one work row per
//! customer to enter (the audience's members, or every profile), a page at a time: each page
//! commits with the timer moved on to the next page (so a node that dies midway resumes where
//! the last page ended, and queues no page twice), and the last one moves the timer to the
//! next occurrence. The work rows then go through the same decision as any entry: entry
//! rules, caps, `if`, holdouts.
//!
//! At a local time of day, an occurrence starts when the first clocks on Earth read that time;
//! a customer whose clock does not read it yet waits on a timer of her own (in her profile's
//! bucket), which queues her work row again when her time comes.

use parcours_core::journey::machine::{self, draw};
use parcours_core::journey::{Journey, Trigger};
use parcours_core::time::Millis;
use parcours_store::{
    profile_bucket, DurableTimer, JourneyWork, JourneyWrite, NewTimer, Result, Store,
    JOURNEY_SCHEDULES,
};
use serde_json::{json, Value};

use super::JourneyProcessor;

/// Customers queued per page of an occurrence.
const PAGE: usize = 1_000;

/// The timer that starts a live journey's next occurrence at or after `from` (`None`: not on a
/// schedule, or a one-shot schedule that has started).
pub fn schedule_timer(ws: &str, journey: &Journey, from: Millis) -> Option<NewTimer> {
    let trigger = &journey.entry.trigger;
    let next = machine::next_occurrence(trigger, from)?;
    Some(NewTimer {
        workspace_id: ws.to_string(),
        kind: JOURNEY_SCHEDULES.into(),
        key: journey.id.clone(),
        bucket: profile_bucket(ws, &journey.id),
        due_at: machine::occurrence_starts(trigger, next),
        payload: json!({ "at": next }).to_string(),
    })
}

/// The work rows of one occurrence share a place in the queue of their own: far below event
/// work (positive) and audience changes (their change id, negated), the same for every
/// customer, so her run's id says which occurrence entered her.
fn occurrence_seq(ws: &str, journey: &str, at: Millis) -> i64 {
    i64::MIN + draw(&["schedule", ws, journey, &at.to_string()], 1 << 62) as i64
}

/// What a schedule work row says: the journey and the occurrence, and whether her local time
/// has come already (a row queued again by her own timer).
pub(super) fn scheduled(body: &Value) -> Option<(&str, Millis, bool)> {
    let s = body.get("schedule")?;
    Some((
        s.get("journey")?.as_str()?,
        s.get("at")?.as_i64()?,
        s.get("due").and_then(Value::as_bool) == Some(true),
    ))
}

/// The timer that queues her work row again when her clock reads the schedule's local time.
pub(super) fn wait_for_her_time(
    row: &JourneyWork,
    journey: &str,
    at: Millis,
    due: Millis,
) -> NewTimer {
    let mut body: Value = serde_json::from_str(&row.body).unwrap_or(Value::Null);
    if let Some(s) = body.get_mut("schedule") {
        s["due"] = true.into();
    }
    NewTimer {
        workspace_id: row.workspace_id.clone(),
        kind: JOURNEY_SCHEDULES.into(),
        key: format!("{journey}/{at}/{}", row.profile_id),
        bucket: row.bucket,
        due_at: due,
        payload: json!({
            "work": {
                "seq": row.seq,
                "profile": row.profile_id,
                "message_id": row.message_id,
                "timestamp": row.timestamp,
                "body": body.to_string(),
            }
        })
        .to_string(),
    }
}

impl JourneyProcessor {
    /// A fired schedule timer: an occurrence's next page, or one customer's entry whose local
    /// time has come.
    pub(super) fn occurrence(
        &mut self,
        store: &dyn Store,
        t: &DurableTimer,
        now: Millis,
        mut write: JourneyWrite,
    ) -> Result<JourneyWrite> {
        let ws = t.workspace_id.as_str();
        let payload: Value = serde_json::from_str(&t.payload).unwrap_or(Value::Null);
        if let Some(w) = payload.get("work") {
            let text = |k: &str| w.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let profile = text("profile");
            write.requeue.push(JourneyWork {
                workspace_id: ws.to_string(),
                seq: w.get("seq").and_then(Value::as_i64).unwrap_or(0),
                bucket: profile_bucket(ws, &profile),
                profile_id: profile,
                name: String::new(),
                message_id: text("message_id"),
                timestamp: w.get("timestamp").and_then(Value::as_i64).unwrap_or(now),
                body: text("body"),
            });
            return Ok(write);
        }
        let live = self.live(store, ws)?;
        let Some((_, journey)) = live.iter().find(|(_, j)| j.id == t.key) else {
            // No longer live: its schedule ends with it (saving it live again sets it anew).
            return Ok(write);
        };
        let trigger = &journey.entry.trigger;
        let Trigger::Schedule { audience, .. } = trigger else {
            return Ok(write);
        };
        let at = payload.get("at").and_then(Value::as_i64);
        let after = payload.get("after").and_then(Value::as_str).unwrap_or("");
        let stale = |at: Millis| {
            after.is_empty()
                && now.saturating_sub(machine::occurrence_starts(trigger, at))
                    > journey.entry.max_age_ms
        };
        let Some(at) = at.filter(|at| machine::is_occurrence(trigger, *at) && !stale(*at)) else {
            // The schedule changed since this timer was set, or the occurrence is older than
            // the journey's `max_age` (the node was down): on to the next occurrence.
            if let Some(at) = at {
                tracing::warn!(workspace = ws, journey = %journey.id, occurrence = at,
                    "a scheduled occurrence was skipped: it is no longer one of the journey's, or it is older than its max_age");
            }
            write.set_timers.extend(schedule_timer(ws, journey, now));
            return Ok(write);
        };
        let ids: Vec<String> = match audience {
            Some(a) => store
                .members(ws, a, after, PAGE)?
                .into_iter()
                .map(|m| m.profile_id)
                .collect(),
            None => store
                .profiles_page(ws, after, PAGE)?
                .into_iter()
                .map(|p| p.id)
                .collect(),
        };
        let seq = occurrence_seq(ws, &journey.id, at);
        let body = json!({
            "schedule": {"journey": journey.id, "at": at},
            "properties": {
                "journey": journey.id,
                "occurrence": parcours_core::time::format_timestamp(at),
            },
        })
        .to_string();
        for id in &ids {
            write.requeue.push(JourneyWork {
                workspace_id: ws.to_string(),
                seq,
                bucket: profile_bucket(ws, id),
                profile_id: id.clone(),
                name: String::new(),
                message_id: format!("schedule:{}:{at}", journey.id),
                timestamp: at,
                body: body.clone(),
            });
        }
        match ids.last() {
            Some(last) if ids.len() == PAGE => write.set_timers.push(NewTimer {
                workspace_id: ws.to_string(),
                kind: JOURNEY_SCHEDULES.into(),
                key: journey.id.clone(),
                bucket: t.bucket,
                due_at: now.max(t.due_at + 1),
                payload: json!({ "at": at, "after": last }).to_string(),
            }),
            _ => {
                tracing::info!(workspace = ws, journey = %journey.id, occurrence = at,
                    "a scheduled occurrence queued its last customers");
                let from = machine::occurrence_starts(trigger, at) + 1;
                write.set_timers.extend(schedule_timer(
                    ws,
                    journey,
                    from.max(now.saturating_sub(journey.entry.max_age_ms)),
                ));
            }
        }
        Ok(write)
    }

    /// A live journey on a schedule without its timer (the node died between saving the
    /// journey and setting it) gets it back: looked at every few minutes, for the journeys
    /// whose timer this node's buckets hold.
    pub(super) fn heal_schedules(
        &mut self,
        store: &dyn Store,
        buckets: Option<&[u16]>,
        now: Millis,
    ) -> Result<()> {
        const EVERY_MS: Millis = 300_000;
        if self
            .healed_at
            .is_some_and(|at| now.saturating_sub(at) < EVERY_MS)
        {
            return Ok(());
        }
        self.healed_at = Some(now);
        let mut missing = Vec::new();
        for v in store.journeys(None)? {
            if v.status != "live" {
                continue;
            }
            let ws = v.workspace_id.as_str();
            let bucket = profile_bucket(ws, &v.journey_id);
            if buckets.is_some_and(|b| !b.contains(&bucket)) {
                continue;
            }
            let Some(journey) = self.version(store, ws, &v.journey_id, v.version)? else {
                continue;
            };
            if !matches!(journey.entry.trigger, Trigger::Schedule { .. })
                || store.timer(ws, JOURNEY_SCHEDULES, &journey.id)?.is_some()
            {
                continue;
            }
            // Its last occurrence may have ended already: only one not started yet is set.
            if let Some(t) = schedule_timer(ws, &journey, now) {
                tracing::warn!(workspace = ws, journey = %journey.id, "a scheduled journey had no timer: set again");
                missing.push(t);
            }
        }
        if !missing.is_empty() {
            store.set_timers(&missing)?;
        }
        Ok(())
    }
}
