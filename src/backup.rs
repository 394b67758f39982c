//! Backups: `shop backup` writes every item, read in one consistent snapshot while the
//! instances keep serving, to a file named with the time and the schema version (written
//! under a temporary name, synced, then renamed into place), and keeps the newest
//! `backup.keep` in `backup.dir`; `shop restore` reads and checks a whole file before it
//! changes anything, then replaces the items in one transaction.
//!
//! The file is text, one JSON value per line: a header, one line per item, an end line
//! with the count (a truncated copy has none). It is the same for both databases, so a
//! backup of SQLite restores into PostgreSQL and back.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::db::{Accounts, BackupOrder, BackupRow, BackupToken, BackupUser, Record, Store};

/// What the first line of a backup says.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    /// The schema version (newest applied migration) of the database the rows came from.
    schema: i64,
    backend: String,
    created: DateTime<Utc>,
    shop: String,
}

/// The last line: how many items came before it.
#[derive(Debug, Serialize, Deserialize)]
struct End {
    end: EndCount,
}

#[derive(Debug, Serialize, Deserialize)]
struct EndCount {
    items: u64,
    /// Absent in backups made before accounts (schema 6).
    #[serde(default)]
    users: u64,
    #[serde(default)]
    tokens: u64,
    /// Absent in backups made before buying (schema 9).
    #[serde(default)]
    orders: u64,
}

/// A line that is not an item: a user or an API token (written before the items).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum AccountLine {
    User(BackupUser),
    Token(BackupToken),
    Order(BackupOrder),
}

/// The first schema with accounts.
const ACCOUNTS_SCHEMA: i64 = 6;
/// The first schema with orders.
const ORDERS_SCHEMA: i64 = 9;

const FORMAT: &str = "shop-backup";
const VERSION: u32 = 1;
/// Backup files in `backup.dir` are `shop-<UTC time>-schema<N>.backup`: by name is by age.
const PREFIX: &str = "shop-";
const SUFFIX: &str = ".backup";

/// `shop backup`: to `output` (a file, or a directory to name one in), else to
/// `backup.dir` (then older backups beyond `backup.keep` are removed). With
/// `only_if_migrations_pending`, only when this binary has migrations the database lacks
/// (the package runs it so before an upgrade's instances migrate).
pub async fn backup(
    settings: &Settings,
    output: Option<&Path>,
    only_if_migrations_pending: bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let store = crate::app::reach_store(settings).await?;
    let state = store.migration_state().await?;
    if only_if_migrations_pending && state.is_current() {
        println!("no migration pending: no backup needed");
        return Ok(());
    }
    if state.applied.is_empty() {
        if only_if_migrations_pending {
            println!("the database has no shop schema yet: nothing to back up");
            return Ok(());
        }
        bail!(
            "the database at {} has no shop schema yet (no migration applied): nothing to back up",
            settings.database.url
        );
    }
    let created = Utc::now();
    let name = format!(
        "{PREFIX}{}-schema{}{SUFFIX}",
        created.format("%Y%m%dT%H%M%S%.3fZ"),
        state.schema()
    );
    let (path, prune_dir) = match output {
        Some(path) if path.is_dir() => (path.join(&name), None),
        Some(path) => (path.to_path_buf(), None),
        None => (settings.backup.dir.join(&name), Some(&settings.backup.dir)),
    };
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        schema: state.schema(),
        backend: store.backend().name().into(),
        created,
        shop: env!("CARGO_PKG_VERSION").into(),
    };
    if let Some(dir) = prune_dir {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .with_context(|| format!("cannot make {} (backup.dir)", dir.display()))?;
    }
    let file = Staged::create(&path)?;
    let mut out = BufWriter::new(&file.file);
    serde_json::to_writer(&mut out, &header)?;
    out.write_all(b"\n")?;
    let (mut users, mut tokens, mut orders) = (0, 0, 0);
    let rows = store
        .export(
            state.schema() >= ACCOUNTS_SCHEMA,
            state.schema() >= ORDERS_SCHEMA,
            |record| -> anyhow::Result<()> {
                match record {
                    Record::User(user) => {
                        users += 1;
                        serde_json::to_writer(&mut out, &AccountLine::User(user))?
                    }
                    Record::Token(token) => {
                        tokens += 1;
                        serde_json::to_writer(&mut out, &AccountLine::Token(token))?
                    }
                    Record::Order(order) => {
                        orders += 1;
                        serde_json::to_writer(&mut out, &AccountLine::Order(order))?
                    }
                    Record::Item(row) => serde_json::to_writer(&mut out, &row)?,
                }
                out.write_all(b"\n")?;
                Ok(())
            },
        )
        .await?;
    serde_json::to_writer(
        &mut out,
        &End {
            end: EndCount {
                items: rows,
                users,
                tokens,
                orders,
            },
        },
    )?;
    out.write_all(b"\n")?;
    out.flush()?;
    drop(out);
    let size = file.commit()?;
    store.close().await;
    println!(
        "wrote {}: {} items, {users} users, {tokens} API tokens, {orders} orders, schema {}, {} bytes, in {:.1} s",
        path.display(),
        rows,
        header.schema,
        size,
        started.elapsed().as_secs_f64()
    );
    if let Some(dir) = prune_dir {
        for old in prune(dir, settings.backup.keep)? {
            println!(
                "removed {} (keeping the newest {})",
                old.display(),
                settings.backup.keep
            );
        }
    }
    Ok(())
}

/// `shop restore PATH`: check the whole file, then replace the database's items with it.
/// Refuses (changing nothing) a file that is not a complete backup, one from a newer
/// schema than this binary knows, and, without `force`, a database that holds items.
pub async fn restore(settings: &Settings, path: &Path, force: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let (header, rows, accounts) = read_backup(path)?;
    // Lazy: nothing is connected (nor an SQLite file created) before the checks pass.
    let store = Store::connect(&settings.database.url, settings.database.pool_size());
    let known = store.known_schema();
    if header.schema > known {
        bail!(
            "{} is a backup of schema {}, newer than this shop knows ({known}): restore it with the shop version that made it ({}) or a later one",
            path.display(),
            header.schema,
            header.shop
        );
    }
    store
        .reach(false)
        .await
        .with_context(|| format!("cannot connect to {}", settings.database.url))?;
    let state = store.migration_state().await?;
    let existing = if state.applied.is_empty() {
        0
    } else {
        store.count_items().await?
    };
    if existing > 0 && !force {
        bail!(
            "the database holds {existing} items: `shop restore --force {}` replaces them with the backup's {}",
            path.display(),
            rows.len()
        );
    }
    store.migrate().await.context("applying migrations")?;
    store.replace_all(&rows, accounts.as_ref()).await?;
    store.close().await;
    let users = accounts.as_ref().map_or_else(
        || "the users there were kept (a backup from before accounts)".to_owned(),
        |a| {
            format!(
                "{} users, {} API tokens and {} orders",
                a.users.len(),
                a.tokens.len(),
                a.orders.len()
            )
        },
    );
    println!(
        "restored {} items and {users} from {} (schema {}, made {} by shop {}), replacing {existing}, in {:.1} s",
        rows.len(),
        path.display(),
        header.schema,
        header.created.format("%Y-%m-%d %H:%M:%S UTC"),
        header.shop,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// What a backup holds: its header, its items, and its accounts (`None`: made before them).
type Backup = (Header, Vec<BackupRow>, Option<Accounts>);

/// Read and check a whole backup: its header, every record, and the end line's counts.
fn read_backup(path: &Path) -> anyhow::Result<Backup> {
    let shown = path.display();
    let file = File::open(path).with_context(|| format!("cannot open {shown}"))?;
    let mut lines = BufReader::new(file).lines();
    let first = lines.next().transpose()?.unwrap_or_default();
    let header: Header = serde_json::from_str(&first)
        .ok()
        .filter(|h: &Header| h.format == FORMAT)
        .with_context(|| {
            format!("{shown} is not a shop backup (its first line is no shop-backup header)")
        })?;
    if header.version != VERSION {
        bail!(
            "{shown} is a backup of format {}, which this shop does not read",
            header.version
        );
    }
    let mut rows = Vec::new();
    let mut accounts = Accounts::default();
    for (number, line) in lines.enumerate() {
        let line = line.with_context(|| format!("reading {shown}"))?;
        if let Ok(end) = serde_json::from_str::<End>(&line) {
            let counted = (end.end.items, end.end.users, end.end.tokens, end.end.orders);
            let found = (
                rows.len() as u64,
                accounts.users.len() as u64,
                accounts.tokens.len() as u64,
                accounts.orders.len() as u64,
            );
            if counted != found {
                bail!(
                    "{shown} is damaged: its end line counts {counted:?} items, users, tokens and orders, but {found:?} come before it"
                );
            }
            let accounts = (header.schema >= ACCOUNTS_SCHEMA).then_some(accounts);
            return Ok((header, rows, accounts));
        }
        if line.starts_with("{\"user\"")
            || line.starts_with("{\"token\"")
            || line.starts_with("{\"order\"")
        {
            match serde_json::from_str::<AccountLine>(&line) {
                Ok(AccountLine::User(user)) => accounts.users.push(user),
                Ok(AccountLine::Token(token)) => accounts.tokens.push(token),
                Ok(AccountLine::Order(order)) => accounts.orders.push(order),
                Err(_) => bail!(
                    "{shown} is damaged: line {} is not a user, token or order",
                    number + 2
                ),
            }
            continue;
        }
        let row: BackupRow = serde_json::from_str(&line).with_context(|| {
            format!(
                "{shown} is damaged or truncated: line {} is not an item",
                number + 2
            )
        })?;
        rows.push(row);
    }
    bail!(
        "{shown} is incomplete: it stops after {} items without its end line (a truncated copy?)",
        rows.len()
    )
}

/// A file being written under a temporary name next to its final one (mode 0640, owned
/// like its directory when root writes it); `commit` syncs it and renames it into place,
/// dropping it uncommitted removes it.
struct Staged {
    file: File,
    temporary: PathBuf,
    path: PathBuf,
    committed: bool,
}

impl Staged {
    fn create(path: &Path) -> anyhow::Result<Staged> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path.file_name().context("a backup needs a file name")?;
        let temporary = dir.join(format!(".{}.partial", name.to_string_lossy()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(&temporary)
            .with_context(|| format!("cannot write in {}", dir.display()))?;
        let staged = Staged {
            file,
            temporary,
            path: path.to_path_buf(),
            committed: false,
        };
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let owner = fs::metadata(dir)?;
            std::os::unix::fs::fchown(&staged.file, Some(owner.uid()), Some(owner.gid()))?;
        }
        Ok(staged)
    }

    /// Sync the data, rename it into place, sync the directory; the file's size.
    fn commit(mut self) -> anyhow::Result<u64> {
        self.file.sync_all()?;
        fs::rename(&self.temporary, &self.path)
            .with_context(|| format!("cannot rename into {}", self.path.display()))?;
        self.committed = true;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        Ok(self.file.metadata()?.len())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.temporary);
        }
    }
}

/// Remove all but the newest `keep` backups in `dir`; the removed ones.
fn prune(dir: &Path, keep: usize) -> anyhow::Result<Vec<PathBuf>> {
    let mut backups: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with(PREFIX) && name.ends_with(SUFFIX)
        })
        .collect();
    backups.sort();
    let excess = backups.len().saturating_sub(keep);
    let removed: Vec<PathBuf> = backups.drain(..excess).collect();
    for path in &removed {
        fs::remove_file(path).with_context(|| format!("cannot remove {}", path.display()))?;
    }
    Ok(removed)
}
