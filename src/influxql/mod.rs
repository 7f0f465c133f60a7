//! InfluxQL, the query language of InfluxDB 1.x: the front end only.
//!
//! Owns turning the text of `GET/POST /query?q=` into a syntax tree
//! ([`parse`]), printing a tree back as InfluxQL (`Display` on every node),
//! and the time arithmetic the executor needs ([`time_range`],
//! [`parse_duration`], [`parse_time`]). It must never plan, execute,
//! resolve names against a catalog, compile regexes, read a clock or do
//! I/O: it is pure functions of the text, so it can run anywhere, on any
//! input, without panicking.
//!
//! Compatibility: the grammar follows InfluxDB 1.x (`influxql` as shipped
//! in InfluxDB 1.6/1.7) statement by statement; `tests/influxql_parse.rs`
//! sends a corpus of queries (everything Grafana's InfluxQL data source and
//! the `influxdb` Python client send, and more) to a real InfluxDB 1.6.7
//! and checks both accept and refuse the same ones. Errors read like
//! InfluxDB's: `found FROM, expected identifier, string, number, bool at
//! line 1, char 8` (char counts characters from 1).
//!
//! Deliberate differences from InfluxDB 1.6.7's parser:
//! - regexes are not compiled here, so `/(/` parses (the executor reports
//!   it when it compiles the regex);
//! - `$param` parses to [`Expr::BoundParam`] whether or not the request has
//!   `params`; the executor substitutes them or answers "missing parameter";
//! - nesting (parentheses, calls, subqueries) and expression trees deeper
//!   than [`MAX_DEPTH`] are refused instead of recursing without bound;
//!   `AND`/`OR` chains of any length are fine (they are flat lists);
//! - a comment right after a `FROM` measurement (`FROM m /* c */ WHERE`)
//!   parses; InfluxDB 1.6 refuses it because its scanner looks one token
//!   too far for a regex there (the same look-ahead bug refuses
//!   `FROM m,/re/`, which parses here too);
//! - a NUL character is an illegal character; InfluxDB ends the query there;
//! - duration overflow is always an error (InfluxDB may wrap silently);
//! - an unknown `tz()` zone is refused as InfluxDB refuses it
//!   (`unable to find time zone X`, no position), against the IANA
//!   database compiled into `chrono-tz` rather than the host's;
//! - `too many segments` and `fill(...)`/`tz(...)`/`ORDER BY` errors carry
//!   the position of the clause (InfluxDB reports line 1, char 1 or none);
//!   `found EOF` is placed just after the last character (InfluxDB places
//!   it one further), and a bad string at its opening quote (InfluxDB: one
//!   before).
//!
//! Not the parser's job, so the executor must do it: a blank `q` is HTTP
//! 400 `missing required parameter "q"` in InfluxDB (its handler checks
//! before parsing), and a parse error is HTTP 400 `{"error": "error parsing
//! query: <ParseError>"}`.

mod ast;
mod lexer;
mod parser;
mod time;

#[cfg(test)]
mod tests;

pub use ast::*;
pub use time::{
    civil_from_days, format_duration, looks_like_time, parse_duration, parse_time, time_range,
    TimeCondition, TimeError, MAX_TIME, MIN_TIME,
};

use std::fmt;

/// The deepest nesting of parentheses, calls and subqueries, and the
/// deepest expression tree, that [`parse`] accepts. Any tree it returns can
/// be walked recursively on a small stack.
pub const MAX_DEPTH: usize = 100;

/// A query that does not parse: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset into the query.
    pub pos: usize,
    /// Line, from 1.
    pub line: usize,
    /// Character (not byte) within the line, from 1.
    pub column: usize,
    /// InfluxDB-style text, e.g. `found FROM, expected identifier, string, number, bool`.
    pub message: String,
    /// Whether the text names the position (InfluxDB's does not for some
    /// errors, e.g. an unknown `tz()` zone).
    pub positioned: bool,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.positioned {
            return f.write_str(&self.message);
        }
        write!(
            f,
            "{} at line {}, char {}",
            self.message, self.line, self.column
        )
    }
}

impl std::error::Error for ParseError {}

/// Parses `q`: zero or more statements separated by `;` (empty statements
/// and a trailing `;` are allowed, as in InfluxDB). Never panics; linear in
/// the length of `q`.
pub fn parse(q: &str) -> Result<Vec<Statement>, ParseError> {
    parser::parse_query(q).map_err(|e| {
        let positioned = e.pos != parser::NO_POS;
        let pos = e.pos.min(q.len());
        let (line, column) = line_column(q, pos);
        ParseError {
            pos,
            line,
            column,
            message: e.message,
            positioned,
        }
    })
}

/// 1-based line and character of byte `pos` (`\r\n`, `\r` and `\n` each
/// end a line, as in InfluxDB's scanner).
fn line_column(q: &str, pos: usize) -> (usize, usize) {
    let mut line = 1;
    let mut column = 1;
    let mut chars = q.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if i >= pos {
            break;
        }
        match c {
            '\r' => {
                if chars.peek().is_some_and(|&(j, c)| c == '\n' && j < pos) {
                    chars.next();
                }
                line += 1;
                column = 1;
            }
            '\n' => {
                line += 1;
                column = 1;
            }
            _ => column += 1,
        }
    }
    (line, column)
}
