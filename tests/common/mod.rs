//! Test helpers shared by every integration test: databases of both backends, the real
//! `shop` binary started on a free port and stopped by PID, and an HTTP client that
//! behaves like a browser filling in forms.
#![allow(dead_code)]

pub mod ansible;
pub mod container;
pub mod deb;
pub mod load;
pub mod nginx;
pub mod postgres;
pub mod prometheus;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use postgres::PgCluster;

pub const SECRET: &str = "test-secret-0123456789abcdef0123456789";

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// An empty database for one test; the SQLite file lives in a temp dir kept with it.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    pub name: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub fn new(backend: Backend) -> TestDb {
        let name = unique_name();
        match backend {
            Backend::Postgres => TestDb {
                url: PgCluster::shared().create_database(&name),
                backend,
                name,
                _dir: None,
            },
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                TestDb {
                    url: format!("sqlite:{}", dir.path().join("shop.db").display()),
                    backend,
                    name,
                    _dir: Some(dir),
                }
            }
        }
    }

    /// Run SQL against this database and return psql/sqlite3-style output (Postgres only).
    pub fn sql(&self, sql: &str) -> String {
        match self.backend {
            Backend::Postgres => PgCluster::shared().psql_in(&self.name, sql),
            Backend::Sqlite => panic!("sql() is for PostgreSQL test databases"),
        }
    }
}

fn unique_name() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "shop_test_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// The `shop` binary under test: this build's, or the one SHOP_TEST_BINARY names (tests/run
/// points it at the arm64 build, which the kernel runs through qemu-user's binfmt_misc entry).
pub fn shop_binary() -> PathBuf {
    match std::env::var_os("SHOP_TEST_BINARY") {
        Some(path) => std::fs::canonicalize(&path)
            .unwrap_or_else(|e| panic!("SHOP_TEST_BINARY={}: {e}", Path::new(&path).display())),
        None => PathBuf::from(env!("CARGO_BIN_EXE_shop")),
    }
}

/// A `shop` command with a clean environment: no SHOP_* from outside, an empty config
/// file (so a host's /etc/shop/shop.toml never leaks in), run in a temp dir.
pub fn shop_command(dir: &std::path::Path) -> Command {
    let config = dir.join("shop.toml");
    if !config.exists() {
        std::fs::write(&config, "").unwrap();
    }
    let mut command = shop_command_without_config(dir);
    command.arg("--config").arg(config);
    command
}

/// Like `shop_command`, but the caller passes `--config` (or relies on the default path).
pub fn shop_command_without_config(dir: &std::path::Path) -> Command {
    let mut command = Command::new(shop_binary());
    clean_environment(&mut command);
    command.current_dir(dir);
    command
}

/// Keep the test process's own SHOP_*, logging and systemd variables away from shop.
fn clean_environment(command: &mut Command) {
    for (key, _) in std::env::vars() {
        let ours = key.starts_with("SHOP_") || key.starts_with("LISTEN_");
        if ours || key == "RUST_LOG" || key == "NOTIFY_SOCKET" {
            command.env_remove(key);
        }
    }
}

/// How a test starts shop.
#[derive(Debug, Clone, Copy)]
enum Launch {
    /// shop binds `server.listen` itself.
    Bind,
    /// `systemd-socket-activate` passes a socket and starts shop on the first connection.
    SocketActivate(u16),
    /// The test holds the listening socket (this fd) and passes it as fd 3.
    HeldSocket(i32),
}

/// A running `shop serve`, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Shop {
    child: Child,
    pub url: String,
    pub port: u16,
    logs: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Shop {
    /// Start `shop serve` on `database_url` with extra `SHOP_*` settings, and wait until it
    /// says where it serves.
    pub fn start(database_url: &str, settings: &[(&str, &str)]) -> Shop {
        Shop::try_start(database_url, settings)
            .unwrap_or_else(|logs| panic!("shop did not start:\n{logs}"))
    }

    pub fn try_start(database_url: &str, settings: &[(&str, &str)]) -> Result<Shop, String> {
        Shop::launch(database_url, settings, None)
    }

    /// Start `shop serve` under `systemd-socket-activate` on a free port: the socket is
    /// passed as fd 3 and shop starts on the first connection, which this makes.
    pub fn start_socket_activated(database_url: &str, settings: &[(&str, &str)]) -> Shop {
        let port = free_port();
        Shop::launch(database_url, settings, Some(port))
            .unwrap_or_else(|logs| panic!("shop did not start:\n{logs}"))
    }

    /// Start `shop serve` on a listening socket the test holds, passed as fd 3 the way
    /// systemd passes `shop@PORT.socket`: the socket outlives the process, so a restart
    /// refuses no connection (they wait in its backlog).
    pub fn start_on_held_socket(
        socket: &TcpListener,
        database_url: &str,
        settings: &[(&str, &str)],
    ) -> Shop {
        let fd = std::os::fd::AsRawFd::as_raw_fd(socket);
        Shop::launch_with(database_url, settings, Launch::HeldSocket(fd))
            .unwrap_or_else(|logs| panic!("shop did not start:\n{logs}"))
    }

    fn launch(
        database_url: &str,
        settings: &[(&str, &str)],
        activated_on: Option<u16>,
    ) -> Result<Shop, String> {
        let how = match activated_on {
            Some(port) => Launch::SocketActivate(port),
            None => Launch::Bind,
        };
        Shop::launch_with(database_url, settings, how)
    }

    fn launch_with(
        database_url: &str,
        settings: &[(&str, &str)],
        how: Launch,
    ) -> Result<Shop, String> {
        let dir = tempfile::tempdir().unwrap();
        let mut env: Vec<(String, String)> = vec![
            ("SHOP_SERVER__LISTEN".into(), "127.0.0.1:0".into()),
            ("SHOP_DATABASE__URL".into(), database_url.into()),
            ("SHOP_SECURITY__SECRET".into(), SECRET.into()),
            ("SHOP_LOG__LEVEL".into(), "info,sqlx=warn".into()),
        ];
        env.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let activated_on = match how {
            Launch::SocketActivate(port) => Some(port),
            _ => None,
        };
        let mut command = match how {
            Launch::Bind => {
                let mut command = shop_command(dir.path());
                command.arg("serve").envs(env);
                command
            }
            Launch::HeldSocket(fd) => {
                // sh's $$ is the PID shop keeps after exec: LISTEN_PID must name it.
                let shop = shop_command(dir.path());
                let mut command = Command::new("sh");
                clean_environment(&mut command);
                command
                    .arg("-c")
                    .arg("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\"")
                    .arg(shop.get_program())
                    .args(shop.get_args())
                    .arg("serve")
                    .envs(env)
                    .current_dir(dir.path());
                // SAFETY: only dup2 between fork and exec.
                unsafe {
                    std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                        if libc::dup2(fd, 3) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
                command
            }
            Launch::SocketActivate(port) => {
                let shop = shop_command(dir.path());
                let mut command = Command::new("systemd-socket-activate");
                clean_environment(&mut command);
                command.arg("-l").arg(format!("127.0.0.1:{port}"));
                for (key, value) in env {
                    command.arg("-E").arg(format!("{key}={value}"));
                }
                command
                    .arg(shop.get_program())
                    .args(shop.get_args())
                    .arg("serve")
                    .current_dir(dir.path());
                command
            }
        };
        command.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("start shop");
        let logs = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.split("shop is serving at ").nth(1) {
                    let _ = ready_tx.send(url.trim().trim_end_matches('/').to_owned());
                }
                let mut logs = sink.lock().unwrap();
                if logs.len() > 8 << 20 {
                    // A benchmark logs a lot: keep the most recent half.
                    let cut = logs.len() / 2;
                    let cut = logs[cut..].find('\n').map_or(cut, |i| cut + i + 1);
                    logs.drain(..cut);
                }
                logs.push_str(&line);
                logs.push('\n');
            }
        });
        if let Some(port) = activated_on {
            // The first connection makes systemd-socket-activate start shop.
            std::thread::spawn(move || {
                for _ in 0..100 {
                    if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                        use std::io::Write;
                        let _ = s.write_all(
                            b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                        );
                        let _ = std::io::Read::read_to_end(&mut s, &mut Vec::new());
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
        }
        match ready_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => {
                let port = url.rsplit(':').next().unwrap().parse().unwrap();
                Ok(Shop {
                    child,
                    url,
                    port,
                    logs,
                    _dir: dir,
                })
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                let logs = logs.lock().unwrap().clone();
                Err(logs)
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// `kill -9`: no chance to finish anything.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Send SIGTERM.
    pub fn terminate(&self) {
        // SAFETY: signals our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
    }

    /// Wait for the process to exit, at most `timeout`; its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Shop {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.terminate();
            if self.wait_exit(Duration::from_secs(10)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// An HTTP client that does not follow redirects, so tests see them.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// What a browser keeps between a form page and its submission.
#[derive(Debug, Clone)]
pub struct FormSession {
    pub cookie: String,
    pub token: String,
    /// The form's idempotency key (empty for forms without one, such as the edit form).
    pub idempotency_key: String,
}

/// GET a form page as a browser would: keep the CSRF cookie and read the form's token.
pub async fn open_form(client: &reqwest::Client, url: &str) -> FormSession {
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "GET {url}");
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("shop_csrf="))
        .map(|v| v.split(';').next().unwrap().to_owned())
        .expect("a shop_csrf cookie");
    let html = response.text().await.unwrap();
    let idempotency_key = if html.contains("name=\"idempotency_key\"") {
        hidden_field(&html, "idempotency_key")
    } else {
        String::new()
    };
    FormSession {
        cookie,
        token: hidden_field(&html, "csrf_token"),
        idempotency_key,
    }
}

/// The value of a hidden input in an HTML page.
pub fn hidden_field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} field in:\n{html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// POST a form with the session's cookie and token plus `fields`.
pub async fn post_form(
    client: &reqwest::Client,
    url: &str,
    session: &FormSession,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let mut body: Vec<(&str, &str)> = vec![("csrf_token", &session.token)];
    body.extend_from_slice(fields);
    client
        .post(url)
        .header("cookie", &session.cookie)
        .form(&body)
        .send()
        .await
        .unwrap()
}

/// Add an item through the form, as a person would; the response to the POST.
pub async fn add_item(
    shop: &Shop,
    name: &str,
    quantity: &str,
    description: &str,
) -> reqwest::Response {
    let http = client();
    let session = open_form(&http, &shop.url("/")).await;
    let fields = [
        ("name", name),
        ("quantity", quantity),
        ("description", description),
    ];
    post_form(&http, &shop.url("/"), &session, &fields).await
}

/// Send a request and give its status (for assertions on it).
pub async fn status_of(request: reqwest::RequestBuilder) -> u16 {
    request.send().await.unwrap().status().as_u16()
}

/// Send a request and give its body as JSON.
pub async fn json_of(request: reqwest::RequestBuilder) -> serde_json::Value {
    request.send().await.unwrap().json().await.unwrap()
}

/// Poll `url` until it answers `status`, at most `timeout`.
pub async fn wait_for_status(
    client: &reqwest::Client,
    url: &str,
    status: u16,
    timeout: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if let Ok(r) = client.get(url).send().await {
            if r.status().as_u16() == status {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Declare an async test once per backend: `both_backends!(name, body_fn);`
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::common::Backend::Postgres).await })*
        }
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::common::Backend::Sqlite).await })*
        }
    };
}
