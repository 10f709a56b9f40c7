-- The console language each token's user chose: applied when she signs in, on any device.
CREATE TABLE token_languages (
    token_id TEXT PRIMARY KEY REFERENCES tokens(id),
    language TEXT NOT NULL
);
