//! Journey versions, in the projections file beside the runs they start.

use parcours_store::{JourneyVersion, Journeys, NewJourneyVersion, Result, StoreError};
use rusqlite::{params, OptionalExtension, Row};

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
}
