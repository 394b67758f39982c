//! The command line: configuration layering and validation, `check`, `migrate`, `--help`
//! and `--version`, and secrets that never show.

use crate::common;

use std::process::Output;

use common::{shop_command, shop_command_without_config, Backend, PgCluster, Shop, TestDb, SECRET};

fn run(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    shop_command(dir)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_bad_setting_fails_with_the_name_of_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("SHOP_DATABASE__URL", "mysql://db/shop")],
            "database.url: unsupported scheme \"mysql\"",
        ),
        (&[("SHOP_SERVER__LISTEN", "everywhere")], "server.listen"),
        (
            &[("SHOP_LOG__LEVEL", "inf0")],
            "log.level: \"inf0\" is not a level",
        ),
        (
            &[("SHOP_INSTANCE", "")],
            "instance: must be a short printable name",
        ),
        (
            &[("SHOP_DATABASE__URL", "postgres://u:hunter2@db:port/shop")],
            "database.url: postgres://u:****@db:port/shop is not a usable URL",
        ),
        (
            &[("SHOP_DATABASE__MAX_CONNECTIONS", "many")],
            "database.max_connections",
        ),
        (
            &[("SHOP_SECURITY__SECRET", "short")],
            "security.secret: must be at least 32 characters",
        ),
        (
            &[("SHOP_DATABASE__URLL", "sqlite:x.db")],
            "unknown field `urll`",
        ),
        (
            &[("SHOP_SERVER__REQUEST_TIMEOUT_SECS", "0")],
            "server.request_timeout_secs",
        ),
    ];
    for (env, expected) in cases {
        let out = run(dir.path(), &["check"], env);
        assert_eq!(out.status.code(), Some(78), "{env:?}: {}", text(&out));
        assert!(
            text(&out).contains(expected),
            "{env:?} should mention {expected}: {}",
            text(&out)
        );
    }

    std::fs::write(
        dir.path().join("typo.toml"),
        "[databse]\nurl = \"sqlite:x.db\"\n",
    )
    .unwrap();
    let out = shop_command_without_config(dir.path())
        .args(["--config", "typo.toml", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(text(&out).contains("databse"), "{}", text(&out));

    let out = shop_command_without_config(dir.path())
        .args(["--config", "missing.toml", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(text(&out).contains("missing.toml does not exist"));
}

#[test]
fn the_secret_can_live_in_its_own_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), format!("{SECRET}\n")).unwrap();
    let file = dir.path().join("secret").display().to_string();
    let out = run(
        dir.path(),
        &["check"],
        &[("SHOP_SECURITY__SECRET_FILE", &file)],
    );
    assert!(
        text(&out).contains("security.secret: set"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains(SECRET));
    let out = run(
        dir.path(),
        &["check"],
        &[("SHOP_SECURITY__SECRET_FILE", "/nonexistent/secret")],
    );
    assert_eq!(out.status.code(), Some(78));
    assert!(
        text(&out).contains("security.secret_file: cannot read /nonexistent/secret"),
        "{}",
        text(&out)
    );
}

#[test]
fn unrelated_shop_variables_are_ignored_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        dir.path(),
        &["check"],
        &[
            ("SHOP_DATABASE_URL", "postgres://typo"),
            ("SHOP_BUILD_ID", "42"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("ignoring the environment variable SHOP_DATABASE_URL: not a setting"),
        "{said}"
    );
    assert!(
        said.contains("SHOP_BUILD_ID") && said.contains("SHOP_DATABASE__URL"),
        "{said}"
    );
    assert!(
        text(&out).contains("database:        sqlite:shop.db"),
        "the typo changed nothing"
    );
}

#[test]
fn environment_overrides_the_file_which_overrides_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("shop.toml"),
        "instance = \"from-file\"\n[server]\nlisten = \"127.0.0.1:9999\"\n[database]\nurl = \"sqlite:file.db\"\n",
    )
    .unwrap();
    let out = run(dir.path(), &["check"], &[("SHOP_INSTANCE", "from-env")]);
    let out = text(&out);
    assert!(out.contains("instance:        from-env"), "{out}");
    assert!(out.contains("listen:          127.0.0.1:9999"), "{out}");
    assert!(out.contains("database:        sqlite:file.db"), "{out}");
    assert!(out.contains("config file:     "), "{out}");
}

#[test]
fn check_says_what_works_and_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("fresh.db").display());
    let out = run(
        dir.path(),
        &["check"],
        &[
            ("SHOP_DATABASE__URL", &db),
            ("SHOP_SECURITY__SECRET", SECRET),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let report = text(&out);
    assert!(
        report.contains("reachable:     yes — SQLite 3."),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "{} pending: 1 create items, 2 idempotency key, 3 updated at, 4 search",
            common::migration_count()
        )),
        "{report}"
    );
    assert!(
        report.contains("`shop serve` applies them at start"),
        "{report}"
    );
    assert!(
        report.contains("security.secret: set") && report.contains("result:          OK"),
        "{report}"
    );

    let migrations = common::migration_count();
    let out = run(dir.path(), &["migrate"], &[("SHOP_DATABASE__URL", &db)]);
    assert!(
        out.status.success() && text(&out).contains(&format!("applied {migrations} migration(s)")),
        "{}",
        text(&out)
    );
    let out = run(dir.path(), &["migrate"], &[("SHOP_DATABASE__URL", &db)]);
    assert!(
        text(&out).contains("applied 0 migration(s)"),
        "migrate is idempotent: {}",
        text(&out)
    );
    let out = run(dir.path(), &["check"], &[("SHOP_DATABASE__URL", &db)]);
    let report = text(&out);
    assert!(
        report.contains(&format!("{migrations} applied, up to date"))
            && report.contains("security.secret: NOT SET"),
        "{report}"
    );

    // A newer shop migrated this database, then was downgraded: migrations only add, so
    // this one says so and is content (and serves: tests/resilience.rs).
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
        sqlx::query("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (99, 'from the future', 1, x'00', 0)")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    });
    let out = run(dir.path(), &["check"], &[("SHOP_DATABASE__URL", &db)]);
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    assert!(
        report.contains("schema 99, newer than this shop knows ([99] from a newer shop)"),
        "{report}"
    );
    let shop = common::Shop::start(&db, &[]);
    let ready = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(shop.url("/readyz"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&ready.stdout),
        "200",
        "an older shop serves a newer schema"
    );

    let pending = format!("sqlite:{}", dir.path().join("pending.db").display());
    let out = run(
        dir.path(),
        &["check"],
        &[
            ("SHOP_DATABASE__URL", &pending),
            ("SHOP_DATABASE__MIGRATE_ON_START", "false"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("fix:           run `shop migrate`"),
        "{}",
        text(&out)
    );

    let nowhere = format!("postgres://shop@127.0.0.1:{}/shop", common::free_port());
    let out = run(
        dir.path(),
        &["check"],
        &[
            ("SHOP_DATABASE__URL", &nowhere),
            ("SHOP_DATABASE__ACQUIRE_TIMEOUT_SECS", "1"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let report = text(&out);
    assert!(
        report.contains("reachable:     NO, at 20")
            && report.contains("start the database or correct database.url"),
        "{report}"
    );
    assert!(report.contains("PROBLEMS FOUND"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_and_secrets_are_never_printed() {
    let db = TestDb::new(Backend::Postgres);
    // The test cluster trusts local connections, so any password is accepted.
    let with_password = db.url.replacen("postgres@", "postgres:hunter2-pw@", 1);
    let secret = "a-very-secret-value-that-must-not-leak-0123";
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        dir.path(),
        &["check"],
        &[
            ("SHOP_DATABASE__URL", &with_password),
            ("SHOP_SECURITY__SECRET", secret),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let shop = Shop::start(
        &with_password,
        &[
            ("SHOP_SECURITY__SECRET", secret),
            ("SHOP_LOG__LEVEL", "debug"),
        ],
    );
    let page = common::get_text(&shop.url("/")).await.1;
    for printed in [text(&out), shop.logs(), page] {
        assert!(
            !printed.contains("hunter2") && !printed.contains(secret),
            "leaked in:\n{printed}"
        );
    }
    assert!(text(&out).contains("postgres:****@"));
    assert!(PgCluster::shared()
        .database_url("x")
        .starts_with("postgres://"));
}

/// An index build that was interrupted (`CREATE INDEX CONCURRENTLY` leaves the index
/// invalid and its migration unrecorded) is dropped and built again by the next migrate,
/// and search answers through it.
#[test]
fn an_interrupted_index_build_is_redone() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Postgres);
    let env = [("SHOP_DATABASE__URL", db.url.as_str())];
    assert!(run(dir.path(), &["migrate"], &env).status.success());
    // The migration that builds the index (0005_search_index.sql).
    let index_migration =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .find(|name| name.ends_with("_search_index.sql"))
            .and_then(|name| name[..4].parse::<u32>().ok())
            .expect("the search index's migration");
    db.sql(&format!(
        "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'items_search'::regclass; \
         DELETE FROM _sqlx_migrations WHERE version = {index_migration}"
    ));
    let valid = "SELECT indisvalid FROM pg_index WHERE indexrelid = 'items_search'::regclass";
    assert_eq!(db.sql(valid).trim(), "f");

    let out = run(dir.path(), &["migrate"], &env);
    assert!(
        out.status.success() && text(&out).contains("applied 1 migration(s)"),
        "{}",
        text(&out)
    );
    // (Had the invalid index stayed, CREATE INDEX would have failed: it exists.)
    assert_eq!(db.sql(valid).trim(), "t");
    let plan = db.sql(
        "SET enable_seqscan = off; EXPLAIN SELECT id FROM items WHERE (name || chr(31) || description) ILIKE '%lamp%'",
    );
    assert!(plan.contains("items_search"), "{plan}");
}

#[test]
fn help_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let out = text(&run(dir.path(), &["--help"], &[]));
    for command in ["serve", "migrate", "check", "--config"] {
        assert!(out.contains(command), "{out}");
    }
    let out = text(&run(dir.path(), &["--version"], &[]));
    assert_eq!(out.trim(), format!("shop {}", env!("CARGO_PKG_VERSION")));
}

/// A URL that lists several hosts, as libpq's do: `shop check` finds the one that answers
/// as a primary (here the second: nothing listens on the first) and names it.
#[test]
fn check_names_the_primary_among_several_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let url = PgCluster::shared().database_url("postgres");
    let (scheme_user, rest) = url.split_once('@').unwrap();
    let (server, database) = rest.split_once('/').unwrap();
    let several =
        format!("{scheme_user}@127.0.0.1:1,{server}/{database}?target_session_attrs=read-write");
    let out = run(dir.path(), &["check"], &[("SHOP_DATABASE__URL", &several)]);
    assert!(
        text(&out).contains(&format!("connected to:  {server}, the primary")),
        "{}",
        text(&out)
    );
}
