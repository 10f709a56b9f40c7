use parcours_core::channel::Channel;
use parcours_core::rules::IdentityRulesConfig;
use parcours_core::time::Millis;
use parcours_store::{
    KeyGrant, PlanViolationCount, Registry, Result, Role, Source, StoreError, Token, Workspace,
    WriteKey,
};
use sqlx::postgres::PgRow;
use sqlx::Row;

use crate::{backend, corrupt, PgStore};

pub(crate) fn conflict_or_backend(e: sqlx::Error, what: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            StoreError::Conflict(format!("{what} already exists"))
        }
        _ => backend(e),
    }
}

fn to_workspace(r: &PgRow) -> Result<Workspace> {
    let rules: String = r.try_get(3).map_err(backend)?;
    Ok(Workspace {
        id: r.try_get(0).map_err(backend)?,
        name: r.try_get(1).map_err(backend)?,
        created_at: r.try_get(2).map_err(backend)?,
        identity_rules: serde_json::from_str(&rules).map_err(corrupt)?,
    })
}

fn to_source(r: &PgRow) -> Result<Source> {
    let channel: Option<String> = r.try_get(3).map_err(backend)?;
    let origins: String = r.try_get(5).map_err(backend)?;
    Ok(Source {
        id: r.try_get(0).map_err(backend)?,
        workspace_id: r.try_get(1).map_err(backend)?,
        name: r.try_get(2).map_err(backend)?,
        channel: channel.as_deref().and_then(Channel::parse),
        created_at: r.try_get(4).map_err(backend)?,
        allowed_origins: serde_json::from_str(&origins).unwrap_or_default(),
        webhook: json_column(r.try_get(6).map_err(backend)?),
        tracking_plan: json_column(r.try_get(7).map_err(backend)?),
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

fn to_token(r: &PgRow) -> Result<Token> {
    let role: String = r.try_get(3).map_err(backend)?;
    Ok(Token {
        id: r.try_get(0).map_err(backend)?,
        workspace_id: r.try_get(1).map_err(backend)?,
        name: r.try_get(2).map_err(backend)?,
        role: Role::parse(&role).unwrap_or(Role::ReadOnly),
        instance_admin: r.try_get(4).map_err(backend)?,
        created_at: r.try_get(5).map_err(backend)?,
        expires_at: r.try_get(6).map_err(backend)?,
        scopes: json_column(r.try_get(7).map_err(backend)?).unwrap_or_default(),
    })
}

const WORKSPACE_COLS: &str = "id, name, created_at, identity_rules";
const SOURCE_COLS: &str =
    "id, workspace_id, name, channel, created_at, allowed_origins, webhook, tracking_plan";
const TOKEN_COLS: &str =
    "id, workspace_id, name, role, instance_admin, created_at, expires_at, scopes";

impl PgStore {
    fn rows<'q, T>(
        &self,
        sql: &'q str,
        arg: &'q str,
        map: impl Fn(&PgRow) -> Result<T>,
    ) -> Result<Vec<T>> {
        let rows = self
            .run(sqlx::query(sql).bind(arg).fetch_all(&self.pool))
            .map_err(backend)?;
        rows.iter().map(map).collect()
    }
}

impl Registry for PgStore {
    fn create_workspace(&self, w: &Workspace) -> Result<()> {
        let rules = serde_json::to_string(&w.identity_rules).map_err(corrupt)?;
        self.run(
            sqlx::query(
                "INSERT INTO workspaces (id, name, created_at, identity_rules) VALUES ($1, $2, $3, $4)",
            )
            .bind(&w.id)
            .bind(&w.name)
            .bind(w.created_at)
            .bind(rules)
            .execute(&self.pool),
        )
        .map_err(|e| conflict_or_backend(e, "workspace"))?;
        Ok(())
    }

    fn workspaces(&self) -> Result<Vec<Workspace>> {
        let rows = self
            .run(
                sqlx::query(sql!(
                    "SELECT {WORKSPACE_COLS} FROM workspaces ORDER BY created_at, id"
                ))
                .fetch_all(&self.pool),
            )
            .map_err(backend)?;
        rows.iter().map(to_workspace).collect()
    }

    fn workspace(&self, id: &str) -> Result<Option<Workspace>> {
        Ok(self
            .rows(
                sql!("SELECT {WORKSPACE_COLS} FROM workspaces WHERE id = $1"),
                id,
                to_workspace,
            )?
            .pop())
    }

    fn set_identity_rules(&self, workspace: &str, rules: &IdentityRulesConfig) -> Result<()> {
        let rules = serde_json::to_string(rules).map_err(corrupt)?;
        let done = self
            .run(
                sqlx::query("UPDATE workspaces SET identity_rules = $2 WHERE id = $1")
                    .bind(workspace)
                    .bind(rules)
                    .execute(&self.pool),
            )
            .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("workspace {workspace}")));
        }
        Ok(())
    }

    fn create_source(&self, s: &Source, key_hash: &str) -> Result<()> {
        let origins = serde_json::to_string(&s.allowed_origins).map_err(corrupt)?;
        let (webhook, plan) = (to_json(&s.webhook)?, to_json(&s.tracking_plan)?);
        self.run(async {
            let mut tx = self.pool.begin().await.map_err(backend)?;
            sqlx::query(
                "INSERT INTO sources (id, workspace_id, name, channel, write_key_hash, created_at, allowed_origins, webhook, tracking_plan)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&s.id)
            .bind(&s.workspace_id)
            .bind(&s.name)
            .bind(s.channel.map(|c| c.as_str()))
            .bind(key_hash)
            .bind(s.created_at)
            .bind(&origins)
            .bind(&webhook)
            .bind(&plan)
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict_or_backend(e, "source"))?;
            sqlx::query("INSERT INTO write_keys (hash, source_id, created_at) VALUES ($1, $2, $3)")
                .bind(key_hash)
                .bind(&s.id)
                .bind(s.created_at)
                .execute(&mut *tx)
                .await
                .map_err(|e| conflict_or_backend(e, "write key"))?;
            tx.commit().await.map_err(backend)
        })
    }

    fn update_source(&self, s: &Source) -> Result<()> {
        let origins = serde_json::to_string(&s.allowed_origins).map_err(corrupt)?;
        let (webhook, plan) = (to_json(&s.webhook)?, to_json(&s.tracking_plan)?);
        let done = self
            .run(
                sqlx::query(
                    "UPDATE sources SET name = $3, channel = $4, allowed_origins = $5, webhook = $6, tracking_plan = $7
                     WHERE workspace_id = $1 AND id = $2",
                )
                .bind(&s.workspace_id)
                .bind(&s.id)
                .bind(&s.name)
                .bind(s.channel.map(|c| c.as_str()))
                .bind(&origins)
                .bind(&webhook)
                .bind(&plan)
                .execute(&self.pool),
            )
            .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("source {}", s.id)));
        }
        Ok(())
    }

    fn delete_source(&self, workspace: &str, id: &str) -> Result<()> {
        self.run(async {
            let mut tx = self.pool.begin().await.map_err(backend)?;
            sqlx::query(
                "DELETE FROM write_keys WHERE source_id IN
                 (SELECT id FROM sources WHERE workspace_id = $1 AND id = $2)",
            )
            .bind(workspace)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            let done = sqlx::query("DELETE FROM sources WHERE workspace_id = $1 AND id = $2")
                .bind(workspace)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("source {id}")));
            }
            tx.commit().await.map_err(backend)
        })
    }

    fn sources(&self, workspace: &str) -> Result<Vec<Source>> {
        self.rows(
            sql!(
                "SELECT {SOURCE_COLS} FROM sources WHERE workspace_id = $1 ORDER BY created_at, id"
            ),
            workspace,
            to_source,
        )
    }

    fn source_by_key_hash(&self, key_hash: &str) -> Result<Option<KeyGrant>> {
        Ok(self
            .rows(
                "SELECT s.id, s.workspace_id, s.name, s.channel, s.created_at, s.allowed_origins,
                        s.webhook, s.tracking_plan, k.expires_at
                 FROM write_keys k JOIN sources s ON s.id = k.source_id WHERE k.hash = $1",
                key_hash,
                |r| {
                    Ok(KeyGrant {
                        source: to_source(r)?,
                        expires_at: r.try_get(8).map_err(backend)?,
                    })
                },
            )?
            .pop())
    }

    fn write_keys(&self, workspace: &str, source: &str) -> Result<Vec<WriteKey>> {
        let rows = self
            .run(
                sqlx::query(
                    "SELECT k.hash, k.created_at, k.expires_at FROM write_keys k
                     JOIN sources s ON s.id = k.source_id
                     WHERE s.workspace_id = $1 AND s.id = $2 ORDER BY k.created_at, k.hash",
                )
                .bind(workspace)
                .bind(source)
                .fetch_all(&self.pool),
            )
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                let hash: String = r.try_get(0).map_err(backend)?;
                Ok(WriteKey {
                    fingerprint: hash.chars().take(12).collect(),
                    created_at: r.try_get(1).map_err(backend)?,
                    expires_at: r.try_get(2).map_err(backend)?,
                })
            })
            .collect()
    }

    fn rotate_write_key(
        &self,
        workspace: &str,
        source: &str,
        new_hash: &str,
        now: Millis,
        old_until: Millis,
    ) -> Result<()> {
        self.run(async {
            let mut tx = self.pool.begin().await.map_err(backend)?;
            let done = sqlx::query(
                "UPDATE write_keys SET expires_at = LEAST(COALESCE(expires_at, $3), $3)
                 WHERE source_id IN (SELECT id FROM sources WHERE workspace_id = $1 AND id = $2)",
            )
            .bind(workspace)
            .bind(source)
            .bind(old_until)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("source {source}")));
            }
            sqlx::query("INSERT INTO write_keys (hash, source_id, created_at) VALUES ($1, $2, $3)")
                .bind(new_hash)
                .bind(source)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(|e| conflict_or_backend(e, "write key"))?;
            tx.commit().await.map_err(backend)
        })
    }

    fn create_token(&self, t: &Token, token_hash: &str) -> Result<()> {
        self.run(
            sqlx::query(
                "INSERT INTO tokens (id, workspace_id, name, role, instance_admin, token_hash, created_at, expires_at, scopes)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&t.id)
            .bind(&t.workspace_id)
            .bind(&t.name)
            .bind(t.role.as_str())
            .bind(t.instance_admin)
            .bind(token_hash)
            .bind(t.created_at)
            .bind(t.expires_at)
            .bind(to_json(&Some(&t.scopes).filter(|s| !s.is_empty()))?)
            .execute(&self.pool),
        )
        .map_err(|e| conflict_or_backend(e, "token"))?;
        Ok(())
    }

    fn record_plan_violations(&self, workspace: &str, lines: &[PlanViolationCount]) -> Result<()> {
        self.run(async {
            let mut tx = self.pool.begin().await.map_err(backend)?;
            for l in lines {
                sqlx::query(
                    "INSERT INTO plan_violations
                         (workspace_id, source_id, event, field, kind, count, first_seen, last_seen, example)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                     ON CONFLICT (workspace_id, source_id, event, field, kind) DO UPDATE SET
                         count = plan_violations.count + excluded.count,
                         last_seen = GREATEST(plan_violations.last_seen, excluded.last_seen),
                         example = excluded.example",
                )
                .bind(workspace)
                .bind(&l.source_id)
                .bind(&l.event)
                .bind(&l.field)
                .bind(&l.kind)
                .bind(l.count as i64)
                .bind(l.first_seen)
                .bind(l.last_seen)
                .bind(&l.example)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            }
            tx.commit().await.map_err(backend)
        })
    }

    fn plan_violations(&self, workspace: &str) -> Result<Vec<PlanViolationCount>> {
        self.rows(
            "SELECT source_id, event, field, kind, count, first_seen, last_seen, example
             FROM plan_violations WHERE workspace_id = $1
             ORDER BY count DESC, source_id, event, field, kind LIMIT 1000",
            workspace,
            |r| {
                Ok(PlanViolationCount {
                    source_id: r.try_get(0).map_err(backend)?,
                    event: r.try_get(1).map_err(backend)?,
                    field: r.try_get(2).map_err(backend)?,
                    kind: r.try_get(3).map_err(backend)?,
                    count: r.try_get::<i64, _>(4).map_err(backend)? as u64,
                    first_seen: r.try_get(5).map_err(backend)?,
                    last_seen: r.try_get(6).map_err(backend)?,
                    example: r.try_get(7).map_err(backend)?,
                })
            },
        )
    }

    fn token_language(&self, token_id: &str) -> Result<Option<String>> {
        self.run(
            sqlx::query_scalar("SELECT language FROM token_languages WHERE token_id = $1")
                .bind(token_id)
                .fetch_optional(&self.pool),
        )
        .map_err(backend)
    }

    fn set_token_language(&self, token_id: &str, language: &str) -> Result<()> {
        let done = self
            .run(
                sqlx::query(
                    "INSERT INTO token_languages (token_id, language)
                     SELECT id, $2 FROM tokens WHERE id = $1
                     ON CONFLICT (token_id) DO UPDATE SET language = excluded.language",
                )
                .bind(token_id)
                .bind(language)
                .execute(&self.pool),
            )
            .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("token {token_id}")));
        }
        Ok(())
    }

    fn expire_token(&self, workspace: &str, id: &str, at: Millis) -> Result<()> {
        let done = self
            .run(
                sqlx::query(
                    "UPDATE tokens SET expires_at = LEAST(COALESCE(expires_at, $3), $3)
                     WHERE workspace_id = $1 AND id = $2",
                )
                .bind(workspace)
                .bind(id)
                .bind(at)
                .execute(&self.pool),
            )
            .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("token {id}")));
        }
        Ok(())
    }

    fn tokens(&self, workspace: &str) -> Result<Vec<Token>> {
        self.rows(
            sql!("SELECT {TOKEN_COLS} FROM tokens WHERE workspace_id = $1 ORDER BY created_at, id"),
            workspace,
            to_token,
        )
    }

    fn token_by_hash(&self, token_hash: &str) -> Result<Option<Token>> {
        Ok(self
            .rows(
                sql!("SELECT {TOKEN_COLS} FROM tokens WHERE token_hash = $1"),
                token_hash,
                to_token,
            )?
            .pop())
    }
}
