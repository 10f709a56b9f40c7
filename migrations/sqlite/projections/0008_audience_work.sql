-- Schema 8: the profiles waiting for audience evaluation, one row each, queued by the unify
-- processor in the transaction that changed them and taken by the owner of the profile's
-- bucket. It replaces the journal of reshaped profiles, and the processor's place in the log:
-- every definition is computed once again after the upgrade, so that nothing queued the old
-- way is missed.
CREATE TABLE audience_work (
    workspace_id TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    -- The names of the events queued (a JSON array), and whether everything is evaluated.
    names TEXT NOT NULL,
    everything BOOLEAN NOT NULL,
    retired BOOLEAN NOT NULL,
    first_seq INTEGER NOT NULL,
    cause TEXT NOT NULL,
    at INTEGER NOT NULL,
    -- Never repeats, even for a row removed and queued again (the last one given is the
    -- cursor `work_version`).
    version INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, profile_id)
) WITHOUT ROWID;
CREATE INDEX audience_work_waiting ON audience_work (first_seq);

DROP TABLE reshaped_profiles;
DELETE FROM audience_cursors WHERE name IN ('audiences', 'reshaped');
UPDATE definitions SET computed_version = 0, done = 0, total = 0
    WHERE kind IN ('audience', 'computed_trait');
