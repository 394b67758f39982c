//! Where one instance's time goes: `perf record` of one instance (no nginx, so that the
//! samples are the instance's alone) under the anonymous 1,000-item list and under the
//! signed-in form create, for each build: the previous release (`SHOP_PREVIOUS_BINARY`),
//! another build to compare with (`SHOP_BEFORE_BINARY`, e.g. main before a change) and
//! this tree; each on a database of its own in one PostgreSQL, with the same 1,000 items.
//! Prints, per build and load, the rate and the functions that took the most samples
//! (a flat profile: release builds keep symbols, not frame pointers).
//!
//!   tests/bench/profile     (release builds; needs perf, wrk and PostgreSQL)

use std::process::{Child, Command};

use super::{post_script, seed_postgres, wrk, Load, Plan};
use crate::common;

use common::{PgCluster, Shop};

#[test]
#[ignore = "profile: needs perf and wrk; run by tests/bench/profile"]
fn where_the_time_goes() {
    let plan = Plan {
        seconds: 10,
        connections: 32,
        ..Plan::from_args()
    };
    let mut builds: Vec<(String, Option<std::path::PathBuf>)> = Vec::new();
    for (name, variable) in [
        ("previous release", "SHOP_PREVIOUS_BINARY"),
        ("before", "SHOP_BEFORE_BINARY"),
    ] {
        if let Some(path) = std::env::var_os(variable) {
            builds.push((name.to_owned(), Some(path.into())));
        }
    }
    builds.push(("this tree".to_owned(), None));
    let cluster = PgCluster::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for (n, (name, binary)) in builds.iter().enumerate() {
        let database = format!("profile{n}");
        let url = cluster.create_database(&database);
        // This tree renders every list (its kept pages would leave nothing to profile).
        let render_every = [("SHOP_SERVER__PAGE_CACHE_KIB", "0")];
        let shop = match binary {
            Some(binary) => Shop::start_build(binary, &url, &[]),
            None => match std::env::var_os("SHOP_THIS_BINARY") {
                Some(this) => Shop::start_build(std::path::Path::new(&this), &url, &render_every),
                None => Shop::start(&url, &render_every),
            },
        };
        seed_postgres(&cluster, &database, 1, 1_000);
        let has_accounts = runtime.block_on(async {
            let page = common::client().get(shop.url("/signup")).send().await;
            page.is_ok_and(|p| p.status() == 200)
        });
        let cookie = if has_accounts {
            let seller = runtime.block_on(common::Seller::sign_up(&shop.url(""), "profiler"));
            cluster.psql_in(
                &database,
                "UPDATE items SET owner_id = u.id, seller = u.username, price_minor = 1999 \
                 FROM users u WHERE u.username = 'profiler'",
            );
            cluster.psql_in(&database, "VACUUM ANALYZE items");
            seller.cookie
        } else {
            super::releases::csrf_cookie_of(&shop.url("/"))
        };
        let list = Load::get(&shop.url(super::releases::LIST_1000));
        let create = Load::get(&shop.url("/")).script(&post_script(&shop.url("/"), &cookie));
        for (load_name, load) in [("list, 1,000 rows", &list), ("form create", &create)] {
            let samples = tempfile::NamedTempFile::new().unwrap();
            let recording = record(shop.pid(), samples.path(), plan.seconds - 1);
            let measured = wrk(&plan, load);
            stop(recording);
            println!(
                "\n#### {name}: {load_name}, one instance, {:.0} req/s ({} errors)\n\n```\n{}```",
                measured.rate,
                measured.errors,
                top_symbols(samples.path(), if callers() { 45 } else { 18 })
            );
        }
    }
}

/// `perf record` of `pid` (999 samples a second, every thread) into `file`, for
/// `seconds`.
fn record(pid: u32, file: &std::path::Path, seconds: u32) -> Child {
    let mut perf = Command::new("perf");
    perf.args(["record", "-q", "-F", "999", "-p", &pid.to_string()]);
    if callers() {
        perf.arg("-g");
    }
    perf.arg("-o")
        .arg(file)
        .args(["--", "sleep", &seconds.to_string()])
        .spawn()
        .expect("perf is needed (apt-get install linux-perf)")
}

fn stop(recording: Child) {
    let status = recording.wait_with_output().unwrap().status;
    assert!(status.success(), "perf: {status}");
}

/// `SHOP_PROFILE_CALLERS=1`: the builds keep frame pointers (`RUSTFLAGS="-C
/// force-frame-pointers=yes"`, `SHOP_THIS_BINARY`), and each function is charged with
/// what it calls too.
fn callers() -> bool {
    std::env::var_os("SHOP_PROFILE_CALLERS").is_some()
}

/// The `count` functions with the most samples (their own, or with their callees').
fn top_symbols(file: &std::path::Path, count: usize) -> String {
    let children = if callers() {
        ["--children", "-g", "none"]
    } else {
        ["--no-children", "-g", "none"]
    };
    let out = Command::new("perf")
        .args(["report", "--stdio", "-q", "--sort", "dso,symbol"])
        .args(children)
        .arg("-i")
        .arg(file)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(count)
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().filter(|w| *w != "-").collect();
            format!("{}\n", words.join(" "))
        })
        .collect()
}
