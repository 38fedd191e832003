//! Authentication by bearer token and authorization by RBAC, as the apiserver
//! applies them to resource requests.
//!
//! Until a test loads RBAC objects the server authorizes nothing (every request
//! passes, as the existing tests expect). Once loaded, each request is checked
//! against the Roles and ClusterRoles bound to its user: tokens minted by
//! [`Policy::token_for`] stand for service accounts, a request without a token
//! is `system:anonymous`, and an unknown token is refused with 401.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use serde_json::{Value, json};

use super::status::ApiError;

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserInfo {
    pub name: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    /// The user a service account token authenticates as, with the groups the
    /// apiserver adds to every service account.
    pub fn service_account(ns: &str, name: &str) -> Self {
        UserInfo {
            name: format!("system:serviceaccount:{ns}:{name}"),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".into(),
            ],
        }
    }

    fn anonymous() -> Self {
        UserInfo {
            name: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
        }
    }
}

/// What a request asks to do, as the authorizer sees it.
#[derive(Debug, Clone)]
pub(crate) struct Attributes<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub namespace: &'a str,
    /// The object name; for list and watch, the name a `metadata.name=` field
    /// selector pins (so `resourceNames` rules can allow them).
    pub name: &'a str,
}

#[derive(Debug, Default)]
pub(crate) struct Policy {
    /// RBAC objects have been loaded: authorize every request from now on.
    enforcing: bool,
    tokens: HashMap<String, UserInfo>,
    roles: BTreeMap<(String, String), Vec<PolicyRule>>,
    cluster_roles: BTreeMap<String, Vec<PolicyRule>>,
    role_bindings: BTreeMap<(String, String), (RoleRef, Vec<Subject>)>,
    cluster_role_bindings: BTreeMap<String, (RoleRef, Vec<Subject>)>,
}

impl Policy {
    /// A bearer token authenticating as the service account `ns/name`
    /// (the same token each time for the same account).
    pub fn token_for(&mut self, ns: &str, name: &str) -> String {
        let user = UserInfo::service_account(ns, name);
        if let Some((token, _)) = self.tokens.iter().find(|(_, u)| **u == user) {
            return token.clone();
        }
        let token = format!("sim-sa-{}", uuid::Uuid::new_v4().simple());
        self.tokens.insert(token.clone(), user);
        token
    }

    /// Adds or replaces one Role, ClusterRole, RoleBinding or ClusterRoleBinding
    /// and turns enforcement on.
    pub fn apply(&mut self, obj: Value) -> Result<(), String> {
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("").to_string();
        let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        if api_version != "rbac.authorization.k8s.io/v1" {
            return Err(format!(
                "{kind}: apiVersion {api_version:?} is not rbac.authorization.k8s.io/v1"
            ));
        }
        let bad = |e: serde_json::Error| format!("{kind}: {e}");
        match kind.as_str() {
            "Role" => {
                let role: Role = serde_json::from_value(obj).map_err(bad)?;
                let key = namespaced_key(&role.metadata, "Role")?;
                self.roles.insert(key, role.rules.unwrap_or_default());
            }
            "ClusterRole" => {
                let role: ClusterRole = serde_json::from_value(obj).map_err(bad)?;
                let name = role.metadata.name.ok_or("ClusterRole without a name")?;
                self.cluster_roles.insert(name, role.rules.unwrap_or_default());
            }
            "RoleBinding" => {
                let b: RoleBinding = serde_json::from_value(obj).map_err(bad)?;
                let key = namespaced_key(&b.metadata, "RoleBinding")?;
                self.role_bindings
                    .insert(key, (b.role_ref, b.subjects.unwrap_or_default()));
            }
            "ClusterRoleBinding" => {
                let b: ClusterRoleBinding = serde_json::from_value(obj).map_err(bad)?;
                let name = b.metadata.name.ok_or("ClusterRoleBinding without a name")?;
                self.cluster_role_bindings
                    .insert(name, (b.role_ref, b.subjects.unwrap_or_default()));
            }
            other => return Err(format!("{other:?} is not an RBAC kind")),
        }
        self.enforcing = true;
        Ok(())
    }

    /// Who sent a request with this `Authorization` header value (`None`
    /// while nothing is enforced).
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Option<UserInfo>, ApiError> {
        if !self.enforcing {
            return Ok(None);
        }
        let Some(header) = authorization else {
            return Ok(Some(UserInfo::anonymous()));
        };
        let token = header.strip_prefix("Bearer ").unwrap_or("").trim();
        self.tokens
            .get(token)
            .cloned()
            .map(Some)
            .ok_or_else(|| ApiError::new(401, "Unauthorized", "Unauthorized"))
    }

    /// Allows the request or answers 403 like the apiserver.
    pub fn authorize(&self, user: &UserInfo, attrs: &Attributes<'_>) -> Result<(), ApiError> {
        if self.allows(user, attrs) {
            Ok(())
        } else {
            Err(forbidden(user, attrs))
        }
    }

    fn allows(&self, user: &UserInfo, attrs: &Attributes<'_>) -> bool {
        let cluster_wide = self
            .cluster_role_bindings
            .values()
            .filter(|(_, subjects)| subjects.iter().any(|s| applies(s, user, "")))
            .any(|(role_ref, _)| {
                role_ref.kind == "ClusterRole" && self.rules_allow(self.cluster_roles.get(&role_ref.name), attrs)
            });
        if cluster_wide {
            return true;
        }
        if attrs.namespace.is_empty() {
            return false;
        }
        self.role_bindings
            .iter()
            .filter(|((ns, _), (_, subjects))| {
                ns == attrs.namespace && subjects.iter().any(|s| applies(s, user, ns))
            })
            .any(|((ns, _), (role_ref, _))| {
                let rules = match role_ref.kind.as_str() {
                    "Role" => self.roles.get(&(ns.clone(), role_ref.name.clone())),
                    "ClusterRole" => self.cluster_roles.get(&role_ref.name),
                    _ => None,
                };
                self.rules_allow(rules, attrs)
            })
    }

    fn rules_allow(&self, rules: Option<&Vec<PolicyRule>>, attrs: &Attributes<'_>) -> bool {
        rules.is_some_and(|rules| rules.iter().any(|r| rule_allows(r, attrs)))
    }
}

fn namespaced_key(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    kind: &str,
) -> Result<(String, String), String> {
    let name = meta.name.clone().ok_or_else(|| format!("{kind} without a name"))?;
    let ns = meta.namespace.clone().unwrap_or_else(|| "default".into());
    Ok((ns, name))
}

/// Whether a binding subject names the user; a service account subject
/// without a namespace means the binding's own.
fn applies(subject: &Subject, user: &UserInfo, binding_ns: &str) -> bool {
    match subject.kind.as_str() {
        "User" => subject.name == user.name,
        "Group" => user.groups.contains(&subject.name),
        "ServiceAccount" => {
            let ns = subject.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or(binding_ns);
            user.name == format!("system:serviceaccount:{ns}:{}", subject.name)
        }
        _ => false,
    }
}

/// One rule against one request: verb, API group, resource (with
/// `resource/subresource` and `*/subresource` forms) and, when the rule lists
/// them, the object name.
fn rule_allows(rule: &PolicyRule, attrs: &Attributes<'_>) -> bool {
    let has = |list: &Option<Vec<String>>, want: &str| {
        list.as_ref().is_some_and(|l| l.iter().any(|x| x == "*" || x == want))
    };
    let combined = match attrs.subresource {
        Some(sub) => format!("{}/{sub}", attrs.resource),
        None => attrs.resource.to_string(),
    };
    let resource_ok = rule.resources.as_ref().is_some_and(|l| {
        l.iter().any(|r| {
            r == "*" || *r == combined || attrs.subresource.is_some_and(|sub| *r == format!("*/{sub}"))
        })
    });
    let name_ok = match &rule.resource_names {
        None => true,
        Some(names) if names.is_empty() => true,
        Some(names) => !attrs.name.is_empty() && names.iter().any(|n| n == attrs.name),
    };
    rule.verbs.iter().any(|v| v == "*" || v == attrs.verb)
        && has(&rule.api_groups, attrs.group)
        && resource_ok
        && name_ok
}

/// The apiserver's 403: `<resource> "<name>" is forbidden: User "..." cannot
/// <verb> resource "<resource[/sub]>" in API group "<group>" in the namespace
/// "<ns>"` (or `at the cluster scope`).
fn forbidden(user: &UserInfo, attrs: &Attributes<'_>) -> ApiError {
    let resource = match attrs.subresource {
        Some(sub) => format!("{}/{sub}", attrs.resource),
        None => attrs.resource.to_string(),
    };
    let scope = if attrs.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace {:?}", attrs.namespace)
    };
    let why = format!(
        "User {:?} cannot {} resource {resource:?} in API group {:?} {scope}",
        user.name, attrs.verb, attrs.group
    );
    let qualified = if attrs.group.is_empty() {
        attrs.resource.to_string()
    } else {
        format!("{}.{}", attrs.resource, attrs.group)
    };
    let message = if attrs.name.is_empty() {
        format!("{qualified} is forbidden: {why}")
    } else {
        format!("{qualified} {:?} is forbidden: {why}", attrs.name)
    };
    let mut err = ApiError::new(403, "Forbidden", message);
    err.details = Some(json!({"name": attrs.name, "group": attrs.group, "kind": attrs.resource}));
    err
}

/// The name an exact `metadata.name` field selector pins, as the apiserver
/// reads it for authorizing list and watch.
pub(crate) fn selector_name(field_selector: &str) -> Option<&str> {
    field_selector.split(',').find_map(|term| {
        let term = term.trim();
        let value = term
            .strip_prefix("metadata.name==")
            .or_else(|| term.strip_prefix("metadata.name="))?;
        let valid = !value.is_empty()
            && value != "."
            && value != ".."
            && !value.contains('/')
            && !value.contains('%');
        valid.then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml_docs: &[Value]) -> Policy {
        let mut p = Policy::default();
        for d in yaml_docs {
            p.apply(d.clone()).unwrap();
        }
        p
    }

    fn role(ns: &str, name: &str, rules: Value) -> Value {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
               "metadata": {"name": name, "namespace": ns}, "rules": rules})
    }

    fn binding(ns: &str, name: &str, role_kind: &str, role: &str, sa: &str) -> Value {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": name, "namespace": ns},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
               "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}]})
    }

    fn attrs<'a>(verb: &'a str, resource: &'a str, sub: Option<&'a str>, ns: &'a str, name: &'a str) -> Attributes<'a> {
        Attributes { verb, group: if resource == "secrets" { "" } else { "g.dev" }, resource, subresource: sub, namespace: ns, name }
    }

    #[test]
    fn named_rules_allow_only_that_name_and_subresources_are_separate() {
        let p = policy(&[
            role("ns", "r", json!([
                {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["id"], "verbs": ["get", "watch"]},
                {"apiGroups": ["g.dev"], "resources": ["things/status"], "verbs": ["patch"]},
            ])),
            binding("ns", "b", "Role", "r", "sa"),
        ]);
        let sa = UserInfo::service_account("ns", "sa");
        assert!(p.authorize(&sa, &attrs("get", "secrets", None, "ns", "id")).is_ok());
        assert!(p.authorize(&sa, &attrs("watch", "secrets", None, "ns", "id")).is_ok());
        // A list without a pinned name does not match a named rule.
        assert!(p.authorize(&sa, &attrs("watch", "secrets", None, "ns", "")).is_err());
        assert!(p.authorize(&sa, &attrs("get", "secrets", None, "ns", "other")).is_err());
        assert!(p.authorize(&sa, &attrs("list", "secrets", None, "ns", "id")).is_err());
        assert!(p.authorize(&sa, &attrs("get", "secrets", None, "elsewhere", "id")).is_err());
        assert!(p.authorize(&sa, &attrs("patch", "things", Some("status"), "ns", "x")).is_ok());
        assert!(p.authorize(&sa, &attrs("patch", "things", None, "ns", "x")).is_err());
        let other = UserInfo::service_account("ns", "intruder");
        assert!(p.authorize(&other, &attrs("get", "secrets", None, "ns", "id")).is_err());
    }

    #[test]
    fn denials_read_like_the_apiserver() {
        let p = policy(&[role("ns", "r", json!([]))]);
        let sa = UserInfo::service_account("ns", "sa");
        let e = p.authorize(&sa, &attrs("watch", "secrets", None, "ns", "x")).unwrap_err();
        assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"));
        assert_eq!(
            e.message,
            r#"secrets "x" is forbidden: User "system:serviceaccount:ns:sa" cannot watch resource "secrets" in API group "" in the namespace "ns""#
        );
        let e = p.authorize(&sa, &attrs("patch", "things", Some("status"), "ns", "")).unwrap_err();
        assert_eq!(
            e.message,
            r#"things.g.dev is forbidden: User "system:serviceaccount:ns:sa" cannot patch resource "things/status" in API group "g.dev" in the namespace "ns""#
        );
        assert_eq!(e.details.unwrap()["kind"], "things");
    }

    #[test]
    fn cluster_roles_bound_per_namespace_or_cluster_wide() {
        let cr = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                        "metadata": {"name": "reader"},
                        "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["list"]}]});
        let p = policy(&[cr.clone(), binding("ns", "b", "ClusterRole", "reader", "sa")]);
        let sa = UserInfo::service_account("ns", "sa");
        assert!(p.authorize(&sa, &attrs("list", "things", None, "ns", "")).is_ok());
        assert!(p.authorize(&sa, &attrs("list", "things", None, "other", "")).is_err());
        let crb = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                         "metadata": {"name": "all"},
                         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "reader"},
                         "subjects": [{"kind": "Group", "name": "system:serviceaccounts"}]});
        let p = policy(&[cr, crb]);
        assert!(p.authorize(&sa, &attrs("list", "things", None, "other", "")).is_ok());
        assert!(p.authorize(&sa, &attrs("get", "things", None, "other", "x")).is_err());
    }

    #[test]
    fn tokens_identify_service_accounts_once_enforcing() {
        let mut p = Policy::default();
        let token = p.token_for("ns", "sa");
        assert_eq!(p.token_for("ns", "sa"), token);
        assert_eq!(p.authenticate(Some("Bearer nonsense")).unwrap(), None, "nothing enforced yet");
        p.apply(role("ns", "r", json!([]))).unwrap();
        assert_eq!(p.authenticate(Some(&format!("Bearer {token}"))).unwrap().unwrap().name, "system:serviceaccount:ns:sa");
        assert_eq!(p.authenticate(None).unwrap().unwrap().name, "system:anonymous");
        assert_eq!(p.authenticate(Some("Bearer nonsense")).unwrap_err().code, 401);
    }

    #[test]
    fn field_selector_names() {
        assert_eq!(selector_name("metadata.name=abc"), Some("abc"));
        assert_eq!(selector_name("type=Opaque,metadata.name==abc"), Some("abc"));
        assert_eq!(selector_name("metadata.name!=abc"), None);
        assert_eq!(selector_name("metadata.namespace=abc"), None);
        assert_eq!(selector_name(""), None);
    }
}
