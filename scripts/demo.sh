#!/usr/bin/env bash
# The main job, end to end: start Gofer, deploy the example pipelines written in Rust, run them as containers on
# Docker and show their task states and logs. Installs and starts Docker when missing; stops Gofer at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/ensure-docker.sh
echo "== building gofer" >&2
cargo build -j2 -q -p gofer
gofer=target/debug/gofer

port=${GOFER_DEMO_PORT:-18080}
data_dir=$(mktemp -d /tmp/gofer-demo.XXXXXX)
export GOFER_API_URL="http://127.0.0.1:$port"
"$gofer" service start --bind-address "127.0.0.1:$port" --external-bind-address "127.0.0.1:$((port + 1))" \
  --data-dir "$data_dir" 2>"$data_dir/server.log" &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  "$gofer" pipeline list >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { cat "$data_dir/server.log" >&2; exit 1; }
  sleep 0.1
done
echo "== Gofer is up at $GOFER_API_URL (data in $data_dir); its web UI is at $GOFER_API_URL/" >&2

for example in simple dag; do
  echo >&2
  echo "== gofer pipeline deploy examples/$example" >&2
  "$gofer" pipeline deploy "examples/$example"
  run=$("$gofer" run start "$example" --output json | sed -n 's/.*"run_id": \([0-9]*\).*/\1/p')
  echo "== gofer run get $example $run --follow" >&2
  "$gofer" run get "$example" "$run" --follow
done
echo >&2
echo "== gofer pipeline list" >&2
"$gofer" pipeline list
