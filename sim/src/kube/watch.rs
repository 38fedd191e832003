//! Watch streams: newline-delimited JSON `WatchEvent`s over a chunked HTTP 200.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, Interval, interval_at, sleep_until};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::resource::ResourceType;
use super::selector::Selectors;
use super::state::Shared;
use super::status::ApiError;
use super::store::{EventType, HistoryExpired};

/// A parsed watch request.
pub(crate) struct WatchRequest {
    pub rt: Arc<ResourceType>,
    pub ns: Option<String>,
    pub selectors: Selectors,
    pub resource_version: Option<String>,
    pub bookmarks: bool,
    pub send_initial_events: Option<bool>,
    pub version_match: Option<String>,
    pub timeout: Duration,
}

/// Where the stream starts after its initial events.
enum Start {
    After(u64),
    Expired(String),
}

/// Validates the request, snapshots its starting point and spawns the stream.
pub(crate) fn start(shared: Arc<Shared>, req: WatchRequest) -> Result<Body, ApiError> {
    let invalid = |why: &str| ApiError::new(422, "Invalid", why.to_string());
    let initial_events = req.send_initial_events == Some(true);
    if initial_events && !req.bookmarks {
        return Err(invalid(
            "allowWatchBookmarks: Forbidden: sendInitialEvents requires setting allowWatchBookmarks=true",
        ));
    }
    match (
        req.version_match.as_deref(),
        req.send_initial_events.is_some(),
    ) {
        (None, _) | (Some("NotOlderThan"), true) => {}
        (Some(_), false) => {
            return Err(invalid(
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
            ));
        }
        (Some(other), true) => {
            return Err(invalid(&format!(
                "resourceVersionMatch: Unsupported value: {other:?}: supported values: \"NotOlderThan\""
            )));
        }
    }
    if initial_events && req.version_match.is_none() {
        return Err(invalid(
            "resourceVersionMatch: Forbidden: sendInitialEvents requires resourceVersionMatch=NotOlderThan",
        ));
    }
    let requested = match req.resource_version.as_deref().filter(|r| !r.is_empty()) {
        None => None,
        Some(r) => Some(
            r.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {r:?}")))?,
        ),
    };

    // Subscribe before reading the store so no write between the two is missed.
    let changes = shared.changes.subscribe();
    let cancel = shared.watch_token();
    let (initial, start) = shared.read(|store| {
        let ns = req.ns.as_deref();
        // Unset or "0" (and any sendInitialEvents=true) start with the current state.
        let synthetic =
            initial_events || (req.send_initial_events.is_none() && requested.unwrap_or(0) == 0);
        let from_now = synthetic || requested.unwrap_or(0) == 0;
        let mut lines = Vec::new();
        if synthetic {
            for obj in store.current(&req.rt, ns, &req.selectors) {
                lines.push(event_line(EventType::Added.as_str(), &obj));
            }
        }
        if initial_events {
            let annotations = json!({"k8s.io/initial-events-end": "true"});
            lines.push(bookmark_line(
                &req.rt,
                store.current_rv(),
                Some(annotations),
            ));
        }
        let start = match requested.filter(|_| !from_now) {
            None => Start::After(store.current_rv()),
            Some(rv) if store.can_watch_from(rv) => Start::After(rv),
            Some(rv) => Start::Expired(too_old(rv, store.compacted_rv())),
        };
        (lines, start)
    });

    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    shared.watch_opened();
    tokio::spawn(run(shared, req, initial, start, changes, cancel, tx));
    Ok(Body::from_stream(ReceiverStream::new(rx)))
}

/// Decrements the open-watch count however the stream ends.
struct OpenWatch(Arc<Shared>);

impl Drop for OpenWatch {
    fn drop(&mut self) {
        self.0.watch_closed();
    }
}

async fn run(
    shared: Arc<Shared>,
    req: WatchRequest,
    initial: Vec<Bytes>,
    start: Start,
    mut changes: watch::Receiver<u64>,
    cancel: CancellationToken,
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
) {
    let _open = OpenWatch(shared.clone());
    for line in initial {
        if tx.send(Ok(line)).await.is_err() {
            return;
        }
    }
    let mut pos = match start {
        Start::After(rv) => rv,
        Start::Expired(message) => {
            let _ = tx.send(Ok(error_line(&ApiError::expired(message)))).await;
            return;
        }
    };
    let deadline = Instant::now() + req.timeout;
    let period = shared.bookmark_interval.max(Duration::from_millis(10));
    let mut ticker = req
        .bookmarks
        .then(|| interval_at(Instant::now() + period, period));
    let mut bookmark_due = false;
    loop {
        let drained = shared.read(|store| {
            store
                .events_after(pos, &req.rt, req.ns.as_deref(), &req.selectors)
                .map_err(|HistoryExpired| too_old(pos, store.compacted_rv()))
        });
        let (events, upto) = match drained {
            Ok(drained) => drained,
            Err(message) => {
                let _ = tx.send(Ok(error_line(&ApiError::expired(message)))).await;
                return;
            }
        };
        for ev in events {
            if tx
                .send(Ok(event_line(ev.event.as_str(), &ev.object)))
                .await
                .is_err()
            {
                return;
            }
        }
        pos = pos.max(upto);
        if std::mem::take(&mut bookmark_due)
            && tx
                .send(Ok(bookmark_line(&req.rt, pos, None)))
                .await
                .is_err()
        {
            return;
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = tick(&mut ticker) => bookmark_due = true,
            _ = sleep_until(deadline) => return,
            _ = cancel.cancelled() => return,
            _ = tx.closed() => return,
        }
    }
}

async fn tick(ticker: &mut Option<Interval>) {
    match ticker {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn too_old(requested: u64, compacted: u64) -> String {
    format!("too old resource version: {requested} ({compacted})")
}

fn line(value: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    line(&json!({"type": kind, "object": object}))
}

fn error_line(err: &ApiError) -> Bytes {
    line(&json!({"type": "ERROR", "object": err.to_status()}))
}

/// A BOOKMARK carries only type meta and the resourceVersion (plus annotations).
fn bookmark_line(rt: &ResourceType, rv: u64, annotations: Option<Value>) -> Bytes {
    let mut metadata = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
    if let Some(annotations) = annotations {
        metadata["annotations"] = annotations;
    }
    line(&json!({
        "type": "BOOKMARK",
        "object": {"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": metadata},
    }))
}
