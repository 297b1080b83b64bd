#!/usr/bin/env bash
# A dedicated, throwaway PostgreSQL cluster for the tests (never the system one).
#
#   scripts/test-pg.sh start    initdb + start (or reuse a healthy one); writes the env file
#   scripts/test-pg.sh stop     stop it and delete its directory and the env file
#   scripts/test-pg.sh status   exit 0 when the cluster of the env file is up and healthy
#   scripts/test-pg.sh env      print the env file (eval "$(scripts/test-pg.sh env)")
#
# The env file (default target/test-pg.env, override with POSTERN_TEST_PG_ENV_FILE) exports:
#   POSTERN_TEST_PG_HOST        127.0.0.1
#   POSTERN_TEST_PG_PORT        TCP port (also the port of the unix socket)
#   POSTERN_TEST_PG_SOCKET_DIR  unix socket directory (trust auth for every role)
#   POSTERN_TEST_PG_SUPERUSER   postern_test
#   POSTERN_TEST_PG_SUPERPASS   its password (for TCP, SCRAM)
#   POSTERN_TEST_PG_CA          CA certificate of the server certificate (SAN 127.0.0.1, localhost)
#   POSTERN_TEST_PG_BIN         bin directory with psql, pgbench, pg_ctl…
#   POSTERN_TEST_PG_DATA        data directory (PGDATA)
#   POSTERN_TEST_PG_DIR         the temporary directory holding all of the above
#   POSTERN_TEST_PG_LOG         server log file
#
# Client authentication (pg_hba.conf), TCP on 127.0.0.1 only:
#   members of group role pt_md5_users   -> md5 (give them an md5 verifier:
#                                            SET password_encryption = 'md5' before CREATE ROLE)
#   members of group role pt_tls_users   -> scram-sha-256 over TLS only; rejected without TLS
#   everyone else                        -> scram-sha-256 (TLS optional)
#   unix socket                          -> trust
#
# As root, initdb/pg_ctl run as the unprivileged OS user "postgres" (created when missing).
# Otherwise they run as the calling user.
#
# POSTERN_TEST_PG_MAX_CONNECTIONS (default 300) sets max_connections of a cluster this script
# creates; a reused cluster keeps its own.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# Temporary directories of this service are "$TEMP_PREFIX.XXXXXX" (remove_dir deletes no other).
TEMP_PREFIX="postern-test-pg"

ENV_FILE="${POSTERN_TEST_PG_ENV_FILE:-$POSTERN_ROOT/target/test-pg.env}"
SUPERUSER="postern_test"
PG_OS_USER="postgres"

# Runs a command as the cluster owner, from a directory that owner can enter. The lock's
# file descriptor is closed so that the postmaster does not inherit (and hold) the lock.
as_owner() {
    if ((EUID == 0)); then
        (cd / && runuser -u "$PG_OS_USER" -- "$@" 9>&-)
    else
        (cd / && "$@" 9>&-)
    fi
}

ensure_os_user() {
    ((EUID == 0)) || return 0
    if ! id -u "$PG_OS_USER" >/dev/null 2>&1; then
        log "creating OS user $PG_OS_USER"
        useradd --system --user-group --home-dir /var/lib/postgresql --no-create-home \
            --shell /bin/bash "$PG_OS_USER"
    fi
}

healthy() {
    load_env || return 1
    [[ -d "${POSTERN_TEST_PG_DATA:-}" && -f "${POSTERN_TEST_PG_CA:-}" ]] || return 1
    # shellcheck disable=SC2153 # set by the env file
    "$POSTERN_TEST_PG_BIN/psql" -X -q -At -h "$POSTERN_TEST_PG_SOCKET_DIR" \
        -p "$POSTERN_TEST_PG_PORT" -U "$POSTERN_TEST_PG_SUPERUSER" -d postgres \
        -c 'select 1' >/dev/null 2>&1
}

cmd_stop() {
    if ! load_env; then
        log "test-pg: no env file ($ENV_FILE): nothing to stop"
        return 0
    fi
    local data="${POSTERN_TEST_PG_DATA:-}" bin="${POSTERN_TEST_PG_BIN:-}"
    if [[ -n "$data" && -f "$data/postmaster.pid" ]]; then
        log "test-pg: stopping cluster in $data"
        if ! as_owner "$bin/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null 2>&1; then
            as_owner "$bin/pg_ctl" -D "$data" -m immediate -w -t 10 stop >/dev/null 2>&1 || true
            local pid
            pid="$(head -n1 "$data/postmaster.pid" 2>/dev/null || true)"
            if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
                kill -KILL "$pid" 2>/dev/null || true
            fi
        fi
    fi
    [[ -n "${POSTERN_TEST_PG_DIR:-}" && -d "$POSTERN_TEST_PG_DIR" ]] && remove_dir "$POSTERN_TEST_PG_DIR"
    rm -f -- "$ENV_FILE"
    log "test-pg: stopped"
}

# A parent for the cluster directory that the cluster owner can reach.
pick_tmp_parent() {
    local parent="${TMPDIR:-/tmp}"
    if ((EUID == 0)) && ! runuser -u "$PG_OS_USER" -- test -x "$parent" 2>/dev/null; then
        warn "$PG_OS_USER cannot enter $parent; using /tmp"
        parent="/tmp"
    fi
    printf '%s\n' "$parent"
}


# Sets STARTED=1 on success. Called as a plain command (never in a condition), so that
# `set -e` stays in force inside; a failed server start (port taken) returns with STARTED=0.
STARTED=0
start_once() {
    STARTED=0
    local bin="$1" parent dir data sock port pass
    parent="$(pick_tmp_parent)"
    dir="$(mktemp -d "$parent/$TEMP_PREFIX.XXXXXX")"
    chmod 0755 "$dir"
    data="$dir/data"
    sock="$dir/sock"
    mkdir -m 0700 "$data"
    mkdir -m 0755 "$sock"
    pass="$(openssl rand -hex 16)"
    (umask 077 && printf '%s\n' "$pass" >"$dir/superpass")

    make_test_certs "$dir" "Postern test PostgreSQL CA"
    cp "$dir/certs.tmp/ca.crt" "$dir/ca.crt"
    chmod 0644 "$dir/ca.crt"
    if ((EUID == 0)); then
        chown -R "$PG_OS_USER:" "$dir"
    fi

    log "test-pg: initdb in $data"
    if ! as_owner "$bin/initdb" -D "$data" -U "$SUPERUSER" --pwfile="$dir/superpass" \
        --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C \
        --no-sync >"$dir/initdb.log" 2>&1; then
        cat "$dir/initdb.log" >&2
        remove_dir "$dir"
        die "initdb failed"
    fi
    rm -f "$dir/superpass"

    # Certificates into the data directory (the key must be 0600 and owned by the server user).
    install -m 0600 "$dir/certs.tmp/server.key" "$data/server.key"
    install -m 0644 "$dir/certs.tmp/server.crt" "$data/server.crt"
    install -m 0644 "$dir/certs.tmp/ca.crt" "$data/ca.crt"
    rm -rf "$dir/certs.tmp"

    port="$(free_port)"
    cat >>"$data/postgresql.conf" <<EOF

# ---- scripts/test-pg.sh ----
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$sock'
max_connections = ${POSTERN_TEST_PG_MAX_CONNECTIONS:-300}
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
password_encryption = 'scram-sha-256'
# Throwaway cluster: durability is not needed.
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
log_connections = off
EOF
    cat >"$data/pg_hba.conf" <<'EOF'
# scripts/test-pg.sh: first match wins.
# TYPE     DATABASE USER           ADDRESS        METHOD
local      all      all                           trust
host       all      +pt_md5_users  127.0.0.1/32   md5
hostssl    all      +pt_tls_users  127.0.0.1/32   scram-sha-256
hostnossl  all      +pt_tls_users  127.0.0.1/32   reject
host       all      all            127.0.0.1/32   scram-sha-256
EOF
    if ((EUID == 0)); then
        chown "$PG_OS_USER:" "$data"/server.* "$data/ca.crt" "$data/postgresql.conf" "$data/pg_hba.conf"
    fi

    log "test-pg: starting on 127.0.0.1:$port (socket $sock)"
    if ! as_owner "$bin/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -t 60 start >/dev/null 2>&1; then
        tail -n 20 "$dir/postgres.log" >&2 || true
        as_owner "$bin/pg_ctl" -D "$data" -m immediate stop >/dev/null 2>&1 || true
        remove_dir "$dir"
        return 0
    fi

    "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$sock" -p "$port" -U "$SUPERUSER" -d postgres <<'EOF' >/dev/null
CREATE ROLE pt_md5_users NOLOGIN;
CREATE ROLE pt_tls_users NOLOGIN;
EOF

    write_env <<EOF
# Written by scripts/test-pg.sh start; removed by scripts/test-pg.sh stop.
export POSTERN_TEST_PG_HOST='127.0.0.1'
export POSTERN_TEST_PG_PORT='$port'
export POSTERN_TEST_PG_SOCKET_DIR='$sock'
export POSTERN_TEST_PG_SUPERUSER='$SUPERUSER'
export POSTERN_TEST_PG_SUPERPASS='$pass'
export POSTERN_TEST_PG_CA='$dir/ca.crt'
export POSTERN_TEST_PG_BIN='$bin'
export POSTERN_TEST_PG_DATA='$data'
export POSTERN_TEST_PG_DIR='$dir'
export POSTERN_TEST_PG_LOG='$dir/postgres.log'
EOF
    STARTED=1
    log "test-pg: ready; env file $ENV_FILE"
}

cmd_start() {
    if healthy; then
        log "test-pg: reusing running cluster on port $POSTERN_TEST_PG_PORT ($ENV_FILE)"
        return 0
    fi
    if [[ -f "$ENV_FILE" ]]; then
        log "test-pg: env file points to a dead or broken cluster; cleaning it up"
        cmd_stop
    fi
    local bin
    bin="$(pg_bin_dir)" || die "PostgreSQL server binaries not found: run scripts/ensure-deps.sh"
    command -v openssl >/dev/null 2>&1 || die "openssl not found: run scripts/ensure-deps.sh"
    command -v python3 >/dev/null 2>&1 || die "python3 not found: run scripts/ensure-deps.sh"
    ensure_os_user
    # The port is picked before the server binds it: retry if someone took it meanwhile.
    local attempt
    for attempt in 1 2 3; do
        start_once "$bin"
        ((STARTED)) && return 0
        warn "test-pg: start attempt $attempt failed"
    done
    die "could not start the test PostgreSQL cluster"
}

case "${1:-}" in
start) with_lock cmd_start ;;
stop) with_lock cmd_stop ;;
status)
    if healthy; then
        log "test-pg: running on port $POSTERN_TEST_PG_PORT"
    else
        log "test-pg: not running"
        exit 1
    fi
    ;;
env)
    load_env || die "no env file ($ENV_FILE): run scripts/test-pg.sh start"
    grep '^export ' "$ENV_FILE"
    ;;
*)
    sed -n '2,7p' "$0" >&2
    exit 2
    ;;
esac
