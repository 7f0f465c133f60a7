#!/usr/bin/env bash
# The hostile-use issue's case 8 on a real full disk: a 512 MiB ext4
# filesystem on a loop device (needs root), the server at its default
# settings (64 MiB WAL segments, 63.5 MiB chunk files).
#   1. running: ballast leaves 16 MiB free; HTTP writes until 507; reads
#      are served; the ballast goes; writes resume without a restart;
#   2. starting: ballast again, the server restarts on the nearly full
#      disk, serves reads, refuses what does not fit, resumes when freed;
#   3. a last restart: the count of stored points equals the count of
#      acknowledged ones (nothing lost, nothing refused stored).
# Prints one line per step.   scripts/disk_full.sh [target/release]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:-target/release}")
[ -x "$BIN/xtdb" ] || cargo build --release --bins
[ "$(id -u)" = 0 ] || { echo "needs root (mount -o loop)"; exit 2; }
WORK=$(mktemp -d)
MNT=$WORK/mnt
mkdir -p "$MNT"
truncate -s 512M "$WORK/fs.img"
mkfs.ext4 -q -F "$WORK/fs.img"
mount -o loop "$WORK/fs.img" "$MNT"
SP=
trap '[ -n "$SP" ] && kill $SP 2>/dev/null; sleep 0.5; umount "$MNT" 2>/dev/null || umount -l "$MNT"; rm -rf "$WORK"' EXIT
start() {
  taskset -c 1 "$BIN/xtdb" serve --data-dir "$MNT/data" --cpus 1 \
    --listen 127.0.0.1:7401 --http 127.0.0.1:7402 >>"$WORK/log" 2>&1 &
  SP=$!
  local t0=$(date +%s.%N)
  for _ in $(seq 300); do
    if curl -sf http://127.0.0.1:7402/ping >/dev/null; then
      echo "server ready in $(echo "$(date +%s.%N) - $t0" | bc) s, $(df -m --output=avail "$MNT" | tail -1 | tr -d ' ') MiB free"
      return
    fi
    sleep 0.1
  done
  echo "server did not start"; tail -20 "$WORK/log"; exit 1
}
stop() { kill "$SP"; wait "$SP" 2>/dev/null || true; SP=; }
drive() { MNT=$MNT STATE=$WORK/state taskset -c 0 python3 - "$@" <<'PY'
import json, os, sys, time, urllib.request, urllib.error
A = "http://127.0.0.1:7402"
state = json.load(open(os.environ["STATE"])) if os.path.exists(os.environ["STATE"]) else {"next": 0, "acked": 0}
ballast = os.path.join(os.environ["MNT"], "ballast")
def post(k):
    lines = "".join(f"m,s=s{s} v={k * 0.5 + s} {k * 50 + j}\n" for s in range(100) for j in range(50))
    r = urllib.request.Request(f"{A}/write?db=plant&precision=s", data=lines.encode(), method="POST")
    try:
        with urllib.request.urlopen(r, timeout=30) as x:
            return x.status, b""
    except urllib.error.HTTPError as e:
        return e.code, e.read()
def count():
    q = urllib.parse.quote("SELECT count(v) FROM m")
    with urllib.request.urlopen(f"{A}/query?db=plant&q={q}", timeout=60) as x:
        body = json.load(x)
    try:
        return body["results"][0]["series"][0]["values"][0][1]
    except (KeyError, IndexError):
        return 0
def fill(leave_mib):
    st = os.statvfs(os.environ["MNT"])
    free = st.f_bavail * st.f_frsize
    n = max(free - (leave_mib << 20), 0)
    with open(ballast, "ab") as f:
        os.posix_fallocate(f.fileno(), os.path.getsize(ballast), n)
def write_until_refused():
    t0 = time.time()
    while True:
        k = state["next"]; state["next"] += 1
        st, body = post(k)
        if st == 204:
            state["acked"] += 5000
        else:
            return st, body, time.time() - t0
def resume():
    os.remove(ballast)
    t0 = time.time()
    refused = 0
    while True:
        k = state["next"]; state["next"] += 1
        st, _ = post(k)
        if st == 204:
            state["acked"] += 5000
            return time.time() - t0, refused
        refused += 1
        if time.time() - t0 > 30:
            sys.exit("writes did not resume within 30 s")
        time.sleep(0.05)
step = sys.argv[1]
if step == "fill":
    fill(int(sys.argv[2]))
elif step == "full":
    st, body, secs = write_until_refused()
    print(f"  writes taken until the disk filled: {state['acked']:,} points acknowledged in all; then {st}: {body.decode()[:300]}")
    again = [post(state["next"] + i)[0] for i in range(5)]
    state["next"] += 5
    t0 = time.time(); c = count(); ms = (time.time() - t0) * 1e3
    print(f"  while full: 5 more writes -> {again}; count(v) read in {ms:.0f} ms = {c:,} (acknowledged {state['acked']:,})")
    if c != state["acked"] or st != 507 or any(a != 507 for a in again):
        sys.exit("FAILED: a read disagrees with the acknowledgements, or a refusal was not 507")
elif step == "resume":
    secs, refused = resume()
    for _ in range(20):
        k = state["next"]; state["next"] += 1
        st, body = post(k)
        if st != 204:
            sys.exit(f"FAILED: write after resuming got {st}: {body[:200]}")
        state["acked"] += 5000
    print(f"  ballast removed: writes taken again after {secs:.2f} s ({refused} refused meanwhile), 20 more batches all 204")
elif step == "verify":
    c = count()
    print(f"  stored points {c:,}, acknowledged {state['acked']:,}: {'equal' if c == state['acked'] else 'DIFFERENT'}")
    if c != state["acked"]:
        sys.exit(1)
json.dump(state, open(os.environ["STATE"], "w"))
PY
}
echo "1. running server, disk fills"
start
drive fill 16
drive full
drive resume
echo "2. restart on a nearly full disk"
stop
drive fill 16
start
drive full
drive resume
echo "3. restart"
stop
start
drive verify
stop
grep -c "disk full" "$WORK/log" | sed 's/^/  server log lines naming the full disk: /'
