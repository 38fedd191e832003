//! Discord REST (v10) client: cards as channel messages edited in place,
//! reviews as embeds on the card, requester DMs through `[discord.users]`.
//!
//! Rate limits follow Discord's headers: a bucket (`X-RateLimit-Bucket` plus
//! the channel) with `X-RateLimit-Remaining: 0` stays closed for
//! `X-RateLimit-Reset-After`; a 429 says how long in its JSON body, and
//! `global: true` closes every route. Posts carry a nonce with
//! `enforce_nonce`, so Discord itself drops a repeated post.
//!
//! Discord temporarily bans an address that makes too many invalid requests
//! (401, 403, 429). So a rejected token stops every call for a while (one
//! call probes again after [`TOKEN_RECHECK`]), and a 429 that is not
//! Discord's limiter talking (no `retry_after`: the ban itself) pauses every
//! route for [`BAN_WAIT`] unless it says how long.
//!
//! Review from Discord: cards carry Approve/Deny buttons; clicks arrive
//! over the Gateway ([`gateway`]) or, with `discord.public_key`, at the
//! signed HTTP endpoint ([`endpoint`]). Each is answered at once with a
//! deferred ephemeral response, decided by the review desk, and the outcome
//! replaces that answer (only the clicker sees it). The card itself is
//! updated by the engine as the request changes. Discord bots cannot read
//! users' emails, so [`Chat::verified_email`] keeps its default (none).

pub mod endpoint;
pub mod gateway;
pub mod interaction;
pub mod render;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde_json::{Value, json};

use super::cache::TtlCache;
use super::http::{
    self, Api, ClientOptions, Http, Idempotency, Missing, RateGate, Reply, Request, Verdict,
};
use super::click::{ClickContext, ClickSender, ClickTransports, LinkState, decide};
use super::{Capabilities, Chat, ChatError, Content, Marker, MessageRef, Place, Reaction, Target};
use crate::config::{ChatConfig, Secret};
use interaction::ButtonClick;

/// Discord's epoch (2015-01-01T00:00:00Z) in Unix milliseconds.
const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;
/// Pages of 100 messages read when looking for a message.
const MAX_PAGES: usize = 20;
const PAGE_SIZE: usize = 100;

/// Added to header-announced resets.
const RESET_MARGIN: Duration = Duration::from_millis(50);
/// After a 401, calls fail here without reaching Discord for this long.
pub const TOKEN_RECHECK: Duration = Duration::from_secs(60);
/// How long every route pauses after a ban answer that names no end.
pub const BAN_WAIT: Duration = Duration::from_secs(60);

const POST_ROUTE: &str = "POST /channels/{channel_id}/messages";
const LIST_ROUTE: &str = "GET /channels/{channel_id}/messages";
const EDIT_ROUTE: &str = "PATCH /channels/{channel_id}/messages/{message_id}";
const CALLBACK_ROUTE: &str = "POST /interactions/{interaction_id}/{interaction_token}/callback";
const ORIGINAL_ROUTE: &str = "PATCH /webhooks/{application_id}/{interaction_token}/messages/@original";

pub struct DiscordChat {
    http: Http<DiscordApi>,
    /// Teleport user → Discord user ID (`[discord.users]`).
    user_ids: BTreeMap<String, String>,
    /// Discord user ID → DM channel ID.
    dms: TtlCache<String>,
    bot_id: Mutex<Option<String>>,
    /// For the Gateway's IDENTIFY.
    token: Secret,
}

impl DiscordChat {
    /// A client for the Discord API at `api_url` (e.g. `https://discord.com/api/v10/`).
    pub fn new(
        api_url: &str,
        token: Secret,
        user_ids: BTreeMap<String, String>,
    ) -> Result<Self, String> {
        Self::with_options(api_url, token, user_ids, ClientOptions::default())
    }

    pub fn with_options(
        api_url: &str,
        token: Secret,
        user_ids: BTreeMap<String, String>,
        opts: ClientOptions,
    ) -> Result<Self, String> {
        let ttl = opts.lookup_ttl;
        // Discord wants "DiscordBot (url, version)".
        let ua = format!(
            "DiscordBot (https://goteleport.com, {}) {}",
            env!("CARGO_PKG_VERSION"),
            http::user_agent()
        );
        let api = DiscordApi::default();
        let http = Http::new(api_url, &format!("Bot {}", token.expose()), &ua, opts, api)?;
        Ok(Self {
            http,
            user_ids,
            dms: TtlCache::new(ttl),
            bot_id: Mutex::new(None),
            token,
        })
    }

    async fn bot_id(&self) -> Result<String, ChatError> {
        if let Some(id) = lock(&self.bot_id).clone() {
            return Ok(id);
        }
        self.health_check().await?;
        lock(&self.bot_id)
            .clone()
            .ok_or_else(|| ChatError::transient("Discord /users/@me did not say who the bot is"))
    }

    async fn create_message(
        &self,
        channel: &str,
        content: &Content<'_>,
    ) -> Result<MessageRef, ChatError> {
        let mut body = render::render(content).body();
        body["nonce"] = json!(render::nonce(channel, &content.marker()));
        body["enforce_nonce"] = json!(true);
        let req = Request::post(POST_ROUTE, &["channels", channel, "messages"])
            .json(body)
            .major(channel)
            .about(channel)
            .idempotency(Idempotency::Deduped);
        let v = self.http.call(req).await?;
        match v["id"].as_str().filter(|s| !s.is_empty()) {
            Some(id) => {
                let ch = v["channel_id"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .unwrap_or(channel);
                Ok(MessageRef {
                    channel_id: ch.to_string(),
                    message_id: id.to_string(),
                })
            }
            None => Err(
                ChatError::transient("Discord answered a post without a message ID")
                    .maybe_applied(),
            ),
        }
    }

    /// The Gateway URL (`GET /gateway/bot`).
    pub async fn gateway_url(&self) -> Result<String, ChatError> {
        let v = self.http.call(Request::get("GET /gateway/bot", &["gateway", "bot"]).about("the Gateway")).await?;
        v["url"]
            .as_str()
            .filter(|u| u.starts_with("wss://") || u.starts_with("ws://"))
            .map(|u| u.trim_end_matches('/').to_string())
            .ok_or_else(|| ChatError::transient("Discord GET /gateway/bot answered without a WebSocket URL"))
    }

    /// The initial response to an interaction (within 3 s of the click).
    async fn respond(&self, c: &ButtonClick, body: Value) -> Result<(), ChatError> {
        let req = Request::post(CALLBACK_ROUTE, &["interactions", &c.interaction_id, c.token.expose(), "callback"])
            .json(body)
            .major(c.interaction_id.clone())
            .about(format!("interaction {}", c.interaction_id));
        self.http.call(req).await.map(drop)
    }

    /// Replaces the (deferred) initial response with `text`.
    async fn edit_original(&self, c: &ButtonClick, text: &str) -> Result<(), ChatError> {
        let req = Request::new(
            Method::PATCH,
            ORIGINAL_ROUTE,
            &["webhooks", &c.application_id, c.token.expose(), "messages", "@original"],
        )
        .json(interaction::outcome_edit(text))
        .major(c.interaction_id.clone())
        .about(format!("interaction {}", c.interaction_id))
        .replaceable();
        self.http.call(req).await.map(drop)
    }

    /// Answers a click: acknowledges it ephemerally unless the HTTP
    /// endpoint did inline (`acked`), has the desk decide, and shows the
    /// outcome to the clicker. An interaction we could not acknowledge is
    /// not decided: Discord told the clicker it failed, so they may retry.
    pub async fn answer_click(&self, desk: &ClickSender, c: ButtonClick, acked: bool) {
        if !acked && let Err(e) = self.respond(&c, interaction::deferred_ephemeral()).await {
            tracing::warn!(interaction = %c.interaction_id, request_id = %c.click.request_id, error = %e,
                "could not acknowledge a Discord click; not deciding it");
            return;
        }
        let request_id = c.click.request_id.clone();
        let outcome = decide(desk, c.click.clone()).await;
        if let Err(e) = self.edit_original(&c, &outcome.text(&request_id)).await {
            tracing::warn!(interaction = %c.interaction_id, request_id = %request_id, outcome = outcome.label(), error = %e,
                "could not show a Discord clicker the outcome");
        }
    }

    fn unsupported(what: &str) -> ChatError {
        ChatError::permanent(format!("the Discord client does not support {what}"))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether `s` is a Discord ID (a snowflake: digits only).
fn is_snowflake(s: &str) -> bool {
    (1..=20).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// The lowest snowflake Discord could have issued at `t`.
fn snowflake_at(t: SystemTime) -> u64 {
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    ms.saturating_sub(DISCORD_EPOCH_MS) << 22
}

#[async_trait::async_trait]
impl Chat for DiscordChat {
    fn name(&self) -> &'static str {
        "discord"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            threads: false,
            reviews_on_card: true,
            reactions: false,
        }
    }

    fn count_rate_limits(&self, counter: prometheus_client::metrics::counter::Counter) {
        self.http.count_rate_limits(counter);
    }

    /// The Gateway client, unless `discord.public_key` sends clicks to the
    /// HTTP endpoint (Discord delivers them one way only).
    fn start_clicks(self: std::sync::Arc<Self>, cfg: &ChatConfig, ctx: ClickContext) -> Result<ClickTransports, String> {
        let ChatConfig::Discord { review: Some(r), .. } = cfg else {
            return Ok(ClickTransports::default());
        };
        match &r.public_key {
            Some(key) => {
                let key = hex::decode(key)
                    .ok()
                    .filter(|k| k.len() == 32)
                    .ok_or("discord.public_key is not 64 hex characters (Developer Portal → General Information → Public Key)")?;
                Ok(ClickTransports { routes: Some(endpoint::routes(self, key, ctx)), link: None })
            }
            None => {
                let (tx, rx) = tokio::sync::watch::channel(LinkState::Connecting);
                tokio::spawn(gateway::run(self, ctx, tx));
                Ok(ClickTransports { routes: None, link: Some(("Discord Gateway".into(), rx)) })
            }
        }
    }

    async fn health_check(&self) -> Result<String, ChatError> {
        let v = self
            .http
            .call(Request::get("GET /users/@me", &["users", "@me"]).about("the bot"))
            .await?;
        let id = v["id"].as_str().unwrap_or_default().to_string();
        let name = v["username"].as_str().unwrap_or_default().to_string();
        if !id.is_empty() {
            *lock(&self.bot_id) = Some(id.clone());
        }
        Ok(format!("Discord bot @{name} ({id})"))
    }

    async fn resolve(&self, recipient: &str) -> Result<Target, ChatError> {
        let r = recipient.trim();
        if is_snowflake(r) {
            return Ok(Target(r.to_string()));
        }
        Err(ChatError::permanent(format!(
            "Discord recipient {r:?} is not a channel ID: Discord needs channel IDs (digits; enable Developer Mode, \
             then right-click the channel and Copy Channel ID). Emails and user names cannot be looked up on Discord; \
             requesters get DMs only through [discord.users]"
        )))
    }

    async fn requester_target(&self, user: &str) -> Result<Option<Target>, ChatError> {
        let Some(uid) = self.user_ids.get(user) else {
            return Ok(None);
        };
        if let Some(ch) = self.dms.get(uid) {
            return Ok(Some(Target(ch)));
        }
        let req = Request::post("POST /users/@me/channels", &["users", "@me", "channels"])
            .json(json!({"recipient_id": uid}))
            .about(format!("user {uid}"))
            .missing(Missing::User);
        let v = self.http.call(req).await?;
        let ch = v["id"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let ch = ch.ok_or_else(|| {
            ChatError::transient("Discord answered a DM request without a channel ID")
        })?;
        self.dms.put(uid, ch.clone());
        Ok(Some(Target(ch)))
    }

    async fn post(&self, target: &Target, content: Content<'_>) -> Result<MessageRef, ChatError> {
        self.create_message(&target.0, &content).await
    }

    async fn update(&self, message: &MessageRef, content: Content<'_>) -> Result<(), ChatError> {
        let ch = message.channel_id.as_str();
        let req = Request::new(
            Method::PATCH,
            EDIT_ROUTE,
            &["channels", ch, "messages", &message.message_id],
        )
        .json(render::render(&content).body())
        .major(ch)
        .about(ch)
        .missing(Missing::Message)
        .replaceable();
        self.http.call(req).await.map(drop)
    }

    async fn reply(
        &self,
        _parent: &MessageRef,
        _content: Content<'_>,
    ) -> Result<MessageRef, ChatError> {
        Err(Self::unsupported(
            "thread replies (reviews are shown on the card)",
        ))
    }

    async fn react(&self, _message: &MessageRef, _reaction: Reaction) -> Result<(), ChatError> {
        Err(Self::unsupported("reactions"))
    }

    async fn find_posted(
        &self,
        place: Place<'_>,
        marker: &Marker,
        since: SystemTime,
    ) -> Result<Option<MessageRef>, ChatError> {
        let Place::Target(target) = place else {
            return Err(Self::unsupported("thread replies"));
        };
        let channel = target.0.as_str();
        let bot = self.bot_id().await?;
        // A second of slack for clocks that disagree with Discord's.
        let mut after = snowflake_at(since.checked_sub(Duration::from_secs(1)).unwrap_or(since));
        for _ in 0..MAX_PAGES {
            let req = Request::get(LIST_ROUTE, &["channels", channel, "messages"])
                .query("after", after.to_string())
                .query("limit", PAGE_SIZE.to_string())
                .major(channel)
                .about(channel);
            let v = self.http.call(req).await?;
            let page = v.as_array().cloned().unwrap_or_default();
            for m in &page {
                let content = m["content"].as_str().unwrap_or_default();
                if m["author"]["id"] == bot.as_str() && render::has_marker(content, marker) {
                    let id = m["id"].as_str().unwrap_or_default();
                    if !id.is_empty() {
                        return Ok(Some(MessageRef {
                            channel_id: channel.to_string(),
                            message_id: id.to_string(),
                        }));
                    }
                }
            }
            let newest = page
                .iter()
                .filter_map(|m| m["id"].as_str()?.parse::<u64>().ok())
                .max();
            match newest {
                Some(n) if page.len() >= PAGE_SIZE && n > after => after = n,
                _ => return Ok(None),
            }
        }
        Ok(None)
    }
}

/// Reads Discord answers and its rate-limit headers.
#[derive(Default)]
struct DiscordApi {
    /// Route → Discord's bucket hash, as the headers told us.
    buckets: Mutex<HashMap<String, String>>,
    /// When Discord last rejected the bot token, and the error it gave.
    token_rejected: Mutex<Option<(std::time::Instant, ChatError)>>,
}

/// Routes authenticated by the interaction token in the path, not the bot token.
fn bot_token_route(route: &str) -> bool {
    !(route.starts_with("POST /interactions/") || route.starts_with("PATCH /webhooks/"))
}

impl Api for DiscordApi {
    fn label(&self) -> &'static str {
        "Discord"
    }

    fn bucket(&self, req: &Request) -> String {
        match lock(&self.buckets).get(&req.route) {
            Some(hash) => format!("{hash}:{}", req.major),
            None => format!("{}:{}", req.route, req.major),
        }
    }

    fn refuse(&self, req: &Request) -> Option<ChatError> {
        if !bot_token_route(&req.route) {
            return None;
        }
        let rejected = lock(&self.token_rejected);
        let (at, e) = rejected.as_ref()?;
        (at.elapsed() < TOKEN_RECHECK).then(|| e.clone())
    }

    fn observe(&self, req: &Request, reply: &Reply, gate: &RateGate) {
        if reply.status.is_success() && bot_token_route(&req.route) {
            *lock(&self.token_rejected) = None;
        }
        if let Some(hash) = reply.header("x-ratelimit-bucket").filter(|h| !h.is_empty()) {
            lock(&self.buckets).insert(req.route.clone(), hash.to_string());
        }
        if reply.header("x-ratelimit-remaining") == Some("0")
            && let Some(after) = reply.header_secs("x-ratelimit-reset-after")
        {
            // Reset-After is rounded to milliseconds; waking a little late
            // beats a 429 for being a hair early.
            gate.close(&self.bucket(req), after + RESET_MARGIN);
        }
    }

    fn judge(&self, req: &Request, reply: &Reply) -> Verdict {
        let status = reply.status.as_u16();
        let body = reply.json();
        if status == 429 {
            let b = body.unwrap_or_default();
            let stated = b["retry_after"].as_f64().and_then(|s| http::parse_secs(&s.to_string()));
            if stated.is_none() && reply.header("x-ratelimit-scope").is_none() {
                // Discord's limiter always says `retry_after`; without it
                // this is the ban on the address (invalid requests), and
                // every call would meet it.
                let after = reply.header_secs("retry-after").unwrap_or(BAN_WAIT);
                tracing::warn!(
                    wait_s = after.as_secs(),
                    "Discord is refusing this address for a while (too many invalid requests: 401, 403, 429); pausing every call"
                );
                return Verdict::Limited { after, global: true };
            }
            let after = stated
                .or_else(|| reply.header_secs("retry-after"))
                .unwrap_or(Duration::from_secs(1));
            let global = b["global"] == true || reply.header("x-ratelimit-global") == Some("true");
            return Verdict::Limited { after, global };
        }
        if let Some(v) = http::common::retryable("Discord", reply) {
            return v;
        }
        // Interaction callbacks answer 204 with no body.
        if status == 204 {
            return Verdict::Done(Value::Null);
        }
        if reply.status.is_success() {
            return match body {
                Some(v) => Verdict::Done(v),
                None => http::common::unreadable("Discord", reply),
            };
        }
        let b = body.unwrap_or_default();
        let code = b["code"].as_u64().unwrap_or(0);
        let message = b["message"].as_str().unwrap_or("no details");
        let subject = req.subject.as_str();
        let e = match (status, code) {
            (401, _) => {
                let e = ChatError::permanent(format!(
                    "the Discord token was rejected ({message}): check discord.token (a bot token from the Developer Portal)"
                ));
                if bot_token_route(&req.route) {
                    *lock(&self.token_rejected) = Some((std::time::Instant::now(), e.clone()));
                }
                e
            }
            (403, 50001 | 50013) => ChatError::permanent(format!(
                "the bot lacks access to channel {subject}: give it View Channel and Send Messages \
                 (and Read Message History, to avoid duplicates after a crash) there"
            )),
            (403, 50007) => ChatError::permanent(format!(
                "Discord does not let the bot DM {subject}: the user must share a server with the bot and allow DMs from its members"
            )),
            (404, 10003) => ChatError::permanent(format!(
                "Discord channel {subject} does not exist or the bot is not in its server (code 10003 Unknown Channel)"
            )),
            (404, 10008) => ChatError::gone(format!(
                "the Discord message in channel {subject} no longer exists"
            )),
            (404, 10013) => ChatError::not_found(format!("Discord {subject} does not exist")),
            (404, _) => match req.missing {
                Missing::Message => ChatError::gone(format!(
                    "the Discord message in channel {subject} no longer exists"
                )),
                Missing::User => ChatError::not_found(format!("Discord {subject} does not exist")),
                Missing::Channel => ChatError::permanent(format!(
                    "Discord {} for {subject}: not found ({message})",
                    req.route
                )),
            },
            (400, 50035) => ChatError::permanent(format!(
                "Discord rejected the message for channel {subject}: {}",
                form_errors(&b["errors"]).unwrap_or_else(|| message.to_string())
            )),
            _ => ChatError::permanent(format!(
                "Discord {} failed for {subject}: {message} (code {code}, HTTP {status})",
                req.route
            )),
        };
        Verdict::Fail(e)
    }
}

/// Flattens Discord's nested form errors: "content: Must be 2000 or fewer in length.; embeds.0.title: …".
fn form_errors(errors: &Value) -> Option<String> {
    fn walk(v: &Value, path: &mut Vec<String>, out: &mut Vec<String>) {
        let Some(obj) = v.as_object() else { return };
        for (k, child) in obj {
            if k == "_errors" {
                for e in child.as_array().into_iter().flatten() {
                    let msg = e["message"]
                        .as_str()
                        .or(e["code"].as_str())
                        .unwrap_or("invalid");
                    out.push(format!("{}: {msg}", path.join(".")));
                }
            } else {
                path.push(k.clone());
                walk(child, path, out);
                path.pop();
            }
        }
    }
    let mut out = Vec::new();
    walk(errors, &mut Vec::new(), &mut out);
    (!out.is_empty()).then(|| {
        super::text::truncate(&out.into_iter().take(5).collect::<Vec<_>>().join("; "), 500)
    })
}

#[cfg(test)]
mod tests {
    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;

    use super::*;
    use crate::chat::ErrorKind;

    fn reply(status: u16, body: Value, headers: &[(&'static str, &str)]) -> Reply {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, v.parse().unwrap());
        }
        Reply {
            status: StatusCode::from_u16(status).unwrap(),
            headers: h,
            body: serde_json::to_vec(&body).unwrap(),
        }
    }

    fn post_req() -> Request {
        Request::post(POST_ROUTE, &["channels", "42", "messages"])
            .major("42")
            .about("42")
    }

    fn fail(v: Verdict) -> ChatError {
        match v {
            Verdict::Fail(e) => e,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn discord_errors_map_to_kinds_and_fixes() {
        let api = DiscordApi::default();
        let e = fail(api.judge(
            &post_req(),
            &reply(401, json!({"message": "401: Unauthorized", "code": 0}), &[]),
        ));
        assert!(
            e.message.starts_with("the Discord token was rejected"),
            "{}",
            e.message
        );
        for code in [50001, 50013] {
            let e = fail(api.judge(
                &post_req(),
                &reply(403, json!({"message": "Missing Access", "code": code}), &[]),
            ));
            assert_eq!(e.kind, ErrorKind::Permanent);
            assert!(
                e.message.starts_with(
                    "the bot lacks access to channel 42: give it View Channel and Send Messages"
                ),
                "{}",
                e.message
            );
        }
        let e = fail(api.judge(
            &post_req(),
            &reply(
                404,
                json!({"message": "Unknown Channel", "code": 10003}),
                &[],
            ),
        ));
        assert_eq!(e.kind, ErrorKind::Permanent);
        let edit = Request::new(Method::PATCH, EDIT_ROUTE, &[])
            .about("42")
            .missing(Missing::Message);
        let e = fail(api.judge(
            &edit,
            &reply(
                404,
                json!({"message": "Unknown Message", "code": 10008}),
                &[],
            ),
        ));
        assert_eq!(e.kind, ErrorKind::Gone);
        let form = json!({"message": "Invalid Form Body", "code": 50035, "errors": {"content": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}]}, "embeds": {"0": {"title": {"_errors": [{"code": "X", "message": "Too long."}]}}}}});
        let e = fail(api.judge(&post_req(), &reply(400, form, &[])));
        assert_eq!(
            e.message,
            "Discord rejected the message for channel 42: content: Must be 2000 or fewer in length.; embeds.0.title: Too long."
        );
    }

    #[test]
    fn discord_rate_limits_close_buckets() {
        let api = DiscordApi::default();
        let gate = RateGate::default();
        let req = post_req();
        assert_eq!(api.bucket(&req), format!("{POST_ROUTE}:42"));
        let ok = reply(
            200,
            json!({"id": "1"}),
            &[
                ("x-ratelimit-bucket", "abcd"),
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset-after", "2.5"),
            ],
        );
        api.observe(&req, &ok, &gate);
        assert_eq!(api.bucket(&req), "abcd:42");
        let wait = gate.wait_time("abcd:42").expect("bucket closed");
        assert!(
            wait > Duration::from_secs(2) && wait <= Duration::from_millis(2500) + RESET_MARGIN,
            "{wait:?}"
        );
        assert_eq!(
            gate.wait_time("abcd:43"),
            None,
            "other channels are other buckets"
        );

        let limited = reply(
            429,
            json!({"message": "You are being rate limited.", "retry_after": 0.357, "global": true}),
            &[],
        );
        assert!(
            matches!(api.judge(&req, &limited), Verdict::Limited { after, global: true } if after == Duration::from_millis(357))
        );
        assert!(matches!(
            api.judge(&req, &reply(502, json!(null), &[])),
            Verdict::Retry(_)
        ));
    }

    #[test]
    fn a_ban_answer_pauses_every_route() {
        let api = DiscordApi::default();
        let req = post_req();
        let banned = reply(429, json!({"message": "You are being blocked from accessing our API temporarily", "code": 0}), &[]);
        assert!(matches!(api.judge(&req, &banned), Verdict::Limited { after, global: true } if after == BAN_WAIT));
        // Cloudflare's own page, with a Retry-After.
        let mut page = reply(429, json!(null), &[("retry-after", "120")]);
        page.body = b"<html>error code: 1015</html>".to_vec();
        assert!(matches!(api.judge(&req, &page), Verdict::Limited { after, global: true } if after == Duration::from_secs(120)));
        // Discord's limiter always says retry_after: a route limit stays a route limit.
        let route = reply(429, json!({"message": "You are being rate limited.", "retry_after": 0.5, "global": false}), &[("x-ratelimit-scope", "user")]);
        assert!(matches!(api.judge(&req, &route), Verdict::Limited { global: false, .. }));
    }

    #[test]
    fn a_rejected_token_is_not_sent_until_the_recheck() {
        let api = DiscordApi::default();
        let req = post_req();
        assert_eq!(api.refuse(&req), None);
        let e = fail(api.judge(&req, &reply(401, json!({"message": "401: Unauthorized", "code": 0}), &[])));
        assert_eq!(api.refuse(&req), Some(e));
        let callback = Request::post(CALLBACK_ROUTE, &["interactions", "1", "t", "callback"]);
        assert_eq!(api.refuse(&callback), None, "interaction calls carry their own token");
        if let Some((at, _)) = lock(&api.token_rejected).as_mut()
            && let Some(earlier) = at.checked_sub(TOKEN_RECHECK)
        {
            *at = earlier;
        }
        assert_eq!(api.refuse(&req), None, "one call asks again after the recheck interval");
        let gate = RateGate::default();
        api.judge(&req, &reply(401, json!({"message": "401: Unauthorized", "code": 0}), &[]));
        api.observe(&req, &reply(200, json!({"id": "1"}), &[]), &gate);
        assert_eq!(api.refuse(&req), None, "a success clears the refusal");
    }

    #[test]
    fn only_channel_ids_resolve() {
        assert!(is_snowflake("1234567890123456789"));
        assert!(!is_snowflake("#general"));
        assert!(!is_snowflake("alice@example.com"));
        assert!(!is_snowflake(""));
        assert_eq!(snowflake_at(UNIX_EPOCH), 0);
        assert_eq!(
            snowflake_at(UNIX_EPOCH + Duration::from_millis(DISCORD_EPOCH_MS + 1)),
            1 << 22
        );
    }
}
