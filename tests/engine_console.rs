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
    assert!(common::wait_idle(&[&running], Duration::from_secs(10)).await);
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
    assert!(common::wait_idle(&[&running], Duration::from_secs(10)).await);
    let o = text(&out);
    assert!(!o.contains(resolved.id()), "{o}");
    assert!(!o.contains(&format!("post to #access (card)\n    You have a new Role Request:\n    ID: {}", taken.id())), "{o}");
    assert_eq!(o.matches("(card)").count(), 1, "{o}");
    running.stop(Duration::from_secs(5)).await;
}

/// Access Monitoring Rules as the newest official plugins evaluate them:
/// conditions on the requester's traits (read with GetUser) and schedules on
/// the creation time; without permission to read users the traits are empty.
#[tokio::test]
async fn monitoring_rules_with_traits_and_schedules_route_requests() {
    use std::time::{SystemTime, UNIX_EPOCH};
    use teleport_plugin_sim::access;

    let env = Env::new().await;
    env.sim.set_user("alice@example.com", &[("team", &["payments"])]);
    env.sim.set_user("bob@example.com", &[("team", &["sales"])]);
    env.sim.set_user("carol@example.com", &[]);
    env.sim.put_rule(access::monitoring_rule(
        "payments",
        &["access_request"],
        r#"access_request.spec.roles.contains("dev") && user.traits["team"].contains("payments")"#,
        "console",
        &["#payments"],
    ));
    let office = access::monitoring_rule(
        "office-hours",
        &["access_request"],
        r#"access_request.spec.roles.contains("oncall")"#,
        "console",
        &["#office"],
    );
    env.sim.put_rule(access::with_schedule(office, "weekdays", "Europe/Lisbon", &[("Monday", "09:00", "17:00")]));
    let (console, out) = ConsoleChat::buffered();
    let running = launch(&env.config(CONSOLE), vec![Arc::new(console) as Arc<dyn Chat>], Extras::default()).await.unwrap();
    assert!(running.ready(Duration::from_secs(10)).await);

    let posted_to = |id: &str| -> Vec<String> {
        let o = text(&out);
        // Each message: a `[mN] post to <recipient> (card)` line, then its body.
        let mut to: Vec<String> = o
            .split("\n[")
            .filter(|block| block.contains(&format!("ID: {id}\n")))
            .filter_map(|block| {
                let head = block.lines().next()?;
                head.split_once("] post to ")?.1.strip_suffix(" (card)").map(String::from)
            })
            .collect();
        to.sort();
        to
    };
    let created_at = |user: &str, role: &str, secs: u64| {
        let mut r = access::new_request(user, &[role]);
        r.spec_mut().created = Some(access::timestamp(UNIX_EPOCH + Duration::from_secs(secs)));
        r.spec_mut().expires = Some(access::timestamp(SystemTime::now() + Duration::from_secs(3600)));
        env.sim.create_request(r)
    };
    // 2025-08-11 was a Monday; 10:00 UTC is 11:00 in Lisbon, 17:30 UTC 18:30.
    const MONDAY_10_UTC: u64 = 1_754_906_400;
    let in_hours = created_at("carol@example.com", "oncall", MONDAY_10_UTC);
    let after_hours = created_at("carol@example.com", "oncall", MONDAY_10_UTC + 7 * 3600 + 1800);
    let alice = env.sim.request("alice@example.com", &["dev"], "");
    let bob = env.sim.request("bob@example.com", &["dev"], "");
    let all = [&in_hours, &after_hours, &alice, &bob];
    assert!(eventually(Duration::from_secs(10), || all.iter().all(|r| !posted_to(r.id()).is_empty())).await, "{}", text(&out));
    // Until nothing is left to do: a wrong extra post would be out by then.
    assert!(common::wait_idle(&[&running], Duration::from_secs(10)).await);
    assert_eq!(posted_to(in_hours.id()), vec!["#office"], "{}", text(&out));
    assert_eq!(posted_to(after_hours.id()), vec!["#access"], "outside the schedule: static routing");
    assert_eq!(posted_to(alice.id()), vec!["#payments"]);
    assert_eq!(posted_to(bob.id()), vec!["#access", "#dev"], "another team: static routing");
    assert!(env.sim.calls("GetUser") >= 2);

    // Without `user: read` the traits are empty: the trait rule no longer matches.
    env.sim.deny_user_reads(true);
    let denied = env.sim.request("alice@example.com", &["dev"], "");
    assert!(eventually(Duration::from_secs(10), || !posted_to(denied.id()).is_empty()).await, "{}", text(&out));
    assert!(common::wait_idle(&[&running], Duration::from_secs(10)).await);
    assert_eq!(posted_to(denied.id()), vec!["#access", "#dev"]);
    assert!(running.stop(Duration::from_secs(5)).await);
}

/// A rule over the labels every requested resource shares routes resource
/// requests through the plugin as upstream: the labels are listed with
/// ListResources, a resource that is gone is left out, and when the plugin
/// may not list resources the rules are skipped for static routing.
#[tokio::test]
async fn monitoring_rules_on_resource_labels_route_resource_requests() {
    use teleport_plugin_sim::access;
    use teleport_plugin_sim::teleport::SimResource;

    let env = Env::new().await;
    env.sim.put_node("web-1", &[("env", "prod"), ("team", "payments")]);
    env.sim.put_node("web-2", &[("env", "prod")]);
    env.sim.put_node("dev-1", &[("env", "dev")]);
    env.sim.put_resource(SimResource::db("orders").labels(&[("engine", "pg")]).dynamic(&[("env", "prod")]));
    env.sim.put_rule(access::monitoring_rule(
        "prod",
        &["access_request"],
        r#"access_request.spec.resource_labels_intersection["env"].contains("prod")"#,
        "console",
        &["#prod"],
    ));
    let (console, out) = ConsoleChat::buffered();
    let running = launch(&env.config(CONSOLE), vec![Arc::new(console) as Arc<dyn Chat>], Extras::default()).await.unwrap();
    assert!(running.ready(Duration::from_secs(10)).await);

    let posted_to = |id: &str| -> Vec<String> {
        let o = text(&out);
        let mut to: Vec<String> = o
            .split("\n[")
            .filter(|block| block.contains(&format!("ID: {id}\n")))
            .filter_map(|block| {
                let head = block.lines().next()?;
                head.split_once("] post to ")?.1.strip_suffix(" (card)").map(String::from)
            })
            .collect();
        to.sort();
        to
    };
    let cluster = env.sim.cluster_name().to_string();
    let for_resources = |resources: &[(&str, &str)]| {
        let mut r = access::new_request("alice@example.com", &["access"]);
        r.spec_mut().requested_resource_i_ds =
            resources.iter().map(|(kind, name)| access::resource_id(&cluster, kind, name, "")).collect();
        env.sim.create_request(r)
    };
    let settle = |ids: &[&str]| {
        let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        let (posted_to, out, running) = (&posted_to, &out, &running);
        async move {
            assert!(eventually(Duration::from_secs(10), || ids.iter().all(|id| !posted_to(id).is_empty())).await, "{}", text(out));
            // Until nothing is left to do: a wrong extra post would be out by then.
            assert!(common::wait_idle(&[running], Duration::from_secs(10)).await);
        }
    };

    let all_prod = for_resources(&[("node", "web-1"), ("node", "web-2"), ("db", "orders")]);
    let mixed = for_resources(&[("node", "web-1"), ("node", "dev-1")]);
    settle(&[all_prod.id(), mixed.id()]).await;
    assert_eq!(posted_to(all_prod.id()), vec!["#prod"], "{}", text(&out));
    assert_eq!(posted_to(mixed.id()), vec!["#access"], "dev-1 is not prod: static routing");
    // One call per resource type and request (node + db_server, then node),
    // plus the empty last page Auth leaves after a full one (dev-1 and web-1
    // fill the second request's page; web-2 follows).
    assert_eq!(env.sim.calls("ListResources"), 4);
    assert!(env.sim.list_resources_requests().iter().all(|r| r.use_preview_as_roles));

    // A role request lists nothing and is routed statically.
    let roles_only = env.sim.request("alice@example.com", &["dev"], "");
    // A node that is gone is left out: web-1 alone decides.
    let one_gone = for_resources(&[("node", "web-1"), ("node", "web-9")]);
    settle(&[roles_only.id(), one_gone.id()]).await;
    assert_eq!(posted_to(roles_only.id()), vec!["#access", "#dev"]);
    assert_eq!(posted_to(one_gone.id()), vec!["#prod"]);
    assert_eq!(env.sim.calls("ListResources"), 5);

    // Without permission to list nodes the rules are skipped, as upstream.
    env.sim.deny_resource_reads(true);
    let denied = for_resources(&[("node", "web-1")]);
    settle(&[denied.id()]).await;
    assert_eq!(posted_to(denied.id()), vec!["#access"]);
    assert!(running.stop(Duration::from_secs(5)).await);
}
