//! The HTTP interactions endpoint, `POST /discord/interactions`: used when
//! the application has an Interactions Endpoint URL (Discord then sends no
//! `INTERACTION_CREATE` over the Gateway).
//!
//! Every request is verified before its body is read: Ed25519 over
//! `X-Signature-Timestamp` + the raw body with the application's public key.
//! Failures answer 401 (Discord probes with bad signatures and drops an
//! endpoint that accepts them) and are counted by reason. Discord documents
//! no freshness window, so we keep one (5 minutes) and remember interaction
//! ids for it: a replayed request gets the "thinking…" answer again and
//! nothing else. A click is answered inline with a deferred ephemeral
//! response, then decided; the outcome replaces the deferred answer.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use ring::signature::{ED25519, UnparsedPublicKey};
use serde_json::{Value, json};
use tracing::{debug, warn};

use super::DiscordChat;
use super::interaction::{self, PONG, Parsed};
use crate::chat::cache::Remembered;
use crate::chat::click::ClickContext;
use crate::metrics::ChatReason;

pub const PATH: &str = "/discord/interactions";
/// How far a request's timestamp may be from our clock.
pub const WINDOW: Duration = Duration::from_secs(300);

struct Endpoint {
    chat: Arc<DiscordChat>,
    key: UnparsedPublicKey<Vec<u8>>,
    ctx: ClickContext,
    /// Interaction ids seen, kept for twice the window.
    seen: Remembered<()>,
}

/// Why a request was refused (the metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    MissingSignature,
    BadSignature,
    StaleTimestamp,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Self::MissingSignature => "missing_signature",
            Self::BadSignature => "bad_signature",
            Self::StaleTimestamp => "stale_timestamp",
        }
    }
}

/// Checks the signature headers against `body` (pure, `now` in Unix seconds).
pub fn verify(key: &UnparsedPublicKey<Vec<u8>>, headers: &HeaderMap, body: &[u8], now: u64) -> Result<(), Refusal> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|s| !s.is_empty());
    let (Some(sig), Some(ts)) = (header("x-signature-ed25519"), header("x-signature-timestamp")) else {
        return Err(Refusal::MissingSignature);
    };
    let sig = hex::decode(sig).map_err(|_| Refusal::BadSignature)?;
    let mut signed = Vec::with_capacity(ts.len() + body.len());
    signed.extend_from_slice(ts.as_bytes());
    signed.extend_from_slice(body);
    key.verify(&signed, &sig).map_err(|_| Refusal::BadSignature)?;
    let ts: u64 = ts.parse().map_err(|_| Refusal::StaleTimestamp)?;
    if ts.abs_diff(now) > WINDOW.as_secs() {
        return Err(Refusal::StaleTimestamp);
    }
    Ok(())
}

/// The routes of the endpoint; `public_key` is the application's 32-byte key.
pub fn routes(chat: Arc<DiscordChat>, public_key: Vec<u8>, ctx: ClickContext) -> Router {
    let state = Arc::new(Endpoint {
        chat,
        key: UnparsedPublicKey::new(&ED25519, public_key),
        ctx,
        seen: Remembered::new(WINDOW * 2),
    });
    Router::new().route(PATH, post(handle)).with_state(state)
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn reply(v: Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}

async fn handle(State(ep): State<Arc<Endpoint>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = verify(&ep.key, &headers, &body, now_secs()) {
        ep.ctx.rejections.get_or_create(&ChatReason { chat: "discord".into(), reason: r.label().into() }).inc();
        debug!(reason = r.label(), "Discord interaction refused");
        return (StatusCode::UNAUTHORIZED, "invalid request signature").into_response();
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "the body is not JSON").into_response();
    };
    match interaction::parse(&v) {
        Parsed::Ping => reply(json!({"type": PONG})),
        Parsed::Click(c) => {
            if !ep.first_time(&c.interaction_id) {
                debug!(interaction = %c.interaction_id, "Discord interaction delivered again; already answered");
                return reply(interaction::deferred_ephemeral());
            }
            let chat = ep.chat.clone();
            let desk = ep.ctx.desk.clone();
            // The inline answer below is the initial response; deciding
            // (Teleport calls) happens after it.
            tokio::spawn(async move { chat.answer_click(&desk, *c, true).await });
            reply(interaction::deferred_ephemeral())
        }
        Parsed::Other(what) => {
            warn!(what, "Discord interaction not handled");
            reply(interaction::ephemeral_message("This bot only handles the Approve and Deny buttons of access request cards."))
        }
    }
}

impl Endpoint {
    /// Remembers `id` for the window; false when it was seen already.
    fn first_time(&self, id: &str) -> bool {
        self.seen.get_or_make(id, || ()).1
    }
}

#[cfg(test)]
mod tests {
    use ring::signature::{Ed25519KeyPair, KeyPair};

    use super::*;

    fn pair() -> Ed25519KeyPair {
        let rng = ring::rand::SystemRandom::new();
        Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref()).unwrap()
    }

    fn signed(pair: &Ed25519KeyPair, ts: &str, body: &[u8]) -> HeaderMap {
        let mut m = ts.as_bytes().to_vec();
        m.extend_from_slice(body);
        let mut h = HeaderMap::new();
        h.insert("x-signature-ed25519", hex::encode(pair.sign(&m).as_ref()).parse().unwrap());
        h.insert("x-signature-timestamp", ts.parse().unwrap());
        h
    }

    #[test]
    fn signatures_are_checked_over_timestamp_and_raw_body() {
        let p = pair();
        let key = UnparsedPublicKey::new(&ED25519, p.public_key().as_ref().to_vec());
        let body = br#"{"type":1}"#;
        let now = 1_700_000_000;
        let h = signed(&p, "1700000000", body);
        assert_eq!(verify(&key, &h, body, now), Ok(()));
        assert_eq!(verify(&key, &h, br#"{"type":1} "#, now), Err(Refusal::BadSignature));
        assert_eq!(verify(&key, &signed(&pair(), "1700000000", body), body, now), Err(Refusal::BadSignature));
        assert_eq!(verify(&key, &HeaderMap::new(), body, now), Err(Refusal::MissingSignature));
        let mut no_ts = h.clone();
        no_ts.remove("x-signature-timestamp");
        assert_eq!(verify(&key, &no_ts, body, now), Err(Refusal::MissingSignature));
        assert_eq!(verify(&key, &h, body, now + 301), Err(Refusal::StaleTimestamp));
        let mut garbage = h.clone();
        garbage.insert("x-signature-ed25519", "zz".parse().unwrap());
        assert_eq!(verify(&key, &garbage, body, now), Err(Refusal::BadSignature));
    }
}
