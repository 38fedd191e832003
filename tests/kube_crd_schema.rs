//! AccessRequestRoute resources go through the CRD's schema as on a real
//! API server: the simulated server serves the CRD from `crds/`, prunes
//! fields the schema does not declare, applies its defaults and refuses
//! invalid resources with 422. The plugin reads the pruned resources like
//! any other, never sees the refused ones, and its own status writes pass
//! the schema.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::kube::KubePlugin;
use common::{Env, eventually};
use kube::api::{ApiResource, DynamicObject, PostParams};
use kube::Api;
use serde_json::{Value, json};
use teleport_plugin::config::{Config, Format};
use teleport_plugin::k8s::crd::{AccessRequestRoute, GROUP, PLURAL};
use teleport_plugin_sim::access::AccessRequestExt;
use teleport_plugin_sim::kube::KubeSim;

const NS: &str = "teleport";
const SECRET: &str = "plugin-identity";
const WAIT: Duration = Duration::from_secs(15);

async fn cluster(env: &Env) -> KubeSim {
    let kube = KubeSim::start().await;
    let crd = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/accessrequestroutes.yaml")).unwrap();
    kube.register_crd_manifest(&crd).unwrap();
    let identity = env.sim.issue_identity("access-plugin", Duration::from_secs(3600)).unwrap().identity_file;
    kube.create_json(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": NS},
        "data": {"identity": base64::engine::general_purpose::STANDARD.encode(identity)}
    }))
    .unwrap();
    kube
}

async fn start(env: &Env, kube: &KubeSim) -> KubePlugin {
    let text = format!(
        "[teleport]\naddr = \"{}\"\nidentity_secret = {{ name = \"{SECRET}\", namespace = \"{NS}\" }}\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n[console]\n[role_to_recipients]\n\"*\" = \"#access\"\n\n[routing]\ncrd = true\nnamespace = \"{NS}\"\n",
        env.sim.addr()
    );
    let cfg = Config::parse(&text, Format::Toml, "test").unwrap();
    let plugin = KubePlugin::start(&cfg, kube.client()).await;
    assert!(plugin.running.ready(WAIT).await);
    plugin
}

/// The resources as `kubectl apply` sends them: untyped JSON, so fields the
/// plugin's types do not know reach the server.
fn routes_api(kube: &KubeSim) -> Api<DynamicObject> {
    Api::namespaced_with(kube.client(), NS, &ApiResource::erase::<AccessRequestRoute>(&()))
}

fn object(name: &str, body: Value) -> DynamicObject {
    let mut obj = DynamicObject::new(name, &ApiResource::erase::<AccessRequestRoute>(&())).within(NS);
    obj.data = body;
    obj
}

fn stored(kube: &KubeSim, name: &str) -> Option<Value> {
    kube.get_json(&format!("{PLURAL}.{GROUP}"), NS, name)
}

fn ready(kube: &KubeSim, name: &str) -> Option<Value> {
    let obj = stored(kube, name)?;
    obj["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Ready").cloned()
}

#[tokio::test]
async fn unknown_fields_are_pruned_and_the_plugin_reads_the_route_normally() {
    let env = Env::new().await;
    let kube = cluster(&env).await;
    let plugin = start(&env, &kube).await;

    let created = routes_api(&kube)
        .create(
            &PostParams::default(),
            &object(
                "dev",
                json!({
                    "spec": {
                        "rules": [
                            // `channel` and `match.team` are not in the schema (typos of
                            // `recipients` and a field that does not exist).
                            {"name": "dev", "match": {"roles": ["dev-*"], "team": "web"}, "recipients": {"console": ["#crd-dev"]}, "channel": "#typo"},
                            // No `match`: the schema's default `{}` applies.
                            {"name": "all", "recipients": {"console": ["#crd-all"]}}
                        ],
                        "priority": 7
                    },
                    "extra": {"anything": true}
                }),
            ),
        )
        .await
        .expect("an AccessRequestRoute with unknown fields is accepted");
    for response_or_stored in [created.data.clone(), stored(&kube, "dev").unwrap()] {
        let spec = &response_or_stored["spec"];
        assert!(response_or_stored.get("extra").is_none(), "{response_or_stored}");
        assert!(spec.get("priority").is_none(), "{spec}");
        assert!(spec["rules"][0].get("channel").is_none(), "{spec}");
        assert_eq!(spec["rules"][0]["match"], json!({"roles": ["dev-*"]}), "{spec}");
        assert_eq!(spec["rules"][1]["match"], json!({}), "defaulted: {spec}");
    }

    // The plugin loads both rules and says so in the status it writes, which
    // the schema accepts as written.
    assert!(kube.wait_until(WAIT, |k| ready(k, "dev").is_some_and(|c| c["status"] == "True")).await);
    let condition = ready(&kube, "dev").unwrap();
    assert_eq!((condition["reason"].as_str(), condition["message"].as_str()), (Some("Valid"), Some("2 rules loaded")));
    assert!(condition["lastTransitionTime"].is_string() && condition["observedGeneration"] == 1, "{condition}");
    assert_eq!(stored(&kube, "dev").unwrap()["status"]["observedGeneration"], 1);

    let r = env.sim.request("alice", &["dev-api"], "");
    assert!(eventually(WAIT, || plugin.text().contains("post to #crd-dev (card)") && plugin.text().contains("post to #crd-all (card)")).await, "{}", plugin.text());
    assert!(plugin.text().contains(r.id()));
    plugin.stop.cancel();
    plugin.running.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn invalid_routes_are_refused_at_create_and_never_reach_the_plugin() {
    let env = Env::new().await;
    let kube = cluster(&env).await;
    let plugin = start(&env, &kube).await;
    let api = routes_api(&kube);

    let invalid = [
        ("wrong-types", json!({"spec": {"rules": [{"match": {"roles": "dev-*"}, "recipients": {"console": ["#bad"]}, "suppress": "yes"}]}}),
         vec!["spec.rules[0].match.roles", "spec.rules[0].suppress"]),
        ("no-rules", json!({"spec": {"rule": []}}), vec!["spec.rules"]),
        ("no-spec", json!({}), vec!["spec"]),
        ("bad-recipients", json!({"spec": {"rules": [{"recipients": {"console": "#bad"}}]}}), vec!["spec.rules[0].recipients[console]"]),
    ];
    for (name, body, fields) in invalid {
        let err = api.create(&PostParams::default(), &object(name, body)).await.expect_err(name);
        let kube::Error::Api(status) = err else { panic!("{name}: {err:?}") };
        assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"), "{name}: {status:?}");
        assert!(status.message.starts_with(&format!("AccessRequestRoute.{GROUP} \"{name}\" is invalid: ")), "{}", status.message);
        let details = status.details.as_ref().expect("details");
        let mut got: Vec<&str> = details.causes.iter().map(|c| c.field.as_str()).collect();
        got.sort();
        assert_eq!(got, fields, "{name}: {}", status.message);
        assert!(stored(&kube, name).is_none(), "{name} was not stored");
    }

    // A valid route created afterwards is the only one the plugin acts on.
    api.create(&PostParams::default(), &object("good", json!({"spec": {"rules": [{"match": {"roles": ["dev-*"]}, "recipients": {"console": ["#crd-good"]}}]}}))).await.unwrap();
    assert!(kube.wait_until(WAIT, |k| ready(k, "good").is_some_and(|c| c["status"] == "True")).await);
    env.sim.request("bob", &["dev-web"], "");
    assert!(eventually(WAIT, || plugin.text().contains("post to #crd-good (card)")).await, "{}", plugin.text());
    assert!(!plugin.text().contains("#bad"), "{}", plugin.text());
    let routes = plugin.running.metrics.routes.get_or_create(&teleport_plugin::metrics::SourceLabel { source: "access_request_routes".into() }).get();
    assert_eq!(routes, 1, "only the valid route's rule is loaded");
    // An update making the valid route invalid is refused too; the plugin keeps the old one.
    let mut good = api.get("good").await.unwrap();
    good.data["spec"]["rules"][0]["suppress"] = json!(1);
    let err = api.replace("good", &PostParams::default(), &good).await.expect_err("invalid update");
    assert!(matches!(&err, kube::Error::Api(s) if s.code == 422), "{err:?}");
    assert_eq!(stored(&kube, "good").unwrap()["metadata"]["generation"], 1);
    plugin.stop.cancel();
    plugin.running.stop(Duration::from_secs(5)).await;
}
