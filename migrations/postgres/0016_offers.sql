-- Offers (the promotion engine's rules, each as its JSON document) and their redemptions: one
-- row per (offer, order), written in the order's transaction, so the limits of a coupon are
-- counted under the same lock that commits the sale.

CREATE TABLE commerce_offers (
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, id)
);

CREATE TABLE offer_redemptions (
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    offer_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    code TEXT,
    customer TEXT,
    at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, offer_id, order_id)
);

CREATE INDEX offer_redemptions_by_code ON offer_redemptions (workspace_id, offer_id, code);
CREATE INDEX offer_redemptions_by_customer ON offer_redemptions (workspace_id, offer_id, customer);

-- When an order next needs attention by itself (a ready click & collect order's pickup
-- deadline): the order row is its own durable timer, found by this index.
ALTER TABLE commerce_orders ADD COLUMN due_at BIGINT;
CREATE INDEX commerce_orders_due ON commerce_orders (due_at) WHERE due_at IS NOT NULL;
