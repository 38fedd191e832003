//! The plugin under the RBAC its chart grants: the simulated API server loads
//! the slack chart's rendered Roles and RoleBindings (the golden files the
//! chart tests keep equal to what Helm renders: routes in the release's
//! namespace, and in a namespace of their own) and authorizes every request
//! of the plugin's service account against them.
//!
//! With the chart's rules every Kubernetes path works (identity Secret get,
//! list and watch with rotation, AccessRequestRoute list and watch, status
//! patches) and nothing is refused. With any one needed verb missing, the
//! plugin keeps running (no crash-loop) and is not ready, naming the verb
//! and the resource; restoring the rule makes it ready again.

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use common::kube::KubePlugin;
use common::{Env, eventually};
use serde_json::{Value, json};
use teleport_plugin::config::{Config, Format};
use teleport_plugin::health::Startup;
use teleport_plugin::k8s::crd::{AccessRequestRoute, GROUP, PLURAL, VERSION};
use teleport_plugin_sim::access::AccessRequestExt;
use teleport_plugin_sim::kube::KubeSim;
use tokio_util::sync::CancellationToken;

const NS: &str = "teleport";
/// `routing.namespace` of the chart's other-namespace variant.
const ROUTES_NS: &str = "access-routes";
/// The rendered RBAC with routes in the release namespace (one Role) and in
/// `ROUTES_NS` (a second Role there).
const SAME_NS: &str = "slack-rbac.yaml";
const ELSEWHERE: &str = "slack-rbac-routes-elsewhere.yaml";
/// The routes' status subresource, as RBAC names it.
const STATUS: &str = "accessrequestroutes/status";
/// The names the chart gives with its release name `teleport-plugin-slack`.
const SERVICE_ACCOUNT: &str = "teleport-plugin-slack";
const SECRET: &str = "teleport-plugin-slack-tbot-out";
const WAIT: Duration = Duration::from_secs(15);

fn golden_docs(file: &str) -> Vec<Value> {
    let path = format!("{}/tests/charts/rendered/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("the rendered chart RBAC ({path}): {e}"));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("golden RBAC is YAML"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// The golden RBAC in `file` with `verb` taken off the rule for `resource`.
fn without(file: &str, resource: &str, verb: &str) -> Vec<Value> {
    let mut docs = golden_docs(file);
    let rule = docs
        .iter_mut()
        .filter(|d| d["kind"] == "Role")
        .flat_map(|role| role["rules"].as_array_mut().unwrap().iter_mut())
        .find(|r| r["resources"].as_array().unwrap().iter().any(|x| x == resource))
        .unwrap_or_else(|| panic!("a Role of the chart's has a rule for {resource}"));
    let verbs = rule["verbs"].as_array_mut().unwrap();
    let before = verbs.len();
    verbs.retain(|v| v != verb);
    assert_eq!(verbs.len(), before - 1, "the chart grants {verb} on {resource}");
    docs
}

fn load(kube: &KubeSim, docs: &[Value]) {
    for d in docs {
        kube.apply_rbac_json(d.clone()).expect("RBAC object loads");
    }
}

fn secret(identity_file: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": NS},
        "data": {"identity": base64::engine::general_purpose::STANDARD.encode(identity_file)}
    })
}

fn route(ns: &str, name: &str, channel: &str) -> Value {
    json!({
        "apiVersion": format!("{GROUP}/{VERSION}"), "kind": "AccessRequestRoute",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"rules": [{"name": name, "match": {"roles": ["dev-*"]}, "recipients": {"console": [channel]}}]}
    })
}

/// The configuration the chart renders for these values (routes in
/// `routes_ns`), in its parts the Kubernetes paths use.
fn config(env: &Env, routes_ns: &str) -> Config {
    let text = format!(
        "[teleport]\naddr = \"{}\"\nidentity_secret = {{ name = \"{SECRET}\", key = \"identity\", namespace = \"{NS}\" }}\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n[console]\n[role_to_recipients]\n\"*\" = \"#access\"\n\n[routing]\ncrd = true\nnamespace = \"{routes_ns}\"\n",
        env.sim.addr()
    );
    Config::parse(&text, Format::Toml, "test").unwrap()
}

/// A simulated cluster as the chart leaves it: the CRD installed from
/// `crds/`, tbot's Secret written, one route in `routes_ns`, and `rbac` loaded.
async fn cluster(env: &Env, rbac: &[Value], routes_ns: &str) -> KubeSim {
    let kube = KubeSim::start().await;
    let crd = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/accessrequestroutes.yaml")).unwrap();
    kube.register_crd_manifest(&crd).unwrap();
    kube.create_json(secret(&env.sim.issue_identity("access-plugin", Duration::from_secs(3600)).unwrap().identity_file)).unwrap();
    kube.create_json(route(routes_ns, "dev", "#crd-dev")).unwrap();
    load(&kube, rbac);
    kube
}

/// Starts the plugin the way the pod runs it, authenticated as the chart's
/// service account.
async fn start(env: &Env, kube: &KubeSim, routes_ns: &str) -> KubePlugin {
    KubePlugin::start(&config(env, routes_ns), kube.service_account_client(NS, SERVICE_ACCOUNT)).await
}

fn ready_condition(kube: &KubeSim, ns: &str, name: &str) -> Option<String> {
    let r = kube.get::<AccessRequestRoute>(ns, name)?;
    r.status?.conditions.into_iter().find(|c| c.type_ == "Ready").map(|c| c.status)
}

#[tokio::test]
async fn the_charts_role_allows_every_kubernetes_path_of_the_plugin() {
    every_kubernetes_path_is_allowed(SAME_NS, NS).await;
}

/// Routes in a namespace of their own: the chart's second Role, there, is
/// what lets the plugin list, watch and write status to them.
#[tokio::test]
async fn with_routes_in_another_namespace_the_charts_two_roles_allow_every_path() {
    every_kubernetes_path_is_allowed(ELSEWHERE, ROUTES_NS).await;
}

/// Runs every Kubernetes path of the plugin under the rendered RBAC in
/// `file`, routes in `routes_ns`: each is used, and none is refused.
async fn every_kubernetes_path_is_allowed(file: &str, routes_ns: &str) {
    let env = Env::new().await;
    let kube = cluster(&env, &golden_docs(file), routes_ns).await;
    // RBAC is enforced: the same account may not read other Secrets.
    let other: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(kube.service_account_client(NS, SERVICE_ACCOUNT), NS);
    match other.list(&Default::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"), "{s:?}"),
        // Never print what was listed: these are Secrets.
        Err(e) => panic!("listing every Secret failed otherwise: {e}"),
        Ok(list) => panic!("listing every Secret was allowed ({} items)", list.items.len()),
    }

    let plugin = start(&env, &kube, routes_ns).await;
    assert!(plugin.running.ready(WAIT).await, "{}", plugin.readiness().1);
    // Routes: listed, watched, status patched.
    assert!(kube.wait_until(WAIT, |k| ready_condition(k, routes_ns, "dev").as_deref() == Some("True")).await, "status written");
    let r = env.sim.request("alice", &["dev-api"], "");
    assert!(eventually(WAIT, || plugin.text().contains("post to #crd-dev (card)")).await, "{}", plugin.text());
    assert!(eventually(WAIT, || plugin.text().contains(r.id())).await);
    // A route created later arrives over the watch.
    kube.create_json(route(routes_ns, "late", "#crd-late")).unwrap();
    assert!(kube.wait_until(WAIT, |k| ready_condition(k, routes_ns, "late").as_deref() == Some("True")).await);
    // The identity Secret: a rotation arrives over the (named) watch.
    let rotated = env.sim.issue_identity("access-plugin", Duration::from_secs(7200)).unwrap();
    kube.put_json(secret(&rotated.identity_file)).unwrap();
    assert!(
        eventually(WAIT, || plugin.running.watch_stats.rotations.load(std::sync::atomic::Ordering::Relaxed) == 1).await,
        "rotation followed"
    );

    let (ok, body) = plugin.readiness();
    assert!(ok, "{body}");
    // Every request the plugin made came from its service account and was allowed.
    let user = format!("system:serviceaccount:{NS}:{SERVICE_ACCOUNT}");
    let plugin_requests: Vec<_> = kube.requests().into_iter().filter(|r| r.user.as_deref() == Some(user.as_str())).collect();
    let denied: Vec<_> = plugin_requests.iter().filter(|r| r.denied).map(|r| (r.verb.clone(), r.resource.clone(), r.name.clone())).collect();
    assert_eq!(denied, vec![("list".to_string(), "secrets".to_string(), None)], "only the probe above was refused");
    for (verb, resource, ns) in [("get", "secrets", NS), ("list", "secrets", NS), ("watch", "secrets", NS), ("list", PLURAL, routes_ns), ("watch", PLURAL, routes_ns), ("patch", STATUS, routes_ns)] {
        assert!(
            plugin_requests.iter().any(|r| r.verb == verb && r.resource == resource && r.namespace.as_deref() == Some(ns) && !r.denied),
            "the plugin used {verb} on {resource} in namespace {ns} and was allowed"
        );
    }
    plugin.stop().await;
}

/// Each verb the plugin needs, taken away on its own (the route verbs also
/// from the second Role of the other-namespace variant).
#[tokio::test]
async fn a_role_missing_a_needed_verb_makes_the_plugin_not_ready_naming_it() {
    let env = Env::new().await;
    let secret_target = format!("secrets \"{SECRET}\" in namespace {NS}");
    let routes_target = |ns: &str| format!("accessrequestroutes.{GROUP} in namespace {ns}");
    let status_target = |ns: &str| format!("{STATUS} in namespace {ns}");
    for (file, routes_ns, resource, verb, target) in [
        (SAME_NS, NS, "secrets", "list", secret_target.clone()),
        (SAME_NS, NS, "secrets", "watch", secret_target.clone()),
        (SAME_NS, NS, PLURAL, "list", routes_target(NS)),
        (SAME_NS, NS, PLURAL, "watch", routes_target(NS)),
        (SAME_NS, NS, STATUS, "patch", status_target(NS)),
        (ELSEWHERE, ROUTES_NS, PLURAL, "watch", routes_target(ROUTES_NS)),
        (ELSEWHERE, ROUTES_NS, STATUS, "patch", status_target(ROUTES_NS)),
    ] {
        let kube = cluster(&env, &without(file, resource, verb), routes_ns).await;
        let plugin = start(&env, &kube, routes_ns).await;
        let wanted = format!("may not {verb} {target}: grant the verb \"{verb}\"");
        let shows = || {
            let (ok, body) = plugin.readiness();
            !ok && body.contains(&wanted) && body.contains("is forbidden: User \"system:serviceaccount:teleport:teleport-plugin-slack\"")
        };
        assert!(eventually(WAIT, shows).await, "without {verb} on {resource}: {}", plugin.readiness().1);

        // The Role fixed in place: ready again without a restart.
        load(&kube, &golden_docs(file));
        if verb == "patch" {
            // A status is written on the next change to the route.
            kube.patch_json(&format!("{PLURAL}.{GROUP}"), routes_ns, "dev", &json!({"metadata": {"labels": {"touched": "yes"}}})).unwrap();
        }
        assert!(eventually(Duration::from_secs(40), || plugin.readiness().0).await, "after the fix: {}", plugin.readiness().1);
        plugin.stop().await;
    }
}

/// Without `get` on the Secret the start waits (not an exit the pod would
/// crash-loop on) and says which permission is missing; granting it lets
/// the start finish.
#[tokio::test]
async fn without_get_on_the_identity_secret_the_start_waits_naming_the_permission() {
    let env = Env::new().await;
    let kube = cluster(&env, &without(SAME_NS, "secrets", "get"), NS).await;
    let cfg = config(&env, NS);
    let stop = CancellationToken::new();
    let startup = Arc::new(Startup::default());
    let client = kube.service_account_client(NS, SERVICE_ACCOUNT);
    let setup = tokio::spawn({
        let (startup, stop) = (startup.clone(), stop.clone());
        async move { teleport_plugin::k8s::setup_waiting(&cfg, &stop, client, &startup).await.map(|_| ()) }
    });
    let wanted = format!("may not get secrets \"{SECRET}\" in namespace {NS}: grant get, list and watch on it");
    assert!(
        eventually(WAIT, || startup.current().is_some_and(|w| w.contains(&wanted) && w.contains("cannot get resource \"secrets\""))).await,
        "{:?}",
        startup.current()
    );
    assert!(!setup.is_finished(), "the start waits instead of failing");
    load(&kube, &golden_docs(SAME_NS));
    let done = tokio::time::timeout(WAIT, setup).await.expect("the start goes on once get is granted").unwrap();
    assert!(done.is_ok(), "{done:?}");
    stop.cancel();
}
