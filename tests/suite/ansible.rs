//! The Ansible playbook: syntax and ansible-lint, the templates for a multi-host inventory,
//! and a real deployment onto a Debian 12 host with systemd as PID 1: a fresh host to a
//! working shop behind nginx on PostgreSQL, a second run that changes nothing, a clean
//! `--check --diff`, a newer package deployed under load with no failed request, and a
//! 95-second PostgreSQL outage under load with every request answered and no restart.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::ansible::{ansible, deploy, deploy_fresh_host, repo, run_playbook, said, Layout};
use common::container::{unix_now, Answer, Answers, Container, Netns, Platform};
use common::deb::Debs;
use common::tls;
use common::wait_until;

#[test]
#[ignore = "Ansible tier: ansible from target/tools (and root for a host); tests/run runs it"]
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

/// The value of SHOP_INSTANCES in an /etc/default/shop.
fn instance_list(default_file: &str) -> String {
    default_file
        .lines()
        .find_map(|l| l.strip_prefix("SHOP_INSTANCES="))
        .expect("a SHOP_INSTANCES line")
        .trim_matches('"')
        .to_owned()
}

#[test]
#[ignore = "Ansible tier: ansible from target/tools (and root for a host); tests/run runs it"]
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
    let packaged_instances = std::fs::read_to_string(repo().join("packaging/default")).unwrap();
    assert_eq!(
        instance_list(&file("default-pi")),
        instance_list(&packaged_instances),
        "one host: the instances the package lists itself"
    );

    let (_keep, file) = render("two-app-hosts.ini");
    let servers: Vec<String> = file("upstream-web1.conf")
        .lines()
        .filter(|l| l.trim_start().starts_with("server "))
        .map(|l| l.trim().to_owned())
        .collect();
    // The options of each line are the packaged upstream's.
    let options = package_default
        .lines()
        .find_map(|l| l.trim().strip_prefix("server 127.0.0.1:8001 "))
        .unwrap();
    // Interleaved by host: nginx's next try after a failure goes to another host.
    let expected: Vec<String> = [
        "10.0.0.11:8001",
        "10.0.0.12:8001",
        "10.0.0.11:8002",
        "10.0.0.12:8002",
        "10.0.0.11:8003",
    ]
    .iter()
    .map(|server| format!("server {server} {options}"))
    .collect();
    assert_eq!(servers, expected);
    let hba: Vec<String> = file("pg_hba-db1.conf")
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        hba,
        [
            "hostssl shop shop 10.0.0.11/32 scram-sha-256",
            "hostssl shop shop 10.0.0.12/32 scram-sha-256"
        ]
    );
    assert!(file("listen.conf-app2").contains("ListenStream=10.0.0.12:%i"));
    assert_eq!(instance_list(&file("default-app2")), "8001 8002");
    let app_config = file("shop.toml-app1");
    assert!(
        app_config.contains(
            "@10.0.0.20/shop?sslmode=verify-full&sslrootcert=/etc/shop/database-ca.crt\""
        ),
        "app hosts reach the database host over TLS, verifying it: {app_config}"
    );
    assert!(
        app_config.contains(r#"trusted_proxies = ["10.0.0.30"]"#),
        "the instances believe the web host, and only it, about HTTPS and addresses: {app_config}"
    );
    let allowed = |rules: &str| -> String {
        rules
            .lines()
            .find_map(|l| l.trim().strip_prefix("elements = "))
            .unwrap_or("none")
            .to_owned()
    };
    let rules = file("firewall-app1.nft");
    assert!(
        rules.contains("tcp dport { 8001, 8002, 8003 } reject with tcp reset"),
        "{rules}"
    );
    assert_eq!(
        allowed(&rules),
        "{ 10.0.0.30 }",
        "only the web host reaches the instances"
    );
    let rules = file("firewall-db1.nft");
    assert!(
        rules.contains("tcp dport { 5432 } reject with tcp reset"),
        "{rules}"
    );
    assert_eq!(
        allowed(&rules),
        "{ 10.0.0.11, 10.0.0.12 }",
        "only the app hosts reach PostgreSQL"
    );
    assert!(
        file("prometheus-web1.yml").contains(
            r#"- targets: ["10.0.0.11:8001", "10.0.0.12:8001", "10.0.0.11:8002", "10.0.0.12:8002", "10.0.0.11:8003"]"#
        ),
        "a monitoring host scrapes every instance of every app host:\n{}",
        file("prometheus-web1.yml")
    );
}

/// testssl.sh on the default HTTPS site (the role's self-signed certificate, trusted as the
/// copy the playbook fetched): nothing HIGH or CRITICAL but what no self-signed certificate
/// can have, a revocation list or OCSP responder (the several-hosts test grades the same
/// site with a CA's certificate: nothing at all).
fn the_self_signed_site_grades_as_well_as_it_can(host: &Container, home: &Path) {
    let ca = common::ansible::credentials(home).join("testhost-https.crt");
    let findings = tls::grade(&host.network(), "localhost", "127.0.0.1", &ca);
    println!("testssl.sh findings (LOW and worse) on the self-signed site:");
    for finding in &findings {
        println!("  {finding}");
    }
    let serious: Vec<_> = tls::serious(&findings)
        .into_iter()
        .filter(|f| f.id != "cert_revocation")
        .collect();
    assert!(
        serious.is_empty(),
        "testssl.sh rates these HIGH or CRITICAL: {serious:#?}"
    );
    let days = host.sh("openssl x509 -noout -in /etc/nginx/shop-tls/shop.crt -startdate -enddate");
    assert!(
        !findings
            .iter()
            .any(|f| f.id.starts_with("cert_validityPeriod")),
        "a self-signed certificate lives at most 398 days: {days}"
    );
}

/// A host deployed by the role's first versions has a ten-year self-signed certificate:
/// the next run makes a new one (at most 398 days), nginx serves it, and the copy on the
/// control machine is the new one.
fn a_ten_year_certificate_is_made_again(host: &Container, home: &Path, deb: &Path) {
    host.sh(
        "cd /etc/nginx/shop-tls && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
         -nodes -sha256 -days 3650 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
         -keyout shop.key -out shop.crt 2>/dev/null && systemctl reload nginx",
    );
    assert!(
        deploy(host, home, deb, &[]) > 0,
        "the certificate is made again"
    );
    let lasts = host.sh(
        "openssl x509 -noout -in /etc/nginx/shop-tls/shop.crt -checkend $((398 * 86400)) >/dev/null \
         && echo 'over 398 days' || echo 'at most 398 days'",
    );
    assert_eq!(lasts.trim(), "at most 398 days");
    let ca = common::ansible::credentials(home).join("testhost-https.crt");
    let served = host
        .network()
        .with_curl_options(&["--cacert", ca.to_str().unwrap()])
        .http_get("https://127.0.0.1/healthz");
    assert_eq!(
        served.0, 200,
        "nginx serves the new certificate, the fetched copy trusts it"
    );
}

#[test]
#[ignore = "Ansible tier: ansible from target/tools (and root for a host); tests/run runs it"]
fn a_fresh_host_is_deployed_idempotently_and_upgraded_under_load() {
    let debs = Debs::amd64();
    let layout = Layout {
        monitoring: true,
        ..Layout::DEFAULT
    };
    let deployed = deploy_fresh_host(Platform::BOOKWORM_AMD64, &debs.new, layout);
    let (host, home, web) = (&deployed.host, deployed.home.path(), &deployed.web);
    the_self_signed_site_grades_as_well_as_it_can(host, home);
    prometheus_scrapes_the_instances(host, web);
    fetch_backup_brings_a_fresh_backup_home(host, home, &debs.new);
    assert_eq!(
        deploy(host, home, &debs.new, &["--check", "--diff"]),
        0,
        "--check --diff is clean"
    );

    // A newer package while requests flow through nginx.
    let load = web.start_request_loop(&["https://127.0.0.1/items"], 4000, 20);
    assert!(deploy(host, home, &debs.newer, &[]) > 0);
    load.stop().assert_all_ok("the upgrade", 50);
    let version = host.sh("dpkg-query -W -f '${Version}' shop");
    assert_eq!(version, common::deb::deb_field(&debs.newer, "Version"));
    a_ten_year_certificate_is_made_again(host, home, &debs.newer);
    a_lost_database_is_restored_from_its_backup(host, web);

    database_outage_under_load(host, web);
}

/// PostgreSQL loses the database under the running instances; the newest backup on the
/// host brings it back, served through nginx with no restart.
fn a_lost_database_is_restored_from_its_backup(host: &Container, web: &Netns) {
    let newest = host.sh("ls /var/backups/shop/ | tail -n 1");
    host.sh("runuser -u postgres -- psql -qc 'DROP DATABASE shop WITH (FORCE)' && runuser -u postgres -- createdb -O shop shop");
    let restored = host.sh(&format!(
        "runuser -u shop -- shop restore /var/backups/shop/{}",
        newest.trim()
    ));
    assert!(restored.starts_with("restored 1 items"), "{restored}");
    wait_until(
        "the restored item is served through nginx",
        Duration::from_secs(15),
        || {
            web.http_get("https://127.0.0.1/items")
                .1
                .contains("Deployed by Ansible")
        },
    );
}

/// `ansible-playbook fetch-backup.yml`: a backup taken now, on the host, fetched here.
fn fetch_backup_brings_a_fresh_backup_home(host: &Container, home: &Path, deb: &Path) {
    let timer = host.sh(
        "systemctl is-enabled shop-backup.timer; systemctl show -p TimersCalendar --value shop-backup.timer",
    );
    assert!(
        timer.starts_with("enabled\n{ OnCalendar=*-*-* 00:00:00 ;"),
        "the one app host runs the daily timer: {timer}"
    );
    let schedule = host.sh("systemctl cat shop-backup.timer");
    assert!(
        schedule.contains("# /etc/systemd/system/shop-backup.timer.d/schedule.conf")
            && schedule.contains("OnCalendar=daily"),
        "the schedule is the inventory's: {schedule}"
    );
    let into = home.join("backups");
    let extra = format!("shop_backup_fetch_dir={}", into.display());
    assert!(run_playbook(host, home, "fetch-backup.yml", deb, &["-e", &extra]) > 0);
    let fetched: Vec<_> = std::fs::read_dir(into.join("testhost"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let [backup] = &fetched[..] else {
        panic!("one backup fetched: {fetched:?}")
    };
    let text = std::fs::read_to_string(backup).unwrap();
    assert!(text.contains("Deployed by Ansible"), "{text}");
    assert!(text.lines().last().unwrap().starts_with("{\"end\":"));
}

/// The monitoring option: Debian's Prometheus on the host scrapes the three instances
/// (and the node exporter), and nginx keeps /metrics private.
fn prometheus_scrapes_the_instances(host: &Container, web: &Netns) {
    assert_eq!(web.http_get("https://127.0.0.1/metrics").0, 403);
    assert_eq!(host.http_get("http://127.0.0.1:8001/metrics").0, 200);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = host.http_get("http://127.0.0.1:9090/api/v1/targets?state=active");
        let targets: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let up: Vec<String> = targets["data"]["activeTargets"]
            .as_array()
            .map(|all| {
                all.iter()
                    .filter(|t| t["health"] == "up")
                    .map(|t| format!("{} {}", t["labels"]["job"], t["labels"]["instance"]))
                    .collect()
            })
            .unwrap_or_default();
        let shop_up = up.iter().filter(|t| t.starts_with("\"shop\"")).count();
        let node_up = up.iter().any(|t| t.starts_with("\"node\""));
        if shop_up == 3 && node_up {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus scrapes the three instances and the node exporter: {up:?}\n{body}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// How fast every answer must come while the database is away (see tests/resilience.rs).
const OUTAGE_BOUND_SECS: f64 = 1.5;
/// How long PostgreSQL stays stopped: longer than the watchdog (30 s) and than systemd's
/// start-limit window (10 s), so that a restart loop would show.
const OUTAGE: Duration = Duration::from_secs(95);

/// PostgreSQL stopped for 95 s under load through nginx, on the deployed host: every
/// request answered (503 for pages, 200 for /healthz) within the bound, no restart, no
/// failed unit, every instance ready within 5 s of the database's return, and every item
/// acknowledged before the outage still there.
fn database_outage_under_load(host: &Container, web: &Netns) {
    // A signed-in browser's session writes through the API with its form token.
    let acknowledged = web.sh(&format!(
        r#"{}
           sign_up https://127.0.0.1 {} > /dev/null
           curl -s -b jar -c jar https://127.0.0.1/items > page.html
           csrf=$(form_field page.html csrf_token)
           n=0; for i in $(seq 1 20); do
             code=$(curl -s -o /dev/null -w '%{{http_code}}' -b jar -H "x-csrf-token: $csrf" -H 'content-type: application/json' \
               -d "{{\"name\":\"before outage $i\",\"quantity\":$i,\"description\":\"kept\"}}" https://127.0.0.1/api/items)
             [ "$code" = 201 ] && n=$((n+1))
           done; echo $n"#,
        common::SIGN_UP_SH,
        common::fresh_username()
    ));
    let acknowledged: u32 = acknowledged.trim().parse().unwrap();
    assert_eq!(acknowledged, 20, "items created before the outage");
    let restarts_before = restarts(host);
    let failed_before = host.sh("systemctl list-units --failed --plain --no-legend");

    let urls = ["https://127.0.0.1/items", "https://127.0.0.1/healthz"];
    let loads: Vec<_> = (0..4)
        .map(|_| web.start_request_loop(&urls, 20_000, 50))
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let stopped_at = unix_now();
    host.sh("systemctl stop postgresql");
    let stopped = Instant::now();
    std::thread::sleep(OUTAGE.saturating_sub(stopped.elapsed()));
    let restarted_at = unix_now();
    host.sh("systemctl start postgresql");
    let back = Instant::now();
    let mut ready_after = Vec::new();
    for port in [8001, 8002, 8003] {
        while host.http_get(&format!("http://127.0.0.1:{port}/readyz")).0 != 200 {
            assert!(
                back.elapsed() < Duration::from_secs(15),
                "instance {port} not ready again"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        ready_after.push(back.elapsed());
    }
    std::thread::sleep(Duration::from_secs(2));
    let answers = loads
        .into_iter()
        .map(|l| l.stop())
        .fold(Answers::default(), Answers::merge);

    let during: Vec<&Answer> = answers
        .0
        .iter()
        .filter(|a| a.started > stopped_at + 0.5 && a.started + a.seconds < restarted_at)
        .collect();
    let slowest = during.iter().map(|a| a.seconds).fold(0.0, f64::max);
    let unanswered: Vec<&Answer> = answers
        .0
        .iter()
        .filter(|a| !matches!(a.status, 200 | 503))
        .collect();
    let wrong_during: Vec<&&Answer> = during
        .iter()
        .filter(|a| {
            a.status
                != if a.url.ends_with("/healthz") {
                    200
                } else {
                    503
                }
        })
        .collect();
    eprintln!(
        "  outage of {:.0} s: {} requests in all, {} during it (slowest {:.3} s), instances ready {:?} after the database",
        restarted_at - stopped_at,
        answers.0.len(),
        during.len(),
        slowest,
        ready_after
    );
    assert!(
        unanswered.is_empty(),
        "requests without an answer, or 502/504: {unanswered:#?}"
    );
    assert!(
        wrong_during.is_empty(),
        "during the outage: 503 for pages, 200 for /healthz: {:#?}",
        &wrong_during[..wrong_during.len().min(10)]
    );
    assert!(during.len() > 1000, "the load ran through the outage");
    assert!(
        slowest <= OUTAGE_BOUND_SECS,
        "every answer within {OUTAGE_BOUND_SECS} s; slowest {slowest:.3} s"
    );
    assert!(
        ready_after.iter().all(|d| *d <= Duration::from_secs(5)),
        "ready within 5 s of the database: {ready_after:?}"
    );
    assert_eq!(restarts(host), restarts_before, "no instance restarted");
    let failed = host.sh("systemctl list-units --failed --plain --no-legend");
    assert_eq!(failed, failed_before, "no unit failed during the outage");
    let shop_failed = host.sh("systemctl list-units --failed --plain --no-legend 'shop*'");
    assert!(shop_failed.trim().is_empty(), "failed: {shop_failed}");
    let kept = host.sh("runuser -u postgres -- psql -d shop -tAc \"SELECT count(*) FROM items WHERE name LIKE 'before outage %' AND description = 'kept'\"");
    assert_eq!(kept.trim(), "20", "every acknowledged item is still there");
}

/// systemd's automatic restarts of the three instances (NRestarts), and their PIDs.
fn restarts(host: &Container) -> String {
    host.sh("systemctl show -p NRestarts -p MainPID shop@8001.service shop@8002.service shop@8003.service")
}
