//! The OpenAPI 3.1 document of the admin and tracking APIs, served at `/api/openapi.json`.

use axum::Json;
use serde_json::{json, Value};

fn op(summary: &str, tag: &str, params: Value, admin: bool) -> Value {
    let mut o = json!({
        "summary": summary,
        "tags": [tag],
        "parameters": params,
        "responses": {
            "200": {"description": "success"},
            "400": {"$ref": "#/components/responses/Error"},
            "401": {"$ref": "#/components/responses/Error"},
            "404": {"$ref": "#/components/responses/Error"}
        }
    });
    if admin {
        o["responses"]["403"] = json!({"$ref": "#/components/responses/Error"});
    }
    o
}

fn path_param(name: &str, kind: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": kind}})
}

fn query(name: &str, kind: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "schema": {"type": kind}, "description": description})
}

fn tracking(kind: &str) -> Value {
    json!({
        "post": {
            "summary": format!("Segment {kind} call"),
            "tags": ["tracking"],
            "security": [{"writeKey": []}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SegmentEvent"}}}},
            "responses": {
                "200": {"description": "committed", "content": {"application/json": {"schema": {"type": "object", "properties": {"success": {"type": "boolean"}}}}}},
                "400": {"$ref": "#/components/responses/Error"},
                "401": {"$ref": "#/components/responses/Error"},
                "413": {"$ref": "#/components/responses/Error"},
                "429": {"$ref": "#/components/responses/Error"}
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
    "/api/v1/profiles/lookup",
    "/api/v1/profiles/{id}",
    "/api/v1/profiles/{id}/traits",
    "/api/v1/profiles/{id}/identifiers",
    "/api/v1/profiles/{id}/merges",
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
    "/api/v1/tokens",
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
    let admin = [
        (
            "/api/v1/profiles/lookup",
            "get",
            op(
                "Profile by identifier",
                "profiles",
                json!([
                    query(
                        "type",
                        "string",
                        "email, phone, user_id, anonymous_id, device_id, …"
                    ),
                    query("value", "string", "normalised like ingested values")
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
            op(
                "Undo one merge of this profile: body {\"merge_id\": n}",
                "identity",
                id(),
                true,
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
                    p.as_array_mut().unwrap().push(query(
                        "status",
                        "string",
                        "pending (default all), replayed, discarded",
                    ));
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
            op("Replace the identity rules", "workspaces", json!([]), true),
        ),
        (
            "/api/v1/workspaces",
            "post",
            op(
                "Create a workspace (instance admin token)",
                "workspaces",
                json!([]),
                true,
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
            op(
                "Create a source; its write key is returned once",
                "workspaces",
                json!([]),
                true,
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
            op(
                "Create a token; its secret is returned once",
                "workspaces",
                json!([]),
                true,
            ),
        ),
        (
            "/api/v1/status",
            "get",
            op(
                "Event and profile counts, unify lag, buckets this node holds",
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
            op(
                "Create an audience (text `definition` or JSON `condition`)",
                "audiences",
                json!([]),
                true,
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
            op(
                "Replace an audience (a full computation follows)",
                "audiences",
                id(),
                true,
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
        (
            "/api/v1/audiences/{id}/export",
            "get",
            op(
                "Export the members (CSV, NDJSON, hashed ad-platform lists)",
                "audiences",
                export_params,
                false,
            ),
        ),
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
            op("Create a computed trait", "audiences", json!([]), true),
        ),
        (
            "/api/v1/computed-traits/{id}",
            "get",
            op("A computed trait", "audiences", id(), false),
        ),
        (
            "/api/v1/computed-traits/{id}",
            "put",
            op("Replace a computed trait", "audiences", id(), true),
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
            op(
                "Create a webhook destination (the answer shows its signing secret)",
                "destinations",
                json!([]),
                true,
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
            op(
                "Replace a destination (it keeps its place in the change log)",
                "destinations",
                id(),
                true,
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
    for (path, summary) in [
        ("/healthz", "Liveness"),
        ("/readyz", "Readiness (store reachable)"),
        ("/metrics", "Prometheus metrics"),
    ] {
        paths.insert(path.into(), json!({"get": {"summary": summary, "tags": ["operations"], "responses": {"200": {"description": "ok"}}}}));
    }
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
                "SegmentEvent": {"type": "object", "description": "a Segment spec event, or {batch: [...]} for /v1/batch", "additionalProperties": true}
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
