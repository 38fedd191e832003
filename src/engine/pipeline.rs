//! One chat's pipeline: takes the watcher's feed, keeps the Access Monitoring
//! Rule cache current, and runs requests through the [`Worker`] with bounded
//! parallelism, one worker per request at a time, retrying with backoff.
//!
//! A catch-up after a (re)connect reads the chat's plugin data in one call
//! (not one per request): a listed request whose record leaves nothing to do
//! is dropped at once; only the others are queued (and read their record
//! when they run). Records left over
//! once the listing is complete belong to requests deleted while the plugin
//! was stopped or disconnected (their deletion event was never seen); each
//! one still showing a pending card is confirmed gone and resolved as
//! expired, through the same claim as a live deletion, so one replica
//! updates its cards once.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::plan::Snapshot;
use super::queue::{Offer, Outcome, Scheduler};
use super::route::Router;
use super::worker::Worker;
use crate::health::{Heartbeat, PipelineStatus};
use crate::metrics::{KindLabel, Metrics};
use crate::teleport::{Feed, TeleportClient};

/// Deleted requests are remembered this long, so a late stale event about
/// them (a catch-up listing racing the deletion) cannot re-post them.
const TOMBSTONE_TTL: Duration = Duration::from_secs(600);
/// The loop wakes at least this often, so its heartbeat shows it is alive.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// Records read in bulk at the start of a catch-up, not yet matched to a
/// listed request; `None` outside a catch-up (or when the bulk read failed:
/// requests then read their own record).
type Prefetch = Option<HashMap<String, HashMap<String, String>>>;

pub struct Pipeline {
    worker: Arc<Worker>,
    router: Arc<Router>,
    client: Arc<TeleportClient>,
    metrics: Arc<Metrics>,
    concurrency: usize,
    status: watch::Sender<PipelineStatus>,
    heartbeat: Arc<Heartbeat>,
}

impl Pipeline {
    pub fn new(
        worker: Arc<Worker>,
        router: Arc<Router>,
        client: Arc<TeleportClient>,
        metrics: Arc<Metrics>,
        concurrency: usize,
    ) -> Self {
        let (status, _) = watch::channel(PipelineStatus::default());
        Self { worker, router, client, metrics, concurrency: concurrency.max(1), status, heartbeat: Arc::default() }
    }

    /// Beats while the loop turns (at least every few seconds).
    pub fn heartbeat(&self) -> Arc<Heartbeat> {
        self.heartbeat.clone()
    }

    pub fn status(&self) -> watch::Receiver<PipelineStatus> {
        self.status.subscribe()
    }

    /// Runs until the feed ends or `shutdown` fires, then lets running work
    /// finish (callers bound that with a timeout). Queued retries are left to
    /// the next start: their state is in plugin data.
    pub async fn run(self, mut input: mpsc::Receiver<Feed>, shutdown: CancellationToken) {
        let chat = self.worker.name();
        let mut sched = Scheduler::new();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(String, Outcome)>();
        let mut running = 0usize;
        let mut draining = false;
        let mut tombstones: VecDeque<(Instant, String)> = VecDeque::new();
        let mut prefetch: Prefetch = None;
        loop {
            while !draining && running < self.concurrency {
                let Some(job) = sched.pop() else { break };
                running += 1;
                let worker = self.worker.clone();
                let done = done_tx.clone();
                tokio::spawn(async move {
                    let id = job.snapshot.id().to_string();
                    let outcome = worker.process(job.snapshot, job.attempts, job.fresh).await;
                    let _ = done.send((id, outcome));
                });
            }
            self.publish(&sched);
            self.heartbeat.beat();
            if draining && running == 0 {
                info!(chat, "pipeline stopped");
                return;
            }
            tokio::select! {
                Some((id, outcome)) = done_rx.recv() => {
                    running -= 1;
                    sched.complete(&id, outcome);
                }
                feed = input.recv(), if !draining => match feed {
                    Some(feed) => self.on_feed(feed, &mut sched, &mut tombstones, &mut prefetch).await,
                    None => draining = true,
                },
                _ = sched.timers_fired(), if !draining => {}
                _ = tokio::time::sleep(HEARTBEAT) => {}
                _ = shutdown.cancelled(), if !draining => {
                    info!(chat, running, "stopping: finishing work in progress");
                    draining = true;
                }
            }
            while tombstones.front().is_some_and(|(at, _)| at.elapsed() > TOMBSTONE_TTL) {
                let (_, id) = tombstones.pop_front().expect("checked");
                sched.forget(&id);
                self.worker.forget(&id);
            }
        }
    }

    fn publish(&self, sched: &Scheduler) {
        let active = sched.active();
        self.metrics.tracked.get_or_create(&Metrics::chat(self.worker.name())).set(active as i64);
        self.status.send_if_modified(|s| {
            let changed = s.active != active;
            s.active = active;
            changed
        });
    }

    async fn on_feed(
        &self,
        feed: Feed,
        sched: &mut Scheduler,
        tombstones: &mut VecDeque<(Instant, String)>,
        prefetch: &mut Prefetch,
    ) {
        let chat = self.worker.name();
        match feed {
            Feed::Ready { rules_watched, generation } => {
                *prefetch = match self.worker.load_all().await {
                    Ok(all) => {
                        debug!(chat, records = all.len(), "plugin data read for the catch-up");
                        Some(all)
                    }
                    Err(e) => {
                        warn!(chat, error = %e, "cannot read plugin data in bulk; each listed request reads its own");
                        None
                    }
                };
                if rules_watched {
                    self.load_rules().await;
                } else {
                    self.router.set_rules(Vec::new());
                    debug!(chat, "Access Monitoring Rules are not available to this identity; static routing only");
                }
                self.metrics.routes.get_or_create(&crate::metrics::SourceLabel { source: "access_monitoring_rules".into() })
                    .set(self.router.rule_count() as i64);
                info!(chat, generation, "ready");
                self.status.send_modify(|s| s.ready = true);
            }
            Feed::Put(r) => {
                self.metrics.events.get_or_create(&KindLabel { kind: "access_request".into() }).inc();
                // A new request straight from the stream: nobody can have
                // posted it yet, so the worker may skip reading plugin data.
                let fresh = r.state == crate::model::RequestState::Pending && r.reviews.is_empty();
                // The record read in bulk may predate this event's work.
                if let Some(p) = prefetch.as_mut() {
                    p.remove(&r.id);
                }
                self.offer(sched, r, fresh);
            }
            Feed::Listed(r) => match prefetch.as_mut() {
                Some(p) => {
                    let raw = p.remove(&r.id);
                    let snap = Snapshot::Live(r);
                    if !self.worker.has_work(&snap, raw.as_ref()) {
                        return;
                    }
                    let Snapshot::Live(r) = snap else { unreachable!("built above") };
                    self.offer(sched, r, false);
                }
                None => self.offer(sched, r, false),
            },
            Feed::Deleted(id) => {
                if let Some(p) = prefetch.as_mut() {
                    p.remove(&id);
                }
                self.metrics.events.get_or_create(&KindLabel { kind: "access_request_delete".into() }).inc();
                sched.offer(Snapshot::Deleted(id.clone()), false);
                tombstones.push_back((Instant::now(), id));
            }
            Feed::RulePut(rule) => {
                self.metrics.events.get_or_create(&KindLabel { kind: "access_monitoring_rule".into() }).inc();
                self.router.put_rule(rule);
            }
            Feed::RuleDeleted(name) => {
                self.metrics.events.get_or_create(&KindLabel { kind: "access_monitoring_rule_delete".into() }).inc();
                self.router.delete_rule(&name);
            }
            Feed::CaughtUp { listed } => {
                debug!(chat, listed, "catch-up listing fed");
                if let Some(left) = prefetch.take() {
                    self.resolve_vanished(left, sched, tombstones).await;
                }
            }
        }
    }

    /// Records whose request was not listed: requests deleted while no
    /// stream was up. Those whose cards still wait for a resolution are
    /// looked up once more (the listing may have missed a request created
    /// during it) and, when gone, handled as a deletion.
    async fn resolve_vanished(
        &self,
        left: HashMap<String, HashMap<String, String>>,
        sched: &mut Scheduler,
        tombstones: &mut VecDeque<(Instant, String)>,
    ) {
        let chat = self.worker.name();
        for (id, raw) in left {
            let snap = Snapshot::Deleted(id.clone());
            if !self.worker.has_work(&snap, Some(&raw)) {
                continue;
            }
            match self.client.access_request_exists(&id).await {
                Ok(false) => {}
                Ok(true) => continue,
                Err(s) => {
                    warn!(chat, id = %id, error = %crate::teleport::client::describe_status(&s),
                        "cannot check whether a request is gone; the next catch-up checks again");
                    continue;
                }
            }
            info!(chat, id = %id, "request was deleted while the plugin was away; resolving it as expired");
            sched.offer(snap, false);
            tombstones.push_back((Instant::now(), id));
        }
    }

    fn offer(&self, sched: &mut Scheduler, r: crate::model::AccessRequest, fresh: bool) {
        let id = r.id.clone();
        self.worker.seen(&id);
        if sched.offer(Snapshot::Live(r), fresh) == Offer::Stale {
            debug!(chat = self.worker.name(), id = %id, "ignoring an older snapshot of the request");
        }
    }

    async fn load_rules(&self) {
        let chat = self.worker.name();
        for attempt in 0..3u32 {
            match self.client.list_monitoring_rules(chat).await {
                Ok(rules) => {
                    info!(chat, rules = rules.len(), "Access Monitoring Rules loaded");
                    self.router.set_rules(rules);
                    return;
                }
                Err(s) => {
                    warn!(chat, attempt, error = %crate::teleport::client::describe_status(&s), "cannot list Access Monitoring Rules");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
            }
        }
        warn!(chat, "continuing with the rules received so far and static routing");
    }
}
