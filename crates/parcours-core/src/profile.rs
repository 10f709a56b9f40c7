//! The customer profile: one person's identifiers, traits, consent and channels.
//!
//! Every field merges by rules that do not depend on the order events arrive in: traits and
//! consent are last-write-wins by event time (then `messageId`), channel statistics are sums,
//! minima and maxima.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::channel::Channel;
use crate::identifier::Identifier;
use crate::observation::{ConsentMethod, Observation};
use crate::time::{EventKey, Millis};

/// Identifier types that do not name a person: a profile holding only these is anonymous.
pub const ANONYMOUS_KINDS: [&str; 3] = ["anonymous_id", "device_id", "advertising_id"];

/// A trait value with the event that set it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stamped {
    pub value: Value,
    pub ts: Millis,
    pub mid: String,
}

impl Stamped {
    fn key(&self) -> (Millis, &str) {
        (self.ts, &self.mid)
    }
}

/// Consent for one purpose (optionally on one channel), with the proof of how it was given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsentRecord {
    pub granted: bool,
    /// When the person gave or withdrew it (event time).
    pub ts: Millis,
    pub received_at: Millis,
    pub message_id: String,
    pub source_id: String,
    /// Where it was given.
    pub channel: Channel,
    /// How it was given.
    pub method: ConsentMethod,
    /// The version of the text she agreed to or refused (`context.consent.version`, or
    /// `properties.version` of a consent event), as the site or app sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_version: Option<String>,
}

/// The answer to "may we, for this purpose (on this channel)?".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentState {
    Granted,
    Withdrawn,
    /// Never asked (no record for the purpose on the channel, nor for the purpose).
    Unknown,
}

impl ConsentState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentState::Granted => "granted",
            ConsentState::Withdrawn => "withdrawn",
            ConsentState::Unknown => "unknown",
        }
    }
}

impl<'de> Deserialize<'de> for ConsentState {
    /// `"granted"`, `"withdrawn"`, `"unknown"`, or (the form definitions were first stored
    /// in) `true` / `false`.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Bool(true) => Ok(ConsentState::Granted),
            Value::Bool(false) => Ok(ConsentState::Withdrawn),
            Value::String(s) if s == "granted" => Ok(ConsentState::Granted),
            Value::String(s) if s == "withdrawn" => Ok(ConsentState::Withdrawn),
            Value::String(s) if s == "unknown" => Ok(ConsentState::Unknown),
            other => Err(serde::de::Error::custom(format!(
                "expected \"granted\", \"withdrawn\" or \"unknown\", found {other}"
            ))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelStats {
    pub first_seen: Millis,
    pub last_seen: Millis,
    pub events: u64,
}

/// A profile's first event in the log (the lowest `seq`): the profile's id is derived from it,
/// so the id depends on which events the profile holds, never on the order they were applied
/// in (live, re-derived or replayed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub seq: i64,
    pub mid: String,
}

impl Default for Origin {
    /// A profile stored before origins were kept: unknown, so its next event re-derives it.
    fn default() -> Self {
        Self {
            seq: i64::MAX,
            mid: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub id: String,
    pub identifiers: BTreeSet<Identifier>,
    pub traits: BTreeMap<String, Stamped>,
    /// Keyed by purpose (`marketing`) or purpose and channel (`marketing:sms`).
    pub consent: BTreeMap<String, ConsentRecord>,
    pub channels: BTreeMap<Channel, ChannelStats>,
    pub first: EventKey,
    pub last: EventKey,
    /// Its first event in the log (see [`Origin`]).
    #[serde(default)]
    pub origin: Origin,
    pub last_channel: Channel,
    pub events: u64,
    /// The latest event that changed which identifiers this profile holds (created it, linked
    /// an identifier, merged another profile in). An older event arriving late that changes
    /// nothing structural can be applied as it comes; anything else needs a re-derivation.
    #[serde(default)]
    pub shaped: EventKey,
    /// Some identifier this profile observed is also observed by another profile (a limit kept
    /// them apart). Such profiles must be re-derived together when an event arrives late.
    pub entangled: bool,
}

impl Profile {
    pub fn new(id: String, obs: &Observation) -> Self {
        Self {
            id,
            identifiers: BTreeSet::new(),
            traits: BTreeMap::new(),
            consent: BTreeMap::new(),
            channels: BTreeMap::new(),
            first: obs.key.clone(),
            last: obs.key.clone(),
            origin: Origin {
                seq: obs.seq,
                mid: obs.key.mid.clone(),
            },
            last_channel: obs.channel,
            events: 0,
            shaped: obs.key.clone(),
            entangled: false,
        }
    }

    /// Whether someone is known: the profile holds an identifier that names a person (a user
    /// id, an email, a phone, an external id, a loyalty card…), not only anonymous ids and
    /// device ids (a till receipt, a browser that never logged in).
    pub fn is_known(&self) -> bool {
        self.identifiers
            .iter()
            .any(|i| !ANONYMOUS_KINDS.contains(&i.kind.as_str()))
    }

    /// Counts identifiers per type.
    pub fn count_of(&self, kind: &str) -> usize {
        self.identifiers.iter().filter(|i| i.kind == kind).count()
    }

    /// Applies what one event says about the person. The traits that carried an identifier
    /// the rules kept off this profile (`dropped`: the other person's phone on the call that
    /// bridged two customers) are not this person's, and are left out too.
    pub fn observe(&mut self, obs: &Observation, dropped: &[Identifier]) {
        for (name, value) in &obs.traits {
            if dropped.iter().any(|d| d.kind == *name) {
                continue;
            }
            let candidate = Stamped {
                value: value.clone(),
                ts: obs.key.ts,
                mid: obs.key.mid.clone(),
            };
            set_if_newer(&mut self.traits, name, candidate, Stamped::key);
        }
        if let Some(method) = obs.consent_method {
            for (purpose, granted) in &obs.consent {
                let record = ConsentRecord {
                    granted: *granted,
                    ts: obs.key.ts,
                    received_at: obs.received_at,
                    message_id: obs.key.mid.clone(),
                    source_id: obs.source_id.clone(),
                    channel: obs.channel,
                    method,
                    text_version: obs.consent_version.clone(),
                };
                set_if_newer(&mut self.consent, purpose, record, |r| {
                    (r.ts, r.message_id.as_str())
                });
            }
        }
        let stats = ChannelStats {
            first_seen: obs.key.ts,
            last_seen: obs.key.ts,
            events: 1,
        };
        add_channel(&mut self.channels, obs.channel, stats);
        if obs.key < self.first {
            self.first = obs.key.clone();
        }
        if obs.seq < self.origin.seq {
            self.origin = Origin {
                seq: obs.seq,
                mid: obs.key.mid.clone(),
            };
        }
        if obs.key >= self.last {
            self.last = obs.key.clone();
            self.last_channel = obs.channel;
        }
        self.events += 1;
    }

    /// Takes in everything another profile knew (a merge).
    pub fn absorb(&mut self, other: Profile) {
        self.identifiers.extend(other.identifiers);
        for (name, t) in other.traits {
            set_if_newer(&mut self.traits, &name, t, Stamped::key);
        }
        for (purpose, c) in other.consent {
            set_if_newer(&mut self.consent, &purpose, c, |r| {
                (r.ts, r.message_id.as_str())
            });
        }
        for (channel, stats) in other.channels {
            add_channel(&mut self.channels, channel, stats);
        }
        if other.first < self.first {
            self.first = other.first;
        }
        if other.origin.seq < self.origin.seq {
            self.origin = other.origin;
        }
        if other.last > self.last {
            self.last = other.last;
            self.last_channel = other.last_channel;
        }
        self.events += other.events;
        self.shaped = self.shaped.clone().max(other.shaped);
        self.entangled |= other.entangled;
    }

    /// Consent for a purpose, on a channel if one is named: the record for that channel
    /// (`marketing:email`), else the record for the purpose (`marketing`), else unknown. Also
    /// returns the record that answered (its key and proof).
    pub fn consent_for(
        &self,
        purpose: &str,
        channel: Option<&str>,
    ) -> (ConsentState, Option<(&str, &ConsentRecord)>) {
        let specific = channel.and_then(|c| {
            self.consent
                .get_key_value(format!("{purpose}:{c}").as_str())
        });
        match specific.or_else(|| self.consent.get_key_value(purpose)) {
            Some((key, r)) => (
                if r.granted {
                    ConsentState::Granted
                } else {
                    ConsentState::Withdrawn
                },
                Some((key.as_str(), r)),
            ),
            None => (ConsentState::Unknown, None),
        }
    }

    /// Why she may not be reached for `purpose` on `channel`, or `None` when she may: her
    /// record for the channel (or the purpose) grants it, or there is none and the
    /// workspace counts that as consent (`unknown_granted`).
    pub fn consent_refusal(
        &self,
        purpose: &str,
        channel: &str,
        unknown_granted: bool,
    ) -> Option<String> {
        match self.consent_for(purpose, Some(channel)) {
            (ConsentState::Granted, _) => None,
            (ConsentState::Unknown, _) if unknown_granted => None,
            (ConsentState::Withdrawn, Some((k, _))) => Some(format!("consent `{k}` is withdrawn")),
            _ => Some(format!(
                "no consent to {purpose} on {channel} (never given, and the workspace does not count that as consent)"
            )),
        }
    }

    /// The profile as its records stood at `at`: traits and consent recorded by then (a
    /// later value hides the one before it, which is not kept: such a trait is left out),
    /// channels first seen by then.
    pub fn as_of(&self, at: Millis) -> Profile {
        let mut p = self.clone();
        p.traits.retain(|_, t| t.ts <= at);
        p.consent.retain(|_, c| c.ts <= at);
        p.channels.retain(|_, s| s.first_seen <= at);
        for s in p.channels.values_mut() {
            s.last_seen = s.last_seen.min(at);
        }
        if p.last.ts > at {
            if let Some((c, _)) = p.channels.iter().max_by_key(|(_, s)| s.last_seen) {
                p.last_channel = *c;
            }
        }
        p
    }

    /// The trait values without their stamps.
    pub fn trait_values(&self) -> serde_json::Map<String, Value> {
        self.traits
            .iter()
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .collect()
    }
}

fn set_if_newer<T>(
    map: &mut BTreeMap<String, T>,
    key: &str,
    candidate: T,
    stamp: impl Fn(&T) -> (Millis, &str),
) {
    match map.get_mut(key) {
        Some(current) if stamp(current) >= stamp(&candidate) => {}
        Some(current) => *current = candidate,
        None => {
            map.insert(key.to_string(), candidate);
        }
    }
}

fn add_channel(map: &mut BTreeMap<Channel, ChannelStats>, channel: Channel, stats: ChannelStats) {
    map.entry(channel)
        .and_modify(|s| {
            s.first_seen = s.first_seen.min(stats.first_seen);
            s.last_seen = s.last_seen.max(stats.last_seen);
            s.events += stats.events;
        })
        .or_insert(stats);
}
