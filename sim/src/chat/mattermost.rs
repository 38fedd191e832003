//! Simulator of the Mattermost REST API (v4) routes the Mattermost client calls.
//!
//! Errors are Mattermost "app errors" (`{id, message, detailed_error,
//! request_id, status_code}`). When a rate limit is configured every response
//! carries `X-Ratelimit-*` headers (`Reset` in seconds from now) and a refusal
//! is a plain-text 429 `limit exceeded` with `Retry-After`, the way
//! Mattermost's throttling middleware answers; rate limiting is off unless
//! configured, as `RateLimitSettings.Enable` defaults to false. Calls that
//! arrive inside an announced window are recorded
//! ([`ChatSim::calls_inside_windows`]).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, Uri, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Router};
use serde_json::{Map, Value, json};

mod actions;
pub use actions::{ActionAnswer, Ephemeral};

use super::common::{
    ChatSim, FixedWindows, Flavor, ParsedBody, RateWindow, ServerHandle, SimChannel, SimCore,
    SimUser, TokenCheck, Tokens, Verdict, ceil_secs, char_len, header_value, json, lock,
    proxy_error_page, query_map, serve, unix_millis,
};

/// Longest post message, in runes (`model.PostMessageMaxRunesV2`).
const MAX_MESSAGE_RUNES: usize = 16_383;
/// Largest serialised `props` (`model.PostPropsMaxRunes`).
const MAX_PROPS_RUNES: usize = 800_000;
/// How long a `pending_post_id` deduplicates post creation.
const PENDING_POST_WINDOW: Duration = Duration::from_secs(30);
/// Team of channels configured without one.
pub const DEFAULT_TEAM: &str = "sim";

/// Alphabet of Mattermost ids (`model.NewId`).
const ID_ALPHABET: &[u8; 32] = b"ybndrfg8ejkmcpqxot1uwisza345h769";

/// A fresh 26-character Mattermost-style id.
pub fn new_id() -> String {
    let mut bits = uuid::Uuid::new_v4().as_u128();
    (0..26)
        .map(|_| {
            let c = ID_ALPHABET[(bits & 31) as usize] as char;
            bits >>= 5;
            c
        })
        .collect()
}

/// Static configuration of a [`MattermostSim`].
#[derive(Debug, Clone)]
pub struct MattermostSimConfig {
    /// Accepted personal-access or bot tokens.
    pub tokens: Vec<String>,
    /// The account the tokens belong to.
    pub bot: SimUser,
    pub users: Vec<SimUser>,
    /// Channels; `team` is the team *name* ([`DEFAULT_TEAM`] when unset).
    pub channels: Vec<SimChannel>,
    /// Budget for all requests, if any.
    pub rate_limit: Option<RateWindow>,
}

impl Default for MattermostSimConfig {
    fn default() -> Self {
        Self {
            tokens: vec!["mm-sim-token".into()],
            bot: SimUser::new(
                "tb7bot0000000000000000000a",
                "teleport",
                "teleport@bots.invalid",
            ),
            users: Vec::new(),
            channels: Vec::new(),
            rate_limit: None,
        }
    }
}

impl MattermostSimConfig {
    pub fn with_user(mut self, user: SimUser) -> Self {
        self.users.push(user);
        self
    }

    pub fn with_channel(mut self, channel: SimChannel) -> Self {
        self.channels.push(channel);
        self
    }

    pub fn with_rate_limit(mut self, rule: RateWindow) -> Self {
        self.rate_limit = Some(rule);
        self
    }
}

/// A post as stored by the simulator.
#[derive(Debug, Clone, PartialEq)]
pub struct MattermostPost {
    pub id: String,
    pub channel_id: String,
    /// Empty for root posts.
    pub root_id: String,
    pub user_id: String,
    pub message: String,
    /// Always a JSON object.
    pub props: Value,
    pub pending_post_id: String,
    pub create_at: i64,
    pub update_at: i64,
    /// 0 until the message text changes.
    pub edit_at: i64,
    /// Earlier versions, oldest first.
    pub history: Vec<MattermostRevision>,
}

/// A replaced version of a post.
#[derive(Debug, Clone, PartialEq)]
pub struct MattermostRevision {
    pub message: String,
    pub props: Value,
    /// Unix milliseconds of the replacement.
    pub replaced_at: i64,
}

#[derive(Debug, Clone)]
struct Channel {
    id: String,
    name: String,
    /// Empty for direct channels.
    team_id: String,
    bot_member: bool,
    direct: bool,
    create_at: i64,
}

struct State_ {
    bot: SimUser,
    tokens: Tokens,
    users: BTreeMap<String, SimUser>,
    /// Team name to id.
    teams: BTreeMap<String, String>,
    channels: BTreeMap<String, Channel>,
    posts: HashMap<String, MattermostPost>,
    /// Post ids in creation order.
    order: Vec<String>,
    pending_posts: HashMap<String, (String, Instant)>,
    last_millis: i64,
    rate_limit: Option<RateWindow>,
    windows: FixedWindows,
    /// What users were shown ephemerally (button answers).
    ephemerals: Vec<actions::Ephemeral>,
    /// Users whose email is not verified.
    unverified: std::collections::HashSet<String>,
}

struct Shared {
    core: Arc<SimCore>,
    state: Mutex<State_>,
}

/// Handle to a running Mattermost simulator; clones share the server.
#[derive(Clone)]
pub struct MattermostSim {
    shared: Arc<Shared>,
    server: Arc<ServerHandle>,
}

/// A Mattermost app error.
#[derive(Debug)]
struct AppError {
    status: StatusCode,
    id: &'static str,
    message: String,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        app_error_response(self.status, self.id, &self.message)
    }
}

fn app_error_response(status: StatusCode, id: &str, message: &str) -> Response {
    json(
        status,
        json!({
            "id": id,
            "message": message,
            "detailed_error": "",
            "request_id": new_id(),
            "status_code": status.as_u16(),
        }),
    )
}

fn app_err(status: StatusCode, id: &'static str, message: impl Into<String>) -> AppError {
    AppError {
        status,
        id,
        message: message.into(),
    }
}

fn permission_denied() -> AppError {
    app_err(
        StatusCode::FORBIDDEN,
        "api.context.permissions.app_error",
        "You do not have the appropriate permissions.",
    )
}

fn invalid_body_param(name: &str) -> AppError {
    app_err(
        StatusCode::BAD_REQUEST,
        "api.context.invalid_body_param.app_error",
        format!("Invalid or missing {name} in request body."),
    )
}

fn post_not_found() -> AppError {
    app_err(
        StatusCode::NOT_FOUND,
        "app.post.get.app_error",
        "Unable to get the post.",
    )
}

type ApiResult = Result<Response, AppError>;

/// Path template of a route under `/api/v4`.
fn route_of(path: &str) -> Option<&'static str> {
    let rest = path.strip_prefix("/api/v4/")?;
    let segments: Vec<&str> = rest.split('/').collect();
    Some(match segments.as_slice() {
        ["users", "me"] => "/users/me",
        ["users", "email", _] => "/users/email/{email}",
        ["users", _] => "/users/{user_id}",
        ["teams", "name", _, "channels", "name", _] => {
            "/teams/name/{team_name}/channels/name/{channel_name}"
        }
        ["channels", "direct"] => "/channels/direct",
        ["channels", _, "posts"] => "/channels/{channel_id}/posts",
        ["posts"] => "/posts",
        ["posts", _] => "/posts/{post_id}",
        ["posts", _, "patch"] => "/posts/{post_id}/patch",
        ["posts", _, "thread"] => "/posts/{post_id}/thread",
        _ => return None,
    })
}

const X_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const X_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

fn limit_headers(v: &Verdict) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(X_LIMIT, header_value(v.limit));
    h.insert(X_REMAINING, header_value(v.remaining));
    h.insert(X_RESET, header_value(ceil_secs(v.reset_after)));
    h
}

/// Mattermost's refusal: headers, `Retry-After` and a plain-text body.
fn limit_exceeded(mut headers: HeaderMap, retry_after: Duration) -> Response {
    headers.insert(header::RETRY_AFTER, header_value(ceil_secs(retry_after)));
    headers.insert(
        header::CONTENT_TYPE,
        header_value("text/plain; charset=utf-8"),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, header_value("nosniff"));
    (StatusCode::TOO_MANY_REQUESTS, headers, "limit exceeded\n").into_response()
}

struct MattermostFlavor;

impl Flavor for MattermostFlavor {
    fn endpoint(&self, method: &Method, path: &str) -> String {
        match route_of(path) {
            Some(route) => format!("{method} {route}"),
            None => format!("{method} {path}"),
        }
    }

    fn failure(&self, status: StatusCode) -> Response {
        match status.as_u16() {
            502..=504 => proxy_error_page(status, "nginx"),
            _ => app_error_response(
                status,
                "app.sim.injected_failure.app_error",
                "We encountered an error while processing the request.",
            ),
        }
    }

    fn rate_limited(&self, retry_after: Duration) -> Response {
        let v = Verdict {
            allowed: false,
            limit: 1,
            remaining: 0,
            reset_after: retry_after,
        };
        limit_exceeded(limit_headers(&v), retry_after)
    }

    /// Mattermost's limiter counts every call of a client together (keyed
    /// by address, or token with `VaryByUser`).
    fn bucket(&self, _endpoint: &str, _query: Option<&str>, _body: &ParsedBody) -> Option<String> {
        Some("client".into())
    }
}

impl MattermostSim {
    /// Start a simulator.
    ///
    /// # Panics
    /// If no loopback port can be bound; use [`try_start`](Self::try_start) to handle that.
    pub async fn start(config: MattermostSimConfig) -> Self {
        Self::try_start(config)
            .await
            .unwrap_or_else(|e| panic!("cannot start the Mattermost simulator: {e}"))
    }

    pub async fn try_start(config: MattermostSimConfig) -> std::io::Result<Self> {
        let core = SimCore::new(MattermostFlavor);
        let mut state = State_ {
            bot: config.bot,
            tokens: Tokens::new(&config.tokens),
            users: BTreeMap::new(),
            teams: BTreeMap::new(),
            channels: BTreeMap::new(),
            posts: HashMap::new(),
            order: Vec::new(),
            pending_posts: HashMap::new(),
            last_millis: 0,
            rate_limit: config.rate_limit,
            windows: FixedWindows::default(),
            ephemerals: Vec::new(),
            unverified: Default::default(),
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
        let app = Router::new()
            .route("/api/v4/users/me", get(get_me))
            .route("/api/v4/users/email/{email}", get(get_user_by_email))
            .route("/api/v4/users/{user_id}", get(get_user))
            .route(
                "/api/v4/teams/name/{team}/channels/name/{channel}",
                get(get_channel_by_name),
            )
            .route("/api/v4/channels/direct", post(create_direct))
            .route("/api/v4/channels/{channel_id}/posts", get(channel_posts))
            .route("/api/v4/posts", post(create_post))
            .route("/api/v4/posts/{post_id}", get(get_post).put(update_post))
            .route("/api/v4/posts/{post_id}/patch", put(patch_post))
            .route("/api/v4/posts/{post_id}/thread", get(get_thread))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(from_fn_with_state(shared.clone(), gate))
            .with_state(shared.clone());
        let server = serve(app, core).await?;
        Ok(Self {
            shared,
            server: Arc::new(server),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State_> {
        lock(&self.shared.state)
    }

    pub fn bot_user_id(&self) -> String {
        self.state().bot.id.clone()
    }

    pub fn set_rate_limit(&self, rule: Option<RateWindow>) {
        let mut st = self.state();
        st.rate_limit = rule;
        st.windows.clear();
    }

    /// Id of a team, once a channel of it exists.
    pub fn team_id(&self, team_name: &str) -> Option<String> {
        self.state().teams.get(team_name).cloned()
    }

    /// All posts, oldest first.
    pub fn posts(&self) -> Vec<MattermostPost> {
        let st = self.state();
        st.order
            .iter()
            .filter_map(|id| st.posts.get(id).cloned())
            .collect()
    }

    /// Posts of a channel, oldest first.
    pub fn posts_in(&self, channel_id: &str) -> Vec<MattermostPost> {
        self.posts()
            .into_iter()
            .filter(|p| p.channel_id == channel_id)
            .collect()
    }

    pub fn post(&self, id: &str) -> Option<MattermostPost> {
        self.state().posts.get(id).cloned()
    }

    /// A post by someone else (`user_id`) in `channel_id`, as channel
    /// traffic between the bot's own posts; returns its id.
    pub fn post_as(&self, user_id: &str, channel_id: &str, message: &str) -> String {
        let mut st = self.state();
        let now = st.next_millis();
        let p = MattermostPost {
            id: new_id(),
            channel_id: channel_id.to_owned(),
            root_id: String::new(),
            user_id: user_id.to_owned(),
            message: message.to_owned(),
            props: json!({}),
            pending_post_id: String::new(),
            create_at: now,
            update_at: now,
            edit_at: 0,
            history: Vec::new(),
        };
        let id = p.id.clone();
        st.order.push(id.clone());
        st.posts.insert(id.clone(), p);
        id
    }

    /// Replies to `root_id`, oldest first.
    pub fn replies(&self, root_id: &str) -> Vec<MattermostPost> {
        self.posts()
            .into_iter()
            .filter(|p| p.root_id == root_id)
            .collect()
    }

    /// Id of the direct channel between the bot and `user`, once one exists.
    pub fn direct_channel_with(&self, user: &str) -> Option<String> {
        let st = self.state();
        let name = direct_name(&st.bot.id, user);
        st.channels
            .values()
            .find(|c| c.direct && c.name == name)
            .map(|c| c.id.clone())
    }
}

impl ChatSim for MattermostSim {
    fn core(&self) -> &SimCore {
        &self.shared.core
    }

    fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
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
                c.bot_member = member;
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

/// Name of the direct channel of two users: their ids, sorted, joined by `__`.
fn direct_name(a: &str, b: &str) -> String {
    if a <= b {
        format!("{a}__{b}")
    } else {
        format!("{b}__{a}")
    }
}

impl State_ {
    fn add_channel(&mut self, c: SimChannel) {
        let team = c.team.unwrap_or_else(|| DEFAULT_TEAM.to_owned());
        let team_id = self.teams.entry(team).or_insert_with(new_id).clone();
        let create_at = self.next_millis();
        self.channels.insert(
            c.id.clone(),
            Channel {
                id: c.id,
                name: c.name,
                team_id,
                bot_member: c.bot_is_member,
                direct: false,
                create_at,
            },
        );
    }

    /// Current Unix milliseconds, strictly increasing so posts order totally.
    fn next_millis(&mut self) -> i64 {
        self.last_millis = unix_millis(SystemTime::now()).max(self.last_millis + 1);
        self.last_millis
    }

    fn user_json(&self, u: &SimUser, is_bot: bool) -> Value {
        json!({
            "id": u.id,
            "username": u.name,
            "email": u.email,
            "first_name": "",
            "last_name": "",
            "nickname": "",
            "position": "",
            "roles": "system_user",
            "locale": "en",
            "create_at": 0,
            "update_at": 0,
            "delete_at": 0,
            "is_bot": is_bot,
            "email_verified": !self.unverified.contains(&u.id),
        })
    }

    fn channel_json(&self, c: &Channel) -> Value {
        let posts: Vec<&MattermostPost> = self
            .posts
            .values()
            .filter(|p| p.channel_id == c.id)
            .collect();
        json!({
            "id": c.id,
            "create_at": c.create_at,
            "update_at": c.create_at,
            "delete_at": 0,
            "team_id": c.team_id,
            "type": if c.direct { "D" } else { "O" },
            "display_name": if c.direct { "" } else { c.name.as_str() },
            "name": c.name,
            "header": "",
            "purpose": "",
            "last_post_at": posts.iter().map(|p| p.create_at).max().unwrap_or(0),
            "total_msg_count": posts.len(),
            "creator_id": "",
        })
    }

    fn post_json(&self, p: &MattermostPost) -> Value {
        let mut props = p.props.clone();
        actions::strip_integrations(&mut props);
        let replies: Vec<&MattermostPost> = if p.root_id.is_empty() {
            self.posts.values().filter(|r| r.root_id == p.id).collect()
        } else {
            Vec::new()
        };
        json!({
            "id": p.id,
            "create_at": p.create_at,
            "update_at": p.update_at,
            "edit_at": p.edit_at,
            "delete_at": 0,
            "is_pinned": false,
            "user_id": p.user_id,
            "channel_id": p.channel_id,
            "root_id": p.root_id,
            "original_id": "",
            "message": p.message,
            "type": "",
            "props": props,
            "hashtags": "",
            "pending_post_id": p.pending_post_id,
            "reply_count": replies.len(),
            "last_reply_at": replies.iter().map(|r| r.create_at).max().unwrap_or(0),
            "participants": null,
            "metadata": {},
        })
    }

    /// `{order, posts}` for `ids`, newest first.
    fn post_list(&self, mut ids: Vec<String>) -> Value {
        ids.sort_by_key(|id| std::cmp::Reverse(self.posts.get(id).map(|p| p.create_at)));
        let posts: Map<String, Value> = ids
            .iter()
            .filter_map(|id| self.posts.get(id).map(|p| (id.clone(), self.post_json(p))))
            .collect();
        json!({
            "order": ids,
            "posts": posts,
            "next_post_id": "",
            "prev_post_id": "",
            "has_next": false,
        })
    }

    /// A channel the bot belongs to (404 unknown, 403 not a member).
    fn member_channel(&self, id: &str) -> Result<&Channel, AppError> {
        let ch = self.channels.get(id).ok_or_else(|| {
            app_err(
                StatusCode::NOT_FOUND,
                "app.channel.get.existing.app_error",
                "Unable to find the existing channel.",
            )
        })?;
        if !ch.bot_member {
            return Err(permission_denied());
        }
        Ok(ch)
    }
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    // Mattermost takes "Bearer" and "Token" in any case.
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token"))
        .then(|| token.trim())
}

/// Rate limit (ahead of everything, as Mattermost's middleware) and session check.
async fn gate(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let headers = {
        let mut st = lock(&shared.state);
        let headers = match st.rate_limit {
            Some(rule) => {
                let v = st.windows.check("client", rule);
                let headers = limit_headers(&v);
                if !v.allowed {
                    return limit_exceeded(headers, v.reset_after);
                }
                Some(headers)
            }
            None => None,
        };
        let valid =
            bearer_token(req.headers()).is_some_and(|t| st.tokens.check(t) == TokenCheck::Valid);
        if !valid {
            let mut resp = app_error_response(
                StatusCode::UNAUTHORIZED,
                "api.context.session_expired.app_error",
                "Invalid or expired session, please login again.",
            );
            if let Some(h) = headers {
                resp.headers_mut().extend(h);
            }
            return resp;
        }
        headers
    };
    let mut response = next.run(req).await;
    if let Some(h) = headers {
        response.headers_mut().extend(h);
    }
    response
}

async fn not_found() -> Response {
    app_error_response(
        StatusCode::NOT_FOUND,
        "api.context.404.app_error",
        "Sorry, we could not find the page.",
    )
}

async fn method_not_allowed() -> Response {
    app_error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "api.context.405.app_error",
        "Method not allowed.",
    )
}

async fn get_me(State(shared): State<Arc<Shared>>) -> Response {
    let st = lock(&shared.state);
    json(StatusCode::OK, st.user_json(&st.bot, true))
}

async fn get_user_by_email(
    State(shared): State<Arc<Shared>>,
    Path(email): Path<String>,
) -> ApiResult {
    let st = lock(&shared.state);
    if st.bot.email.eq_ignore_ascii_case(&email) {
        return Ok(json(StatusCode::OK, st.user_json(&st.bot, true)));
    }
    let user = st
        .users
        .values()
        .find(|u| u.email.eq_ignore_ascii_case(&email))
        .ok_or_else(|| {
            app_err(
                StatusCode::NOT_FOUND,
                "app.user.missing_account.const",
                "Unable to find the user.",
            )
        })?;
    Ok(json(StatusCode::OK, st.user_json(user, false)))
}

async fn get_user(State(shared): State<Arc<Shared>>, Path(user_id): Path<String>) -> ApiResult {
    let st = lock(&shared.state);
    if st.bot.id == user_id {
        return Ok(json(StatusCode::OK, st.user_json(&st.bot, true)));
    }
    let user = st.users.get(&user_id).ok_or_else(|| {
        app_err(StatusCode::NOT_FOUND, "app.user.missing_account.const", "Unable to find the user.")
    })?;
    Ok(json(StatusCode::OK, st.user_json(user, false)))
}

async fn get_channel_by_name(
    State(shared): State<Arc<Shared>>,
    Path((team, channel)): Path<(String, String)>,
) -> ApiResult {
    let st = lock(&shared.state);
    let team_id = st.teams.get(&team).ok_or_else(|| {
        app_err(
            StatusCode::NOT_FOUND,
            "app.team.get_by_name.missing.app_error",
            "Unable to find the existing team.",
        )
    })?;
    let ch = st
        .channels
        .values()
        .find(|c| &c.team_id == team_id && c.name == channel)
        .ok_or_else(|| {
            app_err(
                StatusCode::NOT_FOUND,
                "app.channel.get_by_name.missing.app_error",
                "Channel does not exist.",
            )
        })?;
    Ok(json(StatusCode::OK, st.channel_json(ch)))
}

async fn create_direct(
    State(shared): State<Arc<Shared>>,
    Extension(body): Extension<ParsedBody>,
) -> ApiResult {
    let ids: Vec<String> = body
        .lenient_json()
        .and_then(|v| serde_json::from_value(v).ok())
        .filter(|ids: &Vec<String>| ids.len() == 2)
        .ok_or_else(|| invalid_body_param("user_ids"))?;
    let mut st = lock(&shared.state);
    let bot = st.bot.id.clone();
    let known = |id: &String| *id == bot || st.users.contains_key(id);
    if !ids.iter().all(known) {
        return Err(app_err(
            StatusCode::BAD_REQUEST,
            "api.channel.create_direct_channel.invalid_user.app_error",
            "Invalid user ID for direct channel creation.",
        ));
    }
    if !ids.contains(&bot) {
        return Err(permission_denied());
    }
    let name = direct_name(&ids[0], &ids[1]);
    let existing = st.channels.values().find(|c| c.direct && c.name == name);
    let id = match existing {
        Some(c) => c.id.clone(),
        None => {
            let id = new_id();
            let create_at = st.next_millis();
            st.channels.insert(
                id.clone(),
                Channel {
                    id: id.clone(),
                    name,
                    team_id: String::new(),
                    bot_member: true,
                    direct: true,
                    create_at,
                },
            );
            id
        }
    };
    let ch = st.channels.get(&id).ok_or_else(permission_denied)?;
    Ok(json(StatusCode::CREATED, st.channel_json(ch)))
}

/// `message` and `props` checks of `Post.IsValid`.
fn check_post_content(message: &str, props: &Value) -> Result<(), AppError> {
    if char_len(message) > MAX_MESSAGE_RUNES {
        return Err(app_err(
            StatusCode::BAD_REQUEST,
            "model.post.is_valid.msg.app_error",
            "Invalid Message.",
        ));
    }
    if char_len(&props.to_string()) > MAX_PROPS_RUNES {
        return Err(app_err(
            StatusCode::BAD_REQUEST,
            "model.post.is_valid.props.app_error",
            "Invalid props.",
        ));
    }
    Ok(())
}

/// `props` of a request body: an object, or `{}` when absent or null.
fn props_of(obj: &Map<String, Value>) -> Result<Value, AppError> {
    match obj.get("props") {
        None | Some(Value::Null) => Ok(json!({})),
        Some(v @ Value::Object(_)) => Ok(v.clone()),
        Some(_) => Err(invalid_body_param("post")),
    }
}

fn body_object(body: &ParsedBody, name: &str) -> Result<Map<String, Value>, AppError> {
    match body.lenient_json() {
        Some(Value::Object(o)) => Ok(o),
        _ => Err(invalid_body_param(name)),
    }
}

fn str_field<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a str, AppError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(""),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(invalid_body_param("post")),
    }
}

async fn create_post(
    State(shared): State<Arc<Shared>>,
    Extension(body): Extension<ParsedBody>,
) -> ApiResult {
    let obj = body_object(&body, "post")?;
    let channel_id = str_field(&obj, "channel_id")?.to_owned();
    let message = str_field(&obj, "message")?.to_owned();
    let root_id = str_field(&obj, "root_id")?.to_owned();
    let pending = str_field(&obj, "pending_post_id")?.to_owned();
    let props = props_of(&obj)?;
    let mut st = lock(&shared.state);
    st.member_channel(&channel_id)?;
    if !root_id.is_empty() {
        let root = st.posts.get(&root_id).filter(|r| r.root_id.is_empty());
        match root {
            None => {
                return Err(app_err(
                    StatusCode::BAD_REQUEST,
                    "api.post.create_post.root_id.app_error",
                    "Invalid RootId parameter.",
                ));
            }
            Some(r) if r.channel_id != channel_id => {
                return Err(app_err(
                    StatusCode::BAD_REQUEST,
                    "api.post.create_post.channel_root_id.app_error",
                    "Invalid ChannelId for RootId parameter.",
                ));
            }
            Some(_) => {}
        }
    }
    check_post_content(&message, &props)?;
    st.pending_posts
        .retain(|_, (_, at)| at.elapsed() < PENDING_POST_WINDOW);
    if !pending.is_empty()
        && let Some((id, _)) = st.pending_posts.get(&pending)
        && let Some(p) = st.posts.get(id)
    {
        return Ok(json(StatusCode::CREATED, st.post_json(p)));
    }
    let now = st.next_millis();
    let p = MattermostPost {
        id: new_id(),
        channel_id,
        root_id,
        user_id: st.bot.id.clone(),
        message,
        props,
        pending_post_id: pending.clone(),
        create_at: now,
        update_at: now,
        edit_at: 0,
        history: Vec::new(),
    };
    if !pending.is_empty() {
        st.pending_posts
            .insert(pending, (p.id.clone(), Instant::now()));
    }
    let rendered = st.post_json(&p);
    st.order.push(p.id.clone());
    st.posts.insert(p.id.clone(), p);
    Ok(json(StatusCode::CREATED, rendered))
}

/// Replace message and props of an existing post the bot may edit.
fn apply_edit(
    st: &mut State_,
    post_id: &str,
    message: Option<String>,
    props: Option<Value>,
) -> ApiResult {
    // Mattermost reports an unknown post as a permission error here.
    let channel_id = st
        .posts
        .get(post_id)
        .map(|p| p.channel_id.clone())
        .ok_or_else(permission_denied)?;
    st.member_channel(&channel_id)?;
    let now = st.next_millis();
    let p = st.posts.get_mut(post_id).ok_or_else(permission_denied)?;
    let new_message = message.unwrap_or_else(|| p.message.clone());
    let new_props = props.unwrap_or_else(|| p.props.clone());
    check_post_content(&new_message, &new_props)?;
    p.history.push(MattermostRevision {
        message: p.message.clone(),
        props: p.props.clone(),
        replaced_at: now,
    });
    if new_message != p.message {
        p.edit_at = now;
    }
    p.message = new_message;
    p.props = new_props;
    p.update_at = now;
    let p = p.clone();
    Ok(json(StatusCode::OK, st.post_json(&p)))
}

async fn update_post(
    State(shared): State<Arc<Shared>>,
    Path(post_id): Path<String>,
    Extension(body): Extension<ParsedBody>,
) -> ApiResult {
    let obj = body_object(&body, "post")?;
    if str_field(&obj, "id")? != post_id {
        return Err(invalid_body_param("id"));
    }
    let message = str_field(&obj, "message")?.to_owned();
    // A full update replaces props; omitting them clears them.
    let props = props_of(&obj)?;
    let mut st = lock(&shared.state);
    apply_edit(&mut st, &post_id, Some(message), Some(props))
}

async fn patch_post(
    State(shared): State<Arc<Shared>>,
    Path(post_id): Path<String>,
    Extension(body): Extension<ParsedBody>,
) -> ApiResult {
    let obj = body_object(&body, "post")?;
    let message = match obj.get("message") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(invalid_body_param("post")),
    };
    let props = match obj.get("props") {
        None | Some(Value::Null) => None,
        Some(_) => Some(props_of(&obj)?),
    };
    let mut st = lock(&shared.state);
    apply_edit(&mut st, &post_id, message, props)
}

async fn get_post(State(shared): State<Arc<Shared>>, Path(post_id): Path<String>) -> ApiResult {
    let st = lock(&shared.state);
    let p = st.posts.get(&post_id).ok_or_else(post_not_found)?;
    st.member_channel(&p.channel_id)?;
    Ok(json(StatusCode::OK, st.post_json(p)))
}

async fn get_thread(State(shared): State<Arc<Shared>>, Path(post_id): Path<String>) -> ApiResult {
    let st = lock(&shared.state);
    let p = st.posts.get(&post_id).ok_or_else(post_not_found)?;
    st.member_channel(&p.channel_id)?;
    let root = if p.root_id.is_empty() {
        p.id.clone()
    } else {
        p.root_id.clone()
    };
    let ids: Vec<String> = st
        .posts
        .values()
        .filter(|q| q.id == root || q.root_id == root)
        .map(|q| q.id.clone())
        .collect();
    Ok(json(StatusCode::OK, st.post_list(ids)))
}

/// Most posts a `since` query returns.
pub const SINCE_LIMIT: usize = 1000;

async fn channel_posts(
    State(shared): State<Arc<Shared>>,
    Path(channel_id): Path<String>,
    uri: Uri,
) -> ApiResult {
    let st = lock(&shared.state);
    st.member_channel(&channel_id)?;
    let q = query_map(uri.query());
    let param = |key: &str| q.get(key).and_then(Value::as_str).map(str::to_owned);
    let url_param = |key: &'static str| {
        app_err(
            StatusCode::BAD_REQUEST,
            "api.context.invalid_url_param.app_error",
            format!("Invalid or missing {key} parameter in request URL."),
        )
    };
    let in_channel = st
        .posts
        .values()
        .filter(|p| p.channel_id == channel_id)
        .map(|p| (p.create_at, p.update_at, p.id.clone()));
    let ids: Vec<String> = match param("since") {
        Some(raw) => {
            let since: i64 = raw.parse().map_err(|_| url_param("since"))?;
            // Posts created or modified after `since`, at most
            // SINCE_LIMIT of them: the server's query ends in `LIMIT 1000`
            // with no ORDER BY before it and ignores page / per_page. The
            // (ChannelId, UpdateAt) index hands rows out least recently
            // updated first, so those are the ones kept.
            let mut hits: Vec<(i64, i64, String)> = in_channel.filter(|(_, updated, _)| *updated > since).collect();
            hits.sort_by(|a, b| (a.1, &a.2).cmp(&(b.1, &b.2)));
            hits.truncate(SINCE_LIMIT);
            hits.into_iter().map(|(_, _, id)| id).collect()
        }
        None => {
            let page: usize = match param("page") {
                Some(p) => p.parse().map_err(|_| url_param("page"))?,
                None => 0,
            };
            let per_page: usize = match param("per_page") {
                Some(p) => p
                    .parse::<usize>()
                    .map_err(|_| url_param("per_page"))?
                    .min(200),
                None => 60,
            };
            let mut all: Vec<(i64, i64, String)> = in_channel.collect();
            all.sort_by_key(|(created, _, _)| std::cmp::Reverse(*created));
            all.into_iter()
                .skip(page * per_page)
                .take(per_page)
                .map(|(_, _, id)| id)
                .collect()
        }
    };
    Ok(json(StatusCode::OK, st.post_list(ids)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_look_like_mattermost_ids() {
        let id = new_id();
        assert_eq!(id.len(), 26);
        assert!(id.bytes().all(|b| ID_ALPHABET.contains(&b)));
        assert_ne!(id, new_id());
    }

    #[test]
    fn direct_names_are_order_independent() {
        assert_eq!(direct_name("b", "a"), "a__b");
        assert_eq!(direct_name("a", "b"), "a__b");
    }

    #[test]
    fn routes() {
        assert_eq!(
            route_of("/api/v4/posts/abc/patch"),
            Some("/posts/{post_id}/patch")
        );
        assert_eq!(
            route_of("/api/v4/teams/name/t/channels/name/c"),
            Some("/teams/name/{team_name}/channels/name/{channel_name}")
        );
        assert_eq!(route_of("/api/v3/posts"), None);
    }
}
