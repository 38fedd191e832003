//! Clicks on the buttons of stored messages, as Slack delivers them: a
//! `block_actions` payload built from the message itself (the button must be
//! on it; its `value` is sent back), over Socket Mode when a socket is up,
//! else form-encoded and signed to the app's Request URL. Each click gets a
//! `response_url`, a capability URL on the simulator (5 uses, 30 minutes)
//! whose messages are recorded, like `chat.postEphemeral`'s, per user.
//!
//! Forged HTTP deliveries ([`Forgery`]) let tests check a receiver refuses
//! what an attacker can send: no or bad signatures, stale timestamps, a
//! replay, a body altered under a genuine signature.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use hyper_util::rt::TokioIo;
use ring::hmac;
use serde_json::{Value, json};

use super::{SlackMessage, State_};

/// How long a `response_url` works, and how often.
pub const RESPONSE_URL_TTL: Duration = Duration::from_secs(30 * 60);
pub const RESPONSE_URL_USES: u32 = 5;

/// A signed delivery that a receiver must refuse (or, for
/// [`Forgery::ForeignTeam`], refuse for its workspace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forgery {
    /// Signed with another secret.
    BadSignature,
    NoSignature,
    NoTimestamp,
    /// Correctly signed, ten minutes ago (a captured request sent late).
    StaleTimestamp,
    /// Signed, then the button's request ID changed in the body.
    AlteredRequestId(String),
    /// Correctly signed, from another workspace (`team.id`, `user.team_id`).
    ForeignTeam(String),
}

/// How a click went out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClickVia {
    Socket { envelope_id: String },
    /// The Request URL's HTTP status.
    Http { status: u16 },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClickError {
    #[error("no message {ts} in channel {channel}")]
    NoMessage { channel: String, ts: String },
    #[error("the message has no button {0}")]
    NoButton(String),
    #[error("no Slack user {0}")]
    NoUser(String),
    #[error("no Socket Mode connection is up and no Request URL is set")]
    NoReceiver,
    #[error("nothing was delivered over HTTP yet")]
    NothingToReplay,
    #[error("delivering to the Request URL failed: {0}")]
    Http(String),
}

/// What a user was shown by the app alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ephemeral {
    pub user: String,
    pub channel: String,
    pub text: String,
    /// `response_url` or `chat.postEphemeral`.
    pub via: &'static str,
    pub thread_ts: Option<String>,
}

/// A message posted to a `response_url`, as received.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponsePost {
    pub user: String,
    pub body: Value,
}

pub(super) struct ResponseUrl {
    pub user: String,
    pub channel: String,
    pub message_ts: String,
    pub created: Instant,
    pub uses: u32,
}

/// The Request URL and its signing secret.
pub(super) struct RequestUrl {
    pub url: String,
    pub secret: String,
}

/// An HTTP delivery, kept to replay it.
#[derive(Clone)]
pub(super) struct Sent {
    pub body: Vec<u8>,
    pub timestamp: Option<String>,
    pub signature: Option<String>,
}

/// The button `action_id` on `msg`: its block's `block_id` and the element.
fn find_button<'a>(msg: &'a SlackMessage, action_id: &str) -> Option<(&'a str, &'a Value)> {
    msg.blocks.as_ref()?.as_array()?.iter().filter(|b| b["type"] == "actions").find_map(|b| {
        let el = b["elements"].as_array()?.iter().find(|e| e["type"] == "button" && e["action_id"] == action_id)?;
        Some((b["block_id"].as_str().unwrap_or_default(), el))
    })
}

impl State_ {
    /// The payload of `user` clicking `action_id` on the message `ts` of
    /// `channel`, with a fresh response URL on `base` (`http://host:port`).
    pub(super) fn click_payload(
        &mut self,
        base: &str,
        user: &str,
        channel: &str,
        ts: &str,
        action_id: &str,
    ) -> Result<Value, ClickError> {
        let no_message = || ClickError::NoMessage { channel: channel.into(), ts: ts.into() };
        let channel_id = self.find_channel(channel).ok_or_else(no_message)?;
        let msg = super::parse_ts(ts).and_then(|k| self.messages.get(&(channel_id.clone(), k))).ok_or_else(no_message)?;
        let (block_id, button) = find_button(msg, action_id).ok_or_else(|| ClickError::NoButton(action_id.into()))?;
        let u = self.users.get(user).ok_or_else(|| ClickError::NoUser(user.into()))?;
        let action = json!({
            "type": "button",
            "action_id": action_id,
            "block_id": block_id,
            "text": button["text"],
            "value": button.get("value").cloned().unwrap_or(Value::Null),
            "style": button.get("style").cloned().unwrap_or(Value::Null),
            "action_ts": super::fmt_ts(super::now_micros()),
        });
        let rendered = self.render(msg, false);
        let channel_name = self.channels.get(&channel_id).map(|c| c.name.clone()).unwrap_or_default();
        let user_json = json!({"id": u.id, "username": u.name, "name": u.name, "team_id": self.team_id});
        let secret = uuid::Uuid::new_v4().simple().to_string();
        let n = self.next_id;
        self.next_id += 1;
        self.response_urls.insert(
            secret.clone(),
            ResponseUrl { user: user.into(), channel: channel_id.clone(), message_ts: ts.into(), created: Instant::now(), uses: 0 },
        );
        Ok(json!({
            "type": "block_actions",
            "user": user_json,
            "api_app_id": self.app_id,
            "token": self.verification_token,
            "container": {"type": "message", "message_ts": ts, "channel_id": channel_id, "is_ephemeral": false},
            "trigger_id": format!("{n}.{}.{}", n * 7, &secret[..16]),
            "team": {"id": self.team_id, "domain": self.team_domain},
            "enterprise": null,
            "is_enterprise_install": false,
            "channel": {"id": channel_id, "name": channel_name},
            "message": rendered,
            "state": {"values": {}},
            "response_url": format!("{base}/actions/{}/{n}/{secret}", self.team_id),
            "actions": [action],
        }))
    }

    /// A `response_url` post; `Err` is the HTTP status and error text.
    pub(super) fn response_url_post(&mut self, secret: &str, body: &Value) -> Result<(), (u16, &'static str)> {
        let r = self.response_urls.get_mut(secret).ok_or((404, "no_such_url"))?;
        if r.created.elapsed() > RESPONSE_URL_TTL {
            return Err((404, "expired_url"));
        }
        if r.uses >= RESPONSE_URL_USES {
            return Err((404, "used_url"));
        }
        let text = body["text"].as_str().unwrap_or_default().to_owned();
        if text.is_empty() && !body["blocks"].is_array() {
            return Err((400, "no_text"));
        }
        r.uses += 1;
        let (user, channel, message_ts) = (r.user.clone(), r.channel.clone(), r.message_ts.clone());
        self.response_posts.push(ResponsePost { user: user.clone(), body: body.clone() });
        let truthy = |k: &str| body[k] == true || body[k] == "true";
        if truthy("delete_original") {
            if let Some(k) = super::parse_ts(&message_ts) {
                self.messages.remove(&(channel, k));
            }
            return Ok(());
        }
        if truthy("replace_original") {
            // The card itself changes, for everyone.
            let edited = super::fmt_ts(self.next_ts());
            if let Some(msg) = super::parse_ts(&message_ts).and_then(|k| self.messages.get_mut(&(channel, k))) {
                msg.history.push(super::SlackRevision {
                    text: msg.text.clone(),
                    blocks: msg.blocks.clone(),
                    attachments: msg.attachments.clone(),
                    metadata: msg.metadata.clone(),
                    replaced_at: SystemTime::now(),
                });
                msg.text = Some(text);
                msg.blocks = body.get("blocks").cloned();
                msg.edited_ts = Some(edited);
            }
            return Ok(());
        }
        if body["response_type"] == "in_channel" {
            let micros = self.next_ts();
            let msg = SlackMessage {
                channel: channel.clone(),
                ts: super::fmt_ts(micros),
                thread_ts: None,
                reply_broadcast: false,
                text: Some(text),
                blocks: body.get("blocks").cloned(),
                attachments: None,
                metadata: None,
                reactions: Default::default(),
                history: Vec::new(),
                edited_ts: None,
            };
            self.messages.insert((channel, micros), msg);
            return Ok(());
        }
        self.ephemerals.push(Ephemeral { user, channel, text, via: "response_url", thread_ts: None });
        Ok(())
    }
}

/// `X-Slack-Signature` as Slack computes it.
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut base = format!("v0:{timestamp}:").into_bytes();
    base.extend_from_slice(body);
    format!("v0={}", hex::encode(hmac::sign(&key, &base).as_ref()))
}

/// The signed (or forged) form-encoded delivery of `payload`.
pub(super) fn delivery(secret: &str, mut payload: Value, forgery: Option<&Forgery>) -> Sent {
    if let Some(Forgery::ForeignTeam(team)) = forgery {
        payload["team"]["id"] = json!(team);
        payload["user"]["team_id"] = json!(team);
    }
    let encode = |p: &Value| form_urlencoded::Serializer::new(String::new()).append_pair("payload", &p.to_string()).finish().into_bytes();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let ts = match forgery {
        Some(Forgery::StaleTimestamp) => now - 600,
        _ => now,
    }
    .to_string();
    let body = encode(&payload);
    let signature = match forgery {
        Some(Forgery::BadSignature) => sign("not-the-signing-secret", &ts, &body),
        _ => sign(secret, &ts, &body),
    };
    let body = match forgery {
        Some(Forgery::AlteredRequestId(id)) => {
            payload["actions"][0]["value"] = json!(id);
            encode(&payload)
        }
        _ => body,
    };
    Sent {
        body,
        timestamp: (forgery != Some(&Forgery::NoTimestamp)).then_some(ts),
        signature: (forgery != Some(&Forgery::NoSignature)).then_some(signature),
    }
}

/// POSTs a delivery to the Request URL; its HTTP status.
pub(super) async fn post(url: &str, sent: &Sent) -> Result<u16, ClickError> {
    let fail = |e: &dyn std::fmt::Display| ClickError::Http(e.to_string());
    let uri: http::Uri = url.parse().map_err(|e| fail(&e))?;
    if uri.scheme_str() != Some("http") {
        return Err(ClickError::Http("the simulator delivers to http:// Request URLs only".into()));
    }
    let authority = uri.authority().ok_or_else(|| ClickError::Http("the Request URL has no host".into()))?.clone();
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = authority.port_u16().unwrap_or(80);
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(|e| fail(&e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| fail(&e))?;
    tokio::spawn(conn);
    let mut req = http::Request::post(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header(http::header::HOST, authority.as_str())
        .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(http::header::USER_AGENT, "Slackbot 1.0 (+https://api.slack.com/robots)");
    if let Some(ts) = &sent.timestamp {
        req = req.header("X-Slack-Request-Timestamp", ts);
    }
    if let Some(sig) = &sent.signature {
        req = req.header("X-Slack-Signature", sig);
    }
    let req = req.body(Body::from(sent.body.clone())).map_err(|e| fail(&e))?;
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .map_err(|_| ClickError::Http("no answer within 10 s (Slack gives up after 3 s)".into()))?
        .map_err(|e| fail(&e))?;
    Ok(resp.status().as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_slacks_documented_example() {
        let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        assert_eq!(
            sign("8f742231b10e8888abcd99yyyzzz85a5", "1531420618", body.as_bytes()),
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
        );
    }

    #[test]
    fn an_altered_body_keeps_the_original_signature() {
        let payload = json!({"type": "block_actions", "actions": [{"value": "req-1"}], "team": {"id": "T1"}, "user": {"id": "U1"}});
        let genuine = delivery("s3cret", payload.clone(), None);
        let altered = delivery("s3cret", payload.clone(), Some(&Forgery::AlteredRequestId("req-2".into())));
        assert_ne!(genuine.body, altered.body);
        let ts = altered.timestamp.clone().unwrap();
        let original_body = delivery_body(&payload);
        assert_eq!(altered.signature.unwrap(), sign("s3cret", &ts, &original_body));
        let stale = delivery("s3cret", payload.clone(), Some(&Forgery::StaleTimestamp));
        let age = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() - stale.timestamp.unwrap().parse::<u64>().unwrap();
        assert!(age >= 600);
        assert!(delivery("s3cret", payload.clone(), Some(&Forgery::NoSignature)).signature.is_none());
        assert!(delivery("s3cret", payload, Some(&Forgery::NoTimestamp)).timestamp.is_none());
    }

    fn delivery_body(p: &Value) -> Vec<u8> {
        form_urlencoded::Serializer::new(String::new()).append_pair("payload", &p.to_string()).finish().into_bytes()
    }
}
