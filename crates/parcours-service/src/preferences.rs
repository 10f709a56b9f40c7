//! A customer's hosted preference page: a signed link (no sign-in, no identifier in it)
//! that shows the consents the workspace offers, in English or French, and records her
//! choice as a `Consent Preference Updated` event in the log, with its proof: the page's
//! source, the text version she saw, when.

use parcours_core::privacy::{preference_path, preference_signature_ok};
use parcours_core::profile::ConsentState;
use parcours_core::rules::UnknownConsent;
use parcours_core::spec::{check_event, Checked, Edge};
use parcours_core::time::{format_timestamp, Millis};
use parcours_store::{IngestBatch, Store};
use serde_json::{json, Map, Value};

use crate::{Actor, ServiceError};

/// The source the page's choices are recorded as coming from.
pub const PREFERENCES_SOURCE: &str = "parcours:preferences";

/// The version of the page's text, part of each choice's proof (with its language).
pub const TEXT_VERSION: &str = "preference-page/1";

/// The page's languages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Fr,
}

impl Lang {
    /// `?lang=fr`, else the first of `Accept-Language` that the page speaks, else English.
    pub fn choose(query: Option<&str>, accept_language: Option<&str>) -> Lang {
        let pick = |tag: &str| {
            let primary = tag.split([';', '-', '_']).next().unwrap_or("").trim();
            match primary.to_ascii_lowercase().as_str() {
                "fr" => Some(Lang::Fr),
                "en" => Some(Lang::En),
                _ => None,
            }
        };
        query
            .and_then(pick)
            .or_else(|| accept_language.and_then(|a| a.split(',').find_map(pick)))
            .unwrap_or(Lang::En)
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Fr => "fr",
        }
    }
}

/// One consent the page offers, as she stands now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// `marketing:email`, or a purpose alone (`analytics`).
    pub key: String,
    pub granted: bool,
}

/// What an opened link shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub profile: String,
    pub choices: Vec<Choice>,
}

/// A customer's preference link: the path, and the whole URL when the node has a public
/// address. For the people who talk to customers (agents, marketers, admins).
pub fn link(
    store: &dyn Store,
    actor: &Actor,
    profile: &str,
    public_url: Option<&str>,
    now: Millis,
) -> Result<(String, Option<String>), ServiceError> {
    actor.require_personal_data()?;
    let p = store
        .profile(&actor.workspace, profile)?
        .ok_or_else(|| ServiceError::NotFound(format!("profile {profile}")))?;
    let secret = parcours_engine::erased::preference_secret(store, &actor.workspace, now)?;
    let path = preference_path(&secret, &actor.workspace, &p.id);
    let url = public_url.map(|b| format!("{}{path}", b.trim_end_matches('/')));
    Ok((path, url))
}

/// The page a link opens: not found unless the link is one Parcours signed, for a
/// customer it still holds.
pub fn open(store: &dyn Store, ws: &str, profile: &str, sig: &str) -> Result<Page, ServiceError> {
    let not_found = || ServiceError::NotFound("preference link".into());
    let secret =
        parcours_engine::erased::stored_preference_secret(store, ws)?.ok_or_else(not_found)?;
    if !preference_signature_ok(&secret, ws, profile, sig) {
        return Err(not_found());
    }
    let p = store.profile(ws, profile)?.ok_or_else(not_found)?;
    let unknown_granted = store
        .workspace(ws)?
        .is_some_and(|w| w.identity_rules.unknown_consent == UnknownConsent::Granted);
    let offered = crate::privacy::settings_of(store, ws)?.preferences;
    let choices = offered
        .into_iter()
        .map(|key| {
            let (purpose, channel) = match key.split_once(':') {
                Some((p, c)) => (p, Some(c)),
                None => (key.as_str(), None),
            };
            let granted = match p.consent_for(purpose, channel).0 {
                ConsentState::Granted => true,
                ConsentState::Withdrawn => false,
                ConsentState::Unknown => unknown_granted,
            };
            Choice { key, granted }
        })
        .collect();
    Ok(Page {
        profile: p.id,
        choices,
    })
}

/// Records what she chose on the page (`chosen`: the keys she ticked; every other key the
/// page offered is withdrawn): the event to append to the log, and the page as it now
/// stands.
pub fn save(
    store: &dyn Store,
    ws: &str,
    profile: &str,
    sig: &str,
    chosen: &[String],
    lang: Lang,
    now: Millis,
) -> Result<(IngestBatch, Page), ServiceError> {
    let mut page = open(store, ws, profile, sig)?;
    let p = store
        .profile(ws, &page.profile)?
        .ok_or_else(|| ServiceError::NotFound("preference link".into()))?;
    let mut prefs = Map::new();
    for c in &mut page.choices {
        c.granted = chosen.contains(&c.key);
        prefs.insert(c.key.clone(), Value::Bool(c.granted));
    }
    let id_of = |kind: &str| {
        p.identifiers
            .iter()
            .find(|i| i.kind == kind)
            .map(|i| i.value.clone())
    };
    let version = format!("{TEXT_VERSION}/{}", lang.code());
    let mut event = json!({
        "type": "track",
        "event": "Consent Preference Updated",
        "messageId": format!("preferences:{}:{now}", page.profile),
        "timestamp": format_timestamp(now),
        "properties": {"categoryPreferences": prefs, "version": version, "method": "preference_page"},
        "context": {"library": {"name": "parcours"}, "locale": lang.code()},
    });
    match (id_of("user_id"), id_of("anonymous_id")) {
        (Some(u), _) => event["userId"] = u.into(),
        (None, Some(a)) => event["anonymousId"] = a.into(),
        (None, None) => {
            return Err(ServiceError::Unprocessable {
                code: "preferences_unresolved",
                message: "this customer has no user id or anonymous id to record the choice on"
                    .into(),
            })
        }
    }
    let raw = serde_json::value::to_raw_value(&event).expect("an event always serialises");
    let edge = Edge::single(now, Some(parcours_core::Channel::Web), None);
    let fallback = event["messageId"].as_str().unwrap_or_default().to_string();
    match check_event(&raw, &edge, &mut |_| fallback.clone()) {
        Checked::Accepted(e) => Ok((
            IngestBatch {
                workspace_id: ws.to_string(),
                source_id: PREFERENCES_SOURCE.into(),
                events: vec![e],
                quarantined: Vec::new(),
            },
            page,
        )),
        Checked::Quarantined(q) => Err(ServiceError::Unprocessable {
            code: "preferences_refused",
            message: format!("the choice could not be recorded: {:?}", q.violation),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_language_comes_from_the_link_then_the_browser() {
        assert_eq!(Lang::choose(Some("fr"), Some("en-GB")), Lang::Fr);
        assert_eq!(
            Lang::choose(None, Some("de-DE,fr-FR;q=0.8,en;q=0.5")),
            Lang::Fr
        );
        assert_eq!(Lang::choose(Some("xx"), Some("en-US")), Lang::En);
        assert_eq!(Lang::choose(None, Some("de")), Lang::En);
        assert_eq!(Lang::choose(None, None), Lang::En);
    }
}
