#!/usr/bin/env bash
# Installs the Prometheus project's Python client (from PyPI) when it is missing: the metrics tests parse what Gofer
# exports with its text-format parser (and read the example alert rules with PyYAML); jsonschema checks what the SDKs
# write against the published pipeline-config schema.
set -euo pipefail
if python3 -c 'import prometheus_client.parser, yaml, jsonschema' >/dev/null 2>&1; then
  exit 0
fi
echo "ensure-prometheus-parser: installing prometheus_client from PyPI" >&2
python3 -m pip install --quiet --disable-pip-version-check 'prometheus_client>=0.20,<1' 'PyYAML>=6,<7' 'jsonschema>=4.18,<5'
python3 -c 'import prometheus_client.parser, yaml, jsonschema'
