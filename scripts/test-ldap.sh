#!/usr/bin/env bash
# A throwaway OpenLDAP server (slapd) for the directory-login tests (never a system one).
#
#   scripts/test-ldap.sh start    create and start one (or reuse a healthy one); writes the env file
#   scripts/test-ldap.sh stop     stop it and delete its directory and the env file
#   scripts/test-ldap.sh status   exit 0 when the server of the env file answers
#
# The env file (default target/test-ldap.env, override with POSTERN_TEST_LDAP_ENV_FILE) exports:
#   POSTERN_TEST_LDAP_URL        ldap://127.0.0.1:PORT (StartTLS offered)
#   POSTERN_TEST_LDAPS_URL       ldaps://127.0.0.1:PORT2
#   POSTERN_TEST_LDAP_CA         CA certificate of the server's TLS certificate (SAN 127.0.0.1)
#   POSTERN_TEST_LDAP_BASE       dc=postern,dc=test (with ou=people, ou=groups, ou=services)
#   POSTERN_TEST_LDAP_ADMIN_DN   the directory manager (tests add and remove their people and groups)
#   POSTERN_TEST_LDAP_ADMIN_PW   its password
#   POSTERN_TEST_LDAP_BIND_DN    the read-only service account Postern binds as
#   POSTERN_TEST_LDAP_BIND_PW    its password
#   POSTERN_TEST_LDAP_DIR        the temporary directory holding the database, config and log
#
# Access: passwords are usable only to bind (nobody reads them); the service account and
# people read the tree; only the manager writes.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# Temporary directories of this service are "$TEMP_PREFIX.XXXXXX" (remove_dir deletes no other).
TEMP_PREFIX="postern-test-ldap"

ENV_FILE="${POSTERN_TEST_LDAP_ENV_FILE:-$POSTERN_ROOT/target/test-ldap.env}"
BASE="dc=postern,dc=test"
ADMIN_DN="cn=manager,$BASE"
BIND_DN="cn=postern,ou=services,$BASE"

slapd_bin() {
    local p
    for p in "$(command -v slapd 2>/dev/null || true)" /usr/sbin/slapd /sbin/slapd; do
        [[ -n "$p" && -x "$p" ]] && { printf '%s\n' "$p"; return 0; }
    done
    return 1
}

healthy() {
    load_env || return 1
    [[ -n "${POSTERN_TEST_LDAPS_URL:-}" ]] || return 1
    LDAPTLS_CACERT="$POSTERN_TEST_LDAP_CA" ldapsearch -x -LLL -o nettimeout=3 -H "$POSTERN_TEST_LDAPS_URL" \
        -D "$POSTERN_TEST_LDAP_BIND_DN" -w "$POSTERN_TEST_LDAP_BIND_PW" \
        -b "$POSTERN_TEST_LDAP_BASE" -s base dn >/dev/null 2>&1 || return 1
    ldapsearch -x -LLL -o nettimeout=3 -H "$POSTERN_TEST_LDAP_URL" \
        -D "$POSTERN_TEST_LDAP_BIND_DN" -w "$POSTERN_TEST_LDAP_BIND_PW" \
        -b "$POSTERN_TEST_LDAP_BASE" -s base dn >/dev/null 2>&1
}

cmd_stop() {
    if ! load_env; then
        log "test-ldap: no env file ($ENV_FILE): nothing to stop"
        return 0
    fi
    local dir="${POSTERN_TEST_LDAP_DIR:-}"
    if [[ -n "$dir" && -f "$dir/slapd.pid" ]]; then
        stop_pid "$(head -n1 "$dir/slapd.pid")" 10
    fi
    [[ -n "$dir" && -d "$dir" ]] && remove_dir "$dir"
    rm -f -- "$ENV_FILE"
    log "test-ldap: stopped"
}

STARTED=0
start_once() {
    STARTED=0
    local slapd="$1" dir port tls_port admin_pw bind_pw
    dir="$(mktemp -d "${TMPDIR:-/tmp}/$TEMP_PREFIX.XXXXXX")"
    mkdir -m 0700 "$dir/db"
    admin_pw="$(openssl rand -hex 16)"
    bind_pw="$(openssl rand -hex 16)"
    make_test_certs "$dir" "Postern test LDAP CA"
    mv "$dir/certs.tmp"/{ca.crt,server.crt,server.key} "$dir/"
    rm -rf "$dir/certs.tmp"
    chmod 0600 "$dir/server.key"
    cat >"$dir/slapd.conf" <<EOF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile $dir/slapd.pid
argsfile $dir/slapd.args
loglevel stats
TLSCACertificateFile $dir/ca.crt
TLSCertificateFile $dir/server.crt
TLSCertificateKeyFile $dir/server.key

database mdb
maxsize 104857600
suffix "$BASE"
rootdn "$ADMIN_DN"
rootpw $(slappasswd -s "$admin_pw")
directory $dir/db
index objectClass eq
index uid eq
index member eq

access to attrs=userPassword
    by anonymous auth
    by * none
access to *
    by users read
    by * none
EOF
    cat >"$dir/seed.ldif" <<EOF
dn: $BASE
objectClass: dcObject
objectClass: organization
dc: postern
o: Postern tests

dn: ou=people,$BASE
objectClass: organizationalUnit
ou: people

dn: ou=groups,$BASE
objectClass: organizationalUnit
ou: groups

dn: ou=services,$BASE
objectClass: organizationalUnit
ou: services

dn: $BIND_DN
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: postern
userPassword: $(slappasswd -s "$bind_pw")
EOF
    if ! slapadd -f "$dir/slapd.conf" -l "$dir/seed.ldif" >"$dir/slapadd.log" 2>&1; then
        cat "$dir/slapadd.log" >&2
        remove_dir "$dir"
        die "slapadd failed"
    fi
    port="$(free_port)"
    tls_port="$(free_port)"
    log "test-ldap: starting slapd on 127.0.0.1:$port (ldaps on $tls_port)"
    # fd 9 (the lock) closed: the daemon must not hold it.
    if ! "$slapd" -f "$dir/slapd.conf" -h "ldap://127.0.0.1:$port/ ldaps://127.0.0.1:$tls_port/" >"$dir/slapd.log" 2>&1 9>&-; then
        cat "$dir/slapd.log" >&2
        remove_dir "$dir"
        return 0
    fi
    if ! wait_for_port "$port" 30 || ! wait_for_port "$tls_port" 10; then
        [[ -f "$dir/slapd.pid" ]] && stop_pid "$(head -n1 "$dir/slapd.pid")" 5
        remove_dir "$dir"
        return 0
    fi
    write_env <<EOF
# Written by scripts/test-ldap.sh start; removed by scripts/test-ldap.sh stop.
export POSTERN_TEST_LDAP_URL='ldap://127.0.0.1:$port'
export POSTERN_TEST_LDAPS_URL='ldaps://127.0.0.1:$tls_port'
export POSTERN_TEST_LDAP_CA='$dir/ca.crt'
export POSTERN_TEST_LDAP_BASE='$BASE'
export POSTERN_TEST_LDAP_ADMIN_DN='$ADMIN_DN'
export POSTERN_TEST_LDAP_ADMIN_PW='$admin_pw'
export POSTERN_TEST_LDAP_BIND_DN='$BIND_DN'
export POSTERN_TEST_LDAP_BIND_PW='$bind_pw'
export POSTERN_TEST_LDAP_DIR='$dir'
EOF
    if ! healthy; then
        cmd_stop
        return 0
    fi
    STARTED=1
    log "test-ldap: ready; env file $ENV_FILE"
}

cmd_start() {
    if healthy; then
        log "test-ldap: reusing running slapd at $POSTERN_TEST_LDAP_URL ($ENV_FILE)"
        return 0
    fi
    if [[ -f "$ENV_FILE" ]]; then
        log "test-ldap: env file points to a dead server; cleaning it up"
        cmd_stop
    fi
    local slapd
    slapd="$(slapd_bin)" || die "slapd not found: run scripts/ensure-deps.sh"
    command -v ldapsearch >/dev/null 2>&1 || die "ldapsearch not found: run scripts/ensure-deps.sh"
    local attempt
    for attempt in 1 2 3; do
        start_once "$slapd"
        ((STARTED)) && return 0
        warn "test-ldap: start attempt $attempt failed"
    done
    die "could not start the test LDAP server"
}

case "${1:-}" in
start) with_lock cmd_start ;;
stop) with_lock cmd_stop ;;
status)
    if healthy; then
        log "test-ldap: running at $POSTERN_TEST_LDAP_URL"
    else
        log "test-ldap: not running"
        exit 1
    fi
    ;;
*)
    sed -n '2,6p' "$0" >&2
    exit 2
    ;;
esac
