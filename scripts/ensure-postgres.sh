#!/usr/bin/env bash
# Makes sure PostgreSQL's server programs (initdb, pg_ctl, postgres) and its unprivileged `postgres` user exist: the
# PostgreSQL storage tests start throwaway servers with them. Installs Debian's `postgresql` when they are missing.
set -euo pipefail
have() { command -v "$1" >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/"$1" >/dev/null 2>&1; }
if have initdb && have pg_ctl && id postgres >/dev/null 2>&1; then
  exit 0
fi
echo "ensure-postgres: installing postgresql from Debian" >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
have initdb && have pg_ctl && id postgres >/dev/null 2>&1 || { echo "ensure-postgres: still no initdb/pg_ctl" >&2; exit 1; }
