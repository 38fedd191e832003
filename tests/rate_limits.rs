//! Politeness under chat rate limits, end to end: Teleport simulator →
//! engine → the real Slack client → the Slack simulator enforcing Slack's
//! rules (posting per channel, other methods per method, 429 with
//! `Retry-After` in whole seconds).
//!
//! "Inside a window" means a call arrived while a window announced by an
//! earlier 429 for its bucket was still open. A call that arrives within
//! [`IN_FLIGHT`] of the announcement was on its way before the client could
//! have read the 429, so it is not counted against the client.

mod common;

use std::time::{Duration, Instant};

use common::{Env, eventually};
use teleport_plugin::app::{Extras, Running, launch};
use teleport_plugin_sim::access::AccessRequestExt;
use teleport_plugin_sim::chat::{
    ChatSim, DiscordSim, DiscordSimConfig, RateWindow, SimChannel, SlackSim, SlackSimConfig, TokenRule, WindowCall,
};

const BUSY: &str = "C0BUSY0001";
const QUIET: &str = "C0QUIET001";
const IN_FLIGHT: Duration = Duration::from_millis(150);

async fn slack(config: SlackSimConfig) -> SlackSim {
    SlackSim::start(config.with_channel(SimChannel::new(BUSY, "busy")).with_channel(SimChannel::new(QUIET, "quiet"))).await
}

/// Requests for role `quiet` go to [`QUIET`], all others to [`BUSY`].
async fn start_plugin(env: &Env, sim: &SlackSim) -> Running {
    start_plugin_with(env, sim, "").await
}

async fn start_plugin_with(env: &Env, sim: &SlackSim, extra: &str) -> Running {
    let section = format!(
        "[slack]\ntoken = \"xoxb-sim-token\"\napi_url = \"{}\"\n[role_to_recipients]\n\"*\" = \"{BUSY}\"\n\"quiet\" = \"{QUIET}\"\n{extra}",
        sim.base_url()
    );
    let cfg = env.config(&section);
    let chats = teleport_plugin::cli::build_chats(&cfg).unwrap();
    let running = launch(&cfg, chats, Extras::default()).await.expect("launch");
    assert!(running.ready(Duration::from_secs(10)).await);
    running
}

/// Request ids of the cards in `channel`, with how many cards each has.
fn cards_in(sim: &SlackSim, channel: &str) -> std::collections::HashMap<String, usize> {
    let mut out = std::collections::HashMap::new();
    for m in sim.messages_in(channel) {
        let Some(md) = &m.metadata else { continue };
        if md["event_payload"]["kind"] == "card" {
            *out.entry(md["event_payload"]["request_id"].as_str().unwrap_or_default().to_string()).or_default() += 1;
        }
    }
    out
}

fn ignored_windows(sim: &SlackSim) -> Vec<WindowCall> {
    sim.calls_inside_windows().into_iter().filter(|c| c.lag() > IN_FLIGHT).collect()
}

fn status_count(sim: &SlackSim, endpoint: &str, status: u16) -> usize {
    sim.calls_to(endpoint).iter().filter(|c| c.status == status).count()
}

#[tokio::test]
async fn ten_posts_to_one_slack_channel_respect_every_announced_window() {
    let env = Env::new().await;
    // Slack's posting limit: about one a second per channel, short bursts.
    let sim = slack(SlackSimConfig::default().with_post_limit(TokenRule::new(3, Duration::from_secs(1)))).await;
    let running = start_plugin(&env, &sim).await;
    let ids: Vec<String> = (0..10).map(|i| env.sim.request(&format!("u{i}"), &["editor"], "").id().to_string()).collect();
    let done = eventually(Duration::from_secs(60), || {
        let c = cards_in(&sim, BUSY);
        ids.iter().all(|id| c.contains_key(id))
    })
    .await;
    assert!(done, "every card posted: {:?}", cards_in(&sim, BUSY));
    assert!(cards_in(&sim, BUSY).values().all(|n| *n == 1), "each card once");
    let ignored = ignored_windows(&sim);
    assert!(ignored.is_empty(), "{} calls inside announced windows: {ignored:#?}", ignored.len());
    let refused = status_count(&sim, "chat.postMessage", 429);
    assert!(refused > 0, "the limit was met");
    assert!(refused <= ids.len(), "at most one 429 per post, got {refused} for {}", ids.len());
    running.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_busy_slack_channel_does_not_hold_the_first_card_of_another() {
    let env = Env::new().await;
    // Long windows on the busy channel make any wait behind it obvious.
    let sim = slack(SlackSimConfig::default().with_post_limit(TokenRule::new(1, Duration::from_secs(3)))).await;
    // A backlog larger than the workers: the busy channel must not take them all.
    let running = start_plugin_with(&env, &sim, "[plugin]\nconcurrency = 12\n").await;
    for i in 0..20 {
        env.sim.request(&format!("u{i}"), &["editor"], "");
    }
    assert!(
        eventually(Duration::from_secs(10), || status_count(&sim, "chat.postMessage", 429) > 0).await,
        "the busy channel hit its limit"
    );
    let asked = Instant::now();
    let open = sim
        .core()
        .windows_announced()
        .into_iter()
        .filter(|w| w.bucket == format!("chat.postMessage {BUSY}"))
        .map(|w| w.until)
        .max()
        .expect("a window on the busy channel");
    assert!(open > asked + Duration::from_millis(500), "the busy channel's window is still open");
    let quiet = env.sim.request("q", &["quiet"], "").id().to_string();
    assert!(eventually(Duration::from_secs(20), || cards_in(&sim, QUIET).contains_key(&quiet)).await, "quiet card posted");
    let posted = sim
        .calls_to("chat.postMessage")
        .into_iter()
        .find(|c| c.status == 200 && c.body["channel"] == QUIET)
        .expect("the quiet channel's post");
    assert!(
        posted.received_at < open,
        "the quiet channel's first card waited for the busy channel's window ({:?} after it ended)",
        posted.received_at - open
    );
    assert_eq!(
        sim.calls_to("chat.postMessage").iter().filter(|c| c.body["channel"] == QUIET && c.status == 429).count(),
        0,
        "the quiet channel was never refused"
    );
    running.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn card_updates_waiting_for_a_window_are_replaced_by_newer_states() {
    let env = Env::new().await;
    // chat.update is limited per method; one edit per 3 s makes the wait long.
    let sim = slack(SlackSimConfig::default().with_rate_limit("chat.update", RateWindow::new(1, Duration::from_secs(3)))).await;
    let running = start_plugin(&env, &sim).await;
    let r = env.sim.request("alice", &["editor"], "").id().to_string();
    assert!(eventually(Duration::from_secs(10), || cards_in(&sim, BUSY).contains_key(&r)).await, "card posted");
    // A first review uses up the window.
    env.sim.review(&r, "reviewer0", true, "first look");
    assert!(
        eventually(Duration::from_secs(10), || status_count(&sim, "chat.update", 200) == 1).await,
        "first review shown on the card"
    );
    let before = sim.calls_to("chat.update").len();

    // Five reviews and the approval within about a second, while limited.
    for i in 1..=5 {
        env.sim.review(&r, &format!("reviewer{i}"), true, "lgtm");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    env.sim.approve(&r, "ship it");
    let card = || sim.messages_in(BUSY).into_iter().find(|m| m.thread_ts.is_none() && m.metadata.as_ref().is_some_and(|md| md["event_payload"]["request_id"] == r.as_str()));
    assert!(
        eventually(Duration::from_secs(30), || card().is_some_and(|m| m.text.as_deref().unwrap_or_default().contains("APPROVED"))).await,
        "the card ends on the latest state: {:?}",
        card()
    );
    // Past the longest retry, so a late stale edit would show.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let during = &sim.calls_to("chat.update")[before..];
    assert!(during.len() <= 2, "at most two chat.update calls for the burst, got {}: {:?}", during.len(), during.iter().map(|c| c.status).collect::<Vec<_>>());
    let last = card().unwrap();
    assert!(last.text.as_deref().unwrap_or_default().contains("APPROVED"), "{last:?}");
    let replies = sim.messages_in(BUSY).iter().filter(|m| m.thread_ts.is_some() && m.metadata.as_ref().is_some_and(|md| md["event_payload"]["kind"].as_str().is_some_and(|k| k.starts_with("review-")))).count();
    assert_eq!(replies, 6, "one thread reply per review");
    let ignored = ignored_windows(&sim);
    assert!(ignored.is_empty(), "calls inside announced windows: {ignored:#?}");
    running.stop(Duration::from_secs(5)).await;
}

const DISCORD_CHANNEL: &str = "1400000000000000001";

/// Deliveries the plugin gave up on for `chat`, from its metrics.
fn failures(running: &Running, chat: &str) -> u64 {
    teleport_plugin::metrics::encode(&running.registry)
        .lines()
        .filter(|l| l.starts_with("teleport_plugin_failures_total{") && l.contains(&format!("chat=\"{chat}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn a_revoked_discord_token_does_not_earn_a_ban() {
    let env = Env::new().await;
    // Ten invalid answers ban the address here (Discord: 10,000 in 10
    // minutes), more than the four calls that can be in flight when the
    // token dies, fewer than the cards to post.
    let sim = DiscordSim::start(
        DiscordSimConfig::default()
            .with_channel(SimChannel::new(DISCORD_CHANNEL, "access"))
            .with_invalid_limit(RateWindow::new(10, Duration::from_secs(600)), Duration::from_secs(600)),
    )
    .await;
    let section = format!(
        "[plugin]\nconcurrency = 4\n[discord]\ntoken = \"discord-sim-token\"\napi_url = \"{}\"\n[role_to_recipients]\n\"*\" = \"{DISCORD_CHANNEL}\"\n",
        sim.base_url()
    );
    let cfg = env.config(&section);
    let chats = teleport_plugin::cli::build_chats(&cfg).unwrap();
    let running = launch(&cfg, chats, Extras::default()).await.expect("launch");
    assert!(running.ready(Duration::from_secs(10)).await);
    sim.revoke_token("discord-sim-token");
    for i in 0..24 {
        env.sim.request(&format!("u{i}"), &["editor"], "");
    }
    assert!(
        eventually(Duration::from_secs(30), || failures(&running, "discord") >= 24).await,
        "every card given up on: {} failures, {} answers 401, {} answers 429, banned: {}",
        failures(&running, "discord"),
        sim.core().calls().iter().filter(|c| c.status == 401).count(),
        sim.core().calls().iter().filter(|c| c.status == 429).count(),
        sim.bans() > 0
    );
    assert_eq!(sim.bans(), 0, "the address was not banned");
    let refused = sim.core().calls().iter().filter(|c| c.status == 401).count();
    assert!((1..=4).contains(&refused), "the dead token went out only with the calls in flight: {refused} 401s");
    assert!(sim.messages().is_empty());
    running.stop(Duration::from_secs(5)).await;
}
