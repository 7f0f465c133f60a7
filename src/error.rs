//! The crate's error type. Every variant says what it is about: the file and
//! offset of a corruption, the input that was refused, the I/O call that failed.

use std::fmt;
use std::path::PathBuf;

/// Result with the crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in xtdb.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An I/O call failed.
    Io {
        /// What was being done, e.g. "fdatasync wal segment".
        context: String,
        /// The path involved, if any.
        path: Option<PathBuf>,
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
    /// The caller's input was refused; nothing was written.
    InvalidInput(String),
    /// An earlier durable-write failure fenced the shard: it no longer
    /// acknowledges writes (a retried fsync can falsely succeed on Linux).
    Fenced(String),
    /// The shard is closed or closing.
    Closed,
    /// A peer broke the wire protocol (bad frame, CRC, length, version).
    Protocol(String),
    /// The server answered with an error frame.
    Remote {
        /// Error code from the frame.
        code: u16,
        /// Message from the frame.
        message: String,
    },
}

impl Error {
    /// Wraps an I/O error with what was being done and on which path.
    pub fn io(context: impl Into<String>, path: Option<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            path,
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
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io {
                context,
                path: Some(p),
                source,
            } => {
                write!(f, "{context} ({}): {source}", p.display())
            }
            Error::Io {
                context,
                path: None,
                source,
            } => write!(f, "{context}: {source}"),
            Error::Corrupt {
                path,
                offset,
                reason,
            } => {
                write!(
                    f,
                    "corruption in {} at offset {offset}: {reason}",
                    path.display()
                )
            }
            Error::InvalidInput(m) => write!(f, "invalid input: {m}"),
            Error::Fenced(m) => write!(f, "shard fenced after a failed durable write: {m}"),
            Error::Closed => write!(f, "shard is closed"),
            Error::Protocol(m) => write!(f, "protocol error: {m}"),
            Error::Remote { code, message } => write!(f, "server error {code}: {message}"),
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

impl From<glommio::GlommioError<()>> for Error {
    fn from(e: glommio::GlommioError<()>) -> Self {
        match e {
            glommio::GlommioError::IoError(source) => Error::io("glommio", None, source),
            glommio::GlommioError::EnhancedIoError {
                source, op, path, ..
            } => Error::io(op.to_string(), path, source),
            other => Error::io("glommio", None, std::io::Error::other(other.to_string())),
        }
    }
}
