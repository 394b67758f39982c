-- PostgreSQL's migration 7 adds triggers that tell running instances when a session, an
-- API token or a user changes (src/db/auth_cache.rs). SQLite instances read sessions and
-- tokens from the file on every request (a lookup in the process, no round trip), so they
-- need none; this keeps the two schemas' version numbers in step (backups name theirs).
SELECT 1;
