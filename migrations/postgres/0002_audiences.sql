-- Schema 2: audiences and computed traits.

-- Definitions are configuration (kept by replay); everything below them is a projection.
CREATE TABLE definitions (
    workspace_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    doc JSONB NOT NULL,
    version BIGINT NOT NULL,
    computed_version BIGINT NOT NULL DEFAULT 0,
    done BIGINT NOT NULL DEFAULT 0,
    total BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, kind, id)
);

CREATE TABLE memberships (
    workspace_id TEXT NOT NULL,
    audience_id TEXT NOT NULL,
    profile_id TEXT COLLATE "C" NOT NULL,
    since BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, audience_id, profile_id)
);
CREATE INDEX memberships_profile ON memberships (workspace_id, profile_id);

CREATE TABLE membership_changes (
    id BIGSERIAL PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    audience_id TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    entered BOOLEAN NOT NULL,
    at BIGINT NOT NULL,
    cause TEXT NOT NULL
);
CREATE INDEX membership_changes_profile ON membership_changes (workspace_id, profile_id, id);
CREATE INDEX membership_changes_audience ON membership_changes (workspace_id, audience_id);

CREATE TABLE computed_values (
    workspace_id TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    trait_id TEXT NOT NULL,
    value JSONB NOT NULL,
    PRIMARY KEY (workspace_id, profile_id, trait_id)
);

CREATE TABLE audience_timers (
    workspace_id TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    due_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, profile_id)
);
CREATE INDEX audience_timers_due ON audience_timers (due_at);

CREATE TABLE audience_cursors (
    name TEXT PRIMARY KEY,
    seq BIGINT NOT NULL
);
