#!/usr/bin/env bash
# Aggregate queries side by side: xtdb, InfluxDB 1.x (InfluxQL over HTTP
# /query) and VictoriaMetrics (/api/v1/query_range with MetricsQL rollups),
# the same points loaded into each, each server in turn alone on SERVER_CPU
# (Go peers with GOMAXPROCS=1), every client on GEN_CPU.
#
# Data (identical lines for every system, `xtdb-load write --protocol
# influx-http`, seed 0x5155455259, tick k at 2026-01-01T00:00:00Z + k s):
#   plant,tag=t1000000 v=<float>,q=<quality>i   SPAN (30d) at 1 Hz
#   plant,tag=t2000000..t20000NN                 NTAGS (100) tags, DAY (1d) at 1 Hz
# xtdb runs with --quality-field q, so `v` is its one series per tag; the
# peers store q as a second field, never read here.
# After loading, each system settles before any query: xtdb until it has
# compacted and holds nothing in memory; InfluxDB (cache snapshot after
# 10 s cold, full compaction after 30 s cold; its _internal monitor
# store is off, or its writes every 10 s would keep the dir changing) and
# VictoriaMetrics
# (/internal/force_flush and /internal/force_merge) until their data dir
# stops changing for 15 s, and at least SETTLE_MIN (60) s (InfluxDB's full
# compaction starts 30 s after the last write).
#
# Queries, each WARMUP (3) untimed then ITER (50) timed requests on one
# keep-alive connection (scripts/agg_compare.py, or xtdb-load for xtdb's
# native protocol), stopping early after BUDGET (120) s:
#   1-h means over SPAN (720 windows), 1-min means over DAY, time-weighted
#   average over DAY (xtdb twa / time_weighted_mean; InfluxDB has none:
#   integral(v,1s)/DAY as a stand-in; VictoriaMetrics integrate()/DAY),
#   plot values for PIXELS (1,000) intervals over SPAN (xtdb /api/v1/plot;
#   InfluxDB first,last,min,max per interval; VictoriaMetrics
#   first/last/min/max_over_time in one union()), NTAGS tags' 1-min means over DAY.
# xtdb is timed over its native protocol (xtdb-load query) and over HTTP
# (/api/v1/aggregate|plot and /query InfluxQL); the like-for-like
# comparison with the peers is xtdb's HTTP /query (same client, same
# InfluxQL text as InfluxDB's). The answers of every system are compared
# window by window against xtdb's /api/v1 answer (the table's "Answer
# check"); the script exits 1 when they differ.
#
# Usage: scripts/agg_compare.sh [target/release]   (binaries built already)
# Knobs: SYSTEMS ("xtdb influxdb victoria-metrics"), SPAN (30d), DAY (1d),
# NTAGS (100), PIXELS (1000), ITER (50), WARMUP (3), BUDGET (120),
# SERVER_CPU (1), GEN_CPU (0), SETTLE_MIN (60), SETTLE_MAX (600), COMPARE_DIR (a new temp
# dir, removed). Short mode: SPAN=3d ITER=20 scripts/agg_compare.sh target/release.
# Installs `influxdb` and `victoria-metrics` from Debian when missing.
set -euo pipefail

cd "$(dirname "$0")/.."
BIN=${1:-target/release}
SYSTEMS=${SYSTEMS:-"xtdb influxdb victoria-metrics"}
SPAN=${SPAN:-30d}
DAY=${DAY:-1d}
NTAGS=${NTAGS:-100}
PIXELS=${PIXELS:-1000}
ITER=${ITER:-50}
WARMUP=${WARMUP:-3}
BUDGET=${BUDGET:-120}
SERVER_CPU=${SERVER_CPU:-1}
GEN_CPU=${GEN_CPU:-0}
SETTLE_MAX=${SETTLE_MAX:-600}
SETTLE_MIN=${SETTLE_MIN:-60}
if [ "$(nproc)" -lt 2 ]; then SERVER_CPU=0; GEN_CPU=0; fi
secs() { python3 -c 'import sys; s=sys.argv[1]; u={"s":1,"m":60,"h":3600,"d":86400}
print(int(float(s[:-1])*u[s[-1]]) if s[-1] in u else int(s))' "$1"; }
SPAN_S=$(secs "$SPAN")
DAY_S=$(secs "$DAY")
T0_US=1767225600000000
SEED=349322957401 # xtdb::load::query::QUERY_SEED
export T0_US SPAN_S DAY_S NTAGS PIXELS ITER WARMUP BUDGET
export ONE_TAG=t1000000 MANY_PREFIX=t2

need_pkgs=()
case " $SYSTEMS " in *" victoria-metrics "*) command -v victoria-metrics >/dev/null || need_pkgs+=(victoria-metrics) ;; esac
case " $SYSTEMS " in *" influxdb "*) command -v influxd >/dev/null || need_pkgs+=(influxdb) ;; esac
if [ ${#need_pkgs[@]} -gt 0 ]; then
    echo "installing ${need_pkgs[*]} from Debian" >&2
    apt-get install -y "${need_pkgs[@]}" >&2 || { apt-get update >&2 && apt-get install -y "${need_pkgs[@]}" >&2; }
fi
for b in xtdb xtdb-load; do
    [ -x "$BIN/$b" ] || { echo "$BIN/$b missing: cargo build --release --bins" >&2; exit 2; }
done

WORK_DIR=${COMPARE_DIR:-}
. scripts/lib.sh
setup_work_dir xtdb-agg-compare
OUT="$WORK_DIR/results"
mkdir -p "$OUT"

wait_http() { # url
    for _ in $(seq 1 300); do
        curl -s -o /dev/null -w '%{http_code}' "$1" 2>/dev/null | grep -qE '^(200|204)$' && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# The same lines to every system: the one long tag, then the NTAGS tags.
load_data() { # write-url
    local args=(write --protocol influx-http --target "$1" --seed "$SEED" --t0 "$T0_US"
        --period-us 1000000 --batch 5000 --cpus "$GEN_CPU" -q --json)
    taskset -c "$GEN_CPU" "$BIN/xtdb-load" "${args[@]}" --tags 1 --tag-base 1000000 --conns 1 \
        --ticks "$SPAN_S" | tail -n 1 | python3 -c 'import json,sys; d=json.load(sys.stdin)
print("   loaded %d points on 1 tag in %.1f s" % (d["points_acked"], d["elapsed_s"]), file=sys.stderr)'
    taskset -c "$GEN_CPU" "$BIN/xtdb-load" "${args[@]}" --tags "$NTAGS" --tag-base 2000000 --conns $((NTAGS < 4 ? NTAGS : 4)) \
        --ticks "$DAY_S" | tail -n 1 | python3 -c 'import json,sys; d=json.load(sys.stdin)
print("   loaded %d points on '"$NTAGS"' tags in %.1f s" % (d["points_acked"], d["elapsed_s"]), file=sys.stderr)'
}

# Waits at least SETTLE_MIN s, and until the dir's allocated bytes stay
# the same for 3 polls 5 s apart.
settle_dir() { # dir
    local last="" same=0 t=0 now
    while [ "$t" -lt "$SETTLE_MAX" ]; do
        sleep 5
        t=$((t + 5))
        now=$(du -s --block-size=1 "$1" | cut -f1)
        if [ "$now" = "$last" ]; then same=$((same + 1)); else same=0; fi
        last=$now
        [ "$same" -ge 3 ] && [ "$t" -ge "$SETTLE_MIN" ] && break
    done
    echo "   settled after $t s ($last bytes)" >&2
}

stat_of() { "$BIN/xtdb" stats --addr "$1" | awk -v k="$2" '$1 == k {print $2}'; }

settle_xtdb() { # native addr
    local t=0 comp last_comp="" same=0
    while [ "$t" -lt "$SETTLE_MAX" ]; do
        sleep 1
        t=$((t + 1))
        comp=$(stat_of "$1" compactions)
        if [ "${comp:-0}" -gt 0 ] && [ "$(stat_of "$1" disk_flush_bytes)" = 0 ] &&
            [ "$(stat_of "$1" points_buffered)" = 0 ] && [ "$comp" = "$last_comp" ]; then
            same=$((same + 1))
            [ "$same" -ge 5 ] && break
        else
            same=0
        fi
        last_comp=$comp
    done
    echo "   settled after $t s" >&2
    "$BIN/xtdb" stats --addr "$1" | grep -E "^(points_on_disk|segments_indexed|chunks|compactions) " | tr '\n' ' ' >&2
    echo >&2
}

# xtdb's native protocol, through xtdb-load, into the same JSON shape.
native_query() { # addr key tags tag-base query-tags args...
    local addr=$1 key=$2 tags=$3 base=$4 qt=$5
    shift 5
    # WARMUP untimed requests first, as for the HTTP clients.
    [ "$WARMUP" -gt 0 ] && taskset -c "$GEN_CPU" "$BIN/xtdb-load" query --addr "$addr" --tags "$tags" \
        --tag-base "$base" --query-tags "$qt" --cpu "$GEN_CPU" -q --iterations "$WARMUP" --json "$@" >/dev/null
    taskset -c "$GEN_CPU" "$BIN/xtdb-load" query --addr "$addr" --tags "$tags" --tag-base "$base" \
        --query-tags "$qt" --cpu "$GEN_CPU" -q --iterations "$ITER" --json "$@" | tail -n 1 |
        python3 -c 'import json,sys; a=json.load(sys.stdin)["aggregate"]; l=a["latency_us"]
print(json.dumps({"n": '"$ITER"' - a["errors"], "p50_us": l["p50"], "p99_us": l["p99"], "rows": a["rows"],
  "error": a["first_error"]}))' >"$OUT/native-$key.json"
}

native_all() { # addr one-id many-id0
    native_query "$1" mean1h 1 "$2" 1 --mode aggregate --span "$SPAN" --every 1h --func mean
    native_query "$1" mean1m 1 "$2" 1 --mode aggregate --span "$DAY" --every 1m --func mean
    native_query "$1" twa 1 "$2" 1 --mode aggregate --span "$DAY" --every "$DAY" --func twa
    native_query "$1" plot 1 "$2" 1 --mode plot --span "$SPAN" --pixels "$PIXELS"
    native_query "$1" many "$NTAGS" "$3" "$NTAGS" --mode aggregate --span "$DAY" --every 1m --func mean
    python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
q = {k: json.load(open(f"{out}/native-{k}.json")) for k in ("mean1h", "mean1m", "twa", "plot", "many")}
for k, v in q.items():
    print(f"  xtdb-native {k}: p50 {v['p50_us']} us p99 {v['p99_us']} us rows {v['rows']} {v['error'] or ''}", file=sys.stderr)
json.dump({"system": "xtdb-native", "queries": q, "ping_us": None}, open(f"{out}/xtdb-native.json", "w"))
PY
}

http_time() { # system base-url
    taskset -c "$GEN_CPU" python3 scripts/agg_compare.py time "$1" "$2" "$OUT/$1.json"
}

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) ($(date -u '+%F %H:%M UTC'))" >&2
for sys in $SYSTEMS; do
    dir="$WORK_DIR/$sys"; rm -rf "$dir"; mkdir -p "$dir"
    port=$(free_port)
    echo "== $sys on CPU $SERVER_CPU (load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    case "$sys" in
    xtdb)
        naddr="127.0.0.1:$(free_port)"
        taskset -c "$SERVER_CPU" "$BIN/xtdb" serve --data-dir "$dir/data" --cpus "$SERVER_CPU" \
            --listen "$naddr" --http "127.0.0.1:$port" --quality-field q --sync none \
            >"$dir/server.log" 2>&1 &
        SERVER_PID=$!
        wait_http "http://127.0.0.1:$port/ping" || { cat "$dir/server.log" >&2; exit 1; }
        load_data "http://127.0.0.1:$port/write?db=xtdb"
        settle_xtdb "$naddr"
        # The catalog ids of the series (the native protocol names series by id).
        read -r ONE_ID MANY_ID0 < <(curl -s "http://127.0.0.1:$port/api/v1/tags?match=plant&limit=100000" |
            python3 -c 'import json,sys,os; d=json.load(sys.stdin)
ids={t["tag"].split("tag=")[1].split(" ")[0]: t["id"] for t in d if t["tag"].endswith(" v")}
one=ids[os.environ["ONE_TAG"]]; many=sorted(i for t,i in ids.items() if t.startswith(os.environ["MANY_PREFIX"]))
n=int(os.environ["NTAGS"])
assert len(many)==n and many[-1]-many[0]==n-1, ("series ids not contiguous", many[:5], len(many))
print(one, many[0])')
        [ -n "${MANY_ID0:-}" ] || { echo "could not read the series ids from /api/v1/tags" >&2; exit 1; }

        native_all "$naddr" "$ONE_ID" "$MANY_ID0"
        http_time xtdb-http "http://127.0.0.1:$port"
        http_time xtdb-influxql "http://127.0.0.1:$port"
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
  query-log-enabled = false
  cache-snapshot-write-cold-duration = "10s"
  compact-full-write-cold-duration = "30s"
[http]
  bind-address = "127.0.0.1:$port"
  log-enabled = false
[monitor]
  store-enabled = false
CONF
        GOMAXPROCS=1 taskset -c "$SERVER_CPU" influxd -config "$dir/influxdb.conf" >"$dir/server.log" 2>&1 &
        SERVER_PID=$!
        wait_http "http://127.0.0.1:$port/ping" || { cat "$dir/server.log" >&2; exit 1; }
        curl -s -XPOST "http://127.0.0.1:$port/query" --data-urlencode "q=CREATE DATABASE xtdb" >/dev/null
        load_data "http://127.0.0.1:$port/write?db=xtdb"
        settle_dir "$dir"
        http_time influxdb "http://127.0.0.1:$port"
        ;;
    victoria-metrics)
        GOMAXPROCS=1 taskset -c "$SERVER_CPU" victoria-metrics -storageDataPath="$dir/data" \
            -httpListenAddr="127.0.0.1:$port" -retentionPeriod=100y -search.latencyOffset=0s \
            >"$dir/server.log" 2>&1 &
        SERVER_PID=$!
        wait_http "http://127.0.0.1:$port/health" || { cat "$dir/server.log" >&2; exit 1; }
        load_data "http://127.0.0.1:$port/write?db=xtdb"
        curl -s "http://127.0.0.1:$port/internal/force_flush" >/dev/null || true
        for m in $(python3 -c 'import datetime as d,os; t0=int(os.environ["T0_US"])//10**6; s=int(os.environ["SPAN_S"])
print(" ".join(sorted({d.datetime.fromtimestamp(t, d.timezone.utc).strftime("%Y_%m") for t in range(t0, t0+s+1, 86400)})))'); do
            curl -s "http://127.0.0.1:$port/internal/force_merge?partition_prefix=$m" >/dev/null || true
        done
        settle_dir "$dir"
        http_time victoria-metrics "http://127.0.0.1:$port"
        ;;
    *) echo "unknown system $sys" >&2; exit 2 ;;
    esac
    echo "   disk: $(du -s --block-size=1 "$dir" | cut -f1) bytes, RSS $(awk '/VmRSS/ {printf "%.0f MB", $2/1024}' "/proc/$SERVER_PID/status")" >&2
    stop_server
done

echo
echo "Aggregates over HTTP and native, $SPAN at 1 Hz on one tag + $NTAGS tags × $DAY at 1 Hz; server alone on CPU $SERVER_CPU, client on CPU $GEN_CPU; $ITER requests per query on one connection ($(date -u '+%F %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg))"
echo
files=()
for s in xtdb-native xtdb-http xtdb-influxql influxdb victoria-metrics; do
    [ -f "$OUT/$s.json" ] && files+=("$OUT/$s.json")
done
python3 scripts/agg_compare.py table "${files[@]}"
