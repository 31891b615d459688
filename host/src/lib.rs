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
//! - [`dashboard`]: the web dashboard at `/`
//! - [`api`]: the HTTP API
//! - [`server`]: `scriptbox serve`
//! - [`observe`]: request ids and spans
//! - [`cron`]: cron expressions with robfig/cron semantics
//! - [`settings`]: a script's structured settings, decoded strictly
//! - [`config`]: the typed, validated configuration
//! - [`cli`]: the `scriptbox` command line

pub mod api;
pub mod cli;
pub mod config;
pub mod cron;
pub mod dashboard;
pub mod exec;
pub mod metrics;
pub mod observe;
pub mod sandbox;
pub mod scheduler;
pub mod server;
pub mod settings;
pub mod store;
pub mod webhooks;
