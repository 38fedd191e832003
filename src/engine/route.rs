//! Who gets told about a request, for one chat.
//!
//! Sources, in order of precedence (as the official plugins, plus ours):
//! 1. Access Monitoring Rules addressed to this plugin (`notification.name`,
//!    as the newest official plugins select them) whose schedules contain the
//!    request's creation time and whose condition matches: their recipients
//!    *replace* the static routing. When the evaluation context (the
//!    requester's traits, the labels of the requested resources) cannot be
//!    built, rules are skipped and the static routing used, as upstream; the
//!    reason is logged once.
//! 2. Otherwise the static `role_to_recipients` map (a role's own entry, or
//!    `"*"` for roles without one), plus routes from `AccessRequestRoute`
//!    resources, plus the suggested reviewers that are emails.
//!
//! A matching route with `suppress` silences the request in this chat.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use tracing::warn;

use super::predicate::labels::{self, Labels};
use super::predicate::{Condition, RequestFacts};
use crate::config::RoleRecipients;
use crate::model::{AccessRequest, MonitoringRule};

/// Suggested reviewers are notified only when they are emails, by the same
/// test the chat clients use to tell an email from a channel name: a looser
/// one here would send a non-email reviewer to a chat as a channel.
pub use crate::chat::text::looks_like_email;

/// Routes contributed by another source (the Kubernetes CRD): given a
/// request, the recipients for one chat and whether it is silenced.
pub trait ExtraRoutes: Send + Sync {
    fn route(&self, chat: &str, request: &AccessRequest) -> ExtraRouting;
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtraRouting {
    pub recipients: Vec<String>,
    /// Name of a matching route that silences the request, if any.
    pub suppressed_by: Option<String>,
}

/// The outcome of routing one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    pub recipients: Vec<String>,
    /// Where the recipients came from, for logs.
    pub source: &'static str,
    pub suppressed_by: Option<String>,
}

struct Rule {
    recipients: Vec<String>,
    condition: Result<Condition, String>,
    schedules: BTreeMap<String, crate::model::Schedule>,
}

/// What rules are evaluated against besides the request itself, read by the
/// caller (the worker) and handed over as data.
#[derive(Debug, Clone)]
pub struct EvalContext {
    /// The requester's traits; `Err` (why) when they could not be read for a
    /// reason other than a missing permission, which skips every rule.
    pub user_traits: Result<BTreeMap<String, Vec<String>>, String>,
    /// Labels of each requested resource Teleport listed (one that is gone
    /// or hidden from the plugin is simply absent, as upstream); `Err` (why)
    /// when they could not be listed, which skips every rule, as upstream
    /// (a missing permission included: upstream has no exception for it).
    pub resource_labels: Result<Vec<Labels>, String>,
}

impl EvalContext {
    /// Traits known (empty when the plugin may not read users: conditions on
    /// them are then false, as upstream); no resource labels.
    pub fn with_traits(user_traits: BTreeMap<String, Vec<String>>) -> Self {
        Self { user_traits: Ok(user_traits), resource_labels: Ok(Vec::new()) }
    }

    /// Sets the labels of the requested resources (or why they are missing).
    pub fn with_resource_labels(mut self, labels: Result<Vec<Labels>, String>) -> Self {
        self.resource_labels = labels;
        self
    }

    pub fn unavailable(why: impl Into<String>) -> Self {
        Self { user_traits: Err(why.into()), resource_labels: Ok(Vec::new()) }
    }
}

pub struct Router {
    plugin: &'static str,
    static_routes: RoleRecipients,
    rules: RwLock<BTreeMap<String, Rule>>,
    extra: Option<Arc<dyn ExtraRoutes>>,
    /// Rules whose condition we already reported as unusable.
    reported: Mutex<HashSet<(String, String)>>,
}

impl Router {
    pub fn new(plugin: &'static str, static_routes: RoleRecipients) -> Self {
        Self { plugin, static_routes, rules: RwLock::default(), extra: None, reported: Mutex::default() }
    }

    pub fn with_extra(mut self, extra: Arc<dyn ExtraRoutes>) -> Self {
        self.extra = Some(extra);
        self
    }

    /// Replaces every Access Monitoring Rule (after a (re)load).
    pub fn set_rules(&self, rules: Vec<MonitoringRule>) {
        let mut map = BTreeMap::new();
        for r in rules {
            if let Some((name, rule)) = self.compile(r) {
                map.insert(name, rule);
            }
        }
        *self.rules.write().expect("poisoned") = map;
    }

    pub fn put_rule(&self, rule: MonitoringRule) {
        let name = rule.name.clone();
        let compiled = self.compile(rule);
        let mut rules = self.rules.write().expect("poisoned");
        match compiled {
            Some((name, r)) => {
                rules.insert(name, r);
            }
            // A rule that no longer applies to us is dropped.
            None => {
                rules.remove(&name);
            }
        }
    }

    pub fn delete_rule(&self, name: &str) {
        self.rules.write().expect("poisoned").remove(name);
    }

    pub fn rule_count(&self) -> usize {
        self.rules.read().expect("poisoned").len()
    }

    fn compile(&self, r: MonitoringRule) -> Option<(String, Rule)> {
        if !r.subjects.iter().any(|s| s == "access_request") || r.notification_name != self.plugin {
            return None;
        }
        let condition = Condition::parse(&r.condition).map_err(|e| e.to_string());
        if let Err(e) = &condition {
            let key = (r.name.clone(), r.condition.clone());
            if self.reported.lock().expect("poisoned").insert(key) {
                warn!(rule = %r.name, error = %e, "Access Monitoring Rule condition is not supported; the rule never matches");
            }
        }
        Some((r.name, Rule { recipients: r.recipients, condition, schedules: r.schedules }))
    }

    /// Whether some rule reads `user.traits`, i.e. routing needs the
    /// requester's traits (looked up only then).
    pub fn needs_user_traits(&self) -> bool {
        self.any_condition(Condition::uses_user_traits)
    }

    /// Whether some rule reads `resource_labels_union` / `_intersection`,
    /// i.e. routing needs the labels of the requested resources (listed only
    /// then, and only for requests that name resources).
    pub fn needs_resource_labels(&self) -> bool {
        self.any_condition(Condition::uses_resource_labels)
    }

    fn any_condition(&self, f: impl Fn(&Condition) -> bool) -> bool {
        self.rules.read().expect("poisoned").values().any(|r| r.condition.as_ref().is_ok_and(&f))
    }

    /// Logs `message` once per distinct (`key`, `detail`).
    fn warn_once(&self, key: &str, detail: &str, message: &str) {
        if self.reported.lock().expect("poisoned").insert((key.to_string(), detail.to_string())) {
            warn!(rule = key, reason = detail, "{message}");
        }
    }

    /// Recipients of the rules that apply to `req`; empty when none match or
    /// the context could not be built.
    fn rule_recipients(&self, req: &AccessRequest, ctx: &EvalContext) -> Recipients {
        let mut out = Recipients::default();
        let rules = self.rules.read().expect("poisoned");
        if rules.is_empty() {
            return out;
        }
        let (traits, resources) = match (&ctx.user_traits, &ctx.resource_labels) {
            (Ok(t), Ok(r)) => (t, r),
            (Err(why), _) | (_, Err(why)) => {
                self.warn_once(
                    "",
                    why,
                    "Access Monitoring Rules skipped, static routing used: their evaluation context could not be built",
                );
                return out;
            }
        };
        let (union, intersection) = (labels::union(resources), labels::intersection(resources));
        let facts = RequestFacts {
            user: &req.user,
            roles: &req.roles,
            suggested_reviewers: &req.suggested_reviewers,
            request_reason: &req.request_reason,
            system_annotations: &req.system_annotations,
            plugin_name: self.plugin,
            user_traits: traits,
            resource_labels_union: &union,
            resource_labels_intersection: &intersection,
            creation_time: req.created,
            expiry: req.expires,
        };
        for (name, rule) in rules.iter() {
            if !rule.schedules.is_empty() {
                // An unset creation time is outside every schedule.
                let inside = req.created.map(|t| super::schedule::in_schedules(&rule.schedules, t)).unwrap_or(Ok(false));
                match inside {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        self.warn_once(name, &e, "Access Monitoring Rule schedule is invalid; the rule is skipped");
                        continue;
                    }
                }
            }
            if rule.condition.as_ref().is_ok_and(|c| c.matches(&facts)) {
                out.extend(&rule.recipients);
            }
        }
        out
    }

    /// Raw recipients for `req` (before the chat resolves them).
    pub fn route(&self, req: &AccessRequest, ctx: &EvalContext) -> Routing {
        let extra = self.extra.as_ref().map(|e| e.route(self.plugin, req)).unwrap_or_default();
        if extra.suppressed_by.is_some() {
            return Routing { recipients: Vec::new(), source: "suppressed", suppressed_by: extra.suppressed_by };
        }
        let mut out = self.rule_recipients(req, ctx);
        if !out.0.is_empty() {
            return Routing { recipients: out.0, source: "access monitoring rules", suppressed_by: None };
        }
        let mut used_default = false;
        for role in &req.roles {
            match self.static_routes.get(role).filter(|v| !v.is_empty()) {
                Some(list) => out.extend(list),
                None if !used_default => {
                    used_default = true;
                    if let Some(list) = self.static_routes.get("*") {
                        out.extend(list);
                    }
                }
                None => {}
            }
        }
        out.extend(&extra.recipients);
        out.extend(req.suggested_reviewers.iter().filter(|r| looks_like_email(r)));
        Routing { recipients: out.0, source: "role_to_recipients", suppressed_by: None }
    }
}

/// An ordered set of recipient strings.
#[derive(Default)]
struct Recipients(Vec<String>);

impl Recipients {
    fn extend<'a>(&mut self, items: impl IntoIterator<Item = &'a String>) {
        for i in items {
            if !self.0.contains(i) {
                self.0.push(i.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(pairs: &[(&str, &[&str])]) -> RoleRecipients {
        pairs.iter().map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect())).collect()
    }

    fn req(roles: &[&str], suggested: &[&str]) -> AccessRequest {
        let mut r = AccessRequest::new_pending("id", "alice@example.com", roles.iter().map(|s| s.to_string()).collect());
        r.suggested_reviewers = suggested.iter().map(|s| s.to_string()).collect();
        r
    }

    fn rule(name: &str, cond: &str, plugin: &str, to: &[&str]) -> MonitoringRule {
        MonitoringRule {
            name: name.into(),
            subjects: vec!["access_request".into()],
            condition: cond.into(),
            notification_name: plugin.into(),
            recipients: to.iter().map(|s| s.to_string()).collect(),
            schedules: BTreeMap::new(),
        }
    }

    fn no_ctx() -> EvalContext {
        EvalContext::with_traits(BTreeMap::new())
    }

    #[test]
    fn static_routing_uses_the_role_entry_else_the_default_once() {
        let r = Router::new("slack", routes(&[("*", &["#all"]), ("dev", &["#dev", "#shared"]), ("ops", &["#shared"])]));
        let cases: &[(&[&str], &[&str])] = &[
            (&["dev"], &["#dev", "#shared"]),
            (&["qa"], &["#all"]),
            (&["qa", "sec"], &["#all"]),
            (&["dev", "ops", "qa"], &["#dev", "#shared", "#all"]),
        ];
        for (roles, want) in cases {
            assert_eq!(r.route(&req(roles, &[]), &no_ctx()).recipients, *want, "roles {roles:?}");
        }
    }

    #[test]
    fn suggested_reviewers_are_added_when_they_are_emails() {
        let r = Router::new("slack", routes(&[("*", &["#all"])]));
        let got = r.route(
            &req(&["x"], &["bob@example.com", "not an email", "carol", "#all", "a@b@c.com", "eve@example.com/general", "eve\0@example.com"]),
            &no_ctx(),
        );
        assert_eq!(got.recipients, vec!["#all", "bob@example.com"]);
    }

    #[test]
    fn matching_rules_replace_static_routing() {
        let r = Router::new("slack", routes(&[("*", &["#all"])]));
        r.set_rules(vec![
            rule("dev", r#"access_request.spec.roles.contains("dev")"#, "slack", &["#dev-amr"]),
            rule("other-plugin", "true", "discord", &["123"]),
            rule("bad", "regexp.match(x)", "slack", &["#never"]),
        ]);
        assert_eq!(r.rule_count(), 2, "rules for other plugins are ignored");
        let got = r.route(&req(&["dev"], &["bob@example.com"]), &no_ctx());
        assert_eq!((got.recipients, got.source), (vec!["#dev-amr".to_string()], "access monitoring rules"));
        assert_eq!(r.route(&req(&["qa"], &[]), &no_ctx()).recipients, vec!["#all"]);
        r.delete_rule("dev");
        assert_eq!(r.route(&req(&["dev"], &[]), &no_ctx()).recipients, vec!["#all"]);
    }

    #[test]
    fn a_rule_updated_away_from_this_plugin_is_dropped() {
        let r = Router::new("slack", RoleRecipients::new());
        r.put_rule(rule("x", "true", "slack", &["#a"]));
        assert_eq!(r.rule_count(), 1);
        r.put_rule(rule("x", "true", "mattermost", &["#a"]));
        assert_eq!(r.rule_count(), 0);
    }

    #[test]
    fn schedules_gate_rules_by_creation_time() {
        use crate::model::{Schedule, Shift};
        use std::time::{Duration, UNIX_EPOCH};
        let r = Router::new("slack", routes(&[("*", &["#all"])]));
        let mut office = rule("office", "true", "slack", &["#office"]);
        let shift = Shift { weekday: "Monday".into(), start: "09:00".into(), end: "17:00".into() };
        office.schedules.insert("hours".into(), Schedule { timezone: Some("Europe/Lisbon".into()), shifts: vec![shift] });
        let mut broken = rule("broken", "true", "slack", &["#never"]);
        broken.schedules.insert("x".into(), Schedule { timezone: Some("Nowhere/Land".into()), shifts: vec![Shift {
            weekday: "Monday".into(),
            start: "00:00".into(),
            end: "23:59".into(),
        }] });
        r.set_rules(vec![office, broken]);
        let mut q = req(&["dev"], &[]);
        // Monday 2025-08-11 14:30 UTC = 15:30 in Lisbon.
        q.created = Some(UNIX_EPOCH + Duration::from_secs(1_754_922_600));
        assert_eq!(r.route(&q, &no_ctx()).recipients, vec!["#office"]);
        // 18:30 UTC = 19:30 in Lisbon: outside, static routing.
        q.created = Some(UNIX_EPOCH + Duration::from_secs(1_754_922_600 + 4 * 3600));
        assert_eq!(r.route(&q, &no_ctx()).recipients, vec!["#all"]);
        q.created = None;
        assert_eq!(r.route(&q, &no_ctx()).recipients, vec!["#all"]);
    }

    #[test]
    fn trait_conditions_and_an_unbuildable_context() {
        let r = Router::new("slack", routes(&[("*", &["#all"])]));
        assert!(!r.needs_user_traits());
        r.set_rules(vec![
            rule("payments", r#"user.traits["team"].contains("payments")"#, "slack", &["#payments"]),
            rule("everyone", "true", "slack", &["#amr"]),
        ]);
        assert!(r.needs_user_traits());
        let q = req(&["dev"], &[]);
        let team = EvalContext::with_traits([("team".to_string(), vec!["payments".to_string()])].into());
        assert_eq!(r.route(&q, &team).recipients, vec!["#amr", "#payments"]);
        assert_eq!(r.route(&q, &no_ctx()).recipients, vec!["#amr"]);
        // No context: every rule is skipped, static routing applies.
        let got = r.route(&q, &EvalContext::unavailable("reading the requester's traits failed (Unavailable)"));
        assert_eq!((got.recipients, got.source), (vec!["#all".to_string()], "role_to_recipients"));
    }

    #[test]
    fn resource_label_conditions_and_unreadable_resources() {
        let r = Router::new("slack", routes(&[("*", &["#all"])]));
        r.set_rules(vec![rule(
            "prod",
            r#"access_request.spec.resource_labels_intersection["env"].contains("prod")"#,
            "slack",
            &["#prod"],
        )]);
        assert!(r.needs_resource_labels() && !r.needs_user_traits());
        let labels = |pairs: &[&[(&str, &str)]]| -> Vec<Labels> {
            pairs.iter().map(|p| p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()).collect()
        };
        let q = req(&["dev"], &[]);
        let ctx = |l: Vec<Labels>| no_ctx().with_resource_labels(Ok(l));
        let both_prod = ctx(labels(&[&[("env", "prod")], &[("env", "prod"), ("team", "a")]]));
        assert_eq!(r.route(&q, &both_prod).recipients, vec!["#prod"]);
        let mixed = ctx(labels(&[&[("env", "prod")], &[("env", "dev")]]));
        assert_eq!(r.route(&q, &mixed).recipients, vec!["#all"]);
        assert_eq!(r.route(&q, &ctx(vec![])).recipients, vec!["#all"], "no resource found");
        // Labels that could not be listed skip every rule, as upstream.
        let denied = no_ctx().with_resource_labels(Err("listing the requested resources failed (PermissionDenied)".into()));
        let got = r.route(&q, &denied);
        assert_eq!((got.recipients, got.source), (vec!["#all".to_string()], "role_to_recipients"));
    }

    struct Fixed(ExtraRouting);
    impl ExtraRoutes for Fixed {
        fn route(&self, _: &str, _: &AccessRequest) -> ExtraRouting {
            self.0.clone()
        }
    }

    #[test]
    fn extra_routes_merge_and_can_suppress() {
        let add = Router::new("slack", routes(&[("*", &["#all"])]))
            .with_extra(Arc::new(Fixed(ExtraRouting { recipients: vec!["#crd".into(), "#all".into()], suppressed_by: None })));
        assert_eq!(add.route(&req(&["x"], &[]), &no_ctx()).recipients, vec!["#all", "#crd"]);
        let mute = Router::new("slack", routes(&[("*", &["#all"])]))
            .with_extra(Arc::new(Fixed(ExtraRouting { recipients: vec![], suppressed_by: Some("quiet".into()) })));
        let got = mute.route(&req(&["x"], &[]), &no_ctx());
        assert!(got.recipients.is_empty());
        assert_eq!(got.suppressed_by.as_deref(), Some("quiet"));
    }
}
