-- Schema 4: the profiles the unify processor reshaped (merged, re-derived, undone) or retired
-- into another, in order, for the audience processor to follow: a retired id leaves every
-- audience, a reshaped profile is evaluated again in full.
CREATE TABLE reshaped_profiles (
    id BIGSERIAL PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    successor TEXT,
    retired BOOLEAN NOT NULL,
    -- The event whose application did it (0: none, an undo), and its messageId.
    seq BIGINT NOT NULL,
    cause TEXT NOT NULL,
    at BIGINT NOT NULL
);
