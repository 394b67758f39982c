//! Test helpers shared by every integration test: databases of both backends, the real
//! `shop` binary started on a free port and stopped by PID, and an HTTP client that
//! behaves like a browser filling in forms.
#![allow(dead_code)]

pub mod ansible;
pub mod container;
pub mod deb;
pub mod load;
pub mod network;
pub mod nginx;
pub mod notify;
pub mod postgres;
pub mod prometheus;
pub mod shop;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use postgres::PgCluster;
pub use shop::Shop;

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
pub fn clean_environment(command: &mut Command) {
    for (key, _) in std::env::vars() {
        let ours = key.starts_with("SHOP_") || key.starts_with("LISTEN_");
        if ours || key == "RUST_LOG" || key == "NOTIFY_SOCKET" {
            command.env_remove(key);
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

/// GET `url`: its status and its body.
pub async fn get_text(url: &str) -> (u16, String) {
    let response = client().get(url).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// A response's status, the request id it carries, and its body (an error page's parts).
pub async fn answer_parts(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    (status, request_id, response.text().await.unwrap())
}

/// Send a request and give its body as JSON.
pub async fn json_of(request: reqwest::RequestBuilder) -> serde_json::Value {
    request.send().await.unwrap().json().await.unwrap()
}

/// How many migrations this tree has (the newest schema version: they are numbered 1, 2, …).
pub fn migration_count() -> usize {
    std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count()
}

/// What a command printed, stdout then stderr.
pub fn said(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Create an item through the JSON API (201 expected); the item as the API gives it.
pub async fn create_item(shop: &Shop, item: &serde_json::Value) -> serde_json::Value {
    let response = client()
        .post(shop.url("/api/items"))
        .json(item)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "POST /api/items {item}");
    response.json().await.unwrap()
}

/// Check every 50 ms until `check` holds, at most `timeout`; whether it did.
pub fn poll_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stop a child process by PID: SIGTERM, up to `grace` to exit, then SIGKILL.
pub fn stop_child(child: &mut std::process::Child, grace: Duration) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    // SAFETY: signals our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    poll_until(grace, || child.try_wait().ok().flatten().is_some());
    let _ = child.kill();
    let _ = child.wait();
}

/// Like `poll_until`, but a timeout fails the test, naming `what` it waited for.
pub fn wait_until(what: &str, timeout: Duration, check: impl FnMut() -> bool) {
    assert!(poll_until(timeout, check), "timed out waiting until {what}");
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
