//! Chat back ends. Each implements [`Chat`]: resolve recipients, post, update,
//! reply in a thread, react, DM the requester, and find a message it already
//! posted (so a post whose outcome is unknown is never repeated blindly).
//!
//! Rendering is pure and lives next to each client (`<chat>/render.rs`); the
//! engine hands the client a [`RequestView`] and says which [`Content`] it wants.

pub mod cache;
pub mod click;
pub mod console;
#[cfg(test)]
mod fixtures;
pub mod discord;
pub mod fields;
pub mod gate;
pub mod http;
pub mod mattermost;
pub mod shared_reads;
pub mod slack;
pub mod text;
pub mod view;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use crate::teleport::plugin_data::MessageRef;
pub use view::{RequestView, Status};

use crate::config::ChatConfig;

/// Builds the client of a configured chat (reading its token file, if any).
pub fn build(cfg: &ChatConfig) -> Result<Arc<dyn Chat>, String> {
    Ok(match cfg {
        ChatConfig::Slack { token, api_url, .. } => Arc::new(slack::SlackChat::new(api_url, token.resolve()?)?),
        ChatConfig::Discord { token, api_url, user_ids, .. } => {
            Arc::new(discord::DiscordChat::new(api_url, token.resolve()?, user_ids.clone())?)
        }
        ChatConfig::Mattermost { url, token, review, .. } => {
            let mut chat = mattermost::MattermostChat::new(url, token.resolve()?)?;
            if let Some(r) = review {
                let secret = r.secret.resolve().map_err(|e| format!("mattermost.secret: {e}"))?;
                chat = chat.with_actions(mattermost::actions::Signer::new(secret.expose().as_bytes(), &r.action_url));
            }
            Arc::new(chat)
        }
        ChatConfig::Console { .. } => Arc::new(console::ConsoleChat::default()),
    })
}

/// Where a card can be posted, as the chat API addresses it after recipient
/// resolution (Slack: channel ID or name, or a user ID for a DM; Discord and
/// Mattermost: a channel ID).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target(pub String);

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content<'a> {
    /// The request card (posted once per recipient, then updated in place).
    Card(&'a RequestView),
    /// A thread reply announcing review number `index` (0-based).
    Review(&'a RequestView, usize),
    /// A direct message to the requester about the outcome.
    RequesterNotice(&'a RequestView),
}

impl Content<'_> {
    pub fn view(&self) -> &RequestView {
        match self {
            Self::Card(v) | Self::Review(v, _) | Self::RequesterNotice(v) => v,
        }
    }

    /// Identifies what a message is about, so it can be found again.
    pub fn marker(&self) -> Marker {
        let request_id = self.view().id.clone();
        let kind = match self {
            Self::Card(_) => MarkerKind::Card,
            Self::Review(_, i) => MarkerKind::Review(*i),
            Self::RequesterNotice(_) => MarkerKind::Notice,
        };
        Marker { request_id, kind }
    }
}

/// Attached to every message we post (Slack metadata, Mattermost props,
/// Discord nonce / content) and used to find it again.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Marker {
    pub request_id: String,
    pub kind: MarkerKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MarkerKind {
    Card,
    Review(usize),
    Notice,
}

impl Marker {
    /// Compact text form, e.g. `card`, `review-2`, `notice`.
    pub fn kind_str(&self) -> String {
        match self.kind {
            MarkerKind::Card => "card".into(),
            MarkerKind::Review(i) => format!("review-{i}"),
            MarkerKind::Notice => "notice".into(),
        }
    }
}

/// Reaction added to cards when a request is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaction {
    Approved,
    Denied,
}

/// Where to look for an already-posted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place<'a> {
    /// Top level of a target (cards, notices).
    Target(&'a Target),
    /// The thread under a card (review replies).
    Thread(&'a MessageRef),
}

/// How a chat call failed, and so what the engine does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// Retry later; at the earliest after `retry_after` when the API said so.
    Transient { retry_after: Option<Duration> },
    /// Will keep failing until someone changes something; the message says what.
    Permanent,
    /// The message to update or reply to no longer exists.
    Gone,
    /// The recipient does not exist (e.g. no user with that email).
    NotFound,
}

/// A failed chat call. The message never contains tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatError {
    pub kind: ErrorKind,
    pub message: String,
    /// Whether the request may have been carried out although it failed
    /// (timeout after sending, connection lost mid-response): a post is then
    /// looked up before it is retried.
    pub maybe_applied: bool,
}

impl ChatError {
    pub fn transient(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::Transient { retry_after: None }, message: message.into(), maybe_applied: false }
    }

    pub fn rate_limited(message: impl Into<String>, after: Duration) -> Self {
        Self { kind: ErrorKind::Transient { retry_after: Some(after) }, message: message.into(), maybe_applied: false }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::Permanent, message: message.into(), maybe_applied: false }
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::Gone, message: message.into(), maybe_applied: false }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::NotFound, message: message.into(), maybe_applied: false }
    }

    pub fn maybe_applied(mut self) -> Self {
        self.maybe_applied = true;
        self
    }

    pub fn is_transient(&self) -> bool {
        matches!(self.kind, ErrorKind::Transient { .. })
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self.kind {
            ErrorKind::Transient { retry_after } => retry_after,
            _ => None,
        }
    }

    /// Short label for metrics (`rate_limited`, `transient`, `permanent`, ...).
    pub fn reason(&self) -> &'static str {
        match self.kind {
            ErrorKind::Transient { retry_after: Some(_) } => "rate_limited",
            ErrorKind::Transient { retry_after: None } => "transient",
            ErrorKind::Permanent => "permanent",
            ErrorKind::Gone => "gone",
            ErrorKind::NotFound => "not_found",
        }
    }
}

impl fmt::Display for ChatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ChatError {}

/// What a chat can do beyond posting and editing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Review replies go into a thread under each card.
    pub threads: bool,
    /// Cards show every review themselves (Discord embeds).
    pub reviews_on_card: bool,
    /// ✅/❌ reactions on resolution.
    pub reactions: bool,
}

/// A chat back end.
#[async_trait::async_trait]
pub trait Chat: Send + Sync + 'static {
    /// Plugin name (`slack`, `discord`, `mattermost`, `console`): the key of
    /// this chat's plugin data.
    fn name(&self) -> &'static str;

    fn capabilities(&self) -> Capabilities;

    /// Counts the API's rate-limit answers in `counter` (chats without an
    /// HTTP API have none).
    fn count_rate_limits(&self, _counter: prometheus_client::metrics::counter::Counter) {}

    /// Checks the token works; returns who the bot is.
    async fn health_check(&self) -> Result<String, ChatError>;

    /// Resolves one configured recipient (channel name or ID, email, ...).
    async fn resolve(&self, recipient: &str) -> Result<Target, ChatError>;

    /// A DM target for the Teleport user `user`, when one can be opened.
    async fn requester_target(&self, user: &str) -> Result<Option<Target>, ChatError>;

    /// Posts a card or a notice at the top level of `target`.
    async fn post(&self, target: &Target, content: Content<'_>) -> Result<MessageRef, ChatError>;

    /// Replaces a card's content.
    async fn update(&self, message: &MessageRef, content: Content<'_>) -> Result<(), ChatError>;

    /// Posts a reply in the thread of `parent` (only with `capabilities().threads`).
    async fn reply(&self, parent: &MessageRef, content: Content<'_>) -> Result<MessageRef, ChatError>;

    /// Adds a reaction (only with `capabilities().reactions`); adding it twice is fine.
    async fn react(&self, message: &MessageRef, reaction: Reaction) -> Result<(), ChatError>;

    /// The email of the chat user `user_id`, when the chat vouches for it
    /// (verified, an active human account): the optional fallback for
    /// mapping a clicker to a Teleport user. `Ok(None)` when there is none.
    async fn verified_email(&self, _user_id: &str) -> Result<Option<String>, ChatError> {
        Ok(None)
    }

    /// Starts the transports that deliver Approve/Deny clicks for this chat
    /// when `cfg` turns review on (chats without review start none).
    fn start_clicks(self: Arc<Self>, _cfg: &ChatConfig, _ctx: click::ClickContext) -> Result<click::ClickTransports, String> {
        Ok(click::ClickTransports::default())
    }

    /// Finds a message this bot posted with `marker` at `place` since `since`.
    async fn find_posted(&self, place: Place<'_>, marker: &Marker, since: SystemTime) -> Result<Option<MessageRef>, ChatError>;
}
