//! The engine end to end with the console chat: Teleport simulator → watcher
//! → pipeline → console output, and what plugin data records.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Env, eventually};
use teleport_plugin::app::{Extras, launch};
use teleport_plugin::chat::Chat;
use teleport_plugin::chat::console::ConsoleChat;
use teleport_plugin_sim::access::AccessRequestExt;

const CONSOLE: &str = "[console]\n[role_to_recipients]\n\"*\" = \"#access\"\n\"dev\" = [\"#dev\", \"#access\"]\n";

fn text(buf: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8_lossy(&buf.lock().unwrap()).to_string()
}

#[tokio::test]
async fn lifecycle_post_review_approve_expire() {
    let env = Env::new().await;
    let cfg = env.config(CONSOLE);
    let (console, out) = ConsoleChat::buffered();
    let running = launch(&cfg, vec![Arc::new(console) as Arc<dyn Chat>], Extras::default()).await.unwrap();
    assert!(running.ready(Duration::from_secs(10)).await);

    let req = env.sim.request("alice@example.com", &["dev"], "deploy the hotfix");
    assert!(eventually(Duration::from_secs(10), || text(&out).matches("post to").count() == 2).await, "{}", text(&out));
    let o = text(&out);
    assert!(o.contains("post to #dev (card)") && o.contains("post to #access (card)"), "{o}");
    assert!(o.contains(&format!("ID: {}", req.id())));
    assert!(o.contains("Status: ⏳ PENDING"));

    // The record is written right after each post.
    let recorded = || {
        env.sim.plugin_data(req.id(), "console").is_some_and(|d| d.get("messages").is_some_and(|m| m.split(',').count() == 2) && !d.contains_key("notify_owner"))
    };
    assert!(eventually(Duration::from_secs(10), recorded).await);
    let data = env.sim.plugin_data(req.id(), "console").expect("plugin data");
    assert_eq!(data["user"], "alice@example.com");
    assert_eq!(data["roles"], "dev");
    assert_eq!(data["messages"].split(',').count(), 2);
    assert!(!data.contains_key("notify_pending"), "all posted");
    assert!(!data.contains_key("notify_owner"), "claim released when done");

    env.sim.review(req.id(), "bob", true, "looks fine");
    assert!(eventually(Duration::from_secs(10), || text(&out).matches("reply under").count() == 2).await, "{}", text(&out));
    assert!(text(&out).contains("bob reviewed the request: ✅ APPROVED"));

    env.sim.approve(req.id(), "ship it");
    assert!(eventually(Duration::from_secs(10), || text(&out).contains("Your access request")).await, "{}", text(&out));
    let o = text(&out);
    assert!(o.contains("Status: ✅ APPROVED"), "{o}");
    assert!(o.contains("Resolution reason: ship it"), "{o}");
    assert_eq!(o.matches("reaction ✅").count(), 2, "{o}");
    assert_eq!(env.sim.plugin_data(req.id(), "console").unwrap()["resolution"], "APPROVED");

    // Expiry of a resolved request keeps its resolution.
    let before = text(&out).len();
    env.sim.expire(req.id());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!text(&out)[before..].contains("EXPIRED"));

    // An open request that is deleted shows EXPIRED.
    let other = env.sim.request("carol@example.com", &["qa"], "");
    assert!(eventually(Duration::from_secs(10), || text(&out).contains(&format!("ID: {}", other.id()))).await);
    env.sim.expire(other.id());
    assert!(eventually(Duration::from_secs(10), || text(&out).contains("Status: ⌛ EXPIRED")).await, "{}", text(&out));
    assert_eq!(env.sim.plugin_data(other.id(), "console").unwrap()["resolution"], "EXPIRED");
    assert!(running.stop(Duration::from_secs(5)).await);
}

#[tokio::test]
async fn requests_created_while_down_are_posted_on_start() {
    let env = Env::new().await;
    let ids: Vec<String> = (0..5).map(|i| env.sim.request(&format!("u{i}"), &["qa"], "").id().to_string()).collect();
    let (console, out) = ConsoleChat::buffered();
    let running = launch(&env.config(CONSOLE), vec![Arc::new(console) as Arc<dyn Chat>], Extras::default()).await.unwrap();
    assert!(eventually(Duration::from_secs(10), || ids.iter().all(|id| text(&out).contains(&format!("ID: {id}")))).await);
    assert_eq!(text(&out).matches("post to").count(), 5);
    running.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn resolved_requests_never_posted_are_skipped_and_plugin_data_of_others_is_respected() {
    let env = Env::new().await;
    let resolved = env.sim.request("u", &["qa"], "");
    env.sim.deny(resolved.id(), "no");
    // A request the official plugin already posted: must not be posted again.
    let taken = env.sim.request("v", &["qa"], "");
    env.sim.set_plugin_data(
        taken.id(),
        "console",
        [("user".to_string(), "v".to_string()), ("messages".to_string(), "#access/m99".to_string())].into(),
    );
    let fresh = env.sim.request("w", &["qa"], "");
    let (console, out) = ConsoleChat::buffered();
    let running = launch(&env.config(CONSOLE), vec![Arc::new(console) as Arc<dyn Chat>], Extras::default()).await.unwrap();
    assert!(eventually(Duration::from_secs(10), || text(&out).contains(&format!("ID: {}", fresh.id()))).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let o = text(&out);
    assert!(!o.contains(resolved.id()), "{o}");
    assert!(!o.contains(&format!("post to #access (card)\n    You have a new Role Request:\n    ID: {}", taken.id())), "{o}");
    assert_eq!(o.matches("(card)").count(), 1, "{o}");
    running.stop(Duration::from_secs(5)).await;
}
