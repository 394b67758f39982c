//! A real headless Chromium, driven over WebDriver: Debian's `chromium` and
//! `/usr/bin/chromedriver` (started on a free port, stopped by PID when dropped), with the
//! fantoccini client. Also what the tests ask of a page: its console (where Chromium
//! reports CSP violations), axe-core's audit (injected from `target/tools/axe`), how it
//! fits a phone's screen, and screenshots under `target/screenshots/`.
//! Only tests/browser.rs includes it (`#[path]`), so the other test binaries do not
//! compile the WebDriver client.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::common::{free_port, poll_until, stop_child};

/// The two screens every page is looked at on.
pub const DESKTOP: Screen = Screen {
    name: "desktop",
    width: 1280,
    height: 800,
    mobile: false,
};
pub const PHONE: Screen = Screen {
    name: "phone",
    width: 390,
    height: 844,
    mobile: true,
};

#[derive(Debug, Clone, Copy)]
pub struct Screen {
    pub name: &'static str,
    pub width: u32,
    pub height: u32,
    pub mobile: bool,
}

/// The pinned axe-core that `tests/run` installs (`SHOP_AXE_JS` names another copy).
fn axe_source() -> String {
    let path = std::env::var_os("SHOP_AXE_JS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/tools/axe/node_modules/axe-core/axe.min.js")
        });
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "axe-core at {}: {e} (tests/run installs it)",
            path.display()
        )
    })
}

/// Where the screenshots go.
pub fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots")
}

/// A running chromedriver with one Chromium session.
pub struct Browser {
    pub client: Client,
    driver: Child,
    axe: String,
    /// Console problems read off pages already left.
    console: std::sync::Mutex<Vec<String>>,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start() -> Browser {
        let port = free_port();
        let mut driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("/usr/bin/chromedriver (Debian's chromium-driver)");
        let ready = poll_until(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        if !ready {
            stop_child(&mut driver, Duration::from_secs(1));
            panic!("chromedriver did not listen on {port}");
        }
        let profile = tempfile::tempdir().unwrap();
        let mut args = vec![
            "--headless".to_owned(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-extensions".into(),
            "--window-size=1280,800".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        // As root, Chromium refuses to start without this.
        if unsafe { libc::geteuid() } == 0 {
            args.push("--no-sandbox".into());
        }
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args },
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities.as_object().unwrap().clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session");
        Browser {
            client,
            driver,
            axe: axe_source(),
            console: Default::default(),
            _profile: profile,
        }
    }

    /// End the session and chromedriver.
    pub async fn stop(mut self) {
        let _ = self.client.clone().close().await;
        stop_child(&mut self.driver, Duration::from_secs(5));
    }

    /// Show the page as `screen` shows it (viewport size and, for a phone, touch and
    /// the `meta viewport` rules), until the next call.
    pub async fn use_screen(&self, screen: Screen) {
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": screen.width, "height": screen.height,
                    "deviceScaleFactor": 1, "mobile": screen.mobile }),
        )
        .await;
    }

    /// A Chrome DevTools command, through chromedriver.
    async fn cdp(&self, cmd: &'static str, params: Value) -> Value {
        self.client
            .issue_cmd(SessionPost {
                path: "goog/cdp/execute",
                body: json!({ "cmd": cmd, "params": params }),
            })
            .await
            .unwrap_or_else(|e| panic!("{cmd}: {e}"))
    }

    /// What the pages logged to their consoles since the last call, errors and
    /// warnings (a CSP violation is an error there).
    pub async fn console_problems(&self) -> Vec<String> {
        self.keep_console_problems().await;
        std::mem::take(&mut *self.console.lock().unwrap())
    }

    /// Read the console of the page shown now (before it is left: Chromium also logs a
    /// page's own status when it is 4xx, as a form sent back with its errors is, and
    /// that is the page's answer, which the tests check, not a problem of it).
    async fn keep_console_problems(&self) {
        let page = self.client.current_url().await.unwrap().to_string();
        let own_status =
            format!("{page} - Failed to load resource: the server responded with a status of 4");
        let entries = self
            .client
            .issue_cmd(SessionPost {
                path: "se/log",
                body: json!({ "type": "browser" }),
            })
            .await
            .expect("the browser's console log");
        let problems = entries
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| matches!(e["level"].as_str(), Some("SEVERE" | "WARNING")))
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            .filter(|message| !message.starts_with(&own_status));
        self.console.lock().unwrap().extend(problems);
    }

    /// axe-core's violations of impact serious or critical on the page as it is now.
    pub async fn serious_accessibility_violations(&self) -> Vec<String> {
        let loaded = self
            .client
            .execute("return typeof window.axe === 'object';", vec![])
            .await
            .unwrap();
        if loaded != json!(true) {
            self.client
                .execute(&format!("{}\n;return true;", self.axe), vec![])
                .await
                .expect("axe-core injected");
        }
        let found = self
            .client
            .execute_async(
                r#"const done = arguments[arguments.length - 1];
                axe.run(document, { resultTypes: ['violations'] })
                  .then(r => done(r.violations
                      .filter(v => v.impact === 'serious' || v.impact === 'critical')
                      .map(v => `${v.impact} ${v.id}: ${v.help} at ${v.nodes.map(n => n.target.join(' ')).join(', ')}`)))
                  .catch(e => done([`axe failed: ${e}`]));"#,
                vec![],
            )
            .await
            .expect("axe.run");
        serde_json::from_value(found).unwrap()
    }

    /// What does not fit a phone: sideways scrolling, and controls smaller than 24×24
    /// CSS px (WCAG 2.2's target size; a link inside a sentence is exempt, as there).
    pub async fn layout_problems(&self) -> Vec<String> {
        let found = self
            .client
            .execute(
                r#"const problems = [];
                const page = document.documentElement;
                // (A phone widens the layout to what overflows; clientWidth stays the screen's.)
                const screen = page.clientWidth;
                if (page.scrollWidth > screen)
                  problems.push(`scrolls sideways: ${page.scrollWidth} px wide in ${screen}`);
                for (const el of document.querySelectorAll('a, button, input, textarea, select')) {
                  if (el.type === 'hidden' || el.hidden || el.offsetParent === null) continue;
                  if (el.tagName === 'A' && el.closest('p, dd, li')) continue;
                  const r = el.getBoundingClientRect();
                  if (r.width < 24 || r.height < 24)
                    problems.push(`${el.tagName.toLowerCase()} "${(el.textContent || el.name || '').trim()}" is ${r.width.toFixed(1)}×${r.height.toFixed(1)} px`);
                  if (r.right > screen + 0.5)
                    problems.push(`${el.tagName.toLowerCase()} "${(el.textContent || el.name || '').trim()}" ends at ${r.right.toFixed(0)} px, past the screen`);
                }
                return problems;"#,
                vec![],
            )
            .await
            .unwrap();
        serde_json::from_value(found).unwrap()
    }

    /// A PNG of what the screen shows, as `target/screenshots/NAME-SCREEN.png`.
    pub async fn screenshot(&self, name: &str, screen: Screen) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}-{}.png", screen.name));
        std::fs::write(&path, png).unwrap();
        path
    }

    pub async fn goto(&self, url: &str) {
        self.keep_console_problems().await;
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
    }

    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// The element `css` selects; a clear failure naming the page when there is none.
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => element,
            Err(e) => panic!(
                "no {css} on {}: {e}\n{}",
                self.path().await,
                self.text().await
            ),
        }
    }

    pub async fn exists(&self, css: &str) -> bool {
        !self
            .client
            .find_all(Locator::Css(css))
            .await
            .unwrap()
            .is_empty()
    }

    /// Type into the field `css` selects, replacing what it held.
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    /// Click, and wait for the page it leads to.
    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.navigating(element.click()).await;
    }

    /// Press keys that lead to another page (Enter on a link or in a form), and wait
    /// for it.
    pub async fn press_to_leave(&self, keys: &str) {
        let focused = self.client.active_element().await.unwrap();
        self.navigating(focused.send_keys(keys)).await;
    }

    /// Load the page again.
    pub async fn reload(&self) {
        self.navigating(self.client.refresh()).await;
    }

    /// The browser's Back button, and wait for the page.
    pub async fn back(&self) {
        self.navigating(self.client.back()).await;
    }

    /// Do `action`, which loads another document, and wait until that one has loaded
    /// (a mark left on this one's window is gone, and the new one is complete).
    async fn navigating<F>(&self, action: F)
    where
        F: std::future::Future<Output = Result<(), fantoccini::error::CmdError>>,
    {
        self.keep_console_problems().await;
        let script = "window.shopTestLeaving = true;";
        self.client.execute(script, vec![]).await.unwrap();
        action.await.unwrap();
        let arrived = "return !window.shopTestLeaving && document.readyState === 'complete';";
        for _ in 0..200 {
            if self.client.execute(arrived, vec![]).await.ok() == Some(json!(true)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no new page loaded: still on {}", self.path().await);
    }

    /// The page's visible text.
    pub async fn text(&self) -> String {
        match self.client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// The value of the field `css` selects.
    pub async fn value(&self, css: &str) -> String {
        self.find(css)
            .await
            .prop("value")
            .await
            .unwrap()
            .unwrap_or_default()
    }

    /// Press keys on whatever has the focus.
    pub async fn press(&self, keys: &str) {
        let focused = self.client.active_element().await.unwrap();
        focused.send_keys(keys).await.unwrap();
    }

    /// The focused element, described as `tag#id` or `tag "text"`.
    pub async fn focused(&self) -> String {
        let described = self
            .client
            .execute(
                r#"const el = document.activeElement;
                return el.tagName.toLowerCase() + (el.id ? '#' + el.id : ` "${el.textContent.trim()}"`);"#,
                vec![],
            )
            .await
            .unwrap();
        described.as_str().unwrap().to_owned()
    }
}

/// A chromedriver command of its own (not in the W3C set) on the current session.
#[derive(Debug)]
struct SessionPost {
    path: &'static str,
    body: Value,
}

impl WebDriverCompatibleCommand for SessionPost {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/{}",
            session_id.unwrap_or_default(),
            self.path
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.body.to_string()))
    }
}
