//! Tests of the `scriptbox` binary itself, one test binary: commands,
//! `serve` processes (shutdown, recovery, a crash under load, a cluster of
//! nodes, logs), Prometheus and Chromium against a live node.

mod backup;
mod chaos;
mod cli;
mod client;
mod cluster;
mod common;
mod crash;
mod dashboard;
mod isolation_browser;
mod prometheus;
mod recovery;
mod shutdown;
mod soak;
