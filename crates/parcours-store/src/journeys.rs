//! The journeys port: every version of every journey document, append-only.
//!
//! A version is the document as it was given (YAML or JSON, kept byte for byte so that what
//! users keep in git reads back the same) with its parsed form. Versions are numbered from 1
//! per journey; a new version names the one it replaces, and is refused when another writer
//! got there first, so two concurrent edits never silently overwrite each other.

use parcours_core::time::Millis;
use serde::Serialize;
use serde_json::Value;

use crate::Result;

/// A version to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJourneyVersion {
    pub workspace_id: String,
    pub journey_id: String,
    /// The version this one replaces: `None` for a new journey.
    pub replaces: Option<u32>,
    /// The document as given.
    pub source: String,
    /// Its parsed form ([`parcours_core::journey::Journey`] as JSON).
    pub doc: Value,
    /// `draft`, `live`, `paused` or `archived` (the document's own status).
    pub status: String,
    /// What happens to runs in flight on the previous version: `stay` or `move`.
    pub in_flight: String,
    pub created_at: Millis,
}

/// A stored version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JourneyVersion {
    pub workspace_id: String,
    pub journey_id: String,
    pub version: u32,
    pub source: String,
    pub doc: Value,
    pub status: String,
    pub in_flight: String,
    #[serde(serialize_with = "parcours_core::time::serialize_iso")]
    pub created_at: Millis,
}

pub trait Journeys: Send + Sync {
    /// Stores a new version and returns its number: `replaces + 1`, or 1 for a new journey.
    /// `Conflict` when `replaces` is not the latest version (or the journey exists and
    /// `replaces` is `None`).
    fn put_journey_version(&self, v: &NewJourneyVersion) -> Result<u32>;
    /// The latest version of every journey of a workspace (every workspace: `None`), by id.
    fn journeys(&self, workspace: Option<&str>) -> Result<Vec<JourneyVersion>>;
    /// Every version of one journey, the latest first.
    fn journey_versions(&self, workspace: &str, journey: &str) -> Result<Vec<JourneyVersion>>;
    /// One version.
    fn journey_version(
        &self,
        workspace: &str,
        journey: &str,
        version: u32,
    ) -> Result<Option<JourneyVersion>>;
}
