-- Schema 2: buckets and leases (see docs/operations.md). An embedded store has one node, which
-- owns every bucket; the tables exist so that both backends keep the same behaviour.

-- The bucket of each event's customer. Events stored before schema 2 are in bucket 0.
ALTER TABLE events ADD COLUMN bucket INTEGER NOT NULL DEFAULT 0;

CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    address TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    seen_at INTEGER NOT NULL
);

CREATE TABLE bucket_leases (
    bucket INTEGER PRIMARY KEY,
    node TEXT,
    lease_until INTEGER NOT NULL DEFAULT 0
);
WITH RECURSIVE b(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM b WHERE n < 255)
INSERT INTO bucket_leases (bucket) SELECT n FROM b;
