//! Several hosts for real: two database hosts (pg_auto_failover, its monitor on the web
//! host), two app hosts (three instances each) and a web host, each a Debian 12
//! systemd-nspawn container, on a private network the test makes
//! (a bridge and veth pairs in network namespaces of its own), deployed by the playbook
//! from one inventory, the database password from Ansible Vault. Then, as a person
//! would check it: the site over HTTPS (HTTP/2) with a certificate given in the inventory
//! (issued by a CA the test makes, as a public CA would), graded by testssl.sh with no
//! finding rated HIGH or CRITICAL, served by both app hosts from PostgreSQL on the
//! database host; every hop guarded (PostgreSQL over TLS only, the firewall refusing
//! everyone else); a second run that changes nothing;
//! a newer package rolled over both app hosts under load; the database primary's power cut
//! under HTTPS writes and buyers of one hot item, twice (there and back), every
//! acknowledged write and order kept, nothing stored or sold twice, the stock kept, and a write made with one database host left kept when the other returns;
//! and one app host powered off under load, with no failed request.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::ansible::{
    ansible, answered_by, browse_over_https, credentials, run_playbook_on, said,
};
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

const HOSTS: [Role; 5] = [
    Role {
        name: "db",
        host: 20,
        group: "shop_db",
    },
    Role {
        name: "db2",
        host: 21,
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
        // pg_auto_failover's monitor on the web host.
        inventory.push_str("[shop_db_monitor]\nweb\n");
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
#[ignore = "Ansible tier: five systemd hosts on a private network, as root; tests/run runs it"]
fn five_hosts_over_tls_database_failover_upgrade_and_app_host_lost() {
    let debs = Debs::amd64();
    let mut site = Site::boot();
    assert!(
        site.deploy(&debs.new, &[]) > 0,
        "the first run changes things"
    );

    the_site_is_served_over_https_by_both_app_hosts(&site);
    the_tls_grade_has_no_high_finding(&site);
    postgresql_takes_only_tls_from_the_app_hosts(&site);
    a_rewind_keeps_who_may_replicate(&site);
    the_firewall_refuses_everyone_else(&site);
    assert_eq!(
        site.deploy(&debs.new, &[]),
        0,
        "a second run changes nothing"
    );

    both_app_hosts_upgraded_under_load(&site, &debs.newer);

    let token = api_token(&site);
    let buyers: Vec<String> = (0..BUYERS).map(|_| api_token(&site)).collect();
    let first = primary_powered_off_under_writes(&mut site, &token, &buyers, "db", "db2", 1);
    comes_back_as_standby(&mut site, "db", "db2");
    let second = primary_powered_off_under_writes(&mut site, &token, &buyers, "db2", "db", 2);
    a_write_made_alone_survives_the_return(&mut site, &token, "db", "db2");
    the_instances_and_backups_follow_the_primary(&site, "db");
    eprintln!(
        "  failover: writes served again {first:.1} s after db was cut, {second:.1} s after db2 was cut"
    );

    one_app_host_powered_off_under_load(&mut site);
}

fn the_site_is_served_over_https_by_both_app_hosts(site: &Site) {
    browse_over_https(&site.browser(), SITE, "Bought over HTTPS");
    let instances = answered_by(site.host("web"), "/healthz?browse");
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

/// pg_rewind copies pg_hba.conf from the node a returning primary rewinds from: both data
/// nodes' files must be the same, each letting both nodes replicate, or the returning
/// node keeps the other's list and refuses it as its standby after the next failover
/// (seen: "no pg_hba.conf entry for replication connection from host" db2's, on db).
fn a_rewind_keeps_who_may_replicate(site: &Site) {
    let hba = |host: &str| {
        site.host(host)
            .sh("cat /var/lib/postgresql/pg_auto_failover/pg_hba.conf")
    };
    let (db, db2) = (hba("db"), hba("db2"));
    assert_eq!(
        db, db2,
        "both data nodes say the same about who may connect"
    );
    for host in ["db", "db2"] {
        let address = site.address(host);
        assert!(
            db.lines().any(|l| l.starts_with("hostssl")
                && l.contains("replication")
                && l.contains(&format!(" {address}/"))),
            "{host} ({address}) may replicate from either node:\n{db}"
        );
    }
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
    // The web host is pg_auto_failover's monitor too: the firewall lets it reach the
    // port for its health checks, and PostgreSQL lets it into no database.
    let (ok, said) = psql_from(site, "web", "sslmode=require");
    assert!(
        !ok && said.contains("no pg_hba.conf entry"),
        "the web host is refused: {said}"
    );
    // Nor as the monitor's own role: its health checks need an answer, not a login, and
    // there is no password that signs it in (the monitor still sees both nodes: the
    // failover below needs it to).
    let (ok, said) = psql_from(
        site,
        "web",
        "user=pgautofailover_monitor dbname=postgres sslmode=require",
    );
    assert!(
        !ok && said.contains("password authentication failed"),
        "the monitor's role signs in nowhere: {said}"
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
    let monitor = site.address("web");
    let [web, from_db, from_app2] = ["web", "db", "app2"].map(|h| (h, site.from(h)));
    // Who may reach what: the instances are the web host's, PostgreSQL the app hosts'.
    let expected = [
        (&web, &app1, 8001, "open"),
        (&web, &app2, 8001, "open"),
        (&from_db, &app1, 8001, "refused"),
        (&from_db, &app2, 8001, "refused"),
        (&outsider, &app1, 8002, "refused"),
        (&from_app2, &db, 5432, "open"),
        // The web host is pg_auto_failover's monitor too: it checks the database hosts,
        // and only they report to it.
        (&web, &db, 5432, "open"),
        (&outsider, &db, 5432, "refused"),
        (&from_db, &monitor, 5432, "open"),
        (&from_app2, &monitor, 5432, "refused"),
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

/// An API token of a new seller, made through the site as a person would.
fn api_token(site: &Site) -> String {
    let seller = common::fresh_username();
    let said = site.browser().sh(&format!(
        r#"{sign_up_sh}
        sign_up https://{SITE} {seller} > /dev/null
        curl -s -b jar -c jar https://{SITE}/account > account.html
        curl -s -b jar -c jar --data "csrf_token=$(form_field account.html csrf_token)&name=failover&password=violet+pelican+under+a+lamp" https://{SITE}/account/tokens \
          | sed -n 's/.*<code id="new-token">\([^<]*\)<.*/\1/p'"#,
        sign_up_sh = common::SIGN_UP_SH,
    ));
    let token = said.trim().to_owned();
    assert!(token.len() > 20, "a token made: {said:?}");
    token
}

/// What a command run as postgres on `host` printed (nothing when it failed: a host that
/// is down, a server that does not answer).
fn as_postgres(site: &Site, host: &str, command: &[&str]) -> String {
    // From postgres's home: pg_autoctl will not run from a directory it cannot read.
    let mut argv = vec![
        "runuser",
        "-u",
        "postgres",
        "--",
        "env",
        "-C",
        "/var/lib/postgresql",
    ];
    argv.extend_from_slice(command);
    String::from_utf8_lossy(&site.host(host).exec(&argv).stdout).into_owned()
}

/// Whether `host` is a standby (`Some(true)`), the primary (`Some(false)`), or does not
/// answer.
fn in_recovery(site: &Site, host: &str) -> Option<bool> {
    match as_postgres(site, host, &["psql", "-tAc", "SELECT pg_is_in_recovery()"]).trim() {
        "t" => Some(true),
        "f" => Some(false),
        _ => None,
    }
}

/// Run SQL on `host`'s database shop as postgres.
fn sql(site: &Site, host: &str, query: &str) -> String {
    site.host(host).sh(&format!(
        "runuser -u postgres -- psql -d shop -tA -F '|' -c \"{query}\""
    ))
}

/// What the monitor says of the formation (printed when the test wants it read), or why
/// it could not say.
fn formation(site: &Site) -> String {
    let out = site.host("web").exec(&[
        "sh",
        "-c",
        "cd /var/lib/postgresql && runuser -u postgres -- pg_autoctl show state \
         --pgdata /var/lib/postgresql/pg_auto_failover 2>&1",
    ]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Wait until `primary` has `standby` streaming to it synchronously, and say how long it
/// took. A primary that lost power rejoins through pg_rewind; on a loaded CI machine that
/// has taken more than three minutes, so the wait is five.
fn wait_for_sync_standby(site: &Site, primary: &str, standby: &str) {
    let started = std::time::Instant::now();
    let mut seen = String::new();
    let synced = common::poll_until(Duration::from_secs(300), || {
        seen = as_postgres(
            site,
            primary,
            &[
                "psql",
                "-tAc",
                "SELECT state || ' ' || sync_state FROM pg_stat_replication",
            ],
        );
        in_recovery(site, standby) == Some(true)
            && matches!(seen.trim(), "streaming sync" | "streaming quorum")
    });
    if synced {
        println!(
            "  {standby} streams to {primary} synchronously after {:.1} s",
            started.elapsed().as_secs_f64()
        );
        return;
    }
    // What the returning node's pg_autoctl did (why it did not rejoin), all of it.
    let journal = site.host(standby).exec(&[
        "sh",
        "-c",
        "systemctl status --no-pager pg_auto_failover | head -n 12; \
         echo '-- its journal:'; journalctl -b -u pg_auto_failover --no-pager | tail -n 120; \
         echo '-- its PostgreSQL logs:'; ls -l /var/lib/postgresql/pg_auto_failover/log/; \
         tail -n 40 \"$(ls -t /var/lib/postgresql/pg_auto_failover/log/* | head -n 1)\"",
    ]);
    let monitor = site.host("web").exec(&[
        "sh",
        "-c",
        "journalctl -u pg_auto_failover --no-pager | tail -n 40",
    ]);
    panic!(
        "{standby} streams to {primary} synchronously (replication: {seen:?})\n{}\n{standby}'s pg_autoctl:\n{}\nthe monitor:\n{}",
        formation(site),
        String::from_utf8_lossy(&journal.stdout),
        String::from_utf8_lossy(&monitor.stdout)
    );
}

/// A bash script run from the outsider's network until told to stop (a file it looks
/// for between requests): what it printed.
struct Background {
    child: std::process::Child,
    stop: tempfile::TempPath,
}

impl Background {
    /// `script` is given the path of the stop file.
    fn start(site: &Site, script: impl FnOnce(&str) -> String) -> Background {
        let stop = tempfile::NamedTempFile::new().unwrap().into_temp_path();
        std::fs::remove_file(&stop).unwrap();
        let script = script(stop.to_str().unwrap());
        let child = site
            .browser()
            .command("bash")
            .args(["-c", &script])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Background { child, stop }
    }

    fn stop(self) -> String {
        std::fs::write(&self.stop, "stop").unwrap();
        let out = self.child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A write loop through nginx over HTTPS: API creates, each with an idempotency key, a
/// failed one sent again with the same key (as a careful client does), 50 ms apart.
/// Each line: start (Unix time), status, seconds, the key's number, the id answered.
struct WriteLoop(Background);

impl WriteLoop {
    fn start(site: &Site, token: &str, run: u32) -> WriteLoop {
        let curl = site.browser().curl_words();
        WriteLoop(Background::start(site, |stop| {
            format!(
                r#"cd "$(mktemp -d)"; i=1
            for n in $(seq 1 3000); do
              [ -e '{stop}' ] && break
              started=$EPOCHREALTIME
              answer=$(curl {curl} -s -m 10 -o body -w '%{{http_code}} %{{time_total}}' \
                -H 'authorization: Bearer {token}' -H "idempotency-key: failover-{run}-$i" \
                -H 'content-type: application/json' \
                --data "{{\"name\":\"failover {run} $i\",\"quantity\":$i,\"description\":\"written in failover {run}\"}}" \
                https://{SITE}/api/items)
              id=$(sed -n 's/.*"id":\([0-9]*\).*/\1/p' body)
              echo "$started $answer $i ${{id:--}}"
              case "$answer" in 2*) i=$((i + 1));; esac
              sleep 0.05
            done"#
            )
        }))
    }

    /// (start, status, seconds, key number, id) of every request.
    fn stop(self) -> Vec<(f64, u16, f64, u32, Option<i64>)> {
        self.0
            .stop()
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                Some((
                    f.first()?.parse().ok()?,
                    f.get(1)?.parse().ok()?,
                    f.get(2)?.parse().ok()?,
                    f.get(3)?.parse().ok()?,
                    f.get(4)?.parse().ok(),
                ))
            })
            .collect()
    }
}

/// How many buyers buy the hot item during each failover, and how many it has at first.
const BUYERS: usize = 3;
const HOT_STOCK: i64 = 300;
/// The hot item's price, in cents.
const HOT_PRICE: i64 = 1250;

/// One answer to a buyer: who (0-based), the key's number, when it was sent (Unix time),
/// the status, the quantity asked for and the order id answered.
struct Buy {
    buyer: usize,
    key: u32,
    started: f64,
    status: u16,
    quantity: i64,
    order: Option<i64>,
}

/// Buyers buying one hot item through nginx over HTTPS at once, each with an
/// idempotency key per order: 1 to 3 at a time, a 503 or no answer sent again with the
/// same key (as a careful client does), then the next order 100 ms later.
struct BuyLoop(Background);

impl BuyLoop {
    fn start(site: &Site, buyers: &[String], item: i64, run: u32) -> BuyLoop {
        let curl = site.browser().curl_words();
        BuyLoop(Background::start(site, |stop| {
            let mut script = format!(
                r#"cd "$(mktemp -d)"
                buyer() {{
                  local b=$1 token=$2 i=1 q started answer id
                  for n in $(seq 1 2000); do
                    [ -e '{stop}' ] && break
                    q=$((i % 3 + 1)); started=$EPOCHREALTIME
                    answer=$(curl {curl} -s -m 10 -o body-$b -w '%{{http_code}}' \
                      -H "authorization: Bearer $token" -H "idempotency-key: buy-{run}-$b-$i" \
                      -H 'content-type: application/json' \
                      --data "{{\"item_id\":{item},\"quantity\":$q,\"price_minor\":{HOT_PRICE}}}" \
                      https://{SITE}/api/orders)
                    id=$(sed -n 's/.*"id":\([0-9]*\).*/\1/p' body-$b)
                    echo "$b $i $started $answer $q ${{id:--}}"
                    case "$answer" in 2*|409) i=$((i + 1));; esac
                    sleep 0.1
                  done
                }}
                "#
            );
            for (b, token) in buyers.iter().enumerate() {
                script.push_str(&format!("buyer {b} '{token}' &\n"));
            }
            script.push_str("wait\n");
            script
        }))
    }

    fn stop(self) -> Vec<Buy> {
        self.0
            .stop()
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                Some(Buy {
                    buyer: f.first()?.parse().ok()?,
                    key: f.get(1)?.parse().ok()?,
                    started: f.get(2)?.parse().ok()?,
                    status: f.get(3)?.parse().ok()?,
                    quantity: f.get(4)?.parse().ok()?,
                    order: f.get(5)?.parse().ok(),
                })
            })
            .collect()
    }
}

/// A new item of the seller whose token this is, for sale: its id.
fn hot_item(site: &Site, token: &str, run: u32) -> i64 {
    let said = site.browser().sh(&format!(
        r#"curl -s -H 'authorization: Bearer {token}' -H 'content-type: application/json' \
          --data '{{"name":"hot item {run}","quantity":{HOT_STOCK},"price_minor":{HOT_PRICE},"description":"everyone buys it"}}' \
          https://{SITE}/api/items"#
    ));
    let item: serde_json::Value = serde_json::from_str(&said).expect(&said);
    assert_eq!(item["price_minor"], HOT_PRICE, "{said}");
    item["id"].as_i64().expect(&said)
}

/// After the buyers' failover: every answer 201, 409 (sold out, or fewer left) or 503;
/// every order acknowledged stored once on the new primary, as asked for; nothing
/// stored that was not asked for (but an order under way when the buyers stopped); at
/// least one order acknowledged after the cut; and the stock kept:
/// what is left + what placed and handed-over orders hold = the stock at the start.
fn every_order_kept_once(site: &Site, to: &str, item: i64, run: u32, buys: &[Buy], cut_at: f64) {
    let mut by_status = std::collections::BTreeMap::new();
    for buy in buys {
        *by_status.entry(buy.status).or_insert(0) += 1;
    }
    eprintln!("  buyers of the hot item: answers by status {by_status:?}");
    assert!(
        by_status.keys().all(|s| matches!(s, 201 | 409 | 503)),
        "buyers get 201, 409 or 503 (no 502, 504, or no answer): {by_status:?}"
    );
    let mut acknowledged = std::collections::BTreeMap::new();
    for buy in buys.iter().filter(|b| b.status == 201) {
        let id = buy.order.expect("an order id with every 201");
        let earlier = acknowledged.insert((buy.buyer, buy.key), (id, buy.quantity));
        assert!(
            earlier.is_none() || earlier == Some((id, buy.quantity)),
            "a key answered twice names the same order: {earlier:?} and {id}"
        );
    }
    let mut ids: Vec<i64> = acknowledged.values().map(|v| v.0).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), acknowledged.len(), "each order for one key only");
    assert!(
        buys.iter()
            .any(|b| b.status == 201 && b.started > cut_at + 1.0),
        "orders were placed again after the cut (the stock of {HOT_STOCK} lasted past it): {by_status:?}"
    );
    let stored = sql(
        site,
        to,
        &format!(
            "SELECT o.idempotency_key, o.id, l.quantity, o.state FROM orders o \
             JOIN order_lines l ON l.order_id = o.id WHERE l.item_id = {item} ORDER BY o.id"
        ),
    );
    let mut rows = std::collections::BTreeMap::new();
    for line in stored.lines() {
        let f: Vec<&str> = line.split('|').collect();
        let key: Vec<&str> = f[0].split('-').collect();
        assert_eq!(key[..2], ["buy", &run.to_string()], "{line}");
        let who = (
            key[2].parse::<usize>().unwrap(),
            key[3].parse::<u32>().unwrap(),
        );
        let row = (f[1].parse::<i64>().unwrap(), f[2].parse::<i64>().unwrap());
        assert_eq!(f[3], "placed", "{line}");
        assert!(rows.insert(who, row).is_none(), "stored once: {line}");
    }
    for (who, order) in &acknowledged {
        assert_eq!(
            rows.get(who),
            Some(order),
            "the order acknowledged to buyer {} for key {} is on {to} as answered",
            who.0,
            who.1
        );
    }
    let unacknowledged: Vec<_> = rows
        .keys()
        .filter(|k| !acknowledged.contains_key(k))
        .collect();
    assert!(
        unacknowledged.len() <= BUYERS,
        "nothing stored but the acknowledged (and one under way per buyer at the end): {unacknowledged:?}"
    );
    let left: i64 = sql(
        site,
        to,
        &format!("SELECT quantity FROM items WHERE id = {item}"),
    )
    .trim()
    .parse()
    .unwrap();
    let sold: i64 = rows.values().map(|r| r.1).sum();
    assert!(left >= 0, "never below zero: {left}");
    assert_eq!(
        left + sold,
        HOT_STOCK,
        "stock left ({left}) + the orders' quantities ({sold}) = the stock at the start"
    );
    eprintln!(
        "  {} orders acknowledged ({} more stored, their answers lost at the stop), {sold} sold, {left} left",
        acknowledged.len(),
        unacknowledged.len()
    );
}

/// Cut the power of the primary `from` under a write load; `to` takes over by itself.
/// Every request answered (2xx or 503 at once: no 502, 504 or silence), every
/// acknowledged item on the new primary field for field, none twice. The seconds from
/// the cut until writes succeed again.
fn primary_powered_off_under_writes(
    site: &mut Site,
    token: &str,
    buyers: &[String],
    from: &str,
    to: &str,
    run: u32,
) -> f64 {
    assert_eq!(
        in_recovery(site, from),
        Some(false),
        "{from} is the primary"
    );
    wait_for_sync_standby(site, from, to);
    let item = hot_item(site, token, run);
    let load = WriteLoop::start(site, token, run);
    let buying = BuyLoop::start(site, buyers, item, run);
    std::thread::sleep(Duration::from_secs(3));
    site.network.unplug(from);
    let cut_at = common::container::unix_now();
    let index = HOSTS.iter().position(|r| r.name == from).unwrap();
    site.hosts[index].power_cut();
    let promoted = common::poll_until(Duration::from_secs(90), || {
        in_recovery(site, to) == Some(false)
    });
    assert!(promoted, "{to} was promoted:\n{}", formation(site));
    // Writes wait until the monitor is sure the old primary has stopped (its demote
    // timeout), then are served: give them 45 s from the cut, and 8 s at least after the
    // promotion.
    let promoted_after = common::container::unix_now() - cut_at;
    std::thread::sleep(Duration::from_secs_f64((45.0 - promoted_after).max(8.0)));
    let answers = load.stop();
    let buys = buying.stop();
    let mut by_status = std::collections::BTreeMap::new();
    for (_, status, _, _, _) in &answers {
        *by_status.entry(*status).or_insert(0) += 1;
    }
    let slowest = answers.iter().map(|a| a.2).fold(0.0, f64::max);
    eprintln!("  {from} cut under writes: answers by status {by_status:?}, slowest {slowest:.2} s");
    assert!(
        by_status.keys().all(|s| matches!(s, 200 | 201 | 503)),
        "only 2xx and 503 (no 502, 504, or no answer): {by_status:?}"
    );
    let back = answers
        .iter()
        .find(|(started, status, ..)| {
            *started > cut_at
                && *status / 100 == 2
                && answers.iter().any(|(s, st, ..)| *st == 503 && s < started)
        })
        .map(|(started, ..)| started - cut_at)
        .unwrap_or_else(|| {
            let journal = site.host("app1").sh(
                "journalctl -u 'shop@*' --no-pager | grep -v -e ' GET ' -e ' POST ' | tail -n 30",
            );
            panic!(
                "writes succeeded again after the cut ({to} promoted {promoted_after:.1} s after it)\n{}\napp1:\n{journal}",
                formation(site)
            )
        });
    eprintln!(
        "  writes served again {back:.1} s after {from}'s power was cut ({to} promoted after {promoted_after:.1} s)"
    );
    // Every acknowledged item on the new primary, field for field, and none twice.
    let acknowledged: std::collections::BTreeMap<u32, i64> = answers
        .iter()
        .filter(|a| a.1 / 100 == 2)
        .map(|a| (a.3, a.4.expect("an id with every 2xx")))
        .collect();
    assert!(
        acknowledged.len() > 20,
        "the load wrote: {}",
        acknowledged.len()
    );
    let stored = sql(
        site,
        to,
        &format!(
            "SELECT idempotency_key, id, name, quantity, description FROM items \
             WHERE idempotency_key LIKE 'failover-{run}-%' ORDER BY id"
        ),
    );
    let mut rows = std::collections::BTreeMap::new();
    for line in stored.lines() {
        let f: Vec<&str> = line.split('|').collect();
        let number: u32 = f[0].rsplit('-').next().unwrap().parse().unwrap();
        assert!(
            rows.insert(number, line.to_owned()).is_none(),
            "stored once: {line}"
        );
    }
    for (number, id) in &acknowledged {
        assert_eq!(
            rows.get(number).map(String::as_str),
            Some(
                format!(
                    "failover-{run}-{number}|{id}|failover {run} {number}|{number}|written in failover {run}"
                )
                .as_str()
            ),
            "acknowledged item {number} is on {to} as written"
        );
    }
    let unacknowledged: Vec<&u32> = rows
        .keys()
        .filter(|n| !acknowledged.contains_key(n))
        .collect();
    assert!(
        unacknowledged.len() <= 1,
        "nothing stored but the acknowledged (and the one under way at the end): {unacknowledged:?}"
    );
    every_order_kept_once(site, to, item, run, &buys, cut_at);
    back
}

/// Power `host` on again: it rejoins as a standby of `primary` by itself.
fn comes_back_as_standby(site: &mut Site, host: &str, primary: &str) {
    let index = HOSTS.iter().position(|r| r.name == host).unwrap();
    site.network.plug(host);
    site.hosts[index].power_on();
    wait_for_sync_standby(site, primary, host);
    println!("{} after {host} came back:\n{}", primary, formation(site));
}

/// An item written while `primary` is the only database host left is still there when
/// `other` has come back (on both).
fn a_write_made_alone_survives_the_return(
    site: &mut Site,
    token: &str,
    primary: &str,
    other: &str,
) {
    let status = site.browser().sh(&format!(
        r#"curl -s -o /dev/null -w '%{{http_code}}' -H 'authorization: Bearer {token}' \
          -H 'content-type: application/json' \
          --data '{{"name":"written alone","quantity":1,"description":"one database host left"}}' \
          https://{SITE}/api/items"#
    ));
    assert_eq!(status, "201", "a write with one database host left");
    comes_back_as_standby(site, other, primary);
    for host in [primary, other] {
        assert_eq!(
            sql(
                site,
                host,
                "SELECT count(*) FROM items WHERE name = 'written alone'"
            ),
            "1\n",
            "the write is on {host}"
        );
    }
}

/// `shop check` on an app host names the primary it is connected to, and a backup made
/// there now comes from it.
fn the_instances_and_backups_follow_the_primary(site: &Site, primary: &str) {
    let said = site
        .host("app1")
        .sh("runuser -u shop -- shop check || true");
    let expected = format!("connected to:  {}:5432, the primary", site.address(primary));
    assert!(said.contains(&expected), "shop check: {said}");
    let holds = site.host("app1").sh(
        "systemctl start shop-backup.service && grep -c 'one database host left' \"$(ls -t /var/backups/shop/*.backup | head -n 1)\"",
    );
    assert_eq!(
        holds.trim(),
        "1",
        "the newest backup holds the write made alone"
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
    browser.sh(&format!(
        "for i in $(seq 1 12); do curl -s -o /dev/null https://{SITE}/healthz?after-app2; done"
    ));
    assert_eq!(
        answered_by(site.host("web"), "/healthz?after-app2"),
        ["app1:8001", "app1:8002", "app1:8003"],
        "app1 serves alone"
    );
}
