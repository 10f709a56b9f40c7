//! Workspaces: created by the instance admin, each with a first source and admin token.

use parcours_core::rules::IdentityRulesConfig;
use parcours_core::time::Millis;
use parcours_store::{Role, Source, Store, Token, Workspace};

use crate::secrets::{hash_secret, new_secret};
use crate::{Actor, ServiceError};

/// What creating a workspace hands out once: its first write key and admin token.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Provisioned {
    pub workspace: Workspace,
    pub source: Source,
    pub write_key: String,
    pub admin_token: String,
}

/// Only the instance admin token creates workspaces.
pub fn require_instance_admin(actor: &Actor) -> Result<(), ServiceError> {
    if actor.instance_admin {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(
            "only the instance admin token can create workspaces".into(),
        ))
    }
}

/// Creates a workspace (only the instance admin may), named `name`.
pub fn create_workspace(
    store: &dyn Store,
    actor: &Actor,
    name: &str,
    now: Millis,
) -> Result<Provisioned, ServiceError> {
    require_instance_admin(actor)?;
    if name.trim().is_empty() {
        return Err(ServiceError::invalid(
            "invalid_parameter",
            "`name` must not be empty",
        ));
    }
    Ok(provision_workspace(
        store,
        None,
        name.trim(),
        now,
        None,
        None,
        false,
    )?)
}

/// Creates a workspace with one source and one admin token. Given secrets are used as they
/// are (bootstrap from configuration); otherwise new ones are made. (The first start and the
/// CLI call it without an actor: they run with the rights of whoever runs the binary.)
pub fn provision_workspace(
    store: &dyn Store,
    id: Option<&str>,
    name: &str,
    now: Millis,
    write_key: Option<String>,
    admin_token: Option<String>,
    instance_admin: bool,
) -> parcours_store::Result<Provisioned> {
    let workspace = Workspace {
        id: id.map_or_else(|| new_secret("ws")[..15].to_string(), str::to_string),
        name: name.to_string(),
        created_at: now,
        identity_rules: IdentityRulesConfig::default(),
    };
    store.create_workspace(&workspace)?;
    let write_key = write_key.unwrap_or_else(|| new_secret("wk"));
    let source = Source {
        id: new_secret("src")[..16].to_string(),
        workspace_id: workspace.id.clone(),
        name: "Default source".into(),
        channel: None,
        created_at: now,
        allowed_origins: vec![],
        webhook: None,
        tracking_plan: None,
    };
    store.create_source(&source, &hash_secret(&write_key))?;
    let admin_token = admin_token.unwrap_or_else(|| new_secret("pat"));
    let token = Token {
        id: new_secret("tok")[..16].to_string(),
        workspace_id: workspace.id.clone(),
        name: "admin".into(),
        role: Role::Admin,
        instance_admin,
        created_at: now,
        expires_at: None,
        scopes: vec![],
    };
    store.create_token(&token, &hash_secret(&admin_token))?;
    Ok(Provisioned {
        workspace,
        source,
        write_key,
        admin_token,
    })
}
