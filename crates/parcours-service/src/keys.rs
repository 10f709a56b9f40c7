//! The life cycle of sources, write keys and admin tokens: create, rotate with an overlap,
//! and the checks on what they are given (names, origins, webhook mappings, tracking plans).
//! The admin API and the CLI both call these.

use parcours_core::plan::TrackingPlan;
use parcours_core::time::{format_timestamp, Millis, HOUR};
use parcours_core::webhook::WebhookSource;
use parcours_core::Channel;
use parcours_store::{Role, Source, Store, StoreError, Token, WriteKey};
use serde_json::{json, Value};

use crate::secrets::{hash_secret, new_secret};

/// How long a rotated key or token keeps working unless told otherwise.
pub const DEFAULT_OVERLAP_HOURS: u32 = 24;
/// The longest overlap a rotation may give the old secret.
pub const MAX_OVERLAP_HOURS: u32 = 24 * 90;

/// Why a key operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub fn parse_channel(c: &str) -> Result<Channel, KeyError> {
    Channel::parse(c).ok_or_else(|| {
        let all: Vec<&str> = Channel::ALL.iter().map(|c| c.as_str()).collect();
        KeyError::Invalid(format!(
            "`{c}` is not a channel; use one of {}",
            all.join(", ")
        ))
    })
}

/// Allowed origins as a browser sends them: `scheme://host[:port]`, or `scheme://*.domain`.
pub fn check_origins(origins: &[String]) -> Result<Vec<String>, KeyError> {
    origins
        .iter()
        .map(|o| {
            let o = o.trim().trim_end_matches('/');
            let valid = o == "*"
                || o.split_once("://").is_some_and(|(scheme, host)| {
                    matches!(scheme, "http" | "https")
                        && !host.is_empty()
                        && !host.contains('/')
                        && !host.contains(char::is_whitespace)
                        && (!host.contains('*') || host.starts_with("*.") && host.len() > 2 && !host[2..].contains('*'))
                        && valid_port(host)
                });
            if valid {
                Ok(o.to_ascii_lowercase())
            } else {
                Err(KeyError::Invalid(format!(
                    "`{o}` is not an origin; write it as a browser sends it, `https://shop.example` \
                     or `https://*.example.com` (no path)"
                )))
            }
        })
        .collect()
}

/// A host's port, when it has one, is 1 to 65535 (an IPv6 literal's colons are not a port).
fn valid_port(host: &str) -> bool {
    let after_bracket = host.rsplit_once(']').map_or(host, |(_, rest)| rest);
    match after_bracket.rsplit_once(':') {
        Some((_, port)) => port.parse::<u16>().is_ok_and(|p| p > 0),
        None => true,
    }
}

/// The longest name a source or a token may have.
pub const MAX_NAME_CHARS: usize = 200;

/// A name as kept: trimmed, not empty, at most [`MAX_NAME_CHARS`], no control characters.
pub fn check_name(name: &str) -> Result<String, KeyError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(KeyError::Invalid("`name` must not be empty".into()));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(KeyError::Invalid(format!(
            "`name` is at most {MAX_NAME_CHARS} characters; it has {}",
            name.chars().count()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(KeyError::Invalid(
            "`name` must not hold control characters (tabs, line breaks, NUL)".into(),
        ));
    }
    Ok(name.to_string())
}

fn overlap_until(now: Millis, hours: Option<u32>) -> Result<Millis, KeyError> {
    let hours = hours.unwrap_or(DEFAULT_OVERLAP_HOURS);
    if hours > MAX_OVERLAP_HOURS {
        return Err(KeyError::Invalid(format!(
            "`overlap_hours` is at most {MAX_OVERLAP_HOURS} (90 days); got {hours}"
        )));
    }
    Ok(now + i64::from(hours) * HOUR)
}

/// A new source and its write key (shown once).
pub fn create_source(
    store: &dyn Store,
    workspace: &str,
    name: &str,
    channel: Option<Channel>,
    allowed_origins: &[String],
    now: Millis,
) -> Result<(Source, String), KeyError> {
    create_source_with(
        store,
        NewSourceSpec {
            workspace,
            name,
            channel,
            allowed_origins,
            webhook: None,
            tracking_plan: None,
        },
        now,
    )
}

/// Everything a new source may be given.
pub struct NewSourceSpec<'a> {
    pub workspace: &'a str,
    pub name: &'a str,
    pub channel: Option<Channel>,
    pub allowed_origins: &'a [String],
    pub webhook: Option<WebhookSource>,
    pub tracking_plan: Option<TrackingPlan>,
}

/// A webhook configuration whose mapping resolves and compiles.
pub fn check_webhook(value: &Value) -> Result<WebhookSource, KeyError> {
    // A mapping of its own is read alone first, so that a typo is named (`unknown field
    // evnt`) rather than reported as matching neither form.
    if let Some(own @ Value::Object(_)) = value.get("mapping") {
        parcours_core::webhook::Mapping::from_json(own)
            .map_err(|e| KeyError::Invalid(format!("webhook.{e}")))?;
    }
    let w: WebhookSource = serde_json::from_value(value.clone()).map_err(|e| {
        KeyError::Invalid(format!(
            "`webhook` is {{\"mapping\": \"shopify_orders_create\" or {{\"events\": […]}}, \"signature\": {{\"scheme\": \"shopify\", \"secret\": \"…\"}}}}: {e}"
        ))
    })?;
    w.mapping
        .resolve()
        .and_then(|m| m.compile())
        .map_err(|e| KeyError::Invalid(format!("webhook.{e}")))?;
    if let Some(sig) = &w.signature {
        if sig.secret.trim().is_empty() {
            return Err(KeyError::Invalid(
                "webhook.signature.secret must not be empty".into(),
            ));
        }
    }
    Ok(w)
}

pub fn check_plan(value: &Value) -> Result<TrackingPlan, KeyError> {
    TrackingPlan::from_json(value).map_err(|e| {
        KeyError::Invalid(if e.at == "tracking_plan" {
            e.to_string()
        } else {
            format!("tracking_plan.{e}")
        })
    })
}

/// A new source (any kind) and its write key (shown once).
pub fn create_source_with(
    store: &dyn Store,
    spec: NewSourceSpec<'_>,
    now: Millis,
) -> Result<(Source, String), KeyError> {
    let NewSourceSpec {
        workspace,
        name,
        channel,
        allowed_origins,
        webhook,
        tracking_plan,
    } = spec;
    let name = check_name(name)?;
    let key = new_secret("wk");
    let source = Source {
        id: new_secret("src")[..16].to_string(),
        workspace_id: workspace.to_string(),
        name,
        channel,
        created_at: now,
        allowed_origins: check_origins(allowed_origins)?,
        webhook,
        tracking_plan,
    };
    store.create_source(&source, &hash_secret(&key))?;
    Ok((source, key))
}

/// A source's new write key; its other keys keep working for `overlap_hours` (default 24),
/// then stop. Returns the key and when the old ones stop.
pub fn rotate_write_key(
    store: &dyn Store,
    workspace: &str,
    source: &str,
    overlap_hours: Option<u32>,
    now: Millis,
) -> Result<(String, Millis), KeyError> {
    let until = overlap_until(now, overlap_hours)?;
    let key = new_secret("wk");
    store.rotate_write_key(workspace, source, &hash_secret(&key), now, until)?;
    Ok((key, until))
}

/// The parts of the admin API a token can be limited to, and the first segments of the
/// paths (after `/api/v1/`) each covers.
pub const SCOPES: &[(&str, &[&str])] = &[
    ("profiles", &["profiles", "merges"]),
    (
        "audiences",
        &["audiences", "computed-traits", "destinations"],
    ),
    (
        "journeys",
        &["journeys", "messages", "channels", "suppressions"],
    ),
    ("commerce", &["commerce"]),
    ("measure", &["measure", "dashboard"]),
    ("privacy", &["privacy", "audit"]),
    (
        "sources",
        &[
            "sources",
            "source",
            "quarantine",
            "webhooks",
            "tracking-plans",
        ],
    ),
    ("admin", &["tokens", "workspace", "workspaces"]),
];

/// The scope an admin API path is in (`/api/v1/audiences/vip` or, inside the API's router,
/// `/audiences/vip`); `None` for a path no scope covers.
pub fn scope_of(path: &str) -> Option<&'static str> {
    let rest = path.strip_prefix("/api/v1").unwrap_or(path);
    let first = rest.trim_start_matches('/').split('/').next()?;
    SCOPES
        .iter()
        .find(|(_, parts)| parts.contains(&first))
        .map(|(scope, _)| *scope)
}

/// Whether a token may call `path`: a token without scopes may call every part (its role
/// decides); one with scopes, only the parts they name.
pub fn in_scope(token: &Token, path: &str) -> bool {
    token.scopes.is_empty() || scope_of(path).is_some_and(|s| token.scopes.iter().any(|t| t == s))
}

/// Checks the scopes asked for a token.
pub fn check_scopes(scopes: &[String]) -> Result<Vec<String>, KeyError> {
    let mut out: Vec<String> = Vec::new();
    for s in scopes {
        if !SCOPES.iter().any(|(name, _)| name == s) {
            let known: Vec<&str> = SCOPES.iter().map(|(n, _)| *n).collect();
            return Err(KeyError::Invalid(format!(
                "`{s}` is not a scope: {}",
                known.join(", ")
            )));
        }
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    Ok(out)
}

/// A new admin token and its secret (shown once).
pub fn create_token(
    store: &dyn Store,
    workspace: &str,
    name: &str,
    role: Role,
    expires_in_days: Option<u32>,
    now: Millis,
) -> Result<(Token, String), KeyError> {
    create_token_with(store, workspace, name, role, expires_in_days, &[], now)
}

/// A new admin token limited to `scopes` (none: every part its role allows), and its secret.
pub fn create_token_with(
    store: &dyn Store,
    workspace: &str,
    name: &str,
    role: Role,
    expires_in_days: Option<u32>,
    scopes: &[String],
    now: Millis,
) -> Result<(Token, String), KeyError> {
    let name = check_name(name)?;
    let scopes = check_scopes(scopes)?;
    let expires_at =
        match expires_in_days {
            Some(0) => return Err(KeyError::Invalid(
                "`expires_in_days` is at least 1 (leave it out for a token that does not expire)"
                    .into(),
            )),
            Some(d) if d > 3650 => {
                return Err(KeyError::Invalid(format!(
                    "`expires_in_days` is at most 3650; got {d}"
                )))
            }
            Some(d) => Some(now + i64::from(d) * 24 * HOUR),
            None => None,
        };
    let secret = new_secret("pat");
    let token = Token {
        id: new_secret("tok")[..16].to_string(),
        workspace_id: workspace.to_string(),
        name,
        role,
        instance_admin: false,
        created_at: now,
        expires_at,
        scopes,
    };
    store.create_token(&token, &hash_secret(&secret))?;
    Ok((token, secret))
}

/// A token's successor (same name, role and expiry); the old one keeps working for
/// `overlap_hours`, then stops.
pub fn rotate_token(
    store: &dyn Store,
    workspace: &str,
    id: &str,
    overlap_hours: Option<u32>,
    now: Millis,
) -> Result<(Token, String, Millis), KeyError> {
    let until = overlap_until(now, overlap_hours)?;
    let old = store
        .tokens(workspace)?
        .into_iter()
        .find(|t| t.id == id)
        .ok_or_else(|| StoreError::NotFound(format!("token {id}")))?;
    if old.expires_at.is_some_and(|at| at <= now) {
        return Err(KeyError::Invalid(format!(
            "token {id} has expired; create a new one instead"
        )));
    }
    let secret = new_secret("pat");
    let token = Token {
        id: new_secret("tok")[..16].to_string(),
        created_at: now,
        ..old
    };
    store.create_token(&token, &hash_secret(&secret))?;
    store.expire_token(workspace, id, until)?;
    Ok((token, secret, until))
}

/// A source as the API shows it, with its keys when given.
pub fn source_json(s: &Source, keys: Option<&[WriteKey]>, now: Millis) -> Value {
    let mut v = json!({
        "id": s.id,
        "workspace_id": s.workspace_id,
        "name": s.name,
        "channel": s.channel,
        "created_at": format_timestamp(s.created_at),
        "allowed_origins": s.allowed_origins,
        "kind": if s.webhook.is_some() { "webhook" } else { "tracking" },
        "webhook": s.webhook.as_ref().map(|w| json!({
            "mapping": w.mapping,
            // The secret is write-only: it verifies calls, it is never shown again.
            "signature": w.signature.as_ref().map(|sig| json!({"scheme": sig.scheme, "secret": "(set)"})),
        })),
        "tracking_plan": s.tracking_plan,
    });
    if let Some(keys) = keys {
        v["write_keys"] = keys
            .iter()
            .map(|k| {
                json!({
                    "fingerprint": k.fingerprint,
                    "created_at": format_timestamp(k.created_at),
                    "expires_at": k.expires_at.map(format_timestamp),
                    "active": k.expires_at.is_none_or(|at| at > now),
                })
            })
            .collect();
    }
    v
}

/// A token as the API shows it (never its secret: only its hash is kept).
pub fn token_json(t: &Token, now: Millis) -> Value {
    json!({
        "id": t.id,
        "workspace_id": t.workspace_id,
        "name": t.name,
        "role": t.role,
        "instance_admin": t.instance_admin,
        "created_at": format_timestamp(t.created_at),
        "expires_at": t.expires_at.map(format_timestamp),
        "active": t.expires_at.is_none_or(|at| at > now),
        "scopes": t.scopes,
    })
}

pub fn parse_role(role: &str) -> Result<Role, KeyError> {
    Role::parse(role).ok_or_else(|| {
        KeyError::Invalid(format!(
            "`{role}` is not a role; use one of admin, marketer, agent, analyst, read_only"
        ))
    })
}

impl From<KeyError> for crate::ServiceError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Invalid(message) => crate::ServiceError::Invalid {
                code: "invalid_parameter",
                message,
            },
            KeyError::Store(e) => crate::ServiceError::Store(e),
        }
    }
}

/// The workspace's sources (every role reads them; their keys are never shown again).
pub fn sources_of(
    store: &dyn Store,
    actor: &crate::Actor,
) -> Result<Vec<Source>, crate::ServiceError> {
    Ok(store.sources(&actor.workspace)?)
}

/// The workspace's tokens (admins: they manage them).
pub fn tokens_of(
    store: &dyn Store,
    actor: &crate::Actor,
) -> Result<Vec<Token>, crate::ServiceError> {
    actor.require_admin()?;
    Ok(store.tokens(&actor.workspace)?)
}

/// A new source and its write key, shown once (admins).
pub fn create_source_as(
    store: &dyn Store,
    actor: &crate::Actor,
    name: &str,
    channel: Option<&str>,
    now: Millis,
) -> Result<(Source, String), crate::ServiceError> {
    actor.require_admin()?;
    let channel = channel
        .filter(|c| !c.trim().is_empty())
        .map(parse_channel)
        .transpose()?;
    Ok(create_source(
        store,
        &actor.workspace,
        name,
        channel,
        &[],
        now,
    )?)
}

/// A new token and its secret, shown once (admins).
pub fn create_token_as(
    store: &dyn Store,
    actor: &crate::Actor,
    name: &str,
    role: &str,
    expires_in_days: Option<u32>,
    scopes: &[String],
    now: Millis,
) -> Result<(Token, String), crate::ServiceError> {
    actor.require_admin()?;
    let role = Role::parse(role).ok_or_else(|| {
        crate::ServiceError::invalid(
            "invalid_role",
            format!("`{role}` is not a role: admin, marketer, agent, analyst or read_only"),
        )
    })?;
    Ok(create_token_with(
        store,
        &actor.workspace,
        name,
        role,
        expires_in_days,
        scopes,
        now,
    )?)
}

/// Revokes a token now (admins). Nodes stop accepting it within seconds; the caller forgets
/// what it cached at once.
pub fn revoke_token_as(
    store: &dyn Store,
    actor: &crate::Actor,
    id: &str,
    now: Millis,
) -> Result<(), crate::ServiceError> {
    actor.require_admin()?;
    if !store.tokens(&actor.workspace)?.iter().any(|t| t.id == id) {
        return Err(crate::ServiceError::NotFound(format!("token {id}")));
    }
    Ok(store.expire_token(&actor.workspace, id, now)?)
}

/// The console languages a user may choose.
pub const LANGUAGES: [&str; 2] = ["en", "fr"];

/// The console language the user of a token chose, if any.
pub fn language_of(
    store: &dyn Store,
    token_id: &str,
) -> Result<Option<String>, crate::ServiceError> {
    Ok(store
        .token_language(token_id)?
        .filter(|l| LANGUAGES.contains(&l.as_str())))
}

/// Remembers the console language of a token's user (`invalid_language` for another).
pub fn remember_language(
    store: &dyn Store,
    token_id: &str,
    language: &str,
) -> Result<(), crate::ServiceError> {
    if !LANGUAGES.contains(&language) {
        return Err(crate::ServiceError::invalid(
            "invalid_language",
            format!("the console speaks {}", LANGUAGES.join(" and ")),
        ));
    }
    Ok(store.set_token_language(token_id, language)?)
}
