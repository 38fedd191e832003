//! Simulator of the Slack Web API methods the Slack client calls.
//!
//! Every method lives at `<base>/api/<method>` and answers HTTP 200 with
//! `{"ok": false, "error": ...}` on failure, except rate limiting (429) and
//! unknown methods (404). Arguments are merged from the query string, a
//! form-encoded body and a JSON object body, in that order.
//!
//! Rate limits, when configured, follow Slack's rules: `chat.postMessage` is
//! limited per channel (about one post per second, short bursts allowed; see
//! [`SlackSimConfig::with_post_limit`]), every other method per method (the
//! tiers, [`RateWindow::per_minute`]). A refusal is HTTP 429 with
//! `Retry-After` in whole seconds and `{"ok":false,"error":"ratelimited"}`;
//! calls that arrive inside an announced window are recorded
//! ([`ChatSim::calls_inside_windows`]).
//!
//! Interactivity: `apps.connections.open` (app-level `xapp-` tokens only)
//! hands out one-use `ws://` URLs of the Socket Mode server
//! ([`socket_mode`]); [`SlackSim::click`] presses a button of a stored
//! message and delivers the `block_actions` payload over Socket Mode, or
//! signed to the Request URL ([`interactivity`]). What the app shows one
//! user alone (`response_url`, `chat.postEphemeral`) is recorded per user.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::{Extension, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value, json};

use super::common::{
    ChatSim, FixedWindows, Flavor, ParsedBody, RateWindow, ServerHandle, SimChannel, SimCore,
    SimUser, TokenBuckets, TokenCheck, TokenRule, Tokens, ceil_secs, char_len, header_value, json,
    lock, proxy_error_page, query_map, serve,
};

mod blocks;
pub mod interactivity;
pub mod socket_mode;

pub use interactivity::{ClickError, ClickVia, Ephemeral, Forgery, ResponsePost};
pub use socket_mode::{Ack, Connection, Delivery, Envelope, SocketModeConfig};
use interactivity::{RequestUrl, ResponseUrl, Sent};

/// Longest `text` chat.postMessage accepts.
const MAX_TEXT_CHARS: usize = 40_000;

/// Static configuration of a [`SlackSim`].
#[derive(Debug, Clone)]
pub struct SlackSimConfig {
    /// Accepted bot tokens.
    pub tokens: Vec<String>,
    pub team_id: String,
    pub team_name: String,
    /// Workspace subdomain, used for the `url` of auth.test.
    pub team_domain: String,
    pub bot_user_id: String,
    pub bot_id: String,
    pub bot_name: String,
    pub app_id: String,
    pub users: Vec<SimUser>,
    pub channels: Vec<SimChannel>,
    /// Per-method budgets, keyed by method name (e.g. `chat.update`).
    pub rate_limits: HashMap<String, RateWindow>,
    /// Per-channel budget of `chat.postMessage` (thread replies included).
    pub post_limit: Option<TokenRule>,
    /// Accepted app-level tokens (`xapp-…`), for `apps.connections.open`.
    pub app_tokens: Vec<String>,
    /// The legacy verification token put in payloads (receivers ignore it).
    pub verification_token: String,
    pub socket_mode: SocketModeConfig,
}

/// Account facts `users.info` reports besides [`SimUser`]'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlackUserFlags {
    pub email_confirmed: bool,
    pub deleted: bool,
    pub is_bot: bool,
}

impl Default for SlackUserFlags {
    fn default() -> Self {
        Self { email_confirmed: true, deleted: false, is_bot: false }
    }
}

impl Default for SlackSimConfig {
    fn default() -> Self {
        Self {
            tokens: vec!["xoxb-sim-token".into()],
            team_id: "T0SIMTEAM1".into(),
            team_name: "Sim Workspace".into(),
            team_domain: "sim-workspace".into(),
            bot_user_id: "U0SIMBOT01".into(),
            bot_id: "B0SIMBOT01".into(),
            bot_name: "teleport".into(),
            app_id: "A0SIMAPP01".into(),
            users: Vec::new(),
            channels: Vec::new(),
            rate_limits: HashMap::new(),
            post_limit: None,
            app_tokens: vec!["xapp-sim-app-token".into()],
            verification_token: "sim-verification-token".into(),
            socket_mode: SocketModeConfig::default(),
        }
    }
}

/// Slack's method tiers (minimum requests per minute per method, app and
/// workspace); `chat.update` is Tier 3.
pub mod tier {
    use super::RateWindow;
    pub const TIER_1: RateWindow = RateWindow::per_minute(1);
    pub const TIER_2: RateWindow = RateWindow::per_minute(20);
    pub const TIER_3: RateWindow = RateWindow::per_minute(50);
    pub const TIER_4: RateWindow = RateWindow::per_minute(100);
}

/// Slack's documented posting limit: one message per second per channel,
/// with short bursts tolerated (Slack does not say how long; three here).
pub const POST_LIMIT: TokenRule = TokenRule {
    burst: 3,
    interval: Duration::from_secs(1),
};

impl SlackSimConfig {
    pub fn with_user(mut self, user: SimUser) -> Self {
        self.users.push(user);
        self
    }

    pub fn with_channel(mut self, channel: SimChannel) -> Self {
        self.channels.push(channel);
        self
    }

    /// A per-method budget (Slack's tiers); `chat.postMessage` here is a
    /// workspace-wide budget on top of the per-channel one.
    pub fn with_rate_limit(mut self, method: &str, rule: RateWindow) -> Self {
        self.rate_limits.insert(method.to_owned(), rule);
        self
    }

    /// Limit `chat.postMessage` per channel ([`POST_LIMIT`] is Slack's).
    pub fn with_post_limit(mut self, rule: TokenRule) -> Self {
        self.post_limit = Some(rule);
        self
    }
}

/// A message as stored by the simulator.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackMessage {
    pub channel: String,
    pub ts: String,
    /// Parent `ts` for thread replies.
    pub thread_ts: Option<String>,
    pub reply_broadcast: bool,
    /// Top-level `text` as sent; `None` when the message had no text fallback.
    pub text: Option<String>,
    pub blocks: Option<Value>,
    pub attachments: Option<Value>,
    /// `{event_type, event_payload}`.
    pub metadata: Option<Value>,
    /// Reaction name to the ids of users who reacted.
    pub reactions: BTreeMap<String, Vec<String>>,
    /// Earlier versions, oldest first.
    pub history: Vec<SlackRevision>,
    /// `ts` of the last edit.
    pub edited_ts: Option<String>,
}

impl SlackMessage {
    /// Whether the current version carries a non-empty top-level `text`.
    pub fn has_text_fallback(&self) -> bool {
        self.text.as_deref().is_some_and(|t| !t.is_empty())
    }
}

/// A replaced version of a message.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackRevision {
    pub text: Option<String>,
    pub blocks: Option<Value>,
    pub attachments: Option<Value>,
    pub metadata: Option<Value>,
    pub replaced_at: SystemTime,
}

#[derive(Debug, Clone)]
enum Kind {
    Channel,
    Im { user: String },
    Mpim,
}

#[derive(Debug, Clone)]
struct Channel {
    id: String,
    name: String,
    is_member: bool,
    kind: Kind,
}

/// A Slack method failure: `error` plus optional extra fields.
#[derive(Debug)]
struct SlackError {
    code: &'static str,
    extra: Map<String, Value>,
}

fn err(code: &'static str) -> SlackError {
    SlackError {
        code,
        extra: Map::new(),
    }
}

fn missing_arg(field: &str) -> SlackError {
    let mut extra = Map::new();
    extra.insert(
        "response_metadata".into(),
        json!({"messages": [format!("[ERROR] missing required field: {field}")]}),
    );
    SlackError {
        code: "invalid_arguments",
        extra,
    }
}

type MethodResult = Result<Value, SlackError>;

struct State_ {
    team_id: String,
    team_name: String,
    team_domain: String,
    bot_user_id: String,
    bot_id: String,
    bot_name: String,
    app_id: String,
    tokens: Tokens,
    users: BTreeMap<String, SimUser>,
    channels: BTreeMap<String, Channel>,
    /// Keyed by channel and ts in microseconds, so a channel's messages are a range.
    messages: BTreeMap<(String, u64), SlackMessage>,
    last_ts: u64,
    next_id: u64,
    rate_limits: HashMap<String, RateWindow>,
    windows: FixedWindows,
    post_limit: Option<TokenRule>,
    post_buckets: TokenBuckets,
    app_tokens: Tokens,
    verification_token: String,
    user_flags: HashMap<String, SlackUserFlags>,
    ephemerals: Vec<Ephemeral>,
    response_urls: HashMap<String, ResponseUrl>,
    response_posts: Vec<ResponsePost>,
    request_url: Option<RequestUrl>,
    last_sent: Option<Sent>,
}

struct Shared {
    core: Arc<SimCore>,
    state: Mutex<State_>,
    hub: Arc<socket_mode::Hub>,
}

/// Handle to a running Slack simulator; clones share the server.
#[derive(Clone)]
pub struct SlackSim {
    shared: Arc<Shared>,
    server: Arc<ServerHandle>,
    /// Stops the Socket Mode server with the last handle.
    _socket_mode: Arc<tokio_util::sync::DropGuard>,
}

struct SlackFlavor;

impl Flavor for SlackFlavor {
    fn endpoint(&self, _method: &Method, path: &str) -> String {
        if path.starts_with("/actions/") {
            // The path is a capability: recorded by its kind only.
            return "response_url".to_owned();
        }
        path.strip_prefix("/api/").unwrap_or(path).to_owned()
    }

    /// Slack answers refusals with 200 and `"ok": false`: only `"ok": true`
    /// means the call was applied.
    fn applied(&self, status: StatusCode, body: &[u8]) -> bool {
        status.is_success()
            && serde_json::from_slice::<Value>(body).is_ok_and(|v| v["ok"] == Value::Bool(true))
    }

    fn failure(&self, status: StatusCode) -> Response {
        let code = match status.as_u16() {
            500 => "internal_error",
            503 => "service_unavailable",
            408 => "request_timeout",
            502 | 504 => return proxy_error_page(status, "envoy"),
            _ => "fatal_error",
        };
        json(status, json!({"ok": false, "error": code}))
    }

    fn rate_limited(&self, retry_after: Duration) -> Response {
        ratelimited(retry_after)
    }

    fn bucket(&self, endpoint: &str, query: Option<&str>, body: &ParsedBody) -> Option<String> {
        Some(bucket_of(endpoint, query, body))
    }
}

/// Slack's rate-limit bucket of a call: posting counts per channel (as the
/// `channel` argument names it), every other method per method.
fn bucket_of(method: &str, query: Option<&str>, body: &ParsedBody) -> String {
    if method != "chat.postMessage" {
        return method.to_owned();
    }
    let channel = Args::build(query, body)
        .ok()
        .and_then(|a| a.str("channel"))
        .unwrap_or_default();
    format!("{method} {channel}")
}

fn ratelimited(retry_after: Duration) -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, header_value(ceil_secs(retry_after)))],
        axum::Json(json!({"ok": false, "error": "ratelimited"})),
    )
        .into_response()
}

impl SlackSim {
    /// Start a simulator.
    ///
    /// # Panics
    /// If no loopback port can be bound; use [`try_start`](Self::try_start) to handle that.
    pub async fn start(config: SlackSimConfig) -> Self {
        Self::try_start(config)
            .await
            .unwrap_or_else(|e| panic!("cannot start the Slack simulator: {e}"))
    }

    pub async fn try_start(config: SlackSimConfig) -> std::io::Result<Self> {
        let core = SimCore::new(SlackFlavor);
        let mut state = State_ {
            team_id: config.team_id,
            team_name: config.team_name,
            team_domain: config.team_domain,
            bot_user_id: config.bot_user_id,
            bot_id: config.bot_id,
            bot_name: config.bot_name,
            app_id: config.app_id,
            tokens: Tokens::new(&config.tokens),
            users: BTreeMap::new(),
            channels: BTreeMap::new(),
            messages: BTreeMap::new(),
            last_ts: 0,
            next_id: 1,
            rate_limits: config.rate_limits,
            windows: FixedWindows::default(),
            post_limit: config.post_limit,
            post_buckets: TokenBuckets::default(),
            app_tokens: Tokens::new(&config.app_tokens),
            verification_token: config.verification_token,
            user_flags: HashMap::new(),
            ephemerals: Vec::new(),
            response_urls: HashMap::new(),
            response_posts: Vec::new(),
            request_url: None,
            last_sent: None,
        };
        for u in config.users {
            state.users.insert(u.id.clone(), u);
        }
        for c in config.channels {
            state.add_channel(c);
        }
        let stop = tokio_util::sync::CancellationToken::new();
        let hub = socket_mode::Hub::start(state.app_id.clone(), config.socket_mode, stop.clone()).await?;
        let shared = Arc::new(Shared {
            core: core.clone(),
            state: Mutex::new(state),
            hub,
        });
        let app = Router::new()
            .route("/api/{method}", any(api))
            .route("/actions/{team}/{n}/{secret}", post(response_url))
            .with_state(shared.clone());
        let server = serve(app, core).await?;
        Ok(Self {
            shared,
            server: Arc::new(server),
            _socket_mode: Arc::new(stop.drop_guard()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State_> {
        lock(&self.shared.state)
    }

    /// Set (or with `None` remove) the budget of one method.
    pub fn set_rate_limit(&self, method: &str, rule: Option<RateWindow>) {
        let mut st = self.state();
        match rule {
            Some(r) => st.rate_limits.insert(method.to_owned(), r),
            None => st.rate_limits.remove(method),
        };
        st.windows.clear();
    }

    /// Set (or with `None` remove) the per-channel posting budget.
    pub fn set_post_limit(&self, rule: Option<TokenRule>) {
        let mut st = self.state();
        st.post_limit = rule;
        st.post_buckets.clear();
    }

    pub fn bot_user_id(&self) -> String {
        self.state().bot_user_id.clone()
    }

    /// Every message, grouped by channel id, oldest first within a channel.
    pub fn messages(&self) -> Vec<SlackMessage> {
        self.state().messages.values().cloned().collect()
    }

    /// Messages (thread replies included) of a channel given by id, name,
    /// `#name`, or user id for the DM with that user; oldest first.
    pub fn messages_in(&self, channel: &str) -> Vec<SlackMessage> {
        let st = self.state();
        match st.find_channel(channel) {
            Some(id) => st.channel_messages(&id).cloned().collect(),
            None => Vec::new(),
        }
    }

    pub fn message(&self, channel: &str, ts: &str) -> Option<SlackMessage> {
        let st = self.state();
        let id = st.find_channel(channel)?;
        st.messages.get(&(id, parse_ts(ts)?)).cloned()
    }

    /// Replies to the message `ts`, oldest first.
    pub fn thread_replies(&self, channel: &str, ts: &str) -> Vec<SlackMessage> {
        let st = self.state();
        match st.find_channel(channel) {
            Some(id) => st.replies(&id, ts).cloned().collect(),
            None => Vec::new(),
        }
    }

    /// Id of the DM channel with `user`, once one exists.
    pub fn dm_channel_of(&self, user: &str) -> Option<String> {
        self.state().dm_of(user)
    }

    pub fn team_id(&self) -> String {
        self.state().team_id.clone()
    }

    /// Sets what `users.info` says of `user` beyond its [`SimUser`] fields.
    pub fn set_user_flags(&self, user: &str, flags: SlackUserFlags) {
        self.state().user_flags.insert(user.to_owned(), flags);
    }

    pub fn add_app_token(&self, token: &str) {
        self.state().app_tokens.add(token);
    }

    /// `apps.connections.open` answers `token_revoked` for `token` from now on.
    pub fn revoke_app_token(&self, token: &str) {
        self.state().app_tokens.revoke(token);
    }

    /// Where clicks go when no Socket Mode connection is up, and the
    /// signing secret they are signed with.
    pub fn set_request_url(&self, url: &str, signing_secret: &str) {
        self.state().request_url = Some(RequestUrl { url: url.to_owned(), secret: signing_secret.to_owned() });
    }

    /// `user` clicks the button `action_id` (e.g. `approve_button`) of the
    /// message `ts` in `channel` (a confirmation dialog is accepted). The
    /// button must be on the stored message; its value is sent. Delivered
    /// over Socket Mode when a connection is up, else to the Request URL.
    pub async fn click(&self, user: &str, channel: &str, ts: &str, action_id: &str) -> Result<ClickVia, ClickError> {
        let base = format!("http://{}", self.server.addr());
        let payload = self.state().click_payload(&base, user, channel, ts, action_id)?;
        if let Some(envelope_id) = self.shared.hub.send_interactive(payload.clone()) {
            return Ok(ClickVia::Socket { envelope_id });
        }
        if self.state().request_url.is_none() {
            return Err(ClickError::NoReceiver);
        }
        self.deliver(payload, None).await.map(|status| ClickVia::Http { status })
    }

    /// Like [`click`](Self::click), always to the Request URL, forged as
    /// `forgery` says (or genuine with `None`); the answer's HTTP status.
    pub async fn click_http(
        &self,
        user: &str,
        channel: &str,
        ts: &str,
        action_id: &str,
        forgery: Option<Forgery>,
    ) -> Result<u16, ClickError> {
        let base = format!("http://{}", self.server.addr());
        let payload = self.state().click_payload(&base, user, channel, ts, action_id)?;
        self.deliver(payload, forgery.as_ref()).await
    }

    /// Sends the last HTTP delivery again, byte for byte (a replay).
    pub async fn replay_last_http(&self) -> Result<u16, ClickError> {
        let (url, sent) = {
            let st = self.state();
            let url = st.request_url.as_ref().map(|r| r.url.clone()).ok_or(ClickError::NoReceiver)?;
            (url, st.last_sent.clone().ok_or(ClickError::NothingToReplay)?)
        };
        interactivity::post(&url, &sent).await
    }

    async fn deliver(&self, payload: Value, forgery: Option<&Forgery>) -> Result<u16, ClickError> {
        let (url, sent) = {
            let mut st = self.state();
            let r = st.request_url.as_ref().ok_or(ClickError::NoReceiver)?;
            let url = r.url.clone();
            let sent = interactivity::delivery(&r.secret, payload, forgery);
            st.last_sent = Some(sent.clone());
            (url, sent)
        };
        interactivity::post(&url, &sent).await
    }

    /// Texts shown to `user` alone, oldest first.
    pub fn ephemerals(&self, user: &str) -> Vec<String> {
        self.state().ephemerals.iter().filter(|e| e.user == user).map(|e| e.text.clone()).collect()
    }

    /// Everything shown to one user alone, oldest first.
    pub fn ephemeral_records(&self) -> Vec<Ephemeral> {
        self.state().ephemerals.clone()
    }

    /// Every body posted to a `response_url`.
    pub fn response_posts(&self) -> Vec<ResponsePost> {
        self.state().response_posts.clone()
    }

    /// Changes the Socket Mode timing (redelivery, pings) from now on.
    pub fn set_socket_mode_config(&self, f: impl FnOnce(&mut SocketModeConfig)) {
        self.shared.hub.set_config(f);
    }

    /// Whether a Socket Mode connection that got its `hello` is up.
    pub fn socket_connected(&self) -> bool {
        self.shared.hub.connected()
    }

    /// Every Socket Mode connection so far, live or ended.
    pub fn socket_connections(&self) -> Vec<Connection> {
        self.shared.hub.connections()
    }

    pub fn envelopes(&self) -> Vec<Envelope> {
        self.shared.hub.envelopes()
    }

    pub fn acks(&self) -> Vec<Ack> {
        self.shared.hub.acks()
    }

    /// Sends `disconnect` (`warning`, `refresh_requested`, `link_disabled`,
    /// …) to every connection, then closes them shortly after.
    pub fn socket_disconnect(&self, reason: &str) {
        self.shared.hub.disconnect(reason);
    }

    /// Ends every connection without a close frame.
    pub fn drop_sockets(&self) {
        self.shared.hub.drop_all();
    }

    /// Every connection stops reading, writing and answering pings, the
    /// socket left open (half-open).
    pub fn freeze_sockets(&self) {
        self.shared.hub.freeze_all();
    }

    /// The connection that carries the next envelope drops right after it.
    pub fn drop_socket_after_next_envelope(&self) {
        self.shared.hub.drop_after_next_envelope();
    }

    /// The next `n` acks are read but ignored (lost), so their envelopes
    /// are delivered again.
    pub fn lose_next_acks(&self, n: u32) {
        self.shared.hub.lose_next_acks(n);
    }

    /// Waits until `pred` holds, re-checked after every API call and every
    /// Socket Mode event.
    pub async fn wait_for(&self, mut pred: impl FnMut(&Self) -> bool, timeout: Duration) -> Result<(), super::WaitTimeout> {
        let mut hub = self.shared.hub.subscribe();
        let mut calls = self.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            hub.borrow_and_update();
            if pred(self) {
                return Ok(());
            }
            tokio::select! {
                _ = hub.changed() => {}
                _ = calls.recv() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return if pred(self) { Ok(()) } else { Err(super::WaitTimeout(timeout)) };
                }
            }
        }
    }
}

impl ChatSim for SlackSim {
    fn core(&self) -> &SimCore {
        &self.shared.core
    }

    fn base_url(&self) -> String {
        format!("http://{}/api/", self.server.addr())
    }

    fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    fn add_user(&self, user: SimUser) {
        self.state().users.insert(user.id.clone(), user);
    }

    fn add_channel(&self, channel: SimChannel) {
        self.state().add_channel(channel);
    }

    fn set_bot_member(&self, channel: &str, member: bool) -> bool {
        match self.state().channels.get_mut(channel) {
            Some(c) => {
                c.is_member = member;
                true
            }
            None => false,
        }
    }

    fn add_token(&self, token: &str) {
        self.state().tokens.add(token);
    }

    fn revoke_token(&self, token: &str) {
        self.state().tokens.revoke(token);
    }
}

/// Slack timestamps ("1712345678.000123") as microseconds since the epoch.
fn parse_ts(ts: &str) -> Option<u64> {
    let (secs, frac) = ts.split_once('.').unwrap_or((ts, ""));
    if secs.is_empty()
        || frac.len() > 6
        || !secs.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let secs: u64 = secs.parse().ok()?;
    let micros: u64 = format!("{frac:0<6}").parse().ok()?;
    secs.checked_mul(1_000_000)?.checked_add(micros)
}

fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

fn fmt_ts(micros: u64) -> String {
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

impl State_ {
    fn add_channel(&mut self, c: SimChannel) {
        self.channels.insert(
            c.id.clone(),
            Channel {
                id: c.id,
                name: c.name,
                is_member: c.bot_is_member,
                kind: Kind::Channel,
            },
        );
    }

    /// A new ts, strictly after every earlier one.
    fn next_ts(&mut self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        self.last_ts = now.max(self.last_ts + 1);
        self.last_ts
    }

    fn new_id(&mut self, prefix: char) -> String {
        let n = self.next_id;
        self.next_id += 1;
        format!("{prefix}0SIM{n:06}")
    }

    fn dm_of(&self, user: &str) -> Option<String> {
        self.channels
            .values()
            .find(|c| matches!(&c.kind, Kind::Im { user: u } if u == user))
            .map(|c| c.id.clone())
    }

    fn open_dm(&mut self, user: &str) -> (String, bool) {
        if let Some(id) = self.dm_of(user) {
            return (id, true);
        }
        let id = self.new_id('D');
        self.channels.insert(
            id.clone(),
            Channel {
                id: id.clone(),
                name: id.clone(),
                is_member: true,
                kind: Kind::Im {
                    user: user.to_owned(),
                },
            },
        );
        (id, false)
    }

    fn by_name(&self, name: &str) -> Option<String> {
        self.channels
            .values()
            .find(|c| matches!(c.kind, Kind::Channel) && c.name == name)
            .map(|c| c.id.clone())
    }

    /// Resolve an existing channel without creating DMs.
    fn find_channel(&self, arg: &str) -> Option<String> {
        if let Some(name) = arg.strip_prefix('#') {
            return self.by_name(name);
        }
        if self.channels.contains_key(arg) {
            return Some(arg.to_owned());
        }
        if self.users.contains_key(arg) {
            return self.dm_of(arg);
        }
        self.by_name(arg)
    }

    /// Resolve chat.postMessage's `channel`: id, name, `#name`, or a user id
    /// (whose DM is opened on demand).
    fn resolve_post_target(&mut self, arg: &str) -> Result<String, SlackError> {
        if let Some(name) = arg.strip_prefix('#') {
            return self.by_name(name).ok_or_else(|| err("channel_not_found"));
        }
        if self.channels.contains_key(arg) {
            return Ok(arg.to_owned());
        }
        if self.users.contains_key(arg) {
            return Ok(self.open_dm(arg).0);
        }
        self.by_name(arg).ok_or_else(|| err("channel_not_found"))
    }

    fn channel_messages<'a>(&'a self, id: &str) -> impl Iterator<Item = &'a SlackMessage> + 'a {
        self.messages
            .range((id.to_owned(), 0)..=(id.to_owned(), u64::MAX))
            .map(|(_, m)| m)
    }

    fn replies<'a>(
        &'a self,
        channel: &str,
        ts: &'a str,
    ) -> impl Iterator<Item = &'a SlackMessage> + 'a {
        self.channel_messages(channel)
            .filter(move |m| m.thread_ts.as_deref() == Some(ts))
    }

    /// A channel id the bot may read or write.
    fn member_channel(&self, args: &Args) -> Result<String, SlackError> {
        let id = args
            .str("channel")
            .ok_or_else(|| err("channel_not_found"))?;
        let ch = self
            .channels
            .get(&id)
            .ok_or_else(|| err("channel_not_found"))?;
        if !ch.is_member {
            return Err(err("not_in_channel"));
        }
        Ok(id)
    }

    fn render(&self, m: &SlackMessage, with_metadata: bool) -> Value {
        let mut o = json!({
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "text": m.text.clone().unwrap_or_default(),
            "ts": m.ts,
            "team": self.team_id,
            "bot_profile": {
                "id": self.bot_id,
                "app_id": self.app_id,
                "name": self.bot_name,
                "team_id": self.team_id,
                "deleted": false,
            },
        });
        if let Some(b) = &m.blocks {
            o["blocks"] = b.clone();
        }
        if let Some(a) = &m.attachments {
            o["attachments"] = a.clone();
        }
        if let Some(parent) = &m.thread_ts {
            o["thread_ts"] = json!(parent);
            o["parent_user_id"] = json!(self.bot_user_id);
        } else {
            let replies: Vec<&SlackMessage> = self.replies(&m.channel, &m.ts).collect();
            if let Some(last) = replies.last() {
                o["thread_ts"] = json!(m.ts);
                o["reply_count"] = json!(replies.len());
                o["reply_users_count"] = json!(1);
                o["reply_users"] = json!([self.bot_user_id]);
                o["latest_reply"] = json!(last.ts);
            }
        }
        if let Some(ts) = &m.edited_ts {
            o["edited"] = json!({"user": self.bot_user_id, "ts": ts});
        }
        if !m.reactions.is_empty() {
            o["reactions"] = m
                .reactions
                .iter()
                .map(|(name, users)| json!({"name": name, "users": users, "count": users.len()}))
                .collect();
        }
        if with_metadata && let Some(md) = &m.metadata {
            o["metadata"] = md.clone();
        }
        o
    }
}

/// Method arguments merged from query, form and JSON body.
struct Args {
    map: Map<String, Value>,
}

impl Args {
    fn build(query: Option<&str>, body: &ParsedBody) -> Result<Self, SlackError> {
        let mut map = query_map(query);
        match body {
            ParsedBody::Form(pairs) => {
                for (k, v) in pairs {
                    map.insert(k.clone(), Value::String(v.clone()));
                }
            }
            ParsedBody::Json(Value::Object(o)) => map.extend(o.clone()),
            ParsedBody::Json(_) => return Err(err("json_not_object")),
            ParsedBody::InvalidJson => return Err(err("invalid_json")),
            // Slack ignores bodies of other content types.
            ParsedBody::Empty | ParsedBody::Other(_) => {}
        }
        Ok(Self { map })
    }

    /// A non-empty string argument (numbers and booleans are stringified).
    fn str(&self, key: &str) -> Option<String> {
        match self.map.get(key)? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    fn bool(&self, key: &str) -> bool {
        match self.map.get(key) {
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) => n.as_u64() == Some(1),
            Some(Value::String(s)) => matches!(s.as_str(), "true" | "1"),
            _ => false,
        }
    }

    fn u64(&self, key: &str) -> Option<u64> {
        self.str(key)?.parse().ok()
    }

    /// A JSON argument, given either as JSON or as a string holding JSON
    /// (the form-encoded convention). `Err` when the string does not parse.
    fn json(&self, key: &str) -> Result<Option<Value>, ()> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => serde_json::from_str(s).map(Some).map_err(|_| ()),
            Some(v) => Ok(Some(v.clone())),
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().unwrap_or("");
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("bearer") {
        Some(token.trim().to_owned())
    } else {
        // Present but not a bearer token: reported as invalid, not missing.
        Some(String::new())
    }
}

type MethodFn = fn(&mut State_, &Args) -> MethodResult;

fn method_fn(name: &str) -> Option<MethodFn> {
    Some(match name {
        "auth.test" => auth_test,
        "chat.postMessage" => chat_post_message,
        "chat.update" => chat_update,
        "reactions.add" => reactions_add,
        "users.lookupByEmail" => users_lookup_by_email,
        "conversations.open" => conversations_open,
        "conversations.list" => conversations_list,
        "conversations.history" => conversations_history,
        "conversations.replies" => conversations_replies,
        "chat.postEphemeral" => chat_post_ephemeral,
        "users.info" => users_info,
        _ => return None,
    })
}

async fn api(
    State(shared): State<Arc<Shared>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    Extension(body): Extension<ParsedBody>,
) -> Response {
    // `None`: apps.connections.open, checked against the app-level tokens.
    let run = match method_fn(&method) {
        None if method != "apps.connections.open" => {
            return json(
                StatusCode::NOT_FOUND,
                json!({"ok": false, "error": "unknown_method", "req_method": method}),
            );
        }
        run => run,
    };
    let result = match Args::build(uri.query(), &body) {
        Err(e) => Err(e),
        Ok(mut args) => {
            let form_token = match args.map.remove("token") {
                Some(Value::String(t)) => Some(t),
                _ => None,
            };
            let mut st = lock(&shared.state);
            let token = bearer(&headers).or(form_token);
            let Some(run) = run else {
                return reply(connections_open(&st, token.as_deref(), &shared.hub));
            };
            match token {
                None => Err(err("not_authed")),
                Some(token) => match st.tokens.check(&token) {
                    // An app-level token works for apps.connections.open only.
                    TokenCheck::Unknown if st.app_tokens.check(&token) == TokenCheck::Valid => {
                        Err(err("not_allowed_token_type"))
                    }
                    TokenCheck::Unknown => Err(err("invalid_auth")),
                    TokenCheck::Revoked => Err(err("token_revoked")),
                    TokenCheck::Valid => {
                        if let Some(rule) = st.rate_limits.get(&method).copied() {
                            let verdict = st.windows.check(&method, rule);
                            if !verdict.allowed {
                                return ratelimited(verdict.reset_after);
                            }
                        }
                        if method == "chat.postMessage"
                            && let Some(rule) = st.post_limit
                        {
                            // Counted per channel, whatever name the call used.
                            let target = args.str("channel").unwrap_or_default();
                            let key = st.find_channel(&target).unwrap_or(target);
                            if let Err(wait) = st.post_buckets.take(&key, rule) {
                                return ratelimited(wait);
                            }
                        }
                        run(&mut st, &args)
                    }
                },
            }
        }
    };
    reply(result)
}

/// The JSON answer of a method: `ok` plus its fields, or `ok: false` and `error`.
fn reply(result: MethodResult) -> Response {
    let body = match result {
        Ok(Value::Object(mut o)) => {
            o.insert("ok".into(), Value::Bool(true));
            Value::Object(o)
        }
        Ok(other) => json!({"ok": true, "result": other}),
        Err(e) => {
            let mut o = e.extra;
            o.insert("ok".into(), Value::Bool(false));
            o.insert("error".into(), Value::String(e.code.into()));
            Value::Object(o)
        }
    };
    json(StatusCode::OK, body)
}

/// `apps.connections.open`: an app-level token gets a one-use URL.
fn connections_open(st: &State_, token: Option<&str>, hub: &socket_mode::Hub) -> MethodResult {
    let token = token.ok_or_else(|| err("not_authed"))?;
    match st.app_tokens.check(token) {
        TokenCheck::Valid => Ok(json!({"url": hub.new_url()})),
        TokenCheck::Revoked => Err(err("token_revoked")),
        TokenCheck::Unknown if st.tokens.check(token) != TokenCheck::Unknown || token.starts_with("xox") => {
            Err(err("not_allowed_token_type"))
        }
        TokenCheck::Unknown => Err(err("invalid_auth")),
    }
}

/// A response URL of a click: shown to the clicker alone unless the body
/// asks for the channel or to replace the card.
async fn response_url(
    State(shared): State<Arc<Shared>>,
    Path((_team, _n, secret)): Path<(String, String, String)>,
    Extension(body): Extension<ParsedBody>,
) -> Response {
    let body = match &body {
        ParsedBody::Json(v @ Value::Object(_)) => v.clone(),
        _ => return json(StatusCode::BAD_REQUEST, json!({"ok": false, "error": "invalid_payload"})),
    };
    match lock(&shared.state).response_url_post(&secret, &body) {
        Ok(()) => json(StatusCode::OK, json!({"ok": true})),
        Err((status, code)) => json(
            StatusCode::from_u16(status).unwrap_or(StatusCode::NOT_FOUND),
            json!({"ok": false, "error": code}),
        ),
    }
}

fn chat_post_ephemeral(st: &mut State_, args: &Args) -> MethodResult {
    let target = args.str("channel").ok_or_else(|| err("channel_not_found"))?;
    let channel = st.find_channel(&target).ok_or_else(|| err("channel_not_found"))?;
    let ch = st.channels.get(&channel).ok_or_else(|| err("channel_not_found"))?;
    if !ch.is_member {
        return Err(err("not_in_channel"));
    }
    let user = args.str("user").ok_or_else(|| missing_arg("user"))?;
    if !st.users.contains_key(&user) {
        return Err(err("user_not_found"));
    }
    if let Kind::Im { user: owner } = &ch.kind
        && *owner != user
    {
        return Err(err("user_not_in_channel"));
    }
    let content = parse_content(args)?;
    let text = content.text.unwrap_or_default();
    if text.is_empty() && !non_empty_array(&content.blocks) {
        return Err(err("no_text"));
    }
    let ts = fmt_ts(st.next_ts());
    st.ephemerals.push(Ephemeral { user, channel, text, via: "chat.postEphemeral", thread_ts: args.str("thread_ts") });
    Ok(json!({"message_ts": ts}))
}

fn users_info(st: &mut State_, args: &Args) -> MethodResult {
    let id = args.str("user").ok_or_else(|| missing_arg("user"))?;
    let user = st.users.get(&id).ok_or_else(|| err("user_not_found"))?;
    let flags = st.user_flags.get(&id).copied().unwrap_or_default();
    let mut profile = json!({"real_name": user.name, "display_name": user.name});
    if !user.email.is_empty() {
        profile["email"] = json!(user.email);
    }
    Ok(json!({"user": {
        "id": user.id,
        "team_id": st.team_id,
        "name": user.name,
        "real_name": user.name,
        "deleted": flags.deleted,
        "is_bot": flags.is_bot,
        "is_app_user": false,
        "is_restricted": false,
        "is_email_confirmed": flags.email_confirmed,
        "profile": profile,
    }}))
}

fn auth_test(st: &mut State_, _args: &Args) -> MethodResult {
    Ok(json!({
        "url": format!("https://{}.slack.com/", st.team_domain),
        "team": st.team_name,
        "user": st.bot_name,
        "team_id": st.team_id,
        "user_id": st.bot_user_id,
        "bot_id": st.bot_id,
        "is_enterprise_install": false,
    }))
}

/// Message content shared by chat.postMessage and chat.update.
struct Content {
    text: Option<String>,
    blocks: Option<Value>,
    attachments: Option<Value>,
    metadata: Option<Value>,
}

fn parse_content(args: &Args) -> Result<Content, SlackError> {
    let text = args.str("text");
    let blocks = args
        .json("blocks")
        .map_err(|_| err("invalid_blocks_format"))?;
    if let Some(b) = &blocks {
        blocks::validate(b)?;
    }
    let attachments = args
        .json("attachments")
        .map_err(|_| err("invalid_attachments"))?;
    if attachments.as_ref().is_some_and(|a| !a.is_array()) {
        return Err(err("invalid_attachments"));
    }
    if text
        .as_deref()
        .is_some_and(|t| char_len(t) > MAX_TEXT_CHARS)
    {
        return Err(err("msg_too_long"));
    }
    let metadata = args
        .json("metadata")
        .map_err(|_| err("invalid_metadata_format"))?;
    if let Some(md) = &metadata {
        let valid = md
            .get("event_type")
            .and_then(Value::as_str)
            .is_some_and(|t| !t.is_empty())
            && md.get("event_payload").is_some_and(Value::is_object);
        if !valid {
            return Err(err("invalid_metadata_format"));
        }
    }
    Ok(Content {
        text,
        blocks,
        attachments,
        metadata,
    })
}

fn non_empty_array(v: &Option<Value>) -> bool {
    v.as_ref()
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
}

fn chat_post_message(st: &mut State_, args: &Args) -> MethodResult {
    let target = args
        .str("channel")
        .ok_or_else(|| err("channel_not_found"))?;
    let channel = st.resolve_post_target(&target)?;
    if !st.channels.get(&channel).is_some_and(|c| c.is_member) {
        return Err(err("not_in_channel"));
    }
    let content = parse_content(args)?;
    if content.text.is_none()
        && !non_empty_array(&content.blocks)
        && !non_empty_array(&content.attachments)
    {
        return Err(err("no_text"));
    }
    let thread_ts = match args.str("thread_ts") {
        None => None,
        Some(ts) => {
            let parent = parse_ts(&ts)
                .and_then(|k| st.messages.get(&(channel.clone(), k)))
                .ok_or_else(|| err("thread_not_found"))?;
            // Replying to a reply lands in the parent's thread.
            Some(parent.thread_ts.clone().unwrap_or(parent.ts.clone()))
        }
    };
    let micros = st.next_ts();
    let msg = SlackMessage {
        channel: channel.clone(),
        ts: fmt_ts(micros),
        reply_broadcast: thread_ts.is_some() && args.bool("reply_broadcast"),
        thread_ts,
        text: content.text,
        blocks: content.blocks,
        attachments: content.attachments,
        metadata: content.metadata,
        reactions: BTreeMap::new(),
        history: Vec::new(),
        edited_ts: None,
    };
    let rendered = st.render(&msg, true);
    let ts = msg.ts.clone();
    st.messages.insert((channel.clone(), micros), msg);
    Ok(json!({"channel": channel, "ts": ts, "message": rendered}))
}

fn chat_update(st: &mut State_, args: &Args) -> MethodResult {
    let channel = args
        .str("channel")
        .ok_or_else(|| err("channel_not_found"))?;
    if !st.channels.contains_key(&channel) {
        return Err(err("channel_not_found"));
    }
    let key = args
        .str("ts")
        .and_then(|ts| parse_ts(&ts))
        .map(|k| (channel.clone(), k))
        .filter(|k| st.messages.contains_key(k))
        .ok_or_else(|| err("message_not_found"))?;
    let content = parse_content(args)?;
    if content.text.is_none() && content.blocks.is_none() && content.attachments.is_none() {
        return Err(err("no_text"));
    }
    let edited = fmt_ts(st.next_ts());
    let Some(msg) = st.messages.get_mut(&key) else {
        return Err(err("message_not_found"));
    };
    msg.history.push(SlackRevision {
        text: msg.text.clone(),
        blocks: msg.blocks.clone(),
        attachments: msg.attachments.clone(),
        metadata: msg.metadata.clone(),
        replaced_at: SystemTime::now(),
    });
    // Omitted blocks, attachments and metadata are kept; the text is replaced.
    msg.text = content.text;
    if let Some(b) = content.blocks {
        msg.blocks = Some(b);
    }
    if let Some(a) = content.attachments {
        msg.attachments = Some(a);
    }
    if let Some(md) = content.metadata {
        msg.metadata = Some(md);
    }
    msg.edited_ts = Some(edited);
    let msg = msg.clone();
    Ok(json!({
        "channel": channel,
        "ts": msg.ts,
        "text": msg.text.clone().unwrap_or_default(),
        "message": st.render(&msg, false),
    }))
}

fn reactions_add(st: &mut State_, args: &Args) -> MethodResult {
    let channel = st.member_channel(args)?;
    let raw_name = args.str("name").ok_or_else(|| missing_arg("name"))?;
    let name = raw_name.trim_matches(':');
    if name.is_empty() || name.chars().any(char::is_whitespace) {
        return Err(err("invalid_name"));
    }
    let key = args
        .str("timestamp")
        .and_then(|ts| parse_ts(&ts))
        .map(|k| (channel, k));
    let bot = st.bot_user_id.clone();
    let msg = key
        .and_then(|k| st.messages.get_mut(&k))
        .ok_or_else(|| err("message_not_found"))?;
    let users = msg.reactions.entry(name.to_owned()).or_default();
    if users.contains(&bot) {
        return Err(err("already_reacted"));
    }
    users.push(bot);
    Ok(json!({}))
}

fn users_lookup_by_email(st: &mut State_, args: &Args) -> MethodResult {
    let email = args.str("email").ok_or_else(|| missing_arg("email"))?;
    let user = st
        .users
        .values()
        .find(|u| u.email.eq_ignore_ascii_case(&email))
        .ok_or_else(|| err("users_not_found"))?;
    Ok(json!({"user": {
        "id": user.id,
        "team_id": st.team_id,
        "name": user.name,
        "real_name": user.name,
        "deleted": false,
        "is_bot": false,
        "profile": {
            "email": user.email,
            "real_name": user.name,
            "display_name": user.name,
        },
    }}))
}

fn conversations_open(st: &mut State_, args: &Args) -> MethodResult {
    if let Some(existing) = args.str("channel") {
        return match st.channels.get(&existing) {
            Some(c) if !matches!(c.kind, Kind::Channel) => {
                Ok(json!({"channel": {"id": c.id}, "no_op": true, "already_open": true}))
            }
            _ => Err(err("channel_not_found")),
        };
    }
    let users_arg = args
        .str("users")
        .ok_or_else(|| err("users_list_not_supplied"))?;
    let mut users: Vec<String> = users_arg
        .split(',')
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
        .collect();
    users.sort();
    users.dedup();
    if users.is_empty() {
        return Err(err("users_list_not_supplied"));
    }
    if users.len() > 8 {
        return Err(err("too_many_users"));
    }
    if users.iter().any(|u| !st.users.contains_key(u)) {
        return Err(err("user_not_found"));
    }
    let (id, existed) = if let [user] = users.as_slice() {
        st.open_dm(user)
    } else {
        let name = format!("mpdm-{}-1", users.join("--"));
        match st.channels.values().find(|c| c.name == name) {
            Some(c) => (c.id.clone(), true),
            None => {
                let id = st.new_id('G');
                st.channels.insert(
                    id.clone(),
                    Channel {
                        id: id.clone(),
                        name,
                        is_member: true,
                        kind: Kind::Mpim,
                    },
                );
                (id, false)
            }
        }
    };
    let mut out = json!({"channel": {"id": id}});
    if existed {
        out["no_op"] = json!(true);
        out["already_open"] = json!(true);
    }
    Ok(out)
}

fn encode_cursor(micros: u64) -> String {
    B64.encode(format!("next_ts:{micros}"))
}

fn decode_cursor(cursor: &str) -> Result<u64, SlackError> {
    B64.decode(cursor)
        .ok()
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|s| s.strip_prefix("next_ts:").and_then(|n| n.parse().ok()))
        .ok_or_else(|| err("invalid_cursor"))
}

fn opt_ts(args: &Args, key: &str) -> Result<Option<u64>, SlackError> {
    match args.str(key) {
        None => Ok(None),
        Some(s) => parse_ts(&s)
            .map(Some)
            .ok_or_else(|| err("invalid_ts_oldest")),
    }
}

/// Public and private channels, paged by channel ID (`cursor` = last ID seen).
fn conversations_list(st: &mut State_, args: &Args) -> MethodResult {
    let limit = args.u64("limit").unwrap_or(100).clamp(1, 1000) as usize;
    let after = args.str("cursor").filter(|c| !c.is_empty());
    let mut channels: Vec<&Channel> = st
        .channels
        .values()
        .filter(|c| matches!(c.kind, Kind::Channel))
        .filter(|c| after.as_deref().is_none_or(|a| c.id.as_str() > a))
        .collect();
    channels.sort_by(|a, b| a.id.cmp(&b.id));
    let page: Vec<Value> = channels
        .iter()
        .take(limit)
        .map(|c| json!({"id": c.id, "name": c.name, "is_channel": true, "is_member": c.is_member, "is_archived": false}))
        .collect();
    let next = if channels.len() > limit { channels[limit - 1].id.clone() } else { String::new() };
    Ok(json!({"channels": page, "response_metadata": {"next_cursor": next}}))
}

fn conversations_history(st: &mut State_, args: &Args) -> MethodResult {
    let channel = st.member_channel(args)?;
    let limit = args.u64("limit").unwrap_or(100).clamp(1, 999) as usize;
    let inclusive = args.bool("inclusive");
    let oldest = opt_ts(args, "oldest")?;
    let latest = match opt_ts(args, "latest") {
        Err(_) => return Err(err("invalid_ts_latest")),
        Ok(v) => v,
    };
    let cursor = args.str("cursor").map(|c| decode_cursor(&c)).transpose()?;
    let with_metadata = args.bool("include_all_metadata");
    let mut picked: Vec<(u64, &SlackMessage)> = st
        .messages
        .range((channel.clone(), 0)..=(channel.clone(), u64::MAX))
        .filter(|(_, m)| m.thread_ts.is_none() || m.reply_broadcast)
        .map(|((_, k), m)| (*k, m))
        .filter(|(k, _)| match oldest {
            Some(o) if inclusive => *k >= o,
            Some(o) => *k > o,
            None => true,
        })
        .filter(|(k, _)| match latest {
            Some(l) if inclusive => *k <= l,
            Some(l) => *k < l,
            None => true,
        })
        .filter(|(k, _)| cursor.is_none_or(|c| *k <= c))
        .collect();
    picked.reverse();
    let has_more = picked.len() > limit;
    let next = picked.get(limit).map(|(k, _)| *k);
    let messages: Vec<Value> = picked
        .iter()
        .take(limit)
        .map(|(_, m)| st.render(m, with_metadata))
        .collect();
    let mut out = json!({
        "messages": messages,
        "has_more": has_more,
        "pin_count": 0,
        "channel_actions_ts": null,
        "channel_actions_count": 0,
    });
    if let Some(n) = next {
        out["response_metadata"] = json!({"next_cursor": encode_cursor(n)});
    }
    Ok(out)
}

fn conversations_replies(st: &mut State_, args: &Args) -> MethodResult {
    let channel = st.member_channel(args)?;
    let ts = args.str("ts").ok_or_else(|| missing_arg("ts"))?;
    let limit = args.u64("limit").unwrap_or(1000).clamp(1, 1000) as usize;
    let cursor = args.str("cursor").map(|c| decode_cursor(&c)).transpose()?;
    let with_metadata = args.bool("include_all_metadata");
    let found = parse_ts(&ts)
        .and_then(|k| st.messages.get(&(channel.clone(), k)))
        .ok_or_else(|| err("thread_not_found"))?;
    // A reply's ts names its whole thread.
    let parent_ts = found.thread_ts.clone().unwrap_or(found.ts.clone());
    let parent = parse_ts(&parent_ts)
        .and_then(|k| st.messages.get(&(channel.clone(), k)))
        .ok_or_else(|| err("thread_not_found"))?;
    let replies: Vec<&SlackMessage> = st
        .replies(&channel, &parent_ts)
        .filter(|m| cursor.is_none_or(|c| parse_ts(&m.ts).is_some_and(|k| k >= c)))
        .collect();
    // The parent heads every page and counts against the limit.
    let room = limit.saturating_sub(1).max(1);
    let has_more = replies.len() > room;
    let mut messages = vec![st.render(parent, with_metadata)];
    messages.extend(
        replies
            .iter()
            .take(room)
            .map(|m| st.render(m, with_metadata)),
    );
    let mut out = json!({"messages": messages, "has_more": has_more});
    if let Some(next) = replies.get(room).and_then(|m| parse_ts(&m.ts)) {
        out["response_metadata"] = json!({"next_cursor": encode_cursor(next)});
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ts_round_trip() {
        assert_eq!(parse_ts("1712345678.000123"), Some(1_712_345_678_000_123));
        assert_eq!(parse_ts("1712345678.5"), Some(1_712_345_678_500_000));
        assert_eq!(parse_ts("1712345678"), Some(1_712_345_678_000_000));
        assert_eq!(parse_ts("17x.1"), None);
        assert_eq!(parse_ts(".1"), None);
        assert_eq!(fmt_ts(1_712_345_678_000_123), "1712345678.000123");
    }

    #[test]
    fn cursor_round_trip() {
        let c = encode_cursor(1_712_345_678_000_123);
        assert_eq!(decode_cursor(&c).unwrap(), 1_712_345_678_000_123);
        assert!(decode_cursor("bm9wZQ==").is_err());
    }
}
