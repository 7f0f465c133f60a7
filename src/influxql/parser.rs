//! The InfluxQL grammar: statements and expressions from tokens.
//!
//! Owns which token sequences make which statement, following InfluxDB
//! 1.x's `influxql/parser.go` closely enough that the same queries are
//! accepted and refused, with the same "found X, expected Y" messages where
//! that is cheap. It is a predictive parser with one token of look-ahead
//! (a winnow checkpoint is taken and reset): no backtracking, so time is
//! linear in the input. It must never recurse without bound: parentheses,
//! calls and subqueries count against [`MAX_DEPTH`], and so does the depth
//! of every expression tree it builds.
//!
//! Whitespace matters where it matters to InfluxDB: a call needs its `(`
//! right after the name (`mean (x)` is not a call), `::type` and the dots
//! of `db.rp.m` must touch the name, and `DISTINCT x` needs the space.

use winnow::stream::{Location, Stream};

use super::ast::*;
use super::lexer::{self, at_ws, peek_char, skip_spaces, skip_ws, Input, Kw, Tok, Token};
use super::time::parse_duration;
use super::MAX_DEPTH;

/// An error at a byte offset.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PErr {
    pub(crate) pos: usize,
    pub(crate) message: String,
}

type R<T> = Result<T, PErr>;

/// [`PErr::pos`] of an error whose text names no position (as InfluxDB's).
pub(crate) const NO_POS: usize = usize::MAX;

/// An expression with its tree depth and where it starts.
struct E {
    expr: Expr,
    depth: usize,
    start: usize,
}

/// A binary operator including the logical ones.
#[derive(Clone, Copy)]
enum Op {
    And,
    Or,
    Bin(BinaryOp),
}

impl Op {
    fn precedence(self) -> u8 {
        match self {
            Op::Or => 1,
            Op::And => 2,
            Op::Bin(b) => b.precedence(),
        }
    }

    fn of(t: &Tok<'_>) -> Option<Op> {
        use BinaryOp::*;
        Some(Op::Bin(match t {
            Tok::Kw(Kw::And) => return Some(Op::And),
            Tok::Kw(Kw::Or) => return Some(Op::Or),
            Tok::Add => Add,
            Tok::Sub => Sub,
            Tok::Mul => Mul,
            Tok::Div => Div,
            Tok::Mod => Mod,
            Tok::BitAnd => BitAnd,
            Tok::BitOr => BitOr,
            Tok::BitXor => BitXor,
            Tok::Eq => Eq,
            Tok::Neq => Neq,
            Tok::EqRegex => EqRegex,
            Tok::NeqRegex => NeqRegex,
            Tok::Lt => Lt,
            Tok::Lte => Lte,
            Tok::Gt => Gt,
            Tok::Gte => Gte,
            _ => return None,
        }))
    }
}

/// How a dotted name ended.
#[derive(PartialEq)]
enum Trailing {
    /// Not with a dot.
    Nothing,
    /// With a dot and then `/`: a regex follows.
    Regex,
    /// With a dot and then `:`: `:MEASUREMENT` follows.
    Colon,
}

pub(crate) struct Parser<'a> {
    i: Input<'a>,
    nest: usize,
}

/// Parses every statement of `src`.
pub(crate) fn parse_query(src: &str) -> R<Vec<Statement>> {
    let mut p = Parser {
        i: Input::new(src),
        nest: 0,
    };
    let mut out = Vec::new();
    let mut semi = true;
    loop {
        let t = p.peek();
        match t.tok {
            Tok::Eof => return Ok(out),
            Tok::Semicolon => {
                p.next();
                semi = true;
            }
            _ if !semi => return Err(expected(&t, ";")),
            _ => {
                out.push(p.statement()?);
                semi = false;
            }
        }
    }
}

fn expected(t: &Token<'_>, what: &str) -> PErr {
    PErr {
        pos: t.start,
        message: format!("found {}, expected {what}", t.tok.found()),
    }
}

fn msg(pos: usize, m: impl Into<String>) -> PErr {
    PErr {
        pos,
        message: m.into(),
    }
}

/// `None` for the empty string (an omitted database or policy).
fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

const TOP: &str = "SELECT, DELETE, SHOW, CREATE, DROP, EXPLAIN, GRANT, REVOKE, ALTER, SET, KILL";
const SHOW: &str = "CONTINUOUS, DATABASES, DIAGNOSTICS, FIELD, GRANTS, MEASUREMENT, MEASUREMENTS, \
                    QUERIES, RETENTION, SERIES, SHARD, SHARDS, STATS, SUBSCRIPTIONS, TAG, USERS";
const CREATE: &str = "CONTINUOUS, DATABASE, USER, RETENTION, SUBSCRIPTION";
const DROP: &str =
    "CONTINUOUS, DATABASE, MEASUREMENT, RETENTION, SERIES, SHARD, SUBSCRIPTION, USER";
const UNARY: &str = "identifier, string, number, bool";

impl<'a> Parser<'a> {
    // ------------------------------------------------------------ tokens

    fn pos(&self) -> usize {
        self.i.current_token_start()
    }

    /// The next token after whitespace and comments, not consumed.
    fn peek(&mut self) -> Token<'a> {
        let cp = self.i.checkpoint();
        let t = self.next();
        self.i.reset(&cp);
        t
    }

    /// The next token after whitespace and comments.
    fn next(&mut self) -> Token<'a> {
        skip_ws(&mut self.i);
        lexer::token(&mut self.i)
    }

    /// The token right at the cursor (whitespace is an `Illegal` token).
    fn raw(&mut self) -> Token<'a> {
        lexer::token(&mut self.i)
    }

    fn raw_is(&self, c: char) -> bool {
        peek_char(&self.i) == Some(c)
    }

    /// A `.` separating name segments: right here, and not the start of a
    /// number (`db.1` is `db` then the number `.1`, as InfluxDB scans it).
    fn at_segment_dot(&self) -> bool {
        let rest: &str = &self.i;
        let mut c = rest.chars();
        c.next() == Some('.') && !c.next().is_some_and(|d| d.is_ascii_digit())
    }

    fn raw_starts(&self, s: &str) -> bool {
        let rest: &str = &self.i;
        rest.starts_with(s)
    }

    /// Consumes the next token if it is `kw`.
    fn eat(&mut self, kw: Kw) -> bool {
        if self.peek().tok == Tok::Kw(kw) {
            self.next();
            true
        } else {
            false
        }
    }

    fn eat_tok(&mut self, tok: Tok<'_>) -> bool {
        if self.peek().tok == tok {
            self.next();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, kw: Kw) -> R<()> {
        let t = self.next();
        if t.tok == Tok::Kw(kw) {
            Ok(())
        } else {
            Err(expected(&t, kw.as_str()))
        }
    }

    fn expect_tok(&mut self, tok: Tok<'_>, what: &str) -> R<()> {
        let t = self.next();
        if t.tok == tok {
            Ok(())
        } else {
            Err(expected(&t, what))
        }
    }

    fn ident(&mut self) -> R<String> {
        let t = self.next();
        match t.tok {
            Tok::Ident(s) => Ok(s),
            _ => Err(expected(&t, "identifier")),
        }
    }

    fn string(&mut self) -> R<String> {
        let t = self.next();
        match t.tok {
            Tok::Str(s) => Ok(s),
            _ => Err(expected(&t, "string")),
        }
    }

    fn enter(&mut self, pos: usize) -> R<()> {
        self.nest += 1;
        if self.nest > MAX_DEPTH {
            return Err(msg(
                pos,
                format!("query nested too deeply (more than {MAX_DEPTH} levels)"),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.nest -= 1;
    }

    /// `LIMIT n`-style clauses: `kw` then a non-negative integer (too large
    /// values saturate, as in InfluxDB).
    fn opt_int(&mut self, kw: Kw) -> R<Option<u64>> {
        if !self.eat(kw) {
            return Ok(None);
        }
        let t = self.next();
        match t.tok {
            Tok::Integer(s) => Ok(Some(s.parse::<i64>().unwrap_or(i64::MAX) as u64)),
            _ => Err(expected(&t, "integer")),
        }
    }

    /// An integer in `[min, max]` (replication factors).
    fn int_in(&mut self, min: i64, max: i64) -> R<i64> {
        let t = self.next();
        let Tok::Integer(s) = t.tok else {
            return Err(expected(&t, "integer"));
        };
        let n: i64 = s.parse().map_err(|_| {
            msg(
                t.start,
                format!("strconv.Atoi: parsing {s:?}: value out of range"),
            )
        })?;
        if n < min || n > max {
            return Err(msg(
                t.start,
                format!("invalid value {n}: must be {min} <= n <= {max}"),
            ));
        }
        Ok(n)
    }

    fn uint64(&mut self) -> R<u64> {
        let t = self.next();
        match t.tok {
            Tok::Integer(s) => s.parse().map_err(|_| {
                msg(
                    t.start,
                    format!("strconv.ParseUint: parsing {s:?}: value out of range"),
                )
            }),
            _ => Err(expected(&t, "integer")),
        }
    }

    /// A retention duration: a duration token or `INF` (0).
    fn rp_duration(&mut self) -> R<i64> {
        let t = self.next();
        match t.tok {
            Tok::Kw(Kw::Inf) => Ok(0),
            Tok::Duration(s) => parse_duration(s).map_err(|m| msg(t.start, m)),
            _ => Err(expected(&t, "duration")),
        }
    }

    /// A duration token (not `INF`).
    fn duration(&mut self) -> R<i64> {
        let t = self.next();
        match t.tok {
            Tok::Duration(s) => parse_duration(s).map_err(|m| msg(t.start, m)),
            _ => Err(expected(&t, "duration")),
        }
    }

    /// A regex where the grammar allows one: after whitespace (comments are
    /// not skipped there, as in InfluxDB), `/.../`. `Ok(None)` when there is
    /// no `/`.
    fn opt_regex(&mut self) -> R<Option<Regex>> {
        skip_spaces(&mut self.i);
        let start = self.pos();
        match lexer::regex(&mut self.i) {
            Ok(source) => Ok(Some(Regex { source })),
            Err(lexer::RegexError::NotRegex) => Ok(None),
            Err(lexer::RegexError::Unterminated) => Err(msg(
                start,
                "bad regex: missing closing / (a regex ends on its line)",
            )),
        }
    }

    fn regex(&mut self) -> R<Regex> {
        match self.opt_regex()? {
            Some(r) => Ok(r),
            None => Err(expected(&self.peek(), "regex")),
        }
    }

    // -------------------------------------------------------- statements

    fn statement(&mut self) -> R<Statement> {
        let t = self.next();
        let Tok::Kw(kw) = t.tok else {
            return Err(expected(&t, TOP));
        };
        match kw {
            Kw::Select => Ok(Statement::Select(Box::new(self.select(false)?))),
            Kw::Delete => Ok(Statement::Delete(self.series_filter()?)),
            Kw::Show => self.show(),
            Kw::Create => self.create(),
            Kw::Drop => self.drop_(),
            Kw::Explain => {
                let analyze = self.eat(Kw::Analyze);
                self.expect(Kw::Select)?;
                Ok(Statement::Explain {
                    analyze,
                    statement: Box::new(self.select(false)?),
                })
            }
            Kw::Grant => self.grant_revoke(true),
            Kw::Revoke => self.grant_revoke(false),
            Kw::Alter => {
                self.expect(Kw::Retention)?;
                self.expect(Kw::Policy)?;
                self.alter_rp()
            }
            Kw::Set => {
                self.expect(Kw::Password)?;
                self.expect(Kw::For)?;
                let name = self.ident()?;
                self.expect_tok(Tok::Eq, "=")?;
                let password = self.string()?;
                Ok(Statement::SetPassword { name, password })
            }
            Kw::Kill => {
                self.expect(Kw::Query)?;
                let id = self.uint64()?;
                let host = if self.eat(Kw::On) {
                    Some(self.ident()?)
                } else {
                    None
                };
                Ok(Statement::KillQuery { id, host })
            }
            _ => Err(expected(&t, TOP)),
        }
    }

    fn show(&mut self) -> R<Statement> {
        let t = self.next();
        let Tok::Kw(kw) = t.tok else {
            return Err(expected(&t, SHOW));
        };
        Ok(match kw {
            Kw::Continuous => {
                self.expect(Kw::Queries)?;
                Statement::ShowContinuousQueries
            }
            Kw::Databases => Statement::ShowDatabases,
            Kw::Diagnostics => Statement::ShowDiagnostics {
                module: self.opt_for_module()?,
            },
            Kw::Stats => Statement::ShowStats {
                module: self.opt_for_module()?,
            },
            Kw::Field => {
                let t = self.next();
                match t.tok {
                    Tok::Kw(Kw::Key) => self.key_cardinality(CardinalityOf::FieldKey)?,
                    Tok::Kw(Kw::Keys) => self.show_field_keys()?,
                    _ => return Err(expected(&t, "KEY, KEYS")),
                }
            }
            Kw::Grants => {
                self.expect(Kw::For)?;
                Statement::ShowGrants {
                    user: self.ident()?,
                }
            }
            Kw::Measurement => {
                let t = self.next();
                let exact = match t.tok {
                    Tok::Kw(Kw::Exact) => {
                        self.expect(Kw::Cardinality)?;
                        true
                    }
                    Tok::Kw(Kw::Cardinality) => false,
                    _ => return Err(expected(&t, "EXACT, CARDINALITY")),
                };
                self.cardinality(CardinalityOf::Measurement, exact)?
            }
            Kw::Measurements => self.show_measurements()?,
            Kw::Queries => Statement::ShowQueries,
            Kw::Retention => {
                self.expect(Kw::Policies)?;
                Statement::ShowRetentionPolicies {
                    database: self.opt_on()?,
                }
            }
            Kw::Series => {
                let exact = self.eat(Kw::Exact);
                if self.eat(Kw::Cardinality) {
                    self.cardinality(CardinalityOf::Series, exact)?
                } else {
                    self.show_series()?
                }
            }
            Kw::Shard => {
                self.expect(Kw::Groups)?;
                Statement::ShowShardGroups
            }
            Kw::Shards => Statement::ShowShards,
            Kw::Subscriptions => Statement::ShowSubscriptions,
            Kw::Tag => {
                let t = self.next();
                match t.tok {
                    Tok::Kw(Kw::Key) => self.key_cardinality(CardinalityOf::TagKey)?,
                    Tok::Kw(Kw::Keys) => self.show_tag_keys()?,
                    Tok::Kw(Kw::Values) => self.show_tag_values()?,
                    _ => return Err(expected(&t, "KEY, KEYS, VALUES")),
                }
            }
            Kw::Users => Statement::ShowUsers,
            _ => return Err(expected(&t, SHOW)),
        })
    }

    fn opt_for_module(&mut self) -> R<Option<String>> {
        if self.eat(Kw::For) {
            Ok(Some(self.string()?))
        } else {
            Ok(None)
        }
    }

    fn opt_on(&mut self) -> R<Option<String>> {
        if self.eat(Kw::On) {
            Ok(Some(self.ident()?))
        } else {
            Ok(None)
        }
    }

    fn opt_from(&mut self) -> R<Vec<Measurement>> {
        if !self.eat(Kw::From) {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        loop {
            out.push(self.measurement()?);
            if !self.eat_tok(Tok::Comma) {
                return Ok(out);
            }
        }
    }

    fn opt_where(&mut self) -> R<Option<Expr>> {
        if self.eat(Kw::Where) {
            Ok(Some(self.expr()?))
        } else {
            Ok(None)
        }
    }

    fn show_measurements(&mut self) -> R<Statement> {
        let database = self.opt_on()?;
        let with_measurement = if self.eat(Kw::With) {
            self.expect(Kw::Measurement)?;
            let t = self.next();
            let regex_op = match t.tok {
                Tok::Eq => false,
                Tok::EqRegex => true,
                _ => return Err(expected(&t, "=, =~")),
            };
            let source = self.measurement()?;
            Some(WithMeasurement { regex_op, source })
        } else {
            None
        };
        Ok(Statement::ShowMeasurements(ShowMeasurements {
            database,
            with_measurement,
            condition: self.opt_where()?,
            order: self.order_by()?,
            limit: self.opt_int(Kw::Limit)?,
            offset: self.opt_int(Kw::Offset)?,
        }))
    }

    fn show_field_keys(&mut self) -> R<Statement> {
        Ok(Statement::ShowFieldKeys(ShowFieldKeys {
            database: self.opt_on()?,
            from: self.opt_from()?,
            order: self.order_by()?,
            limit: self.opt_int(Kw::Limit)?,
            offset: self.opt_int(Kw::Offset)?,
        }))
    }

    fn show_tag_keys(&mut self) -> R<Statement> {
        Ok(Statement::ShowTagKeys(ShowTagKeys {
            database: self.opt_on()?,
            from: self.opt_from()?,
            condition: self.opt_where()?,
            order: self.order_by()?,
            limit: self.opt_int(Kw::Limit)?,
            offset: self.opt_int(Kw::Offset)?,
            slimit: self.opt_int(Kw::Slimit)?,
            soffset: self.opt_int(Kw::Soffset)?,
        }))
    }

    fn show_tag_values(&mut self) -> R<Statement> {
        if self.eat(Kw::Exact) {
            self.expect(Kw::Cardinality)?;
            return self.cardinality_tag_values(true);
        }
        if self.eat(Kw::Cardinality) {
            return self.cardinality_tag_values(false);
        }
        let database = self.opt_on()?;
        let from = self.opt_from()?;
        let key = self.with_key()?;
        Ok(Statement::ShowTagValues(ShowTagValues {
            database,
            from,
            key,
            condition: self.opt_where()?,
            order: self.order_by()?,
            limit: self.opt_int(Kw::Limit)?,
            offset: self.opt_int(Kw::Offset)?,
        }))
    }

    fn with_key(&mut self) -> R<TagKeyFilter> {
        self.expect(Kw::With)?;
        self.expect(Kw::Key)?;
        let t = self.next();
        Ok(match t.tok {
            Tok::Kw(Kw::In) => {
                self.expect_tok(Tok::LParen, "(")?;
                let mut keys = vec![self.ident()?];
                while self.eat_tok(Tok::Comma) {
                    keys.push(self.ident()?);
                }
                self.expect_tok(Tok::RParen, ")")?;
                TagKeyFilter::In(keys)
            }
            Tok::Eq => TagKeyFilter::Eq(self.ident()?),
            Tok::Neq => TagKeyFilter::Neq(self.ident()?),
            Tok::EqRegex => TagKeyFilter::Regex(self.regex()?),
            Tok::NeqRegex => TagKeyFilter::NotRegex(self.regex()?),
            _ => return Err(expected(&t, "IN, =, =~")),
        })
    }

    fn show_series(&mut self) -> R<Statement> {
        Ok(Statement::ShowSeries(ShowSeries {
            database: self.opt_on()?,
            from: self.opt_from()?,
            condition: self.opt_where()?,
            order: self.order_by()?,
            limit: self.opt_int(Kw::Limit)?,
            offset: self.opt_int(Kw::Offset)?,
        }))
    }

    /// `SHOW TAG KEY` / `SHOW FIELD KEY` then `[EXACT] CARDINALITY`.
    fn key_cardinality(&mut self, of: CardinalityOf) -> R<Statement> {
        let exact = self.eat(Kw::Exact);
        let t = self.next();
        if t.tok != Tok::Kw(Kw::Cardinality) {
            let what = if exact {
                "CARDINALITY"
            } else {
                "EXACT, CARDINALITY"
            };
            return Err(expected(&t, what));
        }
        self.cardinality(of, exact)
    }

    fn cardinality_tag_values(&mut self, exact: bool) -> R<Statement> {
        let database = self.opt_on()?;
        let from = self.opt_from()?;
        let key = self.with_key()?;
        self.cardinality_tail(CardinalityOf::TagValues(key), exact, database, from)
    }

    fn cardinality(&mut self, of: CardinalityOf, exact: bool) -> R<Statement> {
        let database = self.opt_on()?;
        let from = self.opt_from()?;
        self.cardinality_tail(of, exact, database, from)
    }

    fn cardinality_tail(
        &mut self,
        of: CardinalityOf,
        exact: bool,
        database: Option<String>,
        from: Vec<Measurement>,
    ) -> R<Statement> {
        Ok(Statement::ShowCardinality(ShowCardinality {
            of,
            exact,
            database,
            from,
            condition: self.opt_where()?,
            group_by: self.group_by()?,
            limit: self.opt_int(Kw::Limit)?,
            offset: self.opt_int(Kw::Offset)?,
        }))
    }

    /// `[FROM ...] [WHERE ...]` of `DELETE` / `DROP SERIES` (at least one).
    fn series_filter(&mut self) -> R<SeriesFilter> {
        let t = self.peek();
        let mut from = Vec::new();
        if t.tok == Tok::Kw(Kw::From) {
            from = self.opt_from()?;
            let mut problem = None;
            for m in &from {
                if m.database.is_some() {
                    problem = Some("database not supported");
                }
                if m.retention_policy.is_some() {
                    problem = Some("retention policy not supported");
                }
            }
            if let Some(p) = problem {
                return Err(msg(t.start, p));
            }
        }
        let condition = self.opt_where()?;
        if from.is_empty() && condition.is_none() {
            return Err(expected(&t, "FROM, WHERE"));
        }
        Ok(SeriesFilter { from, condition })
    }

    fn create(&mut self) -> R<Statement> {
        let t = self.next();
        let Tok::Kw(kw) = t.tok else {
            return Err(expected(&t, CREATE));
        };
        match kw {
            Kw::Continuous => {
                self.expect(Kw::Query)?;
                self.create_cq()
            }
            Kw::Database => self.create_database(),
            Kw::User => {
                let name = self.ident()?;
                self.expect(Kw::With)?;
                self.expect(Kw::Password)?;
                let password = self.string()?;
                let admin = if self.eat(Kw::With) {
                    self.expect(Kw::All)?;
                    self.expect(Kw::Privileges)?;
                    true
                } else {
                    false
                };
                Ok(Statement::CreateUser {
                    name,
                    password,
                    admin,
                })
            }
            Kw::Retention => {
                self.expect(Kw::Policy)?;
                self.create_rp()
            }
            Kw::Subscription => {
                let name = self.ident()?;
                self.expect(Kw::On)?;
                let (database, retention_policy) = self.db_dot_rp()?;
                self.expect(Kw::Destinations)?;
                let t = self.next();
                let any = match t.tok {
                    Tok::Kw(Kw::All) => false,
                    Tok::Kw(Kw::Any) => true,
                    _ => return Err(expected(&t, "ALL, ANY")),
                };
                let mut destinations = vec![self.string()?];
                while self.eat_tok(Tok::Comma) {
                    destinations.push(self.string()?);
                }
                Ok(Statement::CreateSubscription(CreateSubscription {
                    name,
                    database,
                    retention_policy,
                    any,
                    destinations,
                }))
            }
            _ => Err(expected(&t, CREATE)),
        }
    }

    /// `db.rp` with the dot right after `db`.
    fn db_dot_rp(&mut self) -> R<(String, String)> {
        let db = self.ident()?;
        let t = self.raw();
        if t.tok != Tok::Dot {
            return Err(expected(&t, "."));
        }
        Ok((db, self.ident()?))
    }

    fn create_database(&mut self) -> R<Statement> {
        let mut s = CreateDatabase {
            name: self.ident()?,
            ..CreateDatabase::default()
        };
        if !self.eat(Kw::With) {
            return Ok(Statement::CreateDatabase(s));
        }
        let t = self.peek();
        if !matches!(
            t.tok,
            Tok::Kw(Kw::Duration | Kw::Name | Kw::Replication | Kw::Shard)
        ) {
            return Err(expected(&t, "DURATION, NAME, REPLICATION, SHARD"));
        }
        s.with = true;
        if self.eat(Kw::Duration) {
            s.duration = Some(self.rp_duration()?);
        }
        if self.eat(Kw::Replication) {
            s.replication = Some(self.int_in(1, i32::MAX as i64)? as u32);
        }
        if self.eat(Kw::Shard) {
            self.expect(Kw::Duration)?;
            s.shard_duration = Some(self.rp_duration()?);
        }
        if self.eat(Kw::Name) {
            s.rp_name = Some(self.ident()?);
        }
        Ok(Statement::CreateDatabase(s))
    }

    /// `SHARD DURATION d` after `SHARD`: `INF` is refused.
    fn shard_duration(&mut self) -> R<i64> {
        self.expect(Kw::Duration)?;
        let t = self.peek();
        if t.tok == Tok::Kw(Kw::Inf) {
            return Err(msg(t.start, "invalid duration INF for shard duration"));
        }
        self.rp_duration()
    }

    fn create_rp(&mut self) -> R<Statement> {
        let name = self.ident()?;
        self.expect(Kw::On)?;
        let database = self.ident()?;
        self.expect(Kw::Duration)?;
        let duration = self.rp_duration()?;
        self.expect(Kw::Replication)?;
        let replication = self.int_in(1, i32::MAX as i64)? as u32;
        let shard_duration = if self.eat(Kw::Shard) {
            Some(self.shard_duration()?)
        } else {
            None
        };
        let default = self.eat(Kw::Default);
        Ok(Statement::CreateRetentionPolicy(CreateRetentionPolicy {
            name,
            database,
            duration,
            replication,
            shard_duration,
            default,
        }))
    }

    fn alter_rp(&mut self) -> R<Statement> {
        let t = self.next();
        let name = match t.tok {
            Tok::Kw(Kw::Default) => "default".to_string(),
            Tok::Ident(s) => s,
            _ => return Err(expected(&t, "identifier")),
        };
        self.expect(Kw::On)?;
        let mut s = AlterRetentionPolicy {
            name,
            database: self.ident()?,
            duration: None,
            replication: None,
            shard_duration: None,
            default: false,
        };
        let mut seen: Vec<Kw> = Vec::new();
        loop {
            let t = self.peek();
            let kw = match t.tok {
                Tok::Kw(kw @ (Kw::Duration | Kw::Replication | Kw::Shard | Kw::Default)) => kw,
                _ if seen.is_empty() => {
                    return Err(expected(&t, "DURATION, REPLICATION, SHARD, DEFAULT"))
                }
                _ => break,
            };
            if seen.contains(&kw) {
                return Err(msg(
                    t.start,
                    format!("found duplicate {} option", kw.as_str()),
                ));
            }
            seen.push(kw);
            self.next();
            match kw {
                Kw::Duration => s.duration = Some(self.rp_duration()?),
                Kw::Replication => s.replication = Some(self.int_in(1, i32::MAX as i64)? as u32),
                Kw::Shard => s.shard_duration = Some(self.shard_duration()?),
                _ => s.default = true,
            }
        }
        Ok(Statement::AlterRetentionPolicy(s))
    }

    fn create_cq(&mut self) -> R<Statement> {
        let name = self.ident()?;
        self.expect(Kw::On)?;
        let database = self.ident()?;
        let (mut resample_every, mut resample_for) = (None, None);
        if self.eat(Kw::Resample) {
            if self.eat(Kw::Every) {
                resample_every = Some(self.duration()?);
            }
            if self.eat(Kw::For) {
                resample_for = Some(self.duration()?);
            }
            if resample_every.unwrap_or(0) == 0 && resample_for.unwrap_or(0) == 0 {
                return Err(expected(&self.peek(), "EVERY, FOR"));
            }
        }
        self.expect(Kw::Begin)?;
        self.expect(Kw::Select)?;
        let query = self.select(true)?;
        let interval = query.group_by.iter().find_map(|d| match d {
            Dimension::Time { interval, .. } => Some(*interval),
            _ => None,
        });
        let aggregate = query.fields.iter().any(|f| contains_call(&f.expr));
        if aggregate && interval.unwrap_or(0) == 0 {
            return Err(expected(&self.peek(), "GROUP BY time(...)"));
        }
        if let Some(f) = resample_for.filter(|&f| f != 0) {
            let mut need = interval.unwrap_or(0);
            if let Some(e) = resample_every.filter(|&e| e > need) {
                need = e;
            }
            if need > f {
                return Err(msg(
                    self.pos(),
                    format!(
                        "FOR duration must be >= GROUP BY time duration: must be a minimum of {}, got {}",
                        super::time::format_duration(need),
                        super::time::format_duration(f)
                    ),
                ));
            }
        }
        self.expect(Kw::End)?;
        Ok(Statement::CreateContinuousQuery(CreateContinuousQuery {
            name,
            database,
            resample_every,
            resample_for,
            query: Box::new(query),
        }))
    }

    fn drop_(&mut self) -> R<Statement> {
        let t = self.next();
        let Tok::Kw(kw) = t.tok else {
            return Err(expected(&t, DROP));
        };
        Ok(match kw {
            Kw::Continuous => {
                self.expect(Kw::Query)?;
                let name = self.ident()?;
                self.expect(Kw::On)?;
                Statement::DropContinuousQuery {
                    name,
                    database: self.ident()?,
                }
            }
            Kw::Database => Statement::DropDatabase {
                name: self.ident()?,
            },
            Kw::Measurement => Statement::DropMeasurement {
                name: self.ident()?,
            },
            Kw::Retention => {
                self.expect(Kw::Policy)?;
                let name = self.ident()?;
                self.expect(Kw::On)?;
                Statement::DropRetentionPolicy {
                    name,
                    database: self.ident()?,
                }
            }
            Kw::Series => Statement::DropSeries(self.series_filter()?),
            Kw::Shard => Statement::DropShard { id: self.uint64()? },
            Kw::Subscription => {
                let name = self.ident()?;
                self.expect(Kw::On)?;
                let (database, retention_policy) = self.db_dot_rp()?;
                Statement::DropSubscription {
                    name,
                    database,
                    retention_policy,
                }
            }
            Kw::User => Statement::DropUser {
                name: self.ident()?,
            },
            _ => return Err(expected(&t, DROP)),
        })
    }

    fn grant_revoke(&mut self, grant: bool) -> R<Statement> {
        let t = self.next();
        let privilege = match t.tok {
            Tok::Kw(Kw::Read) => Privilege::Read,
            Tok::Kw(Kw::Write) => Privilege::Write,
            Tok::Kw(Kw::All) => {
                self.eat(Kw::Privileges);
                Privilege::All
            }
            _ => return Err(expected(&t, "READ, WRITE, ALL [PRIVILEGES]")),
        };
        let (to, to_text) = if grant {
            (Kw::To, "ON, TO")
        } else {
            (Kw::From, "ON, FROM")
        };
        let t = self.next();
        let on = match t.tok {
            Tok::Kw(Kw::On) => {
                let db = self.ident()?;
                self.expect(to)?;
                Some(db)
            }
            Tok::Kw(kw) if kw == to && privilege == Privilege::All => None,
            _ if privilege == Privilege::All => return Err(expected(&t, to_text)),
            _ => return Err(expected(&t, "ON")),
        };
        let user = self.ident()?;
        Ok(if grant {
            Statement::Grant {
                privilege,
                on,
                user,
            }
        } else {
            Statement::Revoke {
                privilege,
                on,
                user,
            }
        })
    }

    // ------------------------------------------------------------ SELECT

    /// `SELECT` (already consumed) through the end of the statement;
    /// `into_required` for continuous queries.
    fn select(&mut self, into_required: bool) -> R<SelectStatement> {
        let mut fields = vec![self.field()?];
        while self.eat_tok(Tok::Comma) {
            fields.push(self.field()?);
        }
        let into = if self.eat(Kw::Into) {
            Some(self.target()?)
        } else if into_required {
            return Err(expected(&self.peek(), "INTO"));
        } else {
            None
        };
        self.expect(Kw::From)?;
        let mut from = vec![self.source()?];
        while self.eat_tok(Tok::Comma) {
            from.push(self.source()?);
        }
        let condition = self.opt_where()?;
        let group_by = self.group_by()?;
        let fill = self.fill()?;
        let order = self.order_by()?;
        let limit = self.opt_int(Kw::Limit)?;
        let offset = self.opt_int(Kw::Offset)?;
        let slimit = self.opt_int(Kw::Slimit)?;
        let soffset = self.opt_int(Kw::Soffset)?;
        let tz = self.tz()?;
        Ok(SelectStatement {
            fields,
            into,
            from,
            condition,
            group_by,
            fill,
            order,
            limit,
            offset,
            slimit,
            soffset,
            tz,
        })
    }

    fn field(&mut self) -> R<Field> {
        let expr = match self.opt_regex()? {
            Some(r) => Expr::Regex(r),
            None => {
                skip_ws(&mut self.i);
                let start = self.pos();
                let e = self.expr()?;
                if let Some(op) = find_condition_op(&e) {
                    return Err(msg(
                        start,
                        format!(
                            "invalid operator {op} in SELECT clause; operator is intended for WHERE clause"
                        ),
                    ));
                }
                e
            }
        };
        let start = self.pos();
        let alias = if self.eat(Kw::As) {
            Some(self.ident()?)
        } else {
            None
        };
        Ok(Field {
            expr,
            alias,
            span: Span::new(start, self.pos()),
        })
    }

    fn target(&mut self) -> R<Target> {
        let (mut segs, trailing) = self.segments()?;
        if segs.len() < 3 && trailing == Trailing::Colon {
            self.expect_tok(Tok::Colon, ":")?;
            self.expect(Kw::Measurement)?;
            segs.push(String::new());
        }
        let mut it = segs.into_iter().rev();
        let measurement = it.next().and_then(non_empty);
        let retention_policy = it.next().and_then(non_empty);
        let database = it.next().and_then(non_empty);
        Ok(Target {
            database,
            retention_policy,
            measurement,
        })
    }

    /// `name(.name)*`, up to three segments, the dots touching the names
    /// (`db..m` has an empty middle segment).
    fn segments(&mut self) -> R<(Vec<String>, Trailing)> {
        let start = self.peek().start;
        let mut segs = vec![self.ident()?];
        let mut trailing = Trailing::Nothing;
        while self.at_segment_dot() {
            self.raw();
            match peek_char(&self.i) {
                Some('/') => {
                    trailing = Trailing::Regex;
                    break;
                }
                Some(':') => {
                    trailing = Trailing::Colon;
                    break;
                }
                Some('.') => segs.push(String::new()),
                _ => segs.push(self.ident()?),
            }
        }
        if segs.len() > 3 {
            let shown: Vec<String> = segs.iter().map(|s| Ident(s).to_string()).collect();
            return Err(msg(
                start,
                format!("too many segments in {}", shown.join(".")),
            ));
        }
        Ok((segs, trailing))
    }

    /// A `FROM` source of a `SELECT`: a measurement or `(SELECT ...)`.
    fn source(&mut self) -> R<Source> {
        skip_spaces(&mut self.i);
        if !self.raw_is('/') {
            let t = self.peek();
            if t.tok == Tok::LParen {
                self.next();
                self.expect(Kw::Select)?;
                self.enter(t.start)?;
                let s = self.select(false)?;
                self.leave();
                self.expect_tok(Tok::RParen, ")")?;
                return Ok(Source::Subquery(Box::new(s)));
            }
        }
        Ok(Source::Measurement(self.measurement()?))
    }

    /// `/re/`, `name`, `rp.name`, `db.rp.name`, `db..name`, `rp./re/`,
    /// `db.rp./re/`.
    fn measurement(&mut self) -> R<Measurement> {
        skip_spaces(&mut self.i);
        let start = self.pos();
        if let Some(r) = self.opt_regex()? {
            return Ok(Measurement {
                database: None,
                retention_policy: None,
                name: MeasurementName::Regex(r),
                span: Span::new(start, self.pos()),
            });
        }
        skip_ws(&mut self.i);
        let start = self.pos();
        let (segs, trailing) = self.segments()?;
        let regex = if segs.len() < 3 && trailing == Trailing::Regex {
            Some(self.regex()?)
        } else {
            None
        };
        let mut segs: Vec<Option<String>> = segs.into_iter().map(non_empty).collect();
        let name = match regex {
            Some(r) => MeasurementName::Regex(r),
            None => MeasurementName::Name(segs.pop().flatten().unwrap_or_default()),
        };
        // What is left is [rp] or [db, rp].
        let retention_policy = segs.pop().flatten();
        let database = segs.pop().flatten();
        Ok(Measurement {
            database,
            retention_policy,
            name,
            span: Span::new(start, self.pos()),
        })
    }

    fn group_by(&mut self) -> R<Vec<Dimension>> {
        if !self.eat(Kw::Group) {
            return Ok(Vec::new());
        }
        self.expect(Kw::By)?;
        let mut dims = Vec::new();
        loop {
            if let Some(r) = self.opt_regex()? {
                dims.push(Dimension::Regex(r));
                // After a regex InfluxDB wants the comma right away.
                if self.raw_is(',') {
                    self.raw();
                    continue;
                }
                return Ok(dims);
            }
            dims.push(dimension(self.expr()?));
            if !self.eat_tok(Tok::Comma) {
                return Ok(dims);
            }
        }
    }

    fn fill(&mut self) -> R<Option<Fill>> {
        let t = self.peek();
        if !matches!(&t.tok, Tok::Ident(s) if s.eq_ignore_ascii_case("fill")) {
            return Ok(None);
        }
        let e = self.expr()?;
        let Expr::Call(c) = e else {
            return Err(msg(t.start, "fill must be a function call"));
        };
        let [arg] = c.args.as_slice() else {
            return Err(msg(
                t.start,
                "fill requires an argument, e.g.: 0, null, none, previous, linear",
            ));
        };
        Ok(Some(match arg {
            Expr::VarRef(VarRef {
                name,
                data_type: None,
                ..
            }) if name == "null" => Fill::Null,
            Expr::VarRef(VarRef {
                name,
                data_type: None,
                ..
            }) if name == "none" => Fill::None,
            Expr::VarRef(VarRef {
                name,
                data_type: None,
                ..
            }) if name == "previous" => Fill::Previous,
            Expr::VarRef(VarRef {
                name,
                data_type: None,
                ..
            }) if name == "linear" => Fill::Linear,
            Expr::Integer(n) => Fill::Integer(*n),
            Expr::Number(x) => Fill::Number(*x),
            _ => return Err(msg(t.start, "expected number argument in fill()")),
        }))
    }

    fn order_by(&mut self) -> R<Option<Order>> {
        let t = self.peek();
        if t.tok != Tok::Kw(Kw::Order) {
            return Ok(None);
        }
        self.next();
        self.expect(Kw::By)?;
        let only_time = || msg(t.start, "only ORDER BY time supported at this time");
        let first = self.next();
        let order = match first.tok {
            Tok::Kw(Kw::Asc) => Order::Asc,
            Tok::Kw(Kw::Desc) => Order::Desc,
            Tok::Ident(name) => {
                let o = self.opt_asc_desc();
                if name != "time" {
                    return Err(only_time());
                }
                o
            }
            _ => return Err(expected(&first, "identifier, ASC, DESC")),
        };
        if self.eat_tok(Tok::Comma) {
            self.ident()?;
            self.opt_asc_desc();
            return Err(only_time());
        }
        Ok(Some(order))
    }

    fn opt_asc_desc(&mut self) -> Order {
        if self.eat(Kw::Desc) {
            Order::Desc
        } else {
            self.eat(Kw::Asc);
            Order::Asc
        }
    }

    fn tz(&mut self) -> R<Option<String>> {
        let t = self.peek();
        if !matches!(&t.tok, Tok::Ident(s) if s.eq_ignore_ascii_case("tz")) {
            return Ok(None);
        }
        let Expr::Call(c) = self.expr()? else {
            return Err(msg(t.start, "tz must be a function call"));
        };
        match c.args.as_slice() {
            // The zone must exist (InfluxDB: time.LoadLocation).
            [Expr::String(s)] if s.parse::<chrono_tz::Tz>().is_err() => {
                Err(msg(NO_POS, format!("unable to find time zone {s}")))
            }
            [Expr::String(s)] => Ok(Some(s.clone())),
            [_] => Err(msg(t.start, "expected string argument in tz()")),
            _ => Err(msg(t.start, "tz requires exactly one argument")),
        }
    }

    // ------------------------------------------------------- expressions

    /// An expression (InfluxDB's `ParseExpr`).
    pub(crate) fn expr(&mut self) -> R<Expr> {
        Ok(self.binary(1)?.expr)
    }

    fn binary(&mut self, min: u8) -> R<E> {
        let lhs = self.unary()?;
        self.binary_rest(lhs, min)
    }

    fn binary_rest(&mut self, mut lhs: E, min: u8) -> R<E> {
        loop {
            let cp = self.i.checkpoint();
            let t = self.next();
            let op = match Op::of(&t.tok) {
                Some(op) if op.precedence() >= min => op,
                _ => {
                    self.i.reset(&cp);
                    return Ok(lhs);
                }
            };
            let prec = op.precedence();
            let rhs = match op {
                Op::Bin(BinaryOp::EqRegex | BinaryOp::NeqRegex) => {
                    skip_spaces(&mut self.i);
                    let start = self.pos();
                    let r = self.regex()?;
                    let re = E {
                        expr: Expr::Regex(r),
                        depth: 1,
                        start,
                    };
                    self.binary_rest(re, prec + 1)?
                }
                _ => self.binary(prec + 1)?,
            };
            lhs = self.combine(op, lhs, rhs)?;
        }
    }

    fn combine(&mut self, op: Op, lhs: E, rhs: E) -> R<E> {
        let start = lhs.start;
        let (expr, depth) = match (op, lhs.expr) {
            (Op::And, Expr::And(mut v)) | (Op::Or, Expr::Or(mut v)) => {
                v.push(rhs.expr);
                let e = if matches!(op, Op::And) {
                    Expr::And(v)
                } else {
                    Expr::Or(v)
                };
                (e, lhs.depth.max(rhs.depth + 1))
            }
            (Op::And, l) => (Expr::And(vec![l, rhs.expr]), lhs.depth.max(rhs.depth) + 1),
            (Op::Or, l) => (Expr::Or(vec![l, rhs.expr]), lhs.depth.max(rhs.depth) + 1),
            (Op::Bin(op), l) => (
                Expr::Binary(Box::new(Binary {
                    op,
                    lhs: l,
                    rhs: rhs.expr,
                    span: Span::new(start, self.pos()),
                })),
                lhs.depth.max(rhs.depth) + 1,
            ),
        };
        self.check_depth(depth, start)?;
        Ok(E { expr, depth, start })
    }

    fn check_depth(&self, depth: usize, pos: usize) -> R<()> {
        if depth > MAX_DEPTH {
            return Err(msg(
                pos,
                format!("expression nested too deeply (more than {MAX_DEPTH} levels)"),
            ));
        }
        Ok(())
    }

    fn unary(&mut self) -> R<E> {
        let t = self.next();
        let start = t.start;
        let leaf = |expr| {
            Ok(E {
                expr,
                depth: 1,
                start,
            })
        };
        match t.tok {
            Tok::LParen => {
                self.enter(start)?;
                let inner = self.binary(1)?;
                self.leave();
                self.expect_tok(Tok::RParen, ")")?;
                let depth = inner.depth + 1;
                self.check_depth(depth, start)?;
                Ok(E {
                    expr: Expr::Paren(Box::new(inner.expr)),
                    depth,
                    start,
                })
            }
            Tok::Ident(name) => {
                if self.raw_is('(') {
                    self.raw();
                    return self.call(name.to_lowercase(), start);
                }
                self.var_ref(name, start)
            }
            Tok::Kw(Kw::Distinct) => {
                if self.raw_is('(') {
                    self.raw();
                    return self.call("distinct".to_string(), start);
                }
                if at_ws(&self.i) {
                    let t = self.next();
                    return match t.tok {
                        Tok::Ident(name) => leaf(Expr::Distinct(name)),
                        _ => Err(expected(&t, "identifier")),
                    };
                }
                Err(expected(&self.raw(), "(, identifier"))
            }
            Tok::Str(s) => leaf(Expr::String(s)),
            Tok::Number(s) => match s.parse::<f64>() {
                Ok(x) if x.is_finite() => leaf(Expr::Number(x)),
                _ => Err(msg(start, "unable to parse number")),
            },
            Tok::Integer(s) => match s.parse::<i64>() {
                Ok(n) => leaf(Expr::Integer(n)),
                Err(_) => match s.parse::<u64>() {
                    Ok(n) => leaf(Expr::Unsigned(n)),
                    Err(_) => Err(msg(start, "unable to parse integer")),
                },
            },
            Tok::Kw(Kw::True) => leaf(Expr::Bool(true)),
            Tok::Kw(Kw::False) => leaf(Expr::Bool(false)),
            Tok::Duration(s) => match parse_duration(s) {
                Ok(d) => leaf(Expr::Duration(d)),
                Err(m) => Err(msg(start, m)),
            },
            Tok::Mul => {
                if !self.raw_starts("::") {
                    return leaf(Expr::Wildcard(None));
                }
                self.raw();
                let t = self.raw();
                match t.tok {
                    Tok::Kw(Kw::Field) => leaf(Expr::Wildcard(Some(WildcardType::Field))),
                    Tok::Kw(Kw::Tag) => leaf(Expr::Wildcard(Some(WildcardType::Tag))),
                    _ => Err(expected(&t, "field, tag")),
                }
            }
            Tok::BoundParam(name) if name.is_empty() => Err(msg(start, "empty bound parameter")),
            Tok::BoundParam(name) => leaf(Expr::BoundParam(name)),
            Tok::Add | Tok::Sub => {
                let negative = t.tok == Tok::Sub;
                let t0 = self.peek();
                if !matches!(
                    t0.tok,
                    Tok::Number(_)
                        | Tok::Integer(_)
                        | Tok::Duration(_)
                        | Tok::LParen
                        | Tok::Ident(_)
                ) {
                    self.next();
                    return Err(expected(&t0, "identifier, number, duration, ("));
                }
                let inner = self.unary()?;
                let sign = if negative { -1 } else { 1 };
                let expr = match inner.expr {
                    Expr::Number(x) => Expr::Number(x * sign as f64),
                    Expr::Integer(n) => Expr::Integer(n * sign),
                    Expr::Duration(d) => Expr::Duration(d * sign),
                    Expr::Unsigned(n) if !negative => Expr::Unsigned(n),
                    Expr::Unsigned(n) if n == 1 << 63 => Expr::Integer(i64::MIN),
                    Expr::Unsigned(n) => {
                        return Err(msg(start, format!("constant -{n} underflows int64")))
                    }
                    e => {
                        let depth = inner.depth + 1;
                        self.check_depth(depth, start)?;
                        return Ok(E {
                            expr: Expr::Binary(Box::new(Binary {
                                op: BinaryOp::Mul,
                                lhs: Expr::Integer(sign),
                                rhs: e,
                                span: Span::new(start, self.pos()),
                            })),
                            depth,
                            start,
                        });
                    }
                };
                leaf(expr)
            }
            _ => Err(expected(&t, UNARY)),
        }
    }

    /// The rest of a variable reference whose first segment is `first`.
    fn var_ref(&mut self, first: String, start: usize) -> R<E> {
        let mut segs = vec![first];
        while self.at_segment_dot() {
            self.raw();
            match peek_char(&self.i) {
                Some('/') | Some(':') => break,
                Some('.') => segs.push(String::new()),
                _ => segs.push(self.ident()?),
            }
        }
        if segs.len() > 3 {
            let shown: Vec<String> = segs.iter().map(|s| Ident(s).to_string()).collect();
            return Err(msg(
                start,
                format!("too many segments in {}", shown.join(".")),
            ));
        }
        let mut data_type = None;
        if self.raw_starts("::") {
            self.raw();
            let t = self.raw();
            data_type = Some(match &t.tok {
                Tok::Ident(s) => match s.to_ascii_lowercase().as_str() {
                    "float" => DataType::Float,
                    "integer" => DataType::Integer,
                    "unsigned" => DataType::Unsigned,
                    "string" => DataType::String,
                    "boolean" => DataType::Boolean,
                    _ => {
                        return Err(expected(
                            &t,
                            "float, integer, unsigned, string, boolean, field, tag",
                        ))
                    }
                },
                Tok::Kw(Kw::Field) => DataType::Field,
                Tok::Kw(Kw::Tag) => DataType::Tag,
                _ => return Err(expected(&t, "float, integer, string, boolean, field, tag")),
            });
        }
        Ok(E {
            expr: Expr::VarRef(VarRef {
                name: segs.join("."),
                data_type,
                span: Span::new(start, self.pos()),
            }),
            depth: 1,
            start,
        })
    }

    /// A call's arguments and `)` (name and `(` consumed).
    fn call(&mut self, name: String, start: usize) -> R<E> {
        self.enter(start)?;
        let mut args = Vec::new();
        let mut depth = 0;
        let mut arg = |p: &mut Parser<'a>, args: &mut Vec<Expr>| -> R<()> {
            if let Some(r) = p.opt_regex()? {
                args.push(Expr::Regex(r));
                depth = depth.max(1);
                return Ok(());
            }
            let e = p.binary(1)?;
            depth = depth.max(e.depth);
            args.push(e.expr);
            Ok(())
        };
        skip_spaces(&mut self.i);
        if self.raw_is(')') {
            self.raw();
        } else {
            arg(self, &mut args)?;
            while self.eat_tok(Tok::Comma) {
                arg(self, &mut args)?;
            }
            self.expect_tok(Tok::RParen, ")")?;
        }
        self.leave();
        let depth = depth + 1;
        self.check_depth(depth, start)?;
        Ok(E {
            expr: Expr::Call(Call {
                name,
                args,
                span: Span::new(start, self.pos()),
            }),
            depth,
            start,
        })
    }
}

/// A `GROUP BY` expression, typed when it is one of the usual forms.
fn dimension(e: Expr) -> Dimension {
    match e {
        Expr::Call(c) if c.name == "time" => match c.args.as_slice() {
            [Expr::Duration(i)] => Dimension::Time {
                interval: *i,
                offset: None,
            },
            [Expr::Duration(i), Expr::Duration(o)] => Dimension::Time {
                interval: *i,
                offset: Some(TimeOffset::Duration(*o)),
            },
            [Expr::Duration(i), Expr::Call(now)] if now.name == "now" && now.args.is_empty() => {
                Dimension::Time {
                    interval: *i,
                    offset: Some(TimeOffset::Now),
                }
            }
            _ => Dimension::Other(Expr::Call(c)),
        },
        Expr::VarRef(VarRef {
            name,
            data_type: None,
            ..
        }) if !name.eq_ignore_ascii_case("time") => Dimension::Tag(name),
        Expr::Wildcard(None) => Dimension::Wildcard,
        e => Dimension::Other(e),
    }
}

fn contains_call(e: &Expr) -> bool {
    match e {
        Expr::Call(_) => true,
        Expr::Binary(b) => contains_call(&b.lhs) || contains_call(&b.rhs),
        Expr::Paren(p) => contains_call(p),
        Expr::And(v) | Expr::Or(v) => v.iter().any(contains_call),
        _ => false,
    }
}

/// The first comparison or logical operator in `e` (pre-order), which
/// InfluxDB refuses in a `SELECT` field.
fn find_condition_op(e: &Expr) -> Option<&'static str> {
    match e {
        Expr::And(_) => Some("AND"),
        Expr::Or(_) => Some("OR"),
        Expr::Binary(b) if b.op.is_comparison() => Some(b.op.as_str()),
        Expr::Binary(b) => find_condition_op(&b.lhs).or_else(|| find_condition_op(&b.rhs)),
        Expr::Paren(p) => find_condition_op(p),
        Expr::Call(c) => c.args.iter().find_map(find_condition_op),
        _ => None,
    }
}
