#!/usr/bin/env bash
# bench/ssh/run.sh — file copies through Postern's SSH port, compared in one run with the
# same copies straight to the target sshd.
#
#   bench/ssh/run.sh                           256 MiB, 3 rounds, upload and download
#   BENCH_MB=64 BENCH_ROUNDS=1 bench/ssh/run.sh
#
# What it does:
#   1. builds postern in release (BENCH_BUILD=0 skips);
#   2. starts (or reuses) the throwaway sshd of scripts/test-sshd.sh and gives a fresh client
#      key direct access to its account;
#   3. starts Postern (own data dir, full audit, the SSH port and the API on free ports),
#      provisions it with the CLI (`postern apply`: an SSH login with a generated key pinned
#      to the target's host key, a role granting it, a user; `postern key add` for the client
#      key; `postern sshlogin pubkey` into the target's authorized_keys);
#   4. copies a random file of BENCH_MB MiB with scp (OpenSSH's default: the SFTP protocol),
#      up and down, directly and through Postern, interleaved, BENCH_ROUNDS times; measures
#      wall time and Postern's CPU time (utime+stime from /proc/PID/stat) around each copy;
#   5. prints MiB/s per target and direction, the ratio Postern / direct, and Postern's CPU
#      milliseconds per MiB; writes them to $BENCH_OUT.
#
# Postern decrypts and re-encrypts every byte, and on a small machine the client, Postern and
# sshd share the cores: compare the targets of one run, not absolute numbers across machines.
#
# Environment (defaults in brackets):
#   BENCH_MB       file size in MiB                              [256]
#   BENCH_ROUNDS   copies per target and direction               [3]
#   BENCH_OUT      results directory                             [target/bench/ssh]
#   BENCH_BUILD    0 = do not run cargo build                    [1]
#   POSTERN_BIN    the postern binary                            [target/release/postern]
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/common.sh"
# shellcheck source=../lib/measure.sh
source "$POSTERN_ROOT/bench/lib/measure.sh"
cd "$POSTERN_ROOT"

MB="${BENCH_MB:-256}"
ROUNDS="${BENCH_ROUNDS:-3}"
OUT="${BENCH_OUT:-$POSTERN_ROOT/target/bench/ssh}"
POSTERN_BIN="${POSTERN_BIN:-$POSTERN_ROOT/target/release/postern}"
CLK_TCK="$(getconf CLK_TCK)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/postern-bench-ssh.XXXXXX")"
chmod 0755 "$WORK"
POSTERN_PID=""
stop_sshd=0
cleanup() {
    local rc=$?
    trap - EXIT
    stop_pid "$POSTERN_PID" 15
    rm -rf -- "$WORK"
    if ((stop_sshd)); then
        scripts/test-sshd.sh stop || true
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- 1. build ------------------------------------------------------------------------------
mkdir -p "$OUT"
rm -rf "$OUT/logs"
mkdir -p "$OUT/logs"
scripts/ensure-deps.sh
if [[ "${BENCH_BUILD:-1}" == 1 ]]; then
    section "build (release)"
    cargo build --release -p postern
fi
[[ -x "$POSTERN_BIN" ]] || die "$POSTERN_BIN not found (build it, or set POSTERN_BIN)"

# ---- 2. target -----------------------------------------------------------------------------
section "target sshd (scripts/test-sshd.sh)"
if ! scripts/test-sshd.sh status 2>/dev/null; then
    stop_sshd=1
fi
scripts/test-sshd.sh start
# shellcheck disable=SC1090
source "${POSTERN_TEST_SSHD_ENV_FILE:-$POSTERN_ROOT/target/test-sshd.env}"
ssh-keygen -q -t ed25519 -N '' -C postern-bench -f "$WORK/id"
cat "$WORK/id.pub" >>"$POSTERN_TEST_SSHD_AUTHORIZED_KEYS"

# ---- 3. Postern ----------------------------------------------------------------------------
section "Postern"
api_port="$(free_port)"
ssh_port="$(free_port)"
cat >"$WORK/postern.toml" <<TOML
data_dir = "$WORK/postern-data"
[api]
listen = "127.0.0.1:$api_port"
[postgres]
enabled = false
[mysql]
enabled = false
[ssh]
listen = "127.0.0.1:$ssh_port"
# scp cannot answer a second-factor prompt in a script: a lab setting, stated as such.
[auth]
require_2fa = false
TOML
"$POSTERN_BIN" server --config "$WORK/postern.toml" \
    >"$OUT/logs/postern.stdout" 2>"$OUT/logs/postern.stderr" &
POSTERN_PID=$!
line="$(wait_for_line "$OUT/logs/postern.stdout" 'bootstrap admin password: ' 60 "$POSTERN_PID")" ||
    die "postern did not print its bootstrap password (see $OUT/logs/postern.std*)"
admin_pass="${line##*bootstrap admin password: }"
admin_pass="${admin_pass//[[:space:]]/}"
wait_for_port "$api_port" 30 || die "postern API is not listening on $api_port"
wait_for_port "$ssh_port" 30 || die "postern is not listening on SSH port $ssh_port"
mkdir -p "$WORK/home"
pcli() { HOME="$WORK/home" XDG_CONFIG_HOME="$WORK/home/.config" "$POSTERN_BIN" "$@"; }
printf '%s\n' "$admin_pass" | pcli admin login --server "https://127.0.0.1:$api_port" \
    --ca "$WORK/postern-data/ca.crt" --user admin >/dev/null || die "postern admin login failed"
cat >"$WORK/apply.yaml" <<YAML
ssh-login:
  - {name: bench, host: 127.0.0.1, port: $POSTERN_TEST_SSHD_PORT, user: $POSTERN_TEST_SSHD_USER, host_key: "$POSTERN_TEST_SSHD_HOST_KEY"}
role:
  - {name: bench, ssh: {logins: [bench]}}
user:
  - {name: bencher, roles: [bench]}
YAML
pcli apply -f "$WORK/apply.yaml" >/dev/null || die "postern apply failed"
pcli key add --user bencher "$WORK/id.pub" >/dev/null || die "postern key add failed"
pcli sshlogin pubkey bench >>"$POSTERN_TEST_SSHD_AUTHORIZED_KEYS" || die "postern sshlogin pubkey failed"

declare -A T_PORT T_USER
T_PORT[direct]="$POSTERN_TEST_SSHD_PORT"
T_USER[direct]="$POSTERN_TEST_SSHD_USER"
T_PORT[postern]="$ssh_port"
T_USER[postern]="bench"
scp_to() {
    local t="$1"
    shift
    scp -q -F /dev/null -i "$WORK/id" -o IdentitiesOnly=yes -o IdentityAgent=none \
        -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile="$WORK/known_hosts" \
        -o BatchMode=yes -P "${T_PORT[$t]}" "$@"
}
for t in direct postern; do
    ssh -F /dev/null -i "$WORK/id" -o IdentitiesOnly=yes -o IdentityAgent=none \
        -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile="$WORK/known_hosts" \
        -o BatchMode=yes -p "${T_PORT[$t]}" "${T_USER[$t]}@127.0.0.1" true \
        >"$OUT/logs/check-$t.log" 2>&1 || die "cannot sign in through target '$t' (see $OUT/logs/check-$t.log)"
done
log "both targets answer"

# ---- 4. copies -----------------------------------------------------------------------------
section "scp of $MB MiB, $ROUNDS rounds"
head -c "$((MB * 1024 * 1024))" /dev/urandom >"$WORK/payload.bin"
remote="/tmp/postern-bench-ssh-$$.bin"
RESULTS="$OUT/throughput.tsv"
printf 'direction\ttarget\tround\tseconds\tmib_per_s\tpostern_cpu_ms_per_mib\n' >"$RESULTS"
now() { date +%s.%N; }
for r in $(seq 1 "$ROUNDS"); do
    for dir in upload download; do
        for t in direct postern; do
            ticks0=""
            [[ "$t" == postern ]] && ticks0="$(cpu_ticks "$POSTERN_PID")"
            start="$(now)"
            if [[ "$dir" == upload ]]; then
                scp_to "$t" "$WORK/payload.bin" "${T_USER[$t]}@127.0.0.1:$remote" ||
                    die "scp upload through $t failed"
            else
                scp_to "$t" "${T_USER[$t]}@127.0.0.1:$remote" "$WORK/back.bin" ||
                    die "scp download through $t failed"
                cmp -s "$WORK/payload.bin" "$WORK/back.bin" || die "the file came back altered through $t"
            fi
            end="$(now)"
            cpu="-"
            if [[ -n "$ticks0" ]]; then
                ticks1="$(cpu_ticks "$POSTERN_PID")"
                cpu="$(awk -v d="$((ticks1 - ticks0))" -v hz="$CLK_TCK" -v mb="$MB" \
                    'BEGIN { printf "%.2f", d / hz * 1000 / mb }')"
            fi
            secs="$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }')"
            rate="$(awk -v s="$secs" -v mb="$MB" 'BEGIN { printf "%.1f", mb / s }')"
            printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$dir" "$t" "$r" "$secs" "$rate" "$cpu" >>"$RESULTS"
            log "$dir $t round $r: ${secs}s, $rate MiB/s, Postern CPU ${cpu} ms/MiB"
        done
    done
done
rm -f -- "$remote" "$WORK/back.bin"

# ---- 5. report -----------------------------------------------------------------------------
section "results ($RESULTS)"
column -t -s $'\t' "$RESULTS"
printf '\n'
awk -F'\t' 'NR > 1 { s[$1 "\t" $2] += $4; n[$1 "\t" $2]++; if ($6 != "-") { c[$1] += $6; cn[$1]++ } }
    END {
        printf "%-10s %-14s %-14s %-16s %-20s\n", "direction", "direct MiB/s", "postern MiB/s", "postern/direct", "postern CPU ms/MiB"
        for (d in c) {
            ds = s[d "\tdirect"] / n[d "\tdirect"]; ps = s[d "\tpostern"] / n[d "\tpostern"]
            printf "%-10s %-14.1f %-14.1f %-16.2f %-20.2f\n", d, '"$MB"' / ds, '"$MB"' / ps, ds / ps, c[d] / cn[d]
        }
    }' "$RESULTS" | tee "$OUT/ratios.txt"
