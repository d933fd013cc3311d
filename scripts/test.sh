#!/usr/bin/env bash
# The one command that runs the tests: local services up, binaries built, every test run.
# Extra arguments go to `cargo test` (for example a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/services.sh
bash scripts/browser.sh
cargo build --workspace --bins
cargo test --workspace "$@"
