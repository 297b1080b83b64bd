#!/usr/bin/env bash
# bench/mysql/run.sh — MySQL / MariaDB through Postern, compared in one run with the same
# sysbench workloads directly against MariaDB and through a plain TCP relay (bench/relay: the
# floor of any proxy hop).
#
#   bench/mysql/run.sh                                everything (about 2 minutes of sysbench)
#   BENCH_TARGETS=direct,relay BENCH_SECONDS=3 bench/mysql/run.sh
#
# What it does:
#   1. builds bench-relay and postern in release (BENCH_BUILD=0 skips);
#   2. starts (or reuses) the throwaway server of scripts/test-mariadb.sh, creates database and
#      user postern_bench and runs `sysbench oltp_read_only prepare` directly (skipped when the
#      tables are there);
#   3. starts bench-relay and Postern (own data dir, full audit: every command is a durable
#      audit event; the MySQL port and the API on free ports) in front of MariaDB; provisions
#      Postern with `postern admin login` + `postern apply` (datasource "bench" of type mysql,
#      user "bencher" in MASKED PASSTHROUGH mode with SELECT on the sysbench tables: every
#      statement is analysed and judged; BENCH_MODE=passthrough measures the relay alone);
#   4. runs `sysbench oltp_point_select` and `oltp_read_only` (server-side prepared statements,
#      the sysbench default) with 1 and 8 threads against every target, interleaved; reports
#      transactions and queries per second and the proxy's CPU time per query (utime+stime of
#      the proxy process from /proc/PID/stat, before/after each run);
#   5. prints the table and the ratios Postern / relay and relay / direct, and writes them to
#      $BENCH_OUT.
#
# The machine's cores are shared by sysbench, MariaDB and the proxy: absolute numbers depend
# on the machine; compare the ratios between targets of the same run.
#
# Environment (defaults in brackets):
#   BENCH_TARGETS     comma list of direct, relay, postern          [direct,relay,postern]
#   BENCH_WORKLOADS   sysbench tests                  ["oltp_point_select oltp_read_only"]
#   BENCH_SECONDS     duration of each run                          [10]
#   BENCH_CLIENTS     thread counts                                 ["1 8"]
#   BENCH_TABLES      sysbench --tables                             [4]
#   BENCH_TABLE_SIZE  sysbench --table-size                         [10000]
#   BENCH_OUT         results directory                             [target/bench/mysql]
#   BENCH_BUILD       0 = do not run cargo build                    [1]
#   BENCH_MODE        Postern mode of the bench user: masked, protected, passthrough [masked]
#   BENCH_KEEP_DB     1 = leave the test MariaDB server running     [0]
#   POSTERN_BIN       the postern binary                            [target/release/postern]
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/common.sh"
# shellcheck source=../lib/measure.sh
source "$POSTERN_ROOT/bench/lib/measure.sh"
cd "$POSTERN_ROOT"

IFS=',' read -r -a TARGETS <<<"${BENCH_TARGETS:-direct,relay,postern}"
read -r -a WORKLOADS <<<"${BENCH_WORKLOADS:-oltp_point_select oltp_read_only}"
DURATION="${BENCH_SECONDS:-10}"
read -r -a CLIENTS <<<"${BENCH_CLIENTS:-1 8}"
TABLES="${BENCH_TABLES:-4}"
TABLE_SIZE="${BENCH_TABLE_SIZE:-10000}"
OUT="${BENCH_OUT:-$POSTERN_ROOT/target/bench/mysql}"
POSTERN_BIN="${POSTERN_BIN:-$POSTERN_ROOT/target/release/postern}"
RELAY_BIN="$POSTERN_ROOT/target/release/bench-relay"
CLK_TCK="$(getconf CLK_TCK)"
BENCH_DB="postern_bench"
BENCH_USER="postern_bench"

for t in "${TARGETS[@]}"; do
    case "$t" in
    direct | relay | postern) ;;
    *) die "unknown target '$t' in BENCH_TARGETS (direct, relay, postern)" ;;
    esac
done
has_target() {
    local t
    for t in "${TARGETS[@]}"; do [[ "$t" == "$1" ]] && return 0; done
    return 1
}

WORK="$(mktemp -d "${TMPDIR:-/tmp}/postern-bench-mysql.XXXXXX")"
RELAY_PID=""
POSTERN_PID=""
stop_db=0
cleanup() {
    local rc=$?
    trap - EXIT
    stop_pid "$POSTERN_PID" 15
    stop_pid "$RELAY_PID" 5
    rm -rf -- "$WORK"
    if ((stop_db)) && [[ "${BENCH_KEEP_DB:-0}" != 1 ]]; then
        scripts/test-mariadb.sh stop || true
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

declare -A T_PORT T_USER T_PASS T_DB
proxy_pid() {
    case "$1" in
    relay) printf '%s\n' "$RELAY_PID" ;;
    postern) printf '%s\n' "$POSTERN_PID" ;;
    *) printf '\n' ;;
    esac
}
# sysbench against target "$1"; the rest are sysbench arguments.
sysbench_on() {
    local t="$1"
    shift
    sysbench --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="${T_PORT[$t]}" \
        --mysql-user="${T_USER[$t]}" --mysql-password="${T_PASS[$t]}" --mysql-db="${T_DB[$t]}" \
        --mysql-ssl=off --tables="$TABLES" --table-size="$TABLE_SIZE" "$@"
}
root_sql() {
    mariadb --no-defaults -S "$POSTERN_TEST_MARIADB_SOCKET" -u root -N -B -e "$1"
}

# ---- 1. build ------------------------------------------------------------------------------
mkdir -p "$OUT"
rm -rf "$OUT/logs"
mkdir -p "$OUT/logs"
scripts/ensure-deps.sh
if [[ "${BENCH_BUILD:-1}" == 1 ]]; then
    section "build (release)"
    cargo build --release -p bench-relay -p postern
fi

# ---- 2. upstream ---------------------------------------------------------------------------
section "upstream MariaDB (scripts/test-mariadb.sh)"
if ! scripts/test-mariadb.sh status 2>/dev/null; then
    stop_db=1
fi
scripts/test-mariadb.sh start
# shellcheck disable=SC1090
source "${POSTERN_TEST_MARIADB_ENV_FILE:-$POSTERN_ROOT/target/test-mariadb.env}"
BENCH_PASS="bench-$(openssl rand -hex 12)"
root_sql "CREATE DATABASE IF NOT EXISTS $BENCH_DB; \
    CREATE USER IF NOT EXISTS '$BENCH_USER'@'127.0.0.1' IDENTIFIED BY '$BENCH_PASS'; \
    ALTER USER '$BENCH_USER'@'127.0.0.1' IDENTIFIED BY '$BENCH_PASS'; \
    GRANT ALL PRIVILEGES ON $BENCH_DB.* TO '$BENCH_USER'@'127.0.0.1';"
T_PORT[direct]="$POSTERN_TEST_MARIADB_PORT"
T_USER[direct]="$BENCH_USER"
T_PASS[direct]="$BENCH_PASS"
T_DB[direct]="$BENCH_DB"
have="$(root_sql "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '$BENCH_DB' AND table_name LIKE 'sbtest%'")"
if [[ "$have" == "$TABLES" ]]; then
    log "sysbench tables already present"
else
    log "sysbench oltp_read_only prepare ($TABLES tables of $TABLE_SIZE rows, directly)"
    sysbench_on direct oltp_read_only cleanup >/dev/null 2>&1 || true
    sysbench_on direct oltp_read_only prepare >"$OUT/logs/prepare.log" 2>&1 ||
        die "sysbench prepare failed (see $OUT/logs/prepare.log)"
fi

# ---- 3. proxies ----------------------------------------------------------------------------
section "proxies"
if has_target relay; then
    "$RELAY_BIN" --listen 127.0.0.1:0 --upstream "127.0.0.1:$POSTERN_TEST_MARIADB_PORT" \
        >"$OUT/logs/relay.stdout" 2>"$OUT/logs/relay.stderr" &
    RELAY_PID=$!
    line="$(wait_for_line "$OUT/logs/relay.stdout" '^listening on ' 30 "$RELAY_PID")" ||
        die "bench-relay did not start (see $OUT/logs/relay.stderr)"
    T_PORT[relay]="${line##*:}"
    T_USER[relay]="$BENCH_USER"
    T_PASS[relay]="$BENCH_PASS"
    T_DB[relay]="$BENCH_DB"
fi
if has_target postern; then
    [[ -x "$POSTERN_BIN" ]] || die "$POSTERN_BIN not found (build it, or set POSTERN_BIN)"
    mkdir -p "$WORK/home"
    api_port="$(free_port)"
    my_port="$(free_port)"
    cat >"$WORK/postern.toml" <<TOML
data_dir = "$WORK/postern-data"
[api]
listen = "127.0.0.1:$api_port"
[postgres]
enabled = false
[ssh]
enabled = false
[mysql]
listen = "127.0.0.1:$my_port"
# sysbench cannot answer a second-factor prompt: a lab setting, stated as such.
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
    wait_for_port "$my_port" 30 || die "postern is not listening on $my_port"
    pcli() { HOME="$WORK/home" XDG_CONFIG_HOME="$WORK/home/.config" "$POSTERN_BIN" "$@"; }
    printf '%s\n' "$admin_pass" | pcli admin login --server "https://127.0.0.1:$api_port" \
        --ca "$WORK/postern-data/ca.crt" --user admin || die "postern admin login failed"
    user_pass="bench-$(openssl rand -hex 12)"
    cat >"$WORK/apply.yaml" <<YAML
datasource:
  - {name: bench, type: mysql, host: 127.0.0.1, port: $POSTERN_TEST_MARIADB_PORT, database: $BENCH_DB, tls: disable}
credential:
  - {name: bench, datasource: bench, username: $BENCH_USER, password: "$BENCH_PASS"}
role:
  - name: bench
    credentials: [bench]
    modes: {bench: ${BENCH_MODE:-masked}}
    privileges: [{allow: [SELECT], on: "bench.$BENCH_DB.$BENCH_DB.sbtest*"}]
user:
  - {name: bencher, roles: [bench], password: "$user_pass"}
YAML
    pcli apply -f "$WORK/apply.yaml" >/dev/null || die "postern apply failed"
    T_PORT[postern]="$my_port"
    T_USER[postern]="bencher"
    T_PASS[postern]="$user_pass"
    T_DB[postern]="bench"
fi
for t in "${TARGETS[@]}"; do
    mariadb --no-defaults -h 127.0.0.1 -P "${T_PORT[$t]}" -u "${T_USER[$t]}" -p"${T_PASS[$t]}" \
        -N -B -e "SELECT COUNT(*) FROM sbtest1" "${T_DB[$t]}" >/dev/null 2>"$OUT/logs/check-$t.log" ||
        die "cannot query through target '$t' (see $OUT/logs/check-$t.log)"
done
log "every target answers: ${TARGETS[*]}"

# ---- 4. runs -------------------------------------------------------------------------------
RESULTS="$OUT/throughput.tsv"
printf 'workload\tthreads\ttarget\ttps\tqps\tproxy_cpu_us_per_query\n' >"$RESULTS"
section "sysbench, ${DURATION}s per run"
for w in "${WORKLOADS[@]}"; do
    for c in "${CLIENTS[@]}"; do
        for t in "${TARGETS[@]}"; do
            logf="$OUT/logs/$w-c$c-$t.log"
            pid="$(proxy_pid "$t")"
            ticks0=""
            [[ -n "$pid" ]] && ticks0="$(cpu_ticks "$pid")"
            sysbench_on "$t" "$w" --threads="$c" --time="$DURATION" --report-interval=0 run \
                >"$logf" 2>&1 || die "sysbench $w on $t failed (see $logf)"
            tps="$(awk -F'[()]' '/transactions:/ { split($2, a, " "); print a[1]; exit }' "$logf")"
            qps="$(awk -F'[()]' '/queries:/ && !/performed/ { split($2, a, " "); print a[1]; exit }' "$logf")"
            queries="$(awk '/queries:/ && !/performed/ { print $2; exit }' "$logf")"
            cpu="-"
            if [[ -n "$pid" && -n "$queries" && "$queries" != 0 ]]; then
                ticks1="$(cpu_ticks "$pid")"
                cpu="$(awk -v d="$((ticks1 - ticks0))" -v hz="$CLK_TCK" -v n="$queries" \
                    'BEGIN { printf "%.1f", d / hz * 1e6 / n }')"
            fi
            printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$w" "$c" "$t" "$tps" "$qps" "$cpu" >>"$RESULTS"
            log "$w threads=$c $t: $tps tps, $qps qps, proxy CPU ${cpu} µs/query"
        done
    done
done

# ---- 5. report -----------------------------------------------------------------------------
section "results ($RESULTS)"
column -t -s $'\t' "$RESULTS"
printf '\n'
awk -F'\t' 'NR > 1 { q[$1 "\t" $2 "\t" $3] = $5; k[$1 "\t" $2] = 1 }
    END {
        printf "%-20s %-8s %-16s %-16s\n", "workload", "threads", "postern/relay", "relay/direct"
        for (x in k) {
            p = q[x "\tpostern"]; r = q[x "\trelay"]; d = q[x "\tdirect"]
            split(x, a, "\t")
            printf "%-20s %-8s %-16s %-16s\n", a[1], a[2],
                (p != "" && r > 0) ? sprintf("%.2f", p / r) : "-",
                (r != "" && d > 0) ? sprintf("%.2f", r / d) : "-"
        }
    }' "$RESULTS" | tee "$OUT/ratios.txt"
