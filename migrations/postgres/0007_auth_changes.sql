-- Tell the running instances when a session, an API token or a user changes, so that
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

