//! The registry port: workspaces, sources with their write keys, admin tokens, and the
//! tracking plans' violation reports.

use parcours_core::channel::Channel;
use parcours_core::rules::IdentityRulesConfig;
use parcours_core::time::Millis;
use serde::{Deserialize, Serialize};

use crate::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workspace {
    pub id: String,
    pub name: String,
    #[serde(serialize_with = "parcours_core::time::serialize_iso")]
    pub created_at: Millis,
    pub identity_rules: IdentityRulesConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    /// The channel of this source's events unless they say otherwise (e.g. `store` for POS).
    pub channel: Option<Channel>,
    #[serde(serialize_with = "parcours_core::time::serialize_iso")]
    pub created_at: Millis,
    /// The web origins (`https://shop.example`, `https://*.example.com`) whose pages may send
    /// with this source's write key from a browser; empty: any origin (a write key is public
    /// in a page anyway). Requests without an `Origin` (servers, apps) are not concerned.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Set on a webhook source: how its calls become events and are authenticated.
    #[serde(default)]
    pub webhook: Option<parcours_core::webhook::WebhookSource>,
    /// Set when the source checks its events against a tracking plan.
    #[serde(default)]
    pub tracking_plan: Option<parcours_core::plan::TrackingPlan>,
}

impl Source {
    /// Whether a page of `origin` may send with this source's key.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.allowed_origins.is_empty()
            || self
                .allowed_origins
                .iter()
                .any(|allowed| origin_matches(allowed, origin))
    }
}

/// `https://*.example.com` matches the subdomains of example.com over https, not example.com
/// itself; anything else matches itself only (case-insensitively, a trailing `/` ignored).
pub fn origin_matches(allowed: &str, origin: &str) -> bool {
    let allowed = allowed.trim().trim_end_matches('/').to_ascii_lowercase();
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    if allowed == "*" {
        return true;
    }
    match allowed.split_once("://*.") {
        Some((scheme, domain)) => origin
            .strip_prefix(scheme)
            .and_then(|rest| rest.strip_prefix("://"))
            .is_some_and(|host| {
                host.strip_suffix(domain)
                    .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.'))
            }),
        None => allowed == origin,
    }
}

/// One line of a tracking plan's violations report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanViolationCount {
    pub source_id: String,
    /// The track event's name, or `identify`.
    pub event: String,
    pub field: String,
    pub kind: String,
    pub count: u64,
    #[serde(serialize_with = "parcours_core::time::serialize_iso")]
    pub first_seen: Millis,
    #[serde(serialize_with = "parcours_core::time::serialize_iso")]
    pub last_seen: Millis,
    /// The description of the last one.
    pub example: String,
}

/// A write key's grant: the source it sends to, until when.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyGrant {
    pub source: Source,
    /// Set once the key was rotated or revoked: it stops working then.
    pub expires_at: Option<Millis>,
}

/// A write key as listed (only its hash is stored: it is shown by a fingerprint).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WriteKey {
    /// The first 12 hex digits of the key's SHA-256.
    pub fingerprint: String,
    #[serde(serialize_with = "parcours_core::time::serialize_iso")]
    pub created_at: Millis,
    #[serde(serialize_with = "parcours_core::time::serialize_iso_opt")]
    pub expires_at: Option<Millis>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Marketer,
    /// Customer service: reads customers (their profile, orders, messages) to help them;
    /// changes no marketing.
    Agent,
    Analyst,
    ReadOnly,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Marketer => "marketer",
            Role::Agent => "agent",
            Role::Analyst => "analyst",
            Role::ReadOnly => "read_only",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "admin" => Role::Admin,
            "marketer" => Role::Marketer,
            "agent" => Role::Agent,
            "analyst" => Role::Analyst,
            "read_only" => Role::ReadOnly,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Token {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    pub role: Role,
    /// May create workspaces (the token printed on first start).
    pub instance_admin: bool,
    #[serde(serialize_with = "parcours_core::time::serialize_iso")]
    pub created_at: Millis,
    /// The token stops working then (set at creation, or by a rotation's overlap).
    #[serde(default)]
    #[serde(serialize_with = "parcours_core::time::serialize_iso_opt")]
    pub expires_at: Option<Millis>,
    /// The parts of the admin API it may call (`audiences`, `commerce` …); empty: every
    /// part its role allows.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// Workspaces, sources (write keys) and admin tokens.
pub trait Registry: Send + Sync {
    fn create_workspace(&self, workspace: &Workspace) -> Result<()>;
    fn workspaces(&self) -> Result<Vec<Workspace>>;
    fn workspace(&self, id: &str) -> Result<Option<Workspace>>;
    fn set_identity_rules(&self, workspace: &str, rules: &IdentityRulesConfig) -> Result<()>;
    /// Creates a source with its first write key.
    fn create_source(&self, source: &Source, write_key_hash: &str) -> Result<()>;
    /// Changes a source's name, channel and allowed origins.
    fn update_source(&self, source: &Source) -> Result<()>;
    /// Deletes a source and its write keys (its events stay in the log).
    fn delete_source(&self, workspace: &str, id: &str) -> Result<()>;
    fn sources(&self, workspace: &str) -> Result<Vec<Source>>;
    /// The source a write key belongs to, expired or not (the caller compares `expires_at`
    /// with its clock).
    fn source_by_key_hash(&self, key_hash: &str) -> Result<Option<KeyGrant>>;
    /// A source's write keys, oldest first.
    fn write_keys(&self, workspace: &str, source: &str) -> Result<Vec<WriteKey>>;
    /// Adds a write key to a source, and makes its other keys stop working at `old_until`
    /// (or earlier, if they were already to stop before), in one transaction.
    fn rotate_write_key(
        &self,
        workspace: &str,
        source: &str,
        new_hash: &str,
        now: Millis,
        old_until: Millis,
    ) -> Result<()>;
    fn create_token(&self, token: &Token, token_hash: &str) -> Result<()>;
    fn tokens(&self, workspace: &str) -> Result<Vec<Token>>;
    fn token_by_hash(&self, token_hash: &str) -> Result<Option<Token>>;
    /// Makes a token stop working at `at` (or keeps its earlier expiry).
    fn expire_token(&self, workspace: &str, id: &str, at: Millis) -> Result<()>;
    /// The console language a token's user chose (`en`, `fr`), if she chose one.
    fn token_language(&self, token_id: &str) -> Result<Option<String>>;
    /// Remembers a token's console language (`NotFound` for an unknown token).
    fn set_token_language(&self, token_id: &str, language: &str) -> Result<()>;
    /// Adds to the violations report (each line's `count` is added; `first_seen` kept).
    fn record_plan_violations(&self, workspace: &str, lines: &[PlanViolationCount]) -> Result<()>;
    /// The violations report of a workspace's sources, most frequent first.
    fn plan_violations(&self, workspace: &str) -> Result<Vec<PlanViolationCount>>;
}
