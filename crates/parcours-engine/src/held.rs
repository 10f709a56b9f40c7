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
use std::hash::{BuildHasherDefault, Hasher};

use parcours_core::audience::EventFact;
use parcours_core::time::Millis;
use parcours_core::Channel;
use parcours_store::{owners_start, ProfileRow, Result, Store, StoredEvent};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::facts::event_name;

/// At most this many events are held (about 100 bytes each, plus their properties).
pub const HELD_MAX: usize = 4_000_000;
/// Sequence numbers read per step, spread over the cores.
const RANGE: i64 = 200_000;
/// Rows read per step while matching events to their profiles.
const MATCH_PAGE: usize = 200_000;

/// Hashes sequence numbers with one multiplication (SipHash costs more than the rest of a
/// lookup, and sequence numbers are not chosen by anyone).
#[derive(Default, Clone, Copy)]
struct SeqHasher(u64);

impl Hasher for SeqHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_i64(&mut self, n: i64) {
        self.0 = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type BySeq<V> = HashMap<i64, V, BuildHasherDefault<SeqHasher>>;

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

/// Ranges of profile ids for the matching threads, one per core. Profile ids are `p_` and
/// hex digits of a hash, so ranges split on the first digit hold about as many profiles
/// each; together they hold every id, whatever its form.
fn owner_ranges() -> Vec<(Option<String>, Option<String>)> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let bounds: Vec<String> = (1..threads)
        .map(|t| format!("p_{:x}", 16 * t / threads))
        .collect();
    (0..threads)
        .map(|t| {
            let start = match t {
                0 => String::new(),
                _ => owners_start(&bounds[t - 1]),
            };
            (Some(start), bounds.get(t).cloned())
        })
        .collect()
}

/// What the second matching thread read.
enum Side {
    Merged((Vec<ProfileRow>, String)),
    Timers(Vec<(String, Millis)>),
    Done,
}

/// A full computation's read of the log: `(start, read]` is read, `(read, upto]` is left.
pub struct Held {
    names: Vec<String>,
    named: BTreeSet<String>,
    facts: BySeq<Fact>,
    start: i64,
    read: i64,
    upto: i64,
    max: usize,
    /// More than `max` events: none are held.
    overflow: bool,
    /// While events are matched to their owners: each merged profile's parent, and where
    /// the two reads are (`None` once done).
    parents: HashMap<String, String>,
    merged_at: Option<String>,
    /// Ranges of profile ids read by threads of their own: where each is (`None` once
    /// done) and the id it stops before.
    owners: Vec<(Option<String>, Option<String>)>,
    /// Every profile's next re-evaluation, read with the owners (`None` once read).
    timers_at: Option<String>,
    timers: HashMap<String, Millis>,
    /// Held events and the profile each was applied to, until every parent is known.
    found: Vec<(String, i64)>,
    matched: bool,
    /// The held events of each live profile (and of those merged into it), by sequence
    /// number, once matched.
    owned: HashMap<String, Vec<i64>>,
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
            facts: BySeq::default(),
            start: start.min(upto),
            read: start.min(upto),
            upto,
            max,
            overflow: names.is_empty(),
            parents: HashMap::new(),
            merged_at: Some(String::new()),
            owners: owner_ranges(),
            timers_at: Some(String::new()),
            timers: HashMap::new(),
            found: Vec::new(),
            matched: false,
            owned: HashMap::new(),
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
            self.facts = BySeq::default();
        }
        Ok(kept)
    }

    /// Whether the held events are matched to their profiles (or none are held).
    pub fn is_matched(&self) -> bool {
        self.overflow || self.matched
    }

    /// Matches the held events to their live profiles, a page of rows per call: every held
    /// event's profile (ranges of profile ids, a thread each) and every merged profile's
    /// parent and stored timer (on another thread) are read side by side, then each event
    /// goes to its live profile.
    pub fn match_next(&mut self, store: &dyn Store, workspace: &str) -> Result<()> {
        if self.is_matched() {
            return Ok(());
        }
        let (facts, upto) = (&self.facts, self.upto);
        let (merged_at, timers_at) = (self.merged_at.as_deref(), self.timers_at.as_deref());
        // A page of each range of owners, each on a thread of its own.
        let owners = |position: &str, until: Option<&str>| {
            let mut found: Vec<(String, i64)> = Vec::new();
            let read = store.event_owners(workspace, position, until, MATCH_PAGE, &mut |p, seq| {
                if seq <= upto && facts.contains_key(&seq) {
                    found.push((p.to_string(), seq));
                }
            });
            read.map(|(count, next)| (count, next, found))
        };
        let (merged, owners) = std::thread::scope(|s| {
            // Merged profiles, then timers, beside the owners.
            let merged = s.spawn(move || match (merged_at, timers_at) {
                (Some(position), _) => store
                    .profiles_in_storage_order(workspace, position, (0, MATCH_PAGE), true)
                    .map(Side::Merged),
                (None, Some(after)) => store
                    .timers_page(workspace, after, MATCH_PAGE)
                    .map(Side::Timers),
                (None, None) => Ok(Side::Done),
            });
            let owners = &owners;
            let handles: Vec<_> = self
                .owners
                .iter()
                .enumerate()
                .filter_map(|(i, (at, until))| Some((i, at.as_deref()?, until.as_deref())))
                .map(|(i, at, until)| (i, s.spawn(move || owners(at, until))))
                .collect();
            let owners: Vec<_> = handles
                .into_iter()
                .map(|(i, h)| (i, h.join().expect("a matching thread panicked")))
                .collect();
            let merged = merged.join().expect("a matching thread panicked");
            (merged, owners)
        });
        match merged? {
            Side::Merged((rows, next)) => {
                let end = rows.len() < MATCH_PAGE;
                for r in rows {
                    if let Some(parent) = r.merged_into {
                        self.parents.insert(r.id, parent);
                    }
                }
                self.merged_at = (!end).then_some(next);
            }
            Side::Timers(rows) => {
                let end = rows.len() < MATCH_PAGE;
                self.timers_at = match (end, rows.last()) {
                    (false, Some((last, _))) => Some(last.clone()),
                    _ => None,
                };
                self.timers.extend(rows);
            }
            Side::Done => {}
        }
        for (i, read) in owners {
            let (count, next, found) = read?;
            self.found.extend(found);
            self.owners[i].0 = (count == MATCH_PAGE).then_some(next);
        }
        let owners_done = self.owners.iter().all(|(at, _)| at.is_none());
        if self.merged_at.is_none() && owners_done && self.timers_at.is_none() {
            for (profile, seq) in std::mem::take(&mut self.found) {
                let root = self.root_of(profile);
                self.owned.entry(root).or_default().push(seq);
            }
            self.parents = HashMap::new();
            self.matched = true;
        }
        Ok(())
    }

    /// A profile's next re-evaluation as read while matching.
    pub fn timer(&self, profile: &str) -> Option<Millis> {
        self.timers.get(profile).copied()
    }

    /// The live profile a profile was merged into (itself when live).
    fn root_of(&self, mut profile: String) -> String {
        // A chain longer than the number of merged profiles would be a cycle.
        for _ in 0..=self.parents.len() {
            match self.parents.get(&profile) {
                Some(parent) => profile = parent.clone(),
                None => break,
            }
        }
        profile
    }

    /// A live profile's held events as conditions see them, newest first (once matched).
    pub fn owned_facts(&self, profile: &str) -> Vec<EventFact> {
        let known = self.owned.get(profile).map_or(&[][..], |s| s.as_slice());
        self.facts(known, &[])
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
                crate::facts::facts(std::slice::from_ref(e), &self.named)
                    .into_iter()
                    .map(|f| (e.seq, f)),
            );
        }
        all.sort_unstable_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        all.into_iter().map(|(_, f)| f).collect()
    }
}
