//! The OpenAPI 3.1 document of the admin and tracking APIs, served at `/api/openapi.json`.

use axum::Json;
use serde_json::{json, Value};

/// Every rejection, whatever its status, is the error envelope.
fn error() -> Value {
    json!({"$ref": "#/components/responses/Error"})
}

fn op(summary: &str, tag: &str, params: Value, admin: bool) -> Value {
    let mut o = json!({
        "summary": summary,
        "tags": [tag],
        "parameters": params,
        "responses": {
            "200": {"description": "success", "content": {"application/json": {"schema": {"type": "object"}}}},
            "400": error(),
            "401": error(),
            "404": error(),
            "default": error()
        }
    });
    if admin {
        o["responses"]["403"] = error();
    }
    o
}

/// An operation that creates something: 201 with it.
fn create(summary: &str, tag: &str, body: Value) -> Value {
    let mut o = op(summary, tag, json!([]), true);
    o["responses"]["201"] = json!({"description": "created", "content": {"application/json": {"schema": {"type": "object"}}}});
    o["responses"]
        .as_object_mut()
        .expect("responses")
        .remove("200");
    o["responses"]["409"] = error();
    with_body(o, body)
}

/// An operation that deletes or revokes: 204 with no body.
fn removal(summary: &str, tag: &str, params: Value) -> Value {
    let mut o = op(summary, tag, params, true);
    let responses = o["responses"].as_object_mut().expect("responses");
    responses.remove("200");
    responses.insert("204".into(), json!({"description": "done"}));
    o
}

/// An operation with an optional JSON request body.
fn with_optional_body(mut o: Value, schema: Value) -> Value {
    o["requestBody"] =
        json!({"required": false, "content": {"application/json": {"schema": schema}}});
    o
}

/// An operation with a JSON request body.
fn with_body(mut o: Value, schema: Value) -> Value {
    o["requestBody"] =
        json!({"required": true, "content": {"application/json": {"schema": schema}}});
    o
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

fn rotation_schema() -> Value {
    json!({"type": "object", "additionalProperties": false, "properties": {
        "overlap_hours": {"type": "integer", "minimum": 0, "maximum": 2160}}})
}

fn path_param(name: &str, kind: &str) -> Value {
    let schema = if kind == "integer" {
        json!({"type": "integer", "format": "int64", "minimum": 1})
    } else {
        json!({"type": kind, "minLength": 1})
    };
    json!({"name": name, "in": "path", "required": true, "schema": schema})
}

fn query(name: &str, kind: &str, description: &str) -> Value {
    let schema = match name {
        "limit" => json!({"type": "integer", "minimum": 1, "maximum": 1000}),
        _ => json!({"type": kind}),
    };
    json!({"name": name, "in": "query", "required": false, "schema": schema, "description": description})
}

fn required_query(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": true, "schema": {"type": "string", "minLength": 1}, "description": description})
}

fn object(required: &[&str], properties: Value) -> Value {
    json!({"type": "object", "required": required, "properties": properties})
}

fn audience_body() -> Value {
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
}

fn trait_body() -> Value {
    object(
        &["id", "kind", "event"],
        json!({
            "id": {"type": ["string", "null"], "pattern": "^[a-z][a-z0-9_-]{0,63}$"},
            "kind": {"type": "string", "enum": ["count", "sum", "avg", "min", "max", "first", "last", "most_frequent", "unique_list", "unique_count", "lifecycle", "rfm"]},
            "event": {"type": "string", "minLength": 1},
            "property": {"type": ["string", "null"]},
            "include_anonymous": {"type": "boolean", "description": "rfm and lifecycle: score anonymous profiles too (default: known customers only)"}
        }),
    )
}

fn destination_body() -> Value {
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
            "enabled": {"type": "boolean"}
        }),
    )
}

fn tracking(kind: &str) -> Value {
    json!({
        "post": {
            "summary": format!("Segment {kind} call"),
            "tags": ["tracking"],
            "security": [{"writeKey": []}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": if kind == "batch" {"#/components/schemas/SegmentBatch"} else {"#/components/schemas/SegmentEvent"}}}}},
            "responses": {
                "200": {"description": "committed", "content": {"application/json": {"schema": {"type": "object", "properties": {"success": {"type": "boolean"}}}}}},
                "400": error(),
                "401": error(),
                "403": error(),
                "413": error(),
                "415": error(),
                "429": error(),
                "default": error()
            }
        }
    })
}

/// The settings documents browser SDKs fetch (public: the write key is in the URL or Basic).
fn sdk_settings(summary: &str, params: Value) -> Value {
    json!({
        "get": {
            "summary": summary,
            "tags": ["tracking"],
            "parameters": params,
            "responses": {
                "200": {"description": "the document", "content": {"application/json": {"schema": {"type": "object"}}}},
                "401": error(),
                "403": error(),
                "404": error(),
                "default": error()
            }
        }
    })
}

/// The routes this document describes (checked against the router by a test).
pub const PATHS: &[&str] = &[
    "/v1/track",
    "/v1/identify",
    "/v1/page",
    "/v1/screen",
    "/v1/group",
    "/v1/alias",
    "/v1/batch",
    "/v1/webhooks/{key}",
    "/v1/projects/{key}/settings",
    "/sourceConfig",
    "/api/v1/profiles/lookup",
    "/api/v1/profiles/{id}",
    "/api/v1/profiles/{id}/traits",
    "/api/v1/profiles/{id}/identifiers",
    "/api/v1/profiles/{id}/merges",
    "/api/v1/profiles/{id}/consent",
    "/api/v1/profiles/{id}/events",
    "/api/v1/profiles/{id}/unmerge",
    "/api/v1/merges/{id}",
    "/api/v1/merges/{id}/undo",
    "/api/v1/quarantine",
    "/api/v1/quarantine/{id}",
    "/api/v1/quarantine/{id}/replay",
    "/api/v1/quarantine/{id}/discard",
    "/api/v1/workspace",
    "/api/v1/workspace/identity-rules",
    "/api/v1/workspaces",
    "/api/v1/sources",
    "/api/v1/sources/{id}",
    "/api/v1/sources/{id}/rotate",
    "/api/v1/sources/{id}/live",
    "/api/v1/tokens",
    "/api/v1/tokens/{id}",
    "/api/v1/tokens/{id}/rotate",
    "/api/v1/webhooks/preview",
    "/api/v1/webhooks/mappings",
    "/api/v1/tracking-plans/violations",
    "/api/v1/status",
    "/api/v1/audiences",
    "/api/v1/audiences/{id}",
    "/api/v1/audiences/{id}/members",
    "/api/v1/audiences/{id}/export",
    "/api/v1/audiences/{id}/explain/{profile}",
    "/api/v1/computed-traits",
    "/api/v1/computed-traits/{id}",
    "/api/v1/profiles/{id}/audiences",
    "/api/v1/profiles/{id}/computed-traits",
    "/api/v1/destinations",
    "/api/v1/destinations/{id}",
    "/healthz",
    "/readyz",
    "/metrics",
];

pub async fn document() -> Json<Value> {
    Json(spec())
}

pub fn spec() -> Value {
    let id = || json!([path_param("id", "string")]);
    let num = || json!([path_param("id", "integer")]);
    let page = || {
        json!([
            query("cursor", "string", "from next_cursor of the previous page"),
            query("limit", "integer", "1 to 1000, default 50")
        ])
    };
    let mut paths = serde_json::Map::new();
    for kind in [
        "track", "identify", "page", "screen", "group", "alias", "batch",
    ] {
        paths.insert(format!("/v1/{kind}"), tracking(kind));
    }
    paths.insert(
        "/v1/webhooks/{key}".into(),
        json!({"post": {
            "summary": "A platform's webhook (any JSON), turned into events by the source's mapping; the write key is in the path",
            "tags": ["tracking"],
            "parameters": [path_param("key", "string")],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"description": "the platform's JSON"}}}},
            "responses": {
                "200": {"description": "mapped and committed", "content": {"application/json": {"schema": {"type": "object", "properties": {
                    "success": {"type": "boolean"}, "events": {"type": "integer"}, "accepted": {"type": "integer"}, "quarantined": {"type": "integer"}}}}}},
                "400": error(), "401": error(), "413": error(), "415": error(), "422": error(), "429": error(), "default": error()
            }
        }}),
    );
    paths.insert(
        "/v1/projects/{key}/settings".into(),
        sdk_settings(
            "The settings document of Segment's analytics-next (its cdnURL pointed at Parcours)",
            json!([path_param("key", "string")]),
        ),
    );
    paths.insert(
        "/sourceConfig".into(),
        sdk_settings(
            "The source configuration of RudderStack's analytics-js v3 (its configUrl pointed at Parcours); the write key as HTTP Basic or ?writeKey=",
            json!([query("writeKey", "string", "the source's write key, if not sent as HTTP Basic")]),
        ),
    );
    let admin = [
        (
            "/api/v1/profiles/lookup",
            "get",
            op(
                "Profile by identifier",
                "profiles",
                json!([
                    required_query("type", "email, phone, user_id, anonymous_id, device_id, …"),
                    required_query("value", "normalised like ingested values")
                ]),
                false,
            ),
        ),
        (
            "/api/v1/profiles/{id}",
            "get",
            op(
                "Profile by id (merged ids resolve to the profile that holds them)",
                "profiles",
                id(),
                false,
            ),
        ),
        (
            "/api/v1/profiles/{id}/traits",
            "get",
            op(
                "Traits with the event that set each",
                "profiles",
                id(),
                false,
            ),
        ),
        (
            "/api/v1/profiles/{id}/identifiers",
            "get",
            op(
                "Identifiers with the event that linked each",
                "profiles",
                id(),
                false,
            ),
        ),
        (
            "/api/v1/profiles/{id}/merges",
            "get",
            op("Merge history", "identity", id(), false),
        ),
        (
            "/api/v1/profiles/{id}/consent",
            "get",
            op(
                "Answer a consent question: granted, withdrawn or unknown, the record that answered, and whether a send may go",
                "profiles",
                json!([
                    path_param("id", "string"),
                    required_query("purpose", "e.g. marketing"),
                    query("channel", "string", "e.g. email; falls back to the purpose")
                ]),
                false,
            ),
        ),
        (
            "/api/v1/profiles/{id}/events",
            "get",
            op(
                "Cross-channel event timeline, newest first",
                "profiles",
                json!([
                    path_param("id", "string"),
                    query("cursor", "string", "from next_cursor"),
                    query("limit", "integer", "1 to 1000")
                ]),
                false,
            ),
        ),
        (
            "/api/v1/profiles/{id}/unmerge",
            "post",
            with_body(
                op(
                    "Undo one merge of this profile: body {\"merge_id\": n}",
                    "identity",
                    id(),
                    true,
                ),
                object(
                    &["merge_id"],
                    json!({"merge_id": {"type": "integer", "format": "int64", "minimum": 1}}),
                ),
            ),
        ),
        (
            "/api/v1/merges/{id}",
            "get",
            op("One merge with its cause", "identity", num(), false),
        ),
        (
            "/api/v1/merges/{id}/undo",
            "post",
            op(
                "Undo a merge and re-derive both profiles from their events",
                "identity",
                num(),
                true,
            ),
        ),
        (
            "/api/v1/quarantine",
            "get",
            op(
                "Quarantined events",
                "quarantine",
                {
                    let mut p = page();
                    p.as_array_mut().unwrap().push(json!({
                        "name": "status", "in": "query", "required": false,
                        "schema": {"type": "string", "enum": ["pending", "replayed", "discarded", "all"]},
                        "description": "pending, replayed, discarded, or all (default)"
                    }));
                    p
                },
                false,
            ),
        ),
        (
            "/api/v1/quarantine/{id}",
            "get",
            op("One quarantined event", "quarantine", num(), false),
        ),
        (
            "/api/v1/quarantine/{id}/replay",
            "post",
            op(
                "Replay it, optionally with a corrected event as the body",
                "quarantine",
                num(),
                true,
            ),
        ),
        (
            "/api/v1/quarantine/{id}/discard",
            "post",
            op("Discard it", "quarantine", num(), true),
        ),
        (
            "/api/v1/workspace",
            "get",
            op("The token's workspace", "workspaces", json!([]), false),
        ),
        (
            "/api/v1/workspace/identity-rules",
            "put",
            with_body(
                op("Replace the identity rules", "workspaces", json!([]), true),
                json!({"type": "object"}),
            ),
        ),
        (
            "/api/v1/workspaces",
            "post",
            create(
                "Create a workspace (instance admin token)",
                "workspaces",
                object(&["name"], json!({"name": {"type": "string", "minLength": 1}})),
            ),
        ),
        (
            "/api/v1/sources",
            "get",
            op("Sources of the workspace", "workspaces", json!([]), false),
        ),
        (
            "/api/v1/sources",
            "post",
            create(
                "Create a source; its write key is returned once",
                "workspaces",
                object(
                    &["name"],
                    json!({"name": {"type": "string", "minLength": 1}, "channel": channel_schema(), "allowed_origins": origins_schema(),
                        "webhook": webhook_schema(), "tracking_plan": plan_schema()}),
                ),
            ),
        ),
        (
            "/api/v1/sources/{id}",
            "get",
            op("A source with its write keys (fingerprints and expiry)", "workspaces", id(), false),
        ),
        (
            "/api/v1/sources/{id}",
            "patch",
            with_body(
                op("Change a source's name, channel or allowed origins", "workspaces", id(), true),
                json!({"type": "object", "additionalProperties": false, "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "channel": {"oneOf": [channel_schema(), {"type": "null"}]},
                    "allowed_origins": origins_schema(),
                    "webhook": {"oneOf": [webhook_schema(), {"type": "null"}]},
                    "tracking_plan": {"oneOf": [plan_schema(), {"type": "null"}]}}}),
            ),
        ),
        (
            "/api/v1/sources/{id}",
            "delete",
            removal("Delete a source and its write keys (its events stay)", "workspaces", id()),
        ),
        (
            "/api/v1/sources/{id}/rotate",
            "post",
            with_optional_body(
                {
                    let mut o = create("Give the source a new write key; the previous ones keep working for the overlap", "workspaces", json!({}));
                    o["parameters"] = id();
                    o
                },
                rotation_schema(),
            ),
        ),
        (
            "/api/v1/tokens",
            "get",
            op(
                "Admin tokens of the workspace",
                "workspaces",
                json!([]),
                true,
            ),
        ),
        (
            "/api/v1/tokens",
            "post",
            create(
                "Create a token; its secret is returned once",
                "workspaces",
                object(
                    &["name", "role"],
                    json!({"name": {"type": "string", "minLength": 1}, "role": {"type": "string", "enum": ["admin", "marketer", "analyst", "read_only"]},
                        "expires_in_days": {"type": "integer", "minimum": 1, "maximum": 3650}}),
                ),
            ),
        ),
        (
            "/api/v1/tokens/{id}",
            "delete",
            removal("Revoke a token now", "workspaces", id()),
        ),
        (
            "/api/v1/tokens/{id}/rotate",
            "post",
            with_optional_body(
                {
                    let mut o = create("Give a token a successor; the old one keeps working for the overlap", "workspaces", json!({}));
                    o["parameters"] = id();
                    o
                },
                rotation_schema(),
            ),
        ),
        (
            "/api/v1/sources/{id}/live",
            "get",
            {
                let mut o = op("The source's events as they arrive, with their outcome (server-sent events)", "sources", json!([path_param("id", "string"), query("recent", "integer", "how many recent events first, at most 200")]), false);
                o["responses"]["200"] = json!({"description": "a text/event-stream of ready, event, quarantined and error events", "content": {"text/event-stream": {"schema": {"type": "string"}}}});
                o
            },
        ),
        (
            "/api/v1/webhooks/preview",
            "post",
            with_body(
                op("What a sample payload becomes with a mapping (or a source's mapping and plan), without storing anything", "sources", json!([]), false),
                json!({"type": "object", "required": ["payload"], "additionalProperties": false, "properties": {
                    "mapping": {"description": "a shipped mapping's name, or a mapping {\"events\": [...]}"},
                    "source": {"type": "string"},
                    "payload": {"description": "the platform's JSON"},
                    "headers": {"type": "object", "additionalProperties": {"type": "string"}}}}),
            ),
        ),
        (
            "/api/v1/webhooks/mappings",
            "get",
            op("The webhook mappings shipped with Parcours", "sources", json!([]), false),
        ),
        (
            "/api/v1/tracking-plans/violations",
            "get",
            op("Tracking plan violations by source, event, field and kind", "sources", json!([]), false),
        ),
        (
            "/api/v1/status",
            "get",
            op(
                "Event and profile counts, unify lag, buckets this node holds, and how each processor is doing",
                "operations",
                json!([]),
                false,
            ),
        ),
    ];
    let explain_params = json!([path_param("id", "string"), path_param("profile", "string")]);
    let export_params = json!([
        path_param("id", "string"),
        query("format", "string", "csv (default), ndjson, google, meta"),
        query(
            "region",
            "string",
            "ISO region for national phone numbers (FR)"
        )
    ]);
    let mut member_params = page();
    member_params
        .as_array_mut()
        .expect("an array")
        .insert(0, path_param("id", "string"));
    let audiences = [
        (
            "/api/v1/audiences",
            "get",
            op(
                "Audiences with their size and computation progress",
                "audiences",
                json!([]),
                false,
            ),
        ),
        (
            "/api/v1/audiences",
            "post",
            create(
                "Create an audience (text `definition` or JSON `condition`)",
                "audiences",
                audience_body(),
            ),
        ),
        (
            "/api/v1/audiences/{id}",
            "get",
            op("An audience", "audiences", id(), false),
        ),
        (
            "/api/v1/audiences/{id}",
            "put",
            with_body(
                op(
                    "Replace an audience (a full computation follows)",
                    "audiences",
                    id(),
                    true,
                ),
                audience_body(),
            ),
        ),
        (
            "/api/v1/audiences/{id}",
            "delete",
            op("Delete an audience", "audiences", id(), false),
        ),
        (
            "/api/v1/audiences/{id}/members",
            "get",
            op(
                "Members, in profile id order",
                "audiences",
                member_params,
                false,
            ),
        ),
        ("/api/v1/audiences/{id}/export", "get", {
            let mut o = op(
                "Export the members (CSV, NDJSON, hashed ad-platform lists)",
                "audiences",
                export_params,
                false,
            );
            o["responses"]["200"] = json!({"description": "the members", "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/x-ndjson": {"schema": {"type": "string"}}
            }});
            o
        }),
        (
            "/api/v1/audiences/{id}/explain/{profile}",
            "get",
            op(
                "Why a profile is in or out, condition by condition",
                "audiences",
                explain_params,
                false,
            ),
        ),
        (
            "/api/v1/computed-traits",
            "get",
            op("Computed traits", "audiences", json!([]), false),
        ),
        (
            "/api/v1/computed-traits",
            "post",
            create("Create a computed trait", "audiences", trait_body()),
        ),
        (
            "/api/v1/computed-traits/{id}",
            "get",
            op("A computed trait", "audiences", id(), false),
        ),
        (
            "/api/v1/computed-traits/{id}",
            "put",
            with_body(
                op("Replace a computed trait", "audiences", id(), true),
                trait_body(),
            ),
        ),
        (
            "/api/v1/computed-traits/{id}",
            "delete",
            op("Delete a computed trait", "audiences", id(), false),
        ),
        (
            "/api/v1/profiles/{id}/audiences",
            "get",
            op(
                "A profile's audiences and their history",
                "audiences",
                id(),
                false,
            ),
        ),
        (
            "/api/v1/profiles/{id}/computed-traits",
            "get",
            op("A profile's computed traits", "audiences", id(), false),
        ),
        (
            "/api/v1/destinations",
            "get",
            op(
                "Audience webhooks with their delivery status",
                "destinations",
                json!([]),
                false,
            ),
        ),
        (
            "/api/v1/destinations",
            "post",
            create(
                "Create a webhook destination (the answer shows its signing secret)",
                "destinations",
                destination_body(),
            ),
        ),
        (
            "/api/v1/destinations/{id}",
            "get",
            op(
                "A destination and its delivery",
                "destinations",
                id(),
                false,
            ),
        ),
        (
            "/api/v1/destinations/{id}",
            "put",
            with_body(
                op(
                    "Replace a destination (it keeps its place in the change log)",
                    "destinations",
                    id(),
                    true,
                ),
                destination_body(),
            ),
        ),
        (
            "/api/v1/destinations/{id}",
            "delete",
            op("Delete a destination", "destinations", id(), false),
        ),
    ];
    for (path, method, mut operation) in admin.into_iter().chain(audiences) {
        operation["security"] = json!([{"bearer": []}]);
        paths.entry(path.to_string()).or_insert_with(|| json!({}))[method] = operation;
    }
    let ok = json!({"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}});
    paths.insert(
        "/healthz".into(),
        json!({"get": {"summary": "Liveness", "tags": ["operations"],
        "responses": {"200": ok, "default": error()}}}),
    );
    paths.insert("/readyz".into(), json!({"get": {"summary": "Readiness: the store answers and no processor has been failing or lagging beyond its limit (503 says which)",
        "tags": ["operations"], "responses": {"200": ok, "503": error(), "default": error()}}}));
    paths.insert("/metrics".into(), json!({"get": {"summary": "Prometheus metrics (a bearer token when `metrics.require_token`)",
        "tags": ["operations"], "responses": {
            "200": {"description": "ok", "content": {"text/plain": {"schema": {"type": "string"}}}},
            "401": error(), "403": error(), "default": error()}}}));
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Parcours", "version": env!("CARGO_PKG_VERSION"), "description": "Segment-compatible tracking API and admin API of Parcours."},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "writeKey": {"type": "http", "scheme": "basic", "description": "the source write key as the user name, empty password"},
                "bearer": {"type": "http", "scheme": "bearer"}
            },
            "schemas": {
                "Error": {"type": "object", "required": ["message", "code", "type", "link"], "properties": {
                    "message": {"type": "string"}, "code": {"type": "string"}, "type": {"type": "string"}, "link": {"type": "string"}}},
                "SegmentEvent": {"type": "object", "description": "a Segment spec event", "additionalProperties": true},
                "SegmentBatch": {"type": "object", "required": ["batch"], "description": "events, with a context, integrations and sentAt that apply to each",
                    "properties": {"batch": {"type": "array", "description": "at most 2,500 events (413 beyond)", "items": {"$ref": "#/components/schemas/SegmentEvent"}},
                                   "context": {"description": "an object merged into each event (anything else is ignored)"},
                                   "integrations": {"description": "an object merged into each event (anything else is ignored)"},
                                   "sentAt": {"type": ["string", "null"]}, "writeKey": {"type": ["string", "null"]}},
                    "additionalProperties": true}
            },
            "responses": {
                "Error": {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_documented_path_is_in_the_document() {
        let spec = super::spec();
        for p in super::PATHS {
            assert!(spec["paths"].get(*p).is_some(), "{p} is missing");
        }
        assert_eq!(spec["paths"].as_object().unwrap().len(), super::PATHS.len());
    }
}
