//! Audience definitions: create, replace, delete, read with their size. Who may: editors
//! (admins and marketers) change them; every role of the workspace reads them.

use parcours_core::audience::{self, Condition};
use parcours_core::time::Millis;
use parcours_engine::audiences::{delete_definition, save_audience, AudienceDoc, DefinitionError};
use parcours_store::{Definition, DefinitionKind, Store};
use serde_json::Value;

use crate::{definition, Actor, ServiceError};

impl From<DefinitionError> for ServiceError {
    fn from(e: DefinitionError) -> Self {
        match e {
            DefinitionError::Invalid { code, message } => ServiceError::Invalid { code, message },
            DefinitionError::Store(e) => ServiceError::Store(e),
        }
    }
}

/// An audience as a caller gives it: its condition as text (`definition`) or as a JSON tree
/// (`condition`), one of the two.
#[derive(Debug, Clone, PartialEq)]
pub struct AudienceInput {
    pub name: String,
    pub description: String,
    pub definition: Option<String>,
    pub condition: Option<Value>,
}

fn condition_of(input: &AudienceInput) -> Result<Condition, ServiceError> {
    match (&input.definition, &input.condition) {
        (Some(text), None) => audience::parse(text)
            .map_err(|e| ServiceError::invalid(e.code, format!("definition: {e}"))),
        (None, Some(tree)) => audience::from_json(tree)
            .map_err(|e| ServiceError::invalid(e.code, format!("condition: {e}"))),
        _ => Err(ServiceError::invalid(
            "invalid_audience",
            "give the condition either as text (`definition`) or as a JSON tree (`condition`)",
        )),
    }
}

fn save(
    store: &dyn Store,
    actor: &Actor,
    id: &str,
    input: AudienceInput,
    now: Millis,
) -> Result<Definition, ServiceError> {
    actor.require_editor()?;
    let doc = AudienceDoc {
        condition: condition_of(&input)?,
        name: input.name,
        description: input.description,
    };
    Ok(save_audience(store, &actor.workspace, id, &doc, now)?)
}

/// A new audience (`audience_exists` when the id is taken); it is computed over the whole
/// history, then kept up to date.
pub fn create_audience(
    store: &dyn Store,
    actor: &Actor,
    id: &str,
    input: AudienceInput,
    now: Millis,
) -> Result<Definition, ServiceError> {
    actor.require_editor()?;
    if definition(store, actor, DefinitionKind::Audience, id).is_ok() {
        return Err(ServiceError::Conflict {
            code: "audience_exists",
            message: format!("audience {id} exists; PUT /api/v1/audiences/{id} replaces it"),
        });
    }
    save(store, actor, id, input, now)
}

/// Replaces an audience (computed again), or creates it.
pub fn replace_audience(
    store: &dyn Store,
    actor: &Actor,
    id: &str,
    input: AudienceInput,
    now: Millis,
) -> Result<Definition, ServiceError> {
    save(store, actor, id, input, now)
}

/// The workspace's audiences with their sizes.
pub fn audiences(store: &dyn Store, actor: &Actor) -> Result<Vec<(Definition, u64)>, ServiceError> {
    let mut out = Vec::new();
    for d in store.definitions(Some(&actor.workspace))? {
        if d.kind == DefinitionKind::Audience {
            let size = store.member_count(&actor.workspace, &d.id)?;
            out.push((d, size));
        }
    }
    Ok(out)
}

/// An audience with its size.
pub fn audience(
    store: &dyn Store,
    actor: &Actor,
    id: &str,
) -> Result<(Definition, u64), ServiceError> {
    let d = definition(store, actor, DefinitionKind::Audience, id)?;
    let size = store.member_count(&actor.workspace, id)?;
    Ok((d, size))
}

/// Deletes an audience, a computed trait or a destination with what hangs on it
/// (`definition_in_use` for an audience a destination sends).
pub fn delete(
    store: &dyn Store,
    actor: &Actor,
    kind: DefinitionKind,
    id: &str,
) -> Result<(), ServiceError> {
    actor.require_editor()?;
    if delete_definition(store, &actor.workspace, kind, id)? {
        Ok(())
    } else {
        Err(ServiceError::NotFound(format!("{} {id}", kind.as_str())))
    }
}
