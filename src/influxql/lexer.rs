//! The InfluxQL scanner: turns the text at the cursor into one [`Token`].
//!
//! Owns the lexical rules of InfluxDB 1.x's scanner (`influxql/scanner.go`):
//! what an identifier, keyword, number, duration, string, regex, bound
//! parameter and comment look like, and which escapes are valid. It never
//! fails: anything it cannot read becomes a token the parser reports
//! (`Illegal`, `BadString`, `BadEscape`, `BadRegex`). It must never look
//! further than the token it returns, so every call is linear in the token.
//!
//! Rules kept from the Go scanner, because clients depend on them:
//! - keywords are case-insensitive, identifiers `[A-Za-z_][A-Za-z0-9_]*`
//!   (ASCII only) or double-quoted;
//! - a number followed by a letter is one duration token (`15m`, `1h30m`,
//!   `1e10` is a bad duration, not a float); `5.` is the float 5;
//! - strings and quoted identifiers take the escapes `\n \\ \' \"` and
//!   nothing else; a raw newline (or carriage return) ends them badly;
//! - regexes are only read where the grammar allows one ([`regex`]); there
//!   `\/` is an escaped slash and every other backslash is kept as is.

use winnow::error::EmptyError;
use winnow::stream::{LocatingSlice, Location, Offset, Stream};
use winnow::token::take_while;
use winnow::Parser;

/// The parser's input: the query text with byte offsets.
pub(crate) type Input<'a> = LocatingSlice<&'a str>;

/// Whitespace as InfluxQL sees it (a carriage return counts as a newline).
pub(crate) fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// A character that may appear in a bare identifier after the first.
pub(crate) fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// A character that may start a bare identifier.
pub(crate) fn is_ident_first(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

macro_rules! keywords {
    ($($kw:ident => $text:literal,)*) => {
        /// An InfluxQL keyword (matched case-insensitively).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Kw { $($kw,)* }

        const KEYWORDS: &[(&str, Kw)] = &[$(($text, Kw::$kw),)*];

        impl Kw {
            /// The keyword as InfluxDB spells it in messages (upper case).
            pub(crate) fn as_str(self) -> &'static str {
                match self { $(Kw::$kw => $text,)* }
            }
        }
    };
}

keywords! {
    All => "ALL", Alter => "ALTER", Analyze => "ANALYZE", And => "AND", Any => "ANY",
    As => "AS", Asc => "ASC", Begin => "BEGIN", By => "BY", Cardinality => "CARDINALITY",
    Create => "CREATE", Continuous => "CONTINUOUS", Database => "DATABASE",
    Databases => "DATABASES", Default => "DEFAULT", Delete => "DELETE", Desc => "DESC",
    Destinations => "DESTINATIONS", Diagnostics => "DIAGNOSTICS", Distinct => "DISTINCT",
    Drop => "DROP", Duration => "DURATION", End => "END", Every => "EVERY",
    Exact => "EXACT", Explain => "EXPLAIN", False => "FALSE", Field => "FIELD", For => "FOR",
    From => "FROM", Grant => "GRANT", Grants => "GRANTS", Group => "GROUP",
    Groups => "GROUPS", In => "IN", Inf => "INF", Insert => "INSERT", Into => "INTO",
    Key => "KEY", Keys => "KEYS", Kill => "KILL", Limit => "LIMIT",
    Measurement => "MEASUREMENT", Measurements => "MEASUREMENTS", Name => "NAME",
    Offset => "OFFSET", On => "ON", Or => "OR", Order => "ORDER", Password => "PASSWORD",
    Policy => "POLICY", Policies => "POLICIES", Privileges => "PRIVILEGES",
    Queries => "QUERIES", Query => "QUERY", Read => "READ", Replication => "REPLICATION",
    Resample => "RESAMPLE", Retention => "RETENTION", Revoke => "REVOKE",
    Select => "SELECT", Series => "SERIES", Set => "SET", Show => "SHOW", Shard => "SHARD",
    Shards => "SHARDS", Slimit => "SLIMIT", Soffset => "SOFFSET", Stats => "STATS",
    Subscription => "SUBSCRIPTION", Subscriptions => "SUBSCRIPTIONS", Tag => "TAG",
    To => "TO", True => "TRUE", User => "USER", Users => "USERS", Values => "VALUES",
    Where => "WHERE", With => "WITH", Write => "WRITE",
}

impl Kw {
    /// The keyword spelled `s` in any case, if there is one.
    pub(crate) fn lookup(s: &str) -> Option<Kw> {
        // Every keyword is 2..=13 ASCII letters: skip the table for others.
        if !(2..=13).contains(&s.len()) || !s.bytes().all(|b| b.is_ascii_alphabetic()) {
            return None;
        }
        KEYWORDS
            .iter()
            .find(|(text, _)| text.eq_ignore_ascii_case(s))
            .map(|&(_, kw)| kw)
    }
}

/// What a token is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok<'a> {
    /// A bare or double-quoted identifier (unescaped).
    Ident(String),
    /// A keyword (including `AND`, `OR`, `TRUE`, `FALSE`).
    Kw(Kw),
    /// Digits only.
    Integer(&'a str),
    /// Digits with a fractional part (`1.5`, `.5`, `5.`).
    Number(&'a str),
    /// Digits followed by letters (`15m`, `1h30m`; maybe invalid).
    Duration(&'a str),
    /// A single-quoted string (unescaped).
    Str(String),
    /// A string or quoted identifier without its closing quote; the text
    /// read so far.
    BadString(String),
    /// An escape other than `\n \\ \' \"`: the two characters.
    BadEscape(String),
    /// `$name`.
    BoundParam(String),
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
    /// `!=` or `<>`
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
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `,`
    Comma,
    /// `:`
    Colon,
    /// `::`
    DoubleColon,
    /// `;`
    Semicolon,
    /// `.`
    Dot,
    /// End of input.
    Eof,
    /// A character that starts no token (or an unterminated `/*`).
    Illegal(String),
}

/// A token and where it is (byte offsets into the query).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token<'a> {
    pub(crate) tok: Tok<'a>,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

impl Tok<'_> {
    /// The token as InfluxDB names it after "found" in a message: its text
    /// when it has one, else its name.
    pub(crate) fn found(&self) -> String {
        let s: &str = match self {
            Tok::Ident(s) if s.is_empty() => "IDENT",
            Tok::Str(s) if s.is_empty() => "STRING",
            Tok::BadString(s) if s.is_empty() => "BADSTRING",
            Tok::Ident(s) | Tok::Str(s) | Tok::BadString(s) | Tok::BadEscape(s) => s,
            Tok::BoundParam(s) => return format!("${s}"),
            Tok::Kw(k) => k.as_str(),
            Tok::Integer(s) | Tok::Number(s) | Tok::Duration(s) => s,
            Tok::Add => "+",
            Tok::Sub => "-",
            Tok::Mul => "*",
            Tok::Div => "/",
            Tok::Mod => "%",
            Tok::BitAnd => "&",
            Tok::BitOr => "|",
            Tok::BitXor => "^",
            Tok::Eq => "=",
            Tok::Neq => "!=",
            Tok::EqRegex => "=~",
            Tok::NeqRegex => "!~",
            Tok::Lt => "<",
            Tok::Lte => "<=",
            Tok::Gt => ">",
            Tok::Gte => ">=",
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::Comma => ",",
            Tok::Colon => ":",
            Tok::DoubleColon => "::",
            Tok::Semicolon => ";",
            Tok::Dot => ".",
            Tok::Eof => "EOF",
            Tok::Illegal(s) if s.is_empty() => "ILLEGAL",
            Tok::Illegal(s) => s,
        };
        s.to_string()
    }
}

fn pos(i: &Input<'_>) -> usize {
    i.current_token_start()
}

/// Skips whitespace only (not comments): what InfluxDB does before a
/// place where a regex may start.
pub(crate) fn skip_spaces(i: &mut Input<'_>) {
    let _ = take_while::<_, _, EmptyError>(0.., is_ws).parse_next(i);
}

/// Skips whitespace and complete comments (`-- ...` to the end of the line,
/// `/* ... */`). An unterminated `/*` is left for [`token`] to report.
pub(crate) fn skip_ws(i: &mut Input<'_>) {
    loop {
        skip_spaces(i);
        let rest: &str = i;
        if rest.starts_with("--") {
            let n = rest.find('\n').map_or(rest.len(), |n| n + 1);
            let _ = i.next_slice(n);
        } else if let Some(body) = rest.strip_prefix("/*") {
            match body.find("*/") {
                Some(n) => {
                    let _ = i.next_slice(n + 4);
                }
                None => return,
            }
        } else {
            return;
        }
    }
}

/// True when the next character is whitespace or starts a comment.
pub(crate) fn at_ws(i: &Input<'_>) -> bool {
    let rest: &str = i;
    rest.starts_with(is_ws) || rest.starts_with("--") || rest.starts_with("/*")
}

/// The next character, without consuming it.
pub(crate) fn peek_char(i: &Input<'_>) -> Option<char> {
    i.peek_token()
}

/// Reads one token at the cursor (which must not be at whitespace for the
/// result to be meaningful; callers skip it first).
pub(crate) fn token<'a>(i: &mut Input<'a>) -> Token<'a> {
    let start = pos(i);
    let tok = token_kind(i);
    Token {
        tok,
        start,
        end: pos(i),
    }
}

fn token_kind<'a>(i: &mut Input<'a>) -> Tok<'a> {
    let Some(c) = i.peek_token() else {
        return Tok::Eof;
    };
    if is_ident_first(c) || c == '"' {
        return ident_or_keyword(i);
    }
    if c.is_ascii_digit() {
        return number(i);
    }
    let rest: &str = i;
    if c == '.' && rest[1..].starts_with(|c: char| c.is_ascii_digit()) {
        return number(i);
    }
    let two = rest.get(..2).unwrap_or("");
    let (tok, n) = match two {
        "=~" => (Tok::EqRegex, 2),
        "!=" => (Tok::Neq, 2),
        "!~" => (Tok::NeqRegex, 2),
        "<>" => (Tok::Neq, 2),
        "<=" => (Tok::Lte, 2),
        ">=" => (Tok::Gte, 2),
        "::" => (Tok::DoubleColon, 2),
        "/*" => (Tok::Illegal(String::new()), rest.len()), // unterminated comment
        _ => {
            let t = match c {
                '\'' => return string(i).map_or_else(|e| e, Tok::Str),
                '$' => {
                    let _ = i.next_token();
                    return bound_param(i);
                }
                '+' => Tok::Add,
                '-' => Tok::Sub,
                '*' => Tok::Mul,
                '/' => Tok::Div,
                '%' => Tok::Mod,
                '&' => Tok::BitAnd,
                '|' => Tok::BitOr,
                '^' => Tok::BitXor,
                '=' => Tok::Eq,
                '<' => Tok::Lt,
                '>' => Tok::Gt,
                '(' => Tok::LParen,
                ')' => Tok::RParen,
                ',' => Tok::Comma,
                ';' => Tok::Semicolon,
                ':' => Tok::Colon,
                '.' => Tok::Dot,
                other => Tok::Illegal(other.to_string()),
            };
            (t, c.len_utf8())
        }
    };
    let _ = i.next_slice(n);
    tok
}

fn bare<'a>(i: &mut Input<'a>) -> &'a str {
    take_while::<_, _, EmptyError>(0.., is_ident_char)
        .parse_next(i)
        .unwrap_or("")
}

/// An identifier or keyword. As in the Go scanner, bare characters directly
/// followed by a quoted part give the quoted part only (`ab"c"` is `c`).
fn ident_or_keyword<'a>(i: &mut Input<'a>) -> Tok<'a> {
    let word = bare(i);
    if i.peek_token() == Some('"') {
        return match string(i) {
            Ok(s) => Tok::Ident(s),
            Err(bad) => bad,
        };
    }
    match Kw::lookup(word) {
        Some(kw) => Tok::Kw(kw),
        None => Tok::Ident(word.to_string()),
    }
}

/// `$name` or `$"name"` (the `$` already consumed).
fn bound_param<'a>(i: &mut Input<'a>) -> Tok<'a> {
    let word = bare(i);
    if word.is_empty() && i.peek_token() == Some('"') {
        return match string(i) {
            Ok(s) => Tok::BoundParam(s),
            Err(bad) => bad,
        };
    }
    Tok::BoundParam(word.to_string())
}

/// A quoted string or identifier at the cursor (the quote decides which
/// ends it). Returns the unescaped text, or the bad token.
fn string<'a>(i: &mut Input<'a>) -> Result<String, Tok<'a>> {
    let Some(quote) = i.next_token() else {
        return Err(Tok::BadString(String::new()));
    };
    let mut out = String::new();
    loop {
        match i.next_token() {
            None | Some('\n') | Some('\r') => return Err(Tok::BadString(out)),
            Some(c) if c == quote => return Ok(out),
            Some('\\') => match i.next_token() {
                Some('n') => out.push('\n'),
                Some('\\') => out.push('\\'),
                Some('"') => out.push('"'),
                Some('\'') => out.push('\''),
                Some(other) => return Err(Tok::BadEscape(format!("\\{other}"))),
                None => return Err(Tok::BadEscape("\\".to_string())),
            },
            Some(c) => out.push(c),
        }
    }
}

/// Digits, an optional fraction, or digits followed by letters (a duration).
fn number<'a>(i: &mut Input<'a>) -> Tok<'a> {
    let start = i.checkpoint();
    let from: &'a str = i;
    let digits = |i: &mut Input<'a>| {
        let _ = take_while::<_, _, EmptyError>(0.., |c: char| c.is_ascii_digit()).parse_next(i);
    };
    digits(i);
    let mut decimal = false;
    if i.peek_token() == Some('.') {
        decimal = true;
        let _ = i.next_token();
        if i.peek_token().is_some_and(|c| c.is_ascii_digit()) {
            digits(i);
        }
    }
    let len = i.offset_from(&start);
    // `5.` is the number 5: the dot is consumed but not part of the text.
    let text = from[..len].strip_suffix('.').unwrap_or(&from[..len]);
    if decimal {
        return Tok::Number(text);
    }
    let is_unit = |c: char| c.is_ascii_alphabetic() || c == 'µ';
    if i.peek_token().is_some_and(is_unit) {
        let _ = take_while::<_, _, EmptyError>(1.., is_unit).parse_next(i);
        let _ = take_while::<_, _, EmptyError>(0.., |c: char| is_unit(c) || c.is_ascii_digit())
            .parse_next(i);
        let len = i.offset_from(&start);
        return Tok::Duration(&from[..len]);
    }
    Tok::Integer(text)
}

/// Why a regex could not be read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RegexError {
    /// No `/` at the cursor.
    NotRegex,
    /// A newline or the end of input before the closing `/`.
    Unterminated,
}

/// A `/.../` regex at the cursor: its source text with `\/` unescaped (other
/// backslashes kept). The cursor is left after the closing slash.
pub(crate) fn regex(i: &mut Input<'_>) -> Result<String, RegexError> {
    if i.peek_token() != Some('/') {
        return Err(RegexError::NotRegex);
    }
    let _ = i.next_token();
    let mut out = String::new();
    loop {
        match i.next_token() {
            None | Some('\n') | Some('\r') => return Err(RegexError::Unterminated),
            Some('/') => return Ok(out),
            Some('\\') => {
                if i.peek_token() == Some('/') {
                    let _ = i.next_token();
                    out.push('/');
                } else {
                    out.push('\\');
                }
            }
            Some(c) => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex_all(s: &str) -> Vec<Tok<'_>> {
        let mut i = Input::new(s);
        let mut out = Vec::new();
        loop {
            skip_ws(&mut i);
            let t = token(&mut i);
            if t.tok == Tok::Eof {
                return out;
            }
            let stop = matches!(
                t.tok,
                Tok::Illegal(_) | Tok::BadString(_) | Tok::BadEscape(_)
            );
            out.push(t.tok);
            if stop {
                return out;
            }
        }
    }

    #[test]
    fn numbers_and_durations() {
        assert_eq!(lex_all("12"), vec![Tok::Integer("12")]);
        assert_eq!(lex_all("1.5"), vec![Tok::Number("1.5")]);
        assert_eq!(lex_all(".5"), vec![Tok::Number(".5")]);
        assert_eq!(lex_all("5."), vec![Tok::Number("5")]);
        assert_eq!(lex_all("1h30m"), vec![Tok::Duration("1h30m")]);
        assert_eq!(lex_all("1e10"), vec![Tok::Duration("1e10")]);
        assert_eq!(lex_all("10µs"), vec![Tok::Duration("10µs")]);
        assert_eq!(
            lex_all("1.5h"),
            vec![Tok::Number("1.5"), Tok::Ident("h".into())]
        );
    }

    #[test]
    fn strings_idents_keywords() {
        assert_eq!(lex_all("sElEcT"), vec![Tok::Kw(Kw::Select)]);
        assert_eq!(lex_all(r#""select""#), vec![Tok::Ident("select".into())]);
        assert_eq!(lex_all(r#""a\"b""#), vec![Tok::Ident("a\"b".into())]);
        assert_eq!(lex_all(r"'it\'s'"), vec![Tok::Str("it's".into())]);
        assert_eq!(lex_all(r"'a\qb'"), vec![Tok::BadEscape("\\q".into())]);
        assert_eq!(lex_all("'abc"), vec![Tok::BadString("abc".into())]);
        assert_eq!(lex_all("'a\nb'")[0], Tok::BadString("a".into()));
        assert_eq!(lex_all(r#"ab"cd""#), vec![Tok::Ident("cd".into())]);
        assert_eq!(
            lex_all("$x $\"a b\""),
            vec![Tok::BoundParam("x".into()), Tok::BoundParam("a b".into())]
        );
    }

    #[test]
    fn operators_and_comments() {
        assert_eq!(
            lex_all("a <> b -- c\n/* d */ =~ !~ :: : ."),
            vec![
                Tok::Ident("a".into()),
                Tok::Neq,
                Tok::Ident("b".into()),
                Tok::EqRegex,
                Tok::NeqRegex,
                Tok::DoubleColon,
                Tok::Colon,
                Tok::Dot
            ]
        );
        assert_eq!(lex_all("/* open"), vec![Tok::Illegal(String::new())]);
        assert_eq!(lex_all("é"), vec![Tok::Illegal("é".into())]);
    }

    #[test]
    fn regexes() {
        let re = |s: &str| regex(&mut Input::new(s));
        assert_eq!(re(r"/a\/b/"), Ok("a/b".to_string()));
        assert_eq!(re(r"/a\db/"), Ok(r"a\db".to_string()));
        assert_eq!(re(r"/a\\/"), Err(RegexError::Unterminated));
        assert_eq!(re("/a\n/"), Err(RegexError::Unterminated));
        assert_eq!(re("x"), Err(RegexError::NotRegex));
    }
}
