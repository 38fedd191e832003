//! The Proxy's public ("web") TLS: verified against the system's roots (and
//! any extra CAs configured), as a browser would. Used for `/webapi/find`, the
//! connection-upgrade hop and the test dial that detects an L7 load balancer.
//! The Auth session inside never uses these roots.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{AlertDescription, ClientConfig, PeerMisbehaved};
use tokio_rustls::TlsConnector;
use tracing::{debug, info};

use super::tcp::{Net, host_of};

/// ALPN of the test dial, as Teleport's clients use: a protocol only
/// Teleport's own TLS router negotiates.
pub const PROBE_ALPN: &[u8] = b"teleport-reversetunnel";
/// Environment variable that forces the connection-upgrade decision.
pub const CONN_UPGRADE_ENV: &str = "TELEPORT_TLS_ROUTING_CONN_UPGRADE";

/// A client configuration for the web PKI with the given ALPN list.
pub fn client_config(extra_cas: &[CertificateDer<'static>], alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra_cas.iter().cloned(), provider.clone())
            .map_err(|e| format!("cannot load the CA certificates that verify the Proxy's web certificate: {e}"))?;
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// The name to send as SNI and verify for `addr` (a DNS name or an IP).
pub fn server_name(addr: &str) -> io::Result<ServerName<'static>> {
    ServerName::try_from(host_of(addr).to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr:?} has no valid host name: {e}")))
}

/// Outer TLS to the Proxy's web listener.
pub async fn connect(
    net: &Net,
    addr: &str,
    config: Arc<ClientConfig>,
) -> io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = net.connect(addr).await?;
    TlsConnector::from(config)
        .connect(server_name(addr)?, tcp)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("TLS with the Proxy at {addr} failed: {}", explain_web_tls(&e))))
}

/// The TLS error somewhere in an error chain. `io::Error::source()` skips
/// the error an io::Error wraps, and HTTP clients nest io::Errors, so each
/// one is opened too.
pub fn rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(inner) = err.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            cur = Some(inner);
            continue;
        }
        cur = err.source();
    }
    None
}

/// Why the web TLS handshake failed, with the fix when it is a trust problem.
pub fn explain_web_tls(e: &io::Error) -> String {
    match rustls_error(e) {
        Some(rustls::Error::InvalidCertificate(c)) => format!(
            "the Proxy's web certificate is not trusted ({c:?}); if a TLS-inspecting proxy or a private CA signs it, add that CA with teleport.web_ca"
        ),
        Some(other) => other.to_string(),
        None => e.to_string(),
    }
}

/// Parses `TELEPORT_TLS_ROUTING_CONN_UPGRADE` as Teleport does: conditions
/// separated by `,` or `;`, each `<addr>=<bool>` or a bare `<bool>` for every
/// other address (default: no upgrade). `None` when the variable is empty,
/// so the test dial decides.
pub fn upgrade_forced_by(value: &str, addr: &str) -> Option<bool> {
    if value.trim().is_empty() {
        return None;
    }
    let mut all = false;
    for token in value.split([',', ';']).map(str::trim).filter(|t| !t.is_empty()) {
        match token.split_once('=') {
            Some((target, flag)) if target.trim() == addr => {
                return Some(parse_bool(flag.trim()).unwrap_or(false));
            }
            Some(_) => {}
            None => all = parse_bool(token).unwrap_or(all),
        }
    }
    Some(all)
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "yes" | "y" | "on" => Some(true),
        "0" | "f" | "false" | "no" | "n" | "off" => Some(false),
        _ => None,
    }
}

/// Whether the Proxy at `addr` sits behind a load balancer that does not pass
/// TLS routing through, so connections must be tunnelled through the
/// WebSocket connection upgrade. Like Teleport's clients: a test dial with a
/// Teleport ALPN; no protocol negotiated (or a "no application protocol"
/// alert) means an upgrade is needed; any other failure means it is not.
pub async fn upgrade_required(net: &Net, addr: &str, extra_cas: &[CertificateDer<'static>], timeout: Duration) -> bool {
    let config = match client_config(extra_cas, &[PROBE_ALPN]) {
        Ok(c) => c,
        Err(e) => {
            info!(addr, error = %e, "connection upgrade test skipped");
            return false;
        }
    };
    let dial = async {
        let tcp = net.connect(addr).await?;
        TlsConnector::from(config).connect(server_name(addr)?, tcp).await
    };
    match tokio::time::timeout(timeout, dial).await {
        Ok(Ok(tls)) => {
            let negotiated = tls.get_ref().1.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned());
            debug!(addr, negotiated = ?negotiated, "connection upgrade test dial");
            negotiated.is_none()
        }
        Ok(Err(e)) if refuses_alpn(&e) => {
            debug!(addr, error = %e, "connection upgrade test: the server refuses Teleport's ALPN");
            true
        }
        Ok(Err(e)) => {
            info!(addr, error = %e, "connection upgrade test dial failed; assuming no upgrade is needed");
            false
        }
        Err(_) => {
            info!(addr, "connection upgrade test dial timed out; assuming no upgrade is needed");
            false
        }
    }
}

fn refuses_alpn(e: &io::Error) -> bool {
    matches!(
        rustls_error(e),
        Some(rustls::Error::AlertReceived(AlertDescription::NoApplicationProtocol))
            | Some(rustls::Error::NoApplicationProtocol)
            | Some(rustls::Error::PeerMisbehaved(PeerMisbehaved::SelectedUnofferedApplicationProtocol))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_override_follows_teleport_rules() {
        assert_eq!(upgrade_forced_by("true", "p:443"), Some(true));
        assert_eq!(upgrade_forced_by("0", "p:443"), Some(false));
        assert_eq!(upgrade_forced_by("p:443=yes,q:443=no", "p:443"), Some(true));
        assert_eq!(upgrade_forced_by("p:443=yes;q:443=no", "q:443"), Some(false));
        assert_eq!(upgrade_forced_by("0,p:443=1", "p:443"), Some(true));
        assert_eq!(upgrade_forced_by("1,p:443=0", "r:443"), Some(true));
        assert_eq!(upgrade_forced_by("p:443=1", "r:443"), Some(false));
        assert_eq!(upgrade_forced_by(" ", "r:443"), None);
        assert_eq!(upgrade_forced_by("maybe", "r:443"), Some(false));
    }
}
