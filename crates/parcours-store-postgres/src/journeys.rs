//! Journey versions. Two nodes saving the same journey at once: one version wins, the other
//! is told it replaced an older one (the primary key settles it).

use parcours_core::time::Millis;
use parcours_store::{
    ContactRow, Entrant, GroupStats, JourneyStats, JourneyVersion, JourneyWork, JourneyWrite,
    Journeys, NewJourneyVersion, Result, RunCounts, RunHistory, RunNote, StoreError, StoredRun,
    JOURNEY_SENDS, JOURNEY_TIMERS,
};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use crate::{backend, PgStore};

const COLS: &str = "workspace_id, journey_id, version, source, doc, status, in_flight, created_at";
const SELECT: &str =
    "workspace_id, journey_id, version, source, doc::text, status, in_flight, created_at";

fn version(r: &PgRow) -> Result<JourneyVersion> {
    Ok(JourneyVersion {
        workspace_id: r.try_get(0).map_err(backend)?,
        journey_id: r.try_get(1).map_err(backend)?,
        version: r.try_get::<i32, _>(2).map_err(backend)?.max(0) as u32,
        source: r.try_get(3).map_err(backend)?,
        doc: {
            let text: String = r.try_get(4).map_err(backend)?;
            serde_json::from_str(&text)
                .map_err(|e| StoreError::Corrupt(format!("journey document: {e}")))?
        },
        status: r.try_get(5).map_err(backend)?,
        in_flight: r.try_get(6).map_err(backend)?,
        created_at: r.try_get(7).map_err(backend)?,
    })
}

fn conflict(journey: &str, replaces: Option<u32>) -> StoreError {
    StoreError::Conflict(format!(
        "journey {journey} is no longer at version {}",
        replaces.map_or("none".into(), |l| l.to_string()),
    ))
}

const RUN_COLS: &str = "workspace_id, run_id, journey_id, version, profile_id, run_key, bucket, \
     active, state, entered_at, ended_at, outcome, revision";

fn stored_run(r: &PgRow) -> Result<StoredRun> {
    let state: String = r.try_get(8).map_err(backend)?;
    let run_id: String = r.try_get(1).map_err(backend)?;
    Ok(StoredRun {
        workspace_id: r.try_get(0).map_err(backend)?,
        state: serde_json::from_str(&state)
            .map_err(|e| StoreError::Corrupt(format!("run {run_id}: {e}")))?,
        run_id,
        journey_id: r.try_get(2).map_err(backend)?,
        version: r.try_get::<i32, _>(3).map_err(backend)?.max(0) as u32,
        profile_id: r.try_get(4).map_err(backend)?,
        key: r.try_get(5).map_err(backend)?,
        bucket: r.try_get::<i16, _>(6).map_err(backend)? as u16,
        active: r.try_get(7).map_err(backend)?,
        entered_at: r.try_get(9).map_err(backend)?,
        ended_at: r.try_get(10).map_err(backend)?,
        outcome: r.try_get(11).map_err(backend)?,
        revision: r.try_get(12).map_err(backend)?,
    })
}

/// A profile merged into another takes its journeys along: its runs, their timers, their
/// notes and the messages caps count move to the profile it was merged into. A run of a
/// journey and key she is already in there ends (`exited`, with a note saying why): one
/// person is never in the same journey twice for the same key. Each moved run's revision
/// changes, so a decision read before the merge is refused and taken again.
pub(crate) async fn rehome_runs(
    conn: &mut PgConnection,
    workspace: &str,
    from: &str,
    to: &str,
    at: Millis,
) -> Result<()> {
    let bucket = parcours_store::profile_bucket(workspace, to) as i16;
    let ended: Vec<(String, String)> = sqlx::query_as(
        "UPDATE journey_runs l SET active = false, ended_at = $4, outcome = 'exited',
           revision = revision + 1,
           state = jsonb_set(state::jsonb, '{state}', jsonb_build_object('state', 'done',
             'at', $4::bigint, 'outcome', jsonb_build_object('outcome', 'exited', 'reason', 'merged')))::text
         WHERE l.workspace_id = $1 AND l.profile_id = $2 AND l.active
           AND EXISTS (SELECT 1 FROM journey_runs w
                       WHERE w.workspace_id = $1 AND w.profile_id = $3 AND w.active
                         AND w.journey_id = l.journey_id AND w.run_key = l.run_key)
         RETURNING run_id, journey_id",
    )
    .bind(workspace)
    .bind(from)
    .bind(to)
    .bind(at)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    for (run, journey) in &ended {
        sqlx::query(
            "INSERT INTO journey_notes (workspace_id, run_id, n, journey_id, profile_id, at, step, code, detail)
             VALUES ($1, $2, (SELECT coalesce(max(n), 0) + 1 FROM journey_notes
                              WHERE workspace_id = $1 AND run_id = $2), $3, $4, $5, NULL, 'merged',
                     'her profile was merged into one already in this journey for this key')",
        )
        .bind(workspace)
        .bind(run)
        .bind(journey)
        .bind(to)
        .bind(at)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    }
    if !ended.is_empty() {
        let ended: Vec<String> = ended.into_iter().map(|(r, _)| r).collect();
        sqlx::query(
            "DELETE FROM timers WHERE workspace_id = $1
               AND ((kind = $3 AND key = ANY($2)) OR (kind = $4 AND split_part(key, ':', 1) = ANY($2)))",
        )
        .bind(workspace)
        .bind(&ended)
        .bind(JOURNEY_TIMERS)
        .bind(JOURNEY_SENDS)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    }
    let moved: Vec<String> = sqlx::query_scalar(
        "UPDATE journey_runs SET profile_id = $3, bucket = $4, revision = revision + 1,
           state = jsonb_set(state::jsonb, '{profile}', to_jsonb($3::text))::text
         WHERE workspace_id = $1 AND profile_id = $2 RETURNING run_id",
    )
    .bind(workspace)
    .bind(from)
    .bind(to)
    .bind(bucket)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    if moved.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE timers SET bucket = $5 WHERE workspace_id = $1
           AND ((kind = $3 AND key = ANY($2)) OR (kind = $4 AND split_part(key, ':', 1) = ANY($2)))",
    )
    .bind(workspace)
    .bind(&moved)
    .bind(JOURNEY_TIMERS)
    .bind(JOURNEY_SENDS)
    .bind(i32::from(bucket))
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    // Notes by their runs' keys (they have no index by profile).
    sqlx::query(
        "UPDATE journey_notes SET profile_id = $3 WHERE workspace_id = $1 AND run_id = ANY($2)",
    )
    .bind(workspace)
    .bind(&moved)
    .bind(to)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    sqlx::query(
        "UPDATE journey_contacts SET profile_id = $3 WHERE workspace_id = $1 AND profile_id = $2",
    )
    .bind(workspace)
    .bind(from)
    .bind(to)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(())
}

fn unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "23505")
}

impl Journeys for PgStore {
    fn put_journey_version(&self, v: &NewJourneyVersion) -> Result<u32> {
        let version = v.replaces.unwrap_or(0) + 1;
        let inserted = self.run(
            sqlx::query(&format!(
                "INSERT INTO journey_versions ({COLS})
                 SELECT $1, $2, $3, $4, $5::jsonb, $6, $7, $8
                 WHERE (SELECT max(version) FROM journey_versions
                        WHERE workspace_id = $1 AND journey_id = $2) IS NOT DISTINCT FROM $9"
            ))
            .bind(&v.workspace_id)
            .bind(&v.journey_id)
            .bind(version as i32)
            .bind(&v.source)
            .bind(v.doc.to_string())
            .bind(&v.status)
            .bind(&v.in_flight)
            .bind(v.created_at)
            .bind(v.replaces.map(|r| r as i32))
            .execute(self.pool()),
        );
        match inserted {
            Ok(done) if done.rows_affected() == 1 => Ok(version),
            Ok(_) => Err(conflict(&v.journey_id, v.replaces)),
            Err(e)
                if e.as_database_error()
                    .and_then(|d| d.code())
                    .is_some_and(|c| c == "23505") =>
            {
                Err(conflict(&v.journey_id, v.replaces))
            }
            Err(e) => Err(backend(e)),
        }
    }

    fn journeys(&self, workspace: Option<&str>) -> Result<Vec<JourneyVersion>> {
        let rows = self
            .run(
                sqlx::query(&format!(
                    "SELECT DISTINCT ON (workspace_id, journey_id) {SELECT} FROM journey_versions
                     WHERE ($1::text IS NULL OR workspace_id = $1)
                     ORDER BY workspace_id, journey_id, version DESC"
                ))
                .bind(workspace)
                .fetch_all(self.pool()),
            )
            .map_err(backend)?;
        rows.iter().map(version).collect()
    }

    fn journey_versions(&self, workspace: &str, journey: &str) -> Result<Vec<JourneyVersion>> {
        let rows = self
            .run(
                sqlx::query(&format!(
                    "SELECT {SELECT} FROM journey_versions WHERE workspace_id = $1 AND journey_id = $2
                     ORDER BY version DESC"
                ))
                .bind(workspace)
                .bind(journey)
                .fetch_all(self.pool()),
            )
            .map_err(backend)?;
        rows.iter().map(version).collect()
    }

    fn journey_version(
        &self,
        workspace: &str,
        journey: &str,
        v: u32,
    ) -> Result<Option<JourneyVersion>> {
        let row = self
            .run(
                sqlx::query(&format!(
                    "SELECT {SELECT} FROM journey_versions
                     WHERE workspace_id = $1 AND journey_id = $2 AND version = $3"
                ))
                .bind(workspace)
                .bind(journey)
                .bind(v as i32)
                .fetch_optional(self.pool()),
            )
            .map_err(backend)?;
        row.as_ref().map(version).transpose()
    }

    fn journey_work(&self, buckets: Option<&[u16]>, limit: usize) -> Result<Vec<JourneyWork>> {
        let rows = self
            .run(
                sqlx::query(
                    "SELECT workspace_id, seq, profile_id, bucket, name, message_id, timestamp, body
                     FROM journey_work WHERE $1::smallint[] IS NULL OR bucket = ANY($1)
                     ORDER BY seq LIMIT $2",
                )
                .bind(buckets.map(crate::projections::small))
                .bind(limit as i64)
                .fetch_all(self.pool()),
            )
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(JourneyWork {
                    workspace_id: r.try_get(0).map_err(backend)?,
                    seq: r.try_get(1).map_err(backend)?,
                    profile_id: r.try_get(2).map_err(backend)?,
                    bucket: r.try_get::<i16, _>(3).map_err(backend)? as u16,
                    name: r.try_get(4).map_err(backend)?,
                    message_id: r.try_get(5).map_err(backend)?,
                    timestamp: r.try_get(6).map_err(backend)?,
                    body: r.try_get(7).map_err(backend)?,
                })
            })
            .collect()
    }

    fn active_runs(&self, workspace: &str, profile: &str) -> Result<Vec<StoredRun>> {
        let rows = self
            .run(
                sqlx::query(&format!(
                    "SELECT {RUN_COLS} FROM journey_runs
                     WHERE workspace_id = $1 AND profile_id = $2 AND active ORDER BY entered_at, run_id"
                ))
                .bind(workspace)
                .bind(profile)
                .fetch_all(self.pool()),
            )
            .map_err(backend)?;
        rows.iter().map(stored_run).collect()
    }

    fn runs_of(&self, workspace: &str, profile: &str, limit: usize) -> Result<Vec<StoredRun>> {
        let rows = self
            .run(
                sqlx::query(&format!(
                    "SELECT {RUN_COLS} FROM journey_runs WHERE workspace_id = $1 AND profile_id = $2
                     ORDER BY entered_at DESC, run_id DESC LIMIT $3"
                ))
                .bind(workspace)
                .bind(profile)
                .bind(limit as i64)
                .fetch_all(self.pool()),
            )
            .map_err(backend)?;
        rows.iter().map(stored_run).collect()
    }

    fn run(&self, workspace: &str, run_id: &str) -> Result<Option<StoredRun>> {
        let row = self
            .run(
                sqlx::query(&format!(
                    "SELECT {RUN_COLS} FROM journey_runs WHERE workspace_id = $1 AND run_id = $2"
                ))
                .bind(workspace)
                .bind(run_id)
                .fetch_optional(self.pool()),
            )
            .map_err(backend)?;
        row.as_ref().map(stored_run).transpose()
    }

    fn run_history(
        &self,
        workspace: &str,
        journey: &str,
        profile: &str,
        key: &str,
    ) -> Result<RunHistory> {
        let row = self
            .run(
                sqlx::query(
                    "SELECT coalesce(bool_or(active), false), max(entered_at)
                     FROM journey_runs
                     WHERE workspace_id = $1 AND journey_id = $2 AND profile_id = $3 AND run_key = $4",
                )
                .bind(workspace)
                .bind(journey)
                .bind(profile)
                .bind(key)
                .fetch_one(self.pool()),
            )
            .map_err(backend)?;
        Ok(RunHistory {
            active: row.try_get(0).map_err(backend)?,
            last_entered: row.try_get(1).map_err(backend)?,
        })
    }

    fn journey_entries(&self, workspace: &str, journey: &str) -> Result<u64> {
        let n: i64 = self
            .run(
                sqlx::query_scalar(
                    "SELECT count(*) FROM journey_runs WHERE workspace_id = $1 AND journey_id = $2",
                )
                .bind(workspace)
                .bind(journey)
                .fetch_one(self.pool()),
            )
            .map_err(backend)?;
        Ok(n.max(0) as u64)
    }

    fn run_counts(&self, workspace: &str, journey: &str) -> Result<RunCounts> {
        let totals = self
            .run(
                sqlx::query(
                    "SELECT count(*) FILTER (WHERE active), count(*) FILTER (WHERE NOT active)
                     FROM journey_runs WHERE workspace_id = $1 AND journey_id = $2",
                )
                .bind(workspace)
                .bind(journey)
                .fetch_one(self.pool()),
            )
            .map_err(backend)?;
        let steps = self
            .run(
                sqlx::query(
                    "SELECT state::jsonb -> 'state' ->> 'step' AS step, count(*) FROM journey_runs
                     WHERE workspace_id = $1 AND journey_id = $2 AND active
                     GROUP BY step ORDER BY step",
                )
                .bind(workspace)
                .bind(journey)
                .fetch_all(self.pool()),
            )
            .map_err(backend)?;
        let steps = steps
            .iter()
            .map(|r| {
                Ok((
                    r.try_get::<Option<String>, _>(0)
                        .map_err(backend)?
                        .unwrap_or_default(),
                    r.try_get::<i64, _>(1).map_err(backend)? as u64,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RunCounts {
            active: totals.try_get::<i64, _>(0).map_err(backend)? as u64,
            ended: totals.try_get::<i64, _>(1).map_err(backend)? as u64,
            waiting: steps,
        })
    }

    fn journey_entrants(&self, workspace: &str, journey: &str) -> Result<Vec<Entrant>> {
        let rows = self
            .run(
                sqlx::query(
                    "SELECT profile_id, entered_at,
                            coalesce((state::jsonb ->> 'holdout')::boolean, false),
                            coalesce((state::jsonb ->> 'global_control')::boolean, false),
                            state::jsonb ->> 'variant', coalesce(outcome = 'goal', false)
                     FROM journey_runs WHERE workspace_id = $1 AND journey_id = $2
                     ORDER BY entered_at, run_id",
                )
                .bind(workspace)
                .bind(journey)
                .fetch_all(self.pool()),
            )
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(Entrant {
                    profile_id: r.try_get(0).map_err(backend)?,
                    entered_at: r.try_get(1).map_err(backend)?,
                    holdout: r.try_get(2).map_err(backend)?,
                    global_control: r.try_get(3).map_err(backend)?,
                    variant: r.try_get(4).map_err(backend)?,
                    converted: r.try_get(5).map_err(backend)?,
                })
            })
            .collect()
    }

    fn journey_stats(&self, workspace: &str, journey: &str) -> Result<JourneyStats> {
        let rows = self
            .run(
                sqlx::query(
                    "SELECT coalesce((state::jsonb ->> 'holdout')::boolean, false) AS h,
                            state::jsonb ->> 'variant' AS v,
                            count(*), count(*) FILTER (WHERE active),
                            count(*) FILTER (WHERE outcome = 'goal'),
                            count(*) FILTER (WHERE outcome = 'exited'),
                            count(*) FILTER (WHERE outcome = 'completed'),
                            coalesce((state::jsonb ->> 'global_control')::boolean, false) AS g
                     FROM journey_runs WHERE workspace_id = $1 AND journey_id = $2
                     GROUP BY h, g, v ORDER BY h, g, v",
                )
                .bind(workspace)
                .bind(journey)
                .fetch_all(self.pool()),
            )
            .map_err(backend)?;
        let n = |r: &PgRow, i: usize| -> Result<u64> {
            Ok(r.try_get::<i64, _>(i).map_err(backend)?.max(0) as u64)
        };
        let groups = rows
            .iter()
            .map(|r| {
                Ok(GroupStats {
                    holdout: r.try_get(0).map_err(backend)?,
                    global_control: r.try_get(7).map_err(backend)?,
                    variant: r.try_get(1).map_err(backend)?,
                    entered: n(r, 2)?,
                    active: n(r, 3)?,
                    converted: n(r, 4)?,
                    exited: n(r, 5)?,
                    completed: n(r, 6)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let rows = self
            .run(
                sqlx::query(
                    "SELECT step, code, count(*) FROM journey_notes
                     WHERE workspace_id = $1 AND journey_id = $2 GROUP BY step, code ORDER BY step, code",
                )
                .bind(workspace)
                .bind(journey)
                .fetch_all(self.pool()),
            )
            .map_err(backend)?;
        let decisions = rows
            .iter()
            .map(|r| {
                Ok((
                    r.try_get(0).map_err(backend)?,
                    r.try_get(1).map_err(backend)?,
                    n(r, 2)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(JourneyStats { groups, decisions })
    }

    fn run_notes(&self, workspace: &str, run_id: &str) -> Result<Vec<RunNote>> {
        let rows = self
            .run(
                sqlx::query(
                    "SELECT workspace_id, run_id, journey_id, profile_id, at, step, code, detail
                     FROM journey_notes WHERE workspace_id = $1 AND run_id = $2 ORDER BY n",
                )
                .bind(workspace)
                .bind(run_id)
                .fetch_all(self.pool()),
            )
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(RunNote {
                    workspace_id: r.try_get(0).map_err(backend)?,
                    run_id: r.try_get(1).map_err(backend)?,
                    journey_id: r.try_get(2).map_err(backend)?,
                    profile_id: r.try_get(3).map_err(backend)?,
                    at: r.try_get(4).map_err(backend)?,
                    step: r.try_get(5).map_err(backend)?,
                    code: r.try_get(6).map_err(backend)?,
                    detail: r.try_get(7).map_err(backend)?,
                })
            })
            .collect()
    }

    fn contacts(&self, workspace: &str, profile: &str, since: i64) -> Result<Vec<ContactRow>> {
        let rows = self
            .run(
                sqlx::query(
                    "SELECT workspace_id, profile_id, at, key, channel, journey_id, priority
                     FROM journey_contacts WHERE workspace_id = $1 AND profile_id = $2 AND at >= $3
                     ORDER BY at, key",
                )
                .bind(workspace)
                .bind(profile)
                .bind(since)
                .fetch_all(self.pool()),
            )
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(ContactRow {
                    workspace_id: r.try_get(0).map_err(backend)?,
                    profile_id: r.try_get(1).map_err(backend)?,
                    at: r.try_get(2).map_err(backend)?,
                    key: r.try_get(3).map_err(backend)?,
                    channel: r.try_get(4).map_err(backend)?,
                    journey_id: r.try_get(5).map_err(backend)?,
                    priority: r.try_get::<i16, _>(6).map_err(backend)?.clamp(0, 255) as u8,
                })
            })
            .collect()
    }

    fn put_journey_policy(&self, workspace: &str, doc: &serde_json::Value, at: i64) -> Result<()> {
        self.run(
            sqlx::query(
                "INSERT INTO journey_policies (workspace_id, doc, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (workspace_id) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at",
            )
            .bind(workspace)
            .bind(doc.to_string())
            .bind(at)
            .execute(self.pool()),
        )
        .map_err(backend)?;
        Ok(())
    }

    fn journey_policy(&self, workspace: &str) -> Result<Option<serde_json::Value>> {
        let doc: Option<String> = self
            .run(
                sqlx::query_scalar("SELECT doc FROM journey_policies WHERE workspace_id = $1")
                    .bind(workspace)
                    .fetch_optional(self.pool()),
            )
            .map_err(backend)?;
        doc.map(|d| {
            serde_json::from_str(&d)
                .map_err(|e| StoreError::Corrupt(format!("contact policy: {e}")))
        })
        .transpose()
    }

    fn record_journeys(&self, w: &JourneyWrite) -> Result<()> {
        if w.is_empty() {
            return Ok(());
        }
        self.run(async {
            let mut tx = self.pool().begin().await.map_err(backend)?;
            if let Some(f) = &w.fence {
                crate::projections::fence(&mut tx, &f.node, &f.buckets, f.now).await?;
            }
            for (ws, seq, profile) in &w.settled {
                sqlx::query(
                    "DELETE FROM journey_work WHERE workspace_id = $1 AND seq = $2 AND profile_id = $3",
                )
                .bind(ws)
                .bind(seq)
                .bind(profile)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            }
            crate::projections::queue_work(&mut tx, &w.requeue).await?;
            // A run starts only for a profile not merged away meanwhile (the merge would
            // not have taken it along): the decision is taken again, for the survivor.
            for (ws, profile) in w.starting_profiles() {
                let merged: Option<Option<String>> = sqlx::query_scalar(
                    "SELECT merged_into FROM profiles WHERE workspace_id = $1 AND id = $2 FOR SHARE",
                )
                .bind(ws)
                .bind(profile)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
                if let Some(Some(into)) = merged {
                    return Err(StoreError::Conflict(format!(
                        "profile {profile} was merged into {into} meanwhile"
                    )));
                }
            }
            let in_progress = || {
                StoreError::Conflict("a run of this journey, customer and key is in progress".into())
            };
            for r in &w.runs {
                let state = r.state.to_string();
                if r.revision == 0 {
                    sqlx::query(&format!(
                        "INSERT INTO journey_runs ({RUN_COLS})
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 1)"
                    ))
                    .bind(&r.workspace_id)
                    .bind(&r.run_id)
                    .bind(&r.journey_id)
                    .bind(r.version as i32)
                    .bind(&r.profile_id)
                    .bind(&r.key)
                    .bind(r.bucket as i16)
                    .bind(r.active)
                    .bind(&state)
                    .bind(r.entered_at)
                    .bind(r.ended_at)
                    .bind(&r.outcome)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| if unique_violation(&e) { in_progress() } else { backend(e) })?;
                } else {
                    let n = sqlx::query(
                        "UPDATE journey_runs SET version = $3, active = $4, state = $5, ended_at = $6,
                           outcome = $7, revision = revision + 1
                         WHERE workspace_id = $1 AND run_id = $2 AND revision = $8",
                    )
                    .bind(&r.workspace_id)
                    .bind(&r.run_id)
                    .bind(r.version as i32)
                    .bind(r.active)
                    .bind(&state)
                    .bind(r.ended_at)
                    .bind(&r.outcome)
                    .bind(r.revision)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| if unique_violation(&e) { in_progress() } else { backend(e) })?
                    .rows_affected();
                    if n != 1 {
                        return Err(StoreError::Conflict(format!(
                            "run {} changed since it was read",
                            r.run_id
                        )));
                    }
                }
            }
            for n in &w.notes {
                sqlx::query(
                    "INSERT INTO journey_notes (workspace_id, run_id, n, journey_id, profile_id, at, step, code, detail)
                     VALUES ($1, $2, (SELECT coalesce(max(n), 0) + 1 FROM journey_notes
                                      WHERE workspace_id = $1 AND run_id = $2), $3, $4, $5, $6, $7, $8)",
                )
                .bind(&n.workspace_id)
                .bind(&n.run_id)
                .bind(&n.journey_id)
                .bind(&n.profile_id)
                .bind(n.at)
                .bind(&n.step)
                .bind(&n.code)
                .bind(&n.detail)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            }
            for (ws, run) in &w.cancel_timers {
                crate::timers::cancel_in(&mut tx, ws, JOURNEY_TIMERS, std::slice::from_ref(run)).await?;
            }
            crate::timers::set_in(&mut tx, &w.set_timers).await?;
            crate::outbox::insert_rows(&mut tx, &w.outbox).await?;
            if !w.contacts.is_empty() {
                let text = |f: fn(&ContactRow) -> String| w.contacts.iter().map(f).collect::<Vec<_>>();
                sqlx::query(
                    "INSERT INTO journey_contacts
                       (workspace_id, profile_id, at, key, channel, journey_id, priority)
                     SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[],
                                          $5::text[], $6::text[], $7::smallint[])
                     ON CONFLICT DO NOTHING",
                )
                .bind(text(|c| c.workspace_id.clone()))
                .bind(text(|c| c.profile_id.clone()))
                .bind(w.contacts.iter().map(|c| c.at).collect::<Vec<_>>())
                .bind(text(|c| c.key.clone()))
                .bind(text(|c| c.channel.clone()))
                .bind(text(|c| c.journey_id.clone()))
                .bind(w.contacts.iter().map(|c| i16::from(c.priority)).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            }
            let tallies = parcours_store::tallies::of_journey_write(w);
            crate::projections::add_tallies(&mut tx, &tallies).await?;
            tx.commit().await.map_err(backend)
        })
    }
}
