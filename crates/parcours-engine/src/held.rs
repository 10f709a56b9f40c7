//! The events a full computation holds while it evaluates every profile.
//!
//! Reading each profile's events one by one costs a random read of the log per event, most
//! of them events no definition names. A full computation first reads the log once, in order
//! and in ranges ([`parcours_store::EventLog::named_events`]), keeping only the events some
//! definition names; evaluating a page of profiles then reads just which of those events are
//! theirs ([`parcours_store::Audiences::audience_inputs`] with `known_upto`). Events applied
//! after the read began are read per profile as before.
//!
//! Memory is bounded: past [`HELD_MAX`] events the computation lets them go and reads every
//! profile's events itself (slower, same answers).

use std::collections::{BTreeSet, HashMap};

use parcours_core::audience::EventFact;
use parcours_core::time::Millis;
use parcours_core::Channel;
use parcours_store::{Result, Store, StoredEvent};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::audiences::event_name;

/// At most this many events are held (about 100 bytes each, plus their properties).
pub const HELD_MAX: usize = 4_000_000;
/// Sequence numbers read per step, spread over the cores.
const RANGE: i64 = 200_000;

/// One held event, its properties kept as text until evaluated.
struct Fact {
    name: u16,
    ts: Millis,
    channel: Channel,
    properties: Option<Box<str>>,
}

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    properties: Option<&'a RawValue>,
}

/// A full computation's read of the log: `(start, read]` is read, `(read, upto]` is left.
pub struct Held {
    names: Vec<String>,
    named: BTreeSet<String>,
    facts: HashMap<i64, Fact>,
    start: i64,
    read: i64,
    upto: i64,
    max: usize,
    /// More than `max` events: none are held.
    overflow: bool,
}

impl Held {
    /// A read of the log of `workspace` up to what unify has applied, for these names,
    /// holding at most `max` events.
    pub fn start(
        store: &dyn Store,
        workspace: &str,
        names: &BTreeSet<String>,
        max: usize,
    ) -> Result<Held> {
        let upto = store.processed_seq()?;
        let start = match store.workspace_events(workspace, 0, 1)?.first() {
            Some(e) => e.seq - 1,
            None => upto,
        };
        Ok(Held {
            names: names.iter().cloned().collect(),
            named: names.clone(),
            facts: HashMap::new(),
            start: start.min(upto),
            read: start.min(upto),
            upto,
            max,
            overflow: names.is_empty(),
        })
    }

    /// Whether the log has been read (or the read given up).
    pub fn is_read(&self) -> bool {
        self.overflow || self.read >= self.upto
    }

    /// How much of the log has been read, from 0 to 1.
    pub fn fraction(&self) -> f64 {
        if self.is_read() {
            1.0
        } else {
            (self.read - self.start) as f64 / (self.upto - self.start) as f64
        }
    }

    /// The `known_upto` to read profiles with: events up to it are held (0 when none are).
    pub fn known_upto(&self) -> i64 {
        if self.overflow {
            0
        } else {
            self.upto
        }
    }

    /// Reads the next range of the log, split between the cores. Returns the events kept.
    pub fn read_next(&mut self, store: &dyn Store, workspace: &str) -> Result<usize> {
        if self.is_read() {
            return Ok(0);
        }
        let end = (self.read + RANGE).min(self.upto);
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 8) as i64;
        let step = ((end - self.read) / threads).max(1);
        let bounds: Vec<(i64, i64)> = (0..threads)
            .map(|i| {
                let from = (self.read + i * step).min(end);
                let to = if i == threads - 1 {
                    end
                } else {
                    (from + step).min(end)
                };
                (from, to)
            })
            .filter(|(from, to)| from < to)
            .collect();
        let this = &*self;
        let parts: Vec<Result<Vec<(i64, Fact)>>> = std::thread::scope(|s| {
            let handles: Vec<_> = bounds
                .into_iter()
                .map(|(from, to)| {
                    s.spawn(move || {
                        let events = store.named_events(workspace, from, to, &this.names)?;
                        Ok(events.iter().filter_map(|e| this.fact(e)).collect())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a log reading thread panicked"))
                .collect()
        });
        let mut kept = 0;
        for part in parts {
            let part = part?;
            kept += part.len();
            self.facts.extend(part);
        }
        self.read = end;
        if self.facts.len() > self.max {
            tracing::info!(
                workspace,
                held = self.facts.len(),
                "a full computation names more events than it can hold; reading them per profile"
            );
            self.overflow = true;
            self.facts = HashMap::new();
        }
        Ok(kept)
    }

    fn fact(&self, e: &StoredEvent) -> Option<(i64, Fact)> {
        let name = event_name(e)?;
        let name = self.names.binary_search_by(|n| n.as_str().cmp(name)).ok()?;
        let properties = serde_json::from_str::<Body<'_>>(&e.body)
            .ok()
            .and_then(|b| b.properties)
            .map(|p| Box::from(p.get()));
        Some((
            e.seq,
            Fact {
                name: u16::try_from(name).ok()?,
                ts: e.timestamp,
                channel: e.channel,
                properties,
            },
        ))
    }

    /// A profile's events as conditions see them, newest first: the held ones among `known`
    /// (its events up to [`Held::known_upto`]) and the ones read with the profile.
    pub fn facts(&self, known: &[i64], read: &[StoredEvent]) -> Vec<EventFact> {
        let mut all: Vec<(i64, EventFact)> = Vec::with_capacity(read.len() + known.len());
        for seq in known {
            if let Some(f) = self.facts.get(seq) {
                all.push((
                    *seq,
                    EventFact {
                        name: self.names[f.name as usize].clone(),
                        ts: f.ts,
                        channel: f.channel,
                        properties: f
                            .properties
                            .as_deref()
                            .and_then(|p| serde_json::from_str::<Value>(p).ok())
                            .unwrap_or(Value::Null),
                    },
                ));
            }
        }
        for e in read {
            all.extend(
                crate::audiences::facts(std::slice::from_ref(e), &self.named)
                    .into_iter()
                    .map(|f| (e.seq, f)),
            );
        }
        all.sort_unstable_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        all.into_iter().map(|(_, f)| f).collect()
    }
}
