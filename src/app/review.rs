//! Starts review from chat: the desk, each chat's click transports, and the
//! callback listener that serves their HTTP routes.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Result, bail};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::chat::Chat;
use crate::chat::click::{ClickContext, LinkState};
use crate::config::{ChatConfig, Config};
use crate::metrics::Metrics;
use crate::review::{ChatDesk, Desk, display_name};
use crate::teleport::TeleportClient;

/// What review from chat started.
#[derive(Default)]
pub struct ReviewParts {
    pub links: Vec<(String, watch::Receiver<LinkState>)>,
    pub callback_addr: Option<SocketAddr>,
}

pub async fn start(
    cfg: &Config,
    chats: &[(Arc<dyn Chat>, &ChatConfig)],
    client: Arc<TeleportClient>,
    metrics: Arc<Metrics>,
    stop: &CancellationToken,
) -> Result<ReviewParts> {
    let desks: Vec<ChatDesk> = chats
        .iter()
        .filter_map(|(chat, c)| {
            c.review_mapping().map(|m| ChatDesk { chat: chat.clone(), mapping: m.clone(), display: display_name(chat.name()) })
        })
        .collect();
    if desks.is_empty() {
        return Ok(ReviewParts::default());
    }
    let (tx, rx) = mpsc::channel(256);
    let desk = Arc::new(Desk::new(client, desks, metrics.clone()));
    tokio::spawn(desk.run(rx, stop.clone()));
    let ctx = ClickContext { desk: tx, rejections: metrics.callback_rejections.clone(), stop: stop.clone() };
    let mut parts = ReviewParts::default();
    let mut routes: Option<axum::Router> = None;
    for (chat, c) in chats {
        let t = chat.clone().start_clicks(c, ctx.clone()).map_err(|e| anyhow::anyhow!("{}: {e}", chat.name()))?;
        if let Some(r) = t.routes {
            routes = Some(match routes {
                Some(all) => all.merge(r),
                None => r,
            });
        }
        if let Some((what, state)) = t.link {
            tokio::spawn(mirror_link(metrics.clone(), chat.name(), state.clone(), stop.clone()));
            parts.links.push((what, state));
        }
    }
    if let Some(routes) = routes {
        let Some(cb) = &cfg.http.callbacks else {
            bail!("HTTP interactivity needs http.listen_addr (the callback listener)");
        };
        let addr = crate::callbacks::serve(cb, routes, stop.clone()).await?;
        info!(addr = %addr, public_addr = cb.public_addr.as_deref().unwrap_or(""), tls = cb.tls.is_some(),
            "serving chat callbacks");
        parts.callback_addr = Some(addr);
    }
    Ok(parts)
}

/// Keeps `click_connection_up` current.
async fn mirror_link(metrics: Arc<Metrics>, chat: &'static str, mut state: watch::Receiver<LinkState>, stop: CancellationToken) {
    let gauge = metrics.click_connection_up.get_or_create(&Metrics::chat(chat)).clone();
    loop {
        gauge.set((*state.borrow_and_update() == LinkState::Connected) as i64);
        tokio::select! {
            _ = stop.cancelled() => return,
            r = state.changed() => if r.is_err() { return },
        }
    }
}
