//! The review desk: turns an authenticated Approve/Deny click into a review
//! submitted to Teleport on behalf of the clicker's Teleport user, and says
//! what came of it. Shared by every chat; each chat's transport (in
//! `crate::chat::<chat>`) delivers [`PendingClick`]s and shows the outcome.
//!
//! Order of checks, each cheap before the next: the chat has review on; the
//! same click was not decided already (redelivery, double click); the
//! request is live, pending and not long-term; the button sits on a card we
//! (or the official plugin, same plugin data) posted for that request; the
//! clicker maps to exactly one Teleport user; that user is not the
//! requester. Only then is the review submitted; Auth's refusals are told
//! apart by [`crate::teleport::review::classify`].

pub mod mapping;
pub mod outcome;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OnceCell, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::chat::Chat;
use crate::chat::cache::Remembered;
use crate::chat::click::{Click, Outcome, PendingClick};
use crate::config::ReviewMapping;
use crate::teleport::review::ReviewError;
use crate::metrics::Metrics;
use crate::model::RequestState;
use crate::teleport::client::describe_status;
use crate::teleport::{PluginDataStore, TeleportClient};
use mapping::{Mapper, Unmapped};

/// How long a decided click is remembered (redeliveries and double clicks
/// arrive within seconds; Slack redelivers for a few minutes at most).
const DEDUPE_TTL: Duration = Duration::from_secs(600);
/// Clicks decided at once; more wait in the channel.
const CONCURRENCY: usize = 32;

/// Review settings and clients of one chat.
pub struct ChatDesk {
    pub chat: Arc<dyn Chat>,
    pub mapping: ReviewMapping,
    /// Display name in the review reason ("Reviewed in Slack by @alice").
    pub display: &'static str,
}

type Decided = Arc<OnceCell<Outcome>>;

pub struct Desk {
    client: Arc<TeleportClient>,
    chats: HashMap<&'static str, ChatDesk>,
    mapper: Mapper,
    metrics: Arc<Metrics>,
    decided: Remembered<Decided>,
}

/// The chat's name as people write it, for the review reason.
pub fn display_name(chat: &str) -> &'static str {
    match chat {
        "slack" => "Slack",
        "discord" => "Discord",
        "mattermost" => "Mattermost",
        _ => "chat",
    }
}

impl Desk {
    pub fn new(client: Arc<TeleportClient>, chats: Vec<ChatDesk>, metrics: Arc<Metrics>) -> Self {
        Self::with_mapping_ttl(client, chats, metrics, mapping::MAPPING_TTL)
    }

    pub fn with_mapping_ttl(client: Arc<TeleportClient>, chats: Vec<ChatDesk>, metrics: Arc<Metrics>, ttl: Duration) -> Self {
        Self {
            mapper: Mapper::new(client.clone(), ttl),
            client,
            chats: chats.into_iter().map(|c| (c.chat.name(), c)).collect(),
            metrics,
            decided: Remembered::new(DEDUPE_TTL),
        }
    }

    /// Decides clicks from `rx` until `stop`, several at a time.
    pub async fn run(self: Arc<Self>, mut rx: mpsc::Receiver<PendingClick>, stop: CancellationToken) {
        let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
        loop {
            let pending = tokio::select! {
                p = rx.recv() => match p { Some(p) => p, None => return },
                _ = stop.cancelled() => return,
            };
            let Ok(slot) = slots.clone().acquire_owned().await else { return };
            let desk = self.clone();
            tokio::spawn(async move {
                let outcome = desk.handle(pending.click).await;
                let _ = pending.answer.send(outcome);
                drop(slot);
            });
        }
    }

    /// Decides one click. A click already decided (same dedupe key) gets the
    /// same outcome without a second review; one being decided is waited for.
    pub async fn handle(&self, click: Click) -> Outcome {
        let started = Instant::now();
        let cell = self.cell(&click.dedupe_key);
        let result = cell
            .get_or_try_init(|| async {
                let o = self.decide(&click).await;
                // A click Teleport never saw may be tried again.
                if matches!(o, Outcome::Retry(_)) { Err(o) } else { Ok(o) }
            })
            .await;
        let outcome = match result {
            Ok(o) => o.clone(),
            Err(o) => o,
        };
        self.metrics.review_latency.get_or_create(&Metrics::chat(click.chat)).observe(started.elapsed().as_secs_f64());
        outcome
    }

    fn cell(&self, key: &str) -> Decided {
        self.decided.get_or_make(key, Decided::default).0
    }

    async fn decide(&self, click: &Click) -> Outcome {
        let (teleport_user, outcome) = match self.chats.get(click.chat) {
            Some(desk) => self.decide_for(desk, click).await,
            None => (None, Outcome::Unavailable(format!("review from {} is not enabled", click.chat))),
        };
        let label = outcome.label();
        match &outcome {
            Outcome::Submitted { .. } => self.metrics.reviews_submitted.get_or_create(&Metrics::chat(click.chat)).inc(),
            _ => self.metrics.reviews_refused.get_or_create(&Metrics::reason(click.chat, label)).inc(),
        };
        // The audit line: one per decision, no secrets in any field.
        info!(
            chat = %click.chat,
            chat_user = %click.user_id,
            chat_user_name = ?click.user_name,
            teleport_user = %teleport_user.as_deref().unwrap_or("-"),
            request_id = %click.request_id,
            decision = %click.decision.as_str(),
            outcome = %label,
            "review from chat"
        );
        outcome
    }

    async fn decide_for(&self, desk: &ChatDesk, click: &Click) -> (Option<String>, Outcome) {
        let request = match self.client.get_access_request(&click.request_id).await {
            Ok(Some(r)) => r,
            Ok(None) => return (None, Outcome::AlreadyResolved),
            Err(s) => return (None, Outcome::Retry(describe_status(&s))),
        };
        if request.state != RequestState::Pending {
            return (None, Outcome::AlreadyResolved);
        }
        if request.long_term {
            return (None, Outcome::LongTerm);
        }
        if let Some(message) = &click.message {
            let store = PluginDataStore::new(self.client.clone(), click.chat);
            match store.load(&click.request_id).await {
                Ok(Some(d)) if d.messages.contains(message) => {}
                Ok(_) => {
                    warn!(chat = click.chat, request_id = %click.request_id, channel = %message.channel_id,
                        message = %message.message_id, "click on a card that is not this request's; refused");
                    return (None, Outcome::WrongCard);
                }
                Err(e) => return (None, Outcome::Retry(e.to_string())),
            }
        }
        let user = match self.mapper.teleport_user(desk.chat.as_ref(), &desk.mapping, &click.user_id).await {
            Ok(u) => u,
            Err(Unmapped::None(why)) => return (None, Outcome::NotMapped(why)),
            Err(Unmapped::Several(why)) => return (None, Outcome::Ambiguous(why)),
            Err(Unmapped::Unreachable(why)) => return (None, Outcome::Retry(why)),
        };
        if request.user == user {
            return (Some(user), Outcome::OwnRequest);
        }
        let handle = if click.user_name.is_empty() { click.user_id.as_str() } else { click.user_name.as_str() };
        let reason = format!("Reviewed in {} by @{handle}", desk.display);
        let approve = click.decision == crate::chat::click::Decision::Approve;
        let result = match self.client.submit_review_on_behalf(&click.request_id, &user, approve, &reason).await {
            // The answer was lost, not necessarily the review: look.
            Err(ReviewError::Unreachable(why)) => {
                self.client.review_landed(&click.request_id, &user, approve).await.ok_or(ReviewError::Unreachable(why))
            }
            r => r,
        };
        let outcome = outcome::of_submission(click.decision, &user, result);
        if matches!(outcome, Outcome::NotPermitted(_)) {
            self.mapper.forget(click.chat, &click.user_id);
        }
        (Some(user), outcome)
    }
}
