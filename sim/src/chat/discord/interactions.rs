//! Interactions: button clicks built from the stored message (the button
//! must be on it, as posted), delivered over the Gateway or, once an
//! interactions endpoint is set, as Ed25519-signed HTTP POSTs; and the
//! routes that answer them.
//!
//! Rules kept: the initial response (callback, or the endpoint's inline
//! answer) within 3 s, once; `@original` edits only after it and within
//! 15 min, with the interaction's token and application id; ephemeral
//! (flags 64) answers are recorded per user.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};

use super::super::common::{ParsedBody, json as json_response, lock};
use super::{ApiError, ApiResult, Kind, Shared, State_, api_error};

/// Initial response deadline.
pub const INITIAL_RESPONSE: Duration = Duration::from_secs(3);
/// Lifetime of an interaction token for follow-ups.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);
const EPHEMERAL: u64 = 1 << 6;

/// An interaction the simulator created, as tests inspect it.
#[derive(Debug, Clone, PartialEq)]
pub struct SimInteraction {
    pub id: String,
    pub user_id: String,
    pub channel_id: String,
    pub message_id: String,
    pub custom_id: String,
    /// Type of the initial response, once given.
    pub response_type: Option<u64>,
    /// Whether the initial response was ephemeral (flags 64).
    pub ephemeral: bool,
    /// The response message's content (type 4, or an `@original` edit).
    pub content: Option<String>,
    /// Initial responses refused as late (after 3 s).
    pub late_responses: u32,
    /// Initial responses refused because one was given already (40060).
    pub repeat_responses: u32,
    /// Delivered over HTTP (else the Gateway).
    pub via_http: bool,
    /// A forged delivery (bad or missing signature, altered body).
    pub forged: bool,
}

pub(crate) struct Stored {
    pub(crate) info: SimInteraction,
    pub(crate) token: String,
    pub(crate) created: Instant,
    pub(crate) payload: Value,
}

/// How a delivery to the interactions endpoint is spoiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forgery {
    /// Signed with another key.
    BadSignature,
    /// No `X-Signature-Ed25519`.
    MissingSignature,
    /// No `X-Signature-Timestamp`.
    MissingTimestamp,
    /// Signed, then a byte of the body changed.
    AlteredBody,
    /// Correctly signed, with a timestamp from an hour ago.
    StaleTimestamp,
}

/// The endpoint's answer to a delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointReply {
    pub status: u16,
    pub body: Value,
}

/// What a click did.
#[derive(Debug, Clone, PartialEq)]
pub struct ClickSent {
    pub interaction_id: String,
    /// The endpoint's answer, when delivered over HTTP.
    pub reply: Option<EndpointReply>,
}

pub(crate) struct Endpoint {
    pub(crate) url: String,
    pub(crate) key: std::sync::Arc<Ed25519KeyPair>,
}

/// A fresh Ed25519 key pair and its public key in hex, as the Developer
/// Portal shows it.
pub fn new_keypair() -> (std::sync::Arc<Ed25519KeyPair>, String) {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("Ed25519 key generation");
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("a key just generated");
    let public = hex::encode(pair.public_key().as_ref());
    (std::sync::Arc::new(pair), public)
}

/// Finds the button `custom_id` on a stored message's components.
fn find_button<'a>(components: &'a [Value], custom_id: &str) -> Option<&'a Value> {
    components
        .iter()
        .flat_map(|row| row["components"].as_array().into_iter().flatten())
        .find(|c| c["type"] == 2 && c["custom_id"] == custom_id)
}

impl State_ {
    /// An interaction for `user_id` clicking `custom_id` on a stored message.
    pub(crate) fn new_click(
        &mut self,
        user_id: &str,
        channel_id: &str,
        message_id: &str,
        custom_id: &str,
    ) -> Result<(String, Value), String> {
        let key: u64 = message_id.parse().map_err(|_| format!("{message_id:?} is not a message id"))?;
        let m = self
            .messages
            .get(&key)
            .filter(|m| m.channel_id == channel_id)
            .ok_or_else(|| format!("no message {message_id} in channel {channel_id}"))?
            .clone();
        let button = find_button(&m.components, custom_id)
            .ok_or_else(|| format!("message {message_id} has no button with custom_id {custom_id:?}"))?;
        if button["disabled"] == true {
            return Err(format!("the button {custom_id:?} is disabled"));
        }
        let username = self.users.get(user_id).map(|u| u.name.clone()).unwrap_or_else(|| format!("user{user_id}"));
        let user = json!({"id": user_id, "username": username, "discriminator": "0", "global_name": null, "avatar": null});
        let id = self.next_snowflake().to_string();
        let token = format!("aW50ZXJhY3Rpb246{}", hex::encode(rand::random::<[u8; 24]>()));
        let dm = matches!(self.channels.get(channel_id).map(|c| &c.kind), Some(Kind::Dm { .. }));
        let mut payload = json!({
            "id": id,
            "application_id": self.bot_id,
            "type": 3,
            "token": token,
            "version": 1,
            "channel_id": channel_id,
            "channel": {"id": channel_id, "type": if dm { 1 } else { 0 }},
            "data": {"custom_id": custom_id, "component_type": 2},
            "message": self.render(&m),
            "app_permissions": "0",
            "locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": self.guild_id},
            "context": if dm { 1 } else { 0 },
        });
        if dm {
            payload["user"] = user;
        } else {
            payload["guild_id"] = json!(self.guild_id);
            payload["guild_locale"] = json!("en-US");
            payload["member"] = json!({"user": user, "roles": [], "permissions": "0", "nick": null, "joined_at": "2024-01-01T00:00:00.000000+00:00"});
        }
        self.interactions.push(Stored {
            info: SimInteraction {
                id: id.clone(),
                user_id: user_id.to_string(),
                channel_id: channel_id.to_string(),
                message_id: message_id.to_string(),
                custom_id: custom_id.to_string(),
                response_type: None,
                ephemeral: false,
                content: None,
                late_responses: 0,
                repeat_responses: 0,
                via_http: false,
                forged: false,
            },
            token,
            created: Instant::now(),
            payload: payload.clone(),
        });
        Ok((id, payload))
    }

    fn interaction_mut(&mut self, id: &str) -> Option<&mut Stored> {
        self.interactions.iter_mut().find(|i| i.info.id == id)
    }

    /// Applies an initial response; the error is Discord's answer.
    fn respond(&mut self, id: &str, body: &Value) -> Result<(), ApiError> {
        let i = self.interaction_mut(id).ok_or_else(unknown_interaction)?;
        if i.info.response_type.is_some() {
            i.info.repeat_responses += 1;
            return Err(api_error(StatusCode::BAD_REQUEST, 40060, "Interaction has already been acknowledged."));
        }
        if i.created.elapsed() > INITIAL_RESPONSE {
            i.info.late_responses += 1;
            return Err(unknown_interaction());
        }
        let kind = body["type"].as_u64().unwrap_or(0);
        if !matches!(kind, 1 | 4..=10 | 12) {
            return Err(api_error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body (type: Value is not a valid enum value.)"));
        }
        if matches!(kind, 5) && body["data"]["flags"].as_u64().is_some_and(|f| f & !EPHEMERAL != 0) {
            return Err(api_error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body (data.flags: only EPHEMERAL is allowed)"));
        }
        i.info.response_type = Some(kind);
        i.info.ephemeral = body["data"]["flags"].as_u64().is_some_and(|f| f & EPHEMERAL != 0);
        if kind == 4 {
            i.info.content = body["data"]["content"].as_str().map(str::to_owned);
        }
        Ok(())
    }
}

fn unknown_interaction() -> ApiError {
    api_error(StatusCode::NOT_FOUND, 10062, "Unknown interaction")
}

/// `POST /interactions/{id}/{token}/callback`.
pub(super) async fn callback(
    State(shared): State<std::sync::Arc<Shared>>,
    Path((id, token)): Path<(String, String)>,
    Extension(body): Extension<ParsedBody>,
) -> ApiResult {
    let mut st = lock(&shared.state);
    match st.interaction_mut(&id) {
        Some(i) if i.token == token => {}
        Some(_) => return Err(api_error(StatusCode::UNAUTHORIZED, 50027, "Invalid Webhook Token")),
        None => return Err(unknown_interaction()),
    }
    let ParsedBody::Json(body) = body else {
        return Err(api_error(StatusCode::BAD_REQUEST, 50109, "The request body contains invalid JSON."));
    };
    st.respond(&id, &body)?;
    Ok(Response::builder().status(StatusCode::NO_CONTENT).body(axum::body::Body::empty()).expect("static response"))
}

/// `PATCH /webhooks/{application_id}/{token}/messages/@original`.
pub(super) async fn edit_original(
    State(shared): State<std::sync::Arc<Shared>>,
    Path((app, token, which)): Path<(String, String, String)>,
    Extension(body): Extension<ParsedBody>,
) -> ApiResult {
    let mut st = lock(&shared.state);
    if which != "@original" {
        return Err(api_error(StatusCode::NOT_FOUND, 10008, "Unknown Message"));
    }
    let app_ok = app == st.bot_id;
    let Some(i) = st.interactions.iter_mut().find(|i| i.token == token && !i.info.forged) else {
        return Err(api_error(StatusCode::NOT_FOUND, 10015, "Unknown Webhook"));
    };
    if !app_ok {
        return Err(api_error(StatusCode::NOT_FOUND, 10015, "Unknown Webhook"));
    }
    if i.created.elapsed() > TOKEN_LIFETIME {
        return Err(api_error(StatusCode::UNAUTHORIZED, 50027, "Invalid Webhook Token"));
    }
    if i.info.response_type.is_none() {
        return Err(api_error(StatusCode::NOT_FOUND, 10008, "Unknown Message"));
    }
    let ParsedBody::Json(body) = body else {
        return Err(api_error(StatusCode::BAD_REQUEST, 50109, "The request body contains invalid JSON."));
    };
    let content = body["content"].as_str().unwrap_or_default();
    if content.chars().count() > 2000 {
        return Err(api_error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body (content: Must be 2000 or fewer in length.)"));
    }
    i.info.content = Some(content.to_string());
    let flags = if i.info.ephemeral { EPHEMERAL } else { 0 };
    let out = json!({"id": i.info.id, "type": 19, "content": content, "flags": flags, "channel_id": i.info.channel_id});
    Ok(json_response(StatusCode::OK, out))
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// POSTs `payload` to the endpoint, signed (or spoiled by `forgery`).
pub(crate) async fn deliver(endpoint: &Endpoint, payload: &Value, forgery: Option<Forgery>) -> Result<EndpointReply, String> {
    let mut body = payload.to_string().into_bytes();
    let ts = match forgery {
        Some(Forgery::StaleTimestamp) => now_secs() - 3600,
        _ => now_secs(),
    }
    .to_string();
    let mut signed = ts.as_bytes().to_vec();
    signed.extend_from_slice(&body);
    let sig = match forgery {
        Some(Forgery::BadSignature) => new_keypair().0.sign(&signed),
        _ => endpoint.key.sign(&signed),
    };
    if forgery == Some(Forgery::AlteredBody) {
        // Same length, other user: the classic tampering.
        let text = String::from_utf8_lossy(&body).replacen("\"type\":3", "\"type\":3 ", 1);
        body = text.into_bytes();
    }
    let mut req = http::Request::post(&endpoint.url).header("content-type", "application/json").header("user-agent", "Discord-Interactions/1.0 (+https://discord.com)");
    if forgery != Some(Forgery::MissingSignature) {
        req = req.header("x-signature-ed25519", hex::encode(sig.as_ref()));
    }
    if forgery != Some(Forgery::MissingTimestamp) {
        req = req.header("x-signature-timestamp", ts);
    }
    let req = req.body(axum::body::Body::from(body)).map_err(|e| e.to_string())?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<axum::body::Body>();
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .map_err(|_| "the interactions endpoint did not answer within 10 s".to_string())?
        .map_err(|e| format!("cannot reach the interactions endpoint: {e}"))?;
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(axum::body::Body::new(resp.into_body()), 1 << 20).await.map_err(|e| e.to_string())?;
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok(EndpointReply { status, body })
}

impl super::DiscordSim {
    /// `user_id` clicks the button `custom_id` on message `message_id`: the
    /// interaction is built from the stored message and delivered over the
    /// Gateway, or signed to the interactions endpoint when one is set.
    pub async fn click(&self, user_id: &str, channel_id: &str, message_id: &str, custom_id: &str) -> Result<ClickSent, String> {
        let (id, payload, endpoint) = {
            let mut st = self.state();
            let (id, payload) = st.new_click(user_id, channel_id, message_id, custom_id)?;
            let endpoint = st.endpoint.as_ref().map(|e| Endpoint { url: e.url.clone(), key: e.key.clone() });
            (id, payload, endpoint)
        };
        match endpoint {
            None => {
                self.gateway.dispatch("INTERACTION_CREATE", payload)?;
                Ok(ClickSent { interaction_id: id, reply: None })
            }
            Some(ep) => {
                if let Some(i) = self.state().interaction_mut(&id) {
                    i.info.via_http = true;
                }
                let reply = deliver(&ep, &payload, None).await?;
                if reply.status == 200 {
                    let mut st = self.state();
                    if let Err(ApiError(_, e)) = st.respond(&id, &reply.body) {
                        return Err(format!("the endpoint's inline answer was refused: {e}"));
                    }
                }
                Ok(ClickSent { interaction_id: id, reply: Some(reply) })
            }
        }
    }

    /// Delivers interaction `id` again (a Gateway redelivery: same id and
    /// token, a new sequence number; or the same signed POST again).
    pub async fn redeliver(&self, id: &str) -> Result<Option<EndpointReply>, String> {
        let (payload, endpoint) = {
            let st = self.state();
            let i = st.interactions.iter().find(|i| i.info.id == id).ok_or("no such interaction")?;
            (i.payload.clone(), st.endpoint.as_ref().map(|e| Endpoint { url: e.url.clone(), key: e.key.clone() }))
        };
        match endpoint {
            None => self.gateway.dispatch("INTERACTION_CREATE", payload).map(|_| None),
            Some(ep) => deliver(&ep, &payload, None).await.map(Some),
        }
    }

    /// A click delivered to the endpoint with `forgery`; returns its answer.
    pub async fn forged_click(
        &self,
        user_id: &str,
        channel_id: &str,
        message_id: &str,
        custom_id: &str,
        forgery: Forgery,
    ) -> Result<EndpointReply, String> {
        let (payload, ep) = {
            let mut st = self.state();
            let (id, payload) = st.new_click(user_id, channel_id, message_id, custom_id)?;
            if let Some(i) = st.interaction_mut(&id) {
                i.info.forged = true;
                i.info.via_http = true;
            }
            let ep = st.endpoint.as_ref().map(|e| Endpoint { url: e.url.clone(), key: e.key.clone() });
            (payload, ep.ok_or("no interactions endpoint set")?)
        };
        deliver(&ep, &payload, Some(forgery)).await
    }

    /// The PING Discord sends when the endpoint URL is saved.
    pub async fn ping_endpoint(&self) -> Result<EndpointReply, String> {
        let (payload, ep) = {
            let mut st = self.state();
            let id = st.next_snowflake().to_string();
            let payload = json!({"id": id, "application_id": st.bot_id, "type": 1, "token": "ping", "version": 1});
            let ep = st.endpoint.as_ref().map(|e| Endpoint { url: e.url.clone(), key: e.key.clone() });
            (payload, ep.ok_or("no interactions endpoint set")?)
        };
        deliver(&ep, &payload, None).await
    }

    /// Deliver clicks to `url`, signed with `key` (as setting the
    /// Interactions Endpoint URL in the Developer Portal); `None`: Gateway.
    pub fn set_interactions_endpoint(&self, endpoint: Option<(&str, std::sync::Arc<Ed25519KeyPair>)>) {
        self.state().endpoint = endpoint.map(|(url, key)| Endpoint { url: url.to_string(), key });
    }

    /// Every interaction so far, oldest first.
    pub fn interactions(&self) -> Vec<SimInteraction> {
        self.state().interactions.iter().map(|i| i.info.clone()).collect()
    }

    /// What `user_id` was shown ephemerally (only them), oldest first: the
    /// content of each ephemeral response that has one.
    pub fn ephemerals(&self, user_id: &str) -> Vec<String> {
        self.state()
            .interactions
            .iter()
            .filter(|i| i.info.user_id == user_id && i.info.ephemeral)
            .filter_map(|i| i.info.content.clone())
            .collect()
    }
}
