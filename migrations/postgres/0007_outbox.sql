-- The outbox and its delivery log: written in the same transaction as the decisions that
-- cause their rows.

CREATE TABLE outbox (
    id BIGSERIAL PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    destination TEXT NOT NULL,
    key TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    items INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before BIGINT NOT NULL,
    lease_until BIGINT,
    lock_id TEXT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    settled_at BIGINT
);
CREATE INDEX outbox_lane ON outbox(workspace_id, destination, id);
CREATE INDEX outbox_open ON outbox(workspace_id, destination, id) WHERE state IN ('pending', 'leased');
CREATE INDEX outbox_leases ON outbox(lease_until) WHERE state = 'leased';

CREATE TABLE outbox_attempts (
    outbox_id BIGINT NOT NULL REFERENCES outbox(id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    at BIGINT NOT NULL,
    latency_ms BIGINT NOT NULL,
    status INTEGER,
    ok BOOLEAN NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (outbox_id, attempt)
);
