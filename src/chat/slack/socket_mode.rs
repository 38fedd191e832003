//! The Slack Socket Mode client: clicks on the cards' buttons arrive over a
//! WebSocket the plugin opens itself, so no public endpoint is needed.
//!
//! One session: `apps.connections.open` with the app-level token (`xapp-…`,
//! scope `connections:write`) returns a one-use `wss://` URL (the ticket in
//! it is a credential: never logged); the socket's first message is `hello`.
//! Each `interactive` envelope is acknowledged (`{"envelope_id": …}`) before
//! anything else is done, since Slack wants the ack within 3 seconds; the
//! click is then decided in a task of its own so the read loop never waits
//! for Teleport, and the outcome is shown to the clicker alone.
//!
//! Ending a session: `disconnect` (`warning`, `refresh_requested`, …), a
//! close, a read error or silence longer than the read deadline (the client
//! pings, so a live socket always has traffic; a half-open one goes quiet)
//! opens a new session, with backoff after failures. The errors that will
//! not go away by themselves (a refused token, Socket Mode switched off:
//! `link_disabled`) stop the client with [`SocketState::Unavailable`],
//! whose text names the fix; card notifications are not affected.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self, Bytes, Message};
use tokio_util::sync::CancellationToken;

use super::{SlackChat, settle};
use super::interaction::{self, Interaction};
use crate::chat::ChatError;
use crate::chat::ErrorKind;
use crate::chat::click::ClickSender;
use crate::chat::http::{self, Api, ClientOptions, Http, Reply, Request, Verdict};
use crate::config::Secret;
use crate::teleport::route::{tcp::Net, web};

/// What the Socket Mode client is doing, for health and status pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketState {
    /// Opening a connection (at start and after every disconnect).
    Connecting,
    /// `hello` received: clicks are being received.
    Connected,
    /// Stopped for good; the text says why and what to change.
    Unavailable(String),
}

/// Timing of the client. The defaults suit Slack; tests shorten them.
#[derive(Debug, Clone)]
pub struct SocketOptions {
    /// How often the client pings.
    pub ping_interval: Duration,
    /// A socket with no frame at all (pongs included) for this long is
    /// taken for dead and replaced.
    pub read_timeout: Duration,
    /// Time allowed for TCP, TLS and the WebSocket handshake.
    pub connect_timeout: Duration,
    /// Time allowed between the handshake and `hello`.
    pub hello_timeout: Duration,
    /// Backoff between failed sessions; it starts again after a session
    /// that lasted twice `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Clicks decided at once; beyond, a click is acked and dropped.
    pub max_in_flight: usize,
    /// HTTP options of `apps.connections.open`.
    pub http: ClientOptions,
}

impl Default for SocketOptions {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(5),
            read_timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(10),
            hello_timeout: Duration::from_secs(10),
            min_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(10),
            max_in_flight: 256,
            http: ClientOptions::default(),
        }
    }
}

/// Starts the client with [`SocketOptions::default`]. `api_url` is the Slack
/// API base (`https://slack.com/api/`), `app_token` the app-level token.
/// The task ends when `stop` is cancelled or the state turns Unavailable;
/// the receiver follows the state.
pub fn spawn(
    api_url: &str,
    app_token: Secret,
    chat: Arc<SlackChat>,
    desk: ClickSender,
    stop: CancellationToken,
) -> (JoinHandle<()>, watch::Receiver<SocketState>) {
    spawn_with(api_url, app_token, chat, desk, stop, SocketOptions::default())
}

/// [`spawn`] with explicit timing.
pub fn spawn_with(
    api_url: &str,
    app_token: Secret,
    chat: Arc<SlackChat>,
    desk: ClickSender,
    stop: CancellationToken,
    opts: SocketOptions,
) -> (JoinHandle<()>, watch::Receiver<SocketState>) {
    let (state, rx) = watch::channel(SocketState::Connecting);
    let http = Http::new(
        api_url,
        &format!("Bearer {}", app_token.expose()),
        &http::user_agent(),
        opts.http.clone(),
        AppApi,
    )
    .map_err(|e| e.replace("the Slack token", "review.app_token"));
    let handle = match http {
        Ok(http) => {
            let client = Client {
                http,
                chat,
                desk,
                in_flight: Arc::new(Semaphore::new(opts.max_in_flight.max(1))),
                net: Net::from_env(),
                tls: OnceLock::new(),
                opts,
            };
            tokio::spawn(client.run(state, stop))
        }
        Err(e) => {
            state.send_replace(SocketState::Unavailable(format!("Slack Socket Mode cannot start: {e}")));
            tokio::spawn(async {})
        }
    };
    (handle, rx)
}

struct Client {
    /// Calls made with the app-level token.
    http: Http<AppApi>,
    chat: Arc<SlackChat>,
    desk: ClickSender,
    in_flight: Arc<Semaphore>,
    net: Net,
    tls: OnceLock<Arc<rustls::ClientConfig>>,
    opts: SocketOptions,
}

/// How a session ended.
#[derive(Debug)]
enum End {
    Stopped,
    Fatal(String),
    /// Slack asked for a new socket (`disconnect`): reconnect at once.
    Refresh(String),
    /// Something failed: reconnect after a backoff (or the wait Slack named).
    Retry { why: String, after: Option<Duration> },
}

fn retry(why: impl Into<String>) -> End {
    End::Retry { why: why.into(), after: None }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type Socket = WebSocketStream<Box<dyn Io>>;

impl Client {
    async fn run(self, state: watch::Sender<SocketState>, stop: CancellationToken) {
        let fresh = || {
            ExponentialBuilder::default()
                .with_min_delay(self.opts.min_backoff)
                .with_max_delay(self.opts.max_backoff)
                .with_jitter()
                .without_max_times()
                .build()
        };
        let mut backoff = fresh();
        loop {
            state.send_if_modified(|s| {
                let changed = *s != SocketState::Connecting;
                *s = SocketState::Connecting;
                changed
            });
            let started = Instant::now();
            let end = self.session(&state, &stop).await;
            if started.elapsed() >= self.opts.max_backoff * 2 {
                backoff = fresh();
            }
            let delay = match end {
                End::Stopped => return,
                End::Fatal(reason) => {
                    tracing::error!(%reason, "Slack Socket Mode stopped; clicks on the cards' buttons are not received, notifications go on");
                    state.send_replace(SocketState::Unavailable(reason));
                    return;
                }
                End::Refresh(reason) => {
                    tracing::info!(%reason, "Slack asked for a new Socket Mode connection");
                    Duration::ZERO
                }
                End::Retry { why, after } => {
                    let delay = after.unwrap_or_else(|| backoff.next().unwrap_or(self.opts.max_backoff));
                    tracing::warn!(%why, retry_in_ms = delay.as_millis() as u64, "Slack Socket Mode connection lost; reconnecting");
                    delay
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One connection, from `apps.connections.open` to its end.
    async fn session(&self, state: &watch::Sender<SocketState>, stop: &CancellationToken) -> End {
        let url = tokio::select! {
            _ = stop.cancelled() => return End::Stopped,
            r = self.open() => match r {
                Ok(url) => url,
                Err(e) if e.kind == ErrorKind::Permanent => return End::Fatal(e.message),
                Err(e) => return End::Retry { after: e.retry_after(), why: e.message },
            },
        };
        let mut ws = tokio::select! {
            _ = stop.cancelled() => return End::Stopped,
            r = tokio::time::timeout(self.opts.connect_timeout, self.dial(&url)) => match r {
                Ok(Ok(ws)) => ws,
                Ok(Err(e)) => return e,
                Err(_) => return retry(format!(
                    "the Socket Mode WebSocket did not open within {:?}", self.opts.connect_timeout
                )),
            },
        };
        drop(url);
        let mut connected = false;
        let hello_by = Instant::now() + self.opts.hello_timeout;
        let mut last_frame = Instant::now();
        let mut ping = tokio::time::interval_at(Instant::now() + self.opts.ping_interval, self.opts.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = if connected { last_frame + self.opts.read_timeout } else { hello_by };
            let frame = tokio::select! {
                biased;
                _ = stop.cancelled() => {
                    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                    return End::Stopped;
                }
                _ = ping.tick() => {
                    if let Err(e) = ws.send(Message::Ping(Bytes::new())).await {
                        return retry(format!("sending a ping failed: {}", ws_error(&e)));
                    }
                    continue;
                }
                f = tokio::time::timeout_at(deadline, ws.next()) => f,
            };
            let msg = match frame {
                Err(_) if connected => {
                    return retry(format!(
                        "nothing received for {:?} (pings unanswered): the connection is half-open",
                        self.opts.read_timeout
                    ));
                }
                Err(_) => return retry(format!("Slack sent no hello within {:?}", self.opts.hello_timeout)),
                Ok(None) => return retry("the Socket Mode connection was closed"),
                Ok(Some(Err(e))) => return retry(format!("reading from the Socket Mode connection failed: {}", ws_error(&e))),
                Ok(Some(Ok(m))) => m,
            };
            last_frame = Instant::now();
            let text = match msg {
                Message::Text(t) => t,
                Message::Close(frame) => {
                    let why = frame.map(|f| format!(" ({} {})", u16::from(f.code), f.reason)).unwrap_or_default();
                    return retry(format!("Slack closed the Socket Mode connection{why}"));
                }
                // tungstenite answers pings itself; pongs only prove life.
                _ => continue,
            };
            let envelope: Value = match serde_json::from_str(text.as_str()) {
                Ok(v) => v,
                Err(_) => {
                    tracing::warn!(bytes = text.len(), "Slack sent a Socket Mode message that is not JSON; ignored");
                    continue;
                }
            };
            match envelope["type"].as_str().unwrap_or_default() {
                "hello" => {
                    if !connected {
                        connected = true;
                        state.send_replace(SocketState::Connected);
                        tracing::info!(connections = envelope["num_connections"].as_u64(), "Slack Socket Mode connected");
                    }
                }
                "disconnect" => {
                    let reason = envelope["reason"].as_str().unwrap_or("unknown").to_string();
                    if reason == "link_disabled" {
                        return End::Fatal(fatal_text("link_disabled").unwrap_or_default());
                    }
                    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                    return End::Refresh(reason);
                }
                kind @ ("interactive" | "events_api" | "slash_commands") => {
                    // Ack first: an unacked envelope is sent again.
                    if let Some(id) = envelope["envelope_id"].as_str().filter(|s| !s.is_empty()) {
                        let ack = json!({"envelope_id": id}).to_string();
                        if let Err(e) = ws.send(Message::text(ack)).await {
                            return retry(format!("acknowledging an envelope failed: {}", ws_error(&e)));
                        }
                    }
                    if kind == "interactive" {
                        self.dispatch(&envelope);
                    } else {
                        tracing::debug!(kind, "Slack Socket Mode envelope of a kind the plugin does not use; acknowledged");
                    }
                }
                other => tracing::debug!(kind = other, "Slack Socket Mode message ignored"),
            }
        }
    }

    /// Reads the click in an envelope and decides it in a task of its own.
    fn dispatch(&self, envelope: &Value) {
        let payload = match &envelope["payload"] {
            // Tolerated: a payload sent as a JSON string.
            Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
            v => v.clone(),
        };
        let retry_attempt = envelope["retry_attempt"].as_u64().unwrap_or(0);
        let interaction = match interaction::parse(&payload) {
            Ok(i) => i,
            Err(skip) => {
                tracing::warn!(%skip, "Slack interaction skipped");
                return;
            }
        };
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            tracing::warn!(request = %interaction.click.request_id, user = %interaction.click.user_id,
                "too many Slack clicks are being decided; this one is dropped (the clicker may click again)");
            return;
        };
        let chat = self.chat.clone();
        let desk = self.desk.clone();
        tokio::spawn(async move {
            let _permit = permit;
            handle_click(&chat, &desk, interaction, retry_attempt).await;
        });
    }

    async fn open(&self) -> Result<String, ChatError> {
        let v = self
            .http
            .call(Request::post("apps.connections.open", &["apps.connections.open"]).about("review.app_token"))
            .await?;
        v["url"]
            .as_str()
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .ok_or_else(|| ChatError::transient("Slack apps.connections.open answered without a URL"))
    }

    async fn dial(&self, url: &str) -> Result<Socket, End> {
        // Errors name the host at most: the query holds the ticket.
        let parsed = reqwest::Url::parse(url)
            .map_err(|_| retry("Slack apps.connections.open answered a URL that does not parse"))?;
        let host = parsed.host_str().unwrap_or_default().to_string();
        let port = parsed.port_or_known_default().unwrap_or(443);
        let addr = format!("{host}:{port}");
        let stream: Box<dyn Io> = match parsed.scheme() {
            "wss" => {
                let tls = match self.tls.get() {
                    Some(t) => t.clone(),
                    None => {
                        let cfg = web::client_config(&[], &[b"http/1.1"]).map_err(End::Fatal)?;
                        self.tls.get_or_init(|| cfg).clone()
                    }
                };
                Box::new(web::connect(&self.net, &addr, tls).await.map_err(|e| retry(e.to_string()))?)
            }
            "ws" => Box::new(self.net.connect(&addr).await.map_err(|e| retry(e.to_string()))?),
            other => return Err(retry(format!("Slack gave a Socket Mode URL with scheme {other:?}"))),
        };
        let (ws, _) = tokio_tungstenite::client_async(url, stream).await.map_err(|e| match e {
            tungstenite::Error::Http(resp) => {
                let body = resp.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default();
                retry(format!(
                    "the Socket Mode handshake with {host} answered HTTP {}: {}",
                    resp.status().as_u16(),
                    crate::chat::text::truncate(body.trim(), 200)
                ))
            }
            other => retry(format!("the Socket Mode handshake with {host} failed: {}", ws_error(&other))),
        })?;
        Ok(ws)
    }
}

/// Checks the click's workspace, then decides it.
async fn handle_click(chat: &SlackChat, desk: &ClickSender, i: Interaction, retry_attempt: u64) {
    let Interaction { click, team_id, reply } = i;
    // The socket is the app's own, but an app installed in several
    // workspaces hears them all: only our workspace's cards are ours.
    match chat.team_id().await {
        Ok(ours) if team_id.as_deref() != Some(ours.as_str()) => {
            tracing::warn!(team = team_id.as_deref().unwrap_or("none"), "Slack click from another workspace skipped");
            return;
        }
        Ok(_) => {}
        Err(e) => tracing::debug!(error = %e, "the bot's Slack workspace is not known yet; the click is not checked against it"),
    }
    if retry_attempt > 0 {
        tracing::debug!(retry_attempt, request = %click.request_id, "Slack redelivered a click");
    }
    settle(chat, desk, click, reply, "socket_mode").await;
}

/// The fix for a Slack error that stops the client, `None` for errors that
/// are worth another try. The list is the official plugin's.
fn fatal_text(code: &str) -> Option<String> {
    let token = "create an app-level token with the connections:write scope (Slack app settings, Basic Information, \
                 App-Level Tokens) and set it as review.app_token";
    Some(match code {
        "link_disabled" => "Socket Mode is switched off for the Slack app (link_disabled): switch it on under Socket Mode \
                            in the Slack app settings, or deliver clicks to the HTTP Request URL instead"
            .to_string(),
        "not_allowed_token_type" => format!(
            "review.app_token was refused by Slack (not_allowed_token_type): it must be an app-level token (xapp-…), \
             not the bot token (xoxb-…); {token}"
        ),
        "invalid_auth" | "not_authed" | "token_revoked" | "token_expired" | "account_inactive" => {
            format!("review.app_token was refused by Slack ({code}): {token}")
        }
        "missing_scope" => format!("review.app_token lacks the connections:write scope (missing_scope): {token}"),
        "no_permission" | "team_access_not_granted" => format!(
            "review.app_token may not open Socket Mode connections in this workspace ({code}): check that the Slack app \
             is installed in the workspace and Socket Mode is allowed, then {token}"
        ),
        _ => return None,
    })
}

/// Reads `apps.connections.open` answers (app-level token).
struct AppApi;

impl Api for AppApi {
    fn label(&self) -> &'static str {
        "Slack"
    }

    fn judge(&self, req: &Request, reply: &Reply) -> Verdict {
        let route = req.route.as_str();
        if reply.status.as_u16() == 429 {
            let after = reply.header_secs("retry-after").unwrap_or(Duration::from_secs(1));
            return Verdict::Limited { after, global: false };
        }
        if let Some(v) = http::common::retryable("Slack", reply) {
            return v;
        }
        let Some(body) = reply.json().filter(Value::is_object) else {
            return http::common::unreadable("Slack", reply);
        };
        if body["ok"] == true {
            return Verdict::Done(body);
        }
        let code = body["error"].as_str().unwrap_or("unknown_error");
        match code {
            "ratelimited" => Verdict::Limited {
                after: reply.header_secs("retry-after").unwrap_or(Duration::from_secs(1)),
                global: false,
            },
            "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => {
                Verdict::Retry(format!("Slack {route} failed: {code}"))
            }
            _ => match fatal_text(code) {
                Some(fix) => Verdict::Fail(ChatError::permanent(fix)),
                // Not known to be final: retried with backoff, as upstream does.
                None => Verdict::Fail(ChatError::transient(format!("Slack {route} failed: {code}"))),
            },
        }
    }
}

/// A WebSocket error in words (tungstenite's never carry the URL).
fn ws_error(e: &tungstenite::Error) -> String {
    match e {
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => "the connection is closed".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;

    use super::*;

    fn judge(status: u16, body: Value) -> Verdict {
        let reply = Reply { status: StatusCode::from_u16(status).unwrap(), headers: HeaderMap::new(), body: serde_json::to_vec(&body).unwrap() };
        AppApi.judge(&Request::post("apps.connections.open", &["apps.connections.open"]), &reply)
    }

    #[test]
    fn refused_tokens_and_switched_off_socket_mode_are_final_and_name_the_fix() {
        for code in ["invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive", "not_allowed_token_type", "missing_scope", "no_permission", "team_access_not_granted", "link_disabled"] {
            match judge(200, json!({"ok": false, "error": code})) {
                Verdict::Fail(e) => {
                    assert_eq!(e.kind, ErrorKind::Permanent, "{code}");
                    assert!(e.message.contains(code), "{}", e.message);
                }
                other => panic!("{code}: {other:?}"),
            }
        }
        let Verdict::Fail(e) = judge(200, json!({"ok": false, "error": "invalid_auth"})) else { panic!() };
        assert!(e.message.starts_with("review.app_token was refused by Slack (invalid_auth): "), "{}", e.message);
        let Verdict::Fail(e) = judge(200, json!({"ok": false, "error": "not_allowed_token_type"})) else { panic!() };
        assert!(e.message.contains("not the bot token"), "{}", e.message);
    }

    #[test]
    fn other_failures_are_retried() {
        assert!(matches!(judge(200, json!({"ok": true, "url": "wss://x/link"})), Verdict::Done(v) if v["url"] == "wss://x/link"));
        assert!(matches!(judge(429, json!({"ok": false, "error": "ratelimited"})), Verdict::Limited { .. }));
        assert!(matches!(judge(503, json!({})), Verdict::Retry(_)));
        assert!(matches!(judge(200, json!({"ok": false, "error": "internal_error"})), Verdict::Retry(_)));
        let Verdict::Fail(e) = judge(200, json!({"ok": false, "error": "forbidden_team"})) else { panic!() };
        assert!(e.is_transient(), "unknown errors are retried with backoff");
    }
}
