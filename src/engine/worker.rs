//! Carries out the planner's steps for one request, one chat: the I/O side of
//! the engine. Each step does its chat call, then records the result in
//! plugin data with compare-and-swap, and the planner looks again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::{Instrument, debug, error, info, info_span, warn};

use super::plan::{self, Input, Me, NOTICE_KEY, Notice, Progress, Record, Snapshot, Step, next_step, reply_key};
use super::queue::Outcome;
use super::route::{EvalContext, Router};
use crate::chat::view::web_link;
use crate::chat::{Chat, ChatError, Content, ErrorKind, MessageRef, Place, Reaction, RequestView, Status, Target};
use crate::metrics::Metrics;
use crate::model::Review;
use crate::teleport::plugin_data::{Change, PluginDataStore, RequestData, Resolution, StoreError};
use crate::teleport::{ClusterInfo, TeleportClient};

type Raw = Option<HashMap<String, String>>;
/// A role's logins (`None`: not readable) and when they were looked up.
type CachedLogins = (Option<Vec<String>>, Instant);

/// How long looked-up role logins are reused.
const ROLE_CACHE_TTL: Duration = Duration::from_secs(300);
/// Look-ups for earlier posts start this long before the claim (clock skew).
const LOOKUP_MARGIN: Duration = Duration::from_secs(300);
const MAX_STEPS: usize = 10_000;

/// Settings of a worker.
#[derive(Clone)]
pub struct WorkerConfig {
    pub me: Me,
    pub lease: Duration,
    /// First retry delay; doubles per attempt up to `max_retry`.
    pub min_retry: Duration,
    pub max_retry: Duration,
    /// Pending cards carry Approve/Deny buttons (review from this chat is on).
    pub buttons: bool,
}

impl WorkerConfig {
    pub fn new(me: Me, lease: Duration) -> Self {
        Self { me, lease, min_retry: Duration::from_millis(500), max_retry: Duration::from_secs(60), buttons: false }
    }

    pub fn with_buttons(mut self, on: bool) -> Self {
        self.buttons = on;
        self
    }
}

pub struct Worker {
    pub chat: Arc<dyn Chat>,
    store: PluginDataStore,
    client: Arc<TeleportClient>,
    router: Arc<Router>,
    cluster: ClusterInfo,
    cfg: WorkerConfig,
    metrics: Arc<Metrics>,
    /// Per request: targets / replies whose last attempt had no clear answer.
    uncertain: Mutex<HashMap<String, HashSet<String>>>,
    /// When each request was first seen, for the latency metric.
    first_seen: Mutex<HashMap<String, Instant>>,
    /// Reviews of requests, kept to render cards after the request is gone.
    reviews: Mutex<HashMap<String, Vec<Review>>>,
    logins: Mutex<HashMap<String, CachedLogins>>,
    /// Requests already reported as having no recipient.
    unrouted: Mutex<HashSet<String>>,
    /// Whether missing permission to read users was reported.
    users_unreadable_reported: AtomicBool,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

impl Worker {
    pub fn new(
        chat: Arc<dyn Chat>,
        store: PluginDataStore,
        client: Arc<TeleportClient>,
        router: Arc<Router>,
        cluster: ClusterInfo,
        cfg: WorkerConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            chat,
            store,
            client,
            router,
            cluster,
            cfg,
            metrics,
            uncertain: Mutex::default(),
            first_seen: Mutex::default(),
            reviews: Mutex::default(),
            logins: Mutex::default(),
            unrouted: Mutex::default(),
            users_unreadable_reported: AtomicBool::new(false),
        }
    }

    pub fn name(&self) -> &'static str {
        self.chat.name()
    }

    /// Notes when a request was first seen (for the latency metric).
    pub fn seen(&self, id: &str) {
        self.first_seen.lock().expect("poisoned").entry(id.to_string()).or_insert_with(Instant::now);
    }

    /// Every record of this chat's plugin, in one call.
    pub async fn load_all(&self) -> Result<HashMap<String, HashMap<String, String>>, StoreError> {
        self.store.load_all_raw().await
    }

    /// Whether `snap` with the stored `raw` record leaves anything to do
    /// (the planner's answer, no I/O). With a record read earlier the answer
    /// errs on the side of work: records only progress, so an old one shows
    /// at least as much left to do as the current one. (An old record is
    /// never a starting point for the work itself: a run reads the current
    /// record, since its first step may be a chat call.)
    pub fn has_work(&self, snap: &Snapshot, raw: Option<&HashMap<String, String>>) -> bool {
        let rec = raw.map(|m| Record::from_data(RequestData::decode(m)));
        let uncertain = self.uncertain_of(snap.id());
        let step = next_step(&Input {
            snapshot: snap,
            record: rec.as_ref(),
            me: &self.cfg.me,
            now_ms: now_ms(),
            caps: self.chat.capabilities(),
            uncertain: &uncertain,
        });
        !matches!(step, Step::Skip(_) | Step::Done)
    }

    /// Drops what is kept in memory about a request that is gone.
    pub fn forget(&self, id: &str) {
        self.first_seen.lock().expect("poisoned").remove(id);
        self.reviews.lock().expect("poisoned").remove(id);
        self.uncertain.lock().expect("poisoned").remove(id);
        self.unrouted.lock().expect("poisoned").remove(id);
    }

    /// Works on one request until it is done or must wait. `fresh`: the
    /// request was just created, so no plugin data can exist for it yet.
    pub async fn process(&self, snap: Snapshot, attempts: u32, fresh: bool) -> Outcome {
        let span = info_span!("request", id = %snap.id(), chat = self.chat.name());
        self.run(snap, attempts, fresh).instrument(span).await
    }

    async fn run(&self, snap: Snapshot, attempts: u32, fresh: bool) -> Outcome {
        let id = snap.id().to_string();
        if let Snapshot::Live(r) = &snap
            && !r.reviews.is_empty()
        {
            self.reviews.lock().expect("poisoned").insert(id.clone(), r.reviews.clone());
        }
        // For a fresh request the claim's create-if-absent write is the read:
        // if a record exists after all, the write fails and we read it then.
        let mut raw = if fresh {
            None
        } else {
            match self.store.load_raw(&id).await {
                Ok(r) => r,
                Err(e) => return self.store_failed(e, attempts),
            }
        };
        for _ in 0..MAX_STEPS {
            let rec = raw.as_ref().map(|m| Record::from_data(RequestData::decode(m)));
            let uncertain = self.uncertain_of(&id);
            let step = next_step(&Input {
                snapshot: &snap,
                record: rec.as_ref(),
                me: &self.cfg.me,
                now_ms: now_ms(),
                caps: self.chat.capabilities(),
                uncertain: &uncertain,
            });
            debug!(?step, "next step");
            let result = match (step, rec) {
                (Step::Skip(why), _) => {
                    debug!(why, "nothing to do");
                    return Outcome::Done;
                }
                (Step::Done, _) => return Outcome::Done,
                (Step::Wait { until_ms }, _) => return Outcome::Retry(self.wait_delay(until_ms, attempts)),
                (Step::Claim, _) => self.claim(&snap, attempts).await,
                (_, None) => return Outcome::Done,
                (Step::TakeOver, Some(rec)) => self.take_over(&snap, raw, rec, attempts).await,
                (Step::MarkResolved { resolution }, Some(_)) => {
                    let reason = match &snap {
                        Snapshot::Live(r) => r.resolve_reason.clone(),
                        Snapshot::Deleted(_) => String::new(),
                    };
                    info!(resolution = resolution.as_str(), "request resolved");
                    self.write(&snap, raw, attempts, move |rec| {
                        if !rec.data.resolution.is_resolved() {
                            rec.data.resolution = resolution;
                            rec.data.resolve_reason = reason.clone();
                            rec.progress.pending.clear();
                        }
                    })
                    .await
                }
                (Step::Post { target, lookup_first }, Some(rec)) => self.post(&snap, raw, rec, target, lookup_first, attempts).await,
                (Step::Reply { review, message, lookup_first }, Some(rec)) => {
                    self.reply(&snap, raw, rec, review, message, lookup_first, attempts).await
                }
                (Step::FinishReplies, Some(rec)) => {
                    let seen = rec.data.reviews_count;
                    let reviews = plan::review_count(&snap, &rec);
                    let threads = self.chat.capabilities().threads;
                    self.write(&snap, raw, attempts, move |rec| {
                        if threads {
                            if rec.data.reviews_count == seen {
                                rec.data.reviews_count = seen + 1;
                                rec.progress.replied.clear();
                            }
                        } else {
                            rec.data.reviews_count = rec.data.reviews_count.max(reviews);
                        }
                    })
                    .await
                }
                (Step::UpdateAll { fingerprint }, Some(rec)) => self.update_all(&snap, raw, rec, fingerprint, attempts).await,
                (Step::React, Some(rec)) => self.react(&snap, raw, rec, attempts).await,
                (Step::NotifyRequester, Some(rec)) => self.notify_requester(&snap, raw, rec, attempts).await,
                (Step::Release, Some(_)) => self.write(&snap, raw, attempts, |_| {}).await,
            };
            match result {
                Ok(next) => raw = next,
                Err(outcome) => return outcome,
            }
        }
        error!("request needed too many steps; retrying later");
        Outcome::Retry(self.cfg.max_retry)
    }

    /// Records a message that was sent: until the record is written, the
    /// message counts as uncertain, so a retry after a failed write (Auth
    /// unreachable, the connection cut) looks for it instead of sending it
    /// again.
    async fn record_sent(&self, id: &str, key: &str, write: impl std::future::Future<Output = Result<Raw, Outcome>>) -> Result<Raw, Outcome> {
        self.set_uncertain(id, key, true);
        let written = write.await;
        if written.is_ok() {
            self.set_uncertain(id, key, false);
        }
        written
    }

    fn uncertain_of(&self, id: &str) -> HashSet<String> {
        self.uncertain.lock().expect("poisoned").get(id).cloned().unwrap_or_default()
    }

    fn set_uncertain(&self, id: &str, key: &str, on: bool) {
        let mut u = self.uncertain.lock().expect("poisoned");
        if on {
            u.entry(id.to_string()).or_default().insert(key.to_string());
        } else if let Some(set) = u.get_mut(id) {
            set.remove(key);
            if set.is_empty() {
                u.remove(id);
            }
        }
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let exp = self.cfg.min_retry.saturating_mul(1u32 << attempts.min(16));
        let d = exp.min(self.cfg.max_retry);
        // ±20 % jitter so retries of many requests spread out.
        d.mul_f64(0.8 + rand::random::<f64>() * 0.4)
    }

    fn retry_delay(&self, attempts: u32, e: &ChatError) -> Duration {
        match e.retry_after() {
            Some(after) => after + Duration::from_millis(rand::random::<u64>() % 250),
            None => self.backoff(attempts),
        }
    }

    fn wait_delay(&self, until_ms: u64, attempts: u32) -> Duration {
        let left = Duration::from_millis(until_ms.saturating_sub(now_ms()));
        let poll = Duration::from_millis(200).saturating_mul(1u32 << attempts.min(8));
        left.min(poll).max(Duration::from_millis(50))
    }

    fn chat_retry(&self, e: &ChatError, attempts: u32) -> Outcome {
        self.metrics.retries.get_or_create(&Metrics::reason(self.chat.name(), e.reason())).inc();
        let delay = self.retry_delay(attempts, e);
        warn!(error = %e, retry_in = ?delay, "chat call failed; will retry");
        Outcome::Retry(delay)
    }

    fn store_failed(&self, e: StoreError, attempts: u32) -> Outcome {
        self.metrics.retries.get_or_create(&Metrics::reason(self.chat.name(), "teleport")).inc();
        let delay = self.backoff(attempts);
        if e.is_transient() {
            warn!(error = %e, retry_in = ?delay, "Teleport call failed; will retry");
        } else {
            error!(error = %e, retry_in = ?delay, "Teleport refused a plugin data call; will retry");
        }
        Outcome::Retry(delay)
    }

    /// Compare-and-swap write of `f` applied to the stored record. The claim
    /// is renewed when we hold it, and given up in the same write once
    /// nothing is left to do.
    async fn write(&self, snap: &Snapshot, raw: Raw, attempts: u32, f: impl Fn(&mut Record)) -> Result<Raw, Outcome> {
        let me = self.cfg.me.clone();
        let lease_ms = self.cfg.lease.as_millis() as u64;
        let caps = self.chat.capabilities();
        let uncertain = self.uncertain_of(snap.id());
        let (_, stored) = self
            .store
            .modify_known(snap.id(), raw, |cur| {
                let mut rec = Record::from_data(cur.cloned().unwrap_or_default());
                f(&mut rec);
                let now = now_ms();
                if rec.progress.owner == me.instance && rec.progress.epoch == me.epoch {
                    rec.progress.lease_until = now + lease_ms;
                    let input = Input { snapshot: snap, record: Some(&rec), me: &me, now_ms: now, caps, uncertain: &uncertain };
                    if next_step(&input) == Step::Release {
                        rec.progress.owner.clear();
                        rec.progress.epoch.clear();
                        rec.progress.lease_until = 0;
                    }
                }
                Change::Write(rec.into_data(), ())
            })
            .await
            .map_err(|e| self.store_failed(e, attempts))?;
        Ok(stored)
    }

    fn link(&self, id: &str) -> Option<String> {
        web_link(&self.cluster.proxy_public_addr, self.cluster.advanced_workflows, id)
    }

    fn view(&self, snap: &Snapshot, rec: &Record) -> RequestView {
        let resolution = if rec.data.resolution.is_resolved() { rec.data.resolution } else { snap.resolution() };
        let status = Status::from_resolution(resolution);
        match snap {
            Snapshot::Live(r) => {
                let mut v = RequestView::from_request(r, &self.cluster.cluster_name, self.link(&r.id), rec.data.logins_by_role.clone(), status);
                if v.resolve_reason.is_empty() {
                    v.resolve_reason = rec.data.resolve_reason.clone();
                }
                if v.status == Status::Pending {
                    // Buttons never on long-term requests: those are reviewed
                    // in the Web UI (Auth does not check the kind itself).
                    v.buttons = self.cfg.buttons && !v.long_term;
                    let needed = r.approvals_needed();
                    v.approvals_needed = (needed > 1 || !r.reviews.is_empty()).then_some(needed);
                }
                v
            }
            Snapshot::Deleted(id) => {
                let mut v = RequestView::from_record(id, &rec.data, &self.cluster.cluster_name, self.link(id));
                v.status = status;
                v.reviews = self.reviews.lock().expect("poisoned").get(id).cloned().unwrap_or_default();
                v
            }
        }
    }

    fn since(&self, rec: &Record) -> SystemTime {
        let since = UNIX_EPOCH + Duration::from_millis(rec.progress.since);
        since.checked_sub(LOOKUP_MARGIN).unwrap_or(UNIX_EPOCH)
    }

    /// Looks for `content` posted at `place` before an interruption. When the
    /// chat cannot say (e.g. missing history scopes), logs that posting again
    /// may duplicate it and answers `None`.
    async fn find_earlier(
        &self,
        place: Place<'_>,
        content: &Content<'_>,
        rec: &Record,
        attempts: u32,
    ) -> Result<Option<MessageRef>, Outcome> {
        match self.chat.find_posted(place, &content.marker(), self.since(rec)).await {
            Ok(found) => Ok(found),
            Err(e) if e.is_transient() => Err(self.chat_retry(&e, attempts)),
            Err(e) => {
                warn!(kind = %content.marker().kind_str(), error = %e,
                    "cannot look for a message posted before an interruption; posting again may duplicate it");
                Ok(None)
            }
        }
    }

    async fn role_logins(&self, roles: &[String]) -> BTreeMap<String, Vec<String>> {
        let mut out = BTreeMap::new();
        for role in roles {
            let cached = self.logins.lock().expect("poisoned").get(role).filter(|(_, at)| at.elapsed() < ROLE_CACHE_TTL).map(|(l, _)| l.clone());
            let logins = match cached {
                Some(l) => l,
                None => match self.client.role_logins(role).await {
                    Ok(l) => {
                        if l.is_none() {
                            debug!(role, "cannot read the role (add `role: read` to show logins)");
                        }
                        self.logins.lock().expect("poisoned").insert(role.clone(), (l.clone(), Instant::now()));
                        l
                    }
                    Err(e) => {
                        debug!(role, error = %e, "role lookup failed; logins not shown");
                        None
                    }
                },
            };
            match logins {
                Some(l) => {
                    out.insert(role.clone(), l);
                }
                // Without every role's logins, show the plain role list.
                None => return BTreeMap::new(),
            }
        }
        out
    }

    /// What Access Monitoring Rules need besides the request: the requester's
    /// traits and the labels of the requested resources, each read only when
    /// a rule uses it. Without permission to read users the traits are empty
    /// (reported once), as upstream; another failure, or any failure to list
    /// the resources (upstream makes no exception for a missing permission
    /// there), leaves the rules out of this request's routing.
    async fn eval_context(&self, req: &crate::model::AccessRequest) -> EvalContext {
        let ctx = self.traits_context(req).await;
        if !self.router.needs_resource_labels() || !req.has_resources() {
            return ctx;
        }
        let labels = match self.client.request_resource_labels(req).await {
            Ok(labels) => Ok(labels.to_vec()),
            Err(e) => {
                debug!(error = %e, "reading the labels of the requested resources failed");
                Err(e.to_string())
            }
        };
        ctx.with_resource_labels(labels)
    }

    async fn traits_context(&self, req: &crate::model::AccessRequest) -> EvalContext {
        if !self.router.needs_user_traits() {
            return EvalContext::with_traits(BTreeMap::new());
        }
        match self.client.user_traits(&req.user).await {
            Ok(Some(traits)) => EvalContext::with_traits(traits),
            Ok(None) => {
                if !self.users_unreadable_reported.swap(true, Ordering::Relaxed) {
                    warn!("cannot read users: conditions on user.traits see no traits; add `user: read` (e.g. the preset access-plugin role)");
                }
                EvalContext::with_traits(BTreeMap::new())
            }
            Err(e) => {
                debug!(error = %e, "reading the requester's traits failed");
                EvalContext::unavailable(format!("reading the requester's traits failed ({:?})", e.code()))
            }
        }
    }

    /// Resolves recipients and creates the record with the targets to post to.
    async fn claim(&self, snap: &Snapshot, attempts: u32) -> Result<Raw, Outcome> {
        let Snapshot::Live(req) = snap else { return Err(Outcome::Done) };
        let ctx = self.eval_context(req).await;
        let routing = self.router.route(req, &ctx);
        if let Some(route) = &routing.suppressed_by {
            info!(route = %route, "request silenced by a route with suppress: true");
            return Err(Outcome::Done);
        }
        let mut targets: Vec<String> = Vec::new();
        for recipient in &routing.recipients {
            match self.chat.resolve(recipient).await {
                Ok(t) => {
                    if !targets.contains(&t.0) {
                        targets.push(t.0);
                    }
                }
                Err(e) if e.is_transient() => return Err(self.chat_retry(&e, attempts)),
                Err(e) if e.kind == ErrorKind::NotFound => warn!(recipient = %recipient, error = %e, "recipient not found; skipped"),
                Err(e) => {
                    self.metrics.failures.get_or_create(&Metrics::reason(self.chat.name(), "recipient")).inc();
                    error!(recipient = %recipient, error = %e, "recipient cannot be used; skipped");
                }
            }
        }
        if targets.is_empty() {
            if self.unrouted.lock().expect("poisoned").insert(req.id.clone()) {
                warn!(roles = ?req.roles, source = routing.source,
                    "no recipient for this request: add a role_to_recipients entry (or \"*\"), an Access Monitoring Rule or an AccessRequestRoute");
            }
            return Err(Outcome::Done);
        }
        let logins = self.role_logins(&req.roles).await;
        let now = now_ms();
        let data = RequestData {
            user: req.user.clone(),
            roles: req.roles.clone(),
            // Teleport's own string form, as the official plugins store it;
            // constraints are shown on the cards only.
            resources: req.requested_resources().map(|r| r.id.to_string()).collect(),
            request_reason: req.request_reason.clone(),
            system_annotations: req.system_annotations.clone(),
            logins_by_role: logins,
            max_duration: req.max_duration.map(crate::teleport::convert::rfc3339).unwrap_or_default(),
            ..Default::default()
        };
        let progress = Progress {
            owner: self.cfg.me.instance.clone(),
            epoch: self.cfg.me.epoch.clone(),
            lease_until: now + self.cfg.lease.as_millis() as u64,
            since: now,
            pending: targets.clone(),
            ..Default::default()
        };
        let new = Record { data, progress }.into_data();
        let (created, stored) = self
            .store
            .modify_known(&req.id, None, |cur| match cur {
                None => Change::Write(new.clone(), true),
                Some(_) => Change::Keep(false),
            })
            .await
            .map_err(|e| self.store_failed(e, attempts))?;
        if created {
            info!(targets = ?targets, source = routing.source, "claimed request; posting");
        } else {
            debug!("another writer created the record first");
        }
        Ok(stored)
    }

    async fn take_over(&self, snap: &Snapshot, raw: Raw, rec: Record, attempts: u32) -> Result<Raw, Outcome> {
        let id = snap.id();
        info!(previous_owner = %rec.progress.owner, "taking over the claim");
        // Whatever the previous owner was doing may or may not have happened.
        for t in &rec.progress.pending {
            self.set_uncertain(id, t, true);
        }
        for m in 0..rec.data.messages.len() {
            self.set_uncertain(id, &reply_key(rec.data.reviews_count, m), true);
        }
        if rec.progress.notice == Notice::Due {
            self.set_uncertain(id, NOTICE_KEY, true);
        }
        let me = self.cfg.me.clone();
        self.write(snap, raw, attempts, move |rec| {
            rec.progress.owner = me.instance.clone();
            rec.progress.epoch = me.epoch.clone();
        })
        .await
    }

    async fn post(&self, snap: &Snapshot, raw: Raw, rec: Record, target: String, lookup_first: bool, attempts: u32) -> Result<Raw, Outcome> {
        let id = snap.id().to_string();
        let view = self.view(snap, &rec);
        let content = Content::Card(&view);
        let t = Target(target.clone());
        let fp = plan::fingerprint(plan::status_of(snap, &rec), plan::review_count(snap, &rec), plan::resolve_reason(snap, &rec));
        if lookup_first && let Some(m) = self.find_earlier(Place::Target(&t), &content, &rec, attempts).await? {
            info!(target = %t, "card was already posted before an interruption; recording it");
            let key = target.clone();
            return self.record_sent(&id, &key, self.write(snap, raw, attempts, record_post(target, m, fp))).await;
        }
        match self.chat.post(&t, content).await {
            Ok(m) => {
                self.metrics.posted.get_or_create(&Metrics::chat(self.chat.name())).inc();
                if let Some(first) = self.first_seen.lock().expect("poisoned").get(&id) {
                    self.metrics.latency.get_or_create(&Metrics::chat(self.chat.name())).observe(first.elapsed().as_secs_f64());
                }
                debug!(target = %t, message = %m.message_id, "card posted");
                let key = target.clone();
                self.record_sent(&id, &key, self.write(snap, raw, attempts, record_post(target, m, fp))).await
            }
            Err(e) if e.is_transient() => {
                if e.maybe_applied {
                    self.set_uncertain(&id, &target, true);
                }
                Err(self.chat_retry(&e, attempts))
            }
            Err(e) => {
                self.metrics.failures.get_or_create(&Metrics::reason(self.chat.name(), e.reason())).inc();
                error!(recipient = %t, error = %e, "cannot post the request to this recipient; giving up on it");
                self.write(snap, raw, attempts, move |rec| {
                    rec.progress.pending.retain(|p| *p != target);
                    if !rec.progress.failed.contains(&target) {
                        rec.progress.failed.push(target.clone());
                    }
                })
                .await
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn reply(
        &self,
        snap: &Snapshot,
        raw: Raw,
        rec: Record,
        review: usize,
        message: usize,
        lookup_first: bool,
        attempts: u32,
    ) -> Result<Raw, Outcome> {
        let id = snap.id().to_string();
        let key = reply_key(review, message);
        let parent = rec.data.messages[message].clone();
        let view = self.view(snap, &rec);
        let content = Content::Review(&view, review);
        let done = move |rec: &mut Record| {
            if rec.data.reviews_count == review && !rec.progress.replied.contains(&message) {
                rec.progress.replied.push(message);
            }
        };
        if lookup_first && self.find_earlier(Place::Thread(&parent), &content, &rec, attempts).await?.is_some() {
            return self.record_sent(&id, &key, self.write(snap, raw, attempts, done)).await;
        }
        match self.chat.reply(&parent, content).await {
            Ok(_) => {
                self.metrics.replies.get_or_create(&Metrics::chat(self.chat.name())).inc();
                self.record_sent(&id, &key, self.write(snap, raw, attempts, done)).await
            }
            Err(e) if e.is_transient() => {
                if e.maybe_applied {
                    self.set_uncertain(&id, &key, true);
                }
                Err(self.chat_retry(&e, attempts))
            }
            Err(e) => {
                self.metrics.failures.get_or_create(&Metrics::reason(self.chat.name(), e.reason())).inc();
                warn!(channel = %parent.channel_id, error = %e, "cannot reply in the card's thread; skipping this reply");
                self.write(snap, raw, attempts, done).await
            }
        }
    }

    async fn update_all(&self, snap: &Snapshot, raw: Raw, rec: Record, fingerprint: String, attempts: u32) -> Result<Raw, Outcome> {
        let view = self.view(snap, &rec);
        for m in &rec.data.messages {
            match self.chat.update(m, Content::Card(&view)).await {
                Ok(()) => {
                    self.metrics.updated.get_or_create(&Metrics::chat(self.chat.name())).inc();
                }
                Err(e) if e.is_transient() => return Err(self.chat_retry(&e, attempts)),
                Err(e) if e.kind == ErrorKind::Gone => warn!(channel = %m.channel_id, message = %m.message_id, "card was deleted; not updated"),
                Err(e) => {
                    self.metrics.failures.get_or_create(&Metrics::reason(self.chat.name(), e.reason())).inc();
                    error!(channel = %m.channel_id, error = %e, "cannot update the card");
                }
            }
        }
        self.write(snap, raw, attempts, move |rec| rec.progress.rendered = fingerprint.clone()).await
    }

    async fn react(&self, snap: &Snapshot, raw: Raw, rec: Record, attempts: u32) -> Result<Raw, Outcome> {
        let reaction = if rec.data.resolution == Resolution::Approved { Reaction::Approved } else { Reaction::Denied };
        for m in &rec.data.messages {
            match self.chat.react(m, reaction).await {
                Ok(()) => {}
                Err(e) if e.is_transient() => return Err(self.chat_retry(&e, attempts)),
                Err(e) => warn!(channel = %m.channel_id, error = %e, "cannot add the reaction"),
            }
        }
        self.write(snap, raw, attempts, |rec| rec.progress.reacted = true).await
    }

    async fn notify_requester(&self, snap: &Snapshot, raw: Raw, rec: Record, attempts: u32) -> Result<Raw, Outcome> {
        let id = snap.id().to_string();
        let skip = |rec: &mut Record| rec.progress.notice = Notice::Skipped;
        let target = match self.chat.requester_target(&rec.data.user).await {
            Ok(Some(t)) => t,
            Ok(None) => {
                debug!(user = %rec.data.user, "no direct message can be opened for the requester");
                return self.write(snap, raw, attempts, skip).await;
            }
            Err(e) if e.is_transient() => return Err(self.chat_retry(&e, attempts)),
            Err(e) => {
                warn!(user = %rec.data.user, error = %e, "cannot reach the requester");
                return self.write(snap, raw, attempts, skip).await;
            }
        };
        let view = self.view(snap, &rec);
        let content = Content::RequesterNotice(&view);
        let sent = |rec: &mut Record| rec.progress.notice = Notice::Sent;
        if self.uncertain_of(&id).contains(NOTICE_KEY)
            && self.find_earlier(Place::Target(&target), &content, &rec, attempts).await?.is_some()
        {
            return self.record_sent(&id, NOTICE_KEY, self.write(snap, raw, attempts, sent)).await;
        }
        match self.chat.post(&target, content).await {
            Ok(_) => {
                self.metrics.notices.get_or_create(&Metrics::chat(self.chat.name())).inc();
                info!(user = %rec.data.user, "requester notified");
                self.record_sent(&id, NOTICE_KEY, self.write(snap, raw, attempts, sent)).await
            }
            Err(e) if e.is_transient() => {
                if e.maybe_applied {
                    self.set_uncertain(&id, NOTICE_KEY, true);
                }
                Err(self.chat_retry(&e, attempts))
            }
            Err(e) => {
                warn!(user = %rec.data.user, error = %e, "cannot notify the requester");
                self.write(snap, raw, attempts, skip).await
            }
        }
    }
}

/// Records a posted card: add the message, drop the target from `pending`.
fn record_post(target: String, m: MessageRef, fingerprint: String) -> impl Fn(&mut Record) {
    move |rec: &mut Record| {
        if !rec.data.messages.contains(&m) {
            let first = rec.data.messages.is_empty();
            rec.data.messages.push(m.clone());
            if first {
                rec.progress.rendered = fingerprint.clone();
            } else if rec.progress.rendered != fingerprint {
                // This card shows something else than the others: update all.
                rec.progress.rendered.clear();
            }
        }
        rec.progress.pending.retain(|p| *p != target);
    }
}
