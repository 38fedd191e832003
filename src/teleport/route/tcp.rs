//! TCP to a Teleport Proxy, through an HTTP CONNECT proxy when the
//! environment says so (`HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`, as curl and
//! Teleport's own clients read them).

use std::io;

use http::Uri;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower::ServiceExt;

/// Which forward proxy, if any, carries connections to an address.
pub struct Net {
    matcher: Matcher,
    source: Source,
}

/// Where the forward-proxy settings came from, so that the HTTPS client of
/// `/webapi/find` uses the same ones.
#[derive(Clone)]
enum Source {
    Env,
    Direct,
    Https(String),
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The matcher may hold proxy credentials.
        f.write_str("Net { .. }")
    }
}

impl Net {
    /// Forward proxies from the environment.
    pub fn from_env() -> Self {
        Self { matcher: Matcher::from_env(), source: Source::Env }
    }

    /// No forward proxy.
    pub fn direct() -> Self {
        Self { matcher: Matcher::builder().build(), source: Source::Direct }
    }

    /// Every HTTPS destination through the HTTP proxy at `url`
    /// (e.g. `http://user:pass@proxy:3128`).
    pub fn https_proxy(url: &str) -> Self {
        Self { matcher: Matcher::builder().https(url.to_string()).build(), source: Source::Https(url.to_string()) }
    }

    /// The same forward-proxy settings on a reqwest client.
    pub fn apply(&self, builder: reqwest::ClientBuilder) -> reqwest::Result<reqwest::ClientBuilder> {
        Ok(match &self.source {
            // reqwest reads the same variables with the same rules.
            Source::Env => builder,
            Source::Direct => builder.no_proxy(),
            Source::Https(url) => builder.proxy(reqwest::Proxy::https(url.as_str())?),
        })
    }

    /// Whether connections to `addr` go through a forward proxy.
    pub fn proxied(&self, addr: &str) -> bool {
        destination(addr).is_ok_and(|dst| self.matcher.intercept(&dst).is_some())
    }

    /// Opens a TCP stream to `addr` (`host:port`), tunnelled through the
    /// forward proxy when one applies.
    pub async fn connect(&self, addr: &str) -> io::Result<TcpStream> {
        let dst = destination(addr)?;
        let stream = match self.matcher.intercept(&dst) {
            None => TcpStream::connect(addr)
                .await
                .map_err(|e| io::Error::new(e.kind(), format!("cannot reach {addr}: {e}")))?,
            Some(via) => {
                let proxy = via.uri().clone();
                if proxy.scheme_str() != Some("http") {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        format!(
                            "the forward proxy for {addr} must be an http:// URL (HTTP CONNECT); {} proxies are not supported",
                            proxy.scheme_str().unwrap_or("schemeless")
                        ),
                    ));
                }
                let connector = tower::service_fn(|uri: Uri| async move {
                    let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_string();
                    let port = uri.port_u16().unwrap_or(80);
                    TcpStream::connect((host.as_str(), port)).await.map(TokioIo::new)
                });
                let mut tunnel = Tunnel::new(proxy.clone(), connector);
                if let Some(auth) = via.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                let proxy_host = proxy.authority().map(|a| a.host().to_string()).unwrap_or_default();
                tunnel.oneshot(dst).await.map(TokioIo::into_inner).map_err(|e| {
                    io::Error::other(format!(
                        "cannot reach {addr} through the forward proxy {proxy_host}: {}",
                        super::super::connect::error_chain(&e)
                    ))
                })?
            }
        };
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

fn destination(addr: &str) -> io::Result<Uri> {
    format!("https://{addr}/")
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr:?} is not host:port: {e}")))
}

/// The host part of `host:port` (without IPv6 brackets).
pub fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// The port of `host:port`.
pub fn port_of(addr: &str) -> Option<u16> {
    addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port() {
        assert_eq!(host_of("teleport.example.com:443"), "teleport.example.com");
        assert_eq!(host_of("[::1]:3080"), "::1");
        assert_eq!(port_of("auth:3025"), Some(3025));
        assert_eq!(port_of("auth"), None);
    }

    #[test]
    fn no_proxy_is_honoured() {
        let net = Net {
            matcher: Matcher::builder()
                .https("http://proxy:3128".to_string())
                .no("internal.example.com".to_string())
                .build(),
            source: Source::Https("http://proxy:3128".into()),
        };
        assert!(net.proxied("teleport.example.com:443"));
        assert!(!net.proxied("auth.internal.example.com:3025"));
        assert!(!Net::direct().proxied("teleport.example.com:443"));
    }
}
