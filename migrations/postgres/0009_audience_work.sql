-- The profiles waiting for audience evaluation, one row each, queued by the unify
-- processor in the transaction that changed them and taken by the owner of the profile's
-- bucket. It replaces the journal of reshaped profiles, and the processor's place in the log:
-- every definition is computed once again after the upgrade, so that nothing queued the old
-- way is missed.
CREATE TABLE audience_work (
    workspace_id TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    bucket SMALLINT NOT NULL,
    -- The names of the events queued (sorted), and whether everything is evaluated.
    names TEXT[] NOT NULL,
    everything BOOLEAN NOT NULL,
    retired BOOLEAN NOT NULL,
    first_seq BIGINT NOT NULL,
    cause TEXT NOT NULL,
    at BIGINT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, profile_id)
);
CREATE INDEX audience_work_waiting ON audience_work (first_seq);
-- Versions never repeat, even for a row removed and queued again.
CREATE SEQUENCE audience_work_versions;

-- Writers of membership changes lock this row first, so change ids commit in order and a
-- reader following the change log never skips one that commits late.
INSERT INTO projection_state (name, value) VALUES ('membership_changes', 0)
    ON CONFLICT DO NOTHING;

DROP TABLE reshaped_profiles;
DELETE FROM audience_cursors WHERE name IN ('audiences', 'reshaped');
UPDATE definitions SET computed_version = 0, done = 0, total = 0
    WHERE kind IN ('audience', 'computed_trait');
