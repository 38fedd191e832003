//! Publishing identity updates to the connection layer.
//!
//! Sources (files, a Kubernetes Secret) hand every new version to an
//! [`IdentityPublisher`]. A version that does not parse, or is expired, is
//! refused: the current identity stays in use and the refusal is visible in
//! [`IdentityStatus`] (readiness, metrics) until a good version arrives.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::watch;
use tracing::{info, warn};

use super::{Identity, IdentityError};

/// What the identity sources report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityStatus {
    /// Fingerprint and expiry of the identity in use.
    pub fingerprint: String,
    pub not_after: Option<SystemTime>,
    /// Why the latest update was refused, until a good one arrives.
    pub last_error: Option<String>,
    /// Updates refused so far.
    pub rejected: u64,
    /// Updates accepted so far (after the first).
    pub accepted: u64,
}

pub struct IdentityPublisher {
    tx: watch::Sender<Arc<Identity>>,
    status: watch::Sender<IdentityStatus>,
}

impl IdentityPublisher {
    /// Starts with the identity loaded at start-up.
    pub fn new(initial: Arc<Identity>) -> Self {
        let status = IdentityStatus {
            fingerprint: initial.fingerprint.clone(),
            not_after: Some(initial.not_after),
            ..Default::default()
        };
        let (tx, _) = watch::channel(initial);
        let (status, _) = watch::channel(status);
        Self { tx, status }
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Identity>> {
        self.tx.subscribe()
    }

    pub fn status(&self) -> watch::Receiver<IdentityStatus> {
        self.status.subscribe()
    }

    pub fn current(&self) -> Arc<Identity> {
        self.tx.borrow().clone()
    }

    /// Offers a new version from `source`. Returns whether it was accepted.
    pub fn offer(&self, parsed: Result<Identity, IdentityError>, source: &str) -> bool {
        let checked = parsed.and_then(|id| id.ensure_unexpired(SystemTime::now()).map(|_| id));
        match checked {
            Ok(id) if id.fingerprint == self.tx.borrow().fingerprint => {
                // Same credentials rewritten: nothing to switch, but an
                // earlier refusal is healed.
                self.status.send_if_modified(|s| s.last_error.take().is_some());
                true
            }
            Ok(id) => {
                info!(source, fingerprint = %id.fingerprint, not_after = %humantime::format_rfc3339_seconds(id.not_after),
                    "new identity loaded");
                self.status.send_modify(|s| {
                    s.fingerprint = id.fingerprint.clone();
                    s.not_after = Some(id.not_after);
                    s.last_error = None;
                    s.accepted += 1;
                });
                self.tx.send_replace(Arc::new(id));
                true
            }
            Err(e) => {
                let msg = format!("identity update from {source} refused, keeping the current identity: {e}");
                warn!("{msg}");
                self.status.send_modify(|s| {
                    s.last_error = Some(msg);
                    s.rejected += 1;
                });
                false
            }
        }
    }
}
