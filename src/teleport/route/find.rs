//! `GET https://<proxy>/webapi/find`: the Proxy's unauthenticated discovery
//! call. It tells whether the address is a Teleport Proxy, the cluster's
//! name (needed to route to its Auth) and whether TLS routing is on.

use std::time::Duration;

use rustls::ClientConfig;
use serde::Deserialize;

use super::tcp::Net;
use crate::teleport::connect::error_chain;

/// The parts of the answer the plugin uses (the JSON has many more).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct FindResponse {
    pub proxy: ProxySettings,
    #[serde(default)]
    pub server_version: String,
    #[serde(default)]
    pub min_client_version: String,
    pub cluster_name: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct ProxySettings {
    #[serde(default)]
    pub tls_routing_enabled: bool,
    #[serde(default)]
    pub ssh: SshSettings,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct SshSettings {
    #[serde(default)]
    pub tunnel_listen_addr: String,
    #[serde(default)]
    pub ssh_tunnel_public_addr: String,
    #[serde(default)]
    pub public_addr: String,
}

/// Why `/webapi/find` gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum FindError {
    /// Nothing listens at the address (or the forward proxy refused).
    #[error("{0}")]
    Unreachable(String),
    /// Something answered, but not a Teleport Proxy's web API.
    #[error("{0}")]
    NotWebApi(String),
    /// Something answered TLS with a certificate no trusted CA signs (kept
    /// apart: it may be a Proxy behind a private CA, or Auth itself).
    #[error("GET {url}: the web certificate is not trusted ({reason}); if a TLS-inspecting proxy or a private CA signs it, add that CA with teleport.web_ca")]
    Untrusted { url: String, reason: String },
}

/// Asks the Proxy at `addr` who it is. `web` is the web-PKI configuration;
/// forward proxies come from the environment, as for every HTTPS client.
pub async fn find(net: &Net, addr: &str, web: &ClientConfig, timeout: Duration) -> Result<FindResponse, FindError> {
    // A plain TCP dial first tells "nothing there" apart from "something
    // other than a Proxy", which reqwest's errors do not do reliably.
    tokio::time::timeout(timeout, net.connect(addr))
        .await
        .map_err(|_| FindError::Unreachable(format!("cannot reach {addr}: no answer within {timeout:?}")))?
        .map_err(|e| FindError::Unreachable(e.to_string()))?;

    let mut tls = web.clone();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let builder = reqwest::Client::builder().tls_backend_preconfigured(tls).connect_timeout(timeout).timeout(timeout);
    let client = net
        .apply(builder)
        .and_then(reqwest::ClientBuilder::build)
        .map_err(|e| FindError::NotWebApi(format!("cannot build the HTTPS client: {e}")))?;
    let url = format!("https://{addr}/webapi/find");
    let resp = client.get(&url).send().await.map_err(|e| request_error(&url, &e))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(FindError::NotWebApi(format!(
            "GET {url} answered HTTP {status}: not a Teleport Proxy web address"
        )));
    }
    let body = resp.bytes().await.map_err(|e| FindError::NotWebApi(format!("GET {url}: {}", error_chain(&e))))?;
    let found: FindResponse = serde_json::from_slice(&body)
        .map_err(|e| FindError::NotWebApi(format!("GET {url} did not return Teleport's discovery document: {e}")))?;
    if found.cluster_name.is_empty() {
        return Err(FindError::NotWebApi(format!("GET {url} named no cluster")));
    }
    Ok(found)
}

fn request_error(url: &str, e: &reqwest::Error) -> FindError {
    match super::web::rustls_error(e) {
        Some(rustls::Error::InvalidCertificate(c)) => FindError::Untrusted { url: url.into(), reason: format!("{c:?}") },
        _ => FindError::NotWebApi(format!("GET {url} failed: {}", error_chain(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_real_shape() {
        let body = r#"{"proxy":{"kube":{"enabled":true,"listen_addr":"0.0.0.0:3026"},
            "ssh":{"listen_addr":"0.0.0.0:3023","tunnel_listen_addr":"0.0.0.0:3024","web_listen_addr":"0.0.0.0:3080",
            "public_addr":"tenant.teleport.sh:443"},"db":{},"tls_routing_enabled":true},
            "server_version":"17.4.2","min_client_version":"16.0.0-aa","cluster_name":"tenant.teleport.sh",
            "automatic_upgrades":true,"auto_update":{"tools_version":"17.4.2"},"edition":"ent","fips":false}"#;
        let f: FindResponse = serde_json::from_str(body).unwrap();
        assert!(f.proxy.tls_routing_enabled);
        assert_eq!(f.cluster_name, "tenant.teleport.sh");
        assert_eq!(f.proxy.ssh.public_addr, "tenant.teleport.sh:443");
    }
}
