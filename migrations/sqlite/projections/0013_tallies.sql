-- Daily tallies (events per channel, profiles made and merged, audience entries and exits,
-- messages and conversions per journey), added in the transaction that writes what they
-- count: what the console's dashboard reads, a few rows per day instead of the event log.
-- Counting starts with this schema; `parcours replay` counts the history before it.
CREATE TABLE tallies (
    workspace_id TEXT NOT NULL,
    metric TEXT NOT NULL,
    day INTEGER NOT NULL,
    key TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, day, metric, key)
) WITHOUT ROWID;
