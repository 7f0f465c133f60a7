//! `SELECT`: planning (which series, which groups, which windows, which
//! columns: raw fields, aggregates, selectors such as `top`, transforms,
//! arithmetic; the condition on field values; `tz()`) and the shaping of
//! rows, reading through [`super::fetch`] and the aggregation kernels.
//! Every failure is a message for the statement's `error`; nothing here
//! panics on a query.

use std::collections::BTreeMap;

use super::exec::{
    name_sel, need_db, over, paged, query, select_condition, series, Ctx, SeriesOut, Val, R,
};
use super::fetch::{
    fetch_point_sets, fetch_points, fetch_windows, Budget, PartialCache, PointFilter, PointsFn,
};
use crate::aggregate::{
    self, cumulative_sum, derivative, difference, elapsed, moving_average, Func, IntegralMode,
    Interp, Slot, WindowSpec,
};
use crate::influxql::{
    BinaryOp, Call, Dimension, Expr, Field, Fill, Order, SelectStatement, Source, TimeOffset,
    MIN_TIME,
};
use crate::storage::catalog::index::{CatalogAnswer, CatalogQuery, NameSel, SeriesInfo, TagFilter};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Tf {
    Derivative {
        non_negative: bool,
    },
    Difference {
        non_negative: bool,
    },
    CumulativeSum,
    /// The window in rows (> 1).
    MovingAverage(u64),
    /// The unit, ns (InfluxDB's default 1 ns).
    Elapsed(i64),
}

#[derive(Clone, Debug, PartialEq)]
enum Leaf {
    /// A raw field (or tag, in raw queries).
    Field(String),
    /// An aggregate of a field.
    Agg {
        func: Func,
        field: String,
        selector: bool,
    },
    /// `top`, `bottom`, `distinct` or `mode` of a field (over its points);
    /// `tags`: those of `top(f, tag, n)`.
    Points {
        f: PointsFn,
        field: String,
        tags: Vec<String>,
    },
    /// A transform of a raw field or an aggregate.
    Transform {
        tf: Tf,
        /// Unit, µs (`None`: the GROUP BY interval, else 1 s).
        unit: Option<i64>,
        inner: Box<Leaf>,
    },
}

impl Leaf {
    fn base(&self) -> &Leaf {
        match self {
            Leaf::Transform { inner, .. } => inner.base(),
            l => l,
        }
    }
    fn field(&self) -> &str {
        match self.base() {
            Leaf::Field(f) | Leaf::Agg { field: f, .. } | Leaf::Points { field: f, .. } => f,
            Leaf::Transform { .. } => "",
        }
    }
}

#[derive(Clone, Debug)]
enum CExpr {
    Leaf(usize),
    Num(f64),
    Bin(BinaryOp, Box<CExpr>, Box<CExpr>),
}

struct Column {
    name: String,
    expr: CExpr,
}

fn ns_to_us(ns: i64, what: &str) -> R<i64> {
    if ns % 1000 != 0 {
        return Err(format!(
            "{what} must be a whole number of microseconds (xtdb stores µs), got {ns}ns"
        ));
    }
    Ok(ns / 1000)
}

fn field_arg(c: &Call) -> R<String> {
    match c.args.first() {
        Some(Expr::VarRef(v)) => Ok(v.name.clone()),
        Some(Expr::Wildcard(_)) | Some(Expr::Regex(_)) => Err(format!(
            "{}() of a wildcard or regex is not supported by xtdb: name the field",
            c.name
        )),
        _ => Err(format!("expected field argument in {}()", c.name)),
    }
}

fn nargs(c: &Call, lo: usize, hi: usize) -> R<()> {
    let n = c.args.len();
    if n < lo || n > hi {
        return Err(if lo == hi {
            format!(
                "invalid number of arguments for {}, expected {lo}, got {n}",
                c.name
            )
        } else {
            format!(
                "invalid number of arguments for {}, expected at least {lo} but no more than {hi}, got {n}",
                c.name
            )
        });
    }
    Ok(())
}

fn call_leaf(c: &Call, grouped: bool) -> R<Leaf> {
    let agg = |func: Func, selector: bool| -> R<Leaf> {
        Ok(Leaf::Agg {
            func,
            field: field_arg(c)?,
            selector,
        })
    };
    match c.name.as_str() {
        "mean" | "count" | "sum" | "spread" | "stddev" | "median" | "min" | "max" | "first"
        | "last" => {
            nargs(c, 1, 1)?;
            // Selectors answer with the chosen point's time.
            let sel = matches!(c.name.as_str(), "min" | "max" | "first" | "last");
            let Some(f) = Func::plain(&c.name) else {
                return Err(format!("unknown function {}()", c.name));
            };
            // count(distinct(f)): how many distinct values per window.
            let inner_distinct = match c.args.first() {
                Some(Expr::Distinct(f)) => Some(f.clone()),
                Some(Expr::Call(d)) if d.name == "distinct" => {
                    nargs(d, 1, 1)?;
                    Some(field_arg(d)?)
                }
                _ => None,
            };
            if let (Some(field), "count") = (&inner_distinct, c.name.as_str()) {
                return Ok(Leaf::Points {
                    f: PointsFn::CountDistinct,
                    field: field.clone(),
                    tags: Vec::new(),
                });
            }
            if let Some(Expr::Distinct(_)) | Some(Expr::Call(_)) = c.args.first() {
                return Err(format!(
                    "{}() of a function is not supported by xtdb",
                    c.name
                ));
            }
            agg(f, sel)
        }
        "percentile" => {
            nargs(c, 2, 2)?;
            let p = match c.args[1] {
                Expr::Integer(i) => i as f64,
                Expr::Number(f) => f,
                _ => {
                    return Err(format!(
                        "expected float argument in percentile(), got {}",
                        c.args[1]
                    ))
                }
            };
            agg(Func::Percentile(p), true)
        }
        "integral" => {
            nargs(c, 1, 2)?;
            let unit = match c.args.get(1) {
                None => 1_000_000,
                Some(Expr::Duration(d)) if *d > 0 => ns_to_us(*d, "the integral unit")?.max(1),
                Some(o) => return Err(format!("second argument must be a duration, got {o}")),
            };
            let mode = if grouped {
                IntegralMode::InfluxQl
            } else {
                IntegralMode::Inside
            };
            agg(Func::Integral { unit, mode }, false)
        }
        "time_weighted_mean" => {
            nargs(c, 1, 2)?;
            let interp = match c.args.get(1) {
                None => Interp::Step,
                Some(Expr::String(s)) if s == "step" => Interp::Step,
                Some(Expr::String(s)) if s == "linear" => Interp::Linear,
                Some(o) => {
                    return Err(format!(
                        "time_weighted_mean(): the second argument is 'step' or 'linear', got {o}"
                    ))
                }
            };
            agg(Func::TimeWeighted(interp), false)
        }
        "derivative" | "non_negative_derivative" | "difference" | "non_negative_difference" => {
            let deriv = c.name.ends_with("derivative");
            let non_negative = c.name.starts_with("non_negative");
            if deriv {
                nargs(c, 1, 2)?;
            } else {
                nargs(c, 1, 1)?;
            }
            let inner = transform_inner(c, grouped)?;
            let unit = match c.args.get(1) {
                None => None,
                Some(Expr::Duration(d)) if *d > 0 => {
                    Some(ns_to_us(*d, "the derivative unit")?.max(1))
                }
                Some(o) => {
                    return Err(format!(
                        "second argument to {} must be a duration, got {o}",
                        c.name
                    ))
                }
            };
            let tf = if deriv {
                Tf::Derivative { non_negative }
            } else {
                Tf::Difference { non_negative }
            };
            Ok(Leaf::Transform {
                tf,
                unit,
                inner: Box::new(inner),
            })
        }
        "top" | "bottom" => {
            if c.args.len() < 2 {
                return Err(format!(
                    "invalid number of arguments for {}, expected at least 2, got {}",
                    c.name,
                    c.args.len()
                ));
            }
            let n = match c.args.last() {
                Some(Expr::Integer(n)) if *n > 0 => *n as u64,
                Some(Expr::Integer(n)) => {
                    return Err(format!(
                        "limit ({n}) in {} function must be at least 1",
                        c.name
                    ))
                }
                Some(Expr::Number(x)) => {
                    return Err(format!(
                        "expected integer as last argument in {}(), found {x:.3}",
                        c.name
                    ))
                }
                Some(o) => {
                    return Err(format!(
                        "expected integer as last argument in {}(), found {o}",
                        c.name
                    ))
                }
                None => return Err(format!("expected field argument in {}()", c.name)),
            };
            let Some(Expr::VarRef(v)) = c.args.first() else {
                return Err(format!(
                    "expected first argument to be a field in {}(), found {}",
                    c.name, c.args[0]
                ));
            };
            // top(f, tag..., n): the best point of each tag value, then the
            // n best of those, with the tags as columns.
            let mut tags = Vec::new();
            for a in &c.args[1..c.args.len() - 1] {
                match a {
                    Expr::VarRef(t) => tags.push(t.name.clone()),
                    o => {
                        return Err(format!(
                            "only fields or tags are allowed in {}(), found {o}",
                            c.name
                        ))
                    }
                }
            }
            let f = if c.name == "top" {
                PointsFn::Top(n)
            } else {
                PointsFn::Bottom(n)
            };
            Ok(Leaf::Points {
                f,
                field: v.name.clone(),
                tags,
            })
        }
        "distinct" | "mode" => {
            nargs(c, 1, 1)?;
            let f = if c.name == "mode" {
                PointsFn::Mode
            } else {
                PointsFn::Distinct
            };
            Ok(Leaf::Points {
                f,
                field: field_arg(c)?,
                tags: Vec::new(),
            })
        }
        "cumulative_sum" | "moving_average" | "elapsed" => {
            let tf = match c.name.as_str() {
                "cumulative_sum" => {
                    nargs(c, 1, 1)?;
                    Tf::CumulativeSum
                }
                "moving_average" => {
                    nargs(c, 2, 2)?;
                    match c.args[1] {
                        Expr::Integer(n) if n > 1 => Tf::MovingAverage(n as u64),
                        Expr::Integer(n) => {
                            return Err(format!(
                                "moving_average window must be greater than 1, got {n}"
                            ))
                        }
                        ref o => {
                            return Err(format!(
                                "second argument for moving_average must be an integer, got {}",
                                go_type(o)
                            ))
                        }
                    }
                }
                _ => {
                    nargs(c, 1, 2)?;
                    match c.args.get(1) {
                        None => Tf::Elapsed(1),
                        Some(Expr::Duration(d)) if *d > 0 => Tf::Elapsed(*d),
                        Some(Expr::Duration(_)) => {
                            return Err("duration argument must be positive".into())
                        }
                        Some(o) => {
                            return Err(format!(
                                "second argument to elapsed must be a duration, got {}",
                                go_type(o)
                            ))
                        }
                    }
                }
            };
            Ok(Leaf::Transform {
                tf,
                unit: None,
                inner: Box::new(transform_inner(c, grouped)?),
            })
        }
        other => Err(format!("{other}() is not supported by xtdb")),
    }
}

/// The Go type InfluxDB names in some errors (`%T` of the argument).
fn go_type(e: &Expr) -> &'static str {
    match e {
        Expr::Integer(_) | Expr::Unsigned(_) => "*influxql.IntegerLiteral",
        Expr::Number(_) => "*influxql.NumberLiteral",
        Expr::String(_) => "*influxql.StringLiteral",
        Expr::Bool(_) => "*influxql.BooleanLiteral",
        Expr::Duration(_) => "*influxql.DurationLiteral",
        Expr::VarRef(_) => "*influxql.VarRef",
        Expr::Call(_) => "*influxql.Call",
        Expr::Regex(_) => "*influxql.RegexLiteral",
        Expr::Wildcard(_) => "*influxql.Wildcard",
        _ => "influxql.Expr",
    }
}

/// The argument of a transform: a raw field, or (with `GROUP BY time`
/// only) an aggregate.
fn transform_inner(c: &Call, grouped: bool) -> R<Leaf> {
    let inner = match c.args.first() {
        Some(Expr::VarRef(v)) => Leaf::Field(v.name.clone()),
        Some(Expr::Call(inner)) => {
            let l = call_leaf(inner, grouped)?;
            let one_value = match &l {
                Leaf::Agg { .. } => true,
                Leaf::Points { f, .. } => f.one_value(),
                _ => false,
            };
            if !one_value {
                return Err(format!(
                    "{}() of {} is not supported by xtdb",
                    c.name, inner.name
                ));
            }
            l
        }
        Some(o) => return Err(format!("expected field argument in {}(), got {o}", c.name)),
        None => return Err(format!("expected field argument in {}()", c.name)),
    };
    match (&inner, grouped) {
        (Leaf::Field(_), true) => Err(format!(
            "aggregate function required inside the call to {}",
            c.name
        )),
        (Leaf::Agg { .. } | Leaf::Points { .. }, false) => {
            Err(format!("{} aggregate requires a GROUP BY interval", c.name))
        }
        _ => Ok(inner),
    }
}

/// The column expression of `e`; `names` gets the name of each leaf in
/// order (InfluxDB names a column by them joined with `_`).
fn compile_expr(
    e: &Expr,
    grouped: bool,
    leaves: &mut Vec<Leaf>,
    names: &mut Vec<String>,
) -> R<CExpr> {
    let mut leaf = |l: Leaf, n: &str, names: &mut Vec<String>| {
        names.push(n.to_string());
        let i = leaves.iter().position(|x| *x == l).unwrap_or_else(|| {
            leaves.push(l);
            leaves.len() - 1
        });
        CExpr::Leaf(i)
    };
    Ok(match e {
        Expr::VarRef(v) => leaf(Leaf::Field(v.name.clone()), &v.name, names),
        Expr::Call(c) => {
            let l = call_leaf(c, grouped)?;
            leaf(l, &c.name, names)
        }
        Expr::Distinct(f) => leaf(
            Leaf::Points {
                f: PointsFn::Distinct,
                field: f.clone(),
                tags: Vec::new(),
            },
            "distinct",
            names,
        ),
        Expr::Integer(i) => CExpr::Num(*i as f64),
        Expr::Number(f) => CExpr::Num(*f),
        Expr::Paren(x) => compile_expr(x, grouped, leaves, names)?,
        Expr::Binary(b)
            if !b.op.is_comparison()
                && matches!(
                    b.op,
                    BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod
                ) =>
        {
            let l = compile_expr(&b.lhs, grouped, leaves, names)?;
            let r = compile_expr(&b.rhs, grouped, leaves, names)?;
            CExpr::Bin(b.op, Box::new(l), Box::new(r))
        }
        other => return Err(format!("not supported by xtdb in a SELECT field: {other}")),
    })
}

fn eval(e: &CExpr, vals: &[Option<f64>]) -> Option<f64> {
    match e {
        CExpr::Leaf(i) => vals.get(*i).copied().flatten(),
        CExpr::Num(n) => Some(*n),
        CExpr::Bin(op, l, r) => {
            let (a, b) = (eval(l, vals)?, eval(r, vals)?);
            Some(match op {
                BinaryOp::Add => a + b,
                BinaryOp::Sub => a - b,
                BinaryOp::Mul => a * b,
                // InfluxDB: division by zero is 0.
                BinaryOp::Div => {
                    if b == 0.0 {
                        0.0
                    } else {
                        a / b
                    }
                }
                BinaryOp::Mod => a % b,
                _ => return None,
            })
        }
    }
}

/// Unique column names as InfluxDB makes them (`mean`, `mean_1`, ...).
fn unique_names(names: Vec<String>) -> Vec<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        let c = seen.entry(n.clone()).or_insert(0);
        if *c == 0 {
            out.push(n.clone());
        } else {
            out.push(format!("{n}_{c}"));
        }
        *c += 1;
    }
    out
}

fn ceil_div(a: i64, b: i64) -> i64 {
    let q = a.div_euclid(b);
    if a.rem_euclid(b) == 0 {
        q
    } else {
        q + 1
    }
}

/// A time bound in ns as µs (the first µs whose ns is at or after it).
fn bound_us(ns: i64) -> i64 {
    ceil_div(ns, 1000)
}

struct Plan {
    columns: Vec<Column>,
    leaves: Vec<Leaf>,
    aggregate: bool,
    wildcard: bool,
    interval: Option<(i64, i64)>,
    group_tags: GroupTags,
    /// The condition on field values, if any.
    filter: Option<PointFilter>,
    /// `tz()`: windows aligned to its local time, times written in it.
    tz: Option<chrono_tz::Tz>,
}

enum GroupTags {
    None,
    Keys(Vec<String>),
    All,
    Regex(regex::Regex),
}

fn plan(ctx: &Ctx<'_>, s: &SelectStatement) -> R<Plan> {
    if s.into.is_some() {
        return Err("SELECT INTO is not supported by xtdb".into());
    }
    let mut interval = None;
    let mut keys = Vec::new();
    let mut group_tags = GroupTags::None;
    for d in &s.group_by {
        match d {
            Dimension::Time {
                interval: i,
                offset,
            } => {
                if interval.is_some() {
                    return Err("multiple time dimensions not allowed".into());
                }
                if *i <= 0 {
                    return Err(format!(
                        "invalid group interval {}ns: it must be positive",
                        i
                    ));
                }
                let every = ns_to_us(*i, "the GROUP BY time interval")?;
                let off = match offset {
                    None => 0,
                    Some(TimeOffset::Duration(o)) => ns_to_us(*o, "the GROUP BY time offset")?,
                    Some(TimeOffset::Now) => (ctx.now_ns / 1000).rem_euclid(every),
                };
                interval = Some((every, off));
            }
            Dimension::Tag(t) => keys.push(t.clone()),
            Dimension::Wildcard => group_tags = GroupTags::All,
            Dimension::Regex(r) => {
                group_tags = GroupTags::Regex(
                    regex::Regex::new(&r.source)
                        .map_err(|e| format!("bad regex /{}/: {e}", r.source))?,
                )
            }
            Dimension::Other(e) => {
                return Err(format!("only time() and tag dimensions allowed: {e}"))
            }
        }
    }
    if !keys.is_empty() {
        match group_tags {
            GroupTags::None => {
                keys.sort();
                keys.dedup();
                group_tags = GroupTags::Keys(keys);
            }
            _ => {
                return Err(
                    "GROUP BY * or a regex cannot be combined with tag names in xtdb".into(),
                )
            }
        }
    }
    let grouped = interval.is_some();
    let mut leaves = Vec::new();
    let mut columns = Vec::new();
    let mut names = Vec::new();
    let mut wildcard = false;
    for Field { expr, alias, .. } in &s.fields {
        if let Expr::Wildcard(_) = expr {
            wildcard = true;
            continue;
        }
        let mut leaf_names = Vec::new();
        let e = compile_expr(expr, grouped, &mut leaves, &mut leaf_names)?;
        names.push(alias.clone().unwrap_or_else(|| leaf_names.join("_")));
        columns.push(Column {
            name: String::new(),
            expr: e,
        });
    }
    for (c, n) in columns.iter_mut().zip(unique_names(names)) {
        c.name = n;
    }
    let aggs = leaves
        .iter()
        .filter(|l| matches!(l.base(), Leaf::Agg { .. } | Leaf::Points { .. }))
        .count();
    // top, bottom and distinct answer several rows per window: alone.
    if let Some(f) = leaves.iter().find_map(|l| match l {
        Leaf::Points { f, .. } if !f.one_value() => Some(*f),
        _ => None,
    }) {
        let alone = columns.len() == 1 && !wildcard && matches!(columns[0].expr, CExpr::Leaf(_));
        if !alone {
            return Err(match f {
                PointsFn::Distinct => {
                    "aggregate function distinct() cannot be combined with other functions or fields"
                        .to_string()
                }
                f => format!(
                    "selector function {}() cannot be combined with other functions",
                    f.name()
                ),
            });
        }
    }
    let aggregate = aggs > 0;
    if aggregate && (aggs != leaves.len() || wildcard) {
        return Err("mixing aggregate and non-aggregate queries is not supported".into());
    }
    if !aggregate && grouped {
        return Err("GROUP BY requires at least one aggregate function".into());
    }
    if wildcard && leaves.iter().any(|l| matches!(l, Leaf::Transform { .. })) {
        return Err("mixing * with a transform is not supported by xtdb".into());
    }
    Ok(Plan {
        columns,
        leaves,
        aggregate,
        wildcard,
        interval,
        group_tags,
        filter: None,
        tz: None,
    })
}

/// The group-by tag keys of a measurement's series.
fn group_keys(plan: &Plan, series: &[&SeriesInfo]) -> Vec<String> {
    let all = || {
        let mut k: Vec<String> = series
            .iter()
            .flat_map(|s| s.tags.iter().map(|(k, _)| k.clone()))
            .collect();
        k.sort();
        k.dedup();
        k
    };
    match &plan.group_tags {
        GroupTags::None => Vec::new(),
        GroupTags::Keys(k) => k.clone(),
        GroupTags::All => all(),
        GroupTags::Regex(re) => all().into_iter().filter(|k| re.is_match(k)).collect(),
    }
}

fn tag_of<'a>(s: &'a SeriesInfo, k: &str) -> &'a str {
    s.tags
        .iter()
        .find(|(t, _)| t == k)
        .map_or("", |(_, v)| v.as_str())
}

fn id_of(s: &SeriesInfo, field: &str) -> Option<u32> {
    s.fields.iter().find(|(f, _)| f == field).map(|(_, id)| *id)
}

/// Runs a `SELECT`.
pub(super) async fn select(ctx: &Ctx<'_>, s: &SelectStatement) -> R<Vec<SeriesOut>> {
    let mut from = Vec::new();
    for src in &s.from {
        match src {
            Source::Measurement(m) => {
                need_db(ctx, m.database.as_deref())?;
                from.push(name_sel(m));
            }
            Source::Subquery(_) => return Err("subqueries are not supported by xtdb".into()),
        }
    }
    let tz = match &s.tz {
        None => None,
        Some(name) => Some(
            name.parse::<chrono_tz::Tz>()
                .map_err(|_| format!("unknown time zone {name}"))?,
        ),
    };
    let plan = plan(ctx, s)?;
    let (start_ns, end_ns, filter, field_cond) = select_condition(ctx, s.condition.as_ref())?;
    let all = series(ctx, from, filter, ctx.limits.max_series + 1).await?;
    over(ctx, all.len(), "series")?;
    let mut plan = plan;
    plan.filter = field_cond.map(|(c, names)| PointFilter::new(c, &names, &all));
    plan.tz = tz;
    // The points bound holds for the request: earlier statements' reads count.
    let mut budget = Budget::after(
        ctx.limits.max_points,
        ctx.points_read.get(),
        ctx.limits.max_rows,
    );
    let mut out: Vec<SeriesOut> = Vec::new();
    let mut rows = 0usize;
    // Series come sorted by measurement, then key.
    let mut by_m: BTreeMap<&str, Vec<&SeriesInfo>> = BTreeMap::new();
    for si in &all {
        by_m.entry(si.measurement.as_str()).or_default().push(si);
    }
    // `GROUP BY *` (or a regex): the tag keys of every measurement of the
    // statement, as InfluxDB (a measurement without one shows it as "").
    let every: Vec<&SeriesInfo> = all.iter().collect();
    let all_keys = group_keys(&plan, &every);
    for (m, list) in by_m {
        let keys = all_keys.clone();
        // `*` shows every tag key of the measurement.
        let m_tags = if plan.wildcard {
            match query(
                ctx,
                CatalogQuery::TagKeys {
                    from: vec![NameSel::Name(m.to_string())],
                    filter: TagFilter::True,
                    limit: ctx.limits.max_series,
                },
            )
            .await?
            {
                CatalogAnswer::Keys(k) => k.into_iter().flat_map(|(_, k)| k).collect(),
                _ => return Err("catalog: unexpected answer".into()),
            }
        } else {
            Vec::new()
        };
        let mut groups: BTreeMap<Vec<String>, Vec<&SeriesInfo>> = BTreeMap::new();
        for si in &list {
            let g: Vec<String> = keys.iter().map(|k| tag_of(si, k).to_string()).collect();
            groups.entry(g).or_default().push(si);
        }
        // The groups' partials in one go (`GROUP BY "tag"` over many
        // series), unless SLIMIT stops early.
        let mut cache = PartialCache::default();
        if plan.aggregate && s.slimit.is_none() {
            let mut ids = Vec::new();
            for leaf in &plan.leaves {
                if let Leaf::Agg { func, field, .. } = leaf.base() {
                    if func.mergeable() {
                        ids.extend(list.iter().filter_map(|si| id_of(si, field)));
                    }
                }
            }
            cache.expect(ids);
        }
        for (g, members) in groups {
            let tags: Vec<(String, String)> = keys.iter().cloned().zip(g).collect();
            let got = if plan.aggregate {
                let range = (start_ns, end_ns);
                aggregate_group(ctx, s, &plan, &members, range, &mut budget, &mut cache).await?
            } else {
                let tags = Group {
                    keys: &keys,
                    measurement_tags: &m_tags,
                };
                raw_group(ctx, &plan, &members, tags, start_ns, end_ns, &mut budget).await?
            };
            let Some((columns, mut values)) = got else {
                continue;
            };
            if s.order == Some(Order::Desc) {
                values.reverse();
            }
            let values = paged(values, s.limit, s.offset);
            if values.is_empty() {
                continue;
            }
            rows += values.len();
            if rows > ctx.limits.max_rows {
                return Err(format!(
                    "the answer has more than {} rows (the server's --query-max-rows): narrow the time range, widen GROUP BY time or add LIMIT",
                    ctx.limits.max_rows
                ));
            }
            out.push(SeriesOut {
                name: Some(m.to_string()),
                tags,
                columns,
                values,
                tz: plan.tz,
            });
            // SLIMIT: the groups after the last one answered are not read.
            if s.slimit.is_some_and(|l| l > 0)
                && out.len() as u64 >= s.slimit.unwrap_or(0).saturating_add(s.soffset.unwrap_or(0))
            {
                ctx.points_read.set(budget.read());
                return Ok(paged(out, s.slimit, s.soffset));
            }
        }
    }
    ctx.points_read.set(budget.read());
    Ok(paged(out, s.slimit, s.soffset))
}

type Rows = Option<(Vec<String>, Vec<Vec<Val>>)>;

/// The range a query reads, µs, clipped to what the server can hold.
fn read_range(ctx: &Ctx<'_>, start_ns: Option<i64>, end_ns: Option<i64>) -> (i64, i64) {
    let w = &ctx.router.local().window;
    let start = start_ns.map_or(i64::MIN, bound_us).max(w.min_ts);
    let end = end_ns.map_or(i64::MAX, bound_us).min(
        w.max_ts(crate::runtime::admission::now_us())
            .saturating_add(1),
    );
    (start, end.max(start))
}

#[allow(clippy::too_many_arguments)]
async fn aggregate_group(
    ctx: &Ctx<'_>,
    s: &SelectStatement,
    plan: &Plan,
    members: &[&SeriesInfo],
    (start_ns, end_ns): (Option<i64>, Option<i64>),
    budget: &mut Budget,
    cache: &mut PartialCache,
) -> R<Rows> {
    let transforms = plan
        .leaves
        .iter()
        .any(|l| matches!(l, Leaf::Transform { .. }));
    let (spec, label_start, first_start) = match plan.interval {
        Some((every, off)) => {
            let Some(start) = start_ns else {
                return Err(
                    "xtdb needs a lower time bound with GROUP BY time (WHERE time >= ...)".into(),
                );
            };
            // No upper bound: up to now, as InfluxDB.
            let end = end_ns.unwrap_or(ctx.now_ns.saturating_add(1));
            let (su, eu) = (bound_us(start), bound_us(end).max(bound_us(start)));
            let off = match plan.tz {
                Some(tz) => zoned_offset(tz, off, every, start, end)?,
                None => off,
            };
            let orig = WindowSpec::new(su, eu, every, off, ctx.limits.max_rows)
                .map_err(|e| e.to_string())?;
            let first = orig.window(0).map(|w| w.start);
            // Transforms get one window before the start as the first
            // row's predecessor, as InfluxDB computes it (its
            // ExtraIntervals: InfluxDB 1.x reads one window more whatever
            // the function, moving_average(f, n) included).
            let su = if transforms {
                su.saturating_sub(every)
            } else {
                su
            };
            let spec = WindowSpec::new(su, eu, every, off, ctx.limits.max_rows.saturating_add(1))
                .map_err(|e| e.to_string())?;
            (spec, None, first)
        }
        None => {
            let (su, eu) = read_range(ctx, start_ns, end_ns);
            let spec = WindowSpec::whole(su, eu).map_err(|e| e.to_string())?;
            // InfluxDB labels integral with the epoch, the others with
            // the range start.
            let integral = plan.leaves.iter().all(|l| {
                matches!(
                    l.base(),
                    Leaf::Agg {
                        func: Func::Integral { .. },
                        ..
                    }
                )
            });
            let label = if integral {
                0
            } else {
                start_ns.unwrap_or(0).max(MIN_TIME)
            };
            (spec, Some(label), None)
        }
    };
    let fill = match (&s.fill, plan.interval) {
        (_, None) => aggregate::Fill::None,
        (None | Some(Fill::Null), _) => aggregate::Fill::Null,
        (Some(Fill::None), _) => aggregate::Fill::None,
        (Some(Fill::Previous), _) => aggregate::Fill::Previous { before: None },
        (Some(Fill::Linear), _) => aggregate::Fill::Linear,
        (Some(Fill::Integer(i)), _) => aggregate::Fill::Value(*i as f64),
        (Some(Fill::Number(f)), _) => aggregate::Fill::Value(*f),
    };
    // Each leaf's rows: (time µs, value).
    let mut leaf_rows: Vec<Vec<(i64, Option<f64>)>> = Vec::with_capacity(plan.leaves.len());
    let mut any = false;
    let mut selector_time = None;
    // One engine pass for every mergeable leaf of the same series (and,
    // expected by the caller, of the other groups).
    if let [Leaf::Points { f, field, tags }] = plan.leaves.as_slice() {
        if !f.one_value() {
            let with: Vec<&SeriesInfo> = members
                .iter()
                .copied()
                .filter(|m| id_of(m, field).is_some())
                .collect();
            let ids: Vec<u32> = with.iter().filter_map(|m| id_of(m, field)).collect();
            // top(f, tag, n): each series' tag values, as an index.
            let mut values: Vec<Vec<String>> = Vec::new();
            let mut keys = Vec::new();
            if !tags.is_empty() {
                for m in &with {
                    let v: Vec<String> = tags.iter().map(|t| tag_of(m, t).to_string()).collect();
                    let i = values.iter().position(|x| *x == v).unwrap_or_else(|| {
                        values.push(v);
                        values.len() - 1
                    });
                    keys.push(i);
                }
            }
            let flt = plan.filter.as_ref();
            let desc = s.order == Some(Order::Desc);
            let sets =
                fetch_point_sets(ctx.router, &ids, &keys, &spec, *f, desc, budget, flt).await?;
            return Ok(several_rows(
                plan,
                *f,
                (tags, &values),
                &spec,
                label_start,
                sets,
                desc,
            ));
        }
    }
    for leaf in &plan.leaves {
        let (w, func) = match leaf.base() {
            Leaf::Agg { func, field, .. } => {
                let ids: Vec<u32> = members.iter().filter_map(|m| id_of(m, field)).collect();
                let flt = plan.filter.as_ref();
                let w = fetch_windows(ctx.router, &ids, &spec, *func, false, budget, cache, flt)
                    .await?;
                (w, Some(*func))
            }
            Leaf::Points { f, field, .. } => {
                let ids: Vec<u32> = members.iter().filter_map(|m| id_of(m, field)).collect();
                let flt = plan.filter.as_ref();
                let desc = s.order == Some(Order::Desc);
                let sets =
                    fetch_point_sets(ctx.router, &ids, &[], &spec, *f, desc, budget, flt).await?;
                let slots = sets
                    .iter()
                    .map(|v| v.first().map_or(Slot::Empty, |p| Slot::Value(p.1)))
                    .collect();
                let w = super::fetch::Windows {
                    slots,
                    times: Vec::new(),
                };
                // count(distinct(f)) fills as count does.
                (w, (*f == PointsFn::CountDistinct).then_some(Func::Count))
            }
            _ => return Err("internal: aggregate leaf expected".into()),
        };
        any |= w.slots.iter().any(|s| !matches!(s, Slot::Empty));
        let f = match (func, fill) {
            (Some(Func::Count), aggregate::Fill::Null) => aggregate::Fill::Value(0.0),
            // An integer column: InfluxDB casts the fill value.
            (Some(Func::Count), aggregate::Fill::Value(v)) => aggregate::Fill::Value(v.trunc()),
            (Some(Func::Integral { .. }), _) => aggregate::Fill::None,
            _ => fill,
        };
        let filled = aggregate::fill(&w.slots, f);
        let label = |i: usize| spec.window(i).map_or(0, |w| w.start);
        let rows: Vec<(i64, Option<f64>)> = filled.iter().map(|&(i, v)| (label(i), v)).collect();
        if plan.leaves.len() == 1 && plan.interval.is_none() {
            if let Leaf::Agg { selector: true, .. } = leaf {
                selector_time = w.times.first().copied().flatten();
            }
        }
        let rows = match leaf {
            Leaf::Transform { tf, unit, .. } => {
                let unit = unit.or(plan.interval.map(|i| i.0)).unwrap_or(1_000_000);
                let t = transform(*tf, unit, &rows)?;
                match first_start {
                    Some(f) => t.into_iter().filter(|r| r.0 >= f).collect(),
                    None => t,
                }
            }
            _ => rows,
        };
        leaf_rows.push(rows);
    }
    if !any {
        return Ok(None);
    }
    let mut columns = vec!["time".to_string()];
    columns.extend(plan.columns.iter().map(|c| c.name.clone()));
    let values = join(plan, &leaf_rows, |t| match (label_start, selector_time) {
        (Some(_), Some(st)) => Val::Time(st.saturating_mul(1000)),
        (Some(l), None) => Val::Time(l),
        (None, _) => Val::Time(t.saturating_mul(1000)),
    });
    Ok(Some((columns, values)))
}

/// The window offset (µs) of `GROUP BY time(every, off)` with `tz(tz)`
/// over `[start_ns, end_ns)`: InfluxDB aligns the windows to local time
/// (a 1d window starts at local midnight). xtdb's windows have one width,
/// so where the zone's UTC offset changes within the range (daylight
/// saving) the windows must not depend on it (every offset a whole number
/// of windows: 1m, 1h, ... for Europe/Berlin), else the statement is
/// refused. The offsets are sampled each 7 days and at the end.
fn zoned_offset(tz: chrono_tz::Tz, off: i64, every: i64, start_ns: i64, end_ns: i64) -> R<i64> {
    let mut zones = std::collections::BTreeSet::new();
    let step = (7 * 86_400 * 1_000_000_000i64).max((end_ns.saturating_sub(start_ns)) / 10_000);
    let mut t = start_ns;
    loop {
        zones.insert(super::exec::zone_offset_s(tz, t));
        if t >= end_ns {
            break;
        }
        t = t.saturating_add(step).min(end_ns);
    }
    let us = |z: &i32| i64::from(*z) * 1_000_000;
    if zones.iter().all(|z| us(z) % every == 0) {
        return Ok(off);
    }
    match zones.iter().next() {
        Some(z) if zones.len() == 1 => Ok((off - us(z)).rem_euclid(every)),
        _ => Err(format!(
            "tz('{tz}'): the range crosses a change of the zone's UTC offset, where InfluxDB's windows of this GROUP BY time change length; xtdb's windows have one length: split the range at the change"
        )),
    }
}

/// The rows of `top`, `bottom` or `distinct`: per window its points
/// (top, bottom: at their own times, as InfluxDB; distinct: at the window
/// start, or the range's label without `GROUP BY time`); an empty window
/// has no row whatever the fill (as InfluxDB 1.x).
fn several_rows(
    plan: &Plan,
    f: PointsFn,
    (tags, tag_values): (&[String], &[Vec<String>]),
    spec: &WindowSpec,
    label_start: Option<i64>,
    sets: Vec<Vec<(i64, f64, usize)>>,
    desc: bool,
) -> Rows {
    if sets.iter().all(Vec::is_empty) {
        return None;
    }
    let mut values = Vec::new();
    for (i, mut set) in sets.into_iter().enumerate() {
        // ORDER BY time DESC (the caller reverses the rows): InfluxDB 1.6
        // answers the windows newest first, each in its own order (top,
        // bottom: oldest first; distinct: by the last time of each value).
        if desc {
            set.reverse();
        }
        let start = spec.window(i).map_or(0, |w| w.start);
        let label = label_start.unwrap_or(start.saturating_mul(1000));
        for (t, v, k) in set {
            let t = match f {
                PointsFn::Top(_) | PointsFn::Bottom(_) => t.saturating_mul(1000),
                _ => label,
            };
            let mut row = vec![Val::Time(t), Val::F(v)];
            for i in 0..tags.len() {
                row.push(match tag_values.get(k).and_then(|v| v.get(i)) {
                    Some(s) if !s.is_empty() => Val::S(s.clone()),
                    _ => Val::Null,
                });
            }
            values.push(row);
        }
    }
    let mut columns = vec!["time".to_string()];
    columns.extend(plan.columns.iter().map(|c| c.name.clone()));
    columns.extend(tags.iter().cloned());
    Some((columns, values))
}

fn transform(tf: Tf, unit: i64, rows: &[(i64, Option<f64>)]) -> R<Vec<(i64, Option<f64>)>> {
    let out = match tf {
        Tf::Derivative { non_negative } => derivative(rows, unit, non_negative),
        Tf::Difference { non_negative } => difference(rows, non_negative),
        Tf::CumulativeSum => Ok(cumulative_sum(rows)),
        Tf::MovingAverage(n) => moving_average(rows, n),
        Tf::Elapsed(unit_ns) => elapsed(rows, unit_ns),
    }
    .map_err(|e| e.to_string())?;
    Ok(out.into_iter().map(|(t, v)| (t, Some(v))).collect())
}

/// Rows of every column at the union of the leaves' times.
fn join(
    plan: &Plan,
    leaf_rows: &[Vec<(i64, Option<f64>)>],
    time: impl Fn(i64) -> Val,
) -> Vec<Vec<Val>> {
    let row_of = |t: i64, vals: &[Option<f64>]| {
        let mut row = Vec::with_capacity(1 + plan.columns.len());
        row.push(time(t));
        row.extend(
            plan.columns
                .iter()
                .map(|c| eval(&c.expr, vals).map_or(Val::Null, Val::F)),
        );
        row
    };
    // The common shape: every leaf has rows at the same strictly
    // increasing times (one spec, one fill), so the union is any leaf's
    // times in order, each time once: no map needed.
    if let Some(first) = leaf_rows.first() {
        let increasing = first.windows(2).all(|w| w[0].0 < w[1].0);
        let same = leaf_rows[1..]
            .iter()
            .all(|r| r.len() == first.len() && r.iter().zip(first).all(|(a, b)| a.0 == b.0));
        if increasing && same {
            let mut vals = vec![None; leaf_rows.len()];
            return (0..first.len())
                .map(|k| {
                    for (v, rows) in vals.iter_mut().zip(leaf_rows) {
                        *v = rows[k].1;
                    }
                    row_of(first[k].0, &vals)
                })
                .collect();
        }
    }
    let mut at: BTreeMap<i64, Vec<Option<f64>>> = BTreeMap::new();
    for (i, rows) in leaf_rows.iter().enumerate() {
        for &(t, v) in rows {
            at.entry(t).or_insert_with(|| vec![None; leaf_rows.len()])[i] = v;
        }
    }
    at.into_iter().map(|(t, vals)| row_of(t, &vals)).collect()
}

/// The tags of a group: the keys grouped by, and every tag key of the
/// measurement (what `*` shows).
struct Group<'a> {
    keys: &'a [String],
    measurement_tags: &'a [String],
}

async fn raw_group(
    ctx: &Ctx<'_>,
    plan: &Plan,
    members: &[&SeriesInfo],
    group: Group<'_>,
    start_ns: Option<i64>,
    end_ns: Option<i64>,
    budget: &mut Budget,
) -> R<Rows> {
    let (su, eu) = read_range(ctx, start_ns, end_ns);
    let fields: std::collections::BTreeSet<&str> = members
        .iter()
        .flat_map(|m| m.fields.iter().map(|(f, _)| f.as_str()))
        .collect();
    let transforms = plan
        .leaves
        .iter()
        .any(|l| matches!(l, Leaf::Transform { .. }));
    if transforms {
        // Every column a transform of a raw field: over the group's points
        // merged in time order.
        let mut leaf_rows = Vec::new();
        for leaf in &plan.leaves {
            let Leaf::Transform { tf, unit, inner } = leaf else {
                return Err("mixing a transform with raw fields is not supported by xtdb".into());
            };
            let Leaf::Field(f) = inner.as_ref() else {
                return Err("internal: raw transform expected".into());
            };
            let mut pts: Vec<(i64, usize, f64)> = Vec::new();
            for (k, m) in members.iter().enumerate() {
                if let Some(id) = id_of(m, f) {
                    for p in
                        fetch_points(ctx.router, id, su, eu, budget, plan.filter.as_ref()).await?
                    {
                        if !p.value.is_nan() {
                            pts.push((p.ts, k, p.value));
                        }
                    }
                }
            }
            pts.sort_by_key(|p| (p.0, p.1));
            let rows: Vec<(i64, Option<f64>)> = pts.iter().map(|p| (p.0, Some(p.2))).collect();
            leaf_rows.push(transform(*tf, unit.unwrap_or(1_000_000), &rows)?);
        }
        if leaf_rows.iter().all(Vec::is_empty) {
            return Ok(None);
        }
        let mut columns = vec!["time".to_string()];
        columns.extend(plan.columns.iter().map(|c| c.name.clone()));
        return Ok(Some((
            columns,
            join(plan, &leaf_rows, |t| Val::Time(t.saturating_mul(1000))),
        )));
    }
    // Columns: each is a field expression, or a tag; `*` is every field and
    // every tag not grouped by, sorted by name.
    enum Out {
        /// Column `i` of the plan.
        Expr(usize),
        /// Leaf `i` (a field `*` expanded to).
        Leaf(usize),
        /// A tag's value.
        Tag(String),
    }
    let mut outs: Vec<(String, Out)> = Vec::new();
    let mut leaves = plan.leaves.clone();
    if plan.wildcard {
        let mut names: Vec<(String, bool)> = fields.iter().map(|f| (f.to_string(), true)).collect();
        let tags: Vec<String> = group
            .measurement_tags
            .iter()
            .filter(|k| !group.keys.contains(k))
            .cloned()
            .collect();
        names.extend(tags.into_iter().map(|t| (t, false)));
        names.sort();
        for (n, is_field) in names {
            if is_field {
                leaves.push(Leaf::Field(n.clone()));
                outs.push((n, Out::Leaf(leaves.len() - 1)));
            } else {
                outs.push((n.clone(), Out::Tag(n)));
            }
        }
    }
    let mut columns_out: Vec<(String, Out)> = Vec::new();
    for (i, c) in plan.columns.iter().enumerate() {
        // A bare name that is not a field but a tag is a tag column.
        if let CExpr::Leaf(l) = c.expr {
            let f = plan.leaves[l].field();
            if !fields.contains(f) && members.iter().any(|m| m.tags.iter().any(|(k, _)| k == f)) {
                columns_out.push((c.name.clone(), Out::Tag(f.to_string())));
                continue;
            }
        }
        columns_out.push((c.name.clone(), Out::Expr(i)));
    }
    columns_out.extend(outs);
    let mut rows: Vec<(i64, usize, Vec<Val>)> = Vec::new();
    for (k, m) in members.iter().enumerate() {
        // The series' points per leaf field.
        let mut per_time: BTreeMap<i64, Vec<Option<f64>>> = BTreeMap::new();
        for (li, leaf) in leaves.iter().enumerate() {
            let Leaf::Field(f) = leaf else { continue };
            let Some(id) = id_of(m, f) else { continue };
            for p in fetch_points(ctx.router, id, su, eu, budget, plan.filter.as_ref()).await? {
                if p.value.is_nan() {
                    continue;
                }
                per_time
                    .entry(p.ts)
                    .or_insert_with(|| vec![None; leaves.len()])[li] = Some(p.value);
            }
        }
        for (t, vals) in per_time {
            let mut row = vec![Val::Time(t.saturating_mul(1000))];
            for (_, o) in &columns_out {
                row.push(match o {
                    Out::Leaf(li) => vals[*li].map_or(Val::Null, Val::F),
                    Out::Expr(i) => eval(&plan.columns[*i].expr, &vals).map_or(Val::Null, Val::F),
                    Out::Tag(t) => {
                        let v = tag_of(m, t);
                        if v.is_empty() {
                            Val::Null
                        } else {
                            Val::S(v.to_string())
                        }
                    }
                });
            }
            rows.push((t, k, row));
        }
        if rows.len() > ctx.limits.max_rows {
            return Err(format!(
                "the answer has more than {} rows (the server's --query-max-rows): narrow the time range or add LIMIT",
                ctx.limits.max_rows
            ));
        }
    }
    if rows.is_empty() {
        return Ok(None);
    }
    rows.sort_by_key(|r| (r.0, r.1));
    let mut columns = vec!["time".to_string()];
    columns.extend(columns_out.into_iter().map(|(n, _)| n));
    Ok(Some((columns, rows.into_iter().map(|r| r.2).collect())))
}
