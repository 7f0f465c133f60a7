//! `scenario steady`: the storage lifecycle under the original design's
//! headline load. Starts its own server on a fresh data dir, writes `tags`
//! tags of plant-like signals ([`crate::load::gen::plant_point`]) at
//! simulated 1 Hz for `minutes` simulated minutes as fast as the server
//! acknowledges them, waits for the shard to settle (buffers flushed, flush
//! chunks compacted), and reports:
//! - disk bytes per point: chunk files (what the data costs) and chunk files
//!   plus the WAL's preallocated segments (what the disk holds);
//! - the same points compressed by the codec alone, for comparison;
//! - chunk write amplification (bytes written to chunk files by flushes and
//!   compaction, per byte they hold after settling) and total write
//!   amplification (WAL and chunk bytes written per byte the chunks hold);
//! - write-ack p99 in the seconds when the server flushed or compacted and
//!   in the seconds when it did neither;
//! - the longest index swap and directory encode of compaction (CPU
//!   stretches without yielding);
//! - one tag's whole range: blocks read and latency.
//!
//! Its server is plain with auth off (loopback), so `--token` and
//! `--tls-ca` are not used.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::load::conn::Conn;
use crate::load::gen;
use crate::load::report::{fmt_count, fmt_us};
use crate::load::scenario::{fetch_stats, Outcome, ScenarioConfig};
use crate::load::server::{self, ServerProcess, ServerSpec};
use crate::load::write::{self, Live};
use crate::net::ClientOptions;
use crate::storage::codec::Encoder;

/// One stats sample of the server during the run.
#[derive(Clone, Copy, Default)]
struct Sample {
    t: f64,
    flush_micros: u64,
    compaction_micros: u64,
}

fn stat(stats: &[(String, u64)], name: &str) -> u64 {
    stats.iter().find(|(k, _)| k == name).map_or(0, |(_, v)| *v)
}

/// Bytes the files under `dir` take on disk (allocated blocks).
fn disk_bytes(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if let Ok(m) = e.metadata() {
                total += if m.is_dir() {
                    disk_bytes(&e.path())
                } else {
                    m.blocks() * 512
                };
            }
        }
    }
    total
}

/// What the shard was doing in a second of the run.
#[derive(Clone, Copy)]
enum Activity {
    Quiet = 0,
    Flushing = 1,
    Compacting = 2,
}

/// Bytes the codec alone needs for every tag's points (one stream per tag,
/// cut at a block's payload like the engine cuts them).
fn codec_bytes(g: &gen::Group, ticks: u64) -> u64 {
    use crate::storage::block::PAYLOAD_CAPACITY;
    use crate::storage::codec::MAX_POINT_BYTES;
    let mut total = 0u64;
    for t in 0..g.n_tags {
        let mut e = Encoder::default();
        for k in 0..ticks {
            let Some(p) = g.point_at(k * u64::from(g.n_tags) + u64::from(t)) else {
                break;
            };
            if e.payload_len() + MAX_POINT_BYTES > PAYLOAD_CAPACITY {
                total += std::mem::take(&mut e).payload_len() as u64;
            }
            e.push(p.ts, p.value.to_bits(), p.quality);
        }
        total += e.payload_len() as u64;
    }
    total
}

/// Runs the scenario (see the module doc).
pub fn run<C: Conn>(cfg: &ScenarioConfig) -> Result<Outcome> {
    let bin = match &cfg.server_bin {
        Some(b) => b.clone(),
        None => server::ensure_server_binary()?,
    };
    let tmp = server::temp_dir("xtdb-steady")?;
    let data_dir = cfg.data_dir.clone().unwrap_or_else(|| tmp.join("data"));
    let spec = ServerSpec {
        bin,
        data_dir: data_dir.clone(),
        listen: cfg.addr.clone(),
        sync: "always".into(),
        pin_cpu: cfg.server_cpu,
        log: tmp.join("server.log"),
        args: Vec::new(),
    };
    let srv = ServerProcess::start(&spec, Duration::from_secs(60))?;
    let res = run_inner::<C>(cfg, &data_dir);
    let (clean, stop_t) = srv.stop(Duration::from_secs(30));
    let mut out = res?;
    out.json["shutdown_s"] = json!(stop_t.as_secs_f64());
    out.json["clean_shutdown"] = json!(clean);
    out.text += &format!(
        "  SIGTERM to exit      {:.2} s{}\n",
        stop_t.as_secs_f64(),
        if clean { "" } else { " (killed)" }
    );
    if cfg.data_dir.is_none() {
        server::remove_dir(&tmp);
    }
    Ok(out)
}

fn run_inner<C: Conn>(cfg: &ScenarioConfig, data_dir: &std::path::Path) -> Result<Outcome> {
    let tags = cfg.tags.unwrap_or(100_000);
    let minutes = cfg.minutes.max(1);
    let ticks = u64::from(minutes) * 60;
    let now_s = crate::runtime::admission::now_us() / 1_000_000;
    let t0 = (now_s - i64::from(minutes) * 60) * 1_000_000;
    let mut w = crate::load::write::WriteConfig::new(&cfg.addr);
    w.cpus = cfg.cpus.clone();
    w.seed = cfg.seed;
    w.signal = cfg.signal;
    w.progress = cfg.progress;
    w.json = cfg.json;
    w.tags = tags;
    w.rate = cfg.rate;
    w.batch = 5_000;
    w.conns = 4.min(tags);
    w.t0 = Some(t0);
    w.period_us = Some(1_000_000);
    w.max_ticks = Some(ticks);
    w.duration = Duration::from_secs(24 * 3600);
    // Server counters every 250 ms, to tell the seconds with flushing or
    // compaction from those without.
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let monitor = {
        let (samples, done, addr, cpu) =
            (samples.clone(), done.clone(), cfg.addr.clone(), cfg.cpus[0]);
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Ok(s) = fetch_stats::<C>(&addr, &ClientOptions::default(), cpu) {
                    if let Ok(mut v) = samples.lock() {
                        v.push(Sample {
                            t: start.elapsed().as_secs_f64(),
                            flush_micros: stat(&s, "total.flush_micros"),
                            compaction_micros: stat(&s, "total.compaction_micros"),
                        });
                    }
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };
    let started = Instant::now();
    let r = write::run_with::<C>(&w, Live::new(1));
    let write_s = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let _ = monitor.join();
    let r = r?;
    // Settle: no write now, so the shard flushes and compacts by itself.
    let settle_started = Instant::now();
    let limit = cfg.duration.unwrap_or(Duration::from_secs(240));
    let mut stats = fetch_stats::<C>(&cfg.addr, &ClientOptions::default(), cfg.cpus[0])?;
    loop {
        let settled = stat(&stats, "total.points_buffered") == 0
            && stat(&stats, "total.compaction_backlog_bytes") == 0
            && stat(&stats, "total.disk_flush_bytes") == 0
            && stat(&stats, "total.compactions") > 0;
        if settled || settle_started.elapsed() > limit {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        stats = fetch_stats::<C>(&cfg.addr, &ClientOptions::default(), cfg.cpus[0])?;
    }
    let settle_s = settle_started.elapsed().as_secs_f64();
    let points = stat(&stats, "total.points_on_disk").max(1);
    let chunk_bytes = disk_bytes(&data_dir.join("shard-0").join("chunks"));
    let wal_files = disk_bytes(&data_dir.join("shard-0").join("wal"));
    let held = stat(&stats, "total.disk_flush_bytes")
        + stat(&stats, "total.disk_compacted_bytes")
        + stat(&stats, "total.disk_v1_bytes");
    let written_chunks =
        stat(&stats, "total.flush_bytes_written") + stat(&stats, "total.compaction_bytes_written");
    let wal_written = stat(&stats, "total.wal_bytes");
    // The same points, compressed by the codec alone.
    let g = gen::Group {
        seed: cfg.seed,
        tag_lo: 0,
        n_tags: tags,
        t0,
        period_us: 1_000_000,
        signal: cfg.signal,
    };
    let codec = codec_bytes(&g, ticks);
    // One tag's whole range.
    let (range_us, range_points, blocks_read) = {
        let before = stat(&stats, "total.blocks_read");
        let addr = cfg.addr.clone();
        let cpu = cfg.cpus[0];
        let (us, n) = glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(cpu))
            .io_memory(1 << 20)
            .spawn(move || async move {
                let mut c = C::connect(&addr, &ClientOptions::default()).await?;
                let t = Instant::now();
                let p = c.range(7, i64::MIN, i64::MAX).await?;
                Ok::<_, Error>((t.elapsed().as_micros() as u64, p.len()))
            })
            .map_err(Error::from)?
            .join()
            .map_err(Error::from)??;
        let after = fetch_stats::<C>(&cfg.addr, &ClientOptions::default(), cfg.cpus[0])?;
        (
            us,
            n,
            stat(&after, "total.blocks_read").saturating_sub(before),
        )
    };
    // p99 in seconds with compaction, with flushing only, and with neither.
    let samples = samples.lock().map(|v| v.clone()).unwrap_or_default();
    let activity_at = |t: f64| -> Activity {
        let mut prev: Option<&Sample> = None;
        let mut seen = Activity::Quiet;
        for s in &samples {
            if s.t >= t + 1.0 {
                break;
            }
            if s.t >= t - 0.25 {
                if let Some(p) = prev {
                    if s.compaction_micros > p.compaction_micros {
                        return Activity::Compacting;
                    }
                    if s.flush_micros > p.flush_micros {
                        seen = Activity::Flushing;
                    }
                }
            }
            prev = Some(s);
        }
        seen
    };
    let mut by: [Vec<u64>; 3] = Default::default();
    for s in &r.timeline {
        if s.points == 0 {
            continue;
        }
        by[activity_at(s.t - 1.0) as usize].push(s.p99);
    }
    let median = |v: &mut Vec<u64>| -> Option<u64> {
        v.sort_unstable();
        v.get(v.len() / 2).copied()
    };
    let p99s: Vec<Option<u64>> = by.iter_mut().map(median).collect();
    let secs: Vec<usize> = by.iter().map(Vec::len).collect();
    let bpp = chunk_bytes as f64 / points as f64;
    let rollup_bytes = stat(&stats, "total.disk_rollup_bytes");
    let bpp_data = chunk_bytes.saturating_sub(rollup_bytes) as f64 / points as f64;
    let codec_bpp = codec as f64 / (u64::from(tags) * ticks) as f64;
    let amp = written_chunks as f64 / held.max(1) as f64;
    let total_amp = (written_chunks + wal_written) as f64 / held.max(1) as f64;
    let text = format!(
        "scenario steady: {} tags of {} signals, {} simulated minutes at 1 Hz, {}\n{}  settled after        {:.1} s (buffers flushed, flush chunks compacted)\n  points on disk       {}\n  chunk files          {} bytes = {:.3} bytes/point (codec alone: {:.3}, ratio {:.3})\n  of which rollups     {} bytes = {:.3} bytes/point; without them {:.3} bytes/point, ratio {:.3}\n  with the WAL files   {} bytes = {:.3} bytes/point\n  write amplification  chunks {:.2}, WAL + chunks {:.2} (bytes written per byte held)\n  ack p99 per second   median {} in seconds without flushing or compaction ({} s), {} flushing only ({} s), {} compacting ({} s)\n  compaction stalls    index swap {} at most without yielding ({} in all), directory encode {} at most\n  whole range of tag 7 {} points, {} blocks read, {}\n",
        fmt_count(u64::from(tags)),
        cfg.signal.name(),
        minutes,
        if cfg.rate == 0 {
            "as fast as acknowledged".to_string()
        } else {
            format!("{} points/s offered", fmt_count(cfg.rate))
        },
        r.text(),
        settle_s,
        fmt_count(points),
        fmt_count(chunk_bytes),
        bpp,
        codec_bpp,
        bpp / codec_bpp.max(1e-9),
        fmt_count(rollup_bytes),
        rollup_bytes as f64 / points as f64,
        bpp_data,
        bpp_data / codec_bpp.max(1e-9),
        fmt_count(chunk_bytes + wal_files),
        (chunk_bytes + wal_files) as f64 / points as f64,
        amp,
        total_amp,
        p99s[0].map_or("n/a".into(), fmt_us),
        secs[0],
        p99s[1].map_or("n/a".into(), fmt_us),
        secs[1],
        p99s[2].map_or("n/a".into(), fmt_us),
        secs[2],
        fmt_us(stat(&stats, "total.compaction_swap_max_micros")),
        fmt_us(stat(&stats, "total.compaction_swap_micros")),
        fmt_us(stat(&stats, "total.compaction_dir_max_micros")),
        fmt_count(range_points as u64),
        blocks_read,
        fmt_us(range_us),
    );
    let j: Value = json!({
        "scenario": "steady",
        "tags": tags,
        "signal": cfg.signal.name(),
        "minutes": minutes,
        "write": r.json(),
        "write_s": write_s,
        "settle_s": settle_s,
        "points_on_disk": points,
        "chunk_bytes": chunk_bytes,
        "wal_file_bytes": wal_files,
        "bytes_per_point": bpp,
        "rollup_bytes": rollup_bytes,
        "bytes_per_point_without_rollups": bpp_data,
        "bytes_per_point_with_wal": (chunk_bytes + wal_files) as f64 / points as f64,
        "codec_bytes_per_point": codec_bpp,
        "chunk_write_amplification": amp,
        "total_write_amplification": total_amp,
        "ack_p99_us_quiet_seconds": p99s[0],
        "ack_p99_us_flushing_seconds": p99s[1],
        "ack_p99_us_compacting_seconds": p99s[2],
        "quiet_seconds": secs[0],
        "flushing_seconds": secs[1],
        "compacting_seconds": secs[2],
        "range_points": range_points,
        "range_blocks_read": blocks_read,
        "range_us": range_us,
        "server_stats": stats.iter().filter(|(k, _)| k.starts_with("total.")).map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
    });
    let ok = r.error_count() == 0 && range_points as u64 == ticks;
    Ok(Outcome {
        name: "steady".into(),
        json: j,
        text,
        ok,
    })
}
