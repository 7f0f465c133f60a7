#!/usr/bin/env python3
"""The Python half of scripts/export_engines.sh: writes a known data set to
a running xtdb over HTTP line protocol (`gen`), and checks an `xtdb export`
of it with DuckDB, DataFusion and (optionally) Spark against xtdb's own
aggregates (`check`). Standard library only, apart from the engines, which
are imported only when asked for (the .sh sets up a venv with them).

Data set (`gen`): per host h (0..HOSTS-1) the series
`plant,host=hH,site=north\\ hall|south v` and `... t` (quality from the
line's `q` field: the server runs with --quality-field q) and
`line,host=hH p`, plus one untagged `ambient temp`; one point per series
every STEP seconds from one hour before --start to one hour past --end
(the export's bounds cut them off). Every value is a multiple of 1/16 below
2^15, so any sum of up to millions of them is exact in a double whatever the
order: xtdb's sums and the engines' must be equal bit for bit, not close.

`check` asks every engine the same questions (rows; per series count, min,
max, sum; per series and day; per series and hour with avg; a filter and a
group on the `tags` map; good quality only), compares each answer with
xtdb's (/api/v1/aggregate and InfluxQL /query over the same span), prints a
table of the engines' timings and exits 1 on any difference.
"""

import argparse
import json
import sys
import time
import urllib.parse
import urllib.request

US = 1_000_000
DAY_US = 86_400 * US
HOUR_US = 3_600 * US


def http_json(url, data=None):
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    with urllib.request.urlopen(req, timeout=300) as r:
        body = r.read()
        return json.loads(body) if body else None


def parse_day(s):
    """YYYY-MM-DD (UTC midnight) -> µs since the epoch."""
    import datetime

    d = datetime.datetime.strptime(s, "%Y-%m-%d").replace(tzinfo=datetime.timezone.utc)
    return int(d.timestamp()) * US


# ---------------------------------------------------------------- gen


def values(i, h):
    """The four values of tick i for host h: multiples of 1/16, |x| < 2^15."""
    v = ((i * 7919 + h * 104729) % 20001 - 10000) * 0.25
    t = (i % 4000) * 0.125 + h
    p = ((i * 31 + h) % 1000) * 0.5 - 250.0
    temp = ((i // 60) % 400) * 0.0625 - 5.0
    return v, t, p, temp


def quality(i):
    return 0 if i % 17 == 0 else (64 if i % 31 == 0 else 192)


def gen(args):
    start = parse_day(args.start) - HOUR_US
    end = parse_day(args.end) + HOUR_US
    step = args.step * US
    url = args.http.rstrip("/") + "/write?precision=u"
    sites = ["north\\ hall", "south"]
    lines, points, t0 = [], 0, time.monotonic()
    ticks = (end - start) // step

    def flush():
        nonlocal lines
        if lines:
            http_json(url, ("\n".join(lines) + "\n").encode())
            lines = []

    for i in range(ticks):
        ts = start + i * step
        for h in range(args.hosts):
            v, t, p, _ = values(i, h)
            # Each host's points a few µs apart, so series do not share timestamps.
            lines.append(f"plant,host=h{h},site={sites[h % 2]} v={v!r},t={t!r},q={quality(i + h)}i {ts + h}")
            lines.append(f"line,host=h{h} p={p!r} {ts + h}")
        lines.append(f"ambient temp={values(i, 0)[3]!r} {ts}")
        points += 3 * args.hosts + 1
        if len(lines) >= 20_000:
            flush()
    flush()
    secs = time.monotonic() - t0
    print(json.dumps({"points": points, "series": 3 * args.hosts + 1, "seconds": round(secs, 2)}))


# ---------------------------------------------------------------- xtdb


class Xtdb:
    """xtdb's own answers over [start, end), from the HTTP API."""

    def __init__(self, http, start, end):
        self.http = http.rstrip("/")
        self.start, self.end = start, end
        self.series = sorted(t["tag"] for t in http_json(self.http + "/api/v1/tags?match=&limit=1000000"))

    def agg(self, func, every=None, good_only=False):
        """{(series, window start µs): value} for every non-empty window."""
        out = {}
        for k in range(0, len(self.series), 200):
            names = self.series[k : k + 200]
            q = [("tag", s) for s in names] + [("start", self.start), ("end", self.end), ("func", func)]
            if every:
                q.append(("every", every))
            if good_only:
                q.append(("good_only", "true"))
            ans = http_json(self.http + "/api/v1/aggregate?" + urllib.parse.urlencode(q))
            for s in ans:
                for ts, val in s["rows"]:
                    if val is not None:
                        out[(s["tag"], ts)] = val
        return out

    def answers(self):
        a = {}
        cnt, mn, mx, sm = (self.agg(f) for f in ("count", "min", "max", "sum"))
        a["per_series"] = {s: (int(cnt[k]), mn[k], mx[k], sm[k]) for k in cnt for s in [k[0]]}
        a["rows"] = {(): (sum(v[0] for v in a["per_series"].values()),)}
        cnt, mn, mx, sm = (self.agg(f, "1d") for f in ("count", "min", "max", "sum"))
        a["per_day"] = {(k[0], day_str(k[1])): (int(cnt[k]), mn[k], mx[k], sm[k]) for k in cnt}
        cnt, mn, mx, sm, mean = (self.agg(f, "1h") for f in ("count", "min", "max", "sum", "mean"))
        a["per_hour"] = {(k[0], k[1] // US): (int(cnt[k]), mn[k], mx[k], sm[k], mean[k]) for k in cnt}
        cnt, sm = (self.agg(f, good_only=True) for f in ("count", "sum"))
        a["good_only"] = {k[0]: (int(cnt[k]), sm[k]) for k in cnt}
        # The tags map: InfluxQL, grouped by a tag, filtered on another.
        q = (
            "SELECT count(v), sum(v) FROM plant WHERE (host = 'h0' OR host = 'h1') "
            f"AND time >= {self.start}u AND time < {self.end}u GROUP BY site"
        )
        ans = http_json(self.http + "/query?" + urllib.parse.urlencode({"db": "xtdb", "q": q}))
        tags = {}
        for s in ans["results"][0].get("series", []):
            _, c, total = s["values"][0]
            tags[s["tags"]["site"]] = (int(c), float(total))
        a["tags"] = tags
        return a


def day_str(us):
    import datetime

    return datetime.datetime.fromtimestamp(us // US, datetime.timezone.utc).strftime("%Y-%m-%d")


# ---------------------------------------------------------------- engines

# Each engine: name -> (setup(dir) -> run(sql) -> rows as tuples, SQL dialect bits).
# The queries are the same SQL apart from the hour bucket and the date's type.
QUERIES = {
    "rows": "SELECT count(*) FROM x",
    "per_series": "SELECT series, count(*), min(value), max(value), sum(value) FROM x GROUP BY series",
    "per_day": "SELECT series, {date}, count(*), min(value), max(value), sum(value) FROM x GROUP BY series, date",
    "per_hour": "SELECT series, {hour} AS h, count(*), min(value), max(value), sum(value), avg(value) "
    "FROM x GROUP BY series, h",
    "tags": "SELECT tags['site'], count(*), sum(value) FROM x WHERE measurement = 'plant' AND field = 'v' "
    "AND tags['host'] IN ('h0', 'h1') GROUP BY tags['site']",
    "good_only": "SELECT series, count(*), sum(value) FROM x WHERE quality >= 192 GROUP BY series",
    # Timed only: the README's 1-day hourly aggregate (one partition).
    "day_hour_avg": "SELECT series, {hour} AS h, avg(value) FROM x WHERE date = {day} GROUP BY series, h",
}
KEYS = {"rows": 0, "per_series": 1, "per_day": 2, "per_hour": 2, "tags": 1, "good_only": 1}


def duckdb_engine(out):
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"CREATE VIEW x AS SELECT * FROM read_parquet('{out}/**/*.parquet', hive_partitioning = true)")
    dialect = {
        "date": "CAST(date AS VARCHAR)",
        "hour": "CAST(epoch(date_trunc('hour', time)) AS BIGINT)",
        "day": "DATE '{d}'",
    }
    return f"DuckDB {duckdb.__version__}", lambda sql: con.execute(sql).fetchall(), dialect, lambda: None


def datafusion_engine(out):
    import datafusion
    from datafusion import SessionContext

    ctx = SessionContext()
    ctx.register_parquet("x", out, table_partition_cols=[("date", "string")], file_extension=".parquet")

    def run(sql):
        rows = []
        for batch in ctx.sql(sql).collect():
            cols = [c.to_pylist() for c in batch.columns]
            rows.extend(zip(*cols))
        return rows

    dialect = {
        "date": "date",
        "hour": "to_unixtime(date_bin(INTERVAL '1 hour', time, TIMESTAMP '1970-01-01T00:00:00Z'))",
        "day": "'{d}'",
    }
    return f"DataFusion {datafusion.__version__}", run, dialect, lambda: None


def spark_engine(out):
    import pyspark
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[*]")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.memory", "2g")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    spark.read.parquet(out).createOrReplaceTempView("x")
    dialect = {
        "date": "CAST(date AS STRING)",
        "hour": "unix_seconds(date_trunc('HOUR', time))",
        "day": "DATE '{d}'",
    }
    return f"Spark {pyspark.__version__}", lambda sql: [tuple(r) for r in spark.sql(sql).collect()], dialect, spark.stop


def normalize(name, rows):
    """Engine rows -> {key: values} like Xtdb.answers() (ints for counts)."""
    k = KEYS[name]
    out = {}
    for r in rows:
        key = tuple(r[:k]) if k != 1 else r[0]
        vals = list(r[k:])
        vals[0] = int(vals[0])
        vals[1:] = [float(v) for v in vals[1:]]
        if name == "per_hour":
            key = (key[0], int(key[1]))
        if name == "tags":
            key = key if key is not None else ""
        out[key] = tuple(vals)
    return out


def compare(want, got):
    """Differences between two {key: tuple} dicts, at most 5 described."""
    diffs = []
    for k in sorted(set(want) | set(got), key=repr):
        if want.get(k) != got.get(k):
            diffs.append(f"{k!r}: xtdb {want.get(k)!r}, engine {got.get(k)!r}")
    return diffs


def check(args):
    start, end = parse_day(args.start), parse_day(args.end)
    t0 = time.monotonic()
    ref = Xtdb(args.http, start, end).answers()
    ref_secs = time.monotonic() - t0
    ref_rows = ref["rows"][()][0]
    print(f"xtdb's answers (HTTP aggregates + InfluxQL): {ref_rows} rows, {len(ref['per_series'])} series, "
          f"{len(ref['per_hour'])} series-hours, {ref_secs:.2f} s", file=sys.stderr)
    # Guards against a check that cannot fail: the data set must have rows,
    # several days, points of bad quality and both sites in the map query.
    good = sum(v[0] for v in ref["good_only"].values())
    days = {k[1] for k in ref["per_day"]}
    if ref_rows == 0 or len(days) < 2 or good >= ref_rows or len(ref["tags"]) < 2:
        print(f"degenerate data set: {ref_rows} rows, {len(days)} days, {good} good, "
              f"{len(ref['tags'])} sites", file=sys.stderr)
        return 1
    mid_day = day_str(start + ((end - start) // DAY_US // 2) * DAY_US)

    makers = {"duckdb": duckdb_engine, "datafusion": datafusion_engine, "spark": spark_engine}
    failed = 0
    table = []
    for eng in args.engines.split(","):
        t = time.monotonic()
        label, run, dialect, stop = makers[eng](args.out)
        setup = time.monotonic() - t
        times = {}
        try:
            for name, sql in QUERIES.items():
                sql = sql.format(date=dialect["date"], hour=dialect["hour"], day=dialect["day"].format(d=mid_day))
                runs = []
                for _ in range(args.runs):
                    t = time.monotonic()
                    rows = run(sql)
                    runs.append(time.monotonic() - t)
                times[name] = runs
                if name not in ref:
                    print(f"{label} {name}: {len(rows)} rows (timed only)", file=sys.stderr)
                    continue
                got = normalize(name, rows)
                diffs = compare(ref[name], got)
                status = "equal" if not diffs else f"{len(diffs)} DIFFERENCES"
                print(f"{label} {name}: {len(got)} groups, {status}", file=sys.stderr)
                for d in diffs[:5]:
                    print("   ", d, file=sys.stderr)
                failed += bool(diffs)
        finally:
            stop()
        table.append((label, setup, times))

    print(f"\n{ref_rows} rows; seconds per query ({args.runs} runs each: first / best)\n")
    names = list(QUERIES)
    print("| engine | setup | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * (len(names) + 1))
    for label, setup, times in table:
        cells = [f"{times[n][0]:.3f} / {min(times[n]):.3f}" for n in names]
        print(f"| {label} | {setup:.2f} | " + " | ".join(cells) + " |")
    print()
    print("RESULT: every engine's answers equal xtdb's" if not failed else f"RESULT: {failed} answers differ")
    return 1 if failed else 0


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("--http", required=True)
    g.add_argument("--start", required=True)
    g.add_argument("--end", required=True)
    g.add_argument("--hosts", type=int, default=8)
    g.add_argument("--step", type=int, default=10, help="seconds between a series' points")
    c = sub.add_parser("check")
    c.add_argument("--http", required=True)
    c.add_argument("--out", required=True, help="the export's directory")
    c.add_argument("--start", required=True)
    c.add_argument("--end", required=True)
    c.add_argument("--engines", default="duckdb,datafusion")
    c.add_argument("--runs", type=int, default=3)
    a = p.parse_args()
    sys.exit(gen(a) if a.cmd == "gen" else check(a))


if __name__ == "__main__":
    main()
