-- Durable timers, one table for every kind. The audience processor's re-evaluations move
-- here (kind `audience`, keyed by profile id).

CREATE TABLE timers (
    workspace_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    due_at BIGINT NOT NULL,
    payload TEXT NOT NULL DEFAULT '',
    lease_until BIGINT,
    lock_id TEXT,
    PRIMARY KEY (workspace_id, kind, key)
);
CREATE INDEX timers_due ON timers (kind, due_at);

INSERT INTO timers (workspace_id, kind, key, bucket, due_at)
    SELECT workspace_id, 'audience', profile_id, 0, due_at FROM audience_timers;
DROP TABLE audience_timers;
