//! Journey versions. Two nodes saving the same journey at once: one version wins, the other
//! is told it replaced an older one (the primary key settles it).

use parcours_store::{JourneyVersion, Journeys, NewJourneyVersion, Result, StoreError};
use sqlx::postgres::PgRow;
use sqlx::Row;

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
}
