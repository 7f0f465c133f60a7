//! Authentication on a native connection: the AUTH frame first when auth
//! is on (checked on the header, before any other payload is read), the
//! permission each request type needs, and a token revoked while the
//! connection is open. Decides with the shard's
//! [`Guard`] and answers with error codes 20
//! (closes), 21 (closes) and 22 (kept) of [`crate::net::protocol::code`].
//! Owns the per-connection identity; never touches sockets.

use std::net::IpAddr;
use std::rc::Rc;

use crate::net::protocol::{self, code, kind, FrameError, Header, Request, Response, HEADER_LEN};
use crate::runtime::auth::{Denied, Guard, Identity, Presented};
use crate::storage::tokens::Perms;

/// The permission a request of frame type `kind` needs (none for AUTH and
/// for unknown types, which are refused as such).
pub fn needs(kind: u8) -> Perms {
    match kind {
        kind::WRITE => Perms::WRITE,
        kind::RANGE
        | kind::RANGE_PIECES
        | kind::COUNT_BOUND
        | kind::LATEST
        | kind::STATS
        | kind::AGGREGATE => Perms::READ,
        kind::BACKUP => Perms::ADMIN,
        _ => Perms::NONE,
    }
}

/// A connection's authentication state.
pub struct ConnAuth {
    guard: Rc<Guard>,
    peer: Option<IpAddr>,
    id: Option<Identity>,
}

fn failed(id: u64, code: u16, message: String) -> FrameError {
    FrameError { code, message, id }
}

impl ConnAuth {
    /// A new connection from `peer`: authenticated already when auth is off.
    pub fn new(guard: Rc<Guard>, peer: Option<IpAddr>) -> ConnAuth {
        let id = if guard.enabled() {
            None
        } else {
            guard.authenticate(None).ok()
        };
        ConnAuth { guard, peer, id }
    }

    /// Whether the connection has authenticated (always, with auth off).
    pub fn authenticated(&self) -> bool {
        self.id.is_some()
    }

    async fn refuse(&self, req: u64, code: u16, why: &Denied) -> FrameError {
        self.guard.refuse(self.peer, "native", why).await;
        failed(req, code, why.to_string())
    }

    /// Checks a header before its payload is read. `Err`: answer it and
    /// close — a first frame that is not AUTH, an AUTH frame too large to
    /// be one, or a token revoked since the connection authenticated.
    pub async fn before_payload(&mut self, h: &Header) -> Result<(), FrameError> {
        if h.kind == kind::AUTH && h.len as usize > protocol::MAX_AUTH_LEN {
            let why = Denied::Malformed(format!(
                "AUTH frame of {} bytes (tokens are at most {})",
                h.len,
                protocol::MAX_AUTH_LEN
            ));
            return Err(self.refuse(h.id, code::AUTH_FAILED, &why).await);
        }
        match &mut self.id {
            None if h.kind == kind::AUTH => Ok(()),
            None => {
                let e = self
                    .refuse(h.id, code::AUTH_REQUIRED, &Denied::Missing)
                    .await;
                Err(failed(
                    h.id,
                    code::AUTH_REQUIRED,
                    format!(
                        "{}: the server runs with auth on, so a connection's first frame \
                         must be AUTH (xtdb-load --token / XTDB_TOKEN)",
                        e.message
                    ),
                ))
            }
            Some(id) => match self.guard.revalidate(id) {
                Ok(()) => Ok(()),
                Err(why) => Err(self.refuse(h.id, code::AUTH_FAILED, &why).await),
            },
        }
    }

    /// Handles an AUTH frame whose payload has been read: the answer, or
    /// the error to answer before closing.
    pub async fn auth_frame(
        &mut self,
        raw: &[u8; HEADER_LEN],
        h: &Header,
        payload: &[u8],
    ) -> Result<Response, FrameError> {
        let secret = match protocol::decode_request(raw, h, payload) {
            Ok(Request::Auth(s)) => s,
            Ok(_) => {
                let why = Denied::Malformed("not an AUTH frame".into());
                return Err(self.refuse(h.id, code::AUTH_FAILED, &why).await);
            }
            Err(e) => {
                let why = Denied::Malformed(e.message);
                return Err(self.refuse(h.id, code::AUTH_FAILED, &why).await);
            }
        };
        let presented = Presented {
            user: None,
            secret: &secret.0,
        };
        match self.guard.authenticate(Some(presented)) {
            Ok(id) => {
                let resp = Response::AuthOk {
                    perms: id.perms().bits(),
                    name: id.name().to_string(),
                };
                self.id = Some(id);
                Ok(resp)
            }
            Err(why) => {
                self.id = None;
                Err(self.refuse(h.id, code::AUTH_FAILED, &why).await)
            }
        }
    }

    /// Whether the connection may run a request of `h.kind`: `Some(error
    /// answer)` (code 22, the connection stays open) when its token lacks
    /// the permission.
    pub async fn permit(&self, h: &Header) -> Option<Response> {
        let id = self.id.as_ref()?;
        let why = self.guard.authorize(id, needs(h.kind)).err()?;
        self.guard.refuse(self.peer, "native", &why).await;
        Some(Response::Error {
            code: code::FORBIDDEN,
            message: why.to_string(),
        })
    }
}
