//! Tracking plans (as Segment Protocols and RudderStack Tracking Plans): per source, a JSON
//! Schema for the properties of each planned `track` event and one for `identify` traits, and
//! what a violation does.
//!
//! The schemas are a subset of JSON Schema (draft 2020-12 and 07 agree on it): `type` (one or a
//! list), `properties`, `required`, `additionalProperties` (a boolean), `items`, `enum`,
//! `const`, `minimum`, `maximum`, `minLength`, `maxLength`, `pattern`, `minItems`, `maxItems`,
//! and the annotations `description`, `title`, `$schema`, `$id`, `examples`. A plan that uses
//! another keyword is refused when it is saved, never silently half-applied.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// What a violation does to the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnViolation {
    /// The event is kept out of the log, in the quarantine, with its violations.
    Quarantine,
    /// The event is accepted as sent, its violations listed in `context.protocols.violations`.
    #[default]
    Flag,
    /// Properties (or traits) the plan does not list or that break their schema are removed;
    /// the event is accepted and what was removed or still wrong is listed as with `flag`.
    Strip,
}

/// A source's tracking plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingPlan {
    /// Schema of the `properties` of each planned track event, by event name.
    #[serde(default)]
    pub events: BTreeMap<String, Value>,
    /// Schema of `traits` in identify calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identify: Option<Value>,
    #[serde(default)]
    pub on_violation: OnViolation,
    /// Whether a track event the plan does not list is a violation (`unplanned_event`).
    #[serde(default = "yes")]
    pub unplanned_events_are_violations: bool,
}

fn yes() -> bool {
    true
}

/// The most violations named for one event (the rest are counted).
pub const MAX_VIOLATIONS: usize = 20;

/// One way an event breaks its plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// `unplanned_event`, `unplanned_property`, `missing_required`, `wrong_type`,
    /// `not_allowed_value`, `out_of_range`, `wrong_length`, `pattern_mismatch`.
    pub kind: String,
    /// Where: `properties.total`, `traits.email`, `properties.products[0].sku`.
    pub field: String,
    pub description: String,
}

const KEYWORDS: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "const",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "description",
    "title",
    "$schema",
    "$id",
    "examples",
];
const TYPES: &[&str] = &[
    "object", "array", "string", "number", "integer", "boolean", "null",
];

/// A plan that cannot be used, with where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {message}")]
pub struct PlanError {
    pub at: String,
    pub message: String,
}

fn check_schema(schema: &Value, at: &str, depth: usize) -> Result<(), PlanError> {
    let err = |message: String| PlanError {
        at: at.to_string(),
        message,
    };
    if depth > 32 {
        return Err(err("schemas nest at most 32 levels".into()));
    }
    let Some(obj) = schema.as_object() else {
        return Err(err("a schema is a JSON object".into()));
    };
    for (k, v) in obj {
        if !KEYWORDS.contains(&k.as_str()) {
            return Err(err(format!(
                "`{k}` is not a keyword Parcours validates; use {}",
                KEYWORDS.join(", ")
            )));
        }
        match k.as_str() {
            "type" => {
                let names: Vec<&Value> = match v {
                    Value::Array(a) => a.iter().collect(),
                    other => vec![other],
                };
                for n in names {
                    if !n.as_str().is_some_and(|n| TYPES.contains(&n)) {
                        return Err(err(format!(
                            "`type` is one of {} (or a list of them)",
                            TYPES.join(", ")
                        )));
                    }
                }
            }
            "properties" => {
                let props = v
                    .as_object()
                    .ok_or_else(|| err("`properties` is an object of schemas".into()))?;
                for (name, s) in props {
                    check_schema(s, &format!("{at}.properties.{name}"), depth + 1)?;
                }
            }
            "items" => check_schema(v, &format!("{at}.items"), depth + 1)?,
            "required" if !v.as_array().is_some_and(|a| a.iter().all(Value::is_string)) => {
                return Err(err("`required` is a list of property names".into()));
            }
            "additionalProperties" if !v.is_boolean() => {
                return Err(err("`additionalProperties` is true or false here".into()));
            }
            "enum" if !v.is_array() => {
                return Err(err("`enum` is a list of values".into()));
            }
            "minimum" | "maximum" if !v.is_number() => {
                return Err(err(format!("`{k}` is a number")));
            }
            "minLength" | "maxLength" | "minItems" | "maxItems" if !v.is_u64() => {
                return Err(err(format!("`{k}` is a whole number")));
            }
            "pattern" => {
                let p = v
                    .as_str()
                    .ok_or_else(|| err("`pattern` is a regular expression".into()))?;
                regex_lite::Regex::new(p)
                    .map_err(|e| err(format!("`pattern` does not compile: {e}")))?;
            }
            _ => {}
        }
    }
    Ok(())
}

impl TrackingPlan {
    /// Reads and checks a plan.
    pub fn from_json(value: &Value) -> Result<TrackingPlan, PlanError> {
        let plan: TrackingPlan = serde_json::from_value(value.clone()).map_err(|e| PlanError {
            at: "tracking_plan".into(),
            message: e.to_string(),
        })?;
        for (name, schema) in &plan.events {
            check_schema(schema, &format!("events.{name}"), 0)?;
        }
        if let Some(s) = &plan.identify {
            check_schema(s, "identify", 0)?;
        }
        Ok(plan)
    }

    /// The schema an event is checked against, and the field it applies to; `None` when the
    /// plan says nothing about this kind of call.
    fn schema_for<'a>(
        &'a self,
        event: &Value,
    ) -> Option<Result<(&'a Value, &'static str), Violation>> {
        match event["type"].as_str() {
            Some("track") => {
                let name = event["event"].as_str().unwrap_or("");
                match self.events.get(name) {
                    Some(s) => Some(Ok((s, "properties"))),
                    None if self.unplanned_events_are_violations => Some(Err(Violation {
                        kind: "unplanned_event".into(),
                        field: "event".into(),
                        description: format!("`{name}` is not in the tracking plan"),
                    })),
                    None => None,
                }
            }
            Some("identify") => self.identify.as_ref().map(|s| Ok((s, "traits"))),
            _ => None,
        }
    }

    /// Checks an event (a Segment call as JSON). Returns the event to keep (changed when the
    /// plan strips) and its violations; with [`OnViolation::Quarantine`] and violations, the
    /// caller keeps the event out of the log.
    pub fn apply(&self, mut event: Value) -> (Value, Vec<Violation>) {
        let (schema, field) = match self.schema_for(&event) {
            None => return (event, vec![]),
            Some(Err(v)) => return (event, vec![v]),
            Some(Ok(found)) => found,
        };
        let mut violations = Vec::new();
        let mut target = event.get(field).cloned().unwrap_or_else(|| json!({}));
        let strip = self.on_violation == OnViolation::Strip;
        validate(schema, &mut target, field, strip, &mut violations);
        if strip {
            event[field] = target;
        }
        // An event can break a plan in as many places as it has values (an array of ten
        // thousand wrong items): the first few are named, the rest counted, so that flagging
        // never makes an event many times its size.
        if violations.len() > MAX_VIOLATIONS {
            let more = violations.len() - MAX_VIOLATIONS;
            violations.truncate(MAX_VIOLATIONS);
            violations.push(Violation {
                kind: "more_violations".into(),
                field: field.into(),
                description: format!("and {more} more"),
            });
        }
        (event, violations)
    }
}

/// Adds the violations to `context.protocols.violations`, as Segment Protocols does.
pub fn flag(event: &mut Value, violations: &[Violation]) {
    if violations.is_empty() || !event.is_object() {
        return;
    }
    if !event["context"].is_object() {
        event["context"] = json!({});
    }
    event["context"]["protocols"] = json!({ "violations": violations });
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn has_type(v: &Value, t: &str) -> bool {
    let actual = type_name(v);
    actual == t
        || (t == "number" && actual == "integer")
        || (t == "integer" && v.as_f64().is_some_and(|f| f.fract() == 0.0))
}

/// Validates `value` against `schema`; with `strip`, removes what breaks it where it can
/// (an unplanned or invalid property) and reports it. Returns whether `value` itself is valid
/// (so that its parent may strip it).
fn validate(
    schema: &Value,
    value: &mut Value,
    at: &str,
    strip: bool,
    out: &mut Vec<Violation>,
) -> bool {
    let mut push = |kind: &str, description: String| {
        out.push(Violation {
            kind: kind.into(),
            field: at.to_string(),
            description,
        });
    };
    if let Some(t) = schema.get("type") {
        let allowed: Vec<&str> = match t {
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            other => other.as_str().into_iter().collect(),
        };
        if !allowed.iter().any(|t| has_type(value, t)) {
            push(
                "wrong_type",
                format!(
                    "is {}, the plan says {}",
                    type_name(value),
                    allowed.join(" or ")
                ),
            );
            return false;
        }
    }
    let mut valid = true;
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        if !options.contains(value) {
            push(
                "not_allowed_value",
                format!("{value} is not one of {}", Value::Array(options.clone())),
            );
            valid = false;
        }
    }
    if let Some(c) = schema.get("const") {
        if c != value {
            push("not_allowed_value", format!("{value} is not {c}"));
            valid = false;
        }
    }
    if let Some(n) = value.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            if n < min {
                push("out_of_range", format!("{n} is below the minimum {min}"));
                valid = false;
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            if n > max {
                push("out_of_range", format!("{n} is above the maximum {max}"));
                valid = false;
            }
        }
    }
    if let Some(s) = value.as_str() {
        let len = s.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
            if len < min {
                push(
                    "wrong_length",
                    format!("{len} characters, fewer than {min}"),
                );
                valid = false;
            }
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
            if len > max {
                push("wrong_length", format!("{len} characters, more than {max}"));
                valid = false;
            }
        }
        if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
            // Checked when the plan was saved.
            if regex_lite::Regex::new(p).is_ok_and(|re| !re.is_match(s)) {
                push("pattern_mismatch", format!("does not match {p}"));
                valid = false;
            }
        }
    }
    if let Some(items) = value.as_array_mut() {
        let n = items.len() as u64;
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
            if n < min {
                push("wrong_length", format!("{n} items, fewer than {min}"));
                valid = false;
            }
        }
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
            if n > max {
                push("wrong_length", format!("{n} items, more than {max}"));
                valid = false;
            }
        }
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter_mut().enumerate() {
                if !validate(item_schema, item, &format!("{at}[{i}]"), strip, out) {
                    valid = false;
                }
            }
        }
    }
    if let Some(obj) = value.as_object_mut() {
        let props = schema.get("properties").and_then(Value::as_object);
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for name in required.iter().filter_map(Value::as_str) {
                if !obj.contains_key(name) {
                    out.push(Violation {
                        kind: "missing_required".into(),
                        field: format!("{at}.{name}"),
                        description: "is required by the plan".into(),
                    });
                    valid = false;
                }
            }
        }
        // Unplanned: not listed when the schema lists properties, and either the schema says
        // `additionalProperties: false` or the plan strips.
        let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
        let mut drop = Vec::new();
        for (name, v) in obj.iter_mut() {
            let field = format!("{at}.{name}");
            if let Some(s) = props.and_then(|p| p.get(name)) {
                let fits = validate(s, v, &field, strip, out);
                if !fits && strip {
                    drop.push(name.clone());
                }
                continue;
            }
            match props {
                Some(_) if closed || strip => {
                    out.push(Violation {
                        kind: "unplanned_property".into(),
                        field,
                        description: if strip {
                            "is not in the plan; removed".into()
                        } else {
                            "is not in the plan".into()
                        },
                    });
                    if strip {
                        drop.push(name.clone());
                    } else {
                        valid = false;
                    }
                }
                _ => {}
            }
        }
        for name in drop {
            obj.remove(&name);
        }
    }
    valid
}

/// Counts of violations by event and field, as the violations report shows them.
pub fn report_key(event: &Value, v: &Violation) -> (String, String, String) {
    let name = match event["type"].as_str() {
        Some("track") => event["event"].as_str().unwrap_or("").to_string(),
        Some(t) => t.to_string(),
        None => String::new(),
    };
    // Items of an array are one line of the report: `properties.tags[]`, not one per index.
    let mut field = String::with_capacity(v.field.len());
    let mut in_index = false;
    for c in v.field.chars() {
        match c {
            '[' => {
                in_index = true;
                field.push('[');
            }
            ']' => {
                in_index = false;
                field.push(']');
            }
            c if in_index && c.is_ascii_digit() => {}
            c => field.push(c),
        }
    }
    (name, field, v.kind.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(on: &str) -> TrackingPlan {
        TrackingPlan::from_json(&json!({
            "events": {"Order Completed": {
                "type": "object",
                "required": ["order_id", "total"],
                "properties": {
                    "order_id": {"type": "string"},
                    "total": {"type": "number", "minimum": 0},
                    "currency": {"type": "string", "enum": ["EUR", "USD"]},
                    "products": {"type": "array", "items": {"type": "object", "required": ["sku"], "properties": {"sku": {"type": "string", "pattern": "^[A-Z0-9-]+$"}}}}
                }
            }},
            "identify": {"type": "object", "properties": {"email": {"type": "string", "maxLength": 254}}},
            "on_violation": on
        }))
        .unwrap()
    }

    fn kinds(v: &[Violation]) -> Vec<(String, String)> {
        v.iter()
            .map(|v| (v.kind.clone(), v.field.clone()))
            .collect()
    }

    #[test]
    fn a_planned_event_that_fits_has_no_violation() {
        let e = json!({"type": "track", "event": "Order Completed", "properties": {"order_id": "o1", "total": 12, "currency": "EUR", "products": [{"sku": "AB-1"}]}});
        let (kept, v) = plan("quarantine").apply(e.clone());
        assert!(v.is_empty(), "{v:?}");
        assert_eq!(kept, e);
    }

    #[test]
    fn each_kind_of_violation_is_named_with_its_field() {
        let e = json!({"type": "track", "event": "Order Completed", "properties": {"total": "12", "currency": "GBP", "coupon": "X", "products": [{"sku": "ab 1"}]}});
        let (_, v) = plan("flag").apply(e);
        let got = kinds(&v);
        for want in [
            ("missing_required", "properties.order_id"),
            ("wrong_type", "properties.total"),
            ("not_allowed_value", "properties.currency"),
            ("pattern_mismatch", "properties.products[0].sku"),
        ] {
            assert!(
                got.contains(&(want.0.into(), want.1.into())),
                "{want:?} in {got:?}"
            );
        }
        // Without additionalProperties: false, flag mode leaves unplanned properties alone.
        assert!(
            !got.iter().any(|(k, _)| k == "unplanned_property"),
            "{got:?}"
        );
        let (_, v) = plan("flag").apply(json!({"type": "track", "event": "Cart Viewed"}));
        assert_eq!(kinds(&v), [("unplanned_event".into(), "event".into())]);
        let (_, v) =
            plan("flag").apply(json!({"type": "identify", "traits": {"email": "x".repeat(300)}}));
        assert_eq!(kinds(&v), [("wrong_length".into(), "traits.email".into())]);
    }

    #[test]
    fn strip_removes_what_the_plan_does_not_allow() {
        let e = json!({"type": "track", "event": "Order Completed", "properties": {"order_id": "o1", "total": -1, "coupon": "X"}});
        let (kept, v) = plan("strip").apply(e);
        assert_eq!(
            kept["properties"],
            json!({"order_id": "o1"}),
            "unplanned and invalid properties removed"
        );
        let got = kinds(&v);
        assert!(got.contains(&("unplanned_property".into(), "properties.coupon".into())));
        assert!(got.contains(&("out_of_range".into(), "properties.total".into())));
    }

    #[test]
    fn a_flood_of_violations_is_named_up_to_a_limit_and_counted() {
        let p = TrackingPlan::from_json(
            &json!({"events": {"Tagged": {"type": "object", "properties": {
            "tags": {"type": "array", "items": {"type": "string"}}}}}}),
        )
        .unwrap();
        let e =
            json!({"type": "track", "event": "Tagged", "properties": {"tags": vec![0; 10_000]}});
        let (_, v) = p.apply(e.clone());
        assert_eq!(v.len(), MAX_VIOLATIONS + 1);
        assert_eq!(
            v.last().unwrap().description,
            format!("and {} more", 10_000 - MAX_VIOLATIONS)
        );
        assert_eq!(
            report_key(&e, &v[7]).1,
            "properties.tags[]",
            "array items are one line of the report"
        );
    }

    #[test]
    fn flags_go_where_segment_puts_them() {
        let mut e = json!({"type": "track", "event": "X"});
        let (_, v) = plan("flag").apply(e.clone());
        flag(&mut e, &v);
        assert_eq!(
            e["context"]["protocols"]["violations"][0]["kind"],
            "unplanned_event"
        );
    }

    #[test]
    fn unknown_keywords_are_refused_not_ignored() {
        let err =
            TrackingPlan::from_json(&json!({"events": {"X": {"type": "object", "oneOf": []}}}))
                .unwrap_err();
        assert_eq!(err.at, "events.X");
        assert!(err.message.contains("oneOf"));
        let err = TrackingPlan::from_json(
            &json!({"events": {"X": {"properties": {"a": {"pattern": "("}}}}}),
        )
        .unwrap_err();
        assert_eq!(err.at, "events.X.properties.a");
        assert!(TrackingPlan::from_json(&json!({"on_violation": "explode"})).is_err());
    }
}
