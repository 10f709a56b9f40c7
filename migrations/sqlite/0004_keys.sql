-- Write keys live in their own table (a source may hold two during a rotation's overlap);
-- sources keep the hash of their first key for compatibility, unused for lookups.
CREATE TABLE write_keys (
    hash TEXT PRIMARY KEY,
    source_id TEXT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER
);
CREATE INDEX write_keys_source ON write_keys(source_id);
INSERT INTO write_keys (hash, source_id, created_at) SELECT write_key_hash, id, created_at FROM sources;
ALTER TABLE sources ADD COLUMN allowed_origins TEXT NOT NULL DEFAULT '[]';
ALTER TABLE tokens ADD COLUMN expires_at INTEGER;
