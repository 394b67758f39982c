//! The real `shop` binary, started the three ways it runs in production (binding
//! `server.listen`, under `systemd-socket-activate`, on a socket held like systemd holds
//! `shop@PORT.socket`), ready when it sends READY=1 to a notify socket the test owns,
//! and stopped by PID (SIGTERM, then SIGKILL) when dropped.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::notify::NotifySocket;
use super::{free_port, poll_until, shop_binary, shop_command_of, SECRET};

/// Where a started shop's listening socket comes from.
#[derive(Debug, Clone, Copy)]
pub enum Socket {
    /// shop binds `server.listen` itself.
    Bind,
    /// `systemd-socket-activate` passes a socket on a free port and starts shop on the
    /// first connection, which the test makes.
    Activated,
    /// The test holds the listening socket (this fd) and passes it as fd 3.
    Held(i32),
}

/// A running `shop serve`.
pub struct Shop {
    child: Child,
    pub url: String,
    pub port: u16,
    /// The database it serves (instances of one database share its accounts).
    pub database_url: String,
    logs: Arc<Mutex<String>>,
    notify: NotifySocket,
    _dir: tempfile::TempDir,
}

impl Shop {
    /// `shop serve` on `database_url` with extra `SHOP_*` (or other) variables, bound
    /// to a free port; ready when it says so.
    pub fn start(database_url: &str, settings: &[(&str, &str)]) -> Shop {
        Shop::launch(Socket::Bind, database_url, settings)
            .unwrap_or_else(|logs| panic!("shop did not start:\n{logs}"))
    }

    /// Like `start`, with another build of shop (the benchmark's previous release).
    pub fn start_build(binary: &Path, database_url: &str, settings: &[(&str, &str)]) -> Shop {
        Shop::launch_build(binary.to_owned(), Socket::Bind, database_url, settings)
            .unwrap_or_else(|logs| panic!("{} did not start:\n{logs}", binary.display()))
    }

    /// Like `start`, but a shop that exits or never gets ready gives its logs.
    pub fn try_start(database_url: &str, settings: &[(&str, &str)]) -> Result<Shop, String> {
        Shop::launch(Socket::Bind, database_url, settings)
    }

    /// Under `systemd-socket-activate`.
    pub fn start_socket_activated(database_url: &str, settings: &[(&str, &str)]) -> Shop {
        Shop::launch(Socket::Activated, database_url, settings)
            .unwrap_or_else(|logs| panic!("shop did not start:\n{logs}"))
    }

    /// On a listening socket the test holds, passed as fd 3 the way systemd passes
    /// `shop@PORT.socket`: the socket outlives the process, so a restart refuses no
    /// connection (they wait in its backlog).
    pub fn start_on_held_socket(
        socket: &TcpListener,
        database_url: &str,
        settings: &[(&str, &str)],
    ) -> Shop {
        let fd = std::os::fd::AsRawFd::as_raw_fd(socket);
        Shop::launch(Socket::Held(fd), database_url, settings)
            .unwrap_or_else(|logs| panic!("shop did not start:\n{logs}"))
    }

    /// This build, believing the test's requests about their client (`X-Forwarded-For`)
    /// and scheme as it believes nginx's in production (a test may say otherwise).
    fn launch(
        socket: Socket,
        database_url: &str,
        settings: &[(&str, &str)],
    ) -> Result<Shop, String> {
        let mut with_proxy = vec![("SHOP_SERVER__TRUSTED_PROXIES", "127.0.0.1,::1")];
        with_proxy.extend_from_slice(settings);
        Shop::launch_build(shop_binary(), socket, database_url, &with_proxy)
    }

    fn launch_build(
        binary: PathBuf,
        socket: Socket,
        database_url: &str,
        settings: &[(&str, &str)],
    ) -> Result<Shop, String> {
        let dir = tempfile::tempdir().unwrap();
        let notify = NotifySocket::bind_in(dir.path());
        let mut env: Vec<(String, String)> = vec![
            ("SHOP_SERVER__LISTEN".into(), "127.0.0.1:0".into()),
            ("SHOP_DATABASE__URL".into(), database_url.into()),
            ("SHOP_SECURITY__SECRET".into(), SECRET.into()),
            ("SHOP_LOG__LEVEL".into(), "info,sqlx=warn".into()),
            ("NOTIFY_SOCKET".into(), notify.path().display().to_string()),
        ];
        env.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let activated_on = matches!(socket, Socket::Activated).then(free_port);
        let mut command = serve_command(&binary, socket, activated_on, dir.path(), env);
        command.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("start shop");
        let logs = collect_lines(child.stderr.take().unwrap());
        if let Some(port) = activated_on {
            knock(port);
        }
        let started = Instant::now();
        let ready = poll_until(Duration::from_secs(60), || {
            notify.first("READY=1", started).is_some() || matches!(child.try_wait(), Ok(Some(_)))
        });
        let address = notify
            .first("READY=1", started)
            .and_then(|(_, message)| serving_address(&message));
        match address {
            Some(address) if ready => Ok(Shop {
                child,
                port: address.rsplit(':').next().unwrap().parse().unwrap(),
                url: format!("http://{address}"),
                database_url: database_url.to_owned(),
                logs,
                notify,
                _dir: dir,
            }),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                // The reader thread has the last lines once the pipe closes.
                poll_until(Duration::from_secs(1), || Arc::strong_count(&logs) == 1);
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

    /// What this shop told its notify socket.
    pub fn notifications(&self) -> &NotifySocket {
        &self.notify
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
        let mut code = None;
        poll_until(timeout, || {
            code = self
                .child
                .try_wait()
                .unwrap()
                .map(|s| s.code().unwrap_or(-1));
            code.is_some()
        });
        code
    }
}

impl Drop for Shop {
    fn drop(&mut self) {
        super::stop_child(&mut self.child, Duration::from_secs(10));
    }
}

/// `shop serve` with `env`, its socket coming from where `socket` says.
fn serve_command(
    binary: &Path,
    socket: Socket,
    activated_on: Option<u16>,
    dir: &Path,
    env: Vec<(String, String)>,
) -> Command {
    let shop = shop_command_of(binary, dir);
    let mut command = match socket {
        Socket::Bind => {
            let mut command = shop;
            command.arg("serve").envs(env);
            return command;
        }
        Socket::Held(fd) => {
            // sh's $$ is the PID shop keeps after exec: LISTEN_PID must name it.
            let mut command = Command::new("sh");
            super::clean_environment(&mut command);
            command
                .arg("-c")
                .arg("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\"")
                .envs(env);
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
        Socket::Activated => {
            let mut command = Command::new("systemd-socket-activate");
            super::clean_environment(&mut command);
            let port = activated_on.expect("a port to activate on");
            command.arg("-l").arg(format!("127.0.0.1:{port}"));
            for (key, value) in env {
                command.arg("-E").arg(format!("{key}={value}"));
            }
            command
        }
    };
    command
        .arg(shop.get_program())
        .args(shop.get_args())
        .arg("serve")
        .current_dir(dir);
    command
}

/// The first connection, which makes `systemd-socket-activate` start shop.
fn knock(port: u16) {
    std::thread::spawn(move || {
        let connected = poll_until(Duration::from_secs(5), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(connected, "nothing listens on {port}");
    });
}

/// `127.0.0.1:PORT` from a READY=1 message's `STATUS=serving on 127.0.0.1:PORT, …`.
fn serving_address(message: &str) -> Option<String> {
    let rest = message.split("STATUS=serving on ").nth(1)?;
    Some(rest.split([',', '\n']).next()?.trim().to_owned())
}

/// Every line of `stream`, kept (the most recent 8 MiB) for the test to read.
fn collect_lines(stream: impl std::io::Read + Send + 'static) -> Arc<Mutex<String>> {
    let logs = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&logs);
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let mut logs = sink.lock().unwrap();
            if logs.len() > 8 << 20 {
                let cut = logs.len() / 2;
                let cut = logs[cut..].find('\n').map_or(cut, |i| cut + i + 1);
                logs.drain(..cut);
            }
            logs.push_str(&line);
            logs.push('\n');
        }
    });
    logs
}
