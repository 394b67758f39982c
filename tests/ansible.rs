//! The Ansible playbook: syntax and ansible-lint, the templates for a multi-host inventory,
//! and a real deployment onto a Debian 12 host with systemd as PID 1: a fresh host to a
//! working shop behind nginx on PostgreSQL, a second run that changes nothing, a clean
//! `--check --diff`, and a newer package deployed under load with no failed request.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::container::{Container, Image};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tool(name: &str) -> PathBuf {
    let path = repo().join("target/tools/bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: tests/run installs it",
        path.display()
    );
    path
}

/// An ansible command with a private home and temp dir, without colours.
fn ansible(program: &str, home: &Path) -> Command {
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

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_playbook_passes_syntax_check_and_ansible_lint() {
    let home = tempfile::tempdir().unwrap();
    let out = ansible("ansible-playbook", home.path())
        .args([
            "--syntax-check",
            "-i",
            "inventory.example.ini",
            "deploy.yml",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", said(&out));
    let out = ansible("ansible-lint", home.path())
        .args(["--profile", "production", "--nocolor", "."])
        .output()
        .unwrap();
    assert!(out.status.success(), "ansible-lint:\n{}", said(&out));
}

fn render(inventory: &str) -> (tempfile::TempDir, impl Fn(&str) -> String) {
    let home = tempfile::tempdir().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let out = ansible("ansible-playbook", home.path())
        .arg("-i")
        .arg(repo().join("tests/ansible").join(inventory))
        .arg(repo().join("tests/ansible/render.yml"))
        .arg("-e")
        .arg(format!("out={}", out_dir.path().display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", said(&out));
    let dir = out_dir.path().to_path_buf();
    (out_dir, move |file: &str| {
        std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
    })
}

#[test]
fn the_templates_serve_one_host_and_several() {
    let (_keep, file) = render("one-host.ini");
    let package_default = std::fs::read_to_string(repo().join("nginx/shop-upstream.conf")).unwrap();
    assert_eq!(
        file("upstream-pi.conf"),
        package_default,
        "one host: the same upstream the package ships"
    );
    assert!(
        file("pg_hba-pi.conf").trim().is_empty(),
        "one host: peer authentication only, no pg_hba lines"
    );
    assert!(file("shop.toml-pi")
        .contains(r#"url = "postgres://shop@localhost/shop?host=/var/run/postgresql""#));

    let (_keep, file) = render("two-app-hosts.ini");
    let servers: Vec<String> = file("upstream-web1.conf")
        .lines()
        .filter(|l| l.trim_start().starts_with("server "))
        .map(|l| l.trim().to_owned())
        .collect();
    assert_eq!(
        servers,
        [
            "server 10.0.0.11:8001 max_fails=3 fail_timeout=5s;",
            "server 10.0.0.11:8002 max_fails=3 fail_timeout=5s;",
            "server 10.0.0.11:8003 max_fails=3 fail_timeout=5s;",
            "server 10.0.0.12:8001 max_fails=3 fail_timeout=5s;",
            "server 10.0.0.12:8002 max_fails=3 fail_timeout=5s;",
        ]
    );
    let hba: Vec<String> = file("pg_hba-db1.conf")
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        hba,
        [
            "host shop shop 10.0.0.11/32 scram-sha-256",
            "host shop shop 10.0.0.12/32 scram-sha-256"
        ]
    );
    assert!(file("listen.conf-app2").contains("ListenStream=10.0.0.12:%i"));
    assert!(
        file("shop.toml-app1").contains("@10.0.0.20/shop"),
        "app hosts reach the database host over TCP"
    );
}

/// Run the playbook against the container; the recap's `changed=` count.
fn deploy(host: &Container, home: &Path, deb: &str, extra: &[&str]) -> u32 {
    let inventory = home.join("inventory.ini");
    std::fs::write(
        &inventory,
        format!(
            "[shop_app]\ntesthost ansible_connection=community.docker.nsenter ansible_nsenter_pid={} \
             ansible_python_interpreter=/usr/bin/python3 ansible_become_method=su\n[shop_db]\ntesthost\n[shop_web]\ntesthost\n",
            host.pid1
        ),
    )
    .unwrap();
    let out = ansible("ansible-playbook", home)
        .arg("-i")
        .arg(&inventory)
        .arg("deploy.yml")
        .args([
            "-e",
            &format!("shop_deb={deb}"),
            "-e",
            &format!("shop_secret_file={}", home.join("secret").display()),
        ])
        .args(extra)
        .output()
        .unwrap();
    let text = said(&out);
    if !out.status.success() {
        let journal = host.exec(&["journalctl", "--no-pager", "-n", "40", "-u", "shop@*"]);
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

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[test]
fn a_fresh_host_is_deployed_idempotently_and_upgraded_under_load() {
    let old = std::env::var("SHOP_DEB_OLD").expect("SHOP_DEB_OLD: tests/run builds the packages");
    let new = std::env::var("SHOP_DEB_NEW").expect("SHOP_DEB_NEW: tests/run builds the packages");
    let (old, new) = (
        std::fs::canonicalize(old).unwrap(),
        std::fs::canonicalize(new).unwrap(),
    );
    let home = tempfile::tempdir().unwrap();
    let host = Container::boot(&Image::shop_host(), "shop-ansible");
    let _relay = host.relay_apt_to_mirror();

    assert!(
        deploy(&host, home.path(), old.to_str().unwrap(), &[]) > 0,
        "the first run changes things"
    );

    // A person's flow through nginx on port 80: the form, an item, the list.
    let flow = host.net_sh(
        r#"curl -s -c jar http://127.0.0.1/ > form.html
        token=$(sed -n 's/.*name="csrf_token" value="\([0-9a-f]*\)".*/\1/p' form.html)
        key=$(sed -n 's/.*name="idempotency_key" value="\([0-9a-f]*\)".*/\1/p' form.html)
        curl -s -o /dev/null -w '%{http_code} %{redirect_url}\n' -b jar --data "csrf_token=$token&idempotency_key=$key&name=Deployed+by+Ansible&quantity=7&description=on+PostgreSQL" http://127.0.0.1/
        curl -s http://127.0.0.1/items | grep -c 'Deployed by Ansible'
        for i in $(seq 1 30); do curl -s -o /dev/null -D - http://127.0.0.1/healthz | grep -i '^x-shop-instance'; done | sort -u | wc -l"#,
    );
    let lines: Vec<&str> = flow.lines().collect();
    assert_eq!(
        lines,
        ["303 http://127.0.0.1/items", "1", "3"],
        "303 to the list, the item listed, all three instances answer"
    );
    let rows = host.sh("runuser -u postgres -- psql -d shop -tAc \"SELECT count(*) FROM items WHERE name = 'Deployed by Ansible' AND quantity = 7\"");
    assert_eq!(rows.trim(), "1", "PostgreSQL holds the row");

    assert_eq!(
        deploy(&host, home.path(), old.to_str().unwrap(), &[]),
        0,
        "a second run changes nothing"
    );
    assert_eq!(
        deploy(
            &host,
            home.path(),
            old.to_str().unwrap(),
            &["--check", "--diff"]
        ),
        0,
        "--check --diff is clean"
    );

    // A newer package while requests flow through nginx.
    let load = host.start_request_loop(&["http://127.0.0.1/items"], 400, 20);
    assert!(deploy(&host, home.path(), new.to_str().unwrap(), &[]) > 0);
    let (ok, bad, failures) = load.finish();
    assert_eq!(
        (ok, bad),
        (400, 0),
        "failed requests during the upgrade:\n{failures}"
    );
    let version = host.sh("dpkg-query -W -f '${Version}' shop");
    assert!(
        new.to_str().unwrap().contains(version.trim()),
        "upgraded to {version}"
    );
}
