//! Compiling `AccessRequestRoute` resources into a routing table (pure).

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use glob::Pattern;

use super::crd::{AccessRequestRoute, RouteMatch, RouteRule};
use crate::engine::route::{ExtraRouting, ExtraRoutes};
use crate::model::AccessRequest;

/// Chats a rule may address.
pub const CHATS: &[&str] = &["slack", "discord", "mattermost", "console"];

#[derive(Debug, Clone)]
struct Compiled {
    /// `<resource>/<rule>` for logs.
    name: String,
    roles: Vec<Pattern>,
    requesters: Vec<Pattern>,
    resource_kinds: Vec<String>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, Vec<String>>,
    recipients: BTreeMap<String, Vec<String>>,
    suppress: bool,
}

impl Compiled {
    fn matches(&self, r: &AccessRequest) -> bool {
        (self.roles.is_empty() || r.roles.iter().any(|role| self.roles.iter().any(|p| p.matches(role))))
            && (self.requesters.is_empty() || self.requesters.iter().any(|p| p.matches(&r.user)))
            && (self.resource_kinds.is_empty()
                || r.requested_resources().any(|res| self.resource_kinds.contains(&res.id.kind)))
            && self.labels.iter().all(|(k, v)| r.labels.get(k) == Some(v))
            && self.annotations.iter().all(|(k, vals)| {
                r.system_annotations.get(k).is_some_and(|have| have.iter().any(|h| vals.contains(h)))
            })
    }
}

/// Validates one resource; on success its compiled rules, else every problem.
fn compile(resource: &str, rules: &[RouteRule]) -> Result<Vec<Compiled>, Vec<String>> {
    let mut problems = Vec::new();
    let mut out = Vec::new();
    if rules.is_empty() {
        problems.push("spec.rules is empty: add at least one rule".to_string());
    }
    for (i, rule) in rules.iter().enumerate() {
        let label = match &rule.name {
            Some(n) => format!("rule {i} ({n})"),
            None => format!("rule {i}"),
        };
        let globs = |field: &str, list: &[String], problems: &mut Vec<String>| -> Vec<Pattern> {
            list.iter()
                .enumerate()
                .filter_map(|(j, p)| match Pattern::new(p) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        problems.push(format!("{label}: match.{field}[{j}] {p:?} is not a valid glob ({})", e.msg));
                        None
                    }
                })
                .collect()
        };
        let RouteMatch { roles, requesters, resource_kinds, labels, annotations } = &rule.matches;
        let roles = globs("roles", roles, &mut problems);
        let requesters = globs("requesters", requesters, &mut problems);
        for chat in rule.recipients.keys() {
            if !CHATS.contains(&chat.as_str()) {
                problems.push(format!("{label}: recipients has unknown chat {chat:?}; use {}", CHATS.join(", ")));
            }
        }
        let recipients: BTreeMap<String, Vec<String>> = rule
            .recipients
            .iter()
            .map(|(chat, list)| (chat.clone(), list.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()))
            .filter(|(_, list): &(String, Vec<String>)| !list.is_empty())
            .collect();
        if !rule.suppress && recipients.is_empty() {
            problems.push(format!("{label}: no recipients; list recipients per chat or set suppress: true"));
        }
        out.push(Compiled {
            name: format!("{resource}/{}", rule.name.clone().unwrap_or_else(|| i.to_string())),
            roles,
            requesters,
            resource_kinds: resource_kinds.clone(),
            labels: labels.clone(),
            annotations: annotations.clone(),
            recipients,
            suppress: rule.suppress,
        });
    }
    if problems.is_empty() { Ok(out) } else { Err(problems) }
}

/// Verdict on one resource, for its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub valid: bool,
    pub message: String,
}

/// Routes from every valid `AccessRequestRoute`, swappable at run time.
#[derive(Default)]
pub struct RouteTable {
    rules: ArcSwap<Vec<Compiled>>,
}

impl RouteTable {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Replaces the table with `resources`; returns a verdict per resource
    /// name. Invalid resources contribute nothing.
    pub fn load(&self, resources: &[AccessRequestRoute]) -> BTreeMap<String, Verdict> {
        let mut rules = Vec::new();
        let mut verdicts = BTreeMap::new();
        for r in resources {
            let name = r.metadata.name.clone().unwrap_or_default();
            match compile(&name, &r.spec.rules) {
                Ok(compiled) => {
                    let n = compiled.len();
                    rules.extend(compiled);
                    verdicts.insert(name, Verdict { valid: true, message: format!("{n} rule{} loaded", if n == 1 { "" } else { "s" }) });
                }
                Err(problems) => {
                    verdicts.insert(name, Verdict { valid: false, message: problems.join("; ") });
                }
            }
        }
        self.rules.store(Arc::new(rules));
        verdicts
    }

    pub fn len(&self) -> usize {
        self.rules.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ExtraRoutes for RouteTable {
    fn route(&self, chat: &str, request: &AccessRequest) -> ExtraRouting {
        let rules = self.rules.load();
        let mut out = ExtraRouting::default();
        for rule in rules.iter().filter(|r| r.matches(request)) {
            if rule.suppress {
                out.suppressed_by.get_or_insert_with(|| rule.name.clone());
            }
            for r in rule.recipients.get(chat).into_iter().flatten() {
                if !out.recipients.contains(r) {
                    out.recipients.push(r.clone());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::crd::AccessRequestRouteSpec;
    use crate::model::{ConstrainedResource, ResourceConstraints, ResourceId};

    fn resource(name: &str, rules: Vec<RouteRule>) -> AccessRequestRoute {
        let mut r = AccessRequestRoute::new(name, AccessRequestRouteSpec { rules });
        r.metadata.namespace = Some("teleport".into());
        r
    }

    fn rule(roles: &[&str], slack: &[&str]) -> RouteRule {
        RouteRule {
            name: None,
            matches: RouteMatch { roles: roles.iter().map(|s| s.to_string()).collect(), ..Default::default() },
            recipients: [("slack".to_string(), slack.iter().map(|s| s.to_string()).collect())].into(),
            suppress: false,
        }
    }

    fn req(roles: &[&str]) -> AccessRequest {
        AccessRequest::new_pending("id", "alice@example.com", roles.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn globs_and_exact_roles_route_per_chat() {
        let t = RouteTable::default();
        let v = t.load(&[resource("r", vec![rule(&["dev-*"], &["#dev"]), rule(&["ops"], &["#ops", "#dev"])])]);
        assert!(v["r"].valid, "{v:?}");
        assert_eq!(t.route("slack", &req(&["dev-backend"])).recipients, vec!["#dev"]);
        assert_eq!(t.route("slack", &req(&["ops", "dev-x"])).recipients, vec!["#dev", "#ops"]);
        assert!(t.route("discord", &req(&["ops"])).recipients.is_empty());
        assert!(t.route("slack", &req(&["qa"])).recipients.is_empty());
    }

    #[test]
    fn every_given_criterion_must_match() {
        let t = RouteTable::default();
        let mut r = rule(&["db-*"], &["#dba"]);
        r.matches.requesters = vec!["*@example.com".into()];
        r.matches.resource_kinds = vec!["db".into()];
        r.matches.labels = [("env".to_string(), "prod".to_string())].into();
        r.matches.annotations = [("team".to_string(), vec!["payments".to_string()])].into();
        t.load(&[resource("r", vec![r])]);
        let mut q = req(&["db-admin"]);
        q.resources.push(ResourceId { cluster: "c".into(), kind: "db".into(), name: "pg".into(), sub_resource: String::new() });
        q.labels.insert("env".into(), "prod".into());
        q.system_annotations.insert("team".into(), vec!["payments".into(), "core".into()]);
        assert_eq!(t.route("slack", &q).recipients, vec!["#dba"]);
        // A resource requested with constraints counts for `resourceKinds` too.
        let mut constrained = q.clone();
        constrained.constrained_resources.push(ConstrainedResource {
            id: constrained.resources.remove(0),
            constraints: ResourceConstraints::SshLogins(vec!["postgres".into()]),
        });
        assert_eq!(t.route("slack", &constrained).recipients, vec!["#dba"]);
        let mut wrong_user = q.clone();
        wrong_user.user = "eve@evil.example".into();
        assert!(t.route("slack", &wrong_user).recipients.is_empty());
        let mut wrong_label = q.clone();
        wrong_label.labels.insert("env".into(), "dev".into());
        assert!(t.route("slack", &wrong_label).recipients.is_empty());
        let mut no_kind = q;
        no_kind.resources.clear();
        assert!(t.route("slack", &no_kind).recipients.is_empty());
    }

    #[test]
    fn suppress_silences() {
        let t = RouteTable::default();
        let mut mute = rule(&["auditor"], &[]);
        mute.recipients.clear();
        mute.suppress = true;
        mute.name = Some("quiet".into());
        t.load(&[resource("r", vec![mute])]);
        assert_eq!(t.route("slack", &req(&["auditor"])).suppressed_by.as_deref(), Some("r/quiet"));
        assert_eq!(t.route("slack", &req(&["dev"])).suppressed_by, None);
    }

    #[test]
    fn invalid_resources_are_reported_and_ignored() {
        let t = RouteTable::default();
        let mut bad = rule(&["[dev"], &["#x"]);
        bad.recipients.insert("slak".into(), vec!["#y".into()]);
        let empty = rule(&["qa"], &[]);
        let verdicts = t.load(&[resource("bad", vec![bad, empty]), resource("none", vec![]), resource("good", vec![rule(&["*"], &["#all"])])]);
        let msg = &verdicts["bad"].message;
        assert!(!verdicts["bad"].valid);
        assert!(msg.contains("rule 0: match.roles[0] \"[dev\" is not a valid glob"), "{msg}");
        assert!(msg.contains("unknown chat \"slak\""), "{msg}");
        assert!(msg.contains("rule 1: no recipients"), "{msg}");
        assert!(verdicts["none"].message.contains("spec.rules is empty"));
        assert!(verdicts["good"].valid);
        assert_eq!(t.len(), 1, "only the valid resource's rules");
    }
}
