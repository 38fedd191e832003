//! Typed client for the Teleport Auth gRPC calls the plugin makes.
//!
//! The client holds the *current* [`Connection`] (channel + identity) and can
//! switch to a new one at run time: the caller dials the new connection, proves
//! it works, then [`TeleportClient::install`]s it. Calls already in flight
//! finish on the old channel, which closes when its last user drops it
//! (make-before-break).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::StreamExt;
use tonic::transport::Channel;
use tonic::{Code, Request, Status, Streaming};

use super::connect::{self, ChannelOptions, ConnectError, Dialer};
use super::convert;
use crate::identity::Identity;
use crate::model::{AccessRequest, MonitoringRule};
use crate::pb::proto;
use crate::pb::proto::auth_service_client::AuthServiceClient;
use crate::pb::teleport::accessmonitoringrules::v1 as amr;
use crate::pb::teleport::accessmonitoringrules::v1::access_monitoring_rules_service_client::AccessMonitoringRulesServiceClient;
use crate::pb::teleport::users::v1::users_service_client::UsersServiceClient;
use crate::pb::types;

// Client version: the plugin sends no `version` metadata.
//
// Auth refuses, on every call and by closing the connection, a client whose
// `version` is older than the server's previous major release
// (`<major-1>.0.0-aa`), or does not parse. A fixed version therefore stops
// working with the second Auth major after it (the plugin once sent 17.0.0
// and every call to a v19 Auth failed, Ping included). Deriving it from
// Ping is no better: Ping is checked too, and claiming the server's own
// release would tell Auth we speak an API we do not (the message subset in
// `proto/` follows v17). Without the key Auth treats the client as unknown
// and applies no version check, as for any gRPC client outside Teleport's
// own tools. Should an Auth refuse that anyway, the connect error says so
// and names the fix (`ClientError::VersionRefused`).
/// Oldest Auth server the plugin talks to (as the official plugins).
pub const MIN_SERVER_VERSION: &str = "6.1.0-beta.1";
/// Teleport major releases the plugin is tested against (the simulator runs
/// each with Auth's default client version policy on). Outside this range
/// the plugin still runs, and `check` and start-up warn.
pub const TESTED_SERVER_MAJORS: std::ops::RangeInclusive<u64> = 17..=20;
/// What Auth answers a client its version policy refuses.
const VERSION_REFUSED: &str = "client version is unsupported";
/// Deadline of one unary call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest gRPC message accepted (large role or request lists).
const MAX_MESSAGE: usize = 16 * 1024 * 1024;
pub(super) const LIST_PAGE: i32 = 500;

type AuthClient = AuthServiceClient<Channel>;
type RulesClient = AccessMonitoringRulesServiceClient<Channel>;

/// What `Ping` says about the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    pub cluster_name: String,
    pub server_version: String,
    pub proxy_public_addr: String,
    /// Enterprise access workflows: the web UI can review requests.
    pub advanced_workflows: bool,
}

/// One dialled channel together with the identity it authenticates with.
pub struct Connection {
    channel: Channel,
    pub identity: Arc<Identity>,
    /// Increases with every connection made by one client.
    pub generation: u64,
    pub path: String,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("generation", &self.generation)
            .field("path", &self.path)
            .field("identity", &self.identity.fingerprint)
            .finish()
    }
}

pub(super) fn unary<T>(msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    req.set_timeout(CALL_TIMEOUT);
    req
}

impl Connection {
    pub(super) fn auth(&self) -> AuthClient {
        AuthServiceClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
    }

    pub(super) fn users(&self) -> UsersServiceClient<Channel> {
        UsersServiceClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE)
    }

    fn rules(&self) -> RulesClient {
        AccessMonitoringRulesServiceClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
    }

    pub async fn ping(&self) -> Result<ClusterInfo, Status> {
        let resp = self.auth().ping(unary(proto::PingRequest {})).await?.into_inner();
        Ok(ClusterInfo {
            cluster_name: resp.cluster_name,
            server_version: resp.server_version,
            proxy_public_addr: resp.proxy_public_addr,
            advanced_workflows: resp.server_features.is_some_and(|f| f.advanced_access_workflows),
        })
    }

    /// Opens the event stream. The first message is the INIT event.
    pub async fn watch(&self, kinds: &[&str]) -> Result<Streaming<proto::Event>, Status> {
        let watch = proto::Watch {
            kinds: kinds.iter().map(|k| types::WatchKind { kind: (*k).into(), ..Default::default() }).collect(),
            allow_partial_success: true,
        };
        Ok(self.auth().watch_events(Request::new(watch)).await?.into_inner())
    }
}

/// Client for Teleport Auth with a swappable connection.
pub struct TeleportClient {
    dialer: Arc<dyn Dialer>,
    opts: ChannelOptions,
    current: ArcSwap<Connection>,
    generations: AtomicU64,
    /// Labels of requested resources, per request ([`super::resources`]).
    labels: super::resources::LabelCache,
}

impl TeleportClient {
    /// Dials Auth and checks the cluster answers `Ping` with a supported version.
    pub async fn connect(
        dialer: Arc<dyn Dialer>,
        identity: Arc<Identity>,
        opts: ChannelOptions,
    ) -> Result<(Self, ClusterInfo), ClientError> {
        let generations = AtomicU64::new(0);
        let conn = dial(&dialer, identity, &opts, &generations).await?;
        let info = conn.ping().await.map_err(|status| {
            if status.code() == Code::PermissionDenied && status.message().contains(VERSION_REFUSED) {
                ClientError::VersionRefused { status }
            } else {
                ClientError::Ping(status)
            }
        })?;
        check_server_version(&info.server_version)?;
        let client = Self {
            dialer,
            opts,
            current: ArcSwap::from_pointee(conn),
            generations,
            labels: Default::default(),
        };
        Ok((client, info))
    }

    pub fn path(&self) -> String {
        self.dialer.describe()
    }

    /// Dials a new connection with `identity` without installing it.
    pub async fn dial(&self, identity: Arc<Identity>) -> Result<Connection, ClientError> {
        dial(&self.dialer, identity, &self.opts, &self.generations).await
    }

    /// Makes `conn` the connection used by every later call.
    pub fn install(&self, conn: Arc<Connection>) {
        self.current.store(conn);
    }

    pub fn connection(&self) -> Arc<Connection> {
        self.current.load_full()
    }

    pub(super) fn label_cache(&self) -> &super::resources::LabelCache {
        &self.labels
    }

    pub async fn ping(&self) -> Result<ClusterInfo, Status> {
        self.connection().ping().await
    }

    /// Reads this plugin's data for one resource; `None` when there is none.
    pub async fn get_plugin_data(
        &self,
        kind: &str,
        resource: &str,
        plugin: &str,
    ) -> Result<Option<HashMap<String, String>>, Status> {
        let filter = types::PluginDataFilter { kind: kind.into(), resource: resource.into(), plugin: plugin.into() };
        let resp = match self.connection().auth().get_plugin_data(unary(filter)).await {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == Code::NotFound => return Ok(None),
            Err(s) => return Err(s),
        };
        Ok(resp
            .plugin_data
            .into_iter()
            .find(|pd| pd.metadata.as_ref().is_none_or(|m| m.name == resource))
            .and_then(|pd| pd.spec)
            .and_then(|mut spec| spec.entries.remove(plugin))
            .map(|entry| entry.data)
            .filter(|data| !data.is_empty()))
    }

    /// Every record of `kind` that has an entry for `plugin`, in one call
    /// (Auth reads them all when the filter names no resource, including
    /// records of requests deleted since): resource name → this plugin's
    /// entry.
    pub async fn list_plugin_data(&self, kind: &str, plugin: &str) -> Result<HashMap<String, HashMap<String, String>>, Status> {
        let filter = types::PluginDataFilter { kind: kind.into(), resource: String::new(), plugin: plugin.into() };
        let resp = self.connection().auth().get_plugin_data(unary(filter)).await?.into_inner();
        Ok(resp
            .plugin_data
            .into_iter()
            .filter_map(|pd| {
                let name = pd.metadata?.name;
                let data = pd.spec?.entries.remove(plugin)?.data;
                (!data.is_empty()).then_some((name, data))
            })
            .collect())
    }

    /// Whether the access request `id` exists (one direct look-up by id).
    pub async fn access_request_exists(&self, id: &str) -> Result<bool, Status> {
        let req = proto::ListAccessRequestsRequest {
            filter: Some(types::AccessRequestFilter { id: id.into(), ..Default::default() }),
            limit: 1,
            ..Default::default()
        };
        match self.connection().auth().list_access_requests(unary(req)).await {
            Ok(page) => Ok(page.into_inner().access_requests.iter().any(|r| r.metadata.as_ref().is_some_and(|m| m.name == id))),
            Err(s) if s.code() == Code::NotFound => Ok(false),
            Err(s) => Err(s),
        }
    }

    /// One page of access requests from `start_key` (inclusive; `""` for
    /// the first page) and the key of the next page (`""` after the last).
    /// Servers without `ListAccessRequests` answer everything at once.
    pub async fn list_access_requests_page(&self, start_key: &str) -> Result<(Vec<AccessRequest>, String), Status> {
        let conn = self.connection();
        let req = proto::ListAccessRequestsRequest {
            filter: Some(types::AccessRequestFilter::default()),
            limit: LIST_PAGE,
            start_key: start_key.into(),
            ..Default::default()
        };
        match conn.auth().list_access_requests(unary(req)).await {
            Ok(p) => {
                let page = p.into_inner();
                let next = if page.next_key == start_key { String::new() } else { page.next_key };
                Ok((page.access_requests.iter().map(convert::request_from_pb).collect(), next))
            }
            Err(s) if s.code() == Code::Unimplemented && start_key.is_empty() => {
                Ok((stream_access_requests(&conn).await?, String::new()))
            }
            Err(s) => Err(s),
        }
    }

    /// Compare-and-swap write: `expect` is checked by the server, which answers
    /// FAILED_PRECONDITION when a value differs. A `""` value in `set` deletes
    /// the key.
    pub async fn update_plugin_data(
        &self,
        kind: &str,
        resource: &str,
        plugin: &str,
        set: HashMap<String, String>,
        expect: HashMap<String, String>,
    ) -> Result<(), Status> {
        let params = types::PluginDataUpdateParams {
            kind: kind.into(),
            resource: resource.into(),
            plugin: plugin.into(),
            set,
            expect,
        };
        self.connection().auth().update_plugin_data(unary(params)).await?;
        Ok(())
    }

    /// Every access request visible to the plugin, all pages. Falls back to
    /// the older streaming call on servers without `ListAccessRequests`.
    pub async fn list_access_requests(&self) -> Result<Vec<AccessRequest>, Status> {
        let conn = self.connection();
        let mut out = Vec::new();
        let mut start_key = String::new();
        loop {
            let req = proto::ListAccessRequestsRequest {
                filter: Some(types::AccessRequestFilter::default()),
                limit: LIST_PAGE,
                start_key: start_key.clone(),
                ..Default::default()
            };
            let page = match conn.auth().list_access_requests(unary(req)).await {
                Ok(p) => p.into_inner(),
                Err(s) if s.code() == Code::Unimplemented && out.is_empty() => {
                    return stream_access_requests(&conn).await;
                }
                Err(s) => return Err(s),
            };
            out.extend(page.access_requests.iter().map(convert::request_from_pb));
            if page.next_key.is_empty() || page.next_key == start_key {
                return Ok(out);
            }
            start_key = page.next_key;
        }
    }

    /// Allowed logins of a role; `Ok(None)` when the plugin may not read roles.
    pub async fn role_logins(&self, role: &str) -> Result<Option<Vec<String>>, Status> {
        let req = proto::GetRoleRequest { name: role.into() };
        match self.connection().auth().get_role(unary(req)).await {
            Ok(r) => Ok(Some(
                r.into_inner().spec.and_then(|s| s.allow).map(|a| a.logins).unwrap_or_default(),
            )),
            Err(s) if matches!(s.code(), Code::PermissionDenied | Code::NotFound) => Ok(None),
            Err(s) => Err(s),
        }
    }

    /// Traits of the user `name` (`GetUser` without secrets); `Ok(None)` when
    /// the plugin may not read users.
    pub async fn user_traits(&self, name: &str) -> Result<Option<BTreeMap<String, Vec<String>>>, Status> {
        let req = proto::GetUserRequest { name: name.into(), with_secrets: false };
        match self.connection().auth().get_user(unary(req)).await {
            Ok(u) => Ok(Some(
                u.into_inner()
                    .spec
                    .and_then(|s| s.traits)
                    .map(|t| t.values.into_iter().map(|(k, v)| (k, v.values)).collect())
                    .unwrap_or_default(),
            )),
            Err(s) if s.code() == Code::PermissionDenied => Ok(None),
            Err(s) => Err(s),
        }
    }

    /// Submits a review on behalf of the plugin's user.
    pub async fn submit_review(&self, request_id: &str, review: &crate::model::Review) -> Result<AccessRequest, Status> {
        let req = types::AccessReviewSubmission {
            request_id: request_id.into(),
            review: Some(convert::review_into_pb(review)),
        };
        let resp = self.connection().auth().submit_access_review(unary(req)).await?;
        Ok(convert::request_from_pb(&resp.into_inner()))
    }

    /// Access Monitoring Rules for access requests addressed to `plugin`.
    /// Older servers without the filtered call get the full list, filtered here.
    pub async fn list_monitoring_rules(&self, plugin: &str) -> Result<Vec<MonitoringRule>, Status> {
        let conn = self.connection();
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let req = amr::ListAccessMonitoringRulesWithFilterRequest {
                page_size: 1000,
                page_token: token.clone(),
                subjects: vec!["access_request".into()],
                notification_name: plugin.into(),
            };
            let page = match conn.rules().list_access_monitoring_rules_with_filter(unary(req)).await {
                Ok(p) => p.into_inner(),
                Err(s) if s.code() == Code::Unimplemented && out.is_empty() => {
                    return list_rules_unfiltered(&conn, plugin).await;
                }
                Err(s) => return Err(s),
            };
            out.extend(page.rules.iter().map(convert::rule_from_pb));
            if page.next_page_token.is_empty() || page.next_page_token == token {
                return Ok(out);
            }
            token = page.next_page_token;
        }
    }
}

async fn dial(
    dialer: &Arc<dyn Dialer>,
    identity: Arc<Identity>,
    opts: &ChannelOptions,
    generations: &AtomicU64,
) -> Result<Connection, ClientError> {
    let channel = connect::open_channel(dialer.clone(), &identity, opts).await.map_err(ClientError::Connect)?;
    Ok(Connection {
        channel,
        identity,
        generation: generations.fetch_add(1, Ordering::Relaxed) + 1,
        path: dialer.describe(),
    })
}

async fn stream_access_requests(conn: &Connection) -> Result<Vec<AccessRequest>, Status> {
    let mut stream = conn.auth().get_access_requests_v2(unary(types::AccessRequestFilter::default())).await?.into_inner();
    let mut out = Vec::new();
    while let Some(item) = stream.next().await {
        out.push(convert::request_from_pb(&item?));
    }
    Ok(out)
}

async fn list_rules_unfiltered(conn: &Connection, plugin: &str) -> Result<Vec<MonitoringRule>, Status> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let req = amr::ListAccessMonitoringRulesRequest { page_size: 1000, page_token: token.clone() };
        let page = conn.rules().list_access_monitoring_rules(unary(req)).await?.into_inner();
        out.extend(
            page.rules
                .iter()
                .map(convert::rule_from_pb)
                .filter(|r| r.subjects.iter().any(|s| s == "access_request") && r.notification_name == plugin),
        );
        if page.next_page_token.is_empty() || page.next_page_token == token {
            return Ok(out);
        }
        token = page.next_page_token;
    }
}

fn check_server_version(version: &str) -> Result<(), ClientError> {
    let min = semver::Version::parse(MIN_SERVER_VERSION).expect("constant is valid semver");
    match semver::Version::parse(version.trim_start_matches('v')) {
        Ok(v) if v >= min => Ok(()),
        Ok(_) => Err(ClientError::ServerTooOld(version.to_string())),
        // An unparseable version is not a reason to refuse service.
        Err(_) => Ok(()),
    }
}

/// A warning when `version` is outside [`TESTED_SERVER_MAJORS`].
pub fn untested_server_warning(version: &str) -> Option<String> {
    let v = semver::Version::parse(version.trim_start_matches('v')).ok()?;
    let (lo, hi) = (*TESTED_SERVER_MAJORS.start(), *TESTED_SERVER_MAJORS.end());
    let why = if v.major < lo {
        "older"
    } else if v.major > hi {
        "newer"
    } else {
        return None;
    };
    Some(format!(
        "Teleport {version} is {why} than the releases this plugin is tested with ({lo}–{hi}); it should work, but watch the first requests closely"
    ))
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("connected, but Teleport did not answer Ping: {}", describe_status(.0))]
    Ping(Status),
    #[error("Teleport {0} is too old: the plugin needs Auth {MIN_SERVER_VERSION} or newer")]
    ServerTooOld(String),
    #[error(
        "Teleport Auth refused this plugin's client version (\"{}\"). The plugin announces no client version, which Auth's version policy lets through, so an Auth release or a component in front of it that requires one is involved: upgrade the plugin, or start the Auth Service with TELEPORT_UNSTABLE_ALLOW_OLD_CLIENTS=yes until then",
        .status.message()
    )]
    VersionRefused { status: Status },
}

impl ClientError {
    /// Whether a later attempt may succeed without a configuration change
    /// (Auth starting, unreachable or overloaded); a rejected identity or an
    /// unsupported server is final.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Connect(e) => e.is_transient(),
            ClientError::Ping(s) => matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted | Code::Aborted),
            ClientError::ServerTooOld(_) | ClientError::VersionRefused { .. } => false,
        }
    }
}

/// A gRPC status as a sentence with its code.
pub fn describe_status(s: &Status) -> String {
    let hint = match s.code() {
        Code::PermissionDenied if s.message().contains(VERSION_REFUSED) => {
            " (Auth's client version policy: upgrade the plugin, or set TELEPORT_UNSTABLE_ALLOW_OLD_CLIENTS=yes on the Auth Service)"
        }
        Code::PermissionDenied => " (the plugin's Teleport role lacks a permission)",
        Code::Unauthenticated => " (the identity was not accepted)",
        Code::Unavailable => " (Auth unreachable)",
        _ => "",
    };
    let msg = s.message();
    let msg = if msg.is_empty() { "no message" } else { msg };
    format!("{:?}: {msg}{hint}", s.code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_version_floor() {
        assert!(check_server_version("17.1.2").is_ok());
        assert!(check_server_version("v6.1.0").is_ok());
        assert!(check_server_version("6.1.0-beta.1").is_ok());
        assert!(matches!(check_server_version("6.0.9"), Err(ClientError::ServerTooOld(_))));
        assert!(check_server_version("dev").is_ok());
    }

    #[test]
    fn warns_outside_the_tested_majors_only() {
        for inside in ["17.0.0", "18.0.0-dev.x.15", "20.9.9", "v19.1.0"] {
            assert_eq!(untested_server_warning(inside), None, "{inside}");
        }
        assert!(untested_server_warning("16.5.0").is_some_and(|w| w.contains("older than")));
        assert!(untested_server_warning("21.0.0-rc.1").is_some_and(|w| w.contains("newer than")));
        assert_eq!(untested_server_warning("dev"), None, "unparseable: no claim either way");
    }

    #[test]
    fn a_version_refusal_is_not_blamed_on_the_role() {
        let s = describe_status(&Status::permission_denied("client version is unsupported"));
        assert!(s.contains("TELEPORT_UNSTABLE_ALLOW_OLD_CLIENTS=yes") && !s.contains("role"), "{s}");
    }
}
