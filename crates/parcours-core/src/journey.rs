//! Journeys: what Parcours does for a customer over time, written as a document and run by a
//! pure state machine.
//!
//! A journey is a YAML (or JSON) document ([`doc::read`]) that becomes a [`Journey`]: how a
//! customer enters, the goal and exit condition that end her run at once, and the steps she
//! goes through. [`machine::step`] moves one run forward on one input (an event of hers, her
//! timer firing, her profile changing) and says what must happen ([`machine::Effect`]): sends,
//! trait updates, webhooks, timers. It never reads the clock nor does I/O, so the same journey
//! runs live, in simulation on a virtual clock, and under property tests.

pub mod diff;
pub mod doc;
pub mod local;
pub mod machine;
pub mod policy;
pub mod report;
#[cfg(test)]
mod tests;
pub mod yaml;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audience::{Condition, Filter};
use crate::time::Millis;

pub use doc::read;
pub use machine::{admit, enter, step, Admission, Effect, Input, Look, Outcome, Run, RunState};
pub use yaml::Pos;

/// Why a document was refused, and where: a stable code, the line and column, a message a
/// person can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("line {}, column {}: {message}", at.line, at.column)]
pub struct Problem {
    pub code: &'static str,
    #[serde(serialize_with = "pos_json")]
    pub at: Pos,
    pub message: String,
}

fn pos_json<S: serde::Serializer>(at: &Pos, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    let mut st = s.serialize_struct("Pos", 2)?;
    st.serialize_field("line", &at.line)?;
    st.serialize_field("column", &at.column)?;
    st.end()
}

impl Problem {
    pub fn new(code: &'static str, at: Pos, message: impl Into<String>) -> Self {
        Self {
            code,
            at,
            message: message.into(),
        }
    }
}

/// A journey, as read from its document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Journey {
    pub id: String,
    pub name: String,
    pub status: Status,
    /// 0–100; when two journeys compete for the same customer's contact budget, the higher
    /// one goes first.
    pub priority: u8,
    pub entry: Entry,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<Goal>,
    /// Ends a run as soon as it holds (checked on every input and before every send).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_if: Option<Condition>,
    /// The share of entrants, in basis points (1/100 of a percent), kept as a control group:
    /// they go through the steps but are sent nothing.
    #[serde(default)]
    pub holdout_bp: u16,
    /// Quiet hours for this journey's messages (the workspace's apply when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<QuietHours>,
    /// The time zone for customers whose profile names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// What a new version does to runs in flight on the previous one.
    #[serde(default)]
    pub in_flight: InFlight,
    pub steps: Vec<Step>,
}

/// What happens to runs in flight when a new version of their journey is saved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InFlight {
    /// They finish on the version they started on; new entrants take the new one.
    #[default]
    Stay,
    /// They move to the step with the same id in the new version (those whose step is gone
    /// stay on their version).
    Move,
}

impl InFlight {
    pub fn as_str(self) -> &'static str {
        match self {
            InFlight::Stay => "stay",
            InFlight::Move => "move",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Draft,
    Live,
    Paused,
    Archived,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Live => "live",
            Status::Paused => "paused",
            Status::Archived => "archived",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub trigger: Trigger,
    /// A path into the triggering event (`properties.cart_id`): one run per value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub reentry: Reentry,
    /// At most this many entries, ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap: Option<u64>,
    /// Only customers for whom this holds enter.
    #[serde(default, rename = "if", skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
    /// An event older than this when it is processed enters no one (history being imported,
    /// a device that was offline for a week).
    #[serde(default = "default_max_age")]
    pub max_age_ms: Millis,
}

/// By default an event enters a journey only if it happened within the last day.
pub const DEFAULT_MAX_AGE_MS: Millis = 86_400_000;

fn default_max_age() -> Millis {
    DEFAULT_MAX_AGE_MS
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Trigger {
    /// An event, optionally filtered on its properties.
    Event {
        event: String,
        #[serde(default, rename = "where", skip_serializing_if = "Vec::is_empty")]
        filters: Vec<Filter>,
    },
    /// Entering (or leaving) an audience.
    Audience { audience: String, leave: bool },
    /// A call to the API, with entry properties.
    Api,
    /// At a moment, or every period from it; `local` makes the time of day each customer's own.
    Schedule {
        at: Millis,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        every_ms: Option<Millis>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        local_time: Option<LocalTime>,
        /// Who is entered: the members of this audience (everyone when absent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audience: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reentry {
    /// Once per customer (per key), ever.
    Never,
    /// Again once the previous run ended.
    AfterExit,
    /// Again once the previous run ended and this long has passed since it began.
    Cooldown { ms: Millis },
}

/// A time of day, in minutes after midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalTime {
    pub minute_of_day: u16,
}

impl LocalTime {
    pub fn hour(self) -> u32 {
        u32::from(self.minute_of_day / 60)
    }
    pub fn minute(self) -> u32 {
        u32::from(self.minute_of_day % 60)
    }
}

/// What counts as converting: an event (with filters) or a condition on the profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Goal {
    Event {
        event: String,
        #[serde(default, rename = "where", skip_serializing_if = "Vec::is_empty")]
        filters: Vec<Filter>,
    },
    Condition {
        condition: Condition,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietHours {
    pub from: LocalTime,
    pub to: LocalTime,
    /// Drop a message that falls in quiet hours instead of deferring it to their end.
    #[serde(default)]
    pub drop: bool,
}

/// Where a step goes next: another step, or the end of the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Step(String),
    End,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub id: String,
    #[serde(flatten)]
    pub action: Action,
    /// Where to go after this step (the following step when absent; the end after the last).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<Target>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    Wait {
        ms: Millis,
    },
    /// Until the next time of day (on the allowed week days) in the customer's time zone, or
    /// until a date trait plus an offset (at a time of day when given).
    WaitUntil {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        time: Option<LocalTime>,
        /// Allowed week days, Monday = 0; empty: every day.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        days: Vec<u8>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        date_trait: Option<String>,
        #[serde(default)]
        offset_ms: Millis,
    },
    WaitFor {
        event: String,
        #[serde(default, rename = "where", skip_serializing_if = "Vec::is_empty")]
        filters: Vec<Filter>,
        timeout_ms: Millis,
        on_event: Target,
        on_timeout: Target,
    },
    Branch {
        condition: Condition,
        then: Target,
        otherwise: Target,
    },
    /// A random split, sticky per customer: the same customer always lands in the same
    /// variant of the same step.
    Split {
        variants: Vec<Variant>,
    },
    Send(Message),
    UpdateTrait {
        name: String,
        value: Value,
    },
    Webhook {
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
        /// What the call is for: `marketing` (the default) needs her consent to it on the
        /// `webhook` channel (or to the purpose); `transactional` is an answer to what she
        /// did and needs none.
        #[serde(default = "marketing")]
        purpose: String,
    },
    AdAudience {
        destination: String,
        add: bool,
    },
    Exit,
}

impl Action {
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Wait { .. } => "wait",
            Action::WaitUntil { .. } => "wait_until",
            Action::WaitFor { .. } => "wait_for",
            Action::Branch { .. } => "branch",
            Action::Split { .. } => "split",
            Action::Send(_) => "send",
            Action::UpdateTrait { .. } => "update_trait",
            Action::Webhook { .. } => "webhook",
            Action::AdAudience { .. } => "ad_audience",
            Action::Exit => "exit",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    pub name: String,
    pub weight: u32,
    pub next: Target,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub channel: MessageChannel,
    /// The consent purpose the message needs (`marketing` unless said otherwise;
    /// `transactional` messages need none).
    pub purpose: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Push title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Channels to try next when this one cannot deliver, or is not delivered (or opened)
    /// within `fallback_after_ms`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallback: Vec<MessageChannel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_after_ms: Option<Millis>,
    /// Texts of its own for a channel it goes out on (its channel or a fallback): each part
    /// given replaces the message's when it goes out there.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub variants: std::collections::BTreeMap<MessageChannel, ChannelTexts>,
}

/// A message's texts for one channel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelTexts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

impl Message {
    /// The message as it goes out on `channel`: its variant's parts where it has them, its own
    /// elsewhere.
    pub fn on(&self, channel: MessageChannel) -> Message {
        let mut m = self.clone();
        if let Some(v) = self.variants.get(&channel) {
            let pick = |own: &Option<String>, theirs: &Option<String>| {
                theirs.clone().or_else(|| own.clone())
            };
            m.subject = pick(&self.subject, &v.subject);
            m.html = pick(&self.html, &v.html);
            m.text = pick(&self.text, &v.text);
            m.title = pick(&self.title, &v.title);
        }
        m
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageChannel {
    Email,
    Sms,
    Push,
}

impl MessageChannel {
    pub const ALL: [MessageChannel; 3] = [
        MessageChannel::Email,
        MessageChannel::Sms,
        MessageChannel::Push,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageChannel::Email => "email",
            MessageChannel::Sms => "sms",
            MessageChannel::Push => "push",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl Journey {
    pub fn step_index(&self, id: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.id == id)
    }

    /// Where step `i` goes when it simply finishes.
    pub fn after(&self, i: usize) -> Target {
        match &self.steps[i].next {
            Some(t) => t.clone(),
            None => match self.steps.get(i + 1) {
                Some(s) => Target::Step(s.id.clone()),
                None => Target::End,
            },
        }
    }
}

fn marketing() -> String {
    "marketing".into()
}
