//! Reading a canonical series key back into its names, below the edges
//! so the catalog's index can do it: `measurement[,tk=tv...] field`, each
//! name escaped the one canonical way the line protocol writes it
//! (`crate::http::line::series_key`: `,` and space in the measurement;
//! `,` `=` and space in tag keys, tag values and the field key, each after
//! a backslash; nothing else is escaped). Pure; never panics.

use std::borrow::Cow;

/// The unescaped names in a series key: measurement, tags (in key order),
/// field.
pub type SeriesParts = (String, Vec<(String, String)>, String);

fn measurement_stop(b: u8) -> bool {
    matches!(b, b',' | b' ')
}

fn key_special(b: u8) -> bool {
    matches!(b, b',' | b'=' | b' ')
}

/// A token of `s` from `start` up to the first byte for which `stop`
/// holds, where a backslash before a byte for which `unescape` holds
/// escapes it (the backslash is dropped, the byte kept). Returns the
/// unescaped text and the position of the stop byte (or the end). Borrows
/// from `s` unless the token holds an escape. `s` is valid UTF-8 and every
/// stop and escape is ASCII, so each copied segment is whole characters.
/// Shared with the line-protocol parser (`crate::http::line`).
pub(crate) fn token(
    s: &str,
    start: usize,
    stop: impl Fn(u8) -> bool,
    unescape: impl Fn(u8) -> bool,
) -> (Cow<'_, str>, usize) {
    let b = s.as_bytes();
    let mut i = start;
    let mut owned: Option<String> = None;
    let mut seg = i;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' && i + 1 < b.len() && unescape(b[i + 1]) {
            let o = owned.get_or_insert_with(String::new);
            o.push_str(&s[seg..i]);
            o.push(b[i + 1] as char);
            i += 2;
            seg = i;
            continue;
        }
        if stop(c) {
            break;
        }
        i += 1;
    }
    match owned {
        None => (Cow::Borrowed(&s[start..i]), i),
        Some(mut o) => {
            o.push_str(&s[seg..i]);
            (Cow::Owned(o), i)
        }
    }
}

/// The unescaped measurement, tags and field of a series key, `None` if
/// `key` is not one.
pub fn split_series_key(key: &str) -> Option<SeriesParts> {
    split_key(key).map(|(parts, _)| parts)
}

/// [`split_series_key`], and the length of the key's InfluxDB series key
/// (`measurement,tk=tv...`, escaped: the key up to the space before the
/// field).
pub fn split_key(key: &str) -> Option<(SeriesParts, usize)> {
    let (m, tags, field_at) = split_prefix(key)?;
    let (f, j) = token(key, field_at, key_special, key_special);
    if f.is_empty() || j != key.len() {
        return None;
    }
    Some(((m, tags, f.into_owned()), field_at - 1))
}

/// Measurement and tags of a series key, and where its field starts (one
/// past the space).
#[allow(clippy::type_complexity)]
fn split_prefix(key: &str) -> Option<(String, Vec<(String, String)>, usize)> {
    let b = key.as_bytes();
    let (m, mut i) = token(key, 0, measurement_stop, measurement_stop);
    if m.is_empty() || i >= b.len() {
        return None;
    }
    let mut tags = Vec::new();
    while b[i] == b',' {
        let (k, j) = token(key, i + 1, key_special, key_special);
        if k.is_empty() || j >= b.len() || b[j] != b'=' {
            return None;
        }
        let (v, j) = token(key, j + 1, key_special, key_special);
        if v.is_empty() || j >= b.len() || b[j] == b'=' {
            return None;
        }
        tags.push((k.into_owned(), v.into_owned()));
        i = j;
    }
    // b[i] is the space before the field.
    Some((m.into_owned(), tags, i + 1))
}
