#!/usr/bin/env bash
# Installs moto's S3-compatible server (from PyPI) when it is missing; the object-store tests start it themselves.
set -euo pipefail
if command -v moto_server >/dev/null 2>&1; then
  exit 0
fi
echo "ensure-s3: installing moto[server] from PyPI" >&2
python3 -m pip install --quiet --disable-pip-version-check 'moto[server]>=5,<6'
command -v moto_server >/dev/null 2>&1 || { echo "ensure-s3: moto_server is not on PATH after installing" >&2; exit 1; }
