#!/usr/bin/env bash
# Runs every xtdb-load scenario against a fresh server and prints a markdown
# results table with the machine's cores, disk and the date.
#
# The server runs pinned to CPU $SERVER_CPU (one shard), the load generator
# pinned to CPU $GEN_CPU. Knobs (environment):
#   TAGS100K_DURATION  tags-100k length            (default 60s)
#   MAXWRITE_DURATION  max-write length            (default 15s)
#   FLUSH_TAGS         flush-storm tags            (default 100000)
#   FLUSH_POINTS       flush-storm points per tag  (default 1000)
#   RECOVERY_DURATION  recovery write time before kill -9 (default 20s)
#   SYNC               server --sync mode          (default always)
#   BENCH_DIR          where data and logs go      (default a new temp dir, removed)
set -euo pipefail

cd "$(dirname "$0")/.."
SERVER_CPU=${SERVER_CPU:-1}
GEN_CPU=${GEN_CPU:-0}
SYNC=${SYNC:-always}
if [ "$(nproc)" -lt 2 ]; then SERVER_CPU=0; GEN_CPU=0; fi

cargo build --release --bins >&2
BIN=target/release

WORK_DIR=${BENCH_DIR:-}
. scripts/lib.sh
setup_work_dir xtdb-bench
BENCH_DIR=$WORK_DIR
mkdir -p "$BENCH_DIR/out"

PORT=$(free_port)
ADDR=127.0.0.1:$PORT
taskset -c "$SERVER_CPU" "$BIN/xtdb" serve --data-dir "$BENCH_DIR/data" --cpus "$SERVER_CPU" \
    --listen "$ADDR" --sync "$SYNC" >"$BENCH_DIR/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do
    grep -q ready "$BENCH_DIR/server.log" 2>/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$BENCH_DIR/server.log" >&2; exit 1; }
    sleep 0.1
done
grep -q ready "$BENCH_DIR/server.log" || { echo "server not ready" >&2; exit 1; }
echo "server pid $SERVER_PID on CPU $SERVER_CPU at $ADDR (sync $SYNC), generator on CPU $GEN_CPU" >&2

run() { # name, extra args...
    local name=$1; shift
    echo "== $name ==" >&2
    "$BIN/xtdb-load" scenario "$name" --addr "$ADDR" --cpus "$GEN_CPU" --json "$@" \
        >"$BENCH_DIR/out/$name.json" || echo "($name reported a failed check)" >&2
}
run tags-100k --duration "${TAGS100K_DURATION:-60s}" --server-pid "$SERVER_PID"
run max-write --duration "${MAXWRITE_DURATION:-15s}" --server-pid "$SERVER_PID"
run query-blocks
run flush-storm --tags "${FLUSH_TAGS:-100000}" --points-per-tag "${FLUSH_POINTS:-1000}"
stop_server

# recovery starts, kills (-9) and restarts its own server.
PORT=$(free_port)
echo "== recovery ==" >&2
"$BIN/xtdb-load" scenario recovery --addr "127.0.0.1:$PORT" --cpus "$GEN_CPU" \
    --server-cpu "$SERVER_CPU" --duration "${RECOVERY_DURATION:-20s}" --json \
    >"$BENCH_DIR/out/recovery.json" || echo "(recovery reported a failed check)" >&2

echo "## xtdb-load results"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo n/a)"
echo "- cores: $(nproc) ($(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1))"
echo "- disk: $(df -h "$(dirname "$BENCH_DIR")" | awk 'NR==2 {print $1" "$2" ("$5" used), mounted on "$6}')"
echo "- block devices: $(lsblk -d -n -o NAME,SIZE,ROTA,MODEL 2>/dev/null | tr -s ' ' | paste -sd ';' - || echo n/a)"
echo "- server: one shard pinned to CPU $SERVER_CPU, --sync $SYNC; generator pinned to CPU $GEN_CPU"
echo
"$BIN/xtdb-load" summarize "$BENCH_DIR"/out/tags-100k.json "$BENCH_DIR"/out/max-write.json \
    "$BENCH_DIR"/out/query-blocks.json "$BENCH_DIR"/out/flush-storm.json "$BENCH_DIR"/out/recovery.json
