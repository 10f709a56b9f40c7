//! The OpenAPI 3.1 document of the tracking and admin APIs, served at `/api/openapi.json`.
//!
//! It is generated from the handlers: each is annotated with `#[utoipa::path]` (its method,
//! path, parameters, request body and answers) and registered with `utoipa_axum::routes!`,
//! which adds it to the router and to the document at once. Registering a route any other way
//! is refused by clippy (`clippy.toml`), so no route can be left out of the document.
//!
//! The request bodies the handlers read as JSON values are described by the schemas below.

use std::sync::OnceLock;

use axum::Json;
use serde_json::{json, Value};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi, RefOr};

/// The error envelope of every refusal (`docs/errors.md`).
#[derive(utoipa::ToSchema, serde::Serialize)]
pub struct ApiErrorBody {
    /// What went wrong, with the limit and the measured value where there is one.
    pub message: String,
    /// The stable code.
    pub code: String,
    /// `invalid_request`, `auth`, `rate_limit` or `internal`.
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    pub kind: String,
    /// Where the code is documented.
    pub link: String,
}

/// The answers of a refused or failed request.
#[derive(utoipa::IntoResponses)]
pub enum Refusals {
    /// Refused: `code` says why (docs/errors.md).
    #[response(status = "4XX")]
    Refused(ApiErrorBody),
    /// Failed on the server's side: nothing was applied.
    #[response(status = "5XX")]
    Failed(ApiErrorBody),
}

/// A schema written as JSON Schema, for bodies the handlers read or write as JSON values.
/// utoipa's model cannot hold every JSON Schema keyword (`"type": ["string", "null"]`), so
/// the document names it as a component and [`finish`] puts the JSON Schema itself there.
macro_rules! json_schema {
    ($(#[$doc:meta])* $name:ident, $value:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl $name {
            fn json() -> Value {
                $value
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new().into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

fn object(required: &[&str], properties: Value) -> Value {
    json!({"type": "object", "required": required, "properties": properties})
}

fn channel_schema() -> Value {
    json!({"type": "string", "enum": ["web", "ios", "android", "store", "email", "sms", "call_centre", "chatbot", "social", "ads", "server"]})
}

fn origins_schema() -> Value {
    json!({"type": "array", "items": {"type": "string", "description": "scheme://host[:port] or scheme://*.domain"}})
}

fn webhook_schema() -> Value {
    json!({"type": "object", "required": ["mapping"], "additionalProperties": false, "properties": {
        "mapping": {"description": "a shipped mapping's name or a mapping {\"events\": [...]} (docs/sources.md)"},
        "signature": {"type": "object", "required": ["scheme", "secret"], "additionalProperties": false, "properties": {
            "scheme": {"type": "string", "enum": ["shopify", "stripe", "zendesk", "hmac_sha256"]},
            "secret": {"type": "string", "minLength": 1}}}}})
}

fn plan_schema() -> Value {
    json!({"type": "object", "additionalProperties": false, "properties": {
        "events": {"type": "object", "additionalProperties": {"type": "object"}},
        "identify": {"type": "object"},
        "on_violation": {"type": "string", "enum": ["quarantine", "flag", "strip"]},
        "unplanned_events_are_violations": {"type": "boolean"}}})
}

json_schema!(
    /// A Segment spec event.
    SegmentEvent,
    json!({"type": "object", "description": "a Segment spec event", "additionalProperties": true})
);
json_schema!(
    /// A batch of Segment events.
    SegmentBatch,
    json!({"type": "object", "required": ["batch"], "description": "events, with a context, integrations and sentAt that apply to each",
        "properties": {"batch": {"type": "array", "description": "at most 2,500 events (413 beyond)", "items": {"type": "object", "additionalProperties": true}},
                       "context": {"type": ["object", "array", "string", "number", "boolean", "null"], "description": "an object merged into each event (anything else is ignored)"},
                       "integrations": {"type": ["object", "array", "string", "number", "boolean", "null"], "description": "an object merged into each event (anything else is ignored)"},
                       "sentAt": {"type": ["string", "null"]}, "writeKey": {"type": ["string", "null"]}},
        "additionalProperties": true})
);
json_schema!(
    /// Any JSON: what a platform's webhook sends.
    AnyJson,
    json!({"description": "any JSON"})
);
json_schema!(
    /// A JSON object answered by the API (its fields are described in the docs).
    Answer,
    json!({"type": "object", "additionalProperties": true})
);
json_schema!(
    /// What a tracking call answers once its events are committed.
    Committed,
    json!({"type": "object", "required": ["success"], "properties": {"success": {"type": "boolean"}}})
);
json_schema!(
    /// What a webhook call answers.
    WebhookCommitted,
    json!({"type": "object", "required": ["success"], "properties": {
        "success": {"type": "boolean"}, "events": {"type": "integer"}, "accepted": {"type": "integer"}, "quarantined": {"type": "integer"}}})
);
json_schema!(
    /// An audience.
    AudienceBody,
    object(
        &["name"],
        json!({
            "id": {"type": ["string", "null"], "pattern": "^[a-z][a-z0-9_-]{0,63}$"},
            "name": {"type": "string", "minLength": 1},
            "description": {"type": "string"},
            "definition": {"type": ["string", "null"], "description": "the condition in the text syntax (docs/audiences.md)"},
            "condition": {"type": ["object", "null"], "description": "the condition as a JSON tree"}
        }),
    )
);
json_schema!(
    /// A computed trait.
    TraitBody,
    object(
        &["id", "kind", "event"],
        json!({
            "id": {"type": ["string", "null"], "pattern": "^[a-z][a-z0-9_-]{0,63}$"},
            "kind": {"type": "string", "enum": ["count", "sum", "avg", "min", "max", "first", "last", "most_frequent", "unique_list", "unique_count", "lifecycle", "rfm", "clv"]},
            "event": {"type": "string", "minLength": 1},
            "property": {"type": ["string", "null"]},
            "include_anonymous": {"type": "boolean", "description": "rfm and lifecycle: score anonymous profiles too (default: known customers only)"}
        }),
    )
);
json_schema!(
    /// An audience webhook destination.
    DestinationBody,
    object(
        &["name", "url"],
        json!({
            "id": {"type": ["string", "null"], "pattern": "^[a-z][a-z0-9_-]{0,63}$"},
            "name": {"type": "string", "minLength": 1},
            "url": {"type": "string", "format": "uri", "description": "http(s), on a public address"},
            "secret": {"type": ["string", "null"]},
            "audiences": {"type": "array", "items": {"type": "string"}},
            "identifiers": {"type": "string", "enum": ["none", "plain", "google", "meta"]},
            "region": {"type": ["string", "null"], "pattern": "^[A-Za-z]{2}$"},
            "enabled": {"type": "boolean"},
            "max_in_flight": {"type": ["integer", "null"], "minimum": 1, "maximum": 64},
            "max_per_second": {"type": ["number", "null"], "minimum": 0.01, "maximum": 10000},
            "purpose": {"type": ["string", "null"], "pattern": "^[a-z][a-z0-9_]{0,63}$", "description": "the consent a member needs to be added (default marketing; none: every member)"},
            "channel": {"type": ["string", "null"], "pattern": "^[a-z][a-z0-9_]{0,63}$", "description": "the channel of that consent (default ads)"}
        }),
    )
);
json_schema!(
    /// A new source.
    NewSourceBody,
    object(
        &["name"],
        json!({"name": {"type": "string", "minLength": 1, "maxLength": 200},
            "channel": {"oneOf": [channel_schema(), {"type": "null"}]},
            "allowed_origins": origins_schema(),
            "webhook": {"oneOf": [webhook_schema(), {"type": "null"}]},
            "tracking_plan": {"oneOf": [plan_schema(), {"type": "null"}]}}),
    )
);
json_schema!(
    /// The fields of a source to change (`null` clears the channel, the webhook or the plan).
    SourceChangeBody,
    json!({"type": "object", "additionalProperties": false, "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 200},
        "channel": {"oneOf": [channel_schema(), {"type": "null"}]},
        "allowed_origins": origins_schema(),
        "webhook": {"oneOf": [webhook_schema(), {"type": "null"}]},
        "tracking_plan": {"oneOf": [plan_schema(), {"type": "null"}]}}})
);
json_schema!(
    /// A new admin token.
    NewTokenBody,
    object(
        &["name", "role"],
        json!({"name": {"type": "string", "minLength": 1, "maxLength": 200}, "role": {"type": "string", "enum": ["admin", "marketer", "agent", "analyst", "read_only"]},
            "expires_in_days": {"type": ["integer", "null"], "minimum": 1, "maximum": 3650},
            "scopes": {"type": "array", "items": {"type": "string", "enum": ["profiles", "audiences", "journeys", "commerce", "measure", "privacy", "sources", "admin"]},
                "description": "the parts of the admin API the token may call; none: every part its role allows"}}),
    )
);
json_schema!(
    /// How long the previous secret keeps working.
    RotationBody,
    json!({"type": "object", "additionalProperties": false, "properties": {
        "overlap_hours": {"type": ["integer", "null"], "minimum": 0, "maximum": 2160}}})
);
json_schema!(
    /// A webhook payload to preview.
    PreviewBody,
    json!({"type": "object", "required": ["payload"], "additionalProperties": false, "properties": {
        "mapping": {"description": "a shipped mapping's name, or a mapping {\"events\": [...]}"},
        "source": {"type": "string"},
        "payload": {"description": "the platform's JSON"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}}}})
);
json_schema!(
    /// A new workspace.
    WorkspaceBody,
    object(&["name"], json!({"name": {"type": "string", "minLength": 1}}))
);
json_schema!(
    /// Identity rules (docs/identity.md).
    IdentityRulesBody,
    json!({"type": "object", "description": "identity rules (docs/identity.md)"})
);
json_schema!(
    /// Which merge to undo.
    UnmergeBody,
    object(&["merge_id"], json!({"merge_id": {"type": "integer", "format": "int64", "minimum": 1}}))
);

fn iso() -> Value {
    json!({"type": "string", "description": "ISO-8601 UTC, e.g. 2026-11-29T06:09:10.510Z"})
}

fn iso_or_null() -> Value {
    json!({"type": ["string", "null"], "description": "ISO-8601 UTC"})
}

fn source_schema() -> Value {
    json!({"type": "object", "required": ["id", "workspace_id", "name", "created_at", "allowed_origins", "kind"], "properties": {
        "id": {"type": "string"}, "workspace_id": {"type": "string"}, "name": {"type": "string"},
        "channel": {"type": ["string", "null"]}, "created_at": iso(),
        "allowed_origins": {"type": "array", "items": {"type": "string"}},
        "kind": {"type": "string", "enum": ["tracking", "webhook"]},
        "webhook": {"type": ["object", "null"], "description": "its mapping, and its signature scheme (the secret is never shown)"},
        "tracking_plan": {"type": ["object", "null"]},
        "write_keys": {"type": "array", "items": {"type": "object", "required": ["fingerprint", "created_at", "active"], "properties": {
            "fingerprint": {"type": "string"}, "created_at": iso(), "expires_at": iso_or_null(), "active": {"type": "boolean"}}}}}})
}

fn token_schema() -> Value {
    json!({"type": "object", "required": ["id", "workspace_id", "name", "role", "instance_admin", "created_at", "active"], "properties": {
        "id": {"type": "string"}, "workspace_id": {"type": "string"}, "name": {"type": "string"},
        "role": {"type": "string", "enum": ["admin", "marketer", "agent", "analyst", "read_only"]},
        "instance_admin": {"type": "boolean"}, "created_at": iso(), "expires_at": iso_or_null(), "active": {"type": "boolean"},
        "scopes": {"type": "array", "items": {"type": "string"}}}})
}

/// Profiles and merges a set of identity rules makes.
fn shape_schema() -> Value {
    json!({"type": "object", "required": ["profiles", "merges"], "properties": {"profiles": {"type": "integer"}, "merges": {"type": "integer"}}})
}

/// One line of a dashboard chart: a value per day.
fn series_schema() -> Value {
    json!({"type": "object", "required": ["key", "values", "total"], "properties": {
        "key": {"type": "string"}, "values": {"type": "array", "items": {"type": "integer"}}, "total": {"type": "integer"}}})
}

fn kpi_row_schema() -> Value {
    use parcours_core::kpi::Row;
    let properties: serde_json::Map<String, Value> = Row::COLUMNS
        .iter()
        .map(|&c| {
            let schema = match c {
                "key" => json!({"type": "string"}),
                "revenue" => json!({"type": "number"}),
                c if Row::OPTIONAL.contains(&c) => json!({"type": ["number", "null"]}),
                _ => json!({"type": "integer", "minimum": 0}),
            };
            (c.to_string(), schema)
        })
        .collect();
    json!({"type": "object", "required": Row::COLUMNS, "properties": properties})
}

fn funnel_group_schema() -> Value {
    json!({"type": "object", "required": ["key", "reached", "conversion", "median_seconds_to_convert"], "properties": {
        "key": {"type": "string"}, "reached": {"type": "array", "items": {"type": "integer"}},
        "conversion": {"type": "array", "items": {"type": "number"}},
        "median_seconds_to_convert": {"type": ["number", "null"]}}})
}

fn quarantine_schema() -> Value {
    json!({"type": "object", "required": ["id", "workspace_id", "source_id", "received_at", "code", "reason", "body", "status", "occurrences", "last_seen", "sources"], "properties": {
        "id": {"type": "integer"}, "workspace_id": {"type": "string"}, "source_id": {"type": "string"},
        "received_at": iso(), "code": {"type": "string"}, "reason": {"type": "string"},
        "message_id": {"type": ["string", "null"]}, "body": {"type": "string"},
        "status": {"type": "string", "enum": ["pending", "replayed", "discarded"]},
        "resolved_at": iso_or_null(), "occurrences": {"type": "integer"}, "last_seen": iso(),
        "sources": {"type": "array", "items": {"type": "string"}}}})
}

json_schema!(
    /// A list of sources.
    SourceList,
    json!({"type": "object", "required": ["sources"], "properties": {"sources": {"type": "array", "items": source_schema()}}})
);
json_schema!(
    /// One source.
    SourceAnswer,
    json!({"type": "object", "required": ["source"], "properties": {"source": source_schema()}})
);
json_schema!(
    /// A new source and its write key (shown once).
    SourceCreated,
    json!({"type": "object", "required": ["source", "write_key"], "properties": {"source": source_schema(), "write_key": {"type": "string"}}})
);
json_schema!(
    /// A new write key (shown once) and when the previous ones stop.
    KeyRotated,
    json!({"type": "object", "required": ["write_key", "previous_keys_expire_at"], "properties": {
        "write_key": {"type": "string"}, "previous_keys_expire_at": iso()}})
);
json_schema!(
    /// A list of tokens (never their secrets).
    TokenList,
    json!({"type": "object", "required": ["tokens"], "properties": {"tokens": {"type": "array", "items": token_schema()}}})
);
json_schema!(
    /// A new token and its secret (shown once).
    TokenCreated,
    json!({"type": "object", "required": ["token", "secret"], "properties": {"token": token_schema(), "secret": {"type": "string"}}})
);
json_schema!(
    /// A token's successor and its secret (shown once), and when the old one stops.
    TokenRotated,
    json!({"type": "object", "required": ["token", "secret", "previous_expires_at"], "properties": {
        "token": token_schema(), "secret": {"type": "string"}, "previous_expires_at": iso()}})
);
json_schema!(
    /// A profile.
    ProfileAnswer,
    json!({"type": "object", "required": ["id", "requested_id", "merged", "traits", "identifiers", "consent", "channels", "first_seen", "last_seen", "events", "known"], "properties": {
        "id": {"type": "string"}, "requested_id": {"type": "string"}, "merged": {"type": "boolean"},
        "traits": {"type": "object"},
        "identifiers": {"type": "array", "items": {"type": "object", "required": ["type", "value"], "properties": {"type": {"type": "string"}, "value": {"type": "string"}}}},
        "consent": {"type": "object", "additionalProperties": {"type": "object"}},
        "channels": {"type": "object", "additionalProperties": {"type": "object", "properties": {"first_seen": iso(), "last_seen": iso(), "events": {"type": "integer"}}}},
        "last_channel": {"type": ["string", "null"]},
        "first_seen": iso(), "last_seen": iso(), "events": {"type": "integer"},
        "known": {"type": "boolean"}}})
);
json_schema!(
    /// A test message: the channel and the address.
    ChannelTestBody,
    object(&["channel", "to"], json!({"channel": {"type": "string", "enum": ["email", "sms", "push"]}, "to": {"type": "string", "minLength": 1, "maxLength": 4096}}))
);
json_schema!(
    /// The message channels of this node.
    ChannelsAnswer,
    json!({"type": "object", "required": ["channels", "webhook_steps_signed"], "properties": {"channels": {"type": "array", "items": {"type": "object", "required": ["channel", "sender", "about", "rate_per_second"], "properties": {
        "channel": {"type": "string"}, "sender": {"type": "string"}, "about": {"type": "string"}, "rate_per_second": {"type": "integer"}}}},
        "webhook_steps_signed": {"type": "boolean", "description": "whether journeys' webhook steps can call out (a signing secret is configured)"}}})
);
json_schema!(
    /// A test message the channel accepted.
    TestSentAnswer,
    json!({"type": "object", "required": ["channel", "to", "sender", "key"], "properties": {
        "channel": {"type": "string"}, "to": {"type": "string"}, "sender": {"type": "string"}, "key": {"type": "string"}}})
);
json_schema!(
    /// What identity rules would change on the latest events.
    RulesPreviewAnswer,
    json!({"type": "object", "required": ["events", "from", "to", "now", "with", "changed", "examples"], "properties": {
        "events": {"type": "integer"}, "from": {"type": ["string", "null"], "format": "date-time"}, "to": {"type": ["string", "null"], "format": "date-time"},
        "now": shape_schema(), "with": shape_schema(), "changed": {"type": "integer"},
        "examples": {"type": "array", "items": {"type": "array", "items": {"type": "string"}}}}})
);
json_schema!(
    /// Counts per day over a range (see `GET /dashboard`).
    DashboardAnswer,
    json!({"type": "object", "required": ["from", "to", "days", "events", "new_profiles", "merges", "entered", "exited", "sent", "converted", "journeys"], "properties": {
        "from": {"type": "string", "format": "date"}, "to": {"type": "string", "format": "date"},
        "days": {"type": "array", "items": {"type": "string", "format": "date"}},
        "events": {"type": "array", "items": series_schema()},
        "new_profiles": series_schema(), "merges": series_schema(),
        "entered": {"type": "array", "items": series_schema()},
        "exited": {"type": "array", "items": series_schema()},
        "sent": {"type": "array", "items": series_schema()},
        "converted": {"type": "array", "items": series_schema()},
        "journeys": {"type": "array", "items": {"type": "object", "required": ["journey", "sent", "converted", "converted_holdout"], "properties": {
            "journey": {"type": "string"}, "sent": {"type": "integer"}, "converted": {"type": "integer"}, "converted_holdout": {"type": "integer"}}}}}})
);
json_schema!(
    /// The commerce KPIs of a range (see `GET /measure/kpis`).
    KpiAnswer,
    json!({"type": "object", "required": ["from", "to", "by", "rows", "total", "events_read", "events_unapplied"], "properties": {
        "from": {"type": "string", "format": "date"}, "to": {"type": "string", "format": "date"},
        "by": {"type": "string", "enum": ["total", "channel", "side", "shop", "campaign", "day", "week", "month"]},
        "rows": {"type": "array", "items": kpi_row_schema()},
        "total": kpi_row_schema(),
        "events_read": {"type": "integer"}, "events_unapplied": {"type": "integer"}}})
);
json_schema!(
    /// Every attribution model's credits (see `GET /measure/attribution`).
    AttributionAnswer,
    json!({"type": "object", "required": ["from", "to", "by", "lookback_days", "order", "nulls", "converting_paths", "null_paths", "conversions", "value", "markov_states", "markov_conversion_probability", "rows"], "properties": {
        "from": {"type": "string", "format": "date"}, "to": {"type": "string", "format": "date"},
        "by": {"type": "string", "enum": ["channel", "campaign"]},
        "lookback_days": {"type": "integer"}, "order": {"type": "integer"}, "nulls": {"type": "boolean"},
        "converting_paths": {"type": "integer"}, "null_paths": {"type": "integer"},
        "conversions": {"type": "number"}, "value": {"type": "number"},
        "markov_states": {"type": "integer"}, "markov_conversion_probability": {"type": "number"},
        "rows": {"type": "array", "items": {"type": "object", "required": ["key", "models", "markov_removal_effect"], "properties": {
            "key": {"type": "string"},
            "models": {"type": "object", "additionalProperties": {"type": "object", "required": ["conversions", "value"], "properties": {"conversions": {"type": "number"}, "value": {"type": "number"}}}},
            "markov_removal_effect": {"type": "number"}}}}}})
);
json_schema!(
    /// Retention and revenue by acquisition cohort (see `GET /measure/cohorts`).
    CohortAnswer,
    json!({"type": "object", "required": ["from", "to", "period", "by_channel", "cohorts"], "properties": {
        "from": {"type": "string", "format": "date"}, "to": {"type": "string", "format": "date"},
        "period": {"type": "string", "enum": ["week", "month"]}, "by_channel": {"type": "boolean"},
        "cohorts": {"type": "array", "items": {"type": "object", "required": ["cohort", "key", "customers", "active", "revenue"], "properties": {
            "cohort": {"type": "string"}, "key": {"type": "string"}, "customers": {"type": "integer"},
            "active": {"type": "array", "items": {"type": "integer"}},
            "revenue": {"type": "array", "items": {"type": "number"}}}}}}})
);
json_schema!(
    /// The reading of the event log the measurement requests share (see `GET /measure/status`).
    MeasureStatusAnswer,
    json!({"type": "object", "required": ["reading", "snapshot"], "properties": {
        "reading": {"type": ["object", "null"], "required": ["phase", "done", "total", "started_at", "percent"], "properties": {
            "phase": {"type": "string", "enum": ["owners", "events"]}, "done": {"type": "integer"}, "total": {"type": "integer"},
            "started_at": {"type": "string", "format": "date-time"}, "percent": {"type": "number"}}},
        "snapshot": {"type": ["object", "null"], "required": ["read_at", "events", "processed_seq"], "properties": {
            "read_at": {"type": "string", "format": "date-time"}, "events": {"type": "integer"}, "processed_seq": {"type": "integer"}}}}})
);
json_schema!(
    /// A journey's uplift report (see `GET /measure/uplift`).
    UpliftAnswer,
    json!({"type": "object", "required": ["journey", "window_days", "groups", "comparisons", "events_read"], "properties": {
        "journey": {"type": "string"}, "window_days": {"type": "integer"}, "events_read": {"type": "integer"},
        "groups": {"type": "array", "items": {"type": "object", "required": ["group", "entered", "converted", "conversion_rate", "buyers", "orders", "revenue", "revenue_per_entrant"], "properties": {
            "group": {"type": "string"}, "variant": {"type": "string"}, "entered": {"type": "integer"}, "converted": {"type": "integer"},
            "conversion_rate": {"type": ["number", "null"]}, "buyers": {"type": "integer"}, "orders": {"type": "integer"},
            "revenue": {"type": "number"}, "revenue_per_entrant": {"type": ["number", "null"]}}}},
        "comparisons": {"type": "array", "items": {"type": "object", "required": ["group", "against", "conversions", "revenue"], "properties": {
            "group": {"type": "string"}, "against": {"type": "string"},
            "conversions": {"type": ["object", "null"], "required": ["control_rate", "treatment_rate", "uplift", "relative_uplift", "incremental_conversions", "z", "p_value", "ci95", "underpowered"], "properties": {
                "control_rate": {"type": "number"}, "treatment_rate": {"type": "number"}, "uplift": {"type": "number"},
                "relative_uplift": {"type": ["number", "null"]}, "incremental_conversions": {"type": "number"}, "z": {"type": "number"},
                "p_value": {"type": "number"}, "ci95": {"type": "array", "items": {"type": "number"}}, "underpowered": {"type": "boolean"}}},
            "revenue": {"type": ["object", "null"], "required": ["mean_a", "mean_b", "difference", "incremental", "ci_low", "ci_high"], "properties": {
                "mean_a": {"type": "number"}, "mean_b": {"type": "number"}, "difference": {"type": "number"},
                "incremental": {"type": "number"}, "ci_low": {"type": "number"}, "ci_high": {"type": "number"}}}}}}}})
);
json_schema!(
    /// Customer lifetime value (see `GET /measure/clv`).
    ClvAnswer,
    json!({"type": "object", "required": ["end", "horizon_weeks", "months", "discount", "customers", "repeat_customers", "bg_nbd", "gamma_gamma", "likely_to_lapse", "top_decile_clv", "expected_purchases", "total_clv", "top"], "properties": {
        "end": {"type": "string", "format": "date"}, "horizon_weeks": {"type": "number"}, "months": {"type": "integer"}, "discount": {"type": "number"},
        "customers": {"type": "integer"}, "repeat_customers": {"type": "integer"},
        "bg_nbd": {"type": "object", "additionalProperties": {"type": "number"}},
        "gamma_gamma": {"type": ["object", "null"], "additionalProperties": {"type": "number"}},
        "likely_to_lapse": {"type": "integer"}, "top_decile_clv": {"type": ["number", "null"]},
        "expected_purchases": {"type": "number"}, "total_clv": {"type": ["number", "null"]},
        "top": {"type": "array", "items": {"type": "object", "required": ["profile_id", "frequency", "recency", "T", "monetary_value", "p_alive", "expected_purchases", "expected_spend", "clv"], "properties": {
            "profile_id": {"type": "string"}, "frequency": {"type": "number"}, "recency": {"type": "number"}, "T": {"type": "number"},
            "monetary_value": {"type": "number"}, "p_alive": {"type": "number"}, "expected_purchases": {"type": "number"},
            "expected_spend": {"type": ["number", "null"]}, "clv": {"type": ["number", "null"]}}}}}})
);
json_schema!(
    /// Advertising spend of a range (see `GET /measure/spend`).
    SpendAnswer,
    json!({"type": "object", "required": ["from", "to", "rows"], "properties": {
        "from": {"type": "string", "format": "date"}, "to": {"type": "string", "format": "date"},
        "rows": {"type": "array", "items": {"type": "object", "required": ["date", "channel", "campaign", "amount"], "properties": {
            "date": {"type": "string", "format": "date"}, "channel": {"type": "string"}, "campaign": {"type": "string"}, "amount": {"type": "number"}}}}}})
);
json_schema!(
    /// An ordered funnel (see `GET /measure/funnel`).
    FunnelAnswer,
    json!({"type": "object", "required": ["from", "to", "steps", "window_days", "by", "groups", "total"], "properties": {
        "from": {"type": "string", "format": "date"}, "to": {"type": "string", "format": "date"},
        "steps": {"type": "array", "items": {"type": "string"}}, "window_days": {"type": "integer"},
        "by": {"type": "string", "enum": ["total", "channel", "first_touch", "shop"]},
        "groups": {"type": "array", "items": funnel_group_schema()}, "total": funnel_group_schema()}})
);
json_schema!(
    /// A page of quarantined events.
    QuarantinePage,
    json!({"type": "object", "required": ["events", "next_cursor"], "properties": {
        "events": {"type": "array", "items": quarantine_schema()}, "next_cursor": {"type": ["string", "null"]}}})
);
json_schema!(
    /// One quarantined event.
    QuarantineAnswer,
    quarantine_schema()
);
json_schema!(
    /// A workspace.
    WorkspaceAnswer,
    json!({"type": "object", "required": ["id", "name", "created_at", "identity_rules"], "properties": {
        "id": {"type": "string"}, "name": {"type": "string"}, "created_at": iso(), "identity_rules": {"type": "object"}}})
);

fn trait_schema() -> Value {
    json!({"type": "object", "required": ["id", "version", "created_at", "updated_at", "definition", "computation"], "properties": {
        "id": {"type": "string"}, "version": {"type": "integer"}, "created_at": iso(), "updated_at": iso(),
        "definition": {"type": "object"}, "computation": {"type": "object"}}})
}

json_schema!(
    /// The computed traits.
    TraitList,
    json!({"type": "object", "required": ["computed_traits"], "properties": {"computed_traits": {"type": "array", "items": trait_schema()}}})
);
json_schema!(
    /// A computed trait with its computation.
    TraitAnswer,
    trait_schema()
);
json_schema!(
    /// Counts, lag, buckets and how each processor is doing.
    StatusAnswer,
    json!({"type": "object", "required": ["events", "profiles", "processors", "unify_lag_events"], "properties": {
        "events": {"type": "integer"}, "profiles": {"type": "integer"}, "unify_lag_events": {"type": "integer"},
        "buckets_held": {"type": ["integer", "null"]}, "processors": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["state", "failures", "set_aside", "items"], "properties": {
                "state": {"type": "string", "enum": ["ok", "failing", "lagging", "standby"]},
                "failures": {"type": "integer"}, "set_aside": {"type": "integer"},
                "items": {"type": "integer"}, "lag_events": {"type": ["integer", "null"]}}}}}})
);
json_schema!(
    /// A profile's traits with the event that set each.
    ProfileTraits,
    json!({"type": "object", "required": ["profile_id", "traits", "sources"], "properties": {
        "profile_id": {"type": "string"}, "traits": {"type": "object"}, "sources": {"type": "object"}}})
);
json_schema!(
    /// A profile's identifiers with the event that linked each.
    ProfileIdentifiers,
    json!({"type": "object", "required": ["profile_id", "identifiers"], "properties": {
        "profile_id": {"type": "string"},
        "identifiers": {"type": "array", "items": {"type": "object", "required": ["type", "value", "linked_by", "linked_at"], "properties": {
            "type": {"type": "string"}, "value": {"type": "string"}, "linked_by": {"type": "string"}, "linked_at": iso()}}}}})
);
json_schema!(
    /// The answer to a consent question.
    ConsentAnswer,
    json!({"type": "object", "required": ["profile_id", "purpose", "state", "granted", "unknown_counts_as"], "properties": {
        "profile_id": {"type": "string"}, "purpose": {"type": "string"}, "channel": {"type": ["string", "null"]},
        "state": {"type": "string", "enum": ["granted", "withdrawn", "unknown"]}, "granted": {"type": "boolean"},
        "answered_by": {"type": ["object", "null"]}, "unknown_counts_as": {"type": "string", "enum": ["granted", "withdrawn"]}}})
);
json_schema!(
    /// A page of a profile's events, newest first.
    EventsPage,
    json!({"type": "object", "required": ["profile_id", "events", "next_cursor"], "properties": {
        "profile_id": {"type": "string"},
        "events": {"type": "array", "items": {"type": "object", "required": ["seq", "type"], "properties": {"seq": {"type": "integer"}, "type": {"type": "string"}}}},
        "next_cursor": {"type": ["string", "null"]}}})
);
json_schema!(
    /// A profile's audiences and their history.
    ProfileAudiences,
    json!({"type": "object", "required": ["profile_id", "audiences", "history"], "properties": {
        "profile_id": {"type": "string"}, "audiences": {"type": "array"}, "history": {"type": "array"}}})
);
json_schema!(
    /// A profile's computed trait values.
    ProfileTraitValues,
    json!({"type": "object", "required": ["profile_id", "computed_traits"], "properties": {
        "profile_id": {"type": "string"}, "computed_traits": {"type": "object"}}})
);
json_schema!(
    /// A profile's merge history.
    MergeList,
    json!({"type": "object", "required": ["profile_id", "merges"], "properties": {
        "profile_id": {"type": "string"}, "merges": {"type": "array", "items": {"type": "object"}}}})
);
json_schema!(
    /// The shipped webhook mappings.
    MappingList,
    json!({"type": "object", "required": ["mappings"], "properties": {"mappings": {"type": "array", "items": {"type": "object",
        "required": ["name", "platform", "description", "mapping"], "properties": {
            "name": {"type": "string"}, "platform": {"type": "string"}, "description": {"type": "string"},
            "signature": {"type": ["string", "null"]}, "mapping": {"type": "object"}}}}}})
);
json_schema!(
    /// The tracking plans' violations report.
    ViolationReport,
    json!({"type": "object", "required": ["violations"], "properties": {"violations": {"type": "array", "items": {"type": "object",
        "required": ["source_id", "event", "field", "kind", "count", "first_seen", "last_seen", "example"], "properties": {
            "source_id": {"type": "string"}, "event": {"type": "string"}, "field": {"type": "string"}, "kind": {"type": "string"},
            "count": {"type": "integer"}, "first_seen": iso(), "last_seen": iso(), "example": {"type": "string"}}}}}})
);

fn audience_schema() -> Value {
    json!({"type": "object", "required": ["id", "name", "version", "created_at", "updated_at", "condition", "computation", "size"], "properties": {
        "id": {"type": "string"}, "name": {"type": "string"}, "description": {"type": ["string", "null"]},
        "definition": {"type": ["string", "null"]}, "condition": {"type": "object"}, "computation": {"type": "object"},
        "size": {"type": "integer"}, "version": {"type": "integer"}, "created_at": iso(), "updated_at": iso()}})
}

fn destination_schema() -> Value {
    json!({"type": "object", "required": ["id", "name", "url", "audiences", "identifiers", "enabled", "version", "position", "created_at", "updated_at"], "properties": {
        "id": {"type": "string"}, "name": {"type": "string"}, "url": {"type": "string"},
        "audiences": {"type": "array", "items": {"type": "string"}}, "identifiers": {"type": "string"},
        "region": {"type": ["string", "null"]}, "enabled": {"type": "boolean"}, "secret": {"type": ["string", "null"]},
        "max_in_flight": {"type": "integer"}, "max_per_second": {"type": ["number", "null"]},
        "purpose": {"type": "string"}, "channel": {"type": ["string", "null"]},
        "version": {"type": "integer"}, "position": {"type": "integer"}, "created_at": iso(), "updated_at": iso(),
        "delivery": {"type": ["object", "null"], "required": ["state", "version", "delivered", "pending", "dead", "failures"], "properties": {
            "state": {"type": "string", "enum": ["idle", "delivering", "retrying", "paused", "unreadable", "refused"]},
            "version": {"type": "integer"}, "delivered": {"type": "integer"}, "pending": {"type": "integer"},
            "dead": {"type": "integer"}, "failures": {"type": "integer"}, "last_error": {"type": ["string", "null"]},
            "last_success_at": {"oneOf": [iso(), {"type": "null"}]}, "next_attempt_at": {"oneOf": [iso(), {"type": "null"}]}}}}})
}

fn delivery_schema() -> Value {
    json!({"type": "object", "required": ["id", "webhook_id", "state", "changes", "attempts", "created_at"], "properties": {
        "id": {"type": "integer"}, "webhook_id": {"type": "string"},
        "state": {"type": "string", "enum": ["pending", "leased", "done", "dead"]},
        "changes": {"type": "integer"}, "attempts": {"type": "integer"}, "last_error": {"type": ["string", "null"]},
        "created_at": iso(), "next_attempt_at": {"oneOf": [iso(), {"type": "null"}]},
        "settled_at": {"oneOf": [iso(), {"type": "null"}]}}})
}

json_schema!(
    /// A page of a destination's delivery log.
    DeliveryPage,
    json!({"type": "object", "required": ["destination", "deliveries", "next_before"], "properties": {
        "destination": {"type": "string"}, "deliveries": {"type": "array", "items": delivery_schema()},
        "next_before": {"type": ["integer", "null"]}}})
);
json_schema!(
    /// One request of the delivery log, its body and its attempts.
    DeliveryAnswer,
    {
        let mut d = delivery_schema();
        d["required"].as_array_mut().into_iter().for_each(|r| {
            r.push(json!("body"));
            r.push(json!("attempt_log"));
        });
        d["properties"]["body"] = json!({});
        d["properties"]["attempt_log"] = json!({"type": "array", "items": {"type": "object", "required": ["attempt", "at", "latency_ms", "ok", "detail"], "properties": {
            "attempt": {"type": "integer"}, "at": iso(), "latency_ms": {"type": "integer"},
            "status": {"type": ["integer", "null"]}, "ok": {"type": "boolean"}, "detail": {"type": "string"}}}});
        d
    }
);
json_schema!(
    /// Where a replay starts.
    ReplayBody,
    object(&["from"], json!({"from": {"type": "integer", "description": "the first request of the delivery log to send again"}}))
);
json_schema!(
    /// What a replay sent again.
    Replayed,
    json!({"type": "object", "required": ["destination", "from", "requeued"], "properties": {
        "destination": {"type": "string"}, "from": {"type": "integer"}, "requeued": {"type": "integer"}}})
);

json_schema!(
    /// The audiences.
    AudienceList,
    json!({"type": "object", "required": ["audiences"], "properties": {"audiences": {"type": "array", "items": audience_schema()}}})
);
json_schema!(
    /// An audience with its size and computation.
    AudienceAnswer,
    audience_schema()
);
json_schema!(
    /// A page of an audience's members.
    MembersPage,
    json!({"type": "object", "required": ["audience_id", "members", "next_cursor", "size"], "properties": {
        "audience_id": {"type": "string"}, "size": {"type": "integer"}, "next_cursor": {"type": ["string", "null"]},
        "members": {"type": "array", "items": {"type": "object", "required": ["profile_id", "since"], "properties": {
            "profile_id": {"type": "string"}, "since": iso()}}}}})
);
json_schema!(
    /// Why a profile is or is not in an audience.
    Explanation,
    json!({"type": "object", "required": ["audience_id", "profile_id", "matches", "member", "at", "explanation"], "properties": {
        "audience_id": {"type": "string"}, "profile_id": {"type": "string"}, "matches": {"type": "boolean"},
        "member": {"type": "boolean"}, "at": iso(), "explanation": {"type": "object"}, "next_change": {"type": ["string", "null"]}}})
);
json_schema!(
    /// The destinations with their delivery.
    DestinationList,
    json!({"type": "object", "required": ["destinations"], "properties": {"destinations": {"type": "array", "items": destination_schema()}}})
);
json_schema!(
    /// A destination and its delivery.
    DestinationAnswer,
    destination_schema()
);

fn raw_schemas() -> Vec<(&'static str, Value)> {
    vec![
        ("SegmentEvent", SegmentEvent::json()),
        ("SegmentBatch", SegmentBatch::json()),
        ("AnyJson", AnyJson::json()),
        ("Answer", Answer::json()),
        ("Committed", Committed::json()),
        ("WebhookCommitted", WebhookCommitted::json()),
        ("AudienceBody", AudienceBody::json()),
        ("TraitBody", TraitBody::json()),
        ("DestinationBody", DestinationBody::json()),
        ("NewSourceBody", NewSourceBody::json()),
        ("SourceChangeBody", SourceChangeBody::json()),
        ("NewTokenBody", NewTokenBody::json()),
        ("RotationBody", RotationBody::json()),
        ("PreviewBody", PreviewBody::json()),
        ("WorkspaceBody", WorkspaceBody::json()),
        ("IdentityRulesBody", IdentityRulesBody::json()),
        ("UnmergeBody", UnmergeBody::json()),
        ("SourceList", SourceList::json()),
        ("SourceAnswer", SourceAnswer::json()),
        ("SourceCreated", SourceCreated::json()),
        ("KeyRotated", KeyRotated::json()),
        ("TokenList", TokenList::json()),
        ("TokenCreated", TokenCreated::json()),
        ("TokenRotated", TokenRotated::json()),
        ("ProfileAnswer", ProfileAnswer::json()),
        ("DashboardAnswer", DashboardAnswer::json()),
        ("KpiAnswer", KpiAnswer::json()),
        ("AttributionAnswer", AttributionAnswer::json()),
        ("FunnelAnswer", FunnelAnswer::json()),
        ("CohortAnswer", CohortAnswer::json()),
        ("ClvAnswer", ClvAnswer::json()),
        ("UpliftAnswer", UpliftAnswer::json()),
        ("MeasureStatusAnswer", MeasureStatusAnswer::json()),
        ("SpendAnswer", SpendAnswer::json()),
        ("ChannelTestBody", ChannelTestBody::json()),
        ("ChannelsAnswer", ChannelsAnswer::json()),
        ("TestSentAnswer", TestSentAnswer::json()),
        ("RulesPreviewAnswer", RulesPreviewAnswer::json()),
        ("QuarantinePage", QuarantinePage::json()),
        ("QuarantineAnswer", QuarantineAnswer::json()),
        ("WorkspaceAnswer", WorkspaceAnswer::json()),
        ("TraitList", TraitList::json()),
        ("TraitAnswer", TraitAnswer::json()),
        ("StatusAnswer", StatusAnswer::json()),
        ("ProfileTraits", ProfileTraits::json()),
        ("ProfileIdentifiers", ProfileIdentifiers::json()),
        ("ConsentAnswer", ConsentAnswer::json()),
        ("EventsPage", EventsPage::json()),
        ("ProfileAudiences", ProfileAudiences::json()),
        ("ProfileTraitValues", ProfileTraitValues::json()),
        ("MergeList", MergeList::json()),
        ("MappingList", MappingList::json()),
        ("ViolationReport", ViolationReport::json()),
        ("AudienceList", AudienceList::json()),
        ("AudienceAnswer", AudienceAnswer::json()),
        ("MembersPage", MembersPage::json()),
        ("Explanation", Explanation::json()),
        ("DestinationList", DestinationList::json()),
        ("DestinationAnswer", DestinationAnswer::json()),
        ("DeliveryPage", DeliveryPage::json()),
        ("DeliveryAnswer", DeliveryAnswer::json()),
        ("ReplayBody", ReplayBody::json()),
        ("Replayed", Replayed::json()),
    ]
}

/// The finished document: title, version and security schemes around the generated paths.
pub fn finish(mut api: OpenApi) -> OpenApi {
    api.info.title = "Parcours".into();
    api.info.version = env!("CARGO_PKG_VERSION").into();
    api.info.description =
        Some("Segment-compatible tracking API and admin API of Parcours.".into());
    api.info.contact = None;
    api.info.license = None;
    let components = api.components.get_or_insert_with(Default::default);
    // Referenced by every operation's refusals.
    components.schemas.insert(
        "ApiErrorBody".into(),
        <ApiErrorBody as utoipa::PartialSchema>::schema(),
    );
    components.add_security_scheme(
        "writeKey",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Basic)
                .description(Some(
                    "the source write key as the user name, empty password",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    api
}

static DOCUMENT: OnceLock<Value> = OnceLock::new();

/// Keeps the document the router was built with, each JSON Schema component in place.
pub(crate) fn publish(api: OpenApi) {
    let mut doc = serde_json::to_value(finish(api)).expect("the document serializes");
    if let Some(schemas) = doc["components"]["schemas"].as_object_mut() {
        for (name, schema) in raw_schemas() {
            if let Some(slot) = schemas.get_mut(name) {
                *slot = schema;
            }
        }
    }
    let _ = DOCUMENT.set(doc);
}

/// The document as JSON.
pub fn spec() -> Value {
    if DOCUMENT.get().is_none() {
        let (_, api) = crate::routes_and_document();
        publish(api);
    }
    DOCUMENT.get().cloned().unwrap_or(Value::Null)
}

/// `GET /api/openapi.json`.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations",
    responses((status = 200, description = "this document", body = Answer)))]
pub async fn document() -> Json<Value> {
    Json(spec())
}

#[cfg(test)]
mod tests {
    use super::spec;

    #[test]
    fn the_document_is_generated_with_every_route() {
        let doc = spec();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["title"], "Parcours");
        let paths = doc["paths"].as_object().unwrap();
        for p in [
            "/v1/batch",
            "/v1/{kind}",
            "/v1/webhooks/{key}",
            "/sourceConfig",
            "/api/v1/profiles/{id}",
            "/api/v1/sources/{id}/rotate",
            "/api/v1/audiences/{id}/export",
            "/healthz",
            "/api/openapi.json",
        ] {
            assert!(paths.contains_key(p), "{p} is missing");
        }
        // Creations answer 201, deletions of sources and tokens 204: what the handlers do.
        assert!(doc["paths"]["/api/v1/sources"]["post"]["responses"]["201"].is_object());
        assert!(doc["paths"]["/api/v1/tokens/{id}"]["delete"]["responses"]["204"].is_object());
        assert!(
            doc["paths"]["/api/v1/sources"]["post"]["requestBody"]["content"]["application/json"]
                ["schema"]
                .is_object()
        );
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for s in [
            "ApiErrorBody",
            "SegmentBatch",
            "NewSourceBody",
            "AudienceBody",
        ] {
            assert!(schemas.contains_key(s), "{s} is missing");
        }
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
        let operations: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
        assert!(operations >= 60, "{operations}");
    }
}
