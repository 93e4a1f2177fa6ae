#!/usr/bin/env bash
# Installs what is missing, then runs the whole test suite against throwaway PostgreSQL
# clusters and nats-servers (never the machine's own services).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --workspace --locked --all-targets
cargo test --workspace --locked -- --test-threads "${TRIBUTARY_TEST_THREADS:-3}"
