//! Approve/Deny buttons on Mattermost cards, and the endpoint their clicks
//! come to (`POST /mattermost/actions` on the callback listener).
//!
//! Mattermost signs nothing it sends to an integration URL, so each button
//! carries a context signed by us: request id, action and an expiry, with
//! an HMAC-SHA256 under `mattermost.secret`. Clients never see the context
//! (the server strips integrations from posts it serves), so a valid MAC
//! proves the call came through a button we posted; the post it names is
//! then checked against plugin data by the review desk. A callback whose
//! context does not verify, has expired, or names another action gets 401
//! and changes nothing. The user ID comes from Mattermost's session.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use ring::hmac;
use serde_json::{Value, json};
use tracing::warn;

use crate::chat::click::{Click, ClickSender, Decision, decide};
use crate::chat::{MessageRef, RequestView};
use crate::metrics::{ChatReason, Metrics};

/// Path of the integration URL on the callback listener.
pub const PATH: &str = "/mattermost/actions";
/// Mattermost waits 30 s for an integration; answer well before.
const DECIDE_WITHIN: Duration = Duration::from_secs(20);
/// Buttons of a request without an expiry stay valid this long.
const DEFAULT_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Signs and checks button contexts.
pub struct Signer {
    key: hmac::Key,
    url: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("url", &self.url).finish_non_exhaustive()
    }
}

/// Why a callback is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Malformed,
    BadSignature,
    Expired,
}

impl Refusal {
    fn label(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
        }
    }
}

/// A verified button context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub request_id: String,
    pub decision: Decision,
}

fn action_name(d: Decision) -> &'static str {
    match d {
        Decision::Approve => "approve",
        Decision::Deny => "deny",
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

impl Signer {
    /// `url`: the integration URL (`http.public_addr` + [`PATH`]).
    pub fn new(secret: &[u8], url: impl Into<String>) -> Self {
        Self { key: hmac::Key::new(hmac::HMAC_SHA256, secret), url: url.into() }
    }

    fn message(request_id: &str, action: &str, expires: u64) -> Vec<u8> {
        // Length-prefixed fields: no two contexts share a signed string.
        let mut m = b"teleport-plugin mattermost action v1".to_vec();
        for part in [request_id, action, &expires.to_string()] {
            m.extend_from_slice(&(part.len() as u32).to_be_bytes());
            m.extend_from_slice(part.as_bytes());
        }
        m
    }

    /// The signed context of one button.
    pub fn context(&self, request_id: &str, decision: Decision, expires: u64) -> Value {
        let action = action_name(decision);
        let mac = hmac::sign(&self.key, &Self::message(request_id, action, expires));
        json!({"request_id": request_id, "action": action, "expires": expires, "mac": hex::encode(mac.as_ref())})
    }

    /// Checks a context at `now`.
    pub fn verify(&self, context: &Value, now: SystemTime) -> Result<Verified, Refusal> {
        let (Some(request_id), Some(action), Some(expires), Some(mac)) = (
            context["request_id"].as_str(),
            context["action"].as_str(),
            context["expires"].as_u64(),
            context["mac"].as_str(),
        ) else {
            return Err(Refusal::Malformed);
        };
        let mac = hex::decode(mac).map_err(|_| Refusal::BadSignature)?;
        hmac::verify(&self.key, &Self::message(request_id, action, expires), &mac).map_err(|_| Refusal::BadSignature)?;
        if unix(now) > expires {
            return Err(Refusal::Expired);
        }
        let decision = match action {
            "approve" => Decision::Approve,
            "deny" => Decision::Deny,
            _ => return Err(Refusal::Malformed),
        };
        Ok(Verified { request_id: request_id.to_string(), decision })
    }

    /// Post attachments with the card's buttons (none when `view.buttons`
    /// is off: an update then removes them). Action ids are letters only:
    /// Mattermost's click route accepts nothing else.
    pub fn attachments(&self, view: &RequestView) -> Value {
        if !view.buttons {
            return json!([]);
        }
        let expires = view.expires.map(unix).unwrap_or_else(|| unix(SystemTime::now() + DEFAULT_VALIDITY));
        let button = |id: &str, name: &str, style: &str, d: Decision| {
            json!({
                "id": id,
                "type": "button",
                "name": name,
                "style": style,
                "integration": {"url": self.url, "context": self.context(&view.id, d, expires)},
            })
        };
        json!([{
            "actions": [
                button("approve", "Approve", "success", Decision::Approve),
                button("deny", "Deny", "danger", Decision::Deny),
            ]
        }])
    }
}

#[derive(Clone)]
struct Ctx {
    signer: Arc<Signer>,
    desk: ClickSender,
    rejections: Family<ChatReason, Counter>,
}

/// The integration endpoint.
pub fn router(signer: Arc<Signer>, desk: ClickSender, rejections: Family<ChatReason, Counter>) -> Router {
    Router::new().route(PATH, post(action)).with_state(Ctx { signer, desk, rejections })
}

fn refuse(ctx: &Ctx, why: &Refusal) -> Response {
    ctx.rejections.get_or_create(&Metrics::reason("mattermost", why.label())).inc();
    warn!(chat = "mattermost", reason = why.label(), "button callback refused");
    (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "unauthorized"}))).into_response()
}

async fn action(State(ctx): State<Ctx>, body: Bytes) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return refuse(&ctx, &Refusal::Malformed);
    };
    let verified = match ctx.signer.verify(&body["context"], SystemTime::now()) {
        Ok(v) => v,
        Err(r) => return refuse(&ctx, &r),
    };
    let (Some(user_id), Some(post_id), Some(channel_id)) =
        (body["user_id"].as_str(), body["post_id"].as_str(), body["channel_id"].as_str())
    else {
        return refuse(&ctx, &Refusal::Malformed);
    };
    if [user_id, post_id, channel_id].iter().any(|s| s.is_empty()) {
        return refuse(&ctx, &Refusal::Malformed);
    }
    let click = Click {
        chat: "mattermost",
        user_id: user_id.to_string(),
        user_name: body["user_name"].as_str().unwrap_or_default().to_string(),
        request_id: verified.request_id.clone(),
        decision: verified.decision,
        message: Some(MessageRef { channel_id: channel_id.to_string(), message_id: post_id.to_string() }),
        dedupe_key: format!("mattermost:{user_id}:{post_id}:{}", action_name(verified.decision)),
    };
    let text = match tokio::time::timeout(DECIDE_WITHIN, decide(&ctx.desk, click)).await {
        Ok(outcome) => outcome.text(&verified.request_id),
        Err(_) => "Teleport is slow to answer; the review may still go through. Check the card in a moment.".into(),
    };
    axum::Json(json!({"ephemeral_text": text, "skip_slack_parsing": true})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_verify_only_as_signed() {
        let s = Signer::new(b"k", "http://x/mattermost/actions");
        let now = SystemTime::now();
        let exp = unix(now) + 60;
        let c = s.context("r1", Decision::Approve, exp);
        assert_eq!(s.verify(&c, now), Ok(Verified { request_id: "r1".into(), decision: Decision::Approve }));
        for (field, value) in [("request_id", json!("r2")), ("action", json!("deny")), ("expires", json!(exp + 1))] {
            let mut bad = c.clone();
            bad[field] = value;
            assert_eq!(s.verify(&bad, now), Err(Refusal::BadSignature), "{field}");
        }
        assert_eq!(Signer::new(b"other", "u").verify(&c, now), Err(Refusal::BadSignature));
        assert_eq!(s.verify(&c, now + Duration::from_secs(120)), Err(Refusal::Expired));
        assert_eq!(s.verify(&json!({"request_id": "r1"}), now), Err(Refusal::Malformed));
    }

    #[test]
    fn buttons_only_while_enabled() {
        let s = Signer::new(b"k", "http://x/mattermost/actions");
        let mut v = crate::chat::fixtures::view();
        assert_eq!(s.attachments(&v), json!([]));
        v.buttons = true;
        let a = s.attachments(&v);
        let actions = a[0]["actions"].as_array().unwrap();
        assert_eq!(actions.len(), 2);
        for x in actions {
            assert!(x["id"].as_str().unwrap().chars().all(|c| c.is_ascii_alphanumeric()));
            assert_eq!(x["integration"]["url"], "http://x/mattermost/actions");
        }
        assert!(s.verify(&actions[1]["integration"]["context"], SystemTime::now()).is_ok());
    }
}
