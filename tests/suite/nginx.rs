//! The deployed shape on one machine: the project's nginx site in front of three real
//! instances on PostgreSQL, under bounded load, through crashes, rolling restarts and a
//! database restart.

use crate::common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::load::{self, LoadReport, Tolerate};
use common::nginx::{self, Nginx};
use common::{client, free_port, open_form, post_form, PgCluster, Shop};

/// Three instances on fixed ports (so they can be restarted in place) and nginx.
struct Deployment {
    ports: Vec<u16>,
    shops: Vec<Option<Shop>>,
    url: String,
    nginx: Nginx,
}

impl Deployment {
    fn start(database_url: &str) -> Deployment {
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let shops = ports
            .iter()
            .map(|p| Some(start_instance(database_url, *p)))
            .collect();
        let nginx = Nginx::start(&ports);
        Deployment {
            url: nginx.url(""),
            ports,
            shops,
            nginx,
        }
    }
}

fn start_instance(database_url: &str, port: u16) -> Shop {
    let listen = format!("127.0.0.1:{port}");
    Shop::start(
        database_url,
        &[
            ("SHOP_SERVER__LISTEN", &listen),
            ("SHOP_DATABASE__ACQUIRE_TIMEOUT_SECS", "2"),
        ],
    )
}

/// Names stored in the database, with how often each is there.
fn stored_names(cluster: &PgCluster, database: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for name in cluster
        .psql_in(database, "SELECT name FROM items WHERE name LIKE 'load %'")
        .lines()
    {
        *counts.entry(name.to_owned()).or_insert(0) += 1;
    }
    counts
}

/// Every acknowledged POST is stored exactly once, and nothing is stored twice.
fn assert_writes_exact(report: &LoadReport, stored: &HashMap<String, usize>) {
    let duplicates: Vec<_> = stored.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "duplicate rows: {duplicates:?}");
    let lost: Vec<_> = report
        .acknowledged
        .iter()
        .filter(|n| !stored.contains_key(*n))
        .collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    let acknowledged: HashSet<_> = report.acknowledged.iter().collect();
    assert_eq!(
        acknowledged.len(),
        report.acknowledged.len(),
        "each name acknowledged once"
    );
}

/// Print what a load did, and fail on any failed request (with nginx's view of it).
fn assert_no_failure(what: &str, report: &LoadReport, nginx: &Nginx) {
    println!(
        "{what}: {} requests, {} POSTs acknowledged, slowest {:?}",
        report.requests,
        report.acknowledged.len(),
        report.slowest
    );
    assert!(
        report.failures.is_empty(),
        "{} failed requests, the first: {:?}\nnginx: {}",
        report.failures.len(),
        &report.failures[..report.failures.len().min(10)],
        tail(&nginx.error_log(), 30)
    );
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn spawn_load(
    url: &str,
    tolerate: Tolerate,
) -> (Arc<AtomicBool>, tokio::task::JoinHandle<LoadReport>) {
    let stop = Arc::new(AtomicBool::new(false));
    let (url, flag) = (url.to_owned(), Arc::clone(&stop));
    let handle =
        tokio::spawn(
            async move { load::run(&url, 6, Duration::from_secs(60), flag, tolerate).await },
        );
    (stop, handle)
}

#[test]
#[ignore = "nginx tier: needs nginx and gixy; tests/run runs it"]
fn the_site_passes_nginx_t_and_gixy() {
    let source = |file: &str| {
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("nginx")
                .join(file),
        )
        .unwrap()
    };
    let prefix = nginx::prefix(&source("shop.conf"), &source("shop-upstream.conf"));
    let (ok, said) = nginx::check(prefix.path());
    assert!(ok, "nginx -t:\n{said}");
    let gixy = std::env::var("GIXY").unwrap_or_else(|_| {
        format!(
            "{}/tools/bin/gixy",
            env!("CARGO_TARGET_TMPDIR").trim_end_matches("/tmp")
        )
    });
    let out = Command::new(&gixy)
        .arg(prefix.path().join("nginx.conf"))
        .output()
        .unwrap_or_else(|e| panic!("run {gixy} (tests/run installs it): {e}"));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("No issues found"),
        "gixy:\n{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "nginx tier: needs nginx and gixy; tests/run runs it"]
async fn requests_spread_redirect_relatively_and_are_compressed() {
    let db = common::TestDb::new(common::Backend::Postgres);
    let site = Deployment::start(&db.url);
    let http = client();
    for _ in 0..30 {
        let response = http
            .get(format!("{}/items", site.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            !response.headers().contains_key("x-shop-instance"),
            "which instance answered is not the public's"
        );
    }
    let seen: HashSet<String> = site.nginx.answered_by("/items").into_iter().collect();
    let expected: HashSet<String> = site.ports.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        seen, expected,
        "all three instances answer (the access log says)"
    );

    let session = open_form(&http, &format!("{}/", site.url)).await;
    let response = post_form(
        &http,
        &format!("{}/", site.url),
        &session,
        &[
            ("name", "Through nginx"),
            ("quantity", "1"),
            ("description", "d"),
        ],
    )
    .await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()["location"],
        "/items",
        "relative, untouched by nginx"
    );
    // The same form POSTed twice through nginx (a retry): one row.
    let again = open_form(&http, &format!("{}/", site.url)).await;
    let cookie = again.cookie;
    let body = [
        ("csrf_token", again.token),
        ("idempotency_key", again.idempotency_key),
        ("name", "Sent twice".to_owned()),
        ("quantity", "2".to_owned()),
        ("description", "d".to_owned()),
    ];
    for _ in 0..2 {
        let response = http
            .post(format!("{}/", site.url))
            .header("cookie", &cookie)
            .form(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303);
    }
    assert_eq!(
        db.sql("SELECT count(*) FROM items WHERE name = 'Sent twice'"),
        "1"
    );
    let response = http
        .get(format!("{}/items", site.url))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert!(
        response.headers().get("content-encoding").is_none(),
        "pages are not compressed: they hold the form token and echo the search (BREACH)"
    );
    let headers = response.headers().clone();
    for name in [
        "content-security-policy",
        "x-content-type-options",
        "referrer-policy",
    ] {
        assert_eq!(
            headers.get_all(name).iter().count(),
            1,
            "shop's {name}, once: nginx adds none of its own"
        );
    }
    let html = reqwest::get(format!("{}/items", site.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let css = html
        .split("href=\"")
        .find(|s| s.starts_with("/static/"))
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let response = http
        .get(format!("{}{css}", site.url))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-encoding"],
        "gzip",
        "the stylesheet is compressed"
    );
    assert_eq!(
        response.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let big = "x".repeat(20 * 1024);
    let response = http
        .post(format!("{}/api/items", site.url))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413, "nginx refuses large bodies too");

    // Sign-ins from one address: nginx's limit_req answers 429 past its burst (shop would
    // have answered 422: these sign-ups are refused for a too short password).
    let signup = open_form(&http, &format!("{}/signup", site.url)).await;
    let mut statuses = Vec::new();
    let mut nginx_answer = None;
    for n in 0..45 {
        let name = format!("flood{n}");
        let response = post_form(
            &http,
            &format!("{}/signup", site.url),
            &signup,
            &[("username", &name), ("password", "x")],
        )
        .await;
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            nginx_answer = Some(response.headers().clone());
        }
    }
    let nginx_answer = nginx_answer.expect("a 429 from nginx");
    for name in [
        "content-security-policy",
        "x-content-type-options",
        "referrer-policy",
    ] {
        assert_eq!(
            nginx_answer.get(name),
            headers.get(name),
            "nginx's own answers carry shop's {name}"
        );
    }
    assert_eq!(
        statuses[0], 422,
        "shop answers the first ones: {statuses:?}"
    );
    assert!(
        statuses.iter().filter(|s| **s == 429).count() >= 10,
        "nginx limits the rest: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 422 || *s == 429),
        "{statuses:?}"
    );
    assert_eq!(
        common::status_of(http.get(format!("{}/login", site.url))).await,
        200,
        "GETs are not limited"
    );
    let response = http
        .get(format!("{}/healthz", site.url))
        .header("x-request-id", "ignored-by-nginx")
        .send()
        .await
        .unwrap();
    let id = response.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(
        id.len(),
        32,
        "nginx's $request_id reaches shop and comes back: {id}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "nginx tier: needs nginx and gixy; tests/run runs it"]
async fn kill_9_of_an_instance_fails_no_request() {
    let db = common::TestDb::new(common::Backend::Postgres);
    let mut site = Deployment::start(&db.url);
    let (stop, load) = spawn_load(&site.url, Tolerate::Nothing);
    tokio::time::sleep(Duration::from_secs(2)).await;
    site.shops[1].as_mut().unwrap().kill9();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    let report = load.await.unwrap();
    assert_no_failure("kill -9", &report, &site.nginx);
    assert!(
        report.acknowledged.len() > 10,
        "the load did write: {report:?}"
    );
    assert_writes_exact(&report, &stored_names(PgCluster::shared(), &db.name));
}

/// A rolling restart as systemd does it: the listening sockets stay open (here the test
/// holds them, as `shop@.socket` does), each instance gets SIGTERM, drains, exits, and a
/// new process takes over its socket; the next instance only once this one answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "nginx tier: needs nginx and gixy; tests/run runs it"]
async fn a_rolling_restart_fails_no_request() {
    let db = common::TestDb::new(common::Backend::Postgres);
    let sockets: Vec<std::net::TcpListener> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports: Vec<u16> = sockets
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect();
    let settings = [("SHOP_DATABASE__ACQUIRE_TIMEOUT_SECS", "2")];
    let mut shops: Vec<Shop> = sockets
        .iter()
        .map(|s| Shop::start_on_held_socket(s, &db.url, &settings))
        .collect();
    let nginx = Nginx::start(&ports);
    let site_url = nginx.url("");
    let (stop, load) = spawn_load(&site_url, Tolerate::Nothing);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let http = client();
    for i in 0..3 {
        let old_pid = shops[i].pid();
        shops[i].terminate();
        assert_eq!(
            shops[i].wait_exit(Duration::from_secs(30)),
            Some(0),
            "instance {i} drained and exited"
        );
        shops[i] = Shop::start_on_held_socket(&sockets[i], &db.url, &settings);
        assert_ne!(shops[i].pid(), old_pid);
        let ready = format!("http://127.0.0.1:{}/readyz", ports[i]);
        assert!(common::wait_for_status(&http, &ready, 200, Duration::from_secs(10)).await);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let report = load.await.unwrap();
    drop(shops);
    assert_no_failure("rolling restart", &report, &nginx);
    assert!(report.acknowledged.len() > 10);
    assert_writes_exact(&report, &stored_names(PgCluster::shared(), &db.name));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "nginx tier: needs nginx and gixy; tests/run runs it"]
async fn a_database_restart_gives_503s_then_serves_again_without_restarts() {
    let cluster = PgCluster::start();
    let url = cluster.create_database("outage");
    let site = Deployment::start(&url);
    let pids: Vec<u32> = site
        .shops
        .iter()
        .map(|s| s.as_ref().unwrap().pid())
        .collect();
    let (stop, load) = spawn_load(&site.url, Tolerate::ServiceUnavailable);
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.stop();
    tokio::time::sleep(Duration::from_secs(4)).await;
    cluster.restart();
    let back = std::time::Instant::now();
    let http = client();
    assert!(
        common::wait_for_status(
            &http,
            &format!("{}/items", site.url),
            200,
            Duration::from_secs(10)
        )
        .await
    );
    let recovered_in = back.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let report = load.await.unwrap();
    println!(
        "database restart: {} requests, {} answered 503, recovered {:?} after the database, slowest {:?}",
        report.requests, report.unavailable, recovered_in, report.slowest
    );
    assert!(
        report.failures.is_empty(),
        "only 503s are allowed (no 502, no 504, no hang): {:?}",
        &report.failures[..report.failures.len().min(10)]
    );
    assert!(report.unavailable > 0, "the outage was seen");
    assert!(
        report.slowest < Duration::from_secs(10),
        "no request hung: {:?}",
        report.slowest
    );
    assert!(recovered_in < Duration::from_secs(5), "{recovered_in:?}");
    let now: Vec<u32> = site
        .shops
        .iter()
        .map(|s| s.as_ref().unwrap().pid())
        .collect();
    assert_eq!(pids, now, "no instance was restarted");
    assert_writes_exact(&report, &stored_names(&cluster, "outage"));
}

/// A real Prometheus scrapes the three instances and sees each one's request rate after a
/// bounded load through nginx; promtool accepts the exposition; nginx refuses /metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "nginx tier: needs nginx and gixy; tests/run runs it"]
async fn prometheus_scrapes_every_instance_and_nginx_keeps_metrics_private() {
    let db = common::TestDb::new(common::Backend::Postgres);
    let site = Deployment::start(&db.url);
    let http = client();

    assert_eq!(
        common::status_of(http.get(format!("{}/metrics", site.url))).await,
        403,
        "nginx refuses /metrics from outside"
    );
    let direct = format!("http://127.0.0.1:{}/metrics", site.ports[0]);
    let healthz = direct.replace("/metrics", "/healthz");
    assert_eq!(common::status_of(http.get(&healthz)).await, 200);
    let response = http.get(&direct).send().await.unwrap();
    assert_eq!(
        response.status(),
        200,
        "an instance answers /metrics itself"
    );
    let exposition = response.text().await.unwrap();
    for name in [
        "shop_http_requests_total",
        "shop_http_request_duration_seconds_bucket",
        "shop_http_requests_in_flight",
        "shop_db_pool_connections",
        "shop_db_pool_idle_connections",
        "shop_db_up 1",
        "shop_build_info{",
    ] {
        assert!(exposition.contains(name), "{name} in:\n{exposition}");
    }
    common::prometheus::promtool_check_metrics(&exposition)
        .unwrap_or_else(|e| panic!("promtool check metrics:\n{e}\n{exposition}"));

    let prometheus = common::prometheus::Prometheus::scraping(&site.ports);
    let added = common::add_item(site.shops[0].as_ref().unwrap(), "metered", "1", "x").await;
    assert_eq!(added.status(), 303);
    for i in 0..300 {
        let path = if i % 3 == 0 { "/items/1" } else { "/items" };
        let _ = http
            .get(format!("{}{path}", site.url))
            .send()
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rates = prometheus.query("sum by (instance) (rate(shop_http_requests_total[20s]))");
    assert_eq!(
        rates.len(),
        3,
        "a rate for each instance: {rates:?}\n{}",
        prometheus.log()
    );
    assert!(
        rates.iter().all(|(_, rate)| *rate > 0.0),
        "non-zero everywhere: {rates:?}"
    );
    let routes = prometheus.query("sum by (route) (shop_http_requests_total)");
    let routes: HashSet<String> = routes
        .iter()
        .map(|(labels, _)| labels["route"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        routes.contains("/items/{id}") && !routes.iter().any(|r| r.contains("/items/1")),
        "route templates, never raw paths: {routes:?}"
    );
    let created = prometheus.query("sum(shop_items_created_total)");
    assert_eq!(created.len(), 1, "items created: {created:?}");
    assert!(created[0].1 >= 1.0, "{created:?}");
}
