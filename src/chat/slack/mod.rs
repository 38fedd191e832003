//! Slack Web API client: `chat.postMessage` / `chat.update` with Block Kit,
//! thread replies, reactions, DMs by email, and finding our messages again
//! through message metadata.
//!
//! Review from chat: the cards' Approve/Deny buttons ([`render`]) send their
//! clicks either over Socket Mode ([`socket_mode`], an app-level token) or
//! to a signed HTTP Request URL ([`http_interactivity`], the signing
//! secret). Both read the payload with [`interaction`], hand the click to the
//! review desk and show the outcome to the clicker alone
//! ([`SlackChat::answer_ephemeral`]).
//!
//! Slack answers application errors with HTTP 200 and `{"ok": false, "error":
//! "..."}`; rate limits are HTTP 429 with `Retry-After` (whole seconds) and no
//! remaining-count headers. `chat.postMessage` is limited per channel (about
//! one post a second), every other method per method (its tier).

mod clicks;
pub mod http_interactivity;
pub mod interaction;
pub mod render;
pub mod signature;
pub mod socket_mode;

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::cache::TtlCache;
use super::shared_reads::SharedReads;
use super::click::{Click, ClickSender, decide};
use super::http::{self, Api, ClientOptions, Http, Idempotency, Reply, Request, Verdict};
use super::text::looks_like_email;
use super::{Capabilities, Chat, ChatError, Content, Marker, MessageRef, Place, Reaction, Target};
use crate::config::Secret;

/// Pages of history read when looking for a message (200 messages each).
const MAX_PAGES: usize = 20;
const PAGE_SIZE: &str = "200";

/// Scopes needed to find messages already posted (not in the official list).
const HISTORY_SCOPES: &str = "channels:history, groups:history, im:history";

pub struct SlackChat {
    http: Http<SlackApi>,
    /// Email → user ID (`None`: no such user).
    emails: TtlCache<Option<String>>,
    /// Target as configured (name, user ID) → channel ID, learned from posts
    /// and `conversations.open`.
    channels: TtlCache<String>,
    bot: Mutex<Option<Bot>>,
    /// Posts to `response_url`s: no Authorization header, short timeouts.
    hooks: reqwest::Client,
    /// Host of the API URL: a `response_url` must be on it or below it
    /// (`hooks.slack.com` under `slack.com`), so the bot never posts to a
    /// host it was not configured for.
    api_host: String,
    /// The bot's recent messages per channel, read once for all the
    /// lookups waiting at the time.
    history: SharedReads<String, Vec<Value>>,
}

#[derive(Debug, Clone)]
struct Bot {
    user_id: String,
    bot_id: String,
    team_id: String,
}

impl SlackChat {
    /// A client for the Slack API at `api_url` (e.g. `https://slack.com/api/`).
    pub fn new(api_url: &str, token: Secret) -> Result<Self, String> {
        Self::with_options(api_url, token, ClientOptions::default())
    }

    pub fn with_options(api_url: &str, token: Secret, opts: ClientOptions) -> Result<Self, String> {
        let ttl = opts.lookup_ttl;
        let api_host = reqwest::Url::parse(api_url.trim())
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
            .unwrap_or_default();
        let hooks = reqwest::Client::builder()
            .connect_timeout(opts.connect_timeout)
            .timeout(opts.request_timeout)
            .user_agent(http::user_agent())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the Slack HTTP client: {e}"))?;
        let api = SlackApi {
            bot_name: Mutex::new(None),
        };
        let http = Http::new(
            api_url,
            &format!("Bearer {}", token.expose()),
            &http::user_agent(),
            opts,
            api,
        )?;
        Ok(Self {
            http,
            emails: TtlCache::new(ttl),
            channels: TtlCache::new(ttl),
            bot: Mutex::new(None),
            hooks,
            api_host,
            history: SharedReads::default(),
        })
    }

    /// The ID of the bot's own workspace (from `auth.test`, asked once).
    pub async fn team_id(&self) -> Result<String, ChatError> {
        let team = self.bot().await?.team_id;
        if team.is_empty() {
            return Err(ChatError::transient("Slack auth.test did not say which workspace the bot is in"));
        }
        Ok(team)
    }

    /// Shows `text` to the clicker alone: through the interaction's
    /// `response_url` (ephemeral, the card left as it is) when there is one
    /// on the API's host, else (or when that fails) with
    /// `chat.postEphemeral` in the card's channel.
    pub async fn answer_ephemeral(&self, to: &interaction::ReplyTo, text: &str) -> Result<(), ChatError> {
        if let Some(url) = to.response_url.as_ref() {
            match self.post_response_url(url, text).await {
                Ok(()) => return Ok(()),
                // The URL is never named: it is a credential.
                Err(why) => tracing::debug!(user = %to.user_id, %why, "answering through the response URL failed; using chat.postEphemeral"),
            }
        }
        if to.channel_id.is_empty() {
            return Err(ChatError::permanent("the click named no channel to answer the clicker in"));
        }
        let mut args = json!({"channel": to.channel_id, "user": to.user_id, "text": text});
        if let Some(ts) = &to.thread_ts {
            args["thread_ts"] = json!(ts);
        }
        self.call("chat.postEphemeral", args, &to.channel_id, Idempotency::Safe).await.map(drop)
    }

    async fn post_response_url(&self, url: &Secret, text: &str) -> Result<(), String> {
        let parsed = reqwest::Url::parse(url.expose()).map_err(|_| "the response URL does not parse".to_string())?;
        let host = parsed.host_str().unwrap_or_default().to_ascii_lowercase();
        let on_api_host = !self.api_host.is_empty()
            && (host == self.api_host || host.ends_with(&format!(".{}", self.api_host)));
        if !matches!(parsed.scheme(), "https" | "http") || !on_api_host {
            return Err(format!("the response URL is not on the API host {}", self.api_host));
        }
        let body = json!({"text": text, "response_type": "ephemeral", "replace_original": false});
        let resp = self.hooks.post(parsed).json(&body).send().await.map_err(|e| {
            if e.is_timeout() { "no answer in time".to_string() } else { "the request failed".to_string() }
        })?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", resp.status().as_u16()))
        }
    }

    async fn call(
        &self,
        method: &'static str,
        args: Value,
        subject: &str,
        idem: Idempotency,
    ) -> Result<Value, ChatError> {
        self.http
            .call(
                Request::post(method, &[method])
                    .json(args)
                    .about(subject)
                    .idempotency(idem),
            )
            .await
    }

    async fn get(
        &self,
        method: &'static str,
        query: &[(&'static str, String)],
        subject: &str,
    ) -> Result<Value, ChatError> {
        let mut req = Request::get(method, &[method]).about(subject);
        req.query = query.to_vec();
        self.http.call(req).await
    }

    /// Who we are (cached after the first `auth.test`).
    async fn bot(&self) -> Result<Bot, ChatError> {
        if let Some(b) = lock(&self.bot).clone() {
            return Ok(b);
        }
        self.health_check().await?;
        lock(&self.bot)
            .clone()
            .ok_or_else(|| ChatError::transient("Slack auth.test did not say who the bot is"))
    }

    /// The user ID of the Slack user with `email`.
    async fn lookup_email(&self, email: &str) -> Result<String, ChatError> {
        let not_found = || ChatError::not_found(format!("no Slack user has the email {email}"));
        if let Some(hit) = self.emails.get(email) {
            return hit.ok_or_else(not_found);
        }
        match self
            .get(
                "users.lookupByEmail",
                &[("email", email.to_string())],
                email,
            )
            .await
        {
            Ok(v) => {
                let id = v["user"]["id"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .map(str::to_string);
                let id = id.ok_or_else(|| {
                    ChatError::transient("Slack users.lookupByEmail answered without a user ID")
                })?;
                self.emails.put(email, Some(id.clone()));
                Ok(id)
            }
            Err(e) if e.kind == super::ErrorKind::NotFound => {
                self.emails.put(email, None);
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// The channel ID behind a target, for reading history.
    async fn channel_id(&self, target: &Target) -> Result<String, ChatError> {
        let t = target.0.as_str();
        if let Some('C' | 'G' | 'D') = slack_id_kind(t) {
            return Ok(t.to_string());
        }
        if let Some(id) = self.channels.get(t) {
            return Ok(id);
        }
        if slack_id_kind(t).is_some() {
            // A user ID: its DM with the app.
            let v = self
                .call(
                    "conversations.open",
                    json!({"users": t}),
                    t,
                    Idempotency::Safe,
                )
                .await?;
            let id = v["channel"]["id"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string);
            let id = id.ok_or_else(|| {
                ChatError::transient("Slack conversations.open answered without a channel ID")
            })?;
            self.channels.put(t, id.clone());
            return Ok(id);
        }
        // A channel name: find its ID in the channel list.
        let name = t.trim_start_matches('#');
        match self.find_channel_by_name(name).await {
            Ok(Some(id)) => {
                self.channels.put(t, id.clone());
                Ok(id)
            }
            Ok(None) => Err(ChatError::permanent(format!("Slack channel {t} does not exist or the app cannot see it"))),
            Err(e) if e.is_transient() => Err(e),
            Err(e) => Err(ChatError::permanent(format!(
                "cannot look for earlier messages in Slack channel {t}: finding its ID needs the channels:read and \
                 groups:read scopes, or use the channel ID (C…, from the channel details) in role_to_recipients ({e})"
            ))),
        }
    }

    /// The ID of the public or private channel called `name`.
    async fn find_channel_by_name(&self, name: &str) -> Result<Option<String>, ChatError> {
        let mut cursor = String::new();
        for _ in 0..MAX_PAGES {
            let mut args = json!({"types": "public_channel,private_channel", "exclude_archived": true, "limit": 1000});
            if !cursor.is_empty() {
                args["cursor"] = json!(cursor);
            }
            let v = self.call("conversations.list", args, name, Idempotency::Safe).await?;
            if let Some(c) = v["channels"].as_array().into_iter().flatten().find(|c| c["name"] == name) {
                return Ok(c["id"].as_str().map(str::to_string));
            }
            cursor = v["response_metadata"]["next_cursor"].as_str().unwrap_or_default().to_string();
            if cursor.is_empty() {
                return Ok(None);
            }
        }
        Ok(None)
    }

    async fn post_message(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        content: &Content<'_>,
    ) -> Result<MessageRef, ChatError> {
        let msg = render::render(content);
        let mut args = json!({
            "channel": channel,
            "text": msg.text,
            "blocks": msg.blocks,
            "metadata": render::metadata(&content.marker()),
            "unfurl_links": false,
            "unfurl_media": false,
        });
        if let Some(ts) = thread_ts {
            args["thread_ts"] = json!(ts);
        }
        // Posting is limited per channel: a name and its ID share a bucket.
        let bucket = self.channels.get(channel).unwrap_or_else(|| channel.to_string());
        let req = Request::post("chat.postMessage", &["chat.postMessage"])
            .json(args)
            .about(channel)
            .major(bucket)
            .idempotency(Idempotency::Create);
        let v = self.http.call(req).await?;
        match (v["channel"].as_str(), v["ts"].as_str()) {
            (Some(ch), Some(ts)) if !ch.is_empty() && !ts.is_empty() => {
                self.channels.put(channel, ch.to_string());
                Ok(MessageRef {
                    channel_id: ch.to_string(),
                    message_id: ts.to_string(),
                })
            }
            _ => Err(ChatError::transient(
                "Slack chat.postMessage answered without channel and ts",
            )
            .maybe_applied()),
        }
    }

    /// Reads `method` (history or replies) page by page, looking for a
    /// message of ours with `marker`.
    async fn scan(
        &self,
        method: &'static str,
        base: Vec<(&'static str, String)>,
        channel: &str,
        marker: &Marker,
        skip_ts: Option<&str>,
    ) -> Result<Option<MessageRef>, ChatError> {
        let mut found = None;
        self.walk_ours(method, base, channel, |m, ts| {
            if Some(ts) != skip_ts && render::has_marker(m, marker) {
                found = Some(MessageRef { channel_id: channel.to_string(), message_id: ts.to_string() });
            }
            found.is_some()
        })
        .await?;
        Ok(found)
    }

    /// The bot's own messages in `channel` since `from` (µs since the
    /// epoch), newest first, up to [`MAX_PAGES`] pages: only their `ts` and
    /// `metadata`, all a lookup matches on (the read is kept per channel).
    async fn history_since(&self, channel: &str, from: u64) -> Result<Vec<Value>, ChatError> {
        let q = vec![("channel", channel.to_string()), ("oldest", slack_ts(from)), ("inclusive", "true".into())];
        let mut ours = Vec::new();
        self.walk_ours("conversations.history", q, channel, |m, ts| {
            ours.push(json!({ "ts": ts, "metadata": m["metadata"] }));
            false
        })
        .await?;
        Ok(ours)
    }

    /// Pages through `method`, handing each message the bot wrote (and
    /// its `ts`) to `visit` until it returns true or the pages run out.
    async fn walk_ours(
        &self,
        method: &'static str,
        base: Vec<(&'static str, String)>,
        channel: &str,
        mut visit: impl FnMut(&Value, &str) -> bool,
    ) -> Result<(), ChatError> {
        let bot = self.bot().await?;
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut q = base.clone();
            q.push(("include_all_metadata", "true".into()));
            q.push(("limit", PAGE_SIZE.into()));
            if let Some(c) = &cursor {
                q.push(("cursor", c.clone()));
            }
            let v = self.get(method, &q, channel).await?;
            for m in v["messages"].as_array().into_iter().flatten() {
                let ts = m["ts"].as_str().unwrap_or_default();
                let ours = m["user"] == bot.user_id.as_str() || m["bot_id"] == bot.bot_id.as_str();
                if ours && !ts.is_empty() && visit(m, ts) {
                    return Ok(());
                }
            }
            cursor = v["response_metadata"]["next_cursor"]
                .as_str()
                .filter(|c| !c.is_empty())
                .map(str::to_string);
            if v["has_more"] != true || cursor.is_none() {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// Decides `click` with the review desk and shows the outcome to the
/// clicker alone; `via` names the transport in the log line.
async fn settle(chat: &SlackChat, desk: &ClickSender, click: Click, reply: interaction::ReplyTo, via: &'static str) {
    let request_id = click.request_id.clone();
    let (user, decision) = (click.user_id.clone(), click.decision);
    let outcome = decide(desk, click).await;
    tracing::info!(request = %request_id, user = %user, decision = decision.as_str(), outcome = outcome.label(), via, "Slack click");
    if let Err(e) = chat.answer_ephemeral(&reply, &outcome.text(&request_id)).await {
        tracing::warn!(request = %request_id, user = %user, error = %e, "could not show the click's outcome to the Slack user");
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The email of a `users.info` user when Slack vouches for it: a confirmed
/// address of an active human account (not deleted, not a bot, not Slackbot).
/// Without the `users:read.email` scope Slack leaves the email out.
fn vouched_email(user: &Value) -> Option<String> {
    let human = user["deleted"] != true && user["is_bot"] != true && user["id"] != "USLACKBOT";
    let confirmed = user["is_email_confirmed"] == true;
    let email = user["profile"]["email"].as_str().map(str::trim).filter(|e| looks_like_email(e))?;
    (human && confirmed).then(|| email.to_string())
}

/// `Some(first letter)` when `s` is a Slack ID (C…, G…, D… channels; U…, W… users).
fn slack_id_kind(s: &str) -> Option<char> {
    let first = s.chars().next()?;
    let id_like = s.len() >= 9
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    (id_like && "CGDUW".contains(first)).then_some(first)
}

/// Slack's `ts` form of a time in µs since the epoch ("1712345678.000123").
fn slack_ts(micros: u64) -> String {
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

fn unix_micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_micros() as u64
}

#[async_trait::async_trait]
impl Chat for SlackChat {
    fn name(&self) -> &'static str {
        "slack"
    }

    fn start_clicks(
        self: std::sync::Arc<Self>,
        cfg: &crate::config::ChatConfig,
        ctx: super::click::ClickContext,
    ) -> Result<super::click::ClickTransports, String> {
        clicks::start(self, cfg, ctx)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            threads: true,
            reviews_on_card: false,
            reactions: true,
        }
    }

    fn count_rate_limits(&self, counter: prometheus_client::metrics::counter::Counter) {
        self.http.count_rate_limits(counter);
    }

    async fn health_check(&self) -> Result<String, ChatError> {
        let v = self
            .call("auth.test", json!({}), "auth.test", Idempotency::Safe)
            .await?;
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        *lock(&self.bot) = Some(Bot {
            user_id: s("user_id"),
            bot_id: s("bot_id"),
            team_id: s("team_id"),
        });
        *lock(&self.http.api().bot_name) = Some(s("user")).filter(|n| !n.is_empty());
        Ok(format!(
            "Slack bot @{} ({}) in workspace {}",
            s("user"),
            s("user_id"),
            s("team")
        ))
    }

    async fn resolve(&self, recipient: &str) -> Result<Target, ChatError> {
        let r = recipient.trim();
        if r.is_empty() {
            return Err(ChatError::permanent(
                "empty Slack recipient: use a channel name or ID, a user ID or an email",
            ));
        }
        if looks_like_email(r) {
            return Ok(Target(self.lookup_email(r).await?));
        }
        // Channel names (with or without '#'), channel IDs and user IDs are
        // accepted by chat.postMessage as they are.
        Ok(Target(r.to_string()))
    }

    async fn requester_target(&self, user: &str) -> Result<Option<Target>, ChatError> {
        if !looks_like_email(user) {
            return Ok(None);
        }
        match self.lookup_email(user).await {
            Ok(id) => Ok(Some(Target(id))),
            Err(e) if e.kind == super::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn post(&self, target: &Target, content: Content<'_>) -> Result<MessageRef, ChatError> {
        self.post_message(&target.0, None, &content).await
    }

    async fn update(&self, message: &MessageRef, content: Content<'_>) -> Result<(), ChatError> {
        let msg = render::render(&content);
        let args = json!({
            "channel": message.channel_id,
            "ts": message.message_id,
            "text": msg.text,
            "blocks": msg.blocks,
            "metadata": render::metadata(&content.marker()),
        });
        // A newer state replaces this edit rather than waiting behind it.
        let req = Request::post("chat.update", &["chat.update"])
            .json(args)
            .about(&message.channel_id)
            .replaceable();
        self.http.call(req).await.map(drop)
    }

    async fn reply(
        &self,
        parent: &MessageRef,
        content: Content<'_>,
    ) -> Result<MessageRef, ChatError> {
        self.post_message(&parent.channel_id, Some(&parent.message_id), &content)
            .await
    }

    async fn react(&self, message: &MessageRef, reaction: Reaction) -> Result<(), ChatError> {
        let name = match reaction {
            Reaction::Approved => "white_check_mark",
            Reaction::Denied => "x",
        };
        let args =
            json!({"channel": message.channel_id, "timestamp": message.message_id, "name": name});
        self.call(
            "reactions.add",
            args,
            &message.channel_id,
            Idempotency::Safe,
        )
        .await
        .map(drop)
    }

    async fn verified_email(&self, user_id: &str) -> Result<Option<String>, ChatError> {
        let v = match self.get("users.info", &[("user", user_id.to_string())], user_id).await {
            Ok(v) => v,
            Err(e) if e.kind == super::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(vouched_email(&v["user"]))
    }

    async fn find_posted(
        &self,
        place: Place<'_>,
        marker: &Marker,
        since: SystemTime,
    ) -> Result<Option<MessageRef>, ChatError> {
        // A second of slack for clocks that disagree with Slack's.
        let start = unix_micros(since.checked_sub(Duration::from_secs(1)).unwrap_or(since));
        match place {
            Place::Target(target) => {
                // Lookups of one channel share a history read (see
                // `shared_reads`): after a burst of uncertain posts they would
                // otherwise queue behind the method's rate limit for minutes.
                let channel = self.channel_id(target).await?;
                let ours = self.history.read(&channel, start, |from| self.history_since(&channel, from)).await?;
                Ok(ours.iter().find(|m| render::has_marker(m, marker)).map(|m| MessageRef {
                    channel_id: channel.clone(),
                    message_id: m["ts"].as_str().unwrap_or_default().to_string(),
                }))
            }
            Place::Thread(parent) => {
                let q = vec![
                    ("channel", parent.channel_id.clone()),
                    ("ts", parent.message_id.clone()),
                    ("oldest", slack_ts(start)),
                    ("inclusive", "true".into()),
                ];
                self.scan(
                    "conversations.replies",
                    q,
                    &parent.channel_id,
                    marker,
                    Some(&parent.message_id),
                )
                .await
            }
        }
    }
}

/// Reads Slack answers.
struct SlackApi {
    /// The bot's name once known, for "/invite @name" hints.
    bot_name: Mutex<Option<String>>,
}

impl Api for SlackApi {
    fn label(&self) -> &'static str {
        "Slack"
    }

    fn bucket(&self, req: &Request) -> String {
        if req.route == "chat.postMessage" {
            format!("chat.postMessage {}", req.major)
        } else {
            req.route.clone()
        }
    }

    fn judge(&self, req: &Request, reply: &Reply) -> Verdict {
        if reply.status.as_u16() == 429 {
            let after = reply
                .header_secs("retry-after")
                .unwrap_or(Duration::from_secs(1));
            return Verdict::Limited {
                after,
                global: false,
            };
        }
        if let Some(v) = http::common::retryable("Slack", reply) {
            return v;
        }
        let Some(body) = reply.json() else {
            return if reply.status.is_success() {
                http::common::unreadable("Slack", reply)
            } else {
                Verdict::Fail(ChatError::permanent(format!(
                    "Slack {} answered HTTP {}",
                    req.route,
                    reply.status.as_u16()
                )))
            };
        };
        if body["ok"] == true {
            return Verdict::Done(body);
        }
        let code = body["error"].as_str().unwrap_or("unknown_error");
        if !reply.status.is_success() && body["error"].is_null() {
            return Verdict::Fail(ChatError::permanent(format!(
                "Slack {} answered HTTP {}",
                req.route,
                reply.status.as_u16()
            )));
        }
        self.error(req, reply, code, &body)
    }
}

impl SlackApi {
    fn error(&self, req: &Request, reply: &Reply, code: &str, body: &Value) -> Verdict {
        let method = req.route.as_str();
        let subject = req.subject.as_str();
        let history = matches!(
            method,
            "conversations.history" | "conversations.replies" | "conversations.open"
        );
        let e = match code {
            "ratelimited" => {
                let after = reply
                    .header_secs("retry-after")
                    .unwrap_or(Duration::from_secs(1));
                return Verdict::Limited {
                    after,
                    global: false,
                };
            }
            "already_reacted" => return Verdict::Done(body.clone()),
            "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => {
                return Verdict::Retry(format!("Slack {method} failed: {code}"));
            }
            "not_in_channel" => {
                let bot = lock(&self.bot_name)
                    .clone()
                    .unwrap_or_else(|| "<your Slack app>".into());
                ChatError::permanent(format!(
                    "the Slack app is not in channel {subject}: invite it with /invite @{bot}"
                ))
            }
            "channel_not_found" => ChatError::permanent(format!(
                "Slack channel {subject} does not exist or the app cannot see it (private channels need an invitation)"
            )),
            "is_archived" | "channel_is_archived" => ChatError::permanent(format!(
                "Slack channel {subject} is archived: unarchive it or route to another channel"
            )),
            "invalid_auth"
            | "not_authed"
            | "token_revoked"
            | "token_expired"
            | "account_inactive"
            | "not_allowed_token_type" => ChatError::permanent(format!(
                "the Slack token was rejected ({code}): check slack.token"
            )),
            "missing_scope" => {
                let needed = body["needed"].as_str().unwrap_or("unknown");
                if history {
                    ChatError::permanent(format!(
                        "exactly-once delivery after a crash needs the Slack scopes {HISTORY_SCOPES} (and im:write for DMs) \
                         to find messages already posted; Slack said {method} needs {needed}: add the scopes to the Slack app \
                         and reinstall it (until then a message whose post failed midway may be posted twice)"
                    ))
                } else {
                    ChatError::permanent(format!(
                        "the Slack token lacks the scope {needed} needed for {method}: add it under OAuth & Permissions, \
                         reinstall the Slack app and update slack.token"
                    ))
                }
            }
            "users_not_found" | "user_not_found" => {
                ChatError::not_found(format!("no Slack user matches {subject}"))
            }
            "message_not_found" | "thread_not_found" | "cant_update_message" => ChatError::gone(
                format!("the Slack message in {subject} no longer exists ({code})"),
            ),
            "msg_too_long"
            | "invalid_blocks"
            | "invalid_blocks_format"
            | "no_text"
            | "invalid_arguments"
            | "invalid_metadata_format"
            | "invalid_metadata_schema"
            | "metadata_too_large"
            | "too_many_attachments" => ChatError::permanent(format!(
                "Slack rejected the message for {subject} ({code}){}",
                details(body)
            )),
            "restricted_action"
            | "restricted_action_read_only_channel"
            | "restricted_action_thread_only_channel"
            | "restricted_action_non_threadable_channel"
            | "cannot_dm_bot"
            | "ekm_access_denied"
            | "team_access_not_granted" => ChatError::permanent(format!(
                "Slack does not let the app post to {subject} ({code}): check the channel's posting permissions"
            )),
            other => ChatError::permanent(format!(
                "Slack {method} failed for {subject}: {other}{}",
                details(body)
            )),
        };
        Verdict::Fail(e)
    }
}

/// Slack's explanations (`response_metadata.messages`), briefly.
fn details(body: &Value) -> String {
    let msgs: Vec<&str> = body["response_metadata"]["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .take(3)
        .collect();
    if msgs.is_empty() {
        String::new()
    } else {
        format!(": {}", super::text::truncate(&msgs.join("; "), 500))
    }
}

#[cfg(test)]
mod tests {
    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;

    use super::*;
    use crate::chat::ErrorKind;

    fn judge(
        method: &str,
        subject: &str,
        status: u16,
        body: Value,
        headers: &[(&'static str, &str)],
    ) -> Verdict {
        let api = SlackApi {
            bot_name: Mutex::new(Some("teleport".into())),
        };
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, v.parse().unwrap());
        }
        let reply = Reply {
            status: StatusCode::from_u16(status).unwrap(),
            headers: h,
            body: serde_json::to_vec(&body).unwrap(),
        };
        api.judge(
            &Request::post(method.to_string(), &[method]).about(subject),
            &reply,
        )
    }

    fn fail(v: Verdict) -> ChatError {
        match v {
            Verdict::Fail(e) => e,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn slack_errors_map_to_kinds_and_fixes() {
        let ok = judge(
            "chat.postMessage",
            "C1",
            200,
            json!({"ok": true, "ts": "1.2"}),
            &[],
        );
        assert!(matches!(ok, Verdict::Done(v) if v["ts"] == "1.2"));

        let cases: &[(&str, ErrorKind, &str)] = &[
            (
                "not_in_channel",
                ErrorKind::Permanent,
                "the Slack app is not in channel #ops: invite it with /invite @teleport",
            ),
            (
                "channel_not_found",
                ErrorKind::Permanent,
                "Slack channel #ops does not exist or the app cannot see it (private channels need an invitation)",
            ),
            (
                "invalid_auth",
                ErrorKind::Permanent,
                "the Slack token was rejected (invalid_auth): check slack.token",
            ),
            (
                "token_revoked",
                ErrorKind::Permanent,
                "the Slack token was rejected (token_revoked): check slack.token",
            ),
            (
                "account_inactive",
                ErrorKind::Permanent,
                "the Slack token was rejected (account_inactive): check slack.token",
            ),
            (
                "users_not_found",
                ErrorKind::NotFound,
                "no Slack user matches #ops",
            ),
            (
                "message_not_found",
                ErrorKind::Gone,
                "the Slack message in #ops no longer exists (message_not_found)",
            ),
            (
                "msg_too_long",
                ErrorKind::Permanent,
                "Slack rejected the message for #ops (msg_too_long)",
            ),
        ];
        for (code, kind, msg) in cases {
            let e = fail(judge(
                "chat.postMessage",
                "#ops",
                200,
                json!({"ok": false, "error": code}),
                &[],
            ));
            assert_eq!((&e.kind, e.message.as_str()), (kind, *msg), "{code}");
        }

        let e = fail(judge(
            "chat.postMessage",
            "C1",
            200,
            json!({"ok": false, "error": "invalid_blocks", "response_metadata": {"messages": ["[ERROR] must be less than 3001 characters"]}}),
            &[],
        ));
        assert!(
            e.message
                .ends_with("(invalid_blocks): [ERROR] must be less than 3001 characters"),
            "{}",
            e.message
        );

        let e = fail(judge(
            "reactions.add",
            "C1",
            200,
            json!({"ok": false, "error": "missing_scope", "needed": "reactions:write"}),
            &[],
        ));
        assert!(
            e.message
                .contains("lacks the scope reactions:write needed for reactions.add"),
            "{}",
            e.message
        );
        let e = fail(judge(
            "conversations.history",
            "C1",
            200,
            json!({"ok": false, "error": "missing_scope", "needed": "channels:history"}),
            &[],
        ));
        assert!(e.message.contains("exactly-once delivery after a crash needs the Slack scopes channels:history, groups:history, im:history"), "{}", e.message);
        assert_eq!(e.kind, ErrorKind::Permanent);
    }

    #[test]
    fn slack_rate_limits_and_server_errors_are_retryable() {
        assert!(matches!(
            judge("chat.postMessage", "C1", 429, json!({"ok": false, "error": "ratelimited"}), &[("retry-after", "7")]),
            Verdict::Limited { after, global: false } if after == Duration::from_secs(7)
        ));
        assert!(matches!(
            judge(
                "chat.update",
                "C1",
                200,
                json!({"ok": false, "error": "ratelimited"}),
                &[]
            ),
            Verdict::Limited { .. }
        ));
        assert!(matches!(
            judge(
                "chat.update",
                "C1",
                503,
                json!({"ok": false, "error": "service_unavailable"}),
                &[]
            ),
            Verdict::Retry(_)
        ));
        assert!(matches!(
            judge(
                "chat.update",
                "C1",
                200,
                json!({"ok": false, "error": "internal_error"}),
                &[]
            ),
            Verdict::Retry(_)
        ));
        assert!(matches!(
            judge(
                "reactions.add",
                "C1",
                200,
                json!({"ok": false, "error": "already_reacted"}),
                &[]
            ),
            Verdict::Done(_)
        ));
        let e = fail(judge(
            "nope.method",
            "C1",
            404,
            json!({"ok": false, "error": "unknown_method"}),
            &[],
        ));
        assert_eq!(e.kind, ErrorKind::Permanent);
    }

    #[test]
    fn only_confirmed_emails_of_active_humans_are_vouched_for() {
        let user = |f: &dyn Fn(&mut Value)| {
            let mut u = json!({"id": "U0ALICE01", "deleted": false, "is_bot": false, "is_email_confirmed": true,
                "profile": {"email": "alice@example.com"}});
            f(&mut u);
            vouched_email(&u)
        };
        assert_eq!(user(&|_| {}).as_deref(), Some("alice@example.com"));
        assert_eq!(user(&|u| u["is_email_confirmed"] = json!(false)), None);
        assert_eq!(user(&|u| { u.as_object_mut().unwrap().remove("is_email_confirmed"); }), None, "unknown is not confirmed");
        assert_eq!(user(&|u| u["deleted"] = json!(true)), None);
        assert_eq!(user(&|u| u["is_bot"] = json!(true)), None);
        assert_eq!(user(&|u| u["id"] = json!("USLACKBOT")), None);
        assert_eq!(user(&|u| { u["profile"].as_object_mut().unwrap().remove("email"); }), None, "no users:read.email scope");
        assert_eq!(user(&|u| u["profile"]["email"] = json!("not an email")), None);
    }

    #[test]
    fn slack_ids_are_told_apart_from_names() {
        assert_eq!(slack_id_kind("C0123ABCDE"), Some('C'));
        assert_eq!(slack_id_kind("U0SIMBOT01"), Some('U'));
        assert_eq!(slack_id_kind("D0SIM000001"), Some('D'));
        assert_eq!(slack_id_kind("general"), None);
        assert_eq!(slack_id_kind("#general"), None);
        assert_eq!(slack_id_kind("CHANNEL"), None, "too short");
        assert_eq!(
            slack_ts(unix_micros(UNIX_EPOCH + Duration::from_micros(1_712_345_678_000_123))),
            "1712345678.000123"
        );
    }
}
