-- Items for sale. date_added is set by the server; the list is newest first.
CREATE TABLE items (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 256),
    quantity    INTEGER     NOT NULL CHECK (quantity BETWEEN 0 AND 1000000),
    description TEXT        NOT NULL CHECK (char_length(description) BETWEEN 1 AND 256),
    date_added  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The list page walks this index and stops after one page: O(page), not O(table).
CREATE INDEX items_newest_first ON items (date_added DESC, id DESC);
