//! Audience and computed-trait definitions, memberships, their change log, computed values
//! and timers, in the projections file.

use std::collections::BTreeMap;

use parcours_core::time::Millis;
use parcours_store::{
    destination_cursor, destination_lane, profile_bucket, AudienceInputs, AudienceWork,
    AudienceWrite, Audiences, Definition, DefinitionKind, Membership, MembershipChange, Result,
    StoreError, Timer, WorkScope,
};
use rusqlite::{params, OptionalExtension, Row};
use serde_json::Value;

use crate::event_log::{event_row, finish_event, EVENT_COLS};
use crate::{backend, corrupt, SqliteStore};

/// A profile's memberships. Without `INDEXED BY`, SQLite reads every membership of the
/// workspace in key order to spare itself sorting a handful of rows.
const MEMBERSHIPS_OF: &str = "SELECT audience_id, profile_id, since FROM memberships
     INDEXED BY memberships_profile WHERE workspace_id = ?1 AND profile_id = ?2 ORDER BY audience_id";

/// Rows of a [`WorkScope`] (lists bound as `?1`, `?2`, `?3` by [`scope_lists`]).
const IN_SCOPE: &str = "(bucket IN (SELECT value FROM json_each(?1))
       OR workspace_id IN (SELECT value FROM json_each(?2)))
     AND workspace_id NOT IN (SELECT value FROM json_each(?3))";

fn scope_lists(scope: &WorkScope) -> Result<(String, String, String)> {
    Ok((
        serde_json::to_string(&scope.buckets).map_err(corrupt)?,
        serde_json::to_string(&scope.whole).map_err(corrupt)?,
        serde_json::to_string(&scope.except).map_err(corrupt)?,
    ))
}

const DEFINITION_COLS: &str =
    "workspace_id, kind, id, doc, version, computed_version, done, total, created_at, updated_at";

fn definition(r: &Row<'_>) -> rusqlite::Result<(Definition, String, String)> {
    Ok((
        Definition {
            workspace_id: r.get(0)?,
            kind: DefinitionKind::Audience,
            id: r.get(2)?,
            doc: Value::Null,
            version: r.get(4)?,
            computed_version: r.get(5)?,
            done: r.get::<_, i64>(6)? as u64,
            total: r.get::<_, i64>(7)? as u64,
            created_at: r.get(8)?,
            updated_at: r.get(9)?,
        },
        r.get(1)?,
        r.get(3)?,
    ))
}

fn finish_definition((mut d, kind, doc): (Definition, String, String)) -> Result<Definition> {
    d.kind = DefinitionKind::parse(&kind).ok_or_else(|| corrupt(format!("kind {kind}")))?;
    d.doc = parcours_store::definition_doc(&doc);
    Ok(d)
}

const CHANGE_COLS: &str = "id, workspace_id, audience_id, profile_id, entered, at, cause";

fn change(r: &Row<'_>) -> rusqlite::Result<MembershipChange> {
    Ok(MembershipChange {
        id: r.get(0)?,
        workspace_id: r.get(1)?,
        audience_id: r.get(2)?,
        profile_id: r.get(3)?,
        entered: r.get(4)?,
        at: r.get(5)?,
        cause: r.get(6)?,
    })
}

fn membership(r: &Row<'_>) -> rusqlite::Result<Membership> {
    Ok(Membership {
        audience_id: r.get(0)?,
        profile_id: r.get(1)?,
        since: r.get(2)?,
    })
}

impl Audiences for SqliteStore {
    fn put_definition(&self, d: &Definition) -> Result<()> {
        let doc = serde_json::to_string(&d.doc).map_err(corrupt)?;
        self.projection_writer()
            .execute(
                "INSERT INTO definitions (workspace_id, kind, id, doc, version, computed_version, done, total, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, 0, ?7, ?8)
                 ON CONFLICT (workspace_id, kind, id) DO UPDATE SET
                   doc = excluded.doc, version = excluded.version, done = 0, total = 0,
                   updated_at = excluded.updated_at",
                params![
                    d.workspace_id,
                    d.kind.as_str(),
                    d.id,
                    doc,
                    d.version,
                    d.computed_version,
                    d.created_at,
                    d.updated_at
                ],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn delete_definition(&self, workspace: &str, kind: DefinitionKind, id: &str) -> Result<bool> {
        let mut conn = self.projection_writer();
        let tx = conn.transaction().map_err(backend)?;
        let n = tx
            .execute(
                "DELETE FROM definitions WHERE workspace_id = ?1 AND kind = ?2 AND id = ?3",
                params![workspace, kind.as_str(), id],
            )
            .map_err(backend)?;
        match kind {
            DefinitionKind::Audience => {
                for table in ["memberships", "membership_changes"] {
                    tx.execute(
                        &format!(
                            "DELETE FROM {table} WHERE workspace_id = ?1 AND audience_id = ?2"
                        ),
                        params![workspace, id],
                    )
                    .map_err(backend)?;
                }
            }
            DefinitionKind::ComputedTrait => {
                tx.execute(
                    "DELETE FROM computed_values WHERE workspace_id = ?1 AND trait_id = ?2",
                    params![workspace, id],
                )
                .map_err(backend)?;
            }
            DefinitionKind::Destination => {
                tx.execute(
                    "DELETE FROM audience_cursors WHERE name = ?1",
                    params![destination_cursor(workspace, id)],
                )
                .map_err(backend)?;
                tx.execute(
                    "DELETE FROM outbox WHERE workspace_id = ?1 AND destination = ?2",
                    params![workspace, destination_lane(id)],
                )
                .map_err(backend)?;
            }
        }
        tx.commit().map_err(backend)?;
        Ok(n > 0)
    }

    fn definitions(&self, workspace: Option<&str>) -> Result<Vec<Definition>> {
        self.read_projections(|c| {
            let mut st = c
                .prepare_cached(&format!(
                    "SELECT {DEFINITION_COLS} FROM definitions WHERE ?1 IS NULL OR workspace_id = ?1
                     ORDER BY workspace_id, kind, id"
                ))
                .map_err(backend)?;
            let rows = st.query_map([workspace], definition).map_err(backend)?;
            rows.map(|r| finish_definition(r.map_err(backend)?))
                .collect()
        })
    }

    fn memberships(&self, workspace: &str, profile: &str) -> Result<Vec<Membership>> {
        self.read_projections(|c| {
            let mut st = c.prepare_cached(MEMBERSHIPS_OF).map_err(backend)?;
            let rows = st
                .query_map(params![workspace, profile], membership)
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<_>>().map_err(backend)
        })
    }

    fn membership_history(
        &self,
        workspace: &str,
        profile: &str,
        limit: usize,
    ) -> Result<Vec<MembershipChange>> {
        self.read_projections(|c| {
            let mut st = c
                .prepare_cached(&format!(
                    "SELECT {CHANGE_COLS} FROM membership_changes
                     WHERE workspace_id = ?1 AND profile_id = ?2 ORDER BY id DESC LIMIT ?3"
                ))
                .map_err(backend)?;
            let rows = st
                .query_map(params![workspace, profile, limit as i64], change)
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<_>>().map_err(backend)
        })
    }

    fn members(
        &self,
        workspace: &str,
        audience: &str,
        after_profile: &str,
        limit: usize,
    ) -> Result<Vec<Membership>> {
        self.read_projections(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT audience_id, profile_id, since FROM memberships
                     WHERE workspace_id = ?1 AND audience_id = ?2 AND profile_id > ?3
                     ORDER BY profile_id LIMIT ?4",
                )
                .map_err(backend)?;
            let rows = st
                .query_map(
                    params![workspace, audience, after_profile, limit as i64],
                    membership,
                )
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<_>>().map_err(backend)
        })
    }

    fn member_count(&self, workspace: &str, audience: &str) -> Result<u64> {
        self.read_projections(|c| {
            c.prepare_cached(
                "SELECT count(*) FROM memberships WHERE workspace_id = ?1 AND audience_id = ?2",
            )
            .map_err(backend)?
            .query_row(params![workspace, audience], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(backend)
        })
    }

    fn computed_values(&self, workspace: &str, profile: &str) -> Result<BTreeMap<String, Value>> {
        self.read_projections(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT trait_id, value FROM computed_values WHERE workspace_id = ?1 AND profile_id = ?2",
                )
                .map_err(backend)?;
            let rows = st
                .query_map(params![workspace, profile], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(backend)?;
            let mut out = BTreeMap::new();
            for row in rows {
                let (name, value) = row.map_err(backend)?;
                out.insert(name, serde_json::from_str(&value).map_err(corrupt)?);
            }
            Ok(out)
        })
    }

    fn audience_work(&self, scope: &WorkScope, limit: usize) -> Result<Vec<AudienceWork>> {
        let (buckets, whole, except) = scope_lists(scope)?;
        self.read_projections(|c| {
            let mut st = c
                .prepare_cached(&format!(
                    "SELECT workspace_id, profile_id, bucket, names, everything, retired, first_seq,
                       cause, at, version
                     FROM audience_work WHERE {IN_SCOPE} ORDER BY first_seq LIMIT ?4"
                ))
                .map_err(backend)?;
            let rows = st
                .query_map(params![buckets, whole, except, limit as i64], |r| {
                    Ok((
                        AudienceWork {
                            workspace_id: r.get(0)?,
                            profile_id: r.get(1)?,
                            bucket: r.get(2)?,
                            names: Vec::new(),
                            everything: r.get(4)?,
                            retired: r.get(5)?,
                            first_seq: r.get(6)?,
                            cause: r.get(7)?,
                            at: r.get(8)?,
                            version: r.get(9)?,
                        },
                        r.get::<_, String>(3)?,
                    ))
                })
                .map_err(backend)?;
            let mut out = Vec::new();
            for row in rows {
                let (mut w, names) = row.map_err(backend)?;
                w.names = serde_json::from_str(&names).map_err(corrupt)?;
                out.push(w);
            }
            Ok(out)
        })
    }

    fn earliest_audience_work(&self) -> Result<Option<i64>> {
        self.read_projections(|c| {
            c.prepare_cached("SELECT min(first_seq) FROM audience_work")
                .map_err(backend)?
                .query_row([], |r| r.get(0))
                .map_err(backend)
        })
    }

    fn orphans(&self, workspace: &str, after: &str, limit: usize) -> Result<Vec<String>> {
        self.read_projections(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT o.profile_id FROM (
                       SELECT profile_id FROM memberships WHERE workspace_id = ?1 AND profile_id > ?2
                       UNION SELECT profile_id FROM computed_values WHERE workspace_id = ?1 AND profile_id > ?2
                       UNION SELECT key FROM timers WHERE workspace_id = ?1 AND kind = 'audience' AND key > ?2
                     ) o
                     WHERE NOT EXISTS (SELECT 1 FROM profiles p WHERE p.workspace_id = ?1
                       AND p.id = o.profile_id AND p.merged_into IS NULL AND p.doc IS NOT NULL)
                     ORDER BY o.profile_id LIMIT ?3",
                )
                .map_err(backend)?;
            let rows = st
                .query_map(params![workspace, after, limit as i64], |r| r.get(0))
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<_>>().map_err(backend)
        })
    }

    fn changes_after(&self, after_id: i64, limit: usize) -> Result<Vec<MembershipChange>> {
        self.read_projections(|c| {
            let mut st = c
                .prepare_cached(&format!(
                    "SELECT {CHANGE_COLS} FROM membership_changes WHERE id > ?1 ORDER BY id LIMIT ?2"
                ))
                .map_err(backend)?;
            let rows = st
                .query_map(params![after_id, limit as i64], change)
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<_>>().map_err(backend)
        })
    }

    fn due_timers(&self, now: Millis, scope: &WorkScope, limit: usize) -> Result<Vec<Timer>> {
        let (buckets, whole, except) = scope_lists(scope)?;
        self.read_projections(|c| {
            let mut st = c
                .prepare_cached(&format!(
                    "SELECT workspace_id, key, due_at FROM timers
                     WHERE kind = 'audience' AND due_at <= ?5 AND {IN_SCOPE}
                     ORDER BY due_at LIMIT ?4"
                ))
                .map_err(backend)?;
            let rows = st
                .query_map(params![buckets, whole, except, limit as i64, now], |r| {
                    Ok(Timer {
                        workspace_id: r.get(0)?,
                        profile_id: r.get(1)?,
                        due_at: r.get(2)?,
                    })
                })
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<_>>().map_err(backend)
        })
    }

    fn audience_inputs(
        &self,
        workspace: &str,
        profiles: &[String],
        names: &[String],
        known_upto: i64,
        timers: bool,
    ) -> Result<BTreeMap<String, AudienceInputs>> {
        if profiles.is_empty() {
            return Ok(BTreeMap::new());
        }
        let page = names.iter().any(|n| n == "Page Viewed");
        let screen = names.iter().any(|n| n == "Screen Viewed");
        let mut out: BTreeMap<String, AudienceInputs> = profiles
            .iter()
            .map(|p| (p.clone(), AudienceInputs::default()))
            .collect();
        let ids = serde_json::to_string(profiles).map_err(corrupt)?;
        let names_json = serde_json::to_string(names).map_err(corrupt)?;
        self.read_projections(|c| {
            let cols = EVENT_COLS
                .split(", ")
                .map(|c| format!("e.{c}"))
                .collect::<Vec<_>>()
                .join(", ");
            // Each profile with the profiles merged into it, one level at a time (a recursive
            // view is planned as a scan of every profile per step)…
            let mut root_of: BTreeMap<String, String> =
                profiles.iter().map(|p| (p.clone(), p.clone())).collect();
            let mut level = ids.clone();
            let mut st = c
                .prepare_cached(
                    "SELECT id, merged_into FROM profiles
                     WHERE workspace_id = ?1 AND merged_into IN (SELECT value FROM json_each(?2))",
                )
                .map_err(backend)?;
            // (Needed only to read events.)
            let events = known_upto > 0 || !names.is_empty();
            loop {
                if !events {
                    break;
                }
                let children: Vec<(String, String)> = st
                    .query_map(params![workspace, level], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(backend)?
                    .collect::<rusqlite::Result<_>>()
                    .map_err(backend)?;
                let mut next = Vec::new();
                for (child, parent) in children {
                    if root_of.contains_key(&child) {
                        continue;
                    }
                    let root = root_of.get(&parent).cloned().unwrap_or(parent);
                    root_of.insert(child.clone(), root);
                    next.push(child);
                }
                if next.is_empty() {
                    break;
                }
                level = serde_json::to_string(&next).map_err(corrupt)?;
            }
            let members = serde_json::to_string(&root_of.keys().collect::<Vec<_>>())
                .map_err(corrupt)?;
            // …then the events the caller holds, by sequence number only…
            if known_upto > 0 {
                let mut st = c
                    .prepare_cached(
                        "SELECT seq, profile_id FROM profile_events
                         WHERE workspace_id = ?1 AND profile_id IN (SELECT value FROM json_each(?2))
                           AND seq <= ?3",
                    )
                    .map_err(backend)?;
                let rows = st
                    .query_map(params![workspace, members, known_upto], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                    })
                    .map_err(backend)?;
                for row in rows {
                    let (seq, member) = row.map_err(backend)?;
                    if let Some(slot) = root_of.get(&member).and_then(|root| out.get_mut(root)) {
                        slot.known.push(seq);
                    }
                }
                for slot in out.values_mut() {
                    slot.known.sort_unstable();
                }
            }
            // …and the others (sorted here: with ORDER BY, SQLite walks the whole log).
            // (none when no event is named).
            if !names.is_empty() {
                let mut st = c
                    .prepare_cached(&format!(
                        "SELECT {cols}, pe.profile_id FROM profile_events pe
                         JOIN log.events e ON e.seq = pe.seq
                         WHERE pe.workspace_id = ?1 AND pe.profile_id IN (SELECT value FROM json_each(?2))
                           AND pe.seq > ?6
                           AND ((e.type = 'track' AND e.event IN (SELECT value FROM json_each(?3)))
                                OR (e.type = 'page' AND ?4) OR (e.type = 'screen' AND ?5))"
                    ))
                    .map_err(backend)?;
                let rows = st
                    .query_map(
                        params![workspace, members, names_json, page, screen, known_upto],
                        |r| Ok((event_row(r)?, r.get::<_, String>(13)?)),
                    )
                    .map_err(backend)?;
                for row in rows {
                    let (e, member) = row.map_err(backend)?;
                    let slot = root_of.get(&member).and_then(|root| out.get_mut(root));
                    if let Some(slot) = slot {
                        slot.events.push(finish_event(e)?);
                    }
                }
                for slot in out.values_mut() {
                    slot.events.sort_unstable_by_key(|e| std::cmp::Reverse(e.seq));
                }
            }
            let mut st = c
                .prepare_cached(
                    "SELECT profile_id, trait_id, value FROM computed_values
                     WHERE workspace_id = ?1 AND profile_id IN (SELECT value FROM json_each(?2))",
                )
                .map_err(backend)?;
            let rows = st
                .query_map(params![workspace, ids], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
                })
                .map_err(backend)?;
            for row in rows {
                let (p, name, value) = row.map_err(backend)?;
                if let Some(slot) = out.get_mut(&p) {
                    slot.computed
                        .insert(name, serde_json::from_str(&value).map_err(corrupt)?);
                }
            }
            let mut st = c
                .prepare_cached(
                    "SELECT profile_id, audience_id FROM memberships
                     WHERE workspace_id = ?1 AND profile_id IN (SELECT value FROM json_each(?2))
                     ORDER BY profile_id, audience_id",
                )
                .map_err(backend)?;
            let rows = st
                .query_map(params![workspace, ids], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(backend)?;
            for row in rows {
                let (p, a) = row.map_err(backend)?;
                if let Some(slot) = out.get_mut(&p) {
                    slot.memberships.push(a);
                }
            }
            if timers {
                let mut st = c
                    .prepare_cached(
                        "SELECT key, due_at FROM timers
                         WHERE workspace_id = ?1 AND kind = 'audience' AND key IN (SELECT value FROM json_each(?2))",
                    )
                    .map_err(backend)?;
                let rows = st
                    .query_map(params![workspace, ids], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, Millis>(1)?))
                    })
                    .map_err(backend)?;
                for row in rows {
                    let (p, due) = row.map_err(backend)?;
                    if let Some(slot) = out.get_mut(&p) {
                        slot.timer = Some(due);
                    }
                }
            }
            Ok(())
        })?;
        Ok(out)
    }

    fn timers_page(
        &self,
        workspace: &str,
        after_profile: &str,
        limit: usize,
    ) -> Result<Vec<(String, Millis)>> {
        self.read_projections(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT key, due_at FROM timers
                     WHERE workspace_id = ?1 AND kind = 'audience' AND key > ?2 ORDER BY key LIMIT ?3",
                )
                .map_err(backend)?;
            let rows = st
                .query_map(params![workspace, after_profile, limit as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<_>>().map_err(backend)
        })
    }

    fn timer_of(&self, workspace: &str, profile: &str) -> Result<Option<Millis>> {
        self.read_projections(|c| {
            c.prepare_cached(
                "SELECT due_at FROM timers WHERE workspace_id = ?1 AND kind = 'audience' AND key = ?2",
            )
            .map_err(backend)?
            .query_row(params![workspace, profile], |r| r.get(0))
            .optional()
            .map_err(backend)
        })
    }

    fn audience_cursor(&self, name: &str) -> Result<i64> {
        self.read_projections(|c| {
            c.prepare_cached("SELECT seq FROM audience_cursors WHERE name = ?1")
                .map_err(backend)?
                .query_row([name], |r| r.get(0))
                .optional()
                .map(Option::unwrap_or_default)
                .map_err(backend)
        })
    }

    fn record(&self, w: &AudienceWrite) -> Result<()> {
        if w.is_empty() {
            return Ok(());
        }
        let mut conn = self.projection_writer();
        let tx = conn.transaction().map_err(backend)?;
        check_still(&tx, w)?;
        {
            let mut enter = tx
                .prepare_cached(
                    "INSERT INTO memberships (workspace_id, audience_id, profile_id, since)
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                )
                .map_err(backend)?;
            let mut leave = tx
                .prepare_cached(
                    "DELETE FROM memberships WHERE workspace_id = ?1 AND audience_id = ?2 AND profile_id = ?3",
                )
                .map_err(backend)?;
            let mut log = tx
                .prepare_cached(
                    "INSERT INTO membership_changes (workspace_id, audience_id, profile_id, entered, at, cause)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(backend)?;
            let mut runs_journeys: std::collections::HashMap<String, bool> =
                std::collections::HashMap::new();
            for c in &w.changes {
                let n = if c.entered {
                    enter.execute(params![c.workspace_id, c.audience_id, c.profile_id, c.at])
                } else {
                    leave.execute(params![c.workspace_id, c.audience_id, c.profile_id])
                }
                .map_err(backend)?;
                if n != 1 {
                    return Err(StoreError::Conflict(format!(
                        "profile {} {} audience {} already",
                        c.profile_id,
                        if c.entered { "is in" } else { "is not in" },
                        c.audience_id
                    )));
                }
                log.execute(params![
                    c.workspace_id,
                    c.audience_id,
                    c.profile_id,
                    c.entered,
                    c.at,
                    c.cause
                ])
                .map_err(backend)?;
                let journeys = match runs_journeys.get(&c.workspace_id) {
                    Some(&j) => j,
                    None => {
                        let j = crate::projections::runs_journeys(&tx, &c.workspace_id)?;
                        runs_journeys.insert(c.workspace_id.clone(), j);
                        j
                    }
                };
                if journeys {
                    let logged = MembershipChange {
                        id: tx.last_insert_rowid(),
                        ..c.clone()
                    };
                    crate::projections::queue_work(
                        &tx,
                        &[parcours_store::audience_change_work(&logged)],
                    )?;
                }
            }
            let mut set = tx
                .prepare_cached(
                    "INSERT INTO computed_values (workspace_id, profile_id, trait_id, value) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (workspace_id, profile_id, trait_id) DO UPDATE SET value = excluded.value",
                )
                .map_err(backend)?;
            let mut unset = tx
                .prepare_cached(
                    "DELETE FROM computed_values WHERE workspace_id = ?1 AND profile_id = ?2 AND trait_id = ?3",
                )
                .map_err(backend)?;
            for v in &w.computed {
                match &v.value {
                    Some(value) => set.execute(params![
                        v.workspace_id,
                        v.profile_id,
                        v.trait_id,
                        value.to_string()
                    ]),
                    None => unset.execute(params![v.workspace_id, v.profile_id, v.trait_id]),
                }
                .map_err(backend)?;
            }
            let mut timer = tx
                .prepare_cached(
                    "INSERT INTO timers (workspace_id, kind, key, bucket, due_at) VALUES (?1, 'audience', ?2, ?4, ?3)
                     ON CONFLICT (workspace_id, kind, key) DO UPDATE SET due_at = excluded.due_at,
                       lease_until = NULL, lock_id = NULL",
                )
                .map_err(backend)?;
            let mut no_timer = tx
                .prepare_cached(
                    "DELETE FROM timers WHERE workspace_id = ?1 AND kind = 'audience' AND key = ?2",
                )
                .map_err(backend)?;
            for t in &w.timers {
                match t.due_at {
                    Some(due) => timer.execute(params![
                        t.workspace_id,
                        t.profile_id,
                        due,
                        profile_bucket(&t.workspace_id, &t.profile_id)
                    ]),
                    None => no_timer.execute(params![t.workspace_id, t.profile_id]),
                }
                .map_err(backend)?;
            }
            let mut cursor = tx
                .prepare_cached(
                    "INSERT INTO audience_cursors (name, seq) VALUES (?1, ?2)
                     ON CONFLICT (name) DO UPDATE SET seq = excluded.seq",
                )
                .map_err(backend)?;
            for c in &w.cursors {
                cursor.execute(params![c.name, c.seq]).map_err(backend)?;
            }
            let mut settle = tx
                .prepare_cached(
                    "DELETE FROM audience_work WHERE workspace_id = ?1 AND profile_id = ?2 AND version = ?3",
                )
                .map_err(backend)?;
            for s in &w.settled {
                settle
                    .execute(params![s.workspace_id, s.profile_id, s.version])
                    .map_err(backend)?;
            }
            let mut progress = tx
                .prepare_cached(
                    "UPDATE definitions SET computed_version = ?4, done = ?5, total = ?6
                     WHERE workspace_id = ?1 AND kind = ?2 AND id = ?3",
                )
                .map_err(backend)?;
            for p in &w.progress {
                progress
                    .execute(params![
                        p.workspace_id,
                        p.kind.as_str(),
                        p.id,
                        p.computed_version,
                        p.done as i64,
                        p.total as i64
                    ])
                    .map_err(backend)?;
            }
        }
        // The effects of these changes commit with them, or neither does.
        crate::outbox::insert_rows(&tx, &w.outbox)?;
        crate::projections::add_tallies(&tx, &parcours_store::tallies::of_audience_write(w))?;
        tx.commit().map_err(backend)
    }

    fn reset_audiences(&self) -> Result<()> {
        self.projection_writer()
            .execute_batch("UPDATE definitions SET computed_version = 0, done = 0, total = 0;")
            .map_err(backend)
    }
}

/// Fails with a conflict, before anything is written, if the writer lost a lease it works
/// on or a definition it evaluated changed. One process writes an embedded store, so
/// checking is enough: nothing can change them while this transaction holds the writer.
fn check_still(tx: &rusqlite::Transaction<'_>, w: &AudienceWrite) -> Result<()> {
    if let Some(f) = &w.fence {
        crate::projections::fence(tx, &f.node, &f.buckets, f.now)?;
    }
    let mut read = tx
        .prepare_cached(
            "SELECT kind, id, version, computed_version FROM definitions
             WHERE workspace_id = ?1 AND kind IN ('audience', 'computed_trait') ORDER BY kind, id",
        )
        .map_err(backend)?;
    for seen in &w.definitions_seen {
        let rows = read
            .query_map([&seen.workspace_id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .map_err(backend)?;
        let mut stored = Vec::new();
        for row in rows {
            let (kind, id, version, computed) = row.map_err(backend)?;
            let kind = DefinitionKind::parse(&kind)
                .ok_or_else(|| corrupt(format!("definition kind {kind}")))?;
            stored.push((kind, id, version, computed));
        }
        if !seen.still(&stored) {
            return Err(StoreError::Conflict(format!(
                "the definitions of workspace {} changed",
                seen.workspace_id
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real-time path reads one profile's memberships per evaluation: a plan that scans
    /// the workspace's memberships makes each one as slow as the audiences are large.
    #[test]
    fn a_profiles_memberships_are_read_through_the_profile_index() {
        let dir = std::env::temp_dir().join(format!("parcours-plan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = SqliteStore::open_temp(&dir).unwrap();
        let plan: Vec<String> = {
            let conn = store.projection_writer();
            let mut st = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {MEMBERSHIPS_OF}"))
                .unwrap();
            st.query_map(params!["ws", "p"], |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        };
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            plan.iter()
                .any(|p| p.starts_with("SEARCH memberships USING INDEX memberships_profile")),
            "{plan:?}"
        );
    }
}
