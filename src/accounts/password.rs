//! Password hashing: argon2id at OWASP's parameters (19 MiB, 2 passes, 1 lane), never on
//! the async workers: every hash runs on one of `Hasher`'s few threads (one per core), so
//! a storm of logins waits briefly and is then refused (503), instead of taking an
//! instance's threads and memory (each hash holds 19 MiB while it runs).

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::Semaphore;

/// OWASP Password Storage Cheat Sheet: argon2id, m = 19 MiB, t = 2, p = 1.
pub const MEMORY_KIB: u32 = 19 * 1024;
pub const PASSES: u32 = 2;
pub const LANES: u32 = 1;

fn current_params() -> Params {
    Params::new(MEMORY_KIB, PASSES, LANES, None).expect("OWASP's argon2 parameters")
}

/// The memory one hash works in (19 MiB of argon2 blocks), mapped from the kernel for that
/// hash and unmapped right after, so it goes back at once. A heap allocation of this size
/// would be kept by glibc after the first (its mmap threshold rises to it), once per thread
/// that ever hashed: an instance that had served one login stayed 19 MiB larger for good,
/// and one that had served a storm of them, hundreds of MiB (measured: 368 MiB).
struct HashMemory {
    blocks: std::ptr::NonNull<Block>,
    count: usize,
}

impl HashMemory {
    fn map(count: usize) -> Option<HashMemory> {
        let bytes = count.checked_mul(Block::SIZE)?;
        // SAFETY: a new private anonymous mapping, checked for failure below.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if address == libc::MAP_FAILED {
            return None;
        }
        Some(HashMemory {
            blocks: std::ptr::NonNull::new(address.cast())?,
            count,
        })
    }
}

impl AsMut<[Block]> for HashMemory {
    fn as_mut(&mut self) -> &mut [Block] {
        // SAFETY: the mapping holds `count` blocks, is page-aligned (more than a Block
        // needs), zero-filled (a valid Block: it is only words), and ours alone.
        unsafe { std::slice::from_raw_parts_mut(self.blocks.as_ptr(), self.count) }
    }
}

impl Drop for HashMemory {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `map` made, which nothing borrows any more.
        unsafe { libc::munmap(self.blocks.as_ptr().cast(), self.count * Block::SIZE) };
    }
}

/// argon2 of `password` and `salt` into `out`, in memory of its own.
fn compute(argon2: &Argon2<'_>, password: &[u8], salt: &[u8], out: &mut [u8]) -> bool {
    HashMemory::map(argon2.params().block_count()).is_some_and(|memory| {
        argon2
            .hash_password_into_with_memory(password, salt, out, memory)
            .is_ok()
    })
}

/// A new PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) for `password`.
pub fn hash(password: &str) -> String {
    let salt = SaltString::generate(&mut rand::thread_rng());
    let mut raw_salt = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut raw_salt).expect("a salt just made");
    let params = current_params();
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut out = [0u8; 32];
    assert!(
        compute(&argon2, password.as_bytes(), salt_bytes, &mut out),
        "argon2 hashes any password of bounded length"
    );
    PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).expect("parameters as a PHC string"),
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).expect("a 32-byte hash")),
    }
    .to_string()
}

/// What checking a password against a stored hash found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub matches: bool,
    /// The hash was made with other (weaker or older) parameters: store a new one.
    pub needs_rehash: bool,
}

/// Check `password` against `stored` (with the parameters it names); a hash that cannot
/// be read matches nothing.
pub fn verify(password: &str, stored: &str) -> Verified {
    let matches = PasswordHash::new(stored)
        .ok()
        .is_some_and(|parsed| recompute(password, &parsed) == parsed.hash);
    let needs_rehash = matches && PasswordHash::new(stored).is_ok_and(|p| !is_current(&p));
    Verified {
        matches,
        needs_rehash,
    }
}

/// The hash of `password` made as `parsed` was (its algorithm, version, parameters, salt).
fn recompute(password: &str, parsed: &PasswordHash<'_>) -> Option<Output> {
    let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
    let version = match parsed.version {
        Some(v) => Version::try_from(v).ok()?,
        None => Version::default(),
    };
    let params = Params::try_from(parsed).ok()?;
    let mut raw_salt = [0u8; 64];
    let salt = parsed.salt?.decode_b64(&mut raw_salt).ok()?;
    let mut out = vec![0u8; parsed.hash?.len()];
    let argon2 = Argon2::new(algorithm, version, params);
    compute(&argon2, password.as_bytes(), salt, &mut out).then(|| Output::new(&out).ok())?
}

fn is_current(hash: &PasswordHash<'_>) -> bool {
    let Ok(params) = Params::try_from(hash) else {
        return false;
    };
    hash.algorithm == argon2::ARGON2ID_IDENT
        && hash.version == Some(Version::V0x13.into())
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

/// The hidden subcommand (`shop password-strength`) that `guessable_apart` runs.
pub const STRENGTH_COMMAND: &str = "password-strength";

/// `guessable`, judged by a short-lived process of this same binary: zxcvbn builds its
/// lists (about 7 MiB of hash maps) on first use and keeps them for the life of the
/// process, so a serving instance that judged one sign-up's password stayed that much
/// larger for good. The child's start, the lists built and the process gone cost a few
/// milliseconds a new password, beside the hash's tens. Should the child not run, the
/// password is judged here (and the lists stay): a sign-up never fails for it.
pub fn guessable_apart(password: &str, username: &str) -> bool {
    match ask_a_child(password, username) {
        Ok(verdict) => verdict,
        Err(e) => {
            tracing::warn!(
                error = %e,
                "the password strength check could not run in a process of its own; judged here"
            );
            guessable(password, username)
        }
    }
}

fn ask_a_child(password: &str, username: &str) -> std::io::Result<bool> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    // The running binary itself, even when an upgrade has replaced the file since.
    let mut child = Command::new("/proc/self/exe")
        .arg(STRENGTH_COMMAND)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        // The password goes through a pipe, never on a command line.
        writeln!(stdin, "{username}")?;
        stdin.write_all(password.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    match output.stdout.as_slice() {
        b"guessable\n" => Ok(true),
        b"fine\n" => Ok(false),
        _ => Err(std::io::Error::other(format!(
            "`{STRENGTH_COMMAND}` {}",
            output.status
        ))),
    }
}

/// The child's side of `guessable_apart`: a username on the first line of standard input,
/// the password after it; the verdict on standard output.
pub fn answer_strength_question() -> std::io::Result<()> {
    use std::io::{Read as _, Write as _};
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    let (username, password) = input.split_once('\n').unwrap_or(("", &input));
    let verdict = if guessable(password, username) {
        "guessable"
    } else {
        "fine"
    };
    writeln!(std::io::stdout(), "{verdict}")
}

/// The hashing threads, shared by everything in one process that hashes: a fixed few
/// (one per core), not tokio's blocking pool (which grows to hundreds of threads under a
/// storm), so at most that many hashes hold their 19 MiB at once.
#[derive(Clone, Debug)]
pub struct Hasher {
    jobs: std::sync::mpsc::Sender<Job>,
    /// One per thread: a job is queued only when a thread is free for it.
    permits: Arc<Semaphore>,
    wait: Duration,
}

type Job = Box<dyn FnOnce() + Send>;

/// All of the hashing slots stayed busy for longer than a request should wait.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("too many sign-ins at once")]
pub struct Busy;

impl Hasher {
    /// `threads` hashing threads; a request waits at most `wait` for one to be free.
    pub fn new(threads: usize, wait: Duration) -> Hasher {
        let threads = threads.max(1);
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = Arc::new(std::sync::Mutex::new(queue));
        for n in 0..threads {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("shop-hash-{n}"))
                .spawn(move || loop {
                    let job = queue
                        .lock()
                        .map_err(drop)
                        .and_then(|q| q.recv().map_err(drop));
                    match job {
                        // A panic in one hash must not take the thread with it.
                        Ok(job) => {
                            drop(std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)))
                        }
                        Err(()) => return,
                    }
                })
                .expect("starting a hashing thread");
        }
        Hasher {
            jobs,
            permits: Arc::new(Semaphore::new(threads)),
            wait,
        }
    }

    /// One thread per core (what `std::thread::available_parallelism` says).
    pub fn per_core() -> Hasher {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Hasher::new(cores, Duration::from_secs(2))
    }

    /// Run `work` (which hashes) on a hashing thread once one is free.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let permit = tokio::time::timeout(self.wait, Arc::clone(&self.permits).acquire_owned())
            .await
            .map_err(|_| Busy)?
            .map_err(|_| Busy)?;
        let (done, outcome) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let result = work();
            drop(permit);
            let _ = done.send(result);
        });
        self.jobs.send(job).map_err(|_| Busy)?;
        outcome.await.map_err(|_| Busy)
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
    fn hashes_are_standard_phc_strings() {
        use argon2::password_hash::PasswordVerifier;
        let ours = hash("violet pelican");
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default()
            .verify_password(b"violet pelican", &parsed)
            .is_ok());
    }

    #[test]
    fn weaker_hashes_match_and_ask_to_be_upgraded() {
        use argon2::password_hash::PasswordHasher;
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
