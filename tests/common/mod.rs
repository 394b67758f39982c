//! Test helpers shared by every integration test: databases of both backends, the real
//! `shop` binary started on a free port and stopped by PID, and an HTTP client that
//! behaves like a browser filling in forms.

pub mod ansible;
pub mod browser;
pub mod container;
pub mod deb;
pub mod load;
pub mod network;
pub mod nginx;
pub mod notify;
pub mod postgres;
pub mod prometheus;
pub mod shop;
pub mod tls;

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

impl TestDb {
    /// Run SQL on either backend; each row's columns as text, joined by `|`.
    pub async fn rows(&self, sql: &str) -> Vec<String> {
        match self.backend {
            Backend::Postgres => PgCluster::shared()
                .psql_in(&self.name, sql)
                .lines()
                .map(str::to_owned)
                .collect(),
            Backend::Sqlite => {
                use sqlx::{Connection, Row};
                let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                let rows = sqlx::query(sql).fetch_all(&mut conn).await.unwrap();
                rows.iter()
                    .map(|row| {
                        (0..row.columns().len())
                            .map(|i| {
                                row.try_get_unchecked::<Option<String>, _>(i)
                                    .unwrap()
                                    .unwrap_or_default()
                            })
                            .collect::<Vec<_>>()
                            .join("|")
                    })
                    .collect()
            }
        }
    }

    /// Run `shop ARGS` on this database (with `input` on its standard input).
    pub fn shop(&self, args: &[&str], input: &str) -> std::process::Output {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let mut child = shop_command(dir.path())
            .args(args)
            .env("SHOP_DATABASE__URL", &self.url)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
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
    shop_command_of(&shop_binary(), dir)
}

/// Like `shop_command`, for another build of shop (the benchmark's previous release).
pub fn shop_command_of(binary: &Path, dir: &std::path::Path) -> Command {
    let config = dir.join("shop.toml");
    if !config.exists() {
        std::fs::write(&config, "").unwrap();
    }
    let mut command = Command::new(binary);
    clean_environment(&mut command);
    command.current_dir(dir);
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
/// A page that sends an anonymous visitor to the login page (the add-an-item form) is
/// opened as a person would: they make an account (a fresh seller), and come back signed in.
pub async fn open_form(client: &reqwest::Client, url: &str) -> FormSession {
    let response = client.get(url).send().await.unwrap();
    let to_login = response.status() == 303
        && response.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/login");
    if to_login {
        let base = base_of(url);
        let seller = Seller::sign_up(&base, &fresh_username()).await;
        return seller.open_form(url).await;
    }
    anonymous_form(response, url).await
}

/// The form of a page an anonymous visitor opens over HTTPS (as the trusted proxy says):
/// its `__Host-shop_csrf` cookie and token.
pub async fn https_form(url: &str) -> FormSession {
    let response = client()
        .get(url)
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "GET {url} over HTTPS");
    let cookie = set_cookie(&response, "__Host-shop_csrf").expect("a __Host-shop_csrf cookie");
    let html = response.text().await.unwrap();
    form_session(cookie, &html)
}

/// The form of a page an anonymous visitor may open (sign-up, login).
async fn open_anonymous_form(client: &reqwest::Client, url: &str) -> FormSession {
    anonymous_form(client.get(url).send().await.unwrap(), url).await
}

async fn anonymous_form(response: reqwest::Response, url: &str) -> FormSession {
    assert_eq!(response.status(), 200, "GET {url}");
    let cookie = set_cookie(&response, "shop_csrf").expect("a shop_csrf cookie");
    let html = response.text().await.unwrap();
    form_session(cookie, &html)
}

fn form_session(cookie: String, html: &str) -> FormSession {
    let idempotency_key = if html.contains("name=\"idempotency_key\"") {
        hidden_field(html, "idempotency_key")
    } else {
        String::new()
    };
    FormSession {
        cookie,
        token: hidden_field(html, "csrf_token"),
        idempotency_key,
    }
}

/// `http://127.0.0.1:PORT` of a URL.
pub fn base_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let host = rest.split('/').next().unwrap();
    format!(
        "{}://{host}",
        url.split_once("://").map_or("http", |(s, _)| s)
    )
}

/// `NAME=VALUE` of the cookie `name` a response sets.
pub fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap().to_owned())
}

/// A username no other test has used.
pub fn fresh_username() -> String {
    use rand::Rng;
    format!("seller{:08x}", rand::thread_rng().gen::<u32>())
}

/// The password every test account gets (it passes the password rules).
pub const PASSWORD: &str = "violet pelican under a lamp";

/// Shell functions for curl scripts run in test hosts: `sign_up BASE NAME` makes an
/// account through the form, keeping its cookies in the jar `jar` (`curl -b jar -c jar`
/// then sends them), and prints the answer's status; `form_field FILE NAME` reads a
/// hidden field of a saved page.
pub const SIGN_UP_SH: &str = r#"
form_field() { sed -n "s/.*name=\"$2\" value=\"\([0-9a-f]*\)\".*/\1/p" "$1" | head -n 1; }
sign_up() {
    curl -s -b jar -c jar "$1/signup" > signup.html
    curl -s -o /dev/null -w '%{http_code}' -D signup-headers -b jar -c jar \
        --data "csrf_token=$(form_field signup.html csrf_token)&username=$2&password=violet+pelican+under+a+lamp" "$1/signup"
}
"#;

/// A signed-in browser: its cookies (the CSRF one and the session).
#[derive(Debug, Clone)]
pub struct Seller {
    pub name: String,
    pub cookie: String,
}

impl Seller {
    /// Sign up on the shop at `base` through the form, as a person does.
    pub async fn sign_up(base: &str, name: &str) -> Seller {
        Seller::try_sign_up(base, name, PASSWORD)
            .await
            .unwrap_or_else(|(status, html)| panic!("sign-up of {name}: {status}\n{html}"))
    }

    /// Sign up; the refusal's status and page when it is refused.
    pub async fn try_sign_up(
        base: &str,
        name: &str,
        password: &str,
    ) -> Result<Seller, (u16, String)> {
        Seller::submit_credentials(base, "/signup", name, password).await
    }

    /// Log in through the form: a new session.
    pub async fn log_in(base: &str, name: &str, password: &str) -> Result<Seller, (u16, String)> {
        Seller::submit_credentials(base, "/login", name, password).await
    }

    async fn submit_credentials(
        base: &str,
        path: &str,
        name: &str,
        password: &str,
    ) -> Result<Seller, (u16, String)> {
        let http = client();
        let form = open_anonymous_form(&http, &format!("{base}{path}")).await;
        let response = post_form(
            &http,
            &format!("{base}{path}"),
            &form,
            &[("username", name), ("password", password)],
        )
        .await;
        if response.status() != 303 {
            let status = response.status().as_u16();
            return Err((status, response.text().await.unwrap()));
        }
        let session = set_cookie(&response, "shop_session").expect("a session cookie");
        Ok(Seller {
            name: name.to_owned(),
            cookie: format!("{}; {session}", form.cookie),
        })
    }

    /// GET a page with this browser's cookies.
    pub async fn get(&self, url: &str) -> reqwest::Response {
        client()
            .get(url)
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap()
    }

    /// Open a form page signed in.
    pub async fn open_form(&self, url: &str) -> FormSession {
        let response = self.get(url).await;
        assert_eq!(response.status(), 200, "GET {url} as {}", self.name);
        let html = response.text().await.unwrap();
        form_session(self.cookie.clone(), &html)
    }

    /// POST a form of the page at `page` (opened first, for its token) to `url`.
    pub async fn post(&self, page: &str, url: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let form = self.open_form(page).await;
        post_form(&client(), url, &form, fields).await
    }

    /// Make an API token on the account page; the token (shown once).
    pub async fn api_token(&self, base: &str) -> String {
        self.api_token_with(base, PASSWORD).await
    }

    /// Make an API token on the account page, giving `password` (this seller's, when it
    /// is no longer the one they signed up with).
    pub async fn api_token_with(&self, base: &str, password: &str) -> String {
        let account = format!("{base}/account");
        let response = self
            .post(
                &account,
                &format!("{base}/account/tokens"),
                &[("name", "tests"), ("password", password)],
            )
            .await;
        assert_eq!(response.status(), 200, "token created");
        let html = response.text().await.unwrap();
        let start = html
            .find("<code id=\"new-token\">")
            .expect("the new token shown")
            + 21;
        html[start..].split('<').next().unwrap().to_owned()
    }
}

/// A client (redirects not followed) that sends an API token of one seller of this
/// shop's database with every request: what a script that writes through the API uses.
pub async fn api_client(shop: &Shop) -> reqwest::Client {
    bearer_client(&api_token(shop).await)
}

/// A client that sends a new API token of `seller` with every request.
pub async fn api_client_of(seller: &Seller, base: &str) -> reqwest::Client {
    bearer_client(&seller.api_token(base).await)
}

fn bearer_client(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let value = format!("Bearer {token}");
    headers.insert(reqwest::header::AUTHORIZATION, value.parse().unwrap());
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .default_headers(headers)
        .build()
        .unwrap()
}

/// An API token of one seller of this shop's database (made once per database, then
/// reused by every instance of it).
pub async fn api_token(shop: &Shop) -> String {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static TOKENS: Mutex<Option<HashMap<String, String>>> = Mutex::new(None);
    let key = shop.database_url.clone();
    if let Some(token) = TOKENS
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .get(&key)
    {
        return token.clone();
    }
    let seller = Seller::sign_up(&shop.url, &fresh_username()).await;
    let token = seller.api_token(&shop.url).await;
    TOKENS
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .insert(key, token.clone());
    token
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

/// The version of the migration that builds the search index (`*_search_index.sql`), which
/// tests forget and run again to time or redo the build.
pub fn search_index_migration() -> u32 {
    std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|name| name.ends_with("_search_index.sql"))
        .and_then(|name| name[..4].parse().ok())
        .expect("the search index's migration")
}

/// What a command printed, stdout then stderr.
pub fn said(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Create an item through the JSON API (201 expected) as a seller of this shop; the item
/// as the API gives it.
pub async fn create_item(shop: &Shop, item: &serde_json::Value) -> serde_json::Value {
    let response = client()
        .post(shop.url("/api/items"))
        .bearer_auth(api_token(shop).await)
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

/// The longest a change made by another process may take to reach an instance: on
/// PostgreSQL instances remember sessions and tokens and hear of changes through the
/// database's notifications, in milliseconds (SQLite instances read the file each time).
pub const HEARD_WITHIN: Duration = Duration::from_secs(2);

/// Ask `status` again (every 5 ms) until it is `expected`, at most `HEARD_WITHIN`, for a
/// change another process made; how long it took (printed when not at once).
pub async fn heard<F, Fut>(what: &str, expected: u16, mut status: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    let started = Instant::now();
    let mut tries = 0;
    loop {
        let got = status().await;
        tries += 1;
        if got == expected {
            let took = started.elapsed();
            if tries > 1 {
                println!("{what}: heard after {took:?} ({tries} tries)");
            }
            return took;
        }
        assert!(
            started.elapsed() < HEARD_WITHIN,
            "{what}: still {got} after {HEARD_WITHIN:?}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
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

/// Declare an async test once per backend: `both_backends!(name, body_fn);` (the suite
/// takes it with `#[macro_use] mod common`).
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
