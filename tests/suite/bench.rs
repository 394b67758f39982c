//! The benchmark of the deployed shape: nginx → three shop instances → PostgreSQL, side by
//! side with its ceilings measured in the same run (nginx serving a static file of the form
//! page's size, the same nginx proxying to it, one instance without nginx, PostgreSQL's own
//! INSERT rate with pgbench); orders on many items and on one hot item, beside the create
//! rate and pgbench running the order's statements, on PostgreSQL and on SQLite (three
//! instances on one file; `bench/orders.rs`); then the same pages with a million items, searched, paged ten
//! thousand deep, on PostgreSQL and on SQLite, with their query plans; repeat views (304);
//! each instance's memory; cold start; backup and restore.
//!
//!   tests/bench/run                full run (release build, 10 s a scenario, 1,000,000
//!                                  items), writes docs/benchmarks.md
//!   cargo test --test suite -- --ignored --nocapture bench::
//!                                  smoke mode (about a second a scenario, 50,000 items),
//!                                  part of tests/run
//!
//! A module of the test suite (its helpers are the suite's), one `#[ignore]`d test that
//! prints its tables; `SHOP_BENCH=full` makes it the full run.

mod cpu;
mod orders;
mod profile;
mod releases;

use crate::common;

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::nginx::{self, Nginx};
use common::{PgCluster, Shop};

#[derive(Clone, Copy)]
struct Plan {
    full: bool,
    seconds: u32,
    connections: u32,
    cold_starts: usize,
    /// The big table's size.
    big: u32,
}

impl Plan {
    fn from_args() -> Plan {
        let full = std::env::var("SHOP_BENCH").is_ok_and(|v| v == "full");
        if full {
            Plan {
                full,
                seconds: 10,
                connections: 32,
                cold_starts: 9,
                big: 1_000_000,
            }
        } else {
            Plan {
                full,
                seconds: 1,
                connections: 8,
                cold_starts: 3,
                big: 50_000,
            }
        }
    }

    /// The deep page of the big table (page 10,000 of 50 items at a million).
    fn deep_page(&self) -> u32 {
        (self.big / 100).max(2)
    }
}

/// What wrk (or pgbench) measured.
#[derive(Debug, Clone, Default)]
struct Measured {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

/// The best Python ancestor's create rate, measured side by side with shop on this kind of
/// machine when the issue was written (it is not rebuilt here): the create target is 6×.
const ANCESTOR_CREATE_PER_SEC: f64 = 1_044.0;

/// How long an instance takes to settle after a load: it hands back the memory a load
/// left free every 5 s, and closes an SQLite connection idle for 15 s (sqlx's reaper looks
/// every 15 s). Resident memory is read this long after the last load (full mode).
const SETTLE: Duration = Duration::from_secs(32);

impl Plan {
    /// How long to wait before reading memory: `SETTLE` in full mode (the smoke run's
    /// memory figures are not meaningful, and it has no half-minute to spare).
    fn settle(&self) -> Duration {
        if self.full {
            SETTLE
        } else {
            Duration::from_secs(6)
        }
    }
}

/// A search word that the seeding puts in ten items of the big table, and nowhere else.
const RARE_WORD: &str = "zebrawood";

#[test]
#[ignore = "benchmark tier: needs nginx and wrk; tests/run runs its smoke mode"]
fn the_benchmark() {
    let plan = Plan::from_args();
    for tool in ["wrk", "nginx"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .unwrap()
            .status
            .success();
        assert!(found, "{tool} is needed (apt-get install {tool})");
    }
    let cluster = PgCluster::start();
    let url = cluster.create_database("bench");
    let trio = releases::Trio::start(None, &url, cluster.server_pid());
    let (shops, proxy) = (&trio.shops, &trio.proxy);
    let direct = shops[0].url("");
    seed_postgres(&cluster, "bench", 1, 1_000);
    // A seller (signed in through nginx) for the pages and writes that need one.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let seller = runtime.block_on(common::Seller::sign_up(&proxy.url(""), "bench"));
    let token = runtime.block_on(seller.api_token(&proxy.url("")));
    let signed_in = format!("Cookie: {}", seller.cookie);
    // First, on the 1,000 items alone: this tree beside the previous release.
    let releases = releases::compare(&plan, &runtime, &cluster, &trio, (&seller, &token));

    // The form page's bytes, served by nginx as a plain file: the ceiling of the proxy path.
    let form_page = http_get_body(&proxy.url("/"), &signed_in);
    let static_dir = tempfile::tempdir().unwrap();
    let static_file = static_dir.path().join("form.html");
    std::fs::write(&static_file, &form_page).unwrap();
    let static_nginx = nginx::start_static(&static_file);
    // The same site proxying to an upstream that answers at once (the static nginx): what
    // the proxy hop itself costs on this machine, whatever the instances do.
    let proxy_to_static = Nginx::start(&[static_nginx.port]);

    let mut rows: Vec<Row> = Vec::new();
    let form = wrk(&plan, &Load::get(&proxy.url("/")).header(&signed_in));
    let ceiling = wrk(&plan, &Load::get(&static_nginx.url("/static.html")));
    let hop = wrk(&plan, &Load::get(&proxy_to_static.url("/static.html")));
    rows.push(Row::new(
        "form page `GET /`",
        form.clone(),
        "nginx proxying to a static file",
        hop,
        Target::Ratio(0.8),
    ));
    rows.push(Row::new(
        "form page `GET /`",
        form,
        "nginx serving that file itself",
        ceiling,
        Target::None,
    ));
    let list_1000 = "/items?per_page=1000";
    for (name, path, target) in [
        (
            "list, 1,000 rows `GET /items?per_page=1000`",
            list_1000,
            Target::Rate(1500.0),
        ),
        ("list, 50 rows `GET /items`", "/items", Target::None),
        ("JSON list `GET /api/items`", "/api/items", Target::None),
    ] {
        let through = wrk(&plan, &Load::get(&proxy.url(path)));
        let alone = wrk(&plan, &Load::get(&format!("{direct}{path}")));
        rows.push(Row::new(
            name,
            through,
            "one instance, no nginx",
            alone,
            target,
        ));
    }
    let small_list = rows[2].shop.clone();
    let small_page = rows[3].shop.clone();
    // What being signed in costs a page: both rendered for every request (an instance
    // keeps the anonymous pages it rendered, never a signed-in one).
    let rendering = releases.rendering_proxy();
    let (signed_in_list, anonymous_list) = side_by_side(
        &plan,
        &Load::get(&rendering.url("/items")).header(&signed_in),
        &Load::get(&rendering.url("/items")),
    );
    rows.push(Row::new(
        "list, 50 rows, signed in (in turns with the anonymous list; both rendered every time)",
        signed_in_list,
        "the same list, anonymous",
        anonymous_list,
        Target::Ratio(0.9),
    ));
    let etag = etag_of(&proxy.url(list_1000));
    let repeat = wrk(
        &plan,
        &Load::get(&proxy.url(list_1000)).header(&format!("If-None-Match: {etag}")),
    );
    rows.push(Row::new(
        "repeat view of the 1,000-row list (`If-None-Match`: 304)",
        repeat,
        "the same list, rendered",
        small_list.clone(),
        Target::None,
    ));
    let create = wrk(
        &plan,
        &Load::get(&proxy.url("/")).script(&post_script(&proxy.url("/"), &seller.cookie)),
    );
    let insert = pgbench(&plan, &cluster, "bench", PGBENCH_INSERT);
    rows.push(Row::new(
        "create `POST /`, signed in (session, CSRF, idempotency key)",
        create.clone(),
        "pgbench, same INSERT",
        insert,
        Target::Rate(6.0 * ANCESTOR_CREATE_PER_SEC),
    ));
    rows.push(Row::new(
        "create `POST /api/items` with an API token",
        wrk(
            &plan,
            &Load::get(&proxy.url("/api/items")).script(&api_create_script(&token)),
        ),
        "the form's create",
        create,
        Target::None,
    ));
    let pids: Vec<u32> = shops.iter().map(Shop::pid).collect();
    let (order_rows, order_time) =
        orders::on_postgres(&plan, &runtime, &cluster, "bench", proxy, &pids);
    rows.extend(order_rows);
    let (order_rows, sqlite_order_time) = orders::on_sqlite(&plan, &runtime);
    rows.extend(order_rows);
    let logins = login_storm(&plan, &url);
    let backups = backup_and_restore(&url);

    // A million items (fewer in smoke mode): the same pages, deep pages and search.
    let big = BigTable::postgres(&plan, &cluster, "bench", &url, proxy.url(""));
    let mut big_rows = big.scenarios(&plan, &small_page, &small_list);
    let (sqlite, sqlite_page, sqlite_list) = BigTable::sqlite(&plan);
    big_rows.extend(sqlite.scenarios(&plan, &sqlite_page, &sqlite_list));

    std::thread::sleep(plan.settle());
    let mut rss: Vec<(f64, f64)> = shops.iter().map(|s| rss_mib(s.pid())).collect();
    rss.push(rss_mib(sqlite.shop.as_ref().unwrap().pid()));
    let cold: Vec<f64> = (0..plan.cold_starts).map(|_| cold_start_ms(&url)).collect();

    let mut report = render(&plan, &rows, &rss, &cold);
    report += &releases.render();
    report += &order_time;
    report += &sqlite_order_time;
    report += &logins;
    report += &render_big(&plan, &big_rows, &[&big, &sqlite]);
    report += &format!("\n{backups}");
    println!("{report}");
    if plan.full {
        // A fresh table; the hand-written analysis after it is kept.
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/benchmarks.md");
        let previous = std::fs::read_to_string(&path).unwrap_or_default();
        let analysis = previous
            .find("\n## Analysis")
            .map_or("", |at| &previous[at..]);
        std::fs::write(
            &path,
            format!("{}\n{report}{analysis}", machine_description()),
        )
        .unwrap();
        println!("written to {}", path.display());
    }
    let all_rows: Vec<&Row> = rows.iter().chain(big_rows.iter()).collect();
    let mut failures = sanity_failures(&all_rows, &rss, &cold);
    for (name, measured) in releases.measured() {
        if measured.errors > 0 || measured.rate <= 0.0 {
            failures.push(format!(
                "{name}: {} errors, {:.0}/s",
                measured.errors, measured.rate
            ));
        }
    }
    drop((proxy_to_static, static_nginx, trio, sqlite));
    println!(
        "{} passed, {} failed",
        1 - usize::from(!failures.is_empty()),
        usize::from(!failures.is_empty())
    );
    assert!(
        failures.is_empty(),
        "the benchmark itself went wrong: {failures:?}"
    );
}

/// Errors are a correctness failure in any mode, and so is a search that does not find
/// its ten items; the targets are reported, not asserted (timing on a shared 2-core
/// machine is for people to read).
fn sanity_failures(rows: &[&Row], rss: &[(f64, f64)], cold: &[f64]) -> Vec<String> {
    let mut failures = Vec::new();
    for row in rows {
        if row.shop.errors > 0 || row.shop.rate <= 0.0 {
            failures.push(format!(
                "{}: {} errors, {:.0}/s",
                row.name, row.shop.errors, row.shop.rate
            ));
        }
    }
    if rss.iter().any(|r| r.0 <= 0.0) || cold.iter().any(|c| c.is_nan()) {
        failures.push("memory or cold start not measured".into());
    }
    failures
}

/// What a scenario is held to.
#[derive(Debug, Clone, Copy)]
enum Target {
    None,
    /// At least this share of its ceiling's rate.
    Ratio(f64),
    /// At least this many requests a second.
    Rate(f64),
    /// A 99th percentile latency of at most this many milliseconds.
    P99Ms(f64),
}

impl Target {
    fn verdict(self, shop: &Measured, ceiling: &Measured) -> String {
        match self {
            Target::None => String::new(),
            Target::Ratio(t) => format!(
                "≥ {:.0}% of the ceiling: {}",
                t * 100.0,
                verdict(shop.rate >= t * ceiling.rate)
            ),
            Target::Rate(t) => format!("≥ {t:.0} req/s: {}", verdict(shop.rate >= t)),
            Target::P99Ms(t) => format!("p99 ≤ {t:.0} ms: {}", verdict(shop.p99_ms <= t)),
        }
    }
}

struct Row {
    name: String,
    shop: Measured,
    ceiling_name: &'static str,
    ceiling: Measured,
    target: Target,
}

impl Row {
    fn new(
        name: impl Into<String>,
        shop: Measured,
        ceiling_name: &'static str,
        ceiling: Measured,
        target: Target,
    ) -> Row {
        Row {
            name: name.into(),
            shop,
            ceiling_name,
            ceiling,
            target,
        }
    }
}

/// The big table of one backend: seeded, its search index built on the full table (timed),
/// and the query plans of the pages that must stay as cheap as on a small table.
struct BigTable {
    backend: &'static str,
    /// Where requests go: nginx (PostgreSQL) or the one SQLite instance.
    base: String,
    /// How the search index was built on the full table, and how long it took.
    index_build: String,
    /// `after=` the last item of the page before the deep page.
    deep_cursor: String,
    plans: Vec<(String, String)>,
    /// The SQLite instance and its directory (PostgreSQL's instances are behind nginx).
    shop: Option<Shop>,
    _dir: Option<tempfile::TempDir>,
}

impl BigTable {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The instances' PostgreSQL database grown to `plan.big` items, with the search index
    /// dropped first and built again by its migration (as an upgrade does, with the
    /// instances serving), timed.
    fn postgres(
        plan: &Plan,
        cluster: &PgCluster,
        database: &str,
        url: &str,
        base: String,
    ) -> BigTable {
        let have: u32 = cluster
            .psql_in(database, "SELECT count(*) FROM items")
            .parse()
            .unwrap();
        cluster.psql_in(database, "DROP INDEX items_search");
        seed_postgres(cluster, database, have + 1, plan.big.saturating_sub(have));
        let index = common::search_index_migration();
        cluster.psql_in(
            database,
            &format!("DELETE FROM _sqlx_migrations WHERE version = {index}"),
        );
        let seconds = timed_migrate(url);
        let before_deep = cluster.psql_in(
            database,
            &format!(
                "SELECT (extract(epoch FROM date_added) * 1000000)::bigint, id, date_added FROM items \
                 ORDER BY date_added DESC, id DESC OFFSET {} LIMIT 1",
                (plan.deep_page() - 1) * 50 - 1
            ),
        );
        let fields: Vec<&str> = before_deep.split('|').collect();
        let explain = |sql: &str| {
            cluster.psql_in(
                database,
                &format!("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) {sql}"),
            )
        };
        let select = "SELECT id, name, quantity, description, date_added FROM items";
        let order = "ORDER BY date_added DESC, id DESC LIMIT 51";
        let search = |word: &str| {
            explain(&format!(
                "{select} WHERE (name || chr(31) || description) ILIKE '%{word}%' {order} OFFSET 0"
            ))
        };
        let plans = vec![
            (
                format!("search for “{RARE_WORD}” (in 10 of {} items)", plan.big),
                search(RARE_WORD),
            ),
            (
                format!("search for “fill” (in nearly all {} items)", plan.big),
                search("fill"),
            ),
            (
                format!("page {} by its `after=` position", plan.deep_page()),
                explain(&format!(
                    "{select} WHERE (date_added, id) < ('{}', {}) {order}",
                    fields[2], fields[1]
                )),
            ),
        ];
        BigTable {
            backend: "PostgreSQL, through nginx",
            base,
            index_build: format!(
                "`CREATE INDEX CONCURRENTLY … gin_trgm_ops` (migration {index}, by `shop migrate`): {seconds:.1} s"
            ),
            deep_cursor: format!("{}.{}", fields[0], fields[1]),
            plans,
            shop: None,
            _dir: None,
        }
    }

    /// An SQLite file served by one instance without nginx: its 1,000-item figures first
    /// (page 1 and the 1,000-item page, returned), then grown to `plan.big` items (the
    /// triggers keep the search index in step) and its search index built again from
    /// scratch by its migration, timed.
    fn sqlite(plan: &Plan) -> (BigTable, Measured, Measured) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("big.db").display());
        timed_migrate(&url);
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(seed_sqlite(&url, 1, 1_000));
        let shop = Shop::start(&url, &[]);
        let small_page = wrk(plan, &Load::get(&shop.url("/items")));
        let small_list = wrk(plan, &Load::get(&shop.url("/items?per_page=1000")));
        runtime.block_on(seed_sqlite(&url, 1_001, plan.big.saturating_sub(1_000)));
        let index = common::search_index_migration();
        let (before_deep, plans) = runtime.block_on(async {
            use sqlx::Connection;
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            let forget = format!("DELETE FROM _sqlx_migrations WHERE version = {index}");
            sqlx::query(&forget).execute(&mut conn).await.unwrap();
            let deep = format!(
                "SELECT date_added, id FROM items ORDER BY date_added DESC, id DESC LIMIT 1 OFFSET {}",
                (plan.deep_page() - 1) * 50 - 1
            );
            let (date, id): (chrono::DateTime<chrono::Utc>, i64) =
                sqlx::query_as(&deep).fetch_one(&mut conn).await.unwrap();
            let select = "SELECT id, name, quantity, description, date_added FROM items";
            let order = "ORDER BY date_added DESC, id DESC LIMIT 51";
            let mut plans = Vec::new();
            for (name, sql) in [
                (
                    format!("search for “{RARE_WORD}” (in 10 of {} items)", plan.big),
                    format!("{select} WHERE id IN (SELECT rowid FROM items_search WHERE items_search MATCH '\"{RARE_WORD}\"') {order} OFFSET 0"),
                ),
                (
                    format!("page {} by its `after=` position", plan.deep_page()),
                    format!("{select} WHERE (date_added, id) < (?1, ?2) {order}"),
                ),
            ] {
                let explain = format!("EXPLAIN QUERY PLAN {sql}");
                let mut query = sqlx::query_as::<_, (i64, i64, i64, String)>(&explain);
                if sql.contains("?1") {
                    query = query.bind(date).bind(id);
                }
                let rows = query.fetch_all(&mut conn).await.unwrap();
                let text: Vec<String> = rows.into_iter().map(|r| r.3).collect();
                plans.push((name, text.join("\n")));
            }
            conn.close().await.unwrap();
            (format!("{}.{id}", date.timestamp_micros()), plans)
        });
        let seconds = timed_migrate(&url);
        let big = BigTable {
            backend: "SQLite, one instance, no nginx",
            base: shop.url(""),
            index_build: format!(
                "FTS5 trigram `rebuild` (migration {index}, by `shop migrate`): {seconds:.1} s"
            ),
            deep_cursor: before_deep,
            plans,
            shop: Some(shop),
            _dir: Some(dir),
        };
        (big, small_page, small_list)
    }

    /// The big table's pages, each against the same page of a 1,000-item table.
    fn scenarios(&self, plan: &Plan, small_page: &Measured, small_list: &Measured) -> Vec<Row> {
        let deep = plan.deep_page();
        let mut rows = Vec::new();
        let mut add = |name: String, path: String, ceiling: &Measured, target: Target| {
            let measured = wrk(plan, &Load::get(&self.url(&path)));
            rows.push(Row::new(
                format!("{}: {name}", self.backend),
                measured,
                "the same page, 1,000 items",
                ceiling.clone(),
                target,
            ));
        };
        add(
            "page 1 (50 items)".into(),
            "/items".into(),
            small_page,
            Target::Ratio(0.5),
        );
        add(
            "1,000-item page".into(),
            "/items?per_page=1000".into(),
            small_list,
            Target::Ratio(0.5),
        );
        add(
            format!("page {deep} by its link (`after=`)"),
            format!("/items?after={}&page={deep}", self.deep_cursor),
            small_page,
            Target::Ratio(0.5),
        );
        // By number, for comparison: it reads every item before the page, so two clients
        // (32 would only queue for connections and get 503s).
        let by_number = wrk(
            plan,
            &Load::get(&self.url(&format!("/items?page={deep}"))).connections(2),
        );
        rows.push(Row::new(
            format!(
                "{}: page {deep} by number (`?page=`, an offset; 2 clients)",
                self.backend
            ),
            by_number,
            "page 1, 1,000 items",
            small_page.clone(),
            Target::None,
        ));
        // Latency, not throughput: two clients, so the figure is the search's own.
        let search = wrk(
            plan,
            &Load::get(&self.url(&format!("/items?q={RARE_WORD}"))).connections(2),
        );
        rows.push(Row::new(
            format!(
                "{}: search for a word in 10 items (2 clients)",
                self.backend
            ),
            search,
            "page 1, 1,000 items",
            small_page.clone(),
            Target::P99Ms(20.0),
        ));
        rows
    }
}

/// `shop migrate` on `url`, timed in seconds.
fn timed_migrate(url: &str) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = common::shop_command(dir.path())
        .env("SHOP_DATABASE__URL", url)
        .arg("migrate")
        .output()
        .unwrap();
    assert!(out.status.success(), "shop migrate: {}", common::said(&out));
    started.elapsed().as_secs_f64()
}

/// `shop backup` and `shop restore` of the whole table (about 100,000 items by now): from
/// PostgreSQL, into an SQLite file (the format is the same for both), out of it again, and
/// back into PostgreSQL; each timed, as a markdown table.
fn backup_and_restore(postgres: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite:{}", dir.path().join("bench.db").display());
    let run = |url: &str, args: &[&str]| -> f64 {
        let started = Instant::now();
        let out = common::shop_command(dir.path())
            .env("SHOP_DATABASE__URL", url)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "shop {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        started.elapsed().as_secs_f64()
    };
    let from_postgres = dir.path().join("postgres.backup");
    let from_sqlite = dir.path().join("sqlite.backup");
    let (pg, sq) = (
        from_postgres.to_str().unwrap(),
        from_sqlite.to_str().unwrap(),
    );
    let backup_pg = run(postgres, &["backup", "--output", pg]);
    let restore_sqlite = run(&sqlite, &["restore", pg]);
    let backup_sqlite = run(&sqlite, &["backup", "--output", sq]);
    let restore_pg = run(postgres, &["restore", "--force", sq]);
    let items = std::fs::read_to_string(&from_postgres)
        .unwrap()
        .lines()
        .count()
        - 2;
    let mib = std::fs::metadata(&from_postgres).unwrap().len() as f64 / (1024.0 * 1024.0);
    format!(
        "### Backup and restore, {items} items ({mib:.1} MiB of backup)\n\n\
         | | PostgreSQL | SQLite |\n| --- | ---: | ---: |\n\
         | `shop backup` | {backup_pg:.2} s | {backup_sqlite:.2} s |\n\
         | `shop restore` (into an empty database / replacing every item) | {restore_pg:.2} s | {restore_sqlite:.2} s |\n"
    )
}

/// The description of seeded item `n` (an SQL expression): with `rare`, ten of the items
/// seeded carry the rare word.
fn seeded_description(n_column: &str, first: u32, count: u32, rare: bool) -> String {
    let plain = "'a row made by the benchmark to fill the table'";
    if !rare || count < 10 {
        return plain.to_owned();
    }
    format!(
        "CASE WHEN ({n_column} - {first}) % {every} = 0 AND {n_column} - {first} < 10 * {every} \
         THEN 'a rare {RARE_WORD} row' ELSE {plain} END",
        every = count / 10
    )
}

/// Items `first ..= first + count - 1`, one second apart going back from now.
/// (The first 1,000 have no rare word; the rest, up to the big table, have it ten times.)
fn seed_postgres(cluster: &PgCluster, database: &str, first: u32, count: u32) {
    if count == 0 {
        return;
    }
    cluster.psql_in(
        database,
        &format!(
            "INSERT INTO items (name, quantity, description, date_added) \
             SELECT 'seeded item ' || g, g % 1000, {description}, \
             now() - g * interval '1 second' FROM generate_series({first}, {last}) g; ANALYZE items",
            description = seeded_description("g", first, count, first > 1),
            last = first + count - 1,
        ),
    );
}

/// The same items in an SQLite file, dates in the text form sqlx writes.
async fn seed_sqlite(url: &str, first: u32, count: u32) {
    use sqlx::Connection;
    if count == 0 {
        return;
    }
    let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
    let sql = format!(
        "WITH RECURSIVE g(n) AS (SELECT {first} UNION ALL SELECT n + 1 FROM g WHERE n < {last}) \
         INSERT INTO items (name, quantity, description, date_added) \
         SELECT 'seeded item ' || n, n % 1000, {description}, \
         strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now', '-' || n || ' seconds') FROM g",
        description = seeded_description("n", first, count, first > 1),
        last = first + count - 1,
    );
    sqlx::query(&sql).execute(&mut conn).await.unwrap();
    sqlx::query("ANALYZE").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
}

fn http_get_body(url: &str, header: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "-H", header, url])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// Logins: what one costs (one client), and a storm of 32 clients on one fresh instance
/// (no nginx, whose limit would refuse most): logins a second, how many were told to
/// retry (503: every hashing slot busy), and the instance's peak memory (VmHWM). The limit
/// on password checks is lifted: 32 logins at once for one account would be refused as
/// guessing (`accounts::throttle`), and this measures the hashing.
fn login_storm(plan: &Plan, database_url: &str) -> String {
    let shop = Shop::start(
        database_url,
        &[("SHOP_ACCOUNTS__LOGIN_ATTEMPTS", "1000000000")],
    );
    let script = login_script(&shop.url("/login"));
    let one = wrk(
        plan,
        &Load::get(&shop.url("/login"))
            .script(&script)
            .connections(1),
    );
    let before = peak_rss_mib(shop.pid());
    let storm = wrk(
        plan,
        &Load::get(&shop.url("/login"))
            .script(&script)
            .connections(32),
    );
    let retried = storm.errors;
    let peak = peak_rss_mib(shop.pid());
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    format!(
        "\n### Logins (argon2id, 19 MiB, t=2, p=1; at most {cores} hashes at once per instance)\n\n\
         | measure | value |\n| --- | ---: |\n\
         | one client: logins/s · p50 (what a login costs) | {:.1}/s · {:.1} ms |\n\
         | 32 clients on one instance: logins/s · p50 · p99 | {:.1}/s · {:.1} ms · {:.1} ms |\n\
         | 32 clients: answers 503 (all slots busy for 2 s) | {retried} |\n\
         | instance's peak resident memory: before the storm · after | {before:.1} MiB · {peak:.1} MiB |\n",
        one.rate, one.p50_ms, storm.rate, storm.p50_ms, storm.p99_ms
    )
}

/// The process's peak resident memory so far (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// A wrk script that logs the benchmark's seller in: the login form's CSRF cookie and token,
/// the right password (every request a new session).
fn login_script(login_url: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "-i", login_url])
        .output()
        .unwrap();
    let page = String::from_utf8_lossy(&out.stdout).into_owned();
    let cookie = page
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .map(|c| c.split(';').next().unwrap().to_owned())
        .expect("a CSRF cookie");
    let token = common::hidden_field(&page, "csrf_token");
    let password = common::PASSWORD.replace(' ', "+");
    format!(
        r#"request = function()
  local body = "csrf_token={token}&username=bench&password={password}"
  return wrk.format("POST", "/login", {{["Content-Type"] = "application/x-www-form-urlencoded", ["Cookie"] = "{cookie}"}}, body)
end
"#
    )
}

/// The previous release's `shop` (packaging/previous-release): SHOP_PREVIOUS_BINARY
/// (tests/bench/run builds it), else unpacked from tests/run's older package
/// (SHOP_DEB_OLD); `None` when neither is there.
/// (With the directory it was unpacked in, removed when dropped.)
fn previous_release_binary() -> Option<(std::path::PathBuf, Option<tempfile::TempDir>)> {
    if let Some(path) = std::env::var_os("SHOP_PREVIOUS_BINARY") {
        return Some((path.into(), None));
    }
    let deb = std::env::var_os("SHOP_DEB_OLD")?;
    let dir = tempfile::tempdir().unwrap();
    let unpacked = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(dir.path())
        .status()
        .is_ok_and(|s| s.success());
    assert!(unpacked, "dpkg-deb -x {deb:?}");
    Some((dir.path().join("usr/bin/shop"), Some(dir)))
}

/// A wrk script that creates items through the API with an API token (the previous
/// release, which has no accounts, ignores the header).
fn api_create_script(token: &str) -> String {
    format!(
        r#"request = function()
  local body = '{{"name": "api item", "quantity": 1, "description": "created by the benchmark"}}'
  return wrk.format("POST", "/api/items", {{["Content-Type"] = "application/json", ["Authorization"] = "Bearer {token}"}}, body)
end
"#
    )
}

/// The start of a wrk script whose requests each need a key of their own: `counter`
/// counts a thread's requests, `prefix` is its thread's and its run's (wrk starts every
/// run's random numbers alike, so the time tells runs apart), and the random numbers are
/// seeded the same way.
const KEYED_RUN: &str = r#"local counter = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  prefix = string.format("bench%d-%d", tid or 0, os.time())
  math.randomseed(os.time() * 100 + (tid or 0))
end"#;

/// A wrk script that POSTs the add-an-item form as a signed-in seller (`cookie`: the CSRF
/// cookie and the session), with the form's token and a new idempotency key every time.
fn post_script(form_url: &str, cookie: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "-H", &format!("Cookie: {cookie}"), form_url])
        .output()
        .unwrap();
    let page = String::from_utf8_lossy(&out.stdout).into_owned();
    let token = common::hidden_field(&page, "csrf_token");
    format!(
        r#"{KEYED_RUN}
request = function()
  counter = counter + 1
  local body = "csrf_token={token}&idempotency_key=" .. prefix .. "k" .. counter ..
    "&name=benchmark+item&quantity=1&description=created+by+the+benchmark"
  return wrk.format("POST", "/", {{["Content-Type"] = "application/x-www-form-urlencoded", ["Cookie"] = "{cookie}"}}, body)
end
"#
    )
}

/// One wrk run's request: a GET of `url`, or what a Lua script sends; extra headers; a
/// number of clients other than the plan's.
struct Load {
    url: String,
    script: Option<String>,
    headers: Vec<String>,
    connections: Option<u32>,
}

impl Load {
    fn get(url: &str) -> Load {
        Load {
            url: url.to_owned(),
            script: None,
            headers: Vec::new(),
            connections: None,
        }
    }

    fn script(mut self, script: &str) -> Load {
        self.script = Some(script.to_owned());
        self
    }

    fn header(mut self, header: &str) -> Load {
        self.headers.push(header.to_owned());
        self
    }

    fn connections(mut self, connections: u32) -> Load {
        self.connections = Some(connections);
        self
    }
}

/// Two loads measured in turns (five rounds of 4 s each in full mode, one short round in
/// smoke mode), for a target that is a ratio between them: the machine's drift over a
/// minute (±10 % here) falls on both alike. Each side: the median round's rate and
/// latencies, and the errors of every round.
fn side_by_side(plan: &Plan, a: &Load, b: &Load) -> (Measured, Measured) {
    let (rounds, seconds) = if plan.full { (5, 4) } else { (1, plan.seconds) };
    let round = Plan { seconds, ..*plan };
    let (mut of_a, mut of_b) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        of_a.push(wrk(&round, a));
        of_b.push(wrk(&round, b));
    }
    (median_round(of_a), median_round(of_b))
}

fn median_round(mut rounds: Vec<Measured>) -> Measured {
    let errors = rounds.iter().map(|m| m.errors).sum();
    rounds.sort_by(|x, y| x.rate.total_cmp(&y.rate));
    let mut median = rounds.swap_remove(rounds.len() / 2);
    median.errors = errors;
    median
}

fn wrk(plan: &Plan, load: &Load) -> Measured {
    let dir = tempfile::tempdir().unwrap();
    let connections = load.connections.unwrap_or(plan.connections);
    let threads = connections.min(2);
    let mut command = Command::new("wrk");
    command
        .args([
            &format!("-t{threads}"),
            &format!("-c{connections}"),
            &format!("-d{}s", plan.seconds),
            "--latency",
            "--timeout",
            "10s",
        ])
        .arg(&load.url);
    for header in &load.headers {
        command.arg("-H").arg(header);
    }
    if let Some(script) = &load.script {
        let path = dir.path().join("script.lua");
        std::fs::write(&path, script).unwrap();
        command.arg("-s").arg(path);
    }
    let out = command.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "wrk {}: {text}{}",
        load.url,
        String::from_utf8_lossy(&out.stderr)
    );
    parse_wrk(&text)
}

/// The `ETag` a page is served with (and a check that a conditional GET of it is a 304).
fn etag_of(url: &str) -> String {
    let head = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-D", "-", url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&head.stdout).into_owned();
    let etag = text
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .unwrap_or_else(|| panic!("no ETag on {url}: {text}"))
        .trim()
        .to_owned();
    let again = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
        .arg(format!("If-None-Match: {etag}"))
        .arg(url)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&again.stdout),
        "304",
        "{url} with {etag}"
    );
    etag
}

fn parse_wrk(text: &str) -> Measured {
    let number_after = |label: &str| -> Option<&str> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .map(str::trim)
    };
    let rate = number_after("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let p50_ms = number_after("50%").map(duration_ms).unwrap_or(f64::NAN);
    let p99_ms = number_after("99%").map(duration_ms).unwrap_or(f64::NAN);
    let non_2xx: u64 = number_after("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let socket: u64 = number_after("Socket errors:")
        .map(|v| {
            v.split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Measured {
        rate,
        p50_ms,
        p99_ms,
        errors: non_2xx + socket,
    }
}

/// wrk prints "1.23ms", "456.00us" or "1.02s".
fn duration_ms(text: &str) -> f64 {
    let text = text.trim();
    let (number, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (text, f64::NAN)
    };
    number
        .parse::<f64>()
        .map(|n| n * factor)
        .unwrap_or(f64::NAN)
}

/// The INSERT shop runs for a create.
const PGBENCH_INSERT: &str = "INSERT INTO items (name, quantity, description, date_added, idempotency_key) \
     VALUES ('benchmark item', 1, 'created by pgbench', now(), md5(random()::text || clock_timestamp()::text)) \
     ON CONFLICT (idempotency_key) DO NOTHING \
     RETURNING id, name, quantity, description, date_added;\n";

/// PostgreSQL's own rate for what shop runs (a pgbench `script`), at the same
/// concurrency.
fn pgbench(plan: &Plan, cluster: &PgCluster, database: &str, script: &str) -> Measured {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("script.sql");
    std::fs::write(&path, script).unwrap();
    let script = path;
    let next_to_server = cluster.bin_dir().join("pgbench");
    let program = if next_to_server.is_file() {
        next_to_server
    } else {
        "pgbench".into()
    };
    let out = Command::new(program)
        .args([
            "-n",
            "-j",
            "2",
            "-c",
            &plan.connections.to_string(),
            "-T",
            &plan.seconds.to_string(),
            "-r",
            // Prepared once per connection, as shop's statements are (sqlx caches them):
            // the simple protocol plans the order's statement again every time, which
            // halves pgbench's rate.
            "-M",
            "prepared",
            "-f",
        ])
        .arg(&script)
        .arg(cluster.database_url(database))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pgbench: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rate = text
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(0.0);
    let latency = text
        .lines()
        .find_map(|l| l.strip_prefix("latency average = "))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN);
    Measured {
        rate,
        p50_ms: latency,
        p99_ms: f64::NAN,
        errors: 0,
    }
}

/// Resident memory of a process, in MiB: all of it, and its own (anonymous) part, without
/// the pages of the binary and libraries it shares with the other instances.
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("RssAnon:"))
}

/// From the first connection to a socket-activated instance that is not running, to the
/// first byte of its response (shop starts, connects to PostgreSQL, checks migrations).
fn cold_start_ms(database_url: &str) -> f64 {
    let port = common::free_port();
    let dir = tempfile::tempdir().unwrap();
    let shop = common::shop_command(dir.path());
    let mut activator = Command::new("systemd-socket-activate")
        .args([
            "-l",
            &format!("127.0.0.1:{port}"),
            "-E",
            &format!("SHOP_DATABASE__URL={database_url}"),
            "-E",
            "SHOP_LOG__LEVEL=warn",
        ])
        .arg(shop.get_program())
        .args(shop.get_args())
        .arg("serve")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stream = loop {
        if let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) {
            break stream;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    // Connected: the socket is listening and shop is not running yet.
    let started = Instant::now();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 1];
    let elapsed = match stream.read_exact(&mut first) {
        Ok(()) => started.elapsed().as_secs_f64() * 1000.0,
        Err(_) => f64::NAN,
    };
    // SAFETY: signals our own child (shop, exec'ed by systemd-socket-activate).
    unsafe { libc::kill(activator.id() as i32, libc::SIGTERM) };
    let _ = activator.wait();
    elapsed
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    sorted[sorted.len() / 2]
}

fn render(plan: &Plan, rows: &[Row], rss: &[(f64, f64)], cold: &[f64]) -> String {
    let mut out = String::new();
    let mode = if plan.full {
        "full"
    } else {
        "smoke (numbers not meaningful)"
    };
    writeln!(
        out,
        "Mode: {mode}; {} s a scenario, {} connections (unless said), wrk with 2 threads.\n",
        plan.seconds, plan.connections
    )
    .unwrap();
    writeln!(
        out,
        "### 1,000 items, through nginx, 3 instances, PostgreSQL\n"
    )
    .unwrap();
    render_rows(&mut out, rows);
    writeln!(
        out,
        "\n| other measure | value | target |\n| --- | ---: | --- |"
    )
    .unwrap();
    let worst_rss = rss.iter().map(|r| r.0).fold(0.0, f64::max);
    let rss_text: Vec<String> = rss
        .iter()
        .map(|(all, own)| format!("{all:.1} ({own:.1})"))
        .collect();
    writeln!(
        out,
        "| resident memory per instance after every scenario (3 PostgreSQL, 1 SQLite; in brackets its own, without the shared binary and libraries) | {} MiB | ≤ 20 MiB: {} |",
        rss_text.join(" / "),
        verdict(worst_rss <= 20.0)
    )
    .unwrap();
    let cold_median = median(cold);
    writeln!(out, "| cold start, socket activation to first byte (median of {}) | {cold_median:.1} ms | ≤ 100 ms: {} |", cold.len(), verdict(cold_median <= 100.0)).unwrap();
    out
}

fn render_rows(out: &mut String, rows: &[Row]) {
    writeln!(out, "| scenario | req/s | p50 ms | p99 ms | errors | ceiling | ceiling req/s | ratio | target |").unwrap();
    writeln!(
        out,
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- |"
    )
    .unwrap();
    for row in rows {
        let ratio = row.shop.rate / row.ceiling.rate;
        writeln!(
            out,
            "| {} | {:.0} | {:.2} | {:.2} | {} | {} | {:.0} | {:.0}% | {} |",
            row.name,
            row.shop.rate,
            row.shop.p50_ms,
            row.shop.p99_ms,
            row.shop.errors,
            row.ceiling_name,
            row.ceiling.rate,
            ratio * 100.0,
            row.target.verdict(&row.shop, &row.ceiling),
        )
        .unwrap();
    }
}

/// The big-table section: the pages against their 1,000-item figures, how each search
/// index was built, and the query plans.
fn render_big(plan: &Plan, rows: &[Row], tables: &[&BigTable]) -> String {
    let mut out = String::new();
    writeln!(
        out,
        "\n### {} items (\"within 2×\": at least 50 % of the 1,000-item rate)\n",
        plan.big
    )
    .unwrap();
    render_rows(&mut out, rows);
    writeln!(out).unwrap();
    for table in tables {
        writeln!(out, "- {}: {}", table.backend, table.index_build).unwrap();
    }
    for table in tables {
        for (name, text) in &table.plans {
            writeln!(out, "\n{}, {name}:\n\n```\n{text}\n```", table.backend).unwrap();
        }
    }
    out
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**missed**"
    }
}

fn machine_description() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().to_owned()))
        .unwrap_or_default();
    let version = |cmd: &str| {
        Command::new("sh")
            .args(["-c", cmd])
            .output()
            .map(|o| {
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
                text.lines().next().unwrap_or_default().trim().to_owned()
            })
            .unwrap_or_default()
    };
    format!(
        "# Benchmarks\n\nThe deployed shape on one machine: nginx (the project's site, 2 workers) → three shop\n\
         instances (release build) → PostgreSQL (a throwaway cluster, `fsync=off`), all sharing it\n\
         with the load generator. Produced by `tests/bench/run` on {date}.\n\n\
         - Machine: {cores} cores ({cpu}), {memory} memory, {kernel}\n- {nginx}; {pg}; {wrk}\n",
        date = version("date -u +'%Y-%m-%d %H:%M UTC'"),
        kernel = version("uname -sr"),
        nginx = version("nginx -v"),
        pg = version("psql --version"),
        wrk = version("wrk -v"),
    )
}
