#!/bin/sh
# What compaction's aligned segment cuts (`--segment-align`) cost on disk
# and buy in queries, for plant-like signals: for each setting in ALIGNS,
# a fresh one-shard server takes TAGS tags x HOURS hours of 1 Hz points
# (`--signal plant`, fixed seed and start time, so every run writes the
# same points), settles (flushes and compacts), and reports compacted
# bytes per point (and of it, the per-minute rollups' bytes), segments
# indexed, and the latency of 1-h means over the whole span and of 1-min
# means over the last hour for one tag (`xtdb-load query`, ITER requests).
# SERVE_ARGS adds flags to `xtdb serve` (e.g. "--rollup 0" for no rollups).
#
# Server pinned to CPU 1, generator to CPU 0.
# Usage: scripts/segment_align.sh [target/release]
# (TAGS=1000, HOURS=6, ALIGNS="0 1h", ITER=200, PORT=7172 from the environment.)
set -eu
. "$(dirname "$0")/lib.sh"
BIN=${1:-target/release}
TAGS=${TAGS:-1000}
HOURS=${HOURS:-6}
ALIGNS=${ALIGNS:-"0 1h"}
ITER=${ITER:-200}
PORT=${PORT:-7172}
ADDR=127.0.0.1:$PORT
T0=1767225600000000 # 2026-01-01 00:00:00 UTC
TICKS=$((HOURS * 3600))

for align in $ALIGNS; do
    DIR=$(mktemp -d /tmp/xtdb-align.XXXXXX)
    "$BIN/xtdb" serve --data-dir "$DIR/data" --listen "$ADDR" --cpus 1 --sync none \
        --segment-align "$align" ${SERVE_ARGS:-} >"$DIR/server.log" 2>&1 &
    SRV=$!
    trap 'kill $SRV 2>/dev/null || true; rm -rf "$DIR"' EXIT
    for _ in $(seq 1 100); do
        "$BIN/xtdb" stats --addr "$ADDR" >/dev/null 2>&1 && break
        sleep 0.1
    done
    taskset -c 0 "$BIN/xtdb-load" write --addr "$ADDR" --tags "$TAGS" --rate 0 --batch 10000 \
        --conns 2 --ticks "$TICKS" --period-us 1000000 --t0 $T0 --signal plant --seed 7 \
        --cpus 0 --duration 1h >/dev/null
    # The shard settles (flushes and compacts) after 10 s without writes.
    wait_settled "$BIN" "$ADDR" 300
    s=$("$BIN/xtdb" stats --addr "$ADDR")
    echo "$s" | awk -v align="$align" '
        $1 == "points_on_disk" {p = $2}
        $1 == "disk_compacted_bytes" {b = $2}
        $1 == "segments_indexed" {n = $2}
        $1 == "disk_rollup_bytes" {r = $2}
        END {printf "segment-align %s: %d points, %d compacted bytes, %.4f B/point (rollups %d bytes, %.4f B/point), %d segments\n", align, p, b, b / p, r, r / p, n}'
    out=$(taskset -c 0 "$BIN/xtdb-load" query --addr "$ADDR" --cpu 0 -q --mode aggregate \
        --tags 1 --tag-base 0 --span "${HOURS}h" --every 1h --func mean --iterations "$ITER" --json)
    echo "  1-h means over ${HOURS} h, one tag: $(echo "$out" | python3 -c 'import json,sys; a=json.load(sys.stdin)["aggregate"]; l=a["latency_us"]; print("rows %d p50 %s us p99 %s us errors %d" % (a["rows"], l["p50"], l["p99"], a["errors"]))')"
    out=$(taskset -c 0 "$BIN/xtdb-load" query --addr "$ADDR" --cpu 0 -q --mode aggregate \
        --tags 1 --tag-base 0 --span "${HOURS}h" --every 1m --func mean --iterations "$ITER" --json)
    echo "  1-min means over ${HOURS} h, one tag: $(echo "$out" | python3 -c 'import json,sys; a=json.load(sys.stdin)["aggregate"]; l=a["latency_us"]; print("rows %d p50 %s us p99 %s us errors %d" % (a["rows"], l["p50"], l["p99"], a["errors"]))')"
    kill $SRV
    wait $SRV 2>/dev/null || true
    rm -rf "$DIR"
done
