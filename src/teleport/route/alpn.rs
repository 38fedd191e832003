//! TLS routing through a Teleport Proxy: the Proxy's TLS router reads the
//! ClientHello's first ALPN protocol, `teleport-auth@<hex(cluster)>.teleport.cluster.local`,
//! and passes the whole TLS stream through to that cluster's Auth service
//! unopened. The client therefore does mutual TLS with Auth end to end, over
//! a plain TCP connection to the Proxy's web port.

use std::io;
use std::sync::Arc;

use super::tcp::Net;
use crate::teleport::connect::{BoxedIo, Dialer};
use crate::teleport::tls::AUTH_SERVER_NAME;

/// ALPN prefix of the Proxy's pass-through route to Auth.
pub const AUTH_ALPN_PREFIX: &str = "teleport-auth@";

/// The routing protocol for `cluster`: hex of its UTF-8 name, as Teleport's
/// `EncodeClusterName` (hex hides the dots a wildcard SAN cannot match).
pub fn auth_alpn(cluster: &str) -> String {
    format!("{AUTH_ALPN_PREFIX}{}.{AUTH_SERVER_NAME}", hex::encode(cluster.as_bytes()))
}

/// The cluster a routing protocol names, if it is one.
pub fn cluster_of_alpn(protocol: &[u8]) -> Option<String> {
    let rest = std::str::from_utf8(protocol).ok()?.strip_prefix(AUTH_ALPN_PREFIX)?;
    let encoded = rest.strip_suffix(&format!(".{AUTH_SERVER_NAME}"))?;
    String::from_utf8(hex::decode(encoded).ok()?).ok()
}

/// Where a Proxy route leads: the Proxy's address and the cluster to reach.
#[derive(Debug, Clone)]
pub struct ProxyTarget {
    pub addr: String,
    /// Cluster whose Auth the Proxy routes to.
    pub cluster: String,
    pub net: Arc<Net>,
}

impl ProxyTarget {
    pub fn new(addr: impl Into<String>, cluster: impl Into<String>, net: Arc<Net>) -> Self {
        Self { addr: addr.into(), cluster: cluster.into(), net }
    }

    pub fn alpn(&self) -> Vec<Vec<u8>> {
        vec![auth_alpn(&self.cluster).into_bytes(), b"h2".to_vec()]
    }

    /// A Proxy closes a routed connection without a word when it has no such
    /// cluster (or cannot reach its Auth), so an Auth handshake that ends in
    /// EOF is explained in those terms.
    pub fn explain_handshake(&self, err: &io::Error) -> Option<String> {
        let is_tls_error = err.get_ref().is_some_and(|e| e.downcast_ref::<rustls::Error>().is_some());
        if is_tls_error {
            if let Some(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)) =
                err.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>())
            {
                return Some(format!(
                    "the server's certificate is not signed by any CA in the identity: the identity belongs to another cluster than {:?}, or something between the plugin and the Proxy at {} terminates TLS (a load balancer without TLS pass-through needs the connection upgrade: set {}=true)",
                    self.cluster,
                    self.addr,
                    super::web::CONN_UPGRADE_ENV
                ));
            }
            return None;
        }
        matches!(
            err.kind(),
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
        )
        .then(|| {
            format!(
                "the Proxy at {} closed the connection instead of passing it to Auth: the Proxy has no cluster named {:?}, or cannot reach that cluster's Auth service",
                self.addr, self.cluster
            )
        })
    }
}

/// TLS routing over plain TCP to the Proxy (`tenant.teleport.sh:443`).
pub struct TlsRoutingDialer {
    pub target: ProxyTarget,
}

#[async_trait::async_trait]
impl Dialer for TlsRoutingDialer {
    async fn dial(&self) -> io::Result<BoxedIo> {
        Ok(Box::pin(self.target.net.connect(&self.target.addr).await?))
    }

    fn alpn(&self) -> Vec<Vec<u8>> {
        self.target.alpn()
    }

    fn describe(&self) -> String {
        format!(
            "through the Proxy at {} (TLS routing to the Auth of cluster {})",
            self.target.addr, self.target.cluster
        )
    }

    fn explain_handshake(&self, err: &io::Error) -> Option<String> {
        self.target.explain_handshake(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names_round_trip_through_the_alpn() {
        assert_eq!(
            auth_alpn("tenant.teleport.sh"),
            "teleport-auth@74656e616e742e74656c65706f72742e7368.teleport.cluster.local"
        );
        assert_eq!(cluster_of_alpn(auth_alpn("tenant.teleport.sh").as_bytes()).as_deref(), Some("tenant.teleport.sh"));
        assert_eq!(cluster_of_alpn(b"teleport-auth@zz.teleport.cluster.local"), None);
        assert_eq!(cluster_of_alpn(b"h2"), None);
    }
}
