//! A real nginx running the project's site (`nginx/shop.conf` and its snippets), rendered
//! onto a free local port and the test's instance ports, stopped by the test by PID.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::free_port;

fn source(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("nginx")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The shop site listening on 127.0.0.1:`port` instead of port 80.
pub fn render_site(port: u16) -> String {
    let mut out = String::new();
    for line in source("shop.conf").lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("listen ") {
            if trimmed.starts_with("listen 80;") {
                out.push_str(&format!("    listen 127.0.0.1:{port};\n"));
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The upstream snippet with its server lines pointing at `ports`.
pub fn render_upstream(ports: &[u16]) -> String {
    let mut out = String::new();
    let mut servers_written = false;
    for line in source("shop-upstream.conf").lines() {
        if line.trim_start().starts_with("server 127.0.0.1:") {
            if !servers_written {
                for p in ports {
                    out.push_str(&format!(
                        "    server 127.0.0.1:{p} max_fails=3 fail_timeout=5s;\n"
                    ));
                }
                servers_written = true;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    assert!(
        servers_written,
        "no server lines in nginx/shop-upstream.conf"
    );
    out
}

/// An nginx prefix directory: main config, the snippets, and the given site and upstream.
pub fn prefix(site: &str, upstream: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("shop-nginx-")
        .tempdir()
        .unwrap();
    let d = dir.path();
    for sub in ["snippets", "sites", "tmp"] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
    }
    for snippet in [
        "shop-headers.conf",
        "shop-locations.conf",
        "shop-proxy.conf",
    ] {
        let text = source(snippet).replace(
            "/var/log/nginx/shop-access.log",
            &d.join("shop-access.log").display().to_string(),
        );
        std::fs::write(d.join("snippets").join(snippet), text).unwrap();
    }
    std::fs::write(d.join("snippets/shop-upstream.conf"), upstream).unwrap();
    std::fs::write(d.join("sites/shop.conf"), site).unwrap();
    // SAFETY: geteuid has no preconditions.
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root root;"
    } else {
        ""
    };
    let main = format!(
        "{user}\ndaemon off;\nworker_processes 2;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log {d}/access.log;\n  default_type application/octet-stream;\n\
           client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n\
           fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n\
           include sites/shop.conf;\n}}\n",
        d = d.display()
    );
    std::fs::write(d.join("nginx.conf"), main).unwrap();
    dir
}

/// `nginx -t` on a prefix; (success, what it said).
pub fn check(prefix: &Path) -> (bool, String) {
    let out = Command::new("nginx")
        .arg("-t")
        .arg("-p")
        .arg(prefix)
        .arg("-c")
        .arg(prefix.join("nginx.conf"))
        .output()
        .expect("run nginx (apt-get install nginx)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An nginx that only serves `file` at `/static.html`: the proxy path's ceiling.
pub fn start_static(file: &Path) -> Nginx {
    let port = free_port();
    let root = file.parent().unwrap().display().to_string();
    let name = file.file_name().unwrap().to_str().unwrap();
    let site = format!(
        "server {{\n    listen 127.0.0.1:{port};\n    root {root};\n    location = /static.html {{ try_files /{name} =404; }}\n}}\n"
    );
    Nginx::start_site(port, &site, "")
}

pub struct Nginx {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Start nginx in front of instances on `upstream_ports`.
    pub fn start(upstream_ports: &[u16]) -> Nginx {
        let port = free_port();
        Nginx::start_site(port, &render_site(port), &render_upstream(upstream_ports))
    }

    fn start_site(port: u16, site: &str, upstream: &str) -> Nginx {
        let dir = prefix(site, upstream);
        let (ok, said) = check(dir.path());
        assert!(ok, "nginx -t failed:\n{said}");
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let listening = super::poll_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(
            listening,
            "nginx did not start:\n{}",
            std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
        );
        Nginx { child, port, dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The master process (its workers are its children).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// The instances (`instance=` of the site's access log) that answered requests for
    /// `path`, as often as each did.
    pub fn answered_by(&self, path: &str) -> Vec<String> {
        // nginx logs a request just after its answer.
        std::thread::sleep(Duration::from_millis(500));
        let log =
            std::fs::read_to_string(self.dir.path().join("shop-access.log")).unwrap_or_default();
        instances_in_access_log(&log, path)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // nginx's master process: SIGTERM is its fast shutdown.
        super::stop_child(&mut self.child, Duration::from_secs(10));
    }
}

/// The `instance=` of each line of a shop access log whose request was for `path`.
pub fn instances_in_access_log(log: &str, path: &str) -> Vec<String> {
    let request = format!(" {path} HTTP/");
    log.lines()
        .filter(|line| line.contains(&request))
        .filter_map(|line| line.split(" instance=").nth(1))
        .filter_map(|rest| rest.split(' ').next())
        .map(str::to_owned)
        .collect()
}
