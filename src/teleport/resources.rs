//! Labels of the resources an access request names, for Access Monitoring
//! Rule conditions on `access_request.spec.resource_labels_union` /
//! `..._intersection`.
//!
//! What upstream does (the access monitoring rule handler of the official
//! plugins, building its expression environment with
//! `api/accessrequest.GetResourcesByResourceIDs`):
//! - the request's resource ids are grouped by kind (their cluster name is
//!   not looked at: the listing is in the plugin's own cluster);
//! - per kind, one `ListResources` of the matching type (`node`; an app is
//!   listed through its agents, `app_server`; a database through
//!   `db_server`) with `PredicateExpression`
//!   `resource.metadata.name == "a" || resource.metadata.name == "b" ...`,
//!   `Limit` the number of names, `UsePreviewAsRoles` (the plugin sees what
//!   its `review_requests.preview_as_roles` may see), paged by `NextKey`;
//! - an app or database agent stands for the app or database it serves;
//!   a resource's labels are its static labels plus the current results of
//!   its command labels (a command label wins over a static one of the same
//!   name);
//! - a resource that is gone, or that the plugin may not see, is simply not
//!   listed: the label maps are computed from the ones found;
//! - any error, a missing permission (`PERMISSION_DENIED`) included, fails
//!   the whole environment: no rule applies to the request and the static
//!   routing is used.
//!
//! Differences, on purpose: only nodes, apps and databases are read (another
//! kind fails like an error above rather than being left out, so a condition
//! over all resources never sees a subset); constrained resource requests
//! (`RequestedResourceAccessIDs`) count like the others; names are sent at
//! most [`NAMES_PER_CALL`] per call; the labels of a request are read once
//! and kept for [`CACHE_TTL`] (one chat's worker reads them, the others
//! reuse them).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;
use tonic::{Code, Status};

use super::client::{TeleportClient, describe_status, unary};
use crate::model::{AccessRequest, ResourceId};
use crate::pb::proto;
use crate::pb::proto::paginated_resource::Resource;
use crate::pb::types;

/// Labels of one resource.
pub type Labels = BTreeMap<String, String>;

/// Most names in one `PredicateExpression` (keeps each call small).
pub const NAMES_PER_CALL: usize = 100;
/// How long the labels of a request are reused.
pub const CACHE_TTL: Duration = Duration::from_secs(600);
/// Requests whose labels are kept at most.
const CACHE_MAX: usize = 4096;
/// Pages read for one call at most (a server repeating itself stops sooner).
const MAX_PAGES: usize = 1000;

/// Access request kind → `ListResources` type, for the kinds read here.
fn list_type(kind: &str) -> Option<&'static str> {
    match kind {
        "node" => Some("node"),
        "app" => Some("app_server"),
        "db" => Some("db_server"),
        _ => None,
    }
}

/// Why the labels of a request's resources could not be read.
#[derive(Debug)]
pub enum ResourceLabelsError {
    /// The plugin's role may not list this type of resource.
    Denied { resource_type: &'static str, status: Status },
    /// A requested kind whose labels this plugin does not read.
    UnsupportedKind(String),
    /// Any other failed call.
    Call { resource_type: &'static str, status: Status },
}

impl fmt::Display for ResourceLabelsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResourceLabelsError::Denied { resource_type, status } => write!(
                f,
                "listing the requested {resource_type} resources was refused ({}); give the plugin's role \
                 `review_requests.preview_as_roles` naming a role that may list and read {resource_type} and sees \
                 the resources by their labels (see deploy/teleport/plugin-role.yaml)",
                describe_status(status)
            ),
            ResourceLabelsError::UnsupportedKind(kind) => write!(
                f,
                "the request names {kind:?} resources, whose labels this plugin does not read (it reads node, app and db)"
            ),
            ResourceLabelsError::Call { resource_type, status } => {
                write!(f, "listing the requested {resource_type} resources failed ({})", describe_status(status))
            }
        }
    }
}

impl std::error::Error for ResourceLabelsError {}

/// The labels of a listed resource, as Teleport's `GetAllLabels` of the
/// requested resource (the app or database of an agent record); `None` for
/// a type this plugin does not decode.
pub fn labels_of(r: &proto::PaginatedResource) -> Option<Labels> {
    fn combine(meta: Option<&types::Metadata>, commands: &HashMap<String, types::CommandLabelV2>) -> Labels {
        let mut out: Labels = meta.map(|m| m.labels.clone().into_iter().collect()).unwrap_or_default();
        out.extend(commands.iter().map(|(k, c)| (k.clone(), c.result.clone())));
        out
    }
    let empty = HashMap::new();
    Some(match r.resource.as_ref()? {
        Resource::Node(n) => combine(n.metadata.as_ref(), n.spec.as_ref().map_or(&empty, |s| &s.cmd_labels)),
        Resource::AppServer(s) => {
            let app = s.spec.as_ref().and_then(|s| s.app.as_ref());
            combine(app.and_then(|a| a.metadata.as_ref()), app.and_then(|a| a.spec.as_ref()).map_or(&empty, |s| &s.dynamic_labels))
        }
        Resource::DatabaseServer(s) => {
            let db = s.spec.as_ref().and_then(|s| s.database.as_ref());
            combine(db.and_then(|d| d.metadata.as_ref()), db.and_then(|d| d.spec.as_ref()).map_or(&empty, |s| &s.dynamic_labels))
        }
    })
}

/// `resource.metadata.name == "a" || ...` with Go string literals.
pub fn name_matcher<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let parts: Vec<String> = names.into_iter().map(|n| format!("resource.metadata.name == {}", go_quote(n))).collect();
    parts.join(" || ")
}

/// A Go interpreted string literal for `s` (what Go's `%q` would accept back;
/// also what the rule-condition lexer reads back).
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The `ListResources` requests for `names` of one type: one per chunk.
pub fn list_requests(resource_type: &str, names: &BTreeSet<&str>) -> Vec<proto::ListResourcesRequest> {
    let names: Vec<&str> = names.iter().copied().collect();
    names
        .chunks(NAMES_PER_CALL)
        .map(|chunk| proto::ListResourcesRequest {
            resource_type: resource_type.into(),
            limit: chunk.len() as i32,
            predicate_expression: name_matcher(chunk.iter().copied()),
            use_preview_as_roles: true,
            ..Default::default()
        })
        .collect()
}

/// One request's labels, filled by the first reader.
type LabelCell = Arc<OnceCell<Arc<Vec<Labels>>>>;

/// The labels read per request, each read once even when several chats'
/// workers ask at the same time.
#[derive(Default)]
pub struct LabelCache {
    entries: Mutex<HashMap<String, (Instant, LabelCell)>>,
}

impl LabelCache {
    fn cell(&self, id: &str) -> LabelCell {
        let mut entries = self.entries.lock().expect("poisoned");
        let now = Instant::now();
        if let Some((at, cell)) = entries.get(id)
            && now.duration_since(*at) < CACHE_TTL
        {
            return cell.clone();
        }
        entries.retain(|_, (at, _)| now.duration_since(*at) < CACHE_TTL);
        if entries.len() >= CACHE_MAX
            && let Some(oldest) = entries.iter().min_by_key(|(_, (at, _))| *at).map(|(k, _)| k.clone())
        {
            entries.remove(&oldest);
        }
        let cell = Arc::new(OnceCell::new());
        entries.insert(id.to_string(), (now, cell.clone()));
        cell
    }
}

impl TeleportClient {
    /// Labels of every resource `req` names that Teleport lists for the
    /// plugin (see the module documentation); empty for a role request.
    /// Read once per request and kept for [`CACHE_TTL`]; a failure is not
    /// kept, so the next routing of the request reads again.
    pub async fn request_resource_labels(&self, req: &AccessRequest) -> Result<Arc<Vec<Labels>>, ResourceLabelsError> {
        if !req.has_resources() {
            return Ok(Arc::new(Vec::new()));
        }
        let cell = self.label_cache().cell(&req.id);
        let ids: Vec<&ResourceId> = req.requested_resources().map(|r| r.id).collect();
        cell.get_or_try_init(|| async { self.resource_labels(&ids).await.map(Arc::new) }).await.cloned()
    }

    /// Lists the resources `ids` name (uncached) and returns their labels,
    /// one entry per listed record.
    pub async fn resource_labels(&self, ids: &[&ResourceId]) -> Result<Vec<Labels>, ResourceLabelsError> {
        let mut by_type: BTreeMap<&'static str, BTreeSet<&str>> = BTreeMap::new();
        for id in ids {
            let t = list_type(&id.kind).ok_or_else(|| ResourceLabelsError::UnsupportedKind(id.kind.clone()))?;
            by_type.entry(t).or_default().insert(&id.name);
        }
        let conn = self.connection();
        let mut out = Vec::new();
        for (&resource_type, names) in &by_type {
            for first in list_requests(resource_type, names) {
                let fail = |status: Status| match status.code() {
                    Code::PermissionDenied => ResourceLabelsError::Denied { resource_type, status },
                    _ => ResourceLabelsError::Call { resource_type, status },
                };
                let mut req = first;
                for _ in 0..MAX_PAGES {
                    let page = conn.auth().list_resources(unary(req.clone())).await.map_err(&fail)?.into_inner();
                    out.extend(page.resources.iter().filter_map(labels_of));
                    if page.next_key.is_empty() || page.next_key == req.start_key {
                        break;
                    }
                    req.start_key = page.next_key;
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_as_go_literals() {
        assert_eq!(
            name_matcher(["web-1", "a\"b\\c", "tab\there", "é\u{7}"]),
            r#"resource.metadata.name == "web-1" || resource.metadata.name == "a\"b\\c" || resource.metadata.name == "tab\there" || resource.metadata.name == "é\u0007""#
        );
    }

    #[test]
    fn names_are_split_into_calls_of_at_most_the_limit() {
        let names: Vec<String> = (0..NAMES_PER_CALL + 1).map(|i| format!("n{i:03}")).collect();
        let set: BTreeSet<&str> = names.iter().map(String::as_str).collect();
        let reqs = list_requests("node", &set);
        assert_eq!(reqs.len(), 2);
        assert_eq!((reqs[0].limit, reqs[1].limit), (NAMES_PER_CALL as i32, 1));
        assert!(reqs.iter().all(|r| r.resource_type == "node" && r.use_preview_as_roles && r.start_key.is_empty()));
        assert_eq!(reqs[1].predicate_expression, r#"resource.metadata.name == "n100""#);
    }

    #[test]
    fn command_labels_win_over_static_ones() {
        let cmd = |r: &str| types::CommandLabelV2 { result: r.into(), ..Default::default() };
        let node = proto::PaginatedResource {
            resource: Some(Resource::Node(types::ServerV2 {
                metadata: Some(types::Metadata {
                    labels: [("env".to_string(), "dev".to_string()), ("os".to_string(), "linux".to_string())].into(),
                    ..Default::default()
                }),
                spec: Some(types::ServerSpecV2 { cmd_labels: [("env".to_string(), cmd("prod"))].into(), ..Default::default() }),
                ..Default::default()
            })),
        };
        let want: Labels = [("env".to_string(), "prod".to_string()), ("os".to_string(), "linux".to_string())].into();
        assert_eq!(labels_of(&node), Some(want));
        assert_eq!(labels_of(&proto::PaginatedResource { resource: None }), None);
    }
}
