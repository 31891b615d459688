//! Benchmarks live in benches/; see benches/sandbox.rs.
