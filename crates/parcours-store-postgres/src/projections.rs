use parcours_core::graph::Separation;
use parcours_core::identifier::Identifier;
use parcours_core::time::Millis;
use parcours_core::{MergeRecord, Profile};
use parcours_store::{
    owners_position, parse_owners_position, profile_bucket, IdentifierRow, MergeRow, MergeStatus,
    ProfileRow, ProjectionTx, Projections, QueuedProfile, Result, StoreError, StoredEvent,
};
use sqlx::postgres::PgRow;
use std::collections::HashMap;

use sqlx::{PgConnection, Postgres, Row, Transaction};

use crate::event_log::{event_cols_of_e, to_events};
use crate::{backend, block_on, corrupt, PgStore};

const EPOCH: &str = "epoch";

async fn read_epoch<'e>(e: impl sqlx::PgExecutor<'e>) -> Result<i64> {
    let v: Option<i64> = sqlx::query_scalar("SELECT value FROM projection_state WHERE name = $1")
        .bind(EPOCH)
        .fetch_optional(e)
        .await
        .map_err(backend)?;
    Ok(v.unwrap_or(0))
}

/// The advisory lock keys of workspaces live in their own space (first argument of the
/// two-key form), apart from the migration lock.
pub(crate) const WORKSPACE_LOCK_SPACE: i32 = 0x5057;

struct Tx<'a> {
    tx: &'a mut Transaction<'static, Postgres>,
    /// What [`ProjectionTx::prefetch`] read, valid until the next write.
    cache: Prefetched,
}

/// Holders and profile rows read ahead for one workspace.
#[derive(Default)]
struct Prefetched {
    workspace: String,
    holders: HashMap<Identifier, Option<String>>,
    rows: HashMap<String, Option<StoredRow>>,
}

/// A profile row as a transaction caches it: (merged_into, doc).
type StoredRow = (Option<String>, Option<String>);

impl Tx<'_> {
    fn conn(&mut self) -> &mut PgConnection {
        self.tx
    }

    /// Every write may change what was read ahead.
    fn written(&mut self) -> &mut PgConnection {
        self.cache.holders.clear();
        self.cache.rows.clear();
        self.tx
    }
}

fn decode(doc: &str) -> Result<Profile> {
    serde_json::from_str(doc).map_err(corrupt)
}

fn strings(rows: &[PgRow]) -> Result<Vec<String>> {
    rows.iter()
        .map(|r| r.try_get::<String, _>(0).map_err(backend))
        .collect()
}

/// The profile and every profile merged into it, through the `merged_into` index.
async fn family(conn: &mut PgConnection, workspace: &str, profile: &str) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "WITH RECURSIVE fam(id) AS (
             SELECT $2::text COLLATE \"C\"
             UNION SELECT p.id FROM profiles p JOIN fam ON p.workspace_id = $1 AND p.merged_into = fam.id)
         SELECT id FROM fam ORDER BY id",
    )
    .bind(workspace)
    .bind(profile)
    .fetch_all(conn)
    .await
    .map_err(backend)?;
    strings(&rows)
}

async fn read_profile(
    conn: &mut PgConnection,
    workspace: &str,
    id: &str,
) -> Result<Option<(Option<String>, Option<String>)>> {
    let row =
        sqlx::query("SELECT merged_into, doc FROM profiles WHERE workspace_id = $1 AND id = $2")
            .bind(workspace)
            .bind(id)
            .fetch_optional(conn)
            .await
            .map_err(backend)?;
    row.map(|r| {
        Ok((
            r.try_get(0).map_err(backend)?,
            r.try_get(1).map_err(backend)?,
        ))
    })
    .transpose()
}

async fn put_profile(
    conn: &mut PgConnection,
    workspace: &str,
    id: &str,
    merged_into: Option<&str>,
    doc: Option<&str>,
    at: Millis,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO profiles (workspace_id, id, merged_into, doc, updated_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (workspace_id, id) DO UPDATE SET
           merged_into = excluded.merged_into, doc = excluded.doc, updated_at = excluded.updated_at",
    )
    .bind(workspace)
    .bind(id)
    .bind(merged_into)
    .bind(doc)
    .bind(at)
    .execute(conn)
    .await
    .map_err(backend)?;
    Ok(())
}

/// Fails with a conflict unless `node` holds every one of `buckets` at `now`. A shared lock
/// on the lease rows: no other node can claim them until the transaction commits, and this
/// node's own heartbeat skips them meanwhile.
pub(crate) async fn fence(
    conn: &mut PgConnection,
    node: &str,
    buckets: &[u16],
    now: Millis,
) -> Result<()> {
    let held: Vec<i16> = sqlx::query_scalar(
        "SELECT bucket FROM bucket_leases
         WHERE bucket = ANY($1) AND node = $2 AND lease_until >= $3 FOR SHARE",
    )
    .bind(small(buckets))
    .bind(node)
    .bind(now)
    .fetch_all(conn)
    .await
    .map_err(backend)?;
    if held.len() != buckets.len() {
        return Err(StoreError::Conflict(format!(
            "node {node} no longer holds every lease it is working on"
        )));
    }
    Ok(())
}

pub(crate) fn small(buckets: &[u16]) -> Vec<i16> {
    buckets.iter().map(|b| *b as i16).collect()
}

/// Queues journey work (a row already queued stays as it is).
/// Whether a workspace has a live journey (its events and audience changes are queued for
/// journeys).
pub(crate) async fn runs_journeys(conn: &mut PgConnection, workspace: &str) -> Result<bool> {
    let row = sqlx::query(
        "SELECT 1 FROM journey_versions v WHERE workspace_id = $1 AND status = 'live'
           AND version = (SELECT max(version) FROM journey_versions l
                          WHERE l.workspace_id = v.workspace_id AND l.journey_id = v.journey_id)
         LIMIT 1",
    )
    .bind(workspace)
    .fetch_optional(conn)
    .await
    .map_err(backend)?;
    Ok(row.is_some())
}

/// Adds daily counts to the tallies, in the caller's transaction: to the part of each count
/// that this connection writes, so that two nodes counting the same day do not wait on one
/// row; rows in key order, so that two transactions never lock them in opposite orders (and
/// the same count given twice adds up).
pub(crate) async fn add_tallies(
    conn: &mut PgConnection,
    tallies: &[parcours_store::Tally],
) -> Result<()> {
    if tallies.is_empty() {
        return Ok(());
    }
    let rows: Vec<&parcours_store::Tally> = tallies.iter().collect();
    let text =
        |f: fn(&parcours_store::Tally) -> String| rows.iter().map(|t| f(t)).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO tallies (workspace_id, day, metric, key, part, n)
         SELECT w, d, m, k, (pg_backend_pid() % 8)::smallint, sum(n)::bigint
         FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[])
              AS t(w, d, m, k, n)
         GROUP BY w, d, m, k ORDER BY w, d, m, k
         ON CONFLICT (workspace_id, day, metric, key, part) DO UPDATE SET n = tallies.n + excluded.n",
    )
    .bind(text(|t| t.workspace_id.clone()))
    .bind(rows.iter().map(|t| t.day).collect::<Vec<_>>())
    .bind(text(|t| t.metric.clone()))
    .bind(text(|t| t.key.clone()))
    .bind(rows.iter().map(|t| t.n).collect::<Vec<_>>())
    .execute(conn)
    .await
    .map_err(backend)?;
    Ok(())
}

pub(crate) async fn queue_work(
    conn: &mut PgConnection,
    rows: &[parcours_store::JourneyWork],
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let text =
        |f: fn(&parcours_store::JourneyWork) -> String| rows.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO journey_work
           (workspace_id, seq, profile_id, bucket, name, message_id, timestamp, body)
         SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::smallint[],
                              $5::text[], $6::text[], $7::bigint[], $8::text[])
         ON CONFLICT DO NOTHING",
    )
    .bind(text(|r| r.workspace_id.clone()))
    .bind(rows.iter().map(|r| r.seq).collect::<Vec<_>>())
    .bind(text(|r| r.profile_id.clone()))
    .bind(rows.iter().map(|r| r.bucket as i16).collect::<Vec<_>>())
    .bind(text(|r| r.name.clone()))
    .bind(text(|r| r.message_id.clone()))
    .bind(rows.iter().map(|r| r.timestamp).collect::<Vec<_>>())
    .bind(text(|r| r.body.clone()))
    .execute(conn)
    .await
    .map_err(backend)?;
    Ok(())
}

impl ProjectionTx for Tx<'_> {
    fn cursor(&mut self) -> Result<i64> {
        block_on(
            sqlx::query_scalar("SELECT coalesce(min(seq), 0)::bigint FROM bucket_cursors")
                .fetch_one(self.conn()),
        )
        .map_err(backend)
    }

    fn set_cursor(&mut self, seq: i64) -> Result<()> {
        block_on(
            sqlx::query("UPDATE bucket_cursors SET seq = $1")
                .bind(seq)
                .execute(self.conn()),
        )
        .map_err(backend)?;
        Ok(())
    }

    fn bucket_cursors(&mut self, buckets: &[u16]) -> Result<Vec<i64>> {
        let rows = block_on(
            sqlx::query("SELECT bucket, seq FROM bucket_cursors WHERE bucket = ANY($1)")
                .bind(small(buckets))
                .fetch_all(self.conn()),
        )
        .map_err(backend)?;
        let mut by_bucket = std::collections::HashMap::new();
        for r in &rows {
            let b: i16 = r.try_get(0).map_err(backend)?;
            let s: i64 = r.try_get(1).map_err(backend)?;
            by_bucket.insert(b as u16, s);
        }
        buckets
            .iter()
            .map(|b| {
                by_bucket
                    .get(b)
                    .copied()
                    .ok_or_else(|| StoreError::NotFound(format!("bucket {b}")))
            })
            .collect()
    }

    fn advance_buckets(&mut self, buckets: &[u16], seq: i64) -> Result<()> {
        block_on(
            sqlx::query("UPDATE bucket_cursors SET seq = $2 WHERE bucket = ANY($1) AND seq < $2")
                .bind(small(buckets))
                .bind(seq)
                .execute(self.conn()),
        )
        .map_err(backend)?;
        Ok(())
    }

    fn fence(&mut self, node: &str, buckets: &[u16], now: Millis) -> Result<()> {
        block_on(fence(self.conn(), node, buckets, now))
    }

    fn lock_workspaces(&mut self, workspaces: &[&str]) -> Result<()> {
        let mut sorted: Vec<&str> = workspaces.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        for ws in sorted {
            block_on(
                sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
                    .bind(WORKSPACE_LOCK_SPACE)
                    .bind(ws)
                    .execute(self.conn()),
            )
            .map_err(backend)?;
        }
        Ok(())
    }

    fn epoch(&mut self) -> Result<i64> {
        block_on(read_epoch(self.conn()))
    }

    fn bump_epoch(&mut self) -> Result<()> {
        block_on(
            sqlx::query(
                "INSERT INTO projection_state (name, value) VALUES ($1, 1)
                 ON CONFLICT (name) DO UPDATE SET value = projection_state.value + 1",
            )
            .bind(EPOCH)
            .execute(self.conn()),
        )
        .map_err(backend)?;
        Ok(())
    }

    fn evaluates_audiences(&mut self, workspace: &str) -> Result<bool> {
        let row = block_on(
            sqlx::query(
                "SELECT 1 FROM definitions
                 WHERE workspace_id = $1 AND kind IN ('audience', 'computed_trait') LIMIT 1",
            )
            .bind(workspace)
            .fetch_optional(self.conn()),
        )
        .map_err(backend)?;
        Ok(row.is_some())
    }

    fn runs_journeys(&mut self, workspace: &str) -> Result<bool> {
        block_on(runs_journeys(self.conn(), workspace))
    }

    fn queue_journey_work(&mut self, rows: &[parcours_store::JourneyWork]) -> Result<()> {
        block_on(queue_work(self.conn(), rows))
    }

    fn add_tallies(&mut self, tallies: &[parcours_store::Tally]) -> Result<()> {
        block_on(add_tallies(self.conn(), tallies))
    }

    fn has_drops(&mut self, workspace: &str) -> Result<bool> {
        let row = block_on(
            sqlx::query("SELECT 1 FROM identifier_drops WHERE workspace_id = $1 LIMIT 1")
                .bind(workspace)
                .fetch_optional(self.conn()),
        )
        .map_err(backend)?;
        Ok(row.is_some())
    }

    fn prefetch(&mut self, workspace: &str, ids: &[Identifier]) -> Result<()> {
        if self.cache.workspace != workspace {
            self.cache = Prefetched {
                workspace: workspace.to_string(),
                ..Prefetched::default()
            };
        }
        let ids: Vec<&Identifier> = ids
            .iter()
            .filter(|i| !self.cache.holders.contains_key(*i))
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let kinds: Vec<&str> = ids.iter().map(|i| i.kind.as_str()).collect();
        let values: Vec<&str> = ids.iter().map(|i| i.value.as_str()).collect();
        let found: Vec<(i64, String)> = block_on(
            sqlx::query_as(
                "SELECT x.n, i.profile_id FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS x(t, v, n)
                 JOIN identifiers i ON i.workspace_id = $1 AND i.id_type = x.t AND i.id_value = x.v",
            )
            .bind(workspace)
            .bind(&kinds)
            .bind(&values)
            .fetch_all(self.conn()),
        )
        .map_err(backend)?;
        for id in &ids {
            self.cache.holders.insert((*id).clone(), None);
        }
        let mut holders: Vec<String> = Vec::new();
        for (n, profile) in found {
            holders.push(profile.clone());
            self.cache
                .holders
                .insert(ids[(n - 1) as usize].clone(), Some(profile));
        }
        holders.sort();
        holders.dedup();
        holders.retain(|p| !self.cache.rows.contains_key(p));
        let rows: Vec<(String, Option<String>, Option<String>)> = block_on(
            sqlx::query_as(
                "SELECT id, merged_into, doc FROM profiles WHERE workspace_id = $1 AND id = ANY($2)",
            )
            .bind(workspace)
            .bind(&holders)
            .fetch_all(self.conn()),
        )
        .map_err(backend)?;
        for p in holders {
            self.cache.rows.insert(p, None);
        }
        for (id, merged_into, doc) in rows {
            self.cache.rows.insert(id, Some((merged_into, doc)));
        }
        Ok(())
    }

    fn holder(&mut self, workspace: &str, id: &Identifier) -> Result<Option<String>> {
        if self.cache.workspace == workspace {
            if let Some(known) = self.cache.holders.get(id) {
                return Ok(known.clone());
            }
        }
        block_on(
            sqlx::query_scalar(
                "SELECT profile_id FROM identifiers WHERE workspace_id = $1 AND id_type = $2 AND id_value = $3",
            )
            .bind(workspace)
            .bind(&id.kind)
            .bind(&id.value)
            .fetch_optional(self.conn()),
        )
        .map_err(backend)
    }

    fn droppers(&mut self, workspace: &str, id: &Identifier) -> Result<Vec<String>> {
        block_on(
            sqlx::query_scalar(
                "SELECT profile_id FROM identifier_drops WHERE workspace_id = $1 AND id_type = $2 AND id_value = $3",
            )
            .bind(workspace)
            .bind(&id.kind)
            .bind(&id.value)
            .fetch_all(self.conn()),
        )
        .map_err(backend)
    }

    fn drops_of(&mut self, workspace: &str, profile: &str) -> Result<Vec<Identifier>> {
        let rows = block_on(
            sqlx::query(
                "SELECT id_type, id_value FROM identifier_drops WHERE workspace_id = $1 AND profile_id = $2",
            )
            .bind(workspace)
            .bind(profile)
            .fetch_all(self.conn()),
        )
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(Identifier::new(
                    r.try_get::<String, _>(0).map_err(backend)?,
                    r.try_get::<String, _>(1).map_err(backend)?,
                ))
            })
            .collect()
    }

    fn profile(&mut self, workspace: &str, id: &str) -> Result<Option<Profile>> {
        let cached = (self.cache.workspace == workspace)
            .then(|| self.cache.rows.get(id).cloned())
            .flatten();
        let row = match cached {
            Some(row) => row,
            None => block_on(read_profile(self.conn(), workspace, id))?,
        };
        match row {
            Some((None, Some(doc))) => Ok(Some(decode(&doc)?)),
            _ => Ok(None),
        }
    }

    fn separations(&mut self, workspace: &str) -> Result<Vec<Separation>> {
        let rows = block_on(
            sqlx::query(
                "SELECT a_type, a_value, b_type, b_value FROM separations WHERE workspace_id = $1 ORDER BY id",
            )
            .bind(workspace)
            .fetch_all(self.conn()),
        )
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                let s = |i: usize| r.try_get::<String, _>(i).map_err(backend);
                Ok((Identifier::new(s(0)?, s(1)?), Identifier::new(s(2)?, s(3)?)))
            })
            .collect()
    }

    fn save_profile(&mut self, workspace: &str, profile: &Profile, at: Millis) -> Result<()> {
        self.save_profiles(workspace, &[profile], at)
    }

    fn redirect_profile(
        &mut self,
        workspace: &str,
        from: &str,
        to: &str,
        at: Millis,
    ) -> Result<()> {
        block_on(put_profile(
            self.written(),
            workspace,
            from,
            Some(to),
            None,
            at,
        ))?;
        block_on(crate::journeys::rehome_runs(
            self.conn(),
            workspace,
            from,
            to,
            at,
        ))
    }

    fn link(
        &mut self,
        workspace: &str,
        id: &Identifier,
        profile: &str,
        linked_by: &str,
        at: Millis,
    ) -> Result<()> {
        self.link_many(workspace, &[(id, profile, linked_by)], at)
    }

    fn link_many(
        &mut self,
        workspace: &str,
        links: &[(&Identifier, &str, &str)],
        at: Millis,
    ) -> Result<()> {
        // One row per identifier (the last link wins), as one statement may not update a row
        // twice.
        let mut last: HashMap<&Identifier, usize> = HashMap::new();
        for (i, (id, _, _)) in links.iter().enumerate() {
            last.insert(id, i);
        }
        let mut keep: Vec<usize> = last.into_values().collect();
        if keep.is_empty() {
            return Ok(());
        }
        keep.sort_unstable();
        let kinds: Vec<&str> = keep.iter().map(|i| links[*i].0.kind.as_str()).collect();
        let values: Vec<&str> = keep.iter().map(|i| links[*i].0.value.as_str()).collect();
        let profiles: Vec<&str> = keep.iter().map(|i| links[*i].1).collect();
        let by: Vec<&str> = keep.iter().map(|i| links[*i].2).collect();
        block_on(
            sqlx::query(
                "INSERT INTO identifiers (workspace_id, id_type, id_value, profile_id, linked_by, linked_at)
                 SELECT $1, t, v, p, b, $6 FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS x(t, v, p, b)
                 ON CONFLICT (workspace_id, id_type, id_value) DO UPDATE SET
                   profile_id = excluded.profile_id, linked_by = excluded.linked_by, linked_at = excluded.linked_at",
            )
            .bind(workspace)
            .bind(&kinds)
            .bind(&values)
            .bind(&profiles)
            .bind(&by)
            .bind(at)
            .execute(self.written()),
        )
        .map_err(backend)?;
        Ok(())
    }

    fn relink(&mut self, workspace: &str, ids: &[Identifier], profile: &str) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let kinds: Vec<&str> = ids.iter().map(|i| i.kind.as_str()).collect();
        let values: Vec<&str> = ids.iter().map(|i| i.value.as_str()).collect();
        block_on(
            sqlx::query(
                "UPDATE identifiers i SET profile_id = $4
                 FROM unnest($2::text[], $3::text[]) AS x(t, v)
                 WHERE i.workspace_id = $1 AND i.id_type = x.t AND i.id_value = x.v",
            )
            .bind(workspace)
            .bind(kinds)
            .bind(values)
            .bind(profile)
            .execute(self.written()),
        )
        .map_err(backend)?;
        Ok(())
    }

    fn set_drops(&mut self, workspace: &str, profile: &str, drops: &[Identifier]) -> Result<()> {
        let kinds: Vec<&str> = drops.iter().map(|i| i.kind.as_str()).collect();
        let values: Vec<&str> = drops.iter().map(|i| i.value.as_str()).collect();
        block_on(async {
            let conn = self.written();
            sqlx::query("DELETE FROM identifier_drops WHERE workspace_id = $1 AND profile_id = $2")
                .bind(workspace)
                .bind(profile)
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
            if !kinds.is_empty() {
                sqlx::query(
                    "INSERT INTO identifier_drops (workspace_id, id_type, id_value, profile_id)
                     SELECT $1, t, v, $4 FROM unnest($2::text[], $3::text[]) AS x(t, v)
                     ON CONFLICT DO NOTHING",
                )
                .bind(workspace)
                .bind(&kinds)
                .bind(&values)
                .bind(profile)
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
            }
            Ok(())
        })
    }

    fn assign(&mut self, workspace: &str, seq: i64, profile: &str) -> Result<()> {
        self.assign_many(workspace, &[(seq, profile)])
    }

    fn assign_many(&mut self, workspace: &str, assignments: &[(i64, &str)]) -> Result<()> {
        if assignments.is_empty() {
            return Ok(());
        }
        let seqs: Vec<i64> = assignments.iter().map(|a| a.0).collect();
        let profiles: Vec<&str> = assignments.iter().map(|a| a.1).collect();
        // In the given order, so that `applied` numbers them in application order.
        block_on(
            sqlx::query(
                "INSERT INTO profile_events (workspace_id, profile_id, seq)
                 SELECT $1, p, s FROM unnest($2::text[], $3::bigint[]) WITH ORDINALITY AS x(p, s, n)
                 ORDER BY n
                 ON CONFLICT (workspace_id, profile_id, seq) DO NOTHING",
            )
            .bind(workspace)
            .bind(&profiles)
            .bind(&seqs)
            .execute(self.conn()),
        )
        .map_err(backend)?;
        Ok(())
    }

    fn save_profiles(&mut self, workspace: &str, profiles: &[&Profile], at: Millis) -> Result<()> {
        if profiles.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = profiles.iter().map(|p| p.id.as_str()).collect();
        let docs = profiles
            .iter()
            .map(|p| serde_json::to_string(p).map_err(corrupt))
            .collect::<Result<Vec<String>>>()?;
        block_on(
            sqlx::query(
                "INSERT INTO profiles (workspace_id, id, merged_into, doc, updated_at)
                 SELECT $1, i, NULL, d, $4 FROM unnest($2::text[], $3::text[]) AS x(i, d)
                 ON CONFLICT (workspace_id, id) DO UPDATE SET
                   merged_into = NULL, doc = excluded.doc, updated_at = excluded.updated_at",
            )
            .bind(workspace)
            .bind(&ids)
            .bind(&docs)
            .bind(at)
            .execute(self.written()),
        )
        .map_err(backend)?;
        Ok(())
    }

    fn record_merge(&mut self, workspace: &str, m: &MergeRecord, at: Millis) -> Result<()> {
        let doc = serde_json::to_string(m).map_err(corrupt)?;
        block_on(
            sqlx::query(
                "INSERT INTO merges (workspace_id, winner, loser, cause_message_id, doc, status, created_at)
                 VALUES ($1, $2, $3, $4, $5, 'active', $6)
                 ON CONFLICT (workspace_id, loser, cause_message_id) DO UPDATE SET
                   winner = excluded.winner, doc = excluded.doc, status = 'active'",
            )
            .bind(workspace)
            .bind(&m.winner)
            .bind(&m.loser)
            .bind(&m.cause.mid)
            .bind(doc)
            .bind(at)
            .execute(self.conn()),
        )
        .map_err(backend)?;
        Ok(())
    }

    fn family(&mut self, workspace: &str, profile: &str) -> Result<Vec<String>> {
        block_on(family(self.conn(), workspace, profile))
    }

    fn events_of(&mut self, workspace: &str, profiles: &[String]) -> Result<Vec<StoredEvent>> {
        let mut out = Vec::new();
        for p in profiles {
            let rows = block_on(
                sqlx::query(sql!(
                    "SELECT {} FROM profile_events pe JOIN events e ON e.seq = pe.seq
                     WHERE pe.workspace_id = $1 AND pe.profile_id = $2 ORDER BY e.seq",
                    event_cols_of_e()
                ))
                .bind(workspace)
                .bind(p)
                .fetch_all(self.conn()),
            )
            .map_err(backend)?;
            out.extend(to_events(&rows)?);
        }
        Ok(out)
    }

    fn clear_profiles(&mut self, workspace: &str, profiles: &[String]) -> Result<()> {
        for p in profiles {
            if let Some(profile) = self.profile(workspace, p)? {
                let kinds: Vec<&str> = profile
                    .identifiers
                    .iter()
                    .map(|i| i.kind.as_str())
                    .collect();
                let values: Vec<&str> = profile
                    .identifiers
                    .iter()
                    .map(|i| i.value.as_str())
                    .collect();
                block_on(
                    sqlx::query(
                        "DELETE FROM identifiers i USING unnest($2::text[], $3::text[]) AS x(t, v)
                         WHERE i.workspace_id = $1 AND i.id_type = x.t AND i.id_value = x.v AND i.profile_id = $4",
                    )
                    .bind(workspace)
                    .bind(&kinds)
                    .bind(&values)
                    .bind(p)
                    .execute(self.written()),
                )
                .map_err(backend)?;
            }
            for sql in [
                "DELETE FROM identifier_drops WHERE workspace_id = $1 AND profile_id = $2",
                "DELETE FROM profile_events WHERE workspace_id = $1 AND profile_id = $2",
                "UPDATE merges SET status = 'superseded', undone_at = NULL
                 WHERE workspace_id = $1 AND winner = $2 AND status = 'active'",
            ] {
                block_on(
                    sqlx::query(sql)
                        .bind(workspace)
                        .bind(p)
                        .execute(self.written()),
                )
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
        block_on(
            sqlx::query(
                "INSERT INTO separations (workspace_id, a_type, a_value, b_type, b_value, merge_id, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(workspace)
            .bind(&a.kind)
            .bind(&a.value)
            .bind(&b.kind)
            .bind(&b.value)
            .bind(merge_id)
            .bind(at)
            .execute(self.conn()),
        )
        .map_err(backend)?;
        Ok(())
    }

    fn mark_merge_undone(&mut self, workspace: &str, merge_id: i64, at: Millis) -> Result<bool> {
        let done = block_on(
            sqlx::query(
                "UPDATE merges SET status = 'undone', undone_at = $3 WHERE workspace_id = $1 AND id = $2 AND status = 'active'",
            )
            .bind(workspace)
            .bind(merge_id)
            .bind(at)
            .execute(self.conn()),
        )
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    fn queue_audience_work(
        &mut self,
        workspace: &str,
        rows: &[QueuedProfile],
        at: Millis,
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let rows = QueuedProfile::fold(rows.to_vec());
        let names: Vec<String> = rows
            .iter()
            .map(|r| serde_json::to_string(&r.names))
            .collect::<std::result::Result<_, _>>()
            .map_err(corrupt)?;
        block_on(
            sqlx::query(
                "INSERT INTO audience_work AS w
                   (workspace_id, profile_id, bucket, names, everything, retired, first_seq, cause, at, version)
                 SELECT $1, p, b, ARRAY(SELECT jsonb_array_elements_text(n::jsonb)), e, r, q, c, $9,
                   nextval('audience_work_versions')
                 FROM unnest($2::text[], $3::smallint[], $4::text[], $5::bool[], $6::bool[], $7::bigint[], $8::text[])
                   AS x(p, b, n, e, r, q, c)
                 ON CONFLICT (workspace_id, profile_id) DO UPDATE SET
                   names = ARRAY(SELECT DISTINCT y FROM unnest(w.names || excluded.names) AS y ORDER BY y),
                   everything = w.everything OR excluded.everything,
                   retired = w.retired OR excluded.retired,
                   first_seq = CASE WHEN w.first_seq = 0 THEN excluded.first_seq
                                    WHEN excluded.first_seq = 0 THEN w.first_seq
                                    ELSE least(w.first_seq, excluded.first_seq) END,
                   cause = excluded.cause, at = excluded.at, version = excluded.version",
            )
            .bind(workspace)
            .bind(rows.iter().map(|r| r.profile_id.as_str()).collect::<Vec<_>>())
            .bind(
                rows.iter()
                    .map(|r| profile_bucket(workspace, &r.profile_id) as i16)
                    .collect::<Vec<_>>(),
            )
            .bind(names)
            .bind(rows.iter().map(|r| r.everything).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.retired).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.seq).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.cause.as_str()).collect::<Vec<_>>())
            .bind(at)
            .execute(self.written()),
        )
        .map_err(backend)?;
        Ok(())
    }

    fn reset_all(&mut self) -> Result<()> {
        block_on(
            sqlx::raw_sql(
                "UPDATE bucket_cursors SET seq = 0; TRUNCATE profiles, identifiers, identifier_drops, profile_events, audience_work;
                 DELETE FROM merges WHERE status <> 'undone';",
            )
            .execute(self.written()),
        )
        .map_err(backend)?;
        let metrics: Vec<&str> = parcours_store::tallies::UNIFY_METRICS.to_vec();
        block_on(
            sqlx::query("DELETE FROM tallies WHERE metric = ANY($1)")
                .bind(metrics)
                .execute(self.conn()),
        )
        .map_err(backend)?;
        self.bump_epoch()
    }
}

const MERGE_COLS: &str = "id, workspace_id, doc, status, created_at, undone_at";

fn to_merge(r: &PgRow) -> Result<MergeRow> {
    let doc: String = r.try_get(2).map_err(backend)?;
    let status: String = r.try_get(3).map_err(backend)?;
    Ok(MergeRow {
        id: r.try_get(0).map_err(backend)?,
        workspace_id: r.try_get(1).map_err(backend)?,
        merge: serde_json::from_str(&doc).map_err(corrupt)?,
        status: match status.as_str() {
            "active" => MergeStatus::Active,
            "undone" => MergeStatus::Undone,
            _ => MergeStatus::Superseded,
        },
        created_at: r.try_get(4).map_err(backend)?,
        undone_at: r.try_get(5).map_err(backend)?,
    })
}

impl Projections for PgStore {
    fn transact(&self, f: &mut dyn FnMut(&mut dyn ProjectionTx) -> Result<()>) -> Result<()> {
        self.run(async {
            let mut tx = self.pool.begin().await.map_err(backend)?;
            // The closure polls its own queries on this thread (nested `block_on`).
            let outcome = f(&mut Tx {
                tx: &mut tx,
                cache: Prefetched::default(),
            });
            match outcome {
                Ok(()) => tx.commit().await.map_err(backend),
                Err(e) => {
                    let _ = tx.rollback().await;
                    Err(e)
                }
            }
        })
    }

    fn projections_epoch(&self) -> Result<i64> {
        self.run(read_epoch(&self.pool))
    }

    fn processed_seq(&self) -> Result<i64> {
        self.run(
            sqlx::query_scalar("SELECT coalesce(min(seq), 0)::bigint FROM bucket_cursors")
                .fetch_one(&self.pool),
        )
        .map_err(backend)
    }

    fn profile(&self, workspace: &str, id: &str) -> Result<Option<Profile>> {
        self.run(async {
            let mut conn = self.pool.acquire().await.map_err(backend)?;
            let mut current = id.to_string();
            for _ in 0..10_000 {
                match read_profile(&mut conn, workspace, &current).await? {
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
        self.run(
            sqlx::query_scalar(
                "SELECT profile_id FROM identifiers WHERE workspace_id = $1 AND id_type = $2 AND id_value = $3",
            )
            .bind(workspace)
            .bind(&id.kind)
            .bind(&id.value)
            .fetch_optional(&self.pool),
        )
        .map_err(backend)
    }

    fn identifiers(&self, workspace: &str, profile: &str) -> Result<Vec<IdentifierRow>> {
        let Some(doc) = self
            .profile(workspace, profile)?
            .filter(|p| p.id == profile)
        else {
            return Ok(Vec::new());
        };
        let ids: Vec<&Identifier> = doc.identifiers.iter().collect();
        let kinds: Vec<&str> = ids.iter().map(|i| i.kind.as_str()).collect();
        let values: Vec<&str> = ids.iter().map(|i| i.value.as_str()).collect();
        let rows = self
            .run(
                sqlx::query(
                    "SELECT x.n, i.linked_by, i.linked_at FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS x(t, v, n)
                     JOIN identifiers i ON i.workspace_id = $1 AND i.id_type = x.t AND i.id_value = x.v
                     WHERE i.profile_id = $4 ORDER BY x.n",
                )
                .bind(workspace)
                .bind(&kinds)
                .bind(&values)
                .bind(profile)
                .fetch_all(&self.pool),
            )
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                let n: i64 = r.try_get(0).map_err(backend)?;
                Ok(IdentifierRow {
                    identifier: ids[(n - 1) as usize].clone(),
                    profile_id: profile.to_string(),
                    linked_by: r.try_get(1).map_err(backend)?,
                    linked_at: r.try_get(2).map_err(backend)?,
                })
            })
            .collect()
    }

    fn merges_of(&self, workspace: &str, profile: &str) -> Result<Vec<MergeRow>> {
        self.run(async {
            let mut conn = self.pool.acquire().await.map_err(backend)?;
            let fam = family(&mut conn, workspace, profile).await?;
            let rows = sqlx::query(sql!(
                "SELECT {MERGE_COLS} FROM merges WHERE workspace_id = $1
                 AND (winner = ANY($2) OR loser = ANY($2)) ORDER BY id"
            ))
            .bind(workspace)
            .bind(&fam)
            .fetch_all(&mut *conn)
            .await
            .map_err(backend)?;
            rows.iter().map(to_merge).collect()
        })
    }

    fn merge(&self, workspace: &str, merge_id: i64) -> Result<Option<MergeRow>> {
        let row = self
            .run(
                sqlx::query(sql!(
                    "SELECT {MERGE_COLS} FROM merges WHERE workspace_id = $1 AND id = $2"
                ))
                .bind(workspace)
                .bind(merge_id)
                .fetch_optional(&self.pool),
            )
            .map_err(backend)?;
        row.as_ref().map(to_merge).transpose()
    }

    fn timeline(
        &self,
        workspace: &str,
        profile: &str,
        before_seq: Option<i64>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        self.run(async {
            let mut conn = self.pool.acquire().await.map_err(backend)?;
            let fam = family(&mut conn, workspace, profile).await?;
            let rows = sqlx::query(sql!(
                "SELECT {} FROM profile_events pe JOIN events e ON e.seq = pe.seq
                 WHERE pe.workspace_id = $1 AND pe.profile_id = ANY($2) AND pe.seq < $3
                 ORDER BY pe.seq DESC LIMIT $4",
                event_cols_of_e()
            ))
            .bind(workspace)
            .bind(&fam)
            .bind(before_seq.unwrap_or(i64::MAX))
            .bind(limit as i64)
            .fetch_all(&mut *conn)
            .await
            .map_err(backend)?;
            to_events(&rows)
        })
    }

    fn profiles_page(&self, workspace: &str, after_id: &str, limit: usize) -> Result<Vec<Profile>> {
        let rows = self
            .run(
                sqlx::query(
                    "SELECT doc FROM profiles WHERE workspace_id = $1 AND id > $2 AND merged_into IS NULL AND doc IS NOT NULL
                     ORDER BY id LIMIT $3",
                )
                .bind(workspace)
                .bind(after_id)
                .bind(limit as i64)
                .fetch_all(&self.pool),
            )
            .map_err(backend)?;
        strings(&rows)?.iter().map(|d| decode(d)).collect()
    }

    fn profiles_in_storage_order(
        &self,
        workspace: &str,
        position: &str,
        (skip, limit): (usize, usize),
        merged: bool,
    ) -> Result<(Vec<ProfileRow>, String)> {
        // Id order: the primary key reads in that order.
        let filter = if merged {
            "merged_into IS NOT NULL"
        } else {
            "merged_into IS NULL AND doc IS NOT NULL"
        };
        let rows = self
            .run(
                sqlx::query(sql!(
                    "SELECT id, merged_into, doc FROM profiles
                     WHERE workspace_id = $1 AND id > $2 AND {filter} ORDER BY id LIMIT $3 OFFSET $4"
                ))
                .bind(workspace)
                .bind(position)
                .bind(limit as i64)
                .bind(skip as i64)
                .fetch_all(&self.pool),
            )
            .map_err(backend)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let doc: Option<String> = r.try_get(2).map_err(backend)?;
            out.push(ProfileRow {
                id: r.try_get(0).map_err(backend)?,
                merged_into: r.try_get(1).map_err(backend)?,
                profile: match (merged, doc) {
                    (false, Some(d)) => Some(decode(&d)?),
                    _ => None,
                },
            });
        }
        let next = out
            .last()
            .map_or_else(|| position.to_string(), |r| r.id.clone());
        Ok((out, next))
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
        let rows = self
            .run(
                sqlx::query(
                    "SELECT profile_id, seq FROM profile_events
                     WHERE workspace_id = $1 AND (profile_id, seq) > ($2, $3)
                       AND ($5::text IS NULL OR profile_id < $5)
                     ORDER BY profile_id, seq LIMIT $4",
                )
                .bind(workspace)
                .bind(&after_profile)
                .bind(after_seq)
                .bind(limit as i64)
                .bind(until)
                .fetch_all(&self.pool),
            )
            .map_err(backend)?;
        let mut last = None;
        for (i, r) in rows.iter().enumerate() {
            let profile: &str = r.try_get(0).map_err(backend)?;
            let seq: i64 = r.try_get(1).map_err(backend)?;
            visit(profile, seq);
            if i + 1 == limit {
                last = Some(owners_position(profile, seq));
            }
        }
        Ok((rows.len(), last.unwrap_or_else(|| position.to_string())))
    }

    fn profile_count(&self, workspace: &str) -> Result<u64> {
        let n: i64 = self
            .run(
                sqlx::query_scalar(
                    "SELECT count(*) FROM profiles WHERE workspace_id = $1 AND merged_into IS NULL",
                )
                .bind(workspace)
                .fetch_one(&self.pool),
            )
            .map_err(backend)?;
        Ok(n as u64)
    }

    fn tallies(&self, workspace: &str, from: i64, to: i64) -> Result<Vec<parcours_store::Tally>> {
        let rows = self
            .run(
                sqlx::query(
                    "SELECT metric, key, day, sum(n)::bigint FROM tallies
                     WHERE workspace_id = $1 AND day BETWEEN $2 AND $3
                     GROUP BY metric, day, key ORDER BY metric, day, key",
                )
                .bind(workspace)
                .bind(from)
                .bind(to)
                .fetch_all(&self.pool),
            )
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(parcours_store::Tally {
                    workspace_id: workspace.to_string(),
                    metric: r.try_get(0).map_err(backend)?,
                    key: r.try_get(1).map_err(backend)?,
                    day: r.try_get(2).map_err(backend)?,
                    n: r.try_get(3).map_err(backend)?,
                })
            })
            .collect()
    }
}
