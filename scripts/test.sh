#!/usr/bin/env bash
# The one command that runs the tests: local services up, binaries built, every test run.
# Extra arguments go to `cargo test` as a test name filter. The fault tests run last,
# on their own, with their output shown.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/services.sh

# The fault tests put the deployment's nginx configuration in front of two ingests.
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    echo "installing nginx for the fault tests"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null \
        || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
fi
bash scripts/browser.sh
cargo build --workspace --bins
cargo test --workspace "$@" -- --skip fault_
# The fault tests print their counts (sent, 200, 503, stored, duplicates, lost), so their
# output is shown even when they pass.
cargo test -p dlr-tests --test faults "$@" -- --nocapture
