//! The domain of accounts, beside the domain of items: who a user is, the rules a
//! username and a password must satisfy, and who may change which item — decided here,
//! in one function, for the pages and the API alike. Hashing lives in `password`, the
//! random secrets of sessions and API tokens in `secrets`.

pub mod password;
pub mod secrets;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::items::Item;

pub const MIN_USERNAME_CHARS: usize = 3;
pub const MAX_USERNAME_CHARS: usize = 32;
/// ASVS 5.0 (6.2.9): at least 64 characters must be allowed; more than this is no password.
pub const MAX_PASSWORD_CHARS: usize = 256;
pub const MAX_TOKEN_NAME_CHARS: usize = 64;

/// A user as the rest of shop sees them (never with the password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub is_admin: bool,
    pub disabled: bool,
}

/// A user as listed by `shop user list`.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub user: User,
    pub created_at: DateTime<Utc>,
}

/// A username as typed, checked: 3 to 32 letters (a–z, A–Z), digits, `.`, `-` or `_`,
/// starting with a letter or digit. Its `key` (lower case) is what must be unique.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Username, String> {
        let name = raw.trim();
        let chars = name.chars().count();
        if chars == 0 {
            return Err("Please enter a username.".into());
        }
        if !(MIN_USERNAME_CHARS..=MAX_USERNAME_CHARS).contains(&chars) {
            return Err(format!(
                "A username has {MIN_USERNAME_CHARS} to {MAX_USERNAME_CHARS} characters."
            ));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
        if !name.chars().all(allowed) || !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(
                "A username may have letters (a–z), digits, '.', '-' and '_', and starts with a letter or digit."
                    .into(),
            );
        }
        Ok(Username(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form compared for uniqueness and at login: case does not matter.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

/// The lower-case key of whatever was typed at login (no rules: an unknown name is just
/// unknown), bounded so a huge one cannot fill the failures table.
pub fn login_key(raw: &str) -> String {
    raw.trim()
        .chars()
        .take(MAX_USERNAME_CHARS * 2)
        .collect::<String>()
        .to_lowercase()
}

/// The password rules, as OWASP ASVS 5.0 puts them: a minimum length (`min_chars`, a
/// setting), at most `MAX_PASSWORD_CHARS`, no composition rules; not the username, and
/// not one of the passwords people use most (zxcvbn's lists: see `password::guessable`).
pub fn check_password(
    password: &str,
    username: &str,
    min_chars: usize,
) -> Result<(), &'static str> {
    let chars = password.chars().count();
    if chars < min_chars {
        return Err("too_short");
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err("too_long");
    }
    let lower = password.to_lowercase();
    if !username.is_empty() && lower.contains(&username.to_lowercase()) {
        return Err("has_username");
    }
    if password::guessable(password, username) {
        return Err("common");
    }
    Ok(())
}

/// What a refusal of `check_password` says to a person.
pub fn password_problem(code: &str, min_chars: usize) -> String {
    match code {
        "too_short" => format!("Use at least {min_chars} characters; a short sentence works well."),
        "too_long" => format!("Use at most {MAX_PASSWORD_CHARS} characters."),
        "has_username" => "The password must not contain your username.".into(),
        _ => "This password is one of the most common ones and would be guessed quickly; choose another (a few unrelated words work well).".into(),
    }
}

/// A token's name as typed: 1 to 64 printable characters.
pub fn token_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_TOKEN_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(format!(
            "Give the token a name of 1 to {MAX_TOKEN_NAME_CHARS} characters (what uses it)."
        ));
    }
    Ok(name.to_owned())
}

/// After `count` failed logins since the window began (the oldest at `oldest`): how many
/// seconds to wait before the next try, or `None` while under `limit`. The wait ends when
/// the oldest failure leaves the window, so nobody is locked out for good.
pub fn login_wait(
    count: i64,
    oldest: Option<DateTime<Utc>>,
    limit: i64,
    window: std::time::Duration,
    now: DateTime<Utc>,
) -> Option<u64> {
    if count < limit {
        return None;
    }
    let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    let until = oldest.map_or(now + window, |oldest| oldest + window);
    Some(until.signed_duration_since(now).num_seconds().max(1) as u64)
}

/// Who may change (edit or delete) an item: its seller, or an admin. Items made before
/// accounts existed have no seller: only an admin may change them. A disabled user may
/// change nothing (their sessions and tokens are refused before this is asked anyway).
pub fn may_change(user: &User, item: &Item) -> bool {
    !user.disabled && (user.is_admin || item.owner_id == Some(user.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64, is_admin: bool) -> User {
        User {
            id,
            username: format!("u{id}"),
            is_admin,
            disabled: false,
        }
    }

    fn item(owner_id: Option<i64>) -> Item {
        Item {
            id: 1,
            name: "n".into(),
            quantity: 1,
            description: "d".into(),
            date_added: Utc::now(),
            owner_id,
            seller: None,
        }
    }

    #[test]
    fn sellers_change_their_own_items_and_admins_any() {
        assert!(may_change(&user(1, false), &item(Some(1))));
        assert!(!may_change(&user(2, false), &item(Some(1))));
        assert!(!may_change(&user(2, false), &item(None)));
        assert!(may_change(&user(2, true), &item(None)));
        assert!(may_change(&user(2, true), &item(Some(1))));
        let mut disabled = user(1, true);
        disabled.disabled = true;
        assert!(!may_change(&disabled, &item(Some(1))));
    }

    #[test]
    fn logins_wait_only_past_the_limit_and_only_until_the_window_moves_on() {
        let now = Utc::now();
        let window = std::time::Duration::from_secs(900);
        assert_eq!(login_wait(9, Some(now), 10, window, now), None);
        let oldest = now - chrono::Duration::seconds(600);
        assert_eq!(login_wait(10, Some(oldest), 10, window, now), Some(300));
        assert_eq!(login_wait(50, Some(now), 10, window, now), Some(900));
    }

    #[test]
    fn usernames_are_checked_and_compared_without_case() {
        assert_eq!(Username::parse(" Alice ").unwrap().key(), "alice");
        assert!(Username::parse("al").is_err());
        assert!(Username::parse("a b c").is_err());
        assert!(Username::parse("_alice").is_err());
        assert!(Username::parse(&"a".repeat(33)).is_err());
        assert!(Username::parse("bob.smith-2_x").is_ok());
    }

    #[test]
    fn password_rules_follow_asvs() {
        let ok = "violet pelican under a lamp";
        assert_eq!(check_password(ok, "alice", 8), Ok(()));
        assert_eq!(check_password("short", "alice", 8), Err("too_short"));
        assert_eq!(
            check_password(&"x".repeat(257), "alice", 8),
            Err("too_long")
        );
        let mut seed = 7u32;
        let long: String = (0..256)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                char::from(b'a' + ((seed >> 16) % 26) as u8)
            })
            .collect();
        assert_eq!(check_password(&long, "alice", 8), Ok(()), "256 are allowed");
        assert_eq!(
            check_password(&"y7".repeat(20), "alice", 8),
            Err("common"),
            "a repeat"
        );
        assert_eq!(
            check_password("Alice-was-here-1", "alice", 8),
            Err("has_username")
        );
        for common in [
            "password",
            "password1",
            "12345678",
            "qwertyuiop",
            "iloveyou",
        ] {
            assert_eq!(
                check_password(common, "alice", 8),
                Err("common"),
                "{common}"
            );
        }
        // No composition rules: lower-case letters and spaces only is fine.
        assert_eq!(
            check_password("correct horse battery staple", "bob", 8),
            Ok(())
        );
    }
}
