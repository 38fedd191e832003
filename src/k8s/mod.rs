//! Kubernetes integration: the identity from tbot's Secret, and routing from
//! `AccessRequestRoute` resources, both followed live.

pub mod access;
pub mod controller;
pub mod crd;
pub mod routes;
pub mod secret;

use anyhow::{Context, Result};

/// The next item of a watch stream, or `None` once `stop` fires or the
/// stream ends.
pub async fn next_or_stop<S: futures::Stream + Unpin>(events: &mut S, stop: &CancellationToken) -> Option<S::Item> {
    use futures::StreamExt;
    tokio::select! {
        _ = stop.cancelled() => None,
        ev = events.next() => ev,
    }
}

/// A client for the cluster the plugin runs in (or `KUBECONFIG`).
pub async fn client() -> Result<kube::Client> {
    kube::Client::try_default()
        .await
        .context("Kubernetes API access is needed (teleport.identity_secret or routing.crd): run in a pod with a service account, or set KUBECONFIG")
}

/// The namespace to use when none is configured: the pod's own.
pub fn default_namespace(client: &kube::Client) -> String {
    std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| client.default_namespace().to_string())
}

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::app::Extras;
use crate::config::{Config, IdentitySource};
use crate::health::Startup;
use routes::RouteTable;

/// Kubernetes parts of a start: what `launch` needs, and the route
/// controller to start once metrics exist.
#[derive(Default)]
pub struct Setup {
    pub extras: Extras,
    pub routes: Option<Routes>,
}

/// The route controller prepared by [`setup`].
pub struct Routes {
    client: kube::Client,
    namespace: String,
    table: Arc<RouteTable>,
    access: Arc<access::KubeAccess>,
}

/// Starts the route controller prepared by [`setup`] (when routing.crd is on).
pub fn start_routes(routes: Option<Routes>, metrics: Arc<crate::metrics::Metrics>, stop: CancellationToken) {
    if let Some(Routes { client, namespace, table, access }) = routes {
        tracing::info!(namespace = %namespace, "following AccessRequestRoute resources");
        tokio::spawn(controller::run(client, namespace, table, metrics, access, stop));
    }
}

/// Connects to Kubernetes when the configuration asks for it: loads the
/// identity from its Secret (waiting for it, see [`secret::follow`]) and
/// prepares CRD routing.
pub async fn setup(cfg: &Config, stop: &CancellationToken, startup: &Startup) -> Result<Setup> {
    let needs = matches!(cfg.teleport.identity, IdentitySource::Secret { .. }) || cfg.routing.crd;
    if !needs {
        return Ok(Setup::default());
    }
    setup_waiting(cfg, stop, client().await?, startup).await
}

/// [`setup`] with a given client.
pub async fn setup_with(cfg: &Config, stop: &CancellationToken, client: kube::Client) -> Result<Setup> {
    setup_waiting(cfg, stop, client, &Startup::default()).await
}

/// [`setup`] with a given client, reporting waits to `startup`.
pub async fn setup_waiting(cfg: &Config, stop: &CancellationToken, client: kube::Client, startup: &Startup) -> Result<Setup> {
    let mut out = Setup::default();
    let access = access::KubeAccess::new();
    out.extras.kube_access = Some(access.clone());
    if let IdentitySource::Secret { name, key, namespace } = &cfg.teleport.identity {
        let r = secret::SecretRef {
            namespace: namespace.clone().unwrap_or_else(|| default_namespace(&client)),
            name: name.clone(),
            key: key.clone(),
        };
        out.extras.identity = Some(secret::follow(client.clone(), r, stop.clone(), startup, access.clone()).await?);
    }
    if cfg.routing.crd {
        let table = RouteTable::new();
        let namespace = cfg.routing.namespace.clone().unwrap_or_else(|| default_namespace(&client));
        out.extras.routes = Some(table.clone());
        out.routes = Some(Routes { client, namespace, table, access });
    }
    Ok(out)
}
