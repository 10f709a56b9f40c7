-- Schema 6: the outbox and its delivery log. They live in the projections file, beside the
-- audience change log and the cursors: the transaction that records a decision writes its
-- outbox rows too, and one file's transaction commits or rolls back as a whole.

-- AUTOINCREMENT: ids are never reused (they name deliveries to receivers and in the log).
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id TEXT NOT NULL,
    destination TEXT NOT NULL,
    key TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    items INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before INTEGER NOT NULL,
    lease_until INTEGER,
    lock_id TEXT,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    settled_at INTEGER
);
CREATE INDEX outbox_lane ON outbox(workspace_id, destination, id);
-- The open rows only: claims and the janitor read them; settled rows are history.
CREATE INDEX outbox_open ON outbox(workspace_id, destination, id) WHERE state IN ('pending', 'leased');
CREATE INDEX outbox_leases ON outbox(lease_until) WHERE state = 'leased';

CREATE TABLE outbox_attempts (
    outbox_id INTEGER NOT NULL REFERENCES outbox(id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    at INTEGER NOT NULL,
    latency_ms INTEGER NOT NULL,
    status INTEGER,
    ok INTEGER NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (outbox_id, attempt)
) WITHOUT ROWID;
