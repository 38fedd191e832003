//! A Teleport Auth simulator: a tonic gRPC server over mutual TLS that serves
//! the calls the plugin makes, from an in-memory store with Teleport's
//! semantics (plugin-data compare-and-swap, paginated listing with inclusive
//! start keys, INIT-first watch streams with partial success, ResourceHeader
//! deletes), Auth's client version policy on every call
//! ([`crate::version_policy`]), and the official plugins' side of shared
//! plugin data ([`TeleportSim::official_update`]). A control API creates,
//! reviews, resolves and expires requests,
//! and injects faults: dropped streams and connections, refused connections,
//! delays, UNIMPLEMENTED methods, one-off errors, calls applied whose answer
//! is lost with their connection, and watch streams that repeat and reorder
//! Puts ([`disorder`]).
//!
//! Users, roles and `teleport.users.v1.UsersService` live in [`users`];
//! `SubmitAccessReview` with Auth's review rules (on-behalf reviews for a
//! plugin, thresholds) in [`review`]. The caller of a call is the user named
//! by its client certificate (the common name, as Auth reads it).

mod disorder;
mod review;
mod users;

pub use disorder::WatchDisorder;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;
use futures::Stream;
use std::future::Future;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;
use tonic::{Request, Response, Status};

use crate::pki::{ClusterPki, IssuedIdentity};
use crate::access::{self, AccessRequestExt};
use crate::{official_plugin, version_policy};
use teleport_plugin_proto::proto::{self, auth_service_server as auth_srv};
use teleport_plugin_proto::teleport::accessmonitoringrules::v1 as amr;
use teleport_plugin_proto::teleport::accessmonitoringrules::v1::access_monitoring_rules_service_server as amr_srv;
use teleport_plugin_proto::teleport::users::v1::users_service_server as users_srv;
use teleport_plugin_proto::types;
use users::{SimRole, SimUser};

mod resources;
pub use resources::SimResource;

/// Knobs fixed at start.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub cluster_name: String,
    pub server_version: String,
    pub proxy_public_addr: String,
    /// Enterprise "advanced access workflows": plugins link to the web UI.
    pub advanced_workflows: bool,
    /// Events buffered per watcher before it is closed as too slow (Teleport
    /// closes lagging watchers too).
    pub watcher_buffer: usize,
    pub bind: SocketAddr,
    /// Turns the client version policy off, as
    /// `TELEPORT_UNSTABLE_ALLOW_OLD_CLIENTS=yes` does on a real Auth server
    /// (see [`crate::version_policy`]).
    pub allow_old_clients: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            cluster_name: "sim.example.com".into(),
            server_version: "17.4.2".into(),
            proxy_public_addr: "teleport.sim.example.com:443".into(),
            advanced_workflows: true,
            watcher_buffer: 65_536,
            bind: "127.0.0.1:0".parse().expect("valid address"),
            allow_old_clients: false,
        }
    }
}

type PluginEntries = HashMap<String, HashMap<String, String>>;

#[derive(Default)]
struct Store {
    requests: BTreeMap<String, types::AccessRequestV3>,
    /// (kind, resource) → plugin → data. Survives request deletion.
    plugin_data: HashMap<(String, String), PluginEntries>,
    roles: HashMap<String, SimRole>,
    /// Sorted by name: `ListUsers` pages in this order.
    users: BTreeMap<String, SimUser>,
    rules: BTreeMap<String, amr::AccessMonitoringRule>,
}

#[derive(Default)]
struct Faults {
    refuse_until: Option<Instant>,
    delay: Duration,
    unimplemented: HashSet<String>,
    fail_next: HashMap<String, VecDeque<Status>>,
    rejected_kinds: HashSet<String>,
    deny_roles: bool,
    deny_users: bool,
    /// `ListUsers` ignores `filter.Traits`, as servers that predate it do.
    ignore_user_trait_filter: bool,
    /// `SubmitAccessReview` knows neither `SubmittedBy` nor the on-behalf flag.
    no_on_behalf_reviews: bool,
    /// Method → calls still to apply and then answer by cutting the connection.
    cut_after_apply: HashMap<String, u32>,
    /// How watch streams opened from now on misbehave.
    disorder: Option<WatchDisorder>,
}

struct Inner {
    cfg: SimConfig,
    pki: ClusterPki,
    store: Mutex<Store>,
    faults: Mutex<Faults>,
    calls: Mutex<HashMap<String, u64>>,
    events: broadcast::Sender<proto::Event>,
    /// Cancelled to drop every open watch stream.
    streams: Mutex<CancellationToken>,
    /// Cancelled to drop every open connection.
    connections: Mutex<CancellationToken>,
    watchers: std::sync::atomic::AtomicUsize,
    /// When each created request's first Put event was emitted.
    emitted: Mutex<HashMap<String, Instant>>,
    /// When each watch stream sent INIT, and to which client certificate.
    inits: Mutex<Vec<(Instant, String)>>,
    /// Oldest client version accepted; `None` when the policy is off.
    min_client: Option<version_policy::Version>,
    /// Calls refused by the version policy, with the version they announced.
    version_refusals: Mutex<Vec<version_policy::Refusal>>,
    /// Nodes, apps and databases for `ListResources` ([`resources`]).
    resources: Mutex<resources::Resources>,
    /// Method → calls applied whose connection was then cut.
    cut_calls: Mutex<HashMap<String, u64>>,
    /// Puts sent twice, and Puts sent after newer events of their request.
    duplicated_puts: std::sync::atomic::AtomicU64,
    stale_puts: std::sync::atomic::AtomicU64,
}

/// Handle to a running simulator. Cheap to clone; the server stops when
/// [`TeleportSim::shutdown`] is called or the runtime ends.
#[derive(Clone)]
pub struct TeleportSim {
    inner: Arc<Inner>,
    addr: SocketAddr,
    shutdown: CancellationToken,
}

impl TeleportSim {
    pub async fn start(cfg: SimConfig) -> Result<Self> {
        let pki = ClusterPki::new(&cfg.cluster_name)?;
        let (events, _) = broadcast::channel(cfg.watcher_buffer.max(16));
        let min_client =
            if cfg.allow_old_clients { None } else { version_policy::min_client_version(&cfg.server_version) };
        let inner = Arc::new(Inner {
            pki,
            store: Mutex::default(),
            faults: Mutex::default(),
            calls: Mutex::default(),
            events,
            streams: Mutex::new(CancellationToken::new()),
            connections: Mutex::new(CancellationToken::new()),
            watchers: Default::default(),
            emitted: Mutex::default(),
            inits: Mutex::default(),
            min_client,
            version_refusals: Mutex::default(),
            resources: Mutex::default(),
            cut_calls: Mutex::default(),
            duplicated_puts: Default::default(),
            stale_puts: Default::default(),
            cfg,
        });
        let listener = TcpListener::bind(inner.cfg.bind).await?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let acceptor = tls_acceptor(&inner.pki)?;
        let (conn_tx, conn_rx) = mpsc::channel::<std::io::Result<SimIo>>(64);
        tokio::spawn(accept_loop(listener, acceptor, inner.clone(), conn_tx, shutdown.clone()));
        let incoming = tokio_stream::wrappers::ReceiverStream::new(conn_rx);
        let svc = Service(inner.clone());
        let policy = VersionPolicy(inner.clone());
        let server = tonic::transport::Server::builder()
            .add_service(auth_srv::AuthServiceServer::with_interceptor(svc.clone(), policy.clone()))
            .add_service(amr_srv::AccessMonitoringRulesServiceServer::with_interceptor(svc.clone(), policy.clone()))
            .add_service(users_srv::UsersServiceServer::with_interceptor(svc, policy))
            .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned());
        tokio::spawn(async move {
            if let Err(e) = server.await {
                tracing::warn!(error = %e, "Teleport simulator stopped with an error");
            }
        });
        Ok(Self { inner, addr, shutdown })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn cluster_name(&self) -> &str {
        &self.inner.cfg.cluster_name
    }

    pub fn pki(&self) -> &ClusterPki {
        &self.inner.pki
    }

    /// An identity for the plugin, valid for `ttl`.
    pub fn issue_identity(&self, user: &str, ttl: Duration) -> Result<IssuedIdentity> {
        self.inner.pki.issue_identity(user, ttl)
    }

    pub fn shutdown(&self) {
        self.shutdown.cancel();
        self.drop_connections();
    }

    // ---- access requests -------------------------------------------------

    /// Creates a pending request as Auth does: assigns an id when empty, sets
    /// the state to PENDING, and fills the creation time, the request's TTL
    /// (`Metadata.Expires`) and the access expiry (`Spec.Expires`) when unset.
    pub fn create_request(&self, mut req: types::AccessRequestV3) -> types::AccessRequestV3 {
        if req.id().is_empty() {
            req.metadata_mut().name = uuid::Uuid::new_v4().to_string();
        }
        let now = SystemTime::now();
        let spec = req.spec_mut();
        spec.state = types::RequestState::Pending as i32;
        // Auth's request validator always leaves thresholds on a request.
        access::default_thresholds(spec);
        if access::is_unset(spec.created.as_ref()) {
            spec.created = Some(access::timestamp(now));
        }
        if access::is_unset(spec.expires.as_ref()) {
            spec.expires = Some(access::timestamp(now + access::DEFAULT_ACCESS_TTL));
        }
        let meta = req.metadata_mut();
        if access::is_unset(meta.expires.as_ref()) {
            meta.expires = Some(access::timestamp(now + access::DEFAULT_REQUEST_TTL));
        }
        self.inner.put_request(req.clone());
        self.inner.emitted.lock().expect("poisoned").insert(req.id().to_string(), Instant::now());
        req
    }

    /// When the Put event of a request created here was emitted.
    pub fn emitted_at(&self, id: &str) -> Option<Instant> {
        self.inner.emitted.lock().expect("poisoned").get(id).copied()
    }

    /// Every watch INIT sent so far: when, and to which client certificate.
    pub fn watch_inits(&self) -> Vec<(Instant, String)> {
        self.inner.inits.lock().expect("poisoned").clone()
    }

    /// Shorthand: a pending request for `roles` by `user` with a reason.
    pub fn request(&self, user: &str, roles: &[&str], reason: &str) -> types::AccessRequestV3 {
        let mut r = access::new_request(user, roles);
        r.spec_mut().request_reason = reason.into();
        self.create_request(r)
    }

    pub fn get_request(&self, id: &str) -> Option<types::AccessRequestV3> {
        self.inner.store.lock().expect("poisoned").requests.get(id).cloned()
    }

    /// Adds a review as an administrator would, without any permission check
    /// and without resolving the request. The review counts toward the
    /// thresholds whose filter matches the author's roles.
    pub fn review(&self, id: &str, author: &str, approve: bool, reason: &str) -> Option<types::AccessRequestV3> {
        let roles = self.user_roles(author);
        self.inner.update_request(id, |r| {
            let mut review = access::review(author, approve, reason);
            review.threshold_indexes = review::matching_thresholds(&r.spec_mut().thresholds, &roles);
            r.spec_mut().reviews.push(review);
        })
    }

    pub fn approve(&self, id: &str, reason: &str) -> Option<types::AccessRequestV3> {
        self.resolve(id, types::RequestState::Approved, reason)
    }

    pub fn deny(&self, id: &str, reason: &str) -> Option<types::AccessRequestV3> {
        self.resolve(id, types::RequestState::Denied, reason)
    }

    /// Promotes the request to an Access List (Teleport Identity Governance).
    pub fn promote(&self, id: &str, access_list_title: &str) -> Option<types::AccessRequestV3> {
        self.inner.update_request(id, |r| {
            let spec = r.spec_mut();
            spec.state = types::RequestState::Promoted as i32;
            spec.access_list = Some(types::PromotedAccessList {
                name: uuid::Uuid::new_v4().to_string(),
                title: access_list_title.into(),
            });
        })
    }

    pub fn resolve(&self, id: &str, state: types::RequestState, reason: &str) -> Option<types::AccessRequestV3> {
        self.inner.update_request(id, |r| {
            let spec = r.spec_mut();
            spec.state = state as i32;
            spec.resolve_reason = reason.into();
        })
    }

    /// Deletes the request, as Teleport does when it expires.
    pub fn expire(&self, id: &str) -> bool {
        self.inner.delete_request(id)
    }

    pub fn requests(&self) -> Vec<types::AccessRequestV3> {
        self.inner.store.lock().expect("poisoned").requests.values().cloned().collect()
    }

    // ---- roles, rules, plugin data ---------------------------------------

    /// Sets the allowed logins of role `name` (created if absent; its review
    /// rules are kept).
    pub fn set_role(&self, name: &str, logins: &[&str]) {
        self.edit_role(name, |r| r.logins = strings(logins));
    }

    /// Sets `allow.review_requests.roles` of role `name` (created if absent):
    /// its holders may review requests for these roles (`*` globs). An empty
    /// list takes the review rights away.
    pub fn allow_review(&self, role: &str, reviewable: &[&str]) {
        self.edit_role(role, |r| r.review_roles = strings(reviewable));
    }

    /// Sets `allow.review_requests.submit_for_users` of role `name` (created
    /// if absent): its holders (the plugin's identity) may submit reviews on
    /// behalf of these users (`*` globs; `["*"]` as the `access-plugin-with-review`
    /// preset). Give the role to the plugin's user with [`Self::put_user`].
    pub fn set_submit_for_users(&self, role: &str, users: &[&str]) {
        self.edit_role(role, |r| r.submit_for_users = strings(users));
    }

    fn edit_role(&self, name: &str, f: impl FnOnce(&mut SimRole)) {
        f(self.inner.store.lock().expect("poisoned").roles.entry(name.into()).or_default());
    }

    /// Creates or replaces the user `name` with `traits`, keeping the roles
    /// it has.
    pub fn set_user(&self, name: &str, traits: &[(&str, &[&str])]) {
        let mut s = self.inner.store.lock().expect("poisoned");
        s.users.entry(name.into()).or_default().traits = trait_map(traits);
    }

    /// Creates or replaces the user `name` with `roles` and `traits`.
    pub fn put_user(&self, name: &str, roles: &[&str], traits: &[(&str, &[&str])]) {
        let user = SimUser { roles: strings(roles), traits: trait_map(traits) };
        self.inner.store.lock().expect("poisoned").users.insert(name.into(), user);
    }

    fn user_roles(&self, name: &str) -> Vec<String> {
        self.inner.store.lock().expect("poisoned").users.get(name).map(|u| u.roles.clone()).unwrap_or_default()
    }

    /// Creates or replaces an Access Monitoring Rule (see
    /// [`access::monitoring_rule`]) and announces it.
    pub fn put_rule(&self, rule: amr::AccessMonitoringRule) {
        let mut s = self.inner.store.lock().expect("poisoned");
        let name = rule.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
        let ev = event(proto::Operation::Put, proto::event::Resource::AccessMonitoringRule(rule.clone()));
        s.rules.insert(name, rule);
        let _ = self.inner.events.send(ev);
    }

    pub fn delete_rule(&self, name: &str) {
        let mut s = self.inner.store.lock().expect("poisoned");
        if s.rules.remove(name).is_some() {
            let _ = self.inner.events.send(header_delete("access_monitoring_rule", "v1", name));
        }
    }

    /// The data `plugin` stored for request `id`.
    pub fn plugin_data(&self, id: &str, plugin: &str) -> Option<HashMap<String, String>> {
        let s = self.inner.store.lock().expect("poisoned");
        s.plugin_data.get(&("access_request".to_string(), id.to_string()))?.get(plugin).cloned()
    }

    /// Writes plugin data directly (e.g. to stage what another plugin left).
    pub fn set_plugin_data(&self, id: &str, plugin: &str, data: HashMap<String, String>) {
        let mut s = self.inner.store.lock().expect("poisoned");
        s.plugin_data
            .entry(("access_request".to_string(), id.to_string()))
            .or_default()
            .insert(plugin.into(), data);
    }

    /// Acts as the official plugin creating its record (`Create` of its
    /// compare-and-swap helper): refused when data exists.
    pub fn official_create(&self, id: &str, plugin: &str, data: &official_plugin::OfficialData) -> Result<(), Status> {
        if self.plugin_data(id, plugin).is_some() {
            return Err(Status::already_exists("plugin data already exists"));
        }
        self.official_write(id, plugin, data, &official_plugin::OfficialData::default())
    }

    /// Acts as the official plugin's next write on the record of `plugin`:
    /// decode as its Go code does, let `change` modify a copy, then write with
    /// `expect` = the Go re-encoding of what was decoded. Returns the record
    /// written. A record that does not survive decode → encode fails here with
    /// FAILED_PRECONDITION, as every retry of the official plugin would.
    pub fn official_update(
        &self,
        id: &str,
        plugin: &str,
        change: impl FnOnce(&mut official_plugin::OfficialData),
    ) -> Result<official_plugin::OfficialData, Status> {
        let stored = self.plugin_data(id, plugin).ok_or_else(|| Status::not_found("plugin data entry not found"))?;
        let old = official_plugin::decode(&stored).map_err(|e| Status::unknown(format!("decoding plugin data: {e}")))?;
        let mut new = old.clone();
        change(&mut new);
        self.official_write(id, plugin, &new, &old)?;
        Ok(new)
    }

    fn official_write(
        &self,
        id: &str,
        plugin: &str,
        new: &official_plugin::OfficialData,
        old: &official_plugin::OfficialData,
    ) -> Result<(), Status> {
        self.inner.update_plugin_data(types::PluginDataUpdateParams {
            kind: "access_request".into(),
            resource: id.into(),
            plugin: plugin.into(),
            set: official_plugin::encode(new),
            expect: official_plugin::encode(old),
        })
    }

    // ---- fault injection ---------------------------------------------------

    /// Ends every open watch stream with UNAVAILABLE.
    pub fn drop_streams(&self) {
        let mut t = self.inner.streams.lock().expect("poisoned");
        t.cancel();
        *t = CancellationToken::new();
    }

    /// Cuts every open TCP connection (like an Auth restart).
    pub fn drop_connections(&self) {
        let mut t = self.inner.connections.lock().expect("poisoned");
        t.cancel();
        *t = CancellationToken::new();
    }

    /// Refuses new connections for `d` (accepted sockets are closed at once).
    pub fn refuse_connections_for(&self, d: Duration) {
        self.inner.faults.lock().expect("poisoned").refuse_until = Some(Instant::now() + d);
    }

    /// Delays every unary call.
    pub fn set_delay(&self, d: Duration) {
        self.inner.faults.lock().expect("poisoned").delay = d;
    }

    /// Makes `method` (e.g. "ListAccessRequests") answer UNIMPLEMENTED.
    pub fn set_unimplemented(&self, method: &str, on: bool) {
        let mut f = self.inner.faults.lock().expect("poisoned");
        if on {
            f.unimplemented.insert(method.into());
        } else {
            f.unimplemented.remove(method);
        }
    }

    /// The next call of `method` fails with `status` (queued, one per call).
    pub fn fail_next(&self, method: &str, status: Status) {
        self.inner.faults.lock().expect("poisoned").fail_next.entry(method.into()).or_default().push_back(status);
    }

    /// The next `n` calls of `method` that succeed are applied, and then
    /// their connection is cut before the answer is sent: the client sees a
    /// transport error for a call that took effect (and every other call and
    /// stream on that connection fails too). Supported for
    /// `UpdatePluginData` and `SubmitAccessReview`.
    pub fn cut_after_apply(&self, method: &str, n: u32) {
        assert!(CUTTABLE.contains(&method), "cut_after_apply supports {CUTTABLE:?}, not {method}");
        *self.inner.faults.lock().expect("poisoned").cut_after_apply.entry(method.into()).or_default() += n;
    }

    /// Calls of `method` applied and then answered by cutting the connection.
    pub fn cut_calls(&self, method: &str) -> u64 {
        self.inner.cut_calls.lock().expect("poisoned").get(method).copied().unwrap_or(0)
    }

    /// Watch streams opened from now on repeat and reorder access-request
    /// Puts as `d` says (`None`: in order, once each).
    pub fn set_watch_disorder(&self, d: Option<WatchDisorder>) {
        self.inner.faults.lock().expect("poisoned").disorder = d;
    }

    /// Puts sent twice, and Puts sent after newer events of their request,
    /// so far.
    pub fn disorder_counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::SeqCst;
        (self.inner.duplicated_puts.load(SeqCst), self.inner.stale_puts.load(SeqCst))
    }

    /// Watch requests for `kind` are refused (partial success drops it).
    pub fn reject_watch_kind(&self, kind: &str) {
        self.inner.faults.lock().expect("poisoned").rejected_kinds.insert(kind.into());
    }

    /// GetRole answers PERMISSION_DENIED.
    pub fn deny_role_reads(&self, on: bool) {
        self.inner.faults.lock().expect("poisoned").deny_roles = on;
    }

    /// Calls refused so far by the client version policy.
    pub fn version_refusals(&self) -> Vec<version_policy::Refusal> {
        self.inner.version_refusals.lock().expect("poisoned").clone()
    }

    /// GetUser and ListUsers (both services) answer PERMISSION_DENIED (the
    /// plugin's role lacks `user: read`).
    pub fn deny_user_reads(&self, on: bool) {
        self.inner.faults.lock().expect("poisoned").deny_users = on;
    }

    /// `ListUsers` ignores the trait filter and returns every user (search
    /// keywords still apply), as Auth servers that predate the filter do:
    /// they skip the unknown field.
    pub fn ignore_user_trait_filter(&self, on: bool) {
        self.inner.faults.lock().expect("poisoned").ignore_user_trait_filter = on;
    }

    /// `SubmitAccessReview` as on Auth servers without on-behalf reviews
    /// (before Teleport 18.11, per upstream's docs backport): fields 11 and 12
    /// of the review are unknown and skipped, so a review for another author
    /// is refused as one written by the caller.
    pub fn without_on_behalf_reviews(&self, on: bool) {
        self.inner.faults.lock().expect("poisoned").no_on_behalf_reviews = on;
    }

    /// Number of calls of `method` received so far.
    pub fn calls(&self, method: &str) -> u64 {
        self.inner.calls.lock().expect("poisoned").get(method).copied().unwrap_or(0)
    }

    /// Watch streams currently open.
    pub fn active_watchers(&self) -> usize {
        self.inner.watchers.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until `f` holds, polling briefly; false on timeout.
    pub async fn wait_until(&self, timeout: Duration, mut f: impl FnMut(&Self) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if f(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn trait_map(traits: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    traits.iter().map(|(k, v)| (k.to_string(), strings(v))).collect()
}

fn event(op: proto::Operation, resource: proto::event::Resource) -> proto::Event {
    proto::Event { r#type: op as i32, resource: Some(resource) }
}

fn header_delete(kind: &str, version: &str, name: &str) -> proto::Event {
    event(
        proto::Operation::Delete,
        proto::event::Resource::ResourceHeader(types::ResourceHeader {
            kind: kind.into(),
            sub_kind: String::new(),
            version: version.into(),
            metadata: Some(types::Metadata { name: name.into(), namespace: "default".into(), ..Default::default() }),
        }),
    )
}

impl Inner {
    /// Stores and announces a request; the lock orders events like writes.
    fn put_request(&self, req: types::AccessRequestV3) {
        let mut s = self.store.lock().expect("poisoned");
        let ev = event(proto::Operation::Put, proto::event::Resource::AccessRequest(req.clone()));
        s.requests.insert(req.id().to_string(), req);
        let _ = self.events.send(ev);
    }

    fn update_request(
        &self,
        id: &str,
        f: impl FnOnce(&mut types::AccessRequestV3),
    ) -> Option<types::AccessRequestV3> {
        let mut s = self.store.lock().expect("poisoned");
        let r = s.requests.get_mut(id)?;
        f(r);
        let r = r.clone();
        let _ = self.events.send(event(proto::Operation::Put, proto::event::Resource::AccessRequest(r.clone())));
        Some(r)
    }

    fn delete_request(&self, id: &str) -> bool {
        let mut s = self.store.lock().expect("poisoned");
        if s.requests.remove(id).is_none() {
            return false;
        }
        let _ = self.events.send(header_delete("access_request", "v3", id));
        true
    }

    /// UpdatePluginData as Auth does it: every `expect` value must equal the
    /// stored one (absent counts as `""`), then `set` is applied (`""`
    /// deletes the key).
    fn update_plugin_data(&self, p: types::PluginDataUpdateParams) -> Result<(), Status> {
        if p.kind != "access_request" {
            return Err(Status::invalid_argument(format!("unsupported plugin data kind {:?}", p.kind)));
        }
        if p.plugin.is_empty() || p.resource.is_empty() {
            return Err(Status::invalid_argument("plugin and resource are required"));
        }
        let mut s = self.store.lock().expect("poisoned");
        let key = (p.kind.clone(), p.resource.clone());
        if !s.requests.contains_key(&p.resource) && !s.plugin_data.contains_key(&key) {
            return Err(Status::not_found(format!("access request {:?} not found", p.resource)));
        }
        let entries = s.plugin_data.entry(key.clone()).or_default();
        let current = entries.get(&p.plugin);
        let matches = p.expect.iter().all(|(k, v)| match current {
            None => v.is_empty(),
            Some(d) => d.get(k).map(String::as_str).unwrap_or("") == v,
        });
        if !matches {
            return Err(Status::failed_precondition("plugin data compare failed: the stored values changed"));
        }
        let entry = entries.entry(p.plugin.clone()).or_default();
        for (k, v) in p.set {
            if v.is_empty() {
                entry.remove(&k);
            } else {
                entry.insert(k, v);
            }
        }
        if entry.is_empty() {
            entries.remove(&p.plugin);
        }
        if entries.is_empty() {
            s.plugin_data.remove(&key);
        }
        Ok(())
    }

    /// Bookkeeping and faults common to every call of `proto.AuthService`.
    async fn enter(&self, method: &str) -> Result<(), Status> {
        self.enter_service("proto.AuthService", method).await
    }

    /// Bookkeeping and faults common to every call: `key` names the method
    /// for [`TeleportSim::calls`], [`TeleportSim::fail_next`] and
    /// [`TeleportSim::set_unimplemented`] (`"GetUser"` for AuthService,
    /// `"UsersService/GetUser"` for the users service).
    async fn enter_service(&self, service: &str, key: &str) -> Result<(), Status> {
        *self.calls.lock().expect("poisoned").entry(key.into()).or_default() += 1;
        let (delay, err) = {
            let mut f = self.faults.lock().expect("poisoned");
            if f.unimplemented.contains(key) {
                let method = key.rsplit('/').next().unwrap_or(key);
                return Err(Status::unimplemented(format!("unknown method {method} for service {service}")));
            }
            (f.delay, f.fail_next.get_mut(key).and_then(VecDeque::pop_front))
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        err.map_or(Ok(()), Err)
    }

    /// After `method` was applied: cuts the caller's connection when a
    /// [`TeleportSim::cut_after_apply`] fault is due, so the answer is lost.
    fn cut_if_due(&self, method: &str, conn: Option<&ConnInfo>) -> Result<(), Status> {
        let Some(conn) = conn else { return Ok(()) };
        {
            let mut f = self.faults.lock().expect("poisoned");
            match f.cut_after_apply.get_mut(method) {
                Some(n) if *n > 0 => *n -= 1,
                _ => return Ok(()),
            }
        }
        *self.cut_calls.lock().expect("poisoned").entry(method.into()).or_default() += 1;
        // Every later write on the connection fails, the answer included.
        conn.close.cancel();
        Err(Status::unavailable("connection cut after the call was applied"))
    }

    fn check_user_reads(&self) -> Result<(), Status> {
        if self.faults.lock().expect("poisoned").deny_users {
            return Err(Status::permission_denied("access denied to perform action \"read\" on \"user\""));
        }
        Ok(())
    }

    /// `SubmitAccessReview` for `caller`; the stored result is announced to
    /// watchers under the store lock, so events follow writes.
    fn submit_review(&self, caller: &str, sub: types::AccessReviewSubmission) -> Result<types::AccessRequestV3, Status> {
        let on_behalf = !self.faults.lock().expect("poisoned").no_on_behalf_reviews;
        let mut s = self.store.lock().expect("poisoned");
        let updated = review::submit(&mut s, caller, on_behalf, sub, SystemTime::now())?;
        let _ = self.events.send(event(proto::Operation::Put, proto::event::Resource::AccessRequest(updated.clone())));
        Ok(updated)
    }
}

#[derive(Clone)]
struct Service(Arc<Inner>);

/// Auth's client version check, run before every call of every service (as
/// Auth's authentication interceptors do). A refused client's connection is
/// closed before the error is returned, so the client usually sees the
/// connection drop rather than the status.
#[derive(Clone)]
struct VersionPolicy(Arc<Inner>);

impl tonic::service::Interceptor for VersionPolicy {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let values: Vec<&str> = req.metadata().get_all("version").iter().filter_map(|v| v.to_str().ok()).collect();
        match version_policy::check(&values, self.0.min_client.as_ref()) {
            Ok(()) => Ok(req),
            Err(refusal) => {
                tracing::info!(?refusal, "Terminating connection of client using unsupported version");
                self.0.version_refusals.lock().expect("poisoned").push(refusal);
                if let Some(conn) = req.extensions().get::<ConnInfo>() {
                    conn.close.cancel();
                }
                Err(Status::permission_denied(version_policy::REJECTED))
            }
        }
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<proto::Event, Status>> + Send>>;
type RequestStream = Pin<Box<dyn Stream<Item = Result<types::AccessRequestV3, Status>> + Send>>;

const SUPPORTED_KINDS: &[&str] = &["access_request", "access_monitoring_rule"];
/// Calls [`TeleportSim::cut_after_apply`] can cut.
const CUTTABLE: &[&str] = &["UpdatePluginData", "SubmitAccessReview"];

fn request_matches(r: &types::AccessRequestV3, f: &types::AccessRequestFilter) -> bool {
    let spec = r.spec.as_ref();
    (f.id.is_empty() || f.id == r.id())
        && (f.user.is_empty() || spec.is_some_and(|s| s.user == f.user))
        && (f.state == 0 || r.state() as i32 == f.state)
}

#[tonic::async_trait]
impl auth_srv::AuthService for Service {
    async fn ping(&self, _req: Request<proto::PingRequest>) -> Result<Response<proto::PingResponse>, Status> {
        self.0.enter("Ping").await?;
        let c = &self.0.cfg;
        Ok(Response::new(proto::PingResponse {
            cluster_name: c.cluster_name.clone(),
            server_version: c.server_version.clone(),
            server_features: Some(proto::Features {
                advanced_access_workflows: c.advanced_workflows,
                ..Default::default()
            }),
            proxy_public_addr: c.proxy_public_addr.clone(),
            ..Default::default()
        }))
    }

    type WatchEventsStream = EventStream;

    async fn watch_events(&self, req: Request<proto::Watch>) -> Result<Response<EventStream>, Status> {
        self.0.enter("WatchEvents").await?;
        let peer = req.extensions().get::<ConnInfo>().map(|c| c.peer.0.clone()).unwrap_or_default();
        let watch = req.into_inner();
        let rejected = self.0.faults.lock().expect("poisoned").rejected_kinds.clone();
        let mut accepted = Vec::new();
        for k in &watch.kinds {
            let ok = SUPPORTED_KINDS.contains(&k.kind.as_str()) && !rejected.contains(&k.kind);
            if ok {
                accepted.push(k.clone());
            } else if !watch.allow_partial_success {
                return Err(Status::permission_denied(format!("access denied to watch {}", k.kind)));
            }
        }
        if accepted.is_empty() {
            return Err(Status::invalid_argument("none of the requested kinds can be watched"));
        }
        let kinds: HashSet<String> = accepted.iter().map(|k| k.kind.clone()).collect();
        // Subscribe before sending INIT so nothing written after INIT is missed.
        let mut rx = self.0.events.subscribe();
        let stop = self.0.streams.lock().expect("poisoned").clone();
        let (tx, out) = mpsc::channel::<Result<proto::Event, Status>>(256);
        let init = proto::Event {
            r#type: proto::Operation::Init as i32,
            resource: Some(proto::event::Resource::WatchStatus(types::WatchStatusV1 {
                kind: "watch_status".into(),
                version: "v1".into(),
                metadata: Some(types::Metadata { name: "watch_status".into(), ..Default::default() }),
                spec: Some(types::WatchStatusSpecV1 { kinds: accepted }),
                ..Default::default()
            })),
        };
        let inner = self.0.clone();
        let mut shuffle = inner.faults.lock().expect("poisoned").disorder.map(disorder::Disorder::new);
        inner.watchers.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::spawn(async move {
            let _guard = WatcherGuard(inner.clone());
            if tx.send(Ok(init)).await.is_err() {
                return;
            }
            inner.inits.lock().expect("poisoned").push((Instant::now(), peer));
            loop {
                let held_until = shuffle.as_ref().and_then(disorder::Disorder::deadline);
                let ev = tokio::select! {
                    _ = stop.cancelled() => {
                        let _ = tx.send(Err(Status::unavailable("watcher is closed"))).await;
                        return;
                    }
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep_until(held_until.unwrap_or_else(Instant::now).into()), if held_until.is_some() => {
                        let due = shuffle.as_mut().map(|d| d.due(Instant::now())).unwrap_or_default();
                        if !send_all(&inner, &tx, due).await {
                            return;
                        }
                        continue;
                    }
                    ev = rx.recv() => ev,
                };
                match ev {
                    Ok(ev) if !event_kind(&ev).is_some_and(|k| kinds.contains(k)) => {}
                    Ok(ev) => {
                        let out = match shuffle.as_mut() {
                            Some(d) => d.on_event(ev),
                            None => vec![(ev, disorder::Sent::InOrder)],
                        };
                        if !send_all(&inner, &tx, out).await {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let _ = tx.send(Err(Status::unavailable("watcher is closed: buffer overflow"))).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(out))))
    }

    async fn get_plugin_data(&self, req: Request<types::PluginDataFilter>) -> Result<Response<proto::PluginDataSeq>, Status> {
        self.0.enter("GetPluginData").await?;
        let f = req.into_inner();
        let s = self.0.store.lock().expect("poisoned");
        let mut out = Vec::new();
        // As Auth: an empty resource reads every record of the kind (records
        // of deleted requests included: plugin data outlives its request);
        // a set plugin keeps the records that have an entry for it, and each
        // record comes whole, every plugin's entry in it.
        for ((kind, resource), entries) in &s.plugin_data {
            if *kind != f.kind || (!f.resource.is_empty() && *resource != f.resource) {
                continue;
            }
            if entries.is_empty() || (!f.plugin.is_empty() && !entries.contains_key(&f.plugin)) {
                continue;
            }
            let entries: HashMap<String, types::PluginDataEntry> =
                entries.iter().map(|(p, d)| (p.clone(), types::PluginDataEntry { data: d.clone() })).collect();
            out.push(types::PluginDataV3 {
                kind: "plugin_data".into(),
                sub_kind: kind.clone(),
                version: "v3".into(),
                metadata: Some(types::Metadata { name: resource.clone(), namespace: "default".into(), ..Default::default() }),
                spec: Some(types::PluginDataSpecV3 { entries }),
            });
        }
        Ok(Response::new(proto::PluginDataSeq { plugin_data: out }))
    }

    async fn update_plugin_data(&self, req: Request<types::PluginDataUpdateParams>) -> Result<Response<()>, Status> {
        self.0.enter("UpdatePluginData").await?;
        let conn = req.extensions().get::<ConnInfo>().cloned();
        self.0.update_plugin_data(req.into_inner())?;
        self.0.cut_if_due("UpdatePluginData", conn.as_ref())?;
        Ok(Response::new(()))
    }

    async fn list_access_requests(
        &self,
        req: Request<proto::ListAccessRequestsRequest>,
    ) -> Result<Response<proto::ListAccessRequestsResponse>, Status> {
        self.0.enter("ListAccessRequests").await?;
        let r = req.into_inner();
        let filter = r.filter.unwrap_or_default();
        // Auth's default page is 1000 requests, its largest 16,000.
        if r.limit > 16_000 {
            return Err(Status::invalid_argument(format!("page size of {} is too large", r.limit)));
        }
        let limit = if r.limit <= 0 { 1000 } else { r.limit as usize };
        let s = self.0.store.lock().expect("poisoned");
        // Start keys are inclusive: the next key is the first item of the next page.
        let mut items = s
            .requests
            .range(r.start_key.clone()..)
            .map(|(_, v)| v)
            .filter(|v| request_matches(v, &filter));
        let page: Vec<_> = items.by_ref().take(limit).cloned().collect();
        let next_key = items.next().map(|v| v.id().to_string()).unwrap_or_default();
        Ok(Response::new(proto::ListAccessRequestsResponse { access_requests: page, next_key }))
    }

    type GetAccessRequestsV2Stream = RequestStream;

    async fn get_access_requests_v2(
        &self,
        req: Request<types::AccessRequestFilter>,
    ) -> Result<Response<RequestStream>, Status> {
        self.0.enter("GetAccessRequestsV2").await?;
        let f = req.into_inner();
        let items: Vec<_> = {
            let s = self.0.store.lock().expect("poisoned");
            s.requests.values().filter(|r| request_matches(r, &f)).map(|r| Ok(r.clone())).collect()
        };
        Ok(Response::new(Box::pin(futures::stream::iter(items))))
    }

    async fn get_user(&self, req: Request<proto::GetUserRequest>) -> Result<Response<types::UserV2>, Status> {
        self.0.enter("GetUser").await?;
        self.0.check_user_reads()?;
        let req = req.into_inner();
        if req.with_secrets {
            return Err(Status::permission_denied("reading user secrets is not allowed to plugins"));
        }
        let s = self.0.store.lock().expect("poisoned");
        let user = s.users.get(&req.name).ok_or_else(|| Status::not_found(format!("user {:?} is not found", req.name)))?;
        Ok(Response::new(users::user_pb(&req.name, user)))
    }

    async fn get_role(&self, req: Request<proto::GetRoleRequest>) -> Result<Response<types::RoleV6>, Status> {
        self.0.enter("GetRole").await?;
        if self.0.faults.lock().expect("poisoned").deny_roles {
            return Err(Status::permission_denied("access denied to perform action \"read\" on \"role\""));
        }
        let name = req.into_inner().name;
        let s = self.0.store.lock().expect("poisoned");
        let logins = &s.roles.get(&name).ok_or_else(|| Status::not_found(format!("role {name} is not found")))?.logins;
        Ok(Response::new(types::RoleV6 {
            kind: "role".into(),
            version: "v7".into(),
            metadata: Some(types::Metadata { name: name.clone(), namespace: "default".into(), ..Default::default() }),
            spec: Some(types::RoleSpecV6 {
                allow: Some(types::RoleConditions { logins: logins.clone() }),
                deny: Some(types::RoleConditions::default()),
            }),
            ..Default::default()
        }))
    }

    async fn submit_access_review(
        &self,
        req: Request<types::AccessReviewSubmission>,
    ) -> Result<Response<types::AccessRequestV3>, Status> {
        self.0.enter("SubmitAccessReview").await?;
        let conn = req.extensions().get::<ConnInfo>().cloned();
        let caller = conn.as_ref().map(|c| c.user.clone()).unwrap_or_default();
        let updated = self.0.submit_review(&caller, req.into_inner())?;
        self.0.cut_if_due("SubmitAccessReview", conn.as_ref())?;
        Ok(Response::new(updated))
    }

    async fn list_resources(
        &self,
        req: Request<proto::ListResourcesRequest>,
    ) -> Result<Response<proto::ListResourcesResponse>, Status> {
        resources::list(&self.0, req).await
    }
}

#[tonic::async_trait]
impl amr_srv::AccessMonitoringRulesService for Service {
    async fn list_access_monitoring_rules(
        &self,
        req: Request<amr::ListAccessMonitoringRulesRequest>,
    ) -> Result<Response<amr::ListAccessMonitoringRulesResponse>, Status> {
        self.0.enter("ListAccessMonitoringRules").await?;
        let r = req.into_inner();
        let (rules, next_page_token) = self.page_rules(r.page_size, &r.page_token, |_| true);
        Ok(Response::new(amr::ListAccessMonitoringRulesResponse { rules, next_page_token }))
    }

    async fn list_access_monitoring_rules_with_filter(
        &self,
        req: Request<amr::ListAccessMonitoringRulesWithFilterRequest>,
    ) -> Result<Response<amr::ListAccessMonitoringRulesWithFilterResponse>, Status> {
        self.0.enter("ListAccessMonitoringRulesWithFilter").await?;
        let r = req.into_inner();
        let (rules, next_page_token) = self.page_rules(r.page_size, &r.page_token, |rule| {
            let spec = rule.spec.clone().unwrap_or_default();
            let notification = spec.notification.unwrap_or_default().name;
            (r.subjects.is_empty() || r.subjects.iter().any(|s| spec.subjects.contains(s)))
                && (r.notification_name.is_empty() || notification == r.notification_name)
        });
        Ok(Response::new(amr::ListAccessMonitoringRulesWithFilterResponse { rules, next_page_token }))
    }
}

impl Service {
    fn page_rules(
        &self,
        page_size: i64,
        token: &str,
        keep: impl Fn(&amr::AccessMonitoringRule) -> bool,
    ) -> (Vec<amr::AccessMonitoringRule>, String) {
        let s = self.0.store.lock().expect("poisoned");
        let size = if page_size <= 0 { 1000 } else { page_size as usize };
        let mut it = s.rules.range(token.to_string()..).map(|(_, r)| r).filter(|r| keep(r));
        let page = it.by_ref().take(size).cloned().collect();
        let next = it.next().and_then(|r| r.metadata.as_ref()).map(|m| m.name.clone()).unwrap_or_default();
        (page, next)
    }
}

fn event_kind(ev: &proto::Event) -> Option<&str> {
    use proto::event::Resource;
    match ev.resource.as_ref()? {
        Resource::AccessRequest(_) => Some("access_request"),
        Resource::AccessMonitoringRule(_) => Some("access_monitoring_rule"),
        Resource::ResourceHeader(h) => Some(h.kind.as_str()),
        Resource::WatchStatus(_) => None,
    }
}

/// Sends events of a watch stream, counting the repeated and reordered
/// ones; false once the client is gone.
async fn send_all(
    inner: &Inner,
    tx: &mpsc::Sender<Result<proto::Event, Status>>,
    events: Vec<(proto::Event, disorder::Sent)>,
) -> bool {
    use std::sync::atomic::Ordering::SeqCst;
    for (ev, how) in events {
        if tx.send(Ok(ev)).await.is_err() {
            return false;
        }
        match how {
            disorder::Sent::InOrder => {}
            disorder::Sent::Duplicate => {
                inner.duplicated_puts.fetch_add(1, SeqCst);
            }
            disorder::Sent::Stale => {
                inner.stale_puts.fetch_add(1, SeqCst);
            }
        }
    }
    true
}

struct WatcherGuard(Arc<Inner>);

impl Drop for WatcherGuard {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn tls_acceptor(pki: &ClusterPki) -> Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.user_ca_der())?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let cert = pki.issue_server_cert(&[])?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(cert.chain, cert.key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    inner: Arc<Inner>,
    out: mpsc::Sender<std::io::Result<SimIo>>,
    shutdown: CancellationToken,
) {
    loop {
        let (tcp, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(_) => continue,
            },
        };
        let refusing = inner.faults.lock().expect("poisoned").refuse_until.is_some_and(|t| Instant::now() < t);
        if refusing {
            drop(tcp);
            continue;
        }
        let acceptor = acceptor.clone();
        let out = out.clone();
        // Each connection can be closed alone (version policy) or with all
        // the others (fault injection).
        let kill = inner.connections.lock().expect("poisoned").child_token();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            // A failed handshake (wrong CA, expired client cert) just closes
            // the connection, as a real server does.
            if let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                let killed = Box::pin(kill.clone().cancelled_owned());
                let _ = out.send(Ok(SimIo { tls, kill, killed })).await;
            }
        });
    }
}

/// A server-side TLS connection that can be cut from the control API.
struct SimIo {
    tls: TlsStream<TcpStream>,
    kill: CancellationToken,
    killed: Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
}

impl SimIo {
    fn killed(&self) -> Option<std::io::Error> {
        self.kill
            .is_cancelled()
            .then(|| std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection dropped by fault injection"))
    }
}

/// The client certificate a connection authenticated with, as the short
/// SHA-256 fingerprint `Identity::fingerprint` uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity(pub String);

/// What a call knows about its connection: the client certificate, and a
/// switch that closes the connection.
#[derive(Debug, Clone)]
struct ConnInfo {
    peer: PeerIdentity,
    /// The Teleport user of the client certificate (its common name).
    user: String,
    close: CancellationToken,
}

impl Connected for SimIo {
    type ConnectInfo = ConnInfo;
    fn connect_info(&self) -> ConnInfo {
        ConnInfo { peer: self.peer_identity(), user: self.peer_user(), close: self.kill.clone() }
    }
}

impl SimIo {
    fn peer_identity(&self) -> PeerIdentity {
        let fp = self
            .tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| hex::encode(&ring::digest::digest(&ring::digest::SHA256, c).as_ref()[..8]))
            .unwrap_or_default();
        PeerIdentity(fp)
    }

    fn peer_user(&self) -> String {
        let Some(der) = self.tls.get_ref().1.peer_certificates().and_then(|c| c.first()) else { return String::new() };
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else { return String::new() };
        cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).unwrap_or_default().to_string()
    }
}

impl AsyncRead for SimIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        // Polling the cancellation future also registers the reader's waker,
        // so a reader blocked on the socket wakes up when the fault is injected.
        if self.killed.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(self.killed().unwrap_or_else(|| std::io::ErrorKind::ConnectionReset.into())));
        }
        Pin::new(&mut self.tls).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        if let Some(e) = self.killed() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.tls).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tls).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tls).poll_shutdown(cx)
    }
}
