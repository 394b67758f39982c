//! `shop user …` and `shop token …`: the accounts from the command line, for the person
//! who runs the shop (making the first admin, disabling a user, tokens for scripts).
//! Passwords come from standard input (one line), or from a prompt on a terminal. Each
//! change goes to the journal as an audit line, like the web's.

use std::io::{BufRead, IsTerminal};

use anyhow::{bail, Context};

use crate::accounts::{
    check_password, issue_token, password, sign_out_elsewhere, token_name, TokenLifetime, User,
    Username,
};
use crate::config::Settings;
use crate::db::Store;
use crate::ids::TokenId;

/// `shop user add NAME [--admin]`.
pub async fn add_user(settings: &Settings, name: &str, admin: bool) -> anyhow::Result<()> {
    let name = Username::parse(name).map_err(anyhow::Error::msg)?;
    let secret = read_password(&format!("Password for {}: ", name.as_str()))?;
    let hash = checked_hash(settings, &secret, name.as_str())?;
    let store = migrated_store(settings).await?;
    let Some(user) = store.create_user(&name, &hash, admin).await? else {
        bail!(
            "a user named {} exists already (names are compared without case)",
            name.as_str()
        );
    };
    tracing::info!(event = "admin_user_added", user = %user.username, admin, by = "cli", "user {} added from the command line{}", user.username, if admin { " as an admin" } else { "" });
    println!(
        "added {}{}",
        user.username,
        if admin { " (admin)" } else { "" }
    );
    store.close().await;
    Ok(())
}

/// `shop user list`.
pub async fn list_users(settings: &Settings) -> anyhow::Result<()> {
    let store = migrated_store(settings).await?;
    let users = store.list_users().await?;
    println!(
        "{:<32} {:<8} {:<9} created",
        "username", "admin", "disabled"
    );
    for record in &users {
        let user = &record.user;
        println!(
            "{:<32} {:<8} {:<9} {}",
            user.username,
            if user.is_admin { "yes" } else { "no" },
            if user.disabled { "yes" } else { "no" },
            record.created_at.format("%Y-%m-%d %H:%M UTC")
        );
    }
    store.close().await;
    Ok(())
}

/// `shop user disable NAME` (or `enable`): a disabled user's sessions end and tokens are
/// refused at once; their items stay.
pub async fn set_disabled(settings: &Settings, name: &str, disabled: bool) -> anyhow::Result<()> {
    let store = migrated_store(settings).await?;
    let user = existing(&store, name).await?;
    store.set_disabled(&user.key(), disabled).await?;
    if disabled {
        store.delete_other_sessions(user.id, None).await?;
    }
    let word = if disabled { "disabled" } else { "enabled" };
    tracing::info!(event = "admin_user_disabled", user = %user.username, disabled, by = "cli", "user {} {word} from the command line", user.username);
    println!("{} {word}", user.username);
    store.close().await;
    Ok(())
}

/// `shop user password NAME`: a new password; the user's sessions end and their API
/// tokens are revoked.
pub async fn set_password(settings: &Settings, name: &str) -> anyhow::Result<()> {
    let store = migrated_store(settings).await?;
    let user = existing(&store, name).await?;
    let secret = read_password(&format!("New password for {}: ", user.username))?;
    let hash = checked_hash(settings, &secret, &user.username)?;
    store.set_password_hash(user.id, &hash).await?;
    let ended = sign_out_elsewhere(&store, user.id, None).await?;
    tracing::info!(event = "admin_password_set", user = %user.username, sessions_ended = ended.sessions, tokens_revoked = ended.tokens, by = "cli", "password of {} set from the command line", user.username);
    println!(
        "password of {} changed; {} session(s) ended, {} API token(s) revoked",
        user.username, ended.sessions, ended.tokens
    );
    store.close().await;
    Ok(())
}

/// `shop token create USER --name NAME [--expires DAYS|never]`: prints the token (only
/// this once).
pub async fn create_token(
    settings: &Settings,
    name: &str,
    token: &str,
    expires: Option<TokenLifetime>,
) -> anyhow::Result<()> {
    let token_name = token_name(token).map_err(anyhow::Error::msg)?;
    let store = migrated_store(settings).await?;
    let user = existing(&store, name).await?;
    let lifetime = expires.unwrap_or_else(|| settings.accounts.token_lifetime());
    let token = issue_token(&store, &user, &token_name, lifetime, "cli").await?;
    println!("{token}");
    store.close().await;
    Ok(())
}

/// `shop token list USER`.
pub async fn list_tokens(settings: &Settings, name: &str) -> anyhow::Result<()> {
    let store = migrated_store(settings).await?;
    let user = existing(&store, name).await?;
    let when = |at: chrono::DateTime<chrono::Utc>| at.format("%Y-%m-%d %H:%M UTC").to_string();
    println!(
        "{:<6} {:<32} {:<22} {:<22} expires",
        "id", "name", "created", "last used"
    );
    for token in store.list_tokens(user.id).await? {
        println!(
            "{:<6} {:<32} {:<22} {:<22} {}",
            token.id,
            token.name,
            when(token.created_at),
            token.last_used_at.map_or_else(|| "never".into(), when),
            token.expires_at.map_or_else(|| "never".into(), when)
        );
    }
    store.close().await;
    Ok(())
}

/// `shop token revoke USER ID`.
pub async fn revoke_token(settings: &Settings, name: &str, id: TokenId) -> anyhow::Result<()> {
    let store = migrated_store(settings).await?;
    let user = existing(&store, name).await?;
    if !store.revoke_token(user.id, id).await? {
        bail!(
            "{} has no token {id} (`shop token list {}`)",
            user.username,
            user.username
        );
    }
    tracing::info!(event = "token_revoked", user = %user.username, token_id = id.0, by = "cli", "API token {id} of {} revoked from the command line", user.username);
    println!("token {id} of {} revoked", user.username);
    store.close().await;
    Ok(())
}

/// The database, migrated: right after `apt install` no instance has started yet (socket
/// activation waits for the first request), and the first admin is made before then.
async fn migrated_store(settings: &Settings) -> anyhow::Result<Store> {
    let store = crate::app::reach_store(settings).await?;
    store.migrate().await.context("applying migrations")?;
    Ok(store)
}

async fn existing(store: &Store, name: &str) -> anyhow::Result<User> {
    let key = crate::accounts::login_key(name);
    store
        .find_user(&key)
        .await?
        .with_context(|| format!("there is no user named {name:?} (`shop user list`)"))
}

/// The password rules, then the hash (`accounts.min_password_chars` applies here too).
fn checked_hash(settings: &Settings, secret: &str, username: &str) -> anyhow::Result<String> {
    let min = settings.accounts.min_password_chars;
    check_password(secret, username, min).map_err(anyhow::Error::msg)?;
    Ok(password::hash(secret))
}

/// A password: asked twice on a terminal (not echoed), else the first line of stdin.
fn read_password(prompt: &str) -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(prompt).context("reading the password")?;
        let again = rpassword::prompt_password("Again: ").context("reading the password")?;
        if first != again {
            bail!("the two passwords differ");
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let secret = line.trim_end_matches(['\n', '\r']).to_owned();
    if secret.is_empty() {
        bail!("no password on standard input (give it as one line, e.g. from a file or a vault)");
    }
    Ok(secret)
}
