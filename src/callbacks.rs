//! The callback listener (`http.listen_addr`): where chats deliver clicks over
//! HTTP (`POST /slack/interactions`, ...), kept apart from health and
//! metrics so it alone can be exposed through an Ingress. Plain HTTP, or TLS
//! when `https_key_file` and `https_cert_file` are set (a TLS-terminating
//! Ingress is the usual alternative). Each chat's transport brings its own
//! routes, which verify every request before believing it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::config::CallbackConfig;

/// A TLS handshake slower than this is dropped (it would hold a slot).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `cfg.listen_addr` and serves `routes` until `stop`; returns the
/// bound address. Unknown paths answer 404.
pub async fn serve(cfg: &CallbackConfig, routes: Router, stop: CancellationToken) -> Result<SocketAddr> {
    let tls = match &cfg.tls {
        Some((key, cert)) => Some(acceptor(key, cert)?),
        None => None,
    };
    let listener = TcpListener::bind(&cfg.listen_addr)
        .await
        .with_context(|| format!("http.listen_addr {}: cannot listen", cfg.listen_addr))?;
    let bound = listener.local_addr()?;
    match tls {
        None => {
            tokio::spawn(async move {
                let _ = axum::serve(listener, routes).with_graceful_shutdown(stop.cancelled_owned()).await;
            });
        }
        Some(acceptor) => {
            let tls_listener = TlsListener::spawn(listener, acceptor, stop.clone());
            tokio::spawn(async move {
                let _ = axum::serve(tls_listener, routes).with_graceful_shutdown(stop.cancelled_owned()).await;
            });
        }
    }
    Ok(bound)
}

fn acceptor(key: &Path, cert: &Path) -> Result<TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("http.https_cert_file {}: cannot read", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("http.https_cert_file {}: not a PEM certificate chain", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("http.https_cert_file {}: holds no certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("http.https_key_file {}: not a PEM private key", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS setup")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("http.https_key_file does not match http.https_cert_file")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts TCP connections and hands over those whose TLS handshake
/// finished; handshakes run side by side so a slow client holds up no one.
struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    fn spawn(listener: TcpListener, acceptor: TlsAcceptor, stop: CancellationToken) -> Self {
        let local = listener.local_addr().expect("bound listener has an address");
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = tokio::select! {
                    r = listener.accept() => match r {
                        Ok(c) => c,
                        Err(e) => {
                            debug!(error = %e, "callback listener accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    _ = stop.cancelled() => return,
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => debug!(%peer, error = %e, "callback TLS handshake failed"),
                        Err(_) => debug!(%peer, "callback TLS handshake timed out"),
                    }
                });
            }
        });
        Self { rx, local }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept loop ended (shutdown): wait to be dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
