//! End to end for each real chat: Teleport simulator → engine → chat
//! simulator, through the real Slack, Discord and Mattermost clients.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::chats::Sim;
use common::{Env, eventually, start_plugin};
use teleport_plugin::app::{Extras, Running, launch};
use teleport_plugin_sim::chat::RateWindow;
use teleport_plugin_sim::access::{self, AccessRequestExt};

async fn lifecycle(which: &str) {
    let env = Env::new().await;
    env.sim.set_role("editor", &["root"]);
    let sim = Sim::start(which).await;
    let running = start_plugin(&env, &sim, "").await;

    // Pending → one card per recipient.
    let r = env.sim.request("alice@example.com", &["editor"], "deploy the hotfix");
    assert!(eventually(Duration::from_secs(10), || sim.cards(r.id()).len() == 1).await, "{which}: card posted");
    let card = &sim.cards(r.id())[0];
    assert!(card.text.contains("PENDING") && card.text.contains(r.id()) && card.text.contains("deploy the hotfix"), "{which}: {card:?}");
    if let Sim::Slack(s) = &sim {
        assert!(s.messages().iter().all(|m| m.has_text_fallback()), "Slack posts carry a text fallback");
    }
    // Logins of the requested role, read from the role: on the card and in
    // plugin data as the official plugins store them.
    assert!(card.text.contains("Login(s)") && card.text.contains("root"), "{which}: logins on the card: {card:?}");
    let data = env.sim.plugin_data(r.id(), which).expect("plugin data written");
    assert_eq!(data.get("logins_by_role").map(String::as_str), Some(r#"{"editor":["root"]}"#), "{which}: {data:?}");

    // Review → card updated; a thread reply where the chat has threads, an embed on Discord.
    env.sim.review(r.id(), "bob@example.com", true, "matches INC-42");
    match which {
        "discord" => {
            // Renderers defuse `@` with a zero-width space, so look for the name.
            assert!(eventually(Duration::from_secs(10), || sim.cards(r.id())[0].text.contains("matches INC-42")).await, "{which}: review embed");
        }
        _ => {
            assert!(
                eventually(Duration::from_secs(10), || sim.messages().iter().any(|m| m.request == r.id() && m.kind == "review-0"
                    && m.reply_to.as_deref() == Some(card.id.as_str()))).await,
                "{which}: review reply in the card's thread"
            );
        }
    }

    // Approve → APPROVED, ✅ on Slack, requester told.
    env.sim.approve(r.id(), "ship it");
    assert!(eventually(Duration::from_secs(10), || sim.cards(r.id())[0].text.contains("APPROVED")).await, "{which}: approved");
    if which == "slack" {
        assert!(eventually(Duration::from_secs(10), || sim.cards(r.id())[0].reactions.contains(&"white_check_mark".to_string())).await);
    }
    assert!(
        eventually(Duration::from_secs(10), || sim.messages().iter().any(|m| m.request == r.id() && m.kind == "notice")).await,
        "{which}: requester notified"
    );

    // Deny another → DENIED (❌ on Slack).
    let d = env.sim.request("alice@example.com", &["editor"], "");
    assert!(eventually(Duration::from_secs(10), || sim.cards(d.id()).len() == 1).await);
    env.sim.deny(d.id(), "not today");
    assert!(eventually(Duration::from_secs(10), || sim.cards(d.id())[0].text.contains("DENIED")).await, "{which}: denied");
    if which == "slack" {
        assert!(eventually(Duration::from_secs(10), || sim.cards(d.id())[0].reactions.contains(&"x".to_string())).await);
    }

    // Delete of an open request → EXPIRED.
    let e = env.sim.request("alice@example.com", &["editor"], "");
    assert!(eventually(Duration::from_secs(10), || sim.cards(e.id()).len() == 1).await);
    env.sim.expire(e.id());
    assert!(eventually(Duration::from_secs(10), || sim.cards(e.id())[0].text.contains("EXPIRED")).await, "{which}: expired");

    // Every card once.
    assert!(sim.card_counts().values().all(|n| *n == 1), "{which}: {:?}", sim.card_counts());
    running.stop(Duration::from_secs(5)).await;
}

/// Without permission to read roles the card lists the roles alone, and no
/// logins are recorded.
#[tokio::test]
async fn role_reads_denied_fall_back_to_plain_roles() {
    let env = Env::new().await;
    env.sim.set_role("editor", &["root"]);
    env.sim.deny_role_reads(true);
    let sim = Sim::start("slack").await;
    let running = start_plugin(&env, &sim, "").await;
    let r = env.sim.request("alice@example.com", &["editor"], "");
    assert!(eventually(Duration::from_secs(10), || sim.cards(r.id()).len() == 1).await, "card posted");
    let card = &sim.cards(r.id())[0];
    assert!(card.text.contains("Role(s)") && card.text.contains("editor") && !card.text.contains("Login(s)"), "{card:?}");
    assert!(env.sim.calls("GetRole") >= 1, "the role was asked for");
    let data = env.sim.plugin_data(r.id(), "slack").expect("plugin data written");
    assert!(!data.contains_key("logins_by_role"), "{data:?}");
    running.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn slack_lifecycle() {
    lifecycle("slack").await;
}

#[tokio::test]
async fn discord_lifecycle() {
    lifecycle("discord").await;
}

#[tokio::test]
async fn mattermost_lifecycle() {
    lifecycle("mattermost").await;
}

/// A 200-request burst; the first instance dies abruptly half way (its
/// runtime is torn down with posts in flight), a new one with the same
/// instance id takes over: every request ends up posted exactly once.
fn restart_mid_burst(which: &'static str) {
    restart_mid_burst_with(which, |section| section);
}

fn restart_mid_burst_with(which: &'static str, edit: impl Fn(String) -> String) {
    common::init();
    let main = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (env, sim) = main.block_on(async {
        let env = Env::new().await;
        let sim = Sim::start(which).await;
        sim.without_rate_limits();
        (env, sim)
    });
    let extra = "[plugin]\ninstance_id = \"replica-0\"\nconcurrency = 16\n";
    let cfg = env.config(&format!("{}{extra}", edit(sim.section())));

    // First life in its own runtime, so dropping it kills every task.
    let first = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let running = first.block_on(async {
        let chats = teleport_plugin::cli::build_chats(&cfg).unwrap();
        let r = launch(&cfg, chats, Extras::default()).await.unwrap();
        assert!(r.ready(Duration::from_secs(10)).await);
        r
    });
    // Slow answers keep posts in flight when the process dies.
    sim.core().set_response_delay(Duration::from_millis(30));
    let ids: Vec<String> = (0..200).map(|i| env.sim.request(&format!("user{i}@example.com"), &["editor"], "burst").id().to_string()).collect();
    main.block_on(async {
        assert!(eventually(Duration::from_secs(30), || sim.card_counts().len() >= 60).await, "{which}: first instance got going");
    });
    std::mem::forget(running);
    first.shutdown_background();
    sim.core().set_response_delay(Duration::ZERO);
    // The crash left claims with posts whose outcome is unknown.
    let interrupted = ids.iter().filter(|id| env.sim.plugin_data(id, which).is_some_and(|d| d.contains_key("notify_pending"))).count();
    assert!(interrupted > 0, "{which}: the first instance died with work in flight");

    main.block_on(async {
        let chats = teleport_plugin::cli::build_chats(&cfg).unwrap();
        let second = launch(&cfg, chats, Extras::default()).await.unwrap();
        let done = eventually(Duration::from_secs(60), || {
            let c = sim.card_counts();
            ids.iter().all(|id| c.contains_key(id))
        })
        .await;
        let counts = sim.card_counts();
        assert!(done, "{which}: missing {}", ids.iter().filter(|id| !counts.contains_key(*id)).count());
        // Past the first instance's claim leases: its interrupted posts are retried only then.
        assert!(common::wait_idle(&[&second], Duration::from_secs(60)).await, "{which}: idle");
        let counts = sim.card_counts();
        let dups: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
        assert!(dups.is_empty(), "{which}: duplicated cards {dups:?}");
        second.stop(Duration::from_secs(5)).await;
    });
}

#[test]
fn slack_restart_mid_burst_posts_each_request_once() {
    restart_mid_burst("slack");
}

#[test]
fn slack_restart_mid_burst_with_a_channel_name_posts_each_request_once() {
    // The name is mapped to the channel ID to find interrupted posts.
    restart_mid_burst_with("slack", |s| s.replace(common::chats::CHANNEL_SLACK, "#access"));
}

#[test]
fn discord_restart_mid_burst_posts_each_request_once() {
    restart_mid_burst("discord");
}

#[test]
fn mattermost_restart_mid_burst_posts_each_request_once() {
    restart_mid_burst("mattermost");
}

async fn rate_limit_storm(which: &str) {
    let env = Env::new().await;
    let sim = Sim::start(which).await;
    match &sim {
        Sim::Slack(s) => s.set_rate_limit("chat.postMessage", Some(RateWindow::new(5, Duration::from_secs(1)))),
        Sim::Discord(s) => {
            // The storm is the global limit; the per-channel posting limit
            // (5 per 5 s by default) would only stretch 40 posts to 40 s.
            sim.without_rate_limits();
            s.set_global_limit(Some(RateWindow::new(5, Duration::from_secs(1))))
        }
        Sim::Mattermost(s) => s.set_rate_limit(Some(RateWindow::new(5, Duration::from_secs(1)))),
    }
    let running = start_plugin(&env, &sim, "").await;
    let ids: Vec<String> = (0..40).map(|i| env.sim.request(&format!("u{i}"), &["x"], "").id().to_string()).collect();
    let done = eventually(Duration::from_secs(60), || {
        let c = sim.card_counts();
        ids.iter().all(|id| c.contains_key(id))
    })
    .await;
    assert!(done, "{which}: everything posted despite the rate limit");
    assert!(sim.card_counts().values().all(|n| *n == 1), "{which}: no duplicates");
    assert!(sim.core().calls().iter().any(|c| c.status == 429), "{which}: the limit was hit");
    let (_, text) = metrics(&running);
    let counted = text
        .lines()
        .find(|l| l.starts_with(&format!("teleport_plugin_chat_rate_limited_total{{chat=\"{which}\"}}")))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    let refused = sim.core().calls().iter().filter(|c| c.status == 429).count();
    assert_eq!(counted as usize, refused, "{which}: every 429 counted in /metrics:\n{text}");
    running.stop(Duration::from_secs(5)).await;
}

fn metrics(r: &Running) -> (usize, String) {
    let t = teleport_plugin::metrics::encode(&r.registry);
    (t.len(), t)
}

#[tokio::test]
async fn slack_429_storm_loses_nothing() {
    rate_limit_storm("slack").await;
}

#[tokio::test]
async fn discord_429_storm_loses_nothing() {
    rate_limit_storm("discord").await;
}

#[tokio::test]
async fn mattermost_429_storm_loses_nothing() {
    rate_limit_storm("mattermost").await;
}

async fn two_instances(which: &str) {
    let env = Env::new().await;
    let sim = Sim::start(which).await;
    sim.without_rate_limits();
    let a = start_plugin(&env, &sim, "[plugin]\ninstance_id = \"replica-a\"\n").await;
    let b = start_plugin(&env, &sim, "[plugin]\ninstance_id = \"replica-b\"\n").await;
    let mut ids: Vec<String> = (1..60).map(|i| env.sim.request(&format!("u{i}"), &["x"], "").id().to_string()).collect();
    ids.insert(0, env.sim.request("alice@example.com", &["x"], "").id().to_string());
    assert!(
        eventually(Duration::from_secs(30), || {
            let c = sim.card_counts();
            ids.iter().all(|id| c.contains_key(id))
        })
        .await
    );
    // Both replicas review-reply and resolve too; still one of each.
    env.sim.review(&ids[0], "bob", true, "reviewed by bob once");
    env.sim.approve(&ids[0], "ok");
    assert!(eventually(Duration::from_secs(10), || sim.cards(&ids[0])[0].text.contains("APPROVED")).await);
    assert!(eventually(Duration::from_secs(10), || sim.messages().iter().any(|m| m.request == ids[0] && m.kind == "notice")).await);
    assert!(common::wait_idle(&[&a, &b], Duration::from_secs(30)).await, "{which}: idle");
    assert!(sim.card_counts().values().all(|n| *n == 1), "{which}: {:?}", sim.card_counts());
    let notices = sim.messages().iter().filter(|m| m.request == ids[0] && m.kind == "notice").count();
    assert_eq!(notices, 1, "{which}: one notice");
    if which == "discord" {
        let replies = sim.messages().iter().filter(|m| m.request == ids[0] && m.kind == "review-0").count();
        // Discord shows reviews as an embed on the card, not as replies.
        assert_eq!(replies, 0, "{which}");
        assert!(sim.cards(&ids[0])[0].text.contains("reviewed by bob once"), "{which}: review embed");
    } else {
        let one = |m: &common::chats::Msg| m.request == ids[0] && m.kind == "review-0";
        assert!(eventually(Duration::from_secs(10), || sim.messages().iter().any(one)).await, "{which}: review reply");
        assert_eq!(sim.messages().iter().filter(|m| one(m)).count(), 1, "{which}: exactly one review reply per card");
    }
    a.stop(Duration::from_secs(5)).await;
    b.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn slack_two_instances_never_double_post() {
    two_instances("slack").await;
}

#[tokio::test]
async fn discord_two_instances_never_double_post() {
    two_instances("discord").await;
}

#[tokio::test]
async fn mattermost_two_instances_never_double_post() {
    two_instances("mattermost").await;
}

const HOSTILE: &str = "<!channel> <!here> @everyone @here @channel @all <@U0ALICE001> [click](https://evil.example) ```x```";

/// The text outside fenced code blocks and inline code spans: where
/// markdown links and mentions would be live.
fn outside_code(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split("```").enumerate() {
        if i % 2 == 0 {
            for (j, piece) in part.split('`').enumerate() {
                if j % 2 == 0 {
                    out.push_str(piece);
                }
            }
        }
    }
    out
}

/// A request whose resources Teleport keeps in `RequestedResourceAccessIDs`
/// (field 26): every card shows each resource with its constraints, and the
/// `resources` key lists them as the official plugins write resource ids.
async fn constrained_resources(which: &str) {
    let env = Env::new().await;
    let sim = Sim::start(which).await;
    let running = start_plugin(&env, &sim, "").await;
    let cluster = env.sim.cluster_name().to_string();
    let mut req = access::new_request("alice@example.com", &["access"]);
    let spec = req.spec_mut();
    spec.requested_resource_i_ds.push(access::resource_id(&cluster, "db", "pg", ""));
    spec.requested_resource_access_i_ds.push(access::ssh_constrained(&cluster, "web-1", &["root", "admin"]));
    spec.requested_resource_access_i_ds.push(access::aws_console_constrained(&cluster, "aws", &["arn:aws:iam::1:role/ro"]));
    let r = env.sim.create_request(req);
    assert!(eventually(Duration::from_secs(10), || sim.cards(r.id()).len() == 1).await, "{which}: card posted");
    let text = &sim.cards(r.id())[0].text;
    for want in [
        format!("/{cluster}/db/pg"),
        format!("/{cluster}/node/web-1 (logins=root,admin)"),
        format!("/{cluster}/app/aws (role_arns=arn:aws:iam::1:role/ro)"),
        "Resource Request".to_string(),
    ] {
        assert!(text.contains(&want), "{which}: {want:?} missing from {text}");
    }
    let recorded = || env.sim.plugin_data(r.id(), sim.name()).is_some_and(|d| d.get("messages").is_some_and(|m| !m.is_empty()));
    assert!(eventually(Duration::from_secs(10), recorded).await);
    let data = env.sim.plugin_data(r.id(), sim.name()).unwrap();
    let want = format!(r#"["/{cluster}/db/pg","/{cluster}/node/web-1","/{cluster}/app/aws"]"#);
    assert_eq!(data["resources"], want, "{which}");
    running.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn slack_card_shows_constrained_resources() {
    constrained_resources("slack").await;
}

#[tokio::test]
async fn discord_card_shows_constrained_resources() {
    constrained_resources("discord").await;
}

#[tokio::test]
async fn mattermost_card_shows_constrained_resources() {
    constrained_resources("mattermost").await;
}

async fn hostile_reason(which: &str) {
    let env = Env::new().await;
    let sim = Sim::start(which).await;
    let running = start_plugin(&env, &sim, "").await;
    let r = env.sim.request("alice@example.com", &["x"], HOSTILE);
    assert!(eventually(Duration::from_secs(10), || sim.cards(r.id()).len() == 1).await);
    let text = &sim.cards(r.id())[0].text;
    match &sim {
        Sim::Slack(_) => {
            for bad in ["<!channel>", "<!here>", "<@U0ALICE001>", "<https://"] {
                assert!(!text.contains(bad), "slack: {bad} survived in {text}");
            }
        }
        Sim::Discord(s) => {
            let m = s.messages().into_iter().find(|m| m.content.contains(r.id())).unwrap();
            assert_eq!(m.allowed_mentions, Some(serde_json::json!({"parse": []})));
            assert!(!m.content.contains("@everyone") && !m.content.contains("@here"), "{}", m.content);
            assert!(!outside_code(&m.content).contains("](https://evil"), "{}", m.content);
        }
        Sim::Mattermost(_) => {
            for bad in ["@channel", "@all", "@here"] {
                assert!(!text.contains(bad), "mattermost: {bad} survived in {text}");
            }
            assert!(!outside_code(text).contains("](https://evil"), "mattermost: live link in {text}");
        }
    }
    running.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn slack_hostile_reason_is_inert() {
    hostile_reason("slack").await;
}

#[tokio::test]
async fn discord_hostile_reason_is_inert() {
    hostile_reason("discord").await;
}

#[tokio::test]
async fn mattermost_hostile_reason_is_inert() {
    hostile_reason("mattermost").await;
}

#[tokio::test]
async fn one_process_serves_several_chats() {
    let env = Env::new().await;
    let slack = Sim::start("slack").await;
    let discord = Sim::start("discord").await;
    let section = |s: &Sim| s.section().replace("[role_to_recipients]", &format!("[{}.role_to_recipients]", s.name()));
    let cfg = env.config(&format!("{}{}", section(&slack), section(&discord)));
    let chats = teleport_plugin::cli::build_chats(&cfg).unwrap();
    let running = launch(&cfg, chats, Extras::default()).await.unwrap();
    assert!(running.ready(Duration::from_secs(10)).await);
    let r = env.sim.request("alice@example.com", &["x"], "both");
    assert!(eventually(Duration::from_secs(10), || slack.cards(r.id()).len() == 1 && discord.cards(r.id()).len() == 1).await);
    assert!(env.sim.plugin_data(r.id(), "slack").is_some() && env.sim.plugin_data(r.id(), "discord").is_some());
    running.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_bad_token_fails_the_start_with_a_clear_message() {
    let env = Env::new().await;
    let sim = Sim::start("slack").await;
    let cfg = env.config(&sim.section().replace("xoxb-sim-token", "xoxb-wrong"));
    let chats = teleport_plugin::cli::build_chats(&cfg).unwrap();
    let err = launch(&cfg, chats, Extras::default()).await.err().expect("must fail").to_string();
    assert!(err.contains("slack API health check failed") && err.contains("token"), "{err}");
    assert!(!err.contains("xoxb-wrong"), "token leaked: {err}");
    let _ = Arc::new(());
}
