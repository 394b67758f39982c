//! Running the project's Ansible playbook from the tests: the tools tests/run installs
//! under target/tools, a private ANSIBLE_HOME, and a deployment onto a booted container
//! (community.docker.nsenter, no ssh), checked the way a person would.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::container::{Container, Image, MirrorRelay, Platform};
use super::deb::Step;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A tool tests/run installs into target/tools.
pub fn tool(name: &str) -> PathBuf {
    let path = repo().join("target/tools/bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: tests/run installs it",
        path.display()
    );
    path
}

/// An ansible command with a private home and temp dir, without colours.
pub fn ansible(program: &str, home: &Path) -> Command {
    let mut command = Command::new(tool(program));
    command
        .current_dir(repo().join("ansible"))
        .env("ANSIBLE_CONFIG", repo().join("ansible/ansible.cfg"))
        .env("ANSIBLE_HOME", home)
        .env("ANSIBLE_LOCAL_TEMP", home.join("tmp"))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_FORCE_COLOR", "0")
        .env(
            "PATH",
            format!(
                "{}:{}",
                repo().join("target/tools/bin").display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        );
    command
}

pub use super::said;

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// What a test deployment puts on its one host.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// The host is in shop_monitor too (Prometheus).
    pub monitoring: bool,
    /// The instances' ports (the inventory's `shop_instances`).
    pub instances: &'static [u16],
}

impl Layout {
    /// The default: three instances, no monitoring.
    pub const DEFAULT: Layout = Layout {
        monitoring: false,
        instances: &[8001, 8002, 8003],
    };
}

/// Write the inventory `deploy` uses: the container in every group (and in shop_monitor
/// with `layout.monitoring`), with `layout.instances`.
pub fn write_inventory(host: &Container, home: &Path, layout: Layout) {
    let monitor = if layout.monitoring {
        "[shop_monitor]\ntesthost\n"
    } else {
        ""
    };
    let instances: Vec<String> = layout.instances.iter().map(u16::to_string).collect();
    std::fs::write(
        home.join("inventory.ini"),
        format!(
            "[shop_app]\ntesthost ansible_connection=community.docker.nsenter ansible_nsenter_pid={} \
             ansible_python_interpreter=/usr/bin/python3 ansible_become_method=su shop_instances=\"[{}]\"\n\
             [shop_db]\ntesthost\n[shop_web]\ntesthost\n{monitor}",
            host.pid1,
            instances.join(", ")
        ),
    )
    .unwrap();
}

/// Run the playbook against the container (with the inventory `write_inventory` wrote);
/// the recap's `changed=` count.
pub fn deploy(host: &Container, home: &Path, deb: &Path, extra: &[&str]) -> u32 {
    run_playbook(host, home, "deploy.yml", deb, extra)
}

/// Run one of the project's playbooks against the container; the recap's `changed=`.
pub fn run_playbook(
    host: &Container,
    home: &Path,
    playbook: &str,
    deb: &Path,
    extra: &[&str],
) -> u32 {
    let inventory = home.join("inventory.ini");
    let out = ansible("ansible-playbook", home)
        .arg("-i")
        .arg(&inventory)
        .arg(playbook)
        .args([
            "-e",
            &format!("shop_deb={}", deb.display()),
            "-e",
            &format!("shop_secret_file={}", home.join("secret").display()),
        ])
        .args(extra)
        .output()
        .unwrap();
    let text = said(&out);
    if !out.status.success() {
        let journal = host.exec(&["journalctl", "--no-pager", "-n", "60", "-p", "notice"]);
        panic!(
            "ansible-playbook {extra:?} failed:\n{}\njournal:\n{}",
            tail(&text, 30),
            String::from_utf8_lossy(&journal.stdout)
        );
    }
    let recap = text
        .lines()
        .rev()
        .find(|l| l.starts_with("testhost") && l.contains("changed="))
        .expect("a play recap");
    recap
        .split("changed=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// The ports of the instances whose sockets are active or enabled on `host`.
pub fn running_instances(host: &Container) -> Vec<u16> {
    let units = host.sh(
        "{ systemctl list-units --plain --no-legend --state=active 'shop@*.socket' | cut -d ' ' -f 1; \
           find /etc/systemd/system -path '*.wants/shop@*.socket' -printf '%f\\n'; } | sort -u",
    );
    units
        .lines()
        .filter_map(|unit| {
            unit.strip_prefix("shop@")?
                .strip_suffix(".socket")?
                .parse()
                .ok()
        })
        .collect()
}

/// A host deployed by the playbook, with what keeps it reachable.
pub struct Deployed {
    pub host: Container,
    pub home: tempfile::TempDir,
    _relay: MirrorRelay,
}

/// Boot a fresh host of `platform`, deploy `deb` onto it (PostgreSQL, the package, the
/// instances of `layout`, nginx), and check it as a person would: a form posted through
/// nginx on port 80, the item listed and stored in PostgreSQL, every instance answering
/// and no other one running; then a second run that changes nothing.
pub fn deploy_fresh_host(platform: Platform, deb: &Path, layout: Layout) -> Deployed {
    let step = Step::start(platform, "boot the host");
    let home = tempfile::tempdir().unwrap();
    let host = Container::boot(&Image::shop_host_on(platform), "shop-ansible");
    let relay = host.relay_apt_to_mirror();
    write_inventory(&host, home.path(), layout);
    drop(step);

    let step = Step::start(platform, "first playbook run");
    assert!(
        deploy(&host, home.path(), deb, &[]) > 0,
        "the first run changes things"
    );
    drop(step);

    let flow = host.net_sh(
        r#"curl -s -c jar http://127.0.0.1/ > form.html
        token=$(sed -n 's/.*name="csrf_token" value="\([0-9a-f]*\)".*/\1/p' form.html)
        key=$(sed -n 's/.*name="idempotency_key" value="\([0-9a-f]*\)".*/\1/p' form.html)
        curl -s -o /dev/null -w '%{http_code} %{redirect_url}\n' -b jar --data "csrf_token=$token&idempotency_key=$key&name=Deployed+by+Ansible&quantity=7&description=on+PostgreSQL" http://127.0.0.1/
        curl -s http://127.0.0.1/items | grep -c 'Deployed by Ansible'
        for i in $(seq 1 30); do curl -s -o /dev/null -D - http://127.0.0.1/healthz | grep -i '^x-shop-instance'; done | sort -u | wc -l"#,
    );
    let lines: Vec<&str> = flow.lines().collect();
    let instances = layout.instances.len().to_string();
    assert_eq!(
        lines,
        ["303 http://127.0.0.1/items", "1", instances.as_str()],
        "303 to the list, the item listed, every instance answers"
    );
    assert_eq!(
        running_instances(&host),
        layout.instances,
        "the instances listed run, and no other (the package's own list included)"
    );
    let rows = host.sh("runuser -u postgres -- psql -d shop -tAc \"SELECT count(*) FROM items WHERE name = 'Deployed by Ansible' AND quantity = 7\"");
    assert_eq!(rows.trim(), "1", "PostgreSQL holds the row");
    assert_eq!(
        host.sh("dpkg-query -W -f '${Architecture}' shop"),
        platform.arch
    );

    let step = Step::start(platform, "second playbook run");
    assert_eq!(
        deploy(&host, home.path(), deb, &[]),
        0,
        "a second run changes nothing"
    );
    drop(step);
    Deployed {
        host,
        home,
        _relay: relay,
    }
}
