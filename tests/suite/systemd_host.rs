//! shop under a real systemd (PID 1 in a Debian 12 container): socket activation, the
//! status line, journal fields, restart after a crash, a restart under load with no
//! failed request, shop.target, and idle exit.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::container::{Container, Image, Platform};
use common::wait_until;
use serde_json::Value;

/// Every test host's image, built (or found built, under /var/tmp) at once: tests/run
/// starts this in the background while it compiles the arm64 packages, so that the tiers
/// after it find the images ready. Each is a Debian with systemd as init.
#[test]
#[ignore = "container tier: root and systemd-nspawn; tests/run runs it"]
fn every_test_host_image_builds() {
    let platforms = [
        Platform::BOOKWORM_AMD64,
        Platform::BOOKWORM_ARM64,
        Platform::TRIXIE_AMD64,
    ];
    std::thread::scope(|threads| {
        for platform in platforms {
            threads.spawn(move || {
                let image = Image::shop_host_on(platform);
                let init = image.rootfs.join("usr/lib/systemd/systemd");
                assert!(init.exists(), "{}: no {}", platform.suite, init.display());
            });
        }
    });
}

/// Put the binary, the units and the `shop` user in place, as the package will.
fn install_shop(host: &Container) {
    host.copy_in(&common::shop_binary(), "/usr/bin/shop", 0o755);
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    for unit in ["shop@.socket", "shop@.service", "shop.target"] {
        host.copy_in(
            &units.join(unit),
            &format!("/etc/systemd/system/{unit}"),
            0o644,
        );
    }
    host.sh("useradd --system --user-group --home-dir /var/lib/shop --shell /usr/sbin/nologin shop && systemctl daemon-reload");
}

/// A sign-up, failed logins and an API token, as a person makes them: the journal has each
/// event with its fields (who, from where), and no password, session id or token at all,
/// nor a name typed at login that is nobody's (one with a newline, one that looks like a
/// password).
fn accounts_in_the_journal(host: &Container) {
    let said = host.net_sh(&format!(
        r#"{}
        sign_up http://127.0.0.1:8001 journal-jo > /dev/null
        tr -d '\r' < signup-headers | sed -n 's/^set-cookie: shop_session=\([0-9a-f]*\);.*/\1/Ip'
        curl -s -b jar -c jar http://127.0.0.1:8001/account > account.html
        curl -s -b jar --data "csrf_token=$(form_field account.html csrf_token)&name=journal&password=violet+pelican+under+a+lamp" http://127.0.0.1:8001/account/tokens \
          | sed -n 's/.*<code id="new-token">\(shop_[0-9a-f]*\)<.*/\1/p'
        curl -s -c other http://127.0.0.1:8001/login > login.html
        curl -s -o /dev/null -w '%{{http_code}}\n' -b other --data "csrf_token=$(form_field login.html csrf_token)&username=journal-jo&password=a+wrong+guess+here" http://127.0.0.1:8001/login
        for name in 'mallory%0AEVENT%3Dlogin+forged-line' 'Tr0ub4dor-horses-3'; do
          curl -s -o /dev/null -w '%{{http_code}}\n' -b other --data "csrf_token=$(form_field login.html csrf_token)&username=$name&password=a+wrong+guess+here" http://127.0.0.1:8001/login
        done"#,
        common::SIGN_UP_SH
    ));
    let [session, token, failed, newline, password_like] = said.lines().collect::<Vec<_>>()[..]
    else {
        panic!("a session id, a token and three failed logins' statuses: {said:?}")
    };
    assert!(
        session.len() == 64
            && token.starts_with("shop_")
            && [failed, newline, password_like] == ["401"; 3],
        "{said}"
    );
    let entries = || -> Vec<Value> {
        host.sh("journalctl -u shop@8001 -o json --no-pager")
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    };
    let has = |entries: &[Value], event: &str| {
        entries.iter().any(|e| {
            e["EVENT"] == event && e["USER"] == "journal-jo" && e["ADDRESS"] == "127.0.0.1"
        })
    };
    wait_until(
        "the account events are in the journal",
        Duration::from_secs(10),
        || {
            let entries = entries();
            has(&entries, "signup") && has(&entries, "login_failed")
        },
    );
    assert!(
        entries()
            .iter()
            .any(|e| e["EVENT"] == "token_created" && e["USER"] == "journal-jo"),
        "the token's creation is logged"
    );
    // An item created with the token: the request's own entry names who and which.
    let created = host.net_sh(&format!(
        "curl -s -o /dev/null -w '%{{http_code}}' -H 'Authorization: Bearer {token}' \
           -H 'Content-Type: application/json' -d '{{\"name\": \"Journal\", \"quantity\": 1, \"description\": \"x\"}}' \
           http://127.0.0.1:8001/api/items"
    ));
    assert_eq!(created.trim(), "201");
    wait_until(
        "the create is in the journal",
        Duration::from_secs(10),
        || {
            entries().iter().any(|e| {
                e["EVENT"] == "item_created"
                    && e["USER"] == "journal-jo"
                    && e["ITEM_ID"].is_string()
                    && e["MESSAGE"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("POST /api/items 201"))
            })
        },
    );
    let journal = host.sh("journalctl -o json --no-pager");
    for secret in [
        session,
        token,
        common::PASSWORD,
        "violet+pelican",
        "a wrong guess",
        "a+wrong+guess",
        // Names typed at login that are nobody's: not even in part.
        "mallory",
        "forged-line",
        "Tr0ub4dor",
    ] {
        assert!(!journal.contains(secret), "{secret:?} is in the journal");
    }
    assert!(
        entries()
            .iter()
            .filter(|e| e["EVENT"] == "login_failed" && e["USER"] == "(unknown)")
            .count()
            >= 2,
        "an unknown name is logged as such"
    );
}

fn state(host: &Container, unit: &str) -> String {
    String::from_utf8_lossy(&host.exec(&["systemctl", "is-active", unit]).stdout)
        .trim()
        .to_owned()
}

fn main_pid(host: &Container, unit: &str) -> u32 {
    host.sh(&format!("systemctl show -p MainPID --value {unit}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
#[ignore = "container tier: root and systemd-nspawn; tests/run runs it"]
fn shop_under_real_systemd() {
    let image = Image::shop_host();
    let host = Container::boot(&image, "shop-systemd");
    install_shop(&host);

    // A request to the socket starts the service.
    host.sh("systemctl start shop@8001.socket");
    assert_eq!(state(&host, "shop@8001.service"), "inactive");
    let (status, body) = host.http_get("http://127.0.0.1:8001/items");
    assert_eq!(
        status,
        200,
        "{body}\n{}",
        host.sh("journalctl -u shop@8001 --no-pager | tail -30")
    );
    assert!(body.contains("Items for sale"));
    assert_eq!(state(&host, "shop@8001.service"), "active");

    // systemctl status shows the STATUS= line.
    let status_text = String::from_utf8_lossy(
        &host
            .exec(&["systemctl", "status", "--no-pager", "shop@8001"])
            .stdout,
    )
    .into_owned();
    assert!(
        status_text.contains("Status: \"serving on 127.0.0.1:8001, database ok (sqlite)\""),
        "{status_text}"
    );

    // The journal has structured fields.
    host.http_get("http://127.0.0.1:8001/items?from=journal-test");
    wait_until(
        "the request is in the journal",
        Duration::from_secs(10),
        || {
            host.sh("journalctl -u shop@8001 -o json --no-pager")
                .lines()
                .any(|line| {
                    let entry: Value = serde_json::from_str(line).unwrap_or_default();
                    entry["PATH"] == "/items"
                        && entry["METHOD"] == "GET"
                        && entry["STATUS"] == "200"
                        && entry["INSTANCE"] == "8001"
                        && entry["REQUEST_ID"].is_string()
                        && entry["LATENCY_MS"].is_string()
                        && entry["ROUTE"] == "/items"
                        // tracing-journald's priority for INFO: 5 (notice)
                        && entry["PRIORITY"] == "5"
                        && entry["MESSAGE"].as_str().is_some_and(|m| {
                            m.starts_with("GET /items 200 ") && m.contains(" ms (request ")
                        })
                })
        },
    );
    // The plain journal reads on its own: method, path, status and latency in the message.
    let plain = host.sh("journalctl -u shop@8001 -o cat --no-pager");
    let line = plain
        .lines()
        .find(|l| l.starts_with("GET /items 200 "))
        .unwrap_or_else(|| panic!("no request line in:\n{plain}"));
    let latency = line["GET /items 200 ".len()..].split(" ms").next().unwrap();
    assert!(latency.parse::<f64>().is_ok(), "latency in {line:?}");
    assert!(
        plain.lines().any(|l| l.starts_with("starting shop ")),
        "a start-up line in plain words:\n{plain}"
    );

    accounts_in_the_journal(&host);

    // kill -9: systemd starts it again.
    let pid = main_pid(&host, "shop@8001.service");
    host.sh(&format!("kill -9 {pid}"));
    wait_until(
        "systemd restarts the killed instance",
        Duration::from_secs(20),
        || {
            let now = main_pid(&host, "shop@8001.service");
            now != 0 && now != pid && state(&host, "shop@8001.service") == "active"
        },
    );
    assert!(
        host.sh("systemctl show -p NRestarts --value shop@8001")
            .trim()
            .parse::<u32>()
            .unwrap()
            >= 1
    );
    assert_eq!(host.http_get("http://127.0.0.1:8001/healthz").0, 200);

    // systemctl restart under a bounded request loop: connections wait in the socket's
    // backlog, so no request fails.
    let before = main_pid(&host, "shop@8001.service");
    let load = host.start_request_loop(&["http://127.0.0.1:8001/items"], 300, 0);
    std::thread::sleep(Duration::from_millis(500));
    host.sh("systemctl restart shop@8001");
    std::thread::sleep(Duration::from_millis(300));
    host.sh("systemctl restart shop@8001");
    let answers = load.finish();
    assert_eq!(
        (answers.ok(), answers.0.len()),
        (300, 300),
        "failed requests during restarts: {:#?}",
        answers.failures()
    );
    assert_ne!(
        main_pid(&host, "shop@8001.service"),
        before,
        "the instance really restarted"
    );

    // Starting the service directly works too (it pulls in its socket).
    host.sh("systemctl stop shop@8001.service shop@8001.socket");
    host.sh("systemctl start shop@8001");
    assert_eq!(state(&host, "shop@8001.service"), "active");
    assert_eq!(state(&host, "shop@8001.socket"), "active");
    assert_eq!(host.http_get("http://127.0.0.1:8001/readyz").0, 200);

    // shop.target brings up every enabled instance.
    host.sh("systemctl enable shop@8002.socket shop@8003.socket && systemctl start shop.target");
    let listening = host.sh("ss -ltnH");
    for port in ["8002", "8003"] {
        assert!(
            listening.contains(&format!("127.0.0.1:{port}")),
            "{listening}"
        );
    }
    assert_eq!(host.http_get("http://127.0.0.1:8002/healthz").0, 200);

    // An idle instance exits cleanly; the next connection starts it again.
    host.write_file(
        "/etc/systemd/system/shop@8003.service.d/idle.conf",
        "[Service]\nEnvironment=SHOP_SERVER__IDLE_EXIT_AFTER_SECS=1\n",
    );
    host.sh("systemctl daemon-reload");
    assert_eq!(host.http_get("http://127.0.0.1:8003/healthz").0, 200);
    wait_until("the idle instance exits", Duration::from_secs(15), || {
        state(&host, "shop@8003.service") == "inactive"
    });
    assert_eq!(
        host.sh("systemctl show -p Result --value shop@8003.service")
            .trim(),
        "success"
    );
    assert_eq!(host.http_get("http://127.0.0.1:8003/healthz").0, 200);
    assert_eq!(state(&host, "shop@8003.service"), "active");
}
