//! Unit tests of the InfluxQL front end.

use super::*;

fn one(q: &str) -> Statement {
    let mut v = parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
    assert_eq!(v.len(), 1, "{q}");
    v.remove(0)
}

#[test]
fn smoke() {
    let s = one(
        r#"SELECT mean("value") FROM "m" WHERE time >= 1700000000000ms and time <= 1700003600000ms GROUP BY time(10s) fill(null)"#,
    );
    println!("{s}");
}
