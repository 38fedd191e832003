//! The Socket Mode side of the Slack simulator: the WebSocket server behind
//! the URLs `apps.connections.open` hands out.
//!
//! A URL carries a one-use ticket. A connection gets `hello` first, then
//! envelopes (`interactive`, with the payload as an object,
//! `accepts_response_payload: false`, `retry_attempt`, `retry_reason`).
//! The client must answer each with `{"envelope_id": …}`; an envelope not
//! acknowledged within the redelivery delay (3 s, as Slack) is sent again,
//! with `retry_attempt` + 1, on whichever connection is up then, a few times.
//! Acks are recorded with their latency. Tests can send `disconnect`, drop a
//! socket without a close frame, or freeze it (no reads, writes or pongs:
//! a half-open connection). The server pings its clients.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::{Bytes, Message, http};
use tokio_util::sync::CancellationToken;

use crate::chat::common::lock;

/// Timing of the Socket Mode server.
#[derive(Debug, Clone)]
pub struct SocketModeConfig {
    /// An envelope not acknowledged for this long is sent again.
    pub redeliver_after: Duration,
    /// Redeliveries of one envelope before Slack gives up on it.
    pub max_redeliveries: u32,
    /// Server pings; zero sends none.
    pub ping_interval: Duration,
    /// After `disconnect`, the server closes the socket this much later if
    /// the client has not.
    pub close_after_disconnect: Duration,
}

impl Default for SocketModeConfig {
    fn default() -> Self {
        Self {
            redeliver_after: Duration::from_secs(3),
            max_redeliveries: 3,
            ping_interval: Duration::from_secs(10),
            close_after_disconnect: Duration::from_secs(1),
        }
    }
}

/// One delivery of an envelope.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub retry_attempt: u32,
    pub connection: u64,
    pub sent_at: Instant,
}

/// An acknowledgement as the server read it.
#[derive(Debug, Clone)]
pub struct Ack {
    pub envelope_id: String,
    /// The delivery it answered (the latest one sent before it).
    pub retry_attempt: u32,
    /// From that delivery to the ack.
    pub latency: Duration,
    pub at: Instant,
    pub connection: u64,
    /// False when a test made the server ignore it ([`SlackSim::lose_next_acks`]).
    pub counted: bool,
}

/// An envelope and what became of it.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub envelope_id: String,
    pub kind: String,
    pub payload: Value,
    pub deliveries: Vec<Delivery>,
    /// When a counted ack arrived.
    pub acked_at: Option<Instant>,
}

/// A connection as the server saw it.
#[derive(Debug, Clone)]
pub struct Connection {
    pub id: u64,
    pub opened_at: Instant,
    pub closed_at: Option<Instant>,
    /// Pings the client sent.
    pub client_pings: u64,
    /// Why it ended: `closed by client`, `dropped`, `closed by server`, ...
    pub end: Option<String>,
}

enum Cmd {
    Send(String),
    Close,
    Drop,
    Freeze,
}

struct Live {
    tx: mpsc::UnboundedSender<Cmd>,
    /// Envelopes are sent only after `hello`.
    ready: bool,
}

#[derive(Default)]
struct HubState {
    tickets: HashMap<String, Instant>,
    live: BTreeMap<u64, Live>,
    connections: Vec<Connection>,
    envelopes: Vec<Envelope>,
    acks: Vec<Ack>,
    lose_acks: u32,
    drop_after_next_envelope: bool,
    next_conn: u64,
}

/// The Socket Mode server of one simulator.
pub(crate) struct Hub {
    addr: SocketAddr,
    app_id: String,
    config: Mutex<SocketModeConfig>,
    state: Mutex<HubState>,
    changed: watch::Sender<u64>,
}

/// Tickets are good for this long after `apps.connections.open`.
const TICKET_TTL: Duration = Duration::from_secs(30);

impl Hub {
    pub(crate) async fn start(app_id: String, config: SocketModeConfig, stop: CancellationToken) -> std::io::Result<Arc<Self>> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let hub = Arc::new(Self {
            addr: listener.local_addr()?,
            app_id,
            config: Mutex::new(config),
            state: Mutex::default(),
            changed: watch::Sender::new(0),
        });
        let weak = Arc::downgrade(&hub);
        let accept_stop = stop.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    _ = accept_stop.cancelled() => return,
                    r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
                };
                let Some(hub) = weak.upgrade() else { return };
                tokio::spawn(hub.serve(tcp, accept_stop.clone()));
            }
        });
        tokio::spawn(redeliver(Arc::downgrade(&hub), stop));
        Ok(hub)
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub(crate) fn set_config(&self, f: impl FnOnce(&mut SocketModeConfig)) {
        f(&mut lock(&self.config));
    }

    fn config(&self) -> SocketModeConfig {
        lock(&self.config).clone()
    }

    /// A fresh one-use URL.
    pub(crate) fn new_url(&self) -> String {
        let ticket = uuid::Uuid::new_v4().simple().to_string();
        let mut st = lock(&self.state);
        let now = Instant::now();
        st.tickets.retain(|_, at| now.duration_since(*at) < TICKET_TTL);
        st.tickets.insert(ticket.clone(), now);
        format!("ws://{}/link/?ticket={ticket}&app_id={}", self.addr, self.app_id)
    }

    /// Whether a connection that has had its `hello` is up.
    pub(crate) fn connected(&self) -> bool {
        lock(&self.state).live.values().any(|l| l.ready)
    }

    /// Sends an `interactive` envelope on a ready connection; its id, or
    /// `None` when no connection is up.
    pub(crate) fn send_interactive(&self, payload: Value) -> Option<String> {
        let envelope_id = uuid::Uuid::new_v4().to_string();
        let mut st = lock(&self.state);
        let (conn, tx) = st.live.iter().find(|(_, l)| l.ready).map(|(id, l)| (*id, l.tx.clone()))?;
        let text = envelope_text(&envelope_id, "interactive", &payload, 0);
        let _ = tx.send(Cmd::Send(text));
        if std::mem::take(&mut st.drop_after_next_envelope) {
            let _ = tx.send(Cmd::Drop);
        }
        st.envelopes.push(Envelope {
            envelope_id: envelope_id.clone(),
            kind: "interactive".into(),
            payload,
            deliveries: vec![Delivery { retry_attempt: 0, connection: conn, sent_at: Instant::now() }],
            acked_at: None,
        });
        drop(st);
        self.bump();
        Some(envelope_id)
    }

    /// Sends `disconnect` with `reason` to every connection; the server
    /// closes them shortly after unless the clients do.
    pub(crate) fn disconnect(&self, reason: &str) {
        let text = json!({"type": "disconnect", "reason": reason, "debug_info": {"host": "sim-socket-mode"}}).to_string();
        let grace = self.config().close_after_disconnect;
        let txs: Vec<_> = lock(&self.state).live.values().map(|l| l.tx.clone()).collect();
        for tx in txs {
            let _ = tx.send(Cmd::Send(text.clone()));
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                let _ = tx.send(Cmd::Close);
            });
        }
    }

    pub(crate) fn drop_all(&self) {
        for l in lock(&self.state).live.values() {
            let _ = l.tx.send(Cmd::Drop);
        }
    }

    pub(crate) fn freeze_all(&self) {
        for l in lock(&self.state).live.values() {
            let _ = l.tx.send(Cmd::Freeze);
        }
    }

    pub(crate) fn drop_after_next_envelope(&self) {
        lock(&self.state).drop_after_next_envelope = true;
    }

    pub(crate) fn lose_next_acks(&self, n: u32) {
        lock(&self.state).lose_acks = n;
    }

    pub(crate) fn envelopes(&self) -> Vec<Envelope> {
        lock(&self.state).envelopes.clone()
    }

    pub(crate) fn acks(&self) -> Vec<Ack> {
        lock(&self.state).acks.clone()
    }

    pub(crate) fn connections(&self) -> Vec<Connection> {
        lock(&self.state).connections.clone()
    }

    // The handshake callback's signature (and its large error) is tungstenite's.
    #[allow(clippy::result_large_err)]
    async fn serve(self: Arc<Self>, tcp: tokio::net::TcpStream, stop: CancellationToken) {
        let hub = self.clone();
        let check = move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
            let ticket = req
                .uri()
                .query()
                .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "ticket").map(|(_, v)| v.into_owned()));
            let valid = req.uri().path() == "/link/"
                && ticket.is_some_and(|t| {
                    lock(&hub.state).tickets.remove(&t).is_some_and(|at| at.elapsed() < TICKET_TTL)
                });
            if valid {
                Ok(resp)
            } else {
                let mut refused = ErrorResponse::new(Some("invalid or used ticket".into()));
                *refused.status_mut() = http::StatusCode::UNAUTHORIZED;
                Err(refused)
            }
        };
        let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, check).await else { return };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let id = {
            let mut st = lock(&self.state);
            st.next_conn += 1;
            let id = st.next_conn;
            st.live.insert(id, Live { tx, ready: false });
            st.connections.push(Connection { id, opened_at: Instant::now(), closed_at: None, client_pings: 0, end: None });
            id
        };
        let num = lock(&self.state).live.len();
        let hello = json!({
            "type": "hello",
            "num_connections": num,
            "debug_info": {"host": "sim-socket-mode", "build_number": 1, "approximate_connection_time": 18060},
            "connection_info": {"app_id": self.app_id},
        });
        let mut end = match ws.send(Message::text(hello.to_string())).await {
            Ok(()) => None,
            Err(_) => Some("hello could not be sent"),
        };
        if end.is_none() {
            if let Some(l) = lock(&self.state).live.get_mut(&id) {
                l.ready = true;
            }
            self.bump();
        }
        let ping_every = self.config().ping_interval;
        let mut ping = tokio::time::interval(if ping_every.is_zero() { Duration::from_secs(3600) } else { ping_every });
        ping.tick().await;
        while end.is_none() {
            tokio::select! {
                _ = stop.cancelled() => end = Some("simulator stopped"),
                cmd = rx.recv() => match cmd {
                    Some(Cmd::Send(text)) => {
                        if ws.send(Message::text(text)).await.is_err() {
                            end = Some("write failed");
                        }
                    }
                    Some(Cmd::Close) => {
                        let _ = ws.close(None).await;
                        end = Some("closed by server");
                    }
                    Some(Cmd::Drop) | None => end = Some("dropped"),
                    Some(Cmd::Freeze) => {
                        if let Some(l) = lock(&self.state).live.get_mut(&id) {
                            l.ready = false;
                        }
                        // Half-open: the socket stays, nothing moves on it.
                        loop {
                            tokio::select! {
                                _ = stop.cancelled() => break,
                                c = rx.recv() => if matches!(c, None | Some(Cmd::Drop | Cmd::Close)) { break },
                            }
                        }
                        end = Some("frozen, then dropped");
                    }
                },
                _ = ping.tick(), if !ping_every.is_zero() => {
                    if ws.send(Message::Ping(Bytes::from_static(b"sim"))).await.is_err() {
                        end = Some("write failed");
                    }
                }
                msg = ws.next() => match msg {
                    Some(Ok(Message::Text(t))) => self.read_ack(id, t.as_str()),
                    Some(Ok(Message::Ping(_))) => {
                        if let Some(c) = lock(&self.state).connections.iter_mut().find(|c| c.id == id) {
                            c.client_pings += 1;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => end = Some("closed by client"),
                    Some(Err(_)) => end = Some("read failed"),
                    Some(Ok(_)) => {}
                },
            }
        }
        {
            let mut st = lock(&self.state);
            st.live.remove(&id);
            if let Some(c) = st.connections.iter_mut().find(|c| c.id == id) {
                c.closed_at = Some(Instant::now());
                c.end = end.map(str::to_owned);
            }
        }
        self.bump();
    }

    fn read_ack(&self, conn: u64, text: &str) {
        let Some(id) = serde_json::from_str::<Value>(text).ok().and_then(|v| v["envelope_id"].as_str().map(str::to_owned))
        else {
            return;
        };
        let now = Instant::now();
        let mut st = lock(&self.state);
        let counted = if st.lose_acks > 0 {
            st.lose_acks -= 1;
            false
        } else {
            true
        };
        let Some(env) = st.envelopes.iter_mut().find(|e| e.envelope_id == id) else { return };
        let Some(last) = env.deliveries.last().cloned() else { return };
        if counted && env.acked_at.is_none() {
            env.acked_at = Some(now);
        }
        st.acks.push(Ack {
            envelope_id: id,
            retry_attempt: last.retry_attempt,
            latency: now.duration_since(last.sent_at),
            at: now,
            connection: conn,
            counted,
        });
        drop(st);
        self.bump();
    }
}

fn envelope_text(id: &str, kind: &str, payload: &Value, retry_attempt: u32) -> String {
    json!({
        "envelope_id": id,
        "type": kind,
        "payload": payload,
        "accepts_response_payload": false,
        "retry_attempt": retry_attempt,
        "retry_reason": if retry_attempt == 0 { "" } else { "timeout" },
    })
    .to_string()
}

/// Sends unacknowledged envelopes again once they are due.
async fn redeliver(hub: Weak<Hub>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(hub) = hub.upgrade() else { return };
        let cfg = hub.config();
        let mut sent = false;
        {
            let mut st = lock(&hub.state);
            let Some((conn, tx)) = st.live.iter().find(|(_, l)| l.ready).map(|(id, l)| (*id, l.tx.clone())) else { continue };
            for env in st.envelopes.iter_mut().filter(|e| e.acked_at.is_none()) {
                let Some(last) = env.deliveries.last() else { continue };
                if last.retry_attempt >= cfg.max_redeliveries || last.sent_at.elapsed() < cfg.redeliver_after {
                    continue;
                }
                let attempt = last.retry_attempt + 1;
                let _ = tx.send(Cmd::Send(envelope_text(&env.envelope_id, &env.kind, &env.payload, attempt)));
                env.deliveries.push(Delivery { retry_attempt: attempt, connection: conn, sent_at: Instant::now() });
                sent = true;
            }
        }
        if sent {
            hub.bump();
        }
    }
}
