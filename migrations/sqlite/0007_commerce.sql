-- Unified commerce: authoritative state (a replay never touches it), kept in the log's file so
-- that an order's change and the events it tells can commit together.

-- The catalogue: each item as its JSON document (components, prices) beside its keys.
CREATE TABLE commerce_items (
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    sku TEXT NOT NULL,
    body TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, sku)
) WITHOUT ROWID;

CREATE TABLE commerce_locations (
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, id)
) WITHOUT ROWID;

-- One row per (item, location). `reserved` is the sum of active reservation rows, including
-- ones past their expiry that no write has swept yet: readers subtract those.
CREATE TABLE stock_levels (
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    sku TEXT NOT NULL,
    location_id TEXT NOT NULL,
    on_hand INTEGER NOT NULL CHECK (on_hand >= 0),
    reserved INTEGER NOT NULL CHECK (reserved >= 0),
    safety_stock INTEGER NOT NULL CHECK (safety_stock >= 0),
    damaged INTEGER NOT NULL CHECK (damaged >= 0),
    quality_control INTEGER NOT NULL CHECK (quality_control >= 0),
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, sku, location_id)
) WITHOUT ROWID;
CREATE INDEX stock_levels_by_location ON stock_levels (workspace_id, location_id, sku);

-- The movement ledger: append-only.
CREATE TABLE stock_movements (
    id INTEGER PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    location_id TEXT NOT NULL,
    state TEXT NOT NULL,
    delta INTEGER NOT NULL,
    quantity_after INTEGER NOT NULL,
    reason TEXT NOT NULL,
    reference TEXT,
    at INTEGER NOT NULL
);
CREATE INDEX stock_movements_by_item ON stock_movements (workspace_id, sku, location_id, id);

CREATE TABLE stock_reservations (
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    reference TEXT NOT NULL,
    sku TEXT NOT NULL,
    location_id TEXT NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    state TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    settled_at INTEGER,
    PRIMARY KEY (workspace_id, reference, sku, location_id)
) WITHOUT ROWID;
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
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, id)
) WITHOUT ROWID;
CREATE INDEX commerce_orders_by_member ON commerce_orders (workspace_id, member) WHERE member IS NOT NULL;

-- Each member's ledger, append-only. A key (earn:ORDER, burn:REDEMPTION …) happens once per
-- workspace: an order earns once, whichever card or channel replays it.
CREATE TABLE loyalty_entries (
    seq INTEGER PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    member TEXT NOT NULL,
    key TEXT NOT NULL,
    body TEXT NOT NULL,
    at INTEGER NOT NULL,
    UNIQUE (workspace_id, key)
);
CREATE INDEX loyalty_entries_by_member ON loyalty_entries (workspace_id, member, seq);

CREATE TABLE loyalty_programs (
    workspace_id TEXT PRIMARY KEY REFERENCES workspaces(id),
    body TEXT NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
