//! Audience and computed-trait definitions, memberships, their change log, computed values
//! and timers. Writes of one step are batched with `unnest`, one statement per table.

use std::collections::BTreeMap;

use parcours_core::time::Millis;
use parcours_store::{
    destination_cursor, destination_lane, profile_bucket, AudienceInputs, AudienceWork,
    AudienceWrite, Audiences, Definition, DefinitionKind, Membership, MembershipChange, Result,
    StoreError, Timer, WorkScope,
};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::Row;

use crate::event_log::{event_cols_of_e, to_event};
use crate::projections::small;
use crate::{backend, corrupt, PgStore};

/// Rows of a [`WorkScope`] (bound as `$1` buckets, `$2` whole workspaces, `$3` workspaces
/// left out).
const IN_SCOPE: &str =
    "(bucket = ANY($1) OR workspace_id = ANY($2)) AND NOT (workspace_id = ANY($3))";

/// Fails with a conflict, before anything is written, if the writer lost a lease it works
/// on or a definition it evaluated changed. Both are read with a shared lock held until
/// commit: no other node can claim the leases, and no definition can be saved, meanwhile.
async fn check_still(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    w: &AudienceWrite,
) -> Result<()> {
    if let Some(f) = &w.fence {
        crate::projections::fence(tx, &f.node, &f.buckets, f.now).await?;
    }
    for seen in &w.definitions_seen {
        let rows = sqlx::query(
            "SELECT kind, id, version, computed_version FROM definitions
             WHERE workspace_id = $1 AND kind IN ('audience', 'computed_trait')
             ORDER BY kind, id FOR SHARE",
        )
        .bind(&seen.workspace_id)
        .fetch_all(&mut **tx)
        .await
        .map_err(backend)?;
        let mut stored = Vec::with_capacity(rows.len());
        for r in &rows {
            let kind: String = r.try_get(0).map_err(backend)?;
            let kind =
                DefinitionKind::parse(&kind).ok_or_else(|| corrupt(format!("kind {kind}")))?;
            stored.push((
                kind,
                r.try_get(1).map_err(backend)?,
                r.try_get(2).map_err(backend)?,
                r.try_get(3).map_err(backend)?,
            ));
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

const DEFINITION_COLS: &str =
    "workspace_id, kind, id, doc::text, version, computed_version, done, total, created_at, updated_at";

fn definition(r: &PgRow) -> Result<Definition> {
    let kind: String = r.try_get(1).map_err(backend)?;
    Ok(Definition {
        workspace_id: r.try_get(0).map_err(backend)?,
        kind: DefinitionKind::parse(&kind).ok_or_else(|| corrupt(format!("kind {kind}")))?,
        id: r.try_get(2).map_err(backend)?,
        doc: parcours_store::definition_doc(r.try_get(3).map_err(backend)?),
        version: r.try_get(4).map_err(backend)?,
        computed_version: r.try_get(5).map_err(backend)?,
        done: r.try_get::<i64, _>(6).map_err(backend)? as u64,
        total: r.try_get::<i64, _>(7).map_err(backend)? as u64,
        created_at: r.try_get(8).map_err(backend)?,
        updated_at: r.try_get(9).map_err(backend)?,
    })
}

const CHANGE_COLS: &str = "id, workspace_id, audience_id, profile_id, entered, at, cause";

fn change(r: &PgRow) -> Result<MembershipChange> {
    Ok(MembershipChange {
        id: r.try_get(0).map_err(backend)?,
        workspace_id: r.try_get(1).map_err(backend)?,
        audience_id: r.try_get(2).map_err(backend)?,
        profile_id: r.try_get(3).map_err(backend)?,
        entered: r.try_get(4).map_err(backend)?,
        at: r.try_get(5).map_err(backend)?,
        cause: r.try_get(6).map_err(backend)?,
    })
}

fn membership(r: &PgRow) -> Result<Membership> {
    Ok(Membership {
        audience_id: r.try_get(0).map_err(backend)?,
        profile_id: r.try_get(1).map_err(backend)?,
        since: r.try_get(2).map_err(backend)?,
    })
}

impl PgStore {
    fn delete_definition_once(
        &self,
        workspace: &str,
        kind: DefinitionKind,
        id: &str,
    ) -> std::result::Result<bool, sqlx::Error> {
        self.run(async {
            let mut tx = self.pool().begin().await?;
            let n = sqlx::query(
                "DELETE FROM definitions WHERE workspace_id = $1 AND kind = $2 AND id = $3",
            )
            .bind(workspace)
            .bind(kind.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let tables: &[&str] = match kind {
                DefinitionKind::Audience => &[
                    "DELETE FROM memberships WHERE workspace_id = $1 AND audience_id = $2",
                    "DELETE FROM membership_changes WHERE workspace_id = $1 AND audience_id = $2",
                ],
                DefinitionKind::ComputedTrait => {
                    &["DELETE FROM computed_values WHERE workspace_id = $1 AND trait_id = $2"]
                }
                DefinitionKind::Destination => &[],
            };
            for sql in tables {
                sqlx::query(sql)
                    .bind(workspace)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            if kind == DefinitionKind::Destination {
                sqlx::query("DELETE FROM audience_cursors WHERE name = $1")
                    .bind(destination_cursor(workspace, id))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM outbox WHERE workspace_id = $1 AND destination = $2")
                    .bind(workspace)
                    .bind(destination_lane(id))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(n > 0)
        })
    }

    fn fetch(
        &self,
        q: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<Vec<PgRow>> {
        self.run(q.fetch_all(self.pool())).map_err(backend)
    }
}

impl Audiences for PgStore {
    fn put_definition(&self, d: &Definition) -> Result<()> {
        // Saved while the audience processor writes the same rows: a deadlock victim retries.
        // Under the workspace's lock, which unify holds while it decides whether to queue
        // profiles for evaluation (`ProjectionTx::evaluates_audiences`).
        crate::retrying(|| {
            self.run(async {
            let mut tx = self.pool().begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
                .bind(crate::projections::WORKSPACE_LOCK_SPACE)
                .bind(&d.workspace_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO definitions (workspace_id, kind, id, doc, version, computed_version, done, total, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, 0, 0, $7, $8)
                 ON CONFLICT (workspace_id, kind, id) DO UPDATE SET
                   doc = excluded.doc, version = excluded.version, done = 0, total = 0,
                   updated_at = excluded.updated_at",
            )
            .bind(&d.workspace_id)
            .bind(d.kind.as_str())
            .bind(&d.id)
            .bind(&d.doc)
            .bind(d.version)
            .bind(d.computed_version)
            .bind(d.created_at)
            .bind(d.updated_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await
            })
        })
        .map_err(backend)?;
        Ok(())
    }

    fn delete_definition(&self, workspace: &str, kind: DefinitionKind, id: &str) -> Result<bool> {
        crate::retrying(|| self.delete_definition_once(workspace, kind, id)).map_err(backend)
    }

    fn definitions(&self, workspace: Option<&str>) -> Result<Vec<Definition>> {
        self.fetch(
            sqlx::query(sql!(
                "SELECT {DEFINITION_COLS} FROM definitions WHERE $1::text IS NULL OR workspace_id = $1
                 ORDER BY workspace_id, kind, id"
            ))
            .bind(workspace),
        )?
        .iter()
        .map(definition)
        .collect()
    }

    fn memberships(&self, workspace: &str, profile: &str) -> Result<Vec<Membership>> {
        self.fetch(
            sqlx::query(
                "SELECT audience_id, profile_id, since FROM memberships
                 WHERE workspace_id = $1 AND profile_id = $2 ORDER BY audience_id",
            )
            .bind(workspace)
            .bind(profile),
        )?
        .iter()
        .map(membership)
        .collect()
    }

    fn membership_history(
        &self,
        workspace: &str,
        profile: &str,
        limit: usize,
    ) -> Result<Vec<MembershipChange>> {
        self.fetch(
            sqlx::query(sql!(
                "SELECT {CHANGE_COLS} FROM membership_changes
                 WHERE workspace_id = $1 AND profile_id = $2 ORDER BY id DESC LIMIT $3"
            ))
            .bind(workspace)
            .bind(profile)
            .bind(limit as i64),
        )?
        .iter()
        .map(change)
        .collect()
    }

    fn members(
        &self,
        workspace: &str,
        audience: &str,
        after_profile: &str,
        limit: usize,
    ) -> Result<Vec<Membership>> {
        self.fetch(
            sqlx::query(
                "SELECT audience_id, profile_id, since FROM memberships
                 WHERE workspace_id = $1 AND audience_id = $2 AND profile_id > $3
                 ORDER BY profile_id LIMIT $4",
            )
            .bind(workspace)
            .bind(audience)
            .bind(after_profile)
            .bind(limit as i64),
        )?
        .iter()
        .map(membership)
        .collect()
    }

    fn member_count(&self, workspace: &str, audience: &str) -> Result<u64> {
        let rows = self.fetch(
            sqlx::query(
                "SELECT count(*) FROM memberships WHERE workspace_id = $1 AND audience_id = $2",
            )
            .bind(workspace)
            .bind(audience),
        )?;
        let n: i64 = rows[0].try_get(0).map_err(backend)?;
        Ok(n as u64)
    }

    fn computed_values(&self, workspace: &str, profile: &str) -> Result<BTreeMap<String, Value>> {
        self.fetch(
            sqlx::query(
                "SELECT trait_id, value FROM computed_values WHERE workspace_id = $1 AND profile_id = $2",
            )
            .bind(workspace)
            .bind(profile),
        )?
        .iter()
        .map(|r| {
            Ok((
                r.try_get::<String, _>(0).map_err(backend)?,
                r.try_get::<Value, _>(1).map_err(backend)?,
            ))
        })
        .collect()
    }

    fn audience_work(&self, scope: &WorkScope, limit: usize) -> Result<Vec<AudienceWork>> {
        self.fetch(
            sqlx::query(sql!(
                "SELECT workspace_id, profile_id, bucket, names, everything, retired, first_seq,
                   cause, at, version
                 FROM audience_work WHERE {IN_SCOPE} ORDER BY first_seq LIMIT $4"
            ))
            .bind(small(&scope.buckets))
            .bind(&scope.whole)
            .bind(&scope.except)
            .bind(limit as i64),
        )?
        .iter()
        .map(|r| {
            Ok(AudienceWork {
                workspace_id: r.try_get(0).map_err(backend)?,
                profile_id: r.try_get(1).map_err(backend)?,
                bucket: r.try_get::<i16, _>(2).map_err(backend)? as u16,
                names: r.try_get(3).map_err(backend)?,
                everything: r.try_get(4).map_err(backend)?,
                retired: r.try_get(5).map_err(backend)?,
                first_seq: r.try_get(6).map_err(backend)?,
                cause: r.try_get(7).map_err(backend)?,
                at: r.try_get(8).map_err(backend)?,
                version: r.try_get(9).map_err(backend)?,
            })
        })
        .collect()
    }

    fn earliest_audience_work(&self) -> Result<Option<i64>> {
        self.run(
            sqlx::query_scalar("SELECT min(first_seq) FROM audience_work").fetch_one(self.pool()),
        )
        .map_err(backend)
    }

    fn orphans(&self, workspace: &str, after: &str, limit: usize) -> Result<Vec<String>> {
        self.fetch(
            sqlx::query(
                "SELECT o.profile_id FROM (
                   SELECT profile_id FROM memberships WHERE workspace_id = $1 AND profile_id COLLATE \"C\" > $2
                   UNION SELECT profile_id FROM computed_values WHERE workspace_id = $1 AND profile_id COLLATE \"C\" > $2
                   UNION SELECT key FROM timers WHERE workspace_id = $1 AND kind = 'audience' AND key COLLATE \"C\" > $2
                 ) o
                 WHERE NOT EXISTS (SELECT 1 FROM profiles p WHERE p.workspace_id = $1
                   AND p.id = o.profile_id AND p.merged_into IS NULL AND p.doc IS NOT NULL)
                 ORDER BY o.profile_id COLLATE \"C\" LIMIT $3",
            )
            .bind(workspace)
            .bind(after)
            .bind(limit as i64),
        )?
        .iter()
        .map(|r| r.try_get(0).map_err(backend))
        .collect()
    }

    fn changes_after(&self, after_id: i64, limit: usize) -> Result<Vec<MembershipChange>> {
        self.fetch(
            sqlx::query(sql!(
                "SELECT {CHANGE_COLS} FROM membership_changes WHERE id > $1 ORDER BY id LIMIT $2"
            ))
            .bind(after_id)
            .bind(limit as i64),
        )?
        .iter()
        .map(change)
        .collect()
    }

    fn due_timers(&self, now: Millis, scope: &WorkScope, limit: usize) -> Result<Vec<Timer>> {
        self.fetch(
            sqlx::query(sql!(
                "SELECT workspace_id, key, due_at FROM timers
                 WHERE kind = 'audience' AND due_at <= $5 AND {IN_SCOPE}
                 ORDER BY due_at LIMIT $4"
            ))
            .bind(small(&scope.buckets))
            .bind(&scope.whole)
            .bind(&scope.except)
            .bind(limit as i64)
            .bind(now),
        )?
        .iter()
        .map(|r| {
            Ok(Timer {
                workspace_id: r.try_get(0).map_err(backend)?,
                profile_id: r.try_get(1).map_err(backend)?,
                due_at: r.try_get(2).map_err(backend)?,
            })
        })
        .collect()
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
        // Each profile with the profiles merged into it.
        const FAMILY: &str = "WITH RECURSIVE fam(root, id) AS (
               SELECT r COLLATE \"C\", r COLLATE \"C\" FROM unnest($2::text[]) AS r
               UNION
               SELECT fam.root, p.id FROM fam JOIN profiles p
                 ON p.workspace_id = $1 AND p.merged_into = fam.id
             )";
        if known_upto > 0 {
            let known = self.fetch(
                sqlx::query(sql!(
                    "{FAMILY}
                     SELECT pe.seq, fam.root FROM fam
                     JOIN profile_events pe ON pe.workspace_id = $1 AND pe.profile_id = fam.id
                     WHERE pe.seq <= $3
                     ORDER BY fam.root, pe.seq"
                ))
                .bind(workspace)
                .bind(profiles)
                .bind(known_upto),
            )?;
            for r in &known {
                let root: String = r.try_get(1).map_err(backend)?;
                if let Some(slot) = out.get_mut(&root) {
                    slot.known.push(r.try_get(0).map_err(backend)?);
                }
            }
        }
        // The events read (none when no event is named).
        if !names.is_empty() {
            let events = self.fetch(
                sqlx::query(sql!(
                    "{FAMILY}
                     SELECT {}, fam.root FROM fam
                     JOIN profile_events pe ON pe.workspace_id = $1 AND pe.profile_id = fam.id
                     JOIN events e ON e.seq = pe.seq
                     WHERE pe.seq > $6
                       AND ((e.type = 'track' AND e.event = ANY($3))
                            OR (e.type = 'page' AND $4) OR (e.type = 'screen' AND $5))
                     ORDER BY fam.root, pe.seq DESC",
                    event_cols_of_e()
                ))
                .bind(workspace)
                .bind(profiles)
                .bind(names)
                .bind(page)
                .bind(screen)
                .bind(known_upto),
            )?;
            for r in &events {
                let root: String = r.try_get(13).map_err(backend)?;
                if let Some(slot) = out.get_mut(&root) {
                    slot.events.push(to_event(r)?);
                }
            }
        }
        let computed = self.fetch(
            sqlx::query(
                "SELECT profile_id, trait_id, value FROM computed_values
                 WHERE workspace_id = $1 AND profile_id = ANY($2)",
            )
            .bind(workspace)
            .bind(profiles),
        )?;
        for r in &computed {
            let p: String = r.try_get(0).map_err(backend)?;
            if let Some(slot) = out.get_mut(&p) {
                slot.computed.insert(
                    r.try_get(1).map_err(backend)?,
                    r.try_get::<Value, _>(2).map_err(backend)?,
                );
            }
        }
        let members = self.fetch(
            sqlx::query(
                "SELECT profile_id, audience_id FROM memberships
                 WHERE workspace_id = $1 AND profile_id = ANY($2) ORDER BY profile_id, audience_id",
            )
            .bind(workspace)
            .bind(profiles),
        )?;
        for r in &members {
            let p: String = r.try_get(0).map_err(backend)?;
            if let Some(slot) = out.get_mut(&p) {
                slot.memberships.push(r.try_get(1).map_err(backend)?);
            }
        }
        if timers {
            let due = self.fetch(
                sqlx::query(
                    "SELECT key, due_at FROM timers
                     WHERE workspace_id = $1 AND kind = 'audience' AND key = ANY($2)",
                )
                .bind(workspace)
                .bind(profiles),
            )?;
            for r in &due {
                let p: String = r.try_get(0).map_err(backend)?;
                if let Some(slot) = out.get_mut(&p) {
                    slot.timer = Some(r.try_get(1).map_err(backend)?);
                }
            }
        }
        Ok(out)
    }

    fn timers_page(
        &self,
        workspace: &str,
        after_profile: &str,
        limit: usize,
    ) -> Result<Vec<(String, Millis)>> {
        let rows = self.fetch(
            sqlx::query(
                "SELECT key, due_at FROM timers
                 WHERE workspace_id = $1 AND kind = 'audience' AND key COLLATE \"C\" > $2 ORDER BY key COLLATE \"C\" LIMIT $3",
            )
            .bind(workspace)
            .bind(after_profile)
            .bind(limit as i64),
        )?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0).map_err(backend)?,
                    r.try_get(1).map_err(backend)?,
                ))
            })
            .collect()
    }

    fn timer_of(&self, workspace: &str, profile: &str) -> Result<Option<Millis>> {
        let rows = self.fetch(
            sqlx::query(
                "SELECT due_at FROM timers WHERE workspace_id = $1 AND kind = 'audience' AND key = $2",
            )
            .bind(workspace)
            .bind(profile),
        )?;
        rows.first()
            .map(|r| r.try_get(0).map_err(backend))
            .transpose()
    }

    fn audience_cursor(&self, name: &str) -> Result<i64> {
        let rows =
            self.fetch(sqlx::query("SELECT seq FROM audience_cursors WHERE name = $1").bind(name))?;
        match rows.first() {
            Some(r) => r.try_get(0).map_err(backend),
            None => Ok(0),
        }
    }

    fn record(&self, w: &AudienceWrite) -> Result<()> {
        if w.is_empty() {
            return Ok(());
        }
        self.run(async {
            let mut tx = self.pool().begin().await.map_err(backend)?;
            check_still(&mut tx, w).await?;
            if !w.changes.is_empty() {
                // Held until commit: change ids commit in the order they are given.
                sqlx::query(
                    "UPDATE projection_state SET value = value + 1 WHERE name = 'membership_changes'",
                )
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            }
            let (entries, exits): (Vec<&MembershipChange>, Vec<&MembershipChange>) =
                w.changes.iter().partition(|c| c.entered);
            let cols = |list: &[&MembershipChange]| {
                (
                    list.iter().map(|c| c.workspace_id.clone()).collect::<Vec<_>>(),
                    list.iter().map(|c| c.audience_id.clone()).collect::<Vec<_>>(),
                    list.iter().map(|c| c.profile_id.clone()).collect::<Vec<_>>(),
                    list.iter().map(|c| c.at).collect::<Vec<_>>(),
                )
            };
            if !entries.is_empty() {
                let (ws, aud, prof, at) = cols(&entries);
                let n = sqlx::query(
                    "INSERT INTO memberships (workspace_id, audience_id, profile_id, since)
                     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[])
                     ON CONFLICT DO NOTHING",
                )
                .bind(ws)
                .bind(aud)
                .bind(prof)
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(backend)?
                .rows_affected();
                if n as usize != entries.len() {
                    return Err(StoreError::Conflict(
                        "a profile entering an audience is in it already".into(),
                    ));
                }
            }
            if !exits.is_empty() {
                let (ws, aud, prof, _) = cols(&exits);
                let n = sqlx::query(
                    "DELETE FROM memberships m USING unnest($1::text[], $2::text[], $3::text[]) AS x(w, a, p)
                     WHERE m.workspace_id = x.w AND m.audience_id = x.a AND m.profile_id = x.p",
                )
                .bind(ws)
                .bind(aud)
                .bind(prof)
                .execute(&mut *tx)
                .await
                .map_err(backend)?
                .rows_affected();
                if n as usize != exits.len() {
                    return Err(StoreError::Conflict(
                        "a profile leaving an audience is not in it".into(),
                    ));
                }
            }
            if !w.changes.is_empty() {
                let all: Vec<&MembershipChange> = w.changes.iter().collect();
                let (ws, aud, prof, at) = cols(&all);
                let logged = sqlx::query(
                    "INSERT INTO membership_changes (workspace_id, audience_id, profile_id, entered, at, cause)
                     SELECT w, a, p, e, t, c
                     FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[], $5::bigint[], $6::text[])
                     WITH ORDINALITY AS x(w, a, p, e, t, c, n) ORDER BY n
                     RETURNING id, workspace_id, audience_id, profile_id, entered, at, cause",
                )
                .bind(ws)
                .bind(aud)
                .bind(prof)
                .bind(all.iter().map(|c| c.entered).collect::<Vec<_>>())
                .bind(at)
                .bind(all.iter().map(|c| c.cause.clone()).collect::<Vec<_>>())
                .fetch_all(&mut *tx)
                .await
                .map_err(backend)?;
                // Journeys follow the changes of workspaces that have live ones.
                let mut work = Vec::new();
                let mut runs: std::collections::HashMap<String, bool> =
                    std::collections::HashMap::new();
                for r in &logged {
                    let c = MembershipChange {
                        id: r.try_get(0).map_err(backend)?,
                        workspace_id: r.try_get(1).map_err(backend)?,
                        audience_id: r.try_get(2).map_err(backend)?,
                        profile_id: r.try_get(3).map_err(backend)?,
                        entered: r.try_get(4).map_err(backend)?,
                        at: r.try_get(5).map_err(backend)?,
                        cause: r.try_get(6).map_err(backend)?,
                    };
                    let journeys = match runs.get(&c.workspace_id) {
                        Some(&j) => j,
                        None => {
                            let j = crate::projections::runs_journeys(&mut tx, &c.workspace_id)
                                .await?;
                            runs.insert(c.workspace_id.clone(), j);
                            j
                        }
                    };
                    if journeys {
                        work.push(parcours_store::audience_change_work(&c));
                    }
                }
                crate::projections::queue_work(&mut tx, &work).await?;
            }
            let (set, unset): (Vec<_>, Vec<_>) = w.computed.iter().partition(|v| v.value.is_some());
            if !set.is_empty() {
                sqlx::query(
                    "INSERT INTO computed_values (workspace_id, profile_id, trait_id, value)
                     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[])
                     ON CONFLICT (workspace_id, profile_id, trait_id) DO UPDATE SET value = excluded.value",
                )
                .bind(set.iter().map(|v| v.workspace_id.clone()).collect::<Vec<_>>())
                .bind(set.iter().map(|v| v.profile_id.clone()).collect::<Vec<_>>())
                .bind(set.iter().map(|v| v.trait_id.clone()).collect::<Vec<_>>())
                .bind(set.iter().map(|v| v.value.clone().unwrap_or_default()).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            }
            if !unset.is_empty() {
                sqlx::query(
                    "DELETE FROM computed_values c USING unnest($1::text[], $2::text[], $3::text[]) AS x(w, p, t)
                     WHERE c.workspace_id = x.w AND c.profile_id = x.p AND c.trait_id = x.t",
                )
                .bind(unset.iter().map(|v| v.workspace_id.clone()).collect::<Vec<_>>())
                .bind(unset.iter().map(|v| v.profile_id.clone()).collect::<Vec<_>>())
                .bind(unset.iter().map(|v| v.trait_id.clone()).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            }
            // The last setting of a profile's timer in the step wins.
            let mut timers: BTreeMap<(&str, &str), Option<Millis>> = BTreeMap::new();
            for t in &w.timers {
                timers.insert((&t.workspace_id, &t.profile_id), t.due_at);
            }
            let (due, clear): (Vec<_>, Vec<_>) = timers.into_iter().partition(|(_, d)| d.is_some());
            if !due.is_empty() {
                sqlx::query(
                    "INSERT INTO timers (workspace_id, kind, key, bucket, due_at)
                     SELECT w, 'audience', k, b, d
                     FROM unnest($1::text[], $2::text[], $3::bigint[], $4::smallint[]) AS t(w, k, d, b)
                     ON CONFLICT (workspace_id, kind, key) DO UPDATE SET due_at = excluded.due_at,
                       lease_until = NULL, lock_id = NULL",
                )
                .bind(due.iter().map(|((w, _), _)| w.to_string()).collect::<Vec<_>>())
                .bind(due.iter().map(|((_, p), _)| p.to_string()).collect::<Vec<_>>())
                .bind(due.iter().map(|(_, d)| d.unwrap_or_default()).collect::<Vec<_>>())
                .bind(
                    due.iter()
                        .map(|((w, p), _)| profile_bucket(w, p) as i16)
                        .collect::<Vec<_>>(),
                )
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            }
            if !clear.is_empty() {
                sqlx::query(
                    "DELETE FROM timers t USING unnest($1::text[], $2::text[]) AS x(w, p)
                     WHERE t.workspace_id = x.w AND t.kind = 'audience' AND t.key = x.p",
                )
                .bind(clear.iter().map(|((w, _), _)| w.to_string()).collect::<Vec<_>>())
                .bind(clear.iter().map(|((_, p), _)| p.to_string()).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            }
            for c in &w.cursors {
                sqlx::query(
                    "INSERT INTO audience_cursors (name, seq) VALUES ($1, $2)
                     ON CONFLICT (name) DO UPDATE SET seq = excluded.seq",
                )
                .bind(&c.name)
                .bind(c.seq)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            }
            if !w.settled.is_empty() {
                sqlx::query(
                    "DELETE FROM audience_work a USING unnest($1::text[], $2::text[], $3::bigint[]) AS x(w, p, v)
                     WHERE a.workspace_id = x.w AND a.profile_id = x.p AND a.version = x.v",
                )
                .bind(w.settled.iter().map(|s| s.workspace_id.as_str()).collect::<Vec<_>>())
                .bind(w.settled.iter().map(|s| s.profile_id.as_str()).collect::<Vec<_>>())
                .bind(w.settled.iter().map(|s| s.version).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            }
            for p in &w.progress {
                sqlx::query(
                    "UPDATE definitions SET computed_version = $4, done = $5, total = $6
                     WHERE workspace_id = $1 AND kind = $2 AND id = $3",
                )
                .bind(&p.workspace_id)
                .bind(p.kind.as_str())
                .bind(&p.id)
                .bind(p.computed_version)
                .bind(p.done as i64)
                .bind(p.total as i64)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            }
            // The effects of these changes commit with them, or neither does.
            crate::outbox::insert_rows(&mut tx, &w.outbox).await?;
            let tallies = parcours_store::tallies::of_audience_write(w);
            crate::projections::add_tallies(&mut tx, &tallies).await?;
            tx.commit().await.map_err(backend)
        })
    }

    fn reset_audiences(&self) -> Result<()> {
        self.run(
            sqlx::raw_sql("UPDATE definitions SET computed_version = 0, done = 0, total = 0;")
                .execute(self.pool()),
        )
        .map_err(backend)?;
        Ok(())
    }
}
