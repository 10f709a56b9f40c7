-- Schema 10: journey documents, every version kept.

CREATE TABLE journey_versions (
    workspace_id TEXT NOT NULL,
    journey_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    source TEXT NOT NULL,
    doc JSONB NOT NULL,
    status TEXT NOT NULL,
    in_flight TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, journey_id, version)
);
