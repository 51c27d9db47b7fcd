#!/usr/bin/env bash
# Every check, as CI runs it: formatting, lints, then all tests (unit, storage conformance, Docker backend and
# end-to-end tests of the real binary on the real Docker engine). Installs and starts Docker when missing, and moto (an
# S3-compatible server from PyPI) for the object-store tests, prometheus_client (PyPI) whose parser reads the
# metrics, and Chromium with its WebDriver for the web UI's tests.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/ensure-docker.sh
bash scripts/ensure-s3.sh
bash scripts/ensure-prometheus-parser.sh
bash scripts/ensure-postgres.sh
bash scripts/ensure-chromium.sh
# Go (Debian's golang-go, 1.19) for the Go SDK and the Go example pipeline.
command -v go >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go >/dev/null
# systemd-analyze checks the shipped unit (deploy/gofer.service).
command -v systemd-analyze >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
cargo clippy -j2 --workspace --all-targets -- -D warnings
echo "== gofmt, go vet and go test (the Go SDK against the shared vectors; the Go example)" >&2
for module in sdk/go examples/go-dag crates/gofer/tests/it/earlier_extension; do
  unformatted=$(cd "$module" && gofmt -l .)
  [[ -z "$unformatted" ]] || { echo "gofmt: not formatted in $module: $unformatted" >&2; exit 1; }
  (cd "$module" && go vet ./...)
done
(cd sdk/go && go test -count=1 ./...)
echo "== cargo build (the example extension the end-to-end tests package as an image)" >&2
cargo build -j2 -p gofer-extension-heartbeat
echo "== cargo test" >&2
cargo test -j2 --workspace
echo "== static binary (fails if it links dynamically) and the FROM scratch container image running the example" >&2
bash scripts/release.sh --profile static-check --image
bash scripts/test-image.sh
