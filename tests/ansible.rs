//! The Ansible playbook: syntax and ansible-lint, the templates for a multi-host inventory,
//! and a real deployment onto a Debian 12 host with systemd as PID 1: a fresh host to a
//! working shop behind nginx on PostgreSQL, a second run that changes nothing, a clean
//! `--check --diff`, and a newer package deployed under load with no failed request.

mod common;

use common::ansible::{ansible, deploy, deploy_fresh_host, repo, said};
use common::container::Platform;
use common::deb::Debs;

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

#[test]
fn a_fresh_host_is_deployed_idempotently_and_upgraded_under_load() {
    let debs = Debs::amd64();
    let deployed = deploy_fresh_host(Platform::BOOKWORM_AMD64, &debs.old);
    let (host, home) = (&deployed.host, deployed.home.path());
    assert_eq!(
        deploy(host, home, &debs.old, &["--check", "--diff"]),
        0,
        "--check --diff is clean"
    );

    // A newer package while requests flow through nginx.
    let load = host.start_request_loop(&["http://127.0.0.1/items"], 4000, 20);
    assert!(deploy(host, home, &debs.new, &[]) > 0);
    let (ok, bad, failures) = load.stop();
    assert_eq!(bad, 0, "failed requests during the upgrade:\n{failures}");
    assert!(ok >= 50, "the load ran through the upgrade ({ok} requests)");
    let version = host.sh("dpkg-query -W -f '${Version}' shop");
    assert_eq!(version, common::deb::deb_field(&debs.new, "Version"));
}
