//! Unit and property tests of the InfluxQL front end: tree shapes, the
//! print/parse round trip on generated trees, no panics on any text, depth
//! and size bounds, and the time arithmetic.

use proptest::prelude::*;

use super::*;

fn one(q: &str) -> Statement {
    let mut v = parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
    assert_eq!(v.len(), 1, "{q}");
    v.remove(0)
}

fn select(q: &str) -> SelectStatement {
    match one(q) {
        Statement::Select(s) => *s,
        other => panic!("not a select: {other:?}"),
    }
}

fn cond(where_: &str) -> Expr {
    select(&format!("SELECT v FROM m WHERE {where_}"))
        .condition
        .expect("condition")
}

fn var(name: &str) -> Expr {
    Expr::VarRef(VarRef {
        name: name.into(),
        data_type: None,
        span: Span::default(),
    })
}

fn bin(op: BinaryOp, lhs: Expr, rhs: Expr) -> Expr {
    Expr::Binary(Box::new(Binary {
        op,
        lhs,
        rhs,
        span: Span::default(),
    }))
}

#[test]
fn grafana_default_query_shape() {
    let s = select(
        r#"SELECT mean("value") FROM "autogen"."cpu" WHERE time >= 1700000000000ms and time <= 1700003600000ms GROUP BY time(10s), "host" fill(null)"#,
    );
    assert_eq!(s.fields.len(), 1);
    let Expr::Call(c) = &s.fields[0].expr else {
        panic!("{:?}", s.fields[0].expr)
    };
    assert_eq!(
        (c.name.as_str(), c.args.clone()),
        ("mean", vec![var("value")])
    );
    let Source::Measurement(m) = &s.from[0] else {
        panic!()
    };
    assert_eq!(m.database, None);
    assert_eq!(m.retention_policy.as_deref(), Some("autogen"));
    assert_eq!(m.name, MeasurementName::Name("cpu".into()));
    assert_eq!(
        s.group_by,
        vec![
            Dimension::Time {
                interval: 10_000_000_000,
                offset: None
            },
            Dimension::Tag("host".into())
        ]
    );
    assert_eq!(s.fill, Some(Fill::Null));
    let tc = time_range(s.condition.as_ref().unwrap(), 0).unwrap();
    assert_eq!(tc.start, Some(1_700_000_000_000_000_000));
    assert_eq!(tc.end, Some(1_700_003_600_000_000_001));
    assert_eq!(tc.rest, None);
}

/// What Grafana's query builder sends for its selectors, aggregations,
/// transformations and field-value conditions parses to the trees the
/// executor expects.
#[test]
fn grafana_builder_functions_and_field_conditions() {
    let call = |q: &str| -> Call {
        match &select(q).fields[0].expr {
            Expr::Call(c) => c.clone(),
            other => panic!("{q}: {other:?}"),
        }
    };
    let c = call(r#"SELECT top("value", 3) FROM "m""#);
    assert_eq!(
        (c.name.as_str(), c.args),
        ("top", vec![var("value"), Expr::Integer(3)])
    );
    let c = call(r#"SELECT bottom("value", 'host', 2) FROM "m""#);
    assert_eq!(c.args.len(), 3);
    let c = call(r#"SELECT moving_average(mean("value"), 10) FROM "m" GROUP BY time(1m)"#);
    assert_eq!(c.name, "moving_average");
    assert!(matches!(&c.args[0], Expr::Call(m) if m.name == "mean"));
    assert_eq!(c.args[1], Expr::Integer(10));
    let c = call(r#"SELECT elapsed("value", 1s) FROM "m""#);
    assert_eq!(c.args[1], Expr::Duration(1_000_000_000));
    assert_eq!(
        call(r#"SELECT distinct("value") FROM "m""#).name,
        "distinct"
    );
    assert_eq!(
        select("SELECT DISTINCT value FROM m").fields[0].expr,
        Expr::Distinct("value".into())
    );
    assert_eq!(
        cond(r#""value" <> 0"#),
        bin(BinaryOp::Neq, var("value"), Expr::Integer(0))
    );
    assert_eq!(
        cond(r#""value" > 10 AND "host" = 'a'"#),
        Expr::And(vec![
            bin(BinaryOp::Gt, var("value"), Expr::Integer(10)),
            bin(BinaryOp::Eq, var("host"), Expr::String("a".into())),
        ])
    );
}

#[test]
fn precedence_and_flat_logic() {
    // OR binds loosest, then AND, comparisons, + -, * /.
    assert_eq!(
        cond("a = 1 OR b = 2 AND c = 3 OR d = 4"),
        Expr::Or(vec![
            bin(BinaryOp::Eq, var("a"), Expr::Integer(1)),
            Expr::And(vec![
                bin(BinaryOp::Eq, var("b"), Expr::Integer(2)),
                bin(BinaryOp::Eq, var("c"), Expr::Integer(3)),
            ]),
            bin(BinaryOp::Eq, var("d"), Expr::Integer(4)),
        ])
    );
    assert_eq!(
        cond("a + b * c - d > 1"),
        bin(
            BinaryOp::Gt,
            bin(
                BinaryOp::Sub,
                bin(
                    BinaryOp::Add,
                    var("a"),
                    bin(BinaryOp::Mul, var("b"), var("c"))
                ),
                var("d")
            ),
            Expr::Integer(1)
        )
    );
    // Unary minus: folded into literals, -1 * x otherwise.
    assert_eq!(
        cond("v > -5 AND w < -x"),
        Expr::And(vec![
            bin(BinaryOp::Gt, var("v"), Expr::Integer(-5)),
            bin(
                BinaryOp::Lt,
                var("w"),
                bin(BinaryOp::Mul, Expr::Integer(-1), var("x"))
            ),
        ])
    );
    assert_eq!(
        cond("h =~ /a\\/b/"),
        bin(
            BinaryOp::EqRegex,
            var("h"),
            Expr::Regex(Regex {
                source: "a/b".into()
            })
        )
    );
}

#[test]
fn sources_and_targets() {
    let s =
        select(r#"SELECT v INTO "db"."rp".:MEASUREMENT FROM db..m, rp./re/, (SELECT w FROM x)"#);
    assert_eq!(
        s.into,
        Some(Target {
            database: Some("db".into()),
            retention_policy: Some("rp".into()),
            measurement: None
        })
    );
    let Source::Measurement(m) = &s.from[0] else {
        panic!()
    };
    assert_eq!(
        (m.database.as_deref(), m.retention_policy.as_deref()),
        (Some("db"), None)
    );
    let Source::Measurement(m) = &s.from[1] else {
        panic!()
    };
    assert_eq!(m.retention_policy.as_deref(), Some("rp"));
    assert!(matches!(&m.name, MeasurementName::Regex(r) if r.source == "re"));
    assert!(matches!(&s.from[2], Source::Subquery(_)));
}

#[test]
fn group_by_forms_and_clauses() {
    let s = select(
        "SELECT mean(v) FROM m GROUP BY time(1h, -15m), *, /re/ fill(-1.5) ORDER BY time DESC LIMIT 3 OFFSET 1 SLIMIT 2 SOFFSET 4 tz('Europe/Paris')",
    );
    assert_eq!(
        s.group_by[0],
        Dimension::Time {
            interval: 3_600_000_000_000,
            offset: Some(TimeOffset::Duration(-900_000_000_000))
        }
    );
    assert_eq!(s.group_by[1], Dimension::Wildcard);
    assert!(matches!(&s.group_by[2], Dimension::Regex(_)));
    assert_eq!(s.fill, Some(Fill::Number(-1.5)));
    assert_eq!(s.order, Some(Order::Desc));
    assert_eq!(
        (s.limit, s.offset, s.slimit, s.soffset),
        (Some(3), Some(1), Some(2), Some(4))
    );
    assert_eq!(s.tz.as_deref(), Some("Europe/Paris"));
    let s = select("SELECT mean(v) FROM m GROUP BY time(1m, now()), time(v), host::tag");
    assert_eq!(
        s.group_by[0],
        Dimension::Time {
            interval: 60_000_000_000,
            offset: Some(TimeOffset::Now)
        }
    );
    assert!(matches!(s.group_by[1], Dimension::Other(_)));
    assert!(matches!(s.group_by[2], Dimension::Other(_)));
}

#[test]
fn show_statements() {
    assert_eq!(
        one(r#"SHOW TAG VALUES FROM "cpu" WITH KEY IN ("host", "region") WHERE a = 'b' LIMIT 5"#),
        Statement::ShowTagValues(ShowTagValues {
            database: None,
            from: vec![Measurement {
                database: None,
                retention_policy: None,
                name: MeasurementName::Name("cpu".into()),
                span: Span::default()
            }],
            key: TagKeyFilter::In(vec!["host".into(), "region".into()]),
            condition: Some(bin(BinaryOp::Eq, var("a"), Expr::String("b".into()))),
            order: None,
            limit: Some(5),
            offset: None,
        })
    );
    assert_eq!(
        one(r#"SHOW RETENTION POLICIES on "db""#),
        Statement::ShowRetentionPolicies {
            database: Some("db".into())
        }
    );
    assert!(matches!(
        one("SHOW MEASUREMENTS WITH MEASUREMENT =~ /(?i)cpu/ LIMIT 100"),
        Statement::ShowMeasurements(ShowMeasurements {
            with_measurement: Some(WithMeasurement { regex_op: true, .. }),
            limit: Some(100),
            ..
        })
    ));
    assert_eq!(
        one("CREATE DATABASE \"x y\""),
        Statement::CreateDatabase(CreateDatabase {
            name: "x y".into(),
            ..CreateDatabase::default()
        })
    );
    assert_eq!(
        parse(" ; ;SHOW DATABASES;; ").unwrap(),
        vec![Statement::ShowDatabases]
    );
    assert_eq!(parse("").unwrap(), vec![]);
}

#[test]
fn spans_point_into_the_query() {
    let q = "SELECT mean(value) FROM m WHERE host = 'a'";
    let s = select(q);
    let Expr::Call(c) = &s.fields[0].expr else {
        panic!()
    };
    assert_eq!(&q[c.span.start..c.span.end], "mean(value)");
    let Some(Expr::Binary(b)) = &s.condition else {
        panic!()
    };
    assert_eq!(&q[b.span.start..b.span.end], "host = 'a'");
}

#[test]
fn error_positions_count_lines_and_characters() {
    let e = parse("SELECT v\r\nFROM m\nWHERE é = = 1").unwrap_err();
    assert_eq!((e.line, e.column), (3, 7), "{e}");
    assert_eq!(
        e.message,
        "found é, expected identifier, string, number, bool"
    );
    let e = parse("SELECT 'é' FROM m m2").unwrap_err();
    assert_eq!(e.column, 19);
    assert_eq!(e.pos, 19);
}

// ------------------------------------------------------------ bounds

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    for depth in [MAX_DEPTH + 1, 10_000, 200_000] {
        let q = format!(
            "SELECT v FROM m WHERE {}a = 1{}",
            "(".repeat(depth),
            ")".repeat(depth)
        );
        let e = parse(&q).unwrap_err();
        assert!(e.message.contains("too deeply"), "{e}");
        let q = format!(
            "SELECT {}v{} FROM m",
            "mean(".repeat(depth),
            ")".repeat(depth)
        );
        assert!(parse(&q).unwrap_err().message.contains("too deeply"));
        let q = format!(
            "SELECT v FROM {}m{}",
            "(SELECT v FROM ".repeat(depth),
            ")".repeat(depth)
        );
        assert!(parse(&q).unwrap_err().message.contains("too deeply"));
        let q = format!("SELECT {} FROM m", vec!["1"; depth].join(" + "));
        assert!(parse(&q).unwrap_err().message.contains("too deeply"));
    }
}

/// The deepest accepted trees can be parsed, cloned, compared, printed,
/// split and dropped recursively on a 1 MiB stack in a debug build
/// (measured: they need more than 512 KiB in debug, at most 256 KiB in
/// release).
#[test]
fn accepted_trees_are_safe_to_walk_on_a_small_stack() {
    let d = MAX_DEPTH - 1;
    let queries = [
        format!(
            "SELECT v FROM m WHERE {}a = 1{}",
            "(".repeat(d - 2),
            ")".repeat(d - 2)
        ),
        format!(
            "SELECT {}v{} FROM m",
            "mean(".repeat(d - 1),
            ")".repeat(d - 1)
        ),
        format!("SELECT v FROM m WHERE a = {}", vec!["1"; d - 2].join(" - ")),
        format!(
            "SELECT v FROM {}m{}",
            "(SELECT v FROM ".repeat(d),
            ")".repeat(d)
        ),
    ];
    for q in queries {
        std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || {
                let ast = parse(&q).unwrap_or_else(|e| panic!("{e}"));
                let copy = ast.clone();
                assert_eq!(ast, copy);
                let text = ast[0].to_string();
                assert_eq!(parse(&text).unwrap(), ast);
                if let Statement::Select(s) = &ast[0] {
                    if let Some(c) = &s.condition {
                        let _ = time_range(c, 0);
                    }
                }
                let _ = format!("{ast:?}");
                drop(ast);
            })
            .unwrap()
            .join()
            .unwrap();
    }
}

#[test]
fn long_or_chains_parse_in_linear_time() {
    let terms: Vec<String> = (0..10_000).map(|n| format!("\"host\" = 'h{n}'")).collect();
    let q = format!(
        "SELECT v FROM m WHERE ({}) AND time > now() - 1h",
        terms.join(" OR ")
    );
    assert!(q.len() > 100_000);
    let t = std::time::Instant::now();
    let s = select(&q);
    let took = t.elapsed();
    println!("{} bytes, 10,000 OR terms: parsed in {took:?}", q.len());
    assert!(took.as_millis() < 1000, "{} bytes took {took:?}", q.len());
    let tc = time_range(s.condition.as_ref().unwrap(), 1 << 60).unwrap();
    let Some(Expr::Paren(or)) = &tc.rest else {
        panic!("{:?}", tc.rest)
    };
    assert!(matches!(&**or, Expr::Or(v) if v.len() == 10_000));
    // Printing and reparsing a 100 KB query is linear too.
    let text = Statement::Select(Box::new(s)).to_string();
    assert_eq!(parse(&text).unwrap().len(), 1);
    // Many statements, long AND chains, long field lists.
    let q = vec!["SHOW DATABASES"; 10_000].join(";");
    assert_eq!(parse(&q).unwrap().len(), 10_000);
    let q = format!(
        "SELECT v FROM m WHERE {}",
        vec!["a = 1"; 20_000].join(" AND ")
    );
    assert!(parse(&q).is_ok());
    let q = format!("SELECT {} FROM m", vec!["v"; 20_000].join(", "));
    assert!(parse(&q).is_ok());
}

// ------------------------------------------------------------ time

/// `(start, end, rest as text)`.
type Range = (Option<i64>, Option<i64>, Option<String>);

fn range(where_: &str) -> Result<Range, String> {
    const NOW: i64 = 1_000_000_000_000;
    time_range(&cond(where_), NOW)
        .map(|t| (t.start, t.end, t.rest.map(|r| r.to_string())))
        .map_err(|e| e.message)
}

#[test]
fn time_ranges() {
    const S: i64 = 1_000_000_000;
    const NOW: i64 = 1_000_000_000_000;
    assert_eq!(
        range("time >= 1s AND time <= 3s"),
        Ok((Some(S), Some(3 * S + 1), None))
    );
    assert_eq!(
        range("time > 1s AND time < 3s"),
        Ok((Some(S + 1), Some(3 * S), None))
    );
    assert_eq!(range("time = 2s"), Ok((Some(2 * S), Some(2 * S + 1), None)));
    assert_eq!(range("3s >= time"), Ok((None, Some(3 * S + 1), None)));
    assert_eq!(
        range("time > now() - 1h"),
        Ok((Some(NOW - 3600 * S + 1), None, None))
    );
    assert_eq!(
        range("time >= now() - 15m + 3s"),
        Ok((Some(NOW - 900 * S + 3 * S), None, None))
    );
    assert_eq!(
        range("time >= '1970-01-01T00:00:02Z' + 1s AND time < '1970-01-01 00:00:04'"),
        Ok((Some(3 * S), Some(4 * S), None))
    );
    assert_eq!(
        range("time >= 2000000000 + 1s"),
        Ok((Some(3 * S), None, None))
    );
    assert_eq!(range("time > 2.5"), Ok((Some(3), None, None)));
    assert_eq!(
        range("(time > 1s AND host = 'a') AND time < 4s AND (b = 1 OR c = 2)"),
        Ok((
            Some(S + 1),
            Some(4 * S),
            Some("(host = 'a') AND (b = 1 OR c = 2)".into())
        ))
    );
    assert_eq!(range("time <= 9223372036854775807"), Ok((None, None, None)));
    let empty = time_range(&cond("time > 5s AND time < 2s"), 0).unwrap();
    assert!(empty.is_empty());
    assert!(time_range(&cond("time > 9223372036854775807"), 0)
        .unwrap()
        .is_empty());
    // InfluxDB's errors.
    assert_eq!(
        range("time != 2s").unwrap_err(),
        "invalid time comparison operator: !="
    );
    assert_eq!(
        range("time =~ /x/").unwrap_err(),
        "invalid operation: time and *influxql.RegexLiteral are not compatible"
    );
    assert_eq!(
        range("time >= v").unwrap_err(),
        "invalid operation: time and *influxql.VarRef are not compatible"
    );
    assert_eq!(
        range("time >= 'abc'").unwrap_err(),
        "invalid operation: time and *influxql.StringLiteral are not compatible"
    );
    assert_eq!(
        range("time >= '1970-01-01Tjunk'").unwrap_err(),
        "invalid timestamp string"
    );
    assert_eq!(
        range("host").unwrap_err(),
        "invalid condition expression: host"
    );
    // The deliberate difference: OR over time is refused.
    assert_eq!(
        range("host = 'a' OR time >= 3s").unwrap_err(),
        "cannot use OR with time conditions"
    );
    assert_eq!(
        range("(time = 1s OR time = 3s)").unwrap_err(),
        "cannot use OR with time conditions"
    );
    assert_eq!(
        range("a = 1 OR b = 2"),
        Ok((None, None, Some("a = 1 OR b = 2".into())))
    );
}

#[test]
fn time_literals() {
    assert_eq!(parse_time("1970-01-01"), Some(0));
    assert_eq!(parse_time("1970-01-02 00:00:00"), Some(86_400_000_000_000));
    assert_eq!(parse_time("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
    assert_eq!(parse_time("1970-01-01T02:00:00+02:00"), Some(0));
    assert_eq!(
        parse_time("2026-01-01T00:00:00Z"),
        Some(1_767_225_600_000_000_000)
    );
    assert_eq!(
        parse_time("2026-01-01 00:00:00.000000001"),
        Some(1_767_225_600_000_000_001)
    );
    assert_eq!(parse_time("2024-02-29"), Some(1_709_164_800_000_000_000));
    for bad in [
        "2023-02-29",
        "2026-13-01",
        "2026-01-01T00:00:00",
        "2026-01-01 00:00:00Z",
        "2026-01-01T24:00:00Z",
        "2026-01-01T00:00:00.Z",
        "2026-01-01T00:00:00+0200",
        "3000-01-01",
        "26-01-01",
    ] {
        assert_eq!(parse_time(bad), None, "{bad}");
    }
}

#[test]
fn durations() {
    assert_eq!(parse_duration("1h30m"), Ok(5_400_000_000_000));
    assert_eq!(parse_duration("10µs"), Err("invalid duration".into()));
    assert_eq!(parse_duration("10µ"), Ok(10_000));
    assert_eq!(parse_duration("10u"), Ok(10_000));
    assert_eq!(parse_duration("1ns"), Ok(1));
    assert_eq!(parse_duration("2w"), Ok(2 * 7 * 86_400_000_000_000));
    assert_eq!(parse_duration("-5m"), Ok(-300_000_000_000));
    for bad in ["1", "h", "1x", "1n", "1h30", "1e10", ""] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
    assert!(parse_duration("99999999999h")
        .unwrap_err()
        .contains("overflowed"));
    assert_eq!(format_duration(5_400_000_000_000), "90m");
    assert_eq!(format_duration(7 * 86_400_000_000_000), "1w");
    assert_eq!(format_duration(1_500), "1500ns");
    assert_eq!(format_duration(0), "0s");
}

/// `time_range` of an `AND` of random bounds equals brute force over every
/// candidate timestamp.
#[test]
fn time_range_matches_brute_force() {
    let ops = ["<", "<=", ">", ">=", "="];
    let mut runner = proptest::test_runner::TestRunner::default();
    runner
        .run(
            &proptest::collection::vec((0..5usize, 0i64..20, any::<bool>()), 1..5),
            |terms| {
                let text: Vec<String> = terms
                    .iter()
                    .map(|&(op, v, flip)| {
                        if flip {
                            let op = match ops[op] {
                                "<" => ">",
                                "<=" => ">=",
                                ">" => "<",
                                ">=" => "<=",
                                o => o,
                            };
                            format!("{v} {op} time")
                        } else {
                            format!("time {} {v}", ops[op])
                        }
                    })
                    .collect();
                let c = cond(&text.join(" AND "));
                let tc = time_range(&c, 0).unwrap();
                for t in -2i64..25 {
                    let want = terms.iter().all(|&(op, v, _)| match ops[op] {
                        "<" => t < v,
                        "<=" => t <= v,
                        ">" => t > v,
                        ">=" => t >= v,
                        _ => t == v,
                    });
                    let got = tc.start.is_none_or(|s| t >= s) && tc.end.is_none_or(|e| t < e);
                    prop_assert_eq!(want, got, "t={} {:?} {:?}", t, text, tc);
                }
                Ok(())
            },
        )
        .unwrap();
}

// ------------------------------------------------------------ properties

fn ident() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_][a-z0-9_]{0,6}",
        Just("select".to_string()),
        Just("time".to_string()),
        Just("".to_string()),
        "[a-zA-Z0-9 ._\"'\\\\\\n/é-]{0,6}",
    ]
}

fn tag_name() -> impl Strategy<Value = String> {
    ident().prop_filter("time is not a tag", |s| !s.eq_ignore_ascii_case("time"))
}

fn regex() -> impl Strategy<Value = Regex> {
    "[a-z.*()/\\\\^$| ]{0,6}"
        .prop_filter("a regex never ends in a backslash", |s| !s.ends_with('\\'))
        .prop_map(|source| Regex { source })
}

fn leaf() -> impl Strategy<Value = Expr> {
    let data_type = prop_oneof![
        Just(None),
        Just(Some(DataType::Float)),
        Just(Some(DataType::Integer)),
        Just(Some(DataType::Unsigned)),
        Just(Some(DataType::String)),
        Just(Some(DataType::Boolean)),
        Just(Some(DataType::Field)),
        Just(Some(DataType::Tag)),
    ];
    prop_oneof![
        4 => (ident(), data_type).prop_map(|(name, data_type)| Expr::VarRef(VarRef {
            name,
            data_type,
            span: Span::default()
        })),
        2 => any::<i64>().prop_map(Expr::Integer),
        1 => ((i64::MAX as u64 + 1)..=u64::MAX).prop_map(Expr::Unsigned),
        2 => any::<f64>().prop_filter("finite", |x| x.is_finite()).prop_map(Expr::Number),
        2 => "[a-z '\\\\\\n\"é]{0,6}".prop_map(Expr::String),
        1 => any::<bool>().prop_map(Expr::Bool),
        2 => (-i64::MAX..=i64::MAX).prop_map(Expr::Duration),
        1 => prop_oneof![
            Just(None),
            Just(Some(WildcardType::Field)),
            Just(Some(WildcardType::Tag))
        ]
        .prop_map(Expr::Wildcard),
        1 => ident().prop_filter("non-empty", |s| !s.is_empty()).prop_map(Expr::BoundParam),
        1 => ident().prop_map(Expr::Distinct),
    ]
}

/// Binding strength of a tree as the parser sees it (leaves bind tightest).
fn prec(e: &Expr) -> u8 {
    match e {
        Expr::Or(_) => 1,
        Expr::And(_) => 2,
        Expr::Binary(b) => b.op.precedence(),
        _ => 9,
    }
}

fn paren_if(e: Expr, wrap: bool) -> Expr {
    if wrap {
        Expr::Paren(Box::new(e))
    } else {
        e
    }
}

/// Trees shaped as the parser builds them; `logic` allows comparisons,
/// regex matches, AND and OR (a WHERE clause) besides arithmetic.
fn expr(logic: bool) -> impl Strategy<Value = Expr> {
    let arith = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Mod,
        BinaryOp::BitAnd,
        BinaryOp::BitOr,
        BinaryOp::BitXor,
    ];
    let cmp = [
        BinaryOp::Eq,
        BinaryOp::Neq,
        BinaryOp::Lt,
        BinaryOp::Lte,
        BinaryOp::Gt,
        BinaryOp::Gte,
    ];
    leaf().prop_recursive(4, 24, 3, move |inner| {
        let binop = if logic {
            proptest::sample::select([&arith[..], &cmp[..]].concat())
        } else {
            proptest::sample::select(arith.to_vec())
        };
        let mut cases: Vec<BoxedStrategy<Expr>> = vec![
            (binop, inner.clone(), inner.clone())
                .prop_map(|(op, l, r)| {
                    let p = op.precedence();
                    let (wl, wr) = (prec(&l) < p, prec(&r) <= p);
                    bin(op, paren_if(l, wl), paren_if(r, wr))
                })
                .boxed(),
            inner.clone().prop_map(|e| Expr::Paren(Box::new(e))).boxed(),
            (
                "[a-z_]{1,8}",
                proptest::collection::vec(inner.clone(), 0..3),
            )
                .prop_map(|(name, args)| {
                    Expr::Call(Call {
                        name,
                        args,
                        span: Span::default(),
                    })
                })
                .boxed(),
            (inner.clone(), regex())
                .prop_map(|(e, r)| {
                    Expr::Call(Call {
                        name: "f".into(),
                        args: vec![e, Expr::Regex(r)],
                        span: Span::default(),
                    })
                })
                .boxed(),
        ];
        if logic {
            cases.push(
                (inner.clone(), regex(), any::<bool>())
                    .prop_map(|(l, r, neg)| {
                        let op = if neg {
                            BinaryOp::NeqRegex
                        } else {
                            BinaryOp::EqRegex
                        };
                        let w = prec(&l) < op.precedence();
                        bin(op, paren_if(l, w), Expr::Regex(r))
                    })
                    .boxed(),
            );
            cases.push(
                (
                    proptest::collection::vec(inner.clone(), 2..4),
                    any::<bool>(),
                )
                    .prop_map(|(v, and)| {
                        let lim = if and { 2 } else { 1 };
                        let v: Vec<Expr> = v
                            .into_iter()
                            .map(|e| {
                                let w = prec(&e) <= lim;
                                paren_if(e, w)
                            })
                            .collect();
                        if and {
                            Expr::And(v)
                        } else {
                            Expr::Or(v)
                        }
                    })
                    .boxed(),
            );
        }
        proptest::strategy::Union::new(cases)
    })
}

fn measurement() -> impl Strategy<Value = Measurement> {
    (
        proptest::option::of(ident().prop_filter("set", |s| !s.is_empty())),
        proptest::option::of(ident().prop_filter("set", |s| !s.is_empty())),
        prop_oneof![
            ident().prop_map(MeasurementName::Name),
            regex().prop_map(MeasurementName::Regex)
        ],
    )
        .prop_map(|(database, retention_policy, name)| Measurement {
            database,
            retention_policy,
            name,
            span: Span::default(),
        })
}

fn dimension() -> impl Strategy<Value = Dimension> {
    prop_oneof![
        (
            any::<i32>(),
            proptest::option::of(prop_oneof![
                any::<i32>().prop_map(|d| TimeOffset::Duration(d as i64 * 1000)),
                Just(TimeOffset::Now)
            ])
        )
            .prop_map(|(i, offset)| Dimension::Time {
                interval: i as i64 * 1_000_000,
                offset
            }),
        tag_name().prop_map(Dimension::Tag),
        Just(Dimension::Wildcard),
        regex().prop_map(Dimension::Regex),
    ]
}

fn limit() -> impl Strategy<Value = Option<u64>> {
    proptest::option::of(0..=i64::MAX as u64)
}

fn select_stmt() -> impl Strategy<Value = SelectStatement> {
    let field = (
        prop_oneof![4 => expr(false), 1 => regex().prop_map(Expr::Regex)],
        proptest::option::of(ident()),
    )
        .prop_map(|(expr, alias)| Field {
            expr,
            alias,
            span: Span::default(),
        });
    let target = (
        proptest::option::of(ident().prop_filter("set", |s| !s.is_empty())),
        proptest::option::of(ident().prop_filter("set", |s| !s.is_empty())),
        proptest::option::of(ident().prop_filter("set", |s| !s.is_empty())),
    )
        .prop_map(|(database, retention_policy, measurement)| Target {
            database,
            retention_policy,
            measurement,
        });
    let fill = prop_oneof![
        Just(Fill::Null),
        Just(Fill::None),
        Just(Fill::Previous),
        Just(Fill::Linear),
        any::<i64>().prop_map(Fill::Integer),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(Fill::Number),
    ];
    (
        proptest::collection::vec(field, 1..4),
        proptest::option::of(target),
        proptest::collection::vec(measurement().prop_map(Source::Measurement), 1..3),
        proptest::option::of(expr(true)),
        proptest::collection::vec(dimension(), 0..3),
        proptest::option::of(fill),
        proptest::option::of(prop_oneof![Just(Order::Asc), Just(Order::Desc)]),
        (limit(), limit(), limit(), limit()),
        proptest::option::of(
            prop_oneof![Just("UTC"), Just("Europe/Paris"), Just("America/St_Johns")]
                .prop_map(String::from),
        ),
    )
        .prop_map(
            |(fields, into, from, condition, group_by, fill, order, l, tz)| SelectStatement {
                fields,
                into,
                from,
                condition,
                group_by,
                fill,
                order,
                limit: l.0,
                offset: l.1,
                slimit: l.2,
                soffset: l.3,
                tz,
            },
        )
}

fn statement() -> impl Strategy<Value = Statement> {
    let key = prop_oneof![
        ident().prop_map(TagKeyFilter::Eq),
        ident().prop_map(TagKeyFilter::Neq),
        proptest::collection::vec(ident(), 1..3).prop_map(TagKeyFilter::In),
        regex().prop_map(TagKeyFilter::Regex),
        regex().prop_map(TagKeyFilter::NotRegex),
    ];
    let meas = || proptest::collection::vec(measurement(), 0..3);
    let unqualified = measurement().prop_map(|mut m| {
        m.database = None;
        m.retention_policy = None;
        m
    });
    let order = || proptest::option::of(prop_oneof![Just(Order::Asc), Just(Order::Desc)]);
    prop_oneof![
        4 => select_stmt().prop_map(|s| Statement::Select(Box::new(s))),
        1 => (select_stmt(), select_stmt()).prop_map(|(mut outer, inner)| {
            outer.from.push(Source::Subquery(Box::new(inner)));
            Statement::Select(Box::new(outer))
        }),
        1 => (proptest::option::of(ident()), meas(), key.clone(),
              proptest::option::of(expr(true)), order(), limit(), limit())
            .prop_map(|(database, from, key, condition, order, limit, offset)| {
                Statement::ShowTagValues(ShowTagValues {
                    database, from, key, condition, order, limit, offset,
                })
            }),
        1 => (proptest::option::of(ident()),
              proptest::option::of((any::<bool>(), measurement())),
              proptest::option::of(expr(true)), order(), limit(), limit())
            .prop_map(|(database, w, condition, order, limit, offset)| {
                Statement::ShowMeasurements(ShowMeasurements {
                    database,
                    with_measurement: w.map(|(regex_op, source)| WithMeasurement { regex_op, source }),
                    condition, order, limit, offset,
                })
            }),
        1 => (proptest::option::of(ident()), meas(), proptest::option::of(expr(true)),
              order(), limit(), limit(), limit(), limit())
            .prop_map(|(database, from, condition, order, limit, offset, slimit, soffset)| {
                Statement::ShowTagKeys(ShowTagKeys {
                    database, from, condition, order, limit, offset, slimit, soffset,
                })
            }),
        1 => (proptest::option::of(ident()), meas(), order(), limit(), limit())
            .prop_map(|(database, from, order, limit, offset)| {
                Statement::ShowFieldKeys(ShowFieldKeys { database, from, order, limit, offset })
            }),
        1 => (proptest::option::of(ident()), meas(), proptest::option::of(expr(true)),
              order(), limit(), limit())
            .prop_map(|(database, from, condition, order, limit, offset)| {
                Statement::ShowSeries(ShowSeries { database, from, condition, order, limit, offset })
            }),
        1 => (prop_oneof![
                Just(CardinalityOf::Series),
                Just(CardinalityOf::Measurement),
                Just(CardinalityOf::TagKey),
                Just(CardinalityOf::FieldKey),
                key.prop_map(CardinalityOf::TagValues)
              ],
              any::<bool>(), proptest::option::of(ident()), meas(),
              proptest::option::of(expr(true)),
              proptest::collection::vec(dimension(), 0..2), limit(), limit())
            .prop_map(|(of, exact, database, from, condition, group_by, limit, offset)| {
                Statement::ShowCardinality(ShowCardinality {
                    of, exact, database, from, condition, group_by, limit, offset,
                })
            }),
        1 => proptest::option::of(ident())
            .prop_map(|database| Statement::ShowRetentionPolicies { database }),
        1 => (ident(), proptest::option::of(0..i64::MAX), proptest::option::of(1..=i32::MAX as u32),
              proptest::option::of(0..i64::MAX), proptest::option::of(ident()))
            .prop_map(|(name, duration, replication, shard_duration, rp_name)| {
                let with = duration.is_some() || replication.is_some()
                    || shard_duration.is_some() || rp_name.is_some();
                Statement::CreateDatabase(CreateDatabase {
                    name, with, duration, replication, shard_duration, rp_name,
                })
            }),
        1 => (proptest::collection::vec(unqualified, 0..3), proptest::option::of(expr(true)), any::<bool>())
            .prop_filter("FROM or WHERE", |(f, c, _)| !f.is_empty() || c.is_some())
            .prop_map(|(from, condition, delete)| {
                let f = SeriesFilter { from, condition };
                if delete { Statement::Delete(f) } else { Statement::DropSeries(f) }
            }),
        1 => (ident(), ident(), 0..i64::MAX, 1..=i32::MAX as u32,
              proptest::option::of(0..i64::MAX), any::<bool>())
            .prop_map(|(name, database, duration, replication, shard_duration, default)| {
                Statement::CreateRetentionPolicy(CreateRetentionPolicy {
                    name, database, duration, replication, shard_duration, default,
                })
            }),
    ]
}

proptest! {
    #![proptest_config(crate::proptest_config::config(2000))]

    /// The main guard: any tree the parser can produce prints as InfluxQL
    /// that parses back to the same tree.
    #[test]
    fn display_round_trips(stmts in proptest::collection::vec(statement(), 1..3)) {
        let text: Vec<String> = stmts.iter().map(|s| s.to_string()).collect();
        let text = text.join(";\n");
        let back = parse(&text).map_err(|e| TestCaseError::fail(format!("{text}\n{e}")))?;
        prop_assert_eq!(&back, &stmts, "{}", text);
    }

    #[test]
    fn any_text_never_panics(q in "\\PC{0,80}") {
        let _ = parse(&q);
    }

    #[test]
    fn grammar_soup_never_panics_and_round_trips(parts in proptest::collection::vec(
        proptest::sample::select(vec![
            "SELECT", "FROM", "WHERE", "GROUP", "BY", "time", "(", ")", ",", "m", "\"m\"",
            ".", "..", "::", "field", "*", "/re/", "/", "=", "=~", "AND", "OR", "-", "+",
            "1", "1.5", "1h", "'s'", "now()", "fill", "null", "LIMIT", "OFFSET", "ORDER",
            "DESC", "SHOW", "TAG", "VALUES", "WITH", "KEY", "IN", ";", " ", "tz", "INTO",
            ":MEASUREMENT", "$p", "DISTINCT", "mean", "--", "/*", "*/", "'", "\"", "\\",
        ]), 0..30)) {
        let q: String = parts.join(" ");
        if let Ok(stmts) = parse(&q) {
            let text: Vec<String> = stmts.iter().map(|s| s.to_string()).collect();
            let back = parse(&text.join(";"));
            prop_assert_eq!(back.as_ref().ok(), Some(&stmts), "{} => {:?}", q, text);
            for s in &stmts {
                if let Statement::Select(s) = s {
                    if let Some(c) = &s.condition {
                        let _ = time_range(c, 0);
                    }
                }
            }
        }
    }

    #[test]
    fn durations_round_trip(ns in -i64::MAX..=i64::MAX) {
        let text = format_duration(ns);
        let back = match text.strip_prefix('-') {
            Some(t) => parse_duration(t).map(|d| -d),
            None => parse_duration(&text),
        };
        prop_assert_eq!(back, Ok(ns), "{}", text);
    }
}
