//! The domain of accounts, beside the domain of items: who a user is, the rules a
//! username and a password must satisfy. Hashing lives in `password`, the random secrets
//! of sessions and API tokens in `secrets`, checking a login in `login`, issuing tokens
//! in `tokens` (the web and the command line call both), bounding guesses in `throttle`;
//! who may do what, in `crate::access`.

mod login;
pub mod password;
pub mod secrets;
pub mod throttle;
mod tokens;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::accounts::secrets::SessionHash;
use crate::db::{Store, StoreError};
use crate::ids::UserId;

pub use login::{authenticate, LoginError};
pub use tokens::{issue_token, token_name, TokenLifetime};

pub const MIN_USERNAME_CHARS: usize = 3;
pub const MAX_USERNAME_CHARS: usize = 32;
/// ASVS 5.0 (6.2.9): at least 64 characters must be allowed; more than this is no password.
pub const MAX_PASSWORD_CHARS: usize = 256;
pub const MAX_TOKEN_NAME_CHARS: usize = 64;

/// A user as the rest of shop sees them (never with the password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub is_admin: bool,
    pub disabled: bool,
}

impl User {
    /// Their name's key, as `Username::key` makes it: what logins and guesses are counted by.
    pub fn key(&self) -> String {
        self.username.to_ascii_lowercase()
    }
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

/// What signing out everywhere else ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedOut {
    pub sessions: u64,
    pub tokens: u64,
}

/// End every session of `user` but `keep` (`None`: all) and revoke all their API tokens:
/// what a password change (web or command line) and "sign out everywhere else" do, so a
/// stolen session or password leaves nothing behind that still works. (A logout ends its
/// own session only: the tokens a person made for their scripts keep working.)
pub async fn sign_out_elsewhere(
    store: &Store,
    user: UserId,
    keep: Option<&SessionHash>,
) -> Result<SignedOut, StoreError> {
    let sessions = store.delete_other_sessions(user, keep).await?;
    let tokens = store.delete_tokens(user).await?;
    Ok(SignedOut { sessions, tokens })
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

/// Why a new password is refused; its `Display` is what the person is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordProblem {
    /// Shorter than the shop's minimum (the setting `accounts.min_password_chars`).
    TooShort {
        min_chars: usize,
    },
    TooLong,
    HasUsername,
    /// One of the passwords people use most, or as easy to guess.
    Common,
}

impl std::fmt::Display for PasswordProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PasswordProblem::TooShort { min_chars } => write!(
                f,
                "Use at least {min_chars} characters; a short sentence works well."
            ),
            PasswordProblem::TooLong => {
                write!(f, "Use at most {MAX_PASSWORD_CHARS} characters.")
            }
            PasswordProblem::HasUsername => {
                f.write_str("The password must not contain your username.")
            }
            PasswordProblem::Common => f.write_str(
                "This password is one of the most common ones and would be guessed quickly; \
                 choose another (a few unrelated words work well).",
            ),
        }
    }
}

impl std::error::Error for PasswordProblem {}

/// The password rules, as OWASP ASVS 5.0 puts them: a minimum length (`min_chars`, a
/// setting), at most `MAX_PASSWORD_CHARS`, no composition rules; not the username, and
/// not one of the passwords people use most (zxcvbn's lists: see `password::guessable`).
pub fn check_password(
    password: &str,
    username: &str,
    min_chars: usize,
) -> Result<(), PasswordProblem> {
    check_password_by(password, username, min_chars, password::guessable)
}

/// `check_password` as a serving instance runs it: zxcvbn in a process of its own
/// (`password::guessable_apart`), so its lists do not stay in the instance's memory.
pub fn check_password_apart(
    password: &str,
    username: &str,
    min_chars: usize,
) -> Result<(), PasswordProblem> {
    check_password_by(password, username, min_chars, password::guessable_apart)
}

fn check_password_by(
    password: &str,
    username: &str,
    min_chars: usize,
    guessable: fn(&str, &str) -> bool,
) -> Result<(), PasswordProblem> {
    let chars = password.chars().count();
    if chars < min_chars {
        return Err(PasswordProblem::TooShort { min_chars });
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(PasswordProblem::TooLong);
    }
    let lower = password.to_lowercase();
    if !username.is_empty() && lower.contains(&username.to_lowercase()) {
        return Err(PasswordProblem::HasUsername);
    }
    if guessable(password, username) {
        return Err(PasswordProblem::Common);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            check_password("short", "alice", 8),
            Err(PasswordProblem::TooShort { min_chars: 8 })
        );
        assert_eq!(
            check_password(&"x".repeat(257), "alice", 8),
            Err(PasswordProblem::TooLong)
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
            Err(PasswordProblem::Common),
            "a repeat"
        );
        assert_eq!(
            check_password("Alice-was-here-1", "alice", 8),
            Err(PasswordProblem::HasUsername)
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
                Err(PasswordProblem::Common),
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
