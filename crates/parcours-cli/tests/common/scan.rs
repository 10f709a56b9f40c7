//! Scans a node's storage for values that must not be there: every file of the embedded
//! store (write-ahead logs included), or every table of its PostgreSQL database.

use std::path::Path;

use super::{Backend, TestNode};

/// Every needle found in a file under `dir`.
pub fn hits_in_files(dir: &Path, needles: &[&str]) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            hits.extend(hits_in_files(&path, needles));
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        for n in needles {
            if bytes.windows(n.len()).any(|w| w == n.as_bytes()) {
                hits.push(format!("{n} in {}", path.display()));
            }
        }
    }
    hits
}

/// Every needle found in a row of a table of a PostgreSQL database (as text; a binary column
/// is searched as the hex of the needle).
pub async fn hits_in_tables(url: &str, needles: &[&str]) -> Vec<String> {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
         ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(tables.len() > 40, "{tables:?}");
    let mut hits = Vec::new();
    for table in tables {
        for n in needles {
            let hex: String = n.bytes().map(|b| format!("{b:02x}")).collect();
            let count: i64 = sqlx::query_scalar(&format!(
                "SELECT count(*) FROM {table} t WHERE strpos(t::text, $1) > 0 OR strpos(t::text, $2) > 0"
            ))
            .bind(n)
            .bind(&hex)
            .fetch_one(&pool)
            .await
            .unwrap();
            if count > 0 {
                hits.push(format!("{n} in {count} rows of {table}"));
            }
        }
    }
    hits
}

/// Every needle found in the node's storage.
pub async fn hits(t: &TestNode, backend: Backend, needles: &[&str]) -> Vec<String> {
    match backend {
        Backend::Sqlite => hits_in_files(&t.dir, needles),
        Backend::Postgres => hits_in_tables(t.database.as_ref().unwrap().url(), needles).await,
    }
}
