-- Unified commerce: authoritative state (a replay never touches it), kept beside the log so
-- that an order's change and the events it tells can commit together.

-- The catalogue: each item as its JSON document (components, prices) beside its keys.
CREATE TABLE commerce_items (
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    sku TEXT NOT NULL,
    body TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, sku)
);

CREATE TABLE commerce_locations (
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, id)
);

-- One row per (item, location). `reserved` is the sum of active reservation rows, including
-- ones past their expiry that no write has swept yet: readers subtract those.
CREATE TABLE stock_levels (
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    sku TEXT NOT NULL,
    location_id TEXT NOT NULL,
    on_hand BIGINT NOT NULL CHECK (on_hand >= 0),
    reserved BIGINT NOT NULL CHECK (reserved >= 0),
    safety_stock BIGINT NOT NULL CHECK (safety_stock >= 0),
    damaged BIGINT NOT NULL CHECK (damaged >= 0),
    quality_control BIGINT NOT NULL CHECK (quality_control >= 0),
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, sku, location_id)
);
CREATE INDEX stock_levels_by_location ON stock_levels (workspace_id, location_id, sku);

-- The movement ledger: append-only.
CREATE TABLE stock_movements (
    id BIGSERIAL PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    location_id TEXT NOT NULL,
    state TEXT NOT NULL,
    delta BIGINT NOT NULL,
    quantity_after BIGINT NOT NULL,
    reason TEXT NOT NULL,
    reference TEXT,
    at BIGINT NOT NULL
);
CREATE INDEX stock_movements_by_item ON stock_movements (workspace_id, sku, location_id, id);

CREATE TABLE stock_reservations (
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    reference TEXT NOT NULL,
    sku TEXT NOT NULL,
    location_id TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    settled_at BIGINT,
    PRIMARY KEY (workspace_id, reference, sku, location_id)
);
-- The live reservations of a key past a given instant: what reads subtract and writes sweep.
CREATE INDEX stock_reservations_expiring ON stock_reservations (workspace_id, sku, location_id, expires_at)
    WHERE state = 'active' AND expires_at IS NOT NULL;

CREATE TABLE commerce_orders (
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    id TEXT NOT NULL,
    channel TEXT NOT NULL,
    status TEXT NOT NULL,
    member TEXT,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, id)
);
CREATE INDEX commerce_orders_by_member ON commerce_orders (workspace_id, member) WHERE member IS NOT NULL;

-- Each member's ledger, append-only. A key (earn:ORDER, burn:REDEMPTION …) happens once per
-- workspace: an order earns once, whichever card or channel replays it.
CREATE TABLE loyalty_entries (
    seq BIGSERIAL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    member TEXT NOT NULL,
    key TEXT NOT NULL,
    body TEXT NOT NULL,
    at BIGINT NOT NULL,
    UNIQUE (workspace_id, key)
);
CREATE INDEX loyalty_entries_by_member ON loyalty_entries (workspace_id, member, seq);

CREATE TABLE loyalty_programs (
    workspace_id TEXT PRIMARY KEY REFERENCES workspaces(id),
    body TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
