-- Journey work is read in log order: without this index every step sorted the whole queue,
-- so each read cost more as the queue grew.
CREATE INDEX journey_work_seq ON journey_work (seq);
