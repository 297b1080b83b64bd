#!/usr/bin/env bash
# A throwaway MariaDB server for the MySQL-protocol tests (never the system one).
#
#   scripts/test-mariadb.sh start    initialise and start one (or reuse a healthy one); writes the env file
#   scripts/test-mariadb.sh stop     stop it and delete its directory and the env file
#   scripts/test-mariadb.sh status   exit 0 when the server of the env file answers
#
# The env file (default target/test-mariadb.env, override with POSTERN_TEST_MARIADB_ENV_FILE)
# exports:
#   POSTERN_TEST_MARIADB_HOST        127.0.0.1
#   POSTERN_TEST_MARIADB_PORT        TCP port
#   POSTERN_TEST_MARIADB_SOCKET      unix socket (root logs in there without a password)
#   POSTERN_TEST_MARIADB_SUPERUSER   postern_test (all privileges, with grant option; TCP)
#   POSTERN_TEST_MARIADB_SUPERPASS   its password (mysql_native_password)
#   POSTERN_TEST_MARIADB_DIR         the temporary directory (data, socket, log)
#
# As root, mariadbd runs as the OS user "mysql" (created when missing).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# Temporary directories of this service are "$TEMP_PREFIX.XXXXXX" (remove_dir deletes no other).
TEMP_PREFIX="postern-test-mariadb"

ENV_FILE="${POSTERN_TEST_MARIADB_ENV_FILE:-$POSTERN_ROOT/target/test-mariadb.env}"
SUPERUSER="postern_test"
OS_USER="mysql"

bin_of() {
    local name p
    for name in "$@"; do
        for p in "$(command -v "$name" 2>/dev/null || true)" "/usr/sbin/$name" "/usr/bin/$name"; do
            [[ -n "$p" && -x "$p" ]] && { printf '%s\n' "$p"; return 0; }
        done
    done
    return 1
}

client() {
    local c
    c="$(bin_of mariadb mysql)" || return 1
    "$c" --no-defaults "$@"
}

healthy() {
    load_env || return 1
    client -h 127.0.0.1 -P "$POSTERN_TEST_MARIADB_PORT" -u "$POSTERN_TEST_MARIADB_SUPERUSER" \
        -p"$POSTERN_TEST_MARIADB_SUPERPASS" --connect-timeout=3 -e 'select 1' >/dev/null 2>&1
}

cmd_stop() {
    if ! load_env; then
        log "test-mariadb: no env file ($ENV_FILE): nothing to stop"
        return 0
    fi
    local dir="${POSTERN_TEST_MARIADB_DIR:-}"
    if [[ -n "$dir" && -f "$dir/mariadb.pid" ]]; then
        stop_pid "$(head -n1 "$dir/mariadb.pid")" 30
    fi
    [[ -n "$dir" && -d "$dir" ]] && remove_dir "$dir"
    rm -f -- "$ENV_FILE"
    log "test-mariadb: stopped"
}

STARTED=0
start_once() {
    STARTED=0
    local server="$1" install="$2" dir port pass user_args=()
    dir="$(mktemp -d "${TMPDIR:-/tmp}/$TEMP_PREFIX.XXXXXX")"
    chmod 0755 "$dir"
    mkdir -p "$dir/data"
    if ((EUID == 0)); then
        chown -R "$OS_USER:" "$dir"
        user_args=(--user="$OS_USER")
    fi
    pass="$(openssl rand -hex 16)"
    log "test-mariadb: initialising $dir/data"
    if ! "$install" --no-defaults "${user_args[@]}" --datadir="$dir/data" --auth-root-authentication-method=socket \
        --skip-test-db >"$dir/install.log" 2>&1; then
        cat "$dir/install.log" >&2
        remove_dir "$dir"
        die "mariadb-install-db failed"
    fi
    port="$(free_port)"
    log "test-mariadb: starting on 127.0.0.1:$port"
    # fd 9 (the lock) closed: the daemon must not hold it.
    nohup "$server" --no-defaults "${user_args[@]}" --datadir="$dir/data" --bind-address=127.0.0.1 \
        --port="$port" --socket="$dir/mariadb.sock" --pid-file="$dir/mariadb.pid" \
        --log-error="$dir/mariadb.log" --skip-name-resolve --innodb-buffer-pool-size=64M \
        --innodb-flush-log-at-trx-commit=0 --max-connections=300 >/dev/null 2>&1 9>&- &
    local i
    for ((i = 0; i < 300; i++)); do
        [[ -S "$dir/mariadb.sock" ]] && client -S "$dir/mariadb.sock" -u root -e 'select 1' >/dev/null 2>&1 && break
        sleep 0.1
    done
    if ! client -S "$dir/mariadb.sock" -u root -e 'select 1' >/dev/null 2>&1; then
        tail -n 20 "$dir/mariadb.log" >&2 || true
        [[ -f "$dir/mariadb.pid" ]] && stop_pid "$(head -n1 "$dir/mariadb.pid")" 10
        remove_dir "$dir"
        return 0
    fi
    client -S "$dir/mariadb.sock" -u root <<EOF
CREATE USER '$SUPERUSER'@'127.0.0.1' IDENTIFIED BY '$pass';
GRANT ALL PRIVILEGES ON *.* TO '$SUPERUSER'@'127.0.0.1' WITH GRANT OPTION;
EOF
    write_env <<EOF
# Written by scripts/test-mariadb.sh start; removed by scripts/test-mariadb.sh stop.
export POSTERN_TEST_MARIADB_HOST='127.0.0.1'
export POSTERN_TEST_MARIADB_PORT='$port'
export POSTERN_TEST_MARIADB_SOCKET='$dir/mariadb.sock'
export POSTERN_TEST_MARIADB_SUPERUSER='$SUPERUSER'
export POSTERN_TEST_MARIADB_SUPERPASS='$pass'
export POSTERN_TEST_MARIADB_DIR='$dir'
EOF
    if ! healthy; then
        cmd_stop
        return 0
    fi
    STARTED=1
    log "test-mariadb: ready; env file $ENV_FILE"
}

cmd_start() {
    if healthy; then
        log "test-mariadb: reusing running server on port $POSTERN_TEST_MARIADB_PORT ($ENV_FILE)"
        return 0
    fi
    if [[ -f "$ENV_FILE" ]]; then
        log "test-mariadb: env file points to a dead server; cleaning it up"
        cmd_stop
    fi
    local server install
    server="$(bin_of mariadbd mysqld)" || die "mariadbd not found: run scripts/ensure-deps.sh"
    install="$(bin_of mariadb-install-db mysql_install_db)" || die "mariadb-install-db not found: run scripts/ensure-deps.sh"
    if ((EUID == 0)) && ! id -u "$OS_USER" >/dev/null 2>&1; then
        useradd --system --user-group --no-create-home --shell /usr/sbin/nologin "$OS_USER"
    fi
    local attempt
    for attempt in 1 2 3; do
        start_once "$server" "$install"
        ((STARTED)) && return 0
        warn "test-mariadb: start attempt $attempt failed"
    done
    die "could not start the test MariaDB server"
}

case "${1:-}" in
start) with_lock cmd_start ;;
stop) with_lock cmd_stop ;;
status)
    if healthy; then
        log "test-mariadb: running on port $POSTERN_TEST_MARIADB_PORT"
    else
        log "test-mariadb: not running"
        exit 1
    fi
    ;;
*)
    sed -n '2,6p' "$0" >&2
    exit 2
    ;;
esac
