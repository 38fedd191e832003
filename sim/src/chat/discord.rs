//! Simulator of the Discord REST API (v10) routes the Discord client calls.
//!
//! Requests need `Authorization: Bot <token>` and a `User-Agent` starting with
//! `DiscordBot`. Responses of known routes carry Discord's rate-limit headers;
//! buckets are per route and major parameter (the channel id).
//!
//! The limits are on by default, as on Discord: message creation 5 per 5 s
//! per channel, 50 requests per second per bot across routes, and the
//! invalid-request ban (10,000 answers 401, 403 or 429 — shared-scope 429s
//! excepted — within 10 minutes block the address for a while: every call
//! then gets a bare 429 without rate-limit headers or `retry_after`). Tests
//! that need no limits turn them off explicitly.
//!
//! Messages keep their `components` (action rows of buttons, checked as
//! Discord does); clicks on them are built from the stored message and come
//! over the fake Gateway ([`gateway`]) or a signed interactions endpoint
//! ([`interactions`]). Interaction callbacks and webhook edits need no bot
//! token, as on Discord: the interaction token in the path authenticates them.

pub mod gateway;
pub mod interactions;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde_json::{Map, Value, json};

use super::common::{
    ChatSim, FixedWindows, Flavor, ParsedBody, RateWindow, ServerHandle, SimChannel, SimCore,
    SimUser, TokenCheck, Tokens, Verdict, ceil_secs, char_len, header_value, json, lock,
    proxy_error_page, query_map, serve,
};

/// Discord's epoch (2015-01-01T00:00:00Z) in Unix milliseconds.
pub const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

const MAX_CONTENT: usize = 2000;
const MAX_EMBEDS: usize = 10;
const MAX_EMBED_TITLE: usize = 256;
const MAX_EMBED_DESCRIPTION: usize = 4096;
const MAX_EMBED_FIELDS: usize = 25;
const MAX_FIELD_NAME: usize = 256;
const MAX_FIELD_VALUE: usize = 1024;
const MAX_FOOTER_TEXT: usize = 2048;
const MAX_AUTHOR_NAME: usize = 256;
const MAX_EMBED_TOTAL: usize = 6000;
const MAX_NONCE: usize = 25;
const MAX_ROWS: usize = 5;
const MAX_ROW_BUTTONS: usize = 5;
const MAX_CUSTOM_ID: usize = 100;
const MAX_LABEL: usize = 80;

/// The message-creation route, limited per channel by default.
pub const POST_MESSAGE_ROUTE: &str = "POST /channels/{channel_id}/messages";
/// Message creation as Discord limits it per channel (observed 5 per 5 s;
/// Discord announces the figure in the bucket headers, never in its docs).
pub const POST_MESSAGE_LIMIT: RateWindow = RateWindow::new(5, Duration::from_secs(5));
/// Discord's documented global limit: 50 requests per second per bot.
pub const GLOBAL_LIMIT: RateWindow = RateWindow::new(50, Duration::from_secs(1));
/// Discord's documented invalid-request limit: 10,000 per 10 minutes.
pub const INVALID_REQUEST_LIMIT: RateWindow = RateWindow::new(10_000, Duration::from_secs(600));
/// How long a ban lasts. Discord only says "temporarily"; an hour is what
/// banned bots report.
pub const BAN_DURATION: Duration = Duration::from_secs(3600);
/// The body of a banned address's answers (no `retry_after`, no `global`).
const BANNED_MESSAGE: &str = "You are being blocked from accessing our API temporarily due to exceeding our rate limits frequently. Please read our docs at https://discord.com/developers/docs/topics/rate-limits to prevent this moving forward.";

/// The lowest snowflake Discord could have issued at `t`; `after=` this id
/// selects messages created at or after `t`.
pub fn snowflake_at(t: SystemTime) -> u64 {
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    ms.saturating_sub(DISCORD_EPOCH_MS) << 22
}

/// Static configuration of a [`DiscordSim`].
#[derive(Debug, Clone)]
pub struct DiscordSimConfig {
    /// Accepted bot tokens (sent as `Authorization: Bot <token>`).
    pub tokens: Vec<String>,
    pub bot_id: String,
    pub bot_username: String,
    pub guild_id: String,
    /// Users; ids should be snowflakes.
    pub users: Vec<SimUser>,
    /// Guild text channels; `bot_is_member: false` means no access (50001).
    pub channels: Vec<SimChannel>,
    /// Budget of every route bucket without an entry in `route_limits`.
    /// The default is generous: Discord's other per-route figures vary.
    pub route_limit: RateWindow,
    /// Per-route budgets keyed by route, e.g. `POST /channels/{channel_id}/messages`
    /// (by default [`POST_MESSAGE_LIMIT`] for that route).
    pub route_limits: HashMap<String, RateWindow>,
    /// Budget across all routes per bot ([`GLOBAL_LIMIT`]); `None` turns it off.
    pub global_limit: Option<RateWindow>,
    /// Invalid answers (401, 403, 429 other than `shared` scope) tolerated
    /// within the window before the address is banned ([`INVALID_REQUEST_LIMIT`]).
    pub invalid_limit: RateWindow,
    /// How long a ban lasts ([`BAN_DURATION`]).
    pub ban_duration: Duration,
    /// How long a nonce sent with `enforce_nonce` deduplicates.
    pub nonce_window: Duration,
}

impl Default for DiscordSimConfig {
    fn default() -> Self {
        Self {
            tokens: vec!["discord-sim-token".into()],
            bot_id: "1100000000000000001".into(),
            bot_username: "teleport".into(),
            guild_id: "1100000000000000002".into(),
            users: Vec::new(),
            channels: Vec::new(),
            route_limit: RateWindow::new(10_000, Duration::from_secs(1)),
            route_limits: HashMap::from([(POST_MESSAGE_ROUTE.to_owned(), POST_MESSAGE_LIMIT)]),
            global_limit: Some(GLOBAL_LIMIT),
            invalid_limit: INVALID_REQUEST_LIMIT,
            ban_duration: BAN_DURATION,
            nonce_window: Duration::from_secs(180),
        }
    }
}

impl DiscordSimConfig {
    pub fn with_user(mut self, user: SimUser) -> Self {
        self.users.push(user);
        self
    }

    pub fn with_channel(mut self, channel: SimChannel) -> Self {
        self.channels.push(channel);
        self
    }

    pub fn with_route_limit(mut self, route: &str, rule: RateWindow) -> Self {
        self.route_limits.insert(route.to_owned(), rule);
        self
    }

    /// No per-route limit on message creation and no global limit (the ban
    /// on invalid requests stays), for tests about something else.
    pub fn without_rate_limits(mut self) -> Self {
        self.route_limits.remove(POST_MESSAGE_ROUTE);
        self.global_limit = None;
        self
    }

    pub fn with_invalid_limit(mut self, rule: RateWindow, ban: Duration) -> Self {
        self.invalid_limit = rule;
        self.ban_duration = ban;
        self
    }
}

/// A message as stored by the simulator.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscordMessage {
    pub id: String,
    pub channel_id: String,
    pub content: String,
    pub embeds: Vec<Value>,
    pub nonce: Option<Value>,
    pub allowed_mentions: Option<Value>,
    /// Action rows as posted (buttons), `[]` when none.
    pub components: Vec<Value>,
    pub timestamp: SystemTime,
    pub edited_timestamp: Option<SystemTime>,
    /// Earlier versions, oldest first.
    pub history: Vec<DiscordRevision>,
}

/// A replaced version of a message.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscordRevision {
    pub content: String,
    pub embeds: Vec<Value>,
    pub replaced_at: SystemTime,
}

#[derive(Debug, Clone)]
enum Kind {
    Guild,
    Dm { recipient: String },
}

#[derive(Debug, Clone)]
struct Channel {
    id: String,
    name: String,
    access: bool,
    kind: Kind,
}

struct State_ {
    bot_id: String,
    bot_username: String,
    guild_id: String,
    tokens: Tokens,
    users: BTreeMap<String, SimUser>,
    channels: BTreeMap<String, Channel>,
    messages: BTreeMap<u64, DiscordMessage>,
    /// (author, nonce) to (message id, creation instant).
    nonces: HashMap<(String, String), (u64, Instant)>,
    dms_closed: HashSet<String>,
    last_snowflake: u64,
    route_limit: RateWindow,
    route_limits: HashMap<String, RateWindow>,
    global_limit: Option<RateWindow>,
    invalid: InvalidRequests,
    nonce_window: Duration,
    windows: FixedWindows,
    interactions: Vec<interactions::Stored>,
    endpoint: Option<interactions::Endpoint>,
}

struct Shared {
    core: Arc<SimCore>,
    state: Mutex<State_>,
}

/// Handle to a running Discord simulator; clones share the server.
#[derive(Clone)]
pub struct DiscordSim {
    shared: Arc<Shared>,
    server: Arc<ServerHandle>,
    gateway: gateway::Gateway,
}

/// An error answer: status plus Discord's JSON body.
#[derive(Debug)]
struct ApiError(StatusCode, Value);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json(self.0, self.1)
    }
}

fn api_error(status: StatusCode, code: u32, message: &str) -> ApiError {
    ApiError(status, json!({"message": message, "code": code}))
}

fn unknown_channel() -> ApiError {
    api_error(StatusCode::NOT_FOUND, 10003, "Unknown Channel")
}

fn unknown_message() -> ApiError {
    api_error(StatusCode::NOT_FOUND, 10008, "Unknown Message")
}

fn empty_message() -> ApiError {
    api_error(
        StatusCode::BAD_REQUEST,
        50006,
        "Cannot send an empty message",
    )
}

type ApiResult = Result<Response, ApiError>;

/// Route template and major parameter of a path under `/api/v10`.
fn route_of(method: &Method, path: &str) -> Option<(String, String)> {
    let rest = path.strip_prefix("/api/v10/")?;
    let segments: Vec<&str> = rest.split('/').collect();
    let (template, major) = match segments.as_slice() {
        ["users", "@me"] => ("/users/@me", ""),
        ["users", "@me", "channels"] => ("/users/@me/channels", ""),
        ["channels", id] => ("/channels/{channel_id}", *id),
        ["channels", id, "messages"] => ("/channels/{channel_id}/messages", *id),
        ["channels", id, "messages", _] => ("/channels/{channel_id}/messages/{message_id}", *id),
        _ => return None,
    };
    Some((format!("{method} {template}"), major.to_owned()))
}

/// Stable opaque bucket id for a route (FNV-1a), like Discord's hashes.
fn bucket_id(route: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in route.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn secs3(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

const X_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const X_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
const X_RESET_AFTER: HeaderName = HeaderName::from_static("x-ratelimit-reset-after");
const X_BUCKET: HeaderName = HeaderName::from_static("x-ratelimit-bucket");
const X_SCOPE: HeaderName = HeaderName::from_static("x-ratelimit-scope");
const X_GLOBAL: HeaderName = HeaderName::from_static("x-ratelimit-global");

fn bucket_headers(bucket: &str, v: &Verdict) -> HeaderMap {
    let reset_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        + v.reset_after;
    let mut h = HeaderMap::new();
    h.insert(X_LIMIT, header_value(v.limit));
    h.insert(X_REMAINING, header_value(v.remaining));
    h.insert(
        X_RESET,
        header_value(format!("{:.3}", reset_at.as_secs_f64())),
    );
    h.insert(
        X_RESET_AFTER,
        header_value(format!("{:.3}", v.reset_after.as_secs_f64())),
    );
    h.insert(X_BUCKET, header_value(bucket));
    h
}

fn too_many(mut headers: HeaderMap, retry_after: Duration, global: bool) -> Response {
    headers.insert(header::RETRY_AFTER, header_value(ceil_secs(retry_after)));
    headers.insert(
        X_SCOPE,
        HeaderValue::from_static(if global { "global" } else { "user" }),
    );
    if global {
        headers.insert(X_GLOBAL, HeaderValue::from_static("true"));
    }
    let body = json!({
        "message": "You are being rate limited.",
        "retry_after": secs3(retry_after),
        "global": global,
    });
    (StatusCode::TOO_MANY_REQUESTS, headers, axum::Json(body)).into_response()
}

struct DiscordFlavor;

impl Flavor for DiscordFlavor {
    fn endpoint(&self, method: &Method, path: &str) -> String {
        route_of(method, path)
            .map(|(route, _)| route)
            .unwrap_or_else(|| format!("{method} {path}"))
    }

    fn failure(&self, status: StatusCode) -> Response {
        match status.as_u16() {
            502 | 504 => proxy_error_page(status, "cloudflare"),
            code => {
                let reason = status.canonical_reason().unwrap_or("Error");
                json(
                    status,
                    json!({"message": format!("{code}: {reason}"), "code": 0}),
                )
            }
        }
    }

    fn rate_limited(&self, retry_after: Duration) -> Response {
        let v = Verdict {
            allowed: false,
            limit: 1,
            remaining: 0,
            reset_after: retry_after,
        };
        too_many(bucket_headers("injected", &v), retry_after, false)
    }
}

impl DiscordSim {
    /// Start a simulator.
    ///
    /// # Panics
    /// If no loopback port can be bound; use [`try_start`](Self::try_start) to handle that.
    pub async fn start(config: DiscordSimConfig) -> Self {
        Self::try_start(config)
            .await
            .unwrap_or_else(|e| panic!("cannot start the Discord simulator: {e}"))
    }

    pub async fn try_start(config: DiscordSimConfig) -> std::io::Result<Self> {
        let core = SimCore::new(DiscordFlavor);
        let mut state = State_ {
            bot_id: config.bot_id,
            bot_username: config.bot_username,
            guild_id: config.guild_id,
            tokens: Tokens::new(&config.tokens),
            users: BTreeMap::new(),
            channels: BTreeMap::new(),
            messages: BTreeMap::new(),
            nonces: HashMap::new(),
            dms_closed: HashSet::new(),
            last_snowflake: 0,
            route_limit: config.route_limit,
            route_limits: config.route_limits,
            global_limit: config.global_limit,
            invalid: InvalidRequests::new(config.invalid_limit, config.ban_duration),
            nonce_window: config.nonce_window,
            windows: FixedWindows::default(),
            interactions: Vec::new(),
            endpoint: None,
        };
        for u in config.users {
            state.users.insert(u.id.clone(), u);
        }
        for c in config.channels {
            state.add_channel(c);
        }
        let shared = Arc::new(Shared {
            core: core.clone(),
            state: Mutex::new(state),
        });
        let tokens_of = Arc::downgrade(&shared);
        let check: gateway::TokenCheckFn = Arc::new(move |t: &str| {
            tokens_of.upgrade().is_some_and(|s| lock(&s.state).tokens.check(t) == TokenCheck::Valid)
        });
        let (bot, app_id) = {
            let st = lock(&shared.state);
            (st.author(), st.bot_id.clone())
        };
        let gateway = gateway::Gateway::start(check, bot, app_id).await?;
        let app = Router::new()
            .route("/api/v10/gateway", get(get_gateway))
            .route("/api/v10/gateway/bot", get(get_gateway_bot))
            .route(
                "/api/v10/interactions/{id}/{token}/callback",
                post(interactions::callback),
            )
            .route(
                "/api/v10/webhooks/{app}/{token}/messages/{which}",
                axum::routing::patch(interactions::edit_original),
            )
            .route("/api/v10/users/@me", get(get_me))
            .route("/api/v10/users/@me/channels", post(create_dm))
            .route("/api/v10/channels/{channel_id}", get(get_channel))
            .route(
                "/api/v10/channels/{channel_id}/messages",
                post(create_message).get(list_messages),
            )
            .route(
                "/api/v10/channels/{channel_id}/messages/{message_id}",
                get(get_message).patch(edit_message),
            )
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(from_fn_with_state(shared.clone(), gate))
            .layer(Extension(GatewayUrl(gateway.url())))
            .with_state(shared.clone());
        let server = serve(app, core).await?;
        Ok(Self {
            shared,
            server: Arc::new(server),
            gateway,
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State_> {
        lock(&self.shared.state)
    }

    pub fn bot_id(&self) -> String {
        self.state().bot_id.clone()
    }

    /// The application id (the bot's user id, as for every bot app).
    pub fn application_id(&self) -> String {
        self.bot_id()
    }

    /// The fake Gateway: control (RECONNECT, INVALID_SESSION, drops) and log.
    pub fn gateway(&self) -> &gateway::Gateway {
        &self.gateway
    }

    /// Set (or with `None` reset to the default) the budget of one route.
    pub fn set_route_limit(&self, route: &str, rule: Option<RateWindow>) {
        let mut st = self.state();
        match rule {
            Some(r) => st.route_limits.insert(route.to_owned(), r),
            None => st.route_limits.remove(route),
        };
        st.windows.clear();
    }

    pub fn set_global_limit(&self, rule: Option<RateWindow>) {
        let mut st = self.state();
        st.global_limit = rule;
        st.windows.clear();
    }

    /// Invalid answers counted in the current window (401, 403, non-shared 429).
    pub fn invalid_requests(&self) -> usize {
        let mut st = self.state();
        st.invalid.expire(Instant::now());
        st.invalid.seen.len()
    }

    /// How many bans the address has had.
    pub fn bans(&self) -> u32 {
        self.state().invalid.bans
    }

    /// Whether the address is banned now.
    pub fn is_banned(&self) -> bool {
        self.state().invalid.banned(Instant::now())
    }

    /// Ban the address now for `d`, as when another client behind the same
    /// address used up the invalid-request budget.
    pub fn ban_for(&self, d: Duration) {
        let mut st = self.state();
        st.invalid.until = Some(Instant::now() + d);
        st.invalid.bans += 1;
    }

    pub fn lift_ban(&self) {
        let mut st = self.state();
        st.invalid.until = None;
        st.invalid.seen.clear();
    }

    /// Make DMs to `user` fail with 50007, as when the user blocks DMs.
    pub fn set_dms_closed(&self, user: &str, closed: bool) {
        let mut st = self.state();
        if closed {
            st.dms_closed.insert(user.to_owned());
        } else {
            st.dms_closed.remove(user);
        }
    }

    /// All messages, oldest first.
    pub fn messages(&self) -> Vec<DiscordMessage> {
        self.state().messages.values().cloned().collect()
    }

    /// Messages of a channel, oldest first.
    pub fn messages_in(&self, channel_id: &str) -> Vec<DiscordMessage> {
        self.state()
            .messages
            .values()
            .filter(|m| m.channel_id == channel_id)
            .cloned()
            .collect()
    }

    pub fn message(&self, id: &str) -> Option<DiscordMessage> {
        let key: u64 = id.parse().ok()?;
        self.state().messages.get(&key).cloned()
    }

    /// Id of the DM channel with `user`, once one exists.
    pub fn dm_channel_of(&self, user: &str) -> Option<String> {
        self.state().dm_of(user)
    }
}

impl ChatSim for DiscordSim {
    fn core(&self) -> &SimCore {
        &self.shared.core
    }

    fn base_url(&self) -> String {
        format!("http://{}/api/v10", self.server.addr())
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
                c.access = member;
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

fn format_timestamp(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]+00:00"
    );
    dt.format(&fmt).unwrap_or_default()
}

impl State_ {
    fn add_channel(&mut self, c: SimChannel) {
        self.channels.insert(
            c.id.clone(),
            Channel {
                id: c.id,
                name: c.name,
                access: c.bot_is_member,
                kind: Kind::Guild,
            },
        );
    }

    /// A snowflake from the current time, strictly above every earlier one.
    fn next_snowflake(&mut self) -> u64 {
        // Worker 1, process 0: the low 22 bits then count within a millisecond.
        let candidate = snowflake_at(SystemTime::now()) | (1 << 17);
        self.last_snowflake = candidate.max(self.last_snowflake + 1);
        self.last_snowflake
    }

    fn dm_of(&self, user: &str) -> Option<String> {
        self.channels
            .values()
            .find(|c| matches!(&c.kind, Kind::Dm { recipient } if recipient == user))
            .map(|c| c.id.clone())
    }

    /// The channel if the bot can see it (404 / 403 otherwise).
    fn accessible(&self, id: &str) -> Result<&Channel, ApiError> {
        let ch = self.channels.get(id).ok_or_else(unknown_channel)?;
        if !ch.access {
            return Err(api_error(StatusCode::FORBIDDEN, 50001, "Missing Access"));
        }
        Ok(ch)
    }

    fn author(&self) -> Value {
        json!({
            "id": self.bot_id,
            "username": self.bot_username,
            "discriminator": "0",
            "global_name": null,
            "avatar": null,
            "bot": true,
        })
    }

    fn render(&self, m: &DiscordMessage) -> Value {
        let mut o = json!({
            "id": m.id,
            "type": 0,
            "channel_id": m.channel_id,
            "content": m.content,
            "embeds": m.embeds,
            "author": self.author(),
            "timestamp": format_timestamp(m.timestamp),
            "edited_timestamp": m.edited_timestamp.map(format_timestamp),
            "tts": false,
            "mention_everyone": false,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "components": m.components,
            "pinned": false,
            "flags": 0,
        });
        if let Some(n) = &m.nonce {
            o["nonce"] = n.clone();
        }
        o
    }

    fn render_dm(&self, id: &str, recipient: &str) -> Value {
        let username = self
            .users
            .get(recipient)
            .map(|u| u.name.clone())
            .unwrap_or_default();
        let last = self
            .messages
            .values()
            .rev()
            .find(|m| m.channel_id == id)
            .map(|m| m.id.clone());
        json!({
            "id": id,
            "type": 1,
            "last_message_id": last,
            "flags": 0,
            "recipients": [{
                "id": recipient,
                "username": username,
                "discriminator": "0",
                "global_name": null,
                "avatar": null,
            }],
        })
    }
}

/// Discord's "Invalid Form Body" error tree.
#[derive(Default)]
struct FormErrors(Map<String, Value>);

impl FormErrors {
    fn add(&mut self, path: &[&str], code: &str, message: impl Into<String>) {
        let mut node = &mut self.0;
        for seg in path {
            let child = node
                .entry(seg.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(obj) = child else { return };
            node = obj;
        }
        if let Value::Array(list) = node
            .entry("_errors")
            .or_insert_with(|| Value::Array(Vec::new()))
        {
            list.push(json!({"code": code, "message": message.into()}));
        }
    }

    fn max_len(&mut self, path: &[&str], value: Option<&Value>, max: usize) {
        match value {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if char_len(s) > max => self.add(
                path,
                "BASE_TYPE_MAX_LENGTH",
                format!("Must be {max} or fewer in length."),
            ),
            Some(Value::String(_)) => {}
            Some(other) => self.add(
                path,
                "STRING_TYPE_CONVERT",
                format!("Could not interpret \"{other}\" as string."),
            ),
        }
    }

    fn into_error(self) -> ApiError {
        ApiError(
            StatusCode::BAD_REQUEST,
            json!({"code": 50035, "message": "Invalid Form Body", "errors": self.0}),
        )
    }

    fn into_result(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            return Ok(());
        }
        Err(self.into_error())
    }
}

/// The request body as a JSON object.
fn body_object(body: &ParsedBody) -> Result<Map<String, Value>, ApiError> {
    match body {
        ParsedBody::Json(Value::Object(o)) => Ok(o.clone()),
        ParsedBody::Json(_) => {
            let mut e = FormErrors::default();
            e.add(
                &[],
                "DICT_TYPE_CONVERT",
                "Only dictionaries may be used in a DictType",
            );
            Err(e.into_error())
        }
        ParsedBody::InvalidJson => Err(api_error(
            StatusCode::BAD_REQUEST,
            50109,
            "The request body contains invalid JSON.",
        )),
        ParsedBody::Form(pairs) => Ok(pairs
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect()),
        ParsedBody::Empty | ParsedBody::Other(_) => Ok(Map::new()),
    }
}

fn check_embeds(embeds: &[Value], errs: &mut FormErrors) {
    if embeds.len() > MAX_EMBEDS {
        errs.add(
            &["embeds"],
            "BASE_TYPE_MAX_LENGTH",
            format!("Must be {MAX_EMBEDS} or fewer in length."),
        );
    }
    let mut total = 0;
    let mut count = |v: Option<&Value>| {
        total += v.and_then(Value::as_str).map(char_len).unwrap_or(0);
    };
    for (i, embed) in embeds.iter().enumerate() {
        let idx = i.to_string();
        let idx = idx.as_str();
        if !embed.is_object() {
            errs.add(
                &["embeds", idx],
                "DICT_TYPE_CONVERT",
                "Only dictionaries may be used in a DictType",
            );
            continue;
        }
        errs.max_len(
            &["embeds", idx, "title"],
            embed.get("title"),
            MAX_EMBED_TITLE,
        );
        errs.max_len(
            &["embeds", idx, "description"],
            embed.get("description"),
            MAX_EMBED_DESCRIPTION,
        );
        let footer = embed.get("footer").and_then(|f| f.get("text"));
        errs.max_len(&["embeds", idx, "footer", "text"], footer, MAX_FOOTER_TEXT);
        let author = embed.get("author").and_then(|a| a.get("name"));
        errs.max_len(&["embeds", idx, "author", "name"], author, MAX_AUTHOR_NAME);
        count(embed.get("title"));
        count(embed.get("description"));
        count(footer);
        count(author);
        let fields = embed.get("fields").and_then(Value::as_array);
        let fields = fields.map(Vec::as_slice).unwrap_or_default();
        if fields.len() > MAX_EMBED_FIELDS {
            errs.add(
                &["embeds", idx, "fields"],
                "BASE_TYPE_MAX_LENGTH",
                format!("Must be {MAX_EMBED_FIELDS} or fewer in length."),
            );
        }
        for (j, field) in fields.iter().enumerate() {
            let jdx = j.to_string();
            for (key, max) in [("name", MAX_FIELD_NAME), ("value", MAX_FIELD_VALUE)] {
                let path = ["embeds", idx, "fields", jdx.as_str(), key];
                match field.get(key) {
                    None | Some(Value::Null) => {
                        errs.add(&path, "BASE_TYPE_REQUIRED", "This field is required")
                    }
                    v => errs.max_len(&path, v, max),
                }
                count(field.get(key));
            }
        }
    }
    if total > MAX_EMBED_TOTAL {
        errs.add(
            &["embeds"],
            "MAX_EMBED_SIZE_EXCEEDED",
            format!("Embed size exceeds maximum size of {MAX_EMBED_TOTAL}"),
        );
    }
}

/// Embeds as stored: Discord fills in `type: rich`.
fn normalise_embeds(embeds: &[Value]) -> Vec<Value> {
    embeds
        .iter()
        .map(|e| {
            let mut e = e.clone();
            if let Value::Object(o) = &mut e {
                o.entry("type").or_insert_with(|| json!("rich"));
            }
            e
        })
        .collect()
}

/// `content` and `embeds` of a create or edit body: `Some(None)` means
/// explicitly null, `None` absent.
struct Payload {
    content: Option<Option<String>>,
    embeds: Option<Option<Vec<Value>>>,
    components: Option<Vec<Value>>,
}

fn parse_payload(obj: &Map<String, Value>, errs: &mut FormErrors) -> Payload {
    let content = match obj.get("content") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(v) => {
            errs.max_len(&["content"], Some(v), MAX_CONTENT);
            Some(v.as_str().map(str::to_owned))
        }
    };
    let embeds = match obj.get("embeds") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::Array(list)) => {
            check_embeds(list, errs);
            Some(Some(list.clone()))
        }
        Some(_) => {
            errs.add(
                &["embeds"],
                "LIST_TYPE_CONVERT",
                "Only iterables may be used in a ListType",
            );
            None
        }
    };
    let components = match obj.get("components") {
        None => None,
        Some(Value::Null) => Some(Vec::new()),
        Some(Value::Array(rows)) => {
            check_components(rows, errs);
            Some(rows.clone())
        }
        Some(_) => {
            errs.add(&["components"], "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType");
            None
        }
    };
    Payload { content, embeds, components }
}

/// Legacy (non-V2) message components: up to 5 action rows of up to 5
/// buttons; non-link buttons need a `custom_id` of 1–100 characters, unique
/// in the message; labels up to 80.
fn check_components(rows: &[Value], errs: &mut FormErrors) {
    if rows.len() > MAX_ROWS {
        errs.add(&["components"], "BASE_TYPE_MAX_LENGTH", format!("Must be {MAX_ROWS} or fewer in length."));
    }
    let mut seen = HashSet::new();
    for (i, row) in rows.iter().enumerate() {
        let i = i.to_string();
        if row["type"] != 1 {
            errs.add(&["components", &i, "type"], "COMPONENT_LAYOUT_INVALID", "Top-level components must be action rows (type 1).");
            continue;
        }
        let buttons = row["components"].as_array().map(Vec::as_slice).unwrap_or_default();
        if buttons.is_empty() || buttons.len() > MAX_ROW_BUTTONS {
            errs.add(&["components", &i, "components"], "BASE_TYPE_BAD_LENGTH", format!("Must be between 1 and {MAX_ROW_BUTTONS} in length."));
        }
        for (j, b) in buttons.iter().enumerate() {
            let j = j.to_string();
            let path = ["components", i.as_str(), "components", j.as_str()];
            if b["type"] != 2 {
                errs.add(&path, "COMPONENT_TYPE_INVALID", "Only buttons are simulated in action rows.");
                continue;
            }
            let style = b["style"].as_u64().unwrap_or(0);
            if !(1..=6).contains(&style) {
                errs.add(&[&path[..], &["style"]].concat(), "BASE_TYPE_CHOICES", "Value must be one of {1, 2, 3, 4, 5, 6}.");
            }
            errs.max_len(&[&path[..], &["label"]].concat(), b.get("label"), MAX_LABEL);
            match (style, b["custom_id"].as_str(), b["url"].as_str()) {
                (5, None, Some(_)) | (6, None, None) => {}
                (5, _, _) => errs.add(&[&path[..], &["url"]].concat(), "BUTTON_COMPONENT_URL_REQUIRED", "A url is required"),
                (_, Some(id), None) if (1..=MAX_CUSTOM_ID).contains(&char_len(id)) => {
                    if !seen.insert(id.to_string()) {
                        errs.add(&[&path[..], &["custom_id"]].concat(), "COMPONENT_CUSTOM_ID_DUPLICATED", "Component custom id cannot be duplicated");
                    }
                }
                (_, Some(_), None) => errs.add(&[&path[..], &["custom_id"]].concat(), "BASE_TYPE_BAD_LENGTH", format!("Must be between 1 and {MAX_CUSTOM_ID} in length.")),
                _ => errs.add(&[&path[..], &["custom_id"]].concat(), "BUTTON_COMPONENT_CUSTOM_ID_REQUIRED", "A custom id is required"),
            }
        }
    }
}

fn is_empty_message(content: &str, embeds: &[Value]) -> bool {
    content.trim().is_empty() && embeds.is_empty()
}

/// Invalid answers within a sliding window, and the ban they lead to.
struct InvalidRequests {
    limit: RateWindow,
    ban: Duration,
    seen: VecDeque<Instant>,
    until: Option<Instant>,
    bans: u32,
}

impl InvalidRequests {
    fn new(limit: RateWindow, ban: Duration) -> Self {
        Self { limit, ban, seen: VecDeque::new(), until: None, bans: 0 }
    }

    fn expire(&mut self, now: Instant) {
        while self.seen.front().is_some_and(|t| now.duration_since(*t) >= self.limit.window) {
            self.seen.pop_front();
        }
    }

    fn banned(&self, now: Instant) -> bool {
        self.until.is_some_and(|u| now < u)
    }

    /// Counts `response` if Discord counts it: 401, 403, and 429 unless its
    /// scope is `shared` (a per-resource limit nobody could have avoided).
    fn count(&mut self, response: &Response, now: Instant) {
        let status = response.status().as_u16();
        let shared = response.headers().get(X_SCOPE).is_some_and(|v| v == "shared");
        let invalid = match status {
            401 | 403 => true,
            429 => !shared,
            _ => false,
        };
        if !invalid {
            return;
        }
        self.expire(now);
        self.seen.push_back(now);
        if self.seen.len() >= self.limit.limit as usize {
            self.seen.clear();
            self.until = Some(now + self.ban);
            self.bans += 1;
        }
    }
}

/// What a banned address gets: a 429 without rate-limit headers, without
/// `Retry-After` and without `retry_after` (the block is answered in front
/// of the API, so nothing says when it ends).
fn banned_response() -> Response {
    json(StatusCode::TOO_MANY_REQUESTS, json!({"message": BANNED_MESSAGE, "code": 0}))
}

/// The ban in front of everything, then the API's own checks; every answer
/// is counted towards the invalid-request limit.
async fn gate(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    if lock(&shared.state).invalid.banned(Instant::now()) {
        return banned_response();
    }
    let response = checks(shared.clone(), req, next).await;
    lock(&shared.state).invalid.count(&response, Instant::now());
    response
}

/// User-Agent, token and rate-limit checks in front of every route.
async fn checks(shared: Arc<Shared>, req: Request, next: Next) -> Response {
    // The interaction token in the path authenticates these; no bot token.
    let path = req.uri().path();
    if path.starts_with("/api/v10/interactions/") || path.starts_with("/api/v10/webhooks/") || path == "/api/v10/gateway" {
        return next.run(req).await;
    }
    let ua = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ua.starts_with("DiscordBot") {
        return api_error(
            StatusCode::FORBIDDEN,
            0,
            "User-Agent must start with \"DiscordBot\", e.g. \"DiscordBot (https://example.com, 1.0)\"",
        )
        .into_response();
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bot "))
        .map(str::trim);
    let route = route_of(req.method(), req.uri().path());
    let headers = {
        let mut st = lock(&shared.state);
        if token.is_none_or(|t| st.tokens.check(t) != TokenCheck::Valid) {
            return api_error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized").into_response();
        }
        match route {
            None => None,
            Some((route, major)) => {
                if let Some(rule) = st.global_limit {
                    let v = st.windows.check("global", rule);
                    if !v.allowed {
                        return too_many(HeaderMap::new(), v.reset_after, true);
                    }
                }
                let rule = st
                    .route_limits
                    .get(&route)
                    .copied()
                    .unwrap_or(st.route_limit);
                let v = st.windows.check(&format!("{route}|{major}"), rule);
                let headers = bucket_headers(&bucket_id(&route), &v);
                if !v.allowed {
                    return too_many(headers, v.reset_after, false);
                }
                Some(headers)
            }
        }
    };
    let mut response = next.run(req).await;
    if let Some(h) = headers {
        response.headers_mut().extend(h);
    }
    response
}

/// Where the fake Gateway listens.
#[derive(Clone)]
struct GatewayUrl(String);

async fn get_gateway(Extension(GatewayUrl(url)): Extension<GatewayUrl>) -> Response {
    json(StatusCode::OK, json!({"url": url}))
}

async fn get_gateway_bot(Extension(GatewayUrl(url)): Extension<GatewayUrl>) -> Response {
    json(StatusCode::OK, json!({
        "url": url,
        "shards": 1,
        "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 86_400_000u64, "max_concurrency": 1},
    }))
}

async fn not_found() -> Response {
    api_error(StatusCode::NOT_FOUND, 0, "404: Not Found").into_response()
}

async fn method_not_allowed() -> Response {
    api_error(StatusCode::METHOD_NOT_ALLOWED, 0, "405: Method Not Allowed").into_response()
}

async fn get_me(State(shared): State<Arc<Shared>>) -> Response {
    let st = lock(&shared.state);
    let mut me = st.author();
    me["verified"] = json!(true);
    me["mfa_enabled"] = json!(false);
    me["flags"] = json!(0);
    json(StatusCode::OK, me)
}

async fn get_channel(
    State(shared): State<Arc<Shared>>,
    Path(channel_id): Path<String>,
) -> ApiResult {
    let st = lock(&shared.state);
    let ch = st.accessible(&channel_id)?;
    let body = match &ch.kind {
        Kind::Dm { recipient } => st.render_dm(&ch.id, recipient),
        Kind::Guild => json!({
            "id": ch.id,
            "type": 0,
            "guild_id": st.guild_id,
            "name": ch.name,
            "position": 0,
            "permission_overwrites": [],
            "nsfw": false,
            "topic": null,
            "last_message_id": st
                .messages
                .values()
                .rev()
                .find(|m| m.channel_id == ch.id)
                .map(|m| m.id.clone()),
        }),
    };
    Ok(json(StatusCode::OK, body))
}

async fn create_dm(
    State(shared): State<Arc<Shared>>,
    Extension(body): Extension<ParsedBody>,
) -> ApiResult {
    let obj = body_object(&body)?;
    let recipient = match obj.get("recipient_id") {
        Some(Value::String(s)) if s.parse::<u64>().is_ok() => s.clone(),
        Some(Value::Number(n)) if n.as_u64().is_some() => n.to_string(),
        other => {
            let mut e = FormErrors::default();
            match other {
                None | Some(Value::Null) => e.add(
                    &["recipient_id"],
                    "BASE_TYPE_REQUIRED",
                    "This field is required",
                ),
                Some(v) => e.add(
                    &["recipient_id"],
                    "NUMBER_TYPE_COERCE",
                    format!(
                        "Value \"{}\" is not snowflake.",
                        v.as_str().unwrap_or_default()
                    ),
                ),
            }
            return Err(e.into_error());
        }
    };
    let mut st = lock(&shared.state);
    if !st.users.contains_key(&recipient) {
        return Err(api_error(StatusCode::NOT_FOUND, 10013, "Unknown User"));
    }
    let id = match st.dm_of(&recipient) {
        Some(id) => id,
        None => {
            let id = st.next_snowflake().to_string();
            st.channels.insert(
                id.clone(),
                Channel {
                    id: id.clone(),
                    name: String::new(),
                    access: true,
                    kind: Kind::Dm {
                        recipient: recipient.clone(),
                    },
                },
            );
            id
        }
    };
    Ok(json(StatusCode::OK, st.render_dm(&id, &recipient)))
}

/// The nonce as a dedupe key, validated (string of at most 25 characters or an integer).
fn nonce_of(obj: &Map<String, Value>, errs: &mut FormErrors) -> Option<(String, Value)> {
    match obj.get("nonce")? {
        Value::Null => None,
        Value::String(s) if char_len(s) > MAX_NONCE => {
            errs.add(
                &["nonce"],
                "BASE_TYPE_MAX_LENGTH",
                format!("Must be {MAX_NONCE} or fewer in length."),
            );
            None
        }
        v @ Value::String(s) => Some((s.clone(), v.clone())),
        v @ Value::Number(n) if n.is_i64() || n.is_u64() => Some((n.to_string(), v.clone())),
        _ => {
            errs.add(
                &["nonce"],
                "NONCE_TYPE_INVALID",
                "Nonce must be an integer or a string.",
            );
            None
        }
    }
}

fn check_allowed_mentions(obj: &Map<String, Value>, errs: &mut FormErrors) {
    let Some(am) = obj.get("allowed_mentions").filter(|v| !v.is_null()) else {
        return;
    };
    let Some(parse) = am.get("parse") else { return };
    let Some(list) = parse.as_array() else {
        errs.add(
            &["allowed_mentions", "parse"],
            "LIST_TYPE_CONVERT",
            "Only iterables may be used in a ListType",
        );
        return;
    };
    for (i, v) in list.iter().enumerate() {
        if !matches!(v.as_str(), Some("users" | "roles" | "everyone")) {
            errs.add(
                &["allowed_mentions", "parse", &i.to_string()],
                "ENUM_TYPE_COERCE",
                format!(
                    "Value \"{}\" is not a valid enum value.",
                    v.as_str().unwrap_or_default()
                ),
            );
        }
    }
}

async fn create_message(
    State(shared): State<Arc<Shared>>,
    Path(channel_id): Path<String>,
    Extension(body): Extension<ParsedBody>,
) -> ApiResult {
    let mut st = lock(&shared.state);
    let channel = st.accessible(&channel_id)?.clone();
    if let Kind::Dm { recipient } = &channel.kind
        && st.dms_closed.contains(recipient)
    {
        return Err(api_error(
            StatusCode::FORBIDDEN,
            50007,
            "Cannot send messages to this user",
        ));
    }
    let obj = body_object(&body)?;
    let mut errs = FormErrors::default();
    let payload = parse_payload(&obj, &mut errs);
    let nonce = nonce_of(&obj, &mut errs);
    check_allowed_mentions(&obj, &mut errs);
    errs.into_result()?;
    let content = payload.content.flatten().unwrap_or_default();
    let embeds = payload.embeds.flatten().unwrap_or_default();
    if is_empty_message(&content, &embeds) {
        return Err(empty_message());
    }
    let enforce = obj.get("enforce_nonce").and_then(Value::as_bool) == Some(true);
    let window = st.nonce_window;
    st.nonces.retain(|_, (_, at)| at.elapsed() < window);
    // Discord checks the nonce per author ("another message created by the
    // same author with the same nonce"), whatever the channel: a repeat in
    // another channel returns the first message and creates nothing.
    let key = nonce.as_ref().map(|(n, _)| (st.bot_id.clone(), n.clone()));
    if enforce
        && let Some(key) = &key
        && let Some((existing, _)) = st.nonces.get(key)
        && let Some(m) = st.messages.get(existing)
    {
        return Ok(json(StatusCode::OK, st.render(m)));
    }
    let id = st.next_snowflake();
    let msg = DiscordMessage {
        id: id.to_string(),
        channel_id: channel.id,
        content,
        embeds: normalise_embeds(&embeds),
        nonce: nonce.as_ref().map(|(_, v)| v.clone()),
        allowed_mentions: obj.get("allowed_mentions").cloned(),
        components: payload.components.clone().unwrap_or_default(),
        timestamp: SystemTime::now(),
        edited_timestamp: None,
        history: Vec::new(),
    };
    if let Some(key) = key {
        st.nonces.insert(key, (id, Instant::now()));
    }
    let rendered = st.render(&msg);
    st.messages.insert(id, msg);
    Ok(json(StatusCode::OK, rendered))
}

fn message_key(st: &State_, channel_id: &str, message_id: &str) -> Result<u64, ApiError> {
    message_id
        .parse::<u64>()
        .ok()
        .filter(|k| {
            st.messages
                .get(k)
                .is_some_and(|m| m.channel_id == channel_id)
        })
        .ok_or_else(unknown_message)
}

async fn get_message(
    State(shared): State<Arc<Shared>>,
    Path((channel_id, message_id)): Path<(String, String)>,
) -> ApiResult {
    let st = lock(&shared.state);
    st.accessible(&channel_id)?;
    let key = message_key(&st, &channel_id, &message_id)?;
    let m = st.messages.get(&key).ok_or_else(unknown_message)?;
    Ok(json(StatusCode::OK, st.render(m)))
}

async fn edit_message(
    State(shared): State<Arc<Shared>>,
    Path((channel_id, message_id)): Path<(String, String)>,
    Extension(body): Extension<ParsedBody>,
) -> ApiResult {
    let mut st = lock(&shared.state);
    st.accessible(&channel_id)?;
    let key = message_key(&st, &channel_id, &message_id)?;
    let obj = body_object(&body)?;
    let mut errs = FormErrors::default();
    let payload = parse_payload(&obj, &mut errs);
    errs.into_result()?;
    let msg = st.messages.get_mut(&key).ok_or_else(unknown_message)?;
    let content = match payload.content {
        None => msg.content.clone(),
        Some(c) => c.unwrap_or_default(),
    };
    let embeds = match payload.embeds {
        None => msg.embeds.clone(),
        Some(e) => normalise_embeds(&e.unwrap_or_default()),
    };
    if is_empty_message(&content, &embeds) {
        return Err(empty_message());
    }
    msg.history.push(DiscordRevision {
        content: std::mem::replace(&mut msg.content, content),
        embeds: std::mem::replace(&mut msg.embeds, embeds),
        replaced_at: SystemTime::now(),
    });
    if let Some(c) = payload.components {
        msg.components = c;
    }
    msg.edited_timestamp = Some(SystemTime::now());
    let msg = msg.clone();
    Ok(json(StatusCode::OK, st.render(&msg)))
}

/// A snowflake query parameter.
fn snowflake_param(q: &Map<String, Value>, key: &str, errs: &mut FormErrors) -> Option<u64> {
    let raw = q.get(key)?.as_str()?;
    match raw.parse() {
        Ok(v) => Some(v),
        Err(_) => {
            errs.add(
                &[key],
                "NUMBER_TYPE_COERCE",
                format!("Value \"{raw}\" is not snowflake."),
            );
            None
        }
    }
}

async fn list_messages(
    State(shared): State<Arc<Shared>>,
    Path(channel_id): Path<String>,
    uri: Uri,
) -> ApiResult {
    let st = lock(&shared.state);
    st.accessible(&channel_id)?;
    let q = query_map(uri.query());
    let mut errs = FormErrors::default();
    let limit = match q.get("limit").and_then(Value::as_str) {
        None => 50,
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if n > 100 => {
                errs.add(
                    &["limit"],
                    "NUMBER_TYPE_MAX",
                    "int value should be less than or equal to 100.",
                );
                0
            }
            Ok(n) if n < 1 => {
                errs.add(
                    &["limit"],
                    "NUMBER_TYPE_MIN",
                    "int value should be greater than or equal to 1.",
                );
                0
            }
            Ok(n) => n as usize,
            Err(_) => {
                errs.add(
                    &["limit"],
                    "NUMBER_TYPE_COERCE",
                    format!("Value \"{raw}\" is not int."),
                );
                0
            }
        },
    };
    let before = snowflake_param(&q, "before", &mut errs);
    let after = snowflake_param(&q, "after", &mut errs);
    let around = snowflake_param(&q, "around", &mut errs);
    errs.into_result()?;
    let in_channel = || st.messages.values().filter(|m| m.channel_id == channel_id);
    let key = |m: &DiscordMessage| m.id.parse::<u64>().unwrap_or(0);
    // Newest first in every mode; `after` takes the messages right after the id.
    let mut picked: Vec<&DiscordMessage> = if let Some(a) = after {
        let mut v: Vec<_> = in_channel().filter(|m| key(m) > a).take(limit).collect();
        v.reverse();
        v
    } else if let Some(c) = around {
        let mut older: Vec<_> = in_channel().filter(|m| key(m) <= c).collect();
        older.reverse();
        older.truncate(limit.div_ceil(2));
        let newer: Vec<_> = in_channel()
            .filter(|m| key(m) > c)
            .take(limit - older.len())
            .collect();
        newer.into_iter().rev().chain(older).collect()
    } else {
        let mut v: Vec<_> = in_channel()
            .filter(|m| before.is_none_or(|b| key(m) < b))
            .collect();
        v.reverse();
        v.truncate(limit);
        v
    };
    picked.truncate(limit);
    let out: Vec<Value> = picked.into_iter().map(|m| st.render(m)).collect();
    Ok(json(StatusCode::OK, Value::Array(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_major_parameters() {
        assert_eq!(
            route_of(&Method::POST, "/api/v10/channels/42/messages"),
            Some(("POST /channels/{channel_id}/messages".into(), "42".into()))
        );
        assert_eq!(
            route_of(&Method::PATCH, "/api/v10/channels/42/messages/7"),
            Some((
                "PATCH /channels/{channel_id}/messages/{message_id}".into(),
                "42".into()
            ))
        );
        assert_eq!(route_of(&Method::GET, "/api/v9/users/@me"), None);
    }

    #[test]
    fn snowflakes_follow_time() {
        let t = UNIX_EPOCH + Duration::from_millis(DISCORD_EPOCH_MS + 1000);
        assert_eq!(snowflake_at(t), 1000 << 22);
    }

    #[test]
    fn form_errors_nest() {
        let mut e = FormErrors::default();
        e.add(
            &["embeds", "0", "title"],
            "BASE_TYPE_MAX_LENGTH",
            "Must be 256 or fewer in length.",
        );
        let ApiError(status, body) = e.into_result().unwrap_err();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["code"], 50035);
        assert_eq!(
            body["errors"]["embeds"]["0"]["title"]["_errors"][0]["code"],
            "BASE_TYPE_MAX_LENGTH"
        );
    }

    #[test]
    fn timestamps_are_iso8601_with_offset() {
        let t = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        assert_eq!(format_timestamp(t), "2023-11-14T22:13:20.123456+00:00");
    }
}
