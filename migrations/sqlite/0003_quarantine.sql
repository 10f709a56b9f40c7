-- Schema 3: the quarantine keeps every occurrence of an invalid event (how many, when first and
-- last seen, from which sources), the type its endpoint named (so `/v1/track` bodies, which
-- have no `type`, can be replayed), and, for a stored event a processor set aside, its place
-- in the log.
ALTER TABLE quarantine ADD COLUMN occurrences INTEGER NOT NULL DEFAULT 1;
ALTER TABLE quarantine ADD COLUMN last_seen INTEGER;
UPDATE quarantine SET last_seen = received_at;
ALTER TABLE quarantine ADD COLUMN sources TEXT NOT NULL DEFAULT '[]';
UPDATE quarantine SET sources = json_array(source_id);
ALTER TABLE quarantine ADD COLUMN path_type TEXT;
ALTER TABLE quarantine ADD COLUMN seq INTEGER;
