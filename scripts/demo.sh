#!/usr/bin/env bash
# Installs what is missing, then runs `tributary demo`: a local PostgreSQL (ERP and POS
# databases), nats-server with JetStream, the bridge and a retail write load. Ctrl-C stops
# and cleans up everything.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
exec cargo run --release --locked -p tributary --features demo -- demo "$@"
