//! Output.

use serde_json::Value;

use super::*;

/// An event told, kept as its JSON text: a history of hundreds of thousands of events held as
/// `Value`s costs several times its size in maps and strings.
pub(crate) struct Pending {
    pub(crate) at: i64,
    pub(crate) source: &'static str,
    pub(crate) json: String,
}

/// Collects events and hands out the business numbers (orders, receipts, calls) that several
/// customers draw from.
pub(crate) struct Output {
    pub(crate) end: i64,
    /// The end of the story being told: a lapsed customer's goes silent before the data set ends.
    pub(crate) horizon: i64,
    pub(crate) events: Vec<Pending>,
    pub(crate) online_orders: u64,
    pub(crate) receipts: [u64; STORES.len()],
    pub(crate) calls: u64,
    pub(crate) tickets: u64,
    pub(crate) chats: u64,
    pub(crate) emails: u64,
    pub(crate) text_messages: u64,
}

impl Output {
    pub(crate) fn new(window: Window) -> Self {
        Output {
            end: window.end,
            horizon: window.end,
            events: Vec::new(),
            online_orders: 0,
            receipts: [0; STORES.len()],
            calls: 0,
            tickets: 0,
            chats: 0,
            emails: 0,
            text_messages: 0,
        }
    }

    pub(crate) fn tell_story_until(&mut self, until: i64) {
        self.horizon = until.min(self.end);
    }

    /// Events after the horizon have not happened (yet): a visit or campaign in progress at the
    /// end of the data set is simply cut short.
    pub(crate) fn push(&mut self, at: i64, source: &'static str, mut event: Value) {
        if at <= self.horizon {
            event["timestamp"] = timestamp(at).into();
            let json = event.to_string();
            self.events.push(Pending { at, source, json });
        }
    }

    pub(crate) fn finish(mut self, seed: u64) -> Vec<CompactEvent> {
        // A stable sort keeps simultaneous events in the order they were told.
        self.events.sort_by_key(|e| e.at);
        self.events
            .into_iter()
            .enumerate()
            .map(|(n, pending)| {
                // Derived from the seed alone, so sending the same demo twice is deduplicated
                // rather than doubled. Every event is a non-empty object (it has a type).
                let json = format!(
                    "{{\"messageId\":\"demo-{seed}-{}\",{}",
                    n + 1,
                    &pending.json[1..]
                );
                CompactEvent {
                    source: pending.source,
                    json,
                }
            })
            .collect()
    }
}

pub(crate) fn next(counter: &mut u64) -> u64 {
    *counter += 1;
    *counter
}
