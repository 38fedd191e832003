//! Switching between the official plugin and this one on the same requests:
//! official → ours → official. The simulator acts as the official plugin
//! (its Go decode, its Go re-encoding as the compare-and-swap `expect`), on
//! requests whose reason and annotations hold the characters Go's JSON
//! escapes (`& < >`, U+2028, U+2029) and a role without logins. Nothing is
//! posted twice, and no update of either side is lost.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Env, eventually};
use teleport_plugin::app::{Extras, launch};
use teleport_plugin::chat::Chat;
use teleport_plugin::chat::console::ConsoleChat;
use teleport_plugin_sim::access::{self, AccessRequestExt};
use teleport_plugin_sim::official_plugin::OfficialData;

const CONSOLE: &str = "[console]\n[role_to_recipients]\n\"*\" = \"#access\"\n";
const PLUGIN: &str = "console";

fn text(buf: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8_lossy(&buf.lock().unwrap()).to_string()
}

fn strings(items: &[&str]) -> Option<Vec<String>> {
    Some(items.iter().map(|s| s.to_string()).collect())
}

#[tokio::test]
async fn official_then_ours_then_official_on_the_same_requests() {
    let env = Env::new().await;
    env.sim.set_role("dev", &["root", "{{internal.logins}}"]);
    env.sim.set_role("editor", &[]);
    let annotations: &[(&str, &[&str])] = &[
        ("ticket", &["https://tickets.example/view?id=7&tab=<history>"]),
        ("note\u{2028}", &["line\u{2028}para\u{2029}end"]),
    ];
    let mut ids = Vec::new();
    for (i, reason) in ["deploy & <fix>", "rollback\u{2028}now"].iter().enumerate() {
        let mut r = access::new_request(&format!("user{i}@example.com"), &["dev", "editor"]);
        r.spec_mut().request_reason = reason.to_string();
        r.spec_mut().system_annotations = Some(access::label_values(annotations));
        let r = env.sim.create_request(r);
        // The official plugin posted it and recorded what it posted.
        let official = OfficialData {
            user: format!("user{i}@example.com"),
            roles: strings(&["dev", "editor"]),
            request_reason: reason.to_string(),
            system_annotations: Some(annotations.iter().map(|(k, v)| (k.to_string(), strings(v))).collect::<BTreeMap<_, _>>()),
            logins_by_role: Some(
                [("dev".to_string(), strings(&["root", "{{internal.logins}}"])), ("editor".to_string(), None)].into(),
            ),
            messages: vec![("#access".into(), format!("official-{i}"))],
            ..Default::default()
        };
        env.sim.official_create(r.id(), PLUGIN, &official).expect("official plugin records its post");
        ids.push(r.id().to_string());
    }
    let official_bytes: Vec<_> = ids.iter().map(|id| env.sim.plugin_data(id, PLUGIN).unwrap()).collect();
    assert!(official_bytes[0]["system_annotations"].contains(r"\u0026tab=\u003chistory\u003e"), "{:?}", official_bytes[0]);
    assert_eq!(official_bytes[0]["logins_by_role"], r#"{"dev":["root","{{internal.logins}}"],"editor":null}"#);

    // Ours takes over: it posts a new request, and a review arrives on each.
    let (console, out) = ConsoleChat::buffered();
    let running = launch(&env.config(CONSOLE), vec![Arc::new(console) as Arc<dyn Chat>], Extras::default()).await.unwrap();
    assert!(running.ready(Duration::from_secs(10)).await);
    let mut r = access::new_request("carol@example.com", &["dev", "editor"]);
    r.spec_mut().request_reason = "hotfix <now> & later".into();
    r.spec_mut().system_annotations = Some(access::label_values(annotations));
    let ours_posted = env.sim.create_request(r).id().to_string();
    let posted = || env.sim.plugin_data(&ours_posted, PLUGIN).is_some_and(|d| d.contains_key("messages") && !d.contains_key("notify_pending"));
    assert!(eventually(Duration::from_secs(10), posted).await, "{}", text(&out));
    let official_ids = ids.clone();
    ids.push(ours_posted.clone());
    for id in &ids {
        env.sim.review(id, "bob", true, "fine & <done>");
    }
    let recorded = || ids.iter().all(|id| env.sim.plugin_data(id, PLUGIN).is_some_and(|d| d.get("reviews_count").map(String::as_str) == Some("1")));
    assert!(eventually(Duration::from_secs(10), recorded).await, "{}", text(&out));
    assert!(eventually(Duration::from_secs(10), || text(&out).matches("reply under").count() >= ids.len()).await, "{}", text(&out));
    assert!(running.stop(Duration::from_secs(5)).await);
    let o = text(&out);
    assert_eq!(o.matches("(card)").count(), 1, "only the new request is posted:\n{o}");
    assert!(official_ids.iter().all(|id| !o.contains(&format!("ID: {id}"))), "{o}");
    let ours: Vec<_> = ids.iter().map(|id| env.sim.plugin_data(id, PLUGIN).unwrap()).collect();
    // What ours wrote is what Go writes.
    assert_eq!(ours[2]["logins_by_role"], official_bytes[0]["logins_by_role"]);
    assert_eq!(ours[2]["system_annotations"], official_bytes[0]["system_annotations"]);

    // The official plugin is back: its next writes (a second review, then the
    // resolution) go through, on top of what ours recorded.
    for id in &ids {
        let d = env.sim.official_update(id, PLUGIN, |d| d.reviews_count += 1).expect("official review count update");
        assert_eq!(d.reviews_count, 2, "the review ours recorded is not lost");
        assert_eq!(d.messages, vec![("#access".to_string(), d.messages[0].1.clone())], "still the one official message");
        env.sim.approve(id, "ok");
        env.sim
            .official_update(id, PLUGIN, |d| {
                d.resolution = "APPROVED".into();
                d.resolve_reason = "ok".into();
            })
            .expect("official resolution update");
        let stored = env.sim.plugin_data(id, PLUGIN).unwrap();
        assert_eq!((stored["reviews_count"].as_str(), stored["resolution"].as_str()), ("2", "APPROVED"));
    }
    // Ours did not rewrite what the official plugin wrote.
    for (theirs, ours) in official_bytes.iter().zip(&ours) {
        for key in ["system_annotations", "logins_by_role", "messages", "user", "roles", "request_reason"] {
            assert_eq!(ours.get(key), theirs.get(key), "{key} is kept as the official plugin wrote it");
        }
    }
}
