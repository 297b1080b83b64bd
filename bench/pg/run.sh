#!/usr/bin/env bash
# bench/pg/run.sh — PostgreSQL through Postern, compared in one run with the same workload
# directly against PostgreSQL and through a plain TCP relay (bench/relay: the floor of any
# proxy hop).
#
#   bench/pg/run.sh                                   everything (about 4 minutes of pgbench)
#   BENCH_TARGETS=direct,relay BENCH_SECONDS=3 bench/pg/run.sh
#
# What it does:
#   1. builds bench-relay (and postern when it is a target) in release;
#   2. starts (or reuses) the throwaway cluster of scripts/test-pg.sh, creates database and
#      role postern_bench and runs `pgbench -i -s $BENCH_SCALE` directly (skipped when a
#      reused cluster already holds it);
#   3. starts bench-relay and Postern (own data dir, full audit, API and PG on free ports),
#      both in front of the PostgreSQL cluster; provisions Postern with `postern admin login`
#      + `postern apply` (datasource "bench", credential, role, user "bencher" in PASSTHROUGH
#      mode, and user "bencher_masked" in MASKED PASSTHROUGH mode with SELECT on the pgbench
#      tables: every statement analysed and checked; target "masked");
#   4. throughput: `pgbench -n -S` in simple and prepared query mode with 1, 8 and 32 clients
#      (-j = min(clients, 2)) against every target, interleaved; reports TPS, average latency
#      and the proxy's CPU time per statement (utime+stime of the proxy process from
#      /proc/PID/stat, before/after each run, divided by the transactions pgbench processed;
#      with -S a transaction is one statement);
#   5. connection set-up: `pgbench -n -C -S -c 1` (a new connection per transaction):
#      connections per second and average connection time per target;
#   6. memory per idle client: opens $BENCH_IDLE_CLIENTS psql sessions through each proxy and
#      leaves them idle (each psql reads its script from a FIFO that this script holds open
#      and never writes to, so every session sits connected and idle), waits until the
#      upstream shows them all in pg_stat_activity, and reports the proxy's RSS growth
#      (VmRSS of /proc/PID/status) per session. Each session also holds an upstream backend:
#      a cluster this script starts gets max_connections = $BENCH_IDLE_CLIENTS + 100 (at
#      least 300); a reused cluster must already allow that many.
#   7. masking: a custom pgbench script that reads a 100-row range of a people table (id,
#      name, email, card, salary, birth date) through Postern in MASKED mode twice — as
#      "bencher_masked" (no masking rules) and as "bencher_masking" (a masking policy masks
#      email and card: two masked columns in each of the 100 rows) — and directly; reports
#      TPS and the ratio masking / masked (issue target: at least 0.80);
#   8. prints the tables and ratios, and writes them to $BENCH_OUT (raw pgbench output too).
#
# The machine's cores are shared by pgbench, PostgreSQL and the proxy: absolute numbers
# depend on the machine; the ratios between targets of the same run are what to compare.
# Every process this script starts is stopped at exit (also on Ctrl-C); the test cluster is
# stopped only when this script started it.
#
# Environment (defaults in brackets):
#   BENCH_TARGETS          comma list of direct, relay, postern, masked
#                                                          [direct,relay,postern,masked]
#   BENCH_SECONDS          duration of each throughput run          [10]
#   BENCH_REPEAT           rounds of every throughput run (targets interleaved within a
#                          round); the report shows medians and, over rounds, the range
#                          of the ratios                            [1]
#   BENCH_CLIENTS          client counts                            ["1 8 32"]
#   BENCH_MODES            pgbench query modes                      ["simple prepared"]
#   BENCH_MAX_THREADS      pgbench -j is min(clients, this)         [2]
#   BENCH_SCALE            pgbench -i scale                         [10]
#   BENCH_CONNECT_SECONDS  duration of the connection set-up runs (0 = skip)   [5]
#   BENCH_IDLE_CLIENTS     idle sessions for the memory measurement (0 = skip) [200]
#   BENCH_MASKING_SECONDS  duration of each masking-workload run (0 = skip; needs the
#                          masked target)                           [10]
#   BENCH_MASKING_CLIENTS  client counts of the masking workload    ["1 8"]
#   BENCH_SSLMODE          sslmode of the benchmark clients         [disable]
#   BENCH_OUT              results directory                        [target/bench/pg]
#   BENCH_BUILD            0 = do not run cargo build               [1]
#   BENCH_KEEP_PG          1 = leave the test cluster running       [0]
#   POSTERN_BIN            the postern binary                       [target/release/postern]
#   BENCH_POSTERN_LOG      value of [log] level in Postern's config (unset = its default)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/common.sh"
cd "$POSTERN_ROOT"

IFS=',' read -r -a TARGETS <<<"${BENCH_TARGETS:-direct,relay,postern,masked}"
DURATION="${BENCH_SECONDS:-10}"
REPEAT="${BENCH_REPEAT:-1}"
read -r -a CLIENTS <<<"${BENCH_CLIENTS:-1 8 32}"
read -r -a MODES <<<"${BENCH_MODES:-simple prepared}"
MAX_THREADS="${BENCH_MAX_THREADS:-2}"
SCALE="${BENCH_SCALE:-10}"
CONNECT_SECONDS="${BENCH_CONNECT_SECONDS:-5}"
IDLE_CLIENTS="${BENCH_IDLE_CLIENTS:-200}"
MASKING_SECONDS="${BENCH_MASKING_SECONDS:-10}"
read -r -a MASKING_CLIENTS <<<"${BENCH_MASKING_CLIENTS:-1 8}"
SSLMODE="${BENCH_SSLMODE:-disable}"
OUT="${BENCH_OUT:-$POSTERN_ROOT/target/bench/pg}"
POSTERN_BIN="${POSTERN_BIN:-$POSTERN_ROOT/target/release/postern}"
RELAY_BIN="$POSTERN_ROOT/target/release/bench-relay"
CLK_TCK="$(getconf CLK_TCK)"

BENCH_DB="postern_bench"
BENCH_ROLE="postern_bench"

has_target() {
    local t
    for t in "${TARGETS[@]}"; do [[ "$t" == "$1" ]] && return 0; done
    return 1
}
for t in "${TARGETS[@]}"; do
    case "$t" in
    direct | relay | postern | masked) ;;
    *) die "unknown target '$t' in BENCH_TARGETS (direct, relay, postern, masked)" ;;
    esac
done
for m in "${MODES[@]}"; do
    case "$m" in
    simple | extended | prepared) ;;
    *) die "unknown pgbench query mode '$m' in BENCH_MODES" ;;
    esac
done

# ---- state and clean-up --------------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/postern-bench-pg.XXXXXX")"
RELAY_PID=""
POSTERN_PID=""
IDLE_PIDS=()
stop_pg=0

stop_idle_sessions() {
    local pid
    for pid in "${IDLE_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${IDLE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    IDLE_PIDS=()
    exec 8>&-
}

cleanup() {
    local rc=$?
    trap - EXIT
    stop_idle_sessions
    stop_pid "$POSTERN_PID" 15
    stop_pid "$RELAY_PID" 5
    rm -rf -- "$WORK"
    if ((stop_pg)) && [[ "${BENCH_KEEP_PG:-0}" != 1 ]]; then
        scripts/test-pg.sh stop || true
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- process measurements ------------------------------------------------------------------
# shellcheck source=../lib/measure.sh
source "$POSTERN_ROOT/bench/lib/measure.sh"
proxy_pid() {
    case "$1" in
    relay) printf '%s\n' "$RELAY_PID" ;;
    postern | masked | masking) printf '%s\n' "$POSTERN_PID" ;;
    *) printf '\n' ;;
    esac
}

# ---- targets: libpq environment per target -------------------------------------------------
declare -A T_PORT T_USER T_PASS T_DB
# Runs a program with the libpq environment of target "$1".
with_target() {
    local t="$1"
    shift
    env PGHOST=127.0.0.1 PGPORT="${T_PORT[$t]}" PGUSER="${T_USER[$t]}" PGPASSWORD="${T_PASS[$t]}" \
        PGDATABASE="${T_DB[$t]}" PGSSLMODE="$SSLMODE" PGAPPNAME="postern-bench" \
        PGCONNECT_TIMEOUT=10 "$@"
}
# Superuser psql over the unix socket of the test cluster.
su_psql() {
    "$POSTERN_TEST_PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$POSTERN_TEST_PG_SOCKET_DIR" \
        -p "$POSTERN_TEST_PG_PORT" -U "$POSTERN_TEST_PG_SUPERUSER" "$@"
}

# =============================================================================================
# Postern interface. Everything that depends on Postern's CLI, config and apply format is in
# this block; adjust it here when they change.
# =============================================================================================
POSTERN_API_PORT=""
POSTERN_PG_PORT=""
POSTERN_DATA="$WORK/postern-data"
POSTERN_USER="bencher"
POSTERN_USER_PASS="bench-$(openssl rand -hex 12)"
POSTERN_MASKED_USER="bencher_masked"
POSTERN_MASKING_USER="bencher_masking"
POSTERN_DATASOURCE="bench"
# The line Postern prints once, on stdout, on first start.
POSTERN_BOOTSTRAP_RE='bootstrap admin password: '

postern_cli() {
    # Keep the CLI's saved login (token) out of the real home directory.
    HOME="$WORK/home" XDG_CONFIG_HOME="$WORK/home/.config" "$POSTERN_BIN" "$@"
}

start_postern() {
    [[ -x "$POSTERN_BIN" ]] || die "$POSTERN_BIN not found (build it, or set POSTERN_BIN)"
    mkdir -p "$WORK/home"
    POSTERN_API_PORT="$(free_port)"
    POSTERN_PG_PORT="$(free_port)"
    {
        printf 'data_dir = "%s"\n' "$POSTERN_DATA"
        if [[ -n "${BENCH_POSTERN_LOG:-}" ]]; then
            printf '\n[log]\nlevel = "%s"\n' "$BENCH_POSTERN_LOG"
        fi
        printf '\n[api]\nlisten = "127.0.0.1:%s"\n' "$POSTERN_API_PORT"
        printf '\n[postgres]\nlisten = "127.0.0.1:%s"\n' "$POSTERN_PG_PORT"
        printf '\n[mysql]\nenabled = false\n'
        printf '\n[ssh]\nenabled = false\n'
        # pgbench cannot answer a second-factor prompt: a lab setting, stated as such.
        printf '\n[auth]\nrequire_2fa = false\n'
    } >"$WORK/postern.toml"

    "$POSTERN_BIN" server --config "$WORK/postern.toml" \
        >"$OUT/logs/postern.stdout" 2>"$OUT/logs/postern.stderr" &
    POSTERN_PID=$!
    local line admin_pass
    line="$(wait_for_line "$OUT/logs/postern.stdout" "$POSTERN_BOOTSTRAP_RE" 60 "$POSTERN_PID")" ||
        die "postern did not print its bootstrap password (see $OUT/logs/postern.std*)"
    admin_pass="${line##*"$POSTERN_BOOTSTRAP_RE"}"
    admin_pass="${admin_pass//[[:space:]]/}"
    wait_for_port "$POSTERN_API_PORT" 30 || die "postern API is not listening on $POSTERN_API_PORT"
    wait_for_port "$POSTERN_PG_PORT" 30 || die "postern is not listening on $POSTERN_PG_PORT"

    printf '%s\n' "$admin_pass" | postern_cli admin login \
        --server "https://127.0.0.1:$POSTERN_API_PORT" --ca "$POSTERN_DATA/ca.crt" --user admin ||
        die "postern admin login failed"

    cat >"$WORK/apply.yaml" <<EOF
datasource:
  - name: $POSTERN_DATASOURCE
    type: postgres
    host: 127.0.0.1
    port: $POSTERN_TEST_PG_PORT
    database: $BENCH_DB
    tls: disable
credential:
  - name: bench
    datasource: $POSTERN_DATASOURCE
    username: $BENCH_ROLE
    password: "$BENCH_PASS"
role:
  - name: bench
    credentials: [bench]
    modes: {$POSTERN_DATASOURCE: passthrough}
  - name: bench_masked
    credentials: [bench]
    modes: {$POSTERN_DATASOURCE: masked}
    privileges:
      - allow: [SELECT]
        on: "$POSTERN_DATASOURCE.*.public.pgbench_*"
      - allow: [SELECT]
        on: "$POSTERN_DATASOURCE.*.public.postern_bench_*"
  - name: bench_masking
    credentials: [bench]
    modes: {$POSTERN_DATASOURCE: masked}
    masking: [bench-pii]
    privileges:
      - allow: [SELECT]
        on: "$POSTERN_DATASOURCE.*.public.pgbench_*"
      - allow: [SELECT]
        on: "$POSTERN_DATASOURCE.*.public.postern_bench_*"
masking-policies:
  - name: bench-pii
    rules:
      - name: email
        on: "$POSTERN_DATASOURCE.*.public.postern_bench_people.email"
        function: email
      - name: card
        on: "$POSTERN_DATASOURCE.*.public.postern_bench_people.card"
        function: credit_card
user:
  - name: $POSTERN_USER
    roles: [bench]
    password: "$POSTERN_USER_PASS"
  - name: $POSTERN_MASKED_USER
    roles: [bench_masked]
    password: "$POSTERN_USER_PASS"
  - name: $POSTERN_MASKING_USER
    roles: [bench_masking]
    password: "$POSTERN_USER_PASS"
EOF
    postern_cli apply -f "$WORK/apply.yaml" || die "postern apply failed"

    # How benchmark clients reach the datasource through Postern.
    T_PORT[postern]="$POSTERN_PG_PORT"
    T_USER[postern]="$POSTERN_USER"
    T_PASS[postern]="$POSTERN_USER_PASS"
    T_DB[postern]="$POSTERN_DATASOURCE"
    T_PORT[masked]="$POSTERN_PG_PORT"
    T_USER[masked]="$POSTERN_MASKED_USER"
    T_PASS[masked]="$POSTERN_USER_PASS"
    T_DB[masked]="$POSTERN_DATASOURCE"
    T_PORT[masking]="$POSTERN_PG_PORT"
    T_USER[masking]="$POSTERN_MASKING_USER"
    T_PASS[masking]="$POSTERN_USER_PASS"
    T_DB[masking]="$POSTERN_DATASOURCE"
    log "postern: pid $POSTERN_PID, API 127.0.0.1:$POSTERN_API_PORT, PG 127.0.0.1:$POSTERN_PG_PORT"
}
# =============================================================================================

start_relay() {
    "$RELAY_BIN" --listen 127.0.0.1:0 --upstream "127.0.0.1:$POSTERN_TEST_PG_PORT" \
        >"$OUT/logs/relay.stdout" 2>"$OUT/logs/relay.stderr" &
    RELAY_PID=$!
    local line
    line="$(wait_for_line "$OUT/logs/relay.stdout" '^listening on ' 30 "$RELAY_PID")" ||
        die "bench-relay did not start (see $OUT/logs/relay.stderr)"
    T_PORT[relay]="${line##*:}"
    T_USER[relay]="$BENCH_ROLE"
    T_PASS[relay]="$BENCH_PASS"
    T_DB[relay]="$BENCH_DB"
    log "relay: pid $RELAY_PID, 127.0.0.1:${T_PORT[relay]} -> 127.0.0.1:$POSTERN_TEST_PG_PORT"
}

# ---- 1. build ------------------------------------------------------------------------------
mkdir -p "$OUT"
rm -rf "$OUT/logs"
mkdir -p "$OUT/logs"
scripts/ensure-deps.sh
if [[ "${BENCH_BUILD:-1}" == 1 ]]; then
    section "build (release)"
    pkgs=(-p bench-relay)
    if has_target postern; then pkgs+=(-p postern); fi
    cargo build --release "${pkgs[@]}"
fi

# ---- 2. upstream ---------------------------------------------------------------------------
section "upstream PostgreSQL (scripts/test-pg.sh)"
if ! scripts/test-pg.sh status 2>/dev/null; then
    stop_pg=1
fi
want_conns=$((IDLE_CLIENTS + 100))
((want_conns >= 300)) || want_conns=300
POSTERN_TEST_PG_MAX_CONNECTIONS="$want_conns" scripts/test-pg.sh start
# shellcheck disable=SC1090
source "${POSTERN_TEST_PG_ENV_FILE:-$POSTERN_ROOT/target/test-pg.env}"
PGBENCH="$POSTERN_TEST_PG_BIN/pgbench"
PSQL="$POSTERN_TEST_PG_BIN/psql"

have_conns="$(su_psql -d postgres -c "show max_connections")"
if ((IDLE_CLIENTS > 0 && have_conns < want_conns)); then
    warn "the reused cluster allows $have_conns connections; $BENCH_IDLE_CLIENTS idle sessions need $want_conns (stop it: scripts/test-pg.sh stop)"
fi

BENCH_PASS="bench-$(openssl rand -hex 12)"
if [[ "$(su_psql -d postgres -c "select 1 from pg_roles where rolname = '$BENCH_ROLE'")" != 1 ]]; then
    su_psql -d postgres -c "create role $BENCH_ROLE login"
fi
su_psql -d postgres -c "alter role $BENCH_ROLE password '$BENCH_PASS'"
if [[ "$(su_psql -d postgres -c "select 1 from pg_database where datname = '$BENCH_DB'")" != 1 ]]; then
    su_psql -d postgres -c "create database $BENCH_DB owner $BENCH_ROLE"
fi
have_scale="$(su_psql -d "$BENCH_DB" -c "select count(*) from pgbench_branches" 2>/dev/null || true)"
if [[ "$have_scale" == "$SCALE" ]]; then
    log "pgbench data at scale $SCALE already present"
else
    log "pgbench -i -s $SCALE (directly, as $BENCH_ROLE)"
    "$PGBENCH" -i -q -s "$SCALE" -h "$POSTERN_TEST_PG_SOCKET_DIR" -p "$POSTERN_TEST_PG_PORT" \
        -U "$BENCH_ROLE" "$BENCH_DB" >"$OUT/logs/pgbench-init.log" 2>&1 ||
        die "pgbench -i failed (see $OUT/logs/pgbench-init.log)"
fi
# The people table of the masking workload (step 7): 10,000 rows, built once.
if [[ "$(su_psql -d "$BENCH_DB" -c "select count(*) from postern_bench_people" 2>/dev/null || true)" != 10000 ]]; then
    log "creating postern_bench_people (10,000 rows)"
    su_psql -d "$BENCH_DB" <<'SQL'
drop table if exists postern_bench_people;
create table postern_bench_people (
    id int primary key, name text not null, email text not null, card text not null,
    salary numeric(10, 2) not null, born date not null);
insert into postern_bench_people
select i, 'Person ' || i, 'person' || i || '@example.com',
       lpad((4000000000000000 + i * 7919)::text, 16, '0'),
       20000 + (i * 37) % 90000, date '1950-01-01' + (i * 13) % 20000
  from generate_series(1, 10000) i;
analyze postern_bench_people;
SQL
    su_psql -d "$BENCH_DB" -c "alter table postern_bench_people owner to $BENCH_ROLE"
fi
T_PORT[direct]="$POSTERN_TEST_PG_PORT"
T_USER[direct]="$BENCH_ROLE"
T_PASS[direct]="$BENCH_PASS"
T_DB[direct]="$BENCH_DB"

# ---- 3. proxies ----------------------------------------------------------------------------
section "proxies"
# (Not `has_target x && start_x`: `set -e` would be off inside start_x.)
if has_target relay; then start_relay; fi
if has_target postern || has_target masked; then start_postern; fi
for t in "${TARGETS[@]}"; do
    with_target "$t" "$PSQL" -X -q -At -c "select count(*) from pgbench_branches" >/dev/null 2>"$OUT/logs/check-$t.log" ||
        die "cannot query through target '$t' (see $OUT/logs/check-$t.log)"
done
log "every target answers: ${TARGETS[*]}"

# ---- 4. throughput -------------------------------------------------------------------------
RESULTS="$OUT/throughput.tsv"
printf 'target\tmode\tclients\trep\ttps\tlatency_ms\ttransactions\tproxy_cpu_us_per_stmt\n' >"$RESULTS"
total_runs=$((${#MODES[@]} * ${#CLIENTS[@]} * ${#TARGETS[@]} * REPEAT))
section "throughput: pgbench -S, ${DURATION}s per run, $total_runs runs"
run=0
for mode in "${MODES[@]}"; do
    for clients in "${CLIENTS[@]}"; do
        threads=$((clients < MAX_THREADS ? clients : MAX_THREADS))
        for ((rep = 1; rep <= REPEAT; rep++)); do
            for t in "${TARGETS[@]}"; do
                run=$((run + 1))
                logf="$OUT/logs/pgbench-$t-$mode-c$clients-r$rep.log"
                pid="$(proxy_pid "$t")"
                ticks0=""
                [[ -n "$pid" ]] && ticks0="$(cpu_ticks "$pid")"
                rc=0
                with_target "$t" "$PGBENCH" -n -S -M "$mode" -T "$DURATION" -c "$clients" -j "$threads" \
                    >"$logf" 2>&1 || rc=$?
                cpu="-"
                tps="$(awk -F'[ =]+' '/^tps = / { print $2; exit }' "$logf")"
                lat="$(awk '/^latency average = / { print $4; exit }' "$logf")"
                txns="$(awk -F': ' '/^number of transactions actually processed/ { print $2; exit }' "$logf")"
                if [[ -n "$pid" && -n "$txns" && "$txns" != 0 ]]; then
                    ticks1="$(cpu_ticks "$pid")"
                    cpu="$(awk -v d="$((ticks1 - ticks0))" -v hz="$CLK_TCK" -v n="$txns" \
                        'BEGIN { printf "%.1f", d / hz * 1e6 / n }')"
                fi
                if ((rc != 0)) || [[ -z "$tps" ]]; then
                    warn "pgbench failed for $t $mode c=$clients (exit $rc): see $logf"
                    tps="ERR" lat="-" txns="-" cpu="-"
                fi
                printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$mode" "$clients" "$rep" "$tps" "${lat:--}" "${txns:--}" "$cpu" >>"$RESULTS"
                log "[$run/$total_runs] $t $mode c=$clients round $rep: tps=$tps latency=${lat:--}ms cpu/stmt=${cpu}us"
            done
        done
    done
done

# ---- 5. connection set-up ------------------------------------------------------------------
CONNECT="$OUT/connect.tsv"
printf 'target\tconnections_per_s\tavg_connect_ms\n' >"$CONNECT"
if ((CONNECT_SECONDS > 0)); then
    section "connection set-up: pgbench -C -S -c 1, ${CONNECT_SECONDS}s per target"
    for t in "${TARGETS[@]}"; do
        logf="$OUT/logs/pgbench-$t-connect.log"
        rc=0
        with_target "$t" "$PGBENCH" -n -C -S -T "$CONNECT_SECONDS" -c 1 -j 1 >"$logf" 2>&1 || rc=$?
        tps="$(awk -F'[ =]+' '/^tps = / { print $2; exit }' "$logf")"
        conn="$(awk '/^average connection time = / { print $5; exit }' "$logf")"
        if ((rc != 0)) || [[ -z "$tps" ]]; then
            warn "pgbench -C failed for $t (exit $rc): see $logf"
            tps="ERR" conn="-"
        fi
        printf '%s\t%s\t%s\n' "$t" "$tps" "${conn:--}" >>"$CONNECT"
        log "$t: ${tps} connections/s, average connection time ${conn:--} ms"
    done
fi

# ---- 6. memory per idle session ------------------------------------------------------------
IDLE="$OUT/idle.tsv"
printf 'target\tsessions\trss_before_kb\trss_after_kb\tkb_per_session\n' >"$IDLE"
upstream_sessions() {
    su_psql -d postgres -c \
        "select count(*) from pg_stat_activity where usename = '$BENCH_ROLE' and datname = '$BENCH_DB'"
}
if ((IDLE_CLIENTS > 0)); then
    section "memory: $IDLE_CLIENTS idle sessions per proxy"
    for t in "${TARGETS[@]}"; do
        pid="$(proxy_pid "$t")"
        [[ -n "$pid" ]] || continue
        fifo="$WORK/idle.fifo"
        rm -f "$fifo"
        mkfifo "$fifo"
        exec 8<>"$fifo" # a writer that never writes: every psql waits for input forever
        base="$(upstream_sessions)"
        rss0="$(rss_kb "$pid")"
        for ((i = 0; i < IDLE_CLIENTS; i++)); do
            # Not a function call in the background (that would fork a subshell): env + psql.
            env PGHOST=127.0.0.1 PGPORT="${T_PORT[$t]}" PGUSER="${T_USER[$t]}" \
                PGPASSWORD="${T_PASS[$t]}" PGDATABASE="${T_DB[$t]}" PGSSLMODE="$SSLMODE" \
                PGAPPNAME="postern-bench-idle" PGCONNECT_TIMEOUT=30 \
                "$PSQL" -X -q -At <"$fifo" >/dev/null 2>>"$OUT/logs/idle-$t.log" 8>&- &
            IDLE_PIDS+=($!)
        done
        # Wait until the upstream shows every session (at most 60 s: an upstream connection
        # opened lazily would never show), then count the psql processes still alive (a psql
        # that failed to connect has exited).
        alive_sessions() {
            local p n=0
            for p in "${IDLE_PIDS[@]}"; do
                if kill -0 "$p" 2>/dev/null; then n=$((n + 1)); fi
            done
            printf '%s\n' "$n"
        }
        now="$base"
        for ((i = 0; i < 600; i++)); do
            now="$(upstream_sessions)"
            ((now - base >= IDLE_CLIENTS)) && break
            (($(alive_sessions) == 0)) && break
            sleep 0.1
        done
        sleep 1
        rss1="$(rss_kb "$pid")"
        opened="$(alive_sessions)"
        if ((opened < IDLE_CLIENTS)); then
            warn "$t: only $opened of $IDLE_CLIENTS psql sessions are connected (see $OUT/logs/idle-$t.log)"
        fi
        if ((now - base < opened)); then
            warn "$t: the upstream shows $((now - base)) of $opened sessions"
        fi
        per="-"
        ((opened > 0)) && per="$(awk -v a="$rss0" -v b="$rss1" -v n="$opened" 'BEGIN { printf "%.1f", (b - a) / n }')"
        printf '%s\t%s\t%s\t%s\t%s\n' "$t" "$opened" "$rss0" "$rss1" "$per" >>"$IDLE"
        log "$t: RSS ${rss0} kB -> ${rss1} kB with $opened idle sessions: $per kB/session"
        stop_idle_sessions
        rm -f "$fifo"
        # Let the sessions close before the next target.
        for ((i = 0; i < 100; i++)); do
            (($(upstream_sessions) <= base)) && break
            sleep 0.1
        done
    done
fi

# ---- 7. masking workload -------------------------------------------------------------------
MASKING="$OUT/masking.tsv"
printf 'target\tmode\tclients\ttps\tlatency_ms\tproxy_cpu_us_per_stmt\n' >"$MASKING"
if ((MASKING_SECONDS > 0)) && has_target masked; then
    mtargets=(masked masking)
    if has_target direct; then mtargets=(direct "${mtargets[@]}"); fi
    script="$WORK/masking.sql"
    cat >"$script" <<'SQL'
\set a random(1, 9901)
select id, name, email, card, salary, born from postern_bench_people where id between :a and :a + 99;
SQL
    # The masked values really are masked (and the unmasked target sees them in clear).
    seen="$(with_target masking "$PSQL" -X -q -At -c "select email, card from postern_bench_people where id = 1")"
    [[ "$seen" == 'p***@example.com|************7919' ]] ||
        die "masking target does not mask as expected: '$seen'"
    seen="$(with_target masked "$PSQL" -X -q -At -c "select email from postern_bench_people where id = 1")"
    [[ "$seen" == 'person1@example.com' ]] || die "masked target does not see clear values: '$seen'"
    section "masking: 100-row result, two masked columns, ${MASKING_SECONDS}s per run"
    for mode in "${MODES[@]}"; do
        for clients in "${MASKING_CLIENTS[@]}"; do
            threads=$((clients < MAX_THREADS ? clients : MAX_THREADS))
            for t in "${mtargets[@]}"; do
                logf="$OUT/logs/pgbench-masking-$t-$mode-c$clients.log"
                pid="$(proxy_pid "$t")"
                ticks0=""
                [[ -n "$pid" ]] && ticks0="$(cpu_ticks "$pid")"
                rc=0
                with_target "$t" "$PGBENCH" -n -f "$script" -M "$mode" -T "$MASKING_SECONDS" \
                    -c "$clients" -j "$threads" >"$logf" 2>&1 || rc=$?
                tps="$(awk -F'[ =]+' '/^tps = / { print $2; exit }' "$logf")"
                lat="$(awk '/^latency average = / { print $4; exit }' "$logf")"
                txns="$(awk -F': ' '/^number of transactions actually processed/ { print $2; exit }' "$logf")"
                cpu="-"
                if [[ -n "$pid" && -n "$txns" && "$txns" != 0 ]]; then
                    ticks1="$(cpu_ticks "$pid")"
                    cpu="$(awk -v d="$((ticks1 - ticks0))" -v hz="$CLK_TCK" -v n="$txns" \
                        'BEGIN { printf "%.1f", d / hz * 1e6 / n }')"
                fi
                if ((rc != 0)) || [[ -z "$tps" ]]; then
                    warn "pgbench failed for masking workload $t $mode c=$clients (exit $rc): see $logf"
                    tps="ERR" lat="-" cpu="-"
                fi
                printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$mode" "$clients" "$tps" "${lat:--}" "$cpu" >>"$MASKING"
                log "masking workload: $t $mode c=$clients: tps=$tps latency=${lat:--}ms cpu/stmt=${cpu}us"
            done
        done
    done
fi

# ---- 8. report -----------------------------------------------------------------------------
section "results"
python3 - "$RESULTS" "$CONNECT" "$IDLE" "$DURATION" "$MASKING" <<'EOF' | tee "$OUT/summary.txt"
import csv, sys

def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f, delimiter="\t"))

def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None

def fmt(v, spec):
    n = num(v)
    return format(n, spec) if n is not None else (v or "-")

def ratio(a, b):
    a, b = num(a), num(b)
    return f"{a / b:.2f}" if a is not None and b else "-"

thr, conn, idle, duration = rows(sys.argv[1]), rows(sys.argv[2]), rows(sys.argv[3]), sys.argv[4]

def median(vals):
    vals = sorted(v for v in vals if v is not None)
    if not vals:
        return None
    m = len(vals) // 2
    return vals[m] if len(vals) % 2 else (vals[m - 1] + vals[m]) / 2

# Per (mode, clients, target): the rounds' values; per round, the ratios against direct and
# relay measured in that same round (neighbours in time, so the fairest comparison).
keys, runs = [], {}
for r in thr:
    k = (r["mode"], r["clients"], r["target"])
    if k not in runs:
        keys.append(k)
        runs[k] = []
    runs[k].append(r)
by_round = {(r["mode"], r["clients"], r["target"], r["rep"]): r for r in thr}

def round_ratios(k, base, field):
    out = []
    for r in runs[k]:
        b = by_round.get((k[0], k[1], base, r["rep"]))
        a, bv = num(r[field]), num(b[field]) if b else None
        if a is not None and bv:
            out.append(a / bv)
    return out

def show(vals):
    m = median(vals)
    return "-" if m is None else f"{m:.2f}"

def spread(vals):
    return f"{min(vals):.2f}-{max(vals):.2f}" if len(vals) > 1 else ""

rounds = max((len(v) for v in runs.values()), default=1)
print(f"Throughput: pgbench -S (select only), {duration}s per run, {rounds} round(s); medians over rounds")
print("  ratios: TPS and latency of a target divided by those of direct / relay in the same round (TPS > 1 is faster, latency < 1 is faster);")
print("  masked = Postern in MASKED PASSTHROUGH mode (every statement analysed and checked); TPS/passthru = masked / postern")
hdr = f"{'mode':<9}{'clients':>8}  {'target':<8}{'TPS':>11}{'lat ms':>9}{'CPU us/stmt':>13}" \
      f"{'TPS/direct':>12}{'lat/direct':>12}{'TPS/relay':>11}{'lat/relay':>11}{'TPS/passthru':>16}" + (f"{'TPS/relay range':>17}" if rounds > 1 else "")
print(hdr)
print("-" * len(hdr))
prev = None
for k in keys:
    mode, clients, t = k
    if prev is not None and (mode, clients) != prev:
        print()
    prev = (mode, clients)
    rs = runs[k]
    tps = median([num(r["tps"]) for r in rs])
    lat = median([num(r["latency_ms"]) for r in rs])
    cpu = median([num(r["proxy_cpu_us_per_stmt"]) for r in rs])
    vs_d = (show(round_ratios(k, "direct", "tps")), show(round_ratios(k, "direct", "latency_ms"))) if t != "direct" else ("", "")
    proxied = t in ("postern", "masked")
    rel = round_ratios(k, "relay", "tps") if proxied else []
    vs_r = (show(rel), show(round_ratios(k, "relay", "latency_ms"))) if proxied else ("", "")
    vs_p = show(round_ratios(k, "postern", "tps")) if t == "masked" else ""
    line = (f"{mode:<9}{clients:>8}  {t:<8}{fmt(tps, '.0f'):>11}{fmt(lat, '.3f'):>9}"
            f"{fmt(cpu, '.1f'):>13}{vs_d[0]:>12}{vs_d[1]:>12}{vs_r[0]:>11}{vs_r[1]:>11}{vs_p:>16}")
    if rounds > 1:
        line += f"{spread(rel):>17}"
    print(line)

if conn:
    print()
    print("Connection set-up: pgbench -C -S -c 1 (one new connection per statement)")
    d = next((r for r in conn if r["target"] == "direct"), None)
    hdr = f"{'target':<10}{'conn/s':>10}{'avg connect ms':>16}{'conn/s vs direct':>18}"
    print(hdr)
    print("-" * len(hdr))
    for r in conn:
        rel = ratio(r["connections_per_s"], d["connections_per_s"]) if d and r["target"] != "direct" else ""
        print(f"{r['target']:<10}{fmt(r['connections_per_s'], '.1f'):>10}{fmt(r['avg_connect_ms'], '.2f'):>16}{rel:>18}")

if idle:
    print()
    print("Memory: proxy RSS growth per idle session (each also holds one upstream backend)")
    hdr = f"{'target':<10}{'sessions':>10}{'RSS before kB':>15}{'RSS after kB':>14}{'kB/session':>12}"
    print(hdr)
    print("-" * len(hdr))
    for r in idle:
        print(f"{r['target']:<10}{r['sessions']:>10}{r['rss_before_kb']:>15}{r['rss_after_kb']:>14}{r['kb_per_session']:>12}")

masking = rows(sys.argv[5])
if masking:
    print()
    print("Masking: 100-row result with two masked columns (email, credit_card) of six")
    print("  masked = MASKED mode without masking rules; masking = MASKED mode with the two rules;")
    print("  TPS/masked = masking / masked (target >= 0.80)")
    by = {(r["mode"], r["clients"], r["target"]): r for r in masking}
    hdr = f"{'mode':<9}{'clients':>8}  {'target':<9}{'TPS':>10}{'lat ms':>9}{'CPU us/stmt':>13}{'TPS/direct':>12}{'TPS/masked':>12}"
    print(hdr)
    print("-" * len(hdr))
    prev = None
    for r in masking:
        k = (r["mode"], r["clients"])
        if prev is not None and k != prev:
            print()
        prev = k
        d = by.get(k + ("direct",))
        m = by.get(k + ("masked",))
        vs_d = ratio(r["tps"], d["tps"]) if d and r["target"] != "direct" else ""
        vs_m = ratio(r["tps"], m["tps"]) if m and r["target"] == "masking" else ""
        print(f"{r['mode']:<9}{r['clients']:>8}  {r['target']:<9}{fmt(r['tps'], '.0f'):>10}{fmt(r['latency_ms'], '.3f'):>9}"
              f"{fmt(r['proxy_cpu_us_per_stmt'], '.1f'):>13}{vs_d:>12}{vs_m:>12}")
EOF
log ""
log "results in $OUT (throughput.tsv, connect.tsv, idle.tsv, masking.tsv, summary.txt, logs/)"
