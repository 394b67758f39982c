-- PostgreSQL's migration 7 adds triggers that tell running instances when a session, an
-- API token or a user changes, and drops the foreign key of items.owner_id (whose row lock
-- on the seller made concurrent creates queue). SQLite instances read sessions and tokens
-- from the file on every request (a lookup in the process, no round trip) and its foreign
-- key check takes no lock of its own (a writer holds the whole file), so nothing changes
-- here; this keeps the two schemas' version numbers in step (backups name theirs).
SELECT 1;
