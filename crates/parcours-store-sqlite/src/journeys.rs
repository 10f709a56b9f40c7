//! Journey versions, in the projections file beside the runs they start.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use parcours_core::time::Millis;
use parcours_store::{
    ContactRow, Entrant, GroupStats, JourneyStats, JourneyVersion, JourneyWork, JourneyWrite,
    Journeys, NewJourneyVersion, Result, RunCounts, RunHistory, RunNote, StoreError, StoredRun,
    JOURNEY_SENDS, JOURNEY_TIMERS,
};
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};

use crate::{backend, SqliteStore};

const COLS: &str = "workspace_id, journey_id, version, source, doc, status, in_flight, created_at";

fn version(r: &Row<'_>) -> rusqlite::Result<(JourneyVersion, String)> {
    Ok((
        JourneyVersion {
            workspace_id: r.get(0)?,
            journey_id: r.get(1)?,
            version: r.get(2)?,
            source: r.get(3)?,
            doc: serde_json::Value::Null,
            status: r.get(5)?,
            in_flight: r.get(6)?,
            created_at: r.get(7)?,
        },
        r.get(4)?,
    ))
}

fn parsed(row: (JourneyVersion, String)) -> Result<JourneyVersion> {
    let (mut v, doc) = row;
    v.doc = serde_json::from_str(&doc).map_err(|e| {
        StoreError::Corrupt(format!(
            "journey {} version {}: {e}",
            v.journey_id, v.version
        ))
    })?;
    Ok(v)
}

const RUN_COLS: &str = "workspace_id, run_id, journey_id, version, profile_id, run_key, bucket, \
     active, state, entered_at, ended_at, outcome, revision";

fn stored_run(r: &Row<'_>) -> rusqlite::Result<(StoredRun, String)> {
    Ok((
        StoredRun {
            workspace_id: r.get(0)?,
            run_id: r.get(1)?,
            journey_id: r.get(2)?,
            version: r.get(3)?,
            profile_id: r.get(4)?,
            key: r.get(5)?,
            bucket: r.get(6)?,
            active: r.get(7)?,
            state: serde_json::Value::Null,
            entered_at: r.get(9)?,
            ended_at: r.get(10)?,
            outcome: r.get(11)?,
            revision: r.get(12)?,
        },
        r.get(8)?,
    ))
}

fn run_parsed((mut run, state): (StoredRun, String)) -> Result<StoredRun> {
    run.state = serde_json::from_str(&state)
        .map_err(|e| StoreError::Corrupt(format!("run {}: {e}", run.run_id)))?;
    Ok(run)
}

fn runs_where(c: &Connection, filter: &str, args: impl rusqlite::Params) -> Result<Vec<StoredRun>> {
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {RUN_COLS} FROM journey_runs WHERE {filter}"
        ))
        .map_err(backend)?;
    let rows = st
        .query_map(args, stored_run)
        .map_err(backend)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(backend)?;
    rows.into_iter().map(run_parsed).collect()
}

/// A constraint the write broke (a second run in progress, a run id taken) is a conflict.
fn conflict_or_backend(e: rusqlite::Error, what: &str) -> StoreError {
    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) {
        StoreError::Conflict(format!("{what}: {e}"))
    } else {
        backend(e)
    }
}

/// Moves a run's timers to `bucket`, or deletes them (`None`): its own (keyed by the run)
/// and its deferred messages' (keyed `RUN:STEP:EPOCH`), each found by the primary key.
fn run_timers(tx: &Transaction<'_>, workspace: &str, run: &str, bucket: Option<u16>) -> Result<()> {
    let action = match bucket {
        Some(_) => "UPDATE timers SET bucket = ?4",
        None => "DELETE FROM timers",
    };
    for (kind, keys) in [
        (JOURNEY_TIMERS, "key = ?2"),
        (JOURNEY_SENDS, "key > ?2 || ':' AND key < ?2 || ';'"),
    ] {
        let sql = format!("{action} WHERE workspace_id = ?1 AND kind = ?3 AND {keys}");
        let mut statement = tx.prepare_cached(&sql).map_err(backend)?;
        match bucket {
            Some(b) => statement.execute(params![workspace, run, kind, b]),
            None => statement.execute(params![workspace, run, kind]),
        }
        .map_err(backend)?;
    }
    Ok(())
}

/// A profile merged into another takes its journeys along: its runs, their timers, their
/// notes and the messages caps count move to the profile it was merged into. A run of a
/// journey and key she is already in there ends (`exited`, with a note saying why): one
/// person is never in the same journey twice for the same key. Each moved run's revision
/// changes, so a decision read before the merge is refused and taken again.
pub(crate) fn rehome_runs(
    tx: &Transaction<'_>,
    workspace: &str,
    from: &str,
    to: &str,
    at: Millis,
) -> Result<()> {
    let bucket = parcours_store::profile_bucket(workspace, to);
    let ended: Vec<(String, String)> = {
        let mut q = tx
            .prepare_cached(
                // The profile index, named: without statistics the planner would scan
                // every run of the workspace (twice) on every merge.
                "UPDATE journey_runs AS l INDEXED BY journey_runs_profile SET active = 0, ended_at = ?4, outcome = 'exited',
                   revision = revision + 1,
                   state = json_set(state, '$.state', json_object('state', 'done', 'at', ?4,
                     'outcome', json_object('outcome', 'exited', 'reason', 'merged')))
                 WHERE l.workspace_id = ?1 AND l.profile_id = ?2 AND l.active
                   AND EXISTS (SELECT 1 FROM journey_runs w INDEXED BY journey_runs_profile
                               WHERE w.workspace_id = ?1 AND w.profile_id = ?3 AND w.active
                                 AND w.journey_id = l.journey_id AND w.run_key = l.run_key)
                 RETURNING run_id, journey_id",
            )
            .map_err(backend)?;
        let rows = q
            .query_map(params![workspace, from, to, at], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(backend)?;
        rows.collect::<rusqlite::Result<_>>().map_err(backend)?
    };
    for (run, journey) in &ended {
        tx.execute(
            "INSERT INTO journey_notes (workspace_id, run_id, n, journey_id, profile_id, at, step, code, detail)
             VALUES (?1, ?2, (SELECT coalesce(max(n), 0) + 1 FROM journey_notes
                              WHERE workspace_id = ?1 AND run_id = ?2), ?3, ?4, ?5, NULL, 'merged',
                     'her profile was merged into one already in this journey for this key')",
            params![workspace, run, journey, to, at],
        )
        .map_err(backend)?;
        run_timers(tx, workspace, run, None)?;
    }
    let moved: Vec<String> = {
        let mut q = tx
            .prepare_cached(
                "UPDATE journey_runs SET profile_id = ?3, bucket = ?4, revision = revision + 1,
                   state = json_set(state, '$.profile', ?3)
                 WHERE workspace_id = ?1 AND profile_id = ?2 RETURNING run_id",
            )
            .map_err(backend)?;
        let rows = q
            .query_map(params![workspace, from, to, bucket], |r| r.get(0))
            .map_err(backend)?;
        rows.collect::<rusqlite::Result<_>>().map_err(backend)?
    };
    if moved.is_empty() {
        return Ok(());
    }
    for run in &moved {
        run_timers(tx, workspace, run, Some(bucket))?;
    }
    for run in &moved {
        tx.execute(
            "UPDATE journey_notes SET profile_id = ?3 WHERE workspace_id = ?1 AND run_id = ?2",
            params![workspace, run, to],
        )
        .map_err(backend)?;
    }
    tx.execute(
        "UPDATE journey_contacts SET profile_id = ?3 WHERE workspace_id = ?1 AND profile_id = ?2",
        params![workspace, from, to],
    )
    .map_err(backend)?;
    Ok(())
}

impl Journeys for SqliteStore {
    fn put_journey_version(&self, v: &NewJourneyVersion) -> Result<u32> {
        let mut conn = self.projection_writer();
        let tx = conn.transaction().map_err(backend)?;
        let latest: Option<u32> = tx
            .query_row(
                "SELECT max(version) FROM journey_versions WHERE workspace_id = ?1 AND journey_id = ?2",
                params![v.workspace_id, v.journey_id],
                |r| r.get(0),
            )
            .map_err(backend)?;
        if latest != v.replaces {
            return Err(StoreError::Conflict(format!(
                "journey {} is at version {}, not {}",
                v.journey_id,
                latest.map_or("none".into(), |l| l.to_string()),
                v.replaces.map_or("none".into(), |l| l.to_string()),
            )));
        }
        let version = v.replaces.unwrap_or(0) + 1;
        tx.execute(
            &format!(
                "INSERT INTO journey_versions ({COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ),
            params![
                v.workspace_id,
                v.journey_id,
                version,
                v.source,
                v.doc.to_string(),
                v.status,
                v.in_flight,
                v.created_at
            ],
        )
        .map_err(backend)?;
        tx.commit().map_err(backend)?;
        Ok(version)
    }

    fn journeys(&self, workspace: Option<&str>) -> Result<Vec<JourneyVersion>> {
        self.read_projections(|c| {
            let mut st = c
                .prepare_cached(&format!(
                    "SELECT {COLS} FROM journey_versions v
                     WHERE (?1 IS NULL OR workspace_id = ?1)
                       AND version = (SELECT max(version) FROM journey_versions l
                                      WHERE l.workspace_id = v.workspace_id AND l.journey_id = v.journey_id)
                     ORDER BY workspace_id, journey_id"
                ))
                .map_err(backend)?;
            let rows = st
                .query_map(params![workspace], version)
                .map_err(backend)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(backend)?;
            rows.into_iter().map(parsed).collect()
        })
    }

    fn journey_versions(&self, workspace: &str, journey: &str) -> Result<Vec<JourneyVersion>> {
        self.read_projections(|c| {
            let mut st = c
                .prepare_cached(&format!(
                    "SELECT {COLS} FROM journey_versions WHERE workspace_id = ?1 AND journey_id = ?2
                     ORDER BY version DESC"
                ))
                .map_err(backend)?;
            let rows = st
                .query_map(params![workspace, journey], version)
                .map_err(backend)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(backend)?;
            rows.into_iter().map(parsed).collect()
        })
    }

    fn journey_version(
        &self,
        workspace: &str,
        journey: &str,
        v: u32,
    ) -> Result<Option<JourneyVersion>> {
        self.read_projections(|c| {
            c.query_row(
                &format!(
                    "SELECT {COLS} FROM journey_versions
                     WHERE workspace_id = ?1 AND journey_id = ?2 AND version = ?3"
                ),
                params![workspace, journey, v],
                version,
            )
            .optional()
            .map_err(backend)?
            .map(parsed)
            .transpose()
        })
    }

    fn journey_work(&self, buckets: Option<&[u16]>, limit: usize) -> Result<Vec<JourneyWork>> {
        let list = buckets.map(|b| serde_json::to_string(b).unwrap_or_else(|_| "[]".into()));
        self.read_projections(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT workspace_id, seq, profile_id, bucket, name, message_id, timestamp, body
                     FROM journey_work INDEXED BY journey_work_seq
                     WHERE ?1 IS NULL OR bucket IN (SELECT value FROM json_each(?1))
                     ORDER BY seq LIMIT ?2",
                )
                .map_err(backend)?;
            let rows = st
                .query_map(params![list, limit as i64], |r| {
                    Ok(JourneyWork {
                        workspace_id: r.get(0)?,
                        seq: r.get(1)?,
                        profile_id: r.get(2)?,
                        bucket: r.get(3)?,
                        name: r.get(4)?,
                        message_id: r.get(5)?,
                        timestamp: r.get(6)?,
                        body: r.get(7)?,
                    })
                })
                .map_err(backend)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(backend)?;
            Ok(rows)
        })
    }

    fn active_runs(&self, workspace: &str, profile: &str) -> Result<Vec<StoredRun>> {
        self.read_projections(|c| {
            runs_where(
                c,
                "workspace_id = ?1 AND profile_id = ?2 AND active = 1 ORDER BY entered_at, run_id",
                params![workspace, profile],
            )
        })
    }

    fn runs_of(&self, workspace: &str, profile: &str, limit: usize) -> Result<Vec<StoredRun>> {
        self.read_projections(|c| {
            runs_where(
                c,
                "workspace_id = ?1 AND profile_id = ?2 ORDER BY entered_at DESC, run_id DESC LIMIT ?3",
                params![workspace, profile, limit as i64],
            )
        })
    }

    fn run(&self, workspace: &str, run_id: &str) -> Result<Option<StoredRun>> {
        self.read_projections(|c| {
            Ok(runs_where(
                c,
                "workspace_id = ?1 AND run_id = ?2",
                params![workspace, run_id],
            )?
            .pop())
        })
    }

    fn run_history(
        &self,
        workspace: &str,
        journey: &str,
        profile: &str,
        key: &str,
    ) -> Result<RunHistory> {
        self.read_projections(|c| {
            let (active, last): (bool, Option<i64>) = c
                .prepare_cached(
                    // Her runs, from the index by profile (without statistics the planner
                    // takes the primary key, every run of the workspace).
                    "SELECT coalesce(max(active), 0), max(entered_at)
                     FROM journey_runs INDEXED BY journey_runs_profile
                     WHERE workspace_id = ?1 AND journey_id = ?2 AND profile_id = ?3 AND run_key = ?4",
                )
                .map_err(backend)?
                .query_row(params![workspace, journey, profile, key], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(backend)?;
            Ok(RunHistory {
                active,
                last_entered: last,
            })
        })
    }

    fn journey_entries(&self, workspace: &str, journey: &str) -> Result<u64> {
        self.read_projections(|c| {
            let total: i64 = c
                .prepare_cached(
                    "SELECT count(*) FROM journey_runs WHERE workspace_id = ?1 AND journey_id = ?2",
                )
                .map_err(backend)?
                .query_row(params![workspace, journey], |r| r.get(0))
                .map_err(backend)?;
            Ok(total.max(0) as u64)
        })
    }

    fn run_counts(&self, workspace: &str, journey: &str) -> Result<RunCounts> {
        self.read_projections(|c| {
            let (active, ended): (i64, i64) = c
                .prepare_cached(
                    "SELECT coalesce(sum(active), 0), coalesce(sum(1 - active), 0) FROM journey_runs
                     WHERE workspace_id = ?1 AND journey_id = ?2",
                )
                .map_err(backend)?
                .query_row(params![workspace, journey], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(backend)?;
            let mut st = c
                .prepare_cached(
                    "SELECT json_extract(state, '$.state.step') AS step, count(*) FROM journey_runs
                     WHERE workspace_id = ?1 AND journey_id = ?2 AND active = 1
                     GROUP BY step ORDER BY step",
                )
                .map_err(backend)?;
            let steps = st
                .query_map(params![workspace, journey], |r| {
                    Ok((
                        r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                        r.get::<_, i64>(1)? as u64,
                    ))
                })
                .map_err(backend)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(backend)?;
            Ok(RunCounts {
                active: active as u64,
                ended: ended as u64,
                waiting: steps,
            })
        })
    }

    fn journey_stats(&self, workspace: &str, journey: &str) -> Result<JourneyStats> {
        self.read_projections(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT coalesce(json_extract(state, '$.holdout'), 0) AS h, json_extract(state, '$.variant') AS v,
                            count(*), sum(active), sum(outcome = 'goal'), sum(outcome = 'exited'),
                            sum(outcome = 'completed'),
                            coalesce(json_extract(state, '$.global_control'), 0) AS g
                     FROM journey_runs WHERE workspace_id = ?1 AND journey_id = ?2
                     GROUP BY h, g, v ORDER BY h, g, v",
                )
                .map_err(backend)?;
            let groups = st
                .query_map(params![workspace, journey], |r| {
                    let n = |i: usize| -> rusqlite::Result<u64> {
                        Ok(r.get::<_, Option<i64>>(i)?.unwrap_or(0).max(0) as u64)
                    };
                    Ok(GroupStats {
                        holdout: r.get::<_, i64>(0)? != 0,
                        global_control: r.get::<_, i64>(7)? != 0,
                        variant: r.get(1)?,
                        entered: n(2)?,
                        active: n(3)?,
                        converted: n(4)?,
                        exited: n(5)?,
                        completed: n(6)?,
                    })
                })
                .map_err(backend)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(backend)?;
            let mut st = c
                .prepare_cached(
                    "SELECT step, code, count(*) FROM journey_notes
                     WHERE workspace_id = ?1 AND journey_id = ?2 GROUP BY step, code ORDER BY step, code",
                )
                .map_err(backend)?;
            let decisions = st
                .query_map(params![workspace, journey], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
                })
                .map_err(backend)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(backend)?;
            Ok(JourneyStats { groups, decisions })
        })
    }

    fn journey_entrants(&self, workspace: &str, journey: &str) -> Result<Vec<Entrant>> {
        self.read_projections(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT profile_id, entered_at, coalesce(json_extract(state, '$.holdout'), 0),
                            coalesce(json_extract(state, '$.global_control'), 0),
                            json_extract(state, '$.variant'), coalesce(outcome = 'goal', 0)
                     FROM journey_runs WHERE workspace_id = ?1 AND journey_id = ?2
                     ORDER BY entered_at, run_id",
                )
                .map_err(backend)?;
            let rows = st
                .query_map(params![workspace, journey], |r| {
                    Ok(Entrant {
                        profile_id: r.get(0)?,
                        entered_at: r.get(1)?,
                        holdout: r.get::<_, i64>(2)? != 0,
                        global_control: r.get::<_, i64>(3)? != 0,
                        variant: r.get(4)?,
                        converted: r.get::<_, i64>(5)? != 0,
                    })
                })
                .map_err(backend)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(backend)?;
            Ok(rows)
        })
    }

    fn run_notes(&self, workspace: &str, run_id: &str) -> Result<Vec<RunNote>> {
        self.read_projections(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT workspace_id, run_id, journey_id, profile_id, at, step, code, detail
                     FROM journey_notes WHERE workspace_id = ?1 AND run_id = ?2 ORDER BY n",
                )
                .map_err(backend)?;
            let rows = st
                .query_map(params![workspace, run_id], |r| {
                    Ok(RunNote {
                        workspace_id: r.get(0)?,
                        run_id: r.get(1)?,
                        journey_id: r.get(2)?,
                        profile_id: r.get(3)?,
                        at: r.get(4)?,
                        step: r.get(5)?,
                        code: r.get(6)?,
                        detail: r.get(7)?,
                    })
                })
                .map_err(backend)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(backend)?;
            Ok(rows)
        })
    }

    fn contacts(&self, workspace: &str, profile: &str, since: i64) -> Result<Vec<ContactRow>> {
        self.read_projections(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT workspace_id, profile_id, at, key, channel, journey_id, priority
                     FROM journey_contacts WHERE workspace_id = ?1 AND profile_id = ?2 AND at >= ?3
                     ORDER BY at, key",
                )
                .map_err(backend)?;
            let rows = st
                .query_map(params![workspace, profile, since], |r| {
                    Ok(ContactRow {
                        workspace_id: r.get(0)?,
                        profile_id: r.get(1)?,
                        at: r.get(2)?,
                        key: r.get(3)?,
                        channel: r.get(4)?,
                        journey_id: r.get(5)?,
                        priority: r.get(6)?,
                    })
                })
                .map_err(backend)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(backend)?;
            Ok(rows)
        })
    }

    fn put_journey_policy(&self, workspace: &str, doc: &serde_json::Value, at: i64) -> Result<()> {
        self.projection_writer()
            .execute(
                "INSERT INTO journey_policies (workspace_id, doc, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (workspace_id) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at",
                params![workspace, doc.to_string(), at],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn journey_policy(&self, workspace: &str) -> Result<Option<serde_json::Value>> {
        self.read_projections(|c| {
            let doc: Option<String> = c
                .query_row(
                    "SELECT doc FROM journey_policies WHERE workspace_id = ?1",
                    [workspace],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            doc.map(|d| {
                serde_json::from_str(&d)
                    .map_err(|e| StoreError::Corrupt(format!("contact policy: {e}")))
            })
            .transpose()
        })
    }

    fn record_journeys(&self, w: &JourneyWrite) -> Result<()> {
        if w.is_empty() {
            return Ok(());
        }
        let mut conn = self.projection_writer();
        let tx = conn.transaction().map_err(backend)?;
        if let Some(f) = &w.fence {
            crate::projections::fence(&tx, &f.node, &f.buckets, f.now)?;
        }
        {
            let mut settle = tx
                .prepare_cached(
                    "DELETE FROM journey_work WHERE workspace_id = ?1 AND seq = ?2 AND profile_id = ?3",
                )
                .map_err(backend)?;
            for (ws, seq, profile) in &w.settled {
                settle.execute(params![ws, seq, profile]).map_err(backend)?;
            }
            crate::projections::queue_work(&tx, &w.requeue)?;
            // A run starts only for a profile not merged away meanwhile (the merge would
            // not have taken it along): the decision is taken again, for the survivor.
            for (ws, profile) in w.starting_profiles() {
                let merged: Option<Option<String>> = tx
                    .prepare_cached(
                        "SELECT merged_into FROM profiles WHERE workspace_id = ?1 AND id = ?2",
                    )
                    .and_then(|mut st| st.query_row(params![ws, profile], |r| r.get(0)))
                    .optional()
                    .map_err(backend)?;
                if let Some(Some(into)) = merged {
                    return Err(StoreError::Conflict(format!(
                        "profile {profile} was merged into {into} meanwhile"
                    )));
                }
            }
            let mut insert = tx
                .prepare_cached(&format!(
                    "INSERT INTO journey_runs ({RUN_COLS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 1)"
                ))
                .map_err(backend)?;
            let mut update = tx
                .prepare_cached(
                    "UPDATE journey_runs SET version = ?3, active = ?4, state = ?5, ended_at = ?6,
                       outcome = ?7, revision = revision + 1
                     WHERE workspace_id = ?1 AND run_id = ?2 AND revision = ?8",
                )
                .map_err(backend)?;
            for r in &w.runs {
                let state = r.state.to_string();
                if r.revision == 0 {
                    insert
                        .execute(params![
                            r.workspace_id,
                            r.run_id,
                            r.journey_id,
                            r.version,
                            r.profile_id,
                            r.key,
                            r.bucket,
                            r.active,
                            state,
                            r.entered_at,
                            r.ended_at,
                            r.outcome
                        ])
                        .map_err(|e| {
                            conflict_or_backend(
                                e,
                                "a run of this journey, customer and key is in progress",
                            )
                        })?;
                } else {
                    let n = update
                        .execute(params![
                            r.workspace_id,
                            r.run_id,
                            r.version,
                            r.active,
                            state,
                            r.ended_at,
                            r.outcome,
                            r.revision
                        ])
                        .map_err(|e| {
                            conflict_or_backend(
                                e,
                                "a run of this journey, customer and key is in progress",
                            )
                        })?;
                    if n != 1 {
                        return Err(StoreError::Conflict(format!(
                            "run {} changed since it was read",
                            r.run_id
                        )));
                    }
                }
            }
            // A run's notes are numbered on: its last number is read once per write.
            let mut last = tx
                .prepare_cached(
                    "SELECT coalesce(max(n), 0) FROM journey_notes WHERE workspace_id = ?1 AND run_id = ?2",
                )
                .map_err(backend)?;
            let mut note = tx
                .prepare_cached(
                    "INSERT INTO journey_notes (workspace_id, run_id, n, journey_id, profile_id, at, step, code, detail)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(backend)?;
            // Runs that start in this write have none yet.
            let mut numbers: HashMap<(&str, &str), i64> = w
                .runs
                .iter()
                .filter(|r| r.revision == 0)
                .map(|r| ((r.workspace_id.as_str(), r.run_id.as_str()), 0))
                .collect();
            for n in &w.notes {
                let number = match numbers.entry((&n.workspace_id, &n.run_id)) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(e) => e.insert(
                        last.query_row(params![n.workspace_id, n.run_id], |r| r.get(0))
                            .map_err(backend)?,
                    ),
                };
                *number += 1;
                note.execute(params![
                    n.workspace_id,
                    n.run_id,
                    *number,
                    n.journey_id,
                    n.profile_id,
                    n.at,
                    n.step,
                    n.code,
                    n.detail
                ])
                .map_err(backend)?;
            }
        }
        for (ws, run) in &w.cancel_timers {
            crate::timers::cancel_in(&tx, ws, JOURNEY_TIMERS, std::slice::from_ref(run))?;
        }
        crate::timers::set_in(&tx, &w.set_timers)?;
        crate::outbox::insert_rows(&tx, &w.outbox)?;
        if !w.contacts.is_empty() {
            let mut contact = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO journey_contacts
                       (workspace_id, profile_id, at, key, channel, journey_id, priority)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(backend)?;
            for c in &w.contacts {
                contact
                    .execute(params![
                        c.workspace_id,
                        c.profile_id,
                        c.at,
                        c.key,
                        c.channel,
                        c.journey_id,
                        c.priority
                    ])
                    .map_err(backend)?;
            }
        }
        crate::projections::add_tallies(&tx, &parcours_store::tallies::of_journey_write(w))?;
        tx.commit().map_err(backend)
    }
}
