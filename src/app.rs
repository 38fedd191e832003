//! Wiring for `start`: identity → Teleport connection → event stream →
//! one pipeline per chat, plus the observable state the HTTP endpoints and
//! tests read. A bad configuration fails the start at once; a dependency
//! that is not up yet (a chat API, Auth) is waited for, with backoff, and
//! reported on `/readyz`. Then it runs until told to stop.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::chat::Chat;

mod review;
use crate::config::{Config, IdentitySource};
use crate::engine::pipeline::Pipeline;
use crate::health::PipelineStatus;
use crate::engine::plan::Me;
use crate::health::{Health, Probes, Startup};
use crate::engine::route::{ExtraRoutes, Router};
use crate::engine::worker::{Worker, WorkerConfig};
use crate::identity::publish::{IdentityPublisher, IdentityStatus};
use crate::metrics::Metrics;
use crate::teleport::watch::WatchStats;
use crate::teleport::{ChannelOptions, ClusterInfo, Dialer, Feed, PluginDataStore, StreamState, TeleportClient, Watcher};

/// A running plugin.
pub struct Running {
    pub cluster: ClusterInfo,
    pub path: String,
    pub client: Arc<TeleportClient>,
    pub metrics: Arc<Metrics>,
    pub registry: Arc<Registry>,
    pub stream: watch::Receiver<StreamState>,
    pub watch_stats: Arc<WatchStats>,
    pub identity: watch::Receiver<IdentityStatus>,
    pub pipelines: Vec<(&'static str, watch::Receiver<PipelineStatus>)>,
    pub health: Arc<Health>,
    /// Address of /healthz, /readyz and /metrics when enabled.
    pub http_addr: Option<std::net::SocketAddr>,
    /// Address of the chat callback listener, when HTTP interactivity is on.
    pub callback_addr: Option<std::net::SocketAddr>,
    shutdown: CancellationToken,
    pipeline_tasks: Vec<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
}

/// Optional parts supplied by the caller (Kubernetes integration, tests).
#[derive(Default)]
pub struct Extras {
    /// An identity publisher to use instead of the configured files.
    pub identity: Option<Arc<IdentityPublisher>>,
    /// Routes from `AccessRequestRoute` resources.
    pub routes: Option<Arc<dyn ExtraRoutes>>,
    /// How to reach Auth, instead of the path chosen from `teleport.addr`
    /// and `teleport.connection`.
    pub dialer: Option<Arc<dyn Dialer>>,
    /// Probes already served by the caller (bound before the start waited
    /// for its dependencies), with their address; otherwise `launch` serves
    /// them on `http.listen` itself.
    pub probes: Option<(Arc<Probes>, Option<std::net::SocketAddr>)>,
    /// Kubernetes permissions refused at run time, shown by `/readyz`.
    pub kube_access: Option<Arc<crate::health::access::KubeAccess>>,
}

/// Retry delays while a dependency is not up: 250 ms doubling to 5 s.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Backoff(Duration::from_millis(250))
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
    }
}

/// Loads the configured identity files and follows them when asked to.
pub fn file_identity(cfg: &Config, stop: &CancellationToken) -> Result<Arc<IdentityPublisher>> {
    let IdentitySource::Files { files, refresh, interval } = &cfg.teleport.identity else {
        bail!("the identity comes from a Kubernetes Secret; it is loaded by the Kubernetes integration");
    };
    let identity = files.load().with_context(|| format!("cannot load the {}", files.describe()))?;
    identity.ensure_unexpired(std::time::SystemTime::now())?;
    let publisher = Arc::new(IdentityPublisher::new(Arc::new(identity)));
    if *refresh {
        tokio::spawn(crate::identity::files::follow(files.clone(), *interval, publisher.clone(), stop.clone()));
    }
    Ok(publisher)
}

/// Checks each chat's token. A chat API that cannot be reached (or
/// answers 5xx, or rate-limits) is waited for; a refused token stops the
/// start.
pub async fn check_chats(chats: &[Arc<dyn Chat>], startup: &Startup) -> Result<()> {
    for chat in chats {
        let what = format!("the {} API", chat.name());
        let mut backoff = Backoff::new();
        loop {
            match chat.health_check().await {
                Ok(who) => {
                    startup.arrived(&what);
                    info!(chat = chat.name(), bot = %who, "chat API health check passed");
                    break;
                }
                Err(e) if e.is_transient() => {
                    startup.waiting(&what, &e.to_string());
                    backoff.wait().await;
                }
                Err(e) => bail!("{} API health check failed: {e}", chat.name()),
            }
        }
    }
    Ok(())
}

/// Connects to Auth, waiting while it is unreachable; an identity it
/// refuses, or a server too old, stops the start.
async fn connect(
    dialer: Arc<dyn Dialer>,
    publisher: &IdentityPublisher,
    startup: &Startup,
) -> Result<(TeleportClient, ClusterInfo)> {
    let what = format!("Teleport Auth ({})", dialer.describe());
    let mut backoff = Backoff::new();
    loop {
        // The identity may rotate while we wait: always the current one.
        match TeleportClient::connect(dialer.clone(), publisher.current(), ChannelOptions::default()).await {
            Ok(done) => {
                startup.arrived(&what);
                return Ok(done);
            }
            Err(e) if e.is_transient() => {
                startup.waiting(&what, &e.to_string());
                backoff.wait().await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Chooses the path to Auth, waiting (not ready, with the reason) while
/// `teleport.addr` cannot be reached at all: asking a Proxy which path it
/// offers needs it up. Any other answer decides at once.
async fn choose_path(cfg: &Config, startup: &Startup) -> Result<Arc<dyn Dialer>> {
    let what = format!("Teleport at {}", cfg.teleport.addr);
    let mut backoff = Backoff::new();
    loop {
        match crate::teleport::route::dialer_for(&cfg.teleport).await {
            Ok(dialer) => {
                startup.arrived(&what);
                return Ok(dialer);
            }
            Err(crate::teleport::route::RouteError::Unreachable(why)) => {
                startup.waiting(&what, &why);
                backoff.wait().await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Starts everything. `chats[i]` is the client for `cfg.chats[i]`; their
/// tokens are checked first, and any failure stops the start.
pub async fn launch(cfg: &Config, chats: Vec<Arc<dyn Chat>>, extras: Extras) -> Result<Running> {
    let shutdown = CancellationToken::new();
    let (probes, http_addr) = match extras.probes {
        Some(served) => served,
        None => {
            let probes = Arc::new(Probes::default());
            let addr = serve_probes(cfg, &probes, &shutdown).await?;
            (probes, addr)
        }
    };
    check_chats(&chats, &probes.startup).await?;
    let publisher = match extras.identity {
        Some(p) => p,
        None => file_identity(cfg, &shutdown)?,
    };
    let dialer: Arc<dyn Dialer> = match extras.dialer {
        Some(d) => d,
        None => choose_path(cfg, &probes.startup).await?,
    };
    let identity = publisher.current();
    info!(user = %identity.username, fingerprint = %identity.fingerprint,
        not_after = %humantime::format_rfc3339_seconds(identity.not_after), "identity loaded");
    let (client, cluster) = connect(dialer, &publisher, &probes.startup).await?;
    let client = Arc::new(client);
    let path = client.path();
    info!(cluster = %cluster.cluster_name, version = %cluster.server_version, path = %path, "connected to Teleport");
    if let Some(w) = crate::teleport::client::untested_server_warning(&cluster.server_version) {
        tracing::warn!("{w}");
    }

    let (metrics, registry) = Metrics::new_registered();
    let (feed_tx, mut feed_rx) = mpsc::channel::<Feed>(1024);
    let watcher = Watcher::new(client.clone(), feed_tx).with_identity_updates(publisher.subscribe());
    let stream = watcher.state();
    let watch_stats = watcher.stats();
    let mut background = vec![tokio::spawn(watcher.run(shutdown.clone()))];

    let me = Me { instance: cfg.plugin.instance_id.clone(), epoch: uuid::Uuid::new_v4().simple().to_string()[..12].to_string() };
    let mut inputs = Vec::new();
    let mut pipelines = Vec::new();
    let mut pipeline_tasks = Vec::new();
    let mut heartbeats = Vec::new();
    let paired: Vec<(Arc<dyn Chat>, &crate::config::ChatConfig)> = chats.iter().cloned().zip(cfg.chats.iter()).collect();
    let review = review::start(cfg, &paired, client.clone(), metrics.clone(), &shutdown).await?;
    for (chat, chat_cfg) in chats.into_iter().zip(cfg.chats.iter()) {
        chat.count_rate_limits(metrics.rate_limited.get_or_create(&Metrics::chat(chat.name())).clone());
        let mut router = Router::new(chat.name(), chat_cfg.routing().clone());
        if let Some(extra) = &extras.routes {
            router = router.with_extra(extra.clone());
        }
        let router = Arc::new(router);
        metrics
            .routes
            .get_or_create(&crate::metrics::SourceLabel { source: format!("{}_role_to_recipients", chat.name()) })
            .set(chat_cfg.routing().len() as i64);
        let worker = Arc::new(Worker::new(
            chat.clone(),
            PluginDataStore::new(client.clone(), chat.name()),
            client.clone(),
            router.clone(),
            cluster.clone(),
            WorkerConfig::new(me.clone(), cfg.plugin.claim_lease).with_buttons(chat_cfg.review_enabled()),
            metrics.clone(),
        ));
        let pipeline = Pipeline::new(worker, router, client.clone(), metrics.clone(), cfg.plugin.concurrency);
        pipelines.push((chat.name(), pipeline.status()));
        heartbeats.push(pipeline.heartbeat());
        let (tx, rx) = mpsc::channel::<Feed>(1024);
        inputs.push(tx);
        pipeline_tasks.push(tokio::spawn(pipeline.run(rx, shutdown.clone())));
    }

    // Every chat sees every event.
    background.push(tokio::spawn(async move {
        while let Some(feed) = feed_rx.recv().await {
            for tx in &inputs {
                if tx.send(feed.clone()).await.is_err() {
                    return;
                }
            }
        }
    }));
    background.push(tokio::spawn(mirror_into_metrics(
        metrics.clone(),
        stream.clone(),
        publisher.status(),
        watch_stats.clone(),
        shutdown.clone(),
    )));

    let health = Arc::new(Health {
        identity: publisher.status(),
        stream: stream.clone(),
        pipelines: pipelines.iter().zip(heartbeats).map(|((n, s), h)| (*n, s.clone(), h)).collect(),
        chats_checked: true,
        clicks: review.links,
        stall_after: Duration::from_secs(60),
        kube_access: extras.kube_access.clone(),
    });
    let registry = Arc::new(registry);
    probes.set_running(health.clone(), registry.clone());

    Ok(Running {
        health,
        http_addr,
        callback_addr: review.callback_addr,
        cluster,
        path,
        client,
        metrics,
        registry,
        stream,
        watch_stats,
        identity: publisher.status(),
        pipelines,
        shutdown,
        pipeline_tasks,
        background,
    })
}

/// Serves /healthz, /readyz and /metrics on `http.listen` (when set) until
/// `stop`; returns the bound address.
pub async fn serve_probes(
    cfg: &Config,
    probes: &Arc<Probes>,
    stop: &CancellationToken,
) -> Result<Option<std::net::SocketAddr>> {
    let Some(addr) = &cfg.http.listen else { return Ok(None) };
    let bound = crate::admin::serve(addr, probes.clone(), stop.clone()).await?;
    info!(addr = %bound, "serving /healthz, /readyz and /metrics");
    Ok(Some(bound))
}

/// Keeps the gauges that mirror other components' state current.
async fn mirror_into_metrics(
    metrics: Arc<Metrics>,
    mut stream: watch::Receiver<StreamState>,
    mut identity: watch::Receiver<IdentityStatus>,
    stats: Arc<WatchStats>,
    stop: CancellationToken,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut reconnects = 0;
    let mut rotations = 0;
    let mut rejected = 0;
    let mut open = Senders { stream: true, identity: true };
    loop {
        let up = matches!(*stream.borrow_and_update(), StreamState::Live { .. });
        metrics.stream_up.set(up as i64);
        let r = stats.reconnects.load(Relaxed);
        metrics.stream_reconnects.inc_by(r.saturating_sub(reconnects));
        reconnects = r;
        let rot = stats.rotations.load(Relaxed);
        metrics.identity_rotations.inc_by(rot.saturating_sub(rotations));
        rotations = rot;
        let status = identity.borrow_and_update().clone();
        metrics
            .identity_failures
            .get_or_create(&crate::metrics::SourceLabel { source: "update".into() })
            .inc_by(status.rejected.saturating_sub(rejected));
        rejected = status.rejected;
        if let Some(t) = status.not_after {
            let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
            metrics.identity_not_after.set(secs);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = next_change(&mut stream, &mut identity, &mut open) => {}
        }
    }
}

/// Which of the mirrored values still have a sender.
struct Senders {
    stream: bool,
    identity: bool,
}

/// Resolves when the stream state or the identity status changes, or after
/// a second (the counters are read on every turn). A value whose sender is
/// gone is no longer waited on: its `changed()` would resolve at once,
/// forever, and spin the loop.
async fn next_change(stream: &mut watch::Receiver<StreamState>, identity: &mut watch::Receiver<IdentityStatus>, open: &mut Senders) {
    tokio::select! {
        r = stream.changed(), if open.stream => open.stream = r.is_ok(),
        r = identity.changed(), if open.identity => open.identity = r.is_ok(),
        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
    }
}

impl Running {
    /// Waits until every pipeline has seen its first stream.
    pub async fn ready(&self, timeout: Duration) -> bool {
        let wait = async {
            for (_, status) in &self.pipelines {
                let mut s = status.clone();
                if s.wait_for(|s| s.ready).await.is_err() {
                    return false;
                }
            }
            true
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(false)
    }

    /// Requests with work in progress, across chats.
    pub fn active(&self) -> usize {
        self.pipelines.iter().map(|(_, s)| s.borrow().active).sum()
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops intake, lets running work finish within `grace`, stops the rest.
    /// Returns whether everything finished in time.
    pub async fn stop(self, grace: Duration) -> bool {
        self.shutdown.cancel();
        let all = futures::future::join_all(self.pipeline_tasks);
        let finished = tokio::time::timeout(grace, all).await.is_ok();
        if !finished {
            error!(grace = ?grace, "work in progress did not finish in time; it resumes at the next start");
        }
        for t in self.background {
            t.abort();
        }
        finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_mirrored_value_whose_sender_is_gone_is_not_waited_on() {
        let (stream_tx, mut stream) = watch::channel(StreamState::Connecting { attempt: 0, last_error: None });
        let (identity_tx, mut identity) = watch::channel(IdentityStatus::default());
        let mut open = Senders { stream: true, identity: true };
        // A change is seen at once.
        stream_tx.send(StreamState::Connecting { attempt: 1, last_error: None }).unwrap();
        let seen = tokio::time::timeout(Duration::from_millis(500), next_change(&mut stream, &mut identity, &mut open)).await;
        assert!(seen.is_ok(), "a change wakes the mirror");
        // Both senders gone: the first turns notice, then the wait is the
        // one-second tick again, not an instant wake-up forever.
        drop((stream_tx, identity_tx));
        for _ in 0..2 {
            let _ = tokio::time::timeout(Duration::from_millis(500), next_change(&mut stream, &mut identity, &mut open)).await;
        }
        assert!(!open.stream && !open.identity);
        let woke = tokio::time::timeout(Duration::from_millis(200), next_change(&mut stream, &mut identity, &mut open)).await;
        assert!(woke.is_err(), "with no senders left the mirror waits for its tick");
    }
}
