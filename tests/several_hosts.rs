//! Several hosts for real: a database host, two app hosts (three instances each) and a web
//! host, each a Debian 12 systemd-nspawn container, on a private network the test makes
//! (a bridge and veth pairs in network namespaces of its own), deployed by the playbook
//! from one inventory, the database password from Ansible Vault. Then, as a person
//! would check it: the site over HTTPS (HTTP/2) with a certificate given in the inventory
//! (issued by a CA the test makes, as a public CA would), graded by testssl.sh with no
//! finding rated HIGH or CRITICAL, served by both app hosts from PostgreSQL on the
//! database host; every hop guarded (PostgreSQL over TLS only, the firewall refusing
//! everyone else); a second run that changes nothing;
//! a newer package rolled over both app hosts under load, and one app host powered off
//! under load, with no failed request.

mod common;

use std::path::Path;
use std::time::Duration;

use common::ansible::{ansible, browse_over_https, credentials, run_playbook_on, said};
use common::container::{Container, Image, MirrorRelay, Netns};
use common::deb::{deb_field, Debs};
use common::network::TestNetwork;
use common::tls::{self, TestCa};

/// The test network's addresses: SUBNET.1 is the outsider (the browser).
const SUBNET: &str = "10.77.0";
/// The name the browser uses for the site.
const SITE: &str = "shop.test";
/// The first admin's password, kept in Ansible Vault too.
const ADMIN_PASSWORD: &str = "vault kept admin phrase";

/// Where the web host keeps the site's certificate (full chain) and key, as certbot would.
const CERTIFICATE: &str = "/etc/ssl/shop-site/fullchain.pem";
const CERTIFICATE_KEY: &str = "/etc/ssl/shop-site/privkey.pem";

/// The database password, kept in Ansible Vault: characters a URL must escape included.
const DB_PASSWORD: &str = "vault kept/p@ss:1";

/// A host of the deployment: its inventory name, its address on the network, its group.
struct Role {
    name: &'static str,
    host: u8,
    group: &'static str,
}

const HOSTS: [Role; 4] = [
    Role {
        name: "db",
        host: 20,
        group: "shop_db",
    },
    Role {
        name: "app1",
        host: 11,
        group: "shop_app",
    },
    Role {
        name: "app2",
        host: 12,
        group: "shop_app",
    },
    Role {
        name: "web",
        host: 30,
        group: "shop_web",
    },
];

/// The four hosts, booted on their network, and the control machine's files.
struct Site {
    // Dropped in this order: the hosts power off before their network goes.
    hosts: Vec<Container>,
    _relays: Vec<MirrorRelay>,
    network: TestNetwork,
    home: tempfile::TempDir,
    /// Who issued the site's certificate.
    ca: TestCa,
}

impl Site {
    fn boot() -> Site {
        let image = Image::shop_host();
        let network = TestNetwork::create(SUBNET);
        let hosts: Vec<Container> = HOSTS
            .iter()
            .map(|role| {
                let netns = network.join(role.name, role.host);
                Container::boot_in(&image, &format!("shop-{}", role.name), Some(&netns))
            })
            .collect();
        let relays = hosts.iter().map(Container::relay_apt_to_mirror).collect();
        let site = Site {
            hosts,
            _relays: relays,
            network,
            home: tempfile::tempdir().unwrap(),
            ca: TestCa::new(),
        };
        let issued = site.ca.issue(SITE);
        let web = site.host("web");
        web.copy_in(&issued.chain, CERTIFICATE, 0o644);
        web.copy_in(&issued.key, CERTIFICATE_KEY, 0o600);
        site.write_inventory();
        site.write_vault();
        site
    }

    fn host(&self, name: &str) -> &Container {
        let index = HOSTS.iter().position(|r| r.name == name).unwrap();
        &self.hosts[index]
    }

    fn address(&self, name: &str) -> String {
        let role = HOSTS.iter().find(|r| r.name == name).unwrap();
        self.network.address(role.host)
    }

    /// The inventory a person writes for these hosts (plus how Ansible enters them).
    fn write_inventory(&self) {
        let mut inventory = String::new();
        for group in ["shop_db", "shop_app", "shop_web"] {
            inventory.push_str(&format!("[{group}]\n"));
            for (role, host) in HOSTS.iter().zip(&self.hosts) {
                if role.group == group {
                    let extra = if group == "shop_web" {
                        format!(
                            " shop_server_name={SITE} shop_tls_certificate={CERTIFICATE} \
                             shop_tls_certificate_key={CERTIFICATE_KEY}"
                        )
                    } else {
                        String::new()
                    };
                    inventory.push_str(&format!(
                        "{} ansible_host={} ansible_nsenter_pid={}{extra}\n",
                        role.name,
                        self.network.address(role.host),
                        host.pid1
                    ));
                }
            }
        }
        inventory.push_str(
            "[all:vars]\nansible_connection=community.docker.nsenter\n\
             ansible_python_interpreter=/usr/bin/python3\nansible_become_method=su\n\
             shop_admin_user=boss\n",
        );
        std::fs::write(self.home.path().join("inventory.ini"), inventory).unwrap();
    }

    /// group_vars/all/vault.yml beside the inventory, encrypted with ansible-vault.
    fn write_vault(&self) {
        let home = self.home.path();
        std::fs::write(
            home.join("vault-password"),
            "a vault password for the test\n",
        )
        .unwrap();
        let dir = home.join("group_vars/all");
        std::fs::create_dir_all(&dir).unwrap();
        let vault = dir.join("vault.yml");
        std::fs::write(
            &vault,
            format!("shop_db_password: {DB_PASSWORD:?}\nshop_admin_password: {ADMIN_PASSWORD:?}\n"),
        )
        .unwrap();
        let out = ansible("ansible-vault", home)
            .arg("encrypt")
            .arg("--vault-password-file")
            .arg(home.join("vault-password"))
            .arg(&vault)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", said(&out));
        let text = std::fs::read_to_string(&vault).unwrap();
        assert!(text.starts_with("$ANSIBLE_VAULT;") && !text.contains("p@ss"));
    }

    fn deploy(&self, deb: &Path, extra: &[&str]) -> u32 {
        let hosts: Vec<&Container> = self.hosts.iter().collect();
        run_playbook_on(&hosts, self.home.path(), "deploy.yml", deb, extra)
    }

    /// The outsider's network, where curl trusts the CA that issued the site's certificate
    /// and finds the site's name at the web host.
    fn browser(&self) -> Netns {
        let ca = self.ca.certificate();
        let web = self.address("web");
        self.network.outsider().with_curl_options(&[
            "--cacert",
            ca.to_str().unwrap(),
            "--resolve",
            &format!("{SITE}:443:{web}"),
            "--resolve",
            &format!("{SITE}:80:{web}"),
        ])
    }

    /// The network of one of the hosts, to run this machine's programs from.
    fn from(&self, name: &str) -> Netns {
        self.host(name).network()
    }
}

#[test]
#[ignore = "Ansible tier: four systemd hosts on a private network, as root; tests/run runs it"]
fn four_hosts_over_tls_upgraded_and_one_app_host_lost_under_load() {
    let debs = Debs::amd64();
    let mut site = Site::boot();
    assert!(
        site.deploy(&debs.new, &[]) > 0,
        "the first run changes things"
    );

    the_site_is_served_over_https_by_both_app_hosts(&site);
    the_tls_grade_has_no_high_finding(&site);
    postgresql_takes_only_tls_from_the_app_hosts(&site);
    the_firewall_refuses_everyone_else(&site);
    assert_eq!(
        site.deploy(&debs.new, &[]),
        0,
        "a second run changes nothing"
    );

    both_app_hosts_upgraded_under_load(&site, &debs.newer);
    one_app_host_powered_off_under_load(&mut site);
}

fn the_site_is_served_over_https_by_both_app_hosts(site: &Site) {
    let instances = browse_over_https(&site.browser(), SITE, "Bought over HTTPS");
    let expected: Vec<String> = ["app1", "app2"]
        .iter()
        .flat_map(|host| (8001..=8003).map(move |port| format!("{host}:{port}")))
        .collect();
    assert_eq!(
        instances, expected,
        "every instance of both app hosts answers"
    );
    let rows = site.host("db").sh(
        "runuser -u postgres -- psql -d shop -tAc \"SELECT count(*) FROM items WHERE name = 'Bought over HTTPS'\"",
    );
    assert_eq!(rows.trim(), "1", "the item is stored on the database host");
    let (status, _) = site
        .network
        .outsider()
        .http_get(&format!("https://{}/", site.address("web")));
    assert_eq!(
        status, 0,
        "curl trusts the test CA's certificate only when told to"
    );
    assert!(
        !credentials(site.home.path()).join("web-https.crt").exists(),
        "with a certificate given, the role makes and fetches no self-signed one"
    );
}

/// Debian's testssl.sh on the site, from the outsider's network: nothing rated HIGH or
/// CRITICAL (the anchor is Mozilla's "intermediate" configuration).
fn the_tls_grade_has_no_high_finding(site: &Site) {
    let findings = tls::grade(
        &site.network.outsider(),
        SITE,
        &site.address("web"),
        &site.ca.certificate(),
    );
    println!("testssl.sh findings (LOW and worse) on https://{SITE}/:");
    for finding in &findings {
        println!("  {finding}");
    }
    let serious = tls::serious(&findings);
    assert!(
        serious.is_empty(),
        "testssl.sh rates these HIGH or CRITICAL: {serious:#?}"
    );
}

/// psql from an app host's network: what it said, and whether it got in.
fn psql_from(site: &Site, host: &str, options: &str) -> (bool, String) {
    let conninfo = format!(
        "host={} dbname=shop user=shop connect_timeout=5 {options}",
        site.address("db")
    );
    let out = site
        .from(host)
        .command("psql")
        .args([
            &conninfo,
            "-tAc",
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        ])
        .env("PGPASSWORD", DB_PASSWORD)
        .output()
        .unwrap();
    (out.status.success(), said(&out))
}

fn postgresql_takes_only_tls_from_the_app_hosts(site: &Site) {
    let ca = credentials(site.home.path()).join("db-postgresql-ca.crt");
    let verified = format!("sslmode=verify-full sslrootcert={}", ca.display());
    let (ok, said) = psql_from(site, "app1", &verified);
    assert!(
        ok && said.trim() == "t",
        "over TLS, the server verified: {said}"
    );
    let (ok, said) = psql_from(site, "app2", "sslmode=disable");
    assert!(
        !ok && said.contains("no encryption"),
        "without TLS the server refuses: {said}"
    );
    let (ok, said) = psql_from(site, "web", "sslmode=require");
    assert!(
        !ok && said.contains("refused"),
        "the web host is refused: {said}"
    );
    let connections = site.host("db").sh(
        "runuser -u postgres -- psql -tAc \"SELECT count(*) FILTER (WHERE ssl) > 0, count(*) FILTER (WHERE NOT ssl) \
         FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE usename = 'shop'\"",
    );
    assert_eq!(
        connections.trim(),
        "t|0",
        "the instances' connections are all encrypted"
    );
}

/// Can `from` open a TCP connection to `to`:`port`? ("open" or what refused it.)
fn connect(from: &Netns, to: &str, port: u16) -> String {
    from.sh(&format!(
        "timeout 5 bash -c '</dev/tcp/{to}/{port}' 2>/dev/null && echo open || echo refused"
    ))
    .trim()
    .to_owned()
}

fn the_firewall_refuses_everyone_else(site: &Site) {
    let (db, app1, app2) = (
        site.address("db"),
        site.address("app1"),
        site.address("app2"),
    );
    let outsider = ("outsider", site.network.outsider());
    let [web, from_db, from_app2] = ["web", "db", "app2"].map(|h| (h, site.from(h)));
    // Who may reach what: the instances are the web host's, PostgreSQL the app hosts'.
    let expected = [
        (&web, &app1, 8001, "open"),
        (&web, &app2, 8001, "open"),
        (&from_db, &app1, 8001, "refused"),
        (&from_db, &app2, 8001, "refused"),
        (&outsider, &app1, 8002, "refused"),
        (&from_app2, &db, 5432, "open"),
        (&web, &db, 5432, "refused"),
        (&outsider, &db, 5432, "refused"),
    ];
    let seen: Vec<String> = expected
        .iter()
        .map(|((who, net), to, port, _)| format!("{who} → {to}:{port} {}", connect(net, to, *port)))
        .collect();
    let wanted: Vec<String> = expected
        .iter()
        .map(|((who, _), to, port, answer)| format!("{who} → {to}:{port} {answer}"))
        .collect();
    assert_eq!(seen, wanted);
    let elapsed = std::time::Instant::now();
    assert_eq!(connect(&outsider.1, &app2, 8003), "refused");
    assert!(
        elapsed.elapsed() < Duration::from_secs(2),
        "refused at once (a reset), not left to time out"
    );
}

/// The pages the load loops ask for, through nginx.
fn site_urls() -> Vec<String> {
    vec![
        format!("https://{SITE}/items"),
        format!("https://{SITE}/healthz"),
    ]
}

fn both_app_hosts_upgraded_under_load(site: &Site, new: &Path) {
    let urls = site_urls();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let load = site.browser().start_request_loop(&urls, 20_000, 20);
    assert!(site.deploy(new, &[]) > 0);
    load.stop()
        .assert_all_ok("the upgrade of both app hosts", 200);
    for app in ["app1", "app2"] {
        let version = site.host(app).sh("dpkg-query -W -f '${Version}' shop");
        assert_eq!(
            version,
            deb_field(new, "Version"),
            "{app} runs the new package"
        );
    }
}

fn one_app_host_powered_off_under_load(site: &mut Site) {
    let browser = site.browser();
    let urls = site_urls();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let load = browser.start_request_loop(&urls, 20_000, 20);
    std::thread::sleep(Duration::from_secs(3));
    let index = HOSTS.iter().position(|r| r.name == "app2").unwrap();
    site.hosts[index].power_off();
    // A machine switched off answers nothing at all: no reset, no ARP.
    site.network.unplug("app2");
    std::thread::sleep(Duration::from_secs(15));
    let answers = load.stop();
    let ok = answers.assert_all_ok("app2 powered off", 50);
    let slowest = answers.0.iter().map(|a| a.seconds).fold(0.0, f64::max);
    eprintln!("  app2 powered off: {ok} requests, all 200, slowest {slowest:.3} s");
    let after = browser.sh(&format!(
        "for i in $(seq 1 12); do curl -s -o /dev/null -D - https://{SITE}/healthz; done | tr -d '\\r' | sed -n 's/^x-shop-instance: //Ip' | sort -u"
    ));
    assert_eq!(
        after.lines().collect::<Vec<_>>(),
        ["app1:8001", "app1:8002", "app1:8003"],
        "app1 serves alone"
    );
}
