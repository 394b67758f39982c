//! Password hashing: argon2id at OWASP's parameters (19 MiB, 2 passes, 1 lane), never on
//! the async workers: every hash runs as a blocking task behind `Hasher`'s bound (about
//! one per core), so a storm of logins waits briefly and is then refused (503), instead of
//! taking an instance's threads and memory (each hash holds 19 MiB while it runs).

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

/// OWASP Password Storage Cheat Sheet: argon2id, m = 19 MiB, t = 2, p = 1.
pub const MEMORY_KIB: u32 = 19 * 1024;
pub const PASSES: u32 = 2;
pub const LANES: u32 = 1;

fn argon2() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, PASSES, LANES, None).expect("OWASP's argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A new PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) for `password`.
pub fn hash(password: &str) -> String {
    let salt = SaltString::generate(&mut rand::thread_rng());
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashes any password of bounded length")
        .to_string()
}

/// What checking a password against a stored hash found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub matches: bool,
    /// The hash was made with other (weaker or older) parameters: store a new one.
    pub needs_rehash: bool,
}

/// Check `password` against `stored`; a hash that cannot be read matches nothing.
pub fn verify(password: &str, stored: &str) -> Verified {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return Verified {
            matches: false,
            needs_rehash: false,
        };
    };
    // Verified with the parameters the hash names (argon2 reads them from the string).
    let matches = Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    Verified {
        matches,
        needs_rehash: matches && !is_current(&parsed),
    }
}

fn is_current(hash: &PasswordHash<'_>) -> bool {
    let Ok(params) = Params::try_from(hash) else {
        return false;
    };
    hash.algorithm.as_str() == "argon2id"
        && params.m_cost() == MEMORY_KIB
        && params.t_cost() == PASSES
        && params.p_cost() == LANES
}

/// The same work as checking a real user's password, for a name that has no user: an
/// unknown user and a wrong password take about the same time (no enumeration by timing).
pub fn verify_nobody(password: &str) {
    static DUMMY: LazyLock<String> = LazyLock::new(|| hash("no user has this password"));
    let _ = verify(password, &DUMMY);
}

/// Whether zxcvbn (Dropbox's estimator; its Rust port carries the lists it matches
/// against: the 30,000 most common passwords of the Xato/Burnett corpus, English words,
/// names, keyboard patterns) finds `password` guessable in under a million guesses
/// (score 0 or 1), with the username as one more word it knows.
pub fn guessable(password: &str, username: &str) -> bool {
    // zxcvbn's matching grows with the square of the length, and its estimates of long
    // keyboard walks overflow; past 64 characters a password is no common one anyway.
    let head: String = password.chars().take(64).collect();
    let inputs: Vec<&str> = [username].into_iter().filter(|u| !u.is_empty()).collect();
    // Its arithmetic is unchecked in release builds; should a debug build's checks trip,
    // a password too long to estimate is no common one either.
    let score = std::panic::catch_unwind(|| zxcvbn::zxcvbn(&head, &inputs).score());
    score.is_ok_and(|score| u8::from(score) < 2)
}

/// The bound on concurrent hashing, shared by everything in one process that hashes.
#[derive(Clone, Debug)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    wait: Duration,
}

/// All of the hashing slots stayed busy for longer than a request should wait.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("too many sign-ins at once")]
pub struct Busy;

impl Hasher {
    /// At most `concurrent` hashes at a time; a request waits at most `wait` for a slot.
    pub fn new(concurrent: usize, wait: Duration) -> Hasher {
        Hasher {
            permits: Arc::new(Semaphore::new(concurrent.max(1))),
            wait,
        }
    }

    /// One slot per core (what `std::thread::available_parallelism` says).
    pub fn per_core() -> Hasher {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Hasher::new(cores, Duration::from_secs(2))
    }

    /// Run `work` (which hashes) on a blocking thread once a slot is free.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let permit = tokio::time::timeout(self.wait, Arc::clone(&self.permits).acquire_owned())
            .await
            .map_err(|_| Busy)?
            .map_err(|_| Busy)?;
        let outcome = tokio::task::spawn_blocking(move || {
            let outcome = work();
            drop(permit);
            outcome
        })
        .await;
        outcome.map_err(|_| Busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_at_owasp_parameters_and_salted() {
        let a = hash("violet pelican");
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, hash("violet pelican"), "a salt of its own");
        assert_eq!(
            verify("violet pelican", &a),
            Verified {
                matches: true,
                needs_rehash: false
            }
        );
        assert!(!verify("violet pelicans", &a).matches);
        assert!(!verify("x", "not a hash").matches);
    }

    #[test]
    fn weaker_hashes_match_and_ask_to_be_upgraded() {
        let weak_params = Params::new(4096, 1, 1, None).unwrap();
        let weak = Argon2::new(Algorithm::Argon2id, Version::V0x13, weak_params);
        let salt = SaltString::generate(&mut rand::thread_rng());
        let stored = weak
            .hash_password(b"old password here", &salt)
            .unwrap()
            .to_string();
        let verified = verify("old password here", &stored);
        assert!(verified.matches && verified.needs_rehash);
        assert!(!verify("wrong", &stored).needs_rehash);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_hasher_refuses_quickly() {
        let hasher = Hasher::new(1, Duration::from_millis(50));
        let (started, has_started) = std::sync::mpsc::channel::<()>();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let busy = {
            let hasher = hasher.clone();
            tokio::spawn(async move {
                hasher
                    .run(move || {
                        started.send(()).unwrap();
                        released.recv().unwrap();
                    })
                    .await
            })
        };
        has_started.recv().unwrap();
        let refused = hasher.run(|| ()).await;
        assert!(refused.is_err(), "the one slot is taken");
        release.send(()).unwrap();
        assert!(busy.await.unwrap().is_ok());
        assert!(hasher.run(|| ()).await.is_ok(), "free again");
    }
}
