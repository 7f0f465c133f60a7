#!/usr/bin/env bash
# What authentication and TLS cost on ingest: the same workload against
# `xtdb serve` plain, with `--auth on` (a read+write token), and with TLS on
# both listeners plus auth ("tls"), in alternating rounds (plain, auth, tls,
# then auth, tls, plain, ...: the order rotates), so drift on a shared
# machine hits every mode alike.
# Prints every run and the median per mode, with its ratio to plain, for
# throughput and for the server's CPU time per point (the sum of its
# threads' /proc/PID/task/*/schedstat run times over the load run: steadier
# than throughput on a shared machine).
#
#   http:   xtdb-load write --protocol influx-http --target http[s]://... \
#           [--token T] [--tls-ca CA]   (line protocol, batches of BATCH lines)
#   native: xtdb-load write [--token T] [--tls-ca CA]   (binary protocol)
#
# The server is pinned to SERVER_CPU (one shard), the generator to GEN_CPU.
# TLS uses a CA and a certificate for 127.0.0.1 made with openssl in the
# work dir (removed at exit). Knobs (environment): PROTOCOLS ("http
# native"), MODES ("plain auth tls"), ROUNDS (3), TAGS (100000), BATCH
# (5000), CONNS (4), DURATION (15s), SERVER_CPU (1), GEN_CPU (0),
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
SERVER_CPU=${SERVER_CPU:-1}
GEN_CPU=${GEN_CPU:-0}
if [ "$(nproc)" -lt 2 ]; then SERVER_CPU=0; GEN_CPU=0; fi

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
    for _ in $(seq 1 600); do
        grep -q "ready" "$1" 2>/dev/null && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# run PROTOCOL MODE: prints "points/s p50_us p99_us cpu_ns_per_point"
run() {
    local proto=$1 mode=$2 dir="$WORK_DIR/run"
    rm -rf "$dir"; mkdir -p "$dir"
    local args=() client=() scheme=http
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
    local port hport
    port=$(free_port); hport=$(free_port)
    taskset -c "$SERVER_CPU" "$BIN/xtdb" serve --data-dir "$dir/data" --cpus "$SERVER_CPU" \
        --listen "127.0.0.1:$port" --http "127.0.0.1:$hport" "${args[@]}" >"$dir/server.log" 2>&1 &
    SERVER_PID=$!
    wait_ready "$dir/server.log" || { cat "$dir/server.log" >&2; exit 1; }
    local target=()
    if [ "$proto" = http ]; then
        target=(--protocol influx-http --target "$scheme://127.0.0.1:$hport/write?db=xtdb")
    else
        target=(--addr "127.0.0.1:$port")
    fi
    local out cpu0 cpu1
    cpu0=$(cpu_ns "$SERVER_PID")
    out=$("$BIN/xtdb-load" write "${target[@]}" "${client[@]}" --tags "$TAGS" --batch "$BATCH" \
        --conns "$CONNS" --duration "$DURATION" --cpus "$GEN_CPU" --json -q || true)
    cpu1=$(cpu_ns "$SERVER_PID")
    stop_server
    local acked
    acked=$(echo "$out" | json_get points_acked)
    echo "$(echo "$out" | json_get points_per_sec) $(echo "$out" | json_get latency_us.p50) $(echo "$out" | json_get latency_us.p99) $(python3 -c "print(f'{($cpu1-$cpu0)/max($acked,1):.1f}')")"
}

declare -A ALL CPU
for proto in $PROTOCOLS; do
    for r in $(seq 1 "$ROUNDS"); do
        # Rotate the order each round (plain auth tls, auth tls plain, ...)
        # so no mode always runs first, after the previous run's cleanup.
        modes=($MODES)
        k=$(( (r - 1) % ${#modes[@]} ))
        for mode in "${modes[@]:k}" "${modes[@]:0:k}"; do
            res=$(run "$proto" "$mode")
            read -r rate p50 p99 cpu <<<"$res"
            ALL[$proto.$mode]="${ALL[$proto.$mode]:-} $rate"
            CPU[$proto.$mode]="${CPU[$proto.$mode]:-} $cpu"
            printf '%s %-5s round %s: %s points/s, batch p50 %s us, p99 %s us, server CPU %s ns/point\n' \
                "$proto" "$mode" "$r" "$rate" "$p50" "$p99" "$cpu" >&2
        done
    done
done

median() { python3 -c 'import sys,statistics; print(f"{statistics.median(float(x) for x in sys.argv[1:]):.1f}")' "$@"; }

echo
echo "Ingest with auth and TLS, $TAGS tags, batches of $BATCH, $CONNS connections, $DURATION per run, $ROUNDS alternating rounds; server (1 shard) on CPU $SERVER_CPU, generator on CPU $GEN_CPU ($(date -u +%F))"
echo
echo "| protocol | mode | runs (points/s) | median | ÷ plain | server CPU ns/point (runs) | median | ÷ plain |"
echo "|---|---|---|---|---|---|---|---|"
for proto in $PROTOCOLS; do
    base=$(median ${ALL[$proto.plain]:-0})
    cbase=$(median ${CPU[$proto.plain]:-0})
    for mode in $MODES; do
        m=$(median ${ALL[$proto.$mode]})
        c=$(median ${CPU[$proto.$mode]})
        ratio=$(python3 -c "print(f'{$m/$base:.3f}' if $base else '-')")
        cratio=$(python3 -c "print(f'{$c/$cbase:.3f}' if $cbase else '-')")
        echo "| $proto | $mode | $(echo ${ALL[$proto.$mode]} | sed 's/ / \/ /g') | $m | $ratio | $(echo ${CPU[$proto.$mode]} | sed 's/ / \/ /g') | $c | $cratio |"
    done
done
