//! A throwaway PostgreSQL cluster made with the system's `initdb` and `pg_ctl`, listening
//! on 127.0.0.1 and a private socket directory, stopped by the test that owns it. When
//! `DATABASE_URL` is set (a server whose user may create databases), it is used instead.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::free_port;

pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// The URL of the cluster's maintenance database (no path means `postgres`).
    admin_url: String,
    owned: bool,
}

impl PgCluster {
    /// Make and start a new cluster (~1–2 s).
    pub fn start() -> PgCluster {
        let bin = postgres_bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("shop-pg-")
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        let cluster = PgCluster {
            admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            dir,
            bin,
            port,
            owned: true,
        };
        give_to_db_user(cluster.dir.path());
        cluster.db_command(
            "initdb",
            &[
                "-D",
                &cluster.data_dir(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        cluster.start_server();
        cluster
    }

    /// The cluster of this test binary: `DATABASE_URL` if set, or one started on first use
    /// and stopped when the test process exits.
    pub fn shared() -> &'static PgCluster {
        static SHARED: OnceLock<PgCluster> = OnceLock::new();
        SHARED.get_or_init(|| match std::env::var("DATABASE_URL") {
            Ok(url) if !url.is_empty() => PgCluster {
                dir: tempfile::tempdir().expect("temp dir"),
                bin: PathBuf::new(),
                port: 0,
                admin_url: url,
                owned: false,
            },
            _ => {
                extern "C" fn stop_shared() {
                    if let Some(cluster) = SHARED.get() {
                        cluster.stop();
                        let _ = std::fs::remove_dir_all(cluster.dir.path());
                    }
                }
                let cluster = PgCluster::start();
                // SAFETY: registers a plain function to run at process exit.
                unsafe { libc::atexit(stop_shared) };
                cluster
            }
        })
    }

    /// Where this cluster's server programs are (pgbench is there too).
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// The server's process (the postmaster), when this cluster is ours to run.
    pub fn server_pid(&self) -> Option<u32> {
        let pid_file = Path::new(&self.data_dir()).join("postmaster.pid");
        let text = std::fs::read_to_string(pid_file).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    fn data_dir(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn start_server(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=400",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log").display().to_string();
        self.db_command(
            "pg_ctl",
            &[
                "-D",
                &self.data_dir(),
                "-l",
                &log,
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    /// Stop the server (fast shutdown: clients see their connections terminated).
    pub fn stop(&self) {
        if self.owned && Path::new(&self.data_dir()).join("postmaster.pid").exists() {
            self.db_command(
                "pg_ctl",
                &["-D", &self.data_dir(), "-m", "fast", "-w", "stop"],
            );
        }
    }

    /// Start it again on the same port after `stop`.
    pub fn restart(&self) {
        assert!(self.owned, "cannot restart a server given by DATABASE_URL");
        self.start_server();
    }

    /// A new, empty database in this cluster, and the URL shop should use for it.
    pub fn create_database(&self, name: &str) -> String {
        self.psql(&format!("CREATE DATABASE \"{name}\""));
        self.database_url(name)
    }

    pub fn database_url(&self, name: &str) -> String {
        let base = self
            .admin_url
            .rsplit_once('/')
            .map_or(self.admin_url.as_str(), |(base, _)| base);
        format!("{base}/{name}")
    }

    /// Run SQL in the maintenance database, or in `database` with `psql_in`.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_url(&self.admin_url, sql)
    }

    pub fn psql_in(&self, database: &str, sql: &str) -> String {
        self.psql_url(&self.database_url(database), sql)
    }

    fn psql_url(&self, url: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .args([
                url,
                "-v",
                "ON_ERROR_STOP=1",
                "-X",
                "-q",
                "-t",
                "-A",
                "-c",
                sql,
            ])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// initdb and pg_ctl refuse to run as root: run them as the `postgres` user then.
    fn db_command(&self, program: &str, args: &[&str]) {
        let program = self.bin.join(program);
        let mut command = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let out = command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("run a PostgreSQL tool");
        if !out.status.success() {
            let log =
                std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
            panic!(
                "{} {args:?} failed: {}{}\nserver log:\n{log}",
                program.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn give_to_db_user(dir: &Path) {
    if !is_root() {
        return;
    }
    let out = Command::new("id")
        .args(["-u", "postgres"])
        .output()
        .expect("run id");
    assert!(
        out.status.success(),
        "running as root needs a `postgres` user (apt-get install postgresql)"
    );
    let uid: u32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("uid");
    std::os::unix::fs::chown(dir, Some(uid), None).expect("chown the cluster directory");
}

/// Where `initdb` and `pg_ctl` are: on PATH, or Debian's /usr/lib/postgresql/N/bin.
fn postgres_bin_dir() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file());
    if let Some(dir) = on_path {
        return dir;
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .expect("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql, or set DATABASE_URL")
}
