//! `ListResources` as Auth serves it for the resources an access request can
//! name (nodes, apps, databases), so the plugin can read their labels.
//!
//! Semantics kept from Auth (`ServerWithRoles.ListResources`):
//! - one resource type per call (`node`, `app_server`, `db_server`); any
//!   other type answers UNIMPLEMENTED ("does not support pagination");
//! - RBAC first: without the rule (`node: list`, `app_server`/`db_server:
//!   list, read`) the call answers PERMISSION_DENIED ([`TeleportSim::deny_resource_reads`]);
//! - then per resource: one the caller may not see by its labels is left out
//!   without an error. Here a resource is visible only through the caller's
//!   `review_requests.preview_as_roles` (`UsePreviewAsRoles`), as with the
//!   shipped plugin role, unless [`TeleportSim::resources_visible_without_preview`];
//! - `Limit` 0 means 1000, negative is INVALID_ARGUMENT; pages run in key
//!   order from the inclusive `StartKey`, and `NextKey` is the key of the
//!   next resource *iterated* once the page is full, whether or not that one
//!   would match (so a full page may be followed by an empty last one);
//! - `PredicateExpression` filters after RBAC. The simulator understands the
//!   form the plugins send, `resource.metadata.name == "a" || ...` (Go string
//!   literals), and refuses any other with INVALID_ARGUMENT.
//!
//! App and database agents are listed as `app_server` / `db_server` records
//! keyed `<host id>/<name>`, each carrying the app or database it serves;
//! nodes are keyed by name.

use std::collections::BTreeMap;

use tonic::{Request, Response, Status};

use super::{Inner, TeleportSim};
use teleport_plugin_proto::proto;
use teleport_plugin_proto::types;

/// Page size Auth uses when a request asks for none (`DefaultChunkSize`).
const DEFAULT_LIMIT: i32 = 1000;

/// A resource as an agent registers it.
#[derive(Debug, Clone)]
pub struct SimResource {
    /// Access request kind: `node`, `app` or `db`.
    pub kind: String,
    pub name: String,
    /// `Metadata.Labels`.
    pub labels: BTreeMap<String, String>,
    /// Command labels (`CmdLabels` / `DynamicLabels`): name → current result.
    pub dynamic: BTreeMap<String, String>,
    /// The agent serving it (apps and databases).
    pub host_id: String,
}

impl SimResource {
    fn new(kind: &str, name: &str) -> Self {
        Self {
            kind: kind.into(),
            name: name.into(),
            labels: BTreeMap::new(),
            dynamic: BTreeMap::new(),
            host_id: "sim-agent-1".into(),
        }
    }

    pub fn node(name: &str) -> Self {
        Self::new("node", name)
    }

    pub fn app(name: &str) -> Self {
        Self::new("app", name)
    }

    pub fn db(name: &str) -> Self {
        Self::new("db", name)
    }

    pub fn labels(mut self, pairs: &[(&str, &str)]) -> Self {
        self.labels.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self
    }

    /// Command labels with their current results.
    pub fn dynamic(mut self, pairs: &[(&str, &str)]) -> Self {
        self.dynamic.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self
    }

    /// A further agent serving the same app or database (one more record).
    pub fn on_host(mut self, host_id: &str) -> Self {
        self.host_id = host_id.into();
        self
    }

    /// The `ListResources` type this resource is listed under.
    fn list_type(&self) -> &'static str {
        match self.kind.as_str() {
            "app" => "app_server",
            "db" => "db_server",
            _ => "node",
        }
    }

    fn key(&self) -> String {
        match self.kind.as_str() {
            "node" => self.name.clone(),
            _ => format!("{}/{}", self.host_id, self.name),
        }
    }

    fn to_pb(&self) -> proto::PaginatedResource {
        use proto::paginated_resource::Resource;
        let meta = |name: &str, labels: &BTreeMap<String, String>| types::Metadata {
            name: name.into(),
            namespace: "default".into(),
            labels: labels.clone().into_iter().collect(),
            ..Default::default()
        };
        let commands: std::collections::HashMap<String, types::CommandLabelV2> = self
            .dynamic
            .iter()
            .map(|(k, v)| {
                let label = types::CommandLabelV2 {
                    period: 60_000_000_000,
                    command: vec!["/bin/echo".into(), v.clone()],
                    result: v.clone(),
                };
                (k.clone(), label)
            })
            .collect();
        let resource = match self.kind.as_str() {
            "app" => Resource::AppServer(types::AppServerV3 {
                kind: "app_server".into(),
                version: "v3".into(),
                metadata: Some(meta(&self.name, &BTreeMap::new())),
                spec: Some(types::AppServerSpecV3 {
                    version: "17.4.2".into(),
                    hostname: format!("{}.sim", self.host_id),
                    host_id: self.host_id.clone(),
                    app: Some(types::AppV3 {
                        kind: "app".into(),
                        version: "v3".into(),
                        metadata: Some(meta(&self.name, &self.labels)),
                        spec: Some(types::AppSpecV3 {
                            uri: format!("http://{}.internal", self.name),
                            dynamic_labels: commands,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }),
            "db" => Resource::DatabaseServer(types::DatabaseServerV3 {
                kind: "db_server".into(),
                version: "v3".into(),
                metadata: Some(meta(&self.name, &BTreeMap::new())),
                spec: Some(types::DatabaseServerSpecV3 {
                    version: "17.4.2".into(),
                    hostname: format!("{}.sim", self.host_id),
                    host_id: self.host_id.clone(),
                    database: Some(types::DatabaseV3 {
                        kind: "db".into(),
                        version: "v3".into(),
                        metadata: Some(meta(&self.name, &self.labels)),
                        spec: Some(types::DatabaseSpecV3 {
                            protocol: "postgres".into(),
                            uri: format!("{}.internal:5432", self.name),
                            dynamic_labels: commands,
                        }),
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }),
            _ => Resource::Node(types::ServerV2 {
                kind: "node".into(),
                version: "v2".into(),
                metadata: Some(meta(&self.name, &self.labels)),
                spec: Some(types::ServerSpecV2 {
                    addr: "127.0.0.1:3022".into(),
                    hostname: self.name.clone(),
                    cmd_labels: commands,
                }),
                ..Default::default()
            }),
        };
        proto::PaginatedResource { resource: Some(resource) }
    }
}

/// Registered resources and the caller's permissions on them.
#[derive(Default)]
pub(super) struct Resources {
    /// (list type, key) → resource.
    items: BTreeMap<(String, String), SimResource>,
    deny: bool,
    visible_without_preview: bool,
    /// Every `ListResources` request received, in order.
    requests: Vec<proto::ListResourcesRequest>,
}

impl TeleportSim {
    /// Registers (or replaces) the node `name` with static `labels`.
    pub fn put_node(&self, name: &str, labels: &[(&str, &str)]) {
        self.put_resource(SimResource::node(name).labels(labels));
    }

    /// Registers (or replaces) a resource; see [`SimResource`].
    pub fn put_resource(&self, r: SimResource) {
        let mut res = self.inner.resources.lock().expect("poisoned");
        res.items.insert((r.list_type().to_string(), r.key()), r);
    }

    /// Removes every record of the resource `kind`/`name` (all its agents);
    /// false when there was none.
    pub fn delete_resource(&self, kind: &str, name: &str) -> bool {
        let mut res = self.inner.resources.lock().expect("poisoned");
        let before = res.items.len();
        res.items.retain(|_, r| !(r.kind == kind && r.name == name));
        res.items.len() != before
    }

    /// ListResources answers PERMISSION_DENIED (the plugin's role lacks
    /// `node: list` / `app_server`, `db_server: list, read`).
    pub fn deny_resource_reads(&self, on: bool) {
        self.inner.resources.lock().expect("poisoned").deny = on;
    }

    /// Resources are visible to the caller's own roles too, not only
    /// through its `preview_as_roles`.
    pub fn resources_visible_without_preview(&self, on: bool) {
        self.inner.resources.lock().expect("poisoned").visible_without_preview = on;
    }

    /// The `ListResources` requests received so far.
    pub fn list_resources_requests(&self) -> Vec<proto::ListResourcesRequest> {
        self.inner.resources.lock().expect("poisoned").requests.clone()
    }
}

/// The `ListResources` handler.
pub(super) async fn list(inner: &Inner, req: Request<proto::ListResourcesRequest>) -> Result<Response<proto::ListResourcesResponse>, Status> {
    inner.enter("ListResources").await?;
    let req = req.into_inner();
    let mut res = inner.resources.lock().expect("poisoned");
    res.requests.push(req.clone());
    let verb_ok = matches!(req.resource_type.as_str(), "node" | "app_server" | "db_server");
    if !verb_ok {
        return Err(Status::unimplemented(format!("resource type {} does not support pagination", req.resource_type)));
    }
    if res.deny {
        return Err(Status::permission_denied(format!(
            "access denied to perform action \"list\" on \"{}\"",
            req.resource_type
        )));
    }
    let limit = match req.limit {
        0 => DEFAULT_LIMIT,
        n if n < 0 => return Err(Status::invalid_argument("negative parameter limit")),
        n => n,
    } as usize;
    if !req.search_keywords.is_empty() {
        return Err(Status::invalid_argument("the simulator does not implement SearchKeywords"));
    }
    let names = if req.predicate_expression.is_empty() {
        None
    } else {
        Some(name_matcher(&req.predicate_expression).map_err(|e| {
            Status::invalid_argument(format!("failed to parse predicate expression {:?}: {e}", req.predicate_expression))
        })?)
    };
    let visible = req.use_preview_as_roles || res.visible_without_preview;
    let mut out = proto::ListResourcesResponse::default();
    let from = (req.resource_type.clone(), req.start_key.clone());
    for ((kind, key), r) in res.items.range(from..) {
        if *kind != req.resource_type {
            break;
        }
        if out.resources.len() == limit {
            out.next_key = key.clone();
            break;
        }
        let matches = names.as_ref().is_none_or(|n| n.contains(&r.name))
            && req.labels.iter().all(|(k, v)| r.labels.get(k) == Some(v));
        if visible && matches {
            out.resources.push(r.to_pb());
        }
    }
    Ok(Response::new(out))
}

/// The names a `resource.metadata.name == "a" || ...` expression accepts.
fn name_matcher(expr: &str) -> Result<Vec<String>, String> {
    const FIELD: &str = "resource.metadata.name";
    let mut names = Vec::new();
    let mut rest = expr.trim_start();
    loop {
        rest = rest.strip_prefix(FIELD).ok_or_else(|| format!("expected {FIELD} at {rest:?}"))?.trim_start();
        rest = rest.strip_prefix("==").ok_or("expected ==")?.trim_start();
        let (name, after) = go_string(rest)?;
        names.push(name);
        rest = after.trim_start();
        if rest.is_empty() {
            return Ok(names);
        }
        rest = rest.strip_prefix("||").ok_or_else(|| format!("expected || at {rest:?}"))?.trim_start();
    }
}

/// Reads one Go string literal (interpreted or raw) at the start of `s`.
fn go_string(s: &str) -> Result<(String, &str), String> {
    if let Some(raw) = s.strip_prefix('`') {
        let end = raw.find('`').ok_or("unterminated raw string")?;
        return Ok((raw[..end].to_string(), &raw[end + 1..]));
    }
    let body = s.strip_prefix('"').ok_or("expected a string literal")?;
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &body[i + 1..])),
            '\n' => return Err("newline in string".into()),
            '\\' => {
                let (_, e) = chars.next().ok_or("unterminated escape")?;
                let mut hex = |n: usize| -> Result<u32, String> {
                    let digits: String = (0..n).filter_map(|_| chars.next().map(|(_, c)| c)).collect();
                    u32::from_str_radix(&digits, 16).map_err(|_| format!("bad escape \\{e}{digits}"))
                };
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'a' => out.push('\x07'),
                    'b' => out.push('\x08'),
                    'f' => out.push('\x0c'),
                    'v' => out.push('\x0b'),
                    '\\' | '"' => out.push(e),
                    'x' => out.push(char::from(hex(2)? as u8)),
                    'u' => out.push(char::from_u32(hex(4)?).ok_or("invalid \\u code point")?),
                    'U' => out.push(char::from_u32(hex(8)?).ok_or("invalid \\U code point")?),
                    '0'..='7' => {
                        let rest: String = (0..2).filter_map(|_| chars.next().map(|(_, c)| c)).collect();
                        let v = u32::from_str_radix(&format!("{e}{rest}"), 8).map_err(|_| "bad octal escape")?;
                        out.push(char::from(u8::try_from(v).map_err(|_| "octal escape out of range")?));
                    }
                    other => return Err(format!("unknown escape \\{other}")),
                }
            }
            c => out.push(c),
        }
    }
    Err("unterminated string".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_matcher_reads_the_plugins_expression() {
        let names = name_matcher(r#"resource.metadata.name == "web-1" || resource.metadata.name == "a\"b\\c\u00e9""#).unwrap();
        assert_eq!(names, vec!["web-1".to_string(), "a\"b\\cé".to_string()]);
        assert_eq!(name_matcher("resource.metadata.name == `raw\\n`").unwrap(), vec!["raw\\n".to_string()]);
        assert!(name_matcher(r#"labels.env == "prod""#).is_err());
        assert!(name_matcher(r#"resource.metadata.name == "a" &&"#).is_err());
        assert!(name_matcher(r#"resource.metadata.name == "a"#).is_err());
    }
}
