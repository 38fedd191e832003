//! HTTP simulators of the Slack, Discord and Mattermost Web APIs used by the
//! chat clients, for integration tests, benchmarks and fault injection.
//!
//! Each simulator is an axum server on a random loopback port, started from
//! async code (`SlackSim::start(config).await`). The returned handle is cheap
//! to clone; the server stops when the last clone is dropped. Besides the API
//! itself every simulator offers the [`ChatSim`] control surface: call log,
//! waiting without polling, injected failures, delays and rate limits, and
//! run-time changes of users, channels, bot membership and tokens.

mod common;
mod conn;
pub mod discord;
pub mod mattermost;
pub mod slack;

pub use common::{
    Applied, AnnouncedWindow, CallRecord, ChatSim, RateWindow, STATUS_CLIENT_CLOSED, STATUS_NO_RESPONSE, SimChannel, SimCore, SimUser,
    TokenRule, WaitTimeout, WindowCall,
};
pub use discord::{DiscordMessage, DiscordRevision, DiscordSim, DiscordSimConfig};
pub use mattermost::{MattermostPost, MattermostRevision, MattermostSim, MattermostSimConfig};
pub use slack::{
    ClickError, ClickVia, Ephemeral, Forgery, POST_LIMIT, SlackMessage, SlackRevision, SlackSim, SlackSimConfig,
    SlackUserFlags, SocketModeConfig, tier,
};
