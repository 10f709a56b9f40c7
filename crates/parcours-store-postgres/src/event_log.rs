//! The event log: append with deduplication, reads in order.

use std::collections::HashSet;

use parcours_core::channel::Channel;
use parcours_core::spec::EventType;
use parcours_core::time::{day_start, parse_timestamp, Millis, DAY};
use parcours_store::{AppendOutcome, EventLog, IngestBatch, Result, StoredEvent};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use crate::{backend, corrupt, PgStore};

pub(crate) const EVENT_COLS: &str =
    "seq, workspace_id, source_id, message_id, type, event, user_id, anonymous_id, timestamp, received_at, channel, body, bucket";

/// [`EVENT_COLS`] of the table aliased `e`.
pub(crate) fn event_cols_of_e() -> String {
    EVENT_COLS
        .split(", ")
        .map(|c| format!("e.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn to_event(r: &PgRow) -> Result<StoredEvent> {
    let kind: String = r.try_get(4).map_err(backend)?;
    let channel: String = r.try_get(10).map_err(backend)?;
    let bucket: i16 = r.try_get(12).map_err(backend)?;
    Ok(StoredEvent {
        seq: r.try_get(0).map_err(backend)?,
        workspace_id: r.try_get(1).map_err(backend)?,
        source_id: r.try_get(2).map_err(backend)?,
        message_id: r.try_get(3).map_err(backend)?,
        kind: EventType::parse(&kind).ok_or_else(|| corrupt(format!("event type `{kind}`")))?,
        event: r.try_get(5).map_err(backend)?,
        user_id: r.try_get(6).map_err(backend)?,
        anonymous_id: r.try_get(7).map_err(backend)?,
        timestamp: r.try_get(8).map_err(backend)?,
        received_at: r.try_get(9).map_err(backend)?,
        channel: Channel::parse(&channel).ok_or_else(|| corrupt(format!("channel `{channel}`")))?,
        body: r.try_get(11).map_err(backend)?,
        bucket: bucket as u16,
    })
}

pub(crate) fn to_events(rows: &[PgRow]) -> Result<Vec<StoredEvent>> {
    rows.iter().map(to_event).collect()
}

/// The columns of `events` as arrays, one element per event (bound to `unnest`).
#[derive(Default)]
pub(crate) struct EventColumns {
    pub seq: Vec<i64>,
    pub message_id: Vec<String>,
    pub kind: Vec<&'static str>,
    pub event: Vec<Option<String>>,
    pub user_id: Vec<Option<String>>,
    pub anonymous_id: Vec<Option<String>>,
    pub timestamp: Vec<i64>,
    pub received_at: Vec<i64>,
    pub channel: Vec<&'static str>,
    pub body: Vec<String>,
    pub bucket: Vec<i16>,
}

impl EventColumns {
    pub fn push(&mut self, workspace: &str, seq: i64, e: &parcours_core::spec::AcceptedEvent) {
        self.seq.push(seq);
        self.message_id.push(e.message_id.clone());
        self.kind.push(e.kind.as_str());
        self.event.push(e.event.clone());
        self.user_id.push(e.user_id.clone());
        self.anonymous_id.push(e.anonymous_id.clone());
        self.timestamp.push(e.timestamp);
        self.received_at.push(e.received_at);
        self.channel.push(e.channel.as_str());
        self.body.push(e.body.clone());
        let bucket =
            parcours_core::bucket::of(workspace, e.user_id.as_deref(), e.anonymous_id.as_deref());
        self.bucket.push(bucket as i16);
    }

    /// Inserts the rows into `events` in one statement.
    pub async fn insert(
        &self,
        conn: &mut PgConnection,
        workspace: &str,
        source: &str,
    ) -> Result<()> {
        if self.seq.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO events (seq, workspace_id, source_id, message_id, type, event, user_id, anonymous_id,
                                  timestamp, received_at, channel, body, bucket)
             SELECT s, $2, $3, m, t, ev, u, a, ts, r, c, b, bk
             FROM unnest($1::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                         $9::bigint[], $10::bigint[], $11::text[], $12::text[], $13::smallint[])
                  AS x(s, m, t, ev, u, a, ts, r, c, b, bk)",
        )
        .bind(&self.seq)
        .bind(workspace)
        .bind(source)
        .bind(&self.message_id)
        .bind(&self.kind)
        .bind(&self.event)
        .bind(&self.user_id)
        .bind(&self.anonymous_id)
        .bind(&self.timestamp)
        .bind(&self.received_at)
        .bind(&self.channel)
        .bind(&self.body)
        .bind(&self.bucket)
        .execute(conn)
        .await
        .map_err(backend)?;
        Ok(())
    }
}

/// Appends batches inside the caller's transaction. Locking the log's high-water row first
/// serialises appends, so sequence numbers commit in order.
pub(crate) async fn append_in(
    conn: &mut PgConnection,
    batches: &[&IngestBatch],
    dedup_since: Millis,
) -> Result<Vec<AppendOutcome>> {
    let total: i64 = batches.iter().map(|b| b.events.len() as i64).sum();
    let last: i64 = sqlx::query_scalar(
        "UPDATE log_state SET last_seq = last_seq + $1 WHERE id = 1 RETURNING last_seq",
    )
    .bind(total)
    .fetch_one(&mut *conn)
    .await
    .map_err(backend)?;
    let mut next = last - total + 1;
    let mut outcomes = Vec::with_capacity(batches.len());
    for batch in batches {
        let mut out = AppendOutcome::default();
        let mut seen = HashSet::new();
        let (mut mids, mut received, mut seqs, mut kept) = (vec![], vec![], vec![], vec![]);
        for e in &batch.events {
            let seq = next;
            next += 1;
            if !seen.insert(e.message_id.as_str()) {
                out.duplicates += 1;
                continue;
            }
            mids.push(e.message_id.as_str());
            received.push(e.received_at);
            seqs.push(seq);
            kept.push((seq, e));
        }
        let claimed: Vec<i64> = if mids.is_empty() {
            Vec::new()
        } else {
            sqlx::query_scalar(
                "INSERT INTO message_ids (workspace_id, message_id, received_at, seq)
                 SELECT $1, m, r, s FROM unnest($2::text[], $3::bigint[], $4::bigint[]) AS x(m, r, s)
                 ON CONFLICT (workspace_id, message_id) DO UPDATE
                   SET received_at = excluded.received_at, seq = excluded.seq
                   WHERE message_ids.received_at < $5
                 RETURNING seq",
            )
            .bind(&batch.workspace_id)
            .bind(&mids)
            .bind(&received)
            .bind(&seqs)
            .bind(dedup_since)
            .fetch_all(&mut *conn)
            .await
            .map_err(backend)?
        };
        let claimed: HashSet<i64> = claimed.into_iter().collect();
        let mut columns = EventColumns::default();
        for (seq, e) in kept {
            if claimed.contains(&seq) {
                columns.push(&batch.workspace_id, seq, e);
                out.stored += 1;
            } else {
                out.duplicates += 1;
            }
        }
        columns
            .insert(conn, &batch.workspace_id, &batch.source_id)
            .await?;
        // The same invalid body again is one more occurrence of its entry (which needs
        // looking at again if it was resolved); a request's copies of one body are one row.
        let rows = parcours_store::quarantine_rows(&batch.quarantined);
        if !rows.is_empty() {
            let column = |f: &dyn Fn(&parcours_store::QuarantineRow<'_>) -> Option<String>| {
                rows.iter().map(f).collect::<Vec<Option<String>>>()
            };
            let numbers = |f: &dyn Fn(&parcours_store::QuarantineRow<'_>) -> i64| {
                rows.iter().map(f).collect::<Vec<i64>>()
            };
            sqlx::query(
                "INSERT INTO quarantine (workspace_id, source_id, received_at, code, reason, message_id, body,
                                         fingerprint, last_seen, sources, path_type, occurrences)
                 SELECT $1, $2, r, c, re, m, b, f, l, ARRAY[$2], p, n
                 FROM unnest($3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                             $9::bigint[], $10::text[], $11::bigint[]) AS x(r, c, re, m, b, f, l, p, n)
                 ON CONFLICT (workspace_id, fingerprint) DO UPDATE SET
                   occurrences = quarantine.occurrences + excluded.occurrences,
                   last_seen = greatest(coalesce(quarantine.last_seen, quarantine.received_at), excluded.last_seen),
                   sources = CASE WHEN excluded.source_id = ANY(quarantine.sources) THEN quarantine.sources
                                  ELSE array_append(quarantine.sources, excluded.source_id) END,
                   status = 'pending', resolved_at = NULL",
            )
            .bind(&batch.workspace_id)
            .bind(&batch.source_id)
            .bind(numbers(&|r| r.event.received_at))
            .bind(column(&|r| Some(r.event.violation.code().to_string())))
            .bind(column(&|r| Some(r.reason.clone())))
            .bind(column(&|r| r.event.message_id.clone()))
            .bind(column(&|r| Some(r.event.body.clone())))
            .bind(column(&|r| Some(r.fingerprint.clone())))
            .bind(numbers(&|r| r.last_seen))
            .bind(column(&|r| r.event.path_type.map(|t| t.as_str().to_string())))
            .bind(numbers(&|r| r.occurrences))
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
            out.quarantined += rows.iter().map(|r| r.occurrences as usize).sum::<usize>();
        }
        outcomes.push(out);
    }
    Ok(outcomes)
}

impl PgStore {
    fn events(&self, query: PgQuery<'_>) -> Result<Vec<StoredEvent>> {
        let rows = self.run(query.fetch_all(&self.pool)).map_err(backend)?;
        to_events(&rows)
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

impl EventLog for PgStore {
    fn append(&self, batches: &[IngestBatch], dedup_since: Millis) -> Result<Vec<AppendOutcome>> {
        let refs: Vec<&IngestBatch> = batches.iter().collect();
        self.run(async {
            let mut tx = self.pool.begin().await.map_err(backend)?;
            let out = append_in(&mut tx, &refs, dedup_since).await?;
            tx.commit().await.map_err(backend)?;
            Ok(out)
        })
    }

    fn events_after(&self, after_seq: i64, limit: usize) -> Result<Vec<StoredEvent>> {
        self.events(
            sqlx::query(sql!(
                "SELECT {EVENT_COLS} FROM events WHERE seq > $1 ORDER BY seq LIMIT $2"
            ))
            .bind(after_seq)
            .bind(limit as i64),
        )
    }

    fn workspace_events(
        &self,
        workspace: &str,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        self.events(sqlx::query(sql!(
                "SELECT {EVENT_COLS} FROM events WHERE workspace_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
            )).bind(workspace).bind(after_seq).bind(limit as i64))
    }

    fn named_events(
        &self,
        workspace: &str,
        after_seq: i64,
        upto_seq: i64,
        names: &[String],
    ) -> Result<Vec<StoredEvent>> {
        let page = names.iter().any(|n| n == "Page Viewed");
        let screen = names.iter().any(|n| n == "Screen Viewed");
        self.events(
            sqlx::query(sql!(
                "SELECT {EVENT_COLS} FROM events
                 WHERE workspace_id = $1 AND seq > $2 AND seq <= $3
                   AND ((type = 'track' AND event = ANY($4))
                        OR (type = 'page' AND $5) OR (type = 'screen' AND $6))
                 ORDER BY seq"
            ))
            .bind(workspace)
            .bind(after_seq)
            .bind(upto_seq)
            .bind(names)
            .bind(page)
            .bind(screen),
        )
    }

    fn event_by_message_id(
        &self,
        workspace: &str,
        message_id: &str,
    ) -> Result<Option<StoredEvent>> {
        Ok(self
            .events(
                sqlx::query(sql!(
                    "SELECT {} FROM message_ids m JOIN events e ON e.seq = m.seq
                     WHERE m.workspace_id = $1 AND m.message_id = $2",
                    event_cols_of_e()
                ))
                .bind(workspace)
                .bind(message_id),
            )?
            .pop())
    }

    fn event_count(&self, workspace: &str) -> Result<u64> {
        let n: i64 = self
            .run(
                sqlx::query_scalar("SELECT count(*) FROM events WHERE workspace_id = $1")
                    .bind(workspace)
                    .fetch_one(&self.pool),
            )
            .map_err(backend)?;
        Ok(n as u64)
    }

    fn last_seq(&self) -> Result<i64> {
        self.run(
            sqlx::query_scalar("SELECT last_seq FROM log_state WHERE id = 1").fetch_one(&self.pool),
        )
        .map_err(backend)
    }

    fn prune_message_ids(&self, before: Millis) -> Result<usize> {
        let mut total = 0;
        loop {
            let done = self
                .run(
                    sqlx::query(
                        "DELETE FROM message_ids WHERE (workspace_id, message_id) IN (
                             SELECT workspace_id, message_id FROM message_ids WHERE received_at < $1 LIMIT 10000)",
                    )
                    .bind(before)
                    .execute(&self.pool),
                )
                .map_err(backend)?;
            total += done.rows_affected() as usize;
            if done.rows_affected() == 0 {
                return Ok(total);
            }
        }
    }

    fn bucket_events_after(
        &self,
        buckets: &[u16],
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        let buckets: Vec<i16> = buckets.iter().map(|b| *b as i16).collect();
        self.events(sqlx::query(sql!(
                "SELECT {EVENT_COLS} FROM events WHERE bucket = ANY($1) AND seq > $2 ORDER BY seq LIMIT $3"
            )).bind(buckets).bind(after_seq).bind(limit as i64))
    }

    fn maintain(&self, now: Millis) -> Result<()> {
        self.ensure_partitions(now)
    }

    fn drop_events_before(&self, before: Millis) -> Result<u64> {
        let cutoff = day_start(before);
        self.run(async {
            let partitions: Vec<String> = sqlx::query_scalar(
                "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = 'events'::regclass ORDER BY 1",
            )
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
            let mut removed = 0u64;
            for name in partitions {
                let Some(day) = partition_day(&name) else {
                    continue;
                };
                if day + DAY > cutoff {
                    continue;
                }
                let mut tx = self.pool.begin().await.map_err(backend)?;
                let n: i64 = sqlx::query_scalar(sql!("SELECT count(*) FROM {name}"))
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(backend)?;
                sqlx::raw_sql(sql!("DROP TABLE {name}"))
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                tx.commit().await.map_err(backend)?;
                tracing::info!(partition = %name, events = n, "dropped an event partition");
                removed += n as u64;
            }
            // Whatever fell outside the day partitions.
            let done = sqlx::query("DELETE FROM events_default WHERE received_at < $1")
                .bind(cutoff)
                .execute(&self.pool)
                .await
                .map_err(backend)?;
            Ok(removed + done.rows_affected())
        })
    }
}

/// The day an `events_YYYYMMDD` partition holds.
fn partition_day(name: &str) -> Option<Millis> {
    let d = name.strip_prefix("events_")?;
    if d.len() != 8 || !d.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    parse_timestamp(&format!("{}-{}-{}T00:00:00Z", &d[..4], &d[4..6], &d[6..]))
}
