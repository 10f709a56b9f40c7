//! Journey documents: save a version (or only say what it would change), read one with its
//! versions, list them.

use parcours_channels::Renderer;
use parcours_core::journey::{self, diff, Action, InFlight, Journey, Problem, Status, Trigger};
use parcours_core::time::Millis;
use parcours_store::{JourneyVersion, NewJourneyVersion, Store, StoreError};

use crate::{Actor, ServiceError};

/// What saving a document did (or, for a plan, would do).
#[derive(Debug, Clone)]
pub struct Saved {
    /// The version now latest (for a plan: the latest before it, if any).
    pub version: Option<JourneyVersion>,
    /// The journey as read from the document.
    pub journey: Journey,
    /// Whether a new version was (or would be) stored: a document identical to the latest
    /// version stores nothing.
    pub changed: bool,
    /// What changes, in words, runs in flight last.
    pub changes: Vec<String>,
    /// The document against the latest version, line by line (`None`: too large to compare).
    pub diff: Option<Vec<String>>,
}

/// Reads a document for journey `id`: every problem with its line and column, and the id in
/// the document must be the one asked for.
pub fn read(id: &str, body: &str) -> Result<Journey, ServiceError> {
    let j = journey::read(body).map_err(|problems| ServiceError::Document { problems })?;
    if j.id != id {
        return Err(ServiceError::invalid(
            "journey_id_mismatch",
            format!(
                "the document is journey `{}`, saved as `{id}`: make them the same",
                j.id
            ),
        ));
    }
    let renderer = Renderer::default();
    for s in &j.steps {
        if let Action::Send(m) = &s.action {
            let parts = [
                ("subject", &m.subject),
                ("html", &m.html),
                ("text", &m.text),
                ("title", &m.title),
            ];
            for (part, t) in parts {
                if let Some(t) = t {
                    renderer.check(part, t).map_err(|e| {
                        ServiceError::invalid(
                            "invalid_template",
                            format!(
                                "step `{}`, {part}: the template does not parse: {}",
                                s.id, e.message
                            ),
                        )
                    })?;
                }
            }
        }
    }
    if j.status == Status::Live {
        if let Some(why) = unavailable(&j) {
            return Err(ServiceError::Unprocessable {
                code: "journey_feature_unavailable",
                message: format!("{why}; save the journey as a draft until this version runs it"),
            });
        }
    }
    Ok(j)
}

/// What a live journey may not use yet, because this version does not run it: it would be
/// accepted and then silently not happen.
fn unavailable(j: &Journey) -> Option<String> {
    match &j.entry.trigger {
        Trigger::Event { .. } => {}
        Trigger::Audience { .. } => return Some("entry on an audience does not run yet".into()),
        Trigger::Api => return Some("entry by API call does not run yet".into()),
        Trigger::Schedule { .. } => return Some("entry on a schedule does not run yet".into()),
    }
    if j.in_flight == InFlight::Move {
        return Some(
            "`in_flight: move` does not run yet (runs in flight stay on their version)".into(),
        );
    }
    for s in &j.steps {
        let what = match &s.action {
            Action::UpdateTrait { .. } => "update_trait steps do not run yet",
            Action::Webhook { .. } => "webhook steps do not run yet",
            Action::AdAudience { .. } => "ad_audience steps do not run yet",
            _ => continue,
        };
        return Some(format!("step `{}`: {what}", s.id));
    }
    None
}

fn latest(
    store: &dyn Store,
    actor: &Actor,
    id: &str,
) -> Result<Option<JourneyVersion>, ServiceError> {
    Ok(store
        .journey_versions(&actor.workspace, id)?
        .into_iter()
        .next())
}

fn stored_journey(v: &JourneyVersion) -> Result<Journey, ServiceError> {
    serde_json::from_value(v.doc.clone()).map_err(|e| {
        ServiceError::Store(StoreError::Corrupt(format!(
            "journey {} version {} does not read: {e}",
            v.journey_id, v.version
        )))
    })
}

/// What saving `body` as journey `id` would change, without saving it.
pub fn plan(store: &dyn Store, actor: &Actor, id: &str, body: &str) -> Result<Saved, ServiceError> {
    let j = read(id, body)?;
    let previous = latest(store, actor, id)?;
    let old = previous.as_ref().map(stored_journey).transpose()?;
    Ok(Saved {
        changed: previous.as_ref().is_none_or(|p| p.source != body),
        changes: diff::changes(old.as_ref(), &j),
        diff: diff::line_diff(previous.as_ref().map_or("", |p| p.source.as_str()), body),
        version: previous,
        journey: j,
    })
}

/// Saves `body` as the next version of journey `id` (the first, if it is new). The same
/// document as the latest version stores nothing. Two editors saving at once: the second is
/// refused (`journey_changed`) and can look at what changed before saving again.
pub fn save(
    store: &dyn Store,
    actor: &Actor,
    id: &str,
    body: &str,
    now: Millis,
) -> Result<Saved, ServiceError> {
    actor.require_editor()?;
    let mut plan = plan(store, actor, id, body)?;
    if !plan.changed {
        return Ok(plan);
    }
    let replaces = plan.version.as_ref().map(|v| v.version);
    let new = NewJourneyVersion {
        workspace_id: actor.workspace.clone(),
        journey_id: id.to_string(),
        replaces,
        source: body.to_string(),
        doc: journey::doc::to_json(&plan.journey),
        status: plan.journey.status.as_str().to_string(),
        in_flight: plan.journey.in_flight.as_str().to_string(),
        created_at: now,
    };
    match store.put_journey_version(&new) {
        Ok(version) => {
            plan.version = store.journey_version(&actor.workspace, id, version)?;
            Ok(plan)
        }
        Err(StoreError::Conflict(m)) => Err(ServiceError::Conflict {
            code: "journey_changed",
            message: format!(
                "{m}: someone saved it meanwhile; look at the latest version and save again"
            ),
        }),
        Err(e) => Err(e.into()),
    }
}

/// One journey: its latest version (or the one asked for) and every version, latest first.
pub fn get(
    store: &dyn Store,
    actor: &Actor,
    id: &str,
    version: Option<u32>,
) -> Result<(JourneyVersion, Vec<JourneyVersion>), ServiceError> {
    let versions = store.journey_versions(&actor.workspace, id)?;
    let chosen = match version {
        None => versions.first().cloned(),
        Some(n) => versions.iter().find(|v| v.version == n).cloned(),
    };
    let chosen = chosen.ok_or_else(|| {
        ServiceError::NotFound(match version {
            None => format!("journey {id}"),
            Some(n) => format!("version {n} of journey {id}"),
        })
    })?;
    Ok((chosen, versions))
}

/// A customer's runs (the latest first, at most `limit`), each with its notes: every decision
/// and its reason, in order ("why did, or didn't, she get it?").
pub fn runs_of(
    store: &dyn Store,
    actor: &Actor,
    profile: &str,
    journey: Option<&str>,
    limit: usize,
) -> Result<Vec<(parcours_store::StoredRun, Vec<parcours_store::RunNote>)>, ServiceError> {
    // Runs are kept under the profile they started with; a profile merged since is found
    // through the one it was merged into.
    let live = store
        .profile(&actor.workspace, profile)?
        .ok_or_else(|| ServiceError::NotFound(format!("profile {profile}")))?;
    let mut ids = vec![live.id.clone()];
    if live.id != profile {
        ids.push(profile.to_string());
    }
    let mut out = Vec::new();
    for id in ids {
        for run in store.runs_of(&actor.workspace, &id, limit.clamp(1, 1000))? {
            if journey.is_some_and(|j| j != run.journey_id) {
                continue;
            }
            let notes = store.run_notes(&actor.workspace, &run.run_id)?;
            out.push((run, notes));
        }
    }
    out.sort_by_key(|r| std::cmp::Reverse(r.0.entered_at));
    out.truncate(limit.clamp(1, 1000));
    Ok(out)
}

/// The latest version of every journey of the workspace.
pub fn list(store: &dyn Store, actor: &Actor) -> Result<Vec<JourneyVersion>, ServiceError> {
    Ok(store.journeys(Some(&actor.workspace))?)
}

/// The problems of a refused document, as lines `LINE:COLUMN: CODE: MESSAGE`.
pub fn describe(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("{}:{}: {}: {}", p.at.line, p.at.column, p.code, p.message))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The source that one-click unsubscribes are recorded as coming from.
pub const UNSUBSCRIBE_SOURCE: &str = "parcours:unsubscribe";

/// A one-click unsubscribe (RFC 8058) from the link in an email: the `Unsubscribed` event
/// that records her withdrawal of email marketing, with its proof (this message, this link),
/// to append to the log. The link must be one Parcours sent; anything else is not found.
/// Clicking twice records it once (the event's `messageId` comes from the message).
pub fn unsubscribe(
    store: &dyn Store,
    ws: &str,
    key: &str,
    nonce: &str,
    now: Millis,
) -> Result<parcours_store::IngestBatch, ServiceError> {
    let not_found = || ServiceError::NotFound("unsubscribe link".into());
    let message = crate::messages::message(store, ws, key).map_err(|_| not_found())?;
    let expected = format!("/v1/unsubscribe/{ws}/{key}/{nonce}");
    if nonce.len() < 16
        || !message
            .unsubscribe
            .as_deref()
            .is_some_and(|u| u.ends_with(&expected))
    {
        return Err(not_found());
    }
    let about = crate::messages::About {
        name: "Unsubscribed",
        message_id: format!("unsubscribe:{key}"),
        properties: serde_json::json!({"method": "one_click"}),
        at: now,
    };
    let mut batch =
        crate::messages::event_of(store, ws, &message, about, now).map_err(|e| match e {
            ServiceError::Unprocessable { message, .. } => ServiceError::Unprocessable {
                code: "unsubscribe_unresolved",
                message,
            },
            e => e,
        })?;
    batch.source_id = UNSUBSCRIBE_SOURCE.into();
    Ok(batch)
}

/// Sets the workspace's contact policy (frequency caps, quiet hours, expiry of held-back
/// messages): checked, then kept as given.
pub fn set_policy(
    store: &dyn Store,
    actor: &Actor,
    doc: &serde_json::Value,
    now: Millis,
) -> Result<serde_json::Value, ServiceError> {
    actor.require_admin()?;
    journey::policy::read(doc).map_err(|e| ServiceError::invalid("invalid_contact_policy", e))?;
    store.put_journey_policy(&actor.workspace, doc, now)?;
    Ok(doc.clone())
}

/// The workspace's contact policy as saved (no caps, no quiet hours when none was).
pub fn policy(store: &dyn Store, actor: &Actor) -> Result<serde_json::Value, ServiceError> {
    Ok(store
        .journey_policy(&actor.workspace)?
        .unwrap_or_else(|| serde_json::json!({"caps": [], "expire_after": "3d"})))
}
