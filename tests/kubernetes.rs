//! Kubernetes integration against the API double (real kube client code):
//! identity from tbot's Secret with live rotation, AccessRequestRoute
//! routing with status, and the probes / metrics endpoints.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use common::kube::KubePlugin;
use common::{Env, eventually};
use serde_json::json;
use teleport_plugin::config::{Config, Format};
use teleport_plugin::k8s::crd::{AccessRequestRoute, GROUP, PLURAL, VERSION};
use teleport_plugin_sim::kube::KubeSim;
use teleport_plugin_sim::access::AccessRequestExt;

const NS: &str = "teleport";
const SECRET: &str = "plugin-identity";

fn text(buf: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8_lossy(&buf.lock().unwrap()).to_string()
}

/// Cards posted per request id, from the console output.
fn cards(out: &str) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    let mut lines = out.lines().peekable();
    while let Some(l) = lines.next() {
        if l.contains("(card)") {
            lines.next(); // title
            if let Some(id) = lines.next().and_then(|l| l.trim().strip_prefix("ID: ")) {
                *m.entry(id.to_string()).or_default() += 1;
            }
        }
    }
    m
}

fn secret(identity_file: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": NS},
        "type": "Opaque",
        "data": {"identity": base64::engine::general_purpose::STANDARD.encode(identity_file)}
    })
}

fn rotate(kube: &KubeSim, identity_file: &str) {
    kube.patch_json(
        "secrets",
        NS,
        SECRET,
        &json!({"data": {"identity": base64::engine::general_purpose::STANDARD.encode(identity_file)}}),
    )
    .expect("patch secret");
}

fn config(env: &Env, extra: &str) -> Config {
    let text = format!(
        "[teleport]\naddr = \"{}\"\nidentity_secret = {{ name = \"{SECRET}\", namespace = \"{NS}\" }}\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n[console]\n[role_to_recipients]\n\"*\" = \"#access\"\n{extra}",
        env.sim.addr()
    );
    Config::parse(&text, Format::Toml, "test").unwrap()
}

async fn start(env: &Env, kube: &KubeSim, cfg: &Config) -> KubePlugin {
    let _ = env;
    let plugin = KubePlugin::start(cfg, kube.client()).await;
    assert!(plugin.running.ready(Duration::from_secs(10)).await);
    plugin
}

async fn get(plugin: &KubePlugin, path: &str) -> (u16, String) {
    let url = format!("http://{}{path}", plugin.running.http_addr.unwrap());
    let resp = reqwest::get(url).await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn secret_rotation_mid_burst_loses_and_duplicates_nothing() {
    let env = Env::new().await;
    let kube = KubeSim::start().await;
    let first = env.sim.issue_identity("access-plugin", Duration::from_secs(3600)).unwrap();
    kube.create_json(secret(&first.identity_file)).unwrap();
    let plugin = start(&env, &kube, &config(&env, "")).await;
    let first_fp = plugin.running.identity.borrow().fingerprint.clone();

    let mut ids = Vec::new();
    for i in 0..120 {
        ids.push(env.sim.request(&format!("user{i}"), &["editor"], "burst").id().to_string());
        if i == 60 {
            rotate(&kube, &env.sim.issue_identity("access-plugin", Duration::from_secs(7200)).unwrap().identity_file);
        }
        if i % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let out = plugin.out.clone();
    assert!(
        eventually(Duration::from_secs(20), || { let c = cards(&text(&out)); ids.iter().all(|id| c.contains_key(id)) }).await,
        "every request posted"
    );
    assert!(common::wait_idle(&[&plugin.running], Duration::from_secs(20)).await, "idle after the burst");
    let counts = cards(&text(&out));
    assert!(ids.iter().all(|id| counts[id] == 1), "no duplicates: {:?}", counts.values().filter(|n| **n != 1).count());
    assert!(eventually(Duration::from_secs(10), || plugin.running.watch_stats.rotations.load(std::sync::atomic::Ordering::Relaxed) == 1).await);
    let status = plugin.running.identity.borrow().clone();
    assert_ne!(status.fingerprint, first_fp);
    assert_eq!(status.accepted, 1);
    assert_eq!(plugin.running.client.connection().identity.fingerprint, status.fingerprint);
    // The watch asked for that one Secret only.
    let q = kube.last_query("watch", "secrets").or_else(|| kube.last_query("list", "secrets")).unwrap_or_default();
    assert!(q.contains("metadata.name%3Dplugin-identity") || q.contains("metadata.name=plugin-identity"), "{q}");
    plugin.stop.cancel();
    plugin.running.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn garbage_secret_update_keeps_the_identity_and_shows_degraded() {
    let env = Env::new().await;
    let kube = KubeSim::start().await;
    let first = env.sim.issue_identity("access-plugin", Duration::from_secs(3600)).unwrap();
    kube.create_json(secret(&first.identity_file)).unwrap();
    let plugin = start(&env, &kube, &config(&env, "")).await;
    let fp = plugin.running.identity.borrow().fingerprint.clone();

    rotate(&kube, "-----BEGIN PRIVATE KEY-----\ngarbage\n");
    let mut status = plugin.running.identity.clone();
    status.wait_for(|s| s.last_error.is_some()).await.unwrap();
    assert_eq!(plugin.running.identity.borrow().fingerprint, fp, "old identity kept");

    let (code, body) = get(&plugin, "/readyz").await;
    assert_eq!(code, 200, "still serving with the old identity: {body}");
    assert!(body.contains("degraded") && body.contains("malformed PEM"), "{body}");
    let (_, metrics) = get(&plugin, "/metrics").await;
    assert!(metrics.contains("teleport_plugin_identity_failures_total{source=\"update\"} 1"), "{metrics}");

    // Still delivering on the old identity.
    let r = env.sim.request("alice", &["x"], "");
    let out = plugin.out.clone();
    assert!(eventually(Duration::from_secs(10), || cards(&text(&out)).contains_key(r.id())).await);

    // An expired identity is refused too.
    let now = std::time::SystemTime::now();
    let expired = env.sim.pki().issue_identity_between("access-plugin", now - Duration::from_secs(7200), now - Duration::from_secs(60)).unwrap();
    rotate(&kube, &expired.identity_file);
    assert!(eventually(Duration::from_secs(10), || plugin.running.identity.borrow().last_error.as_deref().is_some_and(|e| e.contains("expired"))).await);

    // A good update heals.
    rotate(&kube, &env.sim.issue_identity("access-plugin", Duration::from_secs(3600)).unwrap().identity_file);
    status.wait_for(|s| s.last_error.is_none()).await.unwrap();
    let (code, body) = get(&plugin, "/readyz").await;
    assert_eq!(code, 200);
    assert!(!body.contains("degraded"), "{body}");
    plugin.stop.cancel();
    plugin.running.stop(Duration::from_secs(5)).await;
}

fn route(name: &str, rules: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": format!("{GROUP}/{VERSION}"), "kind": "AccessRequestRoute",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"rules": rules}
    })
}

#[tokio::test]
async fn route_resources_reroute_live_and_report_status() {
    let env = Env::new().await;
    let kube = KubeSim::start().await;
    kube.register_crd(GROUP, VERSION, PLURAL, "AccessRequestRoute", true, true);
    kube.create_json(secret(&env.sim.issue_identity("access-plugin", Duration::from_secs(3600)).unwrap().identity_file)).unwrap();
    kube.create_json(route("dev", json!([{"name": "dev", "match": {"roles": ["dev-*"]}, "recipients": {"console": ["#crd-dev"]}}])))
        .unwrap();
    let plugin = start(&env, &kube, &config(&env, "\n[routing]\ncrd = true\nnamespace = \"teleport\"\n")).await;
    let out = plugin.out.clone();

    let ready = |kube: &KubeSim, name: &str| {
        kube.get::<AccessRequestRoute>(NS, name).and_then(|r| r.status).and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready"))
    };
    assert!(kube.wait_until(Duration::from_secs(10), |k| ready(k, "dev").is_some_and(|c| c.status == "True")).await);
    let c = ready(&kube, "dev").unwrap();
    assert_eq!((c.reason.as_str(), c.message.as_str(), c.observed_generation), ("Valid", "1 rule loaded", Some(1)));

    let r1 = env.sim.request("alice", &["dev-api"], "");
    assert!(eventually(Duration::from_secs(10), || text(&out).contains("post to #crd-dev (card)")).await, "{}", text(&out));
    assert!(text(&out).contains("post to #access (card)"), "role_to_recipients still applies");
    assert_eq!(cards(&text(&out))[r1.id()], 2);

    // Edit the route: the next request goes to the new channel, no restart.
    kube.patch_json(
        &format!("{PLURAL}.{GROUP}"),
        NS,
        "dev",
        &json!({"spec": {"rules": [{"name": "dev", "match": {"roles": ["dev-*"]}, "recipients": {"console": ["#crd-new"]}}]}}),
    )
    .unwrap();
    assert!(kube.wait_until(Duration::from_secs(10), |k| ready(k, "dev").is_some_and(|c| c.observed_generation == Some(2))).await);
    env.sim.request("bob", &["dev-web"], "");
    assert!(eventually(Duration::from_secs(10), || text(&out).contains("post to #crd-new (card)")).await, "{}", text(&out));

    // An invalid route is reported and changes nothing.
    kube.create_json(route("broken", json!([{"match": {"roles": ["[oops"]}, "recipients": {"slak": ["#x"]}}]))).unwrap();
    assert!(kube.wait_until(Duration::from_secs(10), |k| ready(k, "broken").is_some_and(|c| c.status == "False")).await);
    let c = ready(&kube, "broken").unwrap();
    assert_eq!(c.reason, "InvalidRule");
    assert!(c.message.contains("not a valid glob") && c.message.contains("unknown chat \"slak\""), "{}", c.message);

    // Suppression silences matching requests.
    kube.create_json(route("quiet", json!([{"name": "mute-auditors", "match": {"roles": ["auditor"]}, "suppress": true}]))).unwrap();
    assert!(kube.wait_until(Duration::from_secs(10), |k| ready(k, "quiet").is_some_and(|c| c.status == "True")).await);
    let muted = env.sim.request("carol", &["auditor"], "");
    let loud = env.sim.request("dave", &["qa"], "");
    assert!(eventually(Duration::from_secs(10), || cards(&text(&out)).contains_key(loud.id())).await);
    assert!(common::wait_idle(&[&plugin.running], Duration::from_secs(10)).await);
    assert!(!cards(&text(&out)).contains_key(muted.id()));

    // Watches dropped and history compacted: the route watcher re-lists and
    // still applies the next edit.
    let lists = kube.request_count("list", PLURAL);
    for i in 0..3 {
        kube.create_json(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("noise-{i}"), "namespace": NS}})).unwrap();
    }
    kube.compact();
    kube.drop_watches();
    kube.patch_json(
        &format!("{PLURAL}.{GROUP}"),
        NS,
        "dev",
        &json!({"spec": {"rules": [{"name": "dev", "match": {"roles": ["dev-*"]}, "recipients": {"console": ["#crd-relisted"]}}]}}),
    )
    .unwrap();
    assert!(kube.wait_until(Duration::from_secs(20), |k| ready(k, "dev").is_some_and(|c| c.observed_generation == Some(3))).await);
    assert!(kube.request_count("list", PLURAL) > lists, "re-listed after 410 Expired");
    env.sim.request("frank", &["dev-db"], "");
    assert!(eventually(Duration::from_secs(10), || text(&out).contains("post to #crd-relisted (card)")).await, "{}", text(&out));

    // Deleting the route falls back to static routing.
    let loaded = || {
        let source = teleport_plugin::metrics::SourceLabel { source: "access_request_routes".into() };
        plugin.running.metrics.routes.get_or_create(&source).get()
    };
    let before = loaded();
    kube.delete_json(&format!("{PLURAL}.{GROUP}"), NS, "dev").unwrap();
    assert!(eventually(Duration::from_secs(10), || loaded() < before).await, "the deletion was applied");
    let later = env.sim.request("erin", &["dev-x"], "");
    assert!(eventually(Duration::from_secs(10), || cards(&text(&out)).get(later.id()) == Some(&1)).await, "{}", text(&out));
    assert!(common::wait_idle(&[&plugin.running], Duration::from_secs(10)).await);
    let o = text(&out);
    let posted_to: Vec<&str> = o.lines().zip(o.lines().skip(2)).filter(|(_, id)| id.trim() == format!("ID: {}", later.id())).map(|(head, _)| head).collect();
    assert_eq!(posted_to.len(), 1, "{o}");
    assert!(posted_to[0].contains("post to #access (card)"), "static routing: {o}");
    plugin.stop.cancel();
    plugin.running.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn readiness_follows_the_teleport_connection() {
    let env = Env::new().await;
    let kube = KubeSim::start().await;
    kube.create_json(secret(&env.sim.issue_identity("access-plugin", Duration::from_secs(3600)).unwrap().identity_file)).unwrap();
    let plugin = start(&env, &kube, &config(&env, "")).await;
    let (code, body) = get(&plugin, "/readyz").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("[+] Teleport event stream live"));
    let (code, _) = get(&plugin, "/healthz").await;
    assert_eq!(code, 200);
    let (_, metrics) = get(&plugin, "/metrics").await;
    assert!(metrics.contains("teleport_plugin_stream_up 1"), "{metrics}");

    env.sim.refuse_connections_for(Duration::from_secs(3));
    env.sim.drop_connections();
    let mut state = plugin.running.stream.clone();
    state.wait_for(|s| !matches!(s, teleport_plugin::teleport::StreamState::Live { .. })).await.unwrap();
    let (code, body) = get(&plugin, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("[-] Teleport event stream down"), "{body}");
    let (code, _) = get(&plugin, "/healthz").await;
    assert_eq!(code, 200, "an outage is not a liveness failure");
    // A request made during the outage is posted after it.
    let r = env.sim.request("during-outage", &["x"], "");

    state.wait_for(|s| matches!(s, teleport_plugin::teleport::StreamState::Live { .. })).await.unwrap();
    let (code, _) = get(&plugin, "/readyz").await;
    assert_eq!(code, 200);
    let out = plugin.out.clone();
    assert!(eventually(Duration::from_secs(10), || cards(&text(&out)).contains_key(r.id())).await);
    let (_, metrics) = get(&plugin, "/metrics").await;
    assert!(metrics.contains("teleport_plugin_stream_reconnects_total 1"), "{metrics}");
    plugin.stop.cancel();
    plugin.running.stop(Duration::from_secs(5)).await;
}

/// The API server drops every watch and compacts its history (etcd
/// compaction), so the watcher's resume fails with 410 Gone: the plugin
/// re-lists and still follows the next rotation.
#[tokio::test]
async fn secret_is_followed_through_watch_drops_and_compaction() {
    let env = Env::new().await;
    let kube = KubeSim::start().await;
    let first = env.sim.issue_identity("access-plugin", Duration::from_secs(3600)).unwrap();
    kube.create_json(secret(&first.identity_file)).unwrap();
    let plugin = start(&env, &kube, &config(&env, "")).await;
    let lists_before = kube.request_count("list", "secrets");

    // Writes the watcher has not seen yet, then history compacted past them
    // and the watch cut: resuming from the old resourceVersion gets 410.
    for _ in 0..3 {
        kube.create_json(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("noise-{}", kube.resource_version()), "namespace": NS}})).unwrap();
    }
    kube.compact();
    kube.drop_watches();
    let second = env.sim.issue_identity("access-plugin", Duration::from_secs(7200)).unwrap();
    rotate(&kube, &second.identity_file);

    let rotated = || plugin.running.watch_stats.rotations.load(std::sync::atomic::Ordering::Relaxed) == 1;
    assert!(eventually(Duration::from_secs(20), rotated).await, "rotation followed after the watch was dropped and history compacted");
    // Resuming from the compacted resourceVersion is answered 410 Expired;
    // only a fresh list recovers from that.
    assert!(kube.request_count("list", "secrets") > lists_before, "the watcher re-listed after 410 Expired");
    let r = env.sim.request("after-compaction", &["x"], "");
    let out = plugin.out.clone();
    assert!(eventually(Duration::from_secs(10), || cards(&text(&out)).contains_key(r.id())).await, "still delivering");
    plugin.stop.cancel();
    plugin.running.stop(Duration::from_secs(5)).await;
}
