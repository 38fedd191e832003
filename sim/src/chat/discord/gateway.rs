//! Fake Discord Gateway (v10, JSON encoding, no compression) on two loopback
//! WebSocket listeners: the URL `GET /gateway/bot` hands out, and the
//! `resume_gateway_url` READY names.
//!
//! Rules kept: HELLO first with a short heartbeat interval; heartbeats must
//! carry the last sequence number the client received: never above what
//! this connection sent, never below what it had sent when the previous
//! heartbeat arrived (frames in flight excuse the gap in between; other
//! values are logged for tests); heartbeats are acknowledged; a connection without a heartbeat
//! for twice the interval is closed with 4009; IDENTIFY with a bad token is
//! closed with 4004; a second IDENTIFY on one connection with 4005; RESUME
//! is accepted on the resume URL only, for a known session, and replays the
//! dispatches after the client's `seq` before RESUMED; anything else gets
//! INVALID_SESSION `false`. Dispatches carry rising `s` per session and are
//! kept while the client is away, so a resume loses nothing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::super::common::lock;

/// Heartbeat interval announced in HELLO.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(1000);

/// Checks a bot token (without the `Bot ` prefix).
pub(crate) type TokenCheckFn = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// What a client did on the Gateway, for assertions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatewayLog {
    /// WebSocket connections accepted (both URLs).
    pub connections: u32,
    /// IDENTIFY payloads: (token accepted, intents).
    pub identifies: Vec<(bool, Option<u64>)>,
    /// RESUME payloads: (seq sent, on the resume URL, accepted).
    pub resumes: Vec<(Option<u64>, bool, bool)>,
    /// Heartbeats received.
    pub heartbeats: u32,
    /// Heartbeats whose `d` cannot be the last sequence number received.
    pub heartbeat_errors: Vec<String>,
    /// Close codes the simulator sent.
    pub closes_sent: Vec<u16>,
}

enum Cmd {
    Send(Value),
    Reconnect,
    InvalidSession(bool),
    Drop,
    Close(u16),
}

struct Session {
    seq: u64,
    /// Every dispatch frame of the session, for replay.
    events: Vec<Value>,
}

#[derive(Default)]
struct GwState {
    sessions: HashMap<String, Session>,
    /// Session dispatches go to (the last one READY'd or resumed).
    current: Option<String>,
    /// The live connection of `current`: id and command channel.
    conn: Option<(u64, mpsc::UnboundedSender<Cmd>)>,
    next_conn: u64,
    log: GatewayLog,
}

struct Inner {
    state: Mutex<GwState>,
    tokens: TokenCheckFn,
    main: SocketAddr,
    resume: SocketAddr,
    bot: Value,
    app_id: String,
    /// Count of READY and RESUMED sent.
    live: watch::Sender<u64>,
}

/// Handle to the fake Gateway; the listeners live as long as the simulator.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

impl Gateway {
    pub(crate) async fn start(tokens: TokenCheckFn, bot: Value, app_id: String) -> std::io::Result<Self> {
        let main = TcpListener::bind(("127.0.0.1", 0)).await?;
        let resume = TcpListener::bind(("127.0.0.1", 0)).await?;
        let inner = Arc::new(Inner {
            state: Mutex::default(),
            tokens,
            main: main.local_addr()?,
            resume: resume.local_addr()?,
            bot,
            app_id,
            live: watch::channel(0).0,
        });
        for (listener, on_resume_url) in [(main, false), (resume, true)] {
            let weak = Arc::downgrade(&inner);
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let Some(inner) = weak.upgrade() else { return };
                    tokio::spawn(connection(inner, stream, on_resume_url));
                }
            });
        }
        Ok(Self { inner })
    }

    /// The URL `GET /gateway/bot` returns.
    pub fn url(&self) -> String {
        format!("ws://{}", self.inner.main)
    }

    /// The `resume_gateway_url` READY returns.
    pub fn resume_url(&self) -> String {
        format!("ws://{}", self.inner.resume)
    }

    pub fn log(&self) -> GatewayLog {
        lock(&self.inner.state).log.clone()
    }

    /// How many READY and RESUMED were sent so far.
    pub fn live_count(&self) -> u64 {
        *self.inner.live.borrow()
    }

    /// Waits until READY or RESUMED was sent at least `n` times.
    pub async fn wait_live(&self, n: u64, timeout: Duration) -> Result<(), String> {
        let mut rx = self.inner.live.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|c| *c >= n))
            .await
            .map_err(|_| format!("the Gateway client did not become live {n} time(s) within {timeout:?} ({:?})", self.log()))?
            .map(drop)
            .map_err(|_| "the Gateway stopped".to_string())
    }

    /// Whether a client is connected and identified or resumed.
    pub fn is_live(&self) -> bool {
        lock(&self.inner.state).conn.is_some()
    }

    /// Sends a dispatch to the current session (kept for replay when the
    /// client is away). Returns its sequence number.
    pub fn dispatch(&self, t: &str, d: Value) -> Result<u64, String> {
        let mut st = lock(&self.inner.state);
        let id = st.current.clone().ok_or("no Gateway session: the client never identified")?;
        let session = st.sessions.get_mut(&id).ok_or("the Gateway session is gone")?;
        session.seq += 1;
        let s = session.seq;
        let frame = json!({"op": 0, "s": s, "t": t, "d": d});
        session.events.push(frame.clone());
        if let Some((_, tx)) = &st.conn {
            let _ = tx.send(Cmd::Send(frame));
        }
        Ok(s)
    }

    fn command(&self, cmd: Cmd) -> bool {
        let st = lock(&self.inner.state);
        st.conn.as_ref().is_some_and(|(_, tx)| tx.send(cmd).is_ok())
    }

    /// Sends op 7 RECONNECT: the client should resume on the resume URL.
    pub fn reconnect(&self) -> bool {
        self.command(Cmd::Reconnect)
    }

    /// Sends op 9 INVALID_SESSION with `resumable`.
    pub fn invalidate_session(&self, resumable: bool) -> bool {
        if !resumable {
            let mut st = lock(&self.inner.state);
            if let Some(id) = st.current.take() {
                st.sessions.remove(&id);
            }
        }
        self.command(Cmd::InvalidSession(resumable))
    }

    /// Drops the TCP connection without a close frame.
    pub fn drop_connection(&self) -> bool {
        self.command(Cmd::Drop)
    }

    /// Closes the connection with `code`.
    pub fn close(&self, code: u16) -> bool {
        self.command(Cmd::Close(code))
    }
}

fn frame(op: u8, d: Value) -> Message {
    Message::text(json!({"op": op, "d": d, "s": null, "t": null}).to_string())
}

fn close_msg(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame { code: CloseCode::from(code), reason: reason.to_string().into() }))
}

async fn connection(inner: Arc<Inner>, stream: tokio::net::TcpStream, on_resume_url: bool) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else { return };
    let (mut sink, mut source) = ws.split();
    let conn_id = {
        let mut st = lock(&inner.state);
        st.log.connections += 1;
        st.next_conn += 1;
        st.next_conn
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<Cmd>();
    let interval = HEARTBEAT_INTERVAL.as_millis() as u64;
    if sink.send(frame(10, json!({"heartbeat_interval": interval}))).await.is_err() {
        return;
    }
    let mut last_seq: Option<u64> = None;
    // What had been sent when the previous heartbeat arrived.
    let mut at_prev_heartbeat: Option<u64> = None;
    let mut identified = false;
    let deadline = tokio::time::sleep(HEARTBEAT_INTERVAL * 2);
    tokio::pin!(deadline);
    let close = |code: u16, inner: &Inner| {
        lock(&inner.state).log.closes_sent.push(code);
    };
    loop {
        let mut out: Vec<Message> = Vec::new();
        let mut stop = false;
        tokio::select! {
            msg = source.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                    Some(Ok(Message::Binary(_))) => {
                        close(4002, &inner);
                        out.push(close_msg(4002, "Error while decoding payload."));
                        stop = true;
                        String::new()
                    }
                    _ => break,
                };
                if !stop {
                    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    match v["op"].as_u64() {
                        Some(1) => {
                            let d = v["d"].as_u64();
                            let mut st = lock(&inner.state);
                            st.log.heartbeats += 1;
                            if d > last_seq || d < at_prev_heartbeat {
                                st.log.heartbeat_errors.push(format!(
                                    "heartbeat d={:?}: sent up to {last_seq:?}, and up to {at_prev_heartbeat:?} at the previous heartbeat",
                                    v["d"]
                                ));
                            }
                            at_prev_heartbeat = last_seq;
                            drop(st);
                            deadline.as_mut().reset(tokio::time::Instant::now() + HEARTBEAT_INTERVAL * 2);
                            out.push(frame(11, Value::Null));
                        }
                        Some(2) => {
                            if identified {
                                close(4005, &inner);
                                out.push(close_msg(4005, "Already authenticated."));
                                stop = true;
                            } else {
                                let token = v["d"]["token"].as_str().unwrap_or_default();
                                let token = token.strip_prefix("Bot ").unwrap_or(token);
                                let ok = (inner.tokens)(token);
                                let mut st = lock(&inner.state);
                                st.log.identifies.push((ok, v["d"]["intents"].as_u64()));
                                if !ok {
                                    st.log.closes_sent.push(4004);
                                    out.push(close_msg(4004, "Authentication failed."));
                                    stop = true;
                                } else {
                                    identified = true;
                                    let id = hex::encode(rand::random::<[u8; 16]>());
                                    let ready = json!({"op": 0, "s": 1, "t": "READY", "d": {
                                        "v": 10, "user": inner.bot, "guilds": [], "session_id": id,
                                        "resume_gateway_url": format!("ws://{}", inner.resume),
                                        "application": {"id": inner.app_id, "flags": 0},
                                    }});
                                    st.sessions.insert(id.clone(), Session { seq: 1, events: Vec::new() });
                                    st.current = Some(id);
                                    st.conn = Some((conn_id, tx.clone()));
                                    last_seq = Some(1);
                                    out.push(Message::text(ready.to_string()));
                                    inner.live.send_modify(|c| *c += 1);
                                }
                            }
                        }
                        Some(6) => {
                            let d = &v["d"];
                            let token = d["token"].as_str().unwrap_or_default();
                            let token = token.strip_prefix("Bot ").unwrap_or(token);
                            let seq = d["seq"].as_u64();
                            let id = d["session_id"].as_str().unwrap_or_default().to_string();
                            let mut st = lock(&inner.state);
                            let known = st.sessions.contains_key(&id) && st.current.as_deref() == Some(id.as_str());
                            let accepted = (inner.tokens)(token) && on_resume_url && known && !identified;
                            st.log.resumes.push((seq, on_resume_url, accepted));
                            if accepted {
                                identified = true;
                                let session = st.sessions.get_mut(&id).expect("checked above");
                                let from = seq.unwrap_or(0);
                                out.extend(session.events.iter().filter(|e| e["s"].as_u64().unwrap_or(0) > from)
                                    .map(|e| Message::text(e.to_string())));
                                session.seq += 1;
                                let resumed = json!({"op": 0, "s": session.seq, "t": "RESUMED", "d": null});
                                session.events.push(resumed.clone());
                                last_seq = Some(session.seq);
                                out.push(Message::text(resumed.to_string()));
                                st.conn = Some((conn_id, tx.clone()));
                                inner.live.send_modify(|c| *c += 1);
                            } else {
                                out.push(frame(9, json!(false)));
                            }
                        }
                        _ => {
                            close(4001, &inner);
                            out.push(close_msg(4001, "Unknown opcode."));
                            stop = true;
                        }
                    }
                }
            }
            cmd = rx.recv() => match cmd {
                Some(Cmd::Send(v)) => {
                    last_seq = v["s"].as_u64().or(last_seq);
                    out.push(Message::text(v.to_string()));
                }
                Some(Cmd::Reconnect) => out.push(frame(7, Value::Null)),
                Some(Cmd::InvalidSession(r)) => {
                    if !r {
                        identified = false;
                    }
                    out.push(frame(9, json!(r)));
                }
                Some(Cmd::Drop) | None => break,
                Some(Cmd::Close(code)) => {
                    close(code, &inner);
                    out.push(close_msg(code, "Closed by the simulator."));
                    stop = true;
                }
            },
            _ = &mut deadline => {
                close(4009, &inner);
                out.push(close_msg(4009, "Session timed out."));
                stop = true;
            }
        }
        let mut failed = false;
        for m in out {
            if sink.send(m).await.is_err() {
                failed = true;
                break;
            }
        }
        if failed || stop {
            break;
        }
    }
    let mut st = lock(&inner.state);
    if st.conn.as_ref().is_some_and(|(id, _)| *id == conn_id) {
        st.conn = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::WebSocketStream;

    type Ws = WebSocketStream<tokio::net::TcpStream>;

    async fn connect(url: &str) -> Ws {
        let addr = url.strip_prefix("ws://").unwrap();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio_tungstenite::client_async(format!("{url}/?v=10&encoding=json"), tcp).await.unwrap().0
    }

    async fn next(ws: &mut Ws) -> Message {
        tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap().unwrap().unwrap()
    }

    async fn next_json(ws: &mut Ws) -> Value {
        match next(ws).await {
            Message::Text(t) => serde_json::from_str(&t).unwrap(),
            other => panic!("expected text, got {other:?}"),
        }
    }

    async fn send(ws: &mut Ws, v: Value) {
        ws.send(Message::text(v.to_string())).await.unwrap();
    }

    async fn gateway() -> Gateway {
        let check: TokenCheckFn = Arc::new(|t| t == "good");
        Gateway::start(check, json!({"id": "1"}), "1".into()).await.unwrap()
    }

    #[tokio::test]
    async fn a_bad_token_is_closed_with_4004() {
        let gw = gateway().await;
        let mut ws = connect(&gw.url()).await;
        assert_eq!(next_json(&mut ws).await["op"], 10);
        send(&mut ws, json!({"op": 2, "d": {"token": "Bot bad", "intents": 0, "properties": {}}})).await;
        match next(&mut ws).await {
            Message::Close(Some(f)) => assert_eq!(u16::from(f.code), 4004),
            other => panic!("expected a close, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn resume_replays_missed_dispatches_on_the_resume_url_only() {
        let gw = gateway().await;
        let mut ws = connect(&gw.url()).await;
        assert_eq!(next_json(&mut ws).await["op"], 10);
        send(&mut ws, json!({"op": 2, "d": {"token": "Bot good", "intents": 0, "properties": {}}})).await;
        let ready = next_json(&mut ws).await;
        assert_eq!(ready["t"], "READY");
        assert_eq!(ready["d"]["resume_gateway_url"], gw.resume_url());
        let session = ready["d"]["session_id"].as_str().unwrap().to_string();
        assert_eq!(gw.dispatch("X", json!(1)).unwrap(), 2);
        assert_eq!(next_json(&mut ws).await["s"], 2);
        send(&mut ws, json!({"op": 1, "d": 2})).await;
        assert_eq!(next_json(&mut ws).await["op"], 11);
        send(&mut ws, json!({"op": 1, "d": 1})).await;
        assert_eq!(next_json(&mut ws).await["op"], 11);
        send(&mut ws, json!({"op": 1, "d": 3})).await;
        assert_eq!(next_json(&mut ws).await["op"], 11);
        assert_eq!(gw.log().heartbeat_errors.len(), 2, "behind what it had, then ahead of what was sent: {:?}", gw.log());
        assert!(gw.reconnect());
        assert_eq!(next_json(&mut ws).await["op"], 7);
        drop(ws);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(gw.dispatch("X", json!(2)).unwrap(), 3, "kept while away");
        // Not on the main URL.
        let mut main = connect(&gw.url()).await;
        next_json(&mut main).await;
        send(&mut main, json!({"op": 6, "d": {"token": "Bot good", "session_id": session, "seq": 2}})).await;
        assert_eq!(next_json(&mut main).await, json!({"op": 9, "d": false, "s": null, "t": null}));
        drop(main);
        let mut ws = connect(&gw.resume_url()).await;
        next_json(&mut ws).await;
        send(&mut ws, json!({"op": 6, "d": {"token": "Bot good", "session_id": session, "seq": 2}})).await;
        let replay = next_json(&mut ws).await;
        assert_eq!((replay["s"].as_u64(), replay["d"].as_u64()), (Some(3), Some(2)));
        assert_eq!(next_json(&mut ws).await["t"], "RESUMED");
        assert_eq!(gw.log().resumes, vec![(Some(2), false, false), (Some(2), true, true)]);
        assert!(gw.is_live());
    }
}
