#!/usr/bin/env bash
# Makes sure a Docker engine is running and that the test image `busybox:latest` exists.
# Installs docker.io and busybox-static from Debian when they are missing, starts dockerd in the
# background when no engine answers, and builds busybox:latest locally (no registry is needed).
set -euo pipefail

log() { echo "ensure-docker: $*" >&2; }

need_install=()
command -v dockerd >/dev/null 2>&1 || need_install+=(docker.io)
[ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || need_install+=(busybox-static)
if [ ${#need_install[@]} -gt 0 ]; then
  log "installing ${need_install[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "${need_install[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  # An engine that is still shutting down holds its pid file: let it finish first.
  for _ in $(seq 1 120); do
    pgrep -x dockerd >/dev/null 2>&1 || break
    sleep 0.5
  done
  log "starting dockerd (log: /tmp/dockerd.log)"
  nohup dockerd >/tmp/dockerd.log 2>&1 &
  for _ in $(seq 1 120); do
    docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || { log "dockerd did not come up; see /tmp/dockerd.log"; tail -20 /tmp/dockerd.log >&2; exit 1; }
fi

if ! docker image inspect busybox:latest >/dev/null 2>&1; then
  log "building busybox:latest from the host's busybox-static"
  bb=$(command -v busybox)
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  mkdir -p "$root/bin" "$root/tmp" "$root/etc"
  cp "$bb" "$root/bin/busybox"
  for applet in $("$bb" --list); do
    [ "$applet" = busybox ] && continue
    ln -sf busybox "$root/bin/$applet"
  done
  echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
  tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/bin' --change 'CMD ["sh"]' - busybox:latest >/dev/null
fi
log "docker engine ready, busybox:latest present"
