//! Restarts and reconnects: the catch-up reads plugin data in bulk (its cost
//! does not grow with the number of requests), and requests deleted while
//! the plugin was stopped or its stream was down are resolved as expired,
//! once, by one replica.

mod common;

use std::time::Duration;

use common::chats::Sim;
use common::{Env, eventually};
use teleport_plugin::app::Running;
use teleport_plugin_sim::access::AccessRequestExt;

async fn start(env: &Env, sim: &Sim, instance: &str) -> Running {
    common::start_plugin(env, sim, &format!("[plugin]\ninstance_id = \"{instance}\"\n")).await
}

/// Waits until the catch-up listing of the current stream is done and the
/// work it queued is finished.
async fn idle(env: &Env, running: &Running, lists_before: u64) {
    let listed = env.sim.wait_until(Duration::from_secs(20), |s| s.calls("ListAccessRequests") > lists_before).await;
    assert!(listed, "the catch-up listed the requests");
    assert!(common::wait_idle(&[running], Duration::from_secs(30)).await, "work after the restart finished");
}

fn updates(sim: &Sim) -> usize {
    sim.core().calls().iter().filter(|c| c.endpoint == "chat.update").count()
}

/// `chat.update` calls for the card of `request`.
fn card_updates(sim: &Sim, request: &str) -> usize {
    let ts = sim.cards(request)[0].id.clone();
    sim.core().calls().iter().filter(|c| c.endpoint == "chat.update" && c.body["ts"].as_str() == Some(ts.as_str())).count()
}

/// Posts `n` requests and resolves every other one, then restarts: the
/// restart reads plugin data once, whatever `n`, and touches no card.
async fn restart_cost(n: usize) -> (u64, u64, usize) {
    let env = Env::new().await;
    let sim = Sim::start("slack").await;
    let running = start(&env, &sim, "cost").await;
    let ids: Vec<String> = (0..n).map(|i| env.sim.request(&format!("u{i}"), &["editor"], "restart").id().to_string()).collect();
    assert!(eventually(Duration::from_secs(60), || sim.card_counts().len() == n).await, "all posted");
    for id in ids.iter().step_by(2) {
        env.sim.approve(id, "ok");
    }
    let resolved = |sim: &Sim| ids.iter().step_by(2).all(|id| sim.cards(id).iter().all(|c| c.text.contains("APPROVED")));
    assert!(eventually(Duration::from_secs(60), || resolved(&sim)).await, "resolved cards updated");
    assert!(eventually(Duration::from_secs(30), || running.active() == 0).await);
    running.stop(Duration::from_secs(5)).await;

    let reads = env.sim.calls("GetPluginData");
    let lists = env.sim.calls("ListAccessRequests");
    let before = updates(&sim);
    let running = start(&env, &sim, "cost").await;
    idle(&env, &running, lists).await;
    let out = (env.sim.calls("GetPluginData") - reads, env.sim.calls("UpdatePluginData"), updates(&sim) - before);
    running.stop(Duration::from_secs(5)).await;
    assert_eq!(sim.card_counts().len(), n);
    out
}

#[tokio::test]
async fn a_restart_reads_plugin_data_once_whatever_the_number_of_requests() {
    let (reads_small, _, touched_small) = restart_cost(10).await;
    let (reads_large, _, touched_large) = restart_cost(60).await;
    assert_eq!((reads_small, reads_large), (1, 1), "GetPluginData calls during the catch-up after a restart");
    assert_eq!((touched_small, touched_large), (0, 0), "nothing left to do: no card is updated");
}

/// Posts requests, stops every replica, deletes (expires) one, approves
/// another, starts `replicas` replicas: the expired card shows EXPIRED and
/// the approved one APPROVED, each updated once.
async fn expired_while_stopped(replicas: &[&str]) {
    let env = Env::new().await;
    let sim = Sim::start("slack").await;
    let running = start(&env, &sim, replicas[0]).await;
    let id = env.sim.request("alice", &["editor"], "while stopped").id().to_string();
    let other = env.sim.request("bob", &["editor"], "stays").id().to_string();
    let approved = env.sim.request("carol", &["editor"], "approved while stopped").id().to_string();
    let posted = |sim: &Sim| [&id, &other, &approved].iter().all(|r| sim.cards(r).len() == 1);
    assert!(eventually(Duration::from_secs(10), || posted(&sim)).await);
    assert!(eventually(Duration::from_secs(10), || running.active() == 0).await);
    running.stop(Duration::from_secs(5)).await;

    assert!(env.sim.expire(&id));
    assert!(env.sim.plugin_data(&id, "slack").is_some(), "plugin data outlives the request, as in Teleport");
    env.sim.approve(&approved, "while stopped");
    let before = updates(&sim);
    let mut started = Vec::new();
    for r in replicas {
        started.push(start(&env, &sim, r).await);
    }
    let expired = eventually(Duration::from_secs(20), || sim.cards(&id)[0].text.contains("EXPIRED")).await;
    assert!(expired, "the card of the request deleted while stopped shows EXPIRED");
    assert!(eventually(Duration::from_secs(20), || sim.cards(&approved)[0].text.contains("APPROVED")).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(updates(&sim) - before, 2, "each card updated once, by one replica");
    assert_eq!(card_updates(&sim, &id), 1);
    assert!(!sim.cards(&other)[0].text.contains("EXPIRED"), "a request that still exists is left alone");
    assert_eq!(env.sim.plugin_data(&id, "slack").unwrap()["resolution"], "EXPIRED");
    for r in started {
        r.stop(Duration::from_secs(5)).await;
    }
}

#[tokio::test]
async fn a_request_expired_while_the_plugin_was_stopped_is_resolved_at_start() {
    expired_while_stopped(&["solo"]).await;
}

#[tokio::test]
async fn a_request_expired_while_stopped_is_resolved_once_by_two_replicas() {
    expired_while_stopped(&["r-a", "r-b"]).await;
}

/// The deletion (and a review) happen while the event stream is down: no
/// event is ever seen for them, the catch-up after the reconnect handles
/// them.
#[tokio::test]
async fn a_request_expired_while_the_stream_was_down_is_resolved_after_the_reconnect() {
    let env = Env::new().await;
    let sim = Sim::start("slack").await;
    let running = start(&env, &sim, "down").await;
    let id = env.sim.request("alice", &["editor"], "while down").id().to_string();
    let reviewed = env.sim.request("bob", &["editor"], "reviewed while down").id().to_string();
    assert!(eventually(Duration::from_secs(10), || sim.cards(&id).len() == 1 && sim.cards(&reviewed).len() == 1).await);
    assert!(eventually(Duration::from_secs(10), || running.active() == 0).await);
    let inits = env.sim.watch_inits().len();
    env.sim.refuse_connections_for(Duration::from_secs(2));
    env.sim.drop_connections();
    let mut stream = running.stream.clone();
    stream.wait_for(|s| !matches!(s, teleport_plugin::teleport::StreamState::Live { .. })).await.unwrap();
    assert!(env.sim.expire(&id));
    env.sim.review(&reviewed, "dave", true, "looks fine");
    assert!(env.sim.wait_until(Duration::from_secs(20), |s| s.watch_inits().len() > inits).await, "reconnected");
    let expired = eventually(Duration::from_secs(20), || sim.cards(&id)[0].text.contains("EXPIRED")).await;
    assert!(expired, "the card shows EXPIRED after the reconnect");
    let replies = |sim: &Sim| sim.messages().iter().filter(|m| m.request == reviewed && m.kind == "review-0").count();
    let shown = eventually(Duration::from_secs(20), || replies(&sim) == 1).await;
    assert!(shown, "the review made while disconnected is shown in the card's thread");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(replies(&sim), 1);
    assert!(!sim.cards(&reviewed)[0].text.contains("EXPIRED"));
    assert_eq!(card_updates(&sim, &id), 1, "the expired card updated once");

    running.stop(Duration::from_secs(5)).await;
}
