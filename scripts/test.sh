#!/usr/bin/env bash
# Installs what is missing, then runs the whole test suite against throwaway PostgreSQL
# clusters and nats-servers (never the machine's own services).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# The Python example consumer (examples/python) runs in tests/domain_events.rs when nats-py and
# protobuf import; once they are installed here, that test may not skip it.
if python3 -c "import nats, google.protobuf" >/dev/null 2>&1 \
    || python3 -m pip install --quiet --disable-pip-version-check "nats-py==2.16.0" "protobuf==7.36.2" >/dev/null 2>&1; then
    python3 -c "import nats, google.protobuf" >/dev/null 2>&1 && export TRIBUTARY_REQUIRE_PYTHON=1
else
    echo "warning: cannot install nats-py and protobuf; the Python example consumer will be skipped" >&2
fi
# promtool (extracted by install-deps.sh): once there, tests/alert_rules.rs may not skip.
PROMTOOL_DIR="${TRIBUTARY_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tributary/tools}"
if command -v promtool >/dev/null 2>&1 || [ -x "$PROMTOOL_DIR/promtool" ]; then
    export PATH="$PATH:$PROMTOOL_DIR"
    export TRIBUTARY_REQUIRE_PROMTOOL=1
else
    echo "warning: promtool not found; the alert-rule tests will be skipped" >&2
fi
# `--features tributary/demo`: the tests run `tributary demo` and `tributary sandbox`, which the
# production build (default features) leaves out.
cargo build --workspace --locked --all-targets --features tributary/demo
cargo test --workspace --locked --no-fail-fast --features tributary/demo -- --test-threads "${TRIBUTARY_TEST_THREADS:-3}"
