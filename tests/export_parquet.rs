//! `xtdb export` against a real two-shard server: a known data set over
//! three UTC days and four series, written over HTTP, exported to Parquet
//! and read back with the `parquet` crate's reader. Per series and day the
//! row count, sum, min and max equal what was written (and what the
//! server's own `range` answers) bit for bit; partitions are named by
//! date; rows are sorted by series then time; several row groups carry
//! statistics; `--match` narrows; an existing partition is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use parquet::basic::{LogicalType, TimeUnit};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::RowAccessor;

use xtdb::load::export::{date_of_day, run, ExportConfig, DAY_US};
use xtdb::net::{Client, ClientOptions};

mod net_common;
use net_common::http::req;

/// Per (series, date): rows, bits of the sum (in time order), min, max.
type Stats = BTreeMap<(String, String), (u64, u64, u64, u64)>;

const DAY0: i64 = 19_723; // 2024-01-01

struct Sample {
    key: String,
    ts: i64,
    value: f64,
    quality: u8,
}

/// The data set: two fields of one line (`v`, `w`), another tag set and
/// another measurement, each at its own step, 2024-01-01 12:00 to
/// 2024-01-03 06:00 UTC. Values are decimals, negatives, a `-0.0`.
fn data() -> Vec<Sample> {
    let t0 = DAY0 * DAY_US + 12 * 3_600_000_000;
    let t1 = (DAY0 + 2) * DAY_US + 6 * 3_600_000_000;
    let mut out = Vec::new();
    let series: [(&str, i64); 4] = [
        ("plant,area=north,tag=t1 v", 60),
        ("plant,area=north,tag=t1 w", 60),
        ("plant,area=south,tag=t2 v", 97),
        ("boiler,unit=1 temp", 13),
    ];
    for (si, (key, step_s)) in series.iter().enumerate() {
        // The first two on whole minutes: points exactly at the start, at
        // midnight, on chunk boundaries and at the (excluded) end.
        let jitter = si >= 2;
        let mut ts = t0 + if jitter { si as i64 * 1_000_003 } else { 0 };
        let mut i = 0u64;
        while ts < t1 {
            let x = ((i * 7919 + si as u64 * 13) % 10_007) as f64;
            let value = match i % 500 {
                7 => -0.0,
                _ => x / 8.0 - 300.1 * si as f64,
            };
            let quality = match i % 97 {
                0 => 0,
                1 => 64,
                _ => 192,
            };
            out.push(Sample {
                key: key.to_string(),
                ts,
                value,
                quality,
            });
            ts += step_s * 1_000_000 + if jitter { i as i64 % 3 } else { 0 };
            i += 1;
        }
    }
    out
}

/// Line protocol for `plant,... v`/`w` (one line, both fields, when the
/// times agree) and the others; the quality is field `q`.
fn lines(d: &[Sample]) -> Vec<String> {
    d.iter()
        .map(|s| {
            let (prefix, field) = s.key.rsplit_once(' ').unwrap();
            format!("{prefix} {field}={:?},q={}i {}", s.value, s.quality, s.ts)
        })
        .collect()
}

fn stats_of(d: impl Iterator<Item = (String, i64, f64)>) -> Stats {
    let mut m: BTreeMap<(String, String), (u64, f64, f64, f64)> = BTreeMap::new();
    for (k, ts, v) in d {
        let e = m.entry((k, date_of_day(ts.div_euclid(DAY_US)))).or_insert((
            0,
            0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ));
        e.0 += 1;
        e.1 += v;
        e.2 = e.2.min(v);
        e.3 = e.3.max(v);
    }
    m.into_iter()
        .map(|(k, (n, s, lo, hi))| (k, (n, s.to_bits(), lo.to_bits(), hi.to_bits())))
        .collect()
}

/// Reads every partition under `dir` back: the stats, and checks names,
/// sorting, schema and statistics on the way.
fn read_back(dir: &Path) -> (Stats, usize) {
    let mut parts: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    parts.sort();
    let mut rows = Vec::new();
    let mut row_groups = 0;
    for p in &parts {
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        let date = name.strip_prefix("date=").expect("partition dir date=...");
        let files: Vec<_> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(files, vec!["part-0.parquet"], "{name}");
        let r = SerializedFileReader::new(File::open(p.join("part-0.parquet")).unwrap()).unwrap();
        let md = r.metadata();
        let schema = md.file_metadata().schema_descr();
        let names: Vec<_> = schema
            .columns()
            .iter()
            .map(|c| c.name().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "series",
                "measurement",
                "field",
                "tags",
                "time",
                "value",
                "quality"
            ]
        );
        assert_eq!(
            schema.column(4).logical_type_ref(),
            Some(&LogicalType::Timestamp {
                is_adjusted_to_u_t_c: true,
                unit: TimeUnit::MICROS,
            })
        );
        row_groups += md.num_row_groups();
        for g in md.row_groups() {
            for c in g.columns() {
                assert!(c.statistics().is_some(), "{name}: no statistics");
            }
        }
        let mut prev: Option<(String, i64)> = None;
        for row in r.get_row_iter(None).unwrap() {
            let row = row.unwrap();
            let key = row.get_string(0).unwrap().clone();
            let ts = row.get_timestamp_micros(4).unwrap();
            assert_eq!(
                date_of_day(ts.div_euclid(DAY_US)),
                date,
                "row in the wrong day"
            );
            let (m, t, f) = (
                row.get_string(1).unwrap(),
                row.get_string(3).unwrap(),
                row.get_string(2).unwrap(),
            );
            let rebuilt = if t.is_empty() {
                format!("{m} {f}")
            } else {
                format!("{m},{t} {f}")
            };
            assert_eq!(rebuilt, key, "columns of {key}");
            let cur = (key.clone(), ts);
            if let Some(p) = &prev {
                assert!(*p < cur, "not sorted: {p:?} then {cur:?}");
            }
            prev = Some(cur);
            let q = row.get_ubyte(6).unwrap();
            assert!(matches!(q, 0 | 64 | 192), "quality {q}");
            rows.push((key, ts, row.get_double(5).unwrap(), q));
        }
    }
    (
        stats_of(rows.into_iter().map(|(k, t, v, _)| (k, t, v))),
        row_groups,
    )
}

#[test]
fn export_reads_back_bit_exact_by_series_and_day() {
    let dir = tempfile::tempdir().unwrap();
    let h = net_common::server_with(dir.path(), &[0, 1], |c| {
        c.http = Some("127.0.0.1:0".into());
        c.http_config.line.quality_field = Some("q".into());
    })
    .unwrap();
    let http = h.http_addr().unwrap();
    let addr = h.local_addr().to_string();

    let d = data();
    for batch in lines(&d).chunks(5000) {
        let body = batch.join("\n");
        let r = req(
            http,
            "POST",
            "/write?db=x&precision=u",
            &[],
            body.as_bytes(),
        );
        assert_eq!(r.status, 204, "{}", r.text());
    }

    // Cut into the first day and the last: 13:00 on day 0 to 03:00 on day 2.
    let start = DAY0 * DAY_US + 13 * 3_600_000_000;
    let end = (DAY0 + 2) * DAY_US + 3 * 3_600_000_000;
    let inside = || d.iter().filter(|s| s.ts >= start && s.ts < end);
    let want = stats_of(inside().map(|s| (s.key.clone(), s.ts, s.value)));
    assert_eq!(want.len(), 4 * 3, "four series on three days");

    // The server's own answers agree with what was written.
    let tags: Vec<(u32, String)> = req(http, "GET", "/api/v1/tags", &[], b"")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_u64().unwrap() as u32,
                r["tag"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(tags.len(), 4);
    let a2 = addr.clone();
    let own: Vec<(String, i64, f64)> = net_common::client(move || async move {
        let mut c = Client::connect(&a2).await.unwrap();
        let mut out = Vec::new();
        for (id, k) in tags {
            for p in c.range(id, start, end).await.unwrap() {
                out.push((k.clone(), p.ts, p.value));
            }
        }
        out
    });
    assert_eq!(stats_of(own.into_iter()), want, "server's range answers");

    let cfg = ExportConfig {
        addr: addr.clone(),
        http: format!("http://{http}"),
        opts: ClientOptions::default(),
        to: dir.path().join("export"),
        start,
        end,
        pattern: String::new(),
        chunk_us: 20 * 60_000_000,
        row_group_rows: 1000,
        progress: false,
    };
    let s = run(&cfg).unwrap();
    assert_eq!(s.series, 4);
    assert_eq!(s.rows, inside().count() as u64);
    let dates: Vec<_> = s.files.iter().map(|f| f.date.as_str()).collect();
    assert_eq!(dates, ["2024-01-01", "2024-01-02", "2024-01-03"]);

    let (got, row_groups) = read_back(&cfg.to);
    assert_eq!(got, want, "per series and day: rows, sum, min, max");
    assert!(row_groups > 3, "row groups of 1000 rows: {row_groups}");
    assert!(inside().any(|s| s.ts == start) && d.iter().any(|s| s.ts == end));
    assert!(
        inside().any(|s| s.quality == 0)
            && inside().any(|s| s.value.to_bits() == (-0.0f64).to_bits())
    );

    // An existing partition is never overwritten.
    let e = run(&cfg).unwrap_err().to_string();
    assert!(e.contains("part-0.parquet exists"), "{e}");

    // --match narrows to the series whose key contains it.
    let cfg2 = ExportConfig {
        to: dir.path().join("boiler"),
        pattern: "boiler".into(),
        ..cfg.clone()
    };
    let s2 = run(&cfg2).unwrap();
    assert_eq!(s2.series, 1);
    let (got2, _) = read_back(&cfg2.to);
    let want2: Stats = want
        .into_iter()
        .filter(|((k, _), _)| k.starts_with("boiler"))
        .collect();
    assert_eq!(got2, want2);

    // Bad input is refused by name.
    let bad = ExportConfig {
        end: start,
        to: dir.path().join("never"),
        ..cfg.clone()
    };
    assert!(run(&bad).unwrap_err().to_string().contains("--end"));
    assert!(!dir.path().join("never").exists());
    h.stop().unwrap();
}
