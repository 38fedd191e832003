//! The identity from the Kubernetes Secret tbot writes, followed live.
//!
//! Only this one Secret is read (by name, with a field selector), so the
//! plugin's Role needs get/list/watch on it alone (`resourceNames`).
//!
//! On a fresh install tbot may not have written the Secret yet: the start
//! waits for it (not ready, `/readyz` says so) instead of exiting.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::access::{KubeAccess, WatchAccess};
use super::next_or_stop;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::health::Startup;
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

/// Reads the Secret, waiting while it does not exist, the service account
/// may not read it, or the API cannot be reached (polled every 2 s at most;
/// `/readyz` says which), then follows it until `stop`. A refused permission
/// is waited out too: fixing the Role takes effect without a restart, and
/// exiting would only crash-loop the pod.
pub async fn follow(
    client: Client,
    r: SecretRef,
    stop: CancellationToken,
    startup: &Startup,
    access: Arc<KubeAccess>,
) -> anyhow::Result<Arc<IdentityPublisher>> {
    let api: Api<Secret> = Api::namespaced(client, &r.namespace);
    let what = format!("the identity {}", r.describe());
    let target = target(&r);
    let mut delay = Duration::from_millis(250);
    let secret = loop {
        match api.get(&r.name).await {
            Ok(s) => break s,
            Err(kube::Error::Api(s)) if s.code == 404 => startup.waiting(
                &what,
                "not found (tbot has not written it yet, or teleport.identity_secret.name is wrong)",
            ),
            Err(kube::Error::Api(s)) if s.code == 403 => {
                startup.waiting(
                    &what,
                    &format!(
                        "the service account may not get {target}: grant get, list and watch on it in the plugin's Role (the API server said: {})",
                        s.message
                    ),
                );
                access.denied("get", &target, &s.message);
            }
            Err(e) => startup.waiting(&what, &format!("cannot read it from the Kubernetes API: {e}")),
        }
        tokio::select! {
            _ = stop.cancelled() => anyhow::bail!("stopped while waiting for {what}"),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    };
    startup.arrived(&what);
    access.allowed("get", &target);
    let identity = identity_in(&secret, &r)?;
    identity.ensure_unexpired(std::time::SystemTime::now())?;
    let publisher = Arc::new(IdentityPublisher::new(Arc::new(identity)));
    tokio::spawn(watch(api, r, publisher.clone(), access, stop));
    Ok(publisher)
}

/// How permission problems name the Secret: `secrets "name" in namespace ns`.
fn target(r: &SecretRef) -> String {
    format!("secrets {:?} in namespace {}", r.name, r.namespace)
}

async fn watch(api: Api<Secret>, r: SecretRef, publisher: Arc<IdentityPublisher>, access: Arc<KubeAccess>, stop: CancellationToken) {
    let fields = format!("metadata.name={}", r.name);
    let cfg = watcher::Config::default().fields(&fields);
    let permissions = Arc::new(WatchAccess { api: api.clone(), fields: Some(fields), what: target(&r), access });
    permissions.clone().spawn_rechecks(stop.clone());
    let mut events = watcher::watcher(api, cfg).default_backoff().boxed();
    let source = r.describe();
    loop {
        let Some(ev) = next_or_stop(&mut events, &stop).await else { return };
        permissions.observe(&ev);
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
