//! A reviewer's click on a card's Approve or Deny button, as every chat
//! transport hands it over (Slack Socket Mode or signed HTTP, Mattermost
//! actions, Discord interactions), and what the clicker is told back.
//!
//! Transports live with their chat and only build [`Click`]s from data they
//! have authenticated (a verified signature, the Socket Mode or Gateway
//! socket). They send each click with a one-shot answer channel to the review
//! desk (`crate::review`), which decides; the transport then shows the
//! [`Outcome`] to the clicker alone, in its chat's way (ephemeral message).
//! Dependencies thus point one way: review → chat, never back.

use tokio::sync::{mpsc, oneshot};

use super::MessageRef;

/// What the button asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    Approve,
    Deny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Deny => "deny",
        }
    }
}

/// One click, from authenticated data only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Click {
    /// Plugin name of the chat (`slack`, `mattermost`, `discord`).
    pub chat: &'static str,
    /// The chat's immutable user ID of the clicker (Slack `U…`/`W…`,
    /// Mattermost 26-character ID, Discord snowflake). Never a display name.
    pub user_id: String,
    /// The clicker's handle, for logs and the review reason only.
    pub user_name: String,
    pub request_id: String,
    pub decision: Decision,
    /// The card the button was on (channel and message ID as plugin data
    /// records them), when the chat says: the desk checks that this card
    /// belongs to `request_id`.
    pub message: Option<MessageRef>,
    /// Equal for a redelivery and for a double click of the same button by
    /// the same user: the second one gets the first one's outcome.
    pub dedupe_key: String,
}

/// What came of a click; shown to the clicker alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The review was accepted. `approvals_needed` > 0: still pending.
    Submitted { decision: Decision, state: SubmittedState },
    /// No Teleport user carries the clicker's chat ID (and email matching is
    /// off or found nobody); the text says which trait to set.
    NotMapped(String),
    /// Several Teleport users match the clicker.
    Ambiguous(String),
    /// The mapped user may not review this request (Auth said so).
    NotPermitted(String),
    /// Requesters cannot review their own requests.
    OwnRequest,
    /// This user already reviewed the request.
    AlreadyReviewed,
    /// Approved, denied, promoted, expired or deleted meanwhile.
    AlreadyResolved,
    /// Long-term requests are reviewed in the Web UI only.
    LongTerm,
    /// The button's request and the card it sits on disagree.
    WrongCard,
    /// Review from chat is off or not available right now.
    Unavailable(String),
    /// Teleport could not be asked; clicking again may work.
    Retry(String),
}

/// The request after our review was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmittedState {
    Pending { approvals_needed: u32 },
    Approved,
    Denied,
}

impl Outcome {
    /// Label for metrics and the audit line.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Submitted { .. } => "submitted",
            Self::NotMapped(_) => "not_mapped",
            Self::Ambiguous(_) => "ambiguous",
            Self::NotPermitted(_) => "not_permitted",
            Self::OwnRequest => "own_request",
            Self::AlreadyReviewed => "already_reviewed",
            Self::AlreadyResolved => "already_resolved",
            Self::LongTerm => "long_term",
            Self::WrongCard => "wrong_card",
            Self::Unavailable(_) => "unavailable",
            Self::Retry(_) => "teleport_unreachable",
        }
    }

    /// The sentence the clicker reads.
    pub fn text(&self, request_id: &str) -> String {
        match self {
            Self::Submitted { decision, state } => {
                let verb = match decision {
                    Decision::Approve => "approved",
                    Decision::Deny => "denied",
                };
                match state {
                    SubmittedState::Pending { approvals_needed } => format!(
                        "You {verb} request {request_id}. It is still pending: {approvals_needed} more approval{} needed.",
                        if *approvals_needed == 1 { "" } else { "s" }
                    ),
                    SubmittedState::Approved => format!("You {verb} request {request_id}. It is now approved."),
                    SubmittedState::Denied => format!("You {verb} request {request_id}. It is now denied."),
                }
            }
            Self::NotMapped(why) => format!("Your chat account is not linked to a Teleport user: {why}"),
            Self::Ambiguous(why) => format!("Your chat account matches more than one Teleport user: {why}"),
            Self::NotPermitted(who) => format!("Teleport user {who} is not allowed to review request {request_id}."),
            Self::OwnRequest => "You cannot review your own access request.".into(),
            Self::AlreadyReviewed => format!("You have already reviewed request {request_id}."),
            Self::AlreadyResolved => format!("Request {request_id} has already been resolved or has expired."),
            Self::LongTerm => "Long-term access requests are reviewed in the Teleport Web UI.".into(),
            Self::WrongCard => "This button does not belong to this request's message; nothing was changed.".into(),
            Self::Unavailable(why) => format!("Reviewing from chat is not available: {why}"),
            Self::Retry(why) => format!("Teleport could not be reached ({why}); please click again in a moment."),
        }
    }
}

/// A click with the channel its outcome goes back on.
#[derive(Debug)]
pub struct PendingClick {
    pub click: Click,
    pub answer: oneshot::Sender<Outcome>,
}

/// Where transports send clicks.
pub type ClickSender = mpsc::Sender<PendingClick>;

/// State of a chat's click connection (Slack Socket Mode, Discord Gateway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    Connecting,
    Connected,
    /// Will not work until someone changes something; the text says what.
    /// Notifications go on.
    Unavailable(String),
}

/// What a chat's click transports need from the process.
#[derive(Clone)]
pub struct ClickContext {
    /// Where clicks go.
    pub desk: ClickSender,
    /// Counts callbacks refused with 401, by reason.
    pub rejections: prometheus_client::metrics::family::Family<crate::metrics::ChatReason, prometheus_client::metrics::counter::Counter>,
    pub stop: tokio_util::sync::CancellationToken,
}

/// What a chat's click transports started.
#[derive(Default)]
pub struct ClickTransports {
    /// Routes for the callback listener (`http.listen_addr`).
    pub routes: Option<axum::Router>,
    /// State of a long-lived click connection, for readiness and metrics.
    pub link: Option<(String, tokio::sync::watch::Receiver<LinkState>)>,
}

/// Sends `click` to the desk and waits for its outcome. A desk that is gone
/// (shutting down) reads as unavailable.
pub async fn decide(desk: &ClickSender, click: Click) -> Outcome {
    let (answer, rx) = oneshot::channel();
    if desk.send(PendingClick { click, answer }).await.is_err() {
        return Outcome::Unavailable("the plugin is shutting down".into());
    }
    rx.await.unwrap_or_else(|_| Outcome::Unavailable("the plugin is shutting down".into()))
}
