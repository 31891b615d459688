//! The integration suite, one test binary: the real sandbox, a real
//! `serve` node on SQLite and on PostgreSQL, over real sockets. One binary
//! links wasmtime once instead of once per file.

mod api;
mod cron;
mod examples;
mod handlers;
mod isolation;
mod metrics;
mod retention;
mod sandbox_contract;
mod sandbox_fetch;
mod sandbox_fuel_budgets;
mod sandbox_limits;
mod scheduler;
mod secrets;
mod stream;
mod typescript;
mod webhooks;
mod writer;
