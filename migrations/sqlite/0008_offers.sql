-- Offers (the promotion engine's rules, each as its JSON document) and their redemptions: one
-- row per (offer, order), written in the order's transaction, so the limits of a coupon are
-- counted under the same lock that commits the sale.

CREATE TABLE commerce_offers (
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, id)
) WITHOUT ROWID;

CREATE TABLE offer_redemptions (
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    offer_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    code TEXT,
    customer TEXT,
    at INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, offer_id, order_id)
) WITHOUT ROWID;

CREATE INDEX offer_redemptions_by_code ON offer_redemptions (workspace_id, offer_id, code);
CREATE INDEX offer_redemptions_by_customer ON offer_redemptions (workspace_id, offer_id, customer);

-- When an order next needs attention by itself (a ready click & collect order's pickup
-- deadline): the order row is its own durable timer, found by this index.
ALTER TABLE commerce_orders ADD COLUMN due_at INTEGER;
CREATE INDEX commerce_orders_due ON commerce_orders (due_at) WHERE due_at IS NOT NULL;

-- Customers who want to know when an item is back at a location: they asked, or their order
-- for it there was refused for lack of stock. Told once (`notified_at`); asking again reopens.
CREATE TABLE stock_alerts (
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    sku TEXT NOT NULL,
    location_id TEXT NOT NULL,
    -- Who (card:…, user:…, email:…, anon:…), one alert per item, location and customer.
    subscriber TEXT NOT NULL,
    customer TEXT NOT NULL,
    reason TEXT NOT NULL,
    -- Told once this many are available there.
    quantity INTEGER NOT NULL CHECK (quantity >= 1),
    created_at INTEGER NOT NULL,
    notified_at INTEGER,
    PRIMARY KEY (workspace_id, sku, location_id, subscriber)
) WITHOUT ROWID;
CREATE INDEX stock_alerts_open ON stock_alerts (workspace_id, sku, location_id) WHERE notified_at IS NULL;

-- Low stock: an item's threshold, and when a level's fall to it was told (cleared when the
-- level rises above it again).
ALTER TABLE commerce_items ADD COLUMN low_stock INTEGER;
ALTER TABLE stock_levels ADD COLUMN low_told_at INTEGER;
CREATE INDEX stock_levels_recent ON stock_levels (updated_at);
