//! TLS for both listeners and the clients, with rustls (ring provider) over
//! glommio's `TcpStream` through futures-rustls: [`Stream`], the one
//! connection type of the edges (plain or TLS); [`ServerTls`], a shard's
//! certificate and key (`--tls-cert`, `--tls-key`, PEM), re-read on
//! SIGHUP; [`TlsClient`], a client's trust anchor (`--tls-ca`, PEM).
//! A port is either TLS or plain, never both: a plain client on a TLS port
//! fails its handshake and is closed. Owns the TLS setup and the handshake;
//! never parses the protocols above it, never blocks the executor (files
//! are read on the blocking pool), never panics on a peer's bytes.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncWrite};
use futures_rustls::{TlsAcceptor, TlsConnector};
use glommio::net::{Preallocated, TcpStream};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::runtime::admission::Closing;
use crate::runtime::auth::LogLimit;
use crate::runtime::local::Local;
use crate::storage::file::blocking;

/// Names of the TLS counters each shard keeps, with their `/metrics` help.
pub mod counter {
    /// Handshakes that failed or timed out (a plain client on a TLS port
    /// included).
    pub const HANDSHAKE_FAILURES: &str = "tls_handshake_failures";
    /// Certificate reloads that succeeded.
    pub const RELOADS: &str = "tls_reloads";

    /// Every TLS counter with its help text, in `/metrics` order.
    pub const ALL: [(&str, &str); 2] = [
        (
            HANDSHAKE_FAILURES,
            "TLS handshakes that failed or timed out",
        ),
        (RELOADS, "TLS certificate reloads (SIGHUP) that succeeded"),
    ];
}

/// Bytes read from the socket at once under TLS. rustls asks for 4 KiB at a
/// time and a record is up to 16 KiB; every socket read is an io_uring
/// operation, so TLS reads go through a buffer of this size.
pub const TLS_READ_BUFFER: usize = 64 << 10;

/// The TCP stream under TLS: read through a [`TLS_READ_BUFFER`] buffer.
pub type TlsTcp = TcpStream<Preallocated>;

/// A connection: plain TCP, or TLS over it (either side).
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<futures_rustls::TlsStream<TlsTcp>>),
}

fn buffered(tcp: TcpStream) -> TlsTcp {
    tcp.buffered_with(Preallocated::new(TLS_READ_BUFFER))
}

impl Stream {
    /// The peer's address, if the socket knows it.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        match self {
            Stream::Plain(s) => s.peer_addr().ok(),
            Stream::Tls(t) => t.get_ref().0.peer_addr().ok(),
        }
    }

    /// Sets the socket's read timeout (`None`: none).
    pub fn set_read_timeout(&self, d: Option<Duration>) {
        let _ = match self {
            Stream::Plain(s) => s.set_read_timeout(d),
            Stream::Tls(t) => t.get_ref().0.set_read_timeout(d),
        };
    }

    /// Sets the socket's write timeout (`None`: none).
    pub fn set_write_timeout(&self, d: Option<Duration>) {
        let _ = match self {
            Stream::Plain(s) => s.set_write_timeout(d),
            Stream::Tls(t) => t.get_ref().0.set_write_timeout(d),
        };
    }

    /// Whether this is a TLS connection.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(t) => Pin::new(t.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(t) => Pin::new(t.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(t) => Pin::new(t.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_close(cx),
            Stream::Tls(t) => Pin::new(t.as_mut()).poll_close(cx),
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server's certificate chain and private key files (PEM).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first (`--tls-cert`).
    pub cert: PathBuf,
    /// Private key: PKCS#8, PKCS#1 or SEC1 (`--tls-key`).
    pub key: PathBuf,
}

/// The rustls configurations a shard serves with: the native listener's
/// and the HTTP listener's (which offers ALPN `http/1.1`).
#[derive(Clone)]
pub struct ServerConfigs {
    /// Native protocol.
    pub native: Arc<rustls::ServerConfig>,
    /// HTTP.
    pub http: Arc<rustls::ServerConfig>,
}

/// Reads the certificate chain and key and builds both configurations
/// (blocking file reads). The error names the file and what is wrong.
pub fn load_server_configs(files: &TlsFiles) -> Result<ServerConfigs, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| format!("TLS certificate {}: {e}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("TLS certificate {}: {e}", files.cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "TLS certificate {}: no CERTIFICATE in it",
            files.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("TLS key {}: {e}", files.key.display()))?;
    let build = |alpn: &[&[u8]]| -> Result<Arc<rustls::ServerConfig>, String> {
        let mut c = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS protocol versions: {e}"))?
            .with_no_client_auth()
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(|e| {
                format!(
                    "TLS certificate {} with key {}: {e}",
                    files.cert.display(),
                    files.key.display()
                )
            })?;
        c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(c))
    };
    Ok(ServerConfigs {
        native: build(&[])?,
        http: build(&[b"http/1.1"])?,
    })
}

/// Which listener a connection arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// The native protocol's.
    Native,
    /// HTTP's.
    Http,
}

/// One shard's TLS state: the files, the configurations built from them
/// (swapped by [`ServerTls::reload`]), failure counting and logging.
pub struct ServerTls {
    files: TlsFiles,
    configs: RefCell<ServerConfigs>,
    local: Rc<Local>,
    log: RefCell<LogLimit>,
}

impl ServerTls {
    /// TLS with `configs` (built at start-up from `files`).
    pub fn new(files: TlsFiles, configs: ServerConfigs, local: Rc<Local>) -> ServerTls {
        ServerTls {
            files,
            configs: RefCell::new(configs),
            local,
            log: RefCell::default(),
        }
    }

    /// Re-reads the certificate and key (SIGHUP). On failure the current
    /// ones stay in use and the error is logged; new connections use the
    /// new ones, open connections keep theirs.
    pub async fn reload(&self) {
        let files = self.files.clone();
        match blocking(move || load_server_configs(&files)).await {
            Ok(c) => {
                *self.configs.borrow_mut() = c;
                self.local.count(counter::RELOADS, 1);
                log::info!("tls: reloaded {}", self.files.cert.display());
            }
            Err(e) => log::error!("tls: reload failed, keeping the certificate in use: {e}"),
        }
    }

    /// The TLS handshake of a new connection on `listener`, bounded by
    /// `timeout` and by shutdown. `None` (counted, and logged at most once
    /// a second per shard) when it fails.
    pub async fn accept(
        &self,
        tcp: TcpStream,
        listener: Listener,
        timeout: Duration,
        closing: &Closing,
    ) -> Option<Stream> {
        let config = match listener {
            Listener::Native => Arc::clone(&self.configs.borrow().native),
            Listener::Http => Arc::clone(&self.configs.borrow().http),
        };
        let peer = tcp.peer_addr().ok();
        let hs = TlsAcceptor::from(config).accept(buffered(tcp));
        let res = futures_lite::future::or(async { Some(hs.await) }, async {
            futures_lite::future::or(glommio::timer::sleep(timeout), closing.wait()).await;
            None
        })
        .await;
        let why = match res {
            Some(Ok(s)) => return Some(Stream::Tls(Box::new(s.into()))),
            Some(Err(e)) => e.to_string(),
            None if closing.is_closed() => return None,
            None => format!("no handshake within {} s", timeout.as_secs_f64()),
        };
        self.local.count(counter::HANDSHAKE_FAILURES, 1);
        if let Some(held) = self
            .log
            .borrow_mut()
            .admit(Instant::now(), Duration::from_secs(1))
        {
            let peer = peer.map_or_else(|| "an unknown peer".into(), |p| p.to_string());
            log::warn!(
                "tls: handshake with {peer} failed: {why}{}",
                if held > 0 {
                    format!(" ({held} more failed handshakes since the last such line)")
                } else {
                    String::new()
                }
            );
        }
        None
    }
}

/// A client's TLS settings: the CA certificates it trusts and, optionally,
/// the name to expect in the server's certificate (default: the host part
/// of the address, an IP address included).
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<rustls::ClientConfig>,
    /// Name to verify the server's certificate against.
    pub server_name: Option<String>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsClient {
    /// Trusts the CA certificates in the PEM file `ca` (blocking read).
    pub fn from_ca_file(ca: &Path) -> Result<TlsClient, String> {
        let mut roots = rustls::RootCertStore::empty();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
            .map_err(|e| format!("TLS CA {}: {e}", ca.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("TLS CA {}: {e}", ca.display()))?;
        if certs.is_empty() {
            return Err(format!("TLS CA {}: no CERTIFICATE in it", ca.display()));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| format!("TLS CA {}: {e}", ca.display()))?;
        }
        Self::with_roots(roots)
    }

    /// Trusts `roots`.
    pub fn with_roots(roots: rustls::RootCertStore) -> Result<TlsClient, String> {
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS protocol versions: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsClient {
            config: Arc::new(config),
            server_name: None,
        })
    }

    /// With ALPN `protocols` offered (e.g. `http/1.1`).
    pub fn with_alpn(&self, protocols: &[&[u8]]) -> TlsClient {
        let mut c = (*self.config).clone();
        c.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
        TlsClient {
            config: Arc::new(c),
            server_name: self.server_name.clone(),
        }
    }

    /// The TLS handshake over `tcp` to `addr` (`host:port`).
    pub async fn connect(&self, tcp: TcpStream, addr: &str) -> io::Result<Stream> {
        let host = match &self.server_name {
            Some(n) => n.clone(),
            None => host_of(addr).to_string(),
        };
        let name = ServerName::try_from(host.clone()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("TLS server name {host:?}: {e}"),
            )
        })?;
        let s = TlsConnector::from(Arc::clone(&self.config))
            .connect(name, buffered(tcp))
            .await?;
        Ok(Stream::Tls(Box::new(s.into())))
    }
}

/// The host part of `host:port` (brackets of an IPv6 literal removed).
pub fn host_of(addr: &str) -> &str {
    let host = match addr.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => addr,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_addresses() {
        assert_eq!(host_of("127.0.0.1:7070"), "127.0.0.1");
        assert_eq!(host_of("[::1]:7070"), "::1");
        assert_eq!(host_of("db.plant.local:443"), "db.plant.local");
        assert_eq!(host_of("db"), "db");
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("c.pem");
        std::fs::write(&cert, "not pem").unwrap();
        let e = match load_server_configs(&TlsFiles {
            cert: cert.clone(),
            key: dir.path().join("missing.pem"),
        }) {
            Err(e) => e,
            Ok(_) => panic!("accepted"),
        };
        assert!(e.contains("c.pem") && e.contains("no CERTIFICATE"), "{e}");
        let e = TlsClient::from_ca_file(&dir.path().join("none.pem")).unwrap_err();
        assert!(e.contains("none.pem"), "{e}");
    }
}
