#!/usr/bin/env bash
# Makes sure Debian's Chromium and its WebDriver (chromedriver) are installed, for the web UI's browser tests.
set -euo pipefail

if command -v chromedriver >/dev/null 2>&1 && [ -x /usr/bin/chromium ]; then
  exit 0
fi
echo "ensure-chromium: installing chromium and chromium-driver" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq chromium chromium-driver fonts-dejavu-core >/dev/null
