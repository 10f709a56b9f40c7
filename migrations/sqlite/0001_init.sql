-- Parcours embedded store: registry, event log and quarantine (parcours.sqlite3), schema 1.

CREATE TABLE workspaces (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    identity_rules TEXT NOT NULL
);

CREATE TABLE sources (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    name TEXT NOT NULL,
    channel TEXT,
    write_key_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
CREATE INDEX sources_workspace ON sources(workspace_id);

CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    instance_admin INTEGER NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
CREATE INDEX tokens_workspace ON tokens(workspace_id);

-- The event log: append-only, seq is the arrival order.
CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    source_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    type TEXT NOT NULL,
    event TEXT,
    user_id TEXT,
    anonymous_id TEXT,
    timestamp INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    channel TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX events_workspace_seq ON events(workspace_id, seq);

-- messageIds accepted within the dedup window, with the event each one stored: the only
-- index by messageId, so an ingested event costs one fewer b-tree insert.
CREATE TABLE message_ids (
    workspace_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, message_id)
) WITHOUT ROWID;
-- Arrival order: appended at the end, and lets the janitor forget old ids without a scan.
CREATE INDEX message_ids_received ON message_ids(received_at);

CREATE TABLE quarantine (
    id INTEGER PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    source_id TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    code TEXT NOT NULL,
    reason TEXT NOT NULL,
    message_id TEXT,
    body TEXT NOT NULL,
    -- SHA-256 of the body: the same invalid event sent or imported again is kept once.
    fingerprint TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    resolved_at INTEGER,
    UNIQUE (workspace_id, fingerprint)
);
CREATE INDEX quarantine_workspace ON quarantine(workspace_id, status, id);

