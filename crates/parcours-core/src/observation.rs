//! What one stored event tells the identity graph and the profile: its identifiers, traits,
//! consent and channel, extracted and normalised once.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::channel::Channel;
use crate::identifier::{
    normalize_email, normalize_phone_with, Identifier, ANONYMOUS_ID, DEVICE_ID, EMAIL, PHONE,
    USER_ID,
};
use crate::rules::IdentityRules;
use crate::spec::{EventType, MAX_ID_CHARS};
use crate::time::{EventKey, Millis};

/// How consent reached Parcours (kept as proof, GDPR Art. 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentMethod {
    /// `context.consent.categoryPreferences` on an event.
    ContextConsent,
    /// A `Consent Preference Updated` event.
    ConsentEvent,
    /// An email unsubscribe: an `Unsubscribed` (Segment's email spec), `Email Unsubscribed`
    /// or `Email Marked as Spam` event, or a one-click unsubscribe (RFC 8058) recorded as one.
    Unsubscribe,
    /// An inbound SMS whose text is an opt-out (`STOP`, …) or opt-in (`START`) keyword.
    SmsKeyword,
    /// An IAB TCF v2.2 TC string (`context.consent.tcString`, or `properties.tcString` of a
    /// `Consent Preference Updated` event), decoded into `tcf_purpose_1` … `tcf_purpose_11`
    /// and `tcf_special_feature_1`, `_2`.
    Tcf,
}

/// Event names that carry a consent change (Segment's and the short form).
pub const CONSENT_EVENTS: [&str; 2] = [
    "Consent Preference Updated",
    "Segment Consent Preference Updated",
];

/// Email events that withdraw consent to marketing by email (the purpose can be named in
/// `properties.purpose`).
pub const UNSUBSCRIBE_EVENTS: [&str; 3] =
    ["Unsubscribed", "Email Unsubscribed", "Email Marked as Spam"];

/// The inbound SMS event; its text is `properties.body` (or `text`, `message`).
pub const SMS_RECEIVED: &str = "SMS Received";

/// Opt-out keywords carriers honour (CTIA), compared on the whole trimmed text, any case.
pub const SMS_STOP_KEYWORDS: [&str; 6] =
    ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"];

/// Opt-in keywords that undo an opt-out.
pub const SMS_START_KEYWORDS: [&str; 2] = ["START", "UNSTOP"];

/// What an unsubscribe or an SMS keyword says: the purpose (default `marketing`) on one
/// channel, and whether it is granted; `None` for any other event.
fn channel_consent(
    meta: &EventMeta<'_>,
    properties: Option<&serde_json::Map<String, Value>>,
) -> Option<(String, bool, ConsentMethod)> {
    if meta.kind != EventType::Track {
        return None;
    }
    let event = meta.event?;
    let prop = |name: &str| {
        properties
            .and_then(|p| p.get(name))
            .and_then(Value::as_str)
            .map(str::trim)
    };
    let purpose = prop("purpose")
        .filter(|p| !p.is_empty() && !p.contains(':'))
        .map_or_else(|| "marketing".to_string(), str::to_ascii_lowercase);
    if UNSUBSCRIBE_EVENTS.contains(&event) {
        return Some((
            format!("{purpose}:email"),
            false,
            ConsentMethod::Unsubscribe,
        ));
    }
    if event == SMS_RECEIVED {
        let text = prop("body")
            .or_else(|| prop("text"))
            .or_else(|| prop("message"))?;
        let word = text.to_ascii_uppercase();
        let granted = if SMS_STOP_KEYWORDS.contains(&word.as_str()) {
            false
        } else if SMS_START_KEYWORDS.contains(&word.as_str()) {
            true
        } else {
            return None;
        };
        return Some((format!("{purpose}:sms"), granted, ConsentMethod::SmsKeyword));
    }
    None
}

/// The longest identifier type (an external id's `type`) taken as an identifier.
pub const MAX_KIND_CHARS: usize = 64;

/// The stored columns of an event, besides its JSON body.
#[derive(Debug, Clone)]
pub struct EventMeta<'a> {
    pub seq: i64,
    pub message_id: &'a str,
    pub kind: EventType,
    pub event: Option<&'a str>,
    pub user_id: Option<&'a str>,
    pub anonymous_id: Option<&'a str>,
    pub timestamp: Millis,
    pub received_at: Millis,
    pub channel: Channel,
    pub source_id: &'a str,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub seq: i64,
    pub key: EventKey,
    pub received_at: Millis,
    pub kind: EventType,
    pub event: Option<String>,
    pub channel: Channel,
    pub source_id: String,
    /// Normalised, unblocked, deduplicated, most important first.
    pub identifiers: Vec<Identifier>,
    pub traits: Vec<(String, Value)>,
    pub consent: Vec<(String, bool)>,
    pub consent_method: Option<ConsentMethod>,
    /// The version of the consent text shown (at most 64 characters).
    pub consent_version: Option<String>,
}

impl Observation {
    pub fn from_event(meta: &EventMeta<'_>, body: &Value, rules: &IdentityRules) -> Self {
        let ctx = body.get("context");
        let ctx_traits = ctx.and_then(|c| c.get("traits")).and_then(Value::as_object);
        let own_traits = match meta.kind {
            EventType::Identify => body.get("traits").and_then(Value::as_object),
            _ => None,
        };
        let properties = body.get("properties").and_then(Value::as_object);
        let region = rules.config.default_region.as_deref();

        let mut ids = Vec::new();
        let mut push = |kind: &str, value: Option<String>| {
            if let Some(v) = value.map(|v| v.trim().to_string()) {
                // An identifier is a key every store can index: longer ones are not keys.
                let indexable = v.chars().count() <= MAX_ID_CHARS && kind.len() <= MAX_KIND_CHARS;
                if indexable && !rules.is_blocked(&v) {
                    ids.push(Identifier::new(kind, v));
                }
            }
        };
        push(USER_ID, meta.user_id.map(str::to_string));
        push(ANONYMOUS_ID, meta.anonymous_id.map(str::to_string));
        if meta.kind == EventType::Alias {
            push(ANONYMOUS_ID, body.get("previousId").and_then(scalar));
        }
        let trait_sources = [own_traits, ctx_traits];
        let from_traits = |name: &str| {
            trait_sources
                .iter()
                .flatten()
                .find_map(|t| t.get(name).and_then(scalar))
        };
        push(
            EMAIL,
            from_traits("email").and_then(|e| normalize_email(&e)),
        );
        push(
            PHONE,
            from_traits("phone")
                .and_then(|p| normalize_phone_with(&p, region, rules.config.phone_numbers)),
        );
        if let Some(device) = ctx.and_then(|c| c.get("device")) {
            push(DEVICE_ID, device.get("id").and_then(scalar));
            if device.get("adTrackingEnabled").and_then(Value::as_bool) == Some(true) {
                push(
                    "advertising_id",
                    device.get("advertisingId").and_then(scalar),
                );
            }
        }
        if let Some(external) = ctx
            .and_then(|c| c.get("externalIds"))
            .and_then(Value::as_array)
        {
            for x in external {
                if let (Some(kind), Some(id)) = (
                    x.get("type").and_then(Value::as_str),
                    x.get("id").and_then(scalar),
                ) {
                    let kind = kind.trim().to_ascii_lowercase();
                    if !kind.is_empty() {
                        push(&kind, Some(id));
                    }
                }
            }
        }
        for name in &rules.config.identifier_traits {
            let found = from_traits(name).or_else(|| {
                properties
                    .and_then(|p| p.get(name.as_str()))
                    .and_then(scalar)
            });
            push(name, found);
        }
        rules.sort_by_priority(&mut ids);
        ids.dedup();

        let mut traits: Vec<(String, Value)> = Vec::new();
        for source in [ctx_traits, own_traits].into_iter().flatten() {
            for (k, v) in source {
                match traits.iter_mut().find(|(name, _)| name == k) {
                    Some(slot) => slot.1 = v.clone(),
                    None => traits.push((k.clone(), v.clone())),
                }
            }
        }

        let is_consent_event = meta.kind == EventType::Track
            && meta.event.is_some_and(|e| CONSENT_EVENTS.contains(&e));
        let mut consent = Vec::new();
        let prefs = ctx
            .and_then(|c| c.get("consent"))
            .and_then(|c| c.get("categoryPreferences"))
            .or_else(|| {
                if is_consent_event {
                    properties.and_then(|p| p.get("categoryPreferences"))
                } else {
                    None
                }
            })
            .and_then(Value::as_object);
        if let Some(prefs) = prefs {
            for (purpose, granted) in prefs {
                if let Some(granted) = granted.as_bool() {
                    consent.push((purpose.trim().to_ascii_lowercase(), granted));
                }
            }
        }
        let mut consent_method = (!consent.is_empty()).then_some(if is_consent_event {
            ConsentMethod::ConsentEvent
        } else {
            ConsentMethod::ContextConsent
        });
        // A TC string: its purposes and special features, and the vendors consented to as
        // the trait `tcf_vendor_consents`. One that does not decode says nothing.
        let tc = ctx
            .and_then(|c| c.get("consent"))
            .and_then(|c| c.get("tcString"))
            .or_else(|| {
                if is_consent_event {
                    properties.and_then(|p| p.get("tcString"))
                } else {
                    None
                }
            })
            .and_then(Value::as_str)
            .and_then(|s| crate::tcf::decode(s).ok());
        if let Some(tc) = tc {
            for (key, granted) in crate::tcf::consent_keys(&tc) {
                consent.retain(|(k, _)| *k != key);
                consent.push((key, granted));
            }
            traits.retain(|(k, _)| k != "tcf_vendor_consents");
            traits.push((
                "tcf_vendor_consents".into(),
                Value::from(tc.vendor_consents.iter().copied().collect::<Vec<u16>>()),
            ));
            consent_method.get_or_insert(ConsentMethod::Tcf);
        }
        if let Some((key, granted, method)) = channel_consent(meta, properties) {
            consent.retain(|(k, _)| *k != key);
            consent.push((key, granted));
            consent_method = Some(method);
        }

        let consent_version = ctx
            .and_then(|c| c.get("consent"))
            .and_then(|c| c.get("version"))
            .or_else(|| {
                if is_consent_event {
                    properties.and_then(|p| p.get("version"))
                } else {
                    None
                }
            })
            .and_then(scalar)
            .filter(|v| !v.is_empty() && v.chars().count() <= 64)
            .filter(|_| consent_method.is_some());
        Observation {
            consent_version,
            seq: meta.seq,
            key: EventKey::new(meta.timestamp, meta.message_id),
            received_at: meta.received_at,
            kind: meta.kind,
            event: meta.event.map(str::to_string),
            channel: meta.channel,
            source_id: meta.source_id.to_string(),
            identifiers: ids,
            traits,
            consent,
            consent_method,
        }
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::IdentityRulesConfig;
    use serde_json::json;

    fn meta<'a>(
        kind: EventType,
        event: Option<&'a str>,
        user: Option<&'a str>,
        anon: Option<&'a str>,
    ) -> EventMeta<'a> {
        EventMeta {
            seq: 1,
            message_id: "m1",
            kind,
            event,
            user_id: user,
            anonymous_id: anon,
            timestamp: 1_000,
            received_at: 2_000,
            channel: Channel::Store,
            source_id: "src",
        }
    }

    #[test]
    fn extracts_normalised_identifiers_in_priority_order() {
        let rules = IdentityRules::new(IdentityRulesConfig {
            identifier_traits: vec!["loyalty_card".into()],
            default_region: Some("FR".into()),
            ..Default::default()
        })
        .unwrap();
        let body = json!({
            "traits": {"email": " Alice@Example.com ", "phone": "06 12 34 56 78", "first_name": "Alice"},
            "context": {"device": {"id": "dev-1"}, "traits": {"loyalty_card": "LC-1"},
                        "externalIds": [{"id": "GA1.2", "type": "GA_Client_Id", "collection": "users"}]}
        });
        let obs = Observation::from_event(
            &meta(EventType::Identify, None, Some("u1"), Some("null")),
            &body,
            &rules,
        );
        let ids: Vec<String> = obs.identifiers.iter().map(ToString::to_string).collect();
        assert_eq!(
            ids,
            [
                "user_id:u1",
                "email:alice@example.com",
                "phone:+33612345678",
                "device_id:dev-1",
                "ga_client_id:GA1.2",
                "loyalty_card:LC-1"
            ],
            "the blocked anonymousId `null` is not an identifier"
        );
        assert!(obs
            .traits
            .iter()
            .any(|(k, v)| k == "first_name" && v == "Alice"));
    }

    fn observe_kind(kind: EventType, name: Option<&str>, body: &Value) -> Observation {
        Observation::from_event(
            &meta(kind, name, Some("u1"), None),
            body,
            &IdentityRules::default(),
        )
    }

    /// The reference's TC string, on an event's context or on a consent event.
    #[test]
    fn a_tc_string_gives_purposes_special_features_and_vendors() {
        let tc = "CLcVDxRMWfGmWAVAHCENAXCkAKDAADnAABRgA5mdfCKZuYJez-NQm0TBMYA4oCAAGQYIAAAAAAEAIAEgAA.argAC0gAAAAAAAAAAAA";
        for (kind, name, body) in [
            (
                EventType::Page,
                None,
                json!({"context": {"consent": {"tcString": tc}}}),
            ),
            (
                EventType::Track,
                Some("Consent Preference Updated"),
                json!({"properties": {"tcString": tc}}),
            ),
        ] {
            let obs = observe_kind(kind, name, &body);
            assert_eq!(obs.consent_method, Some(ConsentMethod::Tcf), "{body}");
            assert_eq!(obs.consent.len(), 13);
            let granted: Vec<&str> = obs
                .consent
                .iter()
                .filter(|(_, g)| *g)
                .map(|(k, _)| k.as_str())
                .collect();
            assert_eq!(
                granted,
                [
                    "tcf_purpose_1",
                    "tcf_purpose_3",
                    "tcf_purpose_9",
                    "tcf_purpose_10",
                    "tcf_special_feature_2"
                ]
            );
            let vendors = obs
                .traits
                .iter()
                .find(|(k, _)| k == "tcf_vendor_consents")
                .unwrap();
            assert_eq!(vendors.1.as_array().unwrap().len(), 56);
        }
    }

    #[test]
    fn a_tc_string_that_does_not_count_says_nothing() {
        let tc =
            "CLcVDxRMWfGmWAVAHCENAXCkAKDAADnAABRgA5mdfCKZuYJez-NQm0TBMYA4oCAAGQYIAAAAAAEAIAEgAA";
        // Not a consent event: its properties say nothing; a broken string says nothing.
        let obs = observe_kind(
            EventType::Track,
            Some("Product Viewed"),
            &json!({"properties": {"tcString": tc}, "context": {"consent": {"tcString": "CLcV"}}}),
        );
        assert!(
            obs.consent.is_empty() && obs.consent_method.is_none(),
            "{obs:?}"
        );
    }

    #[test]
    fn consent_from_context_and_from_the_consent_event() {
        let rules = IdentityRules::default();
        let body = json!({"context": {"consent": {"categoryPreferences": {"Marketing": true, "advertising": false}}}});
        let obs = Observation::from_event(
            &meta(EventType::Page, None, Some("u1"), None),
            &body,
            &rules,
        );
        assert_eq!(
            obs.consent,
            [
                ("marketing".to_string(), true),
                ("advertising".to_string(), false)
            ]
        );
        assert_eq!(obs.consent_method, Some(ConsentMethod::ContextConsent));
        let body = json!({"properties": {"categoryPreferences": {"marketing:sms": false}}});
        let obs = Observation::from_event(
            &meta(
                EventType::Track,
                Some("Consent Preference Updated"),
                Some("u1"),
                None,
            ),
            &body,
            &rules,
        );
        assert_eq!(obs.consent, [("marketing:sms".to_string(), false)]);
        assert_eq!(obs.consent_method, Some(ConsentMethod::ConsentEvent));
        assert_eq!(obs.consent_version, None);
    }

    #[test]
    fn the_consent_text_version_is_part_of_the_proof() {
        let rules = IdentityRules::default();
        let page = |body: Value| {
            Observation::from_event(
                &meta(EventType::Page, None, Some("u1"), None),
                &body,
                &rules,
            )
        };
        let obs = page(json!({"context": {"consent": {"version": "cmp-2026-03",
            "categoryPreferences": {"marketing": true}}}}));
        assert_eq!(obs.consent_version.as_deref(), Some("cmp-2026-03"));
        // A number is read as text; without any consent it is not kept; too long is dropped.
        let obs = page(
            json!({"context": {"consent": {"version": 7, "categoryPreferences": {"marketing": true}}}}),
        );
        assert_eq!(obs.consent_version.as_deref(), Some("7"));
        assert_eq!(
            page(json!({"context": {"consent": {"version": "v1"}}})).consent_version,
            None
        );
        let long = "v".repeat(65);
        let obs = page(
            json!({"context": {"consent": {"version": long, "categoryPreferences": {"marketing": true}}}}),
        );
        assert_eq!(obs.consent_version, None);
        let obs = page(json!({"context": {"consent": {"version": "cmp-2026-03",
            "categoryPreferences": {"marketing": true}}}}));
        let mut p = crate::Profile::new("p1".into(), &obs);
        p.observe(&obs, &[]);
        assert_eq!(
            p.consent["marketing"].text_version.as_deref(),
            Some("cmp-2026-03")
        );
    }

    #[test]
    fn unsubscribes_and_sms_keywords_are_consent_on_their_channel() {
        let rules = IdentityRules::default();
        let track = |event, body: Value| {
            Observation::from_event(
                &meta(EventType::Track, Some(event), Some("u1"), None),
                &body,
                &rules,
            )
        };
        for event in UNSUBSCRIBE_EVENTS {
            let obs = track(event, json!({"properties": {"email_id": "e1"}}));
            assert_eq!(
                obs.consent,
                [("marketing:email".to_string(), false)],
                "{event}"
            );
            assert_eq!(obs.consent_method, Some(ConsentMethod::Unsubscribe));
        }
        let obs = track(
            "Unsubscribed",
            json!({"properties": {"purpose": "Newsletter"}}),
        );
        assert_eq!(obs.consent, [("newsletter:email".to_string(), false)]);
        for (text, want) in [
            (" stop ", Some(false)),
            ("STOPALL", Some(false)),
            ("Quit", Some(false)),
            ("start", Some(true)),
            ("stop sending me this", None),
            ("yes", None),
        ] {
            let obs = track(SMS_RECEIVED, json!({"properties": {"body": text}}));
            let got = obs.consent.first().map(|(k, g)| {
                assert_eq!(k, "marketing:sms");
                *g
            });
            assert_eq!(got, want, "{text:?}");
            let method = want.map(|_| ConsentMethod::SmsKeyword);
            assert_eq!(obs.consent_method, method, "{text:?}");
        }
        // Other events say nothing about consent.
        let obs = track("Order Completed", json!({"properties": {"body": "STOP"}}));
        assert!(obs.consent.is_empty());
    }

    #[test]
    fn group_traits_are_not_person_traits() {
        let rules = IdentityRules::default();
        let body = json!({"groupId": "g1", "traits": {"name": "ACME"}});
        let obs = Observation::from_event(
            &meta(EventType::Group, None, Some("u1"), None),
            &body,
            &rules,
        );
        assert!(obs.traits.is_empty());
    }
}
