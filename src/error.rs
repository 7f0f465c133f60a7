//! The application's error type, for what sits above the layers: starting
//! a server, the binaries, the load generator. Each layer below has its own
//! typed error ([`crate::storage::Error`], [`crate::net::ClientError`],
//! [`crate::runtime::command::Failure`] for commands); this one wraps them
//! with `From` impls and adds the failures of wiring them together. Every
//! variant says what it is about.

use std::fmt;
use std::path::PathBuf;

use crate::net::ClientError;
use crate::storage;

/// Result with the application [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// What can go wrong above the layers.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The storage layer failed (open, recovery, close).
    Storage(storage::Error),
    /// A native-protocol call to a server failed.
    Client(ClientError),
    /// A setting or argument was refused (names it).
    Config(String),
    /// An I/O call outside storage failed (sockets, signals, local files).
    Io {
        /// What was being done.
        op: String,
        /// The file involved, if any.
        path: Option<PathBuf>,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Starting or stopping the shards failed (names the shard and step).
    Startup(String),
    /// A check that the command performs failed (e.g. `verify` found
    /// missing points); the message says what and how much.
    Check(String),
}

impl Error {
    /// An I/O error with what was being done and the file, if any.
    pub fn io(op: impl Into<String>, path: Option<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op: op.into(),
            path,
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Storage(e) => e.fmt(f),
            Error::Client(e) => e.fmt(f),
            Error::Config(m) => write!(f, "invalid configuration: {m}"),
            Error::Io {
                op,
                path: Some(p),
                source,
            } => write!(f, "{op} ({}): {source}", p.display()),
            Error::Io {
                op,
                path: None,
                source,
            } => write!(f, "{op}: {source}"),
            Error::Startup(m) => f.write_str(m),
            Error::Check(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Storage(e) => Some(e),
            Error::Client(e) => Some(e),
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<storage::Error> for Error {
    fn from(e: storage::Error) -> Self {
        Error::Storage(e)
    }
}

impl From<ClientError> for Error {
    fn from(e: ClientError) -> Self {
        Error::Client(e)
    }
}

impl From<glommio::GlommioError<()>> for Error {
    fn from(e: glommio::GlommioError<()>) -> Self {
        match e {
            glommio::GlommioError::IoError(source) => Error::io("glommio", None, source),
            glommio::GlommioError::EnhancedIoError {
                source, op, path, ..
            } => Error::io(op.to_string(), path, source),
            other => Error::Startup(format!("glommio: {other}")),
        }
    }
}
