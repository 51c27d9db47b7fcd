#!/usr/bin/env bash
# The container image, as an operator runs it: Gofer from gofer:latest (FROM scratch: the static binary and CA
# certificates), on the host's engine through the mounted socket, deploys the example DAG and runs it to success.
# Expects `bash scripts/release.sh --image` to have built dist/ and the image. Fails (non-zero) on any difference.
set -euo pipefail
cd "$(dirname "$0")/.."

gofer=dist/gofer
command -v curl >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null
[[ -x "$gofer" ]] || { echo "test-image: no $gofer; run scripts/release.sh --image first" >&2; exit 1; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
name="gofer-image-test-$$"
export GOFER_API_URL="http://127.0.0.1:$port" NO_COLOR=1
# Pipeline programs build beside the other tests' ones.
export CARGO_TARGET_DIR="$PWD/target/it-pipelines"

# As an operator starts it (deploy/Containerfile): production mode, the secret key mounted as a file.
key_dir=$(mktemp -d)
python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())' > "$key_dir/secret.key"
chmod 0444 "$key_dir/secret.key"
docker run -d --name "$name" --network host -v /var/run/docker.sock:/var/run/docker.sock \
  -v "$key_dir/secret.key:/run/secrets/gofer-secret-key:ro" \
  -e GOFER_SERVER__BIND_ADDRESS="0.0.0.0:$port" -e GOFER_EXTERNAL_EVENTS__ENABLED=false gofer:latest >/dev/null
cleanup() {
  local status=$?
  if [[ $status -ne 0 ]]; then
    echo "test-image: FAILED; the server's log:" >&2
    docker logs "$name" 2>&1 | tail -40 >&2 || true
  fi
  docker rm -f -v "$name" >/dev/null 2>&1 || true
  rm -rf "$key_dir"
  exit $status
}
trap cleanup EXIT

for _ in $(seq 1 200); do
  [[ "$(curl -s -o /dev/null -w '%{http_code}' "$GOFER_API_URL/api/health")" == 200 ]] && break
  [[ "$(docker inspect -f '{{.State.Running}}' "$name")" == true ]] || { echo "test-image: the server exited" >&2; exit 1; }
  sleep 0.1
done
# Production mode: nothing without a token; the first one comes from bootstrap, inside the container.
if "$gofer" pipeline list >/dev/null 2>&1; then
  echo "test-image: the image let a request in without a token" >&2
  exit 1
fi
GOFER_TOKEN=$(docker exec "$name" /gofer token bootstrap --api-url "http://127.0.0.1:$port" --output json \
  | sed -n 's/.*"secret": "\(.*\)".*/\1/p')
export GOFER_TOKEN
[[ -n "$GOFER_TOKEN" ]] || { echo "test-image: token bootstrap gave no secret" >&2; exit 1; }
"$gofer" pipeline list >/dev/null

# The example DAG as it is written: `test` exits 3, so `publish` is skipped and `on-failure` runs.
echo "== test-image: Gofer runs in the container; deploying and running examples/dag" >&2
"$gofer" pipeline deploy examples/dag >/dev/null 2>&1
run=$("$gofer" run start dag --output json | sed -n 's/.*"run_id": \([0-9]*\).*/\1/p')
"$gofer" run get dag "$run" --follow >/dev/null 2>&1 || true
outcome=$("$gofer" run get dag "$run" | awk '$1 != "TASK" && NF >= 3 && $2 == "complete" { printf "%s=%s/%s ", $1, $3, $4 }')
expected="checkout=successful/0 lint=successful/0 on-failure=successful/0 publish=skipped/- report=successful/0 test=failed/3 "
if [[ "$outcome" != "$expected" ]]; then
  echo "test-image: run $run of dag ended '$outcome', expected '$expected'" >&2
  "$gofer" run get dag "$run" >&2 || true
  exit 1
fi
logged=$("$gofer" task logs dag "$run" checkout | wc -c)
[[ "$logged" -gt 0 ]] || { echo "test-image: the checkout task logged nothing" >&2; exit 1; }
version=$(docker run --rm gofer:latest --version)
echo "test-image: ok — $version, FROM scratch, ran dag run $run on the host's engine: $outcome($logged bytes of checkout log)" >&2
