//! `xtdb export` against a real two-shard server: a known data set over
//! three UTC days and five series (tags as a Parquet MAP, one without), written over HTTP, exported to Parquet
//! and read back with the `parquet` crate's reader. Per series and day the
//! row count, sum, min and max equal what was written (and what the
//! server's own `range` answers) bit for bit; partitions are named by
//! date; rows are sorted by series then time; several row groups carry
//! statistics; `--match` narrows; an existing partition is refused. A
//! periodic export's rounds over a growing data set, one of them cut short,
//! hold exactly the rows of one export of the whole span.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::time::Duration;

use parquet::basic::{ConvertedType, LogicalType, TimeUnit};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::{Field, RowAccessor};

use xtdb::load::export::{self, date_of_day, read_state, round, run, ExportConfig, DAY_US};
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
    let series: [(&str, i64); 5] = [
        ("plant,area=north,tag=t1 v", 60),
        ("plant,area=north,tag=t1 w", 60),
        ("plant,area=south,tag=t2 v", 97),
        // A tag value with an escaped comma and space.
        ("boiler,unit=1\\,a\\ b temp", 13),
        // No tags: an empty map.
        ("flow rate", 41),
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

/// A row's `tags` map as the key's escaped tag section (`k=v,k=v`), after
/// checking each entry is a pair of strings.
fn tags_of(row: &parquet::record::Row) -> String {
    let esc = |f: &Field| match f {
        Field::Str(s) => s
            .replace('\\', "\\\\")
            .replace(',', "\\,")
            .replace('=', "\\=")
            .replace(' ', "\\ "),
        other => panic!("tag entry {other:?} is not a string"),
    };
    row.get_map(3)
        .unwrap()
        .entries()
        .iter()
        .map(|(k, v)| format!("{}={}", esc(k), esc(v)))
        .collect::<Vec<_>>()
        .join(",")
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
        let names: Vec<_> = schema.columns().iter().map(|c| c.path().string()).collect();
        assert_eq!(
            names,
            [
                "series",
                "measurement",
                "field",
                "tags.key_value.key",
                "tags.key_value.value",
                "time",
                "value",
                "quality"
            ]
        );
        let top = schema.root_schema().get_fields();
        assert_eq!(top[3].get_basic_info().converted_type(), ConvertedType::MAP);
        assert_eq!(
            schema.column(5).logical_type_ref(),
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
                tags_of(&row),
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
    assert_eq!(want.len(), 5 * 3, "five series on three days");

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
    assert_eq!(tags.len(), 5);
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
    assert_eq!(s.series, 5);
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

/// One exported row: series, measurement, field, tags, time, value bits,
/// quality.
type Row = (String, String, String, String, i64, u64, u8);

/// Every row of every `date=*/part-*.parquet` under `dir`, sorted, and the
/// files (`date=.../part-N.parquet`).
fn all_rows(dir: &Path) -> (Vec<Row>, Vec<String>) {
    let mut rows = Vec::new();
    let mut files = Vec::new();
    for d in std::fs::read_dir(dir).unwrap() {
        let d = d.unwrap().path();
        let dname = d.file_name().unwrap().to_string_lossy().into_owned();
        if !dname.starts_with("date=") {
            continue;
        }
        for f in std::fs::read_dir(&d).unwrap() {
            let f = f.unwrap().path();
            files.push(format!(
                "{dname}/{}",
                f.file_name().unwrap().to_string_lossy()
            ));
            let r = SerializedFileReader::new(File::open(&f).unwrap()).unwrap();
            for row in r.get_row_iter(None).unwrap() {
                let row = row.unwrap();
                rows.push((
                    row.get_string(0).unwrap().clone(),
                    row.get_string(1).unwrap().clone(),
                    row.get_string(2).unwrap().clone(),
                    tags_of(&row),
                    row.get_timestamp_micros(4).unwrap(),
                    row.get_double(5).unwrap().to_bits(),
                    row.get_ubyte(6).unwrap(),
                ));
            }
        }
    }
    rows.sort();
    files.sort();
    (rows, files)
}

#[test]
fn periodic_rounds_over_a_growing_data_set_equal_one_export() {
    let dir = tempfile::tempdir().unwrap();
    let h = net_common::server_with(dir.path(), &[0, 1], |c| {
        c.http = Some("127.0.0.1:0".into());
        c.http_config.line.quality_field = Some("q".into());
    })
    .unwrap();
    let http = h.http_addr().unwrap();
    let addr = h.local_addr().to_string();
    let write = |d: &[Sample]| {
        for batch in lines(d).chunks(5000) {
            let r = req(
                http,
                "POST",
                "/write?db=x&precision=u",
                &[],
                batch.join("\n").as_bytes(),
            );
            assert_eq!(r.status, 204, "{}", r.text());
        }
    };
    let d = data();
    // The data set grows: first what lies before 2024-01-02 18:00, the rest
    // after the first round.
    let grown = (DAY0 + 1) * DAY_US + 18 * 3_600_000_000;
    let (old, new): (Vec<Sample>, Vec<Sample>) = d.into_iter().partition(|s| s.ts < grown);
    assert!(!old.is_empty() && !new.is_empty());
    write(&old);

    let start = DAY0 * DAY_US + 13 * 3_600_000_000;
    let cut1 = (DAY0 + 1) * DAY_US + 10 * 3_600_000_000 + 17;
    let cut2 = (DAY0 + 2) * DAY_US + 3 * 3_600_000_000;
    let to = dir.path().join("cold");
    let cfg = ExportConfig {
        addr: addr.clone(),
        http: format!("http://{http}"),
        opts: ClientOptions::default(),
        to: to.clone(),
        start,
        end: i64::MAX,
        pattern: String::new(),
        chunk_us: 20 * 60_000_000,
        row_group_rows: 1000,
        progress: false,
    };
    let r1 = round(&cfg, cut1).unwrap();
    assert_eq!(
        (r1.round, r1.from, r1.upto, r1.removed),
        (Some(0), start, cut1, 0)
    );
    let n1 = old.iter().filter(|s| s.ts >= start && s.ts < cut1).count() as u64;
    assert_eq!(r1.summary.rows, n1);
    write(&new);

    // What a second round killed midway leaves (had it been cut later and
    // crossed a day): a finished partition file of a day the next round
    // does not write (a copy of round 0's rows: kept, they would be
    // duplicates), a half-written one and a half-written state.
    std::fs::copy(
        to.join("date=2024-01-01/part-0.parquet"),
        to.join("date=2024-01-01/part-1.parquet"),
    )
    .unwrap();
    std::fs::create_dir_all(to.join("date=2024-01-03")).unwrap();
    std::fs::write(to.join("date=2024-01-03/.part-1.parquet.tmp"), b"PAR1 half").unwrap();
    // The visible name earlier versions wrote a partial file under.
    std::fs::write(to.join("date=2024-01-03/part-2.parquet.tmp"), b"PAR1 half").unwrap();
    std::fs::write(
        to.join(format!("{}.tmp", export::STATE_FILE)),
        b"xtdb export st",
    )
    .unwrap();

    // Not the export's: left alone.
    std::fs::write(to.join("notes.tmp"), b"mine").unwrap();

    let r2 = round(&cfg, cut2).unwrap();
    assert_eq!(std::fs::read(to.join("notes.tmp")).unwrap(), b"mine");
    assert_eq!(
        (r2.round, r2.from, r2.upto, r2.removed),
        (Some(1), cut1, cut2, 4)
    );
    // What is left is complete files and the export's own `_` files:
    // nothing that Spark (which reads every file not starting with `.` or
    // `_`) would take for a broken Parquet file.
    for day in std::fs::read_dir(&to).unwrap() {
        let day = day.unwrap().path();
        if day.is_dir() {
            for f in std::fs::read_dir(&day).unwrap() {
                let n = f.unwrap().file_name().to_string_lossy().into_owned();
                assert!(n.ends_with(".parquet"), "{}: {n}", day.display());
            }
        }
    }
    // Nothing new: no round, no file.
    let r3 = round(&cfg, cut2).unwrap();
    assert_eq!((r3.round, r3.summary.rows), (None, 0));
    let st = read_state(&to).unwrap().unwrap();
    assert_eq!((st.start, st.end, st.rounds), (start, cut2, 2));

    let once = ExportConfig {
        to: dir.path().join("once"),
        end: cut2,
        ..cfg.clone()
    };
    let s = run(&once).unwrap();
    let (want, _) = all_rows(&once.to);
    let (got, files) = all_rows(&to);
    assert_eq!(s.rows, want.len() as u64);
    assert_eq!(r1.summary.rows + r2.summary.rows, s.rows);
    assert_eq!(got.len(), want.len(), "rows: duplicates or gaps");
    assert!(got == want, "the rounds' rows differ from one export's");
    assert_eq!(
        files,
        [
            "date=2024-01-01/part-0.parquet",
            "date=2024-01-02/part-0.parquet",
            "date=2024-01-02/part-1.parquet",
            "date=2024-01-03/part-1.parquet",
        ]
    );

    // Refused by name: another --match or --start on this directory, a
    // one-shot export into it, a periodic one into a one-shot's directory,
    // a second job on it.
    let e = round(
        &ExportConfig {
            pattern: "boiler".into(),
            ..cfg.clone()
        },
        cut2 + 1,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("--match"), "{e}");
    let e = round(
        &ExportConfig {
            start: start + 1,
            ..cfg.clone()
        },
        cut2 + 1,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("--start"), "{e}");
    let e = run(&ExportConfig {
        end: cut2,
        ..cfg.clone()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("periodic export's directory"), "{e}");
    let e = round(&once, cut2).unwrap_err().to_string();
    assert!(e.contains("not a periodic export's directory"), "{e}");
    let _job = export::lock_dir(&to).unwrap();
    let e = export::lock_dir(&to).unwrap_err().to_string();
    assert!(e.contains("another periodic export"), "{e}");
    assert_eq!(
        read_state(&to).unwrap().unwrap(),
        st,
        "refusals change nothing"
    );
    h.stop().unwrap();
}

/// `xtdb export --every` (the binary) killed with SIGKILL at whatever point
/// it is in, data written meanwhile, restarted without `--start`: the
/// directory then holds exactly the rows of one export up to where its
/// state says it got to.
#[test]
fn the_periodic_job_killed_and_restarted_resumes_without_duplicates_or_gaps() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let h = net_common::server_with(dir.path(), &[0, 1], |c| {
        c.http = Some("127.0.0.1:0".into());
        c.http_config.line.quality_field = Some("q".into());
    })
    .unwrap();
    let http = h.http_addr().unwrap();
    let addr = h.local_addr().to_string();
    let now = xtdb::runtime::admission::now_us;
    // 2,000 points `step` µs apart from `from` on, over tags a and b.
    let write = |from: i64, step: i64| {
        let body: Vec<String> = (0..2_000i64)
            .map(|i| {
                let tag = if i % 2 == 0 { "a" } else { "b" };
                format!("live,site={tag} v={i}.25,q=192i {}", from + i * step)
            })
            .collect();
        let r = req(
            http,
            "POST",
            "/write?db=x&precision=u",
            &[],
            body.join("\n").as_bytes(),
        );
        assert_eq!(r.status, 204, "{}", r.text());
    };
    let start = now() - 3_600_000_000;
    write(now() - 60_000_000, 10_000);
    let to = dir.path().join("cold");
    let job = |first: bool| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_xtdb"));
        c.args([
            "export",
            "--addr",
            &addr,
            "--http",
            &format!("http://{http}"),
        ])
        .args(["--to", to.to_str().unwrap(), "--every", "1s", "--lag", "0s"])
        .args(["--chunk", "10m", "--json"]);
        if first {
            c.args(["--start", &start.to_string()]);
        }
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run xtdb export")
    };
    // Waits for a round that exported rows and ended after `after`.
    let wait_round = |child: &mut std::process::Child, after: i64| {
        let mut out = std::io::BufReader::new(child.stdout.as_mut().unwrap());
        loop {
            let mut line = String::new();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "the job ended: {:?}",
                child.stderr.take().map(|mut e| {
                    let mut s = String::new();
                    std::io::Read::read_to_string(&mut e, &mut s).unwrap();
                    s
                })
            );
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            if v["rows"].as_u64().unwrap() > 0 && v["upto_us"].as_i64().unwrap() > after {
                return v;
            }
        }
    };
    let mut j = job(true);
    let first = wait_round(&mut j, 0);
    assert_eq!(first["round"], 0, "{first}");
    assert_eq!(first["rows"], 2_000, "{first}");
    // A kill -9 wherever the job is (asleep, or inside its next round).
    std::thread::sleep(Duration::from_millis(700));
    j.kill().unwrap();
    j.wait().unwrap();
    // Written while no job runs, after every cut it made.
    let at = now();
    write(at, 1);
    let mut j = job(false);
    wait_round(&mut j, at + 2_000);
    std::thread::sleep(Duration::from_millis(300));
    j.kill().unwrap();
    j.wait().unwrap();

    let st = read_state(&to).unwrap().unwrap();
    assert!(st.end > at + 2_000 && st.start == start, "{st:?}");
    let once = ExportConfig {
        addr: addr.clone(),
        http: format!("http://{http}"),
        opts: ClientOptions::default(),
        to: dir.path().join("once"),
        start,
        end: st.end,
        pattern: String::new(),
        chunk_us: 600_000_000,
        row_group_rows: 1 << 20,
        progress: false,
    };
    run(&once).unwrap();
    // A round cut short by the kill may have left files the state does
    // not count; the next round removes them. Run one to be in that state.
    let r = round(
        &ExportConfig {
            to: to.clone(),
            ..once.clone()
        },
        st.end,
    )
    .unwrap();
    assert_eq!(r.round, None);
    let (want, _) = all_rows(&once.to);
    let (got, _) = all_rows(&to);
    assert_eq!(want.len(), 4_000);
    assert_eq!(got.len(), want.len(), "rows: duplicates or gaps");
    assert!(got == want);
    h.stop().unwrap();
}
