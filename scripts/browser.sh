#!/usr/bin/env bash
# Makes sure Debian's Chromium and ChromeDriver, which the browser test drives, are
# installed. Idempotent: it does nothing when both binaries are already there.
set -euo pipefail

if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
    exit 0
fi

echo "installing chromium and chromium-driver for the browser test"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y chromium chromium-driver
