use parcours_core::channel::Channel;
use parcours_core::rules::IdentityRulesConfig;
use parcours_store::{Registry, Result, Role, Source, StoreError, Token, Workspace};
use rusqlite::{params, OptionalExtension, Row};

use crate::{backend, corrupt, SqliteStore};

fn conflict_or_backend(e: rusqlite::Error, what: &str) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict(format!("{what} already exists"))
        }
        e => backend(e),
    }
}

fn workspace_row(r: &Row<'_>) -> rusqlite::Result<(String, String, i64, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn to_workspace((id, name, created_at, rules): (String, String, i64, String)) -> Result<Workspace> {
    Ok(Workspace {
        id,
        name,
        created_at,
        identity_rules: serde_json::from_str(&rules).map_err(corrupt)?,
    })
}

fn source_row(r: &Row<'_>) -> rusqlite::Result<Source> {
    let channel: Option<String> = r.get(3)?;
    Ok(Source {
        id: r.get(0)?,
        workspace_id: r.get(1)?,
        name: r.get(2)?,
        channel: channel.as_deref().and_then(Channel::parse),
        created_at: r.get(4)?,
    })
}

fn token_row(r: &Row<'_>) -> rusqlite::Result<Token> {
    let role: String = r.get(3)?;
    Ok(Token {
        id: r.get(0)?,
        workspace_id: r.get(1)?,
        name: r.get(2)?,
        role: Role::parse(&role).unwrap_or(Role::ReadOnly),
        instance_admin: r.get(4)?,
        created_at: r.get(5)?,
    })
}

const SOURCE_COLS: &str = "id, workspace_id, name, channel, created_at";
const TOKEN_COLS: &str = "id, workspace_id, name, role, instance_admin, created_at";

impl Registry for SqliteStore {
    fn create_workspace(&self, w: &Workspace) -> Result<()> {
        let rules = serde_json::to_string(&w.identity_rules).map_err(corrupt)?;
        self.writer()
            .execute(
                "INSERT INTO workspaces (id, name, created_at, identity_rules) VALUES (?1, ?2, ?3, ?4)",
                params![w.id, w.name, w.created_at, rules],
            )
            .map_err(|e| conflict_or_backend(e, "workspace"))?;
        Ok(())
    }

    fn workspaces(&self) -> Result<Vec<Workspace>> {
        self.read(|c| {
            let mut st = c
                .prepare_cached("SELECT id, name, created_at, identity_rules FROM workspaces ORDER BY created_at, id")
                .map_err(backend)?;
            let rows = st.query_map([], workspace_row).map_err(backend)?;
            rows.map(|r| to_workspace(r.map_err(backend)?)).collect()
        })
    }

    fn workspace(&self, id: &str) -> Result<Option<Workspace>> {
        self.read(|c| {
            c.query_row(
                "SELECT id, name, created_at, identity_rules FROM workspaces WHERE id = ?1",
                [id],
                workspace_row,
            )
            .optional()
            .map_err(backend)?
            .map(to_workspace)
            .transpose()
        })
    }

    fn set_identity_rules(&self, workspace: &str, rules: &IdentityRulesConfig) -> Result<()> {
        let rules = serde_json::to_string(rules).map_err(corrupt)?;
        let n = self
            .writer()
            .execute(
                "UPDATE workspaces SET identity_rules = ?2 WHERE id = ?1",
                params![workspace, rules],
            )
            .map_err(backend)?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("workspace {workspace}")));
        }
        Ok(())
    }

    fn create_source(&self, s: &Source, key_hash: &str) -> Result<()> {
        self.writer()
            .execute(
                "INSERT INTO sources (id, workspace_id, name, channel, write_key_hash, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    s.id,
                    s.workspace_id,
                    s.name,
                    s.channel.map(|c| c.as_str()),
                    key_hash,
                    s.created_at
                ],
            )
            .map_err(|e| conflict_or_backend(e, "source or write key"))?;
        Ok(())
    }

    fn sources(&self, workspace: &str) -> Result<Vec<Source>> {
        self.read(|c| {
            let mut st = c
                .prepare_cached(&format!(
                    "SELECT {SOURCE_COLS} FROM sources WHERE workspace_id = ?1 ORDER BY created_at, id"
                ))
                .map_err(backend)?;
            let rows = st.query_map([workspace], source_row).map_err(backend)?;
            rows.collect::<rusqlite::Result<_>>().map_err(backend)
        })
    }

    fn source_by_key_hash(&self, key_hash: &str) -> Result<Option<Source>> {
        self.read(|c| {
            c.query_row(
                &format!("SELECT {SOURCE_COLS} FROM sources WHERE write_key_hash = ?1"),
                [key_hash],
                source_row,
            )
            .optional()
            .map_err(backend)
        })
    }

    fn create_token(&self, t: &Token, token_hash: &str) -> Result<()> {
        self.writer()
            .execute(
                "INSERT INTO tokens (id, workspace_id, name, role, instance_admin, token_hash, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![t.id, t.workspace_id, t.name, t.role.as_str(), t.instance_admin, token_hash, t.created_at],
            )
            .map_err(|e| conflict_or_backend(e, "token"))?;
        Ok(())
    }

    fn tokens(&self, workspace: &str) -> Result<Vec<Token>> {
        self.read(|c| {
            let mut st = c
                .prepare_cached(&format!(
                    "SELECT {TOKEN_COLS} FROM tokens WHERE workspace_id = ?1 ORDER BY created_at, id"
                ))
                .map_err(backend)?;
            let rows = st.query_map([workspace], token_row).map_err(backend)?;
            rows.collect::<rusqlite::Result<_>>().map_err(backend)
        })
    }

    fn token_by_hash(&self, token_hash: &str) -> Result<Option<Token>> {
        self.read(|c| {
            c.query_row(
                &format!("SELECT {TOKEN_COLS} FROM tokens WHERE token_hash = ?1"),
                [token_hash],
                token_row,
            )
            .optional()
            .map_err(backend)
        })
    }
}
