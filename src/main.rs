//! The `shop` command line: parse, load the configuration, run the command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use shop::config::Settings;
use shop::systemd::Handover;
use shop::{app, backup, telemetry};

/// A small items shop: add items for sale and list them.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file [default: /etc/shop/shop.toml when it exists]
    #[arg(long, short, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the shop over HTTP (the default)
    Serve,
    /// Apply pending database migrations and exit
    Migrate,
    /// Check the configuration, the database and its migrations, and say what to fix
    Check,
    /// Write a backup of every item (a consistent snapshot; the instances keep serving)
    Backup {
        /// A file to write, or a directory to name one in [default: backup.dir]
        #[arg(long, short, value_name = "PATH")]
        output: Option<PathBuf>,
        /// Only when this shop has migrations the database lacks (before an upgrade)
        #[arg(long)]
        if_migrations_pending: bool,
    },
    /// Replace the database's items with those of a backup
    Restore {
        /// The backup file
        path: PathBuf,
        /// Replace the items the database holds
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (settings, file) = match Settings::load(cli.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("shop: {e}");
            return ExitCode::from(78); // EX_CONFIG: systemd will not hammer a bad config
        }
    };
    // Read what systemd passed before any thread exists: it clears those variables.
    let handover = match Handover::take() {
        Ok(handover) => handover,
        Err(e) => {
            eprintln!("shop: {e}");
            return ExitCode::from(78);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("shop: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let command = cli.command.unwrap_or(Command::Serve);
    let logging = matches!(command, Command::Serve);
    let outcome = runtime.block_on(async {
        match command {
            Command::Serve => {
                telemetry::init(&settings.log.level);
                app::serve(settings, handover).await.map(|()| true)
            }
            Command::Migrate => app::migrate(settings).await.map(|()| true),
            Command::Check => Ok(app::check(settings, file).await),
            Command::Backup {
                output,
                if_migrations_pending,
            } => backup::backup(&settings, output.as_deref(), if_migrations_pending)
                .await
                .map(|()| true),
            Command::Restore { path, force } => backup::restore(&settings, &path, force)
                .await
                .map(|()| true),
        }
    });
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        // Once: in the log when `serve` has one (under systemd stderr is the journal too).
        Err(e) if logging => {
            tracing::error!("shop stopped: {e:#}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("shop: {e:#}");
            ExitCode::FAILURE
        }
    }
}
