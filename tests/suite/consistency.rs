//! The facts several files must agree on, read from the files themselves: the instance
//! list (the package's /etc/default/shop, nginx's upstream, Ansible's group_vars, the
//! package's description and manual page), and the timeouts and limits that nginx,
//! systemd and shop's built-in defaults must keep in order. Changing one without the
//! others fails here, not on a host.

use std::path::Path;

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// shop's built-in default for `key` (e.g. `server.request_timeout_secs`).
fn shop_default(key: &str) -> u64 {
    config::Config::builder()
        .add_source(config::File::from_str(
            shop::config::DEFAULTS,
            config::FileFormat::Toml,
        ))
        .build()
        .unwrap()
        .get::<u64>(key)
        .unwrap_or_else(|e| panic!("{key}: {e}"))
}

/// The first value of `directive` in an nginx file (`proxy_read_timeout 35s;` → "35s").
fn nginx_value(file: &str, directive: &str) -> String {
    read(file)
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(directive)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{directive} in {file}"))
        .trim_end_matches(';')
        .to_owned()
}

/// An nginx time or size in seconds or bytes: `35s`, `60`, `16k`, `1m`.
fn nginx_number(value: &str) -> u64 {
    let (digits, unit) = value.split_at(
        value
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(value.len()),
    );
    let n: u64 = digits
        .parse()
        .unwrap_or_else(|_| panic!("a number: {value}"));
    match unit {
        "" | "s" => n,
        "k" | "K" => n * 1024,
        "m" | "M" => n * 1024 * 1024,
        _ => panic!("unit of {value}"),
    }
}

/// A `Key=Ns` setting of the instance's unit, in seconds.
fn unit_seconds(key: &str) -> u64 {
    let unit = read("systemd/shop@.service");
    let value = unit
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("{key}= in shop@.service"));
    value.trim_end_matches('s').parse().unwrap()
}

/// The package's instance list, from its /etc/default/shop.
fn packaged_instances() -> Vec<u16> {
    read("packaging/default")
        .lines()
        .find_map(|l| l.strip_prefix("SHOP_INSTANCES="))
        .expect("SHOP_INSTANCES in packaging/default")
        .trim_matches('"')
        .split_whitespace()
        .map(|port| port.parse().unwrap())
        .collect()
}

#[test]
fn the_instance_list_is_the_same_everywhere() {
    let ports = packaged_instances();
    assert!(!ports.is_empty());

    let upstream: Vec<u16> = read("nginx/shop-upstream.conf")
        .lines()
        .filter_map(|l| l.trim().strip_prefix("server 127.0.0.1:"))
        .map(|rest| rest.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        upstream, ports,
        "nginx/shop-upstream.conf balances the package's instances"
    );

    let ansible = read("ansible/group_vars/all/main.yml");
    let listed: Vec<String> = ports.iter().map(u16::to_string).collect();
    let line = format!("shop_instances: [{}]", listed.join(", "));
    assert!(
        ansible.lines().any(|l| l == line),
        "group_vars has `{line}`"
    );

    let (first, last) = (ports[0], ports[ports.len() - 1]);
    let cargo = read("Cargo.toml");
    assert!(
        cargo.contains(&format!("on ports {first} to {last}")),
        "the package description names ports {first} to {last}"
    );
    let manual = read("packaging/shop.1");
    let named = format!("{} and {last})", listed[..listed.len() - 1].join(", "));
    assert!(
        manual.contains(&named),
        "shop(1) lists the instances: {named}"
    );
}

#[test]
fn timeouts_and_limits_keep_their_order() {
    let shutdown = shop_default("server.shutdown_timeout_secs");
    let stop = unit_seconds("TimeoutStopSec");
    assert!(
        stop > shutdown,
        "systemd's TimeoutStopSec ({stop} s) must exceed server.shutdown_timeout_secs ({shutdown} s), or it kills a draining instance"
    );

    let start = unit_seconds("TimeoutStartSec");
    let startup_wait = shop_default("database.startup_wait_secs");
    assert!(
        start > startup_wait + 10,
        "TimeoutStartSec ({start} s) leaves room after database.startup_wait_secs ({startup_wait} s)"
    );

    let request = shop_default("server.request_timeout_secs");
    let read_timeout = nginx_number(&nginx_value("nginx/shop-proxy.conf", "proxy_read_timeout"));
    assert!(
        read_timeout > request,
        "nginx's proxy_read_timeout ({read_timeout} s) must exceed server.request_timeout_secs ({request} s), so shop's 503 reaches the client instead of nginx's 504"
    );

    let idle = shop_default("server.keepalive_idle_secs");
    let nginx_idle = nginx_number(&nginx_value(
        "nginx/shop-upstream.conf",
        "keepalive_timeout",
    ));
    assert!(
        nginx_idle < idle,
        "nginx's upstream keepalive_timeout ({nginx_idle} s) must be below server.keepalive_idle_secs ({idle} s), so nginx never reuses a connection shop closed"
    );

    let body = shop_default("server.body_limit_bytes");
    let nginx_body = nginx_number(&nginx_value(
        "nginx/shop-locations.conf",
        "client_max_body_size",
    ));
    assert_eq!(
        nginx_body, body,
        "nginx's client_max_body_size and server.body_limit_bytes refuse the same bodies"
    );
}
