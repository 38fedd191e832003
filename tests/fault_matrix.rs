//! The fault matrix: every scenario counts notifications expected against
//! received, and requires 0 lost and 0 duplicated.
//!
//! Each test runs the whole plugin (in-process, or the real binary for
//! kill -9) against the Teleport and Slack simulators.

mod common;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
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

/// Waits until every id has a card (or the timeout), then lets stragglers land.
/// For plugins running as separate processes, whose work queue cannot be seen.
async fn settle(sim: &Sim, ids: &[String], timeout: Duration) -> HashMap<String, usize> {
    eventually(timeout, || {
        let c = sim.card_counts();
        ids.iter().all(|id| c.contains_key(id))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    sim.card_counts()
}

/// Waits until every id has a card, then until every plugin has nothing
/// queued, running or waiting for a retry (for a while, so a retry that was
/// about to be scheduled is seen): only then can no later retry add a
/// duplicate.
async fn settle_idle(sim: &Sim, plugins: &[&Running], ids: &[String], timeout: Duration) -> HashMap<String, usize> {
    eventually(timeout, || {
        let c = sim.card_counts();
        ids.iter().all(|id| c.contains_key(id))
    })
    .await;
    let mut idle_since = None;
    eventually(timeout, || {
        if plugins.iter().all(|p| p.active() == 0) {
            let since = *idle_since.get_or_insert_with(std::time::Instant::now);
            since.elapsed() >= Duration::from_millis(500)
        } else {
            idle_since = None;
            false
        }
    })
    .await;
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

fn spawn(config: &str) -> Child {
    Command::new(BIN).args(["start", "--config", config]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap()
}

#[tokio::test]
async fn kill_9_mid_broadcast_then_restart() {
    let env = Env::new().await;
    let sim = Sim::start("slack").await;
    let text = env.config_text(&format!("{}[plugin]\ninstance_id = \"killed\"\nconcurrency = 16\n", sim.section()));
    let path = env.dir.path().join("slack.toml");
    std::fs::write(&path, text).unwrap();
    let path = path.display().to_string();
    let mut child = spawn(&path);
    sim.core().set_response_delay(Duration::from_millis(40));
    let ids = burst(&env, 200, "k");
    assert!(eventually(Duration::from_secs(30), || sim.card_counts().len() >= 40).await, "posting started");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    sim.core().set_response_delay(Duration::ZERO);
    let interrupted = ids.iter().filter(|id| env.sim.plugin_data(id, "slack").is_some_and(|d| d.contains_key("notify_pending"))).count();
    println!("kill -9 left {interrupted} requests mid-broadcast");
    let mut child = spawn(&path);
    let counts = settle(&sim, &ids, Duration::from_secs(60)).await;
    child.kill().unwrap();
    child.wait().unwrap();
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
        let text = env.config_text(&format!("{}[plugin]\ninstance_id = \"{id}\"\nclaim_lease = \"2s\"\nconcurrency = 16\n", sim.section()));
        let path = env.dir.path().join(format!("{id}.toml"));
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let (a, b) = (write("replica-a"), write("replica-b"));
    let mut first = spawn(&a);
    let mut second = spawn(&b);
    sim.core().set_response_delay(Duration::from_millis(40));
    let ids = burst(&env, 200, "ha");
    assert!(eventually(Duration::from_secs(30), || sim.card_counts().len() >= 40).await, "posting started");
    first.kill().unwrap(); // SIGKILL: its claims stay behind
    first.wait().unwrap();
    let owned_by_dead = ids
        .iter()
        .filter(|id| {
            env.sim.plugin_data(id, "slack").is_some_and(|d| {
                d.get("notify_owner").map(String::as_str) == Some("replica-a") && d.contains_key("notify_pending")
            })
        })
        .count();
    sim.core().set_response_delay(Duration::ZERO);
    let counts = settle(&sim, &ids, Duration::from_secs(60)).await;
    exactly_once("replica killed mid-broadcast", &ids, &counts);
    // A late takeover would post again only after another lease: look again.
    tokio::time::sleep(lease * 2).await;
    exactly_once("replica killed mid-broadcast, past the lease", &ids, &sim.card_counts());
    second.kill().unwrap();
    second.wait().unwrap();
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
