//! The fault matrix: every scenario counts notifications expected against
//! received, and requires 0 lost and 0 duplicated.
//!
//! Each test runs the whole plugin (in-process, or the real binary for
//! kill -9) against the Teleport and Slack simulators.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::chats::{CHANNEL_SLACK, Sim};
use common::{Env, eventually};
use teleport_plugin::app::{Extras, Running, launch};
use teleport_plugin::chat::Chat;
use teleport_plugin::chat::http::ClientOptions;
use teleport_plugin::chat::slack::SlackChat;
use teleport_plugin::config::Secret;
use teleport_plugin_sim::chat::{ChatSim, RateWindow, SlackSim};
use teleport_plugin_sim::access::AccessRequestExt;

/// Asserts every id has exactly one card; reports lost and duplicated.
fn exactly_once(scenario: &str, ids: &[String], counts: &HashMap<String, usize>) {
    let lost = ids.iter().filter(|id| !counts.contains_key(*id)).count();
    let dup = ids.iter().filter(|id| counts.get(*id).is_some_and(|n| *n > 1)).count();
    println!("{scenario}: expected {}, received {}, lost {lost}, duplicated {dup}", ids.len(), ids.len() - lost);
    assert_eq!((lost, dup), (0, 0), "{scenario}: lost {lost}, duplicated {dup}");
}

/// Waits until every id has a card (or the timeout).
async fn all_posted(sim: &Sim, ids: &[String], timeout: Duration) {
    eventually(timeout, || {
        let c = sim.card_counts();
        ids.iter().all(|id| c.contains_key(id))
    })
    .await;
}

/// Waits until every id has a card, then until every plugin process reports
/// no work in progress on `/metrics` (see [`common::wait_idle_metrics`]).
async fn settle(sim: &Sim, metrics: &[String], ids: &[String], timeout: Duration) -> HashMap<String, usize> {
    all_posted(sim, ids, timeout).await;
    assert!(common::wait_idle_metrics(metrics, timeout).await, "the plugin processes went idle");
    sim.card_counts()
}

/// Waits until every id has a card, then until every plugin has nothing
/// queued, running or waiting for a retry (see [`common::wait_idle`]): only
/// then can no later retry add a duplicate.
async fn settle_idle(sim: &Sim, plugins: &[&Running], ids: &[String], timeout: Duration) -> HashMap<String, usize> {
    all_posted(sim, ids, timeout).await;
    assert!(common::wait_idle(plugins, timeout).await, "the plugins went idle");
    sim.card_counts()
}

fn slack(sim: &Sim) -> &SlackSim {
    match sim {
        Sim::Slack(s) => s,
        _ => unreachable!("the matrix runs on Slack"),
    }
}

/// Short timeouts so timeout scenarios run in seconds.
fn quick() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_millis(500),
        max_attempts: 3,
        call_budget: Duration::from_secs(3),
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        lookup_ttl: Duration::from_secs(60),
    }
}

async fn start(env: &Env, sim: &Sim, extra: &str) -> Running {
    let cfg = env.config(&format!("{}[plugin]\ninstance_id = \"matrix\"\n{extra}", sim.section()));
    let chat = SlackChat::with_options(&slack(sim).base_url(), Secret::new("xoxb-sim-token"), quick()).unwrap();
    let running = launch(&cfg, vec![Arc::new(chat) as Arc<dyn Chat>], Extras::default()).await.expect("launch");
    assert!(running.ready(Duration::from_secs(10)).await);
    running
}

fn burst(env: &Env, n: usize, tag: &str) -> Vec<String> {
    (0..n).map(|i| env.sim.request(&format!("{tag}{i}@example.com"), &["editor"], tag).id().to_string()).collect()
}

#[tokio::test]
async fn teleport_stream_dropped_mid_burst() {
    let env = Env::new().await;
    let sim = Sim::start("slack").await;
    let running = start(&env, &sim, "").await;
    let mut ids = burst(&env, 50, "a");
    env.sim.drop_streams();
    // The stream comes back (a second INIT) while burst "a" is in flight.
    assert!(env.sim.wait_until(Duration::from_secs(10), |s| s.watch_inits().len() >= 2).await, "stream re-opened");
    ids.extend(burst(&env, 50, "b"));
    env.sim.drop_connections();
    assert!(env.sim.wait_until(Duration::from_secs(10), |s| s.watch_inits().len() >= 3).await, "reconnected");
    ids.extend(burst(&env, 50, "c"));
    let counts = settle_idle(&sim, &[&running], &ids, Duration::from_secs(30)).await;
    exactly_once("stream dropped mid-burst", &ids, &counts);
    // Both faults landed: the stream was re-opened twice (one INIT each).
    let reconnects = running.watch_stats.reconnects.load(std::sync::atomic::Ordering::Relaxed);
    assert!(reconnects >= 2, "reconnects: {reconnects}");
    assert!(env.sim.watch_inits().len() >= 3, "watch streams opened: {}", env.sim.watch_inits().len());
    running.stop(Duration::from_secs(5)).await;
}

/// The Teleport-side faults against Discord and Mattermost too (their real
/// clients, default options): stream dropped, connections cut, Auth refusing
/// connections for a while, each while a burst is in flight.
async fn teleport_faults_on(which: &str) {
    let env = Env::new().await;
    let sim = Sim::start(which).await;
    // 90 cards in one channel: Discord's 5 posts per 5 s would make this a
    // test of pacing (covered in rate_limits.rs), not of Teleport faults.
    sim.without_rate_limits();
    let running = common::start_plugin(&env, &sim, "[plugin]\ninstance_id = \"matrix\"\n").await;
    let mut ids = burst(&env, 30, "a");
    env.sim.drop_streams();
    assert!(env.sim.wait_until(Duration::from_secs(10), |s| s.watch_inits().len() >= 2).await, "{which}: stream re-opened");
    ids.extend(burst(&env, 30, "b"));
    env.sim.refuse_connections_for(Duration::from_secs(5));
    env.sim.drop_connections();
    ids.extend(burst(&env, 30, "c"));
    assert!(env.sim.wait_until(Duration::from_secs(30), |s| s.watch_inits().len() >= 3).await, "{which}: reconnected");
    let counts = settle_idle(&sim, &[&running], &ids, Duration::from_secs(60)).await;
    exactly_once(&format!("{which}: Teleport faults"), &ids, &counts);
    assert!(running.watch_stats.reconnects.load(std::sync::atomic::Ordering::Relaxed) >= 2, "{which}: both faults landed");
    running.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn teleport_faults_with_discord() {
    teleport_faults_on("discord").await;
}

#[tokio::test]
async fn teleport_faults_with_mattermost() {
    teleport_faults_on("mattermost").await;
}

/// Auth answers plugin-data reads and writes and the catch-up listing with
/// errors for a while, and every call slowly: each failed step is retried.
#[tokio::test]
async fn plugin_data_and_listing_calls_fail_for_a_while() {
    let env = Env::new().await;
    let sim = Sim::start("slack").await;
    let running = start(&env, &sim, "").await;
    env.sim.set_delay(Duration::from_millis(20));
    for _ in 0..15 {
        env.sim.fail_next("UpdatePluginData", tonic::Status::unavailable("backend is unavailable"));
        env.sim.fail_next("GetPluginData", tonic::Status::internal("backend read failed"));
    }
    let writes_before = env.sim.calls("UpdatePluginData");
    let mut ids = burst(&env, 30, "pd");
    // A dropped stream makes the plugin list requests again; the first
    // listings fail too.
    for _ in 0..3 {
        env.sim.fail_next("ListAccessRequests", tonic::Status::unavailable("backend is unavailable"));
    }
    let lists_before = env.sim.calls("ListAccessRequests");
    env.sim.drop_streams();
    ids.extend(burst(&env, 30, "pd2"));
    let counts = settle_idle(&sim, &[&running], &ids, Duration::from_secs(60)).await;
    env.sim.set_delay(Duration::ZERO);
    exactly_once("plugin data and listing failures", &ids, &counts);
    assert!(env.sim.calls("UpdatePluginData") >= writes_before + 15, "the failed writes were made and retried");
    assert!(env.sim.calls("ListAccessRequests") >= lists_before + 4, "the failed listings were retried");
    running.stop(Duration::from_secs(5)).await;
}

/// A watcher that falls behind is closed by Auth (a small event buffer, as
/// Teleport closes lagging watchers): the plugin re-opens and catches up.
#[tokio::test]
async fn lagging_watcher_is_closed_and_catches_up() {
    let env = Env::with(teleport_plugin_sim::teleport::SimConfig { watcher_buffer: 16, ..Default::default() }).await;
    let sim = Sim::start("slack").await;
    let running = start(&env, &sim, "").await;
    let ids = burst(&env, 300, "lag");
    let counts = settle_idle(&sim, &[&running], &ids, Duration::from_secs(60)).await;
    exactly_once("lagging watcher closed", &ids, &counts);
    assert!(running.watch_stats.reconnects.load(std::sync::atomic::Ordering::Relaxed) >= 1, "the stream was closed as lagging");
    running.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn auth_unreachable_for_30_seconds() {
    let env = Env::new().await;
    let sim = Sim::start("slack").await;
    let running = start(&env, &sim, "").await;
    let mut ids = burst(&env, 20, "before");
    env.sim.refuse_connections_for(Duration::from_secs(30));
    env.sim.drop_connections();
    // Requests keep arriving at Auth while the plugin cannot reach it.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_secs(5)).await;
        ids.extend(burst(&env, 10, "during"));
    }
    ids.extend(burst(&env, 20, "after"));
    let counts = settle_idle(&sim, &[&running], &ids, Duration::from_secs(30)).await;
    exactly_once("Auth unreachable for 30 s", &ids, &counts);
    assert!(running.watch_stats.reconnects.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    running.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn chat_429_storm() {
    let env = Env::new().await;
    let sim = Sim::start("slack").await;
    slack(&sim).set_rate_limit("chat.postMessage", Some(RateWindow::new(3, Duration::from_secs(1))));
    let running = start(&env, &sim, "").await;
    let ids = burst(&env, 40, "rl");
    let counts = settle_idle(&sim, &[&running], &ids, Duration::from_secs(60)).await;
    exactly_once("chat 429 storm", &ids, &counts);
    // Politeness: no call inside a window a 429 announced (calls already on
    // the wire when the 429 was sent excepted), and few 429s per post.
    let inside: Vec<_> = sim.core().calls_inside_windows().into_iter().filter(|c| c.lag() > Duration::from_millis(150)).collect();
    assert!(inside.is_empty(), "calls inside announced windows: {inside:?}");
    let refused = sim.core().calls().iter().filter(|c| c.status == 429).count();
    assert!(refused <= ids.len(), "{refused} answers 429 for {} posts", ids.len());
    running.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn chat_5xx_for_a_while() {
    let env = Env::new().await;
    let sim = Sim::start("slack").await;
    let running = start(&env, &sim, "").await;
    sim.core().fail_next(60, 503, Some("chat.postMessage"));
    let ids = burst(&env, 40, "err");
    let counts = settle_idle(&sim, &[&running], &ids, Duration::from_secs(60)).await;
    exactly_once("chat 5xx for a while", &ids, &counts);
    assert!(sim.core().calls().iter().filter(|c| c.status == 503).count() >= 60);
    running.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn chat_timeouts() {
    let env = Env::new().await;
    let sim = Sim::start("slack").await;
    let running = start(&env, &sim, "").await;
    // Answers come after the client gave up, but the posts happen: the
    // plugin must find them instead of posting again.
    sim.core().set_response_delay(Duration::from_millis(800));
    let ids = burst(&env, 20, "slow");
    tokio::time::sleep(Duration::from_secs(3)).await;
    sim.core().set_response_delay(Duration::ZERO);
    let counts = settle_idle(&sim, &[&running], &ids, Duration::from_secs(60)).await;
    exactly_once("chat timeouts", &ids, &counts);
    // The fault landed: posts the client gave up on (which the simulator
    // still applied) were found in the channel instead of posted again.
    let abandoned = sim
        .core()
        .calls()
        .iter()
        .filter(|c| c.endpoint == "chat.postMessage" && c.status == teleport_plugin_sim::chat::STATUS_CLIENT_CLOSED)
        .count();
    assert!(abandoned >= 1, "no post timed out");
    assert!(sim.core().calls().iter().any(|c| c.endpoint == "conversations.history"), "interrupted posts looked up");
    running.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn identity_rotated_mid_burst() {
    let env = Env::new().await;
    let sim = Sim::start("slack").await;
    let running = follow_file(&env, &sim).await;
    let mut ids = burst(&env, 60, "r1");
    std::fs::write(&env.identity_path, env.sim.issue_identity("access-plugin", Duration::from_secs(7200)).unwrap().identity_file).unwrap();
    ids.extend(burst(&env, 60, "r2"));
    let counts = settle_idle(&sim, &[&running], &ids, Duration::from_secs(30)).await;
    exactly_once("identity rotated mid-burst", &ids, &counts);
    assert!(eventually(Duration::from_secs(10), || running.watch_stats.rotations.load(std::sync::atomic::Ordering::Relaxed) == 1).await);
    running.stop(Duration::from_secs(5)).await;
}

/// The plugin following its identity file (as tbot's output is followed).
async fn follow_file(env: &Env, sim: &Sim) -> Running {
    let text = env.config_text(&format!("{}[plugin]\ninstance_id = \"matrix\"\n", sim.section())).replace(
        &format!("identity = \"{}\"", env.identity_path.display()),
        &format!("identity = \"{}\"\nrefresh_identity = true\nrefresh_identity_interval = \"100ms\"", env.identity_path.display()),
    );
    let cfg = teleport_plugin::config::Config::parse(&text, teleport_plugin::config::Format::Toml, "t").unwrap();
    let chat = SlackChat::with_options(&slack(sim).base_url(), Secret::new("xoxb-sim-token"), quick()).unwrap();
    let running = launch(&cfg, vec![Arc::new(chat) as Arc<dyn Chat>], Extras::default()).await.unwrap();
    assert!(running.ready(Duration::from_secs(10)).await);
    running
}

#[tokio::test]
async fn garbage_identity_update() {
    let env = Env::new().await;
    let sim = Sim::start("slack").await;
    let running = follow_file(&env, &sim).await;
    let mut ids = burst(&env, 30, "g1");
    std::fs::write(&env.identity_path, "garbage that is no identity").unwrap();
    let mut status = running.identity.clone();
    status.wait_for(|s| s.last_error.is_some()).await.unwrap();
    ids.extend(burst(&env, 30, "g2"));
    let counts = settle_idle(&sim, &[&running], &ids, Duration::from_secs(30)).await;
    exactly_once("garbage identity update", &ids, &counts);
    assert!(running.identity.borrow().last_error.as_deref().unwrap().contains("refused, keeping the current identity"));
    running.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn expired_identity() {
    let env = Env::new().await;
    let sim = Sim::start("slack").await;
    let running = follow_file(&env, &sim).await;
    let mut ids = burst(&env, 20, "e1");
    let now = std::time::SystemTime::now();
    let expired = env.sim.pki().issue_identity_between("access-plugin", now - Duration::from_secs(7200), now - Duration::from_secs(60)).unwrap();
    std::fs::write(&env.identity_path, &expired.identity_file).unwrap();
    let mut status = running.identity.clone();
    status.wait_for(|s| s.last_error.as_deref().is_some_and(|e| e.contains("expired"))).await.unwrap();
    ids.extend(burst(&env, 20, "e2"));
    let counts = settle_idle(&sim, &[&running], &ids, Duration::from_secs(30)).await;
    exactly_once("expired identity update", &ids, &counts);
    running.stop(Duration::from_secs(5)).await;

    // Starting with only an expired identity fails with advice.
    let cfg = env.config(&sim.section());
    let err = launch(&cfg, vec![], Extras::default()).await.err().expect("refused").to_string();
    assert!(err.contains("expired") && err.contains("Renew it"), "{err}");
}

/// A rollout with a broken configuration (`helm upgrade` with bad values):
/// the new process refuses to start, naming every bad key, and the plugin
/// already running keeps delivering.
#[tokio::test]
async fn invalid_config_is_refused_and_leaves_the_running_plugin_alone() {
    let env = Env::new().await;
    let sim = Sim::start("slack").await;
    let running = start(&env, &sim, "").await;
    let mut ids = burst(&env, 10, "ok");
    let bad = env.dir.path().join("bad.toml");
    std::fs::write(&bad, env.config_text(&format!("{}[plugin]\nconcurrency = 0\nclaim_lease = \"soon\"\n", sim.section()))).unwrap();
    let out = tokio::task::spawn_blocking(move || Command::new(BIN).args(["start", "--config"]).arg(&bad).output().unwrap())
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("plugin.concurrency: 0 is out of range") && err.contains("plugin.claim_lease"), "{err}");
    ids.extend(burst(&env, 10, "after"));
    let counts = settle_idle(&sim, &[&running], &ids, Duration::from_secs(20)).await;
    exactly_once("invalid config next to a running plugin", &ids, &counts);
    running.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn two_replicas() {
    let env = Env::new().await;
    let sim = Sim::start("slack").await;
    let cfg = |id: &str| env.config(&format!("{}[plugin]\ninstance_id = \"{id}\"\n", sim.section()));
    let mut replicas = Vec::new();
    for id in ["r-a", "r-b"] {
        let chat = SlackChat::with_options(&slack(&sim).base_url(), Secret::new("xoxb-sim-token"), quick()).unwrap();
        let r = launch(&cfg(id), vec![Arc::new(chat) as Arc<dyn Chat>], Extras::default()).await.unwrap();
        assert!(r.ready(Duration::from_secs(10)).await);
        replicas.push(r);
    }
    let ids = burst(&env, 100, "ha");
    let counts = settle_idle(&sim, &replicas.iter().collect::<Vec<_>>(), &ids, Duration::from_secs(30)).await;
    exactly_once("two replicas", &ids, &counts);
    for r in replicas {
        r.stop(Duration::from_secs(5)).await;
    }
}

const BIN: &str = env!("CARGO_BIN_EXE_teleport-plugin");

#[tokio::test]
async fn kill_9_mid_broadcast_then_restart() {
    let env = Env::new().await;
    let sim = Sim::start("slack").await;
    let (text, metrics) = common::with_metrics(&env.config_text(&format!("{}[plugin]\ninstance_id = \"killed\"\nconcurrency = 16\n", sim.section())));
    let path = env.dir.path().join("slack.toml");
    std::fs::write(&path, text).unwrap();
    let path = path.display().to_string();
    let mut child = common::spawn_plugin(&path);
    sim.core().set_response_delay(Duration::from_millis(40));
    let ids = burst(&env, 200, "k");
    assert!(eventually(Duration::from_secs(30), || sim.card_counts().len() >= 40).await, "posting started");
    child.kill(); // SIGKILL
    sim.core().set_response_delay(Duration::ZERO);
    let interrupted = ids.iter().filter(|id| env.sim.plugin_data(id, "slack").is_some_and(|d| d.contains_key("notify_pending"))).count();
    println!("kill -9 left {interrupted} requests mid-broadcast");
    let mut child = common::spawn_plugin(&path);
    let counts = settle(&sim, &[metrics], &ids, Duration::from_secs(60)).await;
    child.kill();
    exactly_once("kill -9 mid-broadcast then restart", &ids, &counts);
    assert!(interrupted > 0, "the kill landed mid-broadcast");
}

/// Two replicas (real processes, different instance ids); one is killed in
/// the middle of a broadcast. The survivor takes over what the dead one had
/// claimed once its lease runs out, and nothing is posted twice, also after
/// waiting past another lease.
#[tokio::test]
async fn replica_killed_mid_broadcast_the_other_takes_over_after_the_lease() {
    let env = Env::new().await;
    let sim = Sim::start("slack").await;
    let lease = Duration::from_secs(2);
    let write = |id: &str| {
        let (text, metrics) =
            common::with_metrics(&env.config_text(&format!("{}[plugin]\ninstance_id = \"{id}\"\nclaim_lease = \"2s\"\nconcurrency = 16\n", sim.section())));
        let path = env.dir.path().join(format!("{id}.toml"));
        std::fs::write(&path, text).unwrap();
        (path.display().to_string(), metrics)
    };
    let ((a, _), (b, survivor)) = (write("replica-a"), write("replica-b"));
    let mut first = common::spawn_plugin(&a);
    let mut second = common::spawn_plugin(&b);
    // Both watch Auth before the burst: a replica still starting when the
    // other has posted the first 40 would be killed holding no claim.
    assert!(env.sim.wait_until(Duration::from_secs(30), |s| s.watch_inits().len() >= 2).await, "both replicas watching");
    sim.core().set_response_delay(Duration::from_millis(40));
    let ids = burst(&env, 200, "ha");
    assert!(eventually(Duration::from_secs(30), || sim.card_counts().len() >= 40).await, "posting started");
    first.kill(); // SIGKILL: its claims stay behind
    let owned_by_dead = ids
        .iter()
        .filter(|id| {
            env.sim.plugin_data(id, "slack").is_some_and(|d| {
                d.get("notify_owner").map(String::as_str) == Some("replica-a") && d.contains_key("notify_pending")
            })
        })
        .count();
    sim.core().set_response_delay(Duration::ZERO);
    // The survivor is busy until the dead replica's leases run out and it
    // has finished what they covered.
    let counts = settle(&sim, &[survivor], &ids, Duration::from_secs(60)).await;
    exactly_once("replica killed mid-broadcast", &ids, &counts);
    // A late takeover would post again only after another lease: look again.
    tokio::time::sleep(lease * 2).await;
    exactly_once("replica killed mid-broadcast, past the lease", &ids, &sim.card_counts());
    second.kill();
    assert!(owned_by_dead > 0, "the killed replica held unfinished claims when it died");
}

#[tokio::test]
async fn invalid_route_resource_is_reported_and_changes_nothing_else() {
    use serde_json::json;
    use teleport_plugin::k8s::crd::{AccessRequestRoute, GROUP, PLURAL, VERSION};
    let env = Env::new().await;
    let sim = Sim::start("slack").await;
    let kube = teleport_plugin_sim::kube::KubeSim::start().await;
    kube.register_crd(GROUP, VERSION, PLURAL, "AccessRequestRoute", true, true);
    let route = |name: &str, rules: serde_json::Value| {
        json!({"apiVersion": format!("{GROUP}/{VERSION}"), "kind": "AccessRequestRoute",
               "metadata": {"name": name, "namespace": "teleport"}, "spec": {"rules": rules}})
    };
    kube.create_json(route("good", json!([{"match": {"roles": ["editor"]}, "recipients": {"slack": ["C0EXTRA001"]}}]))).unwrap();
    kube.create_json(route("bad", json!([{"match": {"roles": ["[x"]}, "recipients": {"slack": ["C0NEVER001"]}}]))).unwrap();
    slack(&sim).add_channel(teleport_plugin_sim::chat::SimChannel::new("C0EXTRA001", "extra"));
    let cfg = env.config(&format!("{}[plugin]\ninstance_id = \"matrix\"\n[routing]\ncrd = true\nnamespace = \"teleport\"\n", sim.section()));
    let stop = tokio_util::sync::CancellationToken::new();
    let setup = teleport_plugin::k8s::setup_with(&cfg, &stop, kube.client()).await.unwrap();
    let routes = setup.routes;
    let chat = SlackChat::with_options(&slack(&sim).base_url(), Secret::new("xoxb-sim-token"), quick()).unwrap();
    let running = launch(&cfg, vec![Arc::new(chat) as Arc<dyn Chat>], setup.extras).await.unwrap();
    teleport_plugin::k8s::start_routes(routes, running.metrics.clone(), stop.clone());
    assert!(running.ready(Duration::from_secs(10)).await);
    let ready = |k: &teleport_plugin_sim::kube::KubeSim, n: &str| {
        k.get::<AccessRequestRoute>("teleport", n).and_then(|r| r.status).map(|s| s.conditions[0].status.clone())
    };
    assert!(kube.wait_until(Duration::from_secs(10), |k| ready(k, "bad").as_deref() == Some("False") && ready(k, "good").as_deref() == Some("True")).await);
    let ids = burst(&env, 30, "crd");
    // Two cards each: the role map's channel and the valid route's channel.
    eventually(Duration::from_secs(30), || ids.iter().all(|id| sim.cards(id).len() == 2)).await;
    let per_channel = |ch: &str| {
        let mut m = HashMap::new();
        for msg in slack(&sim).messages_in(ch).into_iter().filter(|m| m.thread_ts.is_none()) {
            if let Some(id) = msg.metadata.as_ref().and_then(|md| md["event_payload"]["request_id"].as_str().map(String::from)) {
                *m.entry(id).or_insert(0) += 1;
            }
        }
        m
    };
    exactly_once("invalid route next to a valid one (role map channel)", &ids, &per_channel(CHANNEL_SLACK));
    exactly_once("invalid route next to a valid one (route channel)", &ids, &per_channel("C0EXTRA001"));
    assert!(slack(&sim).messages_in("C0NEVER001").is_empty());
    stop.cancel();
    running.stop(Duration::from_secs(5)).await;
}

// ---- answers lost after the call was applied --------------------------------------

/// Auth applies a plugin-data write, then the connection dies before the
/// answer: the plugin sees a transport error for a write that landed (and
/// its watch stream goes down with the connection). Retrying must not post
/// a second card, lose one, or loop on the compare-and-swap mismatch its
/// own landed write causes; resolutions written the same way must end in
/// the right state with one requester notice each.
#[tokio::test]
async fn plugin_data_writes_applied_then_the_connection_dies() {
    let env = Env::new().await;
    let sim = Sim::start("slack").await;
    let running = start(&env, &sim, "").await;
    const CUTS: u64 = 10;
    // Requests by a chat user, so each resolution also owes a notice.
    let ids: Vec<String> = (0..30).map(|_| env.sim.request("alice@example.com", &["editor"], "cut").id().to_string()).collect();
    env.sim.cut_after_apply("UpdatePluginData", CUTS as u32);
    let counts = settle_idle(&sim, &[&running], &ids, Duration::from_secs(60)).await;
    exactly_once("plugin data writes applied, answer lost", &ids, &counts);
    assert_eq!(env.sim.cut_calls("UpdatePluginData"), CUTS, "every cut landed on an applied write");

    env.sim.cut_after_apply("UpdatePluginData", CUTS as u32);
    for (i, id) in ids.iter().enumerate() {
        if i.is_multiple_of(2) {
            env.sim.approve(id, "ok");
        } else {
            env.sim.deny(id, "no");
        }
    }
    let want = |i: usize| if i.is_multiple_of(2) { "APPROVED" } else { "DENIED" };
    let notices = |id: &str| sim.messages().iter().filter(|m| m.request == id && m.kind == "notice").count();
    let finished = eventually(Duration::from_secs(60), || {
        ids.iter().enumerate().all(|(i, id)| sim.cards(id).first().is_some_and(|c| c.text.contains(want(i))) && notices(id) >= 1)
    })
    .await;
    let counts = settle_idle(&sim, &[&running], &ids, Duration::from_secs(30)).await;
    assert!(finished, "every card shows its resolution and every requester was told");
    exactly_once("resolutions applied, answer lost", &ids, &counts);
    assert_eq!(env.sim.cut_calls("UpdatePluginData"), 2 * CUTS, "every cut landed on an applied write");
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(notices(id), 1, "{id}: one requester notice");
        let data = env.sim.plugin_data(id, "slack").expect("record");
        assert_eq!(data.get("resolution").map(String::as_str), Some(want(i)), "{id}: {data:?}");
        // Not stuck: nothing left pending and the claim given up.
        assert!(!data.contains_key("notify_pending") && !data.contains_key("notify_owner"), "{id}: {data:?}");
    }
    assert_eq!(running.active(), 0, "nothing left queued or retrying");
    assert!(running.watch_stats.reconnects.load(std::sync::atomic::Ordering::Relaxed) >= 1, "the cuts took the stream down");
    running.stop(Duration::from_secs(5)).await;
}

// ---- repeated and reordered watch events ------------------------------------------

/// The watch stream sends some Puts twice and some after newer states of
/// their request (PENDING with one review after the resolution with two,
/// once the resolution was handled).
/// Cards must end in the request's true final state, with every review
/// shown (Discord) or replied to once (Slack threads), one requester notice
/// each and one card each.
async fn disordered_watch_on(which: &str) {
    use teleport_plugin_sim::teleport::WatchDisorder;
    let env = Env::new().await;
    // Every second Put is held back for 500 ms: long enough for the newer
    // states that overtake it to be acted on first.
    let disorder = WatchDisorder { duplicate_every: 3, reorder_every: 2, reorder_delay: Duration::from_millis(500) };
    env.sim.set_watch_disorder(Some(disorder));
    let sim = Sim::start(which).await;
    let running = common::start_plugin(&env, &sim, "[plugin]\ninstance_id = \"matrix\"\n").await;
    let ids: Vec<String> = (0..20).map(|_| env.sim.request("alice@example.com", &["editor"], "disorder").id().to_string()).collect();
    assert!(eventually(Duration::from_secs(30), || { let c = sim.card_counts(); ids.iter().all(|id| c.contains_key(id)) }).await, "{which}: cards posted");
    let want = |i: usize| if i.is_multiple_of(2) { "APPROVED" } else { "DENIED" };
    for (i, id) in ids.iter().enumerate() {
        env.sim.review(id, "bob@example.com", true, &format!("first look {i}"));
        env.sim.review(id, "carol@example.com", true, &format!("second look {i}"));
        if i.is_multiple_of(2) {
            env.sim.approve(id, "done");
        } else {
            env.sim.deny(id, "done");
        }
    }
    let of_kind = |id: &str, kind: &str| sim.messages().iter().filter(|m| m.request == id && m.kind == kind).count();
    let shows_all = |i: usize, id: &str| {
        sim.cards(id).first().is_some_and(|c| {
            c.text.contains(want(i)) && (which != "discord" || (c.text.contains(&format!("first look {i}")) && c.text.contains(&format!("second look {i}"))))
        })
    };
    eventually(Duration::from_secs(30), || ids.iter().enumerate().all(|(i, id)| shows_all(i, id) && of_kind(id, "notice") >= 1)).await;
    let counts = settle_idle(&sim, &[&running], &ids, Duration::from_secs(30)).await;
    exactly_once(&format!("{which}: repeated and reordered Puts"), &ids, &counts);
    for (i, id) in ids.iter().enumerate() {
        let card = &sim.cards(id)[0];
        assert!(shows_all(i, id) && !card.text.contains("PENDING"), "{which}: {id} must show {} and both reviews: {}", want(i), card.text);
        assert_eq!(of_kind(id, "notice"), 1, "{which}: {id}: one requester notice");
        if which != "discord" {
            assert_eq!((of_kind(id, "review-0"), of_kind(id, "review-1")), (1, 1), "{which}: {id}: one thread reply per review");
        }
    }
    let (duplicated, stale) = env.sim.disorder_counts();
    println!("{which}: {duplicated} Puts sent twice, {stale} sent after newer states");
    assert!(duplicated >= 10 && stale >= 10, "{which}: the disorder landed: {duplicated} duplicated, {stale} stale");
    running.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn repeated_and_reordered_puts_with_slack() {
    disordered_watch_on("slack").await;
}

#[tokio::test]
async fn repeated_and_reordered_puts_with_discord() {
    disordered_watch_on("discord").await;
}

// ---- through a Proxy: tunnels dropped, Auth away, idle tunnels ----------------------

use teleport_plugin_sim::proxy::{Front, ProxySim, ProxySimConfig};

async fn front(env: &Env, front: Front, idle_timeout: Option<Duration>) -> ProxySim {
    let cfg = ProxySimConfig { front, idle_timeout, ..ProxySimConfig::default() };
    ProxySim::start(&env.sim, cfg).await.expect("proxy starts")
}

/// The plugin with `teleport.addr` = the front's address (trusting its web
/// CA), reaching Auth through it.
async fn start_through(env: &Env, sim: &Sim, proxy: &ProxySim) -> Running {
    let ca = env.dir.path().join(format!("web-ca-{}.pem", proxy.addr().port()));
    std::fs::write(&ca, proxy.web_ca_pem()).unwrap();
    let text = env.config_text(&format!("{}[plugin]\ninstance_id = \"matrix\"\n", sim.section())).replace(
        &format!("addr = \"{}\"", env.sim.addr()),
        &format!("addr = \"{}\"\nweb_ca = \"{}\"\nconnection = \"proxy\"", proxy.addr(), ca.display()),
    );
    let cfg = teleport_plugin::config::Config::parse(&text, teleport_plugin::config::Format::Toml, "t").unwrap();
    let chat = SlackChat::with_options(&slack(sim).base_url(), Secret::new("xoxb-sim-token"), quick()).unwrap();
    let running = launch(&cfg, vec![Arc::new(chat) as Arc<dyn Chat>], Extras::default()).await.expect("launch");
    let path = if proxy_kind(proxy) == Front::L7LoadBalancer { "WebSocket connection upgrade" } else { "TLS routing" };
    assert!(running.path.contains(path), "{}", running.path);
    assert!(running.ready(Duration::from_secs(10)).await);
    running
}

fn proxy_kind(proxy: &ProxySim) -> Front {
    proxy.config().front
}

fn reconnects(running: &Running) -> u64 {
    running.watch_stats.reconnects.load(std::sync::atomic::Ordering::Relaxed)
}

/// `teleport_stream_dropped_mid_burst` through a front: the watch stream is
/// dropped at Auth, then every tunnel is cut at the front.
async fn stream_and_tunnels_dropped_through(kind: Front) {
    let env = Env::new().await;
    let proxy = front(&env, kind, None).await;
    let sim = Sim::start("slack").await;
    let running = start_through(&env, &sim, &proxy).await;
    let mut ids = burst(&env, 40, "a");
    env.sim.drop_streams();
    assert!(env.sim.wait_until(Duration::from_secs(10), |s| s.watch_inits().len() >= 2).await, "{kind:?}: stream re-opened");
    ids.extend(burst(&env, 40, "b"));
    let routes = proxy.counts().auth_routes;
    proxy.drop_tunnels();
    assert!(env.sim.wait_until(Duration::from_secs(10), |s| s.watch_inits().len() >= 3).await, "{kind:?}: reconnected");
    ids.extend(burst(&env, 40, "c"));
    let counts = settle_idle(&sim, &[&running], &ids, Duration::from_secs(30)).await;
    exactly_once(&format!("{kind:?}: stream dropped, then every tunnel"), &ids, &counts);
    let c = proxy.counts();
    assert!(c.tunnels_dropped >= 1, "{kind:?}: the drop landed: {c:?}");
    assert!(c.auth_routes > routes, "{kind:?}: re-dialled through the front: {c:?}");
    if kind == Front::L7LoadBalancer {
        assert!(c.upgrades >= 2, "{kind:?}: a new upgrade after the drop: {c:?}");
    }
    // The stream drop is a lost stream; the tunnel cut may land while the
    // re-opened stream's INIT is still on its way, which counts as a failed
    // open rather than a lost stream (the INITs above show both landed).
    assert!(reconnects(&running) >= 1, "{kind:?}: reconnects: {}", reconnects(&running));
    running.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn stream_and_tunnels_dropped_through_tls_routing() {
    stream_and_tunnels_dropped_through(Front::Proxy).await;
}

#[tokio::test]
async fn stream_and_tunnels_dropped_through_the_l7_load_balancer() {
    stream_and_tunnels_dropped_through(Front::L7LoadBalancer).await;
}

/// `auth_unreachable_for_30_seconds` through a front (10 s here): the front
/// stays up, Auth behind it refuses connections while requests keep coming.
async fn auth_unreachable_through(kind: Front) {
    let env = Env::new().await;
    let proxy = front(&env, kind, None).await;
    let sim = Sim::start("slack").await;
    let running = start_through(&env, &sim, &proxy).await;
    let mut ids = burst(&env, 20, "before");
    let routes = proxy.counts().auth_routes;
    env.sim.refuse_connections_for(Duration::from_secs(10));
    env.sim.drop_connections();
    // Requests keep arriving at Auth while the plugin cannot reach it.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        ids.extend(burst(&env, 10, "during"));
    }
    ids.extend(burst(&env, 20, "after"));
    let counts = settle_idle(&sim, &[&running], &ids, Duration::from_secs(30)).await;
    exactly_once(&format!("{kind:?}: Auth unreachable behind the front"), &ids, &counts);
    assert!(reconnects(&running) >= 1, "{kind:?}: the stream went down and came back");
    // Attempts during the outage were routed to an Auth that refused them.
    let c = proxy.counts();
    assert!(c.auth_routes >= routes + 2, "{kind:?}: re-dialled through the front during and after the outage: {c:?}");
    running.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn auth_unreachable_through_tls_routing() {
    auth_unreachable_through(Front::Proxy).await;
}

#[tokio::test]
async fn auth_unreachable_through_the_l7_load_balancer() {
    auth_unreachable_through(Front::L7LoadBalancer).await;
}

/// A front that closes tunnels idle for 1 s. The upgraded tunnel carries
/// the Proxy's `alpn-ping` pings and the plugin's pongs, so it stays up; a
/// TLS-routed connection carries nothing between events (the plugin's
/// HTTP/2 keepalive is a minute, as Teleport's servers demand), so it is
/// closed and the plugin reconnects. Either way nothing is lost.
async fn idle_tunnels_through(kind: Front) {
    let env = Env::new().await;
    let proxy = front(&env, kind, Some(Duration::from_secs(1))).await;
    let sim = Sim::start("slack").await;
    let running = start_through(&env, &sim, &proxy).await;
    let mut ids = burst(&env, 20, "busy");
    settle_idle(&sim, &[&running], &ids, Duration::from_secs(30)).await;
    let (before, pongs) = (reconnects(&running), proxy.counts().pongs_received);
    // Longer than the idle timeout, with no events.
    tokio::time::sleep(Duration::from_secs(3)).await;
    ids.extend(burst(&env, 20, "after-idle"));
    let counts = settle_idle(&sim, &[&running], &ids, Duration::from_secs(30)).await;
    exactly_once(&format!("{kind:?}: idle tunnels closed by the front"), &ids, &counts);
    let c = proxy.counts();
    match kind {
        Front::L7LoadBalancer => {
            assert_eq!(c.idle_closed, 0, "pings keep the upgraded tunnel busy: {c:?}");
            assert!(c.pongs_received > pongs, "the plugin answered pings while idle: {c:?}");
            assert_eq!(reconnects(&running), before, "the stream stayed up");
        }
        Front::Proxy => {
            assert!(c.idle_closed >= 1, "the idle routed connection was closed: {c:?}");
            assert!(reconnects(&running) > before, "the plugin reconnected after the idle close");
        }
    }
    running.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn idle_tunnels_through_tls_routing() {
    idle_tunnels_through(Front::Proxy).await;
}

#[tokio::test]
async fn idle_tunnels_through_the_l7_load_balancer() {
    idle_tunnels_through(Front::L7LoadBalancer).await;
}

/// Endpoint names (as the simulators log them) of a chat's two writes: a
/// new message (card, thread reply, requester notice) and a card edit.
fn write_endpoints(which: &str) -> (&'static str, &'static str) {
    match which {
        "slack" => ("chat.postMessage", "chat.update"),
        "discord" => ("POST /channels/{channel_id}/messages", "PATCH /channels/{channel_id}/messages/{message_id}"),
        _ => ("POST /posts", "PUT /posts/{post_id}/patch"),
    }
}

/// Faults of each kind per phase.
const AFTER_APPLY: u32 = 3;

/// The chat applies a write and then answers 5xx, or resets the connection
/// before answering (the client sees a transport error), as a proxy or an
/// API node that fails after the database commit does. The plugin must find
/// what it sent instead of sending it again: card posts in a burst, then
/// the review (a thread reply, or on Discord a card edit), then the
/// approval (card edits and requester notices), each phase under faults.
async fn applied_then_failed_on(which: &str) {
    use teleport_plugin_sim::chat::STATUS_NO_RESPONSE;
    let env = Env::new().await;
    let sim = Sim::start(which).await;
    let running = common::start_plugin(&env, &sim, "[plugin]\ninstance_id = \"matrix\"\n").await;
    let (post, edit) = write_endpoints(which);
    let core = sim.core();
    let n = AFTER_APPLY;
    let inject = |endpoint: &str, status: u16| {
        core.fail_after_apply_next(n, status, Some(endpoint));
        core.reset_after_apply_next(n, Some(endpoint));
    };
    let (s, r) = (&sim, &running);
    let idle = move |ids: Vec<String>| async move { settle_idle(s, &[r], &ids, Duration::from_secs(60)).await };

    // Cards. The requester is a chat user, so a notice is due at the end.
    inject(post, 503);
    let ids: Vec<String> =
        (0..12).map(|i| env.sim.request("alice@example.com", &["editor"], &format!("after-apply {i}")).id().to_string()).collect();
    exactly_once(&format!("{which}: card posts applied, then 5xx or reset"), &ids, &idle(ids.clone()).await);
    let faulted = |endpoint: &str, status: u16| {
        core.applied_then_faulted().iter().filter(|c| c.endpoint == endpoint && c.status == status).count()
    };
    assert_eq!((faulted(post, 503), faulted(post, STATUS_NO_RESPONSE)), (3, 3), "{which}: card-post faults landed");

    // Reviews: a reply in each card's thread (Slack, Mattermost) or the
    // card edited to show it (Discord).
    inject(post, 502);
    inject(edit, 500);
    for id in &ids {
        env.sim.review(id, "bob@example.com", true, "checked after apply");
    }
    let reviewed = |id: &String| match which {
        "discord" => sim.cards(id).iter().any(|c| c.text.contains("checked after apply")),
        _ => sim.messages().iter().any(|m| m.request == *id && m.kind == "review-0"),
    };
    assert!(eventually(Duration::from_secs(60), || ids.iter().all(reviewed)).await, "{which}: every review shown");
    idle(ids.clone()).await;

    // Approvals: every card edited to APPROVED, the requester told once.
    inject(post, 502);
    inject(edit, 500);
    for id in &ids {
        env.sim.approve(id, "ship it");
    }
    let done = |id: &String| {
        sim.cards(id).iter().all(|c| c.text.contains("APPROVED")) && sim.messages().iter().any(|m| m.request == *id && m.kind == "notice")
    };
    assert!(eventually(Duration::from_secs(60), || ids.iter().all(done)).await, "{which}: every card approved, every requester told");
    let counts = idle(ids.clone()).await;

    exactly_once(&format!("{which}: replies, edits and notices applied, then 5xx or reset"), &ids, &counts);
    let msgs = sim.messages();
    for id in &ids {
        let of = |kind: &str| msgs.iter().filter(|m| m.request == *id && m.kind == kind).count();
        assert_eq!(of("notice"), 1, "{which}: one notice for {id}");
        let replies = if which == "discord" { 0 } else { 1 };
        assert_eq!(of("review-0"), replies, "{which}: review replies for {id}");
        let card = &sim.cards(id)[0];
        assert!(card.text.contains("APPROVED"), "{which}: final card {card:?}");
        if which == "discord" {
            assert!(card.text.contains("checked after apply"), "{which}: the review on the final card {card:?}");
        }
    }
    // Every injected fault landed on an applied write: the cards', then the
    // replies' and notices' (Discord has no replies: its reply-phase post
    // faults wait for the notices), and the edits'.
    assert_eq!((faulted(post, 502), faulted(post, STATUS_NO_RESPONSE)), (6, 9), "{which}: reply and notice faults landed");
    assert_eq!((faulted(edit, 500), faulted(edit, STATUS_NO_RESPONSE)), (6, 6), "{which}: card-edit faults landed");
    if which == "slack" {
        // Slack drops no repeats: what a fault left uncertain was looked up.
        for lookup in ["conversations.history", "conversations.replies"] {
            assert!(core.calls().iter().any(|c| c.endpoint == lookup), "slack: {lookup} used to find an uncertain post");
        }
    }
    running.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn slack_writes_applied_then_5xx_or_reset() {
    applied_then_failed_on("slack").await;
}

#[tokio::test]
async fn discord_writes_applied_then_5xx_or_reset() {
    applied_then_failed_on("discord").await;
}

#[tokio::test]
async fn mattermost_writes_applied_then_5xx_or_reset() {
    applied_then_failed_on("mattermost").await;
}
