-- Parcours embedded store, schema 1.

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

CREATE TABLE quarantine (
    id INTEGER PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    source_id TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    code TEXT NOT NULL,
    reason TEXT NOT NULL,
    message_id TEXT,
    body TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    resolved_at INTEGER
);
CREATE INDEX quarantine_workspace ON quarantine(workspace_id, status, id);

-- Projections (rebuilt by `parcours replay`).
CREATE TABLE projection_cursor (
    name TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
);

-- A rowid table: profile documents are too large for WITHOUT ROWID to pay off.
CREATE TABLE profiles (
    workspace_id TEXT NOT NULL,
    id TEXT NOT NULL,
    merged_into TEXT,
    doc TEXT,
    updated_at INTEGER NOT NULL,
    UNIQUE (workspace_id, id)
);
CREATE INDEX profiles_merged_into ON profiles(workspace_id, merged_into);

CREATE TABLE identifiers (
    workspace_id TEXT NOT NULL,
    id_type TEXT NOT NULL,
    id_value TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    linked_by TEXT NOT NULL,
    linked_at INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, id_type, id_value)
) WITHOUT ROWID;
-- No index on profile_id: a profile's identifiers are in its document, and moving them on a
-- merge is then a cheap rewrite of primary-key rows.

CREATE TABLE identifier_drops (
    workspace_id TEXT NOT NULL,
    id_type TEXT NOT NULL,
    id_value TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    PRIMARY KEY (workspace_id, id_type, id_value, profile_id)
) WITHOUT ROWID;
CREATE INDEX identifier_drops_profile ON identifier_drops(workspace_id, profile_id);

CREATE TABLE profile_events (
    workspace_id TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, profile_id, seq)
) WITHOUT ROWID;

CREATE TABLE merges (
    id INTEGER PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    winner TEXT NOT NULL,
    loser TEXT NOT NULL,
    cause_message_id TEXT NOT NULL,
    doc TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'active',
    created_at INTEGER NOT NULL,
    undone_at INTEGER,
    UNIQUE (workspace_id, loser, cause_message_id)
);
CREATE INDEX merges_winner ON merges(workspace_id, winner);

-- Pairs of identifiers an operator separated by undoing a merge. They are rules, not
-- projections: replay keeps them.
CREATE TABLE separations (
    id INTEGER PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    a_type TEXT NOT NULL,
    a_value TEXT NOT NULL,
    b_type TEXT NOT NULL,
    b_value TEXT NOT NULL,
    merge_id INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX separations_workspace ON separations(workspace_id);
