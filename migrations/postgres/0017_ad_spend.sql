-- Advertising spend, per day, channel and campaign (empty: none), imported by the workspace's
-- marketers: what customer acquisition cost divides.
CREATE TABLE ad_spend (
    workspace_id TEXT NOT NULL,
    day BIGINT NOT NULL,
    channel TEXT NOT NULL,
    campaign TEXT NOT NULL,
    amount DOUBLE PRECISION NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, day, channel, campaign)
);
