//! Throwaway databases for tests: each test gets its own, dropped when it ends. The server
//! comes from `PARCOURS_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`).

use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{Connection, PgConnection};

/// The server tests run against.
pub fn server_url() -> String {
    std::env::var("PARCOURS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database created for one test and dropped (with its connections) when this is dropped.
pub struct TempDatabase {
    admin_url: String,
    name: String,
    url: String,
}

fn on_own_runtime<T: Send, F: std::future::Future<Output = T>>(
    make: impl FnOnce() -> F + Send,
) -> T {
    // A fresh thread, so this works from inside a test's async runtime too.
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the test database")
                .block_on(make())
        })
        .join()
        .expect("the test database thread")
    })
}

impl TempDatabase {
    /// Creates an empty database on the test server. Panics, saying how to fix it, when the
    /// server cannot be reached: the PostgreSQL tests never skip.
    // Unique scratch names, not a time the product reads.
    #[allow(clippy::disallowed_methods)]
    pub fn create() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let admin_url = server_url();
        let name = format!(
            "parcours_test_{}_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_micros()
                % 1_000_000_000,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let url = with_database(&admin_url, &name);
        if let Err(e) = create_database(&admin_url, &name) {
            panic!(
                "{e} (test server {admin_url}). Start PostgreSQL or set PARCOURS_TEST_DATABASE_URL (see README)."
            );
        }
        Self {
            admin_url,
            name,
            url,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        // Best effort: a leftover test database is harmless and named as one.
        let _ = drop_database(&self.admin_url, &self.name);
    }
}

/// Creates a database on the server of `url` (benchmarks' scratch databases).
pub fn create_database(url: &str, name: &str) -> Result<(), String> {
    on_own_runtime(|| async {
        let mut conn = PgConnection::connect(url)
            .await
            .map_err(|e| format!("cannot reach PostgreSQL: {e}"))?;
        sqlx::raw_sql(sql!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .map_err(|e| format!("cannot create database {name}: {e}"))?;
        Ok(())
    })
}

/// Drops a database (and its connections) on the server of `url`.
pub fn drop_database(url: &str, name: &str) -> Result<(), String> {
    on_own_runtime(|| async {
        let mut conn = PgConnection::connect(url)
            .await
            .map_err(|e| format!("cannot reach PostgreSQL: {e}"))?;
        sqlx::raw_sql(sql!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await
            .map_err(|e| format!("cannot drop database {name}: {e}"))?;
        Ok(())
    })
}

/// The same server URL with another database name.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{database}?{q}"),
        None => format!("{base}/{database}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_change_only_the_database() {
        use super::with_database;
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
        assert_eq!(
            with_database("postgres://h/db?sslmode=disable", "x"),
            "postgres://h/x?sslmode=disable"
        );
    }
}
