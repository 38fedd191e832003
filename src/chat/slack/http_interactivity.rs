//! Clicks delivered to the Slack app's HTTP Request URL (Interactivity &
//! Shortcuts), the alternative to Socket Mode: `POST /slack/interactions`.
//!
//! Order of checks: the signature over the raw body first ([`signature`]:
//! missing or bad headers, a timestamp more than 5 minutes off, a replayed
//! signature → 401, before anything of the body is read), then the form
//! field `payload`, then the workspace: a click from another workspace than
//! the bot's own (`auth.test`) → 401. Slack is answered 200 at once; the
//! click is decided afterwards and the outcome goes to the interaction's
//! `response_url`, ephemeral (or `chat.postEphemeral`).
//!
//! Logs never hold the signature, the body or the response URL.

use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::metrics::{ChatReason, Metrics};
use serde_json::Value;

use super::interaction;
use super::signature::{SIGNATURE_HEADER, TIMESTAMP_HEADER, Verifier};
use super::{SlackChat, settle};
use crate::chat::click::ClickSender;
use crate::config::Secret;

/// Path of the Request URL.
pub const PATH: &str = "/slack/interactions";

#[derive(Clone)]
struct Ctx {
    verifier: Arc<Verifier>,
    chat: Arc<SlackChat>,
    desk: ClickSender,
    /// Counts refused deliveries by reason (bad signature, replay, foreign workspace).
    refused: Option<Family<ChatReason, Counter>>,
}

/// The Request URL endpoint, verifying with the app's signing secret.
pub fn router(signing_secret: Secret, chat: Arc<SlackChat>, desk: ClickSender) -> Router {
    build(signing_secret, chat, desk, None)
}

/// [`router`], counting every refused delivery in `refused`, by reason.
pub fn router_counting(
    signing_secret: Secret,
    chat: Arc<SlackChat>,
    desk: ClickSender,
    refused: Family<ChatReason, Counter>,
) -> Router {
    build(signing_secret, chat, desk, Some(refused))
}

fn build(signing_secret: Secret, chat: Arc<SlackChat>, desk: ClickSender, refused: Option<Family<ChatReason, Counter>>) -> Router {
    let ctx = Ctx { verifier: Arc::new(Verifier::new(&signing_secret)), chat, desk, refused };
    Router::new().route(PATH, post(interactions)).with_state(ctx)
}

impl Ctx {
    fn refuse(&self, reason: &str, detail: &dyn std::fmt::Display) -> StatusCode {
        if let Some(c) = &self.refused {
            c.get_or_create(&Metrics::reason("slack", reason)).inc();
        }
        tracing::warn!(reason, "Slack interaction refused: {detail}");
        StatusCode::UNAUTHORIZED
    }
}

async fn interactions(State(ctx): State<Ctx>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Err(r) = ctx.verifier.verify(header(TIMESTAMP_HEADER), header(SIGNATURE_HEADER), &body, SystemTime::now()) {
        return ctx.refuse(r.label(), &r);
    }
    let Some(payload) = form_urlencoded::parse(&body).find(|(k, _)| k == "payload").map(|(_, v)| v.into_owned())
    else {
        tracing::warn!("signed Slack interaction without a payload field; ignored");
        return StatusCode::BAD_REQUEST;
    };
    let Ok(payload) = serde_json::from_str::<Value>(&payload) else {
        tracing::warn!("signed Slack interaction whose payload is not JSON; ignored");
        return StatusCode::BAD_REQUEST;
    };
    let i = match interaction::parse(&payload) {
        Ok(i) => i,
        Err(skip) => {
            tracing::warn!(%skip, "Slack interaction skipped");
            return StatusCode::OK;
        }
    };
    match ctx.chat.team_id().await {
        Ok(ours) if i.team_id.as_deref() == Some(ours.as_str()) => {}
        Ok(ours) => {
            let theirs = i.team_id.as_deref().unwrap_or("none");
            return ctx.refuse("foreign_team", &format_args!("the click comes from workspace {theirs}, the bot is in {ours}"));
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot tell which Slack workspace the bot is in; the click is refused (the user may click again)");
            return StatusCode::SERVICE_UNAVAILABLE;
        }
    }
    let interaction::Interaction { click, reply, .. } = i;
    tokio::spawn(async move { settle(&ctx.chat, &ctx.desk, click, reply, "http").await });
    StatusCode::OK
}
