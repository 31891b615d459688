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
        /// The script: an ES module whose default export is the handler.
        file: PathBuf,
        /// JSON passed as the handler's `input`.
        #[arg(long, default_value = "null")]
        input: String,
        /// Fuel (wasm instructions) the run may use.
        #[arg(long)]
        fuel: Option<u64>,
        /// Memory cap in MiB.
        #[arg(long)]
        memory_mb: Option<u32>,
        /// Wall-clock deadline in milliseconds.
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
    Check { file: PathBuf },
    /// Run the service: HTTP API, sandbox pool, database.
    Serve {
        /// A TOML config file (see scriptbox.example.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address of the admin listener: API, dashboard, metrics, health
        /// (overrides `listen`; default 127.0.0.1:8080). Keep it private.
        #[arg(long)]
        listen: Option<String>,
        /// Address of the public listener: webhooks only (overrides
        /// `webhooks.listen`; default 127.0.0.1:8081).
        #[arg(long)]
        public_listen: Option<String>,
        /// Database URL (overrides the config): sqlite://FILE or postgres://...
        #[arg(long)]
        database: Option<String>,
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
        /// A TOML config file naming the database (see scriptbox.example.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Database URL (overrides the config): sqlite://FILE.
        #[arg(long)]
        database: Option<String>,
    },
    /// Manage tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum CronCommand {
    /// Print the next fire times of EXPR, one RFC 3339 line each (with the
    /// offset), or `none` when there are no more within five years.
    Next {
        /// The expression, e.g. "*/15 9-17 * * MON-FRI" or "CRON_TZ=Europe/Paris @daily".
        expr: String,
        /// Start after this instant (default: now).
        #[arg(long, value_name = "RFC3339")]
        after: Option<String>,
        /// Read the start instant in this IANA zone (default: the offset of
        /// --after, or UTC).
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
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        database: Option<String>,
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
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_SCRIPT_FAILED)
        }
    }
}

async fn create_tenant(config: Config, name: &str) -> ExitCode {
    if let Err(why) = crate::store::tenants_validate_name(name) {
        eprintln!("error: {why}");
        return ExitCode::from(EXIT_USAGE);
    }
    let db = match Db::open(&config.database).await {
        Ok(db) => db,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::from(EXIT_SCRIPT_FAILED);
        }
    };
    let result = db.create_tenant(name).await;
    db.close().await;
    match result {
        Ok((tenant, key)) => {
            println!("created tenant {} ({})", tenant.name, tenant.id);
            println!("API key (shown once, keep it safe):");
            println!("{key}");
            ExitCode::SUCCESS
        }
        Err(StoreError::Conflict(why)) => {
            eprintln!("error: {why}");
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
    let db = match Db::open(&config.database).await {
        Ok(db) => db,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::from(EXIT_SCRIPT_FAILED);
        }
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
        Command::Backup {
            file,
            config,
            database,
        } => match load_config(
            config.as_deref(),
            Overrides {
                database,
                ..Overrides::default()
            },
        ) {
            Ok(config) => backup(config, &file).await,
            Err(code) => code,
        },
        Command::Tenant {
            command:
                TenantCommand::Create {
                    name,
                    config,
                    database,
                },
        } => match load_config(
            config.as_deref(),
            Overrides {
                database,
                ..Overrides::default()
            },
        ) {
            Ok(config) => create_tenant(config, &name).await,
            Err(code) => code,
        },
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
    if let Some(name) = zone {
        match Location::named(name) {
            Ok(loc) => start = start.in_location(loc),
            Err(why) => {
                eprintln!("error: --zone: {why}");
                return ExitCode::from(EXIT_USAGE);
            }
        }
    }
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
        eprintln!(
            "stats: fuel_used={} memory_peak_bytes={} wall_us={} cpu_us={}",
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
