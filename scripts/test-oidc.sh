#!/usr/bin/env bash
# A throwaway OpenID Connect provider for the single sign-on tests: the npm package
# oidc-provider (a certified implementation) configured by tests/oidc/provider.mjs.
#
#   scripts/test-oidc.sh start    install its packages when missing, start it (or reuse a healthy one)
#   scripts/test-oidc.sh stop     stop it and delete its directory and the env file
#   scripts/test-oidc.sh status   exit 0 when the provider of the env file answers
#
# The env file (default target/test-oidc.env, override with POSTERN_TEST_OIDC_ENV_FILE) exports:
#   POSTERN_TEST_OIDC_ISSUER     http://127.0.0.1:PORT
#   POSTERN_TEST_OIDC_CLIENT_ID  postern-cli (public native client: PKCE, loopback redirect, device flow)
#   POSTERN_TEST_OIDC_ACCOUNTS   directory of people: <login>.json = {"groups": [...]}, any password
#   POSTERN_TEST_OIDC_DIR        the temporary directory (accounts, log, pid)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# Temporary directories of this service are "$TEMP_PREFIX.XXXXXX" (remove_dir deletes no other).
TEMP_PREFIX="postern-test-oidc"

ENV_FILE="${POSTERN_TEST_OIDC_ENV_FILE:-$POSTERN_ROOT/target/test-oidc.env}"
APP="$POSTERN_ROOT/tests/oidc"

answers() {
    python3 - "$1" <<'EOF'
import json, sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1] + "/.well-known/openid-configuration", timeout=3) as r:
        sys.exit(0 if json.load(r).get("issuer") == sys.argv[1] else 1)
except Exception:
    sys.exit(1)
EOF
}

healthy() {
    load_env || return 1
    answers "$POSTERN_TEST_OIDC_ISSUER"
}

cmd_stop() {
    if ! load_env; then
        log "test-oidc: no env file ($ENV_FILE): nothing to stop"
        return 0
    fi
    local dir="${POSTERN_TEST_OIDC_DIR:-}"
    if [[ -n "$dir" && -f "$dir/provider.pid" ]]; then
        stop_pid "$(head -n1 "$dir/provider.pid")" 10
    fi
    [[ -n "$dir" && -d "$dir" ]] && remove_dir "$dir"
    rm -f -- "$ENV_FILE"
    log "test-oidc: stopped"
}

install_packages() {
    if [[ -d "$APP/node_modules/oidc-provider" && "$APP/node_modules/.package-lock.json" -nt "$APP/package-lock.json" ]]; then
        return 0
    fi
    log "test-oidc: installing the provider's packages (npm ci)"
    (cd "$APP" && npm ci --no-audit --no-fund --loglevel=error) >&2 ||
        die "npm ci failed in $APP"
}

STARTED=0
start_once() {
    STARTED=0
    local dir port pid
    dir="$(mktemp -d "${TMPDIR:-/tmp}/$TEMP_PREFIX.XXXXXX")"
    mkdir -p "$dir/accounts"
    port="$(free_port)"
    log "test-oidc: starting the provider on 127.0.0.1:$port"
    # fd 9 (the lock) closed: the daemon must not hold it.
    nohup node "$APP/provider.mjs" "$port" "$dir/accounts" >"$dir/provider.log" 2>&1 9>&- &
    pid=$!
    echo "$pid" >"$dir/provider.pid"
    if ! wait_for_port "$port" 30 || ! answers "http://127.0.0.1:$port"; then
        tail -n 20 "$dir/provider.log" >&2 || true
        stop_pid "$pid" 5
        remove_dir "$dir"
        return 0
    fi
    write_env <<EOF
# Written by scripts/test-oidc.sh start; removed by scripts/test-oidc.sh stop.
export POSTERN_TEST_OIDC_ISSUER='http://127.0.0.1:$port'
export POSTERN_TEST_OIDC_CLIENT_ID='postern-cli'
export POSTERN_TEST_OIDC_ACCOUNTS='$dir/accounts'
export POSTERN_TEST_OIDC_DIR='$dir'
EOF
    STARTED=1
    log "test-oidc: ready; env file $ENV_FILE"
}

cmd_start() {
    if healthy; then
        log "test-oidc: reusing running provider at $POSTERN_TEST_OIDC_ISSUER ($ENV_FILE)"
        return 0
    fi
    if [[ -f "$ENV_FILE" ]]; then
        log "test-oidc: env file points to a dead provider; cleaning it up"
        cmd_stop
    fi
    command -v node >/dev/null 2>&1 || die "node not found: run scripts/ensure-deps.sh"
    command -v npm >/dev/null 2>&1 || die "npm not found: run scripts/ensure-deps.sh"
    local major
    major="$(node -p 'process.versions.node.split(".")[0]')"
    ((major >= 20)) || die "node $major is too old for oidc-provider: install Node.js 20 or later"
    install_packages
    local attempt
    for attempt in 1 2 3; do
        start_once
        ((STARTED)) && return 0
        warn "test-oidc: start attempt $attempt failed"
    done
    die "could not start the test OpenID Connect provider"
}

case "${1:-}" in
start) with_lock cmd_start ;;
stop) with_lock cmd_stop ;;
status)
    if healthy; then
        log "test-oidc: running at $POSTERN_TEST_OIDC_ISSUER"
    else
        log "test-oidc: not running"
        exit 1
    fi
    ;;
*)
    sed -n '2,8p' "$0" >&2
    exit 2
    ;;
esac
