#!/usr/bin/env bash
# Soak: a release `scriptbox serve` on SQLite with a small retention limit,
# webhook calls at half its measured maximum for ten minutes; prints RSS,
# database size, p50/p99 and errors per minute (host/tests/serve/soak.rs).
#   benches/soak.sh            # 600 s
#   benches/soak.sh 1800       # longer
set -euo pipefail
cd "$(dirname "$0")/.."
SCRIPTBOX_SOAK_SECONDS=${1:-600} cargo test --release -p scriptbox --test serve -- \
  soak --nocapture 2>&1 | grep -E '^soak:|test result|panicked'
