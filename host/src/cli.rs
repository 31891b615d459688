//! The `scriptbox` command line: argument parsing and the local commands.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::sandbox::{
    CompileFailure, FetchConfig, LimitOverrides, LogLevel, MemoryKv, RunContext, RunRequest,
    Sandbox, SandboxConfig,
};
use crate::store::{Db, StoreError};
use crate::typescript::{self, Language};

/// Exit code for a script that failed (threw, broke a limit, did not compile).
const EXIT_SCRIPT_FAILED: u8 = 1;
/// Exit code for bad usage: missing file, invalid JSON, bad flags.
const EXIT_USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "scriptbox",
    version,
    about = "Runs JavaScript in WebAssembly sandboxes"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one script locally in the sandbox; prints its JSON result on stdout
    /// and its console output on stderr.
    Run {
        /// The script: an ES module whose default export is the handler
        /// (`.ts`: TypeScript, its types erased).
        file: PathBuf,
        /// JSON passed as the handler's `input`.
        #[arg(long, default_value = "null")]
        input: String,
        /// Fuel (wasm instructions) the run may use; about 5 million per ms of
        /// CPU (see --stats) [default: 5000000000, about 0.5 s].
        #[arg(long)]
        fuel: Option<u64>,
        /// Memory cap in MiB [default: 64].
        #[arg(long)]
        memory_mb: Option<u32>,
        /// Wall-clock deadline in milliseconds [default: 5000].
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// A host `fetch` may reach even at an internal address (repeatable).
        #[arg(long = "allow-host", value_name = "HOST")]
        allow_hosts: Vec<String>,
        /// Print fuel, memory and time used to stderr.
        #[arg(long)]
        stats: bool,
    },
    /// Compile only: prints `ok`, or the syntax error with line and column.
    Check {
        /// The script to compile (`.ts`: TypeScript).
        file: PathBuf,
    },
    /// Run the service: HTTP API, sandbox pool, database.
    Serve {
        /// A TOML config file (see scriptbox.example.toml) [default: none:
        /// built-in defaults, then SCRIPTBOX_* environment variables].
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address of the admin listener: API, dashboard, metrics, health
        /// (over the config's `listen`). Keep it private [default:
        /// 127.0.0.1:8080].
        #[arg(long)]
        listen: Option<String>,
        /// Address of the public listener: webhooks only (over the
        /// config's `webhooks.listen`) [default: 127.0.0.1:8081].
        #[arg(long)]
        public_listen: Option<String>,
        /// Database URL (over the config's): sqlite://FILE or
        /// postgres://... [default: sqlite://scriptbox.db, in the current
        /// folder].
        #[arg(long)]
        database: Option<String>,
    },
    /// Save the server's URL and a tenant's API key for the commands below
    /// (asks for the key when --api-key is not given).
    Login {
        /// The admin listener's URL, e.g. http://127.0.0.1:8080.
        url: String,
        /// The tenant's API key (from `scriptbox tenant create`) [default:
        /// read from stdin].
        #[arg(long, env = "SCRIPTBOX_API_KEY", hide_env_values = true)]
        api_key: Option<String>,
    },
    /// Create a script from FILE, or update the script of that name: prints
    /// its id, version, and webhook URL or next fire time.
    Deploy {
        /// The script (`.js`, or `.ts` for TypeScript).
        file: PathBuf,
        /// The script's name [default: the file's name without extension].
        #[arg(long)]
        name: Option<String>,
        /// Serve it as a webhook at this path (on the public listener).
        #[arg(long, value_name = "PATH", group = "trigger")]
        webhook: Option<String>,
        /// Run it on this cron schedule (robfig/cron syntax, e.g. "*/5 * * * *").
        #[arg(
            long,
            value_name = "EXPR",
            group = "trigger",
            allow_hyphen_values = true
        )]
        schedule: Option<String>,
        /// Run it only when invoked [default for a new script; an existing
        /// one keeps its trigger unless one is given].
        #[arg(long, group = "trigger")]
        manual: bool,
        /// The schedule's IANA time zone, e.g. Europe/Paris [default: UTC].
        #[arg(long, value_name = "IANA", requires = "schedule")]
        zone: Option<String>,
        /// A tenant secret the script may read (repeatable; replaces the
        /// script's list).
        #[arg(long = "secret", value_name = "NAME")]
        secrets: Vec<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// List the tenant's scripts.
    Scripts {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Run a script on the server and wait: prints its output on stdout, its
    /// logs and any error on stderr; exits 1 when it failed.
    Invoke {
        /// The script's name.
        name: String,
        /// JSON passed as the handler's `input` [default: none].
        #[arg(long, allow_hyphen_values = true)]
        input: Option<String>,
        /// Print the whole execution as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// List recent executions, newest first.
    Executions {
        /// Only this script's (by name).
        #[arg(long, value_name = "NAME")]
        script: Option<String>,
        /// Only those in this status: queued, running, completed, failed or
        /// dead.
        #[arg(long)]
        status: Option<String>,
        /// How many, 1-500.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Show a script's recent logs; with --follow, then each run as it
    /// finishes.
    Logs {
        /// The script's name.
        name: String,
        /// Keep printing executions as they finish, until Ctrl+C.
        #[arg(long, short)]
        follow: bool,
        /// How many recent executions to show first (0: none), 0-500.
        #[arg(long, default_value_t = 10)]
        limit: u32,
        #[command(flatten)]
        remote: Remote,
    },
    /// Cron expressions (robfig/cron v3 standard syntax).
    Cron {
        #[command(subcommand)]
        command: CronCommand,
    },
    /// Copy the SQLite database to FILE while the service may be running
    /// (a consistent snapshot), with its secrets key beside it.
    Backup {
        /// Where to write the copy; must not exist.
        file: PathBuf,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Manage tenants (directly in the database, not through a server).
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
}

/// Where a client command connects, over the saved login.
#[derive(Debug, Clone, clap::Args)]
pub struct Remote {
    /// The server's admin URL, e.g. http://127.0.0.1:8080 [default: the
    /// saved login's].
    #[arg(long, env = "SCRIPTBOX_URL")]
    pub url: Option<String>,
    /// The tenant's API key [default: the saved login's].
    #[arg(long, env = "SCRIPTBOX_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

/// Which database a local command opens.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// A TOML config file naming the database (see scriptbox.example.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Database URL (over the config's): sqlite://FILE or postgres://...
    /// [default: sqlite://scriptbox.db, in the current folder].
    #[arg(long)]
    pub database: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum CronCommand {
    /// Print the next fire times of EXPR, one RFC 3339 line each in the
    /// schedule's zone (as the API shows them), or `none` when there are no
    /// more within five years.
    Next {
        /// The expression, e.g. "*/15 9-17 * * MON-FRI" or "CRON_TZ=Europe/Paris @daily".
        #[arg(allow_hyphen_values = true)]
        expr: String,
        /// Start after this instant [default: now].
        #[arg(long, value_name = "RFC3339")]
        after: Option<String>,
        /// The schedule's IANA zone when EXPR has no CRON_TZ= prefix, as a
        /// script's `timezone` [default: the offset of --after, else UTC].
        #[arg(long, value_name = "IANA")]
        zone: Option<String>,
        /// How many fire times to print.
        #[arg(long, default_value_t = 1)]
        count: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant and print its API key (shown once; only a hash is kept).
    Create {
        /// Lowercase letters, digits and '-': the tenant's slug in webhook URLs.
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List the tenants: name, id, created.
    List {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Give a tenant a new API key and print it; the old key stops working
    /// (within a minute on running servers, which cache keys).
    RotateKey {
        /// The tenant's name.
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// Addresses given on the command line, over the config's.
#[derive(Default)]
struct Overrides {
    listen: Option<String>,
    public_listen: Option<String>,
    database: Option<String>,
}

fn load_config(file: Option<&Path>, overrides: Overrides) -> Result<Config, ExitCode> {
    let Overrides {
        listen,
        public_listen,
        database,
    } = overrides;
    let mut config = Config::load(file, std::env::vars()).map_err(|error| {
        eprintln!("error: {error:#}");
        ExitCode::from(EXIT_USAGE)
    })?;
    if let Some(listen) = listen {
        config.listen = listen;
    }
    if let Some(listen) = public_listen {
        config.webhooks.listen = listen;
    }
    if let Some(url) = database {
        config.database.url = url;
    }
    config.validate().map_err(|error| {
        eprintln!("error: {error:#}");
        ExitCode::from(EXIT_USAGE)
    })?;
    Ok(config)
}

async fn serve(config: Config) -> ExitCode {
    let listeners =
        match crate::server::Listeners::bind(&config.listen, &config.webhooks.listen).await {
            Ok(listeners) => listeners,
            Err(error) => {
                eprintln!("error: {error:#}");
                return ExitCode::from(EXIT_SCRIPT_FAILED);
            }
        };
    let node = match crate::server::start(&config).await {
        Ok(node) => node,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::from(EXIT_SCRIPT_FAILED);
        }
    };
    let addr =
        |l: &tokio::net::TcpListener| l.local_addr().map(|a| a.to_string()).unwrap_or_default();
    tracing::info!(
        admin = %format!("http://{}", addr(&listeners.admin)),
        public = %format!("http://{}", addr(&listeners.public)),
        database = node.db.dialect(),
        pool_max = config.sandbox.pool_max,
        tenant_max_concurrent = config.sandbox.tenant_max_concurrent(),
        tenant_max_queued = config.sandbox.tenant_max_queued,
        scheduler = config.scheduler.enabled,
        "scriptbox listening: API and dashboard on admin, webhooks on public"
    );
    match crate::server::run(listeners, node, crate::server::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_SCRIPT_FAILED)
        }
    }
}

/// The configuration a local database command reads (`--config`,
/// `--database`).
fn database_config(args: DatabaseArgs) -> Result<Config, ExitCode> {
    load_config(
        args.config.as_deref(),
        Overrides {
            database: args.database,
            ..Overrides::default()
        },
    )
}

/// Opens the configured database for a one-shot command.
async fn open_db(config: &Config) -> Result<Db, ExitCode> {
    Db::open(&config.database).await.map_err(|error| {
        eprintln!("error: {error:#}");
        ExitCode::from(EXIT_SCRIPT_FAILED)
    })
}

/// The database a command uses, as a person reads it: a SQLite file by its
/// full path, PostgreSQL without its password.
fn database_shown(url: &str) -> String {
    if let Some(file) = crate::secrets::sqlite_file(url) {
        let full = std::path::absolute(&file).unwrap_or(file);
        return format!("sqlite://{}", full.display());
    }
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => url.to_owned(),
    }
}

async fn create_tenant(config: Config, name: &str) -> ExitCode {
    if let Err(why) = crate::store::tenants_validate_name(name) {
        eprintln!("error: {why}");
        return ExitCode::from(EXIT_USAGE);
    }
    let shown = database_shown(&config.database.url);
    let new_file = crate::secrets::sqlite_file(&config.database.url).is_some_and(|f| !f.exists());
    let db = match open_db(&config).await {
        Ok(db) => db,
        Err(code) => return code,
    };
    let result = db.create_tenant(name).await;
    db.close().await;
    match result {
        Ok((tenant, key)) => {
            if new_file {
                eprintln!(
                    "note: {shown} did not exist and was created; a server must use this \
                     database (`scriptbox serve --database ...`) for the key to work"
                );
            }
            println!("created tenant {} ({}) in {shown}", tenant.name, tenant.id);
            println!("API key (shown once, keep it safe):");
            println!("{key}");
            ExitCode::SUCCESS
        }
        Err(StoreError::Conflict(_)) => {
            eprintln!(
                "error: a tenant named {name:?} already exists in {shown}; its key was shown \
                 once, when it was created. For a new key: scriptbox tenant rotate-key {name}"
            );
            ExitCode::from(EXIT_USAGE)
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_SCRIPT_FAILED)
        }
    }
}

async fn list_tenants(config: Config) -> ExitCode {
    let db = match open_db(&config).await {
        Ok(db) => db,
        Err(code) => return code,
    };
    let result = db.list_tenants().await;
    db.close().await;
    match result {
        Ok(tenants) if tenants.is_empty() => {
            println!(
                "no tenants in {}: `scriptbox tenant create NAME` makes one",
                database_shown(&config.database.url)
            );
            ExitCode::SUCCESS
        }
        Ok(tenants) => {
            let rows: Vec<Vec<String>> = tenants
                .into_iter()
                .map(|t| {
                    let created =
                        crate::cron::Time::from_unix_ms(t.created_at, crate::cron::Location::Utc);
                    vec![t.name, t.id.to_string(), created.to_string()]
                })
                .collect();
            print!(
                "{}",
                crate::client::render_table(&["NAME", "ID", "CREATED"], &rows)
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_SCRIPT_FAILED)
        }
    }
}

async fn rotate_key(config: Config, name: &str) -> ExitCode {
    let shown = database_shown(&config.database.url);
    let db = match open_db(&config).await {
        Ok(db) => db,
        Err(code) => return code,
    };
    let result = db.rotate_api_key(name).await;
    db.close().await;
    match result {
        Ok((tenant, key)) => {
            println!(
                "new API key for tenant {} ({}) in {shown}; the old key stops working \
                 (within a minute on running servers)",
                tenant.name, tenant.id
            );
            println!("{key}");
            ExitCode::SUCCESS
        }
        Err(StoreError::NotFound) => {
            eprintln!(
                "error: no tenant named {name:?} in {shown} (`scriptbox tenant list` lists them)"
            );
            ExitCode::from(EXIT_USAGE)
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_SCRIPT_FAILED)
        }
    }
}

/// `scriptbox backup FILE`: `VACUUM INTO` FILE, then the secrets key file
/// (when the database keeps it beside itself) to `FILE.secrets-key`.
async fn backup(config: Config, file: &Path) -> ExitCode {
    if !config.database.url.starts_with("sqlite:") {
        eprintln!(
            "error: backup copies a SQLite database; back up PostgreSQL with pg_dump (docs/operations.md)"
        );
        return ExitCode::from(EXIT_USAGE);
    }
    if file.exists() {
        eprintln!(
            "error: {} already exists; give a new file name",
            file.display()
        );
        return ExitCode::from(EXIT_USAGE);
    }
    let db = match open_db(&config).await {
        Ok(db) => db,
        Err(code) => return code,
    };
    let copied = db.backup_into(file).await;
    db.close().await;
    if let Err(error) = copied {
        eprintln!("error: {error:#}");
        return ExitCode::from(EXIT_SCRIPT_FAILED);
    }
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    println!(
        "copied {} to {} ({size} bytes)",
        config.database.url,
        file.display()
    );
    let url = &config.database.url;
    match config.secrets.default_key_file(url) {
        Some(key) if key.exists() => {
            let target = crate::secrets::key_file_beside(&format!("sqlite://{}", file.display()));
            let Some(target) = target else {
                return ExitCode::SUCCESS;
            };
            if let Err(error) = copy_private(&key, &target) {
                eprintln!(
                    "error: copying the secrets key {} to {}: {error}",
                    key.display(),
                    target.display()
                );
                return ExitCode::from(EXIT_SCRIPT_FAILED);
            }
            println!(
                "copied the secrets key to {} (mode 0600): keep it with the copy, secrets cannot be read without it",
                target.display()
            );
        }
        Some(_) => {}
        None => println!(
            "the secrets key is configured (secrets.key or secrets.key_file) and not copied: restore with the same key"
        ),
    }
    ExitCode::SUCCESS
}

/// Copies `from` to a new file `to` readable by its owner only.
fn copy_private(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let bytes = std::fs::read(from)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(to)?.write_all(&bytes)
}

pub async fn execute(cli: Cli) -> ExitCode {
    // `serve` sets up logging once its configuration is read; one-shot
    // commands only warn.
    if !matches!(cli.command, Command::Serve { .. }) {
        crate::logging::init(crate::logging::LogFormat::Text, "warn");
    }
    match cli.command {
        Command::Run {
            file,
            input,
            fuel,
            memory_mb,
            timeout_ms,
            allow_hosts,
            stats,
        } => {
            let overrides = LimitOverrides {
                fuel,
                memory_mb,
                timeout_ms,
            };
            let fetch = FetchConfig {
                allow: allow_hosts,
                ..FetchConfig::default()
            };
            run_file(&file, &input, overrides, fetch, stats).await
        }
        Command::Check { file } => check_file(&file).await,
        Command::Serve {
            config,
            listen,
            public_listen,
            database,
        } => match load_config(
            config.as_deref(),
            Overrides {
                listen,
                public_listen,
                database,
            },
        ) {
            Ok(config) => {
                // RUST_LOG decides; without it the service says what it is
                // doing: start, configuration, failed runs, stop.
                crate::logging::init(config.log.format, "scriptbox=info,warn");
                serve(config).await
            }
            Err(code) => code,
        },
        Command::Cron {
            command:
                CronCommand::Next {
                    expr,
                    after,
                    zone,
                    count,
                },
        } => cron_next(&expr, after.as_deref(), zone.as_deref(), count),
        Command::Backup { file, database } => match database_config(database) {
            Ok(config) => backup(config, &file).await,
            Err(code) => code,
        },
        Command::Tenant { command } => match command {
            TenantCommand::Create { name, database } => match database_config(database) {
                Ok(config) => create_tenant(config, &name).await,
                Err(code) => code,
            },
            TenantCommand::List { database } => match database_config(database) {
                Ok(config) => list_tenants(config).await,
                Err(code) => code,
            },
            TenantCommand::RotateKey { name, database } => match database_config(database) {
                Ok(config) => rotate_key(config, &name).await,
                Err(code) => code,
            },
        },
        Command::Login { url, api_key } => login(url, api_key).await,
        remote => client_command(remote).await,
    }
}

/// `scriptbox login URL`: the key from --api-key, or a line of stdin.
async fn login(url: String, api_key: Option<String>) -> ExitCode {
    let api_key = match api_key {
        Some(key) => key,
        None => {
            use std::io::{BufRead, IsTerminal};
            if std::io::stdin().is_terminal() {
                eprint!("API key for {url} (from `scriptbox tenant create`): ");
            }
            let mut line = String::new();
            if let Err(error) = std::io::stdin().lock().read_line(&mut line) {
                eprintln!("error: reading the API key: {error}");
                return ExitCode::from(EXIT_USAGE);
            }
            line.trim().to_owned()
        }
    };
    if api_key.is_empty() {
        eprintln!("error: no API key given (--api-key, SCRIPTBOX_API_KEY or stdin)");
        return ExitCode::from(EXIT_USAGE);
    }
    let credentials = crate::client::Credentials { url, api_key };
    report(crate::client::commands::login(credentials).await)
}

/// Prints a client command's output, or its error with the exit code that
/// fits.
fn report(result: crate::client::ClientResult<String>) -> ExitCode {
    match result {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(error) => client_failed(&error),
    }
}

fn client_failed(error: &crate::client::ClientError) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::from(error.exit_code())
}

/// The commands that talk to a server's API.
async fn client_command(command: Command) -> ExitCode {
    use crate::client::commands::{self, Deploy, DeployTrigger};
    let connect = |remote: Remote| {
        crate::client::login::resolve(remote.url, remote.api_key)
            .and_then(crate::client::Client::new)
    };
    match command {
        Command::Deploy {
            file,
            name,
            webhook,
            schedule,
            manual,
            zone,
            secrets,
            remote,
        } => {
            let trigger = match (webhook, schedule, manual) {
                (Some(path), _, _) => Some(DeployTrigger::Webhook { path }),
                (_, Some(schedule), _) => Some(DeployTrigger::Scheduled { schedule, zone }),
                (_, _, true) => Some(DeployTrigger::Manual),
                _ => None,
            };
            let deploy = match Deploy::of_file(&file, name, trigger, secrets) {
                Ok(deploy) => deploy,
                Err(error) => return client_failed(&error),
            };
            match connect(remote) {
                Ok(client) => report(commands::deploy(&client, &deploy).await),
                Err(error) => client_failed(&error),
            }
        }
        Command::Scripts { json, remote } => match connect(remote) {
            Ok(client) => report(commands::scripts(&client, json).await),
            Err(error) => client_failed(&error),
        },
        Command::Invoke {
            name,
            input,
            json,
            remote,
        } => {
            let client = match connect(remote) {
                Ok(client) => client,
                Err(error) => return client_failed(&error),
            };
            match commands::invoke(&client, &name, input.as_deref(), json).await {
                Ok(invoked) => {
                    if !invoked.stderr.is_empty() {
                        eprintln!("{}", invoked.stderr);
                    }
                    if !invoked.stdout.is_empty() {
                        println!("{}", invoked.stdout);
                    }
                    if invoked.completed {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(EXIT_SCRIPT_FAILED)
                    }
                }
                Err(error) => client_failed(&error),
            }
        }
        Command::Executions {
            script,
            status,
            limit,
            json,
            remote,
        } => match connect(remote) {
            Ok(client) => report(
                commands::executions(&client, script.as_deref(), status.as_deref(), limit, json)
                    .await,
            ),
            Err(error) => client_failed(&error),
        },
        Command::Logs {
            name,
            follow,
            limit,
            remote,
        } => {
            let client = match connect(remote) {
                Ok(client) => client,
                Err(error) => return client_failed(&error),
            };
            let print = |block: &str| {
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{block}");
                let _ = out.flush();
            };
            let note = |line: &str| eprintln!("{line}");
            match commands::logs(&client, &name, limit, follow, print, note).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => client_failed(&error),
            }
        }
        other => unreachable!("not a client command: {other:?}"),
    }
}

fn cron_next(expr: &str, after: Option<&str>, zone: Option<&str>, count: usize) -> ExitCode {
    use crate::cron::{Location, Time};
    let schedule = match crate::cron::parse(expr) {
        Ok(schedule) => schedule,
        Err(why) => {
            eprintln!("invalid cron expression: {why}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let mut start = match after {
        Some(text) => match Time::parse_rfc3339(text) {
            Ok(time) => time,
            Err(why) => {
                eprintln!("error: --after: {why}");
                return ExitCode::from(EXIT_USAGE);
            }
        },
        None => Time::from_unix_ms(crate::store::now_ms(), Location::Utc),
    };
    // As the API shows a script's next runs: in the expression's own zone
    // (CRON_TZ=), else the given one, else the offset of --after (UTC
    // without it).
    let default_zone = match zone {
        Some(name) => match Location::named(name) {
            Ok(loc) => loc,
            Err(why) => {
                eprintln!("error: --zone: {why}");
                return ExitCode::from(EXIT_USAGE);
            }
        },
        None => start.location(),
    };
    start = start.in_location(schedule.zone_or(default_zone));
    let times = schedule.upcoming(start, count);
    for time in &times {
        println!("{time}");
    }
    if times.len() < count {
        println!("none");
    }
    ExitCode::SUCCESS
}

/// The script in `file`, as JavaScript: a `.ts` file has its types erased
/// (positions kept, so errors point into the file).
fn read_source(file: &Path) -> Result<String, ExitCode> {
    let source = std::fs::read_to_string(file).map_err(|error| {
        eprintln!("error: cannot read {}: {error}", file.display());
        ExitCode::from(EXIT_USAGE)
    })?;
    typescript::to_javascript(Language::of_path(file), &source).map_err(|e| {
        eprintln!("{}:{}:{}: {}", file.display(), e.line, e.column, e.message);
        ExitCode::from(EXIT_SCRIPT_FAILED)
    })
}

fn local_sandbox() -> Result<Sandbox, ExitCode> {
    local_sandbox_with(FetchConfig::default())
}

fn local_sandbox_with(fetch: FetchConfig) -> Result<Sandbox, ExitCode> {
    let config = SandboxConfig {
        pool_min: 1,
        pool_max: 1,
        ..SandboxConfig::default()
    };
    Sandbox::start(config, fetch, Arc::new(MemoryKv::default())).map_err(|error| {
        eprintln!("error: cannot start the sandbox: {error:#}");
        ExitCode::from(EXIT_SCRIPT_FAILED)
    })
}

fn report_compile_failure(file: &Path, failure: CompileFailure) -> ExitCode {
    match failure {
        CompileFailure::Syntax(e) => {
            eprintln!("{}:{}:{}: {}", file.display(), e.line, e.column, e.message);
        }
        CompileFailure::Sandbox(e) => eprintln!("error: {e}"),
    }
    ExitCode::from(EXIT_SCRIPT_FAILED)
}

async fn check_file(file: &Path) -> ExitCode {
    let source = match read_source(file) {
        Ok(source) => source,
        Err(code) => return code,
    };
    let sandbox = match local_sandbox() {
        Ok(sandbox) => sandbox,
        Err(code) => return code,
    };
    match sandbox.compile(&source).await {
        Ok(_) => {
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(failure) => report_compile_failure(file, failure),
    }
}

async fn run_file(
    file: &Path,
    input: &str,
    overrides: LimitOverrides,
    fetch: FetchConfig,
    stats: bool,
) -> ExitCode {
    if let Err(error) = serde_json::from_str::<serde_json::Value>(input) {
        eprintln!("error: --input is not valid JSON: {error}");
        return ExitCode::from(EXIT_USAGE);
    }
    let source = match read_source(file) {
        Ok(source) => source,
        Err(code) => return code,
    };
    let sandbox = match local_sandbox_with(fetch) {
        Ok(sandbox) => sandbox,
        Err(code) => return code,
    };
    let limits = match sandbox.config().limits_with(&overrides) {
        Ok(limits) => limits,
        Err(why) => {
            eprintln!("error: {why}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let bytecode = match sandbox.compile(&source).await {
        Ok(bytecode) => bytecode,
        Err(failure) => return report_compile_failure(file, failure),
    };
    let context = RunContext {
        script_id: "local".into(),
        execution_id: uuid::Uuid::new_v4().to_string(),
        tenant_id: "local".into(),
        trigger: "manual",
        attempt: 0,
        env: Default::default(),
        cron: None,
    };
    let request = RunRequest::new(&context, input.to_owned(), limits);
    let outcome = sandbox.run(&bytecode, request).await;
    for line in &outcome.logs {
        match line.level {
            LogLevel::Info => eprintln!("{}", line.message),
            LogLevel::Debug => eprintln!("debug: {}", line.message),
            LogLevel::Warn => eprintln!("warn: {}", line.message),
            LogLevel::Error => eprintln!("error: {}", line.message),
        }
    }
    if stats {
        let u = &outcome.usage;
        // Fuel per millisecond of CPU: how a fuel budget maps to time for
        // this kind of work (docs/sandbox.md, "Fuel and time").
        let fuel_per_ms = (u.fuel_used as u128 * 1_000)
            .checked_div(u.cpu.as_micros())
            .unwrap_or(0);
        eprintln!(
            "stats: fuel_used={} memory_peak_bytes={} wall_us={} cpu_us={} fuel_per_ms={fuel_per_ms}",
            u.fuel_used,
            u.memory_peak_bytes,
            u.wall.as_micros(),
            u.cpu.as_micros()
        );
    }
    match outcome.result {
        Ok(success) => {
            println!("{}", success.output);
            ExitCode::SUCCESS
        }
        Err(mut failure) => {
            failure.name_frames(&file.display().to_string());
            eprintln!("{}: {}", failure.kind, failure.message);
            if let Some(stack) = failure.stack {
                eprintln!("{}", stack.trim_end());
            }
            ExitCode::from(EXIT_SCRIPT_FAILED)
        }
    }
}
