#!/usr/bin/env bash
# The issue's hostile-input cases, one by one, against a release server
# pinned to CPU 1 (clients on CPU 0), then the seeded mix
# (`xtdb-load scenario hostile`). Prints one line per case.
#   scripts/hostile.sh [target/release]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release}
[ -x "$BIN/xtdb" ] || cargo build --release --bins
DIR=$(mktemp -d)
trap 'kill $SP 2>/dev/null || true; rm -rf "$DIR"' EXIT
start() {
  rm -rf "$DIR/data"; mkdir -p "$DIR/data"
  taskset -c 1 "$BIN/xtdb" serve --data-dir "$DIR/data" --cpus 1 \
    --listen 127.0.0.1:7301 --http 127.0.0.1:7302 "$@" >"$DIR/log" 2>&1 &
  SP=$!
  for _ in $(seq 100); do curl -sf http://127.0.0.1:7302/ping >/dev/null && return; sleep 0.1; done
  echo "server did not start"; cat "$DIR/log"; exit 1
}
stop() { kill "$SP"; wait "$SP" 2>/dev/null || true; }

start
SP_PID=$SP taskset -c 0 python3 - <<'PY'
import os, socket, time, threading, json
A = ("127.0.0.1", 7302)
def req(method, path, body=b"", timeout=60):
    s = socket.create_connection(A, timeout=timeout)
    s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    out = b""
    while True:
        try:
            d = s.recv(1 << 20)
        except socket.timeout:
            break
        if not d: break
        out += d
    s.close()
    return int(out[9:12]) if len(out) >= 12 else 0, out
def rss():
    with open(f"/proc/{os.environ['SP_PID']}/status") as f:
        for l in f:
            if l.startswith("VmRSS"): return int(l.split()[1]) // 1024
# 3: 64 slow-drip bodies, then 30 normal writes a second apart.
drips = []
for _ in range(64):
    s = socket.create_connection(A); s.sendall(b"POST /write HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nm"); drips.append(s)
ok = 0
for i in range(30):
    st, _ = req("POST", "/write", f"m,i={i} v=1\n".encode()); ok += st == 204
    for s in drips:
        try: s.send(b",")
        except OSError: pass
    time.sleep(1)
print(f"case 3, 64 slow-drip bodies: {ok}/30 normal writes 204")
for s in drips: s.close()
# 4: 1,100 connections that never finish their headers.
lor = []
for _ in range(1100):
    try:
        s = socket.create_connection(A, timeout=5); s.sendall(b"GET /api/v1/tags HTTP/1.1\r\nHost: x\r\nX-a: "); lor.append(s)
    except OSError: pass
time.sleep(0.5)
ok = sum(req("GET", "/health")[0] == 200 for _ in range(30))
print(f"case 4, {len(lor)} unfinished headers: {ok}/30 normal requests 200")
for s in lor: s.close()
# 5: a range over 5 M points of one tag, while a writer measures its latency.
for c in range(100):
    body = "".join(f"big,k=a v={c*50000+j}.5 {1700000000000000+c*50000+j}\n" for j in range(50000)).encode()
    assert req("POST", "/write?precision=u", body)[0] == 204
time.sleep(3)
lat = []; stop = False
def writer():
    i = 0
    while not stop:
        t = time.time(); req("POST", "/write", f"w v={i}\n".encode()); lat.append(time.time() - t); i += 1; time.sleep(0.02)
th = threading.Thread(target=writer); th.start(); time.sleep(1)
r0 = rss(); t = time.time(); st, out = req("GET", "/api/v1/range?tag=big%2Ck%3Da%20v")
dt = time.time() - t; time.sleep(0.5); stop = True; th.join()
lat.sort()
err = json.loads(out.split(b"\r\n\r\n", 1)[1])["error"][:60]
print(f"case 5, range over 5 M points (default limit): status {st} in {dt:.3f} s, {err}..., RSS {r0} -> {rss()} MiB, writer max {max(lat)*1e3:.1f} ms")
PY
stop
# 5 again with the limit raised: the 5 M points streamed.
start --max-points-per-query 10000000
SP_PID=$SP taskset -c 0 python3 - <<'PY'
import os, socket, time, threading
A = ("127.0.0.1", 7302)
def req(method, path, body=b""):
    s = socket.create_connection(A, timeout=120)
    s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    n = 0; st = None
    while True:
        d = s.recv(1 << 20)
        if not d: break
        if st is None: st = int(d[9:12])
        n += len(d)
    s.close(); return st, n
def rss():
    with open(f"/proc/{os.environ['SP_PID']}/status") as f:
        for l in f:
            if l.startswith("VmRSS"): return int(l.split()[1]) // 1024
for c in range(100):
    body = "".join(f"big,k=a v={c*50000+j}.5 {1700000000000000+c*50000+j}\n" for j in range(50000)).encode()
    assert req("POST", "/write?precision=u", body)[0] == 204
time.sleep(3)
lat = []; stop = False; peak = [0]
def writer():
    i = 0
    while not stop:
        t = time.time(); req("POST", "/write", f"w v={i}\n".encode()); lat.append(time.time() - t); i += 1
        peak[0] = max(peak[0], rss()); time.sleep(0.02)
th = threading.Thread(target=writer); th.start(); time.sleep(1)
r0 = rss(); t = time.time(); st, n = req("GET", "/api/v1/range?tag=big%2Ck%3Da%20v"); dt = time.time() - t
time.sleep(0.5); stop = True; th.join(); lat.sort()
print(f"case 5, range over 5 M points streamed (--max-points-per-query 10000000): status {st}, {n/1e6:.0f} MB in {dt:.1f} s, RSS {r0} -> peak {peak[0]} MiB, writer p99 {lat[int(len(lat)*0.99)]*1e3:.1f} ms max {max(lat)*1e3:.1f} ms")
PY
stop
# 7: one POST of 1 M distinct series.
start
taskset -c 0 python3 - <<'PY'
import socket
A = ("127.0.0.1", 7302)
body = "".join(f"f,s={i} v=1\n" for i in range(1000000)).encode()
s = socket.create_connection(A, timeout=120)
s.sendall(f"POST /write HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
out = b""
while True:
    d = s.recv(1 << 16)
    if not d: break
    out += d
msg = out.split(b"\r\n\r\n", 1)[1][:90].decode()
print(f"case 7, one POST of 1 M new series ({len(body)/1e6:.0f} MB): {out[:12].decode()} {msg}...")
PY
echo "case 7, data dir after it: $(du -sm "$DIR/data" | cut -f1) MiB (preallocated WAL included)"
stop
# The seeded mix.
start
taskset -c 0 "$BIN/xtdb-load" scenario hostile --http 127.0.0.1:7302 --duration 20s | tail -8
stop
