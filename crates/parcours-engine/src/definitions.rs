//! Definitions as documents: the stored forms of audiences, computed traits and
//! destinations, the checks a new version passes before it is stored, and deleting one
//! nothing refers to any more. The processors read them; nothing here evaluates.

use std::collections::BTreeSet;

use parcours_core::audience::{self, Condition};
use parcours_core::computed::ComputedTrait;
use parcours_core::time::Millis;
use parcours_store::{DefinitionKind, Store};
use serde_json::Value;

/// The stored form of an audience definition.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AudienceDoc {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub condition: Condition,
}

/// A stored definition's document, or `None` (logged) when it cannot be read: saved before
/// definitions were checked against every reader's limits. It is skipped, not evaluated,
/// and the rest of its workspace and every other workspace go on; the API shows it as
/// unreadable and deletes it.
pub fn readable<T: serde::de::DeserializeOwned>(d: &parcours_store::Definition) -> Option<T> {
    match serde_json::from_value::<T>(d.doc.clone()) {
        Ok(doc) => Some(doc),
        Err(e) => {
            report_once(
                &d.workspace_id,
                &d.id,
                &format!(
                    "stored definition (version {}) cannot be read: {e}; delete it and create it again",
                    d.version
                ),
            );
            None
        }
    }
}

/// Logs why a definition is not evaluated, once per reason, not at every step that reads the
/// definitions.
pub(crate) fn report_once(ws: &str, id: &str, why: &str) {
    static REPORTED: std::sync::Mutex<BTreeSet<(String, String, String)>> =
        std::sync::Mutex::new(BTreeSet::new());
    let key = (ws.to_string(), id.to_string(), why.to_string());
    if REPORTED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key)
    {
        tracing::error!(workspace = %ws, id = %id, why, "definition not evaluated");
    }
}

/// Why a definition was refused.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    /// The definition is not valid; `code` is the API's stable error code.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    #[error(transparent)]
    Store(#[from] parcours_store::StoreError),
}

impl From<audience::Refusal> for DefinitionError {
    fn from(r: audience::Refusal) -> Self {
        DefinitionError::Invalid {
            code: r.code,
            message: r.message,
        }
    }
}

fn invalid(code: &'static str, message: impl Into<String>) -> DefinitionError {
    DefinitionError::Invalid {
        code,
        message: message.into(),
    }
}

/// How deep a stored definition's JSON may nest: conditions nest up to
/// [`audience::MAX_DEPTH`] levels, two JSON levels each, and every reader (`serde_json`
/// stops at 128) must read it back.
pub const MAX_DOC_DEPTH: usize = 100;

/// The stored form of a definition, checked to read back exactly as it was given: within
/// every reader's limits (depth, keys, strings PostgreSQL can hold), and equal to `doc` once
/// written, read and decoded again. Nothing saved can fail to load later.
pub fn stored_form<T>(doc: &T, what: &str) -> std::result::Result<Value, DefinitionError>
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq,
{
    let unreadable = |why: String| {
        invalid(
            "invalid_definition",
            format!("the {what} cannot be stored as given: {why}"),
        )
    };
    let value = serde_json::to_value(doc).map_err(|e| unreadable(e.to_string()))?;
    parcours_core::limits::check_value_within(&value, MAX_DOC_DEPTH)
        .map_err(|p| invalid(p.code(), format!("the {what} holds {p}")))?;
    let text = serde_json::to_string(&value).map_err(|e| unreadable(e.to_string()))?;
    let read: Value = serde_json::from_str(&text).map_err(|e| unreadable(e.to_string()))?;
    let decoded: T = serde_json::from_value(read.clone()).map_err(|e| unreadable(e.to_string()))?;
    if read != value || decoded != *doc {
        return Err(unreadable("it reads back differently".into()));
    }
    Ok(value)
}

/// Creates or replaces an audience after checking it against the workspace's other
/// definitions (audiences it refers to exist and no cycle, computed traits exist). A new
/// version starts a full computation.
pub fn save_audience(
    store: &dyn Store,
    ws: &str,
    id: &str,
    doc: &AudienceDoc,
    now: Millis,
) -> std::result::Result<parcours_store::Definition, DefinitionError> {
    audience::check_id(id).map_err(|m| invalid("invalid_id", m))?;
    if doc.name.trim().is_empty() {
        return Err(invalid("invalid_audience", "`name` must not be empty"));
    }
    doc.condition.check()?;
    let existing = store.definitions(Some(ws))?;
    let mut conditions: Vec<(String, Condition)> = Vec::new();
    let mut traits: BTreeSet<String> = BTreeSet::new();
    let mut previous = None;
    for d in &existing {
        match d.kind {
            DefinitionKind::ComputedTrait => {
                traits.insert(d.id.clone());
            }
            DefinitionKind::Audience if d.id == id => previous = Some(d.clone()),
            DefinitionKind::Audience => {
                if let Ok(other) = serde_json::from_value::<AudienceDoc>(d.doc.clone()) {
                    conditions.push((d.id.clone(), other.condition));
                }
            }
            DefinitionKind::Destination => {}
        }
    }
    for name in doc.condition.computed_traits() {
        if !traits.contains(name) {
            return Err(invalid(
                "unknown_computed_trait",
                format!("`computed {name}`: no computed trait `{name}` in this workspace"),
            ));
        }
    }
    conditions.push((id.to_string(), doc.condition.clone()));
    let all: Vec<(&str, &Condition)> = conditions.iter().map(|(i, c)| (i.as_str(), c)).collect();
    // Audiences already left out (they refer to one no reader reads) do not block this one;
    // this one may not refer to any of them.
    let audience::Resolvable {
        kept: pairs,
        dangling,
    } = audience::resolvable(&all);
    if let Some((_, gone)) = dangling.iter().find(|(i, _)| *i == id) {
        return Err(invalid(
            "invalid_audience_reference",
            format!("`in audience \"{gone}\"`: no such audience, or it cannot be evaluated"),
        ));
    }
    audience::evaluation_order(&pairs).map_err(|m| invalid("invalid_audience_reference", m))?;
    let doc = stored_form(doc, "audience")?;
    put_version(store, ws, DefinitionKind::Audience, id, doc, previous, now)
}

/// Stores the next version of a definition (the first is 1), keeping what was computed.
/// Computes every audience and computed trait of a workspace again (a rule they read
/// changed: what unknown consent counts as, who an analytics opt-out leaves out).
pub fn recompute_definitions(
    store: &dyn Store,
    ws: &str,
    now: Millis,
) -> std::result::Result<usize, DefinitionError> {
    let mut n = 0;
    for d in store.definitions(Some(ws))? {
        if matches!(
            d.kind,
            DefinitionKind::Audience | DefinitionKind::ComputedTrait
        ) {
            put_version(
                store,
                ws,
                d.kind,
                &d.id.clone(),
                d.doc.clone(),
                Some(d),
                now,
            )?;
            n += 1;
        }
    }
    Ok(n)
}

pub(crate) fn put_version(
    store: &dyn Store,
    ws: &str,
    kind: DefinitionKind,
    id: &str,
    doc: Value,
    previous: Option<parcours_store::Definition>,
    now: Millis,
) -> std::result::Result<parcours_store::Definition, DefinitionError> {
    let definition = parcours_store::Definition {
        workspace_id: ws.into(),
        kind,
        id: id.into(),
        doc,
        version: previous.as_ref().map_or(1, |p| p.version + 1),
        computed_version: previous.as_ref().map_or(0, |p| p.computed_version),
        done: 0,
        total: 0,
        created_at: previous.as_ref().map_or(now, |p| p.created_at),
        updated_at: now,
    };
    store.put_definition(&definition)?;
    Ok(definition)
}

/// Creates or replaces a computed trait. A new version starts a full computation.
pub fn save_computed_trait(
    store: &dyn Store,
    ws: &str,
    def: &ComputedTrait,
    now: Millis,
) -> std::result::Result<parcours_store::Definition, DefinitionError> {
    def.check()?;
    let previous = store
        .definitions(Some(ws))?
        .into_iter()
        .find(|d| d.kind == DefinitionKind::ComputedTrait && d.id == def.id);
    let doc = stored_form(def, "computed trait")?;
    put_version(
        store,
        ws,
        DefinitionKind::ComputedTrait,
        &def.id,
        doc,
        previous,
        now,
    )
}

/// Deletes a definition unless an audience or a destination still refers to it. Returns
/// whether it existed.
pub fn delete_definition(
    store: &dyn Store,
    ws: &str,
    kind: DefinitionKind,
    id: &str,
) -> std::result::Result<bool, DefinitionError> {
    if kind == DefinitionKind::Audience {
        if let Some(dest) = destinations_using(store, ws, id)?.first() {
            return Err(invalid(
                "definition_in_use",
                format!("destination `{dest}` sends `{id}`: change or delete it first"),
            ));
        }
    }
    for d in store.definitions(Some(ws))? {
        if d.kind != DefinitionKind::Audience || (kind == DefinitionKind::Audience && d.id == id) {
            continue;
        }
        let Ok(doc) = serde_json::from_value::<AudienceDoc>(d.doc.clone()) else {
            continue;
        };
        let used = match kind {
            DefinitionKind::Audience => doc.condition.audiences().contains(id),
            DefinitionKind::ComputedTrait => doc.condition.computed_traits().contains(id),
            DefinitionKind::Destination => false,
        };
        if used {
            return Err(invalid(
                "definition_in_use",
                format!(
                    "audience `{}` refers to `{id}`: change or delete it first",
                    d.id
                ),
            ));
        }
    }
    Ok(store.delete_definition(ws, kind, id)?)
}

/// The destinations that send an audience's changes (whose document names it).
pub fn destinations_using(
    store: &dyn Store,
    ws: &str,
    audience: &str,
) -> std::result::Result<Vec<String>, parcours_store::StoreError> {
    /// The part of a destination's document that names its audiences.
    #[derive(serde::Deserialize)]
    struct Sends {
        #[serde(default)]
        audiences: Vec<String>,
    }
    Ok(store
        .definitions(Some(ws))?
        .into_iter()
        .filter(|d| d.kind == DefinitionKind::Destination)
        .filter(|d| {
            serde_json::from_value::<Sends>(d.doc.clone())
                .is_ok_and(|doc| doc.audiences.iter().any(|a| a == audience))
        })
        .map(|d| d.id)
        .collect())
}
