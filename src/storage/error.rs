//! The storage layer's error type. Every variant names what it is about:
//! the file (and offset) of an I/O failure or a corruption, the setting
//! that was refused, the reason a shard stopped acknowledging writes.
//! Storage never reports a bare string for something a caller branches on.

use std::fmt;
use std::path::PathBuf;

/// Result with the storage [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong inside one shard's storage.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An I/O call on a file or directory failed.
    Io {
        /// What was being done, e.g. "fdatasync".
        op: String,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Data on disk failed validation (checksum, magic, version, sequence).
    Corrupt {
        /// The file holding the damage.
        path: PathBuf,
        /// Byte offset of the damaged structure.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// An earlier durable-write failure fenced the shard (or the catalog):
    /// it no longer acknowledges writes (a retried fsync can falsely
    /// succeed on Linux). `reason` is the failure that fenced it.
    Fenced {
        /// The failure that fenced it, with its file.
        reason: String,
    },
    /// The shard is closed or closing.
    Closed,
    /// A configuration value was refused; nothing was opened.
    InvalidConfig {
        /// The setting, e.g. "wal segment size".
        setting: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// A limit of the store was reached (e.g. the catalog's id space or
    /// key length); nothing of the request was stored.
    Limit {
        /// Which limit.
        what: &'static str,
        /// Details (the offending size or value).
        detail: String,
    },
    /// A query the aggregation kernels refused (bad parameter, too many
    /// windows); names what was wrong. Nothing was changed.
    Query {
        /// What was wrong.
        reason: String,
    },
}

impl Error {
    /// Wraps an I/O error with what was being done and on which path.
    pub fn io(op: impl Into<String>, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op: op.into(),
            path: path.into(),
            source,
        }
    }

    /// Corruption at `offset` in `path`.
    pub fn corrupt(path: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }

    /// The shard (or catalog) is fenced because of `reason`.
    pub fn fenced(reason: impl Into<String>) -> Self {
        Error::Fenced {
            reason: reason.into(),
        }
    }

    /// A full disk: `need` bytes of new file space for `what` could not be
    /// had in `dir`. The message says how much is needed and how much is
    /// free, and that writing resumes by itself once space is freed.
    pub fn no_space(what: &str, dir: &std::path::Path, need: u64) -> Self {
        let free = crate::storage::file::free_space(dir)
            .map_or_else(|| "unknown".to_string(), |b| format!("{} MiB", b >> 20));
        Error::Io {
            op: format!(
                "disk full: {what} needs {} MiB more (free there: {free}); writing resumes by itself once space is freed",
                need.div_ceil(1 << 20)
            ),
            path: dir.to_path_buf(),
            source: std::io::Error::from_raw_os_error(28),
        }
    }

    /// A refusal for lack of space, `why` being the text of an earlier
    /// [`Error::no_space`] ([`Error::reason`]).
    pub fn refused_for_space(why: String, path: impl Into<PathBuf>) -> Self {
        Error::Io {
            op: why,
            path: path.into(),
            source: std::io::Error::from_raw_os_error(28),
        }
    }

    /// What an I/O error was doing (for a no-space error: what needs how
    /// much), or the whole message for the other kinds.
    pub fn reason(&self) -> String {
        match self {
            Error::Io { op, .. } => op.clone(),
            e => e.to_string(),
        }
    }

    /// Whether a preallocation (creating or growing a file) failed for lack
    /// of space: nothing was written, so the caller may retry later.
    pub fn is_alloc_no_space(&self) -> bool {
        matches!(self, Error::Io { op, .. } if op == crate::storage::file::FALLOCATE)
            && self.is_no_space()
    }

    /// Whether this is a full disk (ENOSPC).
    pub fn is_no_space(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.raw_os_error() == Some(28))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { op, path, source } => write!(f, "{op} ({}): {source}", path.display()),
            Error::Corrupt {
                path,
                offset,
                reason,
            } => write!(
                f,
                "corruption in {} at offset {offset}: {reason}",
                path.display()
            ),
            Error::Fenced { reason } => {
                write!(f, "shard fenced after a failed durable write: {reason}")
            }
            Error::Closed => write!(f, "shard is closed"),
            Error::InvalidConfig { setting, reason } => write!(f, "invalid {setting}: {reason}"),
            Error::Limit { what, detail } => write!(f, "{what}: {detail}"),
            Error::Query { reason } => write!(f, "bad query: {reason}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The `std::io::Error` inside a glommio error (glommio wraps its I/O
/// errors; anything else becomes `Other` with glommio's message).
pub fn glommio_io(e: glommio::GlommioError<()>) -> std::io::Error {
    match e {
        glommio::GlommioError::IoError(s) => s,
        glommio::GlommioError::EnhancedIoError { source, .. } => source,
        other => std::io::Error::other(other.to_string()),
    }
}
