//! The `shop` command line: parse, load the configuration, run the command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use shop::config::Settings;
use shop::systemd::Handover;
use shop::{app, telemetry};

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
