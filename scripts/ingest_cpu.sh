#!/bin/bash
# Native ingest of the generator's realistic values (issue 18's figure):
# one shard on CPU 1, `xtdb-load write --tags 100000 --rate 0 --batch 5000
# --conns 4` on CPU 0 for DURATION, then the server's own CPU time per
# acknowledged point (utime + stime from /proc, startup included). On a
# shared machine the generator's CPU is often what limits the rate; the
# server's ns/point does not depend on that.
#
# CALLGRIND=1 runs the server under valgrind's callgrind instead, for a
# fixed TICKS (points per tag, default 30 = 3 M points), and leaves the
# profile in $OUT (default ./callgrind.ingest): instruction counts that a
# busy machine does not change (`callgrind_annotate --inclusive=yes $OUT`,
# look at `Buffers::insert_batch`).
#
# Usage: scripts/ingest_cpu.sh [target/release]
# (DURATION=10, SRV_CPU=1, CLIENT_CPU=0, TAGS=100000, PORT: a free one.)
set -eu
cd "$(dirname "$0")/.."
. scripts/lib.sh
BIN=${1:-target/release}
DURATION=${DURATION:-10}
SRV_CPU=${SRV_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
TAGS=${TAGS:-100000}
TICKS=${TICKS:-30}
PORT=${PORT:-$(free_port)}
ADDR=127.0.0.1:$PORT
setup_work_dir xtdb-ingest-cpu

WRAP=()
if [ "${CALLGRIND:-0}" = 1 ]; then
    OUT=${OUT:-$PWD/callgrind.ingest}
    WRAP=(valgrind --tool=callgrind "--callgrind-out-file=$OUT")
fi
"${WRAP[@]}" "$BIN/xtdb" serve --data-dir "$WORK_DIR/data" --listen "$ADDR" --cpus "$SRV_CPU" \
    >"$WORK_DIR/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 600); do
    grep -q ready "$WORK_DIR/server.log" && break
    sleep 0.2
done

if [ "${CALLGRIND:-0}" = 1 ]; then
    LEN=(--ticks "$TICKS")
else
    LEN=(--duration "$DURATION")
fi
"$BIN/xtdb-load" write --addr "$ADDR" --tags "$TAGS" --rate 0 --batch 5000 --conns 4 \
    "${LEN[@]}" --cpus "$CLIENT_CPU" | grep -v '^\[ ' | tee "$WORK_DIR/load.out"

if [ "${CALLGRIND:-0}" != 1 ]; then
    TICKS_USED=$(awk '{print $14 + $15}' "/proc/$SERVER_PID/stat")
    HZ=$(getconf CLK_TCK)
    POINTS=$(sed -n 's/.*points acknowledged *\([0-9,]*\).*/\1/p' "$WORK_DIR/load.out" | tr -d ,)
    awk -v t="$TICKS_USED" -v hz="$HZ" -v p="$POINTS" -v d="$DURATION" 'BEGIN {
        printf "  server cpu           %.2f s (%.0f%% of the run), %.0f ns per acknowledged point\n",
            t / hz, 100 * t / hz / d, 1e9 * t / hz / p }'
fi
stop_server
