//! The Slack click transports against the Slack simulator: the real Socket
//! Mode client and the real HTTP Request URL endpoint, with a small desk
//! task that answers every click the way the review desk would (it records
//! what reached it, and when). Also the simulator's own Socket Mode rules,
//! seen from a raw WebSocket client.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use teleport_plugin::metrics::ChatReason;
use serde_json::{Value, json};
use teleport_plugin::chat::click::{Click, ClickSender, Decision, Outcome, PendingClick, SubmittedState};
use teleport_plugin::chat::http::ClientOptions;
use teleport_plugin::chat::slack::SlackChat;
use teleport_plugin::chat::slack::http_interactivity;
use teleport_plugin::chat::slack::socket_mode::{self, SocketOptions, SocketState};
use teleport_plugin::chat::{Chat, Content, MessageRef, RequestView, Status, Target};
use teleport_plugin::config::Secret;
use teleport_plugin::model::AccessRequest;
use teleport_plugin_sim::chat::{
    ChatSim, ClickError, ClickVia, Forgery, SimChannel, SimUser, SlackSim, SlackSimConfig, SlackUserFlags,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

const BOT_TOKEN: &str = "xoxb-sim-token";
const APP_TOKEN: &str = "xapp-sim-app-token";
const SIGNING_SECRET: &str = "sim-signing-secret";
const CHANNEL: &str = "C0ACCESS01";
const ALICE: &str = "U0ALICE001";
const BOB: &str = "U0BOB00001";
const WAIT: Duration = Duration::from_secs(10);

fn opts() -> ClientOptions {
    let _ = rustls::crypto::ring::default_provider().install_default();
    ClientOptions {
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(3),
        max_attempts: 3,
        call_budget: Duration::from_secs(5),
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        lookup_ttl: Duration::from_secs(60),
    }
}

/// Short timing so reconnects take milliseconds.
fn socket_opts() -> SocketOptions {
    SocketOptions {
        ping_interval: Duration::from_millis(200),
        read_timeout: Duration::from_millis(1200),
        connect_timeout: Duration::from_secs(2),
        hello_timeout: Duration::from_secs(2),
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        max_in_flight: 16,
        http: opts(),
    }
}

async fn sim() -> SlackSim {
    SlackSim::start(
        SlackSimConfig::default()
            .with_user(SimUser::new(ALICE, "alice", "alice@example.com"))
            .with_user(SimUser::new(BOB, "bob", "bob@example.com"))
            .with_channel(SimChannel::new(CHANNEL, "access-requests")),
    )
    .await
}

async fn chat(sim: &SlackSim) -> Arc<SlackChat> {
    let chat = SlackChat::with_options(&sim.base_url(), Secret::new(BOT_TOKEN), opts()).unwrap();
    chat.health_check().await.unwrap();
    Arc::new(chat)
}

fn view(id: &str, buttons: bool) -> RequestView {
    let r = AccessRequest::new_pending(id, "carol@example.com", vec!["editor".into()]);
    let mut v = RequestView::from_request(&r, "prod", None, BTreeMap::new(), Status::Pending);
    v.buttons = buttons;
    v
}

/// Posts a pending card with buttons for `id`.
async fn card(chat: &SlackChat, id: &str) -> MessageRef {
    chat.post(&Target(CHANNEL.into()), Content::Card(&view(id, true))).await.unwrap()
}

/// A click as the desk received it.
#[derive(Debug, Clone)]
struct Seen {
    click: Click,
    answered: Instant,
}

/// Answers every click with `outcome` after `delay`, recording it.
#[derive(Clone)]
struct Desk {
    tx: ClickSender,
    seen: Arc<Mutex<Vec<Seen>>>,
    count: watch::Receiver<usize>,
}

impl Desk {
    fn start(outcome: Outcome, delay: Duration) -> Self {
        let (tx, mut rx) = mpsc::channel::<PendingClick>(16);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (count_tx, count) = watch::channel(0);
        let record = seen.clone();
        tokio::spawn(async move {
            while let Some(p) = rx.recv().await {
                tokio::time::sleep(delay).await;
                let _ = p.answer.send(outcome.clone());
                let mut s = record.lock().unwrap();
                s.push(Seen { click: p.click, answered: Instant::now() });
                count_tx.send_replace(s.len());
            }
        });
        Self { tx, seen, count }
    }

    fn approving() -> Self {
        Self::start(approved(), Duration::ZERO)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    async fn wait(&self, n: usize) -> Vec<Seen> {
        let mut c = self.count.clone();
        tokio::time::timeout(WAIT, c.wait_for(|v| *v >= n))
            .await
            .unwrap_or_else(|_| panic!("{n} clicks did not reach the desk; it has {:?}", self.seen()))
            .unwrap();
        self.seen()
    }
}

fn approved() -> Outcome {
    Outcome::Submitted { decision: Decision::Approve, state: SubmittedState::Pending { approvals_needed: 1 } }
}

struct Socket {
    handle: JoinHandle<()>,
    state: watch::Receiver<SocketState>,
    stop: CancellationToken,
}

fn spawn_socket(sim: &SlackSim, token: &str, chat: &Arc<SlackChat>, desk: &Desk) -> Socket {
    let stop = CancellationToken::new();
    let (handle, state) =
        socket_mode::spawn_with(&sim.base_url(), Secret::new(token), chat.clone(), desk.tx.clone(), stop.clone(), socket_opts());
    Socket { handle, state, stop }
}

impl Socket {
    async fn wait(&mut self, pred: impl Fn(&SocketState) -> bool) -> SocketState {
        let found = match tokio::time::timeout(WAIT, self.state.wait_for(|s| pred(s))).await {
            Ok(Ok(s)) => Some(s.clone()),
            _ => None,
        };
        found.unwrap_or_else(|| panic!("socket state stayed {:?}", *self.state.borrow()))
    }

    async fn connected(&mut self) {
        self.wait(|s| *s == SocketState::Connected).await;
    }
}

async fn wait_sim(sim: &SlackSim, what: &str, pred: impl FnMut(&SlackSim) -> bool) {
    sim.wait_for(pred, WAIT).await.unwrap_or_else(|_| panic!("simulator: {what}"));
}

fn live_sockets(sim: &SlackSim) -> usize {
    sim.socket_connections().iter().filter(|c| c.closed_at.is_none()).count()
}

// ------------------------------------------------------------ Socket Mode

#[tokio::test]
async fn socket_mode_acks_first_then_shows_the_outcome_to_the_clicker_alone() {
    let sim = sim().await;
    let chat = chat(&sim).await;
    let card = card(&chat, "req-1").await;
    let desk = Desk::start(approved(), Duration::from_millis(300));
    let mut socket = spawn_socket(&sim, APP_TOKEN, &chat, &desk);
    socket.connected().await;
    assert_eq!(sim.calls_to("apps.connections.open").len(), 1);

    let via = sim.click(ALICE, CHANNEL, &card.message_id, "approve_button").await.unwrap();
    let ClickVia::Socket { envelope_id } = via else { panic!("{via:?}") };
    wait_sim(&sim, "the clicker was answered", |s| !s.ephemerals(ALICE).is_empty()).await;

    let seen = desk.seen();
    assert_eq!(seen.len(), 1);
    let click = &seen[0].click;
    assert_eq!((click.chat, click.user_id.as_str(), click.user_name.as_str()), ("slack", ALICE, "alice"));
    assert_eq!((click.request_id.as_str(), click.decision), ("req-1", Decision::Approve));
    assert_eq!(click.message.as_ref(), Some(&card));

    let acks = sim.acks();
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(acks[0].envelope_id, envelope_id);
    assert!(acks[0].latency < Duration::from_secs(3), "Slack wants the ack within 3 s: {:?}", acks[0].latency);
    assert!(acks[0].latency < Duration::from_millis(300), "the ack does not wait for the desk: {:?}", acks[0].latency);
    assert!(acks[0].at < seen[0].answered, "acked before the desk answered");

    assert_eq!(sim.ephemerals(ALICE), vec![approved().text("req-1")]);
    assert!(sim.ephemerals(BOB).is_empty(), "nobody else sees it");
    let posts = sim.response_posts();
    assert_eq!(posts.len(), 1);
    assert_eq!((posts[0].body["response_type"].as_str(), posts[0].body["replace_original"].as_bool()), (Some("ephemeral"), Some(false)));
    let stored = sim.message(CHANNEL, &card.message_id).unwrap();
    assert!(stored.history.is_empty(), "the card itself is left alone");
    assert_eq!(sim.envelopes()[0].deliveries.len(), 1, "acked in time: no redelivery");
    socket.stop.cancel();
}

#[tokio::test]
async fn a_redelivered_envelope_and_a_double_click_carry_one_dedupe_key() {
    let sim = sim().await;
    sim.set_socket_mode_config(|c| c.redeliver_after = Duration::from_millis(300));
    let chat = chat(&sim).await;
    let card = card(&chat, "req-2").await;
    let desk = Desk::approving();
    let mut socket = spawn_socket(&sim, APP_TOKEN, &chat, &desk);
    socket.connected().await;

    sim.lose_next_acks(1);
    sim.click(ALICE, CHANNEL, &card.message_id, "approve_button").await.unwrap();
    let seen = desk.wait(2).await;
    let env = &sim.envelopes()[0];
    assert_eq!(env.deliveries.iter().map(|d| d.retry_attempt).collect::<Vec<_>>(), vec![0, 1], "redelivered once");
    assert!(env.acked_at.is_some());
    assert_eq!(seen[0].click.dedupe_key, seen[1].click.dedupe_key, "the desk can tell it is the same click");

    sim.click(ALICE, CHANNEL, &card.message_id, "approve_button").await.unwrap();
    sim.click(ALICE, CHANNEL, &card.message_id, "deny_button").await.unwrap();
    sim.click(BOB, CHANNEL, &card.message_id, "approve_button").await.unwrap();
    let seen = desk.wait(5).await;
    let key = |i: usize| seen[i].click.dedupe_key.clone();
    assert_eq!(key(2), key(0), "a double click is the same click");
    assert_ne!(key(3), key(0), "Deny is another click");
    assert_ne!(key(4), key(0), "another user's click is another click");
    socket.stop.cancel();
}

#[tokio::test]
async fn disconnect_requests_get_a_fresh_connection_and_the_next_click_works() {
    let sim = sim().await;
    let chat = chat(&sim).await;
    let card = card(&chat, "req-3").await;
    let desk = Desk::approving();
    let mut socket = spawn_socket(&sim, APP_TOKEN, &chat, &desk);
    socket.connected().await;

    for (round, reason) in ["refresh_requested", "warning"].into_iter().enumerate() {
        sim.socket_disconnect(reason);
        let n = round + 2;
        wait_sim(&sim, "a new connection replaced the old one", |s| {
            s.socket_connections().len() == n && live_sockets(s) == 1 && s.socket_connected()
        })
        .await;
        assert_eq!(sim.calls_to("apps.connections.open").len(), n, "a fresh URL for every connection");
        sim.click(ALICE, CHANNEL, &card.message_id, "approve_button").await.unwrap();
        desk.wait(round + 1).await;
        wait_sim(&sim, "answered", |s| s.ephemerals(ALICE).len() == round + 1).await;
        let old = &sim.socket_connections()[round];
        assert_eq!(old.end.as_deref(), Some("closed by client"), "{reason}: the client closed the old socket");
    }
    assert_eq!(*socket.state.borrow(), SocketState::Connected);
    socket.stop.cancel();
}

#[tokio::test]
async fn a_socket_dropped_mid_click_is_replaced_and_the_click_still_lands() {
    let sim = sim().await;
    sim.set_socket_mode_config(|c| c.redeliver_after = Duration::from_millis(500));
    let chat = chat(&sim).await;
    let card = card(&chat, "req-4").await;
    let desk = Desk::approving();
    let mut socket = spawn_socket(&sim, APP_TOKEN, &chat, &desk);
    socket.connected().await;

    sim.drop_socket_after_next_envelope();
    sim.click(ALICE, CHANNEL, &card.message_id, "approve_button").await.unwrap();
    wait_sim(&sim, "reconnected", |s| s.socket_connections().len() >= 2 && s.socket_connected()).await;
    assert_eq!(sim.socket_connections()[0].end.as_deref(), Some("dropped"));
    let seen = desk.wait(1).await;
    assert_eq!(seen[0].click.request_id, "req-4");
    wait_sim(&sim, "the envelope was acknowledged", |s| s.envelopes()[0].acked_at.is_some()).await;
    wait_sim(&sim, "answered", |s| !s.ephemerals(ALICE).is_empty()).await;
    // Whether the first copy was read before the drop or not, every copy
    // that reached the desk is the same click.
    let seen = desk.seen();
    assert!(seen.iter().all(|s| s.click.dedupe_key == seen[0].click.dedupe_key));
    socket.stop.cancel();
}

#[tokio::test]
async fn a_half_open_socket_is_noticed_by_the_read_deadline() {
    let sim = sim().await;
    let chat = chat(&sim).await;
    let card = card(&chat, "req-5").await;
    let desk = Desk::approving();
    let mut socket = spawn_socket(&sim, APP_TOKEN, &chat, &desk);
    socket.connected().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(sim.socket_connections()[0].client_pings > 0, "the client pings");

    let frozen = Instant::now();
    sim.freeze_sockets();
    wait_sim(&sim, "a second connection", |s| s.socket_connections().len() >= 2 && s.socket_connected()).await;
    let took = frozen.elapsed();
    assert!(took >= Duration::from_millis(900), "replaced only once silent for the read timeout: {took:?}");
    sim.click(ALICE, CHANNEL, &card.message_id, "approve_button").await.unwrap();
    desk.wait(1).await;
    socket.stop.cancel();
}

#[tokio::test]
async fn refused_app_tokens_stop_the_client_without_a_reconnect_loop() {
    let sim = sim().await;
    sim.add_app_token("xapp-soon-revoked");
    sim.revoke_app_token("xapp-soon-revoked");
    let chat = chat(&sim).await;
    let desk = Desk::approving();
    for (token, code) in [
        ("xapp-not-known", "invalid_auth"),
        (BOT_TOKEN, "not_allowed_token_type"),
        ("xapp-soon-revoked", "token_revoked"),
    ] {
        sim.clear_calls();
        let mut socket = spawn_socket(&sim, token, &chat, &desk);
        let state = socket.wait(|s| matches!(s, SocketState::Unavailable(_))).await;
        let SocketState::Unavailable(reason) = state else { unreachable!() };
        assert!(reason.starts_with("review.app_token "), "{reason}");
        assert!(reason.contains(code) && reason.contains("connections:write"), "{reason}");
        assert!(!reason.contains(token), "the token is never repeated: {reason}");
        tokio::time::timeout(Duration::from_secs(2), &mut socket.handle).await.expect("the client stopped").unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(sim.calls_to("apps.connections.open").len(), 1, "{code}: asked once, not again");
    }
    assert!(sim.socket_connections().is_empty());
}

#[tokio::test]
async fn link_disabled_stops_the_client_and_stop_ends_it_cleanly() {
    let sim = sim().await;
    let chat = chat(&sim).await;
    let desk = Desk::approving();
    let mut socket = spawn_socket(&sim, APP_TOKEN, &chat, &desk);
    socket.connected().await;
    sim.socket_disconnect("link_disabled");
    let state = socket.wait(|s| matches!(s, SocketState::Unavailable(_))).await;
    let SocketState::Unavailable(reason) = state else { unreachable!() };
    assert!(reason.contains("link_disabled") && reason.contains("Socket Mode"), "{reason}");
    tokio::time::timeout(Duration::from_secs(2), &mut socket.handle).await.expect("the client stopped").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sim.calls_to("apps.connections.open").len(), 1);

    let mut socket = spawn_socket(&sim, APP_TOKEN, &chat, &desk);
    socket.connected().await;
    socket.stop.cancel();
    tokio::time::timeout(Duration::from_secs(2), &mut socket.handle).await.expect("the client stopped").unwrap();
    wait_sim(&sim, "closed", |s| live_sockets(s) == 0).await;
    assert_eq!(sim.socket_connections().last().unwrap().end.as_deref(), Some("closed by client"));
}

// ------------------------------------------------------------ HTTP Request URL

async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// Every count of `family`, summed (through the text exposition).
fn total(family: &Family<ChatReason, Counter>) -> u64 {
    let mut r = prometheus_client::registry::Registry::default();
    r.register("refused", "refused", family.clone());
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
    out.lines().filter(|l| l.starts_with("refused_total{")).filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).sum()
}

async fn http_setup(desk: &Desk, refused: Family<ChatReason, Counter>) -> (SlackSim, Arc<SlackChat>, MessageRef) {
    let sim = sim().await;
    let chat = chat(&sim).await;
    let card = card(&chat, "req-h").await;
    let router = http_interactivity::router_counting(Secret::new(SIGNING_SECRET), chat.clone(), desk.tx.clone(), refused);
    let addr = serve(router).await;
    sim.set_request_url(&format!("http://{addr}{}", http_interactivity::PATH), SIGNING_SECRET);
    (sim, chat, card)
}

#[tokio::test]
async fn forged_http_callbacks_are_refused_and_reach_no_desk() {
    let desk = Desk::approving();
    let family = Family::<ChatReason, Counter>::default();
    let (sim, _chat, card) = http_setup(&desk, family.clone()).await;
    let refused = || total(&family);
    let forgeries = [
        Forgery::BadSignature,
        Forgery::NoSignature,
        Forgery::NoTimestamp,
        Forgery::StaleTimestamp,
        Forgery::AlteredRequestId("req-other".into()),
        Forgery::ForeignTeam("T0ELSEWHERE".into()),
    ];
    for f in &forgeries {
        let status = sim.click_http(ALICE, CHANNEL, &card.message_id, "approve_button", Some(f.clone())).await.unwrap();
        assert_eq!(status, 401, "{f:?}");
    }
    assert_eq!(refused(), forgeries.len() as u64);

    let status = sim.click_http(ALICE, CHANNEL, &card.message_id, "approve_button", None).await.unwrap();
    assert_eq!(status, 200);
    desk.wait(1).await;
    assert_eq!(sim.replay_last_http().await.unwrap(), 401, "a replayed request");
    assert_eq!(refused(), forgeries.len() as u64 + 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = desk.seen();
    assert_eq!(seen.len(), 1, "only the genuine click reached the desk: {seen:?}");
    assert_eq!(seen[0].click.request_id, "req-h");
}

#[tokio::test]
async fn a_valid_http_callback_is_answered_at_once_and_the_outcome_goes_to_the_response_url() {
    let desk = Desk::start(approved(), Duration::from_millis(1500));
    let (sim, _chat, card) = http_setup(&desk, Family::default()).await;
    let started = Instant::now();
    let via = sim.click(BOB, CHANNEL, &card.message_id, "deny_button").await.unwrap();
    assert_eq!(via, ClickVia::Http { status: 200 }, "no socket is up: the Request URL gets it");
    assert!(started.elapsed() < Duration::from_secs(1), "answered before the desk decided: {:?}", started.elapsed());
    let seen = desk.wait(1).await;
    let click = &seen[0].click;
    assert_eq!((click.user_id.as_str(), click.request_id.as_str(), click.decision), (BOB, "req-h", Decision::Deny));
    assert_eq!(click.message.as_ref(), Some(&card));
    wait_sim(&sim, "answered", |s| !s.ephemerals(BOB).is_empty()).await;
    assert_eq!(sim.ephemerals(BOB), vec![approved().text("req-h")]);
    assert!(sim.ephemerals(ALICE).is_empty());
    let rec = &sim.ephemeral_records()[0];
    assert_eq!(rec.via, "response_url");
    assert_eq!(sim.response_posts()[0].body["replace_original"], false);
}

#[tokio::test]
async fn without_a_working_response_url_the_outcome_goes_by_chat_post_ephemeral() {
    let desk = Desk::approving();
    let (sim, _chat, card) = http_setup(&desk, Family::default()).await;
    sim.fail_next_on("/actions/", 1, 500);
    sim.click(ALICE, CHANNEL, &card.message_id, "approve_button").await.unwrap();
    wait_sim(&sim, "answered", |s| !s.ephemerals(ALICE).is_empty()).await;
    let rec = &sim.ephemeral_records()[0];
    assert_eq!((rec.via, rec.channel.as_str(), rec.user.as_str()), ("chat.postEphemeral", CHANNEL, ALICE));
    assert_eq!(rec.text, approved().text("req-h"));
}

// ------------------------------------------------------------ cards and users

#[tokio::test]
async fn only_cards_rendered_with_buttons_can_be_clicked() {
    let sim = sim().await;
    let chat = chat(&sim).await;
    sim.set_request_url("http://127.0.0.1:9/unused", SIGNING_SECRET);
    let without = chat.post(&Target(CHANNEL.into()), Content::Card(&view("req-6", false))).await.unwrap();
    assert_eq!(
        sim.click(ALICE, CHANNEL, &without.message_id, "approve_button").await,
        Err(ClickError::NoButton("approve_button".into()))
    );

    let with = card(&chat, "req-7").await;
    let desk = Desk::approving();
    let mut socket = spawn_socket(&sim, APP_TOKEN, &chat, &desk);
    socket.connected().await;
    sim.click(ALICE, CHANNEL, &with.message_id, "deny_button").await.unwrap();
    assert_eq!(desk.wait(1).await[0].click.request_id, "req-7", "the value came from the stored button");
    assert_eq!(
        sim.click(ALICE, CHANNEL, &with.message_id, "escalate_button").await,
        Err(ClickError::NoButton("escalate_button".into()))
    );

    let mut resolved = view("req-7", false);
    resolved.status = Status::Approved;
    chat.update(&with, Content::Card(&resolved)).await.unwrap();
    for action in ["approve_button", "deny_button"] {
        assert_eq!(
            sim.click(ALICE, CHANNEL, &with.message_id, action).await,
            Err(ClickError::NoButton(action.into())),
            "the update took the buttons away"
        );
    }
    socket.stop.cancel();
}

#[tokio::test]
async fn verified_email_only_for_confirmed_addresses_of_active_humans() {
    let sim = sim().await;
    let chat = chat(&sim).await;
    for (id, flags) in [
        ("U0UNCONF01", SlackUserFlags { email_confirmed: false, ..Default::default() }),
        ("U0DELETED1", SlackUserFlags { deleted: true, ..Default::default() }),
        ("U0ROBOT001", SlackUserFlags { is_bot: true, ..Default::default() }),
    ] {
        sim.add_user(SimUser::new(id, id.to_lowercase(), format!("{}@example.com", id.to_lowercase())));
        sim.set_user_flags(id, flags);
    }
    sim.add_user(SimUser::new("U0NOMAIL01", "nomail", ""));
    assert_eq!(chat.verified_email(ALICE).await.unwrap().as_deref(), Some("alice@example.com"));
    for id in ["U0UNCONF01", "U0DELETED1", "U0ROBOT001", "U0NOMAIL01", "U0NOSUCH01"] {
        assert_eq!(chat.verified_email(id).await.unwrap(), None, "{id}");
    }
    assert!(sim.calls_to("users.info").iter().all(|c| c.status == 200));
}

// ------------------------------------------------------------ the simulator's rules

async fn open(sim: &SlackSim, token: Option<&str>) -> Value {
    let mut req = reqwest::Client::new().post(format!("{}apps.connections.open", sim.base_url()));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap().json().await.unwrap()
}

type RawSocket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn raw_dial(url: &str) -> Result<RawSocket, tokio_tungstenite::tungstenite::Error> {
    let addr = url.trim_start_matches("ws://").split('/').next().unwrap().to_string();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio_tungstenite::client_async(url, tcp).await.map(|(ws, _)| ws)
}

async fn next_json(ws: &mut RawSocket) -> Value {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("a message").expect("open").unwrap() {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            _ => continue,
        }
    }
}

#[tokio::test]
async fn sim_connections_open_takes_app_tokens_only_and_tickets_once() {
    let sim = sim().await;
    assert_eq!(open(&sim, None).await["error"], "not_authed");
    assert_eq!(open(&sim, Some("xapp-nope")).await["error"], "invalid_auth");
    assert_eq!(open(&sim, Some(BOT_TOKEN)).await["error"], "not_allowed_token_type");
    let post = reqwest::Client::new()
        .post(format!("{}chat.postMessage", sim.base_url()))
        .bearer_auth(APP_TOKEN)
        .json(&json!({"channel": CHANNEL, "text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(post.json::<Value>().await.unwrap()["error"], "not_allowed_token_type", "app tokens cannot post");

    let answer = open(&sim, Some(APP_TOKEN)).await;
    assert_eq!(answer["ok"], true);
    let url = answer["url"].as_str().unwrap().to_string();
    assert!(url.starts_with("ws://127.0.0.1:") && url.contains("ticket="), "{url}");
    let mut ws = raw_dial(&url).await.unwrap();
    let hello = next_json(&mut ws).await;
    assert_eq!((hello["type"].as_str(), hello["num_connections"].as_u64()), (Some("hello"), Some(1)));
    assert!(raw_dial(&url).await.is_err(), "a ticket opens one connection");
}

#[tokio::test]
async fn sim_redelivers_unacked_envelopes_then_gives_up() {
    let sim = sim().await;
    sim.set_socket_mode_config(|c| {
        c.redeliver_after = Duration::from_millis(200);
        c.max_redeliveries = 2;
    });
    let chat = chat(&sim).await;
    let card = card(&chat, "req-8").await;
    let url = open(&sim, Some(APP_TOKEN)).await["url"].as_str().unwrap().to_string();
    let mut ws = raw_dial(&url).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "hello");
    wait_sim(&sim, "connected", |s| s.socket_connected()).await;

    sim.click(ALICE, CHANNEL, &card.message_id, "approve_button").await.unwrap();
    let mut attempts = Vec::new();
    for _ in 0..3 {
        let env = next_json(&mut ws).await;
        assert_eq!(env["type"], "interactive");
        assert_eq!(env["accepts_response_payload"], false);
        assert_eq!(env["payload"]["type"], "block_actions", "the payload is an object");
        assert_eq!(env["payload"]["actions"][0]["value"], "req-8");
        attempts.push((env["retry_attempt"].as_u64().unwrap(), env["retry_reason"].as_str().unwrap().to_string()));
    }
    assert_eq!(attempts, vec![(0, "".into()), (1, "timeout".into()), (2, "timeout".into())]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sim.envelopes()[0].deliveries.len(), 3, "no more after max_redeliveries");

    let id = sim.envelopes()[0].envelope_id.clone();
    ws.send(Message::text(json!({"envelope_id": id}).to_string())).await.unwrap();
    wait_sim(&sim, "acked", |s| s.envelopes()[0].acked_at.is_some()).await;
    assert_eq!(sim.acks()[0].retry_attempt, 2, "the ack answers the latest delivery");
}
