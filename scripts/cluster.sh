#!/usr/bin/env bash
# Cluster mode end to end on loopback: three nats-server in one JetStream
# cluster, three xtdb nodes (`serve --cluster`, one shard each), a steady
# writer with an ack log through node 1, and meanwhile:
#   1. kill -9 xtdb node 2 (its partitions must be owned again within the
#      lease: measured), later restart it;
#   2. kill -9 NATS server 3, later restart it;
#   3. a fourth xtdb node joins (takes partitions over);
#   4. node 4 is cut from NATS (it talks only to NATS server 3, which is
#      SIGSTOPped for 3 leases): it must stop applying and stop
#      acknowledging; then it comes back;
# then, once every partition's lag is 0, `xtdb-load verify` of every
# acknowledged point through EVERY node (0 missing, 0 changed), the apply
# logs checked for two nodes applying one partition at the same time, and
# the longest gap of a `latest` probe through node 1 (HTTP, every 50 ms).
# Beside the native writer, line protocol goes to nodes 1-3 in turn (new
# series through every node: the cluster's one catalog), and at the end
# every node's InfluxQL answer for those series must hold every
# acknowledged line's value exactly (the catalog agrees across nodes,
# also on the restarted and the joined node).
# Prints a summary; exit 1 on any lost or changed point, split brain, or an
# unowned partition at the end.
#
# SHORT=1: the CI form (fewer tags, 25 s of writes, steps 1 and 3 only).
# Env: TAGS RATE DURATION LEASE_MS NO_BUILD BIN DIR
set -euo pipefail
cd "$(dirname "$0")/.."

SHORT=${SHORT:-}
TAGS=${TAGS:-$([ -n "$SHORT" ] && echo 800 || echo 4000)}
RATE=${RATE:-$([ -n "$SHORT" ] && echo 8000 || echo 20000)}
DURATION=${DURATION:-$([ -n "$SHORT" ] && echo 25 || echo 60)}
LEASE_MS=${LEASE_MS:-3000}
BIN=${BIN:-target/release}
[ -n "${NO_BUILD:-}" ] || cargo build --release --bins >&2
command -v nats-server >/dev/null || { echo "nats-server not found (apt-get install nats-server)" >&2; exit 2; }

work=$(mktemp -d "${DIR:-${TMPDIR:-/tmp}}/xtdb-cluster.XXXXXX")
declare -A nats xt
cleanup() {
  for p in "${nats[@]}" "${xt[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill -9 "$p" 2>/dev/null || true; done
  [ -n "${writer:-}" ] && kill -9 "$writer" 2>/dev/null || true
  [ -n "${probe:-}" ] && kill -9 "$probe" 2>/dev/null || true
  [ -n "${lines:-}" ] && kill -9 "$lines" 2>/dev/null || true
  wait 2>/dev/null || true   # reap them quietly (no "Killed" lines)
  if [ -n "${KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
now_ms() { date +%s%3N; }
URLS=nats://127.0.0.1:14221,nats://127.0.0.1:14222,nats://127.0.0.1:14223

start_nats() {
  local i=$1
  cat >"$work/nats-$i.conf" <<CONF
server_name: n$i
listen: 127.0.0.1:1422$i
jetstream { store_dir: "$work/nats-$i", max_memory_store: 64MB, max_file_store: 4GB }
cluster {
  name: xtdb
  listen: 127.0.0.1:1622$i
  routes: [nats://127.0.0.1:16221, nats://127.0.0.1:16222, nats://127.0.0.1:16223]
}
CONF
  nats-server -c "$work/nats-$i.conf" >>"$work/nats-$i.log" 2>&1 &
  nats[$i]=$!
}

# start_xtdb I [URLS]: node I, one shard on CPU (I % 2).
start_xtdb() {
  local i=$1 urls=${2:-$URLS}
  XTDB_CLUSTER_APPLY_LOG=$work/apply-$i.log "$BIN/xtdb" serve --data-dir "$work/x$i" --cpus $((i % 2)) \
    --listen "127.0.0.1:1707$i" --http "127.0.0.1:1727$i" \
    --cluster "$urls" --node-id "x$i" --cluster-listen "127.0.0.1:1717$i" \
    --cluster-lease-ms "$LEASE_MS" >>"$work/x$i.log" 2>&1 &
  xt[$i]=$!
  for _ in $(seq 1 600); do
    grep -q "xtdb ready" "$work/x$i.log" && return 0
    kill -0 "${xt[$i]}" 2>/dev/null || { echo "node x$i exited:" >&2; tail -20 "$work/x$i.log" >&2; return 1; }
    sleep 0.1
  done
  echo "node x$i not ready after 60 s" >&2; return 1
}

status_json() { "$BIN/xtdb" cluster status --cluster "$URLS" --json 2>/dev/null; }
# Prints "unowned total_lag owners" (owners: distinct owner count).
status_line() {
  status_json | python3 -c '
import json, sys
j = json.load(sys.stdin); ps = j["partitions"]
print(sum(p["owner"] is None for p in ps), sum(p["lag_messages"] for p in ps), len({p["owner"] for p in ps if p["owner"]}))' 2>/dev/null || echo "x x x"
}
# wait_owned MAX_S [NOT_OWNER]: waits until every partition has a live owner
# (other than NOT_OWNER); prints the ms it took.
wait_owned() {
  local max=$1 dead=${2:-} t0; t0=$(now_ms)
  while [ $(( $(now_ms) - t0 )) -lt $((max * 1000)) ]; do
    if status_json | python3 -c '
import json, sys
dead = sys.argv[1]; j = json.load(sys.stdin)
ok = all(p["owner"] and p["owner"] != dead and p["owner"] in j["nodes"] for p in j["partitions"])
sys.exit(0 if ok else 1)' "$dead" 2>/dev/null; then echo $(( $(now_ms) - t0 )); return 0; fi
    sleep 0.1
  done
  echo "timeout"; return 1
}
wait_lag0() {
  for _ in $(seq 1 600); do
    read -r un lag _ < <(status_line)
    [ "$un" = 0 ] && [ "$lag" = 0 ] && return 0
    sleep 0.2
  done
  echo "lag did not reach 0: $(status_line)" >&2; return 1
}

for i in 1 2 3; do start_nats "$i"; done
sleep 2
for i in 1 2 3; do start_xtdb "$i"; done
echo "owners after start: $(wait_owned 30) ms" >&2

# Queries answered throughout: latest of 8 tags through node 1's HTTP every 50 ms.
python3 - "$work/probe.log" <<'PY' &
import sys, time, urllib.request
out = open(sys.argv[1], "w", buffering=1)
url = "http://127.0.0.1:17271/api/v1/latest?" + "&".join(f"id={t}" for t in range(8))
while True:
    t = time.time()
    try:
        urllib.request.urlopen(url, timeout=15).read(); ok = 1
    except Exception:
        ok = 0
    out.write(f"{t:.3f} {ok}\n")
    time.sleep(max(0, 0.05 - (time.time() - t)))
PY
probe=$!

# Line protocol: every 200 ms a batch of 20 series (one point each) to
# node 1, 2, 3 in turn; acknowledged (204) and refused batches logged.
python3 - "$work/lines.log" "$DURATION" <<'PY' &
import sys, time, urllib.request
out = open(sys.argv[1], "w", buffering=1)
end = time.time() + float(sys.argv[2])
base = int(time.time()) - 7200
k = 0
while time.time() < end:
    port = 17271 + k % 3
    body = "".join(f"lp,host=h{h:02d} value={k * 100 + h} {base + k}\n" for h in range(20))
    try:
        r = urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{port}/write?db=x&precision=s", data=body.encode(), method="POST"), timeout=15)
        ok = 1 if r.status == 204 else 0
    except Exception:
        ok = 0
    out.write(f"{k} {base + k} {ok}\n")
    k += 1
    time.sleep(0.2)
PY
lines=$!

"$BIN/xtdb-load" write --addr 127.0.0.1:17071 --tags "$TAGS" --rate "$RATE" --batch 500 --conns 2 \
  --duration "${DURATION}s" --ack-log "$work/acks.log" --json >"$work/write.json" 2>"$work/write.err" &
writer=$!
t_start=$(now_ms)
at() { local s=$1; while [ $(( $(now_ms) - t_start )) -lt $((s * 1000)) ]; do sleep 0.05; done; }

at 5
kill -9 "${xt[2]}"; wait "${xt[2]}" 2>/dev/null || true
takeover=$(wait_owned 30 x2 || true)
echo "kill -9 x2: partitions owned again in $takeover ms" >&2
at 10
start_xtdb 2
if [ -z "$SHORT" ]; then
  at 18
  kill -9 "${nats[3]}"; wait "${nats[3]}" 2>/dev/null || true
  echo "kill -9 NATS n3" >&2
  at 26
  start_nats 3
  echo "NATS n3 restarted" >&2
fi
at $((DURATION / 2 + 6))
start_xtdb 4 nats://127.0.0.1:14223
join=$(wait_owned 30 || true)
echo "x4 joined; every partition owned $join ms later" >&2
cut_refused=skipped
if [ -z "$SHORT" ]; then
  sleep $((LEASE_MS * 2 / 1000 + 1))
  before=$(grep -c "^x4 " "$work/apply-4.log" 2>/dev/null || echo 0)
  kill -STOP "${nats[3]}"
  echo "NATS n3 stopped: x4 is cut off" >&2
  sleep $((LEASE_MS * 3 / 1000))
  # A write through the cut node must not be acknowledged.
  if "$BIN/xtdb-load" write --addr 127.0.0.1:17074 --tags 10 --tag-base 9000000 --rate 1000 --batch 10 \
      --conns 1 --duration 2s --ack-log "$work/cut-acks.log" >/dev/null 2>&1 && [ -s "$work/cut-acks.log" ]; then
    cut_refused=no
  else
    cut_refused=yes
  fi
  kill -CONT "${nats[3]}"
  echo "NATS n3 resumed (writes through the cut node refused: $cut_refused)" >&2
fi
wait "$writer" || true
writer=""
wait "$lines" || true
wait_lag0
kill -9 "$probe" 2>/dev/null || true; wait "$probe" 2>/dev/null || true; probe=""

lost=0; changed=0; verified=""
for i in 1 2 3 4; do
  out=$("$BIN/xtdb-load" verify --addr "127.0.0.1:1707$i" --ack-log "$work/acks.log" --json 2>/dev/null | tail -1)
  read -r c m x < <(python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print(j["points_checked"], j["missing"], j["mismatched"])' "$out")
  lost=$((lost + m)); changed=$((changed + x)); verified="$verified x$i:$c/$m/$x"
done
# The line-protocol series through every node: every acknowledged value
# there, nothing that was never sent.
lp=""; lp_bad=0
for i in 1 2 3 4; do
  r=$(python3 - "$work/lines.log" "1727$i" <<'PY'
import json, sys, urllib.parse, urllib.request
sent = {}
for l in open(sys.argv[1]):
    k, ts, ok = map(int, l.split())
    for h in range(20):
        sent[(f"h{h:02d}", ts)] = (k * 100 + h, ok)
q = urllib.parse.quote("SELECT value FROM lp GROUP BY host")
try:
    j = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[2]}/query?db=x&epoch=s&q={q}", timeout=30))
except Exception as e:
    print(f"error:{e.__class__.__name__} 1"); sys.exit()
got = {}
for s in j["results"][0].get("series", []):
    for ts, v in s["values"]:
        got[(s["tags"]["host"], ts)] = v
missing = sum(1 for key, (v, ok) in sent.items() if ok and got.get(key) != v)
foreign = sum(1 for key, v in got.items() if key not in sent or sent[key][0] != v)
acked = sum(ok for _, ok in sent.values())
print(f"{acked}/{missing}/{foreign} {missing + foreign}")
PY
)
  lp="$lp x$i:${r% *}"; lp_bad=$((lp_bad + ${r##* }))
done
# Split brain: per partition, batches applied by different nodes never overlap in time.
split=$(cat "$work"/apply-*.log | python3 -c '
import sys, collections
by = collections.defaultdict(list)
for l in sys.stdin:
    f = l.split()
    if len(f) == 7:
        by[int(f[1])].append((int(f[5]), int(f[6]), f[0], int(f[2]), int(f[3])))
bad = 0
for p, v in by.items():
    v.sort()
    for a, b in zip(v, v[1:]):
        if a[2] != b[2] and b[0] < a[1]:
            bad += 1
print(bad)')
gap=$(python3 -c '
import sys
rows = [l.split() for l in open(sys.argv[1])]
worst, last_ok, fails = 0.0, None, 0
for t, ok in rows:
    t = float(t)
    if ok == "1":
        if last_ok is not None: worst = max(worst, t - last_ok)
        last_ok = t
    else:
        fails += 1
print(f"{worst*1000:.0f} ms longest gap, {fails} failed of {len(rows)}")' "$work/probe.log")
read -r un lag owners < <(status_line)
acked=$(python3 -c '
import json, sys
j = json.load(open(sys.argv[1])); l = j["latency_us"]
print("%d points acked at %d/s, ack p50 %s us p99 %s us max %s us, %d errors" % (
    j["points_acked"], j["points_per_sec"], l["p50"], l["p99"], l["max"], j["error_count"]))' "$work/write.json" 2>/dev/null || echo "?")
echo "cluster.sh: writer $acked; takeover after kill -9: $takeover ms; join: $join ms; verify (checked/missing/changed)$verified; lost $lost, changed $changed; line protocol through every node (acked/missing/foreign)$lp; split-brain overlaps $split; cut node refused writes: $cut_refused; latest probe: $gap; unowned at end $un, owners $owners"
[ "$lost" = 0 ] && [ "$changed" = 0 ] && [ "$lp_bad" = 0 ] && [ "$split" = 0 ] && [ "$un" = 0 ] && [ "$cut_refused" != no ]
