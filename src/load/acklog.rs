//! The ack log: a compact, append-only record of every batch the server
//! acknowledged, from which `verify` recomputes every acknowledged point.
//!
//! Format (text, one record per line, `\n`-terminated, fields separated by
//! one space, each line ending in the CRC-32 of everything before its last
//! space, as 8 lowercase hex digits):
//!
//! ```text
//! # xtdb-load ack log v1                       (comment; ignored)
//! G <id> <seed> <tag_lo> <n_tags> <t0_us> <period_us> [<signal>] <crc>
//! B <id> <first_index> <count> <crc>
//! ```
//!
//! A `G` line declares a [`Group`] under a token `id` (unique per run and
//! connection; `signal` is `noise` when absent, as logs before it had no
//! such field)
//! connection: `<run nonce>.<connection>`); a later `G` with the same id
//! replaces it. A `B` line says the points with indices
//! `first_index .. first_index + count` of group `id` were acknowledged (see
//! [`crate::load::gen`] for what an index means). A `B` line is appended only
//! after the server's acknowledgement arrived, with a single `write(2)` on a
//! file opened `O_APPEND`, so a generator killed at any moment leaves at most
//! one torn last line; the parser ignores a last line without its `\n` and
//! counts (and skips) any line whose CRC does not match.
//!
//! The log is not fsynced: it survives the generator (or the server) being
//! killed, not a power cut of the machine running the generator.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::load::gen::{Group, Signal};

/// Appends records to an ack log. One per executor; lines are written whole.
#[derive(Debug)]
pub struct AckLogWriter {
    file: File,
    path: PathBuf,
    line: String,
}

fn crc_hex(s: &str) -> String {
    format!("{:08x}", crc32fast::hash(s.as_bytes()))
}

impl AckLogWriter {
    /// Opens (creating if needed) `path` for appending.
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io("open ack log", Some(path.to_path_buf()), e))?;
        Ok(AckLogWriter {
            file,
            path: path.to_path_buf(),
            line: String::with_capacity(128),
        })
    }

    fn emit(&mut self, body: std::fmt::Arguments<'_>) -> Result<()> {
        use std::fmt::Write as _;
        self.line.clear();
        let _ = self.line.write_fmt(body);
        let crc = crc_hex(&self.line);
        self.line.push(' ');
        self.line.push_str(&crc);
        self.line.push('\n');
        self.file
            .write_all(self.line.as_bytes())
            .map_err(|e| Error::io("append to ack log", Some(self.path.clone()), e))
    }

    /// Declares group `id`.
    pub fn group(&mut self, id: &str, g: &Group) -> Result<()> {
        match g.signal {
            Signal::Noise => self.emit(format_args!(
                "G {id} {} {} {} {} {}",
                g.seed, g.tag_lo, g.n_tags, g.t0, g.period_us
            )),
            s => self.emit(format_args!(
                "G {id} {} {} {} {} {} {}",
                g.seed,
                g.tag_lo,
                g.n_tags,
                g.t0,
                g.period_us,
                s.name()
            )),
        }
    }

    /// Records that points `first .. first + count` of group `id` were acknowledged.
    pub fn batch(&mut self, id: &str, first: u64, count: u64) -> Result<()> {
        self.emit(format_args!("B {id} {first} {count}"))
    }
}

/// One acknowledged batch, resolved to its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AckedBatch {
    /// Index into [`AckLog::groups`].
    pub group: usize,
    /// First point index.
    pub first: u64,
    /// Number of points.
    pub count: u64,
}

/// A parsed ack log.
#[derive(Clone, Debug, Default)]
pub struct AckLog {
    /// Every group declaration, in file order.
    pub groups: Vec<Group>,
    /// Every acknowledged batch, in file order.
    pub batches: Vec<AckedBatch>,
    /// Lines skipped because their CRC or syntax was wrong (1-based numbers).
    pub bad_lines: Vec<usize>,
    /// Whether the file ended in a torn line (no `\n`), which was ignored.
    pub torn_tail: bool,
}

impl AckLog {
    /// Reads and parses the ack log at `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).map_err(|e| Error::io("read ack log", Some(path.into()), e))?;
        Ok(Self::parse(&bytes))
    }

    /// Parses ack-log bytes. Never fails: bad lines are listed in `bad_lines`.
    pub fn parse(bytes: &[u8]) -> Self {
        let mut log = AckLog::default();
        let mut ids: std::collections::HashMap<String, usize> = Default::default();
        let mut rest = bytes;
        let mut lineno = 0;
        while !rest.is_empty() {
            lineno += 1;
            let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                log.torn_tail = true;
                break;
            };
            let raw = &rest[..nl];
            rest = &rest[nl + 1..];
            let Ok(line) = std::str::from_utf8(raw) else {
                log.bad_lines.push(lineno);
                continue;
            };
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if Self::parse_line(line, &mut ids, &mut log).is_none() {
                log.bad_lines.push(lineno);
            }
        }
        log
    }

    fn parse_line(
        line: &str,
        ids: &mut std::collections::HashMap<String, usize>,
        log: &mut AckLog,
    ) -> Option<()> {
        let (body, crc) = line.rsplit_once(' ')?;
        if crc != crc_hex(body) {
            return None;
        }
        let f: Vec<&str> = body.split(' ').collect();
        match f.as_slice() {
            ["G", id, seed, lo, n, t0, period, signal @ ..] if signal.len() <= 1 => {
                let g = Group {
                    seed: seed.parse().ok()?,
                    tag_lo: lo.parse().ok()?,
                    n_tags: n.parse().ok()?,
                    t0: t0.parse().ok()?,
                    period_us: period.parse().ok()?,
                    signal: match signal {
                        [s] => s.parse().ok()?,
                        _ => Signal::Noise,
                    },
                };
                if g.n_tags == 0 || g.period_us <= 0 {
                    return None;
                }
                ids.insert((*id).to_string(), log.groups.len());
                log.groups.push(g);
                Some(())
            }
            ["B", id, first, count] => {
                let group = *ids.get(*id)?;
                log.batches.push(AckedBatch {
                    group,
                    first: first.parse().ok()?,
                    count: count.parse().ok()?,
                });
                Some(())
            }
            _ => None,
        }
    }

    /// Total number of acknowledged points recorded.
    pub fn points(&self) -> u64 {
        self.batches.iter().map(|b| b.count).sum()
    }
}
