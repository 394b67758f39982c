//! Backups with the real binary next to a serving instance, on both backends: a backup
//! taken under write load, the database destroyed, restored, and every acknowledged item
//! back with identical fields; and the restores refused (a truncated file, a newer
//! schema, items already there) that change nothing.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{client, json_of, said, shop_command, Backend, PgCluster, Shop, TestDb};
use serde_json::{json, Value};

/// `shop ARGS` against `db`, from `dir`.
fn shop(dir: &Path, db: &TestDb, args: &[&str]) -> Output {
    shop_command(dir)
        .env("SHOP_DATABASE__URL", &db.url)
        .env("SHOP_BACKUP__DIR", dir.join("backups"))
        .args(args)
        .output()
        .unwrap()
}

/// The backups in `dir`/backups, oldest first.
fn backups(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("backups"))
        .map(|entries| entries.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// Every item, through the API, by id.
async fn all_items(shop: &Shop) -> Vec<Value> {
    let mut items = Vec::new();
    for page in 1.. {
        let url = shop.url(&format!("/api/items?per_page=1000&page={page}"));
        let body = json_of(client().get(url)).await;
        items.extend(body["items"].as_array().unwrap().iter().cloned());
        if body["next_page"].is_null() {
            break;
        }
    }
    items.sort_by_key(|item| item["id"].as_i64());
    items
}

/// Items created through the API until `stop`, each with when its request was sent and
/// when it was acknowledged, and how many requests failed.
async fn write_load(
    url: String,
    token: String,
    stop: Arc<AtomicBool>,
) -> (Vec<(Instant, Instant, Value)>, Vec<String>) {
    let http = client();
    let (mut created, mut failures) = (Vec::new(), Vec::new());
    for n in 0..5_000 {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let item = json!({"name": format!("load {n}"), "quantity": n % 1000, "description": "written during the backup"});
        let sent = Instant::now();
        match http.post(&url).bearer_auth(&token).json(&item).send().await {
            Ok(r) if r.status() == 201 => {
                created.push((sent, Instant::now(), r.json().await.unwrap()))
            }
            Ok(r) => failures.push(format!("{}: {}", r.status(), r.text().await.unwrap())),
            Err(e) => failures.push(e.to_string()),
        }
    }
    (created, failures)
}

/// Lose the database: PostgreSQL's is dropped and made again, empty; SQLite's files go.
fn destroy(db: &TestDb) {
    match db.backend {
        Backend::Postgres => {
            let cluster = PgCluster::shared();
            cluster.psql_in(
                "postgres",
                &format!("DROP DATABASE \"{}\" WITH (FORCE)", db.name),
            );
            cluster.psql_in("postgres", &format!("CREATE DATABASE \"{}\"", db.name));
        }
        Backend::Sqlite => {
            let file = db.url.strip_prefix("sqlite:").unwrap();
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{file}{suffix}"));
            }
        }
    }
}

async fn a_backup_under_load_restores_every_acknowledged_item(backend: Backend) {
    let db = TestDb::new(backend);
    let dir = tempfile::tempdir().unwrap();
    let shop_process = Shop::start(&db.url, &[]);
    let http = client();
    for n in 0..40 {
        let item = json!({"name": format!("before {n}"), "quantity": n, "description": "ünïcode & <b>\"quotes\"</b>"});
        common::create_item(&shop_process, &item).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(write_load(
        shop_process.url("/api/items"),
        common::api_token(&shop_process).await,
        Arc::clone(&stop),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let backup_began = Instant::now();
    let out = shop(dir.path(), &db, &["backup"]);
    let backup_ended = Instant::now();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    let (created, failures) = load.await.unwrap();
    assert!(out.status.success(), "{}", said(&out));
    assert!(
        failures.is_empty(),
        "the backup failed no request: {failures:?}"
    );
    let before_backup: Vec<&Value> = created
        .iter()
        .filter(|(_, acknowledged, _)| *acknowledged < backup_began)
        .map(|(_, _, item)| item)
        .collect();
    assert!(
        !before_backup.is_empty(),
        "items were written under load before the backup"
    );
    let [file] = &backups(dir.path())[..] else {
        panic!("one backup: {:?}", backups(dir.path()))
    };
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("shop-")
            && name.ends_with(&format!("-schema{}.backup", common::migration_count())),
        "{name}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "only the shop group may read a backup");
    let everything_before = all_items(&shop_process).await;

    // The database is lost. (PostgreSQL's instance keeps running through it; SQLite's
    // holds the deleted file open, so it is stopped and started again.)
    let shop_process = match backend {
        Backend::Sqlite => {
            drop(shop_process);
            destroy(&db);
            None
        }
        Backend::Postgres => {
            destroy(&db);
            Some(shop_process)
        }
    };
    let out = shop(dir.path(), &db, &["restore", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", said(&out));
    let shop_process = match shop_process {
        Some(running) => running,
        None => Shop::start(&db.url, &[]),
    };
    assert!(
        common::wait_for_status(
            &http,
            &shop_process.url("/readyz"),
            200,
            Duration::from_secs(10)
        )
        .await,
        "the instance serves the restored database"
    );
    let restored = all_items(&shop_process).await;

    // Every item acknowledged before the backup began is back, field for field; nothing
    // is there that was written after it ended; and the restore is all of the backup.
    for item in before_backup
        .iter()
        .copied()
        .chain(&everything_before[..40])
    {
        assert!(restored.contains(item), "{item} is back as it was");
    }
    // (An item can be in the backup and acknowledged only after it ended: it was
    // committed before the backup's snapshot, and its answer was still on its way.)
    let sent_by_end: Vec<&Value> = everything_before[..40]
        .iter()
        .chain(
            created
                .iter()
                .filter(|(sent, _, _)| *sent < backup_ended)
                .map(|(_, _, item)| item),
        )
        .collect();
    for item in &restored {
        assert!(
            sent_by_end.contains(&item),
            "{item} was sent before the backup ended"
        );
    }
    let text = std::fs::read_to_string(file).unwrap();
    let item_lines = text.lines().filter(|l| l.starts_with("{\"id\"")).count();
    assert_eq!(
        restored.len(),
        item_lines,
        "the restore is the whole backup"
    );
    assert!(
        text.lines().any(|l| l.starts_with("{\"user\""))
            && text.lines().any(|l| l.starts_with("{\"token\"")),
        "the backup carries the sellers and their tokens' hashes"
    );

    // New items continue after the restored ids.
    let response = http
        .post(shop_process.url("/api/items"))
        .bearer_auth(common::api_token(&shop_process).await)
        .json(&json!({"name": "after", "quantity": 1, "description": "the restore"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    assert!(id > restored.last().unwrap()["id"].as_i64().unwrap());
}

async fn a_restore_refuses_what_it_cannot_trust_and_changes_nothing(backend: Backend) {
    let db = TestDb::new(backend);
    let dir = tempfile::tempdir().unwrap();
    let shop_process = Shop::start(&db.url, &[]);
    for n in 0..3 {
        let item = json!({"name": format!("kept {n}"), "quantity": n, "description": "x"});
        common::create_item(&shop_process, &item).await;
    }
    let out = shop(dir.path(), &db, &["backup"]);
    assert!(out.status.success(), "{}", said(&out));
    let backup = backups(dir.path()).pop().unwrap();
    let text = std::fs::read_to_string(&backup).unwrap();
    let items = all_items(&shop_process).await;

    let truncated = dir.path().join("truncated.backup");
    std::fs::write(&truncated, &text[..text.len() - 25]).unwrap();
    let newer = dir.path().join("newer.backup");
    let schema = common::migration_count();
    let header = format!("\"schema\":{schema}");
    assert!(text.contains(&header), "{header} in {text:.200}");
    std::fs::write(&newer, text.replacen(&header, "\"schema\":99", 1)).unwrap();
    let newer_refused = format!("a backup of schema 99, newer than this shop knows ({schema})");
    let not_a_backup = dir.path().join("notes.txt");
    std::fs::write(&not_a_backup, "hello\n").unwrap();
    let cases = [
        (&truncated, true, "truncated"),
        (&newer, true, newer_refused.as_str()),
        (&not_a_backup, true, "is not a shop backup"),
        (
            &backup,
            false,
            "the database holds 3 items: `shop restore --force",
        ),
    ];
    for (file, force, expected) in cases {
        let mut args = vec!["restore", file.to_str().unwrap()];
        if force {
            args.insert(1, "--force");
        }
        let out = shop(dir.path(), &db, &args);
        assert!(!out.status.success(), "{args:?} is refused");
        assert!(said(&out).contains(expected), "{args:?}: {}", said(&out));
        assert_eq!(
            all_items(&shop_process).await,
            items,
            "{args:?} changed nothing"
        );
    }

    // With --force, the backup replaces what is there.
    client()
        .delete(shop_process.url("/api/items/2"))
        .bearer_auth(common::api_token(&shop_process).await)
        .send()
        .await
        .unwrap();
    let out = shop(
        dir.path(),
        &db,
        &["restore", "--force", backup.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(all_items(&shop_process).await, items);
}

async fn backups_are_pruned_to_the_newest_kept(backend: Backend) {
    let db = TestDb::new(backend);
    let dir = tempfile::tempdir().unwrap();
    let out = shop(dir.path(), &db, &["backup"]);
    assert!(
        said(&out).contains("no shop schema yet"),
        "a database nobody migrated: {}",
        said(&out)
    );
    assert!(shop(dir.path(), &db, &["migrate"]).status.success());
    let mut made = Vec::new();
    for _ in 0..4 {
        let out = shop_command(dir.path())
            .env("SHOP_DATABASE__URL", &db.url)
            .env("SHOP_BACKUP__DIR", dir.path().join("backups"))
            .env("SHOP_BACKUP__KEEP", "2")
            .arg("backup")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", said(&out));
        made.push(backups(dir.path()).last().unwrap().clone());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(backups(dir.path()), made[2..], "the two newest are kept");
}

/// A backup as the release before accounts wrote it (schema 5: no users, no token, no
/// item's seller), made from one of this release by taking those out.
fn as_before_accounts(backup: &str) -> String {
    let mut lines = Vec::new();
    for line in backup.lines() {
        let mut value: Value = serde_json::from_str(line).unwrap();
        if value.get("user").is_some() || value.get("token").is_some() {
            continue;
        }
        let object = value.as_object_mut().unwrap();
        object.remove("owner_id");
        if let Some(schema) = object.get_mut("schema") {
            *schema = json!(5);
        }
        if let Some(end) = object.get_mut("end") {
            *end = json!({"items": end["items"]});
        }
        lines.push(value.to_string());
    }
    lines.join("\n") + "\n"
}

/// A backup made before accounts restores: its items come back without a seller (only an
/// admin may change them), and the users the database has are kept.
async fn a_backup_from_before_accounts_restores(backend: Backend) {
    let db = TestDb::new(backend);
    let dir = tempfile::tempdir().unwrap();
    let shop_process = Shop::start(&db.url, &[]);
    for n in 0..3 {
        let item = json!({"name": format!("old {n}"), "quantity": n, "description": "from before accounts"});
        common::create_item(&shop_process, &item).await;
    }
    let out = shop(dir.path(), &db, &["backup"]);
    assert!(out.status.success(), "{}", said(&out));
    let old = dir.path().join("before-accounts.backup");
    std::fs::write(
        &old,
        as_before_accounts(&std::fs::read_to_string(backups(dir.path()).pop().unwrap()).unwrap()),
    )
    .unwrap();
    let seller = common::Seller::sign_up(&shop_process.url, "keeper").await;

    let out = shop(
        dir.path(),
        &db,
        &["restore", "--force", old.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", said(&out));
    assert!(
        said(&out).contains("the users there were kept"),
        "{}",
        said(&out)
    );
    let items = all_items(&shop_process).await;
    assert_eq!(items.len(), 3);
    assert!(
        items.iter().all(|item| item["seller"].is_null()),
        "{items:?}"
    );
    assert_eq!(
        seller.get(&shop_process.url("/account")).await.status(),
        200,
        "the users and their sessions are kept"
    );
    let id = items[0]["id"].as_i64().unwrap();
    let refused = client()
        .delete(shop_process.url(&format!("/api/items/{id}")))
        .bearer_auth(common::api_token(&shop_process).await)
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused.status(),
        403,
        "an item without a seller is an admin's to change"
    );
}

both_backends!(
    a_backup_from_before_accounts_restores,
    a_backup_under_load_restores_every_acknowledged_item,
    a_restore_refuses_what_it_cannot_trust_and_changes_nothing,
    backups_are_pruned_to_the_newest_kept,
);

/// Another process that opens the SQLite database and closes it again (`shop backup`,
/// `shop migrate`, an instance stopping) must never hide what a running instance writes
/// afterwards. (It did: the migration lock was a `flock` on the database file itself, and
/// closing it dropped SQLite's own locks, so the next process to close took the database
/// for unused and deleted the write-ahead log the instance was still writing to.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_lived_process_never_hides_an_instances_writes() {
    let db = TestDb::new(Backend::Sqlite);
    let dir = tempfile::tempdir().unwrap();
    let shop_process = Shop::start(&db.url, &[]);
    for round in 1..=3 {
        let item = json!({"name": format!("round {round}"), "quantity": round, "description": "x"});
        common::create_item(&shop_process, &item).await;
        let out = shop(dir.path(), &db, &["backup"]);
        assert!(out.status.success(), "{}", said(&out));
        assert!(
            said(&out).contains(&format!(": {round} items")),
            "backup {round} sees every item written so far: {}",
            said(&out)
        );
    }
}
