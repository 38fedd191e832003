//! A Teleport Proxy in front of the Auth simulator, on one TLS port as
//! Teleport's Proxy with TLS routing (`proxy_listener_mode: multiplex`):
//!
//! - It reads the ClientHello without terminating TLS (as Teleport's ALPN
//!   router does) and routes by the client's ALPN list, first match wins:
//!   `teleport-auth@<hex(cluster)>.teleport.cluster.local` is passed through,
//!   bytes untouched, to the Auth simulator (a cluster it does not know is
//!   closed without a word, as Teleport does); other `teleport-*` protocols
//!   are negotiated with the web certificate and then closed (their services
//!   are not simulated); `h2`, `http/1.1` or no ALPN reach the web API.
//! - The web API (its own certificate from its own CA, made at start) serves
//!   `/webapi/find` and `/webapi/connectionupgrade` (WebSocket, subprotocols
//!   `alpn-ping` and `alpn`); an upgraded tunnel gets the same ALPN routing,
//!   and `alpn-ping` tunnels receive WebSocket pings.
//! - [`Front::L7LoadBalancer`] puts an HTTP/1.1-only load balancer in front:
//!   every connection is terminated with the web certificate and no ALPN is
//!   negotiated, so only the connection upgrade reaches Auth.
//! - With `tls_routing: false` it is a Proxy without TLS routing: the web
//!   API reports it and there is no routing and no upgrade.
//!
//! Faults: [`ProxySim::drop_tunnels`] cuts every tunnelled connection at
//! once (a Proxy or load balancer restart), and
//! [`ProxySimConfig::idle_timeout`] closes a tunnel that carried no bytes for
//! that long, as load balancers do. The outer layer of a tunnel is what the
//! front sees: the routed TLS connection, or the WebSocket connection with
//! its frames (Proxy pings and client pongs included) when upgraded.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use axum::body::Body;
use futures::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::StartHandshake;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_util::sync::CancellationToken;

use super::teleport::TeleportSim;

/// What stands at the Proxy's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front {
    /// Teleport's Proxy itself (TLS routing by ALPN).
    Proxy,
    /// An HTTP/1.1 load balancer that terminates TLS and passes no ALPN.
    L7LoadBalancer,
}

#[derive(Debug, Clone)]
pub struct ProxySimConfig {
    pub front: Front,
    /// The Proxy has TLS routing (single-port multiplex mode).
    pub tls_routing: bool,
    /// Interval of the pings on `alpn-ping` tunnels (Teleport: 30 s).
    pub ping_interval: Duration,
    /// A tunnel that carried no bytes either way for this long is closed
    /// (AWS ALB: 60 s by default, NLB: 350 s). `None`: never.
    pub idle_timeout: Option<Duration>,
    pub bind: SocketAddr,
}

impl Default for ProxySimConfig {
    fn default() -> Self {
        Self {
            front: Front::Proxy,
            tls_routing: true,
            ping_interval: Duration::from_millis(200),
            idle_timeout: None,
            bind: "127.0.0.1:0".parse().expect("valid address"),
        }
    }
}

/// What the front has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyCounts {
    /// Connections passed through to Auth.
    pub auth_routes: u64,
    /// `teleport-auth@` connections closed for an unknown cluster.
    pub refused_routes: u64,
    pub find_requests: u64,
    /// WebSocket connection upgrades.
    pub upgrades: u64,
    pub pings_sent: u64,
    pub pongs_received: u64,
    /// Tunnels cut by [`ProxySim::drop_tunnels`].
    pub tunnels_dropped: u64,
    /// Tunnels closed by the idle timeout.
    pub idle_closed: u64,
}

#[derive(Default)]
struct Counters {
    tunnels_dropped: AtomicU64,
    idle_closed: AtomicU64,
    auth_routes: AtomicU64,
    refused_routes: AtomicU64,
    find_requests: AtomicU64,
    upgrades: AtomicU64,
    pings_sent: AtomicU64,
    pongs_received: AtomicU64,
}

struct Ctx {
    cfg: ProxySimConfig,
    cluster: String,
    server_version: String,
    auth_addr: SocketAddr,
    public_addr: String,
    cert: Arc<rustls::sign::CertifiedKey>,
    /// Web listener: `http/1.1` or nothing.
    web: Arc<ServerConfig>,
    counters: Counters,
    /// Cancelled by [`ProxySim::shutdown`]; ends tunnels too.
    stop: CancellationToken,
    /// Cancelled (and replaced) by [`ProxySim::drop_tunnels`].
    tunnels: Mutex<CancellationToken>,
}

/// Handle to a running front; stops with [`ProxySim::shutdown`].
#[derive(Clone)]
pub struct ProxySim {
    ctx: Arc<Ctx>,
    addr: SocketAddr,
    web_ca: CertificateDer<'static>,
    web_ca_pem: String,
    shutdown: CancellationToken,
}

impl ProxySim {
    pub async fn start(auth: &TeleportSim, cfg: ProxySimConfig) -> Result<Self> {
        let listener = TcpListener::bind(cfg.bind).await?;
        let addr = listener.local_addr()?;
        let (ca, cert) = web_pki()?;
        let web_ca = ca.der().clone();
        let web_ca_pem = ca.pem();
        let web = server_config(cert.clone(), &[b"http/1.1"])?;
        let shutdown = CancellationToken::new();
        let ctx = Arc::new(Ctx {
            cluster: auth.cluster_name().to_string(),
            server_version: "17.4.2".into(),
            auth_addr: auth.addr(),
            public_addr: addr.to_string(),
            cert,
            web,
            counters: Counters::default(),
            stop: shutdown.clone(),
            tunnels: Mutex::new(CancellationToken::new()),
            cfg,
        });
        tokio::spawn(accept_loop(listener, ctx.clone(), shutdown.clone()));
        Ok(Self { ctx, addr, web_ca, web_ca_pem, shutdown })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The CA of the web certificate, for clients to trust.
    pub fn web_ca(&self) -> CertificateDer<'static> {
        self.web_ca.clone()
    }

    pub fn web_ca_pem(&self) -> &str {
        &self.web_ca_pem
    }

    pub fn config(&self) -> &ProxySimConfig {
        &self.ctx.cfg
    }

    pub fn counts(&self) -> ProxyCounts {
        let c = &self.ctx.counters;
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        ProxyCounts {
            auth_routes: get(&c.auth_routes),
            refused_routes: get(&c.refused_routes),
            find_requests: get(&c.find_requests),
            upgrades: get(&c.upgrades),
            pings_sent: get(&c.pings_sent),
            pongs_received: get(&c.pongs_received),
            tunnels_dropped: get(&c.tunnels_dropped),
            idle_closed: get(&c.idle_closed),
        }
    }

    /// Cuts every tunnelled connection at once (routed and upgraded alike),
    /// as a restart of the Proxy or of the load balancer in front does.
    /// New connections are accepted as before.
    pub fn drop_tunnels(&self) {
        let mut t = self.ctx.tunnels.lock().expect("poisoned");
        t.cancel();
        *t = CancellationToken::new();
    }

    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }
}

/// A web CA and a certificate for `localhost` and `127.0.0.1` signed by it.
fn web_pki() -> Result<(CertifiedIssuer<'static, KeyPair>, Arc<rustls::sign::CertifiedKey>)> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let serial: u32 = rand::random();
    ca.distinguished_name.push(DnType::CommonName, format!("Simulated public web CA {serial:08x}"));
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
    let mut leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    leaf.distinguished_name.push(DnType::CommonName, "localhost");
    let key = KeyPair::generate()?;
    let cert = leaf.signed_by(&key, &ca)?;
    let provider = rustls::crypto::ring::default_provider();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let certified = rustls::sign::CertifiedKey::from_der(vec![cert.der().clone(), ca.der().clone()], key, &provider)?;
    Ok((ca, Arc::new(certified)))
}

fn server_config(cert: Arc<rustls::sign::CertifiedKey>, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(cert)));
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

async fn accept_loop(listener: TcpListener, ctx: Arc<Ctx>, shutdown: CancellationToken) {
    loop {
        let tcp = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(_) => continue,
            },
        };
        let _ = tcp.set_nodelay(true);
        let ctx = ctx.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                r = accept(tcp, ctx) => if let Err(e) = r {
                    tracing::debug!(error = %e, "simulated Proxy connection ended");
                },
            }
        });
    }
}

async fn accept(tcp: TcpStream, ctx: Arc<Ctx>) -> io::Result<()> {
    if ctx.cfg.front == Front::L7LoadBalancer {
        // The load balancer terminates TLS with no ALPN and speaks HTTP/1.1.
        let lb = server_config(ctx.cert.clone(), &[]).map_err(io::Error::other)?;
        let tls = tokio_rustls::TlsAcceptor::from(lb).accept(tcp).await?;
        return serve_web(tls, ctx).await;
    }
    route(tcp, ctx, true).await
}

/// ALPN routing of one connection (a TCP connection, or the inside of a
/// connection-upgrade tunnel). `outer`: the connection is what the front
/// sees (not the inside of a tunnel).
fn route<S>(io: S, ctx: Arc<Ctx>, outer: bool) -> futures::future::BoxFuture<'static, io::Result<()>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    Box::pin(async move {
        let (accepted, recorded, io) = read_client_hello(io).await?;
        let protocols: Vec<Vec<u8>> =
            accepted.client_hello().alpn().map(|it| it.map(<[u8]>::to_vec).collect()).unwrap_or_default();
        if ctx.cfg.tls_routing {
            for p in &protocols {
                if p.starts_with(AUTH_ALPN_PREFIX.as_bytes()) {
                    return pass_to_auth(io, recorded, routed_cluster(p), ctx, outer).await;
                }
                if p.starts_with(b"teleport-") {
                    // Negotiated like the real router, then closed: the
                    // service behind it is not simulated.
                    let cfg = server_config(ctx.cert.clone(), &[p]).map_err(io::Error::other)?;
                    let mut tls = StartHandshake::from_parts(accepted, io).into_stream(cfg).await?;
                    let _ = tls.shutdown().await;
                    return Ok(());
                }
                if p == b"h2" || p == b"http/1.1" {
                    break;
                }
            }
        }
        let tls = StartHandshake::from_parts(accepted, io).into_stream(ctx.web.clone()).await?;
        serve_web(tls, ctx).await
    })
}

/// Reads until a whole ClientHello is in, keeping every byte read so that a
/// pass-through can replay them.
async fn read_client_hello<S: AsyncRead + Unpin>(mut io: S) -> io::Result<(rustls::server::Accepted, Vec<u8>, S)> {
    const LIMIT: usize = 64 * 1024;
    let mut acceptor = rustls::server::Acceptor::default();
    let mut recorded = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        let n = io.read(&mut buf).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed before a ClientHello"));
        }
        recorded.extend_from_slice(&buf[..n]);
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            acceptor.read_tls(&mut rest)?;
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => return Ok((accepted, recorded, io)),
            Ok(None) if recorded.len() < LIMIT => {}
            Ok(None) => {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "ClientHello too large"));
            }
            Err((e, _)) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
    }
}

async fn pass_to_auth<S>(io: S, recorded: Vec<u8>, cluster: Option<String>, ctx: Arc<Ctx>, outer: bool) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if cluster.as_deref() != Some(ctx.cluster.as_str()) {
        // Teleport: "cluster name not found"; the connection is just closed.
        ctx.counters.refused_routes.fetch_add(1, Ordering::SeqCst);
        return Ok(());
    }
    ctx.counters.auth_routes.fetch_add(1, Ordering::SeqCst);
    let mut auth = TcpStream::connect(ctx.auth_addr).await?;
    auth.set_nodelay(true)?;
    auth.write_all(&recorded).await?;
    let kill = ctx.tunnels.lock().expect("poisoned").clone();
    let piped = pipe(io, auth, &ctx, &kill, outer).await;
    if outer && kill.is_cancelled() {
        ctx.counters.tunnels_dropped.fetch_add(1, Ordering::SeqCst);
    }
    piped
}

/// Copies bytes both ways until both sides are done, the tunnels are
/// dropped, or (for an `outer` connection) the idle timeout passes.
async fn pipe<A, B>(a: A, b: B, ctx: &Ctx, kill: &CancellationToken, outer: bool) -> io::Result<()>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let idle = if outer { ctx.cfg.idle_timeout } else { None };
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let (mut abuf, mut bbuf) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    let (mut a_open, mut b_open) = (true, true);
    let mut last = tokio::time::Instant::now();
    while a_open || b_open {
        let idle_at = last + idle.unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            _ = kill.cancelled() => return Ok(()),
            _ = tokio::time::sleep_until(idle_at), if idle.is_some() => {
                ctx.counters.idle_closed.fetch_add(1, Ordering::SeqCst);
                return Ok(());
            }
            n = ar.read(&mut abuf), if a_open => match n? {
                0 => {
                    a_open = false;
                    let _ = bw.shutdown().await;
                }
                n => {
                    last = tokio::time::Instant::now();
                    bw.write_all(&abuf[..n]).await?;
                }
            },
            n = br.read(&mut bbuf), if b_open => match n? {
                0 => {
                    b_open = false;
                    let _ = aw.shutdown().await;
                }
                n => {
                    last = tokio::time::Instant::now();
                    aw.write_all(&bbuf[..n]).await?;
                }
            },
        }
    }
    Ok(())
}

async fn serve_web<S>(tls: S, ctx: Arc<Ctx>) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(web_api(req, ctx)) }
    });
    hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tls), svc)
        .with_upgrades()
        .await
        .map_err(io::Error::other)
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("valid response")
}

fn web_api(req: Request<Incoming>, ctx: Arc<Ctx>) -> Response<Body> {
    match (req.method().as_str(), req.uri().path()) {
        ("GET", "/webapi/find") => {
            ctx.counters.find_requests.fetch_add(1, Ordering::SeqCst);
            json_response(StatusCode::OK, find_document(&ctx))
        }
        ("GET", "/webapi/connectionupgrade") if ctx.cfg.tls_routing => connection_upgrade(req, ctx),
        _ => json_response(StatusCode::NOT_FOUND, json!({"error": {"message": "not found"}})),
    }
}

/// `/webapi/find` as Teleport 17 answers it.
fn find_document(ctx: &Ctx) -> serde_json::Value {
    json!({
        "proxy": {
            "kube": {"enabled": true, "listen_addr": "0.0.0.0:3026"},
            "ssh": {
                "listen_addr": "0.0.0.0:3023",
                "tunnel_listen_addr": "0.0.0.0:3024",
                "web_listen_addr": "0.0.0.0:3080",
                "public_addr": ctx.public_addr,
            },
            "db": {"mysql_listen_addr": "0.0.0.0:3036"},
            "tls_routing_enabled": ctx.cfg.tls_routing,
        },
        "server_version": ctx.server_version,
        "min_client_version": "16.0.0-aa",
        "cluster_name": ctx.cluster,
        "automatic_upgrades": false,
        "auto_update": {"tools_version": ctx.server_version, "tools_auto_update": false},
        "edition": "oss",
        "fips": false,
    })
}

fn header_tokens(req: &Request<Incoming>, name: header::HeaderName) -> Vec<String> {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect()
}

fn connection_upgrade(mut req: Request<Incoming>, ctx: Arc<Ctx>) -> Response<Body> {
    if !header_tokens(&req, header::UPGRADE).iter().any(|u| u == "websocket") {
        return json_response(StatusCode::NOT_FOUND, json!({"error": {"message": "unsupported upgrade types"}}));
    }
    let offered = header_tokens(&req, header::SEC_WEBSOCKET_PROTOCOL);
    let Some(subprotocol) = ["alpn-ping", "alpn"].into_iter().find(|p| offered.iter().any(|o| o == p)) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": {"message": "no supported WebSocket subprotocol"}}),
        );
    };
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).map(|k| k.as_bytes().to_vec()) else {
        return json_response(StatusCode::BAD_REQUEST, json!({"error": {"message": "missing Sec-WebSocket-Key"}}));
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    ctx.counters.upgrades.fetch_add(1, Ordering::SeqCst);
    let ping = (subprotocol == "alpn-ping").then_some(ctx.cfg.ping_interval);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            tunnel(ws, ping, ctx).await;
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, derive_accept_key(&key))
        .header(header::SEC_WEBSOCKET_PROTOCOL, subprotocol)
        .body(Body::empty())
        .expect("valid response")
}

/// Carries a WebSocket tunnel's binary frames to and from the ALPN router.
/// The WebSocket connection is the outer layer: its frames, pings and pongs
/// included, are what the idle timeout watches.
async fn tunnel<S>(ws: WebSocketStream<S>, ping: Option<Duration>, ctx: Arc<Ctx>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let kill = ctx.tunnels.lock().expect("poisoned").clone();
    let idle = ctx.cfg.idle_timeout;
    let mut last = tokio::time::Instant::now();
    let (near, far) = tokio::io::duplex(64 * 1024);
    tokio::spawn(route(far, ctx.clone(), false));
    let (mut rd, mut wr) = tokio::io::split(near);
    let (mut sink, mut frames) = ws.split();
    let period = ping.unwrap_or(Duration::from_secs(3600));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let idle_at = last + idle.unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            _ = ctx.stop.cancelled() => break,
            _ = kill.cancelled() => break,
            _ = tokio::time::sleep_until(idle_at), if idle.is_some() => {
                ctx.counters.idle_closed.fetch_add(1, Ordering::SeqCst);
                break;
            }
            _ = ticker.tick(), if ping.is_some() => {
                if sink.send(Message::Ping(Bytes::from_static(b"teleport"))).await.is_err() {
                    break;
                }
                last = tokio::time::Instant::now();
                ctx.counters.pings_sent.fetch_add(1, Ordering::SeqCst);
            }
            n = rd.read(&mut buf) => match n {
                Ok(0) | Err(_) => {
                    let _ = sink.close().await;
                    break;
                }
                Ok(n) => {
                    last = tokio::time::Instant::now();
                    if sink.send(Message::Binary(Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                        break;
                    }
                }
            },
            frame = frames.next() => {
                last = tokio::time::Instant::now();
                match frame {
                    Some(Ok(Message::Binary(data))) => if wr.write_all(&data).await.is_err() {
                        break;
                    },
                    Some(Ok(Message::Pong(_))) => {
                        ctx.counters.pongs_received.fetch_add(1, Ordering::SeqCst);
                    }
                    Some(Ok(Message::Ping(_) | Message::Text(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                }
            }
        }
    }
    // However the loop saw it first (the cut, or the routed side it ended).
    if kill.is_cancelled() {
        ctx.counters.tunnels_dropped.fetch_add(1, Ordering::SeqCst);
    }
}

/// ALPN prefix of the Proxy's TLS route to a cluster's Auth service.
const AUTH_ALPN_PREFIX: &str = "teleport-auth@";

/// The cluster a `teleport-auth@<hex(cluster)>.teleport.cluster.local`
/// protocol names, read as the Proxy's router reads it (upstream's
/// `DecodeClusterName`): the hex between the `@` and the first dot. `None`
/// when it does not decode, which the Proxy answers by closing the
/// connection.
fn routed_cluster(protocol: &[u8]) -> Option<String> {
    let rest = protocol.strip_prefix(AUTH_ALPN_PREFIX.as_bytes())?;
    let hex_part = rest.split(|b| *b == b'.').next()?;
    if rest.get(hex_part.len()..)? != b".teleport.cluster.local" {
        return None;
    }
    String::from_utf8(hex::decode(hex_part).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::routed_cluster;

    #[test]
    fn reads_the_cluster_of_a_routing_protocol() {
        let p = format!("teleport-auth@{}.teleport.cluster.local", hex::encode("sim.example.com"));
        assert_eq!(routed_cluster(p.as_bytes()).as_deref(), Some("sim.example.com"));
        assert_eq!(routed_cluster(b"teleport-auth@zz.teleport.cluster.local"), None, "not hex");
        assert_eq!(routed_cluster(b"teleport-auth@6162.example.com"), None, "other suffix");
        assert_eq!(routed_cluster(b"h2"), None);
    }
}
