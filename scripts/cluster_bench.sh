#!/usr/bin/env bash
# Cluster mode against a single node on the same machine: write throughput
# and ack latency of `xtdb-load write` (TAGS tags, batches of BATCH, CONNS
# connections, RATE points/s — 0: as fast as acknowledged — for SECS s)
#   1. into a single node (`serve --cpus 1`),
#   2. into one cluster node on three nats-server (JetStream, R=3),
# then the catch-up rate of a joining node: a second cluster node starts,
# takes half of the partitions and replays them from the log (time from
# its start to every partition's lag 0, and points/s).
# Env: TAGS RATE BATCH CONNS SECS BIN NO_BUILD
set -euo pipefail
cd "$(dirname "$0")/.."
TAGS=${TAGS:-10000}; RATE=${RATE:-0}; BATCH=${BATCH:-5000}; CONNS=${CONNS:-2}; SECS=${SECS:-20}
BIN=${BIN:-target/release}
[ -n "${NO_BUILD:-}" ] || cargo build --release --bins >&2
work=$(mktemp -d /tmp/xtdb-cluster-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
now_ms() { date +%s%3N; }
URLS=nats://127.0.0.1:14321,nats://127.0.0.1:14322,nats://127.0.0.1:14323

wait_ready() { for _ in $(seq 1 600); do grep -q "xtdb ready" "$1" && return 0; sleep 0.1; done; cat "$1" >&2; return 1; }
write() { # ADDR -> "points/s p50 p99 max errors"
  taskset -c 0 "$BIN/xtdb-load" write --addr "$1" --tags "$TAGS" --rate "$RATE" --batch "$BATCH" --conns "$CONNS" \
    --duration "${SECS}s" --cpus 0 --json 2>/dev/null | tail -1 | python3 -c '
import json, sys
j = json.load(sys.stdin); l = j["latency_us"]
print(j["points_acked"], round(j["points_per_sec"]), l["p50"], l["p99"], l["max"], j["error_count"])'
}

"$BIN/xtdb" serve --data-dir "$work/single" --cpus 1 --listen 127.0.0.1:17371 >"$work/single.log" 2>&1 &
pids+=($!); wait_ready "$work/single.log"
read -r sn sr sp50 sp99 smax serr < <(write 127.0.0.1:17371)
kill -TERM "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

for i in 1 2 3; do
  cat >"$work/n$i.conf" <<CONF
server_name: n$i
listen: 127.0.0.1:1432$i
jetstream { store_dir: "$work/n$i", max_memory_store: 64MB, max_file_store: 8GB }
cluster { name: bench, listen: 127.0.0.1:1642$i, routes: [nats://127.0.0.1:16421, nats://127.0.0.1:16422, nats://127.0.0.1:16423] }
CONF
  nats-server -c "$work/n$i.conf" >"$work/n$i.log" 2>&1 &
  pids+=($!)
done
node() { # I CPU
  "$BIN/xtdb" serve --data-dir "$work/x$1" --cpus "$2" --listen "127.0.0.1:1747$1" --cluster "$URLS" \
    --node-id "x$1" --cluster-listen "127.0.0.1:1757$1" >"$work/x$1.log" 2>&1 &
  pids+=($!); wait_ready "$work/x$1.log"
}
lag0() { # MAX_S OWNERS: waits until OWNERS nodes own partitions and none lags; prints ms waited
  local t0; t0=$(now_ms)
  for _ in $(seq 1 $(($1 * 10))); do
    if "$BIN/xtdb" cluster status --cluster "$URLS" --json 2>/dev/null | python3 -c '
import json, sys
j = json.load(sys.stdin)
sys.exit(0 if all(p["owner"] and p["lag_messages"] == 0 for p in j["partitions"]) and len({p["owner"] for p in j["partitions"]}) == int(sys.argv[1]) else 1)' "$2"; then
      echo $(( $(now_ms) - t0 )); return 0; fi
    sleep 0.1
  done
  echo timeout
}
node 1 1
lag0 30 1 >/dev/null
read -r cn cr cp50 cp99 cmax cerr < <(write 127.0.0.1:17471)
settle=$(lag0 120 1)
t0=$(now_ms)
node 2 0
join_ms=$(lag0 300 2)
total=$(( $(now_ms) - t0 ))
echo "| mode | points acked | points/s | ack p50 | ack p99 | ack max | errors |"
echo "|---|---|---|---|---|---|---|"
echo "| single node (\`--cpus 1\`) | $sn | $sr | $sp50 µs | $sp99 µs | $smax µs | $serr |"
echo "| cluster node, 3 × nats-server R=3 | $cn | $cr | $cp50 µs | $cp99 µs | $cmax µs | $cerr |"
echo "cluster: applied to lag 0 $settle ms after the writer stopped; a joining node took half the partitions and replayed them: ready + lag 0 in $total ms (≈ $(( cn / 2 * 1000 / (total > 0 ? total : 1) )) points/s of catch-up)"
