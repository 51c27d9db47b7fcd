#!/usr/bin/env bash
# Benchmarks Gofer against the same Docker engine used directly; prints a Markdown table (see docs/benchmarks.md).
# Extra arguments go to gofer-bench, e.g. `bash scripts/bench.sh --rss-runs 200`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-docker.sh
# --storage starts a throwaway PostgreSQL (initdb/pg_ctl).
if [[ " $* " == *" --storage "* ]]; then bash scripts/ensure-postgres.sh; fi
command -v wrk >/dev/null 2>&1 || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null || true; }
cargo build -j2 --release -q -p gofer -p gofer-bench
exec target/release/gofer-bench "$@"
