//! The Slack, Discord and Mattermost clients against the chat simulators:
//! round trips, rate limits, server errors, timeouts, hostile text and the
//! error messages operators see.

#[path = "support/render_limits.rs"]
mod render_limits;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use futures::future::join_all;
use serde_json::Value;
use teleport_plugin::chat::discord::DiscordChat;
use teleport_plugin::chat::http::ClientOptions;
use teleport_plugin::chat::mattermost::MattermostChat;
use teleport_plugin::chat::slack::SlackChat;
use teleport_plugin::chat::{
    Chat, ChatError, Content, ErrorKind, MessageRef, Place, Reaction, RequestView, Status, Target,
};
use teleport_plugin::config::Secret;
use teleport_plugin::model::{AccessRequest, RequestState, Review};
use teleport_plugin_sim::chat::{
    CallRecord, ChatSim, DiscordSim, DiscordSimConfig, MattermostSim, MattermostSimConfig,
    RateWindow, SimChannel, SimUser, SlackSim, SlackSimConfig,
};

const HOSTILE: &str = "<!channel> <!here> @everyone @here @channel @all <@U123> <@123> [x](http://evil) ```code``` \u{202e}RTL\u{202e} 🎉 &amp;";

/// Short backoffs so failure paths run in milliseconds.
fn opts() -> ClientOptions {
    let _ = rustls::crypto::ring::default_provider().install_default();
    ClientOptions {
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(3),
        max_attempts: 4,
        call_budget: Duration::from_secs(8),
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        lookup_ttl: Duration::from_secs(60),
    }
}

/// Gives up on an answer after 300 ms (the timeout tests delay answers longer).
fn impatient() -> ClientOptions {
    ClientOptions {
        request_timeout: Duration::from_millis(300),
        ..opts()
    }
}

fn view(id: &str) -> RequestView {
    let r = AccessRequest::new_pending(id, "alice@example.com", vec!["editor".into()]);
    let mut v = RequestView::from_request(&r, "prod", None, BTreeMap::new(), Status::Pending);
    v.request_reason = "deploy hotfix".into();
    v
}

fn review(author: &str, state: RequestState, reason: &str) -> Review {
    Review {
        author: author.into(),
        roles: vec![],
        proposed_state: state,
        reason: reason.into(),
        created: Some(SystemTime::now()),
    }
}

fn hostile_view(id: &str) -> RequestView {
    let mut v = view(id);
    v.user = HOSTILE.into();
    v.cluster = HOSTILE.into();
    v.roles = (0..500).map(|i| format!("{HOSTILE}{i}")).collect();
    v.logins_by_role = v
        .roles
        .iter()
        .map(|r| (r.clone(), vec![HOSTILE.to_string(); 2]))
        .collect();
    v.resources = vec![HOSTILE.into(); 20];
    v.request_reason = HOSTILE.repeat(1_000_000 / HOSTILE.len());
    v.resolve_reason = HOSTILE.repeat(100);
    v.reviews = (0..200)
        .map(|i| {
            review(
                &format!("{HOSTILE}{i}"),
                RequestState::Denied,
                &HOSTILE.repeat(50),
            )
        })
        .collect();
    v
}

fn kind(e: &ChatError) -> &ErrorKind {
    &e.kind
}

/// Every `@` is followed by the zero-width space that defuses it.
fn assert_no_live_at(s: &str) {
    if let Some(context) = render_limits::live_at(s) {
        panic!("a live @ in …{context}…");
    }
}

fn statuses(calls: &[CallRecord], endpoint: &str) -> Vec<u16> {
    calls
        .iter()
        .filter(|c| c.endpoint == endpoint)
        .map(|c| c.status)
        .collect()
}

/// After each 429, no call to the same endpoint arrived before the wait the
/// API asked for was over (calls already in flight get `grace`).
fn assert_waited_after_429(calls: &[CallRecord], endpoint: &str, wait: Duration, grace: Duration) {
    let calls: Vec<&CallRecord> = calls.iter().filter(|c| c.endpoint == endpoint).collect();
    for limited in calls.iter().filter(|c| c.status == 429) {
        let answered = limited.received_at + limited.service_time;
        for c in &calls {
            let early = c.received_at > answered + grace && c.received_at < answered + wait - grace;
            assert!(
                !early,
                "call {} arrived {:?} after a 429 that asked to wait {wait:?}",
                c.seq,
                c.received_at - answered
            );
        }
    }
}

// ---------------------------------------------------------------- Slack

const SLACK_TOKEN: &str = "xoxb-test";

async fn slack_sim(cfg: SlackSimConfig) -> SlackSim {
    SlackSim::start(SlackSimConfig {
        tokens: vec![SLACK_TOKEN.into()],
        ..cfg
            .with_user(SimUser::new("U0ALICE001", "alice", "alice@example.com"))
            .with_channel(SimChannel::new("C0ACCESS01", "access-requests"))
            .with_channel(SimChannel::new("C0PRIVATE1", "private-ops").without_bot())
    })
    .await
}

fn slack(sim: &SlackSim) -> SlackChat {
    SlackChat::with_options(&sim.base_url(), Secret::new(SLACK_TOKEN), opts()).unwrap()
}

/// Every text object of a stored Slack message, fallback included.
fn slack_texts(m: &teleport_plugin_sim::chat::SlackMessage) -> Vec<String> {
    let mut out = vec![m.text.clone().unwrap_or_default()];
    for b in m
        .blocks
        .as_ref()
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.extend(b["text"]["text"].as_str().map(str::to_string));
        for e in b["elements"].as_array().into_iter().flatten() {
            out.extend(e["text"].as_str().map(str::to_string));
        }
    }
    out
}

#[tokio::test]
async fn slack_post_update_reply_react_and_find_again() {
    let sim = slack_sim(SlackSimConfig::default()).await;
    let chat = slack(&sim);
    assert_eq!(
        chat.health_check().await.unwrap(),
        "Slack bot @teleport (U0SIMBOT01) in workspace Sim Workspace"
    );
    let since = SystemTime::now();
    let mut v = view("req-1");

    let target = chat.resolve("#access-requests").await.unwrap();
    assert_eq!(
        target,
        Target("#access-requests".into()),
        "names pass through"
    );
    let card = chat.post(&target, Content::Card(&v)).await.unwrap();
    assert_eq!(
        card.channel_id, "C0ACCESS01",
        "the real channel ID comes back"
    );
    let stored = sim.message("C0ACCESS01", &card.message_id).unwrap();
    assert!(stored.has_text_fallback());
    assert_eq!(
        stored.metadata.as_ref().unwrap()["event_payload"]["kind"],
        "card"
    );
    assert!(
        slack_texts(&stored)
            .iter()
            .any(|t| t.contains("*Status*: ⏳ PENDING"))
    );

    v.reviews
        .push(review("bob", RequestState::Approved, "looks fine"));
    v.status = Status::Approved;
    chat.update(&card, Content::Card(&v)).await.unwrap();
    let stored = sim.message("C0ACCESS01", &card.message_id).unwrap();
    assert_eq!(stored.history.len(), 1);
    assert!(
        slack_texts(&stored)
            .iter()
            .any(|t| t.contains("✅ APPROVED"))
    );

    let reply = chat.reply(&card, Content::Review(&v, 0)).await.unwrap();
    let replies = sim.thread_replies("C0ACCESS01", &card.message_id);
    assert_eq!(replies.len(), 1);
    assert!(
        slack_texts(&replies[0])
            .iter()
            .any(|t| t.contains("`bob` reviewed the request at"))
    );

    chat.react(&card, Reaction::Approved).await.unwrap();
    chat.react(&card, Reaction::Approved)
        .await
        .expect("reacting twice is fine");
    let stored = sim.message("C0ACCESS01", &card.message_id).unwrap();
    assert_eq!(
        stored.reactions.keys().collect::<Vec<_>>(),
        ["white_check_mark"]
    );

    let by_id = Target("C0ACCESS01".into());
    let card_marker = Content::Card(&v).marker();
    assert_eq!(
        chat.find_posted(Place::Target(&by_id), &card_marker, since)
            .await
            .unwrap(),
        Some(card.clone())
    );
    assert_eq!(
        chat.find_posted(Place::Target(&target), &card_marker, since)
            .await
            .unwrap(),
        Some(card.clone()),
        "name → ID learned from the post"
    );
    let notice = Content::RequesterNotice(&v).marker();
    assert_eq!(
        chat.find_posted(Place::Target(&by_id), &notice, since)
            .await
            .unwrap(),
        None
    );
    let later = SystemTime::now() + Duration::from_secs(60);
    assert_eq!(
        chat.find_posted(Place::Target(&by_id), &card_marker, later)
            .await
            .unwrap(),
        None,
        "older messages do not count"
    );
    let review0 = Content::Review(&v, 0).marker();
    assert_eq!(
        chat.find_posted(Place::Thread(&card), &review0, since)
            .await
            .unwrap(),
        Some(reply)
    );
    let review1 = Content::Review(&v, 1).marker();
    assert_eq!(
        chat.find_posted(Place::Thread(&card), &review1, since)
            .await
            .unwrap(),
        None
    );

    // A fresh client (after a restart) maps the name through the channel list.
    assert_eq!(
        slack(&sim)
            .find_posted(Place::Target(&target), &card_marker, since)
            .await
            .unwrap(),
        Some(card.clone())
    );
    assert!(sim.calls().iter().any(|c| c.endpoint == "conversations.list"));
    // An unknown name is a clear, permanent error.
    let e = slack(&sim)
        .find_posted(Place::Target(&Target("#no-such-channel".into())), &card_marker, since)
        .await
        .unwrap_err();
    assert_eq!(kind(&e), &ErrorKind::Permanent);
    assert!(e.message.contains("does not exist"), "{}", e.message);
}

/// After a burst of uncertain posts, every request looks for its card in the
/// same channel at once: they share history reads instead of each paging
/// through `conversations.history` (a Tier 3 method) on its own, and each
/// still finds its own card, or none.
#[tokio::test]
async fn slack_lookups_in_one_channel_share_history_reads() {
    let sim = slack_sim(SlackSimConfig::default()).await;
    let reads = || sim.calls().iter().filter(|c| c.endpoint == "conversations.history").count();
    lookups_share_reads(slack(&sim), Target("C0ACCESS01".into()), || sim.clear_calls(), reads).await;
}

/// 40 lookups in `target` at once, 30 of them for cards posted: each finds
/// its own card (or none) while the channel is read (`reads`, counted after
/// `clear`) at most twice. A lookup asked after a read began never uses it:
/// a card posted since is found.
async fn lookups_share_reads<C: Chat + 'static>(chat: C, target: Target, clear: impl Fn(), reads: impl Fn() -> usize) {
    let chat = std::sync::Arc::new(chat);
    let since = SystemTime::now();
    let views: Vec<RequestView> = (0..40).map(|i| view(&format!("req-{i}"))).collect();
    let mut posted = Vec::new();
    for v in views.iter().take(30) {
        posted.push(chat.post(&target, Content::Card(v)).await.unwrap());
    }
    clear();
    let lookups = views.iter().map(|v| {
        let (chat, target, marker) = (chat.clone(), target.clone(), Content::Card(v).marker());
        tokio::spawn(async move { chat.find_posted(Place::Target(&target), &marker, since).await.unwrap() })
    });
    let found: Vec<_> = futures::future::join_all(lookups).await.into_iter().map(Result::unwrap).collect();
    for (i, f) in found.iter().enumerate() {
        assert_eq!(f.as_ref(), posted.get(i), "lookup {i}");
    }
    let reads = reads();
    assert!(reads <= 2, "40 lookups, {reads} reads of the channel");
    let late = chat.post(&target, Content::Card(&views[35])).await.unwrap();
    let marker = Content::Card(&views[35]).marker();
    assert_eq!(chat.find_posted(Place::Target(&target), &marker, since).await.unwrap(), Some(late));
}

#[tokio::test]
async fn slack_dms_by_email_are_cached_and_found_after_a_restart() {
    let sim = slack_sim(SlackSimConfig::default()).await;
    let chat = slack(&sim);
    let since = SystemTime::now();
    let alice = chat.resolve("alice@example.com").await.unwrap();
    assert_eq!(alice, Target("U0ALICE001".into()));
    assert_eq!(
        chat.requester_target("alice@example.com").await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(
        sim.calls_to("users.lookupByEmail").len(),
        1,
        "lookups are cached"
    );
    assert_eq!(
        chat.requester_target("nobody@example.com").await.unwrap(),
        None
    );
    assert_eq!(
        kind(&chat.resolve("nobody@example.com").await.unwrap_err()),
        &ErrorKind::NotFound
    );
    assert_eq!(
        chat.requester_target("alice").await.unwrap(),
        None,
        "not an email"
    );

    let mut v = view("req-dm");
    v.status = Status::Approved;
    let sent = chat
        .post(&alice, Content::RequesterNotice(&v))
        .await
        .unwrap();
    assert_eq!(
        Some(sent.channel_id.clone()),
        sim.dm_channel_of("U0ALICE001")
    );

    let restarted = slack(&sim);
    let found = restarted
        .find_posted(
            Place::Target(&alice),
            &Content::RequesterNotice(&v).marker(),
            since,
        )
        .await
        .unwrap();
    assert_eq!(found, Some(sent));
    assert_eq!(
        sim.calls_to("conversations.open").len(),
        1,
        "the DM channel was opened to read it"
    );
}

#[tokio::test]
async fn slack_errors_say_how_to_fix_them() {
    let sim = slack_sim(SlackSimConfig::default()).await;
    let chat = slack(&sim);
    chat.health_check().await.unwrap();
    let v = view("req-err");

    let e = chat
        .post(&Target("C0PRIVATE1".into()), Content::Card(&v))
        .await
        .unwrap_err();
    assert_eq!(
        e.message,
        "the Slack app is not in channel C0PRIVATE1: invite it with /invite @teleport"
    );
    assert_eq!(kind(&e), &ErrorKind::Permanent);
    assert!(!e.maybe_applied);
    let e = chat
        .post(&Target("#nope".into()), Content::Card(&v))
        .await
        .unwrap_err();
    assert_eq!(
        e.message,
        "Slack channel #nope does not exist or the app cannot see it (private channels need an invitation)"
    );
    let gone = MessageRef {
        channel_id: "C0ACCESS01".into(),
        message_id: "1.000001".into(),
    };
    assert_eq!(
        kind(&chat.update(&gone, Content::Card(&v)).await.unwrap_err()),
        &ErrorKind::Gone
    );

    let bad = SlackChat::with_options(&sim.base_url(), Secret::new("xoxb-wrong"), opts()).unwrap();
    let e = bad.health_check().await.unwrap_err();
    assert_eq!(
        e.message,
        "the Slack token was rejected (invalid_auth): check slack.token"
    );
    sim.revoke_token(SLACK_TOKEN);
    let e = chat.health_check().await.unwrap_err();
    assert_eq!(
        e.message,
        "the Slack token was rejected (token_revoked): check slack.token"
    );
    for c in sim.calls() {
        assert!(!format!("{:?}", c.body).contains(SLACK_TOKEN));
    }
}

#[tokio::test]
async fn slack_rate_limit_storm_waits_and_loses_nothing() {
    let cfg = SlackSimConfig::default().with_rate_limit(
        "chat.postMessage",
        RateWindow::new(3, Duration::from_secs(1)),
    );
    let sim = slack_sim(cfg).await;
    let chat = slack(&sim);
    let target = Target("C0ACCESS01".into());
    let views: Vec<RequestView> = (0..8).map(|i| view(&format!("storm-{i}"))).collect();
    let results = join_all(views.iter().map(|v| chat.post(&target, Content::Card(v)))).await;
    for r in &results {
        r.as_ref().expect("every post eventually succeeds");
    }
    assert_eq!(
        sim.messages_in("C0ACCESS01").len(),
        8,
        "each card posted exactly once"
    );
    let calls = sim.calls();
    let st = statuses(&calls, "chat.postMessage");
    assert_eq!(st.iter().filter(|s| **s == 200).count(), 8);
    assert!(
        st.iter().filter(|s| **s == 429).count() <= 8,
        "no hammering: {st:?}"
    );
    assert_waited_after_429(
        &calls,
        "chat.postMessage",
        Duration::from_secs(1),
        Duration::from_millis(200),
    );
}

#[tokio::test]
async fn slack_long_rate_limits_are_returned_and_held_back() {
    let sim = slack_sim(SlackSimConfig::default()).await;
    let chat = slack(&sim);
    let v = view("req-rl");
    sim.rate_limit_next(1, Duration::from_secs(30));
    let e = chat
        .post(&Target("C0ACCESS01".into()), Content::Card(&v))
        .await
        .unwrap_err();
    assert!(e.is_transient() && !e.maybe_applied);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));
    let e = chat
        .post(&Target("C0ACCESS01".into()), Content::Card(&v))
        .await
        .unwrap_err();
    assert!(
        e.retry_after().unwrap() > Duration::from_secs(28),
        "the gate remembers the wait"
    );
    assert_eq!(
        sim.calls_to("chat.postMessage").len(),
        1,
        "the second call never reached Slack"
    );
    chat.health_check()
        .await
        .expect("other methods are not held back");
}

#[tokio::test]
async fn slack_server_errors_are_retried_except_for_blind_reposts() {
    let sim = slack_sim(SlackSimConfig::default()).await;
    let chat = slack(&sim);
    let target = Target("C0ACCESS01".into());
    let since = SystemTime::now();
    let v = view("req-5xx");
    let card = chat.post(&target, Content::Card(&v)).await.unwrap();

    sim.fail_next(2, 503);
    chat.update(&card, Content::Card(&v))
        .await
        .expect("edits are retried");
    assert_eq!(statuses(&sim.calls(), "chat.update"), [503, 503, 200]);

    sim.fail_next(1, 500);
    let notice = Content::RequesterNotice(&v);
    let e = chat.post(&target, notice).await.unwrap_err();
    assert!(
        e.is_transient() && e.maybe_applied,
        "a failed create may have happened: {e:?}"
    );
    assert_eq!(
        sim.calls_to("chat.postMessage")
            .iter()
            .filter(|c| c.status == 500)
            .count(),
        1,
        "not reposted blindly"
    );
    // What the engine does next: look it up, then post.
    assert_eq!(
        chat.find_posted(Place::Target(&target), &notice.marker(), since)
            .await
            .unwrap(),
        None
    );
    chat.post(&target, notice).await.unwrap();
    assert_eq!(sim.messages_in("C0ACCESS01").len(), 2);
}

#[tokio::test]
async fn slack_timeouts_report_maybe_applied_and_the_message_is_found() {
    let sim = slack_sim(SlackSimConfig::default()).await;
    let chat = slack(&sim);
    chat.health_check().await.unwrap();
    let target = Target("C0ACCESS01".into());
    let since = SystemTime::now();
    let v = view("req-timeout");
    sim.set_response_delay(Duration::from_millis(800));
    let impatient =
        SlackChat::with_options(&sim.base_url(), Secret::new(SLACK_TOKEN), impatient()).unwrap();
    let e = impatient
        .post(&target, Content::Card(&v))
        .await
        .unwrap_err();
    assert!(e.is_transient() && e.maybe_applied, "{e:?}");
    assert!(e.message.contains("no answer within"), "{}", e.message);
    sim.clear_faults();
    sim.wait_for_calls(
        |c| c.endpoint == "chat.postMessage",
        1,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let found = chat
        .find_posted(Place::Target(&target), &Content::Card(&v).marker(), since)
        .await
        .unwrap();
    assert_eq!(found.map(|m| m.channel_id), Some("C0ACCESS01".to_string()));
    assert_eq!(sim.messages_in("C0ACCESS01").len(), 1);
}

#[tokio::test]
async fn slack_hostile_text_is_accepted_and_inert() {
    let sim = slack_sim(SlackSimConfig::default()).await;
    let chat = slack(&sim);
    let v = hostile_view("req-hostile");
    let target = Target("C0ACCESS01".into());
    let card = chat
        .post(&target, Content::Card(&v))
        .await
        .expect("within Block Kit limits");
    chat.update(&card, Content::Card(&v)).await.unwrap();
    chat.reply(&card, Content::Review(&v, 199)).await.unwrap();
    chat.post(&target, Content::RequesterNotice(&v))
        .await
        .unwrap();
    for m in sim.messages_in("C0ACCESS01") {
        for t in slack_texts(&m) {
            assert!(
                !t.contains('<') && !t.contains('>'),
                "control sequence survived: {}",
                &t[..t.len().min(200)]
            );
            assert!(!t.contains("```code```"));
            assert!(t.chars().count() <= 3000);
        }
    }
}

/// Slack without the history scopes (a tiny stand-in: the simulator grants every scope).
#[tokio::test]
async fn slack_missing_history_scopes_are_named() {
    use axum::extract::Path;
    use axum::routing::any;
    async fn api(Path(method): Path<String>) -> axum::Json<Value> {
        axum::Json(match method.as_str() {
            "auth.test" => {
                serde_json::json!({"ok": true, "user": "teleport", "user_id": "U1", "bot_id": "B1", "team": "T"})
            }
            _ => {
                serde_json::json!({"ok": false, "error": "missing_scope", "needed": "channels:history", "provided": "chat:write"})
            }
        })
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            axum::Router::new().route("/api/{method}", any(api)),
        )
        .await
    });
    let chat =
        SlackChat::with_options(&format!("http://{addr}/api/"), Secret::new("t"), opts()).unwrap();
    let v = view("req-scope");
    let e = chat
        .find_posted(
            Place::Target(&Target("C0ACCESS01".into())),
            &Content::Card(&v).marker(),
            SystemTime::now(),
        )
        .await
        .unwrap_err();
    assert_eq!(kind(&e), &ErrorKind::Permanent);
    assert!(e.message.starts_with("exactly-once delivery after a crash needs the Slack scopes channels:history, groups:history, im:history"), "{}", e.message);
}

// ---------------------------------------------------------------- Discord

const DISCORD_TOKEN: &str = "discord-test";
const CHANNEL: &str = "1300000000000000001";
const HIDDEN: &str = "1300000000000000002";
const ALICE_ID: &str = "1200000000000000001";

async fn discord_sim(cfg: DiscordSimConfig) -> DiscordSim {
    DiscordSim::start(DiscordSimConfig {
        tokens: vec![DISCORD_TOKEN.into()],
        ..cfg
            .with_user(SimUser::new(ALICE_ID, "alice", "alice@example.com"))
            .with_channel(SimChannel::new(CHANNEL, "access-requests"))
            .with_channel(SimChannel::new(HIDDEN, "secret").without_bot())
    })
    .await
}

fn discord(sim: &DiscordSim) -> DiscordChat {
    let users = BTreeMap::from([("alice@example.com".to_string(), ALICE_ID.to_string())]);
    DiscordChat::with_options(&sim.base_url(), Secret::new(DISCORD_TOKEN), users, opts()).unwrap()
}

#[tokio::test]
async fn discord_post_update_and_find_again() {
    let sim = discord_sim(DiscordSimConfig::default()).await;
    let chat = discord(&sim);
    assert!(
        chat.health_check()
            .await
            .unwrap()
            .starts_with("Discord bot @teleport")
    );
    let caps = chat.capabilities();
    assert!(!caps.threads && caps.reviews_on_card);
    let since = SystemTime::now();

    let target = chat.resolve(CHANNEL).await.unwrap();
    let e = chat.resolve("#access-requests").await.unwrap_err();
    assert_eq!(kind(&e), &ErrorKind::Permanent);
    assert!(
        e.message.contains("Discord needs channel IDs") && e.message.contains("[discord.users]"),
        "{}",
        e.message
    );

    let mut v = view("req-d1");
    let card = chat.post(&target, Content::Card(&v)).await.unwrap();
    let stored = sim.message(&card.message_id).unwrap();
    assert_eq!(
        stored.allowed_mentions,
        Some(serde_json::json!({"parse": []}))
    );
    assert!(stored.nonce.is_some());
    assert!(stored.content.contains("**Status**: ⏳ PENDING"));

    v.reviews = (0..12)
        .map(|i| review(&format!("r{i}"), RequestState::Approved, "ok"))
        .collect();
    v.status = Status::Approved;
    chat.update(&card, Content::Card(&v)).await.unwrap();
    let stored = sim.message(&card.message_id).unwrap();
    assert_eq!(stored.embeds.len(), 10);
    assert_eq!(stored.embeds[0]["title"], "3 earlier reviews are not shown");
    assert!(stored.content.contains("✅ APPROVED"));

    let marker = Content::Card(&v).marker();
    assert_eq!(
        chat.find_posted(Place::Target(&target), &marker, since)
            .await
            .unwrap(),
        Some(card.clone())
    );
    let notice = Content::RequesterNotice(&v).marker();
    assert_eq!(
        chat.find_posted(Place::Target(&target), &notice, since)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        kind(&chat.reply(&card, Content::Review(&v, 0)).await.unwrap_err()),
        &ErrorKind::Permanent
    );
    assert_eq!(
        kind(&chat.react(&card, Reaction::Approved).await.unwrap_err()),
        &ErrorKind::Permanent
    );
}

#[tokio::test]
async fn discord_requesters_get_dms_through_the_user_map() {
    let sim = discord_sim(DiscordSimConfig::default()).await;
    let chat = discord(&sim);
    let dm = chat
        .requester_target("alice@example.com")
        .await
        .unwrap()
        .expect("mapped user");
    assert_eq!(Some(dm.0.clone()), sim.dm_channel_of(ALICE_ID));
    assert_eq!(
        chat.requester_target("alice@example.com").await.unwrap(),
        Some(dm.clone())
    );
    assert_eq!(
        sim.calls_to("POST /users/@me/channels").len(),
        1,
        "DM channels are cached"
    );
    assert_eq!(
        chat.requester_target("bob@example.com").await.unwrap(),
        None
    );
    let mut v = view("req-d2");
    v.status = Status::Denied;
    let sent = chat.post(&dm, Content::RequesterNotice(&v)).await.unwrap();
    assert!(
        sim.message(&sent.message_id)
            .unwrap()
            .content
            .starts_with("Your access request req-d2 for roles `editor` is now ❌ DENIED.")
    );
}

#[tokio::test]
async fn discord_nonce_keeps_retried_posts_single() {
    let sim = discord_sim(DiscordSimConfig::default()).await;
    let chat = discord(&sim);
    let target = Target(CHANNEL.into());
    let v = view("req-d3");
    sim.set_response_delay(Duration::from_millis(800));
    let users = BTreeMap::new();
    let impatient = DiscordChat::with_options(
        &sim.base_url(),
        Secret::new(DISCORD_TOKEN),
        users,
        impatient(),
    )
    .unwrap();
    let e = impatient
        .post(&target, Content::Card(&v))
        .await
        .unwrap_err();
    assert!(e.is_transient() && e.maybe_applied, "{e:?}");
    sim.clear_faults();
    let posted = chat.post(&target, Content::Card(&v)).await.unwrap();
    let creates = sim.calls_to("POST /channels/{channel_id}/messages");
    assert!(
        creates.len() >= 3,
        "timed-out posts were retried: {}",
        creates.len()
    );
    assert_eq!(
        sim.messages_in(CHANNEL).len(),
        1,
        "Discord dropped the repeats"
    );
    assert_eq!(sim.messages_in(CHANNEL)[0].id, posted.message_id);

    sim.fail_next(2, 502);
    chat.post(&target, Content::RequesterNotice(&v))
        .await
        .expect("gateway errors are retried");
    assert_eq!(sim.messages_in(CHANNEL).len(), 2);
}

#[tokio::test]
async fn discord_buckets_are_honoured_before_a_429() {
    let route = "POST /channels/{channel_id}/messages";
    let cfg = DiscordSimConfig::default()
        .with_route_limit(route, RateWindow::new(2, Duration::from_millis(300)));
    let sim = discord_sim(cfg).await;
    let chat = discord(&sim);
    let target = Target(CHANNEL.into());
    let views: Vec<RequestView> = (0..6).map(|i| view(&format!("seq-{i}"))).collect();
    for v in &views {
        chat.post(&target, Content::Card(v)).await.unwrap();
    }
    assert!(
        !statuses(&sim.calls(), route).contains(&429),
        "sequential posts never hit the limit"
    );

    let views: Vec<RequestView> = (0..6).map(|i| view(&format!("burst-{i}"))).collect();
    let results = join_all(views.iter().map(|v| chat.post(&target, Content::Card(v)))).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(sim.messages_in(CHANNEL).len(), 12);
}

#[tokio::test]
async fn discord_errors_say_how_to_fix_them() {
    let sim = discord_sim(DiscordSimConfig::default()).await;
    let chat = discord(&sim);
    let v = view("req-d4");
    let e = chat
        .post(&Target(HIDDEN.into()), Content::Card(&v))
        .await
        .unwrap_err();
    assert!(
        e.message.starts_with(&format!(
            "the bot lacks access to channel {HIDDEN}: give it View Channel and Send Messages"
        )),
        "{}",
        e.message
    );
    let e = chat
        .post(&Target("1399999999999999999".into()), Content::Card(&v))
        .await
        .unwrap_err();
    assert_eq!(kind(&e), &ErrorKind::Permanent);
    assert!(e.message.contains("does not exist"), "{}", e.message);
    let gone = MessageRef {
        channel_id: CHANNEL.into(),
        message_id: "1300000000000000099".into(),
    };
    assert_eq!(
        kind(&chat.update(&gone, Content::Card(&v)).await.unwrap_err()),
        &ErrorKind::Gone
    );

    let bad = DiscordChat::with_options(
        &sim.base_url(),
        Secret::new("wrong"),
        BTreeMap::new(),
        opts(),
    )
    .unwrap();
    let e = bad.health_check().await.unwrap_err();
    assert!(
        e.message.starts_with("the Discord token was rejected"),
        "{}",
        e.message
    );
    assert!(!e.message.contains("wrong"));
}

#[tokio::test]
async fn discord_hostile_text_is_accepted_and_inert() {
    let sim = discord_sim(DiscordSimConfig::default()).await;
    let chat = discord(&sim);
    let v = hostile_view("req-d5");
    let target = Target(CHANNEL.into());
    let card = chat
        .post(&target, Content::Card(&v))
        .await
        .expect("within Discord limits");
    chat.update(&card, Content::Card(&v))
        .await
        .expect("10 embeds within 6000 characters");
    chat.post(&target, Content::RequesterNotice(&v))
        .await
        .unwrap();
    for m in sim.messages_in(CHANNEL) {
        assert!(m.content.chars().count() <= 2000);
        assert_no_live_at(&m.content);
        assert!(m.embeds.len() <= 10);
        for e in &m.embeds {
            assert_no_live_at(&e.to_string());
        }
        assert_eq!(m.allowed_mentions, Some(serde_json::json!({"parse": []})));
    }
}

// ---------------------------------------------------------------- Mattermost

const MM_TOKEN: &str = "mm-test";
const MM_CHANNEL: &str = "alertschannel0000000000000";

async fn mattermost_sim(cfg: MattermostSimConfig) -> MattermostSim {
    MattermostSim::start(MattermostSimConfig {
        tokens: vec![MM_TOKEN.into()],
        ..cfg
            .with_user(SimUser::new(
                "alice00000000000000000000a",
                "alice",
                "alice@example.com",
            ))
            .with_channel(SimChannel::new(MM_CHANNEL, "alerts").in_team("eng"))
            .with_channel(
                SimChannel::new("closedchannel0000000000000", "closed")
                    .in_team("eng")
                    .without_bot(),
            )
    })
    .await
}

fn mattermost(sim: &MattermostSim) -> MattermostChat {
    MattermostChat::with_options(&sim.base_url(), Secret::new(MM_TOKEN), opts()).unwrap()
}

#[tokio::test]
async fn mattermost_post_update_reply_and_find_again() {
    let sim = mattermost_sim(MattermostSimConfig::default()).await;
    let chat = mattermost(&sim);
    assert!(
        chat.health_check()
            .await
            .unwrap()
            .starts_with("Mattermost user @teleport")
    );
    let since = SystemTime::now();
    let target = chat.resolve("eng/alerts").await.unwrap();
    assert_eq!(target, Target(MM_CHANNEL.into()));
    let e = chat.resolve("#alerts").await.unwrap_err();
    assert!(
        e.message.contains("must be an email or team/channel"),
        "{}",
        e.message
    );
    let e = chat.resolve("eng/nope").await.unwrap_err();
    assert_eq!(kind(&e), &ErrorKind::Permanent);
    assert!(
        e.message
            .contains("add the bot to the team and the channel"),
        "{}",
        e.message
    );

    let mut v = view("req-m1");
    let card = chat.post(&target, Content::Card(&v)).await.unwrap();
    let stored = sim.post(&card.message_id).unwrap();
    assert_eq!(stored.props["teleport_request_id"], "req-m1");
    assert_eq!(stored.props["teleport_kind"], "card");
    v.reviews.push(review("bob", RequestState::Denied, "no"));
    v.status = Status::Denied;
    chat.update(&card, Content::Card(&v)).await.unwrap();
    assert!(
        sim.post(&card.message_id)
            .unwrap()
            .message
            .contains("❌ DENIED")
    );
    let reply = chat.reply(&card, Content::Review(&v, 0)).await.unwrap();
    assert_eq!(sim.replies(&card.message_id).len(), 1);

    assert_eq!(
        chat.find_posted(Place::Target(&target), &Content::Card(&v).marker(), since)
            .await
            .unwrap(),
        Some(card.clone())
    );
    assert_eq!(
        chat.find_posted(
            Place::Target(&target),
            &Content::RequesterNotice(&v).marker(),
            since
        )
        .await
        .unwrap(),
        None
    );
    assert_eq!(
        chat.find_posted(
            Place::Thread(&card),
            &Content::Review(&v, 0).marker(),
            since
        )
        .await
        .unwrap(),
        Some(reply)
    );
    assert_eq!(
        kind(&chat.react(&card, Reaction::Denied).await.unwrap_err()),
        &ErrorKind::Permanent
    );
    let gone = MessageRef {
        channel_id: MM_CHANNEL.into(),
        message_id: "missingpost000000000000000".into(),
    };
    assert_eq!(
        kind(&chat.update(&gone, Content::Card(&v)).await.unwrap_err()),
        &ErrorKind::Gone
    );
    assert_eq!(
        kind(&chat.reply(&gone, Content::Review(&v, 0)).await.unwrap_err()),
        &ErrorKind::Gone
    );
}

#[tokio::test]
async fn mattermost_dms_by_email() {
    let sim = mattermost_sim(MattermostSimConfig::default()).await;
    let chat = mattermost(&sim);
    let dm = chat.resolve("alice@example.com").await.unwrap();
    assert_eq!(
        Some(dm.0.clone()),
        sim.direct_channel_with("alice00000000000000000000a")
    );
    assert_eq!(
        chat.requester_target("alice@example.com").await.unwrap(),
        Some(dm.clone())
    );
    assert_eq!(sim.calls_to("POST /channels/direct").len(), 1, "cached");
    assert_eq!(
        chat.requester_target("nobody@example.com").await.unwrap(),
        None
    );
    assert_eq!(
        kind(&chat.resolve("nobody@example.com").await.unwrap_err()),
        &ErrorKind::NotFound
    );
    let v = view("req-m2");
    chat.post(&dm, Content::RequesterNotice(&v)).await.unwrap();
    assert_eq!(sim.posts_in(&dm.0).len(), 1);
}

#[tokio::test]
async fn mattermost_rate_limits_server_errors_and_timeouts() {
    let cfg = MattermostSimConfig {
        rate_limit: Some(RateWindow::new(3, Duration::from_secs(1))),
        ..MattermostSimConfig::default()
    };
    let sim = mattermost_sim(cfg).await;
    let chat = mattermost(&sim);
    let target = Target(MM_CHANNEL.into());
    let views: Vec<RequestView> = (0..5).map(|i| view(&format!("mm-{i}"))).collect();
    for v in &views {
        chat.post(&target, Content::Card(v)).await.unwrap();
    }
    assert!(
        !sim.calls().iter().any(|c| c.status == 429),
        "X-Ratelimit-Remaining: 0 is honoured before a 429"
    );
    sim.set_rate_limit(None);

    sim.fail_next(2, 503);
    chat.post(&target, Content::RequesterNotice(&views[0]))
        .await
        .expect("503s are retried");

    sim.set_response_delay(Duration::from_millis(800));
    let impatient =
        MattermostChat::with_options(&sim.base_url(), Secret::new(MM_TOKEN), impatient()).unwrap();
    let e = impatient
        .post(&target, Content::RequesterNotice(&views[1]))
        .await
        .unwrap_err();
    assert!(e.is_transient() && e.maybe_applied);
    sim.clear_faults();
    assert_eq!(
        sim.posts_in(MM_CHANNEL).len(),
        7,
        "pending_post_id kept the retried post single"
    );
}

#[tokio::test]
async fn mattermost_errors_and_hostile_text() {
    let sim = mattermost_sim(MattermostSimConfig::default()).await;
    let chat = mattermost(&sim);
    let v = hostile_view("req-m3");
    let e = chat
        .post(
            &Target("closedchannel0000000000000".into()),
            Content::Card(&v),
        )
        .await
        .unwrap_err();
    assert!(
        e.message
            .contains("add the bot to the team and the channel"),
        "{}",
        e.message
    );
    let bad = MattermostChat::with_options(&sim.base_url(), Secret::new("wrong"), opts()).unwrap();
    let e = bad.health_check().await.unwrap_err();
    assert!(
        e.message.starts_with("the Mattermost token was rejected"),
        "{}",
        e.message
    );

    let target = Target(MM_CHANNEL.into());
    let card = chat
        .post(&target, Content::Card(&v))
        .await
        .expect("within the post limit");
    chat.reply(&card, Content::Review(&v, 3)).await.unwrap();
    for p in sim.posts_in(MM_CHANNEL) {
        assert!(p.message.chars().count() <= 16_383);
        assert_no_live_at(&p.message);
    }
    let stored = sim.post(&card.message_id).unwrap().message;
    assert!(
        stored.contains("\\[x\\]\\(http://evil\\)"),
        "links in our own text are broken up"
    );
}

// ------------------------------- Discord's ban on invalid requests; busy channels

#[tokio::test]
async fn discord_a_rejected_token_is_not_sent_again() {
    // Five invalid answers ban the address here (Discord: 10,000 in 10
    // minutes); a client that kept using a dead token would earn the ban.
    let ban = RateWindow::new(5, Duration::from_secs(600));
    let sim = discord_sim(DiscordSimConfig::default().with_invalid_limit(ban, Duration::from_secs(600))).await;
    let chat = discord(&sim);
    chat.health_check().await.unwrap();
    sim.revoke_token(DISCORD_TOKEN);
    let target = Target(CHANNEL.into());
    let card = MessageRef { channel_id: CHANNEL.into(), message_id: "1300000000000000099".into() };
    for i in 0..10 {
        let v = view(&format!("dead-{i}"));
        let e = chat.post(&target, Content::Card(&v)).await.unwrap_err();
        assert_eq!(kind(&e), &ErrorKind::Permanent, "{e:?}");
        assert!(e.message.starts_with("the Discord token was rejected"), "{}", e.message);
        let e = chat.update(&card, Content::Card(&v)).await.unwrap_err();
        assert!(e.message.contains("check discord.token"), "{}", e.message);
    }
    assert!(chat.health_check().await.unwrap_err().message.contains("check discord.token"));
    let refused = sim.calls().iter().filter(|c| c.status == 401).count();
    assert_eq!(refused, 1, "one 401, then no call with the dead token");
    assert_eq!(sim.bans(), 0);
}

#[tokio::test]
async fn discord_a_ban_pauses_every_route_instead_of_retrying() {
    let sim = discord_sim(DiscordSimConfig::default()).await;
    let chat = discord(&sim);
    chat.health_check().await.unwrap();
    // Another client behind the same address used up the budget.
    sim.ban_for(Duration::from_secs(4));
    let before = sim.calls().len();
    let v = view("banned-1");
    let e = chat.post(&Target(CHANNEL.into()), Content::Card(&v)).await.unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    assert!(
        e.retry_after().is_some_and(|w| w >= Duration::from_secs(30)),
        "a ban names no end: the caller stays away long ({:?})",
        e.retry_after()
    );
    let e = chat.health_check().await.unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    assert_eq!(sim.calls().len() - before, 1, "one call met the ban; the next waited without asking");
    assert!(sim.messages_in(CHANNEL).is_empty());
}

#[tokio::test]
async fn discord_forbidden_channels_are_asked_once_per_post() {
    let sim = discord_sim(DiscordSimConfig::default()).await;
    let chat = discord(&sim);
    for i in 0..3 {
        let v = view(&format!("hidden-{i}"));
        let e = chat.post(&Target(HIDDEN.into()), Content::Card(&v)).await.unwrap_err();
        assert_eq!(kind(&e), &ErrorKind::Permanent, "{e:?}");
    }
    assert_eq!(
        statuses(&sim.calls(), "POST /channels/{channel_id}/messages"),
        [403, 403, 403],
        "a refusal is not retried"
    );
    assert_eq!(sim.invalid_requests(), 3);
}

#[tokio::test]
async fn mattermost_finds_its_post_in_a_channel_busier_than_since_returns() {
    let sim = mattermost_sim(MattermostSimConfig::default()).await;
    let chat = mattermost(&sim);
    let target = Target(MM_CHANNEL.into());
    let alice = "alice00000000000000000000a";
    let since = SystemTime::now();
    // More chatter than a `since` query returns, then our card, then more.
    for i in 0..1001 {
        sim.post_as(alice, MM_CHANNEL, &format!("chatter {i}"));
    }
    let v = view("busy-1");
    let card = chat.post(&target, Content::Card(&v)).await.unwrap();
    for i in 0..30 {
        sim.post_as(alice, MM_CHANNEL, &format!("later {i}"));
    }
    assert_eq!(
        chat.find_posted(Place::Target(&target), &Content::Card(&v).marker(), since).await.unwrap(),
        Some(card),
        "found, so an uncertain post is not made twice"
    );
    let other = view("never-posted");
    assert_eq!(chat.find_posted(Place::Target(&target), &Content::Card(&other).marker(), since).await.unwrap(), None);
}

#[tokio::test]
async fn mattermost_lookups_in_one_channel_share_channel_reads() {
    let sim = mattermost_sim(MattermostSimConfig::default()).await;
    let chat = mattermost(&sim);
    // As at start: the health check learns who the bot is (else each
    // lookup would ask first, and arrive at the shared read at its own time).
    chat.health_check().await.unwrap();
    let reads = || sim.calls().iter().filter(|c| c.endpoint == "GET /channels/{channel_id}/posts").count();
    lookups_share_reads(chat, Target(MM_CHANNEL.into()), || sim.clear_calls(), reads).await;
}
