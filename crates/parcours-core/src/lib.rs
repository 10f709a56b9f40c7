//! The pure domain of Parcours.
//!
//! It owns the Segment spec model (parsing, validation, clock-skew correction), channel
//! derivation, identifier normalisation and identity rules, the identity graph with its merge
//! log, and the profile model (traits, consent, channels).
//!
//! It must not depend on tokio, rusqlite, sqlx, axum, reqwest or anything else that does I/O,
//! and it never reads the clock: time is passed in as [`time::Millis`].

pub mod adhash;
pub mod attribution;
pub mod audience;
pub mod bucket;
pub mod channel;
pub mod clv;
pub mod commerce;
pub mod computed;
pub mod funnel;
pub mod graph;
pub mod identifier;
pub mod journey;
pub mod kpi;
pub mod limits;
pub mod observation;
pub mod plan;
pub mod privacy;
pub mod profile;
pub mod rules;
pub mod sealed;
pub mod spec;
pub mod stats;
pub mod table;
pub mod tcf;
pub mod time;
pub mod webhook;

pub use channel::Channel;
pub use graph::{Applied, Graph, MergeRecord};
pub use identifier::Identifier;
pub use observation::Observation;
pub use profile::Profile;
pub use rules::IdentityRules;
pub use time::{Clock, EventKey, Millis};
