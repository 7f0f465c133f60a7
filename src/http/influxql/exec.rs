//! Running one InfluxQL statement: the answer's types, the metadata
//! statements (answered from the catalog's index through
//! [`Command::Catalog`](crate::runtime::command::Command::Catalog)), and
//! what `SELECT` (`select.rs`) shares with them: `db`, conditions
//! (time bounds and tag filters, `$params` bound), paging and bounds. The
//! answer is a list of [`SeriesOut`] the HTTP layer serialises. Every failure is a message for the statement's
//! `error` (InfluxDB's text where InfluxDB has one); nothing here panics
//! on a query.

use std::rc::Rc;

use serde_json::{Map, Value};

use super::fetch::{FieldCond, Operand};
use crate::influxql::{
    time_range, BinaryOp, Expr, Measurement, MeasurementName, Statement, TagKeyFilter,
};
use crate::runtime::catalog::Catalog;
use crate::runtime::router::Router;
use crate::storage::catalog::index::{
    CatalogAnswer, CatalogQuery, KeySel, NameSel, SeriesInfo, TagFilter,
};

/// The one database xtdb has: every `db` sees the same series, and `SHOW
/// DATABASES` lists this name.
pub const DATABASE: &str = "xtdb";

/// Bounds on one statement; points read and rows answered are also bounded
/// for a whole request (all its statements together), so a `q` repeating a
/// statement a thousand times costs what one may.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Series (tag sets) a statement may touch, and names a `SHOW` may list.
    pub max_series: usize,
    /// Points a statement, and a request's statements together, may read.
    pub max_points: u64,
    /// Rows a statement, and a request's statements together, may answer
    /// (windows included).
    pub max_rows: usize,
}

impl Default for Limits {
    /// 100,000 series, 50 M points read, 1 M rows.
    fn default() -> Self {
        Limits {
            max_series: 100_000,
            max_points: 50_000_000,
            max_rows: 1_000_000,
        }
    }
}

/// A value in a row.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    /// A timestamp, ns (written per `epoch`).
    Time(i64),
    /// A number.
    F(f64),
    /// An integer.
    I(i64),
    /// A string.
    S(String),
    /// A boolean.
    B(bool),
    /// null.
    Null,
}

/// One series of a statement's answer.
#[derive(Clone, Debug, Default)]
pub struct SeriesOut {
    /// `name` (omitted when `None`).
    pub name: Option<String>,
    /// `tags` (omitted when empty).
    pub tags: Vec<(String, String)>,
    /// `columns`.
    pub columns: Vec<String>,
    /// `values`.
    pub values: Vec<Vec<Val>>,
    /// `tz()`: RFC 3339 times are written in this zone.
    pub tz: Option<chrono_tz::Tz>,
}

/// The UTC offset of `tz` at `ns` (since the epoch), in seconds.
pub fn zone_offset_s(tz: chrono_tz::Tz, ns: i64) -> i32 {
    use chrono::{Offset, TimeZone};
    let secs = ns.div_euclid(1_000_000_000);
    match tz.timestamp_opt(secs, 0).single() {
        Some(t) => t.offset().fix().local_minus_utc(),
        None => 0,
    }
}

/// What a statement runs against.
pub struct Ctx<'a> {
    /// The shard's router.
    pub router: &'a Rc<Router>,
    /// The shard's catalog client.
    pub catalog: &'a Catalog,
    /// The request's `db`.
    pub db: Option<&'a str>,
    /// `now()`, ns.
    pub now_ns: i64,
    /// `params` of the request.
    pub params: &'a Map<String, Value>,
    /// Bounds.
    pub limits: &'a Limits,
    /// Points read by the request's statements so far: [`Limits::max_points`]
    /// bounds the whole request.
    pub points_read: &'a std::cell::Cell<u64>,
}

/// A statement's result: its error is the statement's `error`.
pub(super) type R<T> = Result<T, String>;

/// Runs one statement.
pub async fn run(ctx: &Ctx<'_>, stmt: &Statement) -> R<Vec<SeriesOut>> {
    match stmt {
        Statement::ShowDatabases => Ok(vec![SeriesOut {
            name: Some("databases".into()),
            columns: vec!["name".into()],
            values: vec![vec![Val::S(DATABASE.into())]],
            ..Default::default()
        }]),
        Statement::CreateDatabase(_) => Ok(Vec::new()),
        Statement::ShowRetentionPolicies { database } => {
            need_db(ctx, database.as_deref())?;
            Ok(vec![SeriesOut {
                name: None,
                columns: ["name", "duration", "shardGroupDuration", "replicaN", "default"]
                    .map(String::from)
                    .to_vec(),
                values: vec![vec![
                    Val::S("autogen".into()),
                    Val::S("0s".into()),
                    Val::S("168h0m0s".into()),
                    Val::I(1),
                    Val::B(true),
                ]],
                ..Default::default()
            }])
        }
        Statement::ShowMeasurements(s) => {
            need_db(ctx, s.database.as_deref())?;
            let from = match &s.with_measurement {
                Some(w) => vec![name_sel(&w.source)],
                None => Vec::new(),
            };
            let filter = show_filter(ctx, s.condition.as_ref())?;
            let names = match query(
                ctx,
                CatalogQuery::Measurements {
                    from,
                    filter,
                    limit: want(ctx, s.limit, s.offset),
                },
            )
            .await?
            {
                CatalogAnswer::Names(n) => n,
                _ => return Err("catalog: unexpected answer".into()),
            };
            let names = page(ctx, names, s.limit, s.offset, "measurements")?;
            if names.is_empty() {
                return Ok(Vec::new());
            }
            Ok(vec![SeriesOut {
                name: Some("measurements".into()),
                columns: vec!["name".into()],
                values: names.into_iter().map(|n| vec![Val::S(n)]).collect(),
                ..Default::default()
            }])
        }
        Statement::ShowTagKeys(s) => {
            need_db(ctx, s.database.as_deref())?;
            let filter = show_filter(ctx, s.condition.as_ref())?;
            let from = s.from.iter().map(name_sel).collect();
            let limit = ctx.limits.max_series + 1;
            let CatalogAnswer::Keys(per) = query(
                ctx,
                CatalogQuery::TagKeys {
                    from,
                    filter,
                    limit,
                },
            )
            .await?
            else {
                return Err("catalog: unexpected answer".into());
            };
            over(ctx, per.iter().map(|p| p.1.len()).sum(), "tag keys")?;
            let per = paged(per, s.slimit, s.soffset);
            Ok(per_measurement(per, s.limit, s.offset, &["tagKey"], |k| {
                vec![Val::S(k)]
            }))
        }
        Statement::ShowTagValues(s) => {
            need_db(ctx, s.database.as_deref())?;
            let filter = show_filter(ctx, s.condition.as_ref())?;
            let from = s.from.iter().map(name_sel).collect();
            let keys = match &s.key {
                TagKeyFilter::Eq(k) => KeySel::Eq(k.clone()),
                TagKeyFilter::Neq(k) => KeySel::Neq(k.clone()),
                TagKeyFilter::In(v) => KeySel::In(v.clone()),
                TagKeyFilter::Regex(r) => KeySel::Regex {
                    pattern: r.source.clone(),
                    negate: false,
                },
                TagKeyFilter::NotRegex(r) => KeySel::Regex {
                    pattern: r.source.clone(),
                    negate: true,
                },
            };
            let CatalogAnswer::TagValues(per) = query(
                ctx,
                CatalogQuery::TagValues {
                    from,
                    keys,
                    filter,
                    limit: ctx.limits.max_series + 1,
                },
            )
            .await?
            else {
                return Err("catalog: unexpected answer".into());
            };
            over(ctx, per.iter().map(|p| p.1.len()).sum(), "tag values")?;
            Ok(per_measurement(
                per,
                s.limit,
                s.offset,
                &["key", "value"],
                |(k, v)| vec![Val::S(k), Val::S(v)],
            ))
        }
        Statement::ShowFieldKeys(s) => {
            need_db(ctx, s.database.as_deref())?;
            let from = s.from.iter().map(name_sel).collect();
            let CatalogAnswer::Keys(per) = query(
                ctx,
                CatalogQuery::FieldKeys {
                    from,
                    limit: ctx.limits.max_series + 1,
                },
            )
            .await?
            else {
                return Err("catalog: unexpected answer".into());
            };
            over(ctx, per.iter().map(|p| p.1.len()).sum(), "field keys")?;
            Ok(per_measurement(
                per,
                s.limit,
                s.offset,
                &["fieldKey", "fieldType"],
                |k| vec![Val::S(k), Val::S("float".into())],
            ))
        }
        Statement::ShowSeries(s) => {
            need_db(ctx, s.database.as_deref())?;
            let filter = show_filter(ctx, s.condition.as_ref())?;
            let from = s.from.iter().map(name_sel).collect();
            let series = series(ctx, from, filter, want(ctx, s.limit, s.offset)).await?;
            let mut keys: Vec<String> = series.into_iter().map(|s| s.key).collect();
            keys.sort();
            let keys = page(ctx, keys, s.limit, s.offset, "series")?;
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            Ok(vec![SeriesOut {
                name: None,
                columns: vec!["key".into()],
                values: keys.into_iter().map(|k| vec![Val::S(k)]).collect(),
                ..Default::default()
            }])
        }
        Statement::Select(s) => super::select::select(ctx, s).await,
        other => Err(format!(
            "not supported by xtdb (its catalog is made by writes, its retention by --retention): {other}"
        )),
    }
}

pub(super) fn need_db(ctx: &Ctx<'_>, on: Option<&str>) -> R<()> {
    if ctx.db.is_none_or(str::is_empty) && on.is_none() {
        return Err("database name required".into());
    }
    Ok(())
}

pub(super) async fn query(ctx: &Ctx<'_>, q: CatalogQuery) -> R<CatalogAnswer> {
    ctx.catalog.query(q).await.map_err(|f| f.to_string())
}

pub(super) async fn series(
    ctx: &Ctx<'_>,
    from: Vec<NameSel>,
    filter: TagFilter,
    limit: usize,
) -> R<Vec<SeriesInfo>> {
    match query(
        ctx,
        CatalogQuery::Series {
            from,
            filter,
            limit,
        },
    )
    .await?
    {
        CatalogAnswer::Series(s) => Ok(s),
        _ => Err("catalog: unexpected answer".into()),
    }
}

/// How many items to ask the catalog for: `offset + limit`, at most one
/// over the bound (so going over it is seen).
fn want(ctx: &Ctx<'_>, limit: Option<u64>, offset: Option<u64>) -> usize {
    let max = ctx.limits.max_series + 1;
    match limit {
        Some(l) if l > 0 => (offset.unwrap_or(0).saturating_add(l)).min(max as u64) as usize,
        _ => max,
    }
}

pub(super) fn over(ctx: &Ctx<'_>, n: usize, what: &str) -> R<()> {
    if n > ctx.limits.max_series {
        return Err(format!(
            "the answer has more than {} {what} (the server's --query-max-series): add FROM, WHERE or LIMIT",
            ctx.limits.max_series
        ));
    }
    Ok(())
}

fn page<T>(
    ctx: &Ctx<'_>,
    v: Vec<T>,
    limit: Option<u64>,
    offset: Option<u64>,
    what: &str,
) -> R<Vec<T>> {
    if limit.is_none_or(|l| l == 0) {
        over(ctx, v.len(), what)?;
    }
    Ok(paged(v, limit, offset))
}

/// `OFFSET` then `LIMIT` (0 is no limit, as in InfluxDB).
/// One series per measurement, its rows paged by `limit`/`offset`
/// (measurements left without rows are dropped, as InfluxDB does).
fn per_measurement<T>(
    per: Vec<(String, Vec<T>)>,
    limit: Option<u64>,
    offset: Option<u64>,
    columns: &[&str],
    row: impl Fn(T) -> Vec<Val>,
) -> Vec<SeriesOut> {
    per.into_iter()
        .filter_map(|(m, items)| {
            let items = paged(items, limit, offset);
            (!items.is_empty()).then(|| SeriesOut {
                name: Some(m),
                columns: columns.iter().map(|c| c.to_string()).collect(),
                values: items.into_iter().map(&row).collect(),
                ..Default::default()
            })
        })
        .collect()
}

pub(super) fn paged<T>(v: Vec<T>, limit: Option<u64>, offset: Option<u64>) -> Vec<T> {
    let off = offset.unwrap_or(0).min(usize::MAX as u64) as usize;
    let lim = match limit {
        Some(l) if l > 0 => l.min(usize::MAX as u64) as usize,
        _ => usize::MAX,
    };
    v.into_iter().skip(off).take(lim).collect()
}

pub(super) fn name_sel(m: &Measurement) -> NameSel {
    match &m.name {
        MeasurementName::Name(n) => NameSel::Name(n.clone()),
        MeasurementName::Regex(r) => NameSel::Regex(r.source.clone()),
    }
}

/// Replaces `$name` by the request's `params`.
fn bind(e: &mut Expr, params: &Map<String, Value>) -> R<()> {
    match e {
        Expr::BoundParam(name) => {
            let v = params
                .get(name.as_str())
                .ok_or_else(|| format!("missing parameter: {name}"))?;
            *e = match v {
                Value::String(s) => Expr::String(s.clone()),
                Value::Bool(b) => Expr::Bool(*b),
                Value::Number(n) => match n.as_i64() {
                    Some(i) => Expr::Integer(i),
                    None => Expr::Number(n.as_f64().unwrap_or(f64::NAN)),
                },
                other => return Err(format!("unsupported parameter {name}: {other}")),
            };
        }
        Expr::Binary(b) => {
            bind(&mut b.lhs, params)?;
            bind(&mut b.rhs, params)?;
        }
        Expr::And(v) | Expr::Or(v) => {
            for x in v {
                bind(x, params)?;
            }
        }
        Expr::Paren(x) => bind(x, params)?,
        Expr::Call(c) => {
            for x in &mut c.args {
                bind(x, params)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The condition with parameters bound, split into time bounds (ns) and
/// the tag filter.
pub(super) fn condition(
    ctx: &Ctx<'_>,
    cond: Option<&Expr>,
) -> R<(Option<i64>, Option<i64>, TagFilter)> {
    let Some(cond) = cond else {
        return Ok((None, None, TagFilter::True));
    };
    let mut cond = cond.clone();
    bind(&mut cond, ctx.params)?;
    let t = time_range(&cond, ctx.now_ns).map_err(|e| e.message)?;
    if t.is_empty() {
        return Ok((t.start, t.end, TagFilter::False));
    }
    let filter = match &t.rest {
        Some(r) => tag_filter(r)?,
        None => TagFilter::True,
    };
    Ok((t.start, t.end, filter))
}

/// Time bounds (ns), the tag filter, and the condition on field values
/// with the fields it names.
pub(super) type SelectCondition = (
    Option<i64>,
    Option<i64>,
    TagFilter,
    Option<(FieldCond, Vec<String>)>,
);

/// A `SELECT`'s condition: time bounds (ns), the tag filter choosing the
/// series, and the condition on field values with the fields it names
/// (its terms under the top-level `AND` that compare with a number or
/// another field; a term mixing tags and fields under `OR` is refused).
pub(super) fn select_condition(ctx: &Ctx<'_>, cond: Option<&Expr>) -> R<SelectCondition> {
    let Some(cond) = cond else {
        return Ok((None, None, TagFilter::True, None));
    };
    let mut cond = cond.clone();
    bind(&mut cond, ctx.params)?;
    let t = time_range(&cond, ctx.now_ns).map_err(|e| e.message)?;
    if t.is_empty() {
        return Ok((t.start, t.end, TagFilter::False, None));
    }
    let Some(rest) = &t.rest else {
        return Ok((t.start, t.end, TagFilter::True, None));
    };
    let (mut tags, mut fields) = (Vec::new(), Vec::new());
    split_terms(rest, &mut tags, &mut fields)?;
    let filter = match tags.len() {
        0 => TagFilter::True,
        1 => tag_filter(&tags[0])?,
        _ => TagFilter::And(tags.iter().map(tag_filter).collect::<R<_>>()?),
    };
    let field = if fields.is_empty() {
        None
    } else {
        let mut names = Vec::new();
        let mut c: Vec<FieldCond> = fields
            .iter()
            .map(|e| field_cond(e, &mut names))
            .collect::<R<_>>()?;
        Some((
            if c.len() == 1 {
                c.remove(0)
            } else {
                FieldCond::And(c)
            },
            names,
        ))
    };
    Ok((t.start, t.end, filter, field))
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Tag,
    Field,
    Mixed,
}

/// Whether `e` is about tags (compares with a string or a regex), about
/// fields (compares with a number or another field), or both.
fn kind(e: &Expr) -> Kind {
    match e {
        Expr::Paren(x) => kind(x),
        Expr::And(v) | Expr::Or(v) => {
            let mut k = None;
            for x in v {
                match (k, kind(x)) {
                    (_, Kind::Mixed) => return Kind::Mixed,
                    (None, x) => k = Some(x),
                    (Some(a), b) if a != b => return Kind::Mixed,
                    _ => {}
                }
            }
            k.unwrap_or(Kind::Tag)
        }
        Expr::Binary(b) => {
            let texty = |x: &Expr| matches!(x, Expr::String(_) | Expr::Regex(_));
            if matches!(b.op, BinaryOp::EqRegex | BinaryOp::NeqRegex)
                || texty(&b.lhs)
                || texty(&b.rhs)
            {
                Kind::Tag
            } else {
                Kind::Field
            }
        }
        _ => Kind::Tag,
    }
}

fn split_terms(e: &Expr, tags: &mut Vec<Expr>, fields: &mut Vec<Expr>) -> R<()> {
    match e {
        Expr::And(v) => {
            for x in v {
                split_terms(x, tags, fields)?;
            }
        }
        Expr::Paren(x) if matches!(**x, Expr::And(_)) => split_terms(x, tags, fields)?,
        x => match kind(x) {
            Kind::Tag => tags.push(x.clone()),
            Kind::Field => fields.push(x.clone()),
            Kind::Mixed => {
                return Err(format!(
                    "xtdb cannot combine conditions on tags and on field values under OR: {x}"
                ))
            }
        },
    }
    Ok(())
}

/// The condition on field values of `e` (its fields named in `names`).
fn field_cond(e: &Expr, names: &mut Vec<String>) -> R<FieldCond> {
    Ok(match e {
        Expr::Paren(x) => field_cond(x, names)?,
        Expr::And(v) => FieldCond::And(v.iter().map(|x| field_cond(x, names)).collect::<R<_>>()?),
        Expr::Or(v) => FieldCond::Or(v.iter().map(|x| field_cond(x, names)).collect::<R<_>>()?),
        Expr::Bool(b) => FieldCond::Const(*b),
        Expr::Binary(b)
            if matches!(
                b.op,
                BinaryOp::Eq
                    | BinaryOp::Neq
                    | BinaryOp::Lt
                    | BinaryOp::Lte
                    | BinaryOp::Gt
                    | BinaryOp::Gte
            ) =>
        {
            FieldCond::Cmp(b.op, operand(&b.lhs, names)?, operand(&b.rhs, names)?)
        }
        other => {
            return Err(format!(
                "xtdb supports comparisons (=, !=, <>, <, <=, >, >=) of fields with numbers in WHERE: {other}"
            ))
        }
    })
}

fn operand(e: &Expr, names: &mut Vec<String>) -> R<Operand> {
    Ok(match e {
        Expr::Paren(x) => operand(x, names)?,
        Expr::Integer(i) => Operand::Num(*i as f64),
        Expr::Unsigned(u) => Operand::Num(*u as f64),
        Expr::Number(f) => Operand::Num(*f),
        Expr::VarRef(v) => {
            let i = names.iter().position(|n| *n == v.name).unwrap_or_else(|| {
                names.push(v.name.clone());
                names.len() - 1
            });
            Operand::Field(i)
        }
        Expr::Binary(b)
            if matches!(
                b.op,
                BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod
            ) =>
        {
            Operand::Bin(
                b.op,
                Box::new(operand(&b.lhs, names)?),
                Box::new(operand(&b.rhs, names)?),
            )
        }
        other => {
            return Err(format!(
                "not supported by xtdb in a condition on field values: {other}"
            ))
        }
    })
}

fn show_filter(ctx: &Ctx<'_>, cond: Option<&Expr>) -> R<TagFilter> {
    Ok(condition(ctx, cond)?.2)
}

fn tag_filter(e: &Expr) -> R<TagFilter> {
    let unsupported = || {
        format!(
            "xtdb supports only tag conditions in WHERE (tag = 'v', tag != 'v', tag =~ /re/, tag !~ /re/, AND, OR) besides time: {e}"
        )
    };
    Ok(match e {
        Expr::Paren(x) => tag_filter(x)?,
        Expr::And(v) => TagFilter::And(v.iter().map(tag_filter).collect::<R<_>>()?),
        Expr::Or(v) => TagFilter::Or(v.iter().map(tag_filter).collect::<R<_>>()?),
        Expr::Bool(true) => TagFilter::True,
        Expr::Bool(false) => TagFilter::False,
        Expr::Binary(b) => {
            let (name, other) = match (&b.lhs, &b.rhs) {
                (Expr::VarRef(v), o) => (v.name.clone(), o),
                (o, Expr::VarRef(v)) => (v.name.clone(), o),
                _ => return Err(unsupported()),
            };
            match (b.op, other) {
                (BinaryOp::Eq, Expr::String(s)) => TagFilter::Eq(name, s.clone()),
                (BinaryOp::Neq, Expr::String(s)) => TagFilter::Neq(name, s.clone()),
                (BinaryOp::EqRegex, Expr::Regex(r)) => TagFilter::Regex {
                    key: name,
                    pattern: r.source.clone(),
                    negate: false,
                },
                (BinaryOp::NeqRegex, Expr::Regex(r)) => TagFilter::Regex {
                    key: name,
                    pattern: r.source.clone(),
                    negate: true,
                },
                _ => return Err(unsupported()),
            }
        }
        _ => return Err(unsupported()),
    })
}
