-- Schema 9: journey documents, every version kept.

CREATE TABLE journey_versions (
    workspace_id TEXT NOT NULL,
    journey_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    source TEXT NOT NULL,
    doc TEXT NOT NULL,
    status TEXT NOT NULL,
    in_flight TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, journey_id, version)
) WITHOUT ROWID;

-- Events applied to profiles of workspaces with live journeys, waiting for the journey
-- processor of the profile's bucket.
CREATE TABLE journey_work (
    workspace_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    profile_id TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    name TEXT NOT NULL,
    message_id TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (workspace_id, seq, profile_id)
) WITHOUT ROWID;
CREATE INDEX journey_work_bucket ON journey_work(bucket, seq);

CREATE TABLE journey_runs (
    workspace_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    journey_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    profile_id TEXT NOT NULL,
    run_key TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    active INTEGER NOT NULL,
    state TEXT NOT NULL,
    entered_at INTEGER NOT NULL,
    ended_at INTEGER,
    outcome TEXT,
    revision INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, run_id)
) WITHOUT ROWID;
-- One run in progress per journey, customer and key.
CREATE UNIQUE INDEX journey_runs_one_active ON journey_runs(workspace_id, journey_id, profile_id, run_key)
    WHERE active = 1;
CREATE INDEX journey_runs_profile ON journey_runs(workspace_id, profile_id, entered_at);
CREATE INDEX journey_runs_history ON journey_runs(workspace_id, journey_id, profile_id, run_key, entered_at);

CREATE TABLE journey_notes (
    workspace_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    n INTEGER NOT NULL,
    journey_id TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    step TEXT,
    code TEXT NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (workspace_id, run_id, n)
) WITHOUT ROWID;
-- Reports count decisions per journey and step.
CREATE INDEX journey_notes_journey ON journey_notes(workspace_id, journey_id);

-- Messages each customer was sent, for frequency caps.
CREATE TABLE journey_contacts (
    workspace_id TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    key TEXT NOT NULL,
    channel TEXT NOT NULL,
    journey_id TEXT NOT NULL,
    priority INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, profile_id, at, key)
) WITHOUT ROWID;

-- A workspace's contact policy (caps, quiet hours, expiry of held-back messages).
CREATE TABLE journey_policies (
    workspace_id TEXT PRIMARY KEY,
    doc TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
