//! scriptbox runs tenants' JavaScript in WebAssembly sandboxes.
//!
//! Data flows one way: a trigger (API call, webhook, cron tick) asks for a
//! run; the run gets a fresh guest instance from the sandbox pool; QuickJS
//! runs the script's bytecode under fuel, memory and time limits; the result,
//! logs and usage come back to be stored and measured.
//!
//! - [`sandbox`]: wasmtime, the guest, the pool, limits and host imports
//! - [`scheduler`]: cron runs and retries of failed ones
//! - [`metrics`]: Prometheus metrics
//! - [`webhooks`]: webhook routes, auth, rate limits and replies
//! - [`exec`]: `ExecutionService`, the one path every run takes
//! - [`store`]: SQLite and PostgreSQL storage
//! - [`http`]: the HTTP edge: the admin API, the dashboard, health and
//!   metrics on one listener, webhooks on the other; request ids and spans
//! - [`scripts`]: `ScriptService`, saving scripts and the caches around them
//! - [`node`]: a node's services, assembled from its configuration
//! - [`server`]: `scriptbox serve`: both listeners and shutdown
//! - [`retention`]: deleting old executions, in bounded batches
//! - [`cron`]: cron expressions with robfig/cron semantics
//! - [`model`]: the words every layer speaks about runs: trigger, status,
//!   failure kind
//! - [`settings`]: a script's structured settings, decoded strictly
//! - [`secrets`]: tenants' secrets: the key, sealing values, masking runs
//! - [`typescript`]: scripts' languages; TypeScript types erased in place
//! - [`config`]: the typed, validated configuration
//! - [`logging`]: `RUST_LOG` and `[log] format`
//! - [`cli`]: the `scriptbox` command line
//! - [`client`]: the command line's client of a node's API: login, deploy,
//!   scripts, invoke, executions, live logs
//! - [`fuzz`]: properties of the parsers of untrusted text, for the fuzz
//!   targets and the property tests

/// The allocator of every program built on this crate (the service, its
/// tests and benches). Instances are made on one thread, run on another and
/// torn down on a third; glibc's malloc then has the threads queue on each
/// other's arena locks, and two worker threads ran the sandbox only 1.35x as
/// fast as one where two separate processes reach 2x (`cargo bench --bench
/// sandbox`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod cli;
pub mod client;
pub mod config;
pub mod cron;
pub mod exec;
pub mod fuzz;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod node;
pub mod retention;
pub mod sandbox;
pub mod scheduler;
pub mod scripts;
pub mod secrets;
pub mod server;
pub mod settings;
pub mod store;
pub mod typescript;
pub mod webhooks;
