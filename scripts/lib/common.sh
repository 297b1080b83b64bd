# shellcheck shell=bash
# Helpers shared by scripts/*.sh and bench/*/run.sh. Source it; do not execute it.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

# Repository root (the directory holding the workspace Cargo.toml).
POSTERN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export POSTERN_ROOT

# Messages go to stderr so that stdout stays usable (e.g. `eval "$(scripts/test-pg.sh env)"`).
log() { printf '%s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# A section header: "==> title" (bold on a terminal).
section() {
    if [[ -t 2 ]]; then
        printf '\n\033[1m==> %s\033[0m\n' "$*" >&2
    else
        printf '\n==> %s\n' "$*" >&2
    fi
}

# Prints a TCP port on 127.0.0.1 that was free a moment ago.
free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# Prints the newest PostgreSQL bin directory holding initdb, pg_ctl, psql and pgbench.
# POSTERN_PG_BIN overrides the search. Fails when none is found.
pg_bin_dir() {
    if [[ -n "${POSTERN_PG_BIN:-}" ]]; then
        printf '%s\n' "$POSTERN_PG_BIN"
        return 0
    fi
    local dir found=""
    while IFS= read -r dir; do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" && -x "$dir/psql" && -x "$dir/pgbench" ]]; then
            found="$dir"
        fi
    done < <(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -type d -name bin 2>/dev/null | sort -V)
    if [[ -z "$found" ]]; then
        local pgc
        pgc="$(command -v pg_config 2>/dev/null || true)"
        if [[ -n "$pgc" ]]; then
            dir="$("$pgc" --bindir 2>/dev/null || true)"
            if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" && -x "$dir/psql" && -x "$dir/pgbench" ]]; then
                found="$dir"
            fi
        fi
    fi
    [[ -n "$found" ]] || return 1
    printf '%s\n' "$found"
}

# Waits until "$1" (a file) contains a line matching the extended regex "$2", at most "$3"
# seconds (default 30). Prints the first matching line. Fails on timeout, or early when the
# optional PID "$4" exits.
wait_for_line() {
    local file="$1" re="$2" timeout="${3:-30}" pid="${4:-}" line i
    for ((i = 0; i < timeout * 10; i++)); do
        if [[ -f "$file" ]] && line="$(grep -E -m1 -- "$re" "$file")"; then
            printf '%s\n' "$line"
            return 0
        fi
        if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        sleep 0.1
    done
    return 1
}

# Waits until something accepts TCP connections on 127.0.0.1:"$1", at most "$2" seconds.
wait_for_port() {
    local port="$1" timeout="${2:-30}"
    python3 - "$port" "$timeout" <<'EOF'
import socket, sys, time
port, deadline = int(sys.argv[1]), time.time() + float(sys.argv[2])
while time.time() < deadline:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
EOF
}

# Stops a process we started: SIGTERM, then SIGKILL after "$2" seconds (default 10).
stop_pid() {
    local pid="$1" grace="${2:-10}" i
    [[ -n "$pid" ]] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# Runs "$@" holding the lock file "$ENV_FILE.lock" (fd 9; at most 120 s wait), so that
# concurrent start/stop of a test service queue up. Daemons started inside must close fd 9.
with_lock() {
    mkdir -p "$(dirname "$ENV_FILE")"
    exec 9>"$ENV_FILE.lock"
    if command -v flock >/dev/null 2>&1; then
        flock -w 120 9 || die "timed out waiting for $ENV_FILE.lock"
    fi
    "$@"
}

# Makes a throwaway CA and a server certificate it signs (P-256; SAN 127.0.0.1 and localhost)
# in "$1"/certs.tmp: ca.crt, ca.key, server.crt, server.key. "$2" names the CA.
make_test_certs() {
    local dir="$1" ca_name="$2" tmp="$1/certs.tmp"
    mkdir -p "$tmp"
    # CA: P-256, v3, CA:TRUE.
    openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -keyout "$tmp/ca.key" -out "$tmp/ca.crt" -days 30 -sha256 \
        -subj "/CN=$ca_name" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" 2>/dev/null
    # Server certificate signed by the CA; SAN = 127.0.0.1 and localhost.
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -keyout "$tmp/server.key" -out "$tmp/server.csr" -subj "/CN=localhost" 2>/dev/null
    cat >"$tmp/server.ext" <<'EOF'
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
    openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.crt" -CAkey "$tmp/ca.key" \
        -set_serial "0x$(openssl rand -hex 8)" -days 30 -sha256 \
        -extfile "$tmp/server.ext" -out "$tmp/server.crt" 2>/dev/null
    openssl verify -CAfile "$tmp/ca.crt" "$tmp/server.crt" >/dev/null ||
        die "generated server certificate does not verify"
}

# Loads the test service's env file "$ENV_FILE" into this shell; fails when there is none.
# Writes stdin to $ENV_FILE atomically, readable by its owner only (it may hold passwords).
write_env() {
    mkdir -p "$(dirname "$ENV_FILE")"
    local tmp="$ENV_FILE.tmp.$$"
    (
        umask 077
        cat >"$tmp"
    )
    mv -f "$tmp" "$ENV_FILE"
}
load_env() {
    [[ -f "$ENV_FILE" ]] || return 1
    # shellcheck disable=SC1090
    source "$ENV_FILE"
}

# Deletes a test service's temporary directory "$1", but only one named "$TEMP_PREFIX".*,
# as the calling script creates them.
remove_dir() {
    local dir="$1"
    case "$(basename "$dir")" in
    "$TEMP_PREFIX".*) rm -rf -- "$dir" ;;
    *) warn "not removing unexpected directory '$dir'" ;;
    esac
}
