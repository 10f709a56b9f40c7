-- Parcours embedded store: identity and profile projections (parcours.projections.sqlite3),
-- schema 1. A separate file with its own writer, so unifying never blocks ingest.

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
