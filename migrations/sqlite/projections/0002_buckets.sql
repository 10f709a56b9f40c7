-- Schema 2: one processing cursor per bucket (the whole log's cursor is the lowest).
CREATE TABLE bucket_cursors (
    bucket INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL
);
WITH RECURSIVE b(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM b WHERE n < 255)
INSERT INTO bucket_cursors (bucket, seq)
SELECT n, coalesce((SELECT seq FROM projection_cursor WHERE name = 'unify'), 0) FROM b;
DELETE FROM projection_cursor WHERE name = 'unify';
