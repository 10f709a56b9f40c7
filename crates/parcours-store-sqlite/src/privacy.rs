//! Privacy requests, erasure, the suppression list and the audit log. Requests, the list
//! and the log live in the log's file; an erasure runs in both files, then rewrites them.

use parcours_core::privacy::scrub_json;
use parcours_core::time::Millis;
use parcours_store::{
    render, webhook_with_secret, with_members, without_bodies, AuditEntry, Dialect, Erased,
    Erasure, List, Privacy, PrivacyRequest, Result, RetentionRun, SecretHolder, Side, StoreError,
    StoredSecret, ERASE_STEPS, HER_BATCHES, HER_LOYALTY, HER_ORDERS, HER_PROFILE_EVENTS,
    MESSAGE_LANES, ORDER_DROP_KEYS,
};
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::{backend, SqliteStore};

const REQUEST: &str = "id, workspace_id, kind, identifier_type, identifier, state, received_at, \
     deadline, extension_reason, done_at, result, requested_by";

fn request(r: &Row<'_>) -> rusqlite::Result<PrivacyRequest> {
    Ok(PrivacyRequest {
        id: r.get(0)?,
        workspace_id: r.get(1)?,
        kind: r.get(2)?,
        identifier_type: r.get(3)?,
        identifier: r.get(4)?,
        state: r.get(5)?,
        received_at: r.get(6)?,
        deadline: r.get(7)?,
        extension_reason: r.get(8)?,
        done_at: r.get(9)?,
        result: r.get(10)?,
        requested_by: r.get(11)?,
    })
}

fn audit(r: &Row<'_>) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
        id: r.get(0)?,
        workspace_id: r.get(1)?,
        at: r.get(2)?,
        actor: r.get(3)?,
        action: r.get(4)?,
        target: r.get(5)?,
        detail: r.get(6)?,
    })
}

/// Prepares `sql` (rendered) and binds the workspace and the lists it names.
fn bound<'c>(
    conn: &'c Connection,
    sql: &str,
    workspace: &str,
    lists: &[(&'static str, List)],
) -> Result<rusqlite::CachedStatement<'c>> {
    let r = render(sql, Dialect::Sqlite);
    let mut st = conn.prepare_cached(&r.sql).map_err(backend)?;
    for name in &r.params {
        let i = st
            .parameter_index(&format!(":{name}"))
            .map_err(backend)?
            .ok_or_else(|| StoreError::Backend(format!("no parameter :{name}")))?;
        if name == "ws" {
            st.raw_bind_parameter(i, workspace).map_err(backend)?;
            continue;
        }
        let list = lists
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, l)| l)
            .ok_or_else(|| StoreError::Backend(format!("no list {name}")))?;
        let json = match list {
            List::Texts(v) => serde_json::to_string(v),
            List::Numbers(v) => serde_json::to_string(v),
        }
        .map_err(|e| StoreError::Backend(e.to_string()))?;
        st.raw_bind_parameter(i, json).map_err(backend)?;
    }
    Ok(st)
}

/// Runs every step of `side` in one transaction on `conn`, with the documents kept without
/// her rewritten in it.
fn erase_side(
    conn: &mut Connection,
    side: Side,
    e: &Erasure,
    lists: &[(&'static str, List)],
) -> Result<Erased> {
    let ws = e.workspace_id.as_str();
    let mut erased = Erased::default();
    let tx = conn.transaction().map_err(backend)?;
    if side == Side::Log {
        let orders: Vec<(String, String, Option<String>)> = bound(&tx, HER_ORDERS, ws, lists)?
            .raw_query()
            .mapped(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .collect::<rusqlite::Result<_>>()
            .map_err(backend)?;
        let mut members = e.identifiers.clone();
        members.extend(orders.iter().filter_map(|o| o.2.clone()));
        let lists = &with_members(lists, members.clone());
        for (id, body, _) in orders {
            let body = scrub_json(&body, &e.scrub, ORDER_DROP_KEYS).unwrap_or(body);
            tx.execute(
                "UPDATE commerce_orders SET member = NULL, body = ?3 WHERE workspace_id = ?1 AND id = ?2",
                params![ws, id, body],
            )
            .map_err(backend)?;
            erased.scrub("commerce_orders", 1);
        }
        let entries: Vec<(i64, String, String)> = bound(&tx, HER_LOYALTY, ws, lists)?
            .raw_query()
            .mapped(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .collect::<rusqlite::Result<_>>()
            .map_err(backend)?;
        for (seq, member, body) in entries {
            let member = if members.contains(&member) {
                e.pseudonym.clone()
            } else {
                member
            };
            let body = scrub_json(&body, &e.scrub, &[]).unwrap_or(body);
            tx.execute(
                "UPDATE loyalty_entries SET member = ?2, body = ?3 WHERE seq = ?1",
                params![seq, member, body],
            )
            .map_err(backend)?;
            erased.scrub("loyalty_entries", 1);
        }
        for step in ERASE_STEPS.iter().filter(|s| s.side == side) {
            run_step(&tx, step, ws, lists, &mut erased)?;
        }
        for (hash, kind) in &e.suppress {
            tx.execute(
                "INSERT INTO erased_identifiers (workspace_id, hash, kind, at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO NOTHING",
                params![ws, hash, kind, e.at],
            )
            .map_err(backend)?;
        }
    } else {
        let batches: Vec<(i64, String)> = bound(&tx, HER_BATCHES, ws, lists)?
            .raw_query()
            .mapped(|r| Ok((r.get(0)?, r.get(1)?)))
            .collect::<rusqlite::Result<_>>()
            .map_err(backend)?;
        for (id, payload) in batches {
            if let Some(payload) = scrub_json(&payload, &e.scrub, &[]) {
                tx.execute(
                    "UPDATE outbox SET payload = ?2 WHERE id = ?1",
                    params![id, payload],
                )
                .map_err(backend)?;
                erased.scrub("outbox", 1);
            }
        }
        for step in ERASE_STEPS.iter().filter(|s| s.side == side) {
            run_step(&tx, step, ws, lists, &mut erased)?;
        }
    }
    tx.commit().map_err(backend)?;
    Ok(erased)
}

fn run_step(
    conn: &Connection,
    step: &parcours_store::EraseStep,
    ws: &str,
    lists: &[(&'static str, List)],
    erased: &mut Erased,
) -> Result<()> {
    let n = bound(conn, step.sql, ws, lists)?
        .raw_execute()
        .map_err(backend)? as u64;
    if step.scrubs {
        erased.scrub(step.table, n);
    } else {
        erased.delete(step.table, n);
    }
    Ok(())
}

/// `VACUUM` then a truncating checkpoint, retried while readers hold the old pages.
fn rewrite(conn: &Connection) -> Result<()> {
    conn.execute_batch("VACUUM").map_err(backend)?;
    for _ in 0..200 {
        let busy: i64 = conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .map_err(backend)?;
        if busy == 0 {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Err(StoreError::Backend(
        "the write-ahead log could not be truncated: readers kept it busy for 10 s".into(),
    ))
}

/// Runs a `DELETE … WHERE rowid-ish IN (SELECT … LIMIT n)` until it deletes nothing, each
/// batch its own transaction (a long retention round never holds the writer for long).
fn in_batches(
    store: &SqliteStore,
    projections: bool,
    sql: &str,
    params: &[&dyn rusqlite::ToSql],
) -> Result<u64> {
    let mut total = 0;
    loop {
        let n = if projections {
            store.projection_writer().execute(sql, params)
        } else {
            store.writer().execute(sql, params)
        }
        .map_err(backend)? as u64;
        total += n;
        if n == 0 {
            return Ok(total);
        }
    }
}

impl Privacy for SqliteStore {
    fn apply_retention(&self, r: &RetentionRun) -> Result<Erased> {
        let ws = r.workspace_id.as_str();
        let mut out = Erased::default();
        let json = |v: Vec<&str>| serde_json::to_string(&v).unwrap_or_else(|_| "[]".into());
        let names = json(r.events_by_name.iter().map(|(n, _)| n.as_str()).collect());
        let types = json(r.events_by_type.iter().map(|(t, _)| t.as_str()).collect());
        let mut events = 0;
        for (name, before) in &r.events_by_name {
            events += in_batches(
                self,
                false,
                "DELETE FROM events WHERE seq IN (SELECT seq FROM events
                 WHERE workspace_id = ?1 AND event = ?2 AND received_at < ?3 LIMIT 10000)",
                &[&ws, name, before],
            )?;
        }
        for (kind, before) in &r.events_by_type {
            events += in_batches(
                self,
                false,
                "DELETE FROM events WHERE seq IN (SELECT seq FROM events
                 WHERE workspace_id = ?1 AND type = ?2 AND received_at < ?3
                   AND (event IS NULL OR event NOT IN (SELECT value FROM json_each(?4))) LIMIT 10000)",
                &[&ws, kind, before, &names],
            )?;
        }
        if let Some(before) = r.events_before {
            events += in_batches(
                self,
                false,
                "DELETE FROM events WHERE seq IN (SELECT seq FROM events
                 WHERE workspace_id = ?1 AND received_at < ?2
                   AND type NOT IN (SELECT value FROM json_each(?3))
                   AND (event IS NULL OR event NOT IN (SELECT value FROM json_each(?4))) LIMIT 10000)",
                &[&ws, &before, &types, &names],
            )?;
        }
        out.delete("events", events);
        if let Some(before) = r.quarantine_before {
            let n = self
                .writer()
                .execute(
                    "DELETE FROM quarantine WHERE workspace_id = ?1 AND coalesce(last_seen, received_at) < ?2",
                    params![ws, before],
                )
                .map_err(backend)?;
            out.delete("quarantine", n as u64);
        }
        if let Some(before) = r.bodies_before {
            let mut emptied = 0;
            // By id: a row whose payload cannot be emptied is not read again.
            let mut after = 0i64;
            loop {
                let rows: Vec<(i64, String)> = self.read_projections(|c| {
                    c.prepare_cached(
                        "SELECT id, payload FROM outbox WHERE workspace_id = ?1 AND destination LIKE ?2
                           AND state IN ('done', 'dead') AND created_at < ?3
                           AND (instr(payload, '\"html\"') > 0 OR instr(payload, '\"text\"') > 0
                             OR instr(payload, '\"subject\"') > 0 OR instr(payload, '\"title\"') > 0)
                           AND id > ?4
                         ORDER BY id LIMIT 1000",
                    )
                    .and_then(|mut st| {
                        st.query_map(params![ws, MESSAGE_LANES, before, after], |r| {
                            Ok((r.get(0)?, r.get(1)?))
                        })?
                        .collect()
                    })
                    .map_err(backend)
                })?;
                let mut changed = 0;
                let conn = self.projection_writer();
                for (id, payload) in &rows {
                    if let Some(p) = without_bodies(payload) {
                        conn.execute(
                            "UPDATE outbox SET payload = ?2 WHERE id = ?1",
                            params![id, p],
                        )
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
            let conn = self.projection_writer();
            let n = conn
                .execute(
                    "DELETE FROM outbox WHERE workspace_id = ?1 AND destination LIKE ?2
                     AND state IN ('done', 'dead') AND created_at < ?3",
                    params![ws, MESSAGE_LANES, before],
                )
                .map_err(backend)?;
            out.delete("outbox", n as u64);
            let n = conn
                .execute(
                    "DELETE FROM message_receipts WHERE workspace_id = ?1 AND at < ?2",
                    params![ws, before],
                )
                .map_err(backend)?;
            out.delete("message_receipts", n as u64);
        }
        if let Some(before) = r.contacts_before {
            let n = self
                .projection_writer()
                .execute(
                    "DELETE FROM journey_contacts WHERE workspace_id = ?1 AND at < ?2",
                    params![ws, before],
                )
                .map_err(backend)?;
            out.delete("journey_contacts", n as u64);
        }
        if let Some(before) = r.deliveries_before {
            let n = self
                .projection_writer()
                .execute(
                    "DELETE FROM outbox WHERE workspace_id = ?1
                     AND (destination LIKE 'webhook:%' OR destination = 'journey:webhook')
                     AND state IN ('done', 'dead') AND coalesce(settled_at, created_at) < ?2",
                    params![ws, before],
                )
                .map_err(backend)?;
            out.delete("deliveries", n as u64);
        }
        Ok(out)
    }

    fn erase(&self, e: &Erasure) -> Result<Erased> {
        let seqs: Vec<i64> = self.read_projections(|c| {
            bound(c, HER_PROFILE_EVENTS, &e.workspace_id, &e.lists(vec![]))?
                .raw_query()
                .mapped(|r| r.get(0))
                .collect::<rusqlite::Result<_>>()
                .map_err(backend)
        })?;
        let lists = e.lists(seqs);
        let mut erased = erase_side(&mut self.writer(), Side::Log, e, &lists)?;
        erased.merge(erase_side(
            &mut self.projection_writer(),
            Side::Projections,
            e,
            &lists,
        )?);
        Ok(erased)
    }

    fn compact(&self) -> Result<()> {
        rewrite(&self.writer())?;
        rewrite(&self.projection_writer())
    }

    fn her_orders(&self, person: &Erasure) -> Result<Vec<(String, Option<String>)>> {
        let lists = person.lists(vec![]);
        self.read(|c| {
            bound(c, HER_ORDERS, &person.workspace_id, &lists)?
                .raw_query()
                .mapped(|r| Ok((r.get(1)?, r.get(2)?)))
                .collect::<rusqlite::Result<_>>()
                .map_err(backend)
        })
    }

    fn suppressed_hashes(&self, workspace: &str) -> Result<Vec<String>> {
        self.read(|c| {
            c.prepare_cached("SELECT hash FROM erased_identifiers WHERE workspace_id = ?1")
                .and_then(|mut st| st.query_map([workspace], |r| r.get(0))?.collect())
                .map_err(backend)
        })
    }

    fn count_refused(&self, workspace: &str, hash: &str, events: u64) -> Result<()> {
        self.writer()
            .execute(
                "UPDATE erased_identifiers SET refused = refused + ?3 WHERE workspace_id = ?1 AND hash = ?2",
                params![workspace, hash, events as i64],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn suppression_counts(&self, workspace: &str) -> Result<(u64, u64)> {
        self.read(|c| {
            c.query_row(
                "SELECT count(*), coalesce(sum(refused), 0) FROM erased_identifiers WHERE workspace_id = ?1",
                [workspace],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .map_err(backend)
        })
    }

    fn save_privacy_request(&self, r: &PrivacyRequest, archive: Option<&[u8]>) -> Result<()> {
        self.writer()
            .execute(
                &format!(
                    "INSERT INTO privacy_requests ({REQUEST}, archive)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                     ON CONFLICT (workspace_id, id) DO UPDATE SET identifier = excluded.identifier,
                       state = excluded.state, deadline = excluded.deadline,
                       extension_reason = excluded.extension_reason, done_at = excluded.done_at,
                       result = excluded.result,
                       archive = coalesce(excluded.archive, privacy_requests.archive)"
                ),
                params![
                    r.id,
                    r.workspace_id,
                    r.kind,
                    r.identifier_type,
                    r.identifier,
                    r.state,
                    r.received_at,
                    r.deadline,
                    r.extension_reason,
                    r.done_at,
                    r.result,
                    r.requested_by,
                    archive
                ],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn privacy_request(&self, workspace: &str, id: &str) -> Result<Option<PrivacyRequest>> {
        self.read(|c| {
            c.query_row(
                &format!(
                    "SELECT {REQUEST} FROM privacy_requests WHERE workspace_id = ?1 AND id = ?2"
                ),
                [workspace, id],
                request,
            )
            .optional()
            .map_err(backend)
        })
    }

    fn privacy_requests(&self, workspace: &str, limit: usize) -> Result<Vec<PrivacyRequest>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {REQUEST} FROM privacy_requests WHERE workspace_id = ?1
                 ORDER BY received_at DESC, id DESC LIMIT ?2"
            ))
            .and_then(|mut st| {
                st.query_map(params![workspace, limit as i64], request)?
                    .collect()
            })
            .map_err(backend)
        })
    }

    fn open_privacy_requests(&self) -> Result<Vec<PrivacyRequest>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {REQUEST} FROM privacy_requests WHERE state IN ('received', 'in_progress')
                 ORDER BY received_at"
            ))
            .and_then(|mut st| st.query_map([], request)?.collect())
            .map_err(backend)
        })
    }

    fn privacy_archive(&self, workspace: &str, id: &str) -> Result<Option<Vec<u8>>> {
        self.read(|c| {
            c.query_row(
                "SELECT archive FROM privacy_requests WHERE workspace_id = ?1 AND id = ?2",
                [workspace, id],
                |r| r.get::<_, Option<Vec<u8>>>(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(backend)
        })
    }

    fn workspace_setting(&self, workspace: &str, name: &str) -> Result<Option<String>> {
        self.read(|c| {
            c.query_row(
                "SELECT value FROM workspace_settings WHERE workspace_id = ?1 AND name = ?2",
                [workspace, name],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)
        })
    }

    fn stored_secrets(&self, settings: &[&str]) -> Result<Vec<StoredSecret>> {
        let mut out: Vec<StoredSecret> = self.read_projections(|c| {
            c.prepare(
                "SELECT workspace_id, id, json_extract(doc, '$.secret') FROM definitions
                 WHERE kind = 'destination' AND json_extract(doc, '$.secret') IS NOT NULL",
            )
            .and_then(|mut st| {
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .map(|r| r.map(StoredSecret::of(SecretHolder::Destination)))
                    .collect()
            })
            .map_err(backend)
        })?;
        let sources: Vec<(String, String, String)> = self.read(|c| {
            c.prepare("SELECT workspace_id, id, webhook FROM sources WHERE webhook IS NOT NULL")
                .and_then(|mut st| {
                    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                        .collect()
                })
                .map_err(backend)
        })?;
        out.extend(sources.into_iter().filter_map(StoredSecret::of_source));
        for name in settings {
            let rows: Vec<(String, String, String)> = self.read(|c| {
                c.prepare(
                    "SELECT workspace_id, name, value FROM workspace_settings WHERE name = ?1",
                )
                .and_then(|mut st| {
                    st.query_map([name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                        .collect()
                })
                .map_err(backend)
            })?;
            out.extend(
                rows.into_iter()
                    .map(StoredSecret::of(SecretHolder::Setting)),
            );
        }
        out.sort();
        Ok(out)
    }

    fn replace_stored_secret(&self, secret: &StoredSecret, value: &str) -> Result<bool> {
        let s = secret;
        let n = match s.holder {
            SecretHolder::Destination => self.projection_writer().execute(
                "UPDATE definitions SET doc = json_set(doc, '$.secret', ?4)
                 WHERE workspace_id = ?1 AND kind = 'destination' AND id = ?2
                   AND json_extract(doc, '$.secret') = ?3",
                params![s.workspace_id, s.id, s.value, value],
            ),
            SecretHolder::Source => {
                let conn = self.writer();
                let stored: Option<String> = conn
                    .query_row(
                        "SELECT webhook FROM sources WHERE workspace_id = ?1 AND id = ?2",
                        [&s.workspace_id, &s.id],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(backend)?
                    .flatten();
                let Some((stored, again)) = stored.and_then(|w| {
                    let again = webhook_with_secret(&w, &s.value, value)?;
                    Some((w, again))
                }) else {
                    return Ok(false);
                };
                conn.execute(
                    "UPDATE sources SET webhook = ?4 WHERE workspace_id = ?1 AND id = ?2 AND webhook = ?3",
                    params![s.workspace_id, s.id, stored, again],
                )
            }
            SecretHolder::Setting => self.writer().execute(
                "UPDATE workspace_settings SET value = ?4
                 WHERE workspace_id = ?1 AND name = ?2 AND value = ?3",
                params![s.workspace_id, s.id, s.value, value],
            ),
        }
        .map_err(backend)?;
        Ok(n == 1)
    }

    fn put_workspace_setting(
        &self,
        workspace: &str,
        name: &str,
        value: &str,
        at: Millis,
    ) -> Result<()> {
        self.writer()
            .execute(
                "INSERT INTO workspace_settings (workspace_id, name, value, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (workspace_id, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                params![workspace, name, value, at],
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
        let conn = self.writer();
        conn.execute(
            "INSERT INTO workspace_settings (workspace_id, name, value, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO NOTHING",
            params![workspace, name, value, at],
        )
        .map_err(backend)?;
        conn.query_row(
            "SELECT value FROM workspace_settings WHERE workspace_id = ?1 AND name = ?2",
            [workspace, name],
            |r| r.get(0),
        )
        .map_err(backend)
    }

    fn append_audit(&self, e: &AuditEntry) -> Result<i64> {
        let conn = self.writer();
        conn.execute(
            "INSERT INTO audit_log (workspace_id, at, actor, action, target, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![e.workspace_id, e.at, e.actor, e.action, e.target, e.detail],
        )
        .map_err(backend)?;
        Ok(conn.last_insert_rowid())
    }

    fn audit_log(&self, workspace: &str, after_id: i64, limit: usize) -> Result<Vec<AuditEntry>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT id, workspace_id, at, actor, action, target, detail FROM audit_log
                 WHERE workspace_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
            )
            .and_then(|mut st| {
                st.query_map(params![workspace, after_id, limit as i64], audit)?
                    .collect()
            })
            .map_err(backend)
        })
    }

    fn audit_log_newest(
        &self,
        workspace: &str,
        before_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT id, workspace_id, at, actor, action, target, detail FROM audit_log
                 WHERE workspace_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
            )
            .and_then(|mut st| {
                st.query_map(
                    params![workspace, before_id.unwrap_or(i64::MAX), limit as i64],
                    audit,
                )?
                .collect()
            })
            .map_err(backend)
        })
    }
}
