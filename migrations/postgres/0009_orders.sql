-- Buying. Only adds: an older shop keeps working on these tables (it ignores prices and
-- orders, and its edits leave the version alone).
--
-- An item's price, in minor units of the shop's currency (NULL: not for sale, as every
-- item made before this release is until its seller sets one), and its version: moved by
-- every change (an edit, a sale, a cancelled sale), so an edit made from an older copy is
-- refused instead of undoing sales. (quantity >= 0 is migration 1's CHECK: the last guard
-- against overselling.)
ALTER TABLE items ADD COLUMN price_minor BIGINT CHECK (price_minor >= 0);
ALTER TABLE items ADD COLUMN version BIGINT NOT NULL DEFAULT 1;

-- An order: who bought from whom, its state and when each state was reached. The names
-- are copies, so an order shows what it was whatever happens to the accounts' items.
-- The idempotency key is the buyer's: the same key from the same buyer is the same order.
CREATE TABLE orders (
    id              BIGSERIAL   PRIMARY KEY,
    buyer_id        BIGINT      NOT NULL REFERENCES users (id),
    buyer           TEXT        NOT NULL,
    seller_id       BIGINT      NOT NULL REFERENCES users (id),
    seller          TEXT        NOT NULL,
    state           TEXT        NOT NULL CHECK (state IN ('placed', 'handed_over', 'cancelled')),
    currency        TEXT        NOT NULL,
    total_minor     BIGINT      NOT NULL CHECK (total_minor >= 0),
    idempotency_key TEXT,
    placed_at       TIMESTAMPTZ NOT NULL,
    handed_over_at  TIMESTAMPTZ,
    cancelled_at    TIMESTAMPTZ,
    -- Who moved it last (handed it over or cancelled it).
    changed_by      BIGINT      REFERENCES users (id),
    UNIQUE (buyer_id, idempotency_key)
);
CREATE INDEX orders_by_buyer ON orders (buyer_id, id DESC);
CREATE INDEX orders_by_seller ON orders (seller_id, id DESC);
CREATE INDEX orders_waiting ON orders (seller_id) WHERE state = 'placed';

-- What an order holds: a copy of the item's name and price at the moment it was bought
-- (one line today; a basket later). item_id has no reference: the item may be deleted.
CREATE TABLE order_lines (
    order_id         BIGINT  NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line             INTEGER NOT NULL,
    item_id          BIGINT  NOT NULL,
    item_name        TEXT    NOT NULL,
    unit_price_minor BIGINT  NOT NULL CHECK (unit_price_minor >= 0),
    quantity         INTEGER NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, line)
);
CREATE INDEX order_lines_item ON order_lines (item_id);
