//! Running the project's Ansible playbook from the tests: the tools tests/run installs
//! under target/tools, a private ANSIBLE_HOME, and a deployment onto a booted container
//! (community.docker.nsenter, no ssh), checked the way a person would.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::container::{Container, Image, MirrorRelay, Netns, Platform};
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

/// The first admin's password in the test inventories.
pub const ADMIN_PASSWORD: &str = "an admin made by ansible";

/// Write the inventory `deploy` uses: the container in every group (and in shop_monitor
/// with `layout.monitoring`), with `layout.instances`, and a first admin.
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
             ansible_python_interpreter=/usr/bin/python3 ansible_become_method=su shop_instances=\"[{}]\" \
             shop_admin_user=boss shop_admin_password=\"{ADMIN_PASSWORD}\"\n\
             [shop_db]\ntesthost\n[shop_web]\ntesthost\n{monitor}",
            host.pid1,
            instances.join(", ")
        ),
    )
    .unwrap();
}

/// The package architecture the playbook would deploy to `host` (`shop_deb_arch`, from the
/// host's facts: tests/ansible/package-arch.yml).
pub fn package_arch_chosen_for(host: &Container) -> String {
    let home = tempfile::tempdir().unwrap();
    write_inventory(host, home.path(), Layout::DEFAULT);
    let out = ansible("ansible-playbook", home.path())
        .arg("-i")
        .arg(home.path().join("inventory.ini"))
        .arg(repo().join("tests/ansible/package-arch.yml"))
        .output()
        .unwrap();
    let text = said(&out);
    assert!(out.status.success(), "package-arch.yml:\n{text}");
    text.lines()
        .find_map(|l| l.split("shop_deb_arch=").nth(1))
        .map(|rest| rest.trim_end_matches('"').to_owned())
        .unwrap_or_else(|| panic!("no shop_deb_arch in:\n{text}"))
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
    run_playbook_on(&[host], home, playbook, deb, extra)
}

/// Where a test deployment's playbook keeps what it makes on the control machine (the
/// form secret, the certificates it fetches): `shop_credentials_dir`.
pub fn credentials(home: &Path) -> PathBuf {
    home.join("credentials")
}

/// Run one of the project's playbooks with the inventory in `home` (and its vault
/// password, `home/vault-password`, when there is one); the sum of the recap's
/// `changed=` over every host. On failure, the journals of `hosts` show why.
pub fn run_playbook_on(
    hosts: &[&Container],
    home: &Path,
    playbook: &str,
    deb: &Path,
    extra: &[&str],
) -> u32 {
    let inventory = home.join("inventory.ini");
    let mut command = ansible("ansible-playbook", home);
    command.arg("-i").arg(&inventory).arg(playbook).args([
        "-e",
        &format!("shop_deb={}", deb.display()),
        "-e",
        &format!("shop_credentials_dir={}", credentials(home).display()),
    ]);
    let vault_password = home.join("vault-password");
    if vault_password.is_file() {
        command.arg("--vault-password-file").arg(&vault_password);
    }
    let out = command.args(extra).output().unwrap();
    let text = said(&out);
    if !out.status.success() {
        let journals: Vec<String> = hosts
            .iter()
            .map(|host| {
                let journal = host.exec(&[
                    "sh",
                    "-c",
                    "journalctl --no-pager -n 200 | grep -v -e ' su\\[' -e 'ansible-' | tail -n 40",
                ]);
                format!(
                    "{}:\n{}",
                    host.name,
                    String::from_utf8_lossy(&journal.stdout)
                )
            })
            .collect();
        // Every failed task, wherever it was (a play goes on with the other hosts).
        let fatal: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("fatal:"))
            .map(|l| &l[..l.len().min(3000)])
            .collect();
        panic!(
            "ansible-playbook {extra:?} failed:\n{}\nfailed tasks:\n{}\njournals:\n{}",
            tail(&text, 40),
            fatal.join("\n"),
            journals.join("\n")
        );
    }
    let mut task = "";
    let mut changed_tasks = Vec::new();
    for line in text.lines() {
        if let Some(name) = line
            .strip_prefix("TASK [")
            .or_else(|| line.strip_prefix("RUNNING HANDLER ["))
        {
            task = name.split(']').next().unwrap_or(name);
        } else if line.starts_with("changed: [") {
            changed_tasks.push(format!("{task} {}", &line["changed: ".len()..]));
        }
    }
    if !changed_tasks.is_empty() {
        eprintln!("  {playbook} changed: {}", changed_tasks.join("; "));
    }
    let recap: Vec<u32> = text
        .lines()
        .skip_while(|l| !l.starts_with("PLAY RECAP"))
        .filter_map(|l| l.split("changed=").nth(1))
        .map(|rest| rest.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert!(!recap.is_empty(), "a play recap:\n{}", tail(&text, 30));
    recap.iter().sum()
}

/// What a browser sees of the HTTPS front at `https://NAME/`, from `net` (whose curl
/// trusts the site's certificate and finds NAME): plain HTTP redirected to HTTPS, HSTS,
/// HTTP/2, pages not compressed (BREACH), a Secure form cookie, a sign-up whose session cookie is `__Host-` and Secure, a form
/// posted signed in, the new item `item` listed, and 30 requests to `/healthz?browse`
/// whose answers do not say which instance answered (`answered_by` asks the web host).
pub fn browse_over_https(net: &Netns, name: &str, item: &str) {
    let seller = super::fresh_username();
    let said = net.sh(&format!(
        r#"{sign_up_sh}
        curl -s -o /dev/null -w '%{{http_code}} %{{redirect_url}}\n' http://{name}/items
        curl -s -D headers -c jar https://{name}/signup > /dev/null
        tr -d '\r' < headers | grep -ci '^strict-transport-security: max-age=[1-9]'
        curl -s -o /dev/null -w '%{{http_version}}\n' https://{name}/items
        curl -s -o /dev/null -D - -H 'accept-encoding: gzip' https://{name}/items | tr -d '\r' | grep -ci '^content-encoding:'
        tr -d '\r' < headers | grep -ci '^set-cookie: __Host-shop_csrf=.*; Secure$'
        echo "$(sign_up https://{name} {seller}) $(tr -d '\r' < signup-headers | grep -ci '^set-cookie: __Host-shop_session=[0-9a-f]*; Path=/; HttpOnly; SameSite=Lax; Secure$')"
        curl -s -b jar -c jar https://{name}/ > form.html
        item=$(printf %s '{item}' | sed 's/ /+/g')
        curl -s -o /dev/null -w '%{{http_code}} %{{redirect_url}}\n' -b jar --data "csrf_token=$(form_field form.html csrf_token)&idempotency_key=$(form_field form.html idempotency_key)&name=$item&quantity=7&description=over+HTTPS" https://{name}/
        curl -s https://{name}/items | grep -c '{item}'
        for i in $(seq 1 30); do curl -s -o /dev/null -D - 'https://{name}/healthz?browse'; done | tr -d '\r' | grep -ci '^x-shop-instance:' || true"#,
        sign_up_sh = super::SIGN_UP_SH,
    ));
    let lines: Vec<&str> = said.lines().collect();
    let expected = [
        format!("301 https://{name}/items"),
        "1".into(),
        "2".into(),
        "0".into(),
        "1".into(),
        "303 1".into(),
        format!("303 https://{name}/items"),
        "1".into(),
        "0".into(),
    ];
    assert_eq!(
        lines,
        expected,
        "HTTP redirected to HTTPS, HSTS, HTTP/2, the page not compressed, a Secure cookie, a sign-up with a __Host- Secure session cookie, 303 to the list, the item listed, no X-Shop-Instance"
    );
}

/// The instances (host:port, or port) that the web host's nginx says answered requests
/// for `path`, each once, sorted. (nginx logs a request just after its answer: a second
/// is left for the last one.)
pub fn answered_by(web: &Container, path: &str) -> Vec<String> {
    let log = web.sh("sleep 1; cat /var/log/nginx/shop-access.log");
    let mut instances = super::nginx::instances_in_access_log(&log, path);
    instances.sort();
    instances.dedup();
    instances
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
    /// The host's network, where curl trusts its HTTPS certificate.
    pub web: Netns,
    _relay: MirrorRelay,
}

/// Boot a fresh host of `platform`, deploy `deb` onto it (PostgreSQL, the package, the
/// instances of `layout`, nginx), and check it as a person would: a form posted through
/// nginx over HTTPS, the item listed and stored in PostgreSQL, every instance answering
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

    // The browser is on the host itself: nginx's self-signed certificate (fetched to the
    // control machine) is valid for 127.0.0.1 too.
    let ca = credentials(home.path()).join("testhost-https.crt");
    let web = host
        .network()
        .with_curl_options(&["--cacert", ca.to_str().unwrap()]);
    browse_over_https(&web, "127.0.0.1", "Deployed by Ansible");
    let instances = answered_by(&host, "/healthz?browse");
    assert_eq!(
        instances.len(),
        layout.instances.len(),
        "every instance answers: {instances:?}"
    );
    assert_eq!(
        running_instances(&host),
        layout.instances,
        "the instances listed run, and no other (the package's own list included)"
    );
    let rows = host.sh("runuser -u postgres -- psql -d shop -tAc \"SELECT count(*) FROM items WHERE name = 'Deployed by Ansible' AND quantity = 7\"");
    let users = host.sh("runuser -u shop -- shop user list");
    assert!(
        users
            .lines()
            .any(|l| l.starts_with("boss ") && l.contains(" yes ")),
        "the playbook made the first admin: {users}"
    );
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
        web,
        _relay: relay,
    }
}
