//! The `shop` command line: parse, load the configuration, run the command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use shop::accounts::TokenLifetime;
use shop::config::Settings;
use shop::ids::TokenId;
use shop::systemd::Handover;
use shop::{admin, app, backup, telemetry};

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
    /// Manage users: add (the first admin too), list, disable, set a password
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API tokens: create (printed once), list, revoke
    #[command(subcommand)]
    Token(TokenCommand),
    /// Replace the database's items with those of a backup
    Restore {
        /// The backup file
        path: PathBuf,
        /// Replace the items the database holds
        #[arg(long)]
        force: bool,
    },
    /// Judge a password's strength for a serving instance, in a process of its own (read
    /// from standard input: the username's line, then the password)
    #[command(name = "password-strength", hide = true)]
    PasswordStrength,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user; the password is read from standard input (or asked on a terminal)
    Add {
        name: String,
        /// May change any item and disable users
        #[arg(long)]
        admin: bool,
    },
    /// List the users
    List,
    /// Disable a user: their sessions and tokens stop working at once
    Disable { name: String },
    /// Enable a disabled user again
    Enable { name: String },
    /// Set a user's password (from standard input, or asked); their sessions end and
    /// their API tokens are revoked
    Password { name: String },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an API token for USER and print it (it is shown only this once)
    Create {
        user: String,
        /// What the token is for
        #[arg(long)]
        name: String,
        /// How long it works: a number of days (90 or 90d) or "never" [default: the
        /// setting accounts.token_lifetime_secs, 90 days unless changed]
        #[arg(long, value_name = "DAYS|never")]
        expires: Option<TokenLifetime>,
    },
    /// List USER's tokens (never the tokens themselves)
    List { user: String },
    /// Revoke USER's token ID: it stops working at once
    Revoke { user: String, id: TokenId },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A serving instance's child (`password::guessable_apart`): no configuration, no logs.
    if matches!(cli.command, Some(Command::PasswordStrength)) {
        return match shop::accounts::password::answer_strength_question() {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        };
    }
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
    if matches!(command, Command::User(_) | Command::Token(_)) {
        telemetry::init_audit();
    }
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
            Command::PasswordStrength => unreachable!("answered before the configuration"),
            Command::User(command) => users(&settings, command).await.map(|()| true),
            Command::Token(command) => tokens(&settings, command).await.map(|()| true),
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

async fn users(settings: &Settings, command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Add { name, admin } => admin::add_user(settings, &name, admin).await,
        UserCommand::List => admin::list_users(settings).await,
        UserCommand::Disable { name } => admin::set_disabled(settings, &name, true).await,
        UserCommand::Enable { name } => admin::set_disabled(settings, &name, false).await,
        UserCommand::Password { name } => admin::set_password(settings, &name).await,
    }
}

async fn tokens(settings: &Settings, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            user,
            name,
            expires,
        } => admin::create_token(settings, &user, &name, expires).await,
        TokenCommand::List { user } => admin::list_tokens(settings, &user).await,
        TokenCommand::Revoke { user, id } => admin::revoke_token(settings, &user, id).await,
    }
}
