//! scriptbox runs tenants' JavaScript in WebAssembly sandboxes.
//!
//! Data flows one way: a trigger (API call, webhook, cron tick) asks for a
//! run; the run gets a fresh guest instance from the sandbox pool; QuickJS
//! runs the script's bytecode under fuel, memory and time limits; the result,
//! logs and usage come back to be stored and measured.
//!
//! - [`sandbox`]: wasmtime, the guest, the pool, limits and host imports
//! - [`cli`]: the `scriptbox` command line

pub mod cli;
pub mod sandbox;
