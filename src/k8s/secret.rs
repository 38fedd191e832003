//! The identity from the Kubernetes Secret tbot writes, followed live.
//!
//! Only this one Secret is read (by name, with a field selector), so the
//! plugin's Role needs get/list/watch on it alone (`resourceNames`).

use std::sync::Arc;

use futures::StreamExt;

use super::next_or_stop;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::identity::publish::IdentityPublisher;
use crate::identity::{Identity, IdentityError, parse_identity_file};

/// Where the identity Secret is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    pub namespace: String,
    pub name: String,
    pub key: String,
}

impl SecretRef {
    pub fn describe(&self) -> String {
        format!("Secret {}/{} key {:?}", self.namespace, self.name, self.key)
    }
}

/// Extracts and parses the identity from a Secret.
pub fn identity_in(secret: &Secret, r: &SecretRef) -> Result<Identity, IdentityError> {
    let data = secret.data.as_ref();
    let Some(bytes) = data.and_then(|d| d.get(&r.key)) else {
        let keys: Vec<&str> = data.map(|d| d.keys().map(String::as_str).collect()).unwrap_or_default();
        return Err(IdentityError::Read {
            what: "identity Secret key",
            path: r.describe(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "the key is missing (keys present: {}); set teleport.identity_secret.key (tbot writes `identity`)",
                    if keys.is_empty() { "none".to_string() } else { keys.join(", ") }
                ),
            ),
        });
    };
    parse_identity_file(&bytes.0)
}

/// Reads the Secret once, then follows it until `stop`.
pub async fn follow(client: Client, r: SecretRef, stop: CancellationToken) -> anyhow::Result<Arc<IdentityPublisher>> {
    let api: Api<Secret> = Api::namespaced(client, &r.namespace);
    let secret = api.get(&r.name).await.map_err(|e| match &e {
        kube::Error::Api(s) if s.code == 404 => {
            anyhow::anyhow!("{} not found: check teleport.identity_secret.name and that tbot writes it", r.describe())
        }
        kube::Error::Api(s) if s.code == 403 => anyhow::anyhow!(
            "the service account may not read {}: grant get, list and watch on it ({})",
            r.describe(),
            s.message
        ),
        _ => anyhow::anyhow!("cannot read {}: {e}", r.describe()),
    })?;
    let identity = identity_in(&secret, &r)?;
    identity.ensure_unexpired(std::time::SystemTime::now())?;
    let publisher = Arc::new(IdentityPublisher::new(Arc::new(identity)));
    tokio::spawn(watch(api, r, publisher.clone(), stop));
    Ok(publisher)
}

async fn watch(api: Api<Secret>, r: SecretRef, publisher: Arc<IdentityPublisher>, stop: CancellationToken) {
    let cfg = watcher::Config::default().fields(&format!("metadata.name={}", r.name));
    let mut events = watcher::watcher(api, cfg).default_backoff().boxed();
    let source = r.describe();
    loop {
        let Some(ev) = next_or_stop(&mut events, &stop).await else { return };
        match ev {
            // The selector should already restrict events to our Secret;
            // check the name anyway.
            Ok(Event::Apply(s) | Event::InitApply(s)) if s.name_any() == r.name => {
                publisher.offer(identity_in(&s, &r), &source);
            }
            Ok(Event::Delete(s)) if s.name_any() == r.name => {
                let e = IdentityError::Read {
                    what: "identity Secret",
                    path: source.clone(),
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "the Secret was deleted"),
                };
                publisher.offer(Err(e), &source);
            }
            Ok(_) => {}
            Err(e) => warn!(secret = %source, error = %e, "watching the identity Secret failed; retrying"),
        }
    }
}
