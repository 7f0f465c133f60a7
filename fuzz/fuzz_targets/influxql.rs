//! InfluxQL queries from untrusted text: the parser never panics, and what
//! it accepts prints back as InfluxQL that parses to the same statements
//! (so `Display` and the grammar agree on every accepted input).
#![no_main]

use libfuzzer_sys::fuzz_target;
use xtdb::influxql::{parse, time_range};

fuzz_target!(|data: &[u8]| {
    let Ok(q) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(stmts) = parse(q) else {
        return;
    };
    let printed: Vec<String> = stmts.iter().map(|s| s.to_string()).collect();
    let printed = printed.join(";\n");
    match parse(&printed) {
        Ok(again) => assert_eq!(stmts, again, "round trip of {q:?} via {printed:?}"),
        Err(e) => panic!("printed form of {q:?} does not parse: {printed:?}: {e}"),
    }
    for s in &stmts {
        if let xtdb::influxql::Statement::Select(sel) = s {
            if let Some(c) = &sel.condition {
                let _ = time_range(c, 1_767_225_600_000_000_000);
            }
        }
    }
});
