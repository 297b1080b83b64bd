#!/usr/bin/env bash
# A throwaway OpenSSH server (sshd) for the SSH front-door tests (never the system one).
#
#   scripts/test-sshd.sh start    create and start one (or reuse a healthy one); writes the env file
#   scripts/test-sshd.sh stop     stop it and delete its directory and the env file
#   scripts/test-sshd.sh status   exit 0 when the server of the env file answers
#
# It listens on 127.0.0.1 with its own host key, accepts public keys listed in its own
# authorized_keys file (tests append the keys Postern generates) and passwords, and allows
# TCP and agent forwarding (Postern decides who may use them). The target account is a
# dedicated user "postern-target" when run as root (created once), else the current user.
#
# The env file (default target/test-sshd.env, override with POSTERN_TEST_SSHD_ENV_FILE) exports:
#   POSTERN_TEST_SSHD_PORT             the port
#   POSTERN_TEST_SSHD_USER             the target account
#   POSTERN_TEST_SSHD_HOST_KEY         the server's public host key ("ssh-ed25519 AAAA…")
#   POSTERN_TEST_SSHD_AUTHORIZED_KEYS  the authorized_keys file to append keys to
#   POSTERN_TEST_SSHD_PASSWORD         the target account's password (root runs only)
#   POSTERN_TEST_SSHD_DIR              the temporary directory (config, keys, log)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
TEMP_PREFIX="postern-test-sshd"
ENV_FILE="${POSTERN_TEST_SSHD_ENV_FILE:-$POSTERN_ROOT/target/test-sshd.env}"
TARGET_USER="postern-target"

sshd_bin() {
    local p
    for p in "$(command -v sshd 2>/dev/null || true)" /usr/sbin/sshd /sbin/sshd; do
        [[ -n "$p" && -x "$p" ]] && { printf '%s\n' "$p"; return 0; }
    done
    return 1
}

healthy() {
    load_env || return 1
    [[ -n "${POSTERN_TEST_SSHD_PORT:-}" ]] || return 1
    ssh-keyscan -T 3 -t ed25519 -p "$POSTERN_TEST_SSHD_PORT" 127.0.0.1 2>/dev/null |
        grep -qF "${POSTERN_TEST_SSHD_HOST_KEY#* }"
}

cmd_stop() {
    if ! load_env; then
        log "test-sshd: no env file ($ENV_FILE): nothing to stop"
        return 0
    fi
    local dir="${POSTERN_TEST_SSHD_DIR:-}"
    if [[ -n "$dir" && -f "$dir/sshd.pid" ]]; then
        stop_pid "$(head -n1 "$dir/sshd.pid")" 10
    fi
    [[ -n "$dir" && -d "$dir" ]] && remove_dir "$dir"
    rm -f -- "$ENV_FILE"
    log "test-sshd: stopped"
}

# The account sessions land in; prints its name. Root: a dedicated user, created when
# missing, with the password of target_password.
target_account() {
    if ((EUID == 0)); then
        if ! id "$TARGET_USER" >/dev/null 2>&1; then
            useradd --create-home --shell /bin/bash "$TARGET_USER" >&2
        fi
        printf '%s\n' "$TARGET_USER"
    else
        id -un
    fi
}

# The target account's password (root only): random, made once and kept in a root-only file,
# so that test sshds of several checkouts on one machine (a CI clone next to a working tree)
# share it instead of each start changing it under the others' feet.
PASSWORD_FILE="/var/lib/postern-test-sshd/password"
target_password() {
    if [[ ! -s "$PASSWORD_FILE" ]]; then
        mkdir -p "$(dirname "$PASSWORD_FILE")"
        chmod 0700 "$(dirname "$PASSWORD_FILE")"
        (umask 077 && openssl rand -hex 12 >"$PASSWORD_FILE.tmp" && mv "$PASSWORD_FILE.tmp" "$PASSWORD_FILE")
    fi
    head -n 1 "$PASSWORD_FILE"
}

STARTED=0
start_once() {
    STARTED=0
    local sshd="$1" user="$2" dir port password=""
    dir="$(mktemp -d "${TMPDIR:-/tmp}/$TEMP_PREFIX.XXXXXX")"
    chmod 0755 "$dir"
    port="$(free_port)"
    ssh-keygen -q -t ed25519 -N '' -C postern-test-sshd -f "$dir/ssh_host_ed25519_key"
    : >"$dir/authorized_keys"
    chmod 0644 "$dir/authorized_keys"
    if ((EUID == 0)); then
        password="$(target_password)"
        printf '%s:%s\n' "$user" "$password" | chpasswd
        # Privilege separation needs its empty directory.
        mkdir -p /run/sshd && chmod 0755 /run/sshd
    fi
    cat >"$dir/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $dir/ssh_host_ed25519_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
StrictModes no
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers $user
AllowTcpForwarding yes
AllowAgentForwarding yes
GatewayPorts no
X11Forwarding no
PrintMotd no
PrintLastLog no
MaxStartups 200
MaxSessions 100
Subsystem sftp internal-sftp
LogLevel VERBOSE
EOF
    "$sshd" -f "$dir/sshd_config" -E "$dir/sshd.log" || {
        warn "test-sshd: sshd did not start: $(tail -n 5 "$dir/sshd.log" 2>/dev/null)"
        remove_dir "$dir"
        return 0
    }
    if ! wait_for_port "$port" 30; then
        [[ -f "$dir/sshd.pid" ]] && stop_pid "$(head -n1 "$dir/sshd.pid")" 5
        remove_dir "$dir"
        return 0
    fi
    local host_key
    host_key="$(cut -d' ' -f1,2 "$dir/ssh_host_ed25519_key.pub")"
    write_env <<EOF
# Written by scripts/test-sshd.sh start; removed by scripts/test-sshd.sh stop.
export POSTERN_TEST_SSHD_PORT='$port'
export POSTERN_TEST_SSHD_USER='$user'
export POSTERN_TEST_SSHD_HOST_KEY='$host_key'
export POSTERN_TEST_SSHD_AUTHORIZED_KEYS='$dir/authorized_keys'
export POSTERN_TEST_SSHD_PASSWORD='$password'
export POSTERN_TEST_SSHD_DIR='$dir'
EOF
    if ! healthy; then
        cmd_stop
        return 0
    fi
    STARTED=1
    log "test-sshd: ready on 127.0.0.1:$port (account $user); env file $ENV_FILE"
}

cmd_start() {
    if healthy; then
        log "test-sshd: reusing running sshd on port $POSTERN_TEST_SSHD_PORT ($ENV_FILE)"
        return 0
    fi
    if [[ -f "$ENV_FILE" ]]; then
        log "test-sshd: env file points to a dead server; cleaning it up"
        cmd_stop
    fi
    local sshd user
    sshd="$(sshd_bin)" || die "sshd not found: run scripts/ensure-deps.sh"
    command -v ssh-keygen >/dev/null 2>&1 || die "ssh-keygen not found: run scripts/ensure-deps.sh"
    user="$(target_account)"
    local attempt
    for attempt in 1 2 3; do
        start_once "$sshd" "$user"
        ((STARTED)) && return 0
        warn "test-sshd: start attempt $attempt failed"
    done
    die "could not start the test sshd"
}

case "${1:-}" in
start) with_lock cmd_start ;;
stop) with_lock cmd_stop ;;
status)
    if healthy; then
        log "test-sshd: running on port $POSTERN_TEST_SSHD_PORT"
    else
        log "test-sshd: not running"
        exit 1
    fi
    ;;
*)
    sed -n '2,6p' "$0" >&2
    exit 2
    ;;
esac
