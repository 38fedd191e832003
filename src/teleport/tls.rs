//! TLS settings for the session with Teleport Auth: the identity's client
//! certificate, server verification against the identity's CAs for the name
//! `teleport.cluster.local`, and the ALPN list of the connection path.

use std::io;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{CertificateError, ClientConfig, RootCertStore};

use crate::identity::Identity;

/// Name Auth (and Proxy) certificates carry, whatever address was dialled.
pub const AUTH_SERVER_NAME: &str = "teleport.cluster.local";

pub fn auth_server_name() -> ServerName<'static> {
    ServerName::try_from(AUTH_SERVER_NAME).expect("constant is a valid DNS name")
}

/// Builds the client TLS configuration for one identity and ALPN list.
pub fn client_config(identity: &Identity, alpn: &[Vec<u8>]) -> Result<Arc<ClientConfig>, rustls::Error> {
    let mut roots = RootCertStore::empty();
    for ca in identity.cas() {
        roots.add(ca.clone())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(identity.cert_chain().to_vec(), identity.key())?;
    cfg.alpn_protocols = alpn.to_vec();
    Ok(Arc::new(cfg))
}

/// Turns a failed handshake into a sentence that names the likely cause.
pub fn explain_handshake_error(err: &io::Error) -> String {
    let Some(tls) = err.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) else {
        return err.to_string();
    };
    match tls {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
        | rustls::Error::InvalidCertificate(CertificateError::BadSignature) => {
            "the server's certificate is not signed by any CA in the identity: the identity belongs to another cluster, or root_cas is wrong".into()
        }
        rustls::Error::InvalidCertificate(CertificateError::NotValidForName)
        | rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => format!(
            "the server's certificate is not valid for {AUTH_SERVER_NAME}: the address does not lead to a Teleport Auth service (a Proxy address needs the proxy connection mode)"
        ),
        rustls::Error::InvalidCertificate(CertificateError::Expired)
        | rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { .. }) => {
            "the server's certificate has expired".into()
        }
        rustls::Error::AlertReceived(alert) => format!(
            "the server rejected our client certificate (TLS alert {alert:?}): the identity is expired, revoked or from another cluster"
        ),
        rustls::Error::NoApplicationProtocol => {
            "the server does not speak the requested application protocol (ALPN)".into()
        }
        other => format!("TLS handshake failed: {other}"),
    }
}
