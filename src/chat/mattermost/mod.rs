//! Mattermost REST (v4) client: markdown posts edited in place, review
//! replies in the card's thread, DMs by email, and finding our posts again
//! through their props.
//!
//! Errors are Mattermost "app errors" (`{id, message, status_code}`). Rate
//! limits apply per user across all routes: a 429 or `X-Ratelimit-Remaining:
//! 0` closes every call until `X-Ratelimit-Reset` (seconds).

pub mod actions;
pub mod render;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde_json::{Value, json};

use super::cache::TtlCache;
use super::shared_reads::SharedReads;
use super::http::{
    self, Api, ClientOptions, Http, Idempotency, Missing, RateGate, Reply, Request, Verdict,
};
use super::text::looks_like_email;
use super::{Capabilities, Chat, ChatError, Content, Marker, MessageRef, Place, Reaction, Target};
use crate::config::Secret;

pub struct MattermostChat {
    http: Http<MattermostApi>,
    /// Recipient (email, team/channel) → channel ID; `None`: no such user.
    recipients: TtlCache<Option<String>>,
    bot_id: Mutex<Option<String>>,
    /// Signs the Approve/Deny buttons, when review from Mattermost is on.
    actions: Option<Arc<actions::Signer>>,
    /// The bot's recent top-level posts per channel (id, time, props), read
    /// once for every lookup waiting at the same time.
    recent: SharedReads<String, Vec<Value>>,
}

impl MattermostChat {
    /// A client for the Mattermost server at `url` (e.g. `https://mattermost.example.com`).
    pub fn new(url: &str, token: Secret) -> Result<Self, String> {
        Self::with_options(url, token, ClientOptions::default())
    }

    pub fn with_options(url: &str, token: Secret, opts: ClientOptions) -> Result<Self, String> {
        let ttl = opts.lookup_ttl;
        let http = Http::new(
            url,
            &format!("Bearer {}", token.expose()),
            &http::user_agent(),
            opts,
            MattermostApi,
        )?;
        Ok(Self {
            http,
            recipients: TtlCache::new(ttl),
            bot_id: Mutex::new(None),
            actions: None,
            recent: SharedReads::default(),
        })
    }

    /// Cards carry Approve/Deny buttons signed by `signer`.
    pub fn with_actions(mut self, signer: actions::Signer) -> Self {
        self.actions = Some(Arc::new(signer));
        self
    }

    /// Post props for `content`: the marker, and a card's buttons.
    fn props_for(&self, content: &Content<'_>) -> Value {
        let mut props = render::props(&content.marker());
        if let (Some(signer), Content::Card(v)) = (&self.actions, content) {
            props["attachments"] = signer.attachments(v);
        }
        props
    }

    /// A request to `api/v4/<segments>`.
    fn req(method: Method, route: &str, segments: &[&str]) -> Request {
        let mut all = vec!["api", "v4"];
        all.extend_from_slice(segments);
        Request::new(method, route, &all)
    }

    async fn bot_id(&self) -> Result<String, ChatError> {
        if let Some(id) = lock(&self.bot_id).clone() {
            return Ok(id);
        }
        self.health_check().await?;
        lock(&self.bot_id)
            .clone()
            .ok_or_else(|| ChatError::transient("Mattermost users/me did not say who the bot is"))
    }

    /// The direct channel between the bot and the user with `email`.
    async fn direct_channel(&self, email: &str) -> Result<String, ChatError> {
        let not_found =
            || ChatError::not_found(format!("no Mattermost user has the email {email}"));
        if let Some(hit) = self.recipients.get(email) {
            return hit.ok_or_else(not_found);
        }
        let req = Self::req(
            Method::GET,
            "GET /users/email/{email}",
            &["users", "email", email],
        )
        .about(email)
        .missing(Missing::User);
        let user = match self.http.call(req).await {
            Ok(u) => u,
            Err(e) if e.kind == super::ErrorKind::NotFound => {
                self.recipients.put(email, None);
                return Err(not_found());
            }
            Err(e) => return Err(e),
        };
        let uid = user["id"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let uid = uid.ok_or_else(|| {
            ChatError::transient("Mattermost answered a user lookup without an ID")
        })?;
        let bot = self.bot_id().await?;
        let req = Self::req(
            Method::POST,
            "POST /channels/direct",
            &["channels", "direct"],
        )
        .json(json!([bot, uid]))
        .about(email)
        .missing(Missing::User);
        let ch = self.http.call(req).await?;
        let id = ch["id"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let id = id.ok_or_else(|| {
            ChatError::transient("Mattermost answered a direct channel request without an ID")
        })?;
        self.recipients.put(email, Some(id.clone()));
        Ok(id)
    }

    async fn team_channel(
        &self,
        team: &str,
        channel: &str,
        recipient: &str,
    ) -> Result<String, ChatError> {
        if let Some(Some(id)) = self.recipients.get(recipient) {
            return Ok(id);
        }
        let req = Self::req(
            Method::GET,
            "GET /teams/name/{team}/channels/name/{channel}",
            &["teams", "name", team, "channels", "name", channel],
        )
        .about(recipient);
        let v = self.http.call(req).await?;
        let id = v["id"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let id = id.ok_or_else(|| {
            ChatError::transient("Mattermost answered a channel lookup without an ID")
        })?;
        self.recipients.put(recipient, Some(id.clone()));
        Ok(id)
    }

    async fn create_post(
        &self,
        channel: &str,
        root_id: Option<&str>,
        content: &Content<'_>,
    ) -> Result<MessageRef, ChatError> {
        let marker = content.marker();
        let mut body = json!({
            "channel_id": channel,
            "message": render::render(content),
            "props": self.props_for(content),
            "pending_post_id": render::pending_post_id(channel, &marker),
        });
        if let Some(root) = root_id {
            body["root_id"] = json!(root);
        }
        let req = Self::req(Method::POST, "POST /posts", &["posts"])
            .json(body)
            .about(channel)
            .missing(if root_id.is_some() {
                Missing::Message
            } else {
                Missing::Channel
            })
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
                ChatError::transient("Mattermost answered a post without an ID").maybe_applied(),
            ),
        }
    }
}

impl MattermostChat {
    /// Mattermost answers an edit of a deleted post (or a reply to one) with
    /// 403 or 400, like a permission problem; asking for the post tells the two apart.
    async fn gone_or(&self, message: &MessageRef, e: ChatError) -> ChatError {
        if e.kind != super::ErrorKind::Permanent {
            return e;
        }
        let probe = Self::req(
            Method::GET,
            "GET /posts/{post_id}",
            &["posts", &message.message_id],
        )
        .about(&message.channel_id)
        .missing(Missing::Message);
        match self.http.call(probe).await {
            Err(gone) if gone.kind == super::ErrorKind::Gone => gone,
            _ => e,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `(team, channel)` of a `team/channel` recipient.
fn team_and_channel(s: &str) -> Option<(&str, &str)> {
    let (team, channel) = s.split_once('/')?;
    let ok = |p: &str| !p.is_empty() && !p.contains('/') && !p.chars().any(char::is_whitespace);
    (ok(team) && ok(channel)).then_some((team, channel))
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Posts of a post list (`{order, posts}`) in `order`.
fn posts_of(list: &Value) -> Vec<&Value> {
    let posts = &list["posts"];
    match list["order"].as_array() {
        Some(order) => order
            .iter()
            .filter_map(|id| id.as_str())
            .filter_map(|id| posts.get(id))
            .collect(),
        None => posts
            .as_object()
            .map(|m| m.values().collect())
            .unwrap_or_default(),
    }
}

#[async_trait::async_trait]
impl Chat for MattermostChat {
    fn name(&self) -> &'static str {
        "mattermost"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            threads: true,
            reviews_on_card: false,
            reactions: false,
        }
    }

    fn count_rate_limits(&self, counter: prometheus_client::metrics::counter::Counter) {
        self.http.count_rate_limits(counter);
    }

    async fn health_check(&self) -> Result<String, ChatError> {
        let v = self
            .http
            .call(Self::req(Method::GET, "GET /users/me", &["users", "me"]).about("the bot"))
            .await?;
        let id = v["id"].as_str().unwrap_or_default().to_string();
        if !id.is_empty() {
            *lock(&self.bot_id) = Some(id.clone());
        }
        Ok(format!(
            "Mattermost user @{} ({id})",
            v["username"].as_str().unwrap_or_default()
        ))
    }

    async fn resolve(&self, recipient: &str) -> Result<Target, ChatError> {
        let r = recipient.trim();
        if looks_like_email(r) {
            return Ok(Target(self.direct_channel(r).await?));
        }
        if let Some((team, channel)) = team_and_channel(r) {
            return Ok(Target(self.team_channel(team, channel, r).await?));
        }
        Err(ChatError::permanent(format!(
            "Mattermost recipient {r:?} must be an email or team/channel (team and channel names as in the channel URL)"
        )))
    }

    async fn verified_email(&self, user_id: &str) -> Result<Option<String>, ChatError> {
        let req = Self::req(Method::GET, "GET /users/{user_id}", &["users", user_id]).about("the clicking user").missing(Missing::Message);
        let v = match self.http.call(req).await {
            Ok(v) => v,
            Err(e) if matches!(e.kind, super::ErrorKind::Gone | super::ErrorKind::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        // Only a verified email of an active human account vouches for
        // anyone (emails are blank unless the server shows them to bots).
        let usable = v["email_verified"] == true && v["delete_at"].as_i64() == Some(0) && v["is_bot"] != true;
        Ok(v["email"].as_str().filter(|e| usable && !e.is_empty()).map(str::to_string))
    }

    fn start_clicks(
        self: Arc<Self>,
        cfg: &crate::config::ChatConfig,
        ctx: super::click::ClickContext,
    ) -> Result<super::click::ClickTransports, String> {
        let (crate::config::ChatConfig::Mattermost { review: Some(_), .. }, Some(signer)) = (cfg, &self.actions) else {
            return Ok(super::click::ClickTransports::default());
        };
        Ok(super::click::ClickTransports {
            routes: Some(actions::router(signer.clone(), ctx.desk, ctx.rejections)),
            link: None,
        })
    }

    async fn requester_target(&self, user: &str) -> Result<Option<Target>, ChatError> {
        if !looks_like_email(user) {
            return Ok(None);
        }
        match self.direct_channel(user).await {
            Ok(id) => Ok(Some(Target(id))),
            Err(e) if e.kind == super::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn post(&self, target: &Target, content: Content<'_>) -> Result<MessageRef, ChatError> {
        self.create_post(&target.0, None, &content).await
    }

    async fn update(&self, message: &MessageRef, content: Content<'_>) -> Result<(), ChatError> {
        let body = json!({"message": render::render(&content), "props": self.props_for(&content)});
        let req = Self::req(
            Method::PUT,
            "PUT /posts/{post_id}/patch",
            &["posts", &message.message_id, "patch"],
        )
        .json(body)
        .about(&message.channel_id)
        .missing(Missing::Message)
        .replaceable();
        match self.http.call(req).await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.gone_or(message, e).await),
        }
    }

    async fn reply(
        &self,
        parent: &MessageRef,
        content: Content<'_>,
    ) -> Result<MessageRef, ChatError> {
        match self
            .create_post(&parent.channel_id, Some(&parent.message_id), &content)
            .await
        {
            Ok(m) => Ok(m),
            Err(e) => Err(self.gone_or(parent, e).await),
        }
    }

    async fn react(&self, _message: &MessageRef, _reaction: Reaction) -> Result<(), ChatError> {
        Err(ChatError::permanent(
            "the Mattermost client does not add reactions",
        ))
    }

    async fn find_posted(
        &self,
        place: Place<'_>,
        marker: &Marker,
        since: SystemTime,
    ) -> Result<Option<MessageRef>, ChatError> {
        let bot = self.bot_id().await?;
        // A second of slack for clocks that disagree with the server's.
        let since_ms = unix_ms(since.checked_sub(Duration::from_secs(1)).unwrap_or(since));
        let (list, channel, root) = match place {
            Place::Target(t) => {
                let found = self.find_in_channel(&t.0, &bot, marker, since_ms).await?;
                return Ok(found.map(|id| MessageRef { channel_id: t.0.clone(), message_id: id }));
            }
            Place::Thread(parent) => {
                let req = Self::req(
                    Method::GET,
                    "GET /posts/{post_id}/thread",
                    &["posts", &parent.message_id, "thread"],
                )
                .about(&parent.channel_id)
                .missing(Missing::Message);
                (
                    self.http.call(req).await?,
                    parent.channel_id.clone(),
                    parent.message_id.clone(),
                )
            }
        };
        let found = posts_of(&list).into_iter().find(|p| is_ours(p, &bot, &root, marker, since_ms));
        Ok(found.and_then(|p| p["id"].as_str()).map(|id| MessageRef {
            channel_id: channel,
            message_id: id.to_string(),
        }))
    }
}

/// Whether `p` is the bot's live post with `marker` under `root` (empty:
/// top level), created at or after `since_ms`.
fn is_ours(p: &Value, bot: &str, root: &str, marker: &Marker, since_ms: i64) -> bool {
    is_live_by(p, bot, root, since_ms) && render::has_marker(p, marker)
}

/// Whether `p` is a live post by `bot` under `root` (empty: top level),
/// created at or after `since_ms`.
fn is_live_by(p: &Value, bot: &str, root: &str, since_ms: i64) -> bool {
    p["user_id"] == bot
        && p["root_id"].as_str().unwrap_or_default() == root
        && p["delete_at"].as_i64().unwrap_or(0) == 0
        && p["create_at"].as_i64().unwrap_or(0) >= since_ms
}

impl MattermostChat {
    /// Our top-level post with `marker` in `channel`, created at or after
    /// `since_ms`. Lookups of one channel share a read (see `shared_reads`):
    /// after a burst of uncertain posts each would otherwise page through
    /// the channel on its own, against a budget shared by every call.
    async fn find_in_channel(&self, channel: &str, bot: &str, marker: &Marker, since_ms: i64) -> Result<Option<String>, ChatError> {
        let from = u64::try_from(since_ms).unwrap_or(0);
        let key = channel.to_string();
        // The shared read reaches back at least to `from`; it may hold older posts.
        let ours = self.recent.read(&key, from, |from| self.ours_since(channel, bot, from)).await?;
        Ok(ours
            .iter()
            .find(|p| p["create_at"].as_i64().unwrap_or(0) >= since_ms && render::has_marker(p, marker))
            .and_then(|p| p["id"].as_str())
            .map(str::to_string))
    }

    /// The bot's live top-level posts in `channel` created at or after
    /// `from_ms` (id, time and props only), newest pages first until the
    /// pages reach back past `from_ms`. Not `?since=`: the server returns
    /// at most 1000 posts for it, in no stated order, so a busy channel can
    /// hide the post (and a repost would double it).
    async fn ours_since(&self, channel: &str, bot: &str, from_ms: u64) -> Result<Vec<Value>, ChatError> {
        let from_ms = i64::try_from(from_ms).unwrap_or(i64::MAX);
        let mut ours = Vec::new();
        for page in 0..MAX_PAGES {
            let req = Self::req(Method::GET, "GET /channels/{channel_id}/posts", &["channels", channel, "posts"])
                .query("page", page.to_string())
                .query("per_page", PAGE_SIZE.to_string())
                .about(channel);
            let list = self.http.call(req).await?;
            let posts = posts_of(&list);
            ours.extend(
                posts
                    .iter()
                    .filter(|p| is_live_by(p, bot, "", from_ms))
                    .map(|p| json!({ "id": p["id"], "create_at": p["create_at"], "props": p["props"] })),
            );
            // Newest first: a post older than `from_ms` ends the read.
            let reached = posts.iter().any(|p| p["create_at"].as_i64().unwrap_or(0) < from_ms);
            if reached || posts.len() < PAGE_SIZE {
                return Ok(ours);
            }
        }
        tracing::warn!(channel, pages = MAX_PAGES, "gave up looking for an earlier post in a very busy channel");
        Ok(ours)
    }
}

/// Posts per page when looking for a post (the server's maximum).
const PAGE_SIZE: usize = 200;
/// Pages read at most when looking for a post.
const MAX_PAGES: usize = 25;

/// Reads Mattermost answers and its rate-limit headers.
struct MattermostApi;

/// Every call shares one budget (Mattermost limits per user and address).
const BUCKET: &str = "all";

impl MattermostApi {
    fn reset_after(reply: &Reply) -> Option<Duration> {
        reply
            .header_secs("x-ratelimit-reset")
            .or_else(|| reply.header_secs("retry-after"))
    }
}

impl Api for MattermostApi {
    fn label(&self) -> &'static str {
        "Mattermost"
    }

    fn bucket(&self, _req: &Request) -> String {
        BUCKET.into()
    }

    fn observe(&self, _req: &Request, reply: &Reply, gate: &RateGate) {
        if reply.header("x-ratelimit-remaining") == Some("0")
            && let Some(after) = Self::reset_after(reply)
        {
            gate.close(BUCKET, after);
        }
    }

    fn judge(&self, req: &Request, reply: &Reply) -> Verdict {
        let status = reply.status.as_u16();
        if status == 429 {
            let after = Self::reset_after(reply).unwrap_or(Duration::from_secs(1));
            // One bucket holds every call, so it is not "global": the
            // gate paces it and lets one call probe when the window ends.
            return Verdict::Limited {
                after,
                global: false,
            };
        }
        if let Some(v) = http::common::retryable("Mattermost", reply) {
            return v;
        }
        let body = reply.json();
        if reply.status.is_success() {
            return match body {
                Some(v) => Verdict::Done(v),
                None => http::common::unreadable("Mattermost", reply),
            };
        }
        let b = body.unwrap_or_default();
        let message = b["message"].as_str().unwrap_or("no details");
        let id = b["id"].as_str().unwrap_or_default();
        let subject = req.subject.as_str();
        let e = match status {
            401 => ChatError::permanent(format!(
                "the Mattermost token was rejected ({message}): check mattermost.token (a bot or personal access token)"
            )),
            403 => ChatError::permanent(format!(
                "Mattermost refused {} for {subject} ({message}): add the bot to the team and the channel, \
                 or give it the permission to post there",
                req.route
            )),
            404 => match req.missing {
                Missing::Message => ChatError::gone(format!(
                    "the Mattermost post in channel {subject} no longer exists"
                )),
                Missing::User => {
                    ChatError::not_found(format!("no Mattermost user matches {subject}"))
                }
                Missing::Channel => ChatError::permanent(format!(
                    "Mattermost channel {subject} does not exist or the bot cannot see it: add the bot to the team and the channel"
                )),
            },
            _ => ChatError::permanent(format!(
                "Mattermost {} failed for {subject}: {message} ({}HTTP {status})",
                req.route,
                if id.is_empty() {
                    String::new()
                } else {
                    format!("{id}, ")
                }
            )),
        };
        Verdict::Fail(e)
    }
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

    fn app_error(status: u16, id: &str, message: &str) -> Value {
        json!({"id": id, "message": message, "detailed_error": "", "request_id": "r", "status_code": status})
    }

    fn fail(v: Verdict) -> ChatError {
        match v {
            Verdict::Fail(e) => e,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn mattermost_errors_map_to_kinds_and_fixes() {
        let api = MattermostApi;
        let req = |m: Missing| Request::get("GET /x", &[]).about("c1").missing(m);
        let e = fail(api.judge(
            &req(Missing::Channel),
            &reply(
                401,
                app_error(
                    401,
                    "api.context.session_expired.app_error",
                    "Invalid or expired session",
                ),
                &[],
            ),
        ));
        assert_eq!(
            e.message,
            "the Mattermost token was rejected (Invalid or expired session): check mattermost.token (a bot or personal access token)"
        );
        let e = fail(api.judge(
            &req(Missing::Message),
            &reply(
                404,
                app_error(404, "app.post.get.app_error", "Unable to get the post."),
                &[],
            ),
        ));
        assert_eq!(e.kind, ErrorKind::Gone);
        let e = fail(api.judge(
            &req(Missing::User),
            &reply(
                404,
                app_error(
                    404,
                    "app.user.missing_account.const",
                    "Unable to find the user.",
                ),
                &[],
            ),
        ));
        assert_eq!(e.kind, ErrorKind::NotFound);
        let e = fail(api.judge(
            &req(Missing::Channel),
            &reply(
                404,
                app_error(
                    404,
                    "app.channel.get_by_name.missing.app_error",
                    "Channel does not exist.",
                ),
                &[],
            ),
        ));
        assert_eq!(e.kind, ErrorKind::Permanent);
        assert!(
            e.message
                .contains("add the bot to the team and the channel")
        );
        let e = fail(api.judge(
            &req(Missing::Channel),
            &reply(
                403,
                app_error(
                    403,
                    "api.context.permissions.app_error",
                    "You do not have the appropriate permissions.",
                ),
                &[],
            ),
        ));
        assert!(
            e.message
                .contains("add the bot to the team and the channel"),
            "{}",
            e.message
        );
        let e = fail(api.judge(
            &req(Missing::Channel),
            &reply(
                400,
                app_error(400, "model.post.is_valid.msg.app_error", "Invalid Message."),
                &[],
            ),
        ));
        assert_eq!(
            e.message,
            "Mattermost GET /x failed for c1: Invalid Message. (model.post.is_valid.msg.app_error, HTTP 400)"
        );
    }

    #[test]
    fn mattermost_rate_limits_close_the_one_bucket_of_every_route() {
        let api = MattermostApi;
        let gate = RateGate::default();
        let req = Request::get("GET /x", &[]);
        let limited = reply(
            429,
            json!(null),
            &[("x-ratelimit-reset", "3"), ("retry-after", "3")],
        );
        assert!(
            matches!(api.judge(&req, &limited), Verdict::Limited { after, global: false } if after == Duration::from_secs(3))
        );
        api.observe(
            &req,
            &reply(
                200,
                json!({}),
                &[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "2")],
            ),
            &gate,
        );
        assert_eq!(api.bucket(&req), api.bucket(&Request::post("POST /posts", &[])));
        assert!(gate.wait_time(&api.bucket(&req)).is_some());
        assert!(matches!(
            api.judge(&req, &reply(503, json!(null), &[])),
            Verdict::Retry(_)
        ));
    }

    #[test]
    fn recipients_are_emails_or_team_slash_channel() {
        assert_eq!(team_and_channel("eng/alerts"), Some(("eng", "alerts")));
        assert_eq!(team_and_channel("eng/"), None);
        assert_eq!(team_and_channel("/alerts"), None);
        assert_eq!(team_and_channel("a/b/c"), None);
        assert_eq!(team_and_channel("town square"), None);
        let list = json!({"order": ["b", "a"], "posts": {"a": {"id": "a"}, "b": {"id": "b"}}});
        assert_eq!(
            posts_of(&list)
                .iter()
                .map(|p| p["id"].as_str().unwrap())
                .collect::<Vec<_>>(),
            ["b", "a"]
        );
    }
}
