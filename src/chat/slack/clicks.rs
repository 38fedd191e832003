//! Starts Slack's click transports from the configuration: Socket Mode with
//! the app-level token, the Request URL endpoint with the signing secret.

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::SlackChat;
use super::socket_mode::{self, SocketState};
use crate::chat::click::{ClickContext, ClickTransports, LinkState};
use crate::config::ChatConfig;

pub fn start(chat: Arc<SlackChat>, cfg: &ChatConfig, ctx: ClickContext) -> Result<ClickTransports, String> {
    let ChatConfig::Slack { api_url, review: Some(r), .. } = cfg else {
        return Ok(ClickTransports::default());
    };
    let mut t = ClickTransports::default();
    if let Some(token) = &r.app_token {
        let token = token.resolve().map_err(|e| format!("review.app_token: {e}"))?;
        let (_task, state) = socket_mode::spawn(api_url, token, chat.clone(), ctx.desk.clone(), ctx.stop.clone());
        t.link = Some(("slack Socket Mode".into(), follow(state, ctx.stop.clone())));
    }
    if let Some(secret) = &r.signing_secret {
        let secret = secret.resolve().map_err(|e| format!("slack.signing_secret: {e}"))?;
        t.routes = Some(super::http_interactivity::router_counting(secret, chat, ctx.desk, ctx.rejections));
    }
    Ok(t)
}

/// The Socket Mode state as the chat-neutral link state.
fn follow(mut socket: watch::Receiver<SocketState>, stop: CancellationToken) -> watch::Receiver<LinkState> {
    let map = |s: &SocketState| match s {
        SocketState::Connecting => LinkState::Connecting,
        SocketState::Connected => LinkState::Connected,
        SocketState::Unavailable(why) => LinkState::Unavailable(why.clone()),
    };
    let (tx, rx) = watch::channel(map(&socket.borrow()));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                r = socket.changed() => {
                    // The client ended: its last state stands.
                    if r.is_err() { return }
                }
            }
            let _ = tx.send(map(&socket.borrow_and_update()));
        }
    });
    rx
}
