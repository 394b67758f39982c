//! The Debian package: lintian, its Depends, and its life on a real systemd host
//! (install, serve, upgrade under load, remove, purge, reinstall).
//! The two packages are built by tests/run (packaging/build-deb, then again with
//! --no-build for a newer version) and named by SHOP_DEB_OLD and SHOP_DEB_NEW.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::container::{Container, Image};
use serde_json::Value;

/// The older and the newer package.
fn debs() -> (PathBuf, PathBuf) {
    let named = |var: &str| {
        let path = std::env::var(var).unwrap_or_else(|_| {
            panic!("{var} is not set: build the packages with tests/run (or packaging/build-deb)")
        });
        let path = PathBuf::from(path);
        assert!(path.is_file(), "{} does not exist", path.display());
        path
    };
    (named("SHOP_DEB_OLD"), named("SHOP_DEB_NEW"))
}

fn deb_field(deb: &PathBuf, field: &str) -> String {
    let out = Command::new("dpkg-deb")
        .arg("-f")
        .arg(deb)
        .arg(field)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn lintian_finds_nothing() {
    let (_, deb) = debs();
    let out = Command::new("lintian")
        .args(["--pedantic", "--fail-on", "error,warning,pedantic"])
        .arg(&deb)
        .output()
        .expect("run lintian (apt-get install lintian)");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "lintian:\n{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn depends_are_computed_and_versions_increase() {
    let (old, new) = debs();
    let depends = deb_field(&new, "Depends");
    for needed in ["libc6", "libsqlite3-0", "adduser"] {
        assert!(depends.contains(needed), "Depends: {depends:?}");
    }
    assert_eq!(deb_field(&new, "Recommends"), "nginx");
    assert_eq!(deb_field(&new, "Suggests"), "postgresql");
    let (v1, v2) = (deb_field(&old, "Version"), deb_field(&new, "Version"));
    let newer = Command::new("dpkg")
        .args(["--compare-versions", &v2, "gt", &v1])
        .status()
        .unwrap();
    assert!(newer.success(), "{v2} is not newer than {v1}");
}

fn ports_listening(host: &Container) -> Vec<u16> {
    let text = host.sh("ss -ltnH");
    [8001, 8002, 8003]
        .into_iter()
        .filter(|p| text.contains(&format!("127.0.0.1:{p} ")))
        .collect()
}

fn main_pids(host: &Container) -> Vec<String> {
    (8001..=8003)
        .map(|p| {
            host.sh(&format!(
                "systemctl show -p MainPID --value shop@{p}.service"
            ))
            .trim()
            .to_owned()
        })
        .collect()
}

fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_package_on_a_real_systemd_host() {
    let (old, new) = debs();
    let host = Container::boot(&Image::shop_host(), "shop-package");
    host.copy_in(&old, "/root/shop-old.deb", 0o644);
    host.copy_in(&new, "/root/shop-new.deb", 0o644);

    // apt install ./shop.deb: three sockets listening, each instance serves.
    host.sh("cd /root && apt-get install -y -q ./shop-old.deb");
    wait_until("the three sockets listen", Duration::from_secs(20), || {
        ports_listening(&host).len() == 3
    });
    for port in 8001..=8003 {
        let (status, body) = host.http_get(&format!("http://127.0.0.1:{port}/readyz"));
        assert_eq!(
            status,
            200,
            "instance {port}: {body}\n{}",
            host.sh(&format!("journalctl -u shop@{port} --no-pager | tail -20"))
        );
    }
    assert_eq!(
        host.sh("stat -c '%U:%G %a' /etc/shop/shop.toml /etc/shop/secret /var/lib/shop"),
        "root:shop 640\nroot:shop 640\nshop:shop 750\n"
    );
    assert!(host
        .sh("systemctl is-enabled shop@8001.socket shop@8002.socket shop@8003.socket shop.target")
        .lines()
        .all(|l| l == "enabled"));

    // systemctl start shop@8001 works.
    host.sh("systemctl stop shop@8001.service && systemctl start shop@8001 && systemctl is-active shop@8001");

    // A form rendered by one instance posts to another (the generated secret is shared).
    let created = host.net_sh(
        r#"curl -s -c jar http://127.0.0.1:8001/ > form.html
        token=$(sed -n 's/.*name="csrf_token" value="\([0-9a-f]*\)".*/\1/p' form.html)
        key=$(sed -n 's/.*name="idempotency_key" value="\([0-9a-f]*\)".*/\1/p' form.html)
        curl -s -o /dev/null -w '%{http_code}' -b jar --data "csrf_token=$token&idempotency_key=$key&name=Kept+item&quantity=3&description=survives+upgrades" http://127.0.0.1:8002/"#,
    );
    assert_eq!(created.trim(), "303", "a form from 8001 posted to 8002");

    // Upgrade while requests flow: zero failures, instances restarted one after another.
    let before = main_pids(&host);
    let cursor = host
        .sh("journalctl -n 0 --show-cursor --no-pager")
        .lines()
        .find_map(|l| l.strip_prefix("-- cursor: "))
        .expect("a journal cursor")
        .to_owned();
    let urls = [
        "http://127.0.0.1:8001/items",
        "http://127.0.0.1:8002/items",
        "http://127.0.0.1:8003/items",
    ];
    let load = host.start_request_loop(&urls, 300, 20);
    std::thread::sleep(Duration::from_millis(500));
    host.sh("cd /root && apt-get install -y -q ./shop-new.deb");
    let (ok, bad, failures) = load.finish();
    assert_eq!(
        (ok, bad),
        (300, 0),
        "failed requests during the upgrade:\n{failures}"
    );
    assert_eq!(
        host.sh("dpkg-query -W -f '${Version}' shop"),
        deb_field(&new, "Version")
    );
    let after = main_pids(&host);
    for (b, a) in before.iter().zip(&after) {
        assert_ne!(
            b, a,
            "every running instance was restarted: {before:?} → {after:?}"
        );
    }
    assert_one_at_a_time(&host, &cursor);
    assert!(
        host.http_get("http://127.0.0.1:8003/items")
            .1
            .contains("Kept item"),
        "data kept across the upgrade"
    );

    // apt remove: instances stopped, data and configuration kept.
    host.sh("apt-get remove -y -q shop");
    assert!(
        ports_listening(&host).is_empty(),
        "sockets closed after remove"
    );
    assert_eq!(
        host.exec(&["systemctl", "is-active", "shop@8001.service"])
            .stdout,
        b"inactive\n"
    );
    host.sh(
        "test -s /var/lib/shop/shop.db && test -f /etc/shop/shop.toml && test -s /etc/shop/secret",
    );

    // apt purge: configuration and data gone.
    host.sh("apt-get purge -y -q shop");
    host.sh("test ! -e /etc/shop && test ! -e /var/lib/shop");

    // Reinstall after purge: serves again, from a fresh database.
    host.sh("cd /root && apt-get install -y -q ./shop-new.deb");
    wait_until("the sockets listen again", Duration::from_secs(20), || {
        ports_listening(&host).len() == 3
    });
    let (status, body) = host.http_get("http://127.0.0.1:8001/items");
    assert_eq!(status, 200);
    assert!(!body.contains("Kept item"), "purged data stays gone");
}

/// systemd's own journal lines show each instance stopped and started again before the
/// next one is stopped.
fn assert_one_at_a_time(host: &Container, cursor: &str) {
    let journal = host.sh(&format!(
        "journalctl -o json --no-pager _PID=1 --after-cursor='{cursor}'"
    ));
    let events: Vec<(String, String)> = journal
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|e| {
            let message = e["MESSAGE"].as_str()?.to_owned();
            let unit = e["UNIT"].as_str()?.to_owned();
            if !(unit.starts_with("shop@") && unit.ends_with(".service")) {
                return None;
            }
            // systemd 252: "Stopping shop@8001.service - shop instance 8001 …".
            let kind = if message.starts_with("Stopping") {
                "stop"
            } else if message.starts_with("Started") {
                "start"
            } else {
                return None;
            };
            Some((kind.to_owned(), unit))
        })
        .collect();
    assert_eq!(events.len(), 6, "three stops and three starts: {events:?}");
    for pair in events.chunks(2) {
        assert_eq!(
            (pair[0].0.as_str(), pair[1].0.as_str()),
            ("stop", "start"),
            "{events:?}"
        );
        assert_eq!(
            pair[0].1, pair[1].1,
            "an instance is back before the next one stops: {events:?}"
        );
    }
}
