//! Choosing how to reach Teleport Auth from `teleport.addr` and
//! `teleport.connection`, and the [`Dialer`]s of each path:
//!
//! - **direct**: TCP to Auth (`auth.example.com:3025`);
//! - **TLS routing** ([`alpn::TlsRoutingDialer`]): TCP to the Proxy's web port,
//!   the Proxy passes the Auth TLS session through by its ALPN
//!   (`teleport-auth@<hex(cluster)>.teleport.cluster.local`);
//! - **connection upgrade** ([`upgrade::ConnUpgradeDialer`]): the same,
//!   tunnelled through a WebSocket (`/webapi/connectionupgrade`, `alpn-ping`)
//!   for Proxies behind an L7 load balancer that does not pass ALPN through.
//!
//! Every dialer only opens a byte stream: the Auth TLS session (identity,
//! cluster CAs) is built per connection by [`crate::teleport::connect::open_channel`],
//! so identity rotation works the same on every path.
//!
//! # The SSH reverse tunnel (not supported)
//!
//! A Proxy without TLS routing (`proxy_listener_mode` not `multiplex`, separate
//! ports 3080/3023/3024) reaches Auth only through its SSH reverse-tunnel port:
//! SSH with the identity's OpenSSH user certificate, the Proxy's host
//! certificate checked against the identity's `@cert-authority` keys, a channel
//! of type `teleport-transport`, then a channel request
//! `teleport-transport-dial` (want-reply) whose payload is the *raw* bytes of
//! `{"address":"@remote-auth-server"}`; the channel then carries the Auth TLS
//! session. No maintained Rust SSH client can send that:
//!
//! - `russh` opens only `session`, `direct-tcpip`, `direct-streamlocal` and
//!   `x11` channels and sends only typed channel requests; its generic
//!   channel-open is private, and exposing it was declined upstream.
//! - `ssh2` (libssh2) can open a `teleport-transport` channel
//!   (`Session::channel_open`), but its only generic channel request,
//!   `Channel::process_startup` (`libssh2_channel_process_startup`), always
//!   prefixes the payload with a 4-byte length (an SSH string). Teleport
//!   parses the payload as JSON and otherwise takes the bytes as an address,
//!   so the request is refused as an invalid address. It is also blocking C
//!   bound to OpenSSL.
//!
//! What it would take: an SSH client with two more public calls, "open a
//! channel of any type" and "send a channel request with a raw payload and
//! want-reply" (about 100 lines on top of russh's private
//! `channel_open_generic`), plus host-certificate verification against the
//! `@cert-authority` lines (with `ssh-key`). Until then, such Proxies are
//! refused with [`RouteError::NoTlsRouting`], which names the alternatives.

pub mod alpn;
pub mod find;
pub mod tcp;
pub mod upgrade;
pub mod web;
mod ws;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tracing::info;

use self::alpn::{ProxyTarget, TlsRoutingDialer};
use self::find::FindError;
use self::tcp::{Net, port_of};
use self::upgrade::ConnUpgradeDialer;
use super::connect::{BoxedIo, Dialer, DirectDialer};
use crate::config::{ConnectionMode, TeleportConfig};
pub use crate::identity::cas::{load_cas, parse_cas};

/// Auth's default port: `auto` dials it directly without asking.
pub const AUTH_PORT: u16 = 3025;

/// What path selection needs besides the address.
#[derive(Debug, Clone)]
pub struct RouteOptions {
    /// CAs trusted for the Proxy's web certificate besides the system's.
    pub web_cas: Vec<CertificateDer<'static>>,
    /// Forward proxies for the connections to the Proxy.
    pub net: Arc<Net>,
    /// `TELEPORT_TLS_ROUTING_CONN_UPGRADE` ("" when unset).
    pub conn_upgrade: String,
    /// Bound on `/webapi/find` and on the connection-upgrade test dial.
    pub timeout: Duration,
}

impl RouteOptions {
    /// Forward proxies and the upgrade override from the environment.
    pub fn from_env(web_cas: Vec<CertificateDer<'static>>) -> Self {
        Self {
            web_cas,
            net: Arc::new(Net::from_env()),
            conn_upgrade: std::env::var(web::CONN_UPGRADE_ENV).unwrap_or_default(),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Why no path to Auth could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("teleport.web_ca: {0}")]
    WebCa(String),
    #[error("{0}")]
    Unreachable(String),
    #[error("teleport.connection is \"proxy\", but {addr} does not answer as a Teleport Proxy: {reason}")]
    NotAProxy { addr: String, reason: String },
    #[error(
        "the Proxy at {addr} (cluster {cluster}) has TLS routing off, so its Auth is reachable only through the SSH reverse tunnel, which this plugin does not support: set teleport.addr to the Auth Service (host:3025), or turn on TLS routing on the Proxy (proxy_service.proxy_listener_mode: multiplex)"
    )]
    NoTlsRouting { addr: String, cluster: String },
    #[error("{0}")]
    WebTls(String),
}

/// The dialer for a validated configuration: reads `teleport.web_ca` and the
/// environment, then [`dialer_with`].
pub async fn dialer_for(cfg: &TeleportConfig) -> Result<Arc<dyn Dialer>, RouteError> {
    let web_cas = match &cfg.web_ca {
        Some(path) => load_cas(path).map_err(RouteError::WebCa)?,
        None => Vec::new(),
    };
    dialer_with(&cfg.addr, cfg.connection, &RouteOptions::from_env(web_cas)).await
}

/// Picks the path to Auth at `addr`:
/// - `direct`: TCP to `addr`;
/// - `proxy`: `addr` must be a Proxy with TLS routing; the connection upgrade
///   is used when a load balancer in front does not pass ALPN through;
/// - `auto`: port 3025 is dialled directly; otherwise `/webapi/find` decides
///   between the Proxy paths, and an address that does not answer it as a
///   Proxy is dialled directly.
pub async fn dialer_with(addr: &str, mode: ConnectionMode, opts: &RouteOptions) -> Result<Arc<dyn Dialer>, RouteError> {
    let direct = || DirectDialer { addr: addr.to_string() };
    let (dialer, why): (Arc<dyn Dialer>, String) = match mode {
        ConnectionMode::Direct => (Arc::new(direct()), "teleport.connection = \"direct\"".into()),
        ConnectionMode::Auto if port_of(addr) == Some(AUTH_PORT) => {
            let why = format!("auto: port {AUTH_PORT} is the Auth Service's");
            (Arc::new(Noted::new(direct(), why.clone())), why)
        }
        ConnectionMode::Auto => match through_proxy(addr, opts).await {
            Ok(found) => found,
            Err(ProxyError::NotWebApi(reason)) => {
                let why = format!("auto: {addr} is not a Teleport Proxy web address ({reason})");
                (Arc::new(Noted::new(direct(), why.clone())), why)
            }
            Err(ProxyError::NoWebTrust(reason)) => {
                let why = format!("auto: cannot ask {addr} whether it is a Teleport Proxy ({reason})");
                (Arc::new(Noted::new(direct(), why.clone())), why)
            }
            // Auth on another port than 3025 also fails the web trust check,
            // so the address is tried as Auth; if that fails too, the
            // untrusted web certificate is the likely cause and leads.
            Err(ProxyError::UntrustedWeb { reason, .. }) => {
                let why = format!("auto: the web certificate of {addr} is not trusted ({reason}), so it is tried as Auth");
                // The handshake error says why; the path names only the choice.
                let note = "auto: tried as Auth".to_string();
                (Arc::new(Noted { untrusted_web: Some(reason), ..Noted::new(direct(), note) }), why)
            }
            Err(ProxyError::Fatal(e)) => return Err(e),
        },
        ConnectionMode::Proxy => match through_proxy(addr, opts).await {
            Ok(found) => found,
            Err(ProxyError::NotWebApi(reason)) => {
                return Err(RouteError::NotAProxy { addr: addr.into(), reason });
            }
            Err(ProxyError::NoWebTrust(reason)) => return Err(RouteError::WebTls(reason)),
            Err(ProxyError::UntrustedWeb { message, .. }) => return Err(RouteError::WebTls(message)),
            Err(ProxyError::Fatal(e)) => return Err(e),
        },
    };
    info!(path = %dialer.describe(), reason = %why, "chose the connection path to Teleport Auth");
    Ok(dialer)
}

enum ProxyError {
    /// The address is not a Proxy's web API.
    NotWebApi(String),
    /// No CA to verify a web certificate with (no system store, no web_ca).
    NoWebTrust(String),
    /// The web certificate is signed by no trusted CA: `reason` is the
    /// certificate error, `message` the whole sentence with the fix.
    UntrustedWeb { reason: String, message: String },
    Fatal(RouteError),
}

async fn through_proxy(addr: &str, opts: &RouteOptions) -> Result<(Arc<dyn Dialer>, String), ProxyError> {
    let web = web::client_config(&opts.web_cas, &[]).map_err(ProxyError::NoWebTrust)?;
    let found = match find::find(&opts.net, addr, &web, opts.timeout).await {
        Ok(f) => f,
        Err(FindError::Unreachable(e)) => {
            return Err(ProxyError::Fatal(RouteError::Unreachable(e)));
        }
        Err(FindError::NotWebApi(e)) => return Err(ProxyError::NotWebApi(e)),
        Err(FindError::Untrusted { url, reason }) => {
            let message = FindError::Untrusted { url, reason: reason.clone() }.to_string();
            return Err(ProxyError::UntrustedWeb { reason, message });
        }
    };
    if !found.proxy.tls_routing_enabled {
        return Err(ProxyError::Fatal(RouteError::NoTlsRouting { addr: addr.into(), cluster: found.cluster_name }));
    }
    let target = ProxyTarget::new(addr, found.cluster_name.clone(), opts.net.clone());
    let (upgrade, why) = match web::upgrade_forced_by(&opts.conn_upgrade, addr) {
        Some(forced) => (forced, format!("{}={:?}", web::CONN_UPGRADE_ENV, opts.conn_upgrade)),
        None => {
            let needed = web::upgrade_required(&opts.net, addr, &opts.web_cas, opts.timeout).await;
            let why = if needed {
                "the Proxy answered a Teleport ALPN without negotiating it: an L7 load balancer is in front"
            } else {
                "the Proxy negotiates Teleport's ALPN"
            };
            (needed, why.to_string())
        }
    };
    let why = format!(
        "/webapi/find: Teleport {} Proxy of cluster {} with TLS routing; {why}",
        found.server_version, found.cluster_name
    );
    if upgrade {
        Ok((Arc::new(ConnUpgradeDialer::new(target, &web)), why))
    } else {
        Ok((Arc::new(TlsRoutingDialer { target }), why))
    }
}

/// The direct path, with the reason `auto` chose it in its description.
struct Noted {
    inner: DirectDialer,
    note: String,
    /// Set when `auto` could not ask the address because its web certificate
    /// is not trusted (the certificate error).
    untrusted_web: Option<String>,
}

impl Noted {
    fn new(inner: DirectDialer, note: String) -> Self {
        Self { inner, note, untrusted_web: None }
    }
}

#[async_trait::async_trait]
impl Dialer for Noted {
    async fn dial(&self) -> io::Result<BoxedIo> {
        self.inner.dial().await
    }

    fn describe(&self) -> String {
        format!("{} ({})", self.inner.describe(), self.note)
    }

    fn explain_handshake(&self, err: &io::Error) -> Option<String> {
        let reason = self.untrusted_web.as_ref()?;
        // The generic reading ("the identity belongs to another cluster")
        // would be wrong here: the address is most likely a Proxy.
        Some(format!(
            "the web certificate of {addr} is not trusted ({reason}); if {addr} is a Teleport Proxy behind a private or TLS-inspecting CA, add that CA with teleport.web_ca (taken for the Auth Service instead, it failed the Auth handshake too: {err})",
            addr = self.inner.addr
        ))
    }
}
