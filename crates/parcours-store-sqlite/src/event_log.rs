//! The event log: append with deduplication, reads in order.

use parcours_core::channel::Channel;
use parcours_core::spec::EventType;
use parcours_core::time::Millis;
use parcours_store::{AppendOutcome, EventLog, IngestBatch, Result, StoredEvent};
use rusqlite::{params, Connection, Row, Transaction};

use crate::{backend, corrupt, SqliteStore};

pub(crate) const EVENT_COLS: &str =
    "seq, workspace_id, source_id, message_id, type, event, user_id, anonymous_id, timestamp, received_at, channel, body, bucket";

pub(crate) const INSERT_EVENT: &str =
    "INSERT INTO events (seq, workspace_id, source_id, message_id, type, event, user_id, anonymous_id,
                         timestamp, received_at, channel, body, bucket)
     VALUES (max((SELECT coalesce(max(seq), 0) FROM events), (SELECT seq FROM event_seq_floor)) + 1,
             ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";

/// Binds one accepted event to [`INSERT_EVENT`].
pub(crate) fn insert_event(
    st: &mut rusqlite::CachedStatement<'_>,
    workspace: &str,
    source: &str,
    e: &parcours_core::spec::AcceptedEvent,
) -> Result<()> {
    st.execute(params![
        workspace,
        source,
        e.message_id,
        e.kind.as_str(),
        e.event,
        e.user_id,
        e.anonymous_id,
        e.timestamp,
        e.received_at,
        e.channel.as_str(),
        e.body,
        parcours_core::bucket::of(workspace, e.user_id.as_deref(), e.anonymous_id.as_deref()),
    ])
    .map_err(backend)?;
    Ok(())
}

pub(crate) fn event_row(r: &Row<'_>) -> rusqlite::Result<(StoredEvent, String, String)> {
    let kind: String = r.get(4)?;
    let channel: String = r.get(10)?;
    Ok((
        StoredEvent {
            seq: r.get(0)?,
            workspace_id: r.get(1)?,
            source_id: r.get(2)?,
            message_id: r.get(3)?,
            kind: EventType::Track,
            event: r.get(5)?,
            user_id: r.get(6)?,
            anonymous_id: r.get(7)?,
            timestamp: r.get(8)?,
            received_at: r.get(9)?,
            channel: Channel::Server,
            body: r.get(11)?,
            bucket: r.get(12)?,
        },
        kind,
        channel,
    ))
}

pub(crate) fn finish_event(
    (mut e, kind, channel): (StoredEvent, String, String),
) -> Result<StoredEvent> {
    e.kind = EventType::parse(&kind).ok_or_else(|| corrupt(format!("event type `{kind}`")))?;
    e.channel = Channel::parse(&channel).ok_or_else(|| corrupt(format!("channel `{channel}`")))?;
    Ok(e)
}

pub(crate) fn query_events(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<StoredEvent>> {
    let mut st = c.prepare_cached(sql).map_err(backend)?;
    let rows = st.query_map(params, event_row).map_err(backend)?;
    rows.map(|r| finish_event(r.map_err(backend)?)).collect()
}

pub(crate) fn append_in(
    tx: &Transaction<'_>,
    batch: &IngestBatch,
    dedup_since: Millis,
) -> Result<AppendOutcome> {
    let mut out = AppendOutcome::default();
    let mut insert = tx.prepare_cached(INSERT_EVENT).map_err(backend)?;
    // The event goes in first so that its seq can be claimed with its messageId; a duplicate
    // (the claim changes nothing) takes its row back out, inside the same transaction.
    let mut claim = tx
        .prepare_cached(
            "INSERT INTO message_ids (workspace_id, message_id, received_at, seq) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (workspace_id, message_id) DO UPDATE SET received_at = excluded.received_at, seq = excluded.seq
             WHERE message_ids.received_at < ?5",
        )
        .map_err(backend)?;
    let mut take_back = tx
        .prepare_cached("DELETE FROM events WHERE seq = ?1")
        .map_err(backend)?;
    for e in &batch.events {
        insert_event(&mut insert, &batch.workspace_id, &batch.source_id, e)?;
        let seq = tx.last_insert_rowid();
        let claimed = claim
            .execute(params![
                batch.workspace_id,
                e.message_id,
                e.received_at,
                seq,
                dedup_since
            ])
            .map_err(backend)?;
        if claimed == 0 {
            take_back.execute([seq]).map_err(backend)?;
            out.duplicates += 1;
        } else {
            out.stored += 1;
        }
    }
    // The same invalid body again is one more occurrence of its entry (which needs looking at
    // again if it was resolved).
    let mut quarantine = tx
        .prepare_cached(
            "INSERT INTO quarantine (workspace_id, source_id, received_at, code, reason, message_id, body,
                                     fingerprint, last_seen, sources, path_type, occurrences)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?10, json_array(?2), ?9, ?11)
             ON CONFLICT (workspace_id, fingerprint) DO UPDATE SET
               occurrences = occurrences + excluded.occurrences,
               last_seen = max(coalesce(last_seen, received_at), excluded.last_seen),
               sources = CASE WHEN EXISTS (SELECT 1 FROM json_each(quarantine.sources) WHERE value = excluded.source_id)
                              THEN sources ELSE json_insert(sources, '$[#]', excluded.source_id) END,
               status = 'pending', resolved_at = NULL",
        )
        .map_err(backend)?;
    for row in parcours_store::quarantine_rows(&batch.quarantined) {
        let q = row.event;
        quarantine
            .execute(params![
                batch.workspace_id,
                batch.source_id,
                q.received_at,
                q.violation.code(),
                row.reason,
                q.message_id,
                q.body,
                row.fingerprint,
                q.path_type.map(EventType::as_str),
                row.last_seen,
                row.occurrences,
            ])
            .map_err(backend)?;
        out.quarantined += row.occurrences as usize;
    }
    Ok(out)
}

impl EventLog for SqliteStore {
    fn append(&self, batches: &[IngestBatch], dedup_since: Millis) -> Result<Vec<AppendOutcome>> {
        let mut conn = self.writer();
        let tx = conn.transaction().map_err(backend)?;
        let outcomes = batches
            .iter()
            .map(|b| append_in(&tx, b, dedup_since))
            .collect::<Result<Vec<_>>>()?;
        tx.commit().map_err(backend)?;
        Ok(outcomes)
    }

    fn events_after(&self, after_seq: i64, limit: usize) -> Result<Vec<StoredEvent>> {
        self.read(|c| {
            query_events(
                c,
                &format!("SELECT {EVENT_COLS} FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2"),
                params![after_seq, limit as i64],
            )
        })
    }

    fn workspace_events(
        &self,
        workspace: &str,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        self.read(|c| {
            query_events(
                c,
                &format!(
                    "SELECT {EVENT_COLS} FROM events WHERE workspace_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
                ),
                params![workspace, after_seq, limit as i64],
            )
        })
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
        let names = serde_json::to_string(names).map_err(corrupt)?;
        self.read(|c| {
            query_events(
                c,
                &format!(
                    "SELECT {EVENT_COLS} FROM events
                     WHERE seq > ?2 AND seq <= ?3 AND workspace_id = ?1
                       AND ((type = 'track' AND event IN (SELECT value FROM json_each(?4)))
                            OR (type = 'page' AND ?5) OR (type = 'screen' AND ?6))
                     ORDER BY seq"
                ),
                params![workspace, after_seq, upto_seq, names, page, screen],
            )
        })
    }

    fn event_by_message_id(
        &self,
        workspace: &str,
        message_id: &str,
    ) -> Result<Option<StoredEvent>> {
        self.read(|c| {
            let cols = EVENT_COLS
                .split(", ")
                .map(|c| format!("e.{c}"))
                .collect::<Vec<_>>()
                .join(", ");
            Ok(query_events(
                c,
                &format!(
                    "SELECT {cols} FROM message_ids m JOIN events e ON e.seq = m.seq
                     WHERE m.workspace_id = ?1 AND m.message_id = ?2"
                ),
                params![workspace, message_id],
            )?
            .into_iter()
            .next())
        })
    }

    fn event_count(&self, workspace: &str) -> Result<u64> {
        self.read(|c| {
            c.query_row(
                "SELECT count(*) FROM events WHERE workspace_id = ?1",
                [workspace],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(backend)
        })
    }

    fn last_seq(&self) -> Result<i64> {
        self.read(|c| {
            c.query_row("SELECT coalesce(max(seq), 0) FROM events", [], |r| r.get(0))
                .map_err(backend)
        })
    }

    fn prune_message_ids(&self, before: Millis) -> Result<usize> {
        // In chunks, each its own short transaction, so ingest never waits long behind it.
        let mut total = 0;
        loop {
            let n = self
                .writer()
                .execute(
                    "DELETE FROM message_ids WHERE (workspace_id, message_id) IN (
                         SELECT workspace_id, message_id FROM message_ids WHERE received_at < ?1 LIMIT 10000)",
                    [before],
                )
                .map_err(backend)?;
            total += n;
            if n == 0 {
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
        // One node owns every bucket of an embedded store, so this is not on a hot path: a
        // scan in log order, filtered.
        let list = serde_json::to_string(buckets).map_err(corrupt)?;
        self.read(|c| {
            query_events(
                c,
                &format!(
                    "SELECT {EVENT_COLS} FROM events
                     WHERE seq > ?1 AND bucket IN (SELECT value FROM json_each(?2)) ORDER BY seq LIMIT ?3"
                ),
                params![after_seq, list, limit as i64],
            )
        })
    }

    fn drop_events_before(&self, before: Millis) -> Result<u64> {
        let cutoff = parcours_core::time::day_start(before);
        let mut total = 0;
        loop {
            let n = self
                .writer()
                .execute(
                    "DELETE FROM events WHERE seq IN (
                         SELECT seq FROM events WHERE received_at < ?1 ORDER BY seq LIMIT 10000)",
                    [cutoff],
                )
                .map_err(backend)?;
            total += n as u64;
            if n == 0 {
                return Ok(total);
            }
        }
    }
}
