#!/usr/bin/env bash
# THE test command: everything CI runs, on a fresh machine or a developer's.
#
#   scripts/test.sh                     all steps
#   scripts/test.sh -- <runner args>    extra arguments for the test runner, e.g.
#                                       scripts/test.sh -- -p postern-pg   (drops --workspace)
#                                       scripts/test.sh -- -E 'test(scram)'     (nextest filter)
#   scripts/test.sh --no-lint [-- …]    skip cargo fmt and clippy (quick local iterations)
#
# Steps: install missing tools (scripts/ensure-deps.sh) -> cargo build --workspace
# --all-targets -> start a throwaway PostgreSQL cluster (scripts/test-pg.sh), LDAP server
# (scripts/test-ldap.sh), OpenID provider (scripts/test-oidc.sh) and MariaDB server
# (scripts/test-mariadb.sh) and OpenSSH server (scripts/test-sshd.sh); each stopped on exit unless
# it was already running before -> cargo fmt --check -> cargo clippy -D warnings ->
# tests (cargo nextest when installed, else cargo test) -> doc tests (with nextest, when no
# runner args were given).
#
# Every step runs even when fmt or clippy fail, so one run reports everything; the exit code
# is the test runner's when it failed, else 1 when any other step failed, else 0.
#
# Environment:
#   NEXTEST_PROFILE=ci         nextest profile (.config/nextest.toml); .ci/run sets "ci"
#   POSTERN_TEST_PG_KEEP=1     leave the test cluster running at exit
#   POSTERN_TEST_PG_ENV_FILE   where the cluster's env file goes (default target/test-pg.env)
#   POSTERN_TEST_PYLIB         where scripts/ensure-pylibs.sh puts PyMySQL (default target/pylib)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$POSTERN_ROOT"

lint=1
runner_args=()
while (($#)); do
    case "$1" in
    --no-lint) lint=0 ;;
    --)
        shift
        runner_args=("$@")
        break
        ;;
    -h | --help)
        sed -n '2,22p' "$0"
        exit 0
        ;;
    *) die "unknown argument '$1' (runner arguments go after --)" ;;
    esac
    shift
done

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-always}"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
ENV_FILE="${POSTERN_TEST_PG_ENV_FILE:-$POSTERN_ROOT/target/test-pg.env}"
export POSTERN_TEST_PG_ENV_FILE="$ENV_FILE"

start_time=$SECONDS
results=()
failed_other=0
test_rc=0
step_start=0

step() {
    step_start=$SECONDS
    section "$*"
}
# Records the outcome of the current step: record NAME RC.
record() {
    local name="$1" rc="$2" took=$((SECONDS - step_start))
    if ((rc == 0)); then
        results+=("ok      ${took}s  $name")
    else
        results+=("FAILED  ${took}s  $name (exit $rc)")
    fi
}
summary() {
    section "summary ($((SECONDS - start_time))s)"
    local r
    for r in "${results[@]}"; do
        printf '  %s\n' "$r" >&2
    done
}

# ---- service life cycle: stop at exit only what this run started ---------------------------
# Services (scripts/test-NAME.sh) this run started, newest first.
started=()
cleanup() {
    [[ "${POSTERN_TEST_PG_KEEP:-0}" == 1 ]] && return
    local name
    for name in "${started[@]}"; do
        scripts/test-"$name".sh stop || true
    done
}
# Starts scripts/test-NAME.sh (one already running is reused and left running) and sources
# the env file it writes (POSTERN_TEST_<VAR>_ENV_FILE, default target/test-NAME.env).
# Usage: service NAME VAR DESCRIPTION
service() {
    local name="$1" var="POSTERN_TEST_${2}_ENV_FILE" what="$3" env_file
    if scripts/test-"$name".sh status 2>/dev/null; then
        log "an already running test $what is reused and left running"
    else
        started=("$name" "${started[@]}")
    fi
    scripts/test-"$name".sh start
    env_file="${!var:-$POSTERN_ROOT/target/test-$name.env}"
    # shellcheck disable=SC1090
    source "$env_file"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- 1. tools ------------------------------------------------------------------------------
step "1/7 ensure test tools (scripts/ensure-deps.sh)"
scripts/ensure-deps.sh
# Python client libraries (PyMySQL) for the tests, from PyPI into target/pylib.
POSTERN_TEST_PYLIB="$(scripts/ensure-pylibs.sh)"
export POSTERN_TEST_PYLIB
record "ensure-deps" 0

# ---- 2. build --------------------------------------------------------------------------------
step "2/7 build (cargo build --workspace --all-targets)"
rc=0
cargo build --workspace --all-targets || rc=$?
record "build" "$rc"
if ((rc != 0)); then
    summary
    log "build failed: not running the tests"
    exit "$rc"
fi

# ---- 3. PostgreSQL -----------------------------------------------------------------------------
step "3/7 test PostgreSQL cluster (scripts/test-pg.sh start)"
service pg PG "PostgreSQL cluster"
log "upstream: 127.0.0.1:$POSTERN_TEST_PG_PORT, socket $POSTERN_TEST_PG_SOCKET_DIR, bin $POSTERN_TEST_PG_BIN"
# The directory for LDAP logins, the single sign-on provider, the MariaDB server behind the
# MySQL port: same life cycle.
service ldap LDAP "LDAP server"
log "directory: $POSTERN_TEST_LDAP_URL"
service oidc OIDC "OpenID provider"
log "identity provider: $POSTERN_TEST_OIDC_ISSUER"
service mariadb MARIADB "MariaDB server"
log "MariaDB: 127.0.0.1:$POSTERN_TEST_MARIADB_PORT"
service sshd SSHD "OpenSSH server"
log "sshd: 127.0.0.1:$POSTERN_TEST_SSHD_PORT (account $POSTERN_TEST_SSHD_USER)"
record "test cluster, directory, identity provider, MariaDB and sshd" 0

# ---- 4. fmt + clippy -----------------------------------------------------------------------
if ((lint)); then
    step "4/7 cargo fmt --all -- --check"
    rc=0
    cargo fmt --all -- --check || rc=$?
    record "fmt" "$rc"
    ((rc == 0)) || failed_other=1

    step "5/7 cargo clippy --workspace --all-targets -- -D warnings"
    rc=0
    cargo clippy --workspace --all-targets -- -D warnings || rc=$?
    record "clippy" "$rc"
    ((rc == 0)) || failed_other=1
else
    log "(fmt and clippy skipped: --no-lint)"
fi

# ---- 6. tests ------------------------------------------------------------------------------
# `--workspace` would override a package selection given after `--`: drop it then.
scope=(--workspace)
for a in "${runner_args[@]}"; do
    case "$a" in
    -p | -p?* | --package | --package=*) scope=() ;;
    esac
done
if cargo nextest --version >/dev/null 2>&1; then
    profile="${NEXTEST_PROFILE:-default}"
    step "6/7 tests (cargo nextest run --profile $profile ${scope[*]-} --no-fail-fast ${runner_args[*]-})"
    test_rc=0
    cargo nextest run --profile "$profile" "${scope[@]}" --no-fail-fast "${runner_args[@]}" || test_rc=$?
    record "tests (nextest)" "$test_rc"
    # nextest does not run doc tests.
    if ((${#runner_args[@]} == 0)); then
        step "7/7 doc tests (cargo test --workspace --doc)"
        rc=0
        cargo test --workspace --doc --no-fail-fast || rc=$?
        record "doc tests" "$rc"
        ((rc == 0)) || failed_other=1
    fi
else
    step "6/7 tests (cargo test ${scope[*]-} --no-fail-fast ${runner_args[*]-}; cargo-nextest not installed)"
    test_rc=0
    cargo test "${scope[@]}" --no-fail-fast "${runner_args[@]}" || test_rc=$?
    record "tests (cargo test)" "$test_rc"
fi

summary
if ((test_rc != 0)); then
    exit "$test_rc"
fi
if ((failed_other)); then
    exit 1
fi
log "all green"
