-- Journey work is read in log order: without this index every step sorted the whole queue,
-- so each read cost more as the queue grew. A node's buckets are read from it too (the
-- rows of other buckets are passed over in order), so the index by bucket goes: it only
-- made every queued and settled row cost one more write.
CREATE INDEX journey_work_seq ON journey_work (seq);
DROP INDEX journey_work_bucket;
