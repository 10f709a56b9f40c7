-- Privacy: data subjects' requests, the suppression list of erased identifiers, the audit log.

CREATE TABLE privacy_requests (
    id TEXT NOT NULL,
    workspace_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    identifier_type TEXT NOT NULL,
    -- Held while the request is open; an erasure forgets it.
    identifier TEXT,
    state TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    deadline TEXT NOT NULL,
    extension_reason TEXT,
    done_at INTEGER,
    result TEXT,
    requested_by TEXT NOT NULL,
    archive BLOB,
    PRIMARY KEY (workspace_id, id)
) WITHOUT ROWID;
CREATE INDEX privacy_requests_open ON privacy_requests (state) WHERE state IN ('received', 'in_progress');

-- SHA-256 of (workspace, kind, value) of every erased identifier: events naming one are
-- refused at ingest, and counted here.
CREATE TABLE erased_identifiers (
    workspace_id TEXT NOT NULL,
    hash TEXT NOT NULL,
    kind TEXT NOT NULL,
    at INTEGER NOT NULL,
    refused INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace_id, hash)
) WITHOUT ROWID;

-- Append-only: the triggers refuse every change and every removal.
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_log_workspace ON audit_log (workspace_id, id);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

-- A workspace's settings that are not identity rules (privacy: retention, IP addresses,
-- location, holidays; the preference page's signing secret), each a JSON document.
CREATE TABLE workspace_settings (
    workspace_id TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, name)
);

-- The highest sequence number the log has ever given. An event's seq is the row id, and
-- SQLite gives a new row max(rowid) + 1: once erasure or retention deleted the newest events,
-- their numbers would come back, below the cursors that already passed them, and the new
-- events would never be read. Inserts start above this floor; deletes raise it.
CREATE TABLE event_seq_floor (seq INTEGER NOT NULL);
INSERT INTO event_seq_floor (seq) SELECT coalesce(max(seq), 0) FROM events;
CREATE TRIGGER events_keep_their_seq AFTER DELETE ON events
WHEN OLD.seq > (SELECT seq FROM event_seq_floor)
BEGIN UPDATE event_seq_floor SET seq = OLD.seq; END;

-- The parts of the admin API a token may call (a JSON array; NULL: every part).
ALTER TABLE tokens ADD COLUMN scopes TEXT;
