//! Real InfluxDB client libraries against xtdb's HTTP edge: the PyPI
//! `influxdb` package (1.x `/write`) and `influxdb-client` (2.x
//! `/api/v2/write`, gzip on), with auth off and with auth on (1.x user name
//! and password, 2.x token; reads through the clients' own sessions). The
//! packages are installed with pip into
//! `target/pyclients` on first run; without python3/pip (or without the
//! network) the test prints why and passes without checking anything.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

use xtdb::server::{start, ServerConfig, Shutdown};

fn pyclients() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pyclients");
    let importable = |d: &PathBuf| {
        Command::new("python3")
            .env("PYTHONPATH", d)
            .args(["-c", "import influxdb, influxdb_client"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if importable(&dir) {
        return Some(dir);
    }
    let ok = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "--target",
        ])
        .arg(&dir)
        .args(["influxdb", "influxdb-client"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    (ok && importable(&dir)).then_some(dir)
}

const SCRIPT: &str = r#"
import sys
from influxdb import InfluxDBClient
from influxdb_client import InfluxDBClient as Client2, Point
from influxdb_client.client.write_api import SYNCHRONOUS
host, port = sys.argv[1], int(sys.argv[2])
c1 = InfluxDBClient(host=host, port=port, database="plant")
c1.ping()
ok = c1.write_points([
    {"measurement": "boiler", "tags": {"unit": "b1"}, "time": 1700000000000000000,
     "fields": {"temp": 81.5, "q": 192}},
    {"measurement": "boiler", "tags": {"unit": "b2"}, "time": 1700000000000000000,
     "fields": {"temp": 79.0, "pressure": 3.5}},
], time_precision="n")
assert ok, "1.x write failed"
try:
    c1.write_points([{"measurement": "boiler", "fields": {"temp": float("nan")}}])
    raise SystemExit("NaN was accepted")
except Exception as e:
    assert "400" in str(e) or "finite" in str(e) or "NaN" in str(e), e
c2 = Client2(url=f"http://{host}:{port}", token="t", org="o", enable_gzip=True)
w = c2.write_api(write_options=SYNCHRONOUS)
w.write(bucket="b", record=Point("boiler").tag("unit", "b3").field("temp", 90.25).time(1700000001000000000))
w.write(bucket="b", record="boiler,unit=b3 temp=91.5 1700000002000000000")
print("ok")
"#;

#[test]
fn python_influx_clients_write_through_both_endpoints() {
    let Some(py) = pyclients() else {
        eprintln!("SKIPPED: python3 with pip (and the PyPI influxdb, influxdb-client packages) unavailable");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut c = ServerConfig::new(dir.path()).unwrap();
    c.cpus = vec![0, 1];
    c.listen = "127.0.0.1:0".into();
    c.http = Some("127.0.0.1:0".into());
    c.memory_budget = 64 << 20;
    c.io_memory = 1 << 20;
    c.http_config.line.quality_field = Some("q".into());
    let h = start(c, Shutdown::new()).unwrap();
    let a = h.http_addr().unwrap();
    let out = Command::new("python3")
        .env("PYTHONPATH", &py)
        .args(["-c", SCRIPT, &a.ip().to_string(), &a.port().to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stdout {}\nstderr {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let get = |path: &str| -> serde_json::Value {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(a).unwrap();
        let head = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(head.as_bytes()).unwrap();
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(raw.len());
        let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
        let body = raw.get(split + 4..).unwrap_or_default();
        if head.contains("transfer-encoding: chunked") {
            let body = xtdb::load::hostile::dechunk(body).expect("a complete chunked body");
            return serde_json::from_slice(&body).unwrap();
        }
        serde_json::from_slice(body).unwrap()
    };
    let tags = get("/api/v1/tags?match=boiler");
    let names: Vec<&str> = tags
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tag"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "boiler,unit=b1 temp",
            "boiler,unit=b2 pressure",
            "boiler,unit=b2 temp",
            "boiler,unit=b3 temp"
        ]
    );
    let r = get("/api/v1/range?tag=boiler%2Cunit%3Db3%20temp&precision=s");
    let pts = r["points"].as_array().unwrap();
    assert_eq!(pts.len(), 2, "{r}");
    assert_eq!(pts[0]["ts"], 1_700_000_001);
    assert_eq!(pts[1]["value"], 91.5);
    let l = get("/api/v1/latest?tag=boiler%2Cunit%3Db1%20temp");
    assert_eq!(l[0]["quality"], 192);
    assert_eq!(l[0]["value"], 81.5);
    h.stop().unwrap();
}

const AUTH_SCRIPT: &str = r#"
import sys, json
from influxdb import InfluxDBClient
from influxdb.exceptions import InfluxDBClientError
from influxdb_client import InfluxDBClient as Client2, Point
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException
host, port, name, token, ro_name, ro_token = sys.argv[1:7]
port = int(port)
pt = lambda unit: [{"measurement": "boiler", "tags": {"unit": unit},
                    "time": 1700000000000000000, "fields": {"temp": 81.5}}]

# 1.x: user name + password (the token), sent as Basic auth; reads go
# through the client's own authenticated session.
c1 = InfluxDBClient(host=host, port=port, username=name, password=token, database="plant")
c1.ping()
assert c1.write_points(pt("b1"), time_precision="n"), "1.x write failed"
r = c1.request("api/v1/range", params={"tag": "boiler,unit=b1 temp", "precision": "s"}).json()
assert r["points"] == [{"ts": 1700000000, "value": 81.5, "quality": 192}], r
for user, password, status in [(name, "xtdb_wrong", 401), ("root", "root", 401),
                               (ro_name, token, 401), (ro_name, ro_token, 403)]:
    c = InfluxDBClient(host=host, port=port, username=user, password=password, database="plant")
    try:
        c.write_points(pt("refused"), time_precision="n")
        raise SystemExit(f"1.x write as {user} was accepted")
    except InfluxDBClientError as e:
        assert e.code == status, (user, e.code, e)

# 2.x: the token (Authorization: Token ...).
c2 = Client2(url=f"http://{host}:{port}", token=token, org="o", enable_gzip=True)
w = c2.write_api(write_options=SYNCHRONOUS)
w.write(bucket="b", record=Point("boiler").tag("unit", "b3").field("temp", 90.25).time(1700000001000000000))
resp = c2.api_client.call_api("/api/v1/range", "GET",
    query_params=[("tag", "boiler,unit=b3 temp"), ("precision", "s")],
    _preload_content=False, _return_http_data_only=True)  # the token is a default header
r = json.loads(resp.data)
assert r["points"][0]["value"] == 90.25, r
for t, status in [("xtdb_wrong", 401), (ro_token, 403)]:
    c = Client2(url=f"http://{host}:{port}", token=t, org="o")
    try:
        c.write_api(write_options=SYNCHRONOUS).write(bucket="b", record="refused,unit=x v=1 1700000003000000000")
        raise SystemExit("2.x write with a bad token was accepted")
    except ApiException as e:
        assert e.status == status, (e.status, e)
print("ok")
"#;

#[test]
fn python_influx_clients_write_and_read_through_auth() {
    let Some(py) = pyclients() else {
        eprintln!("SKIPPED: python3 with pip (and the PyPI influxdb, influxdb-client packages) unavailable");
        return;
    };
    use xtdb::storage::tokens::{Perms, TokenStore};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let tokens = std::thread::spawn(move || {
        glommio::LocalExecutorBuilder::default()
            .io_memory(1 << 20)
            .make()
            .unwrap()
            .run(async move {
                let mut s = TokenStore::open(&d).await.unwrap();
                let rw = s
                    .create("telegraf", Perms::READ.with(Perms::WRITE), 0)
                    .await
                    .unwrap();
                let ro = s.create("grafana", Perms::READ, 0).await.unwrap();
                s.close().await.unwrap();
                (rw, ro)
            })
    })
    .join()
    .unwrap();
    let mut c = ServerConfig::new(dir.path()).unwrap();
    c.cpus = vec![0, 1];
    c.listen = "127.0.0.1:0".into();
    c.http = Some("127.0.0.1:0".into());
    c.memory_budget = 64 << 20;
    c.io_memory = 1 << 20;
    c.auth = xtdb::server::AuthSetting::On;
    let h = start(c, Shutdown::new()).unwrap();
    let a = h.http_addr().unwrap();
    let out = Command::new("python3")
        .env("PYTHONPATH", &py)
        .args([
            "-c",
            AUTH_SCRIPT,
            &a.ip().to_string(),
            &a.port().to_string(),
        ])
        .args(["telegraf", &tokens.0, "grafana", &tokens.1])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stdout {}\nstderr {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The refused writes created no series.
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(a).unwrap();
    let head = format!(
        "GET /api/v1/tags HTTP/1.1\r\nHost: x\r\nAuthorization: Token {}\r\nConnection: close\r\n\r\n",
        tokens.1
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(
        raw.contains("boiler,unit=b1 temp") && raw.contains("boiler,unit=b3 temp"),
        "{raw}"
    );
    assert!(!raw.contains("refused"), "{raw}");
    h.stop().unwrap();
}

/// The PyPI `influxdb` module: importable as installed (`None`: no extra
/// path), or from `target/pyclients`.
fn influxdb_module() -> Option<Option<PathBuf>> {
    let system = Command::new("python3")
        .args(["-c", "import influxdb"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if system {
        return Some(None);
    }
    pyclients().map(Some)
}

const QUERY_SCRIPT: &str = r#"
import sys
from influxdb import InfluxDBClient
from influxdb.exceptions import InfluxDBClientError
host, port = sys.argv[1], int(sys.argv[2])
c = InfluxDBClient(host=host, port=port, database="plant")
c.create_database("plant")
T0 = 1700000000
assert c.write_points([
    {"measurement": "boiler", "tags": {"unit": "b1"}, "time": T0, "fields": {"temp": 80.0}},
    {"measurement": "boiler", "tags": {"unit": "b1"}, "time": T0 + 30, "fields": {"temp": 81.0}},
    {"measurement": "boiler", "tags": {"unit": "b1"}, "time": T0 + 60, "fields": {"temp": 82.0}},
    {"measurement": "boiler", "tags": {"unit": "b2"}, "time": T0, "fields": {"temp": 70.0}},
    {"measurement": "pump", "tags": {"id": "p1"}, "time": T0, "fields": {"speed": 3.0}},
], time_precision="s")
dbs = c.get_list_database()
assert dbs == [{"name": "xtdb"}], dbs
ms = c.get_list_measurements()
assert ms == [{"name": "boiler"}, {"name": "pump"}], ms
rs = c.query('SELECT mean("temp") FROM "boiler" WHERE time >= %ds AND time < %ds '
             'GROUP BY time(1m), "unit" fill(null)' % (T0, T0 + 120))
b1 = list(rs.get_points(measurement="boiler", tags={"unit": "b1"}))
assert b1 == [
    {"time": "2023-11-14T22:13:00Z", "mean": 80.5},
    {"time": "2023-11-14T22:14:00Z", "mean": 82},
    {"time": "2023-11-14T22:15:00Z", "mean": None},
], b1
rs = c.query("SELECT temp FROM boiler WHERE unit = $u", bind_params={"u": "b2"}, epoch="s")
assert list(rs.get_points()) == [{"time": T0, "temp": 70}], list(rs.get_points())
chunks = list(c.query("SELECT temp FROM boiler GROUP BY unit", chunked=True))
b1 = [p for r in chunks for p in r.get_points(tags={"unit": "b1"})]
assert len(b1) == 3 and len(chunks) == 2, [r.raw for r in chunks]
both = c.query("SHOW MEASUREMENTS; SHOW TAG KEYS FROM boiler")
assert isinstance(both, list) and len(both) == 2, both
assert list(both[1].get_points()) == [{"tagKey": "unit"}], both[1].raw
top = c.query("SELECT top(temp, unit, 1) FROM boiler")
assert [p["unit"] for p in top.get_points()] != [], top.raw
try:
    c.query("SELECT holt_winters(temp, 1, 1) FROM boiler")
    raise SystemExit("an unsupported function was accepted")
except InfluxDBClientError as e:
    assert "not supported" in str(e), e
print("ok")
"#;

#[test]
fn python_influxdb_client_queries() {
    let Some(path) = influxdb_module() else {
        eprintln!("SKIPPED: python3 with the PyPI influxdb package unavailable");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut c = ServerConfig::new(dir.path()).unwrap();
    c.cpus = vec![0, 1];
    c.listen = "127.0.0.1:0".into();
    c.http = Some("127.0.0.1:0".into());
    c.memory_budget = 64 << 20;
    c.io_memory = 1 << 20;
    let h = start(c, Shutdown::new()).unwrap();
    let a = h.http_addr().unwrap();
    let mut cmd = Command::new("python3");
    if let Some(p) = &path {
        cmd.env("PYTHONPATH", p);
    }
    let out = cmd
        .args([
            "-c",
            QUERY_SCRIPT,
            &a.ip().to_string(),
            &a.port().to_string(),
        ])
        .output()
        .unwrap();
    h.stop().unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "stdout {}\nstderr {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
