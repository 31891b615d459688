# scriptbox tasks. `just` installs with `cargo install just`.

# Rebuild the guest (QuickJS in wasm) from source into host/guest/.
guest:
    ./guest-js-engine/build.sh

# The whole test suite (the README's test command).
test:
    cargo test --workspace

# Format check and clippy, as CI runs them.
lint:
    cargo fmt --all -- --check
    cargo fmt --manifest-path guest-js-engine/runtime/Cargo.toml -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Per-run latency and throughput of the sandbox against Node.js and native QuickJS.
bench:
    cargo bench -p scriptbox-benches --bench sandbox

# Finding and claiming due schedules among 100,000, on SQLite and PostgreSQL
# (set SCRIPTBOX_TEST_POSTGRES_URL for the PostgreSQL half).
bench-schedule:
    cargo bench -p scriptbox-benches --bench schedule

# 1,000 scripts on `@every 1s` on one node: how late runs start, and none
# missing (SCRIPTBOX_BENCH_DATABASE=postgres for PostgreSQL).
bench-schedule-lag:
    cargo bench -p scriptbox-benches --bench schedule_lag

# Webhook requests/s and latency against a constant axum handler, with wrk.
bench-webhooks:
    command -v wrk >/dev/null || sudo apt-get install -y wrk
    cargo bench -p scriptbox-benches --bench webhooks

# Prometheus on 127.0.0.1:9090 scraping a node on 127.0.0.1:8080 (start one
# with `cargo run --release -p scriptbox -- serve`); queries to try are in
# ops/dashboard-queries.promql.
prometheus:
    command -v prometheus >/dev/null || sudo apt-get install -y prometheus
    prometheus --config.file=ops/prometheus.yml --storage.tsdb.path=target/prometheus --web.listen-address=127.0.0.1:9090

# Run one script locally: just run examples/hello.js '{"name":"Ada"}'
run file input="null":
    cargo run -p scriptbox -- run {{file}} --input '{{input}}'

# Everything CI does, on this machine.
ci:
    bash .ci/run
