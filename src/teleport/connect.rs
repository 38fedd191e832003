//! Building gRPC channels to Teleport Auth.
//!
//! A [`Dialer`] produces the raw byte stream to Auth for one connection path
//! (direct TCP here; the Proxy paths are in [`super::route`]). The TLS session with Auth
//! (client certificate, server verified against the identity's CAs) always
//! runs over that stream, so the identity is never trusted to anything but
//! the cluster's own CA.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

use super::tls;
use crate::identity::Identity;

/// Any bidirectional byte stream.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}
pub type BoxedIo = Pin<Box<dyn Io>>;

/// One way of reaching Auth.
#[async_trait::async_trait]
pub trait Dialer: Send + Sync + 'static {
    /// Opens the byte stream the Auth TLS session runs over.
    async fn dial(&self) -> io::Result<BoxedIo>;
    /// ALPN protocols offered in the Auth TLS session (`h2` last).
    fn alpn(&self) -> Vec<Vec<u8>> {
        vec![b"h2".to_vec()]
    }
    /// Human-readable path, for logs and `check` (e.g. "direct to auth:3025").
    fn describe(&self) -> String;
    /// Explains a failed Auth TLS handshake in this path's terms when the
    /// generic explanation would miss the cause (e.g. a Proxy that closes the
    /// connection has no such cluster).
    fn explain_handshake(&self, _err: &io::Error) -> Option<String> {
        None
    }
}

/// Plain TCP to an Auth server (`auth.example.com:3025`).
pub struct DirectDialer {
    pub addr: String,
}

#[async_trait::async_trait]
impl Dialer for DirectDialer {
    async fn dial(&self) -> io::Result<BoxedIo> {
        let tcp = TcpStream::connect(&self.addr)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("cannot reach Teleport at {}: {e}", self.addr)))?;
        tcp.set_nodelay(true)?;
        Ok(Box::pin(tcp))
    }

    fn describe(&self) -> String {
        format!("direct to Auth at {}", self.addr)
    }
}

/// Timeouts and limits for the gRPC channel.
#[derive(Clone, Debug)]
pub struct ChannelOptions {
    pub connect_timeout: Duration,
    /// HTTP/2 ping interval. Teleport's servers reject clients that ping more
    /// often than their own keepalive period (about a minute) with GOAWAY
    /// `too_many_pings`, so stay at or above it.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(20),
        }
    }
}

/// Dials Auth over `dialer` with `identity` and returns a connected channel.
pub async fn open_channel(
    dialer: Arc<dyn Dialer>,
    identity: &Identity,
    opts: &ChannelOptions,
) -> Result<Channel, ConnectError> {
    let config = tls::client_config(identity, &dialer.alpn()).map_err(|e| ConnectError::Tls(e.to_string()))?;
    let connector = TlsConnector::from(config);
    let path = dialer.describe();
    let service = tower::service_fn(move |_uri: http::Uri| {
        let dialer = dialer.clone();
        let connector = connector.clone();
        async move {
            let stream = dialer.dial().await?;
            let tls = connector.connect(tls::auth_server_name(), stream).await.map_err(|e| {
                let why = dialer.explain_handshake(&e).unwrap_or_else(|| tls::explain_handshake_error(&e));
                io::Error::new(e.kind(), HandshakeFailed(why))
            })?;
            Ok::<_, io::Error>(TokioIo::new(tls))
        }
    });
    // The URI only names the HTTP/2 authority; the connector decides where to go.
    // It must be http:// so tonic does not try to add TLS of its own.
    Endpoint::from_static("http://teleport.cluster.local")
        .connect_timeout(opts.connect_timeout)
        .http2_keep_alive_interval(opts.keepalive_interval)
        .keep_alive_timeout(opts.keepalive_timeout)
        .keep_alive_while_idle(true)
        .connect_with_connector(service)
        .await
        .map_err(|e| match handshake_failure(&e) {
            Some(why) => ConnectError::Handshake { why, path, transient: !is_tls_failure(&e) },
            None => ConnectError::Transport { path, message: error_chain(&e), transient: !is_tls_failure(&e) },
        })
}

/// The explained failure of the Auth TLS handshake, carried through tonic's
/// error chain so the cause can lead the message.
#[derive(Debug)]
struct HandshakeFailed(String);

impl std::fmt::Display for HandshakeFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HandshakeFailed {}

fn handshake_failure(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<io::Error>().and_then(|io| io.get_ref()).and_then(|i| i.downcast_ref::<HandshakeFailed>()) {
            return Some(h.0.clone());
        }
        cur = err.source();
    }
    None
}

/// A failed TLS session (wrong CA, certificate refused, no such protocol)
/// is a configuration problem; anything else (refused, reset, timed out,
/// DNS) may heal by itself. rustls reports its errors as `InvalidData`.
fn is_tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>()
            && io.kind() == io::ErrorKind::InvalidData
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Why a channel could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot build the TLS configuration from the identity: {0}")]
    Tls(String),
    #[error("cannot connect to Teleport ({path}): {message}")]
    Transport {
        path: String,
        message: String,
        /// Whether retrying may help (Auth not reachable yet), as opposed
        /// to a TLS failure that needs a configuration change.
        transient: bool,
    },
    /// The Auth TLS handshake failed; `why` names the likely cause. A TLS
    /// error (wrong CA, certificate refused) needs a configuration change;
    /// a connection closed mid-handshake (Auth restarting) may heal.
    #[error("{why} (path: {path})")]
    Handshake { why: String, path: String, transient: bool },
}

impl ConnectError {
    pub fn is_transient(&self) -> bool {
        matches!(self, ConnectError::Transport { transient: true, .. } | ConnectError::Handshake { transient: true, .. })
    }
}

/// The innermost message of an error chain (tonic wraps our connector's
/// io::Error, whose text carries the explanation).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        last = s.to_string();
        cur = s.source();
    }
    last
}
