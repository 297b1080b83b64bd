#!/usr/bin/env bash
# Ensures the tools the tests and benchmarks need are installed (Debian/Ubuntu, apt-get).
#
#   scripts/ensure-deps.sh            install what is missing, print what was installed
#   scripts/ensure-deps.sh --check    only report what is missing (exit 1 if anything is)
#
# Idempotent: when everything is present it installs nothing and does not touch the network.
# `apt-get update` runs only when something must be installed. Runs apt-get directly as root,
# through sudo otherwise.
#
# To require another tool, add ONE line to REQUIREMENTS below: "<check> <debian-package>".
#   cmd:NAME    a command on PATH                       (e.g. cmd:mariadb mariadb-client)
#   sbin:NAME   a command on PATH or in /usr/sbin, /sbin (e.g. sbin:sshd openssh-server)
#   pg:NAME     a program in /usr/lib/postgresql/*/bin  (e.g. pg:initdb postgresql)
#   lib:GLOB    a shared library known to ldconfig      (e.g. lib:libclang*.so* libclang-dev)
#   file:PATH   an existing file                        (e.g. file:/usr/include/zlib.h zlib1g-dev)
#   glob:GLOB   an existing file matching a glob        (e.g. glob:/usr/lib/llvm-*/lib/libclang.so libclang-dev)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

REQUIREMENTS=(
    "cmd:cc build-essential"
    "cmd:make build-essential"
    "cmd:pkg-config pkg-config"
    "cmd:openssl openssl"
    "cmd:python3 python3"
    "cmd:runuser util-linux"
    "pg:initdb postgresql"
    "pg:pg_ctl postgresql"
    "pg:pgbench postgresql"
    "pg:psql postgresql-client"
    "cmd:psql postgresql-client"
    # pg_query (PostgreSQL's own parser, in postern-sql) generates its bindings with bindgen.
    "glob:/usr/lib/llvm-*/lib/libclang.so libclang-dev"
    # LDAP directory logins are tested against a real OpenLDAP (scripts/test-ldap.sh).
    "sbin:slapd slapd"
    "cmd:ldapadd ldap-utils"
    # Single sign-on is tested against a real OpenID Connect provider (npm oidc-provider,
    # scripts/test-oidc.sh).
    "cmd:node nodejs"
    "cmd:npm npm"
    # The MySQL front door is tested against MariaDB (scripts/test-mariadb.sh).
    "sbin:mariadbd mariadb-server"
    "cmd:mariadb mariadb-client"
    "cmd:mariadb-install-db mariadb-server"
    # bench/mysql drives the MySQL port with sysbench.
    "cmd:sysbench sysbench"
    # The SSH front door is tested against a real OpenSSH server and clients
    # (scripts/test-sshd.sh); the interactive test drives ssh through a PTY.
    "sbin:sshd openssh-server"
    "cmd:ssh openssh-client"
    "cmd:scp openssh-client"
    "cmd:sftp openssh-client"
    "cmd:ssh-keygen openssh-client"
)

present() {
    local kind="${1%%:*}" what="${1#*:}"
    case "$kind" in
    cmd) command -v "$what" >/dev/null 2>&1 ;;
    sbin) command -v "$what" >/dev/null 2>&1 || [[ -x "/usr/sbin/$what" || -x "/sbin/$what" ]] ;;
    pg) compgen -G "/usr/lib/postgresql/*/bin/$what" >/dev/null ;;
    lib) ldconfig -p 2>/dev/null | awk '{print $1}' | grep -q -- "^${what//\*/.*}\$" ;;
    file) [[ -e "$what" ]] ;;
    glob) compgen -G "$what" >/dev/null ;;
    *) die "unknown requirement kind in '$1'" ;;
    esac
}

check_only=0
case "${1:-}" in
--check) check_only=1 ;;
"") ;;
-h | --help)
    sed -n '2,19p' "$0"
    exit 0
    ;;
*) die "usage: $0 [--check]" ;;
esac

missing_pkgs=()
for req in "${REQUIREMENTS[@]}"; do
    check="${req%% *}"
    pkg="${req#* }"
    if ! present "$check"; then
        log "missing: ${check#*:} (package $pkg)"
        # De-duplicate while keeping order.
        if [[ " ${missing_pkgs[*]-} " != *" $pkg "* ]]; then
            missing_pkgs+=("$pkg")
        fi
    fi
done

if ((${#missing_pkgs[@]} == 0)); then
    log "ensure-deps: all test tools present"
    exit 0
fi
if ((check_only)); then
    log "ensure-deps: missing packages: ${missing_pkgs[*]}"
    exit 1
fi

command -v apt-get >/dev/null 2>&1 ||
    die "apt-get not found: install these packages by hand: ${missing_pkgs[*]}"
sudo_cmd=()
if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 ||
        die "not root and no sudo: install these packages by hand: ${missing_pkgs[*]}"
    sudo_cmd=(sudo)
fi

log "ensure-deps: installing: ${missing_pkgs[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -q
"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing_pkgs[@]}"

# Verify: a package name that no longer provides the tool should fail loudly here, not later.
still=()
for req in "${REQUIREMENTS[@]}"; do
    present "${req%% *}" || still+=("${req%% *}")
done
((${#still[@]} == 0)) || die "still missing after install: ${still[*]}"
log "ensure-deps: installed: ${missing_pkgs[*]}"
