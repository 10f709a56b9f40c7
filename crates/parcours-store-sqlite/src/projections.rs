use parcours_core::graph::Separation;
use parcours_core::identifier::Identifier;
use parcours_core::time::Millis;
use parcours_core::{MergeRecord, Profile};
use parcours_store::{
    owners_position, parse_owners_position, profile_bucket, IdentifierRow, MergeRow, MergeStatus,
    ProfileRow, ProjectionTx, Projections, QueuedProfile, Result, StoreError, StoredEvent,
};
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};

use crate::event_log::{query_events, EVENT_COLS};
use crate::{backend, corrupt, SqliteStore};

const EPOCH: &str = "epoch";

fn read_epoch(c: &Connection) -> Result<i64> {
    Ok(c.query_row(
        "SELECT seq FROM projection_cursor WHERE name = ?1",
        [EPOCH],
        |r| r.get(0),
    )
    .optional()
    .map_err(backend)?
    .unwrap_or(0))
}

/// Fails with a conflict unless `node` holds every one of `buckets` at `now`. One process
/// writes an embedded store, so checking is enough: nothing can take a lease while the
/// transaction holds the writer.
pub(crate) fn fence(tx: &Transaction<'_>, node: &str, buckets: &[u16], now: Millis) -> Result<()> {
    let list = serde_json::to_string(buckets).map_err(corrupt)?;
    let held: i64 = tx
        .prepare_cached(
            "SELECT count(*) FROM log.bucket_leases
             WHERE node = ?1 AND lease_until >= ?2 AND bucket IN (SELECT value FROM json_each(?3))",
        )
        .map_err(backend)?
        .query_row(params![node, now, list], |r| r.get(0))
        .map_err(backend)?;
    if held as usize != buckets.len() {
        return Err(StoreError::Conflict(format!(
            "node {node} no longer holds every lease it is working on"
        )));
    }
    Ok(())
}

struct Tx<'a> {
    tx: &'a Transaction<'a>,
}

fn read_profile(
    c: &Connection,
    workspace: &str,
    id: &str,
) -> Result<Option<(Option<String>, Option<String>)>> {
    c.prepare_cached("SELECT merged_into, doc FROM profiles WHERE workspace_id = ?1 AND id = ?2")
        .map_err(backend)?
        .query_row(params![workspace, id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(backend)
}

/// A position of [`Projections::profiles_in_storage_order`]: the last rowid read.
fn rowid_position(position: &str) -> Result<i64> {
    if position.is_empty() {
        return Ok(0);
    }
    position
        .parse()
        .map_err(|_| corrupt(format!("position `{position}`")))
}

impl SqliteStore {
    /// Merged profiles in the order of their index, (merged_into, id), which holds all that
    /// is read: reading the table in rowid order reads every profile document. The position
    /// is the last row's `[merged_into, id]`.
    fn merged_profiles(
        &self,
        workspace: &str,
        position: &str,
        (skip, limit): (usize, usize),
    ) -> Result<(Vec<ProfileRow>, String)> {
        let (after_parent, after_id): (String, String) = match position {
            "" => Default::default(),
            p => serde_json::from_str(p).map_err(|_| corrupt(format!("position `{p}`")))?,
        };
        self.read_projections(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT id, merged_into FROM profiles INDEXED BY profiles_merged_into
                     WHERE workspace_id = ?1 AND merged_into IS NOT NULL AND (merged_into, id) > (?2, ?3)
                     ORDER BY merged_into, id LIMIT ?4 OFFSET ?5",
                )
                .map_err(backend)?;
            let rows = st
                .query_map(
                    params![workspace, after_parent, after_id, limit as i64, skip as i64],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
                )
                .map_err(backend)?;
            let mut out = Vec::new();
            let mut last = position.to_string();
            for row in rows {
                let (id, parent) = row.map_err(backend)?;
                last = serde_json::to_string(&(&parent, &id)).map_err(corrupt)?;
                out.push(ProfileRow {
                    id,
                    merged_into: Some(parent),
                    profile: None,
                });
            }
            Ok((out, last))
        })
    }
}

fn decode(doc: &str) -> Result<Profile> {
    serde_json::from_str(doc).map_err(corrupt)
}

fn id_row(r: &Row<'_>) -> rusqlite::Result<Identifier> {
    Ok(Identifier::new(
        r.get::<_, String>(0)?,
        r.get::<_, String>(1)?,
    ))
}

fn strings(c: &Connection, sql: &str, p: impl rusqlite::Params) -> Result<Vec<String>> {
    let mut st = c.prepare_cached(sql).map_err(backend)?;
    let rows = st.query_map(p, |r| r.get(0)).map_err(backend)?;
    rows.collect::<rusqlite::Result<_>>().map_err(backend)
}

/// The profile and every profile merged into it, walked through the `merged_into` index.
fn family(c: &Connection, workspace: &str, profile: &str) -> Result<Vec<String>> {
    let mut all = vec![profile.to_string()];
    let mut next = 0;
    while next < all.len() {
        let children = strings(
            c,
            "SELECT id FROM profiles WHERE workspace_id = ?1 AND merged_into = ?2",
            params![workspace, all[next]],
        )?;
        all.extend(children);
        next += 1;
    }
    all.sort();
    Ok(all)
}

/// A profile row is either a document or a pointer to the profile that absorbed it.
fn put_profile(
    c: &Connection,
    workspace: &str,
    id: &str,
    merged_into: Option<&str>,
    doc: Option<&str>,
    at: Millis,
) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO profiles (workspace_id, id, merged_into, doc, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (workspace_id, id) DO UPDATE SET
           merged_into = excluded.merged_into, doc = excluded.doc, updated_at = excluded.updated_at",
    )
    .map_err(backend)?
    .execute(params![workspace, id, merged_into, doc, at])
    .map_err(backend)?;
    Ok(())
}

impl ProjectionTx for Tx<'_> {
    fn cursor(&mut self) -> Result<i64> {
        self.tx
            .query_row(
                "SELECT coalesce(min(seq), 0) FROM bucket_cursors",
                [],
                |r| r.get(0),
            )
            .map_err(backend)
    }

    fn set_cursor(&mut self, seq: i64) -> Result<()> {
        self.tx
            .prepare_cached("UPDATE bucket_cursors SET seq = ?1")
            .map_err(backend)?
            .execute([seq])
            .map_err(backend)?;
        Ok(())
    }

    fn bucket_cursors(&mut self, buckets: &[u16]) -> Result<Vec<i64>> {
        let mut st = self
            .tx
            .prepare_cached("SELECT bucket, seq FROM bucket_cursors")
            .map_err(backend)?;
        let all: std::collections::HashMap<u16, i64> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(backend)?
            .collect::<rusqlite::Result<_>>()
            .map_err(backend)?;
        buckets
            .iter()
            .map(|b| {
                all.get(b)
                    .copied()
                    .ok_or_else(|| StoreError::NotFound(format!("bucket {b}")))
            })
            .collect()
    }

    fn advance_buckets(&mut self, buckets: &[u16], seq: i64) -> Result<()> {
        let list = serde_json::to_string(buckets).map_err(corrupt)?;
        self.tx
            .prepare_cached(
                "UPDATE bucket_cursors SET seq = ?2
                 WHERE seq < ?2 AND bucket IN (SELECT value FROM json_each(?1))",
            )
            .map_err(backend)?
            .execute(params![list, seq])
            .map_err(backend)?;
        Ok(())
    }

    fn fence(&mut self, node: &str, buckets: &[u16], now: Millis) -> Result<()> {
        fence(self.tx, node, buckets, now)
    }

    fn lock_workspaces(&mut self, _workspaces: &[&str]) -> Result<()> {
        // The projection writer mutex already serialises every transaction.
        Ok(())
    }

    fn epoch(&mut self) -> Result<i64> {
        read_epoch(self.tx)
    }

    fn bump_epoch(&mut self) -> Result<()> {
        self.tx
            .execute(
                "INSERT INTO projection_cursor (name, seq) VALUES (?1, 1)
                 ON CONFLICT (name) DO UPDATE SET seq = seq + 1",
                [EPOCH],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn evaluates_audiences(&mut self, workspace: &str) -> Result<bool> {
        Ok(self
            .tx
            .prepare_cached(
                "SELECT 1 FROM definitions
                 WHERE workspace_id = ?1 AND kind IN ('audience', 'computed_trait') LIMIT 1",
            )
            .map_err(backend)?
            .query_row([workspace], |_| Ok(()))
            .optional()
            .map_err(backend)?
            .is_some())
    }

    fn runs_journeys(&mut self, workspace: &str) -> Result<bool> {
        runs_journeys(self.tx, workspace)
    }

    fn queue_journey_work(&mut self, rows: &[parcours_store::JourneyWork]) -> Result<()> {
        queue_work(self.tx, rows)
    }

    fn add_tallies(&mut self, tallies: &[parcours_store::Tally]) -> Result<()> {
        add_tallies(self.tx, tallies)
    }

    fn has_drops(&mut self, workspace: &str) -> Result<bool> {
        Ok(self
            .tx
            .query_row(
                "SELECT 1 FROM identifier_drops WHERE workspace_id = ?1 LIMIT 1",
                [workspace],
                |_| Ok(()),
            )
            .optional()
            .map_err(backend)?
            .is_some())
    }

    fn holder(&mut self, workspace: &str, id: &Identifier) -> Result<Option<String>> {
        self.tx
            .prepare_cached(
                "SELECT profile_id FROM identifiers WHERE workspace_id = ?1 AND id_type = ?2 AND id_value = ?3",
            )
            .map_err(backend)?
            .query_row(params![workspace, id.kind, id.value], |r| r.get(0))
            .optional()
            .map_err(backend)
    }

    fn droppers(&mut self, workspace: &str, id: &Identifier) -> Result<Vec<String>> {
        strings(
            self.tx,
            "SELECT profile_id FROM identifier_drops WHERE workspace_id = ?1 AND id_type = ?2 AND id_value = ?3",
            params![workspace, id.kind, id.value],
        )
    }

    fn drops_of(&mut self, workspace: &str, profile: &str) -> Result<Vec<Identifier>> {
        let mut st = self
            .tx
            .prepare_cached("SELECT id_type, id_value FROM identifier_drops WHERE workspace_id = ?1 AND profile_id = ?2")
            .map_err(backend)?;
        let rows = st
            .query_map(params![workspace, profile], id_row)
            .map_err(backend)?;
        rows.collect::<rusqlite::Result<_>>().map_err(backend)
    }

    fn profile(&mut self, workspace: &str, id: &str) -> Result<Option<Profile>> {
        match read_profile(self.tx, workspace, id)? {
            Some((None, Some(doc))) => Ok(Some(decode(&doc)?)),
            _ => Ok(None),
        }
    }

    fn separations(&mut self, workspace: &str) -> Result<Vec<Separation>> {
        let mut st = self
            .tx
            .prepare_cached("SELECT a_type, a_value, b_type, b_value FROM separations WHERE workspace_id = ?1 ORDER BY id")
            .map_err(backend)?;
        let rows = st
            .query_map([workspace], |r| {
                Ok((
                    Identifier::new(r.get::<_, String>(0)?, r.get::<_, String>(1)?),
                    Identifier::new(r.get::<_, String>(2)?, r.get::<_, String>(3)?),
                ))
            })
            .map_err(backend)?;
        rows.collect::<rusqlite::Result<_>>().map_err(backend)
    }

    fn save_profile(&mut self, workspace: &str, profile: &Profile, at: Millis) -> Result<()> {
        let doc = serde_json::to_string(profile).map_err(corrupt)?;
        put_profile(self.tx, workspace, &profile.id, None, Some(&doc), at)
    }

    fn redirect_profile(
        &mut self,
        workspace: &str,
        from: &str,
        to: &str,
        at: Millis,
    ) -> Result<()> {
        put_profile(self.tx, workspace, from, Some(to), None, at)?;
        crate::journeys::rehome_runs(self.tx, workspace, from, to, at)
    }

    fn link(
        &mut self,
        workspace: &str,
        id: &Identifier,
        profile: &str,
        linked_by: &str,
        at: Millis,
    ) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO identifiers (workspace_id, id_type, id_value, profile_id, linked_by, linked_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (workspace_id, id_type, id_value) DO UPDATE SET
                   profile_id = excluded.profile_id, linked_by = excluded.linked_by, linked_at = excluded.linked_at",
            )
            .map_err(backend)?
            .execute(params![workspace, id.kind, id.value, profile, linked_by, at])
            .map_err(backend)?;
        Ok(())
    }

    fn relink(&mut self, workspace: &str, ids: &[Identifier], profile: &str) -> Result<()> {
        let mut st = self
            .tx
            .prepare_cached(
                "UPDATE identifiers SET profile_id = ?4 WHERE workspace_id = ?1 AND id_type = ?2 AND id_value = ?3",
            )
            .map_err(backend)?;
        for id in ids {
            st.execute(params![workspace, id.kind, id.value, profile])
                .map_err(backend)?;
        }
        Ok(())
    }

    fn set_drops(&mut self, workspace: &str, profile: &str, drops: &[Identifier]) -> Result<()> {
        self.tx
            .prepare_cached(
                "DELETE FROM identifier_drops WHERE workspace_id = ?1 AND profile_id = ?2",
            )
            .map_err(backend)?
            .execute(params![workspace, profile])
            .map_err(backend)?;
        let mut st = self
            .tx
            .prepare_cached(
                "INSERT OR IGNORE INTO identifier_drops (workspace_id, id_type, id_value, profile_id) VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(backend)?;
        for id in drops {
            st.execute(params![workspace, id.kind, id.value, profile])
                .map_err(backend)?;
        }
        Ok(())
    }

    fn assign(&mut self, workspace: &str, seq: i64, profile: &str) -> Result<()> {
        self.tx
            .prepare_cached("INSERT OR REPLACE INTO profile_events (workspace_id, profile_id, seq) VALUES (?1, ?2, ?3)")
            .map_err(backend)?
            .execute(params![workspace, profile, seq])
            .map_err(backend)?;
        Ok(())
    }

    fn record_merge(&mut self, workspace: &str, m: &MergeRecord, at: Millis) -> Result<()> {
        let doc = serde_json::to_string(m).map_err(corrupt)?;
        self.tx
            .prepare_cached(
                "INSERT INTO merges (workspace_id, winner, loser, cause_message_id, doc, status, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'active', ?6)
                 ON CONFLICT (workspace_id, loser, cause_message_id) DO UPDATE SET
                   winner = excluded.winner, doc = excluded.doc, status = 'active'",
            )
            .map_err(backend)?
            .execute(params![workspace, m.winner, m.loser, m.cause.mid, doc, at])
            .map_err(backend)?;
        Ok(())
    }

    fn family(&mut self, workspace: &str, profile: &str) -> Result<Vec<String>> {
        family(self.tx, workspace, profile)
    }

    fn events_of(&mut self, workspace: &str, profiles: &[String]) -> Result<Vec<StoredEvent>> {
        let mut out = Vec::new();
        for p in profiles {
            out.extend(query_events(
                self.tx,
                &format!(
                    "SELECT {} FROM profile_events pe JOIN log.events e ON e.seq = pe.seq
                     WHERE pe.workspace_id = ?1 AND pe.profile_id = ?2 ORDER BY e.seq",
                    EVENT_COLS
                        .split(", ")
                        .map(|c| format!("e.{c}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                params![workspace, p],
            )?);
        }
        Ok(out)
    }

    fn clear_profiles(&mut self, workspace: &str, profiles: &[String]) -> Result<()> {
        for p in profiles {
            if let Some(profile) = self.profile(workspace, p)? {
                let mut st = self
                    .tx
                    .prepare_cached(
                        "DELETE FROM identifiers WHERE workspace_id = ?1 AND id_type = ?2 AND id_value = ?3 AND profile_id = ?4",
                    )
                    .map_err(backend)?;
                for id in &profile.identifiers {
                    st.execute(params![workspace, id.kind, id.value, p])
                        .map_err(backend)?;
                }
            }
            for sql in [
                "DELETE FROM identifier_drops WHERE workspace_id = ?1 AND profile_id = ?2",
                "DELETE FROM profile_events WHERE workspace_id = ?1 AND profile_id = ?2",
                "UPDATE merges SET status = 'superseded', undone_at = NULL
                 WHERE workspace_id = ?1 AND winner = ?2 AND status = 'active'",
            ] {
                self.tx
                    .prepare_cached(sql)
                    .map_err(backend)?
                    .execute(params![workspace, p])
                    .map_err(backend)?;
            }
        }
        Ok(())
    }

    fn add_separation(
        &mut self,
        workspace: &str,
        (a, b): &Separation,
        merge_id: i64,
        at: Millis,
    ) -> Result<()> {
        self.tx
            .execute(
                "INSERT INTO separations (workspace_id, a_type, a_value, b_type, b_value, merge_id, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![workspace, a.kind, a.value, b.kind, b.value, merge_id, at],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn mark_merge_undone(&mut self, workspace: &str, merge_id: i64, at: Millis) -> Result<bool> {
        let n = self
            .tx
            .execute(
                "UPDATE merges SET status = 'undone', undone_at = ?3 WHERE workspace_id = ?1 AND id = ?2 AND status = 'active'",
                params![workspace, merge_id, at],
            )
            .map_err(backend)?;
        Ok(n == 1)
    }

    fn queue_audience_work(
        &mut self,
        workspace: &str,
        rows: &[QueuedProfile],
        at: Millis,
    ) -> Result<()> {
        let mut read = self
            .tx
            .prepare_cached(
                "SELECT names, everything, retired, first_seq, cause FROM audience_work
                 WHERE workspace_id = ?1 AND profile_id = ?2",
            )
            .map_err(backend)?;
        let mut write = self
            .tx
            .prepare_cached(
                "INSERT OR REPLACE INTO audience_work
                   (workspace_id, profile_id, bucket, names, everything, retired, first_seq, cause, at, version)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )
            .map_err(backend)?;
        // Versions never repeat, even for a row removed and queued again.
        let mut last: i64 = self
            .tx
            .prepare_cached("SELECT seq FROM audience_cursors WHERE name = 'work_version'")
            .map_err(backend)?
            .query_row([], |r| r.get(0))
            .optional()
            .map_err(backend)?
            .unwrap_or_default();
        for r in QueuedProfile::fold(rows.to_vec()) {
            last += 1;
            let waiting = read
                .query_row(params![workspace, r.profile_id], |row| {
                    Ok((
                        QueuedProfile {
                            profile_id: r.profile_id.clone(),
                            names: Vec::new(),
                            everything: row.get(1)?,
                            retired: row.get(2)?,
                            seq: row.get(3)?,
                            cause: row.get(4)?,
                        },
                        row.get::<_, String>(0)?,
                    ))
                })
                .optional()
                .map_err(backend)?;
            let row = match waiting {
                Some((mut before, names)) => {
                    before.names = serde_json::from_str(&names).map_err(corrupt)?;
                    before.absorb(r);
                    before
                }
                None => r,
            };
            write
                .execute(params![
                    workspace,
                    row.profile_id,
                    profile_bucket(workspace, &row.profile_id),
                    serde_json::to_string(&row.names).map_err(corrupt)?,
                    row.everything,
                    row.retired,
                    row.seq,
                    row.cause,
                    at,
                    last
                ])
                .map_err(backend)?;
        }
        self.tx
            .prepare_cached(
                "INSERT INTO audience_cursors (name, seq) VALUES ('work_version', ?1)
                 ON CONFLICT (name) DO UPDATE SET seq = excluded.seq",
            )
            .map_err(backend)?
            .execute([last])
            .map_err(backend)?;
        Ok(())
    }

    fn reset_all(&mut self) -> Result<()> {
        self.tx
            .execute_batch(
                "UPDATE bucket_cursors SET seq = 0; DELETE FROM profiles; DELETE FROM identifiers;
                 DELETE FROM identifier_drops; DELETE FROM profile_events; DELETE FROM audience_work;
                 DELETE FROM merges WHERE status <> 'undone';",
            )
            .map_err(backend)?;
        for metric in parcours_store::tallies::UNIFY_METRICS {
            self.tx
                .execute("DELETE FROM tallies WHERE metric = ?1", [metric])
                .map_err(backend)?;
        }
        self.bump_epoch()
    }
}

const MERGE_COLS: &str = "id, workspace_id, doc, status, created_at, undone_at";

fn merge_row(r: &Row<'_>) -> rusqlite::Result<(i64, String, String, String, i64, Option<i64>)> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn to_merge(
    (id, workspace_id, doc, status, created_at, undone_at): (
        i64,
        String,
        String,
        String,
        i64,
        Option<i64>,
    ),
) -> Result<MergeRow> {
    Ok(MergeRow {
        id,
        workspace_id,
        merge: serde_json::from_str(&doc).map_err(corrupt)?,
        status: match status.as_str() {
            "active" => MergeStatus::Active,
            "undone" => MergeStatus::Undone,
            _ => MergeStatus::Superseded,
        },
        created_at,
        undone_at,
    })
}

impl Projections for SqliteStore {
    fn transact(&self, f: &mut dyn FnMut(&mut dyn ProjectionTx) -> Result<()>) -> Result<()> {
        let mut conn = self.projection_writer();
        let tx = conn.transaction().map_err(backend)?;
        f(&mut Tx { tx: &tx })?;
        tx.commit().map_err(backend)
    }

    fn projections_epoch(&self) -> Result<i64> {
        self.read_projections(read_epoch)
    }

    fn processed_seq(&self) -> Result<i64> {
        self.read_projections(|c| {
            c.query_row(
                "SELECT coalesce(min(seq), 0) FROM bucket_cursors",
                [],
                |r| r.get(0),
            )
            .map_err(backend)
        })
    }

    fn profile(&self, workspace: &str, id: &str) -> Result<Option<Profile>> {
        self.read_projections(|c| {
            let mut current = id.to_string();
            for _ in 0..10_000 {
                match read_profile(c, workspace, &current)? {
                    None => return Ok(None),
                    Some((Some(next), _)) => current = next,
                    Some((None, Some(doc))) => return Ok(Some(decode(&doc)?)),
                    Some((None, None)) => {
                        return Err(corrupt(format!("profile {current} has no document")))
                    }
                }
            }
            Err(StoreError::Corrupt(format!(
                "profile {id} redirects in a loop"
            )))
        })
    }

    fn lookup(&self, workspace: &str, id: &Identifier) -> Result<Option<String>> {
        self.read_projections(|c| {
            c.prepare_cached(
                "SELECT profile_id FROM identifiers WHERE workspace_id = ?1 AND id_type = ?2 AND id_value = ?3",
            )
            .map_err(backend)?
            .query_row(params![workspace, id.kind, id.value], |r| r.get(0))
            .optional()
            .map_err(backend)
        })
    }

    fn identifiers(&self, workspace: &str, profile: &str) -> Result<Vec<IdentifierRow>> {
        let Some(doc) = self
            .profile(workspace, profile)?
            .filter(|p| p.id == profile)
        else {
            return Ok(Vec::new());
        };
        self.read_projections(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT profile_id, linked_by, linked_at FROM identifiers
                     WHERE workspace_id = ?1 AND id_type = ?2 AND id_value = ?3",
                )
                .map_err(backend)?;
            let mut rows = Vec::new();
            for id in &doc.identifiers {
                let row = st
                    .query_row(params![workspace, id.kind, id.value], |r| {
                        Ok(IdentifierRow {
                            identifier: id.clone(),
                            profile_id: r.get(0)?,
                            linked_by: r.get(1)?,
                            linked_at: r.get(2)?,
                        })
                    })
                    .optional()
                    .map_err(backend)?;
                rows.extend(row.filter(|r| r.profile_id == profile));
            }
            Ok(rows)
        })
    }

    fn merges_of(&self, workspace: &str, profile: &str) -> Result<Vec<MergeRow>> {
        self.read_projections(|c| {
            let mut st = c
                .prepare_cached(&format!(
                    "SELECT {MERGE_COLS} FROM merges WHERE workspace_id = ?1
                     AND (winner IN (SELECT value FROM json_each(?2)) OR loser IN (SELECT value FROM json_each(?2)))
                     ORDER BY id"
                ))
                .map_err(backend)?;
            let ids = serde_json::to_string(&family(c, workspace, profile)?).map_err(corrupt)?;
            let rows = st.query_map(params![workspace, ids], merge_row).map_err(backend)?;
            rows.map(|r| to_merge(r.map_err(backend)?)).collect()
        })
    }

    fn merge(&self, workspace: &str, merge_id: i64) -> Result<Option<MergeRow>> {
        self.read_projections(|c| {
            c.query_row(
                &format!("SELECT {MERGE_COLS} FROM merges WHERE workspace_id = ?1 AND id = ?2"),
                params![workspace, merge_id],
                merge_row,
            )
            .optional()
            .map_err(backend)?
            .map(to_merge)
            .transpose()
        })
    }

    fn timeline(
        &self,
        workspace: &str,
        profile: &str,
        before_seq: Option<i64>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        self.read_projections(|c| {
            let cols = EVENT_COLS.split(", ").map(|c| format!("e.{c}")).collect::<Vec<_>>().join(", ");
            let ids = serde_json::to_string(&family(c, workspace, profile)?).map_err(corrupt)?;
            query_events(
                c,
                &format!(
                    "SELECT {cols} FROM profile_events pe JOIN log.events e ON e.seq = pe.seq
                     WHERE pe.workspace_id = ?1 AND pe.profile_id IN (SELECT value FROM json_each(?2)) AND pe.seq < ?3
                     ORDER BY pe.seq DESC LIMIT ?4"
                ),
                params![workspace, ids, before_seq.unwrap_or(i64::MAX), limit as i64],
            )
        })
    }

    fn profiles_page(&self, workspace: &str, after_id: &str, limit: usize) -> Result<Vec<Profile>> {
        self.read_projections(|c| {
            let docs = strings(
                c,
                "SELECT doc FROM profiles WHERE workspace_id = ?1 AND id > ?2 AND merged_into IS NULL AND doc IS NOT NULL
                 ORDER BY id LIMIT ?3",
                params![workspace, after_id, limit as i64],
            )?;
            docs.iter().map(|d| decode(d)).collect()
        })
    }

    fn profiles_in_storage_order(
        &self,
        workspace: &str,
        position: &str,
        (skip, limit): (usize, usize),
        merged: bool,
    ) -> Result<(Vec<ProfileRow>, String)> {
        if merged {
            return self.merged_profiles(workspace, position, (skip, limit));
        }
        let after = rowid_position(position)?;
        self.read_projections(|c| {
            // Rowid order reads the table front to back; `+` keeps SQLite off the id index.
            let filter = if merged {
                "merged_into IS NOT NULL"
            } else {
                "merged_into IS NULL AND doc IS NOT NULL"
            };
            let mut st = c
                .prepare_cached(&format!(
                    "SELECT rowid, id, merged_into, doc FROM profiles
                     WHERE rowid > ?2 AND +workspace_id = ?1 AND {filter} ORDER BY rowid LIMIT ?3 OFFSET ?4"
                ))
                .map_err(backend)?;
            let rows = st
                .query_map(params![workspace, after, limit as i64, skip as i64], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                })
                .map_err(backend)?;
            let mut out = Vec::new();
            let mut last = after;
            for row in rows {
                let (rowid, id, merged_into, doc) = row.map_err(backend)?;
                last = rowid;
                let profile = match (merged, doc) {
                    (false, Some(d)) => Some(decode(&d)?),
                    _ => None,
                };
                out.push(ProfileRow {
                    id,
                    merged_into,
                    profile,
                });
            }
            Ok((out, last.to_string()))
        })
    }

    fn event_owners(
        &self,
        workspace: &str,
        position: &str,
        until: Option<&str>,
        limit: usize,
        visit: &mut dyn FnMut(&str, i64),
    ) -> Result<(usize, String)> {
        let (after_profile, after_seq) = parse_owners_position(position)?;
        self.read_projections(|c| {
            let bound = if until.is_some() {
                "AND profile_id < ?5"
            } else {
                ""
            };
            let mut st = c
                .prepare_cached(&format!(
                    "SELECT profile_id, seq FROM profile_events
                     WHERE workspace_id = ?1 AND (profile_id, seq) > (?2, ?3) {bound}
                     ORDER BY profile_id, seq LIMIT ?4"
                ))
                .map_err(backend)?;
            let mut rows = match until {
                Some(until) => st.query(params![
                    workspace,
                    after_profile,
                    after_seq,
                    limit as i64,
                    until
                ]),
                None => st.query(params![workspace, after_profile, after_seq, limit as i64]),
            }
            .map_err(backend)?;
            let (mut count, mut last) = (0, None);
            while let Some(r) = rows.next().map_err(backend)? {
                let profile = r.get_ref(0).map_err(backend)?.as_str().map_err(corrupt)?;
                let seq: i64 = r.get(1).map_err(backend)?;
                visit(profile, seq);
                count += 1;
                if count == limit {
                    last = Some(owners_position(profile, seq));
                }
            }
            Ok((count, last.unwrap_or_else(|| position.to_string())))
        })
    }

    fn profile_count(&self, workspace: &str) -> Result<u64> {
        self.read_projections(|c| {
            c.query_row(
                "SELECT count(*) FROM profiles WHERE workspace_id = ?1 AND merged_into IS NULL",
                [workspace],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(backend)
        })
    }

    fn tallies(&self, workspace: &str, from: i64, to: i64) -> Result<Vec<parcours_store::Tally>> {
        self.read_projections(|c| {
            c.prepare_cached(
                "SELECT metric, key, day, n FROM tallies
                 WHERE workspace_id = ?1 AND day BETWEEN ?2 AND ?3 ORDER BY metric, day, key",
            )
            .map_err(backend)?
            .query_map(params![workspace, from, to], |r| {
                Ok(parcours_store::Tally {
                    workspace_id: workspace.to_string(),
                    metric: r.get(0)?,
                    key: r.get(1)?,
                    day: r.get(2)?,
                    n: r.get(3)?,
                })
            })
            .map_err(backend)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(backend)
        })
    }
}

/// Adds daily counts to the tallies, in the caller's transaction.
pub(crate) fn add_tallies(
    tx: &rusqlite::Transaction<'_>,
    tallies: &[parcours_store::Tally],
) -> Result<()> {
    if tallies.is_empty() {
        return Ok(());
    }
    let mut add = tx
        .prepare_cached(
            "INSERT INTO tallies (workspace_id, metric, day, key, n) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (workspace_id, day, metric, key) DO UPDATE SET n = n + excluded.n",
        )
        .map_err(backend)?;
    for t in tallies {
        add.execute(params![t.workspace_id, t.metric, t.day, t.key, t.n])
            .map_err(backend)?;
    }
    Ok(())
}

/// Whether a workspace has a live journey (its events and audience changes are queued for
/// journeys).
pub(crate) fn runs_journeys(conn: &rusqlite::Connection, workspace: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM journey_versions v WHERE workspace_id = ?1 AND status = 'live'
               AND version = (SELECT max(version) FROM journey_versions l
                              WHERE l.workspace_id = v.workspace_id AND l.journey_id = v.journey_id)
             LIMIT 1",
        )
        .map_err(backend)?
        .query_row([workspace], |_| Ok(()))
        .optional()
        .map_err(backend)?
        .is_some())
}

/// Queues journey work (a row already queued stays as it is).
pub(crate) fn queue_work(
    tx: &rusqlite::Transaction<'_>,
    rows: &[parcours_store::JourneyWork],
) -> Result<()> {
    let mut insert = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO journey_work
               (workspace_id, seq, profile_id, bucket, name, message_id, timestamp, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .map_err(backend)?;
    for r in rows {
        insert
            .execute(params![
                r.workspace_id,
                r.seq,
                r.profile_id,
                r.bucket,
                r.name,
                r.message_id,
                r.timestamp,
                r.body
            ])
            .map_err(backend)?;
    }
    Ok(())
}
