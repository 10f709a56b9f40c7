-- Parcours on PostgreSQL, schema 1: registry, event log, quarantine, projections, cluster.
-- Applied by every node on start, under an advisory lock, so several nodes can start at once.

CREATE TABLE workspaces (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    identity_rules TEXT NOT NULL
);

CREATE TABLE sources (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    name TEXT NOT NULL,
    channel TEXT,
    write_key_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);
CREATE INDEX sources_workspace ON sources(workspace_id);

CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    instance_admin BOOLEAN NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);
CREATE INDEX tokens_workspace ON tokens(workspace_id);

-- The log's high-water mark. Every append locks this row first, so sequence numbers are
-- handed out and committed in the same order: a reader that saw `last_seq` sees every event
-- up to it.
CREATE TABLE log_state (
    id INT PRIMARY KEY CHECK (id = 1),
    last_seq BIGINT NOT NULL
);
INSERT INTO log_state VALUES (1, 0);

-- The event log, partitioned by day of arrival (UTC, milliseconds) so that retention drops
-- partitions. Partitions are named events_YYYYMMDD and created ahead of time; the default
-- partition catches anything outside them.
CREATE TABLE events (
    seq BIGINT NOT NULL,
    workspace_id TEXT NOT NULL,
    source_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    type TEXT NOT NULL,
    event TEXT,
    user_id TEXT,
    anonymous_id TEXT,
    timestamp BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    channel TEXT NOT NULL,
    body TEXT NOT NULL,
    bucket SMALLINT NOT NULL
) PARTITION BY RANGE (received_at);
CREATE TABLE events_default PARTITION OF events DEFAULT;
CREATE INDEX events_seq ON events (seq);
CREATE INDEX events_workspace_seq ON events (workspace_id, seq);
CREATE INDEX events_bucket_seq ON events (bucket, seq);

CREATE TABLE message_ids (
    workspace_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, message_id)
);
CREATE INDEX message_ids_received ON message_ids (received_at);

CREATE TABLE quarantine (
    id BIGSERIAL PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    source_id TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    code TEXT NOT NULL,
    reason TEXT NOT NULL,
    message_id TEXT,
    body TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    resolved_at BIGINT,
    UNIQUE (workspace_id, fingerprint)
);
CREATE INDEX quarantine_workspace ON quarantine (workspace_id, status, id);

-- Projections (rebuilt by `parcours replay`).
CREATE TABLE bucket_cursors (
    bucket SMALLINT PRIMARY KEY,
    seq BIGINT NOT NULL
);
INSERT INTO bucket_cursors SELECT b, 0 FROM generate_series(0, 255) AS b;

CREATE TABLE projection_state (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);

-- Profile ids sort bytewise (as on SQLite), whatever the database's collation.
CREATE TABLE profiles (
    workspace_id TEXT NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    merged_into TEXT,
    doc TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, id)
);
CREATE INDEX profiles_merged_into ON profiles (workspace_id, merged_into);

CREATE TABLE identifiers (
    workspace_id TEXT NOT NULL,
    id_type TEXT NOT NULL,
    id_value TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    linked_by TEXT NOT NULL,
    linked_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, id_type, id_value)
);

CREATE TABLE identifier_drops (
    workspace_id TEXT NOT NULL,
    id_type TEXT NOT NULL,
    id_value TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    PRIMARY KEY (workspace_id, id_type, id_value, profile_id)
);
CREATE INDEX identifier_drops_profile ON identifier_drops (workspace_id, profile_id);

-- `applied` numbers assignments in the order they were made, across the cluster: operators
-- (and the failover test) can check that each bucket's events were applied in log order.
CREATE SEQUENCE apply_order;
CREATE TABLE profile_events (
    workspace_id TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    applied BIGINT NOT NULL DEFAULT nextval('apply_order'),
    PRIMARY KEY (workspace_id, profile_id, seq)
);

CREATE TABLE merges (
    id BIGSERIAL PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    winner TEXT NOT NULL,
    loser TEXT NOT NULL,
    cause_message_id TEXT NOT NULL,
    doc TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'active',
    created_at BIGINT NOT NULL,
    undone_at BIGINT,
    UNIQUE (workspace_id, loser, cause_message_id)
);
CREATE INDEX merges_winner ON merges (workspace_id, winner);

CREATE TABLE separations (
    id BIGSERIAL PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    a_type TEXT NOT NULL,
    a_value TEXT NOT NULL,
    b_type TEXT NOT NULL,
    b_value TEXT NOT NULL,
    merge_id BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX separations_workspace ON separations (workspace_id);

-- The cluster: live nodes and who owns which bucket.
CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    address TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    seen_at BIGINT NOT NULL
);

CREATE TABLE bucket_leases (
    bucket SMALLINT PRIMARY KEY,
    node TEXT,
    lease_until BIGINT NOT NULL DEFAULT 0
);
INSERT INTO bucket_leases (bucket) SELECT b FROM generate_series(0, 255) AS b;
