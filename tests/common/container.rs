//! A real systemd host for tests: a Debian root file system made once with `debootstrap`
//! (cached outside the clone, under /var/tmp, keyed by what built it), booted as a throwaway
//! overlay copy with `systemd-nspawn` (systemd as PID 1, a private network), driven with
//! `nsenter`, and powered off by the test. Debian 12 on amd64 is the default host; the same
//! harness boots Debian 12 on arm64 (the Raspberry Pi's architecture, under qemu-user) and
//! Debian 13. The package and Ansible tests use it too.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A distribution release and a CPU architecture to boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Platform {
    /// Debian's suite name.
    pub suite: &'static str,
    /// dpkg's architecture name.
    pub arch: &'static str,
}

impl Platform {
    /// The default test host: Debian 12 on this machine's architecture.
    pub const BOOKWORM_AMD64: Platform = Platform {
        suite: "bookworm",
        arch: "amd64",
    };
    /// The Raspberry Pi's architecture, run under qemu-user (binfmt_misc).
    pub const BOOKWORM_ARM64: Platform = Platform {
        suite: "bookworm",
        arch: "arm64",
    };
    /// A newer release (PostgreSQL 17, systemd 257, nginx 1.26), like Ubuntu 24.04.
    pub const TRIXIE_AMD64: Platform = Platform {
        suite: "trixie",
        arch: "amd64",
    };

    fn emulated(self) -> bool {
        self.arch != host_arch()
    }
}

/// This machine's dpkg architecture.
fn host_arch() -> &'static str {
    if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "amd64"
    }
}

/// A Debian root file system with systemd and the extra packages asked for.
pub struct Image {
    pub rootfs: PathBuf,
}

/// What every image has: systemd as init, and what user creation and Ansible need.
const BASE_PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "passwd",
    "adduser",
    "iproute2",
    "python3",
];

/// What the shop tests need on the host, so that one image serves them all: the
/// package's dependencies and recommendation (the container has no route to a mirror).
const SHOP_HOST_PACKAGES: &[&str] = &["libsqlite3-0", "nginx"];

/// Bump when the steps below change, so that cached images are built again.
const IMAGE_RECIPE: &str = "4";

/// Units of a minimal Debian that load credentials, which qemu-user cannot do
/// (243/CREDENTIALS): under emulation they get an empty `LoadCredential=`.
const CREDENTIAL_UNITS: &[&str] = &[
    "systemd-sysusers",
    "systemd-tmpfiles-setup",
    "systemd-tmpfiles-setup-dev",
    "systemd-tmpfiles-setup-dev-early",
    "systemd-sysctl",
    "procps",
    "systemd-firstboot",
    "systemd-tmpfiles-clean",
];

/// What an emulated host's units must do without, and only there: qemu-user is itself
/// multi-threaded, so the kernel refuses it a user namespace (the `PrivateUsers=yes` of
/// shop's instances and backup service fails with 217/USER), and it cannot pass credentials. On a real arm64 machine (a Pi)
/// the units run unchanged.
fn emulation_dropins() -> Vec<(&'static str, &'static str)> {
    let mut dropins: Vec<(&str, &str)> = CREDENTIAL_UNITS
        .iter()
        .map(|unit| {
            (
                *unit,
                "# qemu-user cannot pass credentials (243/CREDENTIALS)\n[Service]\nLoadCredential=\n",
            )
        })
        .collect();
    for unit in ["shop@", "shop-backup"] {
        dropins.push((
            unit,
            "# qemu-user cannot enter a user namespace (217/USER)\n[Service]\nPrivateUsers=no\n",
        ));
    }
    dropins
}

/// Where images are kept between runs: outside the clone, since CI clones afresh.
fn image_store() -> PathBuf {
    std::env::var_os("SHOP_TEST_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/shop-test-images"))
}

impl Image {
    /// The host every shop container test boots.
    pub fn shop_host() -> Image {
        Image::shop_host_on(Platform::BOOKWORM_AMD64)
    }

    /// The shop test host on another platform.
    pub fn shop_host_on(platform: Platform) -> Image {
        Image::build(platform, SHOP_HOST_PACKAGES)
    }

    /// The image with `extra` Debian packages baked in; built on first use (~1 min, ~3 min
    /// for arm64 under emulation) and reused by later runs (the directory name says what
    /// built it).
    pub fn build(platform: Platform, extra: &[&str]) -> Image {
        let mut packages: Vec<&str> = BASE_PACKAGES.iter().chain(extra).copied().collect();
        packages.sort_unstable();
        packages.dedup();
        let include = packages.join(",");
        let recipe = format!(
            "{IMAGE_RECIPE} {} {} {include}",
            platform.suite, platform.arch
        );
        let key = format!(
            "{}-{}-{:016x}",
            platform.suite,
            platform.arch,
            fnv1a(recipe.as_bytes())
        );
        let root = image_store();
        std::fs::create_dir_all(&root).unwrap();
        let rootfs = root.join(&key);
        let stamp = root.join(format!("{key}.done"));
        let lock = std::fs::File::create(root.join(format!("{key}.lock"))).unwrap();
        // SAFETY: flock on a file we hold open; serialises builds between test processes.
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
        if !stamp.exists() {
            let _ = std::fs::remove_dir_all(&rootfs);
            let mirror = debian_mirror();
            let started = Instant::now();
            eprintln!("building the test image {key} ({include}) from {mirror} …");
            let out = Command::new("debootstrap")
                .args([
                    &format!("--arch={}", platform.arch),
                    "--variant=minbase",
                    &format!("--include={include}"),
                    platform.suite,
                ])
                .arg(&rootfs)
                .arg(&mirror)
                .output()
                .expect("run debootstrap (apt-get install debootstrap)");
            assert!(
                out.status.success(),
                "debootstrap failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            // A machine id is made at first boot of each copy; units' logs go to the journal.
            let _ = std::fs::remove_file(rootfs.join("etc/machine-id"));
            std::fs::write(rootfs.join("etc/machine-id"), "").unwrap();
            if platform.emulated() {
                for (unit, setting) in emulation_dropins() {
                    let dir = rootfs.join(format!("etc/systemd/system/{unit}.service.d"));
                    std::fs::create_dir_all(&dir).unwrap();
                    std::fs::write(dir.join("qemu-user.conf"), setting).unwrap();
                }
            }
            std::fs::write(&stamp, &recipe).unwrap();
            eprintln!(
                "built the test image {key} in {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
        Image { rootfs }
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

/// The Debian archive this host's apt uses (found by its bookworm suites, never written
/// down anywhere); it carries arm64 and Debian 13 (trixie) too.
pub fn debian_mirror() -> String {
    let mut texts = Vec::new();
    for dir in ["/etc/apt/sources.list.d"] {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                texts.push(std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
    }
    texts.push(std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default());
    for text in &texts {
        // deb822: a stanza whose Suites has bookworm itself.
        for stanza in text.split("\n\n") {
            let field = |name: &str| {
                stanza
                    .lines()
                    .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
            };
            if let (Some(uris), Some(suites)) = (field("URIs:"), field("Suites:")) {
                if suites.split_whitespace().any(|s| s == "bookworm") {
                    return uris.split_whitespace().next().unwrap().to_owned();
                }
            }
        }
        // one-line style: deb [options] URI bookworm components
        for line in text.lines() {
            let words: Vec<&str> = line
                .split_whitespace()
                .filter(|w| !w.starts_with('[') && !w.ends_with(']'))
                .collect();
            if words.len() >= 3 && words[0] == "deb" && words[2] == "bookworm" {
                return words[1].to_owned();
            }
        }
    }
    panic!("no bookworm mirror found in this host's apt sources")
}

/// A booted container, powered off and cleaned up when dropped.
pub struct Container {
    pub name: String,
    nspawn: Child,
    pub pid1: u32,
    pub root: PathBuf,
    dir: tempfile::TempDir,
    /// systemd-nspawn's network options, to boot it again the same way.
    network: Vec<String>,
}

impl Container {
    /// Boot a throwaway copy of `image`, with a network of its own (only its loopback),
    /// and wait until systemd says it is up.
    pub fn boot(image: &Image, name: &str) -> Container {
        Container::boot_in(image, name, None)
    }

    /// Boot a throwaway copy of `image` in the network namespace at `netns` (one a test
    /// network made, see `network.rs`), or in a network of its own when `None`.
    pub fn boot_in(image: &Image, name: &str, netns: Option<&Path>) -> Container {
        let dir = tempfile::Builder::new()
            .prefix("shop-host-")
            .tempdir()
            .unwrap();
        let (upper, work, root) = (
            dir.path().join("upper"),
            dir.path().join("work"),
            dir.path().join("root"),
        );
        for d in [&upper, &work, &root] {
            std::fs::create_dir_all(d).unwrap();
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            image.rootfs.display(),
            upper.display(),
            work.display()
        );
        run_ok(
            Command::new("mount")
                .args(["-t", "overlay", "overlay", "-o", &options])
                .arg(&root),
        );
        let name = format!("{name}-{}", std::process::id());
        // In a namespace of the test's, the container manages its own network too (its
        // firewall): nspawn keeps CAP_NET_ADMIN only for --private-network by itself.
        let network = match netns {
            Some(path) => vec![
                format!("--network-namespace-path={}", path.display()),
                "--capability=CAP_NET_ADMIN".to_owned(),
            ],
            None => vec!["--private-network".to_owned()],
        };
        let nspawn = start_nspawn(&name, &root, &network, dir.path());
        let mut container = Container {
            name,
            pid1: 0,
            nspawn,
            root,
            dir,
            network,
        };
        container.pid1 = container.wait_for_pid1();
        container.wait_until_running();
        container
    }

    /// Cut the power: every process dies at once (SIGKILL to the container's PID 1), with
    /// no shutdown; what the disk holds stays. Unplug its network first (`TestNetwork::
    /// unplug`), or the kernel's resets tell its peers at once.
    pub fn power_cut(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.pid1.to_string()])
            .status();
        let _ = self.nspawn.wait();
    }

    /// Boot it again, from the same disk (after `power_cut` or `power_off`).
    pub fn power_on(&mut self) {
        self.nspawn = start_nspawn(&self.name, &self.root, &self.network, self.dir.path());
        self.pid1 = self.wait_for_pid1();
        self.wait_until_running();
    }

    fn wait_for_pid1(&mut self) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.nspawn.try_wait().unwrap() {
                panic!("systemd-nspawn exited ({status}):\n{}", self.console());
            }
            let out = Command::new("pgrep")
                .args(["-P", &self.nspawn.id().to_string()])
                .output()
                .unwrap();
            // nspawn's children are first copies of itself (one of them exits once it has
            // made the container); PID 1 is the child that has become the container's init.
            let init = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|pid| pid.parse::<u32>().ok())
                .find(|pid| {
                    let comm =
                        std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                    matches!(comm.trim(), "systemd" | "init")
                });
            if let Some(pid) = init {
                return pid;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the container's PID 1 did not appear:\n{}", self.console());
    }

    fn wait_until_running(&self) {
        let mut state = String::new();
        let booted = super::poll_until(Duration::from_secs(60), || {
            let out = self.exec(&["systemctl", "is-system-running"]);
            state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            state == "running" || state == "degraded"
        });
        assert!(
            booted,
            "the container did not boot ({state}):\n{}",
            self.console()
        );
    }

    pub fn console(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("console.log")).unwrap_or_default()
    }

    /// Run a command inside the container (all its namespaces).
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.pid1.to_string(), "-a", "--"])
            .args(args)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LANG", "C.UTF-8")
            .output()
            .unwrap()
    }

    /// Run a command inside and insist that it succeeds; its standard output.
    pub fn sh(&self, script: &str) -> String {
        let out = self.exec(&["sh", "-c", script]);
        assert!(
            out.status.success(),
            "in the container: {script}\nstatus: {}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The container's network, to run host programs in (curl, load loops, ansible).
    pub fn network(&self) -> Netns {
        Netns::at(format!("/proc/{}/ns/net", self.pid1))
    }

    /// Run a host shell script inside the container's network only; see `Netns::sh`.
    pub fn net_sh(&self, script: &str) -> String {
        self.network().sh(script)
    }

    /// Copy a host file into the container (through the overlay, before or after boot).
    pub fn copy_in(&self, host: &Path, inside: &str, mode: u32) {
        let target = self.root.join(inside.trim_start_matches('/'));
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(host, &target)
            .unwrap_or_else(|e| panic!("copy {} to {inside}: {e}", host.display()));
        std::fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .unwrap();
    }

    pub fn write_file(&self, inside: &str, contents: &str) {
        let target = self.root.join(inside.trim_start_matches('/'));
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, contents).unwrap();
    }

    /// GET a URL from inside the container's network; (status, body).
    pub fn http_get(&self, url: &str) -> (u16, String) {
        self.network().http_get(url)
    }
}

/// A network namespace to run this machine's programs in (curl, psql, load loops): a
/// container's, or one of a test network's. Every curl run here gets `curl_options`
/// (a CA certificate to trust, a name to resolve).
#[derive(Debug, Clone)]
pub struct Netns {
    path: PathBuf,
    curl_options: Vec<String>,
}

impl Netns {
    pub fn at(path: impl Into<PathBuf>) -> Netns {
        Netns {
            path: path.into(),
            curl_options: Vec::new(),
        }
    }

    /// The same namespace, with `options` added to every curl.
    pub fn with_curl_options(mut self, options: &[&str]) -> Netns {
        self.curl_options
            .extend(options.iter().map(|o| (*o).to_owned()));
        self
    }

    /// Run a program of this machine's in the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net={}", self.path.display()))
            .args(["--", program]);
        command
    }

    /// The curl options as shell words.
    pub fn curl_words(&self) -> String {
        self.curl_options
            .iter()
            .map(|o| format!("'{}'", o.replace('\'', r"'\''")))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Run a bash script here (in a temporary directory of this machine's, with curl
    /// given `curl_options`); insist that it succeeds; its standard output.
    pub fn sh(&self, script: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let out = self
            .command("bash")
            .args([
                "-c",
                &format!(
                    "curl() {{ command curl {} \"$@\"; }}\n{script}",
                    self.curl_words()
                ),
            ])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "in {}: {script}\nstdout: {}\nstderr: {}",
            self.path.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// GET a URL from here; (status, body).
    pub fn http_get(&self, url: &str) -> (u16, String) {
        let out = self
            .command("curl")
            .args(&self.curl_options)
            .args(["-s", "-m", "20", "-o", "-", "-w", "\n%{http_code}", url])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (status.trim().parse().unwrap_or(0), body.to_owned())
    }
}

/// A bounded loop of GETs running inside a container's network while a test restarts or
/// upgrades something: one new connection per request, each allowed 10 s.
pub struct RequestLoop {
    child: std::process::Child,
    stop_file: tempfile::TempPath,
}

/// One request of a loop: when it started (Unix time, s), its status (0: no answer) and
/// how long it took (s).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub started: f64,
    pub status: u16,
    pub seconds: f64,
    pub url: String,
}

/// Everything a loop asked and got.
#[derive(Debug, Clone, Default)]
pub struct Answers(pub Vec<Answer>);

impl Answers {
    /// How many got 200.
    pub fn ok(&self) -> usize {
        self.0.iter().filter(|a| a.status == 200).count()
    }

    /// Those that did not get 200, a line each.
    pub fn failures(&self) -> Vec<String> {
        self.0
            .iter()
            .filter(|a| a.status != 200)
            .map(|a| format!("{} → {} in {:.3} s", a.url, a.status, a.seconds))
            .collect()
    }

    /// Insist that every request got 200 and that at least `at_least` ran, i.e. the load
    /// covered `what`; how many got 200.
    pub fn assert_all_ok(&self, what: &str, at_least: usize) -> usize {
        let (ok, failures) = (self.ok(), self.failures());
        assert!(
            failures.is_empty(),
            "failed requests during {what}: {failures:#?}"
        );
        assert!(
            ok >= at_least,
            "the load ran through {what} ({ok} requests)"
        );
        ok
    }

    /// Add another loop's answers.
    pub fn merge(mut self, other: Answers) -> Answers {
        self.0.extend(other.0);
        self
    }
}

impl RequestLoop {
    /// Wait for the loop to end; what it got.
    pub fn finish(self) -> Answers {
        let out = self.child.wait_with_output().unwrap();
        let answers = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                Some(Answer {
                    started: fields.next()?.parse().ok()?,
                    status: fields.next()?.parse().ok()?,
                    seconds: fields.next()?.parse().ok()?,
                    url: fields.next()?.to_owned(),
                })
            })
            .collect();
        Answers(answers)
    }

    /// End the loop after the request under way (for loops that must cover a step of
    /// unknown length, such as an upgrade under emulation), then as `finish`.
    pub fn stop(self) -> Answers {
        std::fs::write(&self.stop_file, "stop").unwrap();
        self.finish()
    }
}

/// Now, as Unix time in seconds (the clock the loops' `started` uses).
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

impl Container {
    /// A request loop in the container's network; see `Netns::start_request_loop`.
    pub fn start_request_loop(&self, urls: &[&str], requests: u32, pause_ms: u32) -> RequestLoop {
        self.network().start_request_loop(urls, requests, pause_ms)
    }
}

impl Netns {
    /// Start at most `requests` GETs, to `urls` in turn, `pause_ms` apart.
    pub fn start_request_loop(&self, urls: &[&str], requests: u32, pause_ms: u32) -> RequestLoop {
        let stop_file = tempfile::NamedTempFile::new().unwrap().into_temp_path();
        std::fs::remove_file(&stop_file).unwrap();
        let script = format!(
            r#"urls=({urls})
            for i in $(seq 1 {requests}); do
              [ -e '{stop}' ] && break
              url=${{urls[$((i % ${{#urls[@]}}))]}}
              started=$EPOCHREALTIME
              answer=$(curl {curl} -s -o /dev/null -m 10 -w '%{{http_code}} %{{time_total}}' "$url")
              echo "$started $answer $url"
              sleep {pause}
            done"#,
            urls = urls.join(" "),
            stop = stop_file.display(),
            pause = f64::from(pause_ms) / 1000.0,
            curl = self.curl_words(),
        );
        let child = self
            .command("bash")
            .args(["-c", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        RequestLoop { child, stop_file }
    }
}

/// A way out for apt inside a container: a listener on 127.0.0.1:3142 inside the
/// container's network namespace, relaying each connection to the host's Debian mirror.
/// apt inside uses it as its HTTP proxy (so requests carry the mirror's own host name).
pub struct MirrorRelay {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for MirrorRelay {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Container {
    pub fn relay_apt_to_mirror(&self) -> MirrorRelay {
        use std::net::{TcpListener, TcpStream, ToSocketAddrs};
        use std::sync::atomic::{AtomicBool, Ordering};
        let mirror = debian_mirror();
        let authority = mirror
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let upstream = if authority.contains(':') {
            authority.clone()
        } else {
            format!("{authority}:80")
        };
        let upstream: Vec<std::net::SocketAddr> = upstream
            .to_socket_addrs()
            .expect("resolve the mirror")
            .collect();
        // Bind inside the container's network namespace, from a thread of its own (a
        // namespace is per thread); the socket stays there when the thread ends.
        let netns = std::fs::File::open(format!("/proc/{}/ns/net", self.pid1)).unwrap();
        let listener = std::thread::spawn(move || {
            // SAFETY: setns on this short-lived thread only.
            let rc =
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&netns), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            TcpListener::bind("127.0.0.1:3142").expect("bind the relay in the container")
        })
        .join()
        .unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((inside, _)) => {
                        let upstream = upstream.clone();
                        std::thread::spawn(move || {
                            let _ = inside.set_nonblocking(false);
                            let Ok(outside) =
                                TcpStream::connect_timeout(&upstream[0], Duration::from_secs(10))
                            else {
                                return;
                            };
                            let (mut a, mut b) =
                                (inside.try_clone().unwrap(), outside.try_clone().unwrap());
                            let (mut inside, mut outside) = (inside, outside);
                            let up = std::thread::spawn(move || {
                                let _ = std::io::copy(&mut a, &mut outside);
                                let _ = outside.shutdown(std::net::Shutdown::Write);
                            });
                            let _ = std::io::copy(&mut b, &mut inside);
                            let _ = inside.shutdown(std::net::Shutdown::Write);
                            let _ = up.join();
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        self.write_file(
            "/etc/apt/apt.conf.d/99shop-test-relay",
            "Acquire::http::Proxy \"http://127.0.0.1:3142/\";\n",
        );
        MirrorRelay { stop }
    }
}

impl Container {
    /// `systemctl poweroff`, and wait until the container has stopped.
    pub fn power_off(&mut self) {
        let _ = self.exec(&["systemctl", "poweroff"]);
        super::poll_until(Duration::from_secs(30), || {
            self.nspawn.try_wait().ok().flatten().is_some()
        });
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.power_off();
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
        let _ = Command::new("umount").arg(&self.root).status();
        let _ = Command::new("sh")
            .args(["-c", "rmdir /run/systemd/nspawn/propagate/* /run/systemd/nspawn/incoming 2>/dev/null; true"])
            .status();
    }
}

/// systemd-nspawn booting `root`, its console appended to `dir/console.log`.
fn start_nspawn(name: &str, root: &Path, network: &[String], dir: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("console.log"))
        .unwrap();
    Command::new("systemd-nspawn")
        .args(["-b", "-D"])
        .arg(root)
        .args(["-M", name, "--register=no", "--keep-unit", "--console=pipe"])
        .args(network)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("run systemd-nspawn (apt-get install systemd-container)")
}

fn run_ok(command: &mut Command) {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
