//! Privacy requests, erasure, the suppression list and the audit log.

use parcours_core::privacy::scrub_json;
use parcours_core::time::Millis;
use parcours_store::{
    render, webhook_with_secret, with_members, without_bodies, AuditEntry, Dialect, Erased,
    Erasure, List, Privacy, PrivacyRequest, Result, RetentionRun, SecretHolder, Side, StoreError,
    StoredSecret, ERASE_STEPS, HER_BATCHES, HER_LOYALTY, HER_ORDERS, HER_PROFILE_EVENTS,
    MESSAGE_LANES, ORDER_DROP_KEYS,
};
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{Postgres, Row};

use crate::{backend, PgStore};

const REQUEST: &str = "id, workspace_id, kind, identifier_type, identifier, state, received_at, \
     deadline, extension_reason, done_at, result, requested_by";

fn request(r: &PgRow) -> Result<PrivacyRequest> {
    Ok(PrivacyRequest {
        id: r.try_get(0).map_err(backend)?,
        workspace_id: r.try_get(1).map_err(backend)?,
        kind: r.try_get(2).map_err(backend)?,
        identifier_type: r.try_get(3).map_err(backend)?,
        identifier: r.try_get(4).map_err(backend)?,
        state: r.try_get(5).map_err(backend)?,
        received_at: r.try_get(6).map_err(backend)?,
        deadline: r.try_get(7).map_err(backend)?,
        extension_reason: r.try_get(8).map_err(backend)?,
        done_at: r.try_get(9).map_err(backend)?,
        result: r.try_get(10).map_err(backend)?,
        requested_by: r.try_get(11).map_err(backend)?,
    })
}

fn audit(r: &PgRow) -> Result<AuditEntry> {
    Ok(AuditEntry {
        id: r.try_get(0).map_err(backend)?,
        workspace_id: r.try_get(1).map_err(backend)?,
        at: r.try_get(2).map_err(backend)?,
        actor: r.try_get(3).map_err(backend)?,
        action: r.try_get(4).map_err(backend)?,
        target: r.try_get(5).map_err(backend)?,
        detail: r.try_get(6).map_err(backend)?,
    })
}

/// A rendered statement with the workspace and the lists it names bound in order.
fn bound(
    sql: &str,
    workspace: &str,
    lists: &[(&'static str, List)],
) -> std::result::Result<(String, Vec<Bind>), StoreError> {
    let r = render(sql, Dialect::Postgres);
    let binds = r
        .params
        .iter()
        .map(|name| {
            if name == "ws" {
                return Ok(Bind::Text(workspace.to_string()));
            }
            match lists.iter().find(|(n, _)| n == name) {
                Some((_, List::Texts(v))) => Ok(Bind::Texts(v.clone())),
                Some((_, List::Numbers(v))) => Ok(Bind::Numbers(v.clone())),
                None => Err(StoreError::Backend(format!("no list {name}"))),
            }
        })
        .collect::<Result<_>>()?;
    Ok((r.sql, binds))
}

enum Bind {
    Text(String),
    Texts(Vec<String>),
    Numbers(Vec<i64>),
}

fn query<'q>(sql: &'q str, binds: &[Bind]) -> Query<'q, Postgres, PgArguments> {
    binds.iter().fold(sqlx::query(sql), |q, b| match b {
        Bind::Text(v) => q.bind(v.clone()),
        Bind::Texts(v) => q.bind(v.clone()),
        Bind::Numbers(v) => q.bind(v.clone()),
    })
}

impl PgStore {
    async fn erase_in(&self, e: &Erasure) -> std::result::Result<Erased, StoreError> {
        let ws = e.workspace_id.as_str();
        let mut erased = Erased::default();
        let (sql, binds) = bound(HER_PROFILE_EVENTS, ws, &e.lists(vec![]))?;
        let seqs: Vec<i64> = query(&sql, &binds)
            .fetch_all(self.pool())
            .await
            .map_err(backend)?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<_, _>>()
            .map_err(backend)?;
        let lists = e.lists(seqs);
        let mut tx = self.pool().begin().await.map_err(backend)?;

        let (sql, binds) = bound(HER_ORDERS, ws, &lists)?;
        let orders = query(&sql, &binds)
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
        let mut members = e.identifiers.clone();
        for row in &orders {
            if let Some(m) = row.try_get::<Option<String>, _>(2).map_err(backend)? {
                members.push(m);
            }
        }
        let lists = with_members(&lists, members.clone());
        for row in orders {
            let id: String = row.try_get(0).map_err(backend)?;
            let body: String = row.try_get(1).map_err(backend)?;
            let body = scrub_json(&body, &e.scrub, ORDER_DROP_KEYS).unwrap_or(body);
            sqlx::query(
                "UPDATE commerce_orders SET member = NULL, body = $3 WHERE workspace_id = $1 AND id = $2",
            )
            .bind(ws)
            .bind(id)
            .bind(body)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            erased.scrub("commerce_orders", 1);
        }
        let (sql, binds) = bound(HER_LOYALTY, ws, &lists)?;
        for row in query(&sql, &binds)
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?
        {
            let seq: i64 = row.try_get(0).map_err(backend)?;
            let member: String = row.try_get(1).map_err(backend)?;
            let body: String = row.try_get(2).map_err(backend)?;
            let member = if members.contains(&member) {
                e.pseudonym.clone()
            } else {
                member
            };
            let body = scrub_json(&body, &e.scrub, &[]).unwrap_or(body);
            sqlx::query("UPDATE loyalty_entries SET member = $2, body = $3 WHERE seq = $1")
                .bind(seq)
                .bind(member)
                .bind(body)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            erased.scrub("loyalty_entries", 1);
        }
        let (sql, binds) = bound(HER_BATCHES, ws, &lists)?;
        for row in query(&sql, &binds)
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?
        {
            let id: i64 = row.try_get(0).map_err(backend)?;
            let payload: String = row.try_get(1).map_err(backend)?;
            if let Some(payload) = scrub_json(&payload, &e.scrub, &[]) {
                sqlx::query("UPDATE outbox SET payload = $2 WHERE id = $1")
                    .bind(id)
                    .bind(payload)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                erased.scrub("outbox", 1);
            }
        }
        for (hash, kind) in &e.suppress {
            sqlx::query(
                "INSERT INTO erased_identifiers (workspace_id, hash, kind, at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING",
            )
            .bind(ws)
            .bind(hash)
            .bind(kind)
            .bind(e.at)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        // One database: the log's statements and the projections' in one transaction.
        for side in [Side::Log, Side::Projections] {
            for step in ERASE_STEPS.iter().filter(|s| s.side == side) {
                let (sql, binds) = bound(step.sql, ws, &lists)?;
                let n = query(&sql, &binds)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?
                    .rows_affected();
                if step.scrubs {
                    erased.scrub(step.table, n);
                } else {
                    erased.delete(step.table, n);
                }
            }
        }
        tx.commit().await.map_err(backend)?;
        Ok(erased)
    }
}

impl PgStore {
    /// Runs a `DELETE … LIMIT`-style statement until it deletes nothing.
    async fn delete_in_batches<'q>(
        &self,
        sql: &'q str,
        bind: impl Fn(Query<'q, Postgres, PgArguments>) -> Query<'q, Postgres, PgArguments>,
    ) -> std::result::Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let n = bind(sqlx::query(sql))
                .execute(self.pool())
                .await
                .map_err(backend)?
                .rows_affected();
            total += n;
            if n == 0 {
                return Ok(total);
            }
        }
    }

    async fn retention_in(&self, r: &RetentionRun) -> std::result::Result<Erased, StoreError> {
        let ws = r.workspace_id.as_str();
        let mut out = Erased::default();
        let names: Vec<String> = r.events_by_name.iter().map(|(n, _)| n.clone()).collect();
        let types: Vec<String> = r.events_by_type.iter().map(|(t, _)| t.clone()).collect();
        let mut events = 0;
        for (name, before) in &r.events_by_name {
            events += self
                .delete_in_batches(
                    "DELETE FROM events WHERE seq IN (SELECT seq FROM events
                     WHERE workspace_id = $1 AND event = $2 AND received_at < $3 LIMIT 10000)",
                    |q| q.bind(ws).bind(name).bind(before),
                )
                .await?;
        }
        for (kind, before) in &r.events_by_type {
            events += self
                .delete_in_batches(
                    "DELETE FROM events WHERE seq IN (SELECT seq FROM events
                     WHERE workspace_id = $1 AND type = $2 AND received_at < $3
                       AND (event IS NULL OR NOT (event = ANY($4))) LIMIT 10000)",
                    |q| q.bind(ws).bind(kind).bind(before).bind(&names),
                )
                .await?;
        }
        if let Some(before) = r.events_before {
            events += self
                .delete_in_batches(
                    "DELETE FROM events WHERE seq IN (SELECT seq FROM events
                     WHERE workspace_id = $1 AND received_at < $2 AND NOT (type = ANY($3))
                       AND (event IS NULL OR NOT (event = ANY($4))) LIMIT 10000)",
                    |q| q.bind(ws).bind(before).bind(&types).bind(&names),
                )
                .await?;
        }
        out.delete("events", events);
        if let Some(before) = r.quarantine_before {
            let n = sqlx::query(
                "DELETE FROM quarantine WHERE workspace_id = $1 AND coalesce(last_seen, received_at) < $2",
            )
            .bind(ws)
            .bind(before)
            .execute(self.pool())
            .await
            .map_err(backend)?
            .rows_affected();
            out.delete("quarantine", n);
        }
        if let Some(before) = r.bodies_before {
            let mut emptied = 0;
            // By id: a row whose payload cannot be emptied is not read again.
            let mut after = 0i64;
            loop {
                let rows: Vec<(i64, String)> = sqlx::query_as(
                    "SELECT id, payload FROM outbox WHERE workspace_id = $1 AND destination LIKE $2
                       AND state IN ('done', 'dead') AND created_at < $3
                       AND (strpos(payload, '\"html\"') > 0 OR strpos(payload, '\"text\"') > 0
                         OR strpos(payload, '\"subject\"') > 0 OR strpos(payload, '\"title\"') > 0)
                       AND id > $4
                     ORDER BY id LIMIT 1000",
                )
                .bind(ws)
                .bind(MESSAGE_LANES)
                .bind(before)
                .bind(after)
                .fetch_all(self.pool())
                .await
                .map_err(backend)?;
                let mut changed = 0;
                for (id, payload) in &rows {
                    if let Some(p) = without_bodies(payload) {
                        sqlx::query("UPDATE outbox SET payload = $2 WHERE id = $1")
                            .bind(id)
                            .bind(p)
                            .execute(self.pool())
                            .await
                            .map_err(backend)?;
                        changed += 1;
                    }
                }
                emptied += changed;
                match rows.last() {
                    Some((id, _)) if rows.len() == 1000 => after = *id,
                    _ => break,
                }
            }
            out.delete("message bodies", emptied);
        }
        if let Some(before) = r.messages_before {
            for (table, sql) in [
                (
                    "outbox",
                    "DELETE FROM outbox WHERE workspace_id = $1 AND destination LIKE 'channel:%'
                     AND state IN ('done', 'dead') AND created_at < $2",
                ),
                (
                    "message_receipts",
                    "DELETE FROM message_receipts WHERE workspace_id = $1 AND at < $2",
                ),
            ] {
                let n = sqlx::query(sql)
                    .bind(ws)
                    .bind(before)
                    .execute(self.pool())
                    .await
                    .map_err(backend)?
                    .rows_affected();
                out.delete(table, n);
            }
        }
        if let Some(before) = r.contacts_before {
            let n = sqlx::query("DELETE FROM journey_contacts WHERE workspace_id = $1 AND at < $2")
                .bind(ws)
                .bind(before)
                .execute(self.pool())
                .await
                .map_err(backend)?
                .rows_affected();
            out.delete("journey_contacts", n);
        }
        if let Some(before) = r.deliveries_before {
            let n = sqlx::query(
                "DELETE FROM outbox WHERE workspace_id = $1
                 AND (destination LIKE 'webhook:%' OR destination = 'journey:webhook')
                 AND state IN ('done', 'dead') AND coalesce(settled_at, created_at) < $2",
            )
            .bind(ws)
            .bind(before)
            .execute(self.pool())
            .await
            .map_err(backend)?
            .rows_affected();
            out.delete("deliveries", n);
        }
        Ok(out)
    }
}

impl Privacy for PgStore {
    fn apply_retention(&self, r: &RetentionRun) -> Result<Erased> {
        self.run(self.retention_in(r))
    }

    fn erase(&self, e: &Erasure) -> Result<Erased> {
        self.run(self.erase_in(e))
    }

    fn compact(&self) -> Result<()> {
        // Dead rows are read by nothing once vacuumed; whole tables, so every partition.
        self.run(async {
            sqlx::raw_sql("VACUUM")
                .execute(self.pool())
                .await
                .map_err(backend)
        })?;
        Ok(())
    }

    fn her_orders(&self, person: &Erasure) -> Result<Vec<(String, Option<String>)>> {
        let lists = person.lists(vec![]);
        let (sql, binds) = bound(HER_ORDERS, &person.workspace_id, &lists)?;
        let rows = self
            .run(query(&sql, &binds).fetch_all(self.pool()))
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<String, _>(1).map_err(backend)?,
                    r.try_get::<Option<String>, _>(2).map_err(backend)?,
                ))
            })
            .collect()
    }

    fn suppressed_hashes(&self, workspace: &str) -> Result<Vec<String>> {
        self.run(
            sqlx::query_scalar("SELECT hash FROM erased_identifiers WHERE workspace_id = $1")
                .bind(workspace)
                .fetch_all(self.pool()),
        )
        .map_err(backend)
    }

    fn count_refused(&self, workspace: &str, hash: &str, events: u64) -> Result<()> {
        self.run(
            sqlx::query(
                "UPDATE erased_identifiers SET refused = refused + $3 WHERE workspace_id = $1 AND hash = $2",
            )
            .bind(workspace)
            .bind(hash)
            .bind(events as i64)
            .execute(self.pool()),
        )
        .map_err(backend)?;
        Ok(())
    }

    fn suppression_counts(&self, workspace: &str) -> Result<(u64, u64)> {
        let (n, refused): (i64, i64) = self
            .run(
                sqlx::query_as(
                    "SELECT count(*), coalesce(sum(refused), 0)::bigint FROM erased_identifiers WHERE workspace_id = $1",
                )
                .bind(workspace)
                .fetch_one(self.pool()),
            )
            .map_err(backend)?;
        Ok((n.max(0) as u64, refused.max(0) as u64))
    }

    fn save_privacy_request(&self, r: &PrivacyRequest, archive: Option<&[u8]>) -> Result<()> {
        self.run(
            sqlx::query(&format!(
                "INSERT INTO privacy_requests ({REQUEST}, archive)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                 ON CONFLICT (workspace_id, id) DO UPDATE SET identifier = excluded.identifier,
                   state = excluded.state, deadline = excluded.deadline,
                   extension_reason = excluded.extension_reason, done_at = excluded.done_at,
                   result = excluded.result,
                   archive = coalesce(excluded.archive, privacy_requests.archive)"
            ))
            .bind(&r.id)
            .bind(&r.workspace_id)
            .bind(&r.kind)
            .bind(&r.identifier_type)
            .bind(&r.identifier)
            .bind(&r.state)
            .bind(r.received_at)
            .bind(&r.deadline)
            .bind(&r.extension_reason)
            .bind(r.done_at)
            .bind(&r.result)
            .bind(&r.requested_by)
            .bind(archive)
            .execute(self.pool()),
        )
        .map_err(backend)?;
        Ok(())
    }

    fn privacy_request(&self, workspace: &str, id: &str) -> Result<Option<PrivacyRequest>> {
        let row = self
            .run(
                sqlx::query(&format!(
                    "SELECT {REQUEST} FROM privacy_requests WHERE workspace_id = $1 AND id = $2"
                ))
                .bind(workspace)
                .bind(id)
                .fetch_optional(self.pool()),
            )
            .map_err(backend)?;
        row.as_ref().map(request).transpose()
    }

    fn privacy_requests(&self, workspace: &str, limit: usize) -> Result<Vec<PrivacyRequest>> {
        let rows = self
            .run(
                sqlx::query(&format!(
                    "SELECT {REQUEST} FROM privacy_requests WHERE workspace_id = $1
                     ORDER BY received_at DESC, id DESC LIMIT $2"
                ))
                .bind(workspace)
                .bind(limit as i64)
                .fetch_all(self.pool()),
            )
            .map_err(backend)?;
        rows.iter().map(request).collect()
    }

    fn open_privacy_requests(&self) -> Result<Vec<PrivacyRequest>> {
        let rows = self
            .run(
                sqlx::query(&format!(
                    "SELECT {REQUEST} FROM privacy_requests WHERE state IN ('received', 'in_progress')
                     ORDER BY received_at"
                ))
                .fetch_all(self.pool()),
            )
            .map_err(backend)?;
        rows.iter().map(request).collect()
    }

    fn privacy_archive(&self, workspace: &str, id: &str) -> Result<Option<Vec<u8>>> {
        let archive: Option<Option<Vec<u8>>> = self
            .run(
                sqlx::query_scalar(
                    "SELECT archive FROM privacy_requests WHERE workspace_id = $1 AND id = $2",
                )
                .bind(workspace)
                .bind(id)
                .fetch_optional(self.pool()),
            )
            .map_err(backend)?;
        Ok(archive.flatten())
    }

    fn workspace_setting(&self, workspace: &str, name: &str) -> Result<Option<String>> {
        self.run(
            sqlx::query_scalar(
                "SELECT value FROM workspace_settings WHERE workspace_id = $1 AND name = $2",
            )
            .bind(workspace)
            .bind(name)
            .fetch_optional(self.pool()),
        )
        .map_err(backend)
    }

    fn stored_secrets(&self, settings: &[&str]) -> Result<Vec<StoredSecret>> {
        self.run(async {
            let pool = self.pool();
            let rows: Vec<(String, String, String)> = sqlx::query_as(
                "SELECT workspace_id, id, doc->>'secret' FROM definitions
                 WHERE kind = 'destination' AND doc->>'secret' IS NOT NULL",
            )
            .fetch_all(pool)
            .await?;
            let mut out: Vec<StoredSecret> = rows
                .into_iter()
                .map(StoredSecret::of(SecretHolder::Destination))
                .collect();
            let sources: Vec<(String, String, String)> = sqlx::query_as(
                "SELECT workspace_id, id, webhook FROM sources WHERE webhook IS NOT NULL",
            )
            .fetch_all(pool)
            .await?;
            out.extend(sources.into_iter().filter_map(StoredSecret::of_source));
            let rows: Vec<(String, String, String)> = sqlx::query_as(
                "SELECT workspace_id, name, value FROM workspace_settings WHERE name = ANY($1)",
            )
            .bind(settings)
            .fetch_all(pool)
            .await?;
            out.extend(
                rows.into_iter()
                    .map(StoredSecret::of(SecretHolder::Setting)),
            );
            out.sort();
            Ok::<_, sqlx::Error>(out)
        })
        .map_err(backend)
    }

    fn replace_stored_secret(&self, secret: &StoredSecret, value: &str) -> Result<bool> {
        let s = secret;
        self.run(async {
            let pool = self.pool();
            // Where the secret is one value of a row, it is replaced if it is still the same.
            let sql = match s.holder {
                SecretHolder::Destination => {
                    "UPDATE definitions SET doc = jsonb_set(doc, '{secret}', to_jsonb($4::text))
                     WHERE workspace_id = $1 AND kind = 'destination' AND id = $2
                       AND doc->>'secret' = $3"
                }
                SecretHolder::Setting => {
                    "UPDATE workspace_settings SET value = $4
                     WHERE workspace_id = $1 AND name = $2 AND value = $3"
                }
                // In a source's document: the whole document, if it is still the same.
                SecretHolder::Source => {
                    let stored: Option<Option<String>> = sqlx::query_scalar(
                        "SELECT webhook FROM sources WHERE workspace_id = $1 AND id = $2",
                    )
                    .bind(&s.workspace_id)
                    .bind(&s.id)
                    .fetch_optional(pool)
                    .await?;
                    let Some((stored, again)) = stored.flatten().and_then(|w| {
                        let again = webhook_with_secret(&w, &s.value, value)?;
                        Some((w, again))
                    }) else {
                        return Ok(false);
                    };
                    let n = sqlx::query(
                        "UPDATE sources SET webhook = $4 WHERE workspace_id = $1 AND id = $2 AND webhook = $3",
                    )
                    .bind(&s.workspace_id)
                    .bind(&s.id)
                    .bind(stored)
                    .bind(again)
                    .execute(pool)
                    .await?
                    .rows_affected();
                    return Ok(n == 1);
                }
            };
            let done = sqlx::query(sql)
                .bind(&s.workspace_id)
                .bind(&s.id)
                .bind(&s.value)
                .bind(value)
                .execute(pool)
                .await?
                .rows_affected();
            Ok::<_, sqlx::Error>(done == 1)
        })
        .map_err(backend)
    }

    fn put_workspace_setting(
        &self,
        workspace: &str,
        name: &str,
        value: &str,
        at: Millis,
    ) -> Result<()> {
        self.run(
            sqlx::query(
                "INSERT INTO workspace_settings (workspace_id, name, value, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (workspace_id, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            )
            .bind(workspace)
            .bind(name)
            .bind(value)
            .bind(at)
            .execute(self.pool()),
        )
        .map_err(backend)?;
        Ok(())
    }

    fn init_workspace_setting(
        &self,
        workspace: &str,
        name: &str,
        value: &str,
        at: Millis,
    ) -> Result<String> {
        self.run(async {
            sqlx::query(
                "INSERT INTO workspace_settings (workspace_id, name, value, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING",
            )
            .bind(workspace)
            .bind(name)
            .bind(value)
            .bind(at)
            .execute(self.pool())
            .await?;
            sqlx::query_scalar(
                "SELECT value FROM workspace_settings WHERE workspace_id = $1 AND name = $2",
            )
            .bind(workspace)
            .bind(name)
            .fetch_one(self.pool())
            .await
        })
        .map_err(backend)
    }

    fn append_audit(&self, e: &AuditEntry) -> Result<i64> {
        self.run(
            sqlx::query_scalar(
                "INSERT INTO audit_log (workspace_id, at, actor, action, target, detail)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(&e.workspace_id)
            .bind(e.at)
            .bind(&e.actor)
            .bind(&e.action)
            .bind(&e.target)
            .bind(&e.detail)
            .fetch_one(self.pool()),
        )
        .map_err(backend)
    }

    fn audit_log(&self, workspace: &str, after_id: i64, limit: usize) -> Result<Vec<AuditEntry>> {
        let rows = self
            .run(
                sqlx::query(
                    "SELECT id, workspace_id, at, actor, action, target, detail FROM audit_log
                     WHERE workspace_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                )
                .bind(workspace)
                .bind(after_id)
                .bind(limit as i64)
                .fetch_all(self.pool()),
            )
            .map_err(backend)?;
        rows.iter().map(audit).collect()
    }

    fn audit_log_newest(
        &self,
        workspace: &str,
        before_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>> {
        let rows = self
            .run(
                sqlx::query(
                    "SELECT id, workspace_id, at, actor, action, target, detail FROM audit_log
                     WHERE workspace_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
                )
                .bind(workspace)
                .bind(before_id.unwrap_or(i64::MAX))
                .bind(limit as i64)
                .fetch_all(self.pool()),
            )
            .map_err(backend)?;
        rows.iter().map(audit).collect()
    }
}
