//! The plugin under the RBAC its chart grants: the simulated API server loads
//! the slack chart's rendered Role and RoleBinding (the golden file the chart
//! tests keep equal to what Helm renders) and authorizes every request of
//! the plugin's service account against them.
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
/// The names the chart gives with its release name `teleport-plugin-slack`.
const SERVICE_ACCOUNT: &str = "teleport-plugin-slack";
const SECRET: &str = "teleport-plugin-slack-tbot-out";
const WAIT: Duration = Duration::from_secs(15);

fn golden() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/charts/rendered/slack-rbac.yaml");
    std::fs::read_to_string(path).expect("the rendered chart RBAC (tests/charts/rendered/slack-rbac.yaml)")
}

fn golden_docs() -> Vec<Value> {
    let text = golden();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("golden RBAC is YAML"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// The golden RBAC with `verb` taken off the Role's rule for `resource`.
fn without(resource: &str, verb: &str) -> Vec<Value> {
    let mut docs = golden_docs();
    let role = docs.iter_mut().find(|d| d["kind"] == "Role").expect("the golden file has the plugin's Role");
    let rule = role["rules"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|r| r["resources"].as_array().unwrap().iter().any(|x| x == resource))
        .unwrap_or_else(|| panic!("the chart's Role has a rule for {resource}"));
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

fn route(name: &str, channel: &str) -> Value {
    json!({
        "apiVersion": format!("{GROUP}/{VERSION}"), "kind": "AccessRequestRoute",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"rules": [{"name": name, "match": {"roles": ["dev-*"]}, "recipients": {"console": [channel]}}]}
    })
}

/// The configuration the chart renders for these values, in its parts the
/// Kubernetes paths use.
fn config(env: &Env) -> Config {
    let text = format!(
        "[teleport]\naddr = \"{}\"\nidentity_secret = {{ name = \"{SECRET}\", key = \"identity\", namespace = \"{NS}\" }}\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n[console]\n[role_to_recipients]\n\"*\" = \"#access\"\n\n[routing]\ncrd = true\nnamespace = \"{NS}\"\n",
        env.sim.addr()
    );
    Config::parse(&text, Format::Toml, "test").unwrap()
}

/// A simulated cluster as the chart leaves it: the CRD installed from
/// `crds/`, tbot's Secret written, one route, and `rbac` loaded.
async fn cluster(env: &Env, rbac: &[Value]) -> KubeSim {
    let kube = KubeSim::start().await;
    let crd = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/accessrequestroutes.yaml")).unwrap();
    kube.register_crd_manifest(&crd).unwrap();
    kube.create_json(secret(&env.sim.issue_identity("access-plugin", Duration::from_secs(3600)).unwrap().identity_file)).unwrap();
    kube.create_json(route("dev", "#crd-dev")).unwrap();
    load(&kube, rbac);
    kube
}

/// Starts the plugin the way the pod runs it, authenticated as the chart's
/// service account.
async fn start(env: &Env, kube: &KubeSim) -> KubePlugin {
    KubePlugin::start(&config(env), kube.service_account_client(NS, SERVICE_ACCOUNT)).await
}

fn ready_condition(kube: &KubeSim, name: &str) -> Option<String> {
    let r = kube.get::<AccessRequestRoute>(NS, name)?;
    r.status?.conditions.into_iter().find(|c| c.type_ == "Ready").map(|c| c.status)
}

#[tokio::test]
async fn the_charts_role_allows_every_kubernetes_path_of_the_plugin() {
    let env = Env::new().await;
    let kube = cluster(&env, &golden_docs()).await;
    // RBAC is enforced: the same account may not read other Secrets.
    let other: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(kube.service_account_client(NS, SERVICE_ACCOUNT), NS);
    match other.list(&Default::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"), "{s:?}"),
        // Never print what was listed: these are Secrets.
        Err(e) => panic!("listing every Secret failed otherwise: {e}"),
        Ok(list) => panic!("listing every Secret was allowed ({} items)", list.items.len()),
    }

    let plugin = start(&env, &kube).await;
    assert!(plugin.running.ready(WAIT).await);
    // Routes: listed, watched, status patched.
    assert!(kube.wait_until(WAIT, |k| ready_condition(k, "dev").as_deref() == Some("True")).await, "status written");
    let r = env.sim.request("alice", &["dev-api"], "");
    assert!(eventually(WAIT, || plugin.text().contains("post to #crd-dev (card)")).await, "{}", plugin.text());
    assert!(eventually(WAIT, || plugin.text().contains(r.id())).await);
    // A route created later arrives over the watch.
    kube.create_json(route("late", "#crd-late")).unwrap();
    assert!(kube.wait_until(WAIT, |k| ready_condition(k, "late").as_deref() == Some("True")).await);
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
    for (verb, resource) in [("get", "secrets"), ("list", "secrets"), ("watch", "secrets"), ("list", PLURAL), ("watch", PLURAL), ("patch", "accessrequestroutes/status")] {
        assert!(
            plugin_requests.iter().any(|r| r.verb == verb && r.resource == resource && !r.denied),
            "the plugin used {verb} on {resource} and was allowed"
        );
    }
    plugin.stop().await;
}

/// Each verb the plugin needs, taken away on its own.
#[tokio::test]
async fn a_role_missing_a_needed_verb_makes_the_plugin_not_ready_naming_it() {
    let env = Env::new().await;
    let secret_target = format!("secrets \"{SECRET}\" in namespace {NS}");
    let routes_target = format!("accessrequestroutes.{GROUP} in namespace {NS}");
    let status_target = format!("accessrequestroutes/status in namespace {NS}");
    for (resource, verb, target) in [
        ("secrets", "list", &secret_target),
        ("secrets", "watch", &secret_target),
        (PLURAL, "list", &routes_target),
        (PLURAL, "watch", &routes_target),
        ("accessrequestroutes/status", "patch", &status_target),
    ] {
        let kube = cluster(&env, &without(resource, verb)).await;
        let plugin = start(&env, &kube).await;
        let wanted = format!("may not {verb} {target}: grant the verb \"{verb}\"");
        let shows = || {
            let (ok, body) = plugin.readiness();
            !ok && body.contains(&wanted) && body.contains("is forbidden: User \"system:serviceaccount:teleport:teleport-plugin-slack\"")
        };
        assert!(eventually(WAIT, shows).await, "without {verb} on {resource}: {}", plugin.readiness().1);

        // The Role fixed in place: ready again without a restart.
        load(&kube, &golden_docs());
        if verb == "patch" {
            // A status is written on the next change to the route.
            kube.patch_json(&format!("{PLURAL}.{GROUP}"), NS, "dev", &json!({"metadata": {"labels": {"touched": "yes"}}})).unwrap();
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
    let kube = cluster(&env, &without("secrets", "get")).await;
    let cfg = config(&env);
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
    load(&kube, &golden_docs());
    let done = tokio::time::timeout(WAIT, setup).await.expect("the start goes on once get is granted").unwrap();
    assert!(done.is_ok(), "{done:?}");
    stop.cancel();
}
