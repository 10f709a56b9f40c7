//! Events as audience conditions see them: their names and properties, read from the log.

use std::collections::BTreeSet;

use parcours_core::audience::EventFact;
use parcours_core::spec::EventType;
use parcours_store::StoredEvent;
use serde_json::Value;

/// The name conditions see for an event; `None` for events that are not actions.
pub fn event_name(e: &StoredEvent) -> Option<&str> {
    match e.kind {
        EventType::Track => e.event.as_deref(),
        EventType::Page => Some("Page Viewed"),
        EventType::Screen => Some("Screen Viewed"),
        _ => None,
    }
}

/// A profile's events as conditions see them. Properties are parsed only for the event
/// names some definition reads.
pub fn facts(events: &[StoredEvent], names: &BTreeSet<String>) -> Vec<EventFact> {
    events
        .iter()
        .filter_map(|e| {
            let name = event_name(e)?;
            let properties = if names.contains(name) {
                serde_json::from_str::<Value>(&e.body)
                    .ok()
                    .and_then(|mut b| b.get_mut("properties").map(Value::take))
                    .unwrap_or(Value::Null)
            } else {
                Value::Null
            };
            Some(EventFact {
                name: name.to_string(),
                ts: e.timestamp,
                channel: e.channel,
                properties,
            })
        })
        .collect()
}

/// Whether an event may change a person's consent to analytics (which takes her out of, or
/// back into, every definition): a cheap look at the text; a false positive only evaluates
/// more. Other consent is read by consent conditions, which every event evaluates.
pub fn records_consent(e: &StoredEvent) -> bool {
    e.body.contains("categoryPreferences") && e.body.contains("\"analytics\"")
}
