-- Daily tallies (events per channel, profiles made and merged, audience entries and exits,
-- messages and conversions per journey), added in the transaction that writes what they
-- count: what the console's dashboard reads, a few rows per day instead of the event log.
-- Each transaction adds to one of several parts of a count (readers sum them), so nodes
-- that count the same day and channel at once do not wait on one row.
-- Counting starts with this schema; `parcours replay` counts the history before it.
CREATE TABLE tallies (
    workspace_id TEXT NOT NULL,
    day BIGINT NOT NULL,
    metric TEXT NOT NULL,
    key TEXT NOT NULL,
    part SMALLINT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, day, metric, key, part)
);
