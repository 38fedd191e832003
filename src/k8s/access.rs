//! Permission problems with the Kubernetes API: which refused call (a 403)
//! was which verb, and re-checks of refused watches. What is refused is
//! kept in [`crate::health::access::KubeAccess`] for readiness.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, WatchParams};
use kube::core::Status;
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

pub use crate::health::access::KubeAccess;

/// The 403 `Status` in a kube error, if it is one.
pub fn forbidden(e: &kube::Error) -> Option<&Status> {
    match e {
        kube::Error::Api(s) if s.code == 403 => Some(s),
        _ => None,
    }
}

/// The verb a watcher used when it was refused, and the API server's answer.
fn watcher_forbidden(e: &watcher::Error) -> Option<(&'static str, &Status)> {
    match e {
        watcher::Error::InitialListFailed(e) => forbidden(e).map(|s| ("list", s)),
        watcher::Error::WatchStartFailed(e) | watcher::Error::WatchFailed(e) => {
            forbidden(e).map(|s| ("watch", s))
        }
        watcher::Error::WatchError(s) if s.code == 403 => Some(("watch", s.as_ref())),
        _ => None,
    }
}

/// How often a refused watch is checked again.
const RECHECK: Duration = Duration::from_secs(2);

/// Follows the permissions of one watcher (list, then watch) from its events.
pub struct WatchAccess<K> {
    pub api: Api<K>,
    /// The watcher's field selector, so a re-check asks for the same thing.
    pub fields: Option<String>,
    /// What is watched, as the readiness line names it.
    pub what: String,
    pub access: Arc<KubeAccess>,
}

impl<K> WatchAccess<K>
where
    K: Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// Updates the permissions from one watcher event.
    pub fn observe<T>(&self, ev: &Result<Event<T>, watcher::Error>) {
        match ev {
            Err(e) => {
                if let Some((verb, status)) = watcher_forbidden(e) {
                    self.access.denied(verb, &self.what, &status.message);
                }
            }
            Ok(Event::InitDone) => self.access.allowed("list", &self.what),
            Ok(Event::Apply(_) | Event::Delete(_)) => {
                self.access.allowed("list", &self.what);
                self.access.allowed("watch", &self.what);
            }
            Ok(_) => {}
        }
    }

    /// While the watch is refused, checks every few seconds whether it
    /// works again. The watcher retries on its own, but a watch that opens
    /// is silent until something changes, so its success would not show.
    pub fn spawn_rechecks(self: Arc<Self>, stop: CancellationToken) {
        tokio::spawn(async move {
            let mut changes = self.access.subscribe();
            loop {
                if self.access.is_denied("watch", &self.what) {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(RECHECK) => {}
                    }
                    if self.watch_allowed().await {
                        self.access.allowed("watch", &self.what);
                    }
                    continue;
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    changed = changes.changed() => if changed.is_err() { return },
                }
            }
        });
    }

    async fn watch_allowed(&self) -> bool {
        let mut params = WatchParams::default().timeout(1);
        if let Some(f) = &self.fields {
            params = params.fields(f);
        }
        match self.api.watch(&params, "0").await {
            Err(e) => forbidden(&e).is_none(),
            Ok(_) => true,
        }
    }
}
