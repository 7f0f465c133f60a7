//! The built-in trend page (`GET /`) in a real browser: headless Debian
//! `chromium` (`apt-get install chromium`; `.ci/run` installs it) loads
//! the page from a test server with known data, through a small recording
//! proxy, and the test reads back what the page shows (its `data-`
//! attributes in the dumped DOM):
//! - the last hour of a 1 Hz tag and a 0.1 Hz tag on one chart: points
//!   drawn, min and max equal the plot API's own answer for the same
//!   window and the true extremes of the data written, the last value and
//!   its quality equal `latest`; every request the proxy saw asked for at
//!   most 4,000 rows and none read raw points; a screenshot goes to
//!   `target/ui-artifacts/`;
//! - the 24 h view of 3 h of 1 Hz data draws the plot answer (fewer points
//!   than stored), again bounded;
//! - tag search lists the catalog's matches for a prefix and a substring,
//!   prefix matches first;
//! - with auth on, the page without a token shows its token prompt and no
//!   data, while its static files are served without one.
//!
//! A missing chromium fails the test with a message saying how to install
//! it. `cargo test --release --test ui_browser -- --ignored --nocapture
//! bench` runs the load-to-first-trend benchmark (7 days of 1 Hz data).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod net_common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use net_common::http::req;
use net_common::*;
use regex::Regex;
use serde_json::{json, Value};
use xtdb::server::{AuthSetting, ServerHandle};
use xtdb::storage::tokens::Perms;

const TAG_A: &str = "boiler,unit=b1 temp";
const TAG_B: &str = "pump,unit=p7 flow";
const OTHER_TAGS: [&str; 2] = ["boiler,unit=b2 temp", "boiler,unit=b1 pressure"];
/// `(ts in s, value)` of one tag.
type Points = Vec<(i64, f64)>;

/// Seconds of data written, ending one second before the test's now.
const SPAN_S: i64 = 3 * 3600;

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn value_a(i: i64) -> f64 {
    50.0 + 20.0 * (i as f64 / 600.0).sin() + ((i * 7919) % 13) as f64 * 0.25
}

fn value_b(i: i64) -> f64 {
    100.0 + (i % 60) as f64
}

/// The 1 Hz points of A, (ts in s, value); B every 10 s.
fn data(now_s: i64) -> (Points, Points) {
    let t0 = now_s - SPAN_S;
    let a = (0..SPAN_S).map(|i| (t0 + i, value_a(i))).collect();
    let b = (0..SPAN_S / 10)
        .map(|i| (t0 + i * 10, value_b(i)))
        .collect();
    (a, b)
}

fn write_data(http: SocketAddr, auth: Option<&str>, now_s: i64) -> (Points, Points) {
    let (a, b) = data(now_s);
    let mut body = String::new();
    for &(t, v) in &a {
        body.push_str(&format!("boiler,unit=b1 temp={v} {t}\n"));
    }
    for &(t, v) in &b {
        body.push_str(&format!("pump,unit=p7 flow={v} {t}\n"));
    }
    for k in OTHER_TAGS {
        let (m, f) = k.split_once(' ').unwrap();
        body.push_str(&format!("{m} {f}=1 {}\n", now_s - 60));
    }
    let h: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", *a)).collect();
    let r = req(http, "POST", "/write?db=x&precision=s", &h, body.as_bytes());
    assert_eq!(r.status, 204, "{}", r.text());
    (a, b)
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

// ---- a recording proxy ----------------------------------------------------

/// Forwards each browser request to the server on its own connection
/// (`Connection: close`) and records its target (`/path?query`).
struct Proxy {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    fn start(upstream: SocketAddr) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    let _ = forward(c, upstream, &log);
                });
            }
        });
        Proxy { addr, seen }
    }

    /// The targets seen since the last call.
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

fn forward(mut c: TcpStream, up: SocketAddr, log: &Mutex<Vec<String>>) -> std::io::Result<()> {
    c.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    let end = loop {
        let n = c.read(&mut tmp)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        if buf.len() > 1 << 20 {
            return Ok(());
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut body = buf[end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let first = lines.next().unwrap_or("").to_string();
    let mut out = format!("{first}\r\n");
    let mut len = 0usize;
    for l in lines {
        let lower = l.to_ascii_lowercase();
        if lower.starts_with("connection:") || lower.starts_with("keep-alive:") {
            continue;
        }
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        out.push_str(l);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    while body.len() < len {
        let n = c.read(&mut tmp)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&tmp[..n]);
    }
    let target = first.split(' ').nth(1).unwrap_or("").to_string();
    log.lock().unwrap().push(target);
    let mut u = TcpStream::connect(up)?;
    u.write_all(out.as_bytes())?;
    u.write_all(&body)?;
    std::io::copy(&mut u, &mut c)?;
    Ok(())
}

// ---- chromium -------------------------------------------------------------

fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser"] {
        if let Some(p) = std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        }) {
            return p;
        }
    }
    panic!(
        "tests/ui_browser.rs needs Debian's headless browser: `chromium` is not on PATH. \
         Install it with `apt-get install -y chromium` (.ci/run does this)."
    );
}

/// Runs headless chromium on `url` with `extra` flags and returns stdout
/// (the DOM for `--dump-dom`). Killed after 60 s.
fn run_chromium(url: &str, extra: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--window-size=1200,800",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(extra)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("chromium starts");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 60 s on {url}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(
        status.success(),
        "chromium failed ({status}) on {url}: {err}"
    );
    out
}

/// The DOM after the page has run for `budget_ms` of virtual time (network
/// fetches complete within it: virtual time stops while one is pending).
fn dom(url: &str, budget_ms: u32) -> String {
    let d = run_chromium(
        url,
        &[&format!("--virtual-time-budget={budget_ms}"), "--dump-dom"],
    );
    assert!(d.contains("id=\"chart\""), "no chart in the DOM: {d}");
    d
}

fn artifacts() -> PathBuf {
    // CARGO_TARGET_TMPDIR is TARGET/tmp.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("ui-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn screenshot(url: &str, name: &str) -> PathBuf {
    let path = artifacts().join(name);
    let _ = std::fs::remove_file(&path);
    run_chromium(
        url,
        &[
            "--virtual-time-budget=3000",
            "--hide-scrollbars",
            &format!("--screenshot={}", path.display()),
        ],
    );
    let png = std::fs::read(&path).expect("screenshot written");
    assert_eq!(
        &png[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is a PNG",
        path.display()
    );
    assert!(
        png.len() > 10_000,
        "screenshot too small: {} bytes",
        png.len()
    );
    path
}

// ---- the DevTools protocol, for typing, dragging and clicking ------------------

/// One headless chromium driven over `--remote-debugging-pipe` (JSON
/// messages ended by NUL on fds 3 and 4, mapped from a pipe pair by `sh`),
/// attached to one page.
struct Cdp {
    child: Child,
    to: ChildStdin,
    from: mpsc::Receiver<Value>,
    next: u64,
    session: Option<String>,
    _profile: tempfile::TempDir,
}

impl Cdp {
    fn launch() -> Cdp {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 </dev/null >/dev/null"#)
            .arg(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--remote-debugging-pipe",
                "--window-size=1200,800",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium starts");
        let to = child.stdin.take().unwrap();
        let mut out = child.stdout.take().unwrap();
        let (tx, from) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut tmp = [0u8; 65536];
            while let Ok(n) = out.read(&mut tmp) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&tmp[..n]);
                while let Some(p) = buf.iter().position(|&b| b == 0) {
                    let msg: Vec<u8> = buf.drain(..=p).collect();
                    if let Ok(v) = serde_json::from_slice::<Value>(&msg[..p]) {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let mut c = Cdp {
            child,
            to,
            from,
            next: 0,
            session: None,
            _profile: profile,
        };
        let t = c.call("Target.createTarget", json!({"url": "about:blank"}));
        let s = c.call(
            "Target.attachToTarget",
            json!({"targetId": t["targetId"], "flatten": true}),
        );
        c.session = Some(s["sessionId"].as_str().unwrap().to_string());
        c.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1200, "height": 800, "deviceScaleFactor": 1, "mobile": false}),
        );
        c
    }

    /// A command (to the page once attached); its result.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut m = json!({"id": id, "method": method, "params": params});
        if let Some(s) = &self.session {
            m["sessionId"] = json!(s);
        }
        let mut bytes = m.to_string().into_bytes();
        bytes.push(0);
        self.to.write_all(&bytes).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .from
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no answer to {method}: {e}"));
            if v["id"].as_u64() == Some(id) {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        );
        assert!(r.get("exceptionDetails").is_none(), "{expr}: {r}");
        r["result"]["value"].clone()
    }

    /// Waits (at most 20 s) until `expr` is true.
    fn wait(&mut self, expr: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let guarded = format!(
            "(() => {{ try {{ return ({expr}) === true; }} catch (e) {{ return false; }} }})()"
        );
        while self.eval(&guarded) != json!(true) {
            if Instant::now() > deadline {
                let state = self.eval(
                    "[document.body && document.body.dataset.state, \
                     document.getElementById('status') && document.getElementById('status').textContent]",
                );
                panic!("timed out waiting for {expr}; page state and status: {state}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn goto(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url }));
    }

    fn dom(&mut self) -> String {
        self.eval("document.documentElement.outerHTML")
            .as_str()
            .unwrap()
            .to_string()
    }

    fn focus(&mut self, id: &str) {
        self.eval(&format!("document.getElementById('{id}').focus()"));
    }

    fn type_text(&mut self, text: &str) {
        self.call("Input.insertText", json!({ "text": text }));
    }

    fn key(&mut self, key: &str, code: u32) {
        // Enter must carry its text to submit a form (implicit submission).
        let down = if key == "Enter" {
            json!({"type": "keyDown", "key": key, "code": key, "windowsVirtualKeyCode": code, "text": "\r"})
        } else {
            json!({"type": "rawKeyDown", "key": key, "code": key, "windowsVirtualKeyCode": code})
        };
        self.call("Input.dispatchKeyEvent", down);
        self.call(
            "Input.dispatchKeyEvent",
            json!({"type": "keyUp", "key": key, "code": key, "windowsVirtualKeyCode": code}),
        );
    }

    fn mouse(&mut self, kind: &str, x: f64, y: f64, buttons: u32) {
        self.call(
            "Input.dispatchMouseEvent",
            json!({"type": kind, "x": x, "y": y, "button": "left", "buttons": buttons, "clickCount": 1}),
        );
    }
}

impl Drop for Cdp {
    fn drop(&mut self) {
        let _ = self
            .to
            .write_all(b"{\"id\":999999,\"method\":\"Browser.close\"}\0");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- reading the DOM ----------------------------------------------------------

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

fn attrs(tag_text: &str) -> HashMap<String, String> {
    let re = Regex::new(r#"([\w-]+)="([^"]*)""#).unwrap();
    re.captures_iter(tag_text)
        .map(|c| (c[1].to_string(), unescape(&c[2])))
        .collect()
}

/// The attributes of the element with `id`.
fn element(dom: &str, id: &str) -> HashMap<String, String> {
    let re = Regex::new(&format!(r#"<\w+\s[^>]*id="{id}"[^>]*>"#)).unwrap();
    let m = re.find(dom).unwrap_or_else(|| panic!("no #{id} in {dom}"));
    attrs(m.as_str())
}

/// The attributes of every `<li>` inside `<ul id=...>`.
fn items(dom: &str, ul: &str) -> Vec<HashMap<String, String>> {
    let start = dom
        .find(&format!("id=\"{ul}\""))
        .unwrap_or_else(|| panic!("no #{ul}"));
    let end = start + dom[start..].find("</ul>").unwrap();
    let li = Regex::new(r"<li\s[^>]*>").unwrap();
    li.find_iter(&dom[start..end])
        .map(|m| attrs(m.as_str()))
        .collect()
}

fn num(m: &HashMap<String, String>, k: &str) -> f64 {
    m.get(k)
        .unwrap_or_else(|| panic!("no {k} in {m:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("{k} is not a number in {m:?}"))
}

fn param(target: &str, k: &str) -> Vec<String> {
    let q = target.split_once('?').map_or("", |x| x.1);
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(n, _)| *n == k)
        .map(|(_, v)| v.to_string())
        .collect()
}

/// Every request the page made: none reads raw points, every plot call
/// names one series and at most 1,000 intervals (4,000 rows). Returns the
/// plot calls.
fn check_requests(seen: &[String]) -> Vec<String> {
    assert!(
        !seen.iter().any(|t| t.starts_with("/api/v1/range")),
        "the page read raw points: {seen:?}"
    );
    let plots: Vec<String> = seen
        .iter()
        .filter(|t| t.starts_with("/api/v1/plot?"))
        .cloned()
        .collect();
    for p in &plots {
        let px: usize = param(p, "pixels")[0].parse().unwrap();
        let series = param(p, "tag").len() + param(p, "id").len();
        assert_eq!(series, 1, "{p}");
        assert!(
            series * 4 * px <= 4_000,
            "a request may answer {} rows: {p}",
            series * 4 * px
        );
    }
    for t in seen.iter().filter(|t| t.starts_with("/api/")) {
        let limit = param(t, "limit");
        assert!(
            limit.iter().all(|l| l.parse::<usize>().unwrap() <= 1_000),
            "{t}"
        );
    }
    plots
}

fn plot_api(
    http: SocketAddr,
    auth: &[(&str, &str)],
    tag: &str,
    chart: &HashMap<String, String>,
) -> Vec<(i64, Option<f64>)> {
    let q = format!(
        "/api/v1/plot?tag={}&start={}&end={}&pixels={}&precision=ms",
        enc(tag),
        chart["data-start"],
        chart["data-end"],
        chart["data-pixels"]
    );
    let r = req(http, "GET", &q, auth, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()[0]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_i64().unwrap(), r[1].as_f64()))
        .collect()
}

fn server(dir: &Path, auth: bool) -> (ServerHandle, SocketAddr) {
    let h = server_with(dir, &[0, 1], |c| {
        c.http = Some("127.0.0.1:0".into());
        if auth {
            c.auth = AuthSetting::On;
        }
    })
    .expect("server starts");
    let a = h.http_addr().unwrap();
    (h, a)
}

/// Checks one series of the page against the API and the data written.
fn check_series(
    http: SocketAddr,
    auth: &[(&str, &str)],
    chart: &HashMap<String, String>,
    li: &HashMap<String, String>,
    tag: &str,
    raw: &[(i64, f64)],
) -> usize {
    let rows = plot_api(http, auth, tag, chart);
    let vals: Vec<f64> = rows.iter().filter_map(|r| r.1).collect();
    assert!(!vals.is_empty(), "{tag}: the API has no rows");
    let (lo, hi) = vals
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    assert_eq!(
        num(li, "data-points") as usize,
        vals.len(),
        "{tag}: points drawn"
    );
    assert_eq!(num(li, "data-min"), lo, "{tag}: min shown");
    assert_eq!(num(li, "data-max"), hi, "{tag}: max shown");
    // Plot values keep each interval's extremes, so these are the true
    // extremes of the points written in [start, end).
    let (s, e) = (
        num(chart, "data-start") as i64,
        num(chart, "data-end") as i64,
    );
    let inside: Vec<f64> = raw
        .iter()
        .filter(|(t, _)| (s..e).contains(&(t * 1000)))
        .map(|p| p.1)
        .collect();
    let want_lo = inside.iter().copied().fold(f64::INFINITY, f64::min);
    let want_hi = inside.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    assert_eq!((lo, hi), (want_lo, want_hi), "{tag}: extremes of the data");
    assert!(vals.len() <= inside.len());
    // Last value and quality: the latest point written.
    let last = raw.last().unwrap().1;
    assert_eq!(num(li, "data-last"), last, "{tag}: last value");
    assert_eq!(li["data-quality"], "192", "{tag}: quality");
    vals.len()
}

#[test]
fn trend_of_the_last_hour_matches_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let (_h, http) = server(dir.path(), false);
    let now = now_s();
    let (a, b) = write_data(http, None, now);
    let proxy = Proxy::start(http);
    let base = format!("http://{}/", proxy.addr);

    // The page and its files, with their types and cache headers.
    for (p, ct) in [
        ("/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ] {
        let r = req(http, "GET", p, &[], b"");
        assert_eq!(r.status, 200, "{p}");
        let h = r.headers.to_ascii_lowercase();
        assert!(h.contains(&format!("content-type: {ct}")), "{p}: {h}");
        assert!(
            h.contains("cache-control: no-cache") && h.contains("etag: \""),
            "{p}: {h}"
        );
    }

    let url = format!(
        "{base}#tag={}&tag={}&range=1h&refresh=0",
        enc(TAG_A),
        enc(TAG_B)
    );
    let d = dom(&url, 3000);
    let chart = element(&d, "chart");
    assert_eq!(chart["data-state"], "ready", "{chart:?}");
    let (s, e) = (num(&chart, "data-start"), num(&chart, "data-end"));
    assert_eq!(e - s, 3_600_000.0, "the last hour");
    assert!(
        (e / 1000.0 - now as f64).abs() < 600.0,
        "the window ends now: {e} ms vs {now} s"
    );
    let px = num(&chart, "data-pixels");
    assert!((100.0..=1000.0).contains(&px), "pixels {px}");
    let series = items(&d, "series");
    assert_eq!(series.len(), 2, "{series:?}");
    assert_eq!(series[0]["data-tag"], TAG_A);
    assert_eq!(series[1]["data-tag"], TAG_B);
    let na = check_series(http, &[], &chart, &series[0], TAG_A, &a);
    let nb = check_series(http, &[], &chart, &series[1], TAG_B, &b);
    assert_eq!(num(&chart, "data-points") as usize, na + nb);
    // 0.1 Hz: every point of the hour is drawn.
    let window = (s as i64)..(e as i64);
    let in_window = b.iter().filter(|p| window.contains(&(p.0 * 1000))).count();
    assert!(in_window >= 300, "{in_window}");
    assert_eq!(nb, in_window, "every 0.1 Hz point of the hour is drawn");
    // 1 Hz: at 1,000 or fewer intervals, fewer rows than points.
    assert!(na < a.iter().filter(|p| window.contains(&(p.0 * 1000))).count());
    assert!(num(&chart, "data-max-points") <= 4_000.0);
    let seen = proxy.take();
    let plots = check_requests(&seen);
    assert!(plots.len() >= 2, "{seen:?}");
    assert!(
        seen.iter().any(|t| t == "/metrics?"),
        "server state from /metrics: {seen:?}"
    );
    assert!(num(&chart, "data-requests") as usize >= plots.len() + 2);
    let shards = element(&d, "server");
    assert_eq!(shards["data-shards"], "2");

    // 24 h over 3 h of 1 Hz data: the plot answer, far fewer than stored.
    let url24 = format!("{base}#tag={}&range=24h&refresh=0", enc(TAG_A));
    let d = dom(&url24, 3000);
    let chart = element(&d, "chart");
    assert_eq!(chart["data-state"], "ready", "{chart:?}");
    assert_eq!(
        num(&chart, "data-end") - num(&chart, "data-start"),
        86_400_000.0
    );
    let series = items(&d, "series");
    let n = check_series(http, &[], &chart, &series[0], TAG_A, &a);
    assert!(n < a.len() / 2 && n <= 4_000, "{n} of {}", a.len());
    check_requests(&proxy.take());

    let shot = screenshot(&url, "trend-last-hour.png");
    eprintln!("screenshot: {}", shot.display());
    check_requests(&proxy.take());
}

#[test]
fn tag_search_by_prefix_and_substring() {
    let dir = tempfile::tempdir().unwrap();
    let (_h, http) = server(dir.path(), false);
    write_data(http, None, now_s());
    let proxy = Proxy::start(http);
    let base = format!("http://{}/", proxy.addr);
    let shown = |d: &str, q: &str| -> Vec<(String, String)> {
        let ul = element(d, "results");
        assert_eq!(ul["data-query"], q, "{ul:?}");
        items(d, "results")
            .into_iter()
            .filter(|li| li.contains_key("data-tag"))
            .map(|li| (li["data-tag"].clone(), li["class"].clone()))
            .collect()
    };
    // The first query from the permalink (`q=`), in a one-shot browser;
    // the others typed into the search box of one page.
    let first = shown(&dom(&format!("{base}#q=boiler"), 2000), "boiler");
    let mut b = Cdp::launch();
    b.goto(&base);
    b.wait("document.getElementById('results').dataset.query === ''");
    let mut listed = |q: &str| -> Vec<(String, String)> {
        if q == "boiler" {
            return first.clone();
        }
        b.focus("search");
        b.key("Escape", 27);
        b.wait("document.getElementById('search').value === ''");
        b.type_text(q);
        b.wait(&format!(
            "document.getElementById('results').dataset.query === {}",
            json!(q)
        ));
        shown(&b.dom(), q)
    };
    let own = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        listed("boiler"),
        own(&[
            ("boiler,unit=b1 pressure", "prefix"),
            ("boiler,unit=b1 temp", "prefix"),
            ("boiler,unit=b2 temp", "prefix"),
        ])
    );
    assert_eq!(
        listed("temp"),
        own(&[
            ("boiler,unit=b1 temp", "substring"),
            ("boiler,unit=b2 temp", "substring"),
        ])
    );
    // Prefix matches first, then the other substrings.
    assert_eq!(
        listed("p"),
        own(&[
            ("pump,unit=p7 flow", "prefix"),
            ("boiler,unit=b1 pressure", "substring"),
            ("boiler,unit=b1 temp", "substring"),
            ("boiler,unit=b2 temp", "substring"),
        ])
    );
    assert_eq!(listed("nothing-like-this"), own(&[]));
    check_requests(&proxy.take());
}

#[test]
fn with_auth_on_the_page_asks_for_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = make_tokens(dir.path(), &[("rw", Perms::READ.with(Perms::WRITE))]);
    let (_h, http) = server(dir.path(), true);
    let tok = format!("Token {}", tokens[0]);
    write_data(http, Some(&tok), now_s());
    // The page's files need no token; the data does.
    assert_eq!(req(http, "GET", "/", &[], b"").status, 200);
    assert_eq!(req(http, "GET", "/ui/app.js", &[], b"").status, 200);
    assert_eq!(req(http, "GET", "/api/v1/tags", &[], b"").status, 401);
    let proxy = Proxy::start(http);
    let d = dom(
        &format!("http://{}/#tag={}&range=1h", proxy.addr, enc(TAG_A)),
        3000,
    );
    let chart = element(&d, "chart");
    assert_eq!(chart["data-state"], "auth", "{chart:?}");
    assert_eq!(chart["data-points"], "0");
    let auth = element(&d, "auth");
    assert!(
        !auth.contains_key("hidden"),
        "the token prompt is shown: {auth:?}"
    );
    assert!(d.contains("needs an access token"), "{d}");
    let series = items(&d, "series");
    assert!(
        series.iter().all(|li| !li.contains_key("data-points")),
        "no data shown: {series:?}"
    );
    let seen = proxy.take();
    assert!(
        seen.iter().any(|t| t.starts_with("/api/v1/plot?")),
        "{seen:?}"
    );
}

#[test]
fn token_then_keyboard_search_then_zoom_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = make_tokens(dir.path(), &[("ui", Perms::READ.with(Perms::WRITE))]);
    let (_h, http) = server(dir.path(), true);
    let tok = format!("Token {}", tokens[0]);
    let auth = [("Authorization", tok.as_str())];
    let (a, _) = write_data(http, Some(&tok), now_s());
    let proxy = Proxy::start(http);
    let mut b = Cdp::launch();
    b.goto(&format!("http://{}/#range=1h&refresh=0", proxy.addr));
    b.wait("document.body.dataset.state === 'auth' && !document.getElementById('auth').hidden");

    // The token, typed into the prompt: kept in sessionStorage only.
    b.focus("token");
    b.type_text(&tokens[0]);
    b.key("Enter", 13);
    b.wait("document.body.dataset.state === 'empty' && document.getElementById('results').dataset.count === '4'");
    assert_eq!(
        b.eval("sessionStorage.getItem('xtdb-token')"),
        json!(tokens[0])
    );
    assert_eq!(b.eval("localStorage.length"), json!(0));
    assert_eq!(b.eval("document.cookie"), json!(""));
    let href = b.eval("location.href");
    assert!(!href.as_str().unwrap().contains(&tokens[0]), "{href}");

    // Search by typing; arrows move the highlight, Enter adds the tag.
    b.focus("search");
    b.type_text("boiler,unit=b1");
    b.wait("document.getElementById('results').dataset.query === 'boiler,unit=b1'");
    let listed: Vec<String> = items(&b.dom(), "results")
        .into_iter()
        .map(|li| li["data-tag"].clone())
        .collect();
    assert_eq!(listed, ["boiler,unit=b1 pressure", "boiler,unit=b1 temp"]);
    b.key("ArrowDown", 40);
    b.key("ArrowDown", 40); // stops at the last result
    b.key("ArrowUp", 38);
    b.key("ArrowDown", 40);
    let sel = b.eval("document.querySelector('#results li[aria-selected=true]').dataset.tag");
    assert_eq!(sel, json!(TAG_A));
    b.key("Enter", 13);
    b.wait("document.getElementById('chart').dataset.state === 'ready'");
    let d = b.dom();
    let chart = element(&d, "chart");
    assert_eq!(
        num(&chart, "data-end") - num(&chart, "data-start"),
        3_600_000.0
    );
    let series = items(&d, "series");
    assert_eq!(series.len(), 1);
    check_series(http, &auth, &chart, &series[0], TAG_A, &a);
    assert!(b
        .eval("location.hash")
        .as_str()
        .unwrap()
        .contains("tag=boiler"));

    // Zoom: drag from a quarter to three quarters of the plot's width.
    let (s0, e0) = (num(&chart, "data-start"), num(&chart, "data-end"));
    let r = b.eval(
        "(() => { const r = document.getElementById('chart').getBoundingClientRect(); \
         return [r.left, r.top, r.width, r.height]; })()",
    );
    let f = |i: usize| r[i].as_f64().unwrap();
    let (x0, x1) = (f(0) + 62.0, f(0) + f(2) - 12.0);
    let y = f(1) + f(3) / 2.0;
    let xa = x0 + (x1 - x0) * 0.25;
    let xb = x0 + (x1 - x0) * 0.75;
    b.mouse("mouseMoved", xa, y, 0);
    b.mouse("mousePressed", xa, y, 1);
    b.mouse("mouseMoved", (xa + xb) / 2.0, y, 1);
    b.mouse("mouseMoved", xb, y, 1);
    b.mouse("mouseReleased", xb, y, 0);
    b.wait(&format!(
        "document.getElementById('chart').dataset.state === 'ready' && \
         document.getElementById('chart').dataset.start !== '{s0}'"
    ));
    let chart = element(&b.dom(), "chart");
    let (s1, e1) = (num(&chart, "data-start"), num(&chart, "data-end"));
    let span = e0 - s0;
    // Within two pixels of the dragged quarter points.
    let px = span / (x1 - x0);
    assert!((s1 - (s0 + span * 0.25)).abs() <= 2.0 * px, "{s1} vs {s0}");
    assert!((e1 - (s0 + span * 0.75)).abs() <= 2.0 * px, "{e1} vs {e0}");
    let hash = b.eval("location.hash");
    assert!(
        hash.as_str().unwrap().contains(&format!("from={s1}")),
        "{hash}"
    );
    let series = items(&b.dom(), "series");
    check_series(http, &auth, &chart, &series[0], TAG_A, &a);

    let shot = b.call("Page.captureScreenshot", json!({"format": "png"}));
    let png = xtdb::http::auth::base64_decode(shot["data"].as_str().unwrap()).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    std::fs::write(artifacts().join("trend-zoomed.png"), png).unwrap();

    // Back: the last hour again.
    assert_eq!(
        b.eval("document.getElementById('back').disabled"),
        json!(false)
    );
    b.eval("document.getElementById('back').click()");
    b.wait("location.hash.includes('range=1h')");
    b.wait("document.getElementById('chart').dataset.state === 'ready'");
    let chart = element(&b.dom(), "chart");
    assert_eq!(
        num(&chart, "data-end") - num(&chart, "data-start"),
        3_600_000.0
    );
    assert_eq!(
        b.eval("document.getElementById('back').disabled"),
        json!(true)
    );
    check_requests(&proxy.take());
}

/// Load to first drawn trend for 7 days of a 1 Hz tag (604,800 points,
/// flushed and compacted). Prints the figure; run with `cargo test
/// --release --test ui_browser -- --ignored --nocapture bench`.
#[test]
#[ignore]
fn bench_load_to_first_trend_7d() {
    let dir = tempfile::tempdir().unwrap();
    let (_h, http) = server(dir.path(), false);
    let now = now_s();
    let days = 7;
    let n = days * 86_400;
    let t0 = now - n;
    let started = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(50_000) {
        let mut body = String::new();
        for &i in chunk {
            body.push_str(&format!("line,unit=l1 speed={} {}\n", value_a(i), t0 + i));
        }
        let r = req(
            http,
            "POST",
            "/write?db=x&precision=s",
            &[],
            body.as_bytes(),
        );
        assert_eq!(r.status, 204, "{}", r.text());
    }
    eprintln!(
        "wrote {n} points in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Wait for the shards to flush and compact (as a settled historian).
    let metric = |name: &str| -> f64 {
        let t = req(http, "GET", "/metrics", &[], b"").text();
        t.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    while Instant::now() < deadline
        && !(metric("xtdb_points_buffered") == 0.0 && metric("xtdb_compactions_total") > 0.0)
    {
        std::thread::sleep(Duration::from_secs(1));
    }
    eprintln!(
        "points_buffered {} compactions {} points_on_disk {}",
        metric("xtdb_points_buffered"),
        metric("xtdb_compactions_total"),
        metric("xtdb_points_on_disk")
    );
    let proxy = Proxy::start(http);
    let tag = "line,unit=l1 speed";
    let url = format!("http://{}/#tag={}&range=7d&refresh=0", proxy.addr, enc(tag));
    let mut figures = Vec::new();
    for _ in 0..5 {
        // A new browser (empty cache) each time; the page's own clock,
        // performance.now() from navigation start, at its first draw.
        let mut b = Cdp::launch();
        proxy.take();
        b.goto(&url);
        b.wait("document.getElementById('chart').dataset.firstDrawMs !== undefined");
        let chart = element(&b.dom(), "chart");
        let ms = num(&chart, "data-first-draw-ms");
        // Where the time went, from the browser's own timing entries.
        let parts = b.eval(
            "(() => { const n = performance.getEntriesByType('navigation')[0]; \
             const p = performance.getEntriesByType('resource').find(e => e.name.includes('/api/v1/plot')); \
             const l = performance.getEntriesByType('resource').find(e => e.name.includes('/api/v1/latest')); \
             return {dom_content_loaded: n.domContentLoadedEventEnd, plot_sent: p.startTime, \
                     plot_took: p.responseEnd - p.startTime, latest_took: l.responseEnd - l.startTime}; })()",
        );
        let seen = proxy.take();
        eprintln!(
            "load to first trend: {ms:.1} ms ({parts}), {} points drawn, {} requests: {seen:?}",
            chart["data-points"], chart["data-requests"]
        );
        check_requests(&seen);
        figures.push(ms);
    }
    figures.sort_by(f64::total_cmp);
    eprintln!(
        "load to first trend, 7 d of 1 Hz, 5 runs: median {:.1} ms, min {:.1}, max {:.1}",
        figures[2], figures[0], figures[4]
    );
}
