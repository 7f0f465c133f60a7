#!/usr/bin/env bash
# kill -9 under load: CYCLES times (default 100)
#   start `xtdb serve` (pinned) on one data dir -> verify what the previous cycle acknowledged
#   (and, every FULL_EVERY cycles, everything acknowledged so far: verifying everything in
#   every cycle would make the run quadratic in CYCLES)
#   -> drive it with `xtdb-load write --ack-log` -> kill -9 the server at a random moment
#      (spread over 0.2..MAX_MS ms, so kills land during flushes, chunk seals and WAL rotation)
# then a final restart and a verify of everything. Prints cycles, acknowledged points, lost, changed,
# and recovery time p50 / max: start to `ready` (includes waiting for the killed server's
# listener to go, see probe_listen in src/server.rs) and the storage recovery the shard logs.
# Exit 1 if anything was lost or changed.
#
# Env: CYCLES FULL_EVERY TAGS BATCH CONNS MAX_MS PORT SERVER_CPU GEN_CPU SYNC BUDGET DIR NO_BUILD
set -euo pipefail
cd "$(dirname "$0")/.."

CYCLES=${CYCLES:-100}
FULL_EVERY=${FULL_EVERY:-10}
TAGS=${TAGS:-20000}
BATCH=${BATCH:-2000}
CONNS=${CONNS:-2}
MAX_MS=${MAX_MS:-3000}
PORT=${PORT:-7191}
SERVER_CPU=${SERVER_CPU:-1}
GEN_CPU=${GEN_CPU:-0}
SYNC=${SYNC:-always}
BUDGET=${BUDGET:-67108864} # small memory budget: flushes happen during the run

[ -n "${NO_BUILD:-}" ] || cargo build --release --bins >&2
BIN=target/release
work=$(mktemp -d "${DIR:-${TMPDIR:-/tmp}}/xtdb-crash.XXXXXX")
acks=$work/acks # one log per cycle: acks/N.log
mkdir -p "$acks"
server=""
cleanup() {
  [ -n "$server" ] && kill -9 "$server" 2>/dev/null || true
  [ -n "${writer:-}" ] && kill -9 "$writer" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

now_ms() { date +%s%3N; }

# Starts the server; sets $server (pid), $ready_ms (launch to its `ready` line) and
# $open_ms (the slowest shard's storage recovery, as the server logs it: "opened ... in T")
# and $replay_ms / $replay_mb (that shard's WAL replay: "WAL replay X ms ... N bytes replayed").
start_server() {
  local t0 log=$work/server.log
  t0=$(now_ms)
  "$BIN/xtdb" serve --data-dir "$work/data" --cpus "$SERVER_CPU" --listen "127.0.0.1:$PORT" \
    --sync "$SYNC" --memory-budget "$BUDGET" >"$log" 2>&1 &
  server=$!
  for _ in $(seq 1 6000); do
    if grep -qw ready "$log"; then
      ready_ms=$(($(now_ms) - t0))
      read -r open_ms replay_ms replay_mb < <(python3 - "$log" <<'PY'
import re, sys
text = open(sys.argv[1], encoding="utf-8").read()
units = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1000.0}
ms = [float(v) * units[u] for v, u in re.findall(r"opened .* in ([0-9.]+)(ns|µs|us|ms|s) ", text)]
replays = [(float(r), int(b)) for r, b in re.findall(r"WAL replay ([0-9.]+) ms\).*? ([0-9]+) bytes replayed", text)]
r, b = max(replays) if replays else (0.0, 0)
print(round(max(ms)) if ms else 0, round(r), round(b / 1e6))
PY
)
      return 0
    fi
    if ! kill -0 "$server" 2>/dev/null; then
      echo "server exited during start:" >&2
      cat "$log" >&2
      return 1
    fi
    sleep 0.01
  done
  echo "server not ready after 60 s" >&2
  return 1
}

# Verifies one ack log; prints "checked missing mismatched".
verify() {
  local log=$1 out
  [ -s "$log" ] || { echo "0 0 0"; return 0; }
  out=$("$BIN/xtdb-load" verify --addr "127.0.0.1:$PORT" --ack-log "$log" --cpu "$GEN_CPU" --json 2>/dev/null | tail -1) || true
  python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print(j["points_checked"], j["missing"], j["mismatched"])' "$out"
}

# Verifies the previous cycle's log, or (every FULL_EVERY cycles) all of them;
# sets $checked, $lost, $changed, $scope.
check() {
  local c=$1 log missing mismatched
  if [ $((c % FULL_EVERY)) = 0 ] || [ "$c" -gt "$CYCLES" ]; then
    log=$work/all.log
    cat "$acks"/*.log >"$log" 2>/dev/null || : >"$log"
    scope="all"
  else
    log=$acks/$((c - 1)).log
    scope="cycle $((c - 1))"
  fi
  read -r checked missing mismatched < <(verify "$log")
  lost=$((lost + missing))
  changed=$((changed + mismatched))
  if [ "$missing" != 0 ] || [ "$mismatched" != 0 ]; then
    echo "cycle $c: $missing missing, $mismatched changed after restart" >&2
  fi
}

recoveries=()
opens=()
replays=()
lost=0
changed=0
checked=0
for c in $(seq 1 "$CYCLES"); do
  start_server
  recoveries+=("$ready_ms")
  opens+=("$open_ms")
  replays+=("$replay_ms")
  check "$c"
  "$BIN/xtdb-load" write --addr "127.0.0.1:$PORT" --tags "$TAGS" --tag-base $((c * TAGS)) --batch "$BATCH" \
    --conns "$CONNS" --duration 60s --cpus "$GEN_CPU" --seed "$c" --ack-log "$acks/$c.log" -q >/dev/null 2>&1 &
  writer=$!
  sleep "$(python3 -c "import random; print(random.uniform(0.2, $MAX_MS / 1000))")"
  kill -9 "$server"
  wait "$server" 2>/dev/null || true
  # The writer would keep reconnecting until its --duration; its ack log
  # holds whole lines, and a torn last one is ignored by verify.
  kill -9 "$writer" 2>/dev/null || true
  wait "$writer" 2>/dev/null || true
  writer=""
  printf 'cycle %d/%d: %s, %s points verified (%s), %s lost, %s changed so far\n' \
    "$c" "$CYCLES" "$ready_ms ms to ready, storage $open_ms ms (WAL replay $replay_ms ms, $replay_mb MB)" "$checked" "$scope" "$lost" "$changed" >&2
done
start_server
recoveries+=("$ready_ms")
opens+=("$open_ms")
check $((CYCLES + 1))
kill -TERM "$server"
wait "$server" 2>/dev/null || true
server=""

# p50 and max of the arguments.
p50_max() {
  local sorted
  sorted=$(printf '%s\n' "$@" | sort -n)
  echo "$(echo "$sorted" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}') ms / $(echo "$sorted" | tail -1) ms"
}
echo "| kill -9 cycles | acknowledged points verified | lost | changed | start to ready p50 / max | storage recovery p50 / max | of which WAL replay p50 / max |"
echo "|---|---|---|---|---|---|---|"
echo "| $CYCLES | $checked | $lost | $changed | $(p50_max "${recoveries[@]}") | $(p50_max "${opens[@]}") | $(p50_max "${replays[@]}") |"
[ "$lost" = 0 ] && [ "$changed" = 0 ]
