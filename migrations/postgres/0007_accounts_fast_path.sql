-- What keeps a signed-in request as cheap as an anonymous one (docs/benchmarks.md).
--
-- 1. Tell the running instances when a session, an API token or a user changes, so that
-- what they remember of them is forgotten at once (LISTEN shop_auth; src/db/auth_cache.rs):
-- a logout, a revoked token, a disabled user or a password change takes effect on every
-- instance of every host within the notification's delivery. Only adds: an older shop
-- ignores the notifications, and its own changes send them too.
--
-- The payload names what changed: 's' and a session's hash, 't' and a token's hash,
-- 'u' and a user's id, or '*' (a whole table emptied: forget everything).
CREATE FUNCTION shop_auth_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('shop_auth', '*');
    ELSIF TG_TABLE_NAME = 'sessions' THEN
        PERFORM pg_notify('shop_auth', 's' || OLD.id_hash);
    ELSIF TG_TABLE_NAME = 'api_tokens' THEN
        PERFORM pg_notify('shop_auth', 't' || OLD.token_hash);
    ELSE
        PERFORM pg_notify('shop_auth', 'u' || OLD.id);
    END IF;
    RETURN NULL;
END
$$;

-- Any change: a session ends or its last visit is written (every few minutes), a token
-- is revoked or its last use written (hourly), a user is disabled, made admin or given a
-- new password. What is remembered is then read again on its next use.
CREATE TRIGGER sessions_changed AFTER UPDATE OR DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION shop_auth_changed();
CREATE TRIGGER api_tokens_changed AFTER UPDATE OR DELETE ON api_tokens
    FOR EACH ROW EXECUTE FUNCTION shop_auth_changed();
CREATE TRIGGER users_changed AFTER UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION shop_auth_changed();
CREATE TRIGGER sessions_emptied AFTER TRUNCATE ON sessions
    FOR EACH STATEMENT EXECUTE FUNCTION shop_auth_changed();
CREATE TRIGGER api_tokens_emptied AFTER TRUNCATE ON api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION shop_auth_changed();
CREATE TRIGGER users_emptied AFTER TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION shop_auth_changed();

-- 2. No foreign key from items.owner_id to users. Its check locks the seller's users row
-- (FOR KEY SHARE) in every insert: a seller's concurrent creates queue on that one row
-- and PostgreSQL builds a multixact for each, which cost a fifth of the insert rate
-- (pgbench, 32 clients: 18,000 → 14,300 inserts/s). shop never deletes a user (it
-- disables them) and a restore writes users and items together, so the key guarded only
-- against hand-written SQL; an item whose seller is gone shows none, and only an admin
-- may change it, as for items made before accounts.
ALTER TABLE items DROP CONSTRAINT IF EXISTS items_owner_id_fkey;

-- 3. The seller's name kept with the item, as the list shows it: reading it from users for
-- every row cost a third of a 1,000-row page's time in the database (pgbench at 1,000,000
-- items: 4,400 → 2,950 pages/s). A username never changes, so the copy never goes stale;
-- owner_id stays the one that decides who may change the item.
ALTER TABLE items ADD COLUMN seller TEXT;
UPDATE items SET seller = (SELECT username FROM users WHERE users.id = items.owner_id)
    WHERE owner_id IS NOT NULL;
