//! State shared by the HTTP handlers, the watch streams and the control API.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::rbac::Policy;
use super::status::ApiError;
use super::store::Store;

/// One request the server received, as a test may want to assert on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// Apiserver verb: `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`.
    pub verb: String,
    /// Resource plural, with `/status` appended for the status subresource.
    pub resource: String,
    /// API group (empty for core resources).
    pub group: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// The raw (still URL-encoded) query string.
    pub query: String,
    /// The decoded query parameters, in order.
    pub params: Vec<(String, String)>,
    /// The authenticated user (`system:serviceaccount:ns:name`), once RBAC
    /// is enforced; `None` before.
    pub user: Option<String>,
    /// The request was refused by authentication or RBAC (401/403).
    pub denied: bool,
}

impl RequestRecord {
    /// The first value of a decoded query parameter.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A planned failure: the next `remaining` matching requests answer with `error`.
struct Fault {
    remaining: usize,
    verb: Option<String>,
    resource: Option<String>,
    error: ApiError,
}

#[derive(Default)]
struct Audit {
    records: Vec<RequestRecord>,
    faults: Vec<Fault>,
}

pub(crate) struct Shared {
    store: Mutex<Store>,
    /// Carries the current resourceVersion; changes after every write.
    pub changes: watch::Sender<u64>,
    /// Changes on every request, write or watch open/close, for `wait_until`.
    pub activity: watch::Sender<u64>,
    /// Cancelled (and replaced) to end every open watch stream.
    watch_epoch: Mutex<CancellationToken>,
    open_watches: AtomicUsize,
    audit: Mutex<Audit>,
    policy: Mutex<Policy>,
    pub bookmark_interval: Duration,
}

/// Locks a mutex, continuing past poisoning: the guarded data stays consistent
/// because no code path panics while holding these locks mid-update.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn new(bookmark_interval: Duration) -> Self {
        Shared {
            store: Mutex::new(Store::default()),
            changes: watch::Sender::new(0),
            activity: watch::Sender::new(0),
            watch_epoch: Mutex::new(CancellationToken::new()),
            open_watches: AtomicUsize::new(0),
            audit: Mutex::new(Audit::default()),
            policy: Mutex::new(Policy::default()),
            bookmark_interval,
        }
    }

    pub fn read<R>(&self, f: impl FnOnce(&Store) -> R) -> R {
        f(&lock(&self.store))
    }

    /// Runs a store mutation, then wakes watch streams and waiters.
    pub fn write<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        let (result, rv) = {
            let mut store = lock(&self.store);
            let result = f(&mut store);
            (result, store.current_rv())
        };
        self.changes.send_replace(rv);
        self.bump_activity();
        result
    }

    pub fn bump_activity(&self) {
        self.activity.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Records a request and returns the injected failure it must answer with, if any.
    pub fn record(&self, record: RequestRecord) -> Option<ApiError> {
        let failure = {
            let mut audit = lock(&self.audit);
            let matches = |f: &Fault| {
                f.verb.as_ref().is_none_or(|v| *v == record.verb)
                    && f.resource.as_ref().is_none_or(|r| *r == record.resource)
            };
            let failure = audit.faults.iter_mut().find(|f| matches(f)).map(|f| {
                f.remaining -= 1;
                f.error.clone()
            });
            audit.faults.retain(|f| f.remaining > 0);
            audit.records.push(record);
            failure
        };
        self.bump_activity();
        failure
    }

    /// Records a request that was refused before reaching the store (injected
    /// faults are left for the next request that gets that far).
    pub fn record_denied(&self, record: RequestRecord) {
        lock(&self.audit).records.push(record);
        self.bump_activity();
    }

    pub fn with_policy<R>(&self, f: impl FnOnce(&mut Policy) -> R) -> R {
        f(&mut lock(&self.policy))
    }

    pub fn add_fault(
        &self,
        remaining: usize,
        verb: Option<String>,
        resource: Option<String>,
        error: ApiError,
    ) {
        if remaining > 0 {
            lock(&self.audit).faults.push(Fault {
                remaining,
                verb,
                resource,
                error,
            });
        }
    }

    pub fn records(&self) -> Vec<RequestRecord> {
        lock(&self.audit).records.clone()
    }

    pub fn with_records<R>(&self, f: impl FnOnce(&[RequestRecord]) -> R) -> R {
        f(&lock(&self.audit).records)
    }

    /// The token that ends watch streams opened now.
    pub fn watch_token(&self) -> CancellationToken {
        lock(&self.watch_epoch).clone()
    }

    /// Closes every open watch stream, as an apiserver restart would.
    pub fn drop_watches(&self) {
        let old = std::mem::take(&mut *lock(&self.watch_epoch));
        old.cancel();
    }

    pub fn open_watches(&self) -> usize {
        self.open_watches.load(Ordering::SeqCst)
    }

    pub fn watch_opened(&self) {
        self.open_watches.fetch_add(1, Ordering::SeqCst);
        self.bump_activity();
    }

    pub fn watch_closed(&self) {
        self.open_watches.fetch_sub(1, Ordering::SeqCst);
        self.bump_activity();
    }
}
