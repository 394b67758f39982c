-- The key a form or API client sent with the POST that created the item: a repeated POST
-- with the same key (a retry through nginx, a double click) finds this row instead of
-- inserting another. NULL for items created without a key.
ALTER TABLE items ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX items_idempotency_key ON items (idempotency_key);
