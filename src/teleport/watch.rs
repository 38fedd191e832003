//! The Teleport event stream: WatchEvents on access requests and Access
//! Monitoring Rules, kept alive forever.
//!
//! - A lost stream is re-opened with jittered backoff (20 ms to 5 s); the
//!   process never exits because Teleport went away.
//! - After every (re)connect, the current requests are listed and fed through
//!   the same path as live events, so nothing created during a gap is missed.
//! - When the identity rotates, a new connection and a new stream are brought
//!   up while the old stream keeps delivering; only once the new stream has
//!   sent INIT does it replace the old one (make-before-break). Events seen on
//!   both are delivered twice, which consumers handle (they are idempotent).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::BackoffBuilder;
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tonic::Streaming;
use tracing::{debug, info, warn};

use super::client::{Connection, TeleportClient, describe_status};
use super::convert;
use crate::identity::Identity;
use crate::model::{AccessRequest, MonitoringRule};
use crate::pb::proto::{self, event::Resource};

pub const REQUEST_KIND: &str = "access_request";
pub const RULE_KIND: &str = "access_monitoring_rule";
/// Teleport sends INIT promptly; a stream silent for this long is broken.
const INIT_TIMEOUT: Duration = Duration::from_secs(15);

/// What the watcher delivers, in stream order.
#[allow(clippy::large_enum_variant)] // most items are requests anyway
#[derive(Debug, Clone, PartialEq)]
pub enum Feed {
    /// A stream (re)started. `rules_watched` tells whether the server accepted
    /// the Access Monitoring Rule kind (consumers then load the rules).
    Ready { generation: u64, rules_watched: bool },
    /// A request was created or changed (live event).
    Put(AccessRequest),
    /// A request found by the catch-up listing after a (re)connect.
    Listed(AccessRequest),
    /// A request was deleted (expired or removed).
    Deleted(String),
    RulePut(MonitoringRule),
    RuleDeleted(String),
    /// The catch-up listing after a (re)connect is complete.
    CaughtUp { listed: usize },
}

/// Connection state, for readiness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamState {
    Connecting { attempt: u32, last_error: Option<String> },
    Live { generation: u64, identity: String },
}

/// Counters and the last rotation failure, for metrics and readiness.
#[derive(Debug, Default)]
pub struct WatchStats {
    pub events: AtomicU64,
    pub reconnects: AtomicU64,
    pub rotations: AtomicU64,
    pub rotation_failures: AtomicU64,
    pub catchup_failures: AtomicU64,
    last_rotation_error: Mutex<Option<String>>,
}

impl WatchStats {
    pub fn last_rotation_error(&self) -> Option<String> {
        self.last_rotation_error.lock().expect("poisoned").clone()
    }

    fn set_rotation_error(&self, e: Option<String>) {
        *self.last_rotation_error.lock().expect("poisoned") = e;
    }
}

pub struct Watcher {
    client: Arc<TeleportClient>,
    out: mpsc::Sender<Feed>,
    state: watch::Sender<StreamState>,
    identities: Option<watch::Receiver<Arc<Identity>>>,
    stats: Arc<WatchStats>,
    min_backoff: Duration,
    max_backoff: Duration,
}

/// Why `serve` returned.
enum Ended {
    Shutdown,
    Lost(String),
}

type Prepared = (Arc<Connection>, Streaming<proto::Event>, bool);

impl Watcher {
    pub fn new(client: Arc<TeleportClient>, out: mpsc::Sender<Feed>) -> Self {
        let (state, _) = watch::channel(StreamState::Connecting { attempt: 0, last_error: None });
        Self {
            client,
            out,
            state,
            identities: None,
            stats: Arc::default(),
            min_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_secs(5),
        }
    }

    /// Follow identity rotations published on `rx`.
    pub fn with_identity_updates(mut self, rx: watch::Receiver<Arc<Identity>>) -> Self {
        self.identities = Some(rx);
        self
    }

    pub fn state(&self) -> watch::Receiver<StreamState> {
        self.state.subscribe()
    }

    pub fn stats(&self) -> Arc<WatchStats> {
        self.stats.clone()
    }

    fn backoff(&self) -> impl Iterator<Item = Duration> + use<> {
        backon::ExponentialBuilder::default()
            .with_min_delay(self.min_backoff)
            .with_max_delay(self.max_backoff)
            .with_jitter()
            .without_max_times()
            .build()
    }

    /// Runs until `shutdown` is cancelled or the consumer goes away.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut delays = self.backoff();
        let mut attempt: u32 = 0;
        loop {
            let opened = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = self.open_latest() => r,
            };
            match opened {
                Ok((conn, stream, rules)) => {
                    delays = self.backoff();
                    attempt = 0;
                    match self.serve(conn, stream, rules, &shutdown).await {
                        Ended::Shutdown => return,
                        Ended::Lost(reason) => {
                            self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                            warn!(reason = %reason, "Teleport event stream lost; reconnecting");
                            self.state.send_replace(StreamState::Connecting { attempt: 0, last_error: Some(reason) });
                        }
                    }
                }
                Err(reason) => {
                    attempt += 1;
                    warn!(attempt, reason = %reason, "cannot open the Teleport event stream; retrying");
                    self.state.send_replace(StreamState::Connecting { attempt, last_error: Some(reason) });
                }
            }
            let delay = delays.next().unwrap_or(self.max_backoff);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Opens a stream on the installed connection, or on a new one when a
    /// newer identity is available than the installed connection uses.
    async fn open_latest(&mut self) -> Result<Prepared, String> {
        let installed = self.client.connection();
        let latest = self.identities.as_mut().map(|rx| rx.borrow_and_update().clone());
        match latest {
            Some(id) if id.fingerprint != installed.identity.fingerprint => {
                let prepared = prepare(self.client.clone(), id).await?;
                self.client.install(prepared.0.clone());
                Ok(prepared)
            }
            _ => {
                let (stream, rules) = open_stream(&installed).await?;
                Ok((installed, stream, rules))
            }
        }
    }

    async fn serve(
        &mut self,
        mut conn: Arc<Connection>,
        mut stream: Streaming<proto::Event>,
        mut rules_watched: bool,
        shutdown: &CancellationToken,
    ) -> Ended {
        let mut catchup = match self.start(&conn, rules_watched).await {
            Some(task) => task,
            None => return Ended::Shutdown,
        };
        let mut rotation: Option<BoxFuture<'static, Result<Prepared, String>>> = None;
        let mut identities = self.identities.take();
        let result = loop {
            tokio::select! {
                _ = shutdown.cancelled() => break Ended::Shutdown,
                msg = stream.message() => match msg {
                    Ok(Some(ev)) => {
                        self.stats.events.fetch_add(1, Ordering::Relaxed);
                        if let Some(feed) = decode_event(ev)
                            && self.out.send(feed).await.is_err() {
                                break Ended::Shutdown;
                            }
                    }
                    Ok(None) => break Ended::Lost("the server closed the stream".into()),
                    Err(status) => break Ended::Lost(describe_status(&status)),
                },
                changed = changed(&mut identities), if rotation.is_none() => {
                    if !changed {
                        // The identity source is gone; keep the current identity.
                        identities = None;
                        continue;
                    }
                    let id = identities.as_mut().map(|rx| rx.borrow_and_update().clone());
                    if let Some(id) = id.filter(|id| id.fingerprint != conn.identity.fingerprint) {
                        info!(fingerprint = %id.fingerprint, "identity changed; connecting with it before switching");
                        rotation = Some(prepare(self.client.clone(), id).boxed());
                    }
                },
                prepared = async { rotation.as_mut().expect("guarded").await }, if rotation.is_some() => {
                    rotation = None;
                    match prepared {
                        Ok((new_conn, new_stream, new_rules)) => {
                            self.client.install(new_conn.clone());
                            info!(generation = new_conn.generation, fingerprint = %new_conn.identity.fingerprint,
                                "switched to the rotated identity");
                            self.stats.rotations.fetch_add(1, Ordering::Relaxed);
                            self.stats.set_rotation_error(None);
                            // The old stream is dropped here, after the new one is live.
                            conn = new_conn;
                            stream = new_stream;
                            rules_watched = new_rules;
                            catchup.abort();
                            catchup = match self.start(&conn, rules_watched).await {
                                Some(task) => task,
                                None => break Ended::Shutdown,
                            };
                        }
                        Err(reason) => {
                            self.stats.rotation_failures.fetch_add(1, Ordering::Relaxed);
                            warn!(reason = %reason, "rotated identity does not work; keeping the current one");
                            self.stats.set_rotation_error(Some(reason));
                        }
                    }
                },
            }
        };
        catchup.abort();
        self.identities = identities;
        result
    }

    /// Announces a live stream and starts its catch-up listing.
    async fn start(&self, conn: &Connection, rules_watched: bool) -> Option<tokio::task::JoinHandle<()>> {
        self.state.send_replace(StreamState::Live {
            generation: conn.generation,
            identity: conn.identity.fingerprint.clone(),
        });
        info!(generation = conn.generation, path = %conn.path, rules_watched, "Teleport event stream is live");
        self.out.send(Feed::Ready { generation: conn.generation, rules_watched }).await.ok()?;
        let client = self.client.clone();
        let out = self.out.clone();
        let stats = self.stats.clone();
        let delays = self.backoff();
        Some(tokio::spawn(catch_up(client, out, stats, delays)))
    }
}

/// Resolves when the identity source publishes (true) or goes away (false);
/// never resolves without a source.
async fn changed(rx: &mut Option<watch::Receiver<Arc<Identity>>>) -> bool {
    match rx.as_mut() {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// Dials a new connection with `identity` and opens a stream on it.
async fn prepare(client: Arc<TeleportClient>, identity: Arc<Identity>) -> Result<Prepared, String> {
    identity.ensure_unexpired(std::time::SystemTime::now()).map_err(|e| e.to_string())?;
    let conn = Arc::new(client.dial(identity).await.map_err(|e| e.to_string())?);
    let (stream, rules) = open_stream(&conn).await?;
    Ok((conn, stream, rules))
}

/// Opens WatchEvents and waits for INIT. Returns whether AMRs are watched.
async fn open_stream(conn: &Connection) -> Result<(Streaming<proto::Event>, bool), String> {
    let mut stream = conn
        .watch(&[REQUEST_KIND, RULE_KIND])
        .await
        .map_err(|s| format!("WatchEvents refused: {}", describe_status(&s)))?;
    let first = tokio::time::timeout(INIT_TIMEOUT, stream.message())
        .await
        .map_err(|_| format!("no INIT event within {INIT_TIMEOUT:?}"))?
        .map_err(|s| format!("WatchEvents failed: {}", describe_status(&s)))?
        .ok_or("the server closed the stream before INIT")?;
    if first.r#type != proto::Operation::Init as i32 {
        return Err(format!("expected INIT as the first event, got operation {}", first.r#type));
    }
    let accepted: Option<Vec<String>> = match first.resource {
        Some(Resource::WatchStatus(ws)) => Some(ws.spec.map(|s| s.kinds.into_iter().map(|k| k.kind).collect()).unwrap_or_default()),
        // Servers without partial success accept every kind or fail the call.
        _ => None,
    };
    let accepts = |kind: &str| accepted.as_ref().is_none_or(|a| a.iter().any(|k| k == kind));
    if !accepts(REQUEST_KIND) {
        return Err("the server does not let this identity watch access_request: give the plugin's role `access_request` read/list rights".into());
    }
    Ok((stream, accepts(RULE_KIND)))
}

/// Lists every current request page by page and feeds each as `Listed`
/// (only one page is held at a time), retrying a failed page until it works
/// (a newer (re)connect aborts it and starts its own).
async fn catch_up(
    client: Arc<TeleportClient>,
    out: mpsc::Sender<Feed>,
    stats: Arc<WatchStats>,
    mut delays: impl Iterator<Item = Duration>,
) {
    let mut start_key = String::new();
    let mut listed = 0;
    loop {
        match client.list_access_requests_page(&start_key).await {
            Ok((page, next)) => {
                listed += page.len();
                for r in page {
                    if out.send(Feed::Listed(r)).await.is_err() {
                        return;
                    }
                }
                if next.is_empty() {
                    debug!(listed, "catch-up listing done");
                    let _ = out.send(Feed::CaughtUp { listed }).await;
                    return;
                }
                start_key = next;
            }
            Err(status) => {
                stats.catchup_failures.fetch_add(1, Ordering::Relaxed);
                warn!(reason = %describe_status(&status), "cannot list access requests for catch-up; retrying");
                tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(5))).await;
            }
        }
    }
}

/// Turns a stream event into a [`Feed`] item; `None` for events we ignore.
pub fn decode_event(ev: proto::Event) -> Option<Feed> {
    let op = proto::Operation::try_from(ev.r#type).ok()?;
    match (op, ev.resource?) {
        (proto::Operation::Put, Resource::AccessRequest(r)) => Some(Feed::Put(convert::request_from_pb(&r))),
        (proto::Operation::Delete, Resource::AccessRequest(r)) => {
            Some(Feed::Deleted(r.metadata.map(|m| m.name).unwrap_or_default()))
        }
        (proto::Operation::Put, Resource::AccessMonitoringRule(r)) => Some(Feed::RulePut(convert::rule_from_pb(&r))),
        (proto::Operation::Delete, Resource::AccessMonitoringRule(r)) => {
            Some(Feed::RuleDeleted(r.metadata.map(|m| m.name).unwrap_or_default()))
        }
        (proto::Operation::Delete, Resource::ResourceHeader(h)) => {
            let name = h.metadata.map(|m| m.name).unwrap_or_default();
            match h.kind.as_str() {
                REQUEST_KIND => Some(Feed::Deleted(name)),
                RULE_KIND => Some(Feed::RuleDeleted(name)),
                _ => None,
            }
        }
        _ => None,
    }
}
