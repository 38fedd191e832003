//! Clicks over the Discord Gateway, with twilight-gateway keeping the
//! session: HELLO, IDENTIFY (no intents: `INTERACTION_CREATE` needs none),
//! heartbeats, RESUME on `resume_gateway_url` after RECONNECT or a dropped
//! socket, a fresh IDENTIFY after INVALID_SESSION `false`. We read the raw
//! frames and act on READY/RESUMED (link up) and `INTERACTION_CREATE`.
//!
//! The URL comes from `GET /gateway/bot` (so a Discord-compatible endpoint
//! or a simulator can be used); fatal close codes (4004 bad token, 4010–4014)
//! end the link with a sentence saying what to change. Nothing here logs an
//! interaction token or a raw event.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use tokio::sync::watch;
use tracing::{debug, info, warn};
use twilight_gateway::error::ReceiveMessageErrorType;
use twilight_gateway::{CloseFrame, ConfigBuilder, Intents, Message, Shard, ShardId};

use super::DiscordChat;
use super::interaction::{self, Parsed};
use crate::chat::ErrorKind;
use crate::chat::cache::TtlCache;
use crate::chat::click::{ClickContext, LinkState};

/// Interaction ids seen, so a redelivered dispatch is not answered twice
/// (its token allows one initial response only).
const SEEN_TTL: Duration = Duration::from_secs(15 * 60);
/// Between attempts to learn the Gateway URL.
const URL_RETRY: Duration = Duration::from_secs(5);

/// What a close code the Gateway sent means when no reconnect may follow.
pub fn fatal_close(code: u16) -> Option<String> {
    let why = match code {
        4004 => "Discord refused the bot token on the Gateway (close code 4004, authentication failed): check discord.token (the bot token from the Developer Portal → Bot)",
        4010 | 4011 => "the Discord Gateway asked for sharding (close code 4010/4011); this plugin runs one shard: keep the bot in fewer than 2500 servers",
        4012 => "the Discord Gateway refused API version 10 (close code 4012)",
        4013 | 4014 => "the Discord Gateway refused the intents (close code 4013/4014); no intents are needed for buttons: report this",
        _ => return None,
    };
    Some(why.to_string())
}

/// Keeps the Gateway session until `ctx.stop`, publishing its state.
pub async fn run(chat: Arc<DiscordChat>, ctx: ClickContext, link: watch::Sender<LinkState>) {
    let seen: Arc<TtlCache<()>> = Arc::new(TtlCache::new(SEEN_TTL));
    loop {
        let url = tokio::select! {
            _ = ctx.stop.cancelled() => return,
            u = chat.gateway_url() => u,
        };
        let url = match url {
            Ok(u) => u,
            Err(e) if e.kind == ErrorKind::Permanent => {
                warn!(error = %e, "Discord Gateway unavailable; clicks will not be received");
                link.send_replace(LinkState::Unavailable(e.message));
                return;
            }
            Err(e) => {
                debug!(error = %e, "cannot learn the Discord Gateway URL yet");
                link.send_replace(LinkState::Connecting);
                tokio::select! {
                    _ = ctx.stop.cancelled() => return,
                    _ = tokio::time::sleep(URL_RETRY) => continue,
                }
            }
        };
        let config = ConfigBuilder::new(chat.token.expose().to_string(), Intents::empty()).proxy_url(url).build();
        let mut shard = Shard::with_config(ShardId::ONE, config);
        let mut fatal: Option<String> = None;
        loop {
            let item = tokio::select! {
                _ = ctx.stop.cancelled() => {
                    shard.close(CloseFrame::NORMAL);
                    link.send_replace(LinkState::Connecting);
                    return;
                }
                m = shard.next() => m,
            };
            match item {
                // Fatally closed: no reconnect.
                None => break,
                Some(Err(e)) => {
                    // The event text may hold an interaction token: name the kind only.
                    let what = match e.kind() {
                        ReceiveMessageErrorType::Deserializing { .. } => "a Gateway event could not be read",
                        ReceiveMessageErrorType::Reconnect => "reconnecting to the Gateway failed",
                        _ => "the Gateway connection failed",
                    };
                    debug!(what, "Discord Gateway");
                    link.send_if_modified(|s| set(s, LinkState::Connecting));
                }
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.as_ref().map(|f| f.code).unwrap_or(1006);
                    fatal = fatal_close(code);
                    match &fatal {
                        Some(why) => warn!(code, "{why}"),
                        None => debug!(code, "Discord Gateway connection closed; resuming"),
                    }
                    link.send_if_modified(|s| set(s, LinkState::Connecting));
                }
                Some(Ok(Message::Text(text))) => on_text(&chat, &ctx, &link, &seen, &text),
            }
        }
        let why = fatal.unwrap_or_else(|| "the Discord Gateway closed the session for good".into());
        link.send_replace(LinkState::Unavailable(why));
        return;
    }
}

fn set(s: &mut LinkState, new: LinkState) -> bool {
    if *s == new {
        return false;
    }
    *s = new;
    true
}

fn on_text(chat: &Arc<DiscordChat>, ctx: &ClickContext, link: &watch::Sender<LinkState>, seen: &Arc<TtlCache<()>>, text: &str) {
    let Ok(v) = serde_json::from_str::<Value>(text) else { return };
    if v["op"] != 0 {
        return;
    }
    match v["t"].as_str() {
        Some("READY" | "RESUMED") if link.send_if_modified(|s| set(s, LinkState::Connected)) => {
            info!(event = v["t"].as_str().unwrap_or_default(), "Discord Gateway connected; receiving clicks");
        }
        Some("INTERACTION_CREATE") => match interaction::parse(&v["d"]) {
            Parsed::Click(c) => {
                if seen.get(&c.interaction_id).is_some() {
                    debug!(interaction = %c.interaction_id, "Discord interaction delivered again; already answered");
                    return;
                }
                seen.put(&c.interaction_id, ());
                let chat = chat.clone();
                let desk = ctx.desk.clone();
                tokio::spawn(async move { chat.answer_click(&desk, *c, false).await });
            }
            Parsed::Ping => {}
            Parsed::Other(what) => debug!(what, "Discord interaction ignored"),
        },
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fatal_codes_say_what_to_change() {
        assert!(fatal_close(4004).unwrap().contains("discord.token"));
        assert!(fatal_close(4014).is_some());
        for resumable in [1000, 1006, 4000, 4001, 4007, 4009] {
            assert!(fatal_close(resumable).is_none(), "{resumable}");
        }
    }
}
