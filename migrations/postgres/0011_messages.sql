-- What became of journey messages after they left: one receipt per message and kind.
CREATE TABLE message_receipts (
    workspace_id TEXT NOT NULL,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    at BIGINT NOT NULL,
    journey_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (workspace_id, key, kind)
);
-- Reports count receipts per journey and step.
CREATE INDEX message_receipts_journey ON message_receipts(workspace_id, journey_id, step_id, kind);

-- Addresses no message may go to (a hard bounce, a complaint, or by hand).
CREATE TABLE suppressions (
    workspace_id TEXT NOT NULL,
    channel TEXT COLLATE "C" NOT NULL,
    address TEXT COLLATE "C" NOT NULL,
    reason TEXT NOT NULL,
    key TEXT NOT NULL,
    detail TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, channel, address)
);
CREATE INDEX suppressions_recent ON suppressions(workspace_id, at, channel, address);
