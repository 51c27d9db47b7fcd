#!/usr/bin/env bash
# Builds Gofer's release artefacts into dist/:
#   dist/gofer                 one fully static binary (glibc linked in with +crt-static), stripped, carrying its
#                              version and git commit (`gofer --version`)
#   dist/completions/          bash, zsh, fish, PowerShell and elvish completions
#   dist/man/                  man pages (gofer.1 and one per subcommand)
# and checks the binary: `file` must say static, `ldd` must find nothing to load, and it must run. Exits non-zero
# (and the test command fails) if the binary became dynamic.
#
#   bash scripts/release.sh                          # the release profile (thin LTO, one codegen unit: ~12 min here)
#   bash scripts/release.sh --profile static-check   # the same linking, built fast (the test command uses it)
#   bash scripts/release.sh --image                  # also the container image gofer:<version> (FROM scratch)
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
image=false
while [[ $# -gt 0 ]]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --image) image=true; shift ;;
    *) echo "release: unknown argument $1 (use --profile NAME, --image)" >&2; exit 2 ;;
  esac
done

# What the checks below use, on a fresh Debian machine too.
missing=()
command -v file >/dev/null || missing+=(file)
command -v strip >/dev/null || missing+=(binutils)
command -v ldd >/dev/null || missing+=(libc-bin)
$image && [[ ! -f /etc/ssl/certs/ca-certificates.crt ]] && missing+=(ca-certificates)
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "release: installing ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

target=$(rustc -vV | sed -n 's/^host: //p')
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [[ "$commit" != unknown ]] && ! git diff --quiet HEAD -- 2>/dev/null; then
  commit="$commit-dirty"
fi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

echo "== release: building gofer $version (commit $commit), profile $profile, static for $target" >&2
# An explicit --target keeps RUSTFLAGS off build scripts and proc-macros (which must stay dynamic) and puts the
# static build in a directory of its own, beside the ordinary one.
GOFER_COMMIT="$commit" RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build -j2 --locked --profile "$profile" --target "$target" -p gofer --bin gofer
built="target/$target/$profile/gofer"
[[ "$profile" == dev ]] && built="target/$target/debug/gofer"

rm -rf dist && mkdir -p dist/completions dist/man
strip -o dist/gofer "$built"

described=$(file -b dist/gofer)
echo "file: $described" >&2
if [[ "$described" != *"statically linked"* && "$described" != *"static-pie linked"* ]]; then
  echo "release: dist/gofer is not statically linked ($described)" >&2
  exit 1
fi
loads=$(ldd dist/gofer 2>&1 || true)
if [[ "$loads" != *"statically linked"* && "$loads" != *"not a dynamic executable"* ]]; then
  echo "release: dist/gofer loads shared libraries (ldd):" >&2
  echo "$loads" >&2
  exit 1
fi
reported=$(dist/gofer --version)
if [[ "$reported" != "gofer $version (commit $commit)" ]]; then
  echo "release: dist/gofer --version says '$reported', expected 'gofer $version (commit $commit)'" >&2
  exit 1
fi

for shell in bash zsh fish powershell elvish; do
  dist/gofer completion "$shell" > "dist/completions/gofer.$shell"
done
dist/gofer man --dir dist/man

bytes=$(stat -c %s dist/gofer)
echo "release: dist/gofer is static, $reported, $((bytes / 1024 / 1024)) MiB ($bytes bytes) stripped" >&2

if $image; then
  certs=/etc/ssl/certs/ca-certificates.crt
  [[ -f "$certs" ]] || { echo "release: $certs is missing (apt-get install -y ca-certificates)" >&2; exit 1; }
  cp "$certs" dist/ca-certificates.crt
  docker build --quiet -f deploy/Containerfile -t "gofer:$version" -t gofer:latest dist >/dev/null
  echo "release: image gofer:$version (and gofer:latest), $(docker image inspect -f '{{.Size}}' gofer:latest) bytes" >&2
fi
