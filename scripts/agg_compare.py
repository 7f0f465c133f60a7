#!/usr/bin/env python3
"""HTTP half of scripts/agg_compare.sh: times the aggregate queries against
one system over HTTP and keeps a few answers for the cross-check, then (the
`table` command) prints the side-by-side table and the answer check.

    agg_compare.py time SYSTEM BASE_URL OUT.json   (env: see agg_compare.sh)
    agg_compare.py table OUT.json...

`time` sends each query ITER times (after WARMUP untimed requests) on one
keep-alive HTTP/1.1 connection (`http.client`, this process pinned to the
client CPU by the caller), timing request + the whole response body read
(the JSON is parsed once, outside the timing, for the check). A query stops
early after BUDGET seconds of requests; the number sent is recorded.

Every system gets the same windows over the same data (see agg_compare.sh):
xtdb `/api/v1/aggregate|plot` (xtdb-http) and `/query` InfluxQL
(xtdb-influxql), InfluxDB 1.x `/query` InfluxQL, VictoriaMetrics
`/api/v1/query_range` with MetricsQL rollups, `nocache=1` (otherwise
repeated queries are answered from its rollup result cache; xtdb and
InfluxDB have none). VictoriaMetrics' rollup at time t covers (t - w, t]:
it is asked at window start + w - 1 ms so that window is [start, start+w)
for these whole-second points, and its rows are relabelled with the
window start.

This file never starts or stops a server.
"""

import datetime
import http.client
import json
import math
import os
import sys
import time
import urllib.parse

T0_US = int(os.environ.get("T0_US", "1767225600000000"))
SPAN_S = int(os.environ.get("SPAN_S", str(30 * 86400)))
DAY_S = int(os.environ.get("DAY_S", "86400"))
NTAGS = int(os.environ.get("NTAGS", "100"))
ONE_TAG = os.environ.get("ONE_TAG", "t1000000")
MANY_PREFIX = os.environ.get("MANY_PREFIX", "t2")
PIXELS = int(os.environ.get("PIXELS", "1000"))
ITER = int(os.environ.get("ITER", "50"))
WARMUP = int(os.environ.get("WARMUP", "3"))
BUDGET = float(os.environ.get("BUDGET", "120"))

T0_MS = T0_US // 1000

# The queries: (key, label, window width in ms, span in ms, tags).
QUERIES = [
    ("mean1h", "1-h means over SPAN", 3600_000, SPAN_S * 1000),
    ("mean1m", "1-min means over DAY", 60_000, DAY_S * 1000),
    ("twa", "time-weighted average over DAY (1 window)", DAY_S * 1000, DAY_S * 1000),
    ("plot", "plot values, PIXELS px over SPAN", None, SPAN_S * 1000),
    ("many", "NTAGS tags: 1-min means over DAY", 60_000, DAY_S * 1000),
]


def label(key):
    lab = dict((k, l) for k, l, _, _ in QUERIES)[key]
    return (lab.replace("SPAN", fmt_span(SPAN_S)).replace("DAY", fmt_span(DAY_S))
            .replace("PIXELS", f"{PIXELS:,}").replace("NTAGS", str(NTAGS)))


def fmt_span(s):
    if s % 86400 == 0:
        return f"{s // 86400} d" if s != 86400 else "24 h"
    return f"{s / 3600:g} h"


def plot_ms():
    return SPAN_S * 1000 / PIXELS


def influxql(key, twa_fn):
    """InfluxQL for xtdb /query and InfluxDB. twa_fn: the TWA select list."""
    one = f"FROM plant WHERE \"tag\" = '{ONE_TAG}'"
    many = f"FROM plant WHERE \"tag\" =~ /^{MANY_PREFIX}/"
    t = lambda span: f"time >= {T0_MS}ms AND time < {T0_MS + span}ms"
    if key == "mean1h":
        return f"SELECT mean(v) {one} AND {t(SPAN_S * 1000)} GROUP BY time(1h)"
    if key == "mean1m":
        return f"SELECT mean(v) {one} AND {t(DAY_S * 1000)} GROUP BY time(1m)"
    if key == "twa":
        return None if twa_fn is None else f"SELECT {twa_fn} {one} AND {t(DAY_S * 1000)}"
    if key == "plot":
        w = int(plot_ms())
        off = T0_MS % w
        return (f"SELECT first(v), last(v), min(v), max(v) {one} AND {t(SPAN_S * 1000)} "
                f"GROUP BY time({w}ms, {off}ms)")
    if key == "many":
        return f"SELECT mean(v) {many} AND {t(DAY_S * 1000)} GROUP BY time(1m), \"tag\""


def rfc3339(ms):
    t = datetime.datetime.fromtimestamp(ms // 1000, datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def vm_range(expr, w_ms, span_ms):
    """Evaluated at window start + w - 1 ms (RFC 3339: float seconds lose
    the millisecond), up to the span's end."""
    return "/api/v1/query_range?" + urllib.parse.urlencode({
        "query": expr, "start": rfc3339(T0_MS + w_ms - 1), "end": rfc3339(T0_MS + span_ms),
        "step": f"{w_ms}ms", "nocache": "1"})


def requests(system):
    """key -> (path, how the answer is read) or None (not available)."""
    out = {}
    if system in ("xtdb-influxql", "influxdb"):
        twa = "time_weighted_mean(v)" if system == "xtdb-influxql" else "integral(v, 1s) / %d" % DAY_S
        for key, _, _, _ in QUERIES:
            q = influxql(key, twa)
            out[key] = None if q is None else (
                "/query?" + urllib.parse.urlencode({"db": "xtdb", "epoch": "ms", "q": q}), "influxql")
    elif system == "xtdb-http":
        # Series by key (the answer then names them): `measurement,tags field`.
        key_of = lambda tag: f"plant,tag={tag} v"
        def agg(tags, every, span, func="mean"):
            p = [("tag", key_of(t)) for t in tags] + [
                ("start", str(T0_MS)), ("end", str(T0_MS + span)), ("precision", "ms"),
                ("every", every), ("func", func)]
            return "/api/v1/aggregate?" + urllib.parse.urlencode(p)
        one = [ONE_TAG]
        many = [f"{MANY_PREFIX}{k:06d}" for k in range(NTAGS)]
        out["mean1h"] = (agg(one, "1h", SPAN_S * 1000), "xtdb")
        out["mean1m"] = (agg(one, "1m", DAY_S * 1000), "xtdb")
        out["twa"] = (agg(one, f"{DAY_S}s", DAY_S * 1000, "twa"), "xtdb")
        out["plot"] = ("/api/v1/plot?" + urllib.parse.urlencode([
            ("tag", key_of(ONE_TAG)), ("start", str(T0_MS)), ("end", str(T0_MS + SPAN_S * 1000)),
            ("precision", "ms"), ("pixels", str(PIXELS))]), "xtdb-plot")
        out["many"] = (agg(many, "1m", DAY_S * 1000), "xtdb")
    elif system == "victoria-metrics":
        one = f'plant_v{{tag="{ONE_TAG}"}}'
        many = f'plant_v{{tag=~"{MANY_PREFIX}.*"}}'
        out["mean1h"] = (vm_range(f"avg_over_time({one}[1h])", 3600_000, SPAN_S * 1000), "vm")
        out["mean1m"] = (vm_range(f"avg_over_time({one}[1m])", 60_000, DAY_S * 1000), "vm")
        d = DAY_S * 1000
        out["twa"] = (vm_range(f"integrate({one}[{DAY_S}s]) / {DAY_S}", d, d), "vm")
        w = int(round(plot_ms()))
        # First, last, min and max per interval in one request
        # (rollup_candlestick would do, but 1.79.5 drops its last window).
        fs = [("first", "open"), ("last", "close"), ("min", "low"), ("max", "high")]
        expr = "union(" + ", ".join(
            f'label_set({f}_over_time({one}[{w}ms]), "rollup", "{r}")' for f, r in fs) + ")"
        out["plot"] = (vm_range(expr, w, SPAN_S * 1000), "vm-candle")
        out["many"] = (vm_range(f"avg_over_time({many}[1m])", 60_000, DAY_S * 1000), "vm")
    else:
        raise SystemExit(f"unknown system {system}")
    return out


def digest(key, how, body):
    """The answer reduced to {series: {window_start_ms: {col: value}}}, rows."""
    d = json.loads(body)
    series = {}
    rows = 0
    if how == "influxql":
        res = d["results"][0]
        if "error" in res:
            raise RuntimeError(res["error"])
        for s in res.get("series", []):
            name = s.get("tags", {}).get("tag", ONE_TAG)
            cols = s["columns"]
            m = series.setdefault(name, {})
            for v in s["values"]:
                if all(x is None for x in v[1:]):
                    continue
                rows += 1
                # Without GROUP BY time InfluxDB labels the row 0 (xtdb the start).
                ts = T0_MS if key == "twa" else int(v[0])
                m[ts] = dict(zip(cols[1:], v[1:]))
    elif how in ("xtdb", "xtdb-plot"):
        for s in d:
            name = s["tag"].split("tag=")[-1].split(" ")[0]
            m = series.setdefault(name, {})
            for ts, v in s["rows"]:
                rows += 1
                if how == "xtdb":
                    m[int(ts)] = {"v": v}
                else:
                    # Plot rows are real points: fold them per interval.
                    i = int((ts - T0_MS) // plot_ms())
                    w = m.setdefault(int(T0_MS + i * plot_ms()), {"min": v, "max": v})
                    w["min"], w["max"] = min(w["min"], v), max(w["max"], v)
    elif how in ("vm", "vm-candle"):
        if d.get("status") != "success":
            raise RuntimeError(body[:300])
        w = dict((k, x) for k, _, x, _ in QUERIES)[key] or plot_ms()
        for s in d["data"]["result"]:
            name = s["metric"].get("tag", ONE_TAG)
            col = s["metric"].get("rollup", "v")
            m = series.setdefault(name, {})
            for ts, v in s["values"]:
                rows += 1
                start = int(round(float(ts) * 1000 + 1 - w))
                m.setdefault(start, {})[col] = float(v)
    return series, rows


def check_sample(series, key):
    """A few windows' values, by series and window start, for the check."""
    out = {}
    names = sorted(series)
    for name in ([names[0], names[len(names) // 2], names[-1]] if names else []):
        m = series[name]
        ks = sorted(m)
        pick = [ks[0], ks[len(ks) // 2], ks[-1]] if ks else []
        out[name] = {str(k): m[k] for k in pick}
    return out


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return None
    return xs[min(len(xs) - 1, int(math.ceil(p / 100 * len(xs))) - 1)]


def time_system(system, base, out_path):
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    result = {"system": system, "queries": {}}
    # The client's own floor: a request with an empty answer.
    ping = []
    for i in range(WARMUP + ITER):
        t = time.perf_counter()
        conn.request("GET", "/ping" if system != "victoria-metrics" else "/health")
        r = conn.getresponse()
        r.read()
        if i >= WARMUP:
            ping.append((time.perf_counter() - t) * 1e6)
    result["ping_us"] = {"p50": pct(ping, 50), "p99": pct(ping, 99)}
    for key, req in requests(system).items():
        if req is None:
            result["queries"][key] = None
            continue
        path, how = req
        lat = []
        body = b""
        t_budget = time.monotonic()
        err = None
        for i in range(WARMUP + ITER):
            t = time.perf_counter()
            conn.request("GET", path)
            r = conn.getresponse()
            body = r.read()
            el = (time.perf_counter() - t) * 1e6
            if r.status != 200:
                err = f"HTTP {r.status}: {body[:300]!r}"
                break
            if i >= WARMUP:
                lat.append(el)
            if time.monotonic() - t_budget > BUDGET and len(lat) >= 5:
                break
        q = {"path": path, "n": len(lat), "p50_us": pct(lat, 50), "p99_us": pct(lat, 99),
             "bytes": len(body), "error": err}
        if err is None:
            try:
                series, rows = digest(key, how, body)
                q["rows"] = rows
                q["series"] = len(series)
                q["sample"] = check_sample(series, key)
                q["full"] = {n: {str(k): v for k, v in m.items()} for n, m in series.items()}
            except Exception as e:  # the answer's shape is reported, not fatal
                q["error"] = f"unreadable answer: {e}: {body[:300]!r}"
        result["queries"][key] = q
        print(f"  {system} {key}: n {q['n']} p50 {fmt_ms(q['p50_us'])} p99 {fmt_ms(q['p99_us'])}"
              f" rows {q.get('rows')} {q['error'] or ''}", file=sys.stderr)
    with open(out_path, "w") as f:
        json.dump(result, f)


def fmt_ms(us):
    if us is None:
        return "n/a"
    ms = us / 1000
    return f"{ms:.3g} ms" if ms < 100 else f"{ms:.0f} ms"


# Which column of a peer's answer holds the value xtdb's "v" is compared to.
def compare_cols(key):
    return ["min", "max"] if key == "plot" else ["v"]


def peer_value(row, col, key):
    if key == "plot":
        return row.get(col, row.get({"min": "low", "max": "high"}[col]))
    if "v" in row:
        return row["v"]
    for k in ("mean", "time_weighted_mean", "integral_v"):
        if k in row:
            return row[k]
    vals = [v for v in row.values() if isinstance(v, (int, float))]
    return vals[0] if vals else None


def check(ref, other, key, tol):
    """Compares every window both answered; returns (compared, worst rel err, note)."""
    if ref is None or other is None or "full" not in ref or "full" not in other:
        return 0, None, "no answer"
    n, worst, missing = 0, 0.0, 0
    for name, m in ref["full"].items():
        om = other["full"].get(name)
        if om is None:
            missing += len(m)
            continue
        for ts, row in m.items():
            orow = om.get(ts)
            if orow is None:
                missing += 1
                continue
            for col in compare_cols(key):
                a = peer_value(row, col, key)
                b = peer_value(orow, col, key)
                if a is None or b is None:
                    continue
                n += 1
                worst = max(worst, abs(a - b) / max(abs(a), 1e-12))
    note = "ok" if n > 0 and worst <= tol and missing == 0 else "DIFFERS"
    if missing:
        note += f" ({missing} windows missing)"
    return n, worst, note


def table(paths):
    res = {}
    for p in paths:
        with open(p) as f:
            r = json.load(f)
        res[r["system"]] = r
    order = [s for s in ("xtdb-native", "xtdb-http", "xtdb-influxql", "influxdb", "victoria-metrics") if s in res]
    names = {"xtdb-native": "xtdb native (xtdb-load)", "xtdb-http": "xtdb HTTP /api/v1",
             "xtdb-influxql": "xtdb HTTP /query", "influxdb": "InfluxDB 1.6.7 /query",
             "victoria-metrics": "VictoriaMetrics 1.79.5 query_range"}
    print("| query | " + " | ".join(names[s] + " p50 / p99" for s in order) +
          " | InfluxDB p50 ÷ xtdb /query p50 | VM p50 ÷ xtdb /query p50 | ≥ 10× both |")
    print("|---|" + "---:|" * len(order) + "---:|---:|---|")
    ratios = {}
    for key, _, _, _ in QUERIES:
        cells = []
        for s in order:
            q = res[s]["queries"].get(key)
            if q is None:
                cells.append("n/a")
            elif q.get("error"):
                cells.append("error")
            else:
                cells.append(f"{fmt_ms(q['p50_us'])} / {fmt_ms(q['p99_us'])}")
        def ratio(peer):
            x = (res.get("xtdb-influxql", {}).get("queries") or {}).get(key)
            if x is None:
                x = (res.get("xtdb-http", {}).get("queries") or {}).get(key)
            p = (res.get(peer, {}).get("queries") or {}).get(key)
            if not x or not p or x.get("error") or p.get("error") or not x["p50_us"]:
                return "n/a"
            r = p["p50_us"] / x["p50_us"]
            ratios[(key, peer)] = r
            return f"{r:.1f}× faster" if r >= 1 else f"{1 / r:.1f}× slower"
        ri, rv = ratio("influxdb"), ratio("victoria-metrics")
        got = [ratios.get((key, p)) for p in ("influxdb", "victoria-metrics") if p in res]
        met = "-" if not got or None in got else ("met" if min(got) >= 10 else "**missed**")
        print(f"| {label(key)} | " + " | ".join(cells) + f" | {ri} | {rv} | {met} |")
    print("| client floor (`/ping`, `/health`) | " + " | ".join(
        "-" if s == "xtdb-native" else fmt_ms(res[s]["ping_us"]["p50"]) + " / " + fmt_ms(res[s]["ping_us"]["p99"])
        for s in order) + " | | | |")
    print()
    print("Rows per answer: " + "; ".join(
        f"{key} " + ", ".join(f"{s} {(res[s]['queries'].get(key) or {}).get('rows', '-')}" for s in order)
        for key, _, _, _ in QUERIES))
    print()
    # The answers, compared window by window against xtdb's /api/v1 answer.
    ref = res.get("xtdb-http")
    print("Answer check against xtdb /api/v1 (every window both answered; relative error):")
    bad = 0
    for key, _, _, _ in QUERIES:
        parts = []
        for s in order:
            if s in ("xtdb-http", "xtdb-native") or ref is None:
                continue
            o = res[s]["queries"].get(key)
            if o is None:
                parts.append(f"{s}: n/a")
                continue
            tol = 1e-3 if key == "twa" else 1e-6
            n, worst, note = check(ref["queries"].get(key), o, key, tol)
            if note != "ok":
                bad += 1
            parts.append(f"{s}: {n} values, worst {worst:.1e} {note}" if worst is not None else f"{s}: {note}")
        print(f"- {key}: " + "; ".join(parts))
    if "xtdb-native" in res:
        nat = res["xtdb-native"]["queries"]
        rows = ", ".join(f"{k} {(nat.get(k) or {}).get('rows')}" for k, _, _, _ in QUERIES)
        print(f"- xtdb native rows per request (xtdb-load): {rows}")
    return 1 if bad else 0


def main():
    if len(sys.argv) >= 5 and sys.argv[1] == "time":
        time_system(sys.argv[2], sys.argv[3], sys.argv[4])
    elif len(sys.argv) >= 3 and sys.argv[1] == "table":
        sys.exit(table(sys.argv[2:]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
