//! The Teleport client against the simulator, over real mutual TLS.

#[path = "support/watch.rs"]
mod watch_support;
use watch_support::{RotatingWatch, collect_until, identity};

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use teleport_plugin::identity::{Identity, parse_identity_file};
use teleport_plugin_sim::teleport::{SimConfig, TeleportSim};
use teleport_plugin::teleport::plugin_data::{Change, PluginDataStore};
use teleport_plugin::teleport::{ChannelOptions, DirectDialer, Feed, StreamState, TeleportClient, Watcher};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use teleport_plugin_sim::access::AccessRequestExt;

fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

async fn sim() -> TeleportSim {
    init();
    TeleportSim::start(SimConfig::default()).await.expect("simulator starts")
}

async fn client(sim: &TeleportSim, id: Arc<Identity>) -> Arc<TeleportClient> {
    let dialer = Arc::new(DirectDialer { addr: sim.addr().to_string() });
    let (client, info) = TeleportClient::connect(dialer, id, ChannelOptions::default()).await.expect("connects");
    assert_eq!(info.cluster_name, sim.cluster_name());
    Arc::new(client)
}

#[tokio::test]
async fn ping_reports_the_cluster() {
    let sim = sim().await;
    let c = client(&sim, identity(&sim)).await;
    let info = c.ping().await.unwrap();
    assert_eq!(info.server_version, "17.4.2");
    assert!(info.advanced_workflows);
    assert_eq!(info.proxy_public_addr, "teleport.sim.example.com:443");
    assert!(sim.calls("Ping") >= 2);
}

#[tokio::test]
async fn watch_delivers_init_then_typed_put_and_delete() {
    let sim = sim().await;
    let c = client(&sim, identity(&sim)).await;
    let (tx, mut rx) = mpsc::channel(64);
    let watcher = Watcher::new(c.clone(), tx);
    let mut state = watcher.state();
    let stop = CancellationToken::new();
    tokio::spawn(watcher.run(stop.clone()));

    collect_until(&mut rx, |f| matches!(f, Feed::Ready { rules_watched: true, .. })).await;
    collect_until(&mut rx, |f| matches!(f, Feed::CaughtUp { listed: 0 })).await;
    state.wait_for(|s| matches!(s, StreamState::Live { .. })).await.unwrap();

    let created = sim.request("alice@example.com", &["editor"], "fix prod");
    let mut seen = None;
    collect_until(&mut rx, |f| {
        if let Feed::Put(r) = f {
            seen = Some(r.clone());
            return true;
        }
        false
    })
    .await;
    let seen = seen.unwrap();
    assert_eq!(seen.id, created.id());
    assert_eq!(seen.user, "alice@example.com");
    assert_eq!(seen.roles, vec!["editor"]);
    assert_eq!(seen.request_reason, "fix prod");
    assert!(seen.created.is_some());

    sim.review(created.id(), "bob", true, "looks fine");
    collect_until(&mut rx, |f| matches!(f, Feed::Put(r) if r.reviews.len() == 1 && r.reviews[0].author == "bob")).await;
    sim.expire(created.id());
    collect_until(&mut rx, |f| *f == Feed::Deleted(created.id().to_string())).await;

    // Access Monitoring Rules arrive typed too.
    sim.put_rule(teleport_plugin_sim::access::monitoring_rule("r1", &["access_request"], "true", "slack", &["#ops"]));
    collect_until(&mut rx, |f| matches!(f, Feed::RulePut(r) if r.name == "r1" && r.recipients == vec!["#ops"])).await;
    sim.delete_rule("r1");
    collect_until(&mut rx, |f| *f == Feed::RuleDeleted("r1".into())).await;
    stop.cancel();
}

#[tokio::test]
async fn partial_success_without_rules_kind() {
    let sim = sim().await;
    sim.reject_watch_kind("access_monitoring_rule");
    let c = client(&sim, identity(&sim)).await;
    let (tx, mut rx) = mpsc::channel(64);
    let stop = CancellationToken::new();
    tokio::spawn(Watcher::new(c, tx).run(stop.clone()));
    collect_until(&mut rx, |f| matches!(f, Feed::Ready { rules_watched: false, .. })).await;
    stop.cancel();
}

#[tokio::test]
async fn stream_drop_mid_burst_reconnects_and_catches_up_on_the_gap() {
    let sim = sim().await;
    let c = client(&sim, identity(&sim)).await;
    let (tx, mut rx) = mpsc::channel(1024);
    let watcher = Watcher::new(c, tx);
    let stats = watcher.stats();
    let stop = CancellationToken::new();
    tokio::spawn(watcher.run(stop.clone()));
    collect_until(&mut rx, |f| matches!(f, Feed::CaughtUp { .. })).await;

    let mut expected = HashSet::new();
    for i in 0..40 {
        expected.insert(sim.request(&format!("user{i}"), &["editor"], "burst").id().to_string());
        if i == 20 {
            // Cut the stream and keep Auth unreachable while requests keep coming.
            sim.refuse_connections_for(Duration::from_millis(300));
            sim.drop_connections();
        }
    }
    let mut got = HashSet::new();
    collect_until(&mut rx, |f| {
        if let Feed::Put(r) | Feed::Listed(r) = f {
            got.insert(r.id.clone());
        }
        got.is_superset(&expected)
    })
    .await;
    assert!(stats.reconnects.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    stop.cancel();
}

#[tokio::test]
async fn list_falls_back_to_the_streaming_call_on_older_servers() {
    let sim = sim().await;
    for i in 0..3 {
        sim.request(&format!("u{i}"), &["r"], "");
    }
    sim.set_unimplemented("ListAccessRequests", true);
    let c = client(&sim, identity(&sim)).await;
    let listed = c.list_access_requests().await.unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(sim.calls("GetAccessRequestsV2"), 1);
}

#[tokio::test]
async fn listing_pages_through_every_request() {
    let sim = sim().await;
    let mut ids: Vec<String> = (0..1234).map(|i| sim.request(&format!("u{i}"), &["r"], "").id().to_string()).collect();
    let c = client(&sim, identity(&sim)).await;
    let mut listed: Vec<String> = c.list_access_requests().await.unwrap().into_iter().map(|r| r.id).collect();
    ids.sort();
    listed.sort();
    assert_eq!(listed, ids);
    assert_eq!(sim.calls("ListAccessRequests"), 3, "500 per page");
}

#[tokio::test]
async fn concurrent_cas_writers_converge() {
    let sim = sim().await;
    let req = sim.request("alice", &["editor"], "");
    let c = client(&sim, identity(&sim)).await;
    let store = PluginDataStore::new(c, "slack");
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        let id = req.id().to_string();
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                store
                    .modify(&id, |cur| {
                        let mut next = cur.cloned().unwrap_or_default();
                        next.reviews_count += 1;
                        Change::Write(next, ())
                    })
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let data = sim.plugin_data(req.id(), "slack").unwrap();
    assert_eq!(data["reviews_count"], "80", "every increment applied exactly once");
}

#[tokio::test]
async fn create_if_absent_refuses_when_another_writer_created_first() {
    let sim = sim().await;
    let req = sim.request("alice", &["editor"], "");
    let c = client(&sim, identity(&sim)).await;
    let store = PluginDataStore::new(c, "discord");
    let first = store
        .modify(req.id(), |cur| match cur {
            None => Change::Write(teleport_plugin::teleport::RequestData { user: "alice".into(), ..Default::default() }, true),
            Some(_) => Change::Keep(false),
        })
        .await
        .unwrap();
    let second = store
        .modify(req.id(), |cur| match cur {
            None => Change::Write(teleport_plugin::teleport::RequestData { user: "mallory".into(), ..Default::default() }, true),
            Some(_) => Change::Keep(false),
        })
        .await
        .unwrap();
    assert!(first && !second);
    assert_eq!(sim.plugin_data(req.id(), "discord").unwrap()["user"], "alice");
}

#[tokio::test]
async fn wrong_ca_fails_with_a_clear_message() {
    let sim = sim().await;
    let other = teleport_plugin_sim::pki::ClusterPki::new("other.example.com").unwrap();
    let issued = other.issue_identity("access-plugin", Duration::from_secs(600)).unwrap();
    let id = Arc::new(parse_identity_file(issued.identity_file.as_bytes()).unwrap());
    let dialer = Arc::new(DirectDialer { addr: sim.addr().to_string() });
    let err = TeleportClient::connect(dialer, id, ChannelOptions::default()).await.err().expect("must fail");
    let msg = err.to_string();
    assert!(msg.contains("not signed by any CA in the identity"), "{msg}");
}

#[tokio::test]
async fn unreachable_auth_fails_with_the_address() {
    init();
    let sim = sim().await;
    let id = identity(&sim);
    let dialer = Arc::new(DirectDialer { addr: "127.0.0.1:1".into() });
    let err = TeleportClient::connect(dialer, id, ChannelOptions::default()).await.err().expect("must fail");
    let msg = err.to_string();
    assert!(msg.contains("127.0.0.1:1"), "{msg}");
}

#[tokio::test]
async fn rotation_switches_make_before_break_without_losing_events() {
    let sim = sim().await;
    let first = identity(&sim);
    let c = client(&sim, first.clone()).await;
    let stop = CancellationToken::new();
    let second = RotatingWatch::start(c, first.clone(), &stop).await.rotate_mid_burst(&sim, 200).await;
    // The new stream authenticated with the new certificate.
    assert_eq!(sim.watch_inits().last().map(|(_, fp)| fp.clone()), Some(second.fingerprint.clone()));
    assert_eq!(sim.watch_inits().first().map(|(_, fp)| fp.clone()), Some(first.fingerprint.clone()));
    // The old stream was closed once the new one was live.
    assert!(sim.wait_until(Duration::from_secs(5), |s| s.active_watchers() == 1).await);
    stop.cancel();
}

#[tokio::test]
async fn a_rotated_identity_that_cannot_connect_keeps_the_current_one() {
    let sim = sim().await;
    let first = identity(&sim);
    let c = client(&sim, first.clone()).await;
    let (id_tx, id_rx) = watch::channel(first.clone());
    let (tx, mut rx) = mpsc::channel(64);
    let watcher = Watcher::new(c.clone(), tx).with_identity_updates(id_rx);
    let stats = watcher.stats();
    let stop = CancellationToken::new();
    tokio::spawn(watcher.run(stop.clone()));
    collect_until(&mut rx, |f| matches!(f, Feed::CaughtUp { .. })).await;

    let foreign = teleport_plugin_sim::pki::ClusterPki::new("other").unwrap();
    let bad = foreign.issue_identity("x", Duration::from_secs(600)).unwrap();
    id_tx.send(Arc::new(parse_identity_file(bad.identity_file.as_bytes()).unwrap())).unwrap();
    assert!(
        sim.wait_until(Duration::from_secs(10), |_| stats.rotation_failures.load(std::sync::atomic::Ordering::Relaxed) == 1)
            .await
    );
    assert!(stats.last_rotation_error().unwrap().contains("not signed by any CA"));
    // Still serving on the old identity.
    let r = sim.request("carol", &["editor"], "");
    collect_until(&mut rx, |f| matches!(f, Feed::Put(x) if x.id == r.id())).await;
    assert_eq!(c.connection().identity.fingerprint, first.fingerprint);
    stop.cancel();
}

#[tokio::test]
async fn expired_identity_is_refused_with_renewal_advice() {
    let sim = sim().await;
    let now = SystemTime::now();
    let issued = sim
        .pki()
        .issue_identity_between("access-plugin", now - Duration::from_secs(7200), now - Duration::from_secs(3600))
        .unwrap();
    let id = parse_identity_file(issued.identity_file.as_bytes()).unwrap();
    let err = id.ensure_unexpired(now).unwrap_err().to_string();
    assert!(err.contains("expired"), "{err}");
    assert!(err.contains("every credential"), "{err}");
    assert!(err.contains("tctl auth sign"), "{err}");
    // The server refuses it too.
    let dialer = Arc::new(DirectDialer { addr: sim.addr().to_string() });
    assert!(TeleportClient::connect(dialer, Arc::new(id), ChannelOptions::default()).await.is_err());
}

/// A request for `resources` (kind, name) in the simulator's cluster.
fn resource_request(id: &str, resources: &[(&str, &str)]) -> teleport_plugin::model::AccessRequest {
    let mut r = teleport_plugin::model::AccessRequest::new_pending(id, "alice@example.com", vec!["access".into()]);
    r.resources = resources
        .iter()
        .map(|(kind, name)| teleport_plugin::model::ResourceId {
            cluster: "sim.example.com".into(),
            kind: kind.to_string(),
            name: name.to_string(),
            sub_resource: String::new(),
        })
        .collect();
    r
}

fn labels(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[tokio::test]
async fn labels_of_requested_nodes_apps_and_databases_are_listed_once_per_request() {
    use teleport_plugin_sim::teleport::SimResource;
    let sim = sim().await;
    sim.put_node("web-1", &[("env", "prod"), ("team", "payments")]);
    sim.put_node("web-2", &[("env", "prod")]);
    sim.put_node("other", &[("env", "dev")]);
    // Served by two agents; the second one runs a command label too.
    sim.put_resource(SimResource::app("grafana").labels(&[("env", "prod")]));
    sim.put_resource(SimResource::app("grafana").labels(&[("env", "prod")]).dynamic(&[("zone", "b")]).on_host("sim-agent-2"));
    // A command label overrides the static label of the same name.
    sim.put_resource(SimResource::db("orders").labels(&[("env", "staging"), ("engine", "pg")]).dynamic(&[("env", "prod")]));
    let c = client(&sim, identity(&sim)).await;

    let req = resource_request(
        "r1",
        &[("node", "web-1"), ("node", "web-2"), ("node", "gone"), ("app", "grafana"), ("db", "orders"), ("node", "web-1")],
    );
    let got = c.request_resource_labels(&req).await.unwrap();
    assert_eq!(
        *got,
        vec![
            // app_server, db_server, node: one call per type, in that order.
            labels(&[("env", "prod")]),
            labels(&[("env", "prod"), ("zone", "b")]),
            labels(&[("engine", "pg"), ("env", "prod")]),
            labels(&[("env", "prod"), ("team", "payments")]),
            labels(&[("env", "prod")]),
        ],
        "the node that is gone is left out, as upstream"
    );
    let calls = sim.list_resources_requests();
    // The app: one name per page, and a second page for its second agent.
    assert_eq!(calls.len(), 4, "{calls:#?}");
    let node = calls.iter().find(|r| r.resource_type == "node").unwrap();
    assert_eq!(node.limit, 3, "one per distinct name");
    assert_eq!(
        node.predicate_expression,
        r#"resource.metadata.name == "gone" || resource.metadata.name == "web-1" || resource.metadata.name == "web-2""#
    );
    assert!(calls.iter().all(|r| r.use_preview_as_roles && !r.use_search_as_roles));
    let app_pages: Vec<_> = calls.iter().filter(|r| r.resource_type == "app_server").collect();
    assert_eq!(app_pages.len(), 2);
    assert_eq!((app_pages[0].start_key.as_str(), app_pages[1].start_key.as_str()), ("", "sim-agent-2/grafana"));

    // Asked again (another chat routing the same request): no new call.
    assert_eq!(c.request_resource_labels(&req).await.unwrap(), got);
    assert_eq!(sim.calls("ListResources"), 4);
    // A role request lists nothing.
    assert!(c.request_resource_labels(&resource_request("r2", &[])).await.unwrap().is_empty());
    assert_eq!(sim.calls("ListResources"), 4);
}

#[tokio::test]
async fn resource_labels_fail_without_permission_or_for_kinds_not_read() {
    use teleport_plugin::teleport::resources::ResourceLabelsError;
    let sim = sim().await;
    sim.put_node("web-1", &[("env", "prod")]);
    let c = client(&sim, identity(&sim)).await;
    let req = resource_request("r1", &[("node", "web-1")]);

    sim.deny_resource_reads(true);
    let err = c.request_resource_labels(&req).await.unwrap_err();
    assert!(matches!(err, ResourceLabelsError::Denied { resource_type: "node", .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("PermissionDenied") && text.contains("preview_as_roles"), "{text}");
    // A failure is not kept: once allowed, the labels are read.
    sim.deny_resource_reads(false);
    assert_eq!(*c.request_resource_labels(&req).await.unwrap(), vec![labels(&[("env", "prod")])]);

    // A kind whose labels are not read fails the whole request's labels.
    let calls = sim.calls("ListResources");
    let kube = resource_request("r2", &[("node", "web-1"), ("kube_cluster", "k1")]);
    let err = c.request_resource_labels(&kube).await.unwrap_err();
    assert!(matches!(&err, ResourceLabelsError::UnsupportedKind(k) if k == "kube_cluster"), "{err:?}");
    assert_eq!(sim.calls("ListResources"), calls, "refused before any call");
}
