//! Definitions: audiences, computed traits and destinations: create, replace, delete, read.
//! Who may: editors (admins and marketers) change them; every role of the workspace reads
//! them.

use parcours_core::audience::{self, Condition};
use parcours_core::computed::ComputedTrait;
use parcours_core::time::{format_timestamp, Millis};
use parcours_engine::definitions::{
    delete_definition, save_audience, save_computed_trait, AudienceDoc, DefinitionError,
};
use parcours_engine::destinations::{
    new_secret, save_destination, Contact, DestinationDoc, IdentifierFormat,
};
use parcours_store::{Definition, DefinitionKind, Store};
use rand::RngCore;
use serde_json::{json, Value};

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

/// A new computed trait (`computed_trait_exists` when the id is taken).
pub fn create_trait(
    store: &dyn Store,
    actor: &Actor,
    def: &ComputedTrait,
    now: Millis,
) -> Result<Definition, ServiceError> {
    actor.require_editor()?;
    if definition(store, actor, DefinitionKind::ComputedTrait, &def.id).is_ok() {
        return Err(ServiceError::Conflict {
            code: "computed_trait_exists",
            message: format!("computed trait {} exists; PUT replaces it", def.id),
        });
    }
    replace_trait(store, actor, def, now)
}

/// Replaces a computed trait (computed again), or creates it.
pub fn replace_trait(
    store: &dyn Store,
    actor: &Actor,
    def: &ComputedTrait,
    now: Millis,
) -> Result<Definition, ServiceError> {
    actor.require_editor()?;
    Ok(save_computed_trait(store, &actor.workspace, def, now)?)
}

/// The workspace's definitions of a kind.
pub fn list(
    store: &dyn Store,
    actor: &Actor,
    kind: DefinitionKind,
) -> Result<Vec<Definition>, ServiceError> {
    Ok(store
        .definitions(Some(&actor.workspace))?
        .into_iter()
        .filter(|d| d.kind == kind)
        .collect())
}

/// A destination as a caller gives it; without `secret`, a new destination gets one and a
/// replaced one keeps its own.
#[derive(Debug, Clone, PartialEq)]
pub struct DestinationInput {
    pub name: String,
    pub url: String,
    pub secret: Option<String>,
    pub audiences: Vec<String>,
    pub identifiers: IdentifierFormat,
    pub region: Option<String>,
    pub enabled: bool,
    pub max_in_flight: Option<u32>,
    pub max_per_second: Option<f64>,
    pub purpose: Option<String>,
    pub channel: Option<String>,
}

/// A saved destination, and whether its secret may be shown (it was just set or made).
pub struct SavedDestination {
    pub definition: Definition,
    pub reveal_secret: bool,
}

/// Creates (`creating`: `destination_exists` when the id is taken) or replaces a destination.
/// Receivers on private addresses are refused unless `allow_private`.
pub fn save_destination_as(
    store: &dyn Store,
    actor: &Actor,
    id: &str,
    input: DestinationInput,
    creating: bool,
    allow_private: bool,
    now: Millis,
) -> Result<SavedDestination, ServiceError> {
    actor.require_editor()?;
    let previous = definition(store, actor, DefinitionKind::Destination, id).ok();
    if creating && previous.is_some() {
        return Err(ServiceError::Conflict {
            code: "destination_exists",
            message: format!("destination {id} exists; PUT /api/v1/destinations/{id} replaces it"),
        });
    }
    // The secret is shown when it is set or made, never after.
    let kept = previous.and_then(|p| p.doc["secret"].as_str().map(str::to_string));
    let reveal_secret = input.secret.is_some() || kept.is_none();
    let secret = input.secret.or(kept).unwrap_or_else(|| {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        new_secret(&bytes)
    });
    let doc = DestinationDoc {
        name: input.name,
        url: input.url,
        secret,
        audiences: input.audiences,
        identifiers: input.identifiers,
        region: input.region,
        enabled: input.enabled,
        max_in_flight: input.max_in_flight,
        max_per_second: input.max_per_second,
        purpose: input.purpose,
        channel: input.channel,
    };
    let definition = save_destination(store, &actor.workspace, id, &doc, now, allow_private)?;
    Ok(SavedDestination {
        definition,
        reveal_secret,
    })
}

/// Checks an audience's text without saving it (the console's live validation): the
/// condition as it reads back, or where and why it does not read.
pub fn check_audience(text: &str) -> Result<String, audience::ParseError> {
    audience::parse(text).map(|c| c.to_string())
}

/// Members of an audience in profile id order after `after`.
pub fn members(
    store: &dyn Store,
    actor: &Actor,
    id: &str,
    after: &str,
    limit: usize,
) -> Result<Vec<parcours_store::Membership>, ServiceError> {
    definition(store, actor, DefinitionKind::Audience, id)?;
    Ok(store.members(&actor.workspace, id, after, limit)?)
}

/// Why a customer is or is not in an audience at `now`, condition by condition.
pub struct Explained {
    /// Her profile (a merged id names the profile that holds it).
    pub profile_id: String,
    /// Whether the stored membership says she is in.
    pub member: bool,
    pub verdict: parcours_core::audience::Verdict,
}

/// Explains an audience for one customer (`NotFound` for an unknown audience or profile).
pub fn explain(
    store: &dyn Store,
    actor: &Actor,
    id: &str,
    profile: &str,
    now: Millis,
) -> Result<Explained, ServiceError> {
    let defs = parcours_engine::audiences::load_definitions(store, Some(&actor.workspace))?;
    let defs = defs.get(&actor.workspace).cloned().unwrap_or_default();
    let audience = defs
        .audience(id)
        .ok_or_else(|| ServiceError::NotFound(format!("audience {id}")))?;
    let loaded = parcours_engine::audiences::load_profile(store, &actor.workspace, &defs, profile)?
        .ok_or_else(|| ServiceError::NotFound(format!("profile {profile}")))?;
    Ok(Explained {
        profile_id: loaded.profile.id.clone(),
        member: loaded.memberships.contains(id),
        verdict: audience.condition.explain(&defs.subject(&loaded), now),
    })
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The formats an audience exports to.
pub const EXPORT_FORMATS: [&str; 4] = ["csv", "ndjson", "google", "meta"];

/// An audience's members, one row each: CSV (`profile_id,user_id,email,phone,since`), NDJSON
/// (with traits), or ready to hash for Google Customer Match or Meta custom audiences (a member
/// with neither email nor phone is left out of those). `region`: of national phone numbers.
pub fn export(
    store: &dyn Store,
    actor: &Actor,
    id: &str,
    format: &str,
    region: Option<&str>,
) -> Result<String, ServiceError> {
    // Every format names the members by email and phone (hashed for the ad platforms, which
    // is still personal data).
    actor.require_personal_data()?;
    definition(store, actor, DefinitionKind::Audience, id)?;
    let (st, ws) = (store, actor.workspace.as_str());
    let header = match format {
        "csv" => "profile_id,user_id,email,phone,since\n",
        "ndjson" => "",
        "google" => "Email,Phone,First Name,Last Name,Country,Zip\n",
        "meta" => "email,phone,fn,ln,ct,st,zip,country,doby,dobm,dobd,gen\n",
        _ => {
            return Err(ServiceError::invalid(
                "invalid_parameter",
                "`format` is one of csv, ndjson, google, meta",
            ))
        }
    };
    let mut out = String::from(header);
    let mut after = String::new();
    let unknown_granted = st.workspace(ws)?.is_some_and(|w| {
        w.identity_rules.unknown_consent == parcours_core::rules::UnknownConsent::Granted
    });
    loop {
        let page = st.members(ws, id, &after, 1000)?;
        for m in &page {
            let Some(p) = st.profile(ws, &m.profile_id)? else {
                continue;
            };
            let c = Contact::of(&p);
            // A row an ad platform cannot match (no email, no phone) is left out, and so is
            // a member without consent to marketing on ads (as a destination would).
            if matches!(format, "google" | "meta")
                && (!c.has_key()
                    || p.consent_refusal("marketing", "ads", unknown_granted)
                        .is_some())
            {
                continue;
            }
            let line = match format {
                "csv" => [
                    p.id.clone(),
                    c.user_id.unwrap_or_default(),
                    c.email.unwrap_or_default(),
                    c.phone.unwrap_or_default(),
                    format_timestamp(m.since),
                ]
                .iter()
                .map(|f| csv_field(f))
                .collect::<Vec<_>>()
                .join(","),
                "ndjson" => json!({
                    "profile_id": p.id,
                    "user_id": c.user_id,
                    "email": c.email,
                    "phone": c.phone,
                    "traits": p.trait_values(),
                    "since": format_timestamp(m.since),
                })
                .to_string(),
                "google" => c.google(region).map(|(_, v)| csv_field(&v)).join(","),
                _ => c.meta(region).map(|(_, v)| v).join(","),
            };
            out.push_str(&line);
            out.push('\n');
        }
        match page.last() {
            Some(last) if page.len() == 1000 => after = last.profile_id.clone(),
            _ => break,
        }
    }
    Ok(out)
}

/// The destinations that send this audience's changes (one with no audience listed sends
/// every audience), with their definitions as written.
pub fn destinations_of(
    store: &dyn Store,
    actor: &Actor,
    audience: &str,
) -> Result<Vec<(Definition, DestinationDoc)>, ServiceError> {
    Ok(list(store, actor, DefinitionKind::Destination)?
        .into_iter()
        .filter_map(|d| {
            let doc: DestinationDoc = serde_json::from_value(d.doc.clone()).ok()?;
            (doc.audiences.is_empty() || doc.audiences.iter().any(|a| a == audience))
                .then_some((d, doc))
        })
        .collect())
}

/// Profiles an estimate of a draft audience's size reads, at most.
pub const ESTIMATE_SAMPLE: usize = 300;

/// A draft audience's size before it is saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Estimate {
    /// Profiles read, and how many of them the draft holds.
    pub sampled: u64,
    pub matched: u64,
    /// Profiles of the workspace.
    pub total: u64,
    /// The size: exact when every profile was read, else `matched / sampled × total`.
    pub size: u64,
    pub exact: bool,
}

/// Evaluates a draft definition (the text syntax) on up to [`ESTIMATE_SAMPLE`] profiles now
/// and says how large the audience would be: exact on a workspace of that many profiles or
/// fewer, else an estimate from a sample (profiles in id order: ids are hashes, so the
/// first ones are a sample of all). Nothing is saved. `invalid_audience_syntax` when the text
/// does not read.
pub fn estimate_audience(
    store: &dyn Store,
    actor: &Actor,
    text: &str,
    now: Millis,
) -> Result<Estimate, ServiceError> {
    let condition = audience::parse(text)
        .map_err(|e| ServiceError::invalid("invalid_audience_syntax", e.to_string()))?;
    let ws = actor.workspace.as_str();
    let defs = parcours_engine::audiences::load_definitions(store, Some(ws))?;
    let defs = defs.get(ws).cloned().unwrap_or_default();
    let total = store.profile_count(ws)?;
    let sample = store.profiles_page(ws, "", ESTIMATE_SAMPLE)?;
    let mut matched = 0u64;
    for p in &sample {
        let Some(loaded) = parcours_engine::audiences::load_profile(store, ws, &defs, &p.id)?
        else {
            continue;
        };
        if condition.evaluate(&defs.subject(&loaded), now).matched {
            matched += 1;
        }
    }
    let sampled = sample.len() as u64;
    let exact = sampled >= total;
    let size = if exact || sampled == 0 {
        matched
    } else {
        ((matched as f64 / sampled as f64) * total as f64).round() as u64
    };
    Ok(Estimate {
        sampled,
        matched,
        total,
        size,
        exact,
    })
}
