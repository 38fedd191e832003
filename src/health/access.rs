//! Kubernetes permissions the plugin was refused, for readiness.
//!
//! A Role missing a verb must not crash-loop the pod nor leave it retrying
//! silently with a stale identity or an empty route table: every refused
//! call is kept here, named by verb and resource, and `/readyz` fails with
//! it until the permission works (RBAC changes take effect without a
//! restart, so the plugin keeps trying). The Kubernetes code (`k8s::access`)
//! reports into it.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;
use tracing::{info, warn};

/// Refused permissions: `"<verb> <what>"` → the readiness line.
#[derive(Debug)]
pub struct KubeAccess {
    tx: watch::Sender<BTreeMap<String, String>>,
}

impl Default for KubeAccess {
    fn default() -> Self {
        KubeAccess { tx: watch::channel(BTreeMap::new()).0 }
    }
}

impl KubeAccess {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn subscribe(&self) -> watch::Receiver<BTreeMap<String, String>> {
        self.tx.subscribe()
    }

    /// Records that the API server refused `verb` on `what` (e.g. `Secret
    /// teleport/plugin-identity`) with a 403 saying `server_said`; logged
    /// once until it works.
    pub fn denied(&self, verb: &str, what: &str, server_said: &str) {
        let key = format!("{verb} {what}");
        let line = format!(
            "the service account may not {verb} {what}: grant the verb \"{verb}\" on it in the plugin's Role (the API server said: {server_said})"
        );
        let mut new = false;
        self.tx.send_if_modified(|m| {
            new = !m.contains_key(&key);
            let changed = m.get(&key) != Some(&line);
            m.insert(key.clone(), line.clone());
            changed
        });
        if new {
            warn!("{line}; retrying");
        }
    }

    /// Records that `verb` on `what` works (again).
    pub fn allowed(&self, verb: &str, what: &str) {
        let key = format!("{verb} {what}");
        if self.tx.send_if_modified(|m| m.remove(&key).is_some()) {
            info!("the service account may {verb} {what} now");
        }
    }

    pub fn is_denied(&self, verb: &str, what: &str) -> bool {
        self.tx.borrow().contains_key(&format!("{verb} {what}"))
    }

    /// The readiness lines of every refused permission.
    pub fn problems(&self) -> Vec<String> {
        self.tx.borrow().values().cloned().collect()
    }
}

