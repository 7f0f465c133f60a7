//! The InfluxQL syntax tree and its canonical text form.
//!
//! Owns the shape of a parsed query: statements, expressions, sources,
//! dimensions; and `Display`, which prints any tree the parser can produce
//! back as InfluxQL that parses to an equal tree (keywords upper case,
//! identifiers quoted only when needed, one space between tokens). It must
//! never hold anything resolved against a database (no tag ids, no
//! compiled regexes): it is the text, structured.
//!
//! Conventions:
//! - Identifiers are stored unescaped and unquoted; `""` (empty) database or
//!   retention-policy segments are stored as `None`.
//! - Durations and times are nanoseconds (`i64`), as in InfluxDB.
//! - `AND` / `OR` chains are flat lists ([`Expr::And`], [`Expr::Or`]), so a
//!   10,000-term `OR` is a vector, not a 10,000-deep tree; every other tree
//!   is at most [`super::MAX_DEPTH`] deep, so recursive walks are safe.
//! - A unary minus on a variable is `-1 * x`, as InfluxDB parses it; on a
//!   literal it is folded into the literal.
//! - [`Span`]s are byte ranges into the query for error messages; they never
//!   take part in equality, so trees compare by meaning.

use std::fmt::{self, Display, Formatter, Write as _};

use super::lexer::{is_ident_char, is_ident_first, Kw};
use super::time::format_duration;

/// A byte range `[start, end)` into the query text. Always equal to any
/// other span under `==`, so that trees compare by meaning only.
#[derive(Debug, Clone, Copy, Default, Eq)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl PartialEq for Span {
    fn eq(&self, _: &Span) -> bool {
        true
    }
}

impl Span {
    /// The span `[start, end)`.
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }
}

/// One InfluxQL statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// `SELECT ...`
    Select(Box<SelectStatement>),
    /// `EXPLAIN [ANALYZE] SELECT ...`
    Explain {
        /// `ANALYZE` was given.
        analyze: bool,
        /// The query explained.
        statement: Box<SelectStatement>,
    },
    /// `SHOW DATABASES`
    ShowDatabases,
    /// `SHOW MEASUREMENTS ...`
    ShowMeasurements(ShowMeasurements),
    /// `SHOW RETENTION POLICIES [ON db]`
    ShowRetentionPolicies {
        /// `ON db`
        database: Option<String>,
    },
    /// `SHOW FIELD KEYS ...`
    ShowFieldKeys(ShowFieldKeys),
    /// `SHOW TAG KEYS ...`
    ShowTagKeys(ShowTagKeys),
    /// `SHOW TAG VALUES ... WITH KEY ...`
    ShowTagValues(ShowTagValues),
    /// `SHOW SERIES ...`
    ShowSeries(ShowSeries),
    /// `SHOW [SERIES|MEASUREMENT|TAG KEY|TAG VALUES|FIELD KEY] [EXACT] CARDINALITY ...`
    ShowCardinality(ShowCardinality),
    /// `CREATE DATABASE name [WITH ...]`
    CreateDatabase(CreateDatabase),
    /// `DROP DATABASE name`
    DropDatabase {
        /// The database.
        name: String,
    },
    /// `DROP MEASUREMENT name`
    DropMeasurement {
        /// The measurement.
        name: String,
    },
    /// `DROP SERIES [FROM ...] [WHERE ...]`
    DropSeries(SeriesFilter),
    /// `DELETE [FROM ...] [WHERE ...]`
    Delete(SeriesFilter),
    /// `CREATE RETENTION POLICY ...`
    CreateRetentionPolicy(CreateRetentionPolicy),
    /// `ALTER RETENTION POLICY ...`
    AlterRetentionPolicy(AlterRetentionPolicy),
    /// `DROP RETENTION POLICY name ON db`
    DropRetentionPolicy {
        /// The policy.
        name: String,
        /// Its database.
        database: String,
    },
    /// `CREATE CONTINUOUS QUERY ...`
    CreateContinuousQuery(CreateContinuousQuery),
    /// `DROP CONTINUOUS QUERY name ON db`
    DropContinuousQuery {
        /// The query.
        name: String,
        /// Its database.
        database: String,
    },
    /// `CREATE SUBSCRIPTION name ON db.rp DESTINATIONS ALL|ANY 'url', ...`
    CreateSubscription(CreateSubscription),
    /// `DROP SUBSCRIPTION name ON db.rp`
    DropSubscription {
        /// The subscription.
        name: String,
        /// Its database.
        database: String,
        /// Its retention policy.
        retention_policy: String,
    },
    /// `DROP SHARD id`
    DropShard {
        /// The shard id.
        id: u64,
    },
    /// `CREATE USER name WITH PASSWORD 'p' [WITH ALL PRIVILEGES]`
    CreateUser {
        /// The user.
        name: String,
        /// The password.
        password: String,
        /// `WITH ALL PRIVILEGES`
        admin: bool,
    },
    /// `DROP USER name`
    DropUser {
        /// The user.
        name: String,
    },
    /// `SET PASSWORD FOR name = 'p'`
    SetPassword {
        /// The user.
        name: String,
        /// The new password.
        password: String,
    },
    /// `GRANT priv ON db TO user` or `GRANT ALL [PRIVILEGES] TO user` (`on` is `None`).
    Grant {
        /// The privilege.
        privilege: Privilege,
        /// `ON db`; `None` for the admin grant.
        on: Option<String>,
        /// The user.
        user: String,
    },
    /// `REVOKE priv ON db FROM user` or `REVOKE ALL [PRIVILEGES] FROM user`.
    Revoke {
        /// The privilege.
        privilege: Privilege,
        /// `ON db`; `None` for the admin revoke.
        on: Option<String>,
        /// The user.
        user: String,
    },
    /// `SHOW USERS`
    ShowUsers,
    /// `SHOW GRANTS FOR user`
    ShowGrants {
        /// The user.
        user: String,
    },
    /// `SHOW CONTINUOUS QUERIES`
    ShowContinuousQueries,
    /// `SHOW QUERIES`
    ShowQueries,
    /// `SHOW SHARDS`
    ShowShards,
    /// `SHOW SHARD GROUPS`
    ShowShardGroups,
    /// `SHOW SUBSCRIPTIONS`
    ShowSubscriptions,
    /// `SHOW STATS [FOR 'module']`
    ShowStats {
        /// `FOR 'module'`
        module: Option<String>,
    },
    /// `SHOW DIAGNOSTICS [FOR 'module']`
    ShowDiagnostics {
        /// `FOR 'module'`
        module: Option<String>,
    },
    /// `KILL QUERY id [ON host]`
    KillQuery {
        /// The query id.
        id: u64,
        /// `ON host`
        host: Option<String>,
    },
}

/// `SELECT fields [INTO target] FROM sources [WHERE] [GROUP BY] [fill()]
/// [ORDER BY] [LIMIT] [OFFSET] [SLIMIT] [SOFFSET] [tz()]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectStatement {
    /// The selected expressions, in order (at least one).
    pub fields: Vec<Field>,
    /// `INTO`
    pub into: Option<Target>,
    /// `FROM` (at least one).
    pub from: Vec<Source>,
    /// `WHERE`
    pub condition: Option<Expr>,
    /// `GROUP BY`
    pub group_by: Vec<Dimension>,
    /// `fill(...)`; `None` when absent (InfluxDB then fills with null).
    pub fill: Option<Fill>,
    /// `ORDER BY time [ASC|DESC]`
    pub order: Option<Order>,
    /// `LIMIT n` (InfluxDB treats 0 as no limit).
    pub limit: Option<u64>,
    /// `OFFSET n`
    pub offset: Option<u64>,
    /// `SLIMIT n`
    pub slimit: Option<u64>,
    /// `SOFFSET n`
    pub soffset: Option<u64>,
    /// `tz('Zone/Name')`, a zone of the IANA database (checked by the parser).
    pub tz: Option<String>,
}

/// One selected expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// The expression (a regex field is [`Expr::Regex`]).
    pub expr: Expr,
    /// `AS alias`
    pub alias: Option<String>,
    /// Where the field is in the query.
    pub span: Span,
}

/// `INTO [db.][rp.]measurement` or `INTO db.rp.:MEASUREMENT`.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Database.
    pub database: Option<String>,
    /// Retention policy.
    pub retention_policy: Option<String>,
    /// The measurement; `None` for `:MEASUREMENT` (the source's name).
    pub measurement: Option<String>,
}

/// A `FROM` source.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A measurement name or regex, maybe qualified.
    Measurement(Measurement),
    /// `(SELECT ...)`
    Subquery(Box<SelectStatement>),
}

/// `[db.][rp.]name`, `[db.][rp.]/regex/`.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// Database.
    pub database: Option<String>,
    /// Retention policy.
    pub retention_policy: Option<String>,
    /// The name or the regex.
    pub name: MeasurementName,
    /// Where it is in the query.
    pub span: Span,
}

/// A measurement named or matched.
#[derive(Debug, Clone, PartialEq)]
pub enum MeasurementName {
    /// An exact name.
    Name(String),
    /// Every measurement the regex matches.
    Regex(Regex),
}

/// A regex literal: its source text between the slashes, `\/` unescaped.
/// Not compiled here: the executor compiles it (Go RE2 syntax in InfluxDB).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Regex {
    /// The pattern.
    pub source: String,
}

/// A `GROUP BY` item.
#[derive(Debug, Clone, PartialEq)]
pub enum Dimension {
    /// `time(interval[, offset])`
    Time {
        /// Bucket width, ns (may be zero or negative as written; the
        /// executor refuses those as InfluxDB does).
        interval: i64,
        /// The offset argument.
        offset: Option<TimeOffset>,
    },
    /// A tag key (`host`, `"host"`).
    Tag(String),
    /// `*`: every tag.
    Wildcard,
    /// Every tag key the regex matches.
    Regex(Regex),
    /// Anything else the grammar allows (`time(v)`, `1`, `host::field`):
    /// InfluxDB parses it and refuses it when planning; so must the executor.
    Other(Expr),
}

/// The offset argument of `time(interval, offset)`.
#[derive(Debug, Clone, PartialEq)]
pub enum TimeOffset {
    /// A duration, ns (may be negative).
    Duration(i64),
    /// `now()`: align buckets to the query's now.
    Now,
}

/// `fill(...)`.
#[derive(Debug, Clone, PartialEq)]
pub enum Fill {
    /// `fill(null)`
    Null,
    /// `fill(none)`
    None,
    /// `fill(previous)`
    Previous,
    /// `fill(linear)`
    Linear,
    /// `fill(<integer>)`
    Integer(i64),
    /// `fill(<float>)`
    Number(f64),
}

/// `ORDER BY time ASC|DESC` (InfluxDB allows ordering by time only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Oldest first (the default).
    Asc,
    /// Newest first.
    Desc,
}

/// A privilege in `GRANT` / `REVOKE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    /// `READ`
    Read,
    /// `WRITE`
    Write,
    /// `ALL [PRIVILEGES]`
    All,
}

/// `SHOW MEASUREMENTS [ON db] [WITH MEASUREMENT =|=~ m] [WHERE] [ORDER BY] [LIMIT] [OFFSET]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ShowMeasurements {
    /// `ON db`
    pub database: Option<String>,
    /// `WITH MEASUREMENT = m` / `=~ /re/`.
    pub with_measurement: Option<WithMeasurement>,
    /// `WHERE` (tag conditions)
    pub condition: Option<Expr>,
    /// `ORDER BY`
    pub order: Option<Order>,
    /// `LIMIT`
    pub limit: Option<u64>,
    /// `OFFSET`
    pub offset: Option<u64>,
}

/// `WITH MEASUREMENT op source`.
#[derive(Debug, Clone, PartialEq)]
pub struct WithMeasurement {
    /// `=~` (true) or `=` (false). InfluxDB takes either with a name or a regex.
    pub regex_op: bool,
    /// The name or regex.
    pub source: Measurement,
}

/// `SHOW FIELD KEYS [ON db] [FROM ...] [ORDER BY] [LIMIT] [OFFSET]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ShowFieldKeys {
    /// `ON db`
    pub database: Option<String>,
    /// `FROM`
    pub from: Vec<Measurement>,
    /// `ORDER BY`
    pub order: Option<Order>,
    /// `LIMIT`
    pub limit: Option<u64>,
    /// `OFFSET`
    pub offset: Option<u64>,
}

/// `SHOW TAG KEYS [ON db] [FROM ...] [WHERE] [ORDER BY] [LIMIT] [OFFSET] [SLIMIT] [SOFFSET]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ShowTagKeys {
    /// `ON db`
    pub database: Option<String>,
    /// `FROM`
    pub from: Vec<Measurement>,
    /// `WHERE`
    pub condition: Option<Expr>,
    /// `ORDER BY`
    pub order: Option<Order>,
    /// `LIMIT`
    pub limit: Option<u64>,
    /// `OFFSET`
    pub offset: Option<u64>,
    /// `SLIMIT`
    pub slimit: Option<u64>,
    /// `SOFFSET`
    pub soffset: Option<u64>,
}

/// `SHOW TAG VALUES [ON db] [FROM ...] WITH KEY ... [WHERE] [ORDER BY] [LIMIT] [OFFSET]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ShowTagValues {
    /// `ON db`
    pub database: Option<String>,
    /// `FROM`
    pub from: Vec<Measurement>,
    /// `WITH KEY ...` (required in InfluxDB 1.x)
    pub key: TagKeyFilter,
    /// `WHERE`
    pub condition: Option<Expr>,
    /// `ORDER BY`
    pub order: Option<Order>,
    /// `LIMIT`
    pub limit: Option<u64>,
    /// `OFFSET`
    pub offset: Option<u64>,
}

/// Which tag keys `SHOW TAG VALUES` lists.
#[derive(Debug, Clone, PartialEq)]
pub enum TagKeyFilter {
    /// `KEY = "k"`
    Eq(String),
    /// `KEY != "k"`
    Neq(String),
    /// `KEY IN ("a", "b")`
    In(Vec<String>),
    /// `KEY =~ /re/`
    Regex(Regex),
    /// `KEY !~ /re/`
    NotRegex(Regex),
}

/// `SHOW SERIES [ON db] [FROM ...] [WHERE] [ORDER BY] [LIMIT] [OFFSET]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ShowSeries {
    /// `ON db`
    pub database: Option<String>,
    /// `FROM`
    pub from: Vec<Measurement>,
    /// `WHERE`
    pub condition: Option<Expr>,
    /// `ORDER BY`
    pub order: Option<Order>,
    /// `LIMIT`
    pub limit: Option<u64>,
    /// `OFFSET`
    pub offset: Option<u64>,
}

/// What a `SHOW ... CARDINALITY` counts.
#[derive(Debug, Clone, PartialEq)]
pub enum CardinalityOf {
    /// `SHOW SERIES [EXACT] CARDINALITY`
    Series,
    /// `SHOW MEASUREMENT [EXACT] CARDINALITY`
    Measurement,
    /// `SHOW TAG KEY [EXACT] CARDINALITY`
    TagKey,
    /// `SHOW TAG VALUES [EXACT] CARDINALITY ... WITH KEY ...`
    TagValues(TagKeyFilter),
    /// `SHOW FIELD KEY [EXACT] CARDINALITY`
    FieldKey,
}

/// `SHOW ... [EXACT] CARDINALITY [ON db] [FROM ...] [WHERE] [GROUP BY] [LIMIT] [OFFSET]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ShowCardinality {
    /// What is counted.
    pub of: CardinalityOf,
    /// `EXACT`
    pub exact: bool,
    /// `ON db`
    pub database: Option<String>,
    /// `FROM`
    pub from: Vec<Measurement>,
    /// `WHERE`
    pub condition: Option<Expr>,
    /// `GROUP BY`
    pub group_by: Vec<Dimension>,
    /// `LIMIT`
    pub limit: Option<u64>,
    /// `OFFSET`
    pub offset: Option<u64>,
}

/// `FROM ... WHERE ...` of `DROP SERIES` and `DELETE` (at least one given;
/// sources are unqualified measurements).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SeriesFilter {
    /// `FROM`
    pub from: Vec<Measurement>,
    /// `WHERE`
    pub condition: Option<Expr>,
}

/// `CREATE DATABASE name [WITH [DURATION d] [REPLICATION n] [SHARD DURATION d] [NAME rp]]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CreateDatabase {
    /// The database.
    pub name: String,
    /// `WITH` was given (a default retention policy is described).
    pub with: bool,
    /// `DURATION d` (ns; 0 is `INF`).
    pub duration: Option<i64>,
    /// `REPLICATION n`
    pub replication: Option<u32>,
    /// `SHARD DURATION d` (ns)
    pub shard_duration: Option<i64>,
    /// `NAME rp`
    pub rp_name: Option<String>,
}

/// `CREATE RETENTION POLICY name ON db DURATION d REPLICATION n [SHARD DURATION d] [DEFAULT]`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateRetentionPolicy {
    /// The policy.
    pub name: String,
    /// Its database.
    pub database: String,
    /// ns; 0 is `INF`.
    pub duration: i64,
    /// Replication factor.
    pub replication: u32,
    /// ns
    pub shard_duration: Option<i64>,
    /// `DEFAULT`
    pub default: bool,
}

/// `ALTER RETENTION POLICY name ON db [DURATION d] [REPLICATION n] [SHARD DURATION d] [DEFAULT]`
/// (at least one option, each once, any order).
#[derive(Debug, Clone, PartialEq)]
pub struct AlterRetentionPolicy {
    /// The policy (`DEFAULT` as a name is `"default"`).
    pub name: String,
    /// Its database.
    pub database: String,
    /// ns; 0 is `INF`.
    pub duration: Option<i64>,
    /// Replication factor.
    pub replication: Option<u32>,
    /// ns
    pub shard_duration: Option<i64>,
    /// `DEFAULT`
    pub default: bool,
}

/// `CREATE CONTINUOUS QUERY name ON db [RESAMPLE [EVERY d] [FOR d]] BEGIN select END`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateContinuousQuery {
    /// The query's name.
    pub name: String,
    /// Its database.
    pub database: String,
    /// `RESAMPLE EVERY d` (ns)
    pub resample_every: Option<i64>,
    /// `RESAMPLE FOR d` (ns)
    pub resample_for: Option<i64>,
    /// The `SELECT ... INTO ...`.
    pub query: Box<SelectStatement>,
}

/// `CREATE SUBSCRIPTION name ON db.rp DESTINATIONS ALL|ANY 'url', ...`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateSubscription {
    /// The subscription.
    pub name: String,
    /// Its database.
    pub database: String,
    /// Its retention policy.
    pub retention_policy: String,
    /// `ANY` (true) or `ALL`.
    pub any: bool,
    /// The destination URLs.
    pub destinations: Vec<String>,
}

/// An expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A field, tag or `time` reference.
    VarRef(VarRef),
    /// `name(args)`; the name is lower case.
    Call(Call),
    /// `DISTINCT field` (without parentheses).
    Distinct(String),
    /// A binary operation other than `AND` / `OR`.
    Binary(Box<Binary>),
    /// `a AND b AND ...` (two or more terms, none a bare `And`).
    And(Vec<Expr>),
    /// `a OR b OR ...` (two or more terms, none a bare `Or`).
    Or(Vec<Expr>),
    /// `( expr )`
    Paren(Box<Expr>),
    /// An integer literal.
    Integer(i64),
    /// An integer literal above `i64::MAX`.
    Unsigned(u64),
    /// A float literal (always finite).
    Number(f64),
    /// A single-quoted string.
    String(String),
    /// `true` / `false`
    Bool(bool),
    /// A duration literal, ns.
    Duration(i64),
    /// `/regex/` (right of `=~` / `!~`, a field, a call argument).
    Regex(Regex),
    /// `*`, `*::field`, `*::tag`.
    Wildcard(Option<WildcardType>),
    /// `$name`: bound from the request's `params` by the executor.
    BoundParam(String),
}

/// What `*::type` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WildcardType {
    /// `*::field`
    Field,
    /// `*::tag`
    Tag,
}

/// `name[::type]`; `a.b` and `"a.b"` are the same name.
#[derive(Debug, Clone, PartialEq)]
pub struct VarRef {
    /// The name.
    pub name: String,
    /// The `::type` cast.
    pub data_type: Option<DataType>,
    /// Where it is.
    pub span: Span,
}

/// A `::type` cast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    /// `::float`
    Float,
    /// `::integer`
    Integer,
    /// `::unsigned`
    Unsigned,
    /// `::string`
    String,
    /// `::boolean`
    Boolean,
    /// `::field`: any field type.
    Field,
    /// `::tag`
    Tag,
}

/// A function call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// Lower-case name.
    pub name: String,
    /// Arguments.
    pub args: Vec<Expr>,
    /// Where it is.
    pub span: Span,
}

/// `lhs op rhs`.
#[derive(Debug, Clone, PartialEq)]
pub struct Binary {
    /// The operator.
    pub op: BinaryOp,
    /// Left operand.
    pub lhs: Expr,
    /// Right operand (a [`Expr::Regex`] for `=~` / `!~`).
    pub rhs: Expr,
    /// From the start of `lhs` to the end of `rhs`.
    pub span: Span,
}

/// A binary operator (`AND` / `OR` are [`Expr::And`] / [`Expr::Or`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Mod,
    /// `&`
    BitAnd,
    /// `|`
    BitOr,
    /// `^`
    BitXor,
    /// `=`
    Eq,
    /// `!=` (also written `<>`)
    Neq,
    /// `=~`
    EqRegex,
    /// `!~`
    NeqRegex,
    /// `<`
    Lt,
    /// `<=`
    Lte,
    /// `>`
    Gt,
    /// `>=`
    Gte,
}

impl BinaryOp {
    /// Binding strength as InfluxDB ranks it (higher binds tighter; `OR` is
    /// 1 and `AND` 2).
    pub fn precedence(self) -> u8 {
        use BinaryOp::*;
        match self {
            Eq | Neq | EqRegex | NeqRegex | Lt | Lte | Gt | Gte => 3,
            Add | Sub | BitOr | BitXor => 4,
            Mul | Div | Mod | BitAnd => 5,
        }
    }

    /// A comparison or regex match (not allowed in `SELECT` fields).
    pub fn is_comparison(self) -> bool {
        self.precedence() == 3
    }

    /// The operator's text.
    pub fn as_str(self) -> &'static str {
        use BinaryOp::*;
        match self {
            Add => "+",
            Sub => "-",
            Mul => "*",
            Div => "/",
            Mod => "%",
            BitAnd => "&",
            BitOr => "|",
            BitXor => "^",
            Eq => "=",
            Neq => "!=",
            EqRegex => "=~",
            NeqRegex => "!~",
            Lt => "<",
            Lte => "<=",
            Gt => ">",
            Gte => ">=",
        }
    }
}

impl Expr {
    /// `time`, in any case and with any cast.
    pub fn is_time_ref(&self) -> bool {
        matches!(self, Expr::VarRef(v) if v.name.eq_ignore_ascii_case("time"))
    }
}

// ---------------------------------------------------------------- Display

/// True when `s` must be double-quoted to read back as the same identifier.
pub fn ident_needs_quotes(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        None => true,
        Some(c) if !is_ident_first(c) => true,
        Some(_) => !chars.all(is_ident_char) || Kw::lookup(s).is_some(),
    }
}

/// Writes an identifier, double-quoted and escaped when needed.
pub struct Ident<'a>(pub &'a str);

impl Display for Ident<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if !ident_needs_quotes(self.0) {
            return f.write_str(self.0);
        }
        quoted(f, self.0, '"')
    }
}

/// Writes a single-quoted string literal.
pub struct Quoted<'a>(pub &'a str);

impl Display for Quoted<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        quoted(f, self.0, '\'')
    }
}

fn quoted(f: &mut Formatter<'_>, s: &str, q: char) -> fmt::Result {
    f.write_char(q)?;
    for c in s.chars() {
        match c {
            '\n' => f.write_str("\\n")?,
            '\\' => f.write_str("\\\\")?,
            c if c == q => {
                f.write_char('\\')?;
                f.write_char(c)?;
            }
            c => f.write_char(c)?,
        }
    }
    f.write_char(q)
}

fn list<T: Display>(f: &mut Formatter<'_>, items: &[T]) -> fmt::Result {
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

fn opt_kw<T: Display>(f: &mut Formatter<'_>, kw: &str, v: &Option<T>) -> fmt::Result {
    match v {
        Some(v) => write!(f, " {kw} {v}"),
        None => Ok(()),
    }
}

fn on_db(f: &mut Formatter<'_>, db: &Option<String>) -> fmt::Result {
    match db {
        Some(db) => write!(f, " ON {}", Ident(db)),
        None => Ok(()),
    }
}

fn from(f: &mut Formatter<'_>, from: &[Measurement]) -> fmt::Result {
    if from.is_empty() {
        return Ok(());
    }
    f.write_str(" FROM ")?;
    list(f, from)
}

fn where_(f: &mut Formatter<'_>, cond: &Option<Expr>) -> fmt::Result {
    opt_kw(f, "WHERE", cond)
}

fn group_by(f: &mut Formatter<'_>, dims: &[Dimension]) -> fmt::Result {
    if dims.is_empty() {
        return Ok(());
    }
    f.write_str(" GROUP BY ")?;
    list(f, dims)
}

fn order(f: &mut Formatter<'_>, o: &Option<Order>) -> fmt::Result {
    match o {
        Some(Order::Asc) => f.write_str(" ORDER BY time ASC"),
        Some(Order::Desc) => f.write_str(" ORDER BY time DESC"),
        None => Ok(()),
    }
}

fn limits(f: &mut Formatter<'_>, limit: &Option<u64>, offset: &Option<u64>) -> fmt::Result {
    opt_kw(f, "LIMIT", limit)?;
    opt_kw(f, "OFFSET", offset)
}

struct Dur(i64);

impl Display for Dur {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

/// A retention duration: 0 prints as `INF`.
struct RpDur(i64);

impl Display for RpDur {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            f.write_str("INF")
        } else {
            Dur(self.0).fmt(f)
        }
    }
}

impl Display for Statement {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Statement::Select(s) => s.fmt(f),
            Statement::Explain { analyze, statement } => {
                f.write_str(if *analyze {
                    "EXPLAIN ANALYZE "
                } else {
                    "EXPLAIN "
                })?;
                statement.fmt(f)
            }
            Statement::ShowDatabases => f.write_str("SHOW DATABASES"),
            Statement::ShowMeasurements(s) => {
                f.write_str("SHOW MEASUREMENTS")?;
                on_db(f, &s.database)?;
                if let Some(w) = &s.with_measurement {
                    let op = if w.regex_op { "=~" } else { "=" };
                    write!(f, " WITH MEASUREMENT {op} {}", w.source)?;
                }
                where_(f, &s.condition)?;
                order(f, &s.order)?;
                limits(f, &s.limit, &s.offset)
            }
            Statement::ShowRetentionPolicies { database } => {
                f.write_str("SHOW RETENTION POLICIES")?;
                on_db(f, database)
            }
            Statement::ShowFieldKeys(s) => {
                f.write_str("SHOW FIELD KEYS")?;
                on_db(f, &s.database)?;
                from(f, &s.from)?;
                order(f, &s.order)?;
                limits(f, &s.limit, &s.offset)
            }
            Statement::ShowTagKeys(s) => {
                f.write_str("SHOW TAG KEYS")?;
                on_db(f, &s.database)?;
                from(f, &s.from)?;
                where_(f, &s.condition)?;
                order(f, &s.order)?;
                limits(f, &s.limit, &s.offset)?;
                opt_kw(f, "SLIMIT", &s.slimit)?;
                opt_kw(f, "SOFFSET", &s.soffset)
            }
            Statement::ShowTagValues(s) => {
                f.write_str("SHOW TAG VALUES")?;
                on_db(f, &s.database)?;
                from(f, &s.from)?;
                write!(f, " WITH KEY {}", s.key)?;
                where_(f, &s.condition)?;
                order(f, &s.order)?;
                limits(f, &s.limit, &s.offset)
            }
            Statement::ShowSeries(s) => {
                f.write_str("SHOW SERIES")?;
                on_db(f, &s.database)?;
                from(f, &s.from)?;
                where_(f, &s.condition)?;
                order(f, &s.order)?;
                limits(f, &s.limit, &s.offset)
            }
            Statement::ShowCardinality(s) => {
                let exact = if s.exact { " EXACT" } else { "" };
                match &s.of {
                    CardinalityOf::Series => write!(f, "SHOW SERIES{exact} CARDINALITY")?,
                    CardinalityOf::Measurement => write!(f, "SHOW MEASUREMENT{exact} CARDINALITY")?,
                    CardinalityOf::TagKey => write!(f, "SHOW TAG KEY{exact} CARDINALITY")?,
                    CardinalityOf::FieldKey => write!(f, "SHOW FIELD KEY{exact} CARDINALITY")?,
                    CardinalityOf::TagValues(_) => write!(f, "SHOW TAG VALUES{exact} CARDINALITY")?,
                }
                on_db(f, &s.database)?;
                from(f, &s.from)?;
                if let CardinalityOf::TagValues(k) = &s.of {
                    write!(f, " WITH KEY {k}")?;
                }
                where_(f, &s.condition)?;
                group_by(f, &s.group_by)?;
                limits(f, &s.limit, &s.offset)
            }
            Statement::CreateDatabase(s) => {
                write!(f, "CREATE DATABASE {}", Ident(&s.name))?;
                if s.with {
                    f.write_str(" WITH")?;
                    opt_kw(f, "DURATION", &s.duration.map(RpDur))?;
                    opt_kw(f, "REPLICATION", &s.replication)?;
                    opt_kw(f, "SHARD DURATION", &s.shard_duration.map(RpDur))?;
                    opt_kw(f, "NAME", &s.rp_name.as_deref().map(Ident))?;
                }
                Ok(())
            }
            Statement::DropDatabase { name } => write!(f, "DROP DATABASE {}", Ident(name)),
            Statement::DropMeasurement { name } => write!(f, "DROP MEASUREMENT {}", Ident(name)),
            Statement::DropSeries(s) | Statement::Delete(s) => {
                f.write_str(if matches!(self, Statement::Delete(_)) {
                    "DELETE"
                } else {
                    "DROP SERIES"
                })?;
                from(f, &s.from)?;
                where_(f, &s.condition)
            }
            Statement::CreateRetentionPolicy(s) => {
                write!(
                    f,
                    "CREATE RETENTION POLICY {} ON {} DURATION {} REPLICATION {}",
                    Ident(&s.name),
                    Ident(&s.database),
                    RpDur(s.duration),
                    s.replication
                )?;
                opt_kw(f, "SHARD DURATION", &s.shard_duration.map(Dur))?;
                if s.default {
                    f.write_str(" DEFAULT")?;
                }
                Ok(())
            }
            Statement::AlterRetentionPolicy(s) => {
                write!(
                    f,
                    "ALTER RETENTION POLICY {} ON {}",
                    Ident(&s.name),
                    Ident(&s.database)
                )?;
                opt_kw(f, "DURATION", &s.duration.map(RpDur))?;
                opt_kw(f, "REPLICATION", &s.replication)?;
                opt_kw(f, "SHARD DURATION", &s.shard_duration.map(Dur))?;
                if s.default {
                    f.write_str(" DEFAULT")?;
                }
                Ok(())
            }
            Statement::DropRetentionPolicy { name, database } => write!(
                f,
                "DROP RETENTION POLICY {} ON {}",
                Ident(name),
                Ident(database)
            ),
            Statement::CreateContinuousQuery(s) => {
                write!(
                    f,
                    "CREATE CONTINUOUS QUERY {} ON {}",
                    Ident(&s.name),
                    Ident(&s.database)
                )?;
                if s.resample_every.is_some() || s.resample_for.is_some() {
                    f.write_str(" RESAMPLE")?;
                    opt_kw(f, "EVERY", &s.resample_every.map(Dur))?;
                    opt_kw(f, "FOR", &s.resample_for.map(Dur))?;
                }
                write!(f, " BEGIN {} END", s.query)
            }
            Statement::DropContinuousQuery { name, database } => write!(
                f,
                "DROP CONTINUOUS QUERY {} ON {}",
                Ident(name),
                Ident(database)
            ),
            Statement::CreateSubscription(s) => {
                write!(
                    f,
                    "CREATE SUBSCRIPTION {} ON {}.{} DESTINATIONS {} ",
                    Ident(&s.name),
                    Ident(&s.database),
                    Ident(&s.retention_policy),
                    if s.any { "ANY" } else { "ALL" }
                )?;
                let d: Vec<Quoted<'_>> = s.destinations.iter().map(|d| Quoted(d)).collect();
                list(f, &d)
            }
            Statement::DropSubscription {
                name,
                database,
                retention_policy,
            } => write!(
                f,
                "DROP SUBSCRIPTION {} ON {}.{}",
                Ident(name),
                Ident(database),
                Ident(retention_policy)
            ),
            Statement::DropShard { id } => write!(f, "DROP SHARD {id}"),
            Statement::CreateUser {
                name,
                password,
                admin,
            } => {
                write!(
                    f,
                    "CREATE USER {} WITH PASSWORD {}",
                    Ident(name),
                    Quoted(password)
                )?;
                if *admin {
                    f.write_str(" WITH ALL PRIVILEGES")?;
                }
                Ok(())
            }
            Statement::DropUser { name } => write!(f, "DROP USER {}", Ident(name)),
            Statement::SetPassword { name, password } => {
                write!(f, "SET PASSWORD FOR {} = {}", Ident(name), Quoted(password))
            }
            Statement::Grant {
                privilege,
                on,
                user,
            } => {
                write!(f, "GRANT {privilege}")?;
                if let Some(db) = on {
                    write!(f, " ON {}", Ident(db))?;
                }
                write!(f, " TO {}", Ident(user))
            }
            Statement::Revoke {
                privilege,
                on,
                user,
            } => {
                write!(f, "REVOKE {privilege}")?;
                if let Some(db) = on {
                    write!(f, " ON {}", Ident(db))?;
                }
                write!(f, " FROM {}", Ident(user))
            }
            Statement::ShowUsers => f.write_str("SHOW USERS"),
            Statement::ShowGrants { user } => write!(f, "SHOW GRANTS FOR {}", Ident(user)),
            Statement::ShowContinuousQueries => f.write_str("SHOW CONTINUOUS QUERIES"),
            Statement::ShowQueries => f.write_str("SHOW QUERIES"),
            Statement::ShowShards => f.write_str("SHOW SHARDS"),
            Statement::ShowShardGroups => f.write_str("SHOW SHARD GROUPS"),
            Statement::ShowSubscriptions => f.write_str("SHOW SUBSCRIPTIONS"),
            Statement::ShowStats { module } => {
                f.write_str("SHOW STATS")?;
                opt_kw(f, "FOR", &module.as_deref().map(Quoted))
            }
            Statement::ShowDiagnostics { module } => {
                f.write_str("SHOW DIAGNOSTICS")?;
                opt_kw(f, "FOR", &module.as_deref().map(Quoted))
            }
            Statement::KillQuery { id, host } => {
                write!(f, "KILL QUERY {id}")?;
                opt_kw(f, "ON", &host.as_deref().map(Ident))
            }
        }
    }
}

impl Display for Privilege {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Privilege::Read => "READ",
            Privilege::Write => "WRITE",
            Privilege::All => "ALL PRIVILEGES",
        })
    }
}

impl Display for SelectStatement {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str("SELECT ")?;
        list(f, &self.fields)?;
        if let Some(t) = &self.into {
            write!(f, " INTO {t}")?;
        }
        f.write_str(" FROM ")?;
        list(f, &self.from)?;
        where_(f, &self.condition)?;
        group_by(f, &self.group_by)?;
        if let Some(fill) = &self.fill {
            write!(f, " fill({fill})")?;
        }
        order(f, &self.order)?;
        limits(f, &self.limit, &self.offset)?;
        opt_kw(f, "SLIMIT", &self.slimit)?;
        opt_kw(f, "SOFFSET", &self.soffset)?;
        if let Some(tz) = &self.tz {
            write!(f, " tz({})", Quoted(tz))?;
        }
        Ok(())
    }
}

impl Display for Fill {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Fill::Null => f.write_str("null"),
            Fill::None => f.write_str("none"),
            Fill::Previous => f.write_str("previous"),
            Fill::Linear => f.write_str("linear"),
            Fill::Integer(n) => write!(f, "{n}"),
            Fill::Number(x) => write!(f, "{}", Float(*x)),
        }
    }
}

impl Display for Field {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.expr)?;
        opt_kw(f, "AS", &self.alias.as_deref().map(Ident))
    }
}

impl Display for Target {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        qualifier(f, &self.database, &self.retention_policy)?;
        match &self.measurement {
            Some(m) => write!(f, "{}", Ident(m)),
            None if self.database.is_none() && self.retention_policy.is_none() => {
                f.write_str("\"\"")
            }
            None => f.write_str(":MEASUREMENT"),
        }
    }
}

/// `"db"."rp".`, `"db"..`, `"rp".` or nothing.
fn qualifier(f: &mut Formatter<'_>, db: &Option<String>, rp: &Option<String>) -> fmt::Result {
    if let Some(db) = db {
        quoted(f, db, '"')?;
        f.write_char('.')?;
        if let Some(rp) = rp {
            quoted(f, rp, '"')?;
        }
        f.write_char('.')
    } else if let Some(rp) = rp {
        quoted(f, rp, '"')?;
        f.write_char('.')
    } else {
        Ok(())
    }
}

impl Display for Source {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Source::Measurement(m) => m.fmt(f),
            Source::Subquery(s) => write!(f, "({s})"),
        }
    }
}

impl Display for Measurement {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        qualifier(f, &self.database, &self.retention_policy)?;
        match &self.name {
            MeasurementName::Name(n) => write!(f, "{}", Ident(n)),
            MeasurementName::Regex(r) => r.fmt(f),
        }
    }
}

impl Display for Regex {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_char('/')?;
        for c in self.source.chars() {
            if c == '/' {
                f.write_str("\\/")?;
            } else {
                f.write_char(c)?;
            }
        }
        f.write_char('/')
    }
}

impl Display for Dimension {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Dimension::Time { interval, offset } => {
                write!(f, "time({}", Dur(*interval))?;
                match offset {
                    Some(TimeOffset::Duration(d)) => write!(f, ", {}", Dur(*d))?,
                    Some(TimeOffset::Now) => f.write_str(", now()")?,
                    None => {}
                }
                f.write_char(')')
            }
            Dimension::Tag(t) => write!(f, "{}", Ident(t)),
            Dimension::Wildcard => f.write_char('*'),
            Dimension::Regex(r) => r.fmt(f),
            Dimension::Other(e) => e.fmt(f),
        }
    }
}

impl Display for TagKeyFilter {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            TagKeyFilter::Eq(k) => write!(f, "= {}", Ident(k)),
            TagKeyFilter::Neq(k) => write!(f, "!= {}", Ident(k)),
            TagKeyFilter::In(keys) => {
                f.write_str("IN (")?;
                let k: Vec<Ident<'_>> = keys.iter().map(|k| Ident(k)).collect();
                list(f, &k)?;
                f.write_char(')')
            }
            TagKeyFilter::Regex(r) => write!(f, "=~ {r}"),
            TagKeyFilter::NotRegex(r) => write!(f, "!~ {r}"),
        }
    }
}

/// A float written so that it reads back as the same float and as a float
/// (always with a decimal point, never an exponent: InfluxQL has none).
struct Float(f64);

impl Display for Float {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let s = format!("{}", self.0);
        f.write_str(&s)?;
        if !s.contains('.') {
            f.write_str(".0")?;
        }
        Ok(())
    }
}

impl Display for DataType {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DataType::Float => "float",
            DataType::Integer => "integer",
            DataType::Unsigned => "unsigned",
            DataType::String => "string",
            DataType::Boolean => "boolean",
            DataType::Field => "field",
            DataType::Tag => "tag",
        })
    }
}

impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Expr::VarRef(v) => {
                write!(f, "{}", Ident(&v.name))?;
                match v.data_type {
                    Some(t) => write!(f, "::{t}"),
                    None => Ok(()),
                }
            }
            Expr::Call(c) => {
                if c.name == "distinct" {
                    f.write_str("distinct")?;
                } else {
                    write!(f, "{}", Ident(&c.name))?;
                }
                f.write_char('(')?;
                list(f, &c.args)?;
                f.write_char(')')
            }
            Expr::Distinct(name) => write!(f, "DISTINCT {}", Ident(name)),
            Expr::Binary(b) => write!(f, "{} {} {}", b.lhs, b.op.as_str(), b.rhs),
            Expr::And(v) | Expr::Or(v) => {
                let sep = if matches!(self, Expr::And(_)) {
                    " AND "
                } else {
                    " OR "
                };
                for (n, e) in v.iter().enumerate() {
                    if n > 0 {
                        f.write_str(sep)?;
                    }
                    e.fmt(f)?;
                }
                Ok(())
            }
            Expr::Paren(e) => write!(f, "({e})"),
            Expr::Integer(n) => write!(f, "{n}"),
            Expr::Unsigned(n) => write!(f, "{n}"),
            Expr::Number(x) => Float(*x).fmt(f),
            Expr::String(s) => Quoted(s).fmt(f),
            Expr::Bool(b) => f.write_str(if *b { "true" } else { "false" }),
            Expr::Duration(d) => Dur(*d).fmt(f),
            Expr::Regex(r) => r.fmt(f),
            Expr::Wildcard(None) => f.write_char('*'),
            Expr::Wildcard(Some(WildcardType::Field)) => f.write_str("*::field"),
            Expr::Wildcard(Some(WildcardType::Tag)) => f.write_str("*::tag"),
            Expr::BoundParam(p) => write!(f, "${}", Ident(p)),
        }
    }
}
