//! The Debian packages tests/run builds (named by environment variables), their control
//! fields, and the package's whole life on a real systemd host: install, serve, upgrade
//! under load, remove, purge, reinstall. The amd64 and arm64 packages share it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::container::{Container, Image, Platform};
use super::wait_until;

/// The packages of the upgrade tests: the previous release (`old`, built from the commit
/// packaging/previous-release names), this tree (`new`), and this tree packaged again with
/// a later version (`newer`).
pub struct Debs {
    pub old: PathBuf,
    pub new: PathBuf,
    pub newer: PathBuf,
}

impl Debs {
    /// The amd64 packages: SHOP_DEB_OLD, SHOP_DEB_NEW and SHOP_DEB_NEWER.
    pub fn amd64() -> Debs {
        Debs::named("SHOP_DEB_OLD", "SHOP_DEB_NEW", "SHOP_DEB_NEWER")
    }

    /// The arm64 packages: SHOP_DEB_ARM64_OLD, SHOP_DEB_ARM64_NEW and SHOP_DEB_ARM64_NEWER.
    pub fn arm64() -> Debs {
        Debs::named(
            "SHOP_DEB_ARM64_OLD",
            "SHOP_DEB_ARM64_NEW",
            "SHOP_DEB_ARM64_NEWER",
        )
    }

    fn named(old: &str, new: &str, newer: &str) -> Debs {
        let path = |var: &str| {
            let path = std::env::var(var).unwrap_or_else(|_| {
                panic!("{var} is not set: tests/run builds the packages (packaging/build-deb)")
            });
            let path = std::fs::canonicalize(&path).unwrap_or_else(|e| panic!("{var}={path}: {e}"));
            assert!(path.is_file(), "{} is not a file", path.display());
            path
        };
        Debs {
            old: path(old),
            new: path(new),
            newer: path(newer),
        }
    }
}

/// A control field of a .deb (`dpkg-deb -f`).
pub fn deb_field(deb: &Path, field: &str) -> String {
    let out = Command::new("dpkg-deb")
        .arg("-f")
        .arg(deb)
        .arg(field)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// lintian, pedantic, with no overrides: it must say nothing.
pub fn assert_lintian_clean(deb: &Path) {
    let out = Command::new("lintian")
        .args(["--pedantic", "--fail-on", "error,warning,pedantic"])
        .arg(deb)
        .output()
        .expect("run lintian (apt-get install lintian)");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "lintian on {}:\n{said}{}",
        deb.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The fields every build must have: the architecture, computed Depends, and a version
/// above the older build's.
pub fn assert_control_fields(debs: &Debs, arch: &str) {
    assert_eq!(deb_field(&debs.new, "Architecture"), arch);
    let depends = deb_field(&debs.new, "Depends");
    for needed in ["libc6", "libsqlite3-0", "adduser"] {
        assert!(depends.contains(needed), "Depends: {depends:?}");
    }
    assert_eq!(deb_field(&debs.new, "Recommends"), "nginx");
    assert_eq!(deb_field(&debs.new, "Suggests"), "postgresql");
    let (v1, v2) = (
        deb_field(&debs.old, "Version"),
        deb_field(&debs.new, "Version"),
    );
    let newer = Command::new("dpkg")
        .args(["--compare-versions", &v2, "gt", &v1])
        .status()
        .unwrap();
    assert!(newer.success(), "{v2} is not newer than {v1}");
}

/// The files a package installs (`dpkg-deb -c`), without sizes, dates and the binary's
/// architecture: two builds for two architectures must list the same.
pub fn file_list(deb: &Path) -> Vec<String> {
    let out = Command::new("dpkg-deb")
        .arg("-c")
        .arg(deb)
        .output()
        .unwrap();
    let mut files: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            format!("{} {} {}", fields[0], fields[1], fields[5..].join(" "))
        })
        .collect();
    files.sort();
    files
}

const PORTS: [u16; 3] = [8001, 8002, 8003];

fn ports_listening(host: &Container) -> Vec<u16> {
    let text = host.sh("ss -ltnH");
    PORTS
        .into_iter()
        .filter(|p| text.contains(&format!("127.0.0.1:{p} ")))
        .collect()
}

fn main_pids(host: &Container) -> Vec<String> {
    PORTS
        .iter()
        .map(|p| {
            host.sh(&format!(
                "systemctl show -p MainPID --value shop@{p}.service"
            ))
            .trim()
            .to_owned()
        })
        .collect()
}

/// A step of a long test and how long it took, printed as it ends (the cost of the
/// emulated platforms is visible in the test output).
pub struct Step(&'static str, Instant, Platform);

impl Step {
    pub fn start(platform: Platform, what: &'static str) -> Step {
        Step(what, Instant::now(), platform)
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            eprintln!(
                "  [{} {}] {}: {:.1} s",
                self.2.suite,
                self.2.arch,
                self.0,
                self.1.elapsed().as_secs_f64()
            );
        }
    }
}

/// The package's nginx site, enabled as its first lines say: it passes `nginx -t` with the
/// snippets the package installs and serves the instances' pages, with shop's security
/// headers once each and without X-Shop-Instance (its access log names the instance);
/// nginx's own answers (403 for /metrics) carry them too. Then it is switched off again.
fn the_packages_nginx_site_serves_the_instances(host: &Container) {
    host.sh("rm -f /etc/nginx/sites-enabled/default \
         && ln -s ../sites-available/shop /etc/nginx/sites-enabled/shop \
         && nginx -t 2>&1 && systemctl restart nginx");
    let headers = |path: &str| {
        host.net_sh(&format!(
            "curl -s -o /dev/null -D - http://127.0.0.1{path} | tr -d '\\r' | tr A-Z a-z"
        ))
    };
    let page = headers("/items");
    for name in [
        "content-security-policy:",
        "x-content-type-options:",
        "referrer-policy:",
    ] {
        assert_eq!(page.matches(name).count(), 1, "{name} once:\n{page}");
    }
    assert!(
        !page.contains("x-shop-instance:"),
        "not the public's: {page}"
    );
    let answered = super::ansible::answered_by(host, "/items");
    assert!(
        !answered.is_empty() && answered.iter().all(|i| i.starts_with("800")),
        "the site's access log names the instance: {answered:?}"
    );
    let metrics = headers("/metrics");
    assert!(
        metrics.starts_with("http/1.1 403")
            && metrics.contains("content-security-policy: default-src 'none';")
            && metrics.contains("x-content-type-options: nosniff"),
        "nginx's own 403 carries them too:\n{metrics}"
    );
    host.sh("rm /etc/nginx/sites-enabled/shop && systemctl stop nginx");
}

/// The package's whole life on a real systemd host of `platform`.
pub fn package_lifecycle(platform: Platform, debs: &Debs) -> Container {
    let step = Step::start(platform, "boot the host");
    let host = Container::boot(&Image::shop_host_on(platform), "shop-package");
    host.copy_in(&debs.old, "/root/shop-old.deb", 0o644);
    host.copy_in(&debs.new, "/root/shop-new.deb", 0o644);
    drop(step);

    // apt install ./shop.deb: three sockets listening, each instance serves.
    let step = Step::start(platform, "install, three instances ready");
    host.sh("cd /root && apt-get install -y -q ./shop-old.deb");
    wait_until("the three sockets listen", Duration::from_secs(60), || {
        ports_listening(&host).len() == 3
    });
    for port in PORTS {
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
    assert_eq!(
        host.sh("dpkg --print-architecture; dpkg-query -W -f '${Architecture}\\n' shop"),
        format!("{0}\n{0}\n", platform.arch),
        "the host and the installed package are {}",
        platform.arch
    );
    drop(step);

    // systemctl start shop@8001 works.
    host.sh("systemctl stop shop@8001.service && systemctl start shop@8001 && systemctl is-active shop@8001");

    // The previous release has no accounts: anyone adds an item there. A form rendered by
    // one instance posts to another (the generated secret is shared).
    let created = host.net_sh(
        r#"curl -s -c jar http://127.0.0.1:8001/ > form.html
        token=$(sed -n 's/.*name="csrf_token" value="\([0-9a-f]*\)".*/\1/p' form.html)
        key=$(sed -n 's/.*name="idempotency_key" value="\([0-9a-f]*\)".*/\1/p' form.html)
        curl -s -o /dev/null -w '%{http_code}' -b jar --data "csrf_token=$token&idempotency_key=$key&name=Kept+item&quantity=3&description=survives+upgrades" http://127.0.0.1:8002/"#,
    );
    assert_eq!(created.trim(), "303", "a form from 8001 posted to 8002");

    // Upgrade while requests flow: zero failures, instances restarted one after another.
    let step = Step::start(platform, "upgrade under load");
    let before = main_pids(&host);
    let cursor = host
        .sh("journalctl -n 0 --show-cursor --no-pager")
        .lines()
        .find_map(|l| l.strip_prefix("-- cursor: "))
        .expect("a journal cursor")
        .to_owned();
    let urls = PORTS.map(|p| format!("http://127.0.0.1:{p}/items"));
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let load = host.start_request_loop(&urls, 3000, 20);
    std::thread::sleep(Duration::from_millis(500));
    let upgrade = host.sh("cd /root && apt-get install -y -q ./shop-new.deb 2>&1");
    let ok = load.stop().assert_all_ok("the upgrade", 20);
    eprintln!(
        "  [{} {}] {ok} requests during the upgrade, 0 failed",
        platform.suite, platform.arch
    );
    assert_eq!(
        host.sh("dpkg-query -W -f '${Version}' shop"),
        deb_field(&debs.new, "Version")
    );
    let after = main_pids(&host);
    for (b, a) in before.iter().zip(&after) {
        assert_ne!(
            b, a,
            "every running instance was restarted: {before:?} → {after:?}"
        );
    }
    assert_one_at_a_time(&host, &cursor);
    assert_no_error_printed("the upgrade", &upgrade);
    for port in PORTS {
        let (status, body) = host.http_get(&format!("http://127.0.0.1:{port}/items"));
        assert_eq!(status, 200);
        assert!(
            body.contains("Kept item"),
            "data kept across the upgrade (instance {port})"
        );
    }
    // The new release has accounts: sign up on one instance, add an item through another.
    let created = host.net_sh(&format!(
        r#"{}
        sign_up http://127.0.0.1:8001 {}; echo
        curl -s -b jar -c jar http://127.0.0.1:8001/ > form.html
        curl -s -o /dev/null -w '%{{http_code}}' -b jar --data "csrf_token=$(form_field form.html csrf_token)&idempotency_key=$(form_field form.html idempotency_key)&name=Sold+item&quantity=3&price=12.50&description=after+the+upgrade" http://127.0.0.1:8002/
        echo; curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.1:8003/"#,
        super::SIGN_UP_SH,
        super::fresh_username()
    ));
    assert_eq!(
        created.trim(),
        "303\n303\n303",
        "signed up on 8001, an item added through 8002; 8003 sends anonymous visitors to log in"
    );
    assert!(host
        .http_get("http://127.0.0.1:8003/items")
        .1
        .contains("Sold item"));
    // And buying: another person buys two from its page (a form from 8003 posted to
    // 8001), and one is left.
    let bought = host.net_sh(&format!(
        r#"{}
        sign_up http://127.0.0.1:8003 {} > /dev/null
        id=$(curl -s http://127.0.0.1:8003/items | sed -n 's|.*<a href="/items/\([0-9]*\)">Sold item<.*|\1|p')
        curl -s -b jar -c jar http://127.0.0.1:8003/items/$id > item.html
        curl -s -o /dev/null -w '%{{http_code}} ' -b jar --data "csrf_token=$(form_field item.html csrf_token)&idempotency_key=$(form_field item.html idempotency_key)&price_minor=1250&quantity=2" http://127.0.0.1:8001/items/$id/buy
        curl -s http://127.0.0.1:8002/items/$id | grep -o '<dd class="stock">[^<]*</dd>'"#,
        super::SIGN_UP_SH,
        super::fresh_username()
    ));
    assert_eq!(
        bought.trim(),
        "303 <dd class=\"stock\">1</dd>",
        "an order placed after the upgrade"
    );
    drop(step);

    backups_on_the_host(&host, platform, &upgrade);
    the_packages_nginx_site_serves_the_instances(&host);

    // Back to the older package: it runs on the newer schema (migrations only add).
    let step = Step::start(platform, "downgrade to the older package");
    host.sh("cd /root && apt-get install -y -q --allow-downgrades ./shop-old.deb");
    assert_eq!(
        host.sh("dpkg-query -W -f '${Version}' shop"),
        deb_field(&debs.old, "Version")
    );
    for port in PORTS {
        let (status, body) = host.http_get(&format!("http://127.0.0.1:{port}/items"));
        assert_eq!(status, 200, "instance {port} serves after the downgrade");
        assert!(body.contains("Kept item"), "no item lost in the downgrade");
    }
    let check = host.sh("runuser -u shop -- shop check");
    assert!(check.contains("newer than this shop knows"), "{check}");
    drop(step);

    // apt remove: instances stopped, data and configuration kept.
    let step = Step::start(platform, "remove, purge, reinstall");
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

    // apt purge: configuration and data gone; the backups are kept (they are what a
    // person restores from after a purge).
    host.sh("apt-get purge -y -q shop");
    host.sh("test ! -e /etc/shop && test ! -e /var/lib/shop");
    host.sh("ls /var/backups/shop/shop-*.backup");

    // Reinstall after purge: serves again, from a fresh database, and says nothing that
    // reads as a failure.
    let fresh = host.sh("cd /root && apt-get install -y -q ./shop-new.deb 2>&1");
    assert_no_error_printed("a fresh installation", &fresh);
    wait_until("the sockets listen again", Duration::from_secs(60), || {
        ports_listening(&host).len() == 3
    });
    let (status, body) = host.http_get("http://127.0.0.1:8001/items");
    assert_eq!(status, 200);
    assert!(!body.contains("Kept item"), "purged data stays gone");
    drop(step);
    host
}

/// An installation's output has no line that reads as a failure (such as deb-systemd-
/// helper's "error: unable to read shop@8001.socket" for a template's instance).
fn assert_no_error_printed(what: &str, output: &str) {
    let alarming: Vec<&str> = output
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("error") || l.contains("warning") || l.contains("failed")
        })
        .collect();
    assert!(
        alarming.is_empty(),
        "{what} printed {alarming:?}:\n{output}"
    );
}

/// The backups on a host that has just been upgraded across a migration: the one the
/// upgrade took before migrating, the daily timer, retention, and a failure that shows.
fn backups_on_the_host(host: &Container, platform: Platform, upgrade: &str) {
    let step = Step::start(
        platform,
        "backups: before the migration, timer, retention, failure",
    );
    // The older package is the previous release, which lacks this tree's newest
    // migrations (one or several).
    let newest = super::migration_count();
    let after = format!("-schema{newest}.backup");
    let backups = || host.sh("ls /var/backups/shop/");
    let before_upgrade = backups();
    let [taken] = before_upgrade.lines().collect::<Vec<_>>()[..] else {
        panic!("one backup, taken by the upgrade: {before_upgrade}\n{upgrade}")
    };
    let schema: usize = taken
        .rsplit_once("-schema")
        .and_then(|(_, rest)| rest.strip_suffix(".backup")?.parse().ok())
        .unwrap_or_else(|| panic!("a backup named with its schema: {taken}"));
    assert!(
        schema < newest,
        "taken before the migrations up to {newest} were applied: {taken}"
    );
    let content = host.sh(&format!("cat /var/backups/shop/{taken}"));
    assert!(content.contains("Kept item"), "{content}");
    // Kept aside for a restore below (retention will remove it).
    host.sh(&format!(
        "cp -p /var/backups/shop/{taken} /root/before-upgrade.backup"
    ));
    assert_eq!(
        host.sh(&format!(
            "stat -c '%U:%G %a' /var/backups/shop /var/backups/shop/{taken}"
        )),
        "shop:shop 750\nshop:shop 640\n"
    );

    assert_eq!(
        host.sh("systemctl is-enabled shop-backup.timer; systemctl is-active shop-backup.timer"),
        "enabled\nactive\n"
    );
    host.sh("systemctl start shop-backup.service");
    assert!(
        backups().lines().any(|l| l.ends_with(&after)),
        "the service wrote a backup of the migrated database: {}",
        backups()
    );

    // Retention: with backup.keep = 2, three more runs leave the newest two.
    host.sh("mkdir -p /etc/systemd/system/shop-backup.service.d && printf '[Service]\\nEnvironment=SHOP_BACKUP__KEEP=2\\n' > /etc/systemd/system/shop-backup.service.d/keep.conf && systemctl daemon-reload");
    for _ in 0..3 {
        host.sh("systemctl start shop-backup.service");
    }
    assert_eq!(backups().lines().count(), 2, "{}", backups());
    assert!(!backups().contains(taken), "the oldest went first");

    // A backup that cannot be written leaves the unit failed, with the reason.
    host.sh("chmod 0500 /var/backups/shop");
    let failed = host.exec(&["systemctl", "start", "shop-backup.service"]);
    assert!(!failed.status.success());
    assert!(host
        .sh("systemctl --failed --plain --no-legend")
        .contains("shop-backup.service"));
    assert!(host
        .sh("journalctl -u shop-backup --no-pager | tail -5")
        .contains("cannot write in /var/backups/shop"));
    host.sh("chmod 0750 /var/backups/shop && systemctl reset-failed shop-backup.service && rm -r /etc/systemd/system/shop-backup.service.d && systemctl daemon-reload");

    // The database file is lost; the newest backup brings the items back.
    let newest = backups().lines().last().unwrap().to_owned();
    host.sh("systemctl stop 'shop@*.service' && rm -f /var/lib/shop/shop.db /var/lib/shop/shop.db-wal /var/lib/shop/shop.db-shm");
    // The previous release's backup (from before buying, and before accounts) restores
    // into this release: its item back, no orders.
    let restored = host.sh(
        "install -o shop -g shop -m 0640 /root/before-upgrade.backup /var/backups/shop/ && \
         runuser -u shop -- shop restore /var/backups/shop/before-upgrade.backup && \
         rm /var/backups/shop/before-upgrade.backup",
    );
    assert!(
        restored.starts_with(
            "restored 1 items and the users there were kept (a backup from before accounts)"
        ),
        "{restored}"
    );
    // The newest backup then replaces what the old one brought back: a database that
    // holds items is replaced only when asked (`--force`).
    let refused = host.exec(&[
        "runuser",
        "-u",
        "shop",
        "--",
        "shop",
        "restore",
        &format!("/var/backups/shop/{newest}"),
    ]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("the database holds 1 items"),
        "{refused:?}"
    );
    let restored = host.sh(&format!(
        "runuser -u shop -- shop restore --force /var/backups/shop/{newest}"
    ));
    assert!(
        restored.starts_with("restored 2 items and 2 users, 0 API tokens and 1 orders")
            && restored.contains("replacing 1"),
        "{restored}"
    );
    let (status, body) = host.http_get("http://127.0.0.1:8001/items");
    assert_eq!(status, 200);
    assert!(
        body.contains("Kept item") && body.contains("Sold item"),
        "the items are back after the restore: {body}"
    );
    drop(step);
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
