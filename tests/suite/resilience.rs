//! How shop behaves when things go wrong: the database goes away and comes back, three
//! instances start at once on an empty database, a query fails, SIGTERM arrives mid-request.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{client, open_form, post_form, Backend, PgCluster, Shop, TestDb};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_gives_503_and_recovers_without_a_restart() {
    let cluster = PgCluster::start();
    let url = cluster.create_database("outage");
    let shop = Shop::start(&url, &[("SHOP_DATABASE__ACQUIRE_TIMEOUT_SECS", "1")]);
    let http = client();
    let session = open_form(&http, &shop.url("/")).await;
    let item = [
        ("name", "Survivor"),
        ("quantity", "1"),
        ("description", "made before the outage"),
    ];
    assert_eq!(
        post_form(&http, &shop.url("/"), &session, &item)
            .await
            .status(),
        303
    );

    cluster.stop();
    let started = std::time::Instant::now();
    let response = http.get(shop.url("/items")).send().await.unwrap();
    let (status, request_id, html) = common::answer_parts(response).await;
    assert_eq!(status, 503);
    assert!(
        html.contains("cannot reach its database") && html.contains(&request_id),
        "{html}"
    );
    assert!(
        started.elapsed() < OUTAGE_BOUND,
        "a 503 at once, not a hang"
    );
    let response = http.get(shop.url("/api/items")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .contains("database"));
    let response = post_form(
        &http,
        &shop.url("/"),
        &session,
        &[("name", "Lost?"), ("quantity", "1"), ("description", "x")],
    )
    .await;
    assert_eq!(
        response.status(),
        503,
        "a POST during the outage is refused, not half-done"
    );
    assert_eq!(common::status_of(http.get(shop.url("/readyz"))).await, 503);
    assert_eq!(
        common::status_of(http.get(shop.url("/healthz"))).await,
        200,
        "the process itself is fine"
    );

    cluster.restart();
    assert!(
        common::wait_for_status(&http, &shop.url("/items"), 200, Duration::from_secs(15)).await,
        "serves again by itself:\n{}",
        shop.logs()
    );
    let html = common::get_text(&shop.url("/items")).await.1;
    assert!(html.contains("Survivor") && !html.contains("Lost?"));
    assert_eq!(common::status_of(http.get(shop.url("/readyz"))).await, 200);
    assert!(
        shop.logs().contains("database unavailable"),
        "the outage is logged"
    );
    drop(shop);
}

/// How fast every answer must come while the database is away: the store knows it is
/// down and answers without touching the pool (ms); a request that was already waiting
/// for a connection when the database vanished waits at most the acquire timeout (1 s).
const OUTAGE_BOUND: Duration = Duration::from_millis(1500);

/// Started for the first time (socket activation, as systemd does) while PostgreSQL is
/// down and the database was never migrated: the first request is answered with 503 at
/// once, nothing waits in the backlog, and the same process serves once the database is
/// up, migrating it first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_started_during_an_outage_answers_at_once_and_serves_when_it_returns() {
    let cluster = PgCluster::start();
    let url = cluster.create_database("late");
    cluster.stop();
    let started = std::time::Instant::now();
    let mut shop = Shop::start_socket_activated(&url, &[]);
    assert!(
        started.elapsed() < OUTAGE_BOUND + Duration::from_secs(1),
        "serving {:?} after activation",
        started.elapsed()
    );
    let http = client();
    for path in ["/items", "/api/items", "/readyz", "/healthz"] {
        let asked = std::time::Instant::now();
        let response = http.get(shop.url(path)).send().await.unwrap();
        let took = asked.elapsed();
        let expected = if path == "/healthz" { 200 } else { 503 };
        assert_eq!(response.status(), expected, "{path}");
        assert!(took < OUTAGE_BOUND, "{path} took {took:?}");
        if expected == 503 && path != "/readyz" {
            assert_eq!(response.headers()["retry-after"], "5", "{path}");
        }
        if path == "/readyz" {
            let reason = response.json::<Value>().await.unwrap()["reason"]
                .as_str()
                .unwrap()
                .to_owned();
            assert!(reason.contains("unreachable since"), "{reason}");
        }
    }

    cluster.restart();
    let back = std::time::Instant::now();
    assert!(
        common::wait_for_status(&http, &shop.url("/items"), 200, Duration::from_secs(5)).await,
        "serves within 5 s of the database's return:\n{}",
        shop.logs()
    );
    eprintln!("served again {:?} after the database", back.elapsed());
    assert_eq!(common::status_of(http.get(shop.url("/readyz"))).await, 200);
    assert_eq!(shop.wait_exit(Duration::ZERO), None, "the same process");
    assert!(shop.logs().contains("database reachable again"));
}

async fn three_instances_start_at_once_on_an_empty_database(backend: Backend) {
    let db = TestDb::new(backend);
    let starters: Vec<_> = (0..3)
        .map(|_| {
            let url = db.url.clone();
            std::thread::spawn(move || Shop::try_start(&url, &[]))
        })
        .collect();
    let shops: Vec<Shop> = starters
        .into_iter()
        .map(|s| {
            s.join()
                .unwrap()
                .unwrap_or_else(|logs| panic!("an instance failed to start:\n{logs}"))
        })
        .collect();
    for shop in &shops {
        assert_eq!(
            common::status_of(client().get(shop.url("/readyz"))).await,
            200
        );
    }
    let http = client();
    let session = open_form(&http, &shops[0].url("/")).await;
    for shop in &shops {
        let item = [("name", "x"), ("quantity", "1"), ("description", "y")];
        assert_eq!(
            post_form(&http, &shop.url("/"), &session, &item)
                .await
                .status(),
            303
        );
    }
    let migrations = match backend {
        Backend::Postgres => db.sql("SELECT count(*) FROM _sqlx_migrations"),
        Backend::Sqlite => sqlite_scalar(&db.url, "SELECT count(*) FROM _sqlx_migrations").await,
    };
    let known = common::migration_count();
    assert_eq!(
        migrations,
        known.to_string(),
        "each migration applied exactly once"
    );
}

async fn sqlite_scalar(url: &str, sql: &str) -> String {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
    let (value,): (i64,) = sqlx::query_as(sql).fetch_one(&mut conn).await.unwrap();
    value.to_string()
}

async fn the_list_walks_the_index(backend: Backend) {
    let db = TestDb::new(backend);
    let shop = Shop::start(&db.url, &[]);
    let plan = match backend {
        Backend::Postgres => {
            db.sql("INSERT INTO items (name, quantity, description, date_added) \
                    SELECT 'n' || g, g % 100, 'd', now() - g * interval '1 second' FROM generate_series(1, 20000) g");
            db.sql("ANALYZE items");
            db.sql(
                "EXPLAIN SELECT id, name, quantity, description, date_added FROM items \
                    ORDER BY date_added DESC, id DESC LIMIT 51 OFFSET 0",
            )
        }
        Backend::Sqlite => {
            use sqlx::Connection;
            let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(
                "EXPLAIN QUERY PLAN SELECT id, name, quantity, description, date_added FROM items \
                 ORDER BY date_added DESC, id DESC LIMIT 51 OFFSET 0",
            )
            .fetch_all(&mut conn)
            .await
            .unwrap();
            rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("\n")
        }
    };
    assert!(
        plan.contains("items_newest_first"),
        "the list page uses the index:\n{plan}"
    );
    assert!(
        !plan.contains("Sort") && !plan.contains("TEMP B-TREE"),
        "and sorts nothing:\n{plan}"
    );
    let response = client().get(shop.url("/items")).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_internal_error_shows_a_generic_page_and_logs_the_details() {
    let db = TestDb::new(Backend::Postgres);
    let shop = Shop::start(&db.url, &[]);
    db.sql("ALTER TABLE items RENAME COLUMN description TO descr_broken");
    let response = client().get(shop.url("/items")).send().await.unwrap();
    let (status, request_id, html) = common::answer_parts(response).await;
    assert_eq!(status, 500);
    assert!(
        html.contains("Something went wrong on our side") && html.contains(&request_id),
        "{html}"
    );
    assert!(
        !html.contains("descr") && !html.contains("column"),
        "no internals leak: {html}"
    );
    let logged = |logs: &str| {
        logs.lines().any(|l| {
            l.contains(&request_id) && l.contains("internal error") && l.contains("description")
        })
    };
    assert!(
        common::poll_until(Duration::from_secs(2), || logged(&shop.logs())),
        "the log line has the request id and the cause:\n{}",
        shop.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_waits_for_migrations_when_start_up_does_not_apply_them() {
    let db = TestDb::new(Backend::Sqlite);
    let shop = Shop::start(&db.url, &[("SHOP_DATABASE__MIGRATE_ON_START", "false")]);
    let response = client().get(shop.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.text().await.unwrap().contains("shop migrate"));
    let dir = tempfile::tempdir().unwrap();
    let out = common::shop_command(dir.path())
        .arg("migrate")
        .env("SHOP_DATABASE__URL", &db.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        common::status_of(client().get(shop.url("/readyz"))).await,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_request_in_flight_finish() {
    let db = TestDb::new(Backend::Sqlite);
    let mut shop = Shop::start(&db.url, &[]);
    let session = open_form(&client(), &shop.url("/")).await;
    let body = format!(
        "csrf_token={}&name=Late&quantity=1&description=sent+slowly",
        session.token
    );

    // A client that has sent the headers and half of the body when SIGTERM arrives.
    let mut stream = TcpStream::connect(("127.0.0.1", shop.port)).unwrap();
    write!(stream, "POST / HTTP/1.1\r\nHost: shop\r\nCookie: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        session.cookie, body.len()).unwrap();
    let (first, rest) = body.split_at(body.len() / 2);
    stream.write_all(first.as_bytes()).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    shop.terminate();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        TcpStream::connect(("127.0.0.1", shop.port)).is_err(),
        "no new connections once draining"
    );
    stream.write_all(rest.as_bytes()).unwrap();
    let mut response = String::new();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.read_to_string(&mut response);
    assert!(
        response.starts_with("HTTP/1.1 303"),
        "the in-flight POST completed: {response}"
    );
    assert_eq!(
        shop.wait_exit(Duration::from_secs(10)),
        Some(0),
        "a clean exit:\n{}",
        shop.logs()
    );
    let count = sqlite_scalar(&db.url, "SELECT count(*) FROM items WHERE name = 'Late'").await;
    assert_eq!(count, "1");
}

both_backends!(
    three_instances_start_at_once_on_an_empty_database,
    the_list_walks_the_index
);

/// Slow queries that keep every pooled connection busy are load, not an outage: the
/// request that cannot get a connection in time gets a 503, and the next one is served
/// as soon as a connection is free (no gate closed, no "database unavailable").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_pool_is_busy_not_an_outage() {
    let db = TestDb::new(Backend::Postgres);
    let shop = Shop::start(
        &db.url,
        &[
            ("SHOP_DATABASE__MAX_CONNECTIONS", "1"),
            ("SHOP_DATABASE__ACQUIRE_TIMEOUT_SECS", "1"),
        ],
    );
    let http = client();
    assert_eq!(common::status_of(http.get(shop.url("/items"))).await, 200);
    // Another session locks the table for 3 s: the list's query waits on its connection.
    let mut locker = std::process::Command::new("psql")
        .args([
            &db.url,
            "-qXc",
            "BEGIN; LOCK TABLE items; SELECT pg_sleep(3); COMMIT",
        ])
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A page not rendered yet (the first one is kept, and needs no read of the items).
    let slow = tokio::spawn(common::status_of(http.get(shop.url("/items?per_page=7"))));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let response = http.get(shop.url("/api/items")).send().await.unwrap();
    assert_eq!(
        response.status(),
        503,
        "no connection within the acquire timeout"
    );
    assert_eq!(response.headers()["retry-after"], "5");
    assert_eq!(slow.await.unwrap(), 200, "the waiting query finishes");
    assert!(locker.wait().unwrap().success());
    let asked = std::time::Instant::now();
    assert_eq!(common::status_of(http.get(shop.url("/items"))).await, 200);
    assert!(
        asked.elapsed() < Duration::from_millis(200),
        "served at once"
    );
    assert!(
        !shop.logs().contains("database unavailable"),
        "a busy pool is no outage:\n{}",
        shop.logs()
    );
}

/// SQLite: another writer holding the file longer than the query timeout makes a write
/// wait and then answer 503 (the other instances' writers are load); nothing is marked
/// down, and the next write is served as soon as the file is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_sqlite_file_is_busy_not_an_outage() {
    use sqlx::Connection;
    let db = TestDb::new(Backend::Sqlite);
    let shop = Shop::start(&db.url, &[("SHOP_DATABASE__QUERY_TIMEOUT_SECS", "1")]);
    let api = common::api_client(&shop).await;
    let create = |name: &str| {
        api.post(shop.url("/api/items"))
            .json(&serde_json::json!({"name": name, "quantity": 1, "description": "d"}))
    };
    assert_eq!(common::status_of(create("before")).await, 201);
    let mut writer = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut writer)
        .await
        .unwrap();
    let response = create("while locked").send().await.unwrap();
    assert_eq!(response.status(), 503, "the write waited 1 s");
    assert_eq!(response.headers()["retry-after"], "5");
    sqlx::query("COMMIT").execute(&mut writer).await.unwrap();
    writer.close().await.unwrap();
    let asked = std::time::Instant::now();
    assert_eq!(common::status_of(create("after")).await, 201);
    assert!(
        asked.elapsed() < Duration::from_millis(500),
        "served at once"
    );
    assert!(
        !shop.logs().contains("database unavailable"),
        "a locked file is no outage:\n{}",
        shop.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_request_does_not_hold_shutdown_past_its_bound() {
    let db = TestDb::new(Backend::Sqlite);
    let mut shop = Shop::start(&db.url, &[("SHOP_SERVER__SHUTDOWN_TIMEOUT_SECS", "1")]);
    let mut stream = TcpStream::connect(("127.0.0.1", shop.port)).unwrap();
    // Headers promising a body that never comes.
    write!(stream, "POST /login HTTP/1.1\r\nHost: shop\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nname=").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let asked = std::time::Instant::now();
    shop.terminate();
    assert_eq!(
        shop.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        shop.logs()
    );
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "it waited for the request ({took:?})"
    );
    assert!(
        shop.logs().contains("shutdown timeout reached"),
        "{}",
        shop.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_accepted_just_before_sigterm_is_still_answered() {
    let db = TestDb::new(Backend::Sqlite);
    let mut shop = Shop::start(&db.url, &[]);
    // Accepted by shop, but its request comes only after SIGTERM (as under a restart, when
    // a client connects at that moment).
    let mut stream = TcpStream::connect(("127.0.0.1", shop.port)).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    shop.terminate();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: shop\r\n\r\n")
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "answered, not dropped: {response:?}"
    );
    assert!(
        response.to_ascii_lowercase().contains("connection: close"),
        "and told the connection closes: {response}"
    );
    assert_eq!(shop.wait_exit(Duration::from_secs(10)), Some(0));
}
