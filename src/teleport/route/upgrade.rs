//! The connection upgrade for Proxies behind an L7 load balancer that does
//! not pass TLS routing (ALPN) through: TLS to the load balancer with the web
//! PKI, `GET /webapi/connectionupgrade` asking for a WebSocket with the
//! `alpn-ping` subprotocol, then the routed Auth TLS session runs inside the
//! WebSocket's binary frames, exactly as it would over a direct TCP
//! connection to the Proxy. The Proxy pings to keep the load balancer from
//! idling the tunnel; tungstenite answers.

use std::io;
use std::sync::Arc;

use rustls::ClientConfig;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, http::HeaderValue};

use super::alpn::ProxyTarget;
use super::web;
use super::ws::WsIo;
use crate::teleport::connect::{BoxedIo, Dialer};

pub const UPGRADE_PATH: &str = "/webapi/connectionupgrade";
/// WebSocket subprotocol: the tunnel with server pings.
pub const SUBPROTOCOL: &str = "alpn-ping";

pub struct ConnUpgradeDialer {
    pub target: ProxyTarget,
    /// Web-PKI client configuration for the hop to the load balancer.
    web: Arc<ClientConfig>,
}

impl ConnUpgradeDialer {
    /// `web` is the web-PKI configuration (its ALPN is replaced by `http/1.1`).
    pub fn new(target: ProxyTarget, web: &ClientConfig) -> Self {
        let mut web = web.clone();
        web.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self { target, web: Arc::new(web) }
    }
}

#[async_trait::async_trait]
impl Dialer for ConnUpgradeDialer {
    async fn dial(&self) -> io::Result<BoxedIo> {
        let addr = &self.target.addr;
        let tls = web::connect(&self.target.net, addr, self.web.clone()).await?;
        let mut request = format!("wss://{addr}{UPGRADE_PATH}")
            .into_client_request()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr:?}: {e}")))?;
        request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static(SUBPROTOCOL));
        let (ws, _) =
            tokio_tungstenite::client_async(request, tls).await.map_err(|e| explain_upgrade_error(addr, e))?;
        Ok(Box::pin(WsIo::new(ws)))
    }

    fn alpn(&self) -> Vec<Vec<u8>> {
        self.target.alpn()
    }

    fn describe(&self) -> String {
        format!(
            "through the Proxy at {} (WebSocket connection upgrade, TLS routing to the Auth of cluster {})",
            self.target.addr, self.target.cluster
        )
    }

    fn explain_handshake(&self, err: &io::Error) -> Option<String> {
        self.target.explain_handshake(err)
    }
}

fn explain_upgrade_error(addr: &str, e: tungstenite::Error) -> io::Error {
    let url = format!("https://{addr}{UPGRADE_PATH}");
    match e {
        tungstenite::Error::Http(resp) if resp.status() == http::StatusCode::NOT_FOUND => io::Error::other(format!(
            "GET {url} answered 404: this Proxy has no connection upgrade (Teleport 13 or newer has it), or the load balancer does not forward it"
        )),
        tungstenite::Error::Http(resp) => io::Error::other(format!(
            "GET {url} answered HTTP {} instead of switching to a WebSocket: the load balancer must allow WebSocket upgrades",
            resp.status()
        )),
        tungstenite::Error::Protocol(p) => io::Error::other(format!("GET {url}: the WebSocket handshake failed: {p}")),
        tungstenite::Error::Io(e) => io::Error::new(e.kind(), format!("GET {url}: {e}")),
        other => io::Error::other(format!("GET {url}: {other}")),
    }
}
