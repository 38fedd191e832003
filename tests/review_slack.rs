//! Approve and deny from Slack, end to end through the whole plugin: cards
//! posted with buttons, a click in the Slack simulator delivered over Socket
//! Mode or to the signed Request URL, the review desk submitting on behalf
//! of the mapped Teleport user, the answer shown to the clicker alone, and
//! the card losing its buttons once resolved. Forged or replayed callbacks
//! get 401 and change nothing; redeliveries and drops make one review.

mod common;

use std::time::Duration;

use teleport_plugin::app::{Extras, Running, launch};
use teleport_plugin_sim::access::{self, AccessRequestExt};
use teleport_plugin_sim::chat::slack::{ClickVia, Forgery, SlackUserFlags};
use teleport_plugin_sim::chat::{SimChannel, SimUser, SlackSim, SlackSimConfig};

use common::{Env, eventually};

const CHANNEL: &str = "C0ACCESS01";
const ALICE: &str = "U0ALICE001";
const BOB: &str = "U0BOB00001";
const CAROL: &str = "U0CAROL001";
const MALLORY: &str = "U0MALLORY1";
const SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

#[derive(Clone, Copy, PartialEq)]
enum Transport {
    SocketMode,
    Http,
}

struct Setup {
    env: Env,
    slack: SlackSim,
    running: Running,
}

async fn setup(transport: Transport) -> Setup {
    setup_with(transport, "").await
}

/// With `review_extra` appended to the `[review]` table (Socket Mode only).
async fn setup_with(transport: Transport, review_extra: &str) -> Setup {
    let env = Env::new().await;
    let sim = &env.sim;
    common::review_rules(sim, &[("alice", "slack_user_id", ALICE), ("bob", "slack_user_id", BOB), ("carol", "slack_user_id", CAROL)]);
    // A second user with bob's ID would make him ambiguous; mallory has none.
    let slack = SlackSim::start(
        SlackSimConfig::default()
            .with_user(SimUser::new(ALICE, "alice", "alice@example.com"))
            .with_user(SimUser::new(BOB, "bob", "bob@example.com"))
            .with_user(SimUser::new(CAROL, "carol", "carol@example.com"))
            .with_user(SimUser::new(MALLORY, "mallory", "mallory@example.com"))
            .with_channel(SimChannel::new(CHANNEL, "access")),
    )
    .await;
    let port = common::free_port();
    let review = match transport {
        Transport::SocketMode => format!("[review]\nenabled = true\napp_token = \"xapp-sim-app-token\"\n{review_extra}"),
        Transport::Http => String::new(),
    };
    let secret = match transport {
        Transport::SocketMode => String::new(),
        Transport::Http => format!("signing_secret = \"{SIGNING_SECRET}\"\n"),
    };
    let text = common::with_callbacks(
        &env.config_text(&format!(
            "[slack]\ntoken = \"xoxb-sim-token\"\napi_url = \"{}\"\n{secret}[role_to_recipients]\n\"*\" = \"{CHANNEL}\"\n{review}",
            slack.base_url()
        )),
        port,
    );
    let cfg = teleport_plugin::config::Config::parse(&text, teleport_plugin::config::Format::Toml, "t.toml").unwrap();
    let chats = teleport_plugin::cli::build_chats(&cfg).unwrap();
    let running = launch(&cfg, chats, Extras::default()).await.unwrap();
    assert!(running.ready(Duration::from_secs(10)).await);
    match transport {
        Transport::SocketMode => {
            assert!(eventually(Duration::from_secs(10), || slack.socket_connected()).await, "Socket Mode connects");
        }
        Transport::Http => {
            slack.set_request_url(&format!("http://127.0.0.1:{port}/slack/interactions"), SIGNING_SECRET);
        }
    }
    Setup { env, slack, running }
}

use teleport_plugin_sim::chat::ChatSim;

/// The ts of request `id`'s card.
async fn card(slack: &SlackSim, id: &str) -> String {
    let mut found = None;
    assert!(
        eventually(Duration::from_secs(10), || {
            found = slack
                .messages_in(CHANNEL)
                .into_iter()
                .find(|m| {
                    m.thread_ts.is_none()
                        && m.metadata.as_ref().is_some_and(|md| md["event_payload"]["request_id"] == id && md["event_payload"]["kind"] == "card")
                });
            found.is_some()
        })
        .await,
        "no card for {id}"
    );
    found.unwrap().ts
}

fn has_buttons(slack: &SlackSim, ts: &str) -> bool {
    let m = slack.message(CHANNEL, ts).unwrap();
    m.blocks.as_ref().and_then(|b| b.as_array()).is_some_and(|b| b.iter().any(|b| b["block_id"] == "review_block"))
}

fn reviews(env: &Env, id: &str) -> Vec<teleport_plugin::pb::types::AccessReview> {
    env.sim.get_request(id).unwrap().spec.unwrap().reviews
}

async fn told(slack: &SlackSim, user: &str, n: usize) -> Vec<String> {
    assert!(
        eventually(Duration::from_secs(10), || slack.ephemerals(user).len() >= n).await,
        "{user} was not told: {:?}",
        slack.ephemerals(user)
    );
    slack.ephemerals(user)
}

async fn approve_flow(transport: Transport) {
    let s = setup(transport).await;
    let r = s.env.sim.request("alice", &["editor"], "hotfix");
    let ts = card(&s.slack, r.id()).await;
    assert!(has_buttons(&s.slack, &ts), "a pending card carries the buttons");
    let via = s.slack.click(BOB, CHANNEL, &ts, "approve_button").await.unwrap();
    match (transport, via) {
        (Transport::SocketMode, ClickVia::Socket { .. }) => {}
        (Transport::Http, ClickVia::Http { status }) => assert_eq!(status, 200),
        (_, other) => panic!("delivered the wrong way: {other:?}"),
    }
    let text = told(&s.slack, BOB, 1).await;
    assert!(text[0].contains("now approved"), "{text:?}");
    let got = reviews(&s.env, r.id());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].author, "bob");
    assert!(got[0].submitted_on_behalf_of_author);
    assert_eq!(got[0].reason, "Reviewed in Slack by @bob");
    for other in [ALICE, CAROL, MALLORY] {
        assert!(s.slack.ephemerals(other).is_empty(), "only the clicker is told");
    }
    assert!(eventually(Duration::from_secs(10), || !has_buttons(&s.slack, &ts)).await, "buttons gone once resolved");
    // A click on the stale card cannot happen: the button is gone.
    assert!(s.slack.click(CAROL, CHANNEL, &ts, "approve_button").await.is_err());
    if transport == Transport::SocketMode {
        let acks = s.slack.acks();
        assert!(!acks.is_empty() && acks.iter().all(|a| a.latency < Duration::from_secs(3)), "{acks:?}");
    }
    let m = teleport_plugin::metrics::encode(&s.running.registry);
    assert!(m.contains("teleport_plugin_reviews_submitted_total{chat=\"slack\"} 1"), "{m}");
    if transport == Transport::SocketMode {
        assert!(m.contains("teleport_plugin_click_connection_up{chat=\"slack\"} 1"), "{m}");
    }
}

#[tokio::test]
async fn socket_mode_click_approves_on_behalf() {
    approve_flow(Transport::SocketMode).await;
}

#[tokio::test]
async fn http_click_approves_on_behalf() {
    approve_flow(Transport::Http).await;
}

#[tokio::test]
async fn deny_and_refusals_reach_the_clicker() {
    let s = setup(Transport::SocketMode).await;
    let r = s.env.sim.request("alice", &["editor"], "hotfix");
    let ts = card(&s.slack, r.id()).await;
    s.slack.click(ALICE, CHANNEL, &ts, "approve_button").await.unwrap();
    assert!(told(&s.slack, ALICE, 1).await[0].contains("your own access request"));
    s.slack.click(MALLORY, CHANNEL, &ts, "deny_button").await.unwrap();
    assert!(told(&s.slack, MALLORY, 1).await[0].contains("not linked to a Teleport user"));
    assert!(reviews(&s.env, r.id()).is_empty());
    s.slack.click(CAROL, CHANNEL, &ts, "deny_button").await.unwrap();
    assert!(told(&s.slack, CAROL, 1).await[0].contains("now denied"));
    assert!(eventually(Duration::from_secs(10), || !has_buttons(&s.slack, &ts)).await);
}

#[tokio::test]
async fn a_multi_approval_card_says_what_is_left() {
    let s = setup(Transport::SocketMode).await;
    let req = access::with_thresholds(access::new_request("alice", &["editor"]), &[("two", "", 2, 1)], &[("editor", &[&[0]])]);
    let r = s.env.sim.create_request(req);
    let ts = card(&s.slack, r.id()).await;
    s.slack.click(BOB, CHANNEL, &ts, "approve_button").await.unwrap();
    assert!(told(&s.slack, BOB, 1).await[0].contains("1 more approval needed"));
    let card_says = |s: &Setup| serde_json::to_string(&s.slack.message(CHANNEL, &ts).unwrap().blocks).unwrap();
    assert!(eventually(Duration::from_secs(10), || card_says(&s).contains("1 more approval is needed")).await, "{}", card_says(&s));
    assert!(has_buttons(&s.slack, &ts), "still pending: still clickable");
    s.slack.click(CAROL, CHANNEL, &ts, "approve_button").await.unwrap();
    assert!(told(&s.slack, CAROL, 1).await[0].contains("now approved"));
}

#[tokio::test]
async fn long_term_cards_have_no_buttons() {
    let s = setup(Transport::SocketMode).await;
    let mut lt = access::new_request("alice", &["editor"]);
    lt.spec_mut().request_kind = teleport_plugin::pb::types::AccessRequestKind::LongTerm as i32;
    let lt = s.env.sim.create_request(lt);
    let ts = card(&s.slack, lt.id()).await;
    assert!(!has_buttons(&s.slack, &ts));
    assert!(s.slack.click(BOB, CHANNEL, &ts, "approve_button").await.is_err());
}

#[tokio::test]
async fn email_matching_needs_a_confirmed_email() {
    let s = setup_with(Transport::SocketMode, "allow_email_username_match = true\n").await;
    // mallory has no trait; a Teleport user is named by her email.
    s.env.sim.put_user("mallory@example.com", &["reviewer"], &[]);
    let r = s.env.sim.request("alice", &["editor"], "hotfix");
    let ts = card(&s.slack, r.id()).await;
    s.slack.set_user_flags(MALLORY, SlackUserFlags { email_confirmed: false, ..Default::default() });
    s.slack.click(MALLORY, CHANNEL, &ts, "approve_button").await.unwrap();
    assert!(told(&s.slack, MALLORY, 1).await[0].contains("no verified email"), "{:?}", s.slack.ephemerals(MALLORY));
    assert!(reviews(&s.env, r.id()).is_empty());
    s.slack.set_user_flags(MALLORY, SlackUserFlags::default());
    s.slack.click(MALLORY, CHANNEL, &ts, "deny_button").await.unwrap();
    assert!(told(&s.slack, MALLORY, 2).await[1].contains("now denied"));
    assert_eq!(reviews(&s.env, r.id())[0].author, "mallory@example.com");
}

#[tokio::test]
async fn a_redelivered_envelope_and_a_double_click_make_one_review() {
    let s = setup(Transport::SocketMode).await;
    let r = s.env.sim.request("alice", &["editor"], "hotfix");
    let ts = card(&s.slack, r.id()).await;
    // The first ack is lost: Slack delivers the envelope again.
    s.slack.set_socket_mode_config(|c| c.redeliver_after = Duration::from_millis(300));
    s.slack.lose_next_acks(1);
    s.slack.click(BOB, CHANNEL, &ts, "approve_button").await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || s.slack.envelopes().iter().any(|e| e.deliveries.len() >= 2)).await,
        "the envelope was delivered again"
    );
    told(&s.slack, BOB, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(reviews(&s.env, r.id()).len(), 1);
    assert_eq!(s.env.sim.calls("SubmitAccessReview"), 1);
}

#[tokio::test]
async fn a_socket_dropped_mid_click_reconnects_and_reviews_once() {
    let s = setup(Transport::SocketMode).await;
    let req = access::with_thresholds(access::new_request("alice", &["editor"]), &[("two", "", 2, 1)], &[("editor", &[&[0]])]);
    let r = s.env.sim.create_request(req);
    let ts = card(&s.slack, r.id()).await;
    s.slack.drop_socket_after_next_envelope();
    s.slack.click(BOB, CHANNEL, &ts, "approve_button").await.unwrap();
    told(&s.slack, BOB, 1).await;
    assert!(eventually(Duration::from_secs(15), || s.slack.socket_connections().len() >= 2 && s.slack.socket_connected()).await, "reconnected");
    s.slack.click(CAROL, CHANNEL, &ts, "approve_button").await.unwrap();
    assert!(told(&s.slack, CAROL, 1).await[0].contains("now approved"));
    let authors: Vec<String> = reviews(&s.env, r.id()).into_iter().map(|r| r.author).collect();
    assert_eq!(authors, ["bob", "carol"]);
    // Disconnect with refresh_requested: a fresh connection, clicks go on.
    let before = s.slack.socket_connections().len();
    s.slack.socket_disconnect("refresh_requested");
    assert!(eventually(Duration::from_secs(15), || s.slack.socket_connections().len() > before && s.slack.socket_connected()).await);
}

#[tokio::test]
async fn a_revoked_app_token_makes_review_unavailable_not_notifications() {
    let s = setup(Transport::SocketMode).await;
    s.slack.revoke_app_token("xapp-sim-app-token");
    s.slack.drop_sockets();
    assert!(
        eventually(Duration::from_secs(15), || s.running.health.ready().body().contains("review from chat unavailable")).await,
        "{}",
        s.running.health.ready().body()
    );
    let body = s.running.health.ready().body();
    assert!(body.contains("review.app_token"), "the reason names the key: {body}");
    assert!(!body.contains("xapp-sim-app-token"), "no token in readiness");
    // Cards are still posted.
    let r = s.env.sim.request("alice", &["editor"], "still notified");
    card(&s.slack, r.id()).await;
}

#[tokio::test]
async fn forged_and_replayed_callbacks_get_401_and_change_nothing() {
    let s = setup(Transport::Http).await;
    let r = s.env.sim.request("alice", &["editor"], "hotfix");
    let other = s.env.sim.request("alice", &["editor"], "other");
    let ts = card(&s.slack, r.id()).await;
    card(&s.slack, other.id()).await;
    for forgery in [
        Forgery::BadSignature,
        Forgery::NoSignature,
        Forgery::NoTimestamp,
        Forgery::StaleTimestamp,
        Forgery::AlteredRequestId(other.id().to_string()),
        Forgery::ForeignTeam("T0EVIL0001".into()),
    ] {
        let what = format!("{forgery:?}");
        let status = s.slack.click_http(BOB, CHANNEL, &ts, "approve_button", Some(forgery)).await.unwrap();
        assert_eq!(status, 401, "{what}");
    }
    // A genuine delivery, then the same bytes again.
    assert_eq!(s.slack.click_http(BOB, CHANNEL, &ts, "deny_button", None).await.unwrap(), 200);
    assert_eq!(s.slack.replay_last_http().await.unwrap(), 401, "a replay");
    told(&s.slack, BOB, 1).await;
    assert_eq!(reviews(&s.env, r.id()).len(), 1, "only the genuine click counted");
    assert!(reviews(&s.env, other.id()).is_empty());
    let m = teleport_plugin::metrics::encode(&s.running.registry);
    let rejected: u64 = m
        .lines()
        .filter(|l| l.starts_with("teleport_plugin_callback_rejections_total{chat=\"slack\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(rejected, 7, "{m}");
}
