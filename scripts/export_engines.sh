#!/usr/bin/env bash
# Exports a known data set with `xtdb export` and queries the Parquet files
# with DuckDB and DataFusion (and Spark with SPARK=1) side by side; every
# answer must equal xtdb's own (HTTP aggregates and InfluxQL over the same
# span): rows, per series count/min/max/sum, per series and day, per series
# and hour (with avg), a filter and a group on the `tags` map, good quality
# only. Prints a timing table; exits 1 on any difference.
#
# The server runs pinned to CPU $SERVER_CPU (one shard); the writer, the
# export and the engines on CPU $CLIENT_CPU. The engines come from PyPI
# into a venv ($VENV, made if missing: datafusion, pyarrow, duckdb; pyspark
# too with SPARK=1, which also needs a Java 17+ `java`). Knobs (environment):
#   HOSTS     hosts in the data set: 3 series each, plus one (default 8)
#   STEP      seconds between a series' points       (default 10)
#   START END the exported span, UTC days            (default 2024-01-01 2024-01-04)
#   RUNS      runs of each query per engine          (default 3)
#   SPARK=1   also Spark (pyspark, local[*])
#   VENV      the engines' venv                      (default /tmp/xtdb-engines-venv)
#   WORK_DIR  where data, export and logs go         (default a new temp dir, removed)
# Defaults: 25 series, 3 days at 10 s, 648,000 rows; STEP=1 is 6.48 M.
set -euo pipefail

cd "$(dirname "$0")/.."
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
if [ "$(nproc)" -lt 2 ]; then SERVER_CPU=0; CLIENT_CPU=0; fi
HOSTS=${HOSTS:-8}
STEP=${STEP:-10}
START=${START:-2024-01-01}
END=${END:-2024-01-04}
RUNS=${RUNS:-3}
SPARK=${SPARK:-0}
VENV=${VENV:-/tmp/xtdb-engines-venv}
BIN=target/release

if [ ! -x "$BIN/xtdb" ] || [ ! -x "$BIN/xtdb-load" ]; then
    cargo build --release --bins >&2
fi

PKGS="datafusion pyarrow duckdb"
ENGINES=duckdb,datafusion
if [ "$SPARK" = 1 ]; then
    PKGS="$PKGS pyspark"
    ENGINES=$ENGINES,spark
    export SPARK_LOCAL_IP=127.0.0.1 # the driver on loopback only
    command -v java >/dev/null || { echo "SPARK=1 needs java (apt-get install default-jre-headless)" >&2; exit 2; }
fi
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
for p in $PKGS; do
    "$VENV/bin/python" -c "import $p" 2>/dev/null || "$VENV/bin/pip" install -q "$p" >&2
done
PY="taskset -c $CLIENT_CPU $VENV/bin/python scripts/export_engines.py"

. scripts/lib.sh
setup_work_dir xtdb-engines

PORT=$(free_port)
HPORT=$(free_port)
HTTP=http://127.0.0.1:$HPORT
taskset -c "$SERVER_CPU" "$BIN/xtdb" serve --data-dir "$WORK_DIR/data" --cpus "$SERVER_CPU" \
    --listen "127.0.0.1:$PORT" --http "127.0.0.1:$HPORT" --quality-field q >"$WORK_DIR/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do
    grep -q ready "$WORK_DIR/server.log" 2>/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK_DIR/server.log" >&2; exit 1; }
    sleep 0.1
done
grep -q ready "$WORK_DIR/server.log" || { echo "server not ready" >&2; exit 1; }
echo "server pid $SERVER_PID on CPU $SERVER_CPU; clients and engines on CPU $CLIENT_CPU" >&2

echo "== write: $HOSTS hosts, every ${STEP}s, $START to $END (and an hour either side) ==" >&2
$PY gen --http "$HTTP" --start "$START" --end "$END" --hosts "$HOSTS" --step "$STEP" >&2

echo "== export ==" >&2
taskset -c "$CLIENT_CPU" "$BIN/xtdb" export --addr "127.0.0.1:$PORT" --http "$HTTP" --to "$WORK_DIR/out" \
    --start "$START" --end "$END" --json >"$WORK_DIR/export.json"
python3 -c 'import json,sys; e=json.load(open(sys.argv[1])); print("export: %d rows, %d series, %d files, %d bytes, %.2f s, %.0f rows/s" % (e["rows"], e["series"], len(e["files"]), e["bytes"], e["seconds"], e["rows_per_sec"]))' \
    "$WORK_DIR/export.json" >&2

echo "== engines: $ENGINES ==" >&2
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo n/a), $(nproc) CPUs"
rc=0
$PY check --http "$HTTP" --out "$WORK_DIR/out" --start "$START" --end "$END" --engines "$ENGINES" \
    --runs "$RUNS" || rc=$?
exit $rc
