//! The native client's error type: what can go wrong talking to a server
//! (the socket, a broken frame, or an error frame the server sent, with
//! its code from [`crate::net::protocol::code`]).

use std::fmt;

/// Result with a [`ClientError`].
pub type ClientResult<T> = std::result::Result<T, ClientError>;

/// Why a native-protocol call failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// A socket call failed (connect, send, receive).
    Io {
        /// What was being done, e.g. "connect".
        op: String,
        /// The server's address.
        addr: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The server's bytes broke the protocol (bad frame, CRC, an answer of
    /// the wrong kind or for another request).
    Protocol {
        /// The server's address.
        addr: String,
        /// What was wrong.
        reason: String,
    },
    /// The server answered with an error frame.
    Remote {
        /// Error code (see [`crate::net::protocol::code`]).
        code: u16,
        /// The server's message.
        message: String,
    },
}

impl ClientError {
    /// Whether the connection is unusable after this error and must be
    /// dropped and re-opened: anything but an error frame after which the
    /// server keeps the connection ([`crate::net::protocol::code::closes_connection`]).
    pub fn closes_connection(&self) -> bool {
        match self {
            ClientError::Remote { code, .. } => {
                crate::net::protocol::code::closes_connection(*code)
            }
            _ => true,
        }
    }

    /// A short stable name of the kind, for "errors by kind" tables.
    pub fn kind(&self) -> String {
        match self {
            ClientError::Io { source, .. } => format!("io:{:?}", source.kind()),
            ClientError::Protocol { .. } => "protocol".into(),
            ClientError::Remote { code, .. } => format!("remote:{code}"),
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io { op, addr, source } => write!(f, "{op} {addr}: {source}"),
            ClientError::Protocol { addr, reason } => {
                write!(f, "protocol error from {addr}: {reason}")
            }
            ClientError::Remote { code, message } => write!(f, "server error {code}: {message}"),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
