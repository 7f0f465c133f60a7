#!/bin/sh
# Aggregates pushed down to the engine: one tag, 30 days at 1 Hz (2.6 M
# points), compacted; then 720 one-hour means, 1-minute means over a day,
# a day's time-weighted average, 1,000 plot pixels over 30 days and
# interpolated values, and NTAGS (100) tags' 1-minute means over a day
# (one request for all of them; the tags hold DAY of 1 Hz data), each
# `ITER` times on one connection (latency
# percentiles from xtdb-load). Then `latest` latency on one connection
# alone and while another connection runs decode-everything aggregates
# (median over 30 days) on the same shard, to see whether a long
# aggregate stalls small requests.
#
# Server pinned to CPU 1 (one shard), generator to CPU 0.
# Usage: scripts/agg_bench.sh [target/release]
# (ITER, SPAN=30d, DAY=1d, NTAGS=100, SRV_CPU=1, PORT=7171 from the
# environment; SERVE_ARGS adds flags to `xtdb serve`, e.g. "--segment-align 0".)
set -eu
. "$(dirname "$0")/lib.sh"
BIN=${1:-target/release}
ITER=${ITER:-200}
SPAN=${SPAN:-30d}
DAY=${DAY:-1d}
NTAGS=${NTAGS:-100}
SRV_CPU=${SRV_CPU:-1}
PORT=${PORT:-7171}
ADDR=127.0.0.1:$PORT
DIR=$(mktemp -d /tmp/xtdb-agg-bench.XXXXXX)
trap 'kill $SRV 2>/dev/null || true; wait $SRV 2>/dev/null || true; rm -rf "$DIR"' EXIT

"$BIN/xtdb" serve --data-dir "$DIR/data" --listen "$ADDR" --cpus "$SRV_CPU" --sync none ${SERVE_ARGS:-} \
    >"$DIR/server.log" 2>&1 &
SRV=$!
for _ in $(seq 1 100); do
    "$BIN/xtdb" stats --addr "$ADDR" >/dev/null 2>&1 && break
    sleep 0.1
done

load() { taskset -c 0 "$BIN/xtdb-load" query --addr "$ADDR" --tags 1 --cpu 0 -q "$@"; }
# The NTAGS tags of the many-tag row, from tag 2,000,000 on.
many() { taskset -c 0 "$BIN/xtdb-load" query --addr "$ADDR" --tags "$NTAGS" --tag-base 2000000 --cpu 0 -q "$@"; }

echo "== prepare: $SPAN at 1 Hz on one tag, $DAY at 1 Hz on $NTAGS tags"
load --mode aggregate --span "$SPAN" --every 1h --prepare --iterations 1 --json >/dev/null
many --mode aggregate --span "$DAY" --every 1m --prepare --iterations 1 --json >/dev/null
# The shard settles (flushes and compacts) after 10 s without writes.
wait_settled "$BIN" "$ADDR" 120
"$BIN/xtdb" stats --addr "$ADDR" | grep -E "^(points_on_disk|segments_indexed|chunks|compactions|disk_compacted_bytes) " || true

run() {
    name=$1
    shift
    how=load
    if [ "$1" = many ]; then how=many; shift; fi
    before=$("$BIN/xtdb" stats --addr "$ADDR" | awk '$1 ~ /^agg_segments/ {printf "%s=%s ", $1, $2}')
    out=$($how "$@" --iterations "$ITER" --json)
    after=$("$BIN/xtdb" stats --addr "$ADDR" | awk '$1 ~ /^agg_segments/ {printf "%s=%s ", $1, $2}')
    echo "$name: $(echo "$out" | python3 -c 'import json,sys; a=json.load(sys.stdin)["aggregate"]; l=a["latency_us"]; print("rows %d..%d p50 %s us p90 %s us p99 %s us max %s us errors %d" % (a["min_rows"], a["rows"], l["p50"], l["p90"], l["p99"], l["max"], a["errors"]))')"
    echo "   counters before: $before"
    echo "   counters after:  $after"
}

echo "== queries ($ITER each)"
run "1-h means over $SPAN" --mode aggregate --span "$SPAN" --every 1h --func mean
run "1-min means over $DAY" --mode aggregate --span "$DAY" --every 1m --func mean
run "twa over $DAY (1 window)" --mode aggregate --span "$DAY" --every "$DAY" --func twa
run "plot 1000 px over $SPAN" --mode plot --span "$SPAN" --pixels 1000
run "interpolated every 1 h over $SPAN" --mode interpolated --span "$SPAN" --every 1h
run "$NTAGS tags: 1-min means over $DAY (one request)" many --mode aggregate --span "$DAY" --every 1m --func mean --query-tags "$NTAGS"
run "median per $DAY over $SPAN (decodes all)" --mode aggregate --span "$SPAN" --every "$DAY" --func median

echo "== latest on the same shard, alone and next to long aggregates"
lat() { taskset -c 0 "$BIN/xtdb-load" query --addr "$ADDR" --tags 1 --cpu 0 -q --blocks 1 --iterations 1 \
    --latest-iterations 2000 --latest-tags 1 --tag-base 1000000 --json |
    python3 -c 'import json,sys; l=json.load(sys.stdin)["latest"]["latency_us"]; print("latest p50 %s us p99 %s us max %s us" % (l["p50"], l["p99"], l["max"]))'; }
echo "alone: $(lat)"
load --mode aggregate --span "$SPAN" --every "$DAY" --func median --iterations 100000 --json >/dev/null 2>&1 &
BG=$!
sleep 1
echo "with median aggregates running: $(lat)"
kill $BG 2>/dev/null || true
wait $BG 2>/dev/null || true
