#!/usr/bin/env bash
# What authentication and TLS cost on ingest: the same workload against
# `xtdb serve` plain, with `--auth on` (a read+write token), and with TLS on
# both listeners plus auth ("tls"), in alternating rounds (plain, auth, tls,
# then auth, tls, plain, ...: the order rotates), so drift on a shared
# machine hits every mode alike.
#
# Every run first writes one warm-up tick (one point per tag), which
# creates every series, then measures: ingest into known series, which is
# what a running plant sends. Without it the HTTP runs measure series
# creation instead, and since the per-client new-series limit (10K/s by
# default) most of a fresh run's requests were 429s whose parsing counted
# against the points acknowledged. The server is started with
# `--max-new-series-per-second` of NEW_SERIES (default 10 x TAGS) so the
# warm-up is one pass.
#
# COUNT=cpu (default): each run writes for DURATION; prints every run and
# the median per mode, with its ratio to plain, for throughput and for the
# server's CPU time per point (the sum of its threads'
# /proc/PID/task/*/schedstat run times over the load run: steadier than
# throughput on a shared machine, but still moved by whatever shares the
# core).
#
# COUNT=instructions: each run writes TICKS ticks (TICKS x TAGS points)
# and counts the server's instructions per acknowledged point over them,
# which other load on the machine does not move: `perf stat -e
# instructions:u,instructions:k -p PID` where the CPU's counters are
# available, else the server runs under `valgrind --tool=callgrind`
# (user-space instructions only, of every thread, counted between
# `callgrind_control -z` and `-d`; some 50 times slower, so use a few
# ticks). COUNTER=perf|callgrind forces one.
#
#   http:   xtdb-load write --protocol influx-http --target http[s]://... \
#           [--token T] [--tls-ca CA]   (line protocol, batches of BATCH lines)
#   native: xtdb-load write [--token T] [--tls-ca CA]   (binary protocol)
#
# The server is pinned to SERVER_CPU (one shard), the generator to GEN_CPU.
# TLS uses a CA and a certificate for 127.0.0.1 made with openssl in the
# work dir (removed at exit). Knobs (environment): PROTOCOLS ("http
# native"), MODES ("plain auth tls"), ROUNDS (3), TAGS (100000), BATCH
# (5000), CONNS (4), DURATION (15s), COUNT (cpu), TICKS (20 with perf, 2
# with callgrind), COUNTER, NEW_SERIES, SERVER_CPU (1), GEN_CPU (0),
# BENCH_DIR (default a new temp dir, removed).
set -euo pipefail

cd "$(dirname "$0")/.."
PROTOCOLS=${PROTOCOLS:-"http native"}
MODES=${MODES:-"plain auth tls"}
ROUNDS=${ROUNDS:-3}
TAGS=${TAGS:-100000}
BATCH=${BATCH:-5000}
CONNS=${CONNS:-4}
DURATION=${DURATION:-15s}
COUNT=${COUNT:-cpu}
NEW_SERIES=${NEW_SERIES:-$((TAGS * 10))}
SERVER_CPU=${SERVER_CPU:-1}
GEN_CPU=${GEN_CPU:-0}
if [ "$(nproc)" -lt 2 ]; then SERVER_CPU=0; GEN_CPU=0; fi
case $COUNT in
cpu) ;;
instructions)
    if [ -z "${COUNTER:-}" ]; then
        if perf stat -x, -e instructions:u true 2>&1 >/dev/null | grep -q '^[0-9]'; then
            COUNTER=perf
        elif command -v valgrind >/dev/null && command -v callgrind_control >/dev/null; then
            COUNTER=callgrind
            echo "auth_bench: no hardware instruction counter (perf stat -e instructions: not supported); using callgrind" >&2
        else
            echo "auth_bench: COUNT=instructions needs perf with hardware counters or valgrind" >&2
            exit 2
        fi
    fi
    case $COUNTER in
    perf) TICKS=${TICKS:-20} ;;
    callgrind) TICKS=${TICKS:-2} ;;
    *) echo "auth_bench: COUNTER is perf or callgrind, not $COUNTER" >&2; exit 2 ;;
    esac
    ;;
*) echo "auth_bench: COUNT is cpu or instructions, not $COUNT" >&2; exit 2 ;;
esac

cargo build --release --bins >&2
BIN=target/release

WORK_DIR=${BENCH_DIR:-}
. scripts/lib.sh
setup_work_dir xtdb-auth-bench

pki="$WORK_DIR/pki"
mkdir -p "$pki"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=xtdb bench CA" -keyout "$pki/ca-key.pem" -out "$pki/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=127.0.0.1" -keyout "$pki/key.pem" -out "$pki/req.pem" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$pki/ext.cnf"
openssl x509 -req -in "$pki/req.pem" -CA "$pki/ca.pem" -CAkey "$pki/ca-key.pem" \
    -CAcreateserial -days 2 -extfile "$pki/ext.cnf" -out "$pki/cert.pem" 2>/dev/null

json_get() { python3 -c 'import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); v=d
for k in sys.argv[1].split("."): v=v[k]
print(v)' "$1"; }

cpu_ns() { # pid: CPU time of all its threads, ns
    cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s+=$1} END {printf "%.0f", s}'
}

wait_ready() { # log
    for _ in $(seq 1 6000); do # 600 s: under valgrind a start takes ~20 s
        grep -q "ready" "$1" 2>/dev/null && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# instructions PERF_OUT: "user kernel" instructions counted by perf stat
perf_instructions() {
    # The counts as printed: mawk would print numbers past 2^31 as 3.5e+13.
    awk -F, '$3 ~ /^instructions:u/ && $1 ~ /^[0-9]+$/ {u=$1}
             $3 ~ /^instructions:k/ && $1 ~ /^[0-9]+$/ {k=$1}
             END {print (u == "" ? 0 : u), (k == "" ? 0 : k)}' "$1"
}

# run PROTOCOL MODE: prints "points/s p50_us p99_us cpu_ns_per_point"
# (COUNT=cpu) or "instructions_per_point user_per_point kernel_per_point"
# (COUNT=instructions; kernel is 0 under callgrind)
run() {
    local proto=$1 mode=$2 dir="$WORK_DIR/run"
    rm -rf "$dir"; mkdir -p "$dir"
    local args=(--max-new-series-per-second "$NEW_SERIES") client=() scheme=http
    if [ "$mode" != plain ]; then
        local token
        token=$("$BIN/xtdb" token create --data-dir "$dir/data" --name bench --read --write | tail -n 1)
        args+=(--auth on)
        client+=(--token "$token")
    fi
    if [ "$mode" = tls ]; then
        args+=(--tls-cert "$pki/cert.pem" --tls-key "$pki/key.pem")
        client+=(--tls-ca "$pki/ca.pem")
        scheme=https
    fi
    local port hport wrap=()
    port=$(free_port); hport=$(free_port)
    if [ "$COUNT" = instructions ] && [ "$COUNTER" = callgrind ]; then
        wrap=(valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out")
    fi
    taskset -c "$SERVER_CPU" "${wrap[@]}" "$BIN/xtdb" serve --data-dir "$dir/data" --cpus "$SERVER_CPU" \
        --listen "127.0.0.1:$port" --http "127.0.0.1:$hport" "${args[@]}" >"$dir/server.log" 2>&1 &
    SERVER_PID=$!
    wait_ready "$dir/server.log" || { cat "$dir/server.log" >&2; exit 1; }
    local target=()
    if [ "$proto" = http ]; then
        target=(--protocol influx-http --target "$scheme://127.0.0.1:$hport/write?db=xtdb")
    else
        target=(--addr "127.0.0.1:$port")
    fi
    load() {
        "$BIN/xtdb-load" write "${target[@]}" "${client[@]}" --tags "$TAGS" --batch "$BATCH" \
            --conns "$CONNS" --cpus "$GEN_CPU" --json -q "$@"
    }
    # The warm-up tick creates every series; the measured run's points
    # come one second of virtual time later (a tick is 1 ms).
    local t0=$(( $(date +%s) * 1000000 ))
    local warm
    warm=$(load --ticks 1 --t0 "$t0" || true)
    if [ "$(echo "$warm" | json_get points_acked)" != "$TAGS" ]; then
        echo "auth_bench: the warm-up tick was not acknowledged whole: $warm" >&2
        cat "$dir/server.log" >&2
        exit 1
    fi
    local out acked
    if [ "$COUNT" = cpu ]; then
        local cpu0 cpu1
        cpu0=$(cpu_ns "$SERVER_PID")
        out=$(load --duration "$DURATION" --t0 $((t0 + 1000000)) || true)
        cpu1=$(cpu_ns "$SERVER_PID")
        stop_server
        acked=$(echo "$out" | json_get points_acked)
        echo "$(echo "$out" | json_get points_per_sec) $(echo "$out" | json_get latency_us.p50) $(echo "$out" | json_get latency_us.p99) $(python3 -c "print(f'{($cpu1-$cpu0)/max($acked,1):.1f}')")"
        return
    fi
    local user kernel perf_pid=""
    if [ "$COUNTER" = perf ]; then
        perf stat -x, -e instructions:u,instructions:k -o "$dir/perf.txt" -p "$SERVER_PID" &
        perf_pid=$!
        sleep 0.5 # perf attached to every thread
    else
        callgrind_control -z "$SERVER_PID" >/dev/null 2>&1
    fi
    out=$(load --ticks "$TICKS" --t0 $((t0 + 1000000)) || true)
    if [ "$COUNTER" = perf ]; then
        kill -INT "$perf_pid"; wait "$perf_pid" || true
        read -r user kernel <<<"$(perf_instructions "$dir/perf.txt")"
        if [ "$user" = 0 ]; then
            echo "auth_bench: perf counted no instructions (are hardware counters available?):" >&2
            cat "$dir/perf.txt" >&2
            stop_server
            exit 1
        fi
    else
        callgrind_control -d "$SERVER_PID" >/dev/null 2>&1
        user=$(callgrind_annotate "$dir"/callgrind.out.1 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
        kernel=0
    fi
    stop_server
    acked=$(echo "$out" | json_get points_acked)
    if [ "$acked" != $((TAGS * TICKS)) ]; then
        echo "auth_bench: $acked of $((TAGS * TICKS)) points acknowledged: $out" >&2
        exit 1
    fi
    python3 -c "u, k, a = $user, $kernel, $acked; print(f'{(u + k) / a:.1f} {u / a:.1f} {k / a:.1f}')"
}

declare -A ALL CPU USER KERN
for proto in $PROTOCOLS; do
    for r in $(seq 1 "$ROUNDS"); do
        # Rotate the order each round (plain auth tls, auth tls plain, ...)
        # so no mode always runs first, after the previous run's cleanup.
        modes=($MODES)
        k=$(( (r - 1) % ${#modes[@]} ))
        for mode in "${modes[@]:k}" "${modes[@]:0:k}"; do
            res=$(run "$proto" "$mode")
            if [ "$COUNT" = cpu ]; then
                read -r rate p50 p99 cpu <<<"$res"
                ALL[$proto.$mode]="${ALL[$proto.$mode]:-} $rate"
                CPU[$proto.$mode]="${CPU[$proto.$mode]:-} $cpu"
                printf '%s %-5s round %s: %s points/s, batch p50 %s us, p99 %s us, server CPU %s ns/point\n' \
                    "$proto" "$mode" "$r" "$rate" "$p50" "$p99" "$cpu" >&2
            else
                read -r ins user kern <<<"$res"
                ALL[$proto.$mode]="${ALL[$proto.$mode]:-} $ins"
                USER[$proto.$mode]="${USER[$proto.$mode]:-} $user"
                KERN[$proto.$mode]="${KERN[$proto.$mode]:-} $kern"
                printf '%s %-5s round %s: %s server instructions/point (user %s, kernel %s)\n' \
                    "$proto" "$mode" "$r" "$ins" "$user" "$kern" >&2
            fi
        done
    done
done

median() { python3 -c 'import sys,statistics; print(f"{statistics.median(float(x) for x in sys.argv[1:]):.1f}")' "$@"; }
ratio() { python3 -c "print(f'{$1/$2:.3f}' if $2 else '-')"; }
runs() { echo "$@" | sed 's/ / \/ /g'; }

echo
if [ "$COUNT" = cpu ]; then
    echo "Ingest with auth and TLS, $TAGS tags (created by a warm-up tick first), batches of $BATCH, $CONNS connections, $DURATION per run, $ROUNDS alternating rounds; server (1 shard) on CPU $SERVER_CPU, generator on CPU $GEN_CPU ($(date -u +%F))"
    echo
    echo "| protocol | mode | runs (points/s) | median | ÷ plain | server CPU ns/point (runs) | median | ÷ plain |"
    echo "|---|---|---|---|---|---|---|---|"
    for proto in $PROTOCOLS; do
        base=$(median ${ALL[$proto.plain]:-0})
        cbase=$(median ${CPU[$proto.plain]:-0})
        for mode in $MODES; do
            m=$(median ${ALL[$proto.$mode]})
            c=$(median ${CPU[$proto.$mode]})
            echo "| $proto | $mode | $(runs ${ALL[$proto.$mode]}) | $m | $(ratio "$m" "$base") | $(runs ${CPU[$proto.$mode]}) | $c | $(ratio "$c" "$cbase") |"
        done
    done
else
    echo "Server instructions per acknowledged point ($COUNTER), $TAGS tags (created by a warm-up tick first), $TICKS ticks ($((TAGS * TICKS)) points) per run, batches of $BATCH, $CONNS connections, $ROUNDS alternating rounds; server (1 shard) on CPU $SERVER_CPU, generator on CPU $GEN_CPU ($(date -u +%F))"
    echo
    echo "| protocol | mode | instructions/point (runs) | median | ÷ plain | user (median) | kernel (median) |"
    echo "|---|---|---|---|---|---|---|"
    for proto in $PROTOCOLS; do
        base=$(median ${ALL[$proto.plain]:-0})
        for mode in $MODES; do
            m=$(median ${ALL[$proto.$mode]})
            echo "| $proto | $mode | $(runs ${ALL[$proto.$mode]}) | $m | $(ratio "$m" "$base") | $(median ${USER[$proto.$mode]}) | $(median ${KERN[$proto.$mode]}) |"
        done
    done
fi
