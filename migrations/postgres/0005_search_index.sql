-- no-transaction
-- The search index: trigrams of an item's name and description, joined by a character no
-- name or description may contain (U+001F), so a search cannot match across the two.
-- CONCURRENTLY: on a big table the build takes a while, and the instances of the older
-- version keep reading and writing meanwhile. That needs a migration of its own, outside a
-- transaction; a build that was interrupted leaves an invalid index, which shop drops
-- before it migrates again (db/migrate.rs).
CREATE INDEX CONCURRENTLY items_search ON items
    USING gin ((name || chr(31) || description) gin_trgm_ops);
