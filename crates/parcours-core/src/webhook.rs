//! Webhook sources: any JSON webhook (a POS, an e-commerce platform, a payment provider, a
//! helpdesk) turned into Segment-spec events by a declarative mapping, and the signatures the
//! platforms put on their calls, verified.
//!
//! A mapping is a list of event templates. Each field of a template is a JMESPath expression
//! evaluated against `{"body": <the webhook's JSON>, "headers": {<lower-case name>: <value>}}`;
//! a template with `when` makes an event only when that expression is truthy. The events it
//! makes go through the same checks as any tracking call.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use jmespath::functions::{ArgumentType, CustomFunction, Signature};
use jmespath::{Expression, Rcvar, Runtime, Variable};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::time::Millis;

/// A mapping as written by a user (or shipped with Parcours).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    pub events: Vec<Template>,
}

/// One event a webhook may become.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Template {
    /// Makes the event only when truthy (JMESPath truthiness: not null, false, "", [] or {}).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// `track`, `identify`, `page`, `screen`, `group` or `alias` (a constant, not an
    /// expression).
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<Fields>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traits: Option<Fields>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Fields>,
}

/// An object field: one expression that yields the object, or one expression per key (a key
/// whose expression yields null is left out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Fields {
    Expression(String),
    Keys(BTreeMap<String, String>),
}

/// A mapping that cannot be compiled or applied, with where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {message}")]
pub struct MappingError {
    /// Where in the mapping: `events[1].properties.total`.
    pub at: String,
    pub message: String,
}

/// The most templates a mapping may have, and the longest expression.
pub const MAX_TEMPLATES: usize = 20;
pub const MAX_EXPRESSION_CHARS: usize = 2_000;

static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    let mut rt = Runtime::new();
    rt.register_builtin_functions();
    // Payment providers send amounts in minor units (cents); Segment's `total` is in major
    // units. Currencies without minor units (per ISO 4217 and Stripe's list) stay as they are.
    rt.register_function(
        "minor_to_major",
        Box::new(CustomFunction::new(
            Signature::new(vec![ArgumentType::Any, ArgumentType::Any], None),
            Box::new(|args: &[Rcvar], _ctx: &mut jmespath::Context<'_>| {
                let Some(amount) = args[0].as_number() else {
                    return Ok(Rcvar::new(Variable::Null));
                };
                let currency = args[1].as_string().map(|c| c.to_ascii_uppercase());
                let exponent = match currency.as_deref() {
                    Some(
                        "BIF" | "CLP" | "DJF" | "GNF" | "JPY" | "KMF" | "KRW" | "MGA" | "PYG"
                        | "RWF" | "UGX" | "VND" | "VUV" | "XAF" | "XOF" | "XPF",
                    ) => 0,
                    Some("BHD" | "JOD" | "KWD" | "OMR" | "TND") => 3,
                    _ => 2,
                };
                let value = amount / 10f64.powi(exponent);
                Ok(Rcvar::new(
                    serde_json::Number::from_f64(value)
                        .map(Variable::Number)
                        .unwrap_or(Variable::Null),
                ))
            }),
        )),
    );
    // Platforms send times as Unix seconds (Stripe) or in their own text form (`2020-03-03
    // 13:05:57 UTC`); Segment's `timestamp` is ISO-8601.
    rt.register_function(
        "to_iso",
        Box::new(CustomFunction::new(
            Signature::new(vec![ArgumentType::Any], None),
            Box::new(|args: &[Rcvar], _ctx: &mut jmespath::Context<'_>| {
                // A time that cannot be read is passed on as text, so that the event is
                // quarantined with `invalid_timestamp` instead of dated 1970 or dropped.
                let unreadable = |text: String| Ok(Rcvar::new(Variable::String(text)));
                let ms = match &*args[0] {
                    Variable::Null => return Ok(Rcvar::new(Variable::Null)),
                    Variable::Number(n) => match n.as_f64() {
                        Some(s) if s.is_finite() && s.abs() < 253_402_300_800.0 => {
                            (s * 1000.0) as Millis
                        }
                        _ => return unreadable(n.to_string()),
                    },
                    Variable::String(s) => {
                        let t = s.trim();
                        let t = t
                            .strip_suffix(" UTC")
                            .or_else(|| t.strip_suffix(" Z"))
                            .unwrap_or(t);
                        match crate::time::parse_timestamp(s)
                            .or_else(|| crate::time::parse_timestamp(t))
                        {
                            Some(ms) => ms,
                            None => return unreadable(s.clone()),
                        }
                    }
                    other => return unreadable(other.to_string()),
                };
                Ok(Rcvar::new(Variable::String(crate::time::format_timestamp(
                    ms,
                ))))
            }),
        )),
    );
    rt
});

struct CompiledTemplate {
    when: Option<Expression<'static>>,
    kind: String,
    scalars: Vec<(&'static str, Expression<'static>)>,
    objects: Vec<(&'static str, CompiledFields)>,
}

enum CompiledFields {
    Expression(Expression<'static>),
    Keys(Vec<(String, Expression<'static>)>),
}

/// A mapping whose expressions all compiled.
pub struct CompiledMapping {
    templates: Vec<CompiledTemplate>,
}

/// How many copies of its input an expression may make, at most: multi-selects (`[a, b]`,
/// `{a: x, b: y}`) add their parts, and chaining one into another (`a.[@, @].[@, @]`)
/// multiplies them, so a short expression can ask for exponential work and memory.
pub const MAX_AMPLIFICATION: u64 = 64;

/// The most JSON the events of one call may add up to.
pub const MAX_OUTPUT_BYTES: usize = 2 * 1024 * 1024;

/// An upper bound of how many times `ast` can copy its input into its output.
fn amplification(ast: &jmespath::ast::Ast) -> u64 {
    use jmespath::ast::Ast;
    match ast {
        Ast::Identity { .. }
        | Ast::Field { .. }
        | Ast::Index { .. }
        | Ast::Literal { .. }
        | Ast::Slice { .. }
        | Ast::Comparison { .. }
        | Ast::Not { .. } => 1,
        Ast::Subexpr { lhs, rhs, .. } | Ast::Projection { lhs, rhs, .. } => {
            amplification(lhs).saturating_mul(amplification(rhs))
        }
        Ast::And { lhs, rhs, .. } | Ast::Or { lhs, rhs, .. } => {
            amplification(lhs).max(amplification(rhs))
        }
        Ast::Condition { then, .. } => amplification(then),
        Ast::Flatten { node, .. } | Ast::ObjectValues { node, .. } => amplification(node),
        Ast::Expref { ast, .. } => amplification(ast),
        Ast::MultiList { elements, .. } => elements
            .iter()
            .map(amplification)
            .fold(0u64, u64::saturating_add),
        Ast::MultiHash { elements, .. } => elements
            .iter()
            .map(|kv| amplification(&kv.value))
            .fold(0u64, u64::saturating_add),
        // `map(&e, list)` applies `e` to every element; other functions make at most what
        // their arguments hold.
        Ast::Function { name, args, .. } if name == "map" => args
            .iter()
            .map(amplification)
            .fold(1u64, u64::saturating_mul),
        Ast::Function { args, .. } => args
            .iter()
            .map(amplification)
            .fold(1u64, u64::saturating_add),
    }
}

fn compile_expr(at: String, expr: &str) -> Result<Expression<'static>, MappingError> {
    if expr.chars().count() > MAX_EXPRESSION_CHARS {
        return Err(MappingError {
            at,
            message: format!("an expression is at most {MAX_EXPRESSION_CHARS} characters"),
        });
    }
    let compiled = RUNTIME.compile(expr).map_err(|e| MappingError {
        at: at.clone(),
        message: format!("not a JMESPath expression: {e}"),
    })?;
    let amp = amplification(compiled.as_ast());
    if amp > MAX_AMPLIFICATION {
        return Err(MappingError {
            at,
            message: format!(
                "the expression can copy the payload up to {} times (multi-selects chained or wide); at most {MAX_AMPLIFICATION}",
                if amp == u64::MAX { "2^64".to_string() } else { amp.to_string() }
            ),
        });
    }
    Ok(compiled)
}

impl Mapping {
    /// Reads a mapping from JSON, naming what is wrong.
    pub fn from_json(value: &Value) -> Result<Mapping, MappingError> {
        serde_json::from_value(value.clone()).map_err(|e| MappingError {
            at: "mapping".into(),
            message: e.to_string(),
        })
    }

    pub fn compile(&self) -> Result<CompiledMapping, MappingError> {
        if self.events.is_empty() || self.events.len() > MAX_TEMPLATES {
            return Err(MappingError {
                at: "events".into(),
                message: format!("a mapping has 1 to {MAX_TEMPLATES} event templates"),
            });
        }
        let mut templates = Vec::with_capacity(self.events.len());
        for (i, t) in self.events.iter().enumerate() {
            let at = |field: &str| format!("events[{i}].{field}");
            if crate::spec::EventType::parse(&t.kind).is_none() {
                return Err(MappingError {
                    at: at("type"),
                    message: format!(
                        "`{}` is not an event type; use track, identify, page, screen, group or alias",
                        t.kind
                    ),
                });
            }
            if t.kind == "track" && t.event.is_none() {
                return Err(MappingError {
                    at: at("event"),
                    message: "a track template needs `event` (a constant is written 'Order Completed', in single quotes)".into(),
                });
            }
            let when = t
                .when
                .as_deref()
                .map(|w| compile_expr(at("when"), w))
                .transpose()?;
            let mut scalars = Vec::new();
            for (name, expr) in [
                ("event", &t.event),
                ("userId", &t.user_id),
                ("anonymousId", &t.anonymous_id),
                ("messageId", &t.message_id),
                ("timestamp", &t.timestamp),
            ] {
                if let Some(e) = expr {
                    scalars.push((name, compile_expr(at(name), e)?));
                }
            }
            let mut objects = Vec::new();
            for (name, fields) in [
                ("properties", &t.properties),
                ("traits", &t.traits),
                ("context", &t.context),
            ] {
                let Some(fields) = fields else { continue };
                let compiled = match fields {
                    Fields::Expression(e) => CompiledFields::Expression(compile_expr(at(name), e)?),
                    Fields::Keys(keys) => CompiledFields::Keys(
                        keys.iter()
                            .map(|(k, e)| {
                                Ok((k.clone(), compile_expr(format!("{}.{k}", at(name)), e)?))
                            })
                            .collect::<Result<_, MappingError>>()?,
                    ),
                };
                objects.push((name, compiled));
            }
            templates.push(CompiledTemplate {
                when,
                kind: t.kind.clone(),
                scalars,
                objects,
            });
        }
        Ok(CompiledMapping { templates })
    }
}

fn search(
    expr: &Expression<'static>,
    root: &Rcvar,
    made: &mut usize,
    at: impl Fn() -> String,
) -> Result<Value, MappingError> {
    let found = expr.search(root).map_err(|e| MappingError {
        at: at(),
        message: format!("the expression failed on this payload: {e}"),
    })?;
    let value = serde_json::to_value(&*found).map_err(|e| MappingError {
        at: at(),
        message: e.to_string(),
    })?;
    *made += serde_json::to_vec(&value).map_or(0, |v| v.len());
    if *made > MAX_OUTPUT_BYTES {
        return Err(MappingError {
            at: at(),
            message: format!(
                "the mapping made more than {} of events from this payload",
                crate::limits::Size(MAX_OUTPUT_BYTES)
            ),
        });
    }
    Ok(value)
}

impl CompiledMapping {
    /// The events a webhook becomes, in template order. An event without a `messageId` gets
    /// `{fallback_id}-{template index}` (so that a platform retrying the same call makes the
    /// same events, deduplicated); one with neither `userId` nor `anonymousId` gets the
    /// anonymous id derived from its email or phone ([`derived_anonymous_id`]).
    pub fn events(
        &self,
        body: &Value,
        headers: &BTreeMap<String, String>,
        fallback_id: &str,
    ) -> Result<Vec<Value>, MappingError> {
        let root = Rcvar::new(
            Variable::from_serializable(json!({"body": body, "headers": headers})).map_err(
                |e| MappingError {
                    at: "payload".into(),
                    message: e.to_string(),
                },
            )?,
        );
        let mut out = Vec::new();
        let mut made = 0usize;
        for (i, t) in self.templates.iter().enumerate() {
            let at = |field: &str| format!("events[{i}].{field}");
            if let Some(when) = &t.when {
                let hit = when.search(&root).map_err(|e| MappingError {
                    at: at("when"),
                    message: format!("the expression failed on this payload: {e}"),
                })?;
                if !hit.is_truthy() {
                    continue;
                }
            }
            let mut event = Map::new();
            event.insert("type".into(), Value::String(t.kind.clone()));
            for (name, expr) in &t.scalars {
                let v = search(expr, &root, &mut made, || at(name))?;
                if !v.is_null() {
                    event.insert((*name).into(), v);
                }
            }
            for (name, fields) in &t.objects {
                let v = match fields {
                    CompiledFields::Expression(e) => search(e, &root, &mut made, || at(name))?,
                    CompiledFields::Keys(keys) => {
                        let mut m = Map::new();
                        for (k, e) in keys {
                            let v = search(e, &root, &mut made, || format!("{}.{k}", at(name)))?;
                            if !v.is_null() {
                                m.insert(k.clone(), v);
                            }
                        }
                        Value::Object(m)
                    }
                };
                if !v.is_null() {
                    event.insert((*name).into(), v);
                }
            }
            if !event.contains_key("messageId") {
                event.insert("messageId".into(), json!(format!("{fallback_id}-{i}")));
            }
            let mut event = Value::Object(event);
            if event.get("userId").is_none() && event.get("anonymousId").is_none() {
                if let Some(id) = derived_anonymous_id(&event) {
                    event["anonymousId"] = json!(id);
                }
            }
            out.push(event);
        }
        Ok(out)
    }
}

/// The anonymous id of someone known only by an identifier: `"{kind}:" + 24 hex digits of
/// SHA-256("{kind}:{value}")`, the value normalised first (an email lower-cased and trimmed,
/// a phone as E.164 where it parses). The same email always gives the same id, so a
/// re-import or a retried webhook lands on the same profile, and the id says how it was made.
pub fn anonymous_id_for(kind: &str, value: &str) -> String {
    let normalized = match kind {
        "email" => {
            crate::identifier::normalize_email(value).unwrap_or_else(|| value.trim().to_lowercase())
        }
        "phone" => crate::identifier::normalize_phone(value, None)
            .unwrap_or_else(|| value.trim().to_string()),
        _ => value.trim().to_string(),
    };
    let digest = Sha256::digest(format!("{kind}:{normalized}").as_bytes());
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("{kind}:{hex}")
}

/// The anonymous id derived from an event's email, else its phone (in `traits`,
/// `context.traits` or `properties`), if it has one.
pub fn derived_anonymous_id(event: &Value) -> Option<String> {
    for kind in ["email", "phone"] {
        for place in [
            &event["traits"],
            &event["context"]["traits"],
            &event["properties"],
        ] {
            if let Some(v) = place[kind].as_str().filter(|v| !v.trim().is_empty()) {
                return Some(anonymous_id_for(kind, v));
            }
        }
    }
    None
}

/// How a platform signs its webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureScheme {
    /// `X-Shopify-Hmac-Sha256`: base64 HMAC-SHA256 of the body with the app's secret.
    Shopify,
    /// `Stripe-Signature: t=…,v1=…`: hex HMAC-SHA256 of `"{t}.{body}"` with the endpoint
    /// secret, `t` within five minutes.
    Stripe,
    /// `X-Zendesk-Webhook-Signature`: base64 HMAC-SHA256 of the
    /// `X-Zendesk-Webhook-Signature-Timestamp` header followed by the body.
    Zendesk,
    /// `X-Signature-Sha256` (or `X-Hub-Signature-256: sha256=…`): hex HMAC-SHA256 of the body,
    /// the generic scheme of many platforms.
    HmacSha256,
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the `{0}` header is missing")]
    Missing(&'static str),
    #[error("the signature does not match the body")]
    Mismatch,
    #[error("the signature's timestamp is {0} s away from now, over the 300 s tolerance")]
    Stale(i64),
    #[error("the `{0}` header is malformed")]
    Malformed(&'static str),
}

/// How far a signed timestamp may be from now.
pub const SIGNATURE_TOLERANCE_SECS: i64 = 300;

fn mac(secret: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

/// Compares without telling, by its time, how much matched.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl SignatureScheme {
    /// Checks a call's signature; `headers` have lower-case names.
    pub fn verify(
        self,
        secret: &str,
        headers: &BTreeMap<String, String>,
        body: &[u8],
        now: Millis,
    ) -> Result<(), SignatureError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        match self {
            SignatureScheme::Shopify => {
                let given = headers
                    .get("x-shopify-hmac-sha256")
                    .ok_or(SignatureError::Missing("X-Shopify-Hmac-Sha256"))?;
                let given = b64
                    .decode(given.trim())
                    .map_err(|_| SignatureError::Malformed("X-Shopify-Hmac-Sha256"))?;
                same(&given, &mac(secret, &[body]))
                    .then_some(())
                    .ok_or(SignatureError::Mismatch)
            }
            SignatureScheme::Stripe => {
                let header = headers
                    .get("stripe-signature")
                    .ok_or(SignatureError::Missing("Stripe-Signature"))?;
                let mut t = None;
                let mut v1 = Vec::new();
                for part in header.split(',') {
                    match part.trim().split_once('=') {
                        Some(("t", v)) => t = v.parse::<i64>().ok(),
                        Some(("v1", v)) => v1.extend(hex_decode(v)),
                        _ => {}
                    }
                }
                let t = t.ok_or(SignatureError::Malformed("Stripe-Signature"))?;
                let expected = mac(secret, &[t.to_string().as_bytes(), b".", body]);
                if !v1.iter().any(|s| same(s, &expected)) {
                    return Err(SignatureError::Mismatch);
                }
                let skew = now / 1000 - t;
                if skew.abs() > SIGNATURE_TOLERANCE_SECS {
                    return Err(SignatureError::Stale(skew));
                }
                Ok(())
            }
            SignatureScheme::Zendesk => {
                let given = headers
                    .get("x-zendesk-webhook-signature")
                    .ok_or(SignatureError::Missing("X-Zendesk-Webhook-Signature"))?;
                let ts = headers.get("x-zendesk-webhook-signature-timestamp").ok_or(
                    SignatureError::Missing("X-Zendesk-Webhook-Signature-Timestamp"),
                )?;
                let given = b64
                    .decode(given.trim())
                    .map_err(|_| SignatureError::Malformed("X-Zendesk-Webhook-Signature"))?;
                same(&given, &mac(secret, &[ts.as_bytes(), body]))
                    .then_some(())
                    .ok_or(SignatureError::Mismatch)
            }
            SignatureScheme::HmacSha256 => {
                let given = headers
                    .get("x-signature-sha256")
                    .map(String::as_str)
                    .or_else(|| {
                        headers
                            .get("x-hub-signature-256")
                            .map(|h| h.trim_start_matches("sha256="))
                    })
                    .ok_or(SignatureError::Missing("X-Signature-Sha256"))?;
                let given =
                    hex_decode(given).ok_or(SignatureError::Malformed("X-Signature-Sha256"))?;
                same(&given, &mac(secret, &[body]))
                    .then_some(())
                    .ok_or(SignatureError::Mismatch)
            }
        }
    }
}

/// A mapping as a source names it: a shipped one by name, or its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MappingRef {
    Shipped(String),
    Own(Mapping),
}

/// How a source checks who calls it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureCheck {
    pub scheme: SignatureScheme,
    /// The platform's signing secret (kept readable: verifying needs it; sealed in storage
    /// when the node has a key, [`crate::sealed`]).
    #[serde(with = "crate::sealed::serde_sealed")]
    pub secret: String,
}

/// What makes a source a webhook source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSource {
    pub mapping: MappingRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureCheck>,
}

impl MappingRef {
    /// The mapping itself (a shipped one looked up), or why there is none.
    pub fn resolve(&self) -> Result<Mapping, MappingError> {
        match self {
            MappingRef::Own(m) => Ok(m.clone()),
            MappingRef::Shipped(name) => {
                shipped(name)
                    .map(|s| s.mapping())
                    .ok_or_else(|| MappingError {
                        at: "mapping".into(),
                        message: format!(
                            "no shipped mapping is named `{name}`; use one of {}",
                            SHIPPED
                                .iter()
                                .map(|s| s.name)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    })
            }
        }
    }
}

/// A mapping shipped with Parcours for a platform's webhook.
pub struct Shipped {
    pub name: &'static str,
    pub platform: &'static str,
    pub description: &'static str,
    /// The scheme the platform signs with, if it signs.
    pub signature: Option<SignatureScheme>,
    json: &'static str,
}

impl Shipped {
    pub fn mapping(&self) -> Mapping {
        serde_json::from_str(self.json).expect("shipped mappings are valid (tested)")
    }
}

pub fn shipped(name: &str) -> Option<&'static Shipped> {
    SHIPPED.iter().find(|s| s.name == name)
}

pub static SHIPPED: &[Shipped] = &[
    Shipped {
        name: "shopify_orders_create",
        platform: "Shopify",
        description: "`orders/create`: the buyer (identify with email, phone and name) and an Order Completed with its products; POS orders are on the store channel",
        signature: Some(SignatureScheme::Shopify),
        json: include_str!("webhook/shopify_orders_create.json"),
    },
    Shipped {
        name: "stripe_checkout_session_completed",
        platform: "Stripe",
        description: "`checkout.session.completed`: the customer (identify; `client_reference_id` as the user id) and an Order Completed in major units; other event types are ignored",
        signature: Some(SignatureScheme::Stripe),
        json: include_str!("webhook/stripe_checkout_session_completed.json"),
    },
    Shipped {
        name: "chatwoot_message_created",
        platform: "Chatwoot",
        description: "`message_created`: a Chat Message Received on the chatbot channel for each incoming message, keyed by the Chatwoot contact; other events and outgoing messages are ignored",
        signature: None,
        json: include_str!("webhook/chatwoot_message_created.json"),
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn shipped_mappings_compile() {
        for s in SHIPPED {
            s.mapping()
                .compile()
                .unwrap_or_else(|e| panic!("{}: {e}", s.name));
        }
    }

    #[test]
    fn signatures_match_independently_computed_vectors() {
        // Computed with Python's hmac and checked with openssl, not with this code.
        let stripe_body = br#"{"id":"evt_test_webhook","object":"event"}"#;
        let h = headers(&[(
            "stripe-signature",
            "t=1700000000,v1=d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990",
        )]);
        let at = 1_700_000_000_000;
        assert_eq!(
            SignatureScheme::Stripe.verify("whsec_test_secret", &h, stripe_body, at),
            Ok(())
        );
        assert_eq!(
            SignatureScheme::Stripe.verify("test_secret", &h, stripe_body, at),
            Err(SignatureError::Mismatch),
            "the whole secret, prefix included, is the key"
        );
        assert_eq!(
            SignatureScheme::Stripe.verify("whsec_test_secret", &h, stripe_body, at + 301_000),
            Err(SignatureError::Stale(301)),
            "a replay after five minutes is refused"
        );
        let shopify_body = br#"{"id":820982911946154508,"email":"jon@example.com"}"#;
        let h = headers(&[(
            "x-shopify-hmac-sha256",
            "D0UMXmhjwBRi4y66TmhJrDlhQABD7zI2fm3p6/QLMo8=",
        )]);
        assert_eq!(
            SignatureScheme::Shopify.verify("hush", &h, shopify_body, at),
            Ok(())
        );
        assert_eq!(
            SignatureScheme::Shopify.verify("hush", &h, b"{}", at),
            Err(SignatureError::Mismatch)
        );
        let h = headers(&[
            (
                "x-zendesk-webhook-signature",
                "2OrUf5TSibTNuTXkgEyokLCofvMjqkUNpm0XdCSsS3c=",
            ),
            (
                "x-zendesk-webhook-signature-timestamp",
                "2024-04-17T17:18:10Z",
            ),
        ]);
        let zendesk_body = br#"{"type":"zen:event-type:ticket.created"}"#;
        assert_eq!(
            SignatureScheme::Zendesk.verify("hush", &h, zendesk_body, at),
            Ok(())
        );
        assert_eq!(
            SignatureScheme::Zendesk.verify("hush", &BTreeMap::new(), zendesk_body, at),
            Err(SignatureError::Missing("X-Zendesk-Webhook-Signature"))
        );
    }

    #[test]
    fn helpers_convert_amounts_and_times() {
        let m = Mapping::from_json(&json!({"events": [{
            "type": "track", "event": "'Paid'", "userId": "'u1'",
            "timestamp": "to_iso(body.created)",
            "properties": {
                "eur": "minor_to_major(`1999`, 'eur')",
                "jpy": "minor_to_major(`1999`, 'JPY')",
                "none": "minor_to_major(body.missing, 'eur')",
                "text_time": "to_iso('2020-03-03 13:05:57 UTC')"
            }
        }]}))
        .unwrap()
        .compile()
        .unwrap();
        let events = m
            .events(&json!({"created": 1_234_567_890}), &BTreeMap::new(), "wh")
            .unwrap();
        let e = &events[0];
        assert_eq!(e["timestamp"], "2009-02-13T23:31:30.000Z");
        assert_eq!(e["properties"]["eur"], 19.99);
        assert_eq!(e["properties"]["jpy"], 1999.0);
        assert!(
            e["properties"].get("none").is_none(),
            "null fields are left out"
        );
        assert_eq!(e["properties"]["text_time"], "2020-03-03T13:05:57.000Z");
        assert_eq!(e["messageId"], "wh-0");
    }

    #[test]
    fn mappings_are_refused_with_where() {
        let bad = |doc: Value| {
            Mapping::from_json(&doc)
                .and_then(|m| m.compile().map(|_| ()))
                .unwrap_err()
        };
        assert_eq!(bad(json!({"events": []})).at, "events");
        assert_eq!(
            bad(json!({"events": [{"type": "track", "event": "'X'", "properties": {"total": "body.[["}}]})).at,
            "events[0].properties.total"
        );
        assert_eq!(
            bad(json!({"events": [{"type": "purchase"}]})).at,
            "events[0].type"
        );
        assert_eq!(
            bad(json!({"events": [{"type": "track"}]})).at,
            "events[0].event"
        );
        assert!(bad(json!({"events": [{"type": "track", "evnt": "'X'"}]}))
            .message
            .contains("evnt"));
    }

    #[test]
    fn expressions_that_would_copy_the_payload_exponentially_are_refused() {
        let compile = |expr: &str| {
            Mapping::from_json(
                &json!({"events": [{"type": "track", "event": "'X'", "properties": {"p": expr}}]}),
            )
            .unwrap()
            .compile()
            .map(|_| ())
        };
        let chained = format!("length(body{})", ".[@,@]".repeat(27));
        let err = compile(&chained).unwrap_err();
        assert!(err.message.contains("at most 64"), "{err}");
        let wide = format!("join('', [{}])", vec!["body.s"; 240].join(", "));
        assert!(compile(&wide).is_err());
        // What mappings need is well inside the bound.
        compile("body.line_items[].{a: a, b: b, c: c, d: d, e: e, f: f, g: g}").unwrap();
        compile("body.[@,@].[@,@].[@,@]").unwrap();
    }

    #[test]
    fn shipped_mappings_never_make_ids_out_of_missing_values() {
        for s in SHIPPED {
            let m = s.mapping().compile().unwrap();
            for body in [
                json!({}),
                json!([1, 2]),
                json!(42),
                json!({"type": "checkout.session.completed", "event": "message_created", "message_type": "incoming"}),
            ] {
                let events = m
                    .events(&body, &BTreeMap::new(), "wh-fallback")
                    .unwrap_or_default();
                for e in events {
                    let text = e.to_string();
                    assert!(!text.contains("\"null\""), "{}: {text}", s.name);
                    assert!(
                        e["messageId"].as_str().unwrap().starts_with("wh-fallback"),
                        "{}: {text}",
                        s.name
                    );
                }
            }
        }
    }

    #[test]
    fn what_a_mapping_makes_is_bounded() {
        let m = Mapping::from_json(&json!({"events": [{"type": "track", "event": "'X'", "userId": "'u'",
            "properties": {"a": "[body.s, body.s, body.s, body.s, body.s, body.s, body.s, body.s]"}}]}))
        .unwrap()
        .compile()
        .unwrap();
        let big = json!({"s": "x".repeat(400_000)});
        let err = m.events(&big, &BTreeMap::new(), "wh").unwrap_err();
        assert!(err.message.contains("2 MiB"), "{err}");
    }

    #[test]
    fn unreadable_times_are_passed_on_to_be_quarantined_not_dated_1970() {
        let m = Mapping::from_json(
            &json!({"events": [{"type": "track", "event": "'X'", "userId": "'u'",
            "timestamp": "to_iso(body.t)"}]}),
        )
        .unwrap()
        .compile()
        .unwrap();
        for (t, want) in [
            (json!(1e15), json!("1000000000000000.0")),
            (json!("soon"), json!("soon")),
        ] {
            let e = &m.events(&json!({"t": t}), &BTreeMap::new(), "wh").unwrap()[0];
            assert_eq!(e["timestamp"], want);
        }
        let e = &m.events(&json!({}), &BTreeMap::new(), "wh").unwrap()[0];
        assert!(e.get("timestamp").is_none());
    }

    #[test]
    fn people_known_only_by_email_get_a_stable_anonymous_id() {
        let a = anonymous_id_for("email", " Ada@Example.com ");
        assert_eq!(a, anonymous_id_for("email", "ada@example.com"));
        assert!(
            a.starts_with("email:") && a.len() == "email:".len() + 24,
            "{a}"
        );
        assert_ne!(a, anonymous_id_for("email", "bob@example.com"));
        let e = json!({"type": "identify", "traits": {"email": "ada@example.com"}});
        assert_eq!(derived_anonymous_id(&e), Some(a));
        assert_eq!(derived_anonymous_id(&json!({"type": "identify"})), None);
    }
}
