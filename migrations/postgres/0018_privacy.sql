-- Privacy: data subjects' requests, the suppression list of erased identifiers, the audit log.

CREATE TABLE privacy_requests (
    id TEXT NOT NULL,
    workspace_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    identifier_type TEXT NOT NULL,
    -- Held while the request is open; an erasure forgets it.
    identifier TEXT,
    state TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    deadline TEXT NOT NULL,
    extension_reason TEXT,
    done_at BIGINT,
    result TEXT,
    requested_by TEXT NOT NULL,
    archive BYTEA,
    PRIMARY KEY (workspace_id, id)
);
CREATE INDEX privacy_requests_open ON privacy_requests (state) WHERE state IN ('received', 'in_progress');

-- SHA-256 of (workspace, kind, value) of every erased identifier: events naming one are
-- refused at ingest, and counted here.
CREATE TABLE erased_identifiers (
    workspace_id TEXT NOT NULL,
    hash TEXT NOT NULL,
    kind TEXT NOT NULL,
    at BIGINT NOT NULL,
    refused BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace_id, hash)
);

-- Append-only: the trigger refuses every change and every removal.
CREATE TABLE audit_log (
    id BIGSERIAL PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_log_workspace ON audit_log (workspace_id, id);
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- A workspace's settings that are not identity rules (privacy: retention, IP addresses,
-- location, holidays; the preference page's signing secret), each a JSON document.
CREATE TABLE workspace_settings (
    workspace_id TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, name)
);

-- The parts of the admin API a token may call (a JSON array; NULL: every part).
ALTER TABLE tokens ADD COLUMN scopes TEXT;
