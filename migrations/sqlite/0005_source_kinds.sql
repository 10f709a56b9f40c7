-- A source may be a webhook source (its mapping and signature secret) and may have a tracking
-- plan; both are JSON documents, NULL when unused.
ALTER TABLE sources ADD COLUMN webhook TEXT;
ALTER TABLE sources ADD COLUMN tracking_plan TEXT;

-- The violations report of tracking plans: counts by source, event, field and kind.
CREATE TABLE plan_violations (
    workspace_id TEXT NOT NULL,
    source_id TEXT NOT NULL,
    event TEXT NOT NULL,
    field TEXT NOT NULL,
    kind TEXT NOT NULL,
    count BIGINT NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    example TEXT NOT NULL,
    PRIMARY KEY (workspace_id, source_id, event, field, kind)
);
