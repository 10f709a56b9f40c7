-- Schema 3: audiences and computed traits.

-- Definitions are configuration (kept by replay); everything below them is a projection.
CREATE TABLE definitions (
    workspace_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    doc TEXT NOT NULL,
    version INTEGER NOT NULL,
    computed_version INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, kind, id)
) WITHOUT ROWID;

CREATE TABLE memberships (
    workspace_id TEXT NOT NULL,
    audience_id TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    since INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, audience_id, profile_id)
) WITHOUT ROWID;
CREATE INDEX memberships_profile ON memberships(workspace_id, profile_id);

-- AUTOINCREMENT: ids are never reused, so a destination's position in the log stays valid.
CREATE TABLE membership_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id TEXT NOT NULL,
    audience_id TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    entered INTEGER NOT NULL,
    at INTEGER NOT NULL,
    cause TEXT NOT NULL
);
CREATE INDEX membership_changes_profile ON membership_changes(workspace_id, profile_id, id);
CREATE INDEX membership_changes_audience ON membership_changes(workspace_id, audience_id);

CREATE TABLE computed_values (
    workspace_id TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    trait_id TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (workspace_id, profile_id, trait_id)
) WITHOUT ROWID;

CREATE TABLE audience_timers (
    workspace_id TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    due_at INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, profile_id)
) WITHOUT ROWID;
CREATE INDEX audience_timers_due ON audience_timers(due_at);

CREATE TABLE audience_cursors (
    name TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
) WITHOUT ROWID;
