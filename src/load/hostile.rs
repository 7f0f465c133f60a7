//! The hostile-client mix (`xtdb-load scenario hostile`, and the mixed
//! test in `tests/http_hostile.rs`): a well-behaved HTTP writer and
//! reader run against a live server, first alone, then while seeded
//! hostile clients drip bodies, hold unfinished headers, read huge ranges
//! and hang up midway, send pathological lines, flood new series and
//! open and drop connections. Reports the well-behaved clients' latency
//! in both phases and checks that every write they had acknowledged is
//! still there, value for value. A plain HTTP/1.1 client over std
//! sockets; it imports nothing of the server.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// What to run.
#[derive(Clone, Debug)]
pub struct HostileConfig {
    /// The server's HTTP address.
    pub http: SocketAddr,
    /// Length of each phase (alone, then under attack).
    pub phase: Duration,
    /// Seed of the hostile schedule.
    pub seed: u64,
    /// Hostile client threads.
    pub attackers: usize,
    /// Points written to the tag the huge reads ask for.
    pub big_points: usize,
    /// Run only this kind of attack (see [`KINDS`]), not a mix.
    pub only: Option<u64>,
}

/// Latency of one well-behaved client kind in one phase, µs.
#[derive(Clone, Debug, Default)]
pub struct Latency {
    /// Requests answered as expected.
    pub ok: u64,
    /// Requests that failed (any other status, or a socket error).
    pub failed: u64,
    /// Requests refused `503` with `Retry-After` and asked again once
    /// after it (counted in `ok` or `failed` by the second answer).
    pub retried: u64,
    /// Median, µs.
    pub p50_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// Largest, µs.
    pub max_us: u64,
    /// What went wrong with the first failed request (status and body, or
    /// the socket error), so a failure can be told apart from another.
    pub first_failure: Option<String>,
}

/// The scenario's result.
#[derive(Clone, Debug)]
pub struct HostileReport {
    /// Writer alone, then under attack.
    pub write: [Latency; 2],
    /// Reader alone, then under attack.
    pub read: [Latency; 2],
    /// Hostile requests made, by kind.
    pub attacks: Vec<(&'static str, u64)>,
    /// Points the writer had acknowledged.
    pub acked_points: u64,
    /// Acknowledged points missing or changed when read back.
    pub lost_points: u64,
}

impl HostileReport {
    /// The report as JSON.
    pub fn json(&self) -> Value {
        let lat = |l: &Latency| json!({"ok": l.ok, "failed": l.failed, "retried": l.retried, "p50_us": l.p50_us, "p99_us": l.p99_us, "max_us": l.max_us, "first_failure": l.first_failure});
        json!({
            "write_alone": lat(&self.write[0]), "write_attacked": lat(&self.write[1]),
            "read_alone": lat(&self.read[0]), "read_attacked": lat(&self.read[1]),
            "attacks": self.attacks.iter().map(|(k, n)| (k.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "acked_points": self.acked_points, "lost_points": self.lost_points,
        })
    }

    /// A text table.
    pub fn text(&self) -> String {
        let mut s =
            String::from("client  phase      ok  failed  retried  p50 ms  p99 ms  max ms\n");
        for (name, l) in [("write", &self.write), ("read", &self.read)] {
            for (phase, x) in ["alone", "attacked"].iter().zip(l.iter()) {
                s.push_str(&format!(
                    "{name:<7} {phase:<9} {:>5} {:>7} {:>8} {:>7.2} {:>7.2} {:>7.2}\n",
                    x.ok,
                    x.failed,
                    x.retried,
                    x.p50_us as f64 / 1e3,
                    x.p99_us as f64 / 1e3,
                    x.max_us as f64 / 1e3
                ));
            }
        }
        for (name, l) in [("write", &self.write), ("read", &self.read)] {
            for (phase, x) in ["alone", "attacked"].iter().zip(l.iter()) {
                if let Some(why) = &x.first_failure {
                    s.push_str(&format!("first failure of {name} {phase}: {why}\n"));
                }
            }
        }
        let attacks: Vec<String> = self
            .attacks
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        s.push_str(&format!("attacks: {}\n", attacks.join(", ")));
        s.push_str(&format!(
            "acknowledged points {}, lost or changed {}\n",
            self.acked_points, self.lost_points
        ));
        s
    }
}

/// An HTTP answer: status and body.
struct Answer {
    status: u16,
    body: Vec<u8>,
    /// Seconds of a `Retry-After` header.
    retry_after: Option<u64>,
}

/// One request on its own connection, the whole answer read back
/// (chunked bodies decoded); `None` on a socket error or timeout.
fn request(a: SocketAddr, method: &str, path: &str, body: &[u8]) -> Option<Answer> {
    request_why(a, method, path, body).ok()
}

/// [`request`], saying what went wrong: the step and the socket error, or
/// an answer that is not HTTP.
fn request_why(a: SocketAddr, method: &str, path: &str, body: &[u8]) -> Result<Answer, String> {
    let io = |step: &'static str| move |e: std::io::Error| format!("{method} {path}: {step}: {e}");
    let mut s = TcpStream::connect_timeout(&a, Duration::from_secs(5)).map_err(io("connect"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(io("set a read timeout"))?;
    s.set_nodelay(true).map_err(io("set TCP_NODELAY"))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())
        .map_err(io("send the headers"))?;
    s.write_all(body).map_err(io("send the body"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(io("read the answer"))?;
    let bad = |what: &str| format!("{method} {path}: {what} ({} bytes of answer)", raw.len());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let headers = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = headers
        .get(9..12)
        .and_then(|x| x.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let mut body = raw[split + 4..].to_vec();
    if headers.contains("transfer-encoding: chunked") {
        body = dechunk(&body).ok_or_else(|| bad("a chunked body cut short"))?;
    }
    let retry_after = headers
        .lines()
        .find_map(|l| l.strip_prefix("retry-after:"))
        .and_then(|v| v.trim().parse().ok());
    Ok(Answer {
        status,
        body,
        retry_after,
    })
}

/// A well-behaved client's request: a `503` with `Retry-After` (the
/// server's answer when a connection flood has filled its listener and no
/// connection can be evicted) is retried once, after the delay it names
/// (at most 2 s), as InfluxDB clients and Telegraf do; `retried` counts
/// those.
fn polite(
    a: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    retried: &mut u64,
) -> Result<Answer, String> {
    let r = request_why(a, method, path, body);
    match &r {
        Ok(x) if x.status == 503 && x.retry_after.is_some() => {
            *retried += 1;
            let secs = x.retry_after.unwrap_or(1).min(2);
            std::thread::sleep(Duration::from_secs(secs));
            request_why(a, method, path, body)
        }
        _ => r,
    }
}

/// What a failed request's answer said, for [`Latency::first_failure`].
fn failure(r: &Result<Answer, String>) -> String {
    match r {
        Ok(a) => format!(
            "status {}: {}",
            a.status,
            String::from_utf8_lossy(&a.body[..a.body.len().min(200)])
        ),
        Err(e) => e.clone(),
    }
}

/// Decodes a `Transfer-Encoding: chunked` body; `None` when it is
/// malformed or cut short.
pub fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(std::str::from_utf8(&b[..eol]).ok()?.trim(), 16).ok()?;
        b = b.get(eol + 2..)?;
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

const WRITER_SERIES: usize = 10;
const T0_US: i64 = 1_700_000_000_000_000;

fn series_key(i: usize) -> String {
    format!("good,s={i} v")
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn latency(
    h: &Histogram<u64>,
    ok: u64,
    failed: u64,
    retried: u64,
    first_failure: Option<String>,
) -> Latency {
    Latency {
        ok,
        failed,
        retried,
        first_failure,
        p50_us: h.value_at_quantile(0.5),
        p99_us: h.value_at_quantile(0.99),
        max_us: h.max(),
    }
}

/// Runs the scenario.
pub fn run(cfg: &HostileConfig) -> Result<HostileReport, String> {
    let a = cfg.http;
    prepare(a, cfg.big_points)?;
    let acked: Arc<Mutex<Vec<(usize, i64, f64)>>> = Arc::default();
    let next_ts = Arc::new(AtomicU64::new(1));
    let mut write = [Latency::default(), Latency::default()];
    let mut read = [Latency::default(), Latency::default()];
    let mut attacks = Vec::new();
    for (phase, attacked) in [false, true].into_iter().enumerate() {
        let stop = Arc::new(AtomicBool::new(false));
        let hostile: Vec<_> = if attacked {
            (0..cfg.attackers)
                .map(|i| {
                    let stop = Arc::clone(&stop);
                    let seed = cfg.seed.wrapping_add(i as u64 * 7919);
                    let only = cfg.only;
                    std::thread::spawn(move || attacker(a, seed, only, &stop))
                })
                .collect()
        } else {
            Vec::new()
        };
        let w = {
            let (stop, acked, next_ts) =
                (Arc::clone(&stop), Arc::clone(&acked), Arc::clone(&next_ts));
            std::thread::spawn(move || writer(a, &stop, &acked, &next_ts))
        };
        let r = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || reader(a, &stop))
        };
        std::thread::sleep(cfg.phase);
        stop.store(true, Ordering::Relaxed);
        write[phase] = w.join().map_err(|_| "writer panicked")?;
        read[phase] = r.join().map_err(|_| "reader panicked")?;
        for h in hostile {
            for (k, n) in h.join().map_err(|_| "attacker panicked")? {
                match attacks.iter_mut().find(|(kk, _)| *kk == k) {
                    Some((_, m)) => *m += n,
                    None => attacks.push((k, n)),
                }
            }
        }
    }
    let acked = acked.lock().map_err(|_| "poisoned")?.clone();
    let lost = check(a, &acked)?;
    Ok(HostileReport {
        write,
        read,
        attacks,
        acked_points: acked.len() as u64,
        lost_points: lost,
    })
}

/// Creates the writer's series and fills the big tag (unless an earlier
/// run did), then lets the server settle (flush) for two seconds.
fn prepare(a: SocketAddr, big: usize) -> Result<(), String> {
    let filled = request(a, "GET", "/api/v1/latest?tag=big%2Ck%3Da%20v", b"")
        .is_some_and(|r| r.status == 200);
    let mut body = String::new();
    for s in 0..WRITER_SERIES {
        body.push_str(&format!("good,s={s} v=0 {}\n", T0_US * 1000));
    }
    let r = request(a, "POST", "/write", body.as_bytes()).ok_or("prepare: no answer")?;
    if r.status != 204 {
        return Err(format!("prepare: {}", String::from_utf8_lossy(&r.body)));
    }
    let mut i = if filled { big } else { 0 };
    while i < big {
        let mut body = String::new();
        for j in i..(i + 50_000).min(big) {
            body.push_str(&format!("big,k=a v={}.5 {}\n", j, T0_US + j as i64));
        }
        i += 50_000;
        let r = request(a, "POST", "/write?precision=u", body.as_bytes())
            .ok_or("prepare big: no answer")?;
        if r.status != 204 {
            return Err(format!("prepare big: {}", String::from_utf8_lossy(&r.body)));
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    Ok(())
}

/// Writes one point to each of its series every 20 ms.
fn writer(
    a: SocketAddr,
    stop: &AtomicBool,
    acked: &Mutex<Vec<(usize, i64, f64)>>,
    next_ts: &AtomicU64,
) -> Latency {
    let mut h = crate::load::report::new_hist();
    let (mut ok, mut failed) = (0, 0);
    let mut first = None;
    let mut retried = 0;
    while !stop.load(Ordering::Relaxed) {
        let t = next_ts.fetch_add(1, Ordering::Relaxed) as i64;
        let ts = T0_US + 1_000_000_000 + t;
        let mut body = String::new();
        let mut pts = Vec::new();
        for s in 0..WRITER_SERIES {
            let v = (t as f64) * 0.5 + s as f64;
            body.push_str(&format!("good,s={s} v={v} {ts}\n"));
            pts.push((s, ts, v));
        }
        let started = Instant::now();
        let r = polite(
            a,
            "POST",
            "/write?precision=u",
            body.as_bytes(),
            &mut retried,
        );
        let _ = h.record(started.elapsed().as_micros() as u64);
        match r {
            Ok(r) if r.status == 204 => {
                ok += 1;
                if let Ok(mut g) = acked.lock() {
                    g.extend(pts);
                }
            }
            r => {
                failed += 1;
                first.get_or_insert_with(|| failure(&r));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    latency(&h, ok, failed, retried, first)
}

/// Reads the latest values and a short range every 20 ms.
fn reader(a: SocketAddr, stop: &AtomicBool) -> Latency {
    let mut h = crate::load::report::new_hist();
    let (mut ok, mut failed) = (0, 0);
    let mut first = None;
    let mut retried = 0;
    let latest: String = (0..WRITER_SERIES)
        .map(|s| format!("tag={}", enc(&series_key(s))))
        .collect::<Vec<_>>()
        .join("&");
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let path = if i.is_multiple_of(2) {
            format!("/api/v1/latest?{latest}")
        } else {
            format!("/api/v1/range?tag={}&start={}", enc(&series_key(0)), T0_US)
        };
        i += 1;
        let started = Instant::now();
        let r = polite(a, "GET", &path, b"", &mut retried);
        let _ = h.record(started.elapsed().as_micros() as u64);
        match r {
            Ok(r) if r.status == 200 => ok += 1,
            r => {
                failed += 1;
                first.get_or_insert_with(|| failure(&r));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    latency(&h, ok, failed, retried, first)
}

/// Kinds of attack (see [`attacker`]).
pub const KINDS: u64 = 6;

/// One hostile client: picks an attack at random (or always `only`)
/// until `stop`: 0 slow-drip body, 1 slowloris headers, 2 huge range
/// dropped midway, 3 pathological line, 4 series flood, 5 connect and
/// drop.
fn attacker(
    a: SocketAddr,
    seed: u64,
    only: Option<u64>,
    stop: &AtomicBool,
) -> Vec<(&'static str, u64)> {
    let mut rng = Rng(seed);
    // One line with 20,000 to 50,000 tags, built once.
    let mut evil = String::from("evil");
    for i in 0..20_000 + (rng.next() % 30_000) as usize {
        evil.push_str(&format!(",t{i}=v"));
    }
    evil.push_str(" v=1\n");
    let mut counts: Vec<(&'static str, u64)> = Vec::new();
    let mut count = |k: &'static str| match counts.iter_mut().find(|(kk, _)| *kk == k) {
        Some((_, n)) => *n += 1,
        None => counts.push((k, 1)),
    };
    while !stop.load(Ordering::Relaxed) {
        // A pause between attacks keeps the attackers' own CPU (which
        // shares the generator's CPU here) from starving the well-behaved
        // clients: what is measured is the server.
        std::thread::sleep(Duration::from_millis(20));
        match only.unwrap_or(rng.next() % KINDS) {
            0 => {
                count("slow-drip body");
                slow(
                    a,
                    stop,
                    b"POST /write HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n",
                    b"m",
                );
            }
            1 => {
                count("slowloris headers");
                slow(
                    a,
                    stop,
                    b"GET /api/v1/tags HTTP/1.1\r\nHost: x\r\n",
                    b"X-a: b\r\n",
                );
            }
            2 => {
                count("huge range, hang up midway");
                if let Ok(mut s) = TcpStream::connect(a) {
                    let _ = s.write_all(
                        b"GET /api/v1/range?tag=big%2Ck%3Da%20v HTTP/1.1\r\nHost: x\r\n\r\n",
                    );
                    let mut buf = vec![0u8; 64 << 10];
                    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                    let _ = s.read(&mut buf);
                }
            }
            3 => {
                count("pathological line");
                let _ = request(a, "POST", "/write", evil.as_bytes());
            }
            4 => {
                count("series flood");
                let base = rng.next() % 1_000_000_000;
                let body: String = (0..20_000)
                    .map(|i| format!("flood,s={} v=1 {}\n", base + i, T0_US * 1000))
                    .collect();
                let _ = request(a, "POST", "/write", body.as_bytes());
            }
            _ => {
                count("connect and drop");
                let conns: Vec<_> = (0..50).filter_map(|_| TcpStream::connect(a).ok()).collect();
                drop(conns);
            }
        }
    }
    counts
}

/// Sends `head`, then `drip` every 500 ms until the server closes or
/// `stop` (at most 30 s).
fn slow(a: SocketAddr, stop: &AtomicBool, head: &[u8], drip: &[u8]) {
    let Ok(mut s) = TcpStream::connect(a) else {
        return;
    };
    if s.write_all(head).is_err() {
        return;
    }
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(500));
        if s.write_all(drip).is_err() {
            return;
        }
    }
}

/// Reads every writer series back; counts acknowledged points missing or
/// changed.
fn check(a: SocketAddr, acked: &[(usize, i64, f64)]) -> Result<u64, String> {
    let mut lost = 0;
    for s in 0..WRITER_SERIES {
        let path = format!("/api/v1/range?tag={}&start={}", enc(&series_key(s)), T0_US);
        let r = request(a, "GET", &path, b"").ok_or("check: no answer")?;
        if r.status != 200 {
            return Err(format!("check: {}", String::from_utf8_lossy(&r.body)));
        }
        let j: Value = serde_json::from_slice(&r.body).map_err(|e| format!("check: {e}"))?;
        let mut got = std::collections::HashMap::new();
        for p in j["points"].as_array().into_iter().flatten() {
            if let (Some(ts), Some(v)) = (p["ts"].as_i64(), p["value"].as_f64()) {
                got.insert(ts, v);
            }
        }
        for (_, ts, v) in acked.iter().filter(|(ss, _, _)| *ss == s) {
            if got.get(ts) != Some(v) {
                lost += 1;
            }
        }
    }
    Ok(lost)
}
