use parcours_core::channel::Channel;
use parcours_core::rules::IdentityRulesConfig;
use parcours_core::time::Millis;
use parcours_store::{
    KeyGrant, PlanViolationCount, Registry, Result, Role, Source, StoreError, Token, Workspace,
    WriteKey,
};
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
    let origins: String = r.get(5)?;
    Ok(Source {
        id: r.get(0)?,
        workspace_id: r.get(1)?,
        name: r.get(2)?,
        channel: channel.as_deref().and_then(Channel::parse),
        created_at: r.get(4)?,
        allowed_origins: serde_json::from_str(&origins).unwrap_or_default(),
        webhook: json_column(r.get(6)?),
        tracking_plan: json_column(r.get(7)?),
    })
}

fn to_json<T: serde::Serialize>(v: &Option<T>) -> Result<Option<String>> {
    v.as_ref()
        .map(|v| serde_json::to_string(v).map_err(corrupt))
        .transpose()
}

/// An optional JSON document column (a document this version cannot read counts as absent,
/// and is logged).
fn json_column<T: serde::de::DeserializeOwned>(text: Option<String>) -> Option<T> {
    let text = text?;
    serde_json::from_str(&text)
        .map_err(|e| tracing::warn!(error = %e, "a stored source document is unreadable"))
        .ok()
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
        expires_at: r.get(6)?,
        scopes: json_column(r.get(7)?).unwrap_or_default(),
    })
}

const SOURCE_COLS: &str =
    "id, workspace_id, name, channel, created_at, allowed_origins, webhook, tracking_plan";
const TOKEN_COLS: &str =
    "id, workspace_id, name, role, instance_admin, created_at, expires_at, scopes";

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
        let origins = serde_json::to_string(&s.allowed_origins).map_err(corrupt)?;
        let mut conn = self.writer();
        let tx = conn.transaction().map_err(backend)?;
        tx.execute(
            "INSERT INTO sources (id, workspace_id, name, channel, write_key_hash, created_at, allowed_origins, webhook, tracking_plan)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                s.id,
                s.workspace_id,
                s.name,
                s.channel.map(|c| c.as_str()),
                key_hash,
                s.created_at,
                origins,
                to_json(&s.webhook)?,
                to_json(&s.tracking_plan)?
            ],
        )
        .map_err(|e| conflict_or_backend(e, "source or write key"))?;
        tx.execute(
            "INSERT INTO write_keys (hash, source_id, created_at) VALUES (?1, ?2, ?3)",
            params![key_hash, s.id, s.created_at],
        )
        .map_err(|e| conflict_or_backend(e, "write key"))?;
        tx.commit().map_err(backend)
    }

    fn update_source(&self, s: &Source) -> Result<()> {
        let origins = serde_json::to_string(&s.allowed_origins).map_err(corrupt)?;
        let n = self
            .writer()
            .execute(
                "UPDATE sources SET name = ?3, channel = ?4, allowed_origins = ?5, webhook = ?6, tracking_plan = ?7
                 WHERE workspace_id = ?1 AND id = ?2",
                params![
                    s.workspace_id,
                    s.id,
                    s.name,
                    s.channel.map(|c| c.as_str()),
                    origins,
                    to_json(&s.webhook)?,
                    to_json(&s.tracking_plan)?
                ],
            )
            .map_err(backend)?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("source {}", s.id)));
        }
        Ok(())
    }

    fn delete_source(&self, workspace: &str, id: &str) -> Result<()> {
        let mut conn = self.writer();
        let tx = conn.transaction().map_err(backend)?;
        tx.execute(
            "DELETE FROM write_keys WHERE source_id IN
             (SELECT id FROM sources WHERE workspace_id = ?1 AND id = ?2)",
            params![workspace, id],
        )
        .map_err(backend)?;
        let n = tx
            .execute(
                "DELETE FROM sources WHERE workspace_id = ?1 AND id = ?2",
                params![workspace, id],
            )
            .map_err(backend)?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("source {id}")));
        }
        tx.commit().map_err(backend)
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

    fn source_by_key_hash(&self, key_hash: &str) -> Result<Option<KeyGrant>> {
        self.read(|c| {
            c.query_row(
                "SELECT s.id, s.workspace_id, s.name, s.channel, s.created_at, s.allowed_origins,
                        s.webhook, s.tracking_plan, k.expires_at
                 FROM write_keys k JOIN sources s ON s.id = k.source_id WHERE k.hash = ?1",
                [key_hash],
                |r| {
                    Ok(KeyGrant {
                        source: source_row(r)?,
                        expires_at: r.get(8)?,
                    })
                },
            )
            .optional()
            .map_err(backend)
        })
    }

    fn write_keys(&self, workspace: &str, source: &str) -> Result<Vec<WriteKey>> {
        self.read(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT k.hash, k.created_at, k.expires_at FROM write_keys k
                     JOIN sources s ON s.id = k.source_id
                     WHERE s.workspace_id = ?1 AND s.id = ?2 ORDER BY k.created_at, k.hash",
                )
                .map_err(backend)?;
            let rows = st
                .query_map([workspace, source], |r| {
                    let hash: String = r.get(0)?;
                    Ok(WriteKey {
                        fingerprint: hash.chars().take(12).collect(),
                        created_at: r.get(1)?,
                        expires_at: r.get(2)?,
                    })
                })
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<_>>().map_err(backend)
        })
    }

    fn rotate_write_key(
        &self,
        workspace: &str,
        source: &str,
        new_hash: &str,
        now: Millis,
        old_until: Millis,
    ) -> Result<()> {
        let mut conn = self.writer();
        let tx = conn.transaction().map_err(backend)?;
        let n = tx
            .execute(
                "UPDATE write_keys SET expires_at = MIN(COALESCE(expires_at, ?3), ?3)
                 WHERE source_id IN (SELECT id FROM sources WHERE workspace_id = ?1 AND id = ?2)",
                params![workspace, source, old_until],
            )
            .map_err(backend)?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("source {source}")));
        }
        tx.execute(
            "INSERT INTO write_keys (hash, source_id, created_at) VALUES (?1, ?2, ?3)",
            params![new_hash, source, now],
        )
        .map_err(|e| conflict_or_backend(e, "write key"))?;
        tx.commit().map_err(backend)
    }

    fn create_token(&self, t: &Token, token_hash: &str) -> Result<()> {
        self.writer()
            .execute(
                "INSERT INTO tokens (id, workspace_id, name, role, instance_admin, token_hash, created_at, expires_at, scopes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![t.id, t.workspace_id, t.name, t.role.as_str(), t.instance_admin, token_hash, t.created_at, t.expires_at,
                        to_json(&Some(&t.scopes).filter(|s| !s.is_empty()))?],
            )
            .map_err(|e| conflict_or_backend(e, "token"))?;
        Ok(())
    }

    fn record_plan_violations(&self, workspace: &str, lines: &[PlanViolationCount]) -> Result<()> {
        let mut conn = self.writer();
        let tx = conn.transaction().map_err(backend)?;
        for l in lines {
            tx.execute(
                "INSERT INTO plan_violations
                     (workspace_id, source_id, event, field, kind, count, first_seen, last_seen, example)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (workspace_id, source_id, event, field, kind) DO UPDATE SET
                     count = count + excluded.count,
                     last_seen = MAX(last_seen, excluded.last_seen),
                     example = excluded.example",
                params![
                    workspace,
                    l.source_id,
                    l.event,
                    l.field,
                    l.kind,
                    l.count as i64,
                    l.first_seen,
                    l.last_seen,
                    l.example
                ],
            )
            .map_err(backend)?;
        }
        tx.commit().map_err(backend)
    }

    fn plan_violations(&self, workspace: &str) -> Result<Vec<PlanViolationCount>> {
        self.read(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT source_id, event, field, kind, count, first_seen, last_seen, example
                     FROM plan_violations WHERE workspace_id = ?1
                     ORDER BY count DESC, source_id, event, field, kind LIMIT 1000",
                )
                .map_err(backend)?;
            let rows = st
                .query_map([workspace], |r| {
                    Ok(PlanViolationCount {
                        source_id: r.get(0)?,
                        event: r.get(1)?,
                        field: r.get(2)?,
                        kind: r.get(3)?,
                        count: r.get::<_, i64>(4)? as u64,
                        first_seen: r.get(5)?,
                        last_seen: r.get(6)?,
                        example: r.get(7)?,
                    })
                })
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<_>>().map_err(backend)
        })
    }

    fn token_language(&self, token_id: &str) -> Result<Option<String>> {
        self.read(|c| {
            c.prepare_cached("SELECT language FROM token_languages WHERE token_id = ?1")
                .map_err(backend)?
                .query_row([token_id], |r| r.get(0))
                .optional()
                .map_err(backend)
        })
    }

    fn set_token_language(&self, token_id: &str, language: &str) -> Result<()> {
        let w = self.writer();
        let known = w
            .query_row("SELECT 1 FROM tokens WHERE id = ?1", [token_id], |_| Ok(()))
            .optional()
            .map_err(backend)?
            .is_some();
        if !known {
            return Err(StoreError::NotFound(format!("token {token_id}")));
        }
        w.execute(
            "INSERT INTO token_languages (token_id, language) VALUES (?1, ?2)
             ON CONFLICT (token_id) DO UPDATE SET language = excluded.language",
            params![token_id, language],
        )
        .map_err(backend)?;
        Ok(())
    }

    fn expire_token(&self, workspace: &str, id: &str, at: Millis) -> Result<()> {
        let n = self
            .writer()
            .execute(
                "UPDATE tokens SET expires_at = MIN(COALESCE(expires_at, ?3), ?3)
                 WHERE workspace_id = ?1 AND id = ?2",
                params![workspace, id, at],
            )
            .map_err(backend)?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("token {id}")));
        }
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
