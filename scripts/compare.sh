#!/usr/bin/env bash
# Side-by-side HTTP line-protocol ingest: xtdb (`--http`), VictoriaMetrics and
# InfluxDB 1.x, each in turn pinned to the same single CPU (Go peers with
# GOMAXPROCS=1), the load generator (`xtdb-load write --protocol influx-http`)
# pinned to the other CPU, the identical workload against each:
#   plant,tag=t<N> v=<float>,q=<quality>i <ns timestamp>
# 100,000 tags, batches of 5,000 lines, 4 keep-alive connections. Two modes:
# - TICKS=0 (default): 15 s at full speed, current timestamps 1 ms apart;
# - TICKS=N: exactly N points per tag, 1 s apart, ending now (the same lines
#   for every system, so disk bytes per point compare), SIGNAL=plant values
#   by default, then SETTLE seconds (120) with the server idle before the
#   data dir is measured (VictoriaMetrics merges its parts, InfluxDB
#   compacts, xtdb flushes and compacts by then).
#
# Installs `victoria-metrics` and `influxdb` from Debian when missing (they
# are started by hand here, not as services). Checks that the acknowledged
# points landed (xtdb: points written; VictoriaMetrics: count_over_time;
# InfluxDB: SELECT count), then prints a markdown table: lines/s, batch
# latency p50/p99, server RSS at the end, disk bytes per point (allocated
# bytes of the whole data dir, and without the WAL: xtdb's WAL segments are
# preallocated, so short runs overstate its whole-dir figure), ratio
# xtdb/peer.
#
# What an acknowledgement means differs: xtdb after WAL fdatasync, InfluxDB
# after its WAL write+fsync, VictoriaMetrics once in memory.
#
# xtdb runs with --max-new-series-per-second 10 x TAGS: its default (10,000
# per client address, a hostile-use guard) refuses most of the first
# seconds' batches of 100,000 new series with 429, whose parses then eat
# the server CPU being measured (runs before 2026-12-02 had that).
#
# Knobs (environment): SYSTEMS (default "xtdb victoria-metrics influxdb"),
# TAGS (100000), BATCH (5000), CONNS (4), DURATION (15s), TICKS (0), SIGNAL
# (noise, or plant with TICKS), SETTLE (120 with TICKS, else 0), SERVER_CPU
# (1), GEN_CPU (0), COMPARE_DIR (default a new temp dir, removed).
set -euo pipefail

cd "$(dirname "$0")/.."
SYSTEMS=${SYSTEMS:-"xtdb victoria-metrics influxdb"}
TAGS=${TAGS:-100000}
BATCH=${BATCH:-5000}
CONNS=${CONNS:-4}
DURATION=${DURATION:-15s}
TICKS=${TICKS:-0}
if [ "$TICKS" -gt 0 ]; then
    SIGNAL=${SIGNAL:-plant}; SETTLE=${SETTLE:-120}
    T0=$(( ($(date +%s) - TICKS) * 1000000 ))
    SHAPE=(--ticks "$TICKS" --period-us 1000000 --t0 "$T0")
else
    SIGNAL=${SIGNAL:-noise}; SETTLE=${SETTLE:-0}
    SHAPE=(--duration "$DURATION")
fi
SERVER_CPU=${SERVER_CPU:-1}
GEN_CPU=${GEN_CPU:-0}
if [ "$(nproc)" -lt 2 ]; then SERVER_CPU=0; GEN_CPU=0; fi

need_pkgs=()
case " $SYSTEMS " in *" victoria-metrics "*) command -v victoria-metrics >/dev/null || need_pkgs+=(victoria-metrics) ;; esac
case " $SYSTEMS " in *" influxdb "*) command -v influxd >/dev/null || need_pkgs+=(influxdb) ;; esac
if [ ${#need_pkgs[@]} -gt 0 ]; then
    echo "installing ${need_pkgs[*]} from Debian" >&2
    apt-get install -y "${need_pkgs[@]}" >&2 || { apt-get update >&2 && apt-get install -y "${need_pkgs[@]}" >&2; }
fi

cargo build --release --bins >&2
BIN=target/release

WORK_DIR=${COMPARE_DIR:-}
. scripts/lib.sh
setup_work_dir xtdb-compare
COMPARE_DIR=$WORK_DIR

wait_http() { # url
    for _ in $(seq 1 300); do
        curl -s -o /dev/null -w '%{http_code}' "$1" 2>/dev/null | grep -qE '^(200|204)$' && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
rss_mb() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status" 2>/dev/null || echo "?"; }
json_get() { python3 -c 'import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); v=d
for k in sys.argv[1].split("."): v=v[k]
print(v)' "$1"; }

declare -A RATE P50 P99 RSS BPP BPPW LANDED ACKED
for sys in $SYSTEMS; do
    dir="$COMPARE_DIR/$sys"; rm -rf "$dir"; mkdir -p "$dir"
    port=$(free_port)
    case "$sys" in
    xtdb)
        taskset -c "$SERVER_CPU" "$BIN/xtdb" serve --data-dir "$dir/data" --cpus "$SERVER_CPU" \
            --listen "127.0.0.1:$(free_port)" --http "127.0.0.1:$port" --quality-field q \
            --max-new-series-per-second $((TAGS * 10)) \
            >"$dir/server.log" 2>&1 &
        SERVER_PID=$!
        target="http://127.0.0.1:$port/write?db=xtdb"
        wait_http "http://127.0.0.1:$port/ping" || { cat "$dir/server.log" >&2; exit 1; }
        ;;
    victoria-metrics)
        GOMAXPROCS=1 taskset -c "$SERVER_CPU" victoria-metrics -storageDataPath="$dir/data" \
            -httpListenAddr="127.0.0.1:$port" -retentionPeriod=100y -search.latencyOffset=0s \
            >"$dir/server.log" 2>&1 &
        SERVER_PID=$!
        target="http://127.0.0.1:$port/write?db=xtdb"
        wait_http "http://127.0.0.1:$port/health" || { cat "$dir/server.log" >&2; exit 1; }
        ;;
    influxdb)
        cat >"$dir/influxdb.conf" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:$(free_port)"
[meta]
  dir = "$dir/meta"
[data]
  dir = "$dir/data"
  wal-dir = "$dir/wal"
  max-values-per-tag = 0
  max-series-per-database = 0
[http]
  bind-address = "127.0.0.1:$port"
  log-enabled = false
CONF
        GOMAXPROCS=1 taskset -c "$SERVER_CPU" influxd -config "$dir/influxdb.conf" >"$dir/server.log" 2>&1 &
        SERVER_PID=$!
        wait_http "http://127.0.0.1:$port/ping" || { cat "$dir/server.log" >&2; exit 1; }
        curl -s -XPOST "http://127.0.0.1:$port/query" --data-urlencode "q=CREATE DATABASE xtdb" >/dev/null
        target="http://127.0.0.1:$port/write?db=xtdb"
        ;;
    *) echo "unknown system $sys" >&2; exit 2 ;;
    esac
    echo "== $sys (pid $SERVER_PID, CPU $SERVER_CPU) <- xtdb-load on CPU $GEN_CPU: $TAGS tags, batch $BATCH, $CONNS conns, $DURATION" >&2
    out=$("$BIN/xtdb-load" write --protocol influx-http --target "$target" --tags "$TAGS" \
        --batch "$BATCH" --conns "$CONNS" "${SHAPE[@]}" --signal "$SIGNAL" --cpus "$GEN_CPU" --json -q || true)
    echo "$out" | head -n -1 >&2 || true
    ACKED[$sys]=$(echo "$out" | json_get points_acked)
    RATE[$sys]=$(echo "$out" | json_get points_per_sec)
    P50[$sys]=$(echo "$out" | json_get latency_us.p50)
    P99[$sys]=$(echo "$out" | json_get latency_us.p99)
    RSS[$sys]=$(rss_mb "$SERVER_PID")
    case "$sys" in
    xtdb)
        LANDED[$sys]=$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^xtdb_points_written_total/ {s+=$2} END {print s+0}')
        ;;
    victoria-metrics)
        curl -s "http://127.0.0.1:$port/internal/force_flush" >/dev/null || true
        sleep 2
        LANDED[$sys]=$(curl -s "http://127.0.0.1:$port/api/v1/query" --data-urlencode 'query=sum(count_over_time(plant_v[2h]))' \
            | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)')
        ;;
    influxdb)
        LANDED[$sys]=$(curl -s "http://127.0.0.1:$port/query?db=xtdb" --data-urlencode 'q=SELECT count(v) FROM plant' \
            | python3 -c 'import json,sys; s=json.load(sys.stdin)["results"][0].get("series"); print(s[0]["values"][0][1] if s else 0)')
        ;;
    esac
    if [ "$SETTLE" -gt 0 ]; then
        echo "   settling $SETTLE s" >&2
        sleep "$SETTLE"
    fi
    bytes=$(du -s --block-size=1 "$dir" | cut -f1)
    wal=0
    for w in "$dir/data/shard-0/wal" "$dir/wal"; do
        [ -d "$w" ] && wal=$((wal + $(du -s --block-size=1 "$w" | cut -f1)))
    done
    stop_server
    BPP[$sys]=$(python3 -c "a=$((ACKED[$sys])); print(f'{$bytes/a:.2f}' if a else '?')")
    BPPW[$sys]=$(python3 -c "a=$((ACKED[$sys])); print(f'{($bytes-$wal)/a:.2f}' if a else '?')")
    echo "   acked ${ACKED[$sys]}, landed ${LANDED[$sys]}, ${RATE[$sys]} lines/s, RSS ${RSS[$sys]} MB, $bytes bytes on disk" >&2
done

echo
if [ "$TICKS" -gt 0 ]; then shape="$TICKS points per tag 1 s apart ($SIGNAL values), settled $SETTLE s"; else shape="$DURATION ($SIGNAL values)"; fi
echo "HTTP line-protocol ingest, $TAGS tags, batches of $BATCH lines, $CONNS connections, $shape; server on CPU $SERVER_CPU, generator on CPU $GEN_CPU ($(date -u +%F))"
echo
echo "| system | lines/s | batch p50 | batch p99 | RSS MB | disk B/point | without WAL | points acked / landed | xtdb lines/s ÷ this |"
echo "|---|---|---|---|---|---|---|---|---|"
for sys in $SYSTEMS; do
    ratio="-"
    if [ -n "${RATE[xtdb]:-}" ] && [ "${RATE[$sys]%.*}" != "0" ]; then
        ratio=$(python3 -c "print(f'{${RATE[xtdb]}/${RATE[$sys]}:.2f}')")
    fi
    check="ok"
    if [ "${LANDED[$sys]%.*}" -lt "${ACKED[$sys]%.*}" ] 2>/dev/null; then check="MISSING"; fi
    printf '| %s | %.0f | %.1f ms | %.1f ms | %s | %s | %s | %s / %s %s | %s |\n' "$sys" "${RATE[$sys]}" \
        "$(python3 -c "print(${P50[$sys]}/1000)")" "$(python3 -c "print(${P99[$sys]}/1000)")" \
        "${RSS[$sys]}" "${BPP[$sys]}" "${BPPW[$sys]}" "${ACKED[$sys]}" "${LANDED[$sys]}" "$check" "$ratio"
done
